"""Quantization-aware fine-tuning: straight-through fake quantization of conv weights and activations.

Weights, on the grid the exporter will store them on:
  uniform  symmetric per-output-channel, `bits` in {8, 4, 2} (2 bits = ternary {-s, 0, +s}: the closest a
           symmetric grid gets to Art'Em's binarised weights while keeping zero) -- ONNX/TFLite int8, CoreML int8;
  palette  one k-means palette of 2**bits values per conv tensor, `bits` in {6, 4, 2, 1} (1 bit = binarised
           weights) -- exactly what coremltools' per-tensor k-means palettizer stores (CoreML palettizeN).
Activations: asymmetric per-tensor uint8 at every conv input, range from an exponential moving average of the
observed min/max (what onnxruntime's QOperator/QDQ calibrate). Gradients pass straight through the rounding (Bengio
et al. 2013), so the float weights learn to sit where their rounded values still stylise well.

After training, `bake` writes the rounded weights into the float model and removes every hook: the result is an
ordinary TransformerNet whose conv weights take at most 2**bits - 1 values per output channel (uniform) or 2**bits
per conv (palette), so the exporter's own quantizer (ONNX/TFLite int8, CoreML palettization) reproduces them.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn
from torch.nn.utils import parametrize

from toolkit.errors import UserError

WEIGHT_BITS = {"uniform": (8, 4, 2), "palette": (6, 4, 2, 1)}


def check_bits(bits: int, flag: str = "--qat-bits", grid: str = "uniform") -> int:
    allowed = WEIGHT_BITS[grid]
    if bits not in allowed:
        raise UserError(f"{flag} {bits} is not supported for the {grid} grid; choose one of "
                        f"{', '.join(map(str, allowed))}")
    return bits


def quantize_weight(w: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric per-output-channel rounding to 2**(bits-1) - 1 positive levels, straight-through gradient."""
    qmax = 2 ** (bits - 1) - 1
    dims = tuple(range(1, w.dim()))
    scale = w.detach().abs().amax(dim=dims, keepdim=True).clamp_min(1e-12) / qmax
    q = torch.clamp(torch.round(w / scale), -qmax, qmax) * scale
    return q + (w - w.detach())  # exactly q in value (w - w is 0), gradient 1 straight through


def palettize_weight(w: torch.Tensor, bits: int, iterations: int = 12) -> torch.Tensor:
    """Each weight moved to the nearest of 2**bits k-means centroids of the whole tensor (1-D Lloyd from quantiles),
    straight-through gradient."""
    with torch.no_grad():
        flat = w.detach().flatten()
        centroids = torch.quantile(flat, torch.linspace(0, 1, min(2 ** bits, flat.numel()), dtype=flat.dtype))
        for _ in range(iterations):
            nearest = (flat[:, None] - centroids[None]).abs().argmin(1)
            sums = torch.zeros_like(centroids).index_add_(0, nearest, flat)
            counts = torch.bincount(nearest, minlength=centroids.numel())
            centroids = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
        q = centroids[(flat[:, None] - centroids[None]).abs().argmin(1)].view_as(w)
    return q + (w - w.detach())  # exactly q in value (w - w is 0), gradient 1 straight through


GRIDS = {"uniform": quantize_weight, "palette": palettize_weight}


class WeightFakeQuant(nn.Module):
    def __init__(self, bits: int, grid: str = "uniform"):
        super().__init__()
        self.bits, self.quantize = bits, GRIDS[grid]

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.quantize(w, self.bits)


class ActivationFakeQuant:
    """uint8 affine fake quant of a conv's input with an EMA-tracked range (a forward pre-hook)."""

    def __init__(self, bits: int = 8, momentum: float = 0.1):
        self.bits, self.momentum = bits, momentum
        self.lo: float | None = None
        self.hi: float | None = None

    def __call__(self, module: nn.Module, inputs: tuple) -> tuple:
        x = inputs[0]
        if module.training or self.lo is None:
            lo, hi = float(x.detach().min()), float(x.detach().max())
            if self.lo is None:
                self.lo, self.hi = lo, hi
            else:
                self.lo += self.momentum * (lo - self.lo)
                self.hi += self.momentum * (hi - self.hi)
        lo, hi = min(self.lo, 0.0), max(self.hi, 0.0)
        qmax = 2 ** self.bits - 1
        scale = max(hi - lo, 1e-8) / qmax
        zero = int(round(-lo / scale))
        return (torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, qmax),) + tuple(inputs[1:])


def _convs(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]


@contextlib.contextmanager
def fake_quant(model: nn.Module, weight_bits: int = 8, act_bits: int | None = 8,
               grid: str = "uniform") -> Iterator[nn.Module]:
    """Inside: every conv sees fake-quantized weights (and inputs when act_bits). On exit: weights are baked to
    their rounded values and the hooks are gone, leaving a plain float model."""
    check_bits(weight_bits, grid=grid)
    handles = []
    for conv in _convs(model):
        parametrize.register_parametrization(conv, "weight", WeightFakeQuant(weight_bits, grid))
        if act_bits:
            handles.append(conv.register_forward_pre_hook(ActivationFakeQuant(act_bits)))
    try:
        yield model
    finally:
        for h in handles:
            h.remove()
        for conv in _convs(model):
            if parametrize.is_parametrized(conv, "weight"):
                parametrize.remove_parametrizations(conv, "weight", leave_parametrized=True)


def bake_weights(model: nn.Module, bits: int, grid: str = "uniform") -> nn.Module:
    """Round the conv weights in place (post-training quantization of weights only, no fine-tune)."""
    with fake_quant(model, bits, act_bits=None, grid=grid):
        pass
    return model


def distinct_levels(model: nn.Module, per: str = "channel") -> int:
    """The most distinct weight values in any output channel (per="channel": <= 2**bits - 1 after uniform baking)
    or in any whole conv tensor (per="tensor": <= 2**bits after palette baking)."""
    most = 0
    for conv in _convs(model):
        w = conv.weight.detach()
        rows = w.reshape(w.shape[0], -1) if per == "channel" else w.reshape(1, -1)
        most = max(most, max(int(torch.unique(row).numel()) for row in rows))
    return most
