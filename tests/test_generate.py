"""Generate renders every generator family the registry holds (the `Generator` protocol),
with a class picker for the class-conditional ones, and a saved run comes back the same."""
from __future__ import annotations

import json

import gradio as gr
import numpy as np
import pytest
import torch

from helpers import REFERENCE, write_registry
from test_architecture import TINY_FILES
from core.context import AppContext
from core.hub import load_registry
from core.models import GENERATOR_ARCHS, is_conditional
from demos.generate import handlers


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> AppContext:
    """One tiny model of every generator family, in its official layout."""
    entries = []
    for family, (file, config) in sorted(TINY_FILES.items()):
        if config is None:
            config = json.loads((REFERENCE / "biggan" / "tiny-config.json").read_text())
        entries.append({"id": f"tiny-{family}", "arch": family, "config": config,
                        "path": str(REFERENCE / file), "license": "test", "used_by": ["generate"]})
    registry = write_registry(tmp_path_factory.mktemp("generate") / "weights.json", entries)
    return AppContext(load_registry(registry), torch.device("cpu"))


def test_generate_lists_and_renders_every_family(ctx):
    ids = ctx.model_ids(GENERATOR_ARCHS)
    assert sorted(ids) == sorted(f"tiny-{f}" for f in TINY_FILES)
    for model_id in ids:
        arch = ctx.registry.get(model_id).arch
        picture, run = handlers.generate_image(ctx, model_id, 3, 0.7, "1: goldfish")
        G = ctx.model(model_id)
        assert picture.shape == (G.size, G.size, 3) and picture.std() > 0, model_id
        again, _ = handlers.generate_image(ctx, model_id, 3, 0.7, "1")
        assert np.array_equal(picture, again), model_id  # same seed, same picture
        shown = handlers.model_controls(ctx, model_id)
        assert shown.imagenet_class["visible"] == is_conditional(arch)
        assert shown.truncation["visible"] == (arch not in ("proggan", "sngan"))
        assert run.recipe["settings"]["truncation"] == (0.7 if shown.truncation["visible"] else 1.0)
        settings = run.recipe["settings"]
        assert ("imagenet_class" in settings) == is_conditional(arch), model_id
        assert "z" in run.arrays


def test_a_class_conditional_picture_depends_on_its_class_and_comes_back_from_its_run(ctx, tmp_path):
    goldfish, _ = handlers.generate_image(ctx, "tiny-biggan-deep", 5, 0.5, "1: goldfish")
    other, run = handlers.generate_image(ctx, "tiny-biggan-deep", 5, 0.5, "2")
    assert not np.array_equal(goldfish, other)
    model, seed, psi, again, *_, picked, _ = handlers.load_run(ctx, str(run.write(tmp_path)), None)
    assert (model, seed, psi) == ("tiny-biggan-deep", 5, 0.5) and picked.startswith("2: ")
    assert np.array_equal(again, other)
    with pytest.raises(gr.Error, match="not an ImageNet class"):
        handlers.generate_image(ctx, "tiny-biggan-deep", 5, 0.5, "unicorn")
    with pytest.raises(gr.Error, match="not one of this SNGAN's classes|does not exist"):
        handlers.generate_image(ctx, "tiny-sngan", 5, 0.5, "207")  # the tiny SNGAN has 3 classes
