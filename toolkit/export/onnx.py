"""ONNX export: torch dynamo exporter, opset 18, one self-contained file, dynamic H/W or one fixed size.

fp16 converts weights and compute with onnxconverter-common but keeps float32 I/O; int8 is onnxruntime static
per-channel quantisation calibrated on real photos (toolkit/export/calibration.py). Every precision gets the exact
graph rewrites of toolkit/export/onnx_graph.py (benchmarks/results/int8_speed.md). Exports are byte-reproducible:
the same weights give the same sha256.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path

import torch

from toolkit.errors import UserError, require
from toolkit.export.base import ExportSpec
from toolkit.formats import get_target

log = logging.getLogger(__name__)

TARGET = get_target("onnx")
OPSET = 18
MAX_SIDE = 8192  # the dynamic dims' declared upper bound (sizes are otherwise limited by TOOLKIT_MAX_PIXELS)
# int8 layouts: (onnxruntime QuantFormat name, activation type); weights are always s8 per-channel. Measured by
# benchmarks/onnx_int8_format.py (480x640, 1 thread, stem float, every layout interleaved): u8 activations are the
# only ones onnxruntime fuses into QLinearConv/QLinearAdd chains on x86 (s8 QDQ leaves stride-2 and 1x1 convs float),
# and asymmetric u8 also spends its whole range on post-ReLU activations: on an AVX-512 VNNI EPYC u8 QDQ ran
# 1.13-1.27x of fp32 where s8 ran 0.82-1.01x, and the six instance-norm styles' parity rose 0-3 dB (33.4 -> 36.6 dB
# at worst); on an AVX2 EPYC the two were even (0.96x / 0.99x). QOperator is a few % faster still but needs
# onnxruntime's contrib ops (QLinearAdd), so the portable QDQ form ships.
INT8_FORMATS = {"qdq": ("QDQ", "QInt8"), "qdq_u8": ("QDQ", "QUInt8"), "qoperator": ("QOperator", "QUInt8")}
INT8_FORMAT = "qdq_u8"  # what exports write; benchmarks/onnx_int8_format.py sets the others to compare
# Exact graph rewrites (toolkit/export/onnx_graph.py); benchmarks/int8_speed.py turns them off to measure them.
PHASE_HEAD = True    # the head's full-resolution ReLU, 1x1 conv and activation run before its DepthToSpace
INT8_CLEANUP = True  # 8-bit Pads and Shapes, no Q/DQ into a norm, narrow convs widened, the Resize in NCHWc
D2S_TRANSPOSES = True  # the head's DepthToSpace as two one-axis transposes (fp32 1.4 -> 0.4 ms, u8 0.8-1.6 -> 0.2)
# int8 quantises the equalised net (toolkit.export.tflite.equalise_norm_inputs: the convs feeding instance norms
# scaled to unit std per channel, which the norms undo): worst-photo PSNR at 480x640 +1.3-1.4 dB on starry_night
# and composition_vii, speed unchanged.
EQUALISE_NORM_INPUTS = True
# A net whose int8 output lands under this PSNR against its float graph on the worst calibration photo keeps more
# convs float, one at a time in network order from the first after the stem, until it clears it or
# INT8_MAX_FLOAT_CONVS are float (great_wave on nano_deep keeps its first two down convs: parity 30.3 -> 31.8 dB).
# Nets that clear it are quantised exactly as before.
INT8_TARGET_DB = 31.0
INT8_MAX_FLOAT_CONVS = 3


def export(model, spec: ExportSpec, dest: Path) -> None:
    """Dispatch on the precision row (toolkit.formats): float16 compute, static int8, or float."""
    row = TARGET.precision(spec.precision)
    onnx = require("onnx", "onnx")
    require("onnxscript", "onnx")
    from toolkit.export import onnx_graph

    images = _calibration_images(model, spec) if row.compute == "int8" else None
    if images is not None and EQUALISE_NORM_INPUTS:
        model_proto = _export_float(_equalised(model, images), spec)
    else:
        model_proto = _export_float(model, spec)
    if PHASE_HEAD:
        model_proto = onnx_graph.phase_head(model_proto)
    if row.compute == "float16":
        model_proto = _to_fp16(model_proto)
    metadata = dict(spec.metadata)
    if row.compute == "int8":
        model_proto, kept_float = _to_int8_within_target(model_proto, images, _check_images(model, spec, images))
        model_proto = _prune_opset_imports(model_proto)
        if kept_float:
            metadata["int8_float_convs"] = ",".join(kept_float)
        if INT8_CLEANUP:
            model_proto = onnx_graph.int8_cleanup(model_proto)
        metadata["int8_layout"] = INT8_FORMAT
    if D2S_TRANSPOSES:
        model_proto = onnx_graph.depth_to_space_by_transposes(model_proto)
    _drop_trace_metadata(model_proto)
    del model_proto.metadata_props[:]
    for key, value in sorted(metadata.items()):
        model_proto.metadata_props.add(key=key, value=str(value))
    model_proto.producer_name = "toolkit"
    onnx.checker.check_model(model_proto)
    onnx.save_model(model_proto, str(dest))


def _export_float(model, spec: ExportSpec):
    h, w = spec.sizes[0] if spec.sizes else (4 * model.config.stride, 4 * model.config.stride)
    example = (torch.rand(1, 3, h, w),)
    dynamic_shapes = None
    if not spec.sizes:
        # Any side from the net's minimum up: the net pads to its stride and crops back inside the graph.
        dynamic_shapes = ({2: torch.export.Dim("height", min=model.min_side, max=MAX_SIDE),
                           3: torch.export.Dim("width", min=model.min_side, max=MAX_SIDE)},)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, example, dynamo=True, opset_version=OPSET, external_data=False,
                                    input_names=[TARGET.input_name], output_names=[TARGET.output_name],
                                    dynamic_shapes=dynamic_shapes, verbose=False)
    program.optimize()
    return _simplify(program.model_proto)


def _simplify(model_proto):
    """onnxsim when installed and it removes nodes; the dynamo graph is usually already minimal."""
    try:
        import onnxsim
    except ImportError:
        return model_proto
    try:
        simplified, ok = onnxsim.simplify(model_proto)
    except Exception as exc:  # onnxsim is optional: an internal failure must not block the export
        log.info("onnxsim failed (%s); keeping the exporter's graph", exc)
        return model_proto
    if ok and len(simplified.graph.node) < len(model_proto.graph.node):
        return simplified
    return model_proto


def _to_fp16(model_proto):
    require("onnxconverter_common", "onnx")
    from onnxconverter_common import float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float16.convert_float_to_float16(model_proto, keep_io_types=True)


def _equalised(model, images):
    """The net with its quantized convs that feed instance norms scaled to unit channel std (which the norms undo).
    The stem keeps its weights: it stays float (_stem_convs), and its quiet channels are where the norm's epsilon
    is not negligible, so rescaling them would change the function for nothing."""
    from toolkit.export.tflite import equalise_norm_inputs

    equalised = equalise_norm_inputs(model, images)
    equalised.stem.load_state_dict(model.stem.state_dict())
    return equalised


def _calibration_images(model, spec: ExportSpec):
    from toolkit.export.calibration import calibration_images

    return calibration_images(spec.calibration, spec.sizes[0] if spec.sizes else (256, 256), model.config.stride)


def _check_images(model, spec: ExportSpec, images):
    """What the int8 search is held to: the calibration photos and, for a file that takes any size, the same photos
    at the camera size apps run (formats.CAMERA_SIZES[0]): great_wave's worst photo cleared 31 dB at 256x256 and
    landed at 29.8 dB at 480x640."""
    from toolkit.export.calibration import calibration_images
    from toolkit.formats import CAMERA_SIZES

    if spec.sizes:
        return images
    return images + calibration_images(spec.calibration, CAMERA_SIZES[0], model.config.stride)


def _to_int8_within_target(model_proto, images, check_images):
    """_to_int8 (calibrated on `images`), keeping convs float one by one in network order (the down convs first)
    while the worst of `check_images` is under INT8_TARGET_DB against the float graph (at most
    INT8_MAX_FLOAT_CONVS); returns the model and the names of the convs kept float beyond the stem."""
    import onnxruntime as ort

    from toolkit.parity import psnr

    def outputs(proto):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return [session.run(None, {TARGET.input_name: x})[0] for x in check_images]

    reference = outputs(model_proto)
    stem = _stem_convs(model_proto)
    candidates = [n.name for n in model_proto.graph.node if n.op_type == "Conv" and n.name not in stem]
    candidates = candidates[:INT8_MAX_FLOAT_CONVS]
    kept: list[str] = []
    while True:
        quantised = _to_int8(model_proto, images, kept)
        worst = min(psnr(a, b) for a, b in zip(outputs(quantised), reference))
        if worst >= INT8_TARGET_DB or len(kept) == len(candidates):
            return quantised, kept
        kept.append(candidates[len(kept)])


def _to_int8(model_proto, images, keep_float: list[str] = ()):
    """Static per-channel int8 (never dynamic: ConvInteger is ~9x slower here); InstanceNorm, the stem convs and
    `keep_float` stay float. Activation ranges are the calibration photos' 99.999th percentile, not their min/max:
    worst photo at 480x640 +0.8 to +1.8 dB (starry_night, composition_vii, great_wave), the same graph and speed."""
    import onnx

    require("onnxruntime", "onnx")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_format, activation_type = INT8_FORMATS[INT8_FORMAT]
    with tempfile.TemporaryDirectory() as tmp:
        src, pre, out = Path(tmp, "float.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "int8.onnx")
        onnx.save_model(model_proto, str(src))
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(out), _Reader(images), quant_format=QuantFormat[quant_format], per_channel=True,
                        activation_type=QuantType[activation_type], weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.Percentile,
                        op_types_to_quantize=["Conv", "Add", "Relu", "Resize", "DepthToSpace", "Pad"],
                        nodes_to_exclude=_stem_convs(onnx.load_model(str(pre))) + list(keep_float),
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        return onnx.load_model(str(out))


def _drop_trace_metadata(model_proto) -> None:
    """Remove what torch.onnx records per node and value for debugging (fx node text, name scopes, stack traces
    naming files on the exporting machine): a shipped file holds no machine paths, and it is a third smaller."""
    graphs = [model_proto.graph, *model_proto.functions]
    for graph in graphs:
        for node in graph.node:
            del node.metadata_props[:]
            node.doc_string = ""
    g = model_proto.graph
    for item in (*g.input, *g.output, *g.value_info, *g.initializer):
        kept = [p for p in item.metadata_props if not p.key.startswith("pkg.torch.")]
        del item.metadata_props[:]
        item.metadata_props.extend(kept)


def _prune_opset_imports(model_proto):
    """Keep only the opset domains some node uses (the default domain always): onnxruntime's quantiser declares
    ai.onnx.ml, com.microsoft and others whatever the graph holds, which tells a runtime it needs them."""
    used = {node.domain or "" for node in model_proto.graph.node} | {""}
    for function in model_proto.functions:
        used |= {node.domain or "" for node in function.node} | {function.domain}
    kept = [op for op in model_proto.opset_import if (op.domain or "") in used]
    del model_proto.opset_import[:]
    model_proto.opset_import.extend(kept)
    return model_proto


def _stem_convs(model_proto) -> list[str]:
    """The convs reading the image itself stay float: 3 input channels gain nothing from int8, and their outputs
    feed instance norm, which divides each channel by its own std -- a low-variance channel magnifies the per-tensor
    int8 step of the whole layer (Composition VII: 21 dB with the stem quantized, 37 dB with it float)."""
    image = {i.name for i in model_proto.graph.input}
    for n in model_proto.graph.node:  # topological order: the image, padded
        if n.op_type == "Pad" and n.input[0] in image:
            image.add(n.output[0])
    return [n.name for n in model_proto.graph.node if n.op_type == "Conv" and n.input[0] in image]


class _Reader:
    """onnxruntime CalibrationDataReader over NCHW float32 arrays."""

    def __init__(self, images):
        self._it = iter(images)

    def get_next(self):
        x = next(self._it, None)
        return None if x is None else {TARGET.input_name: x}


def read_metadata(path: Path) -> dict[str, str]:
    onnx = require("onnx", "onnx")
    try:
        proto = onnx.load_model(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError, RuntimeError or others on a damaged file
        raise UserError(f"artifact {path} is not a valid ONNX model ({type(exc).__name__}); re-export it") from exc
    if not proto.graph.node:
        raise UserError(f"artifact {path} is not a valid ONNX model (empty graph); re-export it")
    return {p.key: p.value for p in proto.metadata_props}
