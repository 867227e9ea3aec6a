"""The StyleMap tab: its engine against the authors' outputs and the edits' properties, and
the tab driven end to end through gradio_client with a tiny checkpoint in the published
format, loaded through the registry."""
from __future__ import annotations

import shutil
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from helpers import (EMPTY_EDITOR, REFERENCE, ROOT, app_client, editor_value, load_reference, png_file,
                      read_png, write_registry)

from core.context import AppContext
from core.errors import UserError
from core.hub import load_registry
from core.images import mask_from_editor, mask_picture, to_uint8
from core.models import load_model
from core.photo_slot import remember_drawn
from demos.stylemap import engine, handlers, handlers_semantic, handlers_transplant

SMG_REF = REFERENCE / "stylemapgan"
SIZE = 32


@pytest.fixture(scope="module")
def io() -> dict:
    return load_reference(SMG_REF / "tiny-io.pt")


@pytest.fixture(scope="module")
def model():
    return load_model("stylemapgan", SMG_REF / "tiny.pt", {"size": SIZE})


def signed_to_binary(mask: torch.Tensor) -> torch.Tensor:
    return (mask > -1).float()[:, None]


def test_registry_config_that_disagrees_with_train_args_is_a_user_error():
    with pytest.raises(UserError, match="size: registered 256, file says 32"):
        load_model("stylemapgan", SMG_REF / "tiny.pt", {"size": 256})


@pytest.mark.parametrize("space, key", [("w_plus", "edit_w_plus_image"), ("w", "edit_w_image")])
def test_local_edit_from_pictures_matches_the_authors(model, io, space, key):
    """Pictures in -> the authors' local-editing output (one encoder pass over both)."""
    images = io["encoder_input"]
    edit = engine.local_edit(model, images[:1], images[1:2], signed_to_binary(io["edit_mask"]), space)
    assert torch.allclose(edit.image, io[key].clamp(-1, 1), atol=1e-4)
    assert edit.cells.shape == (1, 1, 4, 4) and edit.cells.dtype == torch.bool


def test_empty_and_full_masks_give_the_two_reconstructions(model, io):
    a, b = io["encoder_input"][:1], io["encoder_input"][1:2]
    for space in ("w_plus", "w"):
        none = engine.local_edit(model, a, b, torch.zeros(1, 1, SIZE, SIZE), space)
        full = engine.local_edit(model, a, b, torch.ones(1, 1, SIZE, SIZE), space)
        # same codes, same decoder: equal up to the rounding of batch 2 vs batch 1 passes
        assert torch.allclose(none.image, engine.reconstruct(model, a, with_lpips=False).image, atol=1e-5)
        assert torch.allclose(full.image, engine.reconstruct(model, b, with_lpips=False).image, atol=1e-5)
        assert not none.cells.any() and full.cells.all()


def test_edit_cells_follow_the_painted_region(model, io):
    """Painting the top-left quarter takes exactly the top-left stylemap cells."""
    mask = torch.zeros(1, 1, SIZE, SIZE)
    mask[..., :16, :16] = 1
    edit = engine.local_edit(model, io["encoder_input"][:1], io["encoder_input"][1:2], mask, "w")
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[:2, :2] = True
    assert torch.equal(edit.cells[0, 0], expected)
    pic = mask_picture(edit.cells, SIZE)
    assert pic.shape == (SIZE, SIZE) and pic[:16, :16].min() == 255 and pic[16:, :].max() == 0


def test_transplant_matches_the_authors_demo_in_chunks(model, io, monkeypatch):
    images = io["encoder_input"]
    shifts = list(zip(*io["demo_shifts_xy"]))
    monkeypatch.setattr(engine, "TRANSPLANT_PIXELS", 2 * SIZE * SIZE)  # 3 frames: 2, then 1
    frames = engine.transplant(model, images[:1], images[1:], io["demo_masks"], shifts, io["demo_steps"])
    assert torch.allclose(frames, io["demo_image"].clamp(-1, 1), atol=1e-4)
    with pytest.raises(UserError, match="at least 2"):
        engine.transplant(model, images[:1], images[1:], io["demo_masks"], shifts, 1)


def test_landing_preview_marks_the_shifted_cells(model, io):
    mask = torch.zeros(1, 1, SIZE, SIZE)
    mask[..., :8, :8] = 1  # the top-left cell of the reference
    picture = -torch.ones(1, 3, SIZE, SIZE)  # black
    preview = engine.landing_preview(model, picture, mask, [(16, 8)])  # 2 cells right, 1 down
    tinted = preview.sum(-1) > 0
    assert tinted[8:16, 16:24].all() and tinted.sum() == 64


def test_reconstruction_reports_mse_and_lpips(model, io):
    image = io["encoder_input"][:1]
    rec = engine.reconstruct(model, image)
    assert torch.allclose(rec.image, io["recon_image"][:1].clamp(-1, 1), atol=1e-4)
    assert rec.mse == pytest.approx(float((rec.image - image).square().mean()), rel=1e-5)
    assert rec.lpips is not None and rec.lpips >= 0


def test_style_mix_and_sampling_match_the_model(model, io):
    images = io["encoder_input"]
    mixed = engine.style_mix(model, images[:1], images[1:2])
    assert torch.allclose(mixed[0], io["mix_coarse_image"][0].clamp(-1, 1), atol=1e-4)
    assert torch.allclose(mixed[1], io["mix_fine_image"][0].clamp(-1, 1), atol=1e-4)
    a = engine.sample(model, [3, 4], 0.7)
    assert a.shape == (2, 3, SIZE, SIZE)
    assert torch.allclose(a[1:], engine.sample(model, [4], 0.7), atol=1e-5)  # seeds, not batch, decide
    assert not torch.equal(a[:1], a[1:])


# ---- the tab through gradio_client --------------------------------------------------------
@pytest.fixture(scope="module")
def pictures(model) -> dict[str, np.ndarray]:
    """Pictures the model can make, at odd sizes and modes (as uploads arrive)."""
    samples = to_uint8(engine.sample(model, [11, 12, 13], 0.7))
    big = np.asarray(Image.fromarray(samples[0]).resize((60, 45)))  # wider than tall: centre crop
    gray = np.asarray(Image.fromarray(samples[1]).convert("L"))
    rgba = np.dstack([samples[2], np.full((SIZE, SIZE), 255, np.uint8)])
    return {"big": big, "gray": gray, "rgba": rgba, "plain": samples[0]}


def tiny_registry(folder: Path) -> Path:
    """Two entries on a copy of the tiny checkpoint: one right (framing photos as FFHQ faces,
    so the face path runs; its own samples are taken as drawn), one whose registered
    size the file contradicts."""
    ckpt = folder / "celeba_hq_256_8x8.pt"  # the authors' name for every 256 px file: not believed
    shutil.copy(SMG_REF / "tiny.pt", ckpt)
    return write_registry(folder / "weights.json", [
        {"id": "tiny-smg", "arch": "stylemapgan", "config": {"size": SIZE, "latent_spatial_size": 4},
         "path": str(ckpt),
         "meta": {"framing": "ffhq"}, "license": "test"},
        {"id": "tiny-smg-wrong", "arch": "stylemapgan", "config": {"size": 256}, "path": str(ckpt),
         "license": "test"}])


def drawn_here(ctx: AppContext, pictures: dict[str, np.ndarray]) -> None:
    """The samples as the seed rows hand them out: remembered as drawn by tiny-smg, so they
    are taken as drawn, not face-aligned (the gray one as the RGB picture it arrives as)."""
    for picture in pictures.values():
        if picture.shape[:2] == (SIZE, SIZE):
            remember_drawn(ctx, "tiny-smg", picture if picture.ndim == 3 else np.dstack([picture] * 3))


@pytest.fixture(scope="module")
def client(tmp_path_factory, pictures):
    with app_client(tiny_registry(tmp_path_factory.mktemp("stylemap-app"))) as client:
        drawn_here(client.app.ctx, pictures)
        yield client


@pytest.fixture(scope="module")
def ctx(tmp_path_factory, pictures) -> AppContext:
    """The handlers' context on the tiny registry, on the CPU (no app)."""
    registry = tiny_registry(tmp_path_factory.mktemp("stylemap-ctx"))
    ctx = AppContext(load_registry(registry), torch.device("cpu"))
    drawn_here(ctx, pictures)
    return ctx


def test_labels_name_the_grid_of_the_model_and_paper_numbers_their_checkpoint(ctx, model, io):
    """"8x8" is the 256 px models' grid, not every model's: labels come from the registry's
    latent_spatial_size (checked against the file); the paper's numbers only beside the
    checkpoints they were measured on."""
    space, cells, *sliders, coarse, fine = handlers.model_labels(ctx, "tiny-smg")
    assert len(sliders) == 12 and sliders[0]["maximum"] == 4
    assert space["choices"][1] == ("w (the 4×4 stylemap)", "w") and "4×4 cells" in cells["label"]
    assert coarse["label"].startswith("Coarse: A's two 4×4") and "4×4" in fine["label"]
    assert "S×S" in handlers.model_labels(ctx, "tiny-smg-wrong")[1]["label"]  # not stated
    with pytest.raises(UserError, match="latent_spatial_size: registered 8, file says 4"):
        load_model("stylemapgan", SMG_REF / "tiny.pt", {"size": SIZE, "latent_spatial_size": 8})
    assert "not for this checkpoint" in handlers.paper_reconstruction("tiny-smg", model)
    assert "0.023" in handlers.paper_reconstruction("stylemapgan-celeba-hq-256-5m", model)
    assert "0.016" in handlers.paper_reconstruction("stylemapgan-ffhq-1024-32x32", model)  # not light
    registry = load_registry(ROOT / "weights.json")
    for entry in registry:
        if entry.arch == "stylemapgan":
            grid = entry.config["latent_spatial_size"]
            name = entry.url.filename if entry.url else ""
            assert f"_{grid}x{grid}" in name and f"{grid}x{grid}" in entry.description, entry.id
    # the w+ mask picture: white where painted (the finest level), grey for the rest of the cells
    mask = torch.zeros(1, 1, SIZE, SIZE)
    mask[..., 2:5, 3:6] = 1
    pic = engine.local_edit(model, io["encoder_input"][:1], io["encoder_input"][1:2], mask).mask_picture(SIZE)
    assert (pic[2:5, 3:6] == 255).all() and (pic == 255).sum() == 9
    assert (pic[:8, :8] > 0).all() and (pic == 128).sum() == 64 - 9 and pic[8:].max() == 0


def plain_editor(picture: np.ndarray, painted: np.ndarray | None) -> dict:
    """An ImageEditor value as the handlers receive it (numpy arrays, one paint layer)."""
    layer = np.zeros(picture.shape[:2] + (4,), np.uint8)
    if painted is not None:
        layer[painted] = (255, 51, 51, 255)
    return {"background": picture, "layers": [layer], "composite": picture}


# ---- handlers called directly -------------------------------------------------------------
def test_local_edit_handler_returns_the_engine_edit_and_its_run(ctx, model, pictures):
    painted = np.zeros((SIZE, SIZE), bool)
    painted[16:, :] = True
    net_in, cells, result, in_photo, _, _, notes, run = handlers.run_local_edit(
        ctx, "tiny-smg", plain_editor(pictures["plain"], painted), pictures["gray"], "w")
    expected = engine.local_edit(model, engine.prepare(model, pictures["plain"]),
                                   engine.prepare(model, pictures["gray"]),
                                   torch.from_numpy(painted).float()[None, None], "w")
    assert np.array_equal(result, to_uint8(expected.image)[0])
    assert np.array_equal(net_in, pictures["plain"]) and in_photo is None
    assert notes == ("Network input: the editor's picture, centre crop",
                     "Reference: Network input: the GAN sample as drawn (already in the model's frame)")
    assert cells[16:].min() == 255 and cells[:16].max() == 0
    assert run.recipe["operation"] == "local_edit" and run.recipe["settings"] == {"space": "w"}
    # live painting: off answers "no change"; an unpainted stroke is silent, not an error
    n = handlers.LOCAL_EDIT_OUTPUTS
    assert handlers.live_local_edit(ctx, False, "tiny-smg", None, None, "w") == [gr.update()] * n
    quiet = handlers.live_local_edit(ctx, True, "tiny-smg", plain_editor(pictures["plain"], None),
                                     pictures["gray"], "w")
    assert quiet == [gr.update()] * n


def test_local_edit_handler_mistakes_are_readable(ctx, pictures):
    painted = np.zeros((SIZE, SIZE), bool)
    painted[4:12, 4:12] = True
    editor = plain_editor(pictures["plain"], painted)
    with pytest.raises(gr.Error, match="Pick a StyleMapGAN model"):
        handlers.run_local_edit(ctx, None, editor, pictures["gray"], "w_plus")
    with pytest.raises(gr.Error, match="mask is empty"):
        handlers.run_local_edit(ctx, "tiny-smg", plain_editor(pictures["plain"], None),
                                pictures["gray"], "w_plus")
    with pytest.raises(gr.Error, match="Add a reference picture"):
        handlers.run_local_edit(ctx, "tiny-smg", editor, None, "w_plus")
    with pytest.raises(gr.Error, match="file says 32"):
        handlers.run_local_edit(ctx, "tiny-smg-wrong", editor, pictures["gray"], "w_plus")


def test_edit_example_and_transplant_handlers(ctx, model):
    editor, reference, net_in, _, result, *_, run = handlers.run_edit_example(
        ctx, "tiny-smg", 0.7, 1, 2, "lower half", "w_plus")
    samples = to_uint8(engine.sample(model, [1, 2], 0.7))
    assert np.array_equal(editor["background"], samples[0]) and np.array_equal(reference, samples[1])
    remember_drawn(ctx, "tiny-smg", samples[0])  # as the seed row under the photo does
    assert editor["layers"][0][SIZE // 2:, :, 3].all() and not editor["layers"][0][: SIZE // 2, :, 3].any()
    assert run.recipe["seeds"] == [1, 2]
    assert run.recipe["settings"] == {"space": "w_plus", "example_region": "lower half"}
    painted = np.zeros((SIZE, SIZE), bool)
    painted[:16, :16] = True
    ref = plain_editor(samples[1], painted)
    landing, last, strip, frames, t, *_, run = handlers_transplant.run_transplant(
        ctx, "tiny-smg", samples[0], 3, None, ref, None, 0, 8, 0, 0, 16, 0)
    assert len(frames) == 3 and len(strip) == 3 and t["maximum"] == 2 and t["value"] == 2
    assert np.array_equal(frames[0], to_uint8(engine.reconstruct(
        model, engine.prepare(model, samples[0]), with_lpips=False).image)[0])
    assert handlers_transplant.pick_frame(frames, 1) is frames[1]
    assert handlers_transplant.pick_frame([], 1) == gr.update()
    with pytest.raises(gr.Error, match="Reference 1 has no painted region"):
        handlers_transplant.run_transplant(ctx, "tiny-smg", samples[0], 3, plain_editor(samples[1], None),
                                None, None, 0, 0, 0, 0, 0, 0)
    with pytest.raises(gr.Error, match="Add an original picture"):
        handlers_transplant.run_transplant(ctx, "tiny-smg", None, 3, ref, None, None, 0, 0, 0, 0, 0, 0)


def test_interpolation_runs_from_one_reconstruction_to_the_other(ctx, model, io, pictures):
    """w interpolation: frame 0 is A's reconstruction, the last B's, the middle the decoded
    mean of the two stylemaps; the handler frames both pictures and records every frame."""
    a, b = io["encoder_input"][:1], io["encoder_input"][1:2]
    frames = engine.interpolate(model, a, b, 3)
    rec = [engine.reconstruct(model, x, with_lpips=False) for x in (a, b)]
    assert torch.allclose(frames[0], rec[0].image[0], atol=1e-5)
    assert torch.allclose(frames[-1], rec[1].image[0], atol=1e-5)
    mid = model.G.synthesis((rec[0].code + rec[1].code) / 2).clamp(-1, 1)
    assert torch.allclose(frames[1], mid[0], atol=1e-5)
    with pytest.raises(UserError, match="at least 2"):
        engine.interpolate(model, a, b, 1)
    last, strip, shown, t, in_a, in_b, faces_a, faces_b, notes, run = handlers.run_interpolation(
        ctx, "tiny-smg", pictures["plain"], pictures["gray"], 4)
    assert len(shown) == 4 and [c for _, c in strip][::3] == ["t = 0.00", "t = 1.00"]
    assert t["maximum"] == 3 and np.array_equal(last, shown[-1])
    expected = to_uint8(engine.reconstruct(model, engine.prepare(model, pictures["plain"]),
                                             with_lpips=False).image)[0]
    assert np.array_equal(shown[0], expected) and np.array_equal(in_a, pictures["plain"])
    assert run.recipe["operation"] == "interpolation" and len(run.images["frame"]) == 4
    with pytest.raises(gr.Error, match="both pictures"):
        handlers.run_interpolation(ctx, "tiny-smg", pictures["plain"], None, 4)


def test_grid_transplant_copies_cells_in_w_and_pastes_where_boxes_land(ctx, model, pictures):
    """The w-space transplant through its handler: the result is the engine's, the paste mask
    the landing cells; a box that leaves the 4 x 4 grid is a readable error."""
    boxes = [((2, 2), (0, 0), 2, 2)]
    values = [2, 2, 0, 0, 2, 2] + [0] * 6  # box 2 unused
    to, taken, result, in_photo, _, _, notes, run = handlers_transplant.run_grid_transplant(
        ctx, "tiny-smg", pictures["plain"], pictures["gray"], *values)
    orig, ref = (engine.prepare(model, pictures[k]) for k in ("plain", "gray"))
    expected = engine.transplant_grid(model, orig, ref, boxes)
    assert np.array_equal(result, to_uint8(expected)[0])
    codes = engine.encode(model, torch.cat([orig, ref]))
    moved = codes[:1].clone()
    moved[..., 2:4, 2:4] = codes[1:, :, 0:2, 0:2]
    assert torch.allclose(expected, model.G.synthesis(moved).clamp(-1, 1), atol=1e-5)
    landed = run.masks["landed"] > 0
    assert landed[16:, 16:].all() and landed.sum() == 16 * 16
    assert (run.masks["taken"] > 0)[:16, :16].all() and run.recipe["settings"]["boxes"] == [[[2, 2], [0, 0], 2, 2]]
    assert np.array_equal(to[:16, :16], to_uint8(orig)[0][:16, :16])  # outline only on the landing box
    with pytest.raises(gr.Error, match="Box 1 lands at row 3.*outside the 4 x 4"):
        handlers_transplant.run_grid_transplant(ctx, "tiny-smg", pictures["plain"], pictures["gray"],
                                     3, 0, 0, 0, 2, 2, *[0] * 6)
    with pytest.raises(gr.Error, match="at least one box"):
        handlers_transplant.run_grid_transplant(ctx, "tiny-smg", pictures["plain"], pictures["gray"], *[0] * 12)


def test_held_out_accuracy_is_near_chance_for_random_labels():
    """Fewer examples than dimensions: any labels are separable, so the accuracy on the fitted
    examples is 100 % and says nothing. The reported accuracy is held out (cross-validation,
    each example classified by an SVM fitted without it): near chance for random labels,
    near 100 % for a planted attribute."""
    from core.svm import cross_validate

    gen = torch.Generator().manual_seed(0)
    accuracies = []
    for _ in range(5):  # 32 + 32 random stylemaps of 8 x 4 x 4 = 128 numbers, random labels
        codes = torch.randn(64, 8, 4, 4, generator=gen)
        found = engine.direction_from_codes(codes[:32], codes[32:])
        assert found.train_accuracy == 1 and found.held_out.folds == 10 and found.held_out.tested == 64
        accuracies.append(found.held_out.accuracy)
    assert max(accuracies) < 0.75 and 0.35 < sum(accuracies) / len(accuracies) < 0.65
    summary = found.summary()
    assert f"held-out accuracy {found.held_out.accuracy:.0%}" in summary and "10-fold" in summary
    assert "says nothing" in summary and "10,000 labelled CelebA-HQ stylemaps" in summary
    assert "10 % of each side held out" in summary
    planted = torch.randn(1, 8, 4, 4, generator=gen)
    planted = 8 * planted / planted.norm()
    codes = torch.randn(40, 8, 4, 4, generator=gen)
    assert engine.direction_from_codes(codes[:20] + planted, codes[20:]).held_out.accuracy >= 0.9
    few = engine.direction_from_codes(codes[:2] + planted, codes[2:5])  # 2 folds: 1 + 1 or 2 held out
    assert few.held_out.folds == 2 and few.held_out.tested == 5
    assert cross_validate(codes[:1].numpy(), codes[1:4].numpy()) is None  # nothing to hold out
    assert "not measurable" in engine.Direction(found.vector, found.svm, (1, 3), 1.0).summary()


def test_svm_direction_separates_a_planted_attribute(ctx, model, tmp_path):
    """Stylemaps: a direction planted in noise is found (and points its way). Pictures: the
    "with" set has a bright band, uploaded as photos; "without" are samples by seed; the
    fitted direction ranks held-out pictures with the band above those without."""
    gen = torch.Generator().manual_seed(0)
    planted = torch.randn(1, 8, 4, 4, generator=gen)
    planted /= planted.norm()
    noise = torch.randn(56, 8, 4, 4, generator=gen)  # 8 + 8 to fit, 20 + 20 held out
    found = engine.direction_from_codes(noise[:8] + 8 * planted, noise[8:16])
    assert float((found.vector * planted).sum()) > 0.6 and found.train_accuracy == 1
    scores = found.svm.decision(torch.cat([noise[16:36] + 8 * planted, noise[36:]]).numpy())
    assert ((scores[:20] > 0).mean() + (scores[20:] <= 0).mean()) / 2 >= 0.9
    with pytest.raises(UserError, match="at least 2"):
        engine.direction_from_codes(noise[:1], noise[8:])

    samples = engine.sample(model, list(range(20, 34)), 1.0)  # psi 1: no mean stylemap to compute
    banded = samples.clone()
    banded[:, :, 20:28] = (banded[:, :, 20:28] + 1).clamp(-1, 1)
    files = [png_file(tmp_path, f"with{k}.png", p) for k, p in enumerate(to_uint8(banded[:4]))]
    summary, kept, gallery, run = handlers_semantic.run_fit_direction(
        ctx, "tiny-smg", files, None, None, "27, 28, 29, 30", 1.0, True)
    assert "4 stylemaps with and 4 without" in summary and len(gallery) == 8
    settings = run.recipe["settings"]
    assert "held-out accuracy" in summary and settings["held_out"]["folds"] == 4
    assert settings["held_out_accuracy"] == settings["held_out"]["correct"] / 8
    assert kept["model"] == "tiny-smg" and run.arrays["direction"].shape == (1, 8, 4, 4)
    v = torch.from_numpy(kept["vector"]).flatten()
    held_with = engine.encode(model, banded[4:7]).flatten(1) @ v
    held_without = engine.encode(model, samples[10:13]).flatten(1) @ v
    assert held_with.min() > held_without.max()
    with pytest.raises(gr.Error, match="Without the attribute: upload photos or give seeds"):
        handlers_semantic.run_fit_direction(ctx, "tiny-smg", files, None, None, "", 1.0, True)

    # the edit: d = 0 is the reconstruction; local frames keep the unpainted cells' stylemap
    painted = np.zeros((SIZE, SIZE), bool)
    painted[:8, :8] = True
    picture = to_uint8(samples[13:14])[0]
    glob, local, net_in, cells, in_photo, run = handlers_semantic.run_semantic_edit(
        ctx, "tiny-smg", kept, plain_editor(picture, painted), 20, 3)
    assert [c for _, c in glob] == ["d = 0", "d = 10", "d = 20"] and len(local) == 3
    rec = to_uint8(engine.reconstruct(model, engine.prepare(model, picture), with_lpips=False).image)[0]
    assert np.array_equal(glob[0][0], rec) and np.array_equal(local[0][0], rec)
    assert cells[:8, :8].min() == 255 and cells[8:].max() == 0 and in_photo is None
    code = engine.encode(model, engine.prepare(model, picture))
    moved = code.clone()
    moved[..., 0, 0] += 20 * torch.from_numpy(kept["vector"])[..., 0, 0]
    expected = to_uint8(model.G.synthesis(moved).clamp(-1, 1))[0]
    assert np.abs(local[2][0].astype(int) - expected).max() <= 1
    assert run.recipe["settings"]["strengths"] == [0.0, 10.0, 20.0]
    none, empty, *_ = handlers_semantic.run_semantic_edit(ctx, "tiny-smg", kept,
                                                          plain_editor(picture, None), 20, 2)
    assert len(none) == 2 and empty == []
    with pytest.raises(gr.Error, match="Fit a direction first"):
        handlers_semantic.run_semantic_edit(ctx, "tiny-smg", None, plain_editor(picture, None), 20, 3)
    with pytest.raises(gr.Error, match="fitted on tiny-smg: fit it again"):
        handlers_semantic.run_semantic_edit(ctx, "tiny-smg-wrong", kept, plain_editor(picture, None), 20, 3)


def test_random_and_seed_picker_handlers_sample_through_the_protocol(ctx, model):
    gallery, run = handlers.run_random(ctx, "tiny-smg", "5, 6", 0.7)
    expected = to_uint8(engine.sample(model, [5, 6], 0.7))
    assert [c for _, c in gallery] == ["seed 5", "seed 6"]
    assert np.array_equal(gallery[1][0], expected[1])
    assert np.array_equal(run.arrays["z"], model.sample_latents([5, 6]).cpu().numpy())
    assert np.array_equal(handlers.sample_picture(ctx, "tiny-smg", 0.7, 6), expected[1])
    with pytest.raises(gr.Error, match="not a seed"):
        handlers.run_random(ctx, "tiny-smg", "x", 0.7)
    with pytest.raises(gr.Error, match="At most 1 seeds"):
        handlers.sample_picture(ctx, "tiny-smg", 0.7, "1, 2")
    ranges = handlers.shift_ranges(ctx, "tiny-smg")
    assert len(ranges) == 2 * engine.MAX_REFERENCES and ranges[0]["maximum"] == SIZE


def test_tab_local_edit_end_to_end(client, model, pictures, tmp_path):
    """A 60x45 upload with a painted left half and a grayscale reference: the page shows the
    cropped network input, the cells and exactly the engine's edit."""
    painted = np.zeros((45, 60), bool)
    painted[:, :30] = True
    editor = editor_value(tmp_path, "orig", pictures["big"], painted)
    ref = handle_file(png_file(tmp_path, "ref.png", pictures["gray"]))
    net_in, cells, result, *_ = client.predict("tiny-smg", editor, ref, "w_plus", api_name="/stylemap_edit")
    original = engine.prepare(model, pictures["big"])
    mask = mask_from_editor({"background": pictures["big"], "layers": [painted.astype(np.uint8) * 255]}, SIZE)
    expected = engine.local_edit(model, original, engine.prepare(model, pictures["gray"]), mask, "w_plus")
    assert np.array_equal(read_png(net_in)[..., :3], to_uint8(original)[0])
    assert np.array_equal(read_png(result)[..., :3], to_uint8(expected.image)[0])
    c = read_png(cells)
    c = c if c.ndim == 2 else c[..., 0]
    assert c.shape == (SIZE, SIZE) and c[:, :8].min() == 255 and c[:, 24:].max() == 0


def test_tab_local_edit_errors(client, pictures, tmp_path):
    ref = handle_file(png_file(tmp_path, "ref.png", pictures["plain"]))
    empty = editor_value(tmp_path, "empty", pictures["plain"], None)
    with pytest.raises(AppError, match="mask is empty"):
        client.predict("tiny-smg", empty, ref, "w_plus", api_name="/stylemap_edit")
    painted = np.zeros((SIZE, SIZE), bool)
    painted[4:12, 4:12] = True
    editor = editor_value(tmp_path, "ok", pictures["plain"], painted)
    with pytest.raises(AppError, match="reference"):
        client.predict("tiny-smg", editor, None, "w_plus", api_name="/stylemap_edit")
    with pytest.raises(AppError, match="file says 32"):
        client.predict("tiny-smg-wrong", editor, ref, "w_plus", api_name="/stylemap_edit")
    with pytest.raises(AppError, match="Unknown model|not in the list of choices"):
        client.predict("nope", editor, ref, "w_plus", api_name="/stylemap_edit")
    # an RGBA original works, and nothing computed before is lost: the same call still answers
    rgba = editor_value(tmp_path, "rgba", pictures["rgba"], painted)
    out = client.predict("tiny-smg", rgba, ref, "w", api_name="/stylemap_edit")
    assert read_png(out[2]).shape[:2] == (SIZE, SIZE)


def test_tab_transplant_end_to_end(client, model, pictures, tmp_path):
    painted = np.zeros((SIZE, SIZE), bool)
    painted[0:16, 0:16] = True
    ref1 = editor_value(tmp_path, "r1", pictures["plain"], painted)
    orig = handle_file(png_file(tmp_path, "o.png", pictures["rgba"]))
    no_ref = EMPTY_EDITOR
    landing, result, strip, t, *_ = client.predict(
        "tiny-smg", orig, 4, ref1, no_ref, no_ref, 8, 0, 0, 16, 0, 0, api_name="/stylemap_transplant")
    frames = engine.transplant(model, engine.prepare(model, pictures["rgba"]),
                                 engine.prepare(model, pictures["plain"]),
                                 torch.from_numpy(painted).float()[None, None], [(8, 16)], 4)
    assert len(strip) == 4
    assert np.array_equal(read_png(result)[..., :3], to_uint8(frames[-1:])[0])
    assert np.array_equal(read_png(strip[0]["image"])[..., :3], to_uint8(frames[:1])[0])
    assert read_png(landing).shape[:2] == (SIZE, SIZE)
    with pytest.raises(AppError, match="at least one reference"):
        client.predict("tiny-smg", orig, 4, no_ref, no_ref, no_ref, 0, 0, 0, 0, 0, 0,
                       api_name="/stylemap_transplant")
    unpainted = editor_value(tmp_path, "r2", pictures["plain"], None)
    with pytest.raises(AppError, match="Reference 2 has no painted region"):
        client.predict("tiny-smg", orig, 4, ref1, unpainted, no_ref, 0, 0, 0, 0, 0, 0,
                       api_name="/stylemap_transplant")


def test_tab_reconstruction_mixing_and_random(client, model, pictures, tmp_path):
    a = handle_file(png_file(tmp_path, "a.png", pictures["plain"]))
    b = handle_file(png_file(tmp_path, "b.png", pictures["gray"]))
    net_in, recon, text, *_ = client.predict("tiny-smg", a, api_name="/stylemap_reconstruct")
    expected = engine.reconstruct(model, engine.prepare(model, pictures["plain"]), with_lpips=False)
    assert np.array_equal(read_png(recon)[..., :3], to_uint8(expected.image)[0])
    assert f"{expected.mse:.4f}" in text and "LPIPS" in text
    coarse, fine, *_ = client.predict("tiny-smg", a, b, api_name="/stylemap_mix")
    mixed = engine.style_mix(model, engine.prepare(model, pictures["plain"]),
                               engine.prepare(model, pictures["gray"]))
    assert np.array_equal(read_png(coarse)[..., :3], to_uint8(mixed[:1])[0])
    assert np.array_equal(read_png(fine)[..., :3], to_uint8(mixed[1:])[0])
    with pytest.raises(AppError, match="both pictures"):
        client.predict("tiny-smg", a, None, api_name="/stylemap_mix")
    gallery = client.predict("tiny-smg", "5, 6", 0.7, api_name="/stylemap_random")
    assert [g["caption"] for g in gallery] == ["seed 5", "seed 6"]
    assert np.array_equal(read_png(gallery[1]["image"])[..., :3], to_uint8(engine.sample(model, [5, 6], 0.7))[1])
    with pytest.raises(AppError, match="seed"):
        client.predict("tiny-smg", "x", 0.7, api_name="/stylemap_random")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fp16_on_cuda_matches_fp32_within_visual_tolerance(io):
    """What the app runs on CUDA (fp16) against float32: within 2 grey levels of 255 (mean)."""
    half = load_model("stylemapgan", SMG_REF / "tiny.pt", {}).to("cuda", torch.float16)
    images = io["encoder_input"].cuda()
    mask = signed_to_binary(io["edit_mask"]).cuda()
    full = engine.local_edit(load_model("stylemapgan", SMG_REF / "tiny.pt", {}).cuda(),
                               images[:1], images[1:2], mask).image
    got = engine.local_edit(half, images[:1], images[1:2], mask).image
    err = (got - full).abs() * 127.5
    assert err.mean() < 2 and err.max() < 16


def test_tab_download_all_after_edit_and_random(client, pictures, tmp_path):
    """Download all packs the last run: the local edit as shown, its mask, cells and both
    stylemaps; after Random, the samples of each seed, z and the seeds."""
    from core.recipe import read_bundle

    painted = np.zeros((SIZE, SIZE), bool)
    painted[8:, :] = True
    editor = editor_value(tmp_path, "dl", pictures["plain"], painted)
    ref = handle_file(png_file(tmp_path, "dlref.png", pictures["rgba"][..., :3]))
    _, cells, result, *_ = client.predict("tiny-smg", editor, ref, "w", api_name="/stylemap_edit")
    bundle = read_bundle(client.predict(api_name="/stylemap_download"))
    assert np.array_equal(bundle.images["result"], read_png(result)[..., :3])
    assert np.array_equal(bundle.masks["painted"] > 0, painted)
    assert bundle.arrays["stylemap_original"].shape == bundle.arrays["stylemap_reference"].shape
    r = bundle.recipe
    assert r["model_id"] == "tiny-smg" and r["operation"] == "local_edit" and r["settings"] == {"space": "w"}
    gallery = client.predict("tiny-smg", "5, 6", 0.7, api_name="/stylemap_random")
    bundle = read_bundle(client.predict(api_name="/stylemap_download"))
    assert np.array_equal(bundle.images["sample_02"], read_png(gallery[1]["image"])[..., :3])
    assert bundle.recipe["seeds"] == [5, 6] and bundle.recipe["seed"] == 5 and bundle.arrays["z"].shape[0] == 2


# ---- a person's photo: framed as the model's training pictures, results pasted back ---------
@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, str]:
    """The astronaut portrait (one face), the cat (no face) and the astronaut cropped to
    512 x 400 and stored sideways in a JPEG with EXIF orientation 6 (as phones do)."""
    from skimage import data

    folder = tmp_path_factory.mktemp("stylemap-photos")
    astronaut = Image.fromarray(data.astronaut())
    astronaut.save(folder / "astronaut.png")
    Image.fromarray(data.chelsea()).save(folder / "chelsea.png")
    upright = astronaut.crop((0, 0, 512, 400))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to show": stored turned the other way
    upright.transpose(Image.Transpose.ROTATE_90).save(folder / "sideways.jpg", exif=exif, quality=95)
    return {"astronaut": str(folder / "astronaut.png"), "chelsea": str(folder / "chelsea.png"),
            "sideways": str(folder / "sideways.jpg")}


def aligned_face(path: str):
    """What the handlers must feed the network: `frame_photo`'s FFHQ-aligned 32 px face."""
    from core.faces import frame_photo
    from core.images import open_photo

    return frame_photo(open_photo(path), "ffhq", SIZE)


def outside_frame(framed, margin: int = 3) -> np.ndarray:
    """Photo pixels outside the aligned quad's bounding box (plus a margin): must not change."""
    h, w = framed.photo.height, framed.photo.width
    quad = framed.aligned.quad
    l, t = int(quad[:, 0].min()) - margin, int(quad[:, 1].min()) - margin
    r, b = int(np.ceil(quad[:, 0].max())) + margin, int(np.ceil(quad[:, 1].max())) + margin
    keep = np.ones((h, w), bool)
    keep[max(t, 0):b, max(l, 0):r] = False
    assert keep[300:, 400:].all()  # far from the face: the bottom-right corner
    return keep


def test_frame_it_puts_the_aligned_face_in_the_editor_and_the_edit_goes_back(ctx, photos):
    expected = aligned_face(photos["astronaut"])
    editor, net_in, faces, framed, notes = handlers.frame_original(ctx, "tiny-smg", photos["astronaut"], 1, False)
    face = np.asarray(expected.aligned.image)
    assert np.array_equal(editor["background"], face) and np.array_equal(net_in, face)
    assert notes == ("Network input: aligned face (FFHQ recipe)",)
    assert len(faces) == 1 and faces[0][1] == "face 1 (used)"
    painted = np.zeros((SIZE, SIZE), bool)
    painted[SIZE // 2:, :] = True  # the lower half of the aligned face
    out = handlers.run_local_edit(ctx, "tiny-smg", plain_editor(editor["background"], painted),
                                  photos["astronaut"], "w_plus", framed, 1, False)
    net_in, cells, result, in_photo, ref_in, ref_faces, notes, run = out
    assert np.array_equal(net_in, face) and np.array_equal(ref_in, face)
    assert notes == ("Network input: aligned face (FFHQ recipe)",
                     "Reference: Network input: aligned face (FFHQ recipe)")
    assert len(ref_faces) == 1
    photo = np.asarray(framed.photo)
    got = np.asarray(in_photo)
    assert got.shape == photo.shape == (512, 512, 3)
    keep = outside_frame(framed)
    assert np.array_equal(got[keep], photo[keep]) and np.array_equal(got[300:, 400:], photo[300:, 400:])
    assert not np.array_equal(got, photo)
    # only where painted: the photo under the frame's unpainted upper rows is kept
    q = framed.aligned.quad
    v, u = np.mgrid[2:SIZE // 2 - 6, 4:SIZE - 4]
    xy = q[0] + ((u[..., None] + 0.5) * (q[3] - q[0]) + (v[..., None] + 0.5) * (q[1] - q[0])) / SIZE
    x, y = np.rint(xy[..., 0]).astype(int), np.rint(xy[..., 1]).astype(int)
    assert np.array_equal(got[y, x], photo[y, x])
    assert np.array_equal(run.images["result_in_photo"], got)
    assert np.array_equal(run.images["photo"], photo)
    # another picture in the editor (a sample): nothing to paste back into the photo
    other = handlers.run_local_edit(ctx, "tiny-smg", plain_editor(np.zeros((SIZE, SIZE, 3), np.uint8), painted),
                                    photos["astronaut"], "w", framed)
    assert other[3] is None and "centre crop" in other[6][0]


def test_reconstruction_and_mixing_frame_photos_and_a_faceless_photo_needs_plain(ctx, model, photos):
    net_in, recon, text, in_photo, faces, notes, run = handlers.run_reconstruction(
        ctx, "tiny-smg", photos["astronaut"])
    framed = aligned_face(photos["astronaut"])
    face = np.asarray(framed.aligned.image)
    assert np.array_equal(net_in, face) and notes == (framed.note(),) and len(faces) == 1
    expected = engine.reconstruct(model, engine.pil_to_tensor(framed.aligned.image), with_lpips=False)
    assert np.array_equal(recon, to_uint8(expected.image)[0])
    got, photo = np.asarray(in_photo), np.asarray(framed.photo)
    assert got.shape == photo.shape
    keep = outside_frame(framed)
    assert np.array_equal(got[keep], photo[keep]) and not np.array_equal(got, photo)
    assert set(run.images) >= {"result_in_photo", "photo", "input", "reconstruction"}
    with pytest.raises(gr.Error, match="No face was found.*Plain framing"):
        handlers.run_reconstruction(ctx, "tiny-smg", photos["chelsea"])
    net_in, _, _, in_photo, faces, notes, _ = handlers.run_reconstruction(
        ctx, "tiny-smg", photos["chelsea"], 1, True)
    assert notes == ("Network input: centre crop",) and faces == [] and net_in.shape == (SIZE, SIZE, 3)
    assert in_photo.size == (451, 300)
    coarse, fine, in_a, in_b, faces_a, faces_b, notes, _, _ = handlers.run_style_mix(
        ctx, "tiny-smg", photos["astronaut"], photos["chelsea"], 1, False, 1, True)
    assert np.array_equal(in_a, face) and notes[1] == "B: Network input: centre crop"
    assert len(faces_a) == 1 and faces_b == []
    mixed = engine.style_mix(model, engine.pil_to_tensor(framed.aligned.image),
                               engine.pil_to_tensor(in_b))
    assert np.array_equal(coarse, to_uint8(mixed[:1])[0])
    with pytest.raises(gr.Error, match="Plain framing"):
        handlers.run_style_mix(ctx, "tiny-smg", photos["astronaut"], photos["chelsea"])


def test_an_exif_rotated_photo_arrives_upright(ctx, photos):
    """Stored sideways with orientation 6: the face is found upright, the result goes back
    into the upright 512 x 400 photo."""
    editor, net_in, faces, framed, _ = handlers.frame_original(ctx, "tiny-smg", photos["sideways"])
    assert framed.photo.size == (512, 400) and len(faces) == 1
    in_photo = handlers.run_reconstruction(ctx, "tiny-smg", photos["sideways"])[3]
    assert in_photo.size == (512, 400)
    with pytest.raises(gr.Error, match="Upload your photo"):
        handlers.frame_original(ctx, "tiny-smg", None)


@pytest.mark.slow
def test_tab_photo_end_to_end(client, photos, tmp_path):
    """The real photo through the page: reconstruction shows the aligned face and the result
    in the photo; "Frame it" puts the face in the editor, and the painted edit comes back
    pasted into the photo (and into Download all)."""
    from core.recipe import read_bundle

    framed = aligned_face(photos["astronaut"])
    face, photo = np.asarray(framed.aligned.image), np.asarray(framed.photo)
    keep = outside_frame(framed)
    net_in, recon, _, in_photo, faces = client.predict(
        "tiny-smg", handle_file(photos["astronaut"]), 1, False, api_name="/stylemap_reconstruct")
    assert np.array_equal(read_png(net_in)[..., :3], face) and len(faces) == 1
    got = read_png(in_photo)[..., :3]
    assert got.shape == photo.shape and np.array_equal(got[keep], photo[keep])
    editor, net_in, faces = client.predict("tiny-smg", handle_file(photos["astronaut"]), 1, False,
                                           api_name="/stylemap_frame")
    background = editor["background"]
    assert np.array_equal(read_png(background if isinstance(background, str) else background["path"])[..., :3], face)
    assert np.array_equal(read_png(net_in)[..., :3], face) and len(faces) == 1
    painted = np.zeros((SIZE, SIZE), bool)
    painted[SIZE // 2:, :] = True
    out = client.predict("tiny-smg", editor_value(tmp_path, "framed", face, painted),
                         handle_file(photos["astronaut"]), "w_plus", 1, False, api_name="/stylemap_edit")
    got = read_png(out[3])[..., :3]
    assert got.shape == photo.shape and np.array_equal(got[keep], photo[keep])
    assert not np.array_equal(got, photo)
    bundle = read_bundle(client.predict(api_name="/stylemap_download"))
    assert np.array_equal(bundle.images["result_in_photo"], got)
    assert np.array_equal(bundle.images["photo"], photo)
    # the transplant takes the photo too: the aligned face in, the frame back where it lands
    ref = editor_value(tmp_path, "tref", face, painted)
    _, _, _, _, in_photo, net_in, faces = client.predict(
        "tiny-smg", handle_file(photos["astronaut"]), 3, ref, EMPTY_EDITOR, EMPTY_EDITOR,
        0, 0, 0, 0, 0, 0, 1, False, api_name="/stylemap_transplant")
    assert np.array_equal(read_png(net_in)[..., :3], face) and len(faces) == 1
    got = read_png(in_photo)[..., :3]
    assert got.shape == photo.shape and np.array_equal(got[keep], photo[keep])


def test_transplant_frames_the_photo_and_pastes_the_frame_at_t_where_references_land(ctx, model, photos):
    """The original is a photo: its aligned face is the network input, and the frame at t goes
    back into the photo only where the references land (on Transplant and on the t slider)."""
    framed = aligned_face(photos["astronaut"])
    face = np.asarray(framed.aligned.image)
    painted = np.zeros((SIZE, SIZE), bool)
    painted[:8, :8] = True  # the reference's top-left cell, landed 16 px right and down
    ref = plain_editor(to_uint8(engine.sample(model, [2], 0.7))[0], painted)
    out = handlers_transplant.run_transplant(ctx, "tiny-smg", photos["astronaut"], 3, ref, None, None,
                                  16, 0, 0, 16, 0, 0, 1, False)
    landing, last, strip, frames, t, in_photo, net_in, faces, kept, landed, notes, run = out
    assert np.array_equal(net_in, face) and notes == (framed.note(),) and len(faces) == 1
    expected = np.zeros((SIZE, SIZE), np.float32)
    expected[16:24, 16:24] = 1
    assert np.array_equal(landed, expected)
    frames_ref = engine.transplant(model, engine.pil_to_tensor(framed.aligned.image),
                                     engine.pil_to_tensor(Image.fromarray(ref["background"])),
                                     torch.from_numpy(painted).float()[None, None], [(16, 16)], 3)
    assert np.array_equal(last, to_uint8(frames_ref[-1:])[0])
    photo, got = np.asarray(framed.photo), np.asarray(in_photo)
    assert got.shape == photo.shape == (512, 512, 3)
    keep = outside_frame(framed)
    assert np.array_equal(got[keep], photo[keep]) and not np.array_equal(got, photo)
    assert np.array_equal(np.asarray(framed.paste(last, expected)), got)
    assert np.array_equal(run.images["result_in_photo"], got)
    assert np.array_equal(run.images["photo"], photo)
    # the t slider: the frame at t, pasted the same way; nothing kept: no photo update
    frame, at_t = handlers_transplant.pick_frame_in_photo(frames, 0, kept, landed)
    assert frame is frames[0] and np.array_equal(np.asarray(at_t), np.asarray(framed.paste(frames[0], landed)))
    assert at_t.size == framed.photo.size and np.array_equal(np.asarray(at_t)[keep], photo[keep])
    assert handlers_transplant.pick_frame_in_photo(frames, 1, None, None) == (frames[1], gr.update())
    # a faceless photo needs plain framing; the old call (no face, plain) still works
    with pytest.raises(gr.Error, match="Plain framing"):
        handlers_transplant.run_transplant(ctx, "tiny-smg", photos["chelsea"], 3, ref, None, None,
                                0, 0, 0, 0, 0, 0)
    plain = handlers_transplant.run_transplant(ctx, "tiny-smg", photos["chelsea"], 3, ref, None, None,
                                    0, 0, 0, 0, 0, 0, 1, True)
    assert plain[5].size == (451, 300) and plain[10] == ("Network input: centre crop",)


def test_style_mix_pastes_the_coarse_mix_into_photo_a(ctx, model, photos):
    framed = aligned_face(photos["astronaut"])
    coarse, _, in_a, *_, in_photo, run = handlers.run_style_mix(
        ctx, "tiny-smg", photos["astronaut"], photos["chelsea"], 1, False, 1, True)
    assert np.array_equal(in_a, np.asarray(framed.aligned.image))
    photo, got = np.asarray(framed.photo), np.asarray(in_photo)
    assert got.shape == photo.shape
    keep = outside_frame(framed)
    assert np.array_equal(got[keep], photo[keep]) and not np.array_equal(got, photo)
    assert np.array_equal(got, np.asarray(framed.paste(coarse)))
    assert np.array_equal(run.images["result_in_photo"], got)
    assert np.array_equal(run.images["photo"], photo)
