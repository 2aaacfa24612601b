"""One parity checker for every export target: run the artifact in its own runtime on real images and compare it
with the torch model in a fixed order (output names, shapes, values). Tolerances are data: each precision row of
toolkit.formats holds its own. Every failure is collected with its numbers; any failure raises ParityError.

Layer: above toolkit.runtime (it runs artifacts), below toolkit.export (export_artifact proves parity on every file
it writes).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from toolkit.errors import UserError
from toolkit.formats import Size, Tolerance, get_target


class ParityError(UserError):
    """An artifact disagrees with its torch model beyond the tolerance for its target x precision."""


PARITY_IMAGES = 8  # photos per size: the worst of 8 is what a user's photo may meet (2 were 5 dB optimistic)
DEFAULT_PARITY_SIZES: tuple[Size, ...] = ((256, 256), (240, 320))
FP16_SAFETY_SIZE: Size = (720, 1280)   # instance-norm statistics over big frames are where fp16 overflows


def tolerance_for(target: str, precision: str) -> Tolerance:
    """The tolerance in the precision row of toolkit.formats (an unknown pair is a UserError)."""
    return get_target(target).precision(precision).tolerance


def parity_sizes_for(sizes: Sequence[Size], precision: str, stride: int, target: str | None = None) \
        -> tuple[Size, ...]:
    """Fixed-size artifacts are checked at their size; dynamic ones at two shapes (+ 720x1280 for fp16). An artifact
    holding enumerated sizes (CoreML) is checked like a dynamic one: `accepted_sizes` then keeps what it takes."""
    if target is not None and get_target(target).size_policy.kind == "enumerated":
        sizes = ()
    if sizes:
        return tuple(tuple(s) for s in sizes)
    extra = (FP16_SAFETY_SIZE,) if precision == "fp16" else ()
    return tuple((h // stride * stride, w // stride * stride) for h, w in DEFAULT_PARITY_SIZES + extra)


def accepted_sizes(wanted: Sequence[Size], declared: Sequence[Size]) -> list[Size]:
    """The wanted sizes an artifact accepts; an artifact with enumerated sizes (CoreML) that takes none of them is
    checked at its smallest declared size and at its largest (where fp16 overflow shows)."""
    wanted = [tuple(s) for s in wanted]
    if not declared:
        return wanted
    declared = [tuple(s) for s in declared]
    kept = [s for s in wanted if s in declared]
    if len(kept) == len(wanted):
        return kept
    by_area = sorted(declared, key=lambda s: s[0] * s[1])
    return list(dict.fromkeys(kept + [by_area[0], by_area[-1]]))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def parity_images(size: Size, count: int = PARITY_IMAGES) -> list[np.ndarray]:
    """(1,3,H,W) float32 inputs: real photos resized and centre-cropped to `size` (the shared eval photos, else the
    packaged calibration photos), topped up with generated ones."""
    from toolkit.paths import shared_data

    eval_dir = shared_data("content", "eval")
    photos = sorted(p for p in eval_dir.iterdir() if p.is_file()) if eval_dir else []
    photos = photos or sorted((Path(__file__).parent / "calibration").glob("*.jpg"))
    images = [fit_image(_decode(p), size) for p in photos[:count]]
    return images + [fit_image(synthetic_photo(size, seed=i), size) for i in range(count - len(images))]


def _decode(path: Path) -> np.ndarray:
    from toolkit.data.images import load_rgb

    return load_rgb(path)


def fit_image(rgb: np.ndarray, size: Size) -> np.ndarray:
    """Resize so the image covers `size`, centre-crop, -> (1,3,H,W) float32."""
    from PIL import Image

    h, w = size
    ih, iw = rgb.shape[:2]
    scale = max(h / ih, w / iw)
    nh, nw = max(h, round(ih * scale)), max(w, round(iw * scale))
    img = Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)).resize((nw, nh), Image.BICUBIC)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    top, left = (nh - h) // 2, (nw - w) // 2
    arr = arr[top:top + h, left:left + w]
    return np.ascontiguousarray(arr.transpose(2, 0, 1)[None])


def synthetic_photo(size: Size, seed: int, blobs: int = 8) -> np.ndarray:
    """A smooth natural-looking H x W x 3 image in [0, 1] (gradients, blobs, edges) when no photos are available."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / 7.0 + yy / 11.0)], axis=2)
    for _ in range(blobs):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(3, max(4, min(h, w) / 3))
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 1, 3)
    return np.clip(img, 0, 1).astype(np.float32)


def check_parity(model, artifact_path: str | Path, target: str, precision: str, sizes: Sequence[Size],
                 images_per_size: int = PARITY_IMAGES, runner=None) -> dict:
    """Compare the artifact (in its runtime) with the torch model at each size; raise ParityError on any miss.

    Returns {"tolerance", "runtime", "sizes": {"HxW": {"max_abs", "psnr_db"}}, "max_abs", "min_psnr_db"}.
    """
    from toolkit.runtime import load_runner

    tol = tolerance_for(target, precision)
    row = get_target(target)
    out_name = row.output_name
    runner = runner or load_runner(artifact_path)
    failures: list[str] = []
    for kind, expected in (("input", (row.input_name,)), ("output", (row.output_name,))):
        got = getattr(runner, f"{kind}_names", None)
        if got is not None and tuple(got) != expected:
            failures.append(f"{kind} names {list(got)} != {list(expected)}")
    results: dict[str, dict] = {}
    model = model.eval()
    for size in accepted_sizes(sizes, tuple(getattr(runner, "sizes", ()) or ())):
        key = f"{size[0]}x{size[1]}"
        worst_abs, worst_psnr = 0.0, math.inf
        for x in parity_images(tuple(size), images_per_size):
            with torch.no_grad():
                ref = model(torch.from_numpy(x)).numpy()
            out = runner(x)
            if out.shape != ref.shape:
                failures.append(f"output '{out_name}' at {key}: shape {tuple(out.shape)} != torch {tuple(ref.shape)}")
                break
            if not np.all(np.isfinite(out)):
                failures.append(f"output '{out_name}' at {key}: {int(np.sum(~np.isfinite(out)))} non-finite values "
                                "(fp16 overflow?)")
                worst_abs, worst_psnr = math.inf, -math.inf
                break
            worst_abs = max(worst_abs, float(np.max(np.abs(out - ref))))
            worst_psnr = min(worst_psnr, psnr(out, ref))
        results[key] = {"max_abs": worst_abs, "psnr_db": worst_psnr}
        if tol.max_abs is not None and worst_abs > tol.max_abs:
            failures.append(f"output '{out_name}' at {key}: max_abs {worst_abs:.3g} > {tol.max_abs:g}")
        if tol.psnr_db is not None and worst_psnr < tol.psnr_db:
            failures.append(f"output '{out_name}' at {key}: PSNR {worst_psnr:.1f} dB < {tol.psnr_db:g} dB")
    if failures:
        raise ParityError(f"{Path(artifact_path).name} ({target} {precision}, {runner.name}) fails parity "
                          f"[{tol.describe()}]: " + "; ".join(failures))
    finite = [r["psnr_db"] for r in results.values() if math.isfinite(r["psnr_db"])]
    return {
        "tolerance": tol.describe(),
        "runtime": runner.name,
        "images_per_size": images_per_size,
        "sizes": {k: {"max_abs": v["max_abs"], "psnr_db": json_float(v["psnr_db"])} for k, v in results.items()},
        "max_abs": max((r["max_abs"] for r in results.values()), default=0.0),
        "min_psnr_db": json_float(min(finite)) if finite else None,
    }


def json_float(v: float):
    return round(v, 2) if math.isfinite(v) else None
