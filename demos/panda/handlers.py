"""PandA's handlers for factor sets and seeds (plain functions of the app context and the
widgets' values): `show_parts`, `edit_seeds`, `apply_preset`, `add_edit`, `select_part`,
`compute_factors`, with what they need before the GPU (`factor_needs`, `compute_needs`) and
the edit terms read from the widgets (`edit_terms`). A person's photo: `handlers_photo`.
"""
from __future__ import annotations

from typing import NamedTuple

import gradio as gr
import numpy as np
import torch

from core.context import AppContext
from core.errors import UserError
from core.gpu import gpu_task, user_errors
from core.images import grid, heatmap, to_uint8
from core.models.stylegan2 import StyleGAN2Generator, panda_layer
from core.recipe import Run
from core.ui import parse_seeds, record
from demos.panda import factors
from demos.panda.engine import (REFINE_LR, REFINE_STEPS, SALIENCY_SAMPLES, TAB, EditTerm, FactorSet,
                                channel_mean, edit, edit_delta, masked_pictures, part_mask, part_overlays,
                                presets_for, refine_parts, saliency, saliency_picture, seed_w_plus, set_label)
from demos.panda.solver import fit
from demos.panda.sources import computed_dir, library, shown_folder

SAMPLE_GPU_SECONDS = 0.05  # estimated GPU time per sample (features and fit) for ZeroGPU's duration
FEATURE_BUDGET = 4 * 2 ** 30  # bytes of layer features the full-gradient solver may hold
SOLVERS = {"full gradient (fast, default)": "full", "the authors' stochastic loop": "stochastic"}


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
                    iters=None, solver: str = "full", steps: float = factors.AUTHORS_STEPS, *_, **__) -> float:
    """GPU time of computing factors: the samples' features and the fit, or the stochastic
    loop's steps (one generated sample each)."""
    loop = float(steps) if SOLVERS.get(solver, solver) == "stochastic" else 0
    return 30 + (float(n_samples) + loop) * SAMPLE_GPU_SECONDS


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
    threshold = float(fs.A[:, j] @ channel_mean(ctx, G, fs.layer, psi))
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
                    n_samples: float, iters: float, solver: str = "full", steps: float = factors.AUTHORS_STEPS,
                    lr: float = factors.AUTHORS_LR, progress=gr.Progress(track_tqdm=True)) -> ComputeOutputs:
    """Factorize a layer of any registered StyleGAN2 with Algorithm 1 and save the pair in the
    authors' format and names -> (factor-set choices with the new set picked, status line).

    "full": `fit` on the authors' n_samples HOSVD samples (all held: their full-gradient
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
        Z = factors.collect_features(G, layer, n, chunk=chunk,
                                     progress=lambda d, t: progress(0.5 * d / t, desc=f"Features {d}/{t}"))
        A, P = fit(Z, C, rank_s, max_iters=int(iters),
                   progress=lambda d, t: progress(0.5 + 0.5 * d / t, desc=f"Their update, then L-BFGS-B on the parts: iteration {d}"))
        del Z
    else:
        stats = factors.collect_stats(G, layer, factors.hosvd_draws(n), chunk=chunk, with_gram=False,
                                      progress=lambda d, t: progress(0.2 * d / t, desc=f"HOSVD {d}/{t}"))
        A0, P0 = factors.appearances_from_scatter(stats.scatter, C), factors.init_parts(s * s, rank_s)
        steps = int(steps)
        batches = factors.stream_features(G, layer, factors.sample_draws(range(steps)), chunk=chunk)
        A, P = factors.algorithm1(batches, A0.to(G.device), P0.to(G.device), float(lr), steps=steps,
                                  progress=lambda d, t: progress(0.2 + 0.8 * d / t, desc=f"Algorithm 1, step {d}/{t}"))
        if not (torch.isfinite(A).all() and torch.isfinite(P).all()):
            raise UserError(f"The loop diverged at lr {lr:g}: try a smaller learning rate.")
    lib = library(ctx)
    uc, us = factors.save_factors(computed_dir() / model_id, lib.authors_name(model_id), layer, A, P)
    new = set_label(model_id, layer, A.shape[1], P.shape[1], "computed")
    lib.forget(new)
    return ComputeOutputs(gr.update(choices=lib.labels(), value=new),
                          f"Saved `{uc.name}` and `{us.name}` in `{shown_folder(uc.parent)}`.")


