"""StyleMap tab: StyleMapGAN's real-time local editing and transplantation (Kim et al., CVPR 2021).

Engine (no Gradio): images in, images out, one encoder pass over [original, references]
and one generator pass per operation. `local_edit` (w+ or w blend), `transplant` (the
authors' interactive demo: regions of several references, shifted, with interpolation
frames), `reconstruct` (encoder fidelity), `style_mix` and `sample`. The model is a
`core.models.stylemapgan.StyleMapGAN` (generator + encoder of one checkpoint).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal, Sequence

import gradio as gr
import numpy as np
import torch
import torch.nn.functional as F

from core.context import AppContext
from core.device import randn
from core.errors import UserError
from core.device import placement
from core.images import (bundled_photos, editor_image_and_mask, editor_is_empty, mask_picture, overlay,
                         pil_to_tensor, to_uint8)
from core.lpips import lpips_distance
from core.models.stylemapgan import StyleMapGAN
from core.ui import (MAX_SEED, DownloadAll, gpu, labelled_examples, licence_line, parse_seeds, quietly,
                     run_examples, seed_picker, shift_range, shift_sliders, tab_header, user_errors)

PAPER = "https://arxiv.org/abs/2104.14754"
HOW_IT_WORKS = f"""
StyleMapGAN's latent is not a vector but a **stylemap**: a 64-channel map of 8×8 cells (16×16 for
the 1024 px model), each cell steering its own region of the image. An **encoder** maps a
photo to its stylemap in one pass (no optimisation), so editing is instant:

* **Local edit**: encode the original and the reference, take the reference's stylemap where you
  painted and the original's elsewhere, decode. In **w+** (default, the paper's CelebA-HQ
  setting) the mixing happens in each of the generator's resized stylemaps (8×8 up to 256×256),
  so edges follow your brush more closely; in **w** it happens once, at 8×8 (the paper's AFHQ
  setting). A cell is taken from the reference if any painted pixel falls in it: the grid below
  the result shows the cells as the network sees them.
* **Transplant** (the authors' interactive demo): paint a region on each reference and shift it
  to where it should land in the original; every resized stylemap takes the shifted cells
  (average-pooled mask > 0.5). The frames interpolate linearly from the original (t = 0) to the
  full transplant (t = 1).
* **Reconstruction** shows how faithfully the encoder inverts a photo (MSE on [-1, 1] pixels,
  LPIPS-VGG); the paper reports MSE 0.023 / LPIPS 0.237 on CelebA-HQ at 8×8.

Photos are centre-cropped and resized to the model's square (shown as "network input");
faces work best aligned like CelebA-HQ/FFHQ, and the LSUN models were trained on squashed,
not cropped, pictures. Paper: [Kim et al., *Exploiting Spatial Dimensions of Latent in GAN for
Real-time Image Editing*, CVPR 2021]({PAPER}). Weights: CC BY-NC 4.0 (non-commercial).
"""
MAX_REFERENCES = 3
TRANSPLANT_PIXELS = 4 * 256 * 256  # pixels per generator pass (4 frames at 256 px, 1 at 512 px
# and up): bounds memory however many frames are asked for
REFERENCE_COLORS = ((254, 39, 18), (102, 176, 50), (254, 254, 51))  # the authors' demo colours


# ---- engine --------------------------------------------------------------------------------
def prepare(model: StyleMapGAN, picture) -> torch.Tensor:
    """A picture -> the network's input [1, 3, size, size] (centre crop + resize, RGB)."""
    return pil_to_tensor(picture, model.size)


@torch.inference_mode()
def encode(model: StyleMapGAN, images: torch.Tensor) -> torch.Tensor:
    """Images [B, 3, size, size] in [-1, 1] -> stylemaps, one batched encoder pass."""
    return model.E(images.to(*placement(model)))


def sample_latents(model: StyleMapGAN, seeds: Sequence[int]) -> torch.Tensor:
    """One z per seed, identical on every device: [len(seeds), latent_channel_size] (CPU)."""
    return torch.cat([randn((1, model.G.latent_channel_size), s) for s in seeds])


@torch.inference_mode()
def sample(model: StyleMapGAN, seeds: Sequence[int], truncation: float = 1.0) -> torch.Tensor:
    """Random generation: seeds -> images [B, 3, size, size] in [-1, 1] (clamped)."""
    G = model.G
    return G(sample_latents(model, seeds).to(G.device), truncation=truncation).float().clamp(-1, 1)


@dataclass
class Edit:
    image: torch.Tensor  # [1, 3, size, size] in [-1, 1]
    cells: torch.Tensor  # [1, 1, S, S] bool: the stylemap cells taken from the reference
    codes: torch.Tensor | None = None  # the stylemaps of [original, reference]


@torch.inference_mode()
def local_edit(model: StyleMapGAN, original: torch.Tensor, reference: torch.Tensor,
               mask: torch.Tensor, space: Literal["w_plus", "w"] = "w_plus") -> Edit:
    """The reference where `mask` [1, 1, size, size] is 1, the original elsewhere."""
    G = model.G
    codes = encode(model, torch.cat([original, reference]))
    image = G.blend(codes[:1], codes[1:], mask, space=space)
    return Edit(image.float().clamp(-1, 1), G.level_mask(mask.to(G.device, G.dtype), G.latent_spatial_size),
                codes)


@torch.inference_mode()
def transplant(model: StyleMapGAN, original: torch.Tensor, references: torch.Tensor,
               masks: torch.Tensor, shifts: Sequence[tuple[int, int]], steps: int,
               codes: torch.Tensor | None = None) -> torch.Tensor:
    """The authors' demo: frames [steps, 3, size, size] from the original (t = 0) to every
    reference region pasted at its shift (t = 1), rendered a few frames per pass. `codes`:
    the stylemaps of [original, references] if already encoded."""
    if steps < 2:
        raise UserError("Use at least 2 interpolation frames (t = 0 and t = 1).")
    if codes is None:
        codes = encode(model, torch.cat([original, references]))
    frames = model.G.transplant(codes[:1], codes[1:], masks.to(codes.device), shifts, steps,
                                chunk=max(1, TRANSPLANT_PIXELS // model.size ** 2))
    return frames.float().clamp(-1, 1)


def landing_preview(model: StyleMapGAN, original: torch.Tensor, masks: torch.Tensor,
                    shifts: Sequence[tuple[int, int]]) -> np.ndarray:
    """The original with, per reference, the stylemap cells its region lands on (coloured)."""
    G = model.G
    cells = G.landing_cells(masks.to(G.device, G.dtype), shifts, G.latent_spatial_size).float().cpu()
    picture = original[0].float().cpu()
    for i, c in enumerate(cells):
        tinted = overlay(picture, c, REFERENCE_COLORS[i % len(REFERENCE_COLORS)], 0.45, mode="nearest")
        picture = torch.from_numpy(tinted).permute(2, 0, 1).float() / 127.5 - 1
    return to_uint8(picture[None])[0]


@dataclass
class Reconstruction:
    image: torch.Tensor
    mse: float
    lpips: float | None  # None when the LPIPS backbone is unavailable (offline, not cached)
    code: torch.Tensor | None = None  # the stylemap the image was decoded from


@torch.inference_mode()
def reconstruct(model: StyleMapGAN, image: torch.Tensor, with_lpips: bool = True) -> Reconstruction:
    """Encode and decode; MSE on [-1, 1] pixels and LPIPS-VGG, as the paper's Table 2."""
    code = encode(model, image)
    recon = model.G.synthesis(code).float().clamp(-1, 1)
    target = image.to(recon.device, recon.dtype)
    mse = float(F.mse_loss(recon, target))
    lp = float(lpips_distance(recon, target, net="vgg")[0]) if with_lpips else None
    return Reconstruction(recon, mse, lp, code)


@torch.inference_mode()
def style_mix(model: StyleMapGAN, first: torch.Tensor, second: torch.Tensor,
              codes: torch.Tensor | None = None) -> torch.Tensor:
    """[coarse, fine] mixes of two pictures: coarse keeps `first`'s 8x8 stylemaps (colour,
    texture) on `second`'s finer ones (structure); fine swaps the roles. `codes`: the
    stylemaps of [first, second] if already encoded."""
    if codes is None:
        codes = encode(model, torch.cat([first, second]))
    G = model.G
    return torch.cat([G.style_mix(codes[:1], codes[1:], "coarse"),
                      G.style_mix(codes[:1], codes[1:], "fine")]).float().clamp(-1, 1)


# ---- UI ------------------------------------------------------------------------------------
def example_region(size: int, where: str) -> np.ndarray:
    """The painted region of the seed examples: "lower half", "upper half" or "centre"."""
    region = np.zeros((size, size), bool)
    if where == "lower half":
        region[size // 2:] = True
    elif where == "upper half":
        region[: size // 2] = True
    else:
        region[size // 4: size - size // 4, size // 4: size - size // 4] = True
    return region


def build_tab(ctx: AppContext) -> None:
    ids = ctx.model_ids("stylemapgan")
    tab_header("Paint a region, get it from another picture, instantly: StyleMapGAN encodes both "
               "pictures to spatial stylemaps and mixes them where you painted. Upload photos or "
               "sample them from a seed.",
               HOW_IT_WORKS)
    licence_line(ctx.registry, "stylemap", ids)
    with gr.Row():
        model_id = gr.Dropdown(ids, value=ids[0] if ids else None, label="Model", scale=3)
        psi = gr.Slider(0.0, 1.0, value=0.7, step=0.05, label="Truncation ψ (sampling)", scale=2)
    download = DownloadAll(ctx, "stylemap")

    def registered_size(mid: str | None) -> int:
        """The model's image size from its registry entry (no loading): the shift range."""
        return int(ctx.registry.get(mid).config.get("size", 256)) if mid else 256

    def model_for(mid: str | None) -> StyleMapGAN:
        if not mid:
            raise UserError("Pick a StyleMapGAN model first.")
        return ctx.model(mid)

    @gpu(duration=60)
    @user_errors
    def on_sample(mid, truncation, seed, progress=gr.Progress(track_tqdm=True)):
        progress(0.0, desc=f"Loading {mid}")
        model = model_for(mid)
        return to_uint8(sample(model, parse_seeds(seed, max_count=1), float(truncation)))[0]

    def seed_row(target: gr.components.Component, default: int) -> gr.Number:
        return seed_picker(target, on_sample, [model_id, psi], default)

    animals = bundled_photos()  # two photos that ship with Gradio, or None
    first = ids[0] if ids else None
    with gr.Tabs():
        with gr.Tab("Local edit"):
            with gr.Row():
                with gr.Column():
                    le_original = gr.ImageEditor(label="Original: paint the region to replace",
                                                 format="png", type="numpy", layers=False,
                                                 brush=gr.Brush(colors=["#ff3333"], default_size=24))
                    le_seed_original = seed_row(le_original, 1)
                with gr.Column():
                    le_reference = gr.Image(label="Reference", format="png", type="numpy")
                    le_seed_reference = seed_row(le_reference, 2)
            with gr.Row():
                le_space = gr.Radio([("w+ (per resized stylemap)", "w_plus"), ("w (8×8 stylemap)", "w")],
                                    value="w_plus", label="Blend in")
                le_live = gr.Checkbox(value=ctx.device.type == "cuda", label="Update while painting")
                le_run = gr.Button("Edit", variant="primary")
            with gr.Row():
                le_input = gr.Image(label="Network input (cropped, resized)", format="png",
                                    interactive=False)
                le_cells = gr.Image(label="Mask as the network sees it (stylemap cells)",
                                    format="png", interactive=False, image_mode="L")
                le_result = gr.Image(label="Edited", format="png", interactive=False)
            le_region = gr.Dropdown(["lower half", "upper half", "centre"], value="lower half",
                                    visible=False)  # what the seed examples paint
            le_examples = labelled_examples(
                [[first, 0.7, 1, 2, "lower half", "w_plus"], [first, 0.7, 1, 2, "lower half", "w"],
                 [first, 0.7, 3, 4, "upper half", "w_plus"], [first, 0.7, 5, 6, "centre", "w_plus"]],
                ["lower half of sample 2 into sample 1 (w+)", "the same in w: blockier edges",
                 "upper half of sample 4 into sample 3", "centre of sample 6 into sample 5"],
                [model_id, psi, le_seed_original, le_seed_reference, le_region, le_space],
                label="Example edits (samples by seed, region painted for you)")
            if animals:  # photos that suit the AFHQ model; any model takes them
                lion, cheetah = animals
                labelled_examples([[lion, cheetah], [cheetah, lion]],
                                  ["lion ← cheetah (paint on the lion, then Edit)",
                                   "cheetah ← lion (paint on the cheetah, then Edit)"],
                                  [le_original, le_reference], label="Example photos (you paint)")

        with gr.Tab("Transplant"):
            gr.Markdown("Paint a region on each reference (up to three), then shift it to where it "
                        "should land on the original (pixels of the model's square).")
            with gr.Row():
                with gr.Column():
                    tp_original = gr.Image(label="Original", format="png", type="numpy")
                    seed_row(tp_original, 1)
                tp_refs, tp_dx, tp_dy = [], [], []
                for i in range(MAX_REFERENCES):
                    with gr.Column():
                        ed = gr.ImageEditor(label=f"Reference {i + 1}: paint the region to take",
                                            format="png", type="numpy", layers=False,
                                            brush=gr.Brush(colors=["#%02x%02x%02x" % REFERENCE_COLORS[i]],
                                                           default_size=24))
                        seed_row(ed, 2 + i)
                        dx, dy = shift_sliders(registered_size(first))
                        tp_dx.append(dx)
                        tp_dy.append(dy)
                        tp_refs.append(ed)
            with gr.Row():
                tp_steps = gr.Slider(2, 16, value=8, step=1, label="Interpolation frames")
                tp_run = gr.Button("Transplant", variant="primary")
            with gr.Row():
                tp_landing = gr.Image(label="Where the regions land (stylemap cells)", format="png",
                                      interactive=False)
                tp_result = gr.Image(label="Result at t", format="png", interactive=False)
            tp_t = gr.Slider(0, 1, value=1, step=1, label="Interpolation t (frame)")
            tp_strip = gr.Gallery(label="All frames, t = 0 … 1", columns=8, height=180, format="png")
            tp_frames = gr.State([])

        with gr.Tab("Reconstruction"):
            with gr.Row():
                with gr.Column():
                    rc_image = gr.Image(label="Photo", format="png", type="numpy")
                    seed_row(rc_image, 3)
                    rc_run = gr.Button("Reconstruct", variant="primary")
                rc_input = gr.Image(label="Network input", format="png", interactive=False)
                rc_result = gr.Image(label="Reconstruction", format="png", interactive=False)
            rc_metrics = gr.Markdown()
            rc_examples = (labelled_examples([[animals[0]], [animals[1]]],
                                             ["a lion photo", "a cheetah photo"], [rc_image],
                                             label="Example photos (reconstructed on click)")
                           if animals else None)

        with gr.Tab("Style mixing"):
            with gr.Row():
                with gr.Column():
                    sm_a = gr.Image(label="A", format="png", type="numpy")
                    seed_row(sm_a, 4)
                with gr.Column():
                    sm_b = gr.Image(label="B", format="png", type="numpy")
                    seed_row(sm_b, 5)
            sm_run = gr.Button("Mix", variant="primary")
            with gr.Row():
                sm_coarse = gr.Image(label="Coarse: A's 8×8 stylemaps on B's finer ones",
                                     format="png", interactive=False)
                sm_fine = gr.Image(label="Fine: B's 8×8 stylemaps on A's finer ones",
                                   format="png", interactive=False)
            sm_examples = (labelled_examples([[animals[1], animals[0]], [animals[0], animals[1]]],
                                             ["A cheetah, B lion", "A lion, B cheetah"], [sm_a, sm_b],
                                             label="Example pairs (mixed on click)")
                           if animals else None)

        with gr.Tab("Random"):
            with gr.Row():
                rg_seeds = gr.Textbox(value="0, 1, 2, 3", label="Seed(s)", scale=3)
                rg_dice = gr.Button("🎲", scale=0)
                rg_run = gr.Button("Generate", variant="primary", scale=1)
            rg_gallery = gr.Gallery(label="Samples", columns=4, format="png")
            rg_examples = labelled_examples([[first, "0, 1, 2, 3", 0.7], [first, "0, 1, 2, 3", 1.0]],
                                            ["seeds 0-3 · ψ 0.7", "seeds 0-3 · ψ 1.0 (full variety)"],
                                            [model_id, rg_seeds, psi], label="Examples")
    download.render()

    # ---- handlers ----
    def local_edit_run(mid, editor, reference, space, seeds=(), region=None):
        model = model_for(mid)
        size = model.size
        original, mask = editor_image_and_mask(editor, size)
        if reference is None:
            raise UserError("Add a reference picture (upload one or sample it from a seed).")
        ref = prepare(model, reference)
        edit = local_edit(model, original, ref, mask, space)
        outputs = (to_uint8(original)[0], mask_picture(edit.cells, size), to_uint8(edit.image)[0])
        run_record = download.run(
            "local_edit", {"model": mid},
            images={"original": original, "reference": ref, "result": outputs[2]},
            masks={"painted": mask, "cells": edit.cells.float()},
            arrays={"stylemap_original": edit.codes[:1], "stylemap_reference": edit.codes[1:]},
            seeds=seeds, settings={"space": space, **({"example_region": region} if region else {})},
            notes="seeds (examples only): original, reference. masks/cells: the stylemap cells "
                  "taken from the reference.")
        return outputs + (run_record,)

    @gpu(duration=60)
    @user_errors
    def on_local_edit(mid, editor, reference, space, progress=gr.Progress(track_tqdm=True)):
        return local_edit_run(mid, editor, reference, space)

    le_inputs = [model_id, le_original, le_reference, le_space]
    le_outputs = [le_input, le_cells, le_result, download.state]
    quiet_edit = quietly(on_local_edit, len(le_outputs))

    def on_live_edit(live, *args):
        """Re-run while painting: silent until there is something to edit."""
        return quiet_edit(*args) if live else [gr.update()] * len(le_outputs)

    le_run.click(on_local_edit, le_inputs, le_outputs, api_name="stylemap_edit", concurrency_id="gpu")
    le_space.change(quiet_edit, le_inputs, le_outputs, api_name=False,
                    concurrency_id="gpu")  # re-run a finished edit in the other space
    le_original.change(on_live_edit, [le_live] + le_inputs, le_outputs, api_name=False,
                       concurrency_id="gpu", trigger_mode="always_last", show_progress="minimal")

    @gpu(duration=60)
    @user_errors
    def on_edit_example(mid, truncation, seed_original, seed_reference, region, space,
                        progress=gr.Progress(track_tqdm=True)):
        """Sample two pictures, paint `region` on the first, edit (the seed examples)."""
        model = model_for(mid)
        seeds = [int(seed_original or 0), int(seed_reference or 0)]
        pictures = to_uint8(sample(model, seeds, float(truncation)))
        painted = example_region(pictures.shape[1], region)
        layer = np.zeros(painted.shape + (4,), np.uint8)
        layer[painted] = (255, 51, 51, 255)
        composite = pictures[0].copy()
        composite[painted] = (255, 51, 51)
        editor = {"background": pictures[0], "layers": [layer], "composite": composite}
        return (editor, pictures[1]) + local_edit_run(mid, editor, pictures[1], space, seeds, region)

    run_examples(le_examples, (on_edit_example,
                               [model_id, psi, le_seed_original, le_seed_reference, le_region, le_space],
                               [le_original, le_reference] + le_outputs))

    def collect_references(model: StyleMapGAN, editors, dxs, dys):
        refs, masks, shifts = [], [], []
        for i, (ed, dx, dy) in enumerate(zip(editors, dxs, dys)):
            if editor_is_empty(ed):
                continue
            image, mask = editor_image_and_mask(ed, model.size, required=False)
            if mask.sum() == 0:
                raise UserError(f"Reference {i + 1} has no painted region: paint what to take, "
                                "or clear that reference.")
            refs.append(image)
            masks.append(mask)
            shifts.append((int(dx or 0), int(dy or 0)))
        if not refs:
            raise UserError("Add at least one reference and paint the region to take from it.")
        return torch.cat(refs), torch.cat(masks), shifts

    @gpu(duration=90)
    @user_errors
    def on_transplant(mid, original, steps, *refs_and_shifts, progress=gr.Progress(track_tqdm=True)):
        n = MAX_REFERENCES
        editors, dxs, dys = refs_and_shifts[:n], refs_and_shifts[n:2 * n], refs_and_shifts[2 * n:]
        model = model_for(mid)
        if original is None:
            raise UserError("Add an original picture (upload one or sample it from a seed).")
        orig = prepare(model, original)
        refs, masks, shifts = collect_references(model, editors, dxs, dys)
        progress(0.3, desc="Encoding and rendering frames")
        codes = encode(model, torch.cat([orig, refs]))
        frames = to_uint8(transplant(model, orig, refs, masks, shifts, int(steps), codes=codes))
        strip = [(f, f"t = {t / (len(frames) - 1):.2f}") for t, f in enumerate(frames)]
        landing = landing_preview(model, orig, masks, shifts)
        run_record = download.run(
            "transplant", {"model": mid},
            images={"frame": list(frames), "original": orig, "reference": refs, "landing": landing},
            masks={"reference": masks}, arrays={"stylemaps": codes},
            settings={"frames": int(steps), "shifts_px": [list(s) for s in shifts]},
            notes="frame_01 is t = 0 (the original), the last frame t = 1; stylemaps: "
                  "[original, references...]; masks/reference_k: what is taken from reference k "
                  "(before its shift).")
        return (landing, frames[-1], strip, list(frames),
                gr.update(maximum=len(frames) - 1, value=len(frames) - 1), run_record)

    def on_pick_frame(frames, t):
        if not frames:
            return gr.update()
        return frames[min(int(t), len(frames) - 1)]

    tp_run.click(on_transplant, [model_id, tp_original, tp_steps] + tp_refs + tp_dx + tp_dy,
                 [tp_landing, tp_result, tp_strip, tp_frames, tp_t, download.state],
                 api_name="stylemap_transplant", concurrency_id="gpu")

    def on_model(mid):
        return shift_range(registered_size(mid), 2 * MAX_REFERENCES)

    model_id.change(on_model, model_id, tp_dx + tp_dy, api_name=False, queue=False)
    tp_t.change(on_pick_frame, [tp_frames, tp_t], tp_result, api_name=False, queue=False)

    @gpu(duration=60)
    @user_errors
    def on_reconstruct(mid, picture, progress=gr.Progress(track_tqdm=True)):
        model = model_for(mid)
        image = prepare(model, picture)
        try:
            rec = reconstruct(model, image)
        except UserError as e:  # LPIPS backbone missing: still show the reconstruction and MSE
            gr.Warning(str(e))
            rec = reconstruct(model, image, with_lpips=False)
        lp = "n/a (LPIPS backbone not available)" if rec.lpips is None else f"{rec.lpips:.3f}"
        text = (f"**MSE** {rec.mse:.4f} · **LPIPS-VGG** {lp} "
                "(paper, CelebA-HQ 8×8: MSE 0.023, LPIPS 0.237)")
        shown, result = to_uint8(image)[0], to_uint8(rec.image)[0]
        run_record = download.run("reconstruction", {"model": mid},
                                  images={"input": shown, "reconstruction": result},
                                  arrays={"stylemap": rec.code},
                                  settings={"mse": rec.mse, "lpips_vgg": rec.lpips})
        return shown, result, text, run_record

    rc_outputs = [rc_input, rc_result, rc_metrics, download.state]
    rc_run.click(on_reconstruct, [model_id, rc_image], rc_outputs,
                 api_name="stylemap_reconstruct", concurrency_id="gpu")
    if rc_examples:
        run_examples(rc_examples, (on_reconstruct, [model_id, rc_image], rc_outputs))

    @gpu(duration=60)
    @user_errors
    def on_mix(mid, a, b):
        model = model_for(mid)
        if a is None or b is None:
            raise UserError("Add both pictures A and B (upload or sample them).")
        first_, second = prepare(model, a), prepare(model, b)
        codes = encode(model, torch.cat([first_, second]))
        mixed = to_uint8(style_mix(model, first_, second, codes=codes))
        run_record = download.run("style_mixing", {"model": mid},
                                  images={"a": first_, "b": second, "coarse": mixed[0], "fine": mixed[1]},
                                  arrays={"stylemaps": codes},
                                  notes="coarse: A's 8x8 stylemaps on B's finer ones; fine: the reverse. "
                                        "stylemaps: [A, B].")
        return mixed[0], mixed[1], run_record

    sm_outputs = [sm_coarse, sm_fine, download.state]
    sm_run.click(on_mix, [model_id, sm_a, sm_b], sm_outputs, api_name="stylemap_mix",
                 concurrency_id="gpu")
    if sm_examples:
        run_examples(sm_examples, (on_mix, [model_id, sm_a, sm_b], sm_outputs))

    @gpu(duration=60)
    @user_errors
    def on_random(mid, seeds, truncation, progress=gr.Progress(track_tqdm=True)):
        model = model_for(mid)
        chosen = parse_seeds(seeds)
        images = to_uint8(sample(model, chosen, float(truncation)))
        run_record = download.run("random", {"model": mid}, images={"sample": list(images)},
                                  arrays={"z": sample_latents(model, chosen)}, seeds=chosen,
                                  settings={"truncation": float(truncation)},
                                  notes="sample_k comes from seeds[k - 1].")
        return [(img, f"seed {s}") for img, s in zip(images, chosen)], run_record

    rg_outputs = [rg_gallery, download.state]
    rg_run.click(on_random, [model_id, rg_seeds, psi], rg_outputs, api_name="stylemap_random",
                 concurrency_id="gpu")
    run_examples(rg_examples, (on_random, [model_id, rg_seeds, psi], rg_outputs))
    rg_dice.click(lambda: ", ".join(str(random.randint(0, MAX_SEED)) for _ in range(4)), None,
                  rg_seeds, queue=False, api_name=False)
