"""StyleMap's handlers shared by its sub-tabs (the model, its grid, framing a photo, the
labels that follow the model) and those of the local edit, reconstruction, style mixing,
interpolation and random sub-tabs: module-level functions of the app context and the widgets'
values, so tests call them directly. The transplants' handlers are in `handlers_transplant`,
the semantic manipulation's in `handlers_semantic`.

A person's photo is framed as the model's training pictures were (`frame_picture`: the
registry's framing, `core.faces`), and results are pasted back into it (`FramedPhoto.paste`).
Labels that name the stylemap grid come from the registry's `latent_spatial_size` (`grid_of`,
`model_labels`), known before the model loads.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import gradio as gr
import numpy as np
import torch

from core.context import AppContext
from core.errors import UserError
from core.faces import FramedPhoto
from core.gpu import gpu_task, user_errors
from core.images import editor_image_and_mask, pil_to_tensor, to_uint8
from core.models.stylemapgan import StyleMapGAN
from core.photo_slot import faces_gallery, frame_input, remember_drawn, still_shows
from core.recipe import Run
from core.ui import parse_seeds, quietly, record, shift_range
from demos.stylemap.engine import (BOX_FIELDS, GRID_BOXES, MAX_REFERENCES, encode, example_region,
                                   interpolate, local_edit, painted_editor, reconstruct, sample,
                                   style_mix)

TAB = "stylemap"
UNREGISTERED_SIZE = 256  # the shift range of an entry registered without a size (the loader reads it)


def registered_size(ctx: AppContext, model_id: str | None) -> int:
    """The model's picture size from its registry entry, without loading it (the shift range)."""
    size = ctx.registry.get(model_id).image_size() if model_id else None
    return size or UNREGISTERED_SIZE


def picked(ctx: AppContext, model_id: str | None, *_, **__) -> list[str]:
    """What a call needs before it computes (`core.gpu`): the StyleMapGAN model."""
    if not model_id:
        raise UserError("Pick a StyleMapGAN model first.")
    return [model_id]


def model_for(ctx: AppContext, model_id: str | None) -> StyleMapGAN:
    """The generator + encoder pair of `model_id`, loaded once per device."""
    if not model_id:
        raise UserError("Pick a StyleMapGAN model first.")
    return ctx.model(model_id)


def framing_for(ctx: AppContext, model_id: str | None) -> str:
    """The model's framing of photos (registry `meta.framing`; "center" without a model)."""
    return ctx.registry.framing_of(ctx.registry.get(model_id)) if model_id else "center"


def frame_picture(ctx: AppContext, model_id: str | None, picture, size: int, face: float | None = 1,
                  plain: bool = False) -> FramedPhoto:
    """A photo (a file path from a photo input, or a picture) -> framed for the model as its
    training pictures were; a sample the model drew is taken as drawn (`core.photo_slot`)."""
    return frame_input(ctx, model_id, picture, size, face, plain)[0]


def framing_note(framed: FramedPhoto | None) -> str:
    """The label of a network-input picture: how the picture was framed."""
    if framed is None:
        return "Network input: the editor's picture, centre crop"
    return framed.note()


def model_size(ctx: AppContext, model_id: str | None) -> int:
    """The model's picture size: registered, else read from the loaded model."""
    if not model_id:
        raise UserError("Pick a StyleMapGAN model first.")
    return ctx.registry.get(model_id).image_size() or model_for(ctx, model_id).size


def grid_of(ctx: AppContext, model_id: str | None) -> int | None:
    """The stylemap grid S (S x S cells) the registry states for the model (config
    `latent_spatial_size`, checked against the file when it loads), known before anything is
    loaded; None when not stated (handlers read it from the loaded model)."""
    if not model_id:
        return None
    value = ctx.registry.get(model_id).config.get("latent_spatial_size")
    return int(value) if value else None


def grid_text(grid: int | None) -> str:
    return f"{grid}×{grid}" if grid else "S×S"


def space_choices(grid: int | None) -> list[tuple[str, str]]:
    return [("w+ (every resized stylemap, down to the pixel)", "w_plus"),
            (f"w (the {grid_text(grid)} stylemap)", "w")]


def cells_label(grid: int | None) -> str:
    return (f"Mask as the network uses it (w: whole {grid_text(grid)} cells; w+: white at every "
            "level down to the finest, grey at the coarser levels only)")


def mix_labels(grid: int | None) -> tuple[str, str]:
    g = grid_text(grid)
    return (f"Coarse: A's two {g} stylemaps on B's finer ones",
            f"Fine: B's two {g} stylemaps on A's finer ones")


ModelLabelOutputs = NamedTuple("ModelLabelOutputs", [
    ("space", Any), ("cells", Any),
    *[(f"box{k + 1}_{field}", Any) for k in range(GRID_BOXES) for field in BOX_FIELDS],
    ("coarse", Any), ("fine", Any)])
ModelLabelOutputs.__doc__ = """`model_labels` -> space, cells, box1_to_row ... box2_width sliders, coarse, fine."""


def model_labels(ctx: AppContext, model_id: str | None) -> ModelLabelOutputs:
    """A model change: every label that names the stylemap grid (w/w+ choice, mask picture,
    style-mixing results) and the grid transplant's cell sliders (0 .. S)."""
    g = grid_of(ctx, model_id)
    coarse, fine = mix_labels(g)
    cells = [gr.update(maximum=g or 32)] * (GRID_BOXES * len(BOX_FIELDS))
    return ModelLabelOutputs(gr.update(choices=space_choices(g)), gr.update(label=cells_label(g)),
                             *cells, gr.update(label=coarse), gr.update(label=fine))


# The paper's reconstruction numbers (MSE on [-1, 1] pixels, LPIPS-VGG, 500 test pictures) and
# the checkpoints they were measured on; no other checkpoint is compared with them.
PAPER_RECONSTRUCTION = {
    "stylemapgan-celeba-hq-256-5m": "paper Table 2, this 5M-image CelebA-HQ checkpoint: MSE 0.023, LPIPS 0.237",
    "stylemapgan-afhq-256-5m": "paper Table 2, this 5M-image AFHQ checkpoint: MSE 0.037, LPIPS 0.304",
}
PAPER_FFHQ_32 = {False: "paper Table 5, FFHQ 1024 px 32×32: MSE 0.016, LPIPS 0.344",
                 True: "paper Table 5, FFHQ 1024 px 32×32 light generator: MSE 0.017, LPIPS 0.347"}


def paper_reconstruction(model_id: str | None, model: StyleMapGAN) -> str:
    """The paper's numbers for this checkpoint, or why there are none."""
    if model_id in PAPER_RECONSTRUCTION:
        return PAPER_RECONSTRUCTION[model_id]
    if model_id == "stylemapgan-ffhq-1024-32x32":
        return PAPER_FFHQ_32[bool(model.G.config.get("small_generator"))]
    return ("the paper reports reconstruction numbers only for its 5M-image CelebA-HQ and AFHQ "
            "checkpoints and the FFHQ 32×32 one, not for this checkpoint")


class FrameOutputs(NamedTuple):
    """`frame_original` -> original editor, network input, faces gallery, framed state, notes state."""
    editor: dict
    net_input: np.ndarray
    faces: list
    framed: FramedPhoto
    notes: tuple[str]


@user_errors
def frame_original(ctx: AppContext, model_id: str | None, photo: str | None, face: float | None = 1,
                   plain: bool = False) -> FrameOutputs:
    """"Frame it": your photo -> (the original editor holding the network input, so you paint
    on exactly what the network sees; that picture; the faces found; the framed photo kept
    for pasting the result back; the framing note, the picture's label)."""
    if photo is None:
        raise UserError("Upload your photo first (or pick an example photo).")
    size = model_size(ctx, model_id)
    framed = frame_picture(ctx, model_id, photo, size, face, plain)
    picture = np.asarray(framed.aligned.image)
    editor = {"background": picture, "layers": [], "composite": picture}
    return FrameOutputs(editor, picture, faces_gallery(framed), framed, (framing_note(framed),))


ShiftRangeOutputs = NamedTuple("ShiftRangeOutputs", [
    *[(f"dx{k + 1}", Any) for k in range(MAX_REFERENCES)],
    *[(f"dy{k + 1}", Any) for k in range(MAX_REFERENCES)]])
ShiftRangeOutputs.__doc__ = """`shift_ranges` -> the references' dx sliders, then their dy sliders."""


def shift_ranges(ctx: AppContext, model_id: str | None) -> ShiftRangeOutputs:
    """A model change: every reference's shift sliders span the new model's square."""
    return ShiftRangeOutputs(*shift_range(registered_size(ctx, model_id),
                                          len(ShiftRangeOutputs._fields)))


@gpu_task(duration=60, needs=picked)
def sample_picture(ctx: AppContext, model_id: str | None, truncation: float, seed: float | None,
                   progress=gr.Progress(track_tqdm=True)) -> np.ndarray:
    """A picture from a seed (the seed row under every input), so no upload is needed."""
    progress(0.0, desc=f"Loading {model_id}")
    model = model_for(ctx, model_id)
    return to_uint8(sample(model, parse_seeds(seed, max_count=1), float(truncation)))[0]


class LocalEditOutputs(NamedTuple):
    """`run_local_edit` -> net input, cells, result, in photo, reference's net input, its faces, notes, run."""
    net_input: np.ndarray
    cells: np.ndarray
    result: np.ndarray
    in_photo: np.ndarray | None
    ref_input: np.ndarray
    ref_faces: list
    notes: tuple[str, str]
    run: Run


def _edit(ctx: AppContext, model_id: str | None, editor: dict | None, reference, space: str,
          framed: FramedPhoto | None = None, ref_face: float | None = 1, ref_plain: bool = False,
          seeds: Sequence[int] = (), region: str | None = None) -> LocalEditOutputs:
    """A local edit -> (network input, cells, result, result in your photo, the reference's
    network input, the reference's faces, framing notes, run); `framed`: the photo "Frame it" put in the
    editor; `seeds` and `region` only for the seed examples, so the recipe says how their
    pictures were made."""
    model = model_for(ctx, model_id)
    size = model.size
    original, mask = editor_image_and_mask(editor, size)
    if reference is None:
        raise UserError("Add a reference picture (upload one or sample it from a seed).")
    framed = framed if still_shows(editor, framed) else None
    ref_framed = frame_picture(ctx, model_id, reference, size, ref_face, ref_plain)
    ref = pil_to_tensor(ref_framed.aligned.image)
    edit = local_edit(model, original, ref, mask, space)
    shown, result = to_uint8(original)[0], to_uint8(edit.image)[0]
    in_photo = framed.paste(result, mask[0, 0].cpu().numpy()) if framed else None
    ref_shown = to_uint8(ref)[0]
    photos = {"result_in_photo": in_photo, "photo": framed.photo} if framed else {}
    run = record(
        ctx, TAB, "local_edit", {"model": model_id},
        images={"original": original, "reference": ref, "result": result, **photos},
        masks={"painted": mask, "cells": edit.cells.float()},
        arrays={"stylemap_original": edit.codes[:1], "stylemap_reference": edit.codes[1:]},
        seeds=seeds, settings={"space": space, **({"example_region": region} if region else {})},
        notes="seeds (examples only): original, reference. masks/cells: the stylemap cells "
              "taken from the reference. result_in_photo: the result pasted into your photo "
              "where you painted." + (f" Original: {framed.note()}." if framed else "")
              + f" Reference: {framing_note(ref_framed)}.")
    notes = (framing_note(framed), "Reference: " + framing_note(ref_framed))
    return LocalEditOutputs(shown, edit.mask_picture(size), result, in_photo, ref_shown,
                            faces_gallery(ref_framed), notes, run)


@gpu_task(duration=60, needs=picked)
def run_local_edit(ctx: AppContext, model_id: str | None, editor: dict | None, reference,
                   space: str, framed: FramedPhoto | None = None, ref_face: float | None = 1,
                   ref_plain: bool = False, progress=gr.Progress(track_tqdm=True)
                   ) -> LocalEditOutputs:
    """The painted region of the original from the reference -> (network input, stylemap
    cells taken, edited picture, the edit pasted into your photo where you painted (None
    unless the editor holds your framed photo), the reference's network input, the faces
    found in the reference, the two pictures' framing notes, run). `reference`: a photo file (or a picture), framed as the
    model's training pictures were."""
    return _edit(ctx, model_id, editor, reference, space, framed, ref_face, ref_plain)


LOCAL_EDIT_OUTPUTS = len(LocalEditOutputs._fields)  # the local edit's outputs, run included
quiet_local_edit = quietly(run_local_edit, len(LocalEditOutputs._fields))


def live_local_edit(ctx: AppContext, live: bool, model_id: str | None, editor: dict | None,
                    reference, space: str, framed: FramedPhoto | None = None,
                    ref_face: float | None = 1, ref_plain: bool = False) -> LocalEditOutputs | list:
    """Re-run while painting (when `live`): silent until there is something to edit ("no
    change" is a list of updates, as `quietly` answers while the input is incomplete)."""
    if not live:
        return [gr.update()] * len(LocalEditOutputs._fields)
    return quiet_local_edit(ctx, model_id, editor, reference, space, framed, ref_face, ref_plain)


EditExampleOutputs = NamedTuple("EditExampleOutputs", [("editor", dict), ("reference", np.ndarray),
                                                      *LocalEditOutputs.__annotations__.items()])
EditExampleOutputs.__doc__ = "`run_edit_example` -> original editor, reference, then `LocalEditOutputs`' widgets."


@gpu_task(duration=60, needs=picked)
def run_edit_example(ctx: AppContext, model_id: str | None, truncation: float,
                     seed_original: float | None, seed_reference: float | None, region: str,
                     space: str, progress=gr.Progress(track_tqdm=True)) -> EditExampleOutputs:
    """A seed example: sample two pictures, paint `region` on the first, edit -> (original
    editor, reference, then `run_local_edit`'s outputs)."""
    model = model_for(ctx, model_id)
    seeds = [int(seed_original or 0), int(seed_reference or 0)]
    pictures = to_uint8(sample(model, seeds, float(truncation)))
    remember_drawn(ctx, model_id, pictures[1])  # the reference is a sample: taken as drawn
    editor = painted_editor(pictures[0], example_region(pictures.shape[1], region))
    return EditExampleOutputs(editor, pictures[1], *_edit(ctx, model_id, editor, pictures[1], space,
                                                          seeds=seeds, region=region))


class ReconstructionOutputs(NamedTuple):
    """`run_reconstruction` -> network input, reconstruction, metrics, in photo, faces, notes, run."""
    net_input: np.ndarray
    result: np.ndarray
    metrics: str
    in_photo: np.ndarray
    faces: list
    notes: tuple[str]
    run: Run


@gpu_task(duration=60, needs=picked)
def run_reconstruction(ctx: AppContext, model_id: str | None, picture, face: float | None = 1,
                       plain: bool = False, progress=gr.Progress(track_tqdm=True)
                       ) -> ReconstructionOutputs:
    """Encode and decode a photo -> (network input, reconstruction, metrics text, the
    reconstruction pasted into your photo, the faces found, the framing note, run): how
    faithfully the encoder inverts it."""
    model = model_for(ctx, model_id)
    if picture is None:
        raise UserError("Add a photo (upload one, pick an example or sample it from a seed).")
    framed = frame_picture(ctx, model_id, picture, model.size, face, plain)
    image = pil_to_tensor(framed.aligned.image)
    try:
        rec = reconstruct(model, image)
    except UserError as e:  # LPIPS backbone missing: still show the reconstruction and MSE
        gr.Warning(str(e))
        rec = reconstruct(model, image, with_lpips=False)
    lp = "n/a (LPIPS backbone not available)" if rec.lpips is None else f"{rec.lpips:.3f}"
    text = f"**MSE** {rec.mse:.4f} · **LPIPS-VGG** {lp} ({paper_reconstruction(model_id, model)})"
    shown, result = to_uint8(image)[0], to_uint8(rec.image)[0]
    in_photo = framed.paste(result)
    run = record(ctx, TAB, "reconstruction", {"model": model_id},
                 images={"input": shown, "reconstruction": result, "result_in_photo": in_photo,
                         "photo": framed.photo},
                 arrays={"stylemap": rec.code},
                 settings={"mse": rec.mse, "lpips_vgg": rec.lpips},
                 notes=f"{framing_note(framed)}. result_in_photo: the reconstruction "
                       "pasted back into the photo.")
    return ReconstructionOutputs(shown, result, text, in_photo, faces_gallery(framed),
                                 (framing_note(framed),), run)


class StyleMixOutputs(NamedTuple):
    """`run_style_mix` -> coarse, fine, A's and B's network inputs, their faces, notes, in photo (A), run."""
    coarse: np.ndarray
    fine: np.ndarray
    input_a: np.ndarray
    input_b: np.ndarray
    faces_a: list
    faces_b: list
    notes: tuple[str, str]
    in_photo: np.ndarray
    run: Run


def framed_pair(ctx: AppContext, model_id: str, size: int, a, b, face_a: float | None,
                plain_a: bool, face_b: float | None, plain_b: bool) -> tuple[FramedPhoto, FramedPhoto]:
    """Pictures A and B, both needed, each framed for the model (style mixing, interpolation)."""
    if a is None or b is None:
        raise UserError("Add both pictures A and B (upload or sample them).")
    return (frame_picture(ctx, model_id, a, size, face_a, plain_a),
            frame_picture(ctx, model_id, b, size, face_b, plain_b))


@gpu_task(duration=60, needs=picked)
def run_style_mix(ctx: AppContext, model_id: str | None, a, b, face_a: float | None = 1,
                  plain_a: bool = False, face_b: float | None = 1, plain_b: bool = False
                  ) -> StyleMixOutputs:
    """Photos A and B, each framed for the model -> (coarse mix, fine mix, A's and B's
    network inputs, the faces found in A and in B, their framing notes, the coarse mix (A's
    structure) pasted whole into A's photo, run)."""
    model = model_for(ctx, model_id)
    framed_a, framed_b = framed_pair(ctx, model_id, model.size, a, b, face_a, plain_a, face_b, plain_b)
    first, second = pil_to_tensor(framed_a.aligned.image), pil_to_tensor(framed_b.aligned.image)
    codes = encode(model, torch.cat([first, second]))
    mixed = to_uint8(style_mix(model, first, second, codes=codes))
    in_photo = framed_a.paste(mixed[0])
    run = record(ctx, TAB, "style_mixing", {"model": model_id},
                 images={"a": first, "b": second, "coarse": mixed[0], "fine": mixed[1],
                         "result_in_photo": in_photo, "photo": framed_a.photo},
                 arrays={"stylemaps": codes},
                 notes=f"coarse: A's two {grid_text(model.G.latent_spatial_size)} stylemaps "
                       "on B's finer ones; fine: the reverse. "
                       f"stylemaps: [A, B]. A: {framing_note(framed_a)}. "
                       f"B: {framing_note(framed_b)}. result_in_photo: the coarse "
                       "mix (A's structure) pasted into photo A.")
    notes = ("A: " + framing_note(framed_a), "B: " + framing_note(framed_b))
    return StyleMixOutputs(mixed[0], mixed[1], to_uint8(first)[0], to_uint8(second)[0],
                           faces_gallery(framed_a), faces_gallery(framed_b), notes, in_photo, run)


class InterpolationOutputs(NamedTuple):
    """`run_interpolation` -> result, strip, frames, t, A's and B's net inputs, their faces, notes, run."""
    result: np.ndarray
    strip: list
    frames: list
    t: Any
    input_a: np.ndarray
    input_b: np.ndarray
    faces_a: list
    faces_b: list
    notes: tuple[str, str]
    run: Run


@gpu_task(duration=90, needs=picked)
def run_interpolation(ctx: AppContext, model_id: str | None, a, b, steps: float,
                      face_a: float | None = 1, plain_a: bool = False, face_b: float | None = 1,
                      plain_b: bool = False, progress=gr.Progress(track_tqdm=True)
                      ) -> InterpolationOutputs:
    """Photos A and B, each framed for the model -> (the last frame, strip, frames, t slider
    update, A's and B's network inputs, the faces found in A and B, their framing notes, run):
    their stylemaps mixed in w, t = 0 (A's reconstruction) ... 1 (B's)."""
    model = model_for(ctx, model_id)
    framed_a, framed_b = framed_pair(ctx, model_id, model.size, a, b, face_a, plain_a, face_b, plain_b)
    first, second = pil_to_tensor(framed_a.aligned.image), pil_to_tensor(framed_b.aligned.image)
    progress(0.3, desc="Encoding and rendering frames")
    codes = encode(model, torch.cat([first, second]))
    frames = to_uint8(interpolate(model, first, second, int(steps), codes=codes))
    strip = [(f, f"t = {k / (len(frames) - 1):.2f}") for k, f in enumerate(frames)]
    notes = ("A: " + framing_note(framed_a), "B: " + framing_note(framed_b))
    run = record(ctx, TAB, "interpolation", {"model": model_id},
                 images={"frame": list(frames), "a": first, "b": second},
                 arrays={"stylemaps": codes}, settings={"frames": int(steps)},
                 notes="frame_01 is t = 0 (A's reconstruction), the last frame t = 1 (B's); "
                       "frame k mixes the stylemaps in w: (1 - t) * A + t * B. stylemaps: [A, B]. "
                       + " ".join(notes))
    return InterpolationOutputs(frames[-1], strip, list(frames),
                                gr.update(maximum=len(frames) - 1, value=len(frames) - 1),
                                to_uint8(first)[0], to_uint8(second)[0], faces_gallery(framed_a),
                                faces_gallery(framed_b), notes, run)


class RandomOutputs(NamedTuple):
    """`run_random` -> gallery, run."""
    gallery: list
    run: Run


@gpu_task(duration=60, needs=picked)
def run_random(ctx: AppContext, model_id: str | None, seeds: str, truncation: float,
               progress=gr.Progress(track_tqdm=True)) -> RandomOutputs:
    """"1, 5, 7" -> (gallery of captioned samples, run)."""
    model = model_for(ctx, model_id)
    chosen = parse_seeds(seeds)
    z = model.sample_latents(chosen)
    images = to_uint8(model.render(z, float(truncation)))
    run = record(ctx, TAB, "random", {"model": model_id}, images={"sample": list(images)},
                 arrays={"z": z}, seeds=chosen, settings={"truncation": float(truncation)},
                 notes="sample_k comes from seeds[k - 1].")
    return RandomOutputs([(img, f"seed {s}") for img, s in zip(images, chosen)], run)
