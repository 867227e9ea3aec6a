"""SAM engine (core/inversion.py): spaces, masks, losses, schedule, optimisation, edits."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from core.lpips import CachedTargetLPIPS, get_lpips
from core.models.stylegan2 import StyleGAN2Generator
from core.segments import segment_means, superpixels
from core import inversion as S

SAM_CONFIG = {"size": 256, "style_dim": 32, "n_mlp": 2, "channel_multiplier": 2, "channel_max": 8}


@pytest.fixture(scope="module")
def G() -> StyleGAN2Generator:
    torch.manual_seed(3)
    return StyleGAN2Generator(**SAM_CONFIG).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def lp():
    return get_lpips("vgg")


@pytest.fixture(scope="module")
def lp_fast():
    """AlexNet LPIPS: the same code path as VGG at a fraction of the cost, for the tests that
    only need the optimisation to behave (the loss-term test checks VGG itself)."""
    return get_lpips("alex")


def target_of(G: StyleGAN2Generator, seed: int = 5) -> torch.Tensor:
    """A GAN picture with a flat coloured square pasted in: partly out of the GAN's range."""
    with torch.no_grad():
        img = G(torch.randn(1, G.style_dim, generator=torch.Generator().manual_seed(seed)))
    img = F.interpolate(img.clamp(-1, 1), size=(S.LOSS_SIZE, S.LOSS_SIZE), mode="area")
    img[:, 0, 96:160, 96:160], img[:, 1:, 96:160, 96:160] = 0.9, -0.8
    return img


# ---- the learning-rate schedule --------------------------------------------------------------
def test_lr_schedule_is_nvidias_projector_ramp():
    total = 1001
    lrs = [S.projector_lr(i, total) for i in range(total)]
    assert lrs[0] == 0.0  # warm-up starts at zero
    t = 25 / total
    assert lrs[25] == pytest.approx(0.05 * t / 0.05)
    assert lrs[51] == pytest.approx(0.05) and lrs[700] == pytest.approx(0.05)
    t = 1000 / total
    assert lrs[1000] == pytest.approx(0.05 * (0.5 - 0.5 * math.cos(math.pi * (1 - t) / 0.25)))
    assert 1e-6 < lrs[1000] < 3e-6
    tail = lrs[760:]
    assert all(a >= b for a, b in zip(tail, tail[1:]))


# ---- segment -> space rule -------------------------------------------------------------------
def test_assign_spaces_takes_the_most_editable_passing_space():
    segments = torch.tensor([[0, 0, 1, 1], [2, 2, 3, 3]])
    means = {  # per segment: F10 F8 F6 F4 W+ mean errors
        "F10": [0.1, 0.1, 0.5, 0.1], "F8": [0.1, 0.1, 0.5, 0.3], "F6": [0.1, 0.3, 0.5, 0.3],
        "F4": [0.3, 0.3, 0.5, 0.3], "W+": [0.2, 0.3, 0.5, 0.3]}
    errors = {k: torch.tensor(v)[segments] for k, v in means.items()}
    got = S.assign_spaces(segments, errors, tau=0.2)
    # seg 0: W+ passes (0.2 <= tau, inclusive) although F4 fails -> W+ (the last pass wins)
    # seg 1: F6 fails, F8 passes -> F8; seg 2: nothing passes -> F10; seg 3: only F10 -> F10
    expected = torch.tensor([S.SPACES.index(n) for n in ("W+", "F8", "F10", "F10")])[segments]
    assert torch.equal(got, expected)


def test_segment_means_and_superpixels():
    labels = torch.tensor([[0, 1], [1, 1]])
    assert segment_means(torch.tensor([[1.0, 2.0], [4.0, 6.0]]), labels).tolist() == [1.0, 4.0]
    img = -torch.ones(1, 3, 64, 64)
    img[:, 0, :, 32:] = 1  # red right half
    seg = superpixels(img, count=2, compactness=0.0)
    assert torch.equal(seg, superpixels(img, count=2, compactness=0.0))  # deterministic
    assert seg[:, :32].unique().numel() == 1 and seg[:, 32:].unique().numel() == 1
    assert seg[0, 0] != seg[0, 63]
    assert superpixels(torch.rand(1, 3, 50, 70) * 2 - 1, count=12).max() < 12


# ---- masks -----------------------------------------------------------------------------------
def test_feature_masks_are_lanczos_soft_and_partition(G):
    layer_map = torch.zeros(256, 256, dtype=torch.long)
    layer_map[:, 128:] = S.SPACES.index("F10")
    layer_map[:64, :64] = S.SPACES.index("F4")
    masks = S.feature_masks(layer_map, G)
    assert {k: m.shape[-1] for k, m in masks.items()} == {4: 16, 6: 32, 8: 64, 10: 128}
    assert masks[6].abs().sum() == 0 and masks[8].abs().sum() == 0
    m10 = masks[10][0, 0]
    assert m10.min() >= 0 and m10.max() <= 1
    assert torch.all(m10[:, 70:] == 1) and torch.all(m10[:, :58] == 0)
    edge = m10[:, 63:65]
    assert ((edge > 0) & (edge < 1)).any()  # soft, not a hard step
    pil = Image.fromarray((layer_map == 4).numpy().astype(np.float32), "F").resize((128, 128), Image.LANCZOS)
    assert np.allclose(m10.numpy(), np.clip(np.asarray(pil), 0, 1))  # PIL's filter, clipped
    m4 = masks[4][0, 0]  # 256 -> 16 px: the 64 px corner becomes about 4 x 4 cells, blurred
    assert m4[:3, :3].min() > 0.9 and m4[8:, 8:].max() < 0.05 and m4.max() <= 1


def test_frame_for_letterboxed_cars():
    frame = S.Frame.for_content(512, (512, 384))
    assert (frame.top, frame.bottom) == (32, 224)  # the authors' rows 32:-32 at 256 px
    assert S.Frame.for_content(1024, None) == S.Frame()


# ---- regularisers and losses -----------------------------------------------------------------
def test_mvg_prior_and_distance_match_a_hand_computation(G):
    prior = S.mvg_prior(G, n=S.MVG_SAMPLES)
    assert S.mvg_prior(G) is prior  # computed once per generator
    z = torch.randn(S.MVG_SAMPLES, G.style_dim, generator=torch.Generator().manual_seed(0))
    w = G.mapping(z).double()
    v = torch.where(w >= 0, w, 5 * w).numpy()
    mean = w.mean(0).numpy()
    mean = np.where(mean >= 0, mean, 5 * mean)
    inv = np.linalg.inv(np.cov(v, rowvar=False) + 1e-8 * np.eye(G.style_dim))
    assert np.allclose(prior.mean.numpy(), mean) and np.allclose(prior.inv_cov.numpy(), inv, rtol=1e-6)
    wp = torch.randn(2, G.n_latent, G.style_dim)
    vp = torch.where(wp >= 0, wp, 5 * wp).double().numpy() - mean
    hand = [sum(vp[b, n] @ inv @ vp[b, n] for n in range(G.n_latent)) for b in range(2)]
    assert np.allclose(S.mvg_distance(wp, prior).numpy(), hand, rtol=1e-6)


def test_spread_is_a_sum_of_plain_norms():
    w = torch.randn(2, 5, 8)
    hand = [sum(float(torch.linalg.norm(w[b, n] - w[b, 0])) for n in range(1, 5)) for b in range(2)]
    assert S.spread(w).tolist() == pytest.approx(hand, rel=1e-6)


def test_cached_target_lpips_equals_the_lpips_package(lp):
    import lpips

    x, y = torch.rand(3, 3, 64, 64) * 2 - 1, torch.rand(1, 3, 64, 64) * 2 - 1
    cached = CachedTargetLPIPS(lp, y)
    assert torch.allclose(cached(x), lp(x, y.expand_as(x)).flatten(), atol=1e-6)
    spatial = lpips.LPIPS(net="vgg", pnet_rand=True, spatial=True, verbose=False).eval()
    cached = CachedTargetLPIPS(spatial, y)
    assert torch.allclose(cached(x, spatial=True), spatial(x, y.expand_as(x)), atol=1e-6)


def test_every_loss_term_matches_a_hand_computation(G, lp):
    target = target_of(G)
    masks = S.stack_masks([S.full_masks(G, "F8"), S.full_masks(G, "F4")])
    w0 = G.w_plus(G.mean_w()).expand(2, -1, -1) + 0.1 * torch.randn(2, G.n_latent, G.style_dim)
    run = S.Inversion(G, target, masks, w0, lp, steps=10)
    with torch.no_grad():
        for d in run.deltas.values():
            d.normal_()
        image = S.render(G, run.w, run.deltas, run.masks)
        terms = run.losses(image)
    rec = F.interpolate(image, size=(256, 256), mode="area").clamp(-1, 1)
    for b in range(2):
        assert terms["mse"][b] == pytest.approx(float(F.mse_loss(rec[b:b + 1], target)), rel=1e-5)
        assert terms["lpips"][b] == pytest.approx(float(lp(rec[b:b + 1], target).mean()), rel=1e-4)
        feat = 5 * sum(float(F.mse_loss(d[b].detach(), torch.zeros_like(d[b]))) for d in run.deltas.values())
        assert terms["features"][b] == pytest.approx(feat, rel=1e-5)
        assert terms["spread"][b] == pytest.approx(1e-3 * float(S.spread(run.w[b:b + 1])), rel=1e-5)
        assert terms["mvg"][b] == pytest.approx(1e-8 * float(S.mvg_distance(run.w[b:b + 1], run.prior)), rel=1e-5)


# ---- where the residuals go ------------------------------------------------------------------
def independent_synthesis(G: StyleGAN2Generator, w: torch.Tensor, residuals: dict[int, torch.Tensor]) -> torch.Tensor:
    """rosinality's loop written out by hand, adding a residual to layer k's output after
    that resolution's ToRGB has read it."""
    noise = G.noise_buffers()
    x = G.input(w.shape[0])
    x = G.conv1(x, w[:, 0], noise[0])
    skip = G.to_rgb1(x, w[:, 1], None)
    for j, to_rgb in enumerate(G.to_rgbs):
        up, conv = G.convs[2 * j], G.convs[2 * j + 1]
        x = up(x, w[:, 2 * j + 1], noise[2 * j + 1])
        x = conv(x, w[:, 2 * j + 2], noise[2 * j + 2])
        skip = to_rgb(x, w[:, 2 * j + 3], skip)
        k = 2 * j + 2  # the layer index of `conv`: convs[2j+1] is layer 2j+2
        if k in residuals:
            x = x + residuals[k]
    return skip


def test_residuals_are_added_after_each_spaces_torgb(G):
    torch.manual_seed(0)
    w = G.w_plus(G.mean_w()) + 0.2 * torch.randn(1, G.n_latent, G.style_dim)
    masks = S.feature_masks(torch.randint(0, 5, (256, 256)), G)
    deltas = {k: torch.randn(1, G.layer_channels(k), *m.shape[-2:]) for k, m in masks.items()}
    with torch.no_grad():
        ours = S.render(G, w, deltas, masks)
        hand = independent_synthesis(G, w, {k: deltas[k] * masks[k] for k in deltas})
        plain = G.synthesis(w)
        zero = S.render(G, w, {k: torch.zeros_like(d) for k, d in deltas.items()}, masks)
    assert torch.allclose(ours, hand, atol=1e-5)
    assert not torch.allclose(ours, plain, atol=1e-3)
    assert torch.equal(zero, plain)  # zero residuals == the plain W+ synthesis
    assert [G.layer_channels(k) for k in (4, 6, 8, 10)] == [8, 8, 8, 8]


# ---- the optimisation ------------------------------------------------------------------------
def test_inversion_lowers_the_loss_and_beats_w_plus_only(G, lp_fast):
    target = target_of(G)
    layer_map = torch.full((256, 256), S.SPACES.index("F10"))
    masks = S.feature_masks(layer_map, G)
    batch = S.stack_masks([masks, {k: torch.zeros_like(m) for k, m in masks.items()}])
    run = S.Inversion(G, target, batch, G.w_plus(G.mean_w()).expand(2, -1, -1), lp_fast, steps=12)
    while not run.done:
        run.step()
    first, last = run.history[0], run.history[-1]
    assert last[0] < 0.8 * first[0] and last[1] < first[1]
    with torch.no_grad():
        rec = S.for_loss(run.render(), run.frame)
        err = ((rec - target) ** 2).flatten(1).mean(1)
    assert err[0] < 0.8 * err[1]  # the F10 residual reaches what W+ alone cannot
    codes = run.codes(1)
    assert all(d.abs().max() == 0 for d in codes.deltas.values())  # no mask, no residual


def test_bfloat16_generator_pass_inverts_like_float32(G, lp_fast):
    """The tab's "Reduced precision" option runs the generator under bfloat16 autocast on a GPU
    (CPU autocast uses the same number format): it must reach the float32 run's (the default,
    the authors' precision) reconstruction, with float32 codes."""
    target = target_of(G, seed=7)
    masks = S.feature_masks(torch.full((256, 256), S.SPACES.index("F8")), G)
    runs = {}
    for dtype in (None, torch.bfloat16):
        run = S.Inversion(G, target, masks, G.w_plus(G.mean_w()), lp_fast, steps=10, autocast=dtype)
        while not run.done:
            run.step()
        runs[dtype] = run
    full, half = runs[None], runs[torch.bfloat16]
    assert half.w.dtype == torch.float32 and half.render().dtype == torch.float32
    assert half.history[-1][0] < 0.8 * half.history[0][0]
    assert abs(half.history[-1][0] - full.history[-1][0]) < 0.05 * full.history[-1][0]
    with torch.no_grad():
        err = {run: ((S.for_loss(run.render(), run.frame) - target) ** 2).mean() for run in (full, half)}
        assert err[half] < 1.05 * err[full]  # paths differ a little (Adam), the result does not
        rounded = S.for_loss(half.render(), half.frame)
        half.autocast = None  # the same codes in float32: bfloat16's own rounding is small
        assert (rounded - S.for_loss(half.render(), half.frame)).abs().mean() < 0.01
    assert S.optimisation_dtype(torch.device("cpu"), reduced=True) is None  # the CPU stays float32
    assert not half.diverged
    with torch.no_grad():
        half.deltas[8][0, 0, 0, 0] = float("nan")
    assert half.diverged


def test_samples_of_a_batch_are_independent_inversions(G, lp_fast):
    target = target_of(G, seed=9)
    masks = S.full_masks(G, "F6")
    other = S.full_masks(G, "F10")
    w0 = G.w_plus(G.mean_w())
    alone = S.Inversion(G, target, masks, w0, lp_fast, steps=4)
    pair = S.Inversion(G, target, S.stack_masks([masks, other]), w0.expand(2, -1, -1), lp_fast, steps=4)
    for _ in range(4):
        alone.step()
        pair.step()
    assert torch.allclose(alone.w, pair.w[:1], atol=1e-4)
    # Adam divides by the gradient's size: where it is ~0, float noise moves a few elements
    # Adam divides by the gradient's size: where it is ~0, float noise (batch 1 vs 2 kernels)
    # moves single elements by up to lr; the tensors as a whole agree
    diff = (alone.deltas[6] - pair.deltas[6][:1]).norm() / alone.deltas[6].norm()
    assert diff < 0.05
    assert [h[0] for h in alone.history] == pytest.approx([h[0] for h in pair.history], rel=1e-4)


def test_estimated_error_maps_cover_the_loss_frame(G, lp_fast):
    frame = S.Frame(32, 224)
    target = frame.crop(target_of(G))
    errors = S.estimate_errors(G, target, G.w_plus(G.mean_w()), lp_fast, steps=2, frame=frame)
    assert list(errors) == list(S.SPACES)
    assert all(e.shape == (192, 256) and e.min() >= 0 for e in errors.values())


# ---- editing ---------------------------------------------------------------------------------
def inverted_codes(G: StyleGAN2Generator) -> S.Codes:
    layer_map = torch.zeros(256, 256, dtype=torch.long)
    layer_map[:128, :128] = S.SPACES.index("F4")
    layer_map[128:, 128:] = S.SPACES.index("F8")
    layer_map[:128, 128:] = S.SPACES.index("F10")
    torch.manual_seed(1)
    masks = S.feature_masks(layer_map, G)
    return S.Codes(G.w_plus(G.mean_w()) + 0.3 * torch.randn(1, G.n_latent, G.style_dim),
                   {k: torch.randn(1, G.layer_channels(k), *m.shape[-2:]) for k, m in masks.items()}, masks)


def test_edit_at_strength_zero_is_the_reconstruction(G):
    codes = inverted_codes(G)
    rec, feats = S.inverted_features(G, codes)
    assert torch.allclose(rec, S.render(G, codes.w_plus, codes.deltas, codes.masks), atol=1e-6)
    direction = torch.randn(1, G.n_latent, G.style_dim)
    assert torch.allclose(S.edit(G, codes, feats, direction, 0.0), rec, atol=1e-5)
    assert not torch.allclose(S.edit(G, codes, feats, direction, 2.0), rec, atol=1e-2)


def test_edits_keep_inverted_features_inside_their_masks(G):
    codes = inverted_codes(G)
    _, feats = S.inverted_features(G, codes)
    seen: dict[int, torch.Tensor] = {}
    hooks = [G._conv(k + 1).register_forward_pre_hook(lambda m, args, k=k: seen.__setitem__(k, args[0]))
             for k in (4, 6, 8, 10)]
    try:
        S.edit(G, codes, feats, torch.randn(1, G.n_latent, G.style_dim), 3.0)
    finally:
        for h in hooks:
            h.remove()
    for k in (4, 8, 10):
        inside = codes.masks[k][0, 0] == 1
        assert torch.allclose(seen[k][0][:, inside], feats[k][0][:, inside], atol=1e-6)
        outside = codes.masks[k][0, 0] == 0
        assert not torch.allclose(seen[k][0][:, outside], feats[k][0][:, outside], atol=1e-3)
