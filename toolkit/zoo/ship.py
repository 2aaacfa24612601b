"""Ship a trained style: package it in the zoo, export every deployable artifact with parity, measure quality and
speed, render previews, and describe it all in exported/manifest.json and exported/README.md.

    toolkit ship --checkpoint runs/frost/frost.safetensors --style frost --source "..." --licence "..."
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from toolkit.checkpoint import load_checkpoint, save_checkpoint
from toolkit.config import CROP_ZOOM, LossConfig
from toolkit.data.images import list_images, load_rgb, resize_long_side, save_image, to_numpy, to_tensor
from toolkit.errors import UserError
from toolkit.flops import count_macs
from toolkit.fsutil import atomic_path
from toolkit.models import count_params
from toolkit.paths import resolve_data_path, safe_name, shared_data
from toolkit.stylize import stylize_tensor
from toolkit.zoo import ZOO_DIR

# What every shipped style carries (issue: ONNX fp32+int8 dynamic, CoreML fp16+int8 flexible, TFLite fp32+int8 at
# the camera sizes).
EXPORTS = (
    ("onnx", ("fp32", "int8")),
    ("coreml", ("fp16", "int8")),
    ("tflite", ("fp32", "int8")),
)
PREVIEW_SIDE = 256


def package_checkpoint(src: Path, style: str, source: str, licence: str, zoo_dir: Path = ZOO_DIR) -> Path:
    """Copy a trained checkpoint into the zoo with a compact record of how it was trained (not the per-step log)."""
    ckpt = load_checkpoint(src)
    history = ckpt.meta.get("history", [])
    last = history[-20:]
    summary = {
        "steps": ckpt.meta.get("step"),
        "wall_time_s": round(sum(h.get("step_seconds", 0.0) for h in history), 1),
        "final_losses": {k: float(np.mean([h[k] for h in last])) for k in ("total", "content", "style", "tv")
                         if last and k in last[0]},
        "loader_wait_fraction": history[-1].get("loader_wait_fraction") if history else None,
    }
    cfg = ckpt.meta.get("train_config", {})
    changes = ckpt.meta.get("recipe_changes", [])  # a run resumed with other options: cfg is its last phase's
    meta = {"name": style, "train_config": cfg, "training": summary,
            "train_command": train_command(cfg, style, changes), "style_source": source, "licence": licence,
            **({"recipe_changes": changes} if changes else {})}
    # how the starting point was trained, not just its file name: as the run recorded it when it began (runs before
    # session 21 did not: then the file, which may have been replaced since)
    init = ckpt.meta.get("init_record") or (load_checkpoint(cfg["init"]).meta
                                            if cfg.get("init") and Path(cfg["init"]).is_file() else None)
    if init is not None:
        meta["fine_tuned_from"] = {
            "steps": init.get("step") or init.get("training", {}).get("steps"),
            "train_command": init.get("train_command") or train_command(
                init.get("train_config", {}), Path(cfg["init"]).stem, init.get("recipe_changes", []))}
    if cfg.get("init"):  # the starting point by file name, not this machine's path to it
        meta["train_config"] = dict(cfg, init=Path(cfg["init"]).name)
    return save_checkpoint(zoo_dir / f"{style}.safetensors", ckpt.model, meta)


def train_command(cfg: dict, name: str, changes: Sequence[dict] = ()) -> str:
    """The `toolkit train` command lines that reproduce a recorded run (photos folder left out), in one copy-paste:
    the one that starts it and, for each recipe change it recorded on a resume, the `--resume` that made it, joined
    by ' && '. `cfg` is the run's last recipe; each change holds [before, after] per option."""
    phases = [cfg]
    for change in reversed(changes):  # walk back to the recipe each phase ran with
        phases.insert(0, _before(phases[0], change))
    ends = [c["step"] for c in changes] + [cfg.get("steps")]
    commands = [_start_command(dict(phases[0], steps=ends[0]), name)]
    for change, end in zip(changes, ends[1:]):
        commands.append(f"toolkit train --name {name} --resume --steps {end}" + "".join(
            " " + _option(k, v[1]) for k, v in change.items() if k != "step"))
    return " && ".join(commands)


def _before(cfg: dict, change: dict) -> dict:
    """The recipe as it was before a recorded change."""
    loss_fields = {f.name for f in dataclasses.fields(LossConfig)}
    before = dict(cfg, loss=dict(cfg.get("loss", {})))
    for key, (old, _new) in ((k, v) for k, v in change.items() if k != "step"):
        (before["loss"] if key in loss_fields else before)[key] = old
    return before


def _option(key: str, value) -> str:
    """One recipe option as `toolkit train` takes it."""
    flag = "--" + key.replace("_", "-")
    if isinstance(value, bool):
        return flag if value else f"--no-{flag[2:]}"
    return f"{flag} {','.join(map(str, value)) if isinstance(value, (list, tuple)) else value}"


def _start_command(cfg: dict, name: str) -> str:
    """The `toolkit train` command line that starts a run with a recorded train config."""
    loss = cfg.get("loss", {})
    return (f"toolkit train --style-image {Path(cfg.get('style_image', '?')).name} --name {name} "
            f"--arch {cfg.get('arch')} --content-dir <photos> --steps {cfg.get('steps')} --size {cfg.get('size')} "
            f"--batch {cfg.get('batch')} --lr {cfg.get('lr')} --style-weight {loss.get('style_weight')} "
            f"--content-weight {loss.get('content_weight')} --tv-weight {loss.get('tv_weight')} "
            f"--seed {cfg.get('seed')}" + (f" --init {Path(cfg['init']).name}" if cfg.get("init") else "")
            + (f" --temporal-weight {loss['temporal_weight']}" if loss.get("temporal_weight") else "")
            + (f" --encoder-precision {loss['encoder_precision']}"
               if loss.get("encoder_precision", "fp32") != "fp32" else "")
            + "".join(f" --{flag} {','.join(map(str, loss[key]))}" for flag, key, default in (
                ("style-layers", "style_layers", LossConfig().style_layers),
                ("content-layers", "content_layers", LossConfig().content_layers),
                ("style-scales", "style_scales", LossConfig().style_scales)) if key in loss
                      and tuple(loss[key]) != tuple(default))
            + (" --style-balance" if loss.get("style_balance") else "")
            + (f" --shift-weight {loss['shift_weight']}" if loss.get("shift_weight") else "")
            + (f" --turn-weight {loss['turn_weight']} --turn-form {loss.get('turn_form', 'strokes')}"
               if loss.get("turn_weight") else "")
            + (f" --grain-weight {loss['grain_weight']}" if loss.get("grain_weight") else "")
            + (f" --lattice-weight {loss['lattice_weight']}" if loss.get("lattice_weight") else "")
            + (f" --edge-weight {loss['edge_weight']}" if loss.get("edge_weight") else "")
            + (f" --edge-form {loss['edge_form']}" if loss.get("edge_form", "change") != "change" else "")
            + (f" --tone-weight {loss['tone_weight']}" if loss.get("tone_weight") else "")
            + (f" --patch-weight {loss['patch_weight']}" if loss.get("patch_weight") else "")
            + (f" --patch-scale {loss['patch_scale']}" if loss.get("patch_scale", 1.0) != 1.0 else "")
            + (f" --style-size {cfg['style_size']}" if cfg.get("style_size", 512) != 512 else "")
            + (" --freeze-batch-stats" if cfg.get("freeze_batch_stats") else "")
            + (f" --frame-crops {cfg['frame_crops']}" if cfg.get("frame_crops") else "")
            + (f" --edge-ramps {cfg['edge_ramps']}" if cfg.get("edge_ramps") else "")
            + (f" --crop-zoom {cfg['crop_zoom']}" if cfg.get("crop_zoom", CROP_ZOOM) != CROP_ZOOM else ""))


def eval_photos(limit: int = 6) -> list[Path]:
    folder = shared_data("content", "eval")
    return list_images(folder)[:limit] if folder else []


@torch.no_grad()
def quality(model, style_image: Path, photos: list[Path], side: int = 512) -> dict:
    """The look on the eval photos at `side` px (toolkit.metrics): style strength (Gram distance to the style over
    the photo's own; lower = more stylised), grain (even/odd gradient ratio on flat areas, and the photo's own),
    edge stripes, content loss and layout lost (its light and dark masses away from the photo's)."""
    from toolkit.losses import measuring_loss
    from toolkit.metrics import look_mean, look_row

    loss = measuring_loss(style_image)
    rows = [{"photo": p.name, **look_row(model, loss, resize_long_side(load_rgb(p), side))[0]} for p in photos]
    mean = look_mean(rows)
    mean["edge_stripe_max"] = max(r["edge_stripe"] for r in rows)
    return {"per_photo": rows, "mean": mean, "side": side}


@torch.no_grad()
def render_preview(model, photos: list[Path], dest: Path, style_image: Path | None = None) -> Path:
    """One row per photo: photo | stylised | 100% crop of a flat area | 300% crop (toolkit.sheets), under a strip
    with the style image when given."""
    from toolkit.sheets import contact_row

    rows = []
    for p in photos:
        rgb = resize_long_side(load_rgb(p), 2 * PREVIEW_SIDE)
        rows.append(contact_row(rgb, to_numpy(stylize_tensor(model, to_tensor(rgb))), PREVIEW_SIDE))
    grid = np.concatenate(rows, axis=0)
    if style_image is not None:
        thumb = resize_long_side(load_rgb(style_image), PREVIEW_SIDE)
        strip = np.ones((PREVIEW_SIDE, grid.shape[1], 3), np.float32)
        strip[: thumb.shape[0], : thumb.shape[1]] = thumb
        grid = np.concatenate([strip, grid], axis=0)
    return save_image(dest, grid)


def bench_rows(files: list[Path]) -> list[dict]:
    """fps at 480x640, 1 thread, onnxruntime CPU (+ speed-up vs johnson2016 measured in the same run), one dict per
    row (LatencyRow.to_dict); `subject` is the file's name."""
    from toolkit.bench.harness import Bench, BenchConfig, Subject
    from toolkit.bench.report import markdown_table

    config = BenchConfig(threads=(1,), sizes=((480, 640),), runs=15)
    with tempfile.TemporaryDirectory(prefix="toolkit-bench-") as workdir:
        rows = Bench(config, Path(workdir)).run([Subject(f.name, "artifact", path=f) for f in files])
    print(markdown_table(rows), end="")
    return [r.to_dict() for r in rows]


def export_jobs(stride: int) -> list:
    """The artifacts every shipped style carries (EXPORTS), as export jobs."""
    from toolkit.export.batch import plan_jobs

    return [job for target, precisions in EXPORTS for job in plan_jobs([target], precisions, [], stride)]


def export_all(model, style: str, metadata: dict, stage) -> list[dict]:
    """Export every artifact of EXPORTS into `stage` (a toolkit.export.batch.StagedExport); nothing lands until the
    stage commits. Backends and calibration photos are checked before the first export."""
    from toolkit.export.batch import check_backends, describe
    from toolkit.export.calibration import calibration_paths

    jobs = export_jobs(model.config.stride)
    check_backends({job.target for job in jobs})
    if any(job.target.precision(job.precision).calibrated for job in jobs):
        calibration_paths(())
    records = []
    for i, job in enumerate(jobs, 1):
        print(f"[{i}/{len(jobs)}] {job.label} ...", flush=True)
        records.append(stage.export(model, style, job, metadata))
        print(f"      ok  {describe(records[-1])}", flush=True)
    return records


def ship(checkpoint: Path, style: str, source: str, licence: str, style_image: Path | None,
         out_dir: Path = Path("exported"), skip_export: bool = False) -> dict:
    """Package, export, preview, measure and record one style. Everything for exported/ is staged and lands in one
    commit under the manifest lock, and the zoo entry is packaged aside and moved in only after that commit: a
    failure, or a kill, leaves the zoo entry and exported/ as they were."""
    from toolkit.export.batch import StagedExport

    packaged = ZOO_DIR / f"{safe_name(style, 'style')}.safetensors"
    if style_image is not None and not Path(style_image).is_file():
        raise UserError(f"--style-image {style_image} does not exist; pass the style image the net was trained on")
    load_checkpoint(checkpoint)  # a bad checkpoint fails here, before the zoo is touched
    out_dir = Path(out_dir)
    # the stage checks the export folder and its manifest before the zoo is touched
    with StagedExport(out_dir) as stage, tempfile.TemporaryDirectory(prefix="toolkit-ship-") as aside:
        if packaged.exists() and Path(checkpoint).resolve() == packaged.resolve():
            new_entry = None  # re-shipping a zoo style keeps its record
        else:
            new_entry = package_checkpoint(checkpoint, style, source, licence, Path(aside))
        ckpt = load_checkpoint(new_entry or packaged)
        model = ckpt.model.eval()
        # every artifact carries the style's licence, as `toolkit export --style` writes it
        metadata = {"licence": ckpt.meta["licence"]} if ckpt.meta.get("licence") else {}
        records = [] if skip_export else export_all(model, style, metadata, stage)
        photos = eval_photos()
        style_image = style_image or resolve_data_path(ckpt.meta["train_config"].get("style_image", ""))
        record = {
            "arch": ckpt.meta["train_config"].get("arch"),
            "params": count_params(model),
            "macs_480x640": count_macs(model, 480, 640),
            "macs_256x256": count_macs(model, 256, 256),
            "style_source": source,
            "licence": licence,
            "train_command": ckpt.meta["train_command"],
            "training": ckpt.meta["training"],
        }
        record.update({k: ckpt.meta[k] for k in ("fine_tuned_from", "recipe_changes") if k in ckpt.meta})
        if photos:
            record["preview"] = f"{style}/preview.png"
            render_preview(model, photos, stage.path(f"{style}/preview.png"),
                           style_image if style_image.is_file() else None)
            if style_image.is_file():
                record["quality"] = quality(model, style_image, photos)
        # the new exports where this ship made them, else the ones already in place
        onnx_names = [f"{style}.onnx", f"{style}.int8.onnx"]
        existing = [f for f in (stage.path(f"{style}/{n}") if records else out_dir / style / n for n in onnx_names)
                    if f.exists()]
        names = {f.name for f in existing}
        rows = [r for r in (bench_rows(existing) if existing else []) if Path(r["subject"]).name in names]
        record["fps_480x640_onnx_1thread"] = {Path(r["subject"]).name: r.get("fps") for r in rows
                                              if r.get("status") == "ok"}

        def finish(manifest: dict) -> None:
            add_bench_and_record(manifest, style, record, rows)
            write_gallery(stage.staging, manifest)  # lands with the manifest

        stage.commit(records, update=finish)
        if new_entry is not None:
            for src in (new_entry, new_entry.with_suffix(".json")):
                with atomic_path(ZOO_DIR / src.name) as tmp:
                    shutil.copy2(src, tmp)
    return record


def add_bench_and_record(manifest: dict, style: str, record: dict, rows: list[dict]) -> None:
    """Each artifact's bench row into its manifest entry, and the style's record."""
    for row in rows:
        if row.get("status") != "ok":
            continue
        key = f"{style}/{Path(row['subject']).name}"
        entry = manifest["artifacts"].get(key)
        if entry is not None:
            entry["bench"] = {k: row.get(k) for k in ("runtime", "provider", "threads", "height", "width", "fps",
                                                      "p50_ms", "cpu_p50_ms", "speedup_vs_reference")}
    manifest.setdefault("styles", {})[style] = record


def write_gallery(out_dir: Path, manifest: dict) -> Path:
    """exported/README.md: previews and the table of sizes / fps / parity per style, generated from the manifest."""
    lines = ["# Shipped styles", "",
             "Generated by `toolkit ship` from `manifest.json` — do not edit by hand.", ""]
    for style, rec in sorted(manifest.get("styles", {}).items()):
        q = rec.get("quality", {}).get("mean", {})
        lines += [f"## {style}", "", f"Style image: {rec['style_source']} — licence: {rec['licence']}.  ",
                  f"Arch `{rec['arch']}`: {rec['params']:,} params, {rec['macs_480x640'] / 1e9:.2f} GMAC at 480x640. "
                  f"Trained {rec['training'].get('steps')} steps in {rec['training'].get('wall_time_s', 0) / 60:.0f} "
                  f"min: `{rec['train_command']}`"]
        if "fine_tuned_from" in rec:
            base = rec["fine_tuned_from"]
            lines[-1] += f"  \nfrom a net trained {base['steps']} steps: `{base['train_command']}`"
        lines += [""]
        if "style_strength" in q:  # records shipped before the look measures have none
            lines += [f"Look on the eval photos ({rec['quality'].get('side', '?')} px): style strength "
                      f"{q['style_strength']:.3f} (Gram distance to the style over the photos' own; lower = more "
                      f"stylised), grain {q['grain']:.2f} (photos {q['photo_grain']:.2f}), edge stripe "
                      f"{q['edge_stripe_max']:.3f}, content loss {q['content']:.2f}"
                      + (f", layout lost {q['layout']:.2f} (0: light and dark where the photo's are)" if "layout" in q
                         else "") + ".", ""]
        if rec.get("preview"):
            lines += [f"![{style}]({rec['preview']})", ""]
        lines += ["| file | target | precision | sizes | kB | parity (max abs / min PSNR dB) | fps 480x640 1 thread |",
                  "|---|---|---|---|---|---|---|"]
        for key, a in manifest["artifacts"].items():
            if a.get("style") != style:
                continue
            p = a.get("parity") or {}
            sizes = a["sizes"] if isinstance(a["sizes"], str) else ", ".join(f"{h}x{w}" for h, w in a["sizes"])
            fps = a.get("bench", {}).get("fps")
            lines.append(f"| {key} | {a['target']} | {a['precision']} | {sizes} | {a['bytes'] / 1e3:.0f} | "
                         f"{p.get('max_abs', float('nan')):.2g} / {p.get('min_psnr_db') or 'inf'} | "
                         f"{f'{fps:.1f}' if fps else '-'} |")
        lines.append("")
    dest = out_dir / "README.md"
    with atomic_path(dest) as tmp:
        tmp.write_text("\n".join(lines))
    return dest
