from __future__ import annotations

HELP = "stylise images (any size or mode) with a shipped style or a checkpoint"


def add_arguments(p) -> None:
    p.add_argument("inputs", nargs="+", metavar="IMAGE", help="images to stylise")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--style", help="a shipped style name (see `toolkit styles`)")
    src.add_argument("--checkpoint", help="a .safetensors checkpoint written by `toolkit train`")
    p.add_argument("-o", "--out-dir", default="stylized", help="output folder (default: stylized/)")
    p.add_argument("--size", type=int, help="run the net at this long side, then resize back to the input size")
    from toolkit.video.stylize import add_video_arguments

    add_video_arguments(p)  # videos (.mp4/.mov/.mkv/.avi/.webm) or frame folders go to toolkit.video


def run(args) -> int:
    from pathlib import Path

    from toolkit.errors import UserError
    from toolkit.stylize import stylize_files
    from toolkit.zoo import load_style

    if args.size is not None and args.size < 16:
        raise UserError(f"--size {args.size} is too small; use at least 16")
    if args.size is not None:
        from toolkit.data.images import check_pixels

        check_pixels(args.size, args.size, f"--size {args.size}")
    ckpt = load_style(args.style, args.checkpoint)
    from toolkit.video.stylize import is_video_input, run_video_cli

    if any(is_video_input(p) for p in args.inputs):
        return run_video_cli(args, ckpt)
    written = stylize_files(ckpt.model, [Path(p) for p in args.inputs], Path(args.out_dir), ckpt.name, args.size)
    for path in written:
        print(path)
    return 0
