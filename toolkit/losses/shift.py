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

MARGIN = 8  # border pixels left out: padding and instance-norm statistics differ a little between the two crops


def shift_equivariance(net, x: torch.Tensor, out: torch.Tensor, stride: int, margin: int = MARGIN) -> torch.Tensor:
    """`out` = net(x), with gradients. The crop x[1:, 1:] is trimmed to a multiple of `stride` per side."""
    h, w = x.shape[-2:]
    hs, ws = (h - 1) // stride * stride, (w - 1) // stride * stride
    shifted = net(x[..., 1:1 + hs, 1:1 + ws])
    a = out[..., 1 + margin:1 + hs - margin, 1 + margin:1 + ws - margin]
    b = shifted[..., margin:hs - margin, margin:ws - margin]
    return F.mse_loss(b, a)


def phase_imbalance(x: torch.Tensor, window: int = 8, eps: float = 1e-3) -> list[torch.Tensor]:
    """Per axis, the local signed imbalance (e - o) / (e + o) of the mean gradient magnitude across even (e) and odd
    (o) pixel boundaries, in `window`-pixel neighbourhoods of the luma."""
    y = x.mean(1, keepdim=True)
    maps = []
    for d in (y[..., :, 1:] - y[..., :, :-1], (y[..., 1:, :] - y[..., :-1, :]).transpose(-1, -2)):
        d = d.abs()
        n = d.shape[-1] // 2 * 2
        e = F.avg_pool2d(d[..., 0:n:2], (window, window // 2))
        o = F.avg_pool2d(d[..., 1:n:2], (window, window // 2))
        maps.append((e - o) / (e + o + eps))
    return maps


def phase_balance(out: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The 2-pixel grain itself, as a loss: the output's local even/odd gradient imbalance beyond the photo's own
    (a sharp edge of the photo sits on one phase in both and costs nothing), squared and averaged over both axes.
    Unlike the shift term it leaves texture free to sit anywhere and only asks it not to favour one pixel phase."""
    return sum(((a - b) ** 2).mean() for a, b in zip(phase_imbalance(out), phase_imbalance(content))) / 2
