"""StyleMapGAN (Kim et al., CVPR 2021) generator and encoder in the official layout.

Loads the published checkpoints of naver-ai/StyleMapGAN (`{"g_ema", "e_ema", "train_args"}`)
with strict=True and reproduces the authors' outputs (see tests/test_stylemapgan.py).

The latent is a **stylemap** [B, C, S, S] (C = `latent_channel_size`, S =
`latent_spatial_size`, 64 x 8 x 8 for the released 256 px models). The generator's
"stylemap resizer" (`decoder.convs_latent`) turns it into one stylemap per modulated layer,
the paper's **w+**: a list of `n_codes` tensors, `w_plus[0..1]` at S px, then two per
resolution up to the image size. Each modulated layer normalises its input and scales and
shifts it per pixel by 3x3 convolutions (`gamma`, `beta`) of its w+ stylemap; there is no
noise and no per-layer style vector.

Editing follows the authors' code paths:
- `blend(..., space="w_plus")` mixes the two resized stylemaps at every level (generate.py's
  local editing for CelebA-HQ), `space="w"` mixes the input stylemaps once (AFHQ);
  the mask is max-pooled to each level, so a stylemap cell counts as edited if any of its
  pixels is.
- `transplant` is the interactive demo's `mix_space="demo"`: per reference a mask and a
  pixel shift, average-pooled masks thresholded at 0.5, and a linear ramp over `steps`.
- `style_mix` is generate.py's coarse/fine style mixing, `interpolate` its w_interpolation
  and `transplant_boxes` its unaligned transplantation (boxes of cells copied in w).
- `move` is semantic_manipulation.py's edit along a direction, global or in given cells.
Images are returned as the authors return them: not clamped (the last layer is a leaky
ReLU, values can exceed [-1, 1]); clamp at the UI edge.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from core.checkpoints import read_checkpoint
from core.errors import UserError
from core.models.generator import seed_normal, unconditional
from core.ops import (SQRT2, Blur, ConstantInput, ConvLayer, EqualConv2d, EqualLinear,
                      FusedLeakyReLU, PixelNorm, ResBlock, ScaledWeightCache, channel_table,
                      mapped_mean, truncate)

BLUR_KERNEL = (1, 3, 3, 1)
NORMALIZE_MODES = ("LayerNorm", "InstanceNorm2d", "BatchNorm2d")
Box = tuple[tuple[int, int], tuple[int, int], int, int]  # ((to_row, to_col), (from_row, from_col), h, w)
REQUIRED_ARGS = ("size", "latent_channel_size", "latent_spatial_size", "mapping_layer_num",
                 "lr_mul", "channel_multiplier")


def _log2(n: int, what: str) -> int:
    k = int(n).bit_length() - 1
    if n < 1 or 2 ** k != n:
        raise ValueError(f"{what} must be a power of two, got {n}")
    return k


class EqualConvTranspose2d(EqualConv2d):
    """Stride-2 transposed convolution of the stylemap resizer and the residual skips.

    The published weight is [out, in, k, k] and is used transposed; the cache keeps it in
    the [in, out, k, k] layout conv_transpose2d reads. `gain` is folded into that weight.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, gain: float = 1.0):
        super().__init__(in_channels, out_channels, kernel_size, stride=2, bias=False)
        self.scale *= gain

    def _layout(self, w: torch.Tensor) -> torch.Tensor:
        return w.transpose(0, 1).contiguous(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(x, self.scaled_weight(), stride=2)


class UpConvLayer(nn.Sequential):
    """StyleMapGAN's upsampling ConvLayer: transposed conv, blur (keys `0.`, `1.`), then an
    optional bias + leaky ReLU (`2.bias`). Output 2H x 2W, times `gain` (the activation's
    sqrt 2 by default), folded into the weight and the bias."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 activate: bool = True, gain: float = SQRT2):
        p = (len(BLUR_KERNEL) - 2) - (kernel_size - 1)
        layers: list[nn.Module] = [
            EqualConvTranspose2d(in_channels, out_channels, kernel_size, gain=gain),
            Blur(list(BLUR_KERNEL), pad=((p + 1) // 2 + 1, p // 2 + 1), upsample_factor=2)]
        if activate:
            layers.append(FusedLeakyReLU(out_channels))
        super().__init__(*layers)
        self.activate, self.gain = activate, gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self[1](self[0](x))
        if not self.activate:
            return out
        out = out.add_((self[2].bias * self.gain).view(1, -1, 1, 1).to(out.dtype))
        return F.leaky_relu_(out, 0.2)


def _layer_norm(x: torch.Tensor) -> torch.Tensor:
    """LayerNorm over (C, H, W) per sample, no affine, eps 1e-5 (the authors'
    `nn.LayerNorm(input.shape[1:], elementwise_affine=False)`). A channels-last tensor is
    normalised in its memory order: same statistics, no layout copy."""
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        xp = x.permute(0, 2, 3, 1)
        return F.layer_norm(xp, xp.shape[1:]).permute(0, 3, 1, 2)
    return F.layer_norm(x, x.shape[1:])


class SpatialModulatedConv2d(nn.Module):
    """StyleMapGAN's spatially-variant modulation, then a convolution shared by the batch.

    out = conv(norm(x) * gamma(s) + beta(s), weight) with gamma, beta 3x3 equalized convs of
    the stylemap s (which has x's spatial size). There is no per-sample weight, so the
    authors' grouped convolution is one plain convolution; gamma and beta run as one
    convolution with their weights concatenated (cached). `gain` is folded into the weight,
    the bias passed to `forward` into the convolution (added after the blur when upsampling).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 normalize_mode: str | None, upsample: bool = False, gain: float = 1.0):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.upsample = upsample
        if upsample:
            p = (len(BLUR_KERNEL) - 2) - (kernel_size - 1)
            self.blur = Blur(list(BLUR_KERNEL), pad=((p + 1) // 2 + 1, p // 2 + 1), upsample_factor=2)
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.scale = gain / math.sqrt(in_channels * kernel_size ** 2)
        self.gain = gain
        if normalize_mode == "InstanceNorm2d":
            self.norm = nn.InstanceNorm2d(in_channels, affine=False)
        elif normalize_mode == "BatchNorm2d":
            self.norm = nn.BatchNorm2d(in_channels, affine=False)
        elif normalize_mode not in ("LayerNorm", None):
            raise ValueError(f"normalize_mode must be one of {NORMALIZE_MODES} or None, "
                             f"got {normalize_mode!r}")
        self.normalize_mode = normalize_mode
        self.gamma = EqualConv2d(style_dim, in_channels, 3, padding=1, bias_init=1.0)
        self.beta = EqualConv2d(style_dim, in_channels, 3, padding=1)
        self._cache = ScaledWeightCache()
        self._style_cache = ScaledWeightCache()

    def _weight(self) -> torch.Tensor:
        def build(w: torch.Tensor):
            w = w[0] * self.scale
            if self.upsample:
                w = w.transpose(0, 1)  # conv_transpose2d reads [in, out, k, k]
            return (w.contiguous(memory_format=torch.channels_last),)
        return self._cache.get(self.weight, build)[0]

    def _style_weight(self) -> torch.Tensor:
        def build(wg: torch.Tensor, wb: torch.Tensor):
            w = torch.cat([wg * self.gamma.scale, wb * self.beta.scale])
            return (w.contiguous(memory_format=torch.channels_last),)
        return self._style_cache.get((self.gamma.weight, self.beta.weight), build)[0]

    def modulate(self, x: torch.Tensor, stylemap: torch.Tensor) -> torch.Tensor:
        """norm(x) * gamma + beta: the input of the convolution."""
        if stylemap.shape[-2:] != x.shape[-2:]:
            raise ValueError(f"a stylemap of {tuple(stylemap.shape[-2:])} px cannot modulate "
                             f"features of {tuple(x.shape[-2:])} px")
        bias = torch.cat([self.gamma.bias, self.beta.bias]).to(x.dtype)
        gamma_beta = F.conv2d(stylemap.to(x.dtype), self._style_weight(), bias, padding=1)
        gamma, beta = gamma_beta[:, :self.in_channels], gamma_beta[:, self.in_channels:]
        if self.normalize_mode == "LayerNorm":
            x = _layer_norm(x)
        elif self.normalize_mode is not None:
            x = self.norm(x)
        return torch.addcmul(beta, x, gamma)

    def forward(self, x: torch.Tensor, stylemap: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        """gain * (conv(modulated x) + bias)."""
        x = self.modulate(x, stylemap)
        weight = self._weight()
        if bias is not None:
            bias = bias.to(x.dtype) * self.gain
        if not self.upsample:
            return F.conv2d(x, weight, bias, padding=self.kernel_size // 2)
        out = self.blur(F.conv_transpose2d(x, weight, stride=2))
        return out if bias is None else out.add_(bias.view(1, -1, 1, 1))


class StyledConv(nn.Module):
    """Modulated conv + bias + leaky ReLU; `gain` is the activation's output gain (sqrt 2 as
    published, 1 where the caller divides by sqrt 2 right after), folded into the weights."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 normalize_mode: str | None, upsample: bool = False, gain: float = SQRT2):
        super().__init__()
        self.conv = SpatialModulatedConv2d(in_channels, out_channels, kernel_size, style_dim,
                                           normalize_mode, upsample=upsample, gain=gain)
        self.activate = FusedLeakyReLU(out_channels)

    def forward(self, x: torch.Tensor, stylemap: torch.Tensor) -> torch.Tensor:
        # leaky(a) * g == leaky(a * g) for g > 0: the gain rides on the weights and the bias
        return F.leaky_relu_(self.conv(x, stylemap, self.activate.bias), 0.2)


class StyledResBlock(nn.Module):
    """Two styled convs (the first upsamples 2x) plus an upsampled 1x1 skip, over sqrt 2.
    The 1/sqrt 2 is folded into conv2's gain and the skip's weight."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int | None,
                 normalize_mode: str | None):
        super().__init__()
        self.conv1 = StyledConv(in_channels, out_channels, 3, style_dim or in_channels,
                                normalize_mode, upsample=True)
        self.conv2 = StyledConv(out_channels, out_channels, 3, style_dim or out_channels,
                                normalize_mode, gain=1.0)
        self.skip = UpConvLayer(in_channels, out_channels, 1, activate=False, gain=1 / SQRT2)

    def forward(self, x: torch.Tensor, code1: torch.Tensor, code2: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x, code1), code2)
        skip = self.skip(x)
        # autograd keeps the activation's output: add in place only when it does not
        return out + skip if out.requires_grad else out.add_(skip)


class Decoder(nn.Module):
    """Stylemap resizer (`convs_latent`) + synthesis (`input`, `conv1`, `convs`, `to_rgb`).

    The published decoder always has lr_mul 1 (only the mapping MLP uses `lr_mul`)."""

    def __init__(self, size: int, style_dim: int, latent_spatial_size: int, channel_multiplier: int,
                 normalize_mode: str | None, small_generator: bool, channel_max: int = 512):
        super().__init__()
        ch = channel_table(channel_multiplier, channel_max)
        s = latent_spatial_size
        self.size = size
        self.log_size = _log2(size, "size")
        start = _log2(s, "latent_spatial_size") + 1
        if not 4 <= s <= size:
            raise ValueError(f"latent_spatial_size must be in 4..{size}, got {s}")
        code_dim = style_dim if small_generator else ch[s]
        self.input = ConstantInput(ch[s], s)
        self.conv1 = StyledConv(ch[s], ch[s], 3, code_dim, normalize_mode)
        self.convs_latent = nn.ModuleList([ConvLayer(style_dim, code_dim, 3),
                                           ConvLayer(code_dim, code_dim, 3)])
        for i in range(start, self.log_size + 1):
            prev, nxt = (style_dim, style_dim) if small_generator else (ch[2 ** (i - 1)], ch[2 ** i])
            self.convs_latent.append(UpConvLayer(prev, nxt, 3))
            self.convs_latent.append(ConvLayer(nxt, nxt, 3))
        self.convs = nn.ModuleList()
        in_ch = ch[s]
        for i in range(start, self.log_size + 1):
            self.convs.append(StyledResBlock(in_ch, ch[2 ** i], style_dim if small_generator else None,
                                             normalize_mode))
            in_ch = ch[2 ** i]
        self.to_rgb = StyledConv(ch[size], 3, 1, style_dim if small_generator else ch[size],
                                 normalize_mode)
        self.n_codes = len(self.convs_latent)

    def resize(self, stylemap: torch.Tensor) -> list[torch.Tensor]:
        """stylemap [B, C, S, S] -> w+: one stylemap per modulated layer (the resizer chain)."""
        codes = []
        x = stylemap.contiguous(memory_format=torch.channels_last)
        for layer in self.convs_latent:
            x = layer(x)
            codes.append(x)
        return codes

    def synthesize(self, codes: Sequence[torch.Tensor]) -> torch.Tensor:
        """w+ (n_codes stylemaps, same batch) -> image [B, 3, size, size], not clamped."""
        if len(codes) != self.n_codes:
            raise ValueError(f"w+ must hold {self.n_codes} stylemaps, got {len(codes)}")
        x = self.input(codes[0].shape[0]).to(codes[0].dtype)
        x = self.conv1(x.contiguous(memory_format=torch.channels_last), codes[0])
        for i, block in enumerate(self.convs):
            x = block(x, codes[2 * i + 1], codes[2 * i + 2])
        return self.to_rgb(x, codes[-1]).contiguous()


class StyleMapGenerator(nn.Module):
    """Mapping network (`mapping_z`: PixelNorm + `mapping_layer_num` activated EqualLinears,
    the last one widening to C*S*S) + `decoder`. Deterministic: no noise inputs exist."""

    def __init__(self, size: int, mapping_layer_num: int = 8, latent_channel_size: int = 64,
                 latent_spatial_size: int = 8, lr_mul: float = 0.01, channel_multiplier: int = 2,
                 normalize_mode: str | None = "LayerNorm", small_generator: bool = False,
                 channel_max: int = 512):
        super().__init__()
        self.size = size
        self.latent_channel_size, self.latent_spatial_size = latent_channel_size, latent_spatial_size
        c, s = latent_channel_size, latent_spatial_size
        self.mapping_z = nn.Sequential(PixelNorm(), *[
            EqualLinear(c, c if i < mapping_layer_num - 1 else c * s * s, lr_mul=lr_mul, activation=True)
            for i in range(mapping_layer_num)])
        self.decoder = Decoder(size, c, s, channel_multiplier, normalize_mode, small_generator,
                               channel_max)
        self._mean: dict[tuple[int, int], torch.Tensor] = {}

    @property
    def n_codes(self) -> int:
        return self.decoder.n_codes

    @property
    def device(self) -> torch.device:
        return self.decoder.input.input.device

    @property
    def dtype(self) -> torch.dtype:
        return self.decoder.input.input.dtype

    # ---- latents --------------------------------------------------------------------------
    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, C] -> stylemap [B, C, S, S] (the flat mapping output, channel-major)."""
        s = self.latent_spatial_size
        return self.mapping_z(z.to(self.dtype)).reshape(z.shape[0], -1, s, s)

    def mean_stylemap(self, n: int = 5000, seed: int = 0) -> torch.Tensor:
        """Mean of n mapped samples [1, C, S, S] (cached): the truncation centre (the
        authors average 5000 samples)."""
        key = (n, seed)
        if key not in self._mean or self._mean[key].device != self.device:
            self._mean[key] = mapped_mean(self.mapping, self.latent_channel_size, n, seed, self.device)
        return self._mean[key]

    def w_plus(self, stylemap: torch.Tensor) -> list[torch.Tensor]:
        """stylemap -> the n_codes resized stylemaps the modulated layers use."""
        self._check_stylemap(stylemap)
        return self.decoder.resize(stylemap.to(self.dtype))

    def _check_stylemap(self, stylemap: torch.Tensor) -> None:
        c, s = self.latent_channel_size, self.latent_spatial_size
        if stylemap.ndim != 4 or tuple(stylemap.shape[1:]) != (c, s, s):
            raise ValueError(f"a stylemap must be [B, {c}, {s}, {s}], got {tuple(stylemap.shape)}")

    # ---- images ---------------------------------------------------------------------------
    def synthesis(self, stylemap: torch.Tensor) -> torch.Tensor:
        """stylemap [B, C, S, S] -> image [B, 3, size, size] (not clamped)."""
        return self.decoder.synthesize(self.w_plus(stylemap))

    def forward(self, z: torch.Tensor, truncation: float = 1.0,
                mean: torch.Tensor | None = None) -> torch.Tensor:
        """z -> image, with truncation around `mean` (default `mean_stylemap()`)."""
        stylemap = self.mapping(z)
        if truncation != 1.0:
            stylemap = truncate(stylemap, self.mean_stylemap() if mean is None else mean, truncation)
        return self.synthesis(stylemap)

    def _pair_w_plus(self, a: torch.Tensor, b: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Both resizer chains in one batch (each level mixes the two unmixed chains)."""
        batch = max(a.shape[0], b.shape[0])
        a, b = a.expand(batch, -1, -1, -1), b.expand(batch, -1, -1, -1)
        codes = self.w_plus(torch.cat([a, b]))
        return [c[:batch] for c in codes], [c[batch:] for c in codes]

    def level_mask(self, mask: torch.Tensor, res: int) -> torch.Tensor:
        """Which `res` x `res` stylemap cells a {0, 1} mask takes for blending (the authors'
        rule: as +-1, max-pooled to `res`, "> -1"; any masked pixel claims its cell)."""
        signed = mask * 2 - 1
        ratio = self.size // res
        return (F.max_pool2d(signed, ratio) if ratio > 1 else signed) > -1

    def _check_mask(self, mask: torch.Tensor) -> torch.Tensor:
        if mask.ndim != 4 or mask.shape[1] != 1 or tuple(mask.shape[-2:]) != (self.size, self.size):
            raise ValueError(f"a mask must be [B, 1, {self.size}, {self.size}], got {tuple(mask.shape)}")
        return mask.to(device=self.device, dtype=self.dtype)

    def blend(self, original: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor,
              space: Literal["w_plus", "w"] = "w_plus") -> torch.Tensor:
        """Local editing: the reference where mask == 1, the original elsewhere -> image.

        mask [B or 1, 1, size, size] in {0, 1} (the authors' files use +1 / -1). "w_plus"
        mixes every resized stylemap (a cell is the reference's if any pixel under it is
        masked); "w" mixes the input stylemaps once and resizes the result.
        """
        self._check_stylemap(original)
        self._check_stylemap(reference)
        mask = self._check_mask(mask)
        if space == "w":
            m = self.level_mask(mask, self.latent_spatial_size)
            return self.synthesis(torch.where(m, reference.to(self.dtype), original.to(self.dtype)))
        if space != "w_plus":
            raise ValueError(f"space must be 'w_plus' or 'w', got {space!r}")
        codes_o, codes_r = self._pair_w_plus(original, reference)
        mixed = [torch.where(self.level_mask(mask, o.shape[-1]), r, o) for o, r in zip(codes_o, codes_r)]
        return self.decoder.synthesize(mixed)

    def style_mix(self, first: torch.Tensor, second: torch.Tensor,
                  kind: Literal["coarse", "fine"]) -> torch.Tensor:
        """The authors' style mixing. "coarse": the two lowest-resolution resized stylemaps
        from `first`, all others from `second`; "fine": the two lowest from `second`, all
        others from `first`."""
        if kind not in ("coarse", "fine"):
            raise ValueError(f"kind must be 'coarse' or 'fine', got {kind!r}")
        codes1, codes2 = self._pair_w_plus(first, second)
        mixed = codes1[:2] + codes2[2:] if kind == "coarse" else codes2[:2] + codes1[2:]
        return self.decoder.synthesize(mixed)

    def interpolate(self, first: torch.Tensor, second: torch.Tensor, weights: Sequence[float],
                    chunk: int | None = None) -> torch.Tensor:
        """generate.py's `w_interpolation`: w = first * lambda + second * (1 - lambda) on the
        input stylemaps (w space), one image per lambda in `weights` -> [len, 3, size, size].
        Rendered `chunk` images per pass (default: all)."""
        self._check_stylemap(first)
        self._check_stylemap(second)
        if first.shape[0] != 1 or second.shape[0] != 1:
            raise ValueError("interpolate takes one stylemap at each end")
        lam = torch.tensor(list(weights), device=self.device, dtype=self.dtype).view(-1, 1, 1, 1)
        if lam.numel() == 0:
            raise ValueError("need at least one interpolation weight")
        a, b = first.to(self.dtype), second.to(self.dtype)
        return torch.cat([self.synthesis(a * t + b * (1 - t)) for t in lam.split(chunk or len(lam))])

    def move(self, stylemap: torch.Tensor, direction: torch.Tensor, strengths: Sequence[float],
             cells: torch.Tensor | None = None, chunk: int | None = None) -> torch.Tensor:
        """semantic_manipulation.py's edit: stylemap + d * direction for each d in `strengths`
        -> images [len, 3, size, size]. `cells` [S, S] bool: the direction is zeroed outside
        them (their local edit; no renormalisation). Rendered `chunk` images per pass."""
        self._check_stylemap(stylemap)
        self._check_stylemap(direction)
        if stylemap.shape[0] != 1 or direction.shape[0] != 1:
            raise ValueError("move takes one stylemap and one direction")
        d = direction.to(self.device, self.dtype)
        if cells is not None:
            s = self.latent_spatial_size
            if tuple(cells.shape) != (s, s):
                raise ValueError(f"cells must be [{s}, {s}], got {tuple(cells.shape)}")
            d = d * cells.to(self.device, self.dtype)
        k = torch.tensor(list(strengths), device=self.device, dtype=self.dtype).view(-1, 1, 1, 1)
        w = stylemap.to(self.dtype)
        return torch.cat([self.synthesis(w + t * d) for t in k.split(chunk or len(k))])

    def check_boxes(self, boxes: Sequence[Box]) -> None:
        """Boxes ((to_row, to_col), (from_row, from_col), height, width) in stylemap cells must
        lie inside the S x S grid at both ends (generate.py's slicing would silently clip one
        end and then fail or copy a different shape)."""
        s = self.latent_spatial_size
        for k, ((ty, tx), (fy, fx), h, w) in enumerate(boxes, 1):
            if h < 1 or w < 1:
                raise ValueError(f"box {k}: height and width must be at least 1 cell, got {h} x {w}")
            for what, y, x in (("lands", ty, tx), ("is taken", fy, fx)):
                if min(y, x) < 0 or y + h > s or x + w > s:
                    raise ValueError(f"box {k} {what} at row {y}, column {x} with {h} x {w} cells: "
                                     f"outside the {s} x {s} stylemap")

    def transplant_boxes(self, original: torch.Tensor, reference: torch.Tensor,
                         boxes: Sequence[Box]) -> torch.Tensor:
        """generate.py's `transplantation` (unaligned transplantation in w, paper Sec. 4.6,
        Fig. 8) -> image [1, 3, size, size]. Per box ((to_row, to_col), (from_row, from_col),
        height, width) in stylemap cells, the reference's cells replace the original's in the
        input stylemap, boxes in order (a later box overwrites an earlier one where they
        overlap; every box copies from the unchanged reference); then the usual resizer and
        synthesis. The authors hard-code an 8 x 8 grid; here it is the model's."""
        self._check_stylemap(original)
        self._check_stylemap(reference)
        if original.shape[0] != 1 or reference.shape[0] != 1:
            raise ValueError("transplant_boxes takes one original and one reference stylemap")
        self.check_boxes(boxes)
        out = original.to(self.dtype).clone()
        ref = reference.to(self.dtype)
        for (ty, tx), (fy, fx), h, w in boxes:
            out[..., ty:ty + h, tx:tx + w] = ref[..., fy:fy + h, fx:fx + w]
        return self.synthesis(out)

    def landing_cells(self, masks: torch.Tensor, shifts: Sequence[tuple[float, float]],
                      res: int) -> torch.Tensor:
        """Where each reference's region lands at a `res` x `res` level -> bool [N, res, res]:
        the demo's rule (mask average-pooled, > 0.5, moved by whole cells, what leaves the
        map dropped)."""
        ratio = self.size // res
        pooled = F.avg_pool2d(masks, ratio) if ratio > 1 else masks
        return torch.stack([_translate(pooled[i, 0], _cell_shift(dy, ratio), _cell_shift(dx, ratio)) > 0.5
                            for i, (dx, dy) in enumerate(shifts)])

    def transplant(self, original: torch.Tensor, references: torch.Tensor, masks: torch.Tensor,
                   shifts: Sequence[tuple[float, float]], steps: int,
                   chunk: int | None = None) -> torch.Tensor:
        """The interactive demo's transplant (`mix_space="demo"`) -> images [steps, 3, size, size].

        original [1, C, S, S]; references [N, C, S, S]; masks [N, 1, size, size] in {0, 1}, the
        region of each reference to take; shifts: per reference (dx, dy) in pixels, where that
        region lands in the original. At every resized level the masks are average-pooled
        and thresholded at 0.5, the shift is int(pixels / pooling ratio) (towards zero) and
        what would leave the map is dropped. Step t of `steps` moves the masked cells
        t / (steps - 1) of the way from the original to the reference, references applied in
        order: image 0 is the original's reconstruction, the last the full transplant.
        The resizer runs once; the frames are rendered `chunk` at a time (default: all at
        once), which bounds the memory the authors' demo needs for 16 frames.
        """
        self._check_stylemap(original)
        self._check_stylemap(references)
        n = references.shape[0]
        if original.shape[0] != 1:
            raise ValueError(f"transplant takes one original stylemap, got {original.shape[0]}")
        if masks.ndim != 4 or masks.shape[:2] != (n, 1) or tuple(masks.shape[-2:]) != (self.size, self.size):
            raise ValueError(f"masks must be [{n}, 1, {self.size}, {self.size}] (one per reference), "
                             f"got {tuple(masks.shape)}")
        if len(shifts) != n:
            raise ValueError(f"need one (dx, dy) shift per reference: {n}, got {len(shifts)}")
        if steps < 2:
            raise ValueError(f"steps must be at least 2 (the ramp runs from 0 to 1), got {steps}")
        masks = masks.to(device=self.device, dtype=self.dtype)
        codes = self.w_plus(torch.cat([original, references]))
        # per level: (destination cells, shifted reference code) for each reference
        moves = []
        for code in codes:
            res = code.shape[-1]
            dest = self.landing_cells(masks, shifts, res)
            level = []
            for i, (dx, dy) in enumerate(shifts):
                py, px = _cell_shift(dy, self.size // res), _cell_shift(dx, self.size // res)
                level.append((dest[i], torch.roll(code[1 + i], shifts=(py, px), dims=(-2, -1))))
            moves.append(level)
        ramp = torch.tensor([t / (steps - 1) for t in range(steps)], device=self.device,
                            dtype=self.dtype).view(-1, 1, 1, 1)
        images = []
        for t in ramp.split(chunk or steps):
            mixed = []
            for code, level in zip(codes, moves):
                out = code[:1].expand(t.shape[0], -1, -1, -1)
                for dest, moved in level:
                    out = torch.where(dest, out + t * (moved - out), out)
                mixed.append(out.contiguous(memory_format=torch.channels_last))
            images.append(self.decoder.synthesize(mixed))
        return torch.cat(images)


def _cell_shift(pixels: float, ratio: int) -> int:
    """A pixel shift in cells of a level `ratio` pixels wide (the demo's int(), towards 0)."""
    return int(pixels / ratio)


def _translate(m: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Shift a 2-D map by (dy, dx) cells, filling with zeros (the demo's roll + clear)."""
    out = torch.roll(m, shifts=(dy, dx), dims=(0, 1))
    if dy >= 0:
        out[:dy] = 0
    else:
        out[dy:] = 0
    if dx >= 0:
        out[:, :dx] = 0
    else:
        out[:, dx:] = 0
    return out


class StyleMapEncoder(nn.Module):
    """Image -> stylemap: StyleGAN2-discriminator ResBlocks down to the stylemap size, then a
    3x3 activated conv to `latent_channel_size` channels (keys from_rgb, convs, final_conv)."""

    def __init__(self, size: int, latent_channel_size: int = 64, latent_spatial_size: int = 8,
                 channel_multiplier: int = 2, channel_max: int = 512):
        super().__init__()
        ch = channel_table(channel_multiplier, channel_max)
        self.size = size
        log_size = _log2(size, "size")
        end = _log2(latent_spatial_size, "latent_spatial_size")
        self.from_rgb = ConvLayer(3, ch[size], 1)
        self.convs = nn.ModuleList()
        in_ch = ch[size]
        for i in range(log_size, end, -1):
            self.convs.append(ResBlock(in_ch, ch[2 ** (i - 1)], BLUR_KERNEL))
            in_ch = ch[2 ** (i - 1)]
        self.final_conv = ConvLayer(in_ch, latent_channel_size, 3)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image [B, 3, size, size] in [-1, 1] -> stylemap [B, C, S, S]."""
        if image.ndim != 4 or tuple(image.shape[1:]) != (3, self.size, self.size):
            raise ValueError(f"the encoder takes [B, 3, {self.size}, {self.size}] images, "
                             f"got {tuple(image.shape)}")
        dtype = self.from_rgb[0].weight.dtype
        x = self.from_rgb(image.to(dtype).contiguous(memory_format=torch.channels_last))
        for block in self.convs:
            x = block(x)
        return self.final_conv(x).contiguous()


def stylemapgan_config(train_args: Any) -> dict[str, Any]:
    """The constructor arguments from a checkpoint's `train_args` (an argparse.Namespace as
    published, or a dict). Missing optional fields take train.py's defaults."""
    args = vars(train_args) if isinstance(train_args, argparse.Namespace) else train_args
    if not isinstance(args, Mapping):
        raise UserError(f"train_args must be an argparse.Namespace or a dict, got {type(train_args).__name__}")
    missing = [k for k in REQUIRED_ARGS if k not in args]
    if missing:
        raise UserError(f"The checkpoint's train_args lack {', '.join(missing)}: cannot build the model.")
    config = {k: args[k] for k in REQUIRED_ARGS}
    config["normalize_mode"] = args.get("normalize_mode", "LayerNorm")
    config["small_generator"] = bool(args.get("small_generator", False))
    return config


def build_stylemapgan(config: Mapping[str, Any], channel_max: int = 512
                      ) -> tuple[StyleMapGenerator, StyleMapEncoder]:
    """(G, E) for a `stylemapgan_config` dict (extra keys are ignored)."""
    G = StyleMapGenerator(config["size"], config["mapping_layer_num"], config["latent_channel_size"],
                          config["latent_spatial_size"], config["lr_mul"], config["channel_multiplier"],
                          config.get("normalize_mode", "LayerNorm"),
                          bool(config.get("small_generator", False)), channel_max)
    E = StyleMapEncoder(config["size"], config["latent_channel_size"], config["latent_spatial_size"],
                        config["channel_multiplier"], channel_max)
    G.config = dict(config)
    return G, E


def _channel_cap(config: Mapping[str, Any], g_state: Mapping[str, torch.Tensor]) -> int:
    """512 for published checkpoints; a smaller cap shows in the input constant's channels
    (tiny test models)."""
    const = g_state.get("decoder.input.input")
    table = channel_table(config["channel_multiplier"])
    s = config["latent_spatial_size"]
    if const is not None and s in table and const.shape[1] < table[s]:
        return int(const.shape[1])
    return 512


def load_stylemapgan(path: str | Path, map_location: str | torch.device = "cpu"
                     ) -> tuple[StyleMapGenerator, StyleMapEncoder]:
    """Load a published StyleMapGAN checkpoint -> (G, E), eval mode, no gradients.

    The file is read with weights_only=True (argparse.Namespace allowed); the configuration
    comes from its `train_args`, never from the file name (the authors name every 256 px
    file `*_256_8x8.pt`). `g_ema` and `e_ema` load with strict=True.
    """

    path = Path(path)
    ckpt = read_checkpoint(path, map_location)
    if not isinstance(ckpt, dict):
        raise UserError(f"{path.name} is not a StyleMapGAN checkpoint (expected a dict with "
                        f"g_ema, e_ema and train_args).")
    missing = [k for k in ("g_ema", "e_ema", "train_args") if ckpt.get(k) is None]
    if missing:
        what = {"g_ema": "the generator", "e_ema": "the encoder", "train_args": "the configuration"}
        raise UserError(
            f"{path.name} is not a complete StyleMapGAN checkpoint: it has no "
            + ", ".join(f"'{k}' ({what[k]})" for k in missing)
            + f" (keys: {', '.join(map(str, list(ckpt)[:8]))}). Use the authors' full checkpoint, "
            "which holds g_ema, e_ema and train_args.")
    config = stylemapgan_config(ckpt["train_args"])
    try:
        G, E = build_stylemapgan(config, _channel_cap(config, ckpt["g_ema"]))
    except ValueError as e:
        raise UserError(f"{path.name}: unsupported StyleMapGAN configuration {config}: {e}") from e
    for name, module in (("g_ema", G), ("e_ema", E)):
        try:
            module.load_state_dict(ckpt[name], strict=True)
        except RuntimeError as e:
            first = " ".join(str(e).strip().splitlines()[:3])
            raise UserError(f"{path.name}: '{name}' does not match the configuration in its "
                            f"train_args {config}: {first}") from e
    return G.eval().requires_grad_(False), E.eval().requires_grad_(False)


class StyleMapGAN(nn.Module):
    """A checkpoint's generator and encoder as one module: what the model cache holds (one
    entry, one `.to(device, dtype)`) and what the StyleMap tab's engine takes."""

    def __init__(self, G: StyleMapGenerator, E: StyleMapEncoder):
        super().__init__()
        self.G, self.E = G, E

    @property
    def size(self) -> int:
        return self.G.size

    def check_config(self, registered: Mapping[str, Any], name: str) -> None:
        """A registry entry may state the configuration it expects; the checkpoint's own
        `train_args` decide, and a disagreement is reported rather than ignored."""
        wrong = {k: (v, self.G.config.get(k)) for k, v in registered.items()
                 if k in self.G.config and self.G.config[k] != v}
        if wrong:
            detail = ", ".join(f"{k}: registered {a!r}, file says {b!r}" for k, (a, b) in wrong.items())
            raise UserError(f"{name} is not the StyleMapGAN model its registry entry describes ({detail}).")

    # ---- core.models.generator.Generator ----------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.G.device

    def sample_latents(self, seeds: Sequence[int], truncation: float = 1.0) -> torch.Tensor:
        """z per seed (`seed_normal`, latent_channel_size wide), on the model's device."""
        return seed_normal(seeds, self.G.latent_channel_size).to(self.device)

    @torch.inference_mode()
    def render(self, latents: torch.Tensor, truncation: float = 1.0,
               classes: torch.Tensor | None = None) -> torch.Tensor:
        unconditional("StyleMapGAN", classes)
        return self.G(latents.to(self.device), truncation=truncation).float().clamp(-1, 1)


def load_stylemapgan_model(path: str | Path, size: int | None = None,
                           latent_spatial_size: int | None = None,
                           map_location: str | torch.device = "cpu") -> StyleMapGAN:
    """The registry's loader: generator + encoder of one checkpoint as a `StyleMapGAN`. The
    registry may state `size` and the stylemap grid `latent_spatial_size` (so the tab can
    label "8x8" or "16x16" before anything is loaded); a value the checkpoint's train_args
    contradict is a UserError."""
    model = StyleMapGAN(*load_stylemapgan(path, map_location))
    stated = {k: v for k, v in (("size", size), ("latent_spatial_size", latent_spatial_size))
              if v is not None}
    model.check_config(stated, Path(path).name)
    return model
