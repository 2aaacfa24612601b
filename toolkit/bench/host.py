"""What machine a row was measured on: CPU model, ISA flags, an estimated peak GMAC/s, and library versions.

Reports print this beside every table so a number is never read without its host, and the peak estimate turns a
GMAC/s figure into a fraction of what the core could do.
"""

from __future__ import annotations

import dataclasses
import functools
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
             "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "sve", "sve2", "i8mm", "bf16")


@dataclass(frozen=True)
class HostInfo:
    cpu_model: str
    vendor: str
    cpu_family: str
    cores: int
    isa: Tuple[str, ...]
    clock_ghz: Optional[float]
    fp32_macs_per_cycle: int        # per core, estimated from the ISA
    int8_macs_per_cycle: int
    platform: str
    python: str

    @property
    def peak_fp32_gmacs(self) -> Optional[float]:
        """Estimated peak fp32 GMAC/s of ONE core (FMA width x FMA pipes x clock)."""
        return self.clock_ghz * self.fp32_macs_per_cycle if self.clock_ghz else None

    @property
    def peak_int8_gmacs(self) -> Optional[float]:
        return self.clock_ghz * self.int8_macs_per_cycle if self.clock_ghz else None

    def peak_gmacs(self, precision: str, threads: int) -> Optional[float]:
        per_core = self.peak_int8_gmacs if precision.startswith("int8") else self.peak_fp32_gmacs
        return per_core * min(threads, self.cores) if per_core else None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(peak_fp32_gmacs_per_core=self.peak_fp32_gmacs, peak_int8_gmacs_per_core=self.peak_int8_gmacs)
        return d


def _cpuinfo(text: str) -> dict:
    first: dict = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            first.setdefault(k.strip(), v.strip())
    return first


def macs_per_cycle(vendor: str, family: str, flags: set) -> tuple[int, int]:
    """(fp32, int8) multiply-accumulates per cycle per core, from the ISA; an estimate, documented as such.

    fp32: FMA lanes x 2 FMA pipes. AVX-512 on AMD Zen 4 (family 25) runs on 256-bit pipes (double-pumped), so it
    counts as 2 x 8 lanes; Intel server cores and Zen 5 have two 512-bit FMA pipes (2 x 16). int8: VNNI dot
    products do 4 MACs per 32-bit lane per pipe; without VNNI, u8 x s8 via pmaddubsw counts as 2 per lane.
    """
    if "avx512f" in flags:
        lanes = 8 if (vendor == "AuthenticAMD" and family == "25") else 16
    elif "avx2" in flags and "fma" in flags:
        lanes = 8
    elif "asimd" in flags:   # ARM NEON: 2 x 128-bit FMA pipes on most big cores
        lanes = 4
    elif "avx" in flags:
        lanes = 4             # separate mul and add pipes, 8 lanes each, no FMA: ~half
    else:
        lanes = 2
    fp32 = 2 * lanes
    vnni = flags & {"avx512_vnni", "avx_vnni", "asimddp", "i8mm"}
    int8 = fp32 * (4 if vnni else 2)
    return fp32, int8


def _clock_ghz(info: dict) -> Optional[float]:
    for path in ("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq",
                 "/sys/devices/system/cpu/cpu0/cpufreq/base_frequency"):
        try:
            return int(Path(path).read_text().strip()) / 1e6
        except (OSError, ValueError):
            pass
    try:
        return float(info["cpu MHz"]) / 1000.0
    except (KeyError, ValueError):
        return None


@functools.lru_cache(maxsize=1)
def host_info() -> HostInfo:
    """CPU model and ISA flags from /proc/cpuinfo (Linux); platform and python from the standard library."""
    import os

    try:
        info = _cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        info = {}
    flags = set((info.get("flags") or info.get("Features") or "").split())
    vendor = info.get("vendor_id", info.get("CPU implementer", ""))
    family = info.get("cpu family", "")
    fp32, int8 = macs_per_cycle(vendor, family, flags)
    return HostInfo(cpu_model=info.get("model name") or platform.processor() or platform.machine(),
                    vendor=vendor, cpu_family=family, cores=len(os.sched_getaffinity(0)),
                    isa=tuple(f for f in ISA_FLAGS if f in flags), clock_ghz=_clock_ghz(info),
                    fp32_macs_per_cycle=fp32, int8_macs_per_cycle=int8, platform=platform.platform(),
                    python=platform.python_version())


def library_versions() -> dict:
    """Versions of the libraries a row may depend on (absent ones are omitted), read without importing them."""
    from importlib import metadata

    out = {}
    for dist in ("toolkit", "torch", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "ai-edge-litert",
                 "litert-torch", "coremltools"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out
