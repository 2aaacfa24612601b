"""What prune and QAT share: the fine-tune recipe (the checkpoint's own training loss and data, with overrides),
the calibration-image check, and writing the compressed checkpoint with its provenance."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from toolkit.config import TrainConfig
from toolkit.errors import UserError
from toolkit.fsutil import sha256_of
from toolkit.paths import resolve_data_path

MIN_IMAGES = 4  # fewer photos than one batch of crops gives Taylor scores / fine-tunes that fit a couple of images

if TYPE_CHECKING:  # torch is imported only when a command runs, not when the CLI parses
    from toolkit.checkpoint import Checkpoint


def finetune_config(ckpt: Checkpoint, args, steps: int) -> TrainConfig:
    """The checkpoint's training config with the command line's overrides (whose ranges argparse checked); checks
    the inputs exist."""
    base = ckpt.train_config()
    overrides = {k: v for k, v in (("loss_net", args.loss_net), ("encoder_precision", args.encoder_precision))
                 if v is not None}
    loss = dataclasses.replace(base.loss, **overrides)
    cfg = dataclasses.replace(
        base, name=ckpt.name, style_image=args.style_image or base.style_image,
        content_dir=args.content_dir or base.content_dir, steps=steps, size=args.size or base.size,
        batch=args.batch or base.batch, lr=args.lr, workers=args.workers, loss=loss)
    from toolkit.data.images import check_pixels

    check_pixels(cfg.size, cfg.size * cfg.batch, "--size x --batch")
    if cfg.size % ckpt.arch.stride or cfg.size < 16:
        raise UserError(f"--size {cfg.size} must be a multiple of {ckpt.arch.stride} and >= 16")
    if not cfg.style_image or not resolve_data_path(cfg.style_image).is_file():
        raise UserError(f"style image '{cfg.style_image}' does not exist; pass --style-image PATH")
    if not cfg.content_dir:
        raise UserError("no content photos known for this checkpoint; pass --content-dir DIR")
    check_images(resolve_data_path(cfg.content_dir))
    return cfg


def check_images(folder: str | Path, need: int = MIN_IMAGES) -> list[Path]:
    from toolkit.data.images import list_images

    files = list_images(folder)
    if len(files) < need:
        raise UserError(f"{folder} has {len(files)} image(s); fine-tuning and Taylor importance need at least {need} "
                        "calibration photos")
    return files


def default_output(checkpoint: str | Path, tag: str, runs_dir: str | Path = "runs") -> Path:
    """<checkpoint>.<tag>.safetensors beside the source; for a shipped style, in `runs_dir` (never in the package)."""
    from toolkit.zoo import ZOO_DIR

    path = Path(checkpoint)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    folder = Path(runs_dir) if path.resolve().parent == ZOO_DIR else stem.parent
    return folder / f"{stem.name}.{tag}.safetensors"


def check_output(out: str | Path, checkpoint: str | Path) -> Path:
    """The weights path `-o` names (a folder takes the input's name); refuses, before any work, the input itself and
    a path that cannot be written (a parent that is a file)."""
    from toolkit.checkpoint import _paths
    from toolkit.fsutil import check_output_file

    out = Path(out)
    if out.is_dir():  # -o DIR: the checkpoint goes inside it, named after the input
        out = out / Path(checkpoint).with_suffix("").name
    if out.suffix not in (".safetensors", ""):
        out = out.with_name(out.name + ".safetensors")
    weights, _ = _paths(out)
    if weights.resolve() == _paths(checkpoint)[0].resolve():
        raise UserError(f"-o {out} would overwrite the input checkpoint; choose another path")
    return check_output_file(weights, "output")


def save_compressed(out: Path, model, source: Checkpoint, source_path: str | Path, compression: dict,
                    train_cfg: TrainConfig | None) -> Path:
    """A plain checkpoint (loads without torch-pruning) recording where it came from and what was done."""
    from toolkit.checkpoint import save_checkpoint
    from toolkit.models.transformer_net import count_params

    meta = {k: v for k, v in source.meta.items() if k not in ("format", "arch", "toolkit_version", "history")}
    meta["name"] = source.name
    if train_cfg is not None:
        meta["train_config"] = train_cfg.to_dict()
    history = list(source.meta.get("compression", []))
    compression = dict(compression, source=str(source_path),
                       source_sha256=sha256_of(Path(source_path).with_suffix(".safetensors")),
                       params_before=count_params(source.model), params_after=count_params(model))
    meta["compression"] = history + [compression]
    return save_checkpoint(out, model, meta)
