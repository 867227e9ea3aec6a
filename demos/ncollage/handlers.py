"""Neural Collage's handlers: the base picture, references, label collage and feature blend
(the photo's are in `handlers_photo`).

Module-level functions of the app context and the widgets' values, so tests call them
directly; those with several outputs return a NamedTuple of them in the wiring's order
(`BaseOutputs`, `LabelOutputs`, ...). A person's pictures travel in the typed states of
`demos.ncollage.state`.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import gradio as gr
import numpy as np
import torch

from core.classes import class_offset, model_class, parse_class
from core.context import AppContext
from core.errors import UserError
from core.gpu import gpu_task
from core.images import editor_image_and_mask, masks_by_colour, to_uint8
from core.recipe import Run
from core.ui import quietly, record, shift_range
from demos.ncollage.blend import Blend, feature_blend, feature_points, layer_shifts
from demos.ncollage.engine import (PALETTE, Labels, Picture, is_conditional, label_collage, layer_preset,
                                   picture_from_seed, render, soften, weights_picture)
from demos.ncollage.state import BaseState, Edit, Reference

TAB = "ncollage"
MAX_REFS = 2
MAX_POINTS = 16  # per-layer weight sliders (BigGAN-deep 512: 16 feature points)
DEFAULT_FRAME = 256  # the shift sliders' span while no model is picked
SWEEP = (0.25, 0.5, 0.75, 1.0)  # the intensity sweep's frames (Fig. 9)


def load(ctx: AppContext, model_id: str | None, dtype: torch.dtype | None = None) -> torch.nn.Module:
    """The picked generator (SNGAN, BigGAN-deep or StyleGAN2), loaded once by the context."""
    if not model_id:
        raise UserError("Pick a model first.")
    return ctx.model(model_id, dtype)


def picked(ctx: AppContext, model_id: str | None, *_, **__) -> list[str]:
    """What a call needs before it computes (`core.gpu`): the generator."""
    if not model_id:
        raise UserError("Pick a model first.")
    return [model_id]

def frame_size(ctx: AppContext, model_id: str | None) -> int:
    """The model's picture size from its registry entry (nothing loaded), for the shift
    sliders; DEFAULT_FRAME while none is picked or the entry does not say."""
    return (ctx.registry.get(model_id).image_size() if model_id else None) or DEFAULT_FRAME


ShiftOutputs = NamedTuple("ShiftOutputs", [*[(f"dx_{r + 1}", dict) for r in range(MAX_REFS)],
                                           *[(f"dy_{r + 1}", dict) for r in range(MAX_REFS)]])
ShiftOutputs.__doc__ = "`shift_ranges`' outputs: the references' right shifts, then their down shifts."


def shift_ranges(ctx: AppContext, model_id: str | None) -> ShiftOutputs:
    """The references' shift sliders follow the picked model's frame."""
    return ShiftOutputs(*shift_range(frame_size(ctx, model_id), len(ShiftOutputs._fields)))


def weight_sliders(G: torch.nn.Module) -> list[dict]:
    """The per-layer blending weights for G's feature points (the authors' demo: the first
    layer at 1, the others at 0); unused sliders hidden."""
    points = feature_points(G)
    updates = [gr.update(visible=True, label=f"Weight at {label}", value=1.0 if i == 0 else 0.0)
               for i, (label, _) in enumerate(points[:MAX_POINTS])]
    return updates + [gr.update(visible=False, value=0.0)] * (MAX_POINTS - len(updates))


def seeded(ctx: AppContext, model_id: str | None, class_text: str | None, seed: float | None,
           truncation: float) -> tuple[torch.nn.Module, Picture, np.ndarray]:
    """(model, picture, its pixels) for a seed (and class: SNGAN and BigGAN-deep)."""
    G = load(ctx, model_id)
    index = parse_class(class_text) if is_conditional(G) else None
    pic = picture_from_seed(G, int(seed or 0), index, float(truncation))
    return G, pic, to_uint8(render(G, [pic]))[0]


def latents(pic: Picture, prefix: str = "") -> dict[str, torch.Tensor]:
    """A picture's latents for latents.npz: z and class vector, or w+ (StyleGAN2)."""
    if pic.classes is None:
        return {f"{prefix}w_plus": pic.latent}
    return {f"{prefix}z": pic.latent, f"{prefix}class_vector": pic.classes}


def base_settings(state: BaseState) -> dict:
    return {"base_class": state.class_index, "truncation": state.truncation,
            "base_is_projected_photo": state.photo is not None}


def base_seeds(state: BaseState) -> list[int]:
    return [state.seed] if state.seed is not None else []


def current(ctx: AppContext, state: BaseState | None, model_id: str | None
            ) -> tuple[torch.nn.Module, Picture, float]:
    """(model, base picture, truncation), refusing a base made with another model (its
    latents would not fit)."""
    if not state:
        raise UserError("Render a base picture (or project a photo) first.")
    if state.model != model_id:
        raise UserError(f"The base picture was made with {state.model}: render it again "
                        f"for {model_id}.")
    return load(ctx, model_id), state.picture, state.truncation


BaseOutputs = NamedTuple("BaseOutputs", [
    ("state", BaseState), ("image", np.ndarray), ("editor", np.ndarray),
    *[(f"weight_{i}", dict) for i in range(MAX_POINTS)], ("run", Run)])
BaseOutputs.__doc__ = ("`render_base`'s outputs: base state, base picture, label editor, the "
                       "MAX_POINTS per-layer weight sliders, run.")


@gpu_task(duration=60, needs=picked)
def render_base(ctx: AppContext, model_id: str | None, class_text: str | None, seed: float | None,
                truncation: float, progress=gr.Progress(track_tqdm=True)) -> BaseOutputs:
    """The base picture from a seed (and class) -> (base state, picture, the same picture
    for the label editor, MAX_POINTS per-layer weight sliders, run)."""
    G, pic, image = seeded(ctx, model_id, class_text, seed, truncation)
    state = BaseState(model_id, pic, float(truncation), seed=int(seed or 0),
                      class_index=parse_class(class_text) if is_conditional(G) else None)
    run = record(ctx, TAB, "render", {"generator": model_id}, images={"result": image},
                 arrays=latents(pic), seeds=[int(seed or 0)], settings=base_settings(state))
    return BaseOutputs(state, image, image, *weight_sliders(G), run)


class ReferenceOutputs(NamedTuple):
    """`render_reference`'s outputs: the reference's state, its editor."""
    state: Reference
    editor: np.ndarray


@gpu_task(duration=60, needs=picked)
def render_reference(ctx: AppContext, model_id: str | None, class_text: str | None,
                     seed: float | None, truncation: float,
                     progress=gr.Progress(track_tqdm=True)) -> ReferenceOutputs:
    """A reference picture for the feature blend -> (its state, its picture for painting).
    It keeps the truncation it is rendered with."""
    G, pic, image = seeded(ctx, model_id, class_text, seed, truncation)
    state = Reference(model_id, pic, int(seed or 0),
                      parse_class(class_text) if is_conditional(G) else None)
    return ReferenceOutputs(state, image)


def read_labels(G: torch.nn.Module, editor: dict | None, layers: str, soft: float,
                classes_and_strengths: Sequence) -> tuple[Labels, list[int], torch.Tensor]:
    """The label collage's widgets -> (Labels at the picture's size, the brush colours used,
    their painted masks)."""
    size = G.size
    regions = masks_by_colour(editor, PALETTE, size)
    used = [k for k in range(len(PALETTE)) if regions[k].sum() > 0]
    if not used:
        raise UserError("Paint a region first (one brush colour per target class).")
    classes = [model_class(G, parse_class(classes_and_strengths[k])) for k in used]
    strengths = [float(classes_and_strengths[len(PALETTE) + k]) for k in used]
    soft_regions = soften(regions[used], float(soft) * size / 256)
    return Labels(soft_regions, classes, strengths, layer_preset(G, layers)), used, regions


def edit_of(image: torch.Tensor, changed: torch.Tensor, what: str) -> Edit:
    """The last edit, kept for "paste back": its picture and where it changed [1, 1, S, S]."""
    return Edit(image.cpu(), (changed > 0.1).float().cpu(), what)


class LabelOutputs(NamedTuple):
    """`apply_labels`' (and `live_labels`') outputs: before, after, class map, last edit, run."""
    before: np.ndarray
    after: np.ndarray
    class_map: np.ndarray
    edit: Edit
    run: Run


class SweepOutputs(NamedTuple):
    """`sweep_labels`' outputs: before, after, class map, last edit, intensity gallery, run."""
    before: np.ndarray
    after: np.ndarray
    class_map: np.ndarray
    edit: Edit
    gallery: list
    run: Run


def _labels(ctx: AppContext, model_id: str | None, state: BaseState | None, editor: dict | None,
            layers: str, soft: float, classes_and_strengths: Sequence, sweep: bool
            ) -> LabelOutputs | SweepOutputs:
    """The label collage (both buttons) -> (before, after, class map, edit, run[, frames])."""
    G, pic, trunc = current(ctx, state, model_id)
    if not is_conditional(G):
        raise UserError("Label collage needs a class-conditional model: pick an SNGAN or "
                        "BigGAN-deep model.")
    labels, used, regions = read_labels(G, editor, layers, soft, classes_and_strengths)
    frames = SWEEP if sweep else (1.0,)
    before, edits, weights = label_collage(G, pic, labels.regions, labels.classes,
                                           labels.intensities, trunc, labels.points, frames)
    edit = edit_of(edits[-1:], 1 - weights[:1], "label collage")
    colours = [PALETTE[k] for k in used]
    class_map = weights_picture(weights, G.size, colours)
    before_u8, after_u8 = to_uint8(before)[0], to_uint8(edits[-1:])[0]
    offset = class_offset(G)
    run = record(
        ctx, TAB, "label_sweep" if sweep else "label_collage", {"generator": model_id},
        images={"before": before_u8, "after": after_u8, "class_map": class_map,
                **({"intensity": list(to_uint8(edits))} if sweep else {})},
        masks={**{f"painted_{k + 1}": regions[k] for k in used},
               **{f"soft_{k + 1}": labels.regions[i] for i, k in enumerate(used)}},
        arrays={**latents(pic), "class_weights": weights}, seeds=base_seeds(state),
        settings={**base_settings(state), "colours": colours,
                  "classes": [c + offset for c in labels.classes],
                  "model_classes": list(labels.classes), "intensities": list(labels.intensities),
                  "layers": layers, "scbn_points": list(labels.points),
                  "soft_edge_px_at_256": float(soft),
                  **({"sweep_intensities": list(frames)} if sweep else {})},
        notes="masks painted_k / soft_k: brush colour k as painted and softened; class_weights: "
              "[base, region 1, ...] at the picture's size (resized by the model to every "
              "batch norm); classes: ImageNet indices (model_classes: the model's own).")
    if not sweep:
        return LabelOutputs(before_u8, after_u8, class_map, edit, run)
    shown = to_uint8(torch.cat([before, edits]))
    gallery = [(img, f"intensity {t:g}") for img, t in zip(shown, (0.0, *frames))]
    return SweepOutputs(before_u8, after_u8, class_map, edit, gallery, run)


@gpu_task(duration=60, needs=picked)
def apply_labels(ctx: AppContext, model_id: str | None, state: BaseState | None, editor: dict | None,
                 layers: str, soft: float, *classes_and_strengths: str | float
                 ) -> LabelOutputs:
    """Paint classes onto the base picture (sCBN) -> (before, after, class map, the edit
    kept for "paste back", run). `classes_and_strengths`: one class per palette colour (12),
    then one intensity per palette colour."""
    return _labels(ctx, model_id, state, editor, layers, soft, classes_and_strengths, sweep=False)


@gpu_task(duration=60, needs=picked)
def sweep_labels(ctx: AppContext, model_id: str | None, state: BaseState | None, editor: dict | None,
                 layers: str, soft: float, *classes_and_strengths: str | float) -> SweepOutputs:
    """`apply_labels` at growing intensities (Fig. 9) -> the same outputs plus a gallery
    (intensity 0, 0.25, ..., 1), then the run."""
    return _labels(ctx, model_id, state, editor, layers, soft, classes_and_strengths, sweep=True)


_quiet_labels = quietly(apply_labels, len(LabelOutputs._fields))


def live_labels(ctx: AppContext, live: bool, model_id: str | None, state: BaseState | None,
                editor: dict | None, layers: str, soft: float, *classes_and_strengths: str | float
                ) -> LabelOutputs | list[dict]:
    """`apply_labels` on every stroke while "Update while painting" is on; an incomplete
    input (nothing painted yet) leaves the outputs as they are instead of an error (a list of
    "no change" updates, as `quietly` answers, one per `LabelOutputs` field)."""
    if not live:
        return [gr.update()] * len(LabelOutputs._fields)
    return _quiet_labels(ctx, model_id, state, editor, layers, soft, *classes_and_strengths)


N_LABEL_INPUTS = 3 + 2 * len(PALETTE)  # editor, layers, soft, classes, intensities


class BlendOutputs(NamedTuple):
    """`blend_features`' outputs: before, after, blend map, frames, shift note, last edit, run."""
    before: np.ndarray
    after: np.ndarray
    blend_map: np.ndarray
    gallery: list
    shift_note: str
    edit: Edit
    run: Run


@gpu_task(duration=120, needs=picked)
def blend_features(ctx: AppContext, model_id: str | None, state: BaseState | None, frames: float,
                   base_class_refs: bool, with_labels: bool, *values: Any) -> BlendOutputs:
    """Transplant the references' features into the base picture (Eq. 3, the authors' demo)
    -> (before, after, blend map, frames gallery, the shift each layer gets, the edit kept
    for "paste back", run). `values`: the label collage's inputs (editor, layers, soft, 12
    classes, 12 intensities; used when `with_labels`), MAX_POINTS per-layer weights, then
    MAX_REFS reference states, their editors, right shifts and down shifts; a reference
    without a painted region is left out."""
    G, pic, trunc = current(ctx, state, model_id)
    size = G.size
    label_values, rest = values[:N_LABEL_INPUTS], values[N_LABEL_INPUTS:]
    layer_weights, refs_and_shifts = rest[:MAX_POINTS], rest[MAX_POINTS:]
    points = [p for _, p in feature_points(G)][:MAX_POINTS]
    weights = {p: float(w or 0) for p, w in zip(points, layer_weights) if float(w or 0) > 0}
    n = MAX_REFS
    states, editors = refs_and_shifts[:n], refs_and_shifts[n:2 * n]
    shifts_x, shifts_y = refs_and_shifts[2 * n:3 * n], refs_and_shifts[3 * n:]
    refs, regions, shifts, used = [], [], [], []
    for r in range(n):
        if not states[r]:
            continue
        if states[r].model != model_id:
            raise UserError(f"Reference {r + 1} was made with {states[r].model}: render it again.")
        _, region = editor_image_and_mask(editors[r], size, required=False)
        if region.sum() == 0:
            gr.Warning(f"Reference {r + 1} has no painted region: it is left out.")
            continue
        refs.append(states[r].picture)
        used.append(r)
        regions.append(region[0])
        shifts.append((float(shifts_x[r] or 0), float(shifts_y[r] or 0)))
    if not refs:
        raise UserError("Render a reference and paint the region to take from it.")
    labels = None
    if with_labels:
        if not is_conditional(G):
            raise UserError("The label collage needs an SNGAN or BigGAN-deep model.")
        labels = read_labels(G, label_values[0], label_values[1], label_values[2], label_values[3:])[0]
    regions_t = torch.stack(regions)
    steps = max(1, int(frames or 1))
    before, outs, ref_images = feature_blend(G, pic, refs, regions_t, shifts, weights, trunc,
                                             steps, bool(base_class_refs), labels)
    landed = Blend(regions_t, shifts, weights, torch.ones(1)).landed(size)
    blend_map = weights_picture(torch.cat([1 - landed.sum(0, keepdim=True), landed]), size,
                                PALETTE[:len(refs)])
    before_u8, after_u8 = to_uint8(before)[0], to_uint8(outs[-1:])[0]
    shown = to_uint8(outs)
    gallery = [(img, f"frame {f + 1}/{steps}") for f, img in enumerate(shown)]
    shift_note = "\n".join(f"- reference {r + 1}: " + "; ".join(layer_shifts(G, shifts[i], sorted(weights)))
                           for i, r in enumerate(used))
    changed = (outs[-1:] - before).abs().amax(1, keepdim=True).cpu()
    edit = edit_of(outs[-1:], (changed > 2 / 255).float(), "feature blend")
    ref_seeds = [states[r].seed for r in used]
    run = record(
        ctx, TAB, "feature_blend", {"generator": model_id},
        images={"before": before_u8, "after": after_u8, "blend_map": blend_map, "frames": list(shown),
                **{f"reference_{r + 1}": ref_images[i:i + 1] for i, r in enumerate(used)}},
        masks={f"reference_{r + 1}": regions_t[i] for i, r in enumerate(used)},
        arrays={**latents(pic, "base_"),
                **{k: v for i, r in enumerate(used) for k, v in latents(refs[i], f"reference_{r + 1}_").items()},
                "landed_weights": landed},
        seeds=base_seeds(state) + [s for s in ref_seeds if s is not None],
        settings={**base_settings(state), "layer_weights": {str(p): w for p, w in weights.items()},
                  "frames": steps, "references_use_base_class": bool(base_class_refs),
                  "with_label_collage": labels is not None,
                  **({"scbn_points": list(labels.points), "label_classes": list(labels.classes)}
                     if labels is not None else {}),
                  "shifts_px": {f"reference_{r + 1}": list(shifts[i]) for i, r in enumerate(used)},
                  "reference_seeds": {f"reference_{r + 1}": states[r].seed for r in used},
                  "reference_truncations": {f"reference_{r + 1}": refs[i].truncation
                                            for i, r in enumerate(used)},
                  "reference_classes": {f"reference_{r + 1}": states[r].class_index for r in used}},
        notes="seeds: base, then the references used; masks/reference_k: the region taken "
              "from reference k (before its shift); frames: the blending weights at "
              "1/F, 2/F, ..., 1 of each layer's weight.")
    return BlendOutputs(before_u8, after_u8, blend_map, gallery, shift_note, edit, run)
