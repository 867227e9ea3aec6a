"""SAM tab: invert a hard photo into W+ plus masked feature layers, then edit it.

The engine is core/inversion.py; this module prepares inputs (photo in the generator's
frame, the layer map from the authors' predictor or from short single-space runs, painted
overrides), drives the step-wise optimisation with previews and a Stop button, and renders
edits in one pass on the inverted codes.
"""
from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, NamedTuple, TypeVar

import gradio as gr
import numpy as np
import torch
import torch.nn.functional as F

from core.context import AppContext
from core.directions import DIRECTIONS, Direction, file_direction, strength_range
from core.errors import UserError
from core.faces import FramedPhoto
from core.framing import FACE_FRAMINGS
from core.hub import WeightEntry, fetch
from core.images import heatmap, masks_by_colour, photos_for, pil_to_tensor, to_uint8
from core.jobs import Flag
from core.lpips import get_lpips
from core.models import STYLEGAN2_ARCHS
from core.models.stylegan2 import StyleGAN2Generator
from core.photo_code import (PhotoCode, code_from_bundle, photo_code_state, prepare_target, run_parts,
                             saved_model, start_w)
from core.recipe import Run, open_run
from core.segments import fuse_face_parts, merge_ade20k, semantic_segments, superpixels
from core.gpu import gpu_task, user_errors
from core.photo_slot import faces_gallery, frame_input, network_input, photo_slot, slot_line
from core.ui import TabWiring, licence_line, parse_seeds, quietly, record, tab_header
from core.inversion import (LOSS_SIZE, SPACE_COLOURS, SPACES, STEPS, TAU, Codes, Frame,
                                 Inversion, assign_spaces, edit, estimate_errors, feature_masks,
                                 for_loss, inverted_features, optimisation_dtype, psnr, stack_masks)

TAB = "sam"
PAPER = "https://arxiv.org/abs/2206.08357"
MIN_SIZE = 256           # F10 is the 128 px layer; a residual there needs layers after it
CPU_STEPS = 60           # the short run offered on a CPU
ESTIMATE_STEPS = (100, 15)  # single-space runs of the fallback layer map (GPU, CPU)
PREVIEWS = 10            # previews per inversion
DIRECTION_COUNT = 8      # GANSpace / SeFa components offered
LAYER_PRESETS = ["all", "0-1", "2-5", "6-13"]  # SeFa's paper: pose, shape, texture (StyleGAN)
STEP_GPU_SECONDS = 0.12  # estimated GPU time of one inversion step at 1024 px (ZeroGPU's duration)
PALETTE = ["#%02x%02x%02x" % SPACE_COLOURS[s] for s in SPACES]
SEGMENTERS = ("auto", "superpixels", "face parser", "ADE20K")
REDUCED_LABEL = "Reduced precision (bfloat16 autocast; faster on a GPU, not the authors' float32)"

HOW_IT_WORKS = f"""
**Spaces.** A photo is inverted into the generator's per-layer latent **W+** *and* into
residuals **dF4, dF6, dF8, dF10** added to the features of layers 4, 6, 8 and 10 (16, 32, 64,
128 px), each only inside its mask. W+ shapes every pixel; the residuals fix what W+ cannot
reach. The later the layer, the better the reconstruction and the less an edit can change.

**Which region uses which space.** The authors' *invertibility predictor* (a DeepLab-v3+
network) predicts, for every space, the LPIPS error a photo would have if inverted into that
space alone. Per segment, the most editable space whose mean predicted error is ≤ τ wins
(order W+, F4, F6, F8, F10; none passes → F10). Lower τ → more regions in later layers →
closer reconstruction, weaker edits. The masks are resized to each layer with a Lanczos
filter (soft edges).

**Optimisation.** Adam (lr 0.05, NVIDIA's warm-up and cosine ramp, 1001 steps) on
w+ and the residuals, with loss = MSE + LPIPS(VGG) at 256 px + 5·Σ mean(dF²)
+ 0.001·Σₙ‖wₙ − w₀‖ + 10⁻⁸·Mahalanobis(LeakyReLU(w, 5)) (a Gaussian prior on w).
**Precision**: float32, as the authors (their generator loads NVIDIA's TF pickles with no
layer in half precision). On a GPU, *Reduced precision* runs the generator's pass under
bfloat16 autocast instead (faster; the losses, Adam's state and the codes stay float32);
the run's settings record which. On a CPU everything is float32.

**Editing.** w+ + s·d on every layer; after layer k the features inside F_k's mask are put
back to the inverted ones, so a region inverted in F_k only takes the edit through the layers
after k.

**Your photo.** It is framed as the model's training pictures were: faces found and aligned
with the FFHQ (or CelebA-HQ) recipe, cars letterboxed between black bars, other models
centre-cropped; the picture the network sees is shown. Every result is also put back into
your photo at its full resolution (the frame warped back, feathered edges, pixels outside it
unchanged). A GAN sample is already in the model's frame: it is used as drawn.

**Segments.** As the authors: faces with their face parser (BiSeNet; all face parts, skin
and neck are one segment), cars with CSAIL's ADE20K scene parser (road and earth merged into
floor, vans and trucks into cars, ...), run on the framed picture at the model's resolution;
a segment is a (merged) class. Other models get colour/position superpixels ("Segmenter" picks
another).

**What differs here** (said so you can compare): fixed noise (the authors redraw noise at each
step) so results are reproducible; cats are segmented with the ADE20K parser, not the
authors' detectron2 COCO panoptic model (not ported here); segment means are taken at the
loss frame (256 px wide) rather than at the photo's size; you can paint the layer map
yourself; without the authors' predictor for a model, the error maps are *measured*
by short single-space inversions (slower, and short runs overestimate errors: raise τ);
edits keep the residuals in the pass, so strength 0 is exactly the reconstruction; on a CPU
the default is a short run ({CPU_STEPS} steps), because one step of the full method takes
seconds there. Paper: [Parmar et al., CVPR 2022]({PAPER}).
"""



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


def legend() -> str:
    return "Layer map colours: " + " · ".join(
        f"<span style='background:{c};color:white;padding:1px 6px;border-radius:3px'>{s}</span>"
        for s, c in zip(SPACES, PALETTE))


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
    return "ADE20K" if companion(ctx, mid, "sam-invertibility") else "superpixels"


def segmenter_ids(ctx: AppContext, kind: str) -> list[str] | None:
    """The registry ids a segmenter needs (face parser: one file; ADE20K: encoder, decoder),
    or None when one is not registered."""
    archs = {"face parser": ("face-parser",), "ADE20K": ("ade20k-encoder", "ade20k-decoder")}[kind]
    found = [next((e.id for e in ctx.registry if e.arch == arch), None) for arch in archs]
    return None if None in found else found


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
        from core.models.ade20k import ade20k_probabilities

        encoder, decoder = (ctx.model(i, torch.float32) for i in ids)
        classes = merge_ade20k(ade20k_probabilities(encoder, decoder, picture.to(ctx.device), size)[0].argmax(0).cpu())
    s.segments = semantic_segments(classes, size)
    return f"{int(s.segments.max()) + 1} segments from the {kind} (`{'`, `'.join(ids)}`)"


# ---- companions: predictor, encoder, directions -------------------------------------------
def companion(ctx: AppContext, mid: str, arch: str) -> WeightEntry | None:
    """The registry entry of `arch` made for generator `mid`, if any."""
    entries = ctx.registry.companions(arch, mid)
    return entries[0] if entries else None


def describe_helpers(ctx: AppContext, mid: str | None) -> str:
    if not mid:
        return ""
    pred, enc = companion(ctx, mid, "sam-invertibility"), companion(ctx, mid, "e4e")
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
    files = [authors_label(e) for e in ctx.registry.companions("edit-direction", mid)]
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
        find = DIRECTIONS.ganspace if kind == "GANSpace" else DIRECTIONS.sefa
        return find(mid, G, count=DIRECTION_COUNT, layers=layers)[int(number) - 1]
    for e in ctx.registry.companions("edit-direction", mid):
        if authors_label(e) == label:
            return file_direction(fetch(e), G.n_latent, e.meta.name, style_dim=G.style_dim)
    raise UserError(f"Unknown edit direction {label!r} for {mid}.")


# ---- what a call needs before it computes (core.gpu) -------------------------------------------
def generator_needs(ctx: AppContext, mid: str | None, *_, **__) -> list:
    """The float32 generator."""
    if not mid:
        raise UserError("Pick a model first.")
    return [(mid, torch.float32)]


def start_needs(ctx: AppContext, mid: str) -> list:
    """An inversion's start (e4e where registered) and its LPIPS backbone."""
    get_lpips("vgg", ctx.device)
    enc = companion(ctx, mid, "e4e")
    return [(enc.id, torch.float32)] if enc else []


def prediction_needs(ctx: AppContext, mid: str | None, picture, segments, tau, est_steps,
                     face=1, plain=False, segmenter: str = "auto", *_, **__) -> list:
    """Step 1: the generator, the predictor (else the single-space runs' start), the segmenter."""
    needs = generator_needs(ctx, mid)
    pred = companion(ctx, mid, "sam-invertibility")
    needs += [(pred.id, torch.float32)] if pred else start_needs(ctx, mid)
    kind = default_segmenter(ctx, mid) if segmenter in (None, "", "auto") else segmenter
    if kind != "superpixels":
        needs += [(i, torch.float32) for i in segmenter_ids(ctx, kind) or []]
    return needs


def inversion_needs(ctx: AppContext, mid: str | None, *_, **__) -> list:
    """Step 2: the generator and the start."""
    return generator_needs(ctx, mid) + start_needs(ctx, mid)


def inversion_seconds(ctx: AppContext, mid: str | None, s, editor, n_steps: float,
                      with_baseline: bool, *_, **__) -> float:
    """GPU time of an inversion: its steps (twice with the W+-only run) at the model's size."""
    size = (ctx.registry.get(mid).image_size() if mid else None) or 1024
    per_step = STEP_GPU_SECONDS * max(0.25, (size / 1024) ** 2)
    return 20 + float(n_steps) * per_step * (2 if with_baseline else 1)


def code_needs(ctx: AppContext, file: str | None, code: PhotoCode | None, *_, **__) -> list:
    """A saved run's or the session's photo code: its generator."""
    mid = saved_model(file) if file else (code.model_id if code is not None else None)
    return [(mid, torch.float32)] if mid in ctx.model_ids(STYLEGAN2_ARCHS) else []


def edit_needs(ctx: AppContext, mid: str | None, s, label: str | None, *_, **__) -> list:
    """Step 3: the generator and the authors' direction file picked."""
    files = [e.id for e in ctx.registry.companions("edit-direction", mid or "")
             if authors_label(e) == label]
    return generator_needs(ctx, mid) + files


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
    pred = companion(ctx, mid, "sam-invertibility")
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
    full = share_code(s).render(G)
    return to_uint8(for_loss(full, s.frame))[0], result_in_photo(s, full)


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


def inversion_run(ctx: AppContext, mid: str, s: Session, layer_map: torch.Tensor, images: dict,
                  settings: dict) -> Run:
    """The inversion's result for "Download all": pictures (the result in the photo and the
    photo too), masks per space, codes, recipe."""
    space_masks = {name: (layer_map == i).float()[None, None] for i, name in enumerate(SPACES)}
    helpers = {"predictor": getattr(companion(ctx, mid, "sam-invertibility"), "id", None),
               "encoder": getattr(companion(ctx, mid, "e4e"), "id", None)}
    return record(ctx, TAB, "invert", {"generator": mid, **helpers},
                  images={"target": to_uint8(s.target)[0], **photo_images(s),
                          **{k: v for k, v in images.items() if v is not None}},
                  masks=space_masks, arrays=save_arrays(s),
                  settings={**settings, "segmenter": s.segmenter, **framing_settings(s),
                            **run_parts(share_code(s))[2]})


# ---- handlers (plain functions of the context and the widgets' values) ---------------------
Outputs = TypeVar("Outputs", bound=tuple)


def unchanged(outputs: type[Outputs]) -> Outputs:
    """A handler's outputs (its NamedTuple) with every widget left as it is (`gr.update()`)."""
    return outputs(*[gr.update()] * len(outputs._fields))


@gpu_task(duration=60, needs=generator_needs)
def sample_photo(ctx: AppContext, mid: str | None, seed: float | None) -> np.ndarray:
    """A GAN sample as the photo (ψ 0.7), cut to the picture area: a photo the model can draw
    (the photo slot remembers it as drawn, so it is used as it is, not aligned)."""
    G = generator(ctx, mid)
    image = G.render(G.sample_latents(parse_seeds(seed, 1)), 0.7)
    content = ctx.registry.content_of(ctx.registry.get(mid))
    if content:  # cut the bars: the photo is the picture area
        bar = (G.size - content[1]) // 2
        image = image[:, :, bar:G.size - bar]
    return to_uint8(image)[0]


class PredictionOutputs(NamedTuple):
    """Step 1's widgets: session, error maps, segments, layer-map editor, status, network input, faces."""
    session: Session
    error_gallery: list
    segments_picture: np.ndarray
    layer_map: dict
    status: str
    net_input: dict
    faces: list


@gpu_task(duration=120, needs=prediction_needs)
def predict_layer_map(ctx: AppContext, mid: str | None, picture, segments: float, tau: float,
                      est_steps: float, face: float | None = 1, plain: bool = False,
                      segmenter: str = "auto", progress=gr.Progress()
                      ) -> PredictionOutputs:
    """Step 1: the photo framed as the model's training pictures were, its segments (`segmenter`:
    "auto", "superpixels" (`segments` of them), "face parser" or "ADE20K"), error maps per
    space and the layer map at τ -> (session, error gallery, segments picture, layer-map
    editor, status line, network input, faces found)."""
    if picture is None:
        raise UserError("Upload a photo (or use a GAN sample) first.")
    G = generator(ctx, mid)
    progress(0.0, desc="Framing the photo")
    framed, from_sample = frame_input(ctx, mid, picture, G.size, face, plain)
    target, frame = prepare_target(framed.aligned)
    s = Session(mid, target, frame, framed=framed, from_sample=from_sample)
    progress(0.1, desc="Segments")
    segmented = make_segments(ctx, s, segmenter, int(segments))
    how = error_maps(ctx, mid, G, s, int(est_steps), progress)
    editor, counts = show_map(s, tau)
    gallery = [(heatmap(s.errors[n], vmin=0), f"{n}: mean {float(s.errors[n].mean()):.3f}") for n in SPACES]
    return PredictionOutputs(
        session=s, error_gallery=gallery, segments_picture=segment_picture(s), layer_map=editor,
        status=f"Segments: {segmented}. Error maps {how}. Layer map: {shares(counts)}.",
        net_input=network_input(framed), faces=faces_gallery(framed))


class TauOutputs(NamedTuple):
    """A new τ's widgets: layer-map editor, status line."""
    layer_map: dict
    status: str | dict


@user_errors
def retune_tau(ctx: AppContext, s: Session | None, tau: float) -> TauOutputs:
    """A new τ on the same error maps (no model): -> (layer-map editor, status line); no
    change before a prediction."""
    if s is None or not s.errors:
        return unchanged(TauOutputs)
    editor, counts = show_map(s, tau)
    return TauOutputs(editor, "Layer map: " + shares(counts))


class StopSignal:
    """A session's Stop button, read by its running inversion.

    Gradio's own cancel waits until the job's current step ends (a thread cannot be
    interrupted, and every step holds the device lock), so Stop is a quick, un-queued event
    that only raises this flag: the request returns at once and the inversion ends after the
    step in progress, keeping its last preview. One per browser session (a `gr.State` makes
    it), shared by the Stop and Invert events; a `core.jobs.Flag`, so an inversion computing
    in a ZeroGPU worker reads it too. A Stop pressed while the inversion still waits in the
    queue stops it as it starts; clicking Invert forgets an older Stop (`arm`)."""

    def __init__(self) -> None:
        self.flag = Flag()

    def arm(self) -> None:
        self.flag.lower()

    def request(self) -> None:
        self.flag.raise_()

    def consume(self) -> bool:
        """Whether Stop was pressed since the last `arm` or `consume` (and forget it)."""
        return self.flag.lower()


def request_stop(stop: StopSignal | None) -> None:
    """The Stop button: flag the session's inversion; returns at once (no model, no queue)."""
    if stop is not None:
        stop.request()


def arm_stop(stop: StopSignal | None) -> None:
    """A click of Invert: a Stop pressed before it no longer counts."""
    if stop is not None:
        stop.arm()


def belongs_to(s: Session, mid: str | None, what: str = "inversion") -> None:
    """A `UserError` naming the session's model when another one is picked."""
    if mid and s.model_id != mid:
        raise UserError(f"This {what} belongs to model {s.model_id}; switch the model back to "
                        f"{s.model_id}, or predict and invert the photo again for {mid}.")


class InversionOutputs(NamedTuple):
    """Step 2's widgets: session, SAM reconstruction, W+ only, target, status, codes file, in photo, photo code, run."""
    session: Session | dict
    reconstruction: np.ndarray | dict
    w_plus_only: np.ndarray | None | dict
    target: np.ndarray | dict
    status: str | dict
    codes_file: str | None | dict
    in_photo: np.ndarray | None | dict
    photo_code: PhotoCode | dict
    run: Run | dict


def stopped(step: int, total: int, kept: Session | None) -> InversionOutputs:
    """The outputs after Stop: nothing changes but the status line, which says which result
    the session keeps."""
    return unchanged(InversionOutputs)._replace(status=stopped_line(step, total, kept))


def stopped_line(step: int, total: int, kept: Session | None) -> str:
    head = f"**Stopped** at step {step}/{total}"
    if kept is not None and kept.codes is not None:
        return f"{head}: the preview of step {kept.codes.steps} and its codes are kept."
    return f"{head}, before its first preview: the previous inversion (if any) is kept."


@gpu_task(duration=inversion_seconds, needs=inversion_needs)
def invert(ctx: AppContext, mid: str | None, s: Session | None, editor: dict | None,
           n_steps: float, with_baseline: bool, stop: StopSignal | None = None,
           progress=gr.Progress(), reduced_precision: bool = False) -> Iterator[InversionOutputs]:
    """Step 2: Adam on W+ and the masked residuals (beside a W+-only run when asked), yielding
    PREVIEWS previews -> (session, reconstruction, W+ only, target, scores, codes file,
    the reconstruction in the photo, the session's photo code, run). The photo code goes out
    with each preview, in the same event, so API clients get it too (a `.then` runs only in
    the browser).

    float32 as the authors; `reduced_precision` (GPU only) runs the generator's pass under
    bfloat16 autocast, and the run's settings say which ran.

    The run works on a copy of the session: the last inversion stays in the session (and
    editable) until this run's first preview replaces it. A generator that hands control
    back after every step ("no change" between previews), so a cancelled job stops within a
    step; `stop` (the Stop button) ends it after the step in progress, keeping the last
    preview."""
    if s is None or s.layer_map is None:
        raise UserError("Predict the layer map first (step 1).")
    belongs_to(s, mid, "layer map")
    if stop is not None and stop.consume():  # pressed while the run waited in the queue
        yield stopped(0, int(n_steps), None)
        return
    G = generator(ctx, mid)
    crop = s.layer_map[s.frame.top:s.frame.bottom]
    layer_map = pad_to_frame(painted_layer_map(crop, editor), s.frame)
    masks = feature_masks(layer_map, G)
    batch = [masks] + ([{k: torch.zeros_like(m) for k, m in masks.items()}] if with_baseline else [])
    progress(0.0, desc="Starting point")
    w0 = start_w(ctx, mid, G, s.target)
    autocast = optimisation_dtype(G.device, bool(reduced_precision))  # None: float32 (the authors')
    run = Inversion(G, s.target, stack_masks(batch), w0.expand(len(batch), -1, -1),
                    get_lpips("vgg", G.device), int(n_steps), s.frame, autocast=autocast)
    every = max(1, run.total // PREVIEWS)
    shown: Session | None = None  # this run's last preview (the session holds it)
    target_pic = to_uint8(s.target)[0]
    while not run.done:
        if stop is not None and stop.consume():
            yield stopped(run.step_index, run.total, shown)
            return
        run.step()
        progress(run.step_index / run.total, desc=f"Step {run.step_index}/{run.total}")
        if run.step_index % every == 0 or run.done:
            if run.diverged:
                raise UserError(f"The inversion diverged at step {run.step_index} (not-a-number "
                                "codes); the last preview and its codes are kept.")
            shown = dataclasses.replace(s, codes=run.codes(0), features=None,
                                        baseline=run.codes(1) if with_baseline else None)
            rec, base, line, in_photo = preview(run, shown, with_baseline)
            result = inversion_run(ctx, mid, shown, layer_map, {"reconstruction": rec, "w_plus_only": base,
                                                                "result_in_photo": in_photo},
                                   {"steps": run.total, "done": run.step_index,
                                    "compare": bool(with_baseline),
                                    "precision": precision_name(autocast)})
            yield InversionOutputs(shown, rec, base, target_pic, line, save_codes(shown), in_photo,
                                   share_code(shown), result)
        else:  # hand control back after every step, so Stop acts within one step
            yield unchanged(InversionOutputs)


def share_code(s: Session | None) -> PhotoCode | dict:
    """The session's inversion as the app's photo code (core.photo_code): the PandA and
    Generate tabs edit and show the same inverted photo without inverting it again."""
    if s is None or s.codes is None:
        return gr.update()
    c = s.codes
    return PhotoCode(s.model_id, c.w_plus, dict(c.deltas), dict(c.masks), "SAM",
                     None if s.from_sample else s.framed)


class ContinuedOutputs(NamedTuple):
    """A photo code's widgets: model, session, SAM reconstruction, result in the photo, status,
    the session's photo code (what PandA and Generate edit and show)."""
    model_id: str
    session: Session
    reconstruction: np.ndarray
    in_photo: np.ndarray | None
    status: str
    photo_code: PhotoCode


@gpu_task(duration=60, needs=code_needs)
def continue_from_code(ctx: AppContext, file: str | None, code: PhotoCode | None,
                       progress=gr.Progress()) -> ContinuedOutputs:
    """Edit here a photo code made elsewhere: a saved run (`file`, from "Download all" of
    any StyleGAN2 tab) or the session's -> (model, session, the reconstruction, it in the
    photo, status line, the session's photo code: a loaded run's code reaches PandA and
    Generate too). The codes are not inverted again."""
    if file:
        code = code_from_bundle(open_run(file))
    if code is None:
        raise UserError("No photo code yet: invert a photo here (step 2), or load a saved run.")
    progress(0.2, desc=f"Rendering with {code.model_id}")
    G = generator(ctx, code.model_id)
    target, frame = (prepare_target(code.framed.aligned) if code.framed is not None
                     else (for_loss(code.render(G), Frame()), Frame()))
    s = Session(code.model_id, target, frame,
                codes=Codes(code.w_plus, dict(code.deltas), dict(code.masks)), framed=code.framed)
    picture, in_photo = shown_reconstruction(G, s)
    line = f"Editing the {code.describe()}: pick a direction below (step 3)."
    return ContinuedOutputs(code.model_id, s, picture, in_photo, line, code)


def strength_for(label: str | None, value: float = 0.0) -> dict:
    """A direction's strength slider: the authors' files 0..3 (their multipliers), GANSpace
    ±10 σ, SeFa ±15 (their demos' sliders); the value kept where it still fits."""
    lo, hi = strength_range(direction_source(label))
    return gr.update(minimum=lo, maximum=hi, value=min(max(float(value or 0), lo), hi))


class EditOutputs(NamedTuple):
    """Step 3's widgets: edited (SAM codes), edited (W+-only codes), result in the photo, run."""
    edited: np.ndarray
    w_plus_only: np.ndarray | None
    in_photo: np.ndarray | None
    run: Run


@gpu_task(duration=60, needs=edit_needs)
def edit_photo(ctx: AppContext, mid: str | None, s: Session | None, label: str | None,
               amount: float, layers: str | None = "all") -> EditOutputs:
    """Step 3: the inverted codes moved along a direction (residual regions restored; GANSpace
    and SeFa on the w+ `layers`, e.g. "0-1", "6-13" or "all") -> (edited, the same edit on the
    W+-only codes or None, the edit in the photo, run)."""
    if s is not None and s.codes is not None:
        belongs_to(s, mid)  # before loading a model that cannot read these codes
    G = generator(ctx, mid)
    codes = codes_for_edit(s, G)
    d = pick_direction(ctx, mid, G, label, layers)
    lo, hi = d.strength_range
    if not lo <= float(amount) <= hi:
        raise UserError(f"{d.name} takes strengths from {lo:g} to {hi:g}; got {float(amount):g}.")
    full = edit(G, codes, s.features, d.vector, float(amount))
    out = to_uint8(for_loss(full, s.frame))[0]
    in_photo = result_in_photo(s, full)
    base = None
    if s.baseline is not None:  # W+ only: no residuals, so the plain edited w+
        with torch.no_grad():
            w = s.baseline.w_plus.to(G.device) + float(amount) * d.vector.to(G.device)
            base = to_uint8(for_loss(G.synthesis(w), s.frame))[0]
    images = {"edited": out, "w_plus_only_edited": base, "result_in_photo": in_photo, **photo_images(s)}
    result = record(ctx, TAB, "edit", {"generator": mid},
                    images={k: v for k, v in images.items() if v is not None},
                    arrays={**save_arrays(s), "direction": d.vector.numpy()},
                    settings={"direction": label, "source": d.source, "layers": list(d.layers),
                              "strength": float(amount), **framing_settings(s)})
    return EditOutputs(out, base, in_photo, result)


class ModelOutputs(NamedTuple):
    """A new model's widgets: helpers line, edit direction, status line."""
    helpers: str
    direction: dict
    status: str | dict


def model_changed(ctx: AppContext, mid: str | None, s: Session | None = None) -> ModelOutputs:
    """A new model: its helpers line, its edit directions and, when the
    session's inversion (or layer map) was made with another model, a status line saying
    which (no model is loaded)."""
    choices = direction_choices(ctx, mid)
    status = gr.update()
    if s is not None and mid and s.model_id != mid:
        what = "inversion" if s.codes is not None else "layer map"
        status = (f"This {what} belongs to model {s.model_id}: switch back to it to "
                  f"{'edit' if s.codes is not None else 'invert'}, or predict the layer map again for {mid}.")
    return ModelOutputs(helpers=describe_helpers(ctx, mid),
                        direction=gr.update(choices=choices, value=choices[0] if choices else None),
                        status=status)


def precision_name(autocast: torch.dtype | None) -> str:
    """How an inversion's generator pass ran, as its run's settings record it."""
    return "float32" if autocast is None else f"{str(autocast).replace('torch.', '')} autocast"


def precision_line(device: torch.device) -> str:
    """What runs in which precision on this device (shown under the header)."""
    if device.type != "cuda":
        return (f"**No GPU here**: everything runs in float32 and the inversion defaults to a short "
                f"run of {CPU_STEPS} steps (a few seconds per step at 256 px, much more at 1024 px); "
                f"the paper uses {STEPS}.")
    if optimisation_dtype(device, reduced=True) is None:
        return ("**GPU precision**: float32, as the authors (this GPU has no bfloat16, so "
                "*Reduced precision* changes nothing).")
    return ("**GPU precision**: float32, as the authors. *Reduced precision* (step 2) runs the "
            "generator's pass in bfloat16 autocast instead: faster, not the authors' numbers; "
            "the losses, Adam's state and the codes stay float32.")


# ---- UI ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shared:
    """What the step builders share: the wiring, the model dropdown, the session state, the
    status line (rendered under the inversion's pictures, written by steps 1 and 2), the codes
    file (rendered under the edits) and whether a GPU runs the tab (the step defaults)."""
    wiring: TabWiring
    model_id: gr.Dropdown
    session: gr.State
    metrics: gr.Markdown
    codes_file: gr.File
    on_gpu: bool


def build_tab(ctx: AppContext) -> None:
    ids = [i for i in ctx.model_ids(STYLEGAN2_ARCHS)  # a size not in the config: `generator` checks
           if (ctx.registry.get(i).image_size() or MIN_SIZE) >= MIN_SIZE]
    wiring = TabWiring(ctx, TAB)
    on_gpu = ctx.device.type == "cuda"
    tab_header("Invert a photo the GAN cannot draw exactly: regions that W+ reconstructs stay in W+ "
               "(fully editable); the rest get residuals in feature layers. Then edit with sliders.",
               HOW_IT_WORKS)
    helpers = ("sam-invertibility", "e4e", "edit-direction", "face-parser", "ade20k-encoder", "ade20k-decoder")
    licence_line(ctx.registry, TAB, ids + [e.id for e in ctx.registry if e.arch in helpers])
    gr.Markdown(precision_line(ctx.device))
    with gr.Row():
        model_id = gr.Dropdown(ids, value=ids[0] if ids else None, label="Model (StyleGAN2, 256 px or more)", scale=3)
        helper_note = gr.Markdown(describe_helpers(ctx, ids[0]) if ids else "")
    shared = Shared(wiring, model_id, gr.State(None), gr.Markdown(render=False),
                    gr.File(label="Inverted codes (.npz: W+, F4..F10 and their masks)", render=False),
                    on_gpu)
    layer_editor = _build_layer_map(shared)
    _build_invert(shared, layer_editor)
    direction = _build_edit(shared, ids[0] if ids else None)
    shared.codes_file.render()
    wiring.download.render()
    wiring.on(model_id.change, model_changed, [model_id, shared.session],
              [helper_note, direction, shared.metrics], record=False)


def _build_layer_map(shared: Shared) -> gr.ImageEditor:
    """The photo (upload, GAN sample or example) framed for the model, the faces found, and
    step 1: segments, error maps, layer map -> the layer-map editor."""
    wiring, model_id = shared.wiring, shared.model_id
    first = model_id.value or None
    photos = photos_for(wiring.ctx.registry.framing_of(wiring.ctx.registry.get(first)), first) if first else []
    with gr.Row():
        with gr.Column():
            slot = photo_slot(wiring, model_id, label="Photo to invert", sample=sample_photo, seed=7,
                              sample_label="Use a GAN sample", net_input=False, height=320,
                              examples=photos, examples_label="Example photos (then predict)")
            slot_line(wiring.ctx, model_id)
        with gr.Column():
            with gr.Row():
                net_input = gr.Image(format="png", label="Network input", interactive=False, height=320)
                segments_pic = gr.Image(format="png", label="Segments", interactive=False, height=320)
            caption = gr.Markdown()
    gr.Markdown("### 1 · Layer map")
    with gr.Row():
        segmenter = gr.Dropdown(list(SEGMENTERS), value="auto", label="Segmenter",
                                info="auto: the authors' (face parser for faces, ADE20K for their cars and "
                                     "cats), superpixels for other models")
        n_segments = gr.Slider(4, 64, value=24, step=1, label="Segments", info="superpixels only")
        tau = gr.Slider(0.0, 1.0, value=TAU, step=0.025, label="τ (max. predicted error per segment)")
        est_steps = gr.Slider(2, 300, value=ESTIMATE_STEPS[0] if shared.on_gpu else ESTIMATE_STEPS[1], step=1,
                              label="Steps of each single-space run (models without a predictor)")
        predict = gr.Button("Predict layer map", variant="primary")
    errors_gallery = gr.Gallery(label="Predicted error per space (brighter = harder)", columns=5,
                                height=200, format="png")
    gr.Markdown(legend())
    layer_editor = gr.ImageEditor(label="Layer map (paint with a space's colour to override)",
                                  type="numpy", format="png", height=340, sources=(),
                                  brush=gr.Brush(colors=PALETTE, color_mode="fixed"),
                                  layers=False, transforms=())

    inputs = [model_id, slot.photo, n_segments, tau, est_steps, *slot.choices, segmenter]
    outputs = [shared.session, errors_gallery, segments_pic, layer_editor, shared.metrics, net_input,
               slot.faces]
    wiring.on(predict.click, predict_layer_map, inputs, outputs, api_name="sam_predict", record=False)
    if slot.examples is not None:  # an example photo is predicted at once (no run: `on`, not `examples`)
        wiring.on(slot.examples.load_input_event.then, predict_layer_map, inputs, outputs, record=False)
    slot.follow(wiring, model_id, net_input, caption)
    slot.clears(shared.session, errors_gallery, segments_pic, layer_editor, shared.metrics)
    wiring.on(tau.release, retune_tau, [shared.session, tau], [layer_editor, shared.metrics],
              api_name="sam_tau", record=False)
    return layer_editor


def _build_invert(shared: Shared, layer_editor: gr.ImageEditor) -> None:
    """Step 2: steps, the W+-only comparison, Invert / Stop, previews and scores."""
    gr.Markdown("### 2 · Invert")
    with gr.Row():
        steps = gr.Slider(1, 2000, value=STEPS if shared.on_gpu else CPU_STEPS, step=1, label="Adam steps")
        compare = gr.Checkbox(value=True, label="Also invert into W+ only (for comparison)")
        reduced = gr.Checkbox(value=False, visible=shared.on_gpu, label=REDUCED_LABEL)
        invert_button = gr.Button("Invert", variant="primary")
        stop = gr.Button("Stop", variant="stop")
    with gr.Row():
        recon = gr.Image(format="png", label="SAM reconstruction", interactive=False)
        baseline = gr.Image(format="png", label="W+ only", interactive=False)
        target = gr.Image(format="png", label="Target (as the losses see it)", interactive=False)
    shared.metrics.render()
    in_photo = gr.Image(format="png", label="Result in your photo (the reconstruction)", interactive=False)

    stop_signal = gr.State(StopSignal)  # one per session (a callable initial value)
    armed = invert_button.click(arm_stop, stop_signal, None, queue=False, api_visibility="private")
    code = photo_code_state(shared.wiring.ctx)
    shared.wiring.on(
        armed.then, invert, [shared.model_id, shared.session, layer_editor, steps, compare, stop_signal,
                             reduced],
        [shared.session, recon, baseline, target, shared.metrics, shared.codes_file, in_photo, code],
        api_name="sam_invert")
    with gr.Accordion("Or continue from a photo code: the session's, or a saved run", open=False):
        gr.Markdown("The session's photo code, or a run saved with \"Download all\" (from "
                    "this tab, PandA or Generate), opens here for editing without inverting it "
                    "again; a loaded run's code becomes the session's (PandA and Generate use it).")
        with gr.Row():
            use_code = gr.Button("Edit the session's photo code")
            saved = gr.File(label="Load a run (.zip)", file_types=[".zip"], type="filepath")
    continued = [shared.model_id, shared.session, recon, in_photo, shared.metrics, code]
    shared.wiring.on(use_code.click, continue_from_code, [gr.State(None), code], continued,
                     record=False, api_name="sam_use_code")
    shared.wiring.on(saved.upload, continue_from_code, [saved, code], continued, record=False,
                     api_name="sam_load_run")
    stop.click(request_stop, stop_signal, None, queue=False, api_name="sam_stop")


def _build_edit(shared: Shared, first: str | None) -> gr.Dropdown:
    """Step 3: direction and strength, the edit on the SAM and on the W+-only codes;
    -> the direction dropdown (a model change refills it)."""
    gr.Markdown("### 3 · Edit")
    with gr.Row():
        choices = direction_choices(shared.wiring.ctx, first)
        label = choices[0] if choices else None
        lo, hi = strength_range(direction_source(label))
        direction = gr.Dropdown(choices, value=label, label="Edit direction", scale=3)
        strength = gr.Slider(lo, hi, value=0, step=0.1, label="Strength", scale=3)
        layers = gr.Dropdown(LAYER_PRESETS, value="all", allow_custom_value=True, scale=2,
                             label="Layers (GANSpace, SeFa): w+ indices",
                             info="SeFa's paper: 0-1 pose, 2-5 shape, 6-13 texture; the authors' files keep theirs")
    with gr.Row():
        edited = gr.Image(format="png", label="Edited (SAM codes)", interactive=False)
        edited_base = gr.Image(format="png", label="Same edit on the W+-only codes", interactive=False)
    in_photo = gr.Image(format="png", label="Result in your photo (the edit)", interactive=False)

    inputs = [shared.model_id, shared.session, direction, strength, layers]
    outputs = [edited, edited_base, in_photo]
    shared.wiring.on(strength.change, edit_photo, inputs, outputs, api_name="sam_edit",
                     trigger_mode="always_last", show_progress="minimal")
    # a new direction or layer range re-renders quietly (no inversion yet, another model's
    # inversion: the status line says so); the slider shows the direction's range first
    ranged = direction.change(strength_for, [direction, strength], strength, queue=False, api_visibility="private")
    shared.wiring.on(ranged.then, quietly(edit_photo, len(outputs) + 1), inputs, outputs)
    shared.wiring.on(layers.change, quietly(edit_photo, len(outputs) + 1), inputs, outputs)
    return direction
