"""toolkit: train compact real-time style-transfer networks and ship them to phones."""

__version__ = "0.1.0"
