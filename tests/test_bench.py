"""The latency protocol, its reports, the CI gates and the `toolkit bench` CLI, on tiny nets and small sizes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import tiny_model
from toolkit.bench import Bench, BenchConfig, LatencyRow, Subject, measure, time_call
from toolkit.bench.harness import provider_unavailable
from toolkit.bench.host import host_info, macs_per_cycle
from toolkit.cli import main
from toolkit.errors import UserError
from toolkit.flops import count_macs

SMALL = (32, 48)


def _bench(tmp_path, **kw) -> Bench:
    cfg = dict(targets=("torch",), sizes=(SMALL,), runs=3, warmup=1, reference=False)
    cfg.update(kw)
    return Bench(BenchConfig(**cfg), tmp_path)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    """A tiny net exported the way the toolkit exports (dynamo, opset 18, dynamic H/W)."""
    from toolkit.export import ExportSpec, export_artifact

    dest = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_artifact(tiny_model(), ExportSpec(target="onnx", style="tiny"), dest, check=False)
    return dest


class SleepyRunner:
    """A Runner whose latency we control: identity after sleeping `ms`."""
    name = "sleepy"

    def __init__(self, ms: float, sizes=()):
        self.ms, self.sizes = ms, sizes

    def __call__(self, x):
        time.sleep(self.ms / 1000)
        return x


def test_time_call_reports_percentiles_of_the_timed_runs_only():
    calls = []
    timing = time_call(lambda: calls.append(1) or time.sleep(0.002), warmup=2, runs=5)
    assert len(calls) == 7 and len(timing.samples_ms) == 5
    assert 2.0 <= timing.p50_ms <= timing.p90_ms and timing.p50_ms < 50
    assert timing.fps == pytest.approx(1000 / timing.p50_ms)
    assert min(timing.samples_ms) <= timing.mean_ms <= max(timing.samples_ms)


def test_interleaved_times_every_call_once_per_round_in_turn():
    from toolkit.bench.timing import interleaved

    order = []
    timings = interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, rounds=3, warmup=1,
                          runs=2)
    assert order == (["a"] * 3 + ["b"] * 3) * 3  # (warm-up + runs) per call, calls alternating round by round
    assert {k: len(v) for k, v in timings.items()} == {"a": 3, "b": 3}
    assert all(len(t.samples_ms) == 2 for t in timings["a"])


def test_measure_fills_fps_from_p50_and_gmacs_from_macs():
    row = measure(SleepyRunner(3), subject="s", target="onnx", precision="fp32", provider="cpu", threads=1,
                  size=(8, 8), warmup=1, runs=4, macs=3_000_000, nbytes=123)
    assert row.status == "ok" and row.runtime == "sleepy" and row.bytes == 123
    assert row.fps == pytest.approx(1000 / row.p50_ms)
    assert row.gmacs_per_s == pytest.approx(3_000_000 / (row.p50_ms / 1000) / 1e9)
    assert 3.0 <= row.p50_ms <= row.p90_ms


def test_protocol_on_tiny_model_returns_well_formed_rows(tmp_path):
    model = tiny_model()
    rows = _bench(tmp_path, threads=(1, 2), sizes=(SMALL, (64, 64))).run([Subject("tiny", "arch", model=model)])
    assert [(r.threads, r.size) for r in rows] == [(1, "32x48"), (1, "64x64"), (2, "32x48"), (2, "64x64")]
    for r in rows:
        assert r.status == "ok", r.reason
        assert r.runtime == "torch-eager" and r.runs == 3 and r.warmup == 1
        assert 0 < r.p50_ms <= r.p90_ms and r.mean_ms > 0
        assert r.fps == pytest.approx(1000 / r.p50_ms)
        assert r.macs == count_macs(model, r.height, r.width) and r.macs > 0
        assert r.gmacs_per_s == pytest.approx(r.macs / r.p50_ms * 1000 / 1e9)
        assert r.speedup_vs_reference is None  # reference off
        assert r.cpu_p50_ms > 0
        assert LatencyRow.from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_speedup_vs_johnson2016_is_measured_side_by_side(tmp_path):
    rows = _bench(tmp_path, reference=True, reference_runs=2).run([Subject("tiny", "arch", model=tiny_model())])
    tiny, ref = rows
    assert ref.subject == "johnson2016" and ref.status == "ok" and ref.config_key == tiny.config_key
    assert tiny.reference_p50_ms == ref.p50_ms
    assert tiny.speedup_vs_reference == pytest.approx(ref.p50_ms / tiny.p50_ms)
    assert tiny.speedup_vs_reference > 2  # ~1000x fewer MACs than johnson2016


def test_onnxruntime_artifact_rows_carry_bytes_and_macs_from_metadata(tmp_path, tiny_onnx):
    row = _bench(tmp_path).run([Subject(tiny_onnx.name, "artifact", path=tiny_onnx)])[0]
    assert row.status == "ok", row.reason
    assert row.target == "onnx" and row.runtime == "onnxruntime" and row.bytes == tiny_onnx.stat().st_size
    assert row.macs == count_macs(tiny_model(), *SMALL)


def test_an_artifact_whose_metadata_cannot_be_read_is_a_user_error_not_an_fp32_row(tmp_path, monkeypatch):
    def unreadable(path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("toolkit.export.read_metadata", unreadable)
    with pytest.raises(UserError, match=r"x\.onnx: its metadata cannot be read \(PermissionError: .*Permission denied"):
        _bench(tmp_path).run([Subject("x.onnx", "artifact", path=tmp_path / "x.onnx")])


def test_an_arch_in_metadata_that_does_not_build_is_a_user_error_not_a_row_without_macs(tmp_path, monkeypatch):
    from toolkit.bench.harness import _model_from_artifact

    monkeypatch.setattr("toolkit.export.read_metadata", lambda path: {"arch": '{"no_such_knob": 1}'})
    with pytest.raises(UserError, match=r"y\.onnx records a malformed arch config \(unknown ArchConfig key"):
        _model_from_artifact(tmp_path / "y.onnx")
    monkeypatch.setattr("toolkit.export.read_metadata", lambda path: {"precision": "fp32"})
    assert _model_from_artifact(tmp_path / "z.onnx") is None   # exported elsewhere: no arch, so no MACs


def test_unavailable_provider_gives_a_row_with_the_reason(tmp_path, tiny_onnx):
    import onnxruntime

    assert "XnnpackExecutionProvider" not in onnxruntime.get_available_providers()  # PyPI build: CPU only
    rows = _bench(tmp_path, providers=("cpu", "xnnpack", "cuda")).run(
        [Subject(tiny_onnx.name, "artifact", path=tiny_onnx)])
    by_provider = {r.provider: r for r in rows}
    assert by_provider["cpu"].status == "ok"
    assert by_provider["xnnpack"].status == "unavailable" and "XnnpackExecutionProvider" in by_provider["xnnpack"].reason
    assert by_provider["cuda"].status == "unavailable" and "CUDAExecutionProvider" in by_provider["cuda"].reason
    assert by_provider["xnnpack"].fps is None


def test_coreml_latency_on_linux_is_unavailable_never_timed(tmp_path, monkeypatch):
    import sys

    monkeypatch.setattr(sys, "platform", "linux")
    rows = _bench(tmp_path, targets=("coreml", "torch"), providers=("cpu", "xnnpack")).run(
        [Subject("tiny", "arch", model=tiny_model())])
    coreml = [r for r in rows if r.target == "coreml"]
    assert len(coreml) == 2 and all(r.status == "unavailable" and "needs macOS" in r.reason for r in coreml)
    torch_xnn = [r for r in rows if r.target == "torch" and r.provider == "xnnpack"]
    assert torch_xnn[0].status == "unavailable"
    assert provider_unavailable("onnx", "cpu") is None


def test_a_row_that_is_not_ok_must_say_why():
    with pytest.raises(ValueError, match="needs a reason"):
        LatencyRow("s", "onnx", "fp32", "cpu", 1, 8, 8, status="unavailable")
    with pytest.raises(ValueError, match="status"):
        LatencyRow("s", "onnx", "fp32", "cpu", 1, 8, 8, status="skipped", reason="x")


def test_a_runner_that_crashes_gives_an_error_row():
    def boom(x):
        raise RuntimeError("kernel exploded")

    row = measure(boom, subject="s", target="onnx", precision="fp32", provider="cpu", threads=1, size=(8, 8),
                  warmup=1, runs=2)
    assert row.status == "error" and "kernel exploded" in row.reason


def test_a_size_a_fixed_size_artifact_cannot_take_is_a_user_error():
    with pytest.raises(UserError, match="fixed-size artifact for 64x64 and cannot take 32x48"):
        measure(SleepyRunner(0, sizes=((64, 64),)), subject="s.tflite", target="tflite", precision="fp32",
                provider="cpu", threads=1, size=SMALL, warmup=0, runs=1)


def test_peak_estimate_follows_the_isa():
    assert macs_per_cycle("AuthenticAMD", "25", {"avx512f", "avx2", "fma", "avx512_vnni"}) == (16, 64)  # Zen 4
    assert macs_per_cycle("GenuineIntel", "6", {"avx512f", "avx2", "fma"}) == (32, 64)
    assert macs_per_cycle("GenuineIntel", "6", {"avx2", "fma"}) == (16, 32)
    host = host_info()
    assert host.cores >= 1 and host.fp32_macs_per_cycle >= 4
    if host.clock_ghz:
        assert host.peak_gmacs("fp32", 2) == pytest.approx(host.peak_fp32_gmacs * min(2, host.cores))


# --- reports -----------------------------------------------------------------------------------------------------

def test_json_markdown_and_png_are_written_and_parse(tmp_path):
    from PIL import Image

    from toolkit.bench.report import rows_from_json, write_reports

    rows = _bench(tmp_path, sizes=(SMALL, (64, 64)), targets=("torch", "coreml")).run(
        [Subject("tiny", "arch", model=tiny_model())])
    out = write_reports(rows, tmp_path / "r.json", tmp_path / "r.md", tmp_path / "r.png")
    assert [p.name for p in out] == ["r.json", "r.md", "r.png"]
    data = json.loads((tmp_path / "r.json").read_text())
    assert rows_from_json(data) == rows
    assert data["host"]["cores"] >= 1 and "torch" in data["versions"] and "isa" in data["host"]
    md = (tmp_path / "r.md").read_text().splitlines()
    table = [line for line in md if line.startswith("| ")]
    assert len(table) == 1 + len(rows) and "p50 ms" in table[0]
    assert sum("unavailable" in line for line in table) == 2
    with Image.open(tmp_path / "r.png") as img:
        assert img.format == "PNG" and img.size[0] > 200


# --- gates -------------------------------------------------------------------------------------------------------

def _gates_file(tmp_path, body: str, name="gates.toml") -> Path:
    path = tmp_path / name
    path.write_text('[defaults]\ntarget = "torch"\nsize = "32x32"\nruns = 2\nwarmup = 1\nrounds = 1\n\n' + body)
    return path


def test_a_gate_that_must_fail_exits_1_and_one_that_must_pass_exits_0(tmp_path, capsys):
    failing = _gates_file(tmp_path, '[[gate]]\narch = "nano"\nmin_fps = 1e9\n', "fail.toml")
    assert main(["bench", "--gates", str(failing)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "< 1e+09" in out and "| 2 |" in out   # retried once
    passing = _gates_file(tmp_path, '[[gate]]\narch = "nano"\nmin_fps = 0.001\nmin_speedup_vs_reference = 1.5\n',
                          "pass.toml")
    assert main(["bench", "--gates", str(passing), "--json", str(tmp_path / "g.json")]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "FAIL" not in out and "1 of 1 gates passed" in out
    rows = json.loads((tmp_path / "g.json").read_text())["rows"]
    assert rows and rows[0]["speedup_vs_reference"] > 1.5


def test_a_cpu_clock_gate_judges_process_cpu_time(tmp_path, capsys):
    from toolkit.bench.gates import check_gates, parse_gates

    gates = parse_gates(_gates_file(tmp_path, '[[gate]]\narch = "nano"\nclock = "cpu"\nmin_fps = 0.001\n'
                                              'min_speedup_vs_reference = 1.5\n'))
    (result,) = check_gates(gates, tmp_path)
    assert result.passed and result.attempts == 1, result.failures
    cpu_ms = sorted(r.cpu_p50_ms for r in result.rows)
    assert result.fps == pytest.approx(1000 / cpu_ms[len(cpu_ms) // 2])
    assert result.speedup > 1.5


def test_gates_parse_defaults_and_goals(tmp_path):
    from toolkit.bench.gates import parse_gates

    gates = parse_gates(_gates_file(tmp_path, '[[gate]]\narch = "nano"\nthreads = 2\nmax_bytes = 1000\n'
                                              '[[gate]]\narch = "caffe2go"\ntarget = "onnx"\nprecision = "int8"\n'
                                              'min_speedup_vs_reference = 10\n'))
    assert [(g.subject, g.target, g.precision, g.size, g.threads) for g in gates] == [
        ("nano", "torch", "fp32", (32, 32), 2), ("caffe2go", "onnx", "int8", (32, 32), 1)]
    assert gates[0].max_bytes == 1000 and gates[1].min_speedup_vs_reference == 10


def test_shipped_gates_file_parses():
    from toolkit.bench.gates import parse_gates

    gates = parse_gates(Path(__file__).resolve().parents[1] / "latency_gates.toml")
    # every shipped style keeps the product's promise at fp32 and int8: >= 20 fps at 480x640 on one thread
    for precision in ("fp32", "int8"):
        assert any(g.min_fps and g.min_fps >= 20 and g.size == (480, 640) and g.threads == 1
                   and g.precision == precision and g.kind == "style" for g in gates), precision
    assert any(g.min_speedup_vs_reference and g.min_speedup_vs_reference >= 20 for g in gates)


@pytest.mark.parametrize("body, message", [
    ('[[gate]]\narch = "nano"\nmin_fsp = 20\n', "unknown key 'min_fsp' (did you mean 'min_fps'?)"),
    ('[[gate]]\narch = "nanoo"\nmin_fps = 20\n', "unknown arch 'nanoo' (did you mean 'nano'?)"),
    ('[[gate]]\nstyle = "no_such_style"\nmin_fps = 20\n', "unknown style 'no_such_style'"),
    ('[[gate]]\narch = "nano"\ntarget = "tflight"\nmin_fps = 20\n', "unknown target 'tflight' (did you mean 'tflite'?)"),
    ('[[gate]]\narch = "nano"\nprovider = "xnnpak"\nmin_fps = 20\n', "unknown provider 'xnnpak' (did you mean"),
    ('[[gate]]\narch = "nano"\ntarget = "onnx"\nprecision = "int4"\nmin_fps = 20\n', "no precision 'int4'"),
    ('[[gate]]\narch = "nano"\n', "no goal"),
    ('[[gate]]\narch = "nano"\nmin_fps = "fast"\n', "min_fps must be a number"),
    ('[[gates]]\narch = "nano"\nmin_fps = 1\n', "unknown top-level key 'gates' (did you mean 'gate'?)"),
    ('[[gate]\narch = "nano"\n', "not valid TOML"),
    ('[[gate]]\narch = "nano"\nclock = "cpu"\nthreads = 2\nmin_fps = 1\n', "clock = \"cpu\" measures one core"),
    ('[[gate]]\narch = "nano"\nclock = "cpus"\nmin_fps = 1\n', "unknown clock 'cpus' (did you mean 'cpu'?)"),
])
def test_bad_gates_files_exit_2_naming_the_problem(tmp_path, capsys, body, message):
    assert main(["bench", "--gates", str(_gates_file(tmp_path, body))]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


# --- CLI ---------------------------------------------------------------------------------------------------------

def test_cli_benches_a_checkpoint_and_an_artifact(tmp_path, capsys, tiny_checkpoint, tiny_onnx):
    rc = main(["bench", "--checkpoint", str(tiny_checkpoint), "--targets", "torch", "--sizes", "32x32,64x64",
               "--runs", "2", "--warmup", "1", "--no-reference", "--md", str(tmp_path / "t.md")])
    assert rc == 0
    out = capsys.readouterr().out
    assert out.count("| tiny | torch | fp32 | cpu | 1 |") == 2
    assert main(["bench", str(tiny_onnx), "--sizes", "32x32", "--runs", "2", "--no-reference",
                 "--providers", "cpu,cuda"]) == 0
    out = capsys.readouterr().out
    assert "| tiny.onnx | onnx | fp32 | cpu | 1 | 32x32 | ok |" in out and "| unavailable |" in out


@pytest.mark.parametrize("argv, message", [
    (["--arch", "nano", "--targets", "onxx"], "unknown target 'onxx' (did you mean 'onnx'?)"),
    (["--arch", "nano", "--providers", "gpu"], "unknown provider 'gpu'"),
    (["--arch", "nano", "--precision", "fp8"], "unknown precision 'fp8'"),
    (["--arch", "nano", "--sizes", "480by640"], "size '480by640' is not HEIGHTxWIDTH"),
    (["--arch", "nano", "--threads", "one"], "--threads 'one' must be a comma list of integers"),
    (["--arch", "nano", "--runs", "0"], "--runs must be >= 1"),
    (["--arch", "nanoo"], "unknown arch 'nanoo' (did you mean 'nano'?)"),
    (["--style", "no_such_style"], "unknown style 'no_such_style'"),
    (["missing.onnx"], "artifact missing.onnx does not exist"),
    (["model.pt"], "is not an exported artifact"),
    ([], "nothing to bench"),
    (["--gates", "no_such_gates.toml"], "gates file no_such_gates.toml does not exist"),
])
def test_cli_bad_inputs_exit_2(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(["bench", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_cli_artifact_that_will_not_load_exits_2(tmp_path, capsys):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"this is not a protobuf")
    assert main(["bench", str(bad), "--sizes", "32x32", "--runs", "1", "--no-reference"]) == 2
    assert "broken.onnx" in capsys.readouterr().err


def test_cli_size_not_a_multiple_of_the_stride_exits_2(capsys):
    assert main(["bench", "--arch", "nano", "--sizes", "30x30", "--runs", "1", "--no-reference"]) == 2
    assert "multiple of the net's stride" in capsys.readouterr().err


def test_style_benches_reuse_exported_artifacts_only_when_the_manifest_sha256_matches(tmp_path, monkeypatch,
                                                                                      tiny_onnx):
    import shutil

    from toolkit.checkpoint import save_checkpoint
    from toolkit.fsutil import sha256_of, write_json

    monkeypatch.chdir(tmp_path)
    save_checkpoint(Path("runs/tiny/tiny.safetensors"), tiny_model(), {"name": "tiny"})
    shipped = Path("exported/tiny/tiny.onnx")
    shipped.parent.mkdir(parents=True)
    shutil.copy(tiny_onnx, shipped)
    write_json("exported/manifest.json", {"styles": {"tiny": {"artifacts": [
        {"file": str(shipped), "target": "onnx", "precision": "fp32", "sha256": sha256_of(shipped)}]}}})
    bench = _bench(tmp_path / "work", targets=("onnx",), reuse_exported=Path("exported"))
    subject = Subject("tiny", "style", model=tiny_model())
    assert bench._artifact(subject, "onnx", "fp32", None)[0] == shipped
    assert bench.run([subject])[0].status == "ok"
    write_json("exported/manifest.json", {"artifacts": [{"file": str(shipped), "sha256": "0" * 64}]})
    fresh = _bench(tmp_path / "work2", targets=("onnx",), reuse_exported=Path("exported"))
    assert fresh._reusable(subject, "onnx", "fp32", None) is None


def test_paired_ratio_is_the_median_of_each_rounds_ratio():
    from toolkit.bench.timing import paired_ratio

    drift = [1.0, 1.4, 0.8, 1.3, 0.9]  # the host's speed per round, the same for both calls of a round
    slow = [15.0 * d for d in drift]
    fast = [10.0 * d for d in drift]
    assert paired_ratio(slow, fast) == pytest.approx(1.5)
    assert paired_ratio([15, 15, 30, 30, 9], [10, 10, 20, 20, 9]) == pytest.approx(1.5)  # one odd round
    with pytest.raises(ValueError):
        paired_ratio(slow, fast[:-1])
