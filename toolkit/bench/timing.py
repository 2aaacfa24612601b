"""The measurement protocol: warm-up runs, then timed runs, summarised as p50/p90/mean wall time and p50 CPU time.

Every latency number in the toolkit comes through `time_call`, so rows from different runtimes, benchmarks and CI
gates are comparable; `interleaved` is how side-by-side comparisons stay fair on a noisy machine.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable, Tuple

import numpy as np

from toolkit.errors import UserError


@dataclass(frozen=True)
class Timing:
    p50_ms: float
    p90_ms: float
    mean_ms: float
    samples_ms: Tuple[float, ...]
    cpu_p50_ms: float = 0.0   # process CPU time per run: with 1 thread, the latency on a core nobody else uses

    @property
    def fps(self) -> float:
        return 1000.0 / self.p50_ms


def percentile(samples, q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    return float(np.percentile(np.asarray(samples, dtype=np.float64), q))


def time_call(fn: Callable[[], object], warmup: int, runs: int) -> Timing:
    """Run `fn` `warmup` times untimed (allocations, kernel selection, caches), then `runs` times timed."""
    if runs < 1 or warmup < 0:
        raise UserError(f"--runs must be >= 1 and --warmup >= 0, got runs={runs} warmup={warmup}")
    for _ in range(warmup):
        fn()
    samples, cpu = [], []
    for _ in range(runs):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000.0)
        cpu.append((time.process_time() - c0) * 1000.0)
    return Timing(p50_ms=percentile(samples, 50), p90_ms=percentile(samples, 90),
                  mean_ms=statistics.fmean(samples), samples_ms=tuple(samples), cpu_p50_ms=percentile(cpu, 50))


def interleaved(calls: dict, rounds: int, warmup: int, runs: int) -> dict:
    """{key: [Timing per round]}: every call timed once per round, round after round, so on a noisy machine each
    sees the same conditions (callers take the median over rounds and compare side by side)."""
    timings: dict = {key: [] for key in calls}
    for _ in range(rounds):
        for key, fn in calls.items():
            timings[key].append(time_call(fn, warmup, runs))
    return timings


def paired_ratio(slow, fast) -> float:
    """The median over rounds of each round's time ratio slow / fast (two series from the same `interleaved`
    rounds): a host whose speed drifts between rounds moves both times of a round alike, which a ratio of the two
    medians does not cancel."""
    return statistics.median(a / b for a, b in zip(slow, fast, strict=True))


def bench_input(height: int, width: int, seed: int = 0) -> np.ndarray:
    """The input every runtime gets: (1, 3, H, W) float32 in [0, 1] (values do not change the work done)."""
    return np.random.default_rng(seed).random((1, 3, height, width), dtype=np.float32)
