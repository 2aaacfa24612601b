"""Shared fixtures: tiny nets and images so the suite stays fast; shared data is optional (tests skip without it)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from toolkit.checkpoint import save_checkpoint
from toolkit.config import ArchConfig
from toolkit.models import TransformerNet, arch_config
from toolkit.parity import synthetic_photo
from toolkit.paths import shared_data

TINY_ARCH = arch_config("tiny")


def tiny_model(config: ArchConfig = TINY_ARCH, seed: int = 0) -> TransformerNet:
    """A randomly initialised small net whose instance-norm affine params are perturbed (so they matter)."""
    torch.manual_seed(seed)
    model = TransformerNet(config)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.InstanceNorm2d) and m.affine:
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def mini_arch(preset: str, **overrides) -> ArchConfig:
    """The preset's knobs on a narrow trunk of at most two residual blocks (keeping its largest dilations)."""
    cfg = dataclasses.replace(arch_config(preset), **overrides)
    blocks = min(cfg.res_blocks, 2)
    return dataclasses.replace(cfg, widths=tuple(max(4, w // 4) for w in cfg.widths), res_blocks=blocks,
                               dilations=cfg.dilations[len(cfg.dilations) - blocks:] if cfg.dilations else ())


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    return save_checkpoint(tmp_path / "tiny.safetensors", tiny_model(), {"name": "tiny"})


def natural_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth synthetic 'photo' (gradients + blobs + edges), H x W x 3 float32 in [0, 1]."""
    return synthetic_photo((h, w), seed, blobs=6)


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    from PIL import Image

    d = tmp_path / "photos"
    d.mkdir()
    for i in range(4):
        Image.fromarray((natural_image(80 + 8 * i, 96, seed=i) * 255).astype(np.uint8)).save(d / f"p{i}.png")
    return d


def require_shared(*parts: str) -> Path:
    """The shared-data path, or skip with the reason."""
    p = shared_data(*parts)
    if p is None:
        pytest.skip(f"../shared/data/{'/'.join(parts)} is absent (set TOOLKIT_DATA to the shared data folder)")
    return p


def benchmark(name: str):
    """benchmarks/<name>.py as a module (benchmarks/ on the path while it loads, as its scripts import quality)."""
    import importlib.util
    import sys

    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(folder))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
    return module
