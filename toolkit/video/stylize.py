"""Stylise whole videos: decode -> N worker processes (each with its own runtime session) -> in-order re-assembly
-> encode, with bounded queues end to end so memory stays flat however long the clip.

The model travels to workers as a `ModelPayload` (the files' bytes), so the same payload serves local processes
and Ray actors on other machines. `--stabilize` computes content flow in the workers and blends in order in the
parent, so the output does not depend on the number of workers or on the engine.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from toolkit.errors import UserError
from toolkit.video.io import (DEFAULT_X264_PRESET, VIDEO_SUFFIXES, VideoInfo, VideoWriter,
                              is_video_path, probe, read_frames)

log = logging.getLogger(__name__)

BACKENDS = ("onnx", "torch")
ENGINES = ("local", "ray")


@dataclass(frozen=True)
class ModelPayload:
    """Everything a worker needs to build its own session: backend, the main file's name, files' bytes."""

    backend: str
    main: str
    files: tuple[tuple[str, bytes], ...]
    stride: int


def make_payload(model, backend: str = "onnx", style: str = "style") -> ModelPayload:
    """Export (onnx, once, into a temp dir, parity skipped) or save (torch) the model and read the files back."""
    from toolkit.errors import unknown

    if backend not in BACKENDS:
        raise unknown("backend", backend, BACKENDS)
    with tempfile.TemporaryDirectory(prefix="toolkit-video-") as tmp:
        tmp = Path(tmp)
        if backend == "onnx":
            from toolkit.export import export_artifact
            from toolkit.export.base import ExportSpec

            main = tmp / f"{style}.onnx"
            export_artifact(model, ExportSpec(target="onnx", style=style), main, check=False)
        else:
            from toolkit.checkpoint import save_checkpoint

            main = save_checkpoint(tmp / f"{style}.safetensors", model, {"name": style})
        files = tuple((p.name, p.read_bytes()) for p in sorted(tmp.iterdir()) if p.is_file())
    return ModelPayload(backend, main.name, files, model.config.stride)


class FrameStylizer:
    """One runtime session: RGB uint8 frame -> stylised RGB uint8 frame of the same size."""

    def __init__(self, payload: ModelPayload, size: int | None = None, threads: int = 1):
        self.payload, self.size = payload, size
        self._dir = tempfile.TemporaryDirectory(prefix="toolkit-worker-")
        for name, data in payload.files:
            (Path(self._dir.name) / name).write_bytes(data)
        path = Path(self._dir.name) / payload.main
        if payload.backend == "torch":
            import torch

            from toolkit.checkpoint import load_checkpoint

            torch.set_num_threads(threads)
            model = load_checkpoint(path).model.eval()

            def run(x: np.ndarray) -> np.ndarray:
                with torch.no_grad():
                    return model(torch.from_numpy(x)).numpy()

            self._run = run
        else:
            from toolkit.export import load_runner

            self._run = load_runner(path, threads=threads)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        import cv2

        h, w = rgb.shape[:2]
        work = rgb
        if self.size and self.size != max(h, w):
            scale = self.size / max(h, w)
            work = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                              interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        wh, ww = work.shape[:2]
        s = self.payload.stride
        if min(wh, ww) < 2 * s:
            raise UserError(f"frames are {ww}x{wh}; this net needs at least {2 * s} px per side; use a larger --size")
        x = work.astype(np.float32).transpose(2, 0, 1)[None] / 255.0  # the net pads any side itself
        y = np.asarray(self._run(np.ascontiguousarray(x)))[0].transpose(1, 2, 0)
        out = (np.clip(y, 0, 1) * 255 + 0.5).astype(np.uint8)
        if out.shape[:2] != (h, w):
            out = cv2.resize(out, (w, h), interpolation=cv2.INTER_CUBIC)
        return out


def process_task(stylizer: FrameStylizer, task: tuple) -> tuple:
    """(index, frame, previous frame or None) -> (index, stylised, flow to previous or None, mask or None)."""
    index, frame, prev = task
    styled = stylizer(frame)
    if prev is None:
        return index, styled, None, None
    from toolkit.video.temporal import flow_with_mask

    flow, mask = flow_with_mask(frame, prev)
    return index, styled, flow, mask


class FrameSlots:
    """Frames in flight live in shared memory: `slots` input and output frames of one shape, created before the
    workers start (multiprocessing RawArrays, inherited by forkserver/spawn children). Only slot numbers cross the
    task and result queues, instead of two ~1 MB pickles per 640x480 frame through 64 KB pipe chunks, which cost the
    kernel a context switch each and made a worker 35% slower end to end than alone."""

    def __init__(self, ctx, slots: int, shape: tuple[int, ...]):
        self.shape, self.slots = tuple(shape), slots
        n = slots * int(np.prod(shape))
        self._raw = (ctx.RawArray("B", n), ctx.RawArray("B", n))

    @property
    def inputs(self) -> np.ndarray:
        return np.frombuffer(self._raw[0], np.uint8).reshape(self.slots, *self.shape)

    @property
    def outputs(self) -> np.ndarray:
        return np.frombuffer(self._raw[1], np.uint8).reshape(self.slots, *self.shape)


def die_with_parent() -> None:
    """Make this worker process end when the process that started it does, even on SIGKILL (which runs no cleanup):
    Linux's parent-death signal (the forkserver parent exits when the main process dies), and on every platform a
    thread that waits on multiprocessing's parent sentinel."""
    import multiprocessing
    import signal
    import sys

    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        try:
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the sentinel thread below still covers it
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch():
        parent.join()   # returns when the parent's end of the sentinel closes: it died
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()
    if not parent.is_alive():  # died before the watch began
        os._exit(1)


def _worker_main(payload: ModelPayload, size: int | None, threads: int, frames: FrameSlots, tasks, results) -> None:
    die_with_parent()
    try:
        stylizer = FrameStylizer(payload, size, threads)
        inputs, outputs = frames.inputs, frames.outputs
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        results.put(("error", -1, f"{type(exc).__name__}: {exc}"))
        return
    while True:
        task = tasks.get()
        if task is None:
            return
        index, slot, prev = task
        try:
            _, styled, flow, mask = process_task(stylizer, (index, inputs[slot], prev))
            outputs[slot] = styled
            results.put((index, slot, flow, mask))
        except BaseException as exc:  # noqa: BLE001
            results.put(("error", index, f"{type(exc).__name__}: {exc}"))
            return


def _tasks(frames: Iterator, stabilize: bool) -> Iterator[tuple[tuple, int | None]]:
    """Yield (task, pts); with stabilize each task carries the previous content frame for the flow."""
    prev = None
    for index, pts, rgb in frames:
        yield (index, rgb, prev if stabilize else None), pts
        prev = rgb


def _prefetch(it: Iterator, depth: int) -> Iterator:
    """Run `it` (decoding) in a thread, at most `depth` items ahead; exceptions re-raise in the consumer."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def pump():
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # noqa: BLE001
            q.put(exc)

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def _mp_context():
    """forkserver with the heavy runtimes preloaded: workers start in milliseconds, not seconds, and never inherit
    a parent's live thread pools (fork after torch/onnxruntime ran is unsafe). spawn where forkserver is missing."""
    import multiprocessing as mp

    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["toolkit.video.stylize", "numpy", "cv2", "torch", "onnxruntime",
                                "toolkit.checkpoint", "toolkit.export"])
    return ctx


def _run_local(payload, size, workers, threads, task_iter) -> Iterator[tuple]:
    """Results in input order from `workers` spawned processes; at most 4 x workers frames in flight, each in its
    own shared-memory slot."""
    first = next(task_iter, None)
    if first is None:
        return
    ctx = _mp_context()
    cap = 4 * workers
    shape = first[0][1].shape
    frames = FrameSlots(ctx, cap, shape)
    inputs, outputs = frames.inputs, frames.outputs
    tasks, results = ctx.Queue(maxsize=cap), ctx.Queue(maxsize=cap)
    procs = [ctx.Process(target=_worker_main, args=(payload, size, threads, frames, tasks, results), daemon=True)
             for _ in range(workers)]
    for p in procs:
        p.start()
    task_iter = itertools.chain([first], task_iter)
    free = list(range(cap))
    pending: dict[int, tuple] = {}
    pts_of: dict[int, int | None] = {}
    next_index, exhausted = 0, False
    try:
        while True:
            while not exhausted and free:
                try:
                    (index, rgb, prev), pts = next(task_iter)
                except StopIteration:
                    exhausted = True
                    break
                if rgb.shape != shape:
                    raise UserError(f"frame {index} is {rgb.shape[1]}x{rgb.shape[0]}, the first frame is "
                                    f"{shape[1]}x{shape[0]}; the frame size must not change within a video")
                slot = free.pop()
                inputs[slot] = rgb
                pts_of[index] = pts
                tasks.put((index, slot, prev))
            if exhausted and len(free) == cap:
                return
            try:
                result = results.get(timeout=1.0)
            except queue.Empty:
                if not all(p.is_alive() for p in procs):
                    raise UserError("a video worker process died (out of memory?); retry with fewer --workers")
                continue
            if result[0] == "error":
                raise UserError(f"video worker failed on frame {result[1]}: {result[2]}")
            index, slot, flow, mask = result
            pending[index] = (index, outputs[slot].copy(), flow, mask)
            free.append(slot)
            while next_index in pending:
                yield pending.pop(next_index) + (pts_of.pop(next_index),)
                next_index += 1
    finally:
        for _ in procs:
            try:
                tasks.put_nowait(None)
            except queue.Full:
                pass
        for p in procs:
            p.join(timeout=2)
            if p.is_alive():
                p.terminate()
                p.join()
        for q in (tasks, results):  # never block interpreter exit on frames nobody will read
            q.cancel_join_thread()
            q.close()


def _chunks(task_iter, chunk: int) -> Iterator[tuple[list, list]]:
    tasks, pts = [], []
    for task, p in task_iter:
        tasks.append(task)
        pts.append(p)
        if len(tasks) == chunk:
            yield tasks, pts
            tasks, pts = [], []
    if tasks:
        yield tasks, pts


class _ChunkWorker:
    """A Ray actor body: one session, stylises a list of tasks."""

    def __init__(self, payload: ModelPayload, size: int | None, threads: int):
        self.stylizer = FrameStylizer(payload, size, threads)

    def run(self, tasks: list) -> list:
        return [process_task(self.stylizer, t) for t in tasks]


def _run_ray(payload, size, workers, threads, task_iter, address: str | None, chunk: int) -> Iterator[tuple]:
    """Chunks of frames over Ray actors, results in order; at most 2 chunks per actor in flight."""
    from toolkit.errors import require

    ray = require("ray", "ray")
    started = False
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=max(workers, 1), include_dashboard=False, log_to_driver=False)
        except Exception as exc:  # noqa: BLE001 - ray raises many types for a bad address
            raise UserError(f"cannot start or reach a Ray cluster at {address or 'local'} ({exc}); "
                            "check --address or run `ray start --head`") from exc
        started = True
    try:
        actor_cls = ray.remote(num_cpus=1)(_ChunkWorker)
        payload_ref = ray.put(payload)
        actors = [actor_cls.remote(payload_ref, size, threads) for _ in range(workers)]
        in_flight: list = []  # (future, pts) in submission order
        chunks = _chunks(task_iter, chunk)
        exhausted, turn = False, 0
        while True:
            while not exhausted and len(in_flight) < 2 * workers:
                try:
                    tasks, pts = next(chunks)
                except StopIteration:
                    exhausted = True
                    break
                in_flight.append((actors[turn % workers].run.remote(tasks), pts))
                turn += 1
            if not in_flight:
                return
            future, pts = in_flight.pop(0)
            try:
                out = ray.get(future)
            except Exception as exc:  # noqa: BLE001 - RayTaskError wraps the worker's exception
                raise UserError(f"Ray video worker failed: {str(exc).splitlines()[0]}") from exc
            for result, p in zip(out, pts):
                yield result + (p,)
    finally:
        if started:
            ray.shutdown()


def check_output(src: Path, dest: Path, overwrite: bool) -> None:
    """A video output path: a video suffix or a folder, not taken (unless `overwrite`), not the input."""
    if dest.suffix and not is_video_path(dest):
        raise UserError(f"output {dest} must end in {', '.join(VIDEO_SUFFIXES)} (or name a folder for PNG frames)")
    if dest.exists() and not overwrite:
        raise UserError(f"output {dest} already exists; pass --overwrite to replace it")
    if dest.resolve() == src.resolve():
        raise UserError(f"output {dest} is the input; choose another output path")


def stylize_video(src: str | os.PathLike, dest: str | os.PathLike, model=None, *, payload: ModelPayload | None = None,
                  backend: str = "onnx", workers: int = 1, threads: int = 1, size: int | None = None,
                  max_side: int | None = None,
                  stabilize: bool = False, stabilize_weight: float = 0.6, engine: str = "local",
                  address: str | None = None, overwrite: bool = False, progress: bool = True,
                  chunk: int = 8, style: str = "style", encoder_preset: str = DEFAULT_X264_PRESET) -> dict:
    """Stylise `src` (video or frame folder) into `dest` (video or frame folder) atomically, the net run at the long
    side `toolkit.stylize.run_side` says (`size`, or the frames' own capped at `max_side`); returns run stats."""
    from toolkit.errors import unknown
    from toolkit.fsutil import atomic_path
    from toolkit.stylize import check_sides, run_side
    from toolkit.video.temporal import Stabilizer

    src, dest = Path(src), Path(dest)
    if engine not in ENGINES:
        raise unknown("engine", engine, ENGINES)
    if workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    check_sides(size, max_side)
    check_output(src, dest, overwrite)
    info: VideoInfo = probe(src)
    size = run_side(info.height, info.width, size, max_side)
    if info.variable_frame_rate:
        log.info("%s has a variable frame rate; per-frame timestamps are kept", src)
    if payload is None:
        if model is None:
            raise ValueError("pass a model or a payload")
        payload = make_payload(model, backend, style)
    stab = Stabilizer(stabilize_weight) if stabilize else None
    task_iter = _tasks(_prefetch(read_frames(src), 2 * workers + 2), stabilize)
    results = (_run_ray(payload, size, workers, threads, task_iter, address, chunk) if engine == "ray"
               else _run_local(payload, size, workers, threads, task_iter))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=info.frames or None, desc=f"stylize {src.name}", unit="frame", dynamic_ncols=True)
    t0 = time.perf_counter()
    with atomic_path(dest) as tmp:
        # the encoder gets the cores the local workers leave free (at least one thread)
        spare = (os.cpu_count() or 1) - (workers * threads if engine == "local" else 0)
        writer = VideoWriter(tmp, info, preset=encoder_preset, threads=max(1, spare))
        try:
            for index, styled, flow, mask, pts in results:
                writer.write(stab(styled, flow, mask) if stab else styled, pts)
                if bar is not None:
                    bar.update(1)
            writer.close()
        except BaseException:
            writer.abort()
            raise
        finally:
            if bar is not None:
                bar.close()
            results.close()
    seconds = time.perf_counter() - t0
    return {"source": str(src), "output": str(dest), "frames": writer.count, "seconds": seconds,
            "fps": writer.count / max(seconds, 1e-9), "backend": payload.backend, "workers": workers,
            "engine": engine, "stabilize": stabilize, "size": size, "width": info.width, "height": info.height,
            "variable_frame_rate": info.variable_frame_rate, "rotation": info.rotation}


def is_video_input(path: str | os.PathLike) -> bool:
    return is_video_path(path) or Path(path).is_dir()


def video_outputs(inputs: list[Path], out: Path, style: str, out_is_target: bool, overwrite: bool = False) -> list:
    """(source, destination) for each video input, every one checked before any work starts (a worker model takes
    15-30 s to export): inputs exist and decode, outputs are free (or `overwrite`) in writable folders.

    One input goes to `out` itself when `out_is_target` (a video path or a frame folder the user named); several go
    to `out/<stem>.<style>.<suffix>`."""
    from toolkit.fsutil import check_output_file

    inputs = [Path(p) for p in inputs]
    if not all(is_video_input(p) for p in inputs):
        raise UserError("mix of images and videos; stylise them in separate runs")
    if len(inputs) == 1 and out_is_target:
        targets = [Path(out)]
    else:
        if is_video_path(out):
            raise UserError(f"{len(inputs)} videos need an output folder, not {out}")
        targets = [Path(out) / f"{p.stem}.{style}{p.suffix if is_video_path(p) else '.mp4'}" for p in inputs]
    for src, dest in zip(inputs, targets):
        if not src.exists():
            raise UserError(f"input {src} does not exist; check the path")
        check_output(src, dest, overwrite)
        if not dest.is_dir():
            check_output_file(dest)
        probe(src)   # an undecodable input fails now
    return list(zip(inputs, targets))
