"""CoreML runtime: Core ML itself on macOS (MLModel.predict), the MIL reference interpreter everywhere else.

Both take and return NCHW float32 RGB in [0, 1]. The artifact's input is an image (0..255, scaled by 1/255 inside
the model): on macOS the frame is rounded to 8-bit pixels as a camera frame would be; the reference interpreter is
fed the exact values x * 255, so parity measures the model, not 8-bit rounding.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Tuple

import numpy as np

from toolkit.errors import UserError, require, unknown
from toolkit.formats import FORMATS, Size

INPUT_NAME, OUTPUT_NAME = FORMATS["coreml"].input_name, FORMATS["coreml"].output_name
# provider -> coremltools ComputeUnit name
COMPUTE_UNITS = {"cpu": "CPU_ONLY", "gpu": "CPU_AND_GPU", "ane": "CPU_AND_NE", "all": "ALL"}


def load_runner(path, threads: int = 1, provider: str = "cpu"):
    """A Runner for an .mlpackage. `threads` is ignored: Core ML schedules its own work."""
    path = Path(path)
    if provider not in COMPUTE_UNITS:
        raise unknown("CoreML provider", provider, COMPUTE_UNITS)
    if not path.is_dir() or not (path / "Manifest.json").is_file():
        raise UserError(f"{path} is not an .mlpackage directory (no Manifest.json); export it again")
    if sys.platform == "darwin":
        return CoreMLRunner(path, provider)
    if provider != "cpu":
        raise UserError(f"CoreML provider '{provider}' needs macOS; on {sys.platform} only the reference "
                        f"interpreter runs (provider 'cpu')")
    return ReferenceRunner(path)


def spec_sizes(spec) -> Tuple[Size, ...]:
    """Fixed or enumerated (height, width) sizes of the image input; () when it takes a range of sizes."""
    image = spec.description.input[0].type.imageType
    if image.HasField("imageSizeRange"):
        return ()
    enumerated = image.enumeratedSizes.sizes
    if len(enumerated):
        return tuple((int(s.height), int(s.width)) for s in enumerated)
    return ((int(image.height), int(image.width)),)


def check_input(x: np.ndarray, sizes: Tuple[Size, ...], path: Path) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4 or x.shape[:2] != (1, 3):
        raise UserError(f"{path.name} takes a (1, 3, H, W) RGB array, got shape {x.shape}")
    if sizes and tuple(x.shape[2:]) not in sizes:
        allowed = ", ".join(f"{h}x{w}" for h, w in sizes)
        raise UserError(f"{path.name} accepts sizes {allowed}, got {x.shape[2]}x{x.shape[3]}; export it with "
                        f"--size {x.shape[2]}x{x.shape[3]}")
    return x


class ReferenceRunner:
    """Runs the package's ML Program with toolkit.runtime.mil_interpreter (fp16 programs in emulated fp16)."""

    name = "coreml-reference"

    def __init__(self, path: Path):
        from toolkit.runtime.mil_interpreter import MILInterpreter

        self.path = path
        self.interpreter = MILInterpreter(path)
        self.sizes = spec_sizes(self.interpreter.spec)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = check_input(x, self.sizes, self.path)
        out = self.interpreter.run({INPUT_NAME: x * 255.0})[OUTPUT_NAME]
        return out.astype(np.float32)


class CoreMLRunner:
    """Core ML's own prediction (macOS only), on the compute units the provider names."""

    def __init__(self, path: Path, provider: str):
        ct = require("coremltools", "coreml")
        self.name = f"coreml-{provider}"
        self.path = path
        self.model = ct.models.MLModel(str(path), compute_units=getattr(ct.ComputeUnit, COMPUTE_UNITS[provider]))
        self.sizes = spec_sizes(self.model.get_spec())

    def __call__(self, x: np.ndarray) -> np.ndarray:
        from PIL import Image

        x = check_input(x, self.sizes, self.path)
        pixels = np.clip(np.rint(x[0].transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)
        out = self.model.predict({INPUT_NAME: Image.fromarray(pixels, "RGB")})[OUTPUT_NAME]
        return np.asarray(out, dtype=np.float32).reshape(x.shape)
