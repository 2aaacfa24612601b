"""Safe image decoding (any mode, EXIF orientation, 16-bit), atomic saving, and the content-crop dataset."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from toolkit.config import CROP_ZOOM
from toolkit.errors import UserError
from toolkit.fsutil import atomic_path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
DEFAULT_MAX_PIXELS = 64_000_000  # 8000x8000: a 16k panorama still passes; a 20000x20000 "bomb" (6.4 GB as float) not
MAX_DRAWS = 16  # photos a training sample draws in a row before unreadable ones stop the run


def max_pixels() -> int:
    """The pixel limit for decoded images and requested sizes: $TOOLKIT_MAX_PIXELS, else 64 MP."""
    try:
        return int(os.environ.get("TOOLKIT_MAX_PIXELS", DEFAULT_MAX_PIXELS))
    except ValueError:
        raise UserError("TOOLKIT_MAX_PIXELS must be an integer number of pixels") from None


def check_pixels(height: int, width: int, what: str) -> None:
    """A one-line error when `what` (an image or a requested size) is over the pixel limit or not positive."""
    if height < 1 or width < 1:
        raise UserError(f"{what} is {width}x{height}; sizes must be positive")
    limit = max_pixels()
    if height * width > limit:
        raise UserError(f"{what} is {width}x{height} = {height * width / 1e6:.0f} MP, over the {limit / 1e6:.0f} MP "
                        "limit; downscale it, or raise the limit with TOOLKIT_MAX_PIXELS=<pixels>")


@dataclass
class DecodedImage:
    rgb: np.ndarray               # H x W x 3 float32 in [0, 1]
    alpha: np.ndarray | None      # H x W float32 in [0, 1], or None


def decode_image(path: str | os.PathLike) -> DecodedImage:
    """Decode any PIL-readable image: EXIF orientation applied; palette, greyscale, CMYK, 16-bit and alpha handled."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"image {path} does not exist")
    Image.MAX_IMAGE_PIXELS = max_pixels()  # PIL's own check (it warns past this and refuses past twice it)
    try:
        with Image.open(path) as im:
            check_pixels(im.height, im.width, f"image {path}")  # before anything is decoded
            im = ImageOps.exif_transpose(im)
            im.load()
    except Image.DecompressionBombError as exc:
        raise UserError(f"image {path} is over the {max_pixels() / 1e6:.0f} MP limit ({exc}); downscale it, or raise "
                        "the limit with TOOLKIT_MAX_PIXELS=<pixels>") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"cannot decode image {path} ({exc}); pass a valid JPEG/PNG/WebP/TIFF file") from exc
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float32)
        grey = arr / (65535.0 if arr.max() > 255 else 255.0)
        return DecodedImage(np.repeat(np.clip(grey, 0, 1)[..., None], 3, axis=2), None)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    alpha = None
    if im.mode in ("RGBA", "LA", "PA"):
        alpha = np.asarray(im.getchannel("A"), dtype=np.float32) / 255.0
    if im.mode == "RGB;16" or (im.mode == "RGB" and np.asarray(im).dtype != np.uint8):
        rgb = np.asarray(im, dtype=np.float32) / 65535.0
    else:
        rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return DecodedImage(np.ascontiguousarray(rgb), alpha)


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    return decode_image(path).rgb


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """H x W x 3 float [0,1] -> 1 x 3 x H x W."""
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).unsqueeze(0).float()


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """1 x 3 x H x W (or 3 x H x W) -> H x W x 3 float32."""
    t = t.detach().cpu().float()
    if t.dim() == 4:
        t = t[0]
    return t.permute(1, 2, 0).numpy()


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def save_image(path: str | os.PathLike, rgb: np.ndarray, alpha: np.ndarray | None = None, quality: int = 95) -> Path:
    """Write atomically; keeps alpha when given (PNG/WebP), JPEG quality `quality`."""
    from PIL import Image

    path = Path(path)
    data = to_uint8(rgb)
    im = Image.fromarray(data, "RGB")
    if alpha is not None:
        im.putalpha(Image.fromarray(to_uint8(alpha), "L"))
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}.get(
        path.suffix.lower(), "PNG")
    if fmt == "JPEG" and alpha is not None:
        im = im.convert("RGB")
    with atomic_path(path) as tmp:
        im.save(tmp, format=fmt, **({"quality": quality} if fmt in ("JPEG", "WEBP") else {}))
    return path


def list_images(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        problem = "is a file, not a folder" if folder.exists() else "does not exist"
        raise UserError(f"content directory {folder} {problem}; pass a folder of photos")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise UserError(f"content directory {folder} has no images ({', '.join(IMAGE_SUFFIXES)}); add photos")
    return files


def resize_long_side(rgb: np.ndarray, long_side: int) -> np.ndarray:
    from PIL import Image

    h, w = rgb.shape[:2]
    scale = long_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    im = Image.fromarray(to_uint8(rgb)).resize(size, Image.Resampling.LANCZOS)
    return np.asarray(im, dtype=np.float32) / 255.0


def edge_ramp(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The crop brightened or darkened toward one random side, as photos' own frames are: half the time a scan line
    (1-2 px, by 0.1-0.5), else a ramp (by 0.03-0.15 at the border, falling linearly to 0 over 2-12 px: vignetting,
    resampling halos, a strip of water)."""
    side = int(rng.integers(4))
    if rng.random() < 0.5:
        width, amplitude, profile = int(rng.integers(1, 3)), rng.uniform(0.1, 0.5), np.ones
    else:
        width, amplitude, profile = int(rng.integers(2, 13)), rng.uniform(0.03, 0.15), lambda w: 1 - np.arange(w) / w
    step = (amplitude * rng.choice((-1.0, 1.0)) * profile(width)).astype(np.float32)
    turned = np.rot90(crop, side).copy()  # that side on top
    turned[:width] += step[:, None, None]
    return np.clip(np.rot90(turned, -side), 0, 1)


def random_crop(rgb: np.ndarray, size: int, rng: np.random.Generator, frame: float = 0.0,
                ramps: float = 0.0, zoom: float = CROP_ZOOM) -> np.ndarray:
    """Resize so the short side is size x U(1, zoom) (zooms vary), then take a random size x size crop, maybe mirrored.

    A larger `zoom` shows the net closer views: a smaller part of the scene per crop, with the larger flat areas and
    softer detail that a photo has at its native size, where the net runs at inference (the default's crops see most
    of a training photo's scene).

    With probability `frame` the crop is a corner of the photo instead: a random crop almost never touches the
    photo's own frame (its edge rows, with their vignetting, resampling halos and scan lines), yet every photo a user
    stylises has one, so a net trained on inner crops alone meets it first at inference. With probability `ramps`
    the crop gets an `edge_ramp`, so the net sees many such frames (the edge loss asks it to keep their steps)."""
    from PIL import Image

    h, w = rgb.shape[:2]
    scale = size * rng.uniform(1.0, zoom) / min(h, w)  # one draw whatever `zoom`: other runs' crops unchanged
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    im = Image.fromarray(to_uint8(rgb)).resize((nw, nh), Image.Resampling.BILINEAR)
    top, left = rng.integers(0, nh - size + 1), rng.integers(0, nw - size + 1)
    if frame and rng.random() < frame:  # drawn only when asked: frame=0 keeps every earlier run's crops
        top, left = (nh - size) * rng.integers(2), (nw - size) * rng.integers(2)
    crop = np.asarray(im, dtype=np.float32)[top: top + size, left: left + size] / 255.0
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if ramps and rng.random() < ramps:  # drawn only when asked, as frame
        crop = edge_ramp(crop, rng)
    return np.ascontiguousarray(crop)


class ContentCrops(Dataset):
    """Sample i is a deterministic function of (seed, i): resume and DDP shards reproduce the same batches.

    An unreadable photo among readable ones is skipped with a warning naming it (the sample draws another photo,
    still deterministically), so one bad file does not stop a long training partway; a folder where MAX_DRAWS draws
    in a row fail stops it with the decode error."""

    def __init__(self, files: list[Path], size: int, seed: int, frame: float = 0.0, ramps: float = 0.0,
                 zoom: float = CROP_ZOOM):
        self.files, self.size, self.seed, self.frame, self.ramps, self.zoom = files, size, seed, frame, ramps, zoom
        self.skipped: set[str] = set()  # the decode errors already warned about

    def __len__(self) -> int:
        return 1 << 40  # indexed by global sample number, never exhausted

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, index])
        failed: list[UserError] = []
        for _ in range(MAX_DRAWS):
            path = self.files[int(rng.integers(len(self.files)))]
            try:
                rgb = load_rgb(path)
            except UserError as exc:
                failed.append(exc)
                continue
            for exc in failed:  # only once a photo has been read: a folder of unreadable ones gets just the error
                if exc.args[0] not in self.skipped:
                    self.skipped.add(exc.args[0])
                    warnings.warn(f"skipping a training photo: {exc}", stacklevel=2)
            crop = random_crop(rgb, self.size, rng, self.frame, self.ramps, self.zoom)
            return torch.from_numpy(crop.transpose(2, 0, 1).copy())
        raise failed[-1]
