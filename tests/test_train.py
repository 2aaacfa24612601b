"""Training: the loss falls, checkpoints round-trip bit-exactly, a killed run resumes at its step, DDP runs."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from toolkit.checkpoint import load_checkpoint, save_checkpoint
from toolkit.config import LossConfig, TrainConfig
from toolkit.train import train

from conftest import natural_image, tiny_model

LOSS = LossConfig(loss_net="random", style_layers=("relu1_1", "relu2_1"), content_layers=("relu2_1",))


@pytest.fixture
def style_png(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    stripes = np.zeros((64, 64, 3), np.float32)
    stripes[:, ::4] = [0.9, 0.2, 0.1]
    stripes[::6, :] = [0.1, 0.3, 0.9]
    stripes += rng.uniform(0, 0.1, stripes.shape).astype(np.float32)
    path = tmp_path / "style.png"
    Image.fromarray((np.clip(stripes, 0, 1) * 255).astype(np.uint8)).save(path)
    return path


def config(style_png, image_dir, **kw) -> TrainConfig:
    base = dict(name="t", style_image=str(style_png), content_dir=str(image_dir), arch="tiny", steps=30, size=32,
                batch=2, lr=1e-2, workers=0, sample_every=0, checkpoint_every=10, loss=LOSS)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.filterwarnings("ignore:using a random-weight VGG")
def test_thirty_steps_lower_the_loss_and_write_the_run(tmp_path, style_png, image_dir):
    final = train(config(style_png, image_dir, sample_every=30), out_root=tmp_path / "runs", progress=False)
    meta = json.loads(final.with_suffix(".json").read_text())
    totals = [h["total"] for h in meta["history"]]
    assert len(totals) == 30
    assert np.mean(totals[-5:]) < 0.8 * np.mean(totals[:5])
    run = tmp_path / "runs" / "t"
    assert (run / "loss.png").stat().st_size > 1000
    assert Image.open(run / "samples" / "step_000030.png").size[0] > 0
    assert 0.0 <= meta["history"][-1]["loader_wait_fraction"] <= 1.0
    assert meta["train_config"]["arch"] == "tiny" and meta["arch"]["widths"] == [4, 8]


@pytest.mark.filterwarnings("ignore:using a random-weight VGG")
def test_one_unreadable_photo_among_readable_ones_is_skipped_with_a_warning_naming_it(tmp_path, style_png,
                                                                                      image_dir):
    (image_dir / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.warns(UserWarning, match=r"skipping a training photo: cannot decode image .*broken\.jpg") as seen:
        final = train(config(style_png, image_dir, steps=12), out_root=tmp_path / "runs", progress=False)
    assert sum("broken.jpg" in str(w.message) for w in seen) == 1  # once, not per draw
    assert load_checkpoint(final).meta["step"] == 12


def test_a_folder_of_only_unreadable_photos_stops_with_the_decode_error(tmp_path):
    from toolkit.data.images import ContentCrops
    from toolkit.errors import UserError

    bad = [tmp_path / f"b{i}.png" for i in range(3)]
    for p in bad:
        p.write_text("not an image")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the error alone: no warning about skipping when nothing can be read
        with pytest.raises(UserError, match="cannot decode image"):
            ContentCrops(bad, 16, seed=0)[0]


def test_frame_crops_are_corners_of_the_photo_and_leave_other_crops_as_they_were():
    from toolkit.data.images import random_crop

    photo = np.zeros((64, 96, 3), np.float32)
    photo[:2], photo[-2:], photo[:, :2], photo[:, -2:] = 1, 1, 1, 1  # a white frame round a black photo

    def corner(crop):  # one of its rows and one of its columns on the photo's frame
        return max(crop[0].mean(), crop[-1].mean()) > 0.3 and max(crop[:, 0].mean(), crop[:, -1].mean()) > 0.3

    assert all(corner(random_crop(photo, 32, np.random.default_rng(s), frame=1.0)) for s in range(20))
    assert sum(corner(random_crop(photo, 32, np.random.default_rng(s))) for s in range(20)) <= 3
    for seed in range(20):  # frame=0 draws nothing extra: the crops of every earlier run stay the same
        assert np.array_equal(random_crop(photo, 32, np.random.default_rng(seed)),
                              random_crop(photo, 32, np.random.default_rng(seed), frame=0.0))


def test_edge_ramps_brighten_or_darken_one_side_of_a_crop_and_leave_other_crops_as_they_were():
    """Scan lines (1-2 px, up to 0.5) or ramps (2-12 px, up to 0.15) along one side."""
    from toolkit.data.images import edge_ramp, random_crop

    flat = np.full((40, 40, 3), 0.5, np.float32)
    for seed in range(20):
        diff = (edge_ramp(flat, np.random.default_rng(seed)) - flat)[..., 0]
        changed = np.argwhere(np.abs(diff) > 1e-6)
        rows, cols = np.ptp(changed[:, 0]) + 1, np.ptp(changed[:, 1]) + 1
        band, length = sorted((rows, cols))
        assert band <= 12 and length == 40  # a band along one whole side
        if band <= 2 and np.abs(diff).max() > 0.15:
            assert np.allclose(np.abs(diff[np.abs(diff) > 1e-6]), np.abs(diff).max(), atol=1e-6)  # a scan line
        assert 0.03 <= np.abs(diff).max() <= 0.5 + 1e-6
        assert len(np.unique(np.sign(diff[np.abs(diff) > 1e-6]))) == 1  # all brighter or all darker
    photo = natural_image(64, 96)
    assert all(not np.array_equal(random_crop(photo, 32, np.random.default_rng(s)),
                                  random_crop(photo, 32, np.random.default_rng(s), ramps=1.0)) for s in range(10))
    for seed in range(10):  # ramps=0 draws nothing extra
        assert np.array_equal(random_crop(photo, 32, np.random.default_rng(seed), frame=0.5),
                              random_crop(photo, 32, np.random.default_rng(seed), frame=0.5, ramps=0.0))


def test_a_larger_crop_zoom_shows_closer_views_and_the_default_keeps_earlier_runs_crops():
    """--crop-zoom Z: the photo's short side resized to crop side x U(1, Z) before the crop."""
    from toolkit.config import CROP_ZOOM
    from toolkit.data.images import random_crop

    ramp = np.repeat(np.linspace(0, 1, 300, dtype=np.float32)[None, :, None], 200, 0).repeat(3, 2)  # 200x300, 0 -> 1

    def span(zoom, seed):  # how much of the photo's width the crop covers
        return float(np.ptp(random_crop(ramp, 32, np.random.default_rng(seed), zoom=zoom)))

    default, close = np.mean([span(CROP_ZOOM, s) for s in range(40)]), np.mean([span(4.0, s) for s in range(40)])
    assert 200 / (300 * 1.6) - 0.02 < default < 200 / 300  # short side 32-51 px: the crop sees 42-67% of the width
    assert close < 0.6 * default
    assert CROP_ZOOM == 1.6  # the zoom range every shipped recipe trained with (their commands leave it out)
    for seed in range(10):  # one draw whatever the zoom: the rest of a sample's random stream stays where it was
        rng_a, rng_b = np.random.default_rng(seed), np.random.default_rng(seed)
        random_crop(ramp, 32, rng_a), random_crop(ramp, 32, rng_b, zoom=4.0)
        assert rng_a.random() == rng_b.random()


@pytest.mark.filterwarnings("ignore:using a random-weight VGG")
def test_crop_zoom_from_the_command_line_is_recorded_and_in_the_ship_recipe_only_when_changed(tmp_path, style_png,
                                                                                               image_dir):
    from toolkit.cli import main
    from toolkit.zoo.ship import train_command

    common = ["train", "--style-image", str(style_png), "--content-dir", str(image_dir), "--arch", "tiny", "--steps",
              "1", "--size", "32", "--batch", "2", "--workers", "0", "--sample-every", "0", "--loss-net", "random",
              "--out", str(tmp_path / "runs")]
    assert main([*common, "--name", "z", "--crop-zoom", "3"]) == 0
    assert main([*common, "--name", "d"]) == 0
    zoomed, plain = (load_checkpoint(tmp_path / "runs" / n / f"{n}.safetensors").meta["train_config"] for n in "zd")
    assert zoomed["crop_zoom"] == 3.0 and " --crop-zoom 3.0" in train_command(zoomed, "z")
    assert plain["crop_zoom"] == 1.6 and "--crop-zoom" not in train_command(plain, "d")
    assert "--crop-zoom" not in train_command({k: v for k, v in plain.items() if k != "crop_zoom"}, "d")  # old runs


@pytest.mark.filterwarnings("ignore:using a random-weight VGG")
def test_training_is_deterministic_with_a_seed(tmp_path, style_png, image_dir):
    a = train(config(style_png, image_dir, steps=4), out_root=tmp_path / "a", progress=False)
    b = train(config(style_png, image_dir, steps=4), out_root=tmp_path / "b", progress=False)
    for (ka, va), (kb, vb) in zip(load_checkpoint(a).model.state_dict().items(),
                                  load_checkpoint(b).model.state_dict().items()):
        assert torch.equal(va, vb), ka


def test_checkpoint_round_trip_is_bit_exact(tmp_path):
    model = tiny_model()
    path = save_checkpoint(tmp_path / "m", model, {"name": "m"})
    loaded = load_checkpoint(path)
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.model.state_dict()[k]), k
    assert loaded.arch == model.config
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(model(x), loaded.model(x))


@pytest.mark.filterwarnings("ignore:using a random-weight VGG")
def test_resume_continues_to_the_same_weights_as_an_uninterrupted_run(tmp_path, style_png, image_dir):
    whole = train(config(style_png, image_dir, steps=8, checkpoint_every=4), out_root=tmp_path / "w", progress=False)
    train(config(style_png, image_dir, steps=4, checkpoint_every=4), out_root=tmp_path / "r", progress=False)
    assert json.loads((tmp_path / "r" / "t" / "last.json").read_text())["step"] == 4
    resumed = train(config(style_png, image_dir, steps=8, checkpoint_every=4), out_root=tmp_path / "r",
                    resume=True, progress=False)
    meta = json.loads(resumed.with_suffix(".json").read_text())
    assert [h["step"] for h in meta["history"]] == list(range(1, 9))
    for k, v in load_checkpoint(whole).model.state_dict().items():
        assert torch.allclose(v, load_checkpoint(resumed).model.state_dict()[k], atol=1e-6), k


def run_cli(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "toolkit", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def cli_train_args(style_png, image_dir, out, steps):
    return ["train", "--style-image", style_png, "--content-dir", image_dir, "--name", "k", "--arch", "tiny",
            "--steps", steps, "--size", 32, "--batch", 2, "--workers", 0, "--sample-every", 0,
            "--checkpoint-every", 2, "--loss-net", "random", "--out", out]


def test_a_killed_run_resumes_at_its_last_checkpoint(tmp_path, style_png, image_dir):
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "toolkit", *map(str, cli_train_args(style_png, image_dir, out, 400))]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = out / "k" / "last.json"
    deadline = time.time() + 120
    while time.time() < deadline and not (last.exists() and json.loads(last.read_text())["step"] >= 4):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(last.read_text())["step"]
    assert 4 <= killed_at < 400
    load_checkpoint(out / "k" / "last.safetensors")  # never corrupt
    again = run_cli(*cli_train_args(style_png, image_dir, out, killed_at + 2))
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = run_cli(*cli_train_args(style_png, image_dir, out, killed_at + 2), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    steps = [h["step"] for h in json.loads((out / "k" / "k.json").read_text())["history"]]
    assert steps[-3:] == [killed_at, killed_at + 1, killed_at + 2]


def test_resume_needs_only_the_name_and_records_what_it_changes(tmp_path, style_png, image_dir):
    """--resume goes on with the recipe the run recorded (flags left out keep it, not the defaults); a flag given
    changes it from that step on, and the change is written into the checkpoint and said on stderr."""
    out = tmp_path / "runs"
    first = run_cli(*cli_train_args(style_png, image_dir, out, 2), "--style-weight", 123, "--tv-weight", 0.25,
                    "--style-balance")
    assert first.returncode == 0, first.stderr
    meta = json.loads((out / "k" / "last.json").read_text())
    weights = meta["train_config"]["loss"]["style_layer_weights"]
    assert len(weights) == len(meta["train_config"]["loss"]["style_layers"])

    longer = run_cli("train", "--name", "k", "--out", out, "--resume", "--steps", 4)
    assert longer.returncode == 0, longer.stderr
    meta = json.loads((out / "k" / "last.json").read_text())
    assert meta["step"] == 4 and [h["step"] for h in meta["history"]] == [1, 2, 3, 4]
    cfg = meta["train_config"]
    assert (cfg["arch"], cfg["size"], cfg["loss"]["style_weight"], cfg["loss"]["tv_weight"]) == ("tiny", 32, 123, 0.25)
    assert cfg["loss"]["style_layer_weights"] == pytest.approx(weights)  # balanced again, to the same weights
    assert "recipe_changes" not in meta and "changes its recipe" not in longer.stderr

    changed = run_cli("train", "--name", "k", "--out", out, "--resume", "--steps", 5, "--tv-weight", 1)
    assert changed.returncode == 0, changed.stderr
    meta = json.loads((out / "k" / "last.json").read_text())
    assert meta["recipe_changes"] == [{"step": 4, "tv_weight": [0.25, 1.0]}]
    assert meta["train_config"]["loss"]["tv_weight"] == 1.0 and meta["train_config"]["loss"]["style_weight"] == 123
    assert "changes its recipe at step 4: tv_weight 0.25 -> 1.0" in changed.stderr


@pytest.mark.filterwarnings("ignore:using a random-weight VGG")
def test_a_resumed_run_does_not_read_its_init_again(tmp_path, style_png, image_dir):
    """The init only seeds step 0: once the run has a checkpoint, moving or deleting the init file changes nothing."""
    init = train(config(style_png, image_dir, steps=2, name="base"), out_root=tmp_path / "b", progress=False)
    tuned = config(style_png, image_dir, steps=4, checkpoint_every=2, init=str(init))
    train(dataclasses.replace(tuned, steps=2), out_root=tmp_path / "r", progress=False)
    init.unlink()
    resumed = train(tuned, out_root=tmp_path / "r", resume=True, progress=False)
    meta = json.loads(resumed.with_suffix(".json").read_text())
    assert meta["step"] == 4 and meta["init_record"]


@pytest.mark.slow
def test_two_process_ddp_run_completes(tmp_path, style_png, image_dir):
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "toolkit",
           *map(str, cli_train_args(style_png, image_dir, out, 3))]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    meta = json.loads((out / "k" / "k.json").read_text())
    assert meta["world_size"] == 2 and meta["step"] == 3


def test_bad_training_inputs_exit_2_with_one_line(tmp_path, style_png, image_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = {
        "no images": ["train", "--style-image", style_png, "--content-dir", empty, "--name", "x"],
        "does not exist": ["train", "--style-image", tmp_path / "nope.png", "--content-dir", image_dir, "--name", "x"],
        "unknown arch": ["train", "--style-image", style_png, "--content-dir", image_dir, "--name", "x",
                         "--arch", "nanno"],
    }
    for needle, args in cases.items():
        res = run_cli(*args, "--out", tmp_path / "runs", cwd=tmp_path)
        assert res.returncode == 2, (needle, res.stderr)
        assert needle in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr


@pytest.mark.filterwarnings("ignore:using a random-weight VGG")
def test_init_starts_from_a_checkpoint_and_records_it(tmp_path, style_png, image_dir):
    first = train(config(style_png, image_dir, steps=4), out_root=tmp_path / "a", progress=False)
    zero_steps = train(config(style_png, image_dir, steps=1, lr=0.0, init=str(first)), out_root=tmp_path / "b",
                       progress=False)
    for (k, va), (_, vb) in zip(load_checkpoint(first).model.state_dict().items(),
                                load_checkpoint(zero_steps).model.state_dict().items()):
        assert torch.equal(va, vb), k  # lr 0: the fine-tune kept the initial weights exactly
    assert load_checkpoint(zero_steps).meta["train_config"]["init"] == str(first)
    record = load_checkpoint(zero_steps).meta["init_record"]  # how the init was trained, kept with the run
    assert record["step"] == 4 and record["train_config"]["steps"] == 4


def test_init_from_another_arch_exits_2(tmp_path, style_png, image_dir):
    other = tmp_path / "nano.safetensors"
    from toolkit.models import create_model

    save_checkpoint(other, create_model("nano"), {"name": "n"})
    res = run_cli("train", "--style-image", style_png, "--content-dir", image_dir, "--name", "x", "--arch", "tiny",
                  "--init", other, "--loss-net", "random", "--out", tmp_path / "runs", cwd=tmp_path)
    assert res.returncode == 2 and "--arch" in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr


@pytest.mark.filterwarnings("ignore:using a random-weight VGG")
def test_frozen_batch_stats_train_the_function_that_ships(tmp_path, style_png, image_dir):
    """nano_lite's trunk batch norms: by default they learn running statistics from the batches; frozen, they keep
    normalising by the starting point's (what the export folds into the convs) while the rest of the net trains."""
    start = train(config(style_png, image_dir, arch="nano_lite", steps=3), out_root=tmp_path / "a", progress=False)

    def stats(path):
        sd = load_checkpoint(path).model.state_dict()
        return {k: v for k, v in sd.items() if k.endswith(("running_mean", "running_var"))}

    runs = {frozen: train(config(style_png, image_dir, arch="nano_lite", steps=3, init=str(start), name=f"f{frozen}",
                                 freeze_batch_stats=frozen), out_root=tmp_path / "b", progress=False)
            for frozen in (False, True)}
    assert stats(start)
    assert all(torch.equal(v, stats(runs[True])[k]) for k, v in stats(start).items())
    assert not all(torch.equal(v, stats(runs[False])[k]) for k, v in stats(start).items())
    weights = {k: v for k, v in load_checkpoint(runs[True]).model.state_dict().items() if "running" not in k}
    assert any(not torch.equal(v, load_checkpoint(start).model.state_dict()[k]) for k, v in weights.items())
    assert load_checkpoint(runs[True]).meta["train_config"]["freeze_batch_stats"] is True
