from __future__ import annotations

HELP = ("quality table for compressed models: bytes, params, MACs, PSNR vs the float model, style/content loss, "
        "side-by-side PNG")


def add_arguments(p) -> None:
    from toolkit.commands import MAX_WORKERS, whole

    p.add_argument("inputs", nargs="+", metavar="MODEL",
                   help="checkpoints (.safetensors, or a style name like --style) and/or exported artifacts "
                   "(.onnx, .tflite, .mlpackage)")
    p.add_argument("--reference", help="the float checkpoint (or style name) every PSNR / loss change is measured "
                   "against (default: the first checkpoint among MODEL)")
    p.add_argument("--images", help="eval photos (default: the shared content/eval set)")
    p.add_argument("--size", type=int, default=256, help="eval long side (default 256)")
    p.add_argument("--style-image", help="style image for the style loss (default: the reference's training one)")
    p.add_argument("--loss-net", choices=["vgg19", "vgg16", "random"], help="loss network (default: the training one)")
    p.add_argument("--threads", type=whole(1, MAX_WORKERS), default=1, help="runtime threads for artifacts")
    p.add_argument("-o", "--out", "--out-dir", dest="out_dir", default="reports/compare",
                   help="folder where compare.{json,md,png} go (default: reports/compare/)")


def run(args) -> int:
    import dataclasses
    from pathlib import Path

    from toolkit.checkpoint import load_checkpoint
    from toolkit.compress.quality import (CHECKPOINT_SUFFIXES, evaluate, eval_images, load_candidate, markdown_table,
                                          write_report)
    from toolkit.errors import UserError
    from toolkit.fsutil import check_output_file
    from toolkit.paths import portable_path
    from toolkit.train import style_loss
    from toolkit.zoo import checkpoint_path

    from toolkit.stylize import check_sides

    check_sides(args.size, None)
    check_output_file(Path(args.out_dir) / "compare.json", "-o")  # a file in the way fails before any evaluation
    inputs = [str(checkpoint_path(p)) for p in args.inputs]  # a bare name is a style, as for prune --checkpoint
    ref_path = str(checkpoint_path(args.reference)) if args.reference else next(
        (p for p in inputs if Path(p).suffix in CHECKPOINT_SUFFIXES), None)
    if ref_path is None:
        raise UserError("no float checkpoint to compare against; pass --reference CHECKPOINT")
    reference = load_checkpoint(ref_path)
    candidates = [load_candidate(p, threads=args.threads) for p in inputs]
    base = reference.train_config()
    loss = base.loss if args.loss_net is None else dataclasses.replace(base.loss, loss_net=args.loss_net)
    cfg = dataclasses.replace(base, style_image=args.style_image or base.style_image, loss=loss)
    if not cfg.style_image:
        raise UserError(f"{ref_path} records no style image; pass --style-image PATH")
    loss_fn = style_loss(cfg)
    images = eval_images(args.images, args.size)
    rows, outputs = evaluate(candidates, reference, images, loss_fn)
    strip = (images[0], [o[0] for o in outputs], [c.name for c in candidates])
    paths = write_report(Path(args.out_dir), rows, strip,
                         {"reference": str(ref_path), "style_image": portable_path(cfg.style_image), "loss_net": cfg.loss.loss_net,
                          "eval_images": len(images), "eval_long_side": args.size})
    print(markdown_table(rows), end="")
    for p in paths.values():
        print(p)
    return 0
