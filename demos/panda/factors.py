"""PandA factorization (Oldfield et al., ICLR 2023): the authors' Algorithm 1, made fast.

Model: Z_i (C x S, S = H*W) ~ A A^T Z_i P P^T with P >= 0; objective
L(A, P) = sum_i ||Z_i - A A^T Z_i P P^T||_F^2 (paper Eq. 3).

The authors' algorithm (`Model.HOSVD` + `Model.decompose` in james-oldfield/PandA)
---------------------------------------------------------------------------------
* Samples: batch i of the 1000 HOSVD samples is `np.random.seed(i); randn(10, 512)`; step t of
  the stochastic loop draws `np.random.seed(t); randn(batch_size, 512)`; truncation 1.0.
* Init: A = left singular vectors of the channel scatter (1/N) sum Z_i Z_i^T from
  `np.linalg.svd` (their signs), P ~ U(0, 0.01) after `np.random.seed(0)`.
* Step (Algorithm 1): P <- max(0, P - lr * dL/dP), then A <- A - lr * dL/dA with the new P.
  The gradients are *summed* over the batch (that is what `lr` multiplies) and A is not
  constrained: it leaves orthogonality. Stochastic mode (their default: batch 1, lr 1e-6,
  10,000 steps) draws a fresh batch each step; full-gradient mode reuses one set of samples.

Made fast, same arithmetic
--------------------------
Their code forms S x C x C chains per sample. Every sum over samples is a product with the
thin matrices Z_i P (C x R_S): with L = [Z_1 P, ..., Z_n P] (C x n R_S) and W = P^T P,
    dL/dP = -4 U1 + 2 (P P^T U2 + U2 W),  U1 = sum Z_i^T B Z_i P,  U2 = sum Z_i^T B^2 Z_i P,
    dL/dA = -4 Q1 A + 2 (B Q2 A + Q2 B A), Q1 = sum Z_i P P^T Z_i^T,  Q2 = sum Z_i P W P^T Z_i^T,
with B = A A^T, each evaluated right to left, so one step costs O(n C R_S (S + R_C)) instead
of O(n S C^2) (`algorithm1_step`; tests check its iterates against a line-by-line
transcription of theirs). L itself is cheap from the C x C statistics Q1, Q2 and the S x S
Gram matrix K = sum Z_i^T Z_i (`objective`).

`solver.fit` (what the tab runs) minimises the same objective from the same start, fast;
their fixed-lr loop stays available here as `algorithm1` (both modes).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from core.models.stylegan2 import StyleGAN2Generator, panda_layer

Progress = Callable[[int, int], None]
Draw = tuple[int, int]
"""(numpy seed, rows): `np.random.seed(seed); np.random.randn(rows, dim)`, the authors' draw."""

HOSVD_BATCH = 10          # Model.HOSVD(batch_size=10, n_iters=100)
AUTHORS_LR = 1e-6         # the notebooks' decompose(lr=1e-6, its=10000) (batch 1)
AUTHORS_STEPS = 10_000


# ---- the authors' samples -------------------------------------------------------------------
def authors_z(seed: int, rows: int = 1, dim: int = 512) -> torch.Tensor:
    """`np.random.seed(seed); torch.Tensor(np.random.randn(rows, dim))` [rows, dim]: sample t
    of their notebooks is authors_z(t)."""
    return torch.from_numpy(np.random.RandomState(int(seed)).randn(rows, dim).astype(np.float32))


def hosvd_draws(n_samples: int, batch: int = HOSVD_BATCH) -> list[Draw]:
    """The authors' HOSVD / full-gradient sampling: batch i is seed i (the last may be short)."""
    return [(i, min(batch, n_samples - i * batch)) for i in range(-(-n_samples // batch))]


def sample_draws(seeds: Iterable[int]) -> list[Draw]:
    """One sample per seed (their stochastic steps, saliency statistics and edited samples)."""
    return [(int(t), 1) for t in seeds]


def layer_features(G: StyleGAN2Generator, w_plus: torch.Tensor, layer: int) -> torch.Tensor:
    """Features at PandA "layer l" flattened to [B, C, S] (row-major h*W + w, as the authors)."""
    z = G.synthesis_until(w_plus, panda_layer(layer)).features
    return z.reshape(z.shape[0], z.shape[1], -1)


@torch.inference_mode()
def stream_features(G: StyleGAN2Generator, layer: int, draws: Sequence[Draw], truncation: float = 1.0,
                    chunk: int = 50, progress: Progress | None = None) -> Iterator[torch.Tensor]:
    """Features [rows, C, S] (float32, on the model's device) of each draw in order, computed
    `chunk` samples per generator pass: the draws never depend on the factors, so a loop can
    consume them one by one while the generator runs batched."""
    total, done, i = sum(r for _, r in draws), 0, 0
    while i < len(draws):
        j, rows = i, 0
        while j < len(draws) and (rows == 0 or rows + draws[j][1] <= chunk):
            rows += draws[j][1]
            j += 1
        z = torch.cat([authors_z(s, r, G.style_dim) for s, r in draws[i:j]]).to(G.device)
        Z = layer_features(G, G.w_plus(G.truncated_w(z, truncation)), layer).float()
        for piece in Z.split([r for _, r in draws[i:j]]):
            yield piece
        done += rows
        i = j
        if progress:
            progress(done, total)


def collect_features(G: StyleGAN2Generator, layer: int, n_samples: int, truncation: float = 1.0,
                     chunk: int = 50, progress: Progress | None = None) -> torch.Tensor:
    """The authors' HOSVD samples at layer l, all at once [N, C, S] float32."""
    return torch.cat(list(stream_features(G, layer, hosvd_draws(n_samples), truncation, chunk, progress)))


@dataclass
class FeatureStats:
    """Streaming statistics of layer-l features over N samples."""
    scatter: torch.Tensor  # (1/N) sum Z Z^T, [C, C]
    gram: torch.Tensor     # sum Z^T Z, [S, S] (empty when not asked for)
    mean: torch.Tensor     # mean feature over samples and positions, [C]
    n: int


def collect_stats(G: StyleGAN2Generator, layer: int, draws: Sequence[Draw], truncation: float = 1.0,
                  chunk: int = 50, progress: Progress | None = None, with_gram: bool = True) -> FeatureStats:
    """Stream the draws through layers 0..l and accumulate the statistics (float64 sums),
    never holding all the features."""
    k = panda_layer(layer)
    C, s = G.layer_channels(k), G.layer_resolution(k)
    scatter = torch.zeros(C, C, dtype=torch.float64, device=G.device)
    gram = torch.zeros((s * s, s * s) if with_gram else (0, 0), dtype=torch.float64, device=G.device)
    total = torch.zeros(C, dtype=torch.float64, device=G.device)
    n = 0
    for Z in stream_features(G, layer, draws, truncation, chunk, progress):
        Zd = Z.double()
        scatter += torch.einsum("ncs,nds->cd", Zd, Zd)
        if with_gram:
            gram += torch.einsum("ncs,nct->st", Zd, Zd)
        total += Zd.sum((0, 2))
        n += Z.shape[0]
    return FeatureStats((scatter / n).float(), gram.float(), (total / (n * s * s)).float(), n)


# ---- the authors' file format ---------------------------------------------------------------
def factor_filenames(model_name: str, layer: int, rank_c: int, rank_s: int) -> tuple[str, str]:
    """The authors' file names (`Model.save`): (appearances Uc, parts Us)."""
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


# ---- init -----------------------------------------------------------------------------------
def appearances_from_scatter(scatter: torch.Tensor, rank_c: int) -> torch.Tensor:
    """The authors' A init: leading left singular vectors of the scatter from `np.linalg.svd`,
    with its signs, so annotated (appearance, lambda) pairs act the same on computed factors.
    (float64 here, float32 there: the same signs, checked in the tests.)"""
    U = np.linalg.svd(scatter.detach().double().cpu().numpy())[0]
    return torch.from_numpy(np.ascontiguousarray(U[:, :rank_c], dtype=np.float32))


def init_parts(S: int, rank_s: int) -> torch.Tensor:
    """The authors' P init: `np.random.seed(0); np.random.uniform(0, 0.01, [S, R_S])` (float64)."""
    return torch.from_numpy(np.random.RandomState(0).uniform(0, 0.01, size=[S, rank_s]))


# ---- Algorithm 1: the summed gradients through thin products --------------------------------
def _flat(Z: torch.Tensor) -> torch.Tensor:
    return Z.reshape(-1, Z.shape[-1])  # [n C, S]


def _thin(Z: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """L = [Z_1 P, ..., Z_n P] as [C, n R] (Z [n, C, S], P [S, R])."""
    n, C, _ = Z.shape
    return (_flat(Z) @ P.to(Z)).reshape(n, C, -1).permute(1, 0, 2).reshape(C, -1).to(P)


def _unthin(M: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse layout of `_thin`: [C, n R] -> [n C, R]."""
    C = M.shape[0]
    return M.reshape(C, n, -1).permute(1, 0, 2).reshape(n * C, -1)


def _times_blocks(L: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """[Z_1 P W, ..., Z_n P W] from L (W [R, R] applied to every block)."""
    C, R = L.shape[0], W.shape[0]
    return (L.reshape(C, -1, R) @ W).reshape(C, -1)


def grad_parts(Z: torch.Tensor, A: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """dL/dP summed over the samples (the authors' `Us_g`) [S, R_S]."""
    L = _thin(Z, P)                          # Z_i P
    BL = A @ (A.t() @ L)                     # B Z_i P
    B2L = A @ (A.t() @ BL)                   # B^2 Z_i P
    return _grad_parts_from(Z, P, BL, B2L)


def _grad_parts_from(Z: torch.Tensor, P: torch.Tensor, BL: torch.Tensor, B2L: torch.Tensor) -> torch.Tensor:
    """-4 U1 + 2 (P P^T U2 + U2 P^T P) from B Z_i P and B^2 Z_i P ([C, n R] each): one pass over Z."""
    n, C, R = Z.shape[0], BL.shape[0], P.shape[1]
    both = torch.cat([BL.reshape(C, n, R), B2L.reshape(C, n, R)], 2).reshape(C, -1)
    U = (_flat(Z).t() @ _unthin(both, n).to(Z)).to(P)   # [S, 2R]: sum Z_i^T [B, B^2] Z_i P
    U1, U2 = U[:, :R], U[:, R:]
    return -4 * U1 + 2 * (P @ (P.t() @ U2) + U2 @ (P.t() @ P))


def _grad_appearances_thin(L: torch.Tensor, A: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """dL/dA from L = [Z_i P] and W = P^T P: -4 Q1 A + 2 (B Q2 A + Q2 B A), kept thin."""
    V = L.t() @ A                            # [n R, R_C]: (Z_i P)^T A
    LW = _times_blocks(L, W)                 # Z_i P W
    Q1A = L @ V
    Q2A = LW @ V
    BQ2A = A @ (A.t() @ Q2A)
    Q2BA = LW @ ((V @ A.t()) @ A)
    return -4 * Q1A + 2 * (BQ2A + Q2BA)


def grad_appearances(Z: torch.Tensor, A: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """dL/dA summed over the samples (the authors' `Uc_g`) [C, R_C]."""
    return _grad_appearances_thin(_thin(Z, P), A, P.t() @ P)


def algorithm1_step(Z: torch.Tensor, A: torch.Tensor, P: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the authors' loop on the batch Z: P first (projected), then A with the new P."""
    P = (P - lr * grad_parts(Z, A, P)).clamp_min(0)
    A = A - lr * grad_appearances(Z, A, P)
    return A, P


def algorithm1(batches: Iterable[torch.Tensor], A: torch.Tensor, P: torch.Tensor, lr: float = AUTHORS_LR,
               progress: Progress | None = None, steps: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The authors' loop, one step per batch: stochastic mode is a stream of fresh batches
    (`stream_features` of `sample_draws(range(its))` for batch 1), full-gradient mode the same
    tensor `its` times. float64 factors; the features stay in their dtype."""
    A, P = A.double(), P.double()
    for t, Z in enumerate(batches):
        A, P = algorithm1_step(Z.to(A.device), A, P, lr)
        if progress and (t + 1) % 100 == 0:
            progress(t + 1, steps or t + 1)
    return A, P


# ---- the objective ----------------------------------------------------------------------------
def objective_direct(Z: torch.Tensor, A: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """The paper's Eq. 3 on raw features Z [N, C, S] (for checks; forms every reconstruction)."""
    rec = A @ (A.t() @ Z @ P) @ P.t()
    return (Z - rec).square().sum()


def objective(trK: float, L: torch.Tensor, A: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """L(A, P) = tr K - 2 sum ||A^T Z_i P||^2 + sum tr(A^T A Y_i W Y_i^T), Y_i = A^T Z_i P,
    from L = [Z_i P] and W = P^T P (no reconstruction formed)."""
    Y = A.t() @ L
    AtAY = A.t() @ (A @ Y) if Y.shape[1] < A.shape[1] else (A.t() @ A) @ Y
    return trK - 2 * Y.square().sum() + (AtAY * _times_blocks(Y, W)).sum()


def objective_from_gram(K: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """L with A A^T = I (A square orthogonal): tr K - 2 tr(P^T K P) + tr(P^T K P P^T P)."""
    KP = K @ P
    PtKP = P.t() @ KP
    return torch.trace(K) - 2 * torch.trace(PtKP) + torch.sum(PtKP * (P.t() @ P))
