from __future__ import annotations

HELP = "time styles, presets or exported artifacts on every runtime here; check CI latency gates"


def add_arguments(p) -> None:
    from toolkit.commands import list_option

    p.add_argument("artifacts", nargs="*", metavar="ARTIFACT", help="exported .onnx / .tflite / .mlpackage files")
    p.add_argument("--style", nargs="+", default=[], metavar="NAME", help="shipped styles (see `toolkit styles`)")
    p.add_argument("--checkpoint", nargs="+", default=[], metavar="PATH", help="checkpoints from `toolkit train`")
    p.add_argument("--arch", nargs="+", default=[], metavar="PRESET",
                   help="architecture presets with random weights (latency does not depend on weight values)")
    list_option(p, "--target", "--targets", default=["onnx"], metavar="TARGET", help="onnx, tflite, coreml, torch")
    list_option(p, "--precision", default=["fp32"], metavar="P", help="e.g. fp32,int8")
    list_option(p, "--provider", "--providers", default=["cpu"], metavar="P", help="cpu, xnnpack, cuda")
    list_option(p, "--threads", default=["1"], metavar="N", help="thread counts")
    list_option(p, "--size", "--sizes", default=["480x640"], metavar="HxW", help="input sizes")
    p.add_argument("--runs", type=int, default=10, help="timed runs per row (default: 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed warm-up runs per row (default: 2)")
    p.add_argument("--no-reference", action="store_true",
                   help="skip timing johnson2016 side by side (no speed-up column)")
    p.add_argument("--exported", default="exported",
                   help="reuse artifacts listed in DIR/manifest.json for --style when their sha256 matches")
    p.add_argument("--json", metavar="FILE", help="write rows + host + library versions as JSON")
    p.add_argument("--md", metavar="FILE", help="write a Markdown table")
    p.add_argument("--plot", metavar="FILE", help="write a PNG plot of fps vs size")
    p.add_argument("--gates", metavar="FILE", help="check the rules in a gates file (e.g. latency_gates.toml); "
                                                   "exit 1 when any fails")


def config_from_args(args):
    from toolkit.bench.harness import BenchConfig
    from toolkit.errors import UserError
    from toolkit.export import parse_size

    try:
        threads = tuple(int(t) for t in args.threads)
    except ValueError:
        raise UserError(f"--threads '{','.join(args.threads)}' must be a comma list of integers, e.g. 1,2") from None
    sizes = tuple(parse_size(s) for s in args.size)
    targets, precisions, providers = tuple(args.target), tuple(args.precision), tuple(args.provider)
    for flag, values in (("--target", targets), ("--precision", precisions), ("--provider", providers),
                         ("--threads", threads), ("--size", sizes)):
        if not values:
            raise UserError(f"{flag} is empty; give at least one value")
    _check_precisions(precisions)
    from pathlib import Path

    return BenchConfig(targets=targets, precisions=precisions, providers=providers, threads=threads, sizes=sizes,
                       runs=args.runs, warmup=args.warmup, reference=not args.no_reference,
                       reuse_exported=Path(args.exported) if args.exported else None)


def _check_precisions(precisions) -> None:
    from toolkit.errors import unknown
    from toolkit.export import all_precisions

    for p in precisions:
        if p not in all_precisions():
            raise unknown("precision", p, all_precisions())


def subjects_from_args(args) -> list:
    from pathlib import Path

    from toolkit.bench.harness import Subject, artifact_target
    from toolkit.errors import UserError
    from toolkit.models import ARCHS, create_model
    from toolkit.zoo import load_style

    subjects = []
    for name in args.style:
        subjects.append(Subject(name, "style", model=load_style(name).model))
    for path in args.checkpoint:
        ckpt = load_style(checkpoint=path)
        subjects.append(Subject(ckpt.meta.get("name") or Path(path).stem, "checkpoint", model=ckpt.model,
                                path=Path(path)))
    for name in args.arch:
        ARCHS.get(name)
        subjects.append(Subject(name, "arch", model=create_model(name).eval()))
    for path in args.artifacts:
        path = Path(path)
        artifact_target(path)   # an unknown suffix is a UserError naming the valid ones
        if not path.exists():
            raise UserError(f"artifact {path} does not exist; check the path or export it with `toolkit export`")
        subjects.append(Subject(path.name, "artifact", path=path))
    return subjects


def run(args) -> int:
    import tempfile
    from pathlib import Path

    from toolkit.bench.harness import Bench
    from toolkit.bench.report import markdown_table, write_reports
    from toolkit.errors import UserError
    from toolkit.fsutil import check_output_file

    config = config_from_args(args)
    for flag, path in (("--json", args.json), ("--md", args.md), ("--plot", args.plot)):
        if path:  # before minutes of exporting and timing
            check_output_file(path, flag)
    subjects = subjects_from_args(args)
    if not subjects and not args.gates:
        raise UserError("nothing to bench: pass --style NAME, --checkpoint PATH, --arch PRESET, ARTIFACT files "
                        "or --gates FILE")
    exit_code, rows = 0, []
    with tempfile.TemporaryDirectory(prefix="toolkit-bench-") as workdir:
        if args.gates:
            from toolkit.bench.gates import check_gates, gates_table, parse_gates

            gates = parse_gates(args.gates)
            results = check_gates(gates, workdir)
            print(gates_table(results), end="")
            failed = sum(not r.passed for r in results)
            print(f"{len(results) - failed} of {len(results)} gates passed"
                  + ("" if results else " (no gates: the file's style = \"*\" matched no shipped style)"))
            exit_code = 1 if failed else 0
            rows += [row for r in results for row in r.rows]
        if subjects:
            new = Bench(config, workdir).run(subjects)
            styles = [s.name for s in subjects if s.kind == "style"]
            if styles and args.exported:  # what `bash .ci/arm_parity.sh --update-manifest` proved on arm64 kernels
                from toolkit.bench.arm import manifest_rows

                new += manifest_rows(Path(args.exported), styles, config.targets, config.precisions)
            print(markdown_table(new), end="")
            rows += new
    write_reports(rows, args.json, args.md, args.plot)
    return exit_code
