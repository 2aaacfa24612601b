"""Probe: does a fixed screen-space seed texture let a shipped net draw shapes in flat areas (frost's crystals)?

A stable convolutional net returns a flat output on a flat input (docs/look.md, session 18), so frost's
crystals, which the loss asks for with Grams at 1/2 and 1/4 scale, never appear on plain skin or wall. Here the
shipped net gets two learned texture tiles of co-prime periods (so their sum repeats only every lcm of them) added,
through a 1x1 conv initialised to zero, to its stem's output: at step 0 it is the shipped net, and the tiles are
pinned to the screen like frost on a window pane. It is fine-tuned with the style's recipe plus the given Gram
scales; the synthetic-motion stability term keeps only its noise part (its warp part would ask the pane's frost to
move with the scene). Then it is measured like quality.py on the 13 unseen photos, beside the shipped net.

    python benchmarks/seed_probe.py --style frost --steps 300 [--periods 40,56] [--channels 4] [--label L]

Writes benchmarks/results/seed_probe_<style>[_L].{md,json}, a .png beside them (shipped | seeded, 100% and 300%
crops) and a .safetensors (the tiles, the projection and the net, to continue from with --init).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def screen_seed(periods, channels: int, width: int, tiles=None):
    """A module adding sum_i tile(T_i) (each (channels, p_i, p_i), tiled from the top-left corner) through a zero
    1x1 conv to (N, width, H, W) features; `tiles`, a list of (1, channels, h, w) tensors, replaces the random
    squares."""
    import torch
    from torch import nn

    class ScreenSeed(nn.Module):
        def __init__(self):
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.tiles = nn.ParameterList([nn.Parameter(t.clone()) for t in tiles] if tiles else
                                          [nn.Parameter(torch.randn(1, channels, p, p, generator=g)) for p in periods])
            self.proj = nn.Conv2d(self.tiles[0].shape[1], width, 1, bias=False)
            nn.init.zeros_(self.proj.weight)

        def texture(self, h: int, w: int) -> torch.Tensor:
            total = 0
            for t in self.tiles:
                ph, pw = t.shape[-2:]
                total = total + t.repeat(1, 1, math.ceil(h / ph), math.ceil(w / pw))[..., :h, :w]
            return self.proj(total)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.texture(*x.shape[-2:])

    return ScreenSeed()


def probe_optimizer(net, seed, lr: float, seed_lr: float):
    """Adam with the tiles at `seed_lr` (0: a fixed texture) and everything else, the seed's projection included
    (it starts at zero, so a frozen one would leave the seed unused), at `lr`."""
    import torch

    tiles = {id(t) for t in seed.tiles.parameters()}
    return torch.optim.Adam([{"params": [p for p in net.parameters() if id(p) not in tiles], "lr": lr},
                             {"params": list(seed.tiles.parameters()), "lr": seed_lr}])


def style_tile(style_rgb: np.ndarray, long_side: int):
    """The style image at `long_side` (stem pixels), mirrored into a seamless 2x2 tile, standardised per channel:
    frost on a pane drawn from the painting's own crystals."""
    import torch

    from toolkit.data.images import resize_long_side

    a = resize_long_side(style_rgb, long_side)
    a = np.concatenate([a, a[:, ::-1]], axis=1)
    a = np.concatenate([a, a[::-1]], axis=0)
    a = (a - a.mean((0, 1))) / (a.std((0, 1)) + 1e-6)
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))[None].astype(np.float32))


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT))
    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file, save_file
    from torch import nn
    from tqdm import tqdm

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from quality import GOAL_STABILITY, GOAL_STRENGTH, GOAL_STRIPE, photos
    from toolkit.checkpoint import load_checkpoint
    from toolkit.config import TrainConfig
    from toolkit.data.images import list_images, load_rgb, save_image
    from toolkit.fsutil import write_json
    from toolkit.losses import measuring_loss
    from toolkit.metrics import look_row
    from toolkit.paths import resolve_data_path, shared_data
    from toolkit.sheets import contact_row
    from toolkit.train import content_loader, first_batch_read, style_loss, train_mode, training_losses
    from toolkit.video.evaluate import style_image_for
    from toolkit.zoo import checkpoint_path

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--style", default="frost")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--periods", default="40,56", help="tile periods in stem pixels (half resolution)")
    ap.add_argument("--channels", type=int, default=4)
    ap.add_argument("--tile-from-style", type=int, metavar="SIDE", help="one tile: the style image at long side "
                    "SIDE stem pixels, mirrored 2x2 (instead of --periods/--channels' random tiles)")
    ap.add_argument("--scales", default="1,0.5,0.25", help="Gram scales of the style loss")
    ap.add_argument("--lr", type=float, default=3e-4,
                    help="the learning rate of the net and of the seed's projection (the tiles': --seed-lr)")
    ap.add_argument("--seed-lr", type=float, default=1e-2)
    ap.add_argument("--noise-weight", type=float, default=None,
                    help="weight of the stability term's noise part (default: the recipe's temporal weight)")
    ap.add_argument("--init", help="continue from an earlier probe's safetensors")
    ap.add_argument("--label", default="")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if shared_data("content", "eval") is None:
        print("seed_probe: the shared data is missing; set TOOLKIT_DATA to the shared data folder", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    shipped = load_checkpoint(checkpoint_path(args.style))
    base = TrainConfig.from_dict(shipped.meta["train_config"])
    noise_weight = base.loss.temporal_weight if args.noise_weight is None else args.noise_weight
    cfg = dataclasses.replace(base, steps=args.steps, freeze_batch_stats=True, workers=1, loss=dataclasses.replace(
        base.loss, temporal_weight=0.0, style_scales=tuple(float(s) for s in args.scales.split(","))))
    net = copy.deepcopy(shipped.model)
    periods = [int(p) for p in args.periods.split(",")]
    tiles = [style_tile(load_rgb(style_image_for(shipped)), args.tile_from_style)] if args.tile_from_style else None
    seed = screen_seed(periods, args.channels, net.config.widths[0], tiles)
    net.stem = nn.Sequential(net.stem, seed)
    if args.init:
        net.load_state_dict(load_file(args.init))
    opt = probe_optimizer(net, seed, args.lr, args.seed_lr)
    loss_fn = style_loss(cfg)
    train_mode(net, cfg)
    batches = first_batch_read(content_loader(cfg, list_images(resolve_data_path(cfg.content_dir))))
    g = torch.Generator().manual_seed(cfg.seed)
    with tqdm(total=cfg.steps, desc=f"seed probe {args.style}", unit="step", dynamic_ncols=True) as bar:
        for step, batch in enumerate(batches):
            losses = training_losses(net, loss_fn, batch, cfg, step)
            if noise_weight:
                noise = torch.randn(batch.shape, generator=g) * 0.02
                losses["noise"] = F.mse_loss(net((batch + noise).clamp(0, 1)), net(batch).detach())
                losses["total"] = losses["total"] + noise_weight * losses["noise"]
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            opt.step()
            bar.set_postfix(loss=f"{float(losses['total']):.3g}", style=f"{float(losses['style']):.2e}")
            bar.update(1)
    net.eval()
    stem = f"seed_probe_{args.style}{'_' + args.label if args.label else ''}"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(RESULTS / f"{stem}.safetensors"))

    loss = measuring_loss(style_image_for(shipped))
    images = photos(768)
    rows, sheets = {}, {"shipped": [], "seeded": []}
    for which, model in (("shipped", shipped.model.eval()), ("seeded", net)):
        per_photo = []
        for i, (name, rgb) in enumerate(images):
            row, out = look_row(model, loss, rgb)
            per_photo.append({"photo": name, **row})
            if i < 4:
                sheets[which].append(contact_row(rgb, out))
        rows[which] = {"style_strength": float(np.mean([r["style_strength"] for r in per_photo])),
                       "grain": float(np.mean([r["grain"] for r in per_photo])),
                       "photo_grain": float(np.mean([r["photo_grain"] for r in per_photo])),
                       "edge_stripe_max": max(r["edge_stripe"] for r in per_photo),
                       "stability_db_min": min(r["stability_db"] for r in per_photo), "per_photo": per_photo}
        r = rows[which]
        print(f"{which:8s} strength {r['style_strength']:.3f} grain {r['grain']:.3f} stripe {r['edge_stripe_max']:.3f}"
              f" stability {r['stability_db_min']:.1f} dB", flush=True)
    gap = np.ones((sheets["shipped"][0].shape[0], 16, 3), np.float32)
    save_image(RESULTS / f"{stem}.png", np.concatenate(
        [np.concatenate([a, gap, b[:, b.shape[1] // 4:]], axis=1) for a, b in zip(*sheets.values())], axis=0))
    recipe = {"periods": periods, "channels": args.channels, "tile_from_style": args.tile_from_style,
              "scales": args.scales, "steps": args.steps,
              "lr": args.lr, "seed_lr": args.seed_lr, "noise_weight": noise_weight,
              "init": Path(args.init).name if args.init else None}
    write_json(RESULTS / f"{stem}.json", {"style": args.style, "recipe": recipe, "rows": rows})
    lines = [f"# Screen-space seed probe: {args.style}", "",
             f"{recipe}", "",
             "| net | style strength | grain (photos) | edge stripe | stability |", "|---|---|---|---|---|"]
    for which, r in rows.items():
        lines.append(f"| {which} | {r['style_strength']:.3f}{'' if r['style_strength'] <= GOAL_STRENGTH else ' ✗'} | "
                     f"{r['grain']:.3f} ({r['photo_grain']:.3f}) | {r['edge_stripe_max']:.3f}"
                     f"{'' if r['edge_stripe_max'] <= GOAL_STRIPE else ' ✗'} | {r['stability_db_min']:.1f} dB"
                     f"{'' if r['stability_db_min'] >= GOAL_STABILITY else ' ✗'} |")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + f"\n\nSheet: {stem}.png (shipped | seeded, rows: photos)\n")
    print(RESULTS / f"{stem}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
