"""Quantization-aware fine-tuning: straight-through fake quantization of conv weights and activations.

Weights: symmetric per-output-channel, `bits` in {8, 4, 2} (2 bits = ternary {-s, 0, +s}: the closest a
symmetric grid gets to Art'Em's binarised weights while keeping zero). Activations: asymmetric per-tensor uint8 at every
conv input, range from an exponential moving average of the observed min/max (what onnxruntime's QOperator/QDQ
calibrate). Gradients pass straight through the rounding (Bengio et al. 2013), so the float weights learn to sit
where their rounded values still stylise well.

After training, `bake` writes the rounded weights into the float model and removes every hook: the result is an
ordinary TransformerNet whose conv weights take at most 2**bits - 1 values per output channel, so an exporter's own
quantizer (ONNX/TFLite int8, CoreML palettization) reproduces them almost exactly.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn
from torch.nn.utils import parametrize

from toolkit.errors import UserError

WEIGHT_BITS = (8, 4, 2)


def check_bits(bits: int, flag: str = "--qat-bits") -> int:
    if bits not in WEIGHT_BITS:
        raise UserError(f"{flag} {bits} is not supported; choose one of {', '.join(map(str, WEIGHT_BITS))}")
    return bits


def quantize_weight(w: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric per-output-channel rounding to 2**(bits-1) - 1 positive levels, straight-through gradient."""
    qmax = 2 ** (bits - 1) - 1
    dims = tuple(range(1, w.dim()))
    scale = w.detach().abs().amax(dim=dims, keepdim=True).clamp_min(1e-12) / qmax
    q = torch.clamp(torch.round(w / scale), -qmax, qmax) * scale
    return w + (q - w).detach()


class WeightFakeQuant(nn.Module):
    def __init__(self, bits: int):
        super().__init__()
        self.bits = bits

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return quantize_weight(w, self.bits)


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
def fake_quant(model: nn.Module, weight_bits: int = 8, act_bits: int | None = 8) -> Iterator[nn.Module]:
    """Inside: every conv sees fake-quantized weights (and inputs when act_bits). On exit: weights are baked to
    their rounded values and the hooks are gone, leaving a plain float model."""
    check_bits(weight_bits)
    handles = []
    for conv in _convs(model):
        parametrize.register_parametrization(conv, "weight", WeightFakeQuant(weight_bits))
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


def bake_weights(model: nn.Module, bits: int) -> nn.Module:
    """Round the conv weights in place (post-training quantization of weights only, no fine-tune)."""
    with fake_quant(model, bits, act_bits=None):
        pass
    return model


def distinct_levels(model: nn.Module) -> int:
    """The most distinct weight values in any output channel of any conv (<= 2**bits - 1 after baking)."""
    most = 0
    for conv in _convs(model):
        w = conv.weight.detach().reshape(conv.weight.shape[0], -1)
        most = max(most, max(int(torch.unique(row).numel()) for row in w))
    return most
