"""StyleMap's transplant handlers: the authors' interactive demo (painted regions of up to
MAX_REFERENCES references, shifted, with interpolation frames and a t slider) and generate.py's
grid transplantation (boxes of stylemap cells, in w).
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import gradio as gr
import numpy as np
import torch

from core.context import AppContext
from core.errors import UserError
from core.faces import FramedPhoto
from core.gpu import gpu_task
from core.images import pil_to_tensor, to_uint8
from core.photo_slot import faces_gallery
from core.recipe import Run
from core.ui import record
from demos.stylemap.engine import (BOX_FIELDS, GRID_BOXES, MAX_REFERENCES, boxes_picture, boxes_region,
                                   collect_boxes, collect_references, encode, landed_region,
                                   landing_preview, transplant, transplant_grid)
from demos.stylemap.handlers import TAB, frame_picture, framing_note, model_for, picked


class TransplantOutputs(NamedTuple):
    """`run_transplant` -> landing, result, strip, frames, t, in photo, net input, faces, framed, landed,
    notes, run."""
    landing: np.ndarray
    result: np.ndarray
    strip: list
    frames: list
    t: Any
    in_photo: np.ndarray
    net_input: np.ndarray
    faces: list
    framed: FramedPhoto
    landed: np.ndarray
    notes: tuple[str]
    run: Run


@gpu_task(duration=90, needs=picked)
def run_transplant(ctx: AppContext, model_id: str | None, original, steps: float,
                   *refs_and_shifts, progress=gr.Progress(track_tqdm=True)) -> TransplantOutputs:
    """The authors' demo. `original`: a photo file (or a picture), framed as the model's
    training pictures were. `refs_and_shifts`: the MAX_REFERENCES reference editors, then
    their dx, then their dy, then (optional) the original's face number and plain framing ->
    (landing preview, last frame, strip, frames, t slider update, the last frame pasted into
    your photo where the references land, the network input, the faces found, the framed
    photo and the landed region (kept for the t slider), the framing note, run)."""
    n = MAX_REFERENCES
    editors, dxs, dys = refs_and_shifts[:n], refs_and_shifts[n:2 * n], refs_and_shifts[2 * n:3 * n]
    face, plain = _face_and_plain(refs_and_shifts[3 * n:])
    model = model_for(ctx, model_id)
    if original is None:
        raise UserError("Add an original picture (upload one or sample it from a seed).")
    framed = frame_picture(ctx, model_id, original, model.size, face, plain)
    orig = pil_to_tensor(framed.aligned.image)
    refs, masks, shifts = collect_references(model, editors, dxs, dys)
    progress(0.3, desc="Encoding and rendering frames")
    codes = encode(model, torch.cat([orig, refs]))
    frames = to_uint8(transplant(model, orig, refs, masks, shifts, int(steps), codes=codes))
    strip = [(f, f"t = {t / (len(frames) - 1):.2f}") for t, f in enumerate(frames)]
    landing = landing_preview(model, orig, masks, shifts)
    landed = landed_region(model, masks, shifts)
    in_photo = framed.paste(frames[-1], landed)
    shown, note = to_uint8(orig)[0], framing_note(framed)
    run = record(
        ctx, TAB, "transplant", {"model": model_id},
        images={"frame": list(frames), "original": orig, "reference": refs, "landing": landing,
                "result_in_photo": in_photo, "photo": framed.photo},
        masks={"reference": masks, "landed": landed}, arrays={"stylemaps": codes},
        settings={"frames": int(steps), "shifts_px": [list(s) for s in shifts]},
        notes="frame_01 is t = 0 (the original), the last frame t = 1; stylemaps: "
              "[original, references...]; masks/reference_k: what is taken from reference k "
              "(before its shift); masks/landed: where the references land in the frame. "
              f"Original: {note}. result_in_photo: the last frame pasted into the photo where "
              "the references land.")
    return TransplantOutputs(landing, frames[-1], strip, list(frames),
                             gr.update(maximum=len(frames) - 1, value=len(frames) - 1), in_photo,
                             shown, faces_gallery(framed), framed, landed, (note,), run)


def _face_and_plain(extra: Sequence) -> tuple:
    """The transplant's optional trailing inputs (face number, plain framing), defaulted."""
    face = extra[0] if len(extra) > 0 else 1
    plain = extra[1] if len(extra) > 1 else False
    return face, plain


def pick_frame(frames: list, t: float):
    """The t slider: show one of the frames already rendered (no model)."""
    if not frames:
        return gr.update()
    return frames[min(int(t), len(frames) - 1)]


class FrameAtTOutputs(NamedTuple):
    """`pick_frame_in_photo` -> result at t, result in photo."""
    result: Any
    in_photo: Any


def pick_frame_in_photo(frames: list, t: float, framed: FramedPhoto | None = None,
                        landed: np.ndarray | None = None) -> FrameAtTOutputs:
    """The t slider: (the frame at t, that frame pasted into your photo where the references
    land), from what the transplant left (no model)."""
    frame = pick_frame(frames, t)
    if not frames or framed is None or landed is None:
        return FrameAtTOutputs(frame, gr.update())
    return FrameAtTOutputs(frame, framed.paste(frame, landed))


class GridTransplantOutputs(NamedTuple):
    """`run_grid_transplant` -> where to, where from, result, in photo, faces, ref faces, notes, run."""
    where_to: np.ndarray
    where_from: np.ndarray
    result: np.ndarray
    in_photo: np.ndarray
    faces: list
    ref_faces: list
    notes: tuple[str, str]
    run: Run


@gpu_task(duration=60, needs=picked)
def run_grid_transplant(ctx: AppContext, model_id: str | None, original, reference,
                        *boxes_and_controls, progress=gr.Progress(track_tqdm=True)
                        ) -> GridTransplantOutputs:
    """generate.py's transplantation. `boxes_and_controls`: GRID_BOXES x BOX_FIELDS cell
    values, then (optional) the original's and the reference's face number and plain
    framing -> (original with the landing boxes, reference with the boxes taken, result, the
    result pasted into the original photo where the boxes land, the two network inputs' faces
    found, framing notes, run)."""
    n = GRID_BOXES * len(BOX_FIELDS)
    boxes = collect_boxes(boxes_and_controls[:n])
    extra = list(boxes_and_controls[n:]) + [1, False, 1, False][len(boxes_and_controls) - n:]
    model = model_for(ctx, model_id)
    if original is None or reference is None:
        raise UserError("Add both the original and the reference (upload or sample them).")
    size, grid = model.size, model.G.latent_spatial_size
    framed = frame_picture(ctx, model_id, original, size, extra[0], extra[1])
    ref_framed = frame_picture(ctx, model_id, reference, size, extra[2], extra[3])
    orig, ref = pil_to_tensor(framed.aligned.image), pil_to_tensor(ref_framed.aligned.image)
    codes = encode(model, torch.cat([orig, ref]))
    result = to_uint8(transplant_grid(model, orig, ref, boxes, codes=codes))[0]
    landed = boxes_region(size, grid, boxes, "to")
    in_photo = framed.paste(result, landed)
    notes = (framing_note(framed), "Reference: " + framing_note(ref_framed))
    run = record(ctx, TAB, "grid_transplant", {"model": model_id},
                 images={"original": orig, "reference": ref, "result": result,
                         "result_in_photo": in_photo, "photo": framed.photo},
                 masks={"landed": landed, "taken": boxes_region(size, grid, boxes, "from")},
                 arrays={"stylemaps": codes},
                 settings={"grid": grid, "boxes": [[list(t), list(f), h, w] for t, f, h, w in boxes]},
                 notes="boxes: [[to_row, to_col], [from_row, from_col], height, width] in stylemap "
                       "cells (generate.py's transplantation coordinates), applied in order in w. "
                       + " ".join(notes))
    return GridTransplantOutputs(boxes_picture(orig, grid, boxes, "to"),
                                 boxes_picture(ref, grid, boxes, "from"), result, in_photo,
                                 faces_gallery(framed), faces_gallery(ref_framed), notes, run)
