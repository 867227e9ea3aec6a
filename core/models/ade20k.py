"""The scene parser SAM segments cars with: CSAIL's ADE20K ResNet-50-dilated + PPM (deep sup.).

SAM (adobe-research/sam_inversion `src/segmenter_utils.py`, `segmenter_hrnet`, despite its
name) builds CSAILVision/semantic-segmentation-pytorch's `ade20k-resnet50dilated-ppm_deepsup`
from the published `encoder_epoch_20.pth` and `decoder_epoch_20.pth`
(sceneparsing.csail.mit.edu), runs it on the ImageNet-normalised picture, resizes the
class probabilities to the segmentation size (cars: 192 x 256) and takes the argmax. These are
the same two networks in the same state-dict layouts (both files load unchanged, `strict`):

- encoder (`ResnetDilated(resnet50, dilate_scale=8)`): CSAIL's deep-stem ResNet-50 (`conv1`
  3x3/2 3->64, `conv2` 64->64, `conv3` 64->128, each with `bn1..3`, max-pool), `layer1..4`
  Bottlenecks (3, 4, 6, 3; stride on the 3x3, `downsample.{0,1}`), with layer3's and
  layer4's strides removed and their 3x3 convolutions dilated (2 and 4; the first 3x3 of each
  keeps half of it), so features stay at 1/8 of the picture; no `fc`.
- decoder (`PPMDeepsup`, 150 classes, fc_dim 2048): pyramid pooling `ppm.{0..3}` (average to
  1, 2, 3, 6 cells, 1x1 conv 2048->512, BN, ReLU, bilinear back), `conv_last` (3x3 conv of the
  4096 channels to 512, BN, ReLU, dropout, 1x1 to the classes, with bias); the deep-supervision
  branch (`cbr_deepsup`, `conv_last_deepsup`) is in the file and loaded, never run (inference).

Their batch norms (`SynchronizedBatchNorm2d`) also save `_tmp_running_mean`,
`_tmp_running_var` and `_running_iter`, statistics only multi-GPU training reads: a file may
hold them or not (SAM loads with strict=False); they are dropped (`SYNC_BN_BUFFERS`).
Bilinear resizes with align_corners=False, as theirs. Class indices are ADE20K's 0-based ones
(SAM's merges in `core.segments.ADE20K_MERGES`). BatchNorm uses its stored statistics.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from core.checkpoints import read_checkpoint
from core.models.faceparser import check_state, parser_input

CLASSES = 150
FC_DIM = 2048
POOL_SCALES = (1, 2, 3, 6)
SYNC_BN_BUFFERS = ("._tmp_running_mean", "._tmp_running_var", "._running_iter")


class Bottleneck(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1, downsample: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, planes * 4, 1, stride, bias=False),
                                         nn.BatchNorm2d(planes * 4)) if downsample else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


def _layer(cin: int, planes: int, blocks: int, stride: int, dilation: int) -> nn.Sequential:
    """A ResNet stage after CSAIL's `_nostride_dilate`: with dilation d > 1 the stride is
    gone, the first block's 3x3 dilates by d // 2 and the others by d."""
    first = Bottleneck(cin, planes, stride if dilation == 1 else 1, max(1, dilation // 2), downsample=True)
    return nn.Sequential(first, *[Bottleneck(planes * 4, planes, 1, dilation) for _ in range(blocks - 1)])


class ResNet50Dilated(nn.Module):
    """Picture [B, 3, H, W] (ImageNet-normalised) -> the four stages' features (1/4, 1/8,
    1/8, 1/8; 256, 512, 1024, 2048 channels)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.conv3 = nn.Conv2d(64, 128, 3, 1, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(128)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = _layer(128, 64, 3, 1, 1)
        self.layer2 = _layer(256, 128, 4, 2, 1)
        self.layer3 = _layer(512, 256, 6, 2, 2)
        self.layer4 = _layer(1024, 512, 3, 2, 4)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = self.maxpool(F.relu(self.bn3(self.conv3(x))))
        out = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            out.append(x)
        return out


def _cbr(cin: int, cout: int, ks: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, ks, padding=ks // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class PPMDeepsup(nn.Module):
    """The four stages' features -> class logits [B, num_class, h, w] at 1/8 of the picture."""

    def __init__(self, num_class: int = CLASSES, fc_dim: int = FC_DIM):
        super().__init__()
        self.ppm = nn.ModuleList(nn.Sequential(nn.AdaptiveAvgPool2d(s), *_cbr(fc_dim, 512, 1))
                                 for s in POOL_SCALES)
        self.cbr_deepsup = nn.Sequential(*_cbr(fc_dim // 2, fc_dim // 4, 3))
        self.conv_last = nn.Sequential(*_cbr(fc_dim + len(POOL_SCALES) * 512, 512, 3), nn.Dropout2d(0.1),
                                       nn.Conv2d(512, num_class, 1))
        self.conv_last_deepsup = nn.Conv2d(fc_dim // 4, num_class, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        conv5 = features[-1]
        size = conv5.shape[2:]
        pooled = [F.interpolate(p(conv5), size, mode="bilinear", align_corners=False) for p in self.ppm]
        return self.conv_last(torch.cat([conv5, *pooled], 1))


@torch.no_grad()
def ade20k_probabilities(encoder: ResNet50Dilated, decoder: PPMDeepsup, picture: torch.Tensor,
                         size: tuple[int, int]) -> torch.Tensor:
    """A picture [1, 3, H, W] in [-1, 1] -> class probabilities [1, 150, *size] (the authors'
    `segmentation_module(..., segSize=size)`: logits resized bilinearly, then softmax)."""
    p = next(encoder.parameters())
    logits = decoder(encoder(parser_input(picture).to(p.device, p.dtype)))
    return F.interpolate(logits, size, mode="bilinear", align_corners=False).softmax(1)


def _load(path: str | Path, model: nn.Module, what: str, map_location) -> nn.Module:

    path = Path(path)
    state = check_state(path.name, what, read_checkpoint(path, map_location), model.state_dict(),
                        SYNC_BN_BUFFERS)
    model.load_state_dict(state, strict=True, assign=True)
    return model.float().eval().requires_grad_(False)


def load_ade20k_encoder(path: str | Path, map_location: str | torch.device = "cpu") -> ResNet50Dilated:
    """The published `encoder_epoch_20.pth` (a plain state dict), loaded strictly."""
    with torch.device("meta"):
        model = ResNet50Dilated()
    return _load(path, model, "ADE20K ResNet-50-dilated encoder", map_location)


def load_ade20k_decoder(path: str | Path, num_class: int = CLASSES, fc_dim: int = FC_DIM,
                        map_location: str | torch.device = "cpu") -> PPMDeepsup:
    """The published `decoder_epoch_20.pth` (a plain state dict), loaded strictly."""
    with torch.device("meta"):
        model = PPMDeepsup(num_class, fc_dim)
    return _load(path, model, "ADE20K PPM decoder", map_location)
