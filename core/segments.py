"""Class-agnostic image segments for per-region decisions (SAM's layer choice).

SAM decides per *semantic segment* which latent space a region is inverted in; the authors
use a different segmenter per domain (ADE20K PPM for cars, a face parser, detectron2 for
cats), none of them on the Hugging Face Hub in a form this app can load without more
ports. A segment only has to group pixels that invert alike, so this module offers a
small, deterministic, domain-free stand-in: SLIC-style k-means on colour and position
(Achanta et al. 2012), in plain PyTorch. The user can always paint over the result.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


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
