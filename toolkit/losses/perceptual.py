"""Perceptual loss (Johnson et al. 2016): content, Gram-matrix style, total variation; optionally a patch (MRF)
style term (toolkit/losses/patches.py)."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from toolkit.losses.patches import PatchLoss
from toolkit.losses.vgg import VGGEncoder

ENCODER_PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, C), normalised by C*H*W so it does not depend on image size."""
    n, c, h, w = features.shape
    f = features.reshape(n, c, h * w)
    return (f @ f.transpose(1, 2)).float() / (c * h * w)


def rescale(x: torch.Tensor, scale: float) -> torch.Tensor:
    """(N,C,H,W) resized by `scale` (antialiased when shrinking); scale 1 returns x itself."""
    if scale == 1.0:
        return x
    return F.interpolate(x, scale_factor=scale, mode="bilinear", antialias=scale < 1, align_corners=False)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


class PerceptualLoss(nn.Module):
    """Weighted content + style + TV loss against one style image through a frozen encoder."""

    def __init__(self, encoder: VGGEncoder, style_image: torch.Tensor, content_layers: Sequence[str],
                 style_layers: Sequence[str], style_layer_weights: Sequence[float] = (),
                 content_weight: float = 1.0, style_weight: float = 1e4, tv_weight: float = 1e-3,
                 encoder_precision: str = "fp32", style_scales: Sequence[float] = (1.0,),
                 patch_weight: float = 0.0, patch_layer: str = "relu3_1", patch_scale: float = 1.0):
        super().__init__()
        if encoder_precision not in ENCODER_PRECISIONS:
            raise ValueError(f"encoder precision {encoder_precision!r} is not one of {sorted(ENCODER_PRECISIONS)}")
        self.encoder_dtype = ENCODER_PRECISIONS[encoder_precision]
        # channels-last lets oneDNN (CPU) and cuDNN pick their fast conv / pool kernels: a nano training step at
        # 256x256, batch 4 took 2.3 s instead of 3.0 s side by side on a 2-core AVX512 Xeon; same values up to
        # float rounding.
        self.encoder = encoder.to(memory_format=torch.channels_last)
        self.content_layers = list(content_layers)
        self.style_layers = list(style_layers)
        weights = list(style_layer_weights) or [1.0] * len(self.style_layers)
        if len(weights) != len(self.style_layers):
            raise ValueError("style_layer_weights must have one weight per style layer")
        self.layer_weights = dict(zip(self.style_layers, weights))
        self.content_weight, self.style_weight, self.tv_weight = content_weight, style_weight, tv_weight
        self.style_scales = [float(s) for s in style_scales]
        if not self.style_scales or any(not 0 < s <= 1 for s in self.style_scales):
            raise ValueError(f"style scales must be in (0, 1], got {self.style_scales}")
        if self.style_scales[0] != 1:  # the output's full-size features are what the first scale's Grams see
            raise ValueError(f"style scales must start with 1, got {self.style_scales}")
        self.patch_weight, self.patch_layer, self.patch_scale, self.patch = patch_weight, patch_layer, patch_scale, None
        with torch.no_grad():  # the style targets are always computed in fp32
            for i, scale in enumerate(self.style_scales):
                feats = encoder(rescale(style_image, scale))
                for layer in self.style_layers:
                    self.register_buffer(f"gram_{layer}" + (f"_s{i}" if i else ""),
                                         gram_matrix(feats[layer]).mean(0, keepdim=True))
            if patch_weight > 0:
                self.patch = PatchLoss(encoder(rescale(style_image, patch_scale))[patch_layer][:1])

    def target_gram(self, layer: str, scale_index: int = 0) -> torch.Tensor:
        return getattr(self, f"gram_{layer}" + (f"_s{scale_index}" if scale_index else ""))

    def style_loss(self, feats: Mapping[str, torch.Tensor], scale_index: int = 0) -> torch.Tensor:
        total = 0.0
        for layer in self.style_layers:
            g = gram_matrix(feats[layer])
            total = total + self.layer_weights[layer] * F.mse_loss(g, self.target_gram(layer, scale_index).expand_as(g))
        return total

    @torch.no_grad()
    def balance_taps(self, photos: torch.Tensor) -> list[float]:
        """Set and return tap weights w_t = mean_t(d) / d_t, with d_t the mean Gram distance of `photos` to the style
        at tap t: every tap then counts by how far the output is from the style relative to where a photo starts,
        instead of relu1_x's large Grams outweighing relu3_x's (whose statistics carry strokes and motifs)."""
        d = self.tap_distances(self.encode(photos))
        weights = [sum(d) / len(d) / max(v, 1e-12) for v in d]
        self.layer_weights = dict(zip(self.style_layers, weights))
        return weights

    @torch.no_grad()
    def tap_distances(self, feats: Mapping[str, torch.Tensor]) -> list[float]:
        """Per style tap, the Gram MSE of `feats` (a batch's encoder features) to the style's, unweighted."""
        return [F.mse_loss(gram_matrix(feats[t]), self.target_gram(t).expand(len(feats[t]), -1, -1)).item()
                for t in self.style_layers]

    def multiscale_style_loss(self, feats_at) -> torch.Tensor:
        """Style loss summed over `style_scales` (the first is 1); `feats_at(scale)` gives the output's features at
        a scale."""
        total = self.style_loss(feats_at(1.0))
        for i, scale in enumerate(self.style_scales[1:], start=1):
            total = total + self.style_loss(feats_at(scale), i)
        return total

    @staticmethod
    def content_loss(feats: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
                     layers: Sequence[str]) -> torch.Tensor:
        return sum(F.mse_loss(feats[layer].float(), target[layer].float()) for layer in layers)

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encoder features in fp32; under bf16 the convolutions run in bf16 (about 1.8x faster on AVX512-BF16 CPUs
        and tensor-core GPUs) and only the features are cast back, so Gram matrices and losses keep fp32 accuracy."""
        x = x.contiguous(memory_format=torch.channels_last)
        if self.encoder_dtype is None:
            return self.encoder(x)
        with torch.autocast(x.device.type, dtype=self.encoder_dtype):
            return self.encoder(x)

    def forward(self, output: torch.Tensor, content: torch.Tensor) -> dict[str, torch.Tensor]:
        out_feats = self.encode(output)
        with torch.no_grad():
            content_feats = self.encode(content)
        content_l = self.content_loss(out_feats, content_feats, self.content_layers)
        encoded = {1.0: out_feats}

        def feats_at(scale: float) -> dict[str, torch.Tensor]:  # each scale encoded once a step (style and patch)
            if scale not in encoded:
                encoded[scale] = self.encode(rescale(output, scale))
            return encoded[scale]

        style_l = self.multiscale_style_loss(feats_at)
        tv_l = total_variation(output)
        total = self.content_weight * content_l + self.style_weight * style_l + self.tv_weight * tv_l
        losses = {"content": content_l, "style": style_l, "tv": tv_l}
        if self.patch is not None:
            losses["patch"] = self.patch(feats_at(self.patch_scale)[self.patch_layer])
            total = total + self.patch_weight * losses["patch"]
        return {"total": total, **losses}

    @torch.no_grad()
    def measure(self, output: torch.Tensor, content: torch.Tensor) -> dict[str, float]:
        """Unweighted style / content losses of `output`, plus the content image's own style loss for reference."""
        out_feats, content_feats = self.encoder(output), self.encoder(content)
        return {
            "style": float(self.style_loss(out_feats)),
            "content": float(self.content_loss(out_feats, content_feats, self.content_layers)),
            "content_image_style": float(self.style_loss(content_feats)),
        }
