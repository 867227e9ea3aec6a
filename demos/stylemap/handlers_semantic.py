"""StyleMap's semantic manipulation handlers (the authors' semantic_manipulation.py): a
direction fitted on two labelled sets (uploads and/or samples by seed), then a picture moved
along it, globally and in the cells a person paints. The fitted direction is kept per person
in a gr.State (a dict of plain values, so it pickles for ZeroGPU's worker).
"""
from __future__ import annotations

import os
from dataclasses import asdict
from typing import NamedTuple

import gradio as gr
import numpy as np
import torch

from core.context import AppContext
from core.errors import UserError
from core.faces import FramedPhoto
from core.gpu import gpu_task
from core.images import editor_image_and_mask, mask_picture, pil_to_tensor, to_uint8
from core.models.stylemapgan import StyleMapGAN
from core.photo_slot import still_shows
from core.recipe import Run
from core.ui import parse_seeds, record
from demos.stylemap.engine import encode, fit_direction, manipulate, sample
from demos.stylemap.handlers import TAB, frame_picture, framing_note, model_for, picked


def direction_of(ctx: AppContext, model_id: str | None, kept: dict | None, *_, **__) -> list[str]:
    """A semantic edit needs a direction fitted on this model (checked before it is loaded)."""
    if not kept:
        raise UserError("Fit a direction first (two sets of pictures, with and without the attribute).")
    if kept.get("model") != model_id:
        raise UserError(f"This direction was fitted on {kept.get('model')}: fit it again for {model_id}.")
    return picked(ctx, model_id)


MAX_SET = 32  # pictures per labelled set


def labelled_set(ctx: AppContext, model_id: str, model: StyleMapGAN, files, seeds: str | None,
                 truncation: float, plain: bool, what: str) -> tuple[torch.Tensor, list[str]]:
    """One labelled set: uploaded photos (framed for the model) and samples by seed ->
    (pictures [N, 3, size, size], one line per picture saying where it came from)."""
    pictures, sources = [], []
    for f in files or []:
        path = f if isinstance(f, str) else getattr(f, "name", None) or f.get("path")
        try:
            framed = frame_picture(ctx, model_id, path, model.size, 1, plain)
        except UserError as e:
            raise UserError(f"{what}: {os.path.basename(str(path))}: {e}") from None
        pictures.append(pil_to_tensor(framed.aligned.image))
        sources.append(f"{os.path.basename(str(path))}: {framing_note(framed)}")
    if seeds and str(seeds).strip():
        chosen = parse_seeds(seeds, max_count=MAX_SET)
        pictures.append(sample(model, chosen, truncation).cpu())
        sources += [f"sample, seed {s_}, ψ {truncation:g}" for s_ in chosen]
    if len(sources) > MAX_SET:
        raise UserError(f"{what}: at most {MAX_SET} pictures, got {len(sources)}.")
    if not pictures:
        raise UserError(f"{what}: upload photos or give seeds to sample.")
    return torch.cat([p.to(torch.float32).cpu() for p in pictures]), sources


class FitDirectionOutputs(NamedTuple):
    """`run_fit_direction` -> summary, kept direction state, the two sets' gallery, run."""
    summary: str
    kept: dict
    sets: list
    run: Run


@gpu_task(duration=120, needs=picked)
def run_fit_direction(ctx: AppContext, model_id: str | None, with_files, with_seeds: str | None,
                      without_files, without_seeds: str | None, truncation: float = 0.7,
                      plain: bool = False, progress=gr.Progress(track_tqdm=True)
                      ) -> FitDirectionOutputs:
    """Two labelled sets (uploads and/or seeds) -> (summary, the direction kept for editing,
    gallery of both sets as the network sees them, run)."""
    model = model_for(ctx, model_id)
    pos, pos_src = labelled_set(ctx, model_id, model, with_files, with_seeds, float(truncation),
                                bool(plain), "With the attribute")
    neg, neg_src = labelled_set(ctx, model_id, model, without_files, without_seeds,
                                float(truncation), bool(plain), "Without the attribute")
    progress(0.3, desc=f"Encoding {len(pos) + len(neg)} pictures")
    direction, codes = fit_direction(model, pos, neg)
    shown = to_uint8(torch.cat([pos, neg]))
    gallery = [(p, f"with {k + 1}") for k, p in enumerate(shown[:len(pos)])] + \
              [(p, f"without {k + 1}") for k, p in enumerate(shown[len(pos):])]
    kept = {"model": model_id, "vector": direction.vector.numpy(), "summary": direction.summary()}
    run = record(ctx, TAB, "semantic_direction", {"model": model_id},
                 images={"with": list(shown[:len(pos)]), "without": list(shown[len(pos):])},
                 arrays={"direction": direction.vector, "stylemaps_with": codes[:len(pos)],
                         "stylemaps_without": codes[len(pos):]},
                 settings={"svm": "C-SVC, linear kernel, C = 1 (sklearn SVC's defaults), unit normal",
                           "with": pos_src, "without": neg_src,
                           "held_out_accuracy": getattr(direction.held_out, "accuracy", None),
                           "held_out": asdict(direction.held_out) if direction.held_out else None,
                           "train_accuracy": direction.train_accuracy,
                           "support_vectors": direction.svm.support},
                 notes="direction: the unit normal of the SVM's boundary, pointing towards 'with'.")
    return FitDirectionOutputs(f"**Direction ready.** {direction.summary()}", kept, gallery, run)


class SemanticEditOutputs(NamedTuple):
    """`run_semantic_edit` -> global strip, local strip, network input, cells, in photo, run."""
    global_strip: list
    local_strip: list
    net_input: np.ndarray
    cells: np.ndarray
    in_photo: np.ndarray | None
    run: Run


@gpu_task(duration=90, needs=direction_of)
def run_semantic_edit(ctx: AppContext, model_id: str | None, kept: dict | None, editor: dict | None,
                      strength: float, steps: float, framed: FramedPhoto | None = None,
                      progress=gr.Progress(track_tqdm=True)) -> SemanticEditOutputs:
    """Move a picture along the fitted direction -> (global strip, local strip (empty without
    a painted region), network input, cells picture, the strongest edit pasted into your
    photo (local where painted, else global; None unless the editor holds your framed photo),
    run)."""
    direction_of(ctx, model_id, kept)
    model = model_for(ctx, model_id)
    image, mask = editor_image_and_mask(editor, model.size, required=False)
    if int(steps) < 2:
        raise UserError("Use at least 2 frames (strength 0 and the strength chosen).")
    strengths = [float(strength) * k / (int(steps) - 1) for k in range(int(steps))]
    vector = torch.from_numpy(np.asarray(kept["vector"], np.float32))
    code = encode(model, image)
    frames, local, cells = manipulate(model, image, vector, strengths, mask, code=code)
    frames_u8 = to_uint8(frames)
    local_u8 = to_uint8(local) if local is not None else None
    captions = [f"d = {d:g}" for d in strengths]
    framed = framed if still_shows(editor, framed) else None
    in_photo = None
    if framed is not None:
        in_photo = framed.paste(local_u8[-1], mask[0, 0].cpu().numpy()) if local_u8 is not None \
            else framed.paste(frames_u8[-1])
    size = model.size
    cells_pic = mask_picture(cells, size) if cells is not None else np.zeros((size, size), np.uint8)
    images = {"original": image, "global": list(frames_u8)}
    if local_u8 is not None:
        images["local"] = list(local_u8)
    if framed is not None:
        images.update(result_in_photo=in_photo, photo=framed.photo)
    run = record(ctx, TAB, "semantic_edit", {"model": model_id}, images=images,
                 masks={"cells": cells.float()} if cells is not None else {},
                 arrays={"stylemap": code, "direction": vector},
                 settings={"strengths": strengths, "direction": kept.get("summary", "")},
                 notes="global_k / local_k: the stylemap moved d = strengths[k - 1] along the "
                       "direction, everywhere / only in the cells the painted mask touches.")
    local_strip = [(f, c) for f, c in zip(local_u8, captions)] if local_u8 is not None else []
    return SemanticEditOutputs([(f, c) for f, c in zip(frames_u8, captions)], local_strip,
                               to_uint8(image)[0], cells_pic, in_photo, run)
