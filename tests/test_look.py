"""The look: grain and edge-stripe measures, the shift-equivariance term that removes grain, the turn term that makes
strokes follow the photo, deeper and multi-scale style taps, and data paths recorded relative to the data root."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from toolkit.config import LossConfig
from toolkit.losses import build_loss, gram_matrix, load_vgg
from toolkit.losses.shift import shift_equivariance
from toolkit.losses.turns import stroke_directions, turn_equivariance
from toolkit.metrics import edge_stripe, edge_stripe_change, flat_mask, grain, lattice
from toolkit.paths import portable_path, resolve_data_path

from conftest import benchmark, natural_image, require_shared, tiny_model


def lattice_grain(h: int, w: int, amplitude: float, seed: int = 0) -> np.ndarray:
    """Noise texture made at half resolution and laid out by a stride-2 bilinear upsample (what nano's head does)."""
    half = torch.from_numpy(np.random.default_rng(seed).random((1, 1, h // 2, w // 2), dtype=np.float32))
    up = torch.nn.functional.interpolate(half, scale_factor=2, mode="bilinear", align_corners=False)[0, 0].numpy()
    return np.repeat((0.5 + amplitude * (up - 0.5))[..., None], 3, axis=2)


def test_grain_is_about_one_on_unstructured_noise_and_high_on_lattice_locked_texture():
    noise = np.repeat(np.random.default_rng(1).random((128, 128, 1)), 3, axis=2)
    assert grain(noise) == pytest.approx(1.0, abs=0.05)
    assert grain(lattice_grain(128, 128, 0.5)) > 1.5


def cell_squares(h: int, w: int, period: int, amplitude: float = 0.3, seed: int = 0) -> np.ndarray:
    """Faint noise with a one-pixel square outline in every `period`-px cell: what a 1/4- or 1/8-resolution trunk
    paints over a flat sky when pushed for texture there."""
    rows, cols = np.arange(h)[:, None] % period == 1, np.arange(w)[None, :] % period == 1
    y = 0.4 + 0.1 * np.random.default_rng(seed).random((h, w)) + amplitude * (rows | cols)
    return np.repeat(y[..., None], 3, axis=2)


def test_lattice_finds_squares_one_cell_wide_that_the_two_pixel_grain_measure_does_not():
    noise = np.repeat(np.random.default_rng(1).random((128, 128, 1)), 3, axis=2)
    assert lattice(noise) == pytest.approx(1.0, abs=0.1)
    for period in (4, 8):
        squares = cell_squares(128, 128, period)
        assert grain(squares) < 1.1  # a line every cell steps up at one pixel parity and down at the other
        assert lattice(squares) > 3.0


def test_grain_is_measured_on_the_photos_flat_areas_only():
    photo = natural_image(96, 96)
    photo[:, 48:] = np.repeat(np.random.default_rng(0).random((96, 48, 1)), 3, axis=2)  # busy right half
    mask = flat_mask(photo)
    assert mask[:, :40].mean() > 0.6 and mask[:, 56:].mean() < 0.1
    out = photo.copy()
    out[:, :48] = lattice_grain(96, 48, 0.3)
    assert grain(out, photo) > 1.3 > grain(photo, photo)


def test_edge_stripe_finds_a_bright_ring_the_photo_does_not_have():
    photo = natural_image(64, 80)
    assert edge_stripe(photo, photo) == 0.0
    out = photo.copy()
    out[:, -2:] = np.clip(out[:, -2:] + 0.3, 0, 1)
    assert edge_stripe(out, photo) > 0.15  # +0.3, less where the photo is already near white


def test_edge_stripe_counts_what_the_net_draws_at_the_border_not_a_photo_line_it_softens():
    photo = np.full((48, 64, 3), 0.6, np.float32)
    photo[-1] = 0.1  # a dark scan line along the bottom: the photo's own ring is 0.25 darker than inside
    removed, bright, darker = photo.copy(), photo.copy(), photo.copy()
    removed[-1] = 0.6   # the style paints over the line
    bright[-2:] = 0.8   # the style turns it into a bright stripe (the look issue's complaint)
    darker[-2:] = 0.0   # the style makes it a darker, wider line
    assert edge_stripe(photo, photo) == 0.0 and edge_stripe(removed, photo) == 0.0
    assert edge_stripe_change(removed, photo) == pytest.approx(0.25)  # the two-sided measure counts the softening
    assert edge_stripe(bright, photo) == pytest.approx(0.2)   # all of the bright step is drawn
    assert edge_stripe(darker, photo) == pytest.approx(0.6 - 0.25)  # the part beyond the photo's own dark step


class FrameAt48(torch.nn.Module):
    """The identity, but a bright bottom ring when the input is 48 px wide."""
    min_side = 8

    def forward(self, x):
        if x.shape[-1] != 48:
            return x
        y = x.clone()
        y[..., -2:, :] = (y[..., -2:, :] + 0.3).clamp(0, 1)
        return y


def test_the_quality_benchmark_finds_a_stripe_drawn_at_one_size_only():
    """benchmarks/quality.py measures the stripe at several long sides too: a frame at one size is still a frame."""
    quality = benchmark("quality")
    photo = natural_image(64, 80)
    assert quality.stripes_at(FrameAt48(), photo, 64)[0] < 0.02
    assert quality.stripes_at(FrameAt48(), photo, 48)[0] > 0.1  # +0.3, less where the photo is near white


def test_the_quality_benchmark_reports_where_the_stripe_is_worst_and_whether_the_border_draws_it():
    quality = benchmark("quality")
    images = [("plain.png", natural_image(64, 80, seed=1)), ("framed.png", natural_image(64, 80, seed=2))]
    per_photo = [{"photo": name, "edge_stripe": 0.0,
                  "edge_stripe_sizes": {48: quality.stripes_at(FrameAt48(), rgb, 48)[0]}} for name, rgb in images]
    per_photo[0]["edge_stripe_sizes"] = {48: 0.01}  # only the second photo's frame counts
    worst = quality.worst_stripe(FrameAt48(), images, per_photo)
    assert (worst["photo"], worst["long_side"]) == ("framed.png", 48)
    assert worst["stripe"] > 0.1 and worst["no_border"] < 0.01  # mirrored past its edge, the frame is gone

    class Invert(torch.nn.Module):  # a "style" that turns every step over, at the border as anywhere
        min_side = 8

        def forward(self, x):
            return 1 - x

    photo = natural_image(64, 80, seed=3)
    rows = [{"photo": "p.png", "edge_stripe": edge_stripe(1 - photo, photo), "edge_stripe_sizes": {}}]
    worst = quality.worst_stripe(Invert(), [("p.png", photo)], rows)
    assert worst["long_side"] is None and worst["stripe"] > 0.01
    assert worst["no_border"] == pytest.approx(worst["stripe"])  # the content's, not the border's


def test_the_stripe_survey_measures_every_picture_at_every_smaller_size_with_both_measures():
    survey = benchmark("stripe_survey")
    rows = survey.survey(FrameAt48(), [("a.png", natural_image(64, 80)), ("small.png", natural_image(40, 40))],
                         sides=(None, 48, 512))
    assert [(r["picture"], r["long_side"]) for r in rows] == [("a.png", None), ("a.png", 48), ("small.png", None)]
    assert rows[0]["edge_stripe"] < 0.01 and rows[1]["edge_stripe"] > 0.1  # the frame FrameAt48 draws at 48 px
    assert rows[1]["edge_stripe_change"] >= rows[1]["edge_stripe"]
    assert "1/3 over" in survey.summary(rows, "edge_stripe", 0.05)


def test_edge_term_is_zero_for_the_photos_own_border_and_sees_a_stripe_at_every_width():
    from toolkit.losses.edges import edge_stripes

    photo = torch.from_numpy(natural_image(64, 80)).permute(2, 0, 1)[None]
    assert float(edge_stripes(photo, photo)) == 0.0
    assert float(edge_stripes(photo + 0.1, photo)) < 1e-12  # a brightness shift keeps the photo's border steps
    for width in (2, 6):  # a stripe moved inward from the 2-px ring is still seen
        framed = photo.clone()
        framed[..., :width, :] += 0.3
        assert float(edge_stripes(framed, photo)) > 1e-3


def test_drawn_edge_term_lets_a_style_paint_over_a_scan_line_but_not_draw_one():
    from toolkit.losses.edges import edge_stripes

    photo = torch.full((1, 3, 48, 48), 0.6)
    photo[..., :2, :] = 0.3                      # the photo's own dark scan line along the top
    painted_over, turned_bright = photo.clone(), photo.clone()
    painted_over[..., :2, :] = 0.6
    turned_bright[..., :2, :] = 0.9
    assert float(edge_stripes(painted_over, photo, form="change")) > 1e-3
    assert float(edge_stripes(painted_over, photo, form="drawn")) < 1e-12
    assert float(edge_stripes(turned_bright, photo, form="drawn")) > 1e-3
    bright_line = photo.clone()
    bright_line[..., :2, :] = 0.9                # a photo with a bright line along the top, turned dark by 0.2:
    turned_dark = photo.clone()                  # "drawn" counts the 0.2, "change" the 0.5 from the photo's step
    turned_dark[..., :2, :] = 0.4
    ratio = float(edge_stripes(turned_dark, bright_line, form="drawn")) / float(edge_stripes(turned_dark, bright_line))
    assert ratio == pytest.approx((0.2 / 0.5) ** 2, rel=0.05)


def test_a_loss_config_with_an_unknown_edge_form_is_refused():
    from toolkit.errors import UserError

    with pytest.raises(UserError, match="edge form must be change or drawn"):
        LossConfig(edge_form="both")


@pytest.mark.parametrize("form", ["change", "drawn"])
def test_edge_term_trains_a_border_frame_away(form):
    """A net that paints a bright frame (its padding tells it where the border is) loses it under the term alone."""
    from toolkit.losses.edges import edge_stripes

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5, padding=2), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 5, padding=2))
    x = torch.rand(4, 3, 48, 48)
    with torch.no_grad():
        net[2].bias += 0.5  # zero padding at the border: the output's ring differs from its inside
    before = float(edge_stripes(net(x), x, form=form))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(100):
        loss = edge_stripes(net(x), x, form=form)
        opt.zero_grad()
        loss.backward()
        opt.step()
    floor = {"change": 1e-3, "drawn": 5e-4}[form]  # drawn counts only the frame's part beyond the photo's steps
    assert before > floor and float(edge_stripes(net(x), x, form=form)) < 0.2 * before


def test_stability_is_the_noise_itself_for_a_gentle_net_and_low_for_one_that_flips_with_the_last_bit():
    from toolkit.metrics import NOISE, stability

    x = torch.from_numpy(natural_image(64, 64)).permute(2, 0, 1)[None]
    identity = torch.nn.Identity()
    expected = -20 * np.log10(NOISE)  # PSNR of the noise itself
    assert stability(identity, x) == pytest.approx(expected, abs=0.5)

    class Threshold(torch.nn.Module):  # a texture switched on or off by tiny differences
        def forward(self, t):
            return torch.sigmoid(2000 * (t - t.mean()))

    assert stability(Threshold(), x) < expected - 10


def test_shift_term_is_zero_for_a_shift_equivariant_net_and_positive_for_a_strided_one():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64)
    pointwise = torch.nn.Conv2d(3, 3, 3, padding=1)
    assert float(shift_equivariance(pointwise, x, pointwise(x), stride=4)) < 1e-12
    strided = tiny_model()
    assert float(shift_equivariance(strided, x, strided(x), stride=strided.config.stride)) > 1e-6


def test_shift_term_trains_the_grain_away():
    """A few steps of the term alone make a strided net's output move with its input."""
    torch.manual_seed(0)
    net = tiny_model().train()
    x = torch.rand(4, 3, 48, 48)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    before = float(shift_equivariance(net, x, net(x), 4))
    for _ in range(30):
        loss = shift_equivariance(net, x, net(x), 4)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(shift_equivariance(net, x, net(x), 4)) < 0.2 * before


def stripes(n: int, along: str, period: int = 6) -> torch.Tensor:
    """A grey (1, 3, n, n) picture of parallel stripes running along the rows ("x") or the columns ("y")."""
    wave = 0.5 + 0.4 * torch.cos(torch.arange(n) * 2 * torch.pi / period)
    picture = wave[:, None].expand(n, n) if along == "x" else wave[None, :].expand(n, n)
    return picture.expand(1, 3, n, n).contiguous()


def test_stroke_directions_give_the_strokes_axis_with_their_coherence():
    centre = (..., slice(16, 48), slice(16, 48))
    along_x, along_y = stroke_directions(stripes(64, "x"))[centre], stroke_directions(stripes(64, "y"))[centre]
    assert torch.allclose(along_x[:, 0], torch.tensor(-1.0), atol=0.02) and along_x[:, 1].abs().max() < 0.02
    assert torch.allclose(along_y[:, 0], torch.tensor(1.0), atol=0.02)
    i = torch.arange(64.0)
    diagonal = (0.5 + 0.4 * torch.cos((i[:, None] + i[None, :]) * 2 * torch.pi / 8)).expand(1, 3, 64, 64)
    assert stroke_directions(diagonal)[centre][:, 1].abs().min() > 0.95
    dabs = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert stroke_directions(dabs)[centre].norm(dim=1).mean() < 0.3  # noise has no direction


class ScreenStripes(torch.nn.Module):
    """A 'style' that hatches every photo along the screen's rows, whatever the photo."""

    def forward(self, x):
        return 0.5 * x + 0.5 * stripes(x.shape[-1], "x")


class LatticeSamples(torch.nn.Module):
    """Keeps the pixels on a stride-4 lattice and blanks the rest: turned about a lattice point it turns with the
    photo, turned about the crop's centre it does not."""

    def forward(self, x):
        keep = torch.zeros_like(x)
        keep[..., ::4, ::4] = 1
        return x * keep


@pytest.mark.parametrize("side", [64, 63, 62, 61])  # crops of every side modulo the stride
@pytest.mark.parametrize("turns", [1, 2, 3])
def test_turn_term_turns_about_a_point_of_the_stride_lattice(turns, side):
    x = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(turns))
    net = LatticeSamples()
    assert float(turn_equivariance(net, x, net(x), stride=4, turns=turns, form="pixels")) < 1e-12
    about_centre = torch.rot90(net(torch.rot90(x, turns, (-2, -1))), -turns, (-2, -1))
    if (side - 1) % 4:  # the crop's centre is no lattice point (side 61's is): a naive turn would ask the impossible
        assert float(F.mse_loss(about_centre, net(x))) > 0.01


def test_turn_term_charges_strokes_fixed_to_the_screen_only_for_quarter_turns():
    x = torch.from_numpy(natural_image(64, 64, seed=4)).permute(2, 0, 1)[None].contiguous()
    net = ScreenStripes()
    quarter = float(turn_equivariance(net, x, net(x), stride=4, turns=1))
    half = float(turn_equivariance(net, x, net(x), stride=4, turns=2))
    assert quarter > 0.5 and half < 0.05 * quarter  # upside down, screen rows are still rows
    assert float(turn_equivariance(torch.nn.Identity(), x, x, stride=4, turns=1)) < 1e-12


@pytest.mark.parametrize("form", ["strokes", "pixels"])
def test_turn_term_trains_a_screen_direction_away(form):
    """A few steps of the term alone on a net that starts out hatching every photo along the screen's rows."""

    class Hatching(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = tiny_model()
            self.amount = torch.nn.Parameter(torch.tensor(1.0))

        def forward(self, x):
            return self.net(x) + self.amount * 0.3 * (stripes(x.shape[-1], "x") - 0.5)

    torch.manual_seed(0)
    net = Hatching().train()
    x = torch.from_numpy(np.stack([natural_image(48, 48, seed=s) for s in range(4)])).permute(0, 3, 1, 2).contiguous()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    before = float(turn_equivariance(net, x, net(x), 4, 1, form))
    for step in range(30):
        loss = turn_equivariance(net, x, net(x), 4, 1 + step % 3, form)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(turn_equivariance(net, x, net(x), 4, 1, form)) < 0.2 * before


def test_stroke_turn_measure_is_zero_for_strokes_of_the_photo_and_two_for_strokes_of_the_screen():
    from toolkit.metrics import stroke_turn

    class Net(torch.nn.Module):  # what the measure needs of a model: a forward and a stride
        def __init__(self, f):
            super().__init__()
            self.f, self.config = f, type("Config", (), {"stride": 4})()

        def forward(self, x):
            return self.f(x)

    photo = torch.from_numpy(natural_image(80, 96, seed=6)).permute(2, 0, 1)[None].contiguous()
    assert stroke_turn(Net(lambda x: x.clamp(0, 1) ** 2), photo) < 1e-6  # a colour grade keeps the photo's strokes
    assert stroke_turn(Net(lambda x: 0.05 * x + 0.95 * stripes(x.shape[-1], "x")), photo) > 1.8


def test_ship_records_every_look_measure_the_quality_benchmark_averages(tmp_path):
    """One list of averaged measures (toolkit.metrics.AVERAGED): a measure added to the benchmark reaches the
    manifest's quality block too (lattice once had to be added to both by hand)."""
    from PIL import Image

    from toolkit.metrics import AVERAGED
    from toolkit.zoo.ship import quality

    require_shared("weights", "vgg19_normalised_to_relu3_1.safetensors")
    files = []
    for seed in (1, 2):
        files.append(tmp_path / f"p{seed}.png")
        Image.fromarray((natural_image(48, 64, seed=seed) * 255).astype(np.uint8)).save(files[-1])
    q = quality(tiny_model().eval(), files[0], files, side=64)
    assert set(AVERAGED) <= set(q["mean"]) and len(q["per_photo"]) == 2
    for key in AVERAGED:
        assert q["mean"][key] == pytest.approx(np.mean([r[key] for r in q["per_photo"]]), rel=1e-6), key


def test_a_loss_config_with_an_unknown_turn_form_is_refused():
    from toolkit.errors import UserError

    with pytest.raises(UserError, match="turn form must be strokes or pixels"):
        LossConfig(turn_form="angles")


def test_multiscale_style_loss_keeps_one_target_gram_per_scale_and_tap():
    cfg = LossConfig(loss_net="random", style_layers=("relu1_1", "relu2_1"), content_layers=("relu2_1",),
                     style_scales=(1.0, 0.5))
    loss = build_loss(cfg, torch.rand(1, 3, 64, 64))
    assert loss.target_gram("relu1_1", 1).shape == loss.target_gram("relu1_1").shape
    assert not torch.equal(loss.target_gram("relu1_1", 1), loss.target_gram("relu1_1"))
    out = loss(torch.rand(2, 3, 32, 32, requires_grad=True), torch.rand(2, 3, 32, 32))
    single = build_loss(LossConfig(loss_net="random", style_layers=cfg.style_layers,
                                   content_layers=cfg.content_layers), torch.rand(1, 3, 64, 64))
    assert float(out["style"]) > 0 and single.style_scales == [1.0]


@pytest.mark.parametrize("scales", [(2.0,), (0.5, 1.0)], ids=["over one", "first not one"])
def test_style_scales_outside_zero_one_or_not_starting_at_one_are_refused(scales):
    with pytest.raises(ValueError, match="scales"):
        build_loss(LossConfig(loss_net="random", style_layers=("relu1_1",), content_layers=("relu1_1",),
                              style_scales=scales), torch.rand(1, 3, 32, 32))


def test_deep_taps_load_the_relu3_4_weights_whose_shallow_layers_match_the_relu3_1_file():
    require_shared("weights", "vgg19_normalised_to_relu3_4.safetensors")
    require_shared("weights", "vgg19_normalised_to_relu3_1.safetensors")
    deep, shallow = load_vgg(["relu3_1", "relu3_4"]), load_vgg(["relu3_1"])
    x = torch.rand(1, 3, 48, 48)
    a, b = deep(x), shallow(x)
    assert a["relu3_4"].shape == (1, 256, 12, 12)
    assert torch.equal(a["relu3_1"], b["relu3_1"])


def test_data_paths_are_recorded_relative_to_the_data_root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    (root / "styles").mkdir(parents=True)
    (root / "styles" / "x.png").write_bytes(b"")
    monkeypatch.setenv("TOOLKIT_DATA", str(root))
    recorded = portable_path(root / "styles" / "x.png")
    assert recorded == "$TOOLKIT_DATA/styles/x.png"
    assert resolve_data_path(recorded) == root / "styles" / "x.png"
    assert portable_path(tmp_path / "elsewhere.png") == str(tmp_path / "elsewhere.png")


def test_nano_fine_deploys_through_the_folded_head_exactly_on_every_pixel():
    from toolkit.models.deploy import deploy_form
    from toolkit.models import create_model

    model = tiny_model(create_model("nano_fine").config)
    deployed, record = deploy_form(model)
    assert deployed.config.head == "shuffle" and deployed.config.head_hidden == 6
    x = torch.rand(1, 3, 48, 64)
    with torch.no_grad():
        diff = (model(x) - deployed(x)).abs()
    assert float(diff.max()) < 1e-5
    assert record["exact"]


def test_init_from_a_net_with_a_narrower_head_takes_every_matching_tensor(tmp_path, caplog):
    from toolkit.checkpoint import save_checkpoint
    from toolkit.config import TrainConfig
    from toolkit.models import create_model
    from toolkit.train import _load_init

    nano = create_model("nano")
    src = save_checkpoint(tmp_path / "nano.safetensors", nano, {"name": "n"})
    fine = create_model("nano_fine")
    _load_init(fine, TrainConfig(arch="nano_fine", init=str(src)))
    own = fine.state_dict()
    for k, v in nano.state_dict().items():
        if not k.startswith("head."):
            assert torch.equal(own[k], v), k
    assert "head grown to the same function" in caplog.text


def test_init_from_a_net_without_the_context_ring_takes_every_tensor_and_says_what_differs(tmp_path, caplog):
    import dataclasses

    from toolkit.checkpoint import save_checkpoint
    from toolkit.config import TrainConfig
    from toolkit.models import TransformerNet, create_model
    from toolkit.train import _load_init

    old = TransformerNet(dataclasses.replace(create_model("nano_fine").config, context_pad=0))
    src = save_checkpoint(tmp_path / "old.safetensors", old, {"name": "o"})
    new = create_model("nano_fine")
    _load_init(new, TrainConfig(arch="nano_fine", init=str(src)))
    own = new.state_dict()
    assert all(torch.equal(own[k], v) for k, v in old.state_dict().items())
    assert f"context_pad 0 -> {new.config.context_pad}" in caplog.text and "left at initialisation" not in caplog.text


def test_balanced_tap_weights_make_every_tap_count_relative_to_where_photos_start():
    cfg = LossConfig(loss_net="random", style_layers=("relu1_1", "relu2_1", "relu3_1"), content_layers=("relu2_1",))
    loss = build_loss(cfg, torch.rand(1, 3, 64, 64))
    photos = torch.rand(4, 3, 32, 32) * 0.5
    weights = loss.balance_taps(photos)
    feats = loss.encode(photos)
    weighted = [w * torch.nn.functional.mse_loss(gram_matrix(feats[t]), loss.target_gram(t).expand(4, -1, -1)).item()
                for w, t in zip(weights, loss.style_layers)]
    assert max(weighted) == pytest.approx(min(weighted), rel=1e-4)  # equal at the photos' starting point
    assert loss.layer_weights == dict(zip(loss.style_layers, weights))


@pytest.mark.filterwarnings("ignore:using a random-weight VGG")
def test_style_balance_is_recorded_in_the_checkpoint(tmp_path, image_dir):
    from PIL import Image

    from toolkit.checkpoint import load_checkpoint
    from toolkit.config import TrainConfig
    from toolkit.train import train

    style = tmp_path / "style.png"
    Image.fromarray((natural_image(64, 64, seed=3) * 255).astype(np.uint8)).save(style)
    cfg = TrainConfig(name="b", style_image=str(style), content_dir=str(image_dir), arch="tiny", steps=2, size=32,
                      batch=2, workers=0, sample_every=0,
                      loss=LossConfig(loss_net="random", style_layers=("relu1_1", "relu2_1"),
                                      content_layers=("relu2_1",), style_balance=True))
    path = train(cfg, out_root=tmp_path / "runs", progress=False)
    weights = load_checkpoint(path).meta["train_config"]["loss"]["style_layer_weights"]
    assert len(weights) == 2 and all(w > 0 for w in weights)


def test_a_nano_init_grows_into_nano_fine_with_the_same_function(tmp_path):
    from toolkit.checkpoint import save_checkpoint
    from toolkit.config import TrainConfig
    from toolkit.models import create_model
    from toolkit.train import _load_init

    nano = tiny_model(create_model("nano").config, seed=3)
    src = save_checkpoint(tmp_path / "nano.safetensors", nano, {"name": "n"})
    fine = create_model("nano_fine")
    _load_init(fine, TrainConfig(arch="nano_fine", init=str(src)))
    x = torch.rand(2, 3, 48, 64)
    with torch.no_grad():
        assert float((fine.eval()(x) - nano(x)).abs().max()) < 1e-6


def test_phase_balance_costs_nothing_for_the_photos_own_edges_and_much_for_lattice_grain():
    from toolkit.losses.shift import phase_balance

    photo = torch.from_numpy(natural_image(128, 128)).permute(2, 0, 1)[None]
    grainy = torch.from_numpy(lattice_grain(128, 128, 0.5)).permute(2, 0, 1)[None].float()
    assert float(phase_balance(photo, photo)) == 0.0
    assert float(phase_balance(photo * 0.5 + 0.2, photo)) < 1e-3  # a colour grade keeps the photo's phases
    assert float(phase_balance(grainy, photo)) > 0.1


def test_the_zoom_sheet_shows_one_window_of_a_photo_per_net_at_the_zoom_asked(tmp_path):
    """benchmarks/zoom_sheet.py: photo | each net, the same window, nearest-neighbour zoom."""
    require_shared("content", "eval")
    from toolkit.data.images import load_rgb

    zoom_sheet = benchmark("zoom_sheet")
    out = tmp_path / "sheet.png"
    assert zoom_sheet.main(["frost", "frost", "--window", "baby.png:100,120", "--size", "20x30", "--zoom", "3",
                            "-o", str(out), "--threads", "1"]) == 0
    sheet = load_rgb(out)
    assert sheet.shape[:2] == (60 + 8, 3 * 90 + 2 * 8)  # one row and its gap band; three cells and two gaps
    assert np.abs(sheet[:60, 98:188] - sheet[:60, 196:286]).max() < 1e-6  # the same net twice, the same pixels
    with pytest.raises(SystemExit):
        zoom_sheet.main(["frost", "--window", "baby.png:500,0", "-o", str(out)])  # past the photo's 512 px


def test_lattice_balance_asks_for_no_cell_squares_that_the_grain_term_lets_through():
    from toolkit.losses.shift import lattice_balance, phase_balance

    photo = torch.from_numpy(natural_image(128, 128)).permute(2, 0, 1)[None]
    squares = torch.from_numpy(cell_squares(128, 128, 4)).permute(2, 0, 1)[None].float()
    assert float(lattice_balance(photo, photo)) == 0.0
    assert float(lattice_balance(photo * 0.5 + 0.2, photo)) < 0.01  # a colour grade keeps the photo's phases
    assert float(lattice_balance(squares, photo)) > 0.5 > 10 * float(phase_balance(squares, photo))


def test_tone_term_leaves_palette_contrast_and_fine_texture_free_but_not_where_light_and_dark_lie():
    from toolkit.losses.tone import LUMA, tone_loss

    photo = torch.from_numpy(natural_image(128, 128)).permute(2, 0, 1)[None]
    luma = (photo * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    frost = luma * torch.tensor([0.5, 0.6, 0.8]).view(1, 3, 1, 1) + 0.2  # a pale blue grade of the photo's light
    checks = (torch.arange(128)[:, None] + torch.arange(128)[None, :]) % 2  # texture finer than a cell
    assert float(tone_loss(frost, photo)) < 0.05
    assert float(tone_loss(frost + 0.1 * checks, photo)) < 0.05
    assert float(tone_loss(1 - photo, photo)) > 3.0  # light where the photo is dark: correlation -1
    elsewhere = torch.from_numpy(natural_image(128, 128, seed=5)).permute(2, 0, 1)[None]
    assert float(tone_loss(elsewhere, photo)) > 0.5


def test_layout_lost_is_zero_for_a_colour_grade_and_high_for_a_style_that_turns_light_to_dark():
    from toolkit.metrics import layout_lost

    photo = torch.from_numpy(natural_image(96, 128, seed=2)).permute(2, 0, 1)[None]
    assert layout_lost(photo * 0.5 + 0.3, photo) < 0.02
    assert layout_lost(1 - photo, photo) > 3.0


def test_tone_term_is_weighed_into_the_training_total_only_when_asked():
    import dataclasses

    from toolkit.config import TrainConfig
    from toolkit.train import training_losses

    net, x = tiny_model(), torch.from_numpy(natural_image(64, 64)).permute(2, 0, 1)[None]
    loss_fn = lambda out, batch: {"total": out.sum() * 0}  # noqa: E731 - only the optional terms
    off = training_losses(net, loss_fn, x, TrainConfig(), 0)
    on = training_losses(net, loss_fn, x, dataclasses.replace(TrainConfig(), loss=LossConfig(tone_weight=3.0)), 0)
    assert "tone" not in off and float(off["total"]) == 0.0
    assert float(on["tone"]) > 0 and float(on["total"]) == pytest.approx(3.0 * float(on["tone"]))


def test_style_patches_cover_the_style_on_the_densest_grid_under_the_cap():
    from toolkit.losses.patches import style_patches

    feats = torch.rand(1, 8, 34, 34)  # 32 x 32 patch positions
    assert style_patches(feats, max_patches=10_000).shape == (1024, 8, 3, 3)
    thinned = style_patches(feats, max_patches=300)  # stride 2: 16 x 16
    assert thinned.shape == (256, 8, 3, 3)
    assert torch.equal(thinned[1], feats[0, :, 0:3, 2:5])
    with pytest.raises(ValueError, match="larger style image"):
        style_patches(torch.rand(1, 8, 2, 5))


def test_patch_loss_is_zero_on_the_style_itself_and_pulls_other_features_towards_its_patches():
    from toolkit.losses.patches import PatchLoss

    torch.manual_seed(0)
    style = torch.rand(1, 16, 20, 20)
    loss = PatchLoss(style, max_style_patches=10_000)
    assert float(loss(style)) < 1e-10  # every patch's nearest is itself
    other = torch.rand(2, 16, 20, 20).mul(3).requires_grad_()
    start = float(loss(other))
    opt = torch.optim.Adam([other], lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        loss(other).backward()
        opt.step()
    assert float(loss(other)) < 0.2 * start


def test_patch_term_adds_to_the_perceptual_total_only_when_weighted():
    torch.manual_seed(0)
    style, content = torch.rand(1, 3, 64, 64), torch.rand(2, 3, 64, 64)
    cfg = LossConfig(loss_net="random", style_layers=("relu1_1", "relu2_1"), content_layers=("relu2_1",))
    with pytest.warns(UserWarning):
        plain = build_loss(cfg, style)(content, content)
        parts = build_loss(dataclasses.replace(cfg, patch_weight=2.0), style)(content, content)  # taps relu3_1 too
    assert "patch" not in plain
    assert float(parts["patch"]) > 0
    assert torch.allclose(parts["total"], plain["total"] + 2.0 * parts["patch"])


def test_patch_term_at_a_coarser_scale_matches_the_downscaled_output_to_the_downscaled_style():
    from toolkit.losses.perceptual import rescale

    torch.manual_seed(0)
    style, content = torch.rand(1, 3, 64, 64), torch.rand(2, 3, 64, 64)
    cfg = LossConfig(loss_net="random", style_layers=("relu1_1",), content_layers=("relu1_1",), patch_weight=1.0,
                     patch_layer="relu1_1", patch_scale=0.5)
    with pytest.warns(UserWarning):
        loss = build_loss(cfg, style)
    half = loss.encoder(rescale(style, 0.5))["relu1_1"]
    assert torch.equal(loss.patch.patches.flatten(1)[0], F.unfold(half, 3)[0, :, 0])  # the style's patches at 1/2
    assert float(loss(style, content)["patch"]) < 1e-10  # the style, downscaled alike, is its own nearest patch
    assert float(loss(content[:1], content[:1])["patch"]) > 0


@pytest.mark.filterwarnings("ignore:using a random-weight VGG")
@pytest.mark.parametrize("flags, recorded, recipe, term", [
    (["--patch-weight", "3", "--patch-scale", "0.5"], {"patch_weight": 3.0, "patch_scale": 0.5},
     "--patch-weight 3.0 --patch-scale 0.5", "patch"),
    (["--turn-weight", "5", "--turn-form", "pixels"], {"turn_weight": 5.0, "turn_form": "pixels"},
     "--turn-weight 5.0 --turn-form pixels", "turn"),
    (["--lattice-weight", "100"], {"lattice_weight": 100.0}, "--lattice-weight 100.0", "lattice"),
], ids=["patch", "turn", "lattice"])
def test_a_term_from_the_command_line_is_trained_recorded_and_in_the_ship_recipe(tmp_path, image_dir, flags, recorded,
                                                                                  recipe, term):
    from PIL import Image

    from toolkit.checkpoint import load_checkpoint
    from toolkit.cli import main
    from toolkit.zoo.ship import train_command

    style = tmp_path / "style.png"
    Image.fromarray((natural_image(64, 64, seed=3) * 255).astype(np.uint8)).save(style)
    assert main(["train", "--style-image", str(style), "--content-dir", str(image_dir), "--name", "p", "--arch",
                 "tiny", "--steps", "2", "--size", "32", "--batch", "2", "--workers", "0", "--sample-every", "0",
                 "--loss-net", "random", *flags, "--out", str(tmp_path / "runs")]) == 0
    meta = load_checkpoint(tmp_path / "runs" / "p" / "p.safetensors").meta
    assert {k: meta["train_config"]["loss"][k] for k in recorded} == recorded
    assert all(step[term] > 0 for step in meta["history"])
    assert recipe in train_command(meta["train_config"], "p")


def test_the_loss_ceiling_probe_optimises_pixels_toward_the_style_under_a_recipe_with_variants(tmp_path):
    """benchmarks/loss_ceiling.py: what a training loss asks for without a net (Gatys-style pixel optimisation)."""
    from PIL import Image

    from toolkit.config import TrainConfig
    from toolkit.train import style_loss

    ceiling = benchmark("loss_ceiling")
    style = tmp_path / "style.png"
    Image.fromarray((natural_image(64, 64, seed=3) * 255).astype(np.uint8)).save(style)
    recipe = TrainConfig(style_image=str(style), loss=LossConfig(
        loss_net="random", style_layers=("relu1_1", "relu2_1"), content_layers=("relu2_1",), style_weight=1e4,
        temporal_weight=50.0, shift_weight=1.0, turn_weight=5.0, style_balance=True))
    name, changes = ceiling.parse_variant("wide:style_scales=1;0.5,tv_weight=0,style_size=48,patch_layer=relu2_1")
    cfg = ceiling.with_overrides(recipe, changes)
    assert name == "wide" and cfg.loss.style_scales == (1.0, 0.5) and cfg.loss.tv_weight == 0 and cfg.style_size == 48
    assert cfg.loss.patch_layer == "relu2_1"
    with pytest.raises(SystemExit, match="not a loss field"):
        ceiling.with_overrides(recipe, {"bogus": "1"})
    photo = torch.from_numpy(natural_image(48, 48, seed=5)).permute(2, 0, 1)[None].contiguous()
    out, last = ceiling.optimise(recipe, photo, iters=30, lr=0.05)
    assert out.shape == photo.shape and 0 <= out.min() and out.max() <= 1
    assert not {"temporal", "shift", "turn"} & set(last)  # the terms that measure a net's function are left out
    loss = style_loss(recipe)
    loss.balance_taps(photo)
    assert float(loss(out, photo)["style"]) < 0.7 * float(loss(photo, photo)["style"])


def test_sheets_lay_pictures_side_by_side_and_stack_rows_of_any_width_on_white():
    """toolkit.sheets: what the look benchmarks' contact sheets are assembled with."""
    from toolkit.sheets import side_by_side, stack_rows

    a, b = np.zeros((10, 6, 3), np.float32), np.full((10, 4, 3), 0.5, np.float32)
    row = side_by_side([a, b], gap=3)
    assert row.shape == (10, 13, 3) and np.all(row[:, 6:9] == 1) and np.all(row[:, 9:] == 0.5)
    sheet = stack_rows([row, a], gap=2)
    assert sheet.shape == (24, 13, 3)
    assert np.all(sheet[10:12] == 1) and np.all(sheet[12:22, :6] == 0) and np.all(sheet[12:, 6:] == 1)


def test_the_teacher_probe_compares_the_kind_of_stroke_in_each_window_not_where_strokes_fall():
    """benchmarks/teacher_probe.py: a gram teacher term is blind to strokes moved within a 64-px window; mse is not."""
    probe = benchmark("teacher_probe")
    name, variant = probe.parse_variant("g:form=gram,weight=50,layers=relu1_1;relu3_1")
    assert name == "g" and variant == {"form": "gram", "weight": 50.0, "layers": ("relu1_1", "relu3_1")}
    with pytest.raises(SystemExit, match="NAME:form"):
        probe.parse_variant("x:form=pixels")
    torch.manual_seed(0)
    target = {"relu3_1": torch.rand(2, 8, 32, 32)}  # relu3 taps: 4 px a cell, so a window is 16 x 16 cells
    moved = target["relu3_1"].clone()
    moved[..., :16, :16] = moved[..., :16, :16].flip(-1).flip(-2)  # the same strokes, elsewhere in their window
    term = lambda out, form: float(probe.teacher_term({"relu3_1": out}, target, form, ["relu3_1"]))  # noqa: E731
    assert term(moved, "gram") < 1e-10 and term(moved, "mse") > 0.01
    assert term(target["relu3_1"] * 1.5, "gram") > 1e-3  # stronger strokes are a different kind


def test_the_teacher_probe_fine_tunes_a_copy_of_the_net_toward_its_targets_under_the_recipe(tmp_path):
    """The teacher term starts at 1 (relative to the first batch) and falls as the net learns reachable targets."""
    from types import SimpleNamespace

    from PIL import Image

    from toolkit.config import TrainConfig

    probe = benchmark("teacher_probe")
    style = tmp_path / "style.png"
    Image.fromarray((natural_image(64, 64, seed=3) * 255).astype(np.uint8)).save(style)
    recipe = TrainConfig(style_image=str(style), lr=1e-2, loss=LossConfig(
        loss_net="random", style_layers=("relu1_1", "relu2_1"), content_layers=("relu2_1",), style_weight=1e4))
    photos = torch.stack([torch.from_numpy(natural_image(64, 64, seed=s)).permute(2, 0, 1) for s in range(6)])
    targets = photos.flip(1)  # channels swapped: a target the net can reach
    net = tiny_model()
    _, history = probe.distil(SimpleNamespace(model=net), recipe, photos, targets,
                                  {"form": "mse", "weight": 100.0, "layers": ("relu1_1",)}, steps=25)
    assert len(history) == 25 and history[0]["teacher"] == pytest.approx(1.0)
    assert np.mean([h["teacher"] for h in history[-5:]]) < 0.8  # pulled toward the targets
    shipped = tiny_model().state_dict().values()  # the net it started from is left as it was
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), shipped))


def test_the_seed_probe_starts_as_the_net_and_adds_a_screen_fixed_texture_of_coprime_periods():
    """benchmarks/seed_probe.py: two learned tiles pinned to the screen, added to the stem through a zero 1x1 conv."""
    from torch import nn

    probe = benchmark("seed_probe")
    net = tiny_model().eval()
    x = torch.from_numpy(natural_image(40, 56, seed=2)).permute(2, 0, 1)[None].contiguous()
    with torch.no_grad():
        before = net(x)
        seed = probe.screen_seed([4, 6], 2, net.config.widths[0])
        net.stem = nn.Sequential(net.stem, seed)
        assert torch.equal(net(x), before)  # the projection starts at zero: the same function
        nn.init.normal_(seed.proj.weight)
        tex = seed.texture(25, 30)
        assert tex.shape == (1, net.config.widths[0], 25, 30)
        assert torch.allclose(tex[..., 12:, :], tex[..., :13, :])  # repeats every lcm(4, 6) = 12 pixels
        assert not torch.allclose(tex[..., 6:, :], tex[..., :19, :])  # but not every 6
        assert not torch.allclose(net(x), before)
        assert torch.equal(net(x), net(x))  # a fixed texture: no randomness at run time


def test_the_seed_probe_can_draw_its_tile_from_the_style_and_keep_it_fixed_while_the_projection_learns():
    from torch import nn

    probe = benchmark("seed_probe")
    tile = probe.style_tile(natural_image(30, 40, seed=4), 20)  # 15 x 20, mirrored into 30 x 40
    assert tile.shape == (1, 3, 30, 40)
    assert torch.equal(tile, tile.flip(-1)) and torch.equal(tile, tile.flip(-2))  # seamless when repeated
    assert tile.mean((0, 2, 3)).abs().max() < 1e-4 and torch.allclose(tile.std((0, 2, 3), unbiased=False),
                                                                      torch.ones(3), atol=1e-3)
    net = tiny_model()
    seed = probe.screen_seed([], 0, net.config.widths[0], [tile])
    net.stem = nn.Sequential(net.stem, seed)
    assert seed.texture(50, 70).shape == (1, net.config.widths[0], 50, 70)
    opt = probe.probe_optimizer(net, seed, 1e-3, 0.0)
    x = torch.from_numpy(natural_image(40, 56)).permute(2, 0, 1)[None].contiguous()
    tile_before, proj_before = seed.tiles[0].detach().clone(), seed.proj.weight.detach().clone()
    net(x).mean().backward()
    opt.step()
    assert torch.equal(seed.tiles[0], tile_before)  # --seed-lr 0: the texture stays the style's
    assert not torch.equal(seed.proj.weight, proj_before)  # but the net learns to use it


def test_the_look_scale_benchmark_needs_the_eval_photos(tmp_path, monkeypatch, capsys):
    """benchmarks/look_scale.py (a style on a 12 MP photo, at full resolution and capped) says what is missing."""
    monkeypatch.setenv("TOOLKIT_DATA", str(tmp_path))
    assert benchmark("look_scale").main(["--style", "frost"]) == 2
    assert "eval photos are missing" in capsys.readouterr().err
