"""SAM's engine: a photo inverted into W+ plus masked feature layers, then edited; models and
tensors only, no Gradio (bench, scripts and the engine tests import it without a UI).

The optimisation itself is core/inversion.py; this module prepares its inputs (the session's
photo in the generator's loss frame, segments, error maps, the layer map and painted
overrides), renders previews and edits on the inverted codes, and packs the results.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.context import AppContext
from core.directions import Direction, direction_cache, file_direction
from core.errors import UserError
from core.faces import FramedPhoto
from core.framing import FACE_FRAMINGS
from core.hub import WeightEntry, fetch
from core.images import masks_by_colour, pil_to_tensor, to_uint8
from core.inversion import (LOSS_SIZE, SPACE_COLOURS, SPACES, Codes, Frame, Inversion, assign_spaces,
                            estimate_errors, for_loss, inverted_features, optimisation_dtype, psnr)
from core.lpips import get_lpips
from core.models.stylegan2 import StyleGAN2Generator
from core.photo_code import PhotoCode, start_w
from core.segments import fuse_face_parts, merge_ade20k, semantic_segments, superpixels

TAB = "sam"              # the gr.Tab id, `used_by` in weights.json, the runs' "tab"
MIN_SIZE = 256           # F10 is the 128 px layer; a residual there needs layers after it
DIRECTION_COUNT = 8      # GANSpace / SeFa components offered
PALETTE = ["#%02x%02x%02x" % SPACE_COLOURS[s] for s in SPACES]


@dataclass
class Session:
    """What one browser session keeps between steps (CPU tensors, never models)."""
    model_id: str
    target: torch.Tensor                       # [1, 3, h, w] in the loss frame
    frame: Frame
    segments: torch.Tensor | None = None       # [h, w]
    errors: dict[str, torch.Tensor] = field(default_factory=dict)
    layer_map: torch.Tensor | None = None      # [LOSS_SIZE, LOSS_SIZE] indices into SPACES
    codes: Codes | None = None
    baseline: Codes | None = None
    features: dict[int, torch.Tensor] | None = None
    framed: FramedPhoto | None = None          # the photo, its frame (paste-back); None: tensors only
    from_sample: bool = False                  # the photo is the tab's GAN sample (no alignment)
    segmenter: str = "superpixels"             # what made `segments` (make_segments)


def result_in_photo(s: Session, full: torch.Tensor) -> np.ndarray | None:
    """A full-size rendering [1, 3, S, S] put back into the person's photo at its resolution
    (the GAN sample: the rendering's picture area, as the sample was cut)."""
    if s.framed is None:
        return None
    picture = to_uint8(full[:1])[0]
    if s.from_sample:
        l, t, r, b = s.framed.aligned.content
        return picture[t:b, l:r]
    return np.asarray(s.framed.paste(picture))


def pad_to_frame(layer_map: torch.Tensor, frame: Frame) -> torch.Tensor:
    """A layer map over the picture area -> the whole LOSS_SIZE square (bars: W+, no residual)."""
    return F.pad(layer_map, (0, 0, frame.top, LOSS_SIZE - frame.bottom), value=SPACES.index("W+"))


def layer_map_picture(layer_map: torch.Tensor, target: torch.Tensor | None = None) -> np.ndarray:
    """Colours of the spaces (the authors' palette), over the photo when given."""
    colours = torch.tensor([SPACE_COLOURS[s] for s in SPACES], dtype=torch.float32)
    rgb = colours[layer_map.cpu()]
    if target is not None:
        photo = (target[0].permute(1, 2, 0).cpu() + 1) * 127.5
        rgb = 0.55 * rgb + 0.45 * photo
    return rgb.round().clamp(0, 255).to(torch.uint8).numpy()


def painted_layer_map(layer_map: torch.Tensor, editor: dict | None) -> torch.Tensor:
    """The predicted map with the user's strokes on top (each brush colour is a space)."""
    if not editor or not editor.get("layers"):
        return layer_map
    h, w = layer_map.shape
    strokes = masks_by_colour(editor, PALETTE, (w, h))[:, 0].bool()
    out = layer_map.clone()
    for i in range(len(SPACES)):
        out[strokes[i]] = i
    return out


def segment_picture(s: Session) -> np.ndarray:
    """The superpixels in random colours over the photo."""
    rng = np.random.default_rng(0)
    colours = rng.integers(40, 230, size=(int(s.segments.max()) + 1, 3))
    photo = (s.target[0].permute(1, 2, 0).cpu().numpy() + 1) * 127.5
    return (0.5 * colours[s.segments.numpy()] + 0.5 * photo).round().astype(np.uint8)


def show_map(s: Session, tau: float) -> tuple[dict, dict[str, float]]:
    """Assign spaces at threshold `tau` (kept in the session) -> (editor value, share per space)."""
    s.layer_map = pad_to_frame(assign_spaces(s.segments, s.errors, float(tau)), s.frame)
    crop = s.layer_map[s.frame.top:s.frame.bottom]
    picture = layer_map_picture(crop, s.target)
    counts = {name: float((crop == i).float().mean()) for i, name in enumerate(SPACES)}
    return {"background": picture, "layers": [], "composite": picture}, counts


def shares(counts: dict[str, float]) -> str:
    return ", ".join(f"{n} {100 * c:.0f}%" for n, c in counts.items())


# ---- segments: the authors' segmenters, superpixels elsewhere -----------------------------
def default_segmenter(ctx: AppContext, mid: str | None) -> str:
    """The authors' segmenter for their domains: the face parser for face models, the ADE20K
    parser for their other models (those with their invertibility predictor: cars, cats);
    superpixels for every other model."""
    if not mid:
        return "superpixels"
    if ctx.registry.framing_of(ctx.registry.get(mid)) in FACE_FRAMINGS:
        return "face parser"
    return "ADE20K" if companion(ctx, mid, "predictor") else "superpixels"


SEGMENTER_ROLES = {"face parser": ("face-parser",), "ADE20K": ("scene-encoder", "scene-decoder")}


def segmenter_ids(ctx: AppContext, kind: str) -> list[str] | None:
    """The registry ids a segmenter needs (face parser: one file; ADE20K: encoder, decoder),
    by their registry roles, or None when one is not registered."""
    found = [next(iter(ctx.registry.with_role(role)), None) for role in SEGMENTER_ROLES[kind]]
    return None if None in found else [e.id for e in found]


def make_segments(ctx: AppContext, s: Session, kind: str, count: int) -> str:
    """Fill `s.segments` [h, w] (the loss frame's picture area) with `kind`'s segments
    ("auto": `default_segmenter`) -> how they were made (for the status line). The authors'
    segmenters see the framed picture at the generator's resolution, as theirs see the
    photo, and give one segment per (merged) class."""
    kind = default_segmenter(ctx, s.model_id) if kind in (None, "", "auto") else kind
    ids = segmenter_ids(ctx, kind) if kind != "superpixels" else None
    if kind != "superpixels" and ids is None:
        note = f"{kind} not registered"
        kind = "superpixels"
    else:
        note = ""
    s.segmenter = kind
    if kind == "superpixels":
        s.segments = superpixels(s.target, count)
        return f"{int(s.segments.max()) + 1} superpixels" + (f" ({note})" if note else "")
    picture = pil_to_tensor(s.framed.aligned.image.crop(s.framed.aligned.content))
    size = tuple(s.target.shape[-2:])
    if kind == "face parser":
        parser = ctx.model(ids[0], torch.float32)
        classes = fuse_face_parts(parser.labels(picture.to(ctx.device)))
    else:
        # a model family's code loads when first used, not when the app is built
        # (tests/test_architecture.py: no heavy library at start)
        from core.models.ade20k import ade20k_probabilities

        encoder, decoder = (ctx.model(i, torch.float32) for i in ids)
        classes = merge_ade20k(ade20k_probabilities(encoder, decoder, picture.to(ctx.device), size)[0].argmax(0).cpu())
    s.segments = semantic_segments(classes, size)
    return f"{int(s.segments.max()) + 1} segments from the {kind} (`{'`, `'.join(ids)}`)"


# ---- companions: predictor, encoder, directions -------------------------------------------
def companion(ctx: AppContext, mid: str | None, role: str) -> WeightEntry | None:
    """The registry entry in `role` ("predictor", "encoder") made for generator `mid`, if any."""
    return ctx.registry.companion(mid, role)


def describe_helpers(ctx: AppContext, mid: str | None) -> str:
    if not mid:
        return ""
    pred, enc = companion(ctx, mid, "predictor"), companion(ctx, mid, "encoder")
    kind = default_segmenter(ctx, mid)
    if kind == "superpixels":
        segments = "superpixels"
    else:
        segments = f"the authors' {kind}" if segmenter_ids(ctx, kind) else f"superpixels ({kind} not registered)"
    return (f"Invertibility: {'authors predictor `' + pred.id + '`' if pred else 'no predictor for this model: measured by short single-space runs'}"
            f" · start: {'e4e encoder `' + enc.id + '`' if enc else 'the mean w (no e4e encoder registered)'}"
            f" · segments (auto): {segments}")


def authors_label(entry: WeightEntry) -> str:
    """How a registered direction file appears in the Edit direction list."""
    return f"{entry.meta.name or entry.id} (authors)"


def direction_choices(ctx: AppContext, mid: str | None) -> list[str]:
    """The authors' direction files for this generator, then GANSpace and SeFa components."""
    if not mid:
        return []
    files = [authors_label(e) for e in ctx.registry.with_role("direction", mid)]
    return files + [f"GANSpace {i + 1}" for i in range(DIRECTION_COUNT)] + \
        [f"SeFa {i + 1}" for i in range(DIRECTION_COUNT)]


def direction_source(label: str | None) -> str:
    """"ganspace", "sefa" or "file" for a label of `direction_choices`."""
    if label and label.startswith("GANSpace "):
        return "ganspace"
    return "sefa" if label and label.startswith("SeFa ") else "file"


def pick_direction(ctx: AppContext, mid: str, G: StyleGAN2Generator, label: str,
                   layers: str | None = "all") -> Direction:
    """A label of `direction_choices` -> the direction (GANSpace/SeFa bases computed once per
    model; their components put on `layers`, SeFa's factorised from those layers' styles).
    The authors' files keep their own layers."""
    if not label:
        raise UserError("Pick an edit direction.")
    if direction_source(label) != "file":
        kind, number = label.rsplit(" ", 1)
        cache = direction_cache(ctx)
        find = cache.ganspace if kind == "GANSpace" else cache.sefa
        return find(mid, G, count=DIRECTION_COUNT, layers=layers)[int(number) - 1]
    for e in ctx.registry.with_role("direction", mid):
        if authors_label(e) == label:
            return file_direction(fetch(e), G.n_latent, e.meta.name, style_dim=G.style_dim)
    raise UserError(f"Unknown edit direction {label!r} for {mid}.")


# ---- models --------------------------------------------------------------------------------
def generator(ctx: AppContext, mid: str | None) -> StyleGAN2Generator:
    """The float32 generator (optimisation needs it), refused below SAM's minimum size."""
    if not mid:
        raise UserError("Pick a model first.")
    G = ctx.model(mid, torch.float32)
    if G.size < MIN_SIZE:
        raise UserError(f"{mid} draws {G.size} px pictures; SAM's last feature layer is at "
                        f"128 px and needs layers after it, so SAM needs a generator of at "
                        f"least {MIN_SIZE} px.")
    return G


def error_maps(ctx: AppContext, mid: str, G: StyleGAN2Generator, s: Session, est: int,
               progress) -> str:
    """Fill `s.errors` from the authors' predictor, else from short single-space runs;
    -> how they were made (for the status line)."""
    pred = companion(ctx, mid, "predictor")
    if pred is not None:
        progress(0.3, desc="Invertibility predictor")
        P = ctx.model(pred.id, torch.float32)
        with torch.no_grad():
            maps = P(s.target.to(G.device))
        s.errors = {name: maps[name][0, 0].float().cpu() for name in SPACES}
        return f"predicted by `{pred.id}`"
    progress(0.2, desc=f"No predictor: {len(SPACES)} single-space runs of {est} steps")
    s.errors = estimate_errors(G, s.target, start_w(ctx, mid, G, s.target),
                               get_lpips("vgg", G.device), est, s.frame, optimisation_dtype(G.device))
    if not all(torch.isfinite(m).all() for m in s.errors.values()):
        raise UserError("The single-space runs diverged (their errors are not finite): this "
                        "model's weights or the photo give NaNs. Paint the layer map by hand.")
    return f"measured by five single-space inversions of {est} steps (no predictor registered)"


def preview(run: Inversion, s: Session, with_baseline: bool
            ) -> tuple[np.ndarray, np.ndarray | None, str, np.ndarray | None]:
    """The reconstructions as the losses see them (one batched render), their scores, and
    the SAM reconstruction as its codes render alone in float32 (what a saved run's codes
    render again, bit for bit), also put back into the photo."""
    with torch.no_grad():
        rec = for_loss(run.render(), s.frame)
        target = s.target.to(rec.device).expand_as(rec)
        p = psnr(rec, target).tolist()
        lp = get_lpips("vgg", rec.device)(rec, target).flatten().tolist()
    line = f"**SAM**: PSNR {p[0]:.2f} dB, LPIPS {lp[0]:.3f}"
    if with_baseline:
        line += f" · **W+ only**: PSNR {p[1]:.2f} dB, LPIPS {lp[1]:.3f}"
    line += f" (at the loss frame, {rec.shape[-1]}x{rec.shape[-2]}; step {run.step_index}/{run.total})"
    sam_picture, in_photo = shown_reconstruction(run.G, s)
    return sam_picture, (to_uint8(rec)[1] if with_baseline else None), line, in_photo


def shown_reconstruction(G: StyleGAN2Generator, s: Session) -> tuple[np.ndarray, np.ndarray | None]:
    """The session's codes rendered alone (batch 1, float32) -> (as the losses see it, in the
    photo): every path that shows an inversion's result uses this one rendering."""
    full = session_code(s).render(G)
    return to_uint8(for_loss(full, s.frame))[0], result_in_photo(s, full)


def session_code(s: Session) -> PhotoCode:
    """The session's inversion (it has codes) as the app's photo code (core.photo_code): what
    the SAM reconstruction renders from, and what PandA and Generate edit and show."""
    c = s.codes
    return PhotoCode(s.model_id, c.w_plus, dict(c.deltas), dict(c.masks), "SAM",
                     None if s.from_sample else s.framed)


def codes_for_edit(s: Session | None, G: StyleGAN2Generator) -> Codes:
    """The inverted codes, with their features computed once for all later edits."""
    if s is None or s.codes is None:
        raise UserError("Invert a photo first (step 2).")
    if s.features is None:
        _, s.features = inverted_features(G, s.codes)
    return s.codes


# ---- results -------------------------------------------------------------------------------
def save_arrays(s: Session) -> dict[str, np.ndarray]:
    """The inverted codes under the authors' names (W+, F4..F10), masks, the W+-only code."""
    arrays = s.codes.arrays() if s.codes is not None else {}
    if s.baseline is not None:
        arrays["baseline_W+"] = s.baseline.w_plus.numpy()
    return arrays


def save_codes(s: Session) -> str | None:
    """The inverted codes as an .npz, for the download box."""
    if s.codes is None:
        return None
    arrays = save_arrays(s)
    path = Path(tempfile.mkdtemp(prefix="sam-")) / f"sam-codes-{s.model_id}-step{s.codes.steps}.npz"
    np.savez(path, **arrays)
    return str(path)


def photo_images(s: Session) -> dict:
    """The photo-side pictures of a run: the upload (upright, full resolution) and the
    network's input (the photo in the model's frame)."""
    if s.framed is None:
        return {}
    return {"photo": s.framed.photo, "network_input": s.framed.aligned.image}


def framing_settings(s: Session) -> dict:
    if s.framed is None:
        return {}
    return {**s.framed.describe(), **({"framing": "gan sample"} if s.from_sample else {})}


def precision_name(autocast: torch.dtype | None) -> str:
    """How an inversion's generator pass ran, as its run's settings record it."""
    return "float32" if autocast is None else f"{str(autocast).replace('torch.', '')} autocast"
