"""`toolkit` command line. Each subcommand lives in toolkit/commands/<name>.py with HELP, add_arguments, run;
heavy backends are imported inside `run`, so `toolkit --help` stays fast."""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys
import warnings

from toolkit import __version__
from toolkit.errors import UserError

COMMANDS = {  # name users type -> module
    "train": "toolkit.commands.train",
    "stylize": "toolkit.commands.stylize",
    "styles": "toolkit.commands.styles",
    "archs": "toolkit.commands.archs",
    "export": "toolkit.commands.export",
    "validate": "toolkit.commands.validate",
    "prune": "toolkit.commands.prune",
    "qat": "toolkit.commands.qat",
    "compare": "toolkit.commands.compare",
    "bench": "toolkit.commands.bench",
    "eval-video": "toolkit.commands.eval_video",
    "ship": "toolkit.commands.ship",
}


class UsageError(UserError):
    """A command line argparse refuses (a missing or unknown option, a value its type rejects)."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line (the problem and where the fix is) instead of the usage
    block; subcommand parsers inherit it."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: error: {message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="toolkit", description="Train, compress, export and run compact "
                           "real-time style-transfer networks.")
    parser.add_argument("--version", action="version", version=f"toolkit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def one_line(exc: UserError) -> str:
    """The error's own message: a DataLoader worker re-raises it with the worker's whole traceback in front."""
    text = str(exc)
    if "Original Traceback" in text:
        text = text.strip().splitlines()[-1]
        text = text.split(": ", 1)[1] if text.startswith(("UserError", "toolkit.errors.")) else text
    return text


# Backends that log version nags and optional-kernel notices at WARNING on every export ("torchvision is not
# installed", "Torch version ... has not been tested with coremltools", "Failed to load _MLModelProxy"): without
# --verbose only their errors reach stderr, so a failing command's stderr is its one error line.
QUIET_LOGGERS = ("torch.onnx", "torch.utils", "torch.export", "torch._export", "coremltools", "torchao",
                 "onnxscript", "onnx_ir", "tensorflow", "absl", "litert_torch", "ai_edge_torch", "ai_edge_litert")


def quiet_backends(verbose: bool) -> None:
    import os

    if not verbose and "TORCH_LOGS" not in os.environ:
        # torch resets its registered loggers ("torch.onnx") when it is imported later: tell it through its own knob
        os.environ["TORCH_LOGS"] = "-onnx"
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    warnings.formatwarning = lambda message, *_: f"toolkit {args.command}: warning: {message}\n"  # one line each
    quiet_backends(args.verbose)
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"toolkit {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS):
            raise
        print(f"toolkit {args.command}: error: {exc.strerror} while writing {exc.filename or 'the output'}; free "
              "space or choose another output folder (nothing half-written was left)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"toolkit {args.command}: interrupted; outputs are only ever renamed into place when complete",
              file=sys.stderr)
        return 130
