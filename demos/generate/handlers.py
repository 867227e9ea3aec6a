"""Generate's handlers: a picture from a seed (any family), the session's photo code shown,
a saved run loaded back."""
from __future__ import annotations

from typing import NamedTuple

import gradio as gr
import numpy as np

from core.classes import class_choices, parse_class
from core.context import AppContext
from core.errors import UserError
from core.gpu import gpu_task
from core.images import to_uint8
from core.models import GENERATOR_ARCHS, STYLEGAN2_ARCHS, is_conditional, truncates
from core.photo_code import PhotoCode, code_from_bundle, run_parts, saved_model
from core.recipe import Run, open_run
from core.ui import MAX_SEED, record
from demos.generate.engine import generate

TAB = "generate"


# ---- handlers (plain functions of the context and the widgets' values) ---------------------
def picked(ctx: AppContext, model_id: str | None, *_, **__) -> list[str]:
    """What a call with this model needs before it computes (`core.gpu`): the model."""
    if not model_id:
        raise UserError("Pick a model first.")
    return [model_id]


def code_model(ctx: AppContext, code: PhotoCode | None, *_, **__) -> list[str]:
    """The model a photo code belongs to."""
    return [code.model_id] if code is not None else []


def run_model(ctx: AppContext, file: str | None, code: PhotoCode | None, *_, **__) -> list[str]:
    """The model a saved run renders with."""
    model_id = saved_model(file)
    return [model_id] if model_id in ctx.model_ids(GENERATOR_ARCHS) else []


def wants_class(ctx: AppContext, model_id: str | None) -> bool:
    """Whether the model draws a class it is given (BigGAN-deep, SNGAN): the class picker shows."""
    return bool(model_id) and is_conditional(ctx.registry.get(model_id).arch)


def has_truncation(ctx: AppContext, model_id: str | None) -> bool:
    return not model_id or truncates(ctx.registry.get(model_id).arch)


class ModelControls(NamedTuple):
    """A new model's widgets: the truncation slider, the class picker."""
    truncation: dict
    imagenet_class: dict


def model_controls(ctx: AppContext, model_id: str | None) -> ModelControls:
    """A new model: ψ only where its family has a truncation trick, a class picker only for a
    class-conditional one."""
    return ModelControls(gr.update(visible=has_truncation(ctx, model_id)),
                         gr.update(visible=wants_class(ctx, model_id)))


class GenerateOutputs(NamedTuple):
    """To Result and the Download-all run."""
    image: np.ndarray
    run: Run


@gpu_task(duration=60, needs=picked)
def generate_image(ctx: AppContext, model_id: str | None, seed: float | None, truncation: float,
                   class_text: str | int | None = None, progress=gr.Progress(track_tqdm=True)
                   ) -> GenerateOutputs:
    """One picture from a seed (and, for a class-conditional model, the ImageNet class typed
    or picked) -> (picture, run for "Download all")."""
    return _generate(ctx, model_id, seed, truncation, progress, class_text)


def _generate(ctx: AppContext, model_id: str | None, seed: float | None, truncation: float,
              progress, class_text: str | int | None = None) -> GenerateOutputs:
    if not model_id:
        raise UserError("Pick a model first.")
    if seed is None or not 0 <= int(seed) <= MAX_SEED:
        raise UserError(f"The seed must be a whole number between 0 and {MAX_SEED}.")
    imagenet_class = parse_class(class_text) if wants_class(ctx, model_id) else None
    truncation = float(truncation) if has_truncation(ctx, model_id) else 1.0  # ProGAN, SNGAN: none
    progress(0.0, desc=f"Loading {model_id}")
    G = ctx.model(model_id)
    progress(0.5, desc="Rendering")
    images, arrays = generate(G, [int(seed)], float(truncation), imagenet_class)
    result = to_uint8(images)[0]
    settings = {"truncation": float(truncation)}
    if imagenet_class is not None:
        settings["imagenet_class"] = imagenet_class
    run = record(ctx, TAB, "generate", {"generator": model_id}, images={"result": result},
                 arrays=arrays, seeds=[int(seed)], settings=settings)
    return GenerateOutputs(result, run)


NO_CODE = ("No photo code yet: invert a photo in the SAM tab, give it a quick code in PandA, "
           "or load a saved run that holds one.")


def code_status(code: PhotoCode | None) -> str:
    return f"Session: {code.describe()}." if code else NO_CODE


class ShowCodeOutputs(NamedTuple):
    """To Result, "Result in your photo" and the Download-all run."""
    image: np.ndarray
    in_photo: np.ndarray | None
    run: Run


@gpu_task(duration=60, needs=code_model)
def show_code(ctx: AppContext, code: PhotoCode | None, progress=gr.Progress()
              ) -> ShowCodeOutputs:
    """The session's photo code rendered by its own model -> (picture, in the photo, run)."""
    return _render_code(ctx, code, progress)


def _render_code(ctx: AppContext, code: PhotoCode | None, progress) -> ShowCodeOutputs:
    if code is None:
        raise UserError(NO_CODE)
    progress(0.2, desc=f"Rendering with {code.model_id}")
    picture = to_uint8(code.render(ctx.model(code.model_id)).float().clamp(-1, 1))[0]
    in_photo = code.in_photo(picture)
    images, arrays, settings = run_parts(code)
    run = record(ctx, TAB, "photo code", {"generator": code.model_id},
                 images={"result": picture, "result_in_photo": in_photo, **images},
                 arrays=arrays, settings=settings)
    return ShowCodeOutputs(picture, in_photo, run)


class LoadRunOutputs(NamedTuple):
    """To Model, Seed, Truncation ψ, Result, the photo-code state, its status line,
    "Result in your photo", the class picker and the Download-all run."""
    model: str | dict
    seed: int | dict
    truncation: float | dict
    image: np.ndarray
    code: PhotoCode | None
    status: str
    in_photo: np.ndarray | None
    imagenet_class: str | dict
    run: Run


@gpu_task(duration=60, needs=run_model)
def load_run(ctx: AppContext, file: str | None, code: PhotoCode | None,
             progress=gr.Progress()) -> LoadRunOutputs:
    """A saved run (.zip from "Download all") back: a generated picture's model, seed and
    truncation (rendered again, bit for bit), and any photo code it holds into the session
    -> (model, seed, truncation, picture, code, status, in photo, run)."""
    bundle = open_run(file)
    recipe = bundle.recipe
    model_id = (recipe.get("model_id") or "")
    settings = recipe.get("settings") or {}
    if settings.get("photo_code"):
        code = code_from_bundle(bundle)
        if code.model_id not in ctx.model_ids(STYLEGAN2_ARCHS):  # photo codes are StyleGAN2's
            raise UserError(f"This run's photo code belongs to model {code.model_id!r}, which is "
                            f"not registered here.")
        shown = _render_code(ctx, code, progress)
        return LoadRunOutputs(code.model_id, gr.update(), gr.update(), shown.image, code,
                              code_status(code), shown.in_photo, gr.update(), shown.run)
    if recipe.get("tab") != TAB or not recipe.get("seeds"):
        raise UserError(f"This run was saved by the {recipe.get('tab', '?')!r} tab: load it "
                        f"there, or load a Generate run or one that holds a photo code.")
    seed, truncation = recipe["seeds"][0], settings.get("truncation")
    if truncation is None:
        raise UserError("This Generate run's recipe.json does not say its truncation ψ "
                        "(settings 'truncation').")
    imagenet_class = settings.get("imagenet_class")
    generated = _generate(ctx, model_id, seed, truncation, progress, imagenet_class)
    picked_class = gr.update() if imagenet_class is None else class_choices()[int(imagenet_class)]
    return LoadRunOutputs(model_id, seed, truncation, generated.image, code, code_status(code),
                          None, picked_class, generated.run)
