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
        # int8 artifacts take/return quantised tensors (PT2E folds the I/O quantise ops): convert at the edges.
        self._in_q = _quant(inp)
        self._out_q = _quant(out)
        # Names as the app sees them: the signature's keys (tensor names carry "serving_default_" decorations).
        signature = next(iter(self.interpreter.get_signature_list().values()), {})
        self.input_names = tuple(signature.get("inputs", ()))
        self.output_names = tuple(signature.get("outputs", ()))
        _, h, w, _ = (int(v) for v in inp["shape"])
        self.sizes = ((h, w),)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = self.native(x)()
        if self._out_q:
            scale, zero, _ = self._out_q
            return ((y.astype(np.float32) - zero) * scale).transpose(0, 3, 1, 2).copy()
        return np.ascontiguousarray(y.transpose(0, 3, 1, 2))

    def native(self, x: np.ndarray):
        """The frame loop an app runs: x converted once to the file's own layout (NHWC, quantised for int8 input),
        and a call that copies it into the interpreter's input buffer, invokes it and copies the NHWC output out. The
        bench times this call, so LiteRT is not charged for the NCHW <-> NHWC transposes only the NCHW harness needs."""
        h, w = x.shape[2:]
        if (h, w) != self.sizes[0]:
            raise UserError(f"this TFLite artifact takes {self.sizes[0][0]}x{self.sizes[0][1]} only, got {h}x{w}; "
                            "export one for this size with --size")
        frame = x.transpose(0, 2, 3, 1)
        if self._in_q:
            scale, zero, dtype = self._in_q
            info = np.iinfo(dtype)
            frame = np.clip(np.round(frame / scale) + zero, info.min, info.max).astype(dtype)
        frame = np.ascontiguousarray(frame)

        def run() -> np.ndarray:
            # straight into / out of the interpreter's own buffers (set_tensor and get_tensor each add a copy); no
            # view outlives the statement, as invoke() requires
            self.interpreter.tensor(self._in)()[...] = frame
            self.interpreter.invoke()
            return np.array(self.interpreter.tensor(self._out)())

        return run


def _quant(details: dict):
    """(scale, zero_point, dtype) of a quantised I/O tensor, or None for float I/O."""
    if details["dtype"] not in (np.int8, np.uint8):
        return None
    scale, zero = details["quantization"]
    return float(scale), int(zero), details["dtype"]


def load_runner(path: str | Path, threads: int = 1, provider: str = "cpu") -> LiteRTRunner:
    return LiteRTRunner(Path(path), threads, provider)
