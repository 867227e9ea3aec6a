"""Generate's page: model, seed, truncation (and a class for class-conditional models), the
picture; the session's photo code and saved runs."""
from __future__ import annotations

import gradio as gr

from core.classes import class_choices
from core.context import AppContext
from core.models import GENERATOR_ARCHS
from core.ui import (MAX_SEED, TabWiring, labelled_examples, licence_line, long_dropdown, photo_code_state,
                     random_seeds, tab_header)
from demos.generate.handlers import (NO_CODE, TAB, code_status, generate_image, has_truncation, load_run,
                                     model_controls, show_code, wants_class)

HOW_IT_WORKS = """
A seed fixes the generator's latent vector **z** (drawn on the CPU, so a seed means the same
picture on every machine). StyleGAN2 maps it to a style vector **w** and renders from **w** with
the checkpoint's fixed noise; **truncation** ψ pulls **w** towards the average style (ψ = 1:
full variety, ψ → 0: the "average" image), trading diversity for quality. StyleMapGAN and
ProGAN render from z; BigGAN-deep and SNGAN also take an ImageNet **class** (BigGAN-deep's
truncation scales a truncated-normal z, as its authors do).
Paper: [Karras et al., *Analyzing and Improving the Image Quality of StyleGAN*, CVPR 2020](https://arxiv.org/abs/1912.04958).
"""
DEFAULT_CLASS = 207  # golden retriever: a class BigGAN-deep and the dog+cat SNGAN both draw


def build_tab(ctx: AppContext) -> None:
    ids = ctx.model_ids(GENERATOR_ARCHS)
    wiring = TabWiring(ctx, TAB)
    tab_header("Sample a pretrained generator (StyleGAN2, StyleMapGAN, ProGAN, BigGAN-deep, "
               "SNGAN). Same seed, same image. The first use of a model downloads its weights "
               "from the Hugging Face Hub.", HOW_IT_WORKS)
    licence_line(ctx.registry, TAB, ids)
    first = ids[0] if ids else None
    with gr.Row():
        with gr.Column():
            model = gr.Dropdown(ids, value=first, label="Model")
            with gr.Row():
                seed = gr.Number(value=1, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
                dice = gr.Button("Random seed", scale=0)
            psi = gr.Slider(0.0, 1.5, value=0.7, step=0.05, label="Truncation ψ",
                            visible=has_truncation(ctx, first))
            imagenet_class = long_dropdown(class_choices(), class_choices()[DEFAULT_CLASS],
                                           label="Class (ImageNet)", visible=wants_class(ctx, first))
            run = gr.Button("Generate", variant="primary")
        with gr.Column():
            image = gr.Image(label="Result", format="png", type="numpy", interactive=False)
    examples = labelled_examples(
        [[first, 1, 0.7], [first, 1, 0.2], [first, 1, 1.0], [first, 42, 0.7]],
        ["seed 1 · ψ 0.7 (the usual trade-off)", "seed 1 · ψ 0.2 (close to the average image)",
         "seed 1 · ψ 1.0 (full variety, more artefacts)", "seed 42 · ψ 0.7"],
        [model, seed, psi], label="Examples: one seed, three truncations")
    wiring.download.render()
    code = photo_code_state()
    with gr.Accordion("Your photo code · load a saved run", open=False):
        gr.Markdown("A photo inverted in the SAM tab (or given a quick code in PandA) is a code "
                    "of one StyleGAN2 model; show its picture here, pasted back into the photo, "
                    "and download it (latents.npz: W+ and the feature residuals). A saved run "
                    "(.zip) loads back: a generated picture's settings, or its photo code.")
        status = gr.Markdown(NO_CODE)
        with gr.Row():
            show = gr.Button("Show the photo code")
            saved = gr.File(label="Load a run (.zip)", file_types=[".zip"], type="filepath")
        in_photo = gr.Image(label="Result in your photo", format="png", interactive=False)

    inputs = [model, seed, psi, imagenet_class]
    wiring.on(run.click, generate_image, inputs, image, api_name="generate")
    wiring.on(model.change, model_controls, model, [psi, imagenet_class], record=False, queue=False)
    wiring.on(show.click, show_code, [code], [image, in_photo], api_name="generate_show_code")
    wiring.on(saved.upload, load_run, [saved, code],
              [model, seed, psi, image, code, status, in_photo, imagenet_class],
              api_name="generate_load_run")
    code.change(code_status, code, status, api_visibility="private", queue=False)
    wiring.examples(examples, (generate_image, inputs, [image]))
    dice.click(random_seeds, None, seed, api_visibility="private", queue=False)
