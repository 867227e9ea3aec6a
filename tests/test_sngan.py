"""The Neural Collage authors' SNGAN models against their Chainer code (tests/data/reference/
sngan/make_reference.py): generator (categorical and spatial conditional BN), sCBN + feature
blending in one pass, encoder, auxiliary network and the discriminator's feature path, each
loaded from the tiny Chainer .npz through the registry's loaders."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import REFERENCE
from core.errors import UserError
from core.models import load_model
from core.models.generator import Generator

REF = REFERENCE / "sngan"
TINY = {"ch": 1, "dim_z": 8, "n_classes": 3}
TOL = 1e-5


def T(a) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, np.float32))


def close(a: torch.Tensor, b) -> None:
    b = T(b)
    assert a.shape == b.shape
    err = (a - b).abs().max().item()
    assert err <= TOL, err


@pytest.fixture(scope="module")
def io() -> dict:
    with np.load(REF / "tiny-io.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def G():
    return load_model("sngan", REF / "tiny-gen.npz", {**TINY, "size": 64})


def class_maps(io) -> list[torch.Tensor]:
    """The 12 per-batch-norm maps, from the authors' [B, h, w, n] to [B, n, h, w]."""
    return [T(io[f"scbn_map_{i}"]).permute(0, 3, 1, 2) for i in range(12)]


def blends(io) -> list[torch.Tensor]:
    """Rebuild the blend weights exactly as make_reference.py did (float32 arithmetic)."""
    out = []
    for layer in range(7):
        ref = np.asarray(io[f"blend_{layer}"], np.float32)
        src = 1 - ref if layer == 0 else np.zeros_like(ref)
        out.append(T(np.stack([src, ref, np.float32(1) - src - ref], 1)))
    return out


def test_generator_matches_the_authors(G, io):
    assert isinstance(G, Generator) and G.size == 64
    with torch.no_grad():
        close(G(T(io["z"]), torch.from_numpy(io["y"]).long()), io["image"])
        close(G(T(io["z"][:1]), torch.tensor([int(io["y"][0])])), io["scbn_uniform_image"])
        # sCBN per pixel: one class mixture per pixel at each batch norm
        close(G(T(io["z"][:1]), class_maps(io)), io["scbn_image"])
        # sCBN and feature blending in one pass (their spatial_interpolation(zs, weights, blends))
        close(G.spatial_interpolation([T(io["z"][:1]), T(io["z_ref"])], class_maps(io), blends(io)),
              io["blend_scbn_image"])


def test_encoder_auxiliary_and_discriminator_match_the_authors(G, io):
    E = load_model("sngan-encoder", REF / "tiny-enc.npz", {**TINY, "input_size": 32})
    A = load_model("sngan-auxiliary", REF / "tiny-aux.npz",
                   {**TINY, "size": 64, "dim_a": 6, "dim_b": 5, "dim_zeta": 7})
    D = load_model("sngan-discriminator", REF / "tiny-dis.npz", {"ch": 1, "n_classes": 3})
    with torch.no_grad():
        close(E(T(io["enc_input"]), torch.from_numpy(io["enc_class"])), io["enc_z"])
        zeta = A.A(T(io["z"][:1]))
        close(zeta, io["aux_zeta"])
        close(A.B(zeta), io["aux_z_prime"])
        close(G(A.B(zeta), torch.tensor([int(io["y"][0])])), io["aux_image"])
        close(D.feature_vector(T(io["gt"])), io["dis_features"])


def test_protocol_sampler_and_per_batch_norm_choice(G):
    z = G.sample_latents([3, 4])
    assert torch.equal(z[1:], G.sample_latents([4])) and z.abs().max() <= 2.5
    with pytest.raises(ValueError, match="class-conditional"):
        G.render(z)
    a, b = torch.tensor([0]), torch.tensor([2])
    uniform_b = torch.zeros(1, 3, 5, 5)
    uniform_b[:, 2] = 1
    with torch.no_grad():
        # a uniform map at any size is the plain picture of that class
        assert torch.allclose(G(z[:1], uniform_b), G(z[:1], b), atol=1e-6)
        # only the chosen batch norms take the map; the others take global_classes
        only_first = G(z[:1], uniform_b, scbn_bns=[0], global_classes=a)
        assert not torch.allclose(only_first, G(z[:1], a), atol=1e-4)
        assert torch.allclose(G(z[:1], uniform_b, scbn_bns=[], global_classes=a), G(z[:1], a))
    assert [res for _, res in G.bn_points()] == [1, 2, 2, 4, 4, 8, 8, 16, 16, 32, 32, 64]
    assert [res for _, res, _ in G.feature_points()] == [1, 2, 4, 8, 16, 32, 64]


def test_loading_mistakes_are_user_errors(tmp_path):
    with np.load(REF / "tiny-gen.npz") as f:
        arrays = {k: f[k] for k in f.files}
    short = dict(arrays)
    del short["block3/c1/W"]
    np.savez(tmp_path / "short.npz", **short, extra=np.zeros(1))
    with pytest.raises(UserError, match=r"missing: block3\.c1\.W.*unexpected: extra"):
        load_model("sngan", tmp_path / "short.npz", {**TINY, "size": 64})
    with pytest.raises(UserError, match="wrong shape"):
        load_model("sngan", REF / "tiny-gen.npz", {**TINY, "ch": 2, "size": 64})
    with pytest.raises(UserError, match="not a multiple"):
        load_model("sngan", REF / "tiny-gen.npz", {**TINY, "size": 100})
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="Could not read bad.npz"):
        load_model("sngan", tmp_path / "bad.npz", {**TINY, "size": 64})
    # the counters N are not needed (fine-tuning only)
    np.savez(tmp_path / "no-n.npz", **{k: v for k, v in arrays.items() if not k.endswith("/N")})
    load_model("sngan", tmp_path / "no-n.npz", {**TINY, "size": 64})
