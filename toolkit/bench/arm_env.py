"""The emulated arm64 environment and how a job runs in it: the qemu CPU models, the Python that .ci/arm_parity.sh
builds, the photos every run feeds, and the worker process (toolkit/bench/arm_worker.py) on x86 or under qemu.

Both the parity run (toolkit.bench.arm) and the op-by-op localiser (toolkit.bench.arm_localize) stand on this, so
neither has to import the other's helpers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from toolkit.errors import UserError

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve().with_name("arm_worker.py")
CALIBRATION_DIR = REPO / "toolkit" / "calibration"

# qemu -cpu model -> the /proc/cpuinfo its runtimes' cpuinfo library parses (under qemu it would otherwise read the
# x86 host's and onnxruntime segfaults at import). ISA features come from qemu's HWCAP for the model; the MIDR
# (implementer/part) picks the micro-kernels tuned for that core.
ARM_CPUS: dict[str, dict] = {
    # phones' big cores since 2019 (Snapdragon 855+): NEON, fp16 arithmetic, int8 dot product (SDOT)
    "cortex-a76": {"part": "0xd0b", "variant": "0x4", "revision": "1",
                   "features": "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm "
                               "lrcpc dcpop asimddp ssbs"},
    # little cores and older phones: plain NEON, no dot product, so int8 takes other kernels
    "cortex-a53": {"part": "0xd03", "variant": "0x0", "revision": "4",
                   "features": "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"},
}


def cpuinfo_text(cpu: str, processors: int) -> str:
    spec = ARM_CPUS[cpu]
    block = ("processor\t: {i}\nBogoMIPS\t: 50.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
             "CPU architecture: 8\nCPU variant\t: {variant}\nCPU part\t: {part}\nCPU revision\t: {revision}\n\n")
    return "".join(block.format(i=i, **spec) for i in range(processors))


@dataclass(frozen=True)
class ArmEnv:
    """The emulated arm64 Python built by .ci/arm_parity.sh (read from its env.json)."""
    qemu: str
    python: Path          # the arm64 interpreter inside the sysroot
    sysroot: Path
    site_dir: Path
    sites: dict           # site name -> pinned wheels ("onnxruntime==1.32.0")
    qemu_version: str = ""

    @staticmethod
    def load(path: str | Path) -> "ArmEnv":
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path} does not exist; build the aarch64 environment with `bash .ci/arm_parity.sh "
                            "--setup-only`")
        data = json.loads(path.read_text())
        root = REPO  # paths are relative to the repo root unless ARM_CACHE was absolute
        qemu = data.get("qemu") if data.get("qemu") and Path(data["qemu"]).exists() else \
            (shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64"))
        if not qemu:
            raise UserError("qemu-aarch64 is not installed; `bash .ci/arm_parity.sh --setup-only` installs it")
        return ArmEnv(qemu=qemu, python=root / data["python"], sysroot=root / data["sysroot"],
                      site_dir=root / data["site_dir"], sites=dict(data["sites"]),
                      qemu_version=data.get("qemu_version", ""))

    def runtime_label(self, site: str) -> str:
        """'onnxruntime 1.32.0 aarch64' for a site's pinned runtime wheel."""
        pins = [p for p in self.sites[site].split() if not p.startswith("numpy")]
        name, _, version = (pins or [site])[0].partition("==")
        return f"{name} {version} aarch64".replace("  ", " ")

    def command(self, site: str, cpu: str, argv: Sequence[str]) -> list[str]:
        """qemu-aarch64 running the sysroot's python with numpy + one runtime site + this repo on its path."""
        path = os.pathsep.join(str(p) for p in (self.site_dir / "base", self.site_dir / site, REPO))
        libs = "/lib/aarch64-linux-gnu:/usr/lib/aarch64-linux-gnu"
        return [self.qemu, "-cpu", cpu, "-L", str(self.sysroot), "-E", f"LD_LIBRARY_PATH={libs}",
                "-E", f"PYTHONPATH={path}", "-E", "PYTHONDONTWRITEBYTECODE=1", str(self.python), *argv]

    def prepare_cpu(self, cpu: str) -> None:
        """qemu -L serves <sysroot>/proc/cpuinfo in place of the host's."""
        (self.sysroot / "proc").mkdir(exist_ok=True)
        (self.sysroot / "proc" / "cpuinfo").write_text(cpuinfo_text(cpu, os.cpu_count() or 1))


def pick_photos(count: int, folder: Path = CALIBRATION_DIR) -> list[Path]:
    """`count` photos spread over the package's calibration set (so it works without ../shared)."""
    photos = sorted(folder.glob("*.jpg"))
    if len(photos) < count:
        raise UserError(f"{folder} has {len(photos)} photos, {count} wanted; pass --photos {len(photos)} or fewer")
    return [photos[i * len(photos) // count] for i in range(count)]


def run_worker(command: list[str], jobs: list[dict], jobs_path: Path, timeout_s: float, retries: int = 1) -> dict:
    """{artifact: result} from arm_worker.py run by `command` (x86 python or qemu) on `jobs`; every job has an
    entry. A process that dies on a file (LiteRT under the emulated A53 now and then dies with SIGILL on a file that
    ran the time before) is started again on what it never finished: the file it died on gets `retries` more tries
    and, when one runs, its entry lists the crashes ("crashes"); one that dies every time carries the exit code and
    last line, and the files after it still run."""
    done: dict = {}
    pending, crashes = list(jobs), {}
    while pending:
        batch, rc, tail = _run_once(command, pending, jobs_path, timeout_s)
        died_on = next((j["artifact"] for j in pending if batch.get(j["artifact"], {}).get("died")), None)
        for job in pending:
            entry = batch.get(job["artifact"])
            if entry is not None and not entry.get("died"):
                done[job["artifact"]] = dict(entry, **({"crashes": crashes[job["artifact"]]}
                                                       if job["artifact"] in crashes else {}))
        if died_on is None or rc == "timeout":  # finished, or stuck: what never ran says why
            for job in pending:
                error = batch.get(job["artifact"], {}).get("error", "not reached (the process died before it)")
                done.setdefault(job["artifact"], {"ok": False, "error": error + (f" [{rc}: {tail}]" if rc else "")})
            break
        crashes.setdefault(died_on, []).append(f"{rc}: {tail}")
        rest = [j for j in pending if j["artifact"] not in done]
        if len(crashes[died_on]) > retries:
            done[died_on] = {"ok": False, "error": "started, never finished (the process died here)"
                                                   f" [{'; '.join(crashes[died_on])}]"}
            rest = [j for j in rest if j["artifact"] != died_on]
        pending = rest
    return done


def _run_once(command: list[str], jobs: list[dict], jobs_path: Path, timeout_s: float) -> tuple[dict, str, str]:
    """One worker process on `jobs`: (its done.json, "" or "exit N" or "timeout", its last output line on a failure).
    The entry of the file it was in when it died is marked "died"."""
    from toolkit.bench.arm_worker import done_path

    jobs_path.parent.mkdir(parents=True, exist_ok=True)
    jobs_path.write_text(json.dumps(jobs, indent=1))
    done_path(jobs_path).unlink(missing_ok=True)
    try:
        proc = subprocess.run(command + [str(jobs_path)], capture_output=True, text=True, timeout=timeout_s)
        rc = f"exit {proc.returncode}" if proc.returncode else ""
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] if proc.returncode else []
    except subprocess.TimeoutExpired:
        rc, tail = "timeout", [f"timed out after {timeout_s:.0f} s"]
    done = json.loads(done_path(jobs_path).read_text()) if done_path(jobs_path).is_file() else {}
    for entry in done.values():
        if entry.get("started") and rc:
            entry["died"] = True
    return done, rc, (tail[0][:200] if tail else "")
