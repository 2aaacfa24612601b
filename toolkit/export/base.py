"""The one table of export targets, and the types every exporter and runner shares.

FORMATS (filled in toolkit/export/__init__.py) drives CLI choices, help text, "did you mean", tests and the bench.
Every exporter module exposes:
    export(model: TransformerNet, spec: ExportSpec, dest: Path) -> None     # write one artifact at `dest`
Every runtime module (toolkit/runtime/<name>.py) exposes:
    load_runner(path: Path, threads: int = 1, provider: str = "cpu") -> Runner
A Runner takes and returns NCHW float32 RGB in [0, 1] whatever the artifact's own layout (NHWC for TFLite,
image input for CoreML); it converts at its edges so parity and bench compare like with like.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Tuple

import numpy as np

Size = Tuple[int, int]  # (height, width)


@dataclass(frozen=True)
class Target:
    name: str                      # what users type: --target coreml
    suffix: str                    # file suffix: .onnx | .mlpackage | .tflite
    precisions: Tuple[str, ...]    # what --precision accepts for this target
    runtimes: Tuple[str, ...]      # runtimes (toolkit/runtime/<name>.py) that can run it
    extra: str                     # pip extra that installs its backend
    exporter: str                  # module with export(model, spec, dest)
    dynamic_sizes: bool            # can one artifact take any H x W (multiple of the stride)?
    default_sizes: Tuple[Size, ...] = ()   # sizes exported when --size is not given (fixed-size targets)
    options: Tuple[str, ...] = ()  # target-specific options it accepts
    description: str = ""


@dataclass(frozen=True)
class ExportSpec:
    target: str
    precision: str = "fp32"
    sizes: Tuple[Size, ...] = ()   # () = dynamic H/W where the target allows it
    style: str = "style"
    metadata: dict = field(default_factory=dict, hash=False, compare=False)  # arch config, version, layout, ...
    calibration: Tuple[str, ...] = ()   # image paths for int8 calibration


class Runner(Protocol):
    name: str                      # runtime name, e.g. "onnxruntime", "litert", "coreml-reference"
    sizes: Tuple[Size, ...]        # fixed sizes it accepts; () = any multiple of the net's stride

    def __call__(self, x: np.ndarray) -> np.ndarray:  # (1,3,H,W) float32 [0,1] -> (1,3,H,W) float32 [0,1]
        ...
