from __future__ import annotations

HELP = "measure temporal consistency (warping error on non-occluded pixels) of per-frame vs stabilised stylisation"


def add_arguments(p) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--style", help="a shipped style name")
    src.add_argument("--checkpoint", help="a .safetensors checkpoint")
    p.add_argument("--compare", action="append", default=[], metavar="CKPT",
                   help="another checkpoint to report per-frame (e.g. trained with --temporal-weight); repeatable")
    p.add_argument("--sintel", help="folder of Sintel sequences (default ../shared/data/video/sintel)")
    p.add_argument("--clips", nargs="*", help="real video clips (default ../shared/data/video/clips/*.mp4)")
    p.add_argument("--frames", type=int, default=24, help="frames per real clip (default 24)")
    p.add_argument("--size", type=int, help="run the net at this long side")
    p.add_argument("--stabilize-weight", type=float, default=0.6)
    p.add_argument("--style-image", help="style image for the style-loss columns (default: the one the checkpoint "
                   "was trained on, looked up by name in ../shared/data/styles when its path is gone)")
    p.add_argument("-o", "--out", default="reports/video", help="report folder (default reports/video)")


def run(args) -> int:
    from pathlib import Path

    from toolkit.checkpoint import load_checkpoint
    from toolkit.fsutil import ensure_writable_dir
    from toolkit.paths import shared_data
    from toolkit.video.evaluate import brief, evaluate_temporal, style_image_for, write_report
    from toolkit.zoo import load_style

    ckpt = load_style(args.style, args.checkpoint)
    models = {f"{ckpt.name} per-frame": ckpt.model}
    for c in args.compare:
        models[f"{Path(c).stem} per-frame"] = load_checkpoint(c).model
    style_image = style_image_for(ckpt, args.style_image)
    sintel = Path(args.sintel) if args.sintel else shared_data("video", "sintel")
    clips = [Path(c) for c in args.clips] if args.clips is not None else sorted(
        (shared_data("video", "clips") or Path("/nonexistent")).glob("*.mp4"))
    ensure_writable_dir(args.out)  # a bad report folder fails before minutes of stylising
    result = evaluate_temporal(models, sintel, clips, frames=args.frames, size=args.size,
                               stabilize_weight=args.stabilize_weight, style_image=style_image, style=ckpt.name)
    report = write_report(result, Path(args.out))
    print(brief(result))
    print(report)
    return 0
