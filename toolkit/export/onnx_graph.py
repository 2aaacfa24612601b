"""Exact rewrites of an exported ONNX graph, on the proto (numpy only; measured in benchmarks/results/int8_speed.md).

- `phase_head` (every precision): the PixelShuffle head ends DepthToSpace -> ReLU -> 1x1 conv -> output activation
  at full resolution. All of those act per pixel, so they move in front of the DepthToSpace: the 1x1 conv becomes a
  block-diagonal 1x1 conv over the phases at half resolution, and the DepthToSpace then moves 3 channels instead of
  6. The same sums on every pixel; onnxruntime fp32 1.27x, int8 1.3x faster on nano_fine at 480x640.
- `int8_cleanup` (after static QDQ quantisation): onnxruntime's QDQ fusions leave some 8-bit tensors dequantised
  for nothing. A reflect/edge Pad only copies values, so DQ -> Pad -> Q with one scale is the Pad on the 8-bit tensor
  (onnxruntime then feeds it straight to QLinearConv); Shape reads the 8-bit tensor as well as its dequantised copy;
  and a Q -> DQ round trip from a float Resize into a float InstanceNormalization only adds rounding. A quantized
  conv with fewer than 16 output channels misses onnxruntime's x86 8-bit conv kernel (MlasConvSym takes >= 16 output
  channels in multiples of 8; narrower ones fall back to im2col + GEMM, 1.5-6x slower per conv here): zero filters
  widen it to 16 and a Slice of the 8-bit output keeps the real channels -- the same values, bit for bit. And the
  up stage's float Resize, which onnxruntime runs in its blocked NCHWc layout (MLAS NchwcUpsample) only where a float
  Conv hands it that layout, gets a 1x1 identity conv in front (0.5 instead of 2.0 ms at 480x640 here).
- `depth_to_space_by_transposes` (every precision, last): onnxruntime's DepthToSpace is one generic 6-D shuffle
  (1.0-1.6 ms u8, 2.9 ms fp32 for the head's 12 x 244 x 324 -> 3 x 488 x 648 here). The same permutation as two
  transposes that each move one axis -- a phase column into the width, then a phase row past the height -- takes
  0.2-0.4 ms u8 and 0.6 ms fp32; on an 8-bit DQ -> DepthToSpace -> Q with one scale it moves the 8-bit tensor.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

_ELEMENTWISE = ("Relu", "Sigmoid", "Tanh", "Clip")  # per-value ops that commute with a permutation of the values
# onnxruntime's symmetric 8-bit conv kernels on x86 (MlasConvSymPackWSize): >= 16 output channels, a multiple of 8
# (AVX2 / AVX-VNNI; 4 on AVX-512). On ARM64 they serve only 3x3+ convs with >= 64 input channels, so the width
# does not matter there.
CONV_SYM_MIN_OUT, CONV_SYM_OUT_ALIGN = 16, 8


def phase_head(model: onnx.ModelProto) -> onnx.ModelProto:
    """Move each DepthToSpace(CRD) past the per-pixel ops after it (elementwise ops and one 1x1 conv), in place."""
    g = model.graph
    for d2s in [n for n in g.node if n.op_type == "DepthToSpace" and node_attribute(n, "mode", b"DCR") == b"CRD"]:
        moved_conv = False
        while True:
            users = _consumers(g).get(d2s.output[0], [])
            if len(users) != 1 or d2s.output[0] in {o.name for o in g.output}:
                break
            nxt = users[0]
            if nxt.op_type == "Conv" and not moved_conv and _is_plain_1x1(g, nxt):
                _spread_over_phases(g, nxt, node_attribute(d2s, "blocksize") ** 2)
                moved_conv = True
            elif not (nxt.op_type in _ELEMENTWISE and all(_is_constant(g, i) for i in nxt.input[1:] if i)):
                break
            d2s = _swap(g, d2s, nxt)
    _drop_unused_initializers(g)
    _forget_shapes(model)
    return model


def int8_cleanup(model: onnx.ModelProto) -> onnx.ModelProto:
    """Pads on 8-bit tensors, Shape before DequantizeLinear, no Q/DQ between a float Resize and a float norm, narrow
    quantized convs widened to onnxruntime's 8-bit conv kernel."""
    g = model.graph
    _pads_in_8bit(g)
    _widen_narrow_8bit_convs(model)
    producers = _producers(g)
    for node in g.node:
        src = producers.get(node.input[0]) if node.op_type == "Shape" else None
        if src is not None and src.op_type == "DequantizeLinear":
            node.input[0] = src.input[0]
    _float_resize_into_norm(g)
    _float_resize_in_blocked_layout(model)
    _drop_dead(g)
    _forget_shapes(model)
    return model


def depth_to_space_by_transposes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every DepthToSpace(CRD, b) on (N, C*b*b, H, W) as reshape (N, C*b, b, H*W) -> move the column phase last ->
    reshape (N, C, b, H, W*b) -> swap the row phase and H -> reshape (N, C, H*b, W*b); H from the input's shape, so
    dynamic sizes keep working. An 8-bit DQ -> DepthToSpace -> Q with one scale is done on the 8-bit tensor."""
    g = model.graph
    producers, consumers = _producers(g), _consumers(g)
    outputs = {o.name for o in g.output}
    for d2s in [n for n in g.node if n.op_type == "DepthToSpace" and node_attribute(n, "mode", b"DCR") == b"CRD"]:
        channels = _channels(model, d2s.input[0])
        if channels is None:
            continue
        src, dst = d2s.input[0], d2s.output[0]
        dq, users = producers.get(src), consumers.get(dst, [])
        if (dq is not None and dq.op_type == "DequantizeLinear" and len(users) == 1 and dst not in outputs
                and users[0].op_type == "QuantizeLinear" and _same_params(g, dq, users[0])):
            src, dst = dq.input[0], users[0].output[0]
            g.node.remove(users[0])
        b = node_attribute(d2s, "blocksize")
        c, tag = channels // (b * b), f"{d2s.name}_t"
        const = {f"{tag}_head": [0, c * b, b, -1], f"{tag}_rows": [0, c, b], f"{tag}_tail": [-1], f"{tag}_b": [b],
                 f"{tag}_keep": [0, 0]}
        g.initializer.extend(numpy_helper.from_array(np.array(v, np.int64), k) for k, v in const.items())
        make = onnx.helper.make_node
        nodes = [
            make("Shape", [src], [f"{tag}_h"], start=2, end=3),
            make("Mul", [f"{tag}_h", f"{tag}_b"], [f"{tag}_hb"]),
            make("Concat", [f"{tag}_rows", f"{tag}_h", f"{tag}_tail"], [f"{tag}_shape2"], axis=0),
            make("Concat", [f"{tag}_keep", f"{tag}_hb", f"{tag}_tail"], [f"{tag}_shape3"], axis=0),
            make("Reshape", [src, f"{tag}_head"], [f"{tag}_1"]),
            make("Transpose", [f"{tag}_1"], [f"{tag}_2"], perm=[0, 1, 3, 2]),   # (N, C*b, H*W, b): columns placed
            make("Reshape", [f"{tag}_2", f"{tag}_shape2"], [f"{tag}_3"]),
            make("Transpose", [f"{tag}_3"], [f"{tag}_4"], perm=[0, 1, 3, 2, 4]),  # (N, C, H, b, W*b): rows placed
            make("Reshape", [f"{tag}_4", f"{tag}_shape3"], [dst]),
        ]
        at = list(g.node).index(d2s)
        g.node.remove(d2s)
        for k, node in enumerate(nodes):
            node.name = f"{tag}_{node.op_type.lower()}_{k}"
            g.node.insert(at + k, node)
    _drop_dead(g)
    _forget_shapes(model)
    return model


def _channels(model, name: str):
    """The channel count (axis 1) recorded for a tensor, from the graph's shapes or onnx shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model)
    for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        if v.name == name:
            dims = v.type.tensor_type.shape.dim
            return dims[1].dim_value if len(dims) == 4 and dims[1].HasField("dim_value") else None
    return None


def _pads_in_8bit(g) -> None:
    producers, consumers = _producers(g), _consumers(g)
    for pad in [n for n in g.node if n.op_type == "Pad" and node_attribute(n, "mode", b"constant") in (b"reflect", b"edge")]:
        dq, users = producers.get(pad.input[0]), consumers.get(pad.output[0], [])
        if dq is None or dq.op_type != "DequantizeLinear" or len(users) != 1 or users[0].op_type != "QuantizeLinear":
            continue
        q = users[0]
        if not _same_params(g, dq, q):
            continue
        pad.input[0], pad.output[0] = dq.input[0], q.output[0]
        g.node.remove(q)


def _widen_narrow_8bit_convs(model) -> None:
    """DQ(w) -> Conv -> Q with C output channels, C under CONV_SYM_MIN_OUT or not a multiple of CONV_SYM_OUT_ALIGN:
    the weight, its scales and the bias get zero filters up to the kernel's width, and a Slice on the 8-bit output
    keeps channels 0..C for every reader of Q. The real channels keep their quantisation parameters."""
    g = model.graph
    inits, producers, consumers = {i.name: i for i in g.initializer}, _producers(g), _consumers(g)
    outputs = {o.name for o in g.output}
    for conv in [n for n in g.node if n.op_type == "Conv" and node_attribute(n, "group", 1) == 1]:
        wdq, users = producers.get(conv.input[1]), consumers.get(conv.output[0], [])
        if (wdq is None or wdq.op_type != "DequantizeLinear" or wdq.input[0] not in inits or len(users) != 1
                or users[0].op_type != "QuantizeLinear" or users[0].output[0] in outputs):
            continue
        channels = inits[wdq.input[0]].dims[0]
        wide = max(CONV_SYM_MIN_OUT, -(-channels // CONV_SYM_OUT_ALIGN) * CONV_SYM_OUT_ALIGN)
        bdq = producers.get(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
        if wide == channels or (bdq is not None and (bdq.op_type != "DequantizeLinear" or bdq.input[0] not in inits)):
            continue
        # Values and zero points padded with 0, per-channel scales with the last channel's (onnxruntime fuses a
        # conv only where every bias scale is the input's scale times the weight's).
        for dq in filter(None, (wdq, bdq)):
            for k, name in enumerate(dq.input):
                if name in inits and (k == 0 or inits[name].dims == [channels]):
                    dq.input[k] = _padded(g, inits[name], wide - channels, repeat_last=k == 1)
        q = users[0]
        kept = f"{q.output[0]}_first_{channels}"
        for reader in consumers.get(q.output[0], []):
            reader.input[:] = [kept if i == q.output[0] else i for i in reader.input]
        ints = [numpy_helper.from_array(np.array([v], np.int64), f"{kept}_{k}")
                for k, v in (("start", 0), ("end", channels), ("axis", 1))]
        g.initializer.extend(ints)
        g.node.insert(list(g.node).index(q) + 1, onnx.helper.make_node(
            "Slice", [q.output[0], *(i.name for i in ints)], [kept], name=f"{q.name}_first_{channels}"))
        _forget_shapes(model, changed=(conv.output[0], q.output[0]))
    _drop_unused_initializers(g)


def _padded(g, tensor, extra: int, repeat_last: bool) -> str:
    """A copy of `tensor` `extra` entries longer on its first axis (zeros, or its last entry); returns its name."""
    name = f"{tensor.name}_wide"
    if any(i.name == name for i in g.initializer):  # shared by two convs of the same width: padded once
        return name
    a = numpy_helper.to_array(tensor)
    g.initializer.append(numpy_helper.from_array(np.pad(a, [(0, extra)] + [(0, 0)] * (a.ndim - 1),
                                                        mode="edge" if repeat_last else "constant"), name))
    return name


def _float_resize_into_norm(g) -> None:
    producers, consumers = _producers(g), _consumers(g)
    for q in [n for n in g.node if n.op_type == "QuantizeLinear"]:
        src, dqs = producers.get(q.input[0]), consumers.get(q.output[0], [])
        if src is None or src.op_type != "Resize" or not dqs or any(d.op_type != "DequantizeLinear" for d in dqs):
            continue
        users = [u for d in dqs for u in consumers.get(d.output[0], [])]
        if not users or any(u.op_type != "InstanceNormalization" for u in users):
            continue
        for d in dqs:
            for u in consumers[d.output[0]]:
                u.input[:] = [q.input[0] if i == d.output[0] else i for i in u.input]


def _float_resize_in_blocked_layout(model) -> None:
    """DQ -> Resize becomes DQ -> 1x1 identity Conv -> Resize. onnxruntime moves a float Conv to its NCHWc layout when
    the conv's input channels are a multiple of its block (8 on AVX2, 16 on AVX-512) or fewer than one block, and the
    Resize after it follows; so the conv reads the 8-bit tensor from before a first-channels Slice (the widening's, 16
    channels) and picks the kept channels itself. Weights 1 and 0: the same values, bit for bit."""
    g = model.graph
    producers, consumers = _producers(g), _consumers(g)
    inits = {i.name: numpy_helper.to_array(i).tolist() for i in g.initializer if len(i.dims) <= 1}
    for resize in [n for n in g.node if n.op_type == "Resize"]:
        dq = producers.get(resize.input[0])
        if dq is None or dq.op_type != "DequantizeLinear" or len(consumers[dq.output[0]]) != 1:
            continue
        kept = _channels(model, resize.input[0])
        if not kept:
            continue
        cut = producers.get(dq.input[0])
        if (cut is not None and cut.op_type == "Slice" and len(consumers[dq.input[0]]) == 1
                and [inits.get(i) for i in cut.input[1:4]] == [[0], [kept], [1]]):
            dq.input[0] = cut.input[0]
            g.node.remove(cut)
            _forget_shapes(model, changed=(dq.output[0],))
        channels = _channels(model, dq.input[0])
        if not channels:
            continue
        name = f"{resize.name}_in_blocked_layout"
        pick = np.zeros((kept, channels, 1, 1), np.float32)
        pick[np.arange(kept), np.arange(kept)] = 1.0
        g.initializer.append(numpy_helper.from_array(pick, f"{name}_weight"))
        g.node.insert(list(g.node).index(resize), onnx.helper.make_node(
            "Conv", [resize.input[0], f"{name}_weight"], [name], name=name, kernel_shape=[1, 1]))
        resize.input[0] = name


def _spread_over_phases(g, conv, phases: int) -> None:
    """A 1x1 conv applied to each of `phases` interleaved (CRD) channel groups, as one block-diagonal 1x1 conv."""
    inits = {i.name: i for i in g.initializer}
    w = numpy_helper.to_array(inits[conv.input[1]])
    b = numpy_helper.to_array(inits[conv.input[2]]) if len(conv.input) > 2 and conv.input[2] else \
        np.zeros(w.shape[0], w.dtype)
    wide = np.zeros((w.shape[0] * phases, w.shape[1] * phases, 1, 1), w.dtype)
    for p in range(phases):  # CRD: channel c of phase p is c * phases + p, in and out
        wide[p::phases, p::phases] = w
    names = (f"{conv.name}_phase_weight", f"{conv.name}_phase_bias")
    g.initializer.extend([numpy_helper.from_array(wide, names[0]),
                          numpy_helper.from_array(np.repeat(b, phases).astype(w.dtype), names[1])])
    conv.input[1] = names[0]
    if len(conv.input) > 2:
        conv.input[2] = names[1]
    else:
        conv.input.append(names[1])


def _swap(g, first, second):
    """x -> first -> t -> second -> y  becomes  x -> second -> t' -> first -> y; returns `first` as now stored (a
    protobuf list stores a copy)."""
    x, y, t = first.input[0], second.output[0], f"{first.output[0]}_before_{first.name}"
    second.input[0], second.output[0] = x, t
    first.input[0], first.output[0] = t, y
    g.node.remove(first)
    at = list(g.node).index(second) + 1
    g.node.insert(at, first)
    return g.node[at]


def _is_plain_1x1(g, conv) -> bool:
    inits = {i.name for i in g.initializer}
    return (conv.input[1] in inits and (len(conv.input) < 3 or not conv.input[2] or conv.input[2] in inits)
            and list(node_attribute(conv, "kernel_shape", [1, 1])) == [1, 1] and node_attribute(conv, "group", 1) == 1
            and set(node_attribute(conv, "strides", [1])) == {1} and set(node_attribute(conv, "pads", [0])) == {0}
            and set(node_attribute(conv, "dilations", [1])) == {1}
            and numpy_helper.to_array(next(i for i in g.initializer if i.name == conv.input[1])).shape[2:] == (1, 1))


def _is_constant(g, name: str) -> bool:
    return name in {i.name for i in g.initializer} or any(n.op_type == "Constant" and name in n.output
                                                            for n in g.node)


def _same_params(g, dq, q) -> bool:
    inits = {i.name: i for i in g.initializer}
    if len(dq.input) != len(q.input) or node_attribute(dq, "axis", 1) != node_attribute(q, "axis", 1):
        return False
    for a, b in zip(dq.input[1:], q.input[1:]):
        if a not in inits or b not in inits:
            return False
        x, y = numpy_helper.to_array(inits[a]), numpy_helper.to_array(inits[b])
        if x.dtype != y.dtype or x.shape != y.shape or not np.array_equal(x, y):
            return False
    return True


def _drop_dead(g) -> None:
    outputs = {o.name for o in g.output}
    while True:
        used = {i for n in g.node for i in n.input} | outputs
        dead = [n for n in g.node if not any(o in used for o in n.output)]
        if not dead:
            return
        for n in dead:
            g.node.remove(n)


def _drop_unused_initializers(g) -> None:
    used = {i for n in g.node for i in n.input}
    kept = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)


def _forget_shapes(model, changed=()) -> None:
    """Drop the recorded shapes of tensors no node produces any more (rewired or removed) and of `changed` ones."""
    g = model.graph
    produced = {o for n in g.node for o in n.output} - set(changed)
    kept = [v for v in g.value_info if v.name in produced]
    del g.value_info[:]
    g.value_info.extend(kept)


def _producers(g) -> dict:
    return {o: n for n in g.node for o in n.output}


def _consumers(g) -> dict:
    out: dict = {}
    for n in g.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def node_attribute(node, name: str, default=None):
    return next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)
