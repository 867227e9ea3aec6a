"""The face parser SAM segments faces with: BiSeNet (ResNet-18) trained on CelebAMask-HQ.

SAM (adobe-research/sam_inversion `src/segmenter_utils.py`, `segmenter_face`) loads
zllrunning/face-parsing.PyTorch's `BiSeNet(n_classes=19)` from its published
`79999_iter.pth` and labels every pixel with the argmax of the first output. This is the same
network in the same state-dict layout (the file loads unchanged, `strict`):

- `cp.resnet.*`: ResNet-18 (`conv1` 7x7/2, `bn1`, max-pool, `layer1..4`, two BasicBlocks
  each, 1x1 `downsample.{0,1}` where the shape changes); features at 1/8, 1/16, 1/32;
- `cp.arm16`, `cp.arm32` (attention refinement: `conv` ConvBNReLU 3x3, global average,
  `conv_atten` 1x1, `bn_atten`, sigmoid, times the features), `cp.conv_head32`,
  `cp.conv_head16` (ConvBNReLU 3x3), `cp.conv_avg` (ConvBNReLU 1x1 on the global average);
- `ffm` (feature fusion of the 1/8 ResNet features and the context path: `convblk` 1x1,
  `conv1`/`conv2` squeeze-excitation), `conv_out`, `conv_out16`, `conv_out32`
  (ConvBNReLU 3x3 + 1x1 to the classes). Only `conv_out` makes the labels (the other two are
  the training's auxiliary heads; they are loaded, never run).

Upsampling as the authors': nearest inside the context path, bilinear with
align_corners=True to the input size. Input: an RGB picture in [0, 1] normalised with the
ImageNet mean/std (`parser_input`). Classes (CelebAMask-HQ): 0 background, 1 skin, 2/3
brows, 4/5 eyes, 6 glasses, 7/8 ears, 9 earring, 10 nose, 11 mouth, 12/13 lips, 14 neck,
15 necklace, 16 cloth, 17 hair, 18 hat. BatchNorm uses its stored statistics (eval only).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from core.checkpoints import read_checkpoint
from core.errors import UserError


CLASSES = 19
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ConvBNReLU(nn.Module):
    """conv (no bias) -> BatchNorm -> ReLU, keys `conv`, `bn`."""

    def __init__(self, cin: int, cout: int, ks: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, ks, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if cin != cout or stride != 1 else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(shortcut + residual)


class ResNet18(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)]
        for i, (cin, cout, stride) in enumerate(widths, 1):
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.layer1(self.maxpool(F.relu(self.bn1(self.conv1(x)))))
        feat8 = self.layer2(x)
        feat16 = self.layer3(feat8)
        return feat8, feat16, self.layer4(feat16)


def _global_average(x: torch.Tensor) -> torch.Tensor:
    return x.mean((2, 3), keepdim=True)  # F.avg_pool2d over the whole map


class AttentionRefinement(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, cout)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        return feat * torch.sigmoid(self.bn_atten(self.conv_atten(_global_average(feat))))


class ContextPath(nn.Module):
    def __init__(self):
        super().__init__()
        self.resnet = ResNet18()
        self.arm16 = AttentionRefinement(256, 128)
        self.arm32 = AttentionRefinement(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128)
        self.conv_head16 = ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feat8, feat16, feat32 = self.resnet(x)
        avg = F.interpolate(self.conv_avg(_global_average(feat32)), feat32.shape[2:], mode="nearest")
        up32 = self.conv_head32(F.interpolate(self.arm32(feat32) + avg, feat16.shape[2:], mode="nearest"))
        up16 = self.conv_head16(F.interpolate(self.arm16(feat16) + up32, feat8.shape[2:], mode="nearest"))
        return feat8, up16, up32


class FeatureFusion(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.convblk = ConvBNReLU(cin, cout, 1, 1, 0)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

    def forward(self, fsp: torch.Tensor, fcp: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([fsp, fcp], dim=1))
        atten = torch.sigmoid(self.conv2(F.relu(self.conv1(_global_average(feat)))))
        return feat * atten + feat


class BiSeNetOutput(nn.Module):
    def __init__(self, cin: int, mid: int, n_classes: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, mid)
        self.conv_out = nn.Conv2d(mid, n_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class FaceParser(nn.Module):
    """BiSeNet(n_classes): picture [B, 3, H, W] (ImageNet-normalised; H, W multiples of 32
    keep the authors' shapes) -> class logits [B, n_classes, H, W] (their first output)."""

    def __init__(self, n_classes: int = CLASSES):
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusion(256, 256)
        self.conv_out = BiSeNetOutput(256, 256, n_classes)
        self.conv_out16 = BiSeNetOutput(128, 64, n_classes)  # auxiliary heads (training only)
        self.conv_out32 = BiSeNetOutput(128, 64, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat8, cp8, _ = self.cp(x)
        out = self.conv_out(self.ffm(feat8, cp8))
        return F.interpolate(out, x.shape[2:], mode="bilinear", align_corners=True)

    @torch.no_grad()
    def labels(self, picture: torch.Tensor) -> torch.Tensor:
        """A picture [1, 3, H, W] in [-1, 1] -> class per pixel [H, W] (long, CPU)."""
        p = next(self.parameters())
        return self(parser_input(picture).to(p.device, p.dtype))[0].argmax(0).cpu()


def parser_input(picture: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1] -> ImageNet-normalised (the authors' ToTensor + Normalize)."""
    mean = torch.tensor(IMAGENET_MEAN, device=picture.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=picture.device).view(1, 3, 1, 1)
    return ((picture.float() + 1) / 2 - mean) / std


def check_state(file: str, what: str, state: object, expected: Mapping[str, torch.Tensor],
                training_only: tuple[str, ...] = ()) -> dict:
    """The file's state dict, checked key by key against the model's (`UserError` naming what
    is missing or extra); BatchNorm's `num_batches_tracked` may be absent (older PyTorch
    saves, no part in inference) and is filled in; keys ending in one of `training_only`
    (buffers only training reads) may be there and are dropped."""
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise UserError(f"{file} is not a {what} checkpoint (expected a state dict of tensors).")
    state = {k.removeprefix("module."): v for k, v in state.items()  # a DataParallel save
             if not (training_only and k.endswith(training_only))}
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")
        problems = ([f"{len(missing)} missing key(s): {few(missing)}"] if missing else []) + (
            [f"{len(unexpected)} unexpected key(s): {few(unexpected)}"] if unexpected else [])
        raise UserError(f"{file} is not a {what} checkpoint: {'; '.join(problems)}.")
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if wrong:
        raise UserError(f"{file} does not fit the {what}: {', '.join(wrong[:3])}.")
    return {**{k: torch.zeros((), dtype=torch.long) for k in expected if k not in state}, **state}


def load_face_parser(path: str | Path, n_classes: int = CLASSES,
                     map_location: str | torch.device = "cpu") -> FaceParser:
    """The published `79999_iter.pth` (a plain state dict, read with weights_only=True),
    loaded strictly; eval mode, float32, no gradients."""

    path = Path(path)
    with torch.device("meta"):
        model = FaceParser(n_classes)
    state = check_state(path.name, "BiSeNet face-parser", read_checkpoint(path, map_location),
                        model.state_dict())
    model.load_state_dict(state, strict=True, assign=True)
    return model.float().eval().requires_grad_(False)
