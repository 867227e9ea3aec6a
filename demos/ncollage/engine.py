"""Neural Collage's engine (no Gradio): classes, pictures, the sCBN label collage and the
pictures of its maps (Suzuki et al. 2019).

Models: the authors' own SNGAN dog+cat generator (`core.models.sngan`, with their encoder,
auxiliary network and discriminator for photos), BigGAN-deep, and StyleGAN2 (blending only).

- `label_weights` turns painted regions + intensities into per-pixel weights of the base
  class and each painted class (Eq. 2's W_hw(c)) at the picture's full resolution; the
  models resize them to every batch norm. `label_collage` renders base and edits in one
  batched pass with the sCBN at the chosen batch norms (`layer_preset`: the authors' "all",
  "first" = the first sCBN only, "all but first"); its `frames` give Fig. 9's intensity sweep.
- Feature blending (Eq. 3) is `demos.ncollage.blend`; the real-photo fits (Eq. 4, the
  BigGAN-deep projection) and the paste-back are `demos.ncollage.photo`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from core.classes import class_vector, is_sngan, one_hot
from core.device import placement
from core.errors import UserError
from core.images import hex_rgb

if TYPE_CHECKING:  # model code is imported when a model is loaded, not at start-up
    from core.models.biggan import BigGANDeep

# the authors' spatial-translation demo palette (static/demo_spatial_translation/js/main.js)
PALETTE = ("#FE2712", "#66B032", "#FEFE33", "#FC600A", "#0247FE", "#B2D732",
           "#4424D6", "#FB9902", "#8601AF", "#FCCC1A", "#347C98", "#C21460")
LABEL_DEFAULTS = (281, 291, 250, 153, 162, 207, 235, 263, 282, 285, 288, 292)  # dog/cat classes
DEFAULT_CLASS = 207  # golden retriever


# ---- pictures ------------------------------------------------------------------------------
@dataclass
class Picture:
    """What re-renders a picture: z and class vector (BigGAN-deep, SNGAN) or w+ (StyleGAN2),
    and the truncation it was rendered with (BigGAN-deep's batch norms depend on it)."""
    latent: torch.Tensor  # [1, z_dim] or [1, n_latent, w_dim]
    classes: torch.Tensor | None = None  # [1, num_classes]
    truncation: float = 1.0


def is_biggan(G: torch.nn.Module) -> bool:
    from core.models.biggan import BigGANDeep  # lazy: the app starts without model code

    return isinstance(G, BigGANDeep)


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
