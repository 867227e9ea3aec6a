"""ProGAN generator in the GAN Dissection layout: the ProGAN side of latent composition.

Latent composition (Chai et al., ICLR 2021) pairs its ProGAN regressors (`regressor.py`,
`family="proggan"`) with Karras' ProGAN generators as converted by GAN Dissection
(`http://gandissect.csail.mit.edu/models/proggan_{churchoutdoor-7e701dd5,livingroom-5ef336dd,
celebhq-620d161c}.pth`, plain state dicts). This module loads those files with strict=True
and reproduces the authors' forward pass (`utils/proggan.py`; see tests/test_proggan.py).

Layout
------
Top-level blocks `layer1 .. layer{2n}` then `output_{R}x{R}`; every block holds a bias-free
`conv` and a `wscale` whose only parameter is the bias `b` (keys `layer{k}.conv.weight`,
`layer{k}.wscale.b`, `output_{R}x{R}.conv.weight`, `output_{R}x{R}.wscale.b`; nothing else is
stored). `sizes = [z_dim, c_4, c_8, ..., c_R]` lists the channels per resolution:

- `layer1`: PixelNorm on z [B, z_dim, 1, 1], a 4x4 conv with padding 3 (the dense layer:
  1x1 -> 4x4), WScale, LeakyReLU 0.2. `layer2`: PixelNorm, 3x3 conv, WScale, LeakyReLU.
- Then per resolution: `layer{2i+1}` PixelNorm, nearest 2x upsampling, 3x3 conv, WScale,
  LeakyReLU; `layer{2i+2}` the same without upsampling.
- `output_{R}x{R}`: PixelNorm, 1x1 conv to RGB, WScale (gain 1), Hardtanh -> [-1, 1].

WScale is `x * gain / sqrt(in_channels) + b` with gain `sqrt(2) / kernel_size` (1 for the
output), i.e. He's sqrt(2 / fan_in) with fan_in = in * k * k; the scale is computed, not
stored. The image is used as is (no rescaling). z goes through PixelNorm first, so its scale
does not matter (up to the 1e-8 in the norm): a regressor's unnormalised z can go straight in.
R = 4 * 2 ** (len(sizes) - 2): 256 px for the LSUN models (sizes [512, 512, 512, 512, 256, 128,
64, 32]), 1024 px for CelebA-HQ ([512, 512, 512, 512, 512, 256, 128, 64, 32, 16]).

Speed (same numbers up to float rounding): the WScale multiplier is folded into a cached
copy of each conv weight (`ScaledWeightCache`, rebuilt when the stored weight changes; the
stored keys are untouched) and the bias into the convolution. `layer1` on its 1x1 input is a
matrix product. An upsampling block's "nearest 2x, then 3x3 conv" is one stride-2 transposed
convolution with a 4x4 kernel (each output phase sees a 2x2 sum of the 3x3 taps): 16 instead of
36 multiply-adds per output pixel and no upsampled copy (from 8x8 inputs on; at 4x4 the larger
kernel costs more than it saves). The output block's PixelNorm is a per-pixel factor, so it
is applied to the 3 RGB channels after the 1x1 conv. Activations are channels-last (oneDNN's
fast layout).
"""
from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.checkpoints import read_checkpoint
from core.errors import UserError
from core.models.generator import unconditional
from core.ops import ScaledWeightCache, nearest_up_conv

SIZES = {
    8: [512, 512, 512],
    16: [512, 512, 512, 512],
    32: [512, 512, 512, 512, 256],
    64: [512, 512, 512, 512, 256, 128],
    128: [512, 512, 512, 512, 256, 128, 64],
    256: [512, 512, 512, 512, 256, 128, 64, 32],
    1024: [512, 512, 512, 512, 512, 256, 128, 64, 32, 16],
}
"""The authors' default channel tables per resolution (the published files are 256 and 1024)."""
EPS = 1e-8
SLOPE = 0.2


class ProGANConfigError(UserError, ValueError):
    """A requested configuration that the weights file contradicts (a ValueError for callers
    of `load_proggan`, a UserError for the UI)."""


def resolution_of(sizes: list[int]) -> int:
    """Output size of a generator with these channel sizes: 4 * 2 ** (len(sizes) - 2)."""
    return 4 * 2 ** (len(sizes) - 2)


def random_z(batch: int, seed: int, z_dim: int = 512) -> torch.Tensor:
    """The authors' z for a seed: `RandomState(seed).standard_normal(batch * z_dim)` as
    [batch, z_dim, 1, 1] float32 (`zdataset.z_sample_for_model`): sample i of a seed does not
    depend on the batch size."""
    z = np.random.RandomState(seed).standard_normal(batch * z_dim).reshape(batch, z_dim)
    return torch.from_numpy(z).float()[:, :, None, None]


def pixel_norm_factor(x: torch.Tensor) -> torch.Tensor:
    """1 / sqrt(mean over channels of x^2 + 1e-8), [B, 1, H, W]."""
    return torch.rsqrt(x.square().mean(dim=1, keepdim=True).add_(EPS))


class PixelNormLayer(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * pixel_norm_factor(x)


class WScaleLayer(nn.Module):
    """`x * scale + b`, scale = gain / sqrt(fan_in) (computed, only `b` is stored)."""

    def __init__(self, size: int, fan_in: int, gain: float = math.sqrt(2)):
        super().__init__()
        self.scale = gain / math.sqrt(fan_in)
        self.b = nn.Parameter(torch.zeros(size))
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.b.view(1, -1, 1, 1).to(x.dtype)


class _Block(nn.Module):
    """PixelNorm -> [nearest 2x] -> bias-free conv -> WScale -> LeakyReLU 0.2 (or Hardtanh).

    The folded weights (`conv.weight * wscale.scale`, in the layout the fast path uses) are
    cached, each form built on first use and rebuilt when the weight or bias changes.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int,
                 gain: float):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.padding = kernel_size, padding
        self.norm = PixelNormLayer()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, 1, padding, bias=False)
        self.wscale = WScaleLayer(out_channels, in_channels, gain=gain)
        self._cache = ScaledWeightCache()

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight * scale, channels-last; bias)."""
        return self._cache.get((self.conv.weight, self.wscale.b), lambda w, b: (
            (w * self.wscale.scale).contiguous(memory_format=torch.channels_last), b))


class NormConvBlock(_Block):
    """PixelNorm, conv (3x3 pad 1, or layer1's 4x4 pad 3 on the 1x1 z), WScale, LeakyReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int):
        super().__init__(in_channels, out_channels, kernel_size, padding,
                         gain=math.sqrt(2) / kernel_size)
        self._dense_cache = ScaledWeightCache()

    def dense(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The conv on a 1x1 input padded by k-1 as a matrix product: output pixel (y, x)
        sees tap (k-1-y, k-1-x) only. (weight [out*k*k, in], bias [out*k*k])."""
        def build(w: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            w = (w * self.wscale.scale).flip(2, 3).permute(0, 2, 3, 1)
            return w.reshape(-1, self.in_channels).contiguous(), b.repeat_interleave(self.kernel_size ** 2)
        return self._dense_cache.get((self.conv.weight, self.wscale.b), build)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * pixel_norm_factor(x)
        k = self.kernel_size
        if x.shape[-2:] == (1, 1) and self.padding == k - 1:  # layer1
            w, b = self.dense()
            out = F.linear(x.flatten(1), w, b).view(-1, self.out_channels, k, k)
            out = out.contiguous(memory_format=torch.channels_last)
        else:
            w, b = self.folded()
            out = F.conv2d(x, w, b, padding=self.padding)
        return F.leaky_relu_(out, SLOPE)


class NormUpscaleConvBlock(_Block):
    """PixelNorm, nearest 2x upsampling, 3x3 conv, WScale, LeakyReLU (from 8x8 inputs on as
    one stride-2 transposed convolution, see the module docstring)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, padding: int = 1):
        if (kernel_size, padding) != (3, 1):
            raise ValueError("ProGAN upsampling blocks are 3x3 convolutions with padding 1")
        super().__init__(in_channels, out_channels, kernel_size, padding,
                         gain=math.sqrt(2) / kernel_size)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")  # the authors' module (no state)
        self._up_cache = ScaledWeightCache()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * pixel_norm_factor(x)  # per pixel: commutes with nearest upsampling
        w, b = self.folded()
        return F.leaky_relu_(nearest_up_conv(x, w, b, self._up_cache), SLOPE)


class OutputConvBlock(_Block):
    """PixelNorm, 1x1 conv to RGB, WScale (gain 1), Hardtanh -> [-1, 1]."""

    def __init__(self, in_channels: int):
        super().__init__(in_channels, 3, 1, 0, gain=1.0)
        self.clamp = nn.Hardtanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.folded()
        # The 1x1 conv is per pixel, so PixelNorm's per-pixel factor moves behind it.
        rgb = F.conv2d(x, w) * pixel_norm_factor(x) + b.view(1, -1, 1, 1)
        return self.clamp(rgb)


class ProGANGenerator(nn.Module):
    """GAN Dissection's ProGAN generator: z [B, z_dim] or [B, z_dim, 1, 1] -> image
    [B, 3, R, R] in [-1, 1]. Blocks are called as modules, so forward hooks on `layer{k}`
    see the authors' intermediate features."""

    n_latent = 1  # one z per image (the ProGAN regressor's n_latent)

    def __init__(self, resolution: int, sizes: list[int] | None = None):
        super().__init__()
        if sizes is None:
            if resolution not in SIZES:
                raise ValueError(f"no default ProGAN channel sizes for resolution {resolution} "
                                 f"(known: {sorted(SIZES)}); pass sizes")
            sizes = SIZES[resolution]
        sizes = [int(s) for s in sizes]
        if len(sizes) < 3 or min(sizes) < 1:
            raise ValueError(f"sizes must be [z_dim, c_4, c_8, ...] (at least 3 positive), got {sizes}")
        if resolution_of(sizes) != resolution:
            raise ValueError(f"sizes {sizes} make a {resolution_of(sizes)} px generator, "
                             f"not {resolution} px")
        self.resolution, self.sizes = resolution, sizes
        blocks: list[tuple[str, nn.Module]] = [
            ("layer1", NormConvBlock(sizes[0], sizes[1], kernel_size=4, padding=3)),
            ("layer2", NormConvBlock(sizes[1], sizes[1], kernel_size=3, padding=1))]
        for c_in, c_out in zip(sizes[1:-1], sizes[2:]):
            blocks.append((f"layer{len(blocks) + 1}", NormUpscaleConvBlock(c_in, c_out, 3, 1)))
            blocks.append((f"layer{len(blocks) + 1}", NormConvBlock(c_out, c_out, 3, 1)))
        blocks.append((f"output_{resolution}x{resolution}", OutputConvBlock(sizes[-1])))
        for name, block in blocks:
            self.add_module(name, block)

    @property
    def size(self) -> int:
        return self.resolution

    @property
    def z_dim(self) -> int:
        return self.sizes[0]

    @property
    def device(self) -> torch.device:
        return self.layer1.conv.weight.device

    @property
    def config(self) -> dict[str, Any]:
        return {"resolution": self.resolution, "sizes": list(self.sizes)}

    def random_z(self, batch: int, seed: int) -> torch.Tensor:
        """The authors' z for a seed ([batch, z_dim, 1, 1], on the model's device)."""
        return random_z(batch, seed, self.z_dim).to(self.device)

    def _input(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() not in (2, 4) or z.shape[1] != self.z_dim or z[0, 0].numel() != 1:
            raise ValueError(f"z must be [B, {self.z_dim}] or [B, {self.z_dim}, 1, 1], "
                             f"got {list(z.shape)}")
        return z.reshape(z.shape[0], self.z_dim, 1, 1).to(self.layer1.conv.weight.dtype)

    def features(self, z: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        """Every block's output by name (`layer1` ... `output_RxR`, the last is the image)."""
        x, out = self._input(z), OrderedDict()
        for name, block in self.named_children():
            x = out[name] = block(x)
        return out

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self._input(z)
        for block in self.children():
            x = block(x)
        return x.contiguous()

    def synthesis(self, z: torch.Tensor) -> torch.Tensor:
        """Same as `forward`: the latent a regressor predicts is z itself (no mapping)."""
        return self(z)

    # ---- core.models.generator.Generator ----------------------------------------------------
    def sample_latents(self, seeds: Sequence[int], truncation: float = 1.0) -> torch.Tensor:
        """The authors' z per seed (`random_z(1, seed)`), on the model's device."""
        return torch.cat([self.random_z(1, int(s)) for s in seeds])

    @torch.inference_mode()
    def render(self, latents: torch.Tensor, truncation: float = 1.0,
               classes: torch.Tensor | None = None) -> torch.Tensor:
        """ProGAN has no truncation: only 1.0 is accepted."""
        unconditional("ProGAN", classes)
        if truncation != 1.0:
            raise ValueError("ProGAN has no truncation trick: use truncation 1.0")
        return self(latents.to(self.device)).float().clamp(-1, 1)


def sizes_from_state_dict(state: Mapping[str, Any]) -> list[int]:
    """[z_dim, c_4, c_8, ...] read from `layer{k}.conv.weight` shapes, as the authors do:
    layer1's input channels, then the output channels of every odd layer."""
    sizes: list[int] = []
    for i in itertools.count():
        weight = state.get(f"layer{i + 1}.conv.weight")
        if not torch.is_tensor(weight) or weight.dim() != 4:
            break
        if i == 0:
            sizes.append(int(weight.shape[1]))
        if i % 2 == 0:
            sizes.append(int(weight.shape[0]))
    return sizes


def _renamed_old_layout(state: Mapping[str, Any]) -> dict[str, Any]:
    """The older GAN Dissection names (`features.{i}.*`, `output.*`) -> `layer{i+1}.*`,
    `output_{R}x{R}.*`, as the authors' `state_dict_from_old_pt_dict`."""
    n = next(i for i in itertools.count() if f"features.{i}.conv.weight" not in state)
    res = 4 * 2 ** ((n - 1) // 2)
    out: dict[str, Any] = {}
    for key, value in state.items():
        if key.startswith("features."):
            _, i, rest = key.split(".", 2)
            out[f"layer{int(i) + 1}.{rest}"] = value
        elif key.startswith("output."):
            out[f"output_{res}x{res}.{key[len('output.'):]}"] = value
        else:
            out[key] = value
    return out


def load_proggan(path: str | Path, resolution: int | None = None,
                 map_location: str | torch.device = "cpu") -> ProGANGenerator:
    """Load a GAN Dissection ProGAN file (plain state dict, read with weights_only=True) with
    strict=True -> eval mode, no gradients. Resolution and channel sizes come from the file;
    a given `resolution` that the file contradicts raises a ValueError (ProGANConfigError).
    Like the authors' loader it also accepts `{"state_dict": ...}` and the older
    `features.{i}` names."""

    path = Path(path)
    ckpt = read_checkpoint(path, map_location)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise UserError(f"{path.name} is not a ProGAN state dict (a dict of tensors named "
                        "'layer1.conv.weight', ...).")
    if "features.0.conv.weight" in state:
        state = _renamed_old_layout(state)
    sizes = sizes_from_state_dict(state)
    if len(sizes) < 3:
        keys = ", ".join(list(state)[:6])
        raise UserError(f"{path.name} is not a ProGAN state dict: it has no layers "
                        f"'layer1.conv.weight', 'layer2.conv.weight' (found: {keys}).")
    found = resolution_of(sizes)
    if resolution is not None and int(resolution) != found:
        raise ProGANConfigError(
            f"{path.name} is a {found}x{found} ProGAN generator (channel sizes {sizes}), "
            f"but resolution {resolution} was asked for.")
    with torch.device("meta"):  # no random init: every tensor comes from the file
        model = ProGANGenerator(found, sizes)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:  # missing/unexpected keys
        first = " ".join(str(e).strip().splitlines()[:3])
        raise UserError(f"{path.name} is not a complete ProGAN generator: {first}") from e
    return model.to(torch.float32).eval().requires_grad_(False)
