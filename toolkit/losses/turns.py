"""Quarter-turn equivariance: strokes that follow the picture, not the screen.

A feed-forward net trained on Gram matrices is free to paint every photo with strokes in one fixed direction (the
shipped starry_night hatched every face and sky on the same diagonal): the Grams count how much of each
orientation there is, not where. A painter's strokes follow the forms. Turning the photo a quarter turn should turn
the picture with it,
    mean (T(turn(x)) - turn(T(x)))^2   over the interior,
which a net with a preferred screen direction cannot satisfy: it has to take each stroke's direction from the photo
(its edges and shading), so strokes wrap around round shapes and run along long ones.

The turn is taken about a point of the net's stride lattice: a stride-s net samples its input at multiples of s from
its origin, and turning a crop about its own centre would move every sample half a lattice period (the shift term's
job, toolkit/losses/shift.py, which flattens texture). So the turned input is the sub-crop of side n - s whose
reversed axes start where their last pixel lands on the lattice (pixel 1 when n is a multiple of s): its samples
land on the same photo pixels as the unturned net's.
One extra forward/backward of the (small) net, no encoder pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MARGIN = 8  # border pixels left out: padding and instance-norm statistics differ a little between the two crops
STROKE_SIGMA = 3.0  # the Gaussian window, in pixels, over which the strokes' direction is taken


def quarter_turns(step: int) -> int:
    """The turn asked at a training step (1, 2 or 3 quarter turns, in rotation; deterministic, so resumable)."""
    return 1 + step % 3


def stroke_directions(x: torch.Tensor, sigma: float = STROKE_SIGMA, eps: float = 1e-4) -> torch.Tensor:
    """The local direction of the luma's strokes as a (b, 2, h, w) field: the structure tensor J = G * (grad grad^T)
    in double-angle form ((Jxx - Jyy), 2 Jxy) / (Jxx + Jyy), whose length is the coherence (0 for dabs or flat
    areas, 1 for parallel strokes). A stroke and the same stroke turned end to end give the same vector. The gradient
    is taken on 2x2 cells (one-sided differences at two different points would correlate on noise: a false diagonal),
    so the field is one pixel smaller and turns exactly with the picture."""
    y = x.mean(1, keepdim=True)
    dx, dy = y[..., :, 1:] - y[..., :, :-1], y[..., 1:, :] - y[..., :-1, :]
    gx, gy = (dx[..., 1:, :] + dx[..., :-1, :]) / 2, (dy[..., 1:] + dy[..., :-1]) / 2  # both at the 2x2 cells' centres
    r = int(3 * sigma)
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    j = torch.cat([gx * gx, gy * gy, gx * gy], 1)
    j = F.conv2d(F.conv2d(j, g.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3, padding=(0, r)),
                 g.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3, padding=(r, 0))
    jxx, jyy, jxy = j.unbind(1)
    return torch.stack([jxx - jyy, 2 * jxy], 1) / (jxx + jyy + eps).unsqueeze(1)


def turned_pair(net, x: torch.Tensor, out: torch.Tensor, stride: int, turns: int, form: str = "strokes",
                margin: int = MARGIN) -> tuple[torch.Tensor, torch.Tensor]:
    """(the painting of x turned `turns` quarter turns (torch.rot90's sense) and turned back, the painting `out` =
    net(x) itself) on their common interior, as pixels or as stroke_directions (`form`). x is a square batch."""
    n = x.shape[-1]
    if x.shape[-2] != n:
        raise ValueError(f"the turn term needs square crops, got {tuple(x.shape[-2:])}")
    m = n - stride
    # torch.rot90 by k reverses the width axis of its input (k = 1), both axes (k = 2) or the height axis (k = 3); a
    # reversed axis starts where its last pixel, the turned net's first sample, lands on the lattice: off + m - 1 = 0
    flip = (1 - m) % stride
    top, left = flip if turns % 4 in (2, 3) else 0, flip if turns % 4 in (1, 2) else 0
    window = (..., slice(top, top + m), slice(left, left + m))
    back = torch.rot90(net(torch.rot90(x[window], turns, dims=(-2, -1))), -turns, dims=(-2, -1))
    same = out[window]
    if form == "strokes":
        back, same = stroke_directions(back), stroke_directions(same)
    inner = (..., slice(margin, m - margin), slice(margin, m - margin))
    return back[inner], same[inner]


def turn_equivariance(net, x: torch.Tensor, out: torch.Tensor, stride: int, turns: int, form: str = "strokes",
                      margin: int = MARGIN) -> torch.Tensor:
    """The term: mean squared difference of turned_pair. `out` = net(x), with gradients. `form` pixels: the turned
    painting, turned back, matches pixel by pixel; strokes: only its strokes' directions, which leaves the net free
    to place each stroke anew."""
    return F.mse_loss(*turned_pair(net, x, out, stride, turns, form, margin))


def stroke_turn_error(net, x: torch.Tensor, out: torch.Tensor, stride: int) -> float:
    """The measure (toolkit.metrics): how far the strokes' directions of a painting turned a quarter turn (either way)
    and turned back are from the painting's own, relative to their size, E|a - b|^2 / (E|a|^2 + E|b|^2):
    0 = every stroke follows the photo, 1 = strokes unrelated to the photo, 2 = strokes fixed to the screen."""
    errors = []
    for turns in (1, 3):
        a, b = turned_pair(net, x, out, stride, turns)
        errors.append(float(((a - b) ** 2).mean() / ((a ** 2).mean() + (b ** 2).mean()).clamp_min(1e-12)))
    return sum(errors) / len(errors)
