"""Temporal consistency: optical flow (OpenCV DIS), backward warping, occlusion masks, the warping error, and
`--stabilize` blending.

Conventions: images are H x W x C float32 in [0, 1] (or uint8, converted); a flow `f` from frame A to frame B is
H x W x 2 (dx, dy) in pixels such that A(x) ~ B(x + f(x)). Backward-warping B with that flow gives an image
aligned with A: warp(B, f)(x) = B(x + f(x)).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from toolkit.errors import UserError

FLO_MAGIC = 202021.25


def _gray_u8(img: np.ndarray) -> np.ndarray:
    import cv2

    if img.dtype != np.uint8:
        img = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img


def estimate_flow(a: np.ndarray, b: np.ndarray, preset: str = "medium") -> np.ndarray:
    """Dense flow from frame a to frame b (a(x) ~ b(x + flow(x))) with OpenCV's DIS optical flow."""
    import cv2

    presets = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
    dis = cv2.DISOpticalFlow_create(presets[preset])
    return dis.calc(_gray_u8(a), _gray_u8(b), None)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward warp: out(x) = image(x + flow(x)), bilinear, edges replicated."""
    import cv2

    h, w = flow.shape[:2]
    xx, yy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x, map_y = xx + flow[..., 0], yy + flow[..., 1]
    return cv2.remap(image, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def occlusion_mask(flow_ab: np.ndarray, flow_ba: np.ndarray, alpha: float = 0.01, beta: float = 0.5) -> np.ndarray:
    """True where the flow a->b is reliable: forward-backward consistent (Sundaram et al. 2010) and inside b.

    A pixel x is occluded (or the flow wrong) when |f_ab(x) + f_ba(x + f_ab(x))|^2 > alpha (|f_ab|^2 + |f_ba'|^2)
    + beta, with f_ba' the backward flow warped to a.
    """
    back = warp(flow_ba, flow_ab)
    diff = ((flow_ab + back) ** 2).sum(-1)
    mag = (flow_ab ** 2).sum(-1) + (back ** 2).sum(-1)
    h, w = flow_ab.shape[:2]
    xx, yy = np.meshgrid(np.arange(w), np.arange(h))
    tx, ty = xx + flow_ab[..., 0], yy + flow_ab[..., 1]
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    return (diff <= alpha * mag + beta) & inside


def flow_with_mask(a: np.ndarray, b: np.ndarray, preset: str = "medium") -> tuple[np.ndarray, np.ndarray]:
    """Flow a->b and its reliability mask, both estimated from the content frames."""
    f_ab, f_ba = estimate_flow(a, b, preset), estimate_flow(b, a, preset)
    return f_ab, occlusion_mask(f_ab, f_ba)


def warping_error(frame_a: np.ndarray, frame_b: np.ndarray, flow_ab: np.ndarray, mask: np.ndarray) -> float:
    """Mean squared difference between frame_a and frame_b warped into a, over reliable (non-occluded) pixels.

    Images in [0, 1] (uint8 is converted); 0 means perfectly consistent motion.
    """
    a, b = _float(frame_a), _float(frame_b)
    if not mask.any():
        raise UserError("warping error undefined: every pixel is occluded or invalid")
    d = (a - warp(b, flow_ab)) ** 2
    return float(d[mask].mean())


def _float(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)


def read_flo(path: str | os.PathLike) -> np.ndarray:
    """Read a Middlebury .flo file -> H x W x 2 float32."""
    path = Path(path)
    data = path.read_bytes() if path.is_file() else None
    if data is None:
        raise UserError(f"flow file {path} does not exist")
    if len(data) < 12 or np.frombuffer(data[:4], "<f4")[0] != FLO_MAGIC:
        raise UserError(f"{path} is not a Middlebury .flo file (bad magic number)")
    w, h = (int(v) for v in np.frombuffer(data[4:12], "<i4"))
    if w <= 0 or h <= 0 or len(data) < 12 + 8 * w * h:
        raise UserError(f"{path} is truncated: header says {w}x{h}; re-download it")
    return np.frombuffer(data[12:12 + 8 * w * h], "<f4").reshape(h, w, 2).copy()


def write_flo(path: str | os.PathLike, flow: np.ndarray) -> None:
    h, w = flow.shape[:2]
    with open(path, "wb") as fh:
        fh.write(np.float32(FLO_MAGIC).tobytes() + np.array([w, h], "<i4").tobytes())
        fh.write(flow.astype("<f4").tobytes())


class Stabilizer:
    """Blend each stylised frame with the previous *output* warped by the content flow, where the flow is reliable.

    out_t = m * (w * warp(out_{t-1}, f_{t->t-1}) + (1 - w) * styl_t) + (1 - m) * styl_t, with m the occlusion mask
    (softened by a small blur so seams do not show). Runs in order in the parent; flow comes from the workers.
    """

    def __init__(self, weight: float = 0.6):
        if not 0 <= weight < 1:
            raise UserError(f"stabilise weight must be in [0, 1), got {weight}")
        self.weight = weight
        self.prev: np.ndarray | None = None

    def __call__(self, styled: np.ndarray, flow_to_prev: np.ndarray | None, mask: np.ndarray | None) -> np.ndarray:
        import cv2

        cur = _float(styled)
        if self.prev is None or flow_to_prev is None or self.prev.shape != cur.shape:
            out = cur
        else:
            m = cv2.GaussianBlur(mask.astype(np.float32), (5, 5), 0)[..., None] * self.weight
            out = m * warp(self.prev, flow_to_prev) + (1 - m) * cur
        self.prev = out
        return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)
