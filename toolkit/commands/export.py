from __future__ import annotations

HELP = "export a style to ONNX / CoreML / TFLite, prove parity against torch, and update exported/manifest.json"


def add_arguments(p) -> None:
    from toolkit.export import FORMATS, all_precisions

    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--style", help="a shipped style name (see `toolkit styles`)")
    src.add_argument("--checkpoint", help="a .safetensors checkpoint written by `toolkit train`")
    p.add_argument("--target", action="append", metavar="TARGET",
                   help=f"{' | '.join(FORMATS)} | all (repeatable; default: onnx)")
    p.add_argument("--precision", action="append", metavar="P",
                   help=f"{' | '.join(all_precisions())} (repeatable; default: fp32). Per target: " +
                   "; ".join(f"{t.name}: {', '.join(t.precision_names)}" for t in FORMATS.values()))
    p.add_argument("--size", action="append", metavar="HxW",
                   help="fixed input size, repeatable (one file per size). Default: " + "; ".join(
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


def plan(args, stride: int) -> list[tuple]:
    """(target, precision, sizes) for every artifact to write; every bad choice is rejected before any export."""
    from toolkit.errors import UserError, unknown
    from toolkit.export import FORMATS, check_sizes, get_target, parse_size

    names = args.target or ["onnx"]
    if "all" in names:
        names = list(FORMATS)
    for name in names:
        if name not in FORMATS:
            raise unknown("export target", name, list(FORMATS) + ["all"])
    targets = [get_target(n) for n in dict.fromkeys(names)]
    precisions = list(dict.fromkeys(args.precision or ["fp32"]))
    sizes = [parse_size(s) for s in args.size or []]
    check_sizes(sizes, stride)
    jobs = []
    for target in targets:
        for precision in precisions:
            target.precision(precision)
            if not target.one_size_per_file and not sizes:
                jobs.append((target, precision, ()))  # dynamic, or the enumerated sizes in one file
            else:
                for size in sizes or target.size_policy.sizes:
                    if size[0] % stride or size[1] % stride:
                        raise UserError(f"{target.name} default size {size[0]}x{size[1]} is not a multiple of the "
                                        f"net's stride {stride}; pass --size")
                    jobs.append((target, precision, (size,)))
    return jobs


def check_backends(targets) -> None:
    """Fail before exporting anything when a target's backend is missing (names the pip extra)."""
    import importlib.util

    from toolkit.errors import MissingBackendError

    needs = {"onnx": ("onnx", "onnxscript", "onnxruntime"), "coreml": ("coremltools",),
             "tflite": ("litert_torch", "ai_edge_litert")}
    for target in targets:
        for module in needs.get(target.name, ()):
            if importlib.util.find_spec(module) is None:
                raise MissingBackendError(module, target.extra)


def run(args) -> int:
    import shutil
    import tempfile
    import time
    from pathlib import Path

    from toolkit.export import ExportSpec, artifact_path, export_artifact
    from toolkit.export.calibration import calibration_paths
    from toolkit.fsutil import ensure_writable_dir
    from toolkit.manifest import update_manifest
    from toolkit.zoo import load_style

    ckpt = load_style(args.style, args.checkpoint)
    model = ckpt.model.eval()
    style = args.style or ckpt.name
    jobs = plan(args, model.config.stride)
    check_backends({j[0] for j in jobs})
    if any(target.precision(precision).calibrated for target, precision, _ in jobs):
        calibration_paths(args.calibration or ())
    # Every artifact carries the style's licence (CoreML's license field, the other targets' metadata).
    metadata = {"licence": ckpt.meta["licence"]} if ckpt.meta.get("licence") else {}
    out = ensure_writable_dir(args.out)
    # Everything is written into a staging folder first and moved into place only when every artifact passed, so a
    # failure leaves neither new files nor a changed manifest.
    staging = Path(tempfile.mkdtemp(prefix=".export-", suffix=".tmp", dir=out))
    records = []
    try:
        for i, (target, precision, sizes) in enumerate(jobs, 1):
            label = f"{target.name} {precision} {'x'.join(map(str, sizes[0])) if sizes else target.size_policy.kind}"
            print(f"[{i}/{len(jobs)}] {label} ...", flush=True)
            spec = ExportSpec(target=target.name, precision=precision, sizes=sizes, style=style, metadata=metadata,
                              calibration=tuple(args.calibration or ()))
            start = time.perf_counter()
            dest = artifact_path(staging, style, target.name, precision, sizes[0] if sizes else None)
            record = export_artifact(model, spec, dest, check=not args.no_check)
            record["seconds"] = round(time.perf_counter() - start, 1)
            records.append(record)
            print(f"      ok  {_describe(record)}", flush=True)
        for record in records:
            record["file"] = str(_move_into_place(Path(record["file"]), staging, out))
        manifest = update_manifest(out, [{k: v for k, v in r.items() if k != "seconds"} for r in records])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(_summary(records))
    print(f"manifest: {manifest}")
    return 0


def _move_into_place(path, staging, out):
    """Move an artifact and its sidecars (<name>.*) from the staging folder to the same place under `out`."""
    import os
    import shutil

    final = out / path.relative_to(staging)
    final.parent.mkdir(parents=True, exist_ok=True)
    for item in sorted(path.parent.glob(path.name + "*")):
        dest = final.parent / item.name
        if item.is_dir():
            if dest.exists():
                shutil.rmtree(dest)
            item.rename(dest)
        else:
            os.replace(item, dest)
    return final


def _describe(record: dict) -> str:
    parity = record.get("parity") or {}
    numbers = f"max_abs {parity['max_abs']:.2g}, min PSNR {parity.get('min_psnr_db') or 'inf'} dB" if parity \
        else "parity not checked"
    return f"{record['bytes'] / 1e3:.0f} kB, {numbers}"


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
