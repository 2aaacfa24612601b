"""TFLite speed before / after an exporter change (issue 19 section 3), side by side with onnxruntime on the same net.

Before: the shipped TFLite files of a style (as the exporter last wrote them; read, never rewritten). After:
the same style exported now, fp32 and int8, into a temporary folder. onnxruntime: the shipped ONNX files of the
style. Every file is timed in rounds, interleaved, by the toolkit bench harness (the LiteRT interpreter runner on an
NHWC frame, the onnxruntime runner on an NCHW one: each file's own layout, as an app feeds it) and every TFLite file
also by `litert-benchmark` (ai-edge-litert's CompiledModel tool, which also says whether XNNPACK takes the whole
graph). Reports medians over rounds and ratios.

    python benchmarks/tflite_speed.py [--style starry_night] [--size 480x640] [--rounds 5] [--runs 10]
    python benchmarks/tflite_speed.py --shipped [--style frost fire ...]   # every style by default

Writes benchmarks/results/tflite_speed.md and .json. With --shipped: the shipped fp32 and int8 files of each style
(TFLite and ONNX, nothing re-exported), all interleaved in the same rounds; writes tflite_speed_shipped.md / .json.
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
    parser.add_argument("--style", nargs="+", default=None, help="default: starry_night; with --shipped every style")
    parser.add_argument("--shipped", action="store_true", help="time the shipped files only (see above)")
    parser.add_argument("--size", default="480x640")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.shipped:
        return shipped_report(args)
    args.style = (args.style or ["starry_night"])[0]
    args.out = args.out or str(RESULTS / "tflite_speed")

    from toolkit.bench.host import host_info, library_versions
    from toolkit.checkpoint import load_checkpoint
    from toolkit.export import parse_size
    from toolkit.export.base import ExportSpec
    from toolkit.export.calibration import calibration_paths
    from toolkit.export.tflite import export as tflite_export
    from toolkit.models.deploy import deploy_form

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

    rows = timed_rows(files, {name: deployed for name in files}, size, args)
    ratio = ratios_of(rows)

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


def ratios_of(rows: list[dict]):
    """ratio(a, b[, key]): subject a's time over subject b's (harness p50 by default), 2 decimals, or None: the
    median over rounds of the two files' time in the same round (toolkit.bench.timing.paired_ratio), or the ratio
    of medians where rounds were not kept."""
    from toolkit.bench.timing import paired_ratio

    by = {r["subject"]: r for r in rows}

    def ratio(a, b, key="harness_p50_ms"):
        rounds = key.replace("p50_ms", "rounds_ms").replace("median_ms", "rounds_ms")
        xs, ys = by[a].get(rounds) or [], by[b].get(rounds) or []
        if xs and len(xs) == len(ys) and all(xs) and all(ys):
            return round(paired_ratio(xs, ys), 2)
        x, y = by[a][key], by[b][key]
        return round(x / y, 2) if x and y else None

    return ratio


def timed_rows(files: dict, references: dict, size, args) -> list[dict]:
    """Every file timed in the same interleaved rounds: the bench harness's p50 (LiteRT interpreter / onnxruntime
    runner) and, for TFLite files, `litert-benchmark`'s median; medians over rounds, op counts and fidelity."""
    from toolkit.bench.rows import measure
    from toolkit.export.nhwc import fully_accelerated, op_counts
    from toolkit.runtime import load_runner

    runners = {name: load_runner(path, threads=args.threads) for name, path in files.items()}
    harness: dict[str, list[float]] = {name: [] for name in files}
    bench_tool: dict[str, list[float]] = {name: [] for name in files if files[name].suffix == ".tflite"}
    accelerated: dict[str, bool] = {}
    for r in range(args.rounds):
        for name, runner in runners.items():
            row = measure(runner, subject=name, target=files[name].suffix[1:], precision="", provider="cpu",
                          threads=args.threads, size=size, warmup=args.warmup, runs=args.runs)
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
            **fidelity(references[name], path, size),
        })
    return rows


def shipped_report(args) -> int:
    """--shipped: each style's shipped TFLite and ONNX files, fp32 and int8, side by side in the same rounds."""
    from toolkit.bench.host import host_info, library_versions
    from toolkit.checkpoint import load_checkpoint
    from toolkit.export import parse_size
    from toolkit.zoo import shipped_styles

    size = parse_size(args.size)
    h, w = size
    styles = args.style or shipped_styles()
    files, references = {}, {}
    for style in styles:
        trained = load_checkpoint(ROOT / "toolkit" / "zoo" / f"{style}.safetensors").model.eval()
        folder = ROOT / "exported" / style
        for name, path in ((f"{style} tflite fp32", folder / f"{style}.{h}x{w}.tflite"),
                           (f"{style} tflite int8", folder / f"{style}.int8.{h}x{w}.tflite"),
                           (f"{style} onnxruntime fp32", folder / f"{style}.onnx"),
                           (f"{style} onnxruntime int8", folder / f"{style}.int8.onnx")):
            if not path.exists():
                print(f"missing: {path}", file=sys.stderr)
                return 2
            files[name], references[name] = path, trained
    rows = timed_rows(files, references, size, args)
    per_style = shipped_ratios(rows, styles)
    report = {"styles": styles, "size": f"{h}x{w}", "threads": args.threads, "rounds": args.rounds,
              "runs_per_round": args.runs, "warmup": args.warmup, "host": host_info().to_dict(),
              "libraries": library_versions(), "rows": rows, "per_style": per_style}
    out = Path(args.out or RESULTS / "tflite_speed_shipped")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    out.with_suffix(".md").write_text(shipped_markdown(report))
    print(out.with_suffix(".md").read_text())
    return 0


def shipped_ratios(rows: list[dict], styles: list[str]) -> list[dict]:
    ratio = ratios_of(rows)
    return [{"style": s,
             "tflite int8 speed-up (harness)": ratio(f"{s} tflite fp32", f"{s} tflite int8"),
             "tflite int8 speed-up (litert-benchmark)": ratio(f"{s} tflite fp32", f"{s} tflite int8",
                                                              "litert_benchmark_median_ms"),
             "tflite fp32 / onnxruntime fp32": ratio(f"{s} tflite fp32", f"{s} onnxruntime fp32"),
             "onnxruntime int8 speed-up": ratio(f"{s} onnxruntime fp32", f"{s} onnxruntime int8")}
            for s in styles]


def shipped_markdown(report: dict) -> str:
    keys = [k for k in report["per_style"][0] if k != "style"]
    lines = [f"# Shipped TFLite and ONNX files at {report['size']}, {report['threads']} thread(s)", "",
             "Produced by `python benchmarks/tflite_speed.py --shipped`: every style's shipped fp32 and int8 files, "
             f"{report['rounds']} interleaved rounds of {report['runs_per_round']} runs (after {report['warmup']} "
             "warm-up), all in one run; times are medians over rounds, ratios the median of each round's ratio. "
             "Harness = the toolkit bench harness (LiteRT interpreter with XNNPACK on an NHWC frame / onnxruntime "
             "CPU on an NCHW one); litert-benchmark = ai-edge-litert's CompiledModel tool. Fidelity: worst of 8 "
             "photos against the trained net. Goals (issue 19): TFLite int8 >= 1.3x its fp32, TFLite fp32 within "
             "1.3x of onnxruntime fp32, onnxruntime int8 >= 1.5x its fp32.", "",
             "| style | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for r in report["per_style"]:
        lines.append(f"| {r['style']} | " + " | ".join(f"{r[k]}" for k in keys) + " |")
    lines += ["", "| subject | harness p50 ms | litert-benchmark median ms | fully accelerated | ops | min PSNR dB |",
              "|---|---|---|---|---|---|"]
    for r in report["rows"]:
        fa = "" if r["fully_accelerated"] is None else str(r["fully_accelerated"])
        lines.append(f"| {r['subject']} | {r['harness_p50_ms']} | {r['litert_benchmark_median_ms'] or ''} | {fa} | "
                     f"{r['op_total'] or ''} | {r['min_psnr_db']} |")
    host = report["host"]
    lines += ["", f"Host: {host.get('cpu_model', '')} ({host.get('cores', '')} cores); absolute times move between "
              "runs on this shared host; the ratios come from interleaved rounds.", ""]
    return "\n".join(lines)


def markdown(report: dict) -> str:
    lines = [f"# TFLite speed: {report['style']} at {report['size']}, {report['threads']} thread(s)", "",
             "Produced by `python benchmarks/tflite_speed.py`. \"before\" = the shipped files (as the exporter "
             "last wrote them), \"after\" = exported now; onnxruntime = the shipped ONNX files of the same style. "
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
