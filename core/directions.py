"""Edit directions in W / W+ for the SAM tab's editing step, for any rosinality StyleGAN2.

Three sources, one shape: every direction is a w+ offset `[1, n_latent, D]` (float32, CPU)
that is zero outside the layers it acts on, so an edit is always `w+ + strength * vector`.

* **GANSpace** (Härkönen et al. 2020): PCA of mapped samples w = mapping(z), z ~ N(0, I).
  The components are unit vectors sorted by variance; an edit "E(i, start-end)" adds
  component_i * sigma_i on w+ layers start..end, so a strength of 1 is one standard
  deviation of W along that component (GANSpace's sliders run over +-10 sigma).
* **SeFa** (Shen & Zhou, CVPR 2021): the eigenvectors of A^T A, where the rows of A are the
  style-affine (modulation) weights of the layers being interpreted. A unit w step along the
  top eigenvector changes those layers' styles the most. As in genforce/sefa's
  `factorize_weight`, each row of A is normalised to unit length first, and w+ slot i is
  represented by the styled conv that consumes it; the last slot, read only by the final
  ToRGB, by that ToRGB (genforce's `output{last}`). The intermediate ToRGBs are left out,
  as in the official code: they share their slot with the next styled conv. Strengths are
  in units of the (unit) direction; genforce's demo slider for StyleGAN2 spans +-15.
* **File**: the SAM authors' `edits/<domain>/csc_*.npy` (float32 `(1, num_ws, 512)`, non-zero
  on a range of layers). Their script sweeps multipliers 0, 1, 2, 3.

Layers are **w+ indices** (0..n_latent-1): slot k < num_layers drives styled conv k
(`StyleGAN2Generator._conv(k)`), and the ToRGB after an even conv k reads slot k + 1.
The bases are computed once per model by `DirectionCache` and kept on the CPU.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Hashable, Iterable, Union

import numpy as np
import torch

from core.errors import UserError
from core.forksafe import ForkSafeRLock

LayerSpec = Union[None, int, str, Iterable[int]]
"""Which w+ layers: None or "all" (every layer), an index, "6-13" / "0-1,4" (inclusive, as
GANSpace and SeFa write them), or any iterable of indices (a `range`, a list)."""

GANSPACE_MAX_STRENGTH = 10.0
"""GANSpace's interactive viewer: sliders in units of sigma, from -10 to 10."""
SEFA_MAX_STRENGTH = 15.0
"""genforce/sefa's demo (interface.py): `max_step = 15.0` for StyleGAN2 (unit directions)."""
FILE_MAX_STRENGTH = 3.0
"""The SAM authors' script renders each csc file with multipliers 0, 1, 2, 3."""


MAX_STRENGTH = {"ganspace": GANSPACE_MAX_STRENGTH, "sefa": SEFA_MAX_STRENGTH, "file": FILE_MAX_STRENGTH}


def strength_range(source: str, max_strength: float | None = None) -> tuple[float, float]:
    """(lowest, highest) strength for a direction of `source` ("ganspace", "sefa", "file"),
    known before the direction is computed (a slider's range); `max_strength` overrides the
    source's default."""
    top = float(MAX_STRENGTH[source] if max_strength is None else max_strength)
    return (0.0, top) if source == "file" else (-top, top)


@dataclass(frozen=True, eq=False)
class Direction:
    """One edit: `w_plus + strength * vector`. `vector` is [1, n_latent, D] float32 on the CPU,
    zero outside `layers`. `value` is the component's sigma (GANSpace) or eigenvalue (SeFa)."""
    name: str
    vector: torch.Tensor
    source: str  # "ganspace" | "sefa" | "file"
    layers: tuple[int, ...]
    index: int | None = None
    value: float | None = None
    max_strength: float = FILE_MAX_STRENGTH

    @property
    def strength_range(self) -> tuple[float, float]:
        """The strengths a slider offers: 0..max for the authors' files (their script's
        multipliers 0, 1, 2, 3: a file names one side of an attribute), -max..max for the
        two-sided GANSpace and SeFa components."""
        return strength_range(self.source, self.max_strength)

    def apply(self, w_plus: torch.Tensor, strength: float) -> torch.Tensor:
        """w+ [B, n_latent, D] moved by `strength` along this direction (a new tensor)."""
        if w_plus.ndim != 3 or tuple(w_plus.shape[1:]) != tuple(self.vector.shape[1:]):
            raise ValueError(f"w_plus must be [B, {self.vector.shape[1]}, {self.vector.shape[2]}], "
                             f"got {tuple(w_plus.shape)}")
        return w_plus + float(strength) * self.vector.to(w_plus.device, w_plus.dtype)


@dataclass(frozen=True, eq=False)
class Basis:
    """Directions in W (rows of `vectors` [K, D], unit, float32 CPU) with their `values`
    (descending): standard deviations (GANSpace) or eigenvalues (SeFa). `layers` are the
    layers a SeFa basis was computed from (empty for GANSpace, which is layer-free)."""
    method: str
    vectors: torch.Tensor
    values: torch.Tensor
    layers: tuple[int, ...] = ()
    mean: torch.Tensor | None = field(default=None)


# ---- layers -------------------------------------------------------------------------------
def parse_layers(layers: LayerSpec, n_latent: int) -> tuple[int, ...]:
    """A layer spec -> sorted unique w+ indices; a `UserError` when one is out of range."""
    if layers is None or (isinstance(layers, str) and layers.strip().lower() in ("", "all")):
        return tuple(range(n_latent))
    if isinstance(layers, (int, np.integer)):
        out = [int(layers)]
    elif isinstance(layers, str):
        out = []
        try:
            for part in layers.replace(" ", "").split(","):
                ends = [int(x) for x in part.split("-")]
                if len(ends) == 1:
                    out.append(ends[0])
                elif len(ends) == 2 and ends[0] <= ends[1]:
                    out.extend(range(ends[0], ends[1] + 1))
                else:
                    raise ValueError(part)
        except ValueError:
            raise UserError(f"Could not read the layers {layers!r}: write them like \"6-13\" "
                            f"or \"0-1,4\" (w+ indices 0 to {n_latent - 1}).") from None
    else:
        out = [int(k) for k in layers]
    bad = [k for k in out if not 0 <= k < n_latent]
    if bad or not out:
        raise UserError(f"Layers must lie in 0..{n_latent - 1} for this generator "
                        f"(it has {n_latent} w+ layers); got {layers!r}.")
    return tuple(sorted(set(out)))


def layers_label(layers: Iterable[int]) -> str:
    """(6, 7, 8, 10) -> "6-8,10": the inverse of `parse_layers` for names and UI."""
    runs: list[list[int]] = []
    for k in sorted(layers):
        if runs and k == runs[-1][1] + 1:
            runs[-1][1] = k
        else:
            runs.append([k, k])
    return ",".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs)


def _fix_signs(vectors: torch.Tensor) -> torch.Tensor:
    """Eigenvectors have no sign: make each row's largest-magnitude entry positive, so the
    same model gives the same directions on every machine."""
    idx = vectors.abs().argmax(dim=1, keepdim=True)
    signs = torch.sign(vectors.gather(1, idx))
    signs[signs == 0] = 1
    return vectors * signs


def _plus(G, w_dir: torch.Tensor, layers: tuple[int, ...]) -> torch.Tensor:
    """A W direction [D] placed on `layers` of a zero w+ [1, n_latent, D]."""
    out = torch.zeros(1, G.n_latent, w_dir.shape[-1], dtype=torch.float32)
    out[0, list(layers)] = w_dir.float().cpu()
    return out


# ---- GANSpace -----------------------------------------------------------------------------
def sample_w(G, n: int = 10_000, seed: int = 0, chunk: int = 1024) -> torch.Tensor:
    """n mapped samples w = G.mapping(z), z ~ N(0, I) from a CPU generator seeded with
    `seed` (same draws on every device); returns [n, D] float32 on the CPU."""
    z = torch.randn(n, G.style_dim, generator=torch.Generator().manual_seed(seed))
    # inference_mode(False): the layers cache their scaled weights; an inference tensor
    # cached here would break later optimisations (SAM) that need autograd.
    with torch.inference_mode(False), torch.no_grad():
        return torch.cat([G.mapping(c.to(G.device)).float().cpu() for c in z.split(chunk)])


def ganspace_basis(G, n: int = 10_000, seed: int = 0) -> Basis:
    """PCA of n mapped samples: all D components (unit rows, by decreasing variance) and
    their standard deviations (sample std, ddof=1), computed in float64."""
    if n < 2:
        raise ValueError("GANSpace needs at least 2 samples")
    w = sample_w(G, n, seed).double()
    mean = w.mean(0)
    x = w - mean
    cov = x.T @ x / (n - 1)
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    order = torch.argsort(evals, descending=True)
    vectors = _fix_signs(evecs[:, order].T)
    sigmas = evals[order].clamp_min(0).sqrt()
    return Basis("ganspace", vectors.float().contiguous(), sigmas.float(), (), mean.float())


def ganspace_from_basis(G, basis: Basis, count: int = 10, layers: LayerSpec = None) -> list[Direction]:
    """The first `count` components as w+ directions component * sigma on `layers`."""
    ls = parse_layers(layers, G.n_latent)
    label = layers_label(ls)
    return [Direction(f"GANSpace PC{i} (layers {label})", _plus(G, basis.vectors[i] * basis.values[i], ls),
                      "ganspace", ls, i, float(basis.values[i]), GANSPACE_MAX_STRENGTH)
            for i in range(min(count, basis.vectors.shape[0]))]


def ganspace_directions(G, count: int = 10, layers: LayerSpec = None, n: int = 10_000,
                        seed: int = 0) -> list[Direction]:
    """GANSpace edits: the top `count` principal components of W, each scaled by its sigma
    and applied on `layers` (all by default). Uncached; see `DirectionCache`."""
    return ganspace_from_basis(G, ganspace_basis(G, n, seed), count, layers)


# ---- SeFa ---------------------------------------------------------------------------------
def style_modulations(G, layers: LayerSpec = None) -> list[torch.nn.Module]:
    """The style-affine `EqualLinear` that SeFa factorises for each w+ slot in `layers`:
    styled conv k for k < num_layers, the final ToRGB for the last slot (sefa's choice)."""
    mods = []
    for k in parse_layers(layers, G.n_latent):
        if k < G.num_layers:
            mods.append(G._conv(k).conv.modulation)
        else:  # the last slot feeds only the final ToRGB (genforce's `output{last}`)
            mods.append(G._to_rgb(G.num_layers - 1).conv.modulation)
    return mods


def sefa_matrix(G, layers: LayerSpec = None, normalize: bool = True) -> torch.Tensor:
    """A [sum of channels, D] (float64, CPU): the effective modulation weights (stored weight
    times the equalized-lr scale, i.e. what multiplies w), stacked; rows made unit when
    `normalize` (genforce/sefa does this, which also makes the scale irrelevant)."""
    rows = [(m.weight.detach().double().cpu() * m.scale) for m in style_modulations(G, layers)]
    a = torch.cat(rows, dim=0)
    if normalize:
        a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return a


def sefa_basis(G, layers: LayerSpec = None, normalize: bool = True) -> Basis:
    """Eigen-decomposition of A^T A (D x D, symmetric, float64): unit eigenvectors sorted by
    decreasing eigenvalue. genforce's code calls np.linalg.eig and assumes the order; eigh
    plus an explicit sort is exact for a symmetric matrix."""
    ls = parse_layers(layers, G.n_latent)
    a = sefa_matrix(G, ls, normalize)
    evals, evecs = torch.linalg.eigh(a.T @ a)
    order = torch.argsort(evals, descending=True)
    vectors = _fix_signs(evecs[:, order].T)
    return Basis("sefa", vectors.float().contiguous(), evals[order].float(), ls)


def sefa_from_basis(G, basis: Basis, count: int = 10) -> list[Direction]:
    """The top `count` eigenvectors as unit w directions on the layers they came from."""
    ls = basis.layers
    label = layers_label(ls)
    return [Direction(f"SeFa {i} (layers {label})", _plus(G, basis.vectors[i], ls), "sefa", ls, i,
                      float(basis.values[i]), SEFA_MAX_STRENGTH)
            for i in range(min(count, basis.vectors.shape[0]))]


def sefa_directions(G, count: int = 10, layers: LayerSpec = None) -> list[Direction]:
    """SeFa edits: the top `count` eigenvectors of A^T A for `layers` (all by default),
    unit vectors applied on those same layers. Uncached; see `DirectionCache`."""
    return sefa_from_basis(G, sefa_basis(G, layers), count)


# ---- files --------------------------------------------------------------------------------
def file_direction(path: str | Path, n_latent: int, name: str | None = None,
                   style_dim: int = 512) -> Direction:
    """A saved w+ direction, e.g. the SAM authors' `csc_*.npy` (float32 (1, num_ws, 512)).

    Also accepts (num_ws, D) and a single w direction (D,) / (1, D), which is put on every
    layer. Read with allow_pickle=False: a file is untrusted input. The name defaults to
    the file's stem without the authors' "csc_" prefix.
    """
    path = Path(path)
    label = name or path.stem.removeprefix("csc_").replace("_", " ")
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"Edit direction file not found: {path}") from None
    except (ValueError, OSError, EOFError) as e:
        raise UserError(f"{path.name} is not a valid .npy direction file ({e}). Expected a "
                        f"float array of shape (1, {n_latent}, {style_dim}).") from None
    if not isinstance(arr, np.ndarray):  # an .npz archive
        arr.close()
        raise UserError(f"{path.name} is an .npz archive; save the direction as one .npy array "
                        f"of shape (1, {n_latent}, {style_dim}).")
    if arr.dtype.kind not in "fiu":
        raise UserError(f"{path.name} does not hold a numeric array (dtype {arr.dtype}).")
    shape = tuple(arr.shape)
    if shape in ((style_dim,), (1, style_dim)):
        arr = np.broadcast_to(arr.reshape(1, 1, style_dim), (1, n_latent, style_dim))
    elif shape == (n_latent, style_dim):
        arr = arr[None]
    elif shape != (1, n_latent, style_dim):
        hint = ""
        if len(shape) in (2, 3) and shape[-1] == style_dim:
            hint = (f" It was made for a generator with {shape[-2]} w+ layers "
                    f"({2 ** ((shape[-2] + 2) // 2)} px), this one has {n_latent}.")
        raise UserError(f"{path.name} has shape {shape}; this generator needs "
                        f"(1, {n_latent}, {style_dim}).{hint}")
    vec = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).clone()
    if not torch.isfinite(vec).all():
        raise UserError(f"{path.name} contains NaN or infinite values.")
    layers = tuple(int(k) for k in torch.nonzero(vec[0].abs().sum(-1)).flatten())
    return Direction(label, vec, "file", layers, None, None, FILE_MAX_STRENGTH)


# ---- cache --------------------------------------------------------------------------------
class DirectionCache:
    """Bases computed once per model (LRU over keys (model id, method, parameters)), kept on
    the CPU. GANSpace's PCA does not depend on the layers, so one basis serves every layer
    range; SeFa's does, so it is keyed by the layers too. Thread-safe (Gradio workers):
    a lookup and its computation run under one lock, so concurrent callers compute once."""

    def __init__(self, max_items: int = 32):
        self.max_items = max_items
        self._items: OrderedDict[Hashable, Basis] = OrderedDict()
        self._lock = ForkSafeRLock()  # a ZeroGPU worker may be forked while a basis is computed
        self.computed = 0  # how many bases were computed (not served from the cache)

    def _get(self, key: Hashable, compute) -> Basis:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            value = compute()
            self.computed += 1
            self._items[key] = value
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
            return value

    def ganspace_basis(self, model_id: str, G, n: int = 10_000, seed: int = 0) -> Basis:
        return self._get((model_id, "ganspace", n, seed), lambda: ganspace_basis(G, n, seed))

    def sefa_basis(self, model_id: str, G, layers: LayerSpec = None) -> Basis:
        ls = parse_layers(layers, G.n_latent)
        return self._get((model_id, "sefa", ls), lambda: sefa_basis(G, ls))

    def ganspace(self, model_id: str, G, count: int = 10, layers: LayerSpec = None,
                 n: int = 10_000, seed: int = 0) -> list[Direction]:
        """`ganspace_directions`, with the PCA computed once per (model, n, seed)."""
        return ganspace_from_basis(G, self.ganspace_basis(model_id, G, n, seed), count, layers)

    def sefa(self, model_id: str, G, count: int = 10, layers: LayerSpec = None) -> list[Direction]:
        """`sefa_directions`, with the factorisation computed once per (model, layers)."""
        return sefa_from_basis(G, self.sefa_basis(model_id, G, layers), count)

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._items)

    def clear(self, model_id: str | None = None) -> None:
        """Forget every basis, or only those of one model."""
        with self._lock:
            for key in [k for k in self._items if model_id is None or k[0] == model_id]:
                del self._items[key]


def direction_cache(ctx) -> DirectionCache:
    """The app's bases (per app: two apps with different registries never share one)."""
    return ctx.shared("directions", DirectionCache)
