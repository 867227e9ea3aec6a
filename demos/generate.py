"""Generate tab: sample a StyleGAN2 model from a seed, with truncation.

The entry point for every StyleGAN2-based tab: it shows what a model produces and gets
its weights into the cache (with the download's progress) before anyone edits.
"""
from __future__ import annotations

from typing import NamedTuple

import gradio as gr
import numpy as np
import torch

from core.context import AppContext
from core.errors import UserError
from core.images import to_uint8
from core.models import STYLEGAN2_ARCHS
from core.models.stylegan2 import StyleGAN2Generator
from core.photo_code import (PhotoCode, code_from_bundle, photo_code_state, run_parts,
                             saved_model)
from core.recipe import Run, open_run
from core.gpu import gpu_task
from core.ui import MAX_SEED, TabWiring, labelled_examples, licence_line, random_seeds, record, tab_header

HOW_IT_WORKS = """
A seed fixes a 512-d Gaussian vector **z**; the mapping network turns it into a style vector
**w**; the synthesis network renders the image from **w** with the checkpoint's fixed noise, so
the same seed always gives the same picture. **Truncation** ψ pulls **w** towards the average
style (ψ = 1: full variety, ψ → 0: the "average" image), trading diversity for quality.
Paper: [Karras et al., *Analyzing and Improving the Image Quality of StyleGAN*, CVPR 2020](https://arxiv.org/abs/1912.04958).
"""


TAB = "generate"


# ---- engine --------------------------------------------------------------------------------
@torch.inference_mode()
def generate_with_latents(G: StyleGAN2Generator, seeds: list[int], truncation: float = 1.0
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeds -> (images [B, 3, S, S] in [-1, 1], z [B, style_dim], w [B, style_dim] after
    truncation), in one batched pass (the same pictures as `G.render(G.sample_latents(seeds))`)."""
    z = G.sample_latents(seeds)
    w = G.truncated_w(z, truncation)
    return G.synthesis(G.w_plus(w)).float().clamp(-1, 1), z, w


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
    return [model_id] if model_id in ctx.model_ids(STYLEGAN2_ARCHS) else []


class GenerateOutputs(NamedTuple):
    """To Result and the Download-all run."""
    image: np.ndarray
    run: Run


@gpu_task(duration=60, needs=picked)
def generate_image(ctx: AppContext, model_id: str | None, seed: float | None, truncation: float,
                   progress=gr.Progress(track_tqdm=True)) -> GenerateOutputs:
    """One picture from a seed -> (picture, run for "Download all")."""
    return _generate(ctx, model_id, seed, truncation, progress)


def _generate(ctx: AppContext, model_id: str | None, seed: float | None, truncation: float,
              progress) -> GenerateOutputs:
    if not model_id:
        raise UserError("Pick a model first.")
    if seed is None or not 0 <= int(seed) <= MAX_SEED:
        raise UserError(f"The seed must be a whole number between 0 and {MAX_SEED}.")
    progress(0.0, desc=f"Loading {model_id}")
    G = ctx.model(model_id)
    progress(0.5, desc="Rendering")
    images, z, w = generate_with_latents(G, [int(seed)], float(truncation))
    result = to_uint8(images)[0]
    run = record(ctx, TAB, "generate", {"generator": model_id}, images={"result": result},
                 arrays={"z": z, "w": w}, seeds=[int(seed)],
                 settings={"truncation": float(truncation)})
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
    "Result in your photo" and the Download-all run."""
    model: str | dict
    seed: int | dict
    truncation: float | dict
    image: np.ndarray
    code: PhotoCode | None
    status: str
    in_photo: np.ndarray | None
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
        if code.model_id not in ctx.model_ids(STYLEGAN2_ARCHS):
            raise UserError(f"This run's photo code belongs to model {code.model_id!r}, which is "
                            f"not registered here.")
        shown = _render_code(ctx, code, progress)
        return LoadRunOutputs(code.model_id, gr.update(), gr.update(), shown.image, code,
                              code_status(code), shown.in_photo, shown.run)
    if recipe.get("tab") != TAB or not recipe.get("seeds"):
        raise UserError(f"This run was saved by the {recipe.get('tab', '?')!r} tab: load it "
                        f"there, or load a Generate run or one that holds a photo code.")
    seed, truncation = recipe["seeds"][0], settings.get("truncation")
    if truncation is None:
        raise UserError("This Generate run's recipe.json does not say its truncation ψ "
                        "(settings 'truncation').")
    generated = _generate(ctx, model_id, seed, truncation, progress)
    return LoadRunOutputs(model_id, seed, truncation, generated.image, code, code_status(code),
                          None, generated.run)


# ---- UI ------------------------------------------------------------------------------------
def build_tab(ctx: AppContext) -> None:
    ids = ctx.model_ids(STYLEGAN2_ARCHS)
    wiring = TabWiring(ctx, TAB)
    tab_header("Sample a pretrained StyleGAN2. Same seed, same image. The first use of a "
               "model downloads its weights (100-150 MB) from the Hugging Face Hub.",
               HOW_IT_WORKS)
    licence_line(ctx.registry, TAB, ids)
    with gr.Row():
        with gr.Column():
            model = gr.Dropdown(ids, value=ids[0] if ids else None, label="Model")
            with gr.Row():
                seed = gr.Number(value=1, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
                dice = gr.Button("Random seed", scale=0)
            psi = gr.Slider(0.0, 1.5, value=0.7, step=0.05, label="Truncation ψ")
            run = gr.Button("Generate", variant="primary")
        with gr.Column():
            image = gr.Image(label="Result", format="png", type="numpy", interactive=False)
    first = ids[0] if ids else None
    examples = labelled_examples(
        [[first, 1, 0.7], [first, 1, 0.2], [first, 1, 1.0], [first, 42, 0.7]],
        ["seed 1 · ψ 0.7 (the usual trade-off)", "seed 1 · ψ 0.2 (close to the average image)",
         "seed 1 · ψ 1.0 (full variety, more artefacts)", "seed 42 · ψ 0.7"],
        [model, seed, psi], label="Examples: one seed, three truncations")
    wiring.download.render()
    code = photo_code_state(ctx)
    with gr.Accordion("Your photo code · load a saved run", open=False):
        gr.Markdown("A photo inverted in the SAM tab (or given a quick code in PandA) is a code "
                    "of one model; "
                    "show its picture here, pasted back into the photo, and download it "
                    "(latents.npz: W+ and the feature residuals). A saved run (.zip) loads "
                    "back: a generated picture's settings, or its photo code.")
        status = gr.Markdown(NO_CODE)
        with gr.Row():
            show = gr.Button("Show the photo code")
            saved = gr.File(label="Load a run (.zip)", file_types=[".zip"], type="filepath")
        in_photo = gr.Image(label="Result in your photo", format="png", interactive=False)

    inputs = [model, seed, psi]
    wiring.on(run.click, generate_image, inputs, image, api_name="generate")
    wiring.on(show.click, show_code, [code], [image, in_photo], api_name="generate_show_code")
    wiring.on(saved.upload, load_run, [saved, code],
              [model, seed, psi, image, code, status, in_photo], api_name="generate_load_run")
    code.change(code_status, code, status, api_visibility="private", queue=False)
    wiring.examples(examples, (generate_image, inputs, [image]))
    dice.click(random_seeds, None, seed, api_visibility="private", queue=False)
