"""Stylise images of any size and mode with a TransformerNet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from toolkit.data.images import decode_image, resize_long_side, save_image, to_numpy, to_tensor
from toolkit.errors import UserError
from toolkit.fsutil import ensure_writable_dir


@torch.no_grad()
def stylize_tensor(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N,3,H,W) in [0,1] of any H, W >= the net's min_side -> same shape (the net pads and crops itself)."""
    h, w = x.shape[-2:]
    if min(h, w) < model.min_side:
        raise UserError(f"image is {w}x{h}; this net needs at least {model.min_side} px per side; "
                        "use a larger image or --size")
    return model(x)


def stylize_rgb(model: torch.nn.Module, rgb: np.ndarray, size: int | None = None) -> np.ndarray:
    """H x W x 3 [0,1] -> stylised H x W x 3. With `size`, the net runs at that long side and is resized back."""
    h, w = rgb.shape[:2]
    work = resize_long_side(rgb, size) if size and size != max(h, w) else rgb
    out = stylize_tensor(model, to_tensor(work))
    if out.shape[-2:] != (h, w):
        out = F.interpolate(out, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
    return to_numpy(out)


def output_path(src: Path, out_dir: Path, style: str) -> Path:
    from toolkit.paths import safe_name

    suffix = ".jpg" if src.suffix.lower() in (".jpg", ".jpeg") else ".png"
    return out_dir / f"{src.stem}.{safe_name(style, 'style name')}{suffix}"


def stylize_files(model: torch.nn.Module, paths: list[Path], out_dir: Path, style: str,
                  size: int | None = None, progress: bool = True) -> list[Path]:
    """Stylise each image into out_dir/<stem>.<style>.{png,jpg}; alpha is kept. Inputs are checked first."""
    for p in paths:
        if not Path(p).is_file():
            raise UserError(f"image {p} does not exist")
    ensure_writable_dir(out_dir)
    model.eval()
    written = []
    iterator = paths
    if progress and len(paths) > 1:
        from tqdm import tqdm

        iterator = tqdm(paths, desc=f"stylize {style}", unit="img")
    for p in iterator:
        img = decode_image(p)
        out = stylize_rgb(model, img.rgb, size)
        written.append(save_image(output_path(Path(p), out_dir, style), out, img.alpha))
    return written
