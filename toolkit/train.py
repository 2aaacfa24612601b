"""Training loop: perceptual loss, atomic resumable checkpoints, sample grids, loss curves, torchrun DDP.

Run directory runs/<name>/:
  last.safetensors + last.json   resumable state (model, Adam moments, step, history), rewritten atomically
  <name>.safetensors + .json     the final checkpoint (what `stylize` / `export` take)
  samples/step_XXXXXX.png        fixed eval photos stylised every `sample_every` steps
  loss.png                       loss curves at the end
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from toolkit.checkpoint import load_checkpoint, save_checkpoint
from toolkit.config import TrainConfig
from toolkit.data.images import ContentCrops, list_images, load_rgb, resize_long_side, save_image, to_numpy, to_tensor
from toolkit.errors import UserError
from toolkit.fsutil import check_output_file, ensure_writable_dir
from toolkit.losses import build_loss
from toolkit.models import create_model
from toolkit.models.grow import widen_head
from toolkit.paths import portable_path, resolve_data_path, safe_name

log = logging.getLogger(__name__)
BALANCE_PHOTOS = 16  # training crops that set --style-balance's tap weights


class StepBatches(Sampler):
    """Yields, per step from `start`, the global sample indices of this rank's share of the batch."""

    def __init__(self, start: int, steps: int, batch: int, rank: int, world: int):
        self.start, self.steps, self.batch, self.rank, self.world = start, steps, batch, rank, world

    def __iter__(self):
        for step in range(self.start, self.steps):
            base = (step * self.world + self.rank) * self.batch
            yield list(range(base, base + self.batch))

    def __len__(self) -> int:
        return self.steps - self.start


def _optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for i, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            out[f"optim.{i}.{key}"] = torch.as_tensor(value).clone()
    return out


def _restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    sd = opt.state_dict()
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        _, i, name = key.split(".", 2)
        state.setdefault(int(i), {})[name] = value
    sd["state"] = state
    opt.load_state_dict(sd)


def _sample_images(cfg: TrainConfig, files: list[Path], n: int = 4) -> torch.Tensor:
    from toolkit.paths import shared_data

    eval_dir = shared_data("content", "eval")
    crops = []
    for p in sorted(eval_dir.iterdir()) if eval_dir else files:
        if len(crops) == n:
            break
        try:
            rgb = resize_long_side(load_rgb(p), 256)
        except UserError:
            continue  # an unreadable training photo is skipped (with a warning) by the data stream too
        h, w = rgb.shape[:2]
        s = min(h, w) // 16 * 16
        top, left = (h - s) // 2, (w - s) // 2
        crops.append(torch.nn.functional.interpolate(to_tensor(rgb[top:top + s, left:left + s]), size=(192, 192),
                                                     mode="bilinear", align_corners=False))
    return torch.cat(crops)


def train_mode(model: torch.nn.Module, cfg: TrainConfig) -> None:
    """model.train(), except that with `cfg.freeze_batch_stats` batch norms keep normalising by their running
    statistics, as the exported net (where they are folded into the convs) does."""
    model.train()
    if cfg.freeze_batch_stats:
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()


def _save_sample_grid(path: Path, model, images: torch.Tensor, cfg: TrainConfig) -> None:
    model.eval()
    with torch.no_grad():
        out = model(images)
    train_mode(model, cfg)
    rows = [np.concatenate([to_numpy(a), to_numpy(b)], axis=1) for a, b in zip(images, out)]
    save_image(path, np.concatenate(rows, axis=0))


def plot_losses(path: Path, history: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    steps = [h["step"] for h in history]
    for ax, key in zip(axes, ("content", "style", "tv")):
        ax.plot(steps, [h[key] for h in history])
        ax.set_title(f"{key} loss")
        ax.set_xlabel("step")
        ax.set_yscale("log")
    fig.tight_layout()
    from toolkit.fsutil import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def _dist_setup() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def style_loss(cfg: TrainConfig, device: torch.device | str = "cpu"):
    """The perceptual loss of `cfg` against its style image."""
    path = resolve_data_path(cfg.style_image)
    if not path.is_file():
        raise UserError(f"style image {cfg.style_image} does not exist; pass --style-image PATH")
    style = resize_long_side(load_rgb(path), cfg.style_size)
    return build_loss(cfg.loss, to_tensor(style), seed=cfg.seed).to(device)


def content_loader(cfg: TrainConfig, files: list[Path], start: int = 0, rank: int = 0, world: int = 1) -> DataLoader:
    """Batches of random content crops for steps start..cfg.steps (deterministic in seed and step)."""
    return DataLoader(ContentCrops(files, cfg.size, cfg.seed, cfg.frame_crops, cfg.edge_ramps, cfg.crop_zoom),
                      batch_sampler=StepBatches(start, cfg.steps, cfg.batch, rank, world),
                      num_workers=cfg.workers, persistent_workers=False,
                      prefetch_factor=4 if cfg.workers else None)


def first_batch_read(loader: DataLoader) -> Iterator[torch.Tensor]:
    """The loader's batches with the first one already read: photos that cannot be decoded fail before a run folder
    or a progress bar appears, as one line."""
    batches = iter(loader)
    first = next(batches, None)
    return itertools.chain([] if first is None else [first], batches)


def training_losses(net, loss_fn, batch: torch.Tensor, cfg: TrainConfig, sample_step: int) -> dict[str, torch.Tensor]:
    """The perceptual loss of net(batch) plus the optional terms of `cfg.loss`: synthetic-motion stability
    (toolkit/losses/temporal.py, seeded by `sample_step`), phase balance against grain and cell lattices and shift
    equivariance against grain (toolkit/losses/shift.py), border steps against edge stripes (toolkit/losses/edges.py),
    the photo's light and dark layout (toolkit/losses/tone.py), quarter-turn equivariance for strokes that follow the
    photo (toolkit/losses/turns.py, the turn chosen by `sample_step`)."""
    out = net(batch)
    losses = loss_fn(out, batch)
    if cfg.loss.temporal_weight > 0:
        from toolkit.losses.temporal import TemporalLoss

        losses.update(TemporalLoss(seed=cfg.seed)(net, batch, out, sample_step))
        losses["total"] = losses["total"] + cfg.loss.temporal_weight * losses["temporal"]
    if cfg.loss.grain_weight > 0:
        from toolkit.losses.shift import phase_balance

        losses["grain"] = phase_balance(out, batch)
        losses["total"] = losses["total"] + cfg.loss.grain_weight * losses["grain"]
    if cfg.loss.lattice_weight > 0:
        from toolkit.losses.shift import lattice_balance

        losses["lattice"] = lattice_balance(out, batch)
        losses["total"] = losses["total"] + cfg.loss.lattice_weight * losses["lattice"]
    if cfg.loss.edge_weight > 0:
        from toolkit.losses.edges import edge_stripes

        losses["edges"] = edge_stripes(out, batch, form=cfg.loss.edge_form)
        losses["total"] = losses["total"] + cfg.loss.edge_weight * losses["edges"]
    if cfg.loss.tone_weight > 0:
        from toolkit.losses.tone import tone_loss

        losses["tone"] = tone_loss(out, batch)
        losses["total"] = losses["total"] + cfg.loss.tone_weight * losses["tone"]
    if cfg.loss.shift_weight > 0:
        from toolkit.losses.shift import shift_equivariance

        stride = getattr(net, "module", net).config.stride
        losses["shift"] = shift_equivariance(net, batch, out, stride)
        losses["total"] = losses["total"] + cfg.loss.shift_weight * losses["shift"]
    if cfg.loss.turn_weight > 0:
        from toolkit.losses.turns import quarter_turns, turn_equivariance

        stride = getattr(net, "module", net).config.stride
        losses["turn"] = turn_equivariance(net, batch, out, stride, quarter_turns(sample_step),
                                           form=cfg.loss.turn_form)
        losses["total"] = losses["total"] + cfg.loss.turn_weight * losses["turn"]
    return losses


def finetune(model: torch.nn.Module, cfg: TrainConfig, loss_fn=None) -> list[dict]:
    """`cfg.steps` Adam steps on `model` in place with the training loss and data (no run directory, no DDP).

    What compression (prune, QAT) uses to recover quality; returns the per-step losses.
    """
    loss_fn = loss_fn if loss_fn is not None else style_loss(cfg)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    history = []
    train_mode(model, cfg)
    batches = first_batch_read(content_loader(cfg, list_images(resolve_data_path(cfg.content_dir))))
    with tqdm(total=cfg.steps, desc=f"fine-tune {cfg.name}", unit="step", dynamic_ncols=True) as bar:
        for step, batch in enumerate(batches):
            losses = training_losses(model, loss_fn, batch, cfg, step)
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            opt.step()
            history.append({"step": len(history) + 1, **{k: float(v.detach()) for k, v in losses.items()}})
            bar.set_postfix(loss=f"{history[-1]['total']:.3g}", style=f"{history[-1]['style']:.2e}")
            bar.update(1)
    model.eval()
    return history


INIT_RECORD = ("step", "training", "train_command", "train_config")  # how a starting point was trained


def _load_init(model: torch.nn.Module, cfg: TrainConfig) -> dict:
    """Start from the weights of `cfg.init` (e.g. a shipped style fine-tuned with a temporal loss). From another arch
    (e.g. nano -> nano_fine, whose head is wider) every tensor whose name and shape match is taken and the rest keep
    their initialisation, which is logged; an init that shares no tensor with the net is an error. Returns how the
    init was trained (its INIT_RECORD keys), recorded with the run: the file may be replaced later (a shipped style
    reshipped), and `toolkit ship` then still tells where this run started."""
    init = load_checkpoint(cfg.init)
    record = {k: init.meta[k] for k in INIT_RECORD if k in init.meta}
    if init.arch == model.config:
        model.load_state_dict(init.model.state_dict())
        return record
    own = model.state_dict()
    taken = {k: v for k, v in init.model.state_dict().items() if k in own and own[k].shape == v.shape}
    if not taken:
        raise UserError(f"--init {cfg.init} is a {init.meta.get('train_config', {}).get('arch', 'different')} "
                        f"net that shares no weights with {cfg.arch}; pass --arch to match it")
    model.load_state_dict(taken, strict=False)
    grown = widen_head(init.model, model)
    if grown:
        taken.update({k: v for k, v in model.state_dict().items() if k.startswith("head.")})
    fresh = sorted(k for k in own if k not in taken)
    knobs = ", ".join(f"{f.name} {getattr(init.arch, f.name)} -> {getattr(model.config, f.name)}"
                      for f in dataclasses.fields(model.config)
                      if getattr(init.arch, f.name) != getattr(model.config, f.name))
    log.warning("--init %s is a %s net (%s): %d of %d tensors taken%s", cfg.init,
                init.meta.get("train_config", {}).get("arch", "different"), knobs, len(taken), len(own),
                f"; left at initialisation: {', '.join(fresh)}" if fresh else
                " (the head grown to the same function)" if grown else "")
    return record


def _training_state(last: Path):
    ckpt = load_checkpoint(last)
    if "train_config" not in ckpt.meta or not isinstance(ckpt.meta.get("step"), int):
        raise UserError(f"{last} records no training state (train config and step); it was not written by "
                        "`toolkit train`: pass --overwrite to restart the run")
    return ckpt


# what a resumed run may change without changing what it learns
BOOKKEEPING = frozenset({"name", "steps", "workers", "sample_every", "checkpoint_every", "init", "style_layer_weights"})


def _recipe_changes(saved: TrainConfig, cfg: TrainConfig) -> dict[str, list]:
    """{field: [before, after]} for each field of the recipe (train and loss config) a resumed run changes."""
    def flat(c: TrainConfig) -> dict:
        d = c.to_dict()
        return {**d.pop("loss"), **d}
    before, after = flat(saved), flat(cfg)
    return {k: [before[k], after[k]] for k in after if k not in BOOKKEEPING and before.get(k) != after[k]}


def recorded_config(out_root: str | Path, name: str) -> TrainConfig | None:
    """The recipe runs/<name> was last saved with (None when it has no checkpoint yet): what `--resume` goes on
    with. Its tap weights are dropped when they were balanced, so they are worked out again for the recipe resumed."""
    last = Path(out_root) / safe_name(name, "run --name") / "last.safetensors"
    if not last.exists():
        return None
    cfg = _training_state(last).train_config()
    if cfg.loss.style_balance:
        cfg = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, style_layer_weights=()))
    return cfg


def train(cfg: TrainConfig, out_root: str | Path = "runs", resume: bool = False, overwrite: bool = False,
          progress: bool = True) -> Path:
    """Train one style; returns the final checkpoint path. Safe to kill at any time and `resume`."""
    safe_name(cfg.name, "run --name")
    rank, world = _dist_setup()
    device = torch.device(f"cuda:{rank % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu")
    run_dir = Path(out_root) / cfg.name
    last = run_dir / "last.safetensors"
    if rank == 0:
        if run_dir.exists() and (run_dir / "last.json").exists() and not (resume or overwrite):
            raise UserError(f"run {run_dir} already exists; pass --resume to continue it or --overwrite to restart")
        check_output_file(last, "run folder")  # created only once every input has been read (below)
    if not resolve_data_path(cfg.style_image).is_file():
        raise UserError(f"style image {cfg.style_image} does not exist; pass --style-image PATH")
    files = list_images(resolve_data_path(cfg.content_dir))
    # recorded relative to the data root, so the run's config works on any machine and holds no local layout
    cfg = dataclasses.replace(cfg, style_image=portable_path(cfg.style_image), content_dir=portable_path(cfg.content_dir))

    torch.manual_seed(cfg.seed)
    model = create_model(cfg.arch).to(device)
    resuming = resume and last.exists()
    init_record = _load_init(model, cfg) if cfg.init and not resuming else None  # a resumed run has its weights
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    start, history, recipe_changes = 0, [], []
    if resuming:
        ckpt = _training_state(last)
        saved = ckpt.train_config()
        if saved.arch != cfg.arch:
            raise UserError(f"run {run_dir} was trained with --arch {saved.arch}, not {cfg.arch}")
        model.load_state_dict(ckpt.model.state_dict())
        _restore_optimizer(opt, ckpt.optimizer_state)
        start, history = ckpt.meta["step"], ckpt.meta.get("history", [])
        init_record = ckpt.meta.get("init_record")  # what the init was when the run began
        changes = _recipe_changes(saved, cfg)
        recipe_changes = ckpt.meta.get("recipe_changes", []) + ([{"step": start, **changes}] if changes else [])
        log.info("resuming %s at step %d", run_dir, start)
        if changes and rank == 0:
            log.warning("run %s changes its recipe at step %d: %s", cfg.name, start,
                        ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changes.items()))

    loss_fn = style_loss(cfg, device)
    if cfg.loss.style_balance and not cfg.loss.style_layer_weights:  # deterministic, so a resumed run gets the same
        crops = ContentCrops(files, cfg.size, cfg.seed + 1)
        weights = loss_fn.balance_taps(torch.stack([crops[i] for i in range(BALANCE_PHOTOS)]).to(device))
        cfg = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, style_layer_weights=tuple(weights)))
        log.info("style tap weights: %s", dict(zip(cfg.loss.style_layers, (round(w, 3) for w in weights))))
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    batches = first_batch_read(content_loader(cfg, files, start, rank, world))
    samples = _sample_images(cfg, files) if rank == 0 else None
    if rank == 0:
        ensure_writable_dir(run_dir / "samples")

    def save_state(step: int, final: bool = False) -> None:
        meta = {"name": cfg.name, "train_config": cfg.to_dict(), "step": step, "history": history,
                "world_size": world, **({"init_record": init_record} if init_record else {}),
                **({"recipe_changes": recipe_changes} if recipe_changes else {})}
        save_checkpoint(last, model, meta, extra_tensors=_optimizer_tensors(opt))
        if final:
            final_meta = dict(meta, metrics=history[-1] if history else {})
            save_checkpoint(run_dir / f"{cfg.name}.safetensors", model, final_meta)

    bar = None
    if rank == 0 and progress:
        bar = tqdm(total=cfg.steps, initial=start, desc=f"train {cfg.name}", unit="step", dynamic_ncols=True)
    train_mode(model, cfg)
    step = start
    wait_t = busy_t = 0.0
    t0 = time.perf_counter()
    for batch in batches:
        t1 = time.perf_counter()
        batch = batch.to(device, non_blocking=True)
        losses = training_losses(net, loss_fn, batch, cfg, step * world + rank)
        opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        opt.step()
        step += 1
        t2 = time.perf_counter()
        wait_t, busy_t = wait_t + (t1 - t0), busy_t + (t2 - t1)
        t0 = t2
        if rank == 0:
            rec = {"step": step, **{k: v.item() for k, v in losses.items()},
                   "loader_wait_fraction": wait_t / max(wait_t + busy_t, 1e-9), "step_seconds": t2 - t1}
            history.append(rec)
            if bar is not None:
                bar.set_postfix(loss=f"{rec['total']:.3g}", style=f"{rec['style']:.2e}",
                                wait=f"{rec['loader_wait_fraction']:.0%}")
                bar.update(1)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                save_state(step, final=step == cfg.steps)
            if cfg.sample_every and (step % cfg.sample_every == 0 or step == cfg.steps):
                _save_sample_grid(run_dir / "samples" / f"step_{step:06d}.png", model, samples, cfg)
    if bar is not None:
        bar.close()
    if rank == 0:
        if step == start:  # nothing left to do: make sure the final checkpoint exists
            save_state(step, final=True)
        if history:
            plot_losses(run_dir / "loss.png", history)
        log.info("loader wait fraction: %.1f%%", 100 * wait_t / max(wait_t + busy_t, 1e-9))
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return run_dir / f"{cfg.name}.safetensors"
