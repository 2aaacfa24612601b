"""The one table of export targets (FORMATS) and the entry points every caller uses.

FORMATS drives CLI choices, help text, "did you mean", the tests and the benchmark loop. `export_artifact` writes one
artifact atomically, fills its metadata, writes the contract sidecar and proves parity; `load_runner` opens any
artifact in its own runtime.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path
from typing import Iterable

from toolkit import __version__
from toolkit.config import to_dict
from toolkit.errors import UserError, require, unknown
from toolkit.export.base import ExportSpec, Runner, Size, Target
from toolkit.fsutil import atomic_path, sha256_of, size_of

CAMERA_SIZES: tuple[Size, ...] = ((480, 640), (640, 480), (256, 256))

FORMATS: dict[str, Target] = {t.name: t for t in (
    Target(name="onnx", suffix=".onnx", precisions=("fp32", "fp16", "int8"), runtimes=("onnxruntime",),
           extra="onnx", exporter="toolkit.export.onnx", dynamic_sizes=True,
           description="ONNX opset 18 (torch dynamo exporter), dynamic H/W; runs in onnxruntime"),
    Target(name="coreml", suffix=".mlpackage",
           precisions=("fp32", "fp16", "int8", "palettize6", "palettize4", "palettize2", "palettize1"),
           runtimes=("coreml",), extra="coreml", exporter="toolkit.export.coreml", dynamic_sizes=True,
           description="CoreML ML Program; MLModel.predict on macOS, reference MIL interpreter on Linux"),
    Target(name="tflite", suffix=".tflite", precisions=("fp32", "fp16", "int8", "int8_dynamic"), runtimes=("litert",),
           extra="tflite", exporter="toolkit.export.tflite", dynamic_sizes=False, default_sizes=CAMERA_SIZES,
           description="TFLite via litert-torch, one file per fixed size, NHWC I/O; runs in ai-edge-litert"),
)}

CALIBRATED = {"onnx": ("int8",), "tflite": ("int8",)}  # static activation quantisation needs real photos
RUNTIME_BY_SUFFIX = {t.suffix: t.runtimes[0] for t in FORMATS.values()}
INPUT_NAME, OUTPUT_NAME = "image", "stylized"


def get_target(name: str) -> Target:
    if name not in FORMATS:
        raise unknown("export target", name, FORMATS)
    return FORMATS[name]


def target_for_path(path: str | Path) -> Target:
    suffix = Path(path).suffix
    for target in FORMATS.values():
        if target.suffix == suffix:
            return target
    raise UserError(f"{path} is not an exported artifact; expected one of "
                    f"{', '.join(t.suffix for t in FORMATS.values())}")


def all_precisions() -> list[str]:
    return sorted({p for t in FORMATS.values() for p in t.precisions})


def check_precision(target: Target, precision: str) -> None:
    if precision not in all_precisions():
        raise unknown("precision", precision, all_precisions())
    if precision not in target.precisions:
        raise UserError(f"target {target.name} cannot export precision {precision}; "
                        f"it supports {', '.join(target.precisions)}")


def check_sizes(sizes: Iterable[Size], stride: int) -> None:
    for h, w in sizes:
        if h < stride or w < stride or h % stride or w % stride:
            raise UserError(f"size {h}x{w} is not a positive multiple of the net's stride {stride}; "
                            f"try {max(stride, round(h / stride) * stride)}x{max(stride, round(w / stride) * stride)}")


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
    """What every artifact says about itself (string values: ONNX metadata_props and CoreML user metadata)."""
    target = get_target(spec.target)
    meta = {
        "style": spec.style,
        "arch": json.dumps(to_dict(model.config), sort_keys=True),
        "target": spec.target,
        "precision": spec.precision,
        "sizes": "dynamic" if not spec.sizes else ",".join(f"{h}x{w}" for h, w in spec.sizes),
        "stride": str(model.config.stride),
        "toolkit_version": __version__,
        "exporter": target.exporter,
    }
    if spec.target != "coreml":  # CoreML's exporter describes its image input itself
        layout = "NHWC" if spec.target == "tflite" else "NCHW"
        meta.update(input_layout=layout, output_layout=layout, input_range="[0,1] float32 RGB",
                    output_range="[0,1] float32 RGB")
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

    The artifact holds the model's deploy form (toolkit/compress/fold.py: the bilinear head as a half-res phase conv
    + PixelShuffle, 1.6x faster in onnxruntime). Parity is proven against the trained net when that rewrite is exact
    (a head padded by replication), else against the deploy form, with the record saying how close that stays to the
    trained net. A parity miss raises ParityError and leaves nothing at `dest`.
    """
    target = get_target(spec.target)
    check_precision(target, spec.precision)
    check_sizes(spec.sizes, model.config.stride)
    if not target.dynamic_sizes and len(spec.sizes) != 1:
        raise UserError(f"target {target.name} needs exactly one fixed size per file, got {len(spec.sizes)}")
    dest = Path(dest)
    if dest.suffix != target.suffix:
        raise UserError(f"{dest} must end in {target.suffix} for target {target.name}")
    if spec.precision in CALIBRATED.get(spec.target, ()):
        from toolkit.export.calibration import calibration_paths

        calibration_paths(spec.calibration)  # too few photos fails here, before a slow conversion
    from toolkit.compress.fold import deploy_form

    trained = model.eval()
    model, rewrite = deploy_form(trained)
    reference = trained if rewrite is None or rewrite["exact"] else model
    spec = dataclasses.replace(spec, metadata=artifact_metadata(model, spec))
    exporter = _exporter(target)
    parity = None
    with atomic_path(dest) as tmp:
        exporter.export(model, spec, tmp)
        if check:
            from toolkit.parity import check_parity, parity_sizes_for

            sizes = parity_sizes or parity_sizes_for(spec.sizes, spec.precision, model.config.stride)
            parity = check_parity(reference, tmp, spec.target, spec.precision, sizes)
    record = {
        "file": str(dest),
        "target": spec.target,
        "precision": spec.precision,
        "sizes": [list(s) for s in spec.sizes] or "dynamic",
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
    _write_contract(record, spec)
    return record


def _write_contract(record: dict, spec: ExportSpec) -> None:
    try:
        contract = importlib.import_module("toolkit.export.contract")
    except ModuleNotFoundError as exc:
        if exc.name != "toolkit.export.contract":
            raise
        return  # the contract sidecar module has not landed yet
    contract.write_contract(record, spec)


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


__all__ = ["CAMERA_SIZES", "FORMATS", "ExportSpec", "Runner", "Target", "all_precisions", "artifact_metadata",
           "artifact_path", "check_precision", "check_sizes", "export_artifact", "get_target", "load_runner",
           "parse_size", "read_metadata", "target_for_path"]
