"""CI latency gates: goals declared as data (latency_gates.toml), checked by one function against bench rows.

    [defaults]                     # optional; every [[gate]] inherits these
    target = "onnx"                # onnx | tflite | coreml | torch
    precision = "fp32"
    size = "480x640"               # HEIGHTxWIDTH
    provider = "cpu"               # cpu | xnnpack | cuda
    threads = 1
    runs = 15                      # timed runs per round (p50 of these is one round's result)
    warmup = 3
    rounds = 3                     # the gate uses the median over rounds; a miss is measured again once
    clock = "wall"                 # wall: fps from wall-clock p50 | cpu: from the process CPU time per run, which
                                   # with 1 thread is the latency on a core nobody else uses (shared CI boxes)

    [[gate]]
    arch = "nano"                  # a preset with random weights (latency does not depend on weight values) ...
    # style = "frost"              # ... or a shipped style; style = "*" means every shipped style
    min_fps = 20
    min_speedup_vs_reference = 25  # vs johnson2016 fp32, same target/provider/threads/size, measured side by side
    max_bytes = 400_000            # artifact size on disk

Unknown keys, styles, presets, targets, providers and precisions are UserErrors with suggestions.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

from toolkit.bench.harness import PROVIDERS, TARGETS, Bench, BenchConfig, Subject
from toolkit.bench.rows import LatencyRow
from toolkit.errors import UserError, did_you_mean, unknown
from toolkit.export import parse_size
from toolkit.formats import Size

TOP_KEYS = ("defaults", "gate")
SETTING_KEYS = ("target", "precision", "size", "provider", "threads", "runs", "warmup", "rounds", "clock")
CLOCKS = ("wall", "cpu")
GOAL_KEYS = ("min_fps", "min_speedup_vs_reference", "max_bytes")
GATE_KEYS = ("name", "style", "arch") + SETTING_KEYS + GOAL_KEYS
ALL_STYLES = "*"


@dataclass(frozen=True)
class Gate:
    subject: str                   # style or preset name
    kind: str                      # style | arch
    target: str = "onnx"
    precision: str = "fp32"
    size: Size = (480, 640)
    provider: str = "cpu"
    threads: int = 1
    runs: int = 15
    warmup: int = 3
    rounds: int = 3
    clock: str = "wall"
    min_fps: Optional[float] = None
    min_speedup_vs_reference: Optional[float] = None
    max_bytes: Optional[int] = None
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or f"{self.kind} {self.subject}"


@dataclass(frozen=True)
class GateResult:
    gate: Gate
    passed: bool
    fps: Optional[float]
    speedup: Optional[float]
    bytes: Optional[int]
    failures: Tuple[str, ...]
    attempts: int
    rows: Tuple[LatencyRow, ...] = ()


def _number(where: str, key: str, value, kind=float, minimum=0):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise UserError(f"{where}: {key} must be a{'n integer' if kind is int else ' number'}, got {value!r}")
    if value < minimum:
        raise UserError(f"{where}: {key} must be >= {minimum}, got {value!r}")
    return kind(value)


def _check_settings(where: str, table: dict, allowed: tuple) -> dict:
    for key in table:
        if key not in allowed:
            raise UserError(f"{where}: unknown key '{key}'{did_you_mean(key, allowed)}")
    out = dict(table)
    if "target" in out and out["target"] not in TARGETS:
        raise UserError(f"{where}: unknown target '{out['target']}'{did_you_mean(str(out['target']), TARGETS)}")
    if "provider" in out and out["provider"] not in PROVIDERS:
        raise UserError(f"{where}: unknown provider '{out['provider']}'"
                        f"{did_you_mean(str(out['provider']), PROVIDERS)}")
    if "clock" in out and out["clock"] not in CLOCKS:
        raise UserError(f"{where}: unknown clock '{out['clock']}'{did_you_mean(str(out['clock']), CLOCKS)}")
    if "size" in out:
        if not isinstance(out["size"], str):
            raise UserError(f"{where}: size must be a string like \"480x640\", got {out['size']!r}")
        out["size"] = parse_size(out["size"])
    for key, minimum in (("threads", 1), ("runs", 1), ("warmup", 0), ("rounds", 1)):
        if key in out:
            out[key] = _number(where, key, out[key], int, minimum)
    for key in ("min_fps", "min_speedup_vs_reference"):
        if key in out:
            out[key] = _number(where, key, out[key])
    if "max_bytes" in out:
        out["max_bytes"] = _number(where, "max_bytes", out["max_bytes"], int, 1)
    return out


def _check_precision(where: str, target: str, precision: str) -> None:
    if target == "torch":
        allowed: tuple = ("fp32",)
    else:
        from toolkit.export import FORMATS

        allowed = FORMATS[target].precision_names
    if precision not in allowed:
        raise UserError(f"{where}: target {target} has no precision '{precision}'{did_you_mean(precision, allowed)}")


def parse_gates(path: str | Path) -> list[Gate]:
    """Read and validate a gates file; `style = "*"` expands to every shipped style (none yet: no gates)."""
    import tomllib

    from toolkit.models import ARCHS
    from toolkit.zoo import shipped_styles, style_path

    path = Path(path)
    if not path.is_file():
        raise UserError(f"gates file {path} does not exist; pass a TOML file like latency_gates.toml")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"gates file {path} is not valid TOML ({exc}); fix the syntax") from exc
    for key in data:
        if key not in TOP_KEYS:
            raise UserError(f"{path}: unknown top-level key '{key}'{did_you_mean(key, TOP_KEYS)}")
    defaults = _check_settings(f"{path} [defaults]", data.get("defaults", {}), SETTING_KEYS)
    tables = data.get("gate", [])
    if not isinstance(tables, list) or not tables:
        raise UserError(f"{path}: no [[gate]] tables; add at least one (see toolkit/bench/gates.py)")
    gates = []
    for i, table in enumerate(tables, 1):
        where = f"{path} gate {i}"
        settings = {**defaults, **_check_settings(where, table, GATE_KEYS)}
        if ("style" in settings) == ("arch" in settings):
            raise UserError(f"{where}: give exactly one of style = \"NAME\" (or \"*\") or arch = \"PRESET\"")
        if not any(k in settings for k in GOAL_KEYS):
            raise UserError(f"{where}: no goal; set at least one of {', '.join(GOAL_KEYS)}")
        _check_precision(where, settings.get("target", "onnx"), settings.get("precision", "fp32"))
        if settings.get("clock") == "cpu" and settings.get("threads", 1) != 1:
            raise UserError(f"{where}: clock = \"cpu\" measures one core; use it with threads = 1 or use "
                            "clock = \"wall\"")
        if "arch" in settings:
            arch = settings.pop("arch")
            if arch not in ARCHS:
                raise UserError(f"{where}: {unknown('arch', arch, ARCHS.names())}")
            names, kind = [arch], "arch"
        else:
            style = settings.pop("style")
            if style == ALL_STYLES:
                names = shipped_styles()
            else:
                try:
                    style_path(style)
                except UserError as exc:
                    raise UserError(f"{where}: {exc}") from None
                names = [style]
            kind = "style"
        gates += [Gate(subject=n, kind=kind, **settings) for n in names]
    return gates


def _subject(gate: Gate) -> Subject:
    if gate.kind == "arch":
        from toolkit.models import create_model

        return Subject(gate.subject, "arch", model=create_model(gate.subject).eval())
    from toolkit.zoo import load_style

    return Subject(gate.subject, "style", model=load_style(gate.subject).model)


def measure_gate(bench: Bench, gate: Gate, subject: Subject) -> tuple[Optional[float], Optional[float],
                                                                        Optional[int], list[LatencyRow], str]:
    """(median fps over rounds, speed-up of that median vs the reference, bytes, rows, reason when not measurable)."""
    rows = []
    need_reference = gate.min_speedup_vs_reference is not None
    for _ in range(gate.rounds):
        row = bench.measure_one(subject, gate.target, gate.precision, gate.provider, gate.threads, gate.size,
                                runs=gate.runs, warmup=gate.warmup, reference=False)
        rows.append(row)
        if row.status != "ok":
            return None, None, row.bytes, rows, f"{row.status}: {row.reason}"
    p50 = statistics.median(_ms(r, gate.clock) for r in rows)
    speedup = None
    if need_reference:
        ref = bench.reference_row(gate.target, gate.provider, gate.threads, gate.size)
        if ref is None or ref.status != "ok":
            return 1000.0 / p50, None, rows[0].bytes, rows, f"reference {ref.status if ref else 'missing'}: " \
                                                             f"{ref.reason if ref else ''}"
        speedup = _ms(ref, gate.clock) / p50
        rows = [r.with_reference(ref) for r in rows]
    return 1000.0 / p50, speedup, rows[0].bytes, rows, ""


def _ms(row: LatencyRow, clock: str) -> float:
    return row.cpu_p50_ms if clock == "cpu" else row.p50_ms


def judge(gate: Gate, fps, speedup, nbytes, reason: str) -> list[str]:
    failures = [reason] if reason else []
    if gate.min_fps is not None and (fps is None or fps < gate.min_fps):
        failures.append(f"fps {_f(fps)} < {gate.min_fps:g}")
    if gate.min_speedup_vs_reference is not None and (speedup is None or speedup < gate.min_speedup_vs_reference):
        failures.append(f"speed-up {_f(speedup)}x < {gate.min_speedup_vs_reference:g}x")
    if gate.max_bytes is not None and (nbytes is None or nbytes > gate.max_bytes):
        failures.append(f"bytes {nbytes if nbytes is not None else '—'} > {gate.max_bytes}")
    return failures


def _f(v) -> str:
    return "—" if v is None else f"{v:.1f}"


def check_gates(gates: list[Gate], workdir: Path, log=None) -> list[GateResult]:
    """Measure what each gate needs (median of `rounds`), judge it, and measure a miss once more (fresh reference)."""
    bench = Bench(BenchConfig(targets=tuple(sorted({g.target for g in gates})) or ("onnx",), reference=False),
                  workdir)
    subjects: dict = {}
    results = []
    for gate in gates:
        key = (gate.kind, gate.subject)
        if key not in subjects:
            subjects[key] = _subject(gate)
        attempts, failures = 0, ["not measured"]
        while failures and attempts < 2:
            if attempts:
                bench.forget_references()   # a retry re-times the reference too: noise hits both sides
            attempts += 1
            fps, speedup, nbytes, rows, reason = measure_gate(bench, gate, subjects[key])
            failures = judge(gate, fps, speedup, nbytes, reason)
            if reason and reason.startswith("unavailable"):
                break   # measuring again will not make a provider appear
        result = GateResult(gate, not failures, fps, speedup, nbytes, tuple(failures), attempts, tuple(rows))
        if log:
            log(f"{'PASS' if result.passed else 'FAIL'} {gate.label} {gate.target} {gate.precision} "
                f"{gate.size[0]}x{gate.size[1]} {gate.provider} {gate.threads}t: fps {_f(fps)} "
                f"speed-up {_f(speedup)} ({attempts} attempt{'s' if attempts > 1 else ''})")
        results.append(result)
    return results


GATE_COLUMNS = ("result", "gate", "target", "precision", "size", "provider", "threads", "clock", "fps", "min fps",
                "speed-up", "min speed-up", "bytes", "max bytes", "attempts", "why")


def gates_table(results: list[GateResult]) -> str:
    lines = ["| " + " | ".join(GATE_COLUMNS) + " |", "|" + "---|" * len(GATE_COLUMNS)]
    for r in results:
        g = r.gate
        cells = ("PASS" if r.passed else "FAIL", g.label, g.target, g.precision, f"{g.size[0]}x{g.size[1]}",
                 g.provider, str(g.threads), g.clock, _f(r.fps), "—" if g.min_fps is None else f"{g.min_fps:g}",
                 _f(r.speedup), "—" if g.min_speedup_vs_reference is None else f"{g.min_speedup_vs_reference:g}",
                 "—" if r.bytes is None else str(r.bytes), "—" if g.max_bytes is None else str(g.max_bytes),
                 str(r.attempts), "; ".join(r.failures).replace("|", "/"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
