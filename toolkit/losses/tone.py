"""The photo's light and dark layout, as a loss: where a style lays its large masses.

A Gram style loss asks for the painting's statistics, not where they go. A style of large light masses on a darker
ground (frost's white crystal clusters over blue-grey) puts them by chance, over a face's eyes or a door's panels,
and the scene goes under. This term asks the output's luminance, averaged over CELL x CELL pixel cells, to rise and
fall with the photo's: both standardised per picture (zero mean, unit deviation), so the style keeps its own palette
and contrast and only the layout of light and dark is the photo's. Below the cell size the style draws as it likes.
One pooling of each picture, no extra forward pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CELL = 8          # pixels per side of a layout cell: the scale of a face's eyes on a 256-px training crop
LUMA = (0.299, 0.587, 0.114)  # Rec. 601, as toolkit.metrics.LUMA (metrics imports the losses, not the reverse)
FLAT = 0.02       # a deviation floor, so a flat crop's sensor noise is not blown up into a layout to follow


def tone_layout(x: torch.Tensor, cell: int = CELL) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> (N, 1, H / cell, W / cell) luminance cells, standardised per picture."""
    luma = (x * x.new_tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    cells = F.avg_pool2d(luma, cell, cell, ceil_mode=True)
    cells = cells - cells.mean((-2, -1), keepdim=True)
    return cells / (cells.std((-2, -1), keepdim=True) + FLAT)


def tone_loss(out: torch.Tensor, content: torch.Tensor, cell: int = CELL) -> torch.Tensor:
    """Mean square between the output's and the photo's standardised luminance layouts (about 2 * (1 - their
    correlation); 0 when the output's light and dark masses lie where the photo's do)."""
    return ((tone_layout(out, cell) - tone_layout(content, cell)) ** 2).mean()
