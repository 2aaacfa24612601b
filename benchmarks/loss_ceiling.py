"""What a style's training loss asks for, without a net: Gatys-style optimisation of the pixels of eval photos under
the loss a shipped style was trained with (its checkpoint's train config; the temporal, shift and turn terms left out:
they measure the net's function, not an image), and under variants of it. If the optimised pictures show the
painting's shapes, the net or its training is what falls short; if they do not, no net trained on that loss will.
Writes benchmarks/results/loss_ceiling_<style>[_LABEL].{json,md,jpg} (the sheet a JPEG: as a PNG, 3 photos x 6
columns pass 4 MB; sheets before session 31 are PNGs).

    python benchmarks/loss_ceiling.py --style frost [--variant "no tv:tv_weight=0" ...] [--iters 300] [--side 320]

A variant is "NAME:KEY=VALUE,KEY=VALUE" over the train config's loss fields (tv_weight, style_weight, content_weight,
style_scales=1;0.5, ...) or style_size. The sheet: photo | the shipped net | recipe | variants, then 3x crops.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, body = text.partition(":")
    pairs = [p.split("=", 1) for p in body.split(",") if p]
    if not name or any(len(p) != 2 for p in pairs):
        raise SystemExit(f"loss_ceiling: variant {text!r} is not NAME:KEY=VALUE,...")
    return name, {k: v for k, v in pairs}


def with_overrides(cfg, overrides: dict):
    """The train config with `overrides` (strings) applied to its loss fields or style_size."""
    loss_fields = {f.name for f in dataclasses.fields(cfg.loss)}
    loss_changes, top = {}, {}
    for key, value in overrides.items():
        if key == "style_size":
            top[key] = int(value)
        elif key in ("style_scales", "style_layers", "content_layers"):
            items = value.split(";")
            loss_changes[key] = tuple(float(v) for v in items) if key == "style_scales" else tuple(items)
            if key == "style_layers":
                loss_changes["style_layer_weights"] = ()  # rebalanced below
        elif key in loss_fields:  # text fields (patch_layer, encoder_precision, ...) stay text, the rest are numbers
            loss_changes[key] = value if isinstance(getattr(cfg.loss, key), (str, type(None))) else float(value)
        else:
            raise SystemExit(f"loss_ceiling: {key!r} is not a loss field or style_size")
    return dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, **loss_changes), **top)


def optimise(cfg, photo, iters: int, lr: float):
    """Pixels of `photo` (1,3,H,W) optimised by Adam under the training loss of `cfg` (as `training_losses` sums it,
    without the temporal, shift and turn terms, which measure a net's function), through a sigmoid so they stay in
    [0, 1]. Returns the image and the last losses."""
    import torch

    from toolkit.train import style_loss, training_losses

    cfg = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, temporal_weight=0.0, shift_weight=0.0,
                                                        turn_weight=0.0))
    loss_fn = style_loss(cfg)
    if cfg.loss.style_balance and not cfg.loss.style_layer_weights:
        loss_fn.balance_taps(photo)
    z = torch.logit(photo.clamp(0.02, 0.98)).clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    for _ in range(iters):
        opt.zero_grad(set_to_none=True)
        losses = training_losses(lambda x: torch.sigmoid(z), loss_fn, photo, cfg, 0)
        losses["total"].backward()
        opt.step()
    return torch.sigmoid(z).detach(), {k: float(v.detach()) for k, v in losses.items()}


def shipped_start(style: str, threads: int, tool: str):
    """(checkpoint, recipe) of the shipped style (or checkpoint path) `style`, with torch on `threads` threads and
    seeded; exits with status 2 and one line naming `tool` when the eval photos are missing."""
    import torch

    from toolkit.checkpoint import load_checkpoint
    from toolkit.paths import shared_data
    from toolkit.zoo import checkpoint_path

    if shared_data("content", "eval") is None:
        print(f"{tool}: the eval photos are missing; set TOOLKIT_DATA to the shared data folder", file=sys.stderr)
        raise SystemExit(2)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    ckpt = load_checkpoint(checkpoint_path(style))
    return ckpt, ckpt.train_config()


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT))
    import torch
    from tqdm import tqdm

    from toolkit.data.images import list_images, load_rgb, resize_long_side, save_image, to_numpy, to_tensor
    from toolkit.fsutil import write_json
    from toolkit.losses import measuring_loss
    from toolkit.metrics import style_strength
    from toolkit.paths import shared_data
    from toolkit.sheets import stack_rows, zoom
    from toolkit.stylize import stylize_tensor
    from toolkit.video.evaluate import style_image_for

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--style", required=True, help="a shipped style (or a checkpoint path) whose recipe to optimise")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...")
    ap.add_argument("--photos", type=int, default=3, help="eval photos to optimise")
    ap.add_argument("--side", type=int, default=320, help="the photos' long side")
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--label", default="")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    ckpt, recipe = shipped_start(args.style, args.threads, "loss_ceiling")
    variants = [("recipe", {}), *(parse_variant(v) for v in args.variant)]
    configs = [(name, with_overrides(recipe, o)) for name, o in variants]
    measure = measuring_loss(style_image_for(ckpt))
    rows, sheet = [], []
    files = list_images(shared_data("content", "eval"))[: args.photos]
    for f in tqdm(files, desc="photos"):
        rgb = resize_long_side(load_rgb(f), args.side)
        rgb = np.ascontiguousarray(rgb[: rgb.shape[0] // 4 * 4, : rgb.shape[1] // 4 * 4])
        h, w = rgb.shape[:2]
        x = to_tensor(rgb)
        with torch.no_grad():
            outs = [("shipped net", stylize_tensor(ckpt.model.eval(), x))]
        for name, cfg in configs:
            y, last = optimise(cfg, x, args.iters, args.lr)
            outs.append((name, y))
            rows.append({"photo": f.name, "variant": name, "losses": last,
                         "style_strength": style_strength(measure, y, x)["style_strength"]})
        rows.append({"photo": f.name, "variant": "shipped net",
                     "style_strength": style_strength(measure, outs[0][1], x)["style_strength"]})
        cells = [rgb, *(to_numpy(y) for _, y in outs)]
        ch, cw = h // 3, w // 3  # the centre third at 3x
        crops = [zoom(c[ch:2 * ch, cw:2 * cw], 3) for c in cells]
        gap = lambda a: np.concatenate([a, np.ones((a.shape[0], 8, 3), np.float32)], axis=1)  # noqa: E731
        sheet += [np.concatenate([gap(c) for c in cells], axis=1),
                  np.concatenate([gap(c[: cells[0].shape[0], : cells[0].shape[1]]) for c in crops], axis=1)]
    label = f"_{args.label}" if args.label else ""
    stem = RESULTS / f"loss_ceiling_{Path(args.style).stem}{label}"
    save_image(stem.with_suffix(".jpg"), stack_rows(sheet), quality=92)
    names = ["shipped net", *(n for n, _ in variants)]
    mean = {n: float(np.mean([r["style_strength"] for r in rows if r["variant"] == n])) for n in names}
    write_json(stem.with_suffix(".json"), {"style": args.style, "iters": args.iters, "lr": args.lr, "side": args.side,
                                           "variants": dict(variants), "rows": rows, "mean_strength": mean})
    lines = [f"# What {args.style}'s training loss asks for (pixels optimised, no net)", "",
             f"{len(files)} eval photos at long side {args.side}, Adam lr {args.lr}, {args.iters} iterations from the "
             "photo, the training loss without its temporal, shift and turn terms. Style strength as in quality.md "
             f"(lower = more stylised). Sheet: {stem.name}.jpg (photo | {' | '.join(names)}; below each, the centre "
             "third at 3x).",
             "", "| variant | changes | style strength |", "|---|---|---|"]
    changes = {n: ", ".join(f"{k}={v}" for k, v in o.items()) for n, o in variants}
    lines += [f"| {n} | {changes.get(n) or '—'} | {mean[n]:.3f} |" for n in names]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
