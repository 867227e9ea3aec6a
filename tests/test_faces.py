"""A person's photo in and out, on real photos and the real landmark model (offline):
open_photo, face detection, the FFHQ / CelebA-HQ / squash / centre / letterbox recipes and the
paste-back into the photo."""
from __future__ import annotations

import io
import math
import time

import numpy as np
import pytest
from PIL import Image

from core.errors import UserError
from core.faces import Face, align, detect, face_quad, frame_photo, paste_back
from core.images import MAX_PHOTO_PIXELS, open_photo

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(skimage_data.astronaut())  # NASA portrait, public domain


@pytest.fixture(scope="module")
def face(astronaut) -> Face:
    faces = detect(astronaut)
    assert len(faces) == 1  # the mission patch's weak detection is dropped
    return faces[0]


def encoded(img: Image.Image, fmt: str = "PNG", **kwargs) -> io.BytesIO:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    buf.seek(0)
    return buf


# ---- opening a photo -----------------------------------------------------------------------
@pytest.mark.parametrize("orientation, stored_turn", [(6, Image.Transpose.ROTATE_90),
                                                      (8, Image.Transpose.ROTATE_270)])
def test_exif_orientation_is_applied(astronaut, orientation, stored_turn):
    """A phone stores a portrait sideways with an orientation tag: it arrives upright."""
    wide = astronaut.crop((0, 0, 512, 384))
    exif = Image.Exif()
    exif[0x0112] = orientation
    photo = open_photo(encoded(wide.transpose(stored_turn), "PNG", exif=exif.tobytes()))
    assert photo.size == wide.size and photo.mode == "RGB"
    assert np.array_equal(np.asarray(photo), np.asarray(wide))


def test_modes_become_rgb():
    gray16 = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    photo = open_photo(encoded(Image.fromarray(gray16)))
    a = np.asarray(photo)
    assert photo.mode == "RGB" and a[0, 0, 0] == 0 and a[-1, -1, 0] == 255
    assert abs(int(a[32, 0, 0]) - round(gray16[32, 0] / 257)) <= 1  # not near-white
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    assert np.asarray(open_photo(encoded(rgba)))[0, 0].tolist() == [255, 255, 255]  # on white
    for mode in ("L", "P", "CMYK", "1"):
        img = Image.new("RGB", (8, 8), (10, 200, 30)).convert(mode)
        fmt = "JPEG" if mode == "CMYK" else "PNG"
        assert open_photo(encoded(img, fmt)).mode == "RGB", mode


def test_bombs_and_non_images_are_refused_readably(tmp_path):
    side = int(math.isqrt(MAX_PHOTO_PIXELS)) + 100
    bomb = encoded(Image.new("1", (side, side)))  # a few KB that would decode into a GB
    started = time.perf_counter()
    with pytest.raises(UserError, match="too large.*megapixels"):
        open_photo(bomb)
    assert time.perf_counter() - started < 2  # refused from the header, not after decoding
    with pytest.raises(UserError, match="not a picture this app can read"):
        open_photo(io.BytesIO(b"%PDF-1.4 not a picture"))
    cut = encoded(Image.new("RGB", (64, 64), (1, 2, 3)), "JPEG").getvalue()[:200]
    with pytest.raises(UserError, match="damaged or incomplete"):
        open_photo(io.BytesIO(cut))
    with pytest.raises(UserError, match="No photo"):
        open_photo(None)


# ---- detection and the face recipes --------------------------------------------------------
def test_detect_finds_the_astronaut_with_68_landmarks(face):
    assert face.landmarks.shape == (68, 2)
    l, t, r, b = face.box
    inside = ((face.landmarks[:, 0] > l - 20) & (face.landmarks[:, 0] < r + 20)
              & (face.landmarks[:, 1] > t - 20) & (face.landmarks[:, 1] < b + 20))
    assert inside.mean() > 0.9
    assert face.landmarks[36:42, 0].mean() < face.landmarks[42:48, 0].mean()  # image-left eye first


def independent_ffhq_quad(lm: np.ndarray) -> np.ndarray:
    """The FFHQ square from the same landmarks, computed another way: an angle and a side."""
    eyes = np.array([lm[36:42].mean(0), lm[42:48].mean(0)])
    mouth = (lm[48] + lm[54]) / 2
    eye_mid = eyes.mean(0)
    to_mouth = mouth - eye_mid
    direction = (eyes[1] - eyes[0]) + np.array([to_mouth[1], -to_mouth[0]])
    angle = math.atan2(direction[1], direction[0])
    half = max(2.0 * np.linalg.norm(eyes[1] - eyes[0]), 1.8 * np.linalg.norm(to_mouth))
    centre = eye_mid + 0.1 * to_mouth
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    unit = np.array([[-1, -1], [-1, 1], [1, 1], [1, -1]], float)  # TL, BL, BR, TR in the frame
    return centre + unit @ rot.T * half


def test_ffhq_quad_matches_an_independent_computation(astronaut, face):
    got = align(astronaut, face, "ffhq", 256)
    assert np.abs(got.quad - independent_ffhq_quad(face.landmarks)).max() < 1.0
    assert got.image.size == (256, 256) and got.recipe == "ffhq"
    # CelebA-HQ: the same square from the 5 points ProGAN used, shifted by ProGAN's half pixel
    celeb = face_quad(face, "celebahq")
    assert np.abs(celeb - (independent_ffhq_quad(face.landmarks) + 0.5)).max() < 1.0


def test_the_crop_follows_a_rotated_scaled_and_moved_photo(astronaut, face):
    """Rotate the photo by 20 degrees, scale it 1.5x and place it on a bigger canvas: the
    detected face's square moves exactly with it, and the aligned picture barely changes."""
    angle, scale, offset = 20.0, 1.5, np.array([150.0, 90.0])
    big = astronaut.resize((768, 768), Image.Resampling.LANCZOS)
    turned = big.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(128, 128, 128))
    canvas = Image.new("RGB", (turned.width + 300, turned.height + 200), (128, 128, 128))
    canvas.paste(turned, tuple(offset.astype(int)))
    moved = detect(canvas)[0]

    def to_canvas(p: np.ndarray) -> np.ndarray:  # original photo pixel -> canvas pixel
        c = np.array([256.0, 256.0]) * scale - 0.5 + 0.5  # centre of the resized photo
        q = (p + 0.5) * scale - 0.5 - c
        t = math.radians(angle)
        r = np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])
        return q @ r.T + np.array([turned.width, turned.height]) / 2 - 0.5 + offset

    expected = to_canvas(align(astronaut, face, "ffhq", 128).quad)
    got = align(canvas, moved, "ffhq", 128)
    side = np.linalg.norm(expected[3] - expected[0])
    assert np.abs(got.quad - expected).max() < 0.04 * side  # landmark noise only
    a = np.asarray(align(astronaut, face, "ffhq", 128).image, float)
    assert np.abs(np.asarray(got.image, float) - a).mean() < 12


def test_several_faces_largest_first_and_no_face(astronaut):
    two = Image.new("RGB", (1100, 600), (90, 90, 90))
    two.paste(astronaut, (20, 40))
    two.paste(astronaut.resize((400, 400)), (650, 100))
    faces = detect(two)
    assert len(faces) == 2 and faces[0].area > faces[1].area
    assert faces[0].box[0] < 550 < faces[1].box[0]
    framed = frame_photo(two, "ffhq", 64, face=2)
    assert framed.face_index == 1 and "face 2 of 2" in framed.note()
    cat = Image.fromarray(skimage_data.chelsea())
    assert detect(cat) == []
    with pytest.raises(UserError, match="No face was found.*Plain framing"):
        frame_photo(cat, "ffhq", 64)
    assert frame_photo(cat, "ffhq", 64, plain=True).aligned.recipe == "center"


def test_grayscale_and_rgba_photos_are_aligned(astronaut, tmp_path):
    gray = open_photo(encoded(astronaut.convert("L")))
    rgba = open_photo(encoded(astronaut.convert("RGBA")))
    for photo in (gray, rgba):
        framed = frame_photo(photo, "ffhq", 64)
        assert framed.aligned.image.mode == "RGB" and len(framed.faces) == 1


@pytest.mark.slow
def test_a_24_megapixel_photo_is_bounded(astronaut):
    """A big face is found on the downscaled overview, landmarks and the crop on the full photo."""
    big = astronaut.resize((4000, 4000), Image.Resampling.BILINEAR)
    photo = Image.new("RGB", (6000, 4000), (100, 110, 120))
    photo.paste(big, (1000, 0))
    started = time.perf_counter()
    framed = frame_photo(photo, "ffhq", 256)
    assert time.perf_counter() - started < 30
    small = detect(astronaut)[0]
    expected = (face_quad(small, "ffhq") + 0.5) * (4000 / 512) - 0.5 + np.array([1000, 0])
    assert np.abs(framed.aligned.quad - expected).max() < 0.03 * 4000 / 512 * 90 * 2


HEAD = (110, 10, 330, 250)  # the astronaut's head in her photo; her face (dlib's box) is 90 px wide


def small_head(astronaut, face_px: float) -> Image.Image:
    """The astronaut's head, scaled so that her face is about `face_px` wide."""
    k = face_px / 90
    return astronaut.crop(HEAD).resize((round(220 * k), round(240 * k)), Image.Resampling.LANCZOS)


def test_a_50_px_face_in_a_24_megapixel_photo_is_found_as_in_a_small_photo(astronaut):
    """A phone photo's small face: the same pixels give the same face in a 640 x 480 photo
    (found on the overview) and in the far corner of a 6000 x 4000 one (found by the tiles)."""
    head = small_head(astronaut, 50)
    spot = (640 - 20 - head.width, 480 - 20 - head.height)
    small = Image.new("RGB", (640, 480), (100, 110, 120))
    small.paste(head, spot)
    big = Image.new("RGB", (6000, 4000), (100, 110, 120))
    offset = np.array([6000 - 640, 4000 - 480])
    big.paste(head, tuple(offset + spot))
    expected = detect(small)
    assert len(expected) == 1
    started = time.perf_counter()
    found = detect(big)
    assert time.perf_counter() - started < 30
    assert len(found) == 1 and 40 <= found[0].box[2] - found[0].box[0] <= 60
    assert np.abs(face_quad(found[0], "ffhq") - (face_quad(expected[0], "ffhq") + offset)).max() < 2.0
    framed = frame_photo(big, "ffhq", 64)
    assert np.abs(framed.aligned.quad - face_quad(found[0], "ffhq")).max() < 1e-9


def test_two_small_faces_far_apart_are_both_found(astronaut):
    big = Image.new("RGB", (6000, 4000), (100, 110, 120))
    big.paste(small_head(astronaut, 44), (30, 30))
    big.paste(small_head(astronaut, 60), (6000 - 200, 4000 - 200))
    found = detect(big)
    assert len(found) == 2
    assert found[0].box[0] > 5500 and found[0].box[1] > 3500  # the larger, bottom right
    assert found[1].box[2] < 200 and found[1].box[3] < 200


def test_faces_on_tile_seams_are_found_once(astronaut):
    """A face across the seam of two tiles (or four) is found once, by the tile that holds
    its centre, whatever its size between the tiles' reach and the overview's."""
    from core.faces import _levels, _tiles

    big = Image.new("RGB", (6000, 4000), (100, 110, 120))
    levels = _levels(80 * 6000 / 1600)
    assert levels[0] == 1.75 and len(levels) == 2
    cores = [core for core, _ in _tiles(big.size, levels[0])]
    assert [c[:2] for c in cores] == [(0, 0), (2000, 0), (4000, 0), (0, 2000), (2000, 2000), (4000, 2000)]
    expected = [(2000, 600), (4000, 3000), (2000, 2000), (4000, 1000)]  # on seams; a 4-tile corner
    for size, (x, y) in zip((45, 70, 150, 260), expected):
        cx, cy = 110 * size / 90, 111 * size / 90  # the face's centre in the head picture
        big.paste(small_head(astronaut, size), (round(x - cx), round(y - cy)))
    found = detect(big)
    assert len(found) == 4
    centres = np.array([((f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2) for f in found])
    for x, y in expected:
        assert (np.abs(centres - [x, y]).max(1) < 40).sum() == 1


def test_a_small_face_amid_texture_and_no_face_in_texture(astronaut):
    """Tiles scan textures at a high scale, where grass and gravel can score like a weak
    face: a second look at the face's size keeps the face and drops the texture."""
    photo = Image.new("RGB", (2400, 1600))
    for i, name in enumerate(("grass", "gravel", "brick", "coffee", "rocket", "chelsea")):
        texture = Image.fromarray(getattr(skimage_data, name)()).convert("RGB").resize((800, 800))
        photo.paste(texture, ((i % 3) * 800, (i // 3) * 800))
    photo.paste(small_head(astronaut, 46), (1100, 700))
    found = detect(photo)
    assert len(found) == 1 and 1100 < found[0].box[0] < found[0].box[2] < 1100 + 160


# ---- the other recipes and the paste-back --------------------------------------------------
@pytest.mark.parametrize("recipe", ["squash", "center", "letterbox"])
def test_plain_recipes_map_frame_pixels_to_photo_pixels(astronaut, recipe):
    photo = astronaut.crop((0, 0, 512, 320))  # not square
    got = align(photo, None, recipe, 64, content=(64, 48))
    q = got.quad
    if recipe == "squash":
        assert np.allclose(q, [[-0.5, -0.5], [-0.5, 319.5], [511.5, 319.5], [511.5, -0.5]])
    elif recipe == "center":
        assert np.allclose(q, [[95.5, -0.5], [95.5, 319.5], [415.5, 319.5], [415.5, -0.5]])
    else:  # 4:3 band of the photo = the whole height, 426.7 px wide, plus bars above and below
        assert got.content == (0, 8, 64, 56)
        width = 320 * 64 / 48
        assert np.isclose(q[3, 0] - q[0, 0], width) and np.isclose(q[1, 1] - q[0, 1], width)
        assert np.asarray(got.image)[:8].max() == 0  # black bars


@pytest.mark.parametrize("recipe", ["ffhq", "celebahq", "squash", "center", "letterbox"])
def test_paste_back_of_the_unedited_crop_reproduces_the_photo(astronaut, face, recipe):
    photo = astronaut.crop((0, 0, 512, 400))
    f = face if recipe in ("ffhq", "celebahq") else None
    got = align(photo, f, recipe, 512, content=(512, 384))  # about 1:1: small resampling error
    back = paste_back(photo, got, got.image)
    a, b = np.asarray(back, int), np.asarray(photo, int)
    assert back.size == photo.size
    l = max(int(np.floor(got.quad[:, 0].min())) - 1, 0)
    r = int(np.ceil(got.quad[:, 0].max())) + 2
    t = max(int(np.floor(got.quad[:, 1].min())) - 1, 0)
    bottom = int(np.ceil(got.quad[:, 1].max())) + 2
    outside = np.ones(a.shape[:2], bool)
    outside[t:bottom, l:r] = False
    assert np.array_equal(a[outside], b[outside])  # byte-identical outside the frame
    assert np.abs(a - b).mean() < 3.0  # inside: resampling error only


def test_paste_back_puts_an_edit_only_where_the_mask_is(astronaut, face):
    got = align(astronaut, face, "ffhq", 128)
    edited = np.asarray(got.image).copy()
    edited[:, :] = (255, 0, 0)
    mask = np.zeros((128, 128), np.float32)
    mask[40:90, 30:100] = 1  # eyes and nose
    back = np.asarray(paste_back(astronaut, got, edited, mask), int)
    photo = np.asarray(astronaut, int)
    changed = np.abs(back - photo).sum(-1) > 0
    eyes = face.landmarks[36:48].mean(0).astype(int)
    assert back[eyes[1], eyes[0], 0] > 200 and back[eyes[1], eyes[0], 1] < 60
    assert not changed[:20].any() and not changed[-100:].any()  # far from the face: untouched
    with pytest.raises(UserError, match="another photo"):
        paste_back(astronaut.crop((0, 0, 100, 100)), got, edited)


def test_open_photo_takes_decoded_pictures_too(astronaut):
    assert open_photo(np.asarray(astronaut)).size == (512, 512)
    assert open_photo(astronaut.convert("L")).mode == "RGB"


def test_frame_for_model_reads_framing_and_picture_area_from_the_registry(astronaut, tmp_path):
    """The registry says how each model's photos are framed; companions inherit it."""
    import json

    from core.framing import framing_sentence
    from core.hub import load_registry

    (tmp_path / "w.json").write_text(json.dumps([
        {"id": "faces", "arch": "stylegan2", "config": {"size": 64}, "meta": {"framing": "ffhq"},
         "path": "g.pt"},
        {"id": "enc", "arch": "e4e", "generator": "faces", "path": "e.pt"},
        {"id": "cars", "arch": "stylegan2", "config": {"size": 64},
         "meta": {"framing": "letterbox", "content": [64, 48]}, "path": "c.pt"},
        {"id": "reg", "arch": "regressor", "generator": "cars", "path": "r.pt"}]))
    reg = load_registry(tmp_path / "w.json")
    from core.faces import frame_for_model

    face = frame_for_model(reg, "enc", astronaut, 64)
    assert face.aligned.recipe == "ffhq" and len(face.faces) == 1
    car = frame_for_model(reg, "reg", astronaut, 64)
    assert car.aligned.recipe == "letterbox" and car.aligned.content == (0, 8, 64, 56)
    assert "Plain framing" in framing_sentence("ffhq") and "squash" in framing_sentence("squash")
