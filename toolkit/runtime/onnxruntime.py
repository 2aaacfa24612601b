"""onnxruntime Runner: CPU execution provider by default; other providers only when this build has them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.errors import UserError, require
from toolkit.runtime import MissingProviderError

PROVIDERS = {"cpu": "CPUExecutionProvider", "xnnpack": "XnnpackExecutionProvider",
             "cuda": "CUDAExecutionProvider", "coreml": "CoreMLExecutionProvider"}
PROVIDER_PACKAGE = {"cuda": "onnxruntime-gpu", "xnnpack": "an onnxruntime build with XNNPACK (e.g. onnxruntime-android)",
                    "coreml": "onnxruntime on macOS"}


class OnnxRunner:
    def __init__(self, path: Path, threads: int = 1, provider: str = "cpu"):
        ort = require("onnxruntime", "onnx")
        if provider not in PROVIDERS:
            raise UserError(f"unknown onnxruntime provider '{provider}'; choose from {', '.join(PROVIDERS)}")
        ep = PROVIDERS[provider]
        if ep not in ort.get_available_providers():
            raise MissingProviderError(
                f"onnxruntime provider '{provider}' ({ep}) is not in this build (it has "
                f"{', '.join(ort.get_available_providers())}); it needs {PROVIDER_PACKAGE.get(provider, provider)}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=[ep])
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types for a damaged file
            raise UserError(f"onnxruntime cannot load {path} ({str(exc).splitlines()[0][:200]}); "
                            "it is corrupt or not a toolkit export: re-export it") from exc
        self.name = "onnxruntime" if provider == "cpu" else f"onnxruntime-{provider}"
        self.provider = provider
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.output_names = tuple(o.name for o in self.session.get_outputs())
        h, w = inp.shape[2], inp.shape[3]
        self.sizes = ((h, w),) if isinstance(h, int) and isinstance(w, int) else ()
        stride = self.session.get_modelmeta().custom_metadata_map.get("stride", "1")
        self.min_side = 2 * int(stride) if stride.isdigit() else 1  # dynamic graphs pad to the stride themselves

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        h, w = x.shape[-2:]
        if self.sizes and (h, w) not in self.sizes:
            raise UserError(f"this model takes {self.sizes[0][0]}x{self.sizes[0][1]} only, got {h}x{w}; "
                            "resize the image or export with dynamic sizes")
        if min(h, w) < self.min_side:
            raise UserError(f"image is {h}x{w}; this model needs at least {self.min_side} px per side")
        return self.session.run(None, {self.input_name: x})[0].astype(np.float32, copy=False)


def load_runner(path: str | Path, threads: int = 1, provider: str = "cpu") -> OnnxRunner:
    return OnnxRunner(Path(path), threads, provider)
