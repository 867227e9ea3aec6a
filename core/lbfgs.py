"""Full-batch L-BFGS as the Collage authors run it (Chai et al.'s Enc+LBFGS).

Their `utils/inversions.py` `invert_lbfgs` optimises the latent with `FullBatchLBFGS`, which
they vendored from Shi and Mudigere's PyTorch-LBFGS as `utils/LBFGS.py`: defaults lr 1,
history 10, weak-Wolfe line search, and per step the options {closure, current_loss, max_ls
10}; everything else at its defaults (eps 1e-2, no damping, eta 2, c1 1e-4, c2 0.9,
interpolation on, in-place updates). This module has exactly that path, so that a refinement
steps as theirs does; `torch.optim.LBFGS` differs in each point below and ends elsewhere.

* Direction: the two-loop recursion on -g with the stored pairs and the scale
  H0 = s'y / y'y of the newest pair (1 before any pair), so the first step is -g itself.
* Step: t starts at lr = 1 on every iteration (torch starts at min(1, 1/|g|_1) on the first).
* Weak-Wolfe line search: a trial failing Armijo (F > F_k + c1 t g'd) becomes the upper
  bound, one passing Armijo but not curvature (g_new'd < c2 g'd) the lower bound. The next
  trial doubles t while there is no upper bound, bisects while the upper bound's value is not
  finite, and otherwise takes the minimiser of the quadratic through (lo, F_lo, g_lo) and
  (hi, F_hi), clipped to [lo + 0.2 (hi - lo), (hi - lo) / 2] (their code's bound: half the
  bracket's width, not its midpoint). Ten trials are tested (max_ls 10); when none is
  accepted (the eleventh is evaluated but not tested), the search gives up: the parameters
  go back, t = 0, and F and g are re-evaluated there.
* Pairs: none after a failed line search; otherwise (s, y) = (t d, g_new - g) is kept only if
  s'y > eps s'Bs with Bs = -t g (the secant approximation of B s), eps = 1e-2; torch keeps
  it when s'y > 1e-10.
* Iterations: always as many as asked; torch stops on small changes.

The arithmetic follows theirs operation by operation (float32 tensors for losses, gradients
and dot products; float64 for the interpolation), so trajectories agree to the last bit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

C1 = 1e-4  # sufficient decrease (Armijo)
C2 = 0.9  # curvature (weak Wolfe)
ETA = 2.0  # extrapolation factor while no trial has failed Armijo
EPS = 1e-2  # curvature-pair rule: keep (s, y) when s'y > EPS * s'Bs


@dataclass(frozen=True)
class LBFGSStep:
    loss: torch.Tensor  # F at the new point (0-dim; detached)
    step_size: float  # the accepted t (0 when the line search failed)
    trials: int  # line-search trials after the first one (their ls_step)
    evaluations: int  # closure calls in this step
    failed: bool  # the line search gave up: the point did not move


def quadratic_minimiser(lo: float, f_lo: float, g_lo: float, hi: float, f_hi: float) -> float:
    """The minimiser of the parabola with value f_lo and slope g_lo at lo and value f_hi at hi,
    kept between lo and hi (their `polyinterp` for two points and one slope, in float64; a
    degenerate parabola gives inf or nan as numpy's division does, not an exception)."""
    a, fa, ga, b, fb = (np.float64(v) for v in (lo, f_lo, g_lo, hi, f_hi))
    with np.errstate(all="ignore"):
        if a == 0:
            x = -ga * b ** 2 / (2 * (fb - fa - ga * b))
        else:
            curvature = -(fa - fb - ga * (a - b)) / (a - b) ** 2
            x = a - ga / (2 * curvature)
        return float(np.minimum(np.maximum(min(a, b), x), max(a, b)))


class FullBatchLBFGS:
    """L-BFGS over `params` (updated in place). A closure returns the loss (a 0-dim tensor
    with its graph, no backward); the gradient at the current point is read from the
    parameters' .grad, as `evaluate` or the previous `step` left it."""

    def __init__(self, params: Sequence[torch.Tensor], lr: float = 1.0, history_size: int = 10,
                 max_ls: int = 10) -> None:
        self.params = list(params)
        self.lr, self.history_size, self.max_ls = lr, history_size, max_ls
        self.s: list[torch.Tensor] = []  # steps t d, oldest first
        self.y: list[torch.Tensor] = []  # gradient changes
        self.h_diag: float | torch.Tensor = 1  # initial inverse-Hessian scale
        self.iterations = 0
        self.curvature_skips = 0  # pairs dropped by the eps rule
        self.failure_skips = 0  # pairs not formed after a failed line search
        # the previous step: its direction, step size, starting gradient, whether it failed
        self._d: torch.Tensor | None = None
        self._t: float = 0.0
        self._g: torch.Tensor | None = None
        self._failed = True

    def evaluate(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:
        """F and its gradient at the current point (their iteration 0) -> F, detached."""
        loss = closure()
        self._backward(loss)
        return loss.detach()

    def step(self, closure: Callable[[], torch.Tensor], loss: torch.Tensor) -> LBFGSStep:
        """One iteration from the current point, whose loss is `loss` (their current_loss)."""
        g = self._flat_grad()
        if self.iterations > 0:
            self._update_pairs(g)
        d = self._direction(g)
        self.iterations += 1
        return self._line_search(closure, loss.detach(), g, d)

    # ---- pieces ------------------------------------------------------------------------------
    def _backward(self, loss: torch.Tensor) -> None:
        """The gradient of `loss` into the parameters' .grad (replaced, not accumulated; other
        tensors' .grad are left alone)."""
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        for p, g in zip(self.params, grads):
            p.grad = g

    def _flat_grad(self) -> torch.Tensor:
        return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                          for p in self.params])

    @torch.no_grad()
    def _move(self, step: float, d: torch.Tensor) -> None:
        """x += step * d, parameter by parameter (one fused add, as theirs)."""
        offset = 0
        for p in self.params:
            n = p.numel()
            p.add_(d[offset:offset + n].view_as(p), alpha=float(step))
            offset += n

    def _update_pairs(self, g: torch.Tensor) -> None:
        """Store the previous step's (s, y) if its line search succeeded and s'y > EPS s'Bs."""
        if self._failed:
            self.failure_skips += 1
            return
        y = g.sub(self._g)
        s = self._d.mul(self._t)
        sbs = s.dot(self._g.mul(-self._t))  # B s = -t g: the secant model's curvature along s
        ys = y.dot(s)
        if ys > EPS * sbs:
            if len(self.s) == self.history_size:
                self.s.pop(0)
                self.y.pop(0)
            self.s.append(s)
            self.y.append(y)
            self.h_diag = ys / y.dot(y)
        else:
            self.curvature_skips += 1

    def _direction(self, g: torch.Tensor) -> torch.Tensor:
        """-H g by the two-loop recursion."""
        q = g.neg()
        rho = [1. / y.dot(s) for s, y in zip(self.s, self.y)]
        alpha: dict[int, torch.Tensor] = {}
        for i in range(len(self.s) - 1, -1, -1):
            alpha[i] = self.s[i].dot(q) * rho[i]
            q.add_(self.y[i], alpha=-float(alpha[i]))
        r = torch.mul(q, self.h_diag)
        for i in range(len(self.s)):
            beta = self.y[i].dot(r) * rho[i]
            r.add_(self.s[i], alpha=float(alpha[i] - beta))
        return r

    def _line_search(self, closure: Callable[[], torch.Tensor], f_k: torch.Tensor,
                     g: torch.Tensor, d: torch.Tensor) -> LBFGSStep:
        """Weak-Wolfe bracketing from t = lr; see the module docstring."""
        gtd = g.dot(d)
        t, t_prev = self.lr, 0.0  # t_prev: where the parameters are, relative to x_k
        lo, hi = 0.0, math.inf
        f_lo, gtd_lo = f_k, gtd  # bounds' values kept detached: their graphs are not needed
        f_hi: torch.Tensor | None = None  # unknown until a trial fails Armijo
        self._move(t, d)
        f_new = closure()
        evaluations, trials, failed = 1, 0, False
        while True:
            if trials >= self.max_ls:  # give up: back to x_k, evaluated afresh
                self._move(-t, d)
                t = 0.0
                f_new = closure()
                self._backward(f_new)
                evaluations += 1
                failed = True
                break
            if f_new > f_k + C1 * t * gtd:  # not enough decrease: upper bound
                hi, t_prev, f_hi = t, t, f_new.detach()
            else:
                self._backward(f_new)
                gtd_new = self._flat_grad().dot(d)
                if gtd_new < C2 * gtd:  # still descending steeply: lower bound
                    lo, t_prev, f_lo, gtd_lo = t, t, f_new.detach(), gtd_new
                else:
                    break
            if f_hi is None or not bool(torch.isfinite(f_hi)):
                t = ETA * t if hi == math.inf else (lo + hi) / 2.0
            else:  # hi is finite here: f_hi is only set with it
                t = quadratic_minimiser(lo, f_lo.item(), gtd_lo.item(), hi, f_hi.item())
                if t < lo + 0.2 * (hi - lo):
                    t = lo + 0.2 * (hi - lo)
                elif t > (hi - lo) / 2.0:
                    t = (hi - lo) / 2.0
                if t <= 0:
                    t = (hi - lo) / 2.0
            self._move(t - t_prev, d)
            f_new = closure()
            evaluations += 1
            trials += 1
        self._d, self._t, self._g, self._failed = d, t, g, failed
        return LBFGSStep(f_new.detach(), float(t), trials, evaluations, failed)
