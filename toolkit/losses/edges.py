"""Edge stripes, as a loss: a bright or dark frame the net draws along the picture's border.

A Gram style loss does not see where texture sits, and the border is the one place where a conv net knows where it
is (through its padding), so a deep net is free to paint a frame there (toolkit.metrics.edge_stripe measures it).
This term asks the step from the border ring to the band just inside it to be the photo's own, per colour channel,
at ring widths 2, 4 and 8 pixels (held at one width alone, the stripe only moves inward). Slices of the output,
no extra forward pass. Two forms: "change" asks for the photo's step itself (until session 22; it also holds a style
back from painting over a photo's own edge line), "drawn" only for no step beyond it, as toolkit.metrics.edge_stripe
measures: brighter than the photo's brighter step or darker than its darker one.
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


def drawn_steps(step, own):
    """The part of border steps `step` beyond the photo's own steps `own`: how much brighter than its brighter step
    (none when the photo's ring is darker) or darker than its darker one; >= 0, numpy arrays and torch tensors alike
    (the drawn edge term and toolkit.metrics.edge_stripe)."""
    return (step - own.clip(min=0)).clip(min=0) + (own.clip(max=0) - step).clip(min=0)


def edge_stripes(out: torch.Tensor, content: torch.Tensor, bands: tuple[int, ...] = BANDS,
                 form: str = "change") -> torch.Tensor:
    """Mean square of the output's border steps against the photo's (N, 3, H, W tensors, H, W >= 24): their
    difference ("change"), or only the part beyond the photo's own step ("drawn")."""
    total = 0.0
    for b in bands:
        step, own = torch.stack(border_steps(out, b)), torch.stack(border_steps(content, b))
        if form == "drawn":
            miss = drawn_steps(step, own)
        else:
            miss = step - own
        total = total + (miss ** 2).mean()
    return total / len(bands)
