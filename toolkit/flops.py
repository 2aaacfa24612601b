"""Multiply-accumulate counts, measured with torch.utils.flop_counter (convs and matmuls; 1 MAC = 2 FLOPs)."""

from __future__ import annotations

import copy

import torch
from torch import nn


def count_macs(model: nn.Module, height: int, width: int) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    # Count on the meta device: shapes only, no arithmetic, so a 47 GMAC net costs milliseconds.
    meta = copy.deepcopy(model).to("meta").eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        meta(torch.zeros(1, 3, height, width, device="meta"))
    return counter.get_total_flops() // 2
