"""Deploy-time normalisation folding: a net trained with norm="batch" becomes the same net with norm="none"
(eval-mode BatchNorm is a per-channel affine map, folded exactly into the conv before it), so int8 runs
conv -> relu -> conv with no float normalisation between quantized convs (instance norm cannot fold: its statistics
depend on the image)."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from toolkit.errors import UserError
from toolkit.models.transformer_net import TransformerNet


def fold_batchnorm(model: TransformerNet) -> TransformerNet:
    """The norm="none" TransformerNet computing what `model` (norm="batch", eval mode) computes."""
    if model.config.norm != "batch":
        raise UserError(f"only norm='batch' nets fold into their convs (this one has norm='{model.config.norm}')")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    last_conv = None
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            last_conv = name
        elif isinstance(m, nn.BatchNorm2d):
            scale = m.weight.detach() / torch.sqrt(m.running_var + m.eps)
            shift = m.bias.detach() - m.running_mean * scale
            conv = model.get_submodule(last_conv)
            rep = conv.out_channels // m.num_features  # 4 when a PixelShuffle sits between conv and norm
            scale, shift = scale.repeat_interleave(rep), shift.repeat_interleave(rep)
            dim = 1 if isinstance(conv, nn.ConvTranspose2d) else 0
            shape = [1] * conv.weight.dim()
            shape[dim] = -1
            state[f"{last_conv}.weight"] = conv.weight.detach() * scale.view(shape)
            bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(shift)
            state[f"{last_conv}.bias"] = bias * scale + shift
            for key in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                state.pop(f"{name}.{key}", None)
    folded = TransformerNet(dataclasses.replace(model.config, norm="none"))
    folded.load_state_dict(state, strict=True)
    return folded.eval()
