"""Collage tab: composition by latent regression (Chai, Wulff, Isola, ICLR 2021).

Engine (no Gradio): `compose` pastes parts into one canvas (later parts on top) and returns
it with the union of their masks; `regenerate` runs the masked regressor E and the generator
G once each; `complete` (inpainting, several completions), `refine` (optional latent
optimisation on the known pixels), `variation_map` (the paper's part-independence probe)
and `random_hints` (the training masks). Models: a `core.models.regressor` encoder and the
generator it was trained for (the regressor's registry entry names it: `entry.generator`).

Handlers (`compose_collage`, `inpaint`, `inpaint_random_hints`, `compute_variation_map`,
`sample_picture`, `use_photo`, ...) are module-level functions of the app context and the
widgets' values; `build_tab` lays out one builder per sub-tab (Compose, Inpaint, Variation map).

A person's photo enters Compose (as the base) and Inpaint through `use_photo`: opened with
`open_photo`, framed as the domain's training pictures were (`core.faces.frame_photo` with the
registry's framing: FFHQ or CelebA-HQ face alignment, letterbox, centre crop) and put into the
editor; the `FramedPhoto` is kept per session, and while the editor still holds its network
input the result is also pasted back into the photo at full resolution ("Result in your
photo", also in "Download all").
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence, Union

import gradio as gr
import numpy as np
import torch
import torch.nn.functional as F

from core.blend import translate
from core.context import AppContext
from core.device import generator as seeded
from core.device import placement
from core.errors import UserError
from core.faces import FramedPhoto, frame_for_model, framing_sentence
from core.images import (ExamplePhoto, editor_holds, editor_image_and_mask, editor_is_empty,
                         heatmap, mask_picture, photos_for, to_uint8)
from core.lpips import lpips_distance
from core.models.generator import Generator
from core.recipe import Run
from core.ui import (GPU_LANE, MAX_SEED, TabWiring, faces_gallery, gpu_task, labelled_examples,
                     licence_line, photo_controls, quietly, record, seed_picker, shift_range,
                     shift_sliders, tab_header, user_errors)

if TYPE_CHECKING:  # model code is imported when a model is loaded, not at start-up
    from core.models.proggan import ProGANGenerator
    from core.models.stylegan2 import StyleGAN2Generator

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

* **Your photo**: Compose (as the base) and Inpaint take a photo framed as the domain's
  training pictures were (faces aligned with the FFHQ or CelebA-HQ recipe, cars letterboxed,
  churches, horses and rooms centre-cropped); the result is also pasted back into the photo at
  its full resolution, with a feathered edge ("Result in your photo").

Paper: [Chai, Wulff, Isola, *Using latent space regression to analyze and leverage
compositionality in GANs*, ICLR 2021]({PAPER}). StyleGAN2 domains regress W+ (one style
vector per layer); ProGAN domains (churches, living rooms, CelebA-HQ faces) regress the
Gaussian z itself, as in the paper.
"""
TAB = "collage"
# the generators a regressor predicts for: both render its latent (W+, or ProGAN's z) with .synthesis
Paired = Union["StyleGAN2Generator", "ProGANGenerator"]
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
    """Generated pictures, as the regressor was trained on -> [B, 3, S, S] in [-1, 1]: the
    family's own sampler (StyleGAN2: `seed_normal` z; ProGAN: the authors' z per seed), no
    truncation (the authors trained on untruncated samples), fixed noise."""
    return G.render(G.sample_latents([int(s) for s in seeds]), truncation=1.0)


@torch.inference_mode()
def regenerate(E: torch.nn.Module, G: Paired, collage: torch.Tensor,
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


def complete(E: torch.nn.Module, G: Paired, image: torch.Tensor, known: torch.Tensor,
             n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inpainting: n completions of `image` where `known` is 0 -> ([n, 3, S, S], hint masks).

    Completion 0 uses the known pixels only; completion k > 0 adds sparse blobs (10-40 % of the
    hole) of generated picture `seed + k` inside the hole, so E imagines n different fillings.
    """
    images, masks, _ = complete_with_latents(E, G, image, known, n, seed)
    return images, masks


@torch.inference_mode()
def complete_with_latents(E: torch.nn.Module, G: Paired, image: torch.Tensor, known: torch.Tensor,
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


def refine(E: torch.nn.Module, G: Paired, collage: torch.Tensor, mask: torch.Tensor,
           steps: int, lpips_weight: float = 1.0,
           progress: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, list[float]]:
    """Start from E's code (W+, or ProGAN's z) and take `steps` Adam steps on it against the
    known pixels (masked MSE + masked LPIPS-VGG, both averaged over the known pixels)
    -> (image, losses).
    G and E must be float32 (gradients)."""
    image, losses, _ = refine_with_latent(E, G, collage, mask, steps, lpips_weight, progress)
    return image, losses


def refine_with_latent(E: torch.nn.Module, G: Paired, collage: torch.Tensor, mask: torch.Tensor,
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
def variation_map(E: torch.nn.Module, G: Paired, base: torch.Tensor, part: torch.Tensor,
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


# ---- the model pair and its frame, from the registry -----------------------------------------
DEFAULT_FRAME = 512  # the shift sliders' span while no generator size is known


def load_pair(ctx: AppContext, model_id: str | None,
              dtype: torch.dtype | None = None) -> tuple[torch.nn.Module, Paired]:
    """(regressor E, the generator G it was trained for): the pairing is the regressor's
    registry entry (`generator`); a regressor whose latent G cannot take is refused here
    rather than failing inside the network."""
    if not model_id:
        raise UserError("Pick a domain first.")
    entry = ctx.registry.get(model_id)
    gen_id = ctx.registry.generator_of(entry).id
    E, G = ctx.model(model_id, dtype), ctx.model(gen_id, dtype)
    if E.n_latent != G.n_latent:  # ProGAN: one z on both sides
        raise UserError(f"{model_id} predicts {E.n_latent} style vectors but {gen_id} takes "
                        f"{G.n_latent}: they are not a matching pair.")
    return E, G


def roles(ctx: AppContext, model_id: str) -> dict[str, str | None]:
    """The recipe's models: the regressor and its generator."""
    return {"regressor": model_id, "generator": ctx.registry.get(model_id).generator}


def content_of(ctx: AppContext, model_id: str) -> tuple[int, int] | None:
    """The picture area (width, height) inside the generator's square frame when smaller
    (LSUN cars' letterbox): the regressor's registry `meta.content`, else its generator's."""
    return ctx.registry.content_of(ctx.registry.get(model_id))


def frame_size(ctx: AppContext, model_id: str | None) -> int:
    """The paired generator's picture size, from the registry (nothing is loaded): the range
    of the shift sliders. Falls back to DEFAULT_FRAME when the pairing is unknown (the Compose
    button then says what is wrong)."""
    if not model_id:
        return DEFAULT_FRAME
    try:
        size = ctx.registry.generator_of(ctx.registry.get(model_id)).image_size()
    except UserError:
        return DEFAULT_FRAME
    return size or DEFAULT_FRAME


# ---- a person's photo ------------------------------------------------------------------------
def framing_of(ctx: AppContext, model_id: str) -> str:
    """How photos are cut for a domain: the regressor's registry framing (inherited from its
    generator: the regressor sees what the generator draws)."""
    return ctx.registry.framing_of(ctx.registry.get(model_id))


def framing_line(ctx: AppContext, model_id: str | None) -> str:
    """The one sentence under the photo upload saying how a photo becomes the network input."""
    if not model_id:
        return "Pick a domain: photos are framed as its training pictures were."
    return framing_sentence(framing_of(ctx, model_id))


def domain_photos(ctx: AppContext, ids: Sequence[str]) -> list[ExamplePhoto]:
    """The example photos that suit the tab's domains (`photos_for` each, in order, once
    each): faces for the face domains, animals for the others."""
    seen, photos = set(), []
    for model_id in ids:
        for p in photos_for(framing_of(ctx, model_id), model_id):
            if p.path not in seen:
                seen.add(p.path)
                photos.append(p)
    return photos


def frame_for_domain(ctx: AppContext, model_id: str | None, photo: Any, face: float | None = 1,
                     plain: bool = False) -> FramedPhoto:
    """A person's photo (a path) -> `FramedPhoto` in the paired generator's frame (its size,
    the domain's framing and content area), so the regressor sees it as it saw its training
    pictures."""
    if not model_id:
        raise UserError("Pick a domain first.")
    entry = ctx.registry.get(model_id)
    generator = ctx.registry.generator_of(entry)
    size = generator.image_size()
    if not size:
        raise UserError(f"The registry does not say what size {generator.id} draws: "
                        f"{model_id} cannot frame a photo for it.")
    return frame_for_model(ctx.registry, model_id, photo, size, face, plain)


def photo_in_use(framed_photo: FramedPhoto | None, value: dict | None) -> FramedPhoto | None:
    """The kept photo if the editor still holds its network input (paint on top is fine);
    None once a sample, an example or another picture replaced it, so a result is never
    pasted into a photo it was not made from. A browser's canvas may re-encode the picture,
    so `core.images.editor_holds` allows small differences."""
    if framed_photo is None or not editor_holds(value, framed_photo.aligned.image):
        return None
    return framed_photo


def in_photo_images(framed_photo: FramedPhoto | None, result: np.ndarray,
                    mask: np.ndarray | None = None) -> dict:
    """"Result in your photo" for a run's pictures: the result pasted back into the photo at
    full resolution (feathered; `mask` [S, S] in the frame restricts it to the edited region)
    and the photo itself; nothing when the run did not start from the photo."""
    if framed_photo is None:
        return {}
    return {"result_in_photo": framed_photo.paste(result, mask), "photo": framed_photo.photo}


def photo_settings(framed_photo: FramedPhoto | None) -> dict | None:
    """The recipe's account of the photo a run started from (None: it did not)."""
    return None if framed_photo is None else framed_photo.describe()


def shown_in_photo(run: Run | None, operations: Sequence[str] = ("compose",)) -> np.ndarray | None:
    """The last run's "Result in your photo" when it is one of `operations` (the sub-tab's own),
    else None (clears the picture: that run did not start from the photo)."""
    if run is None or run.recipe.get("operation") not in operations:
        return None
    return run.images.get("result_in_photo")


# ---- editor values -> parts ------------------------------------------------------------------
def editor_part(value: dict | None, size: int, content: Sequence[int] | None,
                shift: Sequence[Any] = (0, 0), whole_if_empty: bool = False) -> Part | None:
    """One editor as a Part in the generator's frame: None for an unused slot or (unless
    `whole_if_empty`, the base) a picture with nothing painted."""
    if editor_is_empty(value):
        return None
    image, mask = framed(value, size, content, required=False)
    if mask.sum() == 0:
        if not whole_if_empty:
            return None
        mask = torch.ones_like(mask)
    return Part(image, mask, (int(shift[0] or 0), int(shift[1] or 0)))


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


# ---- handlers (plain functions of the context and the widgets' values) ---------------------
ComposeOutputs = tuple[np.ndarray, np.ndarray, np.ndarray, str, Run]


@gpu_task(duration=60)
def sample_picture(ctx: AppContext, model_id: str | None, seed: float | None,
                   progress=gr.Progress(track_tqdm=True)) -> np.ndarray:
    """A sample of the domain's generator, as the regressor was trained on (every editor's
    "Sample from seed")."""
    _, G = load_pair(ctx, model_id)
    return to_uint8(sample_images(G, [int(seed or 0)]))[0]


@user_errors
def use_photo(ctx: AppContext, model_id: str | None, photo: str | None, face: float | None = 1,
              plain: bool = False) -> tuple[dict, dict, list, FramedPhoto]:
    """Your photo into an editor: framed for the domain -> (editor value holding the network
    input, the network input labelled with what it is, the faces found, the FramedPhoto kept
    for pasting results back). Uses no model (face detection runs on the CPU)."""
    framed_photo = frame_for_domain(ctx, model_id, photo, face, plain)
    picture = np.asarray(framed_photo.aligned.image.convert("RGB"))
    return (painted_value(picture, None), gr.update(value=picture, label=framed_photo.note()),
            faces_gallery(framed_photo), framed_photo)


def reframe_photo(ctx: AppContext, model_id: str | None, photo: str | None, face: float | None,
                  plain: bool) -> tuple | list:
    """Another face or plain framing picked: frame the photo again (nothing to do without one)."""
    if not photo:
        return [gr.update()] * 4
    return use_photo(ctx, model_id, photo, face, plain)


def shift_ranges(ctx: AppContext, model_id: str | None) -> list:
    """A new domain: the shift sliders span its frame."""
    return shift_range(frame_size(ctx, model_id), 2 * MAX_PARTS)


def _compose(ctx: AppContext, model_id: str | None, base_value: dict | None, refine_on: bool,
             steps: float, parts_and_shifts: Sequence[Any], progress) -> ComposeOutputs:
    """The Compose run: parts_and_shifts = MAX_PARTS editors, then their dx, then their dy,
    then (optional) the FramedPhoto kept by "Use as base"."""
    n = MAX_PARTS
    editors, px, py = parts_and_shifts[:n], parts_and_shifts[n:2 * n], parts_and_shifts[2 * n:3 * n]
    photo = photo_in_use(parts_and_shifts[3 * n] if len(parts_and_shifts) > 3 * n else None,
                         base_value)
    E, G = load_pair(ctx, model_id)
    size, box = G.size, content_of(ctx, model_id)
    chosen = [editor_part(base_value, size, box, whole_if_empty=True)]
    for i, (ed, dx, dy) in enumerate(zip(editors, px, py)):
        part = editor_part(ed, size, box, (dx, dy))
        if not editor_is_empty(ed) and part is None:
            gr.Warning(f"Part {i + 1} has no painted region: it is left out.")
        chosen.append(part)
    collage, union = compose([p for p in chosen if p is not None])
    if refine_on:
        E32, G32 = load_pair(ctx, model_id, torch.float32)
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
    run = record(
        ctx, TAB, "compose", roles(ctx, model_id),
        images={"result": result_u8, "collage": shown, **{name: p.image for name, p in used},
                **in_photo_images(photo, result_u8)},
        masks={"known": union, **{name: p.mask for name, p in used}},
        arrays={"latent": latent, **({"refine_losses": losses} if losses else {})},
        settings={"refine": bool(refine_on), "refine_steps": int(steps) if refine_on else 0,
                  "refine_lr": REFINE_LR if refine_on else None,
                  "shifts_px": {name: list(p.shift) for name, p in used if name != "base"},
                  "masked_l1": l1, "frame": size, "content": list(box) if box else None,
                  "photo": photo_settings(photo)},
        notes="Pictures are the inputs as the network saw them (framed to the generator's "
              "size); masks: white = taken from that picture (before its shift)."
              + (" result_in_photo: the result pasted back into photo (the base's source) "
                 "where its frame lies, feathered at the edge." if photo else ""))
    return shown, mask_picture(union), result_u8, info, run


@gpu_task(duration=120)
def compose_collage(ctx: AppContext, model_id: str | None, base_value: dict | None,
                    refine_on: bool, steps: float, *parts_and_shifts: Any,
                    progress=gr.Progress(track_tqdm=True)) -> ComposeOutputs:
    """Compose: the base (painted: what to keep; nothing painted: all of it) and up to
    MAX_PARTS parts (editors, then dx per part, then dy per part, then optionally the kept
    FramedPhoto) -> (collage as E sees it, union mask, G(E(collage, mask)), masked-L1 line,
    run; the run also holds "result_in_photo" when the base is still the framed photo)."""
    return _compose(ctx, model_id, base_value, refine_on, steps, parts_and_shifts, progress)


_quiet_compose = quietly(compose_collage, 5)  # 4 pictures/text + the Download-all run


def live_compose(ctx: AppContext, live_on: bool, model_id: str | None, base_value: dict | None,
                 refine_on: bool, steps: float, *rest: Any) -> ComposeOutputs | list:
    """Every stroke or shift re-runs one regressor + generator pass (never the slow
    refinement); silent until there is something to compose."""
    editors = (base_value,) + tuple(rest[:MAX_PARTS])
    if not live_on or refine_on or all(editor_is_empty(ed) for ed in editors):
        return [gr.update()] * 5
    return _quiet_compose(ctx, model_id, base_value, False, steps, *rest)


@gpu_task(duration=60)
def compose_example(ctx: AppContext, model_id: str | None, seed_base: float | None,
                    seed_part: float | None, dx: float, dy: float,
                    progress=gr.Progress(track_tqdm=True)) -> tuple:
    """The examples: sample two pictures, paint the centre of the second, compose ->
    (base editor, part 1 editor, then compose_collage's outputs)."""
    _, G = load_pair(ctx, model_id)
    pictures = to_uint8(sample_images(G, [int(seed_base or 0), int(seed_part or 0)]))
    base_value = painted_value(pictures[0], None)
    part_value = painted_value(pictures[1], centre_square(pictures.shape[1]))
    rest = (part_value, None, None, dx, 0, 0, dy, 0, 0)
    return (base_value, part_value) + _compose(ctx, model_id, base_value, False, 30, rest, progress)


def _inpaint(ctx: AppContext, model_id: str | None, value: dict | None, n: float,
             seed: float | None, random_mask: bool, framed_photo: FramedPhoto | None = None
             ) -> tuple[np.ndarray, list, Run]:
    E, G = load_pair(ctx, model_id)
    photo = photo_in_use(framed_photo, value)
    size = G.size
    image, erased = framed(value, size, content_of(ctx, model_id), required=not random_mask)
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
    hole = (1 - known)[0, 0].cpu().numpy()  # the pixels E imagined: completion 1 goes back there
    run = record(
        ctx, TAB, "random_hints" if random_mask else "inpaint", roles(ctx, model_id),
        images={"completion": list(completions), "input": shown, "picture": image,
                **in_photo_images(photo, completions[0], hole)},
        masks={"known": known, "hints": [m for m in masks[1:]]},
        arrays={"latents": latents}, seeds=[int(seed or 0)],
        settings={"completions": int(n), "random_hints": random_mask,
                  "hint_coverage": list(HINT_COVERAGE), "training_coverage": list(TRAIN_COVERAGE),
                  "photo": photo_settings(photo)},
        notes="completion_01 uses the known pixels only; completion k > 1 adds hint blobs of "
              "generated picture seed + k - 1 (masks/hints_*: known pixels + hints)."
              + (" result_in_photo: completion_01 pasted back into photo, only where pixels "
                 "were unknown (feathered)." if photo else ""))
    return shown, gallery, run


@gpu_task(duration=60)
def inpaint(ctx: AppContext, model_id: str | None, value: dict | None, n: float,
            seed: float | None, framed_photo: FramedPhoto | None = None,
            progress=gr.Progress(track_tqdm=True)) -> tuple[np.ndarray, list, Run]:
    """Inpaint the painted region -> (what E sees, gallery of n completions, run; with the
    kept photo still in the editor, the run also holds completion 1 pasted back into it)."""
    return _inpaint(ctx, model_id, value, n, seed, False, framed_photo)


@gpu_task(duration=60)
def inpaint_random_hints(ctx: AppContext, model_id: str | None, value: dict | None, n: float,
                         seed: float | None, framed_photo: FramedPhoto | None = None,
                         progress=gr.Progress(track_tqdm=True)) -> tuple[np.ndarray, list, Run]:
    """Complete the picture from one of the authors' training masks (drawn from the seed)
    instead of the paint: what E was trained to do."""
    return _inpaint(ctx, model_id, value, n, seed, True, framed_photo)


@gpu_task(duration=120)
def compute_variation_map(ctx: AppContext, model_id: str | None, value: dict | None, n: float,
                          seed: float | None, progress=gr.Progress(track_tqdm=True)
                          ) -> tuple[np.ndarray, str, Run]:
    """The paper's independence probe on the painted part -> (σ heat map, summary line, run)."""
    E, G = load_pair(ctx, model_id)
    base_image, part = framed(value, G.size, content_of(ctx, model_id))
    progress(0.1, desc=f"Regenerating {int(n)} variants")
    sigma, leak = variation_map(E, G, base_image, part, int(n), int(seed or 0))
    inside = float((sigma * part[0, 0]).sum() / part.sum())
    outside = float((sigma * (1 - part[0, 0])).sum() / (1 - part).sum().clamp(min=1))
    info = (f"Share of the change outside the painted part: **{leak * 100:.1f} %** "
            f"(0 %: perfectly independent parts) · mean σ inside {inside:.3f}, outside {outside:.3f}")
    picture_map = heatmap(sigma, vmin=0)
    run = record(
        ctx, TAB, "variation_map", roles(ctx, model_id),
        images={"variation_map": picture_map, "picture": base_image},
        masks={"part": part}, arrays={"sigma": sigma}, seeds=[int(seed or 0)],
        settings={"samples": int(n), "share_outside": leak, "mean_sigma_inside": inside,
                  "mean_sigma_outside": outside},
        notes="The part is replaced by generated pictures seed, seed + 1, ... (N of them).")
    return picture_map, info, run


# ---- UI ------------------------------------------------------------------------------------
def _picture(wiring: TabWiring, model_id: gr.Dropdown, label: str,
             default_seed: int) -> tuple[gr.ImageEditor, gr.Number]:
    """A paintable picture with a "Sample from seed" under it."""
    editor = gr.ImageEditor(label=label, format="png", type="numpy", layers=False,
                            brush=gr.Brush(colors=["#ffffff"], default_size=24))
    return editor, seed_picker(wiring, editor, sample_picture, [model_id], default_seed)


def _photo_input(wiring: TabWiring, model_id: gr.Dropdown, editor: gr.ImageEditor,
                 use_label: str, api_name: str) -> gr.State:
    """"Your photo" with the photo controls and the example photos: "Use ..." frames it for
    the domain into `editor`, shows the network input and the faces found, and keeps the
    FramedPhoto in a session state, returned (the handlers paste results back into it)."""
    ctx = wiring.ctx
    first = model_id.value
    with gr.Accordion("Your photo", open=True):
        line = gr.Markdown(framing_line(ctx, first))
        with gr.Row():
            photo = gr.Image(type="filepath", image_mode=None, format="png", label="Your photo")
            network_input = gr.Image(label="Network input", format="png", interactive=False)
        controls = photo_controls()
        use = gr.Button(use_label, variant="secondary")
        photos = domain_photos(ctx, ctx.model_ids("regressor"))  # the dropdown's domains
        examples = labelled_examples([[p.path] for p in photos], [p.label for p in photos],
                                     [photo], label="Example photos") if photos else None
    kept = gr.State(None)
    inputs, outputs = [model_id, photo] + controls.inputs, [editor, network_input, controls.faces, kept]
    wiring.on(model_id.change, framing_line, model_id, line, record=False, queue=False)
    wiring.on(use.click, use_photo, inputs, outputs, record=False, api_name=api_name)
    for trigger in (controls.face.change, controls.plain.change):
        wiring.on(trigger, reframe_photo, inputs, outputs, record=False)
    if examples is not None:
        wiring.on(examples.load_input_event.then, use_photo, inputs, outputs, record=False)
    return kept


def _show_in_photo(wiring: TabWiring, event: Any, in_photo: gr.Image, operations: Sequence[str]) -> None:
    """After a run of this sub-tab: its "Result in your photo" (nothing when it did not start
    from the photo). Read from the run, so the picture and "Download all" always agree."""
    event.success(functools.partial(shown_in_photo, operations=tuple(operations)),
                  wiring.download.state, in_photo, api_name=False, queue=False)


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
    with gr.Row():
        live = gr.Checkbox(value=True, label="Update while painting")
        do_refine = gr.Checkbox(value=False, label="Refine (optimise the latent on the known pixels)")
        refine_steps = gr.Slider(5, 200, value=30, step=5, label="Refine steps")
        button = gr.Button("Compose", variant="primary")
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

    inputs = [model_id, base, do_refine, refine_steps] + parts + dxs + dys + [kept]
    outputs = [collage_out, mask_out, result_out, info]
    wiring.on(model_id.change, shift_ranges, model_id, dxs + dys, record=False, queue=False)
    events = [wiring.on(button.click, compose_collage, inputs, outputs, api_name="collage_compose"),
              wiring.on(examples.load_input_event.then, compose_example, example_inputs,
                        [base, parts[0]] + outputs)]
    for trigger in [base.change] + [p.change for p in parts] + [d.release for d in dxs + dys]:
        events.append(wiring.on(trigger, live_compose, [live] + inputs, outputs,
                                concurrency_id=GPU_LANE, trigger_mode="always_last",
                                show_progress="minimal"))
    for event in events:
        _show_in_photo(wiring, event, in_photo, ["compose"])


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
                n = gr.Slider(2, 20, value=8, step=1, label="Samples N")
                seed = gr.Number(value=100, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
            run = gr.Button("Compute variation map", variant="primary")
        sigma_map = gr.Image(label="Per-pixel standard deviation", format="png", interactive=False)
    info = gr.Markdown()
    wiring.on(run.click, compute_variation_map, [model_id, picture, n, seed], [sigma_map, info],
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
            _build_compose(wiring, model_id, frame_size(ctx, model_id.value))
        with gr.Tab("Inpaint"):
            _build_inpaint(wiring, model_id)
        with gr.Tab("Variation map"):
            _build_variation(wiring, model_id)
    wiring.download.render()
