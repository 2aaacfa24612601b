"""Names from users and files never become paths outside the folder the user chose."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from toolkit.errors import UserError
from toolkit.export import artifact_path
from toolkit.manifest import update_manifest
from toolkit.paths import safe_name
from toolkit.stylize import output_path
from toolkit.zoo import style_path

ESCAPES = ["../escape", "/abs/path", "a/b", "..", "", ".hidden", "x\\y", "a..b"]


@pytest.mark.parametrize("name", ESCAPES)
def test_a_name_that_is_not_one_plain_path_component_is_refused(name):
    with pytest.raises(UserError, match="not a plain name"):
        safe_name(name)


def test_plain_names_pass():
    for name in ("frost", "great_wave", "v2.1-beta", "A1"):
        assert safe_name(name) == name


@pytest.mark.parametrize("name", ["../../x", "/tmp/x"])
def test_export_stylize_and_style_lookup_refuse_escaping_style_names(tmp_path, name):
    with pytest.raises(UserError):
        artifact_path(tmp_path, name, "onnx", "fp32")
    with pytest.raises(UserError):
        output_path(tmp_path / "in.png", tmp_path, name)
    with pytest.raises(UserError):
        style_path(name)


def test_manifest_refuses_a_record_outside_its_folder(tmp_path):
    out = tmp_path / "exported"
    out.mkdir()
    outside = tmp_path / "x.onnx"
    outside.write_bytes(b"")
    with pytest.raises(UserError, match="outside the export folder"):
        update_manifest(out, [{"file": str(outside), "style": "x"}])


def test_a_symlinked_manifest_lock_is_not_followed(tmp_path):
    out = tmp_path / "exported"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    os.symlink(victim, out / ".manifest.json.lock")
    inside = out / "s" / "s.onnx"
    inside.parent.mkdir()
    inside.write_bytes(b"")
    with pytest.raises(UserError, match="symlink"):
        update_manifest(out, [{"file": str(inside), "style": "s"}])
    assert victim.read_text() == "keep"


def test_train_refuses_an_escaping_run_name(tmp_path):
    from toolkit.config import TrainConfig
    from toolkit.train import train

    with pytest.raises(UserError, match="not a plain name"):
        train(TrainConfig(name="../escape", style_image="s.png", content_dir="c"), out_root=tmp_path)
    assert not (tmp_path.parent / "escape").exists()


def test_a_decompression_bomb_is_a_one_line_error_before_decoding(tmp_path, monkeypatch):
    from PIL import Image

    from toolkit.data.images import load_rgb

    path = tmp_path / "bomb.png"
    Image.new("L", (3000, 3000)).save(path)  # small file, 9 MP
    monkeypatch.setenv("TOOLKIT_MAX_PIXELS", str(4_000_000))
    with pytest.raises(UserError, match="over the 4 MP limit.*TOOLKIT_MAX_PIXELS"):
        load_rgb(path)
    monkeypatch.setenv("TOOLKIT_MAX_PIXELS", str(10_000_000))
    assert load_rgb(path).shape == (3000, 3000, 3)


@pytest.mark.parametrize("text", ["65536x65536", "4x4", "big"])
def test_sizes_too_large_too_small_or_malformed_are_refused(text):
    from toolkit.export import parse_size

    with pytest.raises(UserError):
        parse_size(text)


@pytest.mark.parametrize("args, message", [
    (["--checkpoint-every", "0"], "--checkpoint-every must be >= 1"),
    (["--workers", "-1"], "--workers"),
    (["--lr", "-1"], "--lr must be > 0"),
    (["--style-size", "0"], "--style-size must be >= 1"),
    (["--size", "65536"], "MP limit"),
])
def test_train_refuses_bad_numbers_in_one_line(tmp_path, args, message):
    from toolkit.cli import main

    code = main(["train", "--style-image", "s.png", "--content-dir", str(tmp_path), "--name", "x",
                 "--out", str(tmp_path / "runs"), *args])
    assert code == 2


def test_weights_and_their_step_are_one_atomic_unit(tmp_path):
    """A kill between the weights' rename and the sidecar's leaves the new weights with an old .json: the step and
    history that ride in the weights file win, so resume continues from the state the weights are at."""
    from conftest import tiny_model

    from toolkit.checkpoint import load_checkpoint, save_checkpoint

    path = save_checkpoint(tmp_path / "last.safetensors", tiny_model(), {"step": 80})
    (tmp_path / "last.json").write_text('{"step": 79, "arch": {}}')  # the sidecar of the step before
    assert load_checkpoint(path).meta["step"] == 80


def test_a_checkpoint_with_wrongly_typed_arch_values_is_a_one_line_error(tmp_path):
    import json

    from conftest import tiny_model
    from safetensors.torch import load_file, save_file

    from toolkit.checkpoint import load_checkpoint, save_checkpoint

    path = save_checkpoint(tmp_path / "c.safetensors", tiny_model(), {"name": "c"})
    meta = json.loads((tmp_path / "c.json").read_text())
    meta["arch"]["widths"] = ["a", "b"]
    save_file(load_file(str(path)), str(path), metadata={"meta": json.dumps(meta)})
    with pytest.raises(UserError, match="malformed arch config"):
        load_checkpoint(path)


def test_an_output_file_name_taken_by_a_folder_is_a_one_line_error(tmp_path):
    from toolkit.fsutil import write_json

    (tmp_path / "rows.json").mkdir()
    with pytest.raises(UserError, match="is a folder"):
        write_json(tmp_path / "rows.json", {"a": 1})
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_a_full_disk_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    import errno

    from toolkit import cli

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.onnx"))

    monkeypatch.setattr("toolkit.commands.archs.run", full)
    assert cli.main(["archs"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0]


def test_a_failed_or_killed_ship_leaves_the_zoo_as_it_was(tmp_path, monkeypatch):
    from conftest import tiny_model

    from toolkit.checkpoint import save_checkpoint
    from toolkit.zoo import ship as ship_module

    zoo = tmp_path / "zoo"
    monkeypatch.setattr(ship_module, "ZOO_DIR", zoo)
    zoo.mkdir()
    ckpt = save_checkpoint(tmp_path / "t.safetensors", tiny_model(), {"name": "t", "train_config": {}})
    seen_while_exporting = []

    def failing_export(model, style, metadata, stage):
        seen_while_exporting.extend(zoo.iterdir())  # a kill here (minutes of exporting) must find the zoo untouched
        raise UserError("exporting t to onnx failed")

    monkeypatch.setattr(ship_module, "export_all", failing_export)
    monkeypatch.setattr(ship_module, "package_checkpoint", lambda src, style, source, licence, zoo_dir:
                        save_checkpoint(Path(zoo_dir) / f"{style}.safetensors", tiny_model(), {"name": style}))
    with pytest.raises(UserError, match="failed"):
        ship_module.ship(ckpt, "newstyle", "src", "lic", None, tmp_path / "exported")
    assert seen_while_exporting == [] and list(zoo.iterdir()) == []


def test_a_bad_photo_read_by_a_loader_worker_is_still_one_line():
    from toolkit.cli import one_line

    wrapped = UserError("Caught UserError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                        "last):\n  File \"x.py\", line 1\ntoolkit.errors.UserError: cannot decode image bad.jpg")
    assert one_line(wrapped) == "cannot decode image bad.jpg"


def test_a_manifest_listing_a_file_outside_its_folder_is_refused_on_read(tmp_path):
    import json

    from toolkit.manifest import read_manifest

    (tmp_path / "manifest.json").write_text(json.dumps({"format": 1, "artifacts": {"../../x.onnx": {}}}))
    with pytest.raises(UserError, match="outside its folder"):
        read_manifest(tmp_path)


def _no_worker_export(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a worker model was exported before the paths were checked")

    monkeypatch.setattr("toolkit.video.stylize.make_payload", refuse)
    monkeypatch.setattr("toolkit.bench.harness.Bench.run", refuse)


@pytest.mark.parametrize("case, args, message", [
    ("missing input", ["{tmp}/missing.mp4", "-o", "{tmp}/o.mp4"], "does not exist"),
    ("output suffix", ["{frames}", "-o", "{tmp}/o.txt"], "must end in"),
    ("output taken", ["{frames}", "-o", "{taken}"], "already exists"),
    ("output under a file", ["{frames}", "-o", "{taken}/o.mp4"], "not a folder"),
    ("output is the input", ["{frames}", "-o", "{frames}", "--overwrite"], "is the input"),
    ("no workers", ["{frames}", "-o", "{tmp}/o.mp4", "--workers", "0"], "--workers must be >= 1"),
    ("negative workers", ["{frames}", "-o", "{tmp}/o.mp4", "--workers", "-1"], "--workers must be >= 1"),
    ("mixed inputs", ["{frames}", "{tmp}/x.png", "-o", "{tmp}/out"], "mix of images and videos"),
])
def test_stylize_video_checks_its_paths_before_exporting_a_worker_model(tmp_path, monkeypatch, capsys, tiny_checkpoint,
                                                                         case, args, message):
    from PIL import Image

    from toolkit.cli import main

    frames = tmp_path / "frames"
    frames.mkdir()
    Image.new("RGB", (32, 32)).save(frames / "0001.png")
    taken = tmp_path / "taken.mp4"
    taken.write_bytes(b"x")
    _no_worker_export(monkeypatch)
    argv = [a.format(tmp=tmp_path, frames=frames, taken=taken) for a in args]
    assert main(["stylize", *argv, "--checkpoint", str(tiny_checkpoint)]) == 2, case
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


@pytest.mark.parametrize("case, args, message", [
    ("json is a folder", ["--json", "{tmp}"], "is a folder"),
    ("md under a file", ["--md", "{file}/t.md"], "not a folder"),
    ("plot is a folder", ["--plot", "{tmp}"], "is a folder"),
    ("missing artifact", ["{tmp}/missing.onnx"], "does not exist"),
    ("zero threads", ["--threads", "0"], "threads must be >= 1"),
    ("zero runs", ["--runs", "0"], "--runs must be >= 1"),
])
def test_bench_checks_its_paths_before_exporting_or_timing(tmp_path, monkeypatch, capsys, case, args, message):
    from toolkit.cli import main

    (tmp_path / "file").write_text("x")
    _no_worker_export(monkeypatch)
    argv = [a.format(tmp=tmp_path, file=tmp_path / "file") for a in args]
    assert main(["bench", *argv, "--arch", "nano"]) == 2, case
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


@pytest.mark.parametrize("case, args, message", [
    ("no frames", ["--frames", "0"], "--frames must be >= 2"),
    ("negative frames", ["--frames", "-1"], "--frames must be >= 2"),
    ("zero size", ["--size", "0"], "too small"),
    ("huge size", ["--size", "65536"], "MP limit"),
    ("missing style image", ["--style-image", "{tmp}/nope.png"], "--style-image"),
    ("report under a file", ["-o", "{file}/r"], "choose a writable path"),
])
def test_eval_video_refuses_bad_input_in_one_line(tmp_path, capsys, tiny_checkpoint, case, args, message):
    from toolkit.cli import main

    (tmp_path / "file").write_text("x")
    argv = [a.format(tmp=tmp_path, file=tmp_path / "file") for a in args]
    assert main(["eval-video", "--checkpoint", str(tiny_checkpoint), "--sintel", str(tmp_path), "--clips",
                 *argv]) == 2, case
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_backend_warnings_are_kept_off_stderr_unless_verbose():
    import logging

    from toolkit.cli import main

    assert main(["archs"]) == 0
    for name in ("torch.onnx._internal.exporter._registration", "coremltools", "torchao"):
        assert not logging.getLogger(name).isEnabledFor(logging.WARNING), name
