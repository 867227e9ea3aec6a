"""Reduced precision only where it holds: a model that overflows in half precision is re-run
in float32, once, and stays float32.

On a GPU the models run in bfloat16 (or fp16 where the GPU lacks bfloat16) for speed; the
authors ran float32, and StyleGAN-family activations can exceed fp16's range (65504), which
turns a picture into NaN (black) or a clipped white field. Every picture leaves the engine
through `core.images.to_uint8`, which calls `check_picture`: a non-finite or saturated picture
made while a reduced-precision model was in use raises `ReducedPrecisionFailed`; the handler
wrapper (`core.gpu.float32_on_overflow`) then marks those models float32 in the app context
and runs the call again.

What a call handed out in half precision is a `CallState` that travels with the call, not
with a thread: Gradio (and ZeroGPU's worker) may run each step of a generator handler on
another thread, so the state is made current around every step (`each_step`) through a
context variable.
"""
from __future__ import annotations

import contextlib
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Iterator, TypeVar

import torch

SATURATED = 0.98  # share of values at the clamp bounds that means "overflowed", not "a white wall"

T = TypeVar("T")


@dataclass
class CallState:
    """The reduced-precision models (registry ids) handed out during one handler call."""
    reduced: set[str] = field(default_factory=set)


_current: ContextVar[CallState | None] = ContextVar("reduced_precision_call", default=None)


class ReducedPrecisionFailed(Exception):
    """A picture overflowed while these (model id) ran in reduced precision."""

    def __init__(self, model_ids: set[str]):
        super().__init__(f"reduced precision overflowed in {sorted(model_ids)}")
        self.model_ids = model_ids


@contextlib.contextmanager
def within(state: CallState) -> Iterator[CallState]:
    """`state` is the current call's while the block runs (on this thread, in this context)."""
    token = _current.set(state)
    try:
        yield state
    finally:
        _current.reset(token)


def each_step(steps: Iterator[T], state: CallState) -> Iterator[T]:
    """The items of a generator handler, each step computed with `state` current, whichever
    thread asks for the next one; closing this closes `steps` (inside `state` too)."""
    try:
        while True:
            with within(state):
                try:
                    item = next(steps)
                except StopIteration:
                    return
            yield item
    finally:
        with within(state):
            steps.close()


def note_reduced(model_id: str) -> None:
    """ctx.model handed out `model_id` in half precision during the current call."""
    state = _current.get()
    if state is not None:
        state.reduced.add(model_id)


def check_picture(images: torch.Tensor) -> None:
    """Raise `ReducedPrecisionFailed` if `images` ([-1, 1] pictures) are broken while a
    reduced-precision model was used in the current call; otherwise do nothing."""
    state = _current.get()
    if state is None or not state.reduced:
        return
    x = images.detach()
    broken = not bool(torch.isfinite(x).all())
    if not broken and x.numel():
        broken = float((x.abs() >= 1).float().mean()) >= SATURATED
    if broken:
        raise ReducedPrecisionFailed(set(state.reduced))
