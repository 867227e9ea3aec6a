"""PandA factorization (Oldfield et al., ICLR 2023): parts P and appearances A of layer-l features.

Model: Z_i (C x S, S = H*W) ~ A (A^T Z_i P) P^T with P >= 0; objective
sum_i ||Z_i - A A^T Z_i P P^T||_F^2 (paper Eq. 3).

How this differs from the authors' loop, and why it is the same problem
-------------------------------------------------------------------------
The authors initialise A with the eigenvectors of the uncentred channel scatter
(1/N) sum Z_i Z_i^T and P ~ U(0, 0.01), then alternate projected gradient steps on P and
A over 10,000 stochastic batches of one sample. With R_C = C (all published factors: 512),
A is square and orthogonal, so A A^T = I and the objective becomes
    sum_i ||Z_i - Z_i P P^T||^2 = tr K - 2 tr(P^T K P) + tr(P^T K P P^T P),
with K = sum_i Z_i^T Z_i (S x S): it depends on the data only through K, and the A-gradient
vanishes at P^T P = I, so A stays close to its initial eigenvectors (the paper reports mean
|A^T A - I| ~ 8e-4 at 512 channels; tests/test_panda_engine.py runs the authors' loop on
small data: A drifts by up to ~0.2 there, yet both reach the same objective within 1e-4). So we stream the samples once, accumulating the channel scatter and K
in float32 (never holding all activations), take A from the scatter's eigenvectors, and run
full-batch projected gradient descent on P from K with a backtracking step size instead of
a hand-tuned learning rate. `objective_direct` evaluates the authors' form on raw Z so
tests can check the two agree. For R_C < C the reduction does not hold: A is then kept
fixed at the leading eigenvectors (a simplification; the UI says so).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from core.device import randn
from core.models.stylegan2 import StyleGAN2Generator, panda_layer


@dataclass
class FeatureStats:
    """Streaming statistics of layer-l features over N samples (float32/64 sums)."""
    scatter: torch.Tensor  # (1/N) sum Z Z^T, [C, C]
    gram: torch.Tensor     # sum Z^T Z, [S, S]
    mean: torch.Tensor     # mean feature over samples and positions, [C]
    n: int


def factor_filenames(model_name: str, layer: int, rank_c: int, rank_s: int) -> tuple[str, str]:
    """The authors' file names: (appearances Uc, parts Us)."""
    return (f"Uc-name_{model_name}-layer_{layer}-rank_{rank_c}.npy",
            f"Us-name_{model_name}-layer_{layer}-rank_{rank_s}.npy")


def save_factors(folder: Path, model_name: str, layer: int, A: torch.Tensor, P: torch.Tensor) -> tuple[Path, Path]:
    """Write A [C, R_C] and P [S, R_S] as float32 .npy exactly like `Model.save()`."""
    folder.mkdir(parents=True, exist_ok=True)
    uc, us = factor_filenames(model_name, layer, A.shape[1], P.shape[1])
    np.save(folder / uc, A.detach().cpu().float().numpy())
    np.save(folder / us, P.detach().cpu().float().numpy())
    return folder / uc, folder / us


def load_factor_file(path: Path) -> torch.Tensor:
    """One published .npy factor (plain float32 array; pickles refused)."""
    return torch.from_numpy(np.load(path, allow_pickle=False).astype(np.float32))


def layer_features(G: StyleGAN2Generator, w_plus: torch.Tensor, layer: int) -> torch.Tensor:
    """Features at PandA "layer l" flattened to [B, C, S] (row-major h*W + w, as the authors)."""
    z = G.synthesis_until(w_plus, panda_layer(layer)).features
    return z.reshape(z.shape[0], z.shape[1], -1)


@torch.inference_mode()
def collect_stats(G: StyleGAN2Generator, layer: int, n_samples: int = 1000, batch: int = 10,
                  seed: int = 0, truncation: float = 1.0,
                  progress: Callable[[int, int], None] | None = None,
                  with_gram: bool = True) -> FeatureStats:
    """Stream n_samples generated samples through layers 0..l and accumulate the statistics.

    Generation runs in the model's dtype (fp16 on CUDA); sums are float32 (scatter in
    float64, it is small). Batch b draws its z from seed `seed + b` (many samples per seed:
    statistics, not one picture per seed): reproducible.
    """
    k = panda_layer(layer)
    C, s = G.layer_channels(k), G.layer_resolution(k)
    dev = G.device
    scatter = torch.zeros(C, C, dtype=torch.float64, device=dev)
    gram = torch.zeros((s * s, s * s) if with_gram else (0, 0), dtype=torch.float32, device=dev)
    total = torch.zeros(C, dtype=torch.float64, device=dev)
    done, b = 0, 0
    while done < n_samples:
        m = min(batch, n_samples - done)
        w = G.truncated_w(randn((m, G.style_dim), seed + b, dev), truncation)
        Z = layer_features(G, G.w_plus(w), layer).float()  # [m, C, S]
        scatter += torch.einsum("ncs,nds->cd", Z, Z).double()
        if with_gram:
            gram += torch.einsum("ncs,nct->st", Z, Z)
        total += Z.sum((0, 2)).double()
        done += m
        b += 1
        if progress:
            progress(done, n_samples)
    return FeatureStats((scatter / done).float(), gram, (total / (done * s * s)).float(), done)


def appearances_from_scatter(scatter: torch.Tensor, rank_c: int) -> torch.Tensor:
    """Leading eigenvectors of the (symmetric) scatter, descending, sign fixed so that each
    column's largest-magnitude entry is positive (deterministic across runs and devices)."""
    evals, evecs = torch.linalg.eigh(scatter.double())
    A = evecs.flip(-1)[:, :rank_c]
    idx = A.abs().argmax(0)
    A = A * torch.sign(A[idx, torch.arange(A.shape[1])])[None]
    return A.float()


def init_parts(S: int, rank_s: int, seed: int = 0) -> torch.Tensor:
    """P ~ U(0, 0.01), as the authors initialise it."""
    return torch.rand(S, rank_s, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 0.01


def objective_from_gram(K: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """sum_i ||Z_i - Z_i P P^T||^2 written with K = sum Z_i^T Z_i only."""
    KP = K @ P
    PtKP = P.t() @ KP
    return torch.trace(K) - 2 * torch.trace(PtKP) + torch.sum(PtKP * (P.t() @ P))


def objective_direct(Z: torch.Tensor, A: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """The paper's Eq. 3 on raw features Z [N, C, S] (for checks; holds all of Z)."""
    rec = A @ (A.t() @ Z @ P) @ P.t()
    return (Z - rec).square().sum()


def solve_parts(K: torch.Tensor, rank_s: int, iters: int = 500, seed: int = 0,
                P0: torch.Tensor | None = None,
                progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Projected gradient descent on P >= 0 for tr K - 2 tr(P^T K P) + tr(P^T K P P^T P).

    Gradient: -4 K P + 2 K P (P^T P) + 2 P (P^T K P). Step size by backtracking (Armijo)
    from the previous step, so no per-layer learning rate is needed. float64 throughout:
    K is at most 4096^2.
    """
    K = K.double()
    P = (init_parts(K.shape[0], rank_s, seed) if P0 is None else P0.double()).to(K.device)
    step = 1.0 / max(float(torch.linalg.matrix_norm(K, ord=2)), 1e-12)
    f = objective_from_gram(K, P)
    for t in range(iters):
        KP = K @ P
        PtP = P.t() @ P
        grad = -4 * KP + 2 * KP @ PtP + 2 * P @ (P.t() @ KP)
        step *= 2.0
        while True:
            P_new = (P - step * grad).clamp_min_(0)
            f_new = objective_from_gram(K, P_new)
            if f_new <= f - 1e-4 / step * (P_new - P).square().sum() or step < 1e-30:
                break
            step *= 0.5
        P, f = P_new, f_new
        if progress and (t + 1) % 10 == 0:
            progress(t + 1, iters)
    return P.float()


def factorize(stats: FeatureStats, rank_c: int, rank_s: int, iters: int = 500, seed: int = 0,
              progress: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(A [C, R_C], P [S, R_S]) from streamed statistics."""
    A = appearances_from_scatter(stats.scatter, rank_c)
    P = solve_parts(stats.gram, rank_s, iters=iters, seed=seed, progress=progress)
    return A, P
