"""Compression: structured pruning, QAT, quality accounting, and their bad-input errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_ARCH, natural_image, tiny_model
from toolkit.checkpoint import load_checkpoint, save_checkpoint
from toolkit.cli import main
from toolkit.compress.prune import prune_model, pruned_arch
from toolkit.compress.qat import bake_weights, distinct_levels, fake_quant, palettize_weight, quantize_weight
from toolkit.parity import psnr
from toolkit.config import ArchConfig, TrainConfig
from toolkit.errors import UserError
from toolkit.models import TransformerNet, count_params, create_model

RESIDUAL_ARCH = ArchConfig(widths=(4, 8, 8), down_stages=2, res_blocks=2, block="residual", first_kernel=3,
                           last_kernel=3)


@pytest.fixture
def style_image(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "style.png"
    Image.fromarray((natural_image(48, 48, seed=7)[:, ::-1] * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture
def trained_checkpoint(tmp_path: Path, image_dir: Path, style_image: Path) -> Path:
    """A tiny checkpoint that records its (tiny) training recipe, as `toolkit train` writes it."""
    cfg = TrainConfig(name="tiny", style_image=str(style_image), content_dir=str(image_dir), size=32, batch=2, style_size=48,
                      workers=0)
    cfg = TrainConfig.from_dict(dict(cfg.to_dict(), loss=dict(cfg.loss.__dict__, loss_net="random")))
    return save_checkpoint(tmp_path / "tiny.safetensors", tiny_model(), {"name": "tiny",
                                                                          "train_config": cfg.to_dict()})


@pytest.mark.parametrize("arch", [TINY_ARCH, RESIDUAL_ARCH, TINY_ARCH.__class__(**{**TINY_ARCH.__dict__,
                                                                                    "block": "dwsep"})])
def test_pruned_model_keeps_output_shape_and_halves_widths(arch):
    model = tiny_model(arch)
    pruned = prune_model(model, 0.5)
    assert pruned.config.widths == tuple(max(1, round(w / 2)) for w in arch.widths)
    assert count_params(pruned) < 0.45 * count_params(model)
    x = torch.rand(1, 3, 32, 48)
    assert pruned(x).shape == model(x).shape == (1, 3, 32, 48)


def test_pruning_keeps_surviving_channels_and_drops_the_weakest():
    model = tiny_model(RESIDUAL_ARCH)
    stem = model.stem[0][-1]
    with torch.no_grad():
        stem.weight[:2] *= 1e-3  # the two weakest stem channels by L1
    pruned = prune_model(model, 0.5)
    kept = pruned.stem[0][-1].weight
    originals = stem.weight.reshape(stem.out_channels, -1)
    matches = [int(torch.argmin((originals - row.reshape(1, -1)).abs().sum(1))) for row in kept]
    assert sorted(matches) == [2, 3]
    for i, j in enumerate(matches):  # the coupled instance-norm affine params travel with their channel
        assert torch.equal(kept[i], stem.weight[j])
        assert pruned.stem[1].weight[i] == model.stem[1].weight[j]


def test_pruned_checkpoint_reloads_without_torch_pruning(tmp_path: Path):
    path = save_checkpoint(tmp_path / "p.safetensors", prune_model(tiny_model(), 0.5), {"name": "p"})
    code = ("import sys; from toolkit.checkpoint import load_checkpoint; import torch; "
            f"m = load_checkpoint({str(path)!r}).model; y = m(torch.rand(1, 3, 32, 32)); "
            "assert 'torch_pruning' not in sys.modules, 'torch_pruning imported'; print(tuple(y.shape))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(1, 3, 32, 32)"


@pytest.mark.slow
def test_prune_cli_finetunes_and_writes_a_plain_checkpoint(trained_checkpoint: Path, tmp_path: Path):
    out = tmp_path / "pruned.safetensors"
    assert main(["prune", "--checkpoint", str(trained_checkpoint), "--sparsity", "0.5", "--finetune-steps", "2",
                 "--importance", "taylor", "--encoder-precision", "bf16", "-o", str(out)]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt.arch.widths == (2, 4)
    assert ckpt.meta["train_config"]["loss"]["encoder_precision"] == "bf16"  # the fine-tune's own loss settings
    record = ckpt.meta["compression"][-1]
    assert record["finetune_steps"] == 2 and math.isfinite(record["final_losses"]["total"])
    assert record["params_after"] < record["params_before"]
    before = load_checkpoint(trained_checkpoint).model  # fine-tune changed weights from the pruned start
    assert ckpt.model(torch.rand(1, 3, 32, 32)).shape == before(torch.rand(1, 3, 32, 32)).shape


@pytest.mark.slow
def test_prune_then_qat_cli_runs(trained_checkpoint: Path, tmp_path: Path):
    out = tmp_path / "pq.safetensors"
    assert main(["prune", "--checkpoint", str(trained_checkpoint), "--sparsity", "0.25", "--finetune-steps", "2",
                 "--qat-bits", "4", "-o", str(out)]) == 0
    assert distinct_levels(load_checkpoint(out).model) <= 15


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_weight_quantization_has_at_most_2_pow_bits_levels(bits):
    model = bake_weights(tiny_model(), bits)
    assert distinct_levels(model) <= 2 ** bits - 1
    if bits < 8:  # the float model really had more (tiny channels hold fewer than 255 weights)
        assert distinct_levels(tiny_model()) > 2 ** bits - 1


@pytest.mark.parametrize("bits", [6, 4, 2, 1])
def test_palette_baking_leaves_at_most_2_pow_bits_values_per_conv(bits):
    model = bake_weights(tiny_model(), bits, grid="palette")
    assert distinct_levels(model, per="tensor") <= 2 ** bits
    assert distinct_levels(tiny_model(), per="tensor") > 2 ** bits


def test_palette_centroids_are_kmeans_not_a_uniform_grid():
    """Two clusters of weights far apart: a 1-bit palette must land on their means (a uniform grid would not)."""
    w = torch.cat([torch.full((50,), -0.9), torch.full((50,), 0.1)]) + torch.linspace(-0.01, 0.01, 50).repeat(2)
    q = palettize_weight(w, 1)
    assert torch.unique(q).tolist() == pytest.approx([-0.9, 0.1], abs=1e-4)


@pytest.mark.parametrize("quantize, bits", [(quantize_weight, 2), (palettize_weight, 1)])
def test_fake_quant_passes_gradients_straight_through(quantize, bits):
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    quantize(w, bits).sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))


@pytest.mark.slow
@pytest.mark.parametrize("head", ["shuffle", "bilinear"])
def test_coreml_palettization_reproduces_palette_baked_weights(tmp_path: Path, head: str):
    """What palette QAT is for: coremltools' k-means finds the baked palette again, so the exported palettize4
    model computes what the fine-tuned one did (an unbaked model loses far more). With a bilinear head the deploy
    form folds the last conv into phase weights that sit on no palette: that conv must stay unpalettized."""
    pytest.importorskip("coremltools")
    pytest.importorskip("sklearn")
    import dataclasses

    from toolkit.models.deploy import deploy_form
    from toolkit.export import ExportSpec, export_artifact, load_runner
    from toolkit.models import arch_config

    config = TINY_ARCH if head == "shuffle" else dataclasses.replace(arch_config("nano"), widths=(4, 8), res_blocks=1)

    x = natural_image(32, 48).transpose(2, 0, 1)[None].astype(np.float32)

    def exported_psnr(model, name: str) -> float:
        dest = tmp_path / f"{name}.mlpackage"
        spec = ExportSpec(target="coreml", precision="palettize4", sizes=((32, 48),), style=name)
        export_artifact(model, spec, dest, check=False)
        with torch.no_grad():
            expected = deploy_form(model)[0](torch.from_numpy(x)).numpy()
        return psnr(expected, load_runner(dest)(x))

    results = {"baked": exported_psnr(bake_weights(tiny_model(config), 4, grid="palette"), "baked"),
               "float": exported_psnr(tiny_model(config), "float")}
    assert results["baked"] > 60 and results["baked"] > results["float"] + 20


@pytest.mark.slow
@pytest.mark.parametrize("flags, per, levels", [(["--bits", "2"], "channel", 3),
                                               (["--bits", "1", "--palette"], "tensor", 2)])
def test_qat_cli_trains_and_bakes_weights(trained_checkpoint: Path, tmp_path: Path, flags, per, levels):
    out = tmp_path / "q.safetensors"
    assert main(["qat", "--checkpoint", str(trained_checkpoint), *flags, "--finetune-steps", "2",
                 "-o", str(out)]) == 0
    ckpt = load_checkpoint(out)
    assert distinct_levels(ckpt.model, per=per) <= levels
    assert ckpt.meta["compression"][-1]["method"] == "qat"
    assert not any("parametrizations" in k for k in ckpt.model.state_dict())


def test_fake_quant_context_restores_a_plain_model():
    model = tiny_model()
    with fake_quant(model, 8):
        y = model(torch.rand(1, 3, 32, 32))
    assert y.shape == (1, 3, 32, 32)
    TransformerNet(model.config).load_state_dict(model.state_dict(), strict=True)


def test_psnr_is_computed():
    a = natural_image(32, 32)
    assert psnr(a, a) == math.inf
    noisy = np.clip(a + np.random.default_rng(0).normal(0, 0.01, a.shape), 0, 1)
    noisier = np.clip(a + np.random.default_rng(0).normal(0, 0.05, a.shape), 0, 1)
    assert 30 < psnr(a, noisy) < 45 and psnr(a, noisier) < psnr(a, noisy) - 10


@pytest.mark.slow
def test_compare_reports_computed_numbers(trained_checkpoint: Path, tmp_path: Path, image_dir: Path):
    perturbed = load_checkpoint(trained_checkpoint).model
    with torch.no_grad():
        for p in perturbed.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    other = save_checkpoint(tmp_path / "perturbed.safetensors", perturbed, {"name": "perturbed"})
    pruned = save_checkpoint(tmp_path / "pruned.safetensors", prune_model(load_checkpoint(trained_checkpoint).model,
                                                                          0.5), {"name": "pruned"})
    out = tmp_path / "report"
    assert main(["compare", str(trained_checkpoint), str(other), str(pruned), "--images", str(image_dir),
                 "--size", "64", "-o", str(out)]) == 0
    data = json.loads((out / "compare.json").read_text())
    rows = {r["name"]: r for r in data["rows"]}
    assert rows["tiny"]["psnr_db"] is None and rows["tiny"]["style_change_pct"] == 0.0  # itself: infinite PSNR
    assert 5 < rows["perturbed"]["psnr_db"] < 60
    assert rows["pruned"]["params"] < rows["tiny"]["params"] and rows["pruned"]["macs"] < rows["tiny"]["macs"]
    assert rows["tiny"]["bytes"] == trained_checkpoint.stat().st_size
    assert "| perturbed |" in (out / "compare.md").read_text()
    from PIL import Image

    with Image.open(out / "compare.png") as im:
        assert im.width > 3 * 48


def test_compare_takes_a_style_name_like_style(tmp_path: Path, image_dir: Path, capsys):
    out = tmp_path / "report"
    style_image = str(sorted(image_dir.iterdir())[0])
    assert main(["compare", "frost", "--images", str(image_dir), "--size", "32", "--loss-net", "random",
                 "--style-image", style_image, "-o", str(out)]) == 0
    data = json.loads((out / "compare.json").read_text())
    assert data["reference"].endswith("frost.safetensors") and [r["params"] > 0 for r in data["rows"]] == [True]
    assert main(["compare", "no_such_style", "-o", str(out)]) == 2
    assert "no_such_style" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["prune", "--sparsity", "1.0"], "between 0 and 1"),
    (["prune", "--sparsity", "0"], "between 0 and 1"),
    (["prune", "--sparsity", "0.5", "--qat-bits", "4"], "--finetune-steps"),
    (["qat", "--bits", "3"], "--bits 3 is not supported"),
    (["qat", "--bits", "8", "--palette"], "--bits 8 is not supported for the palette grid"),
])
def test_bad_compression_arguments_exit_2(argv, message, trained_checkpoint: Path, tmp_path: Path, capsys):
    argv = argv[:1] + ["--checkpoint", str(trained_checkpoint), "-o", str(tmp_path / "x.safetensors")] + argv[1:]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.glob("x*")) and not list(tmp_path.glob(".x*"))


def test_too_few_calibration_images_is_a_user_error(trained_checkpoint: Path, tmp_path: Path, capsys):
    few = tmp_path / "few"
    few.mkdir()
    from PIL import Image

    Image.fromarray((natural_image(32, 32) * 255).astype(np.uint8)).save(few / "a.png")
    code = main(["prune", "--checkpoint", str(trained_checkpoint), "--sparsity", "0.5", "--finetune-steps", "1",
                 "--content-dir", str(few), "-o", str(tmp_path / "y.safetensors")])
    assert code == 2 and "at least 4" in capsys.readouterr().err
    assert not (tmp_path / "y.safetensors").exists()


def test_checkpoint_from_another_arch_is_a_user_error(tmp_path: Path, capsys):
    path = save_checkpoint(tmp_path / "a.safetensors", tiny_model(), {"name": "a"})
    from safetensors.torch import load_file, save_file

    meta = json.loads(path.with_suffix(".json").read_text())
    meta["arch"]["widths"] = [6, 8]  # weights no longer match the recorded arch (in the header, which load trusts)
    save_file(load_file(str(path)), str(path), metadata={"meta": json.dumps(meta)})
    assert main(["prune", "--checkpoint", str(path), "--sparsity", "0.5", "-o", str(tmp_path / "b")]) == 2
    assert "another arch" in capsys.readouterr().err
    assert not (tmp_path / "b.safetensors").exists()


def test_pixelshuffle_upsampling_is_refused():
    with pytest.raises(UserError, match="pixelshuffle"):
        pruned_arch(create_model("nano", upsample="pixelshuffle").config, 0.5)


@pytest.mark.parametrize("upsample, norm, trunk_norm, folded_norms", [
    ("conv_bilinear", "batch", None, ("none", None)),
    ("nearest", "batch", None, ("none", None)),
    ("transposed", "batch", None, ("none", None)),
    ("pixelshuffle", "batch", None, ("none", None)),
    ("conv_bilinear", "instance", "batch", ("instance", "none")),  # nano_lite: instance norm stays at the ends
    ("nearest", "batch", "instance", ("none", "instance")),
])
def test_batchnorm_folds_exactly_into_the_convs(upsample, norm, trunk_norm, folded_norms):
    from toolkit.models.deploy import fold_batchnorm

    arch = ArchConfig(widths=(4, 8), down_stages=2, res_blocks=1, block="residual", first_kernel=3, last_kernel=3,
                      norm=norm, trunk_norm=trunk_norm, upsample=upsample)
    model = TransformerNet(arch)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.2, 0.2)
    model.eval()
    folded = fold_batchnorm(model)
    assert (folded.config.norm, folded.config.trunk_norm) == folded_norms
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-4)


def test_instance_norm_does_not_fold():
    from toolkit.models.deploy import fold_batchnorm

    with pytest.raises(UserError, match="only batch norm folds"):
        fold_batchnorm(tiny_model())


def _perturbed(model):
    with torch.no_grad():
        for prm in model.parameters():
            prm.add_(torch.randn_like(prm) * 0.1)
    return model.eval()


@pytest.mark.parametrize("head_padding", ["replicate", "reflect", "zero"])
def test_bilinear_head_folds_into_a_half_res_phase_conv_exactly_on_every_pixel_when_padded_by_replication(
        head_padding):
    from toolkit.models.deploy import fold_bilinear_head

    torch.manual_seed(0)
    # without the context ring, whose crop would hide the outer ring this is about
    model = _perturbed(create_model("nano", head_padding=head_padding, context_pad=0))
    folded = fold_bilinear_head(model)
    assert folded.config.head == "shuffle" and not any(isinstance(m, torch.nn.Upsample) for m in folded.head.modules())
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        a, b = model(x), folded(x)
    assert a.shape == b.shape
    torch.testing.assert_close(b[..., 2:-2, 2:-2], a[..., 2:-2, 2:-2], atol=2e-6, rtol=0)
    if head_padding == "replicate":  # bilinear x2 clamps = upsamples the edge-replicated map: same at the edge
        torch.testing.assert_close(b, a, atol=2e-6, rtol=0)
    else:  # the outer ring really is different: clamped bilinear vs a reflect/zero padded conv
        assert (b - a).abs().max() > 1e-4


def test_only_a_bilinear_head_folds():
    from toolkit.models.deploy import deploy_form, fold_bilinear_head

    with pytest.raises(UserError, match="bilinear head"):
        fold_bilinear_head(tiny_model())
    model = tiny_model()
    assert deploy_form(model) == (model, None)


def test_export_writes_the_deploy_form_and_records_its_fidelity(tmp_path):
    pytest.importorskip("onnxruntime")
    from toolkit.export import ExportSpec, export_artifact, read_metadata

    torch.manual_seed(0)
    record = export_artifact(_perturbed(create_model("nano")), ExportSpec(target="onnx", style="n"),
                             tmp_path / "n.onnx")
    assert json.loads(read_metadata(tmp_path / "n.onnx")["arch"])["head"] == "shuffle"
    assert record["parity"]["sizes"]  # proven against the deploy form at the fp32 tolerance
    rewrite = record["deploy_rewrite"]
    assert rewrite["exact"] and rewrite["max_abs_diff"] < 1e-5
    assert record["parity"]["reference"] == "trained net" and record["parity"]["images_per_size"] == 8


def test_a_batch_norm_net_deploys_with_no_norm_and_a_folded_head():
    from toolkit.models.deploy import deploy_form

    torch.manual_seed(0)
    model = create_model("nano_bn")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
    deployed, record = deploy_form(_perturbed(model))
    assert deployed.config.norm == "none" and deployed.config.head == "shuffle"
    assert "batch norm folded" in record["rewrite"] and "PixelShuffle" in record["rewrite"]
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        a, b = model(x), deployed(x)
    torch.testing.assert_close(b, a, atol=2e-5, rtol=1e-4)
    assert record == {"rewrite": record["rewrite"], "exact": True}  # a transform: it measures nothing itself


def test_nano_lite_keeps_instance_norm_only_at_the_ends_and_deploys_with_two():
    from toolkit.models.deploy import deploy_form

    model = create_model("nano_lite")
    norms = {name.split(".")[0]: type(m).__name__ for name, m in model.named_modules()
             if isinstance(m, (torch.nn.InstanceNorm2d, torch.nn.BatchNorm2d))}
    assert norms == {"stem": "InstanceNorm2d", "down": "BatchNorm2d", "res": "BatchNorm2d", "up": "InstanceNorm2d"}
    model = _perturbed(model)
    deployed, record = deploy_form(model)
    assert sum(isinstance(m, torch.nn.InstanceNorm2d) for m in deployed.modules()) == 2
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in deployed.modules())
    assert "batch norm folded" in record["rewrite"] and record["exact"]
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), model(x), atol=2e-5, rtol=1e-4)


@pytest.mark.slow
def test_compare_runs_exported_artifacts_in_their_runtime(trained_checkpoint: Path, tmp_path: Path,
                                                          image_dir: Path):
    pytest.importorskip("onnxruntime")
    from toolkit.export import ExportSpec, export_artifact

    model = load_checkpoint(trained_checkpoint).model
    onnx_path = tmp_path / "tiny.onnx"
    export_artifact(model, ExportSpec(target="onnx", precision="fp32", style="tiny"), onnx_path, check=False)
    out = tmp_path / "report"
    assert main(["compare", str(trained_checkpoint), str(onnx_path), "--images", str(image_dir), "--size", "64",
                 "-o", str(out)]) == 0
    row = {r["name"]: r for r in json.loads((out / "compare.json").read_text())["rows"]}["tiny.onnx"]
    assert row["kind"] == "onnx" and row["params"] == count_params(model)  # arch read from the artifact
    assert row["psnr_db"] is None or row["psnr_db"] > 80  # fp32 ONNX matches torch to ~1e-6
    assert row["bytes"] == onnx_path.stat().st_size


def test_default_output_never_overwrites_the_input(tmp_path: Path):
    from toolkit.compress.finetune import check_output, default_output

    src = save_checkpoint(tmp_path / "frost.safetensors", tiny_model(), {"name": "frost"})
    out = check_output(default_output(src, "qat4"), src)
    assert out.name == "frost.qat4.safetensors"
    save_checkpoint(out, tiny_model(seed=1), {"name": "frost"})
    assert (tmp_path / "frost.qat4.safetensors").is_file() and (tmp_path / "frost.qat4.json").is_file()
    assert torch.equal(load_checkpoint(src).model.stem[0][-1].weight, tiny_model().stem[0][-1].weight)
    with pytest.raises(UserError, match="overwrite"):
        check_output(tmp_path / "frost", src)


def test_prune_takes_a_shipped_style_name_and_writes_into_runs_not_the_package(tmp_path: Path, monkeypatch):
    from toolkit.zoo import ZOO_DIR, shipped_styles

    if "frost" not in shipped_styles():
        pytest.skip("the frost style is not shipped in this build")
    monkeypatch.chdir(tmp_path)
    assert main(["prune", "--checkpoint", "frost", "--sparsity", "0.5"]) == 0
    pruned = load_checkpoint(tmp_path / "runs" / "frost.pruned50.safetensors")
    assert pruned.arch.widths == (6, 16)
    assert pruned.meta["compression"][-1]["source"] == str(ZOO_DIR / "frost.safetensors")
    assert not (ZOO_DIR / "frost.pruned50.safetensors").exists()
    assert main(["prune", "--checkpoint", "frots", "--sparsity", "0.5"]) == 2  # a typo: did you mean
