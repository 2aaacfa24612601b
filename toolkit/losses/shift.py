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
