"""TFLite speed before / after the NHWC twin (issue 19 section 3), side by side with onnxruntime on the same net.

Before: the shipped TFLite files of a style (written by the exporter before the twin; read, never rewritten). After:
the same style exported now, fp32 and int8, into a temporary folder. onnxruntime: the shipped ONNX files of the
style. Every file is timed in rounds, interleaved, by the toolkit bench harness (the LiteRT interpreter runner and the
onnxruntime runner, NCHW float in / out) and every TFLite file also by `litert-benchmark` (ai-edge-litert's
CompiledModel tool, which also says whether XNNPACK takes the whole graph). Reports medians over rounds and ratios.

    python benchmarks/tflite_speed.py [--style starry_night] [--size 480x640] [--rounds 5] [--runs 10]

Writes benchmarks/results/tflite_speed.md and .json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def litert_benchmark(path: Path, threads: int, runs: int, warmup: int) -> dict:
    """One `litert-benchmark` run: {"median_ms", "fully_accelerated"} (or {"error"})."""
    exe = shutil.which("litert-benchmark", path=str(Path(sys.executable).parent)) or shutil.which("litert-benchmark")
    cmd = [exe] if exe else [sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        proc = subprocess.run(cmd + [f"--model={path}", f"--num_threads={threads}", f"--num_runs={runs}",
                                     f"--warmup_runs={warmup}", f"--result_json={out}"],
                              capture_output=True, text=True, timeout=600)
        if proc.returncode or not out.exists():
            return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
        data = json.loads(out.read_text())
    return {"median_ms": data["latency"]["median_ms"], "fully_accelerated": data["fully_accelerated"]}


def fidelity(reference, path: Path, size) -> dict:
    """max |file - torch| and min PSNR on the parity photos (the 8 shared eval photos, or the packaged ones)."""
    from toolkit.parity import parity_images, psnr
    from toolkit.runtime import load_runner

    runner = load_runner(path)
    worst_abs, worst_psnr = 0.0, float("inf")
    for x in parity_images(tuple(size), 8):
        with torch.no_grad():
            ref = reference(torch.from_numpy(x)).numpy()
        out = runner(x)
        worst_abs = max(worst_abs, float(np.abs(out - ref).max()))
        worst_psnr = min(worst_psnr, psnr(out, ref))
    return {"max_abs": worst_abs, "min_psnr_db": round(worst_psnr, 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style", default="starry_night")
    parser.add_argument("--size", default="480x640")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "tflite_speed"))
    args = parser.parse_args(argv)

    from toolkit.bench.host import host_info, library_versions
    from toolkit.bench.rows import measure
    from toolkit.checkpoint import load_checkpoint
    from toolkit.export import parse_size
    from toolkit.export.base import ExportSpec
    from toolkit.export.calibration import calibration_paths
    from toolkit.export.nhwc import fully_accelerated, op_counts
    from toolkit.export.tflite import export as tflite_export
    from toolkit.models.deploy import deploy_form
    from toolkit.runtime import load_runner

    size = parse_size(args.size)
    h, w = size
    trained = load_checkpoint(ROOT / "toolkit" / "zoo" / f"{args.style}.safetensors").model.eval()
    deployed, rewrite = deploy_form(trained)
    shipped = ROOT / "exported" / args.style
    files = {
        "tflite fp32 before": shipped / f"{args.style}.{h}x{w}.tflite",
        "tflite int8 before": shipped / f"{args.style}.int8.{h}x{w}.tflite",
        "onnxruntime fp32": shipped / f"{args.style}.onnx",
        "onnxruntime int8": shipped / f"{args.style}.int8.onnx",
    }
    tmp = Path(tempfile.mkdtemp(prefix="tflite_speed_"))
    calibration = tuple(str(p) for p in calibration_paths(()))
    for precision in ("fp32", "int8"):
        dest = tmp / f"{args.style}.{precision}.{h}x{w}.tflite"
        t0 = time.perf_counter()
        tflite_export(deployed, ExportSpec(target="tflite", precision=precision, sizes=(size,), style=args.style,
                                           calibration=calibration), dest)
        print(f"exported {dest.name} in {time.perf_counter() - t0:.0f} s", flush=True)
        files[f"tflite {precision} after"] = dest
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing:
        print(f"missing: {', '.join(missing)}", file=sys.stderr)
        return 2

    runners = {name: load_runner(path, threads=args.threads) for name, path in files.items()}
    harness: dict[str, list[float]] = {name: [] for name in files}
    bench_tool: dict[str, list[float]] = {name: [] for name in files if name.startswith("tflite")}
    accelerated: dict[str, bool] = {}
    for r in range(args.rounds):
        for name, runner in runners.items():
            row = measure(runner, subject=name, target=name.split()[0], precision=name.split()[1],
                          provider="cpu", threads=args.threads, size=size, warmup=args.warmup, runs=args.runs)
            harness[name].append(row.p50_ms)
        for name in bench_tool:
            res = litert_benchmark(files[name], args.threads, args.runs, args.warmup)
            if "median_ms" in res:
                bench_tool[name].append(res["median_ms"])
                accelerated[name] = res["fully_accelerated"]
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {harness[n][-1]:.1f}" for n in harness), flush=True)

    def med(xs):
        return round(statistics.median(xs), 2) if xs else None

    rows = []
    for name, path in files.items():
        data = path.read_bytes() if path.suffix == ".tflite" else None
        rows.append({
            "subject": name, "file": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name,
            "harness_p50_ms": med(harness[name]), "harness_rounds_ms": [round(v, 2) for v in harness[name]],
            "litert_benchmark_median_ms": med(bench_tool.get(name, [])),
            "litert_benchmark_rounds_ms": [round(v, 2) for v in bench_tool.get(name, [])],
            "fully_accelerated": accelerated.get(name, fully_accelerated(path) if data else None),
            "ops": op_counts(data) if data else None,
            "op_total": sum(op_counts(data).values()) if data else None,
            **fidelity(deployed, path, size),
        })
    by = {r["subject"]: r for r in rows}

    def ratio(a, b, key="harness_p50_ms"):
        x, y = by[a][key], by[b][key]
        return round(x / y, 2) if x and y else None

    ratios = {
        "tflite fp32 after / onnxruntime fp32 (harness)": ratio("tflite fp32 after", "onnxruntime fp32"),
        "tflite fp32 before / onnxruntime fp32 (harness)": ratio("tflite fp32 before", "onnxruntime fp32"),
        "tflite fp32 after / int8 after (harness)": ratio("tflite fp32 after", "tflite int8 after"),
        "tflite fp32 after / int8 after (litert-benchmark)": ratio("tflite fp32 after", "tflite int8 after",
                                                                    "litert_benchmark_median_ms"),
        "tflite fp32 before / after (harness)": ratio("tflite fp32 before", "tflite fp32 after"),
        "tflite int8 before / after (harness)": ratio("tflite int8 before", "tflite int8 after"),
        "onnxruntime fp32 / int8 (harness)": ratio("onnxruntime fp32", "onnxruntime int8"),
    }
    report = {"style": args.style, "size": f"{h}x{w}", "threads": args.threads, "rounds": args.rounds,
              "runs_per_round": args.runs, "warmup": args.warmup, "deploy_rewrite": rewrite,
              "host": host_info().to_dict(), "libraries": library_versions(), "rows": rows, "ratios": ratios}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    print(out.with_suffix(".md").read_text())
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def markdown(report: dict) -> str:
    lines = [f"# TFLite speed: {report['style']} at {report['size']}, {report['threads']} thread(s)", "",
             "Produced by `python benchmarks/tflite_speed.py`. \"before\" = the shipped files (exporter before the "
             "NHWC twin), \"after\" = exported now; onnxruntime = the shipped ONNX files of the same style. "
             f"{report['rounds']} interleaved rounds of {report['runs_per_round']} runs (after "
             f"{report['warmup']} warm-up); medians over rounds. Fidelity vs the torch deploy form on 8 photos.", "",
             "| subject | harness p50 ms | litert-benchmark median ms | fully accelerated | ops | max_abs | min PSNR dB |",
             "|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        fa = "" if r["fully_accelerated"] is None else str(r["fully_accelerated"])
        lines.append(f"| {r['subject']} | {r['harness_p50_ms']} | {r['litert_benchmark_median_ms'] or ''} | {fa} | "
                     f"{r['op_total'] or ''} | {r['max_abs']:.2g} | {r['min_psnr_db']} |")
    lines += ["", "| ratio | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report["ratios"].items()]
    lines += ["", "## Op counts", ""]
    for r in report["rows"]:
        if r["ops"]:
            lines.append(f"- {r['subject']}: " + ", ".join(f"{k} {v}" for k, v in r["ops"].items()))
    host = report["host"]
    lines += ["", f"Host: {host.get('cpu_model', '')} ({host.get('cores', '')} cores); shared with other jobs, so "
              "absolute times move between runs; the ratios come from interleaved rounds.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
