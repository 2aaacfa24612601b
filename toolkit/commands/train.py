from __future__ import annotations

import argparse

HELP = "train a style with the perceptual loss (resumable; runs under torchrun for data parallelism)"


def add_arguments(p) -> None:
    from toolkit.commands import MAX_STEPS, MAX_WORKERS, real, whole
    from toolkit.config import EDGE_FORMS, TURN_FORMS, LossConfig, TrainConfig

    d, dl = TrainConfig(), LossConfig()
    p.add_argument("--style-image", required=True, help="the style image")
    p.add_argument("--name", required=True, help="run name; writes runs/<name>/")
    p.add_argument("--content-dir", required=True, help="folder of content photos")
    p.add_argument("--arch", default=d.arch, help=f"architecture preset (default {d.arch}; see `toolkit archs`)")
    p.add_argument("--steps", type=whole(1, MAX_STEPS), default=d.steps)
    p.add_argument("--size", type=whole(16), default=d.size, help="training crop side (a multiple of 16)")
    p.add_argument("--style-size", type=whole(1), default=d.style_size, help="style image long side")
    p.add_argument("--batch", type=whole(1), default=d.batch)
    p.add_argument("--lr", type=real(above=True), default=d.lr)
    p.add_argument("--style-weight", type=real(), default=dl.style_weight)
    p.add_argument("--content-weight", type=real(), default=dl.content_weight)
    p.add_argument("--tv-weight", type=real(), default=dl.tv_weight)
    p.add_argument("--temporal-weight", type=real(), default=dl.temporal_weight,
                   help="weight of the synthetic-motion temporal stability loss (0 = off)")
    p.add_argument("--shift-weight", type=real(), default=dl.shift_weight,
                   help="weight of the shift-equivariance term against lattice-locked grain (0 = off)")
    p.add_argument("--turn-weight", type=real(), default=dl.turn_weight,
                   help="weight of the quarter-turn equivariance term: a photo turned a quarter turn is painted "
                        "turned, so strokes take their direction from the photo, not the screen (0 = off)")
    p.add_argument("--turn-form", default=dl.turn_form, choices=TURN_FORMS,
                   help="what the turn term compares: the strokes' local directions (strokes), which leaves each "
                        "stroke free to fall anew, or every pixel (pixels)")
    p.add_argument("--grain-weight", type=real(), default=dl.grain_weight,
                   help="weight of the even/odd phase-balance term against the 2-pixel grain (0 = off)")
    p.add_argument("--edge-weight", type=real(), default=dl.edge_weight,
                   help="weight of the border-step term against bright or dark edge stripes (0 = off)")
    p.add_argument("--edge-form", default=dl.edge_form, choices=EDGE_FORMS,
                   help="what the border-step term asks: the photo's own step (change), or no step beyond it, so "
                        "that a style may paint over a photo's edge line but not draw one (drawn)")
    p.add_argument("--patch-weight", type=real(), default=dl.patch_weight,
                   help="weight of the patch (MRF) style term: each 3x3 patch of the output's VGG features pulled to "
                        "its nearest patch of the style's, for the painting's shapes as well as its statistics "
                        "(0 = off)")
    p.add_argument("--patch-scale", type=real(0.0, above=True), default=dl.patch_scale, metavar="S",
                   help="match the patch term on output and style image at this scale (default 1; 0.25 asks for "
                        "shapes 4x as large)")
    p.add_argument("--style-layers", type=_taps, default=dl.style_layers, metavar="TAPS",
                   help=f"comma-separated VGG taps for the Gram style loss (default {','.join(dl.style_layers)}; "
                        "the shared VGG19 reaches relu3_4)")
    p.add_argument("--content-layers", type=_taps, default=dl.content_layers, metavar="TAPS",
                   help=f"comma-separated VGG taps for the content loss (default {','.join(dl.content_layers)})")
    p.add_argument("--style-balance", action="store_true",
                   help="weight each style tap by 1 / how far typical photos are from the style there (set once at "
                        "the start from training crops, recorded in the checkpoint)")
    p.add_argument("--style-scales", type=_scales, default=dl.style_scales, metavar="S",
                   help="comma-separated scales at which style Grams are matched, e.g. 1,0.5 (default 1)")
    p.add_argument("--seed", type=whole(0, 2**32 - 1), default=d.seed)
    p.add_argument("--workers", type=whole(0, MAX_WORKERS), default=d.workers, help="data-loading worker processes")
    p.add_argument("--sample-every", type=whole(0), default=d.sample_every)
    p.add_argument("--checkpoint-every", type=whole(1), default=d.checkpoint_every)
    p.add_argument("--loss-net", default=dl.loss_net, choices=["vgg19", "vgg16", "random"])
    p.add_argument("--encoder-precision", default=dl.encoder_precision, choices=["fp32", "bf16"],
                   help="run the frozen VGG in bf16 (about 1.8x faster steps on AVX512-BF16 CPUs and GPUs)")
    p.add_argument("--loss-weights", help="VGG weights file (safetensors, or a torchvision .pth state dict)")
    p.add_argument("--init", metavar="CKPT", help="start from this checkpoint's weights (fine-tune, e.g. a shipped "
                   "style with --temporal-weight); a path or a shipped style name")
    p.add_argument("--freeze-batch-stats", action="store_true",
                   help="batch norms (nano_lite's trunk) normalise by their running statistics, as the exported net "
                        "does, instead of each batch's: fine-tunes the function that ships")
    p.add_argument("--frame-crops", type=real(maximum=1), default=d.frame_crops, metavar="P",
                   help="fraction of training crops taken at a corner of the photo (default 0): the net learns the "
                        "photo's own frame, against stripes along the border of stylised photos")
    p.add_argument("--edge-ramps", type=real(maximum=1), default=d.edge_ramps, metavar="P",
                   help="fraction of training crops given a scan line (1-2 px) or a ramp (2-12 px) along one side "
                        "(default 0): with --edge-weight the net learns not to turn a photo's own edge line into a "
                        "stripe")
    p.add_argument("--out", default="runs", help="root folder for runs (default runs/)")
    p.add_argument("--resume", action="store_true", help="continue runs/<name> from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="restart runs/<name> from scratch")


def _taps(text: str) -> tuple[str, ...]:
    from toolkit.commands import csv

    taps = tuple(csv(text))
    if not taps:
        raise argparse.ArgumentTypeError(f"{text!r} names no tap; give e.g. relu1_1,relu2_1")
    return taps


def _scales(text: str) -> tuple[float, ...]:
    from toolkit.commands import csv

    try:
        scales = tuple(float(t) for t in csv(text))
    except ValueError:
        scales = ()
    if not scales or any(not 0 < s <= 1 for s in scales):
        raise argparse.ArgumentTypeError(f"{text!r} must be a comma list of scales in (0, 1], e.g. 1,0.5")
    if scales[0] != 1:
        raise argparse.ArgumentTypeError(f"{text!r} must start with 1 (the full-size Grams), e.g. 1,{text}; "
                                         "to match coarser strokes only, lower --style-size")
    return scales


def _init_path(arg: str | None) -> str | None:
    """--init takes a checkpoint path or the name of a shipped / trained style (resolved like --style)."""
    from toolkit.zoo import checkpoint_path

    return None if arg is None else str(checkpoint_path(arg))


def run(args) -> int:
    from toolkit.config import LossConfig, TrainConfig
    from toolkit.errors import UserError
    from toolkit.models import ARCHS
    from toolkit.train import train

    ARCHS.get(args.arch)
    from toolkit.data.images import check_pixels

    # the numbers' own ranges are checked while parsing (toolkit.commands.whole / real)
    if args.size % 16:
        raise UserError(f"--size {args.size} must be a multiple of 16")
    check_pixels(args.size, args.size * args.batch, "--size x --batch")
    check_pixels(args.style_size, args.style_size, "--style-size")
    loss = LossConfig(loss_net=args.loss_net, loss_weights=args.loss_weights, content_weight=args.content_weight,
                      style_weight=args.style_weight, tv_weight=args.tv_weight, temporal_weight=args.temporal_weight,
                      shift_weight=args.shift_weight, turn_weight=args.turn_weight, turn_form=args.turn_form,
                      grain_weight=args.grain_weight, edge_weight=args.edge_weight, edge_form=args.edge_form,
                      patch_weight=args.patch_weight, patch_scale=args.patch_scale,
                      style_layers=args.style_layers, content_layers=args.content_layers,
                      style_scales=args.style_scales, style_balance=args.style_balance,
                      encoder_precision=args.encoder_precision)
    cfg = TrainConfig(name=args.name, style_image=args.style_image, content_dir=args.content_dir, arch=args.arch,
                      steps=args.steps, size=args.size, style_size=args.style_size, batch=args.batch, lr=args.lr,
                      seed=args.seed, workers=args.workers, sample_every=args.sample_every,
                      checkpoint_every=args.checkpoint_every, init=_init_path(args.init),
                      freeze_batch_stats=args.freeze_batch_stats, frame_crops=args.frame_crops,
                      edge_ramps=args.edge_ramps, loss=loss)
    path = train(cfg, out_root=args.out, resume=args.resume, overwrite=args.overwrite)
    print(path)
    return 0
