"""Edge stripes of every shipped style on more pictures than the quality benchmark's 13: frames of the three video
clips, the Sintel sequences' first frames and every 10th training photo (trained on, but whole: the nets saw them
as 256-px crops), at native size and long sides 384, 512 and 640. Both measures of toolkit.metrics: the edge
stripe (a step at the border the photo does not have) and the two-sided step change (which also counts a photo's
own edge line, such as a dark scan line, that the style softens or removes).

    python benchmarks/stripe_survey.py [--style S ...] [--checkpoint S=PATH ...] [--label L]

Writes benchmarks/results/stripe_survey[_L].{md,json}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))
from quality import GOAL_STRIPE, photos, stripes_at  # noqa: E402  (the quality benchmark's photos and measure)
SIDES = (None, 384, 512, 640)  # None: native


def pictures(max_side: int = 768) -> dict[str, list[tuple[str, np.ndarray]]]:
    """{group: [(name, HxWx3 in [0, 1])]} for the groups eval, video, train (capped at `max_side`)."""
    import av

    from toolkit.data.images import list_images, load_rgb, resize_long_side
    from toolkit.paths import shared_data

    video = []
    for clip in sorted(shared_data("video", "clips").glob("*.mp4")):
        with av.open(str(clip)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        video += [(f"{clip.stem}#{i}", frames[i].astype(np.float32) / 255)
                  for i in np.linspace(5, len(frames) - 5, 4).astype(int)]
    sintel = shared_data("video", "sintel")
    video += [(seq.name, load_rgb(seq / "frame_0001.png")) for seq in sorted(sintel.iterdir() if sintel else [])
              if (seq / "frame_0001.png").is_file()]
    train_dir = shared_data("content", "train")
    train = [(f.name, load_rgb(f)) for f in list_images(train_dir)[::10]] if train_dir else []
    cap = lambda rgb: resize_long_side(rgb, max_side) if max(rgb.shape[:2]) > max_side else rgb  # noqa: E731
    return {"eval": photos(max_side), "video": [(n, cap(r)) for n, r in video],
            "train": [(n, cap(r)) for n, r in train]}


def survey(model, images: list[tuple[str, np.ndarray]], sides=SIDES) -> list[dict]:
    """One row per picture and size below its own: the edge stripe and the two-sided step change."""
    rows = []
    for name, rgb in images:
        for side in sides:
            if side is None or side < max(rgb.shape[:2]):
                stripe, change = stripes_at(model, rgb, side)
                rows.append({"picture": name, "long_side": side, "edge_stripe": stripe, "edge_stripe_change": change})
    return rows


def summary(rows: list[dict], key: str, goal: float) -> str:
    worst = max(rows, key=lambda r: r[key])
    return (f"{worst[key]:.3f} ({worst['picture']} at {worst['long_side'] or 'native'}), "
            f"{sum(r[key] > goal for r in rows)}/{len(rows)} over")


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT))
    import torch

    from toolkit.checkpoint import load_checkpoint
    from toolkit.fsutil import write_json
    from toolkit.paths import shared_data
    from toolkit.zoo import checkpoint_path, shipped_styles

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--style", action="append", help="styles to survey (default: every shipped style)")
    ap.add_argument("--checkpoint", action="append", default=[], metavar="STYLE=PATH",
                    help="survey this checkpoint for STYLE instead of the shipped one")
    ap.add_argument("--label", default="")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if shared_data("content", "eval") is None or shared_data("video", "clips") is None:
        print("stripe_survey: the shared data is missing; set TOOLKIT_DATA to the shared data folder", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    overrides = dict(item.split("=", 1) for item in args.checkpoint)
    styles = args.style or sorted(set(shipped_styles()) | set(overrides))
    groups = pictures()
    result = {"goal": GOAL_STRIPE, "pictures": {g: [n for n, _ in ims] for g, ims in groups.items()}, "styles": {}}
    lines = [f"# Edge stripes beyond the eval set{' (' + args.label + ')' if args.label else ''}", "",
             f"Pictures: eval = the quality benchmark's {len(groups['eval'])}; video = "
             f"{len(groups['video'])} frames of the clips and Sintel; train = {len(groups['train'])} training photos "
             "(every 10th; seen as 256-px crops). Each at native size and long sides 384, 512, 640. Worst value and "
             f"how many picture-sizes are over the goal ({GOAL_STRIPE}): the edge stripe (a step at the border the "
             "photo does not have) | the two-sided step change (also counts a photo's own edge line the style "
             "softens).", "", "| style | group | edge stripe | two-sided step change |", "|---|---|---|---|"]
    for style in styles:
        model = load_checkpoint(checkpoint_path(overrides.get(style, style))).model.eval()
        result["styles"][style] = per_group = {g: survey(model, ims) for g, ims in groups.items()}
        for group, rows in per_group.items():
            if not rows:
                continue
            lines.append(f"| {style} | {group} | {summary(rows, 'edge_stripe', GOAL_STRIPE)} | "
                         f"{summary(rows, 'edge_stripe_change', GOAL_STRIPE)} |")
            print(lines[-1], flush=True)
    label = f"_{args.label}" if args.label else ""
    write_json(RESULTS / f"stripe_survey{label}.json", result)
    (RESULTS / f"stripe_survey{label}.md").write_text("\n".join(lines) + "\n")
    print(RESULTS / f"stripe_survey{label}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
