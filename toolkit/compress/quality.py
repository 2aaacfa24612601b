"""Quality accounting for compressed models: bytes, params, MACs, PSNR vs the float model, style / content loss
with the same loss net, and a side-by-side strip. Works on checkpoints (torch) and exported artifacts (their own
runtime, through toolkit.export.load_runner)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from toolkit.checkpoint import Checkpoint, load_checkpoint
from toolkit.config import ArchConfig, arch_from_json
from toolkit.data.images import check_pixels, list_images, load_rgb, resize_long_side, save_image, to_numpy, to_tensor
from toolkit.errors import UserError
from toolkit.fsutil import atomic_path, size_of, write_json
from toolkit.models.transformer_net import TransformerNet, count_params
from toolkit.parity import psnr
from toolkit.runtime.torch_eager import TorchEagerRunner

CHECKPOINT_SUFFIXES = (".safetensors", ".json")
MACS_SIZE = (480, 640)  # MACs are reported at the benchmark resolution


@dataclass
class Candidate:
    name: str
    path: str
    kind: str                                   # checkpoint | onnx | tflite | mlpackage
    run: Callable[[np.ndarray], np.ndarray]     # (1,3,H,W) float32 [0,1] -> same
    sizes: tuple = ()                           # fixed (H, W) sizes it accepts; () = any multiple of the stride
    arch: ArchConfig | None = None


@dataclass
class QualityRow:
    name: str
    kind: str
    bytes: int
    params: int | None
    macs: int | None
    psnr_db: float
    style: float
    content: float
    style_change_pct: float
    content_change_pct: float


def _artifact_arch(path: Path) -> ArchConfig | None:
    """The arch config the exporter stored in the artifact's own metadata (None when it has none)."""
    from toolkit.export import read_metadata

    arch = read_metadata(path).get("arch")
    return arch_from_json(arch, path) if arch else None


def load_candidate(path: str | Path, threads: int = 1) -> Candidate:
    path = Path(path)
    if path.suffix in CHECKPOINT_SUFFIXES:
        ckpt = load_checkpoint(path)
        return Candidate(path.with_suffix("").name, str(path), "checkpoint", TorchEagerRunner(ckpt.model, threads), (),
                         ckpt.arch)
    if not path.exists():
        raise UserError(f"{path} does not exist; pass checkpoints (.safetensors) or exported artifacts")
    from toolkit.export import load_runner

    runner = load_runner(path, threads=threads)
    sizes = tuple(getattr(runner, "sizes", ()) or ())
    for h, w in sizes:  # a fixed input the photos are resized to: a hostile graph's 100000x100000 is refused here
        check_pixels(h, w, f"{path}'s input size")
    return Candidate(path.name, str(path), path.suffix.lstrip("."), runner, sizes, _artifact_arch(path))


def eval_images(folder: str | Path | None, long_side: int = 256, multiple: int = 16, limit: int = 9) -> list[np.ndarray]:
    """Eval photos (the shared eval set by default) at `long_side`, centre-cropped to multiples of `multiple`."""
    if folder is None:
        from toolkit.paths import shared_data

        folder = shared_data("content", "eval")
        if folder is None:
            raise UserError("no eval photos: pass --images DIR (the shared content/eval folder is absent)")
    out = []
    for p in list_images(folder)[:limit]:
        rgb = resize_long_side(load_rgb(p), long_side)
        h, w = (rgb.shape[0] // multiple) * multiple, (rgb.shape[1] // multiple) * multiple
        if h < multiple or w < multiple:
            raise UserError(f"eval photo {p} is smaller than {multiple}px at --size {long_side}; use a larger --size")
        top, left = (rgb.shape[0] - h) // 2, (rgb.shape[1] - w) // 2
        out.append(np.ascontiguousarray(rgb[top:top + h, left:left + w]))
    return out


def _fit(rgb: np.ndarray, sizes: tuple) -> np.ndarray:
    """The photo resized to a fixed-size artifact's first size (bilinear), else unchanged."""
    if not sizes:
        return rgb
    h, w = sizes[0]
    t = torch.nn.functional.interpolate(to_tensor(rgb), size=(h, w), mode="bilinear", align_corners=False)
    return to_numpy(t.clamp(0, 1))


def evaluate(candidates: list[Candidate], reference: Checkpoint, images: list[np.ndarray], loss_fn,
             macs_size: tuple[int, int] = MACS_SIZE) -> tuple[list[QualityRow], list[list[np.ndarray]]]:
    """One row per candidate (PSNR and loss changes vs `reference`) plus each candidate's outputs (for the strip)."""
    from toolkit.flops import count_macs

    ref_run = TorchEagerRunner(reference.model, torch.get_num_threads())
    ref_cache: dict[tuple, tuple] = {}

    def reference_of(i: int, x: np.ndarray):
        key = (i, x.shape)  # photo i at the size this candidate runs at
        if key not in ref_cache:
            y = ref_run(x)
            m = loss_fn.measure(torch.from_numpy(y), torch.from_numpy(x))
            ref_cache[key] = (y, m)
        return ref_cache[key]

    rows, outputs = [], []
    for cand in candidates:
        psnrs, style, content, ref_style, ref_content, outs = [], [], [], [], [], []
        for i, rgb in enumerate(images):
            x = to_tensor(_fit(rgb, cand.sizes)).numpy()
            y = np.clip(np.asarray(cand.run(x), np.float32), 0.0, 1.0)
            if y.shape != x.shape:
                raise UserError(f"{cand.name} returned shape {y.shape} for input {x.shape}; it is not a style net")
            y_ref, m_ref = reference_of(i, x)
            m = loss_fn.measure(torch.from_numpy(y), torch.from_numpy(x))
            psnrs.append(psnr(y, y_ref))
            style.append(m["style"]), content.append(m["content"])
            ref_style.append(m_ref["style"]), ref_content.append(m_ref["content"])
            outs.append(to_numpy(torch.from_numpy(y)))
        mse = [10 ** (-p / 10) if math.isfinite(p) else 0.0 for p in psnrs]  # mean PSNR over the set's mean MSE
        mean_mse = float(np.mean(mse))
        model = TransformerNet(cand.arch) if cand.arch is not None else None
        s, c, rs, rc = map(lambda v: float(np.mean(v)), (style, content, ref_style, ref_content))
        rows.append(QualityRow(
            name=cand.name, kind=cand.kind, bytes=size_of(cand.path if cand.kind != "checkpoint"
                                                          else Path(cand.path).with_suffix(".safetensors")),
            params=count_params(model) if model is not None else None,
            macs=count_macs(model, *macs_size) if model is not None else None,
            psnr_db=math.inf if mean_mse == 0.0 else 10.0 * math.log10(1.0 / mean_mse),
            style=s, content=c, style_change_pct=100.0 * (s - rs) / rs if rs else 0.0,
            content_change_pct=100.0 * (c - rc) / rc if rc else 0.0))
        outputs.append(outs)
    return rows, outputs


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:.4g}"
    return str(v)


def markdown_table(rows: list[QualityRow]) -> str:
    head = ("artifact", "kind", "bytes", "params", f"MACs@{MACS_SIZE[0]}x{MACS_SIZE[1]}", "PSNR vs float (dB)",
            "style loss", "style change %", "content loss", "content change %")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = (r.name, r.kind, r.bytes, r.params, r.macs, r.psnr_db, r.style, r.style_change_pct, r.content,
                 r.content_change_pct)
        lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def side_by_side(path: Path, content: np.ndarray, outputs: list[np.ndarray], labels: list[str]) -> Path:
    """content | output 1 | output 2 ... with a label above each panel."""
    from PIL import Image, ImageDraw

    h = max(o.shape[0] for o in [content] + outputs)
    panels = []
    for img, label in zip([content] + outputs, ["content"] + labels):
        if img.shape[0] != h:
            t = torch.nn.functional.interpolate(to_tensor(img), size=(h, round(img.shape[1] * h / img.shape[0])),
                                                mode="bilinear", align_corners=False)
            img = to_numpy(t.clamp(0, 1))
        band = Image.new("RGB", (img.shape[1], 16), "white")
        ImageDraw.Draw(band).text((2, 2), label[: max(4, img.shape[1] // 6)], fill="black")
        panels.append(np.concatenate([np.asarray(band, np.float32) / 255.0, img], axis=0))
    return save_image(path, np.concatenate(panels, axis=1))


def write_report(out_dir: Path, rows: list[QualityRow], strip: tuple[np.ndarray, list[np.ndarray], list[str]],
                 extra: dict | None = None) -> dict[str, Path]:
    """compare.json + compare.md + compare.png, each written atomically."""
    out_dir = Path(out_dir)
    paths = {"json": out_dir / "compare.json", "markdown": out_dir / "compare.md", "png": out_dir / "compare.png"}
    data = dict(extra or {}, rows=[{k: (None if isinstance(v, float) and math.isinf(v) else v)
                                    for k, v in asdict(r).items()} for r in rows],
                note="psnr_db null = identical to the float model (infinite PSNR)")
    side_by_side(paths["png"], *strip)
    write_json(paths["json"], data)
    with atomic_path(paths["markdown"]) as tmp:
        tmp.write_text(markdown_table(rows))
    return paths
