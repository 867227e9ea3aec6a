"""The e4e encoder (encoder4editing, Tov et al., SIGGRAPH 2021): image -> StyleGAN2 w+.

SAM starts its W+ optimisation from e4e's code of the target. This module loads the authors'
published pSp-format files (`e4e_ffhq_encode.pt`, `e4e_cars_encode.pt`,
`e4e_lsuncats_encode.pt`) unchanged and reproduces what SAM takes from them,
`pSp(img_t, return_latents=True)[1]` (see tests/test_e4e.py and tests/data/reference/e4e/).

File layout (their training coach's save dict): `{"state_dict": {"encoder.<k>", "decoder.<k>"},
"latent_avg": [n_styles, 512] (or [512]), "opts": dict of training options}`. Only the
`encoder.*` part is used here; `decoder.*` is a rosinality StyleGAN2 generator
(`e4e_decoder_state` returns it for `core.models.stylegan2`). pSp's GradualStyleEncoder files
have the same encoder keys, so the kind of encoder is read from `opts["encoder_type"]`.

Network (their `Encoder4Editing(50, "ir_se")`), for a 256 px input:
- `input_layer`: 3x3 conv (no bias), BatchNorm, PReLU. `body`: 24 IR-SE bottlenecks (3, 4, 14, 3
  units of 64, 128, 256, 512 channels, the first unit of each stage with stride 2). Feature
  maps are tapped after units 6 (c1, 128 ch, 64x64), 20 (c2, 256 ch, 32x32) and 23 (c3, 512 ch,
  16x16).
- `styles.i` (one head per w): stride-2 3x3 convs + LeakyReLU(0.01) down to 1x1, then an
  equalized linear layer. Heads 0-2 read c3, heads 3-6 the middle FPN map
  p2 = up(c3) + latlayer1(c2), heads 7+ the fine map p1 = up(p2) + latlayer2(c1)
  (bilinear, align_corners=True).
- e4e's progressive codes: w_0 = styles[0](c3) and w_i = w_0 + styles[i](features_i).
  The stored `latent_avg` is added to every w_i (pSp with `start_from_latent_avg`).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from core.checkpoints import read_checkpoint
from core.errors import UserError


STYLE_DIM = 512
STAGES = ((64, 3), (128, 4), (256, 14), (512, 3))  # (channels, units) of IR-SE-50
TAPS = (6, 20, 23)  # body units whose outputs are c1, c2, c3
COARSE, MIDDLE = 3, 7  # first head reading p2, first head reading p1
CAR_SIZE = (192, 256)  # their CarsEncodeTransforms; every other domain is 256x256
SQUARE_SIZE = (256, 256)


def n_styles_for(stylegan_size: int) -> int:
    """Number of w's of a StyleGAN2 generator of this size (18 at 1024, 16 at 512, 14 at 256)."""
    return 2 * int(math.log2(stylegan_size)) - 2


class SEModule(nn.Module):
    """Squeeze-and-excitation: channel gates from the global mean (keys fc1, fc2)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(gate)


class BottleneckIRSE(nn.Module):
    """ArcFace's IR-SE unit: BN, conv, PReLU, strided conv, BN, SE, plus a shortcut that is a
    1x1 conv + BN when the width changes and plain subsampling otherwise (their MaxPool2d(1,
    stride), which has no weights)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.stride = stride
        self.shortcut_layer = None
        if in_ch != out_ch:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False),
                                                nn.BatchNorm2d(out_ch))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_ch), nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False), nn.PReLU(out_ch),
            nn.Conv2d(out_ch, out_ch, 3, stride, 1, bias=False), nn.BatchNorm2d(out_ch),
            SEModule(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut_layer is None:
            shortcut = x[:, :, ::self.stride, ::self.stride]
        else:
            shortcut = self.shortcut_layer(x)
        return self.res_layer(x) + shortcut


class EqualLinear(nn.Module):
    """StyleGAN2's equalized linear layer (lr_mul 1): the weight is scaled by 1/sqrt(in)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim))  # their init: N(0, 1), bias 0
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.scale = 1 / math.sqrt(in_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class StyleHead(nn.Module):
    """One w from a feature map (their GradualStyleBlock): log2(spatial) stride-2 convs, each
    followed by LeakyReLU(0.01), bring the map to 1x1; an equalized linear layer follows."""

    def __init__(self, spatial: int, channels: int = STYLE_DIM):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(channels, channels, 3, 2, 1), nn.LeakyReLU(0.01)]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x)
        if x.shape[-2:] != (1, 1):  # their view(-1, 512) would silently mix positions into the batch
            raise ValueError(f"e4e input too large: a style head ended at {tuple(x.shape[-2:])} "
                             f"instead of 1x1; resize the image with e4e_input first (<= 256 px)")
        return self.linear(x.flatten(1))


def _upsample_add(x: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=lateral.shape[-2:], mode="bilinear", align_corners=True) + lateral


class E4EEncoder(nn.Module):
    """Encoder4Editing with IR-SE-50: image [B,3,H,W] in [-1,1] -> w+ [B, n_styles, 512].

    `state_dict()` has exactly the checkpoint's `encoder.*` keys (prefix stripped);
    `latent_avg` is a non-persistent buffer set by the loader, in the file's shape.
    `input_size` (H, W) is the size the authors trained on; see `e4e_input`.
    """

    def __init__(self, n_styles: int = 18):
        super().__init__()
        if n_styles < 1:
            raise ValueError(f"n_styles must be >= 1, got {n_styles}")
        self.n_styles = n_styles
        self.input_size: tuple[int, int] = SQUARE_SIZE
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64),
                                         nn.PReLU(64))
        units, in_ch = [], 64
        for out_ch, n_units in STAGES:
            for u in range(n_units):
                units.append(BottleneckIRSE(in_ch, out_ch, 2 if u == 0 else 1))
                in_ch = out_ch
        self.body = nn.Sequential(*units)
        self.styles = nn.ModuleList(StyleHead(16 if i < COARSE else 32 if i < MIDDLE else 64)
                                    for i in range(n_styles))
        self.latlayer1 = nn.Conv2d(256, STYLE_DIM, 1)
        self.latlayer2 = nn.Conv2d(128, STYLE_DIM, 1)
        self.register_buffer("latent_avg", torch.zeros(n_styles, STYLE_DIM), persistent=False)

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's own output (their Encoder4Editing.forward), without latent_avg."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"e4e expects images [B, 3, H, W], got {tuple(x.shape)}")
        x = self.input_layer(x)
        taps = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in TAPS:
                taps.append(x)
        c1, c2, c3 = taps
        w0 = self.styles[0](c3)
        ws, features = [w0], c3
        for i in range(1, self.n_styles):
            if i == COARSE:
                features = p2 = _upsample_add(c3, self.latlayer1(c2))
            elif i == MIDDLE:
                features = _upsample_add(p2, self.latlayer2(c1))
            ws.append(w0 + self.styles[i](features))
        return torch.stack(ws, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """w+ including latent_avg: what SAM takes as `pSp(x, return_latents=True)[1]`."""
        return self.codes(x) + self.latent_avg


def e4e_input(image: torch.Tensor, size: int | tuple[int, int] = SQUARE_SIZE) -> torch.Tensor:
    """Resize images [B,3,H,W] in [-1,1] to the encoder's input size (H, W).

    The authors resize PIL images with torchvision's `Resize((256, 256))` (cars: `(192, 256)`)
    before ToTensor/Normalize(0.5, 0.5). That is PIL's bilinear filter, which widens its
    triangle kernel by the shrink factor, i.e. it antialiases: a plain bilinear interpolation
    would sample every 4th pixel of a 1024 px face and alias. `antialias=True` is PyTorch's
    implementation of that PIL filter (tests/test_e4e.py measures the difference). SAM itself
    resizes with Lanczos, which differs by little. The image stays in [-1, 1] up to float
    rounding (the filter's weights are non-negative and sum to 1).
    """
    size = (size, size) if isinstance(size, int) else tuple(size)
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"e4e_input expects images [B, 3, H, W], got {tuple(image.shape)}")
    if tuple(image.shape[-2:]) == size:
        return image
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)


def _opts(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    opts = ckpt.get("opts")
    if isinstance(opts, argparse.Namespace):
        return vars(opts)
    return dict(opts) if isinstance(opts, Mapping) else {}


def _prefixed(ckpt: Any, prefix: str) -> dict[str, torch.Tensor]:
    """pSp's get_keys: the `prefix.*` entries of `ckpt["state_dict"]` (or of a flat dict)."""
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, Mapping) else None
    if not isinstance(state, Mapping):
        return {}
    return {k[len(prefix) + 1:]: v for k, v in state.items()
            if isinstance(k, str) and k.startswith(prefix + ".") and torch.is_tensor(v)}


def e4e_decoder_state(ckpt: Mapping[str, Any] | str | Path) -> dict[str, torch.Tensor]:
    """The `decoder.*` weights (prefix stripped) of an e4e/pSp checkpoint: a rosinality
    StyleGAN2 generator state dict of size `opts["stylegan_size"]` (style_dim 512, n_mlp 8,
    channel_multiplier 2), loadable like a `g_ema`."""
    if not isinstance(ckpt, Mapping):

        ckpt = read_checkpoint(ckpt)
    return _prefixed(ckpt, "decoder")


def e4e_from_checkpoint(ckpt: Any, n_styles: int | None = None,
                        input_size: tuple[int, int] | None = None,
                        name: str = "the checkpoint") -> E4EEncoder:
    """Build the encoder from an already read checkpoint dict (see `load_e4e`)."""
    state = _prefixed(ckpt, "encoder")
    if not state or "input_layer.0.weight" not in state:
        found = ", ".join(map(str, list(ckpt)[:6])) if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise UserError(f"{name} is not an e4e (encoder4editing) checkpoint: it has no 'encoder.*' "
                        f"weights in a 'state_dict' (found: {found}). Use the authors' "
                        f"e4e_*_encode.pt files.")
    opts = _opts(ckpt)
    kind = opts.get("encoder_type", "Encoder4Editing")
    if kind != "Encoder4Editing":
        raise UserError(f"{name} holds a {kind} (pSp) encoder, not e4e's Encoder4Editing: its codes "
                        f"are computed differently. Use an e4e_*_encode.pt file.")
    heads = sorted({int(k.split(".")[1]) for k in state if k.split(".")[0] == "styles"
                    and k.split(".")[1].isdigit()})
    found = len(heads)
    if heads != list(range(found)) or found == 0:
        raise UserError(f"{name}: the e4e style heads are incomplete (found heads {heads[:20]}).")
    if n_styles is not None and n_styles != found:
        raise UserError(f"{name} encodes {found} styles, not the {n_styles} of the registered "
                        f"configuration (18 = 1024 px, 16 = 512 px, 14 = 256 px StyleGAN2).")
    size = opts.get("stylegan_size")
    if size and n_styles_for(int(size)) != found:
        raise UserError(f"{name} is inconsistent: {found} style heads but opts.stylegan_size {size}.")

    latent_avg = ckpt.get("latent_avg") if isinstance(ckpt, Mapping) else None
    if latent_avg is None:
        if opts.get("start_from_latent_avg", False):
            raise UserError(f"{name} has no 'latent_avg' although its codes are relative to it "
                            f"(start_from_latent_avg); the published e4e files store it.")
        latent_avg = torch.zeros(STYLE_DIM)  # codes are absolute: pSp adds nothing
    elif not opts.get("start_from_latent_avg", True):
        latent_avg = torch.zeros(STYLE_DIM)  # stored but not used by pSp.forward
    shapes = {(STYLE_DIM,), (1, STYLE_DIM), (found, STYLE_DIM), (1, found, STYLE_DIM)}
    if not torch.is_tensor(latent_avg) or tuple(latent_avg.shape) not in shapes:
        shape = tuple(latent_avg.shape) if torch.is_tensor(latent_avg) else type(latent_avg).__name__
        raise UserError(f"{name}: latent_avg has shape {shape}; expected [{found}, 512] or [512].")

    with torch.device("meta"):  # no random init: every tensor comes from the file
        model = E4EEncoder(found)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        first = " ".join(str(e).strip().splitlines()[:3])
        raise UserError(f"{name} does not hold an e4e IR-SE-50 encoder with {found} styles: {first}") from e
    model.latent_avg = latent_avg.float().to(model.input_layer[0].weight.device)
    dataset = str(opts.get("dataset_type", ""))
    model.input_size = CAR_SIZE if dataset.startswith("cars") else SQUARE_SIZE
    if input_size is not None:
        if len(input_size) != 2 or not all(isinstance(v, int) and 1 <= v <= 256 for v in input_size):
            raise UserError(f"{name}: input_size must be [height, width] of at most 256 px "
                            f"(the authors use 256x256, cars 192x256), got {input_size}.")
        model.input_size = (input_size[0], input_size[1])
    return model.eval().requires_grad_(False)


def load_e4e(path: str | Path, n_styles: int | None = None, input_size: tuple[int, int] | None = None,
             map_location: str | torch.device = "cpu") -> E4EEncoder:
    """Load a published e4e checkpoint (`e4e_*_encode.pt`): eval mode, no gradients.

    Read with weights_only=True (`core.checkpoints.read_checkpoint`; the `opts` dict, or an
    argparse.Namespace, is allowed). `n_styles` is inferred from the style heads and, when
    given, checked. `input_size` (H, W) defaults to the authors' transform for the file's
    `opts["dataset_type"]`: 192x256 for cars, 256x256 otherwise. Problems raise UserError.
    """

    path = Path(path)
    return e4e_from_checkpoint(read_checkpoint(path, map_location), n_styles, input_size, path.name)
