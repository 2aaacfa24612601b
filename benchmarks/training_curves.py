"""Quality reached against training steps for the runs behind the shipped styles: each run's logged losses (style,
content, grain; smoothed) against its step, one panel per term, one line per style.
Writes benchmarks/results/training_curves.{png,json}.

    python benchmarks/training_curves.py runs/r_frost runs/r_fire ...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TERMS = ("style", "content", "grain")


def smooth(values: list[float], k: int = 15) -> list[float]:
    v = np.asarray(values, np.float64)
    if len(v) < k:
        return v.tolist()
    return np.convolve(np.pad(v, (k // 2, k - 1 - k // 2), mode="edge"), np.ones(k) / k, mode="valid").tolist()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run folders (runs/<name>), each with <name>.json or last.json")
    args = ap.parse_args(argv)
    curves = {}
    for run in args.runs:
        meta = run / f"{run.name}.json"
        meta = meta if meta.is_file() else run / "last.json"
        if not meta.is_file():
            print(f"training_curves: {run} has no {run.name}.json or last.json; pass a run folder", file=sys.stderr)
            return 2
        history = json.loads(meta.read_text())["history"]
        curves[run.name] = {"step": [h["step"] for h in history],
                            **{t: smooth([h[t] for h in history]) for t in TERMS if history and t in history[0]}}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TERMS), figsize=(4.2 * len(TERMS), 3.4))
    for ax, term in zip(axes, TERMS):
        for name, c in curves.items():
            if term in c:
                ax.plot(c["step"], c[term], label=name)
        ax.set_title(f"{term} loss (smoothed)")
        ax.set_xlabel("step")
        ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / "training_curves.png", dpi=90)
    (RESULTS / "training_curves.json").write_text(json.dumps(curves) + "\n")
    print(RESULTS / "training_curves.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
