"""Where the toolkit finds shared data: $TOOLKIT_DATA, else ../shared/data beside the checkout or the cwd."""

from __future__ import annotations

import os
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
