"""PandA engine: the factorization maths (planted factors, the Gram-matrix objective, the
authors' alternating loop), streamed statistics on the tiny generator, the authors' file
format, edits, part masks, saliency, the factor library (offline Hub cache + computed
folder) and the annotated FFHQ presets. No Gradio, no network."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from helpers import ROOT, SG2_REF, TINY_SG2_CONFIG, npy_bytes, seed_hub_cache, tiny_sg2_entry, write_registry
from core.context import AppContext
from core.errors import UserError
from core.hub import load_registry
from core.images import to_uint8
from core.models.stylegan2 import load_stylegan2, panda_layer
from core.ops import truncate
from demos.panda import engine, factors, solver, sources

F64 = torch.float64


# ---- synthetic data with known factors -----------------------------------------------------
def block_parts(side: int = 8, seed: int = 0) -> torch.Tensor:
    """4 parts = the 4 quadrants of a side x side grid, random positive values inside,
    exact zeros outside; unit-norm columns [S, 4]."""
    g = torch.Generator().manual_seed(1000 + seed)
    grid = torch.arange(side * side).view(side, side)
    h = side // 2
    P = torch.zeros(side * side, 4, dtype=F64)
    for r, (y, x) in enumerate([(0, 0), (0, h), (h, 0), (h, h)]):
        P[grid[y:y + h, x:x + h].reshape(-1), r] = 0.5 + torch.rand(h * h, generator=g, dtype=F64)
    return P / P.norm(dim=0)


def bump_parts(side: int = 8, sigma: float = 1.3, seed: int = 0) -> torch.Tensor:
    """4 Gaussian bumps near the quadrant centres: positive everywhere, so every pair of
    parts overlaps (pairwise cosine up to ~0.15 at sigma 1.3)."""
    g = torch.Generator().manual_seed(2000 + seed)
    yy, xx = torch.meshgrid(torch.arange(side, dtype=F64), torch.arange(side, dtype=F64), indexing="ij")
    q = (side - 1) / 4
    centres = torch.tensor([[q, q], [q, 3 * q], [3 * q, q], [3 * q, 3 * q]], dtype=F64)
    centres = centres + 0.5 * (torch.rand(4, 2, generator=g, dtype=F64) - 0.5)
    P = torch.stack([torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2)).reshape(-1)
                     for cy, cx in centres], 1)
    return P / P.norm(dim=0)


def planted(P_true: torch.Tensor, N: int = 200, C: int = 32, noise: float = 0.01, seed: int = 0) -> torch.Tensor:
    """Z_i = A diag(d) M_i P^T + noise, A a random orthogonal C x C, M_i ~ N(0, 1) [N, C, S]."""
    g = torch.Generator().manual_seed(seed)
    S, R = P_true.shape
    A, _ = torch.linalg.qr(torch.randn(C, C, generator=g, dtype=F64))
    d = torch.linspace(2.0, 1.0, C, dtype=F64)
    M = torch.randn(N, C, R, generator=g, dtype=F64)
    return A @ (d[:, None] * M) @ P_true.t() + noise * torch.randn(N, C, S, generator=g, dtype=F64)


def gram(Z: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ncs,nct->st", Z, Z)


def matched_cosine(P_true: torch.Tensor, P: torch.Tensor) -> float:
    """Best one-to-one matching of columns (up to permutation and scale): the worst cosine."""
    P = P.double()
    cos = (P_true / P_true.norm(dim=0)).t() @ (P / P.norm(dim=0).clamp_min(1e-30))
    R = P_true.shape[1]
    return max(min(float(cos[i, perm[i]]) for i in range(R)) for perm in itertools.permutations(range(R)))


def random_orthogonal(C: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(C, C, generator=g, dtype=F64))[0]


def random_psd(C: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(C, 3 * C, generator=g, dtype=F64)
    return m @ m.t() / (3 * C)


# ---- 1. planted-factor recovery ------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 4])
def test_solve_parts_recovers_planted_disjoint_parts(seed):
    P_true = block_parts(8, seed)
    Z = planted(P_true, N=100, C=32, noise=0.01, seed=seed)
    P = solver.solve_parts(gram(Z), 4)
    assert P.shape == (64, 4) and P.dtype == torch.float32 and (P >= 0).all()
    assert matched_cosine(P_true, P) > 0.95
    # and fit (the tab's solver) keeps them: seeds 0 and 4 lost a part with uncapped steps
    assert matched_cosine(P_true, solver.fit(Z, 32, 4, max_iters=20)[1]) > 0.95


@pytest.mark.parametrize("seed", [1])
def test_solve_parts_recovers_planted_overlapping_parts(seed):
    P_true = bump_parts(8, 1.3, seed)
    assert (P_true > 0).all()  # every pair of parts overlaps everywhere
    Z = planted(P_true, N=100, C=32, noise=0.01, seed=seed)
    assert matched_cosine(P_true, solver.solve_parts(gram(Z), 4)) > 0.95


def test_recovery_check_can_fail():
    """The matching score is not trivially high: random non-negative columns score low."""
    g = torch.Generator().manual_seed(0)
    assert matched_cosine(block_parts(8, 0), torch.rand(64, 4, generator=g, dtype=F64)) < 0.8


# ---- 2. the Gram-matrix objective is the paper's objective ---------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_objective_from_gram_equals_direct_objective(seed):
    g = torch.Generator().manual_seed(seed)
    N, C, S, R = 7, 12, 36, 5
    Z = torch.randn(N, C, S, generator=g, dtype=F64)
    P = torch.rand(S, R, generator=g, dtype=F64) * 0.3  # not orthogonal, not a projection
    K = gram(Z)
    fast = factors.objective_from_gram(K, P)
    # A square orthogonal (float64): exact identity
    A = random_orthogonal(C, seed)
    torch.testing.assert_close(fast, factors.objective_direct(Z, A, P), rtol=1e-9, atol=0)
    # A from the scatter's eigenvectors (returned in float32, so orthogonal to ~1e-7)
    A_s = factors.appearances_from_scatter(torch.einsum("ncs,nds->cd", Z, Z) / N, C).double()
    torch.testing.assert_close(fast, factors.objective_direct(Z, A_s, P), rtol=1e-5, atol=0)
    # the identity needs A A^T = I: a truncated A gives a different value
    assert not torch.isclose(fast, factors.objective_direct(Z, A[:, : C // 2], P), rtol=1e-3)


# ---- 3. Algorithm 1: the authors' update, transcribed --------------------------------------
def authors_decompose_step(z, Uc, Us, lr):
    """One iteration of `Model.decompose` (james-oldfield/PandA model.py), line by line."""
    zeros = torch.zeros_like(Us)
    Us_g = -4 * (torch.transpose(z, 1, 2) @ Uc @ Uc.T @ z @ Us) + \
        2 * (Us @ Us.T @ torch.transpose(z, 1, 2) @ Uc @ Uc.T @ Uc @ Uc.T @ z @ Us
             + torch.transpose(z, 1, 2) @ Uc @ Uc.T @ Uc @ Uc.T @ z @ Us @ Us.T @ Us)
    Us_g = torch.sum(Us_g, 0)
    Us = Us - lr * Us_g
    Us = torch.maximum(Us, zeros)
    Uc_g = -4 * (z @ Us @ Us.T @ torch.transpose(z, 1, 2) @ Uc) + \
        2 * (Uc @ Uc.T @ z @ Us @ Us.T @ Us @ Us.T @ torch.transpose(z, 1, 2) @ Uc
             + z @ Us @ Us.T @ Us @ Us.T @ torch.transpose(z, 1, 2) @ Uc @ Uc.T @ Uc)
    Uc_g = torch.sum(Uc_g, 0)
    Uc = Uc - lr * Uc_g
    return Uc, Us


def authors_init(Z: torch.Tensor, rank_c: int, rank_s: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`Model.HOSVD` + the start of `decompose`: U of np.linalg.svd(scatter / N), P ~ U(0, 0.01)."""
    scat = 0
    for x in Z:
        scat += x @ x.T
    Uc = torch.from_numpy(np.linalg.svd((scat / len(Z)).numpy())[0])[:, :rank_c]
    np.random.seed(0)
    Us = torch.from_numpy(np.random.uniform(0, 0.01, size=[Z.shape[2], rank_s]))
    return Uc, Us


def test_gradients_match_autograd():
    g = torch.Generator().manual_seed(3)
    Z = torch.randn(5, 6, 16, generator=g, dtype=F64)
    A = torch.randn(6, 4, generator=g, dtype=F64).requires_grad_()
    P = torch.rand(16, 3, generator=g, dtype=F64).requires_grad_()
    factors.objective_direct(Z, A, P).backward()
    torch.testing.assert_close(factors.grad_parts(Z, A.detach(), P.detach()), P.grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(factors.grad_appearances(Z, A.detach(), P.detach()), A.grad, rtol=1e-10, atol=1e-10)
    # the objective from thin products and from C x C statistics: the same number
    L, W = factors._thin(Z, P.detach()), P.detach().t() @ P.detach()
    trK = float(Z.square().sum())
    direct = factors.objective_direct(Z, A.detach(), P.detach())
    torch.testing.assert_close(factors.objective(trK, L, A.detach(), W), direct, rtol=1e-10, atol=0)


def test_optimal_appearances_minimise_L_for_fixed_parts():
    """The Lyapunov solve is the best A A^T for the parts: PSD, L at any square root equals
    tr K - gain, Algorithm 1's A gradient vanishes there, and random moves of A only raise L;
    the reduced gradient in P is L's gradient at that A (fit's L-BFGS-B relies on both)."""
    g = torch.Generator().manual_seed(4)
    Z = torch.randn(7, 6, 16, generator=g, dtype=F64)
    P = torch.rand(16, 3, generator=g, dtype=F64)
    trK = float(Z.square().sum())
    B, gain = solver.optimal_appearances(factors._thin(Z, P), P.t() @ P)
    e, U = torch.linalg.eigh(B)
    assert e.min() > -1e-10
    A = U @ (e.clamp_min(0).sqrt()[:, None] * U.t())
    f = float(factors.objective_direct(Z, A, P))
    assert f == pytest.approx(trK - float(gain), rel=1e-10)
    assert factors.grad_appearances(Z, A, P).abs().max() < 1e-8 * trK
    for _ in range(5):
        assert float(factors.objective_direct(Z, A + 1e-3 * torch.randn(6, 6, generator=g, dtype=F64), P)) > f
    value, grad, B2 = solver._reduced(Z, P, trK)
    assert float(value) == pytest.approx(f, rel=1e-10) and torch.equal(B2, B)
    torch.testing.assert_close(grad, factors.grad_parts(Z, A, P), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("mode", ["full", "stochastic"])
def test_algorithm1_steps_are_the_authors_iterates(mode):
    """Same start, same lr: the fast loop gives the transcription's iterates, in both modes
    (full gradient: the same samples every step; stochastic: fresh samples each step)."""
    Z = planted(bump_parts(8, 1.3, 0), N=24, C=12, noise=0.05, seed=0)
    A0, P0 = authors_init(Z, 12, 4)
    assert torch.equal(factors.appearances_from_scatter(torch.einsum("ncs,nds->cd", Z, Z) / 24, 12), A0.float())
    assert torch.equal(factors.init_parts(64, 4), P0)
    lr = 0.2 / float(torch.linalg.matrix_norm(gram(Z), ord=2))
    batches = [Z] * 5 if mode == "full" else [Z[4 * t:4 * t + 4] for t in range(5)]
    Uc, Us = A0.clone(), P0.clone()
    for z in batches:
        Uc, Us = authors_decompose_step(z, Uc, Us, lr)
    A, P = factors.algorithm1(iter(batches), A0, P0, lr)
    torch.testing.assert_close(A, Uc, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(P, Us, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(A, A0, atol=1e-4) and not torch.allclose(P, P0, atol=1e-4)


@pytest.fixture(scope="module")
def converged():
    """Algorithm 1 (their update, full gradient) run to convergence on overlapping parts,
    where A leaves orthogonality and the fixed-A optimum is ~2.7 % worse."""
    Z = planted(bump_parts(8, 1.3, 0), N=60, C=24, noise=0.05, seed=0)
    A, P = authors_init(Z, 24, 4)
    lr = 0.3 / float(torch.linalg.matrix_norm(gram(Z), ord=2))
    values = []
    for t in range(200):
        A, P = factors.algorithm1_step(Z, A, P, lr)
        if t in (149, 199):
            values.append(float(factors.objective_direct(Z, A, P)))
    assert values[1] <= values[0] <= values[1] * (1 + 1e-7)  # converged
    return Z, A, P, values[1]


def test_fit_reaches_the_converged_algorithm1_objective(converged):
    Z, A_alg, P_alg, f_alg = converged
    N, C, S = Z.shape
    history = []
    A, P = solver.fit(Z, C, 4, history=history)
    assert A.shape == (C, C) and P.shape == (S, 4) and A.dtype == P.dtype == torch.float32 and (P >= 0).all()
    f_fit = float(factors.objective_direct(Z, A.double(), P.double()))
    assert f_fit <= 1.005 * f_alg                                   # the brief: within 0.5 %
    assert abs(f_fit - f_alg) <= 1e-4 * f_alg                       # in fact: the same value
    assert history == sorted(history, reverse=True) and len(history) < 50
    # A left orthogonality as in their loop, and the parts are theirs (up to order)
    assert (A.double().t() @ A.double() - torch.eye(C, dtype=F64)).abs().max() > 1e-2
    assert matched_cosine(P_alg, P) > 0.99
    # their A itself: the scale their loop keeps (||A||^2 - ||P||^2 from the init; their finite
    # steps drift ~10 % from it here), within 5 %, and every appearance on the side of its
    # np.linalg.svd vector (the authors' signs)
    A0, P0 = authors_init(Z, C, 4)
    balance = float(A.double().square().sum() - P.double().square().sum())
    assert balance == pytest.approx(float(A0.square().sum() - P0.square().sum()), rel=1e-5)
    assert float((A.double() - A_alg).norm() / A_alg.norm()) < 0.05
    assert (torch.diag(A0.t() @ A.double()) > 0).all()
    # the fixed-A solution (A held at its start) is clearly worse: fit is not that
    K = gram(Z)
    f_fixed = float(factors.objective_direct(Z, A0, solver.solve_parts(K, 4).double()))
    assert f_fixed >= 1.01 * f_alg


def relu_blobs(N: int = 48, C: int = 24, side: int = 8, blobs: int = 5, seed: int = 0) -> torch.Tensor:
    """Non-negative, spatially structured features: a few Gaussian blobs mixed per channel with
    per-sample weights, plus noise, through a ReLU [N, C, S] (the issue's "another basin")."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(side, dtype=F64), torch.arange(side, dtype=F64), indexing="ij")
    centres = torch.rand(blobs, 2, generator=g, dtype=F64) * (side - 1)
    maps = torch.stack([torch.exp(-((yy - a) ** 2 + (xx - b) ** 2) / 4.5).reshape(-1) for a, b in centres])
    mix = torch.randn(C, blobs, generator=g, dtype=F64)
    weights = torch.randn(N, 1, blobs, generator=g, dtype=F64)
    return ((mix * weights) @ maps + 0.3 * torch.randn(N, C, side * side, generator=g, dtype=F64)).clamp_min(0)


def theirs_gradients(Z, A, P):
    """dL/dP and dL/dA of the paper (their `Us_g`, `Uc_g`) with the products reordered through
    Z_i P, written here apart from the engine."""
    B = A @ A.t()
    ZP = Z @ P
    U1 = torch.einsum("ncs,ncr->sr", Z, B @ ZP)
    U2 = torch.einsum("ncs,ncr->sr", Z, B @ (B @ ZP))
    Q1 = torch.einsum("ncr,ndr->cd", ZP, ZP)
    Q2 = torch.einsum("ncr,rq,ndq->cd", ZP, P.t() @ P, ZP)
    return (-4 * U1 + 2 * (P @ (P.t() @ U2) + U2 @ (P.t() @ P)),
            -4 * Q1 @ A + 2 * (B @ Q2 @ A + Q2 @ B @ A))


def theirs_thin_step(Z, A, P, lr):
    """Their update (`authors_decompose_step`): P <- max(0, P - lr dL/dP), then A <- A - lr dL/dA
    at the new P."""
    P = (P - lr * theirs_gradients(Z, A, P)[0]).clamp_min(0)
    return A - lr * theirs_gradients(Z, A, P)[1], P


def theirs_converged(Z, rank_c, rank_s, max_steps=1000, window=100, rtol=1e-7):
    """The authors' loop, full gradient at 0.3 / ||K|| from their init, until a window lowers L
    by less than rtol (relative) -> the lower of its last L and that iterate's stationary value
    (the reference's own L-BFGS-B on A and P together: their loop only creeps at the end, and
    in flat valleys rests on plateaus for thousands of steps)."""
    from scipy.optimize import minimize

    Z = Z.double()
    A, P = authors_init(Z, rank_c, rank_s)
    lr = 0.3 / float(torch.linalg.matrix_norm(gram(Z), ord=2))
    f = last = float(factors.objective_direct(Z, A, P))
    for _ in range(0, max_steps, window):
        for _ in range(window):
            A, P = theirs_thin_step(Z, A, P, lr)
        f = float(factors.objective_direct(Z, A, P))
        if last - f <= rtol * last:
            break
        last = f
    n = A.numel()

    def value_and_grad(x):
        a, p = torch.from_numpy(x[:n]).view(A.shape), torch.from_numpy(x[n:]).view(P.shape)
        gP, gA = theirs_gradients(Z, a, p)
        value = (Z - a @ (a.t() @ Z @ p) @ p.t()).square().sum()
        return float(value), np.concatenate([gA.reshape(-1).numpy(), gP.reshape(-1).numpy()])

    bounds = [(None, None)] * n + [(0, None)] * P.numel()
    x = np.concatenate([A.reshape(-1).numpy(), P.reshape(-1).numpy()])
    polished = minimize(value_and_grad, x, jac=True, method="L-BFGS-B", bounds=bounds,
                        options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-9}).fun
    return min(f, float(polished))


def test_their_reordered_update_is_theirs():
    Z = relu_blobs(6, 5, 4, seed=3)
    A, P = authors_init(Z, 5, 3)
    lr = 0.3 / float(torch.linalg.matrix_norm(gram(Z), ord=2))
    Uc, Us = A, P
    for _ in range(3):
        A, P = theirs_thin_step(Z, A, P, lr)
        Uc, Us = authors_decompose_step(Z, Uc, Us, lr)
    torch.testing.assert_close(A, Uc, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(P, Us, rtol=1e-10, atol=1e-12)


def _gaussian(N: int, C: int, S: int) -> torch.Tensor:
    return torch.randn(N, C, S, generator=torch.Generator().manual_seed(0), dtype=F64)


FAMILIES = {  # name: (features, R_C, R_S), small enough to run in seconds
    "gaussian": (lambda: _gaussian(16, 8, 64), 8, 4),
    "planted parts": (lambda: planted(block_parts(8, 0), N=24, C=8, noise=0.05, seed=0), 8, 4),
    "relu blobs": (lambda: relu_blobs(24, 12, seed=0), 12, 6),
    "relu blobs, R_C < C": (lambda: relu_blobs(24, 12, seed=1), 6, 5),
    "relu blobs, float32": (lambda: relu_blobs(24, 12, seed=2).float(), 12, 6),
}
ISSUE_CASES = {  # the two measured failures at the issue's sizes, and overcomplete parts, whose
    # flat valleys take L-BFGS-B ~1000 iterations (SPATIAL_GAN_SLOW=1)
    "planted parts, overcomplete [8, 6]": (lambda: planted(block_parts(8, 0), N=24, C=8, noise=0.05, seed=0), 8, 6),
    "relu blobs N=48, C=24, [24, 6]": (lambda: relu_blobs(48, 24, seed=0), 24, 6),
    "planted parts [16, 8], float64": (lambda: planted(block_parts(8, 0), N=40, C=16, noise=0.05, seed=0), 16, 8),
    "planted parts [12, 8], float32": (lambda: planted(block_parts(8, 1), N=30, C=12, noise=0.05, seed=1).float(), 12, 8),
}


def _check_fit_against_their_loop(make, rank_c: int, rank_s: int) -> None:
    Z = make()
    A, P = solver.fit(Z, rank_c, rank_s)
    assert A.shape == (Z.shape[1], rank_c) and P.shape == (Z.shape[2], rank_s) and (P >= 0).all()
    f_fit = float(factors.objective_direct(Z.double(), A.double(), P.double()))
    assert f_fit <= 1.005 * theirs_converged(Z, rank_c, rank_s)


SLOW_FAMILIES = {"relu blobs, R_C < C", "relu blobs, float32"}  # a few seconds each: CI runs them


@pytest.mark.parametrize("family", [pytest.param(f, marks=pytest.mark.slow) if f in SLOW_FAMILIES else f
                                    for f in FAMILIES])
def test_fit_never_ends_above_their_converged_loop(family):
    """The issue's bound: fit's L at most 0.5 % above the authors' loop run to convergence from
    their init, on each family of generated features."""
    _check_fit_against_their_loop(*FAMILIES[family])


@pytest.mark.slow
@pytest.mark.parametrize("case", list(ISSUE_CASES))
def test_fit_never_ends_above_their_converged_loop_on_the_issue_cases(case):
    """The measured failures: blobs through a ReLU, where the fixed-A warm start led into a
    basin 1.5 % above theirs, and overcomplete planted parts, where stopping on relative
    decrease alone (or at 500 iterations) ended 0.4-8 % above."""
    _check_fit_against_their_loop(*ISSUE_CASES[case])


def test_settle_follows_their_update_and_the_polish_stops_on_the_projected_gradient():
    Z = relu_blobs(16, 8, seed=4)
    A0, P0 = authors_init(Z, 8, 3)
    trK = float(Z.square().sum())
    lr = 0.3 / float(torch.linalg.matrix_norm(gram(Z), ord=2))
    A, P, steps = solver.settle(Z, A0, P0, lr, 7, trK)
    Uc, Us = A0, P0
    for _ in range(7):
        Uc, Us = authors_decompose_step(Z, Uc, Us, lr)
    assert steps == 7
    torch.testing.assert_close(A, Uc, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(P, Us, rtol=1e-10, atol=1e-12)
    # polished: a stationary point (projected gradient ~0 relative to L / ||P||), not a stall
    P, B, f = solver.descend_parts(Z, P, trK, 2000, 1e-12)
    _, g, _ = solver._reduced(Z, P, trK)
    projected = torch.where(P > 0, g, g.clamp_max(0))
    assert float(projected.abs().max()) <= 1e-5 * float(f) / float(P.norm())


def test_fit_with_fewer_appearances_than_channels():
    Z = planted(block_parts(8, 1), N=40, C=16, noise=0.05, seed=1)
    A, P = solver.fit(Z, 8, 4)
    assert A.shape == (16, 8) and P.shape == (64, 4)
    A0, P0 = authors_init(Z, 8, 4)
    start = float(factors.objective_direct(Z, A0, P0))
    assert float(factors.objective_direct(Z, A.double(), P.double())) < 0.9 * start
    with pytest.raises(ValueError, match="ranks"):
        solver.fit(Z, 17, 4)


def test_solve_parts_starts_from_the_authors_init_and_decreases_the_objective():
    P0 = factors.init_parts(64, 4)
    assert P0.shape == (64, 4) and P0.min() >= 0 and P0.max() <= 0.01
    np.random.seed(0)
    assert np.array_equal(P0.numpy(), np.random.uniform(0, 0.01, size=[64, 4]))  # the authors' draw
    K = gram(planted(block_parts(8, 0), N=50, C=16, seed=0))
    f = [float(factors.objective_from_gram(K, solver.solve_parts(K, 4, iters=n).double())) for n in (1, 10, 100)]
    assert float(factors.objective_from_gram(K, P0)) > f[0] >= f[1] >= f[2]
    torch.testing.assert_close(solver.solve_parts(K, 4, iters=20), solver.solve_parts(K, 4, iters=20, P0=P0), rtol=0, atol=0)
    calls = []
    solver.solve_parts(K, 4, iters=30, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(10, 30), (20, 30), (30, 30)]


# ---- 4. appearances from the channel scatter: np.linalg.svd and its signs -----------------
def test_appearances_are_numpy_svd_with_its_signs():
    Sc = random_psd(12, 0)
    A = factors.appearances_from_scatter(Sc, 12)
    assert A.shape == (12, 12) and A.dtype == torch.float32
    U = np.linalg.svd(Sc.numpy())[0]
    assert np.array_equal(A.numpy(), U.astype(np.float32))                # float64 SVD, their signs
    U32 = np.linalg.svd(Sc.float().numpy())[0]                            # theirs ran in float32
    assert (np.sum(U32 * A.numpy(), 0) > 0.999).all()                     # same columns, same signs
    Ad = A.double()
    lam = torch.diagonal(Ad.t() @ Sc @ Ad)
    torch.testing.assert_close(lam, torch.linalg.eigvalsh(Sc).flip(0), rtol=1e-5, atol=1e-6)
    assert torch.equal(factors.appearances_from_scatter(Sc, 5), A[:, :5])      # leading columns
# ---- the tiny generator --------------------------------------------------------------------
@pytest.fixture(scope="module")
def G():
    return load_stylegan2(SG2_REF / "tiny.pt", **TINY_SG2_CONFIG)


def authors_features(G, layer: int, noise: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
    """Their `Model.sample(noise, layer, partial=True)`, flattened [N, C, S] float64."""
    w = G.mapping(noise)
    if truncation != 1.0:
        w = truncate(w, G.truncation_center(), truncation)
    f = G.synthesis_until(G.w_plus(w), panda_layer(layer)).features
    return f.reshape(f.shape[0], f.shape[1], -1).double()


def test_the_authors_samples():
    """Seed t is their sample t; the HOSVD batches are theirs (`np.random.seed(i)`, 10 rows)."""
    for t in (0, 19, 416):
        np.random.seed(t)
        noise = torch.Tensor(np.random.randn(1, 512))   # demo.ipynb / edit_at_layer, verbatim
        assert torch.equal(factors.authors_z(t), noise)
    assert factors.hosvd_draws(25) == [(0, 10), (1, 10), (2, 5)]
    assert factors.hosvd_draws(1000) == [(i, 10) for i in range(100)]
    assert factors.sample_draws([3, 5]) == [(3, 1), (5, 1)]
    np.random.seed(2)
    assert torch.equal(factors.authors_z(2, 10), torch.Tensor(np.random.randn(10, 512)))


@pytest.mark.parametrize("layer,n,truncation", [(5, 23, 1.0), (3, 12, 0.6)])
def test_features_and_stats_are_the_authors_samples(G, layer, n, truncation):
    calls = []
    Z = factors.collect_features(G, layer, n, truncation, chunk=8, progress=lambda d, t: calls.append((d, t)))
    noise = torch.cat([factors.authors_z(i, r, G.style_dim) for i, r in factors.hosvd_draws(n)])
    expected = authors_features(G, layer, noise, truncation)
    k = panda_layer(layer)
    C, s = G.layer_channels(k), G.layer_resolution(k)
    assert Z.shape == (n, C, s * s) and Z.dtype == torch.float32 and calls[-1] == (n, n)
    torch.testing.assert_close(Z.double(), expected, rtol=1e-4, atol=1e-5)
    stats = factors.collect_stats(G, layer, factors.hosvd_draws(n), truncation, chunk=8)
    assert stats.n == n and stats.gram.shape == (s * s, s * s)
    torch.testing.assert_close(stats.scatter.double(), torch.einsum("ncs,nds->cd", expected, expected) / n, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(stats.gram.double(), gram(expected), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(stats.mean.double(), expected.mean((0, 2)), rtol=1e-4, atol=1e-6)
    assert factors.collect_stats(G, layer, factors.hosvd_draws(n), truncation, with_gram=False).gram.numel() == 0
    # one sample per seed (the stochastic loop, saliency statistics): streamed in order
    pieces = list(factors.stream_features(G, layer, factors.sample_draws([7, 8, 9]), truncation, chunk=2))
    assert [p.shape[0] for p in pieces] == [1, 1, 1]
    torch.testing.assert_close(torch.cat(pieces).double(),
                               authors_features(G, layer, torch.cat([factors.authors_z(t, 1, G.style_dim) for t in (7, 8, 9)]),
                                                truncation), rtol=1e-4, atol=1e-5)


def test_fit_on_generator_features_reaches_the_converged_algorithm1_objective(G):
    """Real features (the tiny generator, layer 3, 40 of the authors' samples): their loop run
    to convergence and fit agree within 1e-4; A held at its start is ~0.9 % worse."""
    Z = factors.collect_features(G, 3, 40).double()
    A, P = authors_init(Z, 16, 4)
    lr = 0.3 / float(torch.linalg.matrix_norm(gram(Z), ord=2))
    for _ in range(1000):
        A, P = factors.algorithm1_step(Z, A, P, lr)
    f_alg = float(factors.objective_direct(Z, A, P))
    A_fit, P_fit = solver.fit(Z.float(), 16, 4)
    assert A_fit.shape == (16, 16) and P_fit.shape == (64, 4) and (P_fit >= 0).all()
    f_fit = float(factors.objective_direct(Z, A_fit.double(), P_fit.double()))
    assert abs(f_fit - f_alg) <= 1e-4 * f_alg
    A0, _ = authors_init(Z, 16, 4)
    assert float(factors.objective_direct(Z, A0, solver.solve_parts(gram(Z), 4).double())) > 1.005 * f_alg
    engine.FactorSet("tiny", 3, A_fit, P_fit).check_against(G)


# ---- 6. the authors' file format -----------------------------------------------------------
def test_save_and_load_factors_in_the_authors_format(tmp_path):
    g = torch.Generator().manual_seed(0)
    A = torch.randn(16, 12, generator=g, dtype=F64)
    P = torch.rand(256, 4, generator=g, dtype=F64)
    uc, us = factors.save_factors(tmp_path / "out", "tiny", 5, A, P)
    assert (uc.name, us.name) == ("Uc-name_tiny-layer_5-rank_12.npy", "Us-name_tiny-layer_5-rank_4.npy")
    assert factors.factor_filenames("tiny", 5, 12, 4) == (uc.name, us.name)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [uc.name, us.name]
    a, p = np.load(uc), np.load(us)
    assert a.dtype == np.float32 and a.shape == (16, 12) and p.dtype == np.float32 and p.shape == (256, 4)
    assert np.array_equal(a, A.float().numpy()) and np.array_equal(p, P.float().numpy())
    A2, P2 = factors.load_factor_file(uc), factors.load_factor_file(us)
    assert A2.dtype == torch.float32 and torch.equal(A2, A.float()) and torch.equal(P2, P.float())
    # pickled object arrays are refused
    np.save(tmp_path / "evil.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        factors.load_factor_file(tmp_path / "evil.npy")


# ---- factors for the tiny generator --------------------------------------------------------
def quadrant_parts(side: int, zero_value: float = 0.0) -> torch.Tensor:
    """4 quadrant parts [side^2, 4] with smooth positive values inside, exact zeros outside."""
    grid = torch.arange(side * side).view(side, side)
    h = side // 2
    P = torch.zeros(side * side, 4)
    vals = torch.linspace(0.2, 1.0, h * h)
    for r, (y, x) in enumerate([(0, 0), (0, h), (h, 0), (h, h)]):
        P[grid[y:y + h, x:x + h].reshape(-1), r] = vals
    return P


def tiny_factors(G, layer: int, seed: int = 0) -> engine.FactorSet:
    k = panda_layer(layer)
    C, s = G.layer_channels(k), G.layer_resolution(k)
    A = factors.appearances_from_scatter(random_psd(C, seed).float(), C)
    return engine.FactorSet("tiny-sg2", layer, A, quadrant_parts(s))


def minmax(x: torch.Tensor) -> torch.Tensor:
    return (x - x.min()) / (x.max() - x.min())


def edit1(G, w, fs, parts, j, lam, **kw):
    """One [parts, appearance, lambda] term -> (original, edited)."""
    res = engine.edit(G, w, fs, [engine.EditTerm(tuple(parts), j, lam)], **kw)
    return res.original, res.edited


# ---- 7. edits ------------------------------------------------------------------------------
@pytest.mark.parametrize("layer", [5, 4])
def test_edit_changes_only_the_chosen_part_at_the_layer(G, layer):
    fs = tiny_factors(G, layer)
    k = panda_layer(layer)
    w = engine.seed_w_plus(G, [1, 2], 1.0)
    # strength 0: both images are the generator's image
    o0, e0 = edit1(G, w, fs, [0], 3, 0.0)
    assert o0.shape == (2, 3, 32, 32) and torch.equal(o0, e0)
    torch.testing.assert_close(o0, G.synthesis(w).float(), rtol=0, atol=1e-5)
    # spy on the resumed pass to see the features handed to the rest of the generator
    seen = {}
    resume = G.synthesis_from

    def spy(state, w_plus, *a, **kw):
        seen["state"] = state
        return resume(state, w_plus, *a, **kw)

    lam, j, parts = 40.0, 3, [0, 3]
    G.synthesis_from = spy
    try:
        o, e = edit1(G, w, fs, parts, j, lam)
    finally:
        del G.synthesis_from
    assert not torch.allclose(o, e, atol=1e-3)
    torch.testing.assert_close(o, o0, rtol=0, atol=1e-6)  # the original does not depend on the edit
    state = seen["state"]
    Z = G.synthesis_until(w, k).features
    s = G.layer_resolution(k)
    assert state.layer == k and state.features.shape == (4, *Z.shape[1:])
    torch.testing.assert_close(state.features[:2], Z, rtol=0, atol=1e-6)
    mask = minmax(fs.P[:, parts].sum(1)).reshape(s, s)
    delta = lam * fs.A[:, j][None, :, None, None] * mask[None, None]
    torch.testing.assert_close(state.features[2:] - state.features[:2], delta.expand_as(Z), rtol=1e-5, atol=1e-5)
    # where the mask is 0 the features are untouched, bit for bit
    outside = mask == 0
    assert outside.any() and (mask > 0).any()
    assert torch.equal(state.features[2:][..., outside], state.features[:2][..., outside])
    assert not torch.equal(state.features[2:][..., ~outside], state.features[:2][..., ~outside])
    # the edited image is the generator's own image with that residual after layer k
    torch.testing.assert_close(e, G.synthesis(w, deltas={k: delta}).float(), rtol=0, atol=1e-4)  # batch of 4 vs 2: float rounding
    # the batch is edited sample by sample
    o1, e1 = edit1(G, w[1:], fs, parts, j, lam)
    torch.testing.assert_close(e1, e[1:], rtol=0, atol=1e-5)


def test_edit_sign_of_the_strength_matters(G):
    fs = tiny_factors(G, 5)
    w = engine.seed_w_plus(G, [7], 0.7)
    _, plus = edit1(G, w, fs, [1], 0, 60.0)
    _, minus = edit1(G, w, fs, [1], 0, -60.0)
    assert not torch.allclose(plus, minus, atol=1e-3)


# ---- 8. part masks and index checks --------------------------------------------------------
def test_part_mask_is_the_min_max_scaled_union():
    g = torch.Generator().manual_seed(0)
    P = torch.rand(64, 3, generator=g) * 5
    m = engine.part_mask(P, [0, 2], 8)
    assert m.shape == (8, 8)
    assert m.max() == 1 and m.min() == 0
    torch.testing.assert_close(m, minmax(P[:, 0] + P[:, 2]).reshape(8, 8))
    # disjoint parts: the mask is positive exactly on the union of their supports
    Q = quadrant_parts(8)
    u = engine.part_mask(Q, [0, 3], 8)
    support = (Q[:, 0] + Q[:, 3] > 0).reshape(8, 8)
    assert torch.equal(u > 0, support) and u.max() == 1 and u.min() == 0
    # row-major layout (h * W + w), as the authors reshape
    one = torch.zeros(64, 1)
    one[1 * 8 + 5] = 2.0
    m1 = engine.part_mask(one, [0], 8)
    assert m1[1, 5] == 1 and m1.sum() == 1


def test_part_mask_errors():
    P = torch.rand(64, 3)
    with pytest.raises(UserError, match="at least one part"):
        engine.part_mask(P, [], 8)
    for bad in ([3], [0, 7], [-1]):
        with pytest.raises(UserError, match=r"0\.\.2"):
            engine.part_mask(P, bad, 8)


def test_out_of_range_appearance_is_a_user_error(G):
    fs = tiny_factors(G, 5)
    w = engine.seed_w_plus(G, [0], 1.0)
    for j in (16, -1):
        with pytest.raises(UserError, match=r"0\.\.15"):
            edit1(G, w, fs, [0], j, 10.0)
        with pytest.raises(UserError, match=r"0\.\.15"):
            engine.saliency(G, w, fs, j)
    with pytest.raises(UserError, match="out of range"):
        edit1(G, w, fs, [4], 0, 10.0)


# ---- 9. saliency ---------------------------------------------------------------------------
@pytest.mark.parametrize("layer", [5, 3])
def test_saliency_is_the_appearance_projection_upsampled_then_thresholded(G, layer):
    """localize-concepts: coordinates a_j^T Z, resized with PIL's Lanczos to the picture,
    then `>= mean` (transcribed here from the notebook)."""
    from PIL import Image

    fs = tiny_factors(G, layer, seed=2)
    w = engine.seed_w_plus(G, [4, 5], 1.0)
    k = panda_layer(layer)
    s = G.layer_resolution(k)
    Z = G.synthesis_until(w, k).features.double()        # [B, C, s, s]
    j = 5
    expected = torch.einsum("c,bchw->bhw", fs.A[:, j].double(), Z)
    t = float(expected.median())
    m, b = engine.saliency(G, w, fs, j, threshold=t)
    assert m.shape == (2, s, s) and b.shape == (2, 32, 32)
    torch.testing.assert_close(m.double(), expected, rtol=1e-5, atol=1e-5)
    for mi, bi in zip(m, b):
        coordinates = mi.numpy()
        mask = np.array(Image.fromarray(coordinates.squeeze()).resize((32, 32), Image.LANCZOS))[:, :, None]
        mask = (mask >= t).astype(np.uint8) * 255
        assert np.array_equal(bi.numpy() * 255, mask[..., 0].astype(np.float32))
    assert 0 < b.mean() < 1
    # not the same as thresholding at the layer's resolution and enlarging the cells
    nearest = (m >= t).float().repeat_interleave(32 // s, 1).repeat_interleave(32 // s, 2)
    assert not torch.equal(nearest, b)
    # default threshold: the map's own mean
    _, b2 = engine.saliency(G, w, fs, j, size=16)
    assert b2.shape == (2, 16, 16)
    # the authors' background masking: white where the mask is on
    pictures = G.synthesis(w).float()
    masked = engine.masked_pictures(pictures, b)
    base = to_uint8(pictures)
    on = b.numpy() > 0
    assert (masked[on] == 255).all() and np.array_equal(masked[~on], base[~on])


def test_several_edits_are_summed(G):
    """The authors' `direc`: sum_k lambda_k a_k (x) p_k, one resumed pass."""
    fs = tiny_factors(G, 5)
    k = panda_layer(5)
    w = engine.seed_w_plus(G, [3], 1.0)
    terms = [engine.EditTerm((0,), 2, 40.0), engine.EditTerm((1, 3), 5, -25.0)]
    res = engine.edit(G, w, fs, terms)
    delta = sum(t.strength * fs.A[:, t.appearance][:, None, None] * minmax(fs.P[:, list(t.parts)].sum(1)).reshape(16, 16)[None]
                for t in terms)
    torch.testing.assert_close(engine.edit_delta(fs.A, fs.P, terms, 16), delta, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(res.edited, G.synthesis(w, deltas={k: delta[None]}).float(), rtol=0, atol=1e-4)
    one = engine.edit(G, w, fs, terms[:1]).edited
    assert not torch.allclose(one, res.edited, atol=1e-3)
    assert res.parts.shape == (1, 256, 4) and torch.equal(res.parts[0], fs.P) and not res.refined
    with pytest.raises(UserError, match="at least one part"):
        engine.edit(G, w, fs, [])


def authors_refine(Z, Uc, Us, lr, its):
    """`Model.refine` (model.py), line by line (its loop body)."""
    UsR = Us.clone()
    zeros = torch.zeros_like(Us)
    for t in range(its):
        z = Z.view(-1, Z.shape[1], Z.shape[2] * Z.shape[3] if Z.ndim == 4 else Z.shape[2]).double()
        UsR_g = -4 * (torch.transpose(z, 1, 2) @ Uc @ Uc.T @ z @ UsR) + \
            2 * (UsR @ UsR.T @ torch.transpose(z, 1, 2) @ Uc @ Uc.T @ Uc @ Uc.T @ z @ UsR
                 + torch.transpose(z, 1, 2) @ Uc @ Uc.T @ Uc @ Uc.T @ z @ UsR @ UsR.T @ UsR)
        UsR_g = torch.sum(UsR_g, 0)
        UsR = UsR - lr * UsR_g
        UsR = torch.maximum(UsR, zeros)
    return UsR


def test_refinement_is_the_authors_refine_and_edits_with_the_refined_parts(G):
    fs = tiny_factors(G, 5)
    k = panda_layer(5)
    w = engine.seed_w_plus(G, [19, 4], 1.0)
    Z = G.synthesis_until(w, k).features.float()
    flat = Z.reshape(2, Z.shape[1], -1)
    lr = 0.05 / float(torch.linalg.matrix_norm(flat[0].double(), ord=2)) ** 2
    ours = engine.refine_parts(flat[0], fs.A, fs.P, lr=lr, steps=5)
    theirs = authors_refine(Z[:1].double(), fs.A.double(), fs.P.double(), lr, 5)
    torch.testing.assert_close(ours.double(), theirs, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(ours, fs.P, atol=1e-4) and (ours >= 0).all()
    # backtracking steps: never worse than the global parts on that sample
    safe = engine.refine_parts(flat[0], fs.A, fs.P, lr=None, steps=20)
    f = lambda P: float(factors.objective_direct(flat[:1].double(), fs.A.double(), P.double()))  # noqa: E731
    assert f(safe) < f(fs.P)
    # the edit uses each sample's own refined parts
    term = [engine.EditTerm((0,), 2, 40.0)]
    res = engine.edit(G, w, fs, term, refine=True, refine_lr=None, refine_steps=20)
    assert res.refined and res.parts.shape == (2, 256, 4)
    torch.testing.assert_close(res.parts[0], safe, rtol=1e-5, atol=1e-6)
    deltas = torch.stack([engine.edit_delta(fs.A, P, term, 16) for P in res.parts])
    torch.testing.assert_close(res.edited, G.synthesis(w, deltas={k: deltas}).float(), rtol=0, atol=1e-4)
    assert not torch.allclose(res.edited, engine.edit(G, w, fs, term).edited, atol=1e-4)


def test_part_overlays(G):
    fs = tiny_factors(G, 5)
    image = G.synthesis(engine.seed_w_plus(G, [0], 1.0)).float()[0]
    tiles = engine.part_overlays(image, fs)
    assert len(tiles) == 4
    assert all(t.shape == (32, 32, 3) and t.dtype == np.uint8 for t in tiles)
    # each tint sits in its own quadrant: the far quadrant of the image is untouched
    base = to_uint8(image[None])[0]
    assert not np.array_equal(tiles[0][:14, :14], base[:14, :14])
    assert np.array_equal(tiles[0][18:, 18:], base[18:, 18:])
    assert np.array_equal(tiles[3][:14, :14], base[:14, :14])


# ---- 10. factors vs generator --------------------------------------------------------------
def test_check_against_rejects_factors_of_another_layer_or_model(G):
    fs = tiny_factors(G, 5)
    fs.check_against(G)  # fits: 16 channels, 16 x 16
    bad = [engine.FactorSet("tiny-sg2", 5, fs.A[:8], fs.P),                      # wrong C
           engine.FactorSet("tiny-sg2", 5, fs.A, quadrant_parts(8)),             # wrong S (8 x 8)
           engine.FactorSet("tiny-sg2", 5, fs.A, torch.rand(200, 4)),            # S not square
           engine.FactorSet("tiny-sg2", 3, fs.A, fs.P)]                          # layer 3 is 8 x 8
    for f in bad:
        with pytest.raises(UserError, match="do not fit"):
            f.check_against(G)
    for layer in (0, G.num_layers + 1, 99):
        with pytest.raises(UserError, match="does not exist"):
            engine.FactorSet("tiny-sg2", layer, fs.A, fs.P).check_against(G)
    tiny_factors(G, G.num_layers).check_against(G)  # the last layer exists


# ---- 11. the factor library ----------------------------------------------------------------
def _factor_entry(entry_id: str, layer: int, kind: str, rank: int, filename: str) -> dict:
    return {"id": entry_id, "arch": "panda-factors", "config": {}, "generator": "tiny-sg2",
            "meta": {"layer": layer, "factor": kind, "rank": rank},
            "hub": {"repo_id": "someone/PandA", "repo_type": "space", "filename": filename},
            "license": "test only", "source": "tests"}


def test_factor_library_published_and_computed(tmp_path, tiny_sg2_file, hub_cache, monkeypatch):
    monkeypatch.setenv("SPATIAL_GAN_CACHE", str(tmp_path))
    g = torch.Generator().manual_seed(0)
    A5 = factors.appearances_from_scatter(random_psd(16, 0).float(), 16).numpy()
    P5 = quadrant_parts(16).numpy()
    A7 = factors.appearances_from_scatter(random_psd(16, 1).float(), 16).numpy()
    P7 = (torch.rand(1024, 2, generator=g) - 0.5).numpy()  # negative: not parts
    files = {"checkpoints/Uc-name_tiny-layer_5-rank_16.npy": npy_bytes(A5),
             "checkpoints/Us-name_tiny-layer_5-rank_4.npy": npy_bytes(P5),
             "checkpoints/Uc-name_tiny-layer_7-rank_16.npy": npy_bytes(A7),
             "checkpoints/Us-name_tiny-layer_7-rank_2.npy": npy_bytes(P7)}
    seed_hub_cache(hub_cache, "someone/PandA", files, repo_type="space")
    entries = [tiny_sg2_entry("tiny-sg2", tiny_sg2_file),
               _factor_entry("tiny-l5-a", 5, "appearances", 16, "checkpoints/Uc-name_tiny-layer_5-rank_16.npy"),
               _factor_entry("tiny-l5-p", 5, "parts", 4, "checkpoints/Us-name_tiny-layer_5-rank_4.npy"),
               _factor_entry("tiny-l7-a", 7, "appearances", 16, "checkpoints/Uc-name_tiny-layer_7-rank_16.npy"),
               _factor_entry("tiny-l7-p", 7, "parts", 2, "checkpoints/Us-name_tiny-layer_7-rank_2.npy")]
    ctx = AppContext(load_registry(write_registry(tmp_path / "weights.json", entries)), torch.device("cpu"))
    lib = sources.FactorLibrary(ctx)

    pub5 = "tiny-sg2 · layer 5 · ranks [16, 4] (published)"
    pub7 = "tiny-sg2 · layer 7 · ranks [16, 2] (published)"
    assert lib.labels() == [pub5, pub7] and lib.computed() == {}
    assert lib.published()[pub5] == ("tiny-sg2", "tiny-l5-a", "tiny-l5-p", 5)
    fs = lib.get(pub5)
    assert (fs.generator, fs.layer, fs.origin, fs.label) == ("tiny-sg2", 5, "published", pub5)
    assert torch.equal(fs.A, torch.from_numpy(A5)) and torch.equal(fs.P, torch.from_numpy(P5))
    assert lib.get(pub5) is fs
    assert lib.authors_name("tiny-sg2") == "tiny"      # from its published files' names
    G = ctx.model("tiny-sg2")
    fs.check_against(G)
    with pytest.raises(UserError, match="not PandA factors"):
        lib.get(pub7)
    with pytest.raises(UserError, match="Unknown factor set"):
        lib.get("tiny-sg2 · layer 9 · ranks [16, 4] (published)")

    # computed factors: found under $SPATIAL_GAN_CACHE/panda/<generator id>
    A3 = torch.from_numpy(factors.appearances_from_scatter(random_psd(16, 2).float(), 16).numpy())
    P3 = quadrant_parts(8)[:, :3]
    factors.save_factors(tmp_path / "panda" / "tiny-sg2", "tiny-sg2", 3, A3, P3)
    factors.save_factors(tmp_path / "panda" / "not-registered", "not-registered", 3, A3, P3)
    comp3 = "tiny-sg2 · layer 3 · ranks [16, 3] (computed)"
    assert list(lib.computed()) == [comp3]
    assert lib.labels() == [pub5, pub7, comp3]
    fc = lib.get(comp3)
    assert (fc.generator, fc.layer, fc.origin, fc.label) == ("tiny-sg2", 3, "computed", comp3)
    assert torch.equal(fc.A, A3) and torch.equal(fc.P, P3)
    assert engine.set_label("tiny-sg2", 3, 16, 3, "computed") == comp3
    # rewritten files are read again once the loaded set is forgotten
    factors.save_factors(tmp_path / "panda" / "tiny-sg2", "tiny-sg2", 3, A3, 2 * P3)
    assert lib.get(comp3) is fc
    lib.forget(comp3)
    fc = lib.get(comp3)
    assert torch.equal(fc.P, 2 * P3)
    fc.check_against(G)
    o, e = edit1(G, engine.seed_w_plus(G, [0], 1.0), fc, [1], 2, 30.0)
    assert not torch.equal(o, e)
    # a computed set with negative parts is refused too
    factors.save_factors(tmp_path / "panda" / "tiny-sg2", "tiny-sg2", 5, A3, -quadrant_parts(16))
    with pytest.raises(UserError, match="not PandA factors"):
        lib.get("tiny-sg2 · layer 5 · ranks [16, 4] (computed)")


def test_factor_library_offline_without_the_files_is_a_user_error(tmp_path, tiny_sg2_file, hub_cache, monkeypatch):
    monkeypatch.setenv("SPATIAL_GAN_CACHE", str(tmp_path))
    entries = [tiny_sg2_entry("tiny-sg2", tiny_sg2_file),
               _factor_entry("a", 5, "appearances", 16, "checkpoints/Uc-name_tiny-layer_5-rank_16.npy"),
               _factor_entry("p", 5, "parts", 4, "checkpoints/Us-name_tiny-layer_5-rank_4.npy")]
    ctx = AppContext(load_registry(write_registry(tmp_path / "weights.json", entries)), torch.device("cpu"))
    lib = sources.FactorLibrary(ctx)
    with pytest.raises(UserError):
        lib.get("tiny-sg2 · layer 5 · ranks [16, 4] (published)")


def test_factor_library_names_what_a_factor_entry_lacks(tmp_path, tiny_sg2_file):
    """A factor entry needs its generator and meta layer, factor and rank, of the right types:
    PandA checks its own registry fields (core keeps them as plain values)."""
    full = _factor_entry("a", 5, "appearances", 16, "x.npy")
    for drop in ("generator", "layer", "factor", "rank"):
        entry = {**full, "meta": dict(full["meta"])}
        (entry if drop == "generator" else entry["meta"]).pop(drop)
        entries = [tiny_sg2_entry("tiny-sg2", tiny_sg2_file), entry]
        ctx = AppContext(load_registry(write_registry(tmp_path / "weights.json", entries)), torch.device("cpu"))
        name = "its generator" if drop == "generator" else f"meta {drop}"
        with pytest.raises(UserError, match=rf"'a' \(PandA factors\) needs {name}"):
            sources.FactorLibrary(ctx).labels()
    for meta in ({"layer": "five"}, {"factor": "colour"}, {"rank": 0}):
        entry = {**full, "meta": {**full["meta"], **meta}}
        entries = [tiny_sg2_entry("tiny-sg2", tiny_sg2_file), entry]
        ctx = AppContext(load_registry(write_registry(tmp_path / "weights.json", entries)), torch.device("cpu"))
        with pytest.raises(UserError, match=rf"needs meta {next(iter(meta))}"):
            sources.FactorLibrary(ctx).labels()


# ---- 12. presets ---------------------------------------------------------------------------
# The authors' annotated_directions.py: (layer, R_S) -> name -> (part, appearance, lambda)
AUTHORS_DIRECTIONS = {
    (5, 8): {"big_eyes": (7, 6, 30), "long_nose": (5, 82, 30), "smile": (4, 46, -30),
             "open_mouth": (4, 39, 30)},
    (6, 16): {"big_eyeballs": (8, 27, 100), "wide_nose": (15, 13, 100), "glance_left": (8, 281, 50),
              "glance_right": (8, 281, -70), "bald_forehead": (3, 25, 100)},
    (7, 16): {"light_eyebrows": (8, 4, 30), "dark_eyebrows": (8, 9, 30), "no_eyebrows": (8, 4, 50),
              "dark_eyes": (11, 176, 50), "red_eyes": (11, 109, 60), "eyes_short": (11, 262, 70),
              "eyes_open": (11, 28, 50), "eyes_close": (11, 398, 80), "no_eyes": (11, 0, -200)},
}


def ffhq(layer: int, rank_s: int, origin: str = "published", generator: str = "stylegan2-ffhq-1024"):
    s = {5: 16, 6: 32, 7: 32}.get(layer, 16)
    return engine.FactorSet(generator, layer, torch.zeros(512, 512), torch.zeros(s * s, rank_s), origin)


@pytest.mark.parametrize("key", sorted(AUTHORS_DIRECTIONS))
def test_ffhq_presets_are_the_authors_annotated_directions(key):
    layer, rank_s = key
    presets = engine.presets_for(ffhq(layer, rank_s))
    expected = {name.replace("_", " "): ([p], j, lam) for name, (p, j, lam) in AUTHORS_DIRECTIONS[key].items()}
    assert {n: (list(p), int(j), float(lam)) for n, (p, j, lam) in presets.items()} == \
        {n: (p, j, float(lam)) for n, (p, j, lam) in expected.items()}
    for parts, j, _ in presets.values():
        assert all(0 <= p < rank_s for p in parts) and 0 <= j < 512


def test_presets_spot_checks_and_only_for_published_ffhq():
    assert engine.presets_for(ffhq(5, 8))["big eyes"] == ([7], 6, 30)
    assert engine.presets_for(ffhq(7, 16))["no eyes"] == ([11], 0, -200)
    assert engine.presets_for(ffhq(6, 16))["glance right"] == ([8], 281, -70)
    assert engine.presets_for(ffhq(5, 8, origin="computed")) == {}
    assert engine.presets_for(ffhq(5, 16)) == {}  # not the published rank at layer 5
    assert engine.presets_for(ffhq(8, 8)) == {}
    assert engine.presets_for(ffhq(8, 8, generator="stylegan2-afhqdog-512")) == {}
    assert engine.presets_for(ffhq(5, 8, generator="tiny-sg2")) == {}
    # "remove object" only where annotated: no_eyes (appearance 0, lambda -200) at layer 7
    removals = [(k, n) for k, table in engine.FFHQ_PRESETS.items() for n, (_, j, lam) in table.items() if j == 0]
    assert removals == [((7, 16), "no eyes")] and not hasattr(engine, "REMOVE_OBJECT")


def test_every_preset_table_has_its_published_factor_set_in_the_bundled_registry():
    ctx = AppContext(load_registry(ROOT / "weights.json"), torch.device("cpu"))
    lib = sources.FactorLibrary(ctx)
    published = lib.published()  # no downloads: labels from the registry only
    # computed files take the authors' names, so their notebooks load ours
    assert lib.authors_name("stylegan2-ffhq-1024") == "stylegan2_ffhq1024"
    assert lib.authors_name("stylegan2-afhqdog-512") == "stylegan2_afhqdog512"
    assert lib.authors_name("stylegan2-car-512") == "stylegan2_car512"
    for layer, rank_s in engine.FFHQ_PRESETS:
        label = f"stylegan2-ffhq-1024 · layer {layer} · ranks [512, {rank_s}] (published)"
        assert label in published, label
        assert published[label][0] == "stylegan2-ffhq-1024" and published[label][3] == layer


def test_refinement_falls_back_when_the_authors_lr_diverges(G):
    fs = tiny_factors(G, 5)
    Z = G.synthesis_until(engine.seed_w_plus(G, [2], 1.0), panda_layer(5)).features.float().reshape(1, 16, -1)
    huge = engine.refine_parts(Z[0], fs.A, fs.P, lr=1e3, steps=5)
    assert torch.isfinite(huge).all()
    torch.testing.assert_close(huge, engine.refine_parts(Z[0], fs.A, fs.P, lr=None, steps=5))
