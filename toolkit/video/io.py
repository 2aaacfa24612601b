"""Video in and out with PyAV: decode to RGB frames with their timestamps, encode H.264 yuv420p keeping the
source's frame rate, time base, per-frame timestamps (so variable frame rate survives), rotation metadata, and
its audio stream (packets remuxed unchanged). A folder of images works as input and as output.

Frames travel as (index, pts, H x W x 3 uint8 RGB). Odd sizes are padded by edge replication to the even size
yuv420p needs (so the output is at most one pixel wider / taller than the source; nothing is cropped away).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from toolkit.errors import UserError

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
FOLDER_FRAME_RATE = Fraction(25)
ENCODERS = {".webm": ("libvpx-vp9", "yuv420p")}  # everything else: H.264
DEFAULT_ENCODER = ("libx264", "yuv420p")
# libx264 speed/size trade-offs; at a fixed crf they change the file size, hardly the quality. veryfast is the
# default: it costs half of medium's encoder CPU time, which on a small box is taken from the stylising workers.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
DEFAULT_X264_PRESET = "veryfast"


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    frame_rate: Fraction           # average rate (what players show as fps)
    time_base: Fraction
    frames: int                    # from the container header (0 when unknown)
    duration: float               # seconds
    rotation: int                 # display rotation in degrees (counter-clockwise), 0 if none
    has_audio: bool
    variable_frame_rate: bool     # the first timestamps are unevenly spaced
    source: str


def is_video_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _av_errors():
    import av

    return (av.error.FFmpegError, av.error.InvalidDataError, OSError, ValueError)


def _open_input(path: Path):
    import av

    if not path.exists():
        raise UserError(f"video {path} does not exist")
    try:
        container = av.open(str(path))
    except _av_errors() as exc:
        raise UserError(f"cannot open video {path}: it is corrupt, truncated or not a video ({exc}); "
                        "re-export or re-download it") from exc
    if not container.streams.video:
        container.close()
        raise UserError(f"{path} has no video stream; pass a file with a video track")
    return container


def _frame_folder(path: Path) -> list[Path]:
    from toolkit.data.images import list_images

    files = list_images(path)
    if not files:
        raise UserError(f"frame folder {path} holds no images; pass a folder of PNG/JPEG frames or a video file")
    return files


def probe(path: str | os.PathLike) -> VideoInfo:
    """Describe a video file or frame folder; raises UserError for anything we cannot stylise."""
    path = Path(path)
    if path.is_dir():
        from PIL import Image

        files = _frame_folder(path)
        with Image.open(files[0]) as im:
            w, h = im.size
        return VideoInfo(w, h, FOLDER_FRAME_RATE, 1 / FOLDER_FRAME_RATE, len(files), len(files) / 25.0, 0, False,
                         False, str(path))
    container = _open_input(path)
    try:
        v = container.streams.video[0]
        if not v.codec_context.width or not v.codec_context.height:
            raise UserError(f"{path}: the video stream has no frame size; the file is corrupt")
        pts, rotation = [], 0
        try:
            for i, frame in enumerate(container.decode(v)):
                if i == 0:
                    rotation = int(round(frame.rotation or 0)) % 360
                if frame.pts is not None:
                    pts.append(frame.pts)
                if len(pts) >= 12:
                    break
        except _av_errors() as exc:
            raise UserError(f"cannot decode {path} ({exc}); the file is corrupt or truncated") from exc
        if not pts:
            raise UserError(f"{path} has a video stream but no decodable frames; the file is corrupt or truncated")
        steps = np.diff(sorted(pts))
        vfr = bool(len(steps) > 1 and steps.max() > 1.5 * max(steps.min(), 1))
        rate = v.average_rate or v.guessed_rate or FOLDER_FRAME_RATE
        tb = v.time_base or 1 / Fraction(rate)
        duration = float(v.duration * tb) if v.duration else float(container.duration or 0) / 1e6
        return VideoInfo(v.codec_context.width, v.codec_context.height, Fraction(rate), Fraction(tb), v.frames or 0,
                         duration, rotation, bool(container.streams.audio), vfr, str(path))
    finally:
        container.close()


def read_frames(path: str | os.PathLike) -> Iterator[tuple[int, int | None, np.ndarray]]:
    """Yield (index, pts, RGB uint8) for every frame, in display order. A truncated stream raises UserError."""
    path = Path(path)
    if path.is_dir():
        from toolkit.data.images import load_rgb, to_uint8

        files = _frame_folder(path)
        shape = None
        for i, f in enumerate(files):
            rgb = to_uint8(load_rgb(f))
            if shape is None:
                shape = rgb.shape
            elif rgb.shape != shape:
                raise UserError(f"frame {f} is {rgb.shape[1]}x{rgb.shape[0]}, the first frame is "
                                f"{shape[1]}x{shape[0]}; all frames in a folder must have one size")
            yield i, i, rgb
        return
    container = _open_input(path)
    try:
        v = container.streams.video[0]
        v.thread_type = "AUTO"
        expected, i, last = v.frames or 0, 0, None
        tb = v.time_base
        end = float(v.duration * tb) if v.duration and tb else float(container.duration or 0) / 1e6
        start = float(v.start_time * tb) if v.start_time and tb else 0.0
        try:
            for frame in container.decode(v):
                yield i, frame.pts, frame.to_ndarray(format="rgb24")
                last = frame.pts
                i += 1
        except _av_errors() as exc:
            raise UserError(f"{path} is corrupt or truncated after frame {i} ({exc}); repair or re-export it") \
                from exc
        if i == 0:
            raise UserError(f"{path} has no decodable video frames; the file is corrupt or truncated")
        shown = float(last * tb) - start if last is not None and tb else None
        if not expected and end > 1.0 and shown is not None and shown < 0.9 * end - 0.5:
            raise UserError(f"{path} is truncated: its header says {end:.1f} s but frames stop at {shown:.1f} s; "
                            "repair or re-export it")
        if expected and i < expected * 0.98 - 1:
            raise UserError(f"{path} is truncated: its header promises {expected} frames but only {i} decode; "
                            "repair or re-export it")
    finally:
        container.close()


def even_pad(rgb: np.ndarray) -> np.ndarray:
    """Edge-pad an image on the bottom/right to even sides (yuv420p subsamples chroma 2x2)."""
    h, w = rgb.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return rgb
    return np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


class VideoWriter:
    """Encode frames into `dest` (a video path or, for a non-video suffix, a folder of PNG frames).

    With `like` (the source VideoInfo), the source's time base, rate, per-frame pts and rotation are kept and its
    audio stream is copied packet for packet, interleaved as the video advances so memory stays flat.
    """

    def __init__(self, dest: str | os.PathLike, like: VideoInfo, crf: int = 18, preset: str = DEFAULT_X264_PRESET,
                 threads: int = 0):
        if preset not in X264_PRESETS:
            from toolkit.errors import unknown

            raise unknown("encoder preset", preset, X264_PRESETS)
        self.dest, self.like, self.crf, self.preset, self.threads = Path(dest), like, crf, preset, threads
        self.folder = not is_video_path(self.dest)
        self.count = 0
        self._container = self._stream = self._audio_in = self._audio_out = self._audio_packets = None
        self._last_pts = -1
        if self.folder:
            self.dest.mkdir(parents=True, exist_ok=True)

    def _open(self, width: int, height: int) -> None:
        import av

        try:
            self._container = av.open(str(self.dest), "w", format=_format_for(self.dest))
        except _av_errors() as exc:
            raise UserError(f"cannot write video {self.dest} ({exc}); choose a writable .mp4/.mkv path") from exc
        codec, pix_fmt = ENCODERS.get(self.dest.suffix.lower(), DEFAULT_ENCODER)
        s = self._container.add_stream(codec, rate=self.like.frame_rate)
        s.width, s.height, s.pix_fmt = width, height, pix_fmt
        s.time_base = self.like.time_base
        s.codec_context.time_base = self.like.time_base
        if codec == "libx264":
            s.options = {"crf": str(self.crf), "preset": self.preset, "threads": str(self.threads)}  # 0 = auto
        if self.like.rotation:
            s.set_display_rotation(self.like.rotation)
        self._stream = s
        source = Path(self.like.source)
        if self.like.has_audio and source.is_file():
            self._audio_in = av.open(str(source))
            a_in = self._audio_in.streams.audio[0]
            self._audio_out = self._container.add_stream_from_template(a_in)
            self._audio_packets = self._audio_in.demux(a_in)
            self._audio_tb = a_in.time_base

    def _mux_audio_until(self, seconds: float | None) -> None:
        """Copy audio packets whose start is before `seconds` (all remaining when None)."""
        if self._audio_packets is None:
            return
        for packet in self._audio_packets:
            if packet.dts is None and packet.size == 0:
                continue  # demuxer flush packet
            packet.stream = self._audio_out
            self._container.mux(packet)
            if seconds is not None and packet.dts is not None and float(packet.dts * self._audio_tb) > seconds:
                return
        self._audio_packets = None

    def write(self, rgb: np.ndarray, pts: int | None = None) -> None:
        if self.folder:
            from toolkit.data.images import save_image

            save_image(self.dest / f"frame_{self.count:06d}.png", rgb.astype(np.float32) / 255.0)
            self.count += 1
            return
        import av

        rgb = even_pad(np.ascontiguousarray(rgb))
        if self._container is None:
            self._open(rgb.shape[1], rgb.shape[0])
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        if pts is None or pts <= self._last_pts:  # frame folders, or a source with broken timestamps
            pts = self._last_pts + 1 if pts is not None else round(self.count / self.like.frame_rate
                                                                   / self.like.time_base)
        frame.pts, frame.time_base = pts, self.like.time_base
        self._last_pts = pts
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.count += 1
        self._mux_audio_until(float(pts * self.like.time_base) + 0.5)

    def close(self) -> None:
        if self._container is None:
            return
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._mux_audio_until(None)
        self._container.close()
        if self._audio_in is not None:
            self._audio_in.close()
        self._container = None

    def abort(self) -> None:
        for c in (self._container, self._audio_in):
            if c is not None:
                try:
                    c.close()
                except Exception:  # noqa: BLE001 - already failing; the temp output is deleted by the caller
                    pass
        self._container = None


def _format_for(dest: Path) -> str | None:
    return {".mkv": "matroska", ".m4v": "mp4", ".mov": "mov", ".webm": "webm", ".avi": "avi"}.get(
        dest.suffix.lower())
