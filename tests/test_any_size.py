"""Any image size: the net pads to its stride and crops back itself, so torch and every dynamic-size export return
the input's H x W for sides of 4k+1, 4k+2, 4k+3, tiny and large, and refuse sides below 2 * stride in one line."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from toolkit.errors import UserError
from toolkit.models import create_model

SIZES = [(8, 8), (17, 33), (257, 258), (259, 256), (256, 255), (721, 1281)]


def _net(preset="nano_fine"):
    torch.manual_seed(0)
    model = create_model(preset).eval()
    with torch.no_grad():
        for prm in model.parameters():
            prm.add_(torch.randn_like(prm) * 0.1)
    return model


def test_the_net_returns_the_input_size_for_any_side_from_8():
    model = _net()
    for h, w in SIZES:
        with torch.no_grad():
            assert model(torch.rand(1, 3, h, w)).shape == (1, 3, h, w)


def test_an_aligned_input_runs_a_net_without_context_unpadded():
    from toolkit.models import TransformerNet, arch_config

    model = TransformerNet(dataclasses.replace(arch_config("nano_fine"), context_pad=0)).eval()
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model._forward(x), atol=0, rtol=0)


def test_stylize_refuses_a_side_below_the_minimum_in_one_line():
    from toolkit.stylize import stylize_tensor

    with pytest.raises(UserError, match="at least 8 px"):
        stylize_tensor(_net(), torch.rand(1, 3, 7, 64))


@pytest.mark.parametrize("preset", ["nano_fine", "nano_deep_lite_edge"])  # reflected / replicated context ring
def test_the_dynamic_onnx_export_equals_the_net_at_any_size(preset, tmp_path):
    pytest.importorskip("onnxruntime")
    from toolkit.export import ExportSpec, export_artifact
    from toolkit.runtime import load_runner

    model = _net(preset)
    export_artifact(model, ExportSpec(target="onnx", style="n"), tmp_path / "n.onnx")
    runner = load_runner(tmp_path / "n.onnx")
    for h, w in SIZES:
        x = np.random.default_rng(h * w).random((1, 3, h, w), dtype=np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        out = runner(x)
        assert out.shape == (1, 3, h, w)
        assert float(np.abs(out - ref).max()) < 1e-4, (h, w)
    with pytest.raises(UserError, match="at least 8 px"):
        runner(np.zeros((1, 3, 6, 64), np.float32))
