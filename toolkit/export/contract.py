"""The model contract: a small JSON sidecar `<artifact>.contract.json` that tells an app how to feed an artifact.

The demos (android_demo/.../ImageContract.kt, ios_demo/.../ImageContract.swift, web_demo/src/contract.js) read it
instead of hard-coding facts; the field names below are the ones they use, so rename nothing without them.

    {
      "contract": 1, "style": "frost", "target": "onnx", "precision": "fp32", "file": "frost.onnx",
      "input":  {"name": "input", "layout": "NCHW", "dtype": "float32", "color": "RGB",
                 "dynamic": true, "sizes": [], "size_multiple": 1, "min_side": 8,
                 "scale": 1/255, "mean": [0, 0, 0], "std": [1, 1, 1], "range": [0, 1]},
      "output": {"name": "output", "layout": "NCHW", "dtype": "float32", "color": "RGB", "range": [0, 1]}
    }

Pre-processing for an 8-bit pixel p: value = (p * scale - mean[c]) / std[c] (so `range` is what the net sees);
an int8 input (where a contract declares one) then takes q = clamp(round(value / quantization.scale) + quantization.zero_point).
Post-processing: p = clamp(round((value - range[0]) / (range[1] - range[0]) * 255), 0, 255).
Layouts: NCHW / NHWC are float tensors; IMAGE is a CoreML image (CVPixelBuffer, 8-bit RGB) whose scaling happens
inside the model, so for IMAGE the app passes pixels as they are.

`write_contract` states what the exporter intends (from the record, the spec and the target's conventions);
`contract_from_artifact` reads what the artifact really declares (graph inputs, interpreter details, CoreML spec),
so a test can hold each contract against its artifact.
"""

from __future__ import annotations

import json
from pathlib import Path

from toolkit.errors import UserError
from toolkit.formats import FORMATS
from toolkit.fsutil import write_json

CONTRACT_VERSION = 1
CONTRACT_SUFFIX = ".contract.json"
MAX_STRIDE = 8  # 2 ** max(ArchConfig.down_stages): a size that is a multiple of 8 suits every preset


class ContractError(UserError):
    """An exported artifact disagrees with the contract its own metadata implies (a bug in an exporter)."""


def contract_path(artifact: str | Path) -> Path:
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + CONTRACT_SUFFIX)


def _stride(metadata: dict) -> int:
    """The net's stride from the artifact metadata (values may be strings: they also go into ONNX/CoreML props)."""
    if "stride" in metadata:
        return int(metadata["stride"])
    arch = metadata.get("arch")
    if isinstance(arch, str):
        arch = json.loads(arch)
    if isinstance(arch, dict) and "down_stages" in arch:
        return 2 ** int(arch["down_stages"])
    return MAX_STRIDE


def _sizes(record: dict, spec) -> list[list[int]]:
    sizes = record.get("sizes")
    if sizes is None or isinstance(sizes, str):  # the export record says "dynamic"
        sizes = spec.sizes or ()
    return [[int(h), int(w)] for h, w in sizes]


def _tensor(name: str, layout: str, dtype: str) -> dict:
    return {"name": name, "layout": layout, "dtype": dtype, "color": "RGB"}


def build_contract(record: dict, spec, artifact: Path) -> dict:
    """The contract for one exported artifact, as a dict (see the module docstring for the fields)."""
    meta = dict(spec.metadata or {})
    target = record.get("target", spec.target)
    if target not in FORMATS:
        raise UserError(f"no model contract for target '{target}' (known: {', '.join(FORMATS)})")
    row = FORMATS[target]
    in_layout, out_layout = row.input_layout, row.output_layout
    in_name = meta.get("input_name", row.input_name)
    out_name = meta.get("output_name", row.output_name)
    precision = row.precision(record.get("precision", spec.precision))
    in_dtype, out_dtype = precision.input_dtype, precision.output_dtype
    stride = _stride(meta)
    sizes = _sizes(record, spec)

    inp = _tensor(in_name, in_layout, "image" if in_layout == "IMAGE" else in_dtype)
    # A dynamic-size artifact pads to the net's stride and crops back inside its graph: any side >= 2 * stride.
    inp.update(dynamic=not sizes, sizes=sizes, size_multiple=stride if sizes else 1, min_side=2 * stride)
    if in_layout == "IMAGE":   # the model scales 0..255 itself
        inp.update(scale=1.0, mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0], range=[0.0, 255.0])
    else:
        inp.update(scale=1.0 / 255.0, mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0], range=[0.0, 1.0])
    if in_dtype == "int8":
        # Calibration chose these, so they can only come from the artifact: q = round(value / scale) + zero_point
        inp["quantization"] = _tflite_input_quantization(artifact)
    out = _tensor(out_name, out_layout, "image" if out_layout == "IMAGE" else out_dtype)
    out.update(range=[0.0, 255.0] if out_layout == "IMAGE" else [0.0, 1.0])
    return {
        "contract": CONTRACT_VERSION,
        "style": record.get("style", spec.style),
        "target": target,
        "precision": record.get("precision", spec.precision),
        "file": artifact.name,
        "input": inp,
        "output": out,
    }


def _tflite_input_quantization(path: Path) -> dict:
    from toolkit.errors import require

    detail = require("ai_edge_litert.interpreter", "tflite").Interpreter(model_path=str(path)).get_input_details()[0]
    scale, zero_point = detail["quantization"]
    return {"scale": float(scale), "zero_point": int(zero_point)}


def write_contract(record: dict, spec, artifact: str | Path | None = None) -> Path:
    """Write `<artifact>.contract.json` beside the artifact (atomically) and return its path.

    The artifact is `artifact` when given, else `record["file"]` (a path, absolute or relative to the cwd).
    """
    artifact = Path(artifact if artifact is not None else record["file"])
    if not artifact.exists():
        raise UserError(f"cannot write a contract for {artifact}: the artifact does not exist; export it first")
    dest = contract_path(artifact)
    write_json(dest, build_contract(record, spec, artifact))
    return dest


def read_contract(artifact_or_contract: str | Path) -> dict:
    """The contract beside an artifact (or at a .contract.json path), with a clear error when missing or bad."""
    p = Path(artifact_or_contract)
    if not p.name.endswith(CONTRACT_SUFFIX):
        p = contract_path(p)
    if not p.is_file():
        raise UserError(f"no model contract at {p}; re-export the artifact with `toolkit export`")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"model contract {p} is not valid JSON ({exc.msg}); re-export the artifact") from exc
    if data.get("contract") != CONTRACT_VERSION:
        raise UserError(f"model contract {p} has version {data.get('contract')!r}, expected {CONTRACT_VERSION}; "
                        "re-export the artifact")
    return data


# --- what the artifact itself declares -------------------------------------------------------------------------

def _layout_of(shape: list) -> str | None:
    """NCHW when the channel axis (3 colours) is axis 1, NHWC when it is the last axis; None when undeclared."""
    if not shape:  # e.g. a CoreML output without a declared shape
        return None
    if len(shape) == 4 and shape[1] == 3:
        return "NCHW"
    if len(shape) == 4 and shape[3] == 3:
        return "NHWC"
    raise ValueError(f"cannot tell the layout of shape {shape}: no axis of 3 colour channels at 1 or 3")


def _spatial(shape: list, layout: str) -> list:
    return list(shape[2:4]) if layout == "NCHW" else list(shape[1:3])


def _facts(name: str, shape: list, dtype: str) -> dict:
    layout = _layout_of(shape)
    hw = _spatial(shape, layout) if layout else [None, None]
    dynamic = any(d is None for d in hw)
    return {"name": name, "layout": layout, "dtype": dtype, "shape": shape, "dynamic": dynamic,
            "size": None if dynamic else hw, "sizes": None if dynamic else [hw]}


def _onnx_facts(path: Path) -> dict:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]

    def one(value_info) -> dict:
        t = value_info.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name
        return _facts(value_info.name, shape, dtype)

    return {"inputs": [one(i) for i in inputs], "outputs": [one(o) for o in graph.output],
            "metadata": {p.key: p.value for p in model.metadata_props}}


def _tflite_facts(path: Path) -> dict:
    from toolkit.errors import require

    interpreter_mod = require("ai_edge_litert.interpreter", "tflite")
    interp = interpreter_mod.Interpreter(model_path=str(path))

    def one(detail: dict) -> dict:
        shape = [int(d) for d in detail["shape"]]
        signature = [int(d) for d in detail.get("shape_signature", detail["shape"])]
        shape = [None if s < 0 else d for d, s in zip(shape, signature)]
        facts = _facts(detail["name"], shape, detail["dtype"].__name__)
        scale, zero_point = detail["quantization"]
        if scale:
            facts["quantization"] = {"scale": float(scale), "zero_point": int(zero_point)}
        return facts

    inputs = [one(d) for d in interp.get_input_details()]
    outputs = [one(d) for d in interp.get_output_details()]
    # The runner binds by signature names where the model has one; those are what an app should use.
    runners = interp.get_signature_list()
    if len(runners) == 1:
        sig = next(iter(runners.values()))
        if len(sig["inputs"]) == len(inputs) == 1:
            inputs[0]["signature_name"] = sig["inputs"][0]
        if len(sig["outputs"]) == len(outputs) == 1:
            outputs[0]["signature_name"] = sig["outputs"][0]
    return {"inputs": inputs, "outputs": outputs, "metadata": {}}


def _coreml_facts(path: Path) -> dict:
    from toolkit.errors import require

    ct = require("coremltools", "coreml")
    spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()

    def one(feature) -> dict:
        kind = feature.type.WhichOneof("Type")
        if kind == "imageType":
            img = feature.type.imageType
            flexibility = img.WhichOneof("SizeFlexibility")
            sizes = [[int(img.height), int(img.width)]]
            if flexibility == "enumeratedSizes":
                sizes = [[int(s.height), int(s.width)] for s in img.enumeratedSizes.sizes]
            colour = {10: "GRAYSCALE", 20: "RGB", 30: "BGR"}.get(img.colorSpace, str(img.colorSpace))
            dynamic = flexibility == "imageSizeRange"
            return {"name": feature.name, "layout": "IMAGE", "dtype": "image", "color": colour, "dynamic": dynamic,
                    "size": None if dynamic else sizes[0], "sizes": None if dynamic else sizes}
        if kind == "multiArrayType":
            arr = feature.type.multiArrayType
            shape = [int(d) for d in arr.shape]
            if arr.HasField("shapeRange"):
                shape = [int(r.lowerBound) if r.lowerBound == r.upperBound else None for r in arr.shapeRange.sizeRanges]
            dtype = {65568: "float32", 65552: "float16", 65600: "float64", 131104: "int32"}.get(arr.dataType,
                                                                                              str(arr.dataType))
            return _facts(feature.name, shape, dtype)
        raise ValueError(f"CoreML feature {feature.name} has unsupported type {kind}")

    desc = spec.description
    return {"inputs": [one(f) for f in desc.input], "outputs": [one(f) for f in desc.output],
            "metadata": dict(desc.metadata.userDefined)}


def contract_from_artifact(path: str | Path) -> dict:
    """What the artifact itself declares: {"inputs": [...], "outputs": [...], "metadata": {...}}.

    Each tensor: name, layout (NCHW | NHWC | IMAGE), dtype, dynamic, size ([H, W] when fixed). Read from the ONNX
    graph + metadata_props, the LiteRT interpreter's input/output details, or the CoreML spec description.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"artifact {path} does not exist; check the path")
    readers = {".onnx": _onnx_facts, ".tflite": _tflite_facts, ".mlpackage": _coreml_facts,
               ".mlmodel": _coreml_facts}
    reader = readers.get(path.suffix)
    if reader is None:
        raise UserError(f"cannot read a contract from {path.name}: unknown suffix {path.suffix!r} "
                        f"(expected one of {', '.join(readers)})")
    return reader(path)


def check_contract(contract: dict, facts: dict) -> list[str]:
    """Every way the contract disagrees with the artifact's own facts, as readable lines ([] = they agree)."""
    problems = []
    for role, declared, actual in (("input", contract["input"], facts["inputs"]),
                                   ("output", contract["output"], facts["outputs"])):
        if len(actual) != 1:
            problems.append(f"{role}: artifact has {len(actual)} {role}s, the contract describes exactly one")
            continue
        got = actual[0]
        names = {got["name"], got.get("signature_name")}
        if declared["name"] not in names:
            problems.append(f"{role} name: contract {declared['name']!r}, artifact {got['name']!r}")
        for key in ("layout", "dtype"):
            if got[key] is not None and declared[key] != got[key]:  # None: the artifact does not declare it
                problems.append(f"{role} {key}: contract {declared[key]!r}, artifact {got[key]!r}")
        if declared.get("quantization") != got.get("quantization"):
            problems.append(f"{role} quantization: contract {declared.get('quantization')}, "
                            f"artifact {got.get('quantization')}")
        if "color" in got and got["color"] != declared["color"]:
            problems.append(f"{role} color: contract {declared['color']!r}, artifact {got['color']!r}")
    inp, got = contract["input"], facts["inputs"][0] if len(facts["inputs"]) == 1 else None
    if got is not None:
        if inp["dynamic"] != got["dynamic"]:
            problems.append(f"input dynamic: contract {inp['dynamic']}, artifact {got['dynamic']}")
        elif not inp["dynamic"] and sorted(got["sizes"]) != sorted(inp["sizes"]):
            problems.append(f"input sizes: artifact takes {got['sizes']}, contract lists {inp['sizes']}")
    style = facts["metadata"].get("style")
    if style is not None and style != contract["style"]:
        problems.append(f"style: contract {contract['style']!r}, artifact metadata {style!r}")
    return problems
