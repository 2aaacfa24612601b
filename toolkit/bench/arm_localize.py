"""Which op makes an ONNX file's aarch64 output differ from x86's.

A copy of the file exposes, as extra graph outputs, every quantised activation (QuantizeLinear outputs, for int8
files: exposing them keeps onnxruntime's QDQ fusion, so the same int8 kernels run) or every node output (float files);
the copy runs on x86 and under qemu through the same worker, and the tensors are compared in graph order. The first
tensor that differs names the op where the two machines' kernels part; the largest jump names where it grows.

    python -m toolkit.bench.arm_localize exported/great_wave/great_wave.int8.onnx [--cpu cortex-a53]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from toolkit.bench.arm_env import ARM_CPUS, WORKER, ArmEnv, pick_photos, run_worker
from toolkit.errors import UserError


@dataclass(frozen=True)
class TensorDiff:
    tensor: str
    op: str               # the node that computes the value: "Conv res.0.body.0.1" (the op a QuantizeLinear quantises)
    differing: float      # fraction of elements that differ between aarch64 and x86
    max_abs: float        # largest difference, in the tensor's own units (LSB for int8)

    def describe(self) -> str:
        unit = "" if self.max_abs != int(self.max_abs) else " LSB"
        return f"{self.op} ({self.tensor}): {100 * self.differing:.3g}% of values differ, max {self.max_abs:.3g}{unit}"


def exposed_copy(src: Path, dest: Path) -> list[tuple[str, str]]:
    """Write `src` with its intermediate tensors as graph outputs to `dest`; (tensor, op label) in graph order, the
    original outputs last."""
    import onnx

    model = onnx.load(str(src))
    graph = model.graph
    inferred = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.value_info, *inferred.output, *inferred.input)}
    producer = {out: node for node in graph.node for out in node.output}
    quantised = any(n.op_type == "QuantizeLinear" for n in graph.node)
    finals = [(o.name, f"graph output {o.name}") for o in graph.output]
    have = {o.name for o in graph.output}
    exposed = []
    for node in graph.node:
        if node.op_type in ("DequantizeLinear", "Constant") or (quantised and node.op_type != "QuantizeLinear"):
            continue
        source = producer.get(node.input[0]) if node.op_type == "QuantizeLinear" else node
        label = f"{source.op_type} {source.name}" if source is not None else f"input {node.input[0]}"
        for out in node.output:
            if out and out not in have and out in types:
                graph.output.append(onnx.helper.make_tensor_value_info(out, types[out], None))
                exposed.append((out, label))
    onnx.save(model, str(dest))
    return exposed + finals


def compare_tensors(x86: dict, arm: dict, order: Sequence[tuple[str, str]]) -> list[TensorDiff]:
    diffs = []
    for tensor, op in order:
        a, b = np.asarray(arm[tensor], dtype=np.float64), np.asarray(x86[tensor], dtype=np.float64)
        delta = np.abs(a - b)
        diffs.append(TensorDiff(tensor, op, float(np.mean(delta > 0)), float(delta.max(initial=0.0))))
    return diffs


def summarise(diffs: Sequence[TensorDiff]) -> str:
    first = next((d for d in diffs if d.differing > 0), None)
    if first is None:
        return "every exposed tensor is identical on aarch64 and x86"
    jumps = [(b.differing - a.differing, b) for a, b in zip(diffs, diffs[1:])]
    grows = max(jumps, key=lambda j: j[0])[1] if jumps else first
    return f"first differs at {first.describe()}; grows most at {grows.describe()}; output: {diffs[-1].describe()}"


def localize(artifact: Path, cpu: str = "cortex-a76", size=(480, 640), env_json=".cache/arm/env.json",
             workdir: Path = Path(".cache/arm/localize")) -> list[TensorDiff]:
    from toolkit.data.images import load_rgb
    from toolkit.parity import fit_image

    if Path(artifact).suffix != ".onnx":
        raise UserError(f"{artifact}: only ONNX files can be taken apart here (LiteRT keeps intermediate tensors only "
                        "with its default XNNPACK delegate switched off, i.e. on other kernels)")
    env = ArmEnv.load(env_json)
    workdir.mkdir(parents=True, exist_ok=True)
    copy = workdir / f"{Path(artifact).stem}.exposed.onnx"
    order = exposed_copy(Path(artifact), copy)
    x = workdir / "input.npy"
    np.save(x, fit_image(load_rgb(pick_photos(1)[0]), tuple(size)))
    outputs = {}
    env.prepare_cpu(cpu)
    for tag, command in (("x86", [sys.executable, str(WORKER)]),
                         (cpu, env.command("onnxruntime", cpu, [str(WORKER)]))):
        dest = workdir / f"{tag}.npz"
        job = [{"artifact": str(copy), "inputs": [str(x)], "outputs": [str(dest)], "all_outputs": True}]
        done = run_worker(command, job, workdir / f"{tag}.json", timeout_s=1800)[str(copy)]
        if not done["ok"]:
            raise UserError(f"{artifact} with exposed tensors does not run on {tag}: {done['error']}")
        outputs[tag] = dict(np.load(dest))
    return compare_tensors(outputs["x86"], outputs[cpu], order)


def main(argv: Sequence[str] | None = None) -> int:
    from toolkit.export import parse_size

    p = argparse.ArgumentParser(prog="python -m toolkit.bench.arm_localize", description=__doc__.split("\n\n")[0])
    p.add_argument("artifact", help="an exported .onnx file")
    p.add_argument("--cpu", default="cortex-a76", choices=sorted(ARM_CPUS))
    p.add_argument("--size", default="480x640", help="HEIGHTxWIDTH (default: 480x640)")
    p.add_argument("--env", default=".cache/arm/env.json", help="env.json written by .ci/arm_parity.sh")
    args = p.parse_args(argv)
    try:
        diffs = localize(Path(args.artifact), args.cpu, parse_size(args.size), args.env)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for d in diffs:
        print(d.describe())
    print(f"{args.artifact} on {args.cpu}: {summarise(diffs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
