"""The look of every shipped style on a phone camera's 12 MP photo: eval photos upscaled to long side 4032, stylised at
full resolution (`toolkit stylize --max-side 0`), with the net capped at the long sides --sides (then resized back,
as `toolkit stylize --max-side N --no-detail` does), and as `toolkit stylize` does by default (capped at MAX_SIDE
with the fine band of a second pass joined on, `toolkit.stylize.join_bands`), each measured as a viewer sees the whole
picture: style strength (quality.md's) of the output scaled to each of the --views long sides against the photo at
that view (a whole picture on a screen; each view favours a cap near its own size, where neither the strokes have
shrunk nor the upscale blurred), and the seconds each takes. A net paints strokes of a fixed size in pixels, so at
full resolution they shrink against the picture. Upscaled photos are smooth where a real 12 MP photo has fine
detail; what is measured is the strokes' size against the picture. Writes benchmarks/results/look_scale.{json,md,jpg}
(look_scale_L.* with --label L; the sheet per style: full resolution and the default, whole; then full resolution,
capped at --sheet-side and the default at 100%, and the last two at 300% where the photo is busiest).

    python benchmarks/look_scale.py [--style S ...] [--sides 768,1024,1536,2048] [--views 1024,2048] [--sheet-side 1536]
                                    [--label L]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PHOTOS = ("tubingen", "amber", "golden_gate")  # the eval photos near 1000 px, so upscaling them is at most 4.1x
PHONE_SIDE = 4032  # a 12 MP phone photo is 4032 x 3024


def busiest_third(rgb: np.ndarray, crop: tuple[slice, slice]) -> tuple[slice, slice]:
    """Of the 3x3 windows a third the size of `crop`, the one where the photo has the most edges (a 300% view of a
    flat sky shows nothing of what a pass adds)."""
    t = (crop[0].stop - crop[0].start) // 3
    grey = rgb[crop].mean(axis=2)
    edges = np.abs(np.diff(grey, axis=0))[:, :-1] + np.abs(np.diff(grey, axis=1))[:-1]
    i, j = max(((i, j) for i in range(3) for j in range(3)),
               key=lambda ij: edges[ij[0] * t:(ij[0] + 1) * t, ij[1] * t:(ij[1] + 1) * t].sum())
    y, x = crop[0].start + i * t, crop[1].start + j * t
    return slice(y, y + t), slice(x, x + t)


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT))
    import cv2
    import torch

    from toolkit.checkpoint import load_checkpoint
    from toolkit.data.images import list_images, load_rgb, resize_long_side, save_image, to_tensor
    from toolkit.fsutil import write_json
    from toolkit.losses import measuring_loss
    from toolkit.metrics import style_strength
    from toolkit.paths import shared_data
    from toolkit.sheets import stack_rows, zoom
    from toolkit.stylize import DETAIL_MAX_SIDE, MAX_SIDE, stylize_rgb
    from toolkit.video.evaluate import style_image_for
    from toolkit.zoo import checkpoint_path, shipped_styles

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--style", action="append", help="styles to measure (default: every shipped style)")
    ap.add_argument("--sides", default="768,1024,1536,2048", help="long sides the net is capped at (comma list)")
    ap.add_argument("--views", default="1024,2048", help="long sides the whole picture is measured at (comma list)")
    ap.add_argument("--sheet-side", type=int, default=1536, help="the cap the sheet shows (one of --sides)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--label", default="", help="write look_scale_LABEL.* (default: look_scale.*)")
    args = ap.parse_args(argv)
    if shared_data("content", "eval") is None:
        print("look_scale: the eval photos are missing; set TOOLKIT_DATA to the shared data folder", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    sides, views = [int(v) for v in args.sides.split(",")], [int(v) for v in args.views.split(",")]
    columns = ["full", *(f"at_{s}" for s in sides), "default"]
    files = {f.stem: f for f in list_images(shared_data("content", "eval"))}
    photos = []
    for name in PHOTOS:
        rgb = load_rgb(files[name])
        scale = PHONE_SIDE / max(rgb.shape[:2])
        photos.append((name, np.clip(cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC), 0, 1)))
    rows, sheet = [], []
    for style in args.style or shipped_styles():
        ckpt = load_checkpoint(checkpoint_path(style))
        model, loss = ckpt.model.eval(), measuring_loss(style_image_for(ckpt))
        strength, seconds = {(v, c): [] for v in views for c in columns}, {c: [] for c in columns}
        for i, (name, big) in enumerate(photos):
            outs = {}
            for c in columns:
                start = time.perf_counter()
                outs[c] = (stylize_rgb(model, big) if c == "full" else
                           stylize_rgb(model, big, MAX_SIDE, detail=True) if c == "default" else
                           stylize_rgb(model, big, int(c[3:])))
                seconds[c].append(time.perf_counter() - start)
            for v in views:
                photo = to_tensor(resize_long_side(big, v))
                for c, out in outs.items():
                    strength[v, c].append(style_strength(loss, to_tensor(resize_long_side(out, v)), photo)
                                          ["style_strength"])
            if i == 0:
                whole = [resize_long_side(outs[c], 512) for c in ("full", "default")]
                side, (h, w) = whole[0].shape[0], big.shape[:2]  # 100% crops as tall as the whole pictures
                crop = (slice(h // 3, h // 3 + side), slice(w // 2, w // 2 + side))
                busy = busiest_third(big, crop)
                near = [zoom(outs[c][busy], 3) for c in (f"at_{args.sheet_side}", "default")]
                sheet.append(np.concatenate([*whole, *(outs[c][crop] for c in ("full", f"at_{args.sheet_side}",
                                                                                "default")), *near], axis=1))
        rows.append({"style": style, "views": {v: {c: float(np.mean(strength[v, c])) for c in columns} for v in views},
                     "per_photo": {v: {c: dict(zip(PHOTOS, strength[v, c])) for c in columns} for v in views},
                     "seconds": {c: float(np.mean(t)) for c, t in seconds.items()}})
        print(style, {v: {c: round(x, 3) for c, x in m.items()} for v, m in rows[-1]["views"].items()}, flush=True)
    stem = f"look_scale{'_' + args.label if args.label else ''}"
    save_image(RESULTS / f"{stem}.jpg", stack_rows(sheet))
    write_json(RESULTS / f"{stem}.json", {"photos": list(PHOTOS), "phone_side": PHONE_SIDE, "views": views,
                                             "sides": sides, "max_side": MAX_SIDE,
                                             "detail_max_side": DETAIL_MAX_SIDE, "threads": args.threads, "rows": rows})
    names = {"full": "full resolution", "default": f"capped at {MAX_SIDE} + detail (the default)",
             **{f"at_{v}": f"capped at {v}" for v in sides}}
    lines = ["# A style's look on a 12 MP photo: full resolution against the net capped", "",
             f"Eval photos {', '.join(PHOTOS)} upscaled to long side {PHONE_SIDE} (a 12 MP phone photo), stylised at "
             "full resolution, with the net run at each long side below and resized back (`toolkit stylize "
             f"--max-side N --no-detail`), and as `toolkit stylize` does by default: capped at {MAX_SIDE} with "
             f"the fine band of a second pass at up to {DETAIL_MAX_SIDE} px joined on. Style strength (lower = more "
             "stylised; goal <= 0.12) of each output seen whole at each view (its long side; best of a row in bold), "
             f"and the mean seconds per photo on {args.threads} threads (torch, this host; side by side in one run). "
             f"Sheet: {stem}.jpg (per style: full resolution | the default, whole at 512 px; full resolution | capped "
             f"at {args.sheet_side} | the default at 100%; capped | the default at 300% where the photo is busiest).",
             "",
             "| style | view | " + " | ".join(names[c] for c in columns) + " |", "|---|---|" + "---|" * len(columns)]
    for r in rows:
        for v, m in r["views"].items():
            best = min(columns, key=m.get)
            lines.append(f"| {r['style']} | {v} | " + " | ".join(f"**{m[c]:.3f}**" if c == best else f"{m[c]:.3f}"
                                                                 for c in columns) + " |")
        lines.append(f"| {r['style']} | seconds | " + " | ".join(f"{r['seconds'][c]:.1f}" for c in columns) + " |")
    mean = {v: {c: float(np.mean([r["views"][v][c] for r in rows])) for c in columns} for v in views}
    lines.append("| **mean** | " + " / ".join(map(str, views)) + " | " + " | ".join(
        " / ".join(f"{mean[v][c]:.3f}" for v in views) for c in columns) + " |")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print(RESULTS / f"{stem}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
