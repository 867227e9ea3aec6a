"""StyleGAN2 generator in rosinality's `stylegan2-pytorch` layout, with a split synthesis.

Loads the published rosinality checkpoints (`{"g_ema": state_dict, "latent_avg": ...}`)
with strict=True and reproduces their outputs (see tests/test_stylegan2.py).

Layers
------
The synthesis network is a chain of styled convolutions. This module names them by one
integer, the **layer index k**: k = 0 is `conv1` (4 px), k = j + 1 is `convs[j]`. Layer k
uses `w_plus[:, k]` and the noise buffer `noises.noise_k`; every even layer is followed by
a ToRGB (`to_rgb1` after k=0, `to_rgbs[k/2 - 1]` after k >= 2) that uses `w_plus[:, k+1]`
and adds into the running skip image. Odd layers k >= 1 upsample 2x.

| k  | module    | px  | SAM (Parmar et al.) | PandA "layer l" (genforce) |
|----|-----------|-----|---------------------|----------------------------|
| 0  | conv1     | 4   |                     | l = 1                      |
| 3  | convs[2]  | 16  |                     | l = 4                      |
| 4  | convs[3]  | 16  | F4                  | l = 5                      |
| 5  | convs[4]  | 32  |                     | l = 6                      |
| 6  | convs[5]  | 32  | F6                  | l = 7                      |
| 7  | convs[6]  | 64  |                     | l = 8                      |
| 8  | convs[7]  | 64  | F8                  | l = 9                      |
| 10 | convs[9]  | 128 | F10                 | l = 11                     |

So SAM's F_k is layer k (`sam_layer`), and PandA's layer l is layer l - 1 (`panda_layer`):
genforce's `layer{i}` is rosinality's layer i, and PandA reads the output of genforce's
synthesis stopped before `layer{l}`.

Split synthesis: `synthesis_until(w, k)` returns a `SynthesisState` holding the features
after layer k (after its ToRGB, if any, has consumed them) and the running skip image;
`synthesis_from(state, w)` resumes with possibly edited features. `deltas={k: ...}` adds
(masked) feature residuals after layer k in a single pass, again after that layer's ToRGB,
which is exactly where SAM adds its dF_k.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping, Sequence, Union

import torch
from torch import nn

from core.checkpoints import read_checkpoint
from core.errors import UserError
from core.models.generator import seed_normal, unconditional
from core.ops import (SQRT2, ConstantInput, EqualLinear, ModulatedConv2d, PixelNorm, Upsample,
                      channel_table, mapped_mean, truncate)

BLUR_KERNEL = (1, 3, 3, 1)
FeatureDelta = Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]
"""A residual added to a layer's features: a tensor, or (delta, mask) multiplied first."""
FeatureHook = Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""`hook(k, features, skip) -> (features, skip)` after layer k's ToRGB: may rewrite both
(feature blending across the batch, Suzuki et al. Eq. 3)."""


def sam_layer(name: str) -> int:
    """SAM's feature space name ("F4", "F6", "F8", "F10") -> layer index."""
    if not (name.startswith("F") and name[1:].isdigit()):
        raise ValueError(f"not a SAM feature space: {name!r}")
    return int(name[1:])


def panda_layer(l: int) -> int:
    """PandA's genforce "layer l" -> layer index (the output of genforce layer l-1)."""
    return l - 1


def mix_styles(w1: torch.Tensor, w2: torch.Tensor, inject_index: int, n_latent: int) -> torch.Tensor:
    """Style mixing: layers < inject_index take w1, the rest w2 -> w+ [B, n_latent, D]."""
    return torch.cat([w1[:, None].expand(-1, inject_index, -1),
                      w2[:, None].expand(-1, n_latent - inject_index, -1)], dim=1)


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))


class StyledConv(nn.Module):
    """Modulated conv + per-pixel noise + bias + leaky ReLU (x sqrt 2), in three passes."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, style_dim, upsample=upsample,
                                    blur_kernel=BLUR_KERNEL)
        self.noise = NoiseInjection()
        self.activate = nn.Module()  # holds the published `activate.bias` parameter
        self.activate.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        # leaky(a) * sqrt2 == leaky(a * sqrt2): the gain rides on the demodulation scale.
        out = self.conv(x, style, gain=SQRT2)
        out = out.add_(self.activate.bias.view(1, -1, 1, 1).to(out.dtype), alpha=SQRT2)
        out = out.add_(noise.to(out.dtype) * (self.noise.weight.to(out.dtype) * SQRT2))
        return torch.nn.functional.leaky_relu_(out, 0.2)


class ToRGB(nn.Module):
    def __init__(self, in_channels: int, style_dim: int, upsample: bool = True):
        super().__init__()
        if upsample:
            self.upsample = Upsample(list(BLUR_KERNEL))
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias.to(x.dtype)
        if skip is not None:
            out = out + self.upsample(skip)
        return out


@dataclass(frozen=True)
class SynthesisState:
    """Where a split synthesis stopped: features after `layer` and the running RGB image."""
    layer: int
    features: torch.Tensor
    skip: torch.Tensor | None

    def with_features(self, features: torch.Tensor) -> "SynthesisState":
        return replace(self, features=features)


class StyleGAN2Generator(nn.Module):
    """rosinality StyleGAN2 generator (keys: style.*, input.input, conv1, to_rgb1, convs,
    to_rgbs, noises.noise_k). Noise defaults to the stored buffers: deterministic."""

    def __init__(self, size: int, style_dim: int = 512, n_mlp: int = 8,
                 channel_multiplier: int = 2, channel_max: int = 512, lr_mlp: float = 0.01):
        super().__init__()
        self.size, self.style_dim = size, style_dim
        self.channels = channel_table(channel_multiplier, channel_max)
        self.style = nn.Sequential(PixelNorm(), *[
            EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True) for _ in range(n_mlp)])

        self.input = ConstantInput(self.channels[4])
        self.conv1 = StyledConv(self.channels[4], self.channels[4], style_dim)
        self.to_rgb1 = ToRGB(self.channels[4], style_dim, upsample=False)

        self.log_size = int(size).bit_length() - 1
        if 2 ** self.log_size != size or size < 8:
            raise ValueError(f"StyleGAN2 size must be a power of two >= 8, got {size}")
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.n_latent = self.log_size * 2 - 2

        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for k in range(self.num_layers):
            res = 2 ** ((k + 5) // 2)
            self.noises.register_buffer(f"noise_{k}", torch.randn(1, 1, res, res))
        in_ch = self.channels[4]
        for i in range(3, self.log_size + 1):
            out_ch = self.channels[2 ** i]
            self.convs.append(StyledConv(in_ch, out_ch, style_dim, upsample=True))
            self.convs.append(StyledConv(out_ch, out_ch, style_dim))
            self.to_rgbs.append(ToRGB(out_ch, style_dim))
            in_ch = out_ch
        self.register_buffer("w_avg", torch.zeros(style_dim), persistent=False)
        self.has_w_avg = False
        self._mean_w: dict[tuple[int, int], torch.Tensor] = {}

    # ---- layers ---------------------------------------------------------------------------
    def layer_resolution(self, k: int) -> int:
        return 2 ** ((k + 5) // 2)

    def layer_channels(self, k: int) -> int:
        return self.channels[self.layer_resolution(k)]

    def _conv(self, k: int) -> StyledConv:
        return self.conv1 if k == 0 else self.convs[k - 1]

    def _to_rgb(self, k: int) -> ToRGB | None:
        if k % 2:
            return None
        return self.to_rgb1 if k == 0 else self.to_rgbs[k // 2 - 1]

    # ---- latents --------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.input.input.device

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, D] -> w [B, D] (the 8-layer MLP)."""
        return self.style(z.to(self.input.input.dtype))

    def w_plus(self, w: torch.Tensor) -> torch.Tensor:
        """w [B, D] -> w+ [B, n_latent, D] (the same w for every layer)."""
        return w[:, None].expand(-1, self.n_latent, -1)

    def mean_w(self, n: int = 4096, seed: int = 0) -> torch.Tensor:
        """Mean of n mapped samples [1, D] (cached): the truncation centre when the
        checkpoint has no `latent_avg`, and the start of optimisations."""
        key = (n, seed)
        if key not in self._mean_w or self._mean_w[key].device != self.device:
            self._mean_w[key] = mapped_mean(self.mapping, self.style_dim, n, seed, self.device)
        return self._mean_w[key]

    def truncation_center(self) -> torch.Tensor:
        """The checkpoint's `latent_avg` when it has one, else `mean_w()`. [1, D]."""
        return self.w_avg[None].float() if self.has_w_avg else self.mean_w()

    def noise_buffers(self) -> list[torch.Tensor]:
        return [getattr(self.noises, f"noise_{k}") for k in range(self.num_layers)]

    def random_noise(self, batch: int, seed: int) -> list[torch.Tensor]:
        """Fresh per-layer noise from a seed (only when a caller asks for randomness)."""
        g = torch.Generator().manual_seed(seed)
        return [torch.randn(batch, 1, n.shape[-2], n.shape[-1], generator=g).to(self.device)
                for n in self.noise_buffers()]

    # ---- synthesis ------------------------------------------------------------------------
    def _run(self, x: torch.Tensor, skip: torch.Tensor | None, w_plus: torch.Tensor,
             start: int, stop: int, noise: Sequence[torch.Tensor] | None,
             deltas: Mapping[int, FeatureDelta] | None,
             hook: FeatureHook | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if w_plus.ndim != 3 or w_plus.shape[1] != self.n_latent:
            raise ValueError(f"w_plus must be [B, {self.n_latent}, {self.style_dim}], got {tuple(w_plus.shape)}")
        noise = self.noise_buffers() if noise is None else list(noise)
        w_plus = w_plus.to(x.dtype)
        x = x.contiguous(memory_format=torch.channels_last)  # oneDNN/cuDNN's fast layout
        for k in range(start, stop + 1):
            x = self._conv(k)(x, w_plus[:, k], noise[k])
            to_rgb = self._to_rgb(k)
            if to_rgb is not None:
                skip = to_rgb(x, w_plus[:, k + 1], skip)
            if deltas and k in deltas:
                x = x + _as_residual(deltas[k]).to(x.dtype)
            if hook is not None:
                x, skip = hook(k, x, skip)
        return x, skip

    def _check_deltas(self, deltas: Mapping[int, FeatureDelta] | None, first: int, last: int) -> None:
        for k in deltas or {}:
            if not first <= k <= last:
                raise ValueError(f"a feature delta at layer {k} lies outside layers {first}..{last}")

    def synthesis_until(self, w_plus: torch.Tensor, layer: int,
                        noise: Sequence[torch.Tensor] | None = None,
                        deltas: Mapping[int, FeatureDelta] | None = None) -> SynthesisState:
        """Run layers 0..layer (and layer's ToRGB); return its features and the skip image."""
        if not 0 <= layer < self.num_layers:
            raise ValueError(f"layer must be in 0..{self.num_layers - 1}, got {layer}")
        self._check_deltas(deltas, 0, layer)
        x = self.input(w_plus.shape[0])
        x, skip = self._run(x, None, w_plus, 0, layer, noise, deltas)
        return SynthesisState(layer, x, skip)

    def synthesis_from(self, state: SynthesisState, w_plus: torch.Tensor,
                       noise: Sequence[torch.Tensor] | None = None,
                       deltas: Mapping[int, FeatureDelta] | None = None) -> torch.Tensor:
        """Resume after `state.layer` with `state.features` (edited or not) -> image."""
        self._check_deltas(deltas, state.layer + 1, self.num_layers - 1)
        _, skip = self._run(state.features, state.skip, w_plus, state.layer + 1,
                            self.num_layers - 1, noise, deltas)
        return skip.contiguous()

    def synthesis(self, w_plus: torch.Tensor, noise: Sequence[torch.Tensor] | None = None,
                  deltas: Mapping[int, FeatureDelta] | None = None,
                  hook: FeatureHook | None = None) -> torch.Tensor:
        """w+ [B, n_latent, D] -> image [B, 3, size, size], roughly in [-1, 1].

        `noise=None` uses the checkpoint's fixed buffers; a list of per-layer tensors
        overrides them. `deltas` adds feature residuals after the given layers; `hook`
        sees (and may replace) every layer's features and skip image.
        """
        self._check_deltas(deltas, 0, self.num_layers - 1)
        x = self.input(w_plus.shape[0])
        return self._run(x, None, w_plus, 0, self.num_layers - 1, noise, deltas, hook)[1].contiguous()

    def truncated_w(self, z: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
        """z [B, D] -> w [B, D], pulled towards `truncation_center()` (1.0: unchanged)."""
        w = self.mapping(z)
        if truncation != 1.0:
            w = truncate(w, self.truncation_center().to(w.dtype), truncation)
        return w

    def forward(self, z: torch.Tensor, truncation: float = 1.0,
                noise: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """z -> image with optional truncation: the plain "sample from a seed" path."""
        return self.synthesis(self.w_plus(self.truncated_w(z, truncation)), noise)

    # ---- core.models.generator.Generator ----------------------------------------------------
    def sample_latents(self, seeds: Sequence[int], truncation: float = 1.0) -> torch.Tensor:
        """z per seed (`seed_normal`), on the model's device; truncation acts in `render`."""
        return seed_normal(seeds, self.style_dim).to(self.device)

    @torch.inference_mode()
    def render(self, latents: torch.Tensor, truncation: float = 1.0,
               classes: torch.Tensor | None = None) -> torch.Tensor:
        unconditional("StyleGAN2", classes)
        return self(latents.to(self.device), truncation).float().clamp(-1, 1)


def _as_residual(delta: FeatureDelta) -> torch.Tensor:
    if isinstance(delta, tuple):
        d, mask = delta
        return d * mask
    return delta


def load_stylegan2(path: str | Path, size: int, style_dim: int = 512, n_mlp: int = 8,
                   channel_multiplier: int = 2, channel_max: int = 512,
                   map_location: str | torch.device = "cpu") -> StyleGAN2Generator:
    """Load a rosinality `.pt` checkpoint (`g_ema`, optional `latent_avg`) with strict=True.

    The file is read with `weights_only=True`: a checkpoint is untrusted input.
    """

    ckpt = read_checkpoint(path, map_location)
    name = Path(path).name
    state = ckpt.get("g_ema") if isinstance(ckpt, dict) else None
    if not isinstance(state, Mapping):
        found = ", ".join(map(str, list(ckpt)[:8])) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise UserError(f"{name} is not a rosinality StyleGAN2 checkpoint: it has no 'g_ema' "
                        f"state dict (found: {found}).")
    G = StyleGAN2Generator(size, style_dim, n_mlp, channel_multiplier, channel_max)
    try:
        G.load_state_dict(state, strict=True)
    except RuntimeError as e:  # missing/unexpected keys, size mismatch
        first = " ".join(str(e).strip().splitlines()[:3])
        raise UserError(f"{name} does not match the registered StyleGAN2 configuration "
                        f"(size {size}, channel_multiplier {channel_multiplier}): {first}") from e
    if ckpt.get("latent_avg") is not None:
        G.w_avg.copy_(ckpt["latent_avg"].reshape(-1)[:style_dim])
        G.has_w_avg = True
    return G.eval().requires_grad_(False)
