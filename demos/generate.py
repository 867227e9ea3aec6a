"""Generate tab: sample a StyleGAN2 model from a seed, with truncation.

The entry point for every StyleGAN2-based tab: it shows what a model produces and gets
its weights into the cache (with the download's progress) before anyone edits.
"""
from __future__ import annotations

import random

import gradio as gr
import torch

from core.context import AppContext
from core.device import randn
from core.images import to_uint8
from core.models.stylegan2 import StyleGAN2Generator, truncate
from core.ui import (MAX_SEED, DownloadAll, gpu, labelled_examples, licence_line, run_examples,
                     tab_header, user_errors)

HOW_IT_WORKS = """
A seed fixes a 512-d Gaussian vector **z**; the mapping network turns it into a style vector
**w**; the synthesis network renders the image from **w** with the checkpoint's fixed noise, so
the same seed always gives the same picture. **Truncation** ψ pulls **w** towards the average
style (ψ = 1: full variety, ψ → 0: the "average" image), trading diversity for quality.
Paper: [Karras et al., *Analyzing and Improving the Image Quality of StyleGAN*, CVPR 2020](https://arxiv.org/abs/1912.04958).
"""


def seed_latents(seeds: list[int], dim: int, device: torch.device) -> torch.Tensor:
    """One z per seed, identical on every device: [len(seeds), dim]."""
    return torch.cat([randn((1, dim), seed) for seed in seeds]).to(device)


@torch.inference_mode()
def generate_with_latents(G: StyleGAN2Generator, seeds: list[int], truncation: float = 1.0
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeds -> (images [B, 3, S, S] in [-1, 1], z [B, style_dim], w [B, style_dim] after
    truncation), in one batched pass."""
    z = seed_latents(seeds, G.style_dim, G.device)
    w = G.mapping(z)
    if truncation != 1.0:
        w = truncate(w, G.truncation_center().to(w.dtype), truncation)
    return G.synthesis(G.w_plus(w)).float(), z, w


def generate(G: StyleGAN2Generator, seeds: list[int], truncation: float = 1.0) -> torch.Tensor:
    """Seeds -> images [B, 3, S, S] in [-1, 1], in one batched pass."""
    return generate_with_latents(G, seeds, truncation)[0]


def build_tab(ctx: AppContext) -> None:
    ids = ctx.model_ids("stylegan2")
    tab_header("Sample a pretrained StyleGAN2. Same seed, same image. The first use of a "
               "model downloads its weights (100-150 MB) from the Hugging Face Hub.",
               HOW_IT_WORKS)
    licence_line(ctx.registry, "generate", ids)
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
    download = DownloadAll(ctx, "generate")
    download.render()

    @gpu(duration=60)
    @user_errors
    def on_generate(model_id: str, seed_value: float, truncation: float,
                    progress=gr.Progress(track_tqdm=True)):
        if not model_id:
            raise gr.Error("Pick a model first.")
        if seed_value is None or not 0 <= int(seed_value) <= MAX_SEED:
            raise gr.Error(f"The seed must be a whole number between 0 and {MAX_SEED}.")
        progress(0.0, desc=f"Loading {model_id}")
        G = ctx.model(model_id)
        progress(0.5, desc="Rendering")
        images, z, w = generate_with_latents(G, [int(seed_value)], float(truncation))
        result = to_uint8(images)[0]
        run_record = download.run("generate", {"generator": model_id}, images={"result": result},
                                  arrays={"z": z, "w": w}, seeds=[int(seed_value)],
                                  settings={"truncation": float(truncation)})
        return result, run_record

    outputs = [image, download.state]
    run.click(on_generate, [model, seed, psi], outputs, api_name="generate", concurrency_id="gpu")
    run_examples(examples, (on_generate, [model, seed, psi], outputs))
    dice.click(lambda: random.randint(0, MAX_SEED), None, seed, api_name="random_seed",
               queue=False)
