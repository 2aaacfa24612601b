"""Edge stripes, as a loss: a bright or dark frame the net draws along the picture's border.

A Gram style loss does not see where texture sits, and the border is the one place where a conv net knows where it
is (through its padding), so a deep net is free to paint a frame there (toolkit.metrics.edge_stripe measures it).
This term asks the step from the border ring to the band just inside it to be the photo's own, per colour channel,
at ring widths 2, 4 and 8 pixels (held at one width alone, the stripe only moves inward). Slices of the output,
no extra forward pass.
"""

from __future__ import annotations

import torch

BANDS = (2, 4, 8)


def border_steps(y, band: int = 2) -> list:
    """Per side (top, bottom, left, right), the mean of the outer `band`-pixel ring minus the mean of the 2*band
    pixels just inside it, over the last two axes; numpy arrays and torch tensors alike (toolkit.metrics.edge_stripe
    measures with it too)."""
    b = band
    return [y[..., :b, :].mean((-2, -1)) - y[..., b:3 * b, :].mean((-2, -1)),
            y[..., -b:, :].mean((-2, -1)) - y[..., -3 * b:-b, :].mean((-2, -1)),
            y[..., :, :b].mean((-2, -1)) - y[..., :, b:3 * b].mean((-2, -1)),
            y[..., :, -b:].mean((-2, -1)) - y[..., :, -3 * b:-b].mean((-2, -1))]


def edge_stripes(out: torch.Tensor, content: torch.Tensor, bands: tuple[int, ...] = BANDS) -> torch.Tensor:
    """Mean squared difference of the output's and the photo's border steps; (N, 3, H, W) tensors, H, W >= 24."""
    return sum(((torch.stack(border_steps(out, b)) - torch.stack(border_steps(content, b))) ** 2).mean()
               for b in bands) / len(bands)
