"""Pasting one picture's content into another: whole-pixel shifts and feature blending.

Collage pastes pixels (`translate`); Neural Collage pastes *features* (Suzuki et al. 2019,
Eq. 3): at chosen layers l of one batched forward pass, the target stream's features become

    F~_0 = (1 - sum_i M_i) * F_0 + sum_i M_i * shift_i(F_i)

where F_i are the reference streams' features at the same layer, M_i the (shifted) regions
taken from reference i resized to that layer, and the pass continues from F~_0. Weights
are capped so that they sum to at most 1 per position; where every M_i is 0 the target's
features are left exactly as they were.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F


def translate(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Move an image, mask or feature map by whole pixels; what leaves the frame is dropped,
    what enters is zero."""
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    if abs(dx) >= w or abs(dy) >= h:
        return out
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[..., max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def shift_at(shift: tuple[int, int], frame: int, res: int) -> tuple[int, int]:
    """A (dx, dy) shift in `frame`-pixel image units -> whole cells of a `res` grid."""
    return round(shift[0] * res / frame), round(shift[1] * res / frame)


@dataclass
class FeatureBlend:
    """Eq. 3 for streams laid out in one batch: `target` is rewritten from the streams
    `first_ref`, `first_ref + 1`, ... at the feature points in `points`.

    `regions` [R, 1, H, W] in [0, 1] are the parts of each reference to take, where they are
    in the reference (image resolution H = W = `frame`); `shifts` move them (and the
    features) by whole pixels; `strength` scales every weight (the paper's intensity t).
    """
    regions: torch.Tensor
    shifts: Sequence[tuple[int, int]]
    points: frozenset[int]
    strength: float = 1.0
    target: int = 1
    first_ref: int = 2
    _weights: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def frame(self) -> int:
        return self.regions.shape[-1]

    def weights_at(self, res: int) -> torch.Tensor:
        """The landed weights M_i on a res x res grid [R, 1, res, res], summing to <= 1.

        Each region is resized at its source position and then moved by the same whole-cell
        shift as its features, so mask and content stay aligned at every resolution."""
        if res not in self._weights:
            m = F.interpolate(self.regions.float(), size=(res, res), mode="area") \
                if res != self.frame else self.regions.float()
            m = torch.stack([translate(m[i], *shift_at(s, self.frame, res))
                             for i, s in enumerate(self.shifts)]) * self.strength
            total = m.sum(0, keepdim=True)
            self._weights[res] = m / total.clamp(min=1.0)
        return self._weights[res]

    def __call__(self, point: int, h: torch.Tensor) -> torch.Tensor:
        """Rewrite the target stream of `h` [S, C, res, res] at a chosen point."""
        if point not in self.points:
            return h
        res = h.shape[-1]
        m = self.weights_at(res).to(h.device, h.dtype)
        refs = h[self.first_ref:self.first_ref + len(m)]
        moved = torch.stack([translate(refs[i], *shift_at(s, self.frame, res))
                             for i, s in enumerate(self.shifts)])
        out = h.clone()
        out[self.target] = (1 - m.sum(0)) * h[self.target] + (m * moved).sum(0)
        return out

    def stylegan2_hook(self, k: int, x: torch.Tensor, skip: torch.Tensor | None):
        """The same blend for a StyleGAN2 synthesis hook: features and the running RGB skip
        image (which already holds the coarser layers' colours) are blended alike."""
        return self(k, x), (None if skip is None else self(k, skip))
