"""PandA's engine (models and tensors, no Gradio): parts and appearances in a StyleGAN2 layer,
and local edits with them.

`FactorSet` (A, P and the layer they belong to), `part_mask`, `EditTerm` and `edit` (the
authors' sum of [parts, appearance, lambda] terms; original and edited image from one resumed
pass; optional per-sample part refinement, Eq. 6), `refine_parts`, `saliency`
(Lanczos-upsampled, then thresholded, as `localize-concepts`) and its threshold
`channel_mean`, `masked_pictures`, `part_overlays`, the authors' annotated edits
(`presets_for`). Factor files live in `sources`; factorization in `factors` and `solver`.

Samples are the authors' (`np.random.seed(t); randn(1, 512)` is seed t, truncation 1.0 by


default), so seed t here is sample t in their notebooks.
"""
from __future__ import annotations

import re
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from PIL import Image

from core.errors import UserError
from core.images import heatmap, overlay, to_uint8
from core.models.stylegan2 import StyleGAN2Generator, SynthesisState, panda_layer
from demos.panda.factors import (_thin, authors_z, collect_stats, grad_parts, layer_features, objective,
                                 objective_direct, sample_draws)

if TYPE_CHECKING:  # both import Gradio (core.jobs, core.ui): the engine runs without it
    from core.context import AppContext
    from core.photo_code import PhotoCode

# Annotated FFHQ-1024 edits from the authors' annotated_directions.py: name -> (parts, appearance, lambda)
FFHQ_PRESETS: dict[tuple[int, int], dict[str, tuple[list[int], int, float]]] = {
    (5, 8): {"big eyes": ([7], 6, 30), "long nose": ([5], 82, 30), "smile": ([4], 46, -30),
             "open mouth": ([4], 39, 30)},
    (6, 16): {"big eyeballs": ([8], 27, 100), "wide nose": ([15], 13, 100),
              "glance left": ([8], 281, 50), "glance right": ([8], 281, -70),
              "bald forehead": ([3], 25, 100)},
    (7, 16): {"light eyebrows": ([8], 4, 30), "dark eyebrows": ([8], 9, 30),
              "no eyebrows": ([8], 4, 50), "dark eyes": ([11], 176, 50), "red eyes": ([11], 109, 60),
              "eyes short": ([11], 262, 70), "eyes open": ([11], 28, 50),
              "eyes close": ([11], 398, 80), "no eyes": ([11], 0, -200)},
}
TAB = "panda"
SALIENCY_SAMPLES = 500   # localize-concepts: the mean over samples t = 0..499
REFINE_LR, REFINE_STEPS = 1e-5, 100   # demo.ipynb: M.refine(Z, image, lr=1e-5, its=100)
DEFAULT_TRUNCATION = 1.0  # the notebooks' Model(..., trunc_psi=1.0): where the lambdas were tuned


def set_label(generator: str, layer: int, rank_c: int | str, rank_s: int | str, origin: str) -> str:
    """How a factor set is named in the UI (and looked up again)."""
    return f"{generator} · layer {layer} · ranks [{rank_c}, {rank_s}] ({origin})"


def part_choices(label: str | None) -> list[tuple[str, int]]:
    """A factor set's parts as the Part(s) list offers them, read from its label (nothing is
    loaded), so the list is filled on a fresh visit before any picture is made."""
    found = re.search(r"ranks \[\d+, (\d+)\]", label or "")
    return [(f"part {r}", r) for r in range(int(found[1]))] if found else []


@dataclass
class FactorSet:
    """Factors for one generator layer: appearances A [C, R_C], parts P [S, R_S]."""
    generator: str
    layer: int  # PandA's (genforce) layer l
    A: torch.Tensor
    P: torch.Tensor
    origin: str = ""

    @property
    def side(self) -> int:
        return int(round(self.P.shape[0] ** 0.5))

    @property
    def label(self) -> str:
        return set_label(self.generator, self.layer, self.A.shape[1], self.P.shape[1], self.origin)

    def check_against(self, G: StyleGAN2Generator) -> None:
        k = panda_layer(self.layer)
        if not 0 <= k < G.num_layers:
            raise UserError(f"Layer {self.layer} does not exist in {self.generator}.")
        C, s = G.layer_channels(k), G.layer_resolution(k)
        if self.A.shape[0] != C or self.P.shape[0] != s * s or self.side ** 2 != self.P.shape[0]:
            raise UserError(f"These factors (A {tuple(self.A.shape)}, P {tuple(self.P.shape)}) do not "
                            f"fit layer {self.layer} of {self.generator} ({C} channels, {s}x{s}).")


def part_mask(P: torch.Tensor, parts: list[int], side: int) -> torch.Tensor:
    """Sum of the chosen part columns, min-max scaled to [0, 1] (the authors' mapRange) [s, s]."""
    if not parts:
        raise UserError("Pick at least one part.")
    bad = [p for p in parts if not 0 <= p < P.shape[1]]
    if bad:
        raise UserError(f"Part index {bad[0]} is out of range: these factors have parts 0..{P.shape[1] - 1}.")
    m = P[:, parts].sum(1).reshape(side, side)
    lo, hi = m.min(), m.max()
    return (m - lo) / (hi - lo) if hi > lo else torch.zeros_like(m)


def _check_appearance(A: torch.Tensor, j: int) -> None:
    if not 0 <= j < A.shape[1]:
        raise UserError(f"Appearance {j} is out of range: these factors have appearances 0..{A.shape[1] - 1}.")


def seed_w_plus(G: StyleGAN2Generator, seeds: Sequence[int], truncation: float) -> torch.Tensor:
    """w+ [B, n_latent, D] of the authors' samples: seed t is `np.random.seed(t);
    randn(1, 512)` (their sample t), mapped and truncated."""
    z = torch.cat([authors_z(t, 1, G.style_dim) for t in seeds]).to(G.device)
    return G.w_plus(G.truncated_w(z, truncation))


@dataclass(frozen=True)
class EditTerm:
    """One of the authors' `[part, appearance, lambda]` triples: lambda * a_j (x) p, p the
    chosen parts summed and min-max scaled."""
    parts: tuple[int, ...]
    appearance: int
    strength: float


def edit_delta(A: torch.Tensor, P: torch.Tensor, terms: Sequence[EditTerm], side: int) -> torch.Tensor:
    """sum_k lambda_k a_k (x) p_k [C, s, s] (the authors' `direc`)."""
    if not terms:
        raise UserError("Pick at least one part.")
    delta = torch.zeros(A.shape[0], side, side, dtype=torch.float32)
    for term in terms:
        _check_appearance(A, term.appearance)
        mask = part_mask(P, list(term.parts), side)
        delta += term.strength * A[:, term.appearance].float()[:, None, None] * mask.float()[None]
    return delta


def refine_parts(Z: torch.Tensor, A: torch.Tensor, P: torch.Tensor, lr: float | None = REFINE_LR,
                 steps: int = REFINE_STEPS) -> torch.Tensor:
    """The authors' `Model.refine` (Eq. 6): from the global parts, projected gradient steps on
    ||Z_i - A A^T Z_i P~ P~^T||^2 for one sample Z_i [C, S], A fixed -> P~ [S, R_S].

    `lr` is theirs (absolute, demo.ipynb's 1e-5); where it diverges (features of another
    scale) or `lr=None`, each step is picked by backtracking instead."""
    Zi, A64, Pr = Z.double()[None], A.double(), P.double()
    if lr is None:
        return _refine_backtracking(Zi, A64, Pr, steps)
    for _ in range(steps):
        Pr = (Pr - lr * grad_parts(Zi, A64, Pr)).clamp_min(0)
    f = lambda Q: objective_direct(Zi, A64, Q)  # noqa: E731
    if not (torch.isfinite(Pr).all() and f(Pr) <= f(P.double())):
        return _refine_backtracking(Zi, A64, P.double(), steps)  # their lr diverged at this scale
    return Pr.float()


def _refine_backtracking(Zi: torch.Tensor, A: torch.Tensor, P: torch.Tensor, steps: int) -> torch.Tensor:
    """Backtracking projected gradient on the one-sample objective (A not square)."""
    trK = float(Zi.square().sum())

    def f(P: torch.Tensor) -> torch.Tensor:
        return objective(trK, _thin(Zi, P), A, P.t() @ P)
    step, fP = 1.0 / max(float(torch.linalg.matrix_norm(Zi[0], ord=2)) ** 2, 1e-300), f(P)
    for _ in range(steps):
        g = grad_parts(Zi, A, P)
        step *= 2.0
        for _ in range(40):
            P_new = (P - step * g).clamp_min(0)
            f_new = f(P_new)
            if f_new <= fP - 1e-4 / step * (P_new - P).square().sum():
                P, fP = P_new, f_new
                break
            step *= 0.5
    return P.float()


@dataclass
class EditResult:
    original: torch.Tensor  # [B, 3, H, W]
    edited: torch.Tensor    # [B, 3, H, W]
    parts: torch.Tensor     # the parts each sample was edited with [B, S, R_S] (refined or global)
    refined: bool


@torch.inference_mode()
def edit(G: StyleGAN2Generator, w_plus: torch.Tensor, factors: FactorSet, terms: Sequence[EditTerm],
         refine: bool = False, refine_lr: float | None = REFINE_LR, refine_steps: int = REFINE_STEPS) -> EditResult:
    """Original and edited pictures from one batched pass resumed after layer l:
    Z' = Z + sum_k lambda_k a_k (x) p_k (the authors' `edit_at_layer`). With `refine`, each
    sample's parts are first refined for that sample (Eq. 6, their demo's settings)."""
    edit_delta(factors.A, factors.P, terms, factors.side)  # checks the terms before any model work
    k = panda_layer(factors.layer)
    state = G.synthesis_until(w_plus, k)
    Z = state.features
    b = Z.shape[0]
    if refine:
        flat = Z.float().reshape(b, Z.shape[1], -1).cpu()
        parts = torch.stack([refine_parts(flat[i], factors.A, factors.P, refine_lr, refine_steps) for i in range(b)])
    else:
        parts = factors.P[None].expand(b, -1, -1)
    delta = torch.stack([edit_delta(factors.A, parts[i], terms, factors.side) for i in range(b)]).to(Z)
    both = SynthesisState(k, torch.cat([Z, Z + delta]), torch.cat([state.skip] * 2))
    out = G.synthesis_from(both, torch.cat([w_plus] * 2)).float()
    return EditResult(out[:b], out[b:], parts.float(), refine)


@torch.inference_mode()
def edit_code(G: StyleGAN2Generator, code: PhotoCode, factors: FactorSet, terms: Sequence[EditTerm]
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """A person's photo code (core.photo_code) and its edit: Z' = Z + sum_k lambda_k a_k (x) p_k
    on the features of the code's own pass at layer l (its residuals up to l included, the
    later ones after), so strength 0 renders exactly the reconstruction -> ([1, 3, H, W] x 2)."""
    delta = edit_delta(factors.A, factors.P, terms, factors.side)
    k = panda_layer(factors.layer)
    edited = code.render_edited(G, k, lambda Z: Z + delta.to(Z))
    return code.render(G).float(), edited.float()


def lanczos(m: torch.Tensor, size: int) -> torch.Tensor:
    """One map [s, s] -> [size, size] with PIL's Lanczos on a float image (mode F), as the
    authors' `Image.fromarray(coordinates).resize(..., Image.LANCZOS)`."""
    img = Image.fromarray(np.ascontiguousarray(m.detach().cpu().float().numpy()), mode="F")
    return torch.from_numpy(np.asarray(img.resize((size, size), Image.LANCZOS), dtype=np.float32).copy())


@torch.inference_mode()
def saliency(G: StyleGAN2Generator, w_plus: torch.Tensor, factors: FactorSet, appearance: int,
             threshold: float | None = None, size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(a_j^T Z [B, s, s], binary mask [B, size, size]): the map upsampled with Lanczos to the
    picture size (`size`, default the generator's), then `>= threshold` (default its own mean),
    as the authors' `localize-concepts` does."""
    _check_appearance(factors.A, appearance)
    Z = layer_features(G, w_plus, factors.layer).float()
    m = torch.einsum("c,bcs->bs", factors.A[:, appearance].to(Z), Z).reshape(-1, factors.side, factors.side)
    t = float(m.mean()) if threshold is None else threshold
    up = torch.stack([lanczos(mi, size or G.size) for mi in m])
    return m, (up >= t).float()


def masked_pictures(images: torch.Tensor, binary: torch.Tensor) -> np.ndarray:
    """The authors' background masking (`localize-concepts`, negative=True): white where the
    mask is on, the picture elsewhere -> uint8 [B, H, W, 3]."""
    pics = to_uint8(images)
    return np.where(binary.cpu().numpy()[..., None] > 0, np.uint8(255), pics)


def saliency_picture(m: torch.Tensor, binary: torch.Tensor, size: int) -> np.ndarray:
    """Heat map of a_j^T Z (Lanczos-upsampled) beside its thresholded mask, at image size."""
    mask = np.repeat((binary.cpu().numpy() * 255).astype(np.uint8)[..., None], 3, -1)
    return np.concatenate([heatmap(lanczos(m, size)), mask], axis=1)


PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
           (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
           (170, 255, 195)]


def part_overlays(image: torch.Tensor, factors: FactorSet) -> list[np.ndarray]:
    """One tinted copy of `image` [3, H, W] per part (part map min-max scaled)."""
    return [overlay(image, part_mask(factors.P, [r], factors.side), PALETTE[r % len(PALETTE)], 0.65)
            for r in range(factors.P.shape[1])]


def presets_for(fs: FactorSet) -> dict[str, tuple[list[int], int, float]]:
    """The authors' annotated edits of a factor set (only their published FFHQ-1024 sets have any)."""
    out = {}
    if fs.generator == "stylegan2-ffhq-1024" and fs.origin == "published":
        out.update(FFHQ_PRESETS.get((fs.layer, fs.P.shape[1]), {}))
    return out


def channel_mean(ctx: AppContext, G: StyleGAN2Generator, layer: int,
                 truncation: float = DEFAULT_TRUNCATION) -> torch.Tensor:
    """Mean feature of layer l over the authors' samples t = 0..499 and all positions (CPU)
    [C], at the pictures' truncation: the saliency threshold of appearance j is a_j . mean
    (`localize-concepts`). Computed once per app, loaded model, layer and truncation; held
    weakly on the model, so a model the cache lets go takes its means with it."""
    means: weakref.WeakKeyDictionary[StyleGAN2Generator, dict[tuple[int, float], torch.Tensor]] = \
        ctx.shared((TAB, "channel means"), weakref.WeakKeyDictionary)
    per_model = means.setdefault(G, {})
    key = (layer, float(truncation))
    if key not in per_model:
        per_model[key] = collect_stats(G, layer, sample_draws(range(SALIENCY_SAMPLES)),
                                       float(truncation), with_gram=False).mean.cpu()
    return per_model[key]
