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
    """The smallest net that still stylises cleanly: ~0.5 GMAC at 480x640, ~22 k params.

    Measured on frost (see README "Designing nano"): a 1/8-resolution path printed an 8-pixel grid, a 1/4 path with a
    PixelShuffle head a 4-pixel one, and kernel-3 stride-2 convs a bright right-edge column. So: a kernel-4 stride-2
    stem and down conv (even overlap, symmetric edges), bottleneck residual blocks at 1/4, a conv at 1/4 then
    bilinear x2, the stem's features added back at 1/2 (fine texture follows the content, not the lattice), and a
    bilinear x2 head with one small full-resolution conv to RGB. The head pads by replicating the edge: bilinear x2
    clamps at the edge, so then the whole head equals its deploy form (a half-res phase conv + PixelShuffle) on every
    pixel, border included (with reflect padding the outer 2-pixel ring differed by up to 0.6). The image is
    reflected 4 pixels (one 1/4-res cell) around its frame before the net and cropped after, so the border pixels
    are computed like inner ones. Session 11's 7 nets, as trained, on the quality benchmark's 13 photos
    (benchmarks/results/context_ring.md): the worst edge stripe 0.052 -> 0.048, each style's mean stripe -4 to -31%
    (2 px: worse on 4 of 7 worst photos; 6 px: no better, and wider than the stride), for 3% more pixels at 480x640;
    fine-tuned 60 steps inside the ring, all 7 came under the 0.05 goal (worst 0.045).
    """
    return ArchConfig(widths=(12, 32), down_stages=2, res_blocks=3, block="bottleneck", bottleneck_k=2,
                      first_kernel=4, down_kernel=4, last_kernel=3, upsample="conv_bilinear", head="bilinear",
                      head_padding="replicate", skip=True, context_pad=4)


@ARCHS.register()
def nano_bn() -> ArchConfig:
    """nano with batch norm: folds exactly into the convs at export, so no norm runs on device. Faster, but it does
    not keep quality, so no style ships with it.

    Instance norm's statistics depend on the image, so it stays a float op between nano's convs (12% of its CPU
    time, and it stops int8 from chaining conv -> relu -> conv). Batch norm in eval mode is a fixed per-channel
    affine map: `toolkit.compress.fold.fold_batchnorm` turns this net into nano with norm="none" when exporting.
    Side by side on one Zen 5 core at 480x640 (benchmarks/results/compression.md): fp32 1.16x nano's speed, int8 (u8
    activations, every Conv/Add fused) 1.28x nano's fp32. Trained on frost with nano's recipe (1000 steps) its style
    loss on the eval photos was 47-59% above nano's and its output visibly flatter: per-image normalisation is what
    lets a net this small restyle photos of any contrast.
    """
    return dataclasses.replace(nano(), norm="batch")


@ARCHS.register()
def nano_lite() -> ArchConfig:
    """nano with instance norm only at the ends (stem and up stage) and batch norm in the trunk (down stage and
    residual blocks), which folds into the convs at export: 2 of nano's 12 norms run on device.

    The stem's instance norm still normalises each photo's contrast before the trunk (what nano_bn lacks), and the
    up stage's restores per-image statistics before the head; between them int8 runs the down and residual convs as
    one quantized chain. Trained on frost with nano's recipe (1000 steps), its style loss on the eval photos was
    within +6% of nano's (content +1-2%, 30 dB apart, alike side by side), where nano_bn lost +47-59%; it runs fp32
    1.13x and int8 1.34x as fast as nano's fp32 (real weights, side by side: benchmarks/results/compression.md).
    """
    return dataclasses.replace(nano(), trunk_norm="batch")


@ARCHS.register()
def nano_fine() -> ArchConfig:
    """nano with a full-resolution nonlinearity in the head: bilinear x2, a 3x3 conv to 6 channels, ReLU, a 1x1 conv
    to RGB. nano's texture is made at 1/2 resolution and laid onto the pixels by a linear x2 head, so its finest
    strokes come out steeper on even than on odd pixels (a 2-pixel grain); the ReLU at full resolution can place a
    stroke's edge on any pixel (with `--grain-weight` asking for it). The first conv folds into a half-res phase
    conv + PixelShuffle like nano's head. Speed (onnxruntime, 1 thread, 480x640, CPU clock, one gate run): shipped
    nano_fine styles 32.8-34.0 fps fp32 / 31.5-35.1 int8 vs random-weight nano 46.8 / 38.7, so ~1.4x nano's time (a
    probe under load had said 1.02x); a 3x3 conv to RGB at full resolution instead of the 1x1 cost 2.3x.
    """
    return dataclasses.replace(nano(), head_hidden=6, last_kernel=1)


@ARCHS.register()
def nano_lite_fine() -> ArchConfig:
    """nano_lite (instance norm at the ends, batch norm folded in the trunk) with nano_fine's full-resolution head.

    Five of the seven shipped styles (all but great_wave, on nano_deep_lite, and starry_night) run on it (six in
    sessions 13-19). Each was moved from its nano_fine net: 200-300 steps with its own recipe (lr 1e-3; the trunk learns batch statistics), then
    100-300 with `--freeze-batch-stats` (lr 3e-4), which trains the function that ships (the batch norms on their
    running statistics, as the export folds them). Without the second phase the_scream scored 0.103 on the 13 unseen
    photos (nano_fine: 0.078); with it, 0.080. onnxruntime int8 runs 1.48-1.53x its fp32 (nano_fine: 1.27-1.42x).
    """
    return dataclasses.replace(nano_lite(), head_hidden=6, last_kernel=1)


@ARCHS.register()
def nano_lite_reach() -> ArchConfig:
    """nano_lite_fine with its three residual blocks' 3x3 convs dilated 1, 2, 2 (the undilated first block leaves no
    cell unseen): the same weights and MACs, a receptive field of 66 px instead of 50, for strokes larger than the
    nano trunk can draw. Initialise it from a nano_lite_fine net. Dilations 1, 2, 3 (74 px; session 17's probes)
    left LiteRT's int8 graph not fully on XNNPACK."""
    return dataclasses.replace(nano_lite_fine(), dilations=(1, 2, 2))


@ARCHS.register()
def nano_deep() -> ArchConfig:
    """nano_fine, wider (16-32) and deeper (5 residual blocks): the point between nano_fine (0.62 GMAC) and caffe2go
    (2.8 GMAC) on the quality/speed Pareto, 0.90 GMAC at 480x640, ~32 k params."""
    return dataclasses.replace(nano_fine(), widths=(16, 32), res_blocks=5)


@ARCHS.register()
def nano_deep_lite() -> ArchConfig:
    """nano_deep with nano_lite's norms: instance norm at the ends, batch norm (folded at export) in the trunk;
    great_wave's arch since session 13 (moved from nano_deep like the nano_lite_fine styles: strength 0.053 -> 0.060
    on the 13 unseen photos, TFLite int8 parity 30.5 -> 34.0 dB), and starry_night's in sessions 20-23 (trained on it
    from scratch: strength 0.063 -> 0.040, the painting's deep blue and yellow star dabs; docs/look.md; since
    session 24 on nano_deep_lite_edge)."""
    return dataclasses.replace(nano_deep(), trunk_norm="batch")


@ARCHS.register()
def nano_deep_lite_edge() -> ArchConfig:
    """nano_deep_lite with an 8-px context ring of replicated edge pixels instead of 4 reflected ones: the same
    weights (initialise it from a nano_deep_lite net) and 5% more pixels at 480x640. A reflection mirrors a line
    along the frame (a scan line, a letterbox edge) into a ridge centred on the border, and a style whose strokes
    follow lines (starry_night trained with `--turn-weight`) painted a bright stroke along it: worst edge stripe of
    the video frames / training photos 0.086 / 0.083 reflected 4 px, 0.039 / 0.046 replicated 8 px, the same net
    untrained on it (docs/look.md, session 24)."""
    return dataclasses.replace(nano_deep_lite(), context_pad=8, context_mode="replicate")


@ARCHS.register()
def nano_deep_reach_edge() -> ArchConfig:
    """nano_deep_lite_edge with its residual blocks' 3x3 convs dilated 1, 2, 2, 2, 2: nano_eighth_edge's reach (each
    block's two convs span 16 px of the picture either way) at 1/4 resolution, so the trunk's cells are 4 px, not 8,
    for 0.95 GMAC at 480x640 (nano_eighth_edge: 1.21). Train it from scratch: the dilations change what each block
    computes. frost's probe in sessions 29-30 (docs/look.md: crystal clusters without the square cells the
    1/8 trunk left on flat skin, but faces mottled; not shipped)."""
    return dataclasses.replace(nano_deep_lite_edge(), dilations=(1, 2, 2, 2, 2))


@ARCHS.register()
def nano_eighth_edge() -> ArchConfig:
    """nano_deep_lite_edge with one more stride-2 stage (16-32-64): its 5 residual blocks run at 1/8 resolution, so
    the trunk sees twice as far, with 4x the parameters (134 k) for 1.21 GMAC at 480x640. starry_night's arch since
    session 27: trained on it from scratch (4000 steps, then 900 with frozen batch statistics, the last 200 with the
    tone term) it paints larger, long curved strokes that follow the photo (strokes turned 0.60 -> 0.20), the
    painting's deep blue, big yellow dabs (docs/look.md, sessions 26-29). Trained on frost it lays white crystal
    clusters over the picture but hides faces under them (session 28, not shipped)."""
    return dataclasses.replace(nano_deep_lite_edge(), widths=(16, 32, 64), down_stages=3)


def arch_config(name: str, **overrides) -> ArchConfig:
    """The preset's config with knob overrides (e.g. padding='zero')."""
    return dataclasses.replace(ARCHS.get(name)(), **overrides)


@ARCHS.register()
def tiny() -> ArchConfig:
    """A minimal net (4-8 channels) for smoke tests and pipeline checks; too small to stylise well."""
    return ArchConfig(widths=(4, 8), down_stages=2, res_blocks=1, block="bottleneck", first_kernel=4,
                      down_kernel=4, last_kernel=3, upsample="conv_bilinear", head="shuffle")
