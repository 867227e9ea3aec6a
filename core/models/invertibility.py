"""SAM's invertibility predictor (Parmar et al., CVPR 2022): where is an image hard to invert?

SAM picks, per image segment, the most editable latent space whose *predicted* reconstruction
error is small enough. The prediction comes from this network: a DeepLab-v3+ (ResNet-101,
output stride 16) with 8 output channels, shared by five tiny heads, one per latent space
(`SPACES`). Each head maps the 8 channels to a non-negative [B, 1, H, W] map of the LPIPS
(VGG, spatial) error that an inversion into that space is expected to leave; lower = easier.
It is not a probability; SAM compares segment means of these maps with a threshold (0.225).

Layout (adobe-research/sam_inversion `src/model_utils.py`, `load_invertibility` and
`layer_head`, with jfzhang95/pytorch-deeplab-xception @ 9135e104 as the backbone). The
published `invertibility_{cars,faces,lsuncats}_sg2.pt` is a dict
`{"sd_base": DeepLab state dict, "W+": head, "F4": head, "F6": head, "F8": head, "F10": head}`
and loads here unchanged:

- `sd_base`: `backbone.*` (ResNet-101: `conv1`, `bn1`, `layer1..4`; `layer4` is the
  "multi-grid" unit, dilations 2/4/8, stride 1), `aspp.*` (`aspp1..4` with dilations
  1/6/12/18, `global_avg_pool.{1,2}`, `conv1`, `bn1`), `decoder.*` (`conv1`, `bn1`,
  `last_conv.{0,1,4,5,8}`). Every BatchNorm has its running statistics and
  `num_batches_tracked`.
- heads: `m.0` ConvTranspose2d(8, 4, 3, padding 1), `m.1` BatchNorm2d(4), LeakyReLU 0.2,
  `m.3` ConvTranspose2d(4, 1, 1), ReLU.

Input: the image in [-1, 1] at full resolution (SAM does not resize it). Output: one map per
space at the input's H x W (the DeepLab logits are upsampled bilinearly with
align_corners=True before the heads, as in the authors' code). BatchNorm always uses its
stored statistics: the model is only ever used in eval mode. Run it under
`torch.inference_mode()`; tests/test_invertibility.py checks it against the authors' code.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from core.checkpoints import read_checkpoint
from core.errors import UserError


SPACES = ("W+", "F4", "F6", "F8", "F10")
"""Latent spaces with a head, in SAM's order from most editable to most faithful."""
NUM_CLASSES = 8  # DeepLab's output channels, the heads' input
BASE = "sd_base"  # the checkpoint entry holding the DeepLab state dict


class Bottleneck(nn.Module):
    """ResNet bottleneck (1x1, 3x3 with stride/dilation, 1x1 x4) with a projection shortcut
    on the first block of each stage."""

    def __init__(self, in_ch: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=dilation, dilation=dilation,
                               bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if downsample:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, planes * 4, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes * 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


def _stage(in_ch: int, planes: int, dilations: list[int], stride: int) -> nn.Sequential:
    """Blocks of one stage; only the first block strides and projects the shortcut."""
    return nn.Sequential(*[
        Bottleneck(in_ch if i == 0 else planes * 4, planes, stride if i == 0 else 1, d,
                   downsample=i == 0)
        for i, d in enumerate(dilations)])


class ResNet101(nn.Module):
    """DeepLab's ResNet-101 at output stride 16: strides 1/2/2/1 for layer1..4, and layer4 is
    the multi-grid unit (3 blocks, dilations 2*[1, 2, 4]) instead of torchvision's 3 plain
    blocks. Returns the stride-16 features [B, 2048] and layer1's [B, 256] (stride 4)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = _stage(64, 64, [1] * 3, 1)
        self.layer2 = _stage(256, 128, [1] * 4, 2)
        self.layer3 = _stage(512, 256, [1] * 23, 2)
        self.layer4 = _stage(1024, 512, [2, 4, 8], 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        low = self.layer1(x)
        return self.layer4(self.layer3(self.layer2(low))), low


def _conv_bn_relu(in_ch: int, out_ch: int, kernel: int, dilation: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, kernel, padding=dilation * (kernel // 2), dilation=dilation,
                      bias=False), nn.BatchNorm2d(out_ch), nn.ReLU()]


class ASPPBranch(nn.Module):
    """One atrous branch (keys `atrous_conv`, `bn`)."""

    def __init__(self, in_ch: int, kernel: int, dilation: int):
        super().__init__()
        self.atrous_conv, self.bn, self.relu = _conv_bn_relu(in_ch, 256, kernel, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.atrous_conv(x)))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: four branches (1x1, then 3x3 at dilations 6/12/18) and
    image pooling, concatenated (1280 channels) and projected to 256."""

    def __init__(self, in_ch: int = 2048):
        super().__init__()
        self.aspp1 = ASPPBranch(in_ch, 1, 1)
        self.aspp2 = ASPPBranch(in_ch, 3, 6)
        self.aspp3 = ASPPBranch(in_ch, 3, 12)
        self.aspp4 = ASPPBranch(in_ch, 3, 18)
        self.global_avg_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), *_conv_bn_relu(in_ch, 256, 1))
        self.conv1, self.bn1, self.relu = _conv_bn_relu(1280, 256, 1)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the authors upsample the 1x1 pooled branch bilinearly (align_corners=True): that is
        # a constant map, so broadcasting it is the same and copies nothing
        pooled = self.global_avg_pool(x).expand(-1, -1, *x.shape[2:])
        x = torch.cat([self.aspp1(x), self.aspp2(x), self.aspp3(x), self.aspp4(x), pooled], 1)
        return self.dropout(self.relu(self.bn1(self.conv1(x))))


class Decoder(nn.Module):
    """DeepLab-v3+ decoder: ASPP features upsampled to layer1's size, joined with a 48-channel
    projection of layer1, two 3x3 convs and a 1x1 conv to `num_classes` (with bias)."""

    def __init__(self, num_classes: int = NUM_CLASSES, low_ch: int = 256):
        super().__init__()
        self.conv1, self.bn1, self.relu = _conv_bn_relu(low_ch, 48, 1)
        # Dropouts keep the authors' indices: state-dict keys last_conv.{0,1,4,5,8}
        self.last_conv = nn.Sequential(*_conv_bn_relu(304, 256, 3), nn.Dropout(0.5),
                                       *_conv_bn_relu(256, 256, 3), nn.Dropout(0.1),
                                       nn.Conv2d(256, num_classes, 1))

    def forward(self, x: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        low = self.relu(self.bn1(self.conv1(low)))
        x = F.interpolate(x, size=low.shape[2:], mode="bilinear", align_corners=True)
        return self.last_conv(torch.cat([x, low], 1))


class DeepLabV3Plus(nn.Module):
    """`DeepLab(backbone="resnet", output_stride=16, num_classes=8)` of pytorch-deeplab-xception
    (same state-dict keys); logits upsampled to the input size (bilinear, align_corners=True)."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.backbone = ResNet101()
        self.aspp = ASPP()
        self.decoder = Decoder(num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, low = self.backbone(x)
        out = self.decoder(self.aspp(features), low)
        return F.interpolate(out, size=x.shape[2:], mode="bilinear", align_corners=True)


class InvertibilityHead(nn.Module):
    """SAM's `layer_head`: 8 DeepLab channels -> one non-negative error map (keys m.0/1/3)."""

    def __init__(self, in_ch: int = NUM_CLASSES):
        super().__init__()
        self.m = nn.Sequential(nn.ConvTranspose2d(in_ch, 4, 3, 1, 1), nn.BatchNorm2d(4),
                               nn.LeakyReLU(0.2), nn.ConvTranspose2d(4, 1, 1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x)


class InvertibilityPredictor(nn.Module):
    """DeepLab-v3+ backbone plus one head per latent space.

    `forward(x)`: x [B, 3, H, W] in [-1, 1] -> {space: [B, 1, H, W] predicted LPIPS error}.
    """

    def __init__(self, spaces: tuple[str, ...] = SPACES):
        super().__init__()
        self.spaces = tuple(spaces)
        self.base = DeepLabV3Plus()
        self.heads = nn.ModuleDict({name: InvertibilityHead() for name in self.spaces})

    def parts(self) -> dict[str, nn.Module]:
        """The modules behind each entry of the published checkpoint dict."""
        return {BASE: self.base, **{name: self.heads[name] for name in self.spaces}}

    def checkpoint_state(self) -> dict[str, dict[str, torch.Tensor]]:
        """The state in the published file layout (`{"sd_base": ..., "W+": ..., ...}`)."""
        return {part: module.state_dict() for part, module in self.parts().items()}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an image batch [B, 3, H, W], got {list(x.shape)}")
        logits = self.base(x.contiguous(memory_format=torch.channels_last))
        return {name: self.heads[name](logits) for name in self.spaces}


def _check_part(file: str, part: str, state: object, expected: Mapping[str, torch.Tensor]) -> None:
    """UserError naming what a checkpoint entry lacks or has too much of."""
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise UserError(f"{file}: entry {part!r} is not a state dict (a dict of tensors).")
    # like the authors' load_state_dict, accept a plain dict without BatchNorm's
    # `num_batches_tracked` (torch fills it in; it plays no part in inference)
    missing = [k for k in expected if k not in state and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
        problems = ([f"{len(missing)} missing key(s): {few(missing)}"] if missing else []) + (
            [f"{len(unexpected)} unexpected key(s): {few(unexpected)}"] if unexpected else [])
        raise UserError(f"{file} is not a SAM invertibility checkpoint: entry {part!r} has "
                        f"{'; '.join(problems)}.")


def load_invertibility(path: str | Path,
                       map_location: str | torch.device = "cpu") -> InvertibilityPredictor:
    """Load a published `invertibility_*_sg2.pt` (read with weights_only=True) strictly:
    every entry of `SPACES` and `sd_base` must be there with exactly the authors' keys and
    shapes (other top-level entries are ignored, as the authors' loader does). Returns the
    predictor in eval mode, float32, without gradients, channels-last (oneDNN/cuDNN's fast
    layout)."""

    path = Path(path)
    ckpt = read_checkpoint(path, map_location)
    if not isinstance(ckpt, Mapping):
        raise UserError(f"{path.name} is not a SAM invertibility checkpoint (expected a dict "
                        f"with {BASE!r} and {', '.join(SPACES)}).")
    lacking = [part for part in (BASE, *SPACES) if part not in ckpt]
    if lacking:
        raise UserError(f"{path.name} is not a SAM invertibility checkpoint: it lacks "
                        f"{', '.join(map(repr, lacking))} (expected {BASE!r} with the DeepLab "
                        f"weights and one head per space: {', '.join(SPACES)}).")
    with torch.device("meta"):  # no random init: every tensor comes from the file
        model = InvertibilityPredictor()
    for part, module in model.parts().items():
        _check_part(path.name, part, ckpt[part], module.state_dict())
        try:
            module.load_state_dict(ckpt[part], strict=True, assign=True)
        except RuntimeError as e:  # right keys, wrong shapes
            raise UserError(f"{path.name}: entry {part!r} does not fit SAM's invertibility "
                            f"predictor: {' '.join(str(e).strip().splitlines()[:3])}") from e
    model = model.to(torch.float32, memory_format=torch.channels_last)
    return model.eval().requires_grad_(False)
