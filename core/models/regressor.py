"""The masked latent regressor of latent composition (Chai, Wulff & Isola, ICLR 2021).

Loads the authors' published encoder files (`{"state_dict", "optimizer", "epoch",
"val_loss"}`, e.g. `sgan_encoders_church_RGBM_model_final.pth`) with strict=True and
reproduces their forward pass (see tests/test_regressor.py). The state-dict keys are
torchvision's ResNet keys plus the head:

- **StyleGAN2** (`family="stylegan2"`, ResNet-34): no `fc`; a 1x1 `layer5.conv5`
  [n_latent*w_dim, 512] and global average pooling, reshaped to W+ `[B, n_latent, w_dim]`
  (n_latent 14/16/18 for 256/512/1024 px generators, used with `input_is_latent`). The input
  is area-resized to 256x256 first, so any image size works.
- **ProGAN** (`family="proggan"`, ResNet-18): global average pooling and `fc` [w_dim, 512]
  -> z `[B, w_dim, 1, 1]`; no resize (the input goes in at the generator's resolution).

`E(image, mask)`: `image` [B,3,H,W] in [-1,1]; `mask` [B,1,H,W] with 1 = known pixel,
0 = unknown (default: all known). The module multiplies the image by the mask itself, so
unknown pixels never reach the network, and appends the mask as the 4th channel, in the
convention each family was trained with: {0, 1} for StyleGAN2, {-0.5, 0.5} for ProGAN.
Masks should be binary (threshold after resizing them); a soft mask is used as given, as the
authors' code does. BatchNorm runs on its stored statistics (eval mode).

Numerics follow the authors' code (networks/stylegan_networks.py, utils/customnet.py): the
resize is `interpolate(mode="area")` of the concatenated [image * mask, mask] tensor (per
channel, so identical to resizing each part) and is skipped when the input is already
256x256 (area resizing to the same size is the identity). One change, exact up to float
rounding: `layer5.conv5` is a linear map, so it runs after the global average pooling
(on one vector per image) instead of before it (on every 8x8 position).
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from core.checkpoints import read_checkpoint
from core.errors import UserError


FAMILIES = ("stylegan2", "proggan")
STAGE_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}  # torchvision's BasicBlock ResNets
STAGE_WIDTHS = (64, 128, 256, 512)
NATIVE_SIZE = 256  # the StyleGAN2 regressors' input size (their `downsample` layer)


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock (same keys: conv1, bn1, conv2, bn2, downsample.0/1)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity)


class MaskedRegressor(nn.Module):
    """E(image, mask) -> W+ [B, n_latent, w_dim] (StyleGAN2) or z [B, w_dim, 1, 1] (ProGAN).

    `halfsize` (ProGAN encoders for generators under 150 px, none released) makes the stem's
    max-pool stride 1, as the authors' `CustomResNet(halfsize=True)`.
    """

    def __init__(self, resnet_depth: int = 34, n_latent: int = 14, w_dim: int = 512,
                 channels_in: int = 4, family: str = "stylegan2", halfsize: bool = False):
        super().__init__()
        if resnet_depth not in STAGE_BLOCKS:
            raise ValueError(f"resnet_depth must be one of {sorted(STAGE_BLOCKS)}, got {resnet_depth}")
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
        if channels_in not in (3, 4):
            raise ValueError(f"channels_in must be 4 (RGB + mask) or 3 (RGB), got {channels_in}")
        if n_latent < 1 or w_dim < 1 or (family == "proggan" and n_latent != 1):
            raise ValueError(f"n_latent={n_latent}, w_dim={w_dim} do not fit the {family} "
                             "regressor (ProGAN predicts one z: n_latent=1)")
        self.resnet_depth, self.n_latent, self.w_dim = resnet_depth, n_latent, w_dim
        self.channels_in, self.family = channels_in, family
        self.input_size = NATIVE_SIZE if family == "stylegan2" else None
        self.mask_offset = 0.5 if family == "proggan" else 0.0

        self.conv1 = nn.Conv2d(channels_in, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=1 if halfsize else 2, padding=1)
        in_ch = 64
        for i, (n, width) in enumerate(zip(STAGE_BLOCKS[resnet_depth], STAGE_WIDTHS)):
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(in_ch, width, stride)] + [BasicBlock(width, width) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            in_ch = width
        if family == "stylegan2":
            self.layer5 = nn.Sequential(OrderedDict(conv5=nn.Conv2d(in_ch, n_latent * w_dim, 1)))
        else:
            self.fc = nn.Linear(in_ch, w_dim)

    @property
    def config(self) -> dict[str, Any]:
        return {"resnet_depth": self.resnet_depth, "n_latent": self.n_latent, "w_dim": self.w_dim,
                "channels_in": self.channels_in, "family": self.family}

    def network_input(self, image: torch.Tensor, mask: torch.Tensor | None = None,
                      hide_unknown: bool = True) -> torch.Tensor:
        """[image * mask, mask] (ProGAN: mask - 0.5) as the network sees it, resized to 256x256
        for StyleGAN2 regressors. `hide_unknown=False` gives [image, mask] as the authors'
        `nets.encode` does (its callers pass images already zero where unknown; only their
        Enc+LBFGS consistency term feeds a whole G(w) with a partial mask)."""
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be [B, 3, H, W], got {list(image.shape)}")
        dtype = self.conv1.weight.dtype
        image = image.to(dtype)
        if mask is None:
            mask = image.new_ones((image.shape[0], 1, *image.shape[2:]))
        if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[2:] != image.shape[2:] \
                or mask.shape[0] not in (1, image.shape[0]):
            raise ValueError(f"mask must be [B, 1, H, W] like the image {list(image.shape)}, "
                             f"got {list(mask.shape)}")
        mask = mask.to(dtype)
        x = image * mask if hide_unknown else image
        if self.channels_in == 4:
            m = mask - self.mask_offset if self.mask_offset else mask
            x = torch.cat([x, m.expand(x.shape[0], -1, -1, -1)], dim=1)
        if self.input_size is not None and tuple(x.shape[2:]) != (self.input_size,) * 2:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="area")
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The ResNet trunk on a prepared input -> [B, 512] (global average pool of layer4)."""
        x = x.contiguous(memory_format=torch.channels_last)
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean(dim=(2, 3))

    def forward(self, image: torch.Tensor, mask: torch.Tensor | None = None,
                hide_unknown: bool = True) -> torch.Tensor:
        h = self.features(self.network_input(image, mask, hide_unknown))
        if self.family == "proggan":
            return self.fc(h)[:, :, None, None]
        conv5 = self.layer5.conv5
        w = F.linear(h, conv5.weight.flatten(1), conv5.bias)
        return w.view(-1, self.n_latent, self.w_dim)


def describe_state_dict(state: Mapping[str, Any], w_dim: int = 512) -> dict[str, Any]:
    """The regressor configuration a state dict was made for (best effort, for messages)."""
    found: dict[str, Any] = {}
    conv1 = state.get("conv1.weight")
    if torch.is_tensor(conv1) and conv1.dim() == 4:
        found["channels_in"] = int(conv1.shape[1])
    blocks = {int(k.split(".")[1]) for k in state if k.startswith("layer3.") and k.split(".")[1].isdigit()}
    depth = {2: 18, 6: 34}.get(len(blocks))
    if depth:
        found["resnet_depth"] = depth
    head = state.get("layer5.conv5.weight")
    if torch.is_tensor(head) and head.dim() == 4 and head.shape[0] % w_dim == 0:
        found["n_latent"] = int(head.shape[0]) // w_dim
    if "fc.weight" in state:
        found["family"] = "proggan"
    elif "layer5.conv5.weight" in state:
        found["family"] = "stylegan2"
    return found


def load_regressor(path: str | Path, resnet_depth: int = 34, n_latent: int = 14, w_dim: int = 512,
                   channels_in: int = 4, family: str = "stylegan2", halfsize: bool = False,
                   map_location: str | torch.device = "cpu") -> MaskedRegressor:
    """Load a published regressor file (`{"state_dict": ...}`) with strict=True -> eval mode,
    no gradients. The file is read with weights_only=True (or from our safetensors copy)."""

    path = Path(path)
    config = {"resnet_depth": resnet_depth, "n_latent": n_latent, "w_dim": w_dim,
              "channels_in": channels_in, "family": family}
    try:
        with torch.device("meta"):  # no random init: every tensor comes from the file
            model = MaskedRegressor(resnet_depth, n_latent, w_dim, channels_in, family, halfsize)
    except ValueError as e:
        raise UserError(f"{path.name}: unsupported regressor configuration {config}: {e}") from e
    ckpt = read_checkpoint(path, map_location)
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        bare = isinstance(ckpt, dict) and "conv1.weight" in ckpt
        keys = ", ".join(map(str, list(ckpt)[:8])) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise UserError(
            f"{path.name} is not a latent-composition regressor checkpoint: it has no 'state_dict' "
            f"of weights (found: {keys}). "
            + ("It looks like a bare state dict: save it as {'state_dict': state_dict}."
               if bare else "Use the authors' *_RGBM_model_final.pth file."))
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        found = describe_state_dict(state, w_dim)
        differ = {k: v for k, v in found.items() if config.get(k) != v}
        hint = (" The file looks like " + ", ".join(f"{k}={v!r}" for k, v in differ.items()) + "."
                if differ else "")
        first = " ".join(str(e).strip().splitlines()[:2])
        raise UserError(f"{path.name} does not match the regressor configuration {config}.{hint} "
                        f"({first})") from e
    model = model.to(torch.float32, memory_format=torch.channels_last)
    return model.eval().requires_grad_(False)
