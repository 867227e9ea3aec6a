"""core.images: conversions at the UI edge (pictures, gr.ImageEditor values, masks, visuals)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core import images
from core.errors import UserError


def rgb(pil: Image.Image) -> np.ndarray:
    assert pil.mode == "RGB"
    return np.asarray(pil)


# ---- to_pil --------------------------------------------------------------------------------
def test_to_pil_grayscale_L_image_replicates_channels():
    a = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    out = rgb(images.to_pil(Image.fromarray(a, mode="L")))
    assert out.shape == (3, 4, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], a)


def test_to_pil_2d_uint8_array_replicates_channels():
    a = np.array([[0, 17, 255], [128, 3, 99]], np.uint8)
    out = rgb(images.to_pil(a))
    assert out.shape == (2, 3, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], a)


def test_to_pil_rgba_flattens_transparent_pixels_onto_white():
    a = np.zeros((2, 2, 4), np.uint8)
    a[0, 0] = [10, 20, 30, 255]  # opaque: unchanged
    a[0, 1] = [10, 20, 30, 0]    # fully transparent: white
    a[1, 0] = [0, 0, 0, 128]     # half transparent black: mid grey
    a[1, 1] = [200, 0, 0, 0]
    out = rgb(images.to_pil(Image.fromarray(a, mode="RGBA")))
    np.testing.assert_array_equal(out[0, 0], [10, 20, 30])
    np.testing.assert_array_equal(out[0, 1], [255, 255, 255])
    np.testing.assert_array_equal(out[1, 1], [255, 255, 255])
    assert np.all(np.abs(out[1, 0].astype(int) - 127) <= 1)


def test_to_pil_hwc4_uint8_array_is_rgba():
    a = np.zeros((3, 5, 4), np.uint8)
    a[..., :3] = [40, 50, 60]
    a[:, :2, 3] = 255  # left two columns opaque, the rest transparent
    out = rgb(images.to_pil(a))
    assert out.shape == (3, 5, 3)
    assert np.all(out[:, :2] == [40, 50, 60])
    assert np.all(out[:, 2:] == 255)


def test_to_pil_hwc3_array_passes_through():
    a = np.random.default_rng(0).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(rgb(images.to_pil(a)), a)


def test_to_pil_16bit_pil_image_is_rescaled():
    a = np.array([[0, 257 * 100, 65535]], np.uint16)
    im = Image.fromarray(a)
    assert im.mode == "I;16"
    out = rgb(images.to_pil(im))
    np.testing.assert_array_equal(out[..., 0], [[0, 100, 255]])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_to_pil_16bit_png_file_is_rescaled(tmp_path: Path):
    a = np.array([[0, 257 * 40], [257 * 200, 65535]], np.uint16)
    Image.fromarray(a).save(tmp_path / "deep.png")
    out = rgb(images.to_pil(tmp_path / "deep.png"))
    np.testing.assert_array_equal(out[..., 1], [[0, 40], [200, 255]])


def test_to_pil_uint16_array_is_rescaled():
    a = np.array([[0, 257 * 7, 257 * 128, 65535]], np.uint16)
    out = rgb(images.to_pil(a))
    np.testing.assert_array_equal(out[..., 0], [[0, 7, 128, 255]])


def test_to_pil_dark_uint16_array_is_still_16_bit():
    # a dark 16-bit picture (every value <= 255) is still 16-bit: it must stay dark
    a = np.array([[0, 1, 255]], np.uint16)
    out = rgb(images.to_pil(a))
    np.testing.assert_array_equal(out[..., 0], [[0, 0, 1]])


def test_to_pil_float_unit_range_is_rescaled():
    a = np.array([[0.0, 0.5, 1.0], [0.25, 0.75, 0.1]], np.float32)
    out = rgb(images.to_pil(a))
    np.testing.assert_array_equal(out[..., 2], np.rint(a * 255).astype(np.uint8))
    a3 = np.stack([a, 1 - a, a * 0], axis=-1).astype(np.float64)
    out3 = rgb(images.to_pil(a3))
    np.testing.assert_array_equal(out3, np.rint(a3 * 255).astype(np.uint8))


def test_to_pil_none_is_a_user_error():
    with pytest.raises(UserError):
        images.to_pil(None)


def test_to_pil_non_image_file_is_a_user_error(tmp_path: Path):
    p = tmp_path / "notes.png"
    p.write_text("this is not a picture")
    with pytest.raises(UserError, match="Could not read"):
        images.to_pil(p)
    with pytest.raises(UserError):
        images.to_pil(str(p))
    with pytest.raises(UserError):
        images.to_pil(tmp_path / "does-not-exist.png")


def test_to_pil_bad_array_shape_and_type_are_user_errors():
    with pytest.raises(UserError):
        images.to_pil(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(UserError):
        images.to_pil(12345)


def test_to_pil_reads_a_png_path(tmp_path: Path):
    a = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "x.png")
    np.testing.assert_array_equal(rgb(images.to_pil(tmp_path / "x.png")), a)
    np.testing.assert_array_equal(rgb(images.to_pil(str(tmp_path / "x.png"))), a)


# ---- tensors -------------------------------------------------------------------------------
def test_pil_to_tensor_shape_range_and_exact_mapping():
    a = np.zeros((3, 4, 3), np.uint8)
    a[0, 0] = [0, 255, 0]
    a[1, 1] = [255, 255, 255]
    a[2, 3] = [51, 102, 204]
    t = images.pil_to_tensor(Image.fromarray(a))
    assert t.shape == (1, 3, 3, 4)
    assert t.dtype == torch.float32
    assert t.min() >= -1 and t.max() <= 1
    assert t[0, 0, 0, 0] == -1 and t[0, 1, 0, 0] == 1 and t[0, 2, 0, 0] == -1
    assert torch.all(t[0, :, 1, 1] == 1)
    expected = torch.tensor([51, 102, 204], dtype=torch.float32) / 127.5 - 1
    torch.testing.assert_close(t[0, :, 2, 3], expected)
    # channel order is R, G, B and layout is [B, C, H, W]
    torch.testing.assert_close(t[0].permute(1, 2, 0), torch.from_numpy(a).float() / 127.5 - 1)


def test_pil_to_tensor_size_resizes_and_centre_crops():
    a = np.zeros((200, 300, 3), np.uint8)
    a[:, :100] = [255, 0, 0]
    a[:, 100:200] = [0, 255, 0]
    a[:, 200:] = [0, 0, 255]
    t = images.pil_to_tensor(Image.fromarray(a), size=64)
    assert t.shape == (1, 3, 64, 64)
    u = images.to_uint8(t)[0]
    # the centre of the crop is the middle third
    assert np.all(np.abs(u[:, 24:40].astype(int) - [0, 255, 0]) <= 2)
    # the kept part is symmetric: left edge from the left third, right edge from the right
    assert np.all(np.abs(u[:, :8].astype(int) - [255, 0, 0]) <= 2)
    assert np.all(np.abs(u[:, -8:].astype(int) - [0, 0, 255]) <= 2)


def test_pil_to_tensor_centre_crop_drops_the_sides():
    # 300x200 -> the central 200x200 is kept; the outer 50 px strips are cropped away
    a = np.zeros((200, 300, 3), np.uint8)
    a[:, :50] = [255, 0, 0]
    a[:, 50:250] = [0, 255, 0]
    a[:, 250:] = [0, 0, 255]
    u = images.to_uint8(images.pil_to_tensor(a, size=64))[0]
    assert u.shape == (64, 64, 3)
    inner = u[:, 3:-3].astype(int)
    assert np.all(np.abs(inner - [0, 255, 0]) <= 3)
    # nothing red or blue survives except faint filter ringing at the very edge
    assert u[..., 0].max() < 64 and u[..., 2].max() < 64


def test_pil_to_tensor_size_tuple_is_width_height():
    a = np.full((40, 40, 3), 90, np.uint8)
    t = images.pil_to_tensor(a, size=(32, 16))
    assert t.shape == (1, 3, 16, 32)


def test_to_uint8_and_tensor_to_pil_round_trip_exactly():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    a[0, 0] = 0
    a[0, 1] = 255
    t = images.pil_to_tensor(Image.fromarray(a))
    u = images.to_uint8(t)
    assert u.dtype == np.uint8 and u.shape == (1, 9, 11, 3)
    np.testing.assert_array_equal(u[0], a)
    pils = images.tensor_to_pil(torch.cat([t, t.flip(-1)]))
    assert len(pils) == 2
    np.testing.assert_array_equal(rgb(pils[0]), a)
    np.testing.assert_array_equal(rgb(pils[1]), a[:, ::-1])


def test_to_uint8_clamps_out_of_range():
    t = torch.tensor([-3.0, -1.0, 0.0, 1.0, 7.0]).reshape(1, 1, 1, 5).expand(1, 3, 1, 5)
    u = images.to_uint8(t)
    np.testing.assert_array_equal(u[0, 0, :, 0], [0, 0, 128, 255, 255])


# ---- gr.ImageEditor values -----------------------------------------------------------------
H, W = 24, 36


def _save(path: Path, a: np.ndarray) -> str:
    Image.fromarray(a).save(path)
    return str(path)


def _layer(rects, h=H, w=W, color=(255, 0, 0)) -> np.ndarray:
    a = np.zeros((h, w, 4), np.uint8)
    for (y0, y1, x0, x1) in rects:
        a[y0:y1, x0:x1, :3] = color
        a[y0:y1, x0:x1, 3] = 255
    return a


def _background(h=H, w=W) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return np.stack([xx * 5 % 256, yy * 7 % 256, np.full_like(xx, 90)], -1).astype(np.uint8)


def _composite(bg: np.ndarray, layers: list[np.ndarray]) -> np.ndarray:
    out = bg.copy()
    for l in layers:
        m = l[..., 3] > 0
        out[m] = l[..., :3][m]
    return out


def editor_value(tmp_path: Path, layers: list[np.ndarray], bg: np.ndarray | None = None,
                 image_mode: str = "RGBA", composite: bool = True) -> dict:
    """The value a real gr.ImageEditor hands to a listener, built by Gradio's own preprocess."""
    import gradio as gr
    from gradio.components.image_editor import EditorData
    from gradio.data_classes import FileData

    bg = _background() if bg is None else bg
    d = tmp_path / f"editor-{len(list(tmp_path.glob('editor-*')))}"
    d.mkdir()
    data = EditorData(
        background=FileData(path=_save(d / "bg.png", bg)),
        layers=[FileData(path=_save(d / f"layer{i}.png", l)) for i, l in enumerate(layers)],
        composite=FileData(path=_save(d / "comp.png", _composite(bg, layers))) if composite else None,
    )
    ed = gr.ImageEditor(image_mode=image_mode, format="png")
    return ed.preprocess(data)


def test_editor_value_shape_is_what_gradio_gives(tmp_path: Path):
    v = editor_value(tmp_path, [_layer([(2, 5, 3, 9)])])
    assert set(v) >= {"background", "layers", "composite"}
    assert isinstance(v["layers"], list) and len(v["layers"]) == 1
    assert v["layers"][0].shape == (H, W, 4) and v["background"].shape == (H, W, 4)


def test_mask_from_editor_painted_rectangle(tmp_path: Path):
    v = editor_value(tmp_path, [_layer([(5, 12, 10, 20)])])
    m = images.mask_from_editor(v)
    assert m.shape == (1, 1, H, W)
    assert m.dtype == torch.float32
    expected = torch.zeros(H, W)
    expected[5:12, 10:20] = 1
    torch.testing.assert_close(m[0, 0], expected, rtol=0, atol=0)


def test_mask_from_editor_union_of_layers(tmp_path: Path):
    v = editor_value(tmp_path, [_layer([(0, 4, 0, 4)]), _layer([(10, 20, 25, 30)], color=(0, 0, 255))])
    m = images.mask_from_editor(v)[0, 0]
    expected = torch.zeros(H, W)
    expected[0:4, 0:4] = 1
    expected[10:20, 25:30] = 1
    torch.testing.assert_close(m, expected, rtol=0, atol=0)


def test_mask_from_editor_black_paint_counts_in_rgba_mode(tmp_path: Path):
    v = editor_value(tmp_path, [_layer([(3, 6, 3, 6)], color=(0, 0, 0))])
    m = images.mask_from_editor(v)[0, 0]
    assert m.sum() == 9 and torch.all(m[3:6, 3:6] == 1)


def test_mask_from_editor_threshold_on_alpha(tmp_path: Path):
    layer = _layer([(0, 5, 0, 5)])
    layer[0:5, 0:2, 3] = 100   # faint strokes: not painted
    layer[0:5, 2:5, 3] = 200   # firm strokes: painted
    v = editor_value(tmp_path, [layer])
    m = images.mask_from_editor(v)[0, 0]
    assert m.sum() == 15 and torch.all(m[0:5, 2:5] == 1) and torch.all(m[:, :2] == 0)


def test_mask_from_editor_size_resizes_nearest_and_centre_crops(tmp_path: Path):
    # 24x36 -> 12x12: scale to 12x18, crop columns 3..15; left 6 source columns fall outside
    layer = _layer([(0, 12, 0, 6), (12, 24, 12, 24)])
    v = editor_value(tmp_path, [layer])
    m = images.mask_from_editor(v, size=12)
    assert m.shape == (1, 1, 12, 12)
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    # the painted centre block (rows 12..24, cols 12..24) lands at rows 6..12, cols 3..9
    expected = torch.zeros(12, 12)
    expected[6:12, 3:9] = 1
    torch.testing.assert_close(m[0, 0], expected, rtol=0, atol=0)
    # the same crop as the image: the mask lines up with pil_to_tensor(background, size)
    bg = images.pil_to_tensor(images.editor_background(v), size=12)
    assert bg.shape[-2:] == m.shape[-2:]


def test_mask_from_editor_size_matches_image_crop(tmp_path: Path):
    # paint exactly the pixels of one colour: after the same resize+crop they coincide
    bg = np.zeros((40, 60, 3), np.uint8)
    bg[10:30, 25:45] = 255
    layer = np.zeros((40, 60, 4), np.uint8)
    layer[10:30, 25:45] = 255
    v = editor_value(tmp_path, [layer], bg=bg)
    m = images.mask_from_editor(v, size=20)[0, 0]
    img = images.pil_to_tensor(images.editor_background(v), size=20)[0, 0]
    assert m.shape == img.shape == (20, 20)
    white = img > 0.9
    black = img < -0.9
    assert torch.all(m[white] == 1) and torch.all(m[black] == 0)


def test_mask_from_editor_empty_layer_is_a_user_error(tmp_path: Path):
    v = editor_value(tmp_path, [_layer([])])
    with pytest.raises(UserError, match="mask is empty"):
        images.mask_from_editor(v)


def test_mask_from_editor_not_required_returns_zeros(tmp_path: Path):
    v = editor_value(tmp_path, [_layer([])])
    m = images.mask_from_editor(v, required=False)
    assert m.shape == (1, 1, H, W) and torch.all(m == 0)
    m2 = images.mask_from_editor(v, size=16, required=False)
    assert m2.shape == (1, 1, 16, 16) and torch.all(m2 == 0)


def test_mask_from_editor_no_layers_uses_composite_vs_background(tmp_path: Path):
    layer = _layer([(4, 9, 20, 30)], color=(10, 250, 10))
    v = editor_value(tmp_path, [layer])
    v = {**v, "layers": []}
    m = images.mask_from_editor(v)[0, 0]
    expected = torch.zeros(H, W)
    expected[4:9, 20:30] = 1
    torch.testing.assert_close(m, expected, rtol=0, atol=0)


def test_mask_from_editor_no_layers_and_unchanged_composite(tmp_path: Path):
    v = editor_value(tmp_path, [])
    assert v["layers"] == []
    with pytest.raises(UserError, match="mask is empty"):
        images.mask_from_editor(v)
    m = images.mask_from_editor(v, required=False)
    assert m.shape == (1, 1, H, W) and torch.all(m == 0)


def test_mask_from_editor_background_only_not_required_keeps_image_size(tmp_path: Path):
    v = editor_value(tmp_path, [], composite=False)
    assert v["composite"] is None and v["background"] is not None
    m = images.mask_from_editor(v, required=False)
    assert m.shape == (1, 1, H, W) and torch.all(m == 0)


def test_mask_from_editor_missing_image_is_a_user_error():
    import gradio as gr
    from gradio.components.image_editor import EditorData

    empty = gr.ImageEditor(format="png").preprocess(EditorData(background=None, layers=[], composite=None))
    for value in (None, {}, empty, {"background": None, "layers": [], "composite": None}):
        with pytest.raises(UserError, match="No image"):
            images.mask_from_editor(value)
        with pytest.raises(UserError, match="No image"):
            images.mask_from_editor(value, required=False)


def test_mask_from_editor_layers_of_different_sizes(tmp_path: Path):
    v = editor_value(tmp_path, [_layer([(0, 3, 0, 3)])])
    v = {**v, "layers": v["layers"] + [np.full((H // 2, W // 2, 4), 255, np.uint8)]}
    with pytest.raises(UserError, match="different sizes"):
        images.mask_from_editor(v)


def test_mask_from_editor_rgb_image_mode(tmp_path: Path):
    v = editor_value(tmp_path, [_layer([(5, 12, 10, 20)]), _layer([(20, 24, 0, 2)], color=(0, 200, 0))],
                     image_mode="RGB")
    assert v["layers"][0].shape == (H, W, 3) and v["background"].shape == (H, W, 3)
    m = images.mask_from_editor(v)
    expected = torch.zeros(H, W)
    expected[5:12, 10:20] = 1
    expected[20:24, 0:2] = 1
    assert m.shape == (1, 1, H, W)
    torch.testing.assert_close(m[0, 0], expected, rtol=0, atol=0)
    assert images.mask_from_editor(v, size=12).shape == (1, 1, 12, 12)


def test_editor_background_is_the_rgb_background(tmp_path: Path):
    bg = _background()
    v = editor_value(tmp_path, [_layer([(0, 10, 0, 10)])], bg=bg)
    out = images.editor_background(v)
    assert out.mode == "RGB" and out.size == (W, H)
    np.testing.assert_array_equal(np.asarray(out), bg)
    v_rgb = editor_value(tmp_path, [_layer([(0, 10, 0, 10)])], bg=bg, image_mode="RGB")
    np.testing.assert_array_equal(np.asarray(images.editor_background(v_rgb)), bg)
    with pytest.raises(UserError):
        images.editor_background(None)
    with pytest.raises(UserError):
        images.editor_background({"background": None, "layers": [], "composite": None})


# ---- resize_mask ---------------------------------------------------------------------------
def test_resize_mask_area_gives_coverage():
    m = torch.zeros(1, 1, 4, 4)
    m[0, 0, 0:2, 2:4] = 1
    out = images.resize_mask(m, 2, "area")
    torch.testing.assert_close(out, torch.tensor([[[[0.0, 1.0], [0.0, 0.0]]]]))
    m2 = torch.zeros(1, 1, 4, 4)
    m2[0, 0, 0, 0] = 1          # 1 of 4 pixels in the top-left cell
    m2[0, 0, 2:4, 2] = 1        # 2 of 4 in the bottom-right cell
    torch.testing.assert_close(images.resize_mask(m2, 2), torch.tensor([[[[0.25, 0.0], [0.0, 0.5]]]]))
    m3 = torch.zeros(1, 1, 8, 8)
    m3[0, 0, 1, 1] = 1          # 1 of 16 pixels
    m3[0, 0, 4:8, 5:8] = 1      # 12 of 16 pixels
    torch.testing.assert_close(images.resize_mask(m3, 2), torch.tensor([[[[1 / 16, 0.0], [0.0, 0.75]]]]))


def test_resize_mask_max_is_conservative():
    m = torch.zeros(1, 1, 4, 4)
    m[0, 0, 0, 0] = 1
    m[0, 0, 3, 2] = 1
    out = images.resize_mask(m, 2, "max")
    torch.testing.assert_close(out, torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]]))


def test_resize_mask_nearest_stays_binary_and_upsamples():
    m = (torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    down = images.resize_mask(m, (4, 8), "nearest")
    assert down.shape == (1, 1, 4, 8)
    assert set(down.unique().tolist()) <= {0.0, 1.0}
    up = images.resize_mask(m, 32, "nearest")
    torch.testing.assert_close(up[..., ::2, ::2], m)


def test_resize_mask_unknown_mode():
    with pytest.raises(ValueError, match="bilinear"):
        images.resize_mask(torch.zeros(1, 1, 4, 4), 2, "bilinear")


# ---- visualisation -------------------------------------------------------------------------
def test_heatmap_colours_and_shape():
    v = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 10.0]])
    out = images.heatmap(v)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out[0, 0], images._MAGMA[0])
    np.testing.assert_array_equal(out[1, 2], images._MAGMA[-1])
    # brightness grows with the value
    lum = out.astype(int).sum(-1).ravel()
    assert np.all(np.diff(lum) > 0)
    # a [1, 1, H, W] tensor and a numpy array are accepted; size resizes
    big = images.heatmap(v.numpy()[None, None], size=12)
    assert big.shape == (12, 12, 3) and big.dtype == np.uint8


def test_heatmap_limits_and_constant_input():
    v = np.array([[0.5, 0.5], [0.5, 0.5]])
    out = images.heatmap(v)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert np.all(out == out[0, 0])
    clipped = images.heatmap(np.array([[-5.0, 0.0, 1.0, 9.0]]), vmin=0.0, vmax=1.0)
    assert clipped.shape == (1, 4, 3)  # a 1 x W map stays a picture
    np.testing.assert_array_equal(clipped[0, 0], images._MAGMA[0])
    np.testing.assert_array_equal(clipped[0, 1], images._MAGMA[0])
    np.testing.assert_array_equal(clipped[0, 2], images._MAGMA[-1])
    np.testing.assert_array_equal(clipped[0, 3], images._MAGMA[-1])


def test_heatmap_of_a_diverged_map_still_draws():
    """NaN/inf (a diverged optimisation) take the ends of the finite range, not an IndexError."""
    out = images.heatmap(np.array([[0.0, np.nan, 1.0, np.inf, -np.inf]]))
    np.testing.assert_array_equal(out[0, 1], images._MAGMA[0])
    np.testing.assert_array_equal(out[0, 3], images._MAGMA[-1])
    np.testing.assert_array_equal(out[0, 4], images._MAGMA[0])
    assert images.heatmap(np.full((2, 2), np.nan)).shape == (2, 2, 3)


def test_overlay_tints_only_inside_the_mask():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)
    img = images.pil_to_tensor(a)[0]
    mask = torch.zeros(1, 1, 8, 10)
    mask[..., 2:5, 3:7] = 1
    color = (255, 64, 64)
    out = images.overlay(img, mask, color=color, alpha=0.5)
    assert out.dtype == np.uint8 and out.shape == (8, 10, 3)
    inside = np.zeros((8, 10), bool)
    inside[2:5, 3:7] = True
    np.testing.assert_array_equal(out[~inside], a[~inside])
    expected = np.rint(a[inside] * 0.5 + np.array(color) * 0.5)
    assert np.all(np.abs(out[inside].astype(int) - expected) <= 1)
    # a batched image and a 2-D mask work too
    out2 = images.overlay(img[None], mask[0, 0], color=color, alpha=0.5)
    np.testing.assert_array_equal(out2, out)


def test_grid_layout_for_five_images_in_two_columns():
    b, h, w, pad = 5, 6, 4, 2
    vals = torch.linspace(-1, 0.6, b)
    imgs = vals.reshape(b, 1, 1, 1).expand(b, 3, h, w).contiguous()
    sheet = images.grid(imgs, ncol=2, pad=pad)
    assert sheet.dtype == np.uint8
    assert sheet.shape == (3 * h + 2 * pad, 2 * w + pad, 3)
    u = images.to_uint8(imgs)
    for i in range(b):
        r, c = divmod(i, 2)
        cell = sheet[r * (h + pad): r * (h + pad) + h, c * (w + pad): c * (w + pad) + w]
        np.testing.assert_array_equal(cell, u[i])
    # gutters and the empty sixth cell are white
    assert np.all(sheet[h:h + pad] == 255)
    assert np.all(sheet[:, w:w + pad] == 255)
    assert np.all(sheet[2 * (h + pad):, w + pad:] == 255)
    assert images.grid(imgs).shape == (h, b * w + (b - 1) * 2, 3)
