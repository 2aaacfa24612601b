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


# Per-command tables: every case runs the CLI in-process and must exit 2 with exactly one line on stderr naming the
# problem, no traceback, and nothing new in the output folder, the inputs folder or the test's own folder.

@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> Path:
    """One folder of hostile and confusing inputs the tables share (and check that nothing in it changes)."""
    import json

    import numpy as np
    from conftest import TINY_ARCH, natural_image, tiny_model
    from PIL import Image
    from safetensors.torch import load_file, save_file

    from toolkit.checkpoint import save_checkpoint

    f = tmp_path_factory.mktemp("hostile")
    for folder in ("photos", "badimgs", "folder.png", "folder.safetensors", "folder.onnx", "fake.mlpackage"):
        (f / folder).mkdir()
    for i in range(4):
        Image.fromarray((natural_image(32, 32, seed=i) * 255).astype(np.uint8)).save(f / "photos" / f"p{i}.png")
        (f / "badimgs" / f"b{i}.png").write_text("not a png")
    Image.fromarray((natural_image(32, 32, seed=9) * 255).astype(np.uint8)).save(f / "style.png")
    (f / "trunc.png").write_bytes((f / "style.png").read_bytes()[:40])
    (f / "notimage.png").write_text("not an image")
    (f / "file").write_text("a file where a folder goes")
    for name in ("random.safetensors", "random.onnx", "random.tflite"):
        (f / name).write_bytes(np.random.default_rng(0).bytes(256))
    recipe = {"style_image": str(f / "style.png"), "content_dir": str(f / "photos"), "arch": "tiny", "size": 16,
              "batch": 1, "workers": 0, "loss": {"loss_net": "random"}}
    ckpt = save_checkpoint(f / "tiny.safetensors", tiny_model(), {"name": "tiny", "train_config": recipe})
    save_checkpoint(f / "bare.safetensors", tiny_model(), {"name": "bare"})  # records no training recipe
    meta = json.loads((f / "tiny.json").read_text())
    forged = {"escaping_name": dict(meta, name="../../escape"), "meta_list": [1, 2], "arch_text": dict(meta, arch="x"),
              "recipe_list": dict(meta, train_config=[1, 2]),
              "recipe_types": dict(meta, train_config=dict(recipe, size="big")),
              "bad_style": dict(meta, train_config=dict(recipe, style_image=str(f / "notimage.png")))}
    for name, header in [*((n, json.dumps(m)) for n, m in forged.items()), ("not_json", "{not json")]:
        save_file(load_file(str(ckpt)), str(f / f"{name}.safetensors"), metadata={"meta": header})
    _identity_onnx_files(f, json.dumps({k: list(v) if isinstance(v, tuple) else v
                                        for k, v in TINY_ARCH.__dict__.items()}))
    return f


def _identity_onnx_files(f: Path, arch: str) -> None:
    """Small valid ONNX graphs whose metadata or input shape lies."""
    try:
        import onnx
        from onnx import TensorProto, helper
    except ImportError:
        return  # the cases that use them skip

    def graph(name, shape=(1, 3, None, None), **meta):
        io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(shape)) for n in ("image", "stylized")]
        model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["image"], ["stylized"])], "g",
                                                    io[:1], io[1:]), opset_imports=[helper.make_opsetid("", 18)])
        model.ir_version = 9
        helper.set_model_props(model, meta)
        onnx.save(model, str(f / name))

    graph("no_meta.onnx")
    graph("arch_not_json.onnx", style="tiny", arch="{nope", precision="fp32")
    graph("arch_types.onnx", style="tiny", arch='{"widths": "abc"}', precision="fp32")
    graph("other_arch.onnx", style="tiny", arch='{"widths": [8, 16, 32]}', precision="fp32")
    graph("escaping_style.onnx", style="../../x", arch=arch, precision="fp32")
    graph("bad_precision.onnx", style="tiny", arch=arch, precision="int3")
    for name, sizes in (("bad_sizes", "axb"), ("huge_sizes", "100000x100000"), ("zero_sizes", "0x0")):
        graph(f"{name}.onnx", style="tiny", arch=arch, precision="fp32", sizes=sizes)
    graph("huge_input.onnx", shape=(1, 3, 100000, 100000))
    graph("zero_input.onnx", shape=(1, 3, 0, 0))


def _tree(*folders: Path) -> list:
    return [sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) for folder in folders]


def _refused(capsys, argv: list[str], message: str, *folders: Path, **paths) -> None:
    """`toolkit ARGV` (placeholders filled from `paths`) exits 2 with one line containing `message`, no traceback,
    and leaves `folders` as they were."""
    from toolkit.cli import main

    argv = [a.format(**paths) for a in argv]
    if any(a.endswith(".onnx") for a in argv):
        pytest.importorskip("onnxruntime")
        if not (paths["f"] / "no_meta.onnx").exists():
            pytest.skip("onnx is not installed")
    before = _tree(*folders)
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, (argv, err)
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0], err
    assert _tree(*folders) == before, "something was written"


BIG = "99999999999999999999"
TRAIN_CASES = [
    ("missing style image", ["--style-image", "{f}/nope.png"], "does not exist"),
    ("style image is a folder", ["--style-image", "{f}/folder.png"], "does not exist"),
    ("style image is not an image", ["--style-image", "{f}/notimage.png"], "cannot decode image"),
    ("style image truncated", ["--style-image", "{f}/trunc.png"], "cannot decode image"),
    ("missing content folder", ["--content-dir", "{f}/nope"], "does not exist"),
    ("content folder is a file", ["--content-dir", "{f}/file"], "is a file, not a folder"),
    ("content folder without images", ["--content-dir", "{f}/folder.png"], "has no images"),
    ("content images undecodable", ["--content-dir", "{f}/badimgs"], "cannot decode image"),
    ("escaping run name", ["--name", "../x"], "not a plain name"),
    ("absolute run name", ["--name", "/abs"], "not a plain name"),
    ("out under a file", ["--out", "{f}/file/runs"], "is not a folder"),
    ("out is a file", ["--out", "{f}/file"], "is not a folder"),
    ("run exists", ["--name", "old"], "already exists"),
    ("resume a run not written by train", ["--name", "old", "--resume"], "records no training state"),
    ("resume a corrupt run", ["--name", "corrupt", "--resume"], "corrupt"),
    ("unknown arch", ["--arch", "bogus"], "unknown arch 'bogus'"),
    ("unknown loss net", ["--loss-net", "bogus"], "invalid choice: 'bogus'"),
    ("unknown encoder precision", ["--encoder-precision", "int8"], "invalid choice: 'int8'"),
    ("unknown style tap", ["--style-layers", "bogus"], "unknown vgg19 tap 'bogus'"),
    ("empty tap list", ["--content-layers", ","], "names no tap"),
    ("zero style scale", ["--style-scales", "0"], "scales in (0, 1]"),
    ("nan style scale", ["--style-scales", "nan"], "scales in (0, 1]"),
    ("style scale over 1", ["--style-scales", "1,2"], "scales in (0, 1]"),
    ("style scales not starting at 1", ["--style-scales", "0.5,1"], "must start with 1"),
    ("no steps", ["--steps", "0"], "--steps: must be >= 1"),
    ("negative steps", ["--steps", "-1"], "--steps: must be >= 1"),
    ("huge steps", ["--steps", BIG], "--steps: must be <="),
    ("steps not a number", ["--steps", "abc"], "is not a whole number"),
    ("nan steps", ["--steps", "nan"], "is not a whole number"),
    ("zero size", ["--size", "0"], "--size: must be >= 16"),
    ("size off 16", ["--size", "17"], "multiple of 16"),
    ("frame crops over 1", ["--frame-crops", "1.5"], "--frame-crops: must be a finite number >= 0 and <= 1"),
    ("negative frame crops", ["--frame-crops", "-0.1"], "--frame-crops: must be a finite number >= 0 and <= 1"),
    ("edge ramps over 1", ["--edge-ramps", "2"], "--edge-ramps: must be a finite number >= 0 and <= 1"),
    ("crop zoom under 1", ["--crop-zoom", "0.5"], "--crop-zoom: must be a finite number >= 1"),
    ("huge size", ["--size", "65536"], "MP limit"),
    ("zero style size", ["--style-size", "0"], "--style-size: must be >= 1"),
    ("huge style size", ["--style-size", BIG], "MP limit"),
    ("zero batch", ["--batch", "0"], "--batch: must be >= 1"),
    ("huge batch", ["--batch", BIG], "MP limit"),
    ("zero lr", ["--lr", "0"], "--lr: must be a finite number > 0"),
    ("negative lr", ["--lr", "-1"], "--lr: must be a finite number > 0"),
    ("nan lr", ["--lr", "nan"], "--lr: must be a finite number > 0"),
    ("infinite lr", ["--lr", "inf"], "--lr: must be a finite number > 0"),
    ("lr overflows", ["--lr", "1e400"], "--lr: must be a finite number > 0"),
    ("lr not a number", ["--lr", "fast"], "is not a number"),
    ("negative style weight", ["--style-weight", "-1"], "--style-weight: must be a finite number >= 0"),
    ("nan style weight", ["--style-weight", "nan"], "--style-weight: must be a finite number >= 0"),
    ("infinite content weight", ["--content-weight", "inf"], "--content-weight: must be a finite number >= 0"),
    ("tv weight overflows", ["--tv-weight", "1e400"], "--tv-weight: must be a finite number >= 0"),
    ("negative temporal weight", ["--temporal-weight", "-1"], "--temporal-weight: must be a finite number"),
    ("nan shift weight", ["--shift-weight", "nan"], "--shift-weight: must be a finite number"),
    ("negative grain weight", ["--grain-weight", "-0.5"], "--grain-weight: must be a finite number"),
    ("negative lattice weight", ["--lattice-weight", "-1"], "--lattice-weight: must be a finite number"),
    ("nan edge weight", ["--edge-weight", "nan"], "--edge-weight: must be a finite number"),
    ("unknown edge form", ["--edge-form", "both"], "invalid choice: 'both'"),
    ("negative turn weight", ["--turn-weight", "-1"], "--turn-weight: must be a finite number"),
    ("unknown turn form", ["--turn-form", "angles"], "invalid choice: 'angles'"),
    ("negative patch weight", ["--patch-weight", "-2"], "--patch-weight: must be a finite number"),
    ("zero patch scale", ["--patch-scale", "0"], "--patch-scale: must be a finite number > 0"),
    ("patch scale above 1", ["--patch-scale", "2"], "patch scale must be in (0, 1]"),
    ("negative seed", ["--seed", "-1"], "--seed: must be >= 0"),
    ("seed past 32 bits", ["--seed", str(2 ** 32)], "--seed: must be <="),
    ("negative workers", ["--workers", "-1"], "--workers: must be >= 0"),
    ("huge workers", ["--workers", BIG], "--workers: must be <="),
    ("negative sample-every", ["--sample-every", "-1"], "--sample-every: must be >= 0"),
    ("zero checkpoint-every", ["--checkpoint-every", "0"], "--checkpoint-every: must be >= 1"),
    ("missing loss weights", ["--loss-net", "vgg19", "--loss-weights", "{f}/nope.safetensors"], "do not exist"),
    ("loss weights are random bytes", ["--loss-net", "vgg19", "--loss-weights", "{f}/random.safetensors"],
     "could not be read safely"),
    ("loss weights with the random loss net", ["--loss-weights", "{f}/random.safetensors"], "contradict each other"),
    ("missing init", ["--init", "{f}/nope.safetensors"], "does not exist"),
    ("escaping init name", ["--init", "../x"], "not a plain name"),
    ("init is a folder", ["--init", "{f}/folder.safetensors"], "does not exist"),
    ("init is random bytes", ["--init", "{f}/random.safetensors"], "corrupt or not a safetensors file"),
    ("init metadata not json", ["--init", "{f}/not_json.safetensors"], "corrupt metadata"),
    ("init metadata a list", ["--init", "{f}/meta_list.safetensors"], "corrupt metadata"),
    ("init arch a string", ["--init", "{f}/arch_text.safetensors"], "malformed arch config"),
]


@pytest.mark.filterwarnings("ignore:using a random-weight VGG")
@pytest.mark.parametrize("case, args, message", TRAIN_CASES)
def test_train_refuses_bad_input_in_one_line(tmp_path, capsys, bad, case, args, message):
    from conftest import tiny_model

    from toolkit.checkpoint import save_checkpoint

    runs = tmp_path / "runs"
    save_checkpoint(runs / "old" / "last.safetensors", tiny_model(), {"name": "old"})  # no step, no recipe
    (runs / "corrupt").mkdir()
    (runs / "corrupt" / "last.json").write_text("{}")
    (runs / "corrupt" / "last.safetensors").write_bytes(b"\0" * 64)
    base = ["train", "--style-image", "{f}/style.png", "--content-dir", "{f}/photos", "--name", "x", "--out", "{runs}",
            "--loss-net", "random", "--steps", "1", "--size", "16", "--batch", "1", "--style-size", "16", "--workers",
            "0", "--sample-every", "0"]
    _refused(capsys, base + args, message, tmp_path, bad, f=bad, runs=runs)


def test_train_without_its_required_options_is_one_line(tmp_path, capsys, bad):
    _refused(capsys, ["train", "--name", "x", "--out", str(tmp_path)], "--style-image and --content-dir missing",
             tmp_path, bad)


EXPORT_CASES = [
    ("missing checkpoint", ["--checkpoint", "{f}/nope.safetensors"], "does not exist"),
    ("checkpoint is a folder", ["--checkpoint", "{f}/folder.safetensors"], "does not exist"),
    ("checkpoint is random bytes", ["--checkpoint", "{f}/random.safetensors"], "corrupt or not a safetensors"),
    ("an image as checkpoint", ["--checkpoint", "{f}/style.png"], "does not exist"),
    ("checkpoint metadata not json", ["--checkpoint", "{f}/not_json.safetensors"], "corrupt metadata"),
    ("checkpoint metadata a list", ["--checkpoint", "{f}/meta_list.safetensors"], "corrupt metadata"),
    ("checkpoint arch a string", ["--checkpoint", "{f}/arch_text.safetensors"], "malformed arch config"),
    ("checkpoint names an escaping style", ["--checkpoint", "{f}/escaping_name.safetensors"], "not a plain name"),
    ("escaping style", ["--style", "../x"], "not a plain name"),
    ("absolute style", ["--style", "/abs"], "not a plain name"),
    ("unknown style", ["--style", "no_such_style"], "unknown style 'no_such_style'"),
    ("style and checkpoint", ["--checkpoint", "{ck}", "--style", "x"], "not allowed with argument"),
    ("unknown target", ["--target", "bogus"], "unknown export target 'bogus'"),
    ("unknown precision", ["--precision", "int3"], "unknown precision 'int3'"),
    ("precision the target lacks", ["--precision", "palettize4"], "cannot export precision palettize4"),
    ("zero size", ["--size", "0x0"], "too small"),
    ("negative size", ["--size=-8x-8"], "too small"),
    ("huge size", ["--size", "100000x100000"], "MP limit"),
    ("size not HxW", ["--size", "big"], "is not HEIGHTxWIDTH"),
    ("nan size", ["--size", "nanxnan"], "is not HEIGHTxWIDTH"),
    ("fractional size", ["--size", "32.5x32"], "is not HEIGHTxWIDTH"),
    ("size off the stride", ["--size", "30x30"], "multiple of the net's stride"),
    ("out under a file", ["--out", "{f}/file/exported"], "choose a writable path"),
    ("out is a file", ["--out", "{f}/file"], "choose a writable path"),
    ("missing calibration folder", ["--precision", "int8", "--calibration", "{f}/nope"], "does not exist"),
    ("calibration without photos", ["--precision", "int8", "--calibration", "{f}/folder.png"], "at least 8 photos"),
    ("calibration is a file", ["--precision", "int8", "--calibration", "{f}/file"], "at least 8 photos"),
]


@pytest.mark.parametrize("case, args, message", EXPORT_CASES)
def test_export_refuses_bad_input_in_one_line(tmp_path, capsys, bad, case, args, message):
    argv = ["export", *(["--checkpoint", "{ck}"] if "--checkpoint" not in args and "--style" not in args else []),
            "--out", "{out}", "--no-check", *args]
    _refused(capsys, argv, message, tmp_path, bad, f=bad, ck=bad / "tiny.safetensors", out=tmp_path / "exported")


VALIDATE_CASES = [
    ("missing artifact", ["{f}/nope.onnx"], "does not exist"),
    ("artifact is a folder", ["{f}/folder.onnx"], "not a valid ONNX model"),
    ("an image as artifact", ["{f}/style.png"], "is not an exported artifact"),
    ("random bytes as onnx", ["{f}/random.onnx"], "not a valid ONNX model"),
    ("random bytes as tflite", ["{f}/random.tflite"], "not a TFLite flatbuffer"),
    ("empty mlpackage", ["{f}/fake.mlpackage"], "no Manifest.json"),
    ("no toolkit metadata", ["{f}/no_meta.onnx"], "carries no toolkit metadata"),
    ("arch metadata not json", ["{f}/arch_not_json.onnx", "--checkpoint", "{ck}"], "malformed arch config"),
    ("arch metadata wrongly typed", ["{f}/arch_types.onnx", "--checkpoint", "{ck}"], "malformed arch config"),
    ("arch of another net", ["{f}/other_arch.onnx", "--checkpoint", "{ck}"], "different architecture"),
    ("metadata names an escaping style", ["{f}/escaping_style.onnx"], "not a plain name"),
    ("unknown precision in metadata", ["{f}/bad_precision.onnx", "--checkpoint", "{ck}"], "unknown precision 'int3'"),
    ("malformed sizes in metadata", ["{f}/bad_sizes.onnx", "--checkpoint", "{ck}"], "records input sizes"),
    ("huge sizes in metadata", ["{f}/huge_sizes.onnx", "--checkpoint", "{ck}"], "MP limit"),
    ("zero sizes in metadata", ["{f}/zero_sizes.onnx", "--checkpoint", "{ck}"], "records input sizes"),
    ("missing checkpoint", ["{f}/bad_sizes.onnx", "--checkpoint", "{f}/nope.safetensors"], "does not exist"),
    ("checkpoint is random bytes", ["{f}/bad_sizes.onnx", "--checkpoint", "{f}/random.safetensors"], "corrupt"),
    ("no images per size", ["{f}/bad_sizes.onnx", "--images-per-size", "0"], "--images-per-size: must be >= 1"),
    ("negative images per size", ["{f}/bad_sizes.onnx", "--images-per-size", "-1"], "must be >= 1"),
    ("nan images per size", ["{f}/bad_sizes.onnx", "--images-per-size", "nan"], "is not a whole number"),
    ("huge images per size", ["{f}/bad_sizes.onnx", "--images-per-size", BIG], "--images-per-size: must be <="),
    ("no artifact", [], "required: ARTIFACT"),
]


@pytest.mark.parametrize("case, args, message", VALIDATE_CASES)
def test_validate_refuses_bad_input_in_one_line(tmp_path, capsys, bad, case, args, message):
    _refused(capsys, ["validate", *args], message, tmp_path, bad, f=bad, ck=bad / "tiny.safetensors")


# prune and qat share the fine-tune options and the checkpoint / -o handling
COMPRESS_CASES = [
    ("missing checkpoint", ["--checkpoint", "{f}/nope.safetensors"], "does not exist"),
    ("checkpoint is a folder", ["--checkpoint", "{f}/folder.safetensors"], "does not exist"),
    ("checkpoint is random bytes", ["--checkpoint", "{f}/random.safetensors"], "corrupt or not a safetensors"),
    ("escaping style name", ["--checkpoint", "../x"], "not a plain name"),
    ("checkpoint metadata a list", ["--checkpoint", "{f}/meta_list.safetensors"], "corrupt metadata"),
    ("recipe is a list", ["--checkpoint", "{f}/recipe_list.safetensors", "--finetune-steps", "1"],
     "malformed train config"),
    ("recipe wrongly typed", ["--checkpoint", "{f}/recipe_types.safetensors", "--finetune-steps", "1"],
     "TrainConfig size must be a whole number"),
    ("output under a file", ["-o", "{f}/file/o.safetensors"], "is not a folder"),
    ("output is the input", ["-o", "{f}/tiny.safetensors"], "would overwrite the input"),
    ("negative finetune steps", ["--finetune-steps", "-1"], "--finetune-steps: must be >= 0"),
    ("huge finetune steps", ["--finetune-steps", BIG], "--finetune-steps: must be <="),
    ("nan finetune steps", ["--finetune-steps", "nan"], "is not a whole number"),
    ("zero size", ["--finetune-steps", "1", "--size", "0"], "--size: must be >= 16"),
    ("size off the stride", ["--finetune-steps", "1", "--size", "18"], "must be a multiple of 4"),
    ("huge size", ["--finetune-steps", "1", "--size", BIG], "MP limit"),
    ("zero batch", ["--finetune-steps", "1", "--batch", "0"], "--batch: must be >= 1"),
    ("huge batch", ["--finetune-steps", "1", "--batch", BIG], "MP limit"),
    ("zero lr", ["--lr", "0"], "--lr: must be a finite number > 0"),
    ("negative lr", ["--finetune-steps", "1", "--lr", "-1"], "--lr: must be a finite number > 0"),
    ("nan lr", ["--finetune-steps", "1", "--lr", "nan"], "--lr: must be a finite number > 0"),
    ("infinite lr", ["--lr", "inf"], "--lr: must be a finite number > 0"),
    ("negative workers", ["--finetune-steps", "1", "--workers", "-1"], "--workers: must be >= 0"),
    ("huge workers", ["--finetune-steps", "1", "--workers", BIG], "--workers: must be <="),
    ("missing style image", ["--finetune-steps", "1", "--style-image", "{f}/nope.png"], "does not exist"),
    ("style image is a folder", ["--finetune-steps", "1", "--style-image", "{f}/folder.png"], "does not exist"),
    ("style image not an image", ["--finetune-steps", "1", "--style-image", "{f}/notimage.png"],
     "cannot decode image"),
    ("style image truncated", ["--finetune-steps", "1", "--style-image", "{f}/trunc.png"], "cannot decode image"),
    ("no recipe and no data", ["--checkpoint", "{f}/bare.safetensors", "--finetune-steps", "1"],
     "pass --style-image"),
    ("missing content folder", ["--finetune-steps", "1", "--content-dir", "{f}/nope"], "does not exist"),
    ("content folder is a file", ["--finetune-steps", "1", "--content-dir", "{f}/file"], "is a file, not a folder"),
    ("content images undecodable", ["--finetune-steps", "1", "--content-dir", "{f}/badimgs"], "cannot decode"),
    ("unknown loss net", ["--loss-net", "bogus"], "invalid choice: 'bogus'"),
]
PRUNE_CASES = [
    ("zero sparsity", ["--sparsity", "0"], "strictly between 0 and 1"),
    ("negative sparsity", ["--sparsity", "-1"], "strictly between 0 and 1"),
    ("full sparsity", ["--sparsity", "1"], "strictly between 0 and 1"),
    ("nan sparsity", ["--sparsity", "nan"], "strictly between 0 and 1"),
    ("infinite sparsity", ["--sparsity", "1e400"], "strictly between 0 and 1"),
    ("sparsity not a number", ["--sparsity", "half"], "invalid float value: 'half'"),
    ("unknown importance", ["--importance", "bogus"], "invalid choice: 'bogus'"),
    ("unknown qat bits", ["--qat-bits", "3"], "invalid choice: 3"),
    ("qat bits without fine-tuning", ["--qat-bits", "8"], "needs --finetune-steps"),
    ("taylor without data", ["--checkpoint", "{f}/bare.safetensors", "--importance", "taylor"], "pass --style-image"),
]
QAT_CASES = [
    ("zero bits", ["--bits", "0"], "--bits 0 is not supported"),
    ("negative bits", ["--bits", "-1"], "--bits -1 is not supported"),
    ("bits off the grid", ["--bits", "3"], "choose one of 8, 4, 2"),
    ("huge bits", ["--bits", BIG], "is not supported"),
    ("nan bits", ["--bits", "nan"], "invalid int value: 'nan'"),
    ("palette bits off the grid", ["--bits", "8", "--palette"], "choose one of 6, 4, 2, 1"),
]


@pytest.mark.filterwarnings("ignore:using a random-weight VGG")
@pytest.mark.parametrize("command, case, args, message", [("prune", *c) for c in COMPRESS_CASES + PRUNE_CASES]
                         + [("qat", *c) for c in COMPRESS_CASES + QAT_CASES])
def test_prune_and_qat_refuse_bad_input_in_one_line(tmp_path, capsys, bad, command, case, args, message):
    pytest.importorskip("torch_pruning")
    default = {"prune": ["--sparsity", "0.5"], "qat": ["--bits", "8"]}[command]
    argv = [command, "--checkpoint", "{f}/tiny.safetensors", *default, "-o", "{out}/o.safetensors", *args]
    _refused(capsys, argv, message, tmp_path, bad, f=bad, out=tmp_path)


COMPARE_CASES = [
    ("missing checkpoint", ["{f}/nope.safetensors"], "does not exist"),
    ("missing artifact", ["{ck}", "{f}/nope.onnx"], "does not exist"),
    ("checkpoint is a folder", ["{f}/folder.safetensors"], "does not exist"),
    ("artifact is a folder", ["{ck}", "{f}/folder.onnx"], "cannot load"),
    ("checkpoint is random bytes", ["{f}/random.safetensors"], "corrupt or not a safetensors"),
    ("random bytes as onnx", ["{ck}", "{f}/random.onnx"], "cannot load"),
    ("random bytes as tflite", ["{ck}", "{f}/random.tflite"], "cannot load"),
    ("empty mlpackage", ["{ck}", "{f}/fake.mlpackage"], "no Manifest.json"),
    ("an image as model", ["{ck}", "{f}/style.png"], "is not an exported artifact"),
    ("arch metadata not json", ["{ck}", "{f}/arch_not_json.onnx"], "malformed arch config"),
    ("arch metadata wrongly typed", ["{ck}", "{f}/arch_types.onnx"], "malformed arch config"),
    ("huge fixed input", ["{ck}", "{f}/huge_input.onnx"], "MP limit"),
    ("zero fixed input", ["{ck}", "{f}/zero_input.onnx"], "sizes must be positive"),
    ("escaping style name", ["../x"], "not a plain name"),
    ("absolute style name", ["/abs"], "not a plain name"),
    ("checkpoint metadata a list", ["{f}/meta_list.safetensors"], "corrupt metadata"),
    ("recipe is a list", ["{f}/recipe_list.safetensors"], "malformed train config"),
    ("recipe wrongly typed", ["{f}/recipe_types.safetensors"], "malformed train config"),
    ("no float checkpoint", ["{f}/no_meta.onnx"], "no float checkpoint"),
    ("missing reference", ["{ck}", "--reference", "{f}/nope.safetensors"], "does not exist"),
    ("escaping reference", ["{ck}", "--reference", "../x"], "not a plain name"),
    ("missing images", ["{ck}", "--images", "{f}/nope"], "does not exist"),
    ("images is a file", ["{ck}", "--images", "{f}/file"], "is a file, not a folder"),
    ("images undecodable", ["{ck}", "--images", "{f}/badimgs"], "cannot decode image"),
    ("missing style image", ["{ck}", "--style-image", "{f}/nope.png"], "does not exist"),
    ("style image is a folder", ["{ck}", "--style-image", "{f}/folder.png"], "does not exist"),
    ("style image not an image", ["{ck}", "--style-image", "{f}/notimage.png"], "cannot decode image"),
    ("zero size", ["{ck}", "--size", "0"], "too small"),
    ("negative size", ["{ck}", "--size", "-1"], "too small"),
    ("nan size", ["{ck}", "--size", "nan"], "invalid int value: 'nan'"),
    ("huge size", ["{ck}", "--size", "65536"], "MP limit"),
    ("zero threads", ["{ck}", "--threads", "0"], "--threads: must be >= 1"),
    ("negative threads", ["{ck}", "--threads", "-1"], "--threads: must be >= 1"),
    ("huge threads", ["{ck}", "--threads", BIG], "--threads: must be <="),
    ("unknown loss net", ["{ck}", "--loss-net", "bogus"], "invalid choice: 'bogus'"),
    ("out under a file", ["{ck}", "-o", "{f}/file/report"], "is not a folder"),
    ("out is a file", ["{ck}", "-o", "{f}/file"], "is not a folder"),
]


@pytest.mark.filterwarnings("ignore:using a random-weight VGG")
@pytest.mark.parametrize("case, args, message", COMPARE_CASES)
def test_compare_refuses_bad_input_in_one_line(tmp_path, capsys, bad, case, args, message):
    argv = ["compare", "--images", "{f}/photos", "--size", "32", "--loss-net", "random", "--style-image",
            "{f}/style.png", "-o", "{out}", *args]
    _refused(capsys, argv, message, tmp_path, bad, f=bad, ck=bad / "tiny.safetensors", out=tmp_path / "report")


SHIP_CASES = [
    ("a newline in the source", ["--source", "Hokusai\nrm -rf"], "--source: must be one line of printable text"),
    ("an empty licence", ["--licence", " "], "--licence: must be one line of printable text"),
    ("missing checkpoint", ["--checkpoint", "{f}/nope.safetensors"], "does not exist"),
    ("checkpoint is a folder", ["--checkpoint", "{f}/folder.safetensors"], "does not exist"),
    ("checkpoint is random bytes", ["--checkpoint", "{f}/random.safetensors"], "corrupt or not a safetensors"),
    ("an image as checkpoint", ["--checkpoint", "{f}/style.png"], "does not exist"),
    ("checkpoint metadata not json", ["--checkpoint", "{f}/not_json.safetensors"], "corrupt metadata"),
    ("checkpoint metadata a list", ["--checkpoint", "{f}/meta_list.safetensors"], "corrupt metadata"),
    ("checkpoint arch a string", ["--checkpoint", "{f}/arch_text.safetensors"], "malformed arch config"),
    ("recipe is a list", ["--checkpoint", "{f}/recipe_list.safetensors"], "malformed train config"),
    ("recorded style image not an image", ["--checkpoint", "{f}/bad_style.safetensors"], "cannot decode image"),
    ("zoo entry without its record", ["--checkpoint", "{zoo}/zoostyle.safetensors", "--style", "zoostyle",
                                      "--skip-export"], "has no ship record"),
    ("escaping style", ["--style", "../x"], "not a plain name"),
    ("absolute style", ["--style", "/abs"], "not a plain name"),
    ("empty style", ["--style", ""], "not a plain name"),
    ("missing style image", ["--style-image", "{f}/nope.png"], "does not exist"),
    ("style image is a folder", ["--style-image", "{f}/folder.png"], "does not exist"),
    ("style image not an image", ["--style-image", "{f}/notimage.png"], "cannot decode image"),
    ("style image truncated", ["--style-image", "{f}/trunc.png"], "cannot decode image"),
    ("out under a file", ["--out", "{f}/file/exported"], "choose a writable path"),
    ("out is a file", ["--out", "{f}/file"], "choose a writable path"),
]


@pytest.mark.parametrize("case, args, message", SHIP_CASES)
def test_ship_refuses_bad_input_before_touching_the_zoo(tmp_path, monkeypatch, capsys, bad, case, args, message):
    from conftest import tiny_model

    from toolkit.checkpoint import save_checkpoint
    from toolkit.zoo import ship as ship_module

    zoo = tmp_path / "zoo"
    save_checkpoint(zoo / "zoostyle.safetensors", tiny_model(), {"name": "zoostyle"})
    monkeypatch.setattr(ship_module, "ZOO_DIR", zoo)
    _no_worker_export(monkeypatch)
    monkeypatch.setattr(ship_module, "export_all", lambda *a, **k: pytest.fail("an export started"))
    argv = ["ship", "--checkpoint", "{f}/tiny.safetensors", "--style", "newstyle", "--source", "s", "--licence", "l",
            "--out", "{out}", *args]
    _refused(capsys, argv, message, tmp_path, bad, f=bad, zoo=zoo, out=tmp_path / "exported")


def test_ship_without_its_required_options_is_one_line(tmp_path, capsys, bad):
    _refused(capsys, ["ship", "--checkpoint", "x.safetensors", "--style", "x"], "required: --source, --licence",
             tmp_path, bad)
