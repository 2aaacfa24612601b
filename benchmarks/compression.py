"""Compression benchmark: onnxruntime CPU, 1 thread, 480x640 (median of repeats after warm-up).

Goals (issue 5): 50%-pruned >= 1.8x faster than unpruned with style loss within +10%; int8 >= 1.5x faster than fp32
with PSNR >= 32 dB vs fp32. Also measures what instance norm costs int8: the same net with norm="none" (which is
exactly what a norm="batch" net becomes after `toolkit.compress.fold.fold_batchnorm`) at fp32 and int8.

    python benchmarks/compression.py [--checkpoint runs/frost/frost.safetensors] [--repeats 15]

Writes benchmarks/results/compression.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from toolkit.checkpoint import load_checkpoint
from toolkit.compress.prune import prune_model
from toolkit.compress.quality import Candidate, eval_images, evaluate
from toolkit.config import TrainConfig
from toolkit.export import ExportSpec, export_artifact, load_runner
from toolkit.flops import count_macs
from toolkit.fsutil import atomic_path, write_json
from toolkit.models import create_model, count_params
from toolkit.paths import shared_data
from toolkit.train import style_loss

RESULTS = Path(__file__).resolve().parent / "results"
SIZE = (480, 640)
GOALS = {"prune_speedup": 1.8, "prune_style_change_pct": 10.0, "int8_speedup": 1.5, "int8_psnr_db": 32.0}


def latency_ms(path: Path, repeats: int, warmup: int = 3) -> dict:
    runner = load_runner(path, threads=1)
    x = np.random.default_rng(0).random((1, 3, *SIZE), dtype=np.float32)
    for _ in range(warmup):
        runner(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        runner(x)
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return {"p50_ms": statistics.median(times), "p90_ms": times[int(0.9 * (len(times) - 1))],
            "fps": 1e3 / statistics.median(times), "repeats": repeats, "warmup": warmup}


def export(model, name: str, precision: str, out: Path) -> Path:
    dest = out / f"{name}.{precision}.onnx"
    export_artifact(model, ExportSpec(target="onnx", precision=precision, style=name), dest, check=False)
    return dest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_ckpt = Path("runs/frost/frost.safetensors")
    ap.add_argument("--checkpoint", default=str(default_ckpt) if default_ckpt.is_file() else None,
                    help="trained float checkpoint (default runs/frost/frost.safetensors; else a random nano net)")
    ap.add_argument("--pruned", help="an already pruned (and fine-tuned) checkpoint of --checkpoint to measure "
                    "instead of pruning here without fine-tune")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--eval-size", type=int, default=256, help="long side of the eval photos for quality")
    args = ap.parse_args(argv)

    if args.checkpoint:
        ckpt = load_checkpoint(args.checkpoint)
        model, source = ckpt.model, args.checkpoint
        cfg = TrainConfig.from_dict(ckpt.meta["train_config"]) if "train_config" in ckpt.meta else TrainConfig()
    else:
        model, source, cfg = create_model("nano").eval(), "random nano (no trained checkpoint yet)", TrainConfig()
        ckpt = None
    if not cfg.style_image or not Path(cfg.style_image).is_file():
        cfg = dataclasses.replace(cfg, style_image=str(shared_data("styles", "frost.png")))
    pruned = load_checkpoint(args.pruned).model if args.pruned else prune_model(model, 0.5)
    variants = {"float": model, "pruned50": pruned}
    for norm in ("none",):
        if model.config.norm != norm:
            variants[f"norm_{norm}"] = create_model(dataclasses.replace(model.config, norm=norm)).eval()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = {}
        for name, net in variants.items():
            for precision in ("fp32", "int8"):
                path = export(net, name, precision, tmp)
                paths[(name, precision)] = path
                rows.append({"model": name, "precision": precision, "widths": list(net.config.widths),
                             "norm": net.config.norm, "params": count_params(net), "macs": count_macs(net, *SIZE),
                             "bytes": path.stat().st_size, **latency_ms(path, args.repeats)})
                print(json.dumps(rows[-1]))
        # quality: style-loss change of pruning, PSNR of int8 vs fp32, with the shared VGG19 loss net
        from toolkit.checkpoint import Checkpoint

        loss_fn = style_loss(cfg)
        images = eval_images(None, args.eval_size)
        reference = Checkpoint(model=model, meta={})
        cands = [Candidate("pruned50", str(paths[("pruned50", "fp32")]), "onnx",
                           load_runner(paths[("pruned50", "fp32")])),
                 Candidate("int8", str(paths[("float", "int8")]), "onnx", load_runner(paths[("float", "int8")])),
                 Candidate("pruned50_int8", str(paths[("pruned50", "int8")]), "onnx",
                           load_runner(paths[("pruned50", "int8")]))]
        quality, _ = evaluate(cands, reference, images, loss_fn)
    q = {r.name: dataclasses.asdict(r) for r in quality}
    fps = {(r["model"], r["precision"]): r["fps"] for r in rows}
    summary = {
        "prune_speedup": fps[("pruned50", "fp32")] / fps[("float", "fp32")],
        "prune_style_change_pct": q["pruned50"]["style_change_pct"],
        "int8_speedup": fps[("float", "int8")] / fps[("float", "fp32")],
        "int8_psnr_db": q["int8"]["psnr_db"],
    }
    if ("norm_none", "int8") in fps:
        summary["norm_none_int8_speedup"] = fps[("norm_none", "int8")] / fps[("norm_none", "fp32")]
        summary["norm_none_vs_instance_fp32_speedup"] = fps[("norm_none", "fp32")] / fps[("float", "fp32")]
        summary["norm_none_vs_instance_int8_speedup"] = fps[("norm_none", "int8")] / fps[("float", "int8")]
    goals = {
        "prune_speedup": summary["prune_speedup"] >= GOALS["prune_speedup"],
        "prune_style_change_pct": summary["prune_style_change_pct"] <= GOALS["prune_style_change_pct"],
        "int8_speedup": summary["int8_speedup"] >= GOALS["int8_speedup"],
        "int8_psnr_db": summary["int8_psnr_db"] >= GOALS["int8_psnr_db"],
    }
    import onnxruntime

    result = {"source": source, "pruned_source": args.pruned or "prune_model(sparsity=0.5, l1), no fine-tune",
              "size": list(SIZE), "threads": 1, "runtime": f"onnxruntime {onnxruntime.__version__} CPU",
              "arch": dataclasses.asdict(model.config), "rows": rows, "quality": q, "summary": summary,
              "goals": GOALS, "goals_met": goals, "style_image": cfg.style_image, "loss_net": cfg.loss.loss_net}
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "compression.json", result)
    md = [f"# Compression benchmark ({result['runtime']}, 1 thread, {SIZE[0]}x{SIZE[1]})", "",
          f"source: {source}; pruned: {result['pruned_source']}", "",
          "| model | precision | norm | widths | params | GMAC | bytes | p50 ms | p90 ms | fps |", "|" + "---|" * 10]
    for r in rows:
        md.append(f"| {r['model']} | {r['precision']} | {r['norm']} | {r['widths']} | {r['params']} | "
                  f"{r['macs'] / 1e9:.3f} | {r['bytes']} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['fps']:.1f} |")
    md += ["", "| quality vs float (eval photos) | PSNR dB | style loss change % | content loss change % |",
           "|---|---|---|---|"]
    for name, r in q.items():
        md.append(f"| {name} | {r['psnr_db']:.2f} | {r['style_change_pct']:+.1f} | {r['content_change_pct']:+.1f} |")
    md += ["", "| goal | target | measured | met |", "|---|---|---|---|"]
    for k, target in GOALS.items():
        md.append(f"| {k} | {target} | {summary[k]:.3g} | {'yes' if goals[k] else 'NO'} |")
    for k in ("norm_none_int8_speedup", "norm_none_vs_instance_fp32_speedup", "norm_none_vs_instance_int8_speedup"):
        if k in summary:
            md.append(f"| {k} (info) | - | {summary[k]:.3g} | - |")
    with atomic_path(RESULTS / "compression.md") as tmp_md:
        tmp_md.write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
