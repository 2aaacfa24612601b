from __future__ import annotations

HELP = "list shipped styles with their arch, params and MACs at 256x256 and 480x640"


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def style_rows() -> list[dict]:
    from toolkit.flops import count_macs
    from toolkit.models import count_params
    from toolkit.zoo import load_style, shipped_styles

    rows = []
    for name in shipped_styles():
        ckpt = load_style(name)
        m = ckpt.model
        rows.append({"style": name, "arch": ckpt.meta.get("train_config", {}).get("arch", "?"),
                     "params": count_params(m), "gmac_256x256": count_macs(m, 256, 256) / 1e9,
                     "gmac_480x640": count_macs(m, 480, 640) / 1e9,
                     "source": ckpt.meta.get("style_source", "")})
    return rows


def run(args) -> int:
    import json

    rows = style_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no shipped styles yet; train one with `toolkit train` and use --checkpoint")
        return 0
    print(f"{'style':<16} {'arch':<10} {'params':>9} {'GMAC@256²':>10} {'GMAC@480x640':>13}  source")
    for r in rows:
        print(f"{r['style']:<16} {r['arch']:<10} {r['params']:>9,} {r['gmac_256x256']:>10.3f} "
              f"{r['gmac_480x640']:>13.3f}  {r['source']}")
    return 0
