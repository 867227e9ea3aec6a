"""PandA tab: parts and appearances in a StyleGAN2 layer, and local edits with them.

Engine (no Gradio): `FactorSet` (A, P and the layer they belong to), `part_mask`,
`EditTerm` and `edit` (the authors' sum of [parts, appearance, lambda] terms; original and
edited image from one resumed pass; optional per-sample part refinement, Eq. 6),
`refine_parts`, `saliency` (Lanczos-upsampled, then thresholded, as `localize-concepts`),
`masked_pictures`, `part_overlays`, and `FactorLibrary` (published factor files from the
registry, factors computed here). Factorization itself lives in `demos/panda_factors.py`.

Samples are the authors' (`np.random.seed(t); randn(1, 512)` is seed t, truncation 1.0 by
default), so seed t here is sample t in their notebooks.

Handlers (functions of the context and the widgets' values): `show_parts`, `edit_seeds`,
`apply_preset`, `add_edit`, `select_part`, `compute_factors`. UI: `build_tab` lays out the
shared factor/seed picker, `_build_edit` and `_build_compute`.
"""
from __future__ import annotations

import functools
import re
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import gradio as gr
import numpy as np
import torch
from PIL import Image

from core.context import AppContext
from core.errors import UserError, hosted
from core.hub import app_cache_dir, fetch
from core.images import grid, heatmap, overlay, to_uint8
from core.models import STYLEGAN2_ARCHS
from core.models.stylegan2 import StyleGAN2Generator, SynthesisState, panda_layer
from core.lpips import get_lpips
from core.photo_code import (QUICK_STEPS, PhotoCode, code_from_bundle, encoder_of, photo_code_state,
                             quick_code, run_parts)
from core.photo_slot import frame_input, photo_slot
from core.recipe import Run, open_run
from core.gpu import gpu_task, user_errors
from core.ui import (TabWiring, labelled_examples, licence_line, parse_seeds, random_seeds, record,
                     tab_header)
from demos import panda_factors as pf

PAPER = "https://arxiv.org/abs/2206.00048"
HOW_IT_WORKS = f"""
At one generator layer *l* the features of every sample form a C×S matrix Z (C channels,
S = H·W positions). PandA factorises them as Z ≈ A (Aᵀ Z P) Pᵀ: the columns of **P** (S×R,
non-negative) are **parts**, spatial regions shared by all samples (eyes, mouth, background);
the columns of **A** (C×C) are **appearances**, directions in channel space (ordered by how much
of the features they explain). An edit adds λ · a_j ⊗ p to Z, where p is the chosen part(s)
summed and scaled to [0, 1] (several such terms are summed, as in the authors' code), then runs
the rest of the generator: only that region changes, in the way appearance j describes. The
saliency map a_jᵀ Z shows where appearance j is active: upsampled with Lanczos, then white where
it is above its mean over the authors' samples 0–499; the masked picture whitens those pixels
(appearance 0 on the published factors: the background). *Refine parts* solves Eq. 6 for each
shown sample (the authors' `refine`, their demo's lr 1e-5 and 100 steps), for samples whose
parts sit elsewhere than the average. Seed t is the authors' sample t (`np.random.seed(t)`,
`randn(1, 512)`) and ψ = 1.0 is their setting, where the annotated edits were tuned.
Paper: [Oldfield et al., ICLR 2023]({PAPER}).

**Where this differs, on purpose.** *Compute factors* minimises the authors' Algorithm 1
objective on all samples at once by L-BFGS-B on the parts, with A Aᵀ solved exactly for them,
instead of their fixed-learning-rate steps (same objective and start; it reaches their
converged value in tens of iterations instead of ~10,000 steps); their stochastic loop with
their learning rate is the other solver choice. Both images are rendered from one resumed
pass that keeps the low-resolution RGB skip, so the "original" is exactly the generator's image
(the authors' genforce resume drops it).
"""
COMPUTE_TEXT = ("The authors' Algorithm 1 objective: A starts at the singular vectors of the channel "
                "scatter (`np.linalg.svd`, their signs), P at U(0, 0.01). **Full gradient** (default): "
                "all samples at once; the parts first solved with A held at its start, then L-BFGS-B on "
                "the parts (P ≥ 0) with A Aᵀ solved exactly for each, until the objective stops falling; "
                "A is scaled to the balance their loop keeps (a deliberate difference: their fixed-lr "
                "steps need ~10,000 iterations to the same objective). **Stochastic**: their published "
                "loop, one fresh sample t per step at a fixed lr (1e-6, 10,000 steps), streamed.")

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
    z = torch.cat([pf.authors_z(t, 1, G.style_dim) for t in seeds]).to(G.device)
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
        Pr = (Pr - lr * pf.grad_parts(Zi, A64, Pr)).clamp_min(0)
    f = lambda Q: pf.objective_direct(Zi, A64, Q)  # noqa: E731
    if not (torch.isfinite(Pr).all() and f(Pr) <= f(P.double())):
        return _refine_backtracking(Zi, A64, P.double(), steps)  # their lr diverged at this scale
    return Pr.float()


def _refine_backtracking(Zi: torch.Tensor, A: torch.Tensor, P: torch.Tensor, steps: int) -> torch.Tensor:
    """Backtracking projected gradient on the one-sample objective (A not square)."""
    trK = float(Zi.square().sum())

    def f(P: torch.Tensor) -> torch.Tensor:
        return pf.objective(trK, pf._thin(Zi, P), A, P.t() @ P)
    step, fP = 1.0 / max(float(torch.linalg.matrix_norm(Zi[0], ord=2)) ** 2, 1e-300), f(P)
    for _ in range(steps):
        g = pf.grad_parts(Zi, A, P)
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
    Z = pf.layer_features(G, w_plus, factors.layer).float()
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


# ---- factor sources ------------------------------------------------------------------------
FACTOR_META = ("layer", "factor", "rank")
FILE_NAME = re.compile(r"U[cs]-name_(?P<name>.+)-layer_(?P<layer>\d+)-rank_(?P<rank>\d+)\.npy")


def computed_dir() -> Path:
    return app_cache_dir() / "panda"


def shown_folder(folder: Path) -> str:
    """A folder under the app's cache as the page shows it: in full for the machine's owner
    (who may add files there), from the cache down on a shared host (no server paths)."""
    if not hosted():
        return str(folder)
    try:
        return f"<app cache>/{folder.relative_to(app_cache_dir()).as_posix()}"
    except ValueError:
        return folder.name


class FactorLibrary:
    """Published factor files from the registry and factors computed here, by label."""

    def __init__(self, ctx: AppContext):
        self.registry = ctx.registry  # not ctx itself: see `library`
        self._loaded: dict[str, FactorSet] = {}

    def published(self) -> dict[str, tuple[str, str, str, int]]:
        """label -> (generator id, appearances entry id, parts entry id, layer)."""
        entries = [e for e in self.registry if e.arch == "panda-factors"]
        for e in entries:
            missing = ([] if e.generator else ["generator"]) + \
                [f"meta.{k}" for k in FACTOR_META if getattr(e.meta, k) is None]
            if missing:
                raise UserError(f"Registry entry {e.id!r} (panda-factors) lacks {', '.join(missing)}: "
                                f"a factor file needs its generator and meta layer, factor and rank.")
        sets = {}
        for a in (e for e in entries if e.meta.factor == "appearances"):
            for p in (e for e in entries if e.meta.factor == "parts"):
                if (a.generator, a.meta.layer) == (p.generator, p.meta.layer):
                    label = set_label(a.generator, a.meta.layer, a.meta.rank, p.meta.rank, "published")
                    sets[label] = (a.generator, a.id, p.id, a.meta.layer)
        return sets

    def computed(self) -> dict[str, tuple[Path, Path]]:
        """label -> (Uc file, Us file) for factor pairs under `computed_dir()/<generator id>/`,
        named as the authors name them (their own files dropped there are listed too)."""
        out = {}
        root = computed_dir()
        for gen_dir in sorted(root.glob("*")) if root.is_dir() else []:
            if gen_dir.name not in self.registry.ids(STYLEGAN2_ARCHS):
                continue
            for us in sorted(gen_dir.glob("Us-name_*-layer_*-rank_*.npy")):
                found = FILE_NAME.fullmatch(us.name)
                if not found:
                    continue  # not a factor file
                name, layer, rank_s = found["name"], int(found["layer"]), found["rank"]
                uc = next(iter(sorted(gen_dir.glob(f"Uc-name_{name}-layer_{layer}-rank_*.npy"))), None)
                if uc is not None:
                    rank_c = FILE_NAME.fullmatch(uc.name)["rank"]
                    out.setdefault(set_label(gen_dir.name, layer, rank_c, rank_s, "computed"), (uc, us))
        return out

    def authors_name(self, generator: str) -> str:
        """The name the authors' files use for a generator (`stylegan2_ffhq1024`): read from
        its published factor files, else made from the id the genforce way
        (stylegan2-car-512 -> stylegan2_car512)."""
        for e in self.registry:
            if e.arch == "panda-factors" and e.generator == generator:
                where = e.hub.filename if e.hub else e.url.filename if e.url else str(e.path or "")
                found = FILE_NAME.fullmatch(where.rsplit("/", 1)[-1])
                if found:
                    return found["name"]
        head, *rest = generator.split("-")
        return f"{head}_{''.join(rest)}" if rest else head

    def forget(self, label: str) -> None:
        """Drop a loaded set (its files were just rewritten)."""
        self._loaded.pop(label, None)

    def labels(self) -> list[str]:
        return list(self.published()) + list(self.computed())

    def get(self, label: str) -> FactorSet:
        if label in self._loaded:
            return self._loaded[label]
        pub, comp = self.published(), self.computed()
        if label in pub:
            gen, a_id, p_id, layer = pub[label]
            A = pf.load_factor_file(fetch(self.registry.get(a_id)))
            P = pf.load_factor_file(fetch(self.registry.get(p_id)))
            fs = FactorSet(gen, layer, A, P, "published")
        elif label in comp:
            uc, us = comp[label]
            layer = int(FILE_NAME.fullmatch(us.name)["layer"])
            fs = FactorSet(us.parent.name, layer, pf.load_factor_file(uc), pf.load_factor_file(us), "computed")
        else:
            raise UserError(f"Unknown factor set {label!r}: pick one from the list or compute one.")
        if (fs.A.ndim != 2 or fs.P.ndim != 2 or (fs.P < 0).any()
                or not (torch.isfinite(fs.A).all() and torch.isfinite(fs.P).all())):
            raise UserError(f"The factor files of {label!r} are not PandA factors (A: C x R_C, P: S x R_S >= 0).")
        self._loaded[label] = fs
        return fs


def presets_for(fs: FactorSet) -> dict[str, tuple[list[int], int, float]]:
    out = {}
    if fs.generator == "stylegan2-ffhq-1024" and fs.origin == "published":
        out.update(FFHQ_PRESETS.get((fs.layer, fs.P.shape[1]), {}))
    return out


# ---- state the handlers share: one library per app, one mean per loaded model and layer ------
_means: "weakref.WeakKeyDictionary[StyleGAN2Generator, dict[tuple[int, float], torch.Tensor]]" = weakref.WeakKeyDictionary()
SAMPLE_GPU_SECONDS = 0.05  # estimated GPU time per sample (features and fit) for ZeroGPU's duration
FEATURE_BUDGET = 4 * 2 ** 30  # bytes of layer features the full-gradient solver may hold
SOLVERS = {"full gradient (fast, default)": "full", "the authors' stochastic loop": "stochastic"}


def library(ctx: AppContext) -> FactorLibrary:
    """The app's factor library, so factor files are read once for every handler and session."""
    return ctx.shared((TAB, "library"), lambda: FactorLibrary(ctx))


def channel_mean(G: StyleGAN2Generator, layer: int, truncation: float = DEFAULT_TRUNCATION) -> torch.Tensor:
    """Mean feature of layer l over the authors' samples t = 0..499 and all positions (CPU)
    [C], at the pictures' truncation: the saliency threshold of appearance j is a_j . mean
    (`localize-concepts`). Computed once per loaded model, layer and truncation."""
    per_model = _means.setdefault(G, {})
    key = (layer, float(truncation))
    if key not in per_model:
        per_model[key] = pf.collect_stats(G, layer, pf.sample_draws(range(SALIENCY_SAMPLES)),
                                          float(truncation), with_gram=False).mean.cpu()
    return per_model[key]


def factors_and_model(ctx: AppContext, label: str | None) -> tuple[FactorSet, StyleGAN2Generator]:
    """The chosen factor set and its generator, checked to fit each other."""
    if not label:
        raise UserError("No factors yet: pick a factor set or compute one below.")
    fs = library(ctx).get(label)
    G = ctx.model(fs.generator)
    fs.check_against(G)
    return fs, G


def factor_needs(ctx: AppContext, label: str | None, *_, **__) -> list[str]:
    """What a call needs before it computes (`core.gpu`): the factor set, read into the app's
    library here (a worker forked later holds it), and its generator, loaded."""
    fs, _ = factors_and_model(ctx, label)
    return [fs.generator]


def compute_needs(ctx: AppContext, model_id: str | None, *_, **__) -> list[str]:
    """Computing factors: the generator."""
    if not model_id:
        raise UserError("Pick a generator.")
    return [model_id]


def compute_seconds(ctx: AppContext, model_id: str | None, layer, rank_s, n_samples: float,
                    iters=None, solver: str = "full", steps: float = pf.AUTHORS_STEPS, *_, **__) -> float:
    """GPU time of computing factors: the samples' features and the fit, or the stochastic
    loop's steps (one generated sample each)."""
    loop = float(steps) if SOLVERS.get(solver, solver) == "stochastic" else 0
    return 30 + (float(n_samples) + loop) * SAMPLE_GPU_SECONDS


def licensed_ids(ctx: AppContext) -> list[str]:
    """The tab's weights for its licence line: every factor file and its registered generator."""
    factors = [e for e in ctx.registry if e.arch == "panda-factors"]
    known = set(ctx.registry.ids())
    return [e.id for e in factors] + [e.generator for e in factors if e.generator in known]


def parse_parts(text: str | int | float | list | None) -> tuple[int, ...]:
    """"4" / "1, 8" / [1, 8] -> part indices."""
    if isinstance(text, (list, tuple)):
        return tuple(int(p) for p in text)
    if isinstance(text, (int, float)):
        return (int(text),)
    try:
        return tuple(int(p) for p in str(text or "").replace(";", ",").split(",") if p.strip())
    except ValueError:
        raise UserError(f"Parts {text!r}: write part indices separated by commas, e.g. 1, 8.") from None


def edit_terms(chosen: list | None, appearance: float | None, strength: float, more=None) -> list[EditTerm]:
    """The edit above (if parts are picked) plus every row of the edit list: the authors' sum
    of [part, appearance, lambda] terms."""
    terms = []
    if chosen:
        if appearance is None:
            raise UserError("Pick an appearance index.")
        terms.append(EditTerm(tuple(int(p) for p in chosen), int(appearance), float(strength)))
    rows = more.values.tolist() if hasattr(more, "values") else (more or [])
    for row in rows:
        if row is None or all(v in (None, "") for v in row):
            continue
        if len(row) != 3 or row[1] in (None, "") or row[2] in (None, ""):
            raise UserError(f"Edit list row {row!r}: give parts, an appearance and a strength.")
        terms.append(EditTerm(parse_parts(row[0]), int(float(row[1])), float(row[2])))
    if not terms or any(not t.parts for t in terms):
        raise UserError("Pick at least one part.")
    return terms


# ---- handlers (plain functions of the context and the widgets' values) ---------------------
class PartsOutputs(NamedTuple):
    """The parts' widgets: parts gallery, part choices, annotated edits, appearance."""
    gallery: list
    parts: dict
    presets: dict
    appearance: dict


@gpu_task(duration=60, needs=factor_needs)
def show_parts(ctx: AppContext, label: str | None, seeds: str, truncation: float, refine: bool = False,
               progress=gr.Progress(track_tqdm=True)) -> PartsOutputs:
    """A factor set's parts tinted on the first seed's picture (refined for it, Eq. 6, when
    asked), so a person sees where each part lies -> (gallery, part choices with part 0
    picked, preset names, appearance range)."""
    fs, G = factors_and_model(ctx, label)
    w = seed_w_plus(G, parse_seeds(seeds)[:1], float(truncation))
    with torch.inference_mode():
        state = G.synthesis_until(w, panda_layer(fs.layer))
        image = G.synthesis_from(state, w).float()[0]
    shown = fs
    if refine:
        Z = state.features.float().reshape(state.features.shape[1], -1).cpu()
        shown = FactorSet(fs.generator, fs.layer, fs.A, refine_parts(Z, fs.A, fs.P), fs.origin)
    choices = [(f"part {r}", r) for r in range(fs.P.shape[1])]
    gallery = [(img, f"part {r}") for r, img in enumerate(part_overlays(image, shown))]
    return PartsOutputs(gallery=gallery, parts=gr.update(choices=choices, value=[0]),
                        presets=gr.update(choices=list(presets_for(fs)), value=None),
                        appearance=gr.update(maximum=fs.A.shape[1] - 1))


class SeedEditOutputs(NamedTuple):
    """The seeds' edit widgets: original, edited, |difference|, saliency, masked, run ("Download all")."""
    original: np.ndarray
    edited: np.ndarray
    difference: np.ndarray
    saliency: np.ndarray
    masked: np.ndarray
    run: Run


@gpu_task(duration=60, needs=factor_needs)
def edit_seeds(ctx: AppContext, label: str | None, seeds: str, truncation: float,
               chosen: list | None, appearance: float | None, strength: float, more=None,
               refine: bool = False) -> SeedEditOutputs:
    """Edit every seed's picture with the sum of the edit above and the edit list ->
    (originals, edited, |difference|, saliency rows, masked originals, run for "Download all").
    Saliency and masking show the first term's appearance."""
    fs, G = factors_and_model(ctx, label)
    terms = edit_terms(chosen, appearance, strength, more)
    chosen_seeds = parse_seeds(seeds)
    psi = float(truncation)
    w = seed_w_plus(G, chosen_seeds, psi)
    res = edit(G, w, fs, terms, refine=bool(refine))
    orig, new = res.original, res.edited
    j = terms[0].appearance
    threshold = float(fs.A[:, j] @ channel_mean(G, fs.layer, psi))
    size = orig.shape[-1]
    m, binary = saliency(G, w, fs, j, threshold, size)
    diffs = np.concatenate([heatmap(d, vmin=0) for d in (new - orig).abs().mean(1)], axis=1)
    sal_rows = np.concatenate([saliency_picture(mi, bi, size) for mi, bi in zip(m, binary)], axis=0)
    masked = masked_pictures(orig, binary)
    published = library(ctx).published().get(label)
    roles = {"generator": fs.generator}
    if published:
        roles.update(appearances=published[1], parts=published[2])
    run = record(
        ctx, TAB, "edit", roles,
        images={"original": list(to_uint8(orig)), "edited": list(to_uint8(new)),
                "difference": diffs, "saliency": sal_rows, "masked": list(masked)},
        masks={"part": part_mask(res.parts[0], list(terms[0].parts), fs.side),
               "saliency_above_mean": list(binary)},
        arrays={"w_plus": w, "appearance_vector": fs.A[:, j], "saliency": m,
                "delta": torch.stack([edit_delta(fs.A, P, terms, fs.side) for P in res.parts]),
                "parts_used": res.parts},
        seeds=chosen_seeds,
        settings={"factor_set": label, "origin": fs.origin, "layer": fs.layer,
                  "ranks": [int(fs.A.shape[1]), int(fs.P.shape[1])],
                  "edits": [[list(t.parts), t.appearance, t.strength] for t in terms],
                  "parts": list(terms[0].parts), "appearance": j, "strength": terms[0].strength,
                  "truncation": psi, "refine_parts": bool(refine),
                  "refine": {"lr": REFINE_LR, "steps": REFINE_STEPS} if refine else None,
                  "saliency_threshold": threshold, "saliency_samples": SALIENCY_SAMPLES,
                  "sampling": "seed t: np.random.seed(t); np.random.randn(1, 512) (the authors' sample t)"},
        notes="original_k / edited_k / masked_k come from seeds[k - 1]; edits: the authors' "
              "[parts, appearance, lambda] terms, summed; masks/part: the first term's parts "
              "(first sample's, refined if asked), min-max scaled, at the layer's resolution; "
              "saliency_above_mean: Lanczos-upsampled a_j^T Z >= a_j . mean feature; masked: "
              "white where that mask is on.")
    return SeedEditOutputs(grid(orig, pad=0), grid(new, pad=0), diffs, sal_rows, grid_uint8(masked), run)


NO_PHOTO_CODE = ("No photo code yet: upload your photo above and press \"Quick code\", invert it "
                 "in the SAM tab (finer), or load a saved run.")
QUICK_STEP_GPU_SECONDS = 0.12  # estimated GPU time per W+ step at 1024 px (SAM's estimate)


def quick_needs(ctx: AppContext, label: str | None, *_, **__) -> list:
    """A quick code: the factors' generator in float32 (gradients), its e4e encoder where
    registered, and the LPIPS backbone."""
    fs, _ = factors_and_model(ctx, label)
    get_lpips("vgg", ctx.device)
    enc = encoder_of(ctx, fs.generator)
    return [(fs.generator, torch.float32)] + ([(enc.id, torch.float32)] if enc else [])


def quick_seconds(ctx: AppContext, label: str | None, photo, face, plain, steps: float = 0,
                  *_, **__) -> float:
    """GPU time of a quick code: its steps at the generator's size."""
    size = library(ctx).get(label).side if label else 256
    return 20 + float(steps or 0) * QUICK_STEP_GPU_SECONDS * max(size * 16 / 1024, 0.25) ** 2


class QuickCodeOutputs(NamedTuple):
    """A quick code's widgets: the session's photo code, its reconstruction, status line."""
    code: PhotoCode
    reconstruction: np.ndarray
    status: str


@gpu_task(duration=quick_seconds, needs=quick_needs)
def quick_photo_code(ctx: AppContext, label: str | None, photo, face: float | None = 1,
                     plain: bool = False, steps: float = QUICK_STEPS[1],
                     progress=gr.Progress()) -> QuickCodeOutputs:
    """Your photo, framed for the factors' generator, as a photo code in W+ (e4e where
    registered, then `steps` Adam steps): the session's code, which "Edit my photo" edits
    (and SAM and Generate see) -> (code, its reconstruction, status)."""
    fs, _ = factors_and_model(ctx, label)
    G = ctx.model(fs.generator, torch.float32)  # gradients: float32 on every device
    progress(0.0, desc="Framing the photo")
    framed, _ = frame_input(ctx, fs.generator, photo, G.size, face, plain)
    steps = max(0, int(steps or 0))
    report = lambda done, total: progress(done / total, desc=f"W+ step {done}/{total}")  # noqa: E731
    code = quick_code(ctx, fs.generator, G, framed, steps, get_lpips("vgg", G.device), report)
    with torch.no_grad():
        picture = to_uint8(code.render(G))[0]
    return QuickCodeOutputs(code, picture, f"Your photo is now the session's {code.describe()}: "
                                           "edit it below (SAM's inversion is finer).")


class PhotoEditOutputs(NamedTuple):
    """The photo code's edit widgets: reconstruction, edited, |difference|, edit in the photo, run."""
    original: np.ndarray
    edited: np.ndarray
    difference: np.ndarray
    in_photo: np.ndarray | None
    run: Run


@gpu_task(duration=60, needs=factor_needs)
def edit_photo_code(ctx: AppContext, label: str | None, code: PhotoCode | None, chosen: list | None,
                    appearance: float | None, strength: float, more=None) -> PhotoEditOutputs:
    """The session's photo code (an inverted photo) edited with parts and appearances ->
    (reconstruction, edited, |difference|, the edit in the photo, run)."""
    if code is None:
        raise UserError(NO_PHOTO_CODE)
    fs, G = factors_and_model(ctx, label)
    code.check_model(fs.generator)
    terms = edit_terms(chosen, appearance, strength, more)
    orig, new = edit_code(G, code, fs, terms)
    original, edited = to_uint8(orig)[0], to_uint8(new)[0]
    diff = heatmap((new - orig).abs().mean(1)[0], vmin=0)
    in_photo = code.in_photo(edited)
    images, arrays, settings = run_parts(code)
    run = record(ctx, TAB, "edit photo code", {"generator": fs.generator},
                 images={"original": original, "edited": edited, "difference": diff,
                         "edited_in_photo": in_photo, **images},
                 arrays={**arrays, "delta": edit_delta(fs.A, fs.P, terms, fs.side)},
                 settings={**settings, "factor_set": label, "layer": fs.layer,
                           "edits": [[list(t.parts), t.appearance, t.strength] for t in terms]},
                 notes="original: the photo code's reconstruction (W+ and its residuals); edited: "
                       "the same pass with the parts/appearances edit at the factors' layer.")
    return PhotoEditOutputs(original, edited, diff, in_photo, run)


def generator_of(ctx: AppContext, label: str | None) -> str | None:
    """The generator a factor set belongs to (the photo slot frames photos for it)."""
    try:
        return library(ctx).get(label).generator if label else None
    except UserError:
        return None


class LoadRunOutputs(NamedTuple):
    """A saved run's widgets: factors, seeds, ψ, refine, parts, appearance, λ, edit list, the
    session's photo code, status."""
    factor_set: dict
    seeds: dict
    psi: dict
    refine: dict
    parts: dict
    appearance: dict
    strength: dict
    more: dict
    code: PhotoCode | None
    status: str


@user_errors
def open_saved_run(ctx: AppContext, file: str | None, code: PhotoCode | None) -> LoadRunOutputs:
    """A run saved with "Download all" back: a PandA run's factors, seeds, truncation and
    edits; any run's photo code (SAM, PandA, Generate) becomes the session's. Loads no model:
    "Edit" or "Edit my photo" then renders it."""
    bundle = open_run(file)
    recipe, keep = bundle.recipe, gr.update()
    settings = recipe.get("settings") or {}
    notes = []
    if settings.get("photo_code"):
        code = code_from_bundle(bundle)
        notes.append(f"the session's photo code is now this run's {code.describe()}")
    if recipe.get("tab") != TAB:
        if not notes:
            raise UserError(f"This run was saved by the {recipe.get('tab', '?')!r} tab and holds no "
                            "photo code: load it there.")
        return LoadRunOutputs(*[keep] * 8, code, "Loaded: " + notes[0] + ". Pick its model's "
                              "factors and press \"Edit my photo\".")
    label = settings.get("factor_set")
    if label not in library(ctx).labels():
        raise UserError(f"This run used the factor set {label!r}, which is not available here: "
                        "compute it below (same generator, layer and rank), then load the run again.")
    edits = [[list(map(int, parts)), int(j), float(lam)] for parts, j, lam in settings.get("edits") or []]
    if not edits:
        raise UserError("This PandA run lists no edits.")
    (first_parts, j, lam), rest = edits[0], edits[1:]
    seeds = recipe.get("seeds") or []
    seeds_update = gr.update(value=", ".join(map(str, seeds))) if seeds else keep
    psi = settings.get("truncation")
    notes.insert(0, f"factors {label}, {len(edits)} edit(s)" + (f", seeds {', '.join(map(str, seeds))}"
                                                               if seeds else ""))
    return LoadRunOutputs(
        gr.update(value=label), seeds_update, keep if psi is None else gr.update(value=float(psi)),
        gr.update(value=bool(settings.get("refine_parts"))),
        gr.update(choices=part_choices(label), value=first_parts), gr.update(value=j),
        gr.update(value=lam),
        gr.update(value=[[", ".join(map(str, p)), a, v] for p, a, v in rest]), code,
        "Loaded " + "; ".join(notes) + ". Press \"Edit\"" + (" or \"Edit my photo\"" if code else "") + ".")


def grid_uint8(pictures: np.ndarray) -> np.ndarray:
    """uint8 [B, H, W, 3] side by side (no gutters, like the other rows)."""
    return np.concatenate(list(pictures), axis=1)


class PresetOutputs(NamedTuple):
    """An annotated edit's widgets: parts, appearance, strength λ."""
    parts: list[int] | dict
    appearance: int | dict
    strength: float | dict


@user_errors
def apply_preset(ctx: AppContext, label: str | None, name: str | None) -> PresetOutputs:
    """An annotated edit -> (parts, appearance, strength); no preset picked leaves them as
    they are."""
    if not name:
        return PresetOutputs(gr.update(), gr.update(), gr.update())
    presets = presets_for(library(ctx).get(label))
    if name not in presets:
        raise UserError(f"{name!r} is not an annotated edit of these factors.")
    chosen, j, lam = presets[name]
    return PresetOutputs(chosen, j, lam)


def add_edit(rows, chosen: list | None, appearance: float | None, strength: float) -> list[list]:
    """Append the edit above to the edit list (so several edits apply at once)."""
    current = rows.values.tolist() if hasattr(rows, "values") else [list(r) for r in rows or []]
    current = [r for r in current if r and any(v not in (None, "") for v in r)]
    if not chosen:
        raise gr.Error("Pick at least one part.")
    if appearance is None:
        raise gr.Error("Pick an appearance index.")
    return current + [[", ".join(str(int(p)) for p in chosen), int(appearance), float(strength)]]


def select_part(current: list | None, evt: gr.SelectData) -> list:
    """A click on a part's tile adds that part to the selection."""
    chosen = list(current or [])
    if evt.index not in chosen:
        chosen.append(evt.index)
    return chosen


class ComputeOutputs(NamedTuple):
    """The computed factors' widgets: factors dropdown, status line."""
    factor_set: dict
    status: str


@gpu_task(duration=compute_seconds, needs=compute_needs)
def compute_factors(ctx: AppContext, model_id: str | None, layer: float, rank_s: float,
                    n_samples: float, iters: float, solver: str = "full", steps: float = pf.AUTHORS_STEPS,
                    lr: float = pf.AUTHORS_LR, progress=gr.Progress(track_tqdm=True)) -> ComputeOutputs:
    """Factorize a layer of any registered StyleGAN2 with Algorithm 1 and save the pair in the
    authors' format and names -> (factor-set choices with the new set picked, status line).

    "full": `pf.fit` on the authors' n_samples HOSVD samples (all held: their full-gradient
    mode); "stochastic": their loop as published (HOSVD init on n_samples, then `steps`
    steps of one fresh sample t each, fixed `lr`), streamed."""
    if not model_id:
        raise UserError("Pick a generator.")
    solver = SOLVERS.get(solver, solver)
    if solver not in ("full", "stochastic"):
        raise UserError(f"Unknown solver {solver!r}.")
    G = ctx.model(model_id)
    layer, rank_s, n = int(layer), int(rank_s), int(n_samples)
    k = panda_layer(layer)
    if not 0 <= k < G.num_layers:
        raise UserError(f"{model_id} has layers 1..{G.num_layers}.")
    C, s = G.layer_channels(k), G.layer_resolution(k)
    if s * s > 4096:
        raise UserError(f"Layer {layer} is {s}x{s}: the S x S Gram matrix would be too large; "
                        "pick a layer of 64x64 or less.")
    chunk = 50 if G.device.type == "cuda" else 10
    if solver == "full":
        need = n * C * s * s * 4
        if need > FEATURE_BUDGET:
            raise UserError(f"{n} samples of layer {layer} ({C}x{s}x{s}) take {need / 2 ** 30:.1f} GB: "
                            f"use at most {FEATURE_BUDGET // (C * s * s * 4)} samples, or the authors' "
                            "stochastic loop, which streams them.")
        Z = pf.collect_features(G, layer, n, chunk=chunk,
                                progress=lambda d, t: progress(0.5 * d / t, desc=f"Features {d}/{t}"))
        A, P = pf.fit(Z, C, rank_s, max_iters=int(iters),
                      progress=lambda d, t: progress(0.5 + 0.5 * d / t, desc=f"Their update, then L-BFGS-B on the parts: iteration {d}"))
        del Z
    else:
        stats = pf.collect_stats(G, layer, pf.hosvd_draws(n), chunk=chunk, with_gram=False,
                                 progress=lambda d, t: progress(0.2 * d / t, desc=f"HOSVD {d}/{t}"))
        A0, P0 = pf.appearances_from_scatter(stats.scatter, C), pf.init_parts(s * s, rank_s)
        steps = int(steps)
        batches = pf.stream_features(G, layer, pf.sample_draws(range(steps)), chunk=chunk)
        A, P = pf.algorithm1(batches, A0.to(G.device), P0.to(G.device), float(lr), steps=steps,
                             progress=lambda d, t: progress(0.2 + 0.8 * d / t, desc=f"Algorithm 1, step {d}/{t}"))
        if not (torch.isfinite(A).all() and torch.isfinite(P).all()):
            raise UserError(f"The loop diverged at lr {lr:g}: try a smaller learning rate.")
    lib = library(ctx)
    uc, us = pf.save_factors(computed_dir() / model_id, lib.authors_name(model_id), layer, A, P)
    new = set_label(model_id, layer, A.shape[1], P.shape[1], "computed")
    lib.forget(new)
    return ComputeOutputs(gr.update(choices=lib.labels(), value=new),
                          f"Saved `{uc.name}` and `{us.name}` in `{shown_folder(uc.parent)}`.")


# ---- UI ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Picker:
    """The widgets both sections read: which factors, which seeds, how much truncation."""
    factor_set: gr.Dropdown
    seed: gr.Textbox
    psi: gr.Slider
    refine: gr.Checkbox


def _build_picker(labels: list[str]) -> Picker:
    with gr.Row():
        factor_set = gr.Dropdown(labels, value=labels[0] if labels else None, label="Factors",
                                 scale=3, allow_custom_value=False)
        seed = gr.Textbox(value="0", label="Seed(s)", scale=1,
                          placeholder="0 or 1, 5, 7 (a batch); seed t = the authors' sample t")
        dice = gr.Button("Random seed", scale=0)
        psi = gr.Slider(0.0, 1.0, value=DEFAULT_TRUNCATION, step=0.05, label="Truncation ψ", scale=2)
        refine = gr.Checkbox(False, label="Refine parts per sample (Eq. 6)", scale=1)
    dice.click(random_seeds, None, seed, queue=False, api_visibility="private")
    return Picker(factor_set, seed, psi, refine)


def _example_rows(labels: list[str]) -> tuple[list[list], list[str]]:
    rows = [[labels[0], "0", 1.0, 0, 50], [labels[0], "1, 2, 3", 1.0, 1, 80]]
    names = ["seed 0 · part 0 · appearance 0 · λ +50", "three seeds in one batch · appearance 1 · λ +80"]
    if len(labels) > 1:
        rows.append([labels[-1], "42", 0.5, 0, 50])
        names.append("another factor set · seed 42 · ψ 0.5")
    return rows, names


def _build_edit(wiring: TabWiring, picker: Picker, labels: list[str]) -> tuple[list, list]:
    """Parts gallery, part/appearance/strength/preset, the edit list, the result pictures, your
    photo, examples -> what showing the parts reads and fills (a new factor set shows them)."""
    parts_gallery = gr.Gallery(label="Parts (click to select)", columns=8, height=200, format="png")
    with gr.Row():
        first = part_choices(labels[0] if labels else None)
        parts = gr.Dropdown(first, value=[0] if first else [], multiselect=True, label="Part(s)", scale=2)
        appearance = gr.Number(value=0, precision=0, minimum=0, label="Appearance", scale=1)
        strength = gr.Slider(-300, 300, value=50, step=1, label="Strength λ", scale=3)
        preset = gr.Dropdown([], label="Annotated edit (the authors')", scale=2)
    with gr.Accordion("Several edits at once", open=False):
        more = gr.Dataframe(value=[], headers=["parts", "appearance", "λ"], datatype=["str", "number", "number"],
                            type="array", column_count=3, interactive=True,
                            label="Edit list: each row is added to the edit above (parts as 1, 8)")
        add = gr.Button("Add the edit above to the list")
    run = gr.Button("Edit", variant="primary")
    with gr.Row():
        original = gr.Image(label="Original", format="png", type="numpy", interactive=False, height=320)
        edited = gr.Image(label="Edited", format="png", type="numpy", interactive=False, height=320)
        diff = gr.Image(label="|Difference|", format="png", type="numpy", interactive=False, height=320)
    with gr.Row():
        sal = gr.Image(label="Appearance saliency (Lanczos, then ≥ its mean over 500 samples)",
                       format="png", type="numpy", interactive=False, height=320)
        masked = gr.Image(label="Masked: white where the appearance is salient (appearance 0: background removed)",
                          format="png", type="numpy", interactive=False, height=320)

    show_inputs = [picker.factor_set, picker.seed, picker.psi, picker.refine]
    show_outputs = [parts_gallery, parts, preset, appearance]
    edit_inputs = [picker.factor_set, picker.seed, picker.psi, parts, appearance, strength, more, picker.refine]
    edit_outputs = [original, edited, diff, sal, masked]
    # a person's pick (not a loaded run's, which keeps its parts) shows the parts, part 0 picked
    wiring.on(picker.factor_set.input, show_parts, show_inputs, show_outputs,
              api_name="panda_parts", record=False)
    wiring.on(picker.seed.submit, show_parts, show_inputs, show_outputs, record=False)
    wiring.on(picker.refine.change, show_parts, show_inputs, show_outputs, record=False)
    wiring.on(run.click, edit_seeds, edit_inputs, edit_outputs, api_name="panda_edit")
    code = photo_code_state(wiring.ctx)
    with gr.Accordion("Edit your photo", open=True):
        gr.Markdown("Upload your photo (framed for the factors' generator) and press \"Quick code\" "
                    "for a W+ code in seconds (e4e where registered, then a short optimisation), or "
                    "invert it in the SAM tab (finer: W+ plus feature residuals), or load a saved "
                    "run. The parts and appearances above then act on your photo's own pass, so "
                    "λ = 0 is exactly the reconstruction; the result goes back into your photo at "
                    "full resolution.")
        generator = gr.Textbox(generator_of(wiring.ctx, picker.factor_set.value), visible=False)
        with gr.Row():
            with gr.Column():
                slot = photo_slot(wiring, generator, label="Your photo", net_input=False, height=320)
            with gr.Column():
                net_input = gr.Image(label="Network input", format="png", interactive=False, height=320)
                caption = gr.Markdown()
                steps = gr.Slider(0, 1000, value=QUICK_STEPS[0] if wiring.ctx.device.type == "cuda"
                                  else QUICK_STEPS[1], step=10, label="W+ steps after the start")
                quick = gr.Button("Quick code", variant="secondary")
                saved = gr.File(label="Load a run (.zip)", file_types=[".zip"], type="filepath")
        status = gr.Markdown()
        edit_mine = gr.Button("Edit my photo", variant="primary")
        with gr.Row():
            code_original = gr.Image(label="Your photo's reconstruction", format="png", interactive=False, height=320)
            code_edited = gr.Image(label="Your photo edited", format="png", interactive=False, height=320)
            code_diff = gr.Image(label="|Difference| (your photo)", format="png", interactive=False, height=320)
        code_in_photo = gr.Image(label="The edit in your photo", format="png", interactive=False, height=480)
    slot.follow(wiring, generator, net_input, caption)
    slot.clears(code_original, code_edited, code_diff, code_in_photo)
    picker.factor_set.change(functools.partial(generator_of, wiring.ctx), picker.factor_set, generator,
                             api_visibility="private", queue=False)
    wiring.on(quick.click, quick_photo_code, [picker.factor_set, *slot.inputs, steps],
              [code, code_original, status], api_name="panda_quick_code", record=False)
    loaded = wiring.on(saved.upload, open_saved_run, [saved, code],
                       [picker.factor_set, picker.seed, picker.psi, picker.refine, parts, appearance,
                        strength, more, code, status], api_name="panda_load_run", record=False)
    wiring.on(loaded.success, show_parts, show_inputs, [parts_gallery, gr.State(), preset, gr.State()],
              record=False)
    wiring.on(edit_mine.click, edit_photo_code,
              [picker.factor_set, code, parts, appearance, strength, more],
              [code_original, code_edited, code_diff, code_in_photo], api_name="panda_edit_photo")
    wiring.on(strength.release, edit_seeds, edit_inputs, edit_outputs)
    wiring.on(preset.change, apply_preset, [picker.factor_set, preset], [parts, appearance, strength],
              api_name="panda_preset", record=False)
    add.click(add_edit, [more, parts, appearance, strength], more, api_name="panda_add_edit")
    parts_gallery.select(select_part, parts, parts, api_visibility="private")
    if labels:
        rows, names = _example_rows(labels)
        examples = labelled_examples(
            rows, names, [picker.factor_set, picker.seed, picker.psi, appearance, strength],
            label="Examples (part 0 is selected first; then try a preset or other parts)")
        # show the parts (which picks part 0, returns no run), then edit: `wiring.examples`
        # records every step, so the two steps are chained here
        shown = wiring.on(examples.load_input_event.then, show_parts, show_inputs, show_outputs,
                          record=False)
        wiring.on(shown.then, edit_seeds, edit_inputs, edit_outputs)
    return show_inputs, show_outputs


def _build_compute(wiring: TabWiring, factor_set: gr.Dropdown, open_: bool, show: tuple[list, list]
                   ) -> None:
    """Factorize a layer of any registered StyleGAN2; the new set joins the Factors list and
    its parts are shown."""
    with gr.Accordion("Compute factors", open=open_):
        gr.Markdown(COMPUTE_TEXT + f" Saved as the authors' `Uc-name_<model>-layer_<l>-rank_<R>.npy` / "
                    f"`Us-...` (e.g. `stylegan2_ffhq1024`) under `{shown_folder(computed_dir())}/<generator id>/`; their "
                    "own files put there are listed too.")
        with gr.Row():
            gen_ids = wiring.ctx.model_ids(STYLEGAN2_ARCHS)
            model = gr.Dropdown(gen_ids, value=gen_ids[0] if gen_ids else None, label="Generator")
            layer = gr.Slider(2, 12, value=5, step=1, label="Layer l")
            rank = gr.Dropdown([4, 8, 16, 32], value=8, label="Parts R_S")
            solver = gr.Radio(list(SOLVERS.items()), value="full", label="Solver")
        with gr.Row():
            samples = gr.Slider(50, 5000, value=1000, step=50, label="Samples (full gradient; HOSVD init)")
            iters = gr.Slider(10, 5000, value=2000, step=10, label="Max iterations (full gradient)")
            steps = gr.Number(value=pf.AUTHORS_STEPS, precision=0, minimum=1, label="Steps (stochastic)")
            lr = gr.Number(value=pf.AUTHORS_LR, minimum=0, label="lr (stochastic)")
        compute = gr.Button("Compute factors")
        status = gr.Markdown()
    computed = wiring.on(compute.click, compute_factors, [model, layer, rank, samples, iters, solver,
                                                          steps, lr],
                         [factor_set, status], api_name="panda_compute", record=False)
    wiring.on(computed.success, show_parts, *show, record=False)


def build_tab(ctx: AppContext) -> None:
    wiring = TabWiring(ctx, TAB)
    labels = library(ctx).labels()
    tab_header("Pick a part (where) and an appearance (what), slide the strength: only that "
               "region changes. Factors are the authors' published ones, or compute your own "
               "for any StyleGAN2 model and layer.",
               HOW_IT_WORKS)
    licence_line(ctx.registry, TAB, licensed_ids(ctx))
    picker = _build_picker(labels)
    show = _build_edit(wiring, picker, labels)
    wiring.download.render()
    _build_compute(wiring, picker.factor_set, open_=not labels, show=show)
