"""CoreML export: trace -> ML Program (.mlpackage) with an RGB image input and a [0,1] NCHW tensor output.

The precision rows of toolkit.formats drive it: `compute` picks the compute precision (FLOAT32 / FLOAT16), `weights`
the weight compression (int8: per-channel linear quantization; palette: k-means palettization to `palette_bits`,
coremltools.optimize.coreml; the 1- and 2-bit ones are Art'Em-style low-bit). Without --size one package holds the
target's enumerated sizes (its SizePolicy). Everything targets iOS 16 / macOS 13, the first release with fp16 I/O
and the constexpr weight-decompression ops.

fp16 safety: instance norm is scale invariant, so before tracing an fp16 export the conv feeding each instance norm is
rescaled by a power of two (exact in floating point) and its epsilon by the square, keeping the pre-norm activations
(and their squares, which the variance needs) inside fp16 range. See `fp16_safe_copy`; the reference interpreter
(toolkit.runtime.mil_interpreter) emulates fp16 and shows the overflow this prevents (tests/test_coreml.py).
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from toolkit.config import to_dict
from toolkit.errors import UserError, require
from toolkit.export.base import ExportSpec, Size
from toolkit.formats import Precision, get_target

TARGET = get_target("coreml")
# Pre-norm activations are scaled down until |x| stays below this: its square (the variance's summand) is then
# 2**14, far under fp16's 65504, with headroom for the mean of squares and the image-to-image spread.
FP16_SAFE_ACTIVATION = 128.0
EXTRA = "coreml"


def export(model, spec: ExportSpec, dest: Path) -> None:
    """Write an ML Program package at `dest` (a directory; only its contents are written)."""
    ct = require("coremltools", EXTRA)
    row = TARGET.precision(spec.precision)
    stride = model.config.stride
    sizes = tuple(dict.fromkeys(tuple(s) for s in spec.sizes)) or TARGET.size_policy.sizes_for(stride)
    if not sizes:
        raise UserError(f"none of CoreML's default sizes suits the net's stride {stride}; pass --size")
    model = copy.deepcopy(model).eval().float()
    if row.compute != "float32":
        model = fp16_safe_copy(model)
    # The graph has no size-dependent ops, so a small example traces it; the converter gets the real shapes. Every
    # enumerated size is a multiple of the stride, so the net's pad-to-stride-and-crop path (for any other size) is
    # left out: jit.trace would record its shape arithmetic, which the converter cannot take.
    example = torch.rand(1, 3, 8 * stride, 8 * stride)
    with torch.no_grad():
        traced = torch.jit.trace(_StrideAligned(model), example, check_trace=False)
    mlmodel = ct.convert(
        traced,
        inputs=[ct.ImageType(name=TARGET.input_name, shape=input_shape(ct, sizes), scale=1 / 255.0,
                             color_layout=ct.colorlayout.RGB)],
        outputs=[ct.TensorType(name=TARGET.output_name)],
        convert_to="mlprogram",
        compute_precision=ct.precision.FLOAT32 if row.compute == "float32" else ct.precision.FLOAT16,
        minimum_deployment_target=ct.target.iOS16,
    )
    mlmodel = compress(mlmodel, row)
    describe(mlmodel, model, spec, row, sizes)
    with tempfile.TemporaryDirectory(prefix="toolkit-coreml-") as tmp:
        saved = Path(tmp) / "model.mlpackage"  # coremltools insists on the suffix; the caller names `dest`
        mlmodel.save(str(saved))
        Path(dest).mkdir(parents=True, exist_ok=True)
        shutil.copytree(saved, dest, dirs_exist_ok=True)


class _StrideAligned(nn.Module):
    """The net for inputs whose sides are multiples of its stride: TransformerNet._forward inside its context ring,
    with no pad to the stride, and a pad and crop that do not depend on the size (the ring is the same on every
    side, so the crop is p:-p), so one trace serves every enumerated size."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not hasattr(self.net, "_forward"):
            return self.net(x)
        p = self.net.config.context_pad
        if not p:
            return self.net._forward(x)
        return self.net._forward(F.pad(x, (p, p, p, p), mode=self.net.config.context_mode))[..., p:-p, p:-p]


def input_shape(ct, sizes: Tuple[Size, ...]):
    shapes = [(1, 3, h, w) for h, w in sizes]
    return shapes[0] if len(shapes) == 1 else ct.EnumeratedShapes(shapes=shapes, default=shapes[0])


def compress(mlmodel, row: Precision):
    """Weight compression of the converted program: every conv weight however small the net, but the stem's in
    int8 (_input_convs) and the output conv's in palettes (_output_convs)."""
    if row.weights in ("float32", "float16"):
        return mlmodel
    cto = require("coremltools.optimize.coreml", EXTRA)
    if row.weights == "int8":
        op_config = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                                weight_threshold=1)
        config = cto.OptimizationConfig(op_type_configs={"conv": op_config, "conv_transpose": op_config},
                                        op_name_configs={name: None for name in _input_convs(mlmodel)})
        return cto.linear_quantize_weights(mlmodel, config)
    if row.weights != "palette":
        raise UserError(f"coreml cannot store weights as {row.weights} (precision {row.name})")
    nbits = row.palette_bits
    if nbits in (1, 2):
        require("sklearn", EXTRA)  # k-means; coremltools fails late and vaguely without it
    op_config = cto.OpPalettizerConfig(mode="kmeans", nbits=nbits, granularity="per_tensor", weight_threshold=1)
    # The conv that writes RGB keeps fp16 weights: in the deploy form it is the bilinear head folded into 4 phases,
    # whose weights mix the trained ones and so are off any palette a QAT fine-tune learned (and it is ~6% of the
    # weights: frost fine-tuned with `toolkit qat --palette --bits 4` exports at 67 dB instead of 39 vs itself)
    config = cto.OptimizationConfig(op_type_configs={"conv": op_config, "conv_transpose": op_config},
                                    op_name_configs={name: None for name in _output_convs(mlmodel)})
    return cto.palettize_weights(mlmodel, config)


def _input_convs(mlmodel) -> list[str]:
    """The first conv of the program, the stem reading the image: it keeps fp16 weights in int8 files, as it stays
    float in ONNX and TFLite int8 (toolkit/export/onnx.py: _stem_convs). Instance norm divides each of its output
    channels by the channel's own std, which magnifies a quiet channel's weight rounding: composition_vii, fine-tuned
    60 steps, is 28.9 dB at 1280x720 (worst of 8 photos) with its stem's weights in int8, 50.0 dB without."""
    return _conv_names(mlmodel)[:1]


def _output_convs(mlmodel) -> list[str]:
    """The last conv of the program: the one writing the image."""
    return _conv_names(mlmodel)[-1:]


def _conv_names(mlmodel) -> list[str]:
    """The program's convs, in order."""
    ops = mlmodel._mil_program.functions["main"].operations
    return [op.name for op in ops if op.op_type in ("conv", "conv_transpose")]


def describe(mlmodel, model, spec: ExportSpec, row: Precision, sizes: Tuple[Size, ...]) -> None:
    """Author/description/licence/version plus user metadata that makes the artifact describe itself, true to the
    spec it writes: the enumerated sizes, the output dtype the precision computes in, the style's licence."""
    from toolkit import __version__
    from toolkit.formats import sizes_text

    dtype = row.output_dtype.upper()  # FLOAT32 | FLOAT16, as CoreML names its multiarray types
    mlmodel.author = str(spec.metadata.get("author", "toolkit"))
    mlmodel.short_description = str(spec.metadata.get(
        "description", f"Style transfer '{spec.style}': RGB image in, stylised RGB out (NCHW {dtype} in [0, 1])."))
    mlmodel.license = str(spec.metadata.get("licence", "unknown: the style's licence was not given at export"))
    mlmodel.version = str(spec.metadata.get("version", __version__))
    meta = {
        "style": spec.style,
        "arch": json.dumps(to_dict(model.config), sort_keys=True),
        "toolkit_version": __version__,
        "target": "coreml",
        "precision": row.name,
        "stride": str(model.config.stride),
        "input_layout": TARGET.input_layout,
        "input_range": "RGB 0..255, scaled by 1/255 inside the model",
        "output_layout": TARGET.output_layout,
        "output_range": f"[0,1] {row.output_dtype} RGB",
    }
    # The caller's metadata (toolkit.export.artifact_metadata) is the same for every target; `sizes` is what this
    # package really holds (the spec's enumerated shapes), whatever the caller wrote.
    meta.update({key: value if isinstance(value, str) else json.dumps(value, sort_keys=True)
                 for key, value in spec.metadata.items()})
    meta["sizes"] = sizes_text(sizes)
    mlmodel.user_defined_metadata.update(meta)
    mlmodel.input_description[TARGET.input_name] = "RGB image; sides must be multiples of the net's stride"
    mlmodel.output_description[TARGET.output_name] = f"stylised image, NCHW {dtype} in [0, 1]"


# ---------------------------------------------------------------------------------------------------- fp16 safety
def fp16_safe_copy(model: nn.Module, limit: float = FP16_SAFE_ACTIVATION) -> nn.Module:
    """A copy whose pre-instance-norm convs are scaled so their outputs stay below `limit` in magnitude.

    IN(s * y) with epsilon s^2 * eps equals IN(y) with eps exactly, and s is a power of two, so scaling the conv's
    weight and bias is exact too. The activation range is measured on a synthetic photo at the largest export size
    on high-contrast probe images with a 4x margin. Pre-norm activations follow the input's local contrast, not
    its size, so the probes are 256x256 whatever size is exported (a 720x1280 probe costs seconds on a phone-sized
    CPU budget for no information).
    """
    model = copy.deepcopy(model)
    pairs = conv_norm_pairs(model)
    if not pairs:
        return model
    peaks = {id(conv): 0.0 for conv, _ in pairs}
    hooks = [conv.register_forward_hook(
        lambda mod, _inp, out: peaks.__setitem__(id(mod), max(peaks[id(mod)], float(out.abs().max()))))
        for conv, _ in pairs]
    with torch.no_grad():
        for probe in probe_images(256, 256):
            model(probe)
    for hook in hooks:
        hook.remove()
    with torch.no_grad():
        for conv, norm in pairs:
            peak = 4.0 * peaks[id(conv)]
            if peak <= limit:
                continue
            scale = 2.0 ** -math.ceil(math.log2(peak / limit))
            conv.weight.mul_(scale)
            if conv.bias is not None:
                conv.bias.mul_(scale)
            norm.eps = norm.eps * scale * scale
    return model


def conv_norm_pairs(model: nn.Module):
    """(conv, instance norm) pairs where only scale-commuting layers (resizes) sit between them in one Sequential."""
    pairs = []
    for seq in model.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        children = list(seq.children())
        for i, norm in enumerate(children):
            if not isinstance(norm, nn.InstanceNorm2d):
                continue
            for before in reversed(children[:i]):
                conv = last_conv(before)
                if conv is not None:
                    pairs.append((conv, norm))
                if not isinstance(before, (nn.Upsample, nn.PixelShuffle)):
                    break
    return pairs


def last_conv(module: nn.Module):
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        return module
    if isinstance(module, nn.Sequential) and len(module):
        return last_conv(module[-1])
    return None


def probe_images(h: int, w: int):
    """Inputs that drive activations high: a full-contrast checkerboard-and-ramp image and a saturated noise image."""
    yy, xx = np.mgrid[0:h, 0:w]
    board = (((yy // 8) + (xx // 8)) % 2).astype(np.float32)
    ramp = np.stack([board, xx / max(w - 1, 1), 1 - board], 0).astype(np.float32)
    noise = (np.random.default_rng(0).random((3, h, w)) > 0.5).astype(np.float32)
    return [torch.from_numpy(ramp)[None], torch.from_numpy(noise)[None]]
