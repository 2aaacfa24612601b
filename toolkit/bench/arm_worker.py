"""Run exported files on saved inputs and save their outputs: the one piece of aarch64 parity that runs both on x86
and, under qemu, on the emulated arm64 Python, so both sides go through the same code and the same Runners
(toolkit.runtime: numpy + the runtime, no torch).

    python -m toolkit.bench.arm_worker JOBS.json

JOBS.json is a list of {"artifact": path, "inputs": [.npy], "outputs": [.npy]}; with "all_outputs": true (an ONNX
file, see toolkit.bench.arm_localize) every graph output of the first input is saved as one .npz. After each
artifact the worker
rewrites JOBS.done.json ({artifact: {"ok", "error", "runtime", "version"}}), so a runtime that crashes the process
(a segfault in a kernel) still leaves what finished and names the artifact it died on.
"""

from __future__ import annotations

import json
import platform
import sys
from importlib import metadata
from pathlib import Path

import numpy as np

RUNTIME_DIST = {"onnxruntime": "onnxruntime", "litert": "ai-edge-litert"}


def done_path(jobs_path: Path) -> Path:
    return jobs_path.with_name(jobs_path.stem + ".done.json")


def run_jobs(jobs_path: Path) -> dict:
    from toolkit.runtime import load_runner

    jobs = json.loads(jobs_path.read_text())
    done: dict = {}
    for job in jobs:
        artifact = job["artifact"]
        done[artifact] = {"ok": False, "error": "started, never finished (the process died here)", "started": True}
        _write(done_path(jobs_path), done)
        try:
            if job.get("all_outputs"):
                done[artifact] = save_all_outputs(artifact, job["inputs"][0], job["outputs"][0])
                _write(done_path(jobs_path), done)
                continue
            runner = load_runner(artifact, threads=1)
            for src, dest in zip(job["inputs"], job["outputs"]):
                np.save(dest, runner(np.load(src)))
            dist = RUNTIME_DIST.get(runner.name, runner.name)
            done[artifact] = {"ok": True, "error": "", "runtime": runner.name, "version": metadata.version(dist),
                              "machine": platform.machine()}
        except Exception as exc:  # every failure is reported per artifact; the host judges and names it
            done[artifact] = {"ok": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
        _write(done_path(jobs_path), done)
    return done


def save_all_outputs(artifact: str, src: str, dest: str) -> dict:
    """Every output of an ONNX file (one input), as the CPU provider computes them at 1 thread, into one .npz."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(artifact, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, {session.get_inputs()[0].name: np.load(src)})
    np.savez(dest, **dict(zip(names, values)))
    return {"ok": True, "error": "", "runtime": "onnxruntime", "version": ort.__version__,
            "machine": platform.machine()}


def _write(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m toolkit.bench.arm_worker JOBS.json")
    results = run_jobs(Path(sys.argv[1]))
    sys.exit(0 if all(r["ok"] for r in results.values()) else 1)
