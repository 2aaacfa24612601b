"""Training throughput per preset, loss-encoder precision and loss configuration: images/s at 256x256 (batch 4, VGG19
loss) and the fraction of step time spent waiting for data. Not a test: writes
benchmarks/results/train_throughput.{json,md}.

    python benchmarks/train_throughput.py [--steps 6] [--workers 2] [--archs nano,caffe2go] [--precisions fp32,bf16]
        [--losses relu3_1,relu3_4,shipped]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch

from toolkit.config import LossConfig, TrainConfig
from toolkit.models import ARCHS
from toolkit.paths import shared_data
from toolkit.train import train

OUT = Path(__file__).resolve().parent / "results"
DEEP = ("relu1_1", "relu1_2", "relu2_1", "relu2_2", "relu3_1", "relu3_2", "relu3_3", "relu3_4")
LOSSES = {  # the loss configurations whose cost a recipe choice needs
    "relu3_1": {},
    "relu3_4": {"style_layers": DEEP},
    "relu3_4+half_scale": {"style_layers": DEEP, "style_scales": (1.0, 0.5)},
    "relu3_4+shift": {"style_layers": DEEP, "shift_weight": 2000.0},
    "shipped": {"style_layers": DEEP, "style_balance": True, "grain_weight": 1000.0},  # the reship recipe
}


def measure(arch: str, precision: str, steps: int, workers: int, style: Path, content: Path,
            loss: str = "relu3_1") -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(name=arch, style_image=str(style), content_dir=str(content), arch=arch, steps=steps,
                          size=256, batch=4, workers=workers, sample_every=0, checkpoint_every=steps,
                          loss=LossConfig(encoder_precision=precision, **LOSSES[loss]))
        final = train(cfg, out_root=tmp, progress=False)
        history = json.loads(final.with_suffix(".json").read_text())["history"]
    timed = history[1:] or history  # step 1 pays for start-up
    step_s = float(np.median([h["step_seconds"] for h in timed]))
    return {"arch": arch, "encoder_precision": precision, "loss": loss, "images_per_s": 4 / step_s, "step_seconds_p50": step_s,
            "loader_wait_fraction": history[-1]["loader_wait_fraction"], "steps": steps, "workers": workers}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--archs", default=",".join(a for a in ARCHS if a != "tiny"))
    ap.add_argument("--losses", default="relu3_1", help=f"loss configurations, of {','.join(LOSSES)}")
    ap.add_argument("--precisions", default="fp32,bf16", help="loss-encoder precisions (toolkit train "
                    "--encoder-precision)")
    args = ap.parse_args()
    style, content = shared_data("styles", "frost.png"), shared_data("content", "train")
    if style is None or content is None:
        raise SystemExit("needs ../shared/data (styles/frost.png, content/train); set TOOLKIT_DATA")
    rows = [measure(a, p, args.steps, args.workers, style, content, loss)
            for a in args.archs.split(",") for p in args.precisions.split(",") for loss in args.losses.split(",")]
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor() or
            platform.machine()}
    (OUT / "train_throughput.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = ["| arch | loss encoder | loss | images/s (256², batch 4) | s/step (p50) | loader wait |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['arch']} | {r['encoder_precision']} | {r['loss']} | {r['images_per_s']:.2f} | "
              f"{r['step_seconds_p50']:.2f} | "
              f"{r['loader_wait_fraction']:.1%} |" for r in rows]
    (OUT / "train_throughput.md").write_text(
        f"Training throughput ({meta['threads']} torch threads, {args.workers} loader workers, torch "
        f"{meta['torch']})\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
