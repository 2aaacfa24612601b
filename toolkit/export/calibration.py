"""Calibration images for static int8: real photos, never random noise (activation ranges must be realistic)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from toolkit.errors import UserError
from toolkit.export.base import Size

MIN_IMAGES = 8
DEFAULT_TRAIN_PHOTOS = 8
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


PACKAGED = Path(__file__).resolve().parents[1] / "calibration"  # CC BY film frames shipped with the package


def calibration_paths(paths: Sequence[str | Path] = ()) -> list[Path]:
    """The given files/folders expanded to image files; by default the shared eval photos + a few train photos, or,
    without shared data (a fresh install), the frames packaged in toolkit/calibration."""
    from toolkit.paths import shared_data

    if not paths:
        paths = [p for p in (shared_data("content", "eval"),) if p]
        train = shared_data("content", "train")
        if train:
            paths += sorted(p for p in train.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:DEFAULT_TRAIN_PHOTOS]
        if not paths:
            paths = [PACKAGED]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"calibration path {p} does not exist; pass a folder of photos with --calibration")
    if len(files) < MIN_IMAGES:
        raise UserError(f"int8 calibration needs at least {MIN_IMAGES} photos, found {len(files)}; "
                        "pass a folder of real photos with --calibration DIR")
    return files


def calibration_images(paths: Sequence[str | Path], size: Size, stride: int) -> list[np.ndarray]:
    """(1,3,H,W) float32 arrays at `size` (centre-cropped), one per photo."""
    from toolkit.data.images import load_rgb
    from toolkit.parity import fit_image

    h, w = (size[0] // stride * stride, size[1] // stride * stride)
    return [fit_image(load_rgb(p), (h, w)) for p in calibration_paths(paths)]
