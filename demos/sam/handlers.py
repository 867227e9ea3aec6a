"""SAM's handlers: plain functions of the app context and the widgets' values (what the
tab's events call, and tests call directly), each naming what it needs before it computes
(`core.gpu`) and returning its widgets' values as a NamedTuple.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator, NamedTuple, TypeVar

import gradio as gr
import numpy as np
import torch

from core.context import AppContext
from core.directions import strength_range
from core.errors import UserError
from core.gpu import gpu_task, user_errors
from core.images import heatmap, to_uint8
from core.inversion import (SPACES, Codes, Frame, Inversion, edit, feature_masks, for_loss,
                            optimisation_dtype, stack_masks)
from core.forksafe import Flag
from core.lpips import get_lpips
from core.models import STYLEGAN2_ARCHS
from core.photo_code import PhotoCode, code_from_bundle, prepare_target, run_parts, saved_model, start_w
from core.photo_slot import faces_gallery, frame_input, network_input
from core.recipe import Run, open_run
from core.ui import parse_seeds, record
from demos.sam.engine import (TAB, Session, authors_label, codes_for_edit, companion, default_segmenter,
                              describe_helpers, direction_choices, direction_source, error_maps,
                              framing_settings, generator, make_segments, pad_to_frame, painted_layer_map,
                              photo_images, pick_direction, precision_name, preview, result_in_photo,
                              save_arrays, save_codes, segment_picture, segmenter_ids, session_code,
                              shares, show_map, shown_reconstruction)

PREVIEWS = 10            # previews per inversion
STEP_GPU_SECONDS = 0.12  # estimated GPU time of one inversion step at 1024 px (ZeroGPU's duration)


# ---- what a call needs before it computes (core.gpu) -------------------------------------------
def generator_needs(ctx: AppContext, mid: str | None, *_, **__) -> list:
    """The float32 generator."""
    if not mid:
        raise UserError("Pick a model first.")
    return [(mid, torch.float32)]


def start_needs(ctx: AppContext, mid: str) -> list:
    """An inversion's start (e4e where registered) and its LPIPS backbone."""
    get_lpips("vgg", ctx.device)
    enc = companion(ctx, mid, "encoder")
    return [(enc.id, torch.float32)] if enc else []


def prediction_needs(ctx: AppContext, mid: str | None, picture, segments, tau, est_steps,
                     face=1, plain=False, segmenter: str = "auto", *_, **__) -> list:
    """Step 1: the generator, the predictor (else the single-space runs' start), the segmenter."""
    needs = generator_needs(ctx, mid)
    pred = companion(ctx, mid, "predictor")
    needs += [(pred.id, torch.float32)] if pred else start_needs(ctx, mid)
    kind = default_segmenter(ctx, mid) if segmenter in (None, "", "auto") else segmenter
    if kind != "superpixels":
        needs += [(i, torch.float32) for i in segmenter_ids(ctx, kind) or []]
    return needs


def inversion_needs(ctx: AppContext, mid: str | None, *_, **__) -> list:
    """Step 2: the generator and the start."""
    return generator_needs(ctx, mid) + start_needs(ctx, mid)


def inversion_seconds(ctx: AppContext, mid: str | None, s, editor, n_steps: float,
                      with_baseline: bool, *_, **__) -> float:
    """GPU time of an inversion: its steps (twice with the W+-only run) at the model's size."""
    size = (ctx.registry.get(mid).image_size() if mid else None) or 1024
    per_step = STEP_GPU_SECONDS * max(0.25, (size / 1024) ** 2)
    return 20 + float(n_steps) * per_step * (2 if with_baseline else 1)


def code_needs(ctx: AppContext, file: str | None, code: PhotoCode | None, *_, **__) -> list:
    """A saved run's or the session's photo code: its generator."""
    mid = saved_model(file) if file else (code.model_id if code is not None else None)
    return [(mid, torch.float32)] if mid in ctx.model_ids(STYLEGAN2_ARCHS) else []


def edit_needs(ctx: AppContext, mid: str | None, s, label: str | None, *_, **__) -> list:
    """Step 3: the generator and the authors' direction file picked."""
    files = [e.id for e in ctx.registry.with_role("direction", mid or "")
             if authors_label(e) == label]
    return generator_needs(ctx, mid) + files


# ---- results: an inversion's run for "Download all" (core.ui.record) ----------------------
def inversion_run(ctx: AppContext, mid: str, s: Session, layer_map: torch.Tensor, images: dict,
                  settings: dict) -> Run:
    """The inversion's result for "Download all": pictures (the result in the photo and the
    photo too), masks per space, codes, recipe."""
    space_masks = {name: (layer_map == i).float()[None, None] for i, name in enumerate(SPACES)}
    helpers = {"predictor": getattr(companion(ctx, mid, "predictor"), "id", None),
               "encoder": getattr(companion(ctx, mid, "encoder"), "id", None)}
    return record(ctx, TAB, "invert", {"generator": mid, **helpers},
                  images={"target": to_uint8(s.target)[0], **photo_images(s),
                          **{k: v for k, v in images.items() if v is not None}},
                  masks=space_masks, arrays=save_arrays(s),
                  settings={**settings, "segmenter": s.segmenter, **framing_settings(s),
                            **run_parts(share_code(s))[2]})


# ---- handlers (plain functions of the context and the widgets' values) ---------------------
Outputs = TypeVar("Outputs", bound=tuple)


def unchanged(outputs: type[Outputs]) -> Outputs:
    """A handler's outputs (its NamedTuple) with every widget left as it is (`gr.update()`)."""
    return outputs(*[gr.update()] * len(outputs._fields))


@gpu_task(duration=60, needs=generator_needs)
def sample_photo(ctx: AppContext, mid: str | None, seed: float | None) -> np.ndarray:
    """A GAN sample as the photo (ψ 0.7), cut to the picture area: a photo the model can draw
    (the photo slot remembers it as drawn, so it is used as it is, not aligned)."""
    G = generator(ctx, mid)
    image = G.render(G.sample_latents(parse_seeds(seed, 1)), 0.7)
    content = ctx.registry.content_of(ctx.registry.get(mid))
    if content:  # cut the bars: the photo is the picture area
        bar = (G.size - content[1]) // 2
        image = image[:, :, bar:G.size - bar]
    return to_uint8(image)[0]


class PredictionOutputs(NamedTuple):
    """Step 1's widgets: session, error maps, segments, layer-map editor, status, network input, faces."""
    session: Session
    error_gallery: list
    segments_picture: np.ndarray
    layer_map: dict
    status: str
    net_input: dict
    faces: list


@gpu_task(duration=120, needs=prediction_needs)
def predict_layer_map(ctx: AppContext, mid: str | None, picture, segments: float, tau: float,
                      est_steps: float, face: float | None = 1, plain: bool = False,
                      segmenter: str = "auto", progress=gr.Progress()
                      ) -> PredictionOutputs:
    """Step 1: the photo framed as the model's training pictures were, its segments (`segmenter`:
    "auto", "superpixels" (`segments` of them), "face parser" or "ADE20K"), error maps per
    space and the layer map at τ -> (session, error gallery, segments picture, layer-map
    editor, status line, network input, faces found)."""
    if picture is None:
        raise UserError("Upload a photo (or use a GAN sample) first.")
    G = generator(ctx, mid)
    progress(0.0, desc="Framing the photo")
    framed, from_sample = frame_input(ctx, mid, picture, G.size, face, plain)
    target, frame = prepare_target(framed.aligned)
    s = Session(mid, target, frame, framed=framed, from_sample=from_sample)
    progress(0.1, desc="Segments")
    segmented = make_segments(ctx, s, segmenter, int(segments))
    how = error_maps(ctx, mid, G, s, int(est_steps), progress)
    editor, counts = show_map(s, tau)
    gallery = [(heatmap(s.errors[n], vmin=0), f"{n}: mean {float(s.errors[n].mean()):.3f}") for n in SPACES]
    return PredictionOutputs(
        session=s, error_gallery=gallery, segments_picture=segment_picture(s), layer_map=editor,
        status=f"Segments: {segmented}. Error maps {how}. Layer map: {shares(counts)}.",
        net_input=network_input(framed), faces=faces_gallery(framed))


class TauOutputs(NamedTuple):
    """A new τ's widgets: layer-map editor, status line."""
    layer_map: dict
    status: str | dict


@user_errors
def retune_tau(ctx: AppContext, s: Session | None, tau: float) -> TauOutputs:
    """A new τ on the same error maps (no model): -> (layer-map editor, status line); no
    change before a prediction."""
    if s is None or not s.errors:
        return unchanged(TauOutputs)
    editor, counts = show_map(s, tau)
    return TauOutputs(editor, "Layer map: " + shares(counts))


class StopSignal:
    """A session's Stop button, read by its running inversion.

    Gradio's own cancel waits until the job's current step ends (a thread cannot be
    interrupted, and every step holds the device lock), so Stop is a quick, un-queued event
    that only raises this flag: the request returns at once and the inversion ends after the
    step in progress, keeping its last preview. One per browser session (a `gr.State` makes
    it), shared by the Stop and Invert events; a `core.jobs.Flag`, so an inversion computing
    in a ZeroGPU worker reads it too. A Stop pressed while the inversion still waits in the
    queue stops it as it starts; clicking Invert forgets an older Stop (`arm`)."""

    def __init__(self) -> None:
        self.flag = Flag()

    def arm(self) -> None:
        self.flag.lower()

    def request(self) -> None:
        self.flag.raise_()

    def consume(self) -> bool:
        """Whether Stop was pressed since the last `arm` or `consume` (and forget it)."""
        return self.flag.lower()


def request_stop(stop: StopSignal | None) -> None:
    """The Stop button: flag the session's inversion; returns at once (no model, no queue)."""
    if stop is not None:
        stop.request()


def arm_stop(stop: StopSignal | None) -> None:
    """A click of Invert: a Stop pressed before it no longer counts."""
    if stop is not None:
        stop.arm()


def belongs_to(s: Session, mid: str | None, what: str = "inversion") -> None:
    """A `UserError` naming the session's model when another one is picked."""
    if mid and s.model_id != mid:
        raise UserError(f"This {what} belongs to model {s.model_id}; switch the model back to "
                        f"{s.model_id}, or predict and invert the photo again for {mid}.")


class InversionOutputs(NamedTuple):
    """Step 2's widgets: session, SAM reconstruction, W+ only, target, status, codes file, in photo, photo code, run."""
    session: Session | dict
    reconstruction: np.ndarray | dict
    w_plus_only: np.ndarray | None | dict
    target: np.ndarray | dict
    status: str | dict
    codes_file: str | None | dict
    in_photo: np.ndarray | None | dict
    photo_code: PhotoCode | dict
    run: Run | dict


def stopped(step: int, total: int, kept: Session | None) -> InversionOutputs:
    """The outputs after Stop: nothing changes but the status line, which says which result
    the session keeps."""
    return unchanged(InversionOutputs)._replace(status=stopped_line(step, total, kept))


def stopped_line(step: int, total: int, kept: Session | None) -> str:
    head = f"**Stopped** at step {step}/{total}"
    if kept is not None and kept.codes is not None:
        return f"{head}: the preview of step {kept.codes.steps} and its codes are kept."
    return f"{head}, before its first preview: the previous inversion (if any) is kept."


@gpu_task(duration=inversion_seconds, needs=inversion_needs)
def invert(ctx: AppContext, mid: str | None, s: Session | None, editor: dict | None,
           n_steps: float, with_baseline: bool, stop: StopSignal | None = None,
           progress=gr.Progress(), reduced_precision: bool = False) -> Iterator[InversionOutputs]:
    """Step 2: Adam on W+ and the masked residuals (beside a W+-only run when asked), yielding
    PREVIEWS previews -> (session, reconstruction, W+ only, target, scores, codes file,
    the reconstruction in the photo, the session's photo code, run). The photo code goes out
    with each preview, in the same event, so API clients get it too (a `.then` runs only in
    the browser).

    float32 as the authors; `reduced_precision` (GPU only) runs the generator's pass under
    bfloat16 autocast, and the run's settings say which ran.

    The run works on a copy of the session: the last inversion stays in the session (and
    editable) until this run's first preview replaces it. A generator that hands control
    back after every step ("no change" between previews), so a cancelled job stops within a
    step; `stop` (the Stop button) ends it after the step in progress, keeping the last
    preview."""
    if s is None or s.layer_map is None:
        raise UserError("Predict the layer map first (step 1).")
    belongs_to(s, mid, "layer map")
    if stop is not None and stop.consume():  # pressed while the run waited in the queue
        yield stopped(0, int(n_steps), None)
        return
    G = generator(ctx, mid)
    crop = s.layer_map[s.frame.top:s.frame.bottom]
    layer_map = pad_to_frame(painted_layer_map(crop, editor), s.frame)
    masks = feature_masks(layer_map, G)
    batch = [masks] + ([{k: torch.zeros_like(m) for k, m in masks.items()}] if with_baseline else [])
    progress(0.0, desc="Starting point")
    w0 = start_w(ctx, mid, G, s.target)
    autocast = optimisation_dtype(G.device, bool(reduced_precision))  # None: float32 (the authors')
    run = Inversion(G, s.target, stack_masks(batch), w0.expand(len(batch), -1, -1),
                    get_lpips("vgg", G.device), int(n_steps), s.frame, autocast=autocast)
    every = max(1, run.total // PREVIEWS)
    shown: Session | None = None  # this run's last preview (the session holds it)
    target_pic = to_uint8(s.target)[0]
    while not run.done:
        if stop is not None and stop.consume():
            yield stopped(run.step_index, run.total, shown)
            return
        run.step()
        progress(run.step_index / run.total, desc=f"Step {run.step_index}/{run.total}")
        if run.step_index % every == 0 or run.done:
            if run.diverged:
                raise UserError(f"The inversion diverged at step {run.step_index} (not-a-number "
                                "codes); the last preview and its codes are kept.")
            shown = dataclasses.replace(s, codes=run.codes(0), features=None,
                                        baseline=run.codes(1) if with_baseline else None)
            rec, base, line, in_photo = preview(run, shown, with_baseline)
            result = inversion_run(ctx, mid, shown, layer_map, {"reconstruction": rec, "w_plus_only": base,
                                                                "result_in_photo": in_photo},
                                   {"steps": run.total, "done": run.step_index,
                                    "compare": bool(with_baseline),
                                    "precision": precision_name(autocast)})
            yield InversionOutputs(shown, rec, base, target_pic, line, save_codes(shown), in_photo,
                                   share_code(shown), result)
        else:  # hand control back after every step, so Stop acts within one step
            yield unchanged(InversionOutputs)


def share_code(s: Session | None) -> PhotoCode | dict:
    """The session's inversion as the app's photo code (core.photo_code): the PandA and
    Generate tabs edit and show the same inverted photo without inverting it again."""
    if s is None or s.codes is None:
        return gr.update()
    return session_code(s)


class ContinuedOutputs(NamedTuple):
    """A photo code's widgets: model, session, SAM reconstruction, result in the photo, status,
    the session's photo code (what PandA and Generate edit and show)."""
    model_id: str
    session: Session
    reconstruction: np.ndarray
    in_photo: np.ndarray | None
    status: str
    photo_code: PhotoCode


@gpu_task(duration=60, needs=code_needs)
def continue_from_code(ctx: AppContext, file: str | None, code: PhotoCode | None,
                       progress=gr.Progress()) -> ContinuedOutputs:
    """Edit here a photo code made elsewhere: a saved run (`file`, from "Download all" of
    any StyleGAN2 tab) or the session's -> (model, session, the reconstruction, it in the
    photo, status line, the session's photo code: a loaded run's code reaches PandA and
    Generate too). The codes are not inverted again."""
    if file:
        code = code_from_bundle(open_run(file))
    if code is None:
        raise UserError("No photo code yet: invert a photo here (step 2), or load a saved run.")
    progress(0.2, desc=f"Rendering with {code.model_id}")
    G = generator(ctx, code.model_id)
    target, frame = (prepare_target(code.framed.aligned) if code.framed is not None
                     else (for_loss(code.render(G), Frame()), Frame()))
    s = Session(code.model_id, target, frame,
                codes=Codes(code.w_plus, dict(code.deltas), dict(code.masks)), framed=code.framed)
    picture, in_photo = shown_reconstruction(G, s)
    line = f"Editing the {code.describe()}: pick a direction below (step 3)."
    return ContinuedOutputs(code.model_id, s, picture, in_photo, line, code)


def strength_for(label: str | None, value: float = 0.0) -> dict:
    """A direction's strength slider: the authors' files 0..3 (their multipliers), GANSpace
    ±10 σ, SeFa ±15 (their demos' sliders); the value kept where it still fits."""
    lo, hi = strength_range(direction_source(label))
    return gr.update(minimum=lo, maximum=hi, value=min(max(float(value or 0), lo), hi))


class EditOutputs(NamedTuple):
    """Step 3's widgets: edited (SAM codes), edited (W+-only codes), result in the photo, run."""
    edited: np.ndarray
    w_plus_only: np.ndarray | None
    in_photo: np.ndarray | None
    run: Run


@gpu_task(duration=60, needs=edit_needs)
def edit_photo(ctx: AppContext, mid: str | None, s: Session | None, label: str | None,
               amount: float, layers: str | None = "all") -> EditOutputs:
    """Step 3: the inverted codes moved along a direction (residual regions restored; GANSpace
    and SeFa on the w+ `layers`, e.g. "0-1", "6-13" or "all") -> (edited, the same edit on the
    W+-only codes or None, the edit in the photo, run)."""
    if s is not None and s.codes is not None:
        belongs_to(s, mid)  # before loading a model that cannot read these codes
    G = generator(ctx, mid)
    codes = codes_for_edit(s, G)
    d = pick_direction(ctx, mid, G, label, layers)
    lo, hi = d.strength_range
    if not lo <= float(amount) <= hi:
        raise UserError(f"{d.name} takes strengths from {lo:g} to {hi:g}; got {float(amount):g}.")
    full = edit(G, codes, s.features, d.vector, float(amount))
    out = to_uint8(for_loss(full, s.frame))[0]
    in_photo = result_in_photo(s, full)
    base = None
    if s.baseline is not None:  # W+ only: no residuals, so the plain edited w+
        with torch.no_grad():
            w = s.baseline.w_plus.to(G.device) + float(amount) * d.vector.to(G.device)
            base = to_uint8(for_loss(G.synthesis(w), s.frame))[0]
    images = {"edited": out, "w_plus_only_edited": base, "result_in_photo": in_photo, **photo_images(s)}
    result = record(ctx, TAB, "edit", {"generator": mid},
                    images={k: v for k, v in images.items() if v is not None},
                    arrays={**save_arrays(s), "direction": d.vector.numpy()},
                    settings={"direction": label, "source": d.source, "layers": list(d.layers),
                              "strength": float(amount), **framing_settings(s)})
    return EditOutputs(out, base, in_photo, result)


class ModelOutputs(NamedTuple):
    """A new model's widgets: helpers line, edit direction, status line."""
    helpers: str
    direction: dict
    status: str | dict


def model_changed(ctx: AppContext, mid: str | None, s: Session | None = None) -> ModelOutputs:
    """A new model: its helpers line, its edit directions and, when the
    session's inversion (or layer map) was made with another model, a status line saying
    which (no model is loaded)."""
    choices = direction_choices(ctx, mid)
    status = gr.update()
    if s is not None and mid and s.model_id != mid:
        what = "inversion" if s.codes is not None else "layer map"
        status = (f"This {what} belongs to model {s.model_id}: switch back to it to "
                  f"{'edit' if s.codes is not None else 'invert'}, or predict the layer map again for {mid}.")
    return ModelOutputs(helpers=describe_helpers(ctx, mid),
                        direction=gr.update(choices=choices, value=choices[0] if choices else None),
                        status=status)
