"""torch eager as a Runner: the reference every exported runtime is compared against (bench, parity)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from toolkit.errors import UserError

PROVIDERS = ("cpu", "cuda")


class TorchEagerRunner:
    name = "torch-eager"
    sizes: tuple = ()   # any multiple of the net's stride

    def __init__(self, model: torch.nn.Module, threads: int = 1, provider: str = "cpu"):
        if provider not in PROVIDERS:
            raise UserError(f"torch eager has no provider '{provider}'; use one of: {', '.join(PROVIDERS)}")
        if provider == "cuda" and not torch.cuda.is_available():
            raise UserError("torch eager provider 'cuda' needs a CUDA build of torch and a GPU; use --provider cpu")
        if threads < 1:
            raise UserError(f"threads must be >= 1, got {threads}")
        self.device = torch.device(provider)
        self.model = model.eval().to(self.device)
        self.threads = threads

    def __call__(self, x: np.ndarray) -> np.ndarray:
        # torch's thread count is process-wide: set it per call so runners with different counts can interleave.
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            y = self.model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device))
        return y.float().cpu().numpy()


def load_runner(path, threads: int = 1, provider: str = "cpu") -> TorchEagerRunner:
    """A Runner for a checkpoint (`toolkit train` .safetensors) or an in-memory nn.Module."""
    if isinstance(path, torch.nn.Module):
        return TorchEagerRunner(path, threads, provider)
    from toolkit.checkpoint import load_checkpoint

    return TorchEagerRunner(load_checkpoint(Path(path)).model, threads, provider)
