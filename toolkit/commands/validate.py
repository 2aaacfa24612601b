from __future__ import annotations

HELP = "re-run the parity check on an exported artifact (reads its metadata: style, arch, target, precision)"


def add_arguments(p) -> None:
    from toolkit.commands import whole

    p.add_argument("artifact", metavar="ARTIFACT", help="an exported .onnx / .mlpackage / .tflite")
    p.add_argument("--checkpoint", help="compare against this checkpoint instead of the style named in the artifact")
    p.add_argument("--images-per-size", type=whole(1, 64), default=2, help="photos compared at each size (default: 2)")


def run(args) -> int:
    from pathlib import Path

    from toolkit.models.deploy import deploy_form
    from toolkit.config import arch_from_json
    from toolkit.errors import UserError
    from toolkit.export import read_metadata
    from toolkit.formats import target_for_path
    from toolkit.parity import check_parity, parity_sizes_for
    from toolkit.zoo import load_style

    path = Path(args.artifact)
    target = target_for_path(path)
    meta = read_metadata(path)
    missing = [k for k in ("style", "arch", "precision") if k not in meta]
    if missing:
        raise UserError(f"{path} carries no toolkit metadata ({', '.join(missing)} missing); "
                        "it was not exported by toolkit: re-export it")
    ckpt = load_style(None if args.checkpoint else meta["style"], args.checkpoint)
    model, _ = deploy_form(ckpt.model.eval())  # what the exporter wrote (and proved parity against)
    arch = arch_from_json(meta["arch"], path)
    if arch != model.config:
        raise UserError(f"{path} was exported from a different architecture than "
                        f"{args.checkpoint or meta['style']}; pass the matching --checkpoint")
    sizes = recorded_sizes(path, meta.get("sizes", "dynamic"), arch.stride)
    result = check_parity(model, path, target.name, meta["precision"],
                          parity_sizes_for(sizes, meta["precision"], arch.stride, target.name), args.images_per_size)
    print(f"{path}: parity ok ({target.name} {meta['precision']}, {result['runtime']}, {result['tolerance']})")
    for size, numbers in result["sizes"].items():
        psnr = numbers["psnr_db"] if numbers["psnr_db"] is not None else "inf"
        print(f"  {size}: max_abs {numbers['max_abs']:.3g}, PSNR {psnr} dB")
    return 0


def recorded_sizes(path, text, stride: int) -> tuple:
    """The input sizes an artifact's metadata records, refused (one line, before any photo is made) when they are
    malformed, off the net's stride or over the pixel limit: metadata is as hostile as any input."""
    from toolkit.data.images import check_pixels
    from toolkit.errors import UserError
    from toolkit.formats import check_sizes, sizes_from_text

    try:
        sizes = sizes_from_text(str(text))
        check_sizes(sizes, stride)
        for h, w in sizes:
            check_pixels(h, w, f"size {h}x{w}")
    except UserError as exc:
        raise UserError(f"{path} records input sizes it cannot run at ({exc}); re-export it") from None
    return sizes
