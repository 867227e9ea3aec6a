"""PandA tab: parts and appearances in a StyleGAN2 layer, and local edits with them.

Engine (no Gradio): `FactorSet` (A, P and the layer they belong to), `part_mask`,
`edit` (original and edited image from one resumed pass), `saliency`, `part_overlays`, and
`FactorLibrary` (published factor files from the registry, factors computed here).
Factorization itself lives in `demos/panda_factors.py`.

Handlers (functions of the context and the widgets' values): `show_parts`, `edit_seeds`,
`apply_preset`, `select_part`, `compute_factors`. UI: `build_tab` lays out the shared
factor/seed picker, `_build_edit` and `_build_compute`.
"""
from __future__ import annotations

import random
import weakref
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import torch

from core.context import AppContext
from core.errors import UserError
from core.hub import app_cache_dir, fetch
from core.images import grid, heatmap, overlay, to_uint8
from core.models.stylegan2 import StyleGAN2Generator, SynthesisState, panda_layer
from core.recipe import Run
from core.ui import (MAX_SEED, TabWiring, gpu_task, labelled_examples, licence_line, parse_seeds,
                     record, tab_header, user_errors)
from demos import panda_factors as pf

PAPER = "https://arxiv.org/abs/2206.00048"
HOW_IT_WORKS = f"""
At one generator layer *l* the features of every sample form a C×S matrix Z (C channels,
S = H·W positions). PandA factorises them as Z ≈ A (Aᵀ Z P) Pᵀ: the columns of **P** (S×R,
non-negative) are **parts**, spatial regions shared by all samples (eyes, mouth, background);
the columns of **A** (C×C) are **appearances**, directions in channel space (ordered by how much
of the features they explain). An edit adds λ · a_j ⊗ p to Z, where p is the chosen part(s)
summed and scaled to [0, 1], then runs the rest of the generator: only that region changes,
in the way appearance j describes. The saliency map a_jᵀ Z shows where appearance j is active
(white: above its mean over 500 samples). Paper: [Oldfield et al., ICLR 2023]({PAPER}).

**Simplifications, stated plainly.** *Compute factors* streams samples once and solves for the
parts from the S×S Gram matrix with A fixed at the scatter's eigenvectors: with A square this
is the same objective as the authors' alternating loop, and A barely moves there (see the
module docs). Both images are rendered from one resumed pass that keeps the low-resolution RGB
skip, so the "original" is exactly the generator's image (the authors' genforce resume drops
it). No per-sample part refinement.
"""

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
REMOVE_OBJECT = ("remove object (background appearance)", 0, -200.0)
SALIENCY_SAMPLES = 500


def set_label(generator: str, layer: int, rank_c: int | str, rank_s: int | str, origin: str) -> str:
    """How a factor set is named in the UI (and looked up again)."""
    return f"{generator} · layer {layer} · ranks [{rank_c}, {rank_s}] ({origin})"


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


def seed_w_plus(G: StyleGAN2Generator, seeds: list[int], truncation: float) -> torch.Tensor:
    """w+ [B, n_latent, D] of the seeds' pictures (the family's own z per seed, truncated)."""
    return G.w_plus(G.truncated_w(G.sample_latents(seeds), truncation))


@torch.inference_mode()
def edit(G: StyleGAN2Generator, w_plus: torch.Tensor, factors: FactorSet, parts: list[int],
         appearance: int, strength: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(original, edited) [B, 3, S, S] from one batched pass resumed after layer l:
    Z' = Z + strength * a_appearance (x) part_mask."""
    _check_appearance(factors.A, appearance)
    mask = part_mask(factors.P, parts, factors.side)
    k = panda_layer(factors.layer)
    state = G.synthesis_until(w_plus, k)
    Z = state.features
    delta = strength * factors.A[:, appearance].to(Z)[None, :, None, None] * mask.to(Z)[None, None]
    both = SynthesisState(k, torch.cat([Z, Z + delta]), torch.cat([state.skip] * 2))
    out = G.synthesis_from(both, torch.cat([w_plus] * 2)).float()
    b = w_plus.shape[0]
    return out[:b], out[b:]


@torch.inference_mode()
def saliency(G: StyleGAN2Generator, w_plus: torch.Tensor, factors: FactorSet, appearance: int,
             threshold: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(a_j^T Z [B, s, s], binary mask of where it exceeds `threshold`, default its own mean)."""
    _check_appearance(factors.A, appearance)
    Z = pf.layer_features(G, w_plus, factors.layer).float()
    m = torch.einsum("c,bcs->bs", factors.A[:, appearance].to(Z), Z).reshape(-1, factors.side, factors.side)
    t = m.mean() if threshold is None else threshold
    return m, (m >= t).float()


def saliency_picture(m: torch.Tensor, binary: torch.Tensor, size: int) -> np.ndarray:
    """Heat map of a_j^T Z beside its thresholded mask, both at image size."""
    mask = np.repeat((binary.cpu().numpy() * 255).astype(np.uint8)[..., None], 3, -1)
    mask = np.kron(mask, np.ones((size // mask.shape[0], size // mask.shape[1], 1), np.uint8))
    return np.concatenate([heatmap(m, size), mask], axis=1)


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


def computed_dir() -> Path:
    return app_cache_dir() / "panda"


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

    def computed(self) -> dict[str, Path]:
        """label -> folder, for factor pairs saved by Compute factors (authors' file names)."""
        out = {}
        root = computed_dir()
        for gen_dir in sorted(root.glob("*")) if root.is_dir() else []:
            if gen_dir.name not in self.registry.ids("stylegan2"):
                continue
            for us in sorted(gen_dir.glob("Us-name_*-layer_*-rank_*.npy")):
                layer_text = us.stem.split("-layer_")[1].split("-")[0]
                if not layer_text.isdigit():
                    continue  # not a file this app wrote
                layer = int(layer_text)
                uc = next(iter(gen_dir.glob(f"Uc-name_*-layer_{layer}-rank_*.npy")), None)
                if uc is not None:
                    rank_s = us.stem.rsplit("_", 1)[1]
                    rank_c = uc.stem.rsplit("_", 1)[1]
                    out[set_label(gen_dir.name, layer, rank_c, rank_s, "computed")] = us
        return out

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
            us = comp[label]
            layer = int(us.stem.split("-layer_")[1].split("-")[0])
            uc = next(iter(us.parent.glob(f"Uc-name_*-layer_{layer}-rank_*.npy")))
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
_means: "weakref.WeakKeyDictionary[StyleGAN2Generator, dict[int, torch.Tensor]]" = weakref.WeakKeyDictionary()


def library(ctx: AppContext) -> FactorLibrary:
    """The app's factor library, so factor files are read once for every handler and session."""
    return ctx.shared((TAB, "library"), lambda: FactorLibrary(ctx))


def channel_mean(G: StyleGAN2Generator, layer: int) -> torch.Tensor:
    """Mean feature of layer l over SALIENCY_SAMPLES samples and positions (CPU) [C]: the
    saliency threshold of appearance j is a_j . mean. Computed once per loaded model and layer."""
    per_model = _means.setdefault(G, {})
    if layer not in per_model:
        per_model[layer] = pf.collect_stats(G, layer, n_samples=SALIENCY_SAMPLES, batch=25,
                                            with_gram=False).mean.cpu()
    return per_model[layer]


def factors_and_model(ctx: AppContext, label: str | None) -> tuple[FactorSet, StyleGAN2Generator]:
    """The chosen factor set and its generator, checked to fit each other."""
    if not label:
        raise UserError("No factors yet: pick a factor set or compute one below.")
    fs = library(ctx).get(label)
    G = ctx.model(fs.generator)
    fs.check_against(G)
    return fs, G


def licensed_ids(ctx: AppContext) -> list[str]:
    """The tab's weights for its licence line: every factor file and its registered generator."""
    factors = [e for e in ctx.registry if e.arch == "panda-factors"]
    known = set(ctx.registry.ids())
    return [e.id for e in factors] + [e.generator for e in factors if e.generator in known]


# ---- handlers (plain functions of the context and the widgets' values) ---------------------
@gpu_task(duration=60)
def show_parts(ctx: AppContext, label: str | None, seeds: str, truncation: float,
               progress=gr.Progress(track_tqdm=True)) -> tuple[list, dict, dict, dict]:
    """A factor set's parts tinted on the first seed's picture, so a person sees where each
    part lies -> (gallery, part choices with part 0 picked, preset names, appearance range)."""
    fs, G = factors_and_model(ctx, label)
    w = seed_w_plus(G, parse_seeds(seeds)[:1], float(truncation))
    with torch.inference_mode():
        image = G.synthesis(w).float()[0]
    choices = [(f"part {r}", r) for r in range(fs.P.shape[1])]
    gallery = [(img, f"part {r}") for r, img in enumerate(part_overlays(image, fs))]
    names = list(presets_for(fs)) + [REMOVE_OBJECT[0]]
    return (gallery, gr.update(choices=choices, value=[0]), gr.update(choices=names, value=None),
            gr.update(maximum=fs.A.shape[1] - 1))


@gpu_task(duration=60)
def edit_seeds(ctx: AppContext, label: str | None, seeds: str, truncation: float,
               chosen: list | None, appearance: float | None, strength: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Run]:
    """Edit the chosen parts of every seed's picture along one appearance -> (originals,
    edited, |difference| and saliency rows, run for "Download all")."""
    fs, G = factors_and_model(ctx, label)
    if appearance is None:
        raise UserError("Pick an appearance index.")
    j, lam = int(appearance), float(strength)
    chosen_seeds = parse_seeds(seeds)
    parts_list = [int(p) for p in chosen or []]
    w = seed_w_plus(G, chosen_seeds, float(truncation))
    orig, new = edit(G, w, fs, parts_list, j, lam)
    threshold = float(fs.A[:, j] @ channel_mean(G, fs.layer))
    m, binary = saliency(G, w, fs, j, threshold)
    size = orig.shape[-1]
    diffs = np.concatenate([heatmap(d, vmin=0) for d in (new - orig).abs().mean(1)], axis=1)
    sal_rows = np.concatenate([saliency_picture(mi, bi, size) for mi, bi in zip(m, binary)], axis=0)
    published = library(ctx).published().get(label)
    roles = {"generator": fs.generator}
    if published:
        roles.update(appearances=published[1], parts=published[2])
    mask = part_mask(fs.P, parts_list, fs.side)
    run = record(
        ctx, TAB, "edit", roles,
        images={"original": list(to_uint8(orig)), "edited": list(to_uint8(new)),
                "difference": diffs, "saliency": sal_rows},
        masks={"part": mask, "saliency_above_mean": list(binary)},
        arrays={"w_plus": w, "part_mask": mask, "appearance_vector": fs.A[:, j], "saliency": m},
        seeds=chosen_seeds,
        settings={"factor_set": label, "origin": fs.origin, "layer": fs.layer,
                  "ranks": [int(fs.A.shape[1]), int(fs.P.shape[1])], "parts": parts_list,
                  "appearance": j, "strength": lam, "truncation": float(truncation),
                  "saliency_threshold": threshold, "saliency_samples": SALIENCY_SAMPLES},
        notes="original_k / edited_k come from seeds[k - 1]; masks/part: the chosen parts "
              "summed and min-max scaled, at the layer's resolution.")
    return grid(orig, pad=0), grid(new, pad=0), diffs, sal_rows, run


@user_errors
def apply_preset(ctx: AppContext, label: str | None, name: str | None) -> tuple:
    """An annotated edit (or "remove object") -> (parts, appearance, strength); no preset
    picked leaves them as they are."""
    if not name:
        return gr.update(), gr.update(), gr.update()
    if name == REMOVE_OBJECT[0]:
        return gr.update(), REMOVE_OBJECT[1], REMOVE_OBJECT[2]
    chosen, j, lam = presets_for(library(ctx).get(label))[name]
    return chosen, j, lam


def select_part(current: list | None, evt: gr.SelectData) -> list:
    """A click on a part's tile adds that part to the selection."""
    chosen = list(current or [])
    if evt.index not in chosen:
        chosen.append(evt.index)
    return chosen


def random_seed() -> str:
    return str(random.randint(0, MAX_SEED))


@gpu_task(duration=300)
def compute_factors(ctx: AppContext, model_id: str | None, layer: float, rank_s: float,
                    n_samples: float, iters: float, progress=gr.Progress(track_tqdm=True)
                    ) -> tuple[dict, str]:
    """Factorize a layer of any registered StyleGAN2 and save the pair in the authors' format
    -> (factor-set choices with the new set picked, status line)."""
    if not model_id:
        raise UserError("Pick a generator.")
    G = ctx.model(model_id)
    k = panda_layer(int(layer))
    if not 0 <= k < G.num_layers:
        raise UserError(f"{model_id} has layers 1..{G.num_layers}.")
    s = G.layer_resolution(k)
    if s * s > 4096:
        raise UserError(f"Layer {layer} is {s}x{s}: the S x S Gram matrix would be too large; "
                        "pick a layer of 64x64 or less.")
    stats = pf.collect_stats(G, int(layer), n_samples=int(n_samples), batch=10,
                             progress=lambda d, t: progress(0.8 * d / t, desc=f"Features {d}/{t}"))
    A, P = pf.factorize(stats, G.layer_channels(k), int(rank_s), iters=int(iters),
                        progress=lambda d, t: progress(0.8 + 0.2 * d / t, desc=f"Parts {d}/{t}"))
    uc, us = pf.save_factors(computed_dir() / model_id, model_id, int(layer), A, P)
    new = set_label(model_id, int(layer), A.shape[1], P.shape[1], "computed")
    lib = library(ctx)
    lib.forget(new)
    return gr.update(choices=lib.labels(), value=new), f"Saved `{uc.name}` and `{us.name}` in `{uc.parent}`."


# ---- UI ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Picker:
    """The widgets both sections read: which factors, which seeds, how much truncation."""
    factor_set: gr.Dropdown
    seed: gr.Textbox
    psi: gr.Slider


def _build_picker(labels: list[str]) -> Picker:
    with gr.Row():
        factor_set = gr.Dropdown(labels, value=labels[0] if labels else None, label="Factors",
                                 scale=3, allow_custom_value=False)
        seed = gr.Textbox(value="0", label="Seed(s)", placeholder="0 or 1, 5, 7 (a batch)", scale=1)
        dice = gr.Button("🎲", scale=0)
        psi = gr.Slider(0.0, 1.0, value=0.7, step=0.05, label="Truncation ψ", scale=2)
    dice.click(random_seed, None, seed, queue=False, api_name=False)
    return Picker(factor_set, seed, psi)


def _example_rows(labels: list[str]) -> tuple[list[list], list[str]]:
    rows = [[labels[0], "0", 0.7, 0, 50], [labels[0], "1, 2, 3", 0.7, 1, 80],
            [labels[0], "0", 0.7, REMOVE_OBJECT[1], REMOVE_OBJECT[2]]]
    names = ["seed 0 · part 0 · appearance 0 · λ +50", "three seeds in one batch · appearance 1 · λ +80",
             "remove part 0 (background appearance 0, λ −200)"]
    if len(labels) > 1:
        rows.append([labels[-1], "42", 0.5, 0, 50])
        names.append("another factor set · seed 42 · ψ 0.5")
    return rows, names


def _build_edit(wiring: TabWiring, picker: Picker, labels: list[str]) -> None:
    """Parts gallery, part/appearance/strength/preset, the four result pictures, examples."""
    parts_gallery = gr.Gallery(label="Parts (click to select)", columns=8, height=200, format="png")
    with gr.Row():
        parts = gr.Dropdown([], multiselect=True, label="Part(s)", scale=2)
        appearance = gr.Number(value=0, precision=0, minimum=0, label="Appearance", scale=1)
        strength = gr.Slider(-300, 300, value=50, step=1, label="Strength λ", scale=3)
        preset = gr.Dropdown([], label="Preset", scale=2)
    run = gr.Button("Edit", variant="primary")
    with gr.Row():
        original = gr.Image(label="Original", format="png", type="numpy", interactive=False)
        edited = gr.Image(label="Edited", format="png", type="numpy", interactive=False)
        diff = gr.Image(label="|Difference|", format="png", type="numpy", interactive=False)
        sal = gr.Image(label="Appearance saliency", format="png", type="numpy", interactive=False)

    show_inputs = [picker.factor_set, picker.seed, picker.psi]
    show_outputs = [parts_gallery, parts, preset, appearance]
    edit_inputs = show_inputs + [parts, appearance, strength]
    edit_outputs = [original, edited, diff, sal]
    wiring.on(picker.factor_set.change, show_parts, show_inputs, show_outputs,
              api_name="panda_parts", record=False)
    wiring.on(picker.seed.submit, show_parts, show_inputs, show_outputs, record=False)
    wiring.on(run.click, edit_seeds, edit_inputs, edit_outputs, api_name="panda_edit")
    wiring.on(strength.release, edit_seeds, edit_inputs, edit_outputs)
    wiring.on(preset.change, apply_preset, [picker.factor_set, preset], [parts, appearance, strength],
              api_name="panda_preset", record=False)
    parts_gallery.select(select_part, parts, parts, api_name=False)
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


def _build_compute(wiring: TabWiring, factor_set: gr.Dropdown, open_: bool) -> None:
    """Factorize a layer of any registered StyleGAN2; the new set joins the Factors list."""
    with gr.Accordion("Compute factors", open=open_):
        gr.Markdown("Stream samples up to layer *l*, accumulate the channel scatter and the S×S "
                    "Gram matrix, take A from the scatter's eigenvectors and solve for the parts. "
                    "Saved in the authors' `.npy` format under `" + str(computed_dir()) + "`.")
        with gr.Row():
            gen_ids = wiring.ctx.model_ids("stylegan2")
            model = gr.Dropdown(gen_ids, value=gen_ids[0] if gen_ids else None, label="Generator")
            layer = gr.Slider(2, 12, value=5, step=1, label="Layer l")
            rank = gr.Dropdown([4, 8, 16, 32], value=8, label="Parts R_S")
            samples = gr.Slider(50, 5000, value=1000, step=50, label="Samples")
            iters = gr.Slider(50, 2000, value=500, step=50, label="Iterations")
        compute = gr.Button("Compute factors")
        status = gr.Markdown()
    wiring.on(compute.click, compute_factors, [model, layer, rank, samples, iters],
              [factor_set, status], api_name="panda_compute", record=False)


def build_tab(ctx: AppContext) -> None:
    wiring = TabWiring(ctx, TAB)
    labels = library(ctx).labels()
    tab_header("Pick a part (where) and an appearance (what), slide the strength: only that "
               "region changes. Factors are the authors' published ones, or compute your own "
               "for any StyleGAN2 model and layer.",
               HOW_IT_WORKS)
    licence_line(ctx.registry, TAB, licensed_ids(ctx))
    picker = _build_picker(labels)
    _build_edit(wiring, picker, labels)
    wiring.download.render()
    _build_compute(wiring, picker.factor_set, open_=not labels)
