"""Patch (MRF) style loss (Li & Wand 2016, "Combining Markov Random Fields and CNNs for image synthesis").

Gram matrices keep a style's statistics but not its shapes: crystals, swirls and wave crests become colour and fine
texture. This term instead pulls every 3x3 patch of the output's encoder features towards its nearest patch of the
style image's features (by normalised cross-correlation), so local structures of the painting are what the net is
asked to draw. Cost is bounded for CPU training: output patches are taken on a stride-2 grid and the style's on a
grid thinned to at most `max_style_patches`. The grid's phase changes from batch to batch and follows from the
features themselves, so a resumed training repeats it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

KERNEL = 3


def style_patches(features: torch.Tensor, max_patches: int = 2048) -> torch.Tensor:
    """(1, C, H, W) features -> (P, C, 3, 3) patches on the densest regular grid with at most `max_patches`."""
    _, c, h, w = features.shape
    positions = (h - KERNEL + 1) * (w - KERNEL + 1)
    if positions < 1:
        raise ValueError(f"style features {h}x{w} are smaller than a {KERNEL}x{KERNEL} patch; use a larger style image")
    stride = max(1, math.ceil(math.sqrt(positions / max_patches)))
    cols = F.unfold(features, KERNEL, stride=stride)  # (1, C*9, P)
    return cols[0].t().reshape(-1, c, KERNEL, KERNEL).contiguous()


class PatchLoss(nn.Module):
    """Mean squared distance of the output's feature patches to their nearest style patches."""

    def __init__(self, style_features: torch.Tensor, max_style_patches: int = 2048, stride: int = 2):
        super().__init__()
        patches = style_patches(style_features.float(), max_style_patches)
        self.register_buffer("patches", patches)
        self.register_buffer("unit", patches / patches.flatten(1).norm(dim=1).clamp_min(1e-8)[:, None, None, None])
        self.stride = stride

    def nearest(self, features: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """Indices (N, h, w) of the nearest style patch of each output patch on this call's grid, and its offset."""
        mass = float(features.abs().sum()) * 1e3
        phase = int(mass) % self.stride ** 2 if math.isfinite(mass) else 0
        dy, dx = divmod(phase, self.stride)
        with torch.no_grad():
            # the argmax over style patches of the cross-correlation with unit-norm style patches is the normalised
            # cross-correlation's: the output patch's own norm is the same for every candidate
            scores = F.conv2d(features[:, :, dy:, dx:].float(), self.unit, stride=self.stride)
        return scores.argmax(1), dy, dx

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        index, dy, dx = self.nearest(features.detach())
        cols = F.unfold(features[:, :, dy:, dx:].float(), KERNEL, stride=self.stride)  # (N, C*9, h*w)
        mine = cols.transpose(1, 2).reshape(-1, cols.shape[1])
        target = self.patches.flatten(1)[index.flatten()]
        return F.mse_loss(mine, target)
