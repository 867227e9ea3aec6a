"""SAM's page: `TAB`, `build_tab(ctx)` and one builder per step (layer map, invert, edit),
which lay out the widgets and wire them to the handlers.
"""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import torch

from core.context import AppContext
from core.directions import strength_range
from core.images import photos_for
from core.inversion import SPACES, STEPS, TAU, optimisation_dtype
from core.models import STYLEGAN2_ARCHS
from core.photo_slot import photo_slot, slot_line
from core.ui import TabWiring, licence_line, photo_code_state, quietly, tab_header
from demos.sam.engine import (MIN_SIZE, PALETTE, SEGMENTER_ROLES, TAB, describe_helpers, direction_choices,
                              direction_source)
from demos.sam.handlers import (StopSignal, arm_stop, continue_from_code, edit_photo, invert, model_changed,
                                predict_layer_map, request_stop, retune_tau, sample_photo, strength_for)

PAPER = "https://arxiv.org/abs/2206.08357"
CPU_STEPS = 60           # the short run offered on a CPU
ESTIMATE_STEPS = (100, 15)  # single-space runs of the fallback layer map (GPU, CPU)
LAYER_PRESETS = ["all", "0-1", "2-5", "6-13"]  # SeFa's paper: pose, shape, texture (StyleGAN)
SEGMENTERS = ("auto", "superpixels", "face parser", "ADE20K")
REDUCED_LABEL = "Reduced precision (bfloat16 autocast; faster on a GPU, not the authors' float32)"


HOW_IT_WORKS = f"""
**Spaces.** A photo is inverted into the generator's per-layer latent **W+** *and* into
residuals **dF4, dF6, dF8, dF10** added to the features of layers 4, 6, 8 and 10 (16, 32, 64,
128 px), each only inside its mask. W+ shapes every pixel; the residuals fix what W+ cannot
reach. The later the layer, the better the reconstruction and the less an edit can change.

**Which region uses which space.** The authors' *invertibility predictor* (a DeepLab-v3+
network) predicts, for every space, the LPIPS error a photo would have if inverted into that
space alone. Per segment, the most editable space whose mean predicted error is ≤ τ wins
(order W+, F4, F6, F8, F10; none passes → F10). Lower τ → more regions in later layers →
closer reconstruction, weaker edits. The masks are resized to each layer with a Lanczos
filter (soft edges).

**Optimisation.** Adam (lr 0.05, NVIDIA's warm-up and cosine ramp, 1001 steps) on
w+ and the residuals, with loss = MSE + LPIPS(VGG) at 256 px + 5·Σ mean(dF²)
+ 0.001·Σₙ‖wₙ − w₀‖ + 10⁻⁸·Mahalanobis(LeakyReLU(w, 5)) (a Gaussian prior on w).
**Precision**: float32, as the authors (their generator loads NVIDIA's TF pickles with no
layer in half precision). On a GPU, *Reduced precision* runs the generator's pass under
bfloat16 autocast instead (faster; the losses, Adam's state and the codes stay float32);
the run's settings record which. On a CPU everything is float32.

**Editing.** w+ + s·d on every layer; after layer k the features inside F_k's mask are put
back to the inverted ones, so a region inverted in F_k only takes the edit through the layers
after k.

**Your photo.** It is framed as the model's training pictures were: faces found and aligned
with the FFHQ (or CelebA-HQ) recipe, cars letterboxed between black bars, other models
centre-cropped; the picture the network sees is shown. Every result is also put back into
your photo at its full resolution (the frame warped back, feathered edges, pixels outside it
unchanged). A GAN sample is already in the model's frame: it is used as drawn.

**Segments.** As the authors: faces with their face parser (BiSeNet; all face parts, skin
and neck are one segment), cars with CSAIL's ADE20K scene parser (road and earth merged into
floor, vans and trucks into cars, ...), run on the framed picture at the model's resolution;
a segment is a (merged) class. Other models get colour/position superpixels ("Segmenter" picks
another).

**What differs here** (said so you can compare): fixed noise (the authors redraw noise at each
step) so results are reproducible; cats are segmented with the ADE20K parser, not the
authors' detectron2 COCO panoptic model (not ported here); segment means are taken at the
loss frame (256 px wide) rather than at the photo's size; you can paint the layer map
yourself; without the authors' predictor for a model, the error maps are *measured*
by short single-space inversions (slower, and short runs overestimate errors: raise τ);
edits keep the residuals in the pass, so strength 0 is exactly the reconstruction; on a CPU
the default is a short run ({CPU_STEPS} steps), because one step of the full method takes
seconds there. Paper: [Parmar et al., CVPR 2022]({PAPER}).
"""


def legend() -> str:
    return "Layer map colours: " + " · ".join(
        f"<span style='background:{c};color:white;padding:1px 6px;border-radius:3px'>{s}</span>"
        for s, c in zip(SPACES, PALETTE))


def precision_line(device: torch.device) -> str:
    """What runs in which precision on this device (shown under the header)."""
    if device.type != "cuda":
        return (f"**No GPU here**: everything runs in float32 and the inversion defaults to a short "
                f"run of {CPU_STEPS} steps (a few seconds per step at 256 px, much more at 1024 px); "
                f"the paper uses {STEPS}.")
    if optimisation_dtype(device, reduced=True) is None:
        return ("**GPU precision**: float32, as the authors (this GPU has no bfloat16, so "
                "*Reduced precision* changes nothing).")
    return ("**GPU precision**: float32, as the authors. *Reduced precision* (step 2) runs the "
            "generator's pass in bfloat16 autocast instead: faster, not the authors' numbers; "
            "the losses, Adam's state and the codes stay float32.")


# ---- the page: the header, then one builder per step -----------------------------------
@dataclass(frozen=True)
class Shared:
    """What the step builders share: the wiring, the model dropdown, the session state, the
    status line (rendered under the inversion's pictures, written by steps 1 and 2), the codes
    file (rendered under the edits) and whether a GPU runs the tab (the step defaults)."""
    wiring: TabWiring
    model_id: gr.Dropdown
    session: gr.State
    metrics: gr.Markdown
    codes_file: gr.File
    on_gpu: bool


def build_tab(ctx: AppContext) -> None:
    ids = [i for i in ctx.model_ids(STYLEGAN2_ARCHS)  # a size not in the config: `generator` checks
           if (ctx.registry.get(i).image_size() or MIN_SIZE) >= MIN_SIZE]
    wiring = TabWiring(ctx, TAB)
    on_gpu = ctx.device.type == "cuda"
    tab_header("Invert a photo the GAN cannot draw exactly: regions that W+ reconstructs stay in W+ "
               "(fully editable); the rest get residuals in feature layers. Then edit with sliders.",
               HOW_IT_WORKS)
    helpers = [e.id for mid in ids for role in ("predictor", "encoder", "direction")
               for e in ctx.registry.with_role(role, mid)]
    helpers += [e.id for roles in SEGMENTER_ROLES.values() for role in roles for e in ctx.registry.with_role(role)]
    licence_line(ctx.registry, TAB, ids + helpers)
    gr.Markdown(precision_line(ctx.device))
    with gr.Row():
        model_id = gr.Dropdown(ids, value=ids[0] if ids else None, label="Model (StyleGAN2, 256 px or more)", scale=3)
        helper_note = gr.Markdown(describe_helpers(ctx, ids[0]) if ids else "")
    shared = Shared(wiring, model_id, gr.State(None), gr.Markdown(render=False),
                    gr.File(label="Inverted codes (.npz: W+, F4..F10 and their masks)", render=False),
                    on_gpu)
    layer_editor = _build_layer_map(shared)
    _build_invert(shared, layer_editor)
    direction = _build_edit(shared, ids[0] if ids else None)
    shared.codes_file.render()
    wiring.download.render()
    wiring.on(model_id.change, model_changed, [model_id, shared.session],
              [helper_note, direction, shared.metrics], record=False)


def _build_layer_map(shared: Shared) -> gr.ImageEditor:
    """The photo (upload, GAN sample or example) framed for the model, the faces found, and
    step 1: segments, error maps, layer map -> the layer-map editor."""
    wiring, model_id = shared.wiring, shared.model_id
    first = model_id.value or None
    photos = photos_for(wiring.ctx.registry.framing_of(wiring.ctx.registry.get(first)), first) if first else []
    with gr.Row():
        with gr.Column():
            slot = photo_slot(wiring, model_id, label="Photo to invert", sample=sample_photo, seed=7,
                              sample_label="Use a GAN sample", net_input=False, height=320,
                              examples=photos, examples_label="Example photos (then predict)")
            slot_line(wiring.ctx, model_id)
        with gr.Column():
            with gr.Row():
                net_input = gr.Image(format="png", label="Network input", interactive=False, height=320)
                segments_pic = gr.Image(format="png", label="Segments", interactive=False, height=320)
            caption = gr.Markdown()
    gr.Markdown("### 1 · Layer map")
    with gr.Row():
        segmenter = gr.Dropdown(list(SEGMENTERS), value="auto", label="Segmenter",
                                info="auto: the authors' (face parser for faces, ADE20K for their cars and "
                                     "cats), superpixels for other models")
        n_segments = gr.Slider(4, 64, value=24, step=1, label="Segments", info="superpixels only")
        tau = gr.Slider(0.0, 1.0, value=TAU, step=0.025, label="τ (max. predicted error per segment)")
        est_steps = gr.Slider(2, 300, value=ESTIMATE_STEPS[0] if shared.on_gpu else ESTIMATE_STEPS[1], step=1,
                              label="Steps of each single-space run (models without a predictor)")
        predict = gr.Button("Predict layer map", variant="primary")
    errors_gallery = gr.Gallery(label="Predicted error per space (brighter = harder)", columns=5,
                                height=200, format="png")
    gr.Markdown(legend())
    layer_editor = gr.ImageEditor(label="Layer map (paint with a space's colour to override)",
                                  type="numpy", format="png", height=340, sources=(),
                                  brush=gr.Brush(colors=PALETTE, color_mode="fixed"),
                                  layers=False, transforms=())

    inputs = [model_id, slot.photo, n_segments, tau, est_steps, *slot.choices, segmenter]
    outputs = [shared.session, errors_gallery, segments_pic, layer_editor, shared.metrics, net_input,
               slot.faces]
    wiring.on(predict.click, predict_layer_map, inputs, outputs, api_name="sam_predict", record=False)
    if slot.examples is not None:  # an example photo is predicted at once (no run: `on`, not `examples`)
        wiring.on(slot.examples.load_input_event.then, predict_layer_map, inputs, outputs, record=False)
        # the first look: a layer map in seconds (models without the authors' predictor
        # measure it by short runs: the fewest steps here)
        wiring.first_look(slot.examples, (predict_layer_map, inputs, outputs), settings={est_steps: 2})
    slot.follow(wiring, model_id, net_input, caption)
    slot.clears(shared.session, errors_gallery, segments_pic, layer_editor, shared.metrics)
    wiring.on(tau.release, retune_tau, [shared.session, tau], [layer_editor, shared.metrics],
              api_name="sam_tau", record=False)
    return layer_editor


def _build_invert(shared: Shared, layer_editor: gr.ImageEditor) -> None:
    """Step 2: steps, the W+-only comparison, Invert / Stop, previews and scores."""
    gr.Markdown("### 2 · Invert")
    with gr.Row():
        steps = gr.Slider(1, 2000, value=STEPS if shared.on_gpu else CPU_STEPS, step=1, label="Adam steps")
        compare = gr.Checkbox(value=True, label="Also invert into W+ only (for comparison)")
        reduced = gr.Checkbox(value=False, visible=shared.on_gpu, label=REDUCED_LABEL)
        invert_button = gr.Button("Invert", variant="primary")
        stop = gr.Button("Stop", variant="stop")
    with gr.Row():
        recon = gr.Image(format="png", label="SAM reconstruction", interactive=False)
        baseline = gr.Image(format="png", label="W+ only", interactive=False)
        target = gr.Image(format="png", label="Target (as the losses see it)", interactive=False)
    shared.metrics.render()
    in_photo = gr.Image(format="png", label="Result in your photo (the reconstruction)", interactive=False)

    stop_signal = gr.State(StopSignal)  # one per session (a callable initial value)
    armed = invert_button.click(arm_stop, stop_signal, None, queue=False, api_visibility="private")
    code = photo_code_state()
    shared.wiring.on(
        armed.then, invert, [shared.model_id, shared.session, layer_editor, steps, compare, stop_signal,
                             reduced],
        [shared.session, recon, baseline, target, shared.metrics, shared.codes_file, in_photo, code],
        api_name="sam_invert")
    with gr.Accordion("Or continue from a photo code: the session's, or a saved run", open=False):
        gr.Markdown("The session's photo code, or a run saved with \"Download all\" (from "
                    "this tab, PandA or Generate), opens here for editing without inverting it "
                    "again; a loaded run's code becomes the session's (PandA and Generate use it).")
        with gr.Row():
            use_code = gr.Button("Edit the session's photo code")
            saved = gr.File(label="Load a run (.zip)", file_types=[".zip"], type="filepath")
    continued = [shared.model_id, shared.session, recon, in_photo, shared.metrics, code]
    shared.wiring.on(use_code.click, continue_from_code, [gr.State(None), code], continued,
                     record=False, api_name="sam_use_code")
    shared.wiring.on(saved.upload, continue_from_code, [saved, code], continued, record=False,
                     api_name="sam_load_run")
    stop.click(request_stop, stop_signal, None, queue=False, api_name="sam_stop")


def _build_edit(shared: Shared, first: str | None) -> gr.Dropdown:
    """Step 3: direction and strength, the edit on the SAM and on the W+-only codes;
    -> the direction dropdown (a model change refills it)."""
    gr.Markdown("### 3 · Edit")
    with gr.Row():
        choices = direction_choices(shared.wiring.ctx, first)
        label = choices[0] if choices else None
        lo, hi = strength_range(direction_source(label))
        direction = gr.Dropdown(choices, value=label, label="Edit direction", scale=3)
        strength = gr.Slider(lo, hi, value=0, step=0.1, label="Strength", scale=3)
        layers = gr.Dropdown(LAYER_PRESETS, value="all", allow_custom_value=True, scale=2,
                             label="Layers (GANSpace, SeFa): w+ indices",
                             info="SeFa's paper: 0-1 pose, 2-5 shape, 6-13 texture; the authors' files keep theirs")
    with gr.Row():
        edited = gr.Image(format="png", label="Edited (SAM codes)", interactive=False)
        edited_base = gr.Image(format="png", label="Same edit on the W+-only codes", interactive=False)
    in_photo = gr.Image(format="png", label="Result in your photo (the edit)", interactive=False)

    inputs = [shared.model_id, shared.session, direction, strength, layers]
    outputs = [edited, edited_base, in_photo]
    shared.wiring.on(strength.change, edit_photo, inputs, outputs, api_name="sam_edit",
                     trigger_mode="always_last", show_progress="minimal")
    # a new direction or layer range re-renders quietly (no inversion yet, another model's
    # inversion: the status line says so); the slider shows the direction's range first
    ranged = direction.change(strength_for, [direction, strength], strength, queue=False, api_visibility="private")
    shared.wiring.on(ranged.then, quietly(edit_photo, len(outputs) + 1), inputs, outputs)
    shared.wiring.on(layers.change, quietly(edit_photo, len(outputs) + 1), inputs, outputs)
    return direction
