"""The one latency protocol: warm-up runs, timed runs, p50/p90/mean, fps from p50, MACs, GMAC/s.

Every runtime is measured the same way through the Runner interface (toolkit/export/base.py). The result is a row;
JSON, Markdown, plots (toolkit/bench/report.py) and gates (toolkit/bench/gates.py) are views of rows.
A provider that cannot run here gives a row with status "unavailable" and the reason, never a crash or a skip.
"""

from __future__ import annotations

import dataclasses
import functools
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Tuple

import numpy as np

from toolkit.errors import UserError
from toolkit.export import parse_size  # noqa: F401  (re-exported: bench commands and gates parse sizes here)
from toolkit.formats import FORMATS

Size = Tuple[int, int]
STATUSES = ("ok", "unavailable", "error")
REFERENCE_ARCH = "johnson2016"


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


def bench_input(height: int, width: int, seed: int = 0) -> np.ndarray:
    """The input every runtime gets: (1, 3, H, W) float32 in [0, 1] (values do not change the work done)."""
    return np.random.default_rng(seed).random((1, 3, height, width), dtype=np.float32)


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
                        f"pass --sizes {have.split(', ')[0]} or export one for {height}x{width}")
    x = bench_input(height, width)
    try:
        out = runner(x)
        if tuple(np.shape(out)) != x.shape:
            return LatencyRow(status="error", reason=f"output shape {tuple(np.shape(out))} != input {x.shape}",
                              **common)
        timing = time_call(lambda: runner(x), warmup, runs)
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


# --- host description -------------------------------------------------------------------------------------------

ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
             "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "sve", "sve2", "i8mm", "bf16")


@dataclass(frozen=True)
class HostInfo:
    cpu_model: str
    vendor: str
    cpu_family: str
    cores: int
    isa: Tuple[str, ...]
    clock_ghz: Optional[float]
    fp32_macs_per_cycle: int        # per core, estimated from the ISA
    int8_macs_per_cycle: int
    platform: str
    python: str

    @property
    def peak_fp32_gmacs(self) -> Optional[float]:
        """Estimated peak fp32 GMAC/s of ONE core (FMA width x FMA pipes x clock)."""
        return self.clock_ghz * self.fp32_macs_per_cycle if self.clock_ghz else None

    @property
    def peak_int8_gmacs(self) -> Optional[float]:
        return self.clock_ghz * self.int8_macs_per_cycle if self.clock_ghz else None

    def peak_gmacs(self, precision: str, threads: int) -> Optional[float]:
        per_core = self.peak_int8_gmacs if precision.startswith("int8") else self.peak_fp32_gmacs
        return per_core * min(threads, self.cores) if per_core else None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(peak_fp32_gmacs_per_core=self.peak_fp32_gmacs, peak_int8_gmacs_per_core=self.peak_int8_gmacs)
        return d


def _cpuinfo(text: str) -> dict:
    first: dict = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            first.setdefault(k.strip(), v.strip())
    return first


def macs_per_cycle(vendor: str, family: str, flags: set) -> tuple[int, int]:
    """(fp32, int8) multiply-accumulates per cycle per core, from the ISA; an estimate, documented as such.

    fp32: FMA lanes x 2 FMA pipes. AVX-512 on AMD Zen 4 (family 25) runs on 256-bit pipes (double-pumped), so it
    counts as 2 x 8 lanes; Intel server cores and Zen 5 have two 512-bit FMA pipes (2 x 16). int8: VNNI dot
    products do 4 MACs per 32-bit lane per pipe; without VNNI, u8 x s8 via pmaddubsw counts as 2 per lane.
    """
    if "avx512f" in flags:
        lanes = 8 if (vendor == "AuthenticAMD" and family == "25") else 16
    elif "avx2" in flags and "fma" in flags:
        lanes = 8
    elif "asimd" in flags:   # ARM NEON: 2 x 128-bit FMA pipes on most big cores
        lanes = 4
    elif "avx" in flags:
        lanes = 4             # separate mul and add pipes, 8 lanes each, no FMA: ~half
    else:
        lanes = 2
    fp32 = 2 * lanes
    vnni = flags & {"avx512_vnni", "avx_vnni", "asimddp", "i8mm"}
    int8 = fp32 * (4 if vnni else 2)
    return fp32, int8


def _clock_ghz(info: dict) -> Optional[float]:
    for path in ("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq",
                 "/sys/devices/system/cpu/cpu0/cpufreq/base_frequency"):
        try:
            return int(Path(path).read_text().strip()) / 1e6
        except (OSError, ValueError):
            pass
    try:
        return float(info["cpu MHz"]) / 1000.0
    except (KeyError, ValueError):
        return None


@functools.lru_cache(maxsize=1)
def host_info() -> HostInfo:
    """CPU model and ISA flags from /proc/cpuinfo (Linux); platform and python from the standard library."""
    import os

    try:
        info = _cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        info = {}
    flags = set((info.get("flags") or info.get("Features") or "").split())
    vendor = info.get("vendor_id", info.get("CPU implementer", ""))
    family = info.get("cpu family", "")
    fp32, int8 = macs_per_cycle(vendor, family, flags)
    return HostInfo(cpu_model=info.get("model name") or platform.processor() or platform.machine(),
                    vendor=vendor, cpu_family=family, cores=len(os.sched_getaffinity(0)),
                    isa=tuple(f for f in ISA_FLAGS if f in flags), clock_ghz=_clock_ghz(info),
                    fp32_macs_per_cycle=fp32, int8_macs_per_cycle=int8, platform=platform.platform(),
                    python=platform.python_version())


def library_versions() -> dict:
    """Versions of the libraries a row may depend on (absent ones are omitted), read without importing them."""
    from importlib import metadata

    out = {}
    for dist in ("toolkit", "torch", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "ai-edge-litert",
                 "litert-torch", "coremltools"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


# --- what gets benched: subjects x targets x precisions x providers x threads x sizes -----------------------------

TARGETS = (*FORMATS, "torch")                         # export targets (toolkit.formats) + torch eager
PROVIDERS = ("cpu", "xnnpack", "cuda")


@dataclass(frozen=True)
class Subject:
    """A net to bench: a model (style, checkpoint or arch preset, exported on the fly) or a ready artifact."""
    name: str
    kind: str                                   # style | checkpoint | arch | artifact
    model: object = dataclasses.field(default=None, compare=False, hash=False, repr=False)
    path: Optional[Path] = None                 # artifact path (kind == "artifact") or checkpoint path

    @property
    def target(self) -> Optional[str]:
        return None if self.path is None or self.kind != "artifact" else artifact_target(self.path)


def artifact_target(path: Path) -> str:
    from toolkit.export import target_for_path

    return target_for_path(path).name


def provider_unavailable(target: str, provider: str) -> Optional[str]:
    """Why `provider` cannot run `target` on this host, or None when it can (or only loading can tell)."""
    import sys

    if target == "coreml":
        if sys.platform != "darwin":
            return "CoreML predict needs macOS (the Linux coreml runtime is a reference interpreter, not timed)"
        if provider != "cpu":
            return f"CoreML compute units for provider '{provider}' are not wired; use --providers cpu"
    if target == "torch":
        if provider == "xnnpack":
            return "torch eager has no XNNPACK provider"
        if provider == "cuda":
            import torch

            if not torch.cuda.is_available():
                return "torch CUDA is not available (CPU-only torch build or no GPU)"
    if target == "onnx" and provider != "cpu":
        try:
            import onnxruntime as ort
        except ImportError:
            return None  # loading reports the missing backend
        ep = {"xnnpack": "XnnpackExecutionProvider", "cuda": "CUDAExecutionProvider"}[provider]
        if ep not in ort.get_available_providers():
            return (f"onnxruntime {ort.__version__} has no {ep} (available: {', '.join(ort.get_available_providers())})"
                    + ("; install onnxruntime-gpu on a CUDA host" if provider == "cuda" else ""))
    if target == "tflite" and provider == "cuda":
        return "the LiteRT GPU delegate is not available in the Linux CPU build of ai-edge-litert"
    return None


def load_for_bench(path_or_model, target: str, threads: int, provider: str):
    """A Runner, or the reason it cannot run here (MissingBackendError, or a non-CPU provider that fails to load).

    An artifact that will not load on the CPU provider is the user's problem: UserError (exit 2).
    """
    from toolkit.errors import MissingBackendError

    try:
        if target == "torch":
            from toolkit.runtime.torch_eager import load_runner as load_torch

            return load_torch(path_or_model, threads, provider), None
        from toolkit.export import load_runner as load_artifact

        return load_artifact(path_or_model, threads, provider), None
    except MissingBackendError as exc:
        return None, str(exc)
    except UserError as exc:
        if provider != "cpu":
            return None, f"provider {provider} failed to load: {one_line(exc)}"
        raise
    except Exception as exc:
        if provider != "cpu":
            return None, f"provider {provider} failed to load: {type(exc).__name__}: {one_line(exc)}"
        raise UserError(f"{path_or_model} will not load in {target} ({type(exc).__name__}: {one_line(exc)}); "
                        "re-export it") from exc


@dataclass(frozen=True)
class BenchConfig:
    targets: Tuple[str, ...] = ("onnx",)
    precisions: Tuple[str, ...] = ("fp32",)
    providers: Tuple[str, ...] = ("cpu",)
    threads: Tuple[int, ...] = (1,)
    sizes: Tuple[Size, ...] = ((480, 640),)
    runs: int = 10
    warmup: int = 2
    reference: bool = True          # also time johnson2016 side by side and fill speedup_vs_reference
    reference_runs: int = 5         # johnson2016 is ~50x slower: fewer timed runs (after 1 warm-up) for it
    reuse_exported: Optional[Path] = None   # exported/ dir whose manifest-listed artifacts may be reused

    def __post_init__(self):
        from toolkit.errors import unknown

        for t in self.targets:
            if t not in TARGETS:
                raise unknown("target", t, TARGETS)
        for p in self.providers:
            if p not in PROVIDERS:
                raise unknown("provider", p, PROVIDERS)
        if any(int(n) < 1 for n in self.threads):
            raise UserError(f"threads must be >= 1, got {list(self.threads)}")
        if self.runs < 1 or self.warmup < 0:
            raise UserError(f"--runs must be >= 1 and --warmup >= 0, got runs={self.runs} warmup={self.warmup}")


class Bench:
    """Runs the protocol over a plan, exporting what it needs into `workdir` and caching runners and references."""

    def __init__(self, config: BenchConfig, workdir: Path):
        self.config = config
        self.workdir = Path(workdir)
        self._artifacts: dict = {}      # (subject, target, precision, size|None) -> (path | None, reason)
        self._references: dict = {}     # (target, provider, threads, h, w) -> LatencyRow
        self._reference_model = None
        self._runners: dict = {}        # (artifact | model id, target, provider, threads) -> (Runner | None, reason)

    # -- public -----------------------------------------------------------------------------------------------------
    def run(self, subjects, config: BenchConfig | None = None) -> list[LatencyRow]:
        """Rows for every subject x config, then the johnson2016 reference rows they were compared against.

        `config` replaces the Bench's config for this call and after; exports, runners and references stay cached.
        """
        if config is not None:
            self.config = config
        rows, seen = [], set(self._references)
        for subject in subjects:
            rows += self.run_subject(subject)
        return rows + [r for k, r in self._references.items() if r is not None and k not in seen]

    def run_subject(self, subject: Subject) -> list[LatencyRow]:
        cfg = self.config
        targets = (subject.target,) if subject.kind == "artifact" else cfg.targets
        precisions = (self._artifact_precision(subject),) if subject.kind == "artifact" else cfg.precisions
        if subject.model is not None:
            from toolkit.export import check_sizes

            check_sizes(cfg.sizes, subject.model.config.stride)
        rows = []
        for target in targets:
            for precision in precisions:
                for provider in cfg.providers:
                    for threads in cfg.threads:
                        rows += self._run_config(subject, target, precision, provider, threads)
        return rows

    def measure_one(self, subject: Subject, target: str, precision: str, provider: str, threads: int, size: Size,
                    runs: int | None = None, warmup: int | None = None, reference: bool | None = None) -> LatencyRow:
        """One row: `subject` at one target/precision/provider/threads/size (exports and runners are cached)."""
        return self._run_config(subject, target, precision, provider, threads, sizes=(tuple(size),),
                                reference=reference, runs=runs, warmup=warmup)[0]

    def forget_references(self) -> None:
        self._references.clear()

    def reference_row(self, target: str, provider: str, threads: int, size: Size) -> Optional[LatencyRow]:
        """johnson2016 (random weights, fp32) at the same target/provider/threads/size, timed once per Bench."""
        key = (target, provider, threads) + tuple(size)
        if key not in self._references:
            if self._reference_model is None:
                from toolkit.models import create_model

                self._reference_model = create_model(REFERENCE_ARCH).eval()
            ref = Subject(REFERENCE_ARCH, "arch", model=self._reference_model)
            rows = self._run_config(ref, target, "fp32", provider, threads, sizes=(tuple(size),), reference=False,
                                    runs=min(self.config.runs, self.config.reference_runs),
                                    warmup=min(1, self.config.warmup))
            self._references[key] = rows[0] if rows else None
        return self._references[key]

    # -- internals ----------------------------------------------------------------------------------------------------
    def _run_config(self, subject, target, precision, provider, threads, sizes=None, reference=None, runs=None,
                    warmup=None):
        cfg = self.config
        runs = cfg.runs if runs is None else runs
        warmup = cfg.warmup if warmup is None else warmup
        sizes = sizes or cfg.sizes
        reference = cfg.reference if reference is None else reference
        label = dict(subject=subject.name, target=target, precision=precision, provider=provider, threads=threads)
        reason = provider_unavailable(target, provider) or self._precision_unavailable(target, precision)
        if reason:
            return [unavailable(reason, size=s, **label) for s in sizes]
        rows = []
        dynamic = self._dynamic(subject, target)
        for size in sizes:
            path, why, status = self._artifact(subject, target, precision, None if dynamic else size)
            if why:
                rows.append(unavailable(why, size=size, status=status, **label))
                continue
            key = (id(subject.model) if target == "torch" else str(path), target, provider, threads)
            if key not in self._runners:
                self._runners[key] = load_for_bench(subject.model if target == "torch" else path, target, threads,
                                                    provider)
            runner, why = self._runners[key]
            if runner is None:
                rows.append(unavailable(why, size=size, **label))
                continue
            row = measure(runner, size=size, warmup=warmup, runs=runs, macs=self._macs(subject, size),
                          nbytes=None if target == "torch" else _bytes(path), **label)
            if reference and row.status == "ok":
                row = row.with_reference(self.reference_row(target, provider, threads, size))
            rows.append(row)
        return rows

    @staticmethod
    def _precision_unavailable(target: str, precision: str) -> Optional[str]:
        if target == "torch":
            return None if precision == "fp32" else f"the torch eager reference runs fp32 only, not {precision}"
        from toolkit.export import FORMATS

        if precision not in FORMATS[target].precision_names:
            return f"{target} has no {precision} export (precisions: {', '.join(FORMATS[target].precision_names)})"
        return None

    @staticmethod
    def _dynamic(subject: Subject, target: str) -> bool:
        if target == "torch" or subject.kind == "artifact":
            return True   # an artifact's fixed sizes are checked against its runner in `measure`
        from toolkit.export import FORMATS

        return FORMATS[target].dynamic_sizes

    def _artifact(self, subject, target, precision, size):
        """(path, None, "") ready to load, or (None, reason, status) when it cannot be had."""
        if target == "torch":
            return None, None, ""
        if subject.kind == "artifact":
            return subject.path, None, ""
        key = (subject.name, target, precision, size)
        if key not in self._artifacts:
            self._artifacts[key] = self._export(subject, target, precision, size)
        return self._artifacts[key]

    def _export(self, subject, target, precision, size):
        from toolkit.errors import MissingBackendError
        from toolkit.export import ExportSpec, artifact_path, check_sizes, export_artifact

        if size is not None:
            check_sizes([size], subject.model.config.stride)
        reused = self._reusable(subject, target, precision, size)
        if reused is not None:
            return reused, None, ""
        dest = artifact_path(self.workdir, subject.name, target, precision, size)
        spec = ExportSpec(target=target, precision=precision, sizes=(tuple(size),) if size else (),
                          style=subject.name, calibration=calibration_images(self.workdir))
        try:
            export_artifact(subject.model, spec, dest, check=False)
        except MissingBackendError as exc:
            return None, str(exc), "unavailable"
        except UserError as exc:
            if "not available in this build" in str(exc):
                return None, one_line(exc), "unavailable"
            raise
        except Exception as exc:  # an exporter bug for one arch/target is a row with the reason, not a crash
            return None, f"export failed: {type(exc).__name__}: {one_line(exc)}", "error"
        return dest, None, ""

    def _reusable(self, subject, target, precision, size) -> Optional[Path]:
        """exported/<style>/... when exported/manifest.json lists that file with the sha256 it has on disk."""
        root = self.config.reuse_exported
        if subject.kind != "style" or root is None or not (Path(root) / "manifest.json").is_file():
            return None
        import json

        from toolkit.export import artifact_path
        from toolkit.fsutil import sha256_of

        path = artifact_path(root, subject.name, target, precision, size)
        if not path.exists():
            return None
        try:
            manifest = json.loads((Path(root) / "manifest.json").read_text())
        except (OSError, ValueError):
            return None
        wanted = {str(path), str(path.relative_to(root)), path.name}
        for record in _records(manifest):
            if str(record.get("file")) in wanted or Path(str(record.get("file", ""))).name == path.name:
                return path if record.get("sha256") == sha256_of(path) else None
        return None

    def _macs(self, subject: Subject, size: Size) -> Optional[int]:
        model = subject.model if subject.model is not None else _model_from_artifact(subject.path)
        if model is None:
            return None
        from toolkit.flops import count_macs

        return count_macs(model, *size)

    def _artifact_precision(self, subject: Subject) -> str:
        try:
            from toolkit.export import read_metadata

            return read_metadata(subject.path).get("precision", "fp32")
        except UserError:
            raise
        except Exception:
            return "fp32"


def _records(manifest):
    """Every dict with a "file" key anywhere in a manifest (its exact layout belongs to the export module)."""
    if isinstance(manifest, dict):
        if "file" in manifest:
            yield manifest
        for v in manifest.values():
            yield from _records(v)
    elif isinstance(manifest, list):
        for v in manifest:
            yield from _records(v)


@functools.lru_cache(maxsize=32)
def _model_from_artifact(path: Path):
    """The TransformerNet an artifact was exported from (arch in its metadata; weights do not change MACs)."""
    import json

    from toolkit.config import ArchConfig, from_dict
    from toolkit.models import TransformerNet

    try:
        from toolkit.export import read_metadata

        arch = read_metadata(path).get("arch")
        return TransformerNet(from_dict(ArchConfig, json.loads(arch))) if arch else None
    except Exception:
        return None


def _bytes(path) -> Optional[int]:
    from toolkit.fsutil import size_of

    return size_of(path) if path is not None and Path(path).exists() else None


def calibration_images(workdir: Path, count: int = 8) -> Tuple[str, ...]:
    """Photos for int8 calibration (latency does not depend on them): () lets the exporter use the shared photos;
    without shared data, a few smooth synthetic images written into `workdir`."""
    from toolkit.paths import shared_data

    if shared_data("content", "eval") is not None:
        return ()
    from PIL import Image

    out = Path(workdir) / "calibration"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        p = out / f"synthetic{i}.png"
        if not p.exists():
            yy, xx = np.mgrid[0:256, 0:256].astype(np.float32)
            img = np.stack([xx / 256, yy / 256, 0.5 + 0.5 * np.sin((xx + 13 * i) / 9 + yy / 17)], axis=2)
            Image.fromarray((img * 255).astype(np.uint8)).save(p)
        paths.append(str(p))
    return tuple(paths)
