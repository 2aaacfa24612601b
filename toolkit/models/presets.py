"""Named architectures, registered by decorator under the name users type (`--arch nano`)."""

from __future__ import annotations

import dataclasses

from toolkit.config import ArchConfig
from toolkit.registry import Registry

ARCHS: Registry = Registry("arch")


@ARCHS.register()
def johnson2016() -> ArchConfig:
    """The reference: 32-64-128, 5 residual blocks, 9x9 ends (~1.68 M params, ~47 GMAC at 480x640)."""
    return ArchConfig()


@ARCHS.register()
def caffe2go() -> ArchConfig:
    """Caffe2go-style compact net: narrower, 3 residual blocks, early (3-stage) downsampling, 3x3 ends."""
    return ArchConfig(widths=(16, 32, 64), res_blocks=3, down_stages=3, first_kernel=3, last_kernel=3)


@ARCHS.register()
def fastchi() -> ArchConfig:
    """FastChi-style: 1x1-bottleneck ("inception") residual blocks with reduction k=2 on the compact trunk."""
    return ArchConfig(widths=(16, 32, 64), res_blocks=5, block="bottleneck", bottleneck_k=2, down_stages=3,
                      first_kernel=3, last_kernel=3)


@ARCHS.register()
def nano() -> ArchConfig:
    """The smallest net that still stylises cleanly (well under 0.6 GMAC at 480x640).

    Two stride-2 stages (1/4 resolution, not 1/8: the 1/8 path printed an 8-pixel grid), kernel-4 stride-2 convs
    (even overlap, symmetric edges: kernel 3 left a bright right-edge column), bottleneck residual blocks, a conv at
    1/4 then bilinear x2 (smooth and cheap), and a 1/2-resolution head with PixelShuffle so nothing runs at full
    resolution.
    """
    return ArchConfig(widths=(12, 32), down_stages=2, res_blocks=3, block="bottleneck", bottleneck_k=2,
                      first_kernel=4, down_kernel=4, last_kernel=3,
                      upsample="conv_bilinear", head="shuffle")


def arch_config(name: str, **overrides) -> ArchConfig:
    """The preset's config with knob overrides (e.g. padding='zero')."""
    return dataclasses.replace(ARCHS.get(name)(), **overrides)


@ARCHS.register()
def tiny() -> ArchConfig:
    """A minimal net (4-8 channels) for smoke tests and pipeline checks; too small to stylise well."""
    return ArchConfig(widths=(4, 8), down_stages=2, res_blocks=1, block="bottleneck", first_kernel=4,
                      down_kernel=4, last_kernel=3, upsample="conv_bilinear", head="shuffle")
