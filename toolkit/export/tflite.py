"""TFLite export with litert-torch: one file per fixed size, NHWC float32 I/O (input `image`, output `stylized`).

Every precision converts the net's NHWC twin (toolkit/export/nhwc.py: instance norm as mean/var over H, W, edge pads
as slices + concat, PixelShuffle as DEPTH_TO_SPACE, the up stage's norm at a quarter of the pixels, the head at half
resolution up to its DEPTH_TO_SPACE), so the graph has no layout transposes and XNNPACK takes all of it.
fp32: litert-torch straight from torch. fp16: the fp32 flatbuffer with float16 weights (ai-edge-quantizer
FLOAT_CASTING; compute stays float32 on CPU, GPU delegates run it in fp16). int8: litert-torch PT2E static
quantisation (per-channel int8 weights, int8 activations) calibrated on real photos. int8_dynamic: dynamic-range
quantisation with ai-edge-quantizer (per-channel int8 weights; activations quantised per frame at run time, float32
I/O, no calibration photos). The toolkit metadata is stored in the flatbuffer's metadata table under "toolkit"
(JSON), so `toolkit validate` can read it back.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from toolkit.errors import UserError, require
from toolkit.export.base import ExportSpec
from toolkit.export.nhwc import (float_norm_quantizer, float_outputs, fully_accelerated, fuse_depth_to_space,
                                 nhwc_twin)

log = logging.getLogger(__name__)
METADATA_NAME = "toolkit"


class NHWCWrapper(nn.Module):
    """NHWC in -> NCHW net -> NHWC out, with named I/O: what mobile apps and delegates want."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"stylized": self.net(image.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)}


def export(model, spec: ExportSpec, dest: Path) -> None:
    """Dispatch on the precision row (toolkit.formats): static int8, dynamic int8, float16 weights, or float."""
    from toolkit.formats import get_precision

    row = get_precision("tflite", spec.precision)  # an unknown precision fails here, naming the ones there are
    require("litert_torch", "tflite")
    if len(spec.sizes) != 1:
        raise UserError("tflite exports one fixed size per file; pass exactly one --size")
    size = tuple(spec.sizes[0])
    if row.compute == "int8":
        flatbuffer = _convert_int8(model, size, spec)
    elif row.compute == "int8_dynamic":
        flatbuffer = _dynamic_int8(_convert_float(model, size))
    elif row.weights == "float16":
        flatbuffer = _fp16_weights(_convert_float(model, size))
    else:
        flatbuffer = _convert_float(model, size)
    dest.write_bytes(_with_metadata(flatbuffer, spec.metadata))
    if row.compute != "int8_dynamic" and fully_accelerated(dest) is False:  # dynamic-range int8 is partly by design
        log.warning("LiteRT's CPU accelerator (XNNPACK) does not take the whole graph of the %s: some ops will run "
                    "in the interpreter, between copies (`litert-benchmark` reports it; README \"TFLite for XNNPACK\")",
                    " ".join(filter(None, (spec.style, spec.precision, "x".join(map(str, size)), "file"))))


@contextlib.contextmanager
def _quiet():
    """litert-torch prints a progress tree and warnings on every conversion; keep the CLI's own output readable."""
    import litert_torch._config as cfg

    old = cfg.config.show_progress
    cfg.config.show_progress = False
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        cfg.config.show_progress = old


def _weights_key(model) -> str:
    h = hashlib.sha256(json.dumps(sorted(vars(model.config).items()), default=str).encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


_FLOAT_CACHE: dict[tuple, bytes] = {}


def _convert_float(model, size) -> bytes:
    """One litert-torch conversion per (weights, size): fp32 and fp16 exports of one run share it (~15 s each)."""
    key = (_weights_key(model), size)
    if key not in _FLOAT_CACHE:
        if len(_FLOAT_CACHE) >= 4:
            _FLOAT_CACHE.pop(next(iter(_FLOAT_CACHE)))
        _FLOAT_CACHE[key] = _convert_float_uncached(model, size)
    return _FLOAT_CACHE[key]


def _convert_float_uncached(model, size) -> bytes:
    import litert_torch

    h, w = size
    sample = {"image": torch.rand(1, h, w, 3)}
    try:
        with _quiet(), torch.no_grad():
            converted = litert_torch.convert(NHWCWrapper(nhwc_twin(model)).eval(), sample_kwargs=sample)
    except Exception as exc:  # litert-torch raises many internal types; name the knobs so the user can change them
        raise UserError(f"litert-torch cannot convert this net ({type(exc).__name__}: {str(exc)[:160]}); "
                        f"arch knobs: upsample={model.config.upsample}, padding={model.config.padding}, "
                        f"norm={model.config.norm} (upsample=transposed with k3 is known to fail)") from exc
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.tflite"
        with _quiet():
            converted.export(str(path))
        return fuse_depth_to_space(path.read_bytes())


def _fp16_weights(flatbuffer: bytes) -> bytes:
    """Store float weights as float16 (dequantised at load); activations and I/O stay float32."""
    require("ai_edge_quantizer", "tflite")
    from ai_edge_quantizer import qtyping, quantizer

    q = quantizer.Quantizer(flatbuffer)
    q.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16,
                             algorithm_key=quantizer.AlgorithmName.FLOAT_CASTING)
    with _quiet():
        return bytes(q.quantize().quantized_model)


def _dynamic_int8(flatbuffer: bytes) -> bytes:
    """Per-channel int8 weights; XNNPACK quantises each frame's activations on the fly (no calibration needed)."""
    require("ai_edge_quantizer", "tflite")
    from ai_edge_quantizer import quantizer, recipe

    q = quantizer.Quantizer(flatbuffer)
    q.load_quantization_recipe(recipe.dynamic_wi8_afp32())
    with _quiet():
        return bytes(q.quantize().quantized_model)


def _convert_int8(model, size, spec: ExportSpec) -> bytes:
    """PT2E static int8: per-channel symmetric weights, int8 activations from real-photo calibration."""
    import litert_torch
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import quantize_pt2e

    from toolkit.export.calibration import calibration_images

    images = calibration_images(spec.calibration, size, model.config.stride)
    wrapper = NHWCWrapper(nhwc_twin(equalise_norm_inputs(model, images))).eval()
    h, w = size
    sample = {"image": torch.rand(1, h, w, 3)}
    quantizer = float_norm_quantizer(pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True))
    try:
        with _quiet(), torch.no_grad():
            graph = torch.export.export(wrapper, (), sample).module()
            graph = quantize_pt2e.prepare_pt2e(graph, quantizer)
            for x in images:
                graph(image=torch.from_numpy(x).permute(0, 2, 3, 1).contiguous())
            graph = quantize_pt2e.convert_pt2e(graph, fold_quantize=False)
            converted = litert_torch.convert(graph, sample_kwargs=sample, quant_config=QuantConfig(pt2e_quantizer=quantizer))
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "model.tflite"
                converted.export(str(path))
                return float_outputs(fuse_depth_to_space(path.read_bytes()))
    except UserError:
        raise
    except Exception as exc:  # see _convert_float_uncached
        raise UserError(f"litert-torch cannot quantise this net to int8 ({type(exc).__name__}: {str(exc)[:160]}); "
                        f"arch knobs: norm={model.config.norm}, upsample={model.config.upsample}; "
                        "try --target onnx --precision int8") from exc


@torch.no_grad()
def equalise_norm_inputs(model, images) -> torch.nn.Module:
    """A copy of `model` whose convs feeding an instance norm have every output channel scaled to unit std on the
    calibration images. Instance norm divides each channel by its own std, so this changes nothing but its epsilon's
    share (53.7 / 62.6 dB vs the unscaled starry_night / shipwreck; parity is proven against the unscaled net), while
    static int8, which
    has one scale per activation tensor, stops crushing the quiet channels that the norm then blows up: starry_night
    (nano_fine) TFLite int8 went from 25.9 dB to a pass. The stem convs also stay float (nhwc.float_norm_quantizer)."""
    import copy

    from toolkit.export.coreml import conv_norm_pairs

    model = copy.deepcopy(model).eval()
    pairs = conv_norm_pairs(model)
    stds: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(pairs))}
    hooks = [conv.register_forward_hook(lambda _m, _i, out, i=i: stds[i].append(out.std(dim=(2, 3)).mean(0)))
             for i, (conv, _) in enumerate(pairs)]
    try:
        for x in images:
            model(torch.from_numpy(x))
    finally:
        for h in hooks:
            h.remove()
    for i, (conv, _) in enumerate(pairs):
        scale = 1.0 / torch.stack(stds[i]).mean(0).clamp_min(1e-6)
        shape = (-1,) + (1,) * (conv.weight.dim() - 1) if isinstance(conv, torch.nn.Conv2d) else (1, -1, 1, 1)
        conv.weight.mul_(scale.view(shape))
        if conv.bias is not None:
            conv.bias.mul_(scale)
    return model


def _schema():
    return require("ai_edge_litert.schema_py_generated", "tflite")


def _with_metadata(flatbuffer: bytes, metadata: dict) -> bytes:
    """Add (or replace) the "toolkit" JSON entry in the flatbuffer's metadata table."""
    import flatbuffers

    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    buffer = schema.BufferT()
    buffer.data = list(json.dumps(metadata, sort_keys=True).encode())
    model.buffers = list(model.buffers or []) + [buffer]
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if _name(m.name) != METADATA_NAME] + [entry]
    builder = flatbuffers.Builder(len(flatbuffer) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _name(name) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)


def read_metadata(path: Path) -> dict[str, str]:
    schema = _schema()
    data = Path(path).read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise UserError(f"artifact {path} is not a TFLite flatbuffer; re-export it")
    try:
        model = schema.Model.GetRootAsModel(data, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if _name(entry.Name()) == METADATA_NAME:
                raw = model.Buffers(entry.Buffer()).DataAsNumpy()
                return json.loads(bytes(raw).decode())
    except (IndexError, ValueError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"artifact {path} is a damaged TFLite file ({type(exc).__name__}); re-export it") from exc
    return {}
