"""What an artifact says about itself is what it is (issue 19, section 5): CoreML's sizes, output dtype and licence;
int8 ONNX's opset imports; and export_artifact refuses to write an artifact that disagrees with its own metadata."""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import numpy as np
import pytest

from conftest import natural_image, tiny_model
from toolkit.export import ExportSpec, export_artifact, read_metadata
from toolkit.formats import FORMATS, sizes_from_text


def _photos(tmp_path, n=8):
    from PIL import Image

    d = tmp_path / "calib"
    d.mkdir()
    for i in range(n):
        Image.fromarray((natural_image(48, 64, seed=10 + i) * 255).astype(np.uint8)).save(d / f"c{i}.png")
    return (str(d),)


def test_coreml_metadata_states_the_enumerated_sizes_fp16_output_and_the_styles_licence(tmp_path):
    ct = pytest.importorskip("coremltools")
    from toolkit.export.contract import read_contract

    dest = tmp_path / "t.fp16.mlpackage"
    record = export_artifact(tiny_model(), ExportSpec("coreml", "fp16", style="t", metadata={"licence": "CC0-1.0"}),
                             dest, check=False)
    spec = ct.models.MLModel(str(dest), skip_model_load=True).get_spec()
    image = spec.description.input[0].type.imageType
    in_spec = {(int(s.height), int(s.width)) for s in image.enumeratedSizes.sizes}
    assert in_spec == set(FORMATS["coreml"].size_policy.sizes)  # tiny's stride 4 divides all six
    user = dict(spec.description.metadata.userDefined)
    assert set(sizes_from_text(user["sizes"])) == in_spec
    assert {tuple(s) for s in record["sizes"]} == in_spec
    assert {tuple(s) for s in read_contract(dest)["input"]["sizes"]} == in_spec
    assert spec.description.output[0].type.multiArrayType.dataType == 65552  # FLOAT16
    assert "FLOAT16" in spec.description.metadata.shortDescription
    assert "float32" not in spec.description.metadata.shortDescription
    assert spec.description.metadata.license == "CC0-1.0" and user["licence"] == "CC0-1.0"


def test_export_command_writes_the_shipped_styles_licence_into_every_artifact(tmp_path):
    pytest.importorskip("onnxruntime")
    from toolkit.cli import main
    from toolkit.zoo import load_style

    licence = load_style("frost").meta["licence"]
    assert main(["export", "--style", "frost", "--target", "onnx", "--out", str(tmp_path), "--no-check"]) == 0
    assert read_metadata(tmp_path / "frost" / "frost.onnx")["licence"] == licence


def test_int8_onnx_imports_only_the_opset_domains_its_nodes_use(tmp_path):
    if importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("onnxruntime is not installed")
    import onnx

    dest = tmp_path / "t.int8.onnx"
    export_artifact(tiny_model(), ExportSpec("onnx", "int8", style="t", calibration=_photos(tmp_path)), dest,
                    check=False)
    proto = onnx.load(str(dest))
    used = {n.domain or "" for n in proto.graph.node} | {""}
    imported = [o.domain or "" for o in proto.opset_import]
    assert set(imported) == used and len(imported) == len(set(imported))
    assert "ai.onnx.ml" not in imported
    from toolkit.runtime import load_runner

    x = natural_image(32, 48).transpose(2, 0, 1)[None]
    assert load_runner(dest)(x).shape == x.shape  # still loads and runs


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_onnx_files_hold_no_paths_of_the_machine_that_exported_them(tmp_path, precision):
    if importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("onnxruntime is not installed")
    from pathlib import Path

    import torch

    import toolkit

    dest = tmp_path / f"t.{precision}.onnx"
    export_artifact(tiny_model(), ExportSpec("onnx", precision, style="t", calibration=_photos(tmp_path)), dest,
                    check=False)
    data = dest.read_bytes()
    for root in (Path(torch.__file__).parents[1], Path(toolkit.__file__).parents[1]):  # site-packages, the repo
        assert str(root).encode() not in data
    assert b"pkg.torch.onnx.stack_trace" not in data


def test_an_artifact_that_disagrees_with_its_own_metadata_is_never_written(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from toolkit import formats
    from toolkit.export.contract import ContractError

    # The table now names the input "pixels" but the exporter (bound to the row it was imported with) writes "image"
    monkeypatch.setitem(formats.FORMATS, "onnx", dataclasses.replace(FORMATS["onnx"], input_name="pixels"))
    dest = tmp_path / "t" / "t.onnx"
    with pytest.raises(ContractError, match="input name: contract 'pixels', artifact 'image'"):
        export_artifact(tiny_model(), ExportSpec("onnx", style="t"), dest, check=False)
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_every_artifact_describes_its_io_from_the_table(tmp_path):
    pytest.importorskip("onnxruntime")
    dest = tmp_path / "t.onnx"
    export_artifact(tiny_model(), ExportSpec("onnx", style="t"), dest, check=False)
    meta = read_metadata(dest)
    row = FORMATS["onnx"]
    assert (meta["input_name"], meta["output_name"]) == (row.input_name, row.output_name)
    assert (meta["input_layout"], meta["output_layout"]) == (row.input_layout, row.output_layout)
    assert json.loads(meta["arch"])["widths"]
