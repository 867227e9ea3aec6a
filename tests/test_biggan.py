"""BigGAN-deep (pytorch-pretrained-BigGAN layout): published layouts, the port's numerics,
spectral-norm folding, spatial class maps (sCBN) and feature hooks."""
from __future__ import annotations

import copy
import functools
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from helpers import REFERENCE, load_reference
from core.checkpoints import write_safetensors
from core.errors import UserError
from core.models import load_model
from core.models.biggan import (PUBLISHED_CONFIGS, BigGANDeep, ConditionalBatchNorm, GenBlock,
                                SelfAttn, SNConv2d, SNLinear, _SpectralNormed, build_biggan,
                                load_biggan, truncated_noise)

BG_REF = REFERENCE / "biggan"
TOL = 1e-4
CASES = [("image_t1", "class_vector", 1.0), ("image_t0.4", "class_vector", 0.4),
         ("image_t0.37", "class_vector", 0.37), ("image_mixed_t0.5", "mixed_class_vector", 0.5)]


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a.double() - b.double()).abs().max())


@pytest.fixture(scope="module")
def io() -> dict:
    return load_reference(BG_REF / "tiny-io.pt")


@pytest.fixture(scope="module")
def tiny_config() -> dict:
    return json.loads((BG_REF / "tiny-config.json").read_text())


@pytest.fixture(scope="module")
def G() -> BigGANDeep:
    return load_biggan(BG_REF / "tiny-config.json", BG_REF / "tiny-pytorch_model.bin")


@pytest.fixture()
def published_dir(tmp_path: Path) -> Path:
    """The published file pair, as `from_pretrained` expects it in a local directory."""
    shutil.copy(BG_REF / "tiny-config.json", tmp_path / "config.json")
    shutil.copy(BG_REF / "tiny-pytorch_model.bin", tmp_path / "pytorch_model.bin")
    return tmp_path


def one_hot(index: list[int], n: int = 10) -> torch.Tensor:
    return F.one_hot(torch.tensor(index), n).float()


def two_region_map(a: int, b: int, batch: int, size: int = 8, n: int = 10) -> torch.Tensor:
    """Class a on the left half, class b on the right half."""
    m = torch.zeros(batch, n, size, size)
    m[:, a, :, : size // 2] = 1
    m[:, b, :, size // 2:] = 1
    return m


def record(G: BigGANDeep, *args, **kwargs) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    feats: dict[int, torch.Tensor] = {}
    hook = kwargs.pop("feature_hook", None)

    def rec(point: int, h: torch.Tensor) -> torch.Tensor:
        out = h if hook is None else hook(point, h)
        out = h if out is None else out
        feats[point] = out.clone()
        return out

    return G(*args, feature_hook=rec, **kwargs), feats


# ---- layouts --------------------------------------------------------------------------------
@pytest.mark.parametrize("res", [128, 256, 512])
def test_published_layouts_match_manifests(res):
    manifest = json.loads((BG_REF / f"manifest-biggan-deep-{res}.json").read_text())
    config = PUBLISHED_CONFIGS[f"biggan-deep-{res}"]
    assert config == manifest["config"]
    with torch.device("meta"):
        model = BigGANDeep(**config)
    found = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert found == manifest["state_dict"]
    # the folded spectral-norm weights exist but are not part of the checkpoint
    folded = [n for n, _ in model.named_buffers() if n.endswith(".weight")]
    assert folded and not set(folded) & set(found)
    # the layer structure: one GenBlock per config layer, SelfAttn before layer 8
    layers = model.generator.layers
    assert len(layers) == len(config["layers"]) + 1
    assert isinstance(layers[config["attention_layer_position"]], SelfAttn)
    blocks = [m for m in layers if isinstance(m, GenBlock)]
    assert [m.up_sample for m in blocks] == [up for up, _, _ in config["layers"]]
    assert len(model.condition_points()) == len(blocks) + 1
    assert len(model.feature_points()) == len(layers) + 1
    assert model.feature_points()[-1][1] == model.condition_points()[-1][1] == res
    assert model.feature_points()[config["attention_layer_position"] + 1][0].startswith("attention (64")


# ---- the port's numerics --------------------------------------------------------------------
@pytest.mark.parametrize("key,classes,truncation", CASES)
def test_reference_outputs(G, io, key, classes, truncation):
    with torch.no_grad():
        out = G(io["z"], io[classes], truncation)
    assert max_err(out, io[key]) <= TOL


def test_load_biggan_reads_the_published_pair(published_dir, io):
    model = load_biggan(published_dir / "config.json", published_dir / "pytorch_model.bin")
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        assert max_err(model(io["z"], io["class_vector"], 1.0), io["image_t1"]) <= TOL


def test_load_model_registry_entry(published_dir, io, tiny_config):
    model = load_model("biggan-deep", published_dir / "pytorch_model.bin", tiny_config)
    assert isinstance(model, BigGANDeep)
    with torch.no_grad():
        for key, classes, t in CASES:
            assert max_err(model(io["z"], io[classes], t), io[key]) <= TOL, key


def test_safetensors_copy_loads_the_same(tmp_path, G, io, tiny_config):
    """Our safetensors copy wraps the bare state dict as {"state_dict": ...}."""
    state = torch.load(BG_REF / "tiny-pytorch_model.bin", weights_only=True)
    path = write_safetensors({"state_dict": state}, tmp_path / "tiny.safetensors", keep=("state_dict",))
    model = build_biggan(tiny_config, path)
    # every tensor, the folded spectral-norm weights included, is bit-identical
    mine, ref = ({**dict(m.named_buffers()), **m.state_dict()} for m in (model, G))
    assert mine.keys() == ref.keys() and all(torch.equal(v, ref[k]) for k, v in mine.items())
    with torch.no_grad():
        assert max_err(model(io["z"], io["class_vector"], 0.4), G(io["z"], io["class_vector"], 0.4)) < 1e-6
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "training.pt")
    with pytest.raises(UserError, match="epoch"):
        build_biggan(tiny_config, tmp_path / "training.pt")


def test_loading_errors_are_user_errors(tmp_path, tiny_config):
    state = torch.load(BG_REF / "tiny-pytorch_model.bin", weights_only=True)
    missing = dict(state)
    del missing["generator.layers.3.bn_2.scale.weight_u"]
    torch.save(missing, tmp_path / "missing.bin")
    with pytest.raises(UserError, match="weight_u"):
        load_model("biggan-deep", tmp_path / "missing.bin", tiny_config)
    torch.save(state, tmp_path / "ok.bin")
    with pytest.raises(UserError):  # the 128 px configuration does not fit the tiny file
        load_model("biggan-deep", tmp_path / "ok.bin", PUBLISHED_CONFIGS["biggan-deep-128"])
    with pytest.raises(UserError, match="unknown"):
        load_model("biggan-deep", tmp_path / "ok.bin", {**tiny_config, "size": 32})
    with pytest.raises(UserError, match="output_dim"):
        load_model("biggan-deep", tmp_path / "ok.bin", {**tiny_config, "output_dim": 64})


def test_truncation_statistics_follow_the_port(G):
    """Between two stored statistics the port weights them coef*s[i] + (1-coef)*s[i+1]
    (coef, i = modf(t / step)): the reverse of a linear interpolation (0.37 in tiny-io is a
    midpoint, where both agree, so check the statistics directly)."""
    bn = G.generator.layers[0].bn_1
    means, var = bn.running_means, bn.running_vars
    step = 1.0 / (bn.n_stats - 1)
    for t in (0.405, 0.766, 0.5, 1.0):
        coef, i = math.modf(t / step)
        i = int(i)
        mean, std = bn.statistics(t)
        if coef == 0.0:
            want_m, want_v = means[i], var[i]
        else:
            want_m = coef * means[i] + (1 - coef) * means[i + 1]
            want_v = coef * var[i] + (1 - coef) * var[i + 1]
            linear = (1 - coef) * means[i] + coef * means[i + 1]
            assert max_err(mean, linear) > 1e-3  # the test can tell the two apart
        assert max_err(mean, want_m) < 1e-6 and max_err(std, torch.sqrt(want_v + bn.eps)) < 1e-6
    # every grid value picks its own statistics (in the port, float error makes 0.14 / 0.02 =
    # 7.000000000000001 use those of 0.16, and 0.58 / 0.02 = 28.999999999999996 those of 0.56)
    for k in range(1, bn.n_stats):
        t = round(k * 0.02, 2)  # what a slider with step 0.02 sends
        mean, std = bn.statistics(t)
        assert torch.equal(mean, means[k]) and torch.equal(std, torch.sqrt(var[k] + bn.eps)), t
    for t in (0.14, 0.28, 0.56, 0.58, 0.94):  # the five the port got wrong
        assert max_err(bn.statistics(t)[0], means[round(t * 50) + 1]) > 1e-3


@pytest.mark.parametrize("t", [0.0, -0.1, 1.5, float("nan")])
def test_truncation_out_of_range(G, io, t):
    with pytest.raises(ValueError, match="truncation"):
        G(io["z"], io["class_vector"], t)


def test_truncated_noise_is_the_ports_sample():
    import numpy as np
    from scipy.stats import truncnorm

    z = truncated_noise(3, 16, 0.4, seed=7)
    want = 0.4 * truncnorm.rvs(-2, 2, size=(3, 16), random_state=np.random.RandomState(7)).astype(np.float32)
    assert z.dtype == torch.float32 and z.shape == (3, 16)
    assert torch.equal(z, torch.from_numpy(want))
    assert torch.equal(z, truncated_noise(3, 16, 0.4, seed=7))
    assert not torch.equal(z, truncated_noise(3, 16, 0.4, seed=8))
    assert float(z.abs().max()) <= 0.8


def test_class_indices_and_batch_broadcast(G, io):
    z, y = io["z"], io["class_vector"]
    with torch.no_grad():
        plain = G(z, y, 0.4)
        assert torch.equal(G(z, y.argmax(1), 0.4), plain)
        first = G(z, y[:1], 0.4)
        assert torch.equal(first, G(z, y[:1].expand(3, -1), 0.4))
    with pytest.raises(ValueError):
        G(z, torch.zeros(3, 11), 0.4)
    with pytest.raises(ValueError):
        G(z, y[:2], 0.4)


# ---- spectral norm --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["generator.gen_z", "generator.layers.1.conv_1",
                                  "generator.layers.3.bn_0.scale", "generator.layers.2.snconv1x1_g"])
def test_spectral_norm_folding_matches_pytorch(G, name):
    sn = G.get_submodule(name)
    w = sn.weight_orig
    ref = (torch.nn.Linear(w.shape[1], w.shape[0]) if w.dim() == 2
           else torch.nn.Conv2d(w.shape[1], w.shape[0], w.shape[2]))
    ref = torch.nn.utils.parametrizations.spectral_norm(ref, eps=1e-4)
    with torch.no_grad():
        ref.parametrizations.weight.original.copy_(w)
        ref.parametrizations.weight[0]._u.copy_(sn.weight_u)
        ref.parametrizations.weight[0]._v.copy_(sn.weight_v)
    ref.eval()
    with torch.no_grad():
        assert max_err(sn.weight, ref.weight) < 1e-6
        sigma = sn.weight_u @ w.reshape(w.shape[0], -1) @ sn.weight_v  # manual, [out, -1]
        assert max_err(sn.weight, w / sigma) < 1e-6
    assert abs(float(sigma) - 1) > 1e-3  # folding is not a no-op on these weights


def test_load_state_dict_refolds_and_forward_never_folds(G, io, monkeypatch):
    model = copy.deepcopy(G)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    z, y = io["z"], io["class_vector"]
    with torch.no_grad():
        before = model(z, y, 0.4)
        changed = dict(state)
        conv, scale = "generator.layers.4.conv_1.weight_orig", "generator.layers.1.bn_0.scale.weight_u"
        changed[conv] = state[conv].flip(1) * 1.5  # a new W and a new sigma
        changed[scale] = state[scale].flip(0)  # a new u: a new sigma
        model.load_state_dict(changed)
        for sn in (model.generator.layers[4].conv_1, model.generator.layers[1].bn_0.scale):
            w = sn.weight_orig
            assert max_err(sn.weight, w / (sn.weight_u @ w.reshape(w.shape[0], -1) @ sn.weight_v)) < 1e-6
        assert max_err(model.generator.layers[4].conv_1.weight, G.generator.layers[4].conv_1.weight) > 1e-3
        assert max_err(model.generator.layers[1].bn_0.scale.weight, G.generator.layers[1].bn_0.scale.weight) > 1e-3
        assert max_err(model(z, y, 0.4), before) > 1e-3
        model.load_state_dict(state)
        assert max_err(model(z, y, 0.4), before) < 1e-6

        def no_fold(self):
            raise AssertionError("fold during forward")

        monkeypatch.setattr(_SpectralNormed, "fold", no_fold)
        model.train()  # no power iteration, no statistics update either
        model(z, two_region_map(1, 5, 3), 0.37, scbn_points={0, 2}, global_classes=y)
        assert torch.equal(model.state_dict()["generator.gen_z.weight_u"], state["generator.gen_z.weight_u"])


def test_dtype_and_device_moves(G, io):
    z, y, ref = io["z"], io["class_vector"], io["image_t0.4"]
    with torch.inference_mode():
        assert max_err(copy.deepcopy(G).double()(z, y, 0.4), ref) < TOL
        half = copy.deepcopy(G).half()
        out = half(z, y, 0.4)
        assert out.dtype == torch.float16 and max_err(out, ref) < 1e-2
        maps = half(z, two_region_map(1, 5, 3), 0.4)
        assert maps.dtype == torch.float16 and torch.isfinite(maps).all()
        cl = copy.deepcopy(G).to(memory_format=torch.channels_last)
        assert max_err(cl(z, y, 0.4), ref) < TOL
        # features in the standard layout (channels_last is the default): same images
        std = copy.deepcopy(G)
        std.memory_format = torch.contiguous_format
        m = two_region_map(1, 5, 3, size=16)
        assert max_err(std(z, y, 0.4), ref) < TOL and max_err(std(z, m, 0.4), G(z, m, 0.4)) < 1e-5


# ---- class maps (sCBN) ----------------------------------------------------------------------
@pytest.mark.parametrize("size", [1, 4, 7, 64])
def test_uniform_class_map_is_the_plain_image(G, io, size):
    z, y = io["z"], io["mixed_class_vector"]
    with torch.no_grad():
        plain = G(z, y, 0.5)
        maps = y[:, :, None, None].expand(-1, -1, size, size)
        assert max_err(G(z, maps, 0.5), plain) < 1e-5
        dense = torch.softmax(torch.randn(3, 10, 1, 1), 1)
        assert max_err(G(z, dense.expand(-1, -1, size, size), 0.5), G(z, dense[:, :, 0, 0], 0.5)) < 1e-5


def test_maps_with_more_classes_than_embedding_dims():
    """More classes present than embedding dimensions: the maps are embedded per pixel first
    (the other code path). A uniform map is still the plain image, and the seed cells still
    take their own mixture."""
    torch.manual_seed(0)
    model = BigGANDeep(output_dim=8, z_dim=4, class_embed_dim=4, channel_width=2, num_classes=12,
                       layers=[[True, 16, 8], [False, 8, 4], [False, 4, 2], [False, 2, 1]],
                       attention_layer_position=2).eval()
    for bn in model.modules():
        if isinstance(bn, ConditionalBatchNorm):
            bn.running_means.normal_(0, 0.1)
    z = torch.randn(2, 4)
    mix = torch.softmax(torch.randn(2, 12, 4, 4), 1)
    with torch.no_grad():
        plain = model(z, mix[..., 0, 0], 0.5)
        assert max_err(model(z, mix[..., :1, :1].expand(-1, -1, 8, 8), 0.5), plain) < 1e-5
        _, feats = record(model, z, mix, 0.5)
        for i, j in ((0, 0), (1, 3), (3, 2)):
            _, cell = record(model, z, mix[..., i, j], 0.5)
            assert max_err(feats[0][..., i, j], cell[0][..., i, j]) < 1e-5
        assert max_err(feats[0][..., 0, 0], feats[0][..., 1, 3]) > 1e-3


def test_seed_cells_take_their_own_class(G, io):
    """gen_z with maps: each 4x4 cell is the plain seed of its cell's class (the NHWC order)."""
    z = io["z"]
    with torch.no_grad():
        _, mixed = record(G, z, two_region_map(1, 5, 3, size=4), 1.0)
        _, left = record(G, z, one_hot([1, 1, 1]), 1.0)
        _, right = record(G, z, one_hot([5, 5, 5]), 1.0)
    assert max_err(mixed[0][..., :2], left[0][..., :2]) < 1e-5
    assert max_err(mixed[0][..., 2:], right[0][..., 2:]) < 1e-5
    assert max_err(left[0], right[0]) > 1e-2


def test_two_region_map_at_different_points(G, io):
    z = io["z"]
    a, b = one_hot([1, 1, 1]), one_hot([5, 5, 5])
    m = two_region_map(1, 5, 3)
    n = len(G.condition_points())
    with torch.no_grad():
        plain_a, plain_b = G(z, a, 0.5), G(z, b, 0.5)
        seed_only = G(z, m, 0.5, scbn_points={0}, global_classes=a)
        rest = G(z, m, 0.5, scbn_points=set(range(1, n)), global_classes=a)
        everywhere = G(z, m, 0.5)
    images = [plain_a, plain_b, seed_only, rest, everywhere]
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert max_err(images[i], images[j]) > 1e-3, (i, j)
    # the left half follows class a, the right half class b
    left, right = everywhere[..., :12], everywhere[..., 20:]
    assert max_err(left, plain_a[..., :12]) < max_err(left, plain_b[..., :12])
    assert max_err(right, plain_b[..., 20:]) < max_err(right, plain_a[..., 20:])


def test_scbn_points_subset(G, io):
    z, y = io["z"], io["class_vector"]
    m = two_region_map(1, 5, 3)
    # two maps that agree at 4x4 (half class 1, half class 5 everywhere) but not at 8x8
    checker = torch.zeros_like(m)
    checker[:, 1, ::2, ::2] = checker[:, 1, 1::2, 1::2] = 1
    checker[:, 5] = 1 - checker[:, 1]
    halves = torch.zeros_like(m)
    halves[:, 1] = halves[:, 5] = 0.5
    assert torch.equal(F.interpolate(checker, size=4, mode="area"), halves[..., :4, :4])
    with torch.no_grad():
        # only the 4x4 seed uses the maps: what they say at finer resolutions does not matter
        a = G(z, checker, 0.5, scbn_points={0}, global_classes=y)
        assert max_err(a, G(z, halves, 0.5, scbn_points={0}, global_classes=y)) < 1e-6
        assert max_err(a, G(z, m, 0.5, scbn_points={0}, global_classes=y)) > 1e-3
        assert max_err(G(z, checker, 0.5), G(z, halves, 0.5)) > 1e-3  # they matter elsewhere
        # no point uses the maps: the plain image of global_classes
        assert max_err(G(z, m, 0.5, scbn_points=set(), global_classes=y), G(z, y, 0.5)) < 1e-6
        # which points use the maps changes the image
        assert max_err(a, G(z, checker, 0.5, scbn_points={0, 1}, global_classes=y)) > 1e-3
        assert max_err(G(z, m, 0.5, scbn_points={2}, global_classes=y),
                       G(z, m, 0.5, scbn_points={3}, global_classes=y)) > 1e-3
    with pytest.raises(ValueError, match="global_classes"):
        G(z, m, 0.5, scbn_points={0})
    with pytest.raises(ValueError, match="scbn_points"):
        G(z, m, 0.5, scbn_points={0, 99}, global_classes=y)


def test_condition_point_k_is_the_kth_genblock(G, io):
    """Point 3 = the third GenBlock = generator.layers[3] (the attention module is skipped):
    features up to the attention output are those of the global classes."""
    z, y = io["z"], io["class_vector"]
    assert isinstance(G.generator.layers[2], SelfAttn)
    with torch.no_grad():
        _, plain = record(G, z, y, 0.4)
        _, mixed = record(G, z, one_hot([9, 9, 9]), 0.4, scbn_points={3}, global_classes=y)
    for p in range(4):
        assert torch.equal(plain[p], mixed[p]), p
    assert max_err(plain[4], mixed[4]) > 1e-3


@pytest.mark.parametrize("size", [7, 64])
def test_maps_at_other_resolutions(G, io, size):
    z = io["z"]
    with torch.no_grad():
        out = G(z, two_region_map(1, 5, 3, size=size), 0.4)
        ref32 = G(z, two_region_map(1, 5, 3, size=32), 0.4)
    assert out.shape == (3, 3, 32, 32) and torch.isfinite(out).all()
    # area-averaging a sharp 64 px split gives the 32 px split's maps at every BN (<= 32 px);
    # a 7 px map is enlarged bilinearly, so its split is blurred
    assert (max_err(out, ref32) < 1e-5) == (size == 64)


# ---- feature hooks --------------------------------------------------------------------------
def test_feature_points_describe_the_hooked_features(G, io):
    with torch.no_grad():
        plain = G(io["z"], io["class_vector"], 0.4)
        out, feats = record(G, io["z"], io["class_vector"], 0.4)
    assert torch.equal(out, plain)  # an identity hook changes nothing
    points = G.feature_points()
    assert sorted(feats) == list(range(len(points)))
    for p, (name, res, ch) in enumerate(points):
        assert feats[p].shape == (3, ch, res, res), (p, name)
    assert points[0][0] == "seed 4x4" and points[3][0].startswith("attention")
    assert [r for _, r in G.condition_points()] == [4, 4, 8, 8, 16, 16, 32]
    assert G.condition_points()[6][0] == "block 6 (16->32)"


@pytest.mark.parametrize("point", [0, 2, 3, 5])
def test_feature_hook_replaces_features(G, io, point):
    z, y = io["z"], io["class_vector"]

    def edit(p: int, h: torch.Tensor) -> torch.Tensor | None:
        if p != point:
            return None  # None = unchanged
        h = h.clone()
        h[:, :, : h.shape[2] // 2] *= -1.5
        return h

    with torch.no_grad():
        plain, before = record(G, z, y, 0.4)
        out, after = record(G, z, y, 0.4, feature_hook=edit)
    for p in range(point):
        assert torch.equal(before[p], after[p]), p
    assert max_err(before[point], after[point]) > 1e-3
    if point + 1 in after:
        assert max_err(before[point + 1], after[point + 1]) > 1e-3
    assert max_err(out, plain) > 1e-3
    with pytest.raises(ValueError, match="shape"):
        G(z, y, 0.4, feature_hook=lambda p, h: h[:, :1])


def test_conditional_bn_formula(G):
    """x_hat * (1 + scale(cond)) + offset(cond), then ReLU, with eps inside the sqrt."""
    from core.models.biggan import _Condition

    bn: ConditionalBatchNorm = G.generator.layers[1].bn_2
    x = torch.randn(2, bn.running_means.shape[1], 5, 5)
    cond = torch.randn(2, bn.scale.weight.shape[1])
    zd = 16
    with torch.no_grad():
        out = bn(x, 0.4, _Condition(cond[:, :zd], vector=cond[:, zd:]))
        i = 20  # 0.4 / 0.02
        m, v = bn.running_means[i], bn.running_vars[i]
        x_hat = (x - m[:, None, None]) / torch.sqrt(v[:, None, None] + 1e-4)
        scale, offset = cond @ bn.scale.weight.T, cond @ bn.offset.weight.T
        want = x_hat * (1 + scale)[:, :, None, None] + offset[:, :, None, None]
    assert max_err(out, want.relu()) < 1e-5
    assert isinstance(bn.scale, SNLinear) and isinstance(G.generator.conv_to_rgb, SNConv2d)


def test_map_resizing_is_convex():
    from core.models.biggan import _resize_convex

    m = torch.softmax(torch.randn(2, 5, 7, 12), 1)
    for size in (4, 8, 16):
        r = _resize_convex(m, size)
        assert r.shape == (2, 5, size, size) and float(r.min()) >= 0
        assert max_err(r.sum(1), torch.ones(2, size, size)) < 1e-6
    sharp = two_region_map(0, 1, 1, size=64, n=2)
    assert torch.equal(_resize_convex(sharp, 8), two_region_map(0, 1, 1, size=8, n=2))  # block means
    soft = _resize_convex(two_region_map(0, 1, 1, size=4, n=2), 16)  # bilinear: a soft edge
    assert torch.equal(soft[0, 0, :, :4], torch.ones(16, 4)) and 0 < float(soft[0, 0, 0, 7]) < 1


def test_gradients_reach_z_and_the_maps(G):
    """float64 gradcheck through the whole generator (projection and map optimisation)."""
    model = copy.deepcopy(G).double()
    z = torch.randn(1, 16, dtype=torch.float64, requires_grad=True)
    m = two_region_map(1, 5, 1, size=2).double().requires_grad_()
    y = one_hot([2]).double()
    check = functools.partial(torch.autograd.gradcheck, eps=1e-6, atol=1e-5)
    assert check(lambda z: model(z, y, 0.4).square().mean(), (z,))
    assert check(lambda m: model(z.detach(), m, 0.4, scbn_points={0, 2, 5}, global_classes=y)
                 .square().mean(), (m,))
