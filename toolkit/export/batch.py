"""Export many artifacts of one style as one unit: planned and checked before anything is written, staged in a hidden
folder inside the output folder, and moved into place together with the manifest update under the manifest lock.
A failure anywhere leaves neither new files nor a changed manifest.

    records = export_style(model, "frost", plan_jobs(["onnx"], ["fp32", "int8"], [], stride), Path("exported"))

`toolkit export` and `toolkit ship` both go through here.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

from toolkit.errors import UserError
from toolkit.formats import Size, Target

STAGING_PREFIX = ".export-"
STALE_AFTER_S = 3600.0   # a staging folder whose owner cannot be told is stale after an hour
# Staging folders this package leaves while it works: `.export-<pid>-*.tmp` (here) and `.<name>.<pid>.*.tmp`
# (toolkit.fsutil.atomic_path); older releases wrote them without the pid.
_STAGING = re.compile(r"^\.(export-|manifest\.json\.|README\.md\.)(?:(\d+)[-.])?.*\.tmp$")


@dataclass(frozen=True)
class ExportJob:
    target: Target
    precision: str
    sizes: tuple = ()   # () = the target's default sizes; else exactly the sizes of one file

    @property
    def label(self) -> str:
        return (f"{self.target.name} {self.precision} "
                f"{'x'.join(map(str, self.sizes[0])) if self.sizes else self.target.size_policy.kind}")


def plan_jobs(targets: Sequence[str], precisions: Sequence[str], sizes: Sequence[Size], stride: int) -> list[ExportJob]:
    """One job per artifact to write; every bad choice (unknown target, a precision a target lacks, a size off the
    net's stride) is rejected here, before any export."""
    from toolkit.errors import unknown
    from toolkit.export import FORMATS, check_sizes, get_target

    names = list(targets) or ["onnx"]
    if "all" in names:
        names = list(FORMATS)
    for name in names:
        if name not in FORMATS:
            raise unknown("export target", name, list(FORMATS) + ["all"])
    precisions = list(dict.fromkeys(precisions or ["fp32"]))
    sizes = [tuple(s) for s in sizes]
    check_sizes(sizes, stride)
    jobs = []
    for target in (get_target(n) for n in dict.fromkeys(names)):
        for precision in precisions:
            target.precision(precision)
            if not target.one_size_per_file and not sizes:
                jobs.append(ExportJob(target, precision))  # dynamic, or the enumerated sizes in one file
                continue
            for size in sizes or target.size_policy.sizes:
                if size[0] % stride or size[1] % stride:
                    raise UserError(f"{target.name} default size {size[0]}x{size[1]} is not a multiple of the "
                                    f"net's stride {stride}; pass --size")
                jobs.append(ExportJob(target, precision, (tuple(size),)))
    return jobs


def check_backends(targets: Iterable[Target]) -> None:
    """Fail before exporting anything when a target's backend is missing (names the pip extra)."""
    import importlib.util

    from toolkit.errors import MissingBackendError

    needs = {"onnx": ("onnx", "onnxscript", "onnxruntime"), "coreml": ("coremltools",),
             "tflite": ("litert_torch", "ai_edge_litert")}
    for target in targets:
        for module in needs.get(target.name, ()):
            if importlib.util.find_spec(module) is None:
                raise MissingBackendError(module, target.extra)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_staging(out_dir: Path, max_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove staging folders a killed export or manifest write left in `out_dir`: those whose owning process is
    gone, and, where the name holds no pid, those older than `max_age_s`. A live owner's folder is kept."""
    removed = []
    now = time.time()
    for item in Path(out_dir).iterdir() if Path(out_dir).is_dir() else ():
        match = _STAGING.match(item.name)
        if not match or item.is_symlink() or not item.is_dir():
            continue
        pid = match.group(2)
        if pid is not None and int(pid) != os.getpid():
            stale = not _pid_alive(int(pid))
        else:
            try:
                stale = pid is None and now - item.stat().st_mtime > max_age_s
            except FileNotFoundError:
                continue
        if stale:
            shutil.rmtree(item, ignore_errors=True)
            removed.append(item)
    return removed


class StagedExport:
    """A hidden staging folder inside `out_dir`: write artifacts (and any other file, e.g. a preview) there with
    `export` / `path`, then `commit` moves them all into place and merges the manifest under its lock. Leaving the
    `with` block without a commit (an exception) removes everything staged.

    The manifest is read when the block starts and again under the lock before anything moves, so a corrupt
    manifest.json is reported before a single artifact lands.
    """

    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir)
        self.staging: Optional[Path] = None

    def __enter__(self) -> "StagedExport":
        from toolkit.fsutil import ensure_writable_dir
        from toolkit.manifest import read_manifest

        self.out_dir = ensure_writable_dir(self.out_dir)
        clean_stale_staging(self.out_dir)
        read_manifest(self.out_dir)   # a corrupt manifest fails now, not after minutes of exporting
        self.staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", suffix=".tmp",
                                             dir=self.out_dir))
        return self

    def __exit__(self, *exc) -> None:
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None

    def path(self, relative: str | Path) -> Path:
        """Where a file that should end up at `out_dir/relative` is written meanwhile."""
        from toolkit.paths import safe_name

        for part in Path(relative).parts:
            safe_name(part, "file name")
        dest = self.staging / relative
        dest.parent.mkdir(parents=True, exist_ok=True)
        return dest

    def export(self, model, style: str, job: ExportJob, metadata: dict | None = None,
               calibration: Sequence[str] = (), check: bool = True) -> dict:
        """Export one artifact into the staging folder; its record (file = the staged path until `commit`)."""
        from toolkit.export import ExportSpec, artifact_path, export_artifact

        spec = ExportSpec(target=job.target.name, precision=job.precision, sizes=job.sizes, style=style,
                          metadata=dict(metadata or {}), calibration=tuple(calibration))
        start = time.perf_counter()
        record = export_artifact(model, spec, artifact_path(self.staging, style, job.target.name, job.precision,
                                                            job.sizes[0] if job.sizes else None), check=check)
        record["seconds"] = round(time.perf_counter() - start, 1)
        return record

    def commit(self, records: list[dict], update: Callable[[dict], None] | None = None) -> Path:
        """Under the manifest lock: read the manifest (a corrupt one stops here, nothing moved), move everything
        staged into place, merge `records` (their `file` rewritten to the final path), let `update` change the
        manifest further (before anything moves), and write it atomically. Returns the manifest's path."""
        from toolkit.fsutil import write_json
        from toolkit.manifest import FORMAT, entry_for, locked, manifest_path, read_manifest

        with locked(self.out_dir):
            manifest = read_manifest(self.out_dir)
            for record in records:
                record["file"] = str(self.out_dir / Path(record["file"]).relative_to(self.staging))
                key, entry = entry_for(record, self.out_dir)  # refuses a record outside the folder
                manifest["artifacts"][key] = {k: v for k, v in entry.items() if k != "seconds"}
            if update is not None:
                update(manifest)  # may stage more files (a gallery): they move with the rest
            manifest["format"] = FORMAT
            manifest["artifacts"] = dict(sorted(manifest["artifacts"].items()))
            _move_tree(self.staging, self.out_dir)
            write_json(manifest_path(self.out_dir), manifest)
        return manifest_path(self.out_dir)


def _move_tree(staging: Path, out: Path) -> None:
    """Move what is staged (`<style>/<file or .mlpackage folder>`, or a file at the top) to the same place under
    `out`, replacing what is there; style folders are merged."""
    moves = []
    for top in sorted(staging.iterdir()):
        if top.is_dir():
            moves += [(item, out / top.name / item.name) for item in sorted(top.iterdir())]
        else:
            moves.append((top, out / top.name))
    for item, dest in moves:  # checked before anything moves: a folder in a file's place stops the whole commit
        if (dest.parent.exists() and not dest.parent.is_dir()) or (item.is_file() and dest.is_dir()
                                                                     and not dest.is_symlink()):
            raise UserError(f"{dest if item.is_file() else dest.parent} is in the way of {item.name}; move it away "
                            "and export again")
    for item, dest in moves:
        dest.parent.mkdir(parents=True, exist_ok=True)
        _replace(item, dest)


def _replace(item: Path, dest: Path) -> None:
    if item.is_dir():
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        elif dest.exists() or dest.is_symlink():
            dest.unlink()
        item.rename(dest)
    else:
        os.replace(item, dest)


def export_style(model, style: str, jobs: Sequence[ExportJob], out_dir: str | Path, metadata: dict | None = None,
                 calibration: Sequence[str] = (), check: bool = True,
                 log: Callable[[str], None] | None = None) -> list[dict]:
    """Export every job for `style` into `out_dir` and record them in its manifest, all or nothing.

    `metadata` (e.g. the style's licence) goes into every artifact. Backends and calibration photos are checked
    before the first export, and the style name (a checkpoint's, so possibly hostile) before the output folder is
    created. Returns the records (file = final path, `seconds` = export time)."""
    from toolkit.export.calibration import calibration_paths
    from toolkit.paths import safe_name

    safe_name(style, "style name")
    check_backends({job.target for job in jobs})
    if any(job.target.precision(job.precision).calibrated for job in jobs):
        calibration_paths(calibration)
    records = []
    with StagedExport(out_dir) as stage:
        for i, job in enumerate(jobs, 1):
            if log:
                log(f"[{i}/{len(jobs)}] {job.label} ...")
            record = stage.export(model, style, job, metadata, calibration, check)
            records.append(record)
            if log:
                log(f"      ok  {describe(record)}")
        stage.commit(records)
    return records


def describe(record: dict) -> str:
    parity = record.get("parity") or {}
    numbers = f"max_abs {parity['max_abs']:.2g}, min PSNR {parity.get('min_psnr_db') or 'inf'} dB" if parity \
        else "parity not checked"
    return f"{record['bytes'] / 1e3:.0f} kB, {numbers}"
