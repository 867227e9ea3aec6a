"""A person's photo, the same in every photo tab: one upload slot (widgets and wiring), one
rule for framing it for a model, one rule for "is this a picture the app drew".

upload -> `core.images.open_photo` (upright, full resolution) -> faces -> the registry's
framing for the picked model -> the network input, labelled. A new photo starts afresh: the
face choice goes back to 1 and the tab's old results are cleared (a failed upload too, so a
result is never shown beside a photo it was not made from). Results go back into the photo
with `FramedPhoto.paste` (`core.faces`), the one paste-back.
"""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import gradio as gr
import numpy as np
from PIL import Image, ImageDraw

from core.errors import UserError
from core.faces import FramedPhoto, align, face_thumbnails, frame_for_model
from core.framing import framing_line
from core.images import editor_holds, open_photo
from core.gpu import user_errors

FRAMED_KEPT = 16  # framed photo files kept per app: live edits re-frame on every stroke
DRAWN_KEPT = 512  # pictures the app drew that it still recognises (a class's samples of a lesson)
THUMB = 112  # px: a face thumbnail's side (square, numbered)
NO_PHOTO = "No photo was given: upload one, pick an example or sample one from a seed."


# ---- pictures the app drew: used as drawn, never re-framed -----------------------------------
class _Drawn:
    """The fingerprints of pictures the app's generators drew, per model (bounded): a sample
    put into a photo slot is already in the model's frame and must not be aligned again.
    Kept as empty files in a folder of the app's, so a ZeroGPU worker forked earlier sees
    what the main process noted later, and the other way round."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="spatial-gan-studio-drawn-"))
        weakref.finalize(self, _remove_if_owner, str(self.folder), os.getpid())

    def _file(self, model_id: str, picture: np.ndarray) -> Path:
        digest = hashlib.sha256(f"{model_id}:{picture.shape}:".encode())
        digest.update(np.ascontiguousarray(picture).tobytes())
        return self.folder / digest.hexdigest()

    def add(self, model_id: str, picture: np.ndarray) -> None:
        self._file(model_id, picture).touch()
        names = list(self.folder.iterdir())
        if len(names) > DRAWN_KEPT:
            for old in sorted(names, key=_mtime)[:len(names) - DRAWN_KEPT]:
                old.unlink(missing_ok=True)

    def __contains__(self, item: tuple[str, np.ndarray]) -> bool:
        return self._file(*item).exists()


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _remove_if_owner(folder: str, pid: int) -> None:
    if os.getpid() == pid:  # not from a forked worker: the app still uses it
        shutil.rmtree(folder, ignore_errors=True)


def drawn(ctx) -> _Drawn:
    return ctx.shared("photo_slot.drawn", _Drawn)


def remember_drawn(ctx, model_id: str, picture) -> None:
    """Note `picture` (as handed out: RGB uint8) as drawn by `model_id`."""
    drawn(ctx).add(model_id, np.asarray(open_photo(picture)))


def drawing(sample: Callable) -> Callable:
    """`sample(ctx, model_id, ...)` whose picture is remembered as drawn by that model. Runs
    in the main process (a `gpu_task` returns here from ZeroGPU's worker), where the memory is."""
    @functools.wraps(sample)
    def run(ctx, model_id, *args, **kwargs):
        picture = sample(ctx, model_id, *args, **kwargs)
        remember_drawn(ctx, model_id, picture)
        return picture
    return run


class _Recent:
    """The last FRAMED_KEPT framed photo files (face detection in a big photo takes seconds,
    and a tab frames the same upload for its preview, its run and every live stroke)."""

    def __init__(self) -> None:
        self._kept: OrderedDict[tuple, tuple] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, make: Callable[[], tuple]) -> tuple:
        with self._lock:
            if key in self._kept:
                self._kept.move_to_end(key)
                return self._kept[key]
        value = make()  # outside the lock: another person's photo need not wait
        with self._lock:
            self._kept[key] = value
            while len(self._kept) > FRAMED_KEPT:
                self._kept.popitem(last=False)
        return value


# ---- the one framing rule ------------------------------------------------------------------
def frame_size(ctx, model_id: str) -> int | None:
    """The frame a model's photos are cut to, from the registry: its own picture size, or
    its generator's (a regressor, an encoder); None when the registry does not say."""
    entry = ctx.registry.get(model_id)
    if entry.image_size():
        return entry.image_size()
    return ctx.registry.generator_of(entry).image_size() if entry.generator else None


def frame_input(ctx, model_id: str, picture, size: int, face: float | None = 1,
                plain: bool = False) -> tuple[FramedPhoto, bool]:
    """A photo (an upload's path, a PIL image or an array) in the model's `size`-px frame ->
    (framed photo, whether it is a picture this model drew). A drawn picture is used as drawn
    (a square sample, or the picture area of a letterboxed one); any other is framed as the
    model's training pictures were (`core.faces.frame_for_model`)."""
    if picture is None:
        raise UserError(NO_PHOTO)
    if isinstance(picture, (str, os.PathLike)) and os.path.isfile(picture):
        st = os.stat(picture)
        key = (str(picture), st.st_mtime_ns, st.st_size, model_id, size, int(face or 1), bool(plain))
        return ctx.shared("photo_slot.framed", _Recent).get(
            key, lambda: _frame(ctx, model_id, open_photo(picture), size, face, plain))
    return _frame(ctx, model_id, open_photo(picture), size, face, plain)


def _frame(ctx, model_id: str, photo: Image.Image, size: int, face: float | None, plain: bool
           ) -> tuple[FramedPhoto, bool]:
    if (model_id, np.asarray(photo)) in drawn(ctx):
        content = ctx.registry.content_of(ctx.registry.get(model_id))
        aligned = align(photo, None, "letterbox" if content else "center", size, content)
        return FramedPhoto(photo, aligned, drawn=True), True
    return frame_for_model(ctx.registry, model_id, photo, size, face, plain), False


def still_shows(editor: dict | None, framed: FramedPhoto | None) -> bool:
    """Whether an image editor still holds `framed`'s network input (paint on top is fine; a
    browser's canvas may re-encode it slightly): the one test before a result goes back into
    a photo, so it never goes into a photo it was not made from."""
    return framed is not None and editor_holds(editor, framed.aligned.image)


def network_input(framed: FramedPhoto) -> dict:
    """The picture the network sees, labelled with how it was made (`FramedPhoto.note`)."""
    return gr.update(value=np.asarray(framed.aligned.image), label=framed.note())


def faces_gallery(framed: FramedPhoto) -> list[tuple]:
    """The faces found as square, numbered thumbnails ("face 1 (used)", "face 2", ...): the whole head,
    so a person can tell who is who."""
    items = []
    for i, thumb in enumerate(face_thumbnails(framed.photo, list(framed.faces), THUMB)):
        used = i == framed.face_index
        items.append((_numbered(thumb, i + 1, used), f"face {i + 1}" + (" (used)" if used else "")))
    return items


def _numbered(thumb: Image.Image, number: int, used: bool) -> Image.Image:
    thumb = thumb.convert("RGB")
    draw = ImageDraw.Draw(thumb)
    colour = (255, 196, 0) if used else (255, 255, 255)
    draw.rectangle((0, 0, 22, 18), fill=(0, 0, 0))
    draw.text((5, 3), str(number), fill=colour)
    if used:
        draw.rectangle((0, 0, thumb.width - 1, thumb.height - 1), outline=colour, width=3)
    return thumb


# ---- handlers --------------------------------------------------------------------------------
class FramingOutputs(NamedTuple):
    """The slot's framing widgets: network input, its caption, faces found."""
    net_input: dict
    caption: str
    faces: list


@user_errors
def show_framing(ctx, model_id: str | None, picture, face: float | None = 1,
                 plain: bool = False) -> FramingOutputs:
    """The photo's network input and the faces found, as soon as a photo, face or model is
    picked (no model is loaded: the frame's size comes from the registry)."""
    size = frame_size(ctx, model_id) if model_id else None
    if picture is None or size is None:
        return FramingOutputs(gr.update(value=None, label="Network input"), "", [])
    framed, _ = frame_input(ctx, model_id, picture, size, face, plain)
    return FramingOutputs(network_input(framed), framed.note(), faces_gallery(framed))


def _nothing(n: int) -> Callable[[], object]:
    def run():
        return None if n == 1 else [None] * n
    return run


def new_photo() -> int:
    """A person's new photo: face 1 (the largest) again."""
    return 1


def picked_face(evt: gr.SelectData) -> int:
    return int(evt.index) + 1


# ---- the widgets -----------------------------------------------------------------------------
@dataclass
class PhotoSlot:
    """One photo upload and what belongs to it: the faces found (click one), the face number
    the handlers read, "plain framing", and the network input with its caption (None where
    the tab shows the network input elsewhere)."""
    photo: gr.Image
    faces: gr.Gallery
    face: gr.Number
    plain: gr.Checkbox
    net_input: gr.Image | None
    caption: gr.Markdown | None
    examples: gr.Examples | None
    seed: gr.Number | None = None  # the "Sample from seed" box, when the slot has one
    picked: object = None  # the face gallery's select event (set by `photo_slot`)
    new_photo: list = field(default_factory=list)  # the triggers of a person's new photo

    def follow(self, wiring, model_id: gr.Dropdown, net_input: gr.Image | None = None,
               caption: gr.Markdown | None = None) -> None:
        """Frame the photo for the picked model whenever the photo, face, framing or model
        changes, into `net_input` and `caption` (a tab may show them elsewhere; without them
        only the faces found are shown). `photo_slot` calls it for its own network input."""
        outputs = [net_input or gr.State(), caption or gr.State(), self.faces]
        inputs = [model_id, self.photo, self.face, self.plain]
        for event in (self.photo.change, self.picked.then, self.face.input, self.plain.input,
                      model_id.change):
            wiring.on(event, show_framing, inputs, outputs, record=False)

    def clears(self, *results) -> None:
        """A new photo (or a failed upload) empties `results`: nothing stays on screen beside a
        photo it was not made from."""
        for trigger in self.new_photo:
            trigger(_nothing(len(results)), None, list(results), api_visibility="private",
                    queue=False)

    @property
    def inputs(self) -> list:
        """The photo, face and plain framing: what a handler that frames the photo reads."""
        return [self.photo, self.face, self.plain]

    @property
    def choices(self) -> list:
        """Face and plain framing (the handlers' inputs after the photo)."""
        return [self.face, self.plain]


SLOT_CLASS = "photo-slot"  # every photo upload of the app carries it (a test counts them)


def photo_slot(wiring, model_id: gr.Dropdown, *, label: str = "Your photo",
               sample: Callable | None = None, sample_inputs: Sequence = (), seed: int = 1,
               sample_label: str = "Sample from seed",
               net_input: bool = True, examples: Sequence = (),
               examples_label: str = "Example photos", height: int | None = None) -> PhotoSlot:
    """A photo upload wired the same way in every tab. `sample(ctx, model_id, *sample_inputs,
    seed)`: a "Sample from seed" row under it (the picture is remembered as drawn); `examples`:
    `core.images.ExamplePhoto`s. A new photo sets the face back to 1 (`PhotoSlot.clears` adds
    the tab's results)."""
    from core.ui import labelled_examples, seed_row

    drawn(wiring.ctx)  # made before any ZeroGPU worker is forked, so they share its folder
    photo = gr.Image(type="filepath", image_mode=None, format="png", label=label, height=height,
                     elem_classes=[SLOT_CLASS])
    seed_box = sampled = None
    if sample is not None:
        seed_box, sampled = seed_row(wiring, photo, drawing(sample), [model_id, *sample_inputs],
                                     default=seed, label=sample_label)
    with gr.Row():
        faces = gr.Gallery(label="Faces found (click one to use it)", columns=6, height=150,
                           object_fit="contain", allow_preview=False, format="png", scale=3)
        with gr.Column(scale=1, min_width=170):
            face = gr.Number(value=1, precision=0, minimum=1, label="Face (1 = the largest)")
            plain = gr.Checkbox(value=False, label="Plain framing (no face alignment)")
    shown = caption = None
    if net_input:
        shown = gr.Image(format="png", label="Network input", interactive=False, height=height)
        caption = gr.Markdown()
    shown_examples = labelled_examples([[p.path] for p in examples], [p.label for p in examples],
                                       [photo], label=examples_label) if examples else None
    slot = PhotoSlot(photo, faces, face, plain, shown, caption, shown_examples, seed_box)
    slot.picked = faces.select(picked_face, None, face, api_visibility="private", queue=False)
    # a person's new photo (an upload, a paste, the camera, a cleared box, a sample they drew):
    # face 1 again; results cleared (`clears`). A picture the page puts there itself (an
    # example, the first look) comes with its own results.
    slot.new_photo = [photo.input] + ([sampled.success] if sampled is not None else [])
    for trigger in slot.new_photo:
        trigger(new_photo, None, face, api_visibility="private", queue=False)
    if net_input:
        slot.follow(wiring, model_id, shown, caption)
    return slot


def slot_line(ctx, model_id: gr.Dropdown) -> gr.Markdown:
    """The framing sentence for the picked model, kept up to date (one per tab)."""
    line = gr.Markdown(framing_line(ctx.registry, model_id.value or None))
    model_id.change(functools.partial(framing_line, ctx.registry), model_id, line,
                    api_visibility="private", queue=False)
    return line
