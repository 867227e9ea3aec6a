"""The Collage tab: the compose engine on tiny tensors, the regressor + generator pipeline on
tiny checkpoints in the published formats (loaded through the registry), the tab's handlers
called directly on an AppContext, and the tab driven end to end through gradio_client."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import gradio as gr
from gradio_client.exceptions import AppError
from PIL import Image

from helpers import (EMPTY_EDITOR, REFERENCE, SG2_REF, TINY_SG2_CONFIG, app_client, editor_value, read_png,
                      tiny_sg2_entry, write_registry)
from lbfgs_reference import reference_run

from core.context import AppContext
from core.errors import UserError
from core.framing import framing_line
from core.hub import load_registry
from core.images import pil_to_tensor, to_uint8
from core.models import load_model
from core.models.generator import seed_normal
from core.models.regressor import MaskedRegressor
from demos.collage import domain, engine, handlers, independence, refine
from demos.collage.engine import Part, compose

SIZE = 32
N_LATENT = 8  # a 32 px StyleGAN2
REG_CONFIG = {"resnet_depth": 18, "n_latent": N_LATENT, "w_dim": 32, "channels_in": 4}
PGAN_REG_CONFIG = {"resnet_depth": 18, "n_latent": 1, "w_dim": 32, "channels_in": 4, "family": "proggan"}


# ---- compose on tiny tensors ---------------------------------------------------------------
def test_letterboxed_domain_frames_uploads_between_black_bars():
    """LSUN-car style: a 4:3 content area centred in the square frame; an upload of any shape
    is cropped to 4:3, resized, and padded with black bars that are never painted."""
    picture = np.full((90, 200, 3), 200, np.uint8)
    painted = np.zeros((90, 200), bool)
    painted[:, :] = True
    value = editor_value_arrays(picture, painted)
    image, mask = engine.framed(value, 32, (32, 24))
    assert image.shape == (1, 3, 32, 32) and mask.shape == (1, 1, 32, 32)
    assert torch.equal(image[..., :4, :], torch.full_like(image[..., :4, :], -1.0))
    assert torch.equal(image[..., 28:, :], torch.full_like(image[..., 28:, :], -1.0))
    assert mask[..., :4, :].sum() == 0 and mask[..., 28:, :].sum() == 0 and mask[..., 4:28, :].min() == 1
    assert torch.allclose(image[..., 4:28, :], torch.full_like(image[..., 4:28, :], 200 / 127.5 - 1))
    square, _ = engine.framed(value, 32, None)
    assert square.shape == (1, 3, 32, 32) and square.min() > -1  # square domains: no bars


def editor_value_arrays(picture: np.ndarray, painted: np.ndarray) -> dict:
    layer = np.zeros(painted.shape + (4,), np.uint8)
    layer[painted] = 255
    return {"background": picture, "layers": [layer], "composite": picture}


def test_compose_builds_the_union_collage_later_parts_on_top():
    a, b = torch.full((1, 3, 4, 4), 0.5), torch.full((1, 3, 4, 4), -0.25)
    ma, mb = torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)
    ma[..., :2, :3] = 1  # rows 0-1, cols 0-2
    mb[..., 1:3, 2:4] = 1  # rows 1-2, cols 2-3: overlaps a at (1, 2)
    collage, union = compose([Part(a, ma), Part(b, mb)])
    expected = torch.zeros(4, 4)
    expected[:2, :3] = 0.5
    expected[1:3, 2:4] = -0.25  # b is on top
    assert torch.equal(collage[0, 0], expected) and torch.equal(collage[0, 2], expected)
    assert torch.equal(union, torch.maximum(ma, mb))
    shifted, u2 = compose([Part(a, ma, (1, 1))])  # dx = dy = 1
    assert torch.equal(u2[0, 0, 1:3, 1:4], torch.ones(2, 3)) and u2.sum() == 6
    assert torch.equal(shifted[0, 0][u2[0, 0] > 0], torch.full((6,), 0.5))


def test_compose_rejects_nothing_to_compose():
    with pytest.raises(UserError, match="at least one part"):
        compose([])
    with pytest.raises(UserError, match="cover nothing"):
        compose([Part(torch.zeros(1, 3, 4, 4), torch.zeros(1, 1, 4, 4))])
    with pytest.raises(UserError, match="cover nothing"):
        compose([Part(torch.zeros(1, 3, 4, 4), torch.ones(1, 1, 4, 4), (9, 0))])


def test_random_hints_follow_the_training_masks():
    m = engine.random_hints(64, seed=3, batch=2)
    assert m.shape == (2, 1, 64, 64) and set(m.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(m, engine.random_hints(64, seed=3, batch=2))
    assert 0.0 < float(m.mean()) <= 1.0
    sparse = engine.random_hints(64, seed=3, coverage=(0.1, 0.4))
    assert float(sparse.mean()) < 0.5


# ---- the pipeline on tiny checkpoints ------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("collage")
    torch.manual_seed(0)
    reg = MaskedRegressor(**REG_CONFIG)
    with torch.no_grad():  # a spread of codes the tiny generator can render
        reg.layer5.conv5.weight.mul_(4)
    reg_file = tmp / "sgan_encoders_tiny_RGBM_model_final.pth"
    torch.save({"state_dict": reg.state_dict(), "epoch": 1, "val_loss": 0.5}, reg_file)
    sg2 = tmp / "tiny-sg2.pt"
    shutil.copy(SG2_REF / "tiny.pt", sg2)
    return reg_file, sg2


@pytest.fixture(scope="module")
def pgan_files(tmp_path_factory):
    """The ProGAN side: the authors' tiny ProGAN (32 px, z_dim 32) and a ResNet-18 regressor
    in the published `pgan_encoders_*` layout predicting its z."""
    tmp = tmp_path_factory.mktemp("collage-pgan")
    torch.manual_seed(1)
    reg = MaskedRegressor(**PGAN_REG_CONFIG)
    reg_file = tmp / "pgan_encoders_tiny_RGBM_model_final.pth"
    torch.save({"state_dict": reg.state_dict(), "epoch": 1, "val_loss": 0.5}, reg_file)
    gen = tmp / "proggan_tiny.pth"
    shutil.copy(REFERENCE / "proggan" / "tiny.pth", gen)
    return reg_file, gen


@pytest.fixture(scope="module")
def pgan_pair(pgan_files):
    reg_file, gen = pgan_files
    return (load_model("regressor", reg_file, dict(PGAN_REG_CONFIG)),
            load_model("proggan", gen, {"resolution": SIZE}))


@pytest.fixture(scope="module")
def pair(tiny_files):
    reg_file, sg2 = tiny_files
    E = load_model("regressor", reg_file, dict(REG_CONFIG))
    G = load_model("stylegan2", sg2, dict(TINY_SG2_CONFIG))
    return E, G


def test_full_mask_collage_is_plain_encoding(pair):
    E, G = pair
    x = engine.sample_images(G, [5])
    full = torch.ones(1, 1, SIZE, SIZE)
    collage_img, union = compose([Part(x, full)])
    out, w = engine.regenerate(E, G, collage_img, union)
    with torch.inference_mode():
        plain = G.synthesis(E(x)).float().clamp(-1, 1)
    assert torch.equal(out, plain) and w.shape == (1, N_LATENT, 32)


def test_unknown_pixels_do_not_matter(pair):
    E, G = pair
    x = engine.sample_images(G, [6])
    known = torch.zeros(1, 1, SIZE, SIZE)
    known[..., :, :16] = 1
    noisy = x + (1 - known) * torch.randn_like(x)
    a, _ = engine.regenerate(E, G, x, known)
    b, _ = engine.regenerate(E, G, noisy, known)
    assert torch.allclose(a, b, atol=1e-6)


def test_inputs_of_any_size_are_resized_consistently(pair):
    E, G = pair
    big = to_uint8(engine.sample_images(G, [7]))[0]
    picture = np.asarray(Image.fromarray(big).resize((80, 60)))
    t = pil_to_tensor(picture, SIZE)
    assert t.shape == (1, 3, SIZE, SIZE)
    out, _ = engine.regenerate(E, G, t, torch.ones(1, 1, SIZE, SIZE))
    assert out.shape == (1, 3, SIZE, SIZE)


def test_completions_differ_and_keep_the_plain_one_first(pair):
    E, G = pair
    x = engine.sample_images(G, [8])
    known = torch.ones(1, 1, SIZE, SIZE)
    known[..., 8:24, 8:24] = 0
    images, masks = engine.complete(E, G, x, known, 3, seed=1)
    assert images.shape == (3, 3, SIZE, SIZE)
    plain, _ = engine.regenerate(E, G, x * known, known)
    assert torch.allclose(images[:1], plain, atol=1e-5)
    assert torch.equal(masks[:1], known) and (masks[1:] >= known).all()
    assert not torch.equal(images[1], images[2])  # different hints, different completions
    assert ((masks[1:] - known) * known).abs().sum() == 0  # hints only inside the hole


def authors_encode(E, image, mask):
    """The authors' `ProgganNets.encode`: the mask shifted to -0.5/0.5 (its max is 1), then
    cat([image, mask]) into their ResNet-18 (global mean, fc, [B, 512, 1, 1]), nothing zeroed."""
    if torch.max(mask) == 1:
        mask = mask - 0.5
    return E.fc(E.features(torch.cat([image, mask], dim=1)))[:, :, None, None]


def authors_invert_lbfgs_loss(E, G, current_z, target_x, mask, target_f, lambda_f=0.25, lambda_l=0.5):
    """utils/inversions.py `compute_all_loss`, with utils/losses.py's Masked_L1_Loss and
    Masked_LPIPS_Loss (lpips.LPIPS(net='vgg', spatial=True)), transcribed."""
    from core.lpips import get_lpips

    current_x = G.synthesis(current_z)
    w = mask.repeat(1, current_x.shape[1], 1, 1)
    l1 = torch.sum(torch.abs(current_x - target_x) * w, [1, 2, 3]) / torch.sum(w, [1, 2, 3])
    lp_map = get_lpips("vgg", "cpu", spatial=True)(current_x, target_x)
    lp = torch.sum(lp_map * mask, [1, 2, 3]) / torch.sum(mask, [1, 2, 3])
    all_loss = {"x": (1 - lambda_l) * l1 + lambda_l * lp,
                "z": F.mse_loss(target_f, authors_encode(E, current_x, mask)) * lambda_f}
    return sum(all_loss.values())


def test_refine_loss_is_the_authors_invert_lbfgs_loss(pgan_pair):
    """One state (E's code, nudged): our objective equals the authors' formula transcribed
    (LPIPS on the fixed random backbone of the tests; ProGAN's z, whose regressor runs at
    32 px; the StyleGAN2 regressor's whole-picture input is checked in test_regressor.py)."""
    E, G = pgan_pair
    x = engine.sample_images(G, [9])
    known = engine.random_hints(SIZE, seed=2)
    target = x * known
    with torch.no_grad():
        z = E(target, known) + 0.05 * torch.randn(1, 32, 1, 1, generator=torch.Generator().manual_seed(0))
        target_f = authors_encode(E, target, known)
        ours = refine.refine_loss(E, G, z, target, known, E(target, known, hide_unknown=False))
        theirs = authors_invert_lbfgs_loss(E, G, z, target, known, target_f)
        whole = refine.refine_loss(E, G, z, target, known, E(target, known))
    assert theirs.shape == (1,) and float(theirs) > 0
    assert abs(float(ours) - float(theirs)) <= 1e-5 * float(theirs)
    assert torch.equal(whole, ours)  # the target is zero where unknown: both encodings agree


def test_enc_lbfgs_starts_from_the_whole_target(pgan_pair):
    """The start is their `nets.encode(target, mask)`: E([x, m]) with the unknown pixels as
    given, not zeroed (the two differ once the target is not zero outside the mask)."""
    E, G = pgan_pair
    x = engine.sample_images(G, [9])
    known = engine.random_hints(SIZE, seed=2)
    done = refine.refine(E, G, x, known, steps=0)
    with torch.no_grad():
        whole, zeroed = E(x, known, hide_unknown=False), E(x * known, known)
    assert torch.equal(done.latent, whole) and not torch.allclose(whole, zeroed, atol=1e-3)
    assert done.iterations == 0 and done.evaluations == 1 and len(done.losses) == 1


class _Cached(torch.autograd.Function):
    """A known loss value whose gradient with respect to the latent is a known tensor."""

    @staticmethod
    def forward(ctx, latent, value, grad):
        ctx.save_for_backward(grad)
        return value.clone()

    @staticmethod
    def backward(ctx, out):
        (grad,) = ctx.saved_tensors
        return out * grad, None, None


def memoised_refine_loss():
    """`refine.refine_loss`, its value and gradient kept per exact input (latent, target,
    mask, code bytes): an optimiser that steps through the same points as another costs
    nothing more; one that strays is evaluated afresh."""
    seen = {}
    real = refine.refine_loss

    def loss(E, G, latent, target, mask, code):
        key = tuple(t.detach().numpy().tobytes() for t in (latent, target, mask, code))
        if key not in seen:
            w = latent.detach().requires_grad_(True)
            value = real(E, G, w, target, mask, code)
            seen[key] = (value.detach(), torch.autograd.grad(value, w)[0])
        return _Cached.apply(latent, *seen[key])
    return loss, seen


def test_enc_lbfgs_steps_as_the_authors_full_batch_lbfgs(pgan_pair, monkeypatch):
    """15 iterations of `refine` against the transcription of their FullBatchLBFGS in their
    invert_lbfgs loop (tests/lbfgs_reference.py) on `refine_loss`, from the same start: the
    same losses after every iteration and the same latent (torch.optim.LBFGS, which refine
    used before, ended about twice as high here). Progress counts iterations."""
    E, G = pgan_pair
    x = engine.sample_images(G, [9])
    known = engine.random_hints(SIZE, seed=2)
    loss, seen = memoised_refine_loss()
    monkeypatch.setattr(refine, "refine_loss", loss)
    reported = []
    done = refine.refine(E, G, x, known, steps=15, progress=lambda k, n: reported.append((k, n)))
    ours = len(seen)
    with torch.no_grad():
        code = E(x, known, hide_unknown=False)
    w = code.clone().requires_grad_(True)
    losses, steps, _ = reference_run(lambda: loss(E, G, w, x, known, code), [w], 15)
    assert done.iterations == 15 and len(done.losses) == len(losses) == 16
    assert max(abs(a - b) for a, b in zip(done.losses, losses)) <= 1e-4
    assert torch.allclose(done.latent, w.detach(), atol=1e-5)
    assert losses[-1] < losses[0] and any(t != 1.0 for t in steps)  # the line search worked
    assert reported == [(k, 15) for k in range(1, 16)] and done.evaluations == ours
    assert len(seen) == ours  # every point the reference evaluated, ours had evaluated
    assert torch.equal(done.image, done.raw.clamp(-1, 1))


class _ExactPair(torch.nn.Module):
    """A planted regressor/generator: the "latent" is the picture itself, so a regeneration
    is exactly its input (`leak` adds a share of the picture's mean everywhere)."""

    def __init__(self, leak: float = 0.0):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()), requires_grad=False)
        self.leak, self.size = leak, 16

    def forward(self, image, mask=None, hide_unknown=True):
        return image * (1 if mask is None else mask)

    def synthesis(self, w):
        return w + self.leak * w.mean((1, 2, 3), keepdim=True)

    def sample_latents(self, seeds):
        return torch.cat([torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(s)) for s in seeds])

    def render(self, latents, truncation=1.0):
        return latents * 2 - 1


def test_leakage_on_planted_variations():
    part = torch.zeros(1, 1, 8, 8)
    part[..., :2, :] = 1  # a quarter of the picture
    g = torch.Generator().manual_seed(0)
    inside_only = torch.zeros(6, 3, 8, 8)
    inside_only[..., :2, :] = torch.rand(6, 3, 2, 8, generator=g)
    sigma, s = independence.leakage(inside_only, part)
    assert s == 0.0 and sigma.shape == (8, 8) and float(sigma[:2].min()) > 0
    even = torch.zeros(2, 3, 8, 8)
    even[1] = 1.0  # the same change at every pixel: s_c is the area outside the part
    assert independence.leakage(even, part)[1] == pytest.approx(0.75)
    planted = torch.zeros(2, 3, 8, 8)
    planted[1, :, :2] = 3.0  # sigma 1.5 inside (16 px), 0.5 outside (48 px)
    planted[1, :, 2:] = 1.0
    assert independence.leakage(planted, part)[1] == pytest.approx(48 * 0.5 / (16 * 1.5 + 48 * 0.5))


def test_independence_of_an_exact_regression_is_zero_and_leaks_are_measured():
    part = torch.zeros(1, 1, 16, 16)
    part[..., 4:8, 4:8] = 1
    base = torch.zeros(1, 3, 16, 16)
    exact = _ExactPair()
    sigma, scores = independence.independence(exact, exact, base, part, n=4, repeats=2, seed=5)
    assert scores == [0.0, 0.0] and float(sigma[4:8, 4:8].min()) > 0
    leaky = _ExactPair(leak=0.5)
    _, scores = independence.independence(leaky, leaky, base, part, n=4, repeats=2, seed=5)
    donors = leaky.render(leaky.sample_latents([5, 6, 7, 8]))
    canvas = part * donors + (1 - part) * base
    assert scores[0] == pytest.approx(independence.leakage(leaky.synthesis(canvas).clamp(-1, 1), part)[1])
    assert 0 < scores[0] < 1 and 0 < scores[1] < 1


def test_three_ways_are_the_papers_eqs_6_to_8(pgan_pair):
    E, G = pgan_pair
    x1, x2 = engine.sample_images(G, [12]), engine.sample_images(G, [13])
    part = torch.zeros(1, 1, SIZE, SIZE)
    part[..., 8:20, 10:22] = 1
    full = torch.ones(1, 1, SIZE, SIZE)
    out = engine.three_ways(E, G, x1, x2, part, 0.7)
    with torch.inference_mode():
        w1, w2 = E(x1, full), E(x2, full)
        pixel = G.synthesis(E(0.7 * x1 + 0.3 * x2, full)).clamp(-1, 1)
        latent = G.synthesis(0.7 * w1 + 0.3 * w2).clamp(-1, 1)
        regression = G.synthesis(E(part * x2 + (1 - part) * x1, full)).clamp(-1, 1)
    for name, expected in (("pixel", pixel), ("latent", latent), ("regression", regression)):
        assert torch.allclose(out[name], expected, atol=1e-5), name
    assert torch.equal(out["collage"], part * x2 + (1 - part) * x1)
    same = engine.three_ways(E, G, x1, x2, part, 1.0)  # a = 1: both blends are x1's encoding
    assert torch.allclose(same["pixel"], same["latent"], atol=1e-5)


def test_variation_map_is_a_std_and_its_leak_a_share(pair):
    E, G = pair
    base = engine.sample_images(G, [10])
    part = torch.zeros(1, 1, SIZE, SIZE)
    part[..., 4:12, 4:12] = 1
    sigma, leak = independence.variation_map(E, G, base, part, n=4, seed=0, batch=3)
    assert sigma.shape == (SIZE, SIZE) and (sigma >= 0).all() and sigma.max() > 0
    assert 0.0 <= leak <= 1.0
    with pytest.raises(UserError, match="at least 2"):
        independence.variation_map(E, G, base, part, n=1, seed=0)


def test_masked_l1_counts_known_pixels_only():
    a, b = torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4)
    b[..., :2, :] = 1.0
    b[..., 2:, :] = 7.0
    m = torch.zeros(1, 1, 4, 4)
    m[..., :2, :] = 1
    assert engine.masked_l1(a, b, m) == pytest.approx(1.0)


# ---- the tab through gradio_client ---------------------------------------------------------
NO_PART = EMPTY_EDITOR


@pytest.fixture(scope="module")
def registry_file(tiny_files, pgan_files, tmp_path_factory):
    reg_file, sg2 = tiny_files
    pgan_reg, pgan = pgan_files
    tmp = tmp_path_factory.mktemp("collage-app")
    return write_registry(tmp / "weights.json", [
        {"id": "tiny-pgan", "arch": "proggan", "config": {"resolution": SIZE}, "path": str(pgan),
         "license": "test"},
        {"id": "tiny-collage-mismatch", "arch": "regressor",  # a W+ regressor on a ProGAN
         "config": dict(REG_CONFIG), "generator": "tiny-pgan", "path": str(reg_file), "license": "test"},
        {"id": "tiny-collage-pgan", "arch": "regressor", "config": dict(PGAN_REG_CONFIG),
         "generator": "tiny-pgan", "path": str(pgan_reg), "license": "test"},
        tiny_sg2_entry("tiny-sg2", sg2, meta={"framing": "ffhq"}),  # photos: the face path
        {"id": "tiny-collage", "arch": "regressor", "config": dict(REG_CONFIG), "generator": "tiny-sg2",
         "path": str(reg_file), "license": "test"},
        {"id": "tiny-collage-orphan", "arch": "regressor", "config": dict(REG_CONFIG),
         "path": str(reg_file), "license": "test"},
        # a letterboxed domain (LSUN cars' 512x384 in 512x512, here 32x24 in 32x32): the
        # content area is on the generator's entry only, the regressor finds it through it
        tiny_sg2_entry("tiny-sg2-wide", sg2, meta={"content": [SIZE, 24], "framing": "letterbox"}),
        {"id": "tiny-collage-wide", "arch": "regressor", "config": dict(REG_CONFIG),
         "generator": "tiny-sg2-wide", "path": str(reg_file), "license": "test"}])


@pytest.fixture(scope="module")
def client(registry_file):
    with app_client(registry_file) as client:
        yield client


@pytest.fixture(scope="module")
def ctx(registry_file):
    return AppContext(load_registry(registry_file), torch.device("cpu"))


@pytest.fixture(scope="module")
def pictures(pair):
    _, G = pair
    return to_uint8(engine.sample_images(G, [21, 22, 23]))


# ---- the handlers, called directly (no app) ------------------------------------------------
def test_sample_picture_is_the_family_sampler_untruncated(ctx, pair, pgan_files, pictures):
    """"Sample from seed" gives what the regressor was trained on: StyleGAN2 from the shared
    `seed_normal` z (mapping, no truncation), ProGAN from the authors' z per seed; the shift
    sliders span the paired generator's frame (512 while the pairing is unknown)."""
    _, G = pair
    got = handlers.sample_picture(ctx, "tiny-collage", 21)
    with torch.inference_mode():
        old_path = G.synthesis(G.w_plus(G.mapping(seed_normal([21], G.style_dim)))).float().clamp(-1, 1)
    assert np.array_equal(got, pictures[0]) and np.array_equal(got, to_uint8(old_path)[0])
    P = load_model("proggan", pgan_files[1], {"resolution": SIZE})
    with torch.inference_mode():
        authors = to_uint8(P(P.random_z(1, 3)).float().clamp(-1, 1))[0]
    assert np.array_equal(handlers.sample_picture(ctx, "tiny-collage-pgan", 3), authors)
    assert domain.shift_span(ctx, "tiny-collage") == SIZE
    assert domain.shift_span(ctx, "tiny-collage-orphan") == domain.DEFAULT_FRAME
    updates = handlers.shift_ranges(ctx, "tiny-collage-pgan")
    assert len(updates) == 2 * handlers.MAX_PARTS and updates[0]["maximum"] == SIZE


def test_compose_handler_matches_the_engine(ctx, pair, pictures):
    E, G = pair
    keep = np.zeros((SIZE, SIZE), bool)
    keep[:, :16] = True
    take = np.zeros((SIZE, SIZE), bool)
    take[:8, :8] = True
    base, part = engine.painted_value(pictures[0], keep), engine.painted_value(pictures[1], take)
    shown, mask, result, info, run = handlers.compose_collage(
        ctx, "tiny-collage", base, False, 30, part, EMPTY_EDITOR, None, 20, 0, 0, 4, 0, 0)
    t = lambda a: pil_to_tensor(a)  # noqa: E731
    m = lambda a: torch.from_numpy(a.astype(np.float32))[None, None]  # noqa: E731
    collage_img, union = compose([Part(t(pictures[0]), m(keep)), Part(t(pictures[1]), m(take), (20, 4))])
    expected, latent = engine.regenerate(E, G, collage_img, union)
    assert np.array_equal(result, to_uint8(expected)[0])
    assert np.array_equal(shown, engine.unknown_as_grey(collage_img, union))
    raw, _ = engine.regenerate(E, G, collage_img, union, clamp=False)  # the authors' L1: unclamped
    assert torch.equal(raw.clamp(-1, 1), expected)
    assert f"{engine.masked_l1(raw, collage_img, union):.3f}" in info
    r = run.recipe
    assert r["models"]["regressor"]["id"] == "tiny-collage" and r["models"]["generator"]["id"] == "tiny-sg2"
    assert r["settings"]["shifts_px"] == {"part_1": [20, 4]} and r["settings"]["content"] is None
    assert torch.equal(torch.as_tensor(run.arrays["latent"]), latent)


def test_letterboxed_domain_reads_its_content_from_the_registry(ctx, pictures):
    """The content area comes from the registry's `meta.content` (here the generator's):
    the base is framed between black bars that are never known pixels."""
    assert domain.content_of(ctx, "tiny-collage-wide") == (SIZE, 24)
    assert domain.content_of(ctx, "tiny-collage") is None
    everything = engine.painted_value(pictures[2], np.ones((SIZE, SIZE), bool))  # keep it all
    shown, mask, _, info, run = handlers.compose_collage(
        ctx, "tiny-collage-wide", everything, False, 30, None, None, None, 0, 0, 0, 0, 0, 0)
    assert (shown[:4] == 200).all() and (shown[28:] == 200).all()  # the bars: unknown, grey
    assert (mask[:4] == 0).all() and (mask[4:28] == 255).all()
    assert "known: 75 %" in info and run.recipe["settings"]["content"] == [SIZE, 24]


def test_handlers_refuse_mistakes_with_readable_errors(ctx, pictures):
    none = (None, None, None, 0, 0, 0, 0, 0, 0)
    with pytest.raises(gr.Error, match="Pick a domain"):
        handlers.compose_collage(ctx, None, None, False, 30, *none)
    with pytest.raises(gr.Error, match="does not name the generator"):
        handlers.compose_collage(ctx, "tiny-collage-orphan", None, False, 30, *none)
    with pytest.raises(gr.Error, match="not a matching pair"):
        handlers.sample_picture(ctx, "tiny-collage-mismatch", 1)
    with pytest.raises(gr.Error, match="at least one part"):
        handlers.compose_collage(ctx, "tiny-collage", None, False, 30, *none)
    everything = engine.painted_value(pictures[0], np.ones((SIZE, SIZE), bool))
    with pytest.raises(gr.Error, match="Everything is erased"):
        handlers.inpaint(ctx, "tiny-collage", everything, 2, 0)
    assert list(handlers.live_compose(ctx, True, "tiny-collage", None, False, 30, *none)) == [gr.update()] * 5


@pytest.mark.slow
def test_finetune_handler_keeps_the_copy_in_the_session(ctx, pictures):
    """Fine-tuning through the handler: the shared model in the cache is untouched; Compose
    uses the session's copy for its domain only; "Back to the shared regressor" drops it."""
    E = ctx.model("tiny-collage-pgan", torch.float32)
    shared = {k: v.clone() for k, v in E.state_dict().items()}
    base = engine.painted_value(pictures[0], None)
    before, after, info, kept, run = handlers.finetune_regressor(ctx, "tiny-collage-pgan", base, 2)
    assert all(torch.equal(v, shared[k]) for k, v in E.state_dict().items())
    assert ctx.model("tiny-collage-pgan", torch.float32) is E
    assert kept.model_id == "tiny-collage-pgan" and kept.steps == 2 and len(kept.losses) == 2
    assert {t.device.type for t in kept.state.values()} == {"cpu"}
    changed = [k for k, v in kept.state.items() if not torch.equal(v, shared[k])]
    assert "fc.weight" in changed and not any("running" in k for k in changed)  # BN: eval mode
    assert not any(p.requires_grad for p in E.parameters()) and not E.training
    assert "identity term" in info and before.shape == after.shape == (SIZE, SIZE, 3)
    assert run.recipe["operation"] == "finetune" and run.recipe["settings"]["lr"] == 5e-5
    shifts = (0, 0, 0, 0, 0, 0)
    *_, result, info, run = handlers.compose_collage(ctx, "tiny-collage-pgan", base, False, 30,
                                                    None, None, None, *shifts, None, kept)
    _, G = domain.load_pair(ctx, "tiny-collage-pgan")
    image, full = pil_to_tensor(pictures[0]), torch.ones(1, 1, SIZE, SIZE)
    expected, _ = engine.regenerate(kept.build(E), G, image, full)
    assert np.array_equal(result, to_uint8(expected)[0]) and "fine-tuned" in info
    assert run.recipe["settings"]["finetuned_regressor"] == {"steps": 2, "lr": 5e-5}
    *_, plain_info, _ = handlers.compose_collage(ctx, "tiny-collage", base, False, 30,  # other domain
                                                None, None, None, *shifts, None, kept)
    assert "fine-tuned" not in plain_info
    assert handlers.forget_finetuning()[0] is None
    with pytest.raises(gr.Error, match="base first"):
        handlers.finetune_regressor(ctx, "tiny-collage-pgan", None, 2)


def test_tab_compose_end_to_end(client, pair, pictures, tmp_path):
    E, G = pair
    keep = np.zeros((SIZE, SIZE), bool)
    keep[:, :16] = True  # the base's left half
    take = np.zeros((SIZE, SIZE), bool)
    take[:8, :8] = True
    base = editor_value(tmp_path, "base", pictures[0], keep)
    part = editor_value(tmp_path, "p1", pictures[1], take)
    shown, mask, result, info = client.predict(
        "tiny-collage", base, False, 30, part, NO_PART, NO_PART, 20, 0, 0, 4, 0, 0,
        api_name="/collage_compose")
    t = lambda a: pil_to_tensor(a)  # noqa: E731
    m = lambda a: torch.from_numpy(a.astype(np.float32))[None, None]  # noqa: E731
    collage_img, union = compose([Part(t(pictures[0]), m(keep)), Part(t(pictures[1]), m(take), (20, 4))])
    expected, _ = engine.regenerate(E, G, collage_img, union)
    assert np.array_equal(read_png(result)[..., :3], to_uint8(expected)[0])
    got_mask = read_png(mask)
    got_mask = got_mask if got_mask.ndim == 2 else got_mask[..., 0]
    assert np.array_equal(got_mask > 127, union[0, 0].numpy() > 0)
    assert np.array_equal(read_png(shown)[..., :3], engine.unknown_as_grey(collage_img, union))
    raw, _ = engine.regenerate(E, G, collage_img, union, clamp=False)
    assert f"{engine.masked_l1(raw, collage_img, union):.3f}" in info


def test_tab_compose_errors_and_refine(client, pictures, tmp_path):
    with pytest.raises(AppError, match="at least one part"):
        client.predict("tiny-collage", NO_PART, False, 30, NO_PART, NO_PART, NO_PART,
                       0, 0, 0, 0, 0, 0, api_name="/collage_compose")
    with pytest.raises(AppError, match="generator"):
        client.predict("tiny-collage-orphan", NO_PART, False, 30, NO_PART, NO_PART, NO_PART,
                       0, 0, 0, 0, 0, 0, api_name="/collage_compose")
    with pytest.raises(AppError, match="not a matching pair"):
        client.predict("tiny-collage-mismatch", NO_PART, False, 30, NO_PART, NO_PART, NO_PART,
                       0, 0, 0, 0, 0, 0, api_name="/collage_compose")



def test_tab_inpaint_and_variation(client, pictures, tmp_path):
    hole = np.zeros((SIZE, SIZE), bool)
    hole[8:24, 8:24] = True
    ed = editor_value(tmp_path, "ip", pictures[0], hole)
    masked, gallery = client.predict("tiny-collage", ed, 3, 0, api_name="/collage_inpaint")
    assert len(gallery) == 3 and gallery[0]["caption"] == "known pixels only"
    shown = read_png(masked)[..., :3]
    assert (shown[12, 12] == 200).all() and np.array_equal(shown[0, 0], pictures[0][0, 0])
    masked, gallery = client.predict("tiny-collage", ed, 2, 5, api_name="/collage_random_hints")
    assert len(gallery) == 2
    empty = editor_value(tmp_path, "e", pictures[0], None)
    with pytest.raises(AppError, match="mask is empty"):
        client.predict("tiny-collage", empty, 2, 0, api_name="/collage_inpaint")
    everything = editor_value(tmp_path, "all", pictures[0], np.ones((SIZE, SIZE), bool))
    with pytest.raises(AppError, match="Everything is erased"):
        client.predict("tiny-collage", everything, 2, 0, api_name="/collage_inpaint")
    vm, info = client.predict("tiny-collage", ed, 3, 0, 2, api_name="/collage_variation")
    assert read_png(vm).shape[:2] == (SIZE, SIZE) and "outside the painted part" in info
    assert "over 2 repeats" in info and "Table 1 measures the two face models" in info
    base = editor_value(tmp_path, "c1", pictures[1], None)
    inputs, results = client.predict("tiny-collage", base, ed, 0.7, api_name="/collage_compare")
    assert [r["caption"].split()[0] for r in results] == ["pixel", "latent", "regression"]
    assert len(inputs) == 2 and read_png(results[2]["image"]).shape[:2] == (SIZE, SIZE)


def test_proggan_domain_composes_in_z(client, pgan_files, pgan_pair, tmp_path):
    """ProGAN domains: E regresses z [B, 512, 1, 1] (mask shifted to +-0.5 inside E) and the
    ProGAN generator renders it; the tab's result equals the engine's, and the full-mask
    collage is the plain encoding."""
    E, G = pgan_pair
    pictures = to_uint8(engine.sample_images(G, [3, 4]))
    with torch.inference_mode():
        assert torch.equal(engine.sample_images(G, [3]), G(G.random_z(1, 3)).clamp(-1, 1))
    keep = np.zeros((SIZE, SIZE), bool)
    keep[:, :16] = True
    take = np.zeros((SIZE, SIZE), bool)
    take[8:24, 8:24] = True
    _, _, result, info = client.predict(
        "tiny-collage-pgan", editor_value(tmp_path, "pb", pictures[0], keep), False, 30,
        editor_value(tmp_path, "pp", pictures[1], take), NO_PART, NO_PART, 0, 0, 0, 0, 0, 0,
        api_name="/collage_compose")
    t = lambda a: pil_to_tensor(a)  # noqa: E731
    m = lambda a: torch.from_numpy(a.astype(np.float32))[None, None]  # noqa: E731
    collage_img, union = compose([Part(t(pictures[0]), m(keep)), Part(t(pictures[1]), m(take))])
    expected, z = engine.regenerate(E, G, collage_img, union)
    assert z.shape == (1, 32, 1, 1)
    assert np.array_equal(read_png(result)[..., :3], to_uint8(expected)[0])
    full = torch.ones(1, 1, SIZE, SIZE)
    out, _ = engine.regenerate(E, G, collage_img, full)
    with torch.inference_mode():
        assert torch.equal(out, G(E(collage_img)).float().clamp(-1, 1))
    *_, info = client.predict(  # Enc+LBFGS through the tab
        "tiny-collage-pgan", editor_value(tmp_path, "pr", pictures[0], None), True, 1,
        NO_PART, NO_PART, NO_PART, 0, 0, 0, 0, 0, 0, api_name="/collage_compose")
    assert "Enc+LBFGS: " in info and "of 1 iterations" in info and "known: 100 %" in info


def test_tab_download_all_after_compose(client, pair, pictures, tmp_path):
    """The zip holds the composed picture as shown, the union mask, the regressed W+ and a
    recipe naming the regressor and its generator (no seed: the inputs are pictures)."""
    from core.recipe import read_bundle

    keep = np.zeros((SIZE, SIZE), bool)
    keep[:, 16:] = True
    take = np.zeros((SIZE, SIZE), bool)
    take[4:12, 4:12] = True
    _, mask, result, _ = client.predict(
        "tiny-collage", editor_value(tmp_path, "db", pictures[2], keep), False, 30,
        editor_value(tmp_path, "dp", pictures[0], take), NO_PART, NO_PART, 2, 0, 0, 3, 0, 0,
        api_name="/collage_compose")
    bundle = read_bundle(client.predict(api_name="/collage_download"))
    assert np.array_equal(bundle.images["result"], read_png(result)[..., :3])
    shown_mask = read_png(mask)
    assert np.array_equal(bundle.masks["known"], shown_mask if shown_mask.ndim == 2 else shown_mask[..., 0])
    assert np.array_equal(bundle.images["base"], pictures[2]) and bundle.masks["part_1"].sum() == 64 * 255
    assert bundle.arrays["latent"].shape == (1, N_LATENT, 32)
    r = bundle.recipe
    assert r["model_id"] == "tiny-collage" and r["models"]["generator"]["id"] == "tiny-sg2"
    assert r["operation"] == "compose" and r["seeds"] == [] and r["seed"] is None
    assert r["settings"]["shifts_px"] == {"part_1": [2, 3]} and r["settings"]["refine"] is False


# ---- your photo in, your photo out ---------------------------------------------------------
@pytest.fixture(scope="module")
def astronaut(tmp_path_factory):
    """A real portrait (scikit-image's public-domain NASA photo, one face) as an upload."""
    from skimage import data

    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return str(path)


def outside_frame(framed_photo) -> np.ndarray:
    """Photo pixels clear of the aligned quad's bounding box (with a margin): paste-back must
    leave them byte-identical."""
    h, w = framed_photo.photo.height, framed_photo.photo.width
    q = framed_photo.aligned.quad
    l, t = int(np.floor(q[:, 0].min())) - 2, int(np.floor(q[:, 1].min())) - 2
    r, b = int(np.ceil(q[:, 0].max())) + 3, int(np.ceil(q[:, 1].max())) + 3
    out = np.ones((h, w), bool)
    out[max(t, 0):max(b, 0), max(l, 0):max(r, 0)] = False
    return out


def test_photo_becomes_the_base_as_an_aligned_face(ctx, astronaut):
    """"Use as base" on a face domain: the editor holds the FFHQ-aligned face at the
    generator's size (the same pixels as core.faces.frame_photo), labelled with what it is."""
    from core.faces import frame_photo
    from core.images import open_photo

    value, shown, faces, framed_photo = handlers.use_photo(ctx, "tiny-collage", astronaut, 1, False)
    expected = np.asarray(frame_photo(open_photo(astronaut), "ffhq", SIZE).aligned.image)
    assert expected.shape == (SIZE, SIZE, 3)
    assert np.array_equal(value["background"], expected) and value["layers"] == []
    assert np.array_equal(shown["value"], expected)
    assert shown["label"].startswith("Network input: aligned face (FFHQ recipe)")
    assert len(faces) == len(framed_photo.faces) >= 1 and faces[0][1] == "face 1 (used)"
    assert framed_photo.aligned.recipe == "ffhq" and framed_photo.photo.size == (512, 512)
    assert "aligned" in framing_line(ctx.registry, "tiny-collage")
    assert "centre crop" in framing_line(ctx.registry, "tiny-collage-pgan")
    assert domain.framing_of(ctx, "tiny-collage-wide") == "letterbox"  # the generator's
    labels = [p.label for p in domain.domain_photos(ctx, ["tiny-collage", "tiny-collage-pgan",
                                                           "tiny-collage"])]
    assert "astronaut" in labels[0] and len(labels) == len(set(labels)) > 1


def test_face_parts_come_from_the_landmarks_of_each_face(ctx, astronaut, pictures):
    """The s_c parts for faces: eyes above nose above mouth, small and disjoint from the skin;
    a picture without a face is refused with a readable message (also through the handler)."""
    from core.faces import frame_photo
    from core.images import open_photo

    picture = np.asarray(frame_photo(open_photo(astronaut), "ffhq", 256).aligned.image)
    parts = independence.face_parts(picture)
    eyes, nose, mouth, skin = (parts[k][0, 0] for k in ("eyes", "nose", "mouth", "skin"))
    row = lambda m: float(torch.nonzero(m)[:, 0].float().mean())  # noqa: E731
    assert row(eyes) < row(nose) < row(mouth)
    assert 0 < float(eyes.mean()) < 0.05 and 0 < float(mouth.mean()) < 0.05
    assert float((skin * (eyes + nose + mouth)).sum()) == 0 and skin.sum() > 4 * eyes.sum()
    with pytest.raises(UserError, match="No face found"):
        independence.face_parts(np.zeros((64, 64, 3), np.uint8))
    noise = engine.painted_value(pictures[0], None)
    with pytest.raises(gr.Error, match="No face found"):
        handlers.compute_variation_map(ctx, "tiny-collage", noise, 2, 0, 1, "mouth")


def test_compose_result_goes_back_into_the_photo(ctx, astronaut, pictures):
    """The composed picture pasted into the full-resolution photo where the face was; pixels
    clear of the face's frame are byte-identical; "Download all" carries it and the photo. A
    base that is no longer the photo gets no paste-back."""
    value, _, _, framed_photo = handlers.use_photo(ctx, "tiny-collage", astronaut, 1, False)
    take = np.zeros((SIZE, SIZE), bool)
    take[4:12, 4:12] = True
    part = engine.painted_value(pictures[1], take)
    shifts = (0, 0, 0, 0, 0, 0)
    *_, result, _, run = handlers.compose_collage(ctx, "tiny-collage", value, False, 30, part,
                                                 None, None, *shifts, framed_photo)
    photo = np.asarray(framed_photo.photo)
    in_photo = run.images["result_in_photo"]
    assert in_photo.shape == photo.shape == (512, 512, 3)
    assert np.array_equal(in_photo, np.asarray(framed_photo.paste(result)))
    outside = outside_frame(framed_photo)
    assert outside.sum() > 100_000 and np.array_equal(in_photo[outside], photo[outside])
    assert np.array_equal(in_photo[:64, :64], photo[:64, :64])  # a corner far from the face
    assert not np.array_equal(in_photo, photo)  # the face's frame did change
    assert np.array_equal(run.images["photo"], photo)
    assert np.array_equal(domain.shown_in_photo(run), in_photo)
    assert domain.shown_in_photo(run, ("inpaint",)) is None  # another sub-tab's run
    assert run.recipe["settings"]["photo"]["framing"] == "ffhq"
    # the same compose without the photo (old callers), or with a sample as the base: no paste
    *_, plain_run = handlers.compose_collage(ctx, "tiny-collage", value, False, 30, part,
                                            None, None, *shifts)
    sample = engine.painted_value(pictures[0], None)
    *_, other_run = handlers.compose_collage(ctx, "tiny-collage", sample, False, 30, part,
                                            None, None, *shifts, framed_photo)
    for r in (plain_run, other_run):
        assert "result_in_photo" not in r.images and domain.shown_in_photo(r) is None
    nudged = value["background"].copy()  # a browser canvas re-encoding a few pixels
    nudged[0, :4] ^= 1
    assert domain.photo_in_use(framed_photo, engine.painted_value(nudged, take)) is framed_photo


def test_inpaint_puts_completion_one_back_only_where_erased(ctx, astronaut):
    """Inpaint from the photo: completion 1 is pasted back into the photo restricted to the
    erased region (feathered), never over the rest of the face's frame."""
    value, _, _, framed_photo = handlers.use_photo(ctx, "tiny-collage", astronaut, 1, False)
    hole = np.zeros((SIZE, SIZE), bool)
    hole[14:26, 8:24] = True  # the mouth and chin
    erased = engine.painted_value(value["background"], hole)
    _, gallery, run = handlers.inpaint(ctx, "tiny-collage", erased, 2, 0, framed_photo)
    first = run.images["completion"][0]
    assert np.array_equal(first, gallery[0][0])
    in_photo = run.images["result_in_photo"]
    assert np.array_equal(in_photo, np.asarray(framed_photo.paste(first, hole.astype(np.float32))))
    photo = np.asarray(framed_photo.photo)
    outside = outside_frame(framed_photo)
    assert np.array_equal(in_photo[outside], photo[outside])
    changed = np.any(in_photo != photo, axis=-1)
    whole_frame = np.any(np.asarray(framed_photo.paste(first)) != photo, axis=-1)
    assert changed.any() and changed.sum() < whole_frame.sum() / 2  # only where erased
    assert domain.shown_in_photo(run, ("inpaint", "random_hints")) is not None
    _, _, hints_run = handlers.inpaint_random_hints(ctx, "tiny-collage", erased, 1, 3, framed_photo)
    assert hints_run.images["result_in_photo"].shape == photo.shape


def test_letterboxed_domain_frames_the_photo_between_bars(ctx, astronaut):
    """A letterboxed domain (LSUN cars' 512x384 in 512x512; here 32x24 in 32x32): the photo's
    middle band between black bars, which the editor's own framing keeps as they are; the
    bars never go back into the photo."""
    value, shown, faces, framed_photo = handlers.use_photo(ctx, "tiny-collage-wide", astronaut, 1, False)
    bg = value["background"]
    assert shown["label"] == "Network input: letterboxed (black bars)" and faces == []
    assert (bg[:4] == 0).all() and (bg[28:] == 0).all() and bg[4:28].mean() > 20
    image, _ = engine.framed(value, SIZE, (SIZE, 24), required=False)
    assert np.array_equal(to_uint8(image)[0], bg)
    *_, run = handlers.compose_collage(ctx, "tiny-collage-wide", value, False, 30, None, None,
                                      None, 0, 0, 0, 0, 0, 0, framed_photo)
    in_photo, photo = run.images["result_in_photo"], np.asarray(framed_photo.photo)
    assert in_photo.shape == photo.shape
    # the bars are the photo's top and bottom 64 rows (16 photo pixels per frame pixel)
    assert np.array_equal(in_photo[:48], photo[:48]) and np.array_equal(in_photo[-48:], photo[-48:])
    assert not np.array_equal(in_photo[64:-64], photo[64:-64])


def test_photo_without_a_face_needs_plain_framing(ctx, tmp_path):
    """A face domain and a cat photo: a readable message naming "Plain framing"; ticked, the
    photo is centre-cropped instead. Nothing at all: asked for a photo."""
    from skimage import data

    cat = tmp_path / "chelsea.png"
    Image.fromarray(data.chelsea()).save(cat)
    with pytest.raises(gr.Error, match="Plain framing"):
        handlers.use_photo(ctx, "tiny-collage", str(cat), 1, False)
    value, shown, faces, framed_photo = handlers.use_photo(ctx, "tiny-collage", str(cat), 1, True)
    assert shown["label"] == "Network input: centre crop" and faces == []
    assert value["background"].shape == (SIZE, SIZE, 3) and framed_photo.aligned.recipe == "center"
    with pytest.raises(gr.Error, match="No photo was given"):
        handlers.use_photo(ctx, "tiny-collage", None, 1, False)
    with pytest.raises(gr.Error, match="not a picture"):
        (tmp_path / "notes.png").write_text("not a picture")
        handlers.use_photo(ctx, "tiny-collage", str(tmp_path / "notes.png"), 1, False)


def test_exif_rotated_photo_arrives_upright(ctx, tmp_path):
    """A phone portrait stored sideways with EXIF orientation 6 is turned upright before
    framing: the face is found and the kept photo has the upright size."""
    from skimage import data

    upright = Image.fromarray(data.astronaut()[:400])  # 512 wide, 400 high
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    path = tmp_path / "sideways.jpg"
    upright.transpose(Image.Transpose.ROTATE_90).save(path, quality=95, exif=exif)
    assert Image.open(path).size == (400, 512)
    _, shown, faces, framed_photo = handlers.use_photo(ctx, "tiny-collage", str(path), 1, False)
    assert framed_photo.photo.size == (512, 400) and len(faces) >= 1
    diff = np.abs(np.asarray(framed_photo.photo, np.int16) - np.asarray(upright, np.int16))
    assert diff.mean() < 4  # the JPEG's loss only
    assert shown["label"].startswith("Network input: aligned face")


def test_tab_photo_in_and_out_end_to_end(client, astronaut):
    """Through the app: the real photo uploaded, the network input shown (the aligned face),
    composed, and the result pasted back into the photo in "Download all"."""
    from gradio_client import handle_file

    from core.faces import frame_photo
    from core.images import open_photo
    from core.recipe import read_bundle

    framed_photo = frame_photo(open_photo(astronaut), "ffhq", SIZE)
    expected = np.asarray(framed_photo.aligned.image)
    value, network_input, faces = client.predict(
        "tiny-collage", handle_file(astronaut), 1, False, api_name="/collage_photo_base")
    assert network_input["label"].startswith("Network input: aligned face")  # an update: picture + label
    assert np.array_equal(read_png(network_input["value"])[..., :3], expected)
    assert len(faces) >= 1
    base = {"background": handle_file(value["background"]), "layers": [],
            "composite": handle_file(value["composite"])}
    _, _, result, _ = client.predict("tiny-collage", base, False, 30, NO_PART, NO_PART, NO_PART,
                                     0, 0, 0, 0, 0, 0, api_name="/collage_compose")
    bundle = read_bundle(client.predict(api_name="/collage_download"))
    in_photo, photo = bundle.images["result_in_photo"], np.asarray(framed_photo.photo)
    assert in_photo.shape == photo.shape and np.array_equal(bundle.images["photo"], photo)
    assert np.array_equal(in_photo, np.asarray(framed_photo.paste(read_png(result)[..., :3])))
    outside = outside_frame(framed_photo)
    assert np.array_equal(in_photo[outside], photo[outside])
