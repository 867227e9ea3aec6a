"""Neural Collage tab: sCBN label collaging and spatial feature blending (Suzuki et al. 2019).

Engine (no Gradio):
- `class_maps` turns painted regions + classes + intensities into per-pixel class mixtures
  (Eq. 2's W_hw(c)); `label_collage` renders base and edit in one batched pass, the sCBN
  applied at the chosen condition points of BigGAN-deep only; its `frames` give Fig. 9's
  intensity sweep.
- `feature_blend` (Eq. 3): base, blended and reference streams in one batch; at the chosen
  feature points the blended stream takes the references' features inside their (shifted)
  regions (`core.blend.FeatureBlend`). Works on BigGAN-deep and on StyleGAN2.
- `project` fits z and the class vector of BigGAN-deep to a photo (LPIPS + MSE: the paper's
  discriminator-feature loss needs BigGAN's discriminator, which was never released);
  `paste_back` Poisson-blends the edited region into the photo's frame (the paper's
  post-processing, at the model's size); the handler then puts that frame back into the
  uploaded photo at its full resolution (`core.faces.FramedPhoto.paste`).

Handlers (`render_base`, `render_reference`, `apply_labels`, `sweep_labels`, `live_labels`,
`blend_features`, `project_photo`, `paste_edit`, `shift_ranges`) are module-level functions of
the app context and the widgets' values; `build_tab` lays out the base picture, then one
builder per sub-tab (label collage, feature blend, real photo).
"""
from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import gradio as gr
import numpy as np
import torch
import torch.nn.functional as F

from core.blend import FeatureBlend
from core.context import AppContext
from core.device import placement
from core.errors import UserError
from core.faces import FramedPhoto, frame_for_model
from core.images import (editor_image_and_mask, hex_rgb, masks_by_colour, photos_for,
                         pil_to_tensor, to_uint8)
from core.lpips import lpips_distance
from core.poisson import poisson_blend
from core.recipe import Run
from core.ui import (GPU_LANE, MAX_SEED, TabWiring, gpu_task, labelled_examples, licence_line,
                     quietly, record, shift_range, shift_sliders, tab_header, user_errors)

if TYPE_CHECKING:  # model code is imported when a model is loaded, not at start-up
    from core.models.biggan import BigGANDeep

PAPER = "https://arxiv.org/abs/1811.10153"
HOW_IT_WORKS = f"""
**Label collage (sCBN, Eq. 2).** BigGAN-deep is class-conditional through its batch norms:
each one scales and shifts the normalised features by γ(c), β(c) computed from the class.
*Spatial* conditional batch norm gives every pixel its own mixture of classes,
γ(h, w) = Σ_c W_hw(c) γ(c) (the same for β), with weights W painted by you: inside a painted
region the chosen class gets weight *intensity* (soft edges), the base class the rest. In
BigGAN-deep γ and β are linear in the class embedding, so this is exactly a per-pixel mixed
class vector. **Layers**: the sCBN can act at every layer, only at the first (4x4) ones
(changes global shape) or at all but the first (changes texture and parts, keeps the
shape), as in the paper's Fig. 12; elsewhere the base class is used.

**Feature blend (Eq. 3).** At the chosen layers the base picture's features are replaced,
inside each painted region, by the features another picture (another seed, or class) has
there, optionally shifted: F̃ = (1 − Σ M_i) F_base + Σ M_i shift_i(F_i); the forward pass
then continues from F̃. Early layers transplant shape and pose, late ones texture. It also
works on StyleGAN2 (features and the RGB skip image are blended alike).

**Real photos.** The photo is projected into BigGAN-deep by optimising z and the class
vector with LPIPS + MSE (the paper uses an encoder plus the discriminator's features, but
BigGAN's discriminator was never released: our simplification), then edited like any
generated picture; the edit can be pasted back into the photo with Poisson blending, as
the paper does. The photo is framed as the model's training pictures were (ImageNet: a centre
crop to the model's square); the Poisson blend happens in that frame, and the blended frame
then goes back into your photo at its full resolution, only where the label collage changed
it (everything else in the photo keeps its original pixels). Truncation between two grid
values uses the published port's batch-norm statistics rule (it weights the two neighbours
in reverse), as everyone using these weights gets.

Paper: [Suzuki, Koyama, Miyato, Yonetsuji, Zhu, *Spatially controllable image synthesis with
internal representation collaging*, 2019]({PAPER}).
"""
PALETTE = ("#ff3b30", "#34c759", "#007aff")  # one brush colour per region
MAP_RES = 64  # class maps are built here; the model resizes them to every layer
MAX_REFS = 2
DEFAULT_CLASS = 207  # golden retriever
PROJECT_LR = 0.05  # z (the authors: Adam 0.075 on z for 200 steps)
PROJECT_CLASS_LR = 0.005


# ---- classes -------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def imagenet_names() -> list[str]:
    """The 1000 ImageNet class names in BigGAN's index order: torchvision's list, read from
    its source file as data (importing torchvision costs seconds of start-up)."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec("torchvision")  # finds the package without importing it
    source = Path(spec.submodule_search_locations[0], "models", "_meta.py").read_text("utf-8")
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "_IMAGENET_CATEGORIES":
            return list(ast.literal_eval(node.value))
    raise RuntimeError("torchvision's ImageNet class list was not found")


def class_choices() -> list[str]:
    return [f"{i}: {name}" for i, name in enumerate(imagenet_names())]


def parse_class(text: str | int | None) -> int:
    """"207: golden retriever", "golden retriever" or "207" -> 207; anything else is a
    UserError that suggests the closest names."""
    names = imagenet_names()
    s = str(text if text is not None else "").strip()
    head = s.split(":", 1)[0].strip()
    if head.isdigit() and int(head) < len(names):
        return int(head)
    lowered = [n.lower() for n in names]
    if s.lower() in lowered:
        return lowered.index(s.lower())
    close = difflib.get_close_matches(s.lower(), lowered, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(names[lowered.index(c)]) for c in close)}?" if close else ""
    raise UserError(f"{s!r} is not an ImageNet class (type a name from the list, or 0-999).{hint}")


def one_hot(index: int, num_classes: int) -> torch.Tensor:
    if not 0 <= index < num_classes:
        raise UserError(f"Class {index} does not exist in this model ({num_classes} classes).")
    v = torch.zeros(1, num_classes)
    v[0, index] = 1
    return v


# ---- pictures ------------------------------------------------------------------------------
@dataclass
class Picture:
    """What re-renders a picture: z and class vector (BigGAN-deep) or w+ (StyleGAN2)."""
    latent: torch.Tensor  # [1, z_dim] or [1, n_latent, w_dim]
    classes: torch.Tensor | None = None  # [1, num_classes]


def is_biggan(G: torch.nn.Module) -> bool:
    from core.models.biggan import BigGANDeep

    return isinstance(G, BigGANDeep)


def picture_from_seed(G: torch.nn.Module, seed: int, class_index: int | None,
                      truncation: float) -> Picture:
    """A seed (and class) -> the picture's latents, drawn by the family's own sampler
    (`G.sample_latents`: BigGAN-deep's truncated normal scaled by the truncation, StyleGAN2's
    `seed_normal` z), kept on the CPU in the form this tab re-renders: z and a one-hot class
    vector for BigGAN-deep, w+ (mapped, truncated) for StyleGAN2."""
    z = G.sample_latents([int(seed)], truncation)
    if is_biggan(G):
        index = class_index if class_index is not None else DEFAULT_CLASS
        return Picture(z.float().cpu(), one_hot(index, G.num_classes))
    with torch.inference_mode():
        return Picture(G.w_plus(G.truncated_w(z, truncation)).float().cpu())


def render(G: torch.nn.Module, pictures: Sequence[Picture], truncation: float,
           class_maps: torch.Tensor | None = None, scbn_points: set[int] | None = None,
           blend: FeatureBlend | None = None) -> torch.Tensor:
    """Pictures (one batch) -> images [B, 3, S, S] in [-1, 1]. With `class_maps` the
    BigGAN-deep batch norms at `scbn_points` use them (the other points: each picture's class)."""
    device, dtype = placement(G)
    latents = torch.cat([p.latent for p in pictures]).to(device, dtype)
    if not is_biggan(G):
        return G.synthesis(latents, hook=blend.stylegan2_hook if blend else None).float().clamp(-1, 1)
    classes = torch.cat([p.classes for p in pictures]).to(device, dtype)
    maps = None if class_maps is None else class_maps.to(device, dtype)
    return G(latents, classes if maps is None else maps, truncation, scbn_points=scbn_points,
             global_classes=None if maps is None else classes, feature_hook=blend).float().clamp(-1, 1)


# ---- sCBN ----------------------------------------------------------------------------------
def soften(masks: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian-blur masks [K, 1, H, W] (sigma in pixels; the official demo: 8 px at 256),
    replicating the border so that regions touching the frame stay whole."""
    if sigma <= 0:
        return masks
    radius = max(1, int(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-x.square() / (2 * sigma ** 2))
    k = (k / k.sum()).to(masks)
    out = F.pad(masks, (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(out, k.view(1, 1, 1, -1))
    return F.conv2d(out, k.view(1, 1, -1, 1))


def class_maps(base: torch.Tensor, regions: torch.Tensor, classes: torch.Tensor,
               intensities: Sequence[float], res: int = MAP_RES) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 2's weights -> (maps [1, num_classes, res, res], weights [K + 1, 1, res, res]).

    Region k (soft mask [1, H, W]) takes class vector `classes[k]` with weight
    intensity_k * mask; where regions overlap beyond 1 they are scaled down; the base class
    keeps the remainder, so the weights are non-negative and sum to 1 at every pixel."""
    m = F.interpolate(regions.float(), size=(res, res), mode="area")
    m = m * torch.tensor([float(t) for t in intensities]).view(-1, 1, 1, 1)
    m = m / m.sum(0, keepdim=True).clamp(min=1.0)
    weights = torch.cat([1 - m.sum(0, keepdim=True), m])  # [K + 1, 1, res, res]
    vectors = torch.cat([base, classes])  # [K + 1, num_classes]
    maps = torch.einsum("kxhw,kc->chw", weights, vectors.float())[None]
    return maps, weights


def layer_preset(G: "BigGANDeep", preset: str) -> list[int]:
    """The paper's Fig. 12 choices on BigGAN-deep's condition points: "all", "first" (the
    4x4 ones: the seed tensor and the first block) or "all but first"."""
    points = G.condition_points()
    first = [i for i, (_, res) in enumerate(points) if res <= 4]
    if preset == "first":
        return first
    if preset == "all but first":
        return [i for i in range(len(points)) if i not in first]
    return list(range(len(points)))


@torch.inference_mode()
def label_collage(G: "BigGANDeep", picture: Picture, regions: torch.Tensor, classes: Sequence[int],
                  intensities: Sequence[float], truncation: float, points: Sequence[int],
                  frames: Sequence[float] = (1.0,)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(before [1, 3, S, S], edits [len(frames), 3, S, S], weights [K + 1, 1, r, r]) in one
    batched pass. `frames` scale every intensity (the paper's Fig. 9 continuous intensity);
    the "before" image uses a uniform map of the base class (== the plain picture)."""
    if not is_biggan(G):
        raise UserError("Label collage needs a class-conditional model: pick a BigGAN-deep model.")
    if not points:
        raise UserError("Choose at least one layer for the label collage.")
    if regions.sum() == 0:
        raise UserError("Paint a region first (one brush colour per target class).")
    if not any(float(t) > 0 for t in intensities):
        raise UserError("Every intensity is 0, so nothing would change: raise one above 0.")
    nc = G.num_classes
    targets = torch.cat([one_hot(c, nc) for c in classes])
    base = picture.classes.float().cpu()
    maps, weights = [], None
    for t in (0.0, *frames):
        m, w = class_maps(base, regions.cpu(), targets, [t * float(i) for i in intensities])
        maps.append(m)
        weights = w if t == frames[-1] else weights
    images = render(G, [picture] * len(maps), truncation, torch.cat(maps), set(points))
    return images[:1], images[1:], weights


# ---- feature blending ----------------------------------------------------------------------
def feature_points(G: torch.nn.Module) -> list[tuple[str, int]]:
    """(label, point) for every layer whose output can be blended."""
    if is_biggan(G):
        return [(f"{name} · {res} px", i) for i, (name, res, _) in enumerate(G.feature_points())]
    return [(f"layer {k} · {G.layer_resolution(k)} px", k) for k in range(0, G.num_layers, 2)]


@torch.inference_mode()
def feature_blend(G: torch.nn.Module, base: Picture, refs: Sequence[Picture], regions: torch.Tensor,
                  shifts: Sequence[tuple[int, int]], points: Sequence[int], truncation: float,
                  strength: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(before, after, references) images, one batched pass of [base, blended, refs...]:
    `regions[i]` [1, S, S] is where reference i's content is taken (before its shift)."""
    if not refs:
        raise UserError("Add a reference picture and paint the region to take from it.")
    if not points:
        raise UserError("Choose at least one layer to blend at.")
    if regions.sum() == 0:
        raise UserError("The regions are empty: paint where each reference's content should come from.")
    blend = FeatureBlend(regions.float(), list(shifts), frozenset(points), strength)
    images = render(G, [base, base, *refs], truncation, blend=blend)
    return images[:1], images[1:2], images[2:]


# ---- real photos ---------------------------------------------------------------------------
def project(G: "BigGANDeep", target: torch.Tensor, class_index: int, truncation: float, steps: int,
            seed: int = 0, progress: Callable[[int, int, float], None] | None = None
            ) -> tuple[Picture, torch.Tensor, list[float]]:
    """Fit z and the class vector so that G renders `target` [1, 3, S, S]: Adam on
    LPIPS-VGG + MSE, z kept inside the sampler's [-2, 2] range -> (picture, image, losses).
    G must be float32 (gradients)."""
    if not is_biggan(G):
        raise UserError("Photo projection is offered for BigGAN-deep (StyleGAN2: use the SAM tab).")
    device, _ = placement(G)
    target = target.to(device)
    z = G.sample_latents([seed], truncation).to(device).requires_grad_(True)
    c = one_hot(class_index, G.num_classes).to(device).requires_grad_(True)
    opt = torch.optim.Adam([{"params": [z], "lr": PROJECT_LR}, {"params": [c], "lr": PROJECT_CLASS_LR}])
    losses = []
    for step in range(steps):
        out = G(z, c, truncation)
        loss = lpips_distance(out, target, net="vgg").mean() + F.mse_loss(out, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            z.clamp_(-2, 2)
        losses.append(loss.item())
        if progress:
            progress(step + 1, steps, losses[-1])
    with torch.inference_mode():
        picture = Picture(z.detach().cpu(), c.detach().cpu())
        return picture, G(z, c, truncation).float().clamp(-1, 1), losses


def paste_back(photo: torch.Tensor, edited: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """The paper's post-processing: Poisson-blend the edited region [1, 1, S, S] of the
    edited picture into the photo (both [1, 3, S, S]); the rest of the photo is untouched."""
    if region.sum() == 0:
        raise UserError("Nothing was edited: there is no region to paste back.")
    return poisson_blend(edited[0].cpu(), photo[0].cpu(), region[0, 0].cpu())[None].clamp(-1, 1)


# ---- pictures of the maps --------------------------------------------------------------------
def weights_picture(weights: torch.Tensor, size: int, colours: Sequence[str]) -> np.ndarray:
    """Mixture weights [K + 1, 1, r, r] (0: the base) -> uint8 RGB: base grey, region k in
    its brush colour, mixed in proportion."""
    rgb = torch.tensor([(128, 128, 128)] + [hex_rgb(c) for c in colours], dtype=torch.float32)
    w = F.interpolate(weights.float().cpu(), size=(size, size), mode="bilinear", align_corners=False)
    w = w[: len(rgb)].clamp(min=0)
    out = torch.einsum("khw,kc->hwc", w[:, 0], rgb[: len(w)])
    return out.round().clamp(0, 255).to(torch.uint8).numpy()


# ---- handlers (plain functions of the context and the widgets' values) ---------------------
TAB = "ncollage"
DEFAULT_FRAME = 256  # the shift sliders' span while no model is picked
SWEEP = (0.25, 0.5, 0.75, 1.0)  # the intensity sweep's frames (Fig. 9)
N_LABEL_OUTPUTS = 5  # before, after, class map, the edit for pasting, the run
# The base picture's state: {"model", "picture": Picture, "truncation", "photo": the network
# input of the projected photo [1, 3, S, S] or None, "framed": its FramedPhoto (the uploaded
# photo at full resolution and where the frame lies in it; photos only), "seed" (None for a
# photo), "class" (None for StyleGAN2)}; a reference's: {"model", "picture", "seed", "class"};
# the last edit: {"image", "region"}.
State = dict[str, Any]


def load(ctx: AppContext, model_id: str | None, dtype: torch.dtype | None = None) -> torch.nn.Module:
    """The picked model (BigGAN-deep or StyleGAN2), loaded once by the context."""
    if not model_id:
        raise UserError("Pick a model first.")
    return ctx.model(model_id, dtype)


def frame_size(ctx: AppContext, model_id: str | None) -> int:
    """The model's picture size from its registry entry (nothing loaded), for the shift
    sliders; DEFAULT_FRAME while none is picked or the entry does not say."""
    return (ctx.registry.get(model_id).image_size() if model_id else None) or DEFAULT_FRAME


def shift_ranges(ctx: AppContext, model_id: str | None) -> list:
    """The references' shift sliders follow the picked model's frame."""
    return shift_range(frame_size(ctx, model_id), 2 * MAX_REFS)


def points_update(G: torch.nn.Module) -> dict:
    """The blendable layers of G for the checkbox group, the first two ticked."""
    choices = feature_points(G)
    return gr.update(choices=choices, value=[p for _, p in choices[:2]])


def seeded(ctx: AppContext, model_id: str | None, class_text: str | None, seed: float | None,
           truncation: float) -> tuple[torch.nn.Module, Picture, np.ndarray]:
    """(model, picture, its pixels) for a seed (and class: BigGAN-deep only)."""
    G = load(ctx, model_id)
    index = parse_class(class_text) if is_biggan(G) else None
    pic = picture_from_seed(G, int(seed or 0), index, float(truncation))
    return G, pic, to_uint8(render(G, [pic], float(truncation)))[0]


def latents(pic: Picture, prefix: str = "") -> dict[str, torch.Tensor]:
    """A picture's latents for latents.npz: z and class vector, or w+ (StyleGAN2)."""
    if pic.classes is None:
        return {f"{prefix}w_plus": pic.latent}
    return {f"{prefix}z": pic.latent, f"{prefix}class_vector": pic.classes}


def base_settings(state: State) -> dict:
    return {"base_class": state.get("class"), "truncation": state["truncation"],
            "base_is_projected_photo": state.get("photo") is not None}


def base_seeds(state: State) -> list[int]:
    return [state["seed"]] if state.get("seed") is not None else []


def current(ctx: AppContext, state: State | None, model_id: str | None
            ) -> tuple[torch.nn.Module, Picture, float]:
    """(model, base picture, truncation), refusing a base made with another model (its
    latents would not fit)."""
    if not state:
        raise UserError("Render a base picture (or project a photo) first.")
    if state["model"] != model_id:
        raise UserError(f"The base picture was made with {state['model']}: render it again "
                        f"for {model_id}.")
    return load(ctx, model_id), state["picture"], state["truncation"]


@gpu_task(duration=60)
def render_base(ctx: AppContext, model_id: str | None, class_text: str | None, seed: float | None,
                truncation: float, progress=gr.Progress(track_tqdm=True)
                ) -> tuple[State, np.ndarray, np.ndarray, dict, Run]:
    """The base picture from a seed (and class) -> (base state, picture, the same picture
    for the label editor, the model's blendable layers, run)."""
    G, pic, image = seeded(ctx, model_id, class_text, seed, truncation)
    state = {"model": model_id, "picture": pic, "truncation": float(truncation), "photo": None,
             "seed": int(seed or 0), "class": parse_class(class_text) if is_biggan(G) else None}
    run = record(ctx, TAB, "render", {"generator": model_id}, images={"result": image},
                 arrays=latents(pic), seeds=[int(seed or 0)], settings=base_settings(state))
    return state, image, image, points_update(G), run


@gpu_task(duration=60)
def render_reference(ctx: AppContext, model_id: str | None, class_text: str | None,
                     seed: float | None, truncation: float,
                     progress=gr.Progress(track_tqdm=True)) -> tuple[State, np.ndarray]:
    """A reference picture for the feature blend -> (its state, its picture for painting)."""
    _, pic, image = seeded(ctx, model_id, class_text, seed, truncation)
    return {"model": model_id, "picture": pic, "seed": int(seed or 0),
            "class": parse_class(class_text) if pic.classes is not None else None}, image


def _labels(ctx: AppContext, model_id: str | None, state: State | None, editor: dict | None,
            layers: str, soft: float, classes_and_strengths: Sequence, sweep: bool) -> tuple:
    """The label collage (both buttons): one class per brush colour used, its intensity,
    softened regions, the layer preset -> (before, after, class map, edit, run[, frames])."""
    G, pic, trunc = current(ctx, state, model_id)
    size = G.size
    regions = masks_by_colour(editor, PALETTE, size)
    used = [k for k in range(len(PALETTE)) if regions[k].sum() > 0]
    if not used:
        raise UserError("Paint a region first (one brush colour per target class).")
    classes = [parse_class(classes_and_strengths[k]) for k in used]
    strengths = [float(classes_and_strengths[len(PALETTE) + k]) for k in used]
    soft_regions = soften(regions[used], float(soft) * size / 256)
    points = layer_preset(G, layers) if is_biggan(G) else []
    frames = SWEEP if sweep else (1.0,)
    before, edits, weights = label_collage(G, pic, soft_regions, classes, strengths, trunc,
                                           points, frames)
    region = (1 - weights[:1]).clamp(0, 1)
    region = F.interpolate(region, size=(size, size), mode="bilinear", align_corners=False)
    edit = {"image": edits[-1:].cpu(), "region": (region > 0.1).float()}
    colours = [PALETTE[k] for k in used]
    class_map = weights_picture(weights, size, colours)
    before_u8, after_u8 = to_uint8(before)[0], to_uint8(edits[-1:])[0]
    run = record(
        ctx, TAB, "label_sweep" if sweep else "label_collage", {"generator": model_id},
        images={"before": before_u8, "after": after_u8, "class_map": class_map,
                **({"intensity": list(to_uint8(edits))} if sweep else {})},
        masks={**{f"painted_{k + 1}": regions[k] for k in used},
               **{f"soft_{k + 1}": soft_regions[i] for i, k in enumerate(used)}},
        arrays={**latents(pic), "class_weights": weights}, seeds=base_seeds(state),
        settings={**base_settings(state), "colours": colours, "classes": classes,
                  "intensities": strengths, "layers": layers, "condition_points": points,
                  "soft_edge_px_at_256": float(soft),
                  **({"sweep_intensities": list(frames)} if sweep else {})},
        notes="masks painted_k / soft_k: brush colour k as painted and softened; "
              "class_weights: [base, region 1, ...] at 64 x 64.")
    if not sweep:
        return before_u8, after_u8, class_map, edit, run
    shown = to_uint8(torch.cat([before, edits]))
    gallery = [(img, f"intensity {t:g}") for img, t in zip(shown, (0.0, *frames))]
    return before_u8, after_u8, class_map, edit, gallery, run


@gpu_task(duration=60)
def apply_labels(ctx: AppContext, model_id: str | None, state: State | None, editor: dict | None,
                 layers: str, soft: float, *classes_and_strengths: str | float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict, Run]:
    """Paint classes onto the base picture (sCBN) -> (before, after, class map, the edit
    kept for "paste back", run). `classes_and_strengths`: one class per brush colour, then
    one intensity per brush colour."""
    return _labels(ctx, model_id, state, editor, layers, soft, classes_and_strengths, sweep=False)


@gpu_task(duration=60)
def sweep_labels(ctx: AppContext, model_id: str | None, state: State | None, editor: dict | None,
                 layers: str, soft: float, *classes_and_strengths: str | float) -> tuple:
    """`apply_labels` at growing intensities (Fig. 9) -> the same outputs plus a gallery
    (intensity 0, 0.25, ..., 1), then the run."""
    return _labels(ctx, model_id, state, editor, layers, soft, classes_and_strengths, sweep=True)


_quiet_labels = quietly(apply_labels, N_LABEL_OUTPUTS)


def live_labels(ctx: AppContext, live: bool, model_id: str | None, state: State | None,
                editor: dict | None, layers: str, soft: float, *classes_and_strengths: str | float
                ) -> list | tuple:
    """`apply_labels` on every stroke while "Update while painting" is on; an incomplete
    input (nothing painted yet) leaves the outputs as they are instead of an error."""
    if not live:
        return [gr.update()] * N_LABEL_OUTPUTS
    return _quiet_labels(ctx, model_id, state, editor, layers, soft, *classes_and_strengths)


@gpu_task(duration=60)
def blend_features(ctx: AppContext, model_id: str | None, state: State | None, points: list | None,
                   strength: float, *refs_and_shifts: Any
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, Run]:
    """Transplant the references' features into the base picture (Eq. 3) -> (before,
    after, blend map, run). `refs_and_shifts`: MAX_REFS reference states, their editors, their
    right shifts, their down shifts; a reference without a painted region is left out."""
    G, pic, trunc = current(ctx, state, model_id)
    size = G.size
    n = MAX_REFS
    states, editors = refs_and_shifts[:n], refs_and_shifts[n:2 * n]
    shifts_x, shifts_y = refs_and_shifts[2 * n:3 * n], refs_and_shifts[3 * n:]
    refs, regions, shifts, used = [], [], [], []
    for r in range(n):
        if not states[r]:
            continue
        if states[r]["model"] != model_id:
            raise UserError(f"Reference {r + 1} was made with {states[r]['model']}: render it again.")
        _, region = editor_image_and_mask(editors[r], size, required=False)
        if region.sum() == 0:
            gr.Warning(f"Reference {r + 1} has no painted region: it is left out.")
            continue
        refs.append(states[r]["picture"])
        used.append(r)
        regions.append(region[0])
        shifts.append((int(shifts_x[r] or 0), int(shifts_y[r] or 0)))
    if not refs:
        raise UserError("Render a reference and paint the region to take from it.")
    regions_t = torch.stack(regions)
    chosen = [int(p) for p in points or []]
    before, after, ref_images = feature_blend(G, pic, refs, regions_t, shifts, chosen, trunc,
                                              float(strength))
    landed = FeatureBlend(regions_t, shifts, frozenset(), float(strength)).weights_at(size)
    weights = torch.cat([1 - landed.sum(0, keepdim=True), landed])
    blend_map = weights_picture(weights, size, PALETTE[:len(refs)])
    before_u8, after_u8 = to_uint8(before)[0], to_uint8(after)[0]
    ref_seeds = [states[r].get("seed") for r in used]
    run = record(
        ctx, TAB, "feature_blend", {"generator": model_id},
        images={"before": before_u8, "after": after_u8, "blend_map": blend_map,
                **{f"reference_{r + 1}": ref_images[i:i + 1] for i, r in enumerate(used)}},
        masks={f"reference_{r + 1}": regions_t[i] for i, r in enumerate(used)},
        arrays={**latents(pic, "base_"),
                **{k: v for i, r in enumerate(used) for k, v in latents(refs[i], f"reference_{r + 1}_").items()},
                "landed_weights": landed},
        seeds=base_seeds(state) + [s for s in ref_seeds if s is not None],
        settings={**base_settings(state), "layers": chosen, "strength": float(strength),
                  "shifts_px": {f"reference_{r + 1}": list(shifts[i]) for i, r in enumerate(used)},
                  "reference_seeds": {f"reference_{r + 1}": states[r].get("seed") for r in used},
                  "reference_classes": {f"reference_{r + 1}": states[r].get("class") for r in used}},
        notes="seeds: base, then the references used; masks/reference_k: the region taken "
              "from reference k (before its shift).")
    return before_u8, after_u8, blend_map, run


@gpu_task(duration=300)
def project_photo(ctx: AppContext, model_id: str | None, image: str | np.ndarray | None,
                  class_text: str | None, steps: float, truncation: float,
                  progress=gr.Progress()) -> tuple[State, np.ndarray, np.ndarray, np.ndarray, str,
                                                   dict, Run]:
    """Fit BigGAN-deep to a photo; the projection becomes the base picture -> (base state,
    projection, base picture, label editor, loss summary, the network input labelled with
    what it is, run). The photo is framed first and the frame is kept in the state, so the
    edit can go back into the photo at full resolution."""
    G = load(ctx, model_id, torch.float32)  # gradients: float32 on every device
    if not is_biggan(G):
        raise UserError("Photo projection is offered for BigGAN-deep models; pick one.")
    # no face controls here: ImageNet pictures were never face-aligned (framing: centre crop)
    framed = frame_for_model(ctx.registry, model_id, image, G.size)
    network_input = np.asarray(framed.aligned.image)
    target = pil_to_tensor(framed.aligned.image)
    index = parse_class(class_text)
    pic, out, losses = project(G, target, index, float(truncation), int(steps),
                               progress=lambda d, t, l: progress(d / t, desc=f"Step {d}/{t} · loss {l:.3f}"))
    state = {"model": model_id, "picture": pic, "truncation": float(truncation), "photo": target,
             "framed": framed, "seed": None, "class": index}
    shown = to_uint8(out)[0]
    info = (f"Loss (LPIPS + MSE) {losses[0]:.3f} → **{losses[-1]:.3f}** in {len(losses)} steps. "
            "The projection is now the base picture: paint labels on it, then paste back.")
    run = record(
        ctx, TAB, "project", {"generator": model_id},
        images={"photo": framed.photo, "network_input": network_input, "projection": shown},
        arrays={**latents(pic), "losses": losses}, seeds=[0],
        settings={"class": index, "truncation": float(truncation), "steps": int(steps),
                  "lr_z": PROJECT_LR, "lr_class": PROJECT_CLASS_LR, "loss": "LPIPS-VGG + MSE",
                  **framed.describe()},
        notes=f"seed 0 draws the starting z; class_vector is optimised too (starts one-hot). "
              f"{framed.note()}: the projection fits it; images/photo is the upload, upright.")
    return state, shown, shown, shown, info, gr.update(value=network_input, label=framed.note()), run


@user_errors
def paste_edit(ctx: AppContext, state: State | None, edit: dict | None
               ) -> tuple[np.ndarray, np.ndarray, Run]:
    """Put the last label collage back into the projected photo (no model runs): Poisson-blend
    its edited region into the network input (the paper's post-processing, at the model's
    size), then that blended frame into the uploaded photo at full resolution, only where the
    collage painted (feathered; the rest of the photo keeps its pixels) -> (photo frame with
    the edit, result in your photo, run)."""
    if not state or state.get("photo") is None:
        raise UserError("Project a photo first (the paste goes back into that photo).")
    if not edit:
        raise UserError("Apply a label collage to the projection first.")
    framed: FramedPhoto = state["framed"]
    region = edit["region"]
    result = to_uint8(paste_back(state["photo"], edit["image"], region))[0]
    in_photo = np.asarray(framed.paste(result, region[0, 0].cpu().numpy()))
    run = record(
        ctx, TAB, "paste_back", {"generator": state["model"]},
        images={"result_in_photo": in_photo, "photo": framed.photo,
                "network_input": state["photo"], "edited": edit["image"], "pasted": result},
        masks={"region": region}, arrays=latents(state["picture"]),
        settings={**base_settings(state), "blend": "Poisson", **framed.describe()},
        notes="The label collage's edited region (masks/region) Poisson-blended into the "
              "network input (pasted, at the model's size), then pasted back into the photo "
              "at full resolution inside that region (result_in_photo).")
    return result, in_photo, run


# ---- UI ------------------------------------------------------------------------------------
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


def build_tab(ctx: AppContext) -> None:
    biggan_ids = ctx.model_ids("biggan-deep")
    ids = biggan_ids + [i for i in ctx.model_ids("stylegan2") if TAB in ctx.registry.get(i).used_by]
    wiring = TabWiring(ctx, TAB)
    tab_header("Paint class labels onto a BigGAN picture (a dog's head becomes a cat's), or "
               "transplant the *features* of another picture into a region, at the layers "
               "you choose.", HOW_IT_WORKS)
    licence_line(ctx.registry, TAB, ids)
    names = class_choices()
    base = _build_base(ids, names)
    with gr.Tabs():
        with gr.Tab("Label collage"):
            editor, last_edit = _build_label_collage(wiring, base, names)
        with gr.Tab("Feature blend"):
            points = _build_feature_blend(wiring, base, names)
        with gr.Tab("Real photo (BigGAN)"):
            _build_real_photo(wiring, base, names, editor, last_edit)
    wiring.download.render()

    inputs = [base.model, base.cls, base.seed, base.truncation]
    outputs = [base.state, base.image, editor, points]
    wiring.on(base.button.click, render_base, inputs, outputs, api_name="ncollage_render")
    wiring.examples(base.examples, (render_base, inputs, outputs))


def _build_base(ids: list[str], names: list[str]) -> Base:
    """The model, class, seed and truncation of the base picture, and the picture."""
    default_class = names[DEFAULT_CLASS]
    with gr.Row():
        with gr.Column():
            model = gr.Dropdown(ids, value=ids[0] if ids else None,
                                label="Model (label collage: BigGAN-deep only)")
            cls = gr.Dropdown(names, value=default_class, label="Base class", filterable=True,
                              allow_custom_value=True)
            with gr.Row():
                seed = gr.Number(value=1, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
                truncation = gr.Slider(0.02, 1.0, value=0.4, step=0.02, label="Truncation")
            button = gr.Button("Render base picture", variant="primary")
        image = gr.Image(label="Base picture", format="png", interactive=False)
    state = gr.State(None)
    examples = labelled_examples(
        [[default_class, 1, 0.4], [names[281], 3, 0.4], [names[291], 2, 0.4], [names[980], 5, 0.4]],
        ["golden retriever · seed 1", "tabby cat · seed 3", "lion · seed 2", "volcano · seed 5"],
        [cls, seed, truncation],
        label="Example bases (BigGAN-deep classes; StyleGAN2 uses the seed only)")
    return Base(model, cls, seed, truncation, state, image, button, examples)


def _build_label_collage(wiring: TabWiring, base: Base, names: list[str]
                         ) -> tuple[gr.ImageEditor, gr.State]:
    """Paint regions in brush colours, one class and intensity per colour -> (the editor the
    base picture fills, the last edit for "paste back")."""
    with gr.Row():
        editor = gr.ImageEditor(label="Paint regions: one brush colour per target class",
                                format="png", type="numpy", layers=False,
                                brush=gr.Brush(colors=list(PALETTE), default_color=PALETTE[0],
                                               default_size=24))
        with gr.Column():
            classes, strengths = [], []
            for k, colour in enumerate(PALETTE):
                with gr.Row():
                    classes.append(gr.Dropdown(names, value=names[(281, 291, 980)[k]],
                                               label=f"Class for colour {k + 1} ({colour})",
                                               filterable=True, allow_custom_value=True, scale=3))
                    strengths.append(gr.Slider(0, 1, value=1.0, step=0.05, label="Intensity", scale=2))
            layers = gr.Radio(["all", "first", "all but first"], value="all",
                              label="Layers with the painted classes (Fig. 12)")
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
    last_edit = gr.State(None)

    inputs = [base.model, base.state, editor, layers, soft] + classes + strengths
    outputs = [before, after, class_map, last_edit]
    wiring.on(run.click, apply_labels, inputs, outputs, api_name="ncollage_label")
    wiring.on(sweep.click, sweep_labels, inputs, outputs + [gallery], api_name="ncollage_sweep")
    for trigger in [editor.change, layers.change, soft.release] + \
            [c.change for c in classes] + [s.release for s in strengths]:
        wiring.on(trigger, live_labels, [live] + inputs, outputs, concurrency_id=GPU_LANE,
                  trigger_mode="always_last", show_progress="minimal")
    return editor, last_edit


def _build_feature_blend(wiring: TabWiring, base: Base, names: list[str]) -> gr.CheckboxGroup:
    """MAX_REFS references (class, seed, painted region, shift) and the layers to blend at
    -> the layer checkboxes (the base picture's model fills them)."""
    states, editors, dxs, dys = [], [], [], []
    with gr.Row():
        for r in range(MAX_REFS):
            with gr.Column():
                states.append(gr.State(None))
                cls = gr.Dropdown(names, value=names[DEFAULT_CLASS], filterable=True,
                                  allow_custom_value=True, label=f"Reference {r + 1} class (BigGAN)")
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
    with gr.Row():
        points = gr.CheckboxGroup([], label="Blend at these layers (early: shape, late: texture)")
        strength = gr.Slider(0, 1, value=1.0, step=0.05, label="Strength")
        run = gr.Button("Blend features", variant="primary")
    with gr.Row():
        before = gr.Image(label="Before", format="png", interactive=False)
        after = gr.Image(label="After", format="png", interactive=False)
        blend_map = gr.Image(label="Blend map (where each reference lands)", format="png",
                             interactive=False)

    wiring.on(run.click, blend_features, [base.model, base.state, points, strength] + states +
              editors + dxs + dys, [before, after, blend_map], api_name="ncollage_blend")
    wiring.on(base.model.change, shift_ranges, base.model, dxs + dys, record=False, queue=False)
    return points


# Example photos of ImageNet classes (installed packages' free photos) and their classes.
PHOTO_CLASSES = {"cat": 281, "lion": 291, "cheetah": 293}  # tabby cat, lion, cheetah


def _photo_examples(ctx: AppContext, model_id: str | None, names: list[str]
                    ) -> tuple[list[list], list[str]]:
    """(examples [photo path, class], labels) from `core.images.photos_for` for the model's
    framing, each with the ImageNet class it shows."""
    framing = ctx.registry.framing_of(ctx.registry.get(model_id)) if model_id else "center"
    photos = photos_for(framing, model_id or "")
    rows, labels = [], []
    for p in photos:
        index = next((c for word, c in PHOTO_CLASSES.items() if word in p.label.lower()), DEFAULT_CLASS)
        rows.append([p.path, names[index]])
        labels.append(p.label)
    return rows, labels


def _build_real_photo(wiring: TabWiring, base: Base, names: list[str], editor: gr.ImageEditor,
                      last_edit: gr.State) -> None:
    """Project a photo (it becomes the base picture), then paste the label collage back into
    the photo at its full resolution. No face controls: ImageNet models do not align faces."""
    gr.Markdown("The photo is framed as the model's training pictures were: a centre crop to "
                "the model's square for the ImageNet BigGAN-deep models (no face alignment: "
                "ImageNet pictures were not face-aligned); the edit goes back into your photo "
                "at its full resolution.")
    with gr.Row():
        with gr.Column():
            photo = gr.Image(label="Photo", type="filepath", image_mode=None, format="png")
            cls = gr.Dropdown(names, value=names[DEFAULT_CLASS], filterable=True,
                              allow_custom_value=True, label="What is in it (class)")
            steps = gr.Slider(10, 400, value=100, step=10, label="Projection steps (CPU: ~0.5-2 s each)")
            project_btn = gr.Button("Project into the GAN", variant="primary")
        network = gr.Image(label="Network input (what the model sees)", format="png",
                           interactive=False)
        projection = gr.Image(label="Projection (becomes the base picture)", format="png",
                              interactive=False)
    rows, labels = _photo_examples(wiring.ctx, base.model.value, names)
    if rows:
        labelled_examples(rows, labels, [photo, cls], label="Example photos (pick the class they show)")
    info = gr.Markdown()
    with gr.Row():
        paste_btn = gr.Button("Paste the last label collage back into the photo (Poisson)")
        pasted = gr.Image(label="Photo with the edit", format="png", interactive=False)
    in_photo = gr.Image(label="Result in your photo", format="png", interactive=False)

    wiring.on(project_btn.click, project_photo, [base.model, photo, cls, steps, base.truncation],
              [base.state, projection, base.image, editor, info, network], api_name="ncollage_project")
    wiring.on(paste_btn.click, paste_edit, [base.state, last_edit], [pasted, in_photo],
              api_name="ncollage_paste")
