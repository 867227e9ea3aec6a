"""core.precision: the per-call half-precision state goes with the call, not the thread (a
generator handler's steps may each run on another thread, as Gradio's thread pool runs them)."""
from __future__ import annotations

import threading
from types import SimpleNamespace

import gradio as gr
import pytest
import torch

from core import precision
from core.gpu import float32_on_overflow

BROKEN = torch.full((1, 3, 2, 2), float("nan"))  # what an fp16 overflow draws


def on_another_thread(fn):
    """fn() on a fresh thread (a fresh, empty context, as a pool thread may have) -> its
    result, or the exception it raised."""
    out = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as e:  # handed back to the test
            out["error"] = e
    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def two_steps(ctx):
    """Step 1 uses a half-precision model, step 2 draws the overflowed picture."""
    precision.note_reduced("hot")
    yield "step 1"
    precision.check_picture(BROKEN)
    yield "step 2"


def test_a_generator_steps_on_other_threads_still_see_their_call():
    steps = precision.each_step(two_steps(None), precision.CallState())
    assert on_another_thread(lambda: next(steps)) == "step 1"
    with pytest.raises(precision.ReducedPrecisionFailed) as failed:
        on_another_thread(lambda: next(steps))
    assert failed.value.model_ids == {"hot"}


def test_the_handler_wrapper_marks_the_model_when_a_later_step_overflows_elsewhere():
    ctx = SimpleNamespace(float32_only=set())
    steps = float32_on_overflow(two_steps)(ctx)
    assert on_another_thread(lambda: next(steps)) == "step 1"
    with pytest.raises(gr.Error, match="overflowed in half precision"):
        on_another_thread(lambda: next(steps))
    assert ctx.float32_only == {"hot"}


def test_calls_do_not_share_state_and_nothing_leaks_after_a_call():
    first, second = precision.CallState(), precision.CallState()
    with precision.within(first):
        precision.note_reduced("a")
        with precision.within(second):
            precision.note_reduced("b")
        precision.check_picture(torch.zeros(1, 3, 2, 2))  # an ordinary picture passes
    assert first.reduced == {"a"} and second.reduced == {"b"}
    precision.note_reduced("outside")  # no call: nothing is noted, nothing is checked
    precision.check_picture(BROKEN)


def test_a_plain_handler_reruns_once_in_float32():
    ctx = SimpleNamespace(float32_only=set())
    calls = []

    def handler(ctx):
        calls.append(set(ctx.float32_only))
        if "hot" not in ctx.float32_only:
            precision.note_reduced("hot")
        precision.check_picture(BROKEN if "hot" not in ctx.float32_only else torch.zeros(1, 3, 1, 1))
        return "done"

    assert float32_on_overflow(handler)(ctx) == "done"
    assert calls == [set(), {"hot"}] and ctx.float32_only == {"hot"}
