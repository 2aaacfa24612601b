"""The TFLite exporter converts an NHWC twin of the net (toolkit/export/nhwc.py): the same function, and a graph with
no layout transposes, DEPTH_TO_SPACE for the pixel shuffle, pads as slices + concat, all of it XNNPACK's."""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
import torch

from conftest import mini_arch, natural_image, tiny_model
from toolkit.errors import UserError
from toolkit.models import ARCHS, arch_config

needs_litert = pytest.mark.skipif(importlib.util.find_spec("litert_torch") is None,
                                  reason="litert-torch is not installed (pip install 'toolkit[tflite]')")


def shipped_deploy_form(head_padding="replicate", trunk_norm=None, dilations=()):
    """nano_fine as the exporters receive it: the bilinear head already folded into a half-res conv + PixelShuffle
    (the fold itself is toolkit/models/deploy.py's; its weights do not matter here)."""
    return tiny_model(dataclasses.replace(arch_config("nano_fine"), head="shuffle", head_padding=head_padding,
                                          trunk_norm=trunk_norm, dilations=dilations))


def _images(h, w, n=2):
    return [torch.from_numpy(natural_image(h, w, seed=i).transpose(2, 0, 1)[None].copy()) for i in range(n)]


@pytest.mark.parametrize("preset", ARCHS.names())
def test_twin_computes_the_same_function_as_every_preset(preset):
    from toolkit.export.nhwc import nhwc_twin

    model = tiny_model(mini_arch(preset))
    twin = nhwc_twin(model)
    with torch.no_grad():
        for x in _images(32, 48) + _images(37, 53, n=1):  # aligned, and padded to the stride at the bottom / right
            assert (twin(x) - model(x)).abs().max().item() <= 1e-5


@pytest.mark.parametrize("padding", ["reflect", "replicate", "zero"])
def test_twin_keeps_pads_and_the_pixel_shuffle_exact(padding):
    from toolkit.export.nhwc import DepthToSpace, EdgePad, InstanceNormStats, NormBeforeBilinear, PhaseHead, nhwc_twin

    model = tiny_model(dataclasses.replace(arch_config("nano_fine"), head="shuffle", padding=padding,
                                           head_padding=padding))
    twin = nhwc_twin(model)
    kinds = {type(m) for m in twin.modules()}
    assert {DepthToSpace, InstanceNormStats, NormBeforeBilinear, PhaseHead} <= kinds
    assert (EdgePad in kinds) == (padding != "zero")
    assert not kinds & {torch.nn.InstanceNorm2d, torch.nn.PixelShuffle, torch.nn.ReflectionPad2d,
                        torch.nn.ReplicationPad2d}
    with torch.no_grad():
        for x in _images(40, 56) + _images(37, 53, n=1) + _images(9, 8, n=1):  # odd sides: the half-res crop rounds up
            assert (twin(x) - model(x)).abs().max().item() <= 1e-5


@pytest.mark.parametrize("size", [(2, 2), (3, 7), (30, 41)])
def test_norm_before_bilinear_is_the_norm_of_the_upsampled_map(size):
    from toolkit.export.nhwc import NormBeforeBilinear

    torch.manual_seed(0)
    norm = torch.nn.InstanceNorm2d(5, affine=True)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    up = torch.nn.Upsample(scale_factor=2, mode="bilinear")
    x = torch.randn(2, 5, *size) * 3 + 1
    with torch.no_grad():
        assert (up(NormBeforeBilinear(norm)(x)) - norm(up(x))).abs().max().item() <= 1e-5


def test_phase_head_runs_only_the_shuffle_at_full_resolution():
    from toolkit.export.nhwc import PhaseHead, nhwc_twin

    model = shipped_deploy_form()
    head = nhwc_twin(model).head
    assert isinstance(head, PhaseHead) and head.margin == 1
    full_res = []
    hooks = [m.register_forward_hook(lambda m, _i, out: full_res.append(type(m).__name__) if out.shape[-1] == 56
                                     else None) for m in head.modules() if m is not head]
    with torch.no_grad():
        head(torch.rand(1, head.conv.in_channels, 22, 30))
    for h in hooks:
        h.remove()
    assert full_res == ["DepthToSpace"]


def test_edge_pad_is_torch_padding():
    from toolkit.export.nhwc import EdgePad

    x = torch.rand(1, 3, 9, 11)
    for mode in ("reflect", "replicate"):
        for padding in ((1, 1, 1, 1), (4, 4, 4, 4), (0, 3, 0, 2), (4, 7, 4, 7)):  # the last: context ring + stride
            want = torch.nn.functional.pad(x, padding, mode=mode)
            assert torch.equal(EdgePad(padding, mode)(x), want)
            # a second padding after the first (the stem conv's own after the context ring) in the same gather
            then = torch.nn.functional.pad(want, (1, 2, 1, 0), mode=mode)
            assert torch.equal(EdgePad(padding, mode, then=(1, 2, 1, 0))(x), then)
            # the stem's reflection after a replicated context ring
            then = torch.nn.functional.pad(want, (1, 2, 1, 0), mode="reflect")
            assert torch.equal(EdgePad(padding, mode, then=(1, 2, 1, 0), then_mode="reflect")(x), then)
    x = torch.rand(1, 3, 8, 9)  # a replicated ring wider than the side (8 + 3 px on 8 px)
    want = torch.nn.functional.pad(x, (8, 11, 8, 8), mode="replicate")
    assert torch.equal(EdgePad((8, 11, 8, 8), "replicate")(x), want)


@pytest.fixture(scope="module")
def fp32_tflite(tmp_path_factory):
    """The exporter's fp32 flatbuffer of nano_fine's deploy form at a non-square size, written to a file."""
    if importlib.util.find_spec("litert_torch") is None:
        pytest.skip("litert-torch is not installed (pip install 'toolkit[tflite]')")
    from toolkit.export.tflite import _convert_float_uncached

    model = shipped_deploy_form()
    path = tmp_path_factory.mktemp("nhwc") / "nano_fine.64x96.tflite"
    path.write_bytes(_convert_float_uncached(model, (64, 96)))
    return model, path


@needs_litert
def test_tflite_graph_has_no_layout_transposes_and_one_depth_to_space(fp32_tflite):
    from toolkit.export.nhwc import NormBeforeBilinear, nhwc_twin, op_counts

    model, path = fp32_tflite
    ops = op_counts(path.read_bytes())
    norms = sum(isinstance(m, torch.nn.InstanceNorm2d) for m in model.modules())
    up_norms = sum(isinstance(m, NormBeforeBilinear) for m in nhwc_twin(model).modules())
    assert up_norms == 1
    assert "TRANSPOSE" not in ops, ops  # none around the norms, none for the pixel shuffle, none at the I/O
    assert ops.get("DEPTH_TO_SPACE") == 1, ops
    assert "MIRROR_PAD" not in ops and "PAD" not in ops, ops
    assert ops["MEAN"] == 4 * norms + 6 * up_norms and ops["RSQRT"] == norms, ops  # + 3 sums of squared differences
    assert ops["DEPTHWISE_CONV_2D"] == 3 * up_norms, ops
    assert ops["CONV_2D"] == sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()), ops


@needs_litert
def test_tflite_fp32_equals_the_torch_net(fp32_tflite):
    from toolkit.parity import check_parity

    model, path = fp32_tflite
    result = check_parity(model, path, "tflite", "fp32", [(64, 96)])  # raises on a miss
    assert result["max_abs"] <= 1e-4


@needs_litert
def test_litert_runs_the_whole_tflite_graph_on_xnnpack(fp32_tflite):
    from toolkit.export.nhwc import fully_accelerated

    _, path = fp32_tflite
    accelerated = fully_accelerated(path)
    if accelerated is None:
        pytest.skip("this ai-edge-litert has no CompiledModel API (what litert-benchmark reports with)")
    assert accelerated


@needs_litert
def test_a_wide_replicated_ring_stays_on_xnnpack(tmp_path):
    """An 8-px ring plus the stem's and the stride's pads is 12 rows on a side; XNNPACK's CONCATENATION takes at
    most 5 inputs, so the rows are gathered in a tree of small concatenations (session 24's starry_night files had
    one of 7 and LiteRT ran it outside XNNPACK)."""
    from toolkit.export.nhwc import fully_accelerated
    from toolkit.export.tflite import _convert_float_uncached
    from toolkit.models.deploy import deploy_form

    model = deploy_form(tiny_model(mini_arch("nano_deep_lite_edge")))[0]
    path = tmp_path / "edge.tflite"
    path.write_bytes(_convert_float_uncached(model, (37, 53)))  # padded to the stride at the bottom and right
    assert max(input_counts(path.read_bytes(), "CONCATENATION")) <= 5
    if (accelerated := fully_accelerated(path)) is not None:
        assert accelerated


@needs_litert
def test_export_warns_when_litert_would_run_part_of_the_graph_outside_xnnpack(tmp_path, monkeypatch, caplog):
    from toolkit.export import ExportSpec, artifact_path, export_artifact, nhwc
    from toolkit.models.deploy import deploy_form

    pytest.importorskip("ai_edge_litert.compiled_model", reason="this ai-edge-litert has no CompiledModel API")
    model = deploy_form(tiny_model(mini_arch("nano_deep_lite_edge")))[0]
    spec = ExportSpec(target="tflite", precision="fp32", sizes=((64, 96),), style="t")
    export_artifact(model, spec, artifact_path(tmp_path / "tree", "t", "tflite", "fp32", (64, 96)))
    assert "XNNPACK" not in caplog.text
    monkeypatch.setattr(nhwc, "CONCAT_INPUTS", 99)  # every row of the ring and the stem pad in one concatenation
    model = deploy_form(tiny_model(mini_arch("nano_deep_lite_edge"), seed=1))[0]  # other weights: not the cached graph
    export_artifact(model, spec, artifact_path(tmp_path / "flat", "t", "tflite", "fp32", (64, 96)))
    assert "does not take the whole graph of the t fp32 64x96 file" in caplog.text


@needs_litert
def test_the_bench_times_litert_on_an_nhwc_frame_as_an_app_feeds_it(fp32_tflite, monkeypatch):
    from toolkit.bench.rows import measure
    from toolkit.runtime import load_runner

    _, path = fp32_tflite
    runner = load_runner(path)
    x = np.random.default_rng(0).random((1, 3, 64, 96), dtype=np.float32)
    nhwc = runner.native(x)()
    assert nhwc.shape == (1, 64, 96, 3)
    np.testing.assert_array_equal(nhwc.transpose(0, 3, 1, 2), runner(x))
    frames = []
    native = runner.native
    monkeypatch.setattr(runner, "native", lambda frame: frames.append(frame.shape) or native(frame))
    row = measure(runner, subject="t", target="tflite", precision="fp32", provider="cpu", threads=1, size=(64, 96),
                  warmup=0, runs=2)
    assert row.status == "ok" and frames == [(1, 3, 64, 96)] * 2  # the output check's call, then the timed loop
    with pytest.raises(UserError, match="64x96 only"):
        runner.native(x[..., :48])


@needs_litert
def test_depth_to_space_fusion_leaves_other_reshapes_alone(fp32_tflite):
    from toolkit.export.nhwc import fuse_depth_to_space

    _, path = fp32_tflite
    data = path.read_bytes()
    assert fuse_depth_to_space(data) == data  # already fused: nothing left to match


@pytest.mark.slow
@needs_litert
@pytest.mark.parametrize("trunk, dilations", [("instance", ()), ("none", ()), ("none", (1, 2, 2))])
def test_tflite_int8_stays_nhwc_with_float_stem_and_norms_int8_adds_and_float_io(tmp_path, trunk, dilations):
    from PIL import Image

    from toolkit.export import ExportSpec, artifact_path, export_artifact
    from toolkit.export.nhwc import fully_accelerated, op_counts
    from toolkit.runtime import load_runner

    photos = tmp_path / "calib"
    photos.mkdir()
    for i in range(8):
        Image.fromarray((natural_image(64, 96, seed=10 + i) * 255).astype(np.uint8)).save(photos / f"c{i}.png")
    # "none": a nano_lite net, its trunk's batch norms folded; dilated as nano_lite_reach
    model = shipped_deploy_form(trunk_norm=trunk, dilations=dilations)
    dest = artifact_path(tmp_path, "t", "tflite", "int8", (64, 96))
    spec = ExportSpec(target="tflite", precision="int8", sizes=((64, 96),), style="t", calibration=(str(photos),))
    record = export_artifact(model, spec, dest)
    assert record["parity"]["min_psnr_db"] >= 30
    ops = op_counts(dest.read_bytes())
    assert "TRANSPOSE" not in ops and ops.get("DEPTH_TO_SPACE") == 1, ops
    runner = load_runner(dest)
    details = runner.interpreter
    assert details.get_input_details()[0]["dtype"] == np.float32
    assert details.get_output_details()[0]["dtype"] == np.float32
    assert input_dtypes(dest.read_bytes(), "CONV_2D", 1) == ["FLOAT32"] + ["INT8"] * (ops["CONV_2D"] - 1)  # stem
    adds = input_dtypes(dest.read_bytes(), "ADD", 0)  # the skip add and a norm-free trunk's residual adds in int8;
    int8_adds = model.config.skip + (model.config.res_blocks if trunk == "none" else 0)  # the rest read a norm
    assert adds.count("INT8") == int8_adds, adds
    if (accelerated := fully_accelerated(dest)) is not None:
        assert accelerated


def input_dtypes(flatbuffer: bytes, op_name: str, index: int) -> list[str]:
    """The tensor type of input `index` of each `op_name` op in the file (a CONV_2D's 1 is its filter), in graph
    order."""
    from toolkit.export.nhwc import _schema

    types = {v: k for k, v in vars(_schema().TensorType).items() if not k.startswith("_")}
    graph, ops = _ops_named(flatbuffer, op_name)
    return [types[graph.Tensors(op.Inputs(index)).Type()] for op in ops]


def input_counts(flatbuffer: bytes, op_name: str) -> list[int]:
    """How many inputs each `op_name` op in the file takes, in graph order."""
    return [op.InputsLength() for op in _ops_named(flatbuffer, op_name)[1]]


def _ops_named(flatbuffer: bytes, op_name: str) -> tuple:
    """The file's main subgraph and its `op_name` ops, in graph order."""
    from toolkit.export.nhwc import _op_names, _schema

    names = _op_names()
    model = _schema().Model.GetRootAsModel(flatbuffer, 0)
    graph = model.Subgraphs(0)
    ops = [graph.Operators(i) for i in range(graph.OperatorsLength())]
    codes = [model.OperatorCodes(op.OpcodeIndex()) for op in ops]
    return graph, [op for op, c in zip(ops, codes)
                   if names.get(max(c.BuiltinCode(), c.DeprecatedBuiltinCode())) == op_name]
