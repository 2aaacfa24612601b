"""Picture-quality measures of a stylised image against the photo it came from (numpy, HxWx3 or 3xHxW in [0, 1]).

grain        the even/odd phase imbalance of the output's gradients in the photo's flat areas: a net whose finest
             texture is laid out by a stride-2 lattice makes every other row/column of pixels steeper than its
             neighbours (a 2-pixel grain that reads as speckle at 100%). 1.0 = no imbalance; photos measure ~1.0-1.05.
lattice      the same phase imbalance at the nets' cell periods (4 and 8 px, the worse): small squares repeating every
             cell of a 1/4- or 1/8-resolution trunk over a flat sky, which a net pushed to paint texture where the
             photo has none draws at 300% zoom. A JPEG photo's own 8x8 blocks raise its value (1.1-3.4 on the eval
             photos at native size), so nets are compared with each other on the same photos, the photo's own beside
             them.
edge_stripe  how much brighter the outer 2-pixel ring is than the band just inside it beyond the photo's own
             brighter step there, or darker beyond its darker step: a stripe the net draws (a net that turns a
             photo's dark scan line into a bright stripe scores that stripe's step; one that keeps or softens the
             photo's own line scores 0). `edge_stripe_change` is the two-sided |output step - photo step|.
stability    PSNR of the output under sensor noise: the photo plus Gaussian noise of 1/255 (seeded) against the photo.
             A net whose texture flips with the last bit of a pixel flickers on video and cannot pass int8 parity
             (rounding to 8 bits perturbs it about as much); the shipped nets measure 29-44 dB on the worst photo.
stroke_turn  whether the strokes follow the photo or the screen: the photo's central square turned a quarter turn,
             painted, turned back, and the strokes' local directions compared with the unturned painting's
             (toolkit/losses/turns.py: stroke_turn_error). 0 = every stroke takes its direction from the photo,
             1 = unrelated to it, 2 = fixed to the screen (a net that hatches every photo on one diagonal).
style_strength   Gram distance of the output to the style image over the photo's own distance, per tap
             relu1_1..relu3_1 and averaged (lower = more stylised), through `toolkit.losses.measuring_loss`.
"""

from __future__ import annotations

import numpy as np

from toolkit.config import LATTICE_PERIODS

LUMA = np.array([0.299, 0.587, 0.114], np.float64)
FLAT_QUANTILE = 0.4   # the photo's flattest 40% (8x8 mean gradient) is where grain shows
NOISE = 1.0 / 255     # stability's Gaussian noise std (a clean camera frame's own noise is a few levels)
EDGE_BAND = 2         # ring width judged by edge_stripe (the deploy form's rewrite and most pads reach 2 px)


def _luma(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image, np.float64)
    if a.ndim == 4:
        a = a[0]
    if a.shape[0] == 3 and a.shape[-1] != 3:
        a = a.transpose(1, 2, 0)
    return a @ LUMA


def _box_mean(a: np.ndarray, k: int) -> np.ndarray:
    """k x k box mean with edge replication (same size as `a`)."""
    p = np.pad(a, ((k // 2, k - 1 - k // 2), (k // 2, k - 1 - k // 2)), mode="edge")
    c = np.cumsum(np.cumsum(np.pad(p, ((1, 0), (1, 0))), 0), 1)
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)


def flat_mask(photo: np.ndarray, quantile: float = FLAT_QUANTILE) -> np.ndarray:
    """Boolean HxW mask of the photo's flat areas: 8x8-averaged gradient magnitude at or below its quantile."""
    y = _luma(photo)
    gy, gx = np.gradient(y)
    g = _box_mean(np.hypot(gx, gy), 8)
    return g <= np.quantile(g, quantile)


def grain(output: np.ndarray, photo: np.ndarray | None = None, mask: np.ndarray | None = None,
          period: int = 2) -> float:
    """Phase imbalance (>= 1) of `output`'s gradients on the photo's flat areas: the mean gradient magnitude across
    pixel boundaries of each phase modulo `period`, steepest over shallowest, averaged over rows and columns. Period 2
    is the even/odd ratio of the 2-pixel grain."""
    y = _luma(output)
    if mask is None:
        mask = flat_mask(photo) if photo is not None else np.ones_like(y, bool)
    ratios = []
    for axis in (0, 1):
        d = np.abs(np.diff(y, axis=axis))
        m = (mask[1:, :] & mask[:-1, :]) if axis == 0 else (mask[:, 1:] & mask[:, :-1])
        phase = np.arange(d.shape[axis]) % period
        phase = np.broadcast_to(phase[:, None] if axis == 0 else phase[None, :], d.shape)[m]
        counts = np.bincount(phase, minlength=period)
        means = np.bincount(phase, weights=d[m], minlength=period) / np.maximum(counts, 1)
        ratios.append(float(means.max()) / max(float(means.min()), 1e-12))
    return float(np.mean(ratios))


def lattice(output: np.ndarray, photo: np.ndarray | None = None, mask: np.ndarray | None = None) -> float:
    """The lattice measure above: `grain` at each of LATTICE_PERIODS, the worse."""
    if mask is None and photo is not None:
        mask = flat_mask(photo)  # once, not once per period
    return max(grain(output, mask=mask, period=period) for period in LATTICE_PERIODS)


def _border_steps(output: np.ndarray, photo: np.ndarray, band: int) -> tuple[np.ndarray, np.ndarray]:
    from toolkit.losses.edges import border_steps

    return np.array(border_steps(_luma(output), band)), np.array(border_steps(_luma(photo), band))


def edge_stripe(output: np.ndarray, photo: np.ndarray, band: int = EDGE_BAND) -> float:
    """The largest step of the output's `band`-px ring against the 2*band pixels inside it that the photo does not
    have, over the four sides, in luma units of [0, 1]: brighter than the photo's own brighter step (0 when the
    photo's ring is darker), or darker than its own darker step."""
    from toolkit.losses.edges import drawn_steps

    out, own = _border_steps(output, photo, band)
    return float(drawn_steps(out, own).max())


def edge_stripe_change(output: np.ndarray, photo: np.ndarray, band: int = EDGE_BAND) -> float:
    """Largest |output step - photo step| over the four sides: edge_stripe until session 21. It also counts a
    photo's own edge line (a dark scan line) that the style softens or removes, which is no stripe and was most of
    its values over 0.05 on photos beyond the eval set (benchmarks/stripe_survey.py)."""
    out, own = _border_steps(output, photo, band)
    return float(np.abs(out - own).max())


def style_strength(loss, output, photo) -> dict:
    """Per VGG tap, the Gram distance of `output` to the style over the photo's own, averaged over the taps (each
    scale of texture counts once, where a summed distance is dominated by the tap with the largest Grams); plus the
    content loss. `loss` is a measuring PerceptualLoss (toolkit.losses.measuring_loss); (1,3,H,W) tensors."""
    import torch

    with torch.no_grad():
        out_f, photo_f = loss.encoder(output), loss.encoder(photo)
        ratios = [o / max(p, 1e-12) for o, p in zip(loss.tap_distances(out_f), loss.tap_distances(photo_f))]
        content = loss.content_loss(out_f, photo_f, loss.content_layers).item()
    return {"style_strength": float(np.mean(ratios)), "content": content}


def look_row(model, loss, rgb: np.ndarray) -> tuple[dict, np.ndarray]:
    """Every measure above for one photo (HxWx3 in [0, 1]) stylised by `model` at its native size; returns the row
    and the output image."""
    import torch

    from toolkit.data.images import to_numpy, to_tensor
    from toolkit.stylize import stylize_tensor

    x = to_tensor(rgb)
    with torch.no_grad():
        y = stylize_tensor(model, x)
    out = to_numpy(y)
    mask = flat_mask(rgb)
    row = {**style_strength(loss, y, x), "grain": grain(out, mask=mask), "photo_grain": grain(rgb, mask=mask),
           "lattice": lattice(out, mask=mask), "photo_lattice": lattice(rgb, mask=mask),
           "edge_stripe": edge_stripe(out, rgb), "edge_stripe_change": edge_stripe_change(out, rgb),
           "stability_db": stability(model, x, y), "stroke_turn": stroke_turn(model, x), "layout": layout_lost(y, x)}
    return row, out


# The measures of look_row that describe a style on average over photos (the quality benchmark's columns, the
# manifest's quality block); edge stripes and stability count at their worst photo instead.
AVERAGED = ("style_strength", "content", "grain", "photo_grain", "lattice", "photo_lattice", "stroke_turn", "layout")


def look_mean(rows: list[dict]) -> dict:
    """The mean of each AVERAGED measure over look_row rows (one per photo)."""
    return {k: float(np.mean([r[k] for r in rows])) for k in AVERAGED}


def layout_lost(y, x) -> float:
    """How far the light and dark masses of the output `y` lie from the photo `x`'s ((1,3,H,W) tensors), as the tone
    term measures them over 8-px cells (toolkit/losses/tone.py): 0 where the photo's lie, about 2 unrelated, 4
    inverted. What keeps a scene readable under a style that paints large masses."""
    from toolkit.losses.tone import tone_loss

    return float(tone_loss(y, x))


def stability(model, x, y=None, noise: float = NOISE) -> float:
    """PSNR (dB) of the net's output on the (1,3,H,W) photo `x` plus seeded Gaussian noise of std `noise` against its
    output `y` on the photo itself (computed when not given)."""
    import torch

    from toolkit.parity import psnr

    n = noise * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x) if y is None else y
        return psnr(model((x + n).clamp(0, 1)).numpy(), y.numpy())


def stroke_turn(model, x, side: int = 512) -> float:
    """The stroke_turn measure above on the (1,3,H,W) photo's central square (at most `side`, a multiple of the
    net's stride)."""
    import torch

    from toolkit.losses.turns import stroke_turn_error

    stride = model.config.stride
    n = min(side, *x.shape[-2:]) // stride * stride
    top, left = (x.shape[-2] - n) // 2, (x.shape[-1] - n) // 2
    square = x[..., top:top + n, left:left + n]
    with torch.no_grad():
        return stroke_turn_error(model, square, model(square), stride)
