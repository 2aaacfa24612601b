from __future__ import annotations

HELP = "quantization-aware fine-tune: fake-quantized weights (8/4/2 bits) and uint8 activations; bakes the weights"


def add_arguments(p) -> None:
    from toolkit.compress.finetune import add_finetune_arguments

    p.add_argument("--checkpoint", required=True, help="the float (or pruned) checkpoint")
    p.add_argument("--bits", type=int, required=True, help="weight bits: 8, 4 or 2 (ternary)")
    p.add_argument("--no-act-quant", action="store_true", help="keep activations float (weight-only QAT)")
    add_finetune_arguments(p)


def run(args) -> int:
    from toolkit.checkpoint import load_checkpoint
    from toolkit.compress.finetune import check_output, default_output, finetune_config, save_compressed
    from toolkit.compress.qat import bake_weights, check_bits, fake_quant
    from toolkit.train import finetune

    check_bits(args.bits, "--bits")
    ckpt = load_checkpoint(args.checkpoint)
    out = check_output(args.out or default_output(args.checkpoint, f"qat{args.bits}"), args.checkpoint)
    model = ckpt.model
    cfg = finetune_config(ckpt, args, args.finetune_steps) if args.finetune_steps else None
    history = []
    if cfg is not None:
        with fake_quant(model, args.bits, act_bits=None if args.no_act_quant else 8):
            history = finetune(model, cfg)
    else:  # post-training rounding only: the baseline QAT is measured against
        bake_weights(model, args.bits)
    record = {"method": "qat" if history else "ptq-weights", "bits": args.bits, "finetune_steps": args.finetune_steps,
              "act_quant": not args.no_act_quant, "final_losses": history[-1] if history else None}
    print(save_compressed(out, model, ckpt, args.checkpoint, record, cfg))
    return 0
