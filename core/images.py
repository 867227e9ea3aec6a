"""Conversions at the UI edge: pictures and painted masks in, image tensors out.

Engine convention: images are float tensors [B, 3, H, W] in [-1, 1]; masks are
[B, 1, H, W] in [0, 1] with 1 = "take / edit here".
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from core.errors import UserError
from core.framing import FACE_FRAMINGS


ImageLike = Any  # PIL.Image, numpy array (H,W), (H,W,3), (H,W,4), or a file path


def to_pil(img: ImageLike) -> Image.Image:
    """Any picture the UI can hand over -> an RGB PIL image.

    Grayscale is replicated to three channels; transparency is flattened onto white (what
    a person sees in the browser); 16-bit and float arrays are rescaled to 8 bits.
    """
    if img is None:
        raise UserError("No image was given: upload one or pick an example.")
    if isinstance(img, (str, bytes)) or hasattr(img, "__fspath__"):
        try:
            img = Image.open(img)
            img.load()
        except (OSError, ValueError) as e:
            raise UserError(f"Could not read the image file ({e}).") from e
    if isinstance(img, np.ndarray):
        img = Image.fromarray(_to_uint8_array(img))
    if not isinstance(img, Image.Image):
        raise UserError(f"Unsupported image type {type(img).__name__}.")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if img.mode in ("I;16", "I", "F"):
        return Image.fromarray(_to_uint8_array(np.asarray(img))).convert("RGB")
    return img.convert("RGB")


def _to_uint8_array(a: np.ndarray) -> np.ndarray:
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise UserError(f"Unsupported image array shape {a.shape}: expected H x W (x 3 or 4).")
    if a.dtype == np.uint8:
        return a
    is16 = a.dtype == np.uint16  # 16-bit by type, however dark the picture is
    a = a.astype(np.float64)
    hi = a.max() if a.size else 1.0
    if is16 or hi > 255:  # 16-bit
        a = a / 257.0
    elif hi <= 1.0:  # floats in [0, 1]
        a = a * 255.0
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


MAX_PHOTO_PIXELS = 50_000_000  # a 50 MP phone photo decodes to 150 MB of RGB; more is refused
NOT_A_PICTURE = ("That file is not a picture this app can read, or it is damaged or incomplete: "
                 "upload a JPEG, PNG, WebP, BMP, TIFF or GIF.")
HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")  # Gradio would clip these to white




def open_photo(file: ImageLike) -> Image.Image:
    """A person's photo (a path, file object, PIL image or array) -> an RGB PIL image, upright.

    Every upload goes through here: the EXIF orientation tag is applied (phones store
    portraits sideways), grayscale / 16-bit / palette / CMYK / transparent pictures become RGB
    (transparency flattened onto white), and the pixel count is checked from the header
    *before* decoding, so a small file that would decode into gigabytes is refused."""
    if file is None:
        raise UserError("No photo was given: upload one or pick an example.")
    if isinstance(file, dict) and "path" in file:  # a Gradio FileData value
        file = file["path"]
    if isinstance(file, (str, bytes)) or hasattr(file, "__fspath__") or hasattr(file, "read"):
        with _opened(file) as opened:
            opened.load()
            img = _upright(opened)
    elif isinstance(file, Image.Image):
        _check_pixels(file.size)
        img = _upright(file)
    else:  # an array (a picture a component already decoded)
        return to_pil(file)
    return to_pil(img)


def check_upload(path: str) -> str:
    """An uploaded file, checked before any widget decodes it: a picture (a readable message
    if not), at most MAX_PHOTO_PIXELS (read from the header, so a 17 KB file that would decode
    into gigabytes never does), and 8 bits per channel: a 16-bit or float picture is rewritten
    beside it as an 8-bit PNG (Gradio's own conversion clips it to white). -> the path to use."""
    with _opened(path) as opened:
        if opened.mode not in HIGH_BIT_MODES:
            return path
        opened.load()
        eight_bit = to_pil(opened)
    out = f"{path}.8bit.png"
    eight_bit.save(out)
    return out


def picture_pixels(file) -> int:
    """The pixel count a picture file's header declares, nothing decoded: a UserError if it
    is not a picture or is over MAX_PHOTO_PIXELS (so callers can budget several together)."""
    with _opened(file) as opened:
        return opened.size[0] * opened.size[1]


MAX_EDITOR_PIXELS = 40_000_000  # an image editor's files together: a 12 MP photo, its paint layer and composite


def check_editor_pixels(files: Sequence) -> None:
    """An image editor's files (background, layers, composite: paths or binary streams),
    bounded together from their headers before any is decoded: Gradio decodes each into RGBA
    arrays (about 12 bytes a pixel at its peak), so three near-limit pictures would cost
    gigabytes where one costs a few hundred megabytes."""
    total = 0
    for file in files:
        total += picture_pixels(file)
        if total > MAX_EDITOR_PIXELS:
            raise UserError(f"That picture is too large for the editor: its picture and paint "
                            f"layers hold more than {MAX_EDITOR_PIXELS // 1_000_000} megapixels "
                            f"together. Save a smaller copy (at most "
                            f"{MAX_EDITOR_PIXELS // 3_000_000} megapixels) and upload that.")


def read_picture(file) -> np.ndarray:
    """A picture file (a path or a binary stream) as the array it stores, mode kept (a grey
    mask stays [H, W], RGBA stays 4 channels), through the same checks as uploads: a picture,
    at most MAX_PHOTO_PIXELS, read from the header before anything is decoded."""
    with _opened(file) as opened:
        opened.load()
        return np.asarray(opened)


@contextlib.contextmanager
def _opened(file) -> Iterator[Image.Image]:
    """A picture file opened (its header only, so far) with its pixel count checked; every way
    of not being a readable picture, here or in the caller's block, becomes a UserError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(file) as opened:
                _check_pixels(opened.size)
                yield opened
    except UserError:
        raise
    except Image.DecompressionBombError:
        raise _too_big(None) from None
    except (OSError, ValueError, SyntaxError, EOFError):
        raise UserError(NOT_A_PICTURE) from None


def _upright(img: Image.Image) -> Image.Image:
    """A copy turned as the EXIF orientation tag says (a broken EXIF block: as stored)."""
    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(img)
    except (OSError, ValueError, TypeError, KeyError, SyntaxError):
        return img.copy()


def _too_big(size: tuple[int, int] | None) -> UserError:
    got = f" ({size[0]} x {size[1]} pixels)" if size else ""
    return UserError(f"That picture is too large{got}: at most {MAX_PHOTO_PIXELS // 1_000_000} "
                     f"megapixels. Save a smaller copy and upload that.")


def _check_pixels(size: tuple[int, int]) -> None:
    if size[0] * size[1] > MAX_PHOTO_PIXELS:
        raise _too_big(size)


def resize_center_crop(img: Image.Image, size: int | tuple[int, int],
                       resample: Image.Resampling = Image.Resampling.LANCZOS) -> Image.Image:
    """Scale the shorter side to fit, then crop the centre: the model's square (or W x H)
    frame. Masks use NEAREST so that they stay binary and line up with their image."""
    w_out, h_out = (size, size) if isinstance(size, int) else size
    w, h = img.size
    scale = max(w_out / w, h_out / h)
    new = (max(w_out, round(w * scale)), max(h_out, round(h * scale)))
    img = img.resize(new, resample) if new != (w, h) else img
    left, top = (img.width - w_out) // 2, (img.height - h_out) // 2
    return img.crop((left, top, left + w_out, top + h_out))


def pil_to_tensor(img: ImageLike, size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """Picture -> [1, 3, H, W] float32 in [-1, 1], optionally resized/centre-cropped."""
    img = to_pil(img)
    if size is not None:
        img = resize_center_crop(img, size)
    a = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float()
    return (a / 127.5 - 1.0)[None]


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[B, 3, H, W] in [-1, 1] -> uint8 [B, H, W, 3] (clamped, rounded); a picture that
    overflowed in half precision is reported (`core.precision.check_picture`)."""
    from core.precision import check_picture

    check_picture(images)
    x = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def tensor_to_pil(images: torch.Tensor) -> list[Image.Image]:
    return [Image.fromarray(a) for a in to_uint8(images)]


# ---- masks ---------------------------------------------------------------------------------
SAME_PICTURE = 1.0  # mean |difference| (grey levels) under which two pictures are the same one


def editor_holds(value: dict | None, picture: Image.Image) -> bool:
    """Whether a gr.ImageEditor still shows `picture` as its background (paint on top is
    fine; a browser's canvas may re-encode it by up to SAME_PICTURE grey levels): so a result
    goes back only into the photo it was made from."""
    if editor_is_empty(value) or value.get("background") is None:
        return False
    shown = np.asarray(to_pil(value["background"]), np.int16)
    expected = np.asarray(picture.convert("RGB"), np.int16)
    return shown.shape == expected.shape and np.abs(shown - expected).mean() <= SAME_PICTURE


def editor_is_empty(value: dict | None) -> bool:
    """True when a gr.ImageEditor holds no picture at all (an unused slot)."""
    return not value or (value.get("background") is None and value.get("composite") is None)


def editor_image_and_mask(value: dict | None, size: int | tuple[int, int],
                          required: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """An ImageEditor value -> (picture [1, 3, H, W] in [-1, 1], painted mask [1, 1, H, W]),
    both centre-cropped and resized to `size` the same way."""
    return pil_to_tensor(editor_background(value), size), mask_from_editor(value, size, required=required)


def editor_background(value: dict | None) -> Image.Image:
    """The picture under a gr.ImageEditor's paint, as RGB."""
    if not value or value.get("background") is None:
        raise UserError("No image in the editor: upload one, or pick an example first.")
    return to_pil(value["background"])


def _alpha(layer: ImageLike) -> np.ndarray:
    a = np.asarray(layer)
    if a.ndim == 3 and a.shape[-1] == 4:
        return a[..., 3]
    if a.ndim == 3:  # RGB layers (image_mode="RGB") are black where unpainted
        return a.max(axis=-1)
    return a


def mask_from_editor(value: dict | None, size: int | tuple[int, int] | None = None,
                     threshold: int = 127, required: bool = True) -> torch.Tensor:
    """Union of everything painted in a gr.ImageEditor value -> mask [1, 1, H, W] in {0, 1}.

    Painted = alpha > threshold on any layer. When a browser sends no layers (a known
    Gradio glitch), falls back to where the composite differs from the background.
    `size` resizes with nearest neighbour (after the same centre crop as the image).
    An empty mask raises a UserError unless `required` is False.
    """
    if not value or (value.get("background") is None and value.get("composite") is None):
        raise UserError("No image in the editor: upload one, or pick an example first.")
    layers = [np.asarray(l) for l in (value.get("layers") or []) if l is not None]
    if layers:
        shape = layers[0].shape[:2]
        if any(l.shape[:2] != shape for l in layers):
            raise UserError("The editor's layers have different sizes; clear the canvas and paint again.")
        painted = np.max(np.stack([_alpha(l) for l in layers]), axis=0) > threshold
    elif value.get("background") is not None and value.get("composite") is not None:
        bg = np.asarray(to_pil(value["background"]), dtype=np.int16)
        comp = np.asarray(to_pil(value["composite"]), dtype=np.int16)
        if bg.shape != comp.shape:
            raise UserError("The editor's image and painting have different sizes; clear and paint again.")
        painted = np.abs(comp - bg).sum(-1) > 0
    else:  # nothing painted yet: an empty mask the size of the picture
        only = value.get("background") if value.get("background") is not None else value.get("composite")
        painted = np.zeros(to_pil(only).size[::-1], dtype=bool)
    img = Image.fromarray(painted.astype(np.uint8) * 255)
    if size is not None:
        img = resize_center_crop(img, size, Image.Resampling.NEAREST)
    mask = torch.from_numpy((np.asarray(img) > 127).astype(np.float32))[None, None]
    if required and mask.sum() == 0:
        raise UserError("The mask is empty: paint over the region to edit first.")
    return mask


def hex_rgb(colour: str) -> tuple[int, int, int]:
    """"#ff0000" -> (255, 0, 0)."""
    c = colour.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def masks_by_colour(value: dict | None, palette: Sequence[str], size: int | tuple[int, int],
                    threshold: int = 127) -> torch.Tensor:
    """Paint of several brush colours in one gr.ImageEditor -> one mask per palette colour
    [K, 1, H, W] in {0, 1}: every painted pixel goes to the nearest palette colour (brush
    edges blend colours), later layers on top. Same crop/resize as `editor_image_and_mask`."""
    if editor_is_empty(value):
        raise UserError("No image in the editor: render or upload one first.")
    pal = np.asarray([hex_rgb(c) for c in palette], dtype=np.int32)
    layers = [np.asarray(to_rgba(l)) for l in (value.get("layers") or []) if l is not None]
    if layers:
        top = np.zeros(layers[0].shape[:2] + (3,), np.int32)
        painted = np.zeros(layers[0].shape[:2], bool)
        for layer in layers:
            if layer.shape[:2] != top.shape[:2]:
                raise UserError("The editor's layers have different sizes; clear the canvas and paint again.")
            here = layer[..., 3] > threshold
            top[here], painted = layer[here, :3], painted | here
    else:  # no layers sent: the composite's colour where it differs from the picture
        bg = np.asarray(to_pil(value["background"]), dtype=np.int32)
        top = np.asarray(to_pil(value["composite"]), dtype=np.int32)
        painted = np.abs(top - bg).sum(-1) > 0 if bg.shape == top.shape else np.zeros(bg.shape[:2], bool)
    nearest = np.abs(top[..., None, :] - pal).sum(-1).argmin(-1)
    masks = []
    for k in range(len(pal)):
        img = Image.fromarray(((nearest == k) & painted).astype(np.uint8) * 255)
        img = resize_center_crop(img, size, Image.Resampling.NEAREST)
        masks.append(torch.from_numpy((np.asarray(img) > 127).astype(np.float32)))
    return torch.stack(masks)[:, None]


def to_rgba(layer: ImageLike) -> Image.Image:
    """An editor layer (RGBA, or RGB black where unpainted) as RGBA."""
    a = np.asarray(layer)
    if a.ndim == 3 and a.shape[-1] == 4:
        return Image.fromarray(a.astype(np.uint8), "RGBA")
    rgb = to_pil(layer)
    alpha = Image.fromarray((np.asarray(rgb).max(-1) > 0).astype(np.uint8) * 255)
    rgb.putalpha(alpha)
    return rgb


def resize_mask(mask: torch.Tensor, size: int | tuple[int, int], mode: str = "area") -> torch.Tensor:
    """Resize a mask to a feature/latent grid.

    area: fraction covered (soft); max: any coverage counts (max-pool, conservative);
    nearest: keep it binary.
    """
    hw = (size, size) if isinstance(size, int) else size
    if mode == "area":
        return F.interpolate(mask, size=hw, mode="area")
    if mode == "max":
        return F.adaptive_max_pool2d(mask, hw)
    if mode == "nearest":
        return F.interpolate(mask, size=hw, mode="nearest")
    raise ValueError(f"unknown mask resize mode {mode!r}")


# ---- visualisation -------------------------------------------------------------------------
_MAGMA = np.array([[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66],
                   [245, 125, 21], [250, 193, 39], [252, 255, 164]], dtype=np.float64)


def heatmap(values: torch.Tensor | np.ndarray, size: int | None = None,
            vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """A 2-D map -> uint8 RGB (magma-like colours), min-max scaled unless limits are given."""
    v = values.detach().float().cpu().numpy() if torch.is_tensor(values) else np.asarray(values, float)
    v = v.reshape(v.shape[-2:]) if v.ndim > 2 else v  # [1, 1, H, W] -> [H, W]; keeps 1 x W maps 2-D
    finite = v[np.isfinite(v)]
    lo = (finite.min() if finite.size else 0.0) if vmin is None else vmin
    hi = (finite.max() if finite.size else 1.0) if vmax is None else vmax
    v = np.nan_to_num(v, nan=lo, posinf=hi, neginf=lo)  # a diverged map still draws
    t = np.clip((v - lo) / (hi - lo if hi > lo else 1.0), 0, 1) * (len(_MAGMA) - 1)
    i = np.minimum(t.astype(int), len(_MAGMA) - 2)
    frac = (t - i)[..., None]
    rgb = (_MAGMA[i] * (1 - frac) + _MAGMA[i + 1] * frac).round().astype(np.uint8)
    if size is not None:
        rgb = np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.NEAREST))
    return rgb


def mask_picture(mask: torch.Tensor, size: int | None = None) -> np.ndarray:
    """A mask [..., h, w] in [0, 1] -> a uint8 grey picture (white = 1), optionally scaled to
    `size` with nearest neighbour so latent cells stay crisp."""
    m = mask.float().reshape(1, 1, *mask.shape[-2:]).cpu()
    if size is not None:
        m = F.interpolate(m, size=(size, size), mode="nearest")
    return (m[0, 0].clamp(0, 1).numpy() * 255).round().astype(np.uint8)


def overlay(image: torch.Tensor, mask: torch.Tensor, color: Sequence[int] = (255, 64, 64),
            alpha: float = 0.5, mode: str = "bilinear") -> np.ndarray:
    """Tint the masked part of one image [1|3, H, W] in [-1, 1] -> uint8 RGB (mask resized:
    smoothly, or with `mode="nearest"` as crisp cells, e.g. a latent grid)."""
    base = to_uint8(image[None] if image.ndim == 3 else image)[0].astype(np.float32)
    m = mask.float().reshape(1, 1, *mask.shape[-2:])
    m = F.interpolate(m, size=base.shape[:2], mode=mode,
                      **({} if mode == "nearest" else {"align_corners": False}))[0, 0]
    m = (m.clamp(0, 1) * alpha).cpu().numpy()[..., None]
    out = base * (1 - m) + np.asarray(color, np.float32) * m
    return out.round().astype(np.uint8)


def grid(images: torch.Tensor, ncol: int | None = None, pad: int = 2) -> np.ndarray:
    """[B, 3, H, W] -> one uint8 RGB sheet, white gutters."""
    arr = to_uint8(images)
    b, h, w, _ = arr.shape
    ncol = ncol or b
    nrow = -(-b // ncol)
    sheet = np.full((nrow * h + (nrow - 1) * pad, ncol * w + (ncol - 1) * pad, 3), 255, np.uint8)
    for i, a in enumerate(arr):
        r, c = divmod(i, ncol)
        sheet[r * (h + pad): r * (h + pad) + h, c * (w + pad): c * (w + pad) + w] = a
    return sheet


@dataclass(frozen=True)
class ExamplePhoto:
    path: str
    label: str  # what it shows, where it comes from, its licence (the example's label)
    subject: str  # "face", "cat" or "animal": which models it suits


def example_photos() -> list[ExamplePhoto]:
    """Real photos that installed packages ship under free licences, read where they are
    installed (nothing is copied into this repository): scikit-image's public-domain NASA
    portrait of astronaut Eileen Collins and its CC0 photo of Chelsea the cat; Gradio's lion
    and cheetah (Apache-2.0)."""
    import importlib.util

    photos = []
    spec = importlib.util.find_spec("skimage")  # found without importing scikit-image
    if spec and spec.submodule_search_locations:
        data = Path(spec.submodule_search_locations[0]) / "data"
        for name, label, subject in (
                ("astronaut.png", "astronaut Eileen Collins (NASA, public domain; scikit-image)", "face"),
                ("chelsea.png", "Chelsea the cat (CC0; scikit-image)", "cat")):
            if (data / name).is_file():
                photos.append(ExamplePhoto(str(data / name), label, subject))
    try:
        from gradio.media import get_image

        photos += [ExamplePhoto(get_image("lion.jpg"), "a lion (Gradio sample, Apache-2.0)", "animal"),
                   ExamplePhoto(get_image("cheetah.jpg"), "a cheetah (Gradio sample, Apache-2.0)", "animal")]
    except (ImportError, FileNotFoundError, ValueError):
        pass
    return photos


def photos_for(framing: str, model_id: str = "") -> list[ExamplePhoto]:
    """The example photos that suit a model: faces for face framings, the cat for cat models,
    the other photos otherwise."""

    photos = example_photos()
    if framing in FACE_FRAMINGS:
        wanted = ("face",)
    elif "cat" in model_id:
        wanted = ("cat",)
    else:
        wanted = ("cat", "animal")
    return [p for p in photos if p.subject in wanted] or photos



def png_file(picture: Image.Image | np.ndarray, folder: str | Path) -> str:
    """A picture as a PNG file named by its content, written under a temporary name and
    renamed into place: a file the app hands out is never rewritten while it is being sent.

    (Gradio saves returned pictures in place under a content-hash name, so two people who
    make the same picture at once could receive a half-written file.)"""
    import hashlib
    import io
    import os
    import tempfile

    img = picture if isinstance(picture, Image.Image) else Image.fromarray(picture)
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    data = buffer.getvalue()
    target = Path(folder) / "pictures" / hashlib.sha256(data).hexdigest()[:32] / "image.png"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, staging = tempfile.mkstemp(dir=target.parent, prefix=".image-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(staging, target)
    return str(target)
