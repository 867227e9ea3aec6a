"""Neural Collage tab: sCBN label collaging and spatial feature blending (Suzuki et al. 2019).

Engine (no Gradio):
- `class_maps` turns painted regions + classes + intensities into per-pixel class mixtures
  (Eq. 2's W_hw(c)); `label_collage` renders base and edit in one batched pass, the sCBN
  applied at the chosen condition points of BigGAN-deep only; `intensity_sweep` is Fig. 9.
- `feature_blend` (Eq. 3): base, blended and reference streams in one batch; at the chosen
  feature points the blended stream takes the references' features inside their (shifted)
  regions (`core.blend.FeatureBlend`). Works on BigGAN-deep and on StyleGAN2.
- `project` fits z and the class vector of BigGAN-deep to a photo (LPIPS + MSE: the paper's
  discriminator-feature loss needs BigGAN's discriminator, which was never released);
  `paste_back` Poisson-blends the edited region into the photo (the paper's post-processing).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable, Sequence

import gradio as gr
import numpy as np
import torch
import torch.nn.functional as F

from core.blend import FeatureBlend
from core.context import AppContext
from core.device import placement
from core.errors import UserError
from core.images import (editor_image_and_mask, hex_rgb, masks_by_colour, pil_to_tensor, to_pil,
                         to_uint8)
from core.lpips import lpips_distance
from core.models.biggan import BigGANDeep, truncated_noise
from core.models.stylegan2 import truncate
from core.poisson import poisson_blend
from core.ui import (MAX_SEED, DownloadAll, gpu, labelled_examples, licence_line, quietly, run_examples,
                     shift_range, shift_sliders, tab_header, user_errors)
from demos.generate import seed_latents

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
the paper does. Truncation between two grid values uses the published port's batch-norm
statistics rule (it weights the two neighbours in reverse), as everyone using these
weights gets.

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
def imagenet_names() -> list[str]:
    """The 1000 ImageNet class names in BigGAN's index order (torchvision's copy)."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return list(_IMAGENET_CATEGORIES)


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
    return isinstance(G, BigGANDeep)


def picture_from_seed(G: torch.nn.Module, seed: int, class_index: int | None,
                      truncation: float) -> Picture:
    """A seed (and class) -> the picture's latents, as each model's own sampler draws them:
    the port's truncated normal for BigGAN, the tabs' shared Gaussian + mapping for StyleGAN2."""
    if is_biggan(G):
        nc = G.num_classes
        return Picture(truncated_noise(1, G.z_dim, truncation, seed),
                       one_hot(class_index if class_index is not None else DEFAULT_CLASS, nc))
    with torch.inference_mode():
        w = G.mapping(seed_latents([seed], G.style_dim, G.device))
        if truncation != 1.0:
            w = truncate(w, G.truncation_center().to(w.dtype), truncation)
        return Picture(G.w_plus(w).float().cpu())


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


def layer_preset(G: BigGANDeep, preset: str) -> list[int]:
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
def label_collage(G: BigGANDeep, picture: Picture, regions: torch.Tensor, classes: Sequence[int],
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
def project(G: BigGANDeep, target: torch.Tensor, class_index: int, truncation: float, steps: int,
            seed: int = 0, progress: Callable[[int, int, float], None] | None = None
            ) -> tuple[Picture, torch.Tensor, list[float]]:
    """Fit z and the class vector so that G renders `target` [1, 3, S, S]: Adam on
    LPIPS-VGG + MSE, z kept inside the sampler's [-2, 2] range -> (picture, image, losses).
    G must be float32 (gradients)."""
    if not is_biggan(G):
        raise UserError("Photo projection is offered for BigGAN-deep (StyleGAN2: use the SAM tab).")
    device, _ = placement(G)
    target = target.to(device)
    z = truncated_noise(1, G.z_dim, truncation, seed).to(device).requires_grad_(True)
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


# ---- UI ------------------------------------------------------------------------------------
def build_tab(ctx: AppContext) -> None:
    biggan_ids = ctx.model_ids("biggan-deep")
    all_ids = biggan_ids + [i for i in ctx.model_ids("stylegan2")
                            if "ncollage" in ctx.registry.get(i).used_by]
    tab_header("Paint class labels onto a BigGAN picture (a dog's head becomes a cat's), or "
               "transplant the *features* of another picture into a region, at the layers "
               "you choose.", HOW_IT_WORKS)
    licence_line(ctx.registry, "ncollage", all_ids)
    download = DownloadAll(ctx, "ncollage")
    names = class_choices()
    default_class = names[DEFAULT_CLASS]
    with gr.Row():
        with gr.Column():
            model_id = gr.Dropdown(all_ids, value=all_ids[0] if all_ids else None,
                                   label="Model (label collage: BigGAN-deep only)")
            base_class = gr.Dropdown(names, value=default_class, label="Base class", filterable=True,
                                     allow_custom_value=True)
            with gr.Row():
                base_seed = gr.Number(value=1, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
                truncation = gr.Slider(0.02, 1.0, value=0.4, step=0.02, label="Truncation")
            render_btn = gr.Button("Render base picture", variant="primary")
        base_image = gr.Image(label="Base picture", format="png", interactive=False)
    base_state = gr.State(None)  # {"model", "picture", "truncation", "photo", "seed", "class"}
    examples = labelled_examples(
        [[default_class, 1, 0.4], [names[281], 3, 0.4], [names[291], 2, 0.4], [names[980], 5, 0.4]],
        ["golden retriever · seed 1", "tabby cat · seed 3", "lion · seed 2", "volcano · seed 5"],
        [base_class, base_seed, truncation],
        label="Example bases (BigGAN-deep classes; StyleGAN2 uses the seed only)")

    with gr.Tabs():
        with gr.Tab("Label collage"):
            with gr.Row():
                lc_editor = gr.ImageEditor(label="Paint regions: one brush colour per target class",
                                           format="png", type="numpy", layers=False,
                                           brush=gr.Brush(colors=list(PALETTE), default_color=PALETTE[0],
                                                          default_size=24))
                with gr.Column():
                    lc_classes, lc_strengths = [], []
                    for k, colour in enumerate(PALETTE):
                        with gr.Row():
                            lc_classes.append(gr.Dropdown(names, value=names[(281, 291, 980)[k]],
                                                          label=f"Class for colour {k + 1} ({colour})",
                                                          filterable=True, allow_custom_value=True, scale=3))
                            lc_strengths.append(gr.Slider(0, 1, value=1.0, step=0.05,
                                                          label="Intensity", scale=2))
                    lc_layers = gr.Radio(["all", "first", "all but first"], value="all",
                                         label="Layers with the painted classes (Fig. 12)")
                    lc_soft = gr.Slider(0, 16, value=8, step=1, label="Soft edge (px at 256 px)")
                    with gr.Row():
                        lc_live = gr.Checkbox(value=True, label="Update while painting")
                        lc_run = gr.Button("Apply labels", variant="primary")
                        lc_sweep = gr.Button("Intensity sweep (Fig. 9)")
            with gr.Row():
                lc_before = gr.Image(label="Before", format="png", interactive=False)
                lc_after = gr.Image(label="After", format="png", interactive=False)
                lc_map = gr.Image(label="Class map (grey: base class)", format="png", interactive=False)
            lc_gallery = gr.Gallery(label="Intensity 0 → 1", columns=5, format="png")

        with gr.Tab("Feature blend"):
            ref_states, ref_editors, ref_classes, ref_seeds, ref_btns, dxs, dys = [], [], [], [], [], [], []
            with gr.Row():
                for r in range(MAX_REFS):
                    with gr.Column():
                        ref_states.append(gr.State(None))
                        ref_classes.append(gr.Dropdown(names, value=default_class, filterable=True,
                                                       allow_custom_value=True,
                                                       label=f"Reference {r + 1} class (BigGAN)"))
                        with gr.Row():
                            ref_seeds.append(gr.Number(value=10 + r, precision=0, minimum=0,
                                                       maximum=MAX_SEED, label="Seed"))
                            ref_btns.append(gr.Button(f"Render reference {r + 1}"))
                        ref_editors.append(gr.ImageEditor(
                            label=f"Reference {r + 1}: paint the region to take", format="png",
                            type="numpy", layers=False, brush=gr.Brush(colors=["#ffffff"], default_size=24)))
                        dx, dy = shift_sliders(256)
                        dxs.append(dx)
                        dys.append(dy)
            with gr.Row():
                fb_points = gr.CheckboxGroup([], label="Blend at these layers (early: shape, late: texture)")
                fb_strength = gr.Slider(0, 1, value=1.0, step=0.05, label="Strength")
                fb_run = gr.Button("Blend features", variant="primary")
            with gr.Row():
                fb_before = gr.Image(label="Before", format="png", interactive=False)
                fb_after = gr.Image(label="After", format="png", interactive=False)
                fb_map = gr.Image(label="Blend map (where each reference lands)", format="png",
                                  interactive=False)

        with gr.Tab("Real photo (BigGAN)"):
            with gr.Row():
                with gr.Column():
                    photo = gr.Image(label="Photo", format="png", type="numpy")
                    photo_class = gr.Dropdown(names, value=default_class, filterable=True,
                                              allow_custom_value=True, label="What is in it (class)")
                    photo_steps = gr.Slider(10, 400, value=100, step=10,
                                            label="Projection steps (CPU: ~0.5-2 s each)")
                    project_btn = gr.Button("Project into the GAN", variant="primary")
                projection = gr.Image(label="Projection (becomes the base picture)", format="png",
                                      interactive=False)
            project_info = gr.Markdown()
            with gr.Row():
                paste_btn = gr.Button("Paste the last label collage back into the photo (Poisson)")
                pasted = gr.Image(label="Photo with the edit", format="png", interactive=False)
    last_edit = gr.State(None)  # {"image", "region"}: the label collage's result, for pasting
    download.render()

    # ---- handlers ----
    def load(mid: str | None, dtype: torch.dtype | None = None) -> torch.nn.Module:
        if not mid:
            raise UserError("Pick a model first.")
        return ctx.model(mid, dtype)

    def points_update(mid: str | None):
        if not mid:
            return gr.update(choices=[], value=[])
        G = load(mid)
        choices = feature_points(G)
        return gr.update(choices=choices, value=[p for _, p in choices[:2]])

    def seeded(mid, cls, seed, trunc) -> tuple[torch.nn.Module, Picture, np.ndarray]:
        """(model, picture, its pixels) for a seed (and class: BigGAN-deep only)."""
        G = load(mid)
        pic = picture_from_seed(G, int(seed or 0), parse_class(cls) if is_biggan(G) else None, float(trunc))
        return G, pic, to_uint8(render(G, [pic], float(trunc)))[0]

    def latents(pic: Picture, prefix: str = "") -> dict:
        """A picture's latents for latents.npz: z and class vector, or w+ (StyleGAN2)."""
        if pic.classes is None:
            return {f"{prefix}w_plus": pic.latent}
        return {f"{prefix}z": pic.latent, f"{prefix}class_vector": pic.classes}

    def base_settings(state) -> dict:
        return {"base_class": state.get("class"), "truncation": state["truncation"],
                "base_is_projected_photo": state.get("photo") is not None}

    @gpu(duration=60)
    @user_errors
    def on_render(mid, cls, seed, trunc, progress=gr.Progress(track_tqdm=True)):
        G, pic, image = seeded(mid, cls, seed, trunc)
        index = parse_class(cls) if is_biggan(G) else None
        state = {"model": mid, "picture": pic, "truncation": float(trunc), "photo": None,
                 "seed": int(seed or 0), "class": index}
        run_record = download.run("render", {"generator": mid}, images={"result": image},
                                  arrays=latents(pic), seeds=[int(seed or 0)],
                                  settings=base_settings(state))
        return state, image, image, points_update(mid), run_record

    render_outputs = [base_state, base_image, lc_editor, fb_points, download.state]
    render_inputs = [model_id, base_class, base_seed, truncation]
    render_btn.click(on_render, render_inputs, render_outputs, api_name="ncollage_render",
                     concurrency_id="gpu")
    run_examples(examples, (on_render, render_inputs, render_outputs))
    model_id.change(lambda mid: shift_range(ctx.registry.get(mid).image_size() if mid else 256, 2 * MAX_REFS), model_id, dxs + dys,
                    api_name=False, queue=False)

    @gpu(duration=60)
    @user_errors
    def on_reference(mid, cls, seed, trunc, progress=gr.Progress(track_tqdm=True)):
        _, pic, image = seeded(mid, cls, seed, trunc)
        return {"model": mid, "picture": pic, "seed": int(seed or 0),
                "class": parse_class(cls) if pic.classes is not None else None}, image

    for r, btn in enumerate(ref_btns):
        btn.click(on_reference, [model_id, ref_classes[r], ref_seeds[r], truncation],
                  [ref_states[r], ref_editors[r]], api_name=f"ncollage_reference_{r + 1}",
                  concurrency_id="gpu")

    def current(state, mid) -> tuple[torch.nn.Module, Picture, float]:
        if not state:
            raise UserError("Render a base picture (or project a photo) first.")
        if state["model"] != mid:
            raise UserError(f"The base picture was made with {state['model']}: render it again "
                            f"for {mid}.")
        return load(mid), state["picture"], state["truncation"]

    @gpu(duration=60)
    @user_errors
    def on_label(mid, state, editor, layers, soft, *classes_and_strengths, sweep: bool = False):
        G, pic, trunc = current(state, mid)
        size = G.size
        regions = masks_by_colour(editor, PALETTE, size)
        used = [k for k in range(len(PALETTE)) if regions[k].sum() > 0]
        if not used:
            raise UserError("Paint a region first (one brush colour per target class).")
        classes = [parse_class(classes_and_strengths[k]) for k in used]
        strengths = [float(classes_and_strengths[len(PALETTE) + k]) for k in used]
        soft_regions = soften(regions[used], float(soft) * size / 256)
        points = layer_preset(G, layers) if is_biggan(G) else []
        frames = (0.25, 0.5, 0.75, 1.0) if sweep else (1.0,)
        before, edits, weights = label_collage(G, pic, soft_regions, classes, strengths, trunc,
                                               points, frames)
        region = (1 - weights[:1]).clamp(0, 1)
        region = F.interpolate(region, size=(size, size), mode="bilinear", align_corners=False)
        edit = {"image": edits[-1:].cpu(), "region": (region > 0.1).float()}
        colours = [PALETTE[k] for k in used]
        class_map = weights_picture(weights, size, colours)
        before_u8, after_u8 = to_uint8(before)[0], to_uint8(edits[-1:])[0]
        run_record = download.run(
            "label_sweep" if sweep else "label_collage", {"generator": mid},
            images={"before": before_u8, "after": after_u8, "class_map": class_map,
                    **({"intensity": list(to_uint8(edits))} if sweep else {})},
            masks={**{f"painted_{k + 1}": regions[k] for k in used},
                   **{f"soft_{k + 1}": soft_regions[i] for i, k in enumerate(used)}},
            arrays={**latents(pic), "class_weights": weights}, seeds=[state["seed"]] if state.get("seed") is not None else [],
            settings={**base_settings(state), "colours": colours, "classes": classes,
                      "intensities": strengths, "layers": layers, "condition_points": points,
                      "soft_edge_px_at_256": float(soft),
                      **({"sweep_intensities": list(frames)} if sweep else {})},
            notes="masks painted_k / soft_k: brush colour k as painted and softened; "
                  "class_weights: [base, region 1, ...] at 64 x 64.")
        outputs = (before_u8, after_u8, class_map, edit, run_record)
        if sweep:
            frames_out = [(img, f"intensity {t:g}") for img, t in zip(to_uint8(torch.cat([before, edits])),
                                                                       (0.0, *frames))]
            return outputs + (frames_out,)
        return outputs

    lc_inputs = [model_id, base_state, lc_editor, lc_layers, lc_soft] + lc_classes + lc_strengths
    lc_outputs = [lc_before, lc_after, lc_map, last_edit, download.state]
    lc_run.click(on_label, lc_inputs, lc_outputs, api_name="ncollage_label", concurrency_id="gpu")
    lc_sweep.click(lambda *a: on_label(*a, sweep=True), lc_inputs, lc_outputs + [lc_gallery],
                   api_name="ncollage_sweep", concurrency_id="gpu")
    quiet_label = quietly(on_label, len(lc_outputs))

    def on_label_live(live, *args):
        if not live:
            return [gr.update()] * len(lc_outputs)
        return quiet_label(*args)

    for trigger in [lc_editor.change, lc_layers.change, lc_soft.release] + \
            [c.change for c in lc_classes] + [s.release for s in lc_strengths]:
        trigger(on_label_live, [lc_live] + lc_inputs, lc_outputs, api_name=False, concurrency_id="gpu",
                trigger_mode="always_last", show_progress="minimal")

    @gpu(duration=60)
    @user_errors
    def on_blend(mid, state, points, strength, *refs_and_shifts):
        G, pic, trunc = current(state, mid)
        size = G.size
        n = MAX_REFS
        states, editors = refs_and_shifts[:n], refs_and_shifts[n:2 * n]
        shifts_x, shifts_y = refs_and_shifts[2 * n:3 * n], refs_and_shifts[3 * n:]
        refs, regions, shifts, used = [], [], [], []
        for r in range(n):
            if not states[r]:
                continue
            if states[r]["model"] != mid:
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
        chosen_points = [int(p) for p in points or []]
        before, after, ref_images = feature_blend(G, pic, refs, regions_t, shifts, chosen_points,
                                                  trunc, float(strength))
        blend = FeatureBlend(regions_t, shifts, frozenset(), float(strength))
        landed = blend.weights_at(size)
        weights = torch.cat([1 - landed.sum(0, keepdim=True), landed])
        blend_map = weights_picture(weights, size, PALETTE[:len(refs)])
        before_u8, after_u8 = to_uint8(before)[0], to_uint8(after)[0]
        ref_seeds = [states[r].get("seed") for r in used]
        run_record = download.run(
            "feature_blend", {"generator": mid},
            images={"before": before_u8, "after": after_u8, "blend_map": blend_map,
                    **{f"reference_{r + 1}": ref_images[i:i + 1] for i, r in enumerate(used)}},
            masks={f"reference_{r + 1}": regions_t[i] for i, r in enumerate(used)},
            arrays={**latents(pic, "base_"),
                    **{k: v for i, r in enumerate(used) for k, v in latents(refs[i], f"reference_{r + 1}_").items()},
                    "landed_weights": landed},
            seeds=([state["seed"]] if state.get("seed") is not None else []) + [s for s in ref_seeds if s is not None],
            settings={**base_settings(state), "layers": chosen_points, "strength": float(strength),
                      "shifts_px": {f"reference_{r + 1}": list(shifts[i]) for i, r in enumerate(used)},
                      "reference_seeds": {f"reference_{r + 1}": states[r].get("seed") for r in used},
                      "reference_classes": {f"reference_{r + 1}": states[r].get("class") for r in used}},
            notes="seeds: base, then the references used; masks/reference_k: the region taken "
                  "from reference k (before its shift).")
        return before_u8, after_u8, blend_map, run_record

    fb_run.click(on_blend, [model_id, base_state, fb_points, fb_strength] + ref_states + ref_editors + dxs + dys,
                 [fb_before, fb_after, fb_map, download.state], api_name="ncollage_blend",
                 concurrency_id="gpu")

    @gpu(duration=300)
    @user_errors
    def on_project(mid, image, cls, steps, trunc, progress=gr.Progress()):
        G = load(mid, torch.float32)
        if not is_biggan(G):
            raise UserError("Photo projection is offered for BigGAN-deep models; pick one.")
        size = G.size
        target = pil_to_tensor(to_pil(image), size)
        pic, out, losses = project(G, target, parse_class(cls), float(trunc), int(steps),
                                   progress=lambda d, t, l: progress(d / t, desc=f"Step {d}/{t} · loss {l:.3f}"))
        index = parse_class(cls)
        state = {"model": mid, "picture": pic, "truncation": float(trunc), "photo": target,
                 "seed": None, "class": index}
        shown = to_uint8(out)[0]
        info = (f"Loss (LPIPS + MSE) {losses[0]:.3f} → **{losses[-1]:.3f}** in {len(losses)} steps. "
                "The projection is now the base picture: paint labels on it, then paste back.")
        run_record = download.run(
            "project", {"generator": mid}, images={"photo": target, "projection": shown},
            arrays={**latents(pic), "losses": losses}, seeds=[0],
            settings={"class": index, "truncation": float(trunc), "steps": int(steps),
                      "lr_z": PROJECT_LR, "lr_class": PROJECT_CLASS_LR, "loss": "LPIPS-VGG + MSE"},
            notes="seed 0 draws the starting z; class_vector is optimised too (starts one-hot).")
        return state, shown, shown, shown, info, run_record

    project_btn.click(on_project, [model_id, photo, photo_class, photo_steps, truncation],
                      [base_state, projection, base_image, lc_editor, project_info, download.state],
                      api_name="ncollage_project", concurrency_id="gpu")

    @user_errors
    def on_paste(state, edit):
        if not state or state.get("photo") is None:
            raise UserError("Project a photo first (the paste goes back into that photo).")
        if not edit:
            raise UserError("Apply a label collage to the projection first.")
        result = to_uint8(paste_back(state["photo"], edit["image"], edit["region"]))[0]
        run_record = download.run(
            "paste_back", {"generator": state["model"]},
            images={"photo": state["photo"], "edited": edit["image"], "pasted": result},
            masks={"region": edit["region"]}, arrays=latents(state["picture"]),
            settings={**base_settings(state), "blend": "Poisson"},
            notes="The label collage's edited region (masks/region) Poisson-blended into the photo.")
        return result, run_record

    paste_btn.click(on_paste, [base_state, last_edit], [pasted, download.state], api_name="ncollage_paste")
