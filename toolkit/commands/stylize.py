from __future__ import annotations

import argparse

from toolkit.stylize import DETAIL_MAX_SIDE, MAX_SIDE

HELP = "stylise images (any size or mode) with a shipped style or a checkpoint"


def add_arguments(p) -> None:
    p.add_argument("inputs", nargs="+", metavar="IMAGE", help="images to stylise")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--style", help="a shipped style name (see `toolkit styles`)")
    src.add_argument("--checkpoint", help="a .safetensors checkpoint written by `toolkit train`")
    p.add_argument("-o", "--out", "--out-dir", dest="out_dir", default="stylized",
                   help="output folder (default: stylized/)")
    p.add_argument("--size", type=int, help="run the net at this long side, then resize back to the input size "
                   "(instead of --max-side)")
    p.add_argument("--max-side", type=int, default=MAX_SIDE,
                   help=f"run the net at most at this long side, then resize back (default {MAX_SIDE}: a larger photo "
                        "keeps its strokes' size against the picture, where at full resolution a 12 MP photo's are a "
                        "quarter of it and it reads as colour-graded; 0 = always the full resolution)")
    p.add_argument("--detail", action=argparse.BooleanOptionalAction, default=True,
                   help="images the net runs smaller than (--max-side, --size) take every frequency finer than that "
                        f"pass holds from a second pass at their own size (at most {DETAIL_MAX_SIDE} px), so the "
                        "strokes stay crisp at 100%% (default on; --no-detail: one pass, about 4x faster on a 12 MP "
                        "photo; videos are always one pass)")
    add_video_arguments(p)  # videos (.mp4/.mov/.mkv/.avi/.webm) or frame folders go to toolkit.video


def add_video_arguments(p) -> None:
    from toolkit.video.io import DEFAULT_X264_PRESET, X264_PRESETS
    from toolkit.video.stylize import BACKENDS, ENGINES

    g = p.add_argument_group("video (inputs ending in .mp4/.mov/.mkv/.avi/.webm, or folders of frames)")
    g.add_argument("--backend", default="onnx", choices=BACKENDS,
                   help="runtime in each worker: onnx (onnxruntime, default) or torch")
    g.add_argument("--workers", type=int, default=1, help="worker processes, each with its own session (default 1)")
    g.add_argument("--threads", type=int, default=1, help="runtime threads per worker (default 1)")
    g.add_argument("--stabilize", action="store_true",
                   help="blend each frame with the previous output warped by optical flow (less flicker)")
    g.add_argument("--stabilize-weight", type=float, default=0.6, help="weight of the warped previous output")
    g.add_argument("--engine", default="local", choices=ENGINES, help="local processes, or a Ray cluster")
    g.add_argument("--address", help="Ray cluster address (default: start a local Ray instance)")
    g.add_argument("--encoder-preset", default=DEFAULT_X264_PRESET, choices=X264_PRESETS,
                   help=f"libx264 preset (default {DEFAULT_X264_PRESET}: half of medium's CPU, slightly larger files)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing output")


def run(args) -> int:
    from pathlib import Path

    from toolkit.stylize import check_sides, stylize_files
    from toolkit.zoo import load_style

    check_sides(args.size, args.max_side)
    ckpt = load_style(args.style, args.checkpoint)
    from toolkit.video.stylize import is_video_input

    if any(is_video_input(p) for p in args.inputs):
        return run_video(args, ckpt)
    written = stylize_files(ckpt.model, [Path(p) for p in args.inputs], Path(args.out_dir), ckpt.name, args.size,
                            max_side=args.max_side, detail=args.detail)
    for path in written:
        print(path)
    return 0


def run_video(args, ckpt) -> int:
    """`toolkit stylize VIDEO... -o OUT.mp4|DIR`: one video -> OUT (a video path or a frame folder); several
    videos -> DIR/<stem>.<style>.mp4. Every input and output is checked before the worker model is exported."""
    import logging
    from pathlib import Path

    from toolkit.errors import UserError
    from toolkit.video.io import is_video_path
    from toolkit.video.stylize import make_payload, stylize_video, video_outputs

    if args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    out = Path(args.out_dir)
    pairs = video_outputs([Path(p) for p in args.inputs], out, ckpt.name,
                          out_is_target=is_video_path(out) or args.out_dir != "stylized", overwrite=args.overwrite)
    payload = make_payload(ckpt.model, args.backend, ckpt.name)
    for src, dest in pairs:
        stats = stylize_video(src, dest, payload=payload, workers=args.workers, threads=args.threads, size=args.size,
                              max_side=args.max_side,
                              stabilize=args.stabilize, stabilize_weight=args.stabilize_weight, engine=args.engine,
                              address=args.address, overwrite=args.overwrite, encoder_preset=args.encoder_preset)
        logging.getLogger("toolkit.video.stylize").info("%s: %d frames in %.1f s (%.1f frames/s)", dest, stats["frames"],
                                                stats["seconds"], stats["fps"])
        print(dest)
    return 0

