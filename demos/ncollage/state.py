"""What one person's session keeps between Neural Collage's steps (gr.State values): CPU
tensors and pictures, never models. Typed, so a handler reads `state.framed`, not a key it
has to remember; plain dataclasses, so they pickle into ZeroGPU's worker."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from core.faces import FramedPhoto
from demos.ncollage.engine import Picture


@dataclass
class BaseState:
    """The base picture every sub-tab edits: rendered from a seed, or a fitted photo."""
    model: str                          # the registry id it was made with
    picture: Picture
    truncation: float
    seed: int | None = None             # None: a fitted photo
    class_index: int | None = None      # its ImageNet class; None for StyleGAN2
    photo: torch.Tensor | None = None   # a fitted photo's network input [1, 3, S, S]
    framed: FramedPhoto | None = None   # that photo and its frame (the paste-back)


@dataclass
class Reference:
    """A feature blend's reference picture (it keeps the truncation it was rendered with)."""
    model: str
    picture: Picture
    seed: int
    class_index: int | None = None      # its ImageNet class; None for StyleGAN2


@dataclass
class Edit:
    """The last edit (label collage or feature blend), kept for "paste back"."""
    image: torch.Tensor                 # the edited picture [1, 3, S, S]
    region: torch.Tensor                # where it changed [1, 1, S, S]
    what: str                           # "label collage" or "feature blend"
