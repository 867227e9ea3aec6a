"""StyleGAN2 checkpoints in genforce's layout (the PandA authors' port), as our StyleGAN2.

PandA's published AFHQ-dog layer-8 factors were computed on the authors' genforce port
(`stylegan2_afhqdog512.pth`, their `networks/genforce`). Their loader builds
`StyleGAN2Generator(512)` with every other argument at its default and loads
`torch.load(path)['generator_smooth']` (else `['generator']`). This module reads such a
file and returns `core.models.stylegan2.StyleGAN2Generator` (rosinality's layout) with the
same weights, so every StyleGAN2 editor uses it unchanged. Checked against their code on
tiny random weights (tests/data/reference/genforce/, with the script that made them).

genforce's defaults (the only configuration read here)
------------------------------------------------------
z = w = mapping width 512, 8 mapping layers with lr_mul 0.01, `repeat_w`, no labels,
architecture 'skip', const input at 4 px, demodulation, use_wscale (weights stored unscaled
and scaled by 1/sqrt(fan_in) at use, as rosinality does), spatial noise, channels
min(fmaps_base // res, fmaps_max) with fmaps_base 32 << 10 and fmaps_max 512 (the same
table as rosinality's channel_multiplier 2), no final tanh (pictures roughly in [-1, 1]),
FIR kernel (1, 3, 3, 1). `fused_modulate` only orders the same arithmetic.

Key by key (genforce `layer{i}` is our layer index i, see core.models.stylegan2)
--------------------------------------------------------------------------------
| genforce                                 | ours                                        |
|------------------------------------------|---------------------------------------------|
| mapping.dense{i}.weight, .bias           | style.{i+1}.weight, .bias                   |
| truncation.w_avg                         | w_avg (has_w_avg = True)                    |
| synthesis.early_layer.const              | input.input                                 |
| synthesis.layer0.* / layer{i}.* (i >= 1) | conv1.* / convs.{i-1}.*                     |
|   .weight [out, in, k, k]                |   .conv.weight [1, out, in, k, k] (1)       |
|   .style.weight, .style.bias             |   .conv.modulation.weight, .bias + 1 (2)    |
|   .bias                                  |   .activate.bias                            |
|   .noise_strength [], .noise [1,1,r,r]   |   .noise.weight [1], noises.noise_{i}       |
| synthesis.output0.* / output{j}.*        | to_rgb1.* / to_rgbs.{j-1}.*                 |
|   .weight, .style.*, .bias [3]           |   .conv.weight, .conv.modulation.* (2),     |
|                                          |   .bias [1, 3, 1, 1]                        |
| synthesis.layer{odd}.filter.kernel,      | checked to be (1, 3, 3, 1) x 4; ours kept   |
| synthesis.upsample.kernel                |                                             |

(1) Flipped in both spatial dims for the upsampling (odd) layers: genforce runs
    conv_transpose2d on the flipped TF kernel, rosinality's layout stores it flipped.
(2) genforce adds its `additional_bias` 1 to the style at use; rosinality stores it.

Numerics: the same operations in another order (genforce adds noise, then the bias, then
leaky ReLU x sqrt 2; we fold sqrt 2 into the demodulation), so outputs agree to float
rounding (~1e-6 relative). Truncation: PandA truncates every layer (trunc_layers 18 >= the
number of w's), which is our `truncated_w` around `w_avg`. Noise: the file's fixed buffers,
as genforce's `randomize_noise=False` (PandA's setting). One difference from PandA's
resumed synthesis (`synthesis(wp, x=Z, start=l)` starts a new RGB skip at layer l): our
`synthesis_from` keeps the skip image of the layers before, so an unedited pass is exactly
the generator's picture; `SynthesisState(k, Z, None)` reproduces theirs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

import torch

from core.checkpoints import read_checkpoint
from core.errors import UserError
from core.models.stylegan2 import StyleGAN2Generator
from core.ops import channel_table, make_kernel

GENFORCE_FMAPS_BASE = 32 << 10
FIR_TAPS = [1, 3, 3, 1]
Rule = tuple[str, Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Size], tuple[int, ...]]]
"""our key, genforce tensor -> ours, our shape -> the shape genforce stores."""


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


def _conv(t: torch.Tensor) -> torch.Tensor:
    return t[None]


def _conv_up(t: torch.Tensor) -> torch.Tensor:
    return t.flip(-2, -1)[None]


def _plus_one(t: torch.Tensor) -> torch.Tensor:
    return t + 1


def _as_shape(shape: tuple[int, ...]) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda t: t.reshape(shape)


def _key_rules(G: StyleGAN2Generator, mapping_layers: int) -> dict[str, Rule]:
    """genforce key -> how it becomes one of ours, for every persistent tensor of G."""
    ours = {k: v.shape for k, v in G.state_dict().items()}
    as_is = lambda s: tuple(s)  # noqa: E731
    rules: dict[str, Rule] = {"synthesis.early_layer.const": ("input.input", _same, as_is)}
    for i in range(mapping_layers):
        for p in ("weight", "bias"):
            rules[f"mapping.dense{i}.{p}"] = (f"style.{i + 1}.{p}", _same, as_is)
    for k in range(G.num_layers):
        src, dst = f"synthesis.layer{k}", ("conv1" if k == 0 else f"convs.{k - 1}")
        rules[f"{src}.weight"] = (f"{dst}.conv.weight", _conv_up if k % 2 else _conv,
                                  lambda s: tuple(s[1:]))
        rules[f"{src}.style.weight"] = (f"{dst}.conv.modulation.weight", _same, as_is)
        rules[f"{src}.style.bias"] = (f"{dst}.conv.modulation.bias", _plus_one, as_is)
        rules[f"{src}.bias"] = (f"{dst}.activate.bias", _same, as_is)
        rules[f"{src}.noise_strength"] = (f"{dst}.noise.weight", _as_shape((1,)), lambda s: ())
        rules[f"{src}.noise"] = (f"noises.noise_{k}", _same, as_is)
    for j in range(G.num_layers // 2 + 1):
        src, dst = f"synthesis.output{j}", ("to_rgb1" if j == 0 else f"to_rgbs.{j - 1}")
        rules[f"{src}.weight"] = (f"{dst}.conv.weight", _conv, lambda s: tuple(s[1:]))
        rules[f"{src}.style.weight"] = (f"{dst}.conv.modulation.weight", _same, as_is)
        rules[f"{src}.style.bias"] = (f"{dst}.conv.modulation.bias", _plus_one, as_is)
        rules[f"{src}.bias"] = (f"{dst}.bias", _as_shape(ours[f"{dst}.bias"]), lambda s: (s[1],))
    return rules


def _kernel_keys(G: StyleGAN2Generator) -> list[str]:
    """genforce's FIR kernel buffers (constants of the architecture, not weights)."""
    return ["synthesis.upsample.kernel"] + [f"synthesis.layer{k}.filter.kernel"
                                            for k in range(1, G.num_layers, 2)]


def genforce_keys(G: StyleGAN2Generator, mapping_layers: int) -> dict[str, tuple[int, ...]]:
    """Every key of the genforce state dict that holds G's weights -> its stored shape."""
    ours = {k: v.shape for k, v in G.state_dict().items()}
    shapes = {key: shape_of(ours[dst])
              for key, (dst, _, shape_of) in _key_rules(G, mapping_layers).items()}
    shapes["truncation.w_avg"] = (G.style_dim,)
    shapes.update({key: (1, 1, len(FIR_TAPS), len(FIR_TAPS)) for key in _kernel_keys(G)})
    return shapes


def _generator_state(ckpt: object, name: str) -> Mapping[str, torch.Tensor]:
    """`generator_smooth` (the running average), else `generator`, else a bare state dict,
    as PandA's loader picks it."""
    if isinstance(ckpt, Mapping):
        for part in ("generator_smooth", "generator"):
            if isinstance(ckpt.get(part), Mapping):
                return ckpt[part]
        if any(str(k).startswith("synthesis.") for k in ckpt):
            return ckpt
    found = (", ".join(map(str, list(ckpt)[:8])) if isinstance(ckpt, Mapping)
             else type(ckpt).__name__)
    raise UserError(f"{name} is not a genforce StyleGAN2 checkpoint: it has no "
                    f"'generator_smooth' or 'generator' state dict (found: {found}).")


def _check_layout(state: Mapping[str, torch.Tensor], expected: dict[str, tuple[int, ...]],
                  name: str, what: str) -> None:
    """The first missing key, unexpected key or wrong shape, as a sentence."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        first = f"missing key {missing[0]!r}" if missing else f"unexpected key {unexpected[0]!r}"
        raise UserError(f"{name} does not match the registered genforce StyleGAN2 ({what}): "
                        f"{first} ({len(missing)} missing, {len(unexpected)} unexpected).")
    for key, shape in expected.items():
        value = state[key]
        got = tuple(value.shape) if torch.is_tensor(value) else type(value).__name__
        if got != shape:
            raise UserError(f"{name} does not match the registered genforce StyleGAN2 ({what}): "
                            f"{key} has shape {got}, expected {shape}.")


def _check_kernels(state: Mapping[str, torch.Tensor], G: StyleGAN2Generator, name: str) -> None:
    want = (make_kernel(FIR_TAPS) * 4).reshape(1, 1, len(FIR_TAPS), len(FIR_TAPS))
    for key in _kernel_keys(G):
        if not torch.allclose(state[key].float().cpu(), want):
            raise UserError(f"{name}: {key} is not StyleGAN2's (1, 3, 3, 1) filter; this app "
                            f"cannot run a generator with another filter.")


def _channels(size: int, fmaps_base: int, fmaps_max: int) -> int:
    """rosinality's channel_multiplier for genforce's channel rule, or a UserError."""
    multiplier = fmaps_base // (GENFORCE_FMAPS_BASE // 2)
    table = channel_table(max(multiplier, 1), fmaps_max)
    res = [2 ** i for i in range(2, int(size).bit_length())]
    if multiplier < 1 or any(table.get(r) != min(fmaps_base // r, fmaps_max) for r in res):
        raise UserError(f"The registry's genforce config (fmaps_base {fmaps_base}, fmaps_max "
                        f"{fmaps_max}, size {size}) gives channel counts that rosinality's "
                        f"table cannot hold: it needs fmaps_base 16384 x channel_multiplier "
                        f"and fmaps_max <= 512.")
    return multiplier


def load_genforce_stylegan2(path: str | Path, size: int, w_space_dim: int = 512,
                            mapping_layers: int = 8, mapping_lr_mul: float = 0.01,
                            fmaps_base: int = GENFORCE_FMAPS_BASE, fmaps_max: int = 512,
                            map_location: str | torch.device = "cpu") -> StyleGAN2Generator:
    """A genforce StyleGAN2 file (genforce's argument names) -> our StyleGAN2Generator.

    Read with `weights_only=True`; every key and shape is checked against the configuration
    before anything is copied.
    """

    name = Path(path).name
    multiplier = _channels(size, fmaps_base, fmaps_max)
    state = _generator_state(read_checkpoint(path, map_location), name)
    G = StyleGAN2Generator(size, w_space_dim, mapping_layers, multiplier, fmaps_max, mapping_lr_mul)
    what = f"size {size}, w {w_space_dim}, {mapping_layers} mapping layers, fmaps_max {fmaps_max}"
    _check_layout(state, genforce_keys(G, mapping_layers), name, what)
    _check_kernels(state, G, name)
    ours = G.state_dict()
    for key, (dst, convert, _) in _key_rules(G, mapping_layers).items():
        ours[dst] = convert(state[key].float())
    G.load_state_dict(ours, strict=True)
    G.w_avg.copy_(state["truncation.w_avg"])
    G.has_w_avg = True  # genforce always truncates around its running average
    return G.eval().requires_grad_(False)
