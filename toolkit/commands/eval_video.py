from __future__ import annotations

HELP = "measure temporal consistency (warping error on non-occluded pixels) of per-frame vs stabilised stylisation"

MAX_SIDE = 480  # real clips are downscaled to this long side so the report stays quick


def add_arguments(p) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--style", help="a shipped style name")
    src.add_argument("--checkpoint", help="a .safetensors checkpoint")
    p.add_argument("--compare", action="append", default=[], metavar="CKPT",
                   help="another checkpoint to report per-frame (e.g. trained with --temporal-weight); repeatable")
    p.add_argument("--sintel", help="folder of Sintel sequences (default ../shared/data/video/sintel)")
    p.add_argument("--clips", nargs="*", help="real video clips (default ../shared/data/video/clips/*.mp4)")
    p.add_argument("--frames", type=int, default=24, help="frames per real clip (default 24)")
    p.add_argument("--size", type=int, help="run the net at this long side")
    p.add_argument("--stabilize-weight", type=float, default=0.6)
    p.add_argument("--style-image", help="style image for the style-loss columns (default: the one the checkpoint "
                   "was trained on, looked up by name in ../shared/data/styles when its path is gone)")
    p.add_argument("-o", "--out", default="reports/video", help="report folder (default reports/video)")


def _gt_pair(seq):
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


def _clip_frames(path, n: int):
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


def _variants(frames, stylizers, weight, flows):
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


STRIP_MAX_WIDTH = 1536
GOAL_CUT, GOAL_STYLE = 0.30, 0.10  # the video issue's goal: >= 30% steadier, style loss at most +10%


def _summary(rows, others) -> dict:
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


def _style_image(arg, ckpt):
    """The style image for the style-loss columns: --style-image, the training path, or its name in shared data."""
    from pathlib import Path

    from toolkit.errors import UserError
    from toolkit.paths import resolve_data_path, shared_data

    if arg:
        if not Path(arg).is_file():
            raise UserError(f"--style-image {arg} does not exist; pass the style image the net was trained on")
        return Path(arg)
    trained = ckpt.meta.get("train_config", {}).get("style_image")
    if not trained:
        return None
    trained = resolve_data_path(trained)
    return trained if trained.is_file() else shared_data("styles", trained.name)


def _mean_style_loss(loss, frames, content):
    """Mean unweighted Gram style loss of stylised frames (what the style-loss-within-10% goal compares)."""
    import numpy as np

    from toolkit.data.images import to_tensor

    return float(np.mean([loss.measure(to_tensor(f), to_tensor(c))["style"] for f, c in zip(frames, content)]))


def run(args) -> int:
    import json
    from pathlib import Path

    import numpy as np

    from toolkit.checkpoint import load_checkpoint
    from toolkit.errors import UserError
    from toolkit.fsutil import atomic_path, ensure_writable_dir, write_json
    from toolkit.paths import portable_path, shared_data
    from toolkit.video.stylize import FrameStylizer, make_payload
    from toolkit.video.temporal import flow_with_mask, warping_error
    from toolkit.zoo import load_style

    if args.frames < 2:
        raise UserError(f"--frames must be >= 2 (warping error compares consecutive frames), got {args.frames}")
    if args.size is not None:
        from toolkit.data.images import check_pixels

        if args.size < 16:
            raise UserError(f"--size {args.size} is too small; use at least 16")
        check_pixels(args.size, args.size, f"--size {args.size}")
    ckpt = load_style(args.style, args.checkpoint)
    models = {f"{ckpt.name} per-frame": ckpt.model}
    for c in args.compare:
        other = load_checkpoint(c)
        models[f"{Path(c).stem} per-frame"] = other.model
    stylizers = {k: FrameStylizer(make_payload(m, "torch"), size=args.size, threads=2) for k, m in models.items()}
    sintel = Path(args.sintel) if args.sintel else shared_data("video", "sintel")
    clips = [Path(c) for c in args.clips] if args.clips is not None else sorted(
        (shared_data("video", "clips") or Path("/nonexistent")).glob("*.mp4"))
    rows, strip = [], None
    style_image = _style_image(args.style_image, ckpt)
    loss = None
    if style_image is not None:
        from toolkit.losses import measuring_loss

        loss = measuring_loss(style_image)

    def add_style(row, variants, frames):
        if loss is not None:
            row["style_loss"] = {k: _mean_style_loss(loss, v, frames) for k, v in variants.items()}

    for seq in sorted(p for p in (sintel.iterdir() if sintel and sintel.is_dir() else []) if p.is_dir()):
        pair = _gt_pair(seq)
        if pair is None:
            continue
        frames, gt_flow, gt_mask = pair
        flows = [None] + [flow_with_mask(frames[i], frames[i - 1]) for i in range(1, 4)]
        variants = _variants(frames, stylizers, args.stabilize_weight, flows)
        row = {"source": f"sintel/{seq.name}", "flow": "ground truth", "pairs": 1,
               "content": warping_error(frames[1], frames[2], gt_flow, gt_mask)}
        row.update({k: warping_error(v[1], v[2], gt_flow, gt_mask) for k, v in variants.items()})
        add_style(row, {k: v[1:3] for k, v in variants.items()}, frames[1:3])
        rows.append(row)
        if strip is None:
            strip = [frames] + list(variants.values())

    for clip in clips:
        frames = _clip_frames(clip, args.frames)
        if len(frames) < 2:
            continue
        flows = [None] + [flow_with_mask(frames[i], frames[i - 1]) for i in range(1, len(frames))]
        variants = _variants(frames, stylizers, args.stabilize_weight, flows)

        def mean_error(seq):
            return float(np.mean([warping_error(seq[i], seq[i - 1], *flows[i]) for i in range(1, len(seq))]))

        row = {"source": clip.name, "flow": "DIS estimate", "pairs": len(frames) - 1, "content": mean_error(frames)}
        row.update({k: mean_error(v) for k, v in variants.items()})
        add_style(row, variants, frames)
        rows.append(row)
        if strip is None:
            strip = [frames[:4]] + [v[:4] for v in variants.values()]
    if not rows:
        raise UserError("no Sintel sequences or clips found; pass --sintel DIR or --clips FILE...")

    names = ["content"] + list(variants.keys())
    base = f"{ckpt.name} per-frame"
    others = [n for n in variants if n != base]  # the stabilised output and any --compare models
    for r in rows:
        r["warp_cut_vs_per_frame"] = {n: 1 - r[n] / r[base] if r[base] > 0 else 0.0 for n in others}
        if "style_loss" in r:
            r["style_change_vs_per_frame"] = {n: r["style_loss"][n] / r["style_loss"][base] - 1 for n in others}
    summary = _summary(rows, others)
    out = ensure_writable_dir(args.out)
    report = {"style": ckpt.name, "size": args.size, "style_image": portable_path(style_image) if style_image else None,
              "stabilize_weight": args.stabilize_weight,
              "metric": "mean squared RGB difference in [0,1] between consecutive frames after warping, on "
                        "non-occluded pixels", "summary": summary, "rows": rows}
    write_json(out / "video_eval.json", report)
    lines = [f"# Temporal consistency: {ckpt.name}", "", report["metric"] + " (lower is steadier).", "",
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
    if loss is not None:
        styled = names[1:]
        lines += ["", f"Gram style loss of the stylised frames vs {style_image.name} (lower = closer to the style).",
                  "", "| source | " + " | ".join(styled) + " | " + " | ".join(f"change: {n}" for n in others) + " |",
                  "|---|" + "---|" * (len(styled) + len(others))]
        for r in rows:
            lines.append(f"| {r['source']} | " + " | ".join(f"{r['style_loss'][n]:.3e}" for n in styled) + " | "
                         + " | ".join(f"{r['style_change_vs_per_frame'][n]:+.1%}" for n in others) + " |")
    else:
        lines += ["", "(no style image found: pass --style-image for the style-loss columns)"]
    with atomic_path(out / "video_eval.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    from toolkit.data.images import save_image

    h = min(f.shape[0] for f in strip[0])
    grid = np.concatenate([np.concatenate([f[:h] for f in row], axis=1) for row in strip], axis=0)
    if grid.shape[1] > STRIP_MAX_WIDTH:  # full-res frames side by side make a many-MB PNG; a preview suffices
        from toolkit.data.images import resize_long_side

        grid = resize_long_side(grid, round(max(grid.shape[:2]) * STRIP_MAX_WIDTH / grid.shape[1]))
    save_image(out / "video_strip.png", grid)
    print(json.dumps({r["source"]: {n: round(r[n], 6) for n in names} for r in rows}, indent=1))
    print(out / "video_eval.md")
    return 0
