"""Export-safe building blocks: every op here maps to ONNX opset 18, a CoreML ML Program and TFLite builtins."""

from __future__ import annotations

import torch
from torch import nn


def norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


class ConvLayer(nn.Sequential):
    """Conv with explicit padding. Reflect padding avoids dark borders; zero padding stays on mobile GPU delegates;
    replicate padding commutes with bilinear upsampling (see `TransformerNet`'s head).

    Kernel 4 with stride 2 pads one pixel per side, so on even sizes every window overlaps its neighbours equally and
    the left/top and right/bottom edges see the same amount of padding (kernel 3 / stride 2 does not).
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: str = "reflect",
                 groups: int = 1, bias: bool = True, dilation: int = 1):
        pad = 1 if kernel % 2 == 0 else dilation * (kernel // 2)
        layers: list[nn.Module] = []
        if padding in ("reflect", "replicate") and pad:
            layers.append(nn.ReflectionPad2d(pad) if padding == "reflect" else nn.ReplicationPad2d(pad))
            conv_pad = 0
        else:
            conv_pad = pad
        layers.append(nn.Conv2d(cin, cout, kernel, stride, conv_pad, dilation, groups=groups, bias=bias))
        super().__init__(*layers)


def conv_norm_relu(cin: int, cout: int, kernel: int, stride: int, padding: str, norm: str) -> nn.Sequential:
    return nn.Sequential(ConvLayer(cin, cout, kernel, stride, padding), norm_layer(norm, cout), nn.ReLU(inplace=True))


class ResidualBlock(nn.Module):
    """x + f(x), where f is a plain 3x3 pair, a FastChi 1x1 bottleneck (reduction k), or depthwise-separable; its
    3x3 convs dilated by `dilation`."""

    def __init__(self, channels: int, block: str, padding: str, norm: str, bottleneck_k: int = 2, dilation: int = 1):
        super().__init__()
        c, d = channels, dilation
        if block == "residual":
            body = [ConvLayer(c, c, 3, 1, padding, dilation=d), norm_layer(norm, c), nn.ReLU(inplace=True),
                    ConvLayer(c, c, 3, 1, padding, dilation=d), norm_layer(norm, c)]
        elif block == "bottleneck":
            m = max(1, c // bottleneck_k)
            body = [nn.Conv2d(c, m, 1), norm_layer(norm, m), nn.ReLU(inplace=True),
                    ConvLayer(m, m, 3, 1, padding, dilation=d), norm_layer(norm, m), nn.ReLU(inplace=True),
                    nn.Conv2d(m, c, 1), norm_layer(norm, c)]
        elif block == "dwsep":
            body = [ConvLayer(c, c, 3, 1, padding, groups=c, dilation=d), nn.Conv2d(c, c, 1), norm_layer(norm, c),
                    nn.ReLU(inplace=True),
                    ConvLayer(c, c, 3, 1, padding, groups=c, dilation=d), nn.Conv2d(c, c, 1), norm_layer(norm, c)]
        else:
            raise ValueError(f"unknown block {block}")
        self.body = nn.Sequential(*body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class UpStage(nn.Sequential):
    """x2 upsampling followed by norm + ReLU.

    nearest / bilinear: resize then 3x3 conv (no checkerboard, Odena et al. 2016); transposed: ConvTranspose k4 s2 p1
    (even overlap); pixelshuffle: 3x3 conv to 4x channels then PixelShuffle(2); conv_bilinear: 3x3 conv at the low
    resolution, then bilinear x2 (a quarter of the MACs of resize-then-conv, and smooth).
    """

    def __init__(self, cin: int, cout: int, mode: str, padding: str, norm: str):
        if mode in ("nearest", "bilinear"):
            layers = [nn.Upsample(scale_factor=2, mode=mode), ConvLayer(cin, cout, 3, 1, padding)]
        elif mode == "transposed":
            layers = [nn.ConvTranspose2d(cin, cout, 4, 2, 1)]
        elif mode == "pixelshuffle":
            layers = [ConvLayer(cin, cout * 4, 3, 1, padding), nn.PixelShuffle(2)]
        elif mode == "conv_bilinear":
            layers = [ConvLayer(cin, cout, 3, 1, padding), nn.Upsample(scale_factor=2, mode="bilinear")]
        else:
            raise ValueError(f"unknown upsample {mode}")
        super().__init__(*layers, norm_layer(norm, cout), nn.ReLU(inplace=True))


class OutputActivation(nn.Module):
    """Maps the head's output to RGB in [0, 1]."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "sigmoid":
            return torch.sigmoid(x)
        if self.kind == "tanh":
            return torch.tanh(x) * 0.5 + 0.5
        return torch.clamp(x, 0.0, 1.0)
