"""The one table of export targets x precisions: the ground floor every other layer reads.

A target row says what file it writes (suffix), what runs it (toolkit/runtime/<runtime>.py), which exporter writes
it, which sizes one file takes (its SizePolicy), how its input and output are named and laid out, and its precision
rows. A precision row says what the graph computes in, how its weights are stored, whether it needs calibration
photos, the parity tolerance it is judged by, the dtypes an app feeds and reads (the contract's), and whether the
shipped styles carry it. CLI choices and help text, exporters, parity, the contract, the manifest, the bench and the
tests all read these rows; adding a precision is a row here, a branch in the exporter and a test.

Imports nothing from toolkit but errors, so runtimes sit above it without pulling in exporters (or torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Tuple

from toolkit.errors import UserError, unknown

Size = Tuple[int, int]  # (height, width)

INPUT_NAME, OUTPUT_NAME = "image", "stylized"


@dataclass(frozen=True)
class Tolerance:
    """How close an artifact must stay to the torch model: as data, judged by toolkit.parity."""

    max_abs: float | None = None   # largest allowed |artifact - torch| on [0,1] outputs
    psnr_db: float | None = None   # smallest allowed PSNR (peak 1.0) of artifact vs torch

    def describe(self) -> str:
        parts = ([f"max_abs <= {self.max_abs:g}"] if self.max_abs is not None else []) + \
                ([f"PSNR >= {self.psnr_db:g} dB"] if self.psnr_db is not None else [])
        return " and ".join(parts)


@dataclass(frozen=True)
class SizePolicy:
    """Which input sizes one artifact takes: any (dynamic), a list baked into one file (enumerated: CoreML's
    EnumeratedShapes), or one fixed size per file (`sizes` are then the files written when --size is not given)."""

    kind: str                       # "dynamic" | "enumerated" | "fixed"
    sizes: Tuple[Size, ...] = ()    # enumerated: the sizes one file holds by default; fixed: the default files

    def __post_init__(self):
        if self.kind not in ("dynamic", "enumerated", "fixed"):
            raise ValueError(f"size policy kind must be dynamic, enumerated or fixed, not {self.kind!r}")
        if (self.kind == "dynamic") == bool(self.sizes):
            raise ValueError(f"a {self.kind} size policy {'takes no' if self.kind == 'dynamic' else 'needs'} sizes")

    def sizes_for(self, stride: int) -> Tuple[Size, ...]:
        """The default sizes that suit a net of this stride (every side a multiple of it)."""
        return tuple(s for s in self.sizes if s[0] % stride == 0 and s[1] % stride == 0)


def dynamic() -> SizePolicy:
    return SizePolicy("dynamic")


def enumerated(*sizes: Size) -> SizePolicy:
    return SizePolicy("enumerated", tuple(sizes))


def fixed(*sizes: Size) -> SizePolicy:
    return SizePolicy("fixed", tuple(sizes))


@dataclass(frozen=True)
class Precision:
    name: str                       # what users type: --precision int8
    tolerance: Tolerance            # parity: artifact in its runtime vs the torch model
    compute: str = "float32"        # what the graph computes in: float32 | float16 | int8 (static, calibrated
                                    # activations) | int8_dynamic (activations quantised per frame at run time)
    weights: str = "float32"        # how weights are stored: float32 | float16 | int8 | palette
    palette_bits: int | None = None  # k-means palette size (2**bits entries) when weights == "palette"
    input_dtype: str = "float32"    # what the app feeds (the contract's input dtype; "image" inputs ignore it)
    output_dtype: str = "float32"   # what the app reads back
    shipped: bool = False           # the shipped styles (exported/) carry this precision

    @property
    def calibrated(self) -> bool:
        """Static activation quantisation: the exporter needs real photos."""
        return self.compute == "int8"


@dataclass(frozen=True)
class Target:
    name: str                       # what users type: --target coreml
    suffix: str                     # file suffix: .onnx | .mlpackage | .tflite
    runtime: str                    # toolkit/runtime/<runtime>.py runs it
    extra: str                      # pip extra that installs its backend
    exporter: str                   # module with export(model, spec, dest)
    description: str
    size_policy: SizePolicy
    precisions: Tuple[Precision, ...]
    input_layout: str = "NCHW"      # NCHW | NHWC float tensors, or IMAGE (a CoreML image, 0..255, scaled inside)
    output_layout: str = "NCHW"
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME

    @property
    def precision_names(self) -> Tuple[str, ...]:
        return tuple(p.name for p in self.precisions)

    @property
    def dynamic_sizes(self) -> bool:
        return self.size_policy.kind == "dynamic"

    @property
    def one_size_per_file(self) -> bool:
        return self.size_policy.kind == "fixed"

    def precision(self, name: str) -> Precision:
        for row in self.precisions:
            if row.name == name:
                return row
        if name not in all_precisions():
            raise unknown("precision", name, all_precisions())
        raise UserError(f"target {self.name} cannot export precision {name}; "
                        f"it supports {', '.join(self.precision_names)}")


# fp32 artifacts agree with torch to ~1e-6 in onnxruntime, LiteRT and the CoreML reference interpreter (nano-like
# net, 32x48: 8.9e-7), so 1e-4 leaves two orders of margin. Compressed precisions are judged by PSNR against the
# float torch model (fp16 measured 73-80 dB, int8 35-38 dB on nano-like nets).
EXACT = Tolerance(max_abs=1e-4)
FP16 = Tolerance(psnr_db=45.0)
INT8 = Tolerance(psnr_db=30.0)

# TFLite's fixed sizes, one file each: portrait/landscape camera frames and a square crop.
CAMERA_SIZES: Tuple[Size, ...] = ((480, 640), (640, 480), (256, 256))
# CoreML's enumerated sizes, all in one package: camera frames at two resolutions and two square crops.
COREML_SIZES: Tuple[Size, ...] = ((480, 640), (640, 480), (720, 1280), (1280, 720), (256, 256), (512, 512))

FORMATS: dict[str, Target] = {t.name: t for t in (
    Target(name="onnx", suffix=".onnx", runtime="onnxruntime", extra="onnx", exporter="toolkit.export.onnx",
           description="ONNX opset 18 (torch dynamo exporter), dynamic H/W; runs in onnxruntime",
           size_policy=dynamic(),
           precisions=(Precision("fp32", EXACT, shipped=True),
                       Precision("fp16", FP16, compute="float16", weights="float16"),
                       Precision("int8", INT8, compute="int8", weights="int8", shipped=True))),
    # Compressed CoreML precisions compute in FLOAT16, as phones run them, and so return FLOAT16 tensors.
    Target(name="coreml", suffix=".mlpackage", runtime="coreml", extra="coreml", exporter="toolkit.export.coreml",
           description="CoreML ML Program, enumerated image sizes; MLModel.predict on macOS, reference MIL "
                       "interpreter on Linux",
           size_policy=enumerated(*COREML_SIZES), input_layout="IMAGE", output_layout="NCHW",
           precisions=(Precision("fp32", EXACT),
                       Precision("fp16", FP16, compute="float16", weights="float16", output_dtype="float16",
                                 shipped=True),
                       Precision("int8", INT8, compute="float16", weights="int8", output_dtype="float16",
                                 shipped=True),
                       Precision("palettize6", INT8, compute="float16", weights="palette", palette_bits=6,
                                 output_dtype="float16"),
                       Precision("palettize4", Tolerance(psnr_db=22.0), compute="float16", weights="palette",
                                 palette_bits=4, output_dtype="float16"),
                       Precision("palettize2", Tolerance(psnr_db=12.0), compute="float16", weights="palette",
                                 palette_bits=2, output_dtype="float16"),
                       Precision("palettize1", Tolerance(psnr_db=8.0), compute="float16", weights="palette",
                                 palette_bits=1, output_dtype="float16"))),
    # fp16 stores float16 weights but computes in float32 on CPU (GPU delegates run it in fp16); PT2E int8 keeps
    # float32 I/O (the stem convs read the float image, toolkit/export/nhwc.py); int8_dynamic keeps float I/O too.
    Target(name="tflite", suffix=".tflite", runtime="litert", extra="tflite", exporter="toolkit.export.tflite",
           description="TFLite via litert-torch, one file per fixed size, NHWC I/O; runs in ai-edge-litert",
           size_policy=fixed(*CAMERA_SIZES), input_layout="NHWC", output_layout="NHWC",
           precisions=(Precision("fp32", EXACT, shipped=True),
                       Precision("fp16", FP16, weights="float16"),
                       Precision("int8", INT8, compute="int8", weights="int8", shipped=True),
                       Precision("int8_dynamic", INT8, compute="int8_dynamic", weights="int8"))),
)}


def get_target(name: str) -> Target:
    if name not in FORMATS:
        raise unknown("export target", name, FORMATS)
    return FORMATS[name]


def get_precision(target: str, precision: str) -> Precision:
    return get_target(target).precision(precision)


def target_for_path(path: str | Path) -> Target:
    suffix = Path(path).suffix
    for target in FORMATS.values():
        if target.suffix == suffix:
            return target
    raise UserError(f"{path} is not an exported artifact; expected one of "
                    f"{', '.join(t.suffix for t in FORMATS.values())}")


def all_precisions() -> list[str]:
    return sorted({p.name for t in FORMATS.values() for p in t.precisions})


def check_sizes(sizes: Iterable[Size], stride: int) -> None:
    for h, w in sizes:
        if h < stride or w < stride or h % stride or w % stride:
            raise UserError(f"size {h}x{w} is not a positive multiple of the net's stride {stride}; "
                            f"try {max(stride, round(h / stride) * stride)}x{max(stride, round(w / stride) * stride)}")


def sizes_text(sizes: Iterable[Size]) -> str:
    """How artifacts and the manifest write a size list: '480x640,256x256', or 'dynamic' for none."""
    sizes = list(sizes)
    return ",".join(f"{h}x{w}" for h, w in sizes) if sizes else "dynamic"


def sizes_from_text(text: str) -> Tuple[Size, ...]:
    """The inverse of `sizes_text` (metadata written by an exporter, not user input: see toolkit.export.parse_size)."""
    if text == "dynamic":
        return ()
    try:
        return tuple((int(h), int(w)) for h, w in (s.split("x") for s in text.split(",")))
    except ValueError:
        raise UserError(f"size list '{text}' is not 'dynamic' or HxW[,HxW...]") from None
