"""aarch64 parity: the shipped ONNX / TFLite files run on the arm64 builds of onnxruntime (CPU/NEON kernels) and
LiteRT (XNNPACK) under qemu user-mode emulation, and each output is compared with the same file run on x86 and with
the torch model it was exported from, judged by toolkit.parity's tolerance table (target x precision).

    bash .ci/arm_parity.sh --all             # builds the emulated Python (.cache/arm/), then runs this module
    python -m toolkit.bench.arm --env .cache/arm/env.json --ci [--update-manifest] [--rows]

Emulated time means nothing, so results are parity only: as bench rows they carry no fps (status "unavailable",
the parity in the reason) and a failing file is an "error" row naming its PSNR. `--update-manifest` writes one
field, "aarch64", into each checked entry of exported/manifest.json (under the manifest lock), and only when the
file's sha256 still matches the entry.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from toolkit.bench.arm_env import ARM_CPUS, CALIBRATION_DIR, WORKER, ArmEnv, pick_photos, run_worker
from toolkit.bench.arm_localize import localize, summarise
from toolkit.errors import UserError

PROVIDER = "aarch64 (emulated)"

# Which aarch64 site (.cache/arm/site/<name>, built by .ci/arm_parity.sh) runs which target. The primary site is
# judged and written to the manifest; the others are extra answers (does an older LiteRT run these files?).
SITES: dict[str, tuple[str, ...]] = {"onnx": ("onnxruntime",), "tflite": ("litert", "litert-1.4.0")}
NO_RUN = "does not run on aarch64"  # a check whose runtime died: no output, nothing judged


# --- what is checked ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    artifact: str         # path relative to the export folder, as keyed in the manifest
    style: str
    target: str
    precision: str
    size: tuple           # (H, W) it runs at
    sha256: str = ""


def select_cases(manifest: dict, size: tuple, subset: bool = False, styles: Sequence[str] = (),
                 match: str = "") -> list[Case]:
    """Every ONNX / TFLite entry (dynamic files at `size`, fixed ones at their own), of `styles` and whose manifest
    key matches the shell pattern `match` where given; with `subset`, one fp32 and one int8 file per target, of the
    first style, at `size`."""
    cases = []
    for key, entry in sorted(manifest["artifacts"].items()):
        if (entry.get("target") not in SITES or (styles and entry.get("style") not in styles)
                or (match and not fnmatch.fnmatchcase(key, match))):
            continue
        fixed = entry.get("sizes")
        run_size = tuple(fixed[0]) if isinstance(fixed, list) and fixed else tuple(size)
        cases.append(Case(key, entry.get("style", ""), entry["target"], entry["precision"], run_size,
                          entry.get("sha256", "")))
    if not subset:
        return cases
    picked: list[Case] = []
    for target in SITES:
        for precision in ("fp32", "int8"):
            fits = [c for c in cases if c.target == target and c.precision == precision and c.size == tuple(size)]
            if fits:
                picked.append(min(fits, key=lambda c: c.style))
    return picked


# --- comparing ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Agreement:
    """Worst agreement over the photos of one file's outputs with a reference."""
    psnr_db: float
    max_abs: float

    @staticmethod
    def of(outputs: Sequence[np.ndarray], references: Sequence[np.ndarray]) -> "Agreement":
        from toolkit.parity import psnr

        pairs = list(zip(outputs, references))
        if any(a.shape != b.shape for a, b in pairs):
            shapes = {(tuple(a.shape), tuple(b.shape)) for a, b in pairs if a.shape != b.shape}
            raise UserError(f"output shape differs from the reference: {sorted(shapes)}")
        return Agreement(psnr_db=min(psnr(a, b) for a, b in pairs),
                         max_abs=max(float(np.max(np.abs(a.astype(np.float64) - b))) for a, b in pairs))

    def misses(self, tolerance) -> list[str]:
        """What breaks a toolkit.parity.Tolerance, with the numbers."""
        out = []
        if not math.isfinite(self.max_abs):
            return ["non-finite outputs"]
        if tolerance.max_abs is not None and self.max_abs > tolerance.max_abs:
            out.append(f"max_abs {self.max_abs:.3g} > {tolerance.max_abs:g} (PSNR {self.psnr_db:.1f} dB)")
        if tolerance.psnr_db is not None and self.psnr_db < tolerance.psnr_db:
            out.append(f"PSNR {self.psnr_db:.1f} dB < {tolerance.psnr_db:g} dB")
        return out

    def to_dict(self) -> dict:
        return {"psnr_db": _db(self.psnr_db), "max_abs": self.max_abs}


def _db(value: float):
    """JSON-safe dB: identical outputs (inf) are written as null and shown as 'identical'."""
    return round(value, 2) if math.isfinite(value) else None


def _fmt_db(value) -> str:
    return "identical" if value is None or value == math.inf else f"{value:.1f} dB"


@dataclass
class ArmResult:
    case: Case
    site: str
    runtime: str          # "onnxruntime 1.32.0 aarch64"
    cpu: str
    photos: int
    primary: bool
    tolerance: str = ""
    vs_x86: Agreement | None = None
    vs_torch: Agreement | None = None     # the deploy-form torch model the file was exported from (judged)
    vs_trained: Agreement | None = None   # the trained checkpoint itself (deploy rewrites differ at a 2-px border)
    x86_vs_torch: Agreement | None = None  # not judged: shows whether aarch64 is closer to torch than x86 is
    failures: list = field(default_factory=list)
    crashes: list = field(default_factory=list)  # runs of the process that died on this file before one finished

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def x86_misses_too(self) -> bool:
        """The same file misses its tolerance vs torch on x86 as well: the export, not the aarch64 kernels."""
        from toolkit.parity import tolerance_for

        tol = tolerance_for(self.case.target, self.case.precision)
        return self.x86_vs_torch is not None and bool(self.x86_vs_torch.misses(tol))

    def verdict(self) -> str:
        if self.passed:
            return "pass"
        why = "; ".join(self.failures)
        if self.x86_misses_too:
            return f"FAIL, on x86 too (x86 vs torch {_fmt_db(_db(self.x86_vs_torch.psnr_db))}): {why}"
        return f"FAIL: {why}"

    def summary(self) -> str:
        nums = ", ".join(f"{name} {_fmt_db(_db(a.psnr_db)) if a else 'n/a'}"
                         for name, a in (("vs x86", self.vs_x86), ("vs torch", self.vs_torch)))
        crashed = f" (ran after {len(self.crashes)} crash(es): {'; '.join(self.crashes)})" if self.crashes else ""
        return f"{self.case.artifact} [{self.runtime}, {self.cpu}]: {nums} -> {self.verdict()}{crashed}"

    def to_dict(self) -> dict:
        d = {"artifact": self.case.artifact, "style": self.case.style, "target": self.case.target,
             "precision": self.case.precision, "size": f"{self.case.size[0]}x{self.case.size[1]}",
             "sha256": self.case.sha256, "site": self.site, "runtime": self.runtime, "cpu": self.cpu,
             "photos": self.photos, "primary": self.primary, "tolerance": self.tolerance, "passed": self.passed,
             "failures": list(self.failures), "crashes": list(self.crashes)}
        for name in AGREEMENTS:
            a = getattr(self, name)
            d[name] = a.to_dict() if a else None
        return d

    def to_row(self):
        """A bench row: parity only, never fps (timing under emulation means nothing)."""
        return parity_row(self.case.style or self.case.artifact, self.case.target, self.case.precision,
                          self.case.size, self.runtime, self.cpu, self.passed,
                          f"{self._psnrs()}, pass" if self.passed else self.verdict())

    def _psnrs(self) -> str:
        return ", ".join(f"PSNR {_fmt_db(_db(a.psnr_db))} {name}" for name, a in
                         (("vs x86", self.vs_x86), ("vs torch", self.vs_torch)) if a)


AGREEMENTS = ("vs_x86", "vs_torch", "vs_trained", "x86_vs_torch")


def judge(result: ArmResult, outputs: Sequence[np.ndarray], x86: Sequence[np.ndarray] | None,
          torch_refs: Sequence[np.ndarray], trained_refs: Sequence[np.ndarray]) -> ArmResult:
    """Fill the agreements and failures: aarch64 vs x86 and vs torch, each held to the parity tolerance."""
    from toolkit.parity import tolerance_for

    tol = tolerance_for(result.case.target, result.case.precision)
    result.tolerance = tol.describe()
    result.vs_torch = Agreement.of(outputs, torch_refs)
    result.vs_trained = Agreement.of(outputs, trained_refs)
    result.failures += [f"vs torch: {m}" for m in result.vs_torch.misses(tol)]
    if x86 is None:
        result.failures.append("no x86 output to compare with (the file failed on x86)")
    else:
        result.vs_x86 = Agreement.of(outputs, x86)
        result.x86_vs_torch = Agreement.of(x86, torch_refs)
        result.failures += [f"vs x86: {m}" for m in result.vs_x86.misses(tol)]
    return result


# --- running ------------------------------------------------------------------------------------------------------

def _slug(artifact: str) -> str:
    return artifact.replace("/", "__")


def torch_references(case: Case, inputs: Sequence[np.ndarray], cache: dict) -> tuple[list, list]:
    """(deploy-form outputs, trained-model outputs) for a case's style on the inputs (the same photos for every
    case of a run)."""
    import torch

    from toolkit.models.deploy import deploy_form
    from toolkit.zoo import load_style

    if case.style not in cache:
        trained = load_style(case.style).model.eval()
        cache[case.style] = (deploy_form(trained)[0].eval(), trained)
    if (case.style, case.size) not in cache:  # every file of a style at a size shares them
        deployed, trained = cache[case.style]
        with torch.no_grad():
            cache[(case.style, case.size)] = ([deployed(torch.from_numpy(x)).numpy() for x in inputs],
                                              [trained(torch.from_numpy(x)).numpy() for x in inputs])
    return cache[(case.style, case.size)]


def run_parity(env: ArmEnv, exported: Path, cases: Sequence[Case], photos: Sequence[Path], cpus: Sequence[str],
               workdir: Path, sites: dict = SITES, timeout_s: float = 3600, log=print) -> list[ArmResult]:
    from toolkit.data.images import load_rgb
    from toolkit.parity import fit_image

    workdir.mkdir(parents=True, exist_ok=True)
    inputs: dict[tuple, list[Path]] = {}
    for size in sorted({c.size for c in cases}):
        folder = workdir / "inputs" / f"{size[0]}x{size[1]}"
        folder.mkdir(parents=True, exist_ok=True)
        inputs[size] = []
        for photo in photos:
            dest = folder / f"{photo.stem}.npy"
            np.save(dest, fit_image(load_rgb(photo), size))
            inputs[size].append(dest)

    def jobs_for(selected: Sequence[Case], tag: str) -> list[dict]:
        out = workdir / "out" / tag
        out.mkdir(parents=True, exist_ok=True)
        return [{"artifact": str(exported / c.artifact), "inputs": [str(p) for p in inputs[c.size]],
                 "outputs": [str(out / f"{_slug(c.artifact)}.{p.stem}.npy") for p in inputs[c.size]]}
                for c in selected]

    t0 = time.monotonic()
    x86_jobs = jobs_for(cases, "x86")
    x86_done = run_worker([sys.executable, str(WORKER)], x86_jobs, workdir / "jobs" / "x86.json", timeout_s)
    log(f"x86: {sum(d['ok'] for d in x86_done.values())}/{len(cases)} files ran ({time.monotonic() - t0:.0f} s)")
    x86_out = {c.artifact: j["outputs"] for c, j in zip(cases, x86_jobs) if x86_done[j["artifact"]]["ok"]}

    refs: dict = {}
    results: list[ArmResult] = []
    for cpu in cpus:
        env.prepare_cpu(cpu)
        for target, target_sites in sites.items():
            selected = [c for c in cases if c.target == target]
            for rank, site in enumerate(target_sites):
                if not selected or site not in env.sites:
                    continue
                t1 = time.monotonic()
                jobs = jobs_for(selected, f"{site}.{cpu}")
                done = run_worker(env.command(site, cpu, [str(WORKER)]), jobs,
                                   workdir / "jobs" / f"{site}.{cpu}.json", timeout_s)
                log(f"{env.runtime_label(site)} on qemu {cpu}: {sum(d['ok'] for d in done.values())}/"
                    f"{len(selected)} files ran ({time.monotonic() - t1:.0f} s)")
                for case, job in zip(selected, jobs):
                    result = ArmResult(case, site, env.runtime_label(site), cpu, len(photos), primary=rank == 0)
                    status = done[job["artifact"]]
                    result.crashes = list(status.get("crashes", []))
                    if not status["ok"]:
                        result.failures.append(f"{NO_RUN}: {status['error']}")
                    elif status.get("machine") != "aarch64":
                        result.failures.append(f"ran on {status.get('machine')}, not aarch64")
                    else:
                        x = [np.load(p) for p in job["inputs"]]
                        torch_refs, trained_refs = torch_references(case, x, refs)
                        x86 = [np.load(p) for p in x86_out[case.artifact]] if case.artifact in x86_out else None
                        try:
                            judge(result, [np.load(p) for p in job["outputs"]], x86, torch_refs, trained_refs)
                        except UserError as exc:  # a wrong output shape: this file fails, the others go on
                            result.failures.append(str(exc))
                    results.append(result)
                    log("  " + result.summary())
    return results


def rerun_crashed(env: ArmEnv, exported: Path, results: Sequence[ArmResult], photos: Sequence[Path], workdir: Path,
                  log=print) -> list[ArmResult]:
    """`results` with each check that failed only because its runtime died run once more, per runtime and CPU, in a
    fresh process on the same photos; the new verdict replaces it and keeps the earlier run's deaths under
    "crashes". A file re-exported since (another sha256) cannot be rerun into the same report."""
    from toolkit.manifest import read_manifest

    crashed = [r for r in results if r.failures and all(f.startswith(NO_RUN) for f in r.failures)]
    current = {c.artifact: c for c in select_cases(read_manifest(exported), (0, 0))}
    changed = [r.case.artifact for r in crashed if current.get(r.case.artifact, r.case).sha256 != r.case.sha256]
    if changed:
        raise UserError(f"{changed[0]} was re-exported since the report was written; run the full check again")
    fresh = {}
    for site, cpu in dict.fromkeys((r.site, r.cpu) for r in crashed):
        cases = [r.case for r in crashed if (r.site, r.cpu) == (site, cpu)]
        for new in run_parity(env, exported, cases, photos, [cpu], workdir, sites={cases[0].target: (site,)}, log=log):
            fresh[(new.case.artifact, site, cpu)] = new
    merged = []
    for r in results:
        new = fresh.get((r.case.artifact, r.site, r.cpu))  # one check per file, runtime and CPU: only crashed ones
        if new is not None:
            new.primary = r.primary
            new.crashes = [f"earlier run: {f}" for f in r.failures] + new.crashes
            r = new
        merged.append(r)
    return merged


# --- reporting ----------------------------------------------------------------------------------------------------

def manifest_fields(results: Sequence[ArmResult], emulator: str) -> dict[str, dict]:
    """The "aarch64" manifest field per artifact: its primary runtime, worst over the emulated CPUs, plus the other
    runtimes' verdicts under "also"."""
    fields: dict[str, dict] = {}
    for artifact in dict.fromkeys(r.case.artifact for r in results):
        mine = [r for r in results if r.case.artifact == artifact]
        primary = [r for r in mine if r.primary] or mine
        case = primary[0].case
        fields[artifact] = {
            "checked": True, "passed": all(r.passed for r in primary), "runtime": primary[0].runtime,
            "emulator": emulator, "cpus": sorted({r.cpu for r in primary}),
            "size": f"{case.size[0]}x{case.size[1]}", "photos": primary[0].photos, "tolerance": primary[0].tolerance,
            "psnr_db_vs_x86": _worst(primary, "vs_x86"), "psnr_db_vs_torch": _worst(primary, "vs_torch"),
            "psnr_db_vs_trained": _worst(primary, "vs_trained"), "sha256": case.sha256,
            "failures": [f"{r.cpu}: {f}" for r in primary for f in r.failures],
            "x86_misses_too": any(r.x86_misses_too for r in primary),
        }
        crashes = [f"{r.cpu}: {c}" for r in primary for c in r.crashes]
        if crashes:  # it ran and passed in a fresh process, but say that the runtime died on it first
            fields[artifact]["crashes"] = crashes
        others = {}
        for r in mine:
            if r in primary:
                continue
            entry = others.setdefault(r.runtime, {"passed": True, "psnr_db_vs_x86": None, "psnr_db_vs_torch": None})
            same = [o for o in mine if o.runtime == r.runtime]
            entry.update(passed=all(o.passed for o in same), psnr_db_vs_x86=_worst(same, "vs_x86"),
                         psnr_db_vs_torch=_worst(same, "vs_torch"))
        if others:
            fields[artifact]["also"] = others
    return fields


def _worst(results: Sequence[ArmResult], name: str):
    values = [getattr(r, name).psnr_db for r in results if getattr(r, name) is not None]
    return _db(min(values)) if values else None


def update_manifest_field(exported: Path, fields: dict[str, dict], log=print) -> list[str]:
    """Write only the "aarch64" field of each checked entry, under the manifest lock; an entry whose sha256 no longer
    matches the file that was checked (re-exported since) is left alone and named."""
    from toolkit.fsutil import write_json
    from toolkit.manifest import locked, manifest_path, read_manifest

    written = []
    with locked(exported):
        data = read_manifest(exported)
        for artifact, value in fields.items():
            entry = data["artifacts"].get(artifact)
            if entry is None or entry.get("sha256") != value["sha256"]:
                log(f"manifest: {artifact} changed since it was checked on aarch64; not written (rerun)")
                continue
            entry["aarch64"] = value
            written.append(artifact)
        write_json(manifest_path(exported), data)
    return written


def summary_table(results: Sequence[ArmResult]) -> list[str]:
    """One line per target x precision x runtime: checks passed and the PSNR ranges (worst photo per file)."""
    def span(group, name):
        values = [getattr(r, name).psnr_db for r in group if getattr(r, name) is not None]
        if not values:
            return "—"
        lo, hi = min(values), max(values)
        return _fmt_db(_db(lo)) if lo == hi else f"{_fmt_db(_db(lo))} – {_fmt_db(_db(hi))}"

    lines = ["| target | precision | runtime | checks passed | PSNR vs x86 | PSNR vs torch | x86: PSNR vs torch |",
             "|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list[ArmResult]] = {}
    for r in results:
        groups.setdefault((r.case.target, r.case.precision, r.runtime), []).append(r)
    for (target, precision, runtime), group in groups.items():
        lines.append(f"| {target} | {precision} | {runtime} | {sum(r.passed for r in group)}/{len(group)} | "
                     f"{span(group, 'vs_x86')} | {span(group, 'vs_torch')} | {span(group, 'x86_vs_torch')} |")
    return lines


def markdown_report(results: Sequence[ArmResult], env_line: str, elapsed_s: float) -> str:
    lines = ["# aarch64 parity (emulated)", "",
             "Each shipped file run on arm64 onnxruntime / LiteRT under qemu user-mode emulation and compared, per "
             "file, with the same file on x86 and with the torch model it was exported from (deploy form; "
             "\"vs trained\" is the checkpoint itself). Judged by toolkit.parity's tolerance for the file's target x "
             "precision, against both references; PSNR (peak 1.0) is the worst over the photos. No timing: "
             "emulated speed means nothing.", "", env_line,
             f"{len(results)} checks, {sum(not r.passed for r in results)} failed, {elapsed_s:.0f} s"
             + (f"; {sum(bool(r.crashes) for r in results)} ran only after the runtime died on them first "
                "(see their result)." if any(r.crashes for r in results) else "."), "",
             *summary_table(results), "",
             "| file | precision | size | runtime | CPU | PSNR vs x86 | max abs vs x86 | PSNR vs torch | "
             "max abs vs torch | PSNR vs trained | x86: PSNR vs torch | tolerance | result |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        def cell(a, attr):
            if a is None:
                return "—"
            return _fmt_db(_db(a.psnr_db)) if attr == "psnr" else f"{a.max_abs:.2g}"
        verdict = r.verdict().replace("|", "/").replace("FAIL", "**FAIL**", 1)
        if r.crashes:
            verdict += f" (after {len(r.crashes)} crash(es): {'; '.join(r.crashes)[:160]})"
        lines.append(f"| {r.case.artifact} | {r.case.precision} | {r.case.size[0]}x{r.case.size[1]} | {r.runtime} | "
                     f"{r.cpu} | {cell(r.vs_x86, 'psnr')} | {cell(r.vs_x86, 'abs')} | {cell(r.vs_torch, 'psnr')} | "
                     f"{cell(r.vs_torch, 'abs')} | {cell(r.vs_trained, 'psnr')} | {cell(r.x86_vs_torch, 'psnr')} | "
                     f"{r.tolerance} | {verdict} |")
    return "\n".join(lines) + "\n"


def write_reports(results: Sequence[ArmResult], md: Path | None, js: Path | None, env: ArmEnv,
                  photos: Sequence[Path], elapsed_s: float) -> None:
    from toolkit.fsutil import atomic_path, write_json

    env_line = (f"Emulator: {env.qemu_version or env.qemu}. Runtimes: "
                f"{', '.join(env.runtime_label(s) for s in sorted(env.sites) if s != 'base')}; "
                f"{env.sites.get('base', '')}. Photos: {', '.join(p.name for p in photos)} (toolkit/calibration).")
    if md:
        with atomic_path(md) as tmp:
            tmp.write_text(markdown_report(results, env_line, elapsed_s))
    if js:
        write_json(js, {"format": "toolkit-arm-parity/1", "emulator": env.qemu_version, "sites": env.sites,
                        "photos": [p.name for p in photos], "elapsed_s": round(elapsed_s, 1),
                        "results": [r.to_dict() for r in results]})


def results_from_json(path: str | Path) -> tuple[list[ArmResult], dict]:
    """(results, the report's other keys) from a saved JSON report, without rerunning anything."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        results = []
        for d in data["results"]:
            h, w = (int(v) for v in d["size"].split("x"))
            case = Case(d["artifact"], d["style"], d["target"], d["precision"], (h, w), d.get("sha256", ""))
            agreements = {k: Agreement(math.inf if d[k]["psnr_db"] is None else d[k]["psnr_db"], d[k]["max_abs"])
                          if d.get(k) else None for k in AGREEMENTS}
            results.append(ArmResult(case, d["site"], d["runtime"], d["cpu"], d["photos"], d["primary"],
                                     d["tolerance"], failures=list(d["failures"]),
                                     crashes=list(d.get("crashes", [])), **agreements))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path} is not an aarch64 parity report ({type(exc).__name__}: {exc}); rerun "
                        "`bash .ci/arm_parity.sh --all`") from exc
    return results, {k: v for k, v in data.items() if k != "results"}


def parity_row(subject: str, target: str, precision: str, size: Sequence[int], runtime: str, cpus: str,
               passed: bool, detail: str):
    """The bench row of one aarch64 check: status "unavailable" with the parity when it passed (no fps under
    emulation), "error" naming the failure when it did not."""
    from toolkit.bench.rows import LatencyRow

    where = f"{runtime.removesuffix(' aarch64')}, qemu {cpus}"
    status, reason = (("unavailable", f"parity only, no fps under emulation ({where}): {detail}") if passed
                      else ("error", f"aarch64 parity ({where}): {detail}"))
    return LatencyRow(subject=subject, target=target, precision=precision, provider=PROVIDER, threads=1,
                      height=size[0], width=size[1], status=status, reason=reason, runtime=f"{runtime} (qemu {cpus})")


def manifest_rows(exported: Path, styles: Sequence[str], targets: Sequence[str], precisions: Sequence[str]) -> list:
    """Bench rows from the "aarch64" fields `--update-manifest` wrote, for the files of `styles` still on disk with
    the sha256 that was checked. A file re-exported since carries no row."""
    from toolkit.manifest import read_manifest

    rows = []
    for entry in (e for _, e in sorted(read_manifest(exported).get("artifacts", {}).items())):
        arm = entry.get("aarch64") or {}
        if (entry.get("style") not in styles or entry.get("target") not in targets
                or entry.get("precision") not in precisions or arm.get("sha256") != entry.get("sha256")):
            continue
        psnrs = f"PSNR {_fmt_db(arm['psnr_db_vs_x86'])} vs x86, PSNR {_fmt_db(arm['psnr_db_vs_torch'])} vs torch"
        detail = f"{psnrs}, pass" if arm["passed"] else "; ".join([psnrs, *arm.get("failures", [])])
        rows.append(parity_row(entry["style"], entry["target"], entry["precision"],
                               [int(v) for v in arm["size"].split("x")], arm["runtime"], ",".join(arm["cpus"]),
                               arm["passed"], detail))
    return rows


def rows_from_json(path: str | Path) -> list:
    """Bench rows ("aarch64 (emulated)", parity only) from a saved report."""
    return [r.to_row() for r in results_from_json(path)[0]]


def name_diverging_ops(results: Sequence[ArmResult], exported: Path, env_json: str, log=print) -> None:
    """For each ONNX file that ran on aarch64 and missed its tolerance, add the op where aarch64 and x86 first part
    (toolkit.bench.arm_localize) to its failures."""
    for r in results:
        if r.passed or r.case.target != "onnx" or r.vs_torch is None:
            continue
        try:
            diffs = localize(exported / r.case.artifact, r.cpu, r.case.size, env_json)
            r.failures.append(f"vs x86 by op: {summarise(diffs)}")
        except UserError as exc:
            r.failures.append(f"diverging op not found: {exc}")
        log(f"  localised {r.case.artifact} on {r.cpu}: {r.failures[-1]}")


def _emulator(qemu_version: str) -> str:
    """'qemu-aarch64 version 7.2.22 (Debian ...)' -> 'qemu-aarch64 7.2.22 user mode'."""
    return (qemu_version.split(" (")[0].replace(" version", "") or "qemu-aarch64") + " user mode"


# --- command line -------------------------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from toolkit.export import parse_size

    p = argparse.ArgumentParser(prog="python -m toolkit.bench.arm", description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default=".cache/arm/env.json", help="env.json written by .ci/arm_parity.sh")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--ci", action="store_true", help="one fp32 + one int8 file per target, one photo, one CPU")
    mode.add_argument("--all", action="store_true",
                      help="every ONNX / TFLite file, 3 photos, every emulated CPU; report to benchmarks/results")
    p.add_argument("--exported", default="exported", help="export folder with manifest.json (default: exported)")
    p.add_argument("--styles", nargs="+", default=[], metavar="NAME", help="only these styles")
    p.add_argument("--match", default="", metavar="PATTERN",
                   help="only files whose manifest key matches this shell pattern, e.g. '*.int8.onnx'")
    p.add_argument("--size", default="480x640", help="HEIGHTxWIDTH for dynamic-size files (default: 480x640)")
    p.add_argument("--photos", type=int, help="photos per file (default: 1 with --ci, else 3)")
    p.add_argument("--cpus", help=f"comma list of emulated CPUs from {', '.join(ARM_CPUS)} "
                                  "(default: cortex-a76; --all: all)")
    p.add_argument("--md", help="Markdown report (default: benchmarks/results/arm_parity.md with --all, "
                                "else .cache/arm/arm_parity.md)")
    p.add_argument("--json", help="JSON report (default: beside --md)")
    p.add_argument("--workdir", default=".cache/arm/run", help="inputs and outputs (.npy) go here")
    p.add_argument("--update-manifest", action="store_true",
                   help="write the 'aarch64' field of each checked entry into <exported>/manifest.json")
    p.add_argument("--update-manifest-from", metavar="JSON",
                   help="only write the 'aarch64' fields from a saved report (e.g. benchmarks/results/arm_parity.json) "
                        "into <exported>/manifest.json; entries re-exported since it ran are left alone")
    p.add_argument("--rows", action="store_true", help="print the results as bench rows (toolkit.bench.report)")
    p.add_argument("--rows-from", metavar="JSON", help="print bench rows from a saved report and exit")
    p.add_argument("--report-from", metavar="JSON", help="rewrite the Markdown report (--md) from a saved JSON one")
    p.add_argument("--rerun-crashed", metavar="JSON",
                   help="run once more the checks of a saved report whose runtime died, and write the merged report "
                        "to --md / --json")
    args = p.parse_args(argv)
    args.size = parse_size(args.size)
    args.photos = args.photos or (1 if args.ci else 3)
    cpus = args.cpus.split(",") if args.cpus else (list(ARM_CPUS) if args.all else ["cortex-a76"])
    unknown = [c for c in cpus if c not in ARM_CPUS]
    if unknown:
        p.error(f"unknown --cpus {','.join(unknown)}; choose from {', '.join(ARM_CPUS)}")
    args.cpus = cpus
    if not args.md:
        args.md = "benchmarks/results/arm_parity.md" if args.all else ".cache/arm/arm_parity.md"
    args.json = args.json or str(Path(args.md).with_suffix(".json"))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from toolkit.bench.report import markdown_table
    from toolkit.manifest import read_manifest

    args = parse_args(argv)
    try:
        if args.rows_from:
            print(markdown_table(rows_from_json(args.rows_from)), end="")
            return 0
        if args.report_from:
            results, report = results_from_json(args.report_from)
            env = ArmEnv("qemu", Path(), Path(), Path(), report["sites"], report["emulator"])
            write_reports(results, Path(args.md), None, env, [Path(p) for p in report["photos"]], report["elapsed_s"])
            print(f"wrote {args.md} from {args.report_from}")
            return 0
        if args.update_manifest_from:
            results, report = results_from_json(args.update_manifest_from)
            written = update_manifest_field(Path(args.exported), manifest_fields(results, _emulator(report["emulator"])))
            print(f"manifest: wrote the aarch64 field of {len(written)} entries in {args.exported}/manifest.json")
            return 0
        env = ArmEnv.load(args.env)
        exported = Path(args.exported)
        t0 = time.monotonic()
        if args.rerun_crashed:
            earlier, report = results_from_json(args.rerun_crashed)
            photos = [CALIBRATION_DIR / name for name in report["photos"]]
            results = rerun_crashed(env, exported, earlier, photos, Path(args.workdir))
            cases = list(dict.fromkeys(r.case for r in results))
            args.cpus = list(dict.fromkeys(r.cpu for r in results))
            elapsed = report["elapsed_s"] + time.monotonic() - t0
        else:
            cases = select_cases(read_manifest(exported), args.size, subset=args.ci, styles=args.styles,
                                 match=args.match)
            if not cases:
                raise UserError(f"no ONNX / TFLite file in {exported}/manifest.json matches (size {args.size}, "
                                f"styles {args.styles or 'all'}, pattern {args.match or 'none'})")
            photos = pick_photos(args.photos)
            results = run_parity(env, exported, cases, photos, args.cpus, Path(args.workdir))
            elapsed = time.monotonic() - t0
        name_diverging_ops(results, Path(args.exported), args.env)
        write_reports(results, Path(args.md), Path(args.json), env, photos, elapsed)
        if args.rows:
            print(markdown_table([r.to_row() for r in results]), end="")
        if args.update_manifest:
            written = update_manifest_field(exported, manifest_fields(results, _emulator(env.qemu_version)))
            print(f"manifest: wrote the aarch64 field of {len(written)} entries in {exported}/manifest.json")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = [r for r in results if not r.passed]
    print(f"aarch64 parity: {len(results) - len(failed)}/{len(results)} checks pass in {elapsed:.0f} s "
          f"({len(cases)} files x runtimes x CPUs {','.join(args.cpus)}, {len(photos)} photo(s)); "
          f"report {args.md}")
    for r in failed:
        print(f"FAIL {r.summary()}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
