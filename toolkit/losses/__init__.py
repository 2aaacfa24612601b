"""Perceptual loss: an ImageNet VGG encoder with named taps, content / Gram style / TV terms."""

from toolkit.losses.perceptual import PerceptualLoss, gram_matrix, total_variation
from toolkit.losses.vgg import VGGEncoder, load_vgg


def build_loss(cfg, style_image, seed: int = 0) -> PerceptualLoss:
    """The PerceptualLoss described by a LossConfig, against a style image tensor (1, 3, H, W)."""
    taps = [*cfg.content_layers, *cfg.style_layers] + ([cfg.patch_layer] if cfg.patch_weight else [])
    taps = list(dict.fromkeys(taps))
    encoder = load_vgg(taps, net=cfg.loss_net, weights=cfg.loss_weights, seed=seed)
    return PerceptualLoss(encoder, style_image, cfg.content_layers, cfg.style_layers, cfg.style_layer_weights,
                          cfg.content_weight, cfg.style_weight, cfg.tv_weight, cfg.encoder_precision,
                          cfg.style_scales, cfg.patch_weight, cfg.patch_layer, cfg.patch_scale)


def measuring_loss(style_image_path, style_size: int = 512) -> PerceptualLoss:
    """The default perceptual loss against a style image file: what reports use to compare style and content."""
    from toolkit.config import LossConfig
    from toolkit.data.images import load_rgb, resize_long_side, to_tensor

    return build_loss(LossConfig(), to_tensor(resize_long_side(load_rgb(style_image_path), style_size)))


__all__ = ["PerceptualLoss", "VGGEncoder", "build_loss", "gram_matrix", "load_vgg", "measuring_loss",
           "total_variation"]
