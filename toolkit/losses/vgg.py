"""A frozen ImageNet VGG encoder with named taps (relu1_1 ... relu5_4) for the perceptual loss.

Weight sources, in order: an explicit file (`--loss-weights`), the shared VGG19 "normalised" weights (to relu3_1 or
relu3_4, whichever reaches the taps),
torchvision VGG16/VGG19 state dicts from the torch hub cache or (online) downloaded with their hash checked. A seeded
random encoder only on request (`--loss-net random`). Files load via safetensors or torch.load(weights_only=True).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Iterable, Mapping

import torch
from torch import nn

from toolkit.errors import UserError, unknown
from toolkit.paths import shared_data

log = logging.getLogger(__name__)

CFGS = {
    "vgg16": [2, 2, 3, 3, 3],
    "vgg19": [2, 2, 4, 4, 4],
}
WIDTHS = [64, 128, 256, 512, 512]
HUB_URLS = {  # torchvision's files; the 8 hex digits in the name are the sha256 prefix that torch.hub checks
    "vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "vgg19": "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
}
# The shared normalised VGG19 files, shallowest first; their common layers are bit-identical, so the loader takes the
# first one that reaches every requested tap.
SHARED_VGG19 = {"relu3_1": ("weights", "vgg19_normalised_to_relu3_1.safetensors"),
                "relu3_4": ("weights", "vgg19_normalised_to_relu3_4.safetensors")}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def layer_names(net: str) -> list[str]:
    """Module names in order: conv1_1, relu1_1, ..., pool1, ...; torchvision's features.<i> index = position."""
    names = []
    for block, n in enumerate(CFGS[net], start=1):
        for i in range(1, n + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


class VGGEncoder(nn.Module):
    """RGB [0,1] NCHW -> {tap: features}. Truncated after the deepest tap; parameters frozen."""

    def __init__(self, net: str, taps: Iterable[str], preprocess: str = "imagenet", padding: str = "zero"):
        super().__init__()
        if net not in CFGS:
            raise unknown("loss net", net, list(CFGS) + ["random"])
        names = layer_names(net)
        self.taps = list(dict.fromkeys(taps))
        for t in self.taps:
            if t not in names or not t.startswith("relu"):
                raise unknown(f"{net} tap", t, [n for n in names if n.startswith("relu")])
        last = max(names.index(t) for t in self.taps)
        self.net, self.preprocess_kind, self.padding = net, preprocess, padding
        if preprocess == "caffe_normalised":
            self.preprocess = nn.Conv2d(3, 3, 1)
        else:
            self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.layers = nn.ModuleDict()
        cin = 3
        for name in names[: last + 1]:
            if name.startswith("conv"):
                cout = WIDTHS[int(name[4]) - 1]
                self.layers[name] = nn.Conv2d(cin, cout, 3, padding=0 if padding == "reflect" else 1)
                cin = cout
            elif name.startswith("relu"):
                self.layers[name] = nn.ReLU(inplace=False)
            else:
                self.layers[name] = nn.MaxPool2d(2)
        self.requires_grad_(False)
        self.eval()

    def conv_names(self) -> list[str]:
        return [n for n in self.layers if n.startswith("conv")]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.preprocess_kind == "caffe_normalised":
            x = self.preprocess(x)
        else:
            x = (x - self.mean) / self.std
        out = {}
        for name, layer in self.layers.items():
            if name.startswith("conv") and self.padding == "reflect":
                x = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
            x = layer(x)
            if name in self.taps:
                out[name] = x
                if len(out) == len(self.taps):
                    break
        return out

    def train(self, mode: bool = True):  # always frozen
        return super().train(False)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise UserError(f"loss weights {path} do not exist; pass an existing VGG .safetensors or .pth file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any decode failure is the same user problem
        raise UserError(f"loss weights {path} could not be read safely ({type(exc).__name__}); "
                        "pass a safetensors file or a plain torchvision state dict") from exc
    if not isinstance(state, Mapping):
        raise UserError(f"loss weights {path} hold a {type(state).__name__}, not a state dict")
    return dict(state)


def encoder_from_state_dict(state: Mapping[str, torch.Tensor], taps: Iterable[str], source: str) -> VGGEncoder:
    """Build an encoder from either layout: the normalised VGG19 (`conv1_1.weight`, `preprocess.*`) or
    torchvision's (`features.<i>.weight`; VGG16 vs VGG19 told apart by the number of convs)."""
    taps = list(taps)
    if "conv1_1.weight" in state:
        enc = VGGEncoder("vgg19", taps, preprocess="caffe_normalised", padding="reflect")
        needed = ["preprocess"] + enc.conv_names()
        missing = [n for n in needed if f"{n}.weight" not in state]
        if missing:
            raise UserError(f"loss weights {source} stop before {missing[0]}, needed by taps {taps}; "
                            "choose shallower taps or full VGG weights")
        enc.preprocess.load_state_dict({"weight": state["preprocess.weight"], "bias": state["preprocess.bias"]})
        for n in enc.conv_names():
            enc.layers[n].load_state_dict({"weight": state[f"{n}.weight"], "bias": state[f"{n}.bias"]})
        return enc
    feature_keys = [k for k in state if k.startswith("features.") and k.endswith(".weight")]
    if not feature_keys:
        raise UserError(f"loss weights {source} are not a VGG state dict (no conv1_1.* or features.* keys)")
    net = "vgg19" if len(feature_keys) >= 16 else "vgg16"
    enc = VGGEncoder(net, taps, preprocess="imagenet", padding="zero")
    names = layer_names(net)
    for n in enc.conv_names():
        i = names.index(n)
        enc.layers[n].load_state_dict({"weight": state[f"features.{i}.weight"], "bias": state[f"features.{i}.bias"]})
    return enc


def download_state_dict(url: str, model_dir: str | None = None) -> dict[str, torch.Tensor]:
    """torch.hub download (or cache hit) with the file-name hash checked; loaded with weights_only=True."""
    try:
        return torch.hub.load_state_dict_from_url(url, model_dir=model_dir, map_location="cpu", progress=True,
                                                  check_hash=True, weights_only=True)
    except RuntimeError as exc:
        raise UserError(f"downloaded VGG weights from {url} failed their hash check ({exc}); delete the cached file "
                        "and retry") from exc
    except OSError as exc:
        raise UserError(f"cannot download VGG weights from {url} ({exc}); pass --loss-weights PATH or set "
                        "TOOLKIT_DATA to a folder with weights/") from exc


def random_encoder(net: str, taps: Iterable[str], seed: int = 0) -> VGGEncoder:
    warnings.warn("using a random-weight VGG loss net (--loss-net random): stylisation quality drops", stacklevel=2)
    enc = VGGEncoder(net if net in CFGS else "vgg19", taps)
    gen = torch.Generator().manual_seed(seed)
    for n in enc.conv_names():
        conv = enc.layers[n]
        fan_in = conv.weight[0].numel()
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
            conv.bias.zero_()
    return enc


def load_vgg(taps: Iterable[str], net: str = "vgg19", weights: str | Path | None = None, seed: int = 0,
             hub_dir: str | None = None) -> VGGEncoder:
    """The loss encoder from the first available source (see module docstring)."""
    taps = list(taps)
    if net == "random":
        if weights:
            raise UserError(f"--loss-weights {weights} and --loss-net random contradict each other (random weights "
                            "load no file); drop one of them")
        return random_encoder("vgg19", taps, seed)
    if net not in CFGS:
        raise unknown("loss net", net, list(CFGS) + ["random"])
    if weights:
        return encoder_from_state_dict(_read_state_dict(Path(weights)), taps, str(weights))
    names = layer_names("vgg19")
    for deepest, parts in SHARED_VGG19.items():
        shared = shared_data(*parts)
        if net == "vgg19" and shared is not None and set(taps) <= set(names[: names.index(deepest) + 1]):
            log.info("loss net: %s", shared)
            return encoder_from_state_dict(_read_state_dict(shared), taps, str(shared))
    return encoder_from_state_dict(download_state_dict(HUB_URLS[net], hub_dir), taps, HUB_URLS[net])
