"""Pure-PyTorch building blocks shared by the StyleGAN-family generators.

Parameter names and shapes follow rosinality's `stylegan2-pytorch` (also used by
StyleMapGAN and latent-composition), so the published state dicts load with strict=True.
Nothing here needs a compiled CUDA extension: the FIR filters of `upfirdn2d` become
depthwise (transposed) convolutions, and the weight scaling of the equalized layers is
computed once per weight tensor instead of at every call.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)


def make_kernel(taps: list[float]) -> torch.Tensor:
    """Separable 2-D FIR kernel from 1-D taps, normalised to sum to one."""
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[None, :] * k[:, None] if k.ndim == 1 else k
    return k / k.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, FIR-filter, decimate (NVIDIA's `upfirdn2d`).

    Same result as the reference op for square kernels and equal x/y factors, computed as
    one depthwise convolution: a transposed one with stride `up` when upsampling (no
    zero-filled intermediate), a strided one when downsampling.
    """
    c = x.shape[1]
    k = kernel.to(dtype=x.dtype, device=x.device)
    kh = k.shape[0]
    pad0, pad1 = pad
    if up > 1:
        padding = kh - 1 - pad0
        extra = pad1 - pad0 + up - 1  # rows the plain transposed conv leaves off the end
        if padding >= 0 and 0 <= extra < up:  # every StyleGAN upsampler takes this path
            weight = k[None, None].expand(c, 1, kh, kh)
            x = F.conv_transpose2d(x, weight, stride=up, padding=padding, output_padding=extra,
                                   groups=c)
            return x[:, :, ::down, ::down] if down > 1 else x
        b, _, h, w = x.shape  # general case: explicit zero insertion, then filter below
        x = torch.stack([x] + [torch.zeros_like(x)] * (up * up - 1), dim=-1)
        x = x.view(b, c, h, w, up, up).permute(0, 1, 2, 4, 3, 5).reshape(b, c, h * up, w * up)
    padding = 0
    if pad0 == pad1 and pad0 > 0:
        padding = pad0  # the convolution pads for free
    elif pad0 or pad1:
        x = F.pad(x, (pad0, pad1, pad0, pad1))
    weight = torch.flip(k, (0, 1))[None, None].expand(c, 1, kh, kh)
    return F.conv2d(x, weight, stride=down, padding=padding, groups=c)


class Blur(nn.Module):
    """FIR low-pass (the anti-aliasing filter around resampling convolutions)."""

    def __init__(self, taps: list[float], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        kernel = make_kernel(taps)
        if upsample_factor > 1:
            kernel = kernel * upsample_factor ** 2
        self.register_buffer("kernel", kernel)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x FIR upsampling (the skip-image path of StyleGAN2)."""

    def __init__(self, taps: list[float], factor: int = 2):
        super().__init__()
        self.register_buffer("kernel", make_kernel(taps) * factor ** 2)
        self.factor = factor
        p = len(taps) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, negative_slope: float = 0.2,
                     scale: float = SQRT2) -> torch.Tensor:
    """leaky_relu(x + bias) * scale with the bias broadcast over channel dim 1.

    Uses leaky_relu(a) * s == leaky_relu(a * s) for s > 0, so the scale rides on the
    (small) bias add instead of costing a pass of its own.
    """
    shape = (1, -1) + (1,) * (x.ndim - 2)
    out = torch.add(x, bias.view(shape).to(x.dtype)).mul_(scale)
    return F.leaky_relu_(out, negative_slope)


class FusedLeakyReLU(nn.Module):
    """Bias + leaky ReLU + sqrt(2) gain, with the parameter named `bias` as published."""

    def __init__(self, channels: int, negative_slope: float = 0.2, scale: float = SQRT2):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.negative_slope = negative_slope
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale)


class ScaledWeightCache:
    """Caches `weight * scale` (and derived tensors) until the weight changes.

    Keyed on the tensor's storage, version counter, dtype and device, so loading a state
    dict, `.to()`, `.half()` or an in-place edit all invalidate it. The cached tensors are
    built outside inference mode so they can also serve autograd passes (optimisers).
    Generator weights are treated as constants: no gradient flows back into them.
    """

    def __init__(self):
        self._key: tuple | None = None
        self._value: tuple[torch.Tensor, ...] = ()

    def get(self, weights: torch.Tensor | tuple[torch.Tensor, ...], build) -> tuple[torch.Tensor, ...]:
        """`build(*weights)` (detached), rebuilt when any of `weights` changes."""
        weights = (weights,) if torch.is_tensor(weights) else tuple(weights)
        # inference tensors (a model moved inside inference_mode) have no version counter
        key = tuple((w.data_ptr(), 0 if w.is_inference() else w._version, w.dtype, w.device)
                    for w in weights)
        if key != self._key:
            with torch.inference_mode(False), torch.no_grad():
                self._value = build(*(w.detach() for w in weights))
            self._key = key
        return self._value


# Nearest 2x upsampling then a 3x3 convolution (padding 1) == one stride-2 transposed
# convolution (padding 1) with a 4x4 kernel: output phase (p, q) sees a 2x2 window whose taps
# are sums of the 3x3 taps; row k of this matrix says which 3x3 rows feed 4x4 row k.
_UP_TAPS = torch.tensor([[0., 0., 1.], [0., 1., 1.], [1., 1., 0.], [1., 0., 0.]])
FUSED_UP_MIN_PIXELS = 64  # below 8x8 inputs the plain path is faster (measured on a CPU)


def nearest_up_conv_weight(weight: torch.Tensor) -> torch.Tensor:
    """A 3x3 conv weight [out, in, 3, 3] -> the 4x4 transposed-conv weight [in, out, 4, 4]
    (channels-last) doing "nearest 2x, then this conv" in one op: 16 instead of 36
    multiply-adds per output pixel and no upsampled copy."""
    taps = _UP_TAPS.to(weight.device, weight.dtype)
    up = torch.einsum("ki,lj,ocij->cokl", taps, taps, weight)
    return up.contiguous(memory_format=torch.channels_last)


def nearest_up_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                    cache: ScaledWeightCache) -> torch.Tensor:
    """conv3x3(nearest_2x(x)) with the fused transposed form from 8x8 inputs on; `cache`
    (one per layer) holds the fused weight until `weight` changes."""
    if x.shape[-2] * x.shape[-1] < FUSED_UP_MIN_PIXELS:
        return F.conv2d(F.interpolate(x, scale_factor=2.0, mode="nearest"), weight, bias, padding=1)
    fused = cache.get(weight, lambda w: (nearest_up_conv_weight(w),))[0]
    return F.conv_transpose2d(x, fused, bias, stride=2, padding=1)


def channel_table(channel_multiplier: int = 2, channel_max: int = 512) -> dict[int, int]:
    """Channels per resolution of StyleGAN2 config-e/f (StyleMapGAN's encoder goes down to
    1 px with the same table), capped at `channel_max` (tiny test models)."""
    cm = channel_multiplier
    base = {1: 512, 2: 512, 4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm,
            256: 64 * cm, 512: 32 * cm, 1024: 16 * cm}
    return {res: min(channel_max, c) for res, c in base.items()}


def truncate(x: torch.Tensor, center: torch.Tensor, psi: float) -> torch.Tensor:
    """The truncation trick: pull a latent (w, or a stylemap) towards `center` (same number
    of elements per sample, any shape); psi=1 leaves it as is."""
    center = center.reshape(1, *x.shape[1:]).to(x)
    return center + psi * (x - center)


class ConstantInput(nn.Module):
    """The learned constant a style-based synthesis starts from, broadcast over the batch."""

    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


def mapped_mean(mapping, dim: int, n: int, seed: int, device: torch.device,
                chunk: int = 1024) -> torch.Tensor:
    """Mean of `mapping(z)` over n seeded Gaussian z [1, ...] in float32: the truncation
    centre of a generator (mapped in chunks, so n can be large)."""
    z = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode(False), torch.no_grad():
        total = sum(mapping(c.to(device)).float().sum(0) for c in z.split(chunk))
    return (total / n)[None]


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate (weights stored unscaled, scaled at use)."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation
        self._cache = ScaledWeightCache()

    def _scaled(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        def build(w: torch.Tensor):
            b = None if self.bias is None else self.bias.detach() * self.lr_mul
            return w * self.scale, b
        return self._cache.get(self.weight, build)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self._scaled()
        if self.activation:
            return fused_leaky_relu(F.linear(x, weight), bias)
        return F.linear(x, weight, bias)


class PixelNorm(nn.Module):
    """Normalise each latent vector to unit root-mean-square (the mapping network's input)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)


PER_SAMPLE_DEVICES = {"cpu"}
"""Devices where batches run sample by sample with the style folded into the weight, at
layers whose activations are larger than the weight: on a 2-core CPU every pass over a
large activation costs about as much as a convolution. GPUs take the batched path."""


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution (optionally demodulated, optionally 2x upsampling).

    Batch of one (the interactive case), and high-resolution layers on the CPU: the style and
    demodulation scales are folded into the (smaller) weight, one plain convolution per
    sample; no pass over the activations. Larger batches on a GPU scale the input channels by the
    style, share one convolution, then scale the output channels: equivalent to per-sample
    weights without building them. The scaled weight and its norms are cached between calls.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False,
                 blur_kernel: tuple[float, ...] = (1, 3, 3, 1)):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)
        self.demodulate = demodulate
        self.upsample = upsample
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(list(blur_kernel), pad=((p + 1) // 2 + factor - 1, p // 2 + 1),
                             upsample_factor=factor)
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size ** 2)
        self._cache = ScaledWeightCache()

    def _weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(scaled weight in the layout its convolution takes, squared norms [out, in]).

        Upsampling convs keep the weight transposed to [in, out, k, k] for
        conv_transpose2d; both are stored channels-last, the layout oneDNN and cuDNN use,
        so modulating them per call needs no reordering copy.
        """
        def build(w: torch.Tensor):
            w = w[0] * self.scale
            norms = w.float().square().sum((2, 3)).to(w.dtype)
            if self.upsample:
                w = w.transpose(0, 1)
            return w.contiguous(memory_format=torch.channels_last), norms
        return self._cache.get(self.weight, build)

    def _conv(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            return self.blur(F.conv_transpose2d(x, weight, stride=2))
        return F.conv2d(x, weight, padding=self.kernel_size // 2)

    def forward(self, x: torch.Tensor, style: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        """`gain` multiplies the output for free (folded into the demodulation scale)."""
        weight, norms = self._weights()
        s = self.modulation(style).to(x.dtype)  # [B, in]
        if self.demodulate:
            d = torch.rsqrt(s.square() @ norms.t() + 1e-8) * gain  # [B, out]
        else:
            d = s.new_full((s.shape[0], self.out_channels), gain)
        per_sample_cheaper = self.out_channels * self.kernel_size ** 2 < 2 * x.shape[2] * x.shape[3]
        if x.shape[0] == 1 or (x.device.type in PER_SAMPLE_DEVICES and per_sample_cheaper):
            scale = d[:, :, None] * s[:, None, :]  # [B, out, in]
            scale = scale.transpose(1, 2) if self.upsample else scale
            outs = [self._conv(x[i:i + 1], weight * scale[i, :, :, None, None]) for i in range(x.shape[0])]
            return outs[0] if len(outs) == 1 else torch.cat(outs)
        return self._conv(x * s[:, :, None, None], weight) * d[:, :, None, None]


class EqualConv2d(nn.Module):
    """Conv2d with equalized learning rate (rosinality / StyleMapGAN layout: `weight`
    [out, in, k, k] stored unscaled, optional `bias`).

    The scaled weight is cached in the layout its convolution takes (channels-last, as
    oneDNN and cuDNN prefer); `bias * lr_mul` is a few hundred numbers, so it is computed
    per call and never goes stale.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True, bias_init: float = 0.0, lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(
            torch.randn(out_channels, in_channels, kernel_size, kernel_size).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_channels,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_channels * kernel_size ** 2)
        self.lr_mul = lr_mul
        self.stride, self.padding = stride, padding
        self._cache = ScaledWeightCache()

    def _layout(self, w: torch.Tensor) -> torch.Tensor:
        return w.contiguous(memory_format=torch.channels_last)

    def scaled_weight(self) -> torch.Tensor:
        return self._cache.get(self.weight, lambda w: (self._layout(w * self.scale),))[0]

    def scaled_bias(self) -> torch.Tensor | None:
        if self.bias is None or self.lr_mul == 1:
            return self.bias
        return self.bias * self.lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.scaled_weight(), self.scaled_bias(), self.stride, self.padding)


class ConvLayer(nn.Sequential):
    """rosinality's ConvLayer: [Blur] + EqualConv2d + [FusedLeakyReLU], keys `0.`, `1.`, `2.`.

    Downsampling blurs first, then convolves with stride 2. With an activation the bias
    lives in the activation (`FusedLeakyReLU.bias`) and is added by the convolution itself,
    so bias, leaky ReLU and gain cost two in-place passes.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 downsample: bool = False, blur_kernel: tuple[float, ...] = (1, 3, 3, 1),
                 bias: bool = True, activate: bool = True):
        if activate and not bias:
            raise ValueError("an activated ConvLayer needs its bias (no published layer lacks it)")
        layers: list[nn.Module] = []
        if downsample:
            p = len(blur_kernel) - 2 + kernel_size - 1
            layers.append(Blur(list(blur_kernel), pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channels, out_channels, kernel_size, stride, padding,
                                  bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channels))
        super().__init__(*layers)
        self.activate = activate

    def forward(self, x: torch.Tensor, gain: float = SQRT2) -> torch.Tensor:
        """`gain` is the activation's output gain (the published sqrt 2 unless a caller
        folds it into what follows)."""
        if self.activate:
            *pre, conv, act = self
        else:
            *pre, conv = self
        for m in pre:
            x = m(x)
        if not self.activate:
            return conv(x)
        out = F.conv2d(x, conv.scaled_weight(), act.bias.to(x.dtype), conv.stride, conv.padding)
        if gain != 1.0:
            out = out.mul_(gain)  # leaky(a) * g == leaky(a * g) for g > 0
        return F.leaky_relu_(out, act.negative_slope)


class ResBlock(nn.Module):
    """Residual 2x-downsampling block of StyleGAN2's discriminator (and StyleMapGAN's encoder):
    (conv2(conv1(x)) + skip(x)) / sqrt 2, with the 1/sqrt 2 folded into conv2's gain."""

    def __init__(self, in_channels: int, out_channels: int,
                 blur_kernel: tuple[float, ...] = (1, 3, 3, 1)):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3, blur_kernel=blur_kernel)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, blur_kernel=blur_kernel,
                              activate=False, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x), gain=1.0)
        skip = self.skip(x)
        if out.requires_grad:  # autograd keeps the activation's output: no in-place add
            return torch.add(out, skip, alpha=1 / SQRT2)
        return out.add_(skip, alpha=1 / SQRT2)
