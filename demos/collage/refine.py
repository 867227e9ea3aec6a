"""Enc+LBFGS, the paper's refinement as the authors' `utils/inversions.py` `invert_lbfgs`
runs it: their loss (`refine_loss`) and weights, their `FullBatchLBFGS` (`core.lbfgs`), from
E's code of the collage. Models and tensors, no widgets."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from core.lbfgs import FullBatchLBFGS
from core.lpips import lpips_distance
from demos.collage.engine import Paired

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
