"""Function-preserving growth: start a bigger net exactly where a trained smaller one is (Net2Net, Chen et al. 2016)."""

from __future__ import annotations

import torch

from toolkit.models.transformer_net import TransformerNet


@torch.no_grad()
def widen_head(src: TransformerNet, dst: TransformerNet) -> bool:
    """Give `dst`'s hidden head layer (bilinear x2, 3x3 conv to H, ReLU, 1x1 conv to RGB) the function of `src`'s
    plain head (bilinear x2, 3x3 conv to RGB): hidden channels k and k+3 compute +z_k and -z_k, and the 1x1 conv
    outputs relu(z_k) - relu(-z_k) = z_k, so the grown net starts as the trained one, with a full-resolution ReLU
    ready to bend. Channels past 6 start at zero. Returns False (and changes nothing) when the heads do not fit."""
    s, d = src.config, dst.config
    if not (s.head == d.head == "bilinear" and not s.head_hidden and d.head_hidden >= 6 and s.last_kernel == 3
            and d.last_kernel == 1):
        return False
    conv, hidden, out = src.head[1][-1], dst.head[1][-1], dst.head[3][-1]
    if hidden.weight.shape[1:] != conv.weight.shape[1:]:
        return False
    hidden.weight.zero_()
    hidden.bias.zero_()
    out.weight.zero_()
    out.bias.zero_()
    for k in range(3):
        hidden.weight[k], hidden.bias[k] = conv.weight[k], conv.bias[k]
        hidden.weight[k + 3], hidden.bias[k + 3] = -conv.weight[k], -conv.bias[k]
        out.weight[k, k], out.weight[k, k + 3] = 1.0, -1.0
    return True
