"""Latent-composition masked regressor: published layouts, loading, the authors' numerics."""
from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from helpers import REFERENCE, load_reference
from core.checkpoints import write_safetensors
from core.errors import UserError
from core.models import load_model
from core.models.regressor import MaskedRegressor, describe_state_dict, load_regressor

REG_REF = REFERENCE / "regressor"
TOL = 1e-4
MANIFESTS = ["church-256", "car-512", "ffhq-1024"]


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max())


def filled_state_dict(model: torch.nn.Module, phase: float) -> dict[str, torch.Tensor]:
    """The reference README's deterministic fill: the i-th key in sorted order gets
    0.05*sin(0.618*j + phase + i) at flat index j (float64, then cast); running_var keys
    1 + 0.5*sin(...); integer buffers 0."""
    out = {}
    for i, (key, t) in enumerate(sorted(model.state_dict().items())):
        if not t.is_floating_point():
            out[key] = torch.zeros_like(t)
            continue
        s = torch.sin(0.618 * torch.arange(t.numel(), dtype=torch.float64) + phase + i)
        v = 1 + 0.5 * s if key.endswith("running_var") else 0.05 * s
        out[key] = v.to(t.dtype).reshape(t.shape)
    return out


def save_published(path: Path, model: MaskedRegressor, state: dict) -> Path:
    """The authors' file layout (training_utils.make_checkpoint)."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.5, 0.999))
    torch.save({"state_dict": state, "optimizer": opt.state_dict(), "epoch": 6800,
                "val_loss": 0.123}, path)
    return path


@functools.lru_cache(maxsize=None)
def random_regressor(family: str) -> MaskedRegressor:
    """An input-sensitive regressor with outputs of order 1: He-initialised convolutions,
    BatchNorm statistics and scales near a trained network's (residual branches at half
    scale so that 16 blocks do not blow the activations up)."""
    depth, n_latent = {"stylegan2": (34, 2), "proggan": (18, 1)}[family]
    model = MaskedRegressor(depth, n_latent, 512, 4, family)
    g = torch.Generator().manual_seed(depth)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if t.dim() > 1:
                t.copy_(torch.randn(t.shape, generator=g) * math.sqrt(2 / t[0].numel()))
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                base = {"bn1.weight": 1.0, "bn2.weight": 0.5, "downsample.1.weight": 0.5}
                scale = next((v for k, v in base.items() if name.endswith(k)), 0.0)
                t.copy_(scale + 0.1 * torch.randn(t.shape, generator=g))
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def io() -> dict:
    return load_reference(REG_REF / "tiny-io.pt")


@pytest.fixture(scope="module")
def tiny_file(io, tmp_path_factory) -> Path:
    model = MaskedRegressor(**io["config"])
    path = tmp_path_factory.mktemp("regressor") / "sgan_encoders_tiny_RGBM_model_final.pth"
    return save_published(path, model, filled_state_dict(model, io["fill_phase"]))


@pytest.fixture(scope="module")
def E(io, tiny_file) -> MaskedRegressor:
    return load_model("regressor", tiny_file, dict(io["config"]))


@pytest.mark.parametrize("name", MANIFESTS)
def test_state_dict_matches_published_manifest(name):
    manifest = json.loads((REG_REF / f"manifest-regressor-stylegan2-{name}.json").read_text())
    with torch.device("meta"):
        model = MaskedRegressor(**manifest["config"])
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == manifest["state_dict"]
    assert list(ours) == list(manifest["state_dict"])  # same order too (the authors' modules)


def test_loaded_model_is_strict_eval_and_frozen(E, io):
    assert isinstance(E, MaskedRegressor) and not E.training
    assert all(not m.training for m in E.modules())
    assert not any(p.requires_grad for p in E.parameters())
    assert {t.device.type for t in E.state_dict().values()} == {"cpu"}  # nothing left on meta
    assert {t.dtype for t in E.state_dict().values()} == {torch.float32, torch.int64}
    assert E.config == {**io["config"], "family": "stylegan2"}


def test_masked_input_matches_the_authors(E, io):
    with torch.inference_mode():
        w = E(io["image"], io["mask"])
    assert w.shape == (2, 6, 512)
    assert max_err(w, io["w_plus_masked"]) <= TOL


def test_any_size_is_area_resized_to_256_as_the_authors_do(E, io):
    img = io["image_300"]
    with torch.inference_mode():
        x = E.network_input(img, torch.ones_like(img[:, :1]))
        w_default = E(img)  # no mask = every pixel known
        w_full = E(img, torch.ones_like(img[:, :1]))
    assert x.shape == (1, 4, 256, 256)
    expected = F.interpolate(torch.cat([img, torch.ones_like(img[:, :1])], 1), size=256, mode="area")
    assert torch.equal(x, expected)
    assert max_err(w_full, io["w_plus_full_300"]) <= TOL
    assert torch.equal(w_default, w_full)


@pytest.mark.parametrize("family,size", [("stylegan2", 64), ("stylegan2", 300), ("proggan", 64)])
def test_unknown_pixels_do_not_influence_the_output(family, size):
    E = random_regressor(family)
    g = torch.Generator().manual_seed(size)
    image = torch.rand(2, 3, size, size, generator=g) * 2 - 1
    mask = (F.interpolate(torch.rand(2, 1, 6, 6, generator=g), size=size, mode="bilinear") < 0.6).float()
    other = torch.where(mask.bool(), image, torch.rand(image.shape, generator=g) * 2 - 1)
    assert not torch.equal(other, image)
    known = torch.where(mask.bool(), -image, image)
    with torch.inference_mode():
        a, b, c = E(image, mask), E(other, mask), E(known, mask)
    assert max_err(a, b) <= 1e-6
    assert max_err(a, c) > 1e-3  # known pixels do matter


def test_mask_of_one_image_broadcasts_over_the_batch(E, io):
    with torch.inference_mode():
        a = E(io["image"], io["mask"][:1])
        b = E(io["image"], io["mask"][:1].expand(2, -1, -1, -1))
    assert max_err(a, b) <= 1e-6


def test_bad_input_shapes_are_rejected(E, io):
    with pytest.raises(ValueError, match="image"):
        E(io["image"][:, :1], io["mask"])
    with pytest.raises(ValueError, match="mask"):
        E(io["image"], io["mask"][..., :32, :32])


def _torchvision_oracle(model: MaskedRegressor, x: torch.Tensor) -> torch.Tensor:
    """The authors' CustomResNet path (torchvision's BasicBlocks in a conv1..layer4 sequence,
    then conv5 at every position, then the mean), with the same weights."""
    import torchvision

    tv = getattr(torchvision.models, f"resnet{model.resnet_depth}")(weights=None)
    tv.conv1 = torch.nn.Conv2d(model.channels_in, 64, 7, 2, 3, bias=False)
    if model.family == "stylegan2":
        tv.fc = torch.nn.Identity()
        state = {k: v for k, v in model.state_dict().items() if not k.startswith("layer5")}
    else:
        tv.fc = torch.nn.Linear(512, model.w_dim)
        state = model.state_dict()
    tv.load_state_dict(state, strict=True)
    tv.eval()
    if model.family == "stylegan2":
        x = F.interpolate(x, size=(256, 256), mode="area")
    for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
        x = getattr(tv, name)(x)
    if model.family == "stylegan2":
        x = model.layer5.conv5(x)
        x = torch.mean(x.view(x.size(0), x.size(1), -1), dim=2)
        return x.view(x.shape[0], -1, model.w_dim)
    return tv.fc(torch.mean(x.view(x.size(0), x.size(1), -1), dim=2))[:, :, None, None]


@pytest.mark.parametrize("family,size", [("stylegan2", 96), ("proggan", 64)])
def test_forward_equals_the_published_resnet_path_with_random_weights(family, size):
    """The reference's filled weights give an input-independent output (w_plus_masked equals
    w_plus_full_300 to 2e-7), so random weights check the whole path, mask convention
    included, against torchvision's ResNet run as the authors' CustomResNet runs it."""
    model = random_regressor(family)
    n_latent = model.n_latent
    g = torch.Generator().manual_seed(1)
    image = torch.rand(2, 3, size, size, generator=g) * 2 - 1
    mask = (torch.rand(2, 1, size, size, generator=g) < 0.5).float()
    offset = 0.5 if family == "proggan" else 0.0  # ProGAN encoders were trained on m - 0.5
    with torch.inference_mode():
        ours = model(image, mask)
        ref = _torchvision_oracle(model, torch.cat([image * mask, mask - offset], 1))
    assert ours.shape == ((2, n_latent, 512) if family == "stylegan2" else (2, 512, 1, 1))
    assert max_err(ours, ref) <= TOL
    assert float(ref.std()) > 0.1  # not a constant output


def test_whole_picture_input_is_the_authors_nets_encode(E, io):
    """hide_unknown=False feeds [image, mask] as the authors' `nets.encode` does (it zeroes
    nothing; their Enc+LBFGS consistency term passes a whole G(w) with a partial mask); the
    rest of the path is the one checked against torchvision above."""
    image, mask = io["image"], io["mask"]
    with torch.inference_mode():
        whole = E.network_input(image, mask, hide_unknown=False)
        hidden = E.network_input(image, mask)
    expected = F.interpolate(torch.cat([image, mask], 1), size=(256, 256), mode="area")
    assert torch.equal(whole, expected) and not torch.equal(whole, hidden)
    assert torch.equal(hidden, F.interpolate(torch.cat([image * mask, mask], 1), size=(256, 256),
                                             mode="area"))


def test_safetensors_copy_loads_the_same_model(E, io, tiny_file, tmp_path):
    ckpt = torch.load(tiny_file, map_location="cpu", weights_only=True)
    st = write_safetensors(ckpt, tmp_path / "regressor.safetensors", keep=("state_dict",))
    E2 = load_regressor(st, **io["config"])
    with torch.inference_mode():
        assert torch.equal(E(io["image"], io["mask"]), E2(io["image"], io["mask"]))


def test_describe_state_dict_reads_the_configuration(E):
    assert describe_state_dict(E.state_dict()) == {"channels_in": 4, "resnet_depth": 34,
                                                   "n_latent": 6, "family": "stylegan2"}


# --- errors a user can cause -------------------------------------------------------------

def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_regressor(tmp_path / "nope.pth")


def test_corrupt_file_is_a_user_error(tiny_file, tmp_path):
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(tiny_file.read_bytes()[:5000])
    with pytest.raises(UserError, match="corrupt"):
        load_model("regressor", bad, {"n_latent": 6})


def test_checkpoint_without_state_dict_is_a_user_error(E, tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"g_ema": {"x": torch.zeros(1)}}, path)
    with pytest.raises(UserError, match="state_dict"):
        load_regressor(path, n_latent=6)
    torch.save(E.state_dict(), path)  # a bare state dict: say how to wrap it
    with pytest.raises(UserError, match="bare state dict"):
        load_regressor(path, n_latent=6)


@pytest.mark.parametrize("config,hint", [({"n_latent": 14}, "n_latent=6"),
                                         ({"n_latent": 6, "resnet_depth": 18}, "resnet_depth=34"),
                                         ({"n_latent": 6, "channels_in": 3}, "channels_in=4")])
def test_configuration_that_does_not_fit_the_weights_is_a_user_error(tiny_file, config, hint):
    with pytest.raises(UserError, match=hint):
        load_model("regressor", tiny_file, config)


@pytest.mark.parametrize("config", [{"resnet_depth": 50}, {"family": "vae"}, {"n_latents": 6}])
def test_unsupported_configuration_is_a_user_error(tiny_file, config):
    with pytest.raises(UserError):
        load_model("regressor", tiny_file, config)
