"""Multiply-accumulate counts, measured with torch.utils.flop_counter (convs and matmuls; 1 MAC = 2 FLOPs)."""

from __future__ import annotations

import torch
from torch import nn


def count_macs(model: nn.Module, height: int, width: int) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, height, width))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2
