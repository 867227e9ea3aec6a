"""Generate's engine: seeds (and a class) -> pictures and the latents that made them, for any
generator family (the `core.models.generator.Generator` protocol). No Gradio."""
from __future__ import annotations

import torch

from core.classes import model_class
from core.models.generator import Generator
from core.models.stylegan2 import StyleGAN2Generator


@torch.inference_mode()
def generate_with_latents(G: StyleGAN2Generator, seeds: list[int], truncation: float = 1.0
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeds -> (images [B, 3, S, S] in [-1, 1], z [B, style_dim], w [B, style_dim] after
    truncation), in one batched pass (the same pictures as `G.render(G.sample_latents(seeds))`)."""
    z = G.sample_latents(seeds)
    w = G.truncated_w(z, truncation)
    return G.synthesis(G.w_plus(w)).float().clamp(-1, 1), z, w


@torch.inference_mode()
def generate(G: Generator, seeds: list[int], truncation: float = 1.0,
             imagenet_class: int | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Seeds -> (images [B, 3, S, S] in [-1, 1], the latents to save): StyleGAN2's z and w,
    any other family's latents (and class), through its own sampler and renderer."""
    if isinstance(G, StyleGAN2Generator):
        images, z, w = generate_with_latents(G, seeds, truncation)
        return images, {"z": z, "w": w}
    classes = None
    if imagenet_class is not None:
        classes = torch.full((len(seeds),), model_class(G, imagenet_class), dtype=torch.long)
    latents = G.sample_latents(seeds, truncation)
    images = G.render(latents, truncation, classes).float().clamp(-1, 1)
    arrays = {"z": latents}
    if classes is not None:
        arrays["class"] = classes
    return images, arrays
