"""End-to-end video fps (decode -> N workers -> ordered encode) vs model-only fps at the same size and workers.

Model-only: N processes, each with its own session, run the decoded frames (split N ways) through FrameStylizer
with nothing else going on; fps = frames / wall time. End-to-end: `stylize_video` on the same clip (a warm-up
run first so worker start-up is not counted twice). Writes benchmarks/results/video_throughput.{json,md}.

    python benchmarks/video_throughput.py [--arch nano] [--checkpoint CKPT] [--backend onnx] [--frames 120]
        [--encoder-presets medium,veryfast]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def _model_only_worker(args):
    payload, frames, threads = args
    from toolkit.video.stylize import FrameStylizer

    st = FrameStylizer(payload, threads=threads)
    st(frames[0])  # warm-up
    t0 = time.perf_counter()
    for f in frames:
        st(f)
    return t0, time.perf_counter()


def model_only_fps(payload, frames: list, workers: int, threads: int) -> float:
    from toolkit.video.stylize import _mp_context

    ctx = _mp_context()
    with ctx.Pool(workers) as pool:
        spans = pool.map(_model_only_worker, [(payload, frames[i::workers], threads) for i in range(workers)])
    start, end = min(s for s, _ in spans), max(e for _, e in spans)
    return len(frames) / (end - start)


def moving_frames(n: int, w: int, h: int):
    """A panning synthetic scene: smooth gradients, blobs and stripes sliding 2 px per frame."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w + 2 * n].astype(np.float32)
    scene = np.stack([xx / xx.max(), yy / h, 0.5 + 0.5 * np.sin(xx / 9 + yy / 13)], 2)
    for _ in range(40):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, xx.max()), rng.uniform(4, h / 4)
        scene[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 1, 3)
    scene = (scene * 255).astype(np.uint8)
    for i in range(n):
        yield np.ascontiguousarray(scene[:, 2 * i:2 * i + w])


def make_clip(path: Path, frames: int, w: int, h: int) -> Path:
    import av

    c = av.open(str(path), "w")
    s = c.add_stream("libx264", rate=25)
    s.width, s.height, s.pix_fmt = w, h, "yuv420p"
    for rgb in moving_frames(frames, w, h):
        for p in s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
            c.mux(p)
    for p in s.encode():
        c.mux(p)
    c.close()
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="nano")
    ap.add_argument("--checkpoint")
    ap.add_argument("--backend", default="onnx", choices=["onnx", "torch"])
    ap.add_argument("--clip", help="video to use (default: a generated clip)")
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--threads", type=int, default=1, help="runtime threads per worker")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--encoder-presets", default="veryfast", help="libx264 presets to compare, comma-separated")
    args = ap.parse_args()

    from toolkit.bench.host import host_info
    from toolkit.checkpoint import load_checkpoint
    from toolkit.fsutil import atomic_path, write_json
    from toolkit.models import create_model
    from toolkit.video import make_payload, read_frames, stylize_video

    model = load_checkpoint(args.checkpoint).model if args.checkpoint else create_model(args.arch).eval()
    payload = make_payload(model, args.backend)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = Path(args.clip) if args.clip else make_clip(tmp / "clip.mp4", args.frames, args.width, args.height)
        frames = [rgb for i, _, rgb in read_frames(clip) if i < args.frames]
        h, w = frames[0].shape[:2]
        rows = []
        presets = args.encoder_presets.split(",")
        for n in args.workers:
            model_fps = model_only_fps(payload, frames, n, args.threads)
            for preset in presets:
                stylize_video(clip, tmp / "warm.mp4", payload=payload, workers=n, threads=args.threads,
                              progress=False, overwrite=True, encoder_preset=preset)
                stats = stylize_video(clip, tmp / f"out{n}.mp4", payload=payload, workers=n, threads=args.threads,
                                      progress=False, overwrite=True, encoder_preset=preset)
                rows.append({"workers": n, "threads_per_worker": args.threads, "encoder_preset": preset,
                             "frames": stats["frames"], "model_only_fps": model_fps,
                             "end_to_end_fps": stats["fps"], "end_to_end_over_model": stats["fps"] / model_fps})
                print(rows[-1])
    for r in rows:  # vs one worker with the same encoder preset
        base = next(b for b in rows if b["encoder_preset"] == r["encoder_preset"])["end_to_end_fps"]
        r["speedup_vs_first"] = r["end_to_end_fps"] / base
    report = {"benchmark": "video_throughput", "backend": args.backend,
              "model": args.checkpoint or f"{args.arch} (random weights)", "size": [h, w],
              "clip": str(args.clip or f"generated {args.frames} frames"), "machine": platform.platform(),
              "host": host_info().to_dict(), "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "video_throughput.json", report)
    lines = [f"# Video throughput ({args.backend}, {report['model']}, {w}x{h})", "",
             f"Host: {report['host']['cpu_model']}, {report['host']['cores']} cores.", "",
             "| workers | threads/worker | encoder preset | model-only fps | end-to-end fps | e2e / model "
             "| speed-up vs 1 worker |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['workers']} | {r['threads_per_worker']} | {r['encoder_preset']} | {r['model_only_fps']:.1f} "
              f"| {r['end_to_end_fps']:.1f} "
              f"| {r['end_to_end_over_model']:.0%} | {r['speedup_vs_first']:.2f}x |" for r in rows]
    with atomic_path(RESULTS / "video_throughput.md") as tmp_md:
        tmp_md.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
