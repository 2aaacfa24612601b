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


@torch.no_grad()
def deepen_trunk(src: TransformerNet, dst: TransformerNet) -> list[int]:
    """Give `dst`'s residual blocks past `src`'s count the identity, so the grown net starts as the trained one with
    new blocks (e.g. dilated, for a longer reach) ready to learn: each block's last conv is zeroed and the norm after
    it set to give 0 (a batch norm's shift zeroed and the conv's bias set to its running mean; an instance norm's
    shift zeroed), so x + f(x) = x. Zeroing the conv rather than the norm's scale (Goyal et al. 2017) keeps its
    gradient, the outer product of the block's live inner features with the loss's, from the first step. Returns the
    indices of the blocks made identity; none when the trunks' widths differ or `src`'s blocks are not `dst`'s
    first ones."""
    if len(dst.res) <= len(src.res) or src.config.widths != dst.config.widths or src.config.block != dst.config.block:
        return []
    if any(_shapes(a) != _shapes(b) for a, b in zip(src.res, dst.res)):
        return []
    grown = list(range(len(src.res), len(dst.res)))
    for i in grown:
        conv = [m for m in dst.res[i].body.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        norm = dst.res[i].body[-1]
        conv.weight.zero_()
        conv.bias.copy_(norm.running_mean if isinstance(norm, torch.nn.BatchNorm2d) else torch.zeros_like(conv.bias))
        if getattr(norm, "bias", None) is not None:
            norm.bias.zero_()
    return grown


def _shapes(block) -> list:
    """A block's tensor shapes and its convs' dilations: what must match for a trained block to be taken as is."""
    return ([tuple(t.shape) for t in block.state_dict().values()]
            + [m.dilation for m in block.modules() if isinstance(m, torch.nn.Conv2d)])
