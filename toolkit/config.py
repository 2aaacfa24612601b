"""Frozen dataclass configs. Unknown keys are errors; every output stores its resolved config beside it."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping, Tuple, Type, TypeVar

from toolkit.errors import UserError, did_you_mean

C = TypeVar("C")

BLOCKS = ("residual", "bottleneck", "dwsep")
PADDINGS = ("reflect", "zero", "replicate")
CONTEXT_MODES = ("reflect", "replicate")
NORMS = ("instance", "batch", "none")
UPSAMPLES = ("nearest", "bilinear", "transposed", "pixelshuffle", "conv_bilinear")
HEADS = ("conv", "shuffle", "bilinear")
OUTPUTS = ("sigmoid", "tanh", "clamp")


def from_dict(cls: Type[C], data: Mapping[str, Any]) -> C:
    """Build a config dataclass from JSON-like data (a checkpoint's or an artifact's, so possibly hostile): unknown
    keys raise with a suggestion, a value of the wrong type (or a non-finite number) raises naming the key; lists
    become tuples."""
    if not isinstance(data, Mapping):
        raise UserError(f"{cls.__name__} must be a JSON object, got a {type(data).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        if key not in names:
            raise UserError(f"unknown {cls.__name__} key '{key}'{did_you_mean(key, names)}")
        if not _has_type(value, hints[key]):
            raise UserError(f"{cls.__name__} {key} must be {_type_name(hints[key])}, got {value!r:.60}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**kwargs)


def arch_from_json(text: str, source) -> ArchConfig:
    """The ArchConfig an exported artifact records as JSON text; not JSON, not an object, a wrong type or an unknown
    key is a UserError naming `source`."""
    import json

    try:
        return from_dict(ArchConfig, json.loads(text))
    except (TypeError, ValueError, UserError) as exc:  # json's errors are ValueErrors
        raise UserError(f"{source} records a malformed arch config ({exc}); re-export it") from exc


def _has_type(value, hint) -> bool:
    """Whether a JSON value fits a config field's annotation (int, float, str, bool, X | None, Tuple[X, ...])."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_has_type(value, a) for a in args)
    if typing.get_origin(hint) is tuple:
        return isinstance(value, (list, tuple)) and all(_has_type(v, args[0]) for v in value)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    return True  # nested configs (TrainConfig.loss) are built by their own from_dict


def _type_name(hint) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        return "a list of " + {int: "whole numbers", float: "finite numbers", str: "strings"}.get(item, str(item))
    return {type(None): "null", bool: "true/false", int: "a whole number", float: "a finite number",
            str: "a string"}.get(hint, getattr(hint, "__name__", str(hint)))


def to_dict(cfg) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


@dataclass(frozen=True)
class ArchConfig:
    """Knobs of the one TransformerNet; they cover the Caffe2go compression levers."""

    widths: Tuple[int, ...] = (32, 64, 128)
    res_blocks: int = 5
    block: str = "residual"          # residual | bottleneck (FastChi 1x1 "inception") | dwsep
    bottleneck_k: int = 2            # channel reduction inside a bottleneck block
    down_stages: int = 2             # stride-2 stages: len(widths)-1, or len(widths) when the stem is strided
    first_kernel: int = 9
    last_kernel: int = 9
    down_kernel: int = 3             # 4 gives symmetric, evenly overlapping stride-2 windows
    padding: str = "reflect"
    norm: str = "instance"
    trunk_norm: str | None = None    # norm of the down stages and residual blocks (None: `norm`); instance at the
                                     # ends + batch in the trunk keeps per-image normalisation and folds the rest
    upsample: str = "nearest"
    head: str = "conv"               # conv at full res | shuffle: 1/2-res conv to 12 ch + PixelShuffle(2) |
                                     # bilinear: bilinear x2 of the 1/2-res features, then a full-res conv to RGB
    head_hidden: int = 0             # channels of a full-resolution layer + ReLU before the last conv to RGB
                                     # (0 = none): a pointwise nonlinearity draws detail finer than the x2 lattice
    head_padding: str | None = None  # padding of the full-resolution head convs (None: `padding`); "replicate"
                                     # makes the deploy-time fold of a bilinear head exact up to the frame's edge
    skip: bool = False               # add the stem's features into the up path at the same resolution (U-Net)
    context_pad: int = 0             # pixels of the image padded around it before the net and cropped after
                                     # (0..stride reflected, 0..2 x stride replicated): the net's own edge
                                     # handling falls outside the frame
    context_mode: str = "reflect"    # how that ring (and the pad of other sides up to the stride) is filled:
                                     # reflect mirrors a line along the frame into a ridge a stroke can follow;
                                     # replicate extends each edge pixel outward
    dilations: Tuple[int, ...] = ()  # dilation of each residual block's 3x3 conv (empty: all 1); the trunk's reach
                                     # grows by 2 * (d - 1) lowest-resolution cells per block at the same MACs
    output: str = "sigmoid"

    def __post_init__(self):
        def check(name, value, allowed):
            if value not in allowed:
                raise UserError(f"arch {name} must be one of {', '.join(map(str, allowed))}, got {value!r}")

        check("block", self.block, BLOCKS)
        check("padding", self.padding, PADDINGS)
        check("head_padding", self.head_padding, (None, *PADDINGS))
        check("norm", self.norm, NORMS)
        check("trunk_norm", self.trunk_norm, (None, *NORMS))
        check("upsample", self.upsample, UPSAMPLES)
        check("head", self.head, HEADS)
        check("output", self.output, OUTPUTS)
        check("first_kernel", self.first_kernel, (3, 4, 5, 7, 9))
        if self.first_kernel == 4 and self.down_stages != len(self.widths):
            raise UserError("arch first_kernel=4 needs a strided stem (down_stages == len(widths))")
        check("last_kernel", self.last_kernel, (1, 3, 5, 7, 9))
        check("down_kernel", self.down_kernel, (3, 4))
        check("down_stages", self.down_stages, (2, 3))
        if not self.widths or any(int(w) < 1 for w in self.widths):
            raise UserError(f"arch widths must be positive integers, got {self.widths}")
        if self.down_stages not in (len(self.widths) - 1, len(self.widths)):
            raise UserError(
                f"arch down_stages={self.down_stages} needs {self.down_stages} or {self.down_stages + 1} widths, "
                f"got {len(self.widths)}"
            )
        if self.head == "bilinear" and not self.strided_stem:
            raise UserError("arch head='bilinear' needs a strided stem (down_stages == len(widths))")
        if self.head_hidden and self.head not in ("bilinear", "shuffle"):
            raise UserError("arch head_hidden needs head='bilinear' or 'shuffle'")
        if self.head_hidden < 0:
            raise UserError(f"arch head_hidden must be >= 0, got {self.head_hidden}")
        check("context_mode", self.context_mode, CONTEXT_MODES)
        # a reflection must be narrower than the smallest input (2 x stride px); a replicated ring need not be, but
        # costs pixels: 16 px measured no better than 8 on starry_night (docs/look.md, session 24)
        widest = self.stride * (1 if self.context_mode == "reflect" else 2)
        if not 0 <= self.context_pad <= widest:
            raise UserError(f"arch context_pad must be 0..{widest} with context_mode {self.context_mode}, "
                            f"got {self.context_pad}")
        if self.res_blocks < 0 or self.bottleneck_k < 1:
            raise UserError("arch res_blocks must be >= 0 and bottleneck_k >= 1")
        if self.dilations and (len(self.dilations) != self.res_blocks or min(self.dilations) < 1):
            raise UserError(f"arch dilations needs one whole number >= 1 per residual block ({self.res_blocks}), "
                            f"got {list(self.dilations)}")
        # a dilated conv reflect-pads by its dilation, which needs more cells than that at the lowest resolution
        lowest = 2 + 2 * self.context_pad // self.stride  # cells there at the smallest input (2 * stride px)
        if self.dilations and max(self.dilations) >= lowest:
            raise UserError(f"arch dilations must stay below {lowest} (the lowest resolution's side on the smallest "
                            f"input), got {max(self.dilations)}")

    @property
    def stride(self) -> int:
        """Input sides must be multiples of this (the net pads and crops other sizes in `stylize`)."""
        return 2 ** self.down_stages

    @property
    def trunk(self) -> str:
        """The norm of the down stages and residual blocks."""
        return self.norm if self.trunk_norm is None else self.trunk_norm

    @property
    def strided_stem(self) -> bool:
        return self.down_stages == len(self.widths)


EDGE_FORMS = ("change", "drawn")  # what the edge term asks (toolkit/losses/edges.py)
TURN_FORMS = ("strokes", "pixels")  # what the turn term asks (toolkit/losses/turns.py)
CROP_ZOOM = 1.6  # training crops: the photo's short side resized to crop side x U(1, this) (toolkit/data/images.py)
LATTICE_PERIODS = (4, 8)  # the cells of the nano family's 1/4- and 1/8-resolution trunks (lattice measure and term)


@dataclass(frozen=True)
class LossConfig:
    loss_net: str = "vgg19"                      # vgg19 | vgg16 | random
    loss_weights: str | None = None              # explicit weights file; else the shared VGG19, else hub cache
    content_layers: Tuple[str, ...] = ("relu3_1",)
    style_layers: Tuple[str, ...] = ("relu1_1", "relu1_2", "relu2_1", "relu2_2", "relu3_1")
    style_layer_weights: Tuple[float, ...] = ()  # empty = 1 per layer
    style_balance: bool = False                  # weight each style tap by 1 / typical photos' Gram distance at it
                                                 # (computed once at train start, stored in style_layer_weights)
    style_scales: Tuple[float, ...] = (1.0,)     # also match Grams at these scales of output and style image
                                                 # (0.5 doubles the taps' receptive field on the picture)
    content_weight: float = 1.0
    style_weight: float = 1e4
    tv_weight: float = 0.5
    temporal_weight: float = 0.0
    shift_weight: float = 0.0                    # shift equivariance (toolkit/losses/shift.py): against grain
    turn_weight: float = 0.0                     # quarter-turn equivariance (toolkit/losses/turns.py): strokes
                                                 # that follow the photo's forms, not one screen direction
    turn_form: str = "strokes"                   # strokes: their directions turn | pixels: every pixel (TURN_FORMS)
    grain_weight: float = 0.0                    # even/odd phase balance of the output's gradients: against grain
    lattice_weight: float = 0.0                  # the same balance at the trunks' 4- and 8-px cells: against
                                                 # small squares repeating every cell
    edge_weight: float = 0.0                     # border ring vs the band inside it, as the photo's: against stripes
    edge_form: str = "change"                    # change: the photo's step | drawn: no step beyond it (EDGE_FORMS)
    tone_weight: float = 0.0                     # the photo's light/dark layout over 8-px cells: where large
                                                 # masses go (toolkit/losses/tone.py)
    patch_weight: float = 0.0                    # each 3x3 feature patch to its nearest style patch (MRF): shapes
    patch_layer: str = "relu3_1"                 # the tap the patch term matches at
    patch_scale: float = 1.0                     # ... on output and style image at this scale (0.25: 4x the reach)
    encoder_precision: str = "fp32"              # fp32 | bf16: the frozen VGG under bf16 autocast (losses stay fp32)

    def __post_init__(self):
        if not 0 < self.patch_scale <= 1:
            raise UserError(f"patch scale must be in (0, 1], got {self.patch_scale}")
        if self.edge_form not in EDGE_FORMS:
            raise UserError(f"edge form must be {' or '.join(EDGE_FORMS)}, got {self.edge_form!r}")
        if self.turn_form not in TURN_FORMS:
            raise UserError(f"turn form must be {' or '.join(TURN_FORMS)}, got {self.turn_form!r}")


@dataclass(frozen=True)
class TrainConfig:
    name: str = "style"
    style_image: str = ""
    content_dir: str = ""
    arch: str = "nano"
    steps: int = 600
    size: int = 256
    style_size: int = 512
    batch: int = 4
    lr: float = 1e-3
    seed: int = 0
    workers: int = 2
    sample_every: int = 100
    checkpoint_every: int = 50
    init: str | None = None                      # start from this checkpoint's weights (same arch): fine-tuning
    freeze_batch_stats: bool = False             # batch norms normalise by their running statistics, as exported
    frame_crops: float = 0.0                     # fraction of training crops taken at a corner of the photo, so
                                                 # the net learns the photo's own frame (see random_crop)
    edge_ramps: float = 0.0                      # fraction of crops given a scan line or ramp along one side
                                                 # (see edge_ramp)
    crop_zoom: float = CROP_ZOOM                 # crops see the photo's short side resized to size x U(1, this):
                                                 # larger shows closer views (see random_crop)
    loss: LossConfig = field(default_factory=LossConfig)

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> "TrainConfig":
        if not isinstance(data, Mapping):
            raise UserError(f"TrainConfig must be a JSON object, got a {type(data).__name__}")
        data = dict(data)
        loss = from_dict(LossConfig, data.pop("loss", {}))
        cfg = from_dict(TrainConfig, data)
        return dataclasses.replace(cfg, loss=loss)

    def to_dict(self) -> dict:
        d = to_dict(self)
        d["loss"] = to_dict(self.loss)
        return d
