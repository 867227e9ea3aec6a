"""One photo code, shared by the StyleGAN2 editors (core.photo_code) on the tiny StyleGAN2."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import SG2_REF, TINY_SG2_CONFIG
from core.errors import UserError
from core.models.stylegan2 import load_stylegan2
from core.photo_code import PhotoCode


@pytest.fixture(scope="module")
def G():
    return load_stylegan2(SG2_REF / "tiny.pt", **TINY_SG2_CONFIG)


@pytest.fixture(scope="module")
def code(G) -> PhotoCode:
    """A SAM-like code: W+ plus residuals at layers 2 and 4 inside half-frame masks."""
    gen = torch.Generator().manual_seed(0)
    w = G.w_plus(G.mapping(torch.randn(1, TINY_SG2_CONFIG["style_dim"], generator=gen)))
    shapes = {k: G.synthesis_until(w, k).features.shape for k in (2, 4)}
    deltas = {k: 0.5 * torch.randn(s, generator=gen) for k, s in shapes.items()}
    masks = {k: torch.zeros(1, 1, *s[-2:]) for k, s in shapes.items()}
    for m in masks.values():
        m[..., : m.shape[-1] // 2] = 1  # the left half
    return PhotoCode("tiny-sg2", w, deltas, masks, "SAM")


def test_an_identity_edit_is_exactly_the_reconstruction(G, code):
    for layer in (1, 2, 3, 4, 5):
        assert torch.equal(code.render_edited(G, layer, lambda x: x), code.render(G))


def test_residuals_are_in_the_features_an_edit_sees(G, code):
    seen = {}

    def look(x):
        seen["x"] = x.clone()
        return x

    code.render_edited(G, 4, look)
    plain = G.synthesis_until(code.w_plus, 4, deltas=code.residuals(G.device, last=3)).features
    assert torch.allclose(seen["x"] - plain, code.deltas[4] * code.masks[4], atol=1e-5)


def test_an_edit_changes_features_only_where_it_acts(G, code):
    """A part-limited edit at layer 4 leaves the features outside the part untouched there."""
    part = torch.zeros_like(code.masks[4])
    part[..., :2, :2] = 1

    def push(x):
        return x + 3.0 * part

    after = {}

    def capture(x):
        after["x"] = push(x)
        return after["x"]

    code.render_edited(G, 4, capture)
    before = G.synthesis_until(code.w_plus, 4, deltas=code.residuals(G.device, last=4)).features
    changed = (after["x"] - before).abs().sum(1, keepdim=True) > 0
    assert changed.any() and not (changed & (part == 0)).any()


def test_arrays_round_trip_and_the_model_is_checked(code):
    again = PhotoCode.from_arrays("tiny-sg2", code.arrays())
    assert torch.equal(again.w_plus, code.w_plus)
    assert all(torch.equal(again.deltas[k], code.deltas[k]) for k in code.deltas)
    assert all(torch.equal(again.masks[k], code.masks[k]) for k in code.masks)
    again.check_model("tiny-sg2")
    with pytest.raises(UserError, match="belongs to model 'tiny-sg2'"):
        again.check_model("stylegan2-ffhq-1024")
    with pytest.raises(UserError, match="no 'W\\+'"):
        PhotoCode.from_arrays("tiny-sg2", {"F4": np.zeros(1)})
    assert code.in_photo(np.zeros((32, 32, 3), np.uint8)) is None  # a sample has no photo
