"""The SAM tab: its handlers called directly on an AppContext, and the tab end to end through
gradio_client (layer map, inversion, edits, errors)."""
from __future__ import annotations

import time
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from gradio_client import handle_file
from PIL import Image

from helpers import app_client, editor_value, png_file, read_png, write_registry
from core import images
from core.context import AppContext
from core.photo_code import prepare_target
from core.photo_slot import drawing, frame_input, show_framing
from core.hub import load_registry
from core.models.stylegan2 import StyleGAN2Generator
from demos.sam import engine, handlers, ui

SAM_SG2 = {"size": 256, "style_dim": 32, "n_mlp": 2, "channel_multiplier": 2, "channel_max": 8}
SMALL_SG2 = {"size": 32, "style_dim": 32, "n_mlp": 2, "channel_multiplier": 2, "channel_max": 8}


def save_sg2(path: Path, config: dict, seed: int) -> Path:
    """A random generator in rosinality's published file layout ({"g_ema", "latent_avg"})."""
    torch.manual_seed(seed)
    G = StyleGAN2Generator(**config)
    torch.save({"g_ema": G.state_dict(), "latent_avg": G.mean_w(256)[0]}, path)
    return path


def entry(model_id: str, arch: str, path: Path, config: dict, used_by=("sam",), **extra) -> dict:
    """A registry entry in weights.json's schema (`extra`: the top-level "generator", "meta")."""
    return {"id": model_id, "arch": arch, "config": config, "path": str(path), "sha256": None,
            "license": "test only", "source": "tests", "used_by": list(used_by), **extra}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sam")
    save_sg2(root / "sg2-256.pt", SAM_SG2, 11)
    save_sg2(root / "sg2-32.pt", SMALL_SG2, 12)
    n_latent = 14
    direction = np.zeros((1, n_latent, 32), np.float32)
    direction[0, 4:10] = np.random.default_rng(0).standard_normal((6, 32))
    np.save(root / "csc_test.npy", direction)
    return root


def registry(root: Path, tmp: Path, predictor: Path | None = None) -> Path:
    entries = [entry("tiny-sam", "stylegan2", root / "sg2-256.pt", SAM_SG2),
               entry("tiny-small", "stylegan2", root / "sg2-32.pt", SMALL_SG2),
               entry("tiny-face", "stylegan2", root / "sg2-256.pt", SAM_SG2, meta={"framing": "ffhq"}),
               entry("tiny-edit", "edit-direction", root / "csc_test.npy", {},
                     generator="tiny-sam", meta={"name": "bigger"})]
    if predictor is not None:
        entries.append(entry("tiny-predictor", "sam-invertibility", predictor, {}, generator="tiny-sam"))
    return write_registry(tmp / "weights.json", entries)


def photo(tmp: Path, name: str = "photo.png", size=(300, 240)) -> str:
    rng = np.random.default_rng(3)
    pic = np.zeros((size[1], size[0], 3), np.uint8)
    pic[:, : size[0] // 2] = (200, 40, 30)
    pic[:, size[0] // 2:] = (30, 90, 200)
    pic[size[1] // 3: 2 * size[1] // 3] += rng.integers(0, 40, (size[1] // 3, size[0], 3), dtype=np.uint8)
    return png_file(tmp, name, pic)


def unpainted(tmp: Path, editor: dict) -> dict:
    """The layer-map editor sent back as a browser sends it, nothing painted."""
    return editor_value(tmp, "map", read_png(editor["background"]))


def predict(client, picture, model="tiny-sam", segments=6, tau=0.225, est=2):
    """(error gallery, segments, layer-map editor, status line): the endpoint's first outputs."""
    return client.predict(model, handle_file(picture), segments, tau, est, api_name="/sam_predict")[:4]


def context(registry_file: Path) -> AppContext:
    return AppContext(load_registry(registry_file), torch.device("cpu"))


# ---- handlers called directly (no app) -------------------------------------------------------
@pytest.mark.slow
def test_handlers_predict_invert_and_edit_without_the_app(files, tmp_path):
    ctx = context(registry(files, tmp_path))
    s, gallery, seg_pic, editor, info, _, faces = handlers.predict_layer_map(ctx, "tiny-sam", photo(tmp_path), 6, 0.0, 1)
    assert faces == [] and s.framed.aligned.recipe == "center"
    assert len(gallery) == 5 and seg_pic.shape == editor["background"].shape == (256, 256, 3)
    assert "single-space" in info and "F10 100%" in info
    assert "W+ 100%" in handlers.retune_tau(ctx, s, 1.0)[1]
    assert handlers.retune_tau(ctx, None, 1.0) == (gr.update(), gr.update())  # nothing predicted yet
    handlers.retune_tau(ctx, s, 0.0)

    previews = list(handlers.invert(ctx, "tiny-sam", s, None, 2, True))
    assert len(previews) == 2  # 2 steps: a preview after each
    session, rec, base, target, line, codes, in_photo, code, run = previews[-1]
    assert session is not s and session.model_id == "tiny-sam" and s.codes is None  # a new session
    assert "step 2/2" in line and "W+ only" in line
    s = session
    assert rec.shape == base.shape == target.shape == (256, 256, 3)
    assert np.load(codes)["mask_F10"].min() == 1
    assert run.recipe["model_id"] == "tiny-sam" and run.recipe["settings"]["done"] == 2
    assert set(run.images) == {"target", "reconstruction", "w_plus_only", "photo", "network_input",
                               "result_in_photo"}
    assert in_photo.shape == (240, 300, 3)  # the photo's size
    assert code.model_id == "tiny-sam" and torch.equal(code.w_plus, s.codes.w_plus)  # the session's photo code

    saved = run.write(tmp_path / "saved")  # "Download all", then "Load a run (.zip)"
    model, reopened, rec_again, in_photo_again, status, handed = handlers.continue_from_code(ctx, str(saved), None)
    assert handed.model_id == "tiny-sam" and torch.equal(handed.w_plus, s.codes.w_plus)  # PandA, Generate get it
    assert model == "tiny-sam" and "photo code of tiny-sam" in status
    np.testing.assert_array_equal(rec_again, rec)
    np.testing.assert_array_equal(in_photo_again, in_photo)
    assert torch.equal(reopened.codes.w_plus, s.codes.w_plus) and reopened.target.shape == s.target.shape

    assert engine.direction_choices(ctx, "tiny-sam")[0] == "bigger (authors)"  # meta.name
    edited, edited_base, _, run = handlers.edit_photo(ctx, "tiny-sam", s, "bigger (authors)", 0)
    assert np.abs(edited.astype(int) - rec).max() <= 1  # strength 0 == the reconstruction
    assert edited_base.shape == (256, 256, 3) and run.recipe["settings"]["strength"] == 0


def test_handler_mistakes_are_readable_errors(files, tmp_path):
    ctx = context(registry(files, tmp_path))
    with pytest.raises(gr.Error, match="Upload a photo"):
        handlers.predict_layer_map(ctx, "tiny-sam", None, 6, 0.2, 2)
    with pytest.raises(gr.Error, match="at least 256 px"):
        handlers.sample_photo(ctx, "tiny-small", 1)
    with pytest.raises(gr.Error, match="Pick a model first"):
        handlers.sample_photo(ctx, None, 1)
    with pytest.raises(gr.Error, match="not a seed"):
        handlers.sample_photo(ctx, "tiny-sam", -3)
    with pytest.raises(gr.Error, match="Predict the layer map first"):
        next(handlers.invert(ctx, "tiny-sam", None, None, 3, True))
    with pytest.raises(gr.Error, match="Invert a photo first"):
        handlers.edit_photo(ctx, "tiny-sam", None, "bigger (authors)", 1)


def test_sample_photo_is_the_seed_protocols_picture_in_the_picture_area(files, tmp_path):
    """A GAN sample is the picture the tab always drew for that seed (z from a CPU generator
    seeded with it, ψ 0.7); a car's is cut to its 4:3 picture area."""
    from core.images import to_uint8

    car = entry("tiny-car", "stylegan2", files / "sg2-256.pt", SAM_SG2, meta={"content": [256, 192]})
    ctx = context(write_registry(tmp_path / "weights.json",
                                 [entry("tiny-sam", "stylegan2", files / "sg2-256.pt", SAM_SG2), car]))
    G = ctx.model("tiny-sam", torch.float32)
    z = torch.randn(1, G.style_dim, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = to_uint8(G(z, truncation=0.7))[0]
    square = handlers.sample_photo(ctx, "tiny-sam", 7)
    assert np.array_equal(square, expected)
    cut = handlers.sample_photo(ctx, "tiny-car", 7.0)
    assert cut.shape == (192, 256, 3) and np.array_equal(cut, square[32:224])
    assert ctx.registry.content_of(ctx.registry.get("tiny-car")) == (256, 192)
    assert ctx.registry.content_of(ctx.registry.get("tiny-sam")) is None


# ---- a new run, Stop, another model (the tab's control flow; the optimisation stubbed) --------
class StubInversion:
    """Stands in for `Inversion` (control flow only: no generator pass, no LPIPS): codes whose
    w+ is the step number, so a session's codes say which step they came from."""

    def __init__(self, G, target, masks, init_w, lpips_model, steps, frame, autocast=None):
        self.G, self.masks, self.total, self.step_index = G, masks, int(steps), 0
        self.autocast = autocast
        StubInversion.last = self

    def step(self) -> None:
        self.step_index += 1

    done = property(lambda self: self.step_index >= self.total)
    diverged = False

    def codes(self, sample: int = 0):
        from core.inversion import Codes

        return Codes(torch.full((1, self.G.n_latent, self.G.style_dim), float(self.step_index)),
                     {}, {}, self.step_index)


@pytest.fixture
def stubbed(files, tmp_path, monkeypatch):
    """(context, a session inverted once (w+ = -1)): the tab's handlers on the stub."""
    from core.inversion import Codes, Frame

    monkeypatch.setattr(handlers, "Inversion", StubInversion)
    for module in (engine, handlers):
        monkeypatch.setattr(module, "get_lpips", lambda *a: None)
    monkeypatch.setattr(handlers, "preview", lambda run, s, base: (np.zeros((4, 4, 3), np.uint8), None,
                                                              f"step {run.step_index}/{run.total}", None))
    ctx = context(registry(files, tmp_path))
    s = engine.Session("tiny-sam", torch.zeros(1, 3, 256, 256), Frame(),
                    layer_map=torch.zeros(256, 256, dtype=torch.long),
                    codes=Codes(torch.full((1, 14, 32), -1.0), {}, {}, 7))
    return ctx, s


def test_a_new_run_keeps_the_last_inversion_until_its_first_preview(stubbed):
    ctx, old = stubbed
    stop = handlers.StopSignal()
    run = handlers.invert(ctx, "tiny-sam", old, None, 20, False, stop)  # a preview every 2 steps
    assert next(run) == (gr.update(),) * 9  # step 1: nothing shown, the session untouched
    assert old.codes.w_plus.max() == -1 and old.codes.steps == 7
    first = next(run)[0]  # step 2: the first preview replaces the session
    assert first is not old and first.codes.steps == 2 and old.codes.steps == 7
    assert next(run) == (gr.update(),) * 9  # step 3
    stop.request()  # Stop: the run ends before its next step, the preview of step 2 kept
    *unchanged, line = next(run)[:5]
    assert unchanged == [gr.update()] * 4
    assert line == "**Stopped** at step 3/20: the preview of step 2 and its codes are kept."
    assert list(run) == [] and first.codes.steps == 2


def test_stop_while_queued_and_a_click_of_invert(stubbed):
    ctx, s = stubbed
    stop = handlers.StopSignal()
    handlers.request_stop(stop)  # pressed while the run waited in the queue: it stops as it starts
    (out,) = list(handlers.invert(ctx, "tiny-sam", s, None, 20, False, stop))
    assert "Stopped** at step 0/20, before its first preview" in out[4] and out[0] == gr.update()
    handlers.request_stop(stop)
    handlers.arm_stop(stop)  # a later click of Invert forgets it
    assert list(handlers.invert(ctx, "tiny-sam", s, None, 2, False, stop))[-1][0].codes.steps == 2
    import copy

    copy.deepcopy(stop).request()  # gr.State's per-session copy shares the one signal
    assert stop.consume() and not stop.consume()


def test_another_model_names_the_inversions_model(stubbed):
    ctx, s = stubbed
    with pytest.raises(gr.Error, match="This inversion belongs to model tiny-sam"):
        handlers.edit_photo(ctx, "tiny-face", s, "GANSpace 1", 1)
    with pytest.raises(gr.Error, match="This layer map belongs to model tiny-sam"):
        next(handlers.invert(ctx, "tiny-face", s, None, 2, False))
    *_, status = handlers.model_changed(ctx, "tiny-face", s)
    assert status.startswith("This inversion belongs to model tiny-sam: switch back to it to edit")
    assert handlers.model_changed(ctx, "tiny-sam", s)[-1] == gr.update()


def test_edits_take_layer_ranges_and_each_sources_strengths(stubbed):
    """GANSpace / SeFa on a w+ layer range (the recipe says which); the slider spans each
    source's range (the authors' files 0..3); a strength outside it is a message."""
    ctx, s = stubbed
    _, _, _, run = handlers.edit_photo(ctx, "tiny-sam", s, "SeFa 2", -4, "0-1")
    settings = run.recipe["settings"]
    assert settings["layers"] == [0, 1] and settings["source"] == "sefa"
    direction = run.arrays["direction"][0]
    assert np.abs(direction[2:]).max() == 0 and np.abs(direction[:2]).min() > 0
    assert run.arrays["direction"].shape == (1, 14, 32)
    _, _, _, run = handlers.edit_photo(ctx, "tiny-sam", s, "GANSpace 1", 2, "6-13")
    assert run.recipe["settings"]["layers"] == list(range(6, 14))
    with pytest.raises(gr.Error, match="from 0 to 3; got -1"):
        handlers.edit_photo(ctx, "tiny-sam", s, "bigger (authors)", -1)
    with pytest.raises(gr.Error, match="Layers must lie in 0..13"):
        handlers.edit_photo(ctx, "tiny-sam", s, "GANSpace 1", 1, "12-20")
    assert handlers.strength_for("bigger (authors)", -2) == gr.update(minimum=0.0, maximum=3.0, value=0.0)
    assert handlers.strength_for("GANSpace 3", 4) == gr.update(minimum=-10.0, maximum=10.0, value=4.0)
    assert handlers.strength_for("SeFa 1", 20)["maximum"] == 15.0


def test_the_tab_states_its_precision(monkeypatch):
    assert "float32" in ui.precision_line(torch.device("cpu")) and "bfloat16" in ui.HOW_IT_WORKS
    assert "**Precision**: float32, as the authors" in ui.HOW_IT_WORKS
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    line = ui.precision_line(torch.device("cuda"))
    assert line.startswith("**GPU precision**: float32, as the authors") and "bfloat16 autocast" in line
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert "changes nothing" in ui.precision_line(torch.device("cuda"))


def test_the_inversion_is_float32_unless_reduced_precision_is_asked_on_a_gpu(stubbed, monkeypatch):
    """The authors run float32 (legacy.py converts their TF pickles with num_fp16_res = 0,
    no conv clamp): no autocast by default, on a GPU too; the labelled option asks for
    bfloat16 autocast, which only a CUDA GPU with bfloat16 grants; the run records which."""
    from core.inversion import optimisation_dtype

    ctx, s = stubbed
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert optimisation_dtype(cuda) is None and optimisation_dtype(cpu) is None
    assert optimisation_dtype(cuda, reduced=True) == torch.bfloat16
    assert optimisation_dtype(cpu, reduced=True) is None  # the CPU: float32 regardless
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert optimisation_dtype(cuda, reduced=True) is None

    def settings(**option) -> dict:
        *_, run = list(handlers.invert(ctx, "tiny-sam", s, None, 1, False, **option))[-1]
        return run.recipe["settings"]

    assert settings()["precision"] == "float32" and StubInversion.last.autocast is None
    assert settings(reduced_precision=True)["precision"] == "float32"  # this machine: a CPU
    assert StubInversion.last.autocast is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    asked = []  # the tab's generator as if on a GPU: the option reaches the dtype's choice
    monkeypatch.setattr(handlers, "optimisation_dtype",
                        lambda device, reduced=False: asked.append(reduced) or optimisation_dtype(cuda, reduced))
    assert settings()["precision"] == "float32" and StubInversion.last.autocast is None
    assert settings(reduced_precision=True)["precision"] == "bfloat16 autocast"
    assert StubInversion.last.autocast == torch.bfloat16 and asked == [False, True]


def test_the_authors_segmenters_make_the_segments(files, tmp_path, monkeypatch):
    """auto: the face parser for face models (the rule-filled reference parser, loaded from the
    registry), ADE20K for the authors' other models (networks stubbed here; their outputs are
    tests/test_ade20k.py's), superpixels elsewhere; classes merged as the authors."""
    import importlib.util
    import json

    from helpers import REFERENCE
    from core.segments import fuse_face_parts, semantic_segments

    spec = importlib.util.spec_from_file_location("fp_ref", REFERENCE / "faceparser" / "make_reference.py")
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    shapes = json.loads((REFERENCE / "faceparser" / "manifest.json").read_text())
    torch.save(ref.fill_state(shapes), tmp_path / "79999_iter.pth")
    car = entry("tiny-car", "stylegan2", files / "sg2-256.pt", SAM_SG2,
                meta={"content": [256, 192], "framing": "letterbox"})
    entries = [entry("tiny-sam", "stylegan2", files / "sg2-256.pt", SAM_SG2),
               entry("tiny-face", "stylegan2", files / "sg2-256.pt", SAM_SG2, meta={"framing": "ffhq"}), car,
               entry("tiny-car-predictor", "sam-invertibility", tmp_path / "none.pt", {}, generator="tiny-car"),
               entry("tiny-parser", "face-parser", tmp_path / "79999_iter.pth", {}),
               entry("tiny-ade-enc", "ade20k-encoder", tmp_path / "none.pth", {}),
               entry("tiny-ade-dec", "ade20k-decoder", tmp_path / "none.pth", {})]
    ctx = context(write_registry(tmp_path / "weights.json", entries))
    assert [engine.default_segmenter(ctx, m) for m in ("tiny-face", "tiny-car", "tiny-sam")] == \
        ["face parser", "ADE20K", "superpixels"]
    assert "segments (auto): the authors' face parser" in engine.describe_helpers(ctx, "tiny-face")

    def session(mid: str) -> engine.Session:
        framed, _ = frame_input(ctx, mid, photo(tmp_path), 256, plain=True)
        target, frame = prepare_target(framed.aligned)
        return engine.Session(mid, target, frame, framed=framed)

    from core.models.faceparser import FaceParser

    seen = []  # (the parser's input, its labels)
    labels = FaceParser.labels
    monkeypatch.setattr(FaceParser, "labels", lambda self, x: seen.append((x, labels(self, x))) or seen[-1][1])
    s = session("tiny-face")
    assert "from the face parser (`tiny-parser`)" in engine.make_segments(ctx, s, "auto", 6)
    assert s.segmenter == "face parser"  # the inversion's recipe names it
    assert torch.equal(seen[0][0], images.pil_to_tensor(s.framed.aligned.image))  # the framed picture
    assert torch.equal(s.segments, semantic_segments(fuse_face_parts(seen[0][1]), (256, 256)))

    import core.models.ade20k as ade

    def probabilities(encoder, decoder, picture, size):  # road | earth | van, as one-hot
        assert picture.shape[-2:] == (192, 256) and size == (192, 256)  # the picture area
        classes = torch.tensor([6, 13, 102]).repeat_interleave(86)[:256].expand(192, 256)
        return torch.nn.functional.one_hot(classes, 150).permute(2, 0, 1)[None].float()

    monkeypatch.setattr(ade, "ade20k_probabilities", probabilities)
    monkeypatch.setattr(ctx, "model", lambda mid, dtype=None: None)
    s = session("tiny-car")
    assert "2 segments from the ADE20K" in engine.make_segments(ctx, s, "auto", 6)
    assert s.segments[:, :172].unique().tolist() == [0] and s.segments[:, 172:].unique().tolist() == [1]
    assert "superpixels" in engine.make_segments(ctx, session("tiny-sam"), "auto", 6)


# ---- a person's photo in, the result in the photo out ----------------------------------------
def astronaut(tmp: Path) -> str:
    """scikit-image's public-domain NASA portrait (512 x 512, one face) as an uploaded PNG."""
    from skimage import data

    return png_file(tmp, "astronaut.png", data.astronaut())


def outside_the_frame(framed) -> tuple[slice, slice]:
    """Rows and columns of the photo well outside the frame's quad (the bottom-right corner
    beyond its bounding box), where the result in the photo must equal the photo."""
    quad = framed.aligned.quad
    bottom, right = int(np.ceil(quad[:, 1].max())) + 2, int(np.ceil(quad[:, 0].max())) + 2
    w, h = framed.photo.size
    assert bottom < h or right < w, "the frame covers the whole photo"
    return (slice(bottom, h), slice(0, w)) if bottom < h else (slice(0, h), slice(right, w))


@pytest.mark.slow
def test_a_face_photo_is_aligned_inverted_and_pasted_back(files, tmp_path):
    """FFHQ framing: the network input is the aligned face; the reconstruction and the edit
    go back into the photo at its size, pixels away from the face unchanged."""
    from core.faces import frame_photo
    from core.images import open_photo

    ctx = context(registry(files, tmp_path))
    path = astronaut(tmp_path)
    expected = frame_photo(open_photo(path), "ffhq", 256)
    s, _, seg_pic, _, _, net, faces = handlers.predict_layer_map(ctx, "tiny-face", path, 6, 0.0, 1)
    assert np.array_equal(net["value"], np.asarray(expected.aligned.image))
    assert net["label"] == expected.note() == "Network input: aligned face (FFHQ recipe)"
    assert len(faces) == 1 and faces[0][1] == "face 1 (used)" and seg_pic.shape == (256, 256, 3)
    assert np.allclose(s.target, images.pil_to_tensor(expected.aligned.image), atol=1e-6)

    s, *_, in_photo, _, run = list(handlers.invert(ctx, "tiny-face", s, None, 1, False))[-1]  # the new session
    photo = np.asarray(expected.photo)
    rows, cols = outside_the_frame(expected)
    assert in_photo.shape == photo.shape == (512, 512, 3)
    assert np.array_equal(in_photo[rows, cols], photo[rows, cols])
    assert not np.array_equal(in_photo, photo)  # the reconstruction went in
    assert np.array_equal(run.images["result_in_photo"], in_photo) and run.images["photo"].shape == (512, 512, 3)
    assert run.recipe["settings"]["framing"] == "ffhq" and run.recipe["settings"]["face"] == 1

    edited, _, edited_in_photo, run = handlers.edit_photo(ctx, "tiny-face", s, "GANSpace 1", 3)
    assert edited_in_photo.shape == photo.shape
    assert np.array_equal(edited_in_photo[rows, cols], photo[rows, cols])
    assert not np.array_equal(edited_in_photo, in_photo)
    assert np.array_equal(run.images["result_in_photo"], edited_in_photo) and "photo" in run.images


def test_a_photo_without_a_face_needs_plain_framing(files, tmp_path):
    """Chelsea the cat has no human face: the face model says to tick "Plain framing", which
    then centre-crops."""
    from skimage import data

    from core.faces import align
    from core.images import open_photo

    ctx = context(registry(files, tmp_path))
    path = png_file(tmp_path, "chelsea.png", data.chelsea())
    with pytest.raises(gr.Error, match="Plain framing"):
        show_framing(ctx, "tiny-face", path, 1, False)
    with pytest.raises(gr.Error, match="Plain framing"):
        handlers.predict_layer_map(ctx, "tiny-face", path, 6, 0.0, 1)
    net, caption, faces = show_framing(ctx, "tiny-face", path, 1, True)
    assert caption == net["label"]
    assert faces == [] and net["label"] == "Network input: centre crop"
    assert np.array_equal(net["value"], np.asarray(align(open_photo(path), None, "center", 256).image))


def test_an_exif_rotated_jpeg_arrives_upright(files, tmp_path):
    """A phone's portrait stored sideways (EXIF orientation 6) is framed upright."""
    from core.faces import align

    pic = np.zeros((200, 400, 3), np.uint8)
    pic[:, :200] = (220, 30, 30)  # stored: red left, blue right -> upright: red top
    pic[:, 200:] = (30, 30, 220)
    path = tmp_path / "sideways.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pic).save(path, exif=exif, quality=95)
    upright = Image.open(path).convert("RGB").transpose(Image.Transpose.ROTATE_270)
    assert upright.size == (200, 400)
    ctx = context(registry(files, tmp_path))
    net, *_ = show_framing(ctx, "tiny-sam", str(path))
    assert np.array_equal(net["value"], np.asarray(align(upright, None, "center", 256).image))
    framed, _ = frame_input(ctx, "tiny-sam", str(path), 256)  # what predict_layer_map frames
    target, _ = prepare_target(framed.aligned)
    assert framed.photo.size == (200, 400)
    assert target[0, 0, :20].mean() > 0.5 and target[0, 2, :20].mean() < -0.5  # red at the top


def test_a_gan_sample_is_used_as_drawn(files, tmp_path):
    """The tab's own sample is in the model's frame already: no alignment, and its result in
    the photo is the result itself (a car's: its picture area)."""
    car = entry("tiny-car", "stylegan2", files / "sg2-256.pt", SAM_SG2,
                meta={"content": [256, 192], "framing": "letterbox"})
    ctx = context(write_registry(tmp_path / "weights.json", [car]))
    picture = drawing(handlers.sample_photo)(ctx, "tiny-car", 7)  # the seed row, as wired
    path = png_file(tmp_path, "sample.png", picture)  # what the photo box hands back
    s, *_, net, faces = handlers.predict_layer_map(ctx, "tiny-car", path, 6, 0.0, 1, 1, False)
    assert s.from_sample and faces == [] and "GAN sample" in net["label"]
    assert np.array_equal(net["value"][32:224], picture) and net["value"][:32].max() == 0
    *_, in_photo, _, run = list(handlers.invert(ctx, "tiny-car", s, None, 1, False))[-1]
    assert in_photo.shape == (192, 256, 3) and run.recipe["settings"]["framing"] == "gan sample"
    assert np.array_equal(run.images["photo"], picture)
    other_app = context(write_registry(tmp_path / "weights.json", [car]))  # it drew nothing
    framed, from_sample = frame_input(other_app, "tiny-car", path, 256)
    assert not from_sample and framed.aligned.recipe == "letterbox"


# ---- the tab through gradio_client -----------------------------------------------------------
@pytest.mark.slow
def test_a_face_photo_end_to_end(files, tmp_path):
    """The real photo through the app: the aligned network input out of "predict", the
    reconstruction in the photo out of "invert" and in "Download all"."""
    from core.faces import frame_photo
    from core.images import open_photo
    from core.recipe import read_bundle

    path = astronaut(tmp_path)
    expected = frame_photo(open_photo(path), "ffhq", 256)
    with app_client(registry(files, tmp_path)) as client:
        *_, editor, _, net, faces = client.predict("tiny-face", handle_file(path), 6, 0.0, 2, 1, False,
                                                   api_name="/sam_predict")
        assert net["label"] == "Network input: aligned face (FFHQ recipe)" and len(faces) == 1
        assert np.array_equal(read_png(net["value"]), np.asarray(expected.aligned.image))
        *_, in_photo = client.predict("tiny-face", unpainted(tmp_path, editor), 1, False, api_name="/sam_invert")
        got, photo = read_png(in_photo), np.asarray(expected.photo)
        rows, cols = outside_the_frame(expected)
        assert got.shape == photo.shape and np.array_equal(got[rows, cols], photo[rows, cols])
        bundle = read_bundle(client.predict(api_name="/sam_download"))
        assert np.array_equal(bundle.images["result_in_photo"], got)
        assert np.array_equal(bundle.images["photo"], photo)


@pytest.mark.slow  # ~30 s: CI runs it
def test_layer_map_inversion_and_edits(files, tmp_path):
    with app_client(registry(files, tmp_path)) as client:
        gallery, seg_pic, editor, info = predict(client, photo(tmp_path))
        assert len(gallery) == 5 and "single-space" in info
        assert read_png(seg_pic).shape == (256, 256, 3)
        assert read_png(editor["background"]).shape == (256, 256, 3)
        _, info2 = client.predict(1.0, api_name="/sam_tau")  # tau 1: every segment passes W+
        assert "W+ 100%" in info2

        _, info3 = client.predict(0.0, api_name="/sam_tau")  # tau 0: nothing passes -> F10
        assert "F10 100%" in info3
        rec, base, target, scores, codes, _ = client.predict("tiny-sam", unpainted(tmp_path, editor), 2, True, api_name="/sam_invert")
        assert "SAM" in scores and "W+ only" in scores and "step 2/2" in scores
        assert read_png(rec).shape == read_png(base).shape == read_png(target).shape == (256, 256, 3)
        arrays = np.load(codes)
        assert {"W+", "F4", "F6", "F8", "F10", "mask_F10", "baseline_W+"} <= set(arrays.files)
        assert arrays["W+"].shape == (1, 14, 32) and arrays["F10"].shape == (1, 8, 128, 128)
        assert arrays["mask_F10"].min() == 1  # tau 0: everything in F10

        from core.recipe import read_bundle

        bundle = read_bundle(client.predict(api_name="/sam_download"))
        assert np.array_equal(bundle.images["reconstruction"], read_png(rec))
        assert bundle.recipe["model_id"] == "tiny-sam" and bundle.recipe["settings"]["done"] == 2
        assert bundle.masks["F10"].min() == 255 and np.array_equal(bundle.arrays["W+"], arrays["W+"])
        edited, edited_base, _ = client.predict("tiny-sam", "bigger (authors)", 0, api_name="/sam_edit")
        diff = np.abs(read_png(edited).astype(int) - read_png(rec))
        assert diff.max() <= 1  # strength 0 == the reconstruction (up to 8-bit rounding)
        edited, edited_base, _ = client.predict("tiny-sam", "bigger (authors)", 3, api_name="/sam_edit")
        assert not np.array_equal(read_png(edited), read_png(rec))
        assert not np.array_equal(read_png(edited_base), read_png(base))
        edited, *_ = client.predict("tiny-sam", "SeFa 1", 2, api_name="/sam_edit")
        assert read_png(edited).shape == (256, 256, 3)
        bundle = read_bundle(client.predict(api_name="/sam_download"))
        assert np.array_equal(bundle.images["edited"], read_png(edited))
        assert bundle.recipe["settings"]["direction"] == "SeFa 1" and bundle.recipe["settings"]["strength"] == 2


@pytest.mark.slow
def test_painted_strokes_override_the_layer_map(files, tmp_path):
    with app_client(registry(files, tmp_path)) as client:
        _, _, editor, _ = predict(client, photo(tmp_path), tau=1.0)  # all W+
        painted = np.zeros((256, 256), bool)
        painted[:, :128] = True  # paint the left half with F8's colour
        value = editor_value(tmp_path, "map.png", read_png(editor["background"]), painted, (97, 129, 57))
        *_, codes, _ = client.predict("tiny-sam", value, 2, False, api_name="/sam_invert")
        masks = np.load(codes)
        m8 = masks["mask_F8"][0, 0]
        assert m8[:, :28].min() > 0.9 and m8[:, 36:].max() < 0.1
        assert masks["mask_F10"].max() == 0 and "baseline_W+" not in masks.files


def test_errors_are_messages(files, tmp_path, monkeypatch):
    with app_client(registry(files, tmp_path)) as client:
        with pytest.raises(Exception, match="Predict the layer map first"):
            client.predict("tiny-sam", None, 3, True, api_name="/sam_invert")
        with pytest.raises(Exception, match="Invert a photo first"):
            client.predict("tiny-sam", "bigger (authors)", 1, api_name="/sam_edit")
        with pytest.raises(Exception, match="not in the list of choices"):  # < 256 px: not offered
            predict(client, photo(tmp_path), model="tiny-small")
        with pytest.raises(Exception, match="Upload a photo"):
            client.predict("tiny-sam", None, 6, 0.2, 2, api_name="/sam_predict")
        monkeypatch.setattr(images, "MAX_PHOTO_PIXELS", 1000)
        with pytest.raises(Exception, match="too large"):
            predict(client, photo(tmp_path))
        text = tmp_path / "notes.png"
        text.write_text("not a picture")
        with pytest.raises(Exception):
            predict(client, str(text))


@pytest.mark.slow
def test_stop_keeps_the_last_preview(files, tmp_path):
    """Stop (its own un-queued endpoint) answers at once; the run ends after its step in
    progress and keeps its last preview's codes."""
    with app_client(registry(files, tmp_path)) as client:
        _, _, editor, _ = predict(client, photo(tmp_path), tau=0.0)
        job = client.submit("tiny-sam", unpainted(tmp_path, editor), 40, False, api_name="/sam_invert")
        deadline = time.time() + 300

        def lines() -> list[str]:
            return [o[3] for o in job.outputs() if isinstance(o, (list, tuple)) and isinstance(o[3], str)]

        while not lines() and time.time() < deadline:
            time.sleep(0.5)
        assert lines(), "no preview arrived"
        start = time.time()
        client.predict(api_name="/sam_stop")
        assert time.time() - start < 2  # at once, not after the step in progress
        job.result(timeout=300)
        assert lines()[-1].startswith("**Stopped** at step") and "are kept" in lines()[-1]
        assert "step 40/40" not in lines()[-2]
        edited, *_ = client.predict("tiny-sam", "bigger (authors)", 0, api_name="/sam_edit")
        assert read_png(edited).shape == (256, 256, 3)  # the preview's codes were kept


def test_the_authors_predictor_drives_the_layer_map(files, tmp_path):
    from core.models.invertibility import InvertibilityPredictor

    torch.manual_seed(0)
    model = InvertibilityPredictor().eval()
    path = tmp_path / "invertibility_test_sg2.pt"
    torch.save(model.checkpoint_state(), path)
    with app_client(registry(files, tmp_path, predictor=path)) as client:
        gallery, _, _, info = predict(client, photo(tmp_path))
        assert "predicted by `tiny-predictor`" in info and len(gallery) == 5


@pytest.mark.slow  # ~20 s: CI runs it
def test_letterboxed_generators_work_on_the_picture_area(files, tmp_path):
    """Cars: the picture area is 4:3 between bars; maps, losses and results cover only it."""
    car = entry("tiny-car", "stylegan2", files / "sg2-256.pt", SAM_SG2,
                meta={"content": [256, 192], "framing": "letterbox"})
    with app_client(write_registry(tmp_path / "weights.json", [car])) as client:
        _, seg_pic, editor, _ = predict(client, photo(tmp_path), model="tiny-car", tau=0.0)
        assert read_png(seg_pic).shape == read_png(editor["background"]).shape == (192, 256, 3)
        rec, _, target, _, codes, _ = client.predict("tiny-car", unpainted(tmp_path, editor), 1, False,
                                                     api_name="/sam_invert")
        assert read_png(rec).shape == read_png(target).shape == (192, 256, 3)
        m10 = np.load(codes)["mask_F10"][0, 0]  # the bars (16 of 128 rows each) get no residual
        assert m10[:14].max() < 0.05 and m10[-14:].max() < 0.05 and m10[24:104].min() == 1
        edited, *_ = client.predict("tiny-car", "GANSpace 1", 1, api_name="/sam_edit")
        assert read_png(edited).shape == (192, 256, 3)


@pytest.mark.slow
def test_the_e4e_encoder_starts_the_inversion(files, tmp_path):
    """With an e4e encoder registered, W+ starts at the encoder's code for the photo: after
    one step (the lr ramp is 0 at step 0) the codes are exactly E(photo)."""
    from PIL import Image

    from core.models.e4e import E4EEncoder, e4e_input
    from core.recipe import read_bundle
    from core.faces import frame_photo
    from core.photo_code import prepare_target

    config = {**SAM_SG2, "style_dim": 512}  # e4e codes are 512-d
    save_sg2(tmp_path / "sg2-512d.pt", config, 13)
    torch.manual_seed(1)
    E = E4EEncoder(14).eval()  # the authors' IR-SE-50 at the cats size (14 styles), random weights
    latent_avg = torch.randn(14, 512)
    torch.save({"state_dict": {f"encoder.{k}": v for k, v in E.state_dict().items()},
                "latent_avg": latent_avg, "opts": {"stylegan_size": 256, "dataset_type": "cats_encode"}},
               tmp_path / "e4e_test_encode.pt")
    entries = [entry("tiny-512d", "stylegan2", tmp_path / "sg2-512d.pt", config),
               entry("tiny-e4e", "e4e", tmp_path / "e4e_test_encode.pt", {"n_styles": 14},
                     generator="tiny-512d")]
    picture = photo(tmp_path)
    with app_client(write_registry(tmp_path / "weights.json", entries)) as client:
        _, _, editor, _ = predict(client, picture, model="tiny-512d", est=2)
        *_, codes, _ = client.predict("tiny-512d", unpainted(tmp_path, editor), 1, False, api_name="/sam_invert")
        recipe = client.predict(api_name="/sam_download")
    target, _ = prepare_target(frame_photo(Image.open(picture).convert("RGB"), "center", 256).aligned)
    with torch.no_grad():
        expected = E(e4e_input(target, (256, 256))) + latent_avg
    got = torch.from_numpy(np.load(codes)["W+"])
    assert got.shape == (1, 14, 512)
    assert (got - expected).abs().max() < 1e-4
    assert read_bundle(recipe).recipe["models"]["encoder"]["id"] == "tiny-e4e"


@pytest.mark.slow
def test_a_diverging_model_is_a_message(files, tmp_path):
    """Weights that give NaNs: the estimate says so instead of drawing garbage or crashing."""
    ckpt = torch.load(files / "sg2-256.pt")
    ckpt["g_ema"]["convs.9.conv.weight"][0, 0, 0, 0, 0] = float("nan")
    torch.save(ckpt, tmp_path / "nan.pt")
    with app_client(write_registry(tmp_path / "weights.json",
                                   [entry("tiny-nan", "stylegan2", tmp_path / "nan.pt", SAM_SG2)])) as client:
        with pytest.raises(Exception, match="diverged"):
            predict(client, photo(tmp_path), model="tiny-nan")
