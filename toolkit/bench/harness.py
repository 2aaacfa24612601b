"""What gets benched and how it is had: subjects x targets x precisions x providers x threads x sizes, each exported
(or reused from exported/) and loaded once, then timed by the one protocol (toolkit.bench.timing) into rows
(toolkit.bench.rows), with johnson2016 timed side by side as the reference.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

from toolkit.bench.rows import LatencyRow, measure, one_line, unavailable
from toolkit.errors import UserError
from toolkit.formats import FORMATS, Size

TARGETS = (*FORMATS, "torch")                         # export targets (toolkit.formats) + torch eager
PROVIDERS = ("cpu", "xnnpack", "cuda")
REFERENCE_ARCH = "johnson2016"                       # timed side by side: speedup_vs_reference is against it


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
            return f"CoreML compute units for provider '{provider}' are not wired; use --provider cpu"
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
                          style=subject.name)
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
        """The precision its metadata names; a file that carries none (exported elsewhere) is timed as fp32."""
        return _metadata(subject.path).get("precision", "fp32")


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


def _metadata(path: Path) -> dict:
    """An artifact's metadata; one that cannot be read is a UserError naming the file, never a guessed label."""
    from toolkit.export import read_metadata

    try:
        return read_metadata(path)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"{path}: its metadata cannot be read ({type(exc).__name__}: {one_line(exc)}); "
                        "re-export it") from exc


@functools.lru_cache(maxsize=32)
def _model_from_artifact(path: Path):
    """The TransformerNet an artifact was exported from (arch in its metadata; weights do not change MACs), or None
    when it carries no arch (exported elsewhere: its rows have no MACs). A malformed arch is a UserError: rows
    quietly missing MACs would look like a file from elsewhere."""
    from toolkit.config import arch_from_json
    from toolkit.models import TransformerNet

    arch = _metadata(path).get("arch")
    if not arch:
        return None
    config = arch_from_json(arch, path)
    try:
        return TransformerNet(config)
    except Exception as exc:  # well-typed but inconsistent values (e.g. widths the blocks cannot take)
        raise UserError(f"{path}: the arch in its metadata does not build a net ({type(exc).__name__}: "
                        f"{one_line(exc)}); re-export it") from exc


def _bytes(path) -> Optional[int]:
    from toolkit.fsutil import size_of

    return size_of(path) if path is not None and Path(path).exists() else None
