"""aarch64 parity (toolkit.bench.arm): judging, rows, manifest field and qemu commands without qemu; one real run on
the emulated arm64 Python when .ci/arm_parity.sh has built it (skipped with the reason otherwise)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from toolkit.bench.arm import (PROVIDER, Agreement, ArmResult, Case, judge, main, manifest_fields, markdown_report,
                               results_from_json, rows_from_json, run_parity, select_cases, update_manifest_field,
                               write_reports)
from toolkit.bench.arm_env import ARM_CPUS, REPO, ArmEnv, cpuinfo_text, pick_photos, run_worker
from toolkit.errors import UserError
from toolkit.manifest import read_manifest, update_manifest
from toolkit.parity import tolerance_for

SIZE = (8, 12)


def _out(seed: int, noise: float = 0.0, base: np.ndarray | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ref = base if base is not None else rng.uniform(0, 1, (1, 3, *SIZE)).astype(np.float32)
    return (ref + noise * rng.standard_normal(ref.shape)).astype(np.float32)


def _result(target="onnx", precision="fp32", cpu="cortex-a76", primary=True, runtime="onnxruntime 1.32.0 aarch64",
            sha="abc", artifact="frost/frost.onnx") -> ArmResult:
    return ArmResult(Case(artifact, "frost", target, precision, SIZE, sha), "onnxruntime", runtime, cpu, 2, primary)


def _judged(noise_vs_torch: float, noise_vs_x86: float, **kw) -> ArmResult:
    refs = [_out(i) for i in range(2)]
    outs = [_out(10 + i, noise_vs_torch, r) for i, r in enumerate(refs)]
    x86 = [_out(20 + i, noise_vs_x86, o) for i, o in enumerate(outs)]
    return judge(_result(**kw), outs, x86, refs, refs)


def test_agreement_is_the_worst_photo():
    ref = [_out(0), _out(1)]
    got = [ref[0], _out(2, 0.01, ref[1])]
    a = Agreement.of(got, ref)
    assert 35 < a.psnr_db < 45 and 0.01 < a.max_abs < 0.1


def test_identical_outputs_pass_and_show_as_identical():
    ref = [_out(0)]
    r = judge(_result(), ref, ref, ref, ref)
    assert r.passed and r.vs_x86.psnr_db == float("inf")
    assert r.to_dict()["vs_x86"]["psnr_db"] is None and "identical" in r.summary()


def test_fp32_file_drifting_on_aarch64_fails_with_its_psnr():
    r = _judged(noise_vs_torch=1e-3, noise_vs_x86=0.0)
    assert r.tolerance == tolerance_for("onnx", "fp32").describe()
    assert not r.passed and any(f.startswith("vs torch: max_abs") and "dB" in f for f in r.failures)


def test_int8_file_is_judged_by_the_parity_table_psnr():
    assert tolerance_for("tflite", "int8").psnr_db is not None
    assert _judged(0.005, 0.002, target="tflite", precision="int8").passed          # ~46 dB
    bad = _judged(0.1, 0.0, target="tflite", precision="int8")                      # ~20 dB
    assert not bad.passed and re.search(r"vs torch: PSNR \d+\.\d dB < 30 dB", bad.failures[0])


def test_aarch64_output_far_from_x86_fails_even_when_torch_agrees():
    r = _judged(0.0, 0.2, target="onnx", precision="int8")
    assert [f for f in r.failures if f.startswith("vs x86:")] and r.vs_torch.psnr_db == float("inf")


def test_a_file_missing_its_tolerance_on_x86_too_says_so():
    refs = [_out(0)]
    outs = [_out(1, 0.1, refs[0])]                                                   # ~20 dB vs torch, both machines
    r = judge(_result(target="tflite", precision="int8"), outs, outs, refs, refs)
    assert not r.passed and r.x86_misses_too and r.verdict().startswith("FAIL, on x86 too (x86 vs torch 2")
    assert manifest_fields([r], "qemu")["frost/frost.onnx"]["x86_misses_too"] is True
    arm_only = judge(_result(target="tflite", precision="int8"), outs, refs, refs, refs)   # x86 equals torch
    assert not arm_only.passed and not arm_only.x86_misses_too and arm_only.verdict().startswith("FAIL: vs torch")


def test_a_file_without_x86_output_fails():
    ref = [_out(0)]
    r = judge(_result(), ref, None, ref, ref)
    assert not r.passed and "no x86 output" in r.failures[0]


def test_row_is_parity_only_and_never_carries_fps():
    ok = _judged(0.0, 0.0).to_row()
    assert ok.provider == PROVIDER == "aarch64 (emulated)"
    assert ok.fps is None and ok.p50_ms is None and ok.status == "unavailable"
    assert "parity only" in ok.reason and "onnxruntime 1.32.0, qemu cortex-a76" in ok.reason
    bad = _judged(0.1, 0.0, target="onnx", precision="int8").to_row()
    assert bad.status == "error" and bad.fps is None and re.search(r"PSNR \d+\.\d dB < 30 dB", bad.reason)


def test_saved_report_gives_the_same_rows(tmp_path):
    results = [_judged(0.0, 0.0), _judged(0.1, 0.0, target="tflite", precision="int8")]
    env = ArmEnv("qemu", Path("py"), Path("root"), Path("site"), {"base": "numpy==2", "onnxruntime": "onnxruntime==1"})
    md, js = tmp_path / "arm.md", tmp_path / "arm.json"
    write_reports(results, md, js, env, [Path("a.jpg")], 1.0)
    assert [r.to_dict() for r in rows_from_json(js)] == [r.to_row().to_dict() for r in results]
    assert [r.to_dict() for r in results_from_json(js)[0]] == [r.to_dict() for r in results]
    text = md.read_text()
    assert "frost/frost.onnx" in text and "**FAIL**" in text and "fps" not in text.lower()
    md.unlink()
    assert main(["--report-from", str(js), "--md", str(md)]) == 0 and md.read_text() == text


def test_qemu_command_runs_the_sysroot_python_with_one_runtime_site():
    env = ArmEnv("/usr/bin/qemu-aarch64-static", Path("/c/sysroot/usr/bin/python3.11"), Path("/c/sysroot"),
                 Path("/c/site"), {"base": "numpy==2.4.6", "litert": "ai-edge-litert==2.3.0"})
    cmd = env.command("litert", "cortex-a53", ["worker.py", "jobs.json"])
    assert cmd[:5] == ["/usr/bin/qemu-aarch64-static", "-cpu", "cortex-a53", "-L", "/c/sysroot"]
    path = next(a for a in cmd if a.startswith("PYTHONPATH="))
    assert path == f"PYTHONPATH=/c/site/base:/c/site/litert:{REPO}"
    assert cmd[-3:] == ["/c/sysroot/usr/bin/python3.11", "worker.py", "jobs.json"]
    assert env.runtime_label("litert") == "ai-edge-litert 2.3.0 aarch64"


def test_emulated_cpuinfo_names_the_core_and_its_int8_dot_product():
    big, little = cpuinfo_text("cortex-a76", 2), cpuinfo_text("cortex-a53", 1)
    assert big.count("processor\t:") == 2 and "CPU part\t: 0xd0b" in big and "asimddp" in big
    assert "0xd03" in little and "asimddp" not in little
    assert set(ARM_CPUS) >= {"cortex-a76", "cortex-a53"}


def _manifest() -> dict:
    entry = {"style": "frost", "sha256": "s"}
    return {"artifacts": {
        "frost/frost.onnx": dict(entry, target="onnx", precision="fp32", sizes="dynamic"),
        "frost/frost.int8.onnx": dict(entry, target="onnx", precision="int8", sizes="dynamic"),
        "frost/frost.256x256.tflite": dict(entry, target="tflite", precision="fp32", sizes=[[256, 256]]),
        "frost/frost.480x640.tflite": dict(entry, target="tflite", precision="fp32", sizes=[[480, 640]]),
        "frost/frost.int8.480x640.tflite": dict(entry, target="tflite", precision="int8", sizes=[[480, 640]]),
        "fire/fire.480x640.tflite": dict(entry, style="fire", target="tflite", precision="fp32",
                                         sizes=[[480, 640]]),
        "frost/frost.fp16.mlpackage": dict(entry, target="coreml", precision="fp16", sizes="dynamic"),
    }}


def test_every_onnx_and_tflite_file_is_selected_at_its_size():
    cases = {c.artifact: c for c in select_cases(_manifest(), (480, 640))}
    assert "frost/frost.fp16.mlpackage" not in cases and len(cases) == 6
    assert cases["frost/frost.onnx"].size == (480, 640) and cases["frost/frost.256x256.tflite"].size == (256, 256)


def test_ci_subset_is_one_fp32_and_one_int8_file_per_target_at_one_size():
    picked = select_cases(_manifest(), (480, 640), subset=True)
    assert [(c.target, c.precision, c.size) for c in picked] == [
        ("onnx", "fp32", (480, 640)), ("onnx", "int8", (480, 640)),
        ("tflite", "fp32", (480, 640)), ("tflite", "int8", (480, 640))]
    assert picked[2].artifact == "fire/fire.480x640.tflite"   # one style per target, the first by name
    assert [c.style for c in select_cases(_manifest(), (480, 640), styles=["fire"])] == ["fire"]


def test_a_pattern_picks_only_the_files_whose_manifest_key_matches_it():
    picked = select_cases(_manifest(), (480, 640), match="*.int8.*")
    assert [c.artifact for c in picked] == ["frost/frost.int8.480x640.tflite", "frost/frost.int8.onnx"]
    assert select_cases(_manifest(), (480, 640), match="*.int8.onnx", styles=["fire"]) == []


def test_photos_come_from_the_package_and_spread_over_it():
    photos = pick_photos(3)
    assert len({p.name for p in photos}) == 3 and all(p.parent.name == "calibration" for p in photos)


FLAKY_WORKER = """
import json, os, signal, sys
from pathlib import Path
from toolkit.bench.arm_worker import _write, done_path
jobs_path = Path(sys.argv[1]); done = {}
for job in json.loads(jobs_path.read_text()):
    name = job["artifact"]
    done[name] = {"ok": False, "error": "started, never finished (the process died here)", "started": True}
    _write(done_path(jobs_path), done)
    marker = jobs_path.parent / (name + ".tried")
    if name == "always" or (name == "once" and not marker.exists()):
        marker.touch()
        print("Illegal instruction", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGILL)
    done[name] = {"ok": True, "error": ""}
    _write(done_path(jobs_path), done)
"""


def test_a_runtime_that_dies_on_a_file_is_restarted_on_the_rest_and_the_file_retried_once(tmp_path):
    """A file the runtime died on once and then ran is ok and lists the crash; one it dies on every time fails with
    the exit; the files after either still run."""
    import sys

    worker = tmp_path / "worker.py"
    worker.write_text(FLAKY_WORKER)
    jobs = [{"artifact": name, "inputs": [], "outputs": []} for name in ("a", "once", "b", "always", "c")]
    done = run_worker([sys.executable, str(worker)], jobs, tmp_path / "jobs.json", timeout_s=60)
    assert [done[n]["ok"] for n in ("a", "once", "b", "always", "c")] == [True, True, True, False, True]
    assert len(done["once"]["crashes"]) == 1 and "exit -4" in done["once"]["crashes"][0]
    assert "crashes" not in done["a"]
    assert "died here" in done["always"]["error"] and done["always"]["error"].count("exit -4") == 2


def test_rerun_of_crashed_checks_replaces_only_them_and_keeps_their_crashes(tmp_path, monkeypatch):
    """`--rerun-crashed`: a check whose runtime died is run again on its own runtime and CPU; parity misses and
    passes are left as they were; a file re-exported since the report is refused."""
    import toolkit.bench.arm as arm

    out = tmp_path / "exported"
    (out / "frost").mkdir(parents=True)
    records = []
    for name, precision in (("frost.onnx", "fp32"), ("frost.int8.onnx", "int8")):
        (out / "frost" / name).write_bytes(b"x")
        records.append({"file": str(out / "frost" / name), "target": "onnx", "precision": precision,
                        "style": "frost", "sha256": "abc"})
    update_manifest(out, records)
    ok = _judged(0.0, 0.0)
    crashed = _result(cpu="cortex-a53")
    crashed.failures.append("does not run on aarch64: started, never finished [exit -4: Illegal instruction]")
    missed = _judged(0.05, 0.0, artifact="frost/frost.int8.onnx", precision="int8")
    assert not missed.passed and not missed.failures[0].startswith("does not run")
    calls = []

    def fake_run_parity(env, exported, cases, photos, cpus, workdir, sites, log):
        calls.append(([c.artifact for c in cases], cpus, sites))
        return [_judged(0.0, 0.0, cpu=cpus[0], primary=True)]

    monkeypatch.setattr(arm, "run_parity", fake_run_parity)
    merged = arm.rerun_crashed(None, out, [ok, crashed, missed], [], tmp_path / "w", log=lambda *_: None)
    assert calls == [(["frost/frost.onnx"], ["cortex-a53"], {"onnx": ("onnxruntime",)})]
    assert merged[0] is ok and merged[2] is missed
    assert merged[1].passed and merged[1].cpu == "cortex-a53"
    assert merged[1].crashes == ["earlier run: " + crashed.failures[0]]
    records[0]["sha256"] = "new"
    update_manifest(out, records[:1])
    with pytest.raises(UserError, match="re-exported since"):
        arm.rerun_crashed(None, out, [crashed], [], tmp_path / "w", log=lambda *_: None)


def test_manifest_fields_take_the_worst_cpu_and_list_other_runtimes():
    a76, a53 = _judged(0.0, 0.001), _judged(0.0, 0.01, cpu="cortex-a53")
    old = _judged(0.0, 0.0, primary=False, runtime="ai-edge-litert 1.4.0 aarch64")
    field = manifest_fields([a76, a53, old], "qemu-aarch64 7.2 user mode")["frost/frost.onnx"]
    assert field["checked"] and field["cpus"] == ["cortex-a53", "cortex-a76"]
    assert field["psnr_db_vs_x86"] == round(a53.vs_x86.psnr_db, 2) < round(a76.vs_x86.psnr_db, 2)
    assert field["runtime"] == "onnxruntime 1.32.0 aarch64" and field["passed"] is False
    assert field["also"]["ai-edge-litert 1.4.0 aarch64"]["passed"] is True
    assert "crashes" not in field
    a53.crashes = ["exit -4: Illegal instruction"]
    field = manifest_fields([a76, a53], "qemu-aarch64 7.2 user mode")["frost/frost.onnx"]
    assert field["crashes"] == ["cortex-a53: exit -4: Illegal instruction"]
    assert "ran after 1 crash(es)" in a53.summary()
    report = markdown_report([a76, a53], "env", 1.0)
    assert "1 ran only after the runtime died on them first" in report and "(after 1 crash(es): exit -4" in report


def test_manifest_update_writes_only_the_aarch64_field_of_unchanged_files(tmp_path):
    out = tmp_path / "exported"
    (out / "frost").mkdir(parents=True)
    for name in ("frost.onnx", "frost.int8.onnx"):
        (out / "frost" / name).write_bytes(b"x")
    update_manifest(out, [{"file": str(out / "frost" / "frost.onnx"), "sha256": "abc", "parity": {"p": 1}},
                          {"file": str(out / "frost" / "frost.int8.onnx"), "sha256": "new", "bench": {"fps": 9}}])
    before = read_manifest(out)["artifacts"]
    fields = manifest_fields([_judged(0.0, 0.0), _judged(0.0, 0.0, artifact="frost/frost.int8.onnx",
                                                         precision="int8")], "qemu")
    logged = []
    assert update_manifest_field(out, fields, log=logged.append) == ["frost/frost.onnx"]
    after = read_manifest(out)["artifacts"]
    assert after["frost/frost.onnx"]["aarch64"]["psnr_db_vs_x86"] is None        # identical outputs
    assert {k: v for k, v in after["frost/frost.onnx"].items() if k != "aarch64"} == before["frost/frost.onnx"]
    assert after["frost/frost.int8.onnx"] == before["frost/frost.int8.onnx"]      # re-exported since: untouched
    assert "frost/frost.int8.onnx changed since" in logged[0]


def test_manifest_step_runs_later_from_the_saved_report(tmp_path, capsys):
    out = tmp_path / "exported"
    (out / "frost").mkdir(parents=True)
    (out / "frost" / "frost.onnx").write_bytes(b"x")
    update_manifest(out, [{"file": str(out / "frost" / "frost.onnx"), "sha256": "abc"}])
    env = ArmEnv("qemu", Path("py"), Path("root"), Path("site"), {"onnxruntime": "onnxruntime==1.32.0"},
                 "qemu-aarch64 version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)")
    write_reports([_judged(0.0, 0.0)], None, tmp_path / "arm.json", env, [Path("a.jpg")], 1.0)
    assert main(["--exported", str(out), "--update-manifest-from", str(tmp_path / "arm.json")]) == 0
    field = read_manifest(out)["artifacts"]["frost/frost.onnx"]["aarch64"]
    assert field["emulator"] == "qemu-aarch64 7.2.22 user mode" and field["passed"] and "1 entries" in \
        capsys.readouterr().out
    (tmp_path / "bad.json").write_text("{}")
    assert main(["--exported", str(out), "--update-manifest-from", str(tmp_path / "bad.json")]) == 2


def test_x86_distance_to_torch_is_reported_beside_aarch64s():
    r = _judged(0.0, 0.01)
    assert r.x86_vs_torch is not None and r.x86_vs_torch.psnr_db < r.vs_torch.psnr_db


def test_aarch64_runtimes_are_the_x86_pins():
    script = (REPO / ".ci" / "arm_parity.sh").read_text()
    pyproject = (REPO / "pyproject.toml").read_text()
    for dist in ("onnxruntime", "ai-edge-litert"):
        x86 = re.search(rf'"{dist}==([\w.]+)"', pyproject).group(1)
        assert f'"{"litert" if dist != "onnxruntime" else dist} {dist}=={x86}"' in script


# --- the real thing: needs qemu and the sysroot built by .ci/arm_parity.sh -----------------------------------------

ENV_JSON = REPO / ".cache" / "arm" / "env.json"


def _arm_env() -> ArmEnv:
    if not (shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")):
        pytest.skip("qemu-aarch64 is not installed (bash .ci/arm_parity.sh --setup-only installs it, as root)")
    if not ENV_JSON.is_file():
        pytest.skip(f"{ENV_JSON.relative_to(REPO)} is absent: build the arm64 sysroot with "
                    "`bash .ci/arm_parity.sh --setup-only`")
    return ArmEnv.load(ENV_JSON)


def test_int8_files_run_on_aarch64_kernels_within_tolerance(tmp_path):
    env = _arm_env()
    exported = REPO / "exported"
    manifest = read_manifest(exported)
    cases = [c for c in select_cases(manifest, (256, 256), subset=True) if c.precision == "int8"]
    if not cases:
        pytest.skip("exported/manifest.json lists no int8 ONNX / TFLite file at 256x256")
    results = run_parity(env, exported, cases, pick_photos(1), ["cortex-a76"], tmp_path,
                         sites={"onnx": ("onnxruntime",), "tflite": ("litert",)}, log=lambda *_: None)
    assert len(results) == len(cases)
    assert all(r.passed for r in results), [r.summary() for r in results]
    assert {r.runtime.split()[0] for r in results} <= {"onnxruntime", "ai-edge-litert"}
    done = json.loads((tmp_path / "jobs" / "onnxruntime.cortex-a76.done.json").read_text())
    assert {d["machine"] for d in done.values()} == {"aarch64"}


# --- localising where aarch64 and x86 part (toolkit.bench.arm_localize) ---------------------------------------------

def _qdq_relu_onnx(path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    scale = helper.make_tensor("s", TensorProto.FLOAT, [], [0.01])
    zero = helper.make_tensor("z", TensorProto.INT8, [], [0])
    nodes = [helper.make_node("QuantizeLinear", ["image", "s", "z"], ["q0"], name="q_in"),
             helper.make_node("DequantizeLinear", ["q0", "s", "z"], ["d0"], name="dq_in"),
             helper.make_node("Relu", ["d0"], ["r"], name="act"),
             helper.make_node("QuantizeLinear", ["r", "s", "z"], ["q1"], name="q_act"),
             helper.make_node("DequantizeLinear", ["q1", "s", "z"], ["stylized"], name="dq_out")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("stylized", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [scale, zero])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))


def test_int8_onnx_copy_exposes_each_quantised_activation_named_by_its_op(tmp_path):
    from toolkit.bench.arm_localize import exposed_copy

    _qdq_relu_onnx(tmp_path / "m.onnx")
    order = exposed_copy(tmp_path / "m.onnx", tmp_path / "m.exposed.onnx")
    assert order == [("q0", "input image"), ("q1", "Relu act"), ("stylized", "graph output stylized")]
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(tmp_path / "m.exposed.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["stylized", "q0", "q1"]


def test_divergence_is_named_at_the_first_op_that_differs_and_where_it_grows():
    from toolkit.bench.arm_localize import compare_tensors, summarise

    x86 = {"a": np.zeros(100, np.int8), "b": np.zeros(100, np.int8), "c": np.zeros(100, np.int8)}
    arm = {"a": np.zeros(100, np.int8), "b": np.r_[np.ones(2), np.zeros(98)].astype(np.int8),
           "c": np.r_[3 * np.ones(40), np.zeros(60)].astype(np.int8)}
    diffs = compare_tensors(x86, arm, [("a", "Conv c1"), ("b", "Relu r1"), ("c", "Conv c2")])
    assert [d.differing for d in diffs] == [0.0, 0.02, 0.4] and diffs[2].max_abs == 3
    text = summarise(diffs)
    assert text.startswith("first differs at Relu r1") and "grows most at Conv c2" in text and "max 3 LSB" in text
    assert summarise(diffs[:1]) == "every exposed tensor is identical on aarch64 and x86"


def test_bench_shows_the_aarch64_verdicts_of_the_manifest_as_parity_only_rows(tmp_path):
    from toolkit.bench.arm import manifest_rows

    out = tmp_path / "exported"
    (out / "frost").mkdir(parents=True)
    records = [{"file": str(out / "frost" / name), "sha256": "abc", "style": "frost", "target": "onnx",
                "precision": precision} for name, precision in (("frost.onnx", "fp32"), ("frost.int8.onnx", "int8"))]
    for r in records:
        Path(r["file"]).write_bytes(b"x")
    update_manifest(out, records)
    update_manifest_field(out, manifest_fields([_judged(0.0, 0.0), _judged(0.1, 0.0, artifact="frost/frost.int8.onnx",
                                                                           precision="int8")], "qemu"), log=print)
    rows = manifest_rows(out, ["frost"], ("onnx",), ("fp32", "int8"))
    assert [(r.precision, r.status, r.provider, r.fps) for r in rows] == [
        ("int8", "error", PROVIDER, None), ("fp32", "unavailable", PROVIDER, None)]
    assert "parity only" in rows[1].reason and "dB vs torch" in rows[0].reason
    assert manifest_rows(out, ["frost"], ("tflite",), ("fp32", "int8")) == []
    assert manifest_rows(out, ["fire"], ("onnx",), ("fp32", "int8")) == []
    update_manifest(out, [dict(records[0], sha256="re-exported")])      # its aarch64 verdict no longer applies
    assert [r.precision for r in manifest_rows(out, ["frost"], ("onnx",), ("fp32", "int8"))] == ["int8"]
