"""The deploy form of a net: exact rewrites into a faster equivalent TransformerNet, applied before every export.

- Batch norm folding: every batch norm (norm="batch", or trunk_norm="batch") is folded into the conv before it,
  giving the same net with "none" there (eval-mode BatchNorm is a per-channel affine map), so int8 runs
  conv -> relu -> conv with no float normalisation between quantized convs (instance norm cannot fold: its
  statistics depend on the image).
- The bilinear head as a half-resolution phase conv + PixelShuffle (1.6x faster in onnxruntime).

A model transform only: it measures nothing (toolkit.export.export_artifact records how close the deploy form stays
to the trained net, and proves parity against the trained net when the rewrite is exact).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from toolkit.errors import UserError
from toolkit.models.transformer_net import TransformerNet


def fold_batchnorm(model: TransformerNet) -> TransformerNet:
    """The TransformerNet computing what `model` (eval mode) computes, with "none" wherever it had batch norm."""
    cfg = model.config
    if "batch" not in (cfg.norm, cfg.trunk):
        raise UserError(f"only batch norm folds into the convs (this net has norm='{cfg.norm}', "
                        f"trunk_norm='{cfg.trunk}'); train with --arch nano_bn or nano_lite for a foldable net")
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
    norm, trunk = ("none" if n == "batch" else n for n in (cfg.norm, cfg.trunk))
    folded = TransformerNet(dataclasses.replace(cfg, norm=norm, trunk_norm=None if trunk == norm else trunk))
    folded.load_state_dict(state, strict=True)
    return folded.eval()


# Bilinear x2 (align_corners=False) as a 2-phase filter on the low-resolution grid: full-res row 2k + r, for r in
# -1..2, is sum_e _BILINEAR_TAPS[r + 1][e + 1] * x[k + e] over e in -1..1.
_BILINEAR_TAPS = ((0.75, 0.25, 0.0), (0.25, 0.75, 0.0), (0.0, 0.75, 0.25), (0.0, 0.25, 0.75))


def _has_foldable_head(cfg) -> bool:
    """A bilinear head whose first full-resolution conv is 3x3 (the conv to RGB, or the hidden layer's)."""
    return cfg.head == "bilinear" and (cfg.last_kernel == 3 or cfg.head_hidden > 0)


def _head_pad(cfg) -> str:
    return cfg.head_padding or cfg.padding


def fold_bilinear_head(model: TransformerNet) -> TransformerNet:
    """The head="shuffle" TransformerNet equal to `model` (head="bilinear", 3x3 first full-res conv): on every pixel
    when the head pads by replication (`head_padding="replicate"`), else away from a 2-px border.

    bilinear x2 followed by a 3x3 conv is linear and 2-periodic, so it is exactly a 3x3 conv at half resolution to
    4 phases x 3 channels followed by PixelShuffle(2): the same MACs, but without the full-resolution Resize, Pad and
    3-channel conv that dominate nano's runtime. The phase weights are fixed by the trained ones, so this is the same
    function, not a learned pixel-shuffle head (which printed a lattice). At the edge, bilinear x2 clamps, i.e. it
    upsamples the half-res map padded by replication; a replicate pad of one full-res pixel is then the upsampling of
    that same padded map, so the half-res conv, padded by replication too, sees exactly what the full-res conv saw.
    With reflect padding the outer two rows/columns differ.
    """
    cfg = model.config
    if not _has_foldable_head(cfg):
        raise UserError(f"only a bilinear head with a 3x3 last conv folds (this net has head='{cfg.head}', "
                        f"last_kernel={cfg.last_kernel})")
    conv = model.head[1][-1]  # with a hidden layer: the 3x3 conv to it (ReLU and the conv to RGB stay as they are)
    w = conv.weight.detach().double()                                      # (3, C, 3, 3) over full-res offsets
    taps = torch.tensor(_BILINEAR_TAPS, dtype=torch.float64)                # (4 offsets r, 3 taps e)
    phase = torch.stack([taps[a:a + 3] for a in (0, 1)])                    # (2 phases, 3 offsets d, 3 taps e)
    v = torch.einsum("ocyx,ayi,bxj->oabcij", w, phase, phase)             # (3, 2, 2, C, 3, 3)
    state = {k: t.detach().clone() for k, t in model.state_dict().items() if not k.startswith("head.")}
    folded = TransformerNet(dataclasses.replace(cfg, head="shuffle"))
    conv_at = len(folded.head[0]) - 1  # after the pad layer, or alone with zero padding
    state[f"head.0.{conv_at}.weight"] = v.reshape(4 * w.shape[0], w.shape[1], 3, 3).float()
    state[f"head.0.{conv_at}.bias"] = conv.bias.detach().repeat_interleave(4)
    if cfg.head_hidden:
        state.update({f"head.3.{k}": t.detach().clone() for k, t in model.head[3].state_dict().items()})
    folded.load_state_dict(state, strict=True)
    return folded.eval()


def deploy_form(model: TransformerNet) -> tuple[TransformerNet, dict | None]:
    """What the exporters write for `model`: its fast deploy-time equivalent, and a record of the rewrites (None when
    there are none): {"rewrite": what was rewritten, "exact": whether the result equals `model` on every pixel}."""
    rewrites, deployed, exact = [], model, True
    if "batch" in (deployed.config.norm, deployed.config.trunk):
        deployed = fold_batchnorm(deployed)
        rewrites.append("batch norm folded into the convs (exact)")
    if _has_foldable_head(deployed.config):
        exact = _head_pad(deployed.config) == "replicate"
        deployed = fold_bilinear_head(deployed)
        rewrites.append("bilinear head -> half-res phase conv + PixelShuffle "
                        f"({'exact' if exact else 'exact away from a 2-px border'})")
    if not rewrites:
        return model, None
    return deployed, {"rewrite": "; ".join(rewrites), "exact": exact}
