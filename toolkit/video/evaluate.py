"""Temporal consistency of stylised video: warping error of consecutive frames on non-occluded pixels, per-frame vs
stabilised (and against other models), on Sintel sequences with ground-truth flow and on real clips with estimated
flow; optionally the Gram style loss each variant keeps.

    result = evaluate_temporal({"frost per-frame": model}, sintel=Path("sintel"), clips=[], style_image=style)
    write_report(result, Path("reports/video"))

`toolkit eval-video` is the command line of this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from toolkit.errors import UserError

MAX_SIDE = 480  # real clips are downscaled to this long side so the report stays quick
STRIP_MAX_WIDTH = 1536
GOAL_CUT, GOAL_STYLE = 0.30, 0.10  # the video issue's goal: >= 30% steadier, style loss at most +10%
METRIC = "mean squared RGB difference in [0,1] between consecutive frames after warping, on non-occluded pixels"


@dataclass
class VideoEval:
    """What `evaluate_temporal` measured: the JSON report and the frame strip (rows of frames) it illustrates."""
    report: dict
    names: list            # "content" then every variant, in column order
    base: str              # the per-frame variant the others are compared with
    others: list           # the stabilised output and the compared models
    strip: list = field(repr=False, default_factory=list)
    style_image: Optional[Path] = None


def gt_pair(seq):
    """Frames 2, 3 and the ground-truth flow 2->3 with its reliable-pixel mask, or None if incomplete."""
    import numpy as np

    from toolkit.data.images import load_rgb
    from toolkit.video.temporal import read_flo

    gt = seq / "gt"
    needed = [seq / f"frame_000{i}.png" for i in (1, 2, 3, 4)] + [gt / "frame_0002.flo"]
    if not all(p.is_file() for p in needed):
        return None
    frames = [load_rgb(p) for p in needed[:4]]
    flow = read_flo(gt / "frame_0002.flo")
    mask = np.ones(flow.shape[:2], bool)
    for name in ("occlusions", "invalid"):
        m = gt / name / "frame_0002.png"
        if m.is_file():
            mask &= load_rgb(m)[..., 0] < 0.5
    return frames, flow, mask


def clip_frames(path, n: int):
    import cv2
    import numpy as np

    from toolkit.video.io import read_frames

    frames = []
    for _, _, rgb in read_frames(path):
        h, w = rgb.shape[:2]
        if max(h, w) > MAX_SIDE:
            s = MAX_SIDE / max(h, w)
            rgb = cv2.resize(rgb, (round(w * s) // 2 * 2, round(h * s) // 2 * 2), interpolation=cv2.INTER_AREA)
        frames.append(rgb.astype(np.float32) / 255.0)
        if len(frames) == n:
            break
    return frames


def _u8(x):
    import numpy as np

    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def variants_of(frames, stylizers, weight, flows):
    """name -> list of stylised frames (float [0,1]): per-frame for each model, and stabilised for the first."""
    import numpy as np

    from toolkit.video.temporal import Stabilizer

    out = {}
    for name, st in stylizers.items():
        out[name] = [st(_u8(f)).astype(np.float32) / 255 for f in frames]
    first = next(iter(stylizers))
    stab, seq = Stabilizer(weight), []
    for i, s in enumerate(out[first]):
        flow, mask = flows[i] if i else (None, None)
        seq.append(stab(_u8(s), flow, mask).astype(np.float32) / 255)
    out[f"{first} + stabilize"] = seq
    return out


def summarize(rows, others) -> dict:
    """Per variant: mean warping-error cut and style-loss change vs per-frame over all sources, and the goal."""
    import numpy as np

    out = {}
    for n in others:
        cut = float(np.mean([r["warp_cut_vs_per_frame"][n] for r in rows]))
        changes = [r["style_change_vs_per_frame"][n] for r in rows if "style_change_vs_per_frame" in r]
        style = float(np.mean(changes)) if changes else None
        out[n] = {"warp_cut": cut, "style_change": style,
                  "goal_met": bool(cut >= GOAL_CUT and style is not None and style <= GOAL_STYLE)}
    return out


def mean_style_loss(loss, frames, content):
    """Mean unweighted Gram style loss of stylised frames (what the style-loss-within-10% goal compares)."""
    import numpy as np

    from toolkit.data.images import to_tensor

    return float(np.mean([loss.measure(to_tensor(f), to_tensor(c))["style"] for f, c in zip(frames, content)]))

def evaluate_temporal(models: dict, sintel: Optional[Path] = None, clips=(), frames: int = 24,
                      size: Optional[int] = None, stabilize_weight: float = 0.6,
                      style_image: Optional[Path] = None, style: str = "") -> VideoEval:
    """Warping errors (and, with `style_image`, style losses) of each model per-frame and of the first model
    stabilised, on every complete Sintel sequence under `sintel` and the first `frames` frames of each clip.

    `models` maps a column name to a net; the first is the base the cuts are measured against."""
    import numpy as np

    from toolkit.video.stylize import FrameStylizer, make_payload
    from toolkit.video.temporal import flow_with_mask, warping_error

    if frames < 2:
        raise UserError(f"--frames must be >= 2 (warping error compares consecutive frames), got {frames}")
    from toolkit.stylize import check_sides

    check_sides(size, None)
    if not models:
        raise UserError("no model to evaluate")
    stylizers = {k: FrameStylizer(make_payload(m, "torch"), size=size, threads=2) for k, m in models.items()}
    loss = None
    if style_image is not None:
        from toolkit.losses import measuring_loss

        loss = measuring_loss(style_image)

    def add_style(row, variants, content):
        if loss is not None:
            row["style_loss"] = {k: mean_style_loss(loss, v, content) for k, v in variants.items()}

    rows, strip, variants = [], None, {}
    sequences = sorted(p for p in (Path(sintel).iterdir() if sintel and Path(sintel).is_dir() else []) if p.is_dir())
    for seq in sequences:
        pair = gt_pair(seq)
        if pair is None:
            continue
        seq_frames, gt_flow, gt_mask = pair
        flows = [None] + [flow_with_mask(seq_frames[i], seq_frames[i - 1]) for i in range(1, 4)]
        variants = variants_of(seq_frames, stylizers, stabilize_weight, flows)
        row = {"source": f"sintel/{seq.name}", "flow": "ground truth", "pairs": 1,
               "content": warping_error(seq_frames[1], seq_frames[2], gt_flow, gt_mask)}
        row.update({k: warping_error(v[1], v[2], gt_flow, gt_mask) for k, v in variants.items()})
        add_style(row, {k: v[1:3] for k, v in variants.items()}, seq_frames[1:3])
        rows.append(row)
        if strip is None:
            strip = [seq_frames] + list(variants.values())

    for clip in map(Path, clips):
        clip_rgb = clip_frames(clip, frames)
        if len(clip_rgb) < 2:
            continue
        flows = [None] + [flow_with_mask(clip_rgb[i], clip_rgb[i - 1]) for i in range(1, len(clip_rgb))]
        variants = variants_of(clip_rgb, stylizers, stabilize_weight, flows)

        def mean_error(seq):
            return float(np.mean([warping_error(seq[i], seq[i - 1], *flows[i]) for i in range(1, len(seq))]))

        row = {"source": clip.name, "flow": "DIS estimate", "pairs": len(clip_rgb) - 1,
               "content": mean_error(clip_rgb)}
        row.update({k: mean_error(v) for k, v in variants.items()})
        add_style(row, variants, clip_rgb)
        rows.append(row)
        if strip is None:
            strip = [clip_rgb[:4]] + [v[:4] for v in variants.values()]
    if not rows:
        raise UserError("no Sintel sequences or clips found; pass --sintel DIR or --clips FILE...")

    names = ["content"] + list(variants.keys())
    base = next(iter(models))
    others = [n for n in variants if n != base]  # the stabilised output and any compared models
    for r in rows:
        r["warp_cut_vs_per_frame"] = {n: 1 - r[n] / r[base] if r[base] > 0 else 0.0 for n in others}
        if "style_loss" in r:
            r["style_change_vs_per_frame"] = {n: r["style_loss"][n] / r["style_loss"][base] - 1 for n in others}
    from toolkit.paths import portable_path

    report = {"style": style, "size": size, "style_image": portable_path(style_image) if style_image else None,
              "stabilize_weight": stabilize_weight, "metric": METRIC, "summary": summarize(rows, others),
              "rows": rows}
    return VideoEval(report, names, base, others, strip, style_image)


def report_markdown(result: VideoEval) -> str:
    report, names, base, others = result.report, result.names, result.base, result.others
    rows, summary = report["rows"], report["summary"]
    lines = [f"# Temporal consistency: {report['style']}", "", report["metric"] + " (lower is steadier).", "",
             f"Goal: warping error cut >= {GOAL_CUT:.0%} vs `{base}` with the style loss within "
             f"+{GOAL_STYLE:.0%} (means over the sources below).", "",
             "| variant | mean warping-error cut | mean style-loss change | goal |", "|---|---|---|---|"]
    for n, v in summary.items():
        style = "-" if v["style_change"] is None else f"{v['style_change']:+.1%}"
        lines.append(f"| {n} | {v['warp_cut']:.0%} | {style} | {'met' if v['goal_met'] else 'not met'} |")
    lines += ["", "| source | flow | pairs | " + " | ".join(names) + " | " + " | ".join(f"cut: {n}" for n in others)
              + " |", "|---|---|---|" + "---|" * (len(names) + len(others))]
    for r in rows:
        lines.append(f"| {r['source']} | {r['flow']} | {r['pairs']} | " + " | ".join(f"{r[n]:.5f}" for n in names)
                     + " | " + " | ".join(f"{r['warp_cut_vs_per_frame'][n]:.0%}" for n in others) + " |")
    if result.style_image is not None:
        styled = names[1:]
        lines += ["", f"Gram style loss of the stylised frames vs {result.style_image.name} (lower = closer to the "
                  "style).", "",
                  "| source | " + " | ".join(styled) + " | " + " | ".join(f"change: {n}" for n in others) + " |",
                  "|---|" + "---|" * (len(styled) + len(others))]
        for r in rows:
            lines.append(f"| {r['source']} | " + " | ".join(f"{r['style_loss'][n]:.3e}" for n in styled) + " | "
                         + " | ".join(f"{r['style_change_vs_per_frame'][n]:+.1%}" for n in others) + " |")
    else:
        lines += ["", "(no style image found: pass --style-image for the style-loss columns)"]
    return "\n".join(lines) + "\n"


def strip_image(result: VideoEval):
    """Content frames over each variant's frames, side by side, at most STRIP_MAX_WIDTH wide."""
    import numpy as np

    h = min(f.shape[0] for f in result.strip[0])
    grid = np.concatenate([np.concatenate([f[:h] for f in row], axis=1) for row in result.strip], axis=0)
    if grid.shape[1] > STRIP_MAX_WIDTH:  # full-res frames side by side make a many-MB PNG; a preview suffices
        from toolkit.data.images import resize_long_side

        grid = resize_long_side(grid, round(max(grid.shape[:2]) * STRIP_MAX_WIDTH / grid.shape[1]))
    return grid


def write_report(result: VideoEval, out: Path) -> Path:
    """video_eval.json, video_eval.md and video_strip.png in `out`; returns the Markdown report's path."""
    from toolkit.data.images import save_image
    from toolkit.fsutil import atomic_path, ensure_writable_dir, write_json

    out = ensure_writable_dir(out)
    write_json(out / "video_eval.json", result.report)
    with atomic_path(out / "video_eval.md") as tmp:
        tmp.write_text(report_markdown(result))
    save_image(out / "video_strip.png", strip_image(result))
    return out / "video_eval.md"


def brief(result: VideoEval) -> str:
    """The warping errors per source and column, as JSON (what the command prints)."""
    return json.dumps({r["source"]: {n: round(r[n], 6) for n in result.names} for r in result.report["rows"]},
                      indent=1)


def style_image_for(ckpt, given=None):
    """The style image for the style-loss columns: `given` (must exist), the path the checkpoint was trained on, or
    that file's name in the shared styles; None when none is found."""
    from pathlib import Path

    from toolkit.errors import UserError
    from toolkit.paths import resolve_data_path, shared_data

    if given:
        if not Path(given).is_file():
            raise UserError(f"--style-image {given} does not exist; pass the style image the net was trained on")
        return Path(given)
    trained = ckpt.meta.get("train_config", {}).get("style_image")
    if not trained:
        return None
    trained = resolve_data_path(trained)
    return trained if trained.is_file() else shared_data("styles", trained.name)
