"""One module per subcommand: HELP, add_arguments(parser), run(args) -> exit code.

Vocabulary shared by every command: a list option is repeatable and takes comma lists (`--target onnx --target
tflite` == `--target onnx,tflite`); sizes are HEIGHTxWIDTH where a fixed input is meant (`--size 480x640`) and a
long side where the net runs on an image of any shape (`stylize --size 512`); `-o/--out` is the folder or file the
command writes, named in each command's help."""

from __future__ import annotations

import argparse
import math


def csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


class _Extend(argparse.Action):
    """Repeatable, comma-splitting; the first use replaces the default instead of adding to it."""

    def __call__(self, parser, namespace, values, option_string=None):
        current = getattr(namespace, self.dest)
        setattr(namespace, self.dest, [*([] if current is self.default else current), *values])


def list_option(parser, *flags: str, default: list[str], metavar: str, help: str) -> None:
    """Add a list option (see the module docstring); `default` is used when the option is not given."""
    shown = ",".join(default) if default else "none"
    parser.add_argument(*flags, action=_Extend, type=csv, default=list(default), metavar=metavar,
                        help=f"{help} (repeatable or a comma list; default: {shown})")


MAX_STEPS = 100_000_000  # training / fine-tune steps: more is a typo, not a plan
MAX_WORKERS = 256        # processes or threads one command starts: more is a typo that would fork-bomb the machine


def whole(minimum: int, maximum: int | None = None):
    """An argparse type: a whole number in [minimum, maximum]; anything else is refused while parsing, in one line,
    before any work (`--steps -1`, `--workers 1e9`, `--seed nan`)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum}, got {value}")
        return value

    parse.__name__ = "whole number"
    return parse


def real(minimum: float = 0.0, above: bool = False, maximum: float = math.inf):
    """An argparse type: a finite number >= minimum (> minimum when `above`) and <= maximum; nan, inf and '1e400' are
    refused."""
    bound = f"{'>' if above else '>='} {minimum:g}" + (f" and <= {maximum:g}" if maximum < math.inf else "")

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < minimum or (above and value == minimum) or value > maximum:
            raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


def add_finetune_arguments(p) -> None:
    """The fine-tune options prune and qat share (toolkit.compress.finetune.finetune_config reads them)."""
    p.add_argument("--finetune-steps", type=whole(0, MAX_STEPS), default=0,
                   help="fine-tune steps after compressing (default 0)")
    p.add_argument("--style-image", help="style image (default: the one the checkpoint was trained on)")
    p.add_argument("--content-dir", help="content photos (default: the checkpoint's training photos)")
    p.add_argument("--size", type=whole(16), default=None, help="fine-tune crop side (default: the training one)")
    p.add_argument("--batch", type=whole(1), default=None, help="fine-tune batch (default: the training one)")
    p.add_argument("--lr", type=real(above=True), default=1e-4, help="fine-tune learning rate (default 1e-4)")
    p.add_argument("--loss-net", choices=["vgg19", "vgg16", "random"], help="loss network (default: the training one)")
    p.add_argument("--encoder-precision", choices=["fp32", "bf16"],
                   help="run the frozen VGG in bf16 (faster on AVX512-BF16 CPUs and GPUs; default: the training one)")
    p.add_argument("--workers", type=whole(0, MAX_WORKERS), default=0,
                   help="data-loading worker processes (default 0)")
    p.add_argument("-o", "--out", help="output checkpoint (.safetensors)")
