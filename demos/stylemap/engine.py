"""StyleMap's engine: StyleMapGAN's real-time local editing and transplantation (Kim et al.,
CVPR 2021) as functions of models and tensors, without Gradio (what `bench`, the engine tests
and the handlers call).

Images in, images out, one encoder pass over [original, references] and one generator pass per
operation. `local_edit` (w+ or w blend), `transplant` (the authors' interactive demo: regions
of several references, shifted, with interpolation frames), `transplant_grid` (generate.py's
unaligned transplantation: boxes of stylemap cells in w), `reconstruct` (encoder fidelity),
`style_mix`, `interpolate` (generate.py's w interpolation, as frames), `fit_direction` +
`manipulate` (semantic_manipulation.py: a linear SVM on two labelled sets, then a move along
its normal, global or in painted cells) and `sample`. The model is a
`core.models.stylemapgan.StyleMapGAN` (generator + encoder of one checkpoint; `sample` goes
through its Generator protocol).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from core.device import placement
from core.errors import UserError
from core.images import editor_image_and_mask, editor_is_empty, mask_picture, overlay, pil_to_tensor, to_uint8
from core.lpips import lpips_distance
from core.models.stylemapgan import Box, StyleMapGAN
from core.svm import HeldOut, LinearSVM, cross_validate, fit_linear_svm

MAX_REFERENCES = 3
TRANSPLANT_PIXELS = 4 * 256 * 256  # pixels per generator pass (4 frames at 256 px, 1 at 512 px
# and up): bounds memory however many frames are asked for
REFERENCE_COLORS = ((254, 39, 18), (102, 176, 50), (254, 254, 51))  # the authors' demo colours


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
    lp = None
    if with_lpips:
        lp = float(lpips_distance(recon, target, net="vgg")[0])
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


def landed_region(model: StyleMapGAN, masks: torch.Tensor, shifts: Sequence[tuple[int, int]]
                  ) -> np.ndarray:
    """Where the references' regions land in the frame: the union of the painted masks moved
    by their shifts (what leaves the square dropped) -> float [size, size] in {0, 1}."""
    G = model.G
    landed = G.landing_cells(masks.to(G.device, G.dtype), shifts, model.size)
    return landed.any(0).float().cpu().numpy()


GRID_BOXES = 2  # generate.py's AFHQ example uses two
BOX_FIELDS = ("to_row", "to_col", "from_row", "from_col", "height", "width")
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
