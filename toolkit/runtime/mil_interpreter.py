"""A small reference interpreter for the MIL (CoreML ML Program) ops our nets produce, so CoreML exports can be
checked numerically on Linux, where Core ML itself cannot run.

The program is read back from the saved `.mlpackage` (model spec + weight blob), not from the converter's memory,
so what is checked is what ships. Ops follow the MIL op reference (coremltools.converters.mil.mil.ops.defs):
every op's result is stored in the dtype the program declares for it, so an fp16 program runs with fp16 tensors
between ops, like the device. Inside one op arithmetic is float32 (GPU/ANE accumulate convolutions above fp16); for
elementwise ops float32-then-round is exactly IEEE fp16 arithmetic. instance_norm additionally rounds its squared
deviations to fp16 before averaging: that is where phones overflow on large frames (|x - mean| > 256 -> inf), and
the interpreter is meant to show that failure, not hide it.

An op it does not know raises UnsupportedOpError; it never skips one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Dict

import numpy as np
import torch
import torch.nn.functional as F

from toolkit.errors import UserError, require

WEIGHTS_DIR = Path("Data") / "com.apple.CoreML" / "weights"

OpFn = Callable[..., object]
OPS: Dict[str, OpFn] = {}

DTYPES = {"fp16": np.float16, "fp32": np.float32, "fp64": np.float64, "int8": np.int8, "uint8": np.uint8,
          "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32, "int64": np.int64,
          "bool": np.bool_}


class UnsupportedOpError(UserError):
    def __init__(self, op_type: str, model: str):
        super().__init__(f"the CoreML reference interpreter does not implement MIL op '{op_type}' used by {model}; "
                         f"it knows: {', '.join(sorted(OPS))}")


def register(*names: str) -> Callable[[OpFn], OpFn]:
    def decorator(fn: OpFn) -> OpFn:
        for name in names:
            if name in OPS:
                raise ValueError(f"MIL op '{name}' is registered twice")
            OPS[name] = fn
        return fn

    return decorator


# ------------------------------------------------------------------------------------------------------- program
def load_program(package: str | Path):
    """The pymil Program stored in an .mlpackage (main function with ops in order and their constant inputs)."""
    ct = require("coremltools", "coreml")
    from coremltools.converters.mil.frontend.milproto.load import load

    package = Path(package)
    if not (package / "Manifest.json").is_file():
        raise UserError(f"{package} is not an .mlpackage (no Manifest.json); export it again")
    try:
        spec = ct.models.MLModel(str(package), skip_model_load=True).get_spec()
        return spec, load(spec, specification_version=spec.specificationVersion,
                          file_weights_dir=str(package / WEIGHTS_DIR))
    except Exception as exc:  # a truncated proto or blob surfaces as many different exceptions
        raise UserError(f"cannot read the ML Program in {package} ({exc}); the package is corrupt, export it again") \
            from exc


class MILInterpreter:
    """Runs the main function of an ML Program: `run({"image": array}) -> {"stylized": array}`."""

    def __init__(self, package: str | Path):
        self.package = Path(package)
        self.spec, program = load_program(self.package)
        self.function = program.functions["main"]
        self.input_names = list(self.function.inputs)
        self.output_names = [v.name for v in self.function.outputs]
        for op in self.function.operations:  # refuse up front, not halfway through a frame
            if op.op_type not in OPS:
                raise UnsupportedOpError(op.op_type, self.package.name)

    @property
    def op_types(self) -> list:
        return [op.op_type for op in self.function.operations]

    def run(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        env: Dict[str, np.ndarray] = {}
        for name, var in self.function.inputs.items():
            if name not in feeds:
                raise UserError(f"{self.package.name} needs input '{name}'")
            env[name] = np.asarray(feeds[name]).astype(numpy_dtype(var.dtype))
        for op in self.function.operations:
            args = {key: value_of(arg, env) for key, arg in op.inputs.items()}
            result = OPS[op.op_type](op, **args)
            results = result if isinstance(result, tuple) else (result,)
            for var, value in zip(op.outputs, results):
                env[var.name] = np.asarray(value).astype(numpy_dtype(var.dtype), copy=False)
        return {name: env[name] for name in self.output_names}


def value_of(arg, env: Dict[str, np.ndarray]):
    if isinstance(arg, (tuple, list)):
        return [value_of(a, env) for a in arg]
    if arg.name in env:
        return env[arg.name]
    if arg.val is not None:  # a literal that the loader did not give its own const op
        return np.asarray(arg.val)
    raise KeyError(f"MIL variable '{arg.name}' is used before it is computed")


def numpy_dtype(mil_type):
    from coremltools.converters.mil.mil import types

    if types.is_tensor(mil_type):
        mil_type = mil_type.get_primitive()
    name = types.builtin_to_string(mil_type)
    if name == "string":
        return object
    return DTYPES[name]


def is_fp16(*arrays) -> bool:
    return any(isinstance(a, np.ndarray) and a.dtype == np.float16 for a in arrays)


def f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def scalar(x):
    return np.asarray(x).item()


def to_torch(x) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(f32(x)))


# ------------------------------------------------------------------------------------------- constants and casts
@register("const")
def const(op):
    return np.asarray(op.outputs[0].val)


@register("identity")
def identity(op, x):
    return x


@register("cast")
def cast(op, x, dtype):
    return np.asarray(x).astype(DTYPES[str(scalar(dtype))])


@register("constexpr_affine_dequantize")
def constexpr_affine_dequantize(op, quantized_data, zero_point, scale, axis):
    """iOS16: scale * (q - zero_point), scale and zero point broadcast along `axis` (or scalars)."""
    axis = int(scalar(axis)) % quantized_data.ndim
    shape = [1] * quantized_data.ndim
    zero_point, scale = np.asarray(zero_point), np.asarray(scale)
    if zero_point.ndim:
        zero_point = zero_point.reshape([-1 if i == axis else 1 for i in range(len(shape))])
    if scale.ndim:
        scale = scale.reshape([-1 if i == axis else 1 for i in range(len(shape))])
    return (scale.astype(np.float32) * (quantized_data.astype(np.float32) - zero_point.astype(np.float32)))


@register("constexpr_lut_to_dense")
def constexpr_lut_to_dense(op, indices, lut, shape):
    """iOS16: a per-tensor palette `lut` of 2**nbits entries; indices bit-packed, element 0 in the lowest bits."""
    nbits = int(math.log2(lut.shape[0]))
    count = int(np.prod(shape))
    bits = np.unpackbits(np.asarray(indices, dtype=np.uint8), bitorder="little")[: count * nbits]
    index = (bits.reshape(count, nbits).astype(np.int64) << np.arange(nbits)).sum(axis=1)
    return lut[index].reshape(tuple(int(s) for s in shape))


@register("constexpr_blockwise_shift_scale")
def constexpr_blockwise_shift_scale(op, data, scale, offset=None):
    """iOS18: (data - offset) * scale, where scale/offset hold one value per block of each axis."""
    def expand(t):
        t = np.asarray(t, dtype=np.float32)
        for axis, (n, blocks) in enumerate(zip(data.shape, t.shape)):
            t = np.repeat(t, n // blocks, axis=axis)
        return t

    values = data.astype(np.float32)
    if offset is not None:
        values = values - expand(offset)
    return values * expand(scale)


# --------------------------------------------------------------------------------------------------- elementwise
@register("add")
def add(op, x, y):
    return f32(x) + f32(y)


@register("sub")
def sub(op, x, y):
    return f32(x) - f32(y)


@register("mul")
def mul(op, x, y):
    return f32(x) * f32(y)


@register("real_div")
def real_div(op, x, y):
    return f32(x) / f32(y)


@register("maximum")
def maximum(op, x, y):
    return np.maximum(f32(x), f32(y))


@register("minimum")
def minimum(op, x, y):
    return np.minimum(f32(x), f32(y))


@register("relu")
def relu(op, x):
    return np.maximum(f32(x), 0)


@register("relu6")
def relu6(op, x):
    return np.clip(f32(x), 0, 6)


@register("leaky_relu")
def leaky_relu(op, x, alpha=0.01):
    x = f32(x)
    return np.where(x >= 0, x, x * f32(alpha))


@register("sigmoid")
def sigmoid(op, x):
    return torch.sigmoid(to_torch(x)).numpy()


@register("tanh")
def tanh(op, x):
    return np.tanh(f32(x))


@register("clip")
def clip(op, x, alpha, beta):
    return np.minimum(np.maximum(f32(x), f32(alpha)), f32(beta))


# ---------------------------------------------------------------------------------------------------------- conv
def same_pads(size: int, kernel: int, stride: int, dilation: int, lower: bool):
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    small, big = total // 2, total - total // 2
    return (big, small) if lower else (small, big)


@register("conv")
def conv(op, x, weight, bias=None, strides=None, pad_type="valid", pad=None, dilations=None, groups=1):
    """N-D convolution (2-D here); pad_type valid | same | same_lower | custom (pad = [top, bottom, left, right])."""
    kh, kw = weight.shape[2:]
    strides = [int(s) for s in (strides if strides is not None else (1, 1))]
    dilations = [int(d) for d in (dilations if dilations is not None else (1, 1))]
    pad_type = str(scalar(pad_type))
    if pad_type == "custom":
        top, bottom, left, right = (int(p) for p in pad)
    elif pad_type in ("same", "same_lower"):
        lower = pad_type == "same_lower"
        top, bottom = same_pads(x.shape[2], kh, strides[0], dilations[0], lower)
        left, right = same_pads(x.shape[3], kw, strides[1], dilations[1], lower)
    elif pad_type == "valid":
        top = bottom = left = right = 0
    else:
        raise UserError(f"MIL conv pad_type '{pad_type}' is not in the MIL spec")
    padded = F.pad(to_torch(x), (left, right, top, bottom))
    out = F.conv2d(padded, to_torch(weight), None if bias is None else to_torch(bias), stride=strides,
                   dilation=dilations, groups=int(scalar(groups)))
    return out.numpy()


@register("conv_transpose")
def conv_transpose(op, x, weight, bias=None, pad=None, output_shape=None, pad_type="valid", strides=None,
                   dilations=None, groups=1):
    """Transposed conv, weight [C_in, C_out / groups, kH, kW]; `pad` crops the full output (custom)."""
    strides = [int(s) for s in (strides if strides is not None else (1, 1))]
    dilations = [int(d) for d in (dilations if dilations is not None else (1, 1))]
    full = F.conv_transpose2d(to_torch(x), to_torch(weight), None, stride=strides, dilation=dilations,
                              groups=int(scalar(groups))).numpy()
    pad_type = str(scalar(pad_type))
    h, w = full.shape[2:]
    if pad_type == "custom":
        top, bottom, left, right = (int(p) for p in pad)
    elif pad_type in ("same", "same_lower"):
        extra_h, extra_w = h - x.shape[2] * strides[0], w - x.shape[3] * strides[1]
        top, left = (extra_h - extra_h // 2, extra_w - extra_w // 2) if pad_type == "same_lower" else \
            (extra_h // 2, extra_w // 2)
        bottom, right = extra_h - top, extra_w - left
    else:
        top = bottom = left = right = 0
    out = full[:, :, top:h - bottom, left:w - right]
    if output_shape is not None:
        oh, ow = (int(s) for s in np.asarray(output_shape)[-2:])
        out = np.pad(out, ((0, 0), (0, 0), (0, max(oh - out.shape[2], 0)), (0, max(ow - out.shape[3], 0))))
        out = out[:, :, :oh, :ow]
    if bias is not None:
        out = out + f32(bias).reshape(1, -1, 1, 1)
    return out


# ---------------------------------------------------------------------------------------------------- norms, pad
@register("instance_norm")
def instance_norm(op, x, gamma=None, beta=None, epsilon=1e-5):
    """Per (N, C) over the spatial axes: gamma * (x - mean) / sqrt(var + eps) + beta, biased variance."""
    half = is_fp16(x)
    x = f32(x)
    axes = tuple(range(2, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    dev = x - mean
    square = dev * dev
    if half:
        square = square.astype(np.float16).astype(np.float32)  # overflows to inf beyond 65504, as on the device
    var = square.mean(axis=axes, keepdims=True)
    out = dev / np.sqrt(var + f32(epsilon))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if gamma is not None:
        out = out * f32(gamma).reshape(shape)
    if beta is not None:
        out = out + f32(beta).reshape(shape)
    return out


@register("batch_norm")
def batch_norm(op, x, mean, variance, gamma=None, beta=None, epsilon=1e-5):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    out = (f32(x) - f32(mean).reshape(shape)) / np.sqrt(f32(variance).reshape(shape) + f32(epsilon))
    if gamma is not None:
        out = out * f32(gamma).reshape(shape)
    if beta is not None:
        out = out + f32(beta).reshape(shape)
    return out


@register("pad")
def pad(op, x, pad, mode="constant", constant_val=0.0):
    """`pad` holds (before, after) pairs for the last len(pad) / 2 axes; modes constant | reflect | replicate."""
    pairs = np.asarray(pad, dtype=np.int64).reshape(-1, 2)
    widths = [(0, 0)] * (x.ndim - len(pairs)) + [tuple(int(v) for v in p) for p in pairs]
    mode = str(scalar(mode))
    if mode == "constant":
        return np.pad(f32(x), widths, mode="constant", constant_values=float(scalar(constant_val)))
    if mode in ("reflect", "replicate"):
        return np.pad(f32(x), widths, mode="reflect" if mode == "reflect" else "edge")
    raise UserError(f"MIL pad mode '{mode}' is not in the MIL spec")


# --------------------------------------------------------------------------------------------------- resampling
@register("upsample_nearest_neighbor")
def upsample_nearest_neighbor(op, x, scale_factor_height=1, scale_factor_width=1):
    sh, sw = float(scalar(scale_factor_height)), float(scalar(scale_factor_width))
    h, w = x.shape[-2:]
    rows = np.minimum(np.floor(np.arange(int(math.floor(h * sh))) / sh).astype(np.int64), h - 1)
    cols = np.minimum(np.floor(np.arange(int(math.floor(w * sw))) / sw).astype(np.int64), w - 1)
    return f32(x)[..., rows, :][..., :, cols]


def bilinear_grid(size_in: int, size_out: int, align_corners: bool, half_pixel: bool):
    """Source coordinates per the MIL upsample_bilinear notes (the scale is recomputed from the sizes)."""
    i = np.arange(size_out, dtype=np.float64)
    if align_corners:
        src = i * ((size_in - 1) / (size_out - 1)) if size_out > 1 else np.zeros_like(i)
    elif half_pixel:
        src = (i + 0.5) * (size_in / size_out) - 0.5
    else:
        src = i * (size_in / size_out)
    src = np.clip(src, 0, size_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, size_in - 1)
    return lo, hi, (src - lo).astype(np.float32)


@register("upsample_bilinear")
def upsample_bilinear(op, x, scale_factor_height=1, scale_factor_width=1, align_corners=True,
                      half_pixel_centers=None):
    align = bool(scalar(align_corners))
    half = (not align) if half_pixel_centers is None else bool(scalar(half_pixel_centers))
    h, w = x.shape[-2:]
    oh = int(math.floor(h * float(scalar(scale_factor_height))))
    ow = int(math.floor(w * float(scalar(scale_factor_width))))
    x = f32(x)
    r0, r1, fr = bilinear_grid(h, oh, align, half)
    c0, c1, fc = bilinear_grid(w, ow, align, half)
    fr = fr[:, None]
    rows = x[..., r0, :] * (1 - fr) + x[..., r1, :] * fr
    return rows[..., c0] * (1 - fc) + rows[..., c1] * fc


# ---------------------------------------------------------------------------------------------------- shape ops
@register("pixel_shuffle")
def pixel_shuffle(op, x, upscale_factor):
    """CRD order, like torch.nn.PixelShuffle: out[c, h*r + i, w*r + j] = in[c*r*r + i*r + j, h, w]."""
    return F.pixel_shuffle(to_torch(x), int(scalar(upscale_factor))).numpy()


@register("depth_to_space")
def depth_to_space(op, x, block_size):
    """DCR order, like tf.nn.depth_to_space: out[c, h*b + i, w*b + j] = in[(i*b + j)*C + c, h, w]."""
    b = int(scalar(block_size))
    n, c, h, w = x.shape
    y = f32(x).reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    return y.reshape(n, c // (b * b), h * b, w * b)


@register("crop")
def crop(op, x, crop_height, crop_width):
    """Removes crop_height = [top, bottom] rows and crop_width = [left, right] columns."""
    (top, bottom), (left, right) = (int(v) for v in crop_height), (int(v) for v in crop_width)
    h, w = x.shape[-2:]
    return x[..., top:h - bottom, left:w - right]


@register("slice_by_index")
def slice_by_index(op, x, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None):
    """x[begin:end:stride] per axis, per the MIL spec: a set begin_mask / end_mask bit takes the whole side of that
    axis (begin / end ignored), negative indices count from the end, a set squeeze_mask bit drops the axis (its
    slice must be one element)."""
    n = x.ndim
    stride = [1] * n if stride is None else [int(v) for v in np.asarray(stride).reshape(-1)]
    masks = [[False] * n if m is None else [bool(v) for v in np.asarray(m).reshape(-1)]
             for m in (begin_mask, end_mask, squeeze_mask)]
    index = []
    for axis, (b, e, s) in enumerate(zip(np.asarray(begin).reshape(-1), np.asarray(end).reshape(-1), stride)):
        if masks[2][axis]:
            index.append(int(b))
            continue
        index.append(slice(None if masks[0][axis] else int(b), None if masks[1][axis] else int(e), s))
    return x[tuple(index)]


@register("reshape")
def reshape(op, x, shape):
    shape = [int(s) for s in np.asarray(shape).reshape(-1)]
    shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]  # 0 copies the input's dim (iOS17)
    return np.reshape(x, shape)


@register("transpose")
def transpose(op, x, perm):
    return np.transpose(x, [int(p) for p in perm])


@register("concat")
def concat(op, values, axis, interleave=False):
    axis = int(scalar(axis))
    if not bool(scalar(interleave)):
        return np.concatenate([f32(v) for v in values], axis=axis)
    stacked = np.stack([f32(v) for v in values], axis=axis + 1 if axis >= 0 else axis)
    shape = list(values[0].shape)
    shape[axis] = -1
    return stacked.reshape(shape)
