"""The spec every exporter takes. The table of targets is toolkit/formats.py; the Runner type is toolkit.runtime's.

Every exporter module (the target row's `exporter`) exposes:
    export(model: TransformerNet, spec: ExportSpec, dest: Path) -> None     # write one artifact at `dest`
and dispatches on the precision row (toolkit.formats.Precision), not on its name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Tuple

from toolkit.formats import Size, Target  # noqa: F401  (re-exported: exporters import them from here)
from toolkit.runtime import Runner  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class ExportSpec:
    target: str
    precision: str = "fp32"
    sizes: Tuple[Size, ...] = ()   # () = the target's default sizes (dynamic H/W where it allows it)
    style: str = "style"
    metadata: dict = field(default_factory=dict, hash=False, compare=False)  # arch config, version, layout, ...
    calibration: Tuple[str, ...] = ()   # image paths for int8 calibration
