"""Latency: one protocol (timing), rows out (rows); reports and CI gates are views of the rows.

    from toolkit.bench import Bench, BenchConfig, Subject
    rows = Bench(BenchConfig(targets=("onnx",), sizes=((480, 640),)), workdir).run([Subject("nano", "arch", model)])
"""

from toolkit.bench.harness import PROVIDERS, REFERENCE_ARCH, TARGETS, Bench, BenchConfig, Subject
from toolkit.bench.host import HostInfo, host_info, library_versions
from toolkit.bench.rows import LatencyRow, measure
from toolkit.bench.timing import time_call

__all__ = ["PROVIDERS", "REFERENCE_ARCH", "TARGETS", "Bench", "BenchConfig", "HostInfo", "LatencyRow", "Subject",
           "host_info", "library_versions", "measure", "time_call"]
