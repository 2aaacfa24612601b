"""One module per subcommand: HELP, add_arguments(parser), run(args) -> exit code.

Vocabulary shared by every command: a list option is repeatable and takes comma lists (`--target onnx --target
tflite` == `--target onnx,tflite`); sizes are HEIGHTxWIDTH where a fixed input is meant (`--size 480x640`) and a
long side where the net runs on an image of any shape (`stylize --size 512`); `-o/--out` is the folder or file the
command writes, named in each command's help."""

from __future__ import annotations

import argparse


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
