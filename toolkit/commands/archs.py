from __future__ import annotations

HELP = ("list architecture presets with params, MACs at 256x256 and 480x640, and the measured quality/speed point "
        "(benchmarks/pareto.py) where one was trained, or else that of the styles shipped on it")


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def arch_rows() -> list[dict]:
    from toolkit.flops import count_macs
    from toolkit.models import ARCHS, count_params, create_model

    measured, shipped = measured_points(), shipped_points()
    rows = []
    for name in ARCHS:
        model = create_model(name)
        rows.append({"arch": name, "params": count_params(model), "gmac_256x256": count_macs(model, 256, 256) / 1e9,
                     "gmac_480x640": count_macs(model, 480, 640) / 1e9, "measured": measured.get(name),
                     "shipped": shipped.get(name, []),
                     "description": (ARCHS.get(name).__doc__ or "").strip().splitlines()[0]})
    return rows


def shipped_points() -> dict:
    """{arch: [point of each style shipped on it]} from exported/manifest.json: the style strength and grain `toolkit
    ship` measured (means over its photos at long side 512). Not its fps: each ship timed on its own day's host, so
    they do not compare across styles."""
    from toolkit.manifest import read_manifest
    from toolkit.paths import REPO_ROOT

    points = {}
    for style, entry in sorted(read_manifest(REPO_ROOT / "exported").get("styles", {}).items()):
        look = entry.get("quality", {}).get("mean", {})
        if {"style_strength", "grain"} <= look.keys():
            points.setdefault(entry.get("arch"), []).append(
                {"style": style, "style_strength": look["style_strength"], "grain": look["grain"]})
    return points


def _point_text(measured: dict | None, shipped: list[dict]) -> str:
    if measured:
        m = measured
        return f"{m['style']} {m['steps']} steps: {m['style_strength']:.3f}, {m['grain']:.2f}, {m['fps_fp32']:.0f}"
    if len(shipped) == 1:
        s = shipped[0]
        return f"{s['style']} shipped: {s['style_strength']:.3f}, {s['grain']:.2f}"
    if shipped:
        strength, grain = ([p[k] for p in shipped] for k in ("style_strength", "grain"))
        return (f"{len(shipped)} styles shipped: {min(strength):.3f}-{max(strength):.3f}, "
                f"{min(grain):.2f}-{max(grain):.2f}")
    return "-"


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
    points = [_point_text(r["measured"], r["shipped"]) for r in rows]
    header = "measured (style strength, grain, fps)"
    w = max(len(header), *map(len, points))
    print(f"{'arch':<{n}} {'params':>10} {'GMAC@256²':>10} {'GMAC@480x640':>13}  {header:<{w}} description")
    for r, point in zip(rows, points):
        print(f"{r['arch']:<{n}} {r['params']:>10,} {r['gmac_256x256']:>10.3f} {r['gmac_480x640']:>13.3f}  "
              f"{point:<{w}} {r['description']}")
    return 0
