"""The Collage tab's page: `build_tab(ctx)` lays out one builder per sub-tab (Compose with
its fine-tuning, Inpaint, Variation map, Compose vs blend) and wires each button to its
handler (`handlers`) under a public api_name."""
from __future__ import annotations

import functools
from typing import Any, Sequence

import gradio as gr

from core.context import AppContext
from core.photo_slot import photo_slot, slot_line
from core.ui import (GPU_LANE, MAX_SEED, TabWiring, labelled_examples, licence_line, seed_picker,
                     shift_sliders, tab_header)
from demos.collage.domain import domain_photos, shift_span, shown_in_photo
from demos.collage.finetune import FINETUNE_LR, FINETUNE_STEPS
from demos.collage.handlers import (MAX_PARTS, TAB, compare_blends, compose_collage,
                                    compose_example, compute_variation_map, finetune_regressor,
                                    forget_finetuning, inpaint, inpaint_random_hints,
                                    live_compose, sample_picture, shift_ranges, use_photo)
from demos.collage.independence import PART_CHOICES, TABLE1_REPEATS, TABLE1_SAMPLES
from demos.collage.refine import LBFGS_CPU_STEPS, LBFGS_STEPS

PAPER = "https://arxiv.org/abs/2103.10426"
HOW_IT_WORKS = f"""
A regressor network **E** was trained to predict, from an image whose pixels are only partly
known (RGB of the known pixels + a mask of which ones are known), the latent code (W+ or z) of a
**frozen** GAN generator **G** whose picture matches the known pixels. Trained only on the
generator's own samples with random blob masks, it learns to *fill in* what is missing in a way
the GAN finds plausible. That makes collages easy:

* **Compose**: paste parts of several pictures into one canvas (later parts on top), give E the
  canvas and the union of the part masks; G renders one coherent picture (x_rec = G(E(∪ m_i ⊗ x_i,
  ∪ m_i)), the paper's Eq. 4). The known region is re-rendered too: colours and alignment
  are harmonised rather than pasted. The number shown is the masked L1 between the result and
  the collage on the known pixels (the paper's Eq. 5 loss), in [-1, 1] units, on G's
  unclamped output as the authors' losses see it.
* **Inpaint**: erase a region; E imagines it. The regressor is deterministic, so the
  extra completions come from sparse **hints**: a few random blobs of other generated pictures
  placed inside the hole (our choice; the paper shows one completion per mask).
* **Refine** (optional, off by default): the paper's "Enc+LBFGS", as the authors' code runs
  it: their L-BFGS (`FullBatchLBFGS`) on E's code with their loss, (1 - 0.5) masked L1 + 0.5
  masked LPIPS on the known pixels + 0.25 MSE(E(G(w), mask), E(collage, mask)) (the
  encoder-consistency term), 3000 iterations by default on a GPU (minutes), a short run on a
  CPU.
* **Fine-tune the regressor on the base** (for a real photo): the authors' 30 Adam steps (lr
  5e-5) on a copy of E so that it reconstructs that photo better; Compose then uses the copy,
  in your session only. Their identity term for faces is left out (no face-identity network).
* **Variation map**: replace the painted part with N = 20 other samples, regenerate each and
  take the per-pixel standard deviation: the paper's test of how independently parts are
  composed (Sec. 4.4). Its number s_c is the share of that variation outside the part (Table
  1), averaged over repeats; Table 1 cuts faces into parts with a face-parsing network, here
  the part is the region you paint, or for faces the eyes, nose, mouth or skin outlined by
  face landmarks on each repeat's face.
* **Compose vs blend** (Sec. 4.3, Eqs. 6-8): the same two pictures composed three ways: pixel
  blending G(E(a x1 + (1 - a) x2)), latent blending G(a E(x1) + (1 - a) E(x2)) and regression
  G(E(m x2 + (1 - m) x1)): only regression changes the part alone.

* **Your photo**: Compose (as the base) and Inpaint take a photo framed as the domain's
  training pictures were (faces aligned with the FFHQ or CelebA-HQ recipe, cars letterboxed,
  churches, horses and rooms centre-cropped); the result is also pasted back into the photo at
  its full resolution, with a feathered edge ("Result in your photo").

Paper: [Chai, Wulff, Isola, *Using latent space regression to analyze and leverage
compositionality in GANs*, ICLR 2021]({PAPER}). StyleGAN2 domains regress W+ (one style
vector per layer); ProGAN domains (churches, living rooms, CelebA-HQ faces) regress the
Gaussian z itself, as in the paper.
"""
REFINE_NOTE = ("Enc+LBFGS follows the authors' `invert_lbfgs`: their loss and weights, their "
               "`FullBatchLBFGS` (first step lr 1 along the negative gradient, history 10, "
               "weak-Wolfe line search of at most 10 trials), every iteration run, "
               "from E's code of the collage. The former Adam refinement is gone: it was not "
               "clearly better for interactive use, and interactive composing needs no "
               "refinement at all.")


def _picture(wiring: TabWiring, model_id: gr.Dropdown, label: str,
             default_seed: int) -> tuple[gr.ImageEditor, gr.Number]:
    """A paintable picture with a "Sample from seed" under it."""
    editor = gr.ImageEditor(label=label, format="png", type="numpy", layers=False,
                            brush=gr.Brush(colors=["#ffffff"], default_size=24))
    return editor, seed_picker(wiring, editor, sample_picture, [model_id], default_seed)


def _photo_input(wiring: TabWiring, model_id: gr.Dropdown, editor: gr.ImageEditor,
                 use_label: str, api_name: str) -> gr.State:
    """"Your photo" (the app's photo slot: framed for the domain on upload, faces found,
    network input): "Use ..." puts the network input into `editor` and keeps the FramedPhoto
    in a session state, returned (the handlers paste results back into it)."""
    ctx = wiring.ctx
    with gr.Accordion("Your photo", open=True):
        slot_line(ctx, model_id)
        photos = domain_photos(ctx, ctx.model_ids("regressor"))  # the dropdown's domains
        with gr.Row():
            with gr.Column():
                slot = photo_slot(wiring, model_id, net_input=False, examples=photos)
            with gr.Column():
                network_input = gr.Image(label="Network input", format="png", interactive=False)
                caption = gr.Markdown()
        use = gr.Button(use_label, variant="secondary")
    slot.follow(wiring, model_id, network_input, caption)
    kept = gr.State(None)
    slot.clears(kept)
    inputs, outputs = [model_id, *slot.inputs], [editor, network_input, slot.faces, kept]
    wiring.on(use.click, use_photo, inputs, outputs, record=False, api_name=api_name)
    if slot.examples is not None:
        wiring.on(slot.examples.load_input_event.then, use_photo, inputs, outputs, record=False)
    return kept


def _show_in_photo(wiring: TabWiring, event: Any, in_photo: gr.Image, operations: Sequence[str]) -> None:
    """After a run of this sub-tab: its "Result in your photo" (nothing when it did not start
    from the photo). Read from the run, so the picture and "Download all" always agree."""
    event.success(functools.partial(shown_in_photo, operations=tuple(operations)),
                  wiring.download.state, in_photo, api_visibility="private", queue=False)


def _in_photo_output() -> gr.Image:
    return gr.Image(label="Result in your photo", format="png", interactive=False)


def _build_compose(wiring: TabWiring, model_id: gr.Dropdown, span: int) -> None:
    with gr.Row():
        with gr.Column():
            base, base_seed = _picture(wiring, model_id,
                                       "Base: paint what to keep (nothing painted: all of it)", 1)
        parts, part_seeds, dxs, dys = [], [], [], []
        for i in range(MAX_PARTS):
            with gr.Column():
                part, part_seed = _picture(wiring, model_id, f"Part {i + 1}: paint the region to take",
                                           2 + i)
                dx, dy = shift_sliders(span)
            parts.append(part)
            part_seeds.append(part_seed)
            dxs.append(dx)
            dys.append(dy)
    kept = _photo_input(wiring, model_id, base, "Use as base", api_name="collage_photo_base")
    tuned = _build_finetune(wiring, model_id, base)
    on_gpu = wiring.ctx.device.type == "cuda"
    with gr.Row():
        live = gr.Checkbox(value=True, label="Update while painting")
        do_refine = gr.Checkbox(value=False, label="Refine: Enc+LBFGS (the authors' latent optimisation)")
        refine_steps = gr.Slider(1, LBFGS_STEPS, value=LBFGS_STEPS if on_gpu else LBFGS_CPU_STEPS,
                                 step=1, label="LBFGS iterations")
        button = gr.Button("Compose", variant="primary")
    gr.Markdown(REFINE_NOTE + ("" if on_gpu else f" **No GPU here**: the default is a short run of "
                               f"{LBFGS_CPU_STEPS} iterations (seconds each); the authors' is "
                               f"{LBFGS_STEPS}."))
    with gr.Row():
        collage_out = gr.Image(label="Collage (unknown: grey)", format="png", interactive=False)
        mask_out = gr.Image(label="Known pixels (union mask)", format="png", interactive=False,
                            image_mode="L")
        result_out = gr.Image(label="Result G(E(collage, mask))", format="png", interactive=False)
        in_photo = _in_photo_output()
    info = gr.Markdown()
    first = model_id.value
    example_inputs = [model_id, base_seed, part_seeds[0], dxs[0], dys[0]]
    examples = labelled_examples(
        [[first, 1, 2, 0, 0], [first, 1, 2, span // 4, 0], [first, 5, 6, 0, span // 8]],
        ["centre of sample 2 pasted on sample 1",
         "the same part, moved right by a quarter of the frame",
         "centre of sample 6 on sample 5, moved down"],
        example_inputs,
        label="Example collages (samples by seed; part 1's centre painted, all of the base kept)")

    inputs = [model_id, base, do_refine, refine_steps] + parts + dxs + dys + [kept, tuned]
    outputs = [collage_out, mask_out, result_out, info]
    wiring.on(model_id.change, shift_ranges, model_id, dxs + dys, record=False, queue=False)
    events = [wiring.on(button.click, compose_collage, inputs, outputs, api_name="collage_compose"),
              wiring.on(examples.load_input_event.then, compose_example, example_inputs,
                        [base, parts[0]] + outputs)]
    wiring.first_look(examples, (compose_example, example_inputs, [base, parts[0]] + outputs))
    for trigger in [base.change] + [p.change for p in parts] + [d.release for d in dxs + dys]:
        events.append(wiring.on(trigger, live_compose, [live] + inputs, outputs,
                                concurrency_id=GPU_LANE, trigger_mode="always_last",
                                show_progress="minimal"))
    for event in events:
        _show_in_photo(wiring, event, in_photo, ["compose"])


def _build_finetune(wiring: TabWiring, model_id: gr.Dropdown, base: gr.ImageEditor) -> gr.State:
    """"Fine-tune on the base": the authors' finetune_and_edit on the base picture; the tuned
    copy is kept in a session state (returned) that Compose reads."""
    tuned = gr.State(None)
    with gr.Accordion("Fine-tune the regressor on the base (for a real photo)", open=False):
        gr.Markdown(f"The authors' `finetune_and_edit`: {FINETUNE_STEPS} Adam steps (lr "
                    f"{FINETUNE_LR:g}) on a copy of the regressor so that it reconstructs this "
                    "picture better (MSE + LPIPS under random training masks); Compose then "
                    "uses the copy, in your session only. Their identity term for faces is left "
                    "out: no face-identity network is registered.")
        with gr.Row():
            steps = gr.Slider(1, 100, value=FINETUNE_STEPS, step=1, label="Fine-tuning steps")
            start = gr.Button("Fine-tune on the base", variant="secondary")
            forget = gr.Button("Back to the shared regressor")
        with gr.Row():
            before = gr.Image(label="Before: G(E(base))", format="png", interactive=False)
            after = gr.Image(label="After: G(E_tuned(base))", format="png", interactive=False)
        info = gr.Markdown()
    wiring.on(start.click, finetune_regressor, [model_id, base, steps], [before, after, info, tuned],
              api_name="collage_finetune")
    wiring.on(forget.click, forget_finetuning, None, [tuned, info], record=False, queue=False,
              api_name="collage_forget_finetuning")
    return tuned


def _build_compare(wiring: TabWiring, model_id: gr.Dropdown) -> None:
    with gr.Row():
        base, _ = _picture(wiring, model_id, "x1: the base", 11)
        part, _ = _picture(wiring, model_id, "x2: paint the part m to take", 12)
    with gr.Row():
        alpha = gr.Slider(0, 1, value=0.7, step=0.05,
                          label="a: the base's weight in both blends (the paper: 0.7 for a mouth)")
        run = gr.Button("Compare", variant="primary")
    inputs = gr.Gallery(label="Inputs", columns=2, format="png")
    results = gr.Gallery(label="Pixel blending · latent blending · regression", columns=3, format="png")
    wiring.on(run.click, compare_blends, [model_id, base, part, alpha], [inputs, results],
              api_name="collage_compare")


def _build_inpaint(wiring: TabWiring, model_id: gr.Dropdown) -> None:
    with gr.Row():
        with gr.Column():
            picture, _ = _picture(wiring, model_id, "Picture: paint the region to erase", 7)
            with gr.Row():
                n = gr.Slider(1, 8, value=4, step=1, label="Completions")
                seed = gr.Number(value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Hint seed")
            with gr.Row():
                run = gr.Button("Inpaint", variant="primary")
                hints = gr.Button("Random hints (the training masks)")
        with gr.Column():
            masked = gr.Image(label="What E sees (unknown: grey)", format="png", interactive=False)
            in_photo = _in_photo_output()
    kept = _photo_input(wiring, model_id, picture, "Use as the picture",
                        api_name="collage_photo_inpaint")
    gallery = gr.Gallery(label="Completions", columns=4, format="png")
    inputs, outputs = [model_id, picture, n, seed, kept], [masked, gallery]
    for button, handler, api_name in ((run, inpaint, "collage_inpaint"),
                                      (hints, inpaint_random_hints, "collage_random_hints")):
        event = wiring.on(button.click, handler, inputs, outputs, api_name=api_name)
        _show_in_photo(wiring, event, in_photo, ["inpaint", "random_hints"])


def _build_variation(wiring: TabWiring, model_id: gr.Dropdown) -> None:
    with gr.Row():
        with gr.Column():
            picture, _ = _picture(wiring, model_id, "Picture: paint one part (eyes, mouth, a window...)", 9)
            with gr.Row():
                n = gr.Slider(2, 40, value=TABLE1_SAMPLES, step=1, label="Samples N (Table 1: 20)")
                repeats = gr.Slider(1, TABLE1_REPEATS, value=1, step=1,
                                    label=f"Repeats (Table 1: {TABLE1_REPEATS})")
                seed = gr.Number(value=100, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
            part_choice = gr.Radio(list(PART_CHOICES), value=PART_CHOICES[0], label=(
                "Part (eyes, nose, mouth, skin: from face landmarks of each repeat's face)"))
            run = gr.Button("Compute variation map", variant="primary")
        sigma_map = gr.Image(label="Per-pixel standard deviation", format="png", interactive=False)
    info = gr.Markdown()
    wiring.on(run.click, compute_variation_map, [model_id, picture, n, seed, repeats, part_choice],
              [sigma_map, info],
              api_name="collage_variation")


def build_tab(ctx: AppContext) -> None:
    ids = ctx.model_ids("regressor")
    wiring = TabWiring(ctx, TAB)
    tab_header("Cut parts out of several pictures, paste them into one canvas, and let the GAN "
               "turn the collage into one coherent picture, in a single pass.",
               HOW_IT_WORKS)
    generators = [ctx.registry.get(i).generator for i in ids]
    licence_line(ctx.registry, TAB, ids + [g for g in generators if g in ctx.registry.ids()])
    model_id = gr.Dropdown(ids, value=ids[0] if ids else None, label="Domain (regressor + generator)")
    with gr.Tabs():
        with gr.Tab("Compose"):
            _build_compose(wiring, model_id, shift_span(ctx, model_id.value))
        with gr.Tab("Inpaint"):
            _build_inpaint(wiring, model_id)
        with gr.Tab("Variation map"):
            _build_variation(wiring, model_id)
        with gr.Tab("Compose vs blend"):
            _build_compare(wiring, model_id)
    wiring.download.render()
