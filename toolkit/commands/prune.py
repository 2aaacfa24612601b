from __future__ import annotations

HELP = "remove whole channels (torch-pruning), optionally fine-tune / QAT; writes a plain, narrower checkpoint"


def add_arguments(p) -> None:
    from toolkit.commands import add_finetune_arguments

    p.add_argument("--checkpoint", required=True, help="the float checkpoint to prune, or a style name")
    p.add_argument("--sparsity", type=float, required=True, help="fraction of channels removed per stage, in (0, 1)")
    p.add_argument("--importance", default="l1", choices=["l1", "taylor"],
                   help="channel ranking: l1 weight magnitude, or taylor |w * grad| on the training loss")
    p.add_argument("--qat-bits", type=int, choices=[8, 4, 2],
                   help="fine-tune with fake-quantized weights of this many bits (and uint8 activations)")
    add_finetune_arguments(p)


def run(args) -> int:
    from toolkit.checkpoint import load_checkpoint
    from toolkit.zoo import checkpoint_path
    from toolkit.compress.finetune import check_output, default_output, finetune_config, save_compressed
    from toolkit.compress.prune import check_sparsity, prune_model, pruned_arch
    from toolkit.compress.qat import check_bits, fake_quant
    from toolkit.errors import UserError
    from toolkit.paths import resolve_data_path
    from toolkit.train import content_loader, finetune, style_loss

    check_sparsity(args.sparsity)
    if args.qat_bits is not None:
        check_bits(args.qat_bits)
        if not args.finetune_steps:
            raise UserError("--qat-bits needs --finetune-steps N (quantization-aware training is a fine-tune)")
    args.checkpoint = str(checkpoint_path(args.checkpoint))
    ckpt = load_checkpoint(args.checkpoint)
    pruned_arch(ckpt.arch, args.sparsity)  # unsupported nets fail before any work
    tag = f"pruned{round(args.sparsity * 100)}" + (f".qat{args.qat_bits}" if args.qat_bits else "")
    out = check_output(args.out or default_output(args.checkpoint, tag), args.checkpoint)
    needs_data = args.finetune_steps or args.importance == "taylor" or args.qat_bits
    cfg = finetune_config(ckpt, args, args.finetune_steps) if needs_data else None
    loss_fn = style_loss(cfg) if cfg is not None else None

    def accumulate_gradients(model, batches: int = 4) -> None:
        import dataclasses

        from toolkit.data.images import list_images

        probe = dataclasses.replace(cfg, steps=batches)
        for batch in content_loader(probe, list_images(resolve_data_path(cfg.content_dir))):
            loss_fn(model(batch), batch)["total"].backward()

    model = prune_model(ckpt.model, args.sparsity, args.importance,
                        accumulate_gradients if args.importance == "taylor" else None)
    history = []
    if args.finetune_steps:
        if args.qat_bits:
            with fake_quant(model, args.qat_bits):
                history = finetune(model, cfg, loss_fn)
        else:
            history = finetune(model, cfg, loss_fn)
    record = {"method": "prune", "sparsity": args.sparsity, "importance": args.importance,
              "finetune_steps": args.finetune_steps, "qat_bits": args.qat_bits,
              "widths_before": list(ckpt.arch.widths), "widths_after": list(model.config.widths),
              "final_losses": history[-1] if history else None}
    print(save_compressed(out, model, ckpt, args.checkpoint, record, cfg))
    return 0
