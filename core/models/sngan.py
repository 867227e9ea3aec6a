"""The Neural Collage authors' SNGAN models (pfnet-research/neural-collage), read from their
Chainer `.npz` files unchanged (plain NumPy archives: no Chainer at run time).

Four files make the released dog+cat 256 px system (configs/sn_projection_dog_and_cat_256*.yml):

- `ResNetGenerator_450000.npz`: the ResNet generator with categorical conditional batch norm
  (`gen_models/resnet_256.py`). The authors load the same file into `SCBNResNetGenerator`
  for spatial class maps (sCBN) and feature blending; `SNGANGenerator` is both.
- `SNResNetProjectionDiscriminator_450000.npz` (`dis_models/snresnet_256.py`): Eq. 4's
  real-image editing compares its `feature_vector`s; `SNGANDiscriminator` also has the
  projection output.
- `ResNetEncoder_450000.npz` (`enc_models/resnetenc_small.py`, 128 px in, class-conditional):
  the starting z of a photo.
- `ResNetAuxABGenerator_75000.npz` (`gen_models/resnet_256_auxab.py`): the auxiliary network
  (A: z -> zeta, B: zeta -> z') stored with a copy of the generator; `SNGANAuxiliary` keeps A
  and B and checks that the rest is a generator of the same layout.

Keys and numerics
-----------------
A Chainer key `block2/b1/gammas/W` is the PyTorch name `block2.b1.gammas.W`: every module here
is named as its Chainer link, so a file loads with `strict=True` after one rename, and any
missing, unexpected or misshapen array is a UserError that names it. The batch-norm counters
`.../N` (used only when fine-tuning statistics) are accepted and dropped.
Chainer conventions kept: `Linear.W` is [out, in] and flattens its input; batch norm in test
mode is (x - avg_mean) / sqrt(avg_var + 2e-5) * gamma + beta; the conditional batch norm's
gamma and beta are rows of `gammas.W`, `betas.W` [n_classes, C] (not 1 + gamma); upsampling
is nearest (`unpooling_2d`), downsampling a 2 x 2 mean. Spectral norm (discriminator) uses the
stored `u` with one power iteration, as Chainer does in test mode: v = l2n(u W),
u' = l2n(v W^T), sigma = (u' W) . v, with l2n(x) = x / (|x| + 1e-12); W / sigma is folded
once after loading (`weight`, non-persistent).

Class maps (sCBN, the authors' `SpatialCategoricalConditionalBatchNormalization`)
------------------------------------------------------------------------------------
The generator has 12 conditional batch norms, `bn_points()`: block k's b1 at its input
resolution and b2 after its upsample (4, 8, 8, 16, ..., 128, 256 px at bottom_width 4).
`classes` may be indices [B], class vectors [B, n] (mixtures, as their CCBN's `weights`),
one map [B, n, h, w] (any h, w: resized to every batch norm, area when shrinking, bilinear
when enlarging, both convex) or a list of 12 maps at exactly the batch norms' sizes (their
`spatial_interpolation(weights=...)`, in [B, n, h, w] rather than their [B, h, w, n]).
Per pixel, gamma(h, w) = sum_c W_hw(c) gammas[c] (the same for beta). `scbn_bns` picks the
batch norms that use `classes`; the others use `global_classes`.

Feature points (blending, their `spatial_interpolation(zs=..., blends=...)`)
---------------------------------------------------------------------------
Point 0 is the 4 x 4 tensor after `l1`, point k = 1..6 the output of block k + 1.
`feature_hook(point, h)` sees each and may return a replacement. `spatial_interpolation`
reproduces the authors' method: streams for every z plus the blended stream, all in one batch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Collection, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.device import randn
from core.errors import UserError, shown_path

BN_EPS = 2e-5  # Chainer's default, used by every batch norm of these models
WIDTHS = (16, 16, 8, 8, 4, 2, 1)  # generator channels / ch: l1, then blocks 2..7 out
ENC_WIDTHS = (1, 2, 4, 4, 8, 8)  # encoder: l1, then blocks 2..6 out
DIS_WIDTHS = (1, 2, 4, 8, 8, 16, 16)  # discriminator: block1..block7 out
Z_CLIP = 2.5  # the demos draw z ~ N(0, 1) clipped to [-2.5, 2.5]
CLASS_OFFSET = 151  # the dog+cat models' class 0 is ImageNet class 151
FeatureHook = Callable[[int, torch.Tensor], "torch.Tensor | None"]


# ---- Chainer links ------------------------------------------------------------------------
class Linear(nn.Module):
    """Chainer `L.Linear`: W [out, in], b [out]; the input is flattened first."""

    def __init__(self, n_in: int, n_out: int, bias: bool = True):
        super().__init__()
        self.W = nn.Parameter(torch.zeros(n_out, n_in))
        self.b = nn.Parameter(torch.zeros(n_out)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.flatten(1), self.W, self.b)


class Conv(nn.Module):
    """Chainer `L.Convolution2D` (stride 1, pad k // 2)."""

    def __init__(self, n_in: int, n_out: int, k: int):
        super().__init__()
        self.W = nn.Parameter(torch.zeros(n_out, n_in, k, k))
        self.b = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.W, self.b, padding=self.W.shape[-1] // 2)


class Param(nn.Module):
    """A Chainer `L.Parameter` / `EmbedID` / `PReLU`: one array named W."""

    def __init__(self, *shape: int):
        super().__init__()
        self.W = nn.Parameter(torch.zeros(*shape))


def prelu(x: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, x, x * slope)


class BatchNorm(nn.Module):
    """Chainer `L.BatchNormalization` in test mode."""

    def __init__(self, channels: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))
        self.register_buffer("avg_mean", torch.zeros(channels))
        self.register_buffer("avg_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        x_hat = (x - self.avg_mean.view(shape)) / torch.sqrt(self.avg_var.view(shape) + BN_EPS)
        return x_hat * self.gamma.view(shape) + self.beta.view(shape)


class CondBatchNorm(nn.Module):
    """The authors' (spatial) categorical conditional batch norm: stored statistics, then
    gamma * x_hat + beta with gamma, beta mixed from the rows of `gammas.W`, `betas.W` by a
    class vector [B, n] (one per picture) or a class map [B, n, h, w] (one per pixel)."""

    def __init__(self, channels: int, n_classes: int):
        super().__init__()
        self.gammas = Param(n_classes, channels)
        self.betas = Param(n_classes, channels)
        self.register_buffer("avg_mean", torch.zeros(channels))
        self.register_buffer("avg_var", torch.ones(channels))

    def forward(self, x: torch.Tensor, classes: torch.Tensor,
                basis: torch.Tensor | None = None) -> torch.Tensor:
        """`basis` [K, n]: `classes` weigh these K class vectors instead of the n classes
        (the same gamma, fewer products per pixel)."""
        x_hat = (x - self.avg_mean[:, None, None]) / torch.sqrt(self.avg_var[:, None, None] + BN_EPS)
        gammas, betas = self.gammas.W, self.betas.W
        if basis is not None:
            gammas, betas = basis @ gammas, basis @ betas
        if classes.dim() == 2:
            gamma = (classes @ gammas)[:, :, None, None]
            beta = (classes @ betas)[:, :, None, None]
        else:
            gamma = torch.einsum("bnhw,nc->bchw", classes, gammas)
            beta = torch.einsum("bnhw,nc->bchw", classes, betas)
        return gamma * x_hat + beta


def _l2n(v: torch.Tensor) -> torch.Tensor:
    return v / (v.norm() + 1e-12)


class _SpectralNormed(nn.Module):
    """W, b, u as the authors' SN links store them; `weight` = W / sigma, folded after loading
    with one power iteration from the stored u (Chainer's test mode, no update)."""

    def _init_sn(self, shape: tuple[int, ...], u_size: int, bias: bool) -> None:
        self.W = nn.Parameter(torch.zeros(shape))
        self.b = nn.Parameter(torch.zeros(shape[0])) if bias else None
        self.register_buffer("u", torch.ones(1, u_size))
        self.register_buffer("weight", torch.zeros(shape), persistent=False)
        self.register_load_state_dict_post_hook(lambda module, _: module.fold())

    @torch.no_grad()
    def fold(self) -> None:
        if self.W.device.type == "meta" or self.u.device.type == "meta":
            return
        w = self.W.to(torch.float64).reshape(self.W.shape[0], -1)
        u = self.u.to(torch.float64)
        v = _l2n(u @ w)
        u = _l2n(v @ w.t())
        sigma = ((u @ w) * v).sum()
        self.weight = (self.W.to(torch.float64) / sigma).to(self.W.dtype)


class SNConv(_SpectralNormed):
    def __init__(self, n_in: int, n_out: int, k: int):
        super().__init__()
        self._init_sn((n_out, n_in, k, k), n_out, True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.b, padding=self.W.shape[-1] // 2)


class SNLinear(_SpectralNormed):
    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self._init_sn((n_out, n_in), n_out, True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.b)


class SNEmbed(_SpectralNormed):
    """`SNEmbedID`: W [n_classes, C], u [1, n_classes]."""

    def __init__(self, n_classes: int, channels: int):
        super().__init__()
        self._init_sn((n_classes, channels), n_classes, False)


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


def _down(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 2)


# ---- blocks -------------------------------------------------------------------------------
class GenBlock(nn.Module):
    """gen_models/resblocks.py `Block` / `SCBNBlock` (upsampling, hidden = out channels)."""

    def __init__(self, n_in: int, n_out: int, n_classes: int):
        super().__init__()
        self.c1 = Conv(n_in, n_out, 3)
        self.c2 = Conv(n_out, n_out, 3)
        self.b1 = CondBatchNorm(n_in, n_classes)
        self.b2 = CondBatchNorm(n_out, n_classes)
        self.c_sc = Conv(n_in, n_out, 1)

    def forward(self, x: torch.Tensor, y1: tuple, y2: tuple) -> torch.Tensor:
        """`y1`, `y2`: (classes, basis or None) of b1 and b2."""
        h = self.c1(_up(self.b1(x, *y1).relu()))
        h = self.c2(self.b2(h, *y2).relu())
        return h + self.c_sc(_up(x))


class EncBlock(nn.Module):
    """enc_models/resblocks.py `Block` (downsampling, hidden = in channels, conditional BN)."""

    def __init__(self, n_in: int, n_out: int, n_classes: int):
        super().__init__()
        self.c1 = Conv(n_in, n_in, 3)
        self.c2 = Conv(n_in, n_out, 3)
        self.b1 = CondBatchNorm(n_in, n_classes)
        self.b2 = CondBatchNorm(n_in, n_classes)
        self.c_sc = Conv(n_in, n_out, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.c1(_down(self.b1(x, y).relu()))
        h = self.c2(self.b2(h, y).relu())
        return h + self.c_sc(_down(x))


class DisBlock(nn.Module):
    """dis_models/resblocks.py `Block` (pre-activation; hidden = out channels)."""

    def __init__(self, n_in: int, n_out: int, downsample: bool):
        super().__init__()
        self.downsample = downsample
        self.c1 = SNConv(n_in, n_out, 3)
        self.c2 = SNConv(n_out, n_out, 3)
        self.learnable_sc = n_in != n_out or downsample
        if self.learnable_sc:
            self.c_sc = SNConv(n_in, n_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c2(self.c1(x.relu()).relu())
        sc = self.c_sc(x) if self.learnable_sc else x
        if self.downsample:
            h, sc = _down(h), _down(sc)
        return h + sc


class OptimizedDisBlock(nn.Module):
    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.c1 = SNConv(n_in, n_out, 3)
        self.c2 = SNConv(n_out, n_out, 3)
        self.c_sc = SNConv(n_in, n_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _down(self.c2(self.c1(x).relu())) + self.c_sc(_down(x))


def resize_convex(m: torch.Tensor, size: int) -> torch.Tensor:
    """A map [B, n, h, w] -> size x size with convex weights: area averaging where it
    shrinks, bilinear (align_corners=False) where it enlarges."""
    h, w = m.shape[-2:]
    if (h, w) == (size, size):
        return m
    if h > size or w > size:
        m = F.interpolate(m, size=(min(h, size), min(w, size)), mode="area")
    if m.shape[-1] < size or m.shape[-2] < size:
        m = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False)
    return m


# ---- the generator ------------------------------------------------------------------------
class SNGANGenerator(nn.Module):
    """`ResNetGenerator` / `SCBNResNetGenerator` of gen_models/resnet_256*.py:
    `G(z, classes)` -> pictures [B, 3, S, S] in [-1, 1], S = 64 * bottom_width."""

    def __init__(self, ch: int = 48, dim_z: int = 128, n_classes: int = 143, bottom_width: int = 4):
        super().__init__()
        self.config = {"ch": ch, "dim_z": dim_z, "n_classes": n_classes, "bottom_width": bottom_width}
        self.dim_z, self.num_classes, self.bottom_width = dim_z, n_classes, bottom_width
        self.l1 = Linear(dim_z, bottom_width ** 2 * ch * WIDTHS[0])
        for k in range(6):
            setattr(self, f"block{k + 2}", GenBlock(ch * WIDTHS[k], ch * WIDTHS[k + 1], n_classes))
        self.b8 = BatchNorm(ch)
        self.l8 = Conv(ch, 3, 3)

    @property
    def blocks(self) -> list[GenBlock]:
        return [getattr(self, f"block{k + 2}") for k in range(6)]

    @property
    def size(self) -> int:
        return 64 * self.bottom_width

    @property
    def device(self) -> torch.device:
        return self.l1.W.device

    def bn_points(self) -> list[tuple[str, int]]:
        """(name, resolution) of the 12 conditional batch norms, in order."""
        out, res = [], self.bottom_width
        for k in range(6):
            out += [(f"block{k + 2}.b1", res), (f"block{k + 2}.b2", res * 2)]
            res *= 2
        return out

    def feature_points(self) -> list[tuple[str, int, int]]:
        """(name, resolution, channels) of the 7 blendable features: after l1, after each block."""
        ch = self.config["ch"]
        return [("l1", self.bottom_width, ch * WIDTHS[0])] + [
            (f"block{k + 2}", self.bottom_width * 2 ** (k + 1), ch * WIDTHS[k + 1]) for k in range(6)]

    # ---- core.models.generator.Generator ------------------------------------------------------
    def sample_latents(self, seeds: Sequence[int], truncation: float = 1.0) -> torch.Tensor:
        """z ~ N(0, 1) per seed (drawn on the CPU), clipped to [-2.5, 2.5] as the authors'
        demos do. SNGAN has no truncation trick: `truncation` is ignored."""
        z = torch.cat([randn((1, self.dim_z), int(s)) for s in seeds]).clamp(-Z_CLIP, Z_CLIP)
        return z.to(self.device)

    @torch.inference_mode()
    def render(self, latents: torch.Tensor, truncation: float = 1.0,
               classes: torch.Tensor | None = None) -> torch.Tensor:
        """`classes`: indices [B] (0..n_classes-1), vectors or maps; `truncation` is ignored."""
        if classes is None:
            raise ValueError("The SNGAN generator is class-conditional: pass classes")
        return self(latents.to(self.device), classes).float().clamp(-1, 1)

    # ---- forward -------------------------------------------------------------------------------
    def _classes(self, classes: torch.Tensor, batch: int, name: str, n: int | None = None) -> torch.Tensor:
        dtype, device = self.l1.W.dtype, self.device
        n = n or self.num_classes
        if classes.dim() == 1 and not classes.is_floating_point():
            if classes.min() < 0 or classes.max() >= n:
                raise ValueError(f"{name}: class indices must be in 0..{n - 1}")
            classes = F.one_hot(classes.long(), n)
        if classes.dim() not in (2, 4) or classes.shape[1] != n:
            raise ValueError(f"{name} must be [B], [B, {n}] or [B, {n}, h, w], "
                             f"got {tuple(classes.shape)}")
        if classes.shape[0] != batch:
            if classes.shape[0] != 1:
                raise ValueError(f"{name} has batch {classes.shape[0]}, z has {batch}")
            classes = classes.expand(batch, *classes.shape[1:])
        return classes.to(device, dtype)

    def bn_conditions(self, classes: torch.Tensor | Sequence[torch.Tensor], batch: int,
                      scbn_bns: Collection[int] | None = None,
                      global_classes: torch.Tensor | None = None,
                      basis: torch.Tensor | None = None) -> list[tuple]:
        """One condition per batch norm: (a vector [B, n] or a map at its resolution, the
        basis its weights refer to or None)."""
        points = self.bn_points()
        n = None
        if basis is not None:
            basis = basis.to(self.device, self.l1.W.dtype)
            if basis.dim() != 2 or basis.shape[1] != self.num_classes:
                raise ValueError(f"basis must be [K, {self.num_classes}], got {tuple(basis.shape)}")
            n = basis.shape[0]
        if isinstance(classes, (list, tuple)):
            if len(classes) != len(points):
                raise ValueError(f"a list of class maps needs one per batch norm ({len(points)})")
            conds = []
            for (name, res), m in zip(points, classes):
                m = self._classes(m, batch, f"the class map of {name}", n)
                if m.dim() == 4 and tuple(m.shape[-2:]) != (res, res):
                    raise ValueError(f"the class map of {name} must be {res} x {res}")
                conds.append(m)
        else:
            main = self._classes(classes, batch, "classes", n)
            conds = [main if main.dim() == 2 else resize_convex(main, res) for _, res in points]
        conds = [(c, basis) for c in conds]
        chosen = set(range(len(points))) if scbn_bns is None else {int(i) for i in scbn_bns}
        if not chosen <= set(range(len(points))):
            raise ValueError(f"scbn_bns {sorted(chosen)} are not all batch norms 0..{len(points) - 1}")
        if chosen != set(range(len(points))):
            if global_classes is None:
                raise ValueError("global_classes is required when scbn_bns leaves out batch norms")
            other = self._classes(global_classes, batch, "global_classes")
            if other.dim() != 2:
                raise ValueError("global_classes must be class indices or vectors")
            conds = [c if i in chosen else (other, None) for i, c in enumerate(conds)]
        return conds

    def forward(self, z: torch.Tensor, classes: torch.Tensor | Sequence[torch.Tensor], *,
                scbn_bns: Collection[int] | None = None, global_classes: torch.Tensor | None = None,
                basis: torch.Tensor | None = None, feature_hook: FeatureHook | None = None
                ) -> torch.Tensor:
        """z [B, dim_z] and classes (see the module docstring) -> pictures in [-1, 1].
        `basis` [K, n_classes]: `classes` weigh these K class vectors (a few mixtures of the
        n classes) rather than the classes themselves; `global_classes` never use it."""
        if z.dim() != 2 or z.shape[1] != self.dim_z:
            raise ValueError(f"z must be [B, {self.dim_z}], got {tuple(z.shape)}")
        z = z.to(self.device, self.l1.W.dtype)
        conds = self.bn_conditions(classes, z.shape[0], scbn_bns, global_classes, basis)

        def hook(point: int, h: torch.Tensor) -> torch.Tensor:
            out = feature_hook(point, h) if feature_hook is not None else None
            if out is None:
                return h
            if out.shape != h.shape:
                raise ValueError(f"feature_hook changed the shape at point {point}")
            return out

        bw = self.bottom_width
        h = hook(0, self.l1(z).view(z.shape[0], -1, bw, bw))
        for k, block in enumerate(self.blocks):
            h = hook(k + 1, block(h, conds[2 * k], conds[2 * k + 1]))
        return torch.tanh(self.l8(self.b8(h).relu()))

    def spatial_interpolation(self, zs: Sequence[torch.Tensor], classes, blends: Sequence[torch.Tensor]
                              ) -> torch.Tensor:
        """The authors' `spatial_interpolation(zs, weights, blends)` in one batched pass:
        streams z_0 .. z_{m-1} plus the blended stream (which starts as zeros after l1); at
        feature point l the blended stream becomes sum_i blends[l][:, i] * stream_i, with
        blends[l] [B, m + 1, h_l, w_l] (the last weight: the blended stream itself). Every
        stream uses the same `classes`. -> the blended stream's pictures [B, 3, S, S]."""
        m, batch = len(zs), zs[0].shape[0]
        points = self.feature_points()
        if len(blends) != len(points):
            raise ValueError(f"blends needs one weight map per feature point ({len(points)})")
        z = torch.cat([*zs, zs[0]])  # the last stream's z is never used (its l1 output is zeros)

        def blend(point: int, h: torch.Tensor) -> torch.Tensor:
            streams = list(h.split(batch))
            if point == 0:
                streams[-1] = torch.zeros_like(streams[-1])
            w = blends[point].to(h)
            mixed = sum(w[:, i:i + 1] * streams[i] for i in range(m + 1))
            return torch.cat(streams[:-1] + [mixed])

        if isinstance(classes, (list, tuple)):
            classes = [c.repeat(m + 1, *([1] * (c.dim() - 1))) if c.shape[0] == batch else c
                       for c in classes]
        elif classes.shape[0] == batch:
            classes = classes.repeat(m + 1, *([1] * (classes.dim() - 1)))
        return self(z, classes, feature_hook=blend)[m * batch:]


# ---- the encoder, the auxiliary network, the discriminator --------------------------------
class SNGANEncoder(nn.Module):
    """enc_models/resnetenc_small.py `ResNetEncoder`: a picture [B, 3, 32 bw, 32 bw] and its
    class -> z [B, dim_z]. (`b7` is in the file but unused by the authors' forward.)"""

    def __init__(self, ch: int = 64, dim_z: int = 128, n_classes: int = 143, bottom_width: int = 4):
        super().__init__()
        self.config = {"ch": ch, "dim_z": dim_z, "n_classes": n_classes, "bottom_width": bottom_width}
        self.num_classes, self.input_size = n_classes, 32 * bottom_width
        self.l1 = Conv(3, ch, 3)
        for k in range(5):
            setattr(self, f"block{k + 2}", EncBlock(ch * ENC_WIDTHS[k], ch * ENC_WIDTHS[k + 1], n_classes))
        self.b7 = BatchNorm(bottom_width ** 2 * ch * 8)
        self.l7 = Linear(bottom_width ** 2 * ch * 8, dim_z)
        self.prelu_out = Param(dim_z)

    def forward(self, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        if classes.dim() == 1 and not classes.is_floating_point():
            classes = F.one_hot(classes.long(), self.num_classes)
        y = classes.to(x)
        h = self.l1(x)
        for k in range(5):
            h = getattr(self, f"block{k + 2}")(h, y)
        return prelu(self.l7(h), self.prelu_out.W)


class SNGANAuxiliary(nn.Module):
    """The auxiliary network of gen_models/resnet_256_auxab.py: A maps z to zeta, B maps
    zeta back to z' (the generator's input). `fast_alpha` (learned_lr) is kept for the record."""

    def __init__(self, dim_z: int = 128, dim_a: int = 1000, dim_b: int = 1000, dim_zeta: int = 10000,
                 learned_lr: bool = True):
        super().__init__()
        self.lA1 = Linear(dim_z, dim_a)
        self.lA2 = Linear(dim_a, dim_zeta)
        self.lB1 = Linear(dim_zeta, dim_b)
        self.lB2 = Linear(dim_b, dim_z)
        self.preluW = Param(dim_z)
        self.preluMiddleW = Param(dim_zeta)
        if learned_lr:
            self._fast_alpha = Param(dim_zeta)

    def A(self, z: torch.Tensor) -> torch.Tensor:
        return prelu(self.lA2(self.lA1(z).relu()), self.preluMiddleW.W)

    def B(self, zeta: torch.Tensor) -> torch.Tensor:
        return prelu(self.lB2(self.lB1(zeta).relu()), self.preluW.W)


class SNGANDiscriminator(nn.Module):
    """dis_models/snresnet_256.py `SNResNetProjectionDiscriminator`."""

    def __init__(self, ch: int = 48, n_classes: int = 143):
        super().__init__()
        self.block1 = OptimizedDisBlock(3, ch * DIS_WIDTHS[0])
        for k in range(1, 7):
            setattr(self, f"block{k + 1}", DisBlock(ch * DIS_WIDTHS[k - 1], ch * DIS_WIDTHS[k], k < 6))
        self.l8 = SNLinear(ch * 16, 1)
        if n_classes > 0:
            self.l_y = SNEmbed(n_classes, ch * 16)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for k in range(7):
            h = getattr(self, f"block{k + 1}")(h)
        return h.relu()

    def feature_vector(self, x: torch.Tensor) -> torch.Tensor:
        """The authors' `feature_vector`: the last block's ReLU features, flattened."""
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x).sum(dim=(2, 3))
        out = self.l8(h)
        if y is not None:
            out = out + (self.l_y.weight[y.long()] * h).sum(1, keepdim=True)
        return out


# ---- loading ------------------------------------------------------------------------------
def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """A Chainer .npz (plain NumPy arrays; nothing pickled is accepted) -> {key: array}."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Weights file not found: {shown_path(path)}")
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (ValueError, OSError, EOFError) as e:
        raise UserError(f"Could not read {path.name} as a Chainer .npz file ({type(e).__name__}: "
                        f"{e}). Delete it and download it again.") from e


def to_state_dict(arrays: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Chainer keys -> PyTorch names (`a/b/W` -> `a.b.W`), batch-norm counters `N` dropped."""
    return {k.strip("/").replace("/", "."): torch.from_numpy(np.ascontiguousarray(v))
            for k, v in arrays.items() if k.rsplit("/", 1)[-1] != "N"}


def expected_layout(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_layout(state: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]],
                 name: str, what: str) -> None:
    """Missing, unexpected or misshapen arrays -> one UserError naming a few of each."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k} {tuple(state[k].shape)} (expected {expected[k]})" for k in expected
              if k in state and tuple(state[k].shape) != tuple(expected[k])]
    problems = [f"{label}: {', '.join(items[:4])}{' ...' if len(items) > 4 else ''}"
                for label, items in (("missing", missing), ("unexpected", unexpected),
                                     ("wrong shape", shapes)) if items]
    if problems:
        raise UserError(f"{name} is not {what} of this configuration: " + "; ".join(problems)
                        + ". Check the registry entry's config against the file.")


def _load(model: nn.Module, path: str | Path, what: str, keep: Callable[[str], bool] | None = None,
          extra: Mapping[str, tuple[int, ...]] | None = None) -> nn.Module:
    """Read `path`, check its layout (the model's keys, plus `extra` keys that must be there
    but are not kept) and load it with strict=True -> eval mode, no gradients."""
    state = to_state_dict(read_npz(path))
    check_layout(state, {**expected_layout(model), **(extra or {})}, Path(path).name, what)
    if keep is not None:
        state = {k: v for k, v in state.items() if keep(k)}
    model.load_state_dict(state, strict=True, assign=True)
    return model.float().eval().requires_grad_(False)


def _shell(cls, **config) -> nn.Module:
    try:
        with torch.device("meta"):
            return cls(**config)
    except (TypeError, ValueError) as e:
        raise UserError(f"Unsupported {cls.__name__} configuration {config}: {e}") from e


def _bottom_width(size: int, per_cell: int, name: str) -> int:
    """The authors' bottom_width from a picture size (generator 64 px, encoder 32 px per cell)."""
    if int(size) <= 0 or int(size) % per_cell:
        raise UserError(f"{name}: size {size} is not a multiple of {per_cell} (bottom_width x {per_cell}).")
    return int(size) // per_cell


def load_sngan(path: str | Path, ch: int = 48, dim_z: int = 128, n_classes: int = 143,
               size: int = 256) -> SNGANGenerator:
    """The registry's loader for `ResNetGenerator_*.npz` (arch "sngan"); `size` is the
    picture's side (64 x the authors' bottom_width)."""
    G = _shell(SNGANGenerator, ch=ch, dim_z=dim_z, n_classes=n_classes,
               bottom_width=_bottom_width(size, 64, Path(path).name))
    return _load(G, path, "an SNGAN ResNet generator")


def load_sngan_encoder(path: str | Path, ch: int = 64, dim_z: int = 128, n_classes: int = 143,
                       input_size: int = 128) -> SNGANEncoder:
    """`ResNetEncoder_*.npz` (arch "sngan-encoder"); `input_size`: 32 x bottom_width."""
    E = _shell(SNGANEncoder, ch=ch, dim_z=dim_z, n_classes=n_classes,
               bottom_width=_bottom_width(input_size, 32, Path(path).name))
    return _load(E, path, "an SNGAN ResNet encoder")


def load_sngan_discriminator(path: str | Path, ch: int = 48, n_classes: int = 143) -> SNGANDiscriminator:
    """`SNResNetProjectionDiscriminator_*.npz` (arch "sngan-discriminator")."""
    D = _shell(SNGANDiscriminator, ch=ch, n_classes=n_classes)
    return _load(D, path, "an SNGAN projection discriminator")


def load_sngan_auxiliary(path: str | Path, ch: int = 48, dim_z: int = 128, n_classes: int = 143,
                         size: int = 256, dim_a: int = 1000, dim_b: int = 1000,
                         dim_zeta: int = 10000, learned_lr: bool = True) -> SNGANAuxiliary:
    """`ResNetAuxABGenerator_*.npz` (arch "sngan-auxiliary"): A and B are kept; the copy of
    the generator stored with them must have the generator's layout (checked, not kept)."""
    aux = _shell(SNGANAuxiliary, dim_z=dim_z, dim_a=dim_a, dim_b=dim_b, dim_zeta=dim_zeta,
                 learned_lr=learned_lr)
    gen = expected_layout(_shell(SNGANGenerator, ch=ch, dim_z=dim_z, n_classes=n_classes,
                                 bottom_width=_bottom_width(size, 64, Path(path).name)))
    return _load(aux, path, "an SNGAN generator with its auxiliary network",
                 keep=lambda k: k not in gen, extra=gen)

