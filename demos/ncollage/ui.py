"""Neural Collage's page: `build_tab` lays out the base picture, then one builder per sub-tab
(label collage, feature blend, real photo) and wires them to `handlers`/`handlers_photo`."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import torch

from core.context import AppContext
from core.images import photos_for
from core.models import STYLEGAN2_ARCHS
from core.photo_slot import photo_slot
from core.ui import (GPU_LANE, MAX_SEED, TabWiring, labelled_examples, licence_line, long_dropdown,
                     shift_sliders, tab_header)
from core.classes import class_choices
from demos.ncollage.engine import DEFAULT_CLASS, LABEL_DEFAULTS, PALETTE
from demos.ncollage.handlers import (DEFAULT_FRAME, MAX_POINTS, MAX_REFS, TAB, apply_labels,
                                     blend_features, live_labels, render_base, render_reference,
                                     shift_ranges, sweep_labels)
from demos.ncollage.handlers_photo import paste_edit, paste_mask, project_photo
from demos.ncollage.photo import AUTHORS_STEPS

PAPER = "https://arxiv.org/abs/1811.10153"
HOW_IT_WORKS = f"""
**Models.** The authors' own SNGAN (ImageNet dogs and cats, 143 classes, 256 px, with their
encoder, auxiliary network and discriminator), and BigGAN-deep (1000 classes). Both are
class-conditional through their batch norms; StyleGAN2 offers feature blending only.

**Label collage (sCBN, Eq. 2).** Each conditional batch norm scales and shifts the normalised
features by γ(c), β(c) of the class. *Spatial* conditional batch norm gives every pixel its
own mixture, γ(h, w) = Σ_c W_hw(c) γ(c) (the same for β), with weights W painted by you
(up to the authors' 12 palette colours): inside a painted region the chosen class gets weight
*intensity* (soft edges), the base class the rest. The map is made at the picture's full
resolution and resized to every batch norm. **Layers** (the authors' Fig. 12): every batch
norm, only the first (global shape), or all but the first (parts and texture, shape kept);
elsewhere the base class. On BigGAN-deep the choice is per block (its first block holds the
first batch norms; the 4 x 4 seed layer also takes the class).

**Feature blend (Eq. 3, the authors' demo).** At each layer the base picture's features are
replaced, inside each painted region, by another picture's features there:
F̃ = (1 − Σ λ M_i) F_base + Σ λ M_i shift_i(F_i), with a weight λ per layer (the demo's
sliders: early layers transplant shape and pose, late ones texture) and *frames* that grow
λ from 0 to its value. A shift moves the reference by the same number of pixels at every
layer (between feature cells it is interpolated). References keep the truncation they were
rendered with, or are rendered with the base's class (as the authors' demo does). With
"also apply the label collage" both run in one pass (Fig. 2d).

**Real photos (Eq. 4).** SNGAN: the authors' encoder gives z from the photo and its class;
then, as their optimization.py, Adam (lr 0.075 on z, or 0.015 on the auxiliary network's zeta)
minimises −cos(D(G(z)), D(photo)) + 0.2 · MSE, D being the discriminator's last features, for
their 200 steps (the default on a GPU; 50 on a CPU, where each step takes seconds). The
latent kept is the one their script saves: with the auxiliary network the B(zeta) of the last
forward pass (the picture the last loss was measured on). BigGAN-deep has no released encoder or discriminator: z is
fitted with LPIPS + 0.2 · MSE (Adam 0.075, class fixed, z kept within the sampler's range at
the chosen truncation). The photo is centre-cropped as the training pictures were; the edit
is Poisson-blended in that frame and put back into your photo at full resolution inside a
mask you can paint (default: the edited region).

Paper: [Suzuki, Koyama, Miyato, Yonetsuji, Zhu, *Spatially controllable image synthesis with
internal representation collaging*, 2019]({PAPER}).
"""
# the authors' spatial-translation demo palette (static/demo_spatial_translation/js/main.js)
SHOWN_COLOURS = 3  # the others sit in a collapsed row
BLEND_FRAMES = 16  # the authors' feature-blending demo renders 16 interpolation frames
CPU_STEPS = 50     # the photo fit's default on a CPU (a step takes ~0.5-2 s there)
# Example photos of ImageNet classes (installed packages' free photos): a word of their label
# and the class it shows
PHOTO_CLASSES = (("cat", 281), ("lion", 291), ("cheetah", 293))  # tabby cat, lion, cheetah


@dataclass(frozen=True)
class Base:
    """The widgets every sub-tab reads: the model, the base picture's settings and state."""
    model: gr.Dropdown
    cls: gr.Dropdown
    seed: gr.Number
    truncation: gr.Slider
    state: gr.State
    image: gr.Image
    button: gr.Button
    examples: gr.Examples


@dataclass(frozen=True)
class LabelInputs:
    """The label collage's inputs, shared with the feature blend's "also apply" option."""
    editor: gr.ImageEditor
    layers: gr.Radio
    soft: gr.Slider
    classes: list
    strengths: list

    def all(self) -> list:
        return [self.editor, self.layers, self.soft] + self.classes + self.strengths


def build_tab(ctx: AppContext) -> None:
    biggan_ids = ctx.model_ids("biggan-deep")
    ids = biggan_ids + ctx.model_ids("sngan") + \
        [i for i in ctx.model_ids(STYLEGAN2_ARCHS) if TAB in ctx.registry.get(i).used_by]
    wiring = TabWiring(ctx, TAB)
    tab_header("Paint class labels onto a picture of the authors' SNGAN or of BigGAN (a dog's "
               "head becomes a cat's), or transplant the *features* of another picture into a "
               "region, at the layers you choose; edit your own photo the paper's way.",
               HOW_IT_WORKS)
    licence_line(ctx.registry, TAB, ids)
    names = class_choices()
    base = _build_base(ids, names)
    last_edit = gr.State(None)
    with gr.Tabs():
        with gr.Tab("Label collage"):
            labels = _build_label_collage(wiring, base, names, last_edit)
        with gr.Tab("Feature blend"):
            weights = _build_feature_blend(wiring, base, names, labels, last_edit)
        with gr.Tab("Real photo"):
            _build_real_photo(wiring, base, names, labels.editor, last_edit)
    wiring.download.render()

    inputs = [base.model, base.cls, base.seed, base.truncation]
    outputs = [base.state, base.image, labels.editor, *weights]
    wiring.on(base.button.click, render_base, inputs, outputs, api_name="ncollage_render")
    wiring.examples(base.examples, (render_base, inputs, outputs))


def _build_base(ids: list[str], names: list[str]) -> Base:
    """The model, class, seed and truncation of the base picture, and the picture."""
    default_class = names[DEFAULT_CLASS]
    with gr.Row():
        with gr.Column():
            model = gr.Dropdown(ids, value=ids[0] if ids else None,
                                label="Model (label collage: SNGAN or BigGAN-deep)")
            cls = long_dropdown(names, default_class, label="Base class (SNGAN: dogs and "
                                "cats, 151-293)")
            with gr.Row():
                seed = gr.Number(value=1, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
                truncation = gr.Slider(0.02, 1.0, value=0.4, step=0.02,
                                       label="Truncation (BigGAN-deep, StyleGAN2)")
            button = gr.Button("Render base picture", variant="primary")
        image = gr.Image(label="Base picture", format="png", interactive=False)
    state = gr.State(None)
    examples = labelled_examples(
        [[default_class, 1, 0.4], [names[281], 3, 0.4], [names[291], 2, 0.4], [names[250], 5, 0.4]],
        ["golden retriever · seed 1", "tabby cat · seed 3", "lion · seed 2", "husky · seed 5"],
        [cls, seed, truncation],
        label="Example bases (ImageNet classes; StyleGAN2 uses the seed only)")
    return Base(model, cls, seed, truncation, state, image, button, examples)


def _colour_row(names: list[str], k: int) -> tuple[gr.Dropdown, gr.Slider]:
    with gr.Row():
        cls = long_dropdown(names, names[LABEL_DEFAULTS[k]],
                            label=f"Class for colour {k + 1} ({PALETTE[k]})", scale=3)
        strength = gr.Slider(0, 1, value=1.0, step=0.05, label="Intensity", scale=2)
    return cls, strength


def _build_label_collage(wiring: TabWiring, base: Base, names: list[str], last_edit: gr.State
                         ) -> LabelInputs:
    """Paint regions in brush colours (the authors' 12), one class and intensity per colour."""
    with gr.Row():
        editor = gr.ImageEditor(label="Paint regions: one brush colour per target class",
                                format="png", type="numpy", layers=False,
                                brush=gr.Brush(colors=list(PALETTE), default_color=PALETTE[0],
                                               default_size=24))
        with gr.Column():
            rows = [_colour_row(names, k) for k in range(SHOWN_COLOURS)]
            with gr.Accordion(f"Colours {SHOWN_COLOURS + 1}-{len(PALETTE)}", open=False):
                rows += [_colour_row(names, k) for k in range(SHOWN_COLOURS, len(PALETTE))]
            classes, strengths = [r[0] for r in rows], [r[1] for r in rows]
            layers = gr.Radio(["all", "first", "all but first"], value="all",
                              label="Batch norms with the painted classes (Fig. 12)")
            soft = gr.Slider(0, 16, value=8, step=1, label="Soft edge (px at 256 px)")
            with gr.Row():
                live = gr.Checkbox(value=True, label="Update while painting")
                run = gr.Button("Apply labels", variant="primary")
                sweep = gr.Button("Intensity sweep (Fig. 9)")
    with gr.Row():
        before = gr.Image(label="Before", format="png", interactive=False)
        after = gr.Image(label="After", format="png", interactive=False)
        class_map = gr.Image(label="Class map (grey: base class)", format="png", interactive=False)
    gallery = gr.Gallery(label="Intensity 0 → 1", columns=5, format="png")
    labels = LabelInputs(editor, layers, soft, classes, strengths)

    inputs = [base.model, base.state] + labels.all()
    outputs = [before, after, class_map, last_edit]
    wiring.on(run.click, apply_labels, inputs, outputs, api_name="ncollage_label")
    wiring.on(sweep.click, sweep_labels, inputs, outputs + [gallery], api_name="ncollage_sweep")
    for trigger in [editor.change, layers.change, soft.release] + \
            [c.change for c in classes] + [s.release for s in strengths]:
        wiring.on(trigger, live_labels, [live] + inputs, outputs, concurrency_id=GPU_LANE,
                  trigger_mode="always_last", show_progress="minimal")
    return labels


def _build_feature_blend(wiring: TabWiring, base: Base, names: list[str], labels: LabelInputs,
                         last_edit: gr.State) -> list[gr.Slider]:
    """MAX_REFS references (class, seed, painted region, shift), a weight per layer and the
    frames, as the authors' demo -> the weight sliders (the base picture's model sets them)."""
    states, editors, dxs, dys = [], [], [], []
    with gr.Row():
        for r in range(MAX_REFS):
            with gr.Column():
                states.append(gr.State(None))
                cls = long_dropdown(names, names[LABEL_DEFAULTS[r]], label=f"Reference {r + 1} class")
                with gr.Row():
                    seed = gr.Number(value=10 + r, precision=0, minimum=0, maximum=MAX_SEED,
                                     label="Seed")
                    button = gr.Button(f"Render reference {r + 1}")
                editors.append(gr.ImageEditor(
                    label=f"Reference {r + 1}: paint the region to take", format="png",
                    type="numpy", layers=False, brush=gr.Brush(colors=["#ffffff"], default_size=24)))
                dx, dy = shift_sliders(DEFAULT_FRAME)
                dxs.append(dx)
                dys.append(dy)
            wiring.on(button.click, render_reference, [base.model, cls, seed, base.truncation],
                      [states[r], editors[r]], api_name=f"ncollage_reference_{r + 1}", record=False)
    with gr.Accordion("Blending weight per layer (the authors' demo: early layers carry shape "
                      "and pose, late ones texture)", open=True):
        with gr.Row():
            weights = [gr.Slider(0, 1, value=1.0 if i == 0 else 0.0, step=0.1, visible=i < 4,
                                 label=f"Weight at layer {i}", min_width=160)
                       for i in range(MAX_POINTS)]
    with gr.Row():
        frames = gr.Slider(1, BLEND_FRAMES, value=4, step=1,
                           label=f"Frames (weight 1/F ... 1; the authors' demo: {BLEND_FRAMES})")
        base_class = gr.Checkbox(value=False, label="Render the references with the base's class "
                                 "(their demo)")
        with_labels = gr.Checkbox(value=False, label="Also apply the label collage, same pass (Fig. 2d)")
        run = gr.Button("Blend features", variant="primary")
    with gr.Row():
        before = gr.Image(label="Before", format="png", interactive=False)
        after = gr.Image(label="After", format="png", interactive=False)
        blend_map = gr.Image(label="Blend map (where each reference lands)", format="png",
                             interactive=False)
    gallery = gr.Gallery(label="Frames", columns=8, format="png")
    shift_note = gr.Markdown()

    inputs = [base.model, base.state, frames, base_class, with_labels] + labels.all() + weights + \
        states + editors + dxs + dys
    wiring.on(run.click, blend_features, inputs,
              [before, after, blend_map, gallery, shift_note, last_edit], api_name="ncollage_blend")
    wiring.on(base.model.change, shift_ranges, base.model, dxs + dys, record=False, queue=False)
    return weights


def _photo_examples(ctx: AppContext, model_id: str | None, names: list[str]
                    ) -> tuple[list[list], list[str]]:
    """(examples [photo path, class], labels) from `core.images.photos_for` for the model's
    framing, each with the ImageNet class it shows."""
    framing = ctx.registry.framing_of(ctx.registry.get(model_id)) if model_id else "center"
    photos = photos_for(framing, model_id or "")
    rows, labels = [], []
    for p in photos:
        index = next((c for word, c in PHOTO_CLASSES if word in p.label.lower()), DEFAULT_CLASS)
        rows.append([p.path, names[index]])
        labels.append(p.label)
    return rows, labels


def photo_steps(device: torch.device) -> dict:
    """The photo fit's step slider: the authors' 200 on a GPU, CPU_STEPS on a CPU (labelled)."""
    if device.type == "cuda":
        return {"value": AUTHORS_STEPS, "label": f"Steps (the authors' {AUTHORS_STEPS})"}
    return {"value": CPU_STEPS, "label": f"Steps ({CPU_STEPS} on this CPU, ~0.5-2 s each; "
                                         f"the authors use {AUTHORS_STEPS})"}


def _build_real_photo(wiring: TabWiring, base: Base, names: list[str], editor: gr.ImageEditor,
                      last_edit: gr.State) -> None:
    """Fit a photo (it becomes the base picture), then paste the last edit back into the
    photo at its full resolution inside a paintable mask. The app's photo slot frames it as
    the model's registry entry says (ImageNet models: a centre crop)."""
    gr.Markdown("The photo is framed as the model's training pictures were (ImageNet: a centre "
                "crop to the model's square); the edit goes back into your photo at its full "
                "resolution. SNGAN uses the authors' encoder and discriminator (Eq. 4); "
                "BigGAN-deep an LPIPS projection.")
    with gr.Row():
        with gr.Column():
            slot = photo_slot(wiring, base.model, label="Photo", net_input=False)
            cls = long_dropdown(names, names[DEFAULT_CLASS], label="What is in it (class)")
            steps = gr.Slider(5, 400, step=5, **photo_steps(wiring.ctx.device))
            use_aux = gr.Checkbox(value=True, label="SNGAN: optimise through the auxiliary "
                                  "network (their --mode aux), when registered")
            project_btn = gr.Button("Fit the photo", variant="primary")
        with gr.Column():
            network = gr.Image(label="Network input (what the model sees)", format="png",
                               interactive=False)
            caption = gr.Markdown()
        projection = gr.Image(label="Fit (becomes the base picture)", format="png",
                              interactive=False)
    rows, labels = _photo_examples(wiring.ctx, base.model.value, names)
    if rows:
        labelled_examples(rows, labels, [slot.photo, cls], label="Example photos (pick the class they show)")
    info = gr.Markdown()
    with gr.Row():
        mask = gr.ImageEditor(label="Paste-back mask (default: the edited region; paint or erase)",
                              format="png", type="numpy", layers=False,
                              brush=gr.Brush(colors=["#ffffff"], default_size=24))
        with gr.Column():
            paste_btn = gr.Button("Paste the last edit back into the photo (Poisson)")
            pasted = gr.Image(label="Photo frame with the edit", format="png", interactive=False)
    in_photo = gr.Image(label="Result in your photo", format="png", interactive=False)

    slot.follow(wiring, base.model, network, caption)
    slot.clears(projection, pasted, in_photo)
    wiring.on(project_btn.click, project_photo,
              [base.model, slot.photo, cls, steps, base.truncation, use_aux, *slot.choices],
              [base.state, projection, base.image, editor, info, network], api_name="ncollage_project")
    last_edit.change(paste_mask, [base.state, last_edit], mask, queue=False, api_visibility="private")
    wiring.on(paste_btn.click, paste_edit, [base.state, last_edit, mask], [pasted, in_photo],
              api_name="ncollage_paste")
