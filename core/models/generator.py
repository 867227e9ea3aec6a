"""The one interface every generator family offers the tabs.

A tab that samples pictures never needs to know which family it holds: seeds become latents
with `sample_latents` (the family's own sampler, drawn on the CPU so a seed gives the same
picture on every device) and latents become pictures with `render`. Family-specific editing
(StyleGAN2's split synthesis, BigGAN-deep's per-pixel classes) stays on each class.
"""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import torch

from core.device import randn


@runtime_checkable
class Generator(Protocol):
    """`size`: the square picture's side in pixels.

    `sample_latents(seeds, truncation)`: one latent per seed, on the model's device. Only
    BigGAN-deep's sampler depends on `truncation` (its z is a scaled truncated normal).

    `render(latents, truncation, classes)`: pictures [B, 3, size, size] in [-1, 1], float32,
    clamped, with the checkpoint's fixed noise. `truncation` 1.0 = none; `classes` (class
    indices or vectors) is required by class-conditional families and refused by the others.
    """

    @property
    def size(self) -> int: ...

    def sample_latents(self, seeds: Sequence[int], truncation: float = 1.0) -> torch.Tensor: ...

    def render(self, latents: torch.Tensor, truncation: float = 1.0,
               classes: torch.Tensor | None = None) -> torch.Tensor: ...


def seed_normal(seeds: Sequence[int], dim: int) -> torch.Tensor:
    """One standard-normal row per seed [len(seeds), dim], drawn on the CPU (the sampler of
    the StyleGAN2 and StyleMapGAN families)."""
    return torch.cat([randn((1, dim), int(seed)) for seed in seeds])


def unconditional(family: str, classes: torch.Tensor | None) -> None:
    if classes is not None:
        raise ValueError(f"{family} is not class-conditional: pass classes=None")
