"""StyleMap's page: `build_tab(ctx)` lays out one builder per sub-tab (local edit, transplant,
grid transplant, reconstruction, style mixing, interpolation, semantic manipulation, random)
and wires each to its handlers (`handlers`, `handlers_transplant`, `handlers_semantic`).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import gradio as gr

from core.context import AppContext
from core.images import ExamplePhoto, photos_for
from core.photo_slot import PhotoSlot, photo_slot, slot_line
from core.ui import (GPU_LANE, TabWiring, labelled_examples, licence_line, random_seeds, seed_picker,
                     shift_sliders, tab_header)
from demos.stylemap.engine import AFHQ_EXAMPLE_BOXES, GRID_BOXES, MAX_REFERENCES, REFERENCE_COLORS
from demos.stylemap.handlers import (TAB, cells_label, frame_original, framing_for, grid_of, live_local_edit,
                                     mix_labels, model_labels, quiet_local_edit, registered_size,
                                     run_edit_example, run_interpolation, run_local_edit, run_random,
                                     run_reconstruction, run_style_mix, sample_picture, shift_ranges,
                                     space_choices)
from demos.stylemap.handlers_semantic import MAX_SET, run_fit_direction, run_semantic_edit
from demos.stylemap.handlers_transplant import (pick_frame, pick_frame_in_photo, run_grid_transplant,
                                                run_transplant)

PAPER = "https://arxiv.org/abs/2104.14754"
HOW_IT_WORKS = f"""
StyleMapGAN's latent is not a vector but a **stylemap**: a 64-channel map of S×S cells, each
cell steering its own region of the image. S comes from the checkpoint: 8×8 for the 256 px
models, 16×16 for the 1024 px light model, 32×32 for the other 1024 px file (the labels follow
the model you pick). An **encoder** maps a photo to its stylemap in one pass (no optimisation),
so editing is instant:

* **Local edit**: encode the original and the reference, take the reference's stylemap where you
  painted and the original's elsewhere, decode. In **w+** (default, the paper's CelebA-HQ
  setting) the mixing happens in each of the generator's resized stylemaps (S×S up to the image
  size), so edges follow your brush down to the pixel at the finest level; in **w** it happens
  once, on the S×S stylemap (the paper's AFHQ setting). A cell is taken from the reference if
  any painted pixel falls in it. The mask picture shows this: in w the S×S cells; in w+ white
  where every level takes the reference (your strokes, the finest level) and grey where only
  the coarser levels do.
* **Transplant** (the authors' interactive demo): paint a region on each reference and shift it
  to where it should land in the original; every resized stylemap takes the shifted cells
  (average-pooled mask > 0.5). The frames interpolate linearly from the original (t = 0) to the
  full transplant (t = 1).
* **Reconstruction** shows how faithfully the encoder inverts a photo (MSE on [-1, 1] pixels,
  LPIPS-VGG). The paper's numbers are shown only beside the checkpoints they were measured on:
  the 5M-image CelebA-HQ and AFHQ files (Table 2) and the FFHQ 1024 px 32×32 file (Table 5);
  the default 256 px files were trained on 20M images and the paper reports no numbers for
  them.

Photos are framed as the model's training pictures were (shown as "network input"): faces are
detected and aligned with the CelebA-HQ recipe (celeba-hq model) or the FFHQ recipe (ffhq-1024),
the LSUN car and church pictures are squashed to the square, AFHQ's centre-cropped. A picture
that is already the model's square (a sample) is taken as it is. Results are also pasted back
into your photo at its full resolution (a local edit only where you painted, a transplant only
where the references land, a style mix whole into A's photo). Paper: [Kim et al., *Exploiting
Spatial Dimensions of Latent in GAN for Real-time Image Editing*, CVPR 2021]({PAPER}). Weights: CC BY-NC 4.0 (non-commercial).
"""


def relabel(notes: Sequence[str] | None):
    """The framing notes a handler returned (a gr.State) -> the labels of its network-input
    pictures. The pictures themselves stay plain outputs, so API clients get files."""
    if not notes:
        return gr.update()
    updates = [gr.update(label=n) for n in notes]
    return updates[0] if len(updates) == 1 else updates


def labelled_by_notes(notes: gr.State, pictures: list) -> None:
    """Whenever a handler's framing notes change, they become `pictures`' labels."""
    notes.change(relabel, notes, pictures[0] if len(pictures) == 1 else pictures,
                 api_visibility="private", queue=False)


@dataclass(frozen=True)
class Shared:
    """What every sub-tab builder uses: the wiring, the model dropdown, the sampling ψ, the
    first model id (for examples) and the example photos that suit it."""
    wiring: TabWiring
    model_id: gr.Dropdown
    psi: gr.Slider
    first: str | None
    photos: tuple[ExamplePhoto, ...]

    def seed_row(self, target: gr.components.Component, default: int) -> gr.Number:
        """A seed box and button under `target` that fill it with a sample."""
        return seed_picker(self.wiring, target, sample_picture, [self.model_id, self.psi], default)

    def photo_slot(self, label: str, seed: int | None = None) -> PhotoSlot:
        """The app's photo slot, with a seed row (a sample instead) when `seed` is given; the
        faces found follow the photo and the model (the network input shows after a run)."""
        slot = photo_slot(self.wiring, self.model_id, label=label, net_input=False,
                          sample=None if seed is None else sample_picture, sample_inputs=[self.psi],
                          seed=seed or 1)
        slot.follow(self.wiring, self.model_id)
        return slot

    def photo_and_editor(self, label: str, editor_label: str, colour: str, seed: int
                         ) -> tuple[PhotoSlot, gr.Button, gr.ImageEditor, gr.Number]:
        """Two columns: a photo slot with "Frame it", and the editor it frames into (with its
        seed row) -> (slot, "Frame it" button, editor, the editor's seed box)."""
        with gr.Column():
            slot = self.photo_slot(label)
            frame = gr.Button("Frame it (puts the network's input in the editor)")
        with gr.Column():
            editor = gr.ImageEditor(label=editor_label, format="png", type="numpy", layers=False,
                                    brush=gr.Brush(colors=[colour], default_size=24))
            seed = self.seed_row(editor, seed)
        return slot, frame, editor, seed

    def photo_column(self, label: str, seed: int) -> tuple[gr.Image, PhotoSlot]:
        """A photo slot with its seed row -> (its upload, the slot)."""
        slot = self.photo_slot(label, seed)
        return slot.photo, slot

    def photo_examples(self, target: gr.components.Component, label: str) -> gr.Examples | None:
        """The example photos as examples of one photo input (None when none is installed)."""
        if not self.photos:
            return None
        return labelled_examples([[p.path] for p in self.photos], [p.label for p in self.photos],
                                 [target], label=label)


def build_tab(ctx: AppContext) -> None:
    ids = ctx.model_ids("stylemapgan")
    wiring = TabWiring(ctx, TAB)
    tab_header("Paint a region, get it from another picture, instantly: StyleMapGAN encodes both "
               "pictures to spatial stylemaps and mixes them where you painted. Upload photos or "
               "sample them from a seed.",
               HOW_IT_WORKS)
    licence_line(ctx.registry, TAB, ids)
    first = ids[0] if ids else None
    with gr.Row():
        model_id = gr.Dropdown(ids, value=first, label="Model", scale=3)
        psi = gr.Slider(0.0, 1.0, value=0.7, step=0.05, label="Truncation ψ (sampling)", scale=2)
    slot_line(ctx, model_id)
    photos = tuple(photos_for(framing_for(ctx, first), first or ""))
    shared = Shared(wiring, model_id, psi, first, photos)
    with gr.Tabs():
        with gr.Tab("Local edit"):
            labelled = _build_local_edit(shared, live_default=ctx.device.type == "cuda")
        with gr.Tab("Transplant"):
            _build_transplant(shared)
        with gr.Tab("Grid transplant (w)"):
            labelled += _build_grid_transplant(shared)
        with gr.Tab("Reconstruction"):
            _build_reconstruction(shared)
        with gr.Tab("Style mixing"):
            labelled += _build_style_mixing(shared)
        with gr.Tab("Interpolation"):
            _build_interpolation(shared)
        with gr.Tab("Semantic manipulation"):
            _build_semantic(shared)
        with gr.Tab("Random"):
            _build_random(shared)
    wiring.on(model_id.change, model_labels, model_id, labelled, record=False, queue=False)
    wiring.download.render()


def _build_local_edit(shared: Shared, live_default: bool) -> list:
    """-> the components whose labels name the stylemap grid (see `model_labels`)."""
    wiring, model_id, first = shared.wiring, shared.model_id, shared.first
    grid = grid_of(wiring.ctx, first)
    with gr.Row():
        controls, frame, original, seed_original = shared.photo_and_editor(
            "Your photo", "Original: paint the region to replace", "#ff3333", 1)
        photo = controls.photo
        with gr.Column():
            ref_controls = shared.photo_slot("Reference", 2)
            reference, seed_reference = ref_controls.photo, ref_controls.seed
    framed = gr.State(None)  # the FramedPhoto "Frame it" put in the editor
    notes = gr.State(())  # the framing notes: the network-input pictures' labels
    with gr.Row():
        space = gr.Radio(space_choices(grid), value="w_plus", label="Blend in")
        live = gr.Checkbox(value=live_default, label="Update while painting")
        run = gr.Button("Edit", variant="primary")
    with gr.Row():
        net_input = gr.Image(label="Network input", format="png", interactive=False)
        cells = gr.Image(label=cells_label(grid), format="png", interactive=False, image_mode="L")
        result = gr.Image(label="Edited", format="png", interactive=False)
    with gr.Row():
        in_photo = gr.Image(label="Result in your photo", format="png", interactive=False, scale=2)
        ref_input = gr.Image(label="Reference: network input", format="png", interactive=False)
    region = gr.Dropdown(["lower half", "upper half", "centre"], value="lower half",
                         visible=False)  # what the seed examples paint
    example_inputs = [model_id, shared.psi, seed_original, seed_reference, region, space]
    examples = labelled_examples(
        [[first, 0.7, 1, 2, "lower half", "w_plus"], [first, 0.7, 1, 2, "lower half", "w"],
         [first, 0.7, 3, 4, "upper half", "w_plus"], [first, 0.7, 5, 6, "centre", "w_plus"]],
        ["lower half of sample 2 into sample 1 (w+)", "the same in w: blockier edges",
         "upper half of sample 4 into sample 3", "centre of sample 6 into sample 5"],
        example_inputs, label="Example edits (samples by seed, region painted for you)")
    photo_examples = shared.photo_examples(photo, "Example photos (framed on click; then paint "
                                                  "on the original and Edit)")
    shared.photo_examples(reference, "Example reference photos")

    frame_inputs = [model_id, photo] + controls.choices
    frame_outputs = [original, net_input, controls.faces, framed, notes]
    wiring.on(frame.click, frame_original, frame_inputs, frame_outputs, record=False,
              api_name="stylemap_frame")
    if photo_examples:
        wiring.on(photo_examples.load_input_event.then, frame_original, frame_inputs,
                  frame_outputs, record=False)
    inputs = [model_id, original, reference, space, framed] + ref_controls.choices
    outputs = [net_input, cells, result, in_photo, ref_input, ref_controls.faces, notes]
    labelled_by_notes(notes, [net_input, ref_input])
    wiring.on(run.click, run_local_edit, inputs, outputs, api_name="stylemap_edit")
    wiring.on(space.change, quiet_local_edit, inputs, outputs)  # re-run a finished edit in the other space
    wiring.on(original.change, live_local_edit, [live] + inputs, outputs, concurrency_id=GPU_LANE,
              trigger_mode="always_last", show_progress="minimal")
    wiring.examples(examples, (run_edit_example, example_inputs, [original, reference] + outputs))
    return [space, cells]


def _build_transplant(shared: Shared) -> None:
    wiring, model_id = shared.wiring, shared.model_id
    gr.Markdown("Paint a region on each reference (up to three), then shift it to where it "
                "should land on the original (pixels of the model's square). The original is "
                "framed as the model's training pictures were (shown as its network input); the "
                "result goes back into your photo where the references land.")
    span = registered_size(wiring.ctx, shared.first)
    with gr.Row():
        with gr.Column():
            original, controls = shared.photo_column("Original", 1)
        refs, dxs, dys = [], [], []
        for i in range(MAX_REFERENCES):
            with gr.Column():
                editor = gr.ImageEditor(label=f"Reference {i + 1}: paint the region to take",
                                        format="png", type="numpy", layers=False,
                                        brush=gr.Brush(colors=["#%02x%02x%02x" % REFERENCE_COLORS[i]],
                                                       default_size=24))
                shared.seed_row(editor, 2 + i)
                dx, dy = shift_sliders(span)
                refs.append(editor)
                dxs.append(dx)
                dys.append(dy)
    with gr.Row():
        steps = gr.Slider(2, 16, value=8, step=1, label="Interpolation frames")
        run = gr.Button("Transplant", variant="primary")
    with gr.Row():
        net_input = gr.Image(label="Network input", format="png", interactive=False)
        landing = gr.Image(label="Where the regions land (stylemap cells)", format="png",
                           interactive=False)
        result = gr.Image(label="Result at t", format="png", interactive=False)
    t = gr.Slider(0, 1, value=1, step=1, label="Interpolation t (frame)")
    in_photo = gr.Image(label="Result in your photo", format="png", interactive=False)
    strip = gr.Gallery(label="All frames, t = 0 … 1", columns=8, height=180, format="png")
    frames = gr.State([])
    framed = gr.State(None)  # the original's FramedPhoto, for pasting the frame at t back
    landed = gr.State(None)  # where the references land in the frame (the paste mask)
    notes = gr.State(())

    inputs = [model_id, original, steps] + refs + dxs + dys + controls.choices
    outputs = [landing, result, strip, frames, t, in_photo, net_input, controls.faces, framed,
               landed, notes]
    labelled_by_notes(notes, [net_input])
    wiring.on(run.click, run_transplant, inputs, outputs, api_name="stylemap_transplant")
    wiring.on(model_id.change, shift_ranges, model_id, dxs + dys, record=False, queue=False)
    t.change(pick_frame_in_photo, [frames, t, framed, landed], [result, in_photo], api_visibility="private",
             queue=False)


def _build_grid_transplant(shared: Shared) -> list:
    """-> the cell sliders, whose range is the model's grid."""
    wiring, model_id = shared.wiring, shared.model_id
    grid = grid_of(wiring.ctx, shared.first) or 8
    gr.Markdown("The paper's unaligned transplantation as the authors' `generate.py` runs it "
                "(Fig. 8): boxes of the reference's stylemap cells replace the original's cells "
                "at another place, in w (the input stylemap, hard copy), then the picture is "
                "decoded. Boxes are in cells of the model's grid and are applied in order. The "
                "**Transplant** tab is the authors' interactive demo instead: painted regions, "
                "pixel shifts, every resized stylemap (w+), interpolation frames.")
    with gr.Row():
        with gr.Column():
            original, controls = shared.photo_column("Original", 1)
        with gr.Column():
            reference, ref_controls = shared.photo_column("Reference", 2)
    sliders = []
    for k in range(GRID_BOXES):
        (ty, tx), (fy, fx), h, w = AFHQ_EXAMPLE_BOXES[k]
        with gr.Row():
            gr.Markdown(f"**Box {k + 1}** (height or width 0: unused)")
            for label, value in zip(("Lands at row", "Lands at column", "Taken from row",
                                     "Taken from column", "Height (cells)", "Width (cells)"),
                                    (ty, tx, fy, fx, h, w)):
                sliders.append(gr.Slider(0, grid, value=min(value, grid), step=1, label=label))
    run = gr.Button("Transplant boxes", variant="primary")
    with gr.Row():
        where_to = gr.Image(label="Original: where the boxes land", format="png", interactive=False)
        where_from = gr.Image(label="Reference: the boxes taken", format="png", interactive=False)
        result = gr.Image(label="Result", format="png", interactive=False)
    in_photo = gr.Image(label="Result in your photo", format="png", interactive=False)
    notes = gr.State(())

    inputs = [model_id, original, reference] + sliders + controls.choices + ref_controls.choices
    outputs = [where_to, where_from, result, in_photo, controls.faces, ref_controls.faces, notes]
    labelled_by_notes(notes, [where_to, where_from])
    wiring.on(run.click, run_grid_transplant, inputs, outputs, api_name="stylemap_grid_transplant")
    return sliders


def _build_reconstruction(shared: Shared) -> None:
    wiring, model_id = shared.wiring, shared.model_id
    with gr.Row():
        with gr.Column():
            image, controls = shared.photo_column("Photo", 3)
            run = gr.Button("Reconstruct", variant="primary")
        net_input = gr.Image(label="Network input", format="png", interactive=False)
        result = gr.Image(label="Reconstruction", format="png", interactive=False)
    metrics = gr.Markdown()
    in_photo = gr.Image(label="Result in your photo", format="png", interactive=False)
    notes = gr.State(())

    inputs = [model_id, image] + controls.choices
    outputs = [net_input, result, metrics, in_photo, controls.faces, notes]
    labelled_by_notes(notes, [net_input])
    wiring.on(run.click, run_reconstruction, inputs, outputs, api_name="stylemap_reconstruct")
    examples = shared.photo_examples(image, "Example photos (reconstructed on click)")
    if examples:
        wiring.examples(examples, (run_reconstruction, inputs, outputs))


def _build_style_mixing(shared: Shared) -> list:
    """-> the two results, whose labels name the stylemap grid."""
    wiring, model_id = shared.wiring, shared.model_id
    coarse_label, fine_label = mix_labels(grid_of(wiring.ctx, shared.first))
    with gr.Row():
        with gr.Column():
            a, controls_a = shared.photo_column("A", 4)
        with gr.Column():
            b, controls_b = shared.photo_column("B", 5)
    run = gr.Button("Mix", variant="primary")
    with gr.Row():
        coarse = gr.Image(label=coarse_label, format="png", interactive=False)
        fine = gr.Image(label=fine_label, format="png", interactive=False)
        input_a = gr.Image(label="A: network input", format="png", interactive=False)
        input_b = gr.Image(label="B: network input", format="png", interactive=False)
    in_photo = gr.Image(label="Result in your photo (A)", format="png", interactive=False)

    notes = gr.State(())

    inputs = [model_id, a, b] + controls_a.choices + controls_b.choices
    outputs = [coarse, fine, input_a, input_b, controls_a.faces, controls_b.faces, notes,
               in_photo]
    labelled_by_notes(notes, [input_a, input_b])
    wiring.on(run.click, run_style_mix, inputs, outputs, api_name="stylemap_mix")
    photos = shared.photos
    if len(photos) >= 2:
        pairs = [(photos[i], photos[(i + 1) % len(photos)]) for i in range(min(2, len(photos)))]
        examples = labelled_examples([[x.path, y.path] for x, y in pairs],
                                     [f"A {x.label}, B {y.label}" for x, y in pairs], [a, b],
                                     label="Example pairs (mixed on click)")
        wiring.examples(examples, (run_style_mix, inputs, outputs))
    return [coarse, fine]


def _build_interpolation(shared: Shared) -> None:
    wiring, model_id = shared.wiring, shared.model_id
    gr.Markdown("The authors' w interpolation (`generate.py`, the paper's FID_lerp): both "
                "pictures are encoded and their stylemaps mixed linearly, (1 − t)·A + t·B, then "
                "decoded. t = 0 is A's reconstruction, t = 1 B's. The authors draw one random t "
                "per pair; here the whole path is shown as frames.")
    with gr.Row():
        with gr.Column():
            a, controls_a = shared.photo_column("A (t = 0)", 6)
        with gr.Column():
            b, controls_b = shared.photo_column("B (t = 1)", 7)
    with gr.Row():
        steps = gr.Slider(2, 16, value=8, step=1, label="Frames")
        run = gr.Button("Interpolate", variant="primary")
    with gr.Row():
        input_a = gr.Image(label="A: network input", format="png", interactive=False)
        result = gr.Image(label="Frame at t", format="png", interactive=False)
        input_b = gr.Image(label="B: network input", format="png", interactive=False)
    t = gr.Slider(0, 1, value=1, step=1, label="Interpolation t (frame)")
    strip = gr.Gallery(label="All frames, t = 0 … 1", columns=8, height=180, format="png")
    frames = gr.State([])
    notes = gr.State(())

    inputs = [model_id, a, b, steps] + controls_a.choices + controls_b.choices
    outputs = [result, strip, frames, t, input_a, input_b, controls_a.faces, controls_b.faces, notes]
    labelled_by_notes(notes, [input_a, input_b])
    wiring.on(run.click, run_interpolation, inputs, outputs, api_name="stylemap_interpolate")
    t.change(pick_frame, [frames, t], result, api_visibility="private", queue=False)


def _build_semantic(shared: Shared) -> None:
    wiring, model_id = shared.wiring, shared.model_id
    gr.Markdown("The authors' semantic manipulation (`semantic_manipulation.py`): a linear SVM "
                "separates the stylemaps of pictures **with** an attribute from pictures "
                "**without** it, and a picture's stylemap is moved along the boundary's unit "
                "normal, everywhere (global) or only in the cells you paint (local). The authors "
                "use 10,000 CelebA-HQ pictures per attribute, labelled by a classifier, fit on 90 % "
                "and measure the accuracy on the 10 % held out; here you give the two sets "
                f"(uploads and/or samples by seed, at most {MAX_SET} each), so the direction is "
                "rough and its accuracy is measured by cross-validation (every example held out "
                "once). Their figures use distances 0 … 20.")
    with gr.Row():
        with gr.Column():
            with_files = gr.File(label="With the attribute (photos)", file_count="multiple",
                                 file_types=["image"], type="filepath")
            with_seeds = gr.Textbox(label="… and/or samples by seed", placeholder="e.g. 1, 2, 3")
        with gr.Column():
            without_files = gr.File(label="Without the attribute (photos)", file_count="multiple",
                                    file_types=["image"], type="filepath")
            without_seeds = gr.Textbox(label="… and/or samples by seed", placeholder="e.g. 4, 5, 6")
    with gr.Row():
        plain = gr.Checkbox(value=False, label="Plain framing for the sets (no face alignment)")
        fit = gr.Button("Fit the direction", variant="primary")
    summary = gr.Markdown()
    sets = gr.Gallery(label="The two sets as the network sees them", columns=8, height=150,
                      format="png")
    kept = gr.State(None)
    fit_inputs = [model_id, with_files, with_seeds, without_files, without_seeds, shared.psi, plain]
    wiring.on(fit.click, run_fit_direction, fit_inputs, [summary, kept, sets],
              api_name="stylemap_semantic_fit")

    with gr.Row():
        controls, frame, editor, _ = shared.photo_and_editor(
            "Photo to edit", "Picture to edit: paint cells for a local edit (optional)", "#66ffff", 8)
        photo = controls.photo
    with gr.Row():
        strength = gr.Slider(-40, 40, value=20, step=1, label="Strength d (towards 'with'; negative: away)")
        steps = gr.Slider(2, 9, value=5, step=1, label="Frames (d from 0)")
        apply = gr.Button("Edit", variant="primary")
    with gr.Row():
        net_input = gr.Image(label="Network input", format="png", interactive=False)
        cells = gr.Image(label="Local: the stylemap cells the paint touches", format="png",
                         interactive=False, image_mode="L")
        in_photo = gr.Image(label="Strongest edit in your photo", format="png", interactive=False)
    global_strip = gr.Gallery(label="Global: the whole stylemap moved", columns=9, height=180, format="png")
    local_strip = gr.Gallery(label="Local: only the painted cells moved", columns=9, height=180, format="png")
    framed = gr.State(None)
    notes = gr.State(())
    frame_inputs = [model_id, photo] + controls.choices
    wiring.on(frame.click, frame_original, frame_inputs,
              [editor, net_input, controls.faces, framed, notes], record=False)
    labelled_by_notes(notes, [net_input])
    wiring.on(apply.click, run_semantic_edit, [model_id, kept, editor, strength, steps, framed],
              [global_strip, local_strip, net_input, cells, in_photo], api_name="stylemap_semantic_edit")


def _build_random(shared: Shared) -> None:
    wiring, model_id, first = shared.wiring, shared.model_id, shared.first
    with gr.Row():
        seeds = gr.Textbox(value="0, 1, 2, 3", label="Seed(s)", scale=3)
        dice = gr.Button("Random seed", scale=0)
        run = gr.Button("Generate", variant="primary", scale=1)
    gallery = gr.Gallery(label="Samples", columns=4, format="png")
    inputs = [model_id, seeds, shared.psi]
    examples = labelled_examples([[first, "0, 1, 2, 3", 0.7], [first, "0, 1, 2, 3", 1.0]],
                                 ["seeds 0-3 · ψ 0.7", "seeds 0-3 · ψ 1.0 (full variety)"],
                                 inputs, label="Examples")

    wiring.on(run.click, run_random, inputs, gallery, api_name="stylemap_random")
    wiring.examples(examples, (run_random, inputs, [gallery]))
    dice.click(functools.partial(random_seeds, 4), None, seeds, queue=False, api_visibility="private")
