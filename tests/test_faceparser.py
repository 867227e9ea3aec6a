"""SAM's face parser (BiSeNet, zllrunning/face-parsing.PyTorch): the published layout and the
authors' outputs (tests/data/reference/faceparser, made with their code on weights filled by
a rule that only depends on each key and shape; the rule is replayed here)."""
from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from helpers import REFERENCE, load_reference
from core.errors import UserError
from core.models import load_model
from core.models.faceparser import FaceParser, parser_input
from core.segments import FACE_PARTS, fuse_face_parts, semantic_segments

REF = REFERENCE / "faceparser"
_spec = importlib.util.spec_from_file_location("faceparser_make_reference", REF / "make_reference.py")
make_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_reference)  # only its fill rule is used (no authors' code)


@pytest.fixture(scope="module")
def shapes() -> dict[str, tuple[int, ...]]:
    return {k: tuple(v) for k, v in json.loads((REF / "manifest.json").read_text()).items()}


@pytest.fixture(scope="module")
def parser(shapes, tmp_path_factory) -> FaceParser:
    """The reference weights saved as the published 79999_iter.pth (a plain state dict) and
    loaded through the registry's door."""
    path = tmp_path_factory.mktemp("faceparser") / "79999_iter.pth"
    torch.save(make_reference.fill_state(shapes), path)
    return load_model("face-parser", path, {})


def test_state_dict_is_the_published_layout(shapes):
    with torch.device("meta"):
        ours = FaceParser().state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == shapes


@pytest.mark.parametrize("run", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_labels_match_the_authors(parser, run):
    """Run 0: 64 x 64 (logits, labels, fused labels); run 1: 96 x 64."""
    io = load_reference(REF / "tiny-io.pt")
    assert tuple(io["face_parts"]) == FACE_PARTS
    ref = io["runs"][run]
    picture = ref["pixels"].float() / 127.5 - 1  # the app's [-1, 1] pictures
    if "logits" in ref:
        with torch.no_grad():
            logits = parser(parser_input(picture))
        assert (logits - ref["logits"]).abs().max() < 1e-4
    labels = parser.labels(picture)
    assert torch.equal(labels, ref["labels"].long())
    assert torch.equal(fuse_face_parts(labels), ref["fused"].long())


def test_fused_segments_are_one_per_class():
    classes = torch.tensor([[0, 1, 2, 17], [10, 13, 17, 6], [14, 16, 16, 0], [4, 5, 18, 9]])
    fused = fuse_face_parts(classes)
    assert set(fused.unique().tolist()) == {0, 3, 6, 9, 16, 17, 18}
    segments = semantic_segments(fused, (8, 8))  # nearest upsampling, numbered 0..n-1
    assert segments.shape == (8, 8) and int(segments.max()) == 6
    assert len(segments[fused.repeat_interleave(2, 0).repeat_interleave(2, 1) == 3].unique()) == 1


def test_a_wrong_file_is_a_message(shapes, tmp_path):
    state = make_reference.fill_state({k: s for k, s in shapes.items() if "conv_out32" not in k})
    torch.save(state, tmp_path / "parser.pth")
    with pytest.raises(UserError, match="missing key"):
        load_model("face-parser", tmp_path / "parser.pth", {})
    torch.save({"net": 1}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="not a BiSeNet face-parser checkpoint"):
        load_model("face-parser", tmp_path / "other.pth", {})
