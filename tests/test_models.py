"""The TransformerNet family: preset sizes match hand counts; every knob combination runs at odd sizes."""

from __future__ import annotations

import dataclasses
import itertools
import re

import pytest
import torch
import torch.nn.functional as F

from toolkit.config import ArchConfig
from toolkit.errors import UserError
from toolkit.flops import count_macs
from toolkit.models import ARCHS, TransformerNet, arch_config, count_params, create_model
from toolkit.stylize import stylize_tensor


def conv_macs(cin, cout, k, pixels, groups=1):
    return cin * cout * k * k * pixels // groups


def test_johnson2016_matches_hand_counted_params_and_macs():
    model = create_model("johnson2016")
    hw = 480 * 640
    hand = (conv_macs(3, 32, 9, hw) + conv_macs(32, 64, 3, hw // 4) + conv_macs(64, 128, 3, hw // 16)
            + 10 * conv_macs(128, 128, 3, hw // 16)
            + conv_macs(128, 64, 3, hw // 4) + conv_macs(64, 32, 3, hw) + conv_macs(32, 3, 9, hw))
    assert count_macs(model, 480, 640) == hand
    assert abs(hand / 1e9 - 47.2) < 0.1
    weights = 3 * 32 * 81 + 32 * 64 * 9 + 64 * 128 * 9 + 10 * 128 * 128 * 9 + 128 * 64 * 9 + 64 * 32 * 9 + 32 * 3 * 81
    biases = 32 + 64 + 128 + 10 * 128 + 64 + 32 + 3
    norm_affine = 2 * (32 + 64 + 128 + 10 * 128 + 64 + 32)
    assert count_params(model) == weights + biases + norm_affine
    assert 1.67e6 < count_params(model) < 1.69e6


def test_nano_matches_hand_counted_macs_and_stays_under_budget():
    cfg = arch_config("nano")
    a, b = cfg.widths
    m = b // cfg.bottleneck_k
    hw = (480 + 2 * cfg.context_pad) * (640 + 2 * cfg.context_pad)  # the net runs on the image and its context ring
    hand = (conv_macs(3, a, 4, hw // 4) + conv_macs(a, b, 4, hw // 16)
            + cfg.res_blocks * (conv_macs(b, m, 1, hw // 16) + conv_macs(m, m, 3, hw // 16) + conv_macs(m, b, 1, hw // 16))
            + conv_macs(b, a, 3, hw // 16) + conv_macs(a, 3, cfg.last_kernel, hw))
    assert count_macs(create_model("nano"), 480, 640) == hand
    assert hand <= 0.6e9


@pytest.mark.parametrize("mode, ring", [("reflect", 4), ("replicate", 8)])
def test_context_ring_pads_the_frame_around_the_net_and_crops_it_back(mode, ring):
    cfg = dataclasses.replace(arch_config("tiny"), context_pad=ring, context_mode=mode)
    model = TransformerNet(cfg).eval()
    for h, w in ((32, 32), (17, 33)):
        x = torch.rand(1, 3, h, w)
        padded = F.pad(x, (ring, ring + (-w) % 4, ring, ring + (-h) % 4), mode=mode)
        with torch.no_grad():
            assert torch.equal(model(x), model._forward(padded)[..., ring:ring + h, ring:ring + w])
    x = torch.rand(1, 3, 8, 8)  # min_side (reflect needs pads below the side: 4 + 3 < 8; replicate needs none)
    assert model(x).shape == x.shape


def test_context_ring_is_refused_wider_than_its_mode_allows_or_in_an_unknown_mode():
    cfg = arch_config("tiny")
    for mode, bad in (("reflect", -1), ("reflect", cfg.stride + 1), ("replicate", 2 * cfg.stride + 1)):
        with pytest.raises(UserError, match=f"context_pad must be 0..[0-9]+ with context_mode {mode}"):
            dataclasses.replace(cfg, context_pad=bad, context_mode=mode)
    with pytest.raises(UserError, match="context_mode must be one of reflect, replicate"):
        dataclasses.replace(cfg, context_mode="wrap")


def _trunk_reach(model) -> int:
    """How many lowest-resolution cells one cell's change travels through the residual blocks."""
    x = torch.rand(1, model.config.widths[-1], 41, 41)
    poked = x.clone()
    poked[..., 20, 20] += 1.0
    with torch.no_grad():
        changed = (model.res(poked) - model.res(x)).abs().amax(1)[0] > 0
    return int(changed.nonzero()[:, 0].max()) - 20


def test_dilated_trunk_reaches_twice_as_far_at_the_same_cost():
    plain, reach = create_model("nano_lite_fine").eval(), create_model("nano_lite_reach").eval()
    assert count_params(reach) == count_params(plain)
    assert count_macs(reach, 480, 640) == count_macs(plain, 480, 640)
    assert _trunk_reach(plain) == 3 and _trunk_reach(reach) == 1 + 2 + 2
    x = torch.rand(1, 3, 8, 8)  # the smallest input still has more lowest-resolution cells than the largest dilation
    assert reach(x).shape == x.shape


@pytest.mark.parametrize("dilations, message", [((1, 2), "one whole number >= 1 per residual block"),
                                                ((1, 0, 1), "one whole number >= 1"),
                                                ((1, 2, 4), "below 4")])
def test_dilations_that_do_not_fit_the_trunk_are_refused(dilations, message):
    with pytest.raises(UserError, match=message):
        dataclasses.replace(arch_config("nano_lite_reach"), dilations=dilations)


def test_macs_scale_with_pixels():
    model = create_model("caffe2go")
    assert count_macs(model, 512, 512) == 4 * count_macs(model, 256, 256)


def test_every_preset_keeps_shape_and_range_at_odd_sizes():
    for name in ARCHS:
        model = create_model(name).eval()
        x = torch.rand(1, 3, 37, 53)
        y = stylize_tensor(model, x)
        assert y.shape == x.shape, name
        assert 0.0 <= float(y.min()) and float(y.max()) <= 1.0


KNOBS = {
    "block": ["residual", "bottleneck", "dwsep"],
    "norm": ["instance", "batch", "none"],
    "upsample": ["nearest", "bilinear", "transposed", "pixelshuffle", "conv_bilinear"],
    "head": ["conv", "shuffle"],
    "padding": ["reflect", "zero"],
}


@pytest.mark.parametrize("down_stages,widths", [(2, (4, 8, 8)), (3, (4, 8, 8)), (2, (4, 8))])
def test_every_knob_combination_runs_and_keeps_shape(down_stages, widths):
    x = torch.rand(1, 3, 32, 48)
    # every value of every knob, each combined with every value of the knob after it (pairwise coverage)
    names = list(KNOBS)
    combos = [{a: va, b: vb} for a, b in zip(names, names[1:]) for va, vb in itertools.product(KNOBS[a], KNOBS[b])]
    for knobs in combos:
        cfg = ArchConfig(widths=widths, res_blocks=1, down_stages=down_stages, first_kernel=3, last_kernel=3, **knobs)
        model = TransformerNet(cfg).eval()
        with torch.no_grad():
            assert model(x).shape == x.shape, knobs


@pytest.mark.parametrize("kernel", [3, 5, 9])
def test_first_and_last_kernel_sizes(kernel):
    model = create_model("caffe2go", first_kernel=kernel, last_kernel=kernel, down_stages=2).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 32, 32)).shape == (1, 3, 32, 32)


def test_bad_arch_knobs_are_user_errors():
    with pytest.raises(UserError, match="upsample"):
        ArchConfig(upsample="bicubic")
    with pytest.raises(UserError, match="down_stages"):
        ArchConfig(widths=(8,), down_stages=3)
    with pytest.raises(UserError, match="did you mean 'nano'"):
        create_model("nanoo")


def test_registering_a_duplicate_arch_name_raises():
    with pytest.raises(ValueError, match="registered twice"):
        ARCHS.register("nano")(lambda: ArchConfig())


def test_archs_table_keeps_its_columns_aligned_for_every_preset_name(capsys):
    from toolkit.cli import main

    assert main(["archs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + len(ARCHS.names())
    params_end = {re.match(r"(\S+)\s+(\S+)", line).end(2) for line in lines}  # right-aligned under "params"
    assert len(params_end) == 1, lines


def test_archs_shows_the_measured_look_of_the_styles_shipped_on_each_preset(capsys):
    import json

    from toolkit.cli import main
    from toolkit.commands.archs import arch_rows
    from toolkit.paths import REPO_ROOT

    path = REPO_ROOT / "exported" / "manifest.json"
    if not path.is_file():
        pytest.skip("exported/manifest.json is absent in this checkout")
    styles = json.loads(path.read_text())["styles"]
    by_arch = {}
    for style, entry in styles.items():
        by_arch.setdefault(entry["arch"], []).append(style)
    rows = {r["arch"]: r for r in arch_rows()}
    assert main(["archs"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    for arch, names in by_arch.items():
        assert sorted(p["style"] for p in rows[arch]["shipped"]) == sorted(names), arch
        if rows[arch]["measured"] is None:  # a same-recipe Pareto point, where there is one, is shown instead
            strength = styles[names[0]]["quality"]["mean"]["style_strength"]
            want = f"{names[0]} shipped: {strength:.3f}" if len(names) == 1 else f"{len(names)} styles shipped: "
            assert want in lines[arch], lines[arch]
    assert all(not rows[a]["shipped"] for a in rows if a not in by_arch)
