"""Stylise images of any size and mode with a TransformerNet. torch is imported where a net runs, so the command
line can read MAX_SIDE for its help without it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from toolkit.errors import UserError

if TYPE_CHECKING:
    import torch


MAX_SIDE = 1536
"""The long side `toolkit stylize` runs the net at, at most, by default (`--max-side`). A net paints strokes of a fixed
size in pixels: on a 12 MP photo (4032 px) at full resolution they are a quarter of their size against the picture
that the looks were tuned at (256-px training crops, eval photos up to 1080 px), and seen whole the photo reads as
colour-graded. Capped and resized back (bicubic), the strokes keep their size but the upscale softens them. Measured
(benchmarks/look_scale.md, eval photos upscaled to 4032 px, style strength of the whole picture; goal 0.12): seen at
1024 px, full resolution 0.18-1.16 and a 1536 cap 0.06-0.15; seen at 2048 px, full resolution 0.09-0.38, a 1536 cap
0.09-0.31, a 2048 cap 0.07-0.20, a 1024 cap 0.16-0.59. 1536 and 2048 tie over both views (mean 0.150 / 0.147);
1536 wins at a phone screen's view on all seven styles, on 0.56x the pixels of 2048. `toolkit stylize` then joins on
the fine band of a second pass (`detail`, DETAIL_MAX_SIDE)."""

DETAIL_MAX_SIDE = 3072
"""The long side the detail pass (`stylize_rgb(..., detail=True)`) runs the net at, at most: twice MAX_SIDE. Measured
(benchmarks/results/look_scale_detail.md, the same photos, 7 styles): seen at 1024 px the same look as the cap alone
(mean strength 0.101 -> 0.102), seen at 2048 px stronger (0.198 -> 0.175), crisp strokes and edges at 100%; 4.0-4.9x
the capped run's time (1.3-1.5 -> 5.9-6.8 s a 12 MP photo on two cores) and 2.7 GB at most (starry_night, the
largest net; at the full 4032 px its pass alone takes 3.9 GB)."""


def check_sides(size: int | None, max_side: int | None) -> None:
    """A one-line error for a --size or --max-side a net cannot run at (--max-side 0 means no cap)."""
    from toolkit.data.images import check_pixels

    if size is not None:
        if size < 16:
            raise UserError(f"--size {size} is too small; use at least 16")
        check_pixels(size, size, f"--size {size}")
    if max_side is not None and max_side != 0 and max_side < 16:
        raise UserError(f"--max-side {max_side} is too small; use at least 16, or 0 for the full resolution")


def run_side(height: int, width: int, size: int | None = None, max_side: int | None = None) -> int | None:
    """The long side the net runs at for a height x width picture, or None for its own: `size` when given, else the
    picture's long side capped at `max_side` (None or 0: no cap)."""
    long_side = max(height, width)
    side = size if size else (max_side if max_side and long_side > max_side else None)
    return side if side != long_side else None


def stylize_tensor(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N,3,H,W) in [0,1] of any H, W >= the net's min_side -> same shape (the net pads and crops itself)."""
    import torch

    h, w = x.shape[-2:]
    if min(h, w) < model.min_side:
        raise UserError(f"image is {w}x{h}; this net needs at least {model.min_side} px per side; "
                        "use a larger image or --size")
    with torch.no_grad():
        return model(x)


def stylize_rgb(model: torch.nn.Module, rgb: np.ndarray, size: int | None = None, detail: bool = False) -> np.ndarray:
    """H x W x 3 [0,1] -> stylised H x W x 3. With `size`, the net runs at that long side and is resized back; with
    `detail` too, where that is smaller than the picture, a second pass at the picture's own size (at most
    DETAIL_MAX_SIDE) gives every frequency finer than the first pass holds (`join_bands`), so the strokes keep their
    size against the picture and the upscale does not blur them at 100%."""
    from toolkit.data.images import to_numpy

    long_side = max(rgb.shape[:2])
    out = painted_at(model, rgb, size)
    if detail and size and size < long_side:
        out = join_bands(out, painted_at(model, rgb, min(long_side, DETAIL_MAX_SIDE)), size / long_side)
    return to_numpy(out.clamp(0, 1))


def painted_at(model: torch.nn.Module, rgb: np.ndarray, side: int | None) -> torch.Tensor:
    """The net's output for the H x W x 3 picture run at long side `side` (None or its own: as it is), resized back
    to H x W (bicubic, not clamped), as (1,3,H,W)."""
    import torch.nn.functional as F

    from toolkit.data.images import resize_long_side, to_tensor

    h, w = rgb.shape[:2]
    out = stylize_tensor(model, to_tensor(resize_long_side(rgb, side) if side and side != max(h, w) else rgb))
    if out.shape[-2:] != (h, w):
        out = F.interpolate(out, size=(h, w), mode="bicubic", align_corners=False)
    return out


def join_bands(coarse: torch.Tensor, fine: torch.Tensor, scale: float, margin: int = 64) -> torch.Tensor:
    """Two (N,C,H,W) pictures of one scene -> `coarse`'s frequencies below 0.75 of the Nyquist rate of a picture
    `scale` times the size, `fine`'s above it, a raised cosine between 0.75 and 1 (a two-level Laplacian pyramid
    with a sharp split: a whole-picture view smaller than 0.75x the coarse pass's sees that pass alone). Filtered in
    the Fourier domain on the reflect-padded difference, so nothing wraps round the borders."""
    import torch
    import torch.nn.functional as F

    h, w = coarse.shape[-2:]
    pad = min(margin, h - 1, w - 1)
    diff = F.pad(fine - coarse, (pad, pad, pad, pad), mode="reflect")
    fy = torch.fft.fftfreq(diff.shape[-2]).abs()[:, None]
    fx = torch.fft.rfftfreq(diff.shape[-1])[None, :]
    r = torch.sqrt(fy ** 2 + fx ** 2) / (0.5 * scale)  # 1 = the coarse pass's Nyquist rate
    high = 0.5 - 0.5 * torch.cos(torch.pi * ((r - 0.75) / 0.25).clamp(0, 1))
    band = torch.fft.irfft2(torch.fft.rfft2(diff) * high, s=diff.shape[-2:])
    return coarse + band[..., pad:pad + h, pad:pad + w]


def output_path(src: Path, out_dir: Path, style: str) -> Path:
    from toolkit.paths import safe_name

    suffix = ".jpg" if src.suffix.lower() in (".jpg", ".jpeg") else ".png"
    return out_dir / f"{src.stem}.{safe_name(style, 'style name')}{suffix}"


def stylize_files(model: torch.nn.Module, paths: list[Path], out_dir: Path, style: str,
                  size: int | None = None, progress: bool = True, max_side: int | None = None,
                  detail: bool = False) -> list[Path]:
    """Stylise each image into out_dir/<stem>.<style>.{png,jpg} at its own size, the net run as `run_side` says
    (`size`, or capped at `max_side`; with `detail`, a run smaller than the image gets a second pass for its fine
    band); alpha is kept. Inputs are checked first."""
    from toolkit.data.images import decode_image, save_image
    from toolkit.fsutil import ensure_writable_dir

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
        out = stylize_rgb(model, img.rgb, run_side(*img.rgb.shape[:2], size, max_side), detail)
        written.append(save_image(output_path(Path(p), out_dir, style), out, img.alpha))
    return written
