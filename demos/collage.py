"""Collage tab: composition by latent regression (Chai, Wulff, Isola, ICLR 2021).

Engine (no Gradio): `compose` pastes parts into one canvas (later parts on top) and returns
it with the union of their masks; `regenerate` runs the masked regressor E and the generator
G once each; `complete` (inpainting, several completions), `refine` (optional latent
optimisation on the known pixels), `variation_map` (the paper's part-independence probe)
and `random_hints` (the training masks). Models: a `core.models.regressor` encoder and the
StyleGAN2 generator it was trained for (named in the regressor's registry config).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence, Union

import gradio as gr
import numpy as np
import torch
import torch.nn.functional as F

from core.blend import translate
from core.context import AppContext
from core.device import generator as seeded
from core.device import placement
from core.errors import UserError
from core.images import editor_image_and_mask, editor_is_empty, heatmap, mask_picture, to_uint8
from core.lpips import lpips_distance
from core.models.proggan import ProGANGenerator
from core.models.stylegan2 import StyleGAN2Generator
from core.ui import (MAX_SEED, DownloadAll, gpu, labelled_examples, licence_line, quietly,
                     run_examples, seed_picker, shift_range, shift_sliders, tab_header, user_errors)
from demos.generate import generate

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
  the collage on the known pixels (the paper's Eq. 5 loss), in [-1, 1] units.
* **Inpaint**: erase a region; E imagines it. The regressor is deterministic, so the
  extra completions come from sparse **hints**: a few random blobs of other generated pictures
  placed inside the hole (our choice; the paper shows one completion per mask).
* **Refine** (optional, off by default): Adam steps on that code to lower MSE + LPIPS on the
  known pixels, a fast stand-in for the paper's "Enc+LBFGS" (3000 LBFGS steps).
* **Variation map**: replace the painted part with N other samples and look at how much each
  pixel of the result changes (per-pixel standard deviation): the paper's test of how
  independently parts are composed (Table 1). Change that leaks outside the part is measured.

Paper: [Chai, Wulff, Isola, *Using latent space regression to analyze and leverage
compositionality in GANs*, ICLR 2021]({PAPER}). StyleGAN2 domains regress W+ (one style
vector per layer); ProGAN domains (churches, living rooms, CelebA-HQ faces) regress the
Gaussian z itself, as in the paper.
"""
Generator = Union[StyleGAN2Generator, ProGANGenerator]  # both render a latent with .synthesis
MAX_PARTS = 3
HINT_COVERAGE = (0.1, 0.4)  # inpainting hints: sparse blobs inside the hole
TRAIN_COVERAGE = (0.3, 1.0)  # the authors' training masks: 30-100 % of pixels known
REFINE_LR = 0.01


# ---- engine --------------------------------------------------------------------------------
@dataclass
class Part:
    image: torch.Tensor  # [1, 3, S, S] in [-1, 1]
    mask: torch.Tensor  # [1, 1, S, S] in {0, 1}: the region to take
    shift: tuple[int, int] = (0, 0)  # (dx, dy) pixels: where the region lands


def compose(parts: Sequence[Part]) -> tuple[torch.Tensor, torch.Tensor]:
    """(collage, union mask): each part's region over the canvas, later parts on top; pixels
    no part covers stay 0 (unknown)."""
    if not parts:
        raise UserError("Add at least one part: a picture with the region to take painted.")
    collage = torch.zeros_like(parts[0].image)
    union = torch.zeros_like(parts[0].mask)
    for p in parts:
        image, mask = translate(p.image, *p.shift), translate(p.mask, *p.shift)
        collage = image * mask + collage * (1 - mask)
        union = torch.maximum(union, mask)
    if union.sum() == 0:
        raise UserError("The parts cover nothing: paint a region on at least one picture "
                        "(or it was shifted out of the frame).")
    return collage, union


def sample_images(G: Generator, seeds: Sequence[int]) -> torch.Tensor:
    """Generated pictures, as the regressor was trained on -> [B, 3, S, S] in [-1, 1]:
    StyleGAN2 with w broadcast, fixed noise, no truncation; ProGAN from the authors' z."""
    if isinstance(G, ProGANGenerator):
        with torch.inference_mode():
            return G(torch.cat([G.random_z(1, s) for s in seeds])).float().clamp(-1, 1)
    return generate(G, seeds).clamp(-1, 1)


@torch.inference_mode()
def regenerate(E: torch.nn.Module, G: Generator, collage: torch.Tensor,
               mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(image, w+): one regressor pass and one generator pass, batched over the inputs."""
    device, dtype = placement(E)
    w = E(collage.to(device, dtype), mask.to(device, dtype))
    return G.synthesis(w).float().clamp(-1, 1), w


def masked_l1(result: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean absolute error over the known pixels (all channels): the paper's Eq. 5."""
    m = mask.to(result.device, result.dtype).expand_as(result)
    return float((result - target.to(result)).abs().mul(m).sum() / m.sum().clamp(min=1))


def random_hints(size: int, seed: int, coverage: tuple[float, float] = TRAIN_COVERAGE,
                 batch: int = 1) -> torch.Tensor:
    """The authors' training masks (`mask_upsample`): uniform noise on a 6x6 grid, bilinearly
    upsampled, known where below one cutoff drawn from `coverage` -> [B, 1, size, size]."""
    g = seeded(seed)
    u = torch.rand(batch, 1, 6, 6, generator=g)
    up = F.interpolate(u, size=(size, size), mode="bilinear", align_corners=False)
    cut = coverage[0] + (coverage[1] - coverage[0]) * torch.rand(1, generator=g)
    return (up < cut).float()


def complete(E: torch.nn.Module, G: Generator, image: torch.Tensor, known: torch.Tensor,
             n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inpainting: n completions of `image` where `known` is 0 -> ([n, 3, S, S], hint masks).

    Completion 0 uses the known pixels only; completion k > 0 adds sparse blobs (10-40 % of the
    hole) of generated picture `seed + k` inside the hole, so E imagines n different fillings.
    """
    images, masks, _ = complete_with_latents(E, G, image, known, n, seed)
    return images, masks


@torch.inference_mode()
def complete_with_latents(E: torch.nn.Module, G: Generator, image: torch.Tensor, known: torch.Tensor,
                          n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`complete`, also returning the n regressed latents (W+, or ProGAN's z)."""
    size = image.shape[-1]
    hole = 1 - known
    canvases, masks = [image * known], [known]
    if n > 1:
        donors = sample_images(G, [seed + k for k in range(1, n)])
        for k in range(1, n):
            blob = random_hints(size, seed + k, HINT_COVERAGE) * hole
            canvases.append(image * known + donors[k - 1:k].to(image) * blob)
            masks.append(known + blob)
    images, latents = regenerate(E, G, torch.cat(canvases), torch.cat(masks))
    return images, torch.cat(masks), latents


def refine(E: torch.nn.Module, G: Generator, collage: torch.Tensor, mask: torch.Tensor,
           steps: int, lpips_weight: float = 1.0,
           progress: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, list[float]]:
    """Start from E's code (W+, or ProGAN's z) and take `steps` Adam steps on it against the
    known pixels (masked MSE + masked LPIPS-VGG, both averaged over the known pixels)
    -> (image, losses).
    G and E must be float32 (gradients)."""
    image, losses, _ = refine_with_latent(E, G, collage, mask, steps, lpips_weight, progress)
    return image, losses


def refine_with_latent(E: torch.nn.Module, G: Generator, collage: torch.Tensor, mask: torch.Tensor,
                       steps: int, lpips_weight: float = 1.0,
                       progress: Callable[[int, int], None] | None = None
                       ) -> tuple[torch.Tensor, list[float], torch.Tensor]:
    """`refine`, also returning the refined latent."""
    with torch.inference_mode():
        w0 = E(collage, mask)
    w = w0.clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=REFINE_LR)
    target, m = collage.detach(), mask.detach()
    denom = m.sum().clamp(min=1)
    losses = []
    for step in range(steps):
        out = G.synthesis(w)
        mse = ((out - target).square() * m).sum() / (denom * 3)
        loss = mse
        if lpips_weight:
            small = [F.adaptive_avg_pool2d(t, 256) if t.shape[-1] > 256 else t for t in (out, target, m)]
            lp = lpips_distance(small[0], small[1], net="vgg", spatial=True)
            loss = loss + lpips_weight * (lp * small[2]).sum() / small[2].sum().clamp(min=1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if progress:
            progress(step + 1, steps)
    with torch.inference_mode():
        return G.synthesis(w.detach()).float().clamp(-1, 1), losses, w.detach()


@torch.inference_mode()
def variation_map(E: torch.nn.Module, G: Generator, base: torch.Tensor, part: torch.Tensor,
                  n: int, seed: int, batch: int = 4) -> tuple[torch.Tensor, float]:
    """The paper's independence probe: put n other samples' pixels into the part, regenerate
    each (full mask), return the per-pixel standard deviation [S, S] (mean over RGB) and the
    share of it outside the part (0: the part changes only itself)."""
    if n < 2:
        raise UserError("Use at least 2 samples for a standard deviation.")
    outs = []
    for start in range(0, n, batch):
        seeds = [seed + k for k in range(start, min(n, start + batch))]
        donors = sample_images(G, seeds).to(base)
        canvas = part * donors + (1 - part) * base
        outs.append(regenerate(E, G, canvas, torch.ones_like(part).expand(len(seeds), -1, -1, -1))[0].cpu())
    sigma = torch.cat(outs).std(0, unbiased=False).mean(0)
    outside = (1 - part[0, 0].cpu()) * sigma
    return sigma, float(outside.sum() / sigma.sum().clamp(min=1e-12))


def framed(value: dict | None, size: int, content: Sequence[int] | None = None,
           required: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """An editor's picture and paint in the generator's frame. Domains whose generator draws
    a letterboxed picture (LSUN cars: 512x384 content between black bars in 512x512) take
    uploads the same way: centre-cropped to the content's aspect, resized, padded with black
    (the bars, never painted)."""
    if not content or tuple(content) == (size, size):
        return editor_image_and_mask(value, size, required=required)
    w, h = int(content[0]), int(content[1])
    image, mask = editor_image_and_mask(value, (w, h), required=required)
    pad = ((size - w) // 2, size - w - (size - w) // 2, (size - h) // 2, size - h - (size - h) // 2)
    return F.pad(image, pad, value=-1.0), F.pad(mask, pad, value=0.0)


def unknown_as_grey(collage: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """The collage as the authors display it: pixels no part covers in light grey (200)."""
    grey = torch.full_like(collage, 200 / 127.5 - 1)
    return to_uint8(collage * mask + grey * (1 - mask))[0]


# ---- UI ------------------------------------------------------------------------------------
def centre_square(size: int) -> np.ndarray:
    """The middle half of a square frame in each direction (the examples' part)."""
    region = np.zeros((size, size), bool)
    region[size // 4: size - size // 4, size // 4: size - size // 4] = True
    return region


def painted_value(picture: np.ndarray, region: np.ndarray | None) -> dict:
    """A gr.ImageEditor value: `picture` with `region` painted white (nothing if None)."""
    if region is None:
        return {"background": picture, "layers": [], "composite": picture}
    layer = np.zeros(region.shape + (4,), np.uint8)
    layer[region] = 255
    composite = picture.copy()
    composite[region] = 255
    return {"background": picture, "layers": [layer], "composite": composite}


def build_tab(ctx: AppContext) -> None:
    ids = ctx.model_ids("regressor")
    tab_header("Cut parts out of several pictures, paste them into one canvas, and let the GAN "
               "turn the collage into one coherent picture, in a single pass.",
               HOW_IT_WORKS)
    generators = [ctx.registry.get(i).config.get("generator") for i in ids]
    licence_line(ctx.registry, "collage", ids + [g for g in generators if g in ctx.registry.ids()])
    model_id = gr.Dropdown(ids, value=ids[0] if ids else None, label="Domain (regressor + generator)")
    download = DownloadAll(ctx, "collage")

    def models(mid: str | None, dtype: torch.dtype | None = None):
        if not mid:
            raise UserError("Pick a domain first.")
        entry = ctx.registry.get(mid)
        gen_id = entry.config.get("generator")
        if not gen_id:
            raise UserError(f"Registry entry {mid!r} does not name the generator it was trained for "
                            "(config 'generator').")
        E, G = ctx.model(mid, dtype), ctx.model(gen_id, dtype)
        if E.n_latent != G.n_latent:  # ProGAN: one z on both sides
            raise UserError(f"{mid} predicts {E.n_latent} style vectors but {gen_id} takes "
                            f"{G.n_latent}: they are not a matching pair.")
        return E, G

    def roles(mid: str) -> dict[str, str]:
        return {"regressor": mid, "generator": ctx.registry.get(mid).config.get("generator")}

    def content(mid: str | None) -> list[int] | None:
        """The picture area inside the frame, [width, height] (registry config), if smaller."""
        return ctx.registry.get(mid).config.get("content") if mid else None

    def frame_size(mid: str | None) -> int:
        """The paired generator's image size, from the registry (nothing is loaded): the
        range of the shift sliders."""
        gen = ctx.registry.get(mid).config.get("generator") if mid else None
        return ctx.registry.get(gen).image_size(512) if gen else 512

    @gpu(duration=60)
    @user_errors
    def on_sample(mid, seed, progress=gr.Progress(track_tqdm=True)):
        _, G = models(mid)
        return to_uint8(sample_images(G, [int(seed or 0)]))[0]

    def picture(editor_label: str, default_seed: int, editor: bool = True):
        comp = (gr.ImageEditor(label=editor_label, format="png", type="numpy", layers=False,
                               brush=gr.Brush(colors=["#ffffff"], default_size=24))
                if editor else gr.Image(label=editor_label, format="png", type="numpy"))
        return comp, seed_picker(comp, on_sample, [model_id], default_seed)

    span = frame_size(ids[0] if ids else None)
    with gr.Tabs():
        with gr.Tab("Compose"):
            with gr.Row():
                with gr.Column():
                    base, base_seed = picture("Base: paint what to keep (nothing painted: all of it)", 1)
                parts, part_seeds, dxs, dys = [], [], [], []
                for i in range(MAX_PARTS):
                    with gr.Column():
                        part, part_seed = picture(f"Part {i + 1}: paint the region to take", 2 + i)
                        parts.append(part)
                        part_seeds.append(part_seed)
                        dx, dy = shift_sliders(span)
                        dxs.append(dx)
                        dys.append(dy)
            with gr.Row():
                live = gr.Checkbox(value=True, label="Update while painting")
                do_refine = gr.Checkbox(value=False, label="Refine (optimise the latent on the known pixels)")
                refine_steps = gr.Slider(5, 200, value=30, step=5, label="Refine steps")
                compose_btn = gr.Button("Compose", variant="primary")
            with gr.Row():
                collage_out = gr.Image(label="Collage (unknown: grey)", format="png", interactive=False)
                mask_out = gr.Image(label="Known pixels (union mask)", format="png", interactive=False,
                                    image_mode="L")
                result_out = gr.Image(label="Result G(E(collage, mask))", format="png", interactive=False)
            compose_info = gr.Markdown()
            first = ids[0] if ids else None
            examples = labelled_examples(
                [[first, 1, 2, 0, 0], [first, 1, 2, span // 4, 0], [first, 5, 6, 0, span // 8]],
                ["centre of sample 2 pasted on sample 1",
                 "the same part, moved right by a quarter of the frame",
                 "centre of sample 6 on sample 5, moved down"],
                [model_id, base_seed, part_seeds[0], dxs[0], dys[0]],
                label="Example collages (samples by seed; part 1's centre painted, all of the base kept)")

        with gr.Tab("Inpaint"):
            with gr.Row():
                with gr.Column():
                    ip_image, _ = picture("Picture: paint the region to erase", 7)
                    with gr.Row():
                        ip_n = gr.Slider(1, 8, value=4, step=1, label="Completions")
                        ip_seed = gr.Number(value=0, precision=0, minimum=0, maximum=MAX_SEED,
                                            label="Hint seed")
                    with gr.Row():
                        ip_run = gr.Button("Inpaint", variant="primary")
                        ip_random = gr.Button("Random hints (the training masks)")
                ip_masked = gr.Image(label="What E sees (unknown: grey)", format="png", interactive=False)
            ip_gallery = gr.Gallery(label="Completions", columns=4, format="png")

        with gr.Tab("Variation map"):
            with gr.Row():
                with gr.Column():
                    vm_image, _ = picture("Picture: paint one part (eyes, mouth, a window...)", 9)
                    with gr.Row():
                        vm_n = gr.Slider(2, 20, value=8, step=1, label="Samples N")
                        vm_seed = gr.Number(value=100, precision=0, minimum=0, maximum=MAX_SEED,
                                            label="Seed")
                    vm_run = gr.Button("Compute variation map", variant="primary")
                vm_map = gr.Image(label="Per-pixel standard deviation", format="png", interactive=False)
            vm_info = gr.Markdown()
    download.render()

    # ---- handlers ----
    model_id.change(lambda mid: shift_range(frame_size(mid), 2 * MAX_PARTS), model_id, dxs + dys,
                    api_name=False, queue=False)

    def editor_part(value, size: int, box, shift=(0, 0), whole_if_empty: bool = False) -> Part | None:
        if editor_is_empty(value):
            return None
        image, mask = framed(value, size, box, required=False)
        if mask.sum() == 0:
            if not whole_if_empty:
                return None
            mask = torch.ones_like(mask)
        return Part(image, mask, (int(shift[0] or 0), int(shift[1] or 0)))

    def compose_run(mid, base_value, refine_on, steps, parts_and_shifts, progress):
        n = MAX_PARTS
        editors, px, py = parts_and_shifts[:n], parts_and_shifts[n:2 * n], parts_and_shifts[2 * n:]
        E, G = models(mid)
        size = G.size
        box = content(mid)
        chosen = [editor_part(base_value, size, box, whole_if_empty=True)]
        for i, (ed, dx, dy) in enumerate(zip(editors, px, py)):
            part = editor_part(ed, size, box, (dx, dy))
            if not editor_is_empty(ed) and part is None:
                gr.Warning(f"Part {i + 1} has no painted region: it is left out.")
            chosen.append(part)
        collage, union = compose([p for p in chosen if p is not None])
        if refine_on:
            E32, G32 = models(mid, torch.float32)
            device, _ = placement(E32)
            result, losses, latent = refine_with_latent(
                E32, G32, collage.to(device), union.to(device), int(steps),
                progress=lambda d, t: progress(d / t, desc=f"Refining {d}/{t}"))
            note = f" · refined in {int(steps)} Adam steps (loss {losses[0]:.3f} → {losses[-1]:.3f})"
        else:
            result, latent = regenerate(E, G, collage, union)
            losses, note = [], ""
        l1 = masked_l1(result, collage, union)
        info = (f"Masked L1 on the known pixels: **{l1:.3f}** "
                f"· known: {float(union.mean()) * 100:.0f} % of the picture{note}")
        shown, result_u8 = unknown_as_grey(collage, union), to_uint8(result)[0]
        names = ["base"] + [f"part_{i}" for i in range(1, n + 1)]
        used = [(name, p) for name, p in zip(names, chosen) if p is not None]
        run_record = download.run(
            "compose", roles(mid),
            images={"result": result_u8, "collage": shown, **{name: p.image for name, p in used}},
            masks={"known": union, **{name: p.mask for name, p in used}},
            arrays={"latent": latent, **({"refine_losses": losses} if losses else {})},
            settings={"refine": bool(refine_on), "refine_steps": int(steps) if refine_on else 0,
                      "refine_lr": REFINE_LR if refine_on else None,
                      "shifts_px": {name: list(p.shift) for name, p in used if name != "base"},
                      "masked_l1": l1, "frame": size, "content": box},
            notes="Pictures are the inputs as the network saw them (framed to the generator's "
                  "size); masks: white = taken from that picture (before its shift).")
        return shown, mask_picture(union), result_u8, info, run_record

    @gpu(duration=120)
    @user_errors
    def on_compose(mid, base_value, refine_on, steps, *parts_and_shifts,
                   progress=gr.Progress(track_tqdm=True)):
        return compose_run(mid, base_value, refine_on, steps, parts_and_shifts, progress)

    compose_inputs = [model_id, base, do_refine, refine_steps] + parts + dxs + dys
    compose_outputs = [collage_out, mask_out, result_out, compose_info, download.state]
    compose_btn.click(on_compose, compose_inputs, compose_outputs, api_name="collage_compose",
                      concurrency_id="gpu")

    @gpu(duration=60)
    @user_errors
    def on_example(mid, seed_base, seed_part, dx, dy, progress=gr.Progress(track_tqdm=True)):
        """Sample two pictures, paint the centre of the second, compose (the examples)."""
        _, G = models(mid)
        pictures = to_uint8(sample_images(G, [int(seed_base or 0), int(seed_part or 0)]))
        base_value = painted_value(pictures[0], None)
        part_value = painted_value(pictures[1], centre_square(pictures.shape[1]))
        rest = (part_value, None, None, dx, 0, 0, dy, 0, 0)
        return (base_value, part_value) + compose_run(mid, base_value, False, 30, rest, progress)

    run_examples(examples, (on_example, [model_id, base_seed, part_seeds[0], dxs[0], dys[0]],
                            [base, parts[0]] + compose_outputs))

    quiet_compose = quietly(on_compose, len(compose_outputs))

    def on_live(live_on, mid, base_value, refine_on, steps, *rest):
        """Every stroke or shift re-runs one regressor + generator pass (never the slow
        refinement); silent until there is something to compose."""
        editors = (base_value,) + rest[:MAX_PARTS]
        if not live_on or refine_on or all(editor_is_empty(ed) for ed in editors):
            return [gr.update()] * len(compose_outputs)
        return quiet_compose(mid, base_value, False, steps, *rest)

    for trigger in [base.change] + [p.change for p in parts] + [d.release for d in dxs + dys]:
        trigger(on_live, [live] + compose_inputs, compose_outputs, api_name=False,
                concurrency_id="gpu", trigger_mode="always_last", show_progress="minimal")

    def _inpaint(mid, value, n, seed, random_mask: bool):
        E, G = models(mid)
        size = G.size
        image, erased = framed(value, size, content(mid), required=not random_mask)
        if random_mask:
            known = random_hints(size, int(seed or 0))
        else:
            known = 1 - erased
            if known.sum() == 0:
                raise UserError("Everything is erased: leave some of the picture unpainted.")
        images, masks, latents = complete_with_latents(E, G, image, known, int(n), int(seed or 0))
        completions = to_uint8(images)
        gallery = [(img, "known pixels only" if k == 0 else f"with hints {k}")
                   for k, img in enumerate(completions)]
        shown = unknown_as_grey(image, known)
        run_record = download.run(
            "random_hints" if random_mask else "inpaint", roles(mid),
            images={"completion": list(completions), "input": shown, "picture": image},
            masks={"known": known, "hints": [m for m in masks[1:]]},
            arrays={"latents": latents}, seeds=[int(seed or 0)],
            settings={"completions": int(n), "random_hints": random_mask,
                      "hint_coverage": list(HINT_COVERAGE), "training_coverage": list(TRAIN_COVERAGE)},
            notes="completion_01 uses the known pixels only; completion k > 1 adds hint blobs of "
                  "generated picture seed + k - 1 (masks/hints_*: known pixels + hints).")
        return shown, gallery, run_record

    @gpu(duration=60)
    @user_errors
    def on_inpaint(mid, value, n, seed, progress=gr.Progress(track_tqdm=True)):
        return _inpaint(mid, value, n, seed, random_mask=False)

    @gpu(duration=60)
    @user_errors
    def on_random_hints(mid, value, n, seed, progress=gr.Progress(track_tqdm=True)):
        return _inpaint(mid, value, n, seed, random_mask=True)

    ip_inputs = [model_id, ip_image, ip_n, ip_seed]
    ip_outputs = [ip_masked, ip_gallery, download.state]
    ip_run.click(on_inpaint, ip_inputs, ip_outputs, api_name="collage_inpaint", concurrency_id="gpu")
    ip_random.click(on_random_hints, ip_inputs, ip_outputs, api_name="collage_random_hints",
                    concurrency_id="gpu")

    @gpu(duration=120)
    @user_errors
    def on_variation(mid, value, n, seed, progress=gr.Progress(track_tqdm=True)):
        E, G = models(mid)
        size = G.size
        base_image, part = framed(value, size, content(mid))
        progress(0.1, desc=f"Regenerating {int(n)} variants")
        sigma, leak = variation_map(E, G, base_image, part, int(n), int(seed or 0))
        inside = float((sigma * part[0, 0]).sum() / part.sum())
        outside = float((sigma * (1 - part[0, 0])).sum() / (1 - part).sum().clamp(min=1))
        info = (f"Share of the change outside the painted part: **{leak * 100:.1f} %** "
                f"(0 %: perfectly independent parts) · mean σ inside {inside:.3f}, outside {outside:.3f}")
        picture_map = heatmap(sigma, vmin=0)
        run_record = download.run(
            "variation_map", roles(mid), images={"variation_map": picture_map, "picture": base_image},
            masks={"part": part}, arrays={"sigma": sigma}, seeds=[int(seed or 0)],
            settings={"samples": int(n), "share_outside": leak, "mean_sigma_inside": inside,
                      "mean_sigma_outside": outside},
            notes="The part is replaced by generated pictures seed, seed + 1, ... (N of them).")
        return picture_map, info, run_record

    vm_run.click(on_variation, [model_id, vm_image, vm_n, vm_seed], [vm_map, vm_info, download.state],
                 api_name="collage_variation", concurrency_id="gpu")
