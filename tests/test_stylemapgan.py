"""StyleMapGAN: published layouts, loading, equivalence with the authors' outputs."""
from __future__ import annotations

import argparse
import json
import shutil

import pytest
import torch

from helpers import REFERENCE, load_reference
from core.errors import UserError
from core.models.stylemapgan import (StyleMapEncoder, StyleMapGenerator, build_stylemapgan,
                                     load_stylemapgan, truncate)

SMG_REF = REFERENCE / "stylemapgan"
TOL = 1e-4


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max())


@pytest.fixture(scope="module")
def io() -> dict:
    return load_reference(SMG_REF / "tiny-io.pt")


@pytest.fixture(scope="module")
def models() -> tuple[StyleMapGenerator, StyleMapEncoder]:
    return load_stylemapgan(SMG_REF / "tiny.pt")


@pytest.fixture(scope="module")
def io8() -> dict:
    """The authors' generate.py / semantic_manipulation.py on a tiny 64 x 8 x 8 model
    (make_editing_reference.py)."""
    return load_reference(SMG_REF / "tiny-8x8-io.pt")


@pytest.fixture(scope="module")
def models8() -> tuple[StyleMapGenerator, StyleMapEncoder]:
    return load_stylemapgan(SMG_REF / "tiny-8x8.pt")


@pytest.fixture(scope="module")
def encoded(models, io) -> torch.Tensor:
    with torch.inference_mode():
        return models[1](io["encoder_input"])


def signed_to_binary(mask: torch.Tensor) -> torch.Tensor:
    """The authors' +1 (reference) / -1 (keep) mask [1, H, W] -> ours [1, 1, H, W] in {0, 1}."""
    return (mask > -1).float()[:, None]


def demo_shifts(io: dict) -> list[tuple[int, int]]:
    """The demo's (xs, ys) lists -> one (dx, dy) per reference."""
    xs, ys = io["demo_shifts_xy"]
    return list(zip(xs, ys))


@pytest.mark.parametrize("name", ["256-8x8", "1024-16x16-small"])
def test_state_dicts_match_published_manifest(name):
    manifest = json.loads((SMG_REF / f"manifest-{name}.json").read_text())
    with torch.device("meta"):
        G, E = build_stylemapgan(manifest["config"])
    assert {k: list(v.shape) for k, v in G.state_dict().items()} == manifest["g_ema"]
    assert {k: list(v.shape) for k, v in E.state_dict().items()} == manifest["e_ema"]


def test_loader_reads_config_from_train_args(models, io):
    G, E = models
    assert (G.size, G.latent_channel_size, G.latent_spatial_size) == (32, 8, 4)
    assert io["config"]["size"] == 32
    for m in (G, E):
        assert not m.training
        assert not any(p.requires_grad for p in m.parameters())


def test_config_never_comes_from_the_file_name(tmp_path):
    dst = tmp_path / "celeba_hq_256_8x8.pt"
    shutil.copy(SMG_REF / "tiny.pt", dst)
    G, E = load_stylemapgan(dst)
    assert G.size == 32 and E.size == 32


def test_random_generation_matches_reference(models, io):
    G, _ = models
    with torch.inference_mode():
        stylemap = G.mapping(io["z"])
        assert max_err(stylemap, io["stylecode"]) <= TOL
        assert max_err(G.synthesis(stylemap), io["image"]) <= TOL
        assert max_err(G(io["z"]), io["image"]) <= TOL


def test_batch_of_one_matches_batch(models, io):
    G, _ = models
    with torch.inference_mode():
        for i in range(io["z"].shape[0]):
            assert max_err(G(io["z"][i:i + 1]), io["image"][i:i + 1]) <= TOL


def test_truncation_matches_reference(models, io):
    G, _ = models
    with torch.inference_mode():
        img = G(io["z"], truncation=io["truncation"], mean=io["mean_stylecode"])
        assert max_err(img, io["trunc_image"]) <= TOL
        s = G.mapping(io["z"])
        assert torch.allclose(truncate(s, io["mean_stylecode"], 1.0), s, atol=1e-6)


def test_mean_stylemap_is_deterministic_and_cached(models):
    G, _ = models
    a = G.mean_stylemap(256, seed=1)
    assert a.shape == (1, 8, 4, 4)
    assert torch.equal(a, G.mean_stylemap(256, seed=1))
    assert not torch.equal(a, G.mean_stylemap(256, seed=2))


def test_encoder_and_reconstruction_match_reference(models, io, encoded):
    G, _ = models
    assert max_err(encoded, io["encoded"]) <= TOL
    with torch.inference_mode():
        assert max_err(G.synthesis(encoded), io["recon_image"]) <= TOL


@pytest.mark.parametrize("space, key", [("w_plus", "edit_w_plus_image"), ("w", "edit_w_image")])
def test_local_editing_matches_reference(models, io, encoded, space, key):
    G, _ = models
    mask = signed_to_binary(io["edit_mask"])
    with torch.inference_mode():
        out = G.blend(encoded[:1], encoded[1:2], mask, space=space)
    assert max_err(out, io[key]) <= TOL


@pytest.mark.parametrize("space", ["w_plus", "w"])
def test_blend_with_empty_or_full_mask_is_original_or_reference(models, encoded, space):
    G, _ = models
    zeros = torch.zeros(1, 1, 32, 32)
    with torch.inference_mode():
        a, b = encoded[:1], encoded[1:2]
        assert max_err(G.blend(a, b, zeros, space), G.synthesis(a)) <= 1e-5
        assert max_err(G.blend(a, b, zeros + 1, space), G.synthesis(b)) <= 1e-5


def test_blend_marks_a_cell_if_any_pixel_under_it_is_masked(models, encoded):
    """One masked pixel takes the reference's whole 8x8-pixel stylemap cell ("w" space)."""
    G, _ = models
    a, b = encoded[:1], encoded[1:2]
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 9, 9] = 1
    expected = a.clone()
    expected[..., 1, 1] = b[..., 1, 1]
    with torch.inference_mode():
        assert max_err(G.blend(a, b, mask, "w"), G.synthesis(expected)) <= 1e-5


@pytest.mark.parametrize("kind", ["coarse", "fine"])
def test_style_mixing_matches_reference(models, io, encoded, kind):
    G, _ = models
    with torch.inference_mode():
        out = G.style_mix(encoded[:1], encoded[1:2], kind)
    assert max_err(out, io[f"mix_{kind}_image"]) <= TOL


def test_demo_transplant_matches_reference(models, io, encoded):
    G, _ = models
    with torch.inference_mode():
        out = G.transplant(encoded[:1], encoded[1:], io["demo_masks"], demo_shifts(io), io["demo_steps"])
    assert out.shape[0] == io["demo_steps"]
    assert max_err(out, io["demo_image"]) <= TOL
    assert max_err(out[0], io["recon_image"][0]) <= TOL  # step 0 is the original


def test_w_interpolation_matches_the_authors(models8, io8):
    """generate.py's w_interpolation (w = w1 * lambda + w2 * (1 - lambda)) at listed lambdas,
    rendered two per pass; the 8 x 8 model's encoder and decoder match theirs on the way."""
    G, E = models8
    with torch.inference_mode():
        codes = E(io8["images"])
        assert max_err(codes, io8["encoded"]) <= TOL
        assert max_err(G.synthesis(codes), io8["recon_image"]) <= TOL
        out = G.interpolate(codes[:1], codes[1:], io8["interp_lambdas"], chunk=2)
    assert max_err(out, io8["interp_image"]) <= TOL
    with pytest.raises(ValueError, match="one stylemap"):
        G.interpolate(codes, codes[1:], [0.5])


@pytest.mark.parametrize("key", ["transplant", "transplant_overlap"])
def test_w_space_transplant_matches_the_authors(models8, io8, key):
    """generate.py's transplantation: their AFHQ example boxes, and two overlapping boxes
    (the later one wins, both copy from the unchanged reference)."""
    G, E = models8
    with torch.inference_mode():
        codes = E(io8["images"])
        out = G.transplant_boxes(codes[:1], codes[1:], io8[f"{key}_boxes"])
    assert max_err(out, io8[f"{key}_image"]) <= TOL
    for bad in ([((7, 0), (0, 0), 2, 2)], [((0, 0), (0, -1), 1, 1)], [((0, 0), (0, 0), 0, 3)]):
        with pytest.raises(ValueError, match="box 1"):
            G.transplant_boxes(codes[:1], codes[1:], bad)


def test_semantic_manipulation_matches_the_authors(models8, io8):
    """semantic_manipulation.py: our SVM on the encoded labelled pictures finds sklearn's
    SVC(kernel="linear") boundary; moving along -boundary at their distances, globally and
    inside their Heavy_Makeup rectangle of cells, gives their pictures."""
    from core.svm import fit_linear_svm

    G, E = models8
    labels = io8["svm_labels"].bool()
    with torch.inference_mode():
        codes = E(io8["svm_images"])
    assert max_err(codes, io8["svm_codes"]) <= TOL
    svm = fit_linear_svm(codes[labels].numpy(), codes[~labels].numpy())
    boundary = io8["svm_boundary"]
    assert float(torch.from_numpy(svm.normal).float() @ boundary.flatten()) > 0.9999
    coef = io8["svm_coef"].numpy()
    assert abs(svm.weights - coef).max() <= 2e-3 * abs(coef).max()  # sklearn stops at tol 1e-3
    assert svm.intercept == pytest.approx(io8["svm_intercept"], abs=2e-3)
    x, y, w, h = io8["semantic_rect_xywh"]
    cells = torch.zeros(8, 8, dtype=torch.bool)
    cells[y:y + h, x:x + w] = True
    distances, n = io8["semantic_distances"], io8["images"].shape[0]
    with torch.inference_mode():
        for i in range(n):
            code = E(io8["images"][i:i + 1])
            for k, mask in enumerate((None, cells)):
                out = G.move(code, -boundary[None], distances, mask, chunk=2)
                start = k * len(distances) * n
                expected = io8["semantic_image"][start + i: start + len(distances) * n: n]
                assert max_err(out, expected) <= TOL


def test_transplant_rejects_bad_arguments(models, io, encoded):
    G, _ = models
    masks, shifts = io["demo_masks"], demo_shifts(io)
    with torch.inference_mode(), pytest.raises(ValueError, match="steps"):
        G.transplant(encoded[:1], encoded[1:], masks, shifts, 1)
    with torch.inference_mode(), pytest.raises(ValueError, match="shift"):
        G.transplant(encoded[:1], encoded[1:], masks, shifts[:1], 3)
    with torch.inference_mode(), pytest.raises(ValueError, match="masks"):
        G.transplant(encoded[:1], encoded[1:], masks[:1], shifts, 3)


def test_bad_shapes_are_rejected(models, encoded):
    G, E = models
    with pytest.raises(ValueError, match="stylemap"):
        G.synthesis(torch.zeros(1, 8, 8, 8))
    with pytest.raises(ValueError, match="mask"):
        G.blend(encoded[:1], encoded[1:2], torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError, match="space"):
        G.blend(encoded[:1], encoded[1:2], torch.zeros(1, 1, 32, 32), space="z")
    with pytest.raises(ValueError, match="encoder"):
        E(torch.zeros(1, 3, 64, 64))


def test_gradients_flow_to_the_inputs(models, io, encoded):
    """Optimising a stylemap (refining an encoding) or an image through the encoder works:
    the in-place shortcuts step aside under autograd."""
    G, E = models
    s = encoded[:1].clone().requires_grad_(True)
    G.synthesis(s).square().mean().backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    x = io["encoder_input"][:1].clone().requires_grad_(True)
    out = E(x)
    assert max_err(out.detach(), io["encoded"][:1]) <= TOL
    out.square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_weight_caches_follow_in_place_edits(io):
    G, _ = load_stylemapgan(SMG_REF / "tiny.pt")
    with torch.inference_mode():
        s = G.mapping(io["z"][:1])
        before = G.synthesis(s)
    with torch.no_grad():
        G.decoder.to_rgb.conv.beta.weight.add_(0.5)  # one half of the merged gamma/beta conv
    with torch.inference_mode():
        after = G.synthesis(s)
    assert max_err(after, before) > 1e-3


def test_corrupt_file_is_a_user_error(tmp_path):
    bad = tmp_path / "stylemapgan.pt"
    bad.write_bytes((SMG_REF / "tiny.pt").read_bytes()[:5000])
    with pytest.raises(UserError, match="corrupt"):
        load_stylemapgan(bad)


@pytest.mark.parametrize("drop", ["e_ema", "g_ema", "train_args"])
def test_incomplete_checkpoint_is_a_clear_user_error(tmp_path, drop):
    ckpt = load_reference(SMG_REF / "tiny.pt")
    del ckpt[drop]
    path = tmp_path / "partial.pt"
    torch.save(ckpt, path)
    with pytest.raises(UserError, match=drop):
        load_stylemapgan(path)


def test_train_args_that_do_not_fit_the_weights_are_a_user_error(tmp_path):
    ckpt = load_reference(SMG_REF / "tiny.pt")
    ckpt["train_args"] = argparse.Namespace(**{**vars(ckpt["train_args"]), "latent_channel_size": 16})
    path = tmp_path / "mismatch.pt"
    torch.save(ckpt, path)
    with pytest.raises(UserError, match="g_ema"):
        load_stylemapgan(path)
