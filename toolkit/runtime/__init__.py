"""Runtimes: one Runner per runtime (onnxruntime, LiteRT, CoreML), all NCHW float32 [0,1] in and out.

`load_runner(path)` picks the runtime from the artifact's suffix (the target row in toolkit.formats says which).
This layer sits above toolkit.formats and below the exporters: a runner never imports an exporter (or torch).
Every runtime module (toolkit/runtime/<name>.py) exposes:
    load_runner(path: Path, threads: int = 1, provider: str = "cpu") -> Runner
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol, Tuple

import numpy as np

from toolkit.errors import MissingBackendError, UserError
from toolkit.formats import Size, target_for_path


class Runner(Protocol):
    """Takes and returns NCHW float32 RGB in [0, 1] whatever the artifact's own layout (NHWC for TFLite, an image
    input for CoreML): it converts at its edges so parity and bench compare like with like. A runner whose file takes
    another layout may also offer `native(x) -> call`, the runtime's own frame loop on x converted once to that
    layout, which the bench times instead (toolkit.bench.rows.measure)."""

    name: str                      # runtime name, e.g. "onnxruntime", "litert", "coreml-reference"
    sizes: Tuple[Size, ...]        # fixed sizes it accepts; () = any multiple of the net's stride

    def __call__(self, x: np.ndarray) -> np.ndarray:  # (1,3,H,W) float32 [0,1] -> (1,3,H,W) float32 [0,1]
        ...


class MissingProviderError(MissingBackendError):
    """A provider/delegate this runtime build lacks; the message says what would provide it."""

    def __init__(self, message: str):
        UserError.__init__(self, message)


def load_runner(path: str | Path, threads: int = 1, provider: str = "cpu") -> Runner:
    path = Path(path)
    runtime = target_for_path(path).runtime
    if not path.exists():
        raise UserError(f"artifact {path} does not exist")
    if threads < 1:
        raise UserError(f"threads must be >= 1, got {threads}")
    try:
        module = importlib.import_module(f"toolkit.runtime.{runtime}")
    except ModuleNotFoundError as exc:
        if exc.name == f"toolkit.runtime.{runtime}":
            raise UserError(f"the {runtime} runtime is not available in this build") from exc
        raise
    return module.load_runner(path, threads=threads, provider=provider)
