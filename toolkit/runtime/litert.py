"""LiteRT (TFLite) Runner: ai-edge-litert interpreter with its default XNNPACK CPU delegate; NHWC inside."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.errors import UserError, require
from toolkit.runtime import MissingProviderError

PROVIDERS = ("cpu", "xnnpack")  # the interpreter's CPU path is XNNPACK by default


class LiteRTRunner:
    def __init__(self, path: Path, threads: int = 1, provider: str = "cpu"):
        if provider not in PROVIDERS:
            if provider in ("gpu", "cuda", "nnapi"):
                raise MissingProviderError(f"the LiteRT {provider} delegate is not available on this machine "
                                           "(it ships with the Android/iOS runtimes); use provider 'cpu'")
            raise UserError(f"unknown LiteRT provider '{provider}'; choose from {', '.join(PROVIDERS)}")
        interpreter_mod = require("ai_edge_litert.interpreter", "tflite")
        try:
            self.interpreter = interpreter_mod.Interpreter(model_path=str(path), num_threads=threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise UserError(f"LiteRT cannot load {path} ({str(exc).splitlines()[0][:200]}); "
                            "it is corrupt or not a toolkit export: re-export it") from exc
        self.name = "litert"
        self.provider = provider
        inp = self.interpreter.get_input_details()[0]
        out = self.interpreter.get_output_details()[0]
        self._in, self._out = inp["index"], out["index"]
        self.input_names = tuple(d["name"] for d in self.interpreter.get_input_details())
        self.output_names = tuple(d["name"] for d in self.interpreter.get_output_details())
        _, h, w, _ = (int(v) for v in inp["shape"])
        self.sizes = ((h, w),)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        h, w = x.shape[2:]
        if (h, w) != self.sizes[0]:
            raise UserError(f"this TFLite artifact takes {self.sizes[0][0]}x{self.sizes[0][1]} only, got {h}x{w}; "
                            "export one for this size with --size")
        self.interpreter.set_tensor(self._in, np.ascontiguousarray(x.transpose(0, 2, 3, 1), dtype=np.float32))
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self._out)
        return np.ascontiguousarray(y.transpose(0, 3, 1, 2), dtype=np.float32)


def load_runner(path: str | Path, threads: int = 1, provider: str = "cpu") -> LiteRTRunner:
    return LiteRTRunner(Path(path), threads, provider)
