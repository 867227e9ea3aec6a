"""Are two registered generators the same network? Render the same seeds with both and compare.

Why: one network is often published in several layouts (NVIDIA's pickle, rosinality's `.pt`,
genforce's `.pth`); PandA's AFHQ-dog factors were computed on the authors' genforce port,
and whether the Hub's rosinality copy is the same network can only be settled by running both.

    python -m scripts.same_network stylegan2-afhqdog-512 stylegan2-afhqdog-512-genforce
        [--seeds 0,1,2,3] [--registry weights.json] [--device cpu|cuda] [--tolerance 0.01]

Both are fetched and loaded through the registry (float32), seed t is drawn by each model's
own sampler, and the pictures (in [-1, 1], with each file's fixed noise) are compared. Exit
status 0 when the largest difference is within the tolerance, 1 otherwise.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from core.context import AppContext
from core.errors import UserError
from core.hub import load_registry

ROOT = Path(__file__).resolve().parent.parent


@torch.inference_mode()
def largest_difference(ctx: AppContext, first: str, second: str, seeds: list[int]) -> float:
    """max |picture_a - picture_b| over the seeds (pictures in [-1, 1])."""
    pictures = []
    for model_id in (first, second):
        G = ctx.model(model_id, torch.float32)
        pictures.append(G.render(G.sample_latents(seeds)).float().cpu())
    if pictures[0].shape != pictures[1].shape:
        raise UserError(f"{first} draws {tuple(pictures[0].shape[-2:])} pictures and {second} "
                        f"{tuple(pictures[1].shape[-2:])}: not the same network.")
    return float((pictures[0] - pictures[1]).abs().max())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.same_network", description=__doc__.split("\n")[0])
    ap.add_argument("first")
    ap.add_argument("second")
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--registry", type=Path, default=ROOT / "weights.json")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tolerance", type=float, default=0.01, help="largest |difference| allowed (of 2)")
    args = ap.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
        ctx = AppContext(load_registry(args.registry), torch.device(args.device))
        diff = largest_difference(ctx, args.first, args.second, seeds)
    except (UserError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    same = diff <= args.tolerance
    print(f"{args.first} vs {args.second}, seeds {seeds}: largest |difference| {diff:.3g} "
          f"(pictures in [-1, 1]): {'the same network' if same else 'different networks'}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
