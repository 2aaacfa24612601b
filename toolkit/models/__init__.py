"""The TransformerNet family: one configurable net, named presets, and a factory."""

from toolkit.config import ArchConfig
from toolkit.models.presets import ARCHS, arch_config
from toolkit.models.transformer_net import TransformerNet, count_params


def create_model(arch: str | ArchConfig, **overrides) -> TransformerNet:
    """A TransformerNet from a preset name (with knob overrides) or an ArchConfig."""
    config = arch if isinstance(arch, ArchConfig) else arch_config(arch, **overrides)
    return TransformerNet(config)


__all__ = ["ARCHS", "ArchConfig", "TransformerNet", "arch_config", "count_params", "create_model"]
