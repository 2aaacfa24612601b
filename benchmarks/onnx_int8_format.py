"""Which ONNX int8 layout to ship: QDQ with u8 or s8 activations, or QOperator (u8)? Weights are s8 per-channel.

All static, calibrated on the same photos (dynamic quantisation is never an option: ConvInteger is ~9x slower here).
Measured on the shipped net and on its arch with each normalisation layout as it deploys: instance norm throughout
(nano: a float op after every conv), trunk_norm="none" (what `--arch nano_lite` exports as: instance norm only in
the stem and up stage) and norm="none" (what `--arch nano_bn` exports as after folding). onnxruntime CPU,
1 thread, 480x640; every variant timed in each of --rounds interleaved rounds (this machine is noisy), median of the
rounds' p50s; PSNR vs the float torch model on the parity photos. The fastest portable layout (quality
permitting) is what exports write (toolkit.export.onnx.INT8_FORMAT).

    python benchmarks/onnx_int8_format.py [--style frost | --checkpoint PATH] [--runs 15] [--rounds 3]

Writes benchmarks/results/onnx_int8_format.{json,md}.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import os
import statistics
import tempfile
from pathlib import Path

from toolkit.bench.timing import bench_input, interleaved
from toolkit.export import ExportSpec, export_artifact, load_runner
from toolkit.fsutil import atomic_path, write_json
from toolkit.parity import ParityError

RESULTS = Path(__file__).resolve().parent / "results"
SIZE = (480, 640)


def fused_ops(path: Path) -> dict:
    """Op counts of the graph onnxruntime actually runs (after its QDQ fusions), to show what stayed float."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.log_severity_level = 1, 3
        so.optimized_model_filepath = str(Path(tmp, "opt.onnx"))
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        return dict(collections.Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style", default="frost")
    parser.add_argument("--checkpoint")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import toolkit.export.onnx as onnx_export
    from toolkit import __version__
    from toolkit.models import create_model
    from toolkit.zoo import load_style

    shipped = load_style(None if args.checkpoint else args.style, args.checkpoint).model.eval()
    # the shipped net, then its arch with each normalisation layout as deployed (random weights: speed and layout)
    layouts_of_norm = {"instance norm throughout (nano)": {"norm": "instance", "trunk_norm": None},
                       "trunk norm folded (nano_lite)": {"norm": "instance", "trunk_norm": "none"},
                       "no norm (nano_bn folded)": {"norm": "none", "trunk_norm": None}}
    nets = {args.checkpoint or args.style: shipped}
    nets.update({name: create_model(dataclasses.replace(shipped.config, **knobs)).eval()
                 for name, knobs in layouts_of_norm.items()})
    layouts = [("fp32", None)] + [(f"int8 {fmt}", fmt) for fmt in onnx_export.INT8_FORMATS]
    default, x, rows, runners = onnx_export.INT8_FORMAT, bench_input(*SIZE), [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for net_name, net in nets.items():
            for label, fmt in layouts:
                onnx_export.INT8_FORMAT = fmt or default
                dest = Path(tmp) / f"{len(rows)}.onnx"
                spec = ExportSpec(target="onnx", precision="int8" if fmt else "fp32", style="bench")
                try:
                    record = export_artifact(net, spec, dest)
                    psnr = record["parity"]["min_psnr_db"]
                except ParityError as exc:  # still timed: the table says why it cannot ship
                    record = export_artifact(net, spec, dest, check=False)
                    psnr = f"fails parity: {str(exc).split(': ', 2)[-1]}"
                runners[len(rows)] = load_runner(dest, threads=1)
                act = onnx_export.INT8_FORMATS[fmt][1] if fmt else "float"
                rows.append({"net": net_name, "variant": label, "format": fmt, "activations": act,
                             "bytes": record["bytes"], "psnr_db_vs_torch": psnr,
                             "ops_run": fused_ops(dest)})
        onnx_export.INT8_FORMAT = default
        timings = interleaved({i: (lambda run=run: run(x)) for i, run in runners.items()}, args.rounds, 3, args.runs)
    for i, row in enumerate(rows):
        row["p50_ms_rounds"] = [round(t.p50_ms, 2) for t in timings[i]]
        row["cpu_ms_rounds"] = [round(t.cpu_p50_ms, 2) for t in timings[i]]
        row["p50_ms"] = statistics.median(row["p50_ms_rounds"])
        row["cpu_ms"] = statistics.median(row["cpu_ms_rounds"])
        fp32 = next(r for r in rows if r["net"] == row["net"] and r["format"] is None)
        row["speedup_vs_fp32"] = round(fp32["p50_ms"] / row["p50_ms"], 3)
        row["cpu_speedup_vs_fp32"] = round(fp32["cpu_ms"] / row["cpu_ms"], 3)
    shippable = [r for r in rows if r["format"] and not isinstance(r["psnr_db_vs_torch"], str)]
    int8 = [r for r in shippable if r["net"] == next(iter(nets))]
    best = min(int8, key=lambda r: r["cpu_ms"])
    load = [round(v, 1) for v in os.getloadavg()]  # a busy machine inflates every number: say how busy it was
    data = {"load_average_1_5_15min": load, "size": list(SIZE), "threads": 1, "runs": args.runs,
            "rounds": args.rounds, "toolkit_version": __version__, "rows": rows,
            "fastest_int8_format_on_shipped_net": best["format"]}
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / "onnx_int8_format.json", data)
    lines = [f"# ONNX int8 layout (onnxruntime CPU, 1 thread, {SIZE[0]}x{SIZE[1]}, deploy form, "
             f"median of {args.rounds} interleaved rounds)", "",
             "| net | variant | activations | bytes | p50 ms | CPU ms | speed-up vs fp32 (wall / CPU) | "
             "PSNR dB vs torch | float ops left after fusion |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        left = {k: v for k, v in r["ops_run"].items() if k in ("Conv", "Add", "InstanceNormalization", "Pad")}
        lines.append(f"| {r['net']} | {r['variant']} | {r['activations']} | {r['bytes']} | {r['p50_ms']} | "
                     f"{r['cpu_ms']} | {r['speedup_vs_fp32']} / {r['cpu_speedup_vs_fp32']} | "
                     f"{r['psnr_db_vs_torch']} | {left if r['format'] else '-'} |")
    lines += ["", f"fastest int8 layout that passes parity on the shipped net (CPU time): **{best['format']}** "
              f"(load average while measuring: {load})"]
    with atomic_path(RESULTS / "onnx_int8_format.md") as tmp_md:
        tmp_md.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
