"""Shift equivariance: a net that stylises the same scene the same way wherever the pixel lattice falls.

nano's texture is made at 1/2 resolution and laid onto full resolution by a stride-2 head, so nothing ties its
finest detail to the content: the net is free to put steeper gradients on even pixels than on odd ones, a 2-pixel
grain locked to the lattice (toolkit.metrics.grain). Shifting the photo by one pixel moves the lattice half a
period against the content; this term asks the output to move with the content,
    mean (T(x shifted by (1, 1)) - T(x) shifted by (1, 1))^2   over the interior,
which a lattice-locked pattern cannot satisfy. One extra forward/backward of the (small) net, no encoder pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from toolkit.config import LATTICE_PERIODS

MARGIN = 8  # border pixels left out: padding and instance-norm statistics differ a little between the two crops


def shift_equivariance(net, x: torch.Tensor, out: torch.Tensor, stride: int, margin: int = MARGIN) -> torch.Tensor:
    """`out` = net(x), with gradients. The crop x[1:, 1:] is trimmed to a multiple of `stride` per side."""
    h, w = x.shape[-2:]
    hs, ws = (h - 1) // stride * stride, (w - 1) // stride * stride
    shifted = net(x[..., 1:1 + hs, 1:1 + ws])
    a = out[..., 1 + margin:1 + hs - margin, 1 + margin:1 + ws - margin]
    b = shifted[..., margin:hs - margin, margin:ws - margin]
    return F.mse_loss(b, a)


def phase_imbalance(x: torch.Tensor, window: int = 8, eps: float = 1e-3, period: int = 2) -> list[torch.Tensor]:
    """Per axis, (N, period, h, w) maps: for each pixel phase k modulo `period`, the local signed imbalance
    (m_k - m) / (m + eps / 2) of the mean gradient magnitude m_k across the boundaries of that phase against their
    mean m, in neighbourhoods of `window` (at least two periods) pixels of the luma. Period 2 is (e - o) / (e + o + eps)
    for the even (e) and odd (o) boundaries, and its negative."""
    y = x.mean(1, keepdim=True)
    window = max(window, 2 * period)
    maps = []
    for d in (y[..., :, 1:] - y[..., :, :-1], (y[..., 1:, :] - y[..., :-1, :]).transpose(-1, -2)):
        d = d.abs()
        n = d.shape[-1] // period * period
        m = torch.cat([F.avg_pool2d(d[..., k:n:period], (window, window // period)) for k in range(period)], 1)
        mean = m.mean(1, keepdim=True)
        maps.append((m - mean) / (mean + eps / 2))
    return maps


def phase_balance(out: torch.Tensor, content: torch.Tensor, period: int = 2) -> torch.Tensor:
    """The 2-pixel grain itself, as a loss: the output's local even/odd gradient imbalance beyond the photo's own
    (a sharp edge of the photo sits on one phase in both and costs nothing), squared and averaged over both axes.
    Unlike the shift term it leaves texture free to sit anywhere and only asks it not to favour one pixel phase.
    Another `period` asks the same of the pixel phases modulo it."""
    return sum(((a - b) ** 2).mean() for a, b in zip(phase_imbalance(out, period=period),
                                                      phase_imbalance(content, period=period))) / 2


def lattice_balance(out: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """phase_balance at the trunks' cell periods, averaged: against small squares repeating every cell, which a net
    pushed for texture draws where the photo is flat."""
    return sum(phase_balance(out, content, period) for period in LATTICE_PERIODS) / len(LATTICE_PERIODS)
