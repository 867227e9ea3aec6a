"""The Collage tab's handlers: module-level functions of the app context and the widgets'
values (tests call them directly), one per button, with what each needs and how long it may
take on a GPU. Compose (with the optional Enc+LBFGS and a person's fine-tuned regressor, a
`TunedRegressor` in their session), Inpaint, Variation map, Compose vs blend, samples and
a person's photo."""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import gradio as gr
import numpy as np
import torch
import torch.nn.functional as F

from core.context import AppContext
from core.device import placement
from core.errors import UserError
from core.faces import FramedPhoto
from core.gpu import gpu_task, user_errors
from core.images import editor_is_empty, heatmap, mask_picture, to_uint8
from core.lpips import lpips_distance
from core.photo_slot import faces_gallery
from core.recipe import Run
from core.ui import quietly, record, shift_range
from demos.collage.domain import (content_of, frame_for_domain, in_photo_images, load_pair,
                                  pair_ids, pair_ids_float32, photo_in_use, photo_settings,
                                  roles, shift_span)
from demos.collage.engine import (HINT_COVERAGE, TRAIN_COVERAGE, centre_square, complete_with_latents,
                                  compose, editor_part, framed, masked_l1, painted_value,
                                  random_hints, regenerate, sample_images, three_ways,
                                  unknown_as_grey)
from demos.collage.finetune import FINETUNE_BETAS, FINETUNE_LR, TunedRegressor, finetune
from demos.collage.independence import (PART_CHOICES, face_parts, independence,
                                        segmentation_sentence, table1_line)
from demos.collage.refine import LAMBDA_ENCODER, LAMBDA_LPIPS, LBFGS_GPU_SECONDS, refine

TAB = "collage"
MAX_PARTS = 3


def compose_needs(ctx: AppContext, model_id: str | None, base_value, refine_on: bool, *_, **__) -> list:
    """The pair, and in float32 when Enc+LBFGS refines."""
    return pair_ids_float32(ctx, model_id) if refine_on else pair_ids(ctx, model_id)


def refine_seconds(ctx: AppContext, model_id: str | None, base_value, refine_on: bool,
                   steps: float, *_, **__) -> float:
    """GPU time for a compose: Enc+LBFGS iterations cost one to a few passes of E, G and LPIPS."""
    size = shift_span(ctx, model_id)
    return 30 + (float(steps) * LBFGS_GPU_SECONDS * (size / 256) ** 2 if refine_on else 0)


@gpu_task(duration=60, needs=pair_ids)
def sample_picture(ctx: AppContext, model_id: str | None, seed: float | None,
                   progress=gr.Progress(track_tqdm=True)) -> np.ndarray:
    """A sample of the domain's generator, as the regressor was trained on (every editor's
    "Sample from seed")."""
    _, G = load_pair(ctx, model_id)
    return to_uint8(sample_images(G, [int(seed or 0)]))[0]


class PhotoOutputs(NamedTuple):
    """To the editor, "Network input", the faces gallery and the kept-photo state."""
    editor: dict
    network_input: dict
    faces: list
    framed_photo: FramedPhoto


@user_errors
def use_photo(ctx: AppContext, model_id: str | None, photo: str | None, face: float | None = 1,
              plain: bool = False) -> PhotoOutputs:
    """Your photo into an editor: framed for the domain -> (editor value holding the network
    input, the network input labelled with what it is, the faces found, the FramedPhoto kept
    for pasting results back). Uses no model (face detection runs on the CPU)."""
    framed_photo = frame_for_domain(ctx, model_id, photo, face, plain)
    picture = np.asarray(framed_photo.aligned.image.convert("RGB"))
    return PhotoOutputs(painted_value(picture, None),
                        gr.update(value=picture, label=framed_photo.note()),
                        faces_gallery(framed_photo), framed_photo)


def shift_ranges(ctx: AppContext, model_id: str | None) -> list:
    """A new domain: the shift sliders span its frame."""
    return shift_range(shift_span(ctx, model_id), 2 * MAX_PARTS)


def regressor_for(ctx: AppContext, model_id: str, E: torch.nn.Module,
                  tuned: TunedRegressor | None) -> torch.nn.Module:
    """The regressor a person's run uses: their fine-tuned copy when they made one for this
    domain, else the shared E."""
    return tuned.build(E) if tuned is not None and tuned.model_id == model_id else E


class ComposeOutputs(NamedTuple):
    """To Collage, Known pixels, Result, the info line and the Download-all run."""
    collage: np.ndarray
    mask: np.ndarray
    result: np.ndarray
    info: str
    run: Run


def _compose(ctx: AppContext, model_id: str | None, base_value: dict | None, refine_on: bool,
             steps: float, parts_and_shifts: Sequence[Any], progress) -> ComposeOutputs:
    """The Compose run: parts_and_shifts = MAX_PARTS editors, then their dx, then their dy,
    then (optional) the FramedPhoto kept by "Use as base", then (optional) the session's
    TunedRegressor."""
    n = MAX_PARTS
    editors, px, py = parts_and_shifts[:n], parts_and_shifts[n:2 * n], parts_and_shifts[2 * n:3 * n]
    extra = list(parts_and_shifts[3 * n:]) + [None, None]
    photo, tuned = photo_in_use(extra[0], base_value), extra[1]
    E, G = load_pair(ctx, model_id)
    size, box = G.size, content_of(ctx, model_id)
    chosen = [editor_part(base_value, size, box, whole_if_empty=True)]
    for i, (ed, dx, dy) in enumerate(zip(editors, px, py)):
        part = editor_part(ed, size, box, (dx, dy))
        if not editor_is_empty(ed) and part is None:
            gr.Warning(f"Part {i + 1} has no painted region: it is left out.")
        chosen.append(part)
    collage, union = compose([p for p in chosen if p is not None])
    use_tuned = tuned is not None and tuned.model_id == model_id
    losses: list[float] = []
    if refine_on:
        E32, G32 = load_pair(ctx, model_id, torch.float32)
        E32 = regressor_for(ctx, model_id, E32, tuned)
        device, _ = placement(E32)
        done = refine(E32, G32, collage.to(device), union.to(device), int(steps),
                      progress=lambda d, t: progress(d / t, desc=f"Enc+LBFGS {d}/{t}"))
        result, raw, latent, losses = done.image, done.raw, done.latent, done.losses
        note = (f" · Enc+LBFGS: {done.iterations} of {int(steps)} iterations "
                f"({done.evaluations} evaluations), loss {losses[0]:.3f} → {losses[-1]:.3f}")
    else:
        raw, latent = regenerate(regressor_for(ctx, model_id, E, tuned), G, collage, union, clamp=False)
        result, note = raw.clamp(-1, 1), ""
    if use_tuned:
        note += f" · regressor fine-tuned on your picture ({tuned.steps} steps)"
    l1 = masked_l1(raw, collage, union)
    info = (f"Masked L1 on the known pixels: **{l1:.3f}** "
            f"· known: {float(union.mean()) * 100:.0f} % of the picture{note}")
    shown, result_u8 = unknown_as_grey(collage, union), to_uint8(result)[0]
    names = ["base"] + [f"part_{i}" for i in range(1, n + 1)]
    used = [(name, p) for name, p in zip(names, chosen) if p is not None]
    run = record(
        ctx, TAB, "compose", roles(ctx, model_id),
        images={"result": result_u8, "collage": shown, **{name: p.image for name, p in used},
                **in_photo_images(photo, result_u8)},
        masks={"known": union, **{name: p.mask for name, p in used}},
        arrays={"latent": latent, **({"refine_losses": losses} if losses else {})},
        settings={"refine": bool(refine_on), "refine_steps": int(steps) if refine_on else 0,
                  "refine_method": "Enc+LBFGS" if refine_on else None,
                  "refine_weights": {"l1": 1 - LAMBDA_LPIPS, "lpips": LAMBDA_LPIPS,
                                     "encoder": LAMBDA_ENCODER} if refine_on else None,
                  "finetuned_regressor": {"steps": tuned.steps, "lr": FINETUNE_LR}
                  if use_tuned else None,
                  "shifts_px": {name: list(p.shift) for name, p in used if name != "base"},
                  "masked_l1": l1, "frame": size, "content": list(box) if box else None,
                  "photo": photo_settings(photo)},
        notes="Pictures are the inputs as the network saw them (framed to the generator's "
              "size); masks: white = taken from that picture (before its shift). masked_l1 is "
              "on G's unclamped output."
              + (" result_in_photo: the result pasted back into photo (the base's source) "
                 "where its frame lies, feathered at the edge." if photo else ""))
    return ComposeOutputs(shown, mask_picture(union), result_u8, info, run)


@gpu_task(duration=refine_seconds, needs=compose_needs)
def compose_collage(ctx: AppContext, model_id: str | None, base_value: dict | None,
                    refine_on: bool, steps: float, *parts_and_shifts: Any,
                    progress=gr.Progress(track_tqdm=True)) -> ComposeOutputs:
    """Compose: the base (painted: what to keep; nothing painted: all of it) and up to
    MAX_PARTS parts (editors, then dx per part, then dy per part, then optionally the kept
    FramedPhoto and the session's TunedRegressor) -> (collage as E sees it, union mask,
    G(E(collage, mask)), masked-L1 line, run; the run also holds "result_in_photo" when the
    base is still the framed photo)."""
    return _compose(ctx, model_id, base_value, refine_on, steps, parts_and_shifts, progress)


_quiet_compose = quietly(compose_collage, len(ComposeOutputs._fields))


def live_compose(ctx: AppContext, live_on: bool, model_id: str | None, base_value: dict | None,
                 refine_on: bool, steps: float, *rest: Any) -> ComposeOutputs:
    """Every stroke or shift re-runs one regressor + generator pass (never the slow
    refinement); silent until there is something to compose."""
    editors = (base_value,) + tuple(rest[:MAX_PARTS])
    if not live_on or refine_on or all(editor_is_empty(ed) for ed in editors):
        return ComposeOutputs(*[gr.update()] * len(ComposeOutputs._fields))
    return ComposeOutputs._make(_quiet_compose(ctx, model_id, base_value, False, steps, *rest))


class ComposeExampleOutputs(NamedTuple):
    """To the base editor, part 1's editor, then Compose's outputs (ComposeOutputs)."""
    base: dict
    part: dict
    collage: np.ndarray
    mask: np.ndarray
    result: np.ndarray
    info: str
    run: Run


@gpu_task(duration=60, needs=pair_ids)
def compose_example(ctx: AppContext, model_id: str | None, seed_base: float | None,
                    seed_part: float | None, dx: float, dy: float,
                    progress=gr.Progress(track_tqdm=True)) -> ComposeExampleOutputs:
    """The examples: sample two pictures, paint the centre of the second, compose ->
    (base editor, part 1 editor, then compose_collage's outputs)."""
    _, G = load_pair(ctx, model_id)
    pictures = to_uint8(sample_images(G, [int(seed_base or 0), int(seed_part or 0)]))
    base_value = painted_value(pictures[0], None)
    part_value = painted_value(pictures[1], centre_square(pictures.shape[1]))
    rest = (part_value, None, None, dx, 0, 0, dy, 0, 0)
    return ComposeExampleOutputs(base_value, part_value,
                                 *_compose(ctx, model_id, base_value, False, 30, rest, progress))


class FinetuneOutputs(NamedTuple):
    """To Before, After, the info line, the TunedRegressor state and the Download-all run."""
    before: np.ndarray
    after: np.ndarray
    info: str
    tuned: TunedRegressor
    run: Run


@gpu_task(duration=120, needs=pair_ids_float32)
def finetune_regressor(ctx: AppContext, model_id: str | None, base_value: dict | None,
                       steps: float, progress=gr.Progress(track_tqdm=True)
                       ) -> FinetuneOutputs:
    """Fine-tune a copy of the domain's regressor on the base picture (all of it, paint
    ignored) -> (reconstruction before, after, summary line, the session's TunedRegressor,
    run). Compose then uses the copy for this domain; the shared model is untouched."""
    E32, G32 = load_pair(ctx, model_id, torch.float32)
    if editor_is_empty(base_value):
        raise UserError("Put the picture to fine-tune on in the base first (your photo, "
                        "or a sample).")
    image, _ = framed(base_value, G32.size, content_of(ctx, model_id), required=False)
    device, _ = placement(E32)
    image, full = image.to(device), torch.ones_like(image[:, :1]).to(device)
    tuned, losses = finetune(E32, G32, image, int(steps),
                             progress=lambda d, t: progress(d / t, desc=f"Fine-tuning {d}/{t}"))
    before, _ = regenerate(E32, G32, image, full, clamp=False)
    after, _ = regenerate(tuned, G32, image, full, clamp=False)
    err = [float(lpips_distance(x.clamp(-1, 1), image, "vgg").mean()) for x in (before, after)]
    mse = [float(F.mse_loss(x, image)) for x in (before, after)]
    kept = TunedRegressor(model_id, {k: v.detach().cpu() for k, v in tuned.state_dict().items()},
                          int(steps), losses)
    info = (f"Fine-tuned a copy of the regressor in {int(steps)} Adam steps (lr {FINETUNE_LR:g}): "
            f"reconstruction MSE {mse[0]:.4f} → {mse[1]:.4f}, LPIPS {err[0]:.3f} → {err[1]:.3f}. "
            "Compose now uses it for this domain (only in your session). The authors' identity "
            "term for faces is left out: no face-identity network is registered here.")
    pictures = to_uint8(torch.cat([before, after]))
    run = record(ctx, TAB, "finetune", roles(ctx, model_id),
                 images={"before": pictures[0], "after": pictures[1], "picture": image},
                 arrays={"finetune_losses": losses},
                 settings={"steps": int(steps), "lr": FINETUNE_LR, "betas": list(FINETUNE_BETAS),
                           "loss": "MSE + LPIPS-VGG at 256 px (no identity term)",
                           "mse": mse, "lpips": err},
                 notes="before/after: G(E(picture)) with the shared and the fine-tuned regressor.")
    return FinetuneOutputs(pictures[0], pictures[1], info, kept, run)


class ForgetOutputs(NamedTuple):
    """To the TunedRegressor state and the fine-tuning info line."""
    tuned: None
    info: str


def forget_finetuning() -> ForgetOutputs:
    """Back to the shared regressor."""
    return ForgetOutputs(None, "Compose uses the shared regressor.")


class CompareOutputs(NamedTuple):
    """To the Inputs gallery, the results gallery and the Download-all run."""
    inputs: list
    results: list
    run: Run


@gpu_task(duration=60, needs=pair_ids)
def compare_blends(ctx: AppContext, model_id: str | None, base_value: dict | None,
                   part_value: dict | None, alpha: float, progress=gr.Progress(track_tqdm=True)
                   ) -> CompareOutputs:
    """The teaching view: the base x1 and the painted part of x2 composed three ways
    (pixel blending, latent blending, regression) -> (inputs gallery, results gallery, run)."""
    E, G = load_pair(ctx, model_id)
    box = content_of(ctx, model_id)
    if editor_is_empty(base_value):
        raise UserError("Put a picture in x1 (the base) first.")
    base, _ = framed(base_value, G.size, box, required=False)
    donor, part = framed(part_value, G.size, box)
    alpha = float(alpha)
    out = three_ways(E, G, base, donor, part, alpha)
    pictures = {k: to_uint8(v)[0] for k, v in out.items()}
    inputs = [(pictures["blend"], f"pixel blend: {alpha:g} x1 + {1 - alpha:g} x2"),
              (pictures["collage"], "collage: m x2 + (1 - m) x1")]
    results = [(pictures["pixel"], "pixel blending G(E(a x1 + (1-a) x2))"),
               (pictures["latent"], "latent blending G(a E(x1) + (1-a) E(x2))"),
               (pictures["regression"], "regression (ours) G(E(m x2 + (1-m) x1))")]
    run = record(ctx, TAB, "compare_blends", roles(ctx, model_id), images=pictures,
                 masks={"part": part}, settings={"alpha": alpha},
                 notes="x1: the base, x2: the part's picture; every encoding uses the full mask "
                       "(the paper's Sec. 4.3, Eqs. 6-8).")
    return CompareOutputs(inputs, results, run)


class InpaintOutputs(NamedTuple):
    """To "What E sees", the Completions gallery and the Download-all run."""
    masked: np.ndarray
    gallery: list
    run: Run


def _inpaint(ctx: AppContext, model_id: str | None, value: dict | None, n: float,
             seed: float | None, random_mask: bool, framed_photo: FramedPhoto | None = None
             ) -> InpaintOutputs:
    E, G = load_pair(ctx, model_id)
    photo = photo_in_use(framed_photo, value)
    size = G.size
    image, erased = framed(value, size, content_of(ctx, model_id), required=not random_mask)
    if random_mask:
        known = random_hints(size, int(seed or 0))
    else:
        known = 1 - erased
        if known.sum() == 0:
            raise UserError("Everything is erased: leave some of the picture unpainted.")
    images, masks, latents = complete_with_latents(E, G, image, known, int(n), int(seed or 0))
    completions = to_uint8(images)
    gallery = [(img, "known pixels only" if k == 0 else f"with hints {k}")
               for k, img in enumerate(completions)]
    shown = unknown_as_grey(image, known)
    hole = (1 - known)[0, 0].cpu().numpy()  # the pixels E imagined: completion 1 goes back there
    run = record(
        ctx, TAB, "random_hints" if random_mask else "inpaint", roles(ctx, model_id),
        images={"completion": list(completions), "input": shown, "picture": image,
                **in_photo_images(photo, completions[0], hole)},
        masks={"known": known, "hints": [m for m in masks[1:]]},
        arrays={"latents": latents}, seeds=[int(seed or 0)],
        settings={"completions": int(n), "random_hints": random_mask,
                  "hint_coverage": list(HINT_COVERAGE), "training_coverage": list(TRAIN_COVERAGE),
                  "photo": photo_settings(photo)},
        notes="completion_01 uses the known pixels only; completion k > 1 adds hint blobs of "
              "generated picture seed + k - 1 (masks/hints_*: known pixels + hints)."
              + (" result_in_photo: completion_01 pasted back into photo, only where pixels "
                 "were unknown (feathered)." if photo else ""))
    return InpaintOutputs(shown, gallery, run)


@gpu_task(duration=60, needs=pair_ids)
def inpaint(ctx: AppContext, model_id: str | None, value: dict | None, n: float,
            seed: float | None, framed_photo: FramedPhoto | None = None,
            progress=gr.Progress(track_tqdm=True)) -> InpaintOutputs:
    """Inpaint the painted region -> (what E sees, gallery of n completions, run; with the
    kept photo still in the editor, the run also holds completion 1 pasted back into it)."""
    return _inpaint(ctx, model_id, value, n, seed, False, framed_photo)


@gpu_task(duration=60, needs=pair_ids)
def inpaint_random_hints(ctx: AppContext, model_id: str | None, value: dict | None, n: float,
                         seed: float | None, framed_photo: FramedPhoto | None = None,
                         progress=gr.Progress(track_tqdm=True)) -> InpaintOutputs:
    """Complete the picture from one of the authors' training masks (drawn from the seed)
    instead of the paint: what E was trained to do."""
    return _inpaint(ctx, model_id, value, n, seed, True, framed_photo)


class VariationOutputs(NamedTuple):
    """To the σ map, the s_c info line and the Download-all run."""
    sigma_map: np.ndarray
    info: str
    run: Run


@gpu_task(duration=120, needs=pair_ids)
def compute_variation_map(ctx: AppContext, model_id: str | None, value: dict | None, n: float,
                          seed: float | None, repeats: float = 1, choice: str = PART_CHOICES[0],
                          progress=gr.Progress(track_tqdm=True)) -> VariationOutputs:
    """The paper's independence measure on one part (painted, or a face part from landmarks
    of each repeat's face), repeated -> (mean σ heat map, s_c line with Table 1's row for this
    model, run)."""
    E, G = load_pair(ctx, model_id)
    choice = choice if choice in PART_CHOICES else PART_CHOICES[0]
    painted = choice == PART_CHOICES[0]
    if not painted and editor_is_empty(value):
        raise UserError("Put a face in the picture first (a sample or your photo).")
    base_image, part = framed(value, G.size, content_of(ctx, model_id), required=painted)
    part_of = None if painted else (lambda x: face_parts(to_uint8(x)[0])[choice])
    if part_of is not None:
        part = part_of(base_image)
    n, repeats, seed = int(n), max(1, int(repeats or 1)), int(seed or 0)
    sigma, scores = independence(E, G, base_image, part, n, repeats, seed,
                                 lambda d, t: progress(d / t, desc=f"Repeat {d}/{t} ({n} samples)"),
                                 part_of)
    mean = float(np.mean(scores))
    spread = f" ± {float(np.std(scores)):.3f} over {repeats} repeats" if repeats > 1 else " (1 repeat)"
    inside = float((sigma * part[0, 0]).sum() / part.sum())
    outside = float((sigma * (1 - part[0, 0])).sum() / (1 - part).sum().clamp(min=1))
    info = (f"s_c, the share of the change outside the painted part: **{mean:.3f}**{spread} "
            f"(N = {n}; 0: perfectly independent parts) · mean σ inside {inside:.3f}, outside "
            f"{outside:.3f}. {table1_line(model_id, choice)}")
    picture_map = heatmap(sigma, vmin=0)
    run = record(
        ctx, TAB, "variation_map", roles(ctx, model_id),
        images={"variation_map": picture_map, "picture": base_image},
        masks={"part": part}, arrays={"sigma": sigma, "s_c": scores}, seeds=[seed],
        settings={"samples": n, "repeats": repeats, "s_c": mean, "s_c_per_repeat": scores,
                  "share_outside": mean, "mean_sigma_inside": inside, "mean_sigma_outside": outside,
                  "part": choice, "segmentation": segmentation_sentence(choice)},
        notes=f"Repeat 1 is the picture; repeat r > 1 is generated picture seed + {repeats}*N + r - 1. "
              "Repeat r replaces the part with generated pictures seed + (r-1)*N ... (N of them). "
              "sigma: per-pixel standard deviation, averaged over RGB and repeats.")
    return VariationOutputs(picture_map, info, run)
