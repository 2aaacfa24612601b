"""Which ONNX int8 layout to ship: QDQ (s8 activations / s8 weights) or QOperator (u8 / s8)?

Both are static, per-channel, calibrated on the same photos (dynamic quantisation is never an option: ConvInteger is
~9x slower here). onnxruntime CPU, 1 thread, 480x640, p50 of repeats after warm-up; PSNR vs the float torch model on
the eval photos. The faster one (quality permitting) becomes toolkit.export.onnx.INT8_FORMAT.

    python benchmarks/onnx_int8_format.py [--arch nano | --checkpoint PATH] [--runs 15]

Writes benchmarks/results/onnx_int8_format.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from toolkit.bench.harness import bench_input, time_call
from toolkit.export import ExportSpec, export_artifact, load_runner
from toolkit.fsutil import atomic_path, write_json

RESULTS = Path(__file__).resolve().parent / "results"
SIZE = (480, 640)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="nano")
    parser.add_argument("--checkpoint")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    import toolkit.export.onnx as onnx_export
    from toolkit import __version__
    from toolkit.models import create_model
    from toolkit.zoo import load_style

    model = load_style(None, args.checkpoint).model if args.checkpoint else create_model(args.arch).eval()
    source = args.checkpoint or f"random {args.arch}"
    rows = []
    x = bench_input(*SIZE)
    with tempfile.TemporaryDirectory() as tmp:
        for label, precision, fmt in (("fp32", "fp32", None), ("int8 QDQ s8/s8", "int8", "qdq"),
                                      ("int8 QOperator u8/s8", "int8", "qoperator")):
            if fmt:
                onnx_export.INT8_FORMAT = fmt
            dest = Path(tmp) / f"{fmt or 'fp32'}.onnx"
            record = export_artifact(model, ExportSpec(target="onnx", precision=precision, style="bench"), dest)
            runner = load_runner(dest, threads=1)
            timing = time_call(lambda: runner(x), warmup=3, runs=args.runs)
            rows.append({"variant": label, "format": fmt, "bytes": record["bytes"], "p50_ms": round(timing.p50_ms, 2),
                         "p90_ms": round(timing.p90_ms, 2), "fps": round(timing.fps, 1),
                         "psnr_db_vs_torch": record["parity"]["min_psnr_db"]})
    fp32 = rows[0]["p50_ms"]
    for row in rows:
        row["speedup_vs_fp32"] = round(fp32 / row["p50_ms"], 3)
    int8 = [r for r in rows if r["format"]]
    best = min(int8, key=lambda r: r["p50_ms"])
    load = [round(v, 1) for v in os.getloadavg()]  # a busy machine inflates every number: say how busy it was
    data = {"load_average_1_5_15min": load, "source": source, "size": list(SIZE), "threads": 1, "runs": args.runs, "toolkit_version": __version__,
            "rows": rows, "fastest_int8_format": best["format"]}
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / "onnx_int8_format.json", data)
    lines = [f"# ONNX int8 layout (onnxruntime CPU, 1 thread, {SIZE[0]}x{SIZE[1]}, source: {source})", "",
             "| variant | bytes | p50 ms | p90 ms | fps | speed-up vs fp32 | PSNR dB vs torch |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['bytes']} | {r['p50_ms']} | {r['p90_ms']} | {r['fps']} | {r['speedup_vs_fp32']} "
              f"| {r['psnr_db_vs_torch']} |" for r in rows]
    lines += ["", f"fastest int8 layout: **{best['format']}** (load average while measuring: {load})"]
    with atomic_path(RESULTS / "onnx_int8_format.md") as tmp_md:
        tmp_md.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
