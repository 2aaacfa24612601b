"""Image stylisation: any size or mode in, same size out; bad input gives one-line errors and exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import toolkit.stylize as stylize_module
from toolkit.data.images import decode_image
from toolkit.errors import UserError
from toolkit.stylize import MAX_SIDE, run_side, stylize_rgb, stylize_tensor

from conftest import natural_image, tiny_model


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "toolkit", *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_odd_sizes_are_padded_and_cropped_back():
    model = tiny_model()
    x = torch.rand(1, 3, 45, 67)
    y = stylize_tensor(model, x)
    assert y.shape == x.shape
    # the top-left region does not depend on how much padding the bottom/right needed
    x2 = torch.nn.functional.pad(x, (0, 3, 0, 5), mode="reflect")[..., :48, :68]
    y2 = stylize_tensor(model, x2)
    assert torch.allclose(y[..., :16, :16], y2[..., :16, :16], atol=0.05)


def test_size_option_runs_smaller_and_returns_the_input_size():
    out = stylize_rgb(tiny_model(), natural_image(90, 120), size=64)
    assert out.shape == (90, 120, 3)


def test_the_net_runs_at_the_size_asked_else_at_most_max_side():
    """A net paints strokes of a fixed size in pixels, so by default a photo over MAX_SIDE runs capped."""
    assert MAX_SIDE == 1536
    assert run_side(3024, 4032, max_side=MAX_SIDE) == 1536         # a 12 MP photo runs at 1536 x 1152
    assert run_side(4032, 3024, max_side=MAX_SIDE) == 1536         # portrait alike
    assert run_side(1152, 1536, max_side=MAX_SIDE) is None         # at the cap: its own size
    assert run_side(300, 400, max_side=MAX_SIDE) is None           # smaller photos are never upscaled by the cap
    assert run_side(3024, 4032, max_side=0) is None                # 0: the full resolution
    assert run_side(3024, 4032) is None                            # the library's default: the full resolution
    assert run_side(300, 400, size=800, max_side=MAX_SIDE) == 800  # --size wins, up or down
    assert run_side(300, 400, size=400) is None


def test_cli_runs_a_photo_over_max_side_capped_and_returns_its_size(tmp_path, tiny_checkpoint):
    """Capped, the net runs at --max-side and by default the detail pass is added; --no-detail is the one pass."""
    from toolkit.checkpoint import load_checkpoint

    rgb = natural_image(48, 64, seed=4)
    photo = tmp_path / "p.png"
    Image.fromarray((rgb * 255 + 0.5).astype(np.uint8)).save(photo)
    rgb = decode_image(photo).rgb
    model = load_checkpoint(tiny_checkpoint).model.eval()
    runs = {"32": (["--max-side", "32"], stylize_rgb(model, rgb, 32, detail=True)),
            "32-one-pass": (["--max-side", "32", "--no-detail"], stylize_rgb(model, rgb, 32)),
            "0": (["--max-side", "0"], stylize_rgb(model, rgb))}
    got = {}
    for name, (flags, expected) in runs.items():
        res = cli("stylize", photo, "--checkpoint", tiny_checkpoint, *flags, "-o", tmp_path / name)
        assert res.returncode == 0, res.stderr
        got[name] = decode_image(tmp_path / name / "p.tiny.png").rgb
        assert got[name].shape == rgb.shape and np.abs(got[name] - expected).max() <= 1.5 / 255, name
    assert np.abs(got["32-one-pass"] - got["0"]).mean() > 0.01  # the cap changes what the net paints
    assert np.abs(got["32-one-pass"] - got["32"]).mean() > 1 / 255  # and the detail pass is there


def sharpness(rgb: np.ndarray) -> float:
    return float(np.abs(np.diff(rgb, axis=0)).mean() + np.abs(np.diff(rgb, axis=1)).mean())


def test_the_detail_pass_adds_only_what_the_capped_run_is_too_coarse_to_hold():
    """Capped at 48 px, a 192-px picture keeps the capped run's look seen whole at 2/3 of that size, and takes the
    full-resolution run's fine band: at 100% it is as sharp as that run, where the upscale alone blurs."""
    from toolkit.data.images import resize_long_side

    model, rgb = tiny_model(), natural_image(144, 192, seed=2)
    full, capped, detailed = stylize_rgb(model, rgb), stylize_rgb(model, rgb, 48), stylize_rgb(model, rgb, 48, True)

    def seen_whole(img):
        return resize_long_side(img, 32)

    assert (np.abs(seen_whole(detailed) - seen_whole(capped)).mean()
            < 0.1 * np.abs(seen_whole(full) - seen_whole(capped)).mean())
    assert sharpness(capped) < 0.7 * sharpness(full)
    assert sharpness(detailed) == pytest.approx(sharpness(full), rel=0.15)
    # where the net runs at the picture's own size or larger there is nothing finer to add
    assert np.array_equal(stylize_rgb(model, rgb, detail=True), full)
    assert np.array_equal(stylize_rgb(model, rgb, 256, detail=True), stylize_rgb(model, rgb, 256))


def test_join_bands_takes_each_band_from_its_own_picture():
    """Below 0.75 of the coarse picture's Nyquist rate the join is the coarse picture, above its Nyquist rate the
    fine one; a constant difference between them (a tint) stays the coarse picture's, borders included."""
    from toolkit.stylize import join_bands

    yy, xx = torch.meshgrid(torch.arange(96.0), torch.arange(128.0), indexing="ij")
    slow = torch.sin(2 * torch.pi * xx / 32)[None, None]  # 0.25 of the full Nyquist rate
    fast = torch.sin(2 * torch.pi * (xx + yy) / 3)[None, None]  # above a half-size picture's Nyquist rate
    coarse, fine = 0.5 + 0.2 * slow, 0.3 + 0.1 * slow + 0.1 * fast
    joined = join_bands(coarse, fine, scale=0.5)
    assert torch.allclose(joined, 0.5 + 0.2 * slow + 0.1 * fast, atol=0.02)


def test_the_detail_pass_runs_at_most_at_detail_max_side(monkeypatch):
    sides = []
    model = tiny_model()
    model.register_forward_pre_hook(lambda m, args: sides.append(max(args[0].shape[-2:])))
    monkeypatch.setattr(stylize_module, "DETAIL_MAX_SIDE", 96)
    out = stylize_rgb(model, natural_image(120, 160), 64, detail=True)
    assert sides == [64, 96] and out.shape == (120, 160, 3)


def test_too_small_image_is_a_user_error():
    with pytest.raises(UserError, match="at least 8 px"):
        stylize_tensor(tiny_model(), torch.rand(1, 3, 6, 40))


def write_modes(folder: Path) -> dict[str, Path]:
    rgb = (natural_image(30, 41) * 255).astype(np.uint8)
    files = {}
    Image.fromarray(rgb).convert("RGBA").save(files.setdefault("rgba", folder / "rgba.png"))
    Image.fromarray(rgb).convert("L").save(files.setdefault("grey", folder / "grey.png"))
    Image.fromarray(rgb).convert("P").save(files.setdefault("palette", folder / "palette.png"))
    Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(files.setdefault("grey16", folder / "grey16.png"))
    jpeg = Image.fromarray(rgb)
    exif = jpeg.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 CW on display
    jpeg.save(files.setdefault("exif", folder / "exif.jpg"), exif=exif)
    return files


def test_image_modes_decode_to_rgb_in_unit_range(tmp_path):
    files = write_modes(tmp_path)
    for kind, path in files.items():
        img = decode_image(path)
        assert img.rgb.dtype == np.float32 and img.rgb.shape[2] == 3, kind
        assert 0.0 <= img.rgb.min() and img.rgb.max() <= 1.0, kind
    assert decode_image(files["exif"]).rgb.shape[:2] == (41, 30)  # EXIF rotation applied
    assert decode_image(files["rgba"]).alpha is not None
    assert decode_image(files["grey16"]).rgb.max() > 0.5  # 16-bit scaled, not clipped to 1/257


def test_cli_stylizes_every_mode_to_the_input_size(tmp_path, tiny_checkpoint):
    files = write_modes(tmp_path)
    res = cli("stylize", *files.values(), "--checkpoint", tiny_checkpoint, "-o", tmp_path / "out")
    assert res.returncode == 0, res.stderr
    for kind, path in files.items():
        out = tmp_path / "out" / f"{path.stem}.tiny{'.jpg' if path.suffix == '.jpg' else '.png'}"
        with Image.open(out) as im:
            expected = (41, 30) if kind == "exif" else (30, 41)
            assert im.size[::-1] == expected, kind
            if kind == "rgba":
                assert im.mode == "RGBA"


def test_cli_bad_inputs_exit_2_with_one_line_and_no_output(tmp_path, tiny_checkpoint):
    good = tmp_path / "good.png"
    Image.fromarray((natural_image(32, 32) * 255).astype(np.uint8)).save(good)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"garbage")
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o500)
    cases = [
        (["stylize", tmp_path / "missing.png", "--checkpoint", tiny_checkpoint], "does not exist"),
        (["stylize", broken, "--checkpoint", tiny_checkpoint], "cannot decode"),
        (["stylize", good, "--checkpoint", corrupt], "corrupt"),
        (["stylize", good, "--style", "frots"], "unknown style"),
        (["stylize", good, "--checkpoint", tmp_path / "nope.safetensors"], "does not exist"),
        (["stylize", good, "--checkpoint", tiny_checkpoint, "--max-side", "8"], "--max-side 8 is too small"),
        (["stylize", good, "--checkpoint", tiny_checkpoint, "--max-side", "-1"], "--max-side -1 is too small"),
        (["stylize", good, "--checkpoint", tiny_checkpoint, "--size", "8"], "--size 8 is too small"),
    ]
    if Path("/proc/self").exists() and __import__("os").geteuid() != 0:  # root ignores permissions
        cases.append((["stylize", good, "--checkpoint", tiny_checkpoint, "-o", readonly / "x"], "writable"))
    for args, needle in cases:
        out = tmp_path / "should_not_exist"
        res = cli(*args, *([] if "-o" in args else ["-o", out]))
        assert res.returncode == 2, (args, res.stderr)
        assert needle in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert not out.exists() or not any(out.iterdir())
