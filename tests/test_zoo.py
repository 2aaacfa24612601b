"""Shipped styles: the zoo, exported/ and its manifest agree with each other and with the files on disk."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from toolkit.checkpoint import load_checkpoint, save_checkpoint
from toolkit.errors import UserError
from toolkit.fsutil import sha256_of, size_of
from toolkit.paths import REPO_ROOT
from toolkit.stylize import stylize_tensor
from toolkit.zoo import load_style, shipped_styles
from toolkit.zoo.ship import package_checkpoint, write_gallery

from conftest import tiny_model

EXPORTED = REPO_ROOT / "exported"


def manifest() -> dict:
    path = EXPORTED / "manifest.json"
    if not path.is_file():
        pytest.skip("exported/manifest.json is absent in this checkout")
    return json.loads(path.read_text())


def test_every_manifest_file_exists_with_its_sha256_and_size():
    artifacts = manifest()["artifacts"]
    assert artifacts
    for rel, entry in artifacts.items():
        path = EXPORTED / rel
        assert path.exists(), rel
        assert size_of(path) == entry["bytes"], rel
        assert sha256_of(path) == entry["sha256"], rel


def test_manifest_lists_every_zoo_style_with_all_required_artifacts():
    data = manifest()
    assert set(shipped_styles()) <= set(data["styles"])
    for style in shipped_styles():
        have = {(a["target"], a["precision"]) for a in data["artifacts"].values() if a["style"] == style}
        for need in [("onnx", "fp32"), ("onnx", "int8"), ("coreml", "fp16"), ("coreml", "int8"), ("tflite", "fp32"),
                     ("tflite", "int8")]:
            assert need in have, (style, need)
        record = data["styles"][style]
        assert (EXPORTED / record["preview"]).is_file()
        assert record["licence"] and record["style_source"]
        if "quality" in record:  # measured when the eval photos were present at ship time (toolkit.metrics)
            q = record["quality"]["mean"]
            assert q["style_strength"] < 0.2, style  # Gram distance to the style vs the photos' own
            assert q["grain"] <= 1.1 * q["photo_grain"], style  # no 2-pixel grain beyond the photos' own
            assert q["layout"] < 0.5, style  # light and dark masses near the photo's (about 2: unrelated)


def test_every_parity_record_passed():
    for rel, entry in manifest()["artifacts"].items():
        parity = entry.get("parity")
        assert parity and parity.get("passed", True), rel


def test_every_shipped_tflite_file_runs_wholly_on_xnnpack():
    """What `litert-benchmark` reports as "Fully accelerated": a graph op LiteRT's CPU accelerator does not take
    runs in the interpreter, between copies (session 24's starry_night files were not, and nothing said so)."""
    from toolkit.export.nhwc import fully_accelerated

    files = sorted(rel for rel in manifest()["artifacts"] if rel.endswith(".tflite"))
    if fully_accelerated(EXPORTED / files[0]) is None:
        pytest.skip("this ai-edge-litert has no CompiledModel API (pip install 'toolkit[tflite]')")
    assert [f for f in files if not fully_accelerated(EXPORTED / f)] == []


def test_shipped_styles_load_from_the_package_and_change_the_image():
    if not shipped_styles():
        pytest.skip("no style shipped in toolkit/zoo yet")
    x = torch.rand(1, 3, 64, 80)
    for style in shipped_styles():
        ckpt = load_style(style)
        y = stylize_tensor(ckpt.model, x)
        assert y.shape == x.shape
        assert float((y - x).abs().mean()) > 0.02, style


def test_packaged_checkpoint_keeps_the_weights_and_a_compact_training_record(tmp_path):
    model = tiny_model()
    history = [{"step": i, "total": 10.0 / i, "content": 1.0, "style": 1e-3, "tv": 0.1, "step_seconds": 2.0,
                "loader_wait_fraction": 0.01} for i in range(1, 101)]
    src = save_checkpoint(tmp_path / "run" / "s.safetensors", model,
                          {"name": "s", "step": 100, "history": history,
                           "train_config": {"arch": "tiny", "steps": 100, "style_image": "/x/s.png",
                                            "loss": {"temporal_weight": 200.0, "encoder_precision": "bf16"}},
                           "recipe_changes": [{"step": 60, "temporal_weight": [0.0, 200.0]}]})
    dest = package_checkpoint(src, "s", "a test pattern", "CC0", zoo_dir=tmp_path / "zoo")
    packaged = load_checkpoint(dest)
    for k, v in model.state_dict().items():
        assert torch.equal(v, packaged.model.state_dict()[k])
    assert "history" not in packaged.meta
    assert packaged.meta["training"]["steps"] == 100
    assert packaged.meta["training"]["wall_time_s"] == pytest.approx(200.0)
    assert packaged.meta["training"]["final_losses"]["total"] == pytest.approx(np.mean([10.0 / i for i in
                                                                                       range(81, 101)]))
    assert packaged.meta["recipe_changes"] == [{"step": 60, "temporal_weight": [0.0, 200.0]}]  # phases stay told
    start, resume = packaged.meta["train_command"].split(" && ")
    assert "--arch tiny" in start and "--steps 60" in start and "--temporal-weight" not in start
    assert "--encoder-precision bf16" in start
    assert resume == "toolkit train --name s --resume --steps 100 --temporal-weight 200.0"


def test_the_train_command_of_a_resumed_run_reproduces_each_phase_through_the_cli(monkeypatch):
    import dataclasses
    import shlex

    import toolkit.train
    from toolkit.cli import build_parser
    from toolkit.commands.train import recipe
    from toolkit.config import LossConfig, TrainConfig
    from toolkit.zoo.ship import train_command

    phases = [TrainConfig(name="s", style_image="s.png", content_dir="photos", arch="tiny", steps=300, seed=3,
                          loss=LossConfig(style_scales=(1.0, 0.5), edge_weight=8000.0, temporal_weight=1000.0,
                                          tone_weight=20.0))]
    phases.append(dataclasses.replace(phases[0], steps=400, lr=3e-4, freeze_batch_stats=True, frame_crops=0.75,
                                      loss=dataclasses.replace(phases[0].loss, edge_weight=32000.0,
                                                               style_scales=(1.0, 0.5, 0.25))))
    phases.append(dataclasses.replace(phases[1], steps=450, freeze_batch_stats=False,
                                      loss=dataclasses.replace(phases[1].loss, temporal_weight=2000.0,
                                                               tone_weight=0.0)))
    changes = [{"step": before.steps, **toolkit.train._recipe_changes(before, after)}
               for before, after in zip(phases, phases[1:])]
    commands = train_command(phases[-1].to_dict(), "s", changes).split(" && ")
    assert len(commands) == 3 and "--no-freeze-batch-stats" in commands[2]
    for i, command in enumerate(commands):  # each phase's command, over the recipe the run recorded before it
        monkeypatch.setattr(toolkit.train, "recorded_config", lambda out, name, i=i: phases[i - 1] if i else None)
        argv = shlex.split(command.replace("<photos>", "photos"))
        assert argv[:2] == ["toolkit", "train"]
        assert recipe(build_parser().parse_args(argv[1:])) == phases[i]


def test_a_fine_tuned_checkpoint_records_how_its_starting_point_was_trained(tmp_path):
    base = save_checkpoint(tmp_path / "base" / "base.safetensors", tiny_model(),
                           {"name": "base", "step": 1000, "train_config": {"arch": "tiny", "steps": 1000, "lr": 0.001,
                                                                           "style_image": "/x/s.png", "loss": {}}})
    src = save_checkpoint(tmp_path / "run" / "s.safetensors", tiny_model(seed=1),
                          {"name": "s", "step": 600, "history": [],
                           "train_config": {"arch": "tiny", "steps": 600, "init": str(base), "style_image": "/x/s.png",
                                            "freeze_batch_stats": True, "frame_crops": 0.5, "edge_ramps": 0.25,
                                            "loss": {"temporal_weight": 200.0, "edge_weight": 8000.0,
                                                     "edge_form": "drawn", "turn_weight": 150.0}}})
    meta = load_checkpoint(package_checkpoint(src, "s", "a test pattern", "CC0", zoo_dir=tmp_path / "zoo")).meta
    assert "--init base.safetensors" in meta["train_command"]
    assert " --edge-weight 8000.0 --edge-form drawn " in meta["train_command"]
    assert " --turn-weight 150.0 --turn-form strokes " in meta["train_command"]
    assert meta["train_command"].endswith(" --freeze-batch-stats --frame-crops 0.5 --edge-ramps 0.25")
    assert meta["train_config"]["init"] == "base.safetensors"  # no local paths
    assert meta["fine_tuned_from"]["steps"] == 1000
    assert "--steps 1000" in meta["fine_tuned_from"]["train_command"]
    assert "--temporal-weight" not in meta["fine_tuned_from"]["train_command"]


def test_the_starting_point_is_recorded_as_it_was_when_training_began_not_as_its_file_is_at_shipping(tmp_path):
    """Fine-tune a shipped style, reship it, then package the run again: its record must not name itself."""
    base = tmp_path / "zoo" / "style.safetensors"
    save_checkpoint(base, tiny_model(), {"name": "style", "train_command": "toolkit train --steps 400",
                                         "training": {"steps": 400}})
    init_record = {"training": {"steps": 400}, "train_command": "toolkit train --steps 400"}
    src = save_checkpoint(tmp_path / "run" / "s.safetensors", tiny_model(seed=1),
                          {"name": "s", "step": 300, "history": [], "init_record": init_record,
                           "train_config": {"arch": "tiny", "steps": 300, "init": str(base),
                                            "style_image": "/x/s.png", "loss": {}}})
    save_checkpoint(base, tiny_model(seed=1), {"name": "style", "train_command": "toolkit train --steps 300",
                                               "training": {"steps": 300}})  # the style was reshipped meanwhile
    meta = load_checkpoint(package_checkpoint(src, "s", "a test pattern", "CC0", zoo_dir=tmp_path / "out")).meta
    assert meta["fine_tuned_from"] == {"steps": 400, "train_command": "toolkit train --steps 400"}


def test_gallery_has_a_row_per_artifact(tmp_path):
    data = {"styles": {"s": {"arch": "tiny", "params": 10, "macs_480x640": 1e6, "style_source": "x", "licence": "y",
                             "train_command": "toolkit train", "training": {"steps": 5, "wall_time_s": 60},
                             "preview": "s/preview.png",
                             "quality": {"side": 512, "mean": {"style_strength": 0.08, "grain": 1.03,
                                                               "photo_grain": 1.04, "edge_stripe_max": 0.02,
                                                               "content": 6.7, "layout": 0.12}},
                             "fine_tuned_from": {"steps": 1000, "train_command": "toolkit train --steps 1000"}}},
            "artifacts": {f"s/s.{i}.onnx": {"style": "s", "target": "onnx", "precision": "fp32", "sizes": "dynamic",
                                            "bytes": 1000, "parity": {"max_abs": 1e-6}} for i in range(3)}}
    text = write_gallery(tmp_path, data).read_text()
    assert text.count("| s/s.") == 3 and "![s](s/preview.png)" in text
    assert "from a net trained 1000 steps: `toolkit train --steps 1000`" in text
    assert "style strength 0.080" in text and "layout lost 0.12" in text


def test_reshipping_a_zoo_style_keeps_its_training_record(tmp_path, monkeypatch):
    import toolkit.zoo.ship as ship_mod

    zoo = tmp_path / "zoo"
    src = save_checkpoint(tmp_path / "run" / "s.safetensors", tiny_model(),
                          {"name": "s", "step": 7, "history": [{"step": 7, "total": 1.0, "step_seconds": 3.0}],
                           "train_config": {"arch": "tiny", "steps": 7, "style_image": "/x/s.png", "loss": {}}})
    packaged = package_checkpoint(src, "s", "a test pattern", "CC0", zoo_dir=zoo)
    monkeypatch.setattr(ship_mod, "ZOO_DIR", zoo)
    record = ship_mod.ship(packaged, "s", "a test pattern", "CC0", None, tmp_path / "exported", skip_export=True)
    assert record["training"]["steps"] == 7 and record["training"]["wall_time_s"] == pytest.approx(3.0)
    assert load_checkpoint(packaged).meta["training"] == record["training"]


def _ship_fixture(tmp_path, monkeypatch):
    """A tiny style shipped as ONNX fp32 only into tmp folders (no eval photos: no preview or look measures)."""
    import toolkit.zoo.ship as ship_mod

    zoo = tmp_path / "zoo"
    zoo.mkdir()
    src = save_checkpoint(tmp_path / "run" / "s.safetensors", tiny_model(),
                          {"name": "s", "step": 3, "history": [], "train_config": {"arch": "tiny", "loss": {}}})
    monkeypatch.setattr(ship_mod, "ZOO_DIR", zoo)
    monkeypatch.setattr(ship_mod, "EXPORTS", (("onnx", ("fp32",)),))
    monkeypatch.setattr(ship_mod, "eval_photos", lambda: [])
    return ship_mod, src, zoo, tmp_path / "exported"


def test_ship_exports_benches_and_records_through_the_library(tmp_path, monkeypatch):
    from toolkit.export import read_metadata

    ship_mod, src, zoo, out = _ship_fixture(tmp_path, monkeypatch)
    monkeypatch.setattr("toolkit.cli.main", lambda *a: pytest.fail("ship must not drive the CLI"))
    record = ship_mod.ship(src, "s", "a test pattern", "CC0 test", None, out)
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["artifacts"]["s/s.onnx"]
    assert entry["parity"]["max_abs"] < 1e-3
    assert entry["bench"]["fps"] > 0 and record["fps_480x640_onnx_1thread"]["s.onnx"] == entry["bench"]["fps"]
    assert manifest["styles"]["s"]["licence"] == "CC0 test"
    assert read_metadata(out / "s" / "s.onnx")["licence"] == "CC0 test"
    assert (out / "README.md").is_file() and (zoo / "s.safetensors").is_file()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_ship_failing_after_its_exports_leaves_zoo_and_exported_as_they_were(tmp_path, monkeypatch):
    ship_mod, src, zoo, out = _ship_fixture(tmp_path, monkeypatch)
    out.mkdir()
    (out / "manifest.json").write_text('{"format": "toolkit-manifest/1", "artifacts": {}}\n')
    before = sorted(p.name for p in out.rglob("*"))

    def failing_bench(files):
        assert [f.name for f in files] == ["s.onnx"]  # the staged export was benched
        raise UserError("benchmarking the exports failed")

    monkeypatch.setattr(ship_mod, "bench_rows", failing_bench)
    with pytest.raises(UserError, match="benchmarking"):
        ship_mod.ship(src, "s", "a test pattern", "CC0", None, out)
    assert sorted(p.name for p in out.rglob("*")) == before
    assert (out / "manifest.json").read_text() == '{"format": "toolkit-manifest/1", "artifacts": {}}\n'
    assert list(zoo.iterdir()) == []


def test_a_corrupt_manifest_stops_ship_before_the_zoo_is_touched(tmp_path, monkeypatch):
    ship_mod, src, zoo, out = _ship_fixture(tmp_path, monkeypatch)
    out.mkdir()
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        ship_mod.ship(src, "s", "a test pattern", "CC0", None, out)
    assert list(zoo.iterdir()) == [] and sorted(p.name for p in out.iterdir()) == ["manifest.json"]
