"""PandA's page: the shared factor/seed picker (`_build_picker`), the edit section with your
photo (`_build_edit`), computing factors (`_build_compute`), laid out and wired by
`build_tab(ctx)`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import gradio as gr

from core.context import AppContext
from core.models import STYLEGAN2_ARCHS
from core.photo_code import QUICK_STEPS
from core.photo_slot import photo_slot
from core.ui import TabWiring, labelled_examples, licence_line, photo_code_state, random_seeds, tab_header
from demos.panda.engine import DEFAULT_TRUNCATION, TAB, part_choices
from demos.panda.factors import AUTHORS_LR, AUTHORS_STEPS
from demos.panda.handlers import SOLVERS, add_edit, apply_preset, compute_factors, edit_seeds, select_part, show_parts
from demos.panda.handlers_photo import edit_photo_code, generator_of, open_saved_run, quick_photo_code
from demos.panda.sources import computed_dir, library, licensed_ids, shown_folder

PAPER = "https://arxiv.org/abs/2206.00048"
HOW_IT_WORKS = f"""
At one generator layer *l* the features of every sample form a C×S matrix Z (C channels,
S = H·W positions). PandA factorises them as Z ≈ A (Aᵀ Z P) Pᵀ: the columns of **P** (S×R,
non-negative) are **parts**, spatial regions shared by all samples (eyes, mouth, background);
the columns of **A** (C×C) are **appearances**, directions in channel space (ordered by how much
of the features they explain). An edit adds λ · a_j ⊗ p to Z, where p is the chosen part(s)
summed and scaled to [0, 1] (several such terms are summed, as in the authors' code), then runs
the rest of the generator: only that region changes, in the way appearance j describes. The
saliency map a_jᵀ Z shows where appearance j is active: upsampled with Lanczos, then white where
it is above its mean over the authors' samples 0–499; the masked picture whitens those pixels
(appearance 0 on the published factors: the background). *Refine parts* solves Eq. 6 for each
shown sample (the authors' `refine`, their demo's lr 1e-5 and 100 steps), for samples whose
parts sit elsewhere than the average. Seed t is the authors' sample t (`np.random.seed(t)`,
`randn(1, 512)`) and ψ = 1.0 is their setting, where the annotated edits were tuned.
Paper: [Oldfield et al., ICLR 2023]({PAPER}).

**Where this differs, on purpose.** *Compute factors* minimises the authors' Algorithm 1
objective on all samples at once by L-BFGS-B on the parts, with A Aᵀ solved exactly for them,
instead of their fixed-learning-rate steps (same objective and start; it reaches their
converged value in tens of iterations instead of ~10,000 steps); their stochastic loop with
their learning rate is the other solver choice. Both images are rendered from one resumed
pass that keeps the low-resolution RGB skip, so the "original" is exactly the generator's image
(the authors' genforce resume drops it).
"""
COMPUTE_TEXT = ("The authors' Algorithm 1 objective: A starts at the singular vectors of the channel "
                "scatter (`np.linalg.svd`, their signs), P at U(0, 0.01). **Full gradient** (default): "
                "all samples at once; the parts first solved with A held at its start, then L-BFGS-B on "
                "the parts (P ≥ 0) with A Aᵀ solved exactly for each, until the objective stops falling; "
                "A is scaled to the balance their loop keeps (a deliberate difference: their fixed-lr "
                "steps need ~10,000 iterations to the same objective). **Stochastic**: their published "
                "loop, one fresh sample t per step at a fixed lr (1e-6, 10,000 steps), streamed.")


@dataclass(frozen=True)
class Picker:
    """The widgets both sections read: which factors, which seeds, how much truncation."""
    factor_set: gr.Dropdown
    seed: gr.Textbox
    psi: gr.Slider
    refine: gr.Checkbox


def _build_picker(labels: list[str]) -> Picker:
    with gr.Row():
        factor_set = gr.Dropdown(labels, value=labels[0] if labels else None, label="Factors",
                                 scale=3, allow_custom_value=False)
        seed = gr.Textbox(value="0", label="Seed(s)", scale=1,
                          placeholder="0 or 1, 5, 7 (a batch); seed t = the authors' sample t")
        dice = gr.Button("Random seed", scale=0)
        psi = gr.Slider(0.0, 1.0, value=DEFAULT_TRUNCATION, step=0.05, label="Truncation ψ", scale=2)
        refine = gr.Checkbox(False, label="Refine parts per sample (Eq. 6)", scale=1)
    dice.click(random_seeds, None, seed, queue=False, api_visibility="private")
    return Picker(factor_set, seed, psi, refine)


def _example_rows(labels: list[str]) -> tuple[list[list], list[str]]:
    rows = [[labels[0], "0", 1.0, 0, 50], [labels[0], "1, 2, 3", 1.0, 1, 80]]
    names = ["seed 0 · part 0 · appearance 0 · λ +50", "three seeds in one batch · appearance 1 · λ +80"]
    if len(labels) > 1:
        rows.append([labels[-1], "42", 0.5, 0, 50])
        names.append("another factor set · seed 42 · ψ 0.5")
    return rows, names


def _build_edit(wiring: TabWiring, picker: Picker, labels: list[str]) -> tuple[list, list]:
    """Parts gallery, part/appearance/strength/preset, the edit list, the result pictures, your
    photo, examples -> what showing the parts reads and fills (a new factor set shows them)."""
    parts_gallery = gr.Gallery(label="Parts (click to select)", columns=8, height=200, format="png")
    with gr.Row():
        first = part_choices(labels[0] if labels else None)
        parts = gr.Dropdown(first, value=[0] if first else [], multiselect=True, label="Part(s)", scale=2)
        appearance = gr.Number(value=0, precision=0, minimum=0, label="Appearance", scale=1)
        strength = gr.Slider(-300, 300, value=50, step=1, label="Strength λ", scale=3)
        preset = gr.Dropdown([], label="Annotated edit (the authors')", scale=2)
    with gr.Accordion("Several edits at once", open=False):
        more = gr.Dataframe(value=[], headers=["parts", "appearance", "λ"], datatype=["str", "number", "number"],
                            type="array", column_count=3, interactive=True,
                            label="Edit list: each row is added to the edit above (parts as 1, 8)")
        add = gr.Button("Add the edit above to the list")
    run = gr.Button("Edit", variant="primary")
    with gr.Row():
        original = gr.Image(label="Original", format="png", type="numpy", interactive=False, height=320)
        edited = gr.Image(label="Edited", format="png", type="numpy", interactive=False, height=320)
        diff = gr.Image(label="|Difference|", format="png", type="numpy", interactive=False, height=320)
    with gr.Row():
        sal = gr.Image(label="Appearance saliency (Lanczos, then ≥ its mean over 500 samples)",
                       format="png", type="numpy", interactive=False, height=320)
        masked = gr.Image(label="Masked: white where the appearance is salient (appearance 0: background removed)",
                          format="png", type="numpy", interactive=False, height=320)

    show_inputs = [picker.factor_set, picker.seed, picker.psi, picker.refine]
    show_outputs = [parts_gallery, parts, preset, appearance]
    edit_inputs = [picker.factor_set, picker.seed, picker.psi, parts, appearance, strength, more, picker.refine]
    edit_outputs = [original, edited, diff, sal, masked]
    # a person's pick (not a loaded run's, which keeps its parts) shows the parts, part 0 picked
    wiring.on(picker.factor_set.input, show_parts, show_inputs, show_outputs,
              api_name="panda_parts", record=False)
    wiring.on(picker.seed.submit, show_parts, show_inputs, show_outputs, record=False)
    wiring.on(picker.refine.change, show_parts, show_inputs, show_outputs, record=False)
    wiring.on(run.click, edit_seeds, edit_inputs, edit_outputs, api_name="panda_edit")
    code = photo_code_state()
    with gr.Accordion("Edit your photo", open=True):
        gr.Markdown("Upload your photo (framed for the factors' generator) and press \"Quick code\" "
                    "for a W+ code in seconds (e4e where registered, then a short optimisation), or "
                    "invert it in the SAM tab (finer: W+ plus feature residuals), or load a saved "
                    "run. The parts and appearances above then act on your photo's own pass, so "
                    "λ = 0 is exactly the reconstruction; the result goes back into your photo at "
                    "full resolution.")
        generator = gr.Textbox(generator_of(wiring.ctx, picker.factor_set.value), visible=False)
        with gr.Row():
            with gr.Column():
                slot = photo_slot(wiring, generator, label="Your photo", net_input=False, height=320)
            with gr.Column():
                net_input = gr.Image(label="Network input", format="png", interactive=False, height=320)
                caption = gr.Markdown()
                steps = gr.Slider(0, 1000, value=QUICK_STEPS[0] if wiring.ctx.device.type == "cuda"
                                  else QUICK_STEPS[1], step=10, label="W+ steps after the start")
                quick = gr.Button("Quick code", variant="secondary")
                saved = gr.File(label="Load a run (.zip)", file_types=[".zip"], type="filepath")
        status = gr.Markdown()
        edit_mine = gr.Button("Edit my photo", variant="primary")
        with gr.Row():
            code_original = gr.Image(label="Your photo's reconstruction", format="png", interactive=False, height=320)
            code_edited = gr.Image(label="Your photo edited", format="png", interactive=False, height=320)
            code_diff = gr.Image(label="|Difference| (your photo)", format="png", interactive=False, height=320)
        code_in_photo = gr.Image(label="The edit in your photo", format="png", interactive=False, height=480)
    slot.follow(wiring, generator, net_input, caption)
    slot.clears(code_original, code_edited, code_diff, code_in_photo)
    picker.factor_set.change(functools.partial(generator_of, wiring.ctx), picker.factor_set, generator,
                             api_visibility="private", queue=False)
    wiring.on(quick.click, quick_photo_code, [picker.factor_set, *slot.inputs, steps],
              [code, code_original, status], api_name="panda_quick_code", record=False)
    loaded = wiring.on(saved.upload, open_saved_run, [saved, code],
                       [picker.factor_set, picker.seed, picker.psi, picker.refine, parts, appearance,
                        strength, more, code, status], api_name="panda_load_run", record=False)
    wiring.on(loaded.success, show_parts, show_inputs, [parts_gallery, gr.State(), preset, gr.State()],
              record=False)
    wiring.on(edit_mine.click, edit_photo_code,
              [picker.factor_set, code, parts, appearance, strength, more],
              [code_original, code_edited, code_diff, code_in_photo], api_name="panda_edit_photo")
    wiring.on(strength.release, edit_seeds, edit_inputs, edit_outputs)
    wiring.on(preset.change, apply_preset, [picker.factor_set, preset], [parts, appearance, strength],
              api_name="panda_preset", record=False)
    add.click(add_edit, [more, parts, appearance, strength], more, api_name="panda_add_edit")
    parts_gallery.select(select_part, parts, parts, api_visibility="private")
    if labels:
        rows, names = _example_rows(labels)
        examples = labelled_examples(
            rows, names, [picker.factor_set, picker.seed, picker.psi, appearance, strength],
            label="Examples (part 0 is selected first; then try a preset or other parts)")
        # show the parts (which picks part 0, returns no run), then edit: `wiring.examples`
        # records every step, so the two steps are chained here
        shown = wiring.on(examples.load_input_event.then, show_parts, show_inputs, show_outputs,
                          record=False)
        wiring.on(shown.then, edit_seeds, edit_inputs, edit_outputs)
        wiring.first_look(examples, (show_parts, show_inputs, show_outputs),
                          (edit_seeds, edit_inputs, edit_outputs))
    return show_inputs, show_outputs


def _build_compute(wiring: TabWiring, factor_set: gr.Dropdown, open_: bool, show: tuple[list, list]
                   ) -> None:
    """Factorize a layer of any registered StyleGAN2; the new set joins the Factors list and
    its parts are shown."""
    with gr.Accordion("Compute factors", open=open_):
        gr.Markdown(COMPUTE_TEXT + f" Saved as the authors' `Uc-name_<model>-layer_<l>-rank_<R>.npy` / "
                    f"`Us-...` (e.g. `stylegan2_ffhq1024`) under `{shown_folder(computed_dir())}/<generator id>/`; their "
                    "own files put there are listed too.")
        with gr.Row():
            gen_ids = wiring.ctx.model_ids(STYLEGAN2_ARCHS)
            model = gr.Dropdown(gen_ids, value=gen_ids[0] if gen_ids else None, label="Generator")
            layer = gr.Slider(2, 12, value=5, step=1, label="Layer l")
            rank = gr.Dropdown([4, 8, 16, 32], value=8, label="Parts R_S")
            solver = gr.Radio(list(SOLVERS.items()), value="full", label="Solver")
        with gr.Row():
            samples = gr.Slider(50, 5000, value=1000, step=50, label="Samples (full gradient; HOSVD init)")
            iters = gr.Slider(10, 5000, value=2000, step=10, label="Max iterations (full gradient)")
            steps = gr.Number(value=AUTHORS_STEPS, precision=0, minimum=1, label="Steps (stochastic)")
            lr = gr.Number(value=AUTHORS_LR, minimum=0, label="lr (stochastic)")
        compute = gr.Button("Compute factors")
        status = gr.Markdown()
    computed = wiring.on(compute.click, compute_factors, [model, layer, rank, samples, iters, solver,
                                                          steps, lr],
                         [factor_set, status], api_name="panda_compute", record=False)
    wiring.on(computed.success, show_parts, *show, record=False)


def build_tab(ctx: AppContext) -> None:
    wiring = TabWiring(ctx, TAB)
    labels = library(ctx).labels()
    tab_header("Pick a part (where) and an appearance (what), slide the strength: only that "
               "region changes. Factors are the authors' published ones, or compute your own "
               "for any StyleGAN2 model and layer.",
               HOW_IT_WORKS)
    licence_line(ctx.registry, TAB, licensed_ids(ctx))
    picker = _build_picker(labels)
    show = _build_edit(wiring, picker, labels)
    wiring.download.render()
    _build_compute(wiring, picker.factor_set, open_=not labels, show=show)
