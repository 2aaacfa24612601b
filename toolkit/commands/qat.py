from __future__ import annotations

HELP = ("quantization-aware fine-tune: weights fake-quantized on the exporter's grid (per-channel 8/4/2-bit, or a "
        "6/4/2/1-bit palette for CoreML palettizeN) and uint8 activations; bakes the weights")


def add_arguments(p) -> None:
    from toolkit.commands import add_finetune_arguments

    p.add_argument("--checkpoint", required=True, help="the float (or pruned) checkpoint, or a style name")
    p.add_argument("--bits", type=int, required=True,
                   help="weight bits: 8, 4 or 2 (ternary) per channel; with --palette 6, 4, 2 or 1 (binarised)")
    p.add_argument("--palette", action="store_true",
                   help="one k-means palette of 2**bits values per conv, as `--target coreml --precision "
                   "palettizeN` stores it, instead of a per-channel uniform grid")
    p.add_argument("--no-act-quant", action="store_true", help="keep activations float (weight-only QAT)")
    add_finetune_arguments(p)


def run(args) -> int:
    from toolkit.checkpoint import load_checkpoint
    from toolkit.zoo import checkpoint_path
    from toolkit.compress.finetune import check_output, default_output, finetune_config, save_compressed
    from toolkit.compress.qat import bake_weights, check_bits, fake_quant
    from toolkit.train import finetune

    grid = "palette" if args.palette else "uniform"
    check_bits(args.bits, "--bits", grid)
    args.checkpoint = str(checkpoint_path(args.checkpoint))
    ckpt = load_checkpoint(args.checkpoint)
    tag = f"qat{'_palette' if args.palette else ''}{args.bits}"
    out = check_output(args.out or default_output(args.checkpoint, tag), args.checkpoint)
    model = ckpt.model
    cfg = finetune_config(ckpt, args, args.finetune_steps) if args.finetune_steps else None
    history = []
    if cfg is not None:
        with fake_quant(model, args.bits, act_bits=None if args.no_act_quant else 8, grid=grid):
            history = finetune(model, cfg)
    else:  # post-training rounding only: the baseline QAT is measured against
        bake_weights(model, args.bits, grid)
    record = {"method": "qat" if history else "ptq-weights", "bits": args.bits, "grid": grid,
              "finetune_steps": args.finetune_steps,
              "act_quant": not args.no_act_quant, "final_losses": history[-1] if history else None}
    print(save_compressed(out, model, ckpt, args.checkpoint, record, cfg))
    return 0
