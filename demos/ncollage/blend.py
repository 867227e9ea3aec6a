"""Neural Collage's feature blending (Eq. 3, the authors' feature-blending demo), no Gradio.

`feature_blend`: a weight per feature point and interpolation frames; references are
rendered first (each with its own truncation, or with the base's class when asked) and their
features pasted into the base's frames inside their regions, shifted by exactly the pixels
asked at every layer (`shift_features`: sub-cell shifts are bilinear). With `labels` the sCBN
of a label collage runs in the same pass (Fig. 2d).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from core.blend import translate
from core.errors import UserError
from demos.ncollage.engine import Labels, Picture, is_biggan, is_conditional, is_sngan, render


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
