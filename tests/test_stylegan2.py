"""StyleGAN2: published layouts, equivalence with the authors' outputs, split synthesis."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from helpers import SG2_REF, TINY_SG2_CONFIG
from core.errors import UserError
from core.models import load_model
from core.models.stylegan2 import (StyleGAN2Generator, load_stylegan2, mix_styles, panda_layer,
                                   sam_layer, truncate)
from core.ops import upfirdn2d

TOL = 1e-4


@pytest.fixture(scope="module")
def G() -> StyleGAN2Generator:
    return load_stylegan2(SG2_REF / "tiny.pt", **TINY_SG2_CONFIG)


@pytest.mark.parametrize("name", ["ffhq-1024", "car-512", "church-256", "cm1-256"])
def test_state_dict_matches_published_manifest(name):
    manifest = json.loads((SG2_REF / f"manifest-{name}.json").read_text())
    with torch.device("meta"):
        G = StyleGAN2Generator(**manifest["config"])
    ours = {k: list(v.shape) for k, v in G.state_dict().items()}
    assert ours == manifest["state_dict"]


def test_outputs_match_reference(G, sg2_io):
    io = sg2_io
    with torch.inference_mode():
        w = G.mapping(io["z"])
        wp = G.w_plus(w)
        assert (wp - io["w_plus"]).abs().max() <= TOL
        assert (G.synthesis(wp) - io["image"]).abs().max() <= TOL
        w2 = G.mapping(io["z2"])
        mixed = mix_styles(w, w2, io["mix_inject_index"], G.n_latent)
        assert (G.synthesis(mixed) - io["mix_image"]).abs().max() <= TOL
        wt = truncate(w, io["truncation_latent"], io["truncation"])
        assert (G.synthesis(G.w_plus(wt)) - io["trunc_image"]).abs().max() <= TOL
        assert (G.synthesis(io["input_w_plus"]) - io["from_w_plus_image"]).abs().max() <= TOL
        assert (G.synthesis(wp, noise=io["noise"]) - io["custom_noise_image"]).abs().max() <= TOL


def test_batch_of_one_path_matches_reference(G, sg2_io):
    """Batches of one fold the style into the weight: a different code path, same result."""
    with torch.inference_mode():
        wp = G.w_plus(G.mapping(sg2_io["z"]))
        for i in range(2):
            assert (G.synthesis(wp[i:i + 1]) - sg2_io["image"][i:i + 1]).abs().max() <= TOL
            assert (G.synthesis(wp[i:i + 1], noise=sg2_io["noise"])
                    - sg2_io["custom_noise_image"][i:i + 1]).abs().max() <= TOL


@pytest.mark.parametrize("per_sample", [set(), {"cpu"}])
def test_batched_paths_match_reference(G, sg2_io, monkeypatch, per_sample):
    """Both batch strategies (activation scaling as on GPUs, per-sample weights as on CPUs)."""
    import core.ops
    monkeypatch.setattr(core.ops, "PER_SAMPLE_DEVICES", per_sample)
    with torch.inference_mode():
        wp = G.w_plus(G.mapping(sg2_io["z"]))
        assert (G.synthesis(wp) - sg2_io["image"]).abs().max() <= TOL


def test_every_layer_feature_and_skip_matches_reference(G, sg2_io):
    feats = sg2_io["layer_features"]
    with torch.inference_mode():
        wp = G.w_plus(G.mapping(sg2_io["z"]))
        for k in range(G.num_layers):
            state = G.synthesis_until(wp, k)
            name = "conv1" if k == 0 else f"convs.{k - 1}"
            assert (state.features - feats[name]).abs().max() <= TOL, name
            assert state.features.shape[-1] == G.layer_resolution(k)
            assert state.features.shape[1] == G.layer_channels(k)
            if k % 2 == 0:
                rgb = "to_rgb1" if k == 0 else f"to_rgbs.{k // 2 - 1}"
                assert (state.skip - feats[rgb]).abs().max() <= TOL, rgb


def test_forward_with_truncation_uses_latent_avg(G, sg2_io):
    assert G.has_w_avg
    with torch.inference_mode():
        img = G(sg2_io["z"], truncation=0.5)
        w = truncate(G.mapping(sg2_io["z"]), G.w_avg[None], 0.5)
        assert torch.allclose(img, G.synthesis(G.w_plus(w)), atol=1e-6)


def test_split_synthesis_resumes_exactly(G, sg2_io):
    with torch.inference_mode():
        wp = G.w_plus(G.mapping(sg2_io["z"]))
        full = G.synthesis(wp)
        for k in range(G.num_layers - 1):
            state = G.synthesis_until(wp, k)
            assert torch.equal(G.synthesis_from(state, wp), full), k


def _manual_synthesis(G, wp, edit_layer, delta):
    """Independent layer-by-layer run over the published module names (rosinality's loop),
    adding `delta` to the output of `convs[edit_layer - 1]` after its ToRGB."""
    noise = [getattr(G.noises, f"noise_{i}") for i in range(G.num_layers)]
    x = G.input.input.expand(wp.shape[0], -1, -1, -1)
    x = G.conv1(x, wp[:, 0], noise[0])
    skip = G.to_rgb1(x, wp[:, 1], None)
    i = 1
    for c1, c2, n1, n2, to_rgb in zip(G.convs[::2], G.convs[1::2], noise[1::2], noise[2::2], G.to_rgbs):
        x = c1(x, wp[:, i], n1)
        if i == edit_layer:
            x = x + delta
        x = c2(x, wp[:, i + 1], n2)
        skip = to_rgb(x, wp[:, i + 2], skip)
        if i + 1 == edit_layer:
            x = x + delta
        i += 2
    return skip


@pytest.mark.parametrize("layer", [3, 4, 5])
def test_masked_delta_matches_independent_computation(G, sg2_io, layer):
    g = torch.Generator().manual_seed(layer)
    with torch.inference_mode():
        wp = G.w_plus(G.mapping(sg2_io["z"]))
        res, ch = G.layer_resolution(layer), G.layer_channels(layer)
        delta = torch.randn(2, ch, res, res, generator=g)
        mask = (torch.rand(1, 1, res, res, generator=g) > 0.5).float()
        ours = G.synthesis(wp, deltas={layer: (delta, mask)})
        expected = _manual_synthesis(G, wp, layer, delta * mask)
        assert (ours - expected).abs().max() <= 1e-5
        assert (ours - G.synthesis(wp)).abs().max() > 1e-3  # the edit does something
        # the same edit applied by editing a resumed state's features
        state = G.synthesis_until(wp, layer)
        resumed = G.synthesis_from(state.with_features(state.features + delta * mask), wp)
        assert (resumed - ours).abs().max() <= 1e-5


def test_delta_after_torgb_leaves_running_skip_unchanged(G, sg2_io):
    """SAM adds dF_k after layer k's ToRGB: the skip image up to k must not move."""
    with torch.inference_mode():
        wp = G.w_plus(G.mapping(sg2_io["z"]))
        k = sam_layer("F4")
        delta = torch.ones(2, G.layer_channels(k), 16, 16)
        a = G.synthesis_until(wp, k)
        b = G.synthesis_until(wp, k, deltas={k: delta})
        assert torch.equal(a.skip, b.skip)
        assert torch.allclose(b.features, a.features + delta)


def test_zero_mask_or_zero_delta_changes_nothing(G, sg2_io):
    with torch.inference_mode():
        wp = G.w_plus(G.mapping(sg2_io["z"]))
        base = G.synthesis(wp)
        d = torch.randn(2, 16, 16, 16)
        assert torch.equal(G.synthesis(wp, deltas={4: (d, torch.zeros(1, 1, 16, 16))}), base)
        assert torch.equal(G.synthesis(wp, deltas={4: torch.zeros_like(d)}), base)


def test_deltas_outside_the_resumed_range_are_rejected(G, sg2_io):
    with torch.inference_mode():
        wp = G.w_plus(G.mapping(sg2_io["z"]))
        state = G.synthesis_until(wp, 4)
        with pytest.raises(ValueError):
            G.synthesis_from(state, wp, deltas={2: torch.zeros(1)})
        with pytest.raises(ValueError):
            G.synthesis_until(wp, 2, deltas={4: torch.zeros(1)})
        with pytest.raises(ValueError):
            G.synthesis_until(wp, G.num_layers)
        with pytest.raises(ValueError):
            G.synthesis(wp[:, :3])


def test_noise_is_fixed_unless_asked(G, sg2_io):
    with torch.inference_mode():
        wp = G.w_plus(G.mapping(sg2_io["z"]))
        assert torch.equal(G.synthesis(wp), G.synthesis(wp))
        n1, n2 = G.random_noise(2, seed=1), G.random_noise(2, seed=1)
        assert all(torch.equal(a, b) for a, b in zip(n1, n2))
        assert not torch.allclose(G.synthesis(wp, noise=n1), G.synthesis(wp))


def test_mean_w_is_deterministic_and_cached(G):
    a = G.mean_w(512, seed=3)
    assert a.shape == (1, G.style_dim)
    assert torch.equal(a, G.mean_w(512, seed=3))
    assert not torch.equal(a, G.mean_w(512, seed=4))


def test_layer_name_mappings():
    assert [sam_layer(n) for n in ("F4", "F6", "F8", "F10")] == [4, 6, 8, 10]
    assert [panda_layer(l) for l in (5, 6, 7, 8)] == [4, 5, 6, 7]
    with torch.device("meta"):
        G = StyleGAN2Generator(1024)
    # PandA: l5 -> 16 px, l6/l7 -> 32 px, l8 -> 64 px; SAM: F4..F10 -> 16..128 px
    assert [G.layer_resolution(panda_layer(l)) for l in (5, 6, 7, 8)] == [16, 32, 32, 64]
    assert [G.layer_resolution(sam_layer(f"F{k}")) for k in (4, 6, 8, 10)] == [16, 32, 64, 128]
    assert [G.layer_channels(sam_layer(f"F{k}")) for k in (4, 6, 8, 10)] == [512, 512, 512, 256]
    assert G.n_latent == 18 and G.num_layers == 17
    with pytest.raises(ValueError):
        sam_layer("W+")


def test_gradients_flow_to_w_plus_and_deltas(G, sg2_io):
    """The optimisers (SAM, refinement) need d image / d (w+, dF)."""
    with torch.no_grad():
        wp0 = G.w_plus(G.mapping(sg2_io["z"][:1])).clone()
    wp = wp0.requires_grad_(True)
    delta = torch.zeros(1, 16, 16, 16, requires_grad=True)
    G.synthesis(wp, deltas={4: delta}).square().mean().backward()
    assert wp.grad is not None and wp.grad.abs().sum() > 0
    assert delta.grad is not None and delta.grad.abs().sum() > 0


def test_inference_then_autograd_share_the_weight_cache(G, sg2_io):
    with torch.inference_mode():
        G.synthesis(G.w_plus(G.mapping(sg2_io["z"])))
    wp = G.w_plus(G.mapping(sg2_io["z"])).detach().requires_grad_(True)
    G.synthesis(wp).mean().backward()  # would fail if cached weights were inference tensors
    assert wp.grad is not None


def test_loading_new_weights_invalidates_cached_scaled_weights(sg2_io):
    G = load_stylegan2(SG2_REF / "tiny.pt", **TINY_SG2_CONFIG)
    with torch.inference_mode():
        wp = G.w_plus(G.mapping(sg2_io["z"]))
        before = G.synthesis(wp)
        state = {k: v * 1.5 if k.endswith("conv.weight") else v for k, v in G.state_dict().items()}
        G.load_state_dict(state)
        # demodulation cancels a uniform scale on demodulated convs; ToRGB weights are not
        # demodulated, so the image must change once the cache is refreshed
        assert not torch.allclose(G.synthesis(wp), before, atol=1e-4)


def test_checkpoint_without_latent_avg_uses_mean_w(tmp_path):
    ckpt = torch.load(SG2_REF / "tiny.pt", weights_only=True)
    path = tmp_path / "no-avg.pt"
    torch.save({"g_ema": ckpt["g_ema"]}, path)
    G = load_stylegan2(path, **TINY_SG2_CONFIG)
    assert not G.has_w_avg
    assert torch.equal(G.truncation_center(), G.mean_w())


def test_wrong_config_or_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not match"):
        load_model("stylegan2", SG2_REF / "tiny.pt", {**TINY_SG2_CONFIG, "channel_max": 32})
    torch.save({"not_g_ema": {}}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not a rosinality StyleGAN2 checkpoint"):
        load_model("stylegan2", tmp_path / "other.pt", TINY_SG2_CONFIG)
    with pytest.raises(UserError, match="unknown keys \\['content'\\]"):  # registry mistake
        load_model("stylegan2", SG2_REF / "tiny.pt", {**TINY_SG2_CONFIG, "content": [32, 24]})
    (tmp_path / "broken.pt").write_bytes((SG2_REF / "tiny.pt").read_bytes()[:5000])
    with pytest.raises(UserError, match="corrupt"):
        load_model("stylegan2", tmp_path / "broken.pt", TINY_SG2_CONFIG)
    with pytest.raises(UserError, match="cannot load"):
        load_model("no-such-arch", SG2_REF / "tiny.pt", {})


def _naive_upfirdn2d(x, k, up, down, pad):
    """Textbook definition: zero-insert, pad, correlate with the flipped kernel, decimate."""
    b, c, h, w = x.shape
    u = torch.zeros(b, c, h * up, w * up, dtype=x.dtype)
    u[:, :, ::up, ::up] = x
    u = F.pad(u, (pad[0], pad[1], pad[0], pad[1]))
    kf = torch.flip(k, (0, 1))[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(u, kf, groups=c)[:, :, ::down, ::down]


@pytest.mark.parametrize("up,down,pad", [(2, 1, (2, 1)), (1, 1, (1, 1)), (1, 2, (1, 1)),
                                         (1, 2, (2, 2)), (2, 1, (1, 2))])
def test_upfirdn2d_matches_textbook_definition(up, down, pad):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 9, 9, generator=g, dtype=torch.float64)
    k = torch.rand(4, 4, generator=g, dtype=torch.float64)  # asymmetric on purpose
    assert torch.allclose(upfirdn2d(x, k, up, down, pad), _naive_upfirdn2d(x, k, up, down, pad))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fp16_on_cuda_matches_fp32(sg2_io):
    G = load_stylegan2(SG2_REF / "tiny.pt", **TINY_SG2_CONFIG).cuda()
    with torch.inference_mode():
        z = sg2_io["z"].cuda()
        ref = G(z)
        half = G.half()(z.half()).float()
    assert (half - ref).abs().max() < 2e-2
