"""Quality against speed, to choose the preset a style ships on: for each trained point (arch + checkpoint, the same
style and recipe), style strength and grain on unseen photos vs fps of its ONNX fp32 / int8 export at 480x640,
1 thread, onnxruntime CPU (CPU clock; every point timed round after round in one run).
Writes benchmarks/results/pareto.{json,md,png}; `toolkit archs` shows each preset's measured point.

    python benchmarks/pareto.py --style-image ../shared/data/styles/great_wave.jpg \\
        --point nano=toolkit/zoo/great_wave.safetensors --point nano_fine=runs/x/x.safetensors [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SIZE = (480, 640)


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch

    from quality import photos
    from toolkit.bench.timing import bench_input, interleaved
    from toolkit.checkpoint import load_checkpoint
    from toolkit.export import ExportSpec, export_artifact
    from toolkit.flops import count_macs
    from toolkit.fsutil import write_json
    from toolkit.losses import measuring_loss
    from toolkit.metrics import look_row
    from toolkit.runtime import load_runner

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--style-image", required=True)
    ap.add_argument("--point", action="append", required=True, metavar="LABEL=CKPT")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--max-side", type=int, default=512)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    loss = measuring_loss(args.style_image)
    images = photos(args.max_side)
    points, calls = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        x = bench_input(*SIZE)
        for item in args.point:
            label, path = item.split("=", 1)
            ckpt = load_checkpoint(path)
            model = ckpt.model.eval()
            rows = [look_row(model, loss, rgb)[0] for _, rgb in images]
            point = {"label": label, "arch": ckpt.meta["train_config"]["arch"], "checkpoint": Path(path).name,
                     "steps": ckpt.meta.get("step") or ckpt.meta.get("training", {}).get("steps"),
                     "gmac_480x640": count_macs(model, *SIZE) / 1e9,
                     **{k: float(np.mean([r[k] for r in rows])) for k in rows[0]}}
            points.append(point)
            for precision in ("fp32", "int8"):
                dest = Path(tmp) / f"{label}.{precision}.onnx"
                export_artifact(model, ExportSpec("onnx", precision, style=label), dest, check=False)
                runner = load_runner(dest, threads=1)
                calls[(label, precision)] = lambda r=runner: r(x)
        timings = interleaved(calls, args.rounds, warmup=3, runs=args.runs)
    for p in points:
        for precision in ("fp32", "int8"):
            cpu_ms = float(np.median([t.cpu_p50_ms for t in timings[(p["label"], precision)]]))
            p[f"fps_{precision}"] = 1000.0 / cpu_ms
    write_json(RESULTS / "pareto.json", {"style_image": Path(args.style_image).name, "size": list(SIZE),
                                         "photos": len(images), "points": points})
    lines = ["# Quality vs speed (Pareto)", "",
             f"Style {Path(args.style_image).name}; {len(images)} unseen photos (eval + Sintel frames, <= "
             f"{args.max_side} px); fps: onnxruntime CPU, 1 thread, {SIZE[0]}x{SIZE[1]}, CPU clock, median of "
             f"{args.rounds} interleaved rounds. Lower style strength = more stylised; grain 1.0 = none (photos "
             f"{np.mean([p['photo_grain'] for p in points]):.3f}).", "",
             "| point | arch | steps | GMAC | style strength | grain | edge stripe | content | fps fp32 | fps int8 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {p['label']} | {p['arch']} | {p['steps']} | {p['gmac_480x640']:.2f} | {p['style_strength']:.3f} | "
              f"{p['grain']:.3f} | {p['edge_stripe']:.3f} | {p['content']:.2f} | {p['fps_fp32']:.1f} | "
              f"{p['fps_int8']:.1f} |" for p in points]
    (RESULTS / "pareto.md").write_text("\n".join(lines) + "\n")
    write_archs_points(points, Path(args.style_image).stem)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    sc = ax.scatter([p["fps_fp32"] for p in points], [p["style_strength"] for p in points],
                    c=[p["grain"] for p in points], cmap="viridis_r", s=70)
    for p in points:
        ax.annotate(p["label"], (p["fps_fp32"], p["style_strength"]), textcoords="offset points", xytext=(5, 4))
    ax.set_xlabel(f"fps fp32, {SIZE[0]}x{SIZE[1]}, 1 thread (onnxruntime)")
    ax.set_ylabel("style strength (lower = more stylised)")
    fig.colorbar(sc, label="grain (even/odd gradient ratio)")
    fig.tight_layout()
    fig.savefig(RESULTS / "pareto.png", dpi=100)
    print((RESULTS / "pareto.md").read_text())
    return 0


def write_archs_points(points: list[dict], style: str) -> None:
    """toolkit/models/pareto.json for `toolkit archs`: the points labelled with their arch's name, i.e. trained with
    the one recipe every preset shared here (extra points, e.g. a shipped style, stay in pareto.md only)."""
    from toolkit.fsutil import write_json

    same_recipe = [p for p in points if p["label"] == p["arch"]]
    write_json(ROOT / "toolkit" / "models" / "pareto.json", {"style": style, "points": [
        {k: p[k] for k in ("arch", "label", "steps", "style_strength", "grain", "fps_fp32", "fps_int8")}
        for p in same_recipe]})


if __name__ == "__main__":
    raise SystemExit(main())
