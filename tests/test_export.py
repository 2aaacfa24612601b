"""Export walks the FORMATS table: every preset x every target x fp32/fp16 passes parity in its own runtime.

Nets are scaled-down copies of each preset (same knobs, narrower, fewer blocks) so conversions stay fast.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_ARCH, mini_arch, natural_image, tiny_model
from toolkit.checkpoint import save_checkpoint
from toolkit.cli import main
from toolkit.errors import MissingBackendError, UserError
from toolkit.export import (FORMATS, ExportSpec, artifact_path, export_artifact, load_runner, read_metadata)
from toolkit.models import ARCHS, arch_config
from toolkit.parity import ParityError, check_parity, parity_sizes_for, tolerance_for

SIZE = (32, 48)  # non-square catches H/W swaps; a multiple of every preset's stride
FAST_PARITY = (SIZE, (48, 32))


def _export(model, target, precision, out: Path, style="t", sizes=None, **kw):
    t = FORMATS[target]
    sizes = sizes if sizes is not None else (() if t.dynamic_sizes else (SIZE,))
    dest = artifact_path(out, style, target, precision, sizes[0] if sizes else None)
    spec = ExportSpec(target=target, precision=precision, sizes=sizes, style=style, **kw)
    return export_artifact(model, spec, dest, parity_sizes=None if sizes else FAST_PARITY), dest


# --- the table ---------------------------------------------------------------------------------------------------

def test_formats_table_drives_paths_tolerances_and_cli_help(capsys):
    assert set(FORMATS) == {"onnx", "coreml", "tflite"}
    for target in FORMATS.values():
        assert target.precision_names[:2] == ("fp32", "fp16")
        for precision in target.precisions:
            assert tolerance_for(target.name, precision.name) == precision.tolerance
        assert artifact_path("out", "frost", target.name, "fp32").name == "frost" + target.suffix
    assert artifact_path("out", "frost", "tflite", "fp16", (480, 640)) == Path("out/frost/frost.fp16.480x640.tflite")
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    help_text = capsys.readouterr().out
    for target in FORMATS.values():
        assert target.name in help_text and all(p in help_text for p in target.precision_names)


def test_parity_sizes_cover_fp16_safety_size_for_dynamic_artifacts():
    assert (720, 1280) in parity_sizes_for((), "fp16", 8)
    assert (720, 1280) not in parity_sizes_for((), "fp32", 8)
    assert parity_sizes_for(((64, 96),), "fp16", 8) == ((64, 96),)


# --- ONNX (fast) -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def onnx_fp32(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    record, dest = _export(tiny_model(), "onnx", "fp32", out, style="tiny")
    return record, dest


def test_onnx_fp32_parity_and_record(onnx_fp32):
    record, dest = onnx_fp32
    assert dest.is_file() and record["bytes"] == dest.stat().st_size and len(record["sha256"]) == 64
    assert record["parity"]["max_abs"] <= 1e-4
    assert set(record["parity"]["sizes"]) == {"32x48", "48x32"}
    assert record["sizes"] == "dynamic"


def test_onnx_metadata_round_trips(onnx_fp32):
    _, dest = onnx_fp32
    meta = read_metadata(dest)
    assert meta["style"] == "tiny" and meta["precision"] == "fp32" and meta["target"] == "onnx"
    assert json.loads(meta["arch"]) == json.loads(json.dumps(dataclasses.asdict(TINY_ARCH)))
    assert meta["input_layout"] == "NCHW" and meta["stride"] == "4" and meta["sizes"] == "dynamic"


def test_onnx_dynamic_artifact_runs_any_multiple_of_stride(onnx_fp32):
    _, dest = onnx_fp32
    runner = load_runner(dest)
    assert runner.sizes == () and runner.output_names == ("stylized",)
    x = natural_image(36, 20).transpose(2, 0, 1)[None]
    with torch.no_grad():
        ref = tiny_model()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(runner(x), ref, atol=1e-4)


def test_parity_miss_names_output_and_numbers(onnx_fp32):
    _, dest = onnx_fp32
    other = tiny_model(seed=1)
    with pytest.raises(ParityError, match=r"output 'stylized' at 32x48: max_abs [0-9.e-]+ > 0.0001"):
        check_parity(other, dest, "onnx", "fp32", [SIZE])


@pytest.mark.slow
def test_parity_failure_leaves_no_file(tmp_path, monkeypatch):
    from toolkit import parity

    monkeypatch.setattr(parity, "tolerance_for", lambda *_: parity.Tolerance(max_abs=0.0))
    dest = artifact_path(tmp_path, "t", "onnx", "fp32")
    with pytest.raises(ParityError, match="max_abs"):
        export_artifact(tiny_model(), ExportSpec(target="onnx", style="t"), dest, parity_sizes=(SIZE,))
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_onnx_fp16_passes_at_720x1280(tmp_path, onnx_fp32):
    """The fp16 safety size: instance-norm statistics over a big frame must not overflow."""
    dest = artifact_path(tmp_path, "t", "onnx", "fp16")
    record = export_artifact(tiny_model(), ExportSpec(target="onnx", precision="fp16", style="t"), dest)
    assert set(record["parity"]["sizes"]) == {"256x256", "240x320", "720x1280"}
    assert record["parity"]["min_psnr_db"] >= 45
    assert read_metadata(dest)["precision"] == "fp16"
    assert record["bytes"] < onnx_fp32[0]["bytes"]


def test_missing_provider_is_a_clear_error(onnx_fp32):
    _, dest = onnx_fp32
    with pytest.raises(MissingBackendError, match="onnxruntime-gpu"):
        load_runner(dest, provider="cuda")


# --- CLI: export, manifest, validate, bad input -------------------------------------------------------------------

@pytest.fixture
def ckpt(tmp_path):
    return save_checkpoint(tmp_path / "tiny.safetensors", tiny_model(), {"name": "tiny"})


def _cli_export(ckpt, out, *extra):
    return main(["export", "--checkpoint", str(ckpt), "--out", str(out), "--size", "32x48", *extra])


def test_cli_export_writes_manifest_and_validate_passes(ckpt, tmp_path, capsys):
    out = tmp_path / "exported"
    assert _cli_export(ckpt, out, "--target", "onnx") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["artifacts"]["tiny/tiny.32x48.onnx"]
    assert entry["sha256"] and entry["bytes"] > 0 and entry["target"] == "onnx" and entry["precision"] == "fp32"
    assert entry["sizes"] == [[32, 48]] and entry["parity"]["max_abs"] <= 1e-4 and entry["toolkit_version"]
    assert not [p for p in out.rglob("*.tmp")]
    assert "tiny/tiny.32x48.onnx" in capsys.readouterr().out  # the summary table
    # same checkpoint -> same bytes; the manifest keeps one entry per file
    assert _cli_export(ckpt, out, "--target", "onnx") == 0
    again = json.loads((out / "manifest.json").read_text())
    assert again["artifacts"]["tiny/tiny.32x48.onnx"]["sha256"] == entry["sha256"]
    assert list(again["artifacts"]) == ["tiny/tiny.32x48.onnx"]
    assert main(["validate", str(out / "tiny/tiny.32x48.onnx"), "--checkpoint", str(ckpt)]) == 0
    assert "parity ok" in capsys.readouterr().out
    other = save_checkpoint(tmp_path / "other.safetensors", tiny_model(seed=3), {"name": "tiny"})
    assert main(["validate", str(out / "tiny/tiny.32x48.onnx"), "--checkpoint", str(other)]) == 2
    assert "fails parity" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--target", "onxx"], "did you mean 'onnx'"),
    (["--precision", "fp61"], "did you mean 'fp16'"),
    (["--target", "tflite", "--precision", "palettize4"], "tflite cannot export precision palettize4"),
    (["--size", "30x48"], "not a positive multiple of the net's stride 4"),
    (["--size", "big"], "is not HEIGHTxWIDTH"),
])
def test_cli_bad_input_exits_2_and_writes_nothing(ckpt, tmp_path, capsys, args, message):
    out = tmp_path / "exported"
    out.mkdir()
    (out / "manifest.json").write_text('{"artifacts": {}, "format": "toolkit-manifest/1"}\n')
    before = (out / "manifest.json").read_text()
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]
    assert (out / "manifest.json").read_text() == before


def test_cli_unwritable_out_dir(ckpt, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(blocker / "sub")]) == 2
    assert "choose a writable path" in capsys.readouterr().err


def test_cli_missing_backend_names_the_extra(ckpt, tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "litert_torch" else real(name, *a))
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "o"), "--target", "tflite"]) == 2
    assert "pip install 'toolkit[tflite]'" in capsys.readouterr().err
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_parity_miss_in_cli_leaves_no_files_and_manifest_untouched(ckpt, tmp_path, capsys, monkeypatch):
    from toolkit import parity

    strict = {"fp16": parity.Tolerance(psnr_db=500.0)}
    real = parity.tolerance_for
    monkeypatch.setattr(parity, "tolerance_for", lambda t, p: strict.get(p) or real(t, p))
    out = tmp_path / "exported"
    # fp32 passes, then fp16 misses: neither file nor a manifest may appear
    assert _cli_export(ckpt, out, "--precision", "fp32", "--precision", "fp16") == 2
    assert "PSNR" in capsys.readouterr().err
    assert [p for p in out.rglob("*") if p.name != ".manifest.json.lock"] == []


@pytest.mark.parametrize("content", [b"", b"not an onnx model at all" * 10])
def test_validate_corrupt_artifact_exits_2(tmp_path, capsys, content):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(content)
    assert main(["validate", str(bad)]) == 2
    assert "re-export it" in capsys.readouterr().err


def test_validate_corrupt_tflite_and_unknown_suffix(tmp_path, capsys):
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"\x00" * 64)
    assert main(["validate", str(bad)]) == 2
    assert "not a TFLite flatbuffer" in capsys.readouterr().err
    other = tmp_path / "model.pt"
    other.write_bytes(b"x")
    assert main(["validate", str(other)]) == 2
    assert "expected one of .onnx" in capsys.readouterr().err


def test_int8_calibration_with_too_few_photos_says_how_many(image_dir, tmp_path):
    with pytest.raises(UserError, match=r"at least 8 photos, found 4"):
        _export(tiny_model(), "onnx", "int8", tmp_path, calibration=(str(image_dir),))
    assert not (tmp_path / "t").exists() or list((tmp_path / "t").iterdir()) == []


# --- the table walk (slow: real converters) -----------------------------------------------------------------------

def _have(module):
    return importlib.util.find_spec(module) is not None


TARGET_BACKENDS = {"onnx": "onnxruntime", "tflite": "litert_torch", "coreml": "coremltools"}


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("target", list(FORMATS))
@pytest.mark.parametrize("preset", ARCHS.names())
def test_every_preset_target_precision_passes_parity(preset, target, precision, tmp_path):
    if not _have(TARGET_BACKENDS[target]):
        pytest.skip(f"{TARGET_BACKENDS[target]} is not installed (pip install 'toolkit[{FORMATS[target].extra}]')")
    model = tiny_model(mini_arch(preset))
    sizes = (SIZE,)  # fixed size keeps the slowest converters (TFLite, CoreML) to one small shape
    record, dest = _export(model, target, precision, tmp_path, style=preset, sizes=sizes)
    tol = FORMATS[target].precision(precision).tolerance
    if tol.max_abs is not None:
        assert record["parity"]["max_abs"] <= tol.max_abs
    if tol.psnr_db is not None and record["parity"]["min_psnr_db"] is not None:
        assert record["parity"]["min_psnr_db"] >= tol.psnr_db
    meta = read_metadata(dest)
    assert meta["style"] == preset and meta["precision"] == precision
    assert json.loads(meta["arch"])["widths"] == list(model.config.widths)


def _photos(tmp_path, n=8):
    from PIL import Image

    d = tmp_path / "calib"
    d.mkdir()
    for i in range(n):
        Image.fromarray((natural_image(48, 64, seed=10 + i) * 255).astype(np.uint8)).save(d / f"c{i}.png")
    return (str(d),)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["onnx", "tflite"])
def test_int8_keeps_psnr_above_30db(target, tmp_path):
    if not _have(TARGET_BACKENDS[target]):
        pytest.skip(f"{TARGET_BACKENDS[target]} is not installed")
    record, dest = _export(tiny_model(), target, "int8", tmp_path, sizes=(SIZE,), calibration=_photos(tmp_path))
    assert record["parity"]["min_psnr_db"] >= 30
    assert read_metadata(dest)["precision"] == "int8"


@pytest.mark.slow
def test_onnx_int8_keeps_the_stem_float_so_instance_norm_cannot_magnify_its_rounding(tmp_path):
    """Instance norm is scale-invariant per channel: shrinking one stem channel 1000x leaves the float net's output
    as it was, but would leave that channel a few int8 steps of the layer's shared range -- which the norm then
    stretches back up into noise."""
    if not _have("onnxruntime"):
        pytest.skip("onnxruntime is not installed")
    import onnx

    model = tiny_model()
    conv = next(m for m in model.stem.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        conv.weight[0] *= 1e-3
        conv.bias[0] *= 1e-3
    record, dest = _export(model, "onnx", "int8", tmp_path, calibration=_photos(tmp_path))
    assert record["parity"]["min_psnr_db"] >= 30
    graph = onnx.load(str(dest)).graph
    float_weights = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer
                     if i.data_type == onnx.TensorProto.FLOAT}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert convs[0].input[1] in float_weights  # the stem reads float weights, no DequantizeLinear
    for c in convs[1:]:  # the rest are quantized, but for the float Resize's channel picker (one 1 per row)
        w = float_weights.get(c.input[1])
        assert w is None or (set(np.unique(w)) <= {0.0, 1.0} and (w.sum(axis=1) == 1).all())


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["nano", "nano_lite", "nano_bn"])
def test_onnx_int8_has_u8_activations_whatever_the_norms(preset, tmp_path):
    """u8 activations are the ones onnxruntime fuses into QLinearConv/QLinearAdd chains on x86, and they hold parity
    around instance norm as well as where batch norm folded away (benchmarks/results/onnx_int8_format.md)."""
    if not _have("onnxruntime"):
        pytest.skip("onnxruntime is not installed")
    import onnx

    model = tiny_model(mini_arch(preset))
    with torch.no_grad():  # batch-norm statistics as training leaves them, so the fold is not the identity
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2), m.running_var.uniform_(0.5, 2.0)
    record, dest = _export(model, "onnx", "int8", tmp_path, calibration=_photos(tmp_path))
    assert record["parity"]["min_psnr_db"] >= 30
    assert read_metadata(dest)["int8_layout"] == "qdq_u8"
    graph = onnx.load(str(dest)).graph
    inits = {i.name: i for i in graph.initializer}
    zero_points = {inits[n.input[2]].data_type for n in graph.node if n.op_type == "QuantizeLinear"}
    assert zero_points == {onnx.TensorProto.UINT8}


def test_onnx_head_runs_its_per_pixel_ops_before_depth_to_space(tmp_path, monkeypatch):
    """nano_fine's head ends DepthToSpace -> ReLU -> 1x1 conv -> sigmoid; the export runs the ReLU, the conv (block
    diagonal over the 4 phases) and the sigmoid at half resolution, then DepthToSpace moves 3 channels: the same
    sums on every pixel, so fp32 parity holds at its float tolerance."""
    if not _have("onnxruntime"):
        pytest.skip("onnxruntime is not installed")
    import onnx

    from toolkit.export import onnx as onnx_export

    monkeypatch.setattr(onnx_export, "D2S_TRANSPOSES", False)  # the DepthToSpace itself, as phase_head leaves it
    record, dest = _export(tiny_model(mini_arch("nano_fine")), "onnx", "fp32", tmp_path)
    assert record["parity"]["max_abs"] <= 1e-4
    graph = onnx.load(str(dest)).graph
    producers = {o: n for n in graph.node for o in n.output}
    (d2s,) = [n for n in graph.node if n.op_type == "DepthToSpace"]
    assert producers[d2s.input[0]].op_type == "Sigmoid"
    assert producers[producers[d2s.input[0]].input[0]].op_type == "Conv"
    assert not any(d2s.output[0] in n.input for n in graph.node if n.op_type in ("Conv", "Relu", "Sigmoid"))


def _depth_to_space_model(quantized: bool):
    """image (1, 12, H, W) -> DepthToSpace(CRD, 2) -> (1, 3, 2H, 2W), dynamic H and W; `quantized`: between a u8
    QuantizeLinear / DequantizeLinear pair on each side, one scale, as static int8 leaves it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, src = [], [], "image"
    if quantized:
        inits = [numpy_helper.from_array(np.array(0.01, np.float32), "s"),
                 numpy_helper.from_array(np.array(3, np.uint8), "z")]
        nodes += [helper.make_node("QuantizeLinear", ["image", "s", "z"], ["q0"]),
                  helper.make_node("DequantizeLinear", ["q0", "s", "z"], ["d0"])]
        src = "d0"
    nodes.append(helper.make_node("DepthToSpace", [src], ["y" if quantized else "out"], blocksize=2, mode="CRD",
                                  name="shuffle"))
    if quantized:
        nodes += [helper.make_node("QuantizeLinear", ["y", "s", "z"], ["q1"]),
                  helper.make_node("DequantizeLinear", ["q1", "s", "z"], ["out"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                          [1, 12, "h", "w"])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, None, None])], inits)
    return onnx.helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("quantized", [False, True])
def test_depth_to_space_as_two_one_axis_transposes_is_the_same_permutation_at_any_size(quantized):
    """onnxruntime's DepthToSpace is a generic 6-D shuffle; the exporter writes it as two transposes that each move
    one axis (4-7x faster here), on the 8-bit tensor where it sat between a DequantizeLinear and a QuantizeLinear."""
    if not _have("onnxruntime"):
        pytest.skip("onnxruntime is not installed")
    import onnx
    import onnxruntime as ort

    from toolkit.export.onnx_graph import depth_to_space_by_transposes

    before = _depth_to_space_model(quantized)
    after = depth_to_space_by_transposes(_depth_to_space_model(quantized))
    onnx.checker.check_model(after)
    ops = [n.op_type for n in after.graph.node]
    assert "DepthToSpace" not in ops and ops.count("Transpose") == 2
    producers = {o: n for n in after.graph.node for o in n.output}
    first_reshape = next(n for n in after.graph.node if n.op_type == "Reshape")
    if quantized:  # the 8-bit tensor itself moves
        assert producers[first_reshape.input[0]].op_type == "QuantizeLinear" and ops.count("QuantizeLinear") == 1
    else:
        assert first_reshape.input[0] == "image"
    a, b = (ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]) for m in (before, after))
    rng = np.random.default_rng(0)
    for h, w in ((2, 3), (5, 7), (61, 80)):
        x = rng.random((1, 12, h, w), dtype=np.float32)
        expected = a.run(None, {"image": x})[0]
        assert expected.shape == (1, 3, 2 * h, 2 * w)
        np.testing.assert_array_equal(b.run(None, {"image": x})[0], expected)


@pytest.mark.slow
def test_onnx_int8_pads_and_shapes_read_8_bit_tensors(tmp_path):
    """A reflect/edge Pad only copies values: the int8 export pads the 8-bit tensor itself, so no Pad sits between
    a DequantizeLinear and a QuantizeLinear (onnxruntime fuses neither around a Pad, and paid both on every one)."""
    if not _have("onnxruntime"):
        pytest.skip("onnxruntime is not installed")
    import onnx

    record, dest = _export(tiny_model(mini_arch("nano_fine")), "onnx", "int8", tmp_path, calibration=_photos(tmp_path))
    assert record["parity"]["min_psnr_db"] >= 30
    graph = onnx.load(str(dest)).graph
    producers = {o: n for n in graph.node for o in n.output}
    pads = [n for n in graph.node if n.op_type == "Pad"]
    assert len(pads) >= 4
    for pad in pads:
        source = producers.get(pad.input[0])
        assert source is None or source.op_type in ("QuantizeLinear", "Pad"), source.op_type
    pad_outputs = {p.output[0] for p in pads}
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] in pad_outputs for n in graph.node)
    assert all(producers[n.input[0]].op_type != "DequantizeLinear" for n in graph.node
               if n.op_type == "Shape" and n.input[0] in producers)


@pytest.mark.slow
def test_onnx_int8_widens_narrow_convs_to_onnxruntimes_8bit_kernel_with_the_same_output(tmp_path, monkeypatch):
    """A quantized conv with under 16 output channels misses onnxruntime's x86 8-bit conv kernel: the export pads it
    with zero filters to 16 and slices the real channels back off its 8-bit output. onnxruntime still fuses every
    quantized conv (only the float stem stays a float Conv) and the file computes what the narrow one does, exactly."""
    if not _have("onnxruntime"):
        pytest.skip("onnxruntime is not installed")
    import onnx
    import onnxruntime as ort

    from toolkit.export import onnx_graph

    net, photos = tiny_model(mini_arch("nano_fine")), _photos(tmp_path)
    _, wide = _export(net, "onnx", "int8", tmp_path / "wide", calibration=photos)
    monkeypatch.setattr(onnx_graph, "CONV_SYM_MIN_OUT", 1)
    monkeypatch.setattr(onnx_graph, "CONV_SYM_OUT_ALIGN", 1)
    _, narrow = _export(net, "onnx", "int8", tmp_path / "narrow", calibration=photos)

    graph = onnx.load(str(wide)).graph
    inits = {i.name: i for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    quantized = [n for n in graph.node if n.op_type == "Conv" and producers.get(n.input[1]) is not None]
    assert len(quantized) >= 5
    widths = [inits[producers[c.input[1]].input[0]].dims[0] for c in quantized]
    assert all(w >= 16 and w % 8 == 0 for w in widths), widths
    assert sum(n.op_type == "Slice" for n in graph.node) > sum(
        n.op_type == "Slice" for n in onnx.load(str(narrow)).graph.node)

    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(wide), so, providers=["CPUExecutionProvider"])
    fused = onnx.load(so.optimized_model_filepath).graph.node
    # float: the stem and the identity conv before the float Resize; every quantized conv is a QLinearConv
    assert [n.op_type for n in fused].count("Conv") == 2
    assert [n.op_type for n in fused].count("QLinearConv") >= 5

    x = natural_image(37, 53, seed=3)[None].transpose(0, 3, 1, 2).astype(np.float32)
    a, b = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (wide, narrow))
    np.testing.assert_array_equal(a.run(None, {"image": x})[0], b.run(None, {"image": x})[0])


def _optimized_ops(path, tmp_path) -> list[tuple[str, str]]:
    """(op type, domain) of the graph onnxruntime runs on this machine (its fusions and layout rewrites applied)."""
    import onnx
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / f"{Path(path).stem}.optimized.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return [(n.op_type, n.domain) for n in onnx.load(so.optimized_model_filepath).graph.node]


@pytest.mark.slow
def test_onnx_int8_hands_its_float_resize_to_onnxruntimes_blocked_layout_with_the_same_output(tmp_path, monkeypatch):
    """onnxruntime runs a float Resize in its NCHWc layout (4x faster here) only after a float conv: int8 puts a 1x1
    identity conv in front, reading the 8-bit tensor before the widening's channel Slice. Bit-identical output."""
    if not _have("onnxruntime"):
        pytest.skip("onnxruntime is not installed")
    import onnxruntime as ort

    from toolkit.export import onnx_graph

    net, photos = tiny_model(mini_arch("nano_fine")), _photos(tmp_path)
    _, fp32 = _export(net, "onnx", "fp32", tmp_path / "fp32")
    if ("Upsample", "com.microsoft.nchwc") not in _optimized_ops(fp32, tmp_path):
        pytest.skip("onnxruntime has no NCHWc layout on this CPU")
    _, fast = _export(net, "onnx", "int8", tmp_path / "fast", calibration=photos)
    monkeypatch.setattr(onnx_graph, "_float_resize_in_blocked_layout", lambda model: None)
    _, plain = _export(net, "onnx", "int8", tmp_path / "plain", calibration=photos)

    assert ("Upsample", "com.microsoft.nchwc") in _optimized_ops(fast, tmp_path)
    assert not any(op == "Resize" for op, _ in _optimized_ops(fast, tmp_path))
    assert ("Resize", "") in _optimized_ops(plain, tmp_path)
    a, b = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (fast, plain))
    for h, w in ((37, 53), (64, 48)):
        x = natural_image(h, w, seed=4)[None].transpose(0, 3, 1, 2).astype(np.float32)
        np.testing.assert_array_equal(a.run(None, {"image": x})[0], b.run(None, {"image": x})[0])


@pytest.mark.slow
def test_onnx_int8_keeps_convs_float_in_order_while_under_its_target_and_records_them(tmp_path, monkeypatch):
    """A net whose int8 misses INT8_TARGET_DB against its float graph keeps its first convs after the stem float (at
    most INT8_MAX_FLOAT_CONVS) and says which in the file; one that clears it is quantised as before."""
    if not _have("onnxruntime"):
        pytest.skip("onnxruntime is not installed")
    import onnx

    from toolkit.export import onnx as onnx_export

    net, photos = tiny_model(mini_arch("nano_fine")), _photos(tmp_path)
    _, plain = _export(net, "onnx", "int8", tmp_path / "plain", calibration=photos)
    assert "int8_float_convs" not in {p.key for p in onnx.load(str(plain)).metadata_props}
    monkeypatch.setattr(onnx_export, "INT8_TARGET_DB", 200.0)  # unreachable: every allowed conv stays float
    _, strict = _export(net, "onnx", "int8", tmp_path / "strict", calibration=photos)
    model = onnx.load(str(strict))
    kept = dict((p.key, p.value) for p in model.metadata_props)["int8_float_convs"].split(",")
    assert len(kept) == onnx_export.INT8_MAX_FLOAT_CONVS
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "QLinearConv")]
    float_convs = [n.name for n in convs if n.op_type == "Conv" and
                   not any(i.endswith("_DequantizeLinear_Output") for i in n.input[1:2])]
    assert set(kept) <= set(float_convs)


def test_onnx_int8_search_holds_any_size_files_to_the_camera_size_too(tmp_path):
    """A file that takes any size is checked on its calibration photos at the camera size apps run as well as at the
    calibration size; a fixed-size file only at its own size."""
    from toolkit.export import onnx as onnx_export
    from toolkit.formats import CAMERA_SIZES

    net, photos = tiny_model(mini_arch("nano_fine")), _photos(tmp_path)
    dynamic = ExportSpec("onnx", "int8", calibration=photos)
    images = onnx_export._calibration_images(net, dynamic)
    checked = onnx_export._check_images(net, dynamic, images)
    assert len(checked) == 2 * len(images)
    assert {x.shape[2:] for x in checked[len(images):]} == {CAMERA_SIZES[0]}
    fixed = dataclasses.replace(dynamic, sizes=((64, 64),))
    assert onnx_export._check_images(net, fixed, images) is images


@pytest.mark.slow
def test_tflite_dynamic_range_int8_stores_int8_weights_keeps_float_io_and_needs_no_photos(tmp_path):
    if not _have("litert_torch"):
        pytest.skip("litert-torch is not installed")
    from toolkit.export.contract import contract_from_artifact

    fp32, _ = _export(tiny_model(mini_arch("nano")), "tflite", "fp32", tmp_path)
    record, dest = _export(tiny_model(mini_arch("nano")), "tflite", "int8_dynamic", tmp_path, calibration=("/nowhere",))
    assert record["parity"]["min_psnr_db"] >= 30 and record["bytes"] < fp32["bytes"]
    runner = load_runner(dest)
    tensors = runner.interpreter.get_tensor_details()
    assert any(t["dtype"] == np.int8 and len(t["shape"]) == 4 for t in tensors)  # conv weights
    assert runner.interpreter.get_input_details()[0]["dtype"] == np.float32
    assert contract_from_artifact(dest)["inputs"][0]["dtype"] == "float32"


@pytest.mark.slow
def test_tflite_is_nhwc_fixed_size_and_reproducible(tmp_path):
    a, dest = _export(tiny_model(), "tflite", "fp32", tmp_path / "a")
    b, _ = _export(tiny_model(), "tflite", "fp32", tmp_path / "b")
    assert a["sha256"] == b["sha256"]
    runner = load_runner(dest)
    assert runner.sizes == (SIZE,) and runner.input_names == ("image",) and runner.output_names == ("stylized",)
    assert tuple(runner.interpreter.get_input_details()[0]["shape"]) == (1, *SIZE, 3)
    with pytest.raises(UserError, match="takes 32x48 only"):
        runner(np.zeros((1, 3, 48, 32), np.float32))


def test_parity_checks_enumerated_artifacts_at_sizes_they_accept():
    from toolkit.parity import accepted_sizes

    camera = [(480, 640), (640, 480), (720, 1280), (256, 256)]
    assert accepted_sizes([(256, 256), (240, 320)], ()) == [(256, 256), (240, 320)]
    assert accepted_sizes([(256, 256)], camera) == [(256, 256)]
    assert accepted_sizes([(256, 256), (240, 320), (720, 1280)], camera) == [(256, 256), (720, 1280)]
    assert accepted_sizes([(240, 320)], [(480, 640), (720, 1280)]) == [(480, 640), (720, 1280)]


def test_int8_calibrates_on_the_packaged_frames_without_shared_data(tmp_path, monkeypatch):
    """A fresh `pip install` has no ../shared: int8 export still finds 8 real (rendered) frames in the package."""
    from toolkit.export.calibration import PACKAGED, calibration_paths

    monkeypatch.setenv("TOOLKIT_DATA", str(tmp_path))  # an empty data root
    files = calibration_paths()
    assert len(files) >= 8 and all(f.parent == PACKAGED for f in files)


def test_int8_equalisation_before_instance_norm_keeps_the_function_and_evens_the_channels():
    """TFLite int8 has one activation scale per tensor: the convs feeding instance norms are rescaled per channel to
    unit std first, which instance norm undoes (up to its epsilon)."""
    from toolkit.export.coreml import conv_norm_pairs
    from toolkit.export.tflite import equalise_norm_inputs
    from toolkit.parity import psnr

    model = tiny_model(arch_config("nano"))
    with torch.no_grad():
        model.stem[0][-1].weight[0] *= 0.2  # one quiet stem channel, as training leaves some
    images = [np.random.default_rng(i).random((1, 3, 64, 64), dtype=np.float32) for i in range(4)]
    equalised = equalise_norm_inputs(model, images)
    x = torch.from_numpy(images[0])
    with torch.no_grad():
        assert psnr(equalised(x).numpy(), model(x).numpy()) > 45  # the shipped nets: 53.7-62.6 dB
        stem = equalised.stem[0](x).std(dim=(2, 3))[0]
    assert float(stem.max() / stem.min()) < 2.0
    assert len(conv_norm_pairs(equalised)) == len(conv_norm_pairs(model))


def test_an_export_removes_staging_folders_that_killed_exports_left(ckpt, tmp_path):
    import os
    import subprocess
    import time

    out = tmp_path / "exported"
    out.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = out / f".export-{dead.pid}-abc.tmp"          # its owner is gone
    old = out / ".manifest.json.k2j3.tmp"                  # an older release's name (no pid), two hours old
    live = out / f".export-{os.getppid()}-xyz.tmp"        # a live export's staging is left alone
    for folder in (orphan, old, live):
        (folder / "tiny").mkdir(parents=True)
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert _cli_export(ckpt, out, "--target", "onnx") == 0
    assert not orphan.exists() and not old.exists() and live.exists()


def test_a_corrupt_manifest_is_reported_before_any_export(ckpt, tmp_path, capsys, monkeypatch):
    out = tmp_path / "exported"
    out.mkdir()
    (out / "manifest.json").write_text("{broken")
    monkeypatch.setattr("toolkit.export.export_artifact", lambda *a, **k: pytest.fail("exported before checking"))
    assert _cli_export(ckpt, out, "--target", "onnx") == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]


def test_a_manifest_corrupted_during_an_export_stops_it_before_any_artifact_lands(ckpt, tmp_path):
    from toolkit.export.batch import StagedExport, plan_jobs

    out = tmp_path / "exported"
    with StagedExport(out) as stage:
        record = stage.export(tiny_model(), "tiny", plan_jobs(["onnx"], ["fp32"], [(32, 48)], 4)[0])
        (out / "manifest.json").write_text("{broken")   # e.g. a concurrent writer killed mid-way by an old release
        with pytest.raises(UserError, match="not valid JSON"):
            stage.commit([record])
    assert sorted(p.name for p in out.iterdir()) == [".manifest.json.lock", "manifest.json"]
