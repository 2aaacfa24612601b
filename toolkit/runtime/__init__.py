"""Runtimes: one Runner per runtime (onnxruntime, LiteRT, CoreML), all NCHW float32 [0,1] in and out.

`load_runner(path)` picks the runtime from the artifact's suffix (toolkit.export.FORMATS says which).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from toolkit.errors import MissingBackendError, UserError
from toolkit.export.base import Runner


class MissingProviderError(MissingBackendError):
    """A provider/delegate this runtime build lacks; the message says what would provide it."""

    def __init__(self, message: str):
        UserError.__init__(self, message)


def load_runner(path: str | Path, threads: int = 1, provider: str = "cpu") -> Runner:
    from toolkit.export import RUNTIME_BY_SUFFIX, target_for_path

    path = Path(path)
    target = target_for_path(path)
    if not path.exists():
        raise UserError(f"artifact {path} does not exist")
    if threads < 1:
        raise UserError(f"threads must be >= 1, got {threads}")
    runtime = RUNTIME_BY_SUFFIX[target.suffix]
    try:
        module = importlib.import_module(f"toolkit.runtime.{runtime}")
    except ModuleNotFoundError as exc:
        if exc.name == f"toolkit.runtime.{runtime}":
            raise UserError(f"the {runtime} runtime is not available in this build") from exc
        raise
    return module.load_runner(path, threads=threads, provider=provider)
