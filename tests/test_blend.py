"""Shared pasting mechanisms: feature blending (Eq. 3 of Neural Collage) on the tiny
StyleGAN2, Poisson blending, and colour-coded masks from an ImageEditor."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import SG2_REF, TINY_SG2_CONFIG
from core.blend import FeatureBlend, shift_at, translate
from core.errors import UserError
from core.images import masks_by_colour
from core.models.stylegan2 import load_stylegan2
from core.poisson import poisson_blend


@pytest.fixture(scope="module")
def G():
    return load_stylegan2(SG2_REF / "tiny.pt", **TINY_SG2_CONFIG)


def _streams(G, n: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        w = G.mapping(torch.randn(n, G.style_dim, generator=g))
    return G.w_plus(w)


def _square(size: int, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
    m = torch.zeros(1, size, size)
    m[:, y0:y1, x0:x1] = 1
    return m


def test_shift_at_scales_to_the_grid():
    assert shift_at((8, -4), 32, 8) == (2, -1)
    assert shift_at((0, 0), 32, 4) == (0, 0)


def test_zero_regions_return_the_plain_base_exactly(G):
    wp = _streams(G)
    blend = FeatureBlend(torch.zeros(1, 1, 32, 32), [(3, 2)], frozenset({0, 2, 4}))
    with torch.inference_mode():
        plain = G.synthesis(wp)
        blended = G.synthesis(wp, hook=blend.stylegan2_hook)
    assert torch.equal(blended[1], plain[1])
    assert torch.equal(blended, plain)


def test_blend_rewrites_features_only_inside_the_mask_at_the_blend_layer(G):
    wp = _streams(G)
    region = _square(32, 8, 24, 8, 24)
    layer = 4  # 16 px
    blend = FeatureBlend(region[None], [(0, 0)], frozenset({layer}))
    seen = {}

    def record(k, x, skip):
        seen.setdefault(k, []).append(x.clone())
        return x, skip

    def blended_then_record(k, x, skip):
        x, skip = blend.stylegan2_hook(k, x, skip)
        return record(k, x, skip)

    with torch.inference_mode():
        G.synthesis(wp, hook=record)
        G.synthesis(wp, hook=blended_then_record)
    plain_f, blended_f = seen[layer]
    inside = F.interpolate(region[None], size=(16, 16), mode="area")[0, 0] > 0
    diff = (blended_f[1] - plain_f[1]).abs().amax(0)
    assert diff[~inside].max() == 0  # outside the mask: untouched
    assert torch.allclose(blended_f[1][:, inside], plain_f[2][:, inside])  # inside: the reference's
    for k in range(layer):  # earlier layers unchanged
        assert torch.equal(seen[k][0], seen[k][1])
    assert torch.equal(blended_f[0], plain_f[0]) and torch.equal(blended_f[2], plain_f[2])


def test_full_region_at_the_first_layer_gives_the_reference(G):
    """Blending everything at 4x4 (features and skip) makes the blended stream continue as the
    reference's... except for the w+ of later layers, which stay the base's: the picture must
    differ from both, and equal the reference when both streams share w+."""
    wp = _streams(G)
    blend = FeatureBlend(torch.ones(1, 1, 32, 32), [(0, 0)], frozenset({0}))
    with torch.inference_mode():
        plain = G.synthesis(wp)
        blended = G.synthesis(wp, hook=blend.stylegan2_hook)
        assert not torch.allclose(blended[1], plain[1]) and not torch.allclose(blended[1], plain[2])
        shared = wp.clone()
        shared[2, 1:] = shared[1, 1:]  # the reference differs only in the first style
        out = G.synthesis(shared, hook=blend.stylegan2_hook)
    assert torch.allclose(out[1], out[2], atol=1e-6)


def test_shift_moves_the_landing_region(G):
    region = _square(32, 0, 8, 0, 8)
    blend = FeatureBlend(region[None], [(16, 8)], frozenset({2}))
    w = blend.weights_at(8)[0, 0]  # 8 px grid: the 2x2 cell block moves by (4, 2) cells
    expected = translate(F.interpolate(region[None], size=(8, 8), mode="area")[0], 4, 2)[0]
    assert torch.equal(w, expected) and w[2:4, 4:6].min() == 1 and w.sum() == 4


def test_overlapping_regions_are_capped_and_strength_scales():
    regions = torch.ones(2, 1, 8, 8)
    w = FeatureBlend(regions, [(0, 0), (0, 0)], frozenset({0})).weights_at(8)
    assert torch.allclose(w.sum(0), torch.ones(1, 8, 8))
    half = FeatureBlend(regions[:1], [(0, 0)], frozenset({0}), strength=0.5).weights_at(8)
    assert torch.allclose(half, torch.full_like(half, 0.5))


def test_translate_moves_and_drops():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    out = translate(x, 1, 2)
    assert out[0, 0, 2, 1] == x[0, 0, 0, 0] and out[0, 0, :2].abs().sum() == 0
    assert translate(x, 4, 0).abs().sum() == 0 and torch.equal(translate(x, 0, 0), x)


# ---- Poisson ---------------------------------------------------------------------------------
def test_poisson_keeps_the_target_outside_and_matches_gradients_inside():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(3, 24, 24, generator=g)
    source = torch.rand(3, 24, 24, generator=g)
    mask = torch.zeros(24, 24)
    mask[6:18, 5:19] = 1
    out = poisson_blend(source + 0.7, target, mask)  # a colour offset must vanish
    assert torch.equal(out[:, ~mask.bool()], target[:, ~mask.bool()])
    # the discrete Laplacian inside equals the source's, and the seam is continuous
    lap = lambda x: 4 * x[:, 1:-1, 1:-1] - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:]
    inner = mask.bool()[1:-1, 1:-1]
    assert torch.allclose(lap(out.double())[:, inner], lap(source.double())[:, inner], atol=1e-5)


def test_poisson_with_identical_source_is_the_identity_and_empty_mask_is_a_noop():
    t = torch.rand(3, 16, 16)
    m = torch.zeros(16, 16)
    m[4:12, 4:12] = 1
    assert torch.allclose(poisson_blend(t, t, m), t, atol=1e-6)
    assert torch.equal(poisson_blend(torch.zeros_like(t), t, torch.zeros(16, 16)), t)


# ---- colour-coded masks ------------------------------------------------------------------------
def test_masks_by_colour_assigns_paint_to_the_nearest_palette_colour():
    bg = np.zeros((20, 20, 3), np.uint8)
    layer = np.zeros((20, 20, 4), np.uint8)
    layer[2:6, 2:6] = (250, 60, 50, 255)  # ~red
    layer[10:14, 10:14] = (40, 200, 90, 255)  # ~green
    layer[15:17, 15:17] = (0, 0, 255, 80)  # faint: not painted
    masks = masks_by_colour({"background": bg, "layers": [layer], "composite": bg},
                            ["#ff3b30", "#34c759", "#007aff"], 20)
    assert masks.shape == (3, 1, 20, 20)
    assert masks[0, 0, 2:6, 2:6].min() == 1 and masks[0].sum() == 16
    assert masks[1, 0, 10:14, 10:14].min() == 1 and masks[1].sum() == 16
    assert masks[2].sum() == 0
    with pytest.raises(UserError):
        masks_by_colour({"background": None, "layers": [], "composite": None}, ["#ff0000"], 8)
