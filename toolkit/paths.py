"""Where the toolkit finds shared data: $TOOLKIT_DATA, else ../shared/data beside the checkout or the cwd."""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    candidates = []
    if os.environ.get("TOOLKIT_DATA"):
        candidates.append(Path(os.environ["TOOLKIT_DATA"]))
    candidates += [REPO_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c
    return None


def shared_data(*parts: str) -> Path | None:
    """A path under the shared data folder, or None when the folder (or the path) is absent."""
    root = shared_data_dir()
    if root is None:
        return None
    p = root.joinpath(*parts)
    return p if p.exists() else None


DATA_PREFIX = "$TOOLKIT_DATA/"


def portable_path(path: str | Path) -> str:
    """How a data path is recorded in checkpoints and reports: relative to the shared data root as
    "$TOOLKIT_DATA/styles/frost.png" when it lies under it, else as given (never this machine's absolute layout)."""
    text = str(path)
    root = shared_data_dir()
    if not text or text.startswith(DATA_PREFIX) or root is None:
        return text
    try:
        return DATA_PREFIX + Path(text).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return text


def resolve_data_path(text: str | Path) -> Path:
    """The inverse of `portable_path`: "$TOOLKIT_DATA/..." under this machine's data root (or $TOOLKIT_DATA)."""
    text = str(text)
    if text.startswith(DATA_PREFIX):
        root = shared_data_dir()
        rel = text[len(DATA_PREFIX):]
        return (root / rel) if root is not None else Path(os.environ.get("TOOLKIT_DATA", "../shared/data")) / rel
    return Path(text)


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")


def safe_name(text, what: str = "name") -> str:
    """`text` when it can be one file or folder name inside a folder the user chose (style, run and checkpoint names
    become paths): letters, digits, '.', '_', '-', starting with a letter or digit, no '..'; else a UserError."""
    from toolkit.errors import UserError

    text = str(text)
    if not _NAME.fullmatch(text) or ".." in text:
        raise UserError(f"{what} {text!r} is not a plain name; use letters, digits, '.', '_' or '-' "
                        "(no path separators, no '..'), e.g. my_style")
    return text
