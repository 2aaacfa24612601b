"""Compression benchmark: onnxruntime CPU, 1 thread, 480x640, every variant timed in each of --rounds interleaved
rounds with the bench protocol (toolkit.bench.timing.time_call: warm-up, repeats, process-CPU-time p50), median
of the rounds: this machine is noisy, ratios measured side by side hold.

Goals (issue 5): 50%-pruned >= 1.8x faster than unpruned with style loss within +10%; int8 >= 1.5x faster than fp32
with PSNR >= 32 dB vs fp32. Also measures the normalisation layouts side by side: `--alternative CKPT` (repeat it),
the same style trained with another one (`--arch nano`: instance norm throughout; `nano_lite`: batch norm in the
trunk; `nano_bn`: batch norm throughout; batch norm is folded into the convs at export, so int8 chains there); their
quality is their style/content loss vs --checkpoint's. Without one, the other layouts are timed with random weights.

    python benchmarks/compression.py [--checkpoint frost] [--pruned runs/frost.pruned50.safetensors]
        [--alternative runs/frost_lite/frost_lite.safetensors ...] [--repeats 15] [--rounds 3]

Writes benchmarks/results/compression.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
from pathlib import Path

from toolkit.bench.timing import bench_input, interleaved
from toolkit.checkpoint import load_checkpoint
from toolkit.compress.prune import prune_model
from toolkit.compress.quality import Candidate, eval_images, evaluate
from toolkit.export import ExportSpec, export_artifact, load_runner
from toolkit.flops import count_macs
from toolkit.fsutil import atomic_path, write_json
from toolkit.models import create_model, count_params
from toolkit.paths import shared_data
from toolkit.train import style_loss
from toolkit.zoo import style_path

RESULTS = Path(__file__).resolve().parent / "results"
SIZE = (480, 640)
GOALS = {"prune_speedup": 1.8, "prune_style_change_pct": 10.0, "int8_speedup": 1.5, "int8_psnr_db": 32.0}


def latencies(paths: dict, repeats: int, rounds: int, warmup: int = 3) -> dict:
    """{key: median over interleaved rounds of the CPU-time p50 (ms)} for every artifact in `paths`."""
    x = bench_input(*SIZE)
    calls = {key: (lambda run=load_runner(path, threads=1): run(x)) for key, path in paths.items()}
    timings = interleaved(calls, rounds, warmup, repeats)
    return {key: statistics.median(t.cpu_p50_ms for t in ts) for key, ts in timings.items()}


def export(model, name: str, precision: str, out: Path) -> tuple[Path, dict]:
    """The ONNX artifact and its export record (int8 parity vs its own float deploy form is proven here)."""
    dest = out / f"{name}.{precision}.onnx"
    record = export_artifact(model, ExportSpec(target="onnx", precision=precision, style=name), dest,
                             check=precision == "int8")
    return dest, record


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="frost", help="trained float checkpoint or shipped style (default frost)")
    ap.add_argument("--pruned", help="an already pruned (and fine-tuned) checkpoint of --checkpoint to measure "
                    "instead of pruning here without fine-tune")
    ap.add_argument("--alternative", action="append", default=[], metavar="CKPT",
                    help="the same style trained with another normalisation layout (--arch nano, nano_lite, "
                    "nano_bn); batch norm is folded into the convs at export. Repeatable")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--eval-size", type=int, default=256, help="long side of the eval photos for quality")
    args = ap.parse_args(argv)

    source = args.checkpoint if Path(args.checkpoint).is_file() else str(style_path(args.checkpoint))
    ckpt = load_checkpoint(source)
    model = ckpt.model
    cfg = ckpt.train_config()
    if not cfg.style_image or not Path(cfg.style_image).is_file():
        style_name = Path(cfg.style_image).name or "frost.png"
        cfg = dataclasses.replace(cfg, style_image=str(shared_data("styles", style_name)))
    pruned = load_checkpoint(args.pruned).model if args.pruned else prune_model(model, 0.5)
    variants = {"float": model, "pruned50": pruned}
    alternatives = {}
    for path in args.alternative:
        alt = load_checkpoint(path)
        alternatives[alt.meta.get("train_config", {}).get("arch") or Path(path).stem] = alt.model
    if not alternatives:  # the other layouts as they deploy, with random weights: latency only
        for name, knobs in {"instance_throughout": {"norm": "instance", "trunk_norm": None},
                            "trunk_norm_none": {"norm": "instance", "trunk_norm": "none"},
                            "norm_none": {"norm": "none", "trunk_norm": None}}.items():
            if (model.config.norm, model.config.trunk_norm) != (knobs["norm"], knobs["trunk_norm"]):
                alternatives[name] = create_model(dataclasses.replace(model.config, **knobs)).eval()
    variants.update(alternatives)

    with tempfile.TemporaryDirectory() as tmp:
        exports = {(name, precision): export(net, name, precision, Path(tmp))
                   for name, net in variants.items() for precision in ("fp32", "int8")}
        paths = {key: path for key, (path, _) in exports.items()}
        ms = latencies(paths, args.repeats, args.rounds)
        rows = []
        for (name, precision), path in paths.items():
            net = variants[name]
            rows.append({"model": name, "precision": precision, "widths": list(net.config.widths),
                         "norm": net.config.norm, "trunk_norm": net.config.trunk, "params": count_params(net),
                         "macs": count_macs(net, *SIZE),
                         "bytes": path.stat().st_size, "cpu_p50_ms": ms[(name, precision)],
                         "fps": 1e3 / ms[(name, precision)], "repeats": args.repeats, "rounds": args.rounds,
                         "parity_psnr_db": (exports[(name, precision)][1]["parity"] or {}).get("min_psnr_db")})
            print(json.dumps(rows[-1]))
        # quality: style-loss change vs the float model, PSNR of int8 vs fp32, with the shared VGG19 loss net
        from toolkit.checkpoint import Checkpoint

        def candidate(name, precision):
            path = paths[(name, precision)]
            return Candidate(f"{name}_{precision}" if precision != "fp32" else name, str(path), "onnx",
                             load_runner(path))

        cands = [candidate("pruned50", "fp32"), candidate("float", "int8"), candidate("pruned50", "int8")]
        if args.alternative:
            cands += [candidate(name, precision) for name in alternatives for precision in ("fp32", "int8")]
        quality, _ = evaluate(cands, Checkpoint(model=model, meta={}), eval_images(None, args.eval_size),
                              style_loss(cfg))
    q = {r.name: dataclasses.asdict(r) for r in quality}
    fps = {(r["model"], r["precision"]): r["fps"] for r in rows}
    summary = {
        "prune_speedup": fps[("pruned50", "fp32")] / fps[("float", "fp32")],
        "prune_style_change_pct": q["pruned50"]["style_change_pct"],
        "int8_speedup": fps[("float", "int8")] / fps[("float", "fp32")],
        "int8_psnr_db": q["float_int8"]["psnr_db"],
    }
    info = {}
    for alt in alternatives:
        info.update({f"{alt}_int8_speedup": fps[(alt, "int8")] / fps[(alt, "fp32")],
                     f"{alt}_fp32_vs_float_fp32_speedup": fps[(alt, "fp32")] / fps[("float", "fp32")],
                     f"{alt}_int8_vs_float_fp32_speedup": fps[(alt, "int8")] / fps[("float", "fp32")]})
        if alt in q:  # trained alternatives only (random-weight layouts are timed, not judged)
            info[f"{alt}_style_change_pct"] = q[alt]["style_change_pct"]
    summary.update(info)
    goals = {
        "prune_speedup": summary["prune_speedup"] >= GOALS["prune_speedup"],
        "prune_style_change_pct": summary["prune_style_change_pct"] <= GOALS["prune_style_change_pct"],
        "int8_speedup": summary["int8_speedup"] >= GOALS["int8_speedup"],
        "int8_psnr_db": summary["int8_psnr_db"] >= GOALS["int8_psnr_db"],
    }
    import onnxruntime

    from toolkit.bench.host import host_info

    shown = args.checkpoint if Path(args.checkpoint).is_file() else f"zoo:{args.checkpoint}"  # no machine paths
    result = {"source": shown, "pruned_source": args.pruned or "prune_model(sparsity=0.5, l1), no fine-tune",
              "alternative_sources": args.alternative, "size": list(SIZE), "threads": 1, "clock": "process CPU time",
              "runtime": f"onnxruntime {onnxruntime.__version__} CPU", "host": host_info().to_dict(),
              "arch": dataclasses.asdict(model.config), "rows": rows, "quality": q, "summary": summary,
              "goals": GOALS, "goals_met": goals, "style_image": cfg.style_image, "loss_net": cfg.loss.loss_net}
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "compression.json", result)
    md = [f"# Compression benchmark ({result['runtime']}, 1 thread, {SIZE[0]}x{SIZE[1]}, CPU clock)", "",
          f"Host: {result['host']['cpu_model']} (family {result['host']['cpu_family']}). "
          f"Median of {args.rounds} interleaved rounds of {args.repeats} runs.", "",
          f"source: {shown}; pruned: {result['pruned_source']}"
          + (f"; alternatives: {', '.join(args.alternative)}" if args.alternative else ""), "",
          "| model | precision | norm / trunk norm (trained) | widths | params | GMAC | bytes | CPU p50 ms | fps | "
          "int8 PSNR vs own fp32 (dB) |", "|" + "---|" * 10]
    for r in rows:
        parity = f"{r['parity_psnr_db']:.1f}" if r["parity_psnr_db"] else "-"
        md.append(f"| {r['model']} | {r['precision']} | {r['norm']} / {r['trunk_norm']} | {r['widths']} | "
                  f"{r['params']} | {r['macs'] / 1e9:.3f} | {r['bytes']} | {r['cpu_p50_ms']:.1f} | {r['fps']:.1f} | "
                  f"{parity} |")
    md += ["", "| quality vs float (eval photos) | PSNR dB | style loss change % | content loss change % |",
           "|---|---|---|---|"]
    for name, r in q.items():
        md.append(f"| {name} | {r['psnr_db']:.2f} | {r['style_change_pct']:+.1f} | {r['content_change_pct']:+.1f} |")
    md += ["", "| goal | target | measured | met |", "|---|---|---|---|"]
    for k, target in GOALS.items():
        md.append(f"| {k} | {target} | {summary[k]:.3g} | {'yes' if goals[k] else 'NO'} |")
    md += [f"| {k} (info) | - | {v:.3g} | - |" for k, v in info.items()]
    with atomic_path(RESULTS / "compression.md") as tmp_md:
        tmp_md.write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
