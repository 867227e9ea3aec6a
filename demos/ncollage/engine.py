"""Neural Collage tab: sCBN label collaging and spatial feature blending (Suzuki et al. 2019).

Models: the authors' own SNGAN dog+cat generator (`core.models.sngan`, with their encoder,
auxiliary network and discriminator for photos), BigGAN-deep, and StyleGAN2 (blending only).

Engine (no Gradio):
- `label_weights` turns painted regions + intensities into per-pixel weights of the base
  class and each painted class (Eq. 2's W_hw(c)) at the picture's full resolution; the
  models resize them to every batch norm. `label_collage` renders base and edits in one
  batched pass with the sCBN at the chosen batch norms (`layer_preset`: the authors' "all",
  "first" = the first sCBN only, "all but first"); its `frames` give Fig. 9's intensity sweep.
- `feature_blend` (Eq. 3, the authors' feature-blending demo): a weight per feature point
  and interpolation frames; references are rendered first (each with its own truncation, or
  with the base's class when asked) and their features pasted into the base's frames inside
  their regions, shifted by exactly the pixels asked at every layer (`shift_features`:
  sub-cell shifts are bilinear). With `labels` the sCBN runs in the same pass (Fig. 2d).
- `fit_sngan` is the paper's real-image editing (Eq. 4, optimization.py): the encoder's z
  (optionally mapped to the auxiliary zeta), then Chainer's Adam on the discriminator-feature
  cosine term + 0.2 x the pixel term, class fixed. `project` fits BigGAN-deep (no encoder or
  discriminator exists) with LPIPS + the authors' pixel weight and learning rate, class fixed,
  z kept in the sampler's range. `paste_back` Poisson-blends an edit into the photo's frame;
  the handler then puts that frame into the uploaded photo at full resolution inside a mask
  the user can paint (`core.faces.FramedPhoto.paste`).

Handlers (`render_base`, `render_reference`, `apply_labels`, `sweep_labels`, `live_labels`,
`blend_features`, `project_photo`, `paste_mask`, `paste_edit`, `shift_ranges`) are
module-level functions of the app context and the widgets' values; those with several outputs
return a NamedTuple of them in the wiring's order (`BaseOutputs`, `LabelOutputs`, ...).
`build_tab` lays out the base picture, then one builder per sub-tab (label collage, feature
blend, real photo).
"""
from __future__ import annotations

import copy
import difflib
import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Sequence

import gradio as gr
import numpy as np
import torch
import torch.nn.functional as F

from core.blend import translate
from core.context import AppContext
from core.device import placement
from core.errors import UserError
from core.faces import FramedPhoto
from core.images import (editor_image_and_mask, editor_is_empty, hex_rgb, mask_from_editor,
                         masks_by_colour, photos_for, pil_to_tensor, to_uint8)
from core.lpips import get_lpips, lpips_distance
from core.models import STYLEGAN2_ARCHS
from core.poisson import poisson_blend
from core.gpu import gpu_task, user_errors
from core.photo_slot import frame_input, photo_slot
from core.recipe import Run
from core.ui import (GPU_LANE, MAX_SEED, TabWiring, labelled_examples, licence_line, long_dropdown,
                     quietly, record, shift_range, shift_sliders, tab_header)

if TYPE_CHECKING:  # model code is imported when a model is loaded, not at start-up
    from core.models.biggan import BigGANDeep
    from core.models.sngan import SNGANGenerator

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
PALETTE = ("#FE2712", "#66B032", "#FEFE33", "#FC600A", "#0247FE", "#B2D732",
           "#4424D6", "#FB9902", "#8601AF", "#FCCC1A", "#347C98", "#C21460")
SHOWN_COLOURS = 3  # the others sit in a collapsed row
LABEL_DEFAULTS = (281, 291, 250, 153, 162, 207, 235, 263, 282, 285, 288, 292)  # dog/cat classes
MAX_REFS = 2
MAX_POINTS = 16  # per-layer weight sliders (BigGAN-deep 512: 16 feature points)
DEFAULT_CLASS = 207  # golden retriever
PIXEL_WEIGHT = 0.2  # optimization.py: lmd_pixel
LR_Z, LR_ZETA = 0.075, 0.015  # optimization.py: Adam alpha on z (noaux) / zeta (aux)
AUTHORS_STEPS = 200  # optimization.py: --iter_opt default
CPU_STEPS = 50       # the photo fit's default on a CPU (a step takes ~0.5-2 s there)
PROJECTION_GPU_SECONDS = 0.05  # estimated GPU time of one fitting step at 128 px (ZeroGPU's duration)
BLEND_FRAMES = 16  # the authors' feature-blending demo renders 16 interpolation frames


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


def class_offset(G: torch.nn.Module) -> int:
    """ImageNet index of the model's class 0 (151 for the dog+cat SNGAN, else 0)."""
    from core.models.sngan import CLASS_OFFSET

    return CLASS_OFFSET if is_sngan(G) and G.num_classes == 143 else 0


def model_class(G: torch.nn.Module, imagenet_index: int) -> int:
    """An ImageNet class -> the model's class index, refused readably when it has none."""
    i = imagenet_index - class_offset(G)
    if not 0 <= i < G.num_classes:
        if is_sngan(G):
            names = imagenet_names()
            raise UserError(f"{imagenet_index}: {names[imagenet_index]} is not one of this SNGAN's "
                            f"classes: it knows ImageNet's dogs and cats, {class_offset(G)} "
                            f"({names[class_offset(G)]}) to {class_offset(G) + G.num_classes - 1}.")
        raise UserError(f"Class {imagenet_index} does not exist in this model ({G.num_classes} classes).")
    return i


def class_vector(G: torch.nn.Module, imagenet_index: int) -> torch.Tensor:
    return one_hot(model_class(G, imagenet_index), G.num_classes)


# ---- pictures ------------------------------------------------------------------------------
@dataclass
class Picture:
    """What re-renders a picture: z and class vector (BigGAN-deep, SNGAN) or w+ (StyleGAN2),
    and the truncation it was rendered with (BigGAN-deep's batch norms depend on it)."""
    latent: torch.Tensor  # [1, z_dim] or [1, n_latent, w_dim]
    classes: torch.Tensor | None = None  # [1, num_classes]
    truncation: float = 1.0


def is_biggan(G: torch.nn.Module) -> bool:
    from core.models.biggan import BigGANDeep

    return isinstance(G, BigGANDeep)


def is_sngan(G: torch.nn.Module) -> bool:
    from core.models.sngan import SNGANGenerator

    return isinstance(G, SNGANGenerator)


def is_conditional(G: torch.nn.Module) -> bool:
    return is_biggan(G) or is_sngan(G)


def picture_from_seed(G: torch.nn.Module, seed: int, class_index: int | None,
                      truncation: float) -> Picture:
    """A seed (and ImageNet class) -> the picture's latents, drawn by the family's own sampler
    (`G.sample_latents`: BigGAN-deep's truncated normal scaled by the truncation, SNGAN's
    clipped normal, StyleGAN2's `seed_normal` z), kept on the CPU in the form this tab
    re-renders: z and a one-hot class vector, or w+ (mapped, truncated) for StyleGAN2."""
    z = G.sample_latents([int(seed)], truncation)
    if is_conditional(G):
        index = class_index if class_index is not None else DEFAULT_CLASS
        return Picture(z.float().cpu(), class_vector(G, index), float(truncation))
    with torch.inference_mode():
        return Picture(G.w_plus(G.truncated_w(z, truncation)).float().cpu(), None, float(truncation))


def _biggan_in_basis(G: "BigGANDeep", basis: torch.Tensor) -> "BigGANDeep":
    """The same BigGAN-deep whose K "classes" are the rows of `basis` [K, num_classes] (class
    mixtures): its embedding becomes E @ basis^T, every other module is shared. Class maps
    over a few mixtures then stay small at any resolution, and since the embedding is linear
    the pictures are those of the full 1000-class maps."""
    sub = copy.copy(G)
    sub._modules = dict(G._modules)
    weight = G.embeddings.weight
    embeddings = torch.nn.Linear(basis.shape[0], weight.shape[0], bias=False, device=weight.device,
                                 dtype=weight.dtype)
    embeddings.weight = torch.nn.Parameter(weight @ basis.to(weight).t(), requires_grad=False)
    sub.embeddings = embeddings
    sub.num_classes = basis.shape[0]
    return sub


def forward(G: torch.nn.Module, z: torch.Tensor, classes: torch.Tensor | None, truncation: float,
            maps: torch.Tensor | None = None, basis: torch.Tensor | None = None,
            points: Sequence[int] | None = None, hook: Callable | None = None) -> torch.Tensor:
    """One batched pass of any family. `maps` [B, K, h, w] weigh the K rows of `basis`
    (class mixtures) at the batch norms (SNGAN) or condition points (BigGAN-deep) in
    `points`; elsewhere `classes` [B, n]. `hook`: the family's feature hook."""
    if is_biggan(G):
        if maps is None:
            return G(z, classes, truncation, feature_hook=hook)
        sub = _biggan_in_basis(G, basis)
        base = one_hot(0, basis.shape[0]).to(z)  # row 0 of the basis is the picture's class
        return sub(z, maps, truncation, scbn_points=set(points), global_classes=base, feature_hook=hook)
    if is_sngan(G):
        if maps is None:
            return G(z, classes, feature_hook=hook)
        return G(z, maps, basis=basis, scbn_bns=points, global_classes=classes, feature_hook=hook)
    return G.synthesis(z, hook=hook)


def render(G: torch.nn.Module, pictures: Sequence[Picture], truncation: float | None = None,
           maps: torch.Tensor | None = None, basis: torch.Tensor | None = None,
           points: Sequence[int] | None = None, hook: Callable | None = None) -> torch.Tensor:
    """Pictures (one batch) -> images [B, 3, S, S] in [-1, 1] (truncation: the first
    picture's unless given)."""
    device, dtype = placement(G)
    truncation = pictures[0].truncation if truncation is None else truncation
    latents = torch.cat([p.latent for p in pictures]).to(device, dtype)
    classes = None if pictures[0].classes is None else \
        torch.cat([p.classes for p in pictures]).to(device, dtype)
    if maps is not None:
        maps, basis = maps.to(device, dtype), basis.to(device, dtype)
    return forward(G, latents, classes, truncation, maps, basis, points, hook).float().clamp(-1, 1)


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


def label_weights(regions: torch.Tensor, intensities: Sequence[float]) -> torch.Tensor:
    """Eq. 2's weights at the regions' resolution -> [K + 1, 1, H, W]: 0 the base class, k
    region k's class with weight intensity_k * mask (scaled down where regions overlap beyond
    1); non-negative, summing to 1 at every pixel."""
    m = regions.float() * torch.tensor([float(t) for t in intensities]).view(-1, 1, 1, 1)
    m = m / m.sum(0, keepdim=True).clamp(min=1.0)
    return torch.cat([1 - m.sum(0, keepdim=True), m])


def class_maps(base: torch.Tensor, regions: torch.Tensor, classes: torch.Tensor,
               intensities: Sequence[float], res: int | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The dense form of `label_weights`: (maps [1, num_classes, r, r], weights [K + 1, 1, r, r])
    with class vectors `base` [1, n] and `classes` [K, n]; r: the regions' size unless given
    (area-resized)."""
    if res is not None and res != regions.shape[-1]:
        regions = F.interpolate(regions.float(), size=(res, res), mode="area")
    weights = label_weights(regions, intensities)
    vectors = torch.cat([base, classes])
    return torch.einsum("kxhw,kc->chw", weights, vectors.float())[None], weights


def layer_preset(G: torch.nn.Module, preset: str) -> list[int]:
    """The authors' layer choices (Fig. 12) as the points the sCBN acts at: SNGAN's 12 batch
    norms, or BigGAN-deep's condition points (the first GenBlock holds its first batch norms;
    point 0, the 4 x 4 seed, takes the class too). "first": the first sCBN only; "all but
    first": every other one."""
    if is_sngan(G):
        n, first = len(G.bn_points()), [0]
    else:
        n, first = len(G.condition_points()), [1]
    if preset == "first":
        return first
    if preset == "all but first":
        return [i for i in range(n) if i not in first]
    return list(range(n))


@dataclass
class Labels:
    """A label collage: soft regions [K, 1, S, S], their model classes, intensities and the
    points the sCBN acts at."""
    regions: torch.Tensor
    classes: Sequence[int]
    intensities: Sequence[float]
    points: Sequence[int]

    def check(self) -> None:
        if not self.points:
            raise UserError("Choose at least one layer for the label collage.")
        if self.regions.sum() == 0:
            raise UserError("Paint a region first (one brush colour per target class).")
        if not any(float(t) > 0 for t in self.intensities):
            raise UserError("Every intensity is 0, so nothing would change: raise one above 0.")

    def basis(self, G: torch.nn.Module, picture: Picture) -> torch.Tensor:
        """[K + 1, n]: the picture's class, then each painted class."""
        targets = [one_hot(c, G.num_classes) for c in self.classes]
        return torch.cat([picture.classes.float().cpu(), *targets])

    def maps(self, scales: Sequence[float]) -> torch.Tensor:
        """Weights for each intensity scale [len(scales), K + 1, S, S]."""
        return torch.cat([label_weights(self.regions.cpu(), [t * float(i) for i in self.intensities])
                          .permute(1, 0, 2, 3) for t in scales])


@torch.inference_mode()
def label_collage(G: torch.nn.Module, picture: Picture, regions: torch.Tensor, classes: Sequence[int],
                  intensities: Sequence[float], truncation: float, points: Sequence[int],
                  frames: Sequence[float] = (1.0,)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(before [1, 3, S, S], edits [len(frames), 3, S, S], weights [K + 1, 1, S, S]) in one
    batched pass. `classes` are the model's class indices; `frames` scale every intensity
    (Fig. 9's continuous intensity); "before" uses a uniform map of the base class (the plain
    picture)."""
    if not is_conditional(G):
        raise UserError("Label collage needs a class-conditional model: pick an SNGAN or "
                        "BigGAN-deep model.")
    labels = Labels(regions, classes, intensities, points)
    labels.check()
    basis = labels.basis(G, picture)
    maps = labels.maps((0.0, *frames))
    images = render(G, [picture] * len(maps), truncation, maps, basis, points)
    return images[:1], images[1:], label_weights(regions.cpu(), intensities)


# ---- feature blending ----------------------------------------------------------------------
def feature_points(G: torch.nn.Module) -> list[tuple[str, int]]:
    """(label, point) for every layer whose output can be blended."""
    if is_biggan(G) or is_sngan(G):
        return [(f"{name} · {res} px", i) for i, (name, res, _) in enumerate(G.feature_points())]
    return [(f"layer {k} · {G.layer_resolution(k)} px", k) for k in range(0, G.num_layers, 2)]


def point_resolutions(G: torch.nn.Module) -> dict[int, int]:
    if is_biggan(G) or is_sngan(G):
        return {i: res for i, (_, res, _) in enumerate(G.feature_points())}
    return {k: G.layer_resolution(k) for k in range(0, G.num_layers, 2)}


def shift_features(x: torch.Tensor, dx: float, dy: float) -> torch.Tensor:
    """Move a map [..., C, h, w] right by dx and down by dy cells; whole cells are copied
    exactly, fractions interpolated bilinearly; what enters the frame is zero."""
    if float(dx).is_integer() and float(dy).is_integer():
        return translate(x, int(dx), int(dy))
    shape = x.shape
    x4 = x.reshape(-1, *shape[-3:]) if x.dim() >= 3 else x[None, None]
    h, w = x4.shape[-2:]
    ys = (torch.arange(h, dtype=torch.float32) - dy + 0.5) / h * 2 - 1
    xs = (torch.arange(w, dtype=torch.float32) - dx + 0.5) / w * 2 - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).to(x4)
    out = F.grid_sample(x4, grid.expand(x4.shape[0], h, w, 2), mode="bilinear",
                        padding_mode="zeros", align_corners=False)
    return out.reshape(shape)


def cell_shift(shift: tuple[float, float], frame: int, res: int) -> tuple[float, float]:
    """A (dx, dy) pixel shift of the `frame`-pixel picture on a res x res feature grid."""
    return shift[0] * res / frame, shift[1] * res / frame


@dataclass
class Blend:
    """Eq. 3 with the authors' demo controls, applied to streams 1..F of the main pass (stream
    0: the base, untouched): at feature point p, frame f gets weight λ_p t_f M_i for reference
    i, M_i its region resized to the layer and shifted by exactly `shifts[i]` pixels; weights
    over references are capped to sum <= 1 per position. `features[p]`: the references'
    features there [R, C, h, w] (captured beforehand by `capture`)."""
    regions: torch.Tensor  # [R, 1, S, S]
    shifts: Sequence[tuple[float, float]]
    weights: dict[int, float]
    frames: torch.Tensor  # [F] scales t_f in [0, 1]
    features: dict[Any, torch.Tensor] = field(default_factory=dict)
    _landed: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def frame(self) -> int:
        return self.regions.shape[-1]

    def landed(self, res: int) -> torch.Tensor:
        """Where each reference lands on a res x res grid [R, 1, res, res] (sum <= 1)."""
        if res not in self._landed:
            m = self.regions.float()
            if res != self.frame:
                m = F.interpolate(m, size=(res, res), mode="area")
            m = torch.stack([shift_features(m[i], *cell_shift(s, self.frame, res))
                             for i, s in enumerate(self.shifts)])
            self._landed[res] = m / m.sum(0, keepdim=True).clamp(min=1.0)
        return self._landed[res]

    def mix(self, key: Any, point: int, h: torch.Tensor) -> torch.Tensor | None:
        weight = float(self.weights.get(point, 0.0))
        if weight == 0 or key not in self.features:
            return None
        res = h.shape[-1]
        m = self.landed(res).to(h)  # [R, 1, r, r]
        refs = self.features[key].to(h)
        moved = torch.stack([shift_features(refs[i], *cell_shift(s, self.frame, res))
                             for i, s in enumerate(self.shifts)])
        m = weight * self.frames.to(h).view(-1, 1, 1, 1, 1) * m[None]  # [F, R, 1, r, r]
        out = h.clone()
        out[1:] = (1 - m.sum(1)) * h[1:] + (m * moved[None]).sum(1)
        return out

    def __call__(self, point: int, h: torch.Tensor) -> torch.Tensor | None:
        return self.mix(point, point, h)

    def stylegan2_hook(self, k: int, x: torch.Tensor, skip: torch.Tensor | None):
        """Features and the running RGB skip image are blended alike."""
        x2 = self.mix((k, "x"), k, x)
        s2 = None if skip is None else self.mix((k, "skip"), k, skip)
        return (x if x2 is None else x2), (skip if s2 is None else s2)


def capture(G: torch.nn.Module, refs: Sequence[Picture], points: Sequence[int]) -> dict[Any, torch.Tensor]:
    """The references' features at `points`, each rendered at its own truncation (one pass
    per truncation) -> {point (or (k, "x"/"skip") for StyleGAN2): [R, C, h, w]}."""
    found: dict[Any, list] = {}
    wanted = set(points)
    groups: dict[float, list[int]] = {}
    for i, p in enumerate(refs):
        groups.setdefault(p.truncation if is_biggan(G) else 1.0, []).append(i)
    for trunc, members in groups.items():
        seen: dict[Any, torch.Tensor] = {}

        def keep(point: int, h: torch.Tensor) -> None:
            if point in wanted:
                seen[point] = h.detach()

        def keep_sg2(k: int, x: torch.Tensor, skip: torch.Tensor | None):
            if k in wanted:
                seen[(k, "x")] = x.detach()
                if skip is not None:
                    seen[(k, "skip")] = skip.detach()
            return x, skip

        conditional = is_conditional(G)
        render(G, [refs[i] for i in members], trunc if conditional else None,
               hook=keep if conditional else keep_sg2)
        for key, h in seen.items():
            found.setdefault(key, [None] * len(refs))
            for j, i in enumerate(members):
                found[key][i] = h[j]
    return {k: torch.stack(v) for k, v in found.items()}


@torch.inference_mode()
def feature_blend(G: torch.nn.Module, base: Picture, refs: Sequence[Picture], regions: torch.Tensor,
                  shifts: Sequence[tuple[float, float]], weights: dict[int, float] | Sequence[int],
                  truncation: float | None = None, frames: int = 1, base_class_refs: bool = False,
                  labels: Labels | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(before [1, 3, S, S], frames [F, 3, S, S] (the last at full weight), references
    [R, 3, S, S] as used). `regions[i]` [1, S, S] is where reference i's content is taken
    (before its shift); `weights`: λ per feature point (a list of points: λ = 1 there).
    `base_class_refs`: render the references with the base's class. `labels`: the sCBN of
    a label collage in the same pass (the base picture stays plain)."""
    if not refs:
        raise UserError("Add a reference picture and paint the region to take from it.")
    if not isinstance(weights, dict):
        weights = {int(p): 1.0 for p in weights}
    weights = {p: float(w) for p, w in weights.items() if float(w) > 0}
    if not weights:
        raise UserError("Give at least one layer a blending weight above 0.")
    if regions.sum() == 0:
        raise UserError("The regions are empty: paint where each reference's content should come from.")
    truncation = base.truncation if truncation is None else truncation
    if base_class_refs and base.classes is not None:
        refs = [Picture(r.latent, base.classes, r.truncation) for r in refs]
    steps = max(1, int(frames))
    scales = torch.tensor([(f + 1) / steps for f in range(steps)])
    blend = Blend(regions.float(), list(shifts), weights, scales, capture(G, refs, list(weights)))
    hook = blend.stylegan2_hook if not is_conditional(G) else blend
    maps = basis = points = None
    if labels is not None:
        labels.check()
        basis = labels.basis(G, base)
        maps = labels.maps([0.0] + [1.0] * steps)
        points = labels.points
    images = render(G, [base] * (1 + steps), truncation, maps, basis, points, hook)
    ref_images = render(G, refs, None) if len({r.truncation for r in refs}) == 1 or not is_biggan(G) \
        else torch.cat([render(G, [r]) for r in refs])
    return images[:1], images[1:], ref_images


def layer_shifts(G: torch.nn.Module, shift: tuple[float, float], points: Sequence[int]) -> list[str]:
    """What each blended layer does with a pixel shift: its cells and the pixels they are."""
    res = point_resolutions(G)
    out = []
    for p in points:
        dx, dy = cell_shift(shift, G.size, res[p])
        out.append(f"{res[p]} px layer: {dx:g}, {dy:g} cells = {shift[0]:g}, {shift[1]:g} px")
    return out


# ---- real photos ---------------------------------------------------------------------------
class ChainerAdam:
    """Chainer's Adam (the authors' optimiser): m, v moving averages, step
    alpha * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps), on one tensor."""

    def __init__(self, param: torch.Tensor, alpha: float, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8):
        self.param, self.alpha, self.beta1, self.beta2, self.eps = param, alpha, beta1, beta2, eps
        self.m, self.v, self.t = torch.zeros_like(param), torch.zeros_like(param), 0

    @torch.no_grad()
    def step(self) -> None:
        g = self.param.grad
        self.t += 1
        self.m += (1 - self.beta1) * (g - self.m)
        self.v += (1 - self.beta2) * (g * g - self.v)
        lr = self.alpha * math.sqrt(1 - self.beta2 ** self.t) / (1 - self.beta1 ** self.t)
        self.param -= lr * self.m / (self.v.sqrt() + self.eps)
        self.param.grad = None


def eq4_terms(D: torch.nn.Module, recon: torch.Tensor, gt_features: torch.Tensor, gt: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 4 as optimization.py: (−Σ_i cos(D(recon_i), D(gt_i)), 0.2 · mean squared error)."""
    v1 = D.feature_vector(recon)
    cos = (v1 * gt_features).sum(1) / torch.sqrt(v1.square().sum(1) * gt_features.square().sum(1))
    return -cos.sum(), PIXEL_WEIGHT * F.mse_loss(recon, gt)


def authors_scale(target: torch.Tensor) -> torch.Tensor:
    """A picture in [-1, 1] (pixel / 127.5 - 1) as optimization.py reads photos: pixel / 128 - 1."""
    return (target + 1) * (127.5 / 128) - 1


def fit_sngan(G: "SNGANGenerator", D: torch.nn.Module, E: torch.nn.Module, aux: torch.nn.Module | None,
              enc_input: torch.Tensor, gt: torch.Tensor, class_index: int, steps: int,
              progress: Callable[[int, int, float], None] | None = None
              ) -> tuple[Picture, torch.Tensor, np.ndarray]:
    """The paper's real-image editing (Eq. 4, optimization.py): z = E(photo at the encoder's
    size, class); with the auxiliary network zeta = A(z) is optimised (Adam 0.015) and
    z' = B(zeta), else z itself (Adam 0.075); the class stays fixed. `gt` is the photo at the
    generator's size, both in the authors' pixel / 128 - 1 scale -> (picture, its image,
    losses [steps, 2]: cosine term, pixel term).

    The latent returned is the one optimization.py saves (opt_final.npy, opt-z.npy): with the
    auxiliary network the z' = B(zeta) of the last forward pass, before that step's update
    (`recon, _, _, z = gen.forward(zeta=..., return_zs=True)`), so its picture is the last
    loss's reconstruction; without it z after the last update (`z = target.W`)."""
    device, _ = placement(G)
    c = torch.tensor([class_index], device=device)
    gt = gt.to(device)
    with torch.no_grad():
        z0 = E(enc_input.to(device), c)
        start = aux.A(z0) if aux is not None else z0
        gt_features = D.feature_vector(gt)
    param = start.clone().requires_grad_(True)
    opt = ChainerAdam(param, LR_ZETA if aux is not None else LR_Z)
    losses = []
    saved = z0  # optimization.py's z before the loop: the encoder's
    for step in range(int(steps)):
        z = aux.B(param) if aux is not None else param
        cos, pixel = eq4_terms(D, G(z, c), gt_features, gt)
        (cos + pixel).backward()
        opt.step()
        saved = z.detach() if aux is not None else param.detach()  # B(zeta) before the update
        losses.append((cos.item(), pixel.item()))
        if progress:
            progress(step + 1, int(steps), losses[-1][0] + losses[-1][1])
    with torch.inference_mode():
        z = saved.clone()
        picture = Picture(z.float().cpu(), one_hot(class_index, G.num_classes), 1.0)
        return picture, G(z, c).float().clamp(-1, 1), np.asarray(losses, np.float32).reshape(-1, 2)


def project(G: "BigGANDeep", target: torch.Tensor, class_index: int, truncation: float, steps: int,
            seed: int = 0, progress: Callable[[int, int, float], None] | None = None
            ) -> tuple[Picture, torch.Tensor, list[float]]:
    """Fit BigGAN-deep's z to `target` [1, 3, S, S] (no encoder or discriminator was
    released): LPIPS-VGG + the authors' 0.2 · MSE, Chainer's Adam at their 0.075, the class
    fixed, z kept in the sampler's range at this truncation ([-2t, 2t]) -> (picture, image,
    losses). G must be float32 (gradients)."""
    if not is_biggan(G):
        raise UserError("This projection is for BigGAN-deep (SNGAN uses its encoder; StyleGAN2: "
                        "the SAM tab).")
    device, _ = placement(G)
    target = target.to(device)
    z = G.sample_latents([seed], truncation).to(device).requires_grad_(True)
    c = one_hot(class_index, G.num_classes).to(device)
    opt = ChainerAdam(z, LR_Z)
    bound = 2 * float(truncation)
    losses = []
    for step in range(steps):
        out = G(z, c, truncation)
        loss = lpips_distance(out, target, net="vgg").mean() + PIXEL_WEIGHT * F.mse_loss(out, target)
        loss.backward()
        opt.step()
        with torch.no_grad():
            z.clamp_(-bound, bound)
        losses.append(loss.item())
        if progress:
            progress(step + 1, steps, losses[-1])
    with torch.inference_mode():
        picture = Picture(z.detach().cpu(), c.cpu(), float(truncation))
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
    w = weights.float().cpu()
    if w.shape[-1] != size:
        w = F.interpolate(w, size=(size, size), mode="bilinear", align_corners=False)
    w = w[: len(rgb)].clamp(min=0)
    out = torch.einsum("khw,kc->hwc", w[:, 0], rgb[: len(w)])
    return out.round().clamp(0, 255).to(torch.uint8).numpy()


# ---- handlers (plain functions of the context and the widgets' values) ---------------------
TAB = "ncollage"
DEFAULT_FRAME = 256  # the shift sliders' span while no model is picked
SWEEP = (0.25, 0.5, 0.75, 1.0)  # the intensity sweep's frames (Fig. 9)
# The base picture's state: {"model", "picture": Picture, "truncation", "photo": the network
# input of the projected photo [1, 3, S, S] or None, "framed": its FramedPhoto (photos only),
# "seed" (None for a photo), "class" (the ImageNet class; None for StyleGAN2)}; a
# reference's: {"model", "picture", "seed", "class"}; the last edit: {"image", "region", "what"}.
State = dict[str, Any]


def load(ctx: AppContext, model_id: str | None, dtype: torch.dtype | None = None) -> torch.nn.Module:
    """The picked generator (SNGAN, BigGAN-deep or StyleGAN2), loaded once by the context."""
    if not model_id:
        raise UserError("Pick a model first.")
    return ctx.model(model_id, dtype)


def picked(ctx: AppContext, model_id: str | None, *_, **__) -> list[str]:
    """What a call needs before it computes (`core.gpu`): the generator."""
    if not model_id:
        raise UserError("Pick a model first.")
    return [model_id]


def projection_needs(ctx: AppContext, model_id: str | None, image, class_text, steps, truncation,
                     use_aux: bool = True, *_, **__) -> list:
    """A photo's fit: the generator in float32 and, for SNGAN, its encoder, discriminator and
    (if used) auxiliary network; BigGAN-deep's LPIPS projection warms the backbone."""
    picked(ctx, model_id)
    helpers = ["sngan-encoder", "sngan-discriminator"] + (["sngan-auxiliary"] if use_aux else [])
    ids = [model_id] + [companion(ctx, arch, model_id) for arch in helpers]
    if ctx.registry.get(model_id).arch != "sngan":
        get_lpips("vgg", ctx.device)
    return [(i, torch.float32) for i in ids if i]


def projection_seconds(ctx: AppContext, model_id: str | None, image, class_text, steps: float,
                       *_, **__) -> float:
    """GPU time of a photo's fit: its steps at the model's size."""
    return 20 + float(steps) * PROJECTION_GPU_SECONDS * (frame_size(ctx, model_id) / 128) ** 2


def frame_size(ctx: AppContext, model_id: str | None) -> int:
    """The model's picture size from its registry entry (nothing loaded), for the shift
    sliders; DEFAULT_FRAME while none is picked or the entry does not say."""
    return (ctx.registry.get(model_id).image_size() if model_id else None) or DEFAULT_FRAME


ShiftOutputs = NamedTuple("ShiftOutputs", [*[(f"dx_{r + 1}", dict) for r in range(MAX_REFS)],
                                           *[(f"dy_{r + 1}", dict) for r in range(MAX_REFS)]])
ShiftOutputs.__doc__ = "`shift_ranges`' outputs: the references' right shifts, then their down shifts."


def shift_ranges(ctx: AppContext, model_id: str | None) -> ShiftOutputs:
    """The references' shift sliders follow the picked model's frame."""
    return ShiftOutputs(*shift_range(frame_size(ctx, model_id), len(ShiftOutputs._fields)))


def weight_sliders(G: torch.nn.Module) -> list[dict]:
    """The per-layer blending weights for G's feature points (the authors' demo: the first
    layer at 1, the others at 0); unused sliders hidden."""
    points = feature_points(G)
    updates = [gr.update(visible=True, label=f"Weight at {label}", value=1.0 if i == 0 else 0.0)
               for i, (label, _) in enumerate(points[:MAX_POINTS])]
    return updates + [gr.update(visible=False, value=0.0)] * (MAX_POINTS - len(updates))


def seeded(ctx: AppContext, model_id: str | None, class_text: str | None, seed: float | None,
           truncation: float) -> tuple[torch.nn.Module, Picture, np.ndarray]:
    """(model, picture, its pixels) for a seed (and class: SNGAN and BigGAN-deep)."""
    G = load(ctx, model_id)
    index = parse_class(class_text) if is_conditional(G) else None
    pic = picture_from_seed(G, int(seed or 0), index, float(truncation))
    return G, pic, to_uint8(render(G, [pic]))[0]


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


BaseOutputs = NamedTuple("BaseOutputs", [
    ("state", State), ("image", np.ndarray), ("editor", np.ndarray),
    *[(f"weight_{i}", dict) for i in range(MAX_POINTS)], ("run", Run)])
BaseOutputs.__doc__ = ("`render_base`'s outputs: base state, base picture, label editor, the "
                       "MAX_POINTS per-layer weight sliders, run.")


@gpu_task(duration=60, needs=picked)
def render_base(ctx: AppContext, model_id: str | None, class_text: str | None, seed: float | None,
                truncation: float, progress=gr.Progress(track_tqdm=True)) -> BaseOutputs:
    """The base picture from a seed (and class) -> (base state, picture, the same picture
    for the label editor, MAX_POINTS per-layer weight sliders, run)."""
    G, pic, image = seeded(ctx, model_id, class_text, seed, truncation)
    state = {"model": model_id, "picture": pic, "truncation": float(truncation), "photo": None,
             "seed": int(seed or 0), "class": parse_class(class_text) if is_conditional(G) else None}
    run = record(ctx, TAB, "render", {"generator": model_id}, images={"result": image},
                 arrays=latents(pic), seeds=[int(seed or 0)], settings=base_settings(state))
    return BaseOutputs(state, image, image, *weight_sliders(G), run)


class ReferenceOutputs(NamedTuple):
    """`render_reference`'s outputs: the reference's state, its editor."""
    state: State
    editor: np.ndarray


@gpu_task(duration=60, needs=picked)
def render_reference(ctx: AppContext, model_id: str | None, class_text: str | None,
                     seed: float | None, truncation: float,
                     progress=gr.Progress(track_tqdm=True)) -> ReferenceOutputs:
    """A reference picture for the feature blend -> (its state, its picture for painting).
    It keeps the truncation it is rendered with."""
    G, pic, image = seeded(ctx, model_id, class_text, seed, truncation)
    state = {"model": model_id, "picture": pic, "seed": int(seed or 0),
             "class": parse_class(class_text) if is_conditional(G) else None}
    return ReferenceOutputs(state, image)


def read_labels(G: torch.nn.Module, editor: dict | None, layers: str, soft: float,
                classes_and_strengths: Sequence) -> tuple[Labels, list[int], torch.Tensor]:
    """The label collage's widgets -> (Labels at the picture's size, the brush colours used,
    their painted masks)."""
    size = G.size
    regions = masks_by_colour(editor, PALETTE, size)
    used = [k for k in range(len(PALETTE)) if regions[k].sum() > 0]
    if not used:
        raise UserError("Paint a region first (one brush colour per target class).")
    classes = [model_class(G, parse_class(classes_and_strengths[k])) for k in used]
    strengths = [float(classes_and_strengths[len(PALETTE) + k]) for k in used]
    soft_regions = soften(regions[used], float(soft) * size / 256)
    return Labels(soft_regions, classes, strengths, layer_preset(G, layers)), used, regions


def edit_of(image: torch.Tensor, changed: torch.Tensor, what: str) -> dict:
    """The last edit, kept for "paste back": its picture and where it changed [1, 1, S, S]."""
    return {"image": image.cpu(), "region": (changed > 0.1).float().cpu(), "what": what}


class LabelOutputs(NamedTuple):
    """`apply_labels`' (and `live_labels`') outputs: before, after, class map, last edit, run."""
    before: np.ndarray
    after: np.ndarray
    class_map: np.ndarray
    edit: dict
    run: Run


class SweepOutputs(NamedTuple):
    """`sweep_labels`' outputs: before, after, class map, last edit, intensity gallery, run."""
    before: np.ndarray
    after: np.ndarray
    class_map: np.ndarray
    edit: dict
    gallery: list
    run: Run


def _labels(ctx: AppContext, model_id: str | None, state: State | None, editor: dict | None,
            layers: str, soft: float, classes_and_strengths: Sequence, sweep: bool
            ) -> LabelOutputs | SweepOutputs:
    """The label collage (both buttons) -> (before, after, class map, edit, run[, frames])."""
    G, pic, trunc = current(ctx, state, model_id)
    if not is_conditional(G):
        raise UserError("Label collage needs a class-conditional model: pick an SNGAN or "
                        "BigGAN-deep model.")
    labels, used, regions = read_labels(G, editor, layers, soft, classes_and_strengths)
    frames = SWEEP if sweep else (1.0,)
    before, edits, weights = label_collage(G, pic, labels.regions, labels.classes,
                                           labels.intensities, trunc, labels.points, frames)
    edit = edit_of(edits[-1:], 1 - weights[:1], "label collage")
    colours = [PALETTE[k] for k in used]
    class_map = weights_picture(weights, G.size, colours)
    before_u8, after_u8 = to_uint8(before)[0], to_uint8(edits[-1:])[0]
    offset = class_offset(G)
    run = record(
        ctx, TAB, "label_sweep" if sweep else "label_collage", {"generator": model_id},
        images={"before": before_u8, "after": after_u8, "class_map": class_map,
                **({"intensity": list(to_uint8(edits))} if sweep else {})},
        masks={**{f"painted_{k + 1}": regions[k] for k in used},
               **{f"soft_{k + 1}": labels.regions[i] for i, k in enumerate(used)}},
        arrays={**latents(pic), "class_weights": weights}, seeds=base_seeds(state),
        settings={**base_settings(state), "colours": colours,
                  "classes": [c + offset for c in labels.classes],
                  "model_classes": list(labels.classes), "intensities": list(labels.intensities),
                  "layers": layers, "scbn_points": list(labels.points),
                  "soft_edge_px_at_256": float(soft),
                  **({"sweep_intensities": list(frames)} if sweep else {})},
        notes="masks painted_k / soft_k: brush colour k as painted and softened; class_weights: "
              "[base, region 1, ...] at the picture's size (resized by the model to every "
              "batch norm); classes: ImageNet indices (model_classes: the model's own).")
    if not sweep:
        return LabelOutputs(before_u8, after_u8, class_map, edit, run)
    shown = to_uint8(torch.cat([before, edits]))
    gallery = [(img, f"intensity {t:g}") for img, t in zip(shown, (0.0, *frames))]
    return SweepOutputs(before_u8, after_u8, class_map, edit, gallery, run)


@gpu_task(duration=60, needs=picked)
def apply_labels(ctx: AppContext, model_id: str | None, state: State | None, editor: dict | None,
                 layers: str, soft: float, *classes_and_strengths: str | float
                 ) -> LabelOutputs:
    """Paint classes onto the base picture (sCBN) -> (before, after, class map, the edit
    kept for "paste back", run). `classes_and_strengths`: one class per palette colour (12),
    then one intensity per palette colour."""
    return _labels(ctx, model_id, state, editor, layers, soft, classes_and_strengths, sweep=False)


@gpu_task(duration=60, needs=picked)
def sweep_labels(ctx: AppContext, model_id: str | None, state: State | None, editor: dict | None,
                 layers: str, soft: float, *classes_and_strengths: str | float) -> SweepOutputs:
    """`apply_labels` at growing intensities (Fig. 9) -> the same outputs plus a gallery
    (intensity 0, 0.25, ..., 1), then the run."""
    return _labels(ctx, model_id, state, editor, layers, soft, classes_and_strengths, sweep=True)


_quiet_labels = quietly(apply_labels, len(LabelOutputs._fields))


def live_labels(ctx: AppContext, live: bool, model_id: str | None, state: State | None,
                editor: dict | None, layers: str, soft: float, *classes_and_strengths: str | float
                ) -> LabelOutputs | list[dict]:
    """`apply_labels` on every stroke while "Update while painting" is on; an incomplete
    input (nothing painted yet) leaves the outputs as they are instead of an error (a list of
    "no change" updates, as `quietly` answers, one per `LabelOutputs` field)."""
    if not live:
        return [gr.update()] * len(LabelOutputs._fields)
    return _quiet_labels(ctx, model_id, state, editor, layers, soft, *classes_and_strengths)


N_LABEL_INPUTS = 3 + 2 * len(PALETTE)  # editor, layers, soft, classes, intensities


class BlendOutputs(NamedTuple):
    """`blend_features`' outputs: before, after, blend map, frames, shift note, last edit, run."""
    before: np.ndarray
    after: np.ndarray
    blend_map: np.ndarray
    gallery: list
    shift_note: str
    edit: dict
    run: Run


@gpu_task(duration=120, needs=picked)
def blend_features(ctx: AppContext, model_id: str | None, state: State | None, frames: float,
                   base_class_refs: bool, with_labels: bool, *values: Any) -> BlendOutputs:
    """Transplant the references' features into the base picture (Eq. 3, the authors' demo)
    -> (before, after, blend map, frames gallery, the shift each layer gets, the edit kept
    for "paste back", run). `values`: the label collage's inputs (editor, layers, soft, 12
    classes, 12 intensities; used when `with_labels`), MAX_POINTS per-layer weights, then
    MAX_REFS reference states, their editors, right shifts and down shifts; a reference
    without a painted region is left out."""
    G, pic, trunc = current(ctx, state, model_id)
    size = G.size
    label_values, rest = values[:N_LABEL_INPUTS], values[N_LABEL_INPUTS:]
    layer_weights, refs_and_shifts = rest[:MAX_POINTS], rest[MAX_POINTS:]
    points = [p for _, p in feature_points(G)][:MAX_POINTS]
    weights = {p: float(w or 0) for p, w in zip(points, layer_weights) if float(w or 0) > 0}
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
        shifts.append((float(shifts_x[r] or 0), float(shifts_y[r] or 0)))
    if not refs:
        raise UserError("Render a reference and paint the region to take from it.")
    labels = None
    if with_labels:
        if not is_conditional(G):
            raise UserError("The label collage needs an SNGAN or BigGAN-deep model.")
        labels = read_labels(G, label_values[0], label_values[1], label_values[2], label_values[3:])[0]
    regions_t = torch.stack(regions)
    steps = max(1, int(frames or 1))
    before, outs, ref_images = feature_blend(G, pic, refs, regions_t, shifts, weights, trunc,
                                             steps, bool(base_class_refs), labels)
    landed = Blend(regions_t, shifts, weights, torch.ones(1)).landed(size)
    blend_map = weights_picture(torch.cat([1 - landed.sum(0, keepdim=True), landed]), size,
                                PALETTE[:len(refs)])
    before_u8, after_u8 = to_uint8(before)[0], to_uint8(outs[-1:])[0]
    shown = to_uint8(outs)
    gallery = [(img, f"frame {f + 1}/{steps}") for f, img in enumerate(shown)]
    shift_note = "\n".join(f"- reference {r + 1}: " + "; ".join(layer_shifts(G, shifts[i], sorted(weights)))
                           for i, r in enumerate(used))
    changed = (outs[-1:] - before).abs().amax(1, keepdim=True).cpu()
    edit = edit_of(outs[-1:], (changed > 2 / 255).float(), "feature blend")
    ref_seeds = [states[r].get("seed") for r in used]
    run = record(
        ctx, TAB, "feature_blend", {"generator": model_id},
        images={"before": before_u8, "after": after_u8, "blend_map": blend_map, "frames": list(shown),
                **{f"reference_{r + 1}": ref_images[i:i + 1] for i, r in enumerate(used)}},
        masks={f"reference_{r + 1}": regions_t[i] for i, r in enumerate(used)},
        arrays={**latents(pic, "base_"),
                **{k: v for i, r in enumerate(used) for k, v in latents(refs[i], f"reference_{r + 1}_").items()},
                "landed_weights": landed},
        seeds=base_seeds(state) + [s for s in ref_seeds if s is not None],
        settings={**base_settings(state), "layer_weights": {str(p): w for p, w in weights.items()},
                  "frames": steps, "references_use_base_class": bool(base_class_refs),
                  "with_label_collage": labels is not None,
                  **({"scbn_points": list(labels.points), "label_classes": list(labels.classes)}
                     if labels is not None else {}),
                  "shifts_px": {f"reference_{r + 1}": list(shifts[i]) for i, r in enumerate(used)},
                  "reference_seeds": {f"reference_{r + 1}": states[r].get("seed") for r in used},
                  "reference_truncations": {f"reference_{r + 1}": refs[i].truncation
                                            for i, r in enumerate(used)},
                  "reference_classes": {f"reference_{r + 1}": states[r].get("class") for r in used}},
        notes="seeds: base, then the references used; masks/reference_k: the region taken "
              "from reference k (before its shift); frames: the blending weights at "
              "1/F, 2/F, ..., 1 of each layer's weight.")
    return BlendOutputs(before_u8, after_u8, blend_map, gallery, shift_note, edit, run)


def companion(ctx: AppContext, arch: str, generator_id: str) -> str | None:
    found = ctx.registry.companions(arch, generator_id)
    return found[0].id if found else None


class ProjectionOutputs(NamedTuple):
    """`project_photo`'s outputs: base state, fit, base picture, editor, info, network input, run."""
    state: State
    projection: np.ndarray
    image: np.ndarray
    editor: np.ndarray
    info: str
    network: dict
    run: Run


@gpu_task(duration=projection_seconds, needs=projection_needs)
def project_photo(ctx: AppContext, model_id: str | None, image: str | np.ndarray | None,
                  class_text: str | None, steps: float, truncation: float, use_aux: bool = True,
                  face: float | None = 1, plain: bool = False, progress=gr.Progress()
                  ) -> ProjectionOutputs:
    """Fit the model to a photo; the fit becomes the base picture -> (base state, fit, base
    picture, label editor, loss summary, the network input labelled with what it is, run).
    SNGAN: the paper's Eq. 4 (encoder start, discriminator features); BigGAN-deep: LPIPS
    projection. The frame is kept in the state, so the edit can go back into the photo."""
    G = load(ctx, model_id, torch.float32)  # gradients: float32 on every device
    if not is_conditional(G):
        raise UserError("Photo editing is offered for SNGAN and BigGAN-deep models; pick one.")
    # the app's one framing rule: the registry's framing for this model (ImageNet: centre crop)
    framed, _ = frame_input(ctx, model_id, image, G.size, face, plain)
    network_input = np.asarray(framed.aligned.image)
    target = pil_to_tensor(framed.aligned.image)
    index = parse_class(class_text)
    cls = model_class(G, index)
    steps = int(steps)
    report = lambda d, t, l: progress(d / t, desc=f"Step {d}/{t} · loss {l:.3f}")  # noqa: E731
    if is_sngan(G):
        enc_id = companion(ctx, "sngan-encoder", model_id)
        dis_id = companion(ctx, "sngan-discriminator", model_id)
        if not enc_id or not dis_id:
            raise UserError(f"{model_id} has no registered encoder and discriminator (entries of "
                            f"arch sngan-encoder / sngan-discriminator whose generator is {model_id}).")
        aux_id = companion(ctx, "sngan-auxiliary", model_id) if use_aux else None
        E, D = ctx.model(enc_id, torch.float32), ctx.model(dis_id, torch.float32)
        aux = ctx.model(aux_id, torch.float32) if aux_id else None
        from PIL import Image

        enc_img = framed.aligned.image.resize((E.input_size,) * 2, Image.Resampling.BICUBIC)
        gt = authors_scale(target)
        pic, out, terms = fit_sngan(G, D, E, aux, authors_scale(pil_to_tensor(enc_img)), gt, cls,
                                    steps, progress=report)
        losses = terms.sum(1).tolist()
        how = (f"Eq. 4 (cosine of the discriminator's features + {PIXEL_WEIGHT} x MSE), Adam "
               f"{LR_ZETA if aux else LR_Z} on {'zeta (auxiliary network)' if aux else 'z'}")
        models = {"generator": model_id, "encoder": enc_id, "discriminator": dis_id,
                  **({"auxiliary": aux_id} if aux_id else {})}
        extra = {"loss_terms": terms}
    else:
        pic, out, losses = project(G, target, cls, float(truncation), steps, progress=report)
        how = f"LPIPS-VGG + {PIXEL_WEIGHT} x MSE, Adam {LR_Z} on z (class fixed)"
        models, extra = {"generator": model_id}, {}
    state = {"model": model_id, "picture": pic, "truncation": pic.truncation, "photo": target,
             "framed": framed, "seed": None, "class": index}
    shown = to_uint8(out)[0]
    info = (f"Loss {losses[0]:.3f} → **{losses[-1]:.3f}** in {len(losses)} of the authors' "
            f"{AUTHORS_STEPS} steps ({how}). The fit is now the base picture: paint labels or "
            "blend features, then paste back.")
    run = record(
        ctx, TAB, "project", models,
        images={"photo": framed.photo, "network_input": network_input, "projection": shown},
        arrays={**latents(pic), "losses": losses, **extra}, seeds=[] if is_sngan(G) else [0],
        settings={"class": index, "truncation": pic.truncation, "steps": steps, "method": how,
                  "pixel_weight": PIXEL_WEIGHT, **framed.describe()},
        notes=f"{framed.note()}: the fit matches it; images/photo is the upload, upright. "
              + ("z starts from the encoder." if is_sngan(G) else "seed 0 draws the starting z."))
    return ProjectionOutputs(state, shown, shown, shown, info,
                             gr.update(value=network_input, label=framed.note()), run)


def paste_mask(state: State | None, edit: dict | None) -> dict | None:
    """The paste-back mask editor for the last edit of a photo: the edited picture with the
    edited region painted (paint more, or erase, before pasting)."""
    if not state or state.get("photo") is None or not edit:
        return None
    picture = to_uint8(edit["image"])[0]
    layer = np.zeros(picture.shape[:2] + (4,), np.uint8)
    layer[edit["region"][0, 0].numpy() > 0] = (255, 255, 255, 255)
    rgba = np.concatenate([picture, np.full(picture.shape[:2] + (1,), 255, np.uint8)], -1)
    composite = rgba.copy()
    composite[layer[..., 3] > 0] = layer[layer[..., 3] > 0]
    return {"background": rgba, "layers": [layer], "composite": composite}


class PasteOutputs(NamedTuple):
    """`paste_edit`'s outputs: photo frame with the edit, result in your photo, run."""
    pasted: np.ndarray
    in_photo: np.ndarray
    run: Run


@user_errors
def paste_edit(ctx: AppContext, state: State | None, edit: dict | None, mask: dict | None = None
               ) -> PasteOutputs:
    """Put the last edit (label collage or feature blend) back into the photo (no model
    runs): Poisson-blend it into the network input inside the mask (painted in the mask
    editor; default the edited region), then that frame into the uploaded photo at full
    resolution inside the same mask (feathered; the rest keeps its pixels) -> (frame with
    the edit, result in your photo, run)."""
    if not state or state.get("photo") is None:
        raise UserError("Project a photo first (the paste goes back into that photo).")
    if not edit:
        raise UserError("Apply a label collage or a feature blend to the photo's fit first.")
    framed: FramedPhoto = state["framed"]
    size = edit["image"].shape[-1]
    region = edit["region"]
    if mask is not None and not editor_is_empty(mask):
        region = mask_from_editor(mask, size, required=False)
        if region.sum() == 0:
            raise UserError("The paste-back mask is empty: paint where the edit should go.")
    result = to_uint8(paste_back(state["photo"], edit["image"], region))[0]
    in_photo = np.asarray(framed.paste(result, region[0, 0].cpu().numpy()))
    run = record(
        ctx, TAB, "paste_back", {"generator": state["model"]},
        images={"result_in_photo": in_photo, "photo": framed.photo,
                "network_input": state["photo"], "edited": edit["image"], "pasted": result},
        masks={"region": region}, arrays=latents(state["picture"]),
        settings={**base_settings(state), "blend": "Poisson", "edit": edit.get("what"),
                  "mask": "painted" if region is not edit["region"] else "edited region",
                  **framed.describe()},
        notes="The edit Poisson-blended into the network input inside masks/region (pasted, "
              "at the model's size), then pasted back into the photo at full resolution "
              "inside that region (result_in_photo).")
    return PasteOutputs(result, in_photo, run)


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
