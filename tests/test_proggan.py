"""ProGAN generator (GAN Dissection layout, latent composition): layouts, loading, numerics."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import REFERENCE, load_reference
from core.checkpoints import write_safetensors
from core.errors import UserError
from core.models import load_model
from core.models.proggan import (SIZES, ProGANGenerator, load_proggan, random_z,
                                 sizes_from_state_dict)

PG_REF = REFERENCE / "proggan"
TOL = 1e-4


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a.float() - b.float()).abs().max())


@pytest.fixture(scope="module")
def io() -> dict:
    return load_reference(PG_REF / "tiny-io.pt")


@pytest.fixture()
def tiny_file(tmp_path: Path) -> Path:
    """A copy of the reference tiny generator, saved as the published files are."""
    return Path(shutil.copy(PG_REF / "tiny.pth", tmp_path / "proggan_tiny-00000000.pth"))


@pytest.fixture(scope="module")
def G(io) -> ProGANGenerator:
    return load_proggan(PG_REF / "tiny.pth")


def tiny_state() -> dict[str, torch.Tensor]:
    return torch.load(PG_REF / "tiny.pth", map_location="cpu", weights_only=True)


@pytest.mark.parametrize("res", [256, 1024])
def test_state_dict_matches_published_manifest(res):
    manifest = json.loads((PG_REF / f"manifest-proggan-{res}.json").read_text())
    assert manifest["config"] == {"resolution": res, "sizes": SIZES[res]}
    with torch.device("meta"):
        model = ProGANGenerator(res)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == manifest["state_dict"]
    assert list(ours) == list(manifest["state_dict"])  # same order too (the authors' modules)
    assert sizes_from_state_dict(model.state_dict()) == manifest["config"]["sizes"]
    assert model.config == manifest["config"]


def test_loaded_model_is_inferred_strict_eval_and_frozen(G, io):
    assert isinstance(G, ProGANGenerator) and not G.training
    assert (G.resolution, G.size, G.sizes, G.z_dim) == (io["resolution"], 32, io["sizes"], 32)
    assert not any(p.requires_grad for p in G.parameters())
    assert {t.device.type for t in G.state_dict().values()} == {"cpu"}  # nothing left on meta
    assert {t.dtype for t in G.state_dict().values()} == {torch.float32}
    assert set(G.state_dict()) == set(tiny_state())


def test_image_and_every_block_match_the_authors(G, io):
    with torch.inference_mode():
        image = G(io["z"])
        features = G.features(io["z"])
    assert image.shape == (2, 3, 32, 32)
    assert max_err(image, io["image"]) <= TOL
    assert list(features) == list(io["features"])  # layer1 .. layer8, output_32x32
    for name, ref in io["features"].items():
        assert max_err(features[name], ref) <= TOL, name
    assert torch.equal(features["output_32x32"], image)


def test_forward_hooks_see_the_authors_features(G, io):
    seen = {}
    handle = G.layer5.register_forward_hook(lambda m, i, o: seen.setdefault("x", o.clone()))
    try:
        with torch.inference_mode():
            G(io["z"])
    finally:
        handle.remove()
    assert max_err(seen["x"], io["features"]["layer5"]) <= TOL


@pytest.mark.parametrize("config", [{}, {"resolution": 32}])
def test_load_model_reproduces_the_authors(tiny_file, io, config):
    G = load_model("proggan", tiny_file, config)
    assert isinstance(G, ProGANGenerator) and G.resolution == 32
    with torch.inference_mode():
        assert max_err(G(io["z"]), io["image"]) <= TOL


def test_contradicting_resolution_is_an_error(tiny_file):
    with pytest.raises(ValueError, match="32x32 ProGAN generator.*resolution 256"):
        load_proggan(tiny_file, resolution=256)
    with pytest.raises(UserError, match="resolution 256"):
        load_model("proggan", tiny_file, {"resolution": 256})
    with pytest.raises(UserError):  # an unknown config key
        load_model("proggan", tiny_file, {"size": 32})


@pytest.mark.parametrize("drop", ["layer4.wscale.b", "output_32x32.conv.weight", "layer5.conv.weight",
                                  "layer1.conv.weight"])
def test_missing_key_is_a_user_error(tmp_path, drop):
    state = tiny_state()
    del state[drop]
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(UserError):
        load_model("proggan", path, {})


def test_not_a_state_dict_is_a_user_error(tmp_path):
    path = tmp_path / "odd.pth"
    torch.save({"g_ema": {"x": 1}}, path)
    with pytest.raises(UserError, match="not a ProGAN state dict"):
        load_model("proggan", path, {})


def test_wrapped_old_names_and_safetensors_copies_load_alike(tmp_path, io):
    """The authors' loader also takes {'state_dict': ...} and the older `features.{i}` names;
    our safetensors copy of a plain state dict is stored as {'state_dict': ...}."""
    state = tiny_state()
    old = {}
    for k, v in state.items():
        block, rest = k.split(".", 1)
        old[f"features.{int(block[5:]) - 1}.{rest}" if block.startswith("layer") else f"output.{rest}"] = v
    torch.save({"state_dict": state}, tmp_path / "wrapped.pth")
    torch.save(old, tmp_path / "old.pth")
    write_safetensors({"state_dict": state}, tmp_path / "copy.safetensors", keep=("state_dict",))
    for name in ("wrapped.pth", "old.pth", "copy.safetensors"):
        G = load_proggan(tmp_path / name, resolution=32)
        with torch.inference_mode():
            assert max_err(G(io["z"]), io["image"]) <= TOL, name


def test_z_shapes_give_the_same_image(G, io):
    z = io["z"]
    with torch.inference_mode():
        assert torch.equal(G(z), G(z[:, :, None, None]))
    with pytest.raises(ValueError, match=r"\[B, 32\]"):
        G(torch.zeros(1, 16))
    with pytest.raises(ValueError):
        G(torch.zeros(1, 32, 2, 2))


def test_pixel_norm_first_makes_z_scale_free(G, io):
    with torch.inference_mode():
        a = G(io["z"])
        assert max_err(G(2 * io["z"]), a) <= 1e-5
        assert max_err(G(10 * io["z"]), a) <= 1e-5  # (tiny z differ: the 1e-8 in the norm)


def test_output_is_hardtanh_clamped(G, io):
    with torch.inference_mode():
        x = G(100 * torch.randn(8, 32, generator=torch.Generator().manual_seed(0)))
    assert x.min() >= -1 and x.max() <= 1
    assert (x.abs() == 1).any() and (x.abs() < 1).any()  # both clamped and free pixels


def test_fold_cache_refreshes_after_load_state_dict(io):
    G = load_proggan(PG_REF / "tiny.pth")
    with torch.inference_mode():
        before = G(io["z"])
    changed = {k: (v * 0.5 if k.endswith("conv.weight") else v + 0.3) for k, v in tiny_state().items()}
    G.load_state_dict(changed)
    fresh = ProGANGenerator(32, io["sizes"])
    fresh.load_state_dict(changed)
    with torch.inference_mode():
        after = G(io["z"])
        assert max_err(after, fresh.eval()(io["z"])) <= 1e-6
    assert max_err(after, before) > 1e-2
    assert set(G.state_dict()) == set(changed)  # the caches are not stored


def test_gradients_flow_to_z(G, io):
    """Collage fine-tuning back-propagates through the frozen generator."""
    z = io["z"].clone().requires_grad_()
    G(z).square().sum().backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    # PixelNorm first: the image does not change along z, so neither does the loss
    z, g = z.detach(), z.grad
    assert float((g * z).sum().abs()) <= 1e-3 * float(g.norm() * z.norm())


def test_seed_sampler_reproduces_the_authors_z(G, io):
    """zdataset.standard_z_sample: RandomState(seed).standard_normal(n * dim), rows of dim."""
    seed = io["seed"]
    expected = np.random.RandomState(seed).standard_normal(3 * 32).reshape(3, 32)
    z = random_z(3, seed, z_dim=32)
    assert z.shape == (3, 32, 1, 1) and z.dtype == torch.float32
    assert torch.equal(z[:, :, 0, 0], torch.from_numpy(expected).float())
    assert torch.equal(z, io["z_seed"])  # what their z_sample_for_model returned
    assert torch.equal(G.random_z(3, seed), z)
    assert torch.equal(random_z(1, seed, 32), z[:1])  # sample i does not depend on the batch
    assert random_z(2, 7).shape == (2, 512, 1, 1)
    with torch.inference_mode():
        assert max_err(G(z), io["image_seed"]) <= TOL


def test_constructor_rejects_inconsistent_configurations():
    with pytest.raises(ValueError, match="no default"):
        ProGANGenerator(512)
    with pytest.raises(ValueError, match="32 px"):
        ProGANGenerator(64, [32, 16, 16, 8, 8])
