"""exported/manifest.json: one entry per artifact, keyed by its path relative to the export folder.

Updates are read-modify-write with an atomic rename, under a lock file so two exports cannot lose each other's
entries. An entry: bytes, sha256, target, precision, sizes, parity numbers, toolkit version, style.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Iterable, Iterator

from toolkit.errors import UserError
from toolkit.fsutil import ensure_writable_dir, write_json

MANIFEST = "manifest.json"
FORMAT = "toolkit-manifest/1"


def manifest_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / MANIFEST


def read_manifest(out_dir: str | Path) -> dict:
    path = manifest_path(out_dir)
    if not path.is_file():
        return {"format": FORMAT, "artifacts": {}}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); restore it or delete it to start a new one") from exc
    if not isinstance(data, dict) or not isinstance(data.get("artifacts"), dict):
        raise UserError(f"{path} is not a toolkit manifest; move it away or delete it")
    for key in data["artifacts"]:
        parts = Path(key).parts
        if not parts or Path(key).is_absolute() or ".." in parts:
            raise UserError(f"{path} lists {key!r}, which is outside its folder; remove that entry")
    return data


@contextlib.contextmanager
def locked(out_dir: Path) -> Iterator[None]:
    out_dir = ensure_writable_dir(out_dir)
    # O_NOFOLLOW: a lock file planted as a symlink is refused, never followed to a file elsewhere
    try:
        fd = os.open(out_dir / f".{MANIFEST}.lock", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise UserError(f"the manifest lock {out_dir / ('.' + MANIFEST + '.lock')} cannot be opened ({exc.strerror}); "
                        "remove it if it is a symlink") from exc
    with os.fdopen(fd, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def entry_for(record: dict, out_dir: str | Path) -> tuple[str, dict]:
    """(relative file path, manifest entry) for an export record."""
    rel = os.path.relpath(Path(record["file"]).resolve(), Path(out_dir).resolve())
    if rel == ".." or rel.startswith(".." + os.sep) or os.path.isabs(rel):
        raise UserError(f"{record['file']} lies outside the export folder {out_dir}; the manifest lists only files "
                        "inside it")
    entry = {k: v for k, v in record.items() if k != "file"}
    return Path(rel).as_posix(), entry


def update_manifest(out_dir: str | Path, records: Iterable[dict]) -> Path:
    """Merge records into the manifest atomically (all or nothing)."""
    out_dir = ensure_writable_dir(out_dir)
    records = list(records)
    with locked(out_dir):
        data = read_manifest(out_dir)
        for record in records:
            key, entry = entry_for(record, out_dir)
            data["artifacts"][key] = entry
        data["format"] = FORMAT
        data["artifacts"] = dict(sorted(data["artifacts"].items()))
        write_json(manifest_path(out_dir), data)
    return manifest_path(out_dir)
