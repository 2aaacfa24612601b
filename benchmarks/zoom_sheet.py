"""One window of each photo, painted by several nets, side by side at 300%: where a measure points (lattice squares in
a sky, grain on skin), the pixels themselves. Each photo is painted whole at its native size (as `toolkit stylize`
does up to 1536 px) and the window cut after, so the nets see the same context.

    python benchmarks/zoom_sheet.py -o benchmarks/results/lattice_frost_300pct.png \\
        --window tubingen.jpg:40,300 --window baby.png:300,180 frost runs/lat_frost/lat_frost.safetensors

Windows name an eval photo (../shared/data/content/eval) and the window's top,left in its pixels; nets are shipped
style names or checkpoint paths. Rows: one per window, photo | each net, in the order given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def window(spec: str) -> tuple[str, int, int]:
    """'photo.jpg:TOP,LEFT' -> (photo, top, left)."""
    try:
        name, at = spec.rsplit(":", 1)
        top, left = (int(v) for v in at.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"window {spec!r} is not PHOTO:TOP,LEFT (e.g. tubingen.jpg:40,300)") from None
    return name, top, left


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("nets", nargs="+", help="shipped style names or checkpoint paths")
    p.add_argument("--window", type=window, action="append", required=True, metavar="PHOTO:TOP,LEFT")
    p.add_argument("--size", default="80x130", help="window HEIGHTxWIDTH in photo pixels (default 80x130)")
    p.add_argument("--zoom", type=int, default=3)
    p.add_argument("-o", "--out", type=Path, required=True)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from toolkit.checkpoint import load_checkpoint
    from toolkit.data.images import load_rgb, save_image
    from toolkit.paths import shared_data
    from toolkit.sheets import side_by_side, stack_rows, zoom
    from toolkit.stylize import stylize_rgb
    from toolkit.zoo import checkpoint_path

    torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.lower().split("x"))
    models = [load_checkpoint(checkpoint_path(net)).model.eval() for net in args.nets]
    photos = shared_data("content", "eval")
    if photos is None:
        p.error("../shared/data/content/eval is absent: set TOOLKIT_DATA to the shared data folder")
    painted: dict[str, list[np.ndarray]] = {}  # photo -> [photo, each net's painting]: once, however many windows
    rows = []
    for name, top, left in args.window:
        if name not in painted:
            rgb = load_rgb(photos / name)
            painted[name] = [rgb] + [np.clip(stylize_rgb(m, rgb), 0, 1) for m in models]
        rgb = painted[name][0]
        if top + h > rgb.shape[0] or left + w > rgb.shape[1]:
            p.error(f"window {name}:{top},{left} of {h}x{w} runs past the photo's {rgb.shape[0]}x{rgb.shape[1]} px")
        cut = (slice(top, top + h), slice(left, left + w))
        rows.append(side_by_side([zoom(c[cut], args.zoom) for c in painted[name]]))
    save_image(args.out, stack_rows(rows))
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
