"""CoreML export, checked on Linux through the reference MIL interpreter, which is itself checked against torch.

Op by op: a tiny torch module per op family is converted to an ML Program, saved, read back by the interpreter and
compared with torch (fp32, max abs diff <= 1e-5). Whole nets: every knob value in fp32 (max abs diff <= 1e-4) and
fp16 (PSNR >= 45 dB). Compressed exports report their PSNR vs the float model (int8 >= 30 dB).
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from conftest import TINY_ARCH, natural_image, tiny_model
from toolkit.config import ArchConfig, from_dict
from toolkit.errors import UserError
from toolkit.export import coreml as coreml_export
from toolkit.export.base import ExportSpec
from toolkit.formats import FORMATS
from toolkit.runtime.coreml import load_runner
from toolkit.runtime.mil_interpreter import OPS, MILInterpreter, UnsupportedOpError

ct = pytest.importorskip("coremltools")

# Each variant moves several knobs at once; together they cover every value of every knob.
KNOB_VARIANTS = {
    "residual-instance-nearest-conv-sigmoid-reflect": dataclasses.replace(
        TINY_ARCH, block="residual", upsample="nearest", head="conv", first_kernel=3, down_kernel=3),
    "bottleneck-batch-bilinear-shuffle-tanh-zero": dataclasses.replace(
        TINY_ARCH, norm="batch", upsample="bilinear", output="tanh", padding="zero"),
    "dwsep-none-transposed-conv-clamp-stridedstem": ArchConfig(
        widths=(4, 8, 8), down_stages=3, res_blocks=1, block="dwsep", norm="none", upsample="transposed",
        head="conv", output="clamp", first_kernel=4, last_kernel=5, down_kernel=4),
    "bottleneck-instance-pixelshuffle-bilinearhead-skip-zero": dataclasses.replace(
        TINY_ARCH, upsample="pixelshuffle", head="bilinear", skip=True, padding="zero"),
    "bottleneck-instance-convbilinear-shuffle-replicatedring": dataclasses.replace(
        TINY_ARCH, context_pad=8, context_mode="replicate"),
    # batch norm right after a conv is folded into it by the converter; after conv_bilinear's resize it stays.
    "residual-batch-convbilinear-shuffle-9x9": dataclasses.replace(
        TINY_ARCH, block="residual", norm="batch", first_kernel=9, last_kernel=9, down_kernel=3),
}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return natural_image(h, w, seed).transpose(2, 0, 1)[None].copy()


def net(config: ArchConfig) -> nn.Module:
    model = tiny_model(config)
    with torch.no_grad():  # give batch norm non-trivial statistics so its folding is exercised
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model


def torch_out(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """export(name, model, precision, sizes) -> package path, converted once per module."""
    cache = {}

    def get(name, model, precision="fp32", sizes=((32, 32),), metadata=None):
        key = (name, precision, sizes)
        if key not in cache:
            dest = tmp_path_factory.mktemp("coreml") / f"{name}.{precision}.mlpackage"
            spec = ExportSpec("coreml", precision, tuple(sizes), style=name, metadata=metadata or {})
            coreml_export.export(model, spec, dest)
            cache[key] = dest
        return cache[key]

    return get


# ---------------------------------------------------------------------------------------------- op by op vs torch
def convert_module(module: nn.Module, shape, path):
    """Convert a torch module with a float tensor input 'x' in fp32 and save it; returns the package path."""
    example = torch.rand(*shape)
    traced = torch.jit.trace(module.eval(), example)
    mlmodel = ct.convert(traced, inputs=[ct.TensorType(name="x", shape=example.shape)], convert_to="mlprogram",
                         compute_precision=ct.precision.FLOAT32, minimum_deployment_target=ct.target.iOS16)
    mlmodel.save(str(path))
    return path


class Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def conv_family():
    """Strides, padding, dilation, groups (incl. depthwise), no bias; transposed convs (custom pads and a crop)."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.Conv2d(6, 6, 3, padding=2, dilation=2, groups=3),
                         nn.Conv2d(6, 4, 5, padding=0, bias=False), nn.Conv2d(4, 4, 3, groups=4, padding=1),
                         nn.ConvTranspose2d(4, 4, 4, 2, 1), nn.ConvTranspose2d(4, 2, 3, 2, 1, output_padding=1),
                         nn.ConvTranspose2d(2, 3, 3, 1, 0))


def norm_pad_family():
    """Instance norm (affine, custom eps, and plain), batch norm with statistics, and the three pad modes."""
    torch.manual_seed(3)
    inorm, bnorm = nn.InstanceNorm2d(3, affine=True, eps=1e-3), nn.BatchNorm2d(3)
    with torch.no_grad():
        for p in (inorm.weight, inorm.bias, bnorm.weight, bnorm.bias, bnorm.running_mean):
            p.uniform_(-1, 1)
        bnorm.running_var.uniform_(0.5, 2)
    pads = Lambda(lambda x: torch.cat([nn.functional.pad(x, (2, 1, 1, 3), mode="reflect"),
                                       nn.functional.pad(x, (2, 1, 1, 3), mode="replicate"),
                                       nn.functional.pad(x, (2, 1, 1, 3), value=0.25)], 1))
    return nn.Sequential(Lambda(lambda x: x * 5 + 1), inorm, bnorm.eval(), nn.InstanceNorm2d(3), pads)


def activation_resample_family():
    """Elementwise math and activations, then nearest and bilinear (half-pixel and align-corners) x2 resizes."""
    def forward(x):
        y = torch.sigmoid(3 * x - 1) * torch.tanh(x) - torch.relu(x - 0.5) / (1 + torch.clamp(x, 0.2, 0.7))
        return torch.cat([nn.functional.interpolate(y, scale_factor=2, mode="nearest"),
                          nn.functional.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False),
                          nn.functional.interpolate(y, scale_factor=2, mode="bilinear", align_corners=True)], 1)

    return Lambda(forward)


def shape_family():
    return Lambda(lambda x: torch.cat([nn.functional.pixel_shuffle(x, 2),
                                       x.reshape(1, 3, 4, 3, 4).permute(0, 1, 3, 2, 4).reshape(1, 3, 6, 8)], 1))


def slice_family():
    """Slices with negative ends, open ends and a stride (the context ring's crop is x[..., p:-p, p:-p])."""
    return Lambda(lambda x: torch.cat([x[..., 1:-1, 2:8], x[..., 2:, 1:7], x[:, :, :5, :6], x[..., 1:6, ::2]], 1))


OP_FAMILIES = {
    "conv": (conv_family, (1, 3, 12, 16), {"conv", "conv_transpose", "crop"}),
    "norm_pad": (norm_pad_family, (1, 3, 7, 9), {"instance_norm", "batch_norm", "pad", "concat"}),
    "activation_resample": (activation_resample_family, (1, 3, 5, 7),
                            {"sigmoid", "tanh", "relu", "clip", "real_div", "upsample_nearest_neighbor",
                             "upsample_bilinear"}),
    "shape": (shape_family, (1, 12, 3, 4), {"pixel_shuffle", "reshape", "transpose"}),
    "slice": (slice_family, (1, 3, 7, 12), {"slice_by_index", "concat"}),
}


@pytest.mark.parametrize("family", sorted(OP_FAMILIES))
def test_interpreter_matches_torch_op_by_op(family, tmp_path):
    make, shape, must_contain = OP_FAMILIES[family]
    module = make()
    package = convert_module(module, shape, tmp_path / f"{family}.mlpackage")
    interpreter = MILInterpreter(package)
    assert must_contain <= set(interpreter.op_types), interpreter.op_types
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    out = next(iter(interpreter.run({"x": x}).values()))
    ref = torch_out(module, x)
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() <= 1e-5


def test_shape_ops_match_their_definitions(tmp_path):
    """depth_to_space (DCR), transpose, reshape, concat(interleave), sub/maximum built directly in MIL."""
    from coremltools.converters.mil import Builder as mb

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 8, 2, 3))], opset_version=ct.target.iOS16)
    def program(x):
        d2s = mb.depth_to_space(x=x, block_size=2)                              # (1, 2, 4, 6)
        t = mb.transpose(x=d2s, perm=[0, 1, 3, 2])                              # (1, 2, 6, 4)
        r = mb.reshape(x=t, shape=[1, 2, 4, 6])
        inter = mb.concat(values=[r, mb.sub(x=r, y=1.0)], axis=1, interleave=True)
        return mb.maximum(x=inter, y=0.25)

    mlmodel = ct.convert(program, convert_to="mlprogram", compute_precision=ct.precision.FLOAT32,
                         minimum_deployment_target=ct.target.iOS16)
    mlmodel.save(str(tmp_path / "shape.mlpackage"))
    x = np.random.default_rng(1).random((1, 8, 2, 3), dtype=np.float32)
    interpreter = MILInterpreter(tmp_path / "shape.mlpackage")
    assert {"depth_to_space", "transpose", "reshape", "concat"} <= set(interpreter.op_types)
    out = next(iter(interpreter.run({interpreter.input_names[0]: x}).values()))
    b, c = 2, 2  # tf.nn.depth_to_space: out[c, h*b+i, w*b+j] = in[(i*b+j)*C + c, h, w]
    d2s = x.reshape(1, b, b, c, 2, 3).transpose(0, 3, 4, 1, 5, 2).reshape(1, c, 4, 6)
    r = d2s.transpose(0, 1, 3, 2).reshape(1, 2, 4, 6)
    inter = np.stack([r, r - 1], axis=2).reshape(1, 4, 4, 6)
    np.testing.assert_allclose(out, np.maximum(inter, 0.25), atol=1e-6)


def test_unknown_op_is_a_clear_error_naming_op_and_model(tmp_path):
    from coremltools.converters.mil import Builder as mb

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 3, 4, 4))], opset_version=ct.target.iOS16)
    def program(x):
        return mb.sin(x=x)

    mlmodel = ct.convert(program, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS16)
    mlmodel.save(str(tmp_path / "trig.mlpackage"))
    assert "sin" not in OPS
    with pytest.raises(UnsupportedOpError, match=r"MIL op 'sin' used by trig\.mlpackage"):
        MILInterpreter(tmp_path / "trig.mlpackage")


# ----------------------------------------------------------------------------------------------------- whole nets
@pytest.mark.parametrize("variant", sorted(KNOB_VARIANTS))
def test_every_knob_fp32_matches_torch_within_1e_4(variant, exported):
    model = net(KNOB_VARIANTS[variant])
    runner = load_runner(exported(variant, model, "fp32"))
    assert runner.name == "coreml-reference" and runner.sizes == ((32, 32),)
    x = image(32, 32)
    out = runner(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    assert np.abs(out - torch_out(model, x)).max() <= 1e-4


@pytest.mark.parametrize("variant", sorted(KNOB_VARIANTS))
def test_every_knob_fp16_keeps_psnr_above_45db(variant, exported):
    model = net(KNOB_VARIANTS[variant])
    package = exported(variant, model, "fp16")
    assert "cast" in MILInterpreter(package).op_types  # it really computes in fp16
    x = image(32, 32, seed=1)
    assert psnr(load_runner(package)(x), torch_out(model, x)) >= 45


def test_knob_variants_cover_every_op_the_nets_emit(exported):
    """The ops our nets produce are exactly ones the interpreter implements (and the list is what we expect)."""
    seen = set()
    for variant, config in KNOB_VARIANTS.items():
        seen |= set(MILInterpreter(exported(variant, net(config), "fp32")).op_types)
        seen |= set(MILInterpreter(exported(variant, net(config), "fp16")).op_types)
    assert seen == {"const", "cast", "mul", "add", "pad", "conv", "conv_transpose", "instance_norm", "batch_norm",
                    "relu", "upsample_nearest_neighbor", "upsample_bilinear", "pixel_shuffle", "sigmoid", "tanh",
                    "clip", "slice_by_index"}
    assert seen <= set(OPS)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["johnson2016", "caffe2go", "fastchi", "nano"])
def test_presets_fp16_keep_psnr_above_45db(preset, exported):
    from toolkit.models import arch_config

    model = tiny_model(arch_config(preset))
    x = image(64, 64, seed=2)
    assert psnr(load_runner(exported(preset, model, "fp16", ((64, 64),)))(x), torch_out(model, x)) >= 45


# ------------------------------------------------------------------------------------------- sizes and metadata
def test_default_export_enumerates_camera_sizes(exported):
    model = tiny_model()
    runner = load_runner(exported("camera", model, "fp16", ()))
    assert runner.sizes == FORMATS["coreml"].size_policy.sizes
    x = image(256, 256)
    assert psnr(runner(x), torch_out(model, x)) >= 45
    with pytest.raises(UserError, match="accepts sizes 480x640.*got 32x32"):
        runner(image(32, 32))


def test_several_sizes_become_enumerated_shapes(exported):
    model = tiny_model()
    runner = load_runner(exported("two", model, "fp32", ((32, 64), (64, 32))))
    assert runner.sizes == ((32, 64), (64, 32))
    for h, w in runner.sizes:
        x = image(h, w)
        assert np.abs(runner(x) - torch_out(model, x)).max() <= 1e-4


def test_metadata_describes_the_artifact(exported):
    package = exported("meta", tiny_model(), "fp16", ((32, 32),), {"author": "tests", "licence": "CC-BY-4.0"})
    spec = ct.models.MLModel(str(package), skip_model_load=True).get_spec()
    meta = spec.description.metadata
    assert meta.author == "tests" and meta.license == "CC-BY-4.0" and meta.shortDescription and meta.versionString
    user = dict(meta.userDefined)
    assert user["style"] == "meta" and user["precision"] == "fp16" and user["sizes"] == "32x32"
    assert from_dict(ArchConfig, json.loads(user["arch"])) == TINY_ARCH
    assert user["input_layout"] == "IMAGE" and user["output_layout"] == "NCHW" and user["toolkit_version"]
    assert [i.name for i in spec.description.input] == ["image"]
    assert [o.name for o in spec.description.output] == ["stylized"]
    assert spec.description.input[0].type.imageType.colorSpace == ct.proto.FeatureTypes_pb2.ImageFeatureType.RGB


def test_export_writes_only_inside_dest(tmp_path):
    dest = tmp_path / "only.mlpackage"
    coreml_export.export(tiny_model(), ExportSpec("coreml", "fp32", ((32, 32),)), dest)
    assert [p.name for p in tmp_path.iterdir()] == ["only.mlpackage"]
    assert (dest / "Manifest.json").is_file()


@pytest.mark.parametrize("precision, sizes, message", [
    ("int4", ((32, 32),), "unknown precision 'int4'"),
    ("fp16", ((30, 32),), "30x32 is not a positive multiple of the net's stride 4"),
])
def test_bad_export_input_is_a_user_error(precision, sizes, message, tmp_path):
    from toolkit.export import export_artifact

    with pytest.raises(UserError, match=message):
        export_artifact(tiny_model(), ExportSpec("coreml", precision, sizes), tmp_path / "bad.mlpackage")
    assert not (tmp_path / "bad.mlpackage").exists()


def test_runner_rejects_bad_providers_and_corrupt_packages(exported, tmp_path):
    package = exported("meta", tiny_model(), "fp16", ((32, 32),), {"author": "tests", "licence": "CC-BY-4.0"})
    with pytest.raises(UserError, match="unknown CoreML provider 'npu'"):
        load_runner(package, provider="npu")
    with pytest.raises(UserError, match="needs macOS"):
        load_runner(package, provider="ane")
    with pytest.raises(UserError, match="not an .mlpackage"):
        load_runner(tmp_path)
    import shutil

    broken = tmp_path / "broken.mlpackage"
    shutil.copytree(package, broken)
    for model_file in broken.rglob("model.mlmodel"):
        model_file.write_bytes(model_file.read_bytes()[:100])
    with pytest.raises(UserError, match="corrupt"):
        load_runner(broken)


# ------------------------------------------------------------------------------------------------- compression
@pytest.mark.parametrize("precision, op_type", [
    ("int8", "constexpr_affine_dequantize"),
    ("palettize6", "constexpr_lut_to_dense"),
    ("palettize4", "constexpr_lut_to_dense"),
    ("palettize2", "constexpr_lut_to_dense"),
    ("palettize1", "constexpr_lut_to_dense"),
])
def test_compressed_exports_run_and_keep_their_rows_psnr(precision, op_type, exported, record_property):
    min_psnr = FORMATS["coreml"].precision(precision).tolerance.psnr_db  # the parity floor, from the table
    model = tiny_model()
    package = exported("compressed", model, precision, ((64, 64),))
    float_package = exported("compressed", model, "fp32", ((64, 64),))
    interpreter = MILInterpreter(package)
    assert op_type in interpreter.op_types
    x = image(64, 64, seed=3)
    quality = psnr(load_runner(package)(x), torch_out(model, x))
    record_property(f"psnr_{precision}_db", round(quality, 1))
    print(f"coreml {precision}: PSNR {quality:.1f} dB vs float")
    assert quality >= min_psnr
    weights = lambda p: sum(f.stat().st_size for f in (p / "Data").rglob("*") if f.is_file())  # noqa: E731
    assert weights(package) < weights(float_package)


def test_int8_keeps_the_stem_weights_fp16_and_stores_every_other_conv_in_int8(exported):
    """The stem reads the image and feeds an instance norm, which magnifies its weight rounding (as in ONNX and
    TFLite int8, it stays float); every other conv's weights are int8."""
    package = exported("compressed", tiny_model(), "int8", ((64, 64),))
    spec = ct.models.MLModel(str(package), skip_model_load=True).get_spec()
    block = next(iter(spec.mlProgram.functions.values())).block_specializations["CoreML6"]
    producer = {out.name: op.type for op in block.operations for out in op.outputs}
    weights = [producer[op.inputs["weight"].arguments[0].name] for op in block.operations if op.type == "conv"]
    assert len(weights) > 2
    assert weights[0] == "const" and set(weights[1:]) == {"constexpr_affine_dequantize"}, weights


@pytest.mark.parametrize("precision", ["int8", "palettize2"])
def test_constexpr_decoding_matches_coremltools(precision, exported):
    """Our decompression of the stored weights equals coremltools' own reference decompress."""
    from coremltools.converters.mil.mil.ops.defs.iOS16 import constexpr_ops

    interpreter = MILInterpreter(exported("compressed", tiny_model(), precision, ((64, 64),)))
    checked = 0
    for op in interpreter.function.operations:
        if op.op_type.startswith("constexpr"):
            args = {k: np.asarray(v.val) for k, v in op.inputs.items()}
            reference = getattr(constexpr_ops, op.op_type).decompress(**args)
            ours = OPS[op.op_type](op, **args).astype(reference.dtype)  # the run loop stores it in the op's dtype
            np.testing.assert_array_equal(ours, reference)
            checked += 1
    assert checked >= 4


# ---------------------------------------------------------------------------------------------- fp16 at 720x1280
def hot_model() -> nn.Module:
    """A tiny net whose stem conv outputs reach thousands, as trained nets' can: IN hides it in fp32, not in fp16."""
    model = tiny_model()
    with torch.no_grad():
        model.stem[0][-1].weight.mul_(3000)
        model.stem[0][-1].bias.mul_(3000)
    return model


def test_fp16_safe_rewrite_is_exact_in_float32():
    model = hot_model()
    safe = coreml_export.fp16_safe_copy(model)
    assert safe.stem[0][-1].weight.abs().max() < model.stem[0][-1].weight.abs().max() / 100
    x = image(64, 64)
    np.testing.assert_allclose(torch_out(safe, x), torch_out(model, x), atol=2e-6)


@pytest.mark.slow
def test_fp16_at_720x1280_overflows_without_rewrite_and_passes_with_it(tmp_path, monkeypatch):
    model = hot_model()
    x = image(720, 1280)
    ref = torch_out(model, x)
    spec = ExportSpec("coreml", "fp16", ((720, 1280),))
    coreml_export.export(model, spec, tmp_path / "safe.mlpackage")
    monkeypatch.setattr(coreml_export, "fp16_safe_copy", lambda m, **_: m)
    coreml_export.export(model, spec, tmp_path / "raw.mlpackage")
    raw = psnr(load_runner(tmp_path / "raw.mlpackage")(x), ref)
    safe = psnr(load_runner(tmp_path / "safe.mlpackage")(x), ref)
    print(f"fp16 720x1280: {raw:.1f} dB without the rewrite, {safe:.1f} dB with it")
    assert raw < 30  # the emulated device overflows in instance norm's variance
    assert safe >= 45
