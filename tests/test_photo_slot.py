"""One photo slot for every photo tab (core/photo_slot.py), and PandA taking a photo itself:
the slot in every tab, a new photo starting afresh, the one framing rule, and a photo code
made, edited, saved and loaded again in PandA."""
from __future__ import annotations

import multiprocessing
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from helpers import every_tab_registry, png_file
from core.context import AppContext
from core.hub import load_registry
from core.photo_slot import (SLOT_CLASS, drawn, faces_gallery, frame_input, remember_drawn,
                             show_framing)
from core.recipe import write_bundle
from demos import TABS
from demos.panda import handlers, handlers_photo, sources

PHOTO_TABS = {"collage", "sam", "stylemap", "ncollage", "panda"}


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Path:
    return every_tab_registry(tmp_path_factory.mktemp("photo-slot"))


@pytest.fixture(scope="module")
def demo(registry):
    import app as app_module

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPATIAL_GAN_FIRST_LOOK", "lazy")  # the first looks computed when a test asks
        return app_module.build_app(weights=str(registry), device="cpu")


@pytest.fixture()
def ctx(registry) -> AppContext:
    return AppContext(load_registry(registry), torch.device("cpu"))


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory) -> str:
    from skimage import data

    return png_file(tmp_path_factory.mktemp("photos"), "astronaut.png", data.astronaut())


def tab_blocks(demo: gr.Blocks, tab_id: str) -> list:
    """Every component inside one top-level tab."""
    tab = next(b for b in demo.blocks.values() if isinstance(b, gr.Tab) and b.id == tab_id)
    found, todo = [], list(tab.children)
    while todo:
        block = todo.pop()
        found.append(block)
        todo += getattr(block, "children", [])
    return found


def is_upload(block) -> bool:
    return isinstance(block, gr.Image) and block.type == "filepath" and block.interactive is not False


def test_every_photo_tab_uses_the_shared_slot_and_no_tab_builds_its_own(demo):
    """Each photo tab has the app's photo slot; no photo upload anywhere is built another way."""
    for tab in TABS:
        uploads = [b for b in tab_blocks(demo, tab.id) if is_upload(b)]
        own = [b.label for b in uploads if SLOT_CLASS not in (b.elem_classes or [])]
        assert not own, f"{tab.id} builds its own photo upload: {own}"
        assert bool(uploads) == (tab.id in PHOTO_TABS), tab.id


def test_a_new_photo_resets_the_face_and_clears_the_results(demo):
    """Wherever a person puts a new photo into a slot (upload, paste, camera, clearing it):
    the face number goes back to 1, and the tab's results (SAM's layer map, PandA's edited
    photo, ...) are emptied. A photo the page sets itself (an example, the first look) brings
    its own results and clears nothing."""
    slots = [b for b in demo.blocks.values() if is_upload(b) and SLOT_CLASS in (b.elem_classes or [])]
    assert len(slots) >= 5
    cleared = 0
    for photo in slots:
        def triggered_by(event: str) -> list:
            return [f for f in demo.fns.values() if (photo._id, event) in
                    [(getattr(t[0], "_id", t[0]), t[1]) for t in f.targets]]
        on_input = triggered_by("input")
        resets = [f for f in on_input if len(f.outputs) == 1 and isinstance(f.outputs[0], gr.Number)]
        assert len(resets) == 1 and resets[0].fn() == 1, photo.label
        for f in on_input:
            if f not in resets and not f.inputs:  # a clear: every output emptied
                values = f.fn()
                assert values is None or values == [None] * len(f.outputs)
                cleared += 1
        assert not [f for f in triggered_by("change") if not f.inputs], photo.label  # no clear on change
    assert cleared >= 4  # SAM, Collage (x2), Neural Collage, PandA


def test_a_drawn_picture_is_used_as_drawn_here_and_in_a_worker_forked_before(ctx, tmp_path):
    """The one framing rule: a picture this model drew is its own frame; any other picture is
    framed as the registry says. ZeroGPU forks its worker early: what the main process notes
    later still reaches it (the note is a file)."""
    picture = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    path = png_file(tmp_path, "drawn.png", picture)
    drawn(ctx)  # made at build time, before any fork
    fork = multiprocessing.get_context("fork")
    ready, answer = fork.Event(), fork.Queue()

    def worker() -> None:
        ready.wait(30)
        answer.put(("tiny-sam", picture) in drawn(ctx))

    child = fork.Process(target=worker)
    child.start()
    framed, from_sample = frame_input(ctx, "tiny-sam", path, 256, plain=True)
    assert not from_sample and not framed.drawn
    remember_drawn(ctx, "tiny-sam", path)
    ready.set()
    assert answer.get(timeout=30) is True
    child.join(30)
    framed, from_sample = frame_input(ctx, "tiny-sam", path, 256)  # no face needed: as drawn
    assert from_sample and framed.drawn and "GAN sample as drawn" in framed.note()
    assert np.array_equal(np.asarray(framed.aligned.image), picture)
    assert ("tiny-sg2", picture) not in drawn(ctx)  # another model did not draw it


def test_faces_are_square_numbered_thumbnails_and_the_caption_names_the_framing(ctx, astronaut):
    from core.faces import frame_photo
    from core.images import open_photo

    net, caption, faces = show_framing(ctx, "tiny-sam", astronaut, 1, False)
    assert caption == net["label"] and caption.startswith("Network input: ")
    framed = frame_photo(open_photo(astronaut), "ffhq", 256)  # a face model's framing
    items = faces_gallery(framed)
    assert len(items) == len(framed.faces) >= 1 and items[0][1] == "face 1 (used)"
    for thumb, _ in items:
        assert thumb.size == (112, 112)
    l, t, r, b = framed.faces[0].box
    assert (r - l) * 2 >= 100  # the square is twice the detector's box: hair and chin in it
    assert show_framing(ctx, "tiny-sam", None)[2] == []


# ---- PandA: your photo, a quick code, a saved run back ----------------------------------------
def sam_factors(ctx: AppContext) -> str:
    return next(label for label in sources.library(ctx).labels() if "tiny-sam" in label or "tinysam" in label)


def test_panda_makes_a_quick_code_from_a_photo_edits_it_and_reopens_the_saved_run(ctx, astronaut,
                                                                                 tmp_path):
    label = sam_factors(ctx)
    code, reconstruction, status = handlers_photo.quick_photo_code(ctx, label, astronaut, 1, True, 2)
    assert code.model_id == "tiny-sam" and code.method == "quick W+ (mean w + 2 steps)"
    assert code.deltas == {} and reconstruction.shape == (256, 256, 3) and "session's" in status
    assert code.framed.photo.size == Image.open(astronaut).size
    original, edited, diff, in_photo, run = handlers_photo.edit_photo_code(ctx, label, code, [1], 0, 80.0)
    assert np.abs(original.astype(int) - reconstruction).max() <= 1  # λ only adds: the code renders as before
    assert in_photo.shape[:2] == (512, 512) and not np.array_equal(original, edited)
    saved = write_bundle(run.images, run.masks, run.arrays, run.recipe)
    loaded = handlers_photo.open_saved_run(ctx, str(saved), None)
    assert loaded.factor_set["value"] == label and loaded.parts["value"] == [1]
    assert loaded.strength["value"] == 80.0 and loaded.appearance["value"] == 0
    assert torch.equal(loaded.code.w_plus, code.w_plus) and loaded.code.framed is not None
    again = handlers_photo.edit_photo_code(ctx, label, loaded.code, [1], 0, 80.0)
    assert np.abs(again.edited.astype(int) - edited).max() <= 1


def test_panda_reopens_a_seed_edit_and_refuses_what_it_cannot_use(ctx, tmp_path):
    label = sam_factors(ctx)
    run = handlers.edit_seeds(ctx, label, "3, 4", 0.8, [2], 1, 40.0, [["0, 3", 0, -20.0]]).run
    loaded = handlers_photo.open_saved_run(ctx, str(write_bundle(run.images, run.masks, run.arrays, run.recipe)), None)
    assert loaded.seeds["value"] == "3, 4" and loaded.psi["value"] == 0.8 and loaded.code is None
    assert loaded.more["value"] == [["0, 3", 0, -20.0]] and loaded.parts["value"] == [2]
    with pytest.raises(gr.Error, match="Choose a run"):
        handlers_photo.open_saved_run(ctx, None, None)
    other = run.recipe | {"tab": "stylemap"}
    with pytest.raises(gr.Error, match="saved by the 'stylemap' tab"):
        handlers_photo.open_saved_run(ctx, str(write_bundle(run.images, {}, {}, other)), None)
    with pytest.raises(gr.Error, match="No photo code yet"):
        handlers_photo.edit_photo_code(ctx, label, None, [0], 0, 10.0)


# ---- the first look: a finished example in every tab before any click ---------------------------
@pytest.mark.slow
def test_every_tab_shows_a_finished_example_on_arrival(demo):
    """Each tab's first example, run by its own handlers once per app (in the background) and
    handed to every page load: pictures (as files) in its outputs, the run in its "Download
    all". Neural Collage's first example asks the tiny BigGAN (10 classes) for class 207: its
    first look is skipped, and the page load changes nothing."""
    from core.first_look import FirstLook
    from core.recipe import Run

    looks = {}
    for f in demo.fns.values():
        show = getattr(f.fn, "__wrapped__", None)
        if isinstance(getattr(show, "__self__", None), FirstLook):
            looks[show.__self__.steps[0][0].__name__] = (show.__self__, f)
    assert sorted(looks) == sorted(["generate_image", "compose_example", "predict_layer_map",
                                    "run_edit_example", "render_base", "show_parts"])
    for name, (look, f) in looks.items():
        ready = look.wait(300)
        shown = f.fn()
        if name == "render_base":
            assert not ready and all(v == gr.update() for v in shown.values())
            continue
        assert ready, name
        assert f.fn().keys() == shown.keys()  # stored: every visit gets the same
        values = [v["value"] if isinstance(v, dict) and "value" in v else v for v in shown.values()]
        pictures = [v for v in values if isinstance(v, str) and v.endswith(".png")]
        pictures += [item[0] for v in values if isinstance(v, list) for item in v
                     if isinstance(item, (tuple, list)) and str(item[0]).endswith(".png")]
        assert pictures, (name, [type(v).__name__ for v in values])
        if name != "show_parts":  # PandA's first step shows parts; its edit keeps the run
            assert any(isinstance(v, Run) for v in values) or name == "predict_layer_map", name
