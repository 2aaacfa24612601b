"""User-facing errors: one line that names the problem and the fix; the CLI exits with code 2."""

from __future__ import annotations

import difflib
from typing import Iterable


class UserError(Exception):
    """Bad input from the user (a path, a name, a value). The CLI prints it on one line and exits 2."""


class MissingBackendError(UserError):
    """An optional backend is not installed; the message names the pip extra to install."""

    def __init__(self, module: str, extra: str):
        super().__init__(f"{module} is not installed; install it with: pip install 'toolkit[{extra}]'")


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or a list of the valid choices."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (choose from: {', '.join(choices)})"


def unknown(kind: str, name: str, choices: Iterable[str]) -> UserError:
    return UserError(f"unknown {kind} '{name}'{did_you_mean(name, choices)}")


def require(module: str, extra: str):
    """Import an optional heavy backend, or raise a clear error naming the pip extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingBackendError(module.split(".")[0], extra) from exc
