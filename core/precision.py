"""Reduced precision only where it holds: a model that overflows in half precision is re-run
in float32, once, and stays float32.

On a GPU the models run in bfloat16 (or fp16 where the GPU lacks bfloat16) for speed; the
authors ran float32, and StyleGAN-family activations can exceed fp16's range (65504), which
turns a picture into NaN (black) or a clipped white field. Every picture leaves the engine
through `core.images.to_uint8`, which calls `check_picture`: a non-finite or saturated picture
made while a reduced-precision model was in use raises `ReducedPrecisionFailed`; the handler
wrapper (`core.ui.gpu_task`) then marks those models float32 in the app context and runs the
call again.
"""
from __future__ import annotations

import threading

import torch

SATURATED = 0.98  # share of values at the clamp bounds that means "overflowed", not "a white wall"

_call = threading.local()  # the reduced-precision models handed out during this thread's call


class ReducedPrecisionFailed(Exception):
    """A picture overflowed while these (model id) ran in reduced precision."""

    def __init__(self, model_ids: set[str]):
        super().__init__(f"reduced precision overflowed in {sorted(model_ids)}")
        self.model_ids = model_ids


def start_call() -> None:
    _call.reduced = set()


def note_reduced(model_id: str) -> None:
    """ctx.model handed out `model_id` in half precision during this call."""
    if getattr(_call, "reduced", None) is not None:
        _call.reduced.add(model_id)


def check_picture(images: torch.Tensor) -> None:
    """Raise `ReducedPrecisionFailed` if `images` ([-1, 1] pictures) are broken while a
    reduced-precision model was used in this call; otherwise do nothing."""
    reduced = getattr(_call, "reduced", None)
    if not reduced:
        return
    x = images.detach()
    broken = not bool(torch.isfinite(x).all())
    if not broken and x.numel():
        broken = float((x.abs() >= 1).float().mean()) >= SATURATED
    if broken:
        raise ReducedPrecisionFailed(set(reduced))


def end_call() -> None:
    _call.reduced = None
