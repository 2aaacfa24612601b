"""The TFLite exporter's NHWC-native twin of a TransformerNet, and the graph checks that prove it stayed NHWC.

litert-torch's layout pass runs a 4-D op in NHWC when it knows how to (convs, resizes, mean/var over H and W, slices,
concats, elementwise ops) and brackets every other op with TRANSPOSEs. Three layers of the net fall outside it:

- `nn.InstanceNorm2d` decomposes through a (1, N*C, H*W) view: 2 full-resolution TRANSPOSEs per norm (28 in nano_fine);
- reflect / replicate pads lower to MIRROR_PAD, which XNNPACK does not take, so LiteRT runs the graph in pieces
  ("Fully accelerated: False");
- `nn.PixelShuffle` decomposes into 3 reshapes + 3 transposes at full resolution.

`nhwc_twin` returns a copy of the net that computes the same function with layers the pass keeps in NHWC: instance
norm as mean / variance over H, W; a pad of p pixels as p one-pixel slices concatenated on each side (exact for
reflect and replicate, and SLICE / CONCATENATION are XNNPACK ops); PixelShuffle as a depth-to-space whose conv writes
its channels in TFLite's DEPTH_TO_SPACE order, which `fuse_depth_to_space` turns into that one op after conversion.

Two more exact rewrites move work off the full and half resolutions, where int8 gains nothing on 3-12 channels (the
head took a third of the net's time, in fp32 and int8 alike): the up stage's norm after bilinear x2 runs before it, on
a quarter of the pixels (`NormBeforeBilinear`), and the half-resolution head ends with DEPTH_TO_SPACE, reading the
features already cropped to the output (`PhaseHead`). At 480x640 under LiteRT, 1 thread, int8 went from ~1.1x to
1.32-1.45x its fp32 on the seven shipped styles (benchmarks/results/tflite_speed_shipped.md, tflite_stages.md).
"""

from __future__ import annotations

import collections
import copy
import operator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from toolkit.models.layers import OutputActivation


class InstanceNormStats(nn.Module):
    """nn.InstanceNorm2d (no running stats) written as mean and variance over H, W, which the layout pass keeps in
    NHWC. Two-pass variance, as torch computes it (E[x^2] - E[x]^2 loses digits when the mean is large)."""

    def __init__(self, norm: nn.InstanceNorm2d):
        super().__init__()
        self.eps = float(norm.eps)
        c = norm.num_features
        weight = norm.weight.detach() if norm.affine else torch.ones(c)
        bias = norm.bias.detach() if norm.affine else torch.zeros(c)
        self.register_buffer("weight", weight.reshape(1, c, 1, 1).clone())
        self.register_buffer("bias", bias.reshape(1, c, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = _spatial_mean(x)
        centred = x - mean
        var = _spatial_mean(centred * centred)
        return centred * (torch.rsqrt(var + self.eps) * self.weight) + self.bias


class NormBeforeBilinear(nn.Module):
    """InstanceNorm2d(bilinear x2 (x)) computed on x, before the upsampling: the norm's per-channel affine map
    commutes with bilinear interpolation (its weights sum to 1), and the x2 map's statistics follow from x's, so the
    up stage's norm runs at a quarter of the pixels. Its weights and epsilon are `stats`' (never called itself).

    Exact for scale 2 without corner alignment (clamped at the edge): every row and column of x weighs 2 in the x2 map,
    so its mean is x's mean; the sum of squares of the x2 map of a centred map c is, per axis, 2 sum(c^2) - 3/8
    sum(diff(c)^2), which over both axes gives the variance below."""

    def __init__(self, norm: nn.InstanceNorm2d):
        super().__init__()
        self.stats = InstanceNormStats(norm)
        c = norm.num_features
        # differences between neighbours as depthwise convs (slices of the centred map made the layout pass
        # transpose it to NCHW)
        self.register_buffer("down", torch.tensor([-1.0, 1.0]).view(1, 1, 2, 1).repeat(c, 1, 1, 1))
        self.register_buffer("right", torch.tensor([-1.0, 1.0]).view(1, 1, 1, 2).repeat(c, 1, 1, 1))
        self.register_buffer("diagonal", torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).view(1, 1, 2, 2).repeat(c, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        mean = _spatial_mean(x)
        c = x - mean
        groups = c.shape[1]
        dh = F.conv2d(c, self.down, groups=groups)
        dw = F.conv2d(c, self.right, groups=groups)
        dhw = F.conv2d(c, self.diagonal, groups=groups)
        var = (_spatial_mean(c * c) - 0.1875 * (w - 1) / w * _spatial_mean(dw * dw)
               - 0.1875 * (h - 1) / h * _spatial_mean(dh * dh)
               + 0.03515625 * (h - 1) * (w - 1) / (h * w) * _spatial_mean(dhw * dhw))
        scale = torch.rsqrt(var + self.stats.eps) * self.stats.weight
        return x * scale + (self.stats.bias - mean * scale)


NORMS = (InstanceNormStats, NormBeforeBilinear)  # what int8 keeps float (see float_norm_quantizer)


def _is_bilinear_x2(module: nn.Module) -> bool:
    return (isinstance(module, nn.Upsample) and module.mode == "bilinear" and not module.align_corners
            and module.size is None and module.scale_factor in (2, 2.0, (2, 2), (2.0, 2.0)))


def _spatial_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over W, then over H: XNNPACK sums a reduction in one running float32 sum, which over a whole 240x320
    plane drifted 1e-3 from torch on a flat channel; row means first keep each sum a few hundred terms long."""
    return x.mean(dim=3, keepdim=True).mean(dim=2, keepdim=True)


class EdgePad(nn.Module):
    """Reflect or replicate padding as one-pixel slices concatenated around the tensor (SLICE + CONCATENATION,
    which XNNPACK runs, where MIRROR_PAD falls back to the interpreter).

    `then`, a second padding applied after the first (the stem conv's own, after the context ring), joins it in the
    same concatenation: padded twice, every outer row is still a row of the input, so it is one gather per axis.
    It pads as `then_mode` (default: `mode`)."""

    def __init__(self, padding: tuple[int, int, int, int], mode: str, then: tuple[int, int, int, int] = (0, 0, 0, 0),
                 then_mode: str | None = None):
        super().__init__()
        modes = (mode, then_mode or mode)
        if any(m not in ("reflect", "replicate") for m in modes):
            raise ValueError(f"EdgePad modes must be reflect or replicate, got {modes}")
        # (left, right, top, bottom) as nn.ReflectionPad2d, and numpy's name of the mode, for each padding in turn
        self.paddings = tuple((tuple(int(p) for p in pads), "reflect" if m == "reflect" else "edge")
                              for pads, m in zip((padding, then), modes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for dim, axis in ((2, slice(2, 4)), (3, slice(0, 2))):
            rows, before = np.arange(x.shape[dim]), 0
            for pads, mode in self.paddings:
                rows = np.pad(rows, pads[axis], mode=mode)
                before += pads[axis][0]
            x = _gather_edges(x, dim, rows[:before], rows[before + x.shape[dim]:])
        return x


def _gather_edges(x: torch.Tensor, dim: int, rows_before: np.ndarray, rows_after: np.ndarray) -> torch.Tensor:
    """x with its rows `rows_before` before it and `rows_after` after it along `dim` (indices into x)."""
    head = [x.narrow(dim, int(i), 1) for i in rows_before]
    tail = [x.narrow(dim, int(i), 1) for i in rows_after]
    if not head and not tail:
        return x
    if len(head) + len(tail) < CONCAT_INPUTS:
        return torch.cat(head + [x] + tail, dim=dim)
    return torch.cat([b for b in (_joined(head, dim), x, _joined(tail, dim)) if b is not None], dim=dim)


# XNNPACK's CONCATENATION takes up to 5 inputs (a 4-pixel context ring plus the stride's 3 made one of 9, which
# LiteRT ran outside it: "Fully accelerated: False"), and the converter flattens a concat of concats back into one.
CONCAT_INPUTS = 5


def _joined(rows: list, dim: int) -> torch.Tensor | None:
    """The rows as one tensor, concatenated in a tree of blocks of up to 4, each block behind max(b, b) (an exact
    MAXIMUM on a few rows) so that the converter keeps the blocks apart: any number of rows (an 8-pixel ring plus
    the stem's and the stride's pads is 12 on a side) leaves no CONCATENATION of more than 4 inputs."""
    while len(rows) > 1:
        joined = []
        for i in range(0, len(rows), 4):
            block = rows[i:i + 4]
            joined.append(torch.maximum(b := torch.cat(block, dim=dim), b) if len(block) > 1 else block[0])
        rows = joined
    return rows[0] if rows else None


class DepthToSpace(nn.Module):
    """nn.PixelShuffle(r) for an input whose channels come in TFLite's DEPTH_TO_SPACE order ((i * r + j) * C + c
    instead of PixelShuffle's c * r * r + i * r + j), written on the NHWC tensor: a rank-6 reshape, transpose and
    reshape that `fuse_depth_to_space` replaces by DEPTH_TO_SPACE after conversion."""

    def __init__(self, block: int):
        super().__init__()
        self.block = int(block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        r = self.block
        y = x.permute(0, 2, 3, 1).reshape(n, h, w, r, r, c // (r * r))
        y = y.permute(0, 1, 3, 2, 4, 5).reshape(n, h * r, w * r, c // (r * r))
        return y.permute(0, 3, 1, 2)


class PhaseHead(nn.Module):
    """A half-resolution head (head="shuffle": a kxk conv to 4 phases x C [-> PixelShuffle -> ReLU -> 1x1 conv to
    RGB]) and the output activation, rewritten so that only DEPTH_TO_SPACE runs at full resolution.

    - ReLU and the activation are elementwise, so they commute with the shuffle; the 1x1 conv from C hidden channels
      to RGB becomes a 1x1 conv from 4 x C to 4 x 3 channels at half resolution that maps each phase on its own.
      At full resolution a 6 -> 3 channel conv, a sigmoid and the shuffle's 6 channels cost a third of the net.
      (toolkit/export/onnx_graph.phase_head does the same to the ONNX graph; litert-torch converts from torch, so
      here it is a module.)
    - The kxk conv reads the features cropped to the output's half-resolution footprint plus its k // 2 margin and
      pads nothing: the margin's rows lie inside the context ring, so it computes what the padded conv computed there,
      and no full-resolution crop is left to do (`AlignedInput`).
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        head = net.head
        first = _first_conv(head)
        self.margin = first.kernel_size[0] // 2
        self.conv = nn.Conv2d(first.in_channels, first.out_channels, first.kernel_size, bias=first.bias is not None)
        self.conv.load_state_dict(first.state_dict())
        self.hidden = len(head) == 4  # ConvLayer, PixelShuffle, ReLU, ConvLayer(1x1)
        if self.hidden:
            rgb = head[3][-1]
            c, r = rgb.in_channels, rgb.out_channels
            self.rgb = nn.Conv2d(4 * c, 4 * r, 1)
            weight = torch.zeros(4 * r, 4 * c)
            for q in range(4):  # PixelShuffle order: channel k * 4 + q is channel k at phase q
                weight[q::4, q::4] = rgb.weight.detach()[:, :, 0, 0]
            with torch.no_grad():
                self.rgb.weight.copy_(weight[:, :, None, None])
                self.rgb.bias.copy_(rgb.bias.detach().repeat_interleave(4))
        self.activation = net.activation
        self.shuffle = nn.PixelShuffle(2)

    @staticmethod
    def fits(net: nn.Module) -> bool:
        """A head="shuffle" net whose context ring holds the margin at half resolution."""
        cfg, head = net.config, net.head
        if cfg.head != "shuffle" or not isinstance(head, nn.Sequential) or not isinstance(head[1], nn.PixelShuffle):
            return False
        if len(head) == 4 and not (isinstance(head[3][-1], nn.Conv2d) and head[3][-1].kernel_size == (1, 1)):
            return False
        k = _first_conv(head).kernel_size[0]
        return k % 2 == 1 and cfg.context_pad % 2 == 0 and cfg.context_pad // 2 >= k // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.hidden:
            y = self.rgb(torch.relu(y))
        return self.shuffle(self.activation(y))


def _first_conv(head: nn.Sequential) -> nn.Conv2d:
    """The conv of a head's first layer (a ConvLayer: an optional pad, then the conv)."""
    return next(m for m in head[0].modules() if isinstance(m, nn.Conv2d))


class AlignedInput(nn.Module):
    """The pads and crop TransformerNet.forward wraps around the net (`input_pads`: the context ring and the bottom /
    right up to the stride), with EdgePad so the graph stays XNNPACK's; with a `PhaseHead`, the crop happens at half
    resolution, before the head."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.head = PhaseHead(net) if PhaseHead.fits(net) else None
        self.stem_pad = _take_stem_pad(net)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        left, right, top, bottom = pads = self.net.input_pads(h, w)
        if not any(pads + self.stem_pad):
            return self.net._forward(x)
        x = EdgePad(pads, self.net.config.context_mode, then=self.stem_pad, then_mode="reflect")(x)
        if self.head is None:
            return self.net._forward(x)[..., top:top + h, left:left + w]
        m = self.head.margin
        y = self.net.features(x)[..., top // 2 - m:(top + h + 1) // 2 + m, left // 2 - m:(left + w + 1) // 2 + m]
        y = self.head(y)
        return y if y.shape[-2:] == (h, w) else y[..., :h, :w]


def _take_stem_pad(net: nn.Module) -> tuple[int, int, int, int]:
    """The stem conv's reflect pad, taken out of the net (left, right, top, bottom) for `AlignedInput` to apply in the
    same slices and concatenation as the context ring: two full-resolution copies of the image become one (frost
    480x640, side by side: fp32 1.05x faster, benchmarks/results/tflite_speed.md). Zeros when the stem pads otherwise
    or not at all."""
    layer = net.stem[0] if isinstance(net.stem, nn.Sequential) else None
    pad = layer[0] if isinstance(layer, nn.Sequential) and len(layer) else None
    if not isinstance(pad, nn.ReflectionPad2d):
        return (0, 0, 0, 0)
    layer[0] = nn.Identity()
    return tuple(int(p) for p in pad.padding)


def nhwc_twin(net: nn.Module) -> nn.Module:
    """A copy of `net` (a TransformerNet, usually its deploy form; eval mode) that computes the same function and
    that litert-torch lowers to an NHWC graph with no layout transposes and only XNNPACK ops."""
    twin = AlignedInput(copy.deepcopy(net).eval())
    _rewrite(twin)
    return twin.eval()


def _rewrite(module: nn.Module) -> None:
    children = list(module.named_children())
    for k, (name, child) in enumerate(children):
        after = children[k + 1][1] if k + 1 < len(children) else None
        if _is_bilinear_x2(child) and isinstance(after, nn.InstanceNorm2d) and not after.track_running_stats:
            setattr(module, name, NormBeforeBilinear(after))
            setattr(module, children[k + 1][0], child)
            children[k + 1] = (children[k + 1][0], child)
        elif isinstance(child, nn.InstanceNorm2d) and not child.track_running_stats:
            setattr(module, name, InstanceNormStats(child))
        elif isinstance(child, nn.ReflectionPad2d):
            setattr(module, name, EdgePad(child.padding, "reflect"))
        elif isinstance(child, nn.ReplicationPad2d):
            setattr(module, name, EdgePad(child.padding, "replicate"))
        elif isinstance(child, nn.PixelShuffle) and _to_depth_to_space_order(_writer(children[:k]),
                                                                              child.upscale_factor):
            setattr(module, name, DepthToSpace(child.upscale_factor))
        else:
            _rewrite(child)


def _writer(previous: list) -> nn.Module | None:
    """The sibling that writes a PixelShuffle's channels: the one before it, past elementwise activations."""
    for _, module in reversed(previous):
        if not isinstance(module, (nn.ReLU, OutputActivation)):
            return module
    return None


@torch.no_grad()
def _to_depth_to_space_order(previous: nn.Module | None, r: int) -> bool:
    """Reorder the output channels of the conv that feeds a PixelShuffle(r) into DEPTH_TO_SPACE's order."""
    if previous is None:
        return False
    convs = [m for m in ([previous] if isinstance(previous, nn.Conv2d) else previous.modules())
             if isinstance(m, nn.Conv2d)]
    if not convs or convs[-1].out_channels % (r * r):
        return False
    conv = convs[-1]
    order = torch.arange(conv.out_channels).reshape(-1, r * r).t().reshape(-1)  # DCR slot q*C + c <- c*r*r + q
    conv.weight.copy_(conv.weight[order].clone())
    if conv.bias is not None:
        conv.bias.copy_(conv.bias[order].clone())
    return True


def float_norm_quantizer(config):
    """litert-torch's PT2E quantizer with `config` everywhere but in the places that stay float:
    - inside the twin's instance norms (as nn.InstanceNorm2d did, being no op PT2E annotates): int8 mean, centring
      and squaring crushed the variance of quiet channels (starry_night 17 dB at 480x640);
    - the adds that read an instance norm's output (see `_annotate_add`; the other adds are int8);
    - the stem convs, which read the image itself (what onnxruntime int8 does, see toolkit/export/onnx.py): 3 input
      channels gain nothing from int8, and their per-tensor int8 step is magnified by the norm that follows.
      starry_night 480x640, worst of 8 photos vs the trained net: 29.9 -> 33.2 dB; unseen film frames 28.4 -> 34.1.
      So do the image's pads in front of them (`_image_side`).
    The convs around a norm still read and write int8."""
    from litert_torch.quantize import pt2e_quantizer

    class FloatNormQuantizer(pt2e_quantizer.PT2EQuantizer):
        def annotate(self, model):
            model = super().annotate(model)
            image_side = _image_side(model.graph)
            for node in model.graph.nodes:
                if node in image_side or _inside(node, NORMS):
                    node.meta.pop("quantization_annotation", None)
                elif _is_tensor_add(node) and not any(_inside(a, NORMS) for a in node.all_input_nodes):
                    _annotate_add(node, config)
                elif node.op == "call_function" and node.target in _PASSTHROUGH and not _annotated(node):
                    _annotate_passthrough(node, config)
            return model

    return FloatNormQuantizer().set_global(config)


def _is_tensor_add(node) -> bool:
    """An add of two activations (a residual or skip connection)."""
    return (node.op == "call_function" and node.target in (torch.ops.aten.add.Tensor, operator.add)
            and len(node.all_input_nodes) == 2)


def _annotate_add(node, config) -> None:
    """int8 in, int8 out, as the PT2E quantizer's own "add" annotator would: it finds adds by the source function
    that torch.export no longer records, so every add stayed float, between a DEQUANTIZE and a QUANTIZE. Adds that
    read a norm's float output stay float: rounding it to int8 before the add cost 0.3-0.4 dB (great_wave,
    starry_night at 480x640) for no speed, as the sum is quantised for the next conv anyway."""
    from litert_torch.quantize.pt2e_quantizer_utils import get_input_act_qspec, get_output_act_qspec
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    node.meta["quantization_annotation"] = QuantizationAnnotation(
        input_qspec_map={arg: get_input_act_qspec(config) for arg in node.all_input_nodes},
        output_qspec=get_output_act_qspec(config), _annotated=True)


# ops that move or select int8 values without new quantisation parameters; the PT2E quantizer finds the ones it knows
# by the source function torch.export no longer records (see `_annotate_add`), so they were left unannotated and the
# converter requantised after them (5 QUANTIZE passes in frost), or ran them in float. Not the bilinear resize: int8
# with its input's scale, LiteRT stopped running the graph fully on XNNPACK, so the up stage's resize and ReLU after
# `NormBeforeBilinear` stay float.
_PASSTHROUGH = {torch.ops.aten.slice.Tensor, torch.ops.aten.cat.default, torch.ops.aten.relu.default,
                torch.ops.aten.maximum.default}


def _annotated(node) -> bool:
    annotation = node.meta.get("quantization_annotation")
    return annotation is not None and annotation._annotated


def _annotate_passthrough(node, config) -> None:
    """The first input int8 as the config says, the other inputs and the output sharing its parameters: a pad's
    slices and concat, a crop or a ReLU then keep their input's scale (no QUANTIZE between them)."""
    from litert_torch.quantize.pt2e_quantizer_utils import get_input_act_qspec
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec

    first, *rest = node.all_input_nodes
    shared = SharedQuantizationSpec((first, node))
    node.meta["quantization_annotation"] = QuantizationAnnotation(
        input_qspec_map={first: get_input_act_qspec(config), **{a: shared for a in rest}},
        output_qspec=shared, _annotated=True)


def _is_conv(node) -> bool:
    return node.op == "call_function" and "conv" in str(node.target)


def _image_side(graph) -> set:
    """The nodes no conv feeds: the image, its pads and the stem convs that read it (the graph's nodes are in
    topological order)."""
    after_conv: set = set()
    image_side = set()
    for node in graph.nodes:
        if any(arg in after_conv for arg in node.all_input_nodes):
            after_conv.add(node)
            continue
        image_side.add(node)
        if _is_conv(node):
            after_conv.add(node)
    return image_side


def _inside(node, module_types: tuple[type, ...]) -> bool:
    for entry in (node.meta.get("nn_module_stack") or {}).values():
        kind = entry[1] if isinstance(entry, tuple) else entry
        for module_type in module_types:
            if kind is module_type or (isinstance(kind, str) and kind.endswith(f".{module_type.__qualname__}")):
                return True
    return False


# ---- the converted graph -------------------------------------------------------------------------------------------

def _schema():
    from toolkit.errors import require

    return require("ai_edge_litert.schema_py_generated", "tflite")


def _op_names() -> dict[int, str]:
    schema = _schema()
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def _code(opcode) -> int:
    return max(opcode.builtinCode, opcode.deprecatedBuiltinCode)


def op_counts(flatbuffer: bytes) -> dict[str, int]:
    """{"CONV_2D": 14, ...} over the main subgraph, most frequent first."""
    schema, names = _schema(), _op_names()
    model = schema.Model.GetRootAsModel(flatbuffer, 0)
    graph = model.Subgraphs(0)
    counts: collections.Counter = collections.Counter()
    for i in range(graph.OperatorsLength()):
        opcode = model.OperatorCodes(graph.Operators(i).OpcodeIndex())
        code = max(opcode.BuiltinCode(), opcode.DeprecatedBuiltinCode())
        counts[names.get(code, str(code))] += 1
    return dict(counts.most_common())


def fuse_depth_to_space(flatbuffer: bytes) -> bytes:
    """Replace each RESHAPE (1,H,W,r,r,C) -> TRANSPOSE (0,1,3,2,4,5) -> RESHAPE (1,H*r,W*r,C) chain (what
    DepthToSpace lowers to) by one DEPTH_TO_SPACE(r): the same element order by definition, one pass instead of three.
    The quantisation of the chain's ends is kept (int8 reshapes and transposes keep their input's scale)."""
    import flatbuffers

    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    graph = model.subgraphs[0]
    ops, tensors = graph.operators, graph.tensors
    names = _op_names()

    def name(op) -> str:
        return names.get(_code(model.operatorCodes[op.opcodeIndex]), "")

    consumers: dict[int, list[int]] = collections.defaultdict(list)
    for i, op in enumerate(ops):
        for t in op.inputs:
            consumers[int(t)].append(i)

    def only_consumer(tensor: int, kind: str):
        users = consumers.get(tensor, [])
        return users[0] if len(users) == 1 and name(ops[users[0]]) == kind else None

    def perm_of(op) -> list[int] | None:
        buf = model.buffers[tensors[op.inputs[1]].buffer]
        if buf.data is None:
            return None
        dtype = np.int64 if tensors[op.inputs[1]].type == schema.TensorType.INT64 else np.int32
        return np.frombuffer(bytes(bytearray(buf.data)), dtype=dtype).tolist()

    fused: list[tuple[int, int, int, int]] = []  # (first op, last op, block, dtype)
    for i, op in enumerate(ops):
        if name(op) != "RESHAPE":
            continue
        mid = list(tensors[op.outputs[0]].shape)
        if len(mid) != 6 or mid[3] != mid[4] or list(tensors[op.inputs[0]].shape) != mid[:3] + [mid[3] * mid[4] * mid[5]]:
            continue
        t = only_consumer(int(op.outputs[0]), "TRANSPOSE")
        if t is None or perm_of(ops[t]) != [0, 1, 3, 2, 4, 5]:
            continue
        j = only_consumer(int(ops[t].outputs[0]), "RESHAPE")
        if j is None:
            continue
        n, h, w, r, _, c = mid
        if list(tensors[ops[j].outputs[0]].shape) != [n, h * r, w * r, c]:
            continue
        fused.append((i, t, j, r))
    if not fused:
        return flatbuffer

    opcode_index = _opcode_index(model, schema, schema.BuiltinOperator.DEPTH_TO_SPACE, version=1)
    drop = set()
    for first, t, last, r in fused:
        d2s = schema.OperatorT()
        d2s.opcodeIndex = opcode_index
        d2s.inputs = [ops[first].inputs[0]]
        d2s.outputs = [ops[last].outputs[0]]
        d2s.builtinOptionsType = schema.BuiltinOptions.DepthToSpaceOptions
        d2s.builtinOptions = schema.DepthToSpaceOptionsT()
        d2s.builtinOptions.blockSize = r
        if tensors[d2s.inputs[0]].type in (schema.TensorType.INT8, schema.TensorType.UINT8):
            model.operatorCodes[opcode_index].version = max(model.operatorCodes[opcode_index].version, 2)
        ops[last] = d2s
        drop.update((first, t))
    graph.operators = [op for k, op in enumerate(ops) if k not in drop]
    _drop_unused_tensors(model)
    builder = flatbuffers.Builder(len(flatbuffer) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _opcode_index(model, schema, code, version: int) -> int:
    """The index of `code` in the model's operator codes, added (at `version`) when the model has none."""
    for k, oc in enumerate(model.operatorCodes):
        if _code(oc) == code:
            return k
    opcode = schema.OperatorCodeT()
    opcode.builtinCode = opcode.deprecatedBuiltinCode = code
    opcode.version = version
    model.operatorCodes.append(opcode)
    return len(model.operatorCodes) - 1


def float_outputs(flatbuffer: bytes) -> bytes:
    """Give every int8 / uint8 graph output a DEQUANTIZE to float32 (same name, same signature key): PT2E leaves the
    output quantised when its last op is, but the int8 contract is float32 in and out."""
    import flatbuffers

    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    graph = model.subgraphs[0]
    quantised = (schema.TensorType.INT8, schema.TensorType.UINT8)
    outputs = [int(t) for t in graph.outputs if graph.tensors[int(t)].type in quantised]
    if not outputs:
        return flatbuffer
    opcode_index = _opcode_index(model, schema, schema.BuiltinOperator.DEQUANTIZE, version=2)  # int8 -> float
    moved = {}
    for old in outputs:
        q = graph.tensors[old]
        f = schema.TensorT()
        f.name, f.shape, f.type = q.name, list(q.shape), schema.TensorType.FLOAT32
        f.shapeSignature = list(q.shapeSignature) if q.shapeSignature is not None else None
        empty = schema.BufferT()
        model.buffers.append(empty)
        f.buffer = len(model.buffers) - 1
        q.name = (q.name.decode() if isinstance(q.name, bytes) else str(q.name)) + "_int8"
        graph.tensors.append(f)
        new = len(graph.tensors) - 1
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = opcode_index, [old], [new]
        graph.operators.append(op)
        moved[old] = new
    graph.outputs = [moved.get(int(t), int(t)) for t in graph.outputs]
    for sig in model.signatureDefs or []:
        if sig.subgraphIndex == 0:
            for entry in sig.outputs or []:
                entry.tensorIndex = moved.get(int(entry.tensorIndex), int(entry.tensorIndex))
    builder = flatbuffers.Builder(len(flatbuffer) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _drop_unused_tensors(model) -> None:
    """Remove tensors no op, graph input/output or signature refers to (the fused chains' intermediates)."""
    graph = model.subgraphs[0]
    used = {int(t) for op in graph.operators for t in list(op.inputs) + list(op.outputs)
            + list(op.intermediates if op.intermediates is not None else []) if int(t) >= 0}
    used |= {int(t) for t in list(graph.inputs) + list(graph.outputs)}
    keep = sorted(used)
    new_index = {old: new for new, old in enumerate(keep)}

    def remap(indices):
        return [new_index[int(t)] if int(t) >= 0 else -1 for t in indices]

    for op in graph.operators:
        op.inputs, op.outputs = remap(op.inputs), remap(op.outputs)
        if op.intermediates is not None:
            op.intermediates = remap(op.intermediates)
    graph.inputs, graph.outputs = remap(graph.inputs), remap(graph.outputs)
    graph.tensors = [graph.tensors[k] for k in keep]
    for sig in model.signatureDefs or []:
        if sig.subgraphIndex == 0:
            for entry in list(sig.inputs or []) + list(sig.outputs or []):
                entry.tensorIndex = new_index[int(entry.tensorIndex)]


def fully_accelerated(path: str | Path) -> bool | None:
    """Whether LiteRT's CPU accelerator (XNNPACK) takes the whole graph, as `litert-benchmark` reports it; None when
    this ai-edge-litert has no CompiledModel API."""
    try:
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator
    except ImportError:
        return None
    model = CompiledModel.from_file(str(path), hardware_accel=HardwareAccelerator.CPU)
    return bool(model.is_fully_accelerated())
