"""The PandA tab driven through gradio_client: published factors from an offline Hub cache,
computed factors, edits and error paths; and its handlers called directly (no app)."""
from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
import torch
from gradio_client.exceptions import AppError
from PIL import Image

from helpers import NO_EDIT_ROWS, app_client, published_panda_factors, quadrant_parts, tiny_sg2_entry, write_registry

from core.context import AppContext
from core.hub import load_registry
from core.images import to_uint8
from core.models.stylegan2 import load_stylegan2
from demos.panda import engine, handlers, sources
from demos.panda.factors import (algorithm1, appearances_from_scatter, collect_stats, hosvd_draws, init_parts,
                                 layer_features)

LABEL = "tiny-sg2 · layer 5 · ranks [16, 4] (published)"


@pytest.fixture()
def factors():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(16, 16, generator=g)
    return appearances_from_scatter(m @ m.t(), 16).numpy(), quadrant_parts(16)


@pytest.fixture()
def registry(tmp_path, tiny_sg2_file, hub_cache, factors, monkeypatch):
    """The tiny StyleGAN2 and its published layer-5 factors (offline Hub cache)."""
    monkeypatch.setenv("SPATIAL_GAN_CACHE", str(tmp_path / "cache"))
    entries = [tiny_sg2_entry("tiny-sg2", tiny_sg2_file), *published_panda_factors(hub_cache, "tiny-sg2", 5, *factors)]
    return write_registry(tmp_path / "weights.json", entries)


@pytest.fixture()
def client(registry):
    with app_client(registry) as client:
        yield client


@pytest.fixture()
def ctx(registry):
    return AppContext(load_registry(registry), torch.device("cpu"))


def _png(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_parts_then_edit_end_to_end(client, tiny_sg2_file, factors):
    gallery, parts, preset, appearance = client.predict(LABEL, "3", 0.7, False, api_name="/panda_parts")
    assert len(gallery) == 4  # one overlay per part
    orig, edited, diff, sal, masked = client.predict(LABEL, "3", 0.7, [1], 2, 80, NO_EDIT_ROWS, False,
                                                     api_name="/panda_edit")
    orig, edited = _png(orig), _png(edited)
    # same numbers as the engine on the same checkpoint
    G = load_stylegan2(tiny_sg2_file, size=32, style_dim=32, n_mlp=2, channel_max=16)
    A, P = factors
    fs = engine.FactorSet("tiny-sg2", 5, torch.from_numpy(A), torch.from_numpy(P))
    w = engine.seed_w_plus(G, [3], 0.7)
    res = engine.edit(G, w, fs, [engine.EditTerm((1,), 2, 80.0)])
    assert np.array_equal(orig, to_uint8(res.original)[0]) and np.array_equal(edited, to_uint8(res.edited)[0])
    assert not np.array_equal(orig, edited)
    assert _png(sal).shape == (32, 64, 3)  # heat map beside the thresholded mask
    assert _png(masked).shape == (32, 32, 3)
    # two edits at once (the edit list), with per-sample refinement: another picture
    rows = {"headers": ["parts", "appearance", "λ"], "data": [["0, 3", 5, -40]]}
    _, e2, *_ = client.predict(LABEL, "3", 0.7, [1], 2, 80, rows, True, api_name="/panda_edit")
    assert not np.array_equal(_png(e2), edited)


def test_bad_inputs_are_messages(client):
    client.predict(LABEL, "3", 0.7, False, api_name="/panda_parts")
    with pytest.raises(AppError, match="Pick at least one part"):
        client.predict(LABEL, "3", 0.7, [], 2, 50, NO_EDIT_ROWS, False, api_name="/panda_edit")
    with pytest.raises(AppError, match="out of range|greater than maximum"):
        client.predict(LABEL, "3", 0.7, [1], 99, 50, NO_EDIT_ROWS, False, api_name="/panda_edit")


def test_compute_factors_saves_the_authors_format_and_offers_them(client, tmp_path):
    update, status = client.predict("tiny-sg2", 3, 4, 50, 20, "full", 10, 1e-6, api_name="/panda_compute")
    saved = sorted(p.name for p in (tmp_path / "cache" / "panda" / "tiny-sg2").iterdir())
    # the name the generator's published files use ("tiny", as stylegan2_ffhq1024 for FFHQ)
    assert saved == ["Uc-name_tiny-layer_3-rank_16.npy", "Us-name_tiny-layer_3-rank_4.npy"]
    assert "Saved" in status
    label = "tiny-sg2 · layer 3 · ranks [16, 4] (computed)"
    gallery, *_ = client.predict(label, "1", 0.7, False, api_name="/panda_parts")
    assert len(gallery) == 4
    orig, edited, *_ = client.predict(label, "1", 0.7, [0, 1], 0, 50, NO_EDIT_ROWS, False, api_name="/panda_edit")
    assert not np.array_equal(_png(orig), _png(edited))


def test_download_all_after_an_edit(client):
    """The zip holds the edited picture as shown, the part mask, w+ and the appearance
    vector, and a recipe with the generator, the factor files and the seed."""
    from core.recipe import read_bundle

    client.predict(LABEL, "3", 0.7, False, api_name="/panda_parts")
    orig, edited, *_ = client.predict(LABEL, "3", 0.7, [1], 2, 80, NO_EDIT_ROWS, False, api_name="/panda_edit")
    bundle = read_bundle(client.predict(api_name="/panda_download"))
    assert np.array_equal(bundle.images["edited_01"], _png(edited))
    assert np.array_equal(bundle.images["original_01"], _png(orig))
    assert bundle.masks["part"].shape == (16, 16) and bundle.arrays["appearance_vector"].shape == (16,)
    r = bundle.recipe
    assert r["model_id"] == "tiny-sg2" and r["seed"] == 3 and r["seeds"] == [3]
    assert r["models"]["parts"]["hub"]["repo_type"] == "space"
    assert r["settings"]["parts"] == [1] and r["settings"]["appearance"] == 2 and r["settings"]["strength"] == 80
    assert r["settings"]["edits"] == [[[1], 2, 80.0]] and "masked_01" in bundle.images


# ---- the handlers as plain functions (no app) ------------------------------------------------
def test_show_parts_and_edit_seeds_called_directly(ctx, factors):
    """The handlers are functions of (ctx, values): the same pictures as the engine, and a
    run for "Download all" naming the generator and both factor files."""
    gallery, parts, preset, appearance = handlers.show_parts(ctx, LABEL, "3", 1.0)
    assert len(gallery) == 4 and [name for _, name in gallery] == [f"part {r}" for r in range(4)]
    assert parts["value"] == [0] and parts["choices"] == [(f"part {r}", r) for r in range(4)]
    assert preset["choices"] == [] and appearance["maximum"] == 15  # no annotated edits here
    refined, *_ = handlers.show_parts(ctx, LABEL, "3", 1.0, True)
    assert len(refined) == 4
    orig, edited, diff, sal, masked, run = handlers.edit_seeds(ctx, LABEL, "3, 4", 1.0, [1], 2, 80)
    G = ctx.model("tiny-sg2")
    A, P = factors
    fs = engine.FactorSet("tiny-sg2", 5, torch.from_numpy(A), torch.from_numpy(P))
    res = engine.edit(G, engine.seed_w_plus(G, [3, 4], 1.0), fs, [engine.EditTerm((1,), 2, 80.0)])
    assert orig.shape == edited.shape == masked.shape == (32, 64, 3) and sal.shape == (64, 64, 3)
    assert np.array_equal(orig[:, :32], to_uint8(res.original)[0]) and np.array_equal(edited[:, 32:], to_uint8(res.edited)[1])
    # seed t is the authors' sample t: np.random.seed(t); randn(1, 512) (here 32-d)
    np.random.seed(3)
    z3 = torch.Tensor(np.random.randn(1, 32))
    torch.testing.assert_close(res.original[:1].clamp(-1, 1), G.render(z3, 1.0), rtol=0, atol=1e-4)
    r = run.recipe
    assert r["tab"] == "panda" and r["seeds"] == [3, 4] and r["settings"]["factor_set"] == LABEL
    assert set(r["models"]) == {"generator", "appearances", "parts"} and r["settings"]["truncation"] == 1.0
    assert run.masks["part"].shape == (16, 16) and run.masks["saliency_above_mean"][0].shape == (32, 32)
    # the saliency threshold: a_j . the mean feature of samples 0..499 at this truncation
    mean = engine.channel_mean(ctx, G, 5, 1.0)
    assert r["settings"]["saliency_threshold"] == pytest.approx(float(fs.A[:, 2] @ mean), rel=1e-6)
    # several edits at once: the edit list's rows are summed with the edit above
    rows = [["0, 3", 5, -40.0], ["", None, None]]
    *_, run2 = handlers.edit_seeds(ctx, LABEL, "3", 1.0, [1], 2, 80, rows, False)
    assert run2.recipe["settings"]["edits"] == [[[1], 2, 80.0], [[0, 3], 5, -40.0]]
    *_, run3 = handlers.edit_seeds(ctx, LABEL, "3", 1.0, [], 2, 80, rows[:1], True)  # only the list, refined
    assert run3.recipe["settings"]["edits"] == [[[0, 3], 5, -40.0]] and run3.recipe["settings"]["refine_parts"]
    assert handlers.add_edit(rows[:1], [2, 1], 4, 30) == [["0, 3", 5, -40.0], ["2, 1", 4, 30.0]]


def test_handler_mistakes_are_readable_messages(ctx):
    with pytest.raises(gr.Error, match="Pick at least one part"):
        handlers.edit_seeds(ctx, LABEL, "3", 1.0, [], 2, 50)
    with pytest.raises(gr.Error, match="Pick an appearance index"):
        handlers.edit_seeds(ctx, LABEL, "3", 1.0, [1], None, 50)
    with pytest.raises(gr.Error, match="out of range"):
        handlers.edit_seeds(ctx, LABEL, "3", 1.0, [1], 99, 50)
    with pytest.raises(gr.Error, match="comma"):
        handlers.edit_seeds(ctx, LABEL, "3", 1.0, [1], 2, 50, [["x", 1, 2]])
    with pytest.raises(gr.Error, match="not a seed"):
        handlers.show_parts(ctx, LABEL, "3, x", 1.0)
    with pytest.raises(gr.Error, match="No factors yet"):
        handlers.show_parts(ctx, None, "3", 1.0)
    with pytest.raises(gr.Error, match="Unknown factor set"):
        handlers.show_parts(ctx, "tiny-sg2 · layer 9 · ranks [16, 4] (published)", "3", 1.0)
    with pytest.raises(gr.Error, match="Pick a generator"):
        handlers.compute_factors(ctx, None, 5, 4, 50, 50)
    with pytest.raises(gr.Error, match=r"tiny-sg2 has layers 1\.\.7"):
        handlers.compute_factors(ctx, "tiny-sg2", 12, 4, 50, 50)
    with pytest.raises(gr.Error, match="stochastic loop, which streams"):
        handlers.compute_factors(ctx, "tiny-sg2", 7, 4, 10 ** 6, 50)


def test_compute_with_the_authors_stochastic_loop(ctx, tmp_path):
    """Their loop as published (HOSVD init, one fresh sample t per step, fixed lr), streamed."""
    update, status = handlers.compute_factors(ctx, "tiny-sg2", 3, 4, 20, 10, "the authors' stochastic loop", 30, 1e-4)
    assert "Saved" in status and update["value"] == "tiny-sg2 · layer 3 · ranks [16, 4] (computed)"
    fs = sources.library(ctx).get(update["value"])
    G = ctx.model("tiny-sg2")
    stats = collect_stats(G, 3, hosvd_draws(20), with_gram=False)
    A0, P0 = appearances_from_scatter(stats.scatter, 16), init_parts(64, 4)
    A, P = algorithm1((layer_features(G, engine.seed_w_plus(G, [t], 1.0), 3).float() for t in range(30)),
                      A0, P0, 1e-4)
    torch.testing.assert_close(fs.A, A.float(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fs.P, P.float(), rtol=1e-4, atol=1e-5)
    with pytest.raises(gr.Error, match="diverged"):
        handlers.compute_factors(ctx, "tiny-sg2", 3, 4, 20, 10, "stochastic", 30, 1e3)


def test_presets_and_part_clicks_called_directly(ctx):
    unchanged = handlers.apply_preset(ctx, LABEL, None)
    assert len(unchanged) == 3 and all(u == gr.update() for u in unchanged)
    with pytest.raises(gr.Error, match="not an annotated edit"):  # "remove object" only where annotated
        handlers.apply_preset(ctx, LABEL, "remove object (background appearance)")
    assert handlers.select_part([0], SimpleNamespace(index=2)) == [0, 2]
    assert handlers.select_part([0, 2], SimpleNamespace(index=2)) == [0, 2]
    assert handlers.select_part(None, SimpleNamespace(index=1)) == [1]


def test_the_part_list_is_filled_on_a_fresh_visit():
    """Editing your photo must not wait for a sample: the parts come from the set's label."""
    from demos.panda.engine import part_choices, set_label

    label = set_label("tiny-sam", 5, 8, 4, "published")
    assert part_choices(label) == [(f"part {r}", r) for r in range(4)]
    assert part_choices(None) == []
