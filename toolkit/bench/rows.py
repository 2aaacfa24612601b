"""A latency row: one subject at one target/precision/provider/threads/size, timed by toolkit.bench.timing.

Rows are what every view reads: JSON, Markdown and plots (toolkit/bench/report.py) and gates (toolkit/bench/gates.py).
A configuration that cannot run here is a row with status "unavailable" and the reason, and a runtime that fails
mid-run is an "error" row, never a crash of the whole bench or a silent skip.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import numpy as np

from toolkit.bench.timing import bench_input, time_call
from toolkit.errors import UserError
from toolkit.formats import Size

STATUSES = ("ok", "unavailable", "error")


@dataclass(frozen=True)
class LatencyRow:
    subject: str                  # style, arch preset, checkpoint or artifact name
    target: str                   # onnx | tflite | coreml | torch
    precision: str                # fp32 | fp16 | int8
    provider: str                 # cpu | xnnpack | cuda
    threads: int
    height: int
    width: int
    status: str                   # ok | unavailable | error
    reason: str = ""              # why a row is not "ok"
    runtime: str = ""             # the Runner's name, e.g. onnxruntime, litert, torch-eager
    warmup: int = 0
    runs: int = 0
    p50_ms: Optional[float] = None
    p90_ms: Optional[float] = None
    mean_ms: Optional[float] = None
    fps: Optional[float] = None   # 1000 / p50_ms
    macs: Optional[int] = None    # multiply-accumulates of one forward pass at this size
    gmacs_per_s: Optional[float] = None
    bytes: Optional[int] = None   # artifact size on disk
    reference_p50_ms: Optional[float] = None
    speedup_vs_reference: Optional[float] = None   # reference p50 / this p50, same target/provider/threads/size
    cpu_p50_ms: Optional[float] = None   # p50 process CPU time per run (1 thread: latency on an unshared core)

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if self.status != "ok" and not self.reason:
            raise ValueError(f"a row with status {self.status!r} needs a reason")

    @property
    def size(self) -> str:
        return f"{self.height}x{self.width}"

    @property
    def config_key(self) -> tuple:
        """What a reference must share with a row to be compared side by side."""
        return (self.target, self.provider, self.threads, self.height, self.width)

    def with_reference(self, reference: "LatencyRow | None") -> "LatencyRow":
        if reference is None or reference.status != "ok" or self.status != "ok":
            return self
        return dataclasses.replace(self, reference_p50_ms=reference.p50_ms,
                                   speedup_vs_reference=reference.p50_ms / self.p50_ms)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["size"] = self.size
        return d

    @staticmethod
    def from_dict(d: dict) -> "LatencyRow":
        names = {f.name for f in dataclasses.fields(LatencyRow)}
        return LatencyRow(**{k: v for k, v in d.items() if k in names})


def measure(runner, *, subject: str, target: str, precision: str, provider: str, threads: int, size: Size,
            warmup: int, runs: int, macs: int | None = None, nbytes: int | None = None) -> LatencyRow:
    """Time one loaded Runner at one size. A runtime failure while running becomes an "error" row."""
    height, width = size
    common = dict(subject=subject, target=target, precision=precision, provider=provider, threads=threads,
                  height=height, width=width, runtime=getattr(runner, "name", type(runner).__name__),
                  warmup=warmup, runs=runs, macs=macs, bytes=nbytes)
    fixed = tuple(tuple(s) for s in (getattr(runner, "sizes", ()) or ()))
    if fixed and (height, width) not in fixed:
        have = ", ".join(f"{h}x{w}" for h, w in fixed)
        raise UserError(f"{subject} ({target}) is a fixed-size artifact for {have} and cannot take {height}x{width}; "
                        f"pass --size {have.split(', ')[0]} or export one for {height}x{width}")
    x = bench_input(height, width)
    try:
        out = runner(x)
        if tuple(np.shape(out)) != x.shape:
            return LatencyRow(status="error", reason=f"output shape {tuple(np.shape(out))} != input {x.shape}",
                              **common)
        # a runner whose file takes another layout than NCHW (LiteRT: NHWC) is timed on a frame in that layout, as an
        # app feeds it (`native`): the harness's own layout conversion is not the runtime's time
        native = getattr(runner, "native", None)
        timing = time_call(native(x) if native else lambda: runner(x), warmup, runs)
    except UserError:
        raise
    except Exception as exc:  # a runtime that crashes mid-run is a row, not a crash of the whole bench
        return LatencyRow(status="error", reason=f"{type(exc).__name__}: {one_line(exc)}", **common)
    gmacs = macs / (timing.p50_ms / 1000.0) / 1e9 if macs else None
    return LatencyRow(status="ok", p50_ms=timing.p50_ms, p90_ms=timing.p90_ms, mean_ms=timing.mean_ms,
                      fps=timing.fps, gmacs_per_s=gmacs, cpu_p50_ms=timing.cpu_p50_ms, **common)


def unavailable(reason: str, *, subject: str, target: str, precision: str, provider: str, threads: int,
                size: Size, status: str = "unavailable") -> LatencyRow:
    return LatencyRow(subject=subject, target=target, precision=precision, provider=provider, threads=threads,
                      height=size[0], width=size[1], status=status, reason=reason)


def one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
