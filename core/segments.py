"""Image segments for per-region decisions (SAM's layer choice).

SAM decides per *semantic segment* which latent space a region is inverted in. The authors
segment faces with a face parser (BiSeNet, every face part fused into one segment) and cars
with CSAIL's ADE20K scene parser (a few classes merged); `semantic_segments` turns either
network's class map into segments with their merges (the networks: core/models/faceparser.py,
core/models/ade20k.py). For any other picture, `superpixels` is a small, deterministic,
domain-free stand-in: SLIC-style k-means on colour and position (Achanta et al. 2012), in
plain PyTorch. The user can always paint over the resulting layer map.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

FACE_PARTS = (1, 2, 3, 4, 5, 7, 8, 10, 11, 12, 13, 14)
"""CelebAMask-HQ classes SAM's `segmenter_face(fuse_face_regions=True)` sets to 3: skin, brows,
eyes, ears, nose, mouth, lips and neck become one segment (glasses, earrings, necklace, cloth,
hair, hat and background stay apart)."""
ADE20K_MERGES = ((6, 3), (13, 3), (21, 60), (102, 20), (83, 20), (29, 9))
"""SAM's `segmenter_hrnet` merges (0-based ADE20K classes, applied in this order): road and
earth into floor, water into river, van and truck into car, field into grass."""


def fuse_face_parts(labels: torch.Tensor) -> torch.Tensor:
    """Face-parser classes -> the same with every face part in class 3 (the authors' fuse)."""
    out = labels.clone()
    out[torch.isin(out, torch.tensor(FACE_PARTS, dtype=out.dtype, device=out.device))] = 3
    return out


def merge_ade20k(labels: torch.Tensor) -> torch.Tensor:
    """ADE20K classes -> the same with the authors' merges applied in their order."""
    out = labels.clone()
    for source, target in ADE20K_MERGES:
        out[out == source] = target
    return out


def semantic_segments(classes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A class map [H, W] (merges applied) -> segments [h, w] at `size`: one segment per class
    present (the authors' refine() loops over the class values, connected or not), resized
    with nearest neighbours and numbered 0..n-1."""
    if tuple(classes.shape) != tuple(size):
        classes = F.interpolate(classes[None, None].float(), size=size, mode="nearest")[0, 0].long()
    return relabel(classes.long().cpu())


def superpixels(image: torch.Tensor, count: int = 24, compactness: float = 0.5,
                iterations: int = 10, work_size: int = 128) -> torch.Tensor:
    """image [1, 3, H, W] in [-1, 1] -> labels [H, W] (long, 0..count-1, deterministic).

    k-means with centres seeded on a regular grid; the feature of a pixel is its colour
    (in [0, 1]) and its position scaled by `compactness` (larger = blockier segments).
    Runs at `work_size` px and upsamples the labels (nearest), which is plenty for
    choosing layers whose masks are at most 128 px.
    """
    if image.ndim != 4 or image.shape[:2] != (1, 3):
        raise ValueError(f"image must be [1, 3, H, W], got {tuple(image.shape)}")
    H, W = image.shape[-2:]
    h = min(work_size, H)
    w = max(1, round(W * h / H))
    small = F.interpolate(image.float(), size=(h, w), mode="area")[0]
    ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    colour = (small.to("cpu") + 1) / 2
    feats = torch.cat([colour, compactness * ys[None], compactness * xs[None]]).reshape(5, -1).T

    rows = max(1, round(math.sqrt(count * h / w)))
    cols = max(1, math.ceil(count / rows))
    cy = ((torch.arange(rows) + 0.5) / rows * (h - 1)).long()
    cx = ((torch.arange(cols) + 0.5) / cols * (w - 1)).long()
    seeds = (cy[:, None] * w + cx[None, :]).flatten()[:count]
    centres = feats[seeds].clone()
    for _ in range(iterations):
        labels = torch.cdist(feats, centres).argmin(1)
        sums = torch.zeros_like(centres).index_add_(0, labels, feats)
        counts = torch.bincount(labels, minlength=len(centres)).float()
        keep = counts > 0
        centres[keep] = sums[keep] / counts[keep, None]
    labels = torch.cdist(feats, centres).argmin(1).reshape(1, 1, h, w).float()
    labels = F.interpolate(labels, size=(H, W), mode="nearest")[0, 0].long()
    return relabel(labels)


def relabel(labels: torch.Tensor) -> torch.Tensor:
    """Consecutive labels 0..n-1 in order of first appearance (empty clusters dropped)."""
    _, inverse = torch.unique(labels, return_inverse=True)
    return inverse


def segment_means(values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean of `values` [H, W] over each segment of `labels` [H, W] -> [n_segments]."""
    n = int(labels.max()) + 1
    flat = labels.flatten()
    sums = torch.zeros(n, dtype=torch.float64).index_add_(0, flat, values.flatten().double())
    return sums / torch.bincount(flat, minlength=n).clamp(min=1).double()
