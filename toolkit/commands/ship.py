from __future__ import annotations

HELP = "ship a trained style: package it in the zoo, export every artifact with parity, preview, bench, manifest"


def add_arguments(p) -> None:
    p.add_argument("--checkpoint", required=True, help="the trained checkpoint (runs/<name>/<name>.safetensors)")
    p.add_argument("--style", required=True, help="the name users will type (--style NAME)")
    p.add_argument("--source", required=True, help="where the style image comes from (artist, title, year)")
    p.add_argument("--licence", required=True, help="the style image's licence, e.g. 'public domain'")
    p.add_argument("--style-image", help="the style image (default: the one recorded in the checkpoint)")
    p.add_argument("--out", default="exported", help="export folder (default exported/)")
    p.add_argument("--skip-export", action="store_true", help="only re-measure, re-render and rewrite the manifest")


def run(args) -> int:
    from pathlib import Path

    from toolkit.zoo.ship import ship

    record = ship(Path(args.checkpoint), args.style, args.source, args.licence,
                  Path(args.style_image) if args.style_image else None, Path(args.out), args.skip_export)
    print(f"shipped {args.style}: {record['params']:,} params, fps {record['fps_480x640_onnx_1thread']}")
    return 0
