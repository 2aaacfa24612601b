from __future__ import annotations

HELP = ("list architecture presets with params, MACs at 256x256 and 480x640, and the measured quality/speed point "
        "(benchmarks/pareto.py) where one was trained")


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def arch_rows() -> list[dict]:
    from toolkit.flops import count_macs
    from toolkit.models import ARCHS, count_params, create_model

    measured = measured_points()
    rows = []
    for name in ARCHS:
        model = create_model(name)
        rows.append({"arch": name, "params": count_params(model), "gmac_256x256": count_macs(model, 256, 256) / 1e9,
                     "gmac_480x640": count_macs(model, 480, 640) / 1e9, "measured": measured.get(name),
                     "description": (ARCHS.get(name).__doc__ or "").strip().splitlines()[0]})
    return rows


def measured_points() -> dict:
    """{arch: point} from toolkit/models/pareto.json, written by benchmarks/pareto.py (same style and recipe)."""
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "models" / "pareto.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return {p["arch"]: dict(p, style=data["style"]) for p in data["points"]}


def run(args) -> int:
    import json

    rows = arch_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    n = max(len(r["arch"]) for r in rows)
    print(f"{'arch':<{n}} {'params':>10} {'GMAC@256²':>10} {'GMAC@480x640':>13}  {'measured (style, grain, fps)':<38} "
          "description")
    for r in rows:
        m = r["measured"]
        point = (f"{m['style']} {m['steps']} steps: {m['style_strength']:.3f}, {m['grain']:.2f}, {m['fps_fp32']:.0f}"
                 if m else "-")
        print(f"{r['arch']:<{n}} {r['params']:>10,} {r['gmac_256x256']:>10.3f} {r['gmac_480x640']:>13.3f}  {point:<38} "
              f"{r['description']}")
    return 0
