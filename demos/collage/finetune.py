"""The authors' fine-tuning of the regressor on one photo (`notebooks/finetune_and_edit.ipynb`)
and the tuned copy a person keeps in their session (`TunedRegressor`): the shared model in
the cache is never modified. Models and tensors, no widgets."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from core.device import placement
from core.lpips import lpips_distance
from demos.collage.engine import Paired, random_hints

FINETUNE_STEPS = 30
FINETUNE_LR = 5e-5
FINETUNE_BETAS = (0.5, 0.999)
LPIPS_SIZE = 256  # their training and fine-tuning LPIPS runs on pictures average-pooled to 256


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
