"""PandA tab: parts and appearances in a StyleGAN2 layer, and local edits with them.

Engine (no Gradio): `FactorSet` (A, P and the layer they belong to), `part_mask`,
`edit` (original and edited image from one resumed pass), `saliency`, `part_overlays`.
Factorization itself lives in `demos/panda_factors.py`.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import torch

from core.context import AppContext
from core.device import randn
from core.errors import UserError
from core.hub import app_cache_dir, fetch
from core.images import grid, heatmap, overlay, to_uint8
from core.models.stylegan2 import StyleGAN2Generator, SynthesisState, panda_layer, truncate
from core.ui import (MAX_SEED, DownloadAll, gpu, labelled_examples, licence_line, parse_seeds,
                     run_examples, tab_header, user_errors)
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
    z = torch.cat([randn((1, G.style_dim), s) for s in seeds]).to(G.device)
    w = G.mapping(z)
    if truncation != 1.0:
        w = truncate(w, G.truncation_center().to(w.dtype), truncation)
    return G.w_plus(w)


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
def computed_dir() -> Path:
    return app_cache_dir() / "panda"


class FactorLibrary:
    """Published factor files from the registry and factors computed here, by label."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        self._loaded: dict[str, FactorSet] = {}

    def published(self) -> dict[str, tuple[str, str, str, int]]:
        """label -> (generator id, appearances entry id, parts entry id, layer)."""
        entries = [e for e in self.ctx.registry if e.arch == "panda-factors"]
        for e in entries:
            missing = [k for k in ("generator", "layer", "factor", "rank") if k not in e.config]
            if missing:
                raise UserError(f"Registry entry {e.id!r} (panda-factors) lacks config {missing}.")
        sets = {}
        for a in (e for e in entries if e.config.get("factor") == "appearances"):
            for p in (e for e in entries if e.config.get("factor") == "parts"):
                if (a.config["generator"], a.config["layer"]) == (p.config["generator"], p.config["layer"]):
                    label = set_label(a.config["generator"], a.config["layer"], a.config["rank"],
                                      p.config["rank"], "published")
                    sets[label] = (a.config["generator"], a.id, p.id, a.config["layer"])
        return sets

    def computed(self) -> dict[str, Path]:
        """label -> folder, for factor pairs saved by Compute factors (authors' file names)."""
        out = {}
        root = computed_dir()
        for gen_dir in sorted(root.glob("*")) if root.is_dir() else []:
            if gen_dir.name not in self.ctx.model_ids("stylegan2"):
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
            A = pf.load_factor_file(fetch(self.ctx.registry.get(a_id)))
            P = pf.load_factor_file(fetch(self.ctx.registry.get(p_id)))
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


# ---- UI ------------------------------------------------------------------------------------
def presets_for(fs: FactorSet) -> dict[str, tuple[list[int], int, float]]:
    out = {}
    if fs.generator == "stylegan2-ffhq-1024" and fs.origin == "published":
        out.update(FFHQ_PRESETS.get((fs.layer, fs.P.shape[1]), {}))
    return out


def build_tab(ctx: AppContext) -> None:
    lib = FactorLibrary(ctx)
    means: dict[str, torch.Tensor] = {}  # per factor set: mean feature, for saliency thresholds
    labels = lib.labels()
    tab_header("Pick a part (where) and an appearance (what), slide the strength: only that "
               "region changes. Factors are the authors' published ones, or compute your own "
               "for any StyleGAN2 model and layer.",
               HOW_IT_WORKS)
    factor_ids = [e.id for e in ctx.registry if e.arch == "panda-factors"]
    factor_gens = [ctx.registry.get(i).config.get("generator") for i in factor_ids]
    licence_line(ctx.registry, "panda", factor_ids + [g for g in factor_gens if g in ctx.registry.ids()])
    download = DownloadAll(ctx, "panda")
    with gr.Row():
        factor_set = gr.Dropdown(labels, value=labels[0] if labels else None, label="Factors",
                                 scale=3, allow_custom_value=False)
        seed = gr.Textbox(value="0", label="Seed(s)", placeholder="0 or 1, 5, 7 (a batch)", scale=1)
        dice = gr.Button("🎲", scale=0)
        psi = gr.Slider(0.0, 1.0, value=0.7, step=0.05, label="Truncation ψ", scale=2)
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
    examples = None
    if labels:
        rows = [[labels[0], "0", 0.7, 0, 50], [labels[0], "1, 2, 3", 0.7, 1, 80],
                [labels[0], "0", 0.7, REMOVE_OBJECT[1], REMOVE_OBJECT[2]]]
        names = ["seed 0 · part 0 · appearance 0 · λ +50", "three seeds in one batch · appearance 1 · λ +80",
                 "remove part 0 (background appearance 0, λ −200)"]
        if len(labels) > 1:
            rows.append([labels[-1], "42", 0.5, 0, 50])
            names.append("another factor set · seed 42 · ψ 0.5")
        examples = labelled_examples(rows, names, [factor_set, seed, psi, appearance, strength],
                                     label="Examples (part 0 is selected first; then try a preset or other parts)")
    download.render()
    with gr.Accordion("Compute factors", open=not labels):
        gr.Markdown("Stream samples up to layer *l*, accumulate the channel scatter and the S×S "
                    "Gram matrix, take A from the scatter's eigenvectors and solve for the parts. "
                    "Saved in the authors' `.npy` format under `" + str(computed_dir()) + "`.")
        with gr.Row():
            gen_ids = ctx.model_ids("stylegan2")
            c_model = gr.Dropdown(gen_ids, value=gen_ids[0] if gen_ids else None, label="Generator")
            c_layer = gr.Slider(2, 12, value=5, step=1, label="Layer l")
            c_rank = gr.Dropdown([4, 8, 16, 32], value=8, label="Parts R_S")
            c_samples = gr.Slider(50, 5000, value=1000, step=50, label="Samples")
            c_iters = gr.Slider(50, 2000, value=500, step=50, label="Iterations")
        compute = gr.Button("Compute factors")
        c_status = gr.Markdown()

    def _factors(label: str) -> tuple[FactorSet, StyleGAN2Generator]:
        if not label:
            raise UserError("No factors yet: pick a factor set or compute one below.")
        fs = lib.get(label)
        G = ctx.model(fs.generator)
        fs.check_against(G)
        return fs, G

    @gpu(duration=60)
    @user_errors
    def on_show(label, seeds, truncation, progress=gr.Progress(track_tqdm=True)):
        fs, G = _factors(label)
        w = seed_w_plus(G, parse_seeds(seeds)[:1], float(truncation))
        with torch.inference_mode():
            image = G.synthesis(w).float()[0]
        choices = [(f"part {r}", r) for r in range(fs.P.shape[1])]
        gallery = [(img, f"part {r}") for r, img in enumerate(part_overlays(image, fs))]
        names = list(presets_for(fs)) + [REMOVE_OBJECT[0]]
        return (gallery, gr.update(choices=choices, value=[0]), gr.update(choices=names, value=None),
                gr.update(maximum=fs.A.shape[1] - 1))

    @gpu(duration=60)
    @user_errors
    def on_edit(label, seeds, truncation, chosen, j, lam):
        fs, G = _factors(label)
        if j is None:
            raise UserError("Pick an appearance index.")
        chosen_seeds = parse_seeds(seeds)
        parts_list = [int(p) for p in chosen or []]
        w = seed_w_plus(G, chosen_seeds, float(truncation))
        orig, new = edit(G, w, fs, parts_list, int(j), float(lam))
        threshold = float(fs.A[:, int(j)] @ channel_mean(label, G, fs))
        m, binary = saliency(G, w, fs, int(j), threshold)
        size = orig.shape[-1]
        diffs = np.concatenate([heatmap(d, vmin=0) for d in (new - orig).abs().mean(1)], axis=1)
        sal_rows = np.concatenate([saliency_picture(mi, bi, size) for mi, bi in zip(m, binary)], axis=0)
        outputs = grid(orig, pad=0), grid(new, pad=0), diffs, sal_rows
        published = lib.published().get(label)
        roles = {"generator": fs.generator}
        if published:
            roles.update(appearances=published[1], parts=published[2])
        mask = part_mask(fs.P, parts_list, fs.side)
        run_record = download.run(
            "edit", roles,
            images={"original": list(to_uint8(orig)), "edited": list(to_uint8(new)),
                    "difference": diffs, "saliency": sal_rows},
            masks={"part": mask, "saliency_above_mean": list(binary)},
            arrays={"w_plus": w, "part_mask": mask, "appearance_vector": fs.A[:, int(j)],
                    "saliency": m},
            seeds=chosen_seeds,
            settings={"factor_set": label, "origin": fs.origin, "layer": fs.layer,
                      "ranks": [int(fs.A.shape[1]), int(fs.P.shape[1])], "parts": parts_list,
                      "appearance": int(j), "strength": float(lam), "truncation": float(truncation),
                      "saliency_threshold": threshold, "saliency_samples": SALIENCY_SAMPLES},
            notes="original_k / edited_k come from seeds[k - 1]; masks/part: the chosen parts "
                  "summed and min-max scaled, at the layer's resolution.")
        return outputs + (run_record,)

    def channel_mean(label: str, G: StyleGAN2Generator, fs: FactorSet) -> torch.Tensor:
        """Mean feature over SALIENCY_SAMPLES samples and positions: mu_j = a_j . mean."""
        if label not in means:
            means[label] = pf.collect_stats(G, fs.layer, n_samples=SALIENCY_SAMPLES, batch=25,
                                              with_gram=False).mean.cpu()
        return means[label]

    @user_errors
    def on_preset(label, name):
        if not name:
            return gr.update(), gr.update(), gr.update()
        if name == REMOVE_OBJECT[0]:
            return gr.update(), REMOVE_OBJECT[1], REMOVE_OBJECT[2]
        chosen, j, lam = presets_for(lib.get(label))[name]
        return chosen, j, lam

    def on_select_part(current, evt: gr.SelectData):
        chosen = list(current or [])
        if evt.index not in chosen:
            chosen.append(evt.index)
        return chosen

    @gpu(duration=300)
    @user_errors
    def on_compute(model_id, layer, rank_s, n, iters, progress=gr.Progress(track_tqdm=True)):
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
        stats = pf.collect_stats(G, int(layer), n_samples=int(n), batch=10,
                                 progress=lambda d, t: progress(0.8 * d / t, desc=f"Features {d}/{t}"))
        A, P = pf.factorize(stats, G.layer_channels(k), int(rank_s), iters=int(iters),
                            progress=lambda d, t: progress(0.8 + 0.2 * d / t, desc=f"Parts {d}/{t}"))
        uc, us = pf.save_factors(computed_dir() / model_id, model_id, int(layer), A, P)
        new = set_label(model_id, int(layer), A.shape[1], P.shape[1], "computed")
        lib.forget(new)
        return gr.update(choices=lib.labels(), value=new), f"Saved `{uc.name}` and `{us.name}` in `{uc.parent}`."

    show_inputs = [factor_set, seed, psi]
    show_outputs = [parts_gallery, parts, preset, appearance]
    factor_set.change(on_show, show_inputs, show_outputs, api_name="panda_parts", concurrency_id="gpu")
    seed.submit(on_show, show_inputs, show_outputs, api_name=False, concurrency_id="gpu")
    edit_inputs = [factor_set, seed, psi, parts, appearance, strength]
    edit_outputs = [original, edited, diff, sal, download.state]
    run.click(on_edit, edit_inputs, edit_outputs, api_name="panda_edit", concurrency_id="gpu")
    if examples:
        run_examples(examples, (on_show, show_inputs, show_outputs), (on_edit, edit_inputs, edit_outputs))
    strength.release(on_edit, edit_inputs, edit_outputs, api_name=False, concurrency_id="gpu")
    preset.change(on_preset, [factor_set, preset], [parts, appearance, strength], api_name="panda_preset")
    parts_gallery.select(on_select_part, parts, parts, api_name=False)
    dice.click(lambda: str(random.randint(0, MAX_SEED)), None, seed, queue=False, api_name=False)
    compute.click(on_compute, [c_model, c_layer, c_rank, c_samples, c_iters], [factor_set, c_status],
                  api_name="panda_compute", concurrency_id="gpu")
