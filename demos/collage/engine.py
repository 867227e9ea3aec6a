"""Collage tab: composition by latent regression (Chai, Wulff, Isola, ICLR 2021).

Engine (no Gradio): `compose` pastes parts into one canvas (later parts on top) and returns
it with the union of their masks; `regenerate` runs the masked regressor E and the generator
G once each; `complete` (inpainting, several completions), `refine` (the authors'
Enc+LBFGS, loss `refine_loss`), `finetune` (the authors' fine-tuning of a copy of E on one
photo), `leakage` / `variation_map` / `independence` (the paper's part-independence measure
s_c, Table 1), `three_ways` (pixel vs latent blending vs regression, Eqs. 6-8) and
`random_hints` (the training masks). Models: a `core.models.regressor` encoder and the
generator it was trained for (the regressor's registry entry names it: `entry.generator`).

Handlers (`compose_collage`, `finetune_regressor`, `inpaint`, `inpaint_random_hints`,
`compute_variation_map`, `compare_blends`, `sample_picture`, `use_photo`, ...) are
module-level functions of the app context and the widgets' values; `build_tab` lays out one
builder per sub-tab (Compose, Inpaint, Variation map, Compose vs blend). A person's
fine-tuned regressor is a `TunedRegressor` (weights on the CPU) in their session state; the
shared model in the cache is never modified.

A person's photo enters Compose (as the base) and Inpaint through `use_photo`: opened with
`open_photo`, framed as the domain's training pictures were (`core.faces.frame_photo` with the
registry's framing: FFHQ or CelebA-HQ face alignment, letterbox, centre crop) and put into the
editor; the `FramedPhoto` is kept per session, and while the editor still holds its network
input the result is also pasted back into the photo at full resolution ("Result in your
photo", also in "Download all").
"""
from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Sequence, Union

import gradio as gr
import numpy as np
import torch
import torch.nn.functional as F

from core.blend import translate
from core.context import AppContext
from core.device import generator as seeded
from core.device import placement
from core.errors import UserError
from core.faces import FramedPhoto
from core.images import (ExamplePhoto, editor_image_and_mask, editor_is_empty,
                         heatmap, mask_picture, photos_for, to_uint8)
from core.lbfgs import FullBatchLBFGS
from core.lpips import lpips_distance
from core.models.generator import Generator
from core.recipe import Run
from core.gpu import gpu_task, user_errors
from core.photo_slot import faces_gallery, frame_input, photo_slot, slot_line, still_shows
from core.photo_slot import frame_size as slot_frame_size
from core.ui import (GPU_LANE, MAX_SEED, TabWiring, labelled_examples, licence_line, quietly,
                     record, seed_picker, shift_range, shift_sliders, tab_header)

if TYPE_CHECKING:  # model code is imported when a model is loaded, not at start-up
    from core.models.proggan import ProGANGenerator
    from core.models.stylegan2 import StyleGAN2Generator

PAPER = "https://arxiv.org/abs/2103.10426"
HOW_IT_WORKS = f"""
A regressor network **E** was trained to predict, from an image whose pixels are only partly
known (RGB of the known pixels + a mask of which ones are known), the latent code (W+ or z) of a
**frozen** GAN generator **G** whose picture matches the known pixels. Trained only on the
generator's own samples with random blob masks, it learns to *fill in* what is missing in a way
the GAN finds plausible. That makes collages easy:

* **Compose**: paste parts of several pictures into one canvas (later parts on top), give E the
  canvas and the union of the part masks; G renders one coherent picture (x_rec = G(E(∪ m_i ⊗ x_i,
  ∪ m_i)), the paper's Eq. 4). The known region is re-rendered too: colours and alignment
  are harmonised rather than pasted. The number shown is the masked L1 between the result and
  the collage on the known pixels (the paper's Eq. 5 loss), in [-1, 1] units, on G's
  unclamped output as the authors' losses see it.
* **Inpaint**: erase a region; E imagines it. The regressor is deterministic, so the
  extra completions come from sparse **hints**: a few random blobs of other generated pictures
  placed inside the hole (our choice; the paper shows one completion per mask).
* **Refine** (optional, off by default): the paper's "Enc+LBFGS", as the authors' code runs
  it: their L-BFGS (`FullBatchLBFGS`) on E's code with their loss, (1 - 0.5) masked L1 + 0.5
  masked LPIPS on the known pixels + 0.25 MSE(E(G(w), mask), E(collage, mask)) (the
  encoder-consistency term), 3000 iterations by default on a GPU (minutes), a short run on a
  CPU.
* **Fine-tune the regressor on the base** (for a real photo): the authors' 30 Adam steps (lr
  5e-5) on a copy of E so that it reconstructs that photo better; Compose then uses the copy,
  in your session only. Their identity term for faces is left out (no face-identity network).
* **Variation map**: replace the painted part with N = 20 other samples, regenerate each and
  take the per-pixel standard deviation: the paper's test of how independently parts are
  composed (Sec. 4.4). Its number s_c is the share of that variation outside the part (Table
  1), averaged over repeats; Table 1 cuts faces into parts with a face-parsing network, here
  the part is the region you paint, or for faces the eyes, nose, mouth or skin outlined by
  face landmarks on each repeat's face.
* **Compose vs blend** (Sec. 4.3, Eqs. 6-8): the same two pictures composed three ways: pixel
  blending G(E(a x1 + (1 - a) x2)), latent blending G(a E(x1) + (1 - a) E(x2)) and regression
  G(E(m x2 + (1 - m) x1)): only regression changes the part alone.

* **Your photo**: Compose (as the base) and Inpaint take a photo framed as the domain's
  training pictures were (faces aligned with the FFHQ or CelebA-HQ recipe, cars letterboxed,
  churches, horses and rooms centre-cropped); the result is also pasted back into the photo at
  its full resolution, with a feathered edge ("Result in your photo").

Paper: [Chai, Wulff, Isola, *Using latent space regression to analyze and leverage
compositionality in GANs*, ICLR 2021]({PAPER}). StyleGAN2 domains regress W+ (one style
vector per layer); ProGAN domains (churches, living rooms, CelebA-HQ faces) regress the
Gaussian z itself, as in the paper.
"""
REFINE_NOTE = ("Enc+LBFGS follows the authors' `invert_lbfgs`: their loss and weights, their "
               "`FullBatchLBFGS` (first step lr 1 along the negative gradient, history 10, "
               "weak-Wolfe line search of at most 10 trials), every iteration run, "
               "from E's code of the collage. The former Adam refinement is gone: it was not "
               "clearly better for interactive use, and interactive composing needs no "
               "refinement at all.")
TAB = "collage"
# the generators a regressor predicts for: both render its latent (W+, or ProGAN's z) with .synthesis
Paired = Union["StyleGAN2Generator", "ProGANGenerator"]
MAX_PARTS = 3
HINT_COVERAGE = (0.1, 0.4)  # inpainting hints: sparse blobs inside the hole
# the authors' training masks: the cutoff on the upsampled noise is drawn from U(0.3, 1); the
# known share is not the cutoff (bilinear upsampling pulls the noise towards 0.5): 19 % on
# average at the lowest cutoff (2-50 %), all of it at the highest
TRAIN_COVERAGE = (0.3, 1.0)
# Enc+LBFGS, the authors' `utils/inversions.py` `invert_lbfgs`
LBFGS_STEPS = 3000  # their default num_steps (the paper's Table 4 "Enc+LBFGS"): on a GPU
LBFGS_CPU_STEPS = 5  # the short run offered on a CPU (about 15 s per iteration at 256 px)
LAMBDA_LPIPS = 0.5  # lambda_l: (1 - 0.5) * masked L1 + 0.5 * masked LPIPS-VGG
LAMBDA_ENCODER = 0.25  # lambda_f: MSE between E(G(w), mask) and E(target, mask)
LBFGS_GPU_SECONDS = 0.1  # estimated GPU time of one iteration at 256 px (ZeroGPU's duration)
# their FullBatchLBFGS (core.lbfgs) at its defaults, lr 1 and history 10, with invert_lbfgs's
# max_ls 10: at most 10 line-search trials are tested, then the step gives up (t = 0)
LBFGS_LR = 1.0
LBFGS_HISTORY = 10
LBFGS_MAX_LS = 10
# fine-tuning the regressor on one photo, the authors' notebooks/finetune_and_edit.ipynb
FINETUNE_STEPS = 30
FINETUNE_LR = 5e-5
FINETUNE_BETAS = (0.5, 0.999)
LPIPS_SIZE = 256  # their training and fine-tuning LPIPS runs on pictures average-pooled to 256
# the paper's independence measure s_c (Sec. 4.4, Table 1): N = 20 samples per repeat, 100
# repeats; parts from a face-parsing network. Table 1's s_c per part, for the two face models
TABLE1_SAMPLES = 20
TABLE1_REPEATS = 100
# face parts from dlib's 68 landmarks (0-based indices): a stand-in for Table 1's face parser
# for the parts landmarks outline; skin is the face (jaw line and brows) minus the others
LANDMARK_PARTS = {"eyes": (range(36, 42), range(42, 48)), "nose": (range(27, 36),),
                  "mouth": (range(48, 60),)}
PART_CHOICES = ("painted region", "eyes", "nose", "mouth", "skin")
TABLE1 = {
    "collage-pgan-celebahq": ("ProGAN CelebA-HQ", {
        "background": 0.167, "skin": 0.177, "eyes": 0.043, "ears": 0.024, "nose": 0.030,
        "mouth": 0.038, "hair": 0.170, "average": 0.093}),
    "collage-ffhq": ("StyleGAN2 FFHQ", {
        "background": 0.148, "skin": 0.248, "eyes": 0.062, "ears": 0.024, "nose": 0.065,
        "mouth": 0.045, "hair": 0.140, "average": 0.105}),
}


# ---- engine --------------------------------------------------------------------------------
@dataclass
class Part:
    image: torch.Tensor  # [1, 3, S, S] in [-1, 1]
    mask: torch.Tensor  # [1, 1, S, S] in {0, 1}: the region to take
    shift: tuple[int, int] = (0, 0)  # (dx, dy) pixels: where the region lands


def compose(parts: Sequence[Part]) -> tuple[torch.Tensor, torch.Tensor]:
    """(collage, union mask): each part's region over the canvas, later parts on top; pixels
    no part covers stay 0 (unknown)."""
    if not parts:
        raise UserError("Add at least one part: a picture with the region to take painted.")
    collage = torch.zeros_like(parts[0].image)
    union = torch.zeros_like(parts[0].mask)
    for p in parts:
        image, mask = translate(p.image, *p.shift), translate(p.mask, *p.shift)
        collage = image * mask + collage * (1 - mask)
        union = torch.maximum(union, mask)
    if union.sum() == 0:
        raise UserError("The parts cover nothing: paint a region on at least one picture "
                        "(or it was shifted out of the frame).")
    return collage, union


def sample_images(G: Generator, seeds: Sequence[int]) -> torch.Tensor:
    """Generated pictures, as the regressor was trained on -> [B, 3, S, S] in [-1, 1]: the
    family's own sampler (StyleGAN2: `seed_normal` z; ProGAN: the authors' z per seed), no
    truncation (the authors trained on untruncated samples), fixed noise."""
    return G.render(G.sample_latents([int(s) for s in seeds]), truncation=1.0)


@torch.inference_mode()
def regenerate(E: torch.nn.Module, G: Paired, collage: torch.Tensor, mask: torch.Tensor,
               clamp: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(image, w+): one regressor pass and one generator pass, batched over the inputs
    (`clamp=False`: G's raw output, which StyleGAN2 lets leave [-1, 1])."""
    device, dtype = placement(E)
    w = E(collage.to(device, dtype), mask.to(device, dtype))
    image = G.synthesis(w).float()
    return (image.clamp(-1, 1) if clamp else image), w


def masked_l1(result: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean absolute error over the known pixels (all channels): the paper's Eq. 5. The tab
    passes G's unclamped output, as the authors' losses see it."""
    m = mask.to(result.device, result.dtype).expand_as(result)
    return float((result - target.to(result)).abs().mul(m).sum() / m.sum().clamp(min=1))


def random_hints(size: int, seed: int, coverage: tuple[float, float] = TRAIN_COVERAGE,
                 batch: int = 1) -> torch.Tensor:
    """The authors' training masks (`mask_upsample`): uniform noise on a 6x6 grid, bilinearly
    upsampled, known where below one cutoff drawn from `coverage` -> [B, 1, size, size]."""
    g = seeded(seed)
    u = torch.rand(batch, 1, 6, 6, generator=g)
    up = F.interpolate(u, size=(size, size), mode="bilinear", align_corners=False)
    cut = coverage[0] + (coverage[1] - coverage[0]) * torch.rand(1, generator=g)
    return (up < cut).float()


def complete(E: torch.nn.Module, G: Paired, image: torch.Tensor, known: torch.Tensor,
             n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inpainting: n completions of `image` where `known` is 0 -> ([n, 3, S, S], hint masks).

    Completion 0 uses the known pixels only; completion k > 0 adds sparse blobs (10-40 % of the
    hole) of generated picture `seed + k` inside the hole, so E imagines n different fillings.
    """
    images, masks, _ = complete_with_latents(E, G, image, known, n, seed)
    return images, masks


@torch.inference_mode()
def complete_with_latents(E: torch.nn.Module, G: Paired, image: torch.Tensor, known: torch.Tensor,
                          n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`complete`, also returning the n regressed latents (W+, or ProGAN's z)."""
    size = image.shape[-1]
    hole = 1 - known
    canvases, masks = [image * known], [known]
    if n > 1:
        donors = sample_images(G, [seed + k for k in range(1, n)])
        for k in range(1, n):
            blob = random_hints(size, seed + k, HINT_COVERAGE) * hole
            canvases.append(image * known + donors[k - 1:k].to(image) * blob)
            masks.append(known + blob)
    images, latents = regenerate(E, G, torch.cat(canvases), torch.cat(masks))
    return images, torch.cat(masks), latents


def masked_lpips(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Spatial LPIPS-VGG averaged over the known pixels, per image [B] (the authors'
    `Masked_LPIPS_Loss`: sum(map * m) / sum(m), at the pictures' own resolution)."""
    d = lpips_distance(x, y, net="vgg", spatial=True)
    m = mask.to(d)
    return (d * m).sum((1, 2, 3)) / m.sum((1, 2, 3))


def masked_l1_per_image(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the known pixels, all channels, per image [B] (the authors'
    `Masked_L1_Loss`)."""
    m = mask.to(x).expand_as(x)
    return ((x - y).abs() * m).sum((1, 2, 3)) / m.sum((1, 2, 3))


def refine_loss(E: torch.nn.Module, G: Paired, latent: torch.Tensor, target: torch.Tensor,
                mask: torch.Tensor, target_code: torch.Tensor) -> torch.Tensor:
    """The authors' Enc+LBFGS objective (`invert_lbfgs`, lambda_l = 0.5, lambda_f = 0.25):
    (1 - 0.5) * masked L1 + 0.5 * masked LPIPS of G(w) against the target on the known pixels,
    + 0.25 * MSE(E(G(w), mask), E(target, mask)), the encoder-consistency term that keeps w
    where the regressor would put such a picture. G's output is not clamped; E sees the whole
    G(w) with the mask, as their `nets.encode` does. -> a scalar (summed over the batch)."""
    x = G.synthesis(latent)
    pixels = (1 - LAMBDA_LPIPS) * masked_l1_per_image(x, target, mask) \
        + LAMBDA_LPIPS * masked_lpips(x, target, mask)
    code = E(x, mask, hide_unknown=False)
    return pixels.sum() + LAMBDA_ENCODER * F.mse_loss(code, target_code)


@dataclass
class Refinement:
    image: torch.Tensor  # [B, 3, S, S] in [-1, 1] (clamped for display)
    raw: torch.Tensor  # G's unclamped output (what the losses and the masked L1 see)
    latent: torch.Tensor  # the refined W+ (or ProGAN z)
    losses: list[float]  # the objective before (index 0) and after each LBFGS iteration
    iterations: int
    evaluations: int  # evaluations of the loss (forward passes), line searches included


def refine(E: torch.nn.Module, G: Paired, collage: torch.Tensor, mask: torch.Tensor,
           steps: int, progress: Callable[[int, int], None] | None = None) -> Refinement:
    """Enc+LBFGS as the authors' `invert_lbfgs` runs it: start from E's code of the whole
    target with the mask (their `nets.encode(target, mask)`: E([x, m]), unknown pixels not
    zeroed; the same code is the consistency term's target) and take exactly `steps`
    iterations of their `FullBatchLBFGS` (core.lbfgs: lr 1, history 10, weak-Wolfe line search
    of at most 10 trials) on `refine_loss`. `progress(k, steps)` after iteration k.
    G and E must be float32 (gradients)."""
    target, m = collage.detach().clone(), mask.detach().clone()
    with torch.no_grad():  # not inference mode: both take part in the graph below
        target_code = E(target, m, hide_unknown=False)
    w = target_code.clone().requires_grad_(True)
    opt = FullBatchLBFGS([w], lr=LBFGS_LR, history_size=LBFGS_HISTORY, max_ls=LBFGS_MAX_LS)

    def closure() -> torch.Tensor:
        return refine_loss(E, G, w, target, m, target_code)

    loss = opt.evaluate(closure)
    losses, evaluations = [loss.item()], 1
    for k in range(1, steps + 1):
        done = opt.step(closure, loss)
        loss, evaluations = done.loss, evaluations + done.evaluations
        losses.append(loss.item())
        if progress:
            progress(k, steps)
    with torch.inference_mode():
        raw = G.synthesis(w.detach()).float()
    return Refinement(raw.clamp(-1, 1), raw, w.detach(), losses, opt.iterations, evaluations)


def finetune(E: torch.nn.Module, G: Paired, image: torch.Tensor, steps: int = FINETUNE_STEPS,
             seed: int = 0, progress: Callable[[int, int], None] | None = None
             ) -> tuple[torch.nn.Module, list[float]]:
    """The authors' fine-tuning of the regressor on one real photo (`finetune_and_edit.ipynb`)
    -> (a tuned *copy* of E, the loss per step). E itself (the shared, cached model) is never
    modified. Per step: one of the training masks (drawn from seed + step) hides part of the
    photo, E regresses a code from the rest, and Adam (lr 5e-5, betas 0.5/0.999) lowers
    MSE(G(code), photo) + LPIPS-VGG on both average-pooled to 256 px. BatchNorm stays on its
    stored statistics (eval mode), as in the notebook. Their identity term for faces (0.1 x
    an ArcFace distance) is left out: no face-identity network is registered here. The mask
    channel is {0, 1} as the StyleGAN2 regressors were trained (the notebook passes the
    ProGAN convention's -0.5/0.5 straight to the StyleGAN encoder; E here converts per
    family). G and E must be float32."""
    tuned = copy.deepcopy(E).eval()
    params = list(tuned.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=FINETUNE_LR, betas=FINETUNE_BETAS)
    target = image.detach().clone()
    pool = (lambda t: F.adaptive_avg_pool2d(t, LPIPS_SIZE)) if target.shape[-1] > LPIPS_SIZE \
        else (lambda t: t)
    pooled_target = pool(target)
    losses = []
    for step in range(steps):
        mask = random_hints(target.shape[-1], seed + step).to(target)
        out = G.synthesis(tuned(target * mask, mask))
        loss = F.mse_loss(out, target) + lpips_distance(pool(out), pooled_target, "vgg").mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if progress:
            progress(step + 1, steps)
    return tuned.requires_grad_(False), losses


@dataclass
class TunedRegressor:
    """A person's fine-tuned regressor, kept in their session (weights on the CPU; the shared
    model in the cache is never touched)."""
    model_id: str
    state: dict[str, torch.Tensor]
    steps: int
    losses: list[float]

    def build(self, E: torch.nn.Module) -> torch.nn.Module:
        """A copy of the shared E with these weights, on E's device and dtype."""
        device, dtype = placement(E)
        tuned = copy.deepcopy(E)
        tuned.load_state_dict({k: v.to(device, dtype if v.is_floating_point() else v.dtype)
                               for k, v in self.state.items()})
        return tuned.eval().requires_grad_(False)


@torch.inference_mode()
def three_ways(E: torch.nn.Module, G: Paired, base: torch.Tensor, donor: torch.Tensor,
               part: torch.Tensor, alpha: float) -> dict[str, torch.Tensor]:
    """The paper's Sec. 4.3 comparison (Eqs. 6-8): the same two pictures, x1 = `base` and
    x2 = `donor` with its part m, composed three ways, every encoding with the full mask ->
    {"pixel": G(E(a x1 + (1 - a) x2)) (pixel alpha-blending), "latent": G(a E(x1) + (1 - a)
    E(x2)) (latent blending), "regression": G(E(m x2 + (1 - m) x1)) (the method), and the
    inputs "blend" and "collage"}. a = `alpha` is the base's weight."""
    device, dtype = placement(E)
    base, donor, part = (t.to(device, dtype) for t in (base, donor, part))
    blend = alpha * base + (1 - alpha) * donor
    collage = part * donor + (1 - part) * base
    w = E(torch.cat([base, donor, blend, collage]), torch.ones_like(part).expand(4, -1, -1, -1))
    mixed = alpha * w[0:1] + (1 - alpha) * w[1:2]
    out = G.synthesis(torch.cat([w[2:3], mixed, w[3:4]])).float().clamp(-1, 1)
    return {"pixel": out[0:1], "latent": out[1:2], "regression": out[2:3],
            "blend": blend.float(), "collage": collage.float()}


def leakage(outputs: torch.Tensor, part: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The paper's Sec. 4.4 measure on N regenerations that differ only in part c ->
    (sigma_c [H, W], s_c). sigma_c is the per-pixel standard deviation over the N (population,
    averaged over RGB); v_c = sigma_c / sum(sigma_c) its normalised map; s_c = sum((1 - m_c) *
    v_c), the share of the variation that lands outside the part (0: perfectly independent;
    Table 1's number)."""
    sigma = outputs.float().std(0, unbiased=False).mean(0)
    v = sigma / sigma.sum().clamp(min=1e-12)
    outside = 1 - part.reshape(part.shape[-2:]).to(v)
    return sigma, float((outside * v).sum())


@torch.inference_mode()
def variation_map(E: torch.nn.Module, G: Paired, base: torch.Tensor, part: torch.Tensor,
                  n: int, seed: int, batch: int = 4) -> tuple[torch.Tensor, float]:
    """One repeat of the paper's independence probe: put n other samples' (seeds seed,
    seed + 1, ...) pixels into the part, regenerate each with the full mask (x_{c,n} =
    G(E(m_c x_n + (1 - m_c) x))) -> `leakage` of the n results."""
    if n < 2:
        raise UserError("Use at least 2 samples for a standard deviation.")
    outs = []
    for start in range(0, n, batch):
        seeds = [seed + k for k in range(start, min(n, start + batch))]
        donors = sample_images(G, seeds).to(base)
        canvas = part * donors + (1 - part) * base
        outs.append(regenerate(E, G, canvas, torch.ones_like(part).expand(len(seeds), -1, -1, -1))[0].cpu())
    return leakage(torch.cat(outs), part.cpu())


def _hull(points: np.ndarray, size: int, scale: float = 1.0) -> np.ndarray:
    """The filled convex hull of landmark points, grown by `scale` about its centre -> [S, S]."""
    from PIL import Image, ImageDraw
    from scipy.spatial import ConvexHull

    centre = points.mean(0)
    pts = centre + (points - centre) * scale
    hull = pts[ConvexHull(pts).vertices]
    canvas = Image.new("L", (size, size), 0)
    ImageDraw.Draw(canvas).polygon([tuple(map(float, q)) for q in hull], fill=255)
    return np.asarray(canvas) > 127


def face_parts(picture: np.ndarray) -> dict[str, torch.Tensor]:
    """A face picture (uint8 [S, S, 3], an aligned face) -> {eyes, nose, mouth, skin} masks
    [1, 1, S, S] from dlib's 68 landmarks of its largest face (eyes and mouth grown by 30 %
    and 15 % to include lids and lips' edge; skin = the hull of jaw line and brows minus the
    three). Raises UserError when no face is found."""
    from PIL import Image

    from core.faces import detect

    faces = detect(Image.fromarray(picture))
    if not faces:
        raise UserError("No face found in the picture: face parts need a face; paint the part "
                        "instead (Part: painted region).")
    lm, size = faces[0].landmarks, picture.shape[0]
    grow = {"eyes": 1.3, "nose": 1.0, "mouth": 1.15}
    parts = {name: np.any([_hull(lm[list(ix)], size, grow[name]) for ix in groups], axis=0)
             for name, groups in LANDMARK_PARTS.items()}
    face = _hull(lm[:27], size)
    parts["skin"] = face & ~(parts["eyes"] | parts["nose"] | parts["mouth"])
    return {k: torch.from_numpy(v.astype(np.float32))[None, None] for k, v in parts.items()}


def independence(E: torch.nn.Module, G: Paired, base: torch.Tensor, part: torch.Tensor, n: int,
                 repeats: int, seed: int, progress: Callable[[int, int], None] | None = None,
                 part_of: Callable[[torch.Tensor], torch.Tensor] | None = None
                 ) -> tuple[torch.Tensor, list[float]]:
    """s_c repeated (Table 1 averages repeats over faces): repeat 1 is on `base`, repeat r > 1
    on generated picture seed + repeats * n + r - 1, each with its own n donors (repeat r:
    seeds seed + (r - 1) n ...) -> (mean sigma_c map, s_c per repeat). The part is `part` on
    every repeat, or `part_of(picture)` of each repeat's picture (face parts per face)."""
    sigmas, scores = [], []
    for r in range(repeats):
        x = base if r == 0 else sample_images(G, [seed + repeats * n + r]).to(base)
        if part_of is not None:
            part = part_of(x).to(base)
        sigma, s = variation_map(E, G, x, part, n, seed + r * n)
        sigmas.append(sigma)
        scores.append(s)
        if progress:
            progress(r + 1, repeats)
    return torch.stack(sigmas).mean(0), scores


def framed(value: dict | None, size: int, content: Sequence[int] | None = None,
           required: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """An editor's picture and paint in the generator's frame. Domains whose generator draws
    a letterboxed picture (LSUN cars: 512x384 content between black bars in 512x512) take
    uploads the same way: centre-cropped to the content's aspect, resized, padded with black
    (the bars, never painted)."""
    if not content or tuple(content) == (size, size):
        return editor_image_and_mask(value, size, required=required)
    w, h = int(content[0]), int(content[1])
    image, mask = editor_image_and_mask(value, (w, h), required=required)
    pad = ((size - w) // 2, size - w - (size - w) // 2, (size - h) // 2, size - h - (size - h) // 2)
    return F.pad(image, pad, value=-1.0), F.pad(mask, pad, value=0.0)


def unknown_as_grey(collage: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """The collage as the authors display it: pixels no part covers in light grey (200)."""
    grey = torch.full_like(collage, 200 / 127.5 - 1)
    return to_uint8(collage * mask + grey * (1 - mask))[0]


# ---- the model pair and its frame, from the registry -----------------------------------------
DEFAULT_FRAME = 512  # the shift sliders' span while no generator size is known


def load_pair(ctx: AppContext, model_id: str | None,
              dtype: torch.dtype | None = None) -> tuple[torch.nn.Module, Paired]:
    """(regressor E, the generator G it was trained for): the pairing is the regressor's
    registry entry (`generator`); a regressor whose latent G cannot take is refused here
    rather than failing inside the network."""
    if not model_id:
        raise UserError("Pick a domain first.")
    entry = ctx.registry.get(model_id)
    gen_id = ctx.registry.generator_of(entry).id
    E, G = ctx.model(model_id, dtype), ctx.model(gen_id, dtype)
    if E.n_latent != G.n_latent:  # ProGAN: one z on both sides
        raise UserError(f"{model_id} predicts {E.n_latent} style vectors but {gen_id} takes "
                        f"{G.n_latent}: they are not a matching pair.")
    return E, G


def pair_ids(ctx: AppContext, model_id: str | None, *_, **__) -> list[str]:
    """What a call on this domain needs before it computes (`core.gpu`): the regressor and
    the generator it was trained for."""
    if not model_id:
        raise UserError("Pick a domain first.")
    return [model_id, ctx.registry.generator_of(ctx.registry.get(model_id)).id]


def pair_ids_float32(ctx: AppContext, model_id: str | None, *_, **__) -> list:
    """The pair, and in float32 too (optimisers: fine-tuning)."""
    ids = pair_ids(ctx, model_id)
    return ids + [(i, torch.float32) for i in ids]


def compose_needs(ctx: AppContext, model_id: str | None, base_value, refine_on: bool, *_, **__) -> list:
    """The pair, and in float32 when Enc+LBFGS refines."""
    return pair_ids_float32(ctx, model_id) if refine_on else pair_ids(ctx, model_id)


def refine_seconds(ctx: AppContext, model_id: str | None, base_value, refine_on: bool,
                   steps: float, *_, **__) -> float:
    """GPU time for a compose: Enc+LBFGS iterations cost one to a few passes of E, G and LPIPS."""
    size = frame_size(ctx, model_id)
    return 30 + (float(steps) * LBFGS_GPU_SECONDS * (size / 256) ** 2 if refine_on else 0)


def roles(ctx: AppContext, model_id: str) -> dict[str, str | None]:
    """The recipe's models: the regressor and its generator."""
    return {"regressor": model_id, "generator": ctx.registry.get(model_id).generator}


def content_of(ctx: AppContext, model_id: str) -> tuple[int, int] | None:
    """The picture area (width, height) inside the generator's square frame when smaller
    (LSUN cars' letterbox): the regressor's registry `meta.content`, else its generator's."""
    return ctx.registry.content_of(ctx.registry.get(model_id))


def frame_size(ctx: AppContext, model_id: str | None) -> int:
    """The paired generator's picture size, from the registry (nothing is loaded): the range
    of the shift sliders. Falls back to DEFAULT_FRAME when the pairing is unknown (the Compose
    button then says what is wrong)."""
    if not model_id:
        return DEFAULT_FRAME
    try:
        size = ctx.registry.generator_of(ctx.registry.get(model_id)).image_size()
    except UserError:
        return DEFAULT_FRAME
    return size or DEFAULT_FRAME


# ---- a person's photo ------------------------------------------------------------------------
def framing_of(ctx: AppContext, model_id: str) -> str:
    """How photos are cut for a domain: the regressor's registry framing (inherited from its
    generator: the regressor sees what the generator draws)."""
    return ctx.registry.framing_of(ctx.registry.get(model_id))


def domain_photos(ctx: AppContext, ids: Sequence[str]) -> list[ExamplePhoto]:
    """The example photos that suit the tab's domains (`photos_for` each, in order, once
    each): faces for the face domains, animals for the others."""
    seen, photos = set(), []
    for model_id in ids:
        for p in photos_for(framing_of(ctx, model_id), model_id):
            if p.path not in seen:
                seen.add(p.path)
                photos.append(p)
    return photos


def frame_for_domain(ctx: AppContext, model_id: str | None, photo: Any, face: float | None = 1,
                     plain: bool = False) -> FramedPhoto:
    """A person's photo (a path) -> `FramedPhoto` in the paired generator's frame (its size,
    the domain's framing and content area), so the regressor sees it as it saw its training
    pictures (`core.photo_slot.frame_input`: a sample the domain drew is taken as drawn)."""
    if not model_id:
        raise UserError("Pick a domain first.")
    size = slot_frame_size(ctx, model_id)
    if not size:
        raise UserError(f"The registry does not say what size {model_id}'s generator draws: "
                        f"it cannot frame a photo for it.")
    return frame_input(ctx, model_id, photo, size, face, plain)[0]


def photo_in_use(framed_photo: FramedPhoto | None, value: dict | None) -> FramedPhoto | None:
    """The kept photo if the editor still holds its network input (paint on top is fine);
    None once a sample, an example or another picture replaced it, so a result is never
    pasted into a photo it was not made from. A browser's canvas may re-encode the picture,
    so `core.images.editor_holds` allows small differences."""
    return framed_photo if still_shows(value, framed_photo) else None


def in_photo_images(framed_photo: FramedPhoto | None, result: np.ndarray,
                    mask: np.ndarray | None = None) -> dict:
    """"Result in your photo" for a run's pictures: the result pasted back into the photo at
    full resolution (feathered; `mask` [S, S] in the frame restricts it to the edited region)
    and the photo itself; nothing when the run did not start from the photo."""
    if framed_photo is None:
        return {}
    return {"result_in_photo": framed_photo.paste(result, mask), "photo": framed_photo.photo}


def photo_settings(framed_photo: FramedPhoto | None) -> dict | None:
    """The recipe's account of the photo a run started from (None: it did not)."""
    return None if framed_photo is None else framed_photo.describe()


def shown_in_photo(run: Run | None, operations: Sequence[str] = ("compose",)) -> np.ndarray | None:
    """The last run's "Result in your photo" when it is one of `operations` (the sub-tab's own),
    else None (clears the picture: that run did not start from the photo)."""
    if run is None or run.recipe.get("operation") not in operations:
        return None
    return run.images.get("result_in_photo")


# ---- editor values -> parts ------------------------------------------------------------------
def editor_part(value: dict | None, size: int, content: Sequence[int] | None,
                shift: Sequence[Any] = (0, 0), whole_if_empty: bool = False) -> Part | None:
    """One editor as a Part in the generator's frame: None for an unused slot or (unless
    `whole_if_empty`, the base) a picture with nothing painted."""
    if editor_is_empty(value):
        return None
    image, mask = framed(value, size, content, required=False)
    if mask.sum() == 0:
        if not whole_if_empty:
            return None
        mask = torch.ones_like(mask)
    return Part(image, mask, (int(shift[0] or 0), int(shift[1] or 0)))


def centre_square(size: int) -> np.ndarray:
    """The middle half of a square frame in each direction (the examples' part)."""
    region = np.zeros((size, size), bool)
    region[size // 4: size - size // 4, size // 4: size - size // 4] = True
    return region


def painted_value(picture: np.ndarray, region: np.ndarray | None) -> dict:
    """A gr.ImageEditor value: `picture` with `region` painted white (nothing if None)."""
    if region is None:
        return {"background": picture, "layers": [], "composite": picture}
    layer = np.zeros(region.shape + (4,), np.uint8)
    layer[region] = 255
    composite = picture.copy()
    composite[region] = 255
    return {"background": picture, "layers": [layer], "composite": composite}


# ---- handlers (plain functions of the context and the widgets' values) ---------------------
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
    return shift_range(frame_size(ctx, model_id), 2 * MAX_PARTS)


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


def segmentation_sentence(choice: str) -> str:
    """How the part was cut (recipes and the summary line)."""
    if choice == PART_CHOICES[0]:
        return "the region you paint, the same on every repeat"
    return (f"the {choice} from dlib's 68 landmarks of each repeat's face (background, ears "
            "and hair have no landmark outline)")


def table1_line(model_id: str, choice: str = PART_CHOICES[0]) -> str:
    """The paper's Table 1 row for this regressor, and how our number differs from it."""
    if model_id not in TABLE1:
        return ("The paper's Table 1 measures the two face models only (ProGAN CelebA-HQ, "
                "StyleGAN2 FFHQ).")
    name, row = TABLE1[model_id]
    parts = ", ".join(f"{k} {v:.3f}" for k, v in row.items())
    return (f"Table 1, {name}: {parts}. There each face is cut into parts by a face-parsing "
            f"network and s_c is averaged over {TABLE1_REPEATS} repeats of N = {TABLE1_SAMPLES}; "
            f"here the part is {segmentation_sentence(choice)}.")


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


# ---- UI ------------------------------------------------------------------------------------
def _picture(wiring: TabWiring, model_id: gr.Dropdown, label: str,
             default_seed: int) -> tuple[gr.ImageEditor, gr.Number]:
    """A paintable picture with a "Sample from seed" under it."""
    editor = gr.ImageEditor(label=label, format="png", type="numpy", layers=False,
                            brush=gr.Brush(colors=["#ffffff"], default_size=24))
    return editor, seed_picker(wiring, editor, sample_picture, [model_id], default_seed)


def _photo_input(wiring: TabWiring, model_id: gr.Dropdown, editor: gr.ImageEditor,
                 use_label: str, api_name: str) -> gr.State:
    """"Your photo" (the app's photo slot: framed for the domain on upload, faces found,
    network input): "Use ..." puts the network input into `editor` and keeps the FramedPhoto
    in a session state, returned (the handlers paste results back into it)."""
    ctx = wiring.ctx
    with gr.Accordion("Your photo", open=True):
        slot_line(ctx, model_id)
        photos = domain_photos(ctx, ctx.model_ids("regressor"))  # the dropdown's domains
        with gr.Row():
            with gr.Column():
                slot = photo_slot(wiring, model_id, net_input=False, examples=photos)
            with gr.Column():
                network_input = gr.Image(label="Network input", format="png", interactive=False)
                caption = gr.Markdown()
        use = gr.Button(use_label, variant="secondary")
    slot.follow(wiring, model_id, network_input, caption)
    kept = gr.State(None)
    slot.clears(kept)
    inputs, outputs = [model_id, *slot.inputs], [editor, network_input, slot.faces, kept]
    wiring.on(use.click, use_photo, inputs, outputs, record=False, api_name=api_name)
    if slot.examples is not None:
        wiring.on(slot.examples.load_input_event.then, use_photo, inputs, outputs, record=False)
    return kept


def _show_in_photo(wiring: TabWiring, event: Any, in_photo: gr.Image, operations: Sequence[str]) -> None:
    """After a run of this sub-tab: its "Result in your photo" (nothing when it did not start
    from the photo). Read from the run, so the picture and "Download all" always agree."""
    event.success(functools.partial(shown_in_photo, operations=tuple(operations)),
                  wiring.download.state, in_photo, api_visibility="private", queue=False)


def _in_photo_output() -> gr.Image:
    return gr.Image(label="Result in your photo", format="png", interactive=False)


def _build_compose(wiring: TabWiring, model_id: gr.Dropdown, span: int) -> None:
    with gr.Row():
        with gr.Column():
            base, base_seed = _picture(wiring, model_id,
                                       "Base: paint what to keep (nothing painted: all of it)", 1)
        parts, part_seeds, dxs, dys = [], [], [], []
        for i in range(MAX_PARTS):
            with gr.Column():
                part, part_seed = _picture(wiring, model_id, f"Part {i + 1}: paint the region to take",
                                           2 + i)
                dx, dy = shift_sliders(span)
            parts.append(part)
            part_seeds.append(part_seed)
            dxs.append(dx)
            dys.append(dy)
    kept = _photo_input(wiring, model_id, base, "Use as base", api_name="collage_photo_base")
    tuned = _build_finetune(wiring, model_id, base)
    on_gpu = wiring.ctx.device.type == "cuda"
    with gr.Row():
        live = gr.Checkbox(value=True, label="Update while painting")
        do_refine = gr.Checkbox(value=False, label="Refine: Enc+LBFGS (the authors' latent optimisation)")
        refine_steps = gr.Slider(1, LBFGS_STEPS, value=LBFGS_STEPS if on_gpu else LBFGS_CPU_STEPS,
                                 step=1, label="LBFGS iterations")
        button = gr.Button("Compose", variant="primary")
    gr.Markdown(REFINE_NOTE + ("" if on_gpu else f" **No GPU here**: the default is a short run of "
                               f"{LBFGS_CPU_STEPS} iterations (seconds each); the authors' is "
                               f"{LBFGS_STEPS}."))
    with gr.Row():
        collage_out = gr.Image(label="Collage (unknown: grey)", format="png", interactive=False)
        mask_out = gr.Image(label="Known pixels (union mask)", format="png", interactive=False,
                            image_mode="L")
        result_out = gr.Image(label="Result G(E(collage, mask))", format="png", interactive=False)
        in_photo = _in_photo_output()
    info = gr.Markdown()
    first = model_id.value
    example_inputs = [model_id, base_seed, part_seeds[0], dxs[0], dys[0]]
    examples = labelled_examples(
        [[first, 1, 2, 0, 0], [first, 1, 2, span // 4, 0], [first, 5, 6, 0, span // 8]],
        ["centre of sample 2 pasted on sample 1",
         "the same part, moved right by a quarter of the frame",
         "centre of sample 6 on sample 5, moved down"],
        example_inputs,
        label="Example collages (samples by seed; part 1's centre painted, all of the base kept)")

    inputs = [model_id, base, do_refine, refine_steps] + parts + dxs + dys + [kept, tuned]
    outputs = [collage_out, mask_out, result_out, info]
    wiring.on(model_id.change, shift_ranges, model_id, dxs + dys, record=False, queue=False)
    events = [wiring.on(button.click, compose_collage, inputs, outputs, api_name="collage_compose"),
              wiring.on(examples.load_input_event.then, compose_example, example_inputs,
                        [base, parts[0]] + outputs)]
    for trigger in [base.change] + [p.change for p in parts] + [d.release for d in dxs + dys]:
        events.append(wiring.on(trigger, live_compose, [live] + inputs, outputs,
                                concurrency_id=GPU_LANE, trigger_mode="always_last",
                                show_progress="minimal"))
    for event in events:
        _show_in_photo(wiring, event, in_photo, ["compose"])


def _build_finetune(wiring: TabWiring, model_id: gr.Dropdown, base: gr.ImageEditor) -> gr.State:
    """"Fine-tune on the base": the authors' finetune_and_edit on the base picture; the tuned
    copy is kept in a session state (returned) that Compose reads."""
    tuned = gr.State(None)
    with gr.Accordion("Fine-tune the regressor on the base (for a real photo)", open=False):
        gr.Markdown(f"The authors' `finetune_and_edit`: {FINETUNE_STEPS} Adam steps (lr "
                    f"{FINETUNE_LR:g}) on a copy of the regressor so that it reconstructs this "
                    "picture better (MSE + LPIPS under random training masks); Compose then "
                    "uses the copy, in your session only. Their identity term for faces is left "
                    "out: no face-identity network is registered.")
        with gr.Row():
            steps = gr.Slider(1, 100, value=FINETUNE_STEPS, step=1, label="Fine-tuning steps")
            start = gr.Button("Fine-tune on the base", variant="secondary")
            forget = gr.Button("Back to the shared regressor")
        with gr.Row():
            before = gr.Image(label="Before: G(E(base))", format="png", interactive=False)
            after = gr.Image(label="After: G(E_tuned(base))", format="png", interactive=False)
        info = gr.Markdown()
    wiring.on(start.click, finetune_regressor, [model_id, base, steps], [before, after, info, tuned],
              api_name="collage_finetune")
    wiring.on(forget.click, forget_finetuning, None, [tuned, info], record=False, queue=False,
              api_name="collage_forget_finetuning")
    return tuned


def _build_compare(wiring: TabWiring, model_id: gr.Dropdown) -> None:
    with gr.Row():
        base, _ = _picture(wiring, model_id, "x1: the base", 11)
        part, _ = _picture(wiring, model_id, "x2: paint the part m to take", 12)
    with gr.Row():
        alpha = gr.Slider(0, 1, value=0.7, step=0.05,
                          label="a: the base's weight in both blends (the paper: 0.7 for a mouth)")
        run = gr.Button("Compare", variant="primary")
    inputs = gr.Gallery(label="Inputs", columns=2, format="png")
    results = gr.Gallery(label="Pixel blending · latent blending · regression", columns=3, format="png")
    wiring.on(run.click, compare_blends, [model_id, base, part, alpha], [inputs, results],
              api_name="collage_compare")


def _build_inpaint(wiring: TabWiring, model_id: gr.Dropdown) -> None:
    with gr.Row():
        with gr.Column():
            picture, _ = _picture(wiring, model_id, "Picture: paint the region to erase", 7)
            with gr.Row():
                n = gr.Slider(1, 8, value=4, step=1, label="Completions")
                seed = gr.Number(value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Hint seed")
            with gr.Row():
                run = gr.Button("Inpaint", variant="primary")
                hints = gr.Button("Random hints (the training masks)")
        with gr.Column():
            masked = gr.Image(label="What E sees (unknown: grey)", format="png", interactive=False)
            in_photo = _in_photo_output()
    kept = _photo_input(wiring, model_id, picture, "Use as the picture",
                        api_name="collage_photo_inpaint")
    gallery = gr.Gallery(label="Completions", columns=4, format="png")
    inputs, outputs = [model_id, picture, n, seed, kept], [masked, gallery]
    for button, handler, api_name in ((run, inpaint, "collage_inpaint"),
                                      (hints, inpaint_random_hints, "collage_random_hints")):
        event = wiring.on(button.click, handler, inputs, outputs, api_name=api_name)
        _show_in_photo(wiring, event, in_photo, ["inpaint", "random_hints"])


def _build_variation(wiring: TabWiring, model_id: gr.Dropdown) -> None:
    with gr.Row():
        with gr.Column():
            picture, _ = _picture(wiring, model_id, "Picture: paint one part (eyes, mouth, a window...)", 9)
            with gr.Row():
                n = gr.Slider(2, 40, value=TABLE1_SAMPLES, step=1, label="Samples N (Table 1: 20)")
                repeats = gr.Slider(1, TABLE1_REPEATS, value=1, step=1,
                                    label=f"Repeats (Table 1: {TABLE1_REPEATS})")
                seed = gr.Number(value=100, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
            part_choice = gr.Radio(list(PART_CHOICES), value=PART_CHOICES[0], label=(
                "Part (eyes, nose, mouth, skin: from face landmarks of each repeat's face)"))
            run = gr.Button("Compute variation map", variant="primary")
        sigma_map = gr.Image(label="Per-pixel standard deviation", format="png", interactive=False)
    info = gr.Markdown()
    wiring.on(run.click, compute_variation_map, [model_id, picture, n, seed, repeats, part_choice],
              [sigma_map, info],
              api_name="collage_variation")


def build_tab(ctx: AppContext) -> None:
    ids = ctx.model_ids("regressor")
    wiring = TabWiring(ctx, TAB)
    tab_header("Cut parts out of several pictures, paste them into one canvas, and let the GAN "
               "turn the collage into one coherent picture, in a single pass.",
               HOW_IT_WORKS)
    generators = [ctx.registry.get(i).generator for i in ids]
    licence_line(ctx.registry, TAB, ids + [g for g in generators if g in ctx.registry.ids()])
    model_id = gr.Dropdown(ids, value=ids[0] if ids else None, label="Domain (regressor + generator)")
    with gr.Tabs():
        with gr.Tab("Compose"):
            _build_compose(wiring, model_id, frame_size(ctx, model_id.value))
        with gr.Tab("Inpaint"):
            _build_inpaint(wiring, model_id)
        with gr.Tab("Variation map"):
            _build_variation(wiring, model_id)
        with gr.Tab("Compose vs blend"):
            _build_compare(wiring, model_id)
    wiring.download.render()
