"""Every tab's main operations as a ZeroGPU Space runs them: one app on every tab's tiny
models, built with the real `spaces` wrapper on (tests/zerogpu.py), driven through
gradio_client. Each call must give a real result and go through the wrapper (a forked
worker, arguments and results pickled), and a sentence raised in the worker must reach the
visitor."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from helpers import EMPTY_EDITOR, NO_EDIT_ROWS, app_client, editor_value, every_tab_registry, png_file, read_png
from zerogpu import Scheduler, zero_gpu_mode

from demos.ncollage import engine, handlers

pytestmark = pytest.mark.slow  # about a minute of CPU: CI runs it (SPATIAL_GAN_SLOW=1)

SAM_LABEL = "tiny-sam · layer 5 · ranks [8, 4] (published)"  # PandA factors of the SAM model
SG2_LABEL = "tiny-sg2 · layer 5 · ranks [16, 4] (published)"


@dataclass
class ZeroGpuApp:
    client: Client
    scheduler: Scheduler
    folder: Path


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The app built (and launched) while ZeroGPU mode is on, for the whole module."""
    pytest.importorskip("spaces")
    folder = tmp_path_factory.mktemp("zerogpu-tabs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPATIAL_GAN_CACHE", str(folder / "cache"))
        scheduler = zero_gpu_mode(mp)
        with app_client(every_tab_registry(folder)) as client:
            yield ZeroGpuApp(client, scheduler, folder)


@contextlib.contextmanager
def through_the_wrapper(app: ZeroGpuApp, calls: int = 1):
    """The block's model calls each went through `spaces.GPU` (the scheduler was asked)."""
    before = app.scheduler.calls
    yield
    assert app.scheduler.calls - before == calls


def picture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """An upload with some structure: two colours and noise."""
    rng = np.random.default_rng(seed)
    pic = np.zeros((h, w, 3), np.uint8)
    pic[:, : w // 2] = (200, 40, 30)
    pic[:, w // 2:] = (30, 90, 200)
    return pic + rng.integers(0, 40, (h, w, 3), dtype=np.uint8)


def test_generate_download_and_load_the_run(app):
    from core.recipe import read_bundle

    client = app.client
    with through_the_wrapper(app):
        shown = read_png(client.predict("tiny-sg2", 7, 0.6, api_name="/generate"))
    assert shown.shape == (32, 32, 3)
    with through_the_wrapper(app, 0):  # packing the last run is no model call
        saved = client.predict(api_name="/generate_download")
    bundle = read_bundle(saved)
    assert np.array_equal(bundle.images["result"], shown) and bundle.recipe["seed"] == 7
    with through_the_wrapper(app):
        model, seed, psi, image, *_ = client.predict(handle_file(saved), api_name="/generate_load_run")
    assert (model, seed, psi) == ("tiny-sg2", 7, 0.6)
    assert np.array_equal(read_png(image), shown)  # rendered again in a worker, bit for bit


def test_collage_compose(app):
    base, other = picture(32, 32, 1), picture(32, 32, 2)[:, ::-1]
    keep = np.zeros((32, 32), bool)
    keep[:, :16] = True
    take = np.zeros((32, 32), bool)
    take[:8, :8] = True
    with through_the_wrapper(app):
        shown, mask, result, info = app.client.predict(
            "tiny-collage", editor_value(app.folder, "base", base, keep), False, 30,
            editor_value(app.folder, "p1", other, take), EMPTY_EDITOR, EMPTY_EDITOR, 20, 0, 0, 4, 0, 0,
            api_name="/collage_compose")
    assert read_png(result)[..., :3].shape == (32, 32, 3) and read_png(shown).shape[:2] == (32, 32)
    got_mask = read_png(mask)
    assert (got_mask if got_mask.ndim == 2 else got_mask[..., 0]).max() > 127 and info


def test_stylemap_local_edit(app):
    painted = np.zeros((32, 32), bool)
    painted[:, :16] = True
    ref = handle_file(png_file(app.folder, "smg-ref.png", picture(32, 32, 3)))
    with through_the_wrapper(app):
        net_in, cells, result, *_ = app.client.predict(
            "tiny-smg", editor_value(app.folder, "smg", picture(32, 32, 4), painted), ref, "w_plus",
            api_name="/stylemap_edit")
    assert read_png(net_in)[..., :3].shape == read_png(result)[..., :3].shape == (32, 32, 3)
    c = read_png(cells)
    c = c if c.ndim == 2 else c[..., 0]
    assert c.shape == (32, 32) and c[:, :8].min() == 255 and c[:, 24:].max() == 0


def test_neural_collage_labels_and_blend(app):
    client = app.client
    n = len(engine.PALETTE)

    def label_args(classes=("5",)):
        return ("all", 0, *(list(classes) + ["5"] * (n - len(classes))), *([1.0] * n))

    with through_the_wrapper(app):
        out = client.predict("tiny-biggan", "3: tiger shark", 1, 0.4, api_name="/ncollage_render")
    base = read_png(out[0] if isinstance(out, (list, tuple)) else out)[..., :3]
    assert base.shape == (32, 32, 3)
    left, right = np.zeros((32, 32), bool), np.zeros((32, 32), bool)
    left[:, :12], right[:, 20:] = True, True
    painted = editor_value(app.folder, "nc", base, [left, right], [(0xFE, 0x27, 0x12), (0x66, 0xB0, 0x32)])
    with through_the_wrapper(app):
        before, after, class_map = client.predict("tiny-biggan", painted, *label_args(("5", "6")),
                                                  api_name="/ncollage_label")
    assert np.array_equal(read_png(before)[..., :3], base)
    assert read_png(after)[..., :3].shape == (32, 32, 3) and not np.array_equal(read_png(after)[..., :3], base)
    assert read_png(class_map).shape[:2] == (32, 32)

    with through_the_wrapper(app):
        ref_value = client.predict("tiny-biggan", "6", 2, 0.4, api_name="/ncollage_reference_1")
    ref = read_png(ref_value if isinstance(ref_value, str) else ref_value["background"])[..., :3]
    take = np.zeros((32, 32), bool)
    take[8:24, 8:24] = True
    weights = [1.0, 1.0] + [0.0] * (handlers.MAX_POINTS - 2)
    with through_the_wrapper(app):
        out = client.predict("tiny-biggan", 1, False, False, EMPTY_EDITOR, *label_args(), *weights,
                             editor_value(app.folder, "ncref", ref, take), EMPTY_EDITOR, 0, 0, 0, 0,
                             api_name="/ncollage_blend")
    blended = read_png(out[1])[..., :3]
    assert blended.shape == (32, 32, 3) and not np.array_equal(blended, base)


def test_panda_parts_and_edit(app):
    with through_the_wrapper(app):
        gallery, *_ = app.client.predict(SG2_LABEL, "3", 0.7, False, api_name="/panda_parts")
    assert len(gallery) == 4  # one overlay per part
    with through_the_wrapper(app):
        orig, edited, diff, sal, masked = app.client.predict(
            SG2_LABEL, "3", 0.7, [1], 2, 80, NO_EDIT_ROWS, False, api_name="/panda_edit")
    orig, edited = read_png(orig)[..., :3], read_png(edited)[..., :3]
    assert orig.shape == edited.shape == (32, 32, 3) and not np.array_equal(orig, edited)
    assert read_png(sal).shape[:2] == (32, 64) and read_png(masked).shape[:2] == (32, 32)


def test_sam_invert_edit_reload_then_panda_edits_the_photo(app):
    """SAM predicts, inverts (1 step) and edits; the inversion's "Download all" loads back;
    then PandA edits the same session's photo code: each in a forked worker."""
    from core.recipe import read_bundle

    client = app.client
    photo = png_file(app.folder, "photo.png", picture(240, 300, 5))
    with through_the_wrapper(app):
        _, _, editor, _ = client.predict("tiny-sam", handle_file(photo), 6, 1.0, 2, api_name="/sam_predict")[:4]
    layer_map = read_png(editor["background"])
    assert layer_map.shape == (256, 256, 3)
    with through_the_wrapper(app):
        rec, _, target, scores, codes, in_photo = client.predict(
            "tiny-sam", editor_value(app.folder, "map", layer_map), 1, False, api_name="/sam_invert")
    rec = read_png(rec)
    assert rec.shape == read_png(target).shape == (256, 256, 3) and "step 1/1" in scores
    assert read_png(in_photo).shape == (240, 300, 3)
    assert np.load(codes)["W+"].shape == (1, 14, 32)
    saved = client.predict(api_name="/sam_download")  # the inversion's run (an edit's holds no code)
    assert np.array_equal(read_bundle(saved).images["reconstruction"], rec)

    with through_the_wrapper(app):
        edited, _, edited_in_photo = client.predict("tiny-sam", "SeFa 1", 2, api_name="/sam_edit")
    assert read_png(edited).shape == (256, 256, 3) and not np.array_equal(read_png(edited), rec)
    assert read_png(edited_in_photo).shape == (240, 300, 3)

    with through_the_wrapper(app):
        model, rec_again, in_photo_again, status = client.predict(handle_file(saved), api_name="/sam_load_run")
    assert model == "tiny-sam" and "photo code of tiny-sam" in status
    assert np.array_equal(read_png(rec_again), rec)

    # PandA on the session's photo code (the SAM inversion above)
    with through_the_wrapper(app):
        client.predict(SAM_LABEL, "0", 1.0, False, api_name="/panda_parts")
    with through_the_wrapper(app):
        original, same, _, _ = client.predict(SAM_LABEL, [0], 1, 0.0, NO_EDIT_ROWS, api_name="/panda_edit_photo")
    assert np.array_equal(read_png(original), rec) and np.array_equal(read_png(same), rec)  # λ 0: SAM's
    with through_the_wrapper(app):
        original, edited, _, edited_in_photo = client.predict(SAM_LABEL, [0], 1, 60.0, NO_EDIT_ROWS,
                                                              api_name="/panda_edit_photo")
    change = np.abs(read_png(edited).astype(int) - rec).sum(2)
    assert change.max() > 0 and read_png(edited_in_photo).shape == (240, 300, 3)

    # the code is tiny-sam's: factors of another model are refused, in the worker
    with through_the_wrapper(app), pytest.raises(AppError, match="belongs to model 'tiny-sam', not 'tiny-sg2'"):
        client.predict(SG2_LABEL, [0], 1, 60.0, NO_EDIT_ROWS, api_name="/panda_edit_photo")

    # tomorrow: a new session loads the saved run in SAM, and PandA edits that code
    tomorrow = Client(client.src, verbose=False)
    with through_the_wrapper(app):
        tomorrow.predict(handle_file(saved), api_name="/sam_load_run")
    with through_the_wrapper(app):
        tomorrow.predict(SAM_LABEL, "0", 1.0, False, api_name="/panda_parts")
    with through_the_wrapper(app):
        original, same, _, _ = tomorrow.predict(SAM_LABEL, [0], 1, 0.0, NO_EDIT_ROWS, api_name="/panda_edit_photo")
    assert np.array_equal(read_png(original), rec) and np.array_equal(read_png(same), rec)


def test_an_error_raised_in_the_worker_reaches_the_visitor(app):
    """A new visitor (no photo code in their session): PandA's sentence, raised in the
    worker, is the error the client gets."""
    fresh = Client(app.client.src, verbose=False)
    with through_the_wrapper(app):
        fresh.predict(SG2_LABEL, "0", 1.0, False, api_name="/panda_parts")  # as on page load
    with through_the_wrapper(app), pytest.raises(AppError, match="No photo code yet: upload your photo"):
        fresh.predict(SG2_LABEL, [0], 1, 60.0, NO_EDIT_ROWS, api_name="/panda_edit_photo")
