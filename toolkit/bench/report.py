"""Views of latency rows: JSON (rows + host + versions), a Markdown table, a PNG plot of fps vs size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

from toolkit.bench.host import host_info, library_versions
from toolkit.bench.rows import LatencyRow
from toolkit.fsutil import atomic_path, write_json

REPORT_FORMAT = "toolkit-latency/1"


def peak_fraction(row: LatencyRow) -> float | None:
    """Achieved GMAC/s over the host's estimated peak for this precision and thread count."""
    peak = host_info().peak_gmacs(row.precision, row.threads)
    return row.gmacs_per_s / peak if row.gmacs_per_s and peak else None


def to_json(rows: Sequence[LatencyRow], **extra) -> dict:
    host = host_info()
    return {"format": REPORT_FORMAT, "host": host.to_dict(), "versions": library_versions(),
            "rows": [dict(r.to_dict(), peak_fraction=peak_fraction(r)) for r in rows], **extra}


def rows_from_json(data: dict) -> list[LatencyRow]:
    return [LatencyRow.from_dict(r) for r in data["rows"]]


def write_json_report(rows: Sequence[LatencyRow], dest: str | Path, **extra) -> Path:
    write_json(dest, to_json(rows, **extra))
    return Path(dest)


def _fmt(value, spec: str, empty: str = "—") -> str:
    return empty if value is None else format(value, spec)


COLUMNS = ("subject", "target", "precision", "provider", "threads", "size", "status", "p50 ms", "p90 ms", "fps",
           "CPU ms",
           "GMAC", "GMAC/s", "% peak", "KiB", "x vs johnson2016", "reason")


def markdown_table(rows: Iterable[LatencyRow]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        frac = peak_fraction(r)
        cells = (r.subject, r.target, r.precision, r.provider, str(r.threads), r.size, r.status,
                 _fmt(r.p50_ms, ".1f"), _fmt(r.p90_ms, ".1f"), _fmt(r.fps, ".1f"), _fmt(r.cpu_p50_ms, ".1f"),
                 _fmt(r.macs / 1e9 if r.macs else None, ".3f"), _fmt(r.gmacs_per_s, ".1f"),
                 _fmt(frac * 100 if frac is not None else None, ".1f"),
                 _fmt(r.bytes / 1024 if r.bytes else None, ".0f"), _fmt(r.speedup_vs_reference, ".1f"),
                 r.reason.replace("|", "/"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def host_markdown() -> str:
    h = host_info()
    versions = ", ".join(f"{k} {v}" for k, v in library_versions().items())
    peak = f"{h.peak_fp32_gmacs:.1f} fp32 / {h.peak_int8_gmacs:.1f} int8 GMAC/s per core" if h.clock_ghz else "n/a"
    return (f"Host: {h.cpu_model} ({h.vendor} family {h.cpu_family}), {h.cores} cores, "
            f"{_fmt(h.clock_ghz, '.2f')} GHz, ISA {' '.join(h.isa)}; estimated peak {peak} "
            f"({h.fp32_macs_per_cycle} fp32 / {h.int8_macs_per_cycle} int8 MAC/cycle).  \n"
            f"Platform: {h.platform}, Python {h.python}. Libraries: {versions}.\n")


def write_markdown(rows: Sequence[LatencyRow], dest: str | Path, title: str = "Latency") -> Path:
    text = f"# {title}\n\n{host_markdown()}\n{markdown_table(rows)}"
    with atomic_path(dest) as tmp:
        tmp.write_text(text)
    return Path(dest)


def write_plot(rows: Sequence[LatencyRow], dest: str | Path, title: str = "fps vs input size") -> Path:
    """fps (log scale) against megapixels, one line per subject x target x precision x provider x threads."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict = {}
    for r in rows:
        if r.status == "ok":
            key = f"{r.subject} {r.target} {r.precision} {r.provider} {r.threads}t"
            series.setdefault(key, []).append((r.height * r.width / 1e6, r.fps, r.size))
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    try:
        for label, points in sorted(series.items()):
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
            for mp, fps, size in points:
                ax.annotate(size, (mp, fps), fontsize=6, xytext=(2, 2), textcoords="offset points")
        if series:
            ax.set_yscale("log")
            ax.legend(fontsize=7, loc="best")
        else:
            ax.text(0.5, 0.5, "no row with status ok", ha="center", va="center", transform=ax.transAxes)
        ax.axhline(20, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xlabel("input size (megapixels)")
        ax.set_ylabel("frames per second (from p50)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        with atomic_path(dest) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return Path(dest)


def write_reports(rows: Sequence[LatencyRow], json_path=None, md_path=None, plot_path=None, **extra) -> list[Path]:
    written = []
    if json_path:
        written.append(write_json_report(rows, json_path, **extra))
    if md_path:
        written.append(write_markdown(rows, md_path))
    if plot_path:
        written.append(write_plot(rows, plot_path))
    return written


def dumps(rows: Sequence[LatencyRow]) -> str:
    return json.dumps(to_json(rows), indent=2, sort_keys=True)
