"""Compression: structured pruning (prune.py), quantization-aware fine-tuning (qat.py), quality accounting
(quality.py). Per-format post-training quantization lives in the exporters (toolkit/export)."""
