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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from core.errors import UserError
from core.hub import FACE_FRAMINGS as FACE_RECIPES
from core.hub import FRAMINGS as RECIPES  # the registry's `meta.framing` values
from core.images import open_photo

RECIPE_LABELS = {"ffhq": "aligned face (FFHQ recipe)", "celebahq": "aligned face (CelebA-HQ recipe)",
                 "squash": "squashed to a square (no crop)", "center": "centre crop",
                 "letterbox": "letterboxed (black bars)"}
DATASET_SIZE = 1024  # both face recipes make 1024 px pictures; smaller models use them resized
DETECT_SIDE = 1600  # faces are found on a copy this size at most (a 24 MP photo takes seconds)
MIN_SCORE = 0.2  # weaker detections are mostly not faces (the mission patch in the astronaut photo)
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


def detect(photo: Image.Image) -> list[Face]:
    """Every frontal face in the photo, largest first. The detector runs on a copy at most
    DETECT_SIDE px wide (upsampled once for small photos, as dlib's examples do); landmarks
    are predicted on the full-resolution photo, so alignment is as precise as the photo."""
    detector, predictor = _dlib_models()
    import dlib

    rgb = photo.convert("RGB")
    scale = min(1.0, DETECT_SIDE / max(rgb.size))
    small = rgb if scale == 1.0 else rgb.resize(
        (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))), Image.Resampling.BILINEAR)
    boxes, scores, _ = detector.run(np.asarray(small), 1 if max(small.size) < 1000 else 0, 0.0)
    full = np.asarray(rgb)
    faces = []
    for box, score in zip(boxes, scores):
        if score < MIN_SCORE:
            continue
        l, t, r, b = (int(round(v / scale)) for v in (box.left(), box.top(), box.right(), box.bottom()))
        shape = predictor(full, dlib.rectangle(l, t, r, b))
        points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        faces.append(Face((l, t, r, b), points, float(score)))
    return sorted(faces, key=lambda f: (-f.area, -f.score))


def face_thumbnails(photo: Image.Image, faces: list[Face], size: int = 96) -> list[Image.Image]:
    """A small square picture of each face (the tab's gallery to pick one)."""
    out = []
    for f in faces:
        l, t, r, b = f.box
        pad = (r - l) // 4
        out.append(photo.crop((l - pad, t - pad, r + pad, b + pad)).resize((size, size)))
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
                            "frontal and at least 80 pixels wide, or use the plain framing.")
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

    def note(self) -> str:
        """What the network sees, in words (the label of the "network input" picture)."""
        what = RECIPE_LABELS[self.aligned.recipe]
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


def framing_sentence(framing: str) -> str:
    """One sentence for the UI: how a photo becomes this model's network input."""
    line = f"Photos are framed as this model's training pictures were: {RECIPE_LABELS[framing]}"
    if framing in FACE_RECIPES:
        line += (" (the face is found and aligned exactly as the training faces were; tick "
                 "\"Plain framing\" for a photo without a face)")
    return line + ", and results go back into your photo where the frame was."


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
                            "at least about 80 pixels wide). Tick \"Plain framing\" to use a "
                            "centre crop instead.")
        index = min(max(int(face or 1), 1), len(faces)) - 1
        return FramedPhoto(photo, align(photo, faces[index], framing, size), tuple(faces), index)
    recipe = "center" if framing in FACE_RECIPES else framing
    return FramedPhoto(photo, align(photo, None, recipe, size, content))
