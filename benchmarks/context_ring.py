"""How wide a context ring (ArchConfig.context_pad) to reflect around the image: the edge stripe of each shipped net
with its own weights run inside rings of 0, 2, 4 and 6 pixels (no retraining), on the quality benchmark's photos,
and a sheet of the worst border at 3x zoom without and with the shipped ring. Writes
benchmarks/results/context_ring.{json,md,png}.

    python benchmarks/context_ring.py [--style S ...] [--checkpoint S=PATH ...] [--pads 0,2,4,6] [--threads 2]

The committed results measured session 11's nets, trained without a ring (the files of commit 610f4c8's
toolkit/zoo/, passed with --checkpoint): the evidence the ring width was chosen on.

The ring is applied by hand here (reflect pad, the net without its own ring, crop), so widths beyond the stride,
which the config refuses, can be measured too.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ZOOM, SIDE = 3, 48  # the border sheet: a SIDE x 2*SIDE window on the worst side, at ZOOM x


def ringless(model):
    """The same weights, without a context ring of their own."""
    from toolkit.models import TransformerNet

    bare = TransformerNet(dataclasses.replace(model.config, context_pad=0)).eval()
    bare.load_state_dict(model.state_dict())
    return bare


def run_in_ring(bare, rgb: np.ndarray, pad: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    from toolkit.data.images import to_numpy, to_tensor

    x = to_tensor(rgb)
    with torch.no_grad():
        y = bare(F.pad(x, (pad,) * 4, mode="reflect") if pad else x)
    return to_numpy(y[..., pad:y.shape[-2] - pad, pad:y.shape[-1] - pad] if pad else y)


def border_window(img: np.ndarray, side: int) -> np.ndarray:
    """The SIDE-deep strip along one side (0 top, 1 bottom, 2 left, 3 right), turned so the border is on top."""
    from toolkit.sheets import zoom

    h, w = img.shape[:2]
    if side in (2, 3):
        img, h, w = np.rot90(img, 1 if side == 2 else -1), w, h
        side = 0 if side == 2 else 1
    c = w // 2
    strip = img[:SIDE, c - SIDE:c + SIDE] if side == 0 else img[h - SIDE:, c - SIDE:c + SIDE][::-1]
    return zoom(strip, ZOOM)


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch

    from quality import GOAL_STRIPE, photos

    from toolkit.checkpoint import load_checkpoint
    from toolkit.data.images import save_image
    from toolkit.fsutil import write_json
    from toolkit.losses.edges import border_steps
    from toolkit.metrics import EDGE_BAND, _luma, edge_stripe
    from toolkit.models.presets import nano
    from toolkit.paths import shared_data
    from toolkit.zoo import checkpoint_path, shipped_styles

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--style", action="append", help="styles (default: every shipped style)")
    ap.add_argument("--checkpoint", action="append", default=[], metavar="STYLE=PATH",
                    help="measure this checkpoint for STYLE instead of the shipped one")
    ap.add_argument("--pads", default="0,2,4,6", help="ring widths to measure, comma-separated")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if shared_data("content", "eval") is None:
        print("context_ring: the eval photos are missing; set TOOLKIT_DATA to the shared data folder", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    pads = [int(p) for p in args.pads.split(",")]
    shipped_pad = nano().context_pad
    images = photos(768)
    overrides = dict(item.split("=", 1) for item in args.checkpoint)
    rows, sheet = [], []
    for style in args.style or sorted(set(shipped_styles()) | set(overrides)):
        bare = ringless(load_checkpoint(checkpoint_path(overrides.get(style, style))).model.eval())
        stripes = {p: [edge_stripe(run_in_ring(bare, rgb, p), rgb) for _, rgb in images] for p in pads}
        rows.append({"style": style, **{f"pad_{p}": {"max": float(np.max(s)), "mean": float(np.mean(s)),
                                                      "worst_photo": images[int(np.argmax(s))][0]}
                                         for p, s in stripes.items()}})
        print(style, " ".join(f"{p}px {np.max(s):.4f}/{np.mean(s):.4f}" for p, s in stripes.items()), flush=True)
        if 0 in stripes and shipped_pad in stripes:  # the worst border without a ring, then with the shipped one
            name, rgb = images[int(np.argmax(stripes[0]))]
            outs = [run_in_ring(bare, rgb, p) for p in (0, shipped_pad)]
            steps = np.abs(np.array(border_steps(_luma(outs[0]), EDGE_BAND)) - border_steps(_luma(rgb), EDGE_BAND))
            side = int(np.argmax(steps))
            gap = np.ones((SIDE * ZOOM, 8, 3), np.float32)
            sheet.append(np.concatenate([border_window(rgb, side), gap, border_window(outs[0], side), gap,
                                         border_window(outs[1], side)], axis=1))
            sheet.append(np.ones((8, sheet[-1].shape[1], 3), np.float32))
    write_json(RESULTS / "context_ring.json", {"photos": [n for n, _ in images], "pads": pads,
                                               "shipped_pad": shipped_pad, "rows": rows})
    if sheet:
        save_image(RESULTS / "context_ring.png", np.concatenate(sheet, axis=0))
    lines = ["# Context ring width: edge stripe of each shipped net in rings of " + ", ".join(map(str, pads)) + " px",
             "", f"{len(images)} photos (the quality benchmark's), the nets' own weights, no retraining; edge stripe "
             f"= the outer 2-px ring's step against the band inside it beyond the photo's own (goal <= {GOAL_STRIPE}). "
             f"Worst photo / mean over the photos. context_ring.png: the worst border without a ring, at {ZOOM}x "
             f"(photo | no ring | {shipped_pad}-px ring), one row per style.", "",
             "| style | " + " | ".join(f"{p} px: worst / mean" for p in pads) + " |",
             "|---|" + "---|" * len(pads)]
    for r in rows:
        lines.append(f"| {r['style']} | " + " | ".join(
            f"{r[f'pad_{p}']['max']:.3f} / {r[f'pad_{p}']['mean']:.4f}" for p in pads) + " |")
    (RESULTS / "context_ring.md").write_text("\n".join(lines) + "\n")
    print(RESULTS / "context_ring.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
