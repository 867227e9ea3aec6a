"""The Neural Collage tab on the tiny BigGAN-deep and the tiny SNGAN (the authors' Chainer
layout, tests/data/reference/sngan) loaded through the registry: sCBN class maps at full
resolution, the authors' layer presets, feature blending with per-layer weights, frames and
exact shifts, sCBN + blend in one pass, Eq. 4 photo editing against the authors' objective,
the BigGAN-deep projection, paste-back with a painted mask into the full photo, and the tab
driven end to end through gradio_client."""
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
from core import classes
from demos.ncollage import blend, engine, handlers, handlers_photo, ui
from demos.ncollage import photo as photo_engine
from demos.ncollage.engine import Labels, Picture

BIGGAN_REF = REFERENCE / "biggan"
SNGAN_REF = REFERENCE / "sngan"
SIZE = 32  # the tiny BigGAN-deep renders 32 px, 10 classes
SN_SIZE = 64  # the tiny SNGAN renders 64 px, 3 classes
SN = {"ch": 1, "dim_z": 8, "n_classes": 3}
RED, GREEN = (0xFE, 0x27, 0x12), (0x66, 0xB0, 0x32)  # palette colours 1 and 2
N_COLOURS = len(engine.PALETTE)


def label_args(classes=("5",), strengths=(1.0,), layers="all", soft=0) -> tuple:
    """layers, soft, one class and one intensity per palette colour (unused ones filled)."""
    cls = list(classes) + ["5"] * (N_COLOURS - len(classes))
    return (layers, soft, *cls, *(list(strengths) + [1.0] * (N_COLOURS - len(strengths))))


@pytest.fixture(scope="module")
def biggan_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("biggan")
    shutil.copy(BIGGAN_REF / "tiny-pytorch_model.bin", folder / "pytorch_model.bin")
    return folder / "pytorch_model.bin", json.loads((BIGGAN_REF / "tiny-config.json").read_text())


@pytest.fixture(scope="module")
def G(biggan_files):
    path, config = biggan_files
    return load_model("biggan-deep", path, config).eval()


@pytest.fixture(scope="module")
def S():
    return load_model("sngan", SNGAN_REF / "tiny-gen.npz", {**SN, "size": SN_SIZE})


@pytest.fixture(scope="module")
def sn_io() -> dict:
    with np.load(SNGAN_REF / "tiny-io.npz") as f:
        return {k: f[k] for k in f.files}


def _picture(G, seed=1, cls=3, trunc=0.4) -> Picture:
    return engine.picture_from_seed(G, seed, cls, trunc)


def _regions(*boxes, size=SIZE) -> torch.Tensor:
    m = torch.zeros(len(boxes), 1, size, size)
    for k, (y0, y1, x0, x1) in enumerate(boxes):
        m[k, :, y0:y1, x0:x1] = 1
    return m


def T(a) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, np.float32))


# ---- classes, maps and presets -----------------------------------------------------------------
def test_parse_class_and_the_sngan_class_range(S):
    assert classes.parse_class("207: golden retriever") == 207
    assert classes.parse_class("Golden Retriever") == 207
    with pytest.raises(UserError, match="golden retriever"):
        classes.parse_class("golden retreiver")
    with pytest.raises(UserError, match="not an ImageNet class"):
        classes.parse_class("")
    with pytest.raises(UserError, match="not one of this SNGAN's classes"):
        classes.model_class(S, 7)
    assert classes.model_class(S, 2) == 2  # the tiny model: 3 classes from 0


def test_class_maps_are_convex_and_follow_the_regions():
    base = classes.one_hot(0, 10)
    targets = torch.cat([classes.one_hot(3, 10), classes.one_hot(5, 10)])
    regions = _regions((0, 16, 0, 32), (8, 24, 0, 32))
    maps, weights = engine.class_maps(base, regions, targets, [1.0, 0.5])
    assert maps.shape == (1, 10, SIZE, SIZE) and weights.shape == (3, 1, SIZE, SIZE)  # full size
    assert torch.allclose(maps.sum(1), torch.ones(1, SIZE, SIZE)) and maps.min() >= 0
    assert torch.equal(maps[0, :, 0, 0], classes.one_hot(3, 10)[0])  # only region 1
    assert torch.allclose(maps[0, :, 20, 0], torch.tensor([.5, 0, 0, 0, 0, .5, 0, 0, 0, 0]))


def test_layer_presets_are_the_authors(G, S):
    assert engine.layer_preset(S, "first") == [0]  # the first sCBN only
    assert engine.layer_preset(S, "all but first") == list(range(1, 12))
    assert engine.layer_preset(S, "all") == list(range(12))
    n = len(G.condition_points())
    assert engine.layer_preset(G, "first") == [1]  # the first GenBlock's batch norms
    assert sorted(engine.layer_preset(G, "first") + engine.layer_preset(G, "all but first")) == list(range(n))


# ---- sCBN ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["biggan", "sngan"])
def test_label_collage_is_the_full_resolution_class_map(G, S, family):
    """Before = the plain picture; intensity 0 changes nothing; the edit equals the model fed
    the dense class map made at the picture's full resolution."""
    model, size, cls, other = (G, SIZE, 3, 5) if family == "biggan" else (S, SN_SIZE, 1, 2)
    pic = _picture(model, 1, cls)
    plain = engine.render(model, [pic])
    regions = _regions((0, size // 2, 0, size // 2), size=size)
    before, edits, _ = engine.label_collage(model, pic, regions, [other], [1.0], pic.truncation,
                                              engine.layer_preset(model, "all"), frames=(0.0, 1.0))
    assert torch.allclose(before, plain, atol=2e-6) and torch.allclose(edits[0], plain[0], atol=2e-6)
    assert (edits[1] - plain[0]).abs().max() > 1e-3
    maps, _ = engine.class_maps(pic.classes, regions, classes.one_hot(other, model.num_classes), [1.0])
    with torch.no_grad():
        dense = model(pic.latent, maps, 0.4) if family == "biggan" else model(pic.latent, maps)
    assert torch.allclose(edits[1], dense[0].clamp(-1, 1), atol=2e-6)


def test_first_layers_only_and_later_layers_differ(G):
    pic = _picture(G)
    regions = _regions((0, 32, 0, 16))  # left half becomes class 5
    outs = {}
    for preset in ("first", "all but first", "all"):
        _, edits, _ = engine.label_collage(G, pic, regions, [5], [1.0], 0.4,
                                             engine.layer_preset(G, preset))
        outs[preset] = edits[0]
    plain = engine.render(G, [pic], 0.4)[0]
    for a in outs.values():
        assert (a - plain).abs().max() > 1e-3
    assert (outs["first"] - outs["all but first"]).abs().max() > 1e-3


def test_label_collage_bad_input(G):
    pic = _picture(G)
    with pytest.raises(UserError, match="Paint a region"):
        engine.label_collage(G, pic, torch.zeros(1, 1, SIZE, SIZE), [5], [1.0], 0.4, [0])
    with pytest.raises(UserError, match="intensity is 0"):
        engine.label_collage(G, pic, _regions((0, 8, 0, 8)), [5], [0.0], 0.4, [0])
    with pytest.raises(UserError, match="at least one layer"):
        engine.label_collage(G, pic, _regions((0, 8, 0, 8)), [5], [1.0], 0.4, [])
    with pytest.raises(UserError, match="does not exist"):
        engine.label_collage(G, pic, _regions((0, 8, 0, 8)), [207], [1.0], 0.4, [0])


# ---- feature blending ---------------------------------------------------------------------------
def test_blend_weights_frames_and_references_kept_apart(G):
    """Weight 0 everywhere is refused, a zero region changes nothing; frames grow to the
    full weight; each reference is captured at its own truncation; with the base's class
    the references are re-rendered with it."""
    base, ref = _picture(G, 1), _picture(G, 2, cls=6, trunc=0.8)
    with pytest.raises(UserError, match="weight above 0"):
        blend.feature_blend(G, base, [ref], _regions((0, 8, 0, 8)), [(0, 0)], {0: 0.0})
    before, outs, refs = blend.feature_blend(G, base, [ref], _regions((8, 24, 8, 24)), [(0, 0)],
                                                {0: 1.0, 2: 0.5}, frames=3)
    plain = engine.render(G, [base])
    assert outs.shape == (3, 3, SIZE, SIZE) and torch.allclose(before, plain, atol=1e-6)
    assert (outs[0] - outs[2]).abs().max() > 1e-3 and (outs[2] - plain[0]).abs().max() > 1e-3
    assert torch.allclose(refs, engine.render(G, [ref]), atol=1e-6)  # at its own 0.8
    feats = blend.capture(G, [ref, base], [3])[3]
    seen = {}
    for pic in (ref, base):
        engine.render(G, [pic], hook=lambda p, h: seen.setdefault((pic.truncation, p), h.clone()))
    assert torch.allclose(feats[0], seen[(0.8, 3)][0]) and torch.allclose(feats[1], seen[(0.4, 3)][0])
    _, _, as_base = blend.feature_blend(G, base, [ref], _regions((8, 24, 8, 24)), [(0, 0)],
                                           {0: 1.0}, base_class_refs=True)
    assert torch.allclose(as_base, engine.render(G, [Picture(ref.latent, base.classes, 0.8)]), atol=1e-6)


def test_sngan_full_blend_at_the_first_layer_is_the_reference(S):
    """The authors' demo default (first layer, weight 1) over the whole picture hands the
    whole 4 x 4 tensor to the reference: the result is the reference with the base's class."""
    base, ref = _picture(S, 1, 1), _picture(S, 2, 0)
    full = torch.ones(1, 1, SN_SIZE, SN_SIZE)
    _, outs, _ = blend.feature_blend(S, base, [ref], full, [(0, 0)], {0: 1.0})
    assert torch.allclose(outs, engine.render(S, [Picture(ref.latent, base.classes)]), atol=1e-5)


def test_scbn_and_blend_in_one_pass_equal_each_alone_when_the_other_is_neutral(S):
    base, ref = _picture(S, 1, 1), _picture(S, 2, 0)
    regions = _regions((0, 32, 0, 32), size=SN_SIZE)
    labels = Labels(regions, [2], [1.0], engine.layer_preset(S, "all"))
    _, alone, _ = engine.label_collage(S, base, regions, [2], [1.0], 1.0, labels.points)
    out_of_frame = [(2 * SN_SIZE, 0)]  # the reference lands outside: a neutral blend
    _, both, _ = blend.feature_blend(S, base, [ref], regions, out_of_frame, {2: 1.0}, labels=labels)
    assert torch.allclose(both, alone, atol=1e-6)
    neutral = Labels(regions, [2], [0.0], labels.points)  # intensity 0: a neutral label collage
    _, blended, _ = blend.feature_blend(S, base, [ref], regions, [(0, 0)], {2: 1.0})
    with pytest.raises(UserError, match="intensity is 0"):
        blend.feature_blend(S, base, [ref], regions, [(0, 0)], {2: 1.0}, labels=neutral)
    neutral = Labels(regions, [1], [1.0], labels.points)  # painting the base's own class
    _, both, _ = blend.feature_blend(S, base, [ref], regions, [(0, 0)], {2: 1.0}, labels=neutral)
    assert torch.allclose(both, blended, atol=1e-5)


def test_shifts_land_where_asked_at_every_layer():
    """A 20 px shift moves the landed region by 20 px at every resolution (the centroid of
    the coarse region, shifted; whole cells copied exactly)."""
    region = torch.zeros(1, 1, 64, 64)
    region[..., 24:40, 8:16] = 1
    moved, still = (blend.Blend(region, [s], {0: 1.0}, torch.ones(1)) for s in ((20, -6), (0, 0)))
    for res in (4, 8, 16, 32, 64):  # (coarser grids push part of it out of the frame)
        cells = torch.arange(res, dtype=torch.float32) + 0.5
        centre = []
        for mix in (moved, still):
            m = mix.landed(res)[0, 0]
            centre.append(((m.sum(0) * cells).sum() / m.sum(), (m.sum(1) * cells).sum() / m.sum()))
        dx = (centre[0][0] - centre[1][0]) * 64 / res
        dy = (centre[0][1] - centre[1][1]) * 64 / res
        assert abs(dx - 20) < 1e-4 and abs(dy + 6) < 1e-4, res
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(blend.shift_features(x, 2.0, -1.0), blend.translate(x, 2, -1))


def test_blend_bad_input(G):
    base = _picture(G)
    with pytest.raises(UserError, match="reference"):
        blend.feature_blend(G, base, [], torch.zeros(0, 1, SIZE, SIZE), [], [0], 0.4)
    with pytest.raises(UserError, match="regions are empty"):
        blend.feature_blend(G, base, [base], torch.zeros(1, 1, SIZE, SIZE), [(0, 0)], [0], 0.4)


# ---- real photos ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sngan_parts():
    return {"E": load_model("sngan-encoder", SNGAN_REF / "tiny-enc.npz", {**SN, "input_size": 32}),
            "A": load_model("sngan-auxiliary", SNGAN_REF / "tiny-aux.npz",
                            {**SN, "size": SN_SIZE, "dim_a": 6, "dim_b": 5, "dim_zeta": 7}),
            "D": load_model("sngan-discriminator", SNGAN_REF / "tiny-dis.npz", {"ch": 1, "n_classes": 3})}


@pytest.mark.parametrize("mode", ["noaux", "aux"])
def test_eq4_editing_follows_the_authors_optimisation(S, sngan_parts, sn_io, mode):
    """optimization.py run in Chainer (3 steps from the encoder's z, on zeta with the
    auxiliary network): the same loss terms at every step, and the latent it saves after its
    loop (opt_*_saved_z): with the auxiliary network the B(zeta) of its last forward pass,
    before the last update (`recon, _, _, z = gen.forward(zeta=..., return_zs=True)`), so the
    picture is the one the last loss was measured on; without it z after the update."""
    aux = sngan_parts["A"] if mode == "aux" else None
    D, gt = sngan_parts["D"], T(sn_io["gt"])
    pic, image, losses = photo_engine.fit_sngan(S, D, sngan_parts["E"], aux,
                                            T(sn_io["enc_input"]), gt,
                                            int(sn_io["enc_class"][0]), steps=3)
    assert np.abs(losses - sn_io[f"opt_{mode}_losses"]).max() < 1e-5
    assert torch.allclose(pic.latent, T(sn_io[f"opt_{mode}_saved_z"]), atol=1e-5)
    param = T(sn_io[f"opt_{mode}_latent"])  # the optimised parameter after the last update
    if aux is not None:  # B(zeta) after the last update is another latent: not what they save
        with torch.no_grad():
            assert (pic.latent - aux.B(param)).abs().max() > 1e-4
            c = torch.tensor([int(sn_io["enc_class"][0])])
            last = photo_engine.eq4_terms(D, S(pic.latent, c), D.feature_vector(gt), gt)
        assert np.allclose([t.item() for t in last], sn_io["opt_aux_losses"][-1], atol=1e-5)
    else:
        assert torch.allclose(pic.latent, param, atol=1e-5)
    assert torch.equal(pic.classes, classes.one_hot(int(sn_io["enc_class"][0]), 3))


def test_photo_fit_defaults_to_the_authors_200_steps_on_a_gpu():
    gpu, cpu = ui.photo_steps(torch.device("cuda")), ui.photo_steps(torch.device("cpu"))
    assert gpu["value"] == photo_engine.AUTHORS_STEPS == 200 and "200" in gpu["label"]
    assert cpu["value"] == 50 and "the authors use 200" in cpu["label"] and "CPU" in cpu["label"]


def test_eq4_terms_are_the_authors_objective(S, sngan_parts, sn_io):
    """The transcription of optimization.py's loss on one state (the encoder's z)."""
    D, E = sngan_parts["D"], sngan_parts["E"]
    gt = T(sn_io["gt"])
    with torch.no_grad():
        c = torch.tensor([int(sn_io["enc_class"][0])])
        recon = S(E(T(sn_io["enc_input"]), c), c)
        cos, pixel = photo_engine.eq4_terms(D, recon, D.feature_vector(gt), gt)
        v1, v2 = D.feature_vector(recon)[0], D.feature_vector(gt)[0]
    assert abs(cos.item() - (-(v1 @ v2) / (v1.norm() * v2.norm())).item()) < 1e-6
    assert abs(pixel.item() - 0.2 * ((recon - gt) ** 2).mean().item()) < 1e-7
    assert np.allclose([cos.item(), pixel.item()], sn_io["opt_noaux_losses"][0], atol=1e-5)


def test_projection_keeps_the_class_and_z_range_and_paste_back_keeps_the_photo_outside(biggan_files):
    path, config = biggan_files
    G = load_model("biggan-deep", path, config).float()
    target = engine.render(G, [_picture(G, 7, cls=2)], 0.4)
    pic, image, losses = photo_engine.project(G, target, 2, 0.4, steps=6, seed=0)
    assert losses[-1] < losses[0] and image.shape == target.shape
    assert torch.equal(pic.classes, classes.one_hot(2, 10)) and pic.latent.abs().max() <= 0.8
    region = _regions((8, 24, 8, 24))[:1]
    edited = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    pasted = photo_engine.paste_back(target, edited, region)
    outside = region[0, 0] == 0
    assert torch.allclose(pasted[0][:, outside], target[0][:, outside], atol=1e-6)
    with pytest.raises(UserError, match="Nothing was edited"):
        photo_engine.paste_back(target, edited, torch.zeros_like(region))


# ---- the handlers, called directly (no app) ------------------------------------------------
@pytest.fixture(scope="module")
def registry_file(biggan_files, tmp_path_factory):
    path, config = biggan_files
    tmp = tmp_path_factory.mktemp("ncollage-registry")
    sg2 = tmp / "tiny-sg2.pt"
    shutil.copy(REFERENCE / "stylegan2" / "tiny.pt", sg2)

    def sngan(id_, arch, file, config, **extra):
        return {"id": id_, "arch": arch, "config": config, "path": str(SNGAN_REF / file),
                "license": "test", "used_by": ["ncollage"], **extra}

    return write_registry(tmp / "weights.json", [
        {"id": "tiny-biggan", "arch": "biggan-deep", "config": config, "path": str(path),
         "meta": {"framing": "center"}, "license": "test", "used_by": ["ncollage"]},
        tiny_sg2_entry("tiny-sg2", sg2, used_by=["ncollage"]),
        sngan("tiny-sngan", "sngan", "tiny-gen.npz", {**SN, "size": SN_SIZE}, meta={"framing": "center"}),
        sngan("tiny-sngan-enc", "sngan-encoder", "tiny-enc.npz", {**SN, "input_size": 32},
              generator="tiny-sngan"),
        sngan("tiny-sngan-dis", "sngan-discriminator", "tiny-dis.npz", {"ch": 1, "n_classes": 3},
              generator="tiny-sngan"),
        sngan("tiny-sngan-aux", "sngan-auxiliary", "tiny-aux.npz",
              {**SN, "size": SN_SIZE, "dim_a": 6, "dim_b": 5, "dim_zeta": 7}, generator="tiny-sngan")])


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


def _blend_args(weights, ref_state, ref_editor, dx=0, dy=0, frames=1, base_class=False,
                labels=None) -> tuple:
    """blend_features' values after (ctx, model, state)."""
    label_values = labels if labels is not None else (EMPTY_EDITOR, *label_args())
    w = list(weights) + [0.0] * (handlers.MAX_POINTS - len(weights))
    return (frames, base_class, labels is not None, *label_values, *w,
            ref_state, None, ref_editor, None, dx, 0, dy, 0)


def test_pictures_from_seeds_use_each_familys_own_sampler(ctx):
    Gb, Gs, Gn = ctx.model("tiny-biggan"), ctx.model("tiny-sg2"), ctx.model("tiny-sngan")
    pic = engine.picture_from_seed(Gb, 5, 3, 0.4)
    assert torch.equal(pic.latent, truncated_noise(1, Gb.z_dim, 0.4, 5)) and pic.truncation == 0.4
    assert torch.equal(pic.classes, classes.one_hot(3, 10))
    pic = engine.picture_from_seed(Gs, 4, None, 0.7)
    with torch.inference_mode():
        w = Gs.truncated_w(seed_normal([4], Gs.style_dim), 0.7)
    assert pic.classes is None and torch.equal(pic.latent, Gs.w_plus(w))
    pic = engine.picture_from_seed(Gn, 4, 2, 0.4)
    assert torch.equal(pic.latent, seed_normal([4], 8).clamp(-2.5, 2.5))
    updates = handlers.shift_ranges(ctx, "tiny-sg2")
    assert len(updates) == 2 * handlers.MAX_REFS and updates[0]["maximum"] == SIZE
    assert handlers.frame_size(ctx, None) == handlers.DEFAULT_FRAME


def test_render_label_and_sweep_handlers_match_the_engine(ctx, G):
    state, image, shown, *sliders, run = handlers.render_base(ctx, "tiny-biggan", "3: tiger shark", 1, 0.4)
    pic = _picture(G, 1, 3, 0.4)
    assert np.array_equal(image, to_uint8(engine.render(G, [pic]))[0]) and shown is image
    n = len(blend.feature_points(G))
    assert len(sliders) == handlers.MAX_POINTS and sliders[0]["value"] == 1.0
    assert all(s["visible"] for s in sliders[:n]) and not any(s["visible"] for s in sliders[n:])
    assert state.class_index == 3 and run.recipe["seed"] == 1 and run.recipe["operation"] == "render"
    left = np.zeros((SIZE, SIZE), bool)
    left[:, :12] = True
    editor = _editor(image, [left], [RED])
    before, after, class_map, edit, run = handlers.apply_labels(
        ctx, "tiny-biggan", state, editor, *label_args(("5",)))
    regions = torch.from_numpy(left.astype(np.float32))[None, None]
    _, edits, _ = engine.label_collage(G, pic, regions, [5], [1.0], 0.4, engine.layer_preset(G, "all"))
    assert np.array_equal(after, to_uint8(edits)[0]) and np.array_equal(before, image)
    assert edit.region.shape == (1, 1, SIZE, SIZE) and run.recipe["settings"]["classes"] == [5]
    *same, gallery, run = handlers.sweep_labels(ctx, "tiny-biggan", state, editor, *label_args(("5",)))
    assert np.array_equal(same[1], after) and len(gallery) == 1 + len(handlers.SWEEP)
    assert run.recipe["operation"] == "label_sweep"


def test_blend_handler_weights_frames_shifts_and_labels(ctx, G):
    state, image, *_ = handlers.render_base(ctx, "tiny-biggan", "3", 1, 0.4)
    ref_state, ref_image = handlers.render_reference(ctx, "tiny-biggan", "6", 2, 0.8)
    take = np.zeros((SIZE, SIZE), bool)
    take[8:24, 8:24] = True
    ref_editor = _editor(ref_image, [take], [(255, 255, 255)])
    before, after, blend_map, gallery, note, edit, run = handlers.blend_features(
        ctx, "tiny-biggan", state, *_blend_args([1.0, 0.0, 0.5], ref_state, ref_editor, dx=5, frames=2))
    _, outs, _ = blend.feature_blend(G, _picture(G, 1, 3), [_picture(G, 2, 6, 0.8)],
                                        torch.from_numpy(take.astype(np.float32))[None, None],
                                        [(5, 0)], {0: 1.0, 2: 0.5}, frames=2)
    assert np.array_equal(after, to_uint8(outs[-1:])[0]) and len(gallery) == 2
    assert "5, 0 px" in note and "1.25, 0 cells" in note  # 5 px at the 8 px layer: 1.25 cells
    assert run.recipe["settings"]["reference_truncations"] == {"reference_1": 0.8}
    assert edit.what == "feature blend" and edit.region.sum() > 0
    left = np.zeros((SIZE, SIZE), bool)
    left[:, :12] = True
    labels = (_editor(image, [left], [RED]), *label_args(("5",)))
    *_, run = handlers.blend_features(ctx, "tiny-biggan", state,
                                      *_blend_args([1.0], ref_state, ref_editor, labels=labels))
    assert run.recipe["settings"]["with_label_collage"] and run.recipe["settings"]["label_classes"] == [5]


def test_handlers_refuse_mistakes_with_readable_errors(ctx):
    labels = label_args()
    with pytest.raises(gr.Error, match="Pick a model first"):
        handlers.render_base(ctx, None, "3", 1, 0.4)
    with pytest.raises(gr.Error, match="Render a base picture"):
        handlers.apply_labels(ctx, "tiny-biggan", None, EMPTY_EDITOR, *labels)
    state, image, *_ = handlers.render_base(ctx, "tiny-sg2", "3", 2, 1.0)
    assert state.class_index is None
    with pytest.raises(gr.Error, match="render it again for tiny-biggan"):
        handlers.apply_labels(ctx, "tiny-biggan", state, EMPTY_EDITOR, *labels)
    painted = _editor(image, [np.ones((SIZE, SIZE), bool)], [RED])
    with pytest.raises(gr.Error, match="pick an SNGAN or BigGAN-deep model"):
        handlers.apply_labels(ctx, "tiny-sg2", state, painted, *labels)
    with pytest.raises(gr.Error, match="Render a reference"):
        handlers.blend_features(ctx, "tiny-sg2", state, *_blend_args([1.0], None, None))
    with pytest.raises(gr.Error, match="Project a photo first"):
        handlers_photo.paste_edit(ctx, state, None)
    with pytest.raises(gr.Error, match="offered for SNGAN and BigGAN-deep"):
        handlers_photo.project_photo(ctx, "tiny-sg2", image, "3", 10, 0.4)
    with pytest.raises(gr.Error, match="not one of this SNGAN's classes"):
        handlers.render_base(ctx, "tiny-sngan", "207", 1, 0.4)
    assert handlers.live_labels(ctx, True, "tiny-biggan", None, EMPTY_EDITOR, *labels) == [gr.update()] * 5
    assert handlers.live_labels(ctx, False, "tiny-biggan", None, EMPTY_EDITOR, *labels) == [gr.update()] * 5


# ---- a real photo in, the edit back in it at full resolution ----------------------------------
@pytest.fixture(scope="module")
def cat_photo(tmp_path_factory) -> str:
    """scikit-image's CC0 cat photo (451 x 300, landscape: the centre crop leaves bands)."""
    from skimage import data

    path = tmp_path_factory.mktemp("photos") / "chelsea.png"
    Image.fromarray(data.chelsea()).save(path)
    return str(path)


def _left_strip(width: int = 12, size: int = SIZE) -> np.ndarray:
    left = np.zeros((size, size), bool)
    left[:, :width] = True
    return left


def test_photo_is_framed_projected_and_the_edit_lands_in_the_full_photo(ctx, cat_photo):
    """BigGAN-deep: the network input is the centre crop, kept in the state; the paste-back is
    the Poisson blend in the frame, put back into the photo at its size; outside the region
    the photo is byte-identical."""
    photo = np.asarray(open_photo(cat_photo))
    h, w = photo.shape[:2]
    state, projection, base_image, editor_image, info, network, run = handlers_photo.project_photo(
        ctx, "tiny-biggan", cat_photo, "3", 2, 0.4)
    expected = frame_photo(open_photo(cat_photo), "center", SIZE).aligned.image
    assert np.array_equal(network["value"], np.asarray(expected))
    assert network["label"] == "Network input: centre crop" and "2 of the authors' 200" in info
    assert state.framed.photo.size == (w, h) and torch.equal(
        state.photo, torch.from_numpy(np.array(expected)).permute(2, 0, 1)[None].float() / 127.5 - 1)
    assert run.recipe["operation"] == "project" and run.recipe["settings"]["framing"] == "center"
    _, _, _, edit, _ = handlers.apply_labels(
        ctx, "tiny-biggan", state, _editor(base_image, [_left_strip()], [RED]), *label_args(("5",)))
    mask = handlers_photo.paste_mask(state, edit)  # the default: the edited region, painted
    assert np.array_equal(mask["layers"][0][..., 3] > 0, edit.region[0, 0].numpy() > 0)
    pasted, in_photo, run = handlers_photo.paste_edit(ctx, state, edit, mask)
    poisson = to_uint8(photo_engine.paste_back(state.photo, edit.image, edit.region))[0]
    assert np.array_equal(pasted, poisson) and in_photo.shape == photo.shape
    left = (w - h) // 2  # the centre crop's left edge; its frame columns 0-11 were painted
    right_of_edit = left + h * 20 // SIZE
    assert np.array_equal(in_photo[:, right_of_edit:], photo[:, right_of_edit:])
    assert np.array_equal(in_photo[:, :left - 2], photo[:, :left - 2])
    assert not np.array_equal(in_photo[:, left:left + h // 4], photo[:, left:left + h // 4])
    # a painted mask (the top half of the strip only) keeps the photo below it
    top = np.zeros((SIZE, SIZE), bool)
    top[:10, :12] = True
    _, in_photo2, run = handlers_photo.paste_edit(ctx, state, edit, _editor(base_image, [top], [(255, 255, 255)]))
    below = h * 14 // SIZE
    assert np.array_equal(in_photo2[below:], photo[below:]) and run.recipe["settings"]["mask"] == "painted"


@pytest.mark.slow
def test_sngan_photo_is_edited_the_papers_way(ctx, cat_photo):
    """SNGAN: the encoder starts, Eq. 4 optimises (through the auxiliary network when asked);
    the fit is the base picture; a feature blend of it can be pasted back too."""
    state, fit, base_image, _, info, network, run = handlers_photo.project_photo(
        ctx, "tiny-sngan", cat_photo, "1", 1, 0.4, True)
    assert fit.shape == (SN_SIZE, SN_SIZE, 3) and "zeta (auxiliary network)" in info
    assert set(run.recipe["models"]) == {"generator", "encoder", "discriminator", "auxiliary"}
    assert run.arrays["loss_terms"].shape == (1, 2) and state.class_index == 1
    ref_state, ref_image = handlers.render_reference(ctx, "tiny-sngan", "0", 3, 1.0)
    take = np.zeros((SN_SIZE, SN_SIZE), bool)
    take[16:48, 16:48] = True
    *_, edit, _ = handlers.blend_features(
        ctx, "tiny-sngan", state, *_blend_args([1.0], ref_state, _editor(ref_image, [take], [(255,) * 3])))
    _, in_photo, run = handlers_photo.paste_edit(ctx, state, edit)
    assert in_photo.shape == np.asarray(open_photo(cat_photo)).shape and run.recipe["settings"]["edit"] == "feature blend"


def test_photo_mistakes_and_sideways_phone_photos(ctx, cat_photo, tmp_path):
    """A JPEG stored sideways with EXIF orientation 6 arrives upright; a file that is not a
    picture and a missing photo are refused with readable messages."""
    upright = Image.open(cat_photo)
    sideways = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    sideways.save(path, quality=95, exif=exif)
    state, *_, network, _ = handlers_photo.project_photo(ctx, "tiny-biggan", str(path), "3", 1, 0.4)
    assert state.framed.photo.size == upright.size
    near = np.asarray(frame_photo(upright, "center", SIZE).aligned.image, np.int16)
    assert np.abs(network["value"].astype(np.int16) - near).mean() < 4
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    with pytest.raises(gr.Error, match="not a picture"):
        handlers_photo.project_photo(ctx, "tiny-biggan", str(bad), "3", 1, 0.4)
    with pytest.raises(gr.Error, match="No photo was given"):
        handlers_photo.project_photo(ctx, "tiny-biggan", None, "3", 1, 0.4)


def test_photo_framing_follows_the_registry(biggan_files, cat_photo, tmp_path):
    path, config = biggan_files
    registry = write_registry(tmp_path / "weights.json", [
        {"id": "tiny-biggan-squash", "arch": "biggan-deep", "config": config, "path": str(path),
         "meta": {"framing": "squash"}, "license": "test", "used_by": ["ncollage"]}])
    squash_ctx = AppContext(load_registry(registry), torch.device("cpu"))
    framed = frame_for_model(squash_ctx.registry, "tiny-biggan-squash", cat_photo, SIZE)
    assert framed.aligned.recipe == "squash"
    assert np.array_equal(np.asarray(framed.aligned.image),
                          np.asarray(frame_photo(open_photo(cat_photo), "squash", SIZE).aligned.image))


# ---- the tab through gradio_client -------------------------------------------------------------
@pytest.fixture(scope="module")
def client(registry_file):
    with app_client(registry_file) as c:
        yield c


def _first(out):
    return out[0] if isinstance(out, (list, tuple)) else out


def test_tab_label_collage_end_to_end(client, G, tmp_path):
    base = read_png(_first(client.predict("tiny-biggan", "3: tiger shark", 1, 0.4,
                                          api_name="/ncollage_render")))[..., :3]
    pic = _picture(G, 1, 3, 0.4)
    assert np.array_equal(base, to_uint8(engine.render(G, [pic], 0.4))[0])
    left, right = _left_strip(), np.zeros((SIZE, SIZE), bool)
    right[:, 20:] = True
    painted = editor_value(tmp_path, "lc", base, [left, right], [RED, GREEN])
    before, after, class_map = client.predict(
        "tiny-biggan", painted, *label_args(("5: electric ray", "6: stingray")), api_name="/ncollage_label")
    regions = torch.from_numpy(np.stack([left, right]).astype(np.float32))[:, None]
    _, edits, _ = engine.label_collage(G, pic, regions, [5, 6], [1.0, 1.0], 0.4,
                                         engine.layer_preset(G, "all"))
    assert np.array_equal(read_png(after)[..., :3], to_uint8(edits)[0])
    assert np.array_equal(read_png(before)[..., :3], base)
    shown = read_png(class_map)[..., :3]
    assert shown[16, 2, 0] > 200 and shown[16, 30, 1] > 150 and (shown[16, 16] == 128).all()
    with pytest.raises(AppError, match="Paint a region"):
        client.predict("tiny-biggan", editor_value(tmp_path, "none", base, None), *label_args(),
                       api_name="/ncollage_label")
    with pytest.raises(AppError, match="not an ImageNet class"):
        client.predict("tiny-biggan", painted, *label_args(("no such thing",)), api_name="/ncollage_label")
    with pytest.raises(AppError, match="render it again"):
        client.predict("tiny-sg2", painted, *label_args(), api_name="/ncollage_label")


def test_tab_feature_blend_end_to_end(client, G, tmp_path):
    client.predict("tiny-biggan", "3", 1, 0.4, api_name="/ncollage_render")
    ref_value = client.predict("tiny-biggan", "6", 2, 0.4, api_name="/ncollage_reference_1")
    ref = read_png(ref_value if isinstance(ref_value, str) else ref_value["background"])[..., :3]
    take = np.zeros((SIZE, SIZE), bool)
    take[8:24, 8:24] = True
    weights = [1.0, 1.0] + [0.0] * (handlers.MAX_POINTS - 2)
    out = client.predict("tiny-biggan", 1, False, False,
                         {"background": None, "layers": [], "composite": None}, *label_args(), *weights,
                         editor_value(tmp_path, "ref", ref, take),
                         {"background": None, "layers": [], "composite": None}, 0, 0, 0, 0,
                         api_name="/ncollage_blend")
    _, expected, _ = blend.feature_blend(G, _picture(G, 1, 3), [_picture(G, 2, 6)],
                                            torch.from_numpy(take.astype(np.float32))[None, None],
                                            [(0, 0)], [0, 1], 0.4)
    assert np.array_equal(read_png(out[1])[..., :3], to_uint8(expected)[0])
    with pytest.raises(AppError, match="Project a photo first"):
        client.predict(None, api_name="/ncollage_paste")


@pytest.mark.slow
def test_tab_real_photo_end_to_end(client, cat_photo, tmp_path):
    """Upload the photo file, fit it, paint a label, paste back: the result in the photo has
    the photo's size and its pixels outside the edit; "Download all" holds it."""
    from core.recipe import read_bundle

    photo = np.asarray(open_photo(cat_photo))
    h, w = photo.shape[:2]
    projection, base_image, _, info, network = client.predict(
        "tiny-biggan", handle_file(cat_photo), "3", 10, 0.4, True, api_name="/ncollage_project")
    assert network["label"] == "Network input: centre crop" and "Loss" in info
    base = read_png(base_image)[..., :3]
    client.predict("tiny-biggan", editor_value(tmp_path, "photo", base, [_left_strip()], [RED]),
                   *label_args(), api_name="/ncollage_label")
    pasted, in_photo = client.predict(None, api_name="/ncollage_paste")
    full = read_png(in_photo)[..., :3]
    right_of_edit = (w - h) // 2 + h * 20 // SIZE
    assert full.shape == photo.shape and np.array_equal(full[:, right_of_edit:], photo[:, right_of_edit:])
    bundle = read_bundle(client.predict(api_name="/ncollage_download"))
    assert np.array_equal(bundle.images["result_in_photo"], full)


@pytest.mark.slow
def test_tab_feature_blend_on_stylegan2(client, tmp_path):
    G = load_stylegan2(REFERENCE / "stylegan2" / "tiny.pt", **TINY_SG2_CONFIG)
    client.predict("tiny-sg2", "3", 4, 1.0, api_name="/ncollage_render")
    ref_value = client.predict("tiny-sg2", "3", 5, 1.0, api_name="/ncollage_reference_1")
    ref = read_png(ref_value if isinstance(ref_value, str) else ref_value["background"])[..., :3]
    take = np.zeros((SIZE, SIZE), bool)
    take[:16, :] = True
    weights = [1.0, 1.0] + [0.0] * (handlers.MAX_POINTS - 2)
    out = client.predict("tiny-sg2", 1, False, False, {"background": None, "layers": [], "composite": None},
                         *label_args(), *weights, editor_value(tmp_path, "sref", ref, take),
                         {"background": None, "layers": [], "composite": None}, 4, 0, 0, 0,
                         api_name="/ncollage_blend")
    base, other = (engine.picture_from_seed(G, s, None, 1.0) for s in (4, 5))
    _, expected, _ = blend.feature_blend(G, base, [other],
                                            torch.from_numpy(take.astype(np.float32))[None, None],
                                            [(4, 0)], [0, 2], 1.0)
    assert np.array_equal(read_png(out[1])[..., :3], to_uint8(expected)[0])


def test_tab_download_all_after_label_collage(client, G, tmp_path):
    from core.recipe import read_bundle

    base = read_png(_first(client.predict("tiny-biggan", "3", 4, 0.4, api_name="/ncollage_render")))[..., :3]
    render = read_bundle(client.predict(api_name="/ncollage_download"))
    assert np.array_equal(render.images["result"], base) and render.recipe["seed"] == 4
    top = np.zeros((SIZE, SIZE), bool)
    top[:10] = True
    _, after, _ = client.predict("tiny-biggan", editor_value(tmp_path, "dl", base, [top], [RED]),
                                 *label_args(("5",), (0.8,)), api_name="/ncollage_label")
    bundle = read_bundle(client.predict(api_name="/ncollage_download"))
    assert np.array_equal(bundle.images["after"], read_png(after)[..., :3])
    assert np.array_equal(bundle.masks["painted_1"] > 0, top)
    assert bundle.arrays["class_weights"].shape == (2, 1, SIZE, SIZE)  # full resolution
    r = bundle.recipe
    assert r["operation"] == "label_collage" and r["settings"]["classes"] == [5]
    assert r["settings"]["intensities"] == [0.8] and r["settings"]["base_class"] == 3
