"""Shipped styles: trained checkpoints carried as package data (`toolkit/zoo/<style>.safetensors` + `.json`).

`--style NAME` resolves here first; until a style ships, a local run `runs/<name>/<name>.safetensors` serves.
"""

from __future__ import annotations

from pathlib import Path

from toolkit.checkpoint import Checkpoint, load_checkpoint
from toolkit.errors import UserError, unknown
from toolkit.paths import safe_name

ZOO_DIR = Path(__file__).resolve().parent


def shipped_styles() -> list[str]:
    return sorted(p.stem for p in ZOO_DIR.glob("*.safetensors"))


def style_path(name: str, runs_dir: str | Path = "runs") -> Path:
    safe_name(name, "style")
    shipped = ZOO_DIR / f"{name}.safetensors"
    if shipped.is_file():
        return shipped
    local = Path(runs_dir) / name / f"{name}.safetensors"
    if local.is_file():
        return local
    local_runs = [p.name for p in Path(runs_dir).glob("*") if (p / f"{p.name}.safetensors").is_file()]
    raise unknown("style", name, shipped_styles() + local_runs)


def checkpoint_path(arg: str | Path, runs_dir: str | Path = "runs") -> Path:
    """A path as given (it has a suffix or exists), else the checkpoint of a shipped or locally trained style named
    like `--style`."""
    path = Path(arg)
    if path.suffix or path.exists():
        return path
    return style_path(str(arg), runs_dir)


def load_style(name: str | None = None, checkpoint: str | Path | None = None) -> Checkpoint:
    """The model for `--style NAME` or `--checkpoint PATH` (exactly one)."""
    if bool(name) == bool(checkpoint):
        raise UserError("pass exactly one of --style NAME or --checkpoint PATH")
    ckpt = load_checkpoint(style_path(name) if name else checkpoint)
    if name:
        ckpt.meta.setdefault("name", name)
    return ckpt
