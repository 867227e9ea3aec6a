"""The Collage engine: composition by latent regression (Chai, Wulff, Isola, ICLR 2021) as
functions of models and tensors, no Gradio (bench and scripts use it without a UI).

`compose` pastes parts into one canvas (later parts on top) and returns it with the union
of their masks; `regenerate` runs the masked regressor E and the generator G once each;
`complete` (inpainting, several completions), `three_ways` (pixel vs latent blending vs
regression, Eqs. 6-8) and `random_hints` (the training masks); editors' values as parts in
the generator's frame (`framed`, `editor_part`). Enc+LBFGS is in `refine`, the fine-tuning
in `finetune`, the part-independence measure in `independence`. Models: a
`core.models.regressor` encoder and the generator it was trained for.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from core.blend import translate
from core.device import generator as seeded
from core.device import placement
from core.errors import UserError
from core.images import editor_image_and_mask, editor_is_empty, to_uint8
from core.models.generator import Generator

if TYPE_CHECKING:  # model code is imported when a model is loaded, not at start-up
    from core.models.proggan import ProGANGenerator
    from core.models.stylegan2 import StyleGAN2Generator

# the generators a regressor predicts for: both render its latent (W+, or ProGAN's z) with .synthesis
Paired = Union["StyleGAN2Generator", "ProGANGenerator"]
HINT_COVERAGE = (0.1, 0.4)  # inpainting hints: sparse blobs inside the hole
# the authors' training masks: the cutoff on the upsampled noise is drawn from U(0.3, 1); the
# known share is not the cutoff (bilinear upsampling pulls the noise towards 0.5): 19 % on
# average at the lowest cutoff (2-50 %), all of it at the highest
TRAIN_COVERAGE = (0.3, 1.0)


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
def regenerate(E: torch.nn.Module, G: Paired, collage: torch.Tensor, mask: torch.Tensor,
               clamp: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(image, w+): one regressor pass and one generator pass, batched over the inputs
    (`clamp=False`: G's raw output, which StyleGAN2 lets leave [-1, 1])."""
    device, dtype = placement(E)
    w = E(collage.to(device, dtype), mask.to(device, dtype))
    image = G.synthesis(w).float()
    return (image.clamp(-1, 1) if clamp else image), w


def masked_l1(result: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean absolute error over the known pixels (all channels): the paper's Eq. 5. The tab
    passes G's unclamped output, as the authors' losses see it."""
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


@torch.inference_mode()
def three_ways(E: torch.nn.Module, G: Paired, base: torch.Tensor, donor: torch.Tensor,
               part: torch.Tensor, alpha: float) -> dict[str, torch.Tensor]:
    """The paper's Sec. 4.3 comparison (Eqs. 6-8): the same two pictures, x1 = `base` and
    x2 = `donor` with its part m, composed three ways, every encoding with the full mask ->
    {"pixel": G(E(a x1 + (1 - a) x2)) (pixel alpha-blending), "latent": G(a E(x1) + (1 - a)
    E(x2)) (latent blending), "regression": G(E(m x2 + (1 - m) x1)) (the method), and the
    inputs "blend" and "collage"}. a = `alpha` is the base's weight."""
    device, dtype = placement(E)
    base, donor, part = (t.to(device, dtype) for t in (base, donor, part))
    blend = alpha * base + (1 - alpha) * donor
    collage = part * donor + (1 - part) * base
    w = E(torch.cat([base, donor, blend, collage]), torch.ones_like(part).expand(4, -1, -1, -1))
    mixed = alpha * w[0:1] + (1 - alpha) * w[1:2]
    out = G.synthesis(torch.cat([w[2:3], mixed, w[3:4]])).float().clamp(-1, 1)
    return {"pixel": out[0:1], "latent": out[1:2], "regression": out[2:3],
            "blend": blend.float(), "collage": collage.float()}


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
