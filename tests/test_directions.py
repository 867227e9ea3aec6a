"""Edit directions (core/directions.py) on a tiny random StyleGAN2, and the SAM authors' csc
files. GANSpace and SeFa are checked against hand-computed PCA / eigendecompositions."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import TINY_SG2_CONFIG
from core import directions as D
from core.errors import UserError
from core.models.stylegan2 import StyleGAN2Generator

DATA = Path(__file__).parent / "data"
CSC_OLD = DATA / "csc_old.npy"  # adobe-research/sam_inversion@93d3bd6 edits/faces/csc_old.npy
CSC_OLD_SHA256 = "cdda94b04126e7bd9891206fe2046bf7eabf92a06b8b90919da3575048c2fff2"
N = 3000


@pytest.fixture(scope="module")
def G() -> StyleGAN2Generator:
    torch.manual_seed(0)
    return StyleGAN2Generator(**TINY_SG2_CONFIG).eval().requires_grad_(False)


def _align(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Flip rows of b to a's sign (eigenvectors are defined up to sign)."""
    return b * np.sign((a * b).sum(1, keepdims=True))


def test_sample_w_is_seeded_mapping(G):
    w = D.sample_w(G, 50, seed=3, chunk=16)
    z = torch.randn(50, G.style_dim, generator=torch.Generator().manual_seed(3))
    assert w.dtype == torch.float32 and w.device.type == "cpu"
    torch.testing.assert_close(w, G.mapping(z).float())


def test_ganspace_matches_hand_pca(G):
    basis = D.ganspace_basis(G, n=N, seed=1)
    V, s = basis.vectors.double().numpy(), basis.values.double().numpy()
    dim = G.style_dim
    assert V.shape == (dim, dim) and s.shape == (dim,)
    np.testing.assert_allclose(V @ V.T, np.eye(dim), atol=1e-5)  # orthonormal
    assert np.all(np.diff(s) <= 0)  # sorted by variance

    x = D.sample_w(G, N, seed=1).double().numpy()
    xc = x - x.mean(0)
    _, S, Vt = np.linalg.svd(xc, full_matrices=False)
    np.testing.assert_allclose(s, S / np.sqrt(N - 1), rtol=1e-4, atol=1e-7)
    k = 8  # the leading components are well separated; compare them one by one
    assert np.all(-np.diff(S[:k + 1]) / S[0] > 1e-3)
    np.testing.assert_allclose(_align(V[:k], Vt[:k]), V[:k], atol=1e-4)
    # the projection std along each component is its sigma
    np.testing.assert_allclose((xc @ V[:k].T).std(0, ddof=1), s[:k], rtol=1e-4)


def test_ganspace_directions_on_layers(G):
    dirs = D.ganspace_directions(G, count=4, layers="2-5", n=N, seed=1)
    basis = D.ganspace_basis(G, n=N, seed=1)
    assert [d.index for d in dirs] == [0, 1, 2, 3]
    for d in dirs:
        assert d.source == "ganspace" and d.layers == (2, 3, 4, 5)
        assert d.vector.shape == (1, G.n_latent, G.style_dim) and d.vector.dtype == torch.float32
        expect = basis.vectors[d.index] * basis.values[d.index]
        for k in range(G.n_latent):
            torch.testing.assert_close(d.vector[0, k], expect if k in d.layers else torch.zeros_like(expect))
        assert d.value == pytest.approx(float(basis.values[d.index]))
    w = torch.randn(2, G.n_latent, G.style_dim)
    torch.testing.assert_close(dirs[0].apply(w, 2.0) - w, 2.0 * dirs[0].vector.expand(2, -1, -1))


def _hand_sefa_matrix(G, layers) -> np.ndarray:
    rows = []
    for k in layers:
        mod = G.convs[k - 1].conv.modulation if 0 < k < G.num_layers else (
            G.conv1.conv.modulation if k == 0 else G.to_rgbs[-1].conv.modulation)
        w = mod.weight.double().numpy() * mod.lr_mul / np.sqrt(G.style_dim)  # equalized lr
        rows.append(w)
    a = np.concatenate(rows)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


@pytest.mark.parametrize("layers", [None, "3-6", [0, 7]])
def test_sefa_eigenvectors_of_hand_built_matrix(G, layers):
    ls = D.parse_layers(layers, G.n_latent)
    a = _hand_sefa_matrix(G, ls)
    np.testing.assert_allclose(D.sefa_matrix(G, ls).numpy(), a, atol=1e-12)
    basis = D.sefa_basis(G, layers)
    V, lam = basis.vectors.double().numpy(), basis.values.double().numpy()
    dim = G.style_dim
    np.testing.assert_allclose(V @ V.T, np.eye(dim), atol=1e-5)
    assert np.all(np.diff(lam) <= 0)
    ata = a.T @ a
    np.testing.assert_allclose(V @ ata, lam[:, None] * V, atol=1e-4 * lam[0])  # eigenpairs
    np.testing.assert_allclose(lam, np.sort(np.linalg.eigvalsh(ata))[::-1], rtol=1e-5, atol=1e-6)


def test_sefa_top_direction_moves_styles_most(G):
    dirs = D.sefa_directions(G, count=G.style_dim)
    assert all(d.source == "sefa" and d.layers == tuple(range(G.n_latent)) for d in dirs)
    w = G.mapping(torch.randn(4, G.style_dim, generator=torch.Generator().manual_seed(0)))
    mods = D.style_modulations(G)

    def style_change(d: D.Direction) -> float:
        wp = G.w_plus(w)
        moved = d.apply(wp, 1.0)
        return sum(float((m(moved[:, k]) - m(wp[:, k])).norm()) for k, m in enumerate(mods))

    for d in (dirs[0], dirs[-1]):  # unit w vectors on the layers they came from
        torch.testing.assert_close(d.vector[0].norm(dim=-1), torch.ones(G.n_latent))
    assert style_change(dirs[0]) > 2 * style_change(dirs[-1])


def test_sefa_uses_conv_modulations_and_the_final_torgb(G):
    mods = D.style_modulations(G)
    assert len(mods) == G.n_latent == G.num_layers + 1
    assert mods[0] is G.conv1.conv.modulation and mods[1] is G.convs[0].conv.modulation
    assert mods[-1] is G.to_rgbs[-1].conv.modulation


def test_parse_layers():
    assert D.parse_layers(None, 8) == tuple(range(8)) == D.parse_layers("all", 8)
    assert D.parse_layers("0-1, 4", 8) == (0, 1, 4)
    assert D.parse_layers(range(2, 5), 8) == (2, 3, 4)
    assert D.parse_layers(3, 8) == (3,)
    assert D.layers_label((6, 7, 8, 10)) == "6-8,10"
    for bad in ("0-8", "x", "5-2", [], [-1]):
        with pytest.raises(UserError):
            D.parse_layers(bad, 8)


def test_file_direction_loads_the_authors_csc_file():
    assert hashlib.sha256(CSC_OLD.read_bytes()).hexdigest() == CSC_OLD_SHA256
    d = D.file_direction(CSC_OLD, 18)
    assert d.name == "old" and d.source == "file" and d.layers == tuple(range(6, 14))
    assert d.vector.shape == (1, 18, 512) and d.vector.dtype == torch.float32
    np.testing.assert_array_equal(d.vector.numpy(), np.load(CSC_OLD))
    assert D.file_direction(CSC_OLD, 18, name="Older").name == "Older"


def test_file_direction_rejects_bad_files(tmp_path):
    with pytest.raises(UserError, match="18 w\\+ layers"):
        D.file_direction(CSC_OLD, 14)
    junk = tmp_path / "csc_junk.npy"
    junk.write_bytes(b"not a numpy file at all")
    with pytest.raises(UserError, match="not a valid .npy"):
        D.file_direction(junk, 18)
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UserError):
        D.file_direction(obj, 18)
    with pytest.raises(UserError, match="not found"):
        D.file_direction(tmp_path / "missing.npy", 18)
    nan = tmp_path / "nan.npy"
    np.save(nan, np.full((1, 18, 512), np.nan, np.float32))
    with pytest.raises(UserError, match="NaN"):
        D.file_direction(nan, 18)


def test_file_direction_single_w_goes_on_every_layer(tmp_path):
    p = tmp_path / "boundary.npy"
    np.save(p, np.ones((1, 512), np.float32))
    d = D.file_direction(p, 14)
    assert d.layers == tuple(range(14)) and d.vector.shape == (1, 14, 512)


def test_cache_computes_once(G, monkeypatch):
    calls = {"ganspace": 0, "sefa": 0}
    real_g, real_s = D.ganspace_basis, D.sefa_basis

    def count_g(*a, **k):
        calls["ganspace"] += 1
        return real_g(*a, **k)

    def count_s(*a, **k):
        calls["sefa"] += 1
        return real_s(*a, **k)

    monkeypatch.setattr(D, "ganspace_basis", count_g)
    monkeypatch.setattr(D, "sefa_basis", count_s)
    cache = D.DirectionCache()
    first = cache.ganspace("tiny", G, count=3, layers="0-3", n=500)
    again = cache.ganspace("tiny", G, count=5, layers="4-7", n=500)  # same PCA, other layers
    torch.testing.assert_close(first[0].vector[0, 0], again[0].vector[0, 4])
    cache.sefa("tiny", G, count=3, layers="2-5")
    cache.sefa("tiny", G, count=3, layers=[5, 4, 3, 2])  # the same layers
    cache.sefa("tiny", G, count=3)  # other layers: another factorisation
    assert calls == {"ganspace": 1, "sefa": 2} and cache.computed == 3
    cache.ganspace("other-model", G, n=500)
    assert calls["ganspace"] == 2
    cache.clear("tiny")
    assert [k[0] for k in cache.keys()] == ["other-model"]
    assert all(b.vectors.device.type == "cpu" for b in cache._items.values())


def test_strength_ranges_per_source(G):
    """The authors' files sweep 0..3 (their script's multipliers); GANSpace's viewer ±10 σ,
    SeFa's demo ±15 (unit directions)."""
    assert D.strength_range("file") == (0.0, 3.0)
    assert D.strength_range("ganspace") == (-10.0, 10.0) and D.strength_range("sefa") == (-15.0, 15.0)
    vec = torch.zeros(1, G.n_latent, G.style_dim)
    assert D.Direction("x", vec, "file", ()).strength_range == (0.0, 3.0)
    assert D.Direction("x", vec, "sefa", (), max_strength=2.0).strength_range == (-2.0, 2.0)
