from __future__ import annotations

HELP = "list architecture presets with params and MACs at 256x256 and 480x640"


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def arch_rows() -> list[dict]:
    from toolkit.flops import count_macs
    from toolkit.models import ARCHS, count_params, create_model

    rows = []
    for name in ARCHS:
        model = create_model(name)
        rows.append({"arch": name, "params": count_params(model), "gmac_256x256": count_macs(model, 256, 256) / 1e9,
                     "gmac_480x640": count_macs(model, 480, 640) / 1e9,
                     "description": (ARCHS.get(name).__doc__ or "").strip().splitlines()[0]})
    return rows


def run(args) -> int:
    import json

    rows = arch_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'arch':<12} {'params':>10} {'GMAC@256²':>10} {'GMAC@480x640':>13}  description")
    for r in rows:
        print(f"{r['arch']:<12} {r['params']:>10,} {r['gmac_256x256']:>10.3f} {r['gmac_480x640']:>13.3f}  "
              f"{r['description']}")
    return 0
