"""One configurable image transformation network (Johnson et al. 2016) with the Caffe2go compression levers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from toolkit.config import ArchConfig
from toolkit.models.layers import ConvLayer, OutputActivation, ResidualBlock, UpStage, conv_norm_relu


class TransformerNet(nn.Module):
    """RGB [0,1] NCHW in -> RGB [0,1] NCHW out, the same size for any side >= `min_side` (2 * stride): other sides
    than multiples of `config.stride` are padded on the bottom/right, `config.context_pad` pixels are padded around
    the image (both as `config.context_mode`: reflect or replicate), and the output is cropped back, inside the net,
    so every export carries the same pad and crop.

    stem (stride 2 when down_stages == len(widths): early downsampling) -> stride-2 downs -> residual blocks at
    the lowest resolution -> as many x2 up stages as downs -> head (full-res conv, a 1/2-res conv + PixelShuffle, or
    bilinear x2 + full-res conv). With `skip`, the stem's features are added to the up path where the resolutions
    meet, so fine texture follows the content instead of the lowest resolution's lattice.
    """

    def __init__(self, config: ArchConfig):
        super().__init__()
        self.config = cfg = config
        w = [int(c) for c in cfg.widths]
        pad, norm = cfg.padding, cfg.norm
        self.stem = conv_norm_relu(3, w[0], cfg.first_kernel, 2 if cfg.strided_stem else 1, pad, norm)
        self.down = nn.Sequential(*[conv_norm_relu(w[i], w[i + 1], cfg.down_kernel, 2, pad, cfg.trunk)
                                    for i in range(len(w) - 1)])
        self.res = nn.Sequential(*[ResidualBlock(w[-1], cfg.block, pad, cfg.trunk, cfg.bottleneck_k, d)
                                   for d in cfg.dilations or (1,) * cfg.res_blocks])
        # Up path mirrors the widths; a strided stem adds one more up stage at widths[0].
        up_channels = list(reversed(w)) + ([w[0]] if cfg.strided_stem else [])
        pairs = list(zip(up_channels[:-1], up_channels[1:]))
        if cfg.head in ("shuffle", "bilinear"):
            pairs = pairs[:-1]  # the head itself performs the last x2
        self.up = nn.Sequential(*[UpStage(a, b, cfg.upsample, pad, norm) for a, b in pairs])
        head_in = pairs[-1][1] if pairs else w[-1]
        hid, hpad = cfg.head_hidden, cfg.head_padding or pad
        if cfg.head == "shuffle" and hid:  # the deploy form of a bilinear head with a hidden layer
            self.head = nn.Sequential(ConvLayer(head_in, 4 * hid, 3, 1, hpad), nn.PixelShuffle(2),
                                      nn.ReLU(inplace=True), ConvLayer(hid, 3, cfg.last_kernel, 1, hpad))
        elif cfg.head == "shuffle":
            self.head = nn.Sequential(ConvLayer(head_in, 12, cfg.last_kernel, 1, hpad), nn.PixelShuffle(2))
        elif cfg.head == "bilinear" and hid:
            self.head = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear"),
                                      ConvLayer(head_in, hid, 3, 1, hpad), nn.ReLU(inplace=True),
                                      ConvLayer(hid, 3, cfg.last_kernel, 1, hpad))
        elif cfg.head == "bilinear":
            self.head = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear"),
                                      ConvLayer(head_in, 3, cfg.last_kernel, 1, hpad))
        else:
            self.head = ConvLayer(head_in, 3, cfg.last_kernel, 1, hpad)
        self.activation = OutputActivation(cfg.output)
        # index of the up stage whose output has the stem's resolution and width (None: no skip)
        self.skip_at = len(self.down) - 1 if cfg.skip else None
        if cfg.skip and not 0 <= self.skip_at < len(self.up):
            self.skip_at = None

    @property
    def min_side(self) -> int:
        """Two pixels at the lowest resolution, which the reflect/replicate pads there need."""
        return 2 * self.config.stride

    def input_pads(self, h, w) -> tuple:
        """(left, right, top, bottom) padding of an h x w input: `context_pad` on every side, and the bottom /
        right up to a multiple of the stride. Reflected, at most stride + stride - 1 < min_side, as reflect needs."""
        p, s = self.config.context_pad, self.config.stride
        return p, p + (-w) % s, p, p + (-h) % s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        left, right, top, bottom = pads = self.input_pads(h, w)
        if all(isinstance(p, int) and not p for p in pads):  # aligned, static, no context: no pad ops traced
            return self._forward(x)
        return self._forward(F.pad(x, pads, mode=self.config.context_mode))[..., top:top + h, left:left + w]

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.head(self.features(x)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """What the head reads: stem -> downs -> residual blocks -> up stages (+ the stem's skip)."""
        stem = self.stem(x)
        x = self.res(self.down(stem))
        for i, stage in enumerate(self.up):
            x = stage(x)
            if i == self.skip_at:
                x = x + stem
        return x


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
