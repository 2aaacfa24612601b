from __future__ import annotations

HELP = "ship a trained style: package it in the zoo, export every artifact with parity, preview, bench, manifest"


def add_arguments(p) -> None:
    p.add_argument("--checkpoint", required=True, help="the trained checkpoint (runs/<name>/<name>.safetensors)")
    p.add_argument("--style", required=True, help="the name users will type (--style NAME)")
    p.add_argument("--source", required=True, type=one_line_text,
                   help="where the style image comes from (artist, title, year)")
    p.add_argument("--licence", required=True, type=one_line_text,
                   help="the style image's licence, e.g. 'public domain'")
    p.add_argument("--style-image", help="the style image (default: the one recorded in the checkpoint)")
    p.add_argument("--out", default="exported", help="export folder (default exported/)")
    p.add_argument("--skip-export", action="store_true", help="only re-measure, re-render and rewrite the manifest")


def one_line_text(text: str) -> str:
    """--source / --licence land in the gallery README, the manifest and every artifact's metadata: one line of
    printable text."""
    import argparse

    if not text.strip() or not text.isprintable():
        raise argparse.ArgumentTypeError("must be one line of printable text (no newlines or control characters)")
    return text.strip()


def check_inputs(args) -> None:
    """What ship reads, checked before the zoo or the export folder is touched: the checkpoint and the training
    config it records (and, re-shipping a zoo entry, its ship record), and the style image (given, or the recorded
    one when it is there) must decode."""
    from pathlib import Path

    from toolkit.checkpoint import load_checkpoint
    from toolkit.data.images import decode_image
    from toolkit.errors import UserError
    from toolkit.paths import resolve_data_path, safe_name
    from toolkit.zoo import ship as ship_module

    ckpt = load_checkpoint(args.checkpoint)
    recorded = ckpt.train_config().style_image
    entry = ship_module.ZOO_DIR / f"{safe_name(args.style, 'style')}.safetensors"
    if Path(args.checkpoint).resolve() == entry.resolve() and not {"train_command", "training"} <= ckpt.meta.keys():
        raise UserError(f"zoo entry {entry} has no ship record (train_command, training); ship the run's checkpoint "
                        f"(runs/{args.style}/{args.style}.safetensors) instead")
    image = resolve_data_path(args.style_image or recorded) if (args.style_image or recorded) else None
    if image is not None and image.is_file():  # a missing one: ship names the flag
        decode_image(image)


def run(args) -> int:
    from pathlib import Path

    from toolkit.zoo.ship import ship

    check_inputs(args)
    record = ship(Path(args.checkpoint), args.style, args.source, args.licence,
                  Path(args.style_image) if args.style_image else None, Path(args.out), args.skip_export)
    print(f"shipped {args.style}: {record['params']:,} params, fps {record['fps_480x640_onnx_1thread']}")
    return 0
