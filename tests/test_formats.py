"""The one table of targets (toolkit/formats.py) and the layers above it, as specifications.

Every target x precision row is walked against what the code that reads it does (exporter dispatch, parity
tolerance, contract dtypes, CLI help, the shipped set); the import graph of toolkit/ has no circle and no import
from a lower layer to a higher one.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from toolkit.errors import UserError
from toolkit.formats import FORMATS, Precision, SizePolicy, all_precisions, get_target, sizes_from_text, sizes_text

ROWS = [(t, p) for t in FORMATS.values() for p in t.precisions]


@pytest.mark.parametrize("target, row", ROWS, ids=[f"{t.name}-{p.name}" for t, p in ROWS])
def test_every_target_precision_row_is_complete_and_read_by_its_users(target, row: Precision):
    from toolkit.export import contract
    from toolkit.export.base import ExportSpec
    from toolkit.parity import tolerance_for

    assert target.precision(row.name) is row and row.name in all_precisions()
    assert tolerance_for(target.name, row.name) == row.tolerance and row.tolerance.describe()
    assert row.compute in ("float32", "float16", "int8", "int8_dynamic")
    assert row.weights in ("float32", "float16", "int8", "palette")
    assert (row.weights == "palette") == (row.palette_bits is not None)
    assert row.calibrated == (row.compute == "int8")
    if row.name == "fp32":  # float32 is exact: judged by max_abs, computes and stores float32
        assert (row.compute, row.weights, row.tolerance.max_abs) == ("float32", "float32", 1e-4)
    # the contract states the row's names, layouts and dtypes
    spec = ExportSpec(target=target.name, precision=row.name, sizes=((32, 48),), style="s", metadata={"stride": 4})
    if row.input_dtype != "float32":  # quantised input: its scale comes from the artifact itself
        pytest.skip("the quantised input's scale is read from a real artifact (tests/test_contract.py)")
    c = contract.build_contract({"target": target.name, "precision": row.name, "sizes": [[32, 48]]}, spec,
                                Path("x" + target.suffix))
    assert (c["input"]["name"], c["output"]["name"]) == (target.input_name, target.output_name)
    assert (c["input"]["layout"], c["output"]["layout"]) == (target.input_layout, target.output_layout)
    assert c["output"]["dtype"] == row.output_dtype
    assert c["input"]["dtype"] == ("image" if target.input_layout == "IMAGE" else row.input_dtype)


def test_every_target_names_a_runtime_an_exporter_and_a_size_policy():
    for target in FORMATS.values():
        assert importlib.util.find_spec(f"toolkit.runtime.{target.runtime}") is not None
        assert importlib.util.find_spec(target.exporter) is not None
        assert target.suffix.startswith(".") and target.extra
        assert target.precision_names[0] == "fp32" and len(set(target.precision_names)) == len(target.precisions)
        policy = target.size_policy
        assert policy.kind in ("dynamic", "enumerated", "fixed")
        assert all(h % 8 == 0 and w % 8 == 0 for h, w in policy.sizes)  # they suit every preset's stride
    # CoreML packages hold enumerated sizes (not "dynamic"), TFLite writes one file per size
    assert get_target("coreml").size_policy.kind == "enumerated" and len(get_target("coreml").size_policy.sizes) == 6
    assert get_target("tflite").one_size_per_file and get_target("onnx").dynamic_sizes


def test_unknown_or_unsupported_precisions_say_what_there_is():
    with pytest.raises(UserError, match=r"unknown precision 'in8' \(did you mean 'int8'\?\)"):
        get_target("onnx").precision("in8")
    with pytest.raises(UserError, match="target tflite cannot export precision palettize4; it supports fp32, fp16"):
        get_target("tflite").precision("palettize4")
    with pytest.raises(ValueError):
        SizePolicy("dynamic", ((8, 8),))


def test_sizes_text_round_trips():
    assert sizes_text(()) == "dynamic" and sizes_from_text("dynamic") == ()
    assert sizes_from_text(sizes_text(((480, 640), (256, 256)))) == ((480, 640), (256, 256))
    with pytest.raises(UserError, match="HxW"):
        sizes_from_text("480by640")


def test_the_shipped_precisions_are_what_ship_exports():
    from toolkit.zoo.ship import EXPORTS

    assert {t: tuple(p) for t, p in EXPORTS} == \
        {t.name: tuple(p.name for p in t.precisions if p.shipped) for t in FORMATS.values()}


def test_exporters_keep_no_precision_or_size_tables_of_their_own():
    from toolkit.export import coreml

    for name in ("PRECISIONS", "CAMERA_SIZES", "check_precision", "check_sizes", "INPUT_NAME", "OUTPUT_NAME"):
        assert not hasattr(coreml, name), f"toolkit.export.coreml.{name} duplicates toolkit.formats"
    tflite_source = (Path(__file__).parents[1] / "toolkit/export/tflite.py").read_text()
    assert "it supports fp32" not in tflite_source


# --- layers ------------------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1] / "toolkit"

# Each layer, with the layers it may import (its own included). Two stacks share the ground floor:
#   models -> losses -> train                 (training)
#   formats -> runtime -> parity -> export -> bench / video / zoo / compress -> commands   (deployment)
# parity sits below export because export_artifact proves parity on every artifact it writes; runtime may load a
# checkpoint (the torch eager runner), so models sit below it.
GROUND = ("toolkit", "toolkit.errors", "toolkit.formats", "toolkit.config", "toolkit.fsutil", "toolkit.paths",
          "toolkit.registry", "toolkit.flops", "toolkit.manifest", "toolkit.data")
LAYERS = {
    "ground": GROUND,
    "models": ("toolkit.models", "toolkit.checkpoint"),
    "losses": ("toolkit.losses",),
    "train": ("toolkit.train",),
    "runtime": ("toolkit.runtime",),
    "parity": ("toolkit.parity",),
    "export": ("toolkit.export",),
    "apps": ("toolkit.bench", "toolkit.video", "toolkit.zoo", "toolkit.compress", "toolkit.stylize",
             "toolkit.metrics", "toolkit.sheets"),
    "commands": ("toolkit.commands", "toolkit.cli", "toolkit.__main__"),
}
MAY_IMPORT = {
    "ground": {"ground"},
    "models": {"ground", "models"},
    "losses": {"ground", "models", "losses"},
    "train": {"ground", "models", "losses", "train"},
    "runtime": {"ground", "models", "runtime"},
    "parity": {"ground", "models", "runtime", "parity"},
    "export": {"ground", "models", "runtime", "parity", "export"},
    "apps": {"ground", "models", "losses", "train", "runtime", "parity", "export", "apps"},
    "commands": set(LAYERS),
}
# Known circles still to break, each with its owner's reason. Shrink this, never grow it: the test fails when an entry
# is gone (remove it) or a new circle appears.
KNOWN_CYCLES: list[list[str]] = []


def _modules() -> dict[str, Path]:
    mods = {}
    for f in ROOT.rglob("*.py"):
        parts = list(f.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def _import_graph() -> dict[str, set[str]]:
    """module -> the toolkit modules it imports anywhere in its file (function-level imports too), plus the packages
    whose __init__ such an import runs (those outside the importer's own package)."""
    mods = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                names = [f"{base}.{a.name}" for a in node.names] + [base]
            else:
                continue
            for name in names:
                if not name.startswith("toolkit"):
                    continue
                found = resolve(name)
                while found:  # importing a.b.c runs a.b's __init__ too (unless the importer lives in a.b)
                    if found != mod and not (mod + ".").startswith(found + "."):
                        targets.add(found)
                    found = found.rpartition(".")[0] if "." in found else None
        graph[mod] = targets - {"toolkit"} if mod != "toolkit" else targets
    return graph


def _layer(mod: str) -> str:
    best = max(((prefix, layer) for layer, prefixes in LAYERS.items() for prefix in prefixes
                if mod == prefix or mod.startswith(prefix + ".")), key=lambda pl: len(pl[0]), default=None)
    assert best is not None, f"{mod} belongs to no layer: add it to LAYERS in tests/test_formats.py"
    return best[1]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_circle():
    assert _cycles(_import_graph()) == KNOWN_CYCLES


def test_no_import_runs_up_a_layer():
    upward = []
    for mod, targets in _import_graph().items():
        for target in targets:
            if _layer(target) not in MAY_IMPORT[_layer(mod)]:
                upward.append(f"{mod} ({_layer(mod)}) imports {target} ({_layer(target)})")
    assert upward == []


def test_runners_import_only_the_table_not_the_exporters():
    graph = _import_graph()
    for mod in (m for m in graph if m.startswith("toolkit.runtime")):
        assert not any(t.startswith("toolkit.export") for t in graph[mod]), mod
    coreml_runner = ast.parse((ROOT / "runtime" / "coreml.py").read_text())
    top_level = {a.name for node in coreml_runner.body if isinstance(node, ast.Import) for a in node.names}
    assert "torch" not in top_level


def test_the_graph_checker_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
