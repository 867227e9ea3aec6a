"""Inverting a photo into a StyleGAN2: SAM's spatially-adaptive multilayer inversion and
editing (Parmar et al., CVPR 2022), and plain W+ inversion as its special case (every mask
empty), shared by the SAM tab and by any tab that makes a photo code (core.photo_code).

A photo is inverted into W+ *plus* residuals on the features of four layers, F4/F6/F8/F10
(16, 32, 64, 128 px), each masked to the regions that need it. W+ drives every pixel; the
feature residuals only fix what W+ cannot reach, so regions left to W+ stay editable.
Which region gets which space comes from a predicted (or estimated) inversion error per
space and a threshold tau, decided per segment. Constants follow the authors' code
(adobe-research/sam_inversion, src/sam_inv_optimization.py, mask_utils.py, loss_utils.py,
latent_utils.py); where this engine differs it says so.

Differences from the authors' code, on purpose:
* noise: the checkpoint's fixed noise buffers at every pass (the authors draw fresh noise
  at each forward), so an inversion is reproducible and an edit changes only the edit;
* one batch can carry several independent inversions (SAM beside a plain W+ inversion, or
  the five single-space runs of the fallback estimate); each sample's loss is its own and
  the batch loss is their sum, so Adam treats every sample exactly as if it ran alone.
"""
from __future__ import annotations

import contextlib
import math
import weakref
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from core.lpips import CachedTargetLPIPS
from core.models.stylegan2 import StyleGAN2Generator, sam_layer
from core.segments import segment_means

SPACES = ("W+", "F4", "F6", "F8", "F10")
FEATURE_SPACES = SPACES[1:]
CHECK_ORDER = ("F10", "F8", "F6", "F4", "W+")
"""The authors' refine(): the last space in this order whose error passes wins, so a segment
goes to the most editable space that inverts well enough; none passes -> F10."""
SPACE_COLOURS = {"W+": (0, 98, 155), "F4": (116, 118, 120), "F6": (252, 137, 0),
                 "F8": (97, 129, 57), "F10": (255, 205, 0)}  # img_utils.d_l2rgb

TAU = 0.225
STEPS = 1001
LR = 0.05
BETAS = (0.9, 0.999)
RAMPDOWN, RAMPUP = 0.25, 0.05
LOSS_SIZE = 256
F_WEIGHT = 5.0          # lambda_f_rec, times mean(dF^2) per space
SPREAD_WEIGHT = 1e-3    # lambda_delta, times sum_n ||w_n - w_0|| (not squared)
MVG_WEIGHT = 1e-8       # lambda_mvg, times the Mahalanobis distance of LeakyReLU(w, 5)
MVG_SAMPLES = 5000
MVG_SLOPE = 5.0         # undoes the mapping network's final LeakyReLU(0.2)


# ---- schedule and regularisers ---------------------------------------------------------------
def projector_lr(step: int, total: int, base: float = LR) -> float:
    """NVIDIA's projector schedule, as SAM uses it: linear warm-up over the first 5% (lr is 0
    at step 0), flat, cosine decay over the last 25%."""
    t = step / total
    ramp = min(1.0, (1.0 - t) / RAMPDOWN)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return base * ramp * min(1.0, t / RAMPUP)


@dataclass(frozen=True)
class MvgPrior:
    """Gaussian fit of LeakyReLU(w, 5) over mapped samples (float64, as the authors)."""
    mean: torch.Tensor      # [D] = LeakyReLU(mean of w, 5), not the mean of the v's
    inv_cov: torch.Tensor   # [D, D]


_priors: "weakref.WeakKeyDictionary[StyleGAN2Generator, MvgPrior]" = weakref.WeakKeyDictionary()


def mvg_prior(G: StyleGAN2Generator, n: int = MVG_SAMPLES, seed: int = 0) -> MvgPrior:
    """The prior's statistics for G, computed once per generator object (the authors redo
    5,000 sequential mapping passes every run; one batched pass gives the same numbers)."""
    if G not in _priors:
        z = torch.randn(n, G.style_dim, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            w = G.mapping(z.to(G.device)).double().cpu()
        v = F.leaky_relu(w, MVG_SLOPE)
        cov = np.cov(v.numpy(), rowvar=False) + 1e-8 * np.eye(G.style_dim)
        _priors[G] = MvgPrior(F.leaky_relu(w.mean(0), MVG_SLOPE), torch.from_numpy(np.linalg.inv(cov)))
    return _priors[G]


def mvg_distance(w_plus: torch.Tensor, prior: MvgPrior) -> torch.Tensor:
    """sum_n (v_n - mu)^T Sigma^-1 (v_n - mu), v_n = LeakyReLU(w_n, 5), in float64 -> [B]."""
    v = F.leaky_relu(w_plus.double(), MVG_SLOPE) - prior.mean.to(w_plus.device)
    return torch.einsum("bnd,de,bne->b", v, prior.inv_cov.to(w_plus.device), v)


def spread(w_plus: torch.Tensor) -> torch.Tensor:
    """sum_{n>=1} ||w_n - w_0||_2 (plain, not squared, as the authors' delta_loss) -> [B]."""
    return (w_plus[:, 1:] - w_plus[:, :1]).norm(dim=2).sum(1)


# ---- masks ---------------------------------------------------------------------------------
def assign_spaces(segments: torch.Tensor, errors: Mapping[str, torch.Tensor], tau: float) -> torch.Tensor:
    """Per segment, the most editable space whose mean predicted error is <= tau (the
    authors' refine()). segments [H, W] long; errors {space: [H, W]} -> layer map [H, W]
    of indices into SPACES."""
    means = {name: segment_means(errors[name].float().cpu(), segments.cpu()) for name in SPACES}
    choice = torch.full_like(means["W+"], float(SPACES.index("F10"))).long()
    for name in CHECK_ORDER:  # later passes overwrite earlier ones: the last one wins
        choice[means[name].float() <= tau] = SPACES.index(name)  # float32, as the authors
    return choice[segments.cpu()]


def lanczos_resize(mask: np.ndarray, size: int) -> np.ndarray:
    """A binary mask -> size x size with PIL's Lanczos filter on a float image, clipped to
    [0, max]: soft edges, exactly as the authors' resize_single_channel."""
    img = Image.fromarray(mask.astype(np.float32), mode="F").resize((size, size), Image.LANCZOS)
    return np.asarray(img).clip(0, mask.max())


def feature_masks(layer_map: torch.Tensor, G: StyleGAN2Generator) -> dict[int, torch.Tensor]:
    """Layer map [H, W] (indices into SPACES) -> {layer k: soft mask [1, 1, r, r]} for
    F4..F10 at their layers' resolutions. The W+ mask is not needed: W+ drives every pixel."""
    lm = layer_map.cpu().numpy()
    masks = {}
    for name in FEATURE_SPACES:
        k = sam_layer(name)
        binary = (lm == SPACES.index(name)).astype(np.float32)
        masks[k] = torch.from_numpy(lanczos_resize(binary, G.layer_resolution(k)))[None, None]
    return masks


def full_masks(G: StyleGAN2Generator, space: str) -> dict[int, torch.Tensor]:
    """Masks that open one whole feature space (the single-space runs), nothing for W+."""
    return {sam_layer(n): torch.full((1, 1) + (G.layer_resolution(sam_layer(n)),) * 2, float(n == space))
            for n in FEATURE_SPACES}


def stack_masks(per_sample: list[dict[int, torch.Tensor]]) -> dict[int, torch.Tensor]:
    """One mask set per batch sample -> {k: [B, 1, r, r]}."""
    return {k: torch.cat([m[k] for m in per_sample]) for k in per_sample[0]}


# ---- rendering -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Frame:
    """Where the losses look: the rendering is area-resized to LOSS_SIZE and, for letterboxed
    generators (cars: 512x384 content in 512x512), cropped to the content rows."""
    top: int = 0
    bottom: int = LOSS_SIZE

    @staticmethod
    def for_content(size: int, content: tuple[int, int] | None) -> "Frame":
        if not content:
            return Frame()
        bar = (size - int(content[1])) // 2 * LOSS_SIZE // size
        return Frame(bar, LOSS_SIZE - bar)

    def crop(self, image: torch.Tensor) -> torch.Tensor:
        return image[:, :, self.top:self.bottom]


def for_loss(image: torch.Tensor, frame: Frame) -> torch.Tensor:
    """A full-size rendering -> what the losses see (area resize, clamp, crop)."""
    small = F.interpolate(image, size=(LOSS_SIZE, LOSS_SIZE), mode="area") \
        if image.shape[-1] != LOSS_SIZE else image
    return frame.crop(small.clamp(-1, 1))


def render(G: StyleGAN2Generator, w_plus: torch.Tensor, deltas: Mapping[int, torch.Tensor],
           masks: Mapping[int, torch.Tensor]) -> torch.Tensor:
    """x = g(w+) with m_k * dF_k added after layer k (after its ToRGB: the skip image is
    never touched)."""
    return G.synthesis(w_plus, deltas={k: (deltas[k], masks[k].to(deltas[k])) for k in deltas})


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2) -> [B]."""
    mse = ((a.float() - b.float()) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(4.0 / mse.clamp(min=1e-12))


# ---- the optimisation ----------------------------------------------------------------------
REDUCED_DTYPE = torch.bfloat16  # the labelled option: float32's range, so no loss scaling


def optimisation_dtype(device: torch.device, reduced: bool = False) -> torch.dtype | None:
    """The generator's autocast dtype while optimising: None (float32) by default, as the
    authors ran it (their NVIDIA generator loads the TF pickles through `legacy.py`'s
    `convert_tf_generator`, which gives `num_fp16_res = 0` and no conv clamp: no layer in half
    precision). `reduced` (the tab's labelled option) asks for bfloat16 autocast, granted
    only on a CUDA GPU that has bfloat16; the CPU stays float32 regardless. Losses, Adam's
    state and the codes are float32 either way."""
    if reduced and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return REDUCED_DTYPE
    return None


@dataclass
class Codes:
    """An inversion's result on the CPU: what editing and downloads need."""
    w_plus: torch.Tensor                      # [1, n_latent, D]
    deltas: dict[int, torch.Tensor]           # {k: [1, C, r, r]}
    masks: dict[int, torch.Tensor]            # {k: [1, 1, r, r]}
    steps: int = 0
    losses: list[float] = field(default_factory=list)

    def to(self, device: torch.device | str) -> "Codes":
        return Codes(self.w_plus.to(device), {k: d.to(device) for k, d in self.deltas.items()},
                     {k: m.to(device) for k, m in self.masks.items()}, self.steps, list(self.losses))

    def arrays(self) -> dict[str, np.ndarray]:
        """Named arrays for an .npz download (the authors' keys 'W+', 'F4', ...)."""
        out = {"W+": self.w_plus.float().numpy()}
        for k, d in self.deltas.items():
            out[f"F{k}"] = d.float().numpy()
            out[f"mask_F{k}"] = self.masks[k].float().numpy()
        return out


class Inversion:
    """Adam on {w+, dF4, dF6, dF8, dF10} against one target, one step at a time (so a UI can
    show previews and stop), for a batch of independent problems that differ by their masks.

    target: [1, 3, h, w] in [-1, 1] as the losses see it (LOSS_SIZE, cropped by `frame`).
    masks: {k: [B, 1, r, r]}; init_w: [B, n_latent, D].
    autocast: the generator's pass runs under autocast in this dtype (see
    `optimisation_dtype`); None keeps it float32.
    """

    def __init__(self, G: StyleGAN2Generator, target: torch.Tensor, masks: Mapping[int, torch.Tensor],
                 init_w: torch.Tensor, lpips_model: torch.nn.Module, steps: int = STEPS,
                 frame: Frame = Frame(), lr: float = LR, autocast: torch.dtype | None = None):
        device = G.device
        self.G, self.frame, self.total, self.base_lr = G, frame, int(steps), lr
        self.autocast = autocast
        self.target = target.to(device).float()
        self.lpips = CachedTargetLPIPS(lpips_model, self.target)
        self.prior = mvg_prior(G)
        self.masks = {k: m.to(device) for k, m in masks.items()}
        batch = init_w.shape[0]
        self.w = init_w.detach().to(device).float().clone().requires_grad_(True)
        self.deltas = {k: torch.zeros(batch, G.layer_channels(k), m.shape[-2], m.shape[-1],
                                      device=device, requires_grad=True)
                       for k, m in self.masks.items()}
        self.opt = torch.optim.Adam([self.w, *self.deltas.values()], lr=lr, betas=BETAS)
        self.step_index = 0
        self._losses: list[torch.Tensor] = []  # per step [B], left on the device

    def losses(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every term per sample [B] for a full-size rendering (weights applied)."""
        rec = for_loss(image, self.frame)
        return {
            "mse": ((rec - self.target) ** 2).flatten(1).mean(1),
            "lpips": self.lpips(rec),
            "features": F_WEIGHT * sum(d.pow(2).flatten(1).mean(1) for d in self.deltas.values()),
            "spread": SPREAD_WEIGHT * spread(self.w),
            "mvg": (MVG_WEIGHT * mvg_distance(self.w, self.prior)).float(),
        }

    def step(self) -> None:
        """One Adam step at the scheduled learning rate. Nothing here waits for a GPU: the
        losses stay on the device until `history` is read."""
        for group in self.opt.param_groups:
            group["lr"] = projector_lr(self.step_index, self.total, self.base_lr)
        terms = self.losses(self._render())
        per_sample = sum(terms.values())
        self.opt.zero_grad(set_to_none=True)
        per_sample.sum().backward()  # samples are independent: their gradients do not mix
        self.opt.step()
        self.step_index += 1
        self._losses.append(per_sample.detach())

    @property
    def history(self) -> list[list[float]]:
        """Each step's total loss per sample."""
        return torch.stack(self._losses).cpu().tolist() if self._losses else []

    @property
    def diverged(self) -> bool:
        """Whether any code is NaN/inf: Adam cannot come back from there."""
        return not all(torch.isfinite(p).all() for p in (self.w, *self.deltas.values()))

    @property
    def done(self) -> bool:
        return self.step_index >= self.total

    def _render(self) -> torch.Tensor:
        """The generator's pass (under autocast when asked), returned in float32."""
        cast = (torch.autocast(self.G.device.type, dtype=self.autocast) if self.autocast is not None
                else contextlib.nullcontext())
        with cast:
            image = render(self.G, self.w, self.deltas, self.masks)
        return image.float()

    @torch.no_grad()
    def render(self) -> torch.Tensor:
        """The current reconstructions at full size [B, 3, S, S]."""
        return self._render()

    def codes(self, sample: int = 0) -> Codes:
        return Codes(self.w[sample:sample + 1].detach().cpu().clone(),
                     {k: d[sample:sample + 1].detach().cpu().clone() for k, d in self.deltas.items()},
                     {k: m[sample:sample + 1].cpu().clone() for k, m in self.masks.items()},
                     self.step_index, [h[sample] for h in self.history])


def estimate_errors(G: StyleGAN2Generator, target: torch.Tensor, init_w: torch.Tensor,
                    lpips_model: torch.nn.Module, steps: int, frame: Frame = Frame(),
                    autocast: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Fallback for models without the authors' predictor: the predictor is trained to output
    the LPIPS error map of inverting into each space alone, so run those five single-space
    inversions (one batch, `steps` short) and measure their spatial LPIPS maps.
    Short runs overestimate the errors of full runs: raise tau accordingly.
    -> {space: [h, w]} at the loss frame's size."""
    masks = stack_masks([full_masks(G, name) for name in SPACES])
    run = Inversion(G, target, masks, init_w.expand(len(SPACES), -1, -1), lpips_model, steps, frame,
                    autocast=autocast)
    while not run.done:
        run.step()
    with torch.no_grad():
        maps = run.lpips(for_loss(run.render(), frame), spatial=True)[:, 0].cpu()
    return dict(zip(SPACES, maps))


# ---- editing -------------------------------------------------------------------------------
@torch.no_grad()
def inverted_features(G: StyleGAN2Generator, codes: Codes) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """One pass of the inverted codes -> (reconstruction, {k: features after layer k, deltas
    included}). The authors run four partial passes for the same four tensors."""
    feats: dict[int, torch.Tensor] = {}

    def keep(k: int, x: torch.Tensor, skip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if k in codes.deltas:
            feats[k] = x
        return x, skip

    deltas = {k: (d.to(G.device), codes.masks[k].to(G.device)) for k, d in codes.deltas.items()}
    image = G.synthesis(codes.w_plus.to(G.device), deltas=deltas, hook=keep)
    return image, feats


@torch.no_grad()
def edit(G: StyleGAN2Generator, codes: Codes, features: Mapping[int, torch.Tensor],
         direction: torch.Tensor, strength: float) -> torch.Tensor:
    """Render w+ + strength * direction on every layer and, after each F_k layer, put the
    inverted features back inside m_k: x <- x (1 - m_k) + F_k m_k (the authors' edit_image),
    so regions inverted in F_k take the edit only through the layers after k.

    Unlike the authors' edit_image this pass keeps the residuals m_k dF_k (as the
    inversion's forward does) before restoring: with them, strength 0 renders exactly the
    reconstruction; without them soft mask edges and later layers would drift from it.
    """
    masks = {k: m.to(G.device) for k, m in codes.masks.items()}

    def restore(k: int, x: torch.Tensor, skip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if k in masks:
            m = masks[k].to(x.dtype)
            x = x * (1 - m) + features[k].to(x.dtype) * m
        return x, skip

    deltas = {k: (d.to(G.device), masks[k]) for k, d in codes.deltas.items()}
    w = codes.w_plus.to(G.device) + strength * direction.to(G.device)
    return G.synthesis(w, deltas=deltas, hook=restore)
