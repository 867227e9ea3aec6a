"""A linear support vector machine for small labelled sets (a few to a few hundred points).

StyleMapGAN's semantic manipulation (the authors' `semantic_manipulation.py`) fits
`sklearn.svm.SVC(kernel="linear")` to flattened stylemaps of images with and without an
attribute and moves along the unit normal of the boundary. This is the same classifier
(C-SVC, C = 1, linear kernel, libsvm's dual problem) solved here by SMO on the N x N Gram
matrix, so the app needs no scikit-learn: with few points in thousands of dimensions the
Gram matrix is tiny whatever the stylemap size. The solution's normal is unique, so any exact
solver gives sklearn's boundary (checked against it in tests/data/reference/stylemapgan/).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.errors import UserError


@dataclass(frozen=True)
class LinearSVM:
    normal: np.ndarray  # [D] w / |w|: points from the negative to the positive set
    weights: np.ndarray  # [D] w itself (sklearn's coef_[0])
    intercept: float  # b: decision(x) = w . x + b (sklearn's intercept_[0])
    support: int  # how many support vectors
    iterations: int

    def decision(self, x: np.ndarray) -> np.ndarray:
        """[N, D] -> signed scores (> 0: the positive side)."""
        return x.reshape(len(x), -1) @ self.weights + self.intercept


def fit_linear_svm(positive: np.ndarray, negative: np.ndarray, C: float = 1.0,
                   tol: float = 1e-6, max_iter: int = 100_000) -> LinearSVM:
    """C-SVC with a linear kernel on [Np, ...] and [Nn, ...] points (flattened), labels +1 / -1.

    SMO on the dual (Fan, Chen and Lin 2005, maximal violating pair): min 1/2 a'Qa - sum(a),
    0 <= a <= C, y'a = 0, Q = yy' * XX'. Stops when the largest KKT violation is below `tol`
    (libsvm's default is 1e-3; tighter here, the problem is small). float64 throughout.
    """
    pos = np.asarray(positive, np.float64).reshape(len(positive), -1)
    neg = np.asarray(negative, np.float64).reshape(len(negative), -1)
    if len(pos) < 1 or len(neg) < 1:
        raise UserError("A linear SVM needs at least one example on each side.")
    x = np.concatenate([pos, neg])
    y = np.concatenate([np.ones(len(pos)), -np.ones(len(neg))])
    q = (y[:, None] * y[None, :]) * (x @ x.T)
    n = len(y)
    a = np.zeros(n)
    g = -np.ones(n)  # gradient of the dual objective: Qa - 1
    tau = 1e-12
    it = 0
    for it in range(1, max_iter + 1):
        up = ((y > 0) & (a < C)) | ((y < 0) & (a > 0))
        low = ((y < 0) & (a < C)) | ((y > 0) & (a > 0))
        score = -y * g
        i = int(np.argmax(np.where(up, score, -np.inf)))
        j = int(np.argmin(np.where(low, score, np.inf)))
        if score[i] - score[j] < tol:
            break
        ai, aj = a[i], a[j]
        if y[i] != y[j]:
            quad = max(q[i, i] + q[j, j] + 2 * q[i, j], tau)
            delta = (-g[i] - g[j]) / quad
            diff = ai - aj
            a[i], a[j] = ai + delta, aj + delta
            if diff > 0 and a[j] < 0:
                a[j], a[i] = 0.0, diff
            elif diff <= 0 and a[i] < 0:
                a[i], a[j] = 0.0, -diff
            if diff > 0 and a[i] > C:
                a[i], a[j] = C, C - diff
            elif diff <= 0 and a[j] > C:
                a[j], a[i] = C, C + diff
        else:
            quad = max(q[i, i] + q[j, j] - 2 * q[i, j], tau)
            delta = (g[i] - g[j]) / quad
            total = ai + aj
            a[i], a[j] = ai - delta, aj + delta
            if total > C and a[i] > C:
                a[i], a[j] = C, total - C
            elif total <= C and a[j] < 0:
                a[j], a[i] = 0.0, total
            if total > C and a[j] > C:
                a[j], a[i] = C, total - C
            elif total <= C and a[i] < 0:
                a[i], a[j] = 0.0, total
        g += q[:, i] * (a[i] - ai) + q[:, j] * (a[j] - aj)
    w = (a * y) @ x
    norm = float(np.linalg.norm(w))
    if norm == 0:
        raise UserError("The two sets cannot be told apart (identical examples): no direction.")
    free = (a > 1e-12) & (a < C - 1e-12)
    yg = y * g
    if free.any():
        rho = float(yg[free].mean())
    else:  # libsvm: the middle of the feasible interval
        upper, lower = a >= C - 1e-12, a <= 1e-12
        ub = yg[(upper & (y < 0)) | (lower & (y > 0))].min(initial=np.inf)
        lb = yg[(upper & (y > 0)) | (lower & (y < 0))].max(initial=-np.inf)
        rho = float((ub + lb) / 2)
    return LinearSVM(w / norm, w, -rho, int((a > 1e-12).sum()), it)


@dataclass(frozen=True)
class HeldOut:
    """How a linear SVM does on examples it was not fitted on (`cross_validate`)."""
    accuracy: float  # share of the held-out examples put on their own side
    correct: int
    tested: int  # every example, each held out once
    folds: int


def cross_validate(positive: np.ndarray, negative: np.ndarray, folds: int = 10, C: float = 1.0,
                   seed: int = 0) -> HeldOut | None:
    """Stratified k-fold cross-validation of `fit_linear_svm`: each side is shuffled (seeded)
    and dealt into k = min(folds, its size, the other side's size) folds; each fold is held
    out once while the SVM is fitted on the rest. With 10 folds each fit holds out 10 % of
    each side, as StyleMapGAN's semantic_manipulation.py does once (`testset_ratio = 0.1`);
    here every example is held out once, which a few dozen examples need. A training set's
    own accuracy says nothing when there are fewer examples than dimensions (any labels can be
    separated then); this is the number to read. None: fewer than 2 examples on a side (no
    fold can be held out), or a fold whose training examples cannot be told apart."""
    pos = np.asarray(positive, np.float64).reshape(len(positive), -1)
    neg = np.asarray(negative, np.float64).reshape(len(negative), -1)
    k = min(int(folds), len(pos), len(neg))
    if k < 2:
        return None
    rng = np.random.RandomState(seed)

    def deal(n: int) -> np.ndarray:
        fold = np.empty(n, int)
        fold[rng.permutation(n)] = np.arange(n) % k
        return fold

    fold_pos, fold_neg = deal(len(pos)), deal(len(neg))
    correct = tested = 0
    for f in range(k):
        try:
            svm = fit_linear_svm(pos[fold_pos != f], neg[fold_neg != f], C)
        except UserError:
            return None
        right = np.concatenate([svm.decision(pos[fold_pos == f]) > 0,
                                svm.decision(neg[fold_neg == f]) <= 0])
        correct, tested = correct + int(right.sum()), tested + len(right)
    return HeldOut(correct / tested, correct, tested, k)
