"""Generate tab: sample a StyleGAN2 model from a seed, with truncation.

The entry point for every StyleGAN2-based tab: it shows what a model produces and gets
its weights into the cache (with the download's progress) before anyone edits.
"""
from __future__ import annotations

import random

import gradio as gr
import numpy as np
import torch

from core.context import AppContext
from core.errors import UserError
from core.images import to_uint8
from core.models.stylegan2 import StyleGAN2Generator
from core.recipe import Run
from core.ui import (MAX_SEED, TabWiring, gpu_task, labelled_examples, licence_line, record,
                     tab_header)

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
@gpu_task(duration=60)
def generate_image(ctx: AppContext, model_id: str | None, seed: float | None, truncation: float,
                   progress=gr.Progress(track_tqdm=True)) -> tuple[np.ndarray, Run]:
    """One picture from a seed -> (picture, run for "Download all")."""
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
    return result, run


def random_seed() -> int:
    return random.randint(0, MAX_SEED)


# ---- UI ------------------------------------------------------------------------------------
def build_tab(ctx: AppContext) -> None:
    ids = ctx.model_ids("stylegan2")
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
                dice = gr.Button("🎲 Random seed", scale=0)
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

    inputs = [model, seed, psi]
    wiring.on(run.click, generate_image, inputs, image, api_name="generate")
    wiring.examples(examples, (generate_image, inputs, [image]))
    dice.click(random_seed, None, seed, api_name="random_seed", queue=False)
