"""Image stylisation: any size or mode in, same size out; bad input gives one-line errors and exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

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
    from toolkit.checkpoint import load_checkpoint

    rgb = natural_image(48, 64, seed=4)
    photo = tmp_path / "p.png"
    Image.fromarray((rgb * 255 + 0.5).astype(np.uint8)).save(photo)
    rgb = decode_image(photo).rgb
    for flag, side in (("32", 32), ("0", None)):
        res = cli("stylize", photo, "--checkpoint", tiny_checkpoint, "--max-side", flag, "-o", tmp_path / flag)
        assert res.returncode == 0, res.stderr
        got = decode_image(tmp_path / flag / "p.tiny.png").rgb
        expected = stylize_rgb(load_checkpoint(tiny_checkpoint).model.eval(), rgb, side)
        assert got.shape == rgb.shape and np.abs(got - expected).max() <= 1.5 / 255, flag
    capped, full = (decode_image(tmp_path / f / "p.tiny.png").rgb for f in ("32", "0"))
    assert np.abs(capped - full).mean() > 0.01  # the cap changes what the net paints


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
