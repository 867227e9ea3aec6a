"""StyleMap tab: StyleMapGAN's real-time local editing and transplantation (Kim et al., CVPR 2021).

Engine (no Gradio): images in, images out, one encoder pass over [original, references]
and one generator pass per operation. `local_edit` (w+ or w blend), `transplant` (the
authors' interactive demo: regions of several references, shifted, with interpolation
frames), `transplant_grid` (generate.py's unaligned transplantation: boxes of stylemap cells
in w), `reconstruct` (encoder fidelity), `style_mix`, `interpolate` (generate.py's w
interpolation, as frames), `fit_direction` + `manipulate` (semantic_manipulation.py: a linear
SVM on two labelled sets, then a move along its normal, global or in painted cells) and
`sample`. The model is a `core.models.stylemapgan.StyleMapGAN` (generator + encoder of one
checkpoint; `sample` goes through its Generator protocol). Labels that name the stylemap grid
come from the registry's `latent_spatial_size` (`grid_of`, `model_labels`).

Handlers (`frame_original`, `run_local_edit`, `run_transplant`, `run_grid_transplant`,
`run_reconstruction`, `run_style_mix`, `run_interpolation`, `run_fit_direction`,
`run_semantic_edit`, `run_random`, ...) are module-level functions of the app context and the widgets' values;
`build_tab` lays out one builder per sub-tab and wires them. A person's photo is framed as the
model's training pictures were (`frame_picture`: the registry's framing, `core.faces`), and
results are pasted back into it (`FramedPhoto.paste`).
"""
from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass
from typing import Any, Literal, NamedTuple, Sequence

import gradio as gr
import numpy as np
import torch
import torch.nn.functional as F

from core.context import AppContext
from core.device import placement
from core.errors import UserError
from core.faces import FramedPhoto
from core.images import (ExamplePhoto, editor_image_and_mask, editor_is_empty, mask_picture, overlay,
                         photos_for, pil_to_tensor, to_uint8)
from core.lpips import lpips_distance
from core.models.stylemapgan import Box, StyleMapGAN
from core.gpu import gpu_task, user_errors
from core.photo_slot import (PhotoSlot, faces_gallery, frame_input, photo_slot, remember_drawn, slot_line,
                             still_shows)
from core.recipe import Run
from core.svm import HeldOut, LinearSVM, cross_validate, fit_linear_svm
from core.ui import (GPU_LANE, TabWiring, labelled_examples, licence_line, parse_seeds, random_seeds,
                     quietly, record, seed_picker, shift_range, shift_sliders, tab_header)

PAPER = "https://arxiv.org/abs/2104.14754"
HOW_IT_WORKS = f"""
StyleMapGAN's latent is not a vector but a **stylemap**: a 64-channel map of S×S cells, each
cell steering its own region of the image. S comes from the checkpoint: 8×8 for the 256 px
models, 16×16 for the 1024 px light model, 32×32 for the other 1024 px file (the labels follow
the model you pick). An **encoder** maps a photo to its stylemap in one pass (no optimisation),
so editing is instant:

* **Local edit**: encode the original and the reference, take the reference's stylemap where you
  painted and the original's elsewhere, decode. In **w+** (default, the paper's CelebA-HQ
  setting) the mixing happens in each of the generator's resized stylemaps (S×S up to the image
  size), so edges follow your brush down to the pixel at the finest level; in **w** it happens
  once, on the S×S stylemap (the paper's AFHQ setting). A cell is taken from the reference if
  any painted pixel falls in it. The mask picture shows this: in w the S×S cells; in w+ white
  where every level takes the reference (your strokes, the finest level) and grey where only
  the coarser levels do.
* **Transplant** (the authors' interactive demo): paint a region on each reference and shift it
  to where it should land in the original; every resized stylemap takes the shifted cells
  (average-pooled mask > 0.5). The frames interpolate linearly from the original (t = 0) to the
  full transplant (t = 1).
* **Reconstruction** shows how faithfully the encoder inverts a photo (MSE on [-1, 1] pixels,
  LPIPS-VGG). The paper's numbers are shown only beside the checkpoints they were measured on:
  the 5M-image CelebA-HQ and AFHQ files (Table 2) and the FFHQ 1024 px 32×32 file (Table 5);
  the default 256 px files were trained on 20M images and the paper reports no numbers for
  them.

Photos are framed as the model's training pictures were (shown as "network input"): faces are
detected and aligned with the CelebA-HQ recipe (celeba-hq model) or the FFHQ recipe (ffhq-1024),
the LSUN car and church pictures are squashed to the square, AFHQ's centre-cropped. A picture
that is already the model's square (a sample) is taken as it is. Results are also pasted back
into your photo at its full resolution (a local edit only where you painted, a transplant only
where the references land, a style mix whole into A's photo). Paper: [Kim et al., *Exploiting
Spatial Dimensions of Latent in GAN for Real-time Image Editing*, CVPR 2021]({PAPER}). Weights: CC BY-NC 4.0 (non-commercial).
"""
TAB = "stylemap"
MAX_REFERENCES = 3
TRANSPLANT_PIXELS = 4 * 256 * 256  # pixels per generator pass (4 frames at 256 px, 1 at 512 px
# and up): bounds memory however many frames are asked for
REFERENCE_COLORS = ((254, 39, 18), (102, 176, 50), (254, 254, 51))  # the authors' demo colours


# ---- engine --------------------------------------------------------------------------------
def prepare(model: StyleMapGAN, picture) -> torch.Tensor:
    """A picture -> the network's input [1, 3, size, size] (centre crop + resize, RGB)."""
    return pil_to_tensor(picture, model.size)


@torch.inference_mode()
def encode(model: StyleMapGAN, images: torch.Tensor) -> torch.Tensor:
    """Images [B, 3, size, size] in [-1, 1] -> stylemaps, one batched encoder pass."""
    return model.E(images.to(*placement(model)))


def sample(model: StyleMapGAN, seeds: Sequence[int], truncation: float = 1.0) -> torch.Tensor:
    """Random generation: seeds -> images [B, 3, size, size] in [-1, 1] (clamped), through
    the Generator protocol (one z per seed, the same on every device)."""
    return model.render(model.sample_latents(seeds), truncation)


@dataclass
class Edit:
    image: torch.Tensor  # [1, 3, size, size] in [-1, 1]
    cells: torch.Tensor  # [1, 1, S, S] bool: the S x S stylemap cells taken from the reference
    codes: torch.Tensor | None = None  # the stylemaps of [original, reference]
    finest: torch.Tensor | None = None  # w+ only: [1, 1, size, size] bool, what the finest
    # resized stylemap (the image's own resolution) takes

    def mask_picture(self, size: int) -> np.ndarray:
        """The mask as the network uses it -> grey picture: in w the S x S cells (white); in
        w+ white where every level takes the reference (the finest level: the strokes) and
        grey where only the coarser levels do (the rest of their cells)."""
        cells = mask_picture(self.cells, size)
        if self.finest is None:
            return cells
        return np.where(mask_picture(self.finest, size) > 0, 255, np.where(cells > 0, 128, 0)).astype(np.uint8)


@torch.inference_mode()
def local_edit(model: StyleMapGAN, original: torch.Tensor, reference: torch.Tensor,
               mask: torch.Tensor, space: Literal["w_plus", "w"] = "w_plus") -> Edit:
    """The reference where `mask` [1, 1, size, size] is 1, the original elsewhere."""
    G = model.G
    codes = encode(model, torch.cat([original, reference]))
    image = G.blend(codes[:1], codes[1:], mask, space=space)
    m = mask.to(G.device, G.dtype)
    finest = G.level_mask(m, G.size) if space == "w_plus" else None
    return Edit(image.float().clamp(-1, 1), G.level_mask(m, G.latent_spatial_size), codes, finest)


@torch.inference_mode()
def transplant(model: StyleMapGAN, original: torch.Tensor, references: torch.Tensor,
               masks: torch.Tensor, shifts: Sequence[tuple[int, int]], steps: int,
               codes: torch.Tensor | None = None) -> torch.Tensor:
    """The authors' demo: frames [steps, 3, size, size] from the original (t = 0) to every
    reference region pasted at its shift (t = 1), rendered a few frames per pass. `codes`:
    the stylemaps of [original, references] if already encoded."""
    if steps < 2:
        raise UserError("Use at least 2 interpolation frames (t = 0 and t = 1).")
    if codes is None:
        codes = encode(model, torch.cat([original, references]))
    frames = model.G.transplant(codes[:1], codes[1:], masks.to(codes.device), shifts, steps,
                                chunk=max(1, TRANSPLANT_PIXELS // model.size ** 2))
    return frames.float().clamp(-1, 1)


@torch.inference_mode()
def interpolate(model: StyleMapGAN, first: torch.Tensor, second: torch.Tensor, steps: int,
                codes: torch.Tensor | None = None) -> torch.Tensor:
    """generate.py's w interpolation as frames [steps, 3, size, size]: the stylemaps of two
    pictures mixed linearly in w, frame k at t = k / (steps - 1) of the way from `first` (its
    reconstruction, t = 0) to `second` (t = 1). The authors draw one random t per pair for
    FID_lerp; the tab shows the whole path. `codes`: the stylemaps of [first, second]."""
    if steps < 2:
        raise UserError("Use at least 2 interpolation frames (t = 0 and t = 1).")
    if codes is None:
        codes = encode(model, torch.cat([first, second]))
    weights = [1 - k / (steps - 1) for k in range(steps)]  # their lambda: the weight of `first`
    frames = model.G.interpolate(codes[:1], codes[1:], weights,
                                 chunk=max(1, TRANSPLANT_PIXELS // model.size ** 2))
    return frames.float().clamp(-1, 1)


@torch.inference_mode()
def transplant_grid(model: StyleMapGAN, original: torch.Tensor, reference: torch.Tensor,
                    boxes: Sequence[Box], codes: torch.Tensor | None = None) -> torch.Tensor:
    """generate.py's unaligned transplantation in w (paper Fig. 8): boxes of the reference's
    stylemap cells copied into the original's at other cells -> image [1, 3, size, size].
    boxes: ((to_row, to_col), (from_row, from_col), height, width) in cells of the model's
    S x S grid, applied in order. `codes`: the stylemaps of [original, reference]."""
    try:
        model.G.check_boxes(boxes)
    except ValueError as e:
        raise UserError(f"{str(e)[0].upper()}{str(e)[1:]}: move or shrink it.") from None
    if codes is None:
        codes = encode(model, torch.cat([original, reference]))
    return model.G.transplant_boxes(codes[:1], codes[1:], boxes).float().clamp(-1, 1)


AUTHORS_SET = ("The authors fit on 10,000 labelled CelebA-HQ stylemaps per attribute (their "
               "`semantic_manipulation/*_indices.npy`, ranked by a StyleGAN-pretrained "
               "classifier), 90 % to fit and 10 % of each side held out for its accuracy.")


@dataclass
class Direction:
    """An attribute direction in w: the unit normal of a linear SVM between the stylemaps of
    pictures with and without the attribute (semantic_manipulation.py)."""
    vector: torch.Tensor  # [1, C, S, S] float32 on the CPU, unit norm over all C*S*S values
    svm: LinearSVM
    counts: tuple[int, int]  # (with, without)
    train_accuracy: float  # of the fitted classifier on its own examples (says little)
    held_out: HeldOut | None = None  # cross-validated accuracy (core.svm.cross_validate)

    def summary(self) -> str:
        n_with, n_without = self.counts
        dims = int(self.vector.numel())
        chance = max(n_with, n_without) / (n_with + n_without)
        if self.held_out is None:
            held = "held-out accuracy: not measurable (too few examples on a side)"
        else:
            h = self.held_out
            held = (f"**held-out accuracy {h.accuracy:.0%}** ({h.correct}/{h.tested}, {h.folds}-fold "
                    f"cross-validation: each example classified by an SVM fitted without it; "
                    f"always answering the larger set scores {chance:.0%})")
        return (f"Linear SVM (C = 1) on {n_with} stylemaps with and {n_without} without the "
                f"attribute, {self.svm.support} support vectors; {held}. On its own examples it "
                f"scores {self.train_accuracy:.0%}"
                + (f", which says nothing: with fewer examples than the stylemap's {dims} numbers "
                   "any labelling can be separated" if n_with + n_without <= dims else "")
                + f". {AUTHORS_SET}")


def direction_from_codes(with_codes: torch.Tensor, without_codes: torch.Tensor) -> Direction:
    """Stylemaps [N, C, S, S] with / without the attribute -> the SVM's unit normal, pointing
    towards the attribute (their `coef_ / |coef_|`, labels 1 = with, 0 = without)."""
    if len(with_codes) < 2 or len(without_codes) < 2:
        raise UserError("Give at least 2 pictures with the attribute and 2 without.")
    pos, neg = with_codes.float().cpu().numpy(), without_codes.float().cpu().numpy()
    svm = fit_linear_svm(pos, neg)
    right = np.concatenate([svm.decision(pos) > 0, svm.decision(neg) <= 0])
    vector = torch.from_numpy(svm.normal.astype(np.float32)).view(1, *with_codes.shape[1:])
    return Direction(vector, svm, (len(pos), len(neg)), float(right.mean()), cross_validate(pos, neg))


ENCODE_BATCH = 8  # pictures per encoder pass when fitting a direction


@torch.inference_mode()
def fit_direction(model: StyleMapGAN, with_images: torch.Tensor, without_images: torch.Tensor
                  ) -> tuple[Direction, torch.Tensor]:
    """Pictures [N, 3, size, size] with / without an attribute -> (direction, the stylemaps of
    [with..., without...]), encoded ENCODE_BATCH at a time."""
    images = torch.cat([with_images, without_images])
    codes = torch.cat([encode(model, chunk) for chunk in images.split(ENCODE_BATCH)])
    n = len(with_images)
    return direction_from_codes(codes[:n], codes[n:]), codes


@torch.inference_mode()
def manipulate(model: StyleMapGAN, image: torch.Tensor, direction: torch.Tensor,
               strengths: Sequence[float], mask: torch.Tensor | None = None,
               code: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """semantic_manipulation.py's edit of one picture: its stylemap moved d along the direction
    for each d in `strengths`, globally and (with a painted `mask` [1, 1, size, size]) only in
    the stylemap cells the mask touches -> (global frames, local frames or None, the cells
    [S, S] bool or None). The authors give the local region as a rectangle of 8 x 8 cells;
    here a painted mask claims each cell any painted pixel falls in (the w local edit's rule)."""
    G = model.G
    if code is None:
        code = encode(model, image)
    chunk = max(1, TRANSPLANT_PIXELS // model.size ** 2)
    frames = G.move(code, direction, strengths, chunk=chunk).float().clamp(-1, 1)
    if mask is None or not mask.any():
        return frames, None, None
    cells = G.level_mask(mask.to(G.device, G.dtype), G.latent_spatial_size)[0, 0]
    local = G.move(code, direction, strengths, cells, chunk=chunk).float().clamp(-1, 1)
    return frames, local, cells


def boxes_region(size: int, grid: int, boxes: Sequence[Box], end: Literal["to", "from"]) -> np.ndarray:
    """Where the boxes lie in the picture (their landing cells, or the cells they are taken
    from) -> float [size, size] in {0, 1}."""
    ratio = size // grid
    region = np.zeros((size, size), np.float32)
    for (ty, tx), (fy, fx), h, w in boxes:
        y, x = (ty, tx) if end == "to" else (fy, fx)
        region[y * ratio:(y + h) * ratio, x * ratio:(x + w) * ratio] = 1
    return region


def boxes_picture(picture: torch.Tensor, grid: int, boxes: Sequence[Box],
                  end: Literal["to", "from"]) -> np.ndarray:
    """A picture [1, 3, size, size] with each box outlined in its colour (as generate.py
    draws them on the source and the reference)."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(to_uint8(picture)[0])
    draw = ImageDraw.Draw(image)
    ratio = image.width // grid
    for k, ((ty, tx), (fy, fx), h, w) in enumerate(boxes):
        y, x = (ty, tx) if end == "to" else (fy, fx)
        draw.rectangle((x * ratio, y * ratio, (x + w) * ratio - 1, (y + h) * ratio - 1),
                       outline=REFERENCE_COLORS[k % len(REFERENCE_COLORS)], width=max(1, ratio // 16))
    return np.asarray(image)


def landing_preview(model: StyleMapGAN, original: torch.Tensor, masks: torch.Tensor,
                    shifts: Sequence[tuple[int, int]]) -> np.ndarray:
    """The original with, per reference, the stylemap cells its region lands on (coloured)."""
    G = model.G
    cells = G.landing_cells(masks.to(G.device, G.dtype), shifts, G.latent_spatial_size).float().cpu()
    picture = original[0].float().cpu()
    for i, c in enumerate(cells):
        tinted = overlay(picture, c, REFERENCE_COLORS[i % len(REFERENCE_COLORS)], 0.45, mode="nearest")
        picture = torch.from_numpy(tinted).permute(2, 0, 1).float() / 127.5 - 1
    return to_uint8(picture[None])[0]


@dataclass
class Reconstruction:
    image: torch.Tensor
    mse: float
    lpips: float | None  # None when the LPIPS backbone is unavailable (offline, not cached)
    code: torch.Tensor | None = None  # the stylemap the image was decoded from


@torch.inference_mode()
def reconstruct(model: StyleMapGAN, image: torch.Tensor, with_lpips: bool = True) -> Reconstruction:
    """Encode and decode; MSE on [-1, 1] pixels and LPIPS-VGG, as the paper's Table 2."""
    code = encode(model, image)
    recon = model.G.synthesis(code).float().clamp(-1, 1)
    target = image.to(recon.device, recon.dtype)
    mse = float(F.mse_loss(recon, target))
    lp = float(lpips_distance(recon, target, net="vgg")[0]) if with_lpips else None
    return Reconstruction(recon, mse, lp, code)


@torch.inference_mode()
def style_mix(model: StyleMapGAN, first: torch.Tensor, second: torch.Tensor,
              codes: torch.Tensor | None = None) -> torch.Tensor:
    """[coarse, fine] mixes of two pictures: coarse keeps `first`'s two S x S stylemaps (colour,
    texture) on `second`'s finer ones (structure); fine swaps the roles. `codes`: the
    stylemaps of [first, second] if already encoded."""
    if codes is None:
        codes = encode(model, torch.cat([first, second]))
    G = model.G
    return torch.cat([G.style_mix(codes[:1], codes[1:], "coarse"),
                      G.style_mix(codes[:1], codes[1:], "fine")]).float().clamp(-1, 1)


def example_region(size: int, where: str) -> np.ndarray:
    """The painted region of the seed examples: "lower half", "upper half" or "centre"."""
    region = np.zeros((size, size), bool)
    if where == "lower half":
        region[size // 2:] = True
    elif where == "upper half":
        region[: size // 2] = True
    else:
        region[size // 4: size - size // 4, size // 4: size - size // 4] = True
    return region


def painted_editor(picture: np.ndarray, region: np.ndarray) -> dict:
    """An ImageEditor value with `region` painted on `picture` in the brush colour (what the
    seed examples show, as if a person had painted it)."""
    layer = np.zeros(region.shape + (4,), np.uint8)
    layer[region] = (255, 51, 51, 255)
    composite = picture.copy()
    composite[region] = (255, 51, 51)
    return {"background": picture, "layers": [layer], "composite": composite}


def collect_references(model: StyleMapGAN, editors: Sequence[dict | None], dxs: Sequence,
                       dys: Sequence) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """The used reference slots -> (pictures, painted masks, (dx, dy) shifts); empty slots
    are skipped, a used slot without paint is a person's mistake."""
    refs, masks, shifts = [], [], []
    for i, (ed, dx, dy) in enumerate(zip(editors, dxs, dys)):
        if editor_is_empty(ed):
            continue
        image, mask = editor_image_and_mask(ed, model.size, required=False)
        if mask.sum() == 0:
            raise UserError(f"Reference {i + 1} has no painted region: paint what to take, "
                            "or clear that reference.")
        refs.append(image)
        masks.append(mask)
        shifts.append((int(dx or 0), int(dy or 0)))
    if not refs:
        raise UserError("Add at least one reference and paint the region to take from it.")
    return torch.cat(refs), torch.cat(masks), shifts


# ---- handlers (plain functions of the context and the widgets' values) ---------------------
UNREGISTERED_SIZE = 256  # the shift range of an entry registered without a size (the loader reads it)


def registered_size(ctx: AppContext, model_id: str | None) -> int:
    """The model's picture size from its registry entry, without loading it (the shift range)."""
    size = ctx.registry.get(model_id).image_size() if model_id else None
    return size or UNREGISTERED_SIZE


def picked(ctx: AppContext, model_id: str | None, *_, **__) -> list[str]:
    """What a call needs before it computes (`core.gpu`): the StyleMapGAN model."""
    if not model_id:
        raise UserError("Pick a StyleMapGAN model first.")
    return [model_id]


def direction_of(ctx: AppContext, model_id: str | None, kept: dict | None, *_, **__) -> list[str]:
    """A semantic edit needs a direction fitted on this model (checked before it is loaded)."""
    if not kept:
        raise UserError("Fit a direction first (two sets of pictures, with and without the attribute).")
    if kept.get("model") != model_id:
        raise UserError(f"This direction was fitted on {kept.get('model')}: fit it again for {model_id}.")
    return picked(ctx, model_id)


def model_for(ctx: AppContext, model_id: str | None) -> StyleMapGAN:
    """The generator + encoder pair of `model_id`, loaded once per device."""
    if not model_id:
        raise UserError("Pick a StyleMapGAN model first.")
    return ctx.model(model_id)


def framing_for(ctx: AppContext, model_id: str | None) -> str:
    """The model's framing of photos (registry `meta.framing`; "center" without a model)."""
    return ctx.registry.framing_of(ctx.registry.get(model_id)) if model_id else "center"


def frame_picture(ctx: AppContext, model_id: str | None, picture, size: int, face: float | None = 1,
                  plain: bool = False) -> FramedPhoto:
    """A photo (a file path from a photo input, or a picture) -> framed for the model as its
    training pictures were; a sample the model drew is taken as drawn (`core.photo_slot`)."""
    return frame_input(ctx, model_id, picture, size, face, plain)[0]


def framing_note(framed: FramedPhoto | None) -> str:
    """The label of a network-input picture: how the picture was framed."""
    if framed is None:
        return "Network input: the editor's picture, centre crop"
    return framed.note()


def relabel(notes: Sequence[str] | None):
    """The framing notes a handler returned (a gr.State) -> the labels of its network-input
    pictures. The pictures themselves stay plain outputs, so API clients get files."""
    if not notes:
        return gr.update()
    updates = [gr.update(label=n) for n in notes]
    return updates[0] if len(updates) == 1 else updates


def labelled_by_notes(notes: gr.State, pictures: list) -> None:
    """Whenever a handler's framing notes change, they become `pictures`' labels."""
    notes.change(relabel, notes, pictures[0] if len(pictures) == 1 else pictures,
                 api_visibility="private", queue=False)


def model_size(ctx: AppContext, model_id: str | None) -> int:
    """The model's picture size: registered, else read from the loaded model."""
    if not model_id:
        raise UserError("Pick a StyleMapGAN model first.")
    return ctx.registry.get(model_id).image_size() or model_for(ctx, model_id).size


def grid_of(ctx: AppContext, model_id: str | None) -> int | None:
    """The stylemap grid S (S x S cells) the registry states for the model (config
    `latent_spatial_size`, checked against the file when it loads), known before anything is
    loaded; None when not stated (handlers read it from the loaded model)."""
    if not model_id:
        return None
    value = ctx.registry.get(model_id).config.get("latent_spatial_size")
    return int(value) if value else None


def grid_text(grid: int | None) -> str:
    return f"{grid}×{grid}" if grid else "S×S"


def space_choices(grid: int | None) -> list[tuple[str, str]]:
    return [("w+ (every resized stylemap, down to the pixel)", "w_plus"),
            (f"w (the {grid_text(grid)} stylemap)", "w")]


def cells_label(grid: int | None) -> str:
    return (f"Mask as the network uses it (w: whole {grid_text(grid)} cells; w+: white at every "
            "level down to the finest, grey at the coarser levels only)")


def mix_labels(grid: int | None) -> tuple[str, str]:
    g = grid_text(grid)
    return (f"Coarse: A's two {g} stylemaps on B's finer ones",
            f"Fine: B's two {g} stylemaps on A's finer ones")


GRID_BOXES = 2  # generate.py's AFHQ example uses two
BOX_FIELDS = ("to_row", "to_col", "from_row", "from_col", "height", "width")

ModelLabelOutputs = NamedTuple("ModelLabelOutputs", [
    ("space", Any), ("cells", Any),
    *[(f"box{k + 1}_{field}", Any) for k in range(GRID_BOXES) for field in BOX_FIELDS],
    ("coarse", Any), ("fine", Any)])
ModelLabelOutputs.__doc__ = """`model_labels` -> space, cells, box1_to_row ... box2_width sliders, coarse, fine."""


def model_labels(ctx: AppContext, model_id: str | None) -> ModelLabelOutputs:
    """A model change: every label that names the stylemap grid (w/w+ choice, mask picture,
    style-mixing results) and the grid transplant's cell sliders (0 .. S)."""
    g = grid_of(ctx, model_id)
    coarse, fine = mix_labels(g)
    cells = [gr.update(maximum=g or 32)] * (GRID_BOXES * len(BOX_FIELDS))
    return ModelLabelOutputs(gr.update(choices=space_choices(g)), gr.update(label=cells_label(g)),
                             *cells, gr.update(label=coarse), gr.update(label=fine))


# The paper's reconstruction numbers (MSE on [-1, 1] pixels, LPIPS-VGG, 500 test pictures) and
# the checkpoints they were measured on; no other checkpoint is compared with them.
PAPER_RECONSTRUCTION = {
    "stylemapgan-celeba-hq-256-5m": "paper Table 2, this 5M-image CelebA-HQ checkpoint: MSE 0.023, LPIPS 0.237",
    "stylemapgan-afhq-256-5m": "paper Table 2, this 5M-image AFHQ checkpoint: MSE 0.037, LPIPS 0.304",
}
PAPER_FFHQ_32 = {False: "paper Table 5, FFHQ 1024 px 32×32: MSE 0.016, LPIPS 0.344",
                 True: "paper Table 5, FFHQ 1024 px 32×32 light generator: MSE 0.017, LPIPS 0.347"}


def paper_reconstruction(model_id: str | None, model: StyleMapGAN) -> str:
    """The paper's numbers for this checkpoint, or why there are none."""
    if model_id in PAPER_RECONSTRUCTION:
        return PAPER_RECONSTRUCTION[model_id]
    if model_id == "stylemapgan-ffhq-1024-32x32":
        return PAPER_FFHQ_32[bool(model.G.config.get("small_generator"))]
    return ("the paper reports reconstruction numbers only for its 5M-image CelebA-HQ and AFHQ "
            "checkpoints and the FFHQ 32×32 one, not for this checkpoint")


class FrameOutputs(NamedTuple):
    """`frame_original` -> original editor, network input, faces gallery, framed state, notes state."""
    editor: dict
    net_input: np.ndarray
    faces: list
    framed: FramedPhoto
    notes: tuple[str]


@user_errors
def frame_original(ctx: AppContext, model_id: str | None, photo: str | None, face: float | None = 1,
                   plain: bool = False) -> FrameOutputs:
    """"Frame it": your photo -> (the original editor holding the network input, so you paint
    on exactly what the network sees; that picture; the faces found; the framed photo kept
    for pasting the result back; the framing note, the picture's label)."""
    if photo is None:
        raise UserError("Upload your photo first (or pick an example photo).")
    size = model_size(ctx, model_id)
    framed = frame_picture(ctx, model_id, photo, size, face, plain)
    picture = np.asarray(framed.aligned.image)
    editor = {"background": picture, "layers": [], "composite": picture}
    return FrameOutputs(editor, picture, faces_gallery(framed), framed, (framing_note(framed),))


ShiftRangeOutputs = NamedTuple("ShiftRangeOutputs", [
    *[(f"dx{k + 1}", Any) for k in range(MAX_REFERENCES)],
    *[(f"dy{k + 1}", Any) for k in range(MAX_REFERENCES)]])
ShiftRangeOutputs.__doc__ = """`shift_ranges` -> the references' dx sliders, then their dy sliders."""


def shift_ranges(ctx: AppContext, model_id: str | None) -> ShiftRangeOutputs:
    """A model change: every reference's shift sliders span the new model's square."""
    return ShiftRangeOutputs(*shift_range(registered_size(ctx, model_id),
                                          len(ShiftRangeOutputs._fields)))


@gpu_task(duration=60, needs=picked)
def sample_picture(ctx: AppContext, model_id: str | None, truncation: float, seed: float | None,
                   progress=gr.Progress(track_tqdm=True)) -> np.ndarray:
    """A picture from a seed (the seed row under every input), so no upload is needed."""
    progress(0.0, desc=f"Loading {model_id}")
    model = model_for(ctx, model_id)
    return to_uint8(sample(model, parse_seeds(seed, max_count=1), float(truncation)))[0]


class LocalEditOutputs(NamedTuple):
    """`run_local_edit` -> net input, cells, result, in photo, reference's net input, its faces, notes, run."""
    net_input: np.ndarray
    cells: np.ndarray
    result: np.ndarray
    in_photo: np.ndarray | None
    ref_input: np.ndarray
    ref_faces: list
    notes: tuple[str, str]
    run: Run


def _edit(ctx: AppContext, model_id: str | None, editor: dict | None, reference, space: str,
          framed: FramedPhoto | None = None, ref_face: float | None = 1, ref_plain: bool = False,
          seeds: Sequence[int] = (), region: str | None = None) -> LocalEditOutputs:
    """A local edit -> (network input, cells, result, result in your photo, the reference's
    network input, the reference's faces, framing notes, run); `framed`: the photo "Frame it" put in the
    editor; `seeds` and `region` only for the seed examples, so the recipe says how their
    pictures were made."""
    model = model_for(ctx, model_id)
    size = model.size
    original, mask = editor_image_and_mask(editor, size)
    if reference is None:
        raise UserError("Add a reference picture (upload one or sample it from a seed).")
    framed = framed if still_shows(editor, framed) else None
    ref_framed = frame_picture(ctx, model_id, reference, size, ref_face, ref_plain)
    ref = pil_to_tensor(ref_framed.aligned.image)
    edit = local_edit(model, original, ref, mask, space)
    shown, result = to_uint8(original)[0], to_uint8(edit.image)[0]
    in_photo = framed.paste(result, mask[0, 0].cpu().numpy()) if framed else None
    ref_shown = to_uint8(ref)[0]
    photos = {"result_in_photo": in_photo, "photo": framed.photo} if framed else {}
    run = record(
        ctx, TAB, "local_edit", {"model": model_id},
        images={"original": original, "reference": ref, "result": result, **photos},
        masks={"painted": mask, "cells": edit.cells.float()},
        arrays={"stylemap_original": edit.codes[:1], "stylemap_reference": edit.codes[1:]},
        seeds=seeds, settings={"space": space, **({"example_region": region} if region else {})},
        notes="seeds (examples only): original, reference. masks/cells: the stylemap cells "
              "taken from the reference. result_in_photo: the result pasted into your photo "
              "where you painted." + (f" Original: {framed.note()}." if framed else "")
              + f" Reference: {framing_note(ref_framed)}.")
    notes = (framing_note(framed), "Reference: " + framing_note(ref_framed))
    return LocalEditOutputs(shown, edit.mask_picture(size), result, in_photo, ref_shown,
                            faces_gallery(ref_framed), notes, run)


@gpu_task(duration=60, needs=picked)
def run_local_edit(ctx: AppContext, model_id: str | None, editor: dict | None, reference,
                   space: str, framed: FramedPhoto | None = None, ref_face: float | None = 1,
                   ref_plain: bool = False, progress=gr.Progress(track_tqdm=True)
                   ) -> LocalEditOutputs:
    """The painted region of the original from the reference -> (network input, stylemap
    cells taken, edited picture, the edit pasted into your photo where you painted (None
    unless the editor holds your framed photo), the reference's network input, the faces
    found in the reference, the two pictures' framing notes, run). `reference`: a photo file (or a picture), framed as the
    model's training pictures were."""
    return _edit(ctx, model_id, editor, reference, space, framed, ref_face, ref_plain)


LOCAL_EDIT_OUTPUTS = len(LocalEditOutputs._fields)  # the local edit's outputs, run included
quiet_local_edit = quietly(run_local_edit, len(LocalEditOutputs._fields))


def live_local_edit(ctx: AppContext, live: bool, model_id: str | None, editor: dict | None,
                    reference, space: str, framed: FramedPhoto | None = None,
                    ref_face: float | None = 1, ref_plain: bool = False) -> LocalEditOutputs | list:
    """Re-run while painting (when `live`): silent until there is something to edit ("no
    change" is a list of updates, as `quietly` answers while the input is incomplete)."""
    if not live:
        return [gr.update()] * len(LocalEditOutputs._fields)
    return quiet_local_edit(ctx, model_id, editor, reference, space, framed, ref_face, ref_plain)


EditExampleOutputs = NamedTuple("EditExampleOutputs", [("editor", dict), ("reference", np.ndarray),
                                                      *LocalEditOutputs.__annotations__.items()])
EditExampleOutputs.__doc__ = "`run_edit_example` -> original editor, reference, then `LocalEditOutputs`' widgets."


@gpu_task(duration=60, needs=picked)
def run_edit_example(ctx: AppContext, model_id: str | None, truncation: float,
                     seed_original: float | None, seed_reference: float | None, region: str,
                     space: str, progress=gr.Progress(track_tqdm=True)) -> EditExampleOutputs:
    """A seed example: sample two pictures, paint `region` on the first, edit -> (original
    editor, reference, then `run_local_edit`'s outputs)."""
    model = model_for(ctx, model_id)
    seeds = [int(seed_original or 0), int(seed_reference or 0)]
    pictures = to_uint8(sample(model, seeds, float(truncation)))
    remember_drawn(ctx, model_id, pictures[1])  # the reference is a sample: taken as drawn
    editor = painted_editor(pictures[0], example_region(pictures.shape[1], region))
    return EditExampleOutputs(editor, pictures[1], *_edit(ctx, model_id, editor, pictures[1], space,
                                                          seeds=seeds, region=region))


def landed_region(model: StyleMapGAN, masks: torch.Tensor, shifts: Sequence[tuple[int, int]]
                  ) -> np.ndarray:
    """Where the references' regions land in the frame: the union of the painted masks moved
    by their shifts (what leaves the square dropped) -> float [size, size] in {0, 1}."""
    G = model.G
    landed = G.landing_cells(masks.to(G.device, G.dtype), shifts, model.size)
    return landed.any(0).float().cpu().numpy()


class TransplantOutputs(NamedTuple):
    """`run_transplant` -> landing, result, strip, frames, t, in photo, net input, faces, framed, landed,
    notes, run."""
    landing: np.ndarray
    result: np.ndarray
    strip: list
    frames: list
    t: Any
    in_photo: np.ndarray
    net_input: np.ndarray
    faces: list
    framed: FramedPhoto
    landed: np.ndarray
    notes: tuple[str]
    run: Run


@gpu_task(duration=90, needs=picked)
def run_transplant(ctx: AppContext, model_id: str | None, original, steps: float,
                   *refs_and_shifts, progress=gr.Progress(track_tqdm=True)) -> TransplantOutputs:
    """The authors' demo. `original`: a photo file (or a picture), framed as the model's
    training pictures were. `refs_and_shifts`: the MAX_REFERENCES reference editors, then
    their dx, then their dy, then (optional) the original's face number and plain framing ->
    (landing preview, last frame, strip, frames, t slider update, the last frame pasted into
    your photo where the references land, the network input, the faces found, the framed
    photo and the landed region (kept for the t slider), the framing note, run)."""
    n = MAX_REFERENCES
    editors, dxs, dys = refs_and_shifts[:n], refs_and_shifts[n:2 * n], refs_and_shifts[2 * n:3 * n]
    face, plain = _face_and_plain(refs_and_shifts[3 * n:])
    model = model_for(ctx, model_id)
    if original is None:
        raise UserError("Add an original picture (upload one or sample it from a seed).")
    framed = frame_picture(ctx, model_id, original, model.size, face, plain)
    orig = pil_to_tensor(framed.aligned.image)
    refs, masks, shifts = collect_references(model, editors, dxs, dys)
    progress(0.3, desc="Encoding and rendering frames")
    codes = encode(model, torch.cat([orig, refs]))
    frames = to_uint8(transplant(model, orig, refs, masks, shifts, int(steps), codes=codes))
    strip = [(f, f"t = {t / (len(frames) - 1):.2f}") for t, f in enumerate(frames)]
    landing = landing_preview(model, orig, masks, shifts)
    landed = landed_region(model, masks, shifts)
    in_photo = framed.paste(frames[-1], landed)
    shown, note = to_uint8(orig)[0], framing_note(framed)
    run = record(
        ctx, TAB, "transplant", {"model": model_id},
        images={"frame": list(frames), "original": orig, "reference": refs, "landing": landing,
                "result_in_photo": in_photo, "photo": framed.photo},
        masks={"reference": masks, "landed": landed}, arrays={"stylemaps": codes},
        settings={"frames": int(steps), "shifts_px": [list(s) for s in shifts]},
        notes="frame_01 is t = 0 (the original), the last frame t = 1; stylemaps: "
              "[original, references...]; masks/reference_k: what is taken from reference k "
              "(before its shift); masks/landed: where the references land in the frame. "
              f"Original: {note}. result_in_photo: the last frame pasted into the photo where "
              "the references land.")
    return TransplantOutputs(landing, frames[-1], strip, list(frames),
                             gr.update(maximum=len(frames) - 1, value=len(frames) - 1), in_photo,
                             shown, faces_gallery(framed), framed, landed, (note,), run)


def _face_and_plain(extra: Sequence) -> tuple:
    """The transplant's optional trailing inputs (face number, plain framing), defaulted."""
    face = extra[0] if len(extra) > 0 else 1
    plain = extra[1] if len(extra) > 1 else False
    return face, plain


def pick_frame(frames: list, t: float):
    """The t slider: show one of the frames already rendered (no model)."""
    if not frames:
        return gr.update()
    return frames[min(int(t), len(frames) - 1)]


class FrameAtTOutputs(NamedTuple):
    """`pick_frame_in_photo` -> result at t, result in photo."""
    result: Any
    in_photo: Any


def pick_frame_in_photo(frames: list, t: float, framed: FramedPhoto | None = None,
                        landed: np.ndarray | None = None) -> FrameAtTOutputs:
    """The t slider: (the frame at t, that frame pasted into your photo where the references
    land), from what the transplant left (no model)."""
    frame = pick_frame(frames, t)
    if not frames or framed is None or landed is None:
        return FrameAtTOutputs(frame, gr.update())
    return FrameAtTOutputs(frame, framed.paste(frame, landed))


class ReconstructionOutputs(NamedTuple):
    """`run_reconstruction` -> network input, reconstruction, metrics, in photo, faces, notes, run."""
    net_input: np.ndarray
    result: np.ndarray
    metrics: str
    in_photo: np.ndarray
    faces: list
    notes: tuple[str]
    run: Run


@gpu_task(duration=60, needs=picked)
def run_reconstruction(ctx: AppContext, model_id: str | None, picture, face: float | None = 1,
                       plain: bool = False, progress=gr.Progress(track_tqdm=True)
                       ) -> ReconstructionOutputs:
    """Encode and decode a photo -> (network input, reconstruction, metrics text, the
    reconstruction pasted into your photo, the faces found, the framing note, run): how
    faithfully the encoder inverts it."""
    model = model_for(ctx, model_id)
    if picture is None:
        raise UserError("Add a photo (upload one, pick an example or sample it from a seed).")
    framed = frame_picture(ctx, model_id, picture, model.size, face, plain)
    image = pil_to_tensor(framed.aligned.image)
    try:
        rec = reconstruct(model, image)
    except UserError as e:  # LPIPS backbone missing: still show the reconstruction and MSE
        gr.Warning(str(e))
        rec = reconstruct(model, image, with_lpips=False)
    lp = "n/a (LPIPS backbone not available)" if rec.lpips is None else f"{rec.lpips:.3f}"
    text = f"**MSE** {rec.mse:.4f} · **LPIPS-VGG** {lp} ({paper_reconstruction(model_id, model)})"
    shown, result = to_uint8(image)[0], to_uint8(rec.image)[0]
    in_photo = framed.paste(result)
    run = record(ctx, TAB, "reconstruction", {"model": model_id},
                 images={"input": shown, "reconstruction": result, "result_in_photo": in_photo,
                         "photo": framed.photo},
                 arrays={"stylemap": rec.code},
                 settings={"mse": rec.mse, "lpips_vgg": rec.lpips},
                 notes=f"{framing_note(framed)}. result_in_photo: the reconstruction "
                       "pasted back into the photo.")
    return ReconstructionOutputs(shown, result, text, in_photo, faces_gallery(framed),
                                 (framing_note(framed),), run)


class StyleMixOutputs(NamedTuple):
    """`run_style_mix` -> coarse, fine, A's and B's network inputs, their faces, notes, in photo (A), run."""
    coarse: np.ndarray
    fine: np.ndarray
    input_a: np.ndarray
    input_b: np.ndarray
    faces_a: list
    faces_b: list
    notes: tuple[str, str]
    in_photo: np.ndarray
    run: Run


@gpu_task(duration=60, needs=picked)
def run_style_mix(ctx: AppContext, model_id: str | None, a, b, face_a: float | None = 1,
                  plain_a: bool = False, face_b: float | None = 1, plain_b: bool = False
                  ) -> StyleMixOutputs:
    """Photos A and B, each framed for the model -> (coarse mix, fine mix, A's and B's
    network inputs, the faces found in A and in B, their framing notes, the coarse mix (A's
    structure) pasted whole into A's photo, run)."""
    model = model_for(ctx, model_id)
    if a is None or b is None:
        raise UserError("Add both pictures A and B (upload or sample them).")
    framed_a = frame_picture(ctx, model_id, a, model.size, face_a, plain_a)
    framed_b = frame_picture(ctx, model_id, b, model.size, face_b, plain_b)
    first, second = pil_to_tensor(framed_a.aligned.image), pil_to_tensor(framed_b.aligned.image)
    codes = encode(model, torch.cat([first, second]))
    mixed = to_uint8(style_mix(model, first, second, codes=codes))
    in_photo = framed_a.paste(mixed[0])
    run = record(ctx, TAB, "style_mixing", {"model": model_id},
                 images={"a": first, "b": second, "coarse": mixed[0], "fine": mixed[1],
                         "result_in_photo": in_photo, "photo": framed_a.photo},
                 arrays={"stylemaps": codes},
                 notes=f"coarse: A's two {grid_text(model.G.latent_spatial_size)} stylemaps "
                       "on B's finer ones; fine: the reverse. "
                       f"stylemaps: [A, B]. A: {framing_note(framed_a)}. "
                       f"B: {framing_note(framed_b)}. result_in_photo: the coarse "
                       "mix (A's structure) pasted into photo A.")
    notes = ("A: " + framing_note(framed_a), "B: " + framing_note(framed_b))
    return StyleMixOutputs(mixed[0], mixed[1], to_uint8(first)[0], to_uint8(second)[0],
                           faces_gallery(framed_a), faces_gallery(framed_b), notes, in_photo, run)


class InterpolationOutputs(NamedTuple):
    """`run_interpolation` -> result, strip, frames, t, A's and B's net inputs, their faces, notes, run."""
    result: np.ndarray
    strip: list
    frames: list
    t: Any
    input_a: np.ndarray
    input_b: np.ndarray
    faces_a: list
    faces_b: list
    notes: tuple[str, str]
    run: Run


@gpu_task(duration=90, needs=picked)
def run_interpolation(ctx: AppContext, model_id: str | None, a, b, steps: float,
                      face_a: float | None = 1, plain_a: bool = False, face_b: float | None = 1,
                      plain_b: bool = False, progress=gr.Progress(track_tqdm=True)
                      ) -> InterpolationOutputs:
    """Photos A and B, each framed for the model -> (the last frame, strip, frames, t slider
    update, A's and B's network inputs, the faces found in A and B, their framing notes, run):
    their stylemaps mixed in w, t = 0 (A's reconstruction) ... 1 (B's)."""
    model = model_for(ctx, model_id)
    if a is None or b is None:
        raise UserError("Add both pictures A and B (upload or sample them).")
    framed_a = frame_picture(ctx, model_id, a, model.size, face_a, plain_a)
    framed_b = frame_picture(ctx, model_id, b, model.size, face_b, plain_b)
    first, second = pil_to_tensor(framed_a.aligned.image), pil_to_tensor(framed_b.aligned.image)
    progress(0.3, desc="Encoding and rendering frames")
    codes = encode(model, torch.cat([first, second]))
    frames = to_uint8(interpolate(model, first, second, int(steps), codes=codes))
    strip = [(f, f"t = {k / (len(frames) - 1):.2f}") for k, f in enumerate(frames)]
    notes = ("A: " + framing_note(framed_a), "B: " + framing_note(framed_b))
    run = record(ctx, TAB, "interpolation", {"model": model_id},
                 images={"frame": list(frames), "a": first, "b": second},
                 arrays={"stylemaps": codes}, settings={"frames": int(steps)},
                 notes="frame_01 is t = 0 (A's reconstruction), the last frame t = 1 (B's); "
                       "frame k mixes the stylemaps in w: (1 - t) * A + t * B. stylemaps: [A, B]. "
                       + " ".join(notes))
    return InterpolationOutputs(frames[-1], strip, list(frames),
                                gr.update(maximum=len(frames) - 1, value=len(frames) - 1),
                                to_uint8(first)[0], to_uint8(second)[0], faces_gallery(framed_a),
                                faces_gallery(framed_b), notes, run)


AFHQ_EXAMPLE_BOXES = (((4, 2), (3, 2), 2, 4), ((0, 1), (0, 1), 3, 2))  # generate.py, 8 x 8


def collect_boxes(values: Sequence) -> list[Box]:
    """GRID_BOXES x BOX_FIELDS slider values -> the used boxes (height or width 0: unused)."""
    boxes = []
    for k in range(GRID_BOXES):
        ty, tx, fy, fx, h, w = (int(v or 0) for v in values[k * 6:(k + 1) * 6])
        if h and w:
            boxes.append(((ty, tx), (fy, fx), h, w))
    if not boxes:
        raise UserError("Give at least one box a height and a width (in stylemap cells).")
    return boxes


class GridTransplantOutputs(NamedTuple):
    """`run_grid_transplant` -> where to, where from, result, in photo, faces, ref faces, notes, run."""
    where_to: np.ndarray
    where_from: np.ndarray
    result: np.ndarray
    in_photo: np.ndarray
    faces: list
    ref_faces: list
    notes: tuple[str, str]
    run: Run


@gpu_task(duration=60, needs=picked)
def run_grid_transplant(ctx: AppContext, model_id: str | None, original, reference,
                        *boxes_and_controls, progress=gr.Progress(track_tqdm=True)
                        ) -> GridTransplantOutputs:
    """generate.py's transplantation. `boxes_and_controls`: GRID_BOXES x BOX_FIELDS cell
    values, then (optional) the original's and the reference's face number and plain
    framing -> (original with the landing boxes, reference with the boxes taken, result, the
    result pasted into the original photo where the boxes land, the two network inputs' faces
    found, framing notes, run)."""
    n = GRID_BOXES * len(BOX_FIELDS)
    boxes = collect_boxes(boxes_and_controls[:n])
    extra = list(boxes_and_controls[n:]) + [1, False, 1, False][len(boxes_and_controls) - n:]
    model = model_for(ctx, model_id)
    if original is None or reference is None:
        raise UserError("Add both the original and the reference (upload or sample them).")
    size, grid = model.size, model.G.latent_spatial_size
    framed = frame_picture(ctx, model_id, original, size, extra[0], extra[1])
    ref_framed = frame_picture(ctx, model_id, reference, size, extra[2], extra[3])
    orig, ref = pil_to_tensor(framed.aligned.image), pil_to_tensor(ref_framed.aligned.image)
    codes = encode(model, torch.cat([orig, ref]))
    result = to_uint8(transplant_grid(model, orig, ref, boxes, codes=codes))[0]
    landed = boxes_region(size, grid, boxes, "to")
    in_photo = framed.paste(result, landed)
    notes = (framing_note(framed), "Reference: " + framing_note(ref_framed))
    run = record(ctx, TAB, "grid_transplant", {"model": model_id},
                 images={"original": orig, "reference": ref, "result": result,
                         "result_in_photo": in_photo, "photo": framed.photo},
                 masks={"landed": landed, "taken": boxes_region(size, grid, boxes, "from")},
                 arrays={"stylemaps": codes},
                 settings={"grid": grid, "boxes": [[list(t), list(f), h, w] for t, f, h, w in boxes]},
                 notes="boxes: [[to_row, to_col], [from_row, from_col], height, width] in stylemap "
                       "cells (generate.py's transplantation coordinates), applied in order in w. "
                       + " ".join(notes))
    return GridTransplantOutputs(boxes_picture(orig, grid, boxes, "to"),
                                 boxes_picture(ref, grid, boxes, "from"), result, in_photo,
                                 faces_gallery(framed), faces_gallery(ref_framed), notes, run)


MAX_SET = 32  # pictures per labelled set


def labelled_set(ctx: AppContext, model_id: str, model: StyleMapGAN, files, seeds: str | None,
                 truncation: float, plain: bool, what: str) -> tuple[torch.Tensor, list[str]]:
    """One labelled set: uploaded photos (framed for the model) and samples by seed ->
    (pictures [N, 3, size, size], one line per picture saying where it came from)."""
    pictures, sources = [], []
    for f in files or []:
        path = f if isinstance(f, str) else getattr(f, "name", None) or f.get("path")
        try:
            framed = frame_picture(ctx, model_id, path, model.size, 1, plain)
        except UserError as e:
            raise UserError(f"{what}: {os.path.basename(str(path))}: {e}") from None
        pictures.append(pil_to_tensor(framed.aligned.image))
        sources.append(f"{os.path.basename(str(path))}: {framing_note(framed)}")
    if seeds and str(seeds).strip():
        chosen = parse_seeds(seeds, max_count=MAX_SET)
        pictures.append(sample(model, chosen, truncation).cpu())
        sources += [f"sample, seed {s_}, ψ {truncation:g}" for s_ in chosen]
    if len(sources) > MAX_SET:
        raise UserError(f"{what}: at most {MAX_SET} pictures, got {len(sources)}.")
    if not pictures:
        raise UserError(f"{what}: upload photos or give seeds to sample.")
    return torch.cat([p.to(torch.float32).cpu() for p in pictures]), sources


class FitDirectionOutputs(NamedTuple):
    """`run_fit_direction` -> summary, kept direction state, the two sets' gallery, run."""
    summary: str
    kept: dict
    sets: list
    run: Run


@gpu_task(duration=120, needs=picked)
def run_fit_direction(ctx: AppContext, model_id: str | None, with_files, with_seeds: str | None,
                      without_files, without_seeds: str | None, truncation: float = 0.7,
                      plain: bool = False, progress=gr.Progress(track_tqdm=True)
                      ) -> FitDirectionOutputs:
    """Two labelled sets (uploads and/or seeds) -> (summary, the direction kept for editing,
    gallery of both sets as the network sees them, run)."""
    model = model_for(ctx, model_id)
    pos, pos_src = labelled_set(ctx, model_id, model, with_files, with_seeds, float(truncation),
                                bool(plain), "With the attribute")
    neg, neg_src = labelled_set(ctx, model_id, model, without_files, without_seeds,
                                float(truncation), bool(plain), "Without the attribute")
    progress(0.3, desc=f"Encoding {len(pos) + len(neg)} pictures")
    direction, codes = fit_direction(model, pos, neg)
    shown = to_uint8(torch.cat([pos, neg]))
    gallery = [(p, f"with {k + 1}") for k, p in enumerate(shown[:len(pos)])] + \
              [(p, f"without {k + 1}") for k, p in enumerate(shown[len(pos):])]
    kept = {"model": model_id, "vector": direction.vector.numpy(), "summary": direction.summary()}
    run = record(ctx, TAB, "semantic_direction", {"model": model_id},
                 images={"with": list(shown[:len(pos)]), "without": list(shown[len(pos):])},
                 arrays={"direction": direction.vector, "stylemaps_with": codes[:len(pos)],
                         "stylemaps_without": codes[len(pos):]},
                 settings={"svm": "C-SVC, linear kernel, C = 1 (sklearn SVC's defaults), unit normal",
                           "with": pos_src, "without": neg_src,
                           "held_out_accuracy": getattr(direction.held_out, "accuracy", None),
                           "held_out": asdict(direction.held_out) if direction.held_out else None,
                           "train_accuracy": direction.train_accuracy,
                           "support_vectors": direction.svm.support},
                 notes="direction: the unit normal of the SVM's boundary, pointing towards 'with'.")
    return FitDirectionOutputs(f"**Direction ready.** {direction.summary()}", kept, gallery, run)


class SemanticEditOutputs(NamedTuple):
    """`run_semantic_edit` -> global strip, local strip, network input, cells, in photo, run."""
    global_strip: list
    local_strip: list
    net_input: np.ndarray
    cells: np.ndarray
    in_photo: np.ndarray | None
    run: Run


@gpu_task(duration=90, needs=direction_of)
def run_semantic_edit(ctx: AppContext, model_id: str | None, kept: dict | None, editor: dict | None,
                      strength: float, steps: float, framed: FramedPhoto | None = None,
                      progress=gr.Progress(track_tqdm=True)) -> SemanticEditOutputs:
    """Move a picture along the fitted direction -> (global strip, local strip (empty without
    a painted region), network input, cells picture, the strongest edit pasted into your
    photo (local where painted, else global; None unless the editor holds your framed photo),
    run)."""
    direction_of(ctx, model_id, kept)
    model = model_for(ctx, model_id)
    image, mask = editor_image_and_mask(editor, model.size, required=False)
    if int(steps) < 2:
        raise UserError("Use at least 2 frames (strength 0 and the strength chosen).")
    strengths = [float(strength) * k / (int(steps) - 1) for k in range(int(steps))]
    vector = torch.from_numpy(np.asarray(kept["vector"], np.float32))
    code = encode(model, image)
    frames, local, cells = manipulate(model, image, vector, strengths, mask, code=code)
    frames_u8 = to_uint8(frames)
    local_u8 = to_uint8(local) if local is not None else None
    captions = [f"d = {d:g}" for d in strengths]
    framed = framed if still_shows(editor, framed) else None
    in_photo = None
    if framed is not None:
        in_photo = framed.paste(local_u8[-1], mask[0, 0].cpu().numpy()) if local_u8 is not None \
            else framed.paste(frames_u8[-1])
    size = model.size
    cells_pic = mask_picture(cells, size) if cells is not None else np.zeros((size, size), np.uint8)
    images = {"original": image, "global": list(frames_u8)}
    if local_u8 is not None:
        images["local"] = list(local_u8)
    if framed is not None:
        images.update(result_in_photo=in_photo, photo=framed.photo)
    run = record(ctx, TAB, "semantic_edit", {"model": model_id}, images=images,
                 masks={"cells": cells.float()} if cells is not None else {},
                 arrays={"stylemap": code, "direction": vector},
                 settings={"strengths": strengths, "direction": kept.get("summary", "")},
                 notes="global_k / local_k: the stylemap moved d = strengths[k - 1] along the "
                       "direction, everywhere / only in the cells the painted mask touches.")
    local_strip = [(f, c) for f, c in zip(local_u8, captions)] if local_u8 is not None else []
    return SemanticEditOutputs([(f, c) for f, c in zip(frames_u8, captions)], local_strip,
                               to_uint8(image)[0], cells_pic, in_photo, run)


class RandomOutputs(NamedTuple):
    """`run_random` -> gallery, run."""
    gallery: list
    run: Run


@gpu_task(duration=60, needs=picked)
def run_random(ctx: AppContext, model_id: str | None, seeds: str, truncation: float,
               progress=gr.Progress(track_tqdm=True)) -> RandomOutputs:
    """"1, 5, 7" -> (gallery of captioned samples, run)."""
    model = model_for(ctx, model_id)
    chosen = parse_seeds(seeds)
    z = model.sample_latents(chosen)
    images = to_uint8(model.render(z, float(truncation)))
    run = record(ctx, TAB, "random", {"model": model_id}, images={"sample": list(images)},
                 arrays={"z": z}, seeds=chosen, settings={"truncation": float(truncation)},
                 notes="sample_k comes from seeds[k - 1].")
    return RandomOutputs([(img, f"seed {s}") for img, s in zip(images, chosen)], run)


# ---- UI ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shared:
    """What every sub-tab builder uses: the wiring, the model dropdown, the sampling ψ, the
    first model id (for examples) and the example photos that suit it."""
    wiring: TabWiring
    model_id: gr.Dropdown
    psi: gr.Slider
    first: str | None
    photos: tuple[ExamplePhoto, ...]

    def seed_row(self, target: gr.components.Component, default: int) -> gr.Number:
        """A seed box and button under `target` that fill it with a sample."""
        return seed_picker(self.wiring, target, sample_picture, [self.model_id, self.psi], default)

    def photo_slot(self, label: str, seed: int | None = None) -> PhotoSlot:
        """The app's photo slot, with a seed row (a sample instead) when `seed` is given; the
        faces found follow the photo and the model (the network input shows after a run)."""
        slot = photo_slot(self.wiring, self.model_id, label=label, net_input=False,
                          sample=None if seed is None else sample_picture, sample_inputs=[self.psi],
                          seed=seed or 1)
        slot.follow(self.wiring, self.model_id)
        return slot

    def photo_column(self, label: str, seed: int) -> tuple[gr.Image, PhotoSlot]:
        """A photo slot with its seed row -> (its upload, the slot)."""
        slot = self.photo_slot(label, seed)
        return slot.photo, slot

    def photo_examples(self, target: gr.components.Component, label: str) -> gr.Examples | None:
        """The example photos as examples of one photo input (None when none is installed)."""
        if not self.photos:
            return None
        return labelled_examples([[p.path] for p in self.photos], [p.label for p in self.photos],
                                 [target], label=label)


def build_tab(ctx: AppContext) -> None:
    ids = ctx.model_ids("stylemapgan")
    wiring = TabWiring(ctx, TAB)
    tab_header("Paint a region, get it from another picture, instantly: StyleMapGAN encodes both "
               "pictures to spatial stylemaps and mixes them where you painted. Upload photos or "
               "sample them from a seed.",
               HOW_IT_WORKS)
    licence_line(ctx.registry, TAB, ids)
    first = ids[0] if ids else None
    with gr.Row():
        model_id = gr.Dropdown(ids, value=first, label="Model", scale=3)
        psi = gr.Slider(0.0, 1.0, value=0.7, step=0.05, label="Truncation ψ (sampling)", scale=2)
    slot_line(ctx, model_id)
    photos = tuple(photos_for(framing_for(ctx, first), first or ""))
    shared = Shared(wiring, model_id, psi, first, photos)
    with gr.Tabs():
        with gr.Tab("Local edit"):
            labelled = _build_local_edit(shared, live_default=ctx.device.type == "cuda")
        with gr.Tab("Transplant"):
            _build_transplant(shared)
        with gr.Tab("Grid transplant (w)"):
            labelled += _build_grid_transplant(shared)
        with gr.Tab("Reconstruction"):
            _build_reconstruction(shared)
        with gr.Tab("Style mixing"):
            labelled += _build_style_mixing(shared)
        with gr.Tab("Interpolation"):
            _build_interpolation(shared)
        with gr.Tab("Semantic manipulation"):
            _build_semantic(shared)
        with gr.Tab("Random"):
            _build_random(shared)
    wiring.on(model_id.change, model_labels, model_id, labelled, record=False, queue=False)
    wiring.download.render()


def _build_local_edit(shared: Shared, live_default: bool) -> list:
    """-> the components whose labels name the stylemap grid (see `model_labels`)."""
    wiring, model_id, first = shared.wiring, shared.model_id, shared.first
    grid = grid_of(wiring.ctx, first)
    with gr.Row():
        with gr.Column():
            controls = shared.photo_slot("Your photo")
            photo = controls.photo
            frame = gr.Button("Frame it (puts the network's input in the editor)")
        with gr.Column():
            original = gr.ImageEditor(label="Original: paint the region to replace",
                                      format="png", type="numpy", layers=False,
                                      brush=gr.Brush(colors=["#ff3333"], default_size=24))
            seed_original = shared.seed_row(original, 1)
        with gr.Column():
            ref_controls = shared.photo_slot("Reference", 2)
            reference, seed_reference = ref_controls.photo, ref_controls.seed
    framed = gr.State(None)  # the FramedPhoto "Frame it" put in the editor
    notes = gr.State(())  # the framing notes: the network-input pictures' labels
    with gr.Row():
        space = gr.Radio(space_choices(grid), value="w_plus", label="Blend in")
        live = gr.Checkbox(value=live_default, label="Update while painting")
        run = gr.Button("Edit", variant="primary")
    with gr.Row():
        net_input = gr.Image(label="Network input", format="png", interactive=False)
        cells = gr.Image(label=cells_label(grid), format="png", interactive=False, image_mode="L")
        result = gr.Image(label="Edited", format="png", interactive=False)
    with gr.Row():
        in_photo = gr.Image(label="Result in your photo", format="png", interactive=False, scale=2)
        ref_input = gr.Image(label="Reference: network input", format="png", interactive=False)
    region = gr.Dropdown(["lower half", "upper half", "centre"], value="lower half",
                         visible=False)  # what the seed examples paint
    example_inputs = [model_id, shared.psi, seed_original, seed_reference, region, space]
    examples = labelled_examples(
        [[first, 0.7, 1, 2, "lower half", "w_plus"], [first, 0.7, 1, 2, "lower half", "w"],
         [first, 0.7, 3, 4, "upper half", "w_plus"], [first, 0.7, 5, 6, "centre", "w_plus"]],
        ["lower half of sample 2 into sample 1 (w+)", "the same in w: blockier edges",
         "upper half of sample 4 into sample 3", "centre of sample 6 into sample 5"],
        example_inputs, label="Example edits (samples by seed, region painted for you)")
    photo_examples = shared.photo_examples(photo, "Example photos (framed on click; then paint "
                                                  "on the original and Edit)")
    shared.photo_examples(reference, "Example reference photos")

    frame_inputs = [model_id, photo] + controls.choices
    frame_outputs = [original, net_input, controls.faces, framed, notes]
    wiring.on(frame.click, frame_original, frame_inputs, frame_outputs, record=False,
              api_name="stylemap_frame")
    if photo_examples:
        wiring.on(photo_examples.load_input_event.then, frame_original, frame_inputs,
                  frame_outputs, record=False)
    inputs = [model_id, original, reference, space, framed] + ref_controls.choices
    outputs = [net_input, cells, result, in_photo, ref_input, ref_controls.faces, notes]
    labelled_by_notes(notes, [net_input, ref_input])
    wiring.on(run.click, run_local_edit, inputs, outputs, api_name="stylemap_edit")
    wiring.on(space.change, quiet_local_edit, inputs, outputs)  # re-run a finished edit in the other space
    wiring.on(original.change, live_local_edit, [live] + inputs, outputs, concurrency_id=GPU_LANE,
              trigger_mode="always_last", show_progress="minimal")
    wiring.examples(examples, (run_edit_example, example_inputs, [original, reference] + outputs))
    return [space, cells]


def _build_transplant(shared: Shared) -> None:
    wiring, model_id = shared.wiring, shared.model_id
    gr.Markdown("Paint a region on each reference (up to three), then shift it to where it "
                "should land on the original (pixels of the model's square). The original is "
                "framed as the model's training pictures were (shown as its network input); the "
                "result goes back into your photo where the references land.")
    span = registered_size(wiring.ctx, shared.first)
    with gr.Row():
        with gr.Column():
            original, controls = shared.photo_column("Original", 1)
        refs, dxs, dys = [], [], []
        for i in range(MAX_REFERENCES):
            with gr.Column():
                editor = gr.ImageEditor(label=f"Reference {i + 1}: paint the region to take",
                                        format="png", type="numpy", layers=False,
                                        brush=gr.Brush(colors=["#%02x%02x%02x" % REFERENCE_COLORS[i]],
                                                       default_size=24))
                shared.seed_row(editor, 2 + i)
                dx, dy = shift_sliders(span)
                refs.append(editor)
                dxs.append(dx)
                dys.append(dy)
    with gr.Row():
        steps = gr.Slider(2, 16, value=8, step=1, label="Interpolation frames")
        run = gr.Button("Transplant", variant="primary")
    with gr.Row():
        net_input = gr.Image(label="Network input", format="png", interactive=False)
        landing = gr.Image(label="Where the regions land (stylemap cells)", format="png",
                           interactive=False)
        result = gr.Image(label="Result at t", format="png", interactive=False)
    t = gr.Slider(0, 1, value=1, step=1, label="Interpolation t (frame)")
    in_photo = gr.Image(label="Result in your photo", format="png", interactive=False)
    strip = gr.Gallery(label="All frames, t = 0 … 1", columns=8, height=180, format="png")
    frames = gr.State([])
    framed = gr.State(None)  # the original's FramedPhoto, for pasting the frame at t back
    landed = gr.State(None)  # where the references land in the frame (the paste mask)
    notes = gr.State(())

    inputs = [model_id, original, steps] + refs + dxs + dys + controls.choices
    outputs = [landing, result, strip, frames, t, in_photo, net_input, controls.faces, framed,
               landed, notes]
    labelled_by_notes(notes, [net_input])
    wiring.on(run.click, run_transplant, inputs, outputs, api_name="stylemap_transplant")
    wiring.on(model_id.change, shift_ranges, model_id, dxs + dys, record=False, queue=False)
    t.change(pick_frame_in_photo, [frames, t, framed, landed], [result, in_photo], api_visibility="private",
             queue=False)


def _build_grid_transplant(shared: Shared) -> list:
    """-> the cell sliders, whose range is the model's grid."""
    wiring, model_id = shared.wiring, shared.model_id
    grid = grid_of(wiring.ctx, shared.first) or 8
    gr.Markdown("The paper's unaligned transplantation as the authors' `generate.py` runs it "
                "(Fig. 8): boxes of the reference's stylemap cells replace the original's cells "
                "at another place, in w (the input stylemap, hard copy), then the picture is "
                "decoded. Boxes are in cells of the model's grid and are applied in order. The "
                "**Transplant** tab is the authors' interactive demo instead: painted regions, "
                "pixel shifts, every resized stylemap (w+), interpolation frames.")
    with gr.Row():
        with gr.Column():
            original, controls = shared.photo_column("Original", 1)
        with gr.Column():
            reference, ref_controls = shared.photo_column("Reference", 2)
    sliders = []
    for k in range(GRID_BOXES):
        (ty, tx), (fy, fx), h, w = AFHQ_EXAMPLE_BOXES[k]
        with gr.Row():
            gr.Markdown(f"**Box {k + 1}** (height or width 0: unused)")
            for label, value in zip(("Lands at row", "Lands at column", "Taken from row",
                                     "Taken from column", "Height (cells)", "Width (cells)"),
                                    (ty, tx, fy, fx, h, w)):
                sliders.append(gr.Slider(0, grid, value=min(value, grid), step=1, label=label))
    run = gr.Button("Transplant boxes", variant="primary")
    with gr.Row():
        where_to = gr.Image(label="Original: where the boxes land", format="png", interactive=False)
        where_from = gr.Image(label="Reference: the boxes taken", format="png", interactive=False)
        result = gr.Image(label="Result", format="png", interactive=False)
    in_photo = gr.Image(label="Result in your photo", format="png", interactive=False)
    notes = gr.State(())

    inputs = [model_id, original, reference] + sliders + controls.choices + ref_controls.choices
    outputs = [where_to, where_from, result, in_photo, controls.faces, ref_controls.faces, notes]
    labelled_by_notes(notes, [where_to, where_from])
    wiring.on(run.click, run_grid_transplant, inputs, outputs, api_name="stylemap_grid_transplant")
    return sliders


def _build_reconstruction(shared: Shared) -> None:
    wiring, model_id = shared.wiring, shared.model_id
    with gr.Row():
        with gr.Column():
            image, controls = shared.photo_column("Photo", 3)
            run = gr.Button("Reconstruct", variant="primary")
        net_input = gr.Image(label="Network input", format="png", interactive=False)
        result = gr.Image(label="Reconstruction", format="png", interactive=False)
    metrics = gr.Markdown()
    in_photo = gr.Image(label="Result in your photo", format="png", interactive=False)
    notes = gr.State(())

    inputs = [model_id, image] + controls.choices
    outputs = [net_input, result, metrics, in_photo, controls.faces, notes]
    labelled_by_notes(notes, [net_input])
    wiring.on(run.click, run_reconstruction, inputs, outputs, api_name="stylemap_reconstruct")
    examples = shared.photo_examples(image, "Example photos (reconstructed on click)")
    if examples:
        wiring.examples(examples, (run_reconstruction, inputs, outputs))


def _build_style_mixing(shared: Shared) -> list:
    """-> the two results, whose labels name the stylemap grid."""
    wiring, model_id = shared.wiring, shared.model_id
    coarse_label, fine_label = mix_labels(grid_of(wiring.ctx, shared.first))
    with gr.Row():
        with gr.Column():
            a, controls_a = shared.photo_column("A", 4)
        with gr.Column():
            b, controls_b = shared.photo_column("B", 5)
    run = gr.Button("Mix", variant="primary")
    with gr.Row():
        coarse = gr.Image(label=coarse_label, format="png", interactive=False)
        fine = gr.Image(label=fine_label, format="png", interactive=False)
        input_a = gr.Image(label="A: network input", format="png", interactive=False)
        input_b = gr.Image(label="B: network input", format="png", interactive=False)
    in_photo = gr.Image(label="Result in your photo (A)", format="png", interactive=False)

    notes = gr.State(())

    inputs = [model_id, a, b] + controls_a.choices + controls_b.choices
    outputs = [coarse, fine, input_a, input_b, controls_a.faces, controls_b.faces, notes,
               in_photo]
    labelled_by_notes(notes, [input_a, input_b])
    wiring.on(run.click, run_style_mix, inputs, outputs, api_name="stylemap_mix")
    photos = shared.photos
    if len(photos) >= 2:
        pairs = [(photos[i], photos[(i + 1) % len(photos)]) for i in range(min(2, len(photos)))]
        examples = labelled_examples([[x.path, y.path] for x, y in pairs],
                                     [f"A {x.label}, B {y.label}" for x, y in pairs], [a, b],
                                     label="Example pairs (mixed on click)")
        wiring.examples(examples, (run_style_mix, inputs, outputs))
    return [coarse, fine]


def _build_interpolation(shared: Shared) -> None:
    wiring, model_id = shared.wiring, shared.model_id
    gr.Markdown("The authors' w interpolation (`generate.py`, the paper's FID_lerp): both "
                "pictures are encoded and their stylemaps mixed linearly, (1 − t)·A + t·B, then "
                "decoded. t = 0 is A's reconstruction, t = 1 B's. The authors draw one random t "
                "per pair; here the whole path is shown as frames.")
    with gr.Row():
        with gr.Column():
            a, controls_a = shared.photo_column("A (t = 0)", 6)
        with gr.Column():
            b, controls_b = shared.photo_column("B (t = 1)", 7)
    with gr.Row():
        steps = gr.Slider(2, 16, value=8, step=1, label="Frames")
        run = gr.Button("Interpolate", variant="primary")
    with gr.Row():
        input_a = gr.Image(label="A: network input", format="png", interactive=False)
        result = gr.Image(label="Frame at t", format="png", interactive=False)
        input_b = gr.Image(label="B: network input", format="png", interactive=False)
    t = gr.Slider(0, 1, value=1, step=1, label="Interpolation t (frame)")
    strip = gr.Gallery(label="All frames, t = 0 … 1", columns=8, height=180, format="png")
    frames = gr.State([])
    notes = gr.State(())

    inputs = [model_id, a, b, steps] + controls_a.choices + controls_b.choices
    outputs = [result, strip, frames, t, input_a, input_b, controls_a.faces, controls_b.faces, notes]
    labelled_by_notes(notes, [input_a, input_b])
    wiring.on(run.click, run_interpolation, inputs, outputs, api_name="stylemap_interpolate")
    t.change(pick_frame, [frames, t], result, api_visibility="private", queue=False)


def _build_semantic(shared: Shared) -> None:
    wiring, model_id = shared.wiring, shared.model_id
    gr.Markdown("The authors' semantic manipulation (`semantic_manipulation.py`): a linear SVM "
                "separates the stylemaps of pictures **with** an attribute from pictures "
                "**without** it, and a picture's stylemap is moved along the boundary's unit "
                "normal, everywhere (global) or only in the cells you paint (local). The authors "
                "use 10,000 CelebA-HQ pictures per attribute, labelled by a classifier, fit on 90 % "
                "and measure the accuracy on the 10 % held out; here you give the two sets "
                f"(uploads and/or samples by seed, at most {MAX_SET} each), so the direction is "
                "rough and its accuracy is measured by cross-validation (every example held out "
                "once). Their figures use distances 0 … 20.")
    with gr.Row():
        with gr.Column():
            with_files = gr.File(label="With the attribute (photos)", file_count="multiple",
                                 file_types=["image"], type="filepath")
            with_seeds = gr.Textbox(label="… and/or samples by seed", placeholder="e.g. 1, 2, 3")
        with gr.Column():
            without_files = gr.File(label="Without the attribute (photos)", file_count="multiple",
                                    file_types=["image"], type="filepath")
            without_seeds = gr.Textbox(label="… and/or samples by seed", placeholder="e.g. 4, 5, 6")
    with gr.Row():
        plain = gr.Checkbox(value=False, label="Plain framing for the sets (no face alignment)")
        fit = gr.Button("Fit the direction", variant="primary")
    summary = gr.Markdown()
    sets = gr.Gallery(label="The two sets as the network sees them", columns=8, height=150,
                      format="png")
    kept = gr.State(None)
    fit_inputs = [model_id, with_files, with_seeds, without_files, without_seeds, shared.psi, plain]
    wiring.on(fit.click, run_fit_direction, fit_inputs, [summary, kept, sets],
              api_name="stylemap_semantic_fit")

    with gr.Row():
        with gr.Column():
            controls = shared.photo_slot("Photo to edit")
            photo = controls.photo
            frame = gr.Button("Frame it (puts the network's input in the editor)")
        with gr.Column():
            editor = gr.ImageEditor(label="Picture to edit: paint cells for a local edit (optional)",
                                    format="png", type="numpy", layers=False,
                                    brush=gr.Brush(colors=["#66ffff"], default_size=24))
            shared.seed_row(editor, 8)
    with gr.Row():
        strength = gr.Slider(-40, 40, value=20, step=1, label="Strength d (towards 'with'; negative: away)")
        steps = gr.Slider(2, 9, value=5, step=1, label="Frames (d from 0)")
        apply = gr.Button("Edit", variant="primary")
    with gr.Row():
        net_input = gr.Image(label="Network input", format="png", interactive=False)
        cells = gr.Image(label="Local: the stylemap cells the paint touches", format="png",
                         interactive=False, image_mode="L")
        in_photo = gr.Image(label="Strongest edit in your photo", format="png", interactive=False)
    global_strip = gr.Gallery(label="Global: the whole stylemap moved", columns=9, height=180, format="png")
    local_strip = gr.Gallery(label="Local: only the painted cells moved", columns=9, height=180, format="png")
    framed = gr.State(None)
    notes = gr.State(())
    frame_inputs = [model_id, photo] + controls.choices
    wiring.on(frame.click, frame_original, frame_inputs,
              [editor, net_input, controls.faces, framed, notes], record=False)
    labelled_by_notes(notes, [net_input])
    wiring.on(apply.click, run_semantic_edit, [model_id, kept, editor, strength, steps, framed],
              [global_strip, local_strip, net_input, cells, in_photo], api_name="stylemap_semantic_edit")


def _build_random(shared: Shared) -> None:
    wiring, model_id, first = shared.wiring, shared.model_id, shared.first
    with gr.Row():
        seeds = gr.Textbox(value="0, 1, 2, 3", label="Seed(s)", scale=3)
        dice = gr.Button("Random seed", scale=0)
        run = gr.Button("Generate", variant="primary", scale=1)
    gallery = gr.Gallery(label="Samples", columns=4, format="png")
    inputs = [model_id, seeds, shared.psi]
    examples = labelled_examples([[first, "0, 1, 2, 3", 0.7], [first, "0, 1, 2, 3", 1.0]],
                                 ["seeds 0-3 · ψ 0.7", "seeds 0-3 · ψ 1.0 (full variety)"],
                                 inputs, label="Examples")

    wiring.on(run.click, run_random, inputs, gallery, api_name="stylemap_random")
    wiring.examples(examples, (run_random, inputs, [gallery]))
    dice.click(functools.partial(random_seeds, 4), None, seeds, queue=False, api_visibility="private")
