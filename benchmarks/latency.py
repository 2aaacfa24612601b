"""Latency of the compact presets vs johnson2016 on every runtime here (random weights: latency does not depend on
weight values). Writes benchmarks/results/latency.{json,md,png}.

    python benchmarks/latency.py [--quick]

Rows: nano, nano_lite (trunk batch norm folded at export), nano_bn (all batch norm, folded), caffe2go, fastchi
under onnxruntime CPU (fp32, int8; 1 and 2 threads; 240x320, 480x640, 720x1280), torch eager (fp32, 1 thread,
480x640), LiteRT (fp32, int8, 1 thread, 480x640) when its exporter is present, and the unavailable providers
(XNNPACK/CUDA EP, CoreML predict) as rows with their reason. Each row's speed-up is against johnson2016 fp32 timed
in the same run at the same target/provider/threads/size. GMAC/s is compared with the ISA peak estimate of the
core(s) and with a measured single-thread fp32 matmul (what a tuned GEMM reaches here).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PRESETS = ("nano", "nano_lite", "nano_bn", "caffe2go", "fastchi")


def matmul_gmacs(threads: int = 1, n: int = 1024, repeats: int = 10) -> float:
    """GMAC/s of a square fp32 matmul in torch (MKL/oneDNN): a practical peak for this core, under today's load."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.rand(n, n), torch.rand(n, n)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return n ** 3 / best / 1e9


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT))
    from toolkit.bench import Bench, BenchConfig, Subject, host_info
    from toolkit.bench.report import markdown_table, write_reports
    from toolkit.models import create_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="480x640 and 1 thread only, fewer runs")
    ap.add_argument("--out", default=str(RESULTS), help="results folder")
    args = ap.parse_args(argv)

    runs, warmup = (8, 2) if args.quick else (20, 3)
    sizes = ((480, 640),) if args.quick else ((240, 320), (480, 640), (720, 1280))
    threads = (1,) if args.quick else (1, 2)
    subjects = [Subject(name, "arch", model=create_model(name).eval()) for name in PRESETS]
    plans = [
        BenchConfig(targets=("onnx",), precisions=("fp32", "int8"), threads=threads, sizes=sizes, runs=runs,
                    warmup=warmup, reference_runs=5),
        BenchConfig(targets=("torch", "tflite"), precisions=("fp32", "int8"), sizes=((480, 640),), runs=runs,
                    warmup=warmup, reference_runs=3),
        BenchConfig(targets=("onnx", "coreml"), providers=("xnnpack", "cuda"), sizes=((480, 640),), runs=1,
                    warmup=0),
    ]
    rows = []
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="latency-") as workdir:
        bench = Bench(plans[0], Path(workdir))
        for plan in plans:
            rows += bench.run(subjects, plan)
            print(f"[{time.time() - t0:.0f}s] {len(rows)} rows", flush=True)
            write_reports(rows, Path(args.out) / "latency.json", partial=True)  # a kill keeps what was measured
    gemm = {t: matmul_gmacs(t) for t in threads}
    host = host_info()
    summary = {
        "matmul_fp32_gmacs": {str(t): g for t, g in gemm.items()},
        "isa_peak_fp32_gmacs_per_core": host.peak_fp32_gmacs,
        "isa_peak_int8_gmacs_per_core": host.peak_int8_gmacs,
        "seconds": time.time() - t0,
        "runs": runs, "warmup": warmup,
    }
    out = Path(args.out)
    write_reports(rows, out / "latency.json", None, out / "latency.png", summary=summary)
    md = out / "latency.md"
    from toolkit.bench.report import host_markdown
    from toolkit.fsutil import atomic_path

    gemm_text = ", ".join(f"{g:.1f} GMAC/s with {t} thread{'s' if t > 1 else ''}" for t, g in gemm.items())
    with atomic_path(md) as tmp:
        tmp.write_text(
            "# Latency: compact presets vs johnson2016 (random weights)\n\n"
            f"{host_markdown()}\nMeasured fp32 matmul (torch, 1024^3, best of 10): {gemm_text}. "
            "'% peak' in the table is against the ISA estimate above (per core x threads).\n\n"
            f"Protocol: {warmup} warm-up + {runs} timed runs per row (johnson2016 reference: 1 + 3..5), "
            "fps = 1000 / p50. Speed-up = johnson2016 fp32 p50 / row p50, same runtime/provider/threads/size, "
            "same run. Written by `python benchmarks/latency.py`.\n\n" + markdown_table(rows))
    print(markdown_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
