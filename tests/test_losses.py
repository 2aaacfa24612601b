"""Perceptual loss: VGG weights load from every source (safely), Gram/TV maths, loss behaviour."""

from __future__ import annotations

import hashlib

import pytest
import torch

from toolkit.errors import UserError
from toolkit.losses import PerceptualLoss, gram_matrix, load_vgg, total_variation
from toolkit.losses.vgg import VGGEncoder, download_state_dict, layer_names

from conftest import require_shared

TAPS = ["relu1_1", "relu2_1", "relu3_1"]


def torchvision_state_dict(net: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict in torchvision's `features.<i>` layout (what vgg16-397923af.pth holds)."""
    g = torch.Generator().manual_seed(seed)
    state, cin = {}, 3
    for i, name in enumerate(layer_names(net)):
        if name.startswith("conv"):
            cout = [64, 128, 256, 512, 512][int(name[4]) - 1]
            state[f"features.{i}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * 0.05
            state[f"features.{i}.bias"] = torch.randn(cout, generator=g) * 0.01
            cin = cout
    state["classifier.0.weight"] = torch.zeros(4, 4)  # present in real files, ignored
    return state


def test_gram_matrix_is_normalised_by_chw():
    f = torch.ones(1, 2, 3, 4)
    assert torch.allclose(gram_matrix(f), torch.full((1, 2, 2), 12.0 / 24.0))


def test_total_variation_is_zero_on_flat_and_positive_on_edges():
    assert float(total_variation(torch.full((1, 3, 8, 8), 0.3))) == 0.0
    x = torch.zeros(1, 3, 8, 8)
    x[..., :, 4:] = 1.0
    assert float(total_variation(x)) == pytest.approx(1.0 / 7.0)


def test_shared_normalised_vgg19_loads_and_activations_are_about_one():
    path = require_shared("weights", "vgg19_normalised_to_relu3_1.safetensors")
    enc = load_vgg(TAPS, weights=path)
    x = torch.rand(1, 3, 64, 64) * 0.5 + 0.25
    feats = enc(x)
    assert set(feats) == set(TAPS)
    assert feats["relu3_1"].shape == (1, 256, 16, 16)
    assert 0.05 < float(feats["relu1_1"].mean()) < 20


def test_default_source_is_the_shared_weights():
    require_shared("weights", "vgg19_normalised_to_relu3_1.safetensors")
    enc = load_vgg(TAPS)
    assert enc.preprocess_kind == "caffe_normalised"


def test_taps_deeper_than_the_shared_weights_are_a_clear_error(tmp_path):
    from safetensors.torch import save_file

    enc = VGGEncoder("vgg19", ["relu3_1"], preprocess="caffe_normalised", padding="reflect")
    state = {"preprocess.weight": enc.preprocess.weight, "preprocess.bias": enc.preprocess.bias}
    for n in enc.conv_names():
        state[f"{n}.weight"], state[f"{n}.bias"] = enc.layers[n].weight, enc.layers[n].bias
    path = tmp_path / "to_relu3_1.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    assert load_vgg(["relu3_1"], weights=path).layers["conv3_1"].weight.shape == (256, 128, 3, 3)
    with pytest.raises(UserError, match="stop before conv3_2"):
        load_vgg(["relu4_1"], weights=path)


@pytest.mark.parametrize("net", ["vgg16", "vgg19"])
def test_torchvision_state_dict_from_a_local_pth(tmp_path, net):
    state = torchvision_state_dict(net)
    path = tmp_path / f"{net}.pth"
    torch.save(state, path)
    enc = load_vgg(["relu2_2", "relu4_1"], net=net, weights=path)
    assert enc.net == net
    i = layer_names(net).index("conv4_1")
    assert torch.equal(enc.layers["conv4_1"].weight, state[f"features.{i}.weight"])
    assert enc(torch.rand(1, 3, 32, 32))["relu4_1"].shape == (1, 512, 4, 4)


def test_hub_download_checks_the_hash_in_the_file_name(tmp_path):
    src = tmp_path / "src.pth"
    torch.save(torchvision_state_dict("vgg16"), src)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    good = tmp_path / f"vgg16-{digest[:8]}.pth"
    src.rename(good)
    state = download_state_dict(good.as_uri(), model_dir=str(tmp_path / "cache"))
    assert "features.0.weight" in state
    assert (tmp_path / "cache" / good.name).is_file()  # cached like torch.hub does
    bad = tmp_path / "vgg16-deadbeef.pth"
    good.rename(bad)
    with pytest.raises(UserError, match="hash"):
        download_state_dict(bad.as_uri(), model_dir=str(tmp_path / "cache2"))


def test_offline_download_failure_names_the_alternatives(tmp_path):
    with pytest.raises(UserError, match="--loss-weights"):
        download_state_dict((tmp_path / "vgg19-00000000.pth").as_uri(), model_dir=str(tmp_path / "c"))


class Evil:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_a_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"features.0.weight": Evil()}, path)
    with pytest.raises(UserError, match="safely"):
        load_vgg(TAPS, weights=path)


def test_random_loss_net_only_on_request_and_warns():
    with pytest.warns(UserWarning, match="quality drops"):
        enc = load_vgg(TAPS, net="random", seed=3)
    with pytest.warns(UserWarning):
        again = load_vgg(TAPS, net="random", seed=3)
    assert torch.equal(enc.layers["conv1_1"].weight, again.layers["conv1_1"].weight)


def test_perceptual_loss_prefers_the_style_image_itself():
    with pytest.warns(UserWarning):
        enc = load_vgg(TAPS, net="random")
    torch.manual_seed(0)
    style = torch.rand(1, 3, 64, 64)
    loss = PerceptualLoss(enc, style, ["relu3_1"], TAPS)
    content = torch.rand(1, 3, 64, 64) * 0.2
    same = loss.measure(style, content)
    other = loss.measure(content, content)
    assert same["style"] < 1e-6 < other["style"]
    assert other["content"] == pytest.approx(0.0, abs=1e-8)
    parts = loss(content, content)
    total = loss.content_weight * parts["content"] + loss.style_weight * parts["style"] + loss.tv_weight * parts["tv"]
    assert torch.allclose(parts["total"], total)


def test_bf16_encoder_keeps_the_losses_and_their_gradient_within_a_percent():
    with pytest.warns(UserWarning):
        enc = load_vgg(TAPS, net="random")
    torch.manual_seed(0)
    style, content = torch.rand(1, 3, 64, 64), torch.rand(2, 3, 64, 64)
    grads, values = {}, {}
    for precision in ("fp32", "bf16"):
        loss = PerceptualLoss(enc, style, ["relu3_1"], TAPS, encoder_precision=precision)
        output = (content * 0.5 + 0.25).requires_grad_()
        parts = loss(output, content)
        parts["total"].backward()
        grads[precision], values[precision] = output.grad, parts
        assert all(v.dtype == torch.float32 for v in parts.values())
    for key in ("content", "style"):
        assert float(values["bf16"][key]) == pytest.approx(float(values["fp32"][key]), rel=0.01)
    assert torch.nn.functional.cosine_similarity(grads["bf16"].flatten(), grads["fp32"].flatten(), 0) > 0.99


def test_unknown_encoder_precision_is_refused():
    with pytest.warns(UserWarning):
        enc = load_vgg(TAPS, net="random")
    with pytest.raises(ValueError, match="fp16.*bf16"):
        PerceptualLoss(enc, torch.rand(1, 3, 32, 32), ["relu3_1"], TAPS, encoder_precision="fp16")

