"""Neural Collage's real-photo editing (no Gradio): the fits that make a photo the base
picture, and the paste-back.

`fit_sngan` is the paper's real-image editing (Eq. 4, optimization.py): the encoder's z
(optionally mapped to the auxiliary zeta), then Chainer's Adam on the discriminator-feature
cosine term + 0.2 x the pixel term, class fixed. `project` fits BigGAN-deep (no encoder or
discriminator exists) with LPIPS + the authors' pixel weight and learning rate, class fixed,
z kept in the sampler's range. `paste_back` Poisson-blends an edit into the photo's frame;
the handler then puts that frame into the uploaded photo at full resolution inside a mask
the user can paint (`core.faces.FramedPhoto.paste`).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
import torch.nn.functional as F

from core.device import placement
from core.errors import UserError
from core.lpips import lpips_distance
from core.poisson import poisson_blend
from demos.ncollage.engine import Picture, is_biggan, one_hot

if TYPE_CHECKING:  # model code is imported when a model is loaded, not at start-up
    from core.models.biggan import BigGANDeep
    from core.models.sngan import SNGANGenerator

PIXEL_WEIGHT = 0.2  # optimization.py: lmd_pixel
LR_Z, LR_ZETA = 0.075, 0.015  # optimization.py: Adam alpha on z (noaux) / zeta (aux)
AUTHORS_STEPS = 200  # optimization.py: --iter_opt default


class ChainerAdam:
    """Chainer's Adam (the authors' optimiser): m, v moving averages, step
    alpha * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps), on one tensor."""

    def __init__(self, param: torch.Tensor, alpha: float, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8):
        self.param, self.alpha, self.beta1, self.beta2, self.eps = param, alpha, beta1, beta2, eps
        self.m, self.v, self.t = torch.zeros_like(param), torch.zeros_like(param), 0

    @torch.no_grad()
    def step(self) -> None:
        g = self.param.grad
        self.t += 1
        self.m += (1 - self.beta1) * (g - self.m)
        self.v += (1 - self.beta2) * (g * g - self.v)
        lr = self.alpha * math.sqrt(1 - self.beta2 ** self.t) / (1 - self.beta1 ** self.t)
        self.param -= lr * self.m / (self.v.sqrt() + self.eps)
        self.param.grad = None


def eq4_terms(D: torch.nn.Module, recon: torch.Tensor, gt_features: torch.Tensor, gt: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 4 as optimization.py: (−Σ_i cos(D(recon_i), D(gt_i)), 0.2 · mean squared error)."""
    v1 = D.feature_vector(recon)
    cos = (v1 * gt_features).sum(1) / torch.sqrt(v1.square().sum(1) * gt_features.square().sum(1))
    return -cos.sum(), PIXEL_WEIGHT * F.mse_loss(recon, gt)


def authors_scale(target: torch.Tensor) -> torch.Tensor:
    """A picture in [-1, 1] (pixel / 127.5 - 1) as optimization.py reads photos: pixel / 128 - 1."""
    return (target + 1) * (127.5 / 128) - 1


def fit_sngan(G: "SNGANGenerator", D: torch.nn.Module, E: torch.nn.Module, aux: torch.nn.Module | None,
              enc_input: torch.Tensor, gt: torch.Tensor, class_index: int, steps: int,
              progress: Callable[[int, int, float], None] | None = None
              ) -> tuple[Picture, torch.Tensor, np.ndarray]:
    """The paper's real-image editing (Eq. 4, optimization.py): z = E(photo at the encoder's
    size, class); with the auxiliary network zeta = A(z) is optimised (Adam 0.015) and
    z' = B(zeta), else z itself (Adam 0.075); the class stays fixed. `gt` is the photo at the
    generator's size, both in the authors' pixel / 128 - 1 scale -> (picture, its image,
    losses [steps, 2]: cosine term, pixel term).

    The latent returned is the one optimization.py saves (opt_final.npy, opt-z.npy): with the
    auxiliary network the z' = B(zeta) of the last forward pass, before that step's update
    (`recon, _, _, z = gen.forward(zeta=..., return_zs=True)`), so its picture is the last
    loss's reconstruction; without it z after the last update (`z = target.W`)."""
    device, _ = placement(G)
    c = torch.tensor([class_index], device=device)
    gt = gt.to(device)
    with torch.no_grad():
        z0 = E(enc_input.to(device), c)
        start = aux.A(z0) if aux is not None else z0
        gt_features = D.feature_vector(gt)
    param = start.clone().requires_grad_(True)
    opt = ChainerAdam(param, LR_ZETA if aux is not None else LR_Z)
    losses = []
    saved = z0  # optimization.py's z before the loop: the encoder's
    for step in range(int(steps)):
        z = aux.B(param) if aux is not None else param
        cos, pixel = eq4_terms(D, G(z, c), gt_features, gt)
        (cos + pixel).backward()
        opt.step()
        saved = z.detach() if aux is not None else param.detach()  # B(zeta) before the update
        losses.append((cos.item(), pixel.item()))
        if progress:
            progress(step + 1, int(steps), losses[-1][0] + losses[-1][1])
    with torch.inference_mode():
        z = saved.clone()
        picture = Picture(z.float().cpu(), one_hot(class_index, G.num_classes), 1.0)
        return picture, G(z, c).float().clamp(-1, 1), np.asarray(losses, np.float32).reshape(-1, 2)


def project(G: "BigGANDeep", target: torch.Tensor, class_index: int, truncation: float, steps: int,
            seed: int = 0, progress: Callable[[int, int, float], None] | None = None
            ) -> tuple[Picture, torch.Tensor, list[float]]:
    """Fit BigGAN-deep's z to `target` [1, 3, S, S] (no encoder or discriminator was
    released): LPIPS-VGG + the authors' 0.2 · MSE, Chainer's Adam at their 0.075, the class
    fixed, z kept in the sampler's range at this truncation ([-2t, 2t]) -> (picture, image,
    losses). G must be float32 (gradients)."""
    if not is_biggan(G):
        raise UserError("This projection is for BigGAN-deep (SNGAN uses its encoder; StyleGAN2: "
                        "the SAM tab).")

    device, _ = placement(G)
    target = target.to(device)
    z = G.sample_latents([seed], truncation).to(device).requires_grad_(True)
    c = one_hot(class_index, G.num_classes).to(device)
    opt = ChainerAdam(z, LR_Z)
    bound = 2 * float(truncation)
    losses = []
    for step in range(steps):
        out = G(z, c, truncation)
        loss = lpips_distance(out, target, net="vgg").mean() + PIXEL_WEIGHT * F.mse_loss(out, target)
        loss.backward()
        opt.step()
        with torch.no_grad():
            z.clamp_(-bound, bound)
        losses.append(loss.item())
        if progress:
            progress(step + 1, steps, losses[-1])
    with torch.inference_mode():
        picture = Picture(z.detach().cpu(), c.cpu(), float(truncation))
        return picture, G(z, c, truncation).float().clamp(-1, 1), losses


def paste_back(photo: torch.Tensor, edited: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """The paper's post-processing: Poisson-blend the edited region [1, 1, S, S] of the
    edited picture into the photo (both [1, 3, S, S]); the rest of the photo is untouched."""
    if region.sum() == 0:
        raise UserError("Nothing was edited: there is no region to paste back.")
    return poisson_blend(edited[0].cpu(), photo[0].cpu(), region[0, 0].cpu())[None].clamp(-1, 1)
