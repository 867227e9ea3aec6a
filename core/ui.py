"""Gradio-side helpers shared by the tabs: error translation and the ZeroGPU decorator."""
from __future__ import annotations

import functools
import inspect
import logging
from typing import Callable

import gradio as gr
import torch

from core.errors import UserError

log = logging.getLogger("spatial_gan_studio")

OOM_MESSAGE = ("The GPU ran out of memory. Try a smaller batch or resolution, close other "
               "GPU programs, or restart the app to free memory.")


def _translate(e: BaseException) -> gr.Error:
    if isinstance(e, gr.Error):
        return e
    if isinstance(e, UserError):
        return gr.Error(str(e))
    if isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower():
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return gr.Error(OOM_MESSAGE)
    log.exception("unexpected error in a handler")
    return gr.Error(f"Something went wrong ({type(e).__name__}: {e}). The details are in "
                    f"the server log; your inputs and earlier results are unchanged.")


def user_errors(fn: Callable) -> Callable:
    """Wrap a Gradio handler so UserError, out-of-memory and unexpected exceptions reach
    the page as readable `gr.Error` messages instead of tracebacks. Keeps the signature
    (gr.Progress defaults included) and works for generator handlers."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as e:
                raise _translate(e) from e
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            raise _translate(e) from e
    return wrapper


try:  # ZeroGPU on Hugging Face Spaces; a no-op decorator everywhere else
    import spaces  # type: ignore

    def gpu(duration: int = 60) -> Callable[[Callable], Callable]:
        return spaces.GPU(duration=duration)
except ImportError:
    def gpu(duration: int = 60) -> Callable[[Callable], Callable]:
        return lambda fn: fn


MAX_SEED = 2 ** 31 - 1


def parse_seeds(text: str | int | float | None, max_count: int = 8) -> list[int]:
    """"3" or "1, 5, 7" (or a number) -> a list of seeds, checked for range and count."""
    if text is None or str(text).strip() == "":
        raise UserError("Enter a seed (a whole number), or several separated by commas.")
    seeds = []
    for part in str(text).replace(";", ",").split(","):
        part = part.strip()
        try:
            value = int(float(part)) if part else None
        except ValueError:
            value = None
        if value is None or not 0 <= value <= MAX_SEED or (part and float(part) != value):
            raise UserError(f"{part!r} is not a seed: use whole numbers between 0 and {MAX_SEED}.")
        seeds.append(value)
    if len(seeds) > max_count:
        raise UserError(f"At most {max_count} seeds at a time.")
    return seeds


def seed_picker(target: gr.components.Component, sample: Callable, inputs: list,
                default: int = 1, label: str = "Sample from seed") -> gr.Number:
    """A seed box and a button under a picture: the button puts `sample(*inputs, seed)` (a
    generated picture) into `target`, so every tab can start without an upload."""
    with gr.Row():
        seed = gr.Number(value=default, precision=0, minimum=0, maximum=MAX_SEED, label="Seed", scale=2)
        button = gr.Button(label, scale=1)
    button.click(sample, inputs + [seed], target, api_name=False, concurrency_id="gpu")
    return seed


def shift_sliders(span: int) -> tuple[gr.Slider, gr.Slider]:
    """(dx, dy) pixel sliders for moving a pasted region across a `span`-pixel frame."""
    return (gr.Slider(-span, span, value=0, step=1, label="Shift right (px)"),
            gr.Slider(-span, span, value=0, step=1, label="Shift down (px)"))


def shift_range(span: int, count: int) -> list:
    """Updates that give `count` shift sliders a new frame size (on a model change)."""
    return [gr.update(minimum=-span, maximum=span)] * count


def quietly(handler: Callable, n_outputs: int) -> Callable:
    """For live re-runs (every stroke): call `handler`, but answer "no change" instead of an
    error message while the input is still incomplete (the Run button shows errors)."""
    def run(*args):
        try:
            return handler(*args)
        except gr.Error:
            return [gr.update()] * n_outputs
    return run


def tab_header(summary: str, how_it_works: str) -> None:
    """Every tab opens the same way: a short summary, then a collapsed "How it works"."""
    gr.Markdown(summary)
    with gr.Accordion("How it works", open=False):
        gr.Markdown(how_it_works)
