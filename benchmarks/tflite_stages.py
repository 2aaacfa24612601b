"""Where TFLite int8 loses its speed (issue 19 section 3): the shipped exporter's fp32 and int8 files of one style, cut
after each stage of the net, timed side by side under LiteRT (XNNPACK, 1 thread), and one stack of plain 3x3 convs at
the net's two widths.

The stage cuts are the deploy-form net (what ships) ending after its stem, its down convs + residual trunk, its
upsampling stage (+ skip) and its head (the whole net, with the twin's half-resolution PhaseHead); each cut is
converted by toolkit.export.tflite exactly as a shipped file (NHWC twin; int8 = PT2E static, norms and stem float).
The time a stage adds is the difference between consecutive cuts.

    python benchmarks/tflite_stages.py [--style starry_night frost] [--size 480x640] [--rounds 5] [--runs 8]

Writes benchmarks/results/tflite_stages.md and .json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
STAGES = ("stem", "down + residual trunk", "up + skip", "head + activation")


def cut_after(stage: str):
    """TransformerNet._forward that returns the activation after `stage` (one of STAGES)."""
    def _forward(self, x):
        stem = self.stem(x)
        if stage == STAGES[0]:
            return stem
        x = self.res(self.down(stem))
        if stage == STAGES[1]:
            return x
        for i, up in enumerate(self.up):
            x = up(x)
            if i == self.skip_at:
                x = x + stem
        if stage == STAGES[2]:
            return x
        return self.activation(self.head(x))
    return _forward


def convert_cuts(style: str, size) -> dict[str, bytes]:
    from toolkit.export import tflite
    from toolkit.export.base import ExportSpec
    from toolkit.export.nhwc import PhaseHead
    from toolkit.models.deploy import deploy_form
    from toolkit.models.transformer_net import TransformerNet
    from toolkit.zoo import load_style

    model = deploy_form(load_style(style).model.eval())[0]
    spec = ExportSpec("tflite", "int8", sizes=(size,))
    whole, equalise, fits = TransformerNet._forward, tflite.equalise_norm_inputs, PhaseHead.fits
    tflite.equalise_norm_inputs = lambda net, images: net  # a cut has no norm after some convs; speed is the same
    files = {}
    try:
        for stage in STAGES:
            last = stage == STAGES[-1]  # the whole net, as it ships (with the twin's PhaseHead)
            TransformerNet._forward = whole if last else cut_after(stage)
            PhaseHead.fits = fits if last else staticmethod(lambda net: False)  # a cut ends before the head
            files[f"{stage} | fp32"] = tflite._convert_float_uncached(model, size)
            files[f"{stage} | int8"] = tflite._convert_int8(model, size, spec)
    finally:
        TransformerNet._forward, tflite.equalise_norm_inputs, PhaseHead.fits = whole, equalise, fits
    return files


def conv_stacks(widths_sizes) -> dict[str, bytes]:
    """4 x (3x3 conv + ReLU) at each (channels, H, W), fp32 and int8 (PT2E, per-channel weights)."""
    import litert_torch
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import quantize_pt2e

    from toolkit.export.tflite import _quiet

    files = {}
    for c, h, w in widths_sizes:
        torch.manual_seed(0)
        net = torch.nn.Sequential(*[m for _ in range(4) for m in (torch.nn.Conv2d(c, c, 3, padding=1), torch.nn.ReLU())])
        sample = (torch.rand(1, c, h, w),)
        quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
            pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True))
        with _quiet(), torch.no_grad():
            graph = quantize_pt2e.prepare_pt2e(torch.export.export(net.eval(), sample).module(), quantizer)
            for _ in range(4):
                graph(torch.rand(*sample[0].shape))
            graph = quantize_pt2e.convert_pt2e(graph, fold_quantize=False)
            for precision, converted in (("fp32", litert_torch.convert(net.eval(), sample)),
                                         ("int8", litert_torch.convert(graph, sample,
                                                                       quant_config=QuantConfig(pt2e_quantizer=quantizer)))):
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / "stack.tflite"
                    converted.export(str(path))
                    files[f"4x conv3x3 {c}ch {h}x{w} | {precision}"] = path.read_bytes()
    return files


def interleaved_ms(files: dict[str, bytes], rounds: int, runs: int) -> dict[str, float]:
    """Median over interleaved rounds (toolkit.bench.timing) of each file's p50 wall time under LiteRT, 1 thread."""
    from ai_edge_litert.interpreter import Interpreter

    from toolkit.bench.timing import interleaved

    calls = {}
    for name, buf in files.items():
        it = Interpreter(model_content=buf, num_threads=1)
        it.allocate_tensors()
        inp = it.get_input_details()[0]
        it.set_tensor(inp["index"], (np.random.default_rng(0).random(inp["shape"]) * 100).astype(inp["dtype"]))
        calls[name] = it.invoke
    timings = interleaved(calls, rounds, warmup=1, runs=runs)
    return {name: statistics.median(t.p50_ms for t in rounds_) for name, rounds_ in timings.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--style", nargs="+", default=["starry_night", "frost"])
    ap.add_argument("--size", default="480x640")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=8)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    size = tuple(int(v) for v in args.size.split("x"))
    h, w = size
    files = {f"{style} | {k}": v for style in args.style for k, v in convert_cuts(style, size).items()}
    files.update(conv_stacks(((16, h // 2, w // 2), (32, h // 4, w // 4))))
    ms = interleaved_ms(files, args.rounds, args.runs)
    stages = {}
    for style in args.style:
        rows, previous = [], {"fp32": 0.0, "int8": 0.0}
        for stage in STAGES:
            fp32, int8 = ms[f"{style} | {stage} | fp32"], ms[f"{style} | {stage} | int8"]
            rows.append({"stage": stage, "fp32_cumulative_ms": fp32, "int8_cumulative_ms": int8,
                         "fp32_added_ms": fp32 - previous["fp32"], "int8_added_ms": int8 - previous["int8"]})
            previous = {"fp32": fp32, "int8": int8}
        stages[style] = rows
    stacks = [{"subject": k.split(" | ")[0], "fp32_ms": ms[k], "int8_ms": ms[k.replace("fp32", "int8")]}
              for k in ms if k.startswith("4x") and k.endswith("fp32")]
    report = {"styles": args.style, "size": args.size, "threads": 1, "rounds": args.rounds, "runs": args.runs,
              "stages": stages, "conv_stacks": stacks}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tflite_stages.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "tflite_stages.md").write_text(markdown(report))
    print(markdown(report))


def markdown(r: dict) -> str:
    out = [f"# TFLite int8 vs fp32 by stage at {r['size']}, {r['threads']} thread\n",
           "Produced by `python benchmarks/tflite_stages.py`: the shipped exporter's files cut after each stage, "
           f"timed under LiteRT (XNNPACK) in {r['rounds']} interleaved rounds of {r['runs']} runs (medians), all "
           "in one run. 'added' = this cut minus the one before.\n",
           "| style | stage | fp32 added ms | int8 added ms | int8 / fp32 time |", "|---|---|---|---|---|"]
    for style, rows in r["stages"].items():
        for row in rows:
            ratio = row["int8_added_ms"] / row["fp32_added_ms"] if row["fp32_added_ms"] > 0 else float("nan")
            out.append(f"| {style} | {row['stage']} | {row['fp32_added_ms']:.2f} | {row['int8_added_ms']:.2f} | "
                       f"{ratio:.2f} |")
        last = rows[-1]
        out.append(f"| {style} | **whole net** | {last['fp32_cumulative_ms']:.2f} | {last['int8_cumulative_ms']:.2f} | "
                   f"{last['int8_cumulative_ms'] / last['fp32_cumulative_ms']:.2f} |")
    out.append("")
    out += ["The same op at the net's two widths (the same MACs):\n",
            "| subject | fp32 ms | int8 ms | fp32 / int8 |", "|---|---|---|---|"]
    for s in r["conv_stacks"]:
        out.append(f"| {s['subject']} | {s['fp32_ms']:.2f} | {s['int8_ms']:.2f} | {s['fp32_ms'] / s['int8_ms']:.2f} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
