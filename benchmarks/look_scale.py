"""The look of every shipped style on a phone camera's 12 MP photo: eval photos upscaled to long side 4032, stylised at
full resolution (`toolkit stylize --max-side 0`) and with the net capped at the long sides --sides (then resized back,
as `toolkit stylize --max-side N` does; its default is MAX_SIDE), each measured as a viewer sees the whole picture:
style strength (quality.md's) of the output scaled to each of the --views long sides against the photo at that
view (a whole picture on a screen; each view favours a cap near its own size, where neither the strokes have shrunk
nor the upscale blurred). A net paints strokes of a fixed size in pixels, so at full resolution they shrink against
the picture. Upscaled photos are smooth where a real 12 MP photo has fine detail; what is measured is the strokes'
size against the picture. Writes
benchmarks/results/look_scale.{json,md,jpg} (per style: full resolution | capped at --sheet-side, whole, then the
two at 100% on the 12 MP picture).

    python benchmarks/look_scale.py [--style S ...] [--sides 768,1024,1536,2048] [--views 1024,2048] [--sheet-side 1024]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PHOTOS = ("tubingen", "amber", "golden_gate")  # the eval photos near 1000 px, so upscaling them is at most 4.1x
PHONE_SIDE = 4032  # a 12 MP phone photo is 4032 x 3024


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
    from toolkit.sheets import stack_rows
    from toolkit.stylize import MAX_SIDE, stylize_rgb
    from toolkit.video.evaluate import style_image_for
    from toolkit.zoo import checkpoint_path, shipped_styles

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--style", action="append", help="styles to measure (default: every shipped style)")
    ap.add_argument("--sides", default="768,1024,1536,2048", help="long sides the net is capped at (comma list)")
    ap.add_argument("--views", default="1024,2048", help="long sides the whole picture is measured at (comma list)")
    ap.add_argument("--sheet-side", type=int, default=1024, help="the cap the sheet shows (one of --sides)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if shared_data("content", "eval") is None:
        print("look_scale: the eval photos are missing; set TOOLKIT_DATA to the shared data folder", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    sides, views = [int(v) for v in args.sides.split(",")], [int(v) for v in args.views.split(",")]
    columns = ["full", *(f"at_{s}" for s in sides)]
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
        strength = {(v, c): [] for v in views for c in columns}
        for i, (name, big) in enumerate(photos):
            outs = {c: stylize_rgb(model, big, None if c == "full" else int(c[3:])) for c in columns}
            for v in views:
                photo = to_tensor(resize_long_side(big, v))
                for c, out in outs.items():
                    strength[v, c].append(style_strength(loss, to_tensor(resize_long_side(out, v)), photo)
                                          ["style_strength"])
            if i == 0:
                capped = outs[f"at_{args.sheet_side}"]
                whole = [resize_long_side(o, 512) for o in (outs["full"], capped)]
                side, (h, w) = whole[0].shape[0], big.shape[:2]  # 100% crops as tall as the whole pictures
                crop = (slice(h // 3, h // 3 + side), slice(w // 2, w // 2 + side))
                sheet.append(np.concatenate([*whole, outs["full"][crop], capped[crop]], axis=1))
        rows.append({"style": style, "views": {v: {c: float(np.mean(strength[v, c])) for c in columns} for v in views},
                     "per_photo": {v: {c: dict(zip(PHOTOS, strength[v, c])) for c in columns} for v in views}})
        print(style, {v: {c: round(x, 3) for c, x in m.items()} for v, m in rows[-1]["views"].items()}, flush=True)
    save_image(RESULTS / "look_scale.jpg", stack_rows(sheet))
    write_json(RESULTS / "look_scale.json", {"photos": list(PHOTOS), "phone_side": PHONE_SIDE, "views": views,
                                             "sides": sides, "max_side": MAX_SIDE, "rows": rows})
    lines = ["# A style's look on a 12 MP photo: full resolution against the net capped", "",
             f"Eval photos {', '.join(PHOTOS)} upscaled to long side {PHONE_SIDE} (a 12 MP phone photo), stylised at "
             "full resolution and with the net run at each long side below and resized back (`toolkit stylize "
             f"--max-side N`; default {MAX_SIDE}); style strength (lower = more stylised; goal <= 0.12) of each "
             "output seen whole at each view (its long side; best of a row in bold). Sheet: look_scale.jpg (per "
             f"style: full resolution | capped at {args.sheet_side}, whole at 512 px, then both at 100%).", "",
             "| style | view | " + " | ".join("full resolution" if c == "full" else f"capped at {c[3:]}"
                                             for c in columns) + " |", "|---|---|" + "---|" * len(columns)]
    for r in rows:
        for v, m in r["views"].items():
            best = min(columns, key=m.get)
            lines.append(f"| {r['style']} | {v} | " + " | ".join(f"**{m[c]:.3f}**" if c == best else f"{m[c]:.3f}"
                                                                 for c in columns) + " |")
    (RESULTS / "look_scale.md").write_text("\n".join(lines) + "\n")
    print(RESULTS / "look_scale.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
