"""Names from users and files never become paths outside the folder the user chose."""

from __future__ import annotations

import os

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
