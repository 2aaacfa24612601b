from __future__ import annotations

import argparse

HELP = "train a style with the perceptual loss (resumable; runs under torchrun for data parallelism)"
KEEP = argparse.SUPPRESS  # an option not given stays out of args: the default, or the resumed run's recorded value


def add_arguments(p) -> None:
    from toolkit.commands import MAX_STEPS, MAX_WORKERS, real, whole
    from toolkit.config import EDGE_FORMS, TURN_FORMS, LossConfig, TrainConfig

    d, dl = TrainConfig(), LossConfig()  # the defaults named in help texts
    p.add_argument("--style-image", default=KEEP, help="the style image (needed unless resuming)")
    p.add_argument("--name", required=True, help="run name; writes runs/<name>/")
    p.add_argument("--content-dir", default=KEEP, help="folder of content photos (needed unless resuming)")
    p.add_argument("--arch", default=KEEP, help=f"architecture preset (default {d.arch}; see `toolkit archs`)")
    p.add_argument("--steps", type=whole(1, MAX_STEPS), default=KEEP)
    p.add_argument("--size", type=whole(16), default=KEEP, help="training crop side (a multiple of 16)")
    p.add_argument("--style-size", type=whole(1), default=KEEP, help="style image long side")
    p.add_argument("--batch", type=whole(1), default=KEEP)
    p.add_argument("--lr", type=real(above=True), default=KEEP)
    p.add_argument("--style-weight", type=real(), default=KEEP)
    p.add_argument("--content-weight", type=real(), default=KEEP)
    p.add_argument("--tv-weight", type=real(), default=KEEP)
    p.add_argument("--temporal-weight", type=real(), default=KEEP,
                   help="weight of the synthetic-motion temporal stability loss (0 = off)")
    p.add_argument("--shift-weight", type=real(), default=KEEP,
                   help="weight of the shift-equivariance term against lattice-locked grain (0 = off)")
    p.add_argument("--turn-weight", type=real(), default=KEEP,
                   help="weight of the quarter-turn equivariance term: a photo turned a quarter turn is painted "
                        "turned, so strokes take their direction from the photo, not the screen (0 = off)")
    p.add_argument("--turn-form", default=KEEP, choices=TURN_FORMS,
                   help="what the turn term compares: the strokes' local directions (strokes), which leaves each "
                        "stroke free to fall anew, or every pixel (pixels)")
    p.add_argument("--grain-weight", type=real(), default=KEEP,
                   help="weight of the even/odd phase-balance term against the 2-pixel grain (0 = off)")
    p.add_argument("--lattice-weight", type=real(), default=KEEP,
                   help="weight of the phase-balance term at the trunks' 4- and 8-px cells, against small squares "
                        "repeating every cell where the photo is flat (0 = off)")
    p.add_argument("--edge-weight", type=real(), default=KEEP,
                   help="weight of the border-step term against bright or dark edge stripes (0 = off)")
    p.add_argument("--edge-form", default=KEEP, choices=EDGE_FORMS,
                   help="what the border-step term asks: the photo's own step (change), or no step beyond it, so "
                        "that a style may paint over a photo's edge line but not draw one (drawn)")
    p.add_argument("--tone-weight", type=real(), default=KEEP,
                   help="weight of the tone-layout term: the output's luminance over 8-px cells rises and falls with "
                        "the photo's (each standardised), so a style's large light and dark masses lie where the "
                        "photo's do and faces stay readable; palette and finer texture stay the style's (0 = off)")
    p.add_argument("--patch-weight", type=real(), default=KEEP,
                   help="weight of the patch (MRF) style term: each 3x3 patch of the output's VGG features pulled to "
                        "its nearest patch of the style's, for the painting's shapes as well as its statistics "
                        "(0 = off)")
    p.add_argument("--patch-scale", type=real(0.0, above=True), default=KEEP, metavar="S",
                   help="match the patch term on output and style image at this scale (default 1; 0.25 asks for "
                        "shapes 4x as large)")
    p.add_argument("--style-layers", type=_taps, default=KEEP, metavar="TAPS",
                   help=f"comma-separated VGG taps for the Gram style loss (default {','.join(dl.style_layers)}; "
                        "the shared VGG19 reaches relu3_4)")
    p.add_argument("--content-layers", type=_taps, default=KEEP, metavar="TAPS",
                   help=f"comma-separated VGG taps for the content loss (default {','.join(dl.content_layers)})")
    p.add_argument("--style-balance", action=argparse.BooleanOptionalAction, default=KEEP,
                   help="weight each style tap by 1 / how far typical photos are from the style there (set once at "
                        "the start from training crops, recorded in the checkpoint)")
    p.add_argument("--style-scales", type=_scales, default=KEEP, metavar="S",
                   help="comma-separated scales at which style Grams are matched, e.g. 1,0.5 (default 1)")
    p.add_argument("--seed", type=whole(0, 2**32 - 1), default=KEEP)
    p.add_argument("--workers", type=whole(0, MAX_WORKERS), default=KEEP, help="data-loading worker processes")
    p.add_argument("--sample-every", type=whole(0), default=KEEP)
    p.add_argument("--checkpoint-every", type=whole(1), default=KEEP)
    p.add_argument("--loss-net", default=KEEP, choices=["vgg19", "vgg16", "random"])
    p.add_argument("--encoder-precision", default=KEEP, choices=["fp32", "bf16"],
                   help="run the frozen VGG in bf16 (about 1.8x faster steps on AVX512-BF16 CPUs and GPUs)")
    p.add_argument("--loss-weights", default=KEEP,
                   help="VGG weights file (safetensors, or a torchvision .pth state dict)")
    p.add_argument("--init", metavar="CKPT", default=KEEP,
                   help="start from this checkpoint's weights (fine-tune, e.g. a shipped style with "
                        "--temporal-weight); a path or a shipped style name")
    p.add_argument("--freeze-batch-stats", action=argparse.BooleanOptionalAction, default=KEEP,
                   help="batch norms (nano_lite's trunk) normalise by their running statistics, as the exported net "
                        "does, instead of each batch's: fine-tunes the function that ships")
    p.add_argument("--frame-crops", type=real(maximum=1), default=KEEP, metavar="P",
                   help="fraction of training crops taken at a corner of the photo (default 0): the net learns the "
                        "photo's own frame, against stripes along the border of stylised photos")
    p.add_argument("--edge-ramps", type=real(maximum=1), default=KEEP, metavar="P",
                   help="fraction of training crops given a scan line (1-2 px) or a ramp (2-12 px) along one side "
                        "(default 0): with --edge-weight the net learns not to turn a photo's own edge line into a "
                        "stripe")
    p.add_argument("--crop-zoom", type=real(minimum=1), default=KEEP, metavar="Z",
                   help="each training crop sees the photo's short side resized to the crop side x U(1, Z) (default "
                        "1.6, most of the scene); a larger Z adds closer views, with the larger flat areas of a photo "
                        "at its native size")
    p.add_argument("--out", default="runs", help="root folder for runs (default runs/)")
    p.add_argument("--resume", action="store_true",
                   help="continue runs/<name> from its last checkpoint with its recorded recipe; options given "
                        "change it from there (e.g. --steps to train longer; each change is recorded)")
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


def recipe(args):
    """The run's config: the options given, over the recorded recipe when resuming a run that has a checkpoint,
    else over the defaults."""
    import dataclasses

    from toolkit.config import LossConfig, TrainConfig
    from toolkit.errors import UserError
    from toolkit.train import recorded_config

    loss_fields = {f.name for f in dataclasses.fields(LossConfig)}
    fields = loss_fields | {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in fields}
    if "init" in given:
        given["init"] = _init_path(given["init"])
    base = recorded_config(args.out, args.name) if args.resume else None
    if base is None:
        missing = [f"--{k.replace('_', '-')}" for k in ("style_image", "content_dir") if k not in given]
        if missing:
            raise UserError(f"{' and '.join(missing)} missing: a new run needs them (or --resume a run that has a "
                            "checkpoint)")
        base = TrainConfig()
    loss = dataclasses.replace(base.loss, **{k: v for k, v in given.items() if k in loss_fields})
    return dataclasses.replace(base, loss=loss, **{k: v for k, v in given.items() if k not in loss_fields})


def run(args) -> int:
    from toolkit.data.images import check_pixels
    from toolkit.errors import UserError
    from toolkit.models import ARCHS
    from toolkit.train import train

    cfg = recipe(args)
    ARCHS.get(cfg.arch)
    # the numbers' own ranges are checked while parsing (toolkit.commands.whole / real)
    if cfg.size % 16:
        raise UserError(f"--size {cfg.size} must be a multiple of 16")
    check_pixels(cfg.size, cfg.size * cfg.batch, "--size x --batch")
    check_pixels(cfg.style_size, cfg.style_size, "--style-size")
    path = train(cfg, out_root=args.out, resume=args.resume, overwrite=args.overwrite)
    print(path)
    return 0
