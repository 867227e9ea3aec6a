"""The Neural Collage tab: sCBN class maps and feature blending on the tiny BigGAN-deep in the
published layout (loaded through the registry), projection, Poisson paste-back, a real photo
framed as the model's training pictures and the edit back in it at full resolution, and the
tab driven end to end through gradio_client."""
from __future__ import annotations

import json
import shutil

import gradio as gr
import numpy as np
import pytest
import torch
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from helpers import (EMPTY_EDITOR, REFERENCE, TINY_SG2_CONFIG, app_client, editor_value, read_png,
                     tiny_sg2_entry, write_registry)
from core.context import AppContext
from core.errors import UserError
from core.faces import frame_for_model, frame_photo
from core.hub import load_registry
from core.images import open_photo, to_uint8
from core.models import load_model
from core.models.biggan import truncated_noise
from core.models.generator import seed_normal
from core.models.stylegan2 import load_stylegan2
from demos import ncollage
from demos.ncollage import Picture

BIGGAN_REF = REFERENCE / "biggan"
SIZE = 32  # the tiny BigGAN-deep renders 32 px, 10 classes
RED, GREEN = (255, 59, 48), (52, 199, 89)


@pytest.fixture(scope="module")
def biggan_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("biggan")
    shutil.copy(BIGGAN_REF / "tiny-pytorch_model.bin", folder / "pytorch_model.bin")
    return folder / "pytorch_model.bin", json.loads((BIGGAN_REF / "tiny-config.json").read_text())


@pytest.fixture(scope="module")
def G(biggan_files):
    path, config = biggan_files
    return load_model("biggan-deep", path, config).eval()


def _picture(G, seed=1, cls=3, trunc=0.4) -> Picture:
    return ncollage.picture_from_seed(G, seed, cls, trunc)


def _regions(*boxes) -> torch.Tensor:
    m = torch.zeros(len(boxes), 1, SIZE, SIZE)
    for k, (y0, y1, x0, x1) in enumerate(boxes):
        m[k, :, y0:y1, x0:x1] = 1
    return m


# ---- classes and maps --------------------------------------------------------------------------
def test_parse_class_accepts_names_indices_and_suggests():
    assert ncollage.parse_class("207: golden retriever") == 207
    assert ncollage.parse_class("Golden Retriever") == 207
    assert ncollage.parse_class("3") == 3
    with pytest.raises(UserError, match="golden retriever"):
        ncollage.parse_class("golden retreiver")
    with pytest.raises(UserError, match="not an ImageNet class"):
        ncollage.parse_class("")


def test_class_maps_are_convex_and_follow_the_regions():
    base = ncollage.one_hot(0, 10)
    targets = torch.cat([ncollage.one_hot(3, 10), ncollage.one_hot(5, 10)])
    regions = _regions((0, 16, 0, 32), (8, 24, 0, 32))  # at 16 px: rows 0-8 and 4-12
    maps, weights = ncollage.class_maps(base, regions, targets, [1.0, 0.5], res=16)
    assert maps.shape == (1, 10, 16, 16) and weights.shape == (3, 1, 16, 16)
    assert torch.allclose(maps.sum(1), torch.ones(1, 16, 16)) and maps.min() >= 0
    assert torch.equal(maps[0, :, 0, 0], ncollage.one_hot(3, 10)[0])  # only region 1
    assert torch.allclose(maps[0, :, 10, 0], torch.tensor([.5, 0, 0, 0, 0, .5, 0, 0, 0, 0]))
    assert torch.allclose(maps[0, :, 6, 0], torch.tensor([0, 0, 0, 1 / 1.5, 0, .5 / 1.5, 0, 0, 0, 0]))
    assert torch.equal(maps[0, :, 15, 0], base[0])  # unpainted: the base class


def test_layer_presets_split_the_condition_points(G):
    points = G.condition_points()
    first, rest = ncollage.layer_preset(G, "first"), ncollage.layer_preset(G, "all but first")
    assert first and rest and sorted(first + rest) == list(range(len(points)))
    assert all(points[i][1] == 4 for i in first)
    assert ncollage.layer_preset(G, "all") == list(range(len(points)))


# ---- sCBN ----------------------------------------------------------------------------------------
def test_label_collage_before_is_the_plain_picture_and_zero_intensity_changes_nothing(G):
    pic = _picture(G)
    plain = ncollage.render(G, [pic], 0.4)
    regions = _regions((0, 16, 0, 16))
    before, edits, _ = ncollage.label_collage(G, pic, regions, [5], [1.0], 0.4,
                                              ncollage.layer_preset(G, "all"), frames=(0.0, 1.0))
    assert torch.allclose(before, plain, atol=1e-5)
    assert torch.allclose(edits[0], plain[0], atol=1e-5)
    assert (edits[1] - plain[0]).abs().max() > 1e-3


def test_first_layers_only_and_later_layers_differ(G):
    pic = _picture(G)
    regions = _regions((0, 32, 0, 16))  # left half becomes class 5
    outs = {}
    for preset in ("first", "all but first", "all"):
        _, edits, _ = ncollage.label_collage(G, pic, regions, [5], [1.0], 0.4,
                                             ncollage.layer_preset(G, preset))
        outs[preset] = edits[0]
    plain = ncollage.render(G, [pic], 0.4)[0]
    other = ncollage.render(G, [Picture(pic.latent, ncollage.one_hot(5, 10))], 0.4)[0]
    for a in outs.values():
        assert (a - plain).abs().max() > 1e-3 and (a - other).abs().max() > 1e-3
    assert (outs["first"] - outs["all but first"]).abs().max() > 1e-3


def test_label_collage_bad_input(G):
    pic = _picture(G)
    with pytest.raises(UserError, match="Paint a region"):
        ncollage.label_collage(G, pic, torch.zeros(1, 1, SIZE, SIZE), [5], [1.0], 0.4, [0])
    with pytest.raises(UserError, match="intensity is 0"):
        ncollage.label_collage(G, pic, _regions((0, 8, 0, 8)), [5], [0.0], 0.4, [0])
    with pytest.raises(UserError, match="at least one layer"):
        ncollage.label_collage(G, pic, _regions((0, 8, 0, 8)), [5], [1.0], 0.4, [])
    with pytest.raises(UserError, match="does not exist"):
        ncollage.label_collage(G, pic, _regions((0, 8, 0, 8)), [207], [1.0], 0.4, [0])


# ---- feature blending ---------------------------------------------------------------------------
def test_blend_with_no_region_weight_is_the_plain_base_exactly(G):
    base, ref = _picture(G, 1), _picture(G, 2, cls=6)
    points = [p for _, p in ncollage.feature_points(G)]
    before, after, refs = ncollage.feature_blend(G, base, [ref], _regions((0, 8, 0, 8)), [(0, 0)],
                                                 points, 0.4, strength=0.0)
    assert torch.equal(after, before)
    assert torch.allclose(before, ncollage.render(G, [base], 0.4), atol=1e-5)
    assert torch.allclose(refs, ncollage.render(G, [ref], 0.4), atol=1e-5)


def test_blend_changes_the_picture_and_shifts_move_it(G):
    base, ref = _picture(G, 1), _picture(G, 2, cls=6)
    regions = _regions((8, 24, 8, 24))
    _, a, _ = ncollage.feature_blend(G, base, [ref], regions, [(0, 0)], [0], 0.4)
    _, b, _ = ncollage.feature_blend(G, base, [ref], regions, [(8, 0)], [0], 0.4)
    plain = ncollage.render(G, [base], 0.4)
    assert (a - plain).abs().max() > 1e-3 and (a - b).abs().max() > 1e-3


def test_blend_bad_input(G):
    base = _picture(G)
    with pytest.raises(UserError, match="reference"):
        ncollage.feature_blend(G, base, [], torch.zeros(0, 1, SIZE, SIZE), [], [0], 0.4)
    with pytest.raises(UserError, match="regions are empty"):
        ncollage.feature_blend(G, base, [base], torch.zeros(1, 1, SIZE, SIZE), [(0, 0)], [0], 0.4)


# ---- real photos ----------------------------------------------------------------------------------
def test_projection_lowers_its_loss_and_paste_back_keeps_the_photo_outside(biggan_files):
    path, config = biggan_files
    G = load_model("biggan-deep", path, config).float()
    target = ncollage.render(G, [_picture(G, 7, cls=2)], 0.4)
    _, image, losses = ncollage.project(G, target, 2, 0.4, steps=12, seed=0)
    assert losses[-1] < losses[0] and image.shape == target.shape
    region = _regions((8, 24, 8, 24))[:1]
    edited = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    pasted = ncollage.paste_back(target, edited, region)
    outside = region[0, 0] == 0
    assert torch.allclose(pasted[0][:, outside], target[0][:, outside], atol=1e-6)
    with pytest.raises(UserError, match="Nothing was edited"):
        ncollage.paste_back(target, edited, torch.zeros_like(region))


# ---- the handlers, called directly (no app) ------------------------------------------------
@pytest.fixture(scope="module")
def registry_file(biggan_files, tmp_path_factory):
    path, config = biggan_files
    tmp = tmp_path_factory.mktemp("ncollage-registry")
    sg2 = tmp / "tiny-sg2.pt"
    shutil.copy(REFERENCE / "stylegan2" / "tiny.pt", sg2)
    return write_registry(tmp / "weights.json", [
        {"id": "tiny-biggan", "arch": "biggan-deep", "config": config, "path": str(path),
         "meta": {"framing": "center"}, "license": "test", "used_by": ["ncollage"]},
        tiny_sg2_entry("tiny-sg2", sg2, used_by=["ncollage"])])


@pytest.fixture(scope="module")
def ctx(registry_file):
    return AppContext(load_registry(registry_file), torch.device("cpu"))


def _editor(picture: np.ndarray, painted: list[np.ndarray], colours: list[tuple]) -> dict:
    """An ImageEditor value as the handlers receive it (type="numpy"): RGBA arrays."""
    rgba = np.concatenate([picture, np.full(picture.shape[:2] + (1,), 255, np.uint8)], -1)
    layer = np.zeros_like(rgba)
    composite = rgba.copy()
    for region, rgb in zip(painted, colours):
        layer[region] = composite[region] = (*rgb, 255)
    return {"background": rgba, "layers": [layer], "composite": composite}


def test_pictures_from_seeds_use_each_familys_own_sampler(ctx):
    """BigGAN-deep: the port's truncated normal scaled by the truncation; StyleGAN2: the
    shared `seed_normal` z, mapped and truncated, as w+. The shift sliders follow the frame."""
    Gb, Gs = ctx.model("tiny-biggan"), ctx.model("tiny-sg2")
    pic = ncollage.picture_from_seed(Gb, 5, 3, 0.4)
    assert torch.equal(pic.latent, truncated_noise(1, Gb.z_dim, 0.4, 5))
    assert torch.equal(pic.classes, ncollage.one_hot(3, 10))
    pic = ncollage.picture_from_seed(Gs, 4, None, 0.7)
    with torch.inference_mode():
        w = Gs.truncated_w(seed_normal([4], Gs.style_dim), 0.7)
    assert pic.classes is None and torch.equal(pic.latent, Gs.w_plus(w))
    updates = ncollage.shift_ranges(ctx, "tiny-sg2")
    assert len(updates) == 2 * ncollage.MAX_REFS and updates[0]["maximum"] == SIZE
    assert ncollage.frame_size(ctx, None) == ncollage.DEFAULT_FRAME


def test_render_label_and_sweep_handlers_match_the_engine(ctx, G):
    state, image, shown, points, run = ncollage.render_base(ctx, "tiny-biggan", "3: tiger shark", 1, 0.4)
    pic = _picture(G, 1, 3, 0.4)
    assert np.array_equal(image, to_uint8(ncollage.render(G, [pic], 0.4))[0]) and shown is image
    assert points["choices"] == ncollage.feature_points(G) and points["value"] == [0, 1]
    assert state["class"] == 3 and run.recipe["seed"] == 1 and run.recipe["operation"] == "render"
    left = np.zeros((SIZE, SIZE), bool)
    left[:, :12] = True
    editor = _editor(image, [left], [RED])
    before, after, class_map, edit, run = ncollage.apply_labels(
        ctx, "tiny-biggan", state, editor, "all", 0, "5", "6", "7", 1.0, 1.0, 1.0)
    regions = torch.from_numpy(left.astype(np.float32))[None, None]
    _, edits, _ = ncollage.label_collage(G, pic, regions, [5], [1.0], 0.4, ncollage.layer_preset(G, "all"))
    assert np.array_equal(after, to_uint8(edits)[0]) and np.array_equal(before, image)
    assert edit["region"].shape == (1, 1, SIZE, SIZE) and run.recipe["settings"]["classes"] == [5]
    *same, gallery, run = ncollage.sweep_labels(ctx, "tiny-biggan", state, editor, "all", 0,
                                               "5", "6", "7", 1.0, 1.0, 1.0)
    assert np.array_equal(same[1], after) and len(gallery) == 1 + len(ncollage.SWEEP)
    assert run.recipe["operation"] == "label_sweep"


def test_handlers_refuse_mistakes_with_readable_errors(ctx):
    labels = ("all", 0, "5", "6", "7", 1.0, 1.0, 1.0)
    with pytest.raises(gr.Error, match="Pick a model first"):
        ncollage.render_base(ctx, None, "3", 1, 0.4)
    with pytest.raises(gr.Error, match="Render a base picture"):
        ncollage.apply_labels(ctx, "tiny-biggan", None, EMPTY_EDITOR, *labels)
    state, image, *_ = ncollage.render_base(ctx, "tiny-sg2", "3", 2, 1.0)
    assert state["class"] is None
    with pytest.raises(gr.Error, match="render it again for tiny-biggan"):
        ncollage.apply_labels(ctx, "tiny-biggan", state, EMPTY_EDITOR, *labels)
    painted = _editor(image, [np.ones((SIZE, SIZE), bool)], [RED])
    with pytest.raises(gr.Error, match="pick a BigGAN-deep model"):
        ncollage.apply_labels(ctx, "tiny-sg2", state, painted, *labels)
    with pytest.raises(gr.Error, match="Render a reference"):
        ncollage.blend_features(ctx, "tiny-sg2", state, [0], 1.0, None, None, None, None, 0, 0, 0, 0)
    with pytest.raises(gr.Error, match="Project a photo first"):
        ncollage.paste_edit(ctx, state, None)
    with pytest.raises(gr.Error, match="offered for BigGAN-deep"):
        ncollage.project_photo(ctx, "tiny-sg2", image, "3", 10, 0.4)
    # while painting: an incomplete input leaves the outputs alone instead of an error
    assert ncollage.live_labels(ctx, True, "tiny-biggan", None, EMPTY_EDITOR, *labels) == [gr.update()] * 5
    assert ncollage.live_labels(ctx, False, "tiny-biggan", None, EMPTY_EDITOR, *labels) == [gr.update()] * 5


# ---- a real photo in, the edit back in it at full resolution ----------------------------------
@pytest.fixture(scope="module")
def cat_photo(tmp_path_factory) -> str:
    """scikit-image's CC0 cat photo (451 x 300, landscape: the centre crop leaves bands)."""
    from skimage import data

    path = tmp_path_factory.mktemp("photos") / "chelsea.png"
    Image.fromarray(data.chelsea()).save(path)
    return str(path)


def _left_strip(width: int = 12) -> np.ndarray:
    left = np.zeros((SIZE, SIZE), bool)
    left[:, :width] = True
    return left


def test_photo_is_framed_projected_and_the_edit_lands_in_the_full_photo(ctx, cat_photo):
    """The network input is the model's framing of the upright photo (centre crop for
    ImageNet), kept in the state; the paste-back is the Poisson blend in the frame, put back
    into the photo at its size, and outside the painted region the photo is byte-identical."""
    photo = np.asarray(open_photo(cat_photo))
    h, w = photo.shape[:2]
    state, projection, base_image, editor_image, info, network, run = ncollage.project_photo(
        ctx, "tiny-biggan", cat_photo, "3", 2, 0.4)
    expected = frame_photo(open_photo(cat_photo), "center", SIZE).aligned.image
    assert np.array_equal(network["value"], np.asarray(expected))
    assert network["label"] == "Network input: centre crop"
    assert state["framed"].photo.size == (w, h) and torch.equal(
        state["photo"], torch.from_numpy(np.array(expected)).permute(2, 0, 1)[None].float() / 127.5 - 1)
    assert run.recipe["operation"] == "project" and np.array_equal(run.images["photo"], photo)
    assert run.recipe["settings"]["framing"] == "center"
    _, _, _, edit, _ = ncollage.apply_labels(
        ctx, "tiny-biggan", state, _editor(base_image, [_left_strip()], [RED]), "all", 0,
        "5", "6", "7", 1.0, 1.0, 1.0)
    pasted, in_photo, run = ncollage.paste_edit(ctx, state, edit)
    poisson = to_uint8(ncollage.paste_back(state["photo"], edit["image"], edit["region"]))[0]
    assert np.array_equal(pasted, poisson) and pasted.shape == (SIZE, SIZE, 3)
    assert in_photo.shape == photo.shape
    left = (w - h) // 2  # the centre crop's left edge; its frame columns 0-11 were painted
    right_of_edit = left + h * 20 // SIZE
    assert np.array_equal(in_photo[:, right_of_edit:], photo[:, right_of_edit:])
    assert np.array_equal(in_photo[:, :left - 2], photo[:, :left - 2])  # the band outside the crop
    assert not np.array_equal(in_photo[:, left:left + h // 4], photo[:, left:left + h // 4])
    assert np.array_equal(run.images["result_in_photo"], in_photo)
    assert np.array_equal(run.images["photo"], photo) and run.recipe["operation"] == "paste_back"


def test_photo_mistakes_and_sideways_phone_photos(ctx, cat_photo, tmp_path):
    """A JPEG stored sideways with EXIF orientation 6 arrives upright; a file that is not a
    picture and a missing photo are refused with readable messages."""
    upright = Image.open(cat_photo)
    sideways = upright.transpose(Image.Transpose.ROTATE_90)  # what a phone stores
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to show"
    path = tmp_path / "phone.jpg"
    sideways.save(path, quality=95, exif=exif)
    state, *_, network, _ = ncollage.project_photo(ctx, "tiny-biggan", str(path), "3", 1, 0.4)
    assert state["framed"].photo.size == upright.size
    diff = np.abs(np.asarray(state["framed"].photo, np.int16) - np.asarray(upright, np.int16))
    assert diff.mean() < 4  # JPEG's loss only
    near = np.asarray(frame_photo(upright, "center", SIZE).aligned.image, np.int16)
    assert np.abs(network["value"].astype(np.int16) - near).mean() < 4
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    with pytest.raises(gr.Error, match="not a picture"):
        ncollage.project_photo(ctx, "tiny-biggan", str(bad), "3", 1, 0.4)
    with pytest.raises(gr.Error, match="No photo was given"):
        ncollage.project_photo(ctx, "tiny-biggan", None, "3", 1, 0.4)


def test_photo_framing_follows_the_registry(biggan_files, cat_photo, tmp_path):
    """The framing is the registry's (`meta.framing`), not a fixed crop: a squash entry gets
    the whole photo squashed."""
    path, config = biggan_files
    registry = write_registry(tmp_path / "weights.json", [
        {"id": "tiny-biggan-squash", "arch": "biggan-deep", "config": config, "path": str(path),
         "meta": {"framing": "squash"}, "license": "test", "used_by": ["ncollage"]}])
    squash_ctx = AppContext(load_registry(registry), torch.device("cpu"))
    framed = frame_for_model(squash_ctx.registry, "tiny-biggan-squash", cat_photo, SIZE)
    assert framed.aligned.recipe == "squash"
    assert framed.note() == "Network input: squashed to a square (no crop)"
    assert np.array_equal(np.asarray(framed.aligned.image),
                          np.asarray(frame_photo(open_photo(cat_photo), "squash", SIZE).aligned.image))


# ---- the tab through gradio_client -------------------------------------------------------------
@pytest.fixture(scope="module")
def client(registry_file):
    with app_client(registry_file) as c:
        yield c


def test_tab_label_collage_end_to_end(client, G, tmp_path):
    out = client.predict("tiny-biggan", "3: tiger shark", 1, 0.4, api_name="/ncollage_render")
    base = read_png(out[0] if isinstance(out, (list, tuple)) else out)[..., :3]
    pic = _picture(G, 1, 3, 0.4)
    assert np.array_equal(base, to_uint8(ncollage.render(G, [pic], 0.4))[0])
    left = np.zeros((SIZE, SIZE), bool)
    left[:, :12] = True
    right = np.zeros((SIZE, SIZE), bool)
    right[:, 20:] = True
    painted = editor_value(tmp_path, "lc", base, [left, right], [RED, GREEN])
    before, after, class_map = client.predict(
        "tiny-biggan", painted, "all", 0, "5: electric ray", "6: stingray", "7: cock", 1.0, 1.0, 1.0,
        api_name="/ncollage_label")
    regions = torch.from_numpy(np.stack([left, right]).astype(np.float32))[:, None]
    _, edits, _ = ncollage.label_collage(G, pic, regions, [5, 6], [1.0, 1.0], 0.4,
                                         ncollage.layer_preset(G, "all"))
    assert np.array_equal(read_png(after)[..., :3], to_uint8(edits)[0])
    assert np.array_equal(read_png(before)[..., :3], base)
    shown = read_png(class_map)[..., :3]
    assert shown[16, 2, 0] > 200 and shown[16, 30, 1] > 150 and (shown[16, 16] == 128).all()

    with pytest.raises(AppError, match="Paint a region"):
        client.predict("tiny-biggan", editor_value(tmp_path, "none", base, None), "all", 0,
                       "5", "6", "7", 1.0, 1.0, 1.0, api_name="/ncollage_label")
    with pytest.raises(AppError, match="not an ImageNet class"):
        client.predict("tiny-biggan", painted, "all", 0, "no such thing", "6", "7", 1.0, 1.0, 1.0,
                       api_name="/ncollage_label")
    with pytest.raises(AppError, match="intensity is 0"):
        client.predict("tiny-biggan", painted, "all", 0, "5", "6", "7", 0.0, 0.0, 1.0,
                       api_name="/ncollage_label")
    with pytest.raises(AppError, match="render it again"):
        client.predict("tiny-sg2", painted, "all", 0, "5", "6", "7", 1.0, 1.0, 1.0,
                       api_name="/ncollage_label")


def test_tab_feature_blend_and_photo(client, G, tmp_path):
    client.predict("tiny-biggan", "3", 1, 0.4, api_name="/ncollage_render")
    ref_value = client.predict("tiny-biggan", "6", 2, 0.4, api_name="/ncollage_reference_1")
    ref = read_png(ref_value if isinstance(ref_value, str) else ref_value["background"])[..., :3]
    take = np.zeros((SIZE, SIZE), bool)
    take[8:24, 8:24] = True
    before, after, blend_map = client.predict(
        "tiny-biggan", [0, 1], 1.0, editor_value(tmp_path, "ref", ref, take),
        {"background": None, "layers": [], "composite": None}, 0, 0, 0, 0,
        api_name="/ncollage_blend")
    _, expected, _ = ncollage.feature_blend(G, _picture(G, 1, 3), [_picture(G, 2, 6)],
                                            torch.from_numpy(take.astype(np.float32))[None, None],
                                            [(0, 0)], [0, 1], 0.4)
    assert np.array_equal(read_png(after)[..., :3], to_uint8(expected)[0])
    with pytest.raises(AppError, match="Project a photo first"):
        client.predict(api_name="/ncollage_paste")


def test_tab_real_photo_end_to_end(client, cat_photo, tmp_path):
    """Upload the photo file, project it, paint a label, paste back: the network input is the
    centre crop, the result in the photo has the photo's size and its pixels outside the
    edit, and "Download all" holds the full-resolution result."""
    from core.recipe import read_bundle

    photo = np.asarray(open_photo(cat_photo))
    h, w = photo.shape[:2]
    projection, base_image, _, info, network = client.predict(
        "tiny-biggan", handle_file(cat_photo), "3", 10, 0.4, api_name="/ncollage_project")
    expected = np.asarray(frame_photo(open_photo(cat_photo), "center", SIZE).aligned.image)
    assert network["label"] == "Network input: centre crop" and "Loss" in info  # picture + its note
    assert np.array_equal(read_png(network["value"])[..., :3], expected)
    base = read_png(base_image)[..., :3]
    client.predict("tiny-biggan", editor_value(tmp_path, "photo", base, [_left_strip()], [RED]),
                   "all", 0, "5", "6", "7", 1.0, 1.0, 1.0, api_name="/ncollage_label")
    pasted, in_photo = client.predict(api_name="/ncollage_paste")
    assert read_png(pasted).shape[:2] == (SIZE, SIZE)
    full = read_png(in_photo)[..., :3]
    right_of_edit = (w - h) // 2 + h * 20 // SIZE
    assert full.shape == photo.shape and np.array_equal(full[:, right_of_edit:], photo[:, right_of_edit:])
    bundle = read_bundle(client.predict(api_name="/ncollage_download"))
    assert np.array_equal(bundle.images["result_in_photo"], full)
    assert np.array_equal(bundle.images["photo"], photo)


def test_tab_feature_blend_on_stylegan2(client, tmp_path):
    """The same blend on StyleGAN2 (the paper's FFHQ use): class inputs are ignored, the
    layers are the synthesis layers; the tab's result equals the engine's."""
    G = load_stylegan2(REFERENCE / "stylegan2" / "tiny.pt", **TINY_SG2_CONFIG)
    client.predict("tiny-sg2", "3", 4, 1.0, api_name="/ncollage_render")
    ref_value = client.predict("tiny-sg2", "3", 5, 1.0, api_name="/ncollage_reference_1")
    ref = read_png(ref_value if isinstance(ref_value, str) else ref_value["background"])[..., :3]
    take = np.zeros((SIZE, SIZE), bool)
    take[:16, :] = True
    _, after, _ = client.predict(
        "tiny-sg2", [0, 2], 1.0, editor_value(tmp_path, "sref", ref, take),
        {"background": None, "layers": [], "composite": None}, 4, 0, 0, 0,
        api_name="/ncollage_blend")
    base, other = (ncollage.picture_from_seed(G, s, None, 1.0) for s in (4, 5))
    _, expected, _ = ncollage.feature_blend(G, base, [other],
                                            torch.from_numpy(take.astype(np.float32))[None, None],
                                            [(4, 0)], [0, 2], 1.0)
    assert np.array_equal(read_png(after)[..., :3], to_uint8(expected)[0])
    assert [p for _, p in ncollage.feature_points(G)] == list(range(0, G.num_layers, 2))


def test_tab_download_all_after_label_collage(client, G, tmp_path):
    """The zip of a label collage: the edit as shown, the painted region, the class weights,
    z and class vector, and a recipe with the model, the base seed and the painted classes."""
    from core.recipe import read_bundle

    out = client.predict("tiny-biggan", "3", 4, 0.4, api_name="/ncollage_render")
    base = read_png(out[0] if isinstance(out, (list, tuple)) else out)[..., :3]
    render = read_bundle(client.predict(api_name="/ncollage_download"))
    assert np.array_equal(render.images["result"], base) and render.recipe["seed"] == 4
    top = np.zeros((SIZE, SIZE), bool)
    top[:10] = True
    _, after, _ = client.predict("tiny-biggan", editor_value(tmp_path, "dl", base, [top], [RED]), "all", 0,
                                 "5", "6", "7", 0.8, 1.0, 1.0, api_name="/ncollage_label")
    bundle = read_bundle(client.predict(api_name="/ncollage_download"))
    assert np.array_equal(bundle.images["after"], read_png(after)[..., :3])
    assert np.array_equal(bundle.masks["painted_1"] > 0, top)
    assert bundle.arrays["class_weights"].shape == (2, 1, ncollage.MAP_RES, ncollage.MAP_RES)
    assert np.array_equal(bundle.arrays["z"], _picture(G, 4, 3).latent.numpy())
    r = bundle.recipe
    assert r["model_id"] == "tiny-biggan" and r["seed"] == 4 and r["operation"] == "label_collage"
    assert r["settings"]["classes"] == [5] and r["settings"]["intensities"] == [0.8]
    assert r["settings"]["base_class"] == 3
