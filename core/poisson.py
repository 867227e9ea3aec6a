"""Poisson image blending (Pérez et al. 2003): paste a region's *gradients*, not its pixels.

Neural Collage's post-processing pastes the edited region of a projected GAN image back into
the real photo this way, so colour offsets between the GAN's reconstruction and the photo
vanish at the seam. Inside the mask the result f solves the discrete Poisson equation
    4 f_p - sum_{q in N(p), q inside} f_q = sum_{q in N(p)} (s_p - s_q) + sum_{q in N(p), q outside} t_q
(5-point Laplacian of the source s as the guidance, the target t as the boundary value);
outside the mask the target is unchanged. One sparse LU factorisation serves the three
colour channels (the authors' code solves each with pyamg; scipy is already a dependency).
"""
from __future__ import annotations

import numpy as np
import torch


def poisson_blend(source: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """source, target [3, H, W] (any range), mask [H, W] (> 0.5 = paste) -> [3, H, W].

    The frame's outermost pixels always keep the target (they have no full neighbourhood)."""
    import scipy.sparse as sp  # imported on use: the app starts without scipy
    import scipy.sparse.linalg as spla

    m = mask.detach().cpu().numpy() > 0.5
    m[0, :] = m[-1, :] = m[:, 0] = m[:, -1] = False
    t = target.detach().cpu().double().numpy()
    if not m.any():
        return target.clone()
    s = source.detach().cpu().double().numpy()
    h, w = m.shape
    index = -np.ones((h, w), np.int64)
    ys, xs = np.nonzero(m)
    n = len(ys)
    index[ys, xs] = np.arange(n)

    rows, cols = [np.arange(n)], [np.arange(n)]
    vals = [np.full(n, 4.0)]
    rhs = np.zeros((3, n))
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        qy, qx = ys + dy, xs + dx
        rhs += s[:, ys, xs] - s[:, qy, qx]
        inside = m[qy, qx]
        rows.append(np.nonzero(inside)[0])
        cols.append(index[qy[inside], qx[inside]])
        vals.append(np.full(int(inside.sum()), -1.0))
        outside = ~inside
        rhs[:, outside] += t[:, qy[outside], qx[outside]]
    a = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    solution = spla.splu(a).solve(rhs.T)  # [n, 3]
    out = t.copy()
    out[:, ys, xs] = solution.T
    return torch.from_numpy(out).to(target.dtype)
