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
    plain = G.synthesis_until(code.w_plus, 4, deltas=code.residuals(G, last=3)).features
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
    before = G.synthesis_until(code.w_plus, 4, deltas=code.residuals(G, last=4)).features
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


# ---- the Generate tab: show a code, save a run, load it back bit for bit -----------------------
@pytest.fixture()
def ctx(tiny_registry):
    from core.context import AppContext
    from core.hub import load_registry

    return AppContext(load_registry(tiny_registry), torch.device("cpu"))


def _photo_code(ctx, code: PhotoCode) -> PhotoCode:
    from dataclasses import replace

    from core.faces import frame_for_model

    photo = np.random.default_rng(1).integers(0, 255, (90, 120, 3), np.uint8)
    return replace(code, framed=frame_for_model(ctx.registry, "tiny-sg2", photo, 32, plain=True))


def test_a_generated_run_reloads_bit_for_bit(ctx, tmp_path):
    from demos.generate.handlers import generate_image, load_run

    picture, run = generate_image(ctx, "tiny-sg2", 5, 0.6)
    saved = run.write(tmp_path)
    model, seed, psi, again, code, status, in_photo, _, _ = load_run(ctx, str(saved), None)
    assert (model, seed, psi) == ("tiny-sg2", 5, 0.6) and code is None and in_photo is None
    np.testing.assert_array_equal(again, picture)


def test_a_photo_code_shows_pastes_back_and_reloads_bit_for_bit(ctx, code, tmp_path):
    from demos.generate.handlers import load_run, show_code

    code = _photo_code(ctx, code)
    picture, in_photo, run = show_code(ctx, code)
    assert in_photo.shape == (90, 120, 3)
    saved = run.write(tmp_path)
    *_, again, restored, status, in_photo_again, _, _ = load_run(ctx, str(saved), None)
    assert "tiny-sg2" in status and restored.method == "SAM"
    assert torch.equal(restored.w_plus, code.w_plus)
    np.testing.assert_array_equal(again, picture)
    np.testing.assert_array_equal(in_photo_again, in_photo)


def test_loading_what_is_not_a_run_or_not_here_says_so(ctx, code, tmp_path):
    from dataclasses import replace

    from demos.generate.handlers import load_run, show_code

    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    with pytest.raises(Exception, match="not a run saved"):
        load_run(ctx, str(junk), None)
    with pytest.raises(Exception, match="No photo code yet"):
        show_code(ctx, None)
    *_, run = show_code(ctx, code)
    run.recipe["settings"]["photo_code"]["model"] = "stylegan2-elsewhere"
    with pytest.raises(Exception, match="belongs to model 'stylegan2-elsewhere'"):
        load_run(ctx, str(run.write(tmp_path)), None)
    assert replace(code, framed=None).in_photo(np.zeros((4, 4, 3), np.uint8)) is None


def test_sams_inversion_becomes_the_shared_code_and_renders_its_reconstruction(G, code):
    """What the SAM tab hands over renders exactly SAM's reconstruction, and an identity
    edit of it (PandA at strength 0) too."""
    from demos.sam.engine import Session
    from demos.sam.handlers import share_code
    from core.inversion import Codes, Frame, render

    codes = Codes(code.w_plus, dict(code.deltas), dict(code.masks), steps=3)
    session = Session("tiny-sg2", torch.zeros(1, 3, 32, 32), Frame(), codes=codes)
    shared = share_code(session)
    assert shared.method == "SAM" and shared.model_id == "tiny-sg2"
    reconstruction = render(G, codes.w_plus, codes.deltas, codes.masks)
    assert torch.equal(shared.render(G), reconstruction)
    assert torch.equal(shared.render_edited(G, 4, lambda x: x), reconstruction)
    assert share_code(None) == {"__type__": "update"}


# ---- PandA on a photo code ----------------------------------------------------------------------
def _factors(G, layer: int):
    """Random factors of the shape PandA's layer `layer` has on the tiny StyleGAN2."""
    from core.models.stylegan2 import panda_layer
    from demos.panda.engine import FactorSet

    k = panda_layer(layer)
    gen = torch.Generator().manual_seed(2)
    C, s = G.layer_channels(k), G.layer_resolution(k)
    P = torch.rand(s * s, 3, generator=gen)
    P[:, 0] = 0
    P[: s, 0] = 1  # part 0: the first row of cells
    return FactorSet("tiny-sg2", layer, torch.linalg.qr(torch.randn(C, 4, generator=gen))[0], P)


def test_panda_strength_zero_on_a_photo_code_is_the_sam_reconstruction(G, code):
    from core.inversion import render
    from demos.panda.engine import EditTerm, edit_code

    fs = _factors(G, 5)  # layer 5 = rosinality layer 4, where the code has a residual
    original, edited = edit_code(G, code, fs, [EditTerm((0,), 1, 0.0)])
    sam = render(G, code.w_plus, code.deltas, code.masks)
    assert torch.equal(original, sam) and torch.equal(edited, sam)


def test_panda_on_a_photo_code_edits_only_where_the_part_is(G, code, ctx, monkeypatch):
    """Through the tab's handler: at the layer the change is the part's rows only (the residuals
    present); the picture changes; the edit goes back into the photo; another model is named."""
    from dataclasses import replace

    from core.models.stylegan2 import panda_layer
    from demos.panda import handlers, handlers_photo

    fs = _factors(G, 5)
    k = panda_layer(5)
    seen = []
    original_render = PhotoCode.render_edited

    def spy(self, G_, layer, edit, w_plus=None):
        def wrapped(Z):
            out = edit(Z)
            seen.append((out - Z).abs().sum(1)[0])
            return out
        return original_render(self, G_, layer, wrapped, w_plus)

    monkeypatch.setattr(PhotoCode, "render_edited", spy)
    for module in (handlers, handlers_photo):  # the call's needs (handlers) and the edit
        monkeypatch.setattr(module, "factors_and_model", lambda ctx, label: (fs, G))
    photo_code = _photo_code(ctx, code)
    rec, edited, diff, in_photo, run = handlers_photo.edit_photo_code(ctx, "tiny", photo_code, ["0"], 1, 40.0)
    changed = seen[0] > 0
    assert changed[0].all() and not changed[1:].any() and k == 4
    assert np.abs(edited.astype(int) - rec).max() > 0 and in_photo.shape == (90, 120, 3)
    assert "W+" in run.arrays and run.recipe["settings"]["photo_code"]["model"] == "tiny-sg2"
    with pytest.raises(Exception, match="belongs to model 'other-model'"):
        handlers_photo.edit_photo_code(ctx, "tiny", replace(photo_code, model_id="other-model"), ["0"], 1, 40.0)
    with pytest.raises(Exception, match="No photo code yet"):
        handlers_photo.edit_photo_code(ctx, "tiny", None, ["0"], 1, 40.0)
