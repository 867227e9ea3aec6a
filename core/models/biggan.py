"""BigGAN-deep generator in the pytorch-pretrained-BigGAN layout, with spatial class maps.

Loads the published `config.json` + `pytorch_model.bin` pairs of huggingface's
pytorch-pretrained-BigGAN (biggan-deep-128/256/512, converted from the TF Hub modules) with
strict=True and reproduces their outputs (see tests/test_biggan.py). On top of the plain
class-conditional forward it offers what the Neural Collage tab needs: spatial class maps
(sCBN) at chosen layers and hooks that read or replace the features between layers.

Layout
------
`embeddings` (bias-free Linear, one-hot or mixed class vector -> embedding), then
`generator.gen_z` (4x4 seed from cond = [z, embedding]), `generator.layers` (GenBlocks; the
SelfAttn module sits at index `attention_layer_position`), `generator.bn` (unconditional),
`generator.conv_to_rgb`. Every conditional BN normalises with stored statistics and applies
`x_hat * (1 + scale(cond)) + offset(cond)` with bias-free linears `scale`, `offset`.

Spectral norm is folded once: the checkpoints store `weight_orig`, `weight_u`, `weight_v`, and
evaluation in the port (PyTorch's `spectral_norm` in eval mode: no power iteration) divides
`weight_orig` by sigma = u . (W v), W = `weight_orig` reshaped to [out, -1]. Here W / sigma is
computed after every `load_state_dict` (a post-hook) into a non-persistent buffer `weight`;
the forward never recomputes it. sigma is computed in float64 on fresh copies, so a file read
from safetensors folds to the same bits as the .bin (BLAS results can depend on the memory
alignment). After editing `weight_orig`/`weight_u`/`weight_v` in place, call
`refold_spectral_norm()`. The folded copy doubles the memory of the weights (about 200 MB
more for the 128 px model). Features run in channels_last (`memory_format`; about 5-10%
faster on the CPU); hooks see them that way, which changes no value.

Truncation
----------
Every BN stores 51 statistics, for truncation t = 0, 0.02, ..., 1. Like the port, a
truncation between two of them uses `coef * stats[i] + (1 - coef) * stats[i + 1]` with
`coef, i = math.modf(t / (1 / (n_stats - 1)))`: the weights are the reverse of a linear
interpolation (t = 0.405 behaves like 0.415). This is reproduced on purpose, since it is what
every user of these weights gets. One thing is not: in the port, float error makes some grid
values pick a neighbour (0.14 / 0.02 = 7.000000000000001 uses the statistics of 0.16; 0.28,
0.56, 0.58 and 0.94 likewise use 0.30, 0.58, 0.56 and 0.92). Here t / step within 1e-6 of a
whole number is taken as that number, so every multiple of 0.02 uses its own statistics.
The truncation also scales z: sample it with `truncated_noise(..., truncation, seed)`.

Condition points and class maps (sCBN, Neural Collage Eq. 2)
-----------------------------------------------------------
Condition point 0 is `gen_z`; point k >= 1 is the k-th GenBlock (all four of its BNs).
`classes` is a class vector [B, num_classes] or class maps [B, num_classes, h, w] (per-pixel
mixture weights, non-negative, summing to 1). Because `scale`, `offset` and `embeddings` are
bias-free linear maps, feeding each pixel the mixed embedding sum_c W_hw(c) e_c gives exactly
gamma(h, w) = sum_c W_hw(c) gamma(c) (the paper's Eq. 2, with gamma = 1 + scale, which is why
the weights must sum to 1). The maps are resized to each BN's resolution (bn_0/bn_1 of a block
at its input resolution, bn_1 runs before the upsample; bn_2/bn_3 at its output resolution):
area averaging when shrinking, bilinear (align_corners=False) when enlarging; both keep the
weights convex. With fewer classes present than embedding dimensions the class maps of those
classes are resized and each BN mixes their per-class scale/offset per pixel; otherwise the
maps are embedded first and the embedding map is resized (the same result: resizing and
embedding are both linear). `gen_z` is affine in the embedding, so at point 0 each 4x4 cell
gets gen_z of its own cell's embedding (the 4x4-resized map).
`scbn_points` picks the points that use `classes`; the others use `global_classes`.

Feature points
--------------
Feature point 0 is the 4x4 seed after `gen_z`; point k >= 1 is the output of
`generator.layers[k - 1]` (the attention module included, so after the attention layer the
feature and condition numbers differ). `feature_hook(point, h)` sees every one of them and its
return value (None = unchanged) replaces h for the rest of the forward.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.checkpoints import read_checkpoint
from core.errors import UserError, shown_path
from core.ops import ScaledWeightCache, nearest_up_conv


def _published(layers: list[list]) -> dict[str, Any]:
    return {"output_dim": 4 * 2 ** sum(up for up, _, _ in layers), "z_dim": 128,
            "class_embed_dim": 128, "channel_width": 128, "num_classes": 1000, "layers": layers,
            "attention_layer_position": 8, "eps": 1e-4, "n_stats": 51}


_LAYERS_256 = [[False, 16, 16], [True, 16, 16], [False, 16, 16], [True, 16, 8], [False, 8, 8],
               [True, 8, 8], [False, 8, 8], [True, 8, 4], [False, 4, 4], [True, 4, 2],
               [False, 2, 2], [True, 2, 1]]
PUBLISHED_CONFIGS: dict[str, dict[str, Any]] = {
    "biggan-deep-128": _published(
        [[False, 16, 16], [True, 16, 16], [False, 16, 16], [True, 16, 8], [False, 8, 8],
         [True, 8, 4], [False, 4, 4], [True, 4, 2], [False, 2, 2], [True, 2, 1]]),
    "biggan-deep-256": _published(_LAYERS_256),
    "biggan-deep-512": _published(_LAYERS_256 + [[False, 1, 1], [True, 1, 1]]),
}
"""The `config.json` of each published model (pytorch-pretrained-BigGAN's converter)."""

FeatureHook = Callable[[int, torch.Tensor], "torch.Tensor | None"]


def truncated_noise(batch: int, z_dim: int, truncation: float, seed: int) -> torch.Tensor:
    """The port's `truncated_noise_sample`: truncnorm(-2, 2) from RandomState(seed), float32,
    times `truncation` -> [batch, z_dim] (the same z for the same seed as the port)."""
    from scipy.stats import truncnorm

    values = truncnorm.rvs(-2, 2, size=(batch, z_dim),
                           random_state=np.random.RandomState(seed)).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(truncation * values, dtype=np.float32))


def check_truncation(truncation: float) -> float:
    truncation = float(truncation)
    if not 0 < truncation <= 1:
        raise ValueError(f"BigGAN truncation must be in (0, 1], got {truncation}")
    return truncation


def _resize_convex(m: torch.Tensor, size: int) -> torch.Tensor:
    """Resize [B, C, h, w] to size x size with convex weights: area averaging where it
    shrinks (exact block means for integer factors), bilinear (align_corners=False) where it
    enlarges."""
    h, w = m.shape[-2:]
    if (h, w) == (size, size):
        return m
    if h > size or w > size:
        m = F.interpolate(m, size=(min(h, size), min(w, size)), mode="area")
        h, w = m.shape[-2:]
    if h < size or w < size:
        m = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False)
    return m


# ---- spectral norm, folded ----------------------------------------------------------------
class _SpectralNormed(nn.Module):
    """`weight_orig` (parameter), `weight_u`, `weight_v` (buffers) as PyTorch's
    spectral_norm stores them, plus the folded non-persistent buffer `weight` = W / sigma."""

    def _init_spectral_norm(self, shape: tuple[int, ...], bias: bool) -> None:
        fan_in = math.prod(shape[1:])
        self.weight_orig = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.zeros(shape[0])) if bias else None
        self.register_buffer("weight_u", torch.empty(shape[0]))
        self.register_buffer("weight_v", torch.empty(fan_in))
        self.register_buffer("weight", torch.empty(shape), persistent=False)
        self.register_load_state_dict_post_hook(_refold_after_load)
        if self.weight_orig.device.type == "meta":  # a shell for load_state_dict(assign=True)
            return
        with torch.no_grad():  # a random model: uniform weights, u and v from power iteration
            nn.init.uniform_(self.weight_orig, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
            mat = self.weight_orig.reshape(shape[0], -1)
            u = F.normalize(torch.randn(shape[0]), dim=0)
            for _ in range(3):
                v = F.normalize(mat.t() @ u, dim=0)
                u = F.normalize(mat @ v, dim=0)
            self.weight_u.copy_(u)
            self.weight_v.copy_(v)
        self.fold()

    @torch.no_grad()
    def fold(self) -> None:
        """weight = weight_orig / (u . (W v)), W = weight_orig as [out, -1] (the stored u, v)."""
        w, u, v = self.weight_orig, self.weight_u, self.weight_v
        if "meta" in (w.device.type, u.device.type, v.device.type) or not (w.device == u.device == v.device):
            # not loaded yet (meta model) or a key missing: load_state_dict will say so
            self.weight = torch.empty_like(w)
            return
        # sigma in float64 on fresh (aligned) copies: BLAS results can depend on the memory
        # alignment, and a file loaded from safetensors must fold to the same bits as the .bin
        w64 = w.to(torch.float64, copy=True)
        sigma = torch.dot(u.to(torch.float64, copy=True),
                          torch.mv(w64.reshape(w.shape[0], -1), v.to(torch.float64, copy=True)))
        wf = w.to(_stats_dtype(w.dtype))
        folded = (wf / sigma.to(wf.dtype)).to(w.dtype)
        # conv weights in channels_last, as the features: no layout reorders in the convs
        self.weight = folded.contiguous(memory_format=torch.channels_last) if folded.dim() == 4 else folded


def _refold_after_load(module: nn.Module, _incompatible) -> None:
    module.fold()


class SNLinear(_SpectralNormed):
    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self._init_spectral_norm((out_features, in_features), bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class SNConv2d(_SpectralNormed):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, bias: bool = True):
        super().__init__()
        self.padding = kernel_size // 2
        self._init_spectral_norm((out_channels, in_channels, kernel_size, kernel_size), bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, padding=self.padding)


# ---- conditions ---------------------------------------------------------------------------
class _Condition:
    """One conditioning of the generator: cond = [z, E y] for a class vector y, or z and
    per-pixel maps. Maps are held in a small basis: `maps` [B, D, h, w] with the per-pixel
    embedding = `basis` [E, D] @ maps (basis None: the maps are the embedding itself). With
    few classes present D is their number, so every BN mixes D per-class vectors per pixel
    instead of projecting a 128-d embedding at every pixel. Resized maps are cached by size."""

    def __init__(self, z: torch.Tensor, vector: torch.Tensor | None = None,
                 maps: torch.Tensor | None = None, basis: torch.Tensor | None = None):
        self.z = z
        self.spatial = maps is not None
        self.vector = None if self.spatial else torch.cat([z, vector], dim=1)
        self.maps, self.basis = maps, basis
        self._resized: dict[int, torch.Tensor] = {}

    def maps_at(self, size: int) -> torch.Tensor:
        if size not in self._resized:
            self._resized[size] = _resize_convex(self.maps, size)
        return self._resized[size]

    def embedding_at(self, size: int) -> torch.Tensor:
        """The per-pixel class embedding [B, E, size, size]."""
        m = self.maps_at(size)
        return m if self.basis is None else torch.einsum("ed,bdhw->behw", self.basis, m)

    def split(self, linear: SNLinear) -> tuple[torch.Tensor, torch.Tensor]:
        """A bias-free linear of the spatial cond as (per-image z part [B, C], weight on the
        maps [C, D]): linear(cond)(h, w) = z_part + weight @ maps(h, w)."""
        w = linear.weight
        zd = self.z.shape[1]
        w_maps = w[:, zd:] if self.basis is None else w[:, zd:] @ self.basis
        return F.linear(self.z, w[:, :zd]), w_maps


# ---- layers -------------------------------------------------------------------------------
def _stats_dtype(dtype: torch.dtype) -> torch.dtype:
    """BN statistics math runs in float32 for half/bfloat16 models, else in their dtype."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


class _TruncationStats(nn.Module):
    """Per-truncation running statistics [n_stats, C] and the port's way of picking them."""

    def _init_stats(self, num_features: int, n_stats: int, eps: float) -> None:
        self.eps = eps
        self.n_stats = n_stats
        self.register_buffer("running_means", torch.zeros(n_stats, num_features))
        self.register_buffer("running_vars", torch.ones(n_stats, num_features))

    def statistics(self, truncation: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) for this truncation (see the module docstring), in float32 at least."""
        position = truncation / (1.0 / (self.n_stats - 1))
        if abs(position - round(position)) < 1e-6:  # a grid value: its own statistics
            position = float(round(position))
        coef, start = math.modf(position)
        i = int(start)
        means, var = self.running_means, self.running_vars
        dt = _stats_dtype(means.dtype)
        if coef != 0.0:
            j = min(i + 1, self.n_stats - 1)
            mean = means[i].to(dt) * coef + means[j].to(dt) * (1 - coef)
            var = var[i].to(dt) * coef + var[j].to(dt) * (1 - coef)
        else:
            mean, var = means[i].to(dt), var[i].to(dt)
        return mean, torch.sqrt(var + self.eps)


class ConditionalBatchNorm(_TruncationStats):
    """BN with stored statistics, then x_hat * (1 + scale(cond)) + offset(cond); ReLU fused
    (every conditional BN in BigGAN-deep is followed by one)."""

    def __init__(self, num_features: int, condition_dim: int, n_stats: int = 51, eps: float = 1e-4):
        super().__init__()
        self._init_stats(num_features, n_stats, eps)
        self.scale = SNLinear(condition_dim, num_features, bias=False)
        self.offset = SNLinear(condition_dim, num_features, bias=False)

    def forward(self, x: torch.Tensor, truncation: float, cond: _Condition) -> torch.Tensor:
        mean, std = self.statistics(truncation)  # [C], float32 or float64
        if not cond.spatial:
            scale = F.linear(cond.vector, self.scale.weight).to(mean.dtype)
            offset = F.linear(cond.vector, self.offset.weight).to(mean.dtype)
            a = (1 + scale) / std  # out = x * a + b = (x - mean) / std * (1 + scale) + offset
            b = offset - mean * a
            return torch.addcmul(b.to(x.dtype)[:, :, None, None], x,
                                 a.to(x.dtype)[:, :, None, None]).relu_()
        # per pixel: a = (1 + z_s + W_s m) / std, b = z_o + W_o m - mean * a; both are affine
        # in the maps m, so each is one batched matmul with folded coefficients
        z_s, w_s = cond.split(self.scale)
        z_o, w_o = cond.split(self.offset)
        inv = 1 / std
        sd = mean.dtype
        w_a, c_a = w_s.to(sd) * inv[:, None], (1 + z_s.to(sd)) * inv
        w_b, c_b = w_o.to(sd) - mean[:, None] * w_a, z_o.to(sd) - mean * c_a
        batch, _, h, w = x.shape
        m = cond.maps_at(w).flatten(2).to(x.dtype)  # [B, D, hw]
        dt = x.dtype
        if x.is_contiguous(memory_format=torch.channels_last):  # a, b in x's layout
            m = m.transpose(1, 2)  # [B, hw, D]
            a = torch.baddbmm(c_a.to(dt)[:, None], m, w_a.t().to(dt).expand(batch, -1, -1))
            b = torch.baddbmm(c_b.to(dt)[:, None], m, w_b.t().to(dt).expand(batch, -1, -1))
            a, b = (t.view(batch, h, w, -1).permute(0, 3, 1, 2) for t in (a, b))
        else:
            a = torch.baddbmm(c_a.to(dt)[:, :, None], w_a.to(dt).expand(batch, -1, -1), m)
            b = torch.baddbmm(c_b.to(dt)[:, :, None], w_b.to(dt).expand(batch, -1, -1), m)
            a, b = a.view_as(x), b.view_as(x)
        return torch.addcmul(b, x, a).relu_()


class BatchNorm(_TruncationStats):
    """The final unconditional BN (affine `weight`, `bias`), ReLU fused."""

    def __init__(self, num_features: int, n_stats: int = 51, eps: float = 1e-4):
        super().__init__()
        self._init_stats(num_features, n_stats, eps)
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: torch.Tensor, truncation: float) -> torch.Tensor:
        mean, std = self.statistics(truncation)
        a = self.weight.to(mean.dtype) / std
        b = self.bias.to(mean.dtype) - mean * a
        return torch.addcmul(b.to(x.dtype)[None, :, None, None], x,
                             a.to(x.dtype)[None, :, None, None]).relu_()


class GenBlock(nn.Module):
    """Bottleneck residual block: BN-ReLU-1x1 (in -> in/4), BN-ReLU-[up]-3x3, BN-ReLU-3x3,
    BN-ReLU-1x1 (-> out); the skip keeps the first out channels (= in/2) and is upsampled
    the same way (nearest, x2)."""

    def __init__(self, in_size: int, out_size: int, condition_dim: int, up_sample: bool,
                 n_stats: int = 51, eps: float = 1e-4):
        super().__init__()
        if out_size not in (in_size, in_size // 2):
            raise ValueError(f"a GenBlock keeps or halves its channels, got {in_size} -> {out_size}")
        mid = in_size // 4
        self.up_sample = up_sample
        self.out_size = out_size
        self.bn_0 = ConditionalBatchNorm(in_size, condition_dim, n_stats, eps)
        self.conv_0 = SNConv2d(in_size, mid, 1)
        self.bn_1 = ConditionalBatchNorm(mid, condition_dim, n_stats, eps)
        self.conv_1 = SNConv2d(mid, mid, 3)
        self.bn_2 = ConditionalBatchNorm(mid, condition_dim, n_stats, eps)
        self.conv_2 = SNConv2d(mid, mid, 3)
        self.bn_3 = ConditionalBatchNorm(mid, condition_dim, n_stats, eps)
        self.conv_3 = SNConv2d(mid, out_size, 1)
        self._up_cache = ScaledWeightCache()

    def forward(self, x: torch.Tensor, cond: _Condition, truncation: float) -> torch.Tensor:
        h = self.conv_0(self.bn_0(x, truncation, cond))
        h = self.bn_1(h, truncation, cond)
        skip = x[:, :self.out_size] if self.out_size != x.shape[1] else x
        if self.up_sample:  # nearest 2x then conv_1, fused into one transposed conv
            skip = F.interpolate(skip, scale_factor=2, mode="nearest")
            h = nearest_up_conv(h, self.conv_1.weight, self.conv_1.bias, self._up_cache)
        else:
            h = self.conv_1(h)
        h = self.conv_2(self.bn_2(h, truncation, cond))
        h = self.conv_3(self.bn_3(h, truncation, cond))
        return h.add_(skip)


class SelfAttn(nn.Module):
    """SAGAN self-attention: theta at every pixel, phi and g max-pooled 2x2, softmax over the
    pooled positions (no 1/sqrt(d) scaling), out = x + gamma * o_conv(attention)."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.snconv1x1_theta = SNConv2d(in_channels, in_channels // 8, 1, bias=False)
        self.snconv1x1_phi = SNConv2d(in_channels, in_channels // 8, 1, bias=False)
        self.snconv1x1_g = SNConv2d(in_channels, in_channels // 2, 1, bias=False)
        self.snconv1x1_o_conv = SNConv2d(in_channels // 2, in_channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        theta = self.snconv1x1_theta(x).flatten(2).transpose(1, 2)  # [B, hw, c/8]
        phi = F.max_pool2d(self.snconv1x1_phi(x), 2).flatten(2).transpose(1, 2)  # [B, hw/4, c/8]
        g = F.max_pool2d(self.snconv1x1_g(x), 2).flatten(2).transpose(1, 2)  # [B, hw/4, c/2]
        attn = F.scaled_dot_product_attention(theta[:, None], phi[:, None], g[:, None], scale=1.0)
        attn = attn[:, 0].transpose(1, 2).reshape(b, -1, h, w)
        return x + self.gamma.to(x.dtype) * self.snconv1x1_o_conv(attn)


class Generator(nn.Module):
    """The port's `generator` submodule (keys gen_z, layers.N, bn, conv_to_rgb)."""

    def __init__(self, channel_width: int, condition_dim: int, layers: list, attention_position: int,
                 n_stats: int, eps: float):
        super().__init__()
        ch = channel_width
        self.seed_channels = 16 * ch
        self.gen_z = SNLinear(condition_dim, 4 * 4 * 16 * ch)
        modules: list[nn.Module] = []
        for i, (up, c_in, c_out) in enumerate(layers):
            if i == attention_position:
                modules.append(SelfAttn(ch * c_in))
            modules.append(GenBlock(ch * c_in, ch * c_out, condition_dim, bool(up), n_stats, eps))
        self.layers = nn.ModuleList(modules)
        self.bn = BatchNorm(ch, n_stats, eps)
        self.conv_to_rgb = SNConv2d(ch, ch, 3)


# ---- the model ----------------------------------------------------------------------------
class BigGANDeep(nn.Module):
    """BigGAN-deep generator (pytorch-pretrained-BigGAN keys `embeddings.weight`,
    `generator.*`). `G(z, classes, truncation)` -> image [B, 3, R, R] in [-1, 1]."""

    def __init__(self, output_dim: int = 128, z_dim: int = 128, class_embed_dim: int = 128,
                 channel_width: int = 128, num_classes: int = 1000, layers: list | None = None,
                 attention_layer_position: int = 8, eps: float = 1e-4, n_stats: int = 51):
        super().__init__()
        layers = [list(l) for l in (layers or PUBLISHED_CONFIGS["biggan-deep-128"]["layers"])]
        for layer in layers:
            if len(layer) != 3:
                raise ValueError(f"each layer is [up_sample, in, out], got {layer}")
        for prev, nxt in zip(layers, layers[1:]):
            if prev[2] != nxt[1]:
                raise ValueError(f"layer channels do not chain: {prev} -> {nxt}")
        if layers[0][1] != 16 or layers[-1][2] != 1:
            raise ValueError("the layers must start at 16 x channel_width and end at 1 x channel_width")
        resolution = 4 * 2 ** sum(bool(up) for up, _, _ in layers)
        if resolution != output_dim:
            raise ValueError(f"the layers upsample 4 px to {resolution} px, not output_dim {output_dim}")
        if not 0 <= attention_layer_position <= len(layers):
            raise ValueError(f"attention_layer_position {attention_layer_position} is not a layer")
        self.config = {"output_dim": output_dim, "z_dim": z_dim, "class_embed_dim": class_embed_dim,
                       "channel_width": channel_width, "num_classes": num_classes, "layers": layers,
                       "attention_layer_position": attention_layer_position, "eps": eps,
                       "n_stats": n_stats}
        self.z_dim, self.num_classes, self.resolution = z_dim, num_classes, output_dim
        self.memory_format = torch.channels_last  # of the features: ~10% faster convs on the CPU
        self.embeddings = nn.Linear(num_classes, class_embed_dim, bias=False)
        self.generator = Generator(channel_width, z_dim + class_embed_dim, layers,
                                   attention_layer_position, n_stats, eps)
        # (name, output resolution, channels) after gen_z and after each generator.layers module
        res, ch = 4, channel_width
        self._features = [("seed 4x4", 4, 16 * ch)]
        self._conditions = [("seed 4x4", 4)]
        for module in self.generator.layers:
            if isinstance(module, GenBlock):
                out = res * 2 if module.up_sample else res
                name = f"block {len(self._conditions)} ({res}->{out})"
                self._conditions.append((name, out))
                res = out
                self._features.append((name, res, module.out_size))
            else:
                self._features.append((f"attention ({res}x{res})", res, self._features[-1][2]))

    @property
    def size(self) -> int:
        """The picture size (every generator in core.models has `.size`)."""
        return self.resolution

    # ---- points ---------------------------------------------------------------------------
    def condition_points(self) -> list[tuple[str, int]]:
        """(name, output resolution) per condition point: 0 = gen_z, k = the k-th GenBlock."""
        return list(self._conditions)

    def feature_points(self) -> list[tuple[str, int, int]]:
        """(name, resolution, channels) per feature point: 0 = the 4x4 seed, k = the output of
        generator.layers[k - 1] (attention included)."""
        return list(self._features)

    @torch.no_grad()
    def refold_spectral_norm(self) -> None:
        """Recompute every folded W / sigma (after editing weight_orig/u/v in place)."""
        for m in self.modules():
            if isinstance(m, _SpectralNormed):
                m.fold()

    # ---- forward --------------------------------------------------------------------------
    def _class_input(self, classes: torch.Tensor, batch: int, name: str) -> torch.Tensor:
        """A class vector [B, n], maps [B, n, h, w] or indices [B] -> float, batch-checked."""
        dtype = self.embeddings.weight.dtype
        if classes.dim() == 1 and not classes.is_floating_point():
            classes = F.one_hot(classes.long(), self.num_classes)
        if classes.dim() not in (2, 4) or classes.shape[1] != self.num_classes:
            raise ValueError(f"{name} must be [B, {self.num_classes}] or [B, {self.num_classes}, h, w], "
                             f"got {tuple(classes.shape)}")
        if classes.shape[0] != batch:
            if classes.shape[0] != 1:
                raise ValueError(f"{name} has batch {classes.shape[0]}, z has {batch}")
            classes = classes.expand(batch, *classes.shape[1:])
        return classes.to(device=self.embeddings.weight.device, dtype=dtype)

    def _condition(self, z: torch.Tensor, classes: torch.Tensor) -> _Condition:
        weight = self.embeddings.weight  # [E, num_classes]
        if classes.dim() == 2:
            return _Condition(z, vector=F.linear(classes, weight))
        if classes.requires_grad:  # every class has a gradient, present or not
            used = torch.arange(classes.shape[1], device=classes.device)
        else:  # only the classes present
            used = (classes.abs().amax(dim=(0, 2, 3)) > 0).nonzero().flatten()
        maps = classes.index_select(1, used)
        if len(used) < weight.shape[0]:
            return _Condition(z, maps=maps, basis=weight.index_select(1, used))
        return _Condition(z, maps=torch.einsum("bnhw,en->behw", maps, weight.index_select(1, used)))

    def _seed(self, cond: _Condition) -> torch.Tensor:
        """gen_z -> [B, 16 ch, 4, 4] (the port views NHWC and permutes)."""
        gen_z = self.generator.gen_z
        c = self.generator.seed_channels
        if not cond.spatial:
            out = gen_z(cond.vector)
            return out.view(-1, 4, 4, c).permute(0, 3, 1, 2).contiguous()
        zd = cond.z.shape[1]
        w = gen_z.weight
        emb = cond.embedding_at(4)  # [B, E, 4, 4]
        per_cell = torch.einsum("hwce,behw->bhwc", w[:, zd:].reshape(4, 4, c, -1), emb)
        out = per_cell + F.linear(cond.z, w[:, :zd], gen_z.bias).view(-1, 4, 4, c)
        return out.permute(0, 3, 1, 2).contiguous()

    # ---- core.models.generator.Generator ----------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.embeddings.weight.device

    def sample_latents(self, seeds: Sequence[int], truncation: float = 1.0) -> torch.Tensor:
        """The port's truncated normal per seed, scaled by `truncation`, on the model's device."""
        return torch.cat([truncated_noise(1, self.z_dim, truncation, int(s)) for s in seeds]
                         ).to(self.device)

    @torch.inference_mode()
    def render(self, latents: torch.Tensor, truncation: float = 1.0,
               classes: torch.Tensor | None = None) -> torch.Tensor:
        """`classes`: indices [B], vectors [B, num_classes] or maps (see `forward`)."""
        if classes is None:
            raise ValueError("BigGAN-deep is class-conditional: pass classes")
        return self(latents.to(self.device), classes, truncation).float().clamp(-1, 1)

    def forward(self, z: torch.Tensor, classes: torch.Tensor, truncation: float, *,
                scbn_points: Collection[int] | None = None, global_classes: torch.Tensor | None = None,
                feature_hook: FeatureHook | None = None) -> torch.Tensor:
        """z [B, z_dim] (already scaled by the truncation, see `truncated_noise`) and classes
        -> image [B, 3, R, R] in [-1, 1].

        `classes`: a class vector [B, num_classes] (one-hot or a mixture), class maps
        [B, num_classes, h, w] (per-pixel mixtures, any h, w), or class indices [B]; a batch
        of 1 is broadcast. `truncation` in (0, 1] picks the BN statistics (ValueError
        otherwise). `scbn_points`: the condition points (see `condition_points()`) that use
        `classes`, None = all; the others use `global_classes` (a class vector or indices),
        which is required when any point is left out and unused otherwise.
        `feature_hook(point, h)`: called at every feature point (see `feature_points()`); a
        tensor it returns (same shape) replaces h, None keeps h.
        """
        truncation = check_truncation(truncation)
        n_points = len(self._conditions)
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be [B, {self.z_dim}], got {tuple(z.shape)}")
        weight = self.embeddings.weight
        z = z.to(device=weight.device, dtype=weight.dtype)
        batch = z.shape[0]
        main = self._condition(z, self._class_input(classes, batch, "classes"))
        points = set(range(n_points)) if scbn_points is None else {int(p) for p in scbn_points}
        if not points <= set(range(n_points)):
            raise ValueError(f"scbn_points {sorted(points)} are not all condition points 0..{n_points - 1}")
        other = main
        if points != set(range(n_points)):
            if global_classes is None:
                raise ValueError("global_classes is required when scbn_points leaves out condition points")
            global_classes = self._class_input(global_classes, batch, "global_classes")
            if global_classes.dim() != 2:
                raise ValueError("global_classes must be a class vector [B, num_classes]")
            other = self._condition(z, global_classes)

        def hook(point: int, h: torch.Tensor) -> torch.Tensor:
            if feature_hook is None:
                return h
            out = feature_hook(point, h)
            if out is None:
                return h
            if out.shape != h.shape:
                raise ValueError(f"feature_hook changed the shape at point {point}: "
                                 f"{tuple(h.shape)} -> {tuple(out.shape)}")
            return out

        gen = self.generator
        seed = self._seed(main if 0 in points else other)
        h = hook(0, seed.contiguous(memory_format=self.memory_format))
        block = 0
        for i, module in enumerate(gen.layers):
            if isinstance(module, GenBlock):
                block += 1
                h = module(h, main if block in points else other, truncation)
            else:
                h = module(h)
            h = hook(i + 1, h)
        h = gen.bn(h, truncation)
        rgb = gen.conv_to_rgb  # only the 3 kept channels are computed
        h = F.conv2d(h, rgb.weight[:3], rgb.bias[:3], padding=rgb.padding)
        return torch.tanh(h).contiguous()


# ---- loading ------------------------------------------------------------------------------
def _state_dict_of(ckpt: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The plain state dict of a published file, or of our safetensors copy, which wraps it
    as {"state_dict": ...} (scripts/publish_weights.py)."""
    inner = ckpt.get("state_dict")
    if isinstance(inner, Mapping) and len(ckpt) == 1:
        ckpt = inner
    bad = [k for k, v in ckpt.items() if not torch.is_tensor(v)]
    if bad:
        raise UserError(f"not a BigGAN state dict: {', '.join(map(str, bad[:4]))} "
                        f"{'is not a tensor' if len(bad) == 1 else 'are not tensors'}")
    return dict(ckpt)


def build_biggan(config: Mapping[str, Any], weights_path: str | Path,
                 map_location: str | torch.device = "cpu") -> BigGANDeep:
    """A BigGANDeep for `config` (the contents of the published config.json) with the weights
    of `weights_path` (the published `pytorch_model.bin`, a plain state dict, read with
    weights_only=True; or our safetensors copy, `{"state_dict": ...}`), loaded with strict=True -> eval mode, no
    gradients. Unknown or invalid configuration keys raise a UserError."""

    path = Path(weights_path)
    known = set(PUBLISHED_CONFIGS["biggan-deep-128"])
    unknown = set(config) - known
    if unknown:
        raise UserError(f"{path.name}: unknown BigGAN-deep configuration keys {sorted(unknown)} "
                        f"(known: {', '.join(sorted(known))}).")
    # the port starts from the 128 px defaults and overrides them with config.json
    full = {**PUBLISHED_CONFIGS["biggan-deep-128"], **config}
    try:
        with torch.device("meta"):  # no random init: every tensor comes from the file
            model = BigGANDeep(**full)
    except (ValueError, TypeError) as e:
        raise UserError(f"{path.name}: unsupported BigGAN-deep configuration {dict(config)}: {e}") from e
    ckpt = read_checkpoint(path, map_location)
    if not isinstance(ckpt, Mapping):
        raise UserError(f"{path.name} is not a BigGAN state dict (found {type(ckpt).__name__}).")
    try:
        state = _state_dict_of(ckpt)
    except UserError as e:
        raise UserError(f"{path.name} is {e}. Use the published pytorch_model.bin.") from e
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        first = " ".join(str(e).strip().splitlines()[:3])
        raise UserError(f"{path.name} does not match the BigGAN-deep configuration "
                        f"{dict(config)}: {first}") from e
    return model.eval().requires_grad_(False)


def build_biggan_from_config(path: str | Path, map_location: str | torch.device = "cpu",
                             **config: Any) -> BigGANDeep:
    """The registry's loader: the entry's config is the published config.json's contents."""
    return build_biggan(config, path, map_location)


def load_biggan(config_path: str | Path, weights_path: str | Path,
                map_location: str | torch.device = "cpu") -> BigGANDeep:
    """Load a published pair: `config.json` + `pytorch_model.bin` (see `build_biggan`)."""
    config_path = Path(config_path)
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"Could not read the BigGAN config {shown_path(config_path)}: {e}") from e
    if not isinstance(config, dict):
        raise UserError(f"{config_path.name} is not a BigGAN config.json (not a JSON object).")
    return build_biggan(config, weights_path, map_location)
