from __future__ import annotations

HELP = "export a style to ONNX / CoreML / TFLite, prove parity against torch, and update exported/manifest.json"


def add_arguments(p) -> None:
    from toolkit.commands import list_option
    from toolkit.export import FORMATS, all_precisions

    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--style", help="a shipped style name (see `toolkit styles`)")
    src.add_argument("--checkpoint", help="a .safetensors checkpoint written by `toolkit train`")
    list_option(p, "--target", default=["onnx"], metavar="TARGET", help=f"{' | '.join(FORMATS)} | all")
    list_option(p, "--precision", default=["fp32"], metavar="P",
                help=f"{' | '.join(all_precisions())}. Per target: " +
                "; ".join(f"{t.name}: {', '.join(t.precision_names)}" for t in FORMATS.values()))
    list_option(p, "--size", default=[], metavar="HxW",
                help="fixed input sizes, one file per size. Without: " + "; ".join(
                    f"{t.name}: {_default_sizes(t)}" for t in FORMATS.values()))
    p.add_argument("--out", default="exported", help="output folder (default: exported/)")
    p.add_argument("--calibration", action="append", metavar="DIR",
                   help="photos for int8 calibration (default: the shared eval + a few train photos)")
    p.add_argument("--no-check", action="store_true", help="skip the parity check (not recommended)")


def _default_sizes(target) -> str:
    policy = target.size_policy
    if policy.kind == "dynamic":
        return "dynamic H/W"
    listed = ", ".join(f"{h}x{w}" for h, w in policy.sizes)
    return f"one package holding {listed}" if policy.kind == "enumerated" else f"one file each at {listed}"


def plan(args, stride: int) -> list:
    """The export jobs the arguments ask for; every bad choice is rejected before any export."""
    from toolkit.export import parse_size
    from toolkit.export.batch import plan_jobs

    return plan_jobs(args.target, args.precision, [parse_size(s) for s in args.size], stride)


def run(args) -> int:
    from toolkit.export.batch import export_style
    from toolkit.manifest import manifest_path
    from toolkit.zoo import load_style

    ckpt = load_style(args.style, args.checkpoint)
    model = ckpt.model.eval()
    style = args.style or ckpt.name
    jobs = plan(args, model.config.stride)
    # Every artifact carries the style's licence (CoreML's license field, the other targets' metadata).
    metadata = {"licence": ckpt.meta["licence"]} if ckpt.meta.get("licence") else {}
    records = export_style(model, style, jobs, args.out, metadata, calibration=tuple(args.calibration or ()),
                           check=not args.no_check, log=lambda line: print(line, flush=True))
    print(_summary(records))
    print(f"manifest: {manifest_path(args.out)}")
    return 0


def _summary(records: list[dict]) -> str:
    rows = [("file", "target", "precision", "sizes", "kB", "max_abs", "min PSNR dB", "s")]
    for r in records:
        p = r.get("parity") or {}
        sizes = r["sizes"] if isinstance(r["sizes"], str) else ",".join(f"{h}x{w}" for h, w in r["sizes"])
        rows.append((r["file"], r["target"], r["precision"], sizes, f"{r['bytes'] / 1e3:.0f}",
                     f"{p['max_abs']:.2g}" if p else "-", str(p.get("min_psnr_db") or "inf") if p else "-",
                     str(r.get("seconds", ""))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows)
