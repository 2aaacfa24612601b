"""The model contract (`<artifact>.contract.json`) must say exactly what each artifact itself declares."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import tiny_model
from toolkit.errors import UserError
from toolkit.export.base import ExportSpec
from toolkit.export.contract import (CONTRACT_SUFFIX, check_contract, contract_from_artifact, contract_path,
                                     read_contract, write_contract)


def _onnx_by_hand(model, dest: Path) -> dict:
    """Plain torch.onnx.export + write_contract: used only while the ONNX exporter module has not landed."""
    import torch

    from toolkit.export import INPUT_NAME, OUTPUT_NAME, artifact_metadata

    spec = ExportSpec(target="onnx", style="tiny")
    spec = ExportSpec(target="onnx", style="tiny", metadata=artifact_metadata(model, spec))
    h, w = torch.export.Dim("h", min=1, max=256), torch.export.Dim("w", min=1, max=256)
    s = model.config.stride
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, (torch.rand(1, 3, 32, 32),), str(dest), dynamo=True, opset_version=18,
                      external_data=False, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                      dynamic_shapes={"x": {2: s * h, 3: s * w}})
    record = {"file": str(dest), "target": "onnx", "precision": "fp32", "sizes": "dynamic", "style": "tiny"}
    write_contract(record, spec)
    return record


def export_tiny(target: str, precision: str, out: Path) -> Path:
    """Export the tiny net with the real exporter (the one the CLI uses); skip when that exporter is not in yet."""
    from toolkit.export import FORMATS, artifact_path, export_artifact

    model = tiny_model()
    t = FORMATS[target]
    sizes = () if t.dynamic_sizes else ((32, 48),)
    dest = artifact_path(out, "tiny", target, precision, sizes[0] if sizes else None)
    try:
        export_artifact(model, ExportSpec(target=target, precision=precision, sizes=sizes, style="tiny"), dest,
                        check=False)
    except UserError as exc:
        if "not available in this build" not in str(exc) and "not installed" not in str(exc):
            raise
        if target != "onnx":
            pytest.skip(f"{target} exporter unavailable: {exc}")
        _onnx_by_hand(model, dest)
    return dest


CASES = [("onnx", "fp32"), ("onnx", "fp16"), ("onnx", "int8"), ("tflite", "fp32"), ("tflite", "int8"),
         ("coreml", "fp32"), ("coreml", "fp16"), ("coreml", "int8")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    return {"dir": tmp_path_factory.mktemp("exported"), "done": {}}


def _artifact(exported: dict, target: str, precision: str) -> Path:
    key = (target, precision)
    if key not in exported["done"]:
        exported["done"][key] = export_tiny(target, precision, exported["dir"])
    return exported["done"][key]


@pytest.mark.parametrize("target,precision", [
    pytest.param(t, p, marks=[] if (t, p) == ("onnx", "fp32") else [pytest.mark.slow]) for t, p in CASES])
def test_contract_matches_what_the_artifact_declares(exported, target, precision):
    artifact = _artifact(exported, target, precision)
    contract = read_contract(artifact)
    assert contract["file"] == artifact.name
    assert (contract["style"], contract["target"], contract["precision"]) == ("tiny", target, precision)
    facts = contract_from_artifact(artifact)
    assert check_contract(contract, facts) == []
    inp = contract["input"]
    stride = tiny_model().config.stride  # dynamic graphs pad to the stride and crop back themselves
    assert inp["size_multiple"] == (1 if inp["dynamic"] else stride) and inp["min_side"] == 2 * stride
    if inp["layout"] != "IMAGE":
        # value = (pixel * scale - mean) / std must map 0..255 onto the declared range
        lo = [(0 * inp["scale"] - m) / s for m, s in zip(inp["mean"], inp["std"])]
        hi = [(255 * inp["scale"] - m) / s for m, s in zip(inp["mean"], inp["std"])]
        assert lo == pytest.approx([inp["range"][0]] * 3) and hi == pytest.approx([inp["range"][1]] * 3)
    assert contract["output"]["range"] == [0.0, 1.0] or contract["output"]["layout"] == "IMAGE"
    if inp["dtype"] == "int8":  # quantised input: black and white must land on the int8 ends, not clip early
        q = inp["quantization"]
        assert round(inp["range"][0] / q["scale"]) + q["zero_point"] == -128
        assert 126 <= round(inp["range"][1] / q["scale"]) + q["zero_point"] <= 127


def test_onnx_contract_is_dynamic_and_names_the_graph_tensors(exported):
    artifact = _artifact(exported, "onnx", "fp32")
    contract, facts = read_contract(artifact), contract_from_artifact(artifact)
    assert contract["input"]["dynamic"] and contract["input"]["sizes"] == []
    assert contract["input"]["name"] == facts["inputs"][0]["name"]
    assert contract["output"]["name"] == facts["outputs"][0]["name"]
    assert facts["inputs"][0]["layout"] == contract["input"]["layout"] == "NCHW"
    assert facts["metadata"].get("style", "tiny") == "tiny"


@pytest.mark.slow
def test_tflite_contract_is_nhwc_at_its_fixed_size(exported):
    artifact = _artifact(exported, "tflite", "fp32")
    contract, facts = read_contract(artifact), contract_from_artifact(artifact)
    assert facts["inputs"][0]["layout"] == contract["input"]["layout"] == "NHWC"
    assert contract["input"]["dynamic"] is False and contract["input"]["sizes"] == [[32, 48]]
    assert facts["inputs"][0]["size"] == [32, 48]


def test_a_wrong_contract_is_caught(exported):
    artifact = _artifact(exported, "onnx", "fp32")
    contract, facts = read_contract(artifact), contract_from_artifact(artifact)
    wrong = json.loads(json.dumps(contract))
    wrong["input"].update(layout="NHWC", name="pixels")
    wrong["output"]["dtype"] = "float16"
    wrong["style"] = "other"
    problems = check_contract(wrong, facts)
    assert any(p.startswith("input layout") for p in problems)
    assert any(p.startswith("input name") for p in problems)
    assert any(p.startswith("output dtype") for p in problems)
    if "style" in facts["metadata"]:
        assert any(p.startswith("style") for p in problems)


def test_contract_for_a_missing_artifact_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        write_contract({"file": str(tmp_path / "nope.onnx")}, ExportSpec(target="onnx"))
    assert not list(tmp_path.iterdir())  # nothing half-written
    with pytest.raises(UserError, match="no model contract"):
        read_contract(tmp_path / "nope.onnx")
    with pytest.raises(UserError, match="unknown suffix"):
        (tmp_path / "x.bin").write_bytes(b"0")
        contract_from_artifact(tmp_path / "x.bin")


def test_corrupt_contract_is_a_user_error(tmp_path):
    (tmp_path / "a.onnx").write_bytes(b"0")
    contract_path(tmp_path / "a.onnx").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        read_contract(tmp_path / "a.onnx")
    assert contract_path(tmp_path / "a.onnx").name == "a.onnx" + CONTRACT_SUFFIX
