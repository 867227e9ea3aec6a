"""A person's photo into a model's frame and back: face detection, alignment recipes, paste-back.

Face models were trained on faces cropped and rotated by a fixed recipe (FFHQ: NVIDIA's
`recreate_aligned_images`; CelebA-HQ: ProGAN's `create_celebahq`); other models on whole
pictures squashed, centre-cropped or letterboxed into their square. `align(photo, face,
recipe, size)` reproduces the model's recipe and remembers where its frame lies in the photo
(`Aligned.quad`), so `paste_back` can put an edit back into the photo at full resolution.

Landmarks come from dlib's frontal face detector and 68-point shape predictor (the pair the
FFHQ script and latent-composition's `face_crop.py` use), loaded once, offline, from the
`dlib-bin` and `face-recognition-models` packages. CelebA-HQ was built from CelebA's five
annotated points (eye centres, mouth corners); here they are derived from the 68: each eye's
centre is the mean of its six points, the mouth corners are points 48 and 54.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from core.errors import UserError
from core.framing import FACE_FRAMINGS as FACE_RECIPES
from core.framing import FRAMINGS as RECIPES
from core.framing import DRAWN, LABELS
from core.images import open_photo

DATASET_SIZE = 1024  # both face recipes make 1024 px pictures; smaller models use them resized
DETECT_SIDE = 1600  # the overview copy (big faces, the flat-region map) is this size at most
MIN_SCORE = 0.2  # weaker detections are mostly not faces (the mission patch in the astronaut photo)
MIN_FACE = 40  # px: the smallest face (dlib box width) detect() looks for in a photo of any size
WINDOW = 80  # dlib's frontal detector scans an 80 px window (pyramid steps of 5/6)
FINE_SCALE = 1.75  # tiles are enlarged so a 40 px face is 70 px (measured: 38 px always found, 34 mostly)
TILE = 3584  # a tile's core side at its level's scale: bounds memory (50 MP: ~200 MB over the photo)
OVERLAP = 320  # level px that tiles overlap by: a face up to OVERLAP - 32 lies whole in one tile
FLAT = 8  # grey levels: where the overview varies less than this nearby, there is no face to find
VERIFY_SIDE = 110  # px: a tile's face is looked at again this wide, in colour, around its box
VERIFY_SCORE = 0.4  # ...and kept if it scores this there (faces score ~1, texture below 0.25)
LANDMARK_MODEL = "shape_predictor_68_face_landmarks.dat"


# ---- detection -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]  # left, top, right, bottom in photo pixels
    landmarks: np.ndarray  # [68, 2] float (x, y) in photo pixels (dlib's 68-point layout)
    score: float  # the detector's confidence

    @property
    def area(self) -> int:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


@functools.lru_cache(maxsize=1)
def _dlib_models():
    """(detector, shape predictor), loaded once; both ship with registry packages, so nothing
    is downloaded. The predictor's path is found without importing face_recognition_models
    (its __init__ needs pkg_resources, which new setuptools no longer has)."""
    import importlib.util

    try:
        import dlib
    except ImportError:
        raise UserError("Face alignment needs the dlib-bin package: pip install dlib-bin") from None
    spec = importlib.util.find_spec("face_recognition_models")
    path = (Path(spec.submodule_search_locations[0]) / "models" / LANDMARK_MODEL) if spec else None
    if path is None or not path.is_file():
        raise UserError("Face alignment needs dlib's landmark model from the "
                        "face-recognition-models package: pip install face-recognition-models")
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(path))


def _to_photo(v: float, offset: float, per_px: float) -> float:
    """A pixel coordinate in a resized copy -> the photo's (pixel centres at integers)."""
    return offset + (v + 0.5) * per_px - 0.5


def _overview(rgb: Image.Image) -> tuple[Image.Image, float, int]:
    """(copy at most DETECT_SIDE px wide, its scale, dlib upsamplings: 1 below 1000 px, as
    dlib's examples do); it finds faces of WINDOW / (scale * 2 ** upsample) px and more."""
    scale = min(1.0, DETECT_SIDE / max(rgb.size))
    small = rgb if scale == 1.0 else rgb.resize(
        (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))), Image.Resampling.BILINEAR)
    return small, scale, 1 if max(small.size) < 1000 else 0


def _levels(overview_min: float) -> list[float]:
    """The scales of the tile levels, finest first: the first enlarges a MIN_FACE face to
    MIN_FACE * FINE_SCALE px; each next one finds the faces from where the last one's
    guarantee (a face lies whole in one of its tiles) ends; none where the overview does."""
    scales, low, scale = [], float(MIN_FACE), FINE_SCALE
    while low < overview_min:
        scales.append(scale)
        low = (OVERLAP - 32) / scale
        scale = WINDOW / low
    return scales


def _tiles(size: tuple[int, int], scale: float) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(core, extended) boxes in photo pixels: the cores partition the photo into tiles of
    at most TILE px at `scale`; each extends OVERLAP / 2 px (at `scale`) into its neighbours,
    so a face up to OVERLAP - 32 px whose centre is in a core lies whole in its tile."""
    def spans(n: int) -> list[tuple[int, int]]:
        count = max(1, math.ceil(n * scale / TILE))
        edges = [round(i * n / count) for i in range(count + 1)]
        return list(zip(edges[:-1], edges[1:]))
    w, h = size
    pad = math.ceil(OVERLAP / 2 / scale)
    return [((x0, y0, x1, y1), (max(x0 - pad, 0), max(y0 - pad, 0), min(x1 + pad, w), min(y1 + pad, h)))
            for y0, y1 in spans(h) for x0, x1 in spans(w)]


def _busy_part(busy: np.ndarray, scale: float, box: tuple[int, ...]) -> tuple[int, ...] | None:
    """The part of `box` (photo pixels) around its non-flat overview pixels, with a margin of
    MIN_FACE px; None where it is all flat (no face can be there)."""
    l, t, r, b = box
    area = busy[int(t * scale):math.ceil(b * scale), int(l * scale):math.ceil(r * scale)]
    rows, cols = np.flatnonzero(area.any(1)), np.flatnonzero(area.any(0))
    if not len(rows):
        return None
    y0, x0 = int(t * scale), int(l * scale)
    m = MIN_FACE
    return (max(l, int((x0 + cols[0]) / scale) - m), max(t, int((y0 + rows[0]) / scale) - m),
            min(r, math.ceil((x0 + cols[-1] + 1) / scale) + m),
            min(b, math.ceil((y0 + rows[-1] + 1) / scale) + m))


def _scan(detector, rgb: Image.Image, scale: float, busy: np.ndarray, busy_scale: float
          ) -> list[tuple[tuple[float, ...], float]]:
    """Faces found in the tiles of one level: each tile (its non-flat part) enlarged or shrunk
    to `scale`, in grey (dlib's HOG is a third faster on it), one at a time; a face is kept
    by the tile whose core holds its centre, and not where the tile's edge cuts it."""
    found = []
    edge = 8 / scale  # one HOG cell
    for core, ext in _tiles(rgb.size, scale):
        part = _busy_part(busy, busy_scale, ext)
        if part is None:
            continue
        l, t, r, b = part
        w, h = round((r - l) * scale), round((b - t) * scale)
        if min(w, h) < WINDOW * 0.8:
            continue
        tile = np.asarray(rgb.crop(part).convert("L").resize((w, h), Image.Resampling.BILINEAR))
        boxes, scores, _ = detector.run(tile, 0, 0.0)
        sx, sy = (r - l) / w, (b - t) / h
        for box, score in zip(boxes, scores):
            if score < MIN_SCORE:
                continue
            fl, fr = _to_photo(box.left(), l, sx), _to_photo(box.right(), l, sx)
            ft, fb = _to_photo(box.top(), t, sy), _to_photo(box.bottom(), t, sy)
            cx, cy = (fl + fr) / 2, (ft + fb) / 2
            if not (core[0] <= cx < core[2] and core[1] <= cy < core[3]):
                continue
            if ((ext[0] > 0 and fl < ext[0] + edge) or (ext[1] > 0 and ft < ext[1] + edge)
                    or (ext[2] < rgb.width and fr > ext[2] - 1 - edge)
                    or (ext[3] < rgb.height and fb > ext[3] - 1 - edge)):
                continue
            if _second_look(detector, rgb, (fl, ft, fr, fb)) >= VERIFY_SCORE:
                found.append(((fl, ft, fr, fb), float(score)))
    return found


def _second_look(detector, rgb: Image.Image, box: tuple[float, ...]) -> float:
    """The best score of the same face when its surroundings (the box and 60 % more on each
    side) are scaled so the box is VERIFY_SIDE px: scanning many tiles at a high scale finds
    texture that scores like a weak face at one scale; real faces score high at this one."""
    l, t, r, b = box
    m = 0.6 * (r - l)
    crop = (max(0, round(l - m)), max(0, round(t - m)), min(rgb.width, round(r + m) + 1),
            min(rgb.height, round(b + m) + 1))
    k = VERIFY_SIDE / (r - l)
    w, h = max(1, round((crop[2] - crop[0]) * k)), max(1, round((crop[3] - crop[1]) * k))
    img = np.asarray(rgb.crop(crop).resize((w, h), Image.Resampling.BILINEAR))
    boxes, scores, _ = detector.run(img, 0, -0.5)
    sx, sy = (crop[2] - crop[0]) / w, (crop[3] - crop[1]) / h
    best = -math.inf
    for q, score in zip(boxes, scores):
        again = (_to_photo(q.left(), crop[0], sx), _to_photo(q.top(), crop[1], sy),
                 _to_photo(q.right(), crop[0], sx), _to_photo(q.bottom(), crop[1], sy))
        if _same_face(again, box):
            best = max(best, float(score))
    return best


def _same_face(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """Two boxes of one face: their overlap is over half the smaller one."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return False
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih > 0.5 * smaller


def _landmarks(predictor, rgb: Image.Image, box: tuple[int, int, int, int]) -> np.ndarray:
    """The 68 points, predicted on the full-resolution photo around the box (a crop with a
    box-sized margin holds every pixel the predictor reads, so no full-photo copy is made)."""
    import dlib

    l, t, r, b = box
    m = max(r - l, b - t) + 8
    cl, ct = max(l - m, 0), max(t - m, 0)
    crop = np.asarray(rgb.crop((cl, ct, min(r + m + 1, rgb.width), min(b + m + 1, rgb.height))))
    shape = predictor(crop, dlib.rectangle(l - cl, t - ct, r - cl, b - ct))
    return np.array([[p.x + cl, p.y + ct] for p in shape.parts()], dtype=np.float64)


def detect(photo: Image.Image) -> list[Face]:
    """Every frontal face of about MIN_FACE px and more in a photo of any size, largest first.

    A pyramid: an overview copy at most DETECT_SIDE px wide (upsampled once below 1000 px, as
    dlib's examples do) finds the big faces; where it cannot see a MIN_FACE face, levels of
    overlapping full-resolution tiles (`_levels`, `_tiles`; the first enlarged FINE_SCALE
    times) find the small ones, tile by tile (a 50 MP photo needs ~100 MB more), skipping what
    is flat in the overview. Boxes of one face found twice are merged (the overview's, then
    the coarser level's, kept); landmarks are predicted on the full-resolution photo, so
    alignment is as precise as the photo."""
    from scipy.ndimage import maximum_filter, minimum_filter

    detector, predictor = _dlib_models()
    rgb = photo if photo.mode == "RGB" else photo.convert("RGB")
    small, scale, upsample = _overview(rgb)
    boxes, scores, _ = detector.run(np.asarray(small), upsample, 0.0)
    found = [[((_to_photo(b.left(), 0, 1 / scale), _to_photo(b.top(), 0, 1 / scale),
                _to_photo(b.right(), 0, 1 / scale), _to_photo(b.bottom(), 0, 1 / scale)), float(s))
              for b, s in zip(boxes, scores) if s >= MIN_SCORE]]
    levels = _levels(WINDOW / (scale * 2 ** upsample))
    if levels:
        grey = np.asarray(small.convert("L"))
        busy = (maximum_filter(grey, 3) - minimum_filter(grey, 3)) >= FLAT
        found += [_scan(detector, rgb, s, busy, scale) for s in reversed(levels)]
    kept: list[tuple[tuple[float, ...], float]] = []
    for level in found:  # the overview first, then coarse to fine
        for box, score in sorted(level, key=lambda f: -f[1]):
            if not any(_same_face(box, k[0]) for k in kept):
                kept.append((box, score))
    faces = []
    for box, score in kept:
        l, t, r, b = (int(round(v)) for v in box)
        faces.append(Face((l, t, r, b), _landmarks(predictor, rgb, (l, t, r, b)), score))
    return sorted(faces, key=lambda f: (-f.area, -f.score))


def face_thumbnails(photo: Image.Image, faces: list[Face], size: int = 96) -> list[Image.Image]:
    """A small square picture of each face with its hair and chin (the gallery to pick one):
    the detector's box is the inner face, so the square around it is twice as wide."""
    out = []
    for f in faces:
        l, t, r, b = f.box
        cx, cy, half = (l + r) / 2, (t + b) / 2, max(r - l, b - t)
        box = tuple(round(v) for v in (cx - half, cy - half, cx + half, cy + half))
        out.append(photo.crop(box).resize((size, size), Image.Resampling.LANCZOS))
    return out


# ---- alignment -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Aligned:
    """A photo in a model's frame. `quad`: the frame's corners in photo pixel coordinates
    (pixel centres at integers), in the FFHQ script's order top-left, bottom-left,
    bottom-right, top-right. `content`: the part of the frame that shows the photo
    (left, top, right, bottom; the bars of a letterbox are not)."""
    image: Image.Image
    quad: np.ndarray  # [4, 2]
    recipe: str
    photo_size: tuple[int, int]
    content: tuple[int, int, int, int]

    @property
    def size(self) -> int:
        return self.image.width


def face_quad(face: Face, recipe: str) -> np.ndarray:
    """The oriented crop square of a face recipe, from the landmarks (the scripts' formula:
    x along the eye line tilted by the eye-to-mouth direction, scaled by the larger of 2x
    the eye distance and 1.8x the eye-to-mouth distance; centre just below the eyes)."""
    lm = face.landmarks
    eye_left, eye_right = lm[36:42].mean(0), lm[42:48].mean(0)
    mouth_left, mouth_right = lm[48], lm[54]
    eye_avg = (eye_left + eye_right) * 0.5
    mouth_avg = (mouth_left + mouth_right) * 0.5
    if recipe == "celebahq":  # ProGAN adds half a pixel to CelebA's annotated points
        eye_avg, mouth_avg = eye_avg + 0.5, mouth_avg + 0.5
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.array([-x[1], x[0]])
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def _blur_pad(img: Image.Image, pad: np.ndarray, blur: float) -> Image.Image:
    """Reflect-pad, blurred and faded to the median colour towards the outside (both scripts)."""
    from scipy.ndimage import gaussian_filter

    a = np.pad(np.float32(img), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
    h, w, _ = a.shape
    y, x, _ = np.ogrid[:h, :w, :1]
    mask = np.maximum(1.0 - np.minimum(np.float32(x) / pad[0], np.float32(w - 1 - x) / pad[2]),
                      1.0 - np.minimum(np.float32(y) / pad[1], np.float32(h - 1 - y) / pad[3]))
    a += (gaussian_filter(a, [blur, blur, 0]) - a) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    a += (np.median(a, axis=(0, 1)) - a) * np.clip(mask, 0.0, 1.0)
    return Image.fromarray(np.uint8(np.clip(np.rint(a), 0, 255)), "RGB")


def _bounds(quad: np.ndarray) -> tuple[int, int, int, int]:
    return (int(np.floor(quad[:, 0].min())), int(np.floor(quad[:, 1].min())),
            int(np.ceil(quad[:, 0].max())), int(np.ceil(quad[:, 1].max())))


def _face_crop(photo: Image.Image, quad: np.ndarray, recipe: str) -> Image.Image:
    """NVIDIA's steps on the photo: shrink, crop with a border, (CelebA-HQ: simulated
    super-resolution), reflect-pad with blur where the square leaves the photo, QUAD transform
    to 4096 px (bilinear), Lanczos to the dataset's 1024 px."""
    img, quad = photo, quad.copy()
    qsize = np.hypot(*(quad[3] - quad[0]))  # the square's side, 2 |x|
    zoom = DATASET_SIZE / qsize
    shrink = int(np.floor(0.5 / zoom))
    if shrink > 1:
        size = (int(np.rint(img.width / shrink)), int(np.rint(img.height / shrink)))
        img = img.resize(size, Image.Resampling.LANCZOS)
        quad /= shrink
        zoom *= shrink
    border = max(int(np.rint(DATASET_SIZE * 0.1 / zoom)), 3)
    l, t, r, b = _bounds(quad)
    crop = (max(l - border, 0), max(t - border, 0), min(r + border, img.width), min(b + border, img.height))
    if crop[2] - crop[0] < img.width or crop[3] - crop[1] < img.height:
        img = img.crop(crop)
        quad -= crop[0:2]
    if recipe == "celebahq":  # ProGAN upsamples small faces before padding
        superres = int(np.exp2(np.ceil(np.log2(zoom))))
        if superres > 1:
            img = img.resize((img.width * superres, img.height * superres), Image.Resampling.LANCZOS)
            quad *= superres
            zoom /= superres
    l, t, r, b = _bounds(quad)
    pad = np.array([max(-l + border, 0), max(-t + border, 0), max(r - img.width + border, 0),
                    max(b - img.height + border, 0)])
    if max(pad) > border - 4:
        pad = np.maximum(pad, int(np.rint(DATASET_SIZE * 0.3 / zoom)))
        img = _blur_pad(img, pad, DATASET_SIZE * 0.02 / zoom)
        quad += pad[:2]
    img = img.transform((4096, 4096), Image.Transform.QUAD, (quad + 0.5).flatten(),
                        Image.Resampling.BILINEAR)
    return img.resize((DATASET_SIZE, DATASET_SIZE), Image.Resampling.LANCZOS)


def _rect_quad(left: float, top: float, right: float, bottom: float) -> np.ndarray:
    """An axis-aligned frame [left, right) x [top, bottom) (pixel edges) as a quad of pixel
    centre coordinates, in the FFHQ order."""
    l, t, r, b = left - 0.5, top - 0.5, right - 0.5, bottom - 0.5
    return np.array([[l, t], [l, b], [r, b], [r, t]], dtype=np.float64)


def align(photo: Image.Image, face: Face | None, recipe: str, size: int,
          content: tuple[int, int] | None = None) -> Aligned:
    """The photo as the model's training data framed it -> `Aligned` (size x size).

    `ffhq` / `celebahq` need a `face` (from `detect`); `squash` resizes the whole photo;
    `center` scales the shorter side and crops the middle; `letterbox` crops the middle to
    `content` = (width, height)'s aspect, resizes to it and centres it between black bars
    (NVIDIA's `create_lsun_wide`)."""
    photo = photo.convert("RGB")
    w, h = photo.size
    lanczos = Image.Resampling.LANCZOS
    if recipe in FACE_RECIPES:
        if face is None:
            raise UserError("No face was found in this photo: try a photo where the face is "
                            f"frontal and at least {MIN_FACE} pixels wide, or use the plain framing.")
        quad = face_quad(face, recipe)
        image = _face_crop(photo, quad, recipe)
        if size != DATASET_SIZE:
            image = image.resize((size, size), lanczos)
        return Aligned(image, quad, recipe, (w, h), (0, 0, size, size))
    if recipe == "squash":
        return Aligned(photo.resize((size, size), lanczos), _rect_quad(0, 0, w, h), recipe,
                       (w, h), (0, 0, size, size))
    if recipe == "center":
        side = min(w, h)  # the frame's side in photo pixels
        left, top = (w - side) / 2, (h - side) / 2
        box = (left, top, left + side, top + side)
        image = photo.resize((size, size), lanczos, box=box)
        return Aligned(image, _rect_quad(*box), recipe, (w, h), (0, 0, size, size))
    if recipe == "letterbox":
        cw, ch = content or (size, size * 3 // 4)
        crop_h = min(h, w * ch / cw)  # the photo's band with the content's aspect
        crop_w = crop_h * cw / ch
        left, top = (w - crop_w) / 2, (h - crop_h) / 2
        inner = photo.resize((cw, ch), lanczos, box=(left, top, left + crop_w, top + crop_h))
        image = Image.new("RGB", (size, size))
        ox, oy = (size - cw) // 2, (size - ch) // 2
        image.paste(inner, (ox, oy))
        per_px = crop_w / cw  # photo pixels per frame pixel
        frame = (left - ox * per_px, top - oy * per_px, left + (size - ox) * per_px,
                 top + (size - oy) * per_px)
        return Aligned(image, _rect_quad(*frame), recipe, (w, h), (ox, oy, ox + cw, oy + ch))
    raise UserError(f"Unknown framing {recipe!r}: use one of {', '.join(RECIPES)}.")


# ---- paste-back ----------------------------------------------------------------------------
def _frame_coordinates(aligned: Aligned, box: tuple[int, int, int, int]) -> torch.Tensor:
    """For each photo pixel in `box`, its place in the frame as grid_sample coordinates
    (-1..1 across the frame, align_corners=False): the inverse of the frame's affine map."""
    q = torch.as_tensor(aligned.quad, dtype=torch.float64)
    origin, right, down = q[0], q[3] - q[0], q[1] - q[0]
    inverse = torch.linalg.inv(torch.stack([right, down], dim=1))  # photo offset -> (a, b)
    l, t, r, b = box
    ys, xs = torch.meshgrid(torch.arange(t, b, dtype=torch.float64),
                            torch.arange(l, r, dtype=torch.float64), indexing="ij")
    offsets = torch.stack([xs, ys], dim=-1) - origin
    ab = offsets @ inverse.T  # fractions across the frame, at frame pixel centres (u + 0.5) / S
    return (ab * 2 - 1).float()


def feathered_mask(aligned: Aligned, mask: np.ndarray | None = None, feather: float = 0.03
                   ) -> np.ndarray:
    """Where an edit may go back, in the frame: the content area (or the edit mask inside
    it), with edges that fade over `feather` of the frame so no seam shows. [S, S] in [0, 1]."""
    from scipy.ndimage import distance_transform_edt, gaussian_filter

    s = aligned.size
    region = np.zeros((s, s), bool)
    l, t, r, b = aligned.content
    region[t:b, l:r] = True
    if mask is not None:
        m = np.asarray(Image.fromarray(np.uint8(np.asarray(mask, np.float32) * 255)).resize((s, s)))
        region &= m > 127
    width = max(1.0, feather * s)
    inside = distance_transform_edt(region)
    alpha = np.clip(inside / width, 0.0, 1.0)
    if mask is not None:  # soften an edit mask's own edge too
        alpha = gaussian_filter(alpha, width / 3) * region
    return alpha.astype(np.float32)


def paste_back(photo: Image.Image, aligned: Aligned, edited: Image.Image | np.ndarray,
               mask: np.ndarray | None = None) -> Image.Image:
    """The edited frame put back into the photo at its full resolution: warped through the
    inverse of the alignment, blended with a feathered edge where the frame's content (or
    `mask`, [S, S] in [0, 1], in the frame) is. Pixels outside stay byte-identical."""
    photo = photo.convert("RGB")
    if isinstance(edited, np.ndarray):
        edited = Image.fromarray(edited)
    s = aligned.size
    edited = edited.convert("RGB").resize((s, s), Image.Resampling.LANCZOS) if edited.size != (s, s) \
        else edited.convert("RGB")
    if photo.size != aligned.photo_size:
        raise UserError("This result belongs to another photo (its size differs): align again.")
    alpha = feathered_mask(aligned, mask)
    l, t, r, b = _bounds(aligned.quad)
    box = (max(l - 1, 0), max(t - 1, 0), min(r + 2, photo.width), min(b + 2, photo.height))
    if box[0] >= box[2] or box[1] >= box[3]:
        return photo.copy()
    grid = _frame_coordinates(aligned, box)[None]
    rgb = np.asarray(edited, np.float32) * alpha[..., None]  # premultiplied: no dark fringe
    frame = torch.from_numpy(np.concatenate([rgb, alpha[..., None]], axis=-1))
    warped = F.grid_sample(frame.permute(2, 0, 1)[None], grid, mode="bilinear",
                           padding_mode="zeros", align_corners=False)[0].permute(1, 2, 0).numpy()
    a = warped[..., 3:]
    out = np.asarray(photo).copy()
    region = out[box[1]:box[3], box[0]:box[2]]
    blended = np.rint(region * (1 - a) + warped[..., :3]).clip(0, 255).astype(np.uint8)
    keep = a[..., 0] <= 0
    blended[keep] = region[keep]
    out[box[1]:box[3], box[0]:box[2]] = blended
    return Image.fromarray(out)


# ---- a photo for a model -------------------------------------------------------------------
@dataclass(frozen=True)
class FramedPhoto:
    """A person's photo (upright, full resolution), the faces found in it and its frame for
    one model: what a tab keeps to run the model and to paste the result back."""
    photo: Image.Image
    aligned: Aligned
    faces: tuple[Face, ...] = ()
    face_index: int | None = None
    drawn: bool = False  # a picture the model drew, used as drawn (`core.photo_slot.frame_input`)

    def note(self) -> str:
        """What the network sees, in words (the label of the "network input" picture)."""
        if self.drawn:
            return f"Network input: {DRAWN}"
        what = LABELS[self.aligned.recipe]
        if self.face_index is not None and len(self.faces) > 1:
            what += f", face {self.face_index + 1} of {len(self.faces)}"
        return f"Network input: {what}"

    def paste(self, edited: Image.Image | np.ndarray, mask: np.ndarray | None = None) -> Image.Image:
        return paste_back(self.photo, self.aligned, edited, mask)

    def describe(self) -> dict:
        """The recipe's account of the photo a run started from (JSON-able)."""
        a = self.aligned
        return {"framing": a.recipe, "note": self.note(), "photo_size": list(a.photo_size),
                "face": None if self.face_index is None else self.face_index + 1,
                "faces_found": len(self.faces), "quad": a.quad.round(3).tolist(),
                "content": list(a.content)}


def frame_for_model(registry, model_id: str, picture, size: int, face: float | None = 1,
                    plain: bool = False) -> FramedPhoto:
    """A person's photo (an upload's path, a PIL image or an array) framed for a registered
    model: `open_photo`, then the registry's framing and picture area for it (inherited from
    its generator) at `size`."""
    entry = registry.get(model_id)
    return frame_photo(open_photo(picture), registry.framing_of(entry), size,
                       registry.content_of(entry), int(face or 1), bool(plain))


def frame_photo(photo: Image.Image, framing: str, size: int, content: tuple[int, int] | None = None,
                face: int = 1, plain: bool = False) -> FramedPhoto:
    """Frame a photo as a model's training data was (`framing` from the registry). Face
    framings detect faces and align face number `face` (1 = the largest); `plain` (or a
    photo without a face, which is an error that says so) uses a centre crop instead."""
    if framing in FACE_RECIPES and not plain:
        faces = detect(photo)
        if not faces:
            raise UserError("No face was found in this photo (the detector needs a frontal face "
                            f"at least about {MIN_FACE} pixels wide). Tick \"Plain framing\" to use "
                            "a centre crop instead.")
        index = min(max(int(face or 1), 1), len(faces)) - 1
        return FramedPhoto(photo, align(photo, faces[index], framing, size), tuple(faces), index)
    recipe = "center" if framing in FACE_RECIPES else framing
    return FramedPhoto(photo, align(photo, None, recipe, size, content))
