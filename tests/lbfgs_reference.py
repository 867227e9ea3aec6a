"""A transcription, for tests, of the optimiser behind the Collage authors' Enc+LBFGS:
`FullBatchLBFGS` from their utils/LBFGS.py (chail/latent-composition 09ba79f, vendored from
hjmshi/PyTorch-LBFGS) on the path their `utils/inversions.py` `invert_lbfgs` takes: lr 1,
history 10, line_search 'Wolfe', options {closure, current_loss, max_ls: 10}, so eps 1e-2, no
damping, eta 2, c1 1e-4, c2 0.9, interpolate and inplace on, no debugging output.

Written statement by statement from their code (their names, their state dict, their
order of operations; the deprecated `add_(scalar, tensor)` calls spelled `add_(tensor,
alpha=scalar)`), independently of core/lbfgs.py, so that the two can be compared.
Their closure zeroes the gradients and returns the loss; the optimiser calls backward.
"""
from __future__ import annotations

import numpy as np
import torch


def is_legal(v):
    return not torch.isnan(v).any() and not torch.isinf(v)


def polyinterp(points):
    """Their polyinterp, the only case the Wolfe search reaches: two points [x f g] with the
    second slope unknown (nan), i.e. order 2, explicit quadratic formula."""
    no_points = points.shape[0]
    order = np.sum(1 - np.isnan(points[:, 1:3]).astype('int')) - 1
    x_min_bound = np.min(points[:, 0])
    x_max_bound = np.max(points[:, 0])
    if not (no_points == 2 and order == 2):
        raise NotImplementedError("not reached by invert_lbfgs")
    if points[0, 0] == 0:
        x_sol = (-points[0, 2] * points[1, 0] ** 2
                 / (2 * (points[1, 1] - points[0, 1] - points[0, 2] * points[1, 0])))
    else:
        a = (-(points[0, 1] - points[1, 1] - points[0, 2] * (points[0, 0] - points[1, 0]))
             / (points[0, 0] - points[1, 0]) ** 2)
        x_sol = points[0, 0] - points[0, 2] / (2 * a)
    x_sol = np.minimum(np.maximum(x_min_bound, x_sol), x_max_bound)
    return x_sol


class ReferenceFullBatchLBFGS:
    def __init__(self, params, lr=1, history_size=10):
        self._params = list(params)
        self.lr = lr
        self.history_size = history_size
        self.state = {'n_iter': 0, 'curv_skips': 0, 'fail_skips': 0, 'H_diag': 1, 'fail': True,
                      'old_dirs': [], 'old_stps': []}

    def zero_grad(self):
        for p in self._params:
            p.grad = None

    def _gather_flat_grad(self):
        views = []
        for p in self._params:
            if p.grad is None:
                views.append(p.data.new(p.data.numel()).zero_())
            else:
                views.append(p.grad.data.view(-1))
        return torch.cat(views, 0)

    def _add_update(self, step_size, update):
        offset = 0
        for p in self._params:
            numel = p.numel()
            p.data.add_(update[offset:offset + numel].view_as(p.data), alpha=step_size)
            offset += numel

    def two_loop_recursion(self, vec):
        state = self.state
        old_dirs = state['old_dirs']
        old_stps = state['old_stps']
        H_diag = state['H_diag']
        num_old = len(old_dirs)
        if 'rho' not in state:
            state['rho'] = [None] * self.history_size
            state['alpha'] = [None] * self.history_size
        rho = state['rho']
        alpha = state['alpha']
        for i in range(num_old):
            rho[i] = 1. / old_stps[i].dot(old_dirs[i])
        q = vec
        for i in range(num_old - 1, -1, -1):
            alpha[i] = old_dirs[i].dot(q) * rho[i]
            q.add_(old_stps[i], alpha=-alpha[i])
        r = torch.mul(q, H_diag)
        for i in range(num_old):
            beta = old_stps[i].dot(r) * rho[i]
            r.add_(old_dirs[i], alpha=alpha[i] - beta)
        return r

    def curvature_update(self, flat_grad, eps=1e-2):
        state = self.state
        if not state['fail']:
            d = state['d']
            t = state['t']
            old_dirs = state['old_dirs']
            old_stps = state['old_stps']
            prev_flat_grad = state['prev_flat_grad']
            Bs = state['Bs']
            y = flat_grad.sub(prev_flat_grad)
            s = d.mul(t)
            sBs = s.dot(Bs)
            ys = y.dot(s)
            if ys > eps * sBs:
                if len(old_dirs) == self.history_size:
                    old_dirs.pop(0)
                    old_stps.pop(0)
                old_dirs.append(s)
                old_stps.append(y)
                state['H_diag'] = ys / y.dot(y)
            else:
                state['curv_skips'] += 1
        else:
            state['fail_skips'] += 1

    def _step(self, p_k, g_Ok, closure, current_loss, max_ls=10):
        state = self.state
        prev_flat_grad = state.get('prev_flat_grad')
        Bs = state.get('Bs')
        state['n_iter'] += 1
        d = p_k
        if prev_flat_grad is None:
            prev_flat_grad = g_Ok.clone()
        else:
            prev_flat_grad.copy_(g_Ok)
        t = self.lr
        closure_eval = 0
        g_Sk = g_Ok.clone()
        F_k = current_loss
        gtd = g_Ok.dot(d)
        eta, c1, c2 = 2, 1e-4, 0.9
        ls_step = 0
        t_prev = 0
        alpha = 0
        beta = float('Inf')
        fail = False
        F_a = F_k
        g_a = gtd
        F_b = torch.tensor(np.nan)
        g_b = torch.tensor(np.nan)
        self._add_update(t, d)
        F_new = closure()
        closure_eval += 1
        while True:
            if ls_step >= max_ls:
                self._add_update(-t, d)
                t = 0
                F_new = closure()
                F_new.backward()
                g_new = self._gather_flat_grad()
                closure_eval += 1
                fail = True
                break
            if F_new > F_k + c1 * t * gtd:
                beta = t
                t_prev = t
                F_b = F_new
                g_b = torch.tensor(np.nan)
            else:
                F_new.backward()
                g_new = self._gather_flat_grad()
                gtd_new = g_new.dot(d)
                if gtd_new < c2 * gtd:
                    alpha = t
                    t_prev = t
                    F_a = F_new
                    g_a = gtd_new
                else:
                    break
            if not is_legal(F_b):
                if beta == float('Inf'):
                    t = eta * t
                else:
                    t = (alpha + beta) / 2.0
            else:
                t = polyinterp(np.array([[alpha, F_a.item(), g_a.item()],
                                         [beta, F_b.item(), g_b.item()]]))
                if beta == float('Inf'):
                    if t > 2 * eta * t_prev:
                        t = 2 * eta * t_prev
                    elif t < eta * t_prev:
                        t = eta * t_prev
                else:
                    if t < alpha + 0.2 * (beta - alpha):
                        t = alpha + 0.2 * (beta - alpha)
                    elif t > (beta - alpha) / 2.0:
                        t = (beta - alpha) / 2.0
                if t <= 0:
                    t = (beta - alpha) / 2.0
            self._add_update(t - t_prev, d)
            F_new = closure()
            closure_eval += 1
            ls_step += 1
        if Bs is None:
            Bs = (g_Sk.mul(-t)).clone()
        else:
            Bs.copy_(g_Sk.mul(-t))
        state['d'] = d
        state['prev_flat_grad'] = prev_flat_grad
        state['t'] = t
        state['Bs'] = Bs
        state['fail'] = fail
        return F_new, g_new, t, ls_step, closure_eval, fail

    def step(self, closure, current_loss, max_ls=10):
        grad = self._gather_flat_grad()
        if self.state['n_iter'] > 0:
            self.curvature_update(grad)
        p = self.two_loop_recursion(-grad)
        return self._step(p, grad, closure, current_loss, max_ls)


def reference_run(loss_of, params, num_steps):
    """Their invert_lbfgs loop around `loss_of()` (the loss at the parameters' current
    values): iteration 0 evaluates and back-propagates, then num_steps optimiser steps.
    -> (losses [num_steps + 1], step sizes [num_steps], parameters after each step)."""
    optimizer = ReferenceFullBatchLBFGS(params)

    def closure():
        optimizer.zero_grad()
        return loss_of()

    losses, steps, iterates = [], [], []
    with torch.enable_grad():
        for step_num in range(num_steps + 1):
            if step_num == 0:
                loss = closure()
                loss.backward()
            else:
                loss, _, t, _, _, _ = optimizer.step(closure, loss)
                steps.append(float(t))
                iterates.append([p.detach().clone() for p in params])
            losses.append(loss.item())
    return losses, steps, iterates
