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


def run_worker(command: list[str], jobs: list[dict], jobs_path: Path, timeout_s: float) -> dict:
    """{artifact: result} from arm_worker.py run by `command` (x86 python or qemu) on `jobs`; every job has an
    entry, and one the process never finished carries the exit code or timeout and its last line."""
    from toolkit.bench.arm_worker import done_path

    jobs_path.parent.mkdir(parents=True, exist_ok=True)
    jobs_path.write_text(json.dumps(jobs, indent=1))
    done_path(jobs_path).unlink(missing_ok=True)
    try:
        proc = subprocess.run(command + [str(jobs_path)], capture_output=True, text=True, timeout=timeout_s)
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] if proc.returncode else []
    except subprocess.TimeoutExpired:
        proc, tail = None, [f"timed out after {timeout_s:.0f} s"]
    done = json.loads(done_path(jobs_path).read_text()) if done_path(jobs_path).is_file() else {}
    for job in jobs:
        entry = done.setdefault(job["artifact"], {"ok": False, "error": "not reached (the process died before it)"})
        if not entry["ok"] and tail:
            rc = f"exit {proc.returncode}" if proc else "timeout"
            entry["error"] += f" [{rc}: {tail[0][:200]}]"
    return done
