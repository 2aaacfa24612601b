"""The entry points every exporting caller uses: `export_artifact` writes one artifact atomically, fills its metadata,
checks it against its own contract, writes the contract sidecar and proves parity; `read_metadata` reads an
artifact's self-description back; `load_runner` opens any artifact in its own runtime.

The table of targets and precisions is toolkit/formats.py (re-exported here for callers that import it from export).
Layers: formats -> runtime -> parity -> export; the model rewrite into the deploy form is toolkit/models/deploy.py.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path

from toolkit import __version__
from toolkit.config import to_dict
from toolkit.errors import UserError, require
from toolkit.export.base import ExportSpec, Runner, Size, Target
from toolkit.formats import (CAMERA_SIZES, FORMATS, INPUT_NAME, OUTPUT_NAME, all_precisions, check_sizes,
                             get_target, sizes_text, target_for_path)
from toolkit.fsutil import atomic_path, sha256_of, size_of


def parse_size(text: str) -> Size:
    """'480x640' -> (480, 640): height x width, at least 8x8 and within the pixel limit (one parser for every
    command that takes HxW sizes)."""
    from toolkit.data.images import check_pixels

    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"size '{text}' is not HEIGHTxWIDTH, HxW for short (e.g. 480x640)") from None
    if h < 8 or w < 8:
        raise UserError(f"size '{text}' is too small; use at least 8x8")
    check_pixels(h, w, f"size {text}")
    return h, w


def artifact_path(out_dir: str | Path, style: str, target: str, precision: str, size: Size | None = None) -> Path:
    """exported/<style>/<style>[.<precision>][.<HxW>].<suffix>; fp32 has no precision part. The style name (from
    the user or a checkpoint's JSON) must be a plain name: the file always lands inside `out_dir`."""
    from toolkit.paths import safe_name

    safe_name(style, "style name")
    parts = [style] + ([precision] if precision != "fp32" else []) + ([f"{size[0]}x{size[1]}"] if size else [])
    return Path(out_dir) / style / (".".join(parts) + get_target(target).suffix)


def artifact_metadata(model, spec: ExportSpec) -> dict[str, str]:
    """What every artifact says about itself (string values: ONNX metadata_props, CoreML user metadata, TFLite's
    metadata table), from the target and precision rows of toolkit.formats. `spec.metadata` (e.g. the style's
    licence) is added last."""
    target = get_target(spec.target)
    row = target.precision(spec.precision)
    image_in = target.input_layout == "IMAGE"
    meta = {
        "style": spec.style,
        "arch": json.dumps(to_dict(model.config), sort_keys=True),
        "target": spec.target,
        "precision": spec.precision,
        "sizes": sizes_text(spec.sizes),
        "stride": str(model.config.stride),
        "toolkit_version": __version__,
        "exporter": target.exporter,
        "input_name": target.input_name,
        "output_name": target.output_name,
        "input_layout": target.input_layout,
        "output_layout": target.output_layout,
        "input_range": "RGB 0..255, scaled by 1/255 inside the model" if image_in else f"[0,1] {row.input_dtype} RGB",
        "output_range": f"[0,1] {row.output_dtype} RGB",
    }
    meta.update({k: str(v) for k, v in spec.metadata.items()})
    return meta


def _exporter(target: Target):
    try:
        return importlib.import_module(target.exporter)
    except ModuleNotFoundError as exc:
        if exc.name == target.exporter:
            raise UserError(f"the {target.name} exporter ({target.exporter}) is not available in this build") from exc
        raise UserError(f"{exc.name} is not installed; install it with: pip install 'toolkit[{target.extra}]'") \
            from exc


def export_artifact(model, spec: ExportSpec, dest: str | Path, check: bool = True,
                    parity_sizes: tuple[Size, ...] | None = None) -> dict:
    """Write one artifact atomically (+ its contract sidecar), prove parity when `check`, return its record.

    Without sizes, a target takes its size policy's defaults: dynamic H/W, or the enumerated sizes one CoreML
    package holds. The artifact holds the model's deploy form (toolkit/models/deploy.py: the bilinear head as a
    half-res phase conv + PixelShuffle, 1.6x faster in onnxruntime). Parity is proven against the trained net when
    that rewrite is exact (a head padded by replication), else against the deploy form, with the record saying how
    close that stays to the trained net. The artifact is held against its own contract (names, layouts, dtypes,
    sizes) before it lands. A parity miss or a contract disagreement raises and leaves nothing at `dest`.
    """
    from toolkit.export import contract
    from toolkit.models.deploy import deploy_form

    target = get_target(spec.target)
    row = target.precision(spec.precision)
    stride = model.config.stride
    check_sizes(spec.sizes, stride)
    if target.one_size_per_file and len(spec.sizes) != 1:
        raise UserError(f"target {target.name} needs exactly one fixed size per file, got {len(spec.sizes)}")
    dest = Path(dest)
    if dest.suffix != target.suffix:
        raise UserError(f"{dest} must end in {target.suffix} for target {target.name}")
    if row.calibrated:
        from toolkit.export.calibration import calibration_paths

        calibration_paths(spec.calibration)  # too few photos fails here, before a slow conversion
    requested_sizes = spec.sizes
    if not spec.sizes and target.size_policy.kind == "enumerated":
        sizes = target.size_policy.sizes_for(stride)
        if not sizes:
            raise UserError(f"none of {target.name}'s default sizes ({sizes_text(target.size_policy.sizes)}) is a "
                            f"multiple of the net's stride {stride}; pass --size")
        spec = dataclasses.replace(spec, sizes=sizes)

    trained = model.eval()
    model, rewrite = deploy_form(trained)
    if rewrite:
        rewrite = {**rewrite, **deploy_fidelity(trained, model)}
    reference = trained if rewrite is None or rewrite["exact"] else model
    spec = dataclasses.replace(spec, metadata=artifact_metadata(model, spec))
    exporter = _exporter(target)
    parity = None
    intent = {"target": spec.target, "precision": spec.precision, "sizes": [list(s) for s in spec.sizes] or "dynamic",
              "style": spec.style}
    with atomic_path(dest) as tmp:
        exporter.export(model, spec, tmp)
        problems = contract.check_contract(contract.build_contract(intent, spec, Path(tmp)),
                                           contract.contract_from_artifact(tmp))
        if problems:
            raise contract.ContractError(f"{dest.name}: the exported artifact disagrees with its own metadata: "
                                         + "; ".join(problems))
        if check:
            from toolkit.parity import check_parity, parity_sizes_for

            sizes = parity_sizes or parity_sizes_for(requested_sizes, spec.precision, stride, target.name)
            parity = check_parity(reference, tmp, spec.target, spec.precision, sizes)
    record = {
        "file": str(dest),
        "target": spec.target,
        "precision": spec.precision,
        "sizes": intent["sizes"],
        "bytes": size_of(dest),
        "sha256": sha256_of(dest),
        "parity": parity,
        "style": spec.style,
        "toolkit_version": __version__,
    }
    if rewrite:
        record["deploy_rewrite"] = rewrite
        if parity:
            parity["reference"] = "trained net" if reference is trained else "deploy form"
    contract.write_contract(record, spec)
    return record


def deploy_fidelity(trained, deployed) -> dict:
    """How close the deploy form stays to the trained net on the parity photos (whole frame, 256x256)."""
    import numpy as np
    import torch

    from toolkit.parity import PARITY_IMAGES, json_float, parity_images, psnr

    with torch.no_grad():
        pairs = [(trained(torch.from_numpy(x)).numpy(), deployed(torch.from_numpy(x)).numpy())
                 for x in parity_images((256, 256), PARITY_IMAGES)]
    return {"psnr_db_vs_trained": json_float(min(psnr(a, b) for a, b in pairs)),
            "max_abs_diff": float(max(np.abs(a - b).max() for a, b in pairs))}


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata an artifact carries (style, arch JSON, precision, ...); a corrupt artifact is a UserError."""
    path = Path(path)
    target = target_for_path(path)
    if not path.exists():
        raise UserError(f"artifact {path} does not exist")
    module = _exporter(target)
    reader = getattr(module, "read_metadata", None) or _coreml_metadata
    return reader(path)


def _coreml_metadata(path: Path) -> dict[str, str]:
    if not (path / "Manifest.json").is_file():
        raise UserError(f"artifact {path} is not an .mlpackage (no Manifest.json); re-export it")
    ct = require("coremltools", "coreml")
    try:
        spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    except Exception as exc:  # coremltools raises assorted types for a damaged package
        raise UserError(f"artifact {path} is a damaged .mlpackage ({type(exc).__name__}); re-export it") from exc
    return dict(spec.description.metadata.userDefined)


def load_runner(path: str | Path, threads: int = 1, provider: str = "cpu") -> Runner:
    """Open an artifact in the runtime its suffix names; NCHW float32 [0,1] in and out."""
    from toolkit.runtime import load_runner as _load

    return _load(path, threads=threads, provider=provider)


__all__ = ["CAMERA_SIZES", "FORMATS", "INPUT_NAME", "OUTPUT_NAME", "ExportSpec", "Runner", "Size", "Target",
           "all_precisions", "artifact_metadata", "artifact_path", "check_sizes", "export_artifact", "get_target",
           "load_runner", "parse_size", "read_metadata", "target_for_path"]
