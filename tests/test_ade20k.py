"""SAM's scene segmenter for cars (CSAIL's ADE20K ResNet-50-dilated + PPM deep-sup.): the
published layouts and the authors' outputs (tests/data/reference/ade20k, made with their code
on weights filled by a rule replayed here)."""
from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from helpers import REFERENCE, load_reference
from core.models import load_model
from core.models.ade20k import SYNC_BN_BUFFERS, PPMDeepsup, ResNet50Dilated, ade20k_probabilities
from core.segments import ADE20K_MERGES, merge_ade20k

REF = REFERENCE / "ade20k"
_spec = importlib.util.spec_from_file_location("ade20k_make_reference", REF / "make_reference.py")
make_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_reference)  # only its fill rule is used (no authors' code)


def shapes(part: str) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v) for k, v in json.loads((REF / f"manifest-{part}.json").read_text()).items()}


def test_state_dicts_are_the_published_layouts():
    """Their files' keys, less the synchronized batch norm's training statistics (loaded and
    dropped: the test below saves files with them)."""
    with torch.device("meta"):
        for part, model in (("encoder", ResNet50Dilated()), ("decoder", PPMDeepsup())):
            published = {k: s for k, s in shapes(part).items() if not k.endswith(SYNC_BN_BUFFERS)}
            assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == published
            assert len(shapes(part)) - len(published) == 3 * sum(k.endswith("running_var") for k in published)


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory) -> list:
    """Both files saved as published (plain state dicts, with their batch norms' training
    statistics), loaded through the registry's door -> [encoder, decoder]."""
    folder = tmp_path_factory.mktemp("ade20k")
    models = []
    for part in ("encoder", "decoder"):
        torch.save(make_reference.fill_state(shapes(part)), folder / f"{part}_epoch_20.pth")
        models.append(load_model(f"ade20k-{part}", folder / f"{part}_epoch_20.pth", {}))
    return models


@pytest.mark.parametrize("run", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_labels_match_the_authors(segmenter, run):
    """Run 0: a car-shaped picture (probabilities and labels); run 1: a square one."""
    io = load_reference(REF / "tiny-io.pt")
    assert tuple(map(tuple, io["merges"])) == ADE20K_MERGES
    ref = io["runs"][run]
    probs = ade20k_probabilities(*segmenter, ref["pixels"].float() / 127.5 - 1, tuple(ref["seg_size"]))
    if "probs" in ref:
        assert (probs - ref["probs"]).abs().max() < 1e-4
    labels = probs[0].argmax(0)
    assert torch.equal(labels, ref["labels"].long())
    assert torch.equal(merge_ade20k(labels), ref["merged"].long())


def test_merges_in_the_authors_order():
    classes = torch.tensor([6, 13, 21, 102, 83, 29, 3, 60, 20, 9, 5])
    assert merge_ade20k(classes).tolist() == [3, 3, 60, 20, 20, 9, 3, 60, 20, 9, 5]
