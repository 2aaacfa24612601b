"""Contact sheets that show what a user sees at 100% and 300% zoom: photo | output | 100% crop | 300% crop."""

from __future__ import annotations

import numpy as np

from toolkit.data.images import resize_long_side
from toolkit.metrics import flat_mask

CROP, ZOOM = 128, 3


def flat_crop(photo: np.ndarray, side: int = CROP) -> tuple[int, int]:
    """Top-left of the flattest side x side window of the photo (where grain shows), on a half-window grid."""
    mask = flat_mask(photo).astype(np.float32)
    h, w = mask.shape
    side = min(side, h, w)
    best, at = -1.0, (0, 0)
    for top in range(0, h - side + 1, max(side // 2, 1)):
        for left in range(0, w - side + 1, max(side // 2, 1)):
            score = float(mask[top:top + side, left:left + side].mean())
            if score > best:
                best, at = score, (top, left)
    return at


def zoom(a: np.ndarray, k: int) -> np.ndarray:
    """`a` (HxWxC) shown k times larger by nearest neighbour, so single pixels stay visible as k x k blocks."""
    return np.repeat(np.repeat(a, k, 0), k, 1)


def _fit(a: np.ndarray, side: int) -> np.ndarray:
    a = resize_long_side(a, side) if max(a.shape[:2]) != side else a
    canvas = np.ones((side, side, 3), np.float32)
    canvas[: a.shape[0], : a.shape[1]] = a
    return canvas


def contact_row(photo: np.ndarray, output: np.ndarray, side: int = 256) -> np.ndarray:
    """photo | output, each fit to `side`; then a CROP x CROP window of the output's flattest area at 100% (shown
    at side/CROP x) and the centre of that window at ZOOM x (nearest neighbour, so single pixels stay visible)."""
    top, left = flat_crop(photo)
    crop = output[top:top + CROP, left:left + CROP]
    half = min(crop.shape[:2]) // (2 * ZOOM)
    cy, cx = crop.shape[0] // 2, crop.shape[1] // 2
    near = zoom(crop[cy - half:cy + half, cx - half:cx + half], ZOOM)
    return np.concatenate([_fit(photo, side), _fit(output, side), _fit(zoom(crop, side // CROP), side),
                           _fit(near, side)], axis=1)


def side_by_side(cells: list[np.ndarray], gap: int = 8) -> np.ndarray:
    """Pictures of one height left to right, with `gap`-px white bands between them."""
    band = np.ones((cells[0].shape[0], gap, 3), np.float32)
    return np.concatenate(sum([[c, band] for c in cells], [])[:-1], axis=1)


def stack_rows(rows: list[np.ndarray], gap: int = 8) -> np.ndarray:
    """Rows of any widths one below the other, each padded with white to the widest and followed by a `gap`-px band."""
    width = max(r.shape[1] for r in rows)
    return np.concatenate([np.pad(r, ((0, gap), (0, width - r.shape[1]), (0, 0)), constant_values=1.0)
                           for r in rows], axis=0)
