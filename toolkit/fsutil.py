"""Atomic outputs: write to a temporary sibling, then rename, so a kill never leaves half a file."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from toolkit.errors import UserError


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output directory {path}: {exc.strerror}; choose a writable path") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"output directory {path} is not writable; choose a writable path")
    return path


def check_output_file(path: str | os.PathLike, what: str = "output") -> Path:
    """Fail now, not after minutes of work, when `path` cannot be written: a folder in its place, or a parent that
    is a file or not writable. Creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder; pass a file name, or move the folder away")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{what} {path}: {parent} is not a folder; choose a writable path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: {parent} is not writable; choose a writable path")
    return path


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield `<staging dir beside dest>/<dest.name>` (writers see the real name and suffix); on success rename what
    was written there, a file or a directory (.mlpackage, frame folders), over `dest`; always delete the staging dir.
    """
    dest = Path(dest)
    ensure_writable_dir(dest.parent)
    # the pid lets a later export tell a killed writer's leftovers from a live one's (toolkit.export.batch)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.{os.getpid()}.", suffix=".tmp", dir=dest.parent))
    try:
        tmp = staging / dest.name
        yield tmp
        if not tmp.exists():
            raise UserError(f"nothing was written for {dest}")
        if tmp.is_dir():
            if dest.exists():
                dest.rename(staging / ".old")
            tmp.rename(dest)
        elif dest.is_dir():  # a folder where a file goes (folder outputs such as .mlpackage are replaced above)
            raise UserError(f"{dest} is a folder; pass a file name for the output, or move the folder away")
        else:
            os.replace(tmp, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_json(dest: str | os.PathLike, data) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def sha256_of(path: str | os.PathLike) -> str:
    """sha256 of a file, or of a directory (e.g. .mlpackage) as the hash of its sorted relative paths and contents."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def size_of(path: str | os.PathLike) -> int:
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
