"""Checkpoints: `<stem>.safetensors` (weights, optional optimizer state) + `<stem>.json` (configs, history).

Nothing is ever unpickled: weights load through safetensors, metadata through json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from toolkit import __version__
from toolkit.config import ArchConfig, TrainConfig, from_dict, to_dict
from toolkit.errors import UserError
from toolkit.fsutil import atomic_path, write_json
from toolkit.models.transformer_net import TransformerNet

FORMAT = "toolkit-checkpoint/1"


@dataclass
class Checkpoint:
    model: TransformerNet
    meta: dict = field(default_factory=dict)
    optimizer_state: dict[str, torch.Tensor] = field(default_factory=dict)
    path: Path | None = None    # the file it was loaded from

    @property
    def arch(self) -> ArchConfig:
        return self.model.config

    @property
    def name(self) -> str:
        return self.meta.get("name", "style")

    def train_config(self) -> TrainConfig:
        """The training config the checkpoint records (the defaults when it records none); a malformed one (wrong
        types, unknown keys, not an object) is a UserError naming the file."""
        if "train_config" not in self.meta:
            return TrainConfig()
        try:
            return TrainConfig.from_dict(self.meta["train_config"])
        except UserError as exc:
            raise UserError(f"checkpoint {self.path or self.name} records a malformed train config ({exc}); it is "
                            "corrupt or hand-edited: restore or retrain it") from exc


def _paths(path: str | Path) -> tuple[Path, Path]:
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")  # keeps dots in names


def save_checkpoint(path: str | Path, model: TransformerNet, meta: dict[str, Any] | None = None,
                    extra_tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """Write weights + metadata as one atomic file (the metadata also rides in the safetensors header, which
    `load_checkpoint` trusts), then the readable .json sidecar. A kill between the two renames leaves a checkpoint
    whose step, history and weights still agree. `path` may end in .safetensors, .json or nothing."""
    from safetensors.torch import save_file

    weights_path, meta_path = _paths(path)
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    for k, v in (extra_tensors or {}).items():
        tensors[k] = v.detach().contiguous().cpu()
    meta = dict(meta or {})
    meta.update(format=FORMAT, arch=to_dict(model.config), toolkit_version=__version__)
    with atomic_path(weights_path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "arch": json.dumps(meta["arch"]),
                                               "meta": json.dumps(meta)})
    write_json(meta_path, meta)
    return weights_path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load a checkpoint written by `save_checkpoint`; a corrupt or foreign file is a UserError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights_path, meta_path = _paths(path)
    if not weights_path.is_file():
        raise UserError(f"checkpoint {weights_path} does not exist; pass a .safetensors written by `toolkit train`")
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"checkpoint {weights_path} is corrupt or not a safetensors file ({exc}); "
                        "retrain or re-download it") from exc
    from safetensors import safe_open

    with safe_open(str(weights_path), "pt") as fh:
        header = fh.metadata() or {}
    meta: dict = {}
    if "meta" in header:  # written with the weights in one rename: the truth when the sidecar lags behind
        try:
            meta = json.loads(header["meta"])
        except json.JSONDecodeError as exc:
            raise UserError(f"checkpoint {weights_path} carries corrupt metadata ({exc}); restore it") from exc
    elif meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"checkpoint metadata {meta_path} is not valid JSON ({exc}); restore it") from exc
    if not isinstance(meta, dict):
        raise UserError(f"checkpoint {weights_path} carries corrupt metadata (a JSON {type(meta).__name__}, not an "
                        "object); restore it")
    if "arch" not in meta and "arch" not in header:
        raise UserError(f"checkpoint {weights_path} has no arch config; it was not written by toolkit")
    try:
        if "arch" not in meta:
            meta["arch"] = json.loads(header["arch"])
        arch = from_dict(ArchConfig, meta["arch"])
        model = TransformerNet(arch)
    except (UserError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"checkpoint {weights_path} has a malformed arch config ({type(exc).__name__}: {exc}); "
                        "it is corrupt or hand-edited: restore or retrain it") from exc
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "shape mismatch"
        raise UserError(f"checkpoint {weights_path} does not match its arch config ({first}); "
                        "it is corrupt or from another arch") from exc
    model.eval()
    rest = {k: v for k, v in tensors.items() if not k.startswith("model.")}
    return Checkpoint(model=model, meta=meta, optimizer_state=rest, path=weights_path)
