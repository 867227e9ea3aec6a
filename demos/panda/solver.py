"""PandA's `fit` (what the tab runs): the authors' Algorithm 1 objective (`factors`), solved fast.

The same objective and init, their own update (at a safe step, SAFE_LR / ||K||) only until the
basin it descends into is settled (`settle`: tens to a few hundred steps; a fixed-A warm start,
larger steps, or L-BFGS-B from mid-descent can each end a few % higher), then that point
polished to its stationary value without their hand-tuned lr. For fixed parts L is quadratic
in B = A A^T, and with R_C = C its minimiser is a Lyapunov solve in the eigenbasis of a C x C
statistic (`optimal_appearances`); L-BFGS-B then runs on the S x R_S parts alone (P >= 0)
until the projected gradient vanishes (`descend_parts`), restarting while that still helps, in
float64 where float32 rounding stalls it. A ends as B^(1/2) A0 (a left factor, like their
update, so every appearance keeps its SVD sign) at the scale their loop keeps (`_balanced`).
The tests hold it to their loop run to convergence on several feature families; their fixed-lr
loop stays available as `factors.algorithm1` (both modes).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from demos.panda.factors import (Progress, _flat, _grad_appearances_thin, _grad_parts_from, _thin, _times_blocks,
                                 appearances_from_scatter, init_parts, objective, objective_from_gram)

STEP_CAP = 0.5  # P steps at most STEP_CAP / ||K||: longer first steps let one part take all
SAFE_LR = 0.3   # `fit` follows their update at SAFE_LR / ||K|| (the bench's and the tests' loop)
SETTLE_WINDOW = 10   # their steps between two looks at L while the basin settles
SETTLE_DROP = 0.1    # ... settled once a window lowers L by less than this part of the largest drop
SETTLE_RATE = 0.02   # ... and by less than this part of L
PGTOL = 1e-7  # L-BFGS-B ends when no projected-gradient entry exceeds PGTOL * |L| / ||x||


def solve_parts(K: torch.Tensor, rank_s: int, iters: int = 500, P0: torch.Tensor | None = None,
                progress: Progress | None = None) -> torch.Tensor:
    """Projected gradient on P >= 0 with A A^T = I, from K alone (the warm start of `fit`).

    Gradient -4 K P + 2 K P (P^T P) + 2 P (P^T K P); step by backtracking (Armijo) from the
    previous step, never above STEP_CAP / ||K|| (the scale of a safe fixed lr: from the
    authors' tiny init, unbounded steps reach other, worse optima). float64: K is at most 4096^2.
    """
    K = K.double()
    P = (init_parts(K.shape[0], rank_s) if P0 is None else P0.double()).to(K.device)
    step = cap = STEP_CAP / max(float(torch.linalg.matrix_norm(K, ord=2)), 1e-12)
    f = objective_from_gram(K, P)
    for t in range(iters):
        KP = K @ P
        grad = -4 * KP + 2 * KP @ (P.t() @ P) + 2 * P @ (P.t() @ KP)
        step = min(2.0 * step, cap)
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


def optimal_appearances(L: torch.Tensor, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The best A A^T for fixed parts (A square) -> (B, tr(B Q1): the drop in L it buys).

    L(A, P) = tr K - 2 tr(B Q1) + tr(B Q2 B) with B = A A^T, Q1 = sum Z_i P P^T Z_i^T and
    Q2 = sum Z_i P W P^T Z_i^T (from L = [Z_i P], W = P^T P, in float64): quadratic in B, its
    minimiser solves B Q2 + Q2 B = 2 Q1, entry by entry in Q2's eigenbasis, and is positive
    semidefinite (Q1, Q2 are), so it is some A A^T. Directions Q2 does not see do not change L
    and get B = 0."""
    L = L.double()
    Q1 = L @ L.t()
    q, V = torch.linalg.eigh(_times_blocks(L, W.double()) @ L.t())
    Q1v = V.t() @ Q1 @ V
    den = q[:, None] + q[None, :]
    seen = den > 1e-12 * float(q.max().clamp_min(1e-300))
    Bv = torch.where(seen, 2 * Q1v / torch.where(seen, den, torch.ones_like(den)), torch.zeros_like(den))
    return V @ Bv @ V.t(), (Bv * Q1v).sum()


def _reduced(Z: torch.Tensor, P: torch.Tensor, trK: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """min over A of L(A, P) -> (value, its gradient in P, the minimising B): the gradient of L
    at that B (envelope theorem), from the thin products B Z_i P and B^2 Z_i P."""
    L = _thin(Z, P.to(Z.dtype)).double()
    B, gain = optimal_appearances(L, P.t() @ P)
    BL = B @ L
    g = _grad_parts_from(Z, P, BL.to(Z.dtype), (B @ BL).to(Z.dtype)).double()
    return trK - gain, g, B


def descend_parts(Z: torch.Tensor, P: torch.Tensor, trK: float, max_iters: int, tol: float,
                  progress: Progress | None = None, history: list[float] | None = None,
                  done: int = 0, total: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L-BFGS-B on the parts with A A^T at its optimum for each (`_reduced`), from P
    -> (parts, that B, L there): `fit`'s polish for R_C = C."""
    S, R = P.shape

    def reduced(Zp: torch.Tensor) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        return lambda x: _reduced(Zp, x.view(S, R), trK)[:2]

    P = _polish(reduced, Z, P.reshape(-1), S * R, max_iters, tol, progress, history, done, total).view(S, R)
    f, _, B = _reduced(Z, P, trK)
    return P, B, f


def _polish(make: Callable[[torch.Tensor], Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]],
            Z: torch.Tensor, x0: torch.Tensor, nonneg: int, max_iters: int, tol: float,
            progress: Progress | None, history: list[float] | None, done: int = 0,
            total: int | None = None) -> torch.Tensor:
    """`_lbfgsb` on make(Z) (value and gradient on the features Z); where Z is not float64 and
    that ends above PGTOL, on make(Z in float64) from there: with float32 products L is
    rounded at ~1e-7 of itself, and near a flat minimum that ends the line search early."""
    x, it, ok = _lbfgsb(make(Z), x0, nonneg, max_iters, tol, progress, history, done, total)
    if not ok and it < max_iters and Z.dtype != torch.float64:
        x = _lbfgsb(make(Z.double()), x, nonneg, max_iters - it, tol, progress, history, done + it, total)[0]
    return x


def _joint(Z: torch.Tensor, A: torch.Tensor, P: torch.Tensor, trK: float) -> tuple[torch.Tensor, ...]:
    """L(A, P) and both gradients (Algorithm 1's), sharing the thin products."""
    L = _thin(Z, P.to(Z.dtype)).double()
    W = P.t() @ P
    BL = A @ (A.t() @ L)
    gP = _grad_parts_from(Z, P, BL.to(Z.dtype), (A @ (A.t() @ BL)).to(Z.dtype)).double()
    return objective(trK, L, A, W), _grad_appearances_thin(L, A, W), gP


def _lbfgsb(value_and_grad: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], x0: torch.Tensor,
            nonneg: int, max_iters: int, tol: float, progress: Progress | None,
            history: list[float] | None, done: int = 0, total: int | None = None) -> tuple[torch.Tensor, int, bool]:
    """scipy's L-BFGS-B on a float64 vector whose last `nonneg` entries are >= 0 (the parts)
    -> (x, iterations, whether the projected gradient is down to PGTOL * |L| / ||x||).

    It stops on that projected gradient, or when an iteration lowers L by less than `tol`
    (relative) or its line search fails; the last two also happen on long flat valleys
    (overcomplete parts) where a stale curvature memory stalls it, so it restarts from its own
    point with a fresh memory for as long as that lowers L and iterations remain."""
    from scipy.optimize import Bounds, minimize  # heavy: loaded by the first fit, not at start-up

    device = x0.device
    lower = np.full(x0.numel(), -np.inf)
    lower[x0.numel() - nonneg:] = 0
    bounds = Bounds(lower, np.full(x0.numel(), np.inf))

    last: list = [None, 0.0, None]  # scipy starts each run where the last one ended: evaluated once

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        if last[0] is None or not np.array_equal(last[0], x):
            f, g = value_and_grad(torch.from_numpy(x).to(device))
            last[:] = [x.copy(), float(f), g.detach().cpu().numpy().astype(np.float64).ravel()]
        return last[1], last[2].copy()

    it = 0

    def callback(intermediate_result) -> None:  # noqa: ANN001 (scipy's name, its OptimizeResult)
        nonlocal it
        it += 1
        if history is not None:
            history.append(float(intermediate_result.fun))
        if progress:
            progress(done + it, total or max_iters)

    x = x0.detach().cpu().double().numpy().ravel()
    f, g = fun(x)
    gtol = PGTOL * abs(f) / max(float(np.linalg.norm(x)), 1e-300)
    while True:
        pg = np.where(x > lower, g, np.minimum(g, 0))  # at a bound only a negative entry counts
        if float(np.abs(pg).max(initial=0.0)) <= gtol or it >= max_iters:
            return torch.from_numpy(x).to(device), it, float(np.abs(pg).max(initial=0.0)) <= gtol
        result = minimize(fun, x, jac=True, method="L-BFGS-B", bounds=bounds, callback=callback,
                          options={"maxiter": max_iters - it, "ftol": tol, "gtol": gtol, "maxcor": 20})
        if not result.fun < f - tol * abs(f):  # this run (a restart) no longer helps
            if result.fun < f:
                x, g = result.x, result.jac
            pg = np.where(x > lower, g, np.minimum(g, 0))
            return torch.from_numpy(x).to(device), it, float(np.abs(pg).max(initial=0.0)) <= gtol
        x, f, g = result.x, float(result.fun), result.jac


def settle(Z: torch.Tensor, A: torch.Tensor, P: torch.Tensor, lr: float, max_steps: int, trK: float,
           progress: Progress | None = None, total: int | None = None
           ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Algorithm 1's full-gradient update (`algorithm1_step`'s iterates) from (A, P) until the
    basin its descent heads for is settled -> (A, P, steps taken).

    Which stationary point their loop ends at is decided early, while the parts grow out of
    their tiny init and compete (a fixed-A or larger-step start can pick another one, up to a
    few % worse; so can L-BFGS-B started mid-descent). After a first window that scales the
    parts up, L falls slowly, then fast (the parts compete), then slowly again; the basin is
    taken as settled once SETTLE_WINDOW steps lower L by less than SETTLE_DROP of the largest
    such drop since and less than SETTLE_RATE of L (or by less than 1e-9 of L, or after
    max_steps; L from trK = sum ||Z_i||^2). Z P is formed once per step."""
    A, P = A.double(), P.double()
    L = _thin(Z, P)
    f_last, biggest, t = float(objective(trK, L, A, P.t() @ P)), 0.0, 0
    while t < max_steps:
        BL = A @ (A.t() @ L)
        P = (P - lr * _grad_parts_from(Z, P, BL.to(Z.dtype), (A @ (A.t() @ BL)).to(Z.dtype))).clamp_min(0)
        L = _thin(Z, P)
        W = P.t() @ P
        A = A - lr * _grad_appearances_thin(L, A, W)
        t += 1
        if progress:
            progress(t, total or max_steps)
        if t % SETTLE_WINDOW == 0:
            f = float(objective(trK, L, A, W))
            drop = f_last - f
            if t > SETTLE_WINDOW:  # the first window only scales the parts up from their init
                biggest = max(biggest, drop)
                if drop <= min(SETTLE_DROP * biggest, SETTLE_RATE * abs(f)) or drop <= 1e-9 * abs(f):
                    break
            f_last = f
    return A, P, t


def _balanced(A: torch.Tensor, P: torch.Tensor, target: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(c A, P / c) with ||c A||^2 - ||P / c||^2 = target. L does not see c; Algorithm 1 keeps
    ||A||^2 - ||P||^2 at its start value in the small-step limit (the gradient of an L that
    is invariant to the rescaling is orthogonal to it), so this is the scale their loop ends
    at (within a few % at steps near their stability limit)."""
    a, p = float(A.square().sum()), float(P.square().sum())
    if a <= 0 or p <= 0:
        return A, P
    x = (target + (target ** 2 + 4 * a * p) ** 0.5) / (2 * a)  # c^2: a x^2 - target x - p = 0
    return A * x ** 0.5, P / x ** 0.5


def fit(Z: torch.Tensor, rank_c: int, rank_s: int, max_iters: int = 2000, tol: float = 1e-12,
        warm_iters: int = 300, progress: Progress | None = None,
        history: list[float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Algorithm 1's problem on the features Z [N, C, S] -> (A [C, R_C], P [S, R_S]) float32.

    From the authors' init (SVD of the scatter, P ~ U(0, 0.01)), their own full-gradient
    update at SAFE_LR / ||K|| until the basin it descends into is settled (`settle`, at most
    `warm_iters` steps), then L-BFGS-B polishes that point to its stationary value: for
    R_C = C on P >= 0 alone with A eliminated (the best A A^T for given parts is a Lyapunov
    solve, `optimal_appearances`; A ends as B^(1/2) A0, A0's columns and signs moved by a left
    factor like their update), with R_C < C on A and P together. The polish stops when the
    projected gradient is below PGTOL (relative), restarts from its own point while that still
    lowers L, and finishes in float64 where float32 rounding ends it early; `max_iters` bounds
    its iterations and `tol` (relative decrease) ends a run. A and P are rescaled to the balance
    Algorithm 1 keeps (`_balanced`). Products with Z-sized operands run in Z's dtype (float32
    on a GPU), the factors and every sum in float64. `progress` counts their steps, then the
    polish's iterations; `history` gets L after each polish iteration.
    """
    N, C, S = Z.shape
    if not (1 <= rank_c <= C and 1 <= rank_s <= S):
        raise ValueError(f"ranks must be 1..{C} (appearances) and 1..{S} (parts)")
    f64 = torch.float64
    chunks = Z.split(max(1, 2 ** 26 // (C * S)))  # bounded temporaries
    scatter = sum(torch.einsum("ncs,nds->cd", z, z).to(f64) for z in chunks) / N
    K = sum((_flat(z).t() @ _flat(z)).to(f64) for z in chunks)
    A0 = appearances_from_scatter(scatter, rank_c).to(Z.device, f64)
    P0 = init_parts(S, rank_s).to(Z.device, f64)
    trK = float(torch.trace(K))
    balance = float(A0.square().sum() - P0.square().sum())
    lr = SAFE_LR / max(float(torch.linalg.matrix_norm(K, ord=2)), 1e-300)
    total = warm_iters + max_iters
    A, P, done = settle(Z, A0, P0, lr, warm_iters, trK, progress, total)
    if rank_c == C:
        P, B, _ = descend_parts(Z, P, trK, max_iters, tol, progress, history, done, total)
        e, U = torch.linalg.eigh(B)
        A = U @ (e.clamp_min(0).sqrt()[:, None] * U.t()) @ A0
    else:
        def joint(Zp: torch.Tensor) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
            def value_and_grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                f, gA, gP = _joint(Zp, x[:C * rank_c].view(C, rank_c), x[C * rank_c:].view(S, rank_s), trK)
                return f, torch.cat([gA.reshape(-1), gP.reshape(-1)])
            return value_and_grad

        x = _polish(joint, Z, torch.cat([A.reshape(-1), P.reshape(-1)]), S * rank_s, max_iters, tol,
                    progress, history, done, total)
        A, P = x[:C * rank_c].view(C, rank_c), x[C * rank_c:].view(S, rank_s)
    A, P = _balanced(A, P, balance)
    return A.float(), P.float()
