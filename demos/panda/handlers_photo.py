"""PandA's handlers for a person's photo (plain functions of the app context and the widgets'
values): a quick W+ code of the photo (`quick_photo_code`), its edit with parts and
appearances (`edit_photo_code`), a saved run loaded back (`open_saved_run`), and the
generator the photo slot frames photos for (`generator_of`).
"""
from __future__ import annotations

from typing import NamedTuple

import gradio as gr
import numpy as np
import torch

from core.context import AppContext
from core.errors import UserError
from core.gpu import gpu_task, user_errors
from core.images import heatmap, to_uint8
from core.lpips import get_lpips
from core.photo_code import QUICK_STEPS, PhotoCode, code_from_bundle, encoder_of, quick_code, run_parts
from core.photo_slot import frame_input
from core.recipe import Run, open_run
from core.ui import record
from demos.panda.engine import TAB, edit_code, edit_delta, part_choices
from demos.panda.handlers import edit_terms, factor_needs, factors_and_model
from demos.panda.sources import library

NO_PHOTO_CODE = ("No photo code yet: upload your photo above and press \"Quick code\", invert it "
                 "in the SAM tab (finer), or load a saved run.")
QUICK_STEP_GPU_SECONDS = 0.12  # estimated GPU time per W+ step at 1024 px (SAM's estimate)


def quick_needs(ctx: AppContext, label: str | None, *_, **__) -> list:
    """A quick code: the factors' generator in float32 (gradients), its e4e encoder where
    registered, and the LPIPS backbone."""
    fs, _ = factors_and_model(ctx, label)
    get_lpips("vgg", ctx.device)
    enc = encoder_of(ctx, fs.generator)
    return [(fs.generator, torch.float32)] + ([(enc.id, torch.float32)] if enc else [])


def quick_seconds(ctx: AppContext, label: str | None, photo, face, plain, steps: float = 0,
                  *_, **__) -> float:
    """GPU time of a quick code: its steps at the generator's size."""
    size = library(ctx).get(label).side if label else 256
    return 20 + float(steps or 0) * QUICK_STEP_GPU_SECONDS * max(size * 16 / 1024, 0.25) ** 2


class QuickCodeOutputs(NamedTuple):
    """A quick code's widgets: the session's photo code, its reconstruction, status line."""
    code: PhotoCode
    reconstruction: np.ndarray
    status: str


@gpu_task(duration=quick_seconds, needs=quick_needs)
def quick_photo_code(ctx: AppContext, label: str | None, photo, face: float | None = 1,
                     plain: bool = False, steps: float = QUICK_STEPS[1],
                     progress=gr.Progress()) -> QuickCodeOutputs:
    """Your photo, framed for the factors' generator, as a photo code in W+ (e4e where
    registered, then `steps` Adam steps): the session's code, which "Edit my photo" edits
    (and SAM and Generate see) -> (code, its reconstruction, status)."""
    fs, _ = factors_and_model(ctx, label)
    G = ctx.model(fs.generator, torch.float32)  # gradients: float32 on every device
    progress(0.0, desc="Framing the photo")
    framed, _ = frame_input(ctx, fs.generator, photo, G.size, face, plain)
    steps = max(0, int(steps or 0))
    report = lambda done, total: progress(done / total, desc=f"W+ step {done}/{total}")  # noqa: E731
    code = quick_code(ctx, fs.generator, G, framed, steps, get_lpips("vgg", G.device), report)
    with torch.no_grad():
        picture = to_uint8(code.render(G))[0]
    return QuickCodeOutputs(code, picture, f"Your photo is now the session's {code.describe()}: "
                                           "edit it below (SAM's inversion is finer).")


class PhotoEditOutputs(NamedTuple):
    """The photo code's edit widgets: reconstruction, edited, |difference|, edit in the photo, run."""
    original: np.ndarray
    edited: np.ndarray
    difference: np.ndarray
    in_photo: np.ndarray | None
    run: Run


@gpu_task(duration=60, needs=factor_needs)
def edit_photo_code(ctx: AppContext, label: str | None, code: PhotoCode | None, chosen: list | None,
                    appearance: float | None, strength: float, more=None) -> PhotoEditOutputs:
    """The session's photo code (an inverted photo) edited with parts and appearances ->
    (reconstruction, edited, |difference|, the edit in the photo, run)."""
    if code is None:
        raise UserError(NO_PHOTO_CODE)
    fs, G = factors_and_model(ctx, label)
    code.check_model(fs.generator)
    terms = edit_terms(chosen, appearance, strength, more)
    orig, new = edit_code(G, code, fs, terms)
    original, edited = to_uint8(orig)[0], to_uint8(new)[0]
    diff = heatmap((new - orig).abs().mean(1)[0], vmin=0)
    in_photo = code.in_photo(edited)
    images, arrays, settings = run_parts(code)
    run = record(ctx, TAB, "edit photo code", {"generator": fs.generator},
                 images={"original": original, "edited": edited, "difference": diff,
                         "edited_in_photo": in_photo, **images},
                 arrays={**arrays, "delta": edit_delta(fs.A, fs.P, terms, fs.side)},
                 settings={**settings, "factor_set": label, "layer": fs.layer,
                           "edits": [[list(t.parts), t.appearance, t.strength] for t in terms]},
                 notes="original: the photo code's reconstruction (W+ and its residuals); edited: "
                       "the same pass with the parts/appearances edit at the factors' layer.")
    return PhotoEditOutputs(original, edited, diff, in_photo, run)


def generator_of(ctx: AppContext, label: str | None) -> str | None:
    """The generator a factor set belongs to (the photo slot frames photos for it)."""
    try:
        return library(ctx).get(label).generator if label else None
    except UserError:
        return None


class LoadRunOutputs(NamedTuple):
    """A saved run's widgets: factors, seeds, ψ, refine, parts, appearance, λ, edit list, the
    session's photo code, status."""
    factor_set: dict
    seeds: dict
    psi: dict
    refine: dict
    parts: dict
    appearance: dict
    strength: dict
    more: dict
    code: PhotoCode | None
    status: str


@user_errors
def open_saved_run(ctx: AppContext, file: str | None, code: PhotoCode | None) -> LoadRunOutputs:
    """A run saved with "Download all" back: a PandA run's factors, seeds, truncation and
    edits; any run's photo code (SAM, PandA, Generate) becomes the session's. Loads no model:
    "Edit" or "Edit my photo" then renders it."""
    bundle = open_run(file)
    recipe, keep = bundle.recipe, gr.update()
    settings = recipe.get("settings") or {}
    notes = []
    if settings.get("photo_code"):
        code = code_from_bundle(bundle)
        notes.append(f"the session's photo code is now this run's {code.describe()}")
    if recipe.get("tab") != TAB:
        if not notes:
            raise UserError(f"This run was saved by the {recipe.get('tab', '?')!r} tab and holds no "
                            "photo code: load it there.")
        return LoadRunOutputs(*[keep] * 8, code, "Loaded: " + notes[0] + ". Pick its model's "
                              "factors and press \"Edit my photo\".")
    label = settings.get("factor_set")
    if label not in library(ctx).labels():
        raise UserError(f"This run used the factor set {label!r}, which is not available here: "
                        "compute it below (same generator, layer and rank), then load the run again.")
    edits = [[list(map(int, parts)), int(j), float(lam)] for parts, j, lam in settings.get("edits") or []]
    if not edits:
        raise UserError("This PandA run lists no edits.")
    (first_parts, j, lam), rest = edits[0], edits[1:]
    seeds = recipe.get("seeds") or []
    seeds_update = gr.update(value=", ".join(map(str, seeds))) if seeds else keep
    psi = settings.get("truncation")
    notes.insert(0, f"factors {label}, {len(edits)} edit(s)" + (f", seeds {', '.join(map(str, seeds))}"
                                                               if seeds else ""))
    return LoadRunOutputs(
        gr.update(value=label), seeds_update, keep if psi is None else gr.update(value=float(psi)),
        gr.update(value=bool(settings.get("refine_parts"))),
        gr.update(choices=part_choices(label), value=first_parts), gr.update(value=j),
        gr.update(value=lam),
        gr.update(value=[[", ".join(map(str, p)), a, v] for p, a, v in rest]), code,
        "Loaded " + "; ".join(notes) + ". Press \"Edit\"" + (" or \"Edit my photo\"" if code else "") + ".")


