"""onnxruntime time of the shipped ONNX files against the same files at an earlier git revision, side by side.

    python benchmarks/onnx_ab.py --rev HEAD~3 [--style frost ...] [--rounds 15] [--runs 10] [--label NAME]

Every style's fp32 and int8 file as shipped now and as committed at --rev (read with `git show`, nothing checked
out) are timed by toolkit.bench.timing.interleaved in the same rounds: onnxruntime CPU EP, 1 thread, 480x640, CPU
time per run (p50 of --runs after 2 warm-up). Ratios are the median over rounds of each round's ratio: this shared
host drifts 10-20% between rounds, which a ratio of two medians carries. Writes
benchmarks/results/onnx_ab_<label>.md / .json.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SIZE = (480, 640)


def file_at(rev: str, relpath: str, dest: Path) -> Path:
    """`relpath` as committed at `rev`, written to `dest`."""
    data = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{relpath}"], capture_output=True, check=True).stdout
    dest.write_bytes(data)
    return dest


def main(argv=None) -> int:
    from toolkit.bench.host import host_info, library_versions
    from toolkit.bench.timing import bench_input, interleaved, paired_ratio
    from toolkit.fsutil import atomic_path, write_json
    from toolkit.runtime import load_runner
    from toolkit.zoo import shipped_styles

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rev", required=True, help="git revision whose ONNX files are 'before'")
    ap.add_argument("--style", nargs="+", default=None)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--label", default="latest")
    args = ap.parse_args(argv)
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.rev], capture_output=True, text=True,
                         check=True).stdout.strip()
    styles = args.style or shipped_styles()
    x = bench_input(*SIZE)
    with tempfile.TemporaryDirectory() as tmp:
        calls = {}
        for style in styles:
            for precision, name in (("fp32", f"{style}.onnx"), ("int8", f"{style}.int8.onnx")):
                rel = f"exported/{style}/{name}"
                for when, path in (("before", file_at(rev, rel, Path(tmp, f"{rev}_{name}"))), ("now", ROOT / rel)):
                    runner = load_runner(path, threads=1)
                    calls[(style, precision, when)] = (lambda r=runner: r(x))
        timings = interleaved(calls, args.rounds, warmup=2, runs=args.runs)

    def ratio(slow, fast):
        return round(paired_ratio([t.cpu_p50_ms for t in slow], [t.cpu_p50_ms for t in fast]), 3)

    rows = []
    for style in styles:
        t = {(p, w): timings[(style, p, w)] for p in ("fp32", "int8") for w in ("before", "now")}
        ms = {k: round(statistics.median(v.cpu_p50_ms for v in t[k]), 2) for k in t}
        rows.append({"style": style, **{f"{p} {w} ms": ms[(p, w)] for p, w in t},
                     "fp32 before / now": ratio(t[("fp32", "before")], t[("fp32", "now")]),
                     "int8 before / now": ratio(t[("int8", "before")], t[("int8", "now")]),
                     "int8 speed-up before": ratio(t[("fp32", "before")], t[("int8", "before")]),
                     "int8 speed-up now": ratio(t[("fp32", "now")], t[("int8", "now")])})
    report = {"rev": rev, "size": "x".join(map(str, SIZE)), "threads": 1, "rounds": args.rounds, "runs": args.runs,
              "host": host_info().to_dict(), "libraries": library_versions(), "rows": rows}
    out = RESULTS / f"onnx_ab_{args.label}"
    write_json(out.with_suffix(".json"), report)
    keys = [k for k in rows[0] if k != "style"]
    lines = [f"# onnxruntime: shipped ONNX files now vs at {rev} (480x640, 1 thread)", "",
             f"Produced by `python benchmarks/onnx_ab.py --rev {args.rev}`: {args.rounds} interleaved rounds of "
             f"{args.runs} runs; times are CPU-time medians over rounds, ratios the median of each round's ratio. "
             f"Host: {report['host'].get('cpu_model', '')}.", "",
             "| style | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    lines += [f"| {r['style']} | " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    with atomic_path(out.with_suffix(".md")) as tmp_md:
        tmp_md.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
