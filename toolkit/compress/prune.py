"""Structured channel pruning with torch-pruning, to an ordinary TransformerNet with narrower stage widths.

Design: each stage keeps ONE width. The pruned widths are `round(w * (1 - sparsity))` per entry of
`ArchConfig.widths`; a fresh TransformerNet of that config says how many output channels every conv must keep, and
torch-pruning removes the least important channels of each conv's dependency group (coupled instance-norm affine
params, residual adds, the next layer's input channels) down to exactly that count. Every layer that shares a width
in the config (the residual trunk, mirrored up stages, bottleneck inner width) ends at the width the config implies,
so the weights load strictly into `TransformerNet(pruned_config)`: the result loads and exports without
torch-pruning, and ArchConfig needs no per-layer widths. The head's output channels (RGB / 12 for PixelShuffle) are
never pruned, so the output shape never changes.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Callable

import torch
from torch import nn

from toolkit.config import ArchConfig
from toolkit.errors import UserError, unknown
from toolkit.models.transformer_net import TransformerNet

IMPORTANCES = ("l1", "taylor")


def check_sparsity(sparsity: float) -> float:
    if not 0.0 < sparsity < 1.0:
        raise UserError(f"--sparsity {sparsity} must be strictly between 0 and 1 (0.5 removes half the channels)")
    return float(sparsity)


def pruned_arch(arch: ArchConfig, sparsity: float) -> ArchConfig:
    """The config with every stage width reduced by `sparsity` (at least one channel each)."""
    check_sparsity(sparsity)
    if arch.upsample == "pixelshuffle":
        raise UserError("pruning an upsample='pixelshuffle' net is not supported (its conv channels are tied in "
                        "groups of 4); use a net with another --upsample")
    widths = tuple(max(1, round(int(w) * (1.0 - sparsity))) for w in arch.widths)
    return dataclasses.replace(arch, widths=widths)


def _importance(kind: str):
    import torch_pruning as tp

    if kind == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1)
    if kind == "taylor":
        return tp.importance.GroupTaylorImportance()
    raise unknown("importance", kind, IMPORTANCES)


def prune_model(model: TransformerNet, sparsity: float, importance: str = "l1",
                accumulate_gradients: Callable[[nn.Module], None] | None = None) -> TransformerNet:
    """A new, narrower TransformerNet; `model` is left untouched.

    importance: l1 (weight magnitude of the whole coupled group) or taylor (|w * dL/dw|, first-order loss change;
    needs `accumulate_gradients(model)` to run backward passes of the training loss on a few batches).
    """
    import torch_pruning as tp

    if importance not in IMPORTANCES:
        raise unknown("importance", importance, IMPORTANCES)
    if importance == "taylor" and accumulate_gradients is None:
        raise UserError("--importance taylor needs training data for gradients; pass --style-image and --content-dir")
    target_cfg = pruned_arch(model.config, sparsity)
    target = TransformerNet(target_cfg)
    keep = {name: m.out_channels for name, m in target.named_modules() if isinstance(m, nn.modules.conv._ConvNd)}

    work = copy.deepcopy(model).train()
    for m in work.modules():
        if isinstance(m, nn.ReLU):  # an in-place ReLU hides the instance norm from torch-pruning's graph trace
            m.inplace = False
    for p in work.parameters():
        p.requires_grad_(True)
        p.grad = None
    if importance == "taylor":
        accumulate_gradients(work)
    head_conv = [m for m in work.head.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    side = 4 * model.config.stride
    # The head is never a pruning root (its outputs are RGB), but it stays in the graph so its INPUT channels follow.
    graph = tp.DependencyGraph().build_dependency(work, example_inputs=torch.rand(1, 3, side, side), verbose=False)
    scorer = _importance(importance)
    for name, conv in work.named_modules():
        if not isinstance(conv, nn.modules.conv._ConvNd) or conv in head_conv:
            continue
        have = graph.get_out_channels(conv)
        drop = have - keep[name]
        if drop <= 0:  # already pruned through a coupled layer (residual trunk, depthwise pair)
            continue
        fn = graph.get_pruner_of_module(conv).prune_out_channels
        group = graph.get_pruning_group(conv, fn, list(range(have)))
        scores = scorer(group)
        if scores is None:
            raise RuntimeError(f"torch-pruning gave no importance for {name}")
        idxs = torch.argsort(scores)[:drop].tolist()
        graph.get_pruning_group(conv, fn, idxs).prune()

    state = {k: v.detach().clone() for k, v in work.state_dict().items()}
    try:
        target.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # a coupling the config cannot express: a bug here, not bad input
        raise RuntimeError(f"pruned weights do not fit {target_cfg}: {str(exc).splitlines()[0]}") from exc
    return target.eval()
