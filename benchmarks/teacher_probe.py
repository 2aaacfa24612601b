"""Can a shipped net learn what its loss asks for? Distil pixel-optimised targets (benchmarks/loss_ceiling.py's
Gatys-style optimisation under the style's own training loss) into the shipped net: fine-tune it with its recipe plus
a teacher term pulling its output toward each crop's target, either feature by feature (mse: VGG features at the same
places) or by local statistics (gram: the Gram matrices of 64-px windows, so strokes may fall elsewhere as long as
each window has the target's kind of stroke). Writes benchmarks/results/teacher_<style>[_LABEL].{json,md,jpg} (photo
| shipped net | each variant on eval photos at long side 384, then photo | target | the nets on training crops);
targets and nets stay under runs/teacher_<style>/.

    python benchmarks/teacher_probe.py --style starry_night --variant "mse20:form=mse,weight=20" \
        --variant "gram200:form=gram,weight=200,layers=relu1_1;relu2_1;relu3_1,lr=0.001"

A variant's weight is relative: the teacher term is divided by its value on the first batch, so weight 50 starts the
term at 50 (starry_night's style term starts near 44). Targets and fine-tuned nets are reused when present.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WINDOW = 64  # image pixels a local Gram covers at every tap
FORMS = ("mse", "gram")


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, body = text.partition(":")
    pairs = dict(p.split("=", 1) for p in body.split(",") if "=" in p)
    if not name or set(pairs) - {"form", "weight", "layers", "lr"} or pairs.get("form", "mse") not in FORMS:
        raise SystemExit(f"teacher_probe: variant {text!r} is not NAME:form=mse|gram,weight=W[,layers=A;B][,lr=R]")
    return name, {"form": pairs.get("form", "mse"), "weight": float(pairs.get("weight", 1)),
                  "layers": tuple(pairs.get("layers", "relu2_1;relu3_1").split(";")),
                  **({"lr": float(pairs["lr"])} if "lr" in pairs else {})}


def local_grams(feats, stride: int):
    """Gram matrices of each WINDOW-px window of (B, C, H, W) features taken at `stride` image pixels per cell."""
    k = max(1, WINDOW // stride)
    b, c, h, w = feats.shape
    f = feats[:, :, : h // k * k, : w // k * k].reshape(b, c, h // k, k, w // k, k)
    f = f.permute(0, 2, 4, 1, 3, 5).reshape(-1, c, k * k)
    return f @ f.transpose(1, 2) / (c * k * k)


def tap_stride(tap: str) -> int:
    """Image pixels per feature cell at a VGG tap: relu1_* 1, relu2_* 2, relu3_* 4."""
    return 2 ** (int(tap[4]) - 1)


def teacher_term(out_feats, target_feats, form: str, layers):
    import torch.nn.functional as F

    if form == "mse":
        return sum(F.mse_loss(out_feats[t].float(), target_feats[t].float()) for t in layers)
    return sum(F.mse_loss(local_grams(out_feats[t].float(), tap_stride(t)), local_grams(target_feats[t].float(),
                                                                                       tap_stride(t)))
               for t in layers)


def make_targets(cfg, files, folder: Path, count: int, iters: int, lr: float, batch: int = 4):
    """(photos, targets) for `count` 256-px crops of `files` (one crop per photo, evenly spread over the folder),
    each optimised under `cfg`; written to `folder` as PNG pairs and read back when present."""
    import torch
    from tqdm import tqdm

    from loss_ceiling import optimise
    from toolkit.data.images import load_rgb, random_crop, save_image, to_numpy, to_tensor

    folder.mkdir(parents=True, exist_ok=True)
    picks = [files[i * len(files) // count] for i in range(count)]
    for start in tqdm(range(0, count, batch), desc="targets"):
        todo = [i for i in range(start, min(count, start + batch)) if not (folder / f"target_{i:03d}.png").exists()]
        if not todo:
            continue
        crops = [random_crop(load_rgb(picks[i]), 256, np.random.default_rng([5, i])) for i in todo]
        x = torch.stack([torch.from_numpy(c.transpose(2, 0, 1).copy()) for c in crops])
        y, _ = optimise(cfg, x, iters, lr)
        for j, i in enumerate(todo):
            save_image(folder / f"photo_{i:03d}.png", to_numpy(x[j]))
            save_image(folder / f"target_{i:03d}.png", to_numpy(y[j]))
    read = lambda kind: torch.cat([to_tensor(load_rgb(folder / f"{kind}_{i:03d}.png")) for i in range(count)])  # noqa
    return read("photo"), read("target")


def distil(ckpt, cfg, photos, targets, variant: dict, steps: int, seed: int = 0):
    """The shipped net fine-tuned for `steps` batches of 4 target pairs (random, mirrored half the time) under its
    recipe (at the variant's lr, if it names one) plus the teacher term; returns the net and per-step history
    (the teacher term relative to its start)."""
    import copy

    import torch
    from tqdm import tqdm

    from toolkit.train import style_loss, train_mode, training_losses

    model = copy.deepcopy(ckpt.model)
    train_mode(model, cfg)
    loss_fn = style_loss(cfg)
    layers = variant["layers"]
    with torch.no_grad():
        target_feats = [loss_fn.encode(targets[i: i + 8]) for i in range(0, len(targets), 8)]
        target_feats = {t: torch.cat([f[t].float() for f in target_feats]) for t in layers}
    opt = torch.optim.Adam(model.parameters(), lr=variant.get("lr", cfg.lr))
    rng, history, scale = np.random.default_rng(seed), [], None
    for step in tqdm(range(steps), desc="distil"):
        pick = torch.from_numpy(rng.choice(len(photos), 4, replace=False))
        x, tf = photos[pick], {t: f[pick] for t, f in target_feats.items()}
        if rng.random() < 0.5:
            x, tf = x.flip(-1), {t: f.flip(-1) for t, f in tf.items()}
        losses = training_losses(model, loss_fn, x, cfg, step)
        term = teacher_term(loss_fn.encode(model(x)), tf, variant["form"], layers)
        scale = scale if scale is not None else 1.0 / max(float(term.detach()), 1e-12)
        total = losses["total"] + variant["weight"] * scale * term
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        history.append({"teacher": float(term.detach()) * scale, "style": float(losses["style"].detach()),
                        "content": float(losses["content"].detach())})
    return model.eval(), history


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch

    from loss_ceiling import shipped_start
    from toolkit.checkpoint import load_checkpoint, save_checkpoint
    from toolkit.data.images import list_images, load_rgb, resize_long_side, save_image, to_numpy
    from toolkit.fsutil import write_json
    from toolkit.paths import resolve_data_path, shared_data
    from toolkit.sheets import side_by_side, stack_rows
    from toolkit.stylize import stylize_rgb

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--style", required=True, help="a shipped style whose net and recipe to distil into")
    ap.add_argument("--variant", action="append", required=True, metavar="NAME:form=mse|gram,weight=W,layers=A;B,lr=R")
    ap.add_argument("--count", type=int, default=64, help="training crops optimised as targets")
    ap.add_argument("--iters", type=int, default=75, help="Adam iterations per target")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--steps", type=int, default=300, help="fine-tuning steps per variant")
    ap.add_argument("--label", default="")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    variants = [parse_variant(v) for v in args.variant]
    ckpt, recipe = shipped_start(args.style, args.threads, "teacher_probe")
    work = ROOT / "runs" / f"teacher_{args.style}"
    photos, targets = make_targets(recipe, sorted(list_images(resolve_data_path(recipe.content_dir))),
                                   work / "targets", args.count, args.iters, args.lr)
    nets, rows = [("shipped net", ckpt.model.eval())], []
    for name, variant in variants:
        path = work / f"{name}.safetensors"
        if path.exists():
            loaded = load_checkpoint(path)
            net, history = loaded.model.eval(), loaded.meta["teacher"]["history"]
        else:
            net, history = distil(ckpt, recipe, photos, targets, variant, args.steps)
            save_checkpoint(path, net, {**ckpt.meta, "teacher": {**variant, "layers": list(variant["layers"]),
                                                                 "steps": args.steps, "history": history}})
        first, last = history[:50], history[-50:]
        mean = lambda part, key: float(np.mean([r[key] for r in part]))  # noqa: E731
        rows.append({"variant": name, **variant, "layers": list(variant["layers"]), "steps": len(history),
                     **{f"{key}_{when}": mean(part, key) for key in ("teacher", "style", "content")
                        for when, part in (("first50", first), ("last50", last))}})
        nets.append((name, net))
    sheet = []
    for f in list_images(shared_data("content", "eval"))[:4]:
        rgb = resize_long_side(load_rgb(f), 384)
        with torch.no_grad():
            sheet.append(side_by_side([rgb, *(stylize_rgb(net, rgb) for _, net in nets)]))
    for i in range(0, args.count, max(1, args.count // 4)):  # training crops: the target beside what the nets learnt
        with torch.no_grad():
            sheet.append(side_by_side([to_numpy(photos[i]), to_numpy(targets[i]),
                                  *(to_numpy(net(photos[i: i + 1])[0]) for _, net in nets)]))
    stem = RESULTS / f"teacher_{args.style}{'_' + args.label if args.label else ''}"
    save_image(stem.with_suffix(".jpg"), stack_rows(sheet), quality=92)
    write_json(stem.with_suffix(".json"), {"style": args.style, "count": args.count, "iters": args.iters,
                                           "lr": args.lr, "rows": rows})  # each row its own steps
    lines = [f"# Distilling pixel-optimised targets into {args.style}'s shipped net", "",
             f"{args.count} training crops (256 px) optimised {args.iters} Adam iterations (lr {args.lr}) under the "
             "shipped recipe; the shipped net fine-tuned (batch 4) on them with its recipe plus "
             "the teacher term (relative to its first batch; mean of the first and last 50 steps). Sheet: "
             f"{stem.name}.jpg (photo | {' | '.join(n for n, _ in nets)}, eval photos at long side 384; then four "
             "of the training crops: photo | target | the same nets).", "",
             "| variant | form | weight | taps | lr | steps | teacher term first -> last | style loss first -> last |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['form']} | {r['weight']:g} | {', '.join(r['layers'])} | "
              f"{r.get('lr', recipe.lr):g} | {r['steps']} | {r['teacher_first50']:.3f} -> {r['teacher_last50']:.3f} | "
              f"{r['style_first50']:.2e} -> {r['style_last50']:.2e} |" for r in rows]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
