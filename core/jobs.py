"""A model job while it runs: one at a time on the device, and stopped when nobody waits for it.

Gradio frees a cancelled or disconnected job's queue slot at once, but a thread cannot be
killed: the computation would run on beside the next person's job (two jobs on one GPU is how
a classroom runs out of memory). So every model handler runs under one process-wide lock, and
its progress reports double as cancellation points: once Gradio has dropped the job (Stop,
`job.cancel()`, a closed tab), the next report raises `Cancelled`, so the job stops within
one step and frees the lock for the next.
"""
from __future__ import annotations

import functools
import inspect
import threading
from typing import Callable

import gradio as gr

DEVICE_LOCK = threading.RLock()  # re-entrant: a handler may call another handler


class Cancelled(Exception):
    """The person stopped the job or left; nobody will see its result."""


def _current_event():
    """(queue, event id) of the Gradio job this thread works for, or None outside one."""
    from gradio.context import LocalContext

    blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
    queue = getattr(blocks, "_queue", None)
    return (queue, event_id) if queue is not None and event_id else None


def _is_live(queue, event_id: str) -> bool:
    return any(event._id == event_id and event.alive
               for job in list(queue.active_jobs) if job for event in job)


class CheckedProgress(gr.Progress):
    """gr.Progress that raises `Cancelled` once its job has been dropped. A job that was never
    on the queue (a test, a script, an un-queued event) is never cancelled."""

    def __init__(self, track_tqdm: bool = False):
        super().__init__(track_tqdm=False)  # tqdm is already patched by Gradio if asked
        self.track_tqdm = track_tqdm
        event = _current_event()
        self._event = event if event and _is_live(*event) else None

    def check(self) -> None:
        if self._event and not _is_live(*self._event):
            raise Cancelled()

    def __call__(self, *args, **kwargs):
        self.check()
        return super().__call__(*args, **kwargs)

    def __next__(self):
        self.check()
        return super().__next__()

    def tqdm(self, *args, **kwargs):
        self.check()
        return super().tqdm(*args, **kwargs)

    def update(self, *args, **kwargs):
        self.check()
        return super().update(*args, **kwargs)


def _checked(values: tuple, named: dict) -> tuple[tuple, dict]:
    """The call's gr.Progress (Gradio hands every call the same default object) replaced
    by a fresh `CheckedProgress` of its own."""
    def swap(v):
        return CheckedProgress(v.track_tqdm) if isinstance(v, gr.Progress) else v
    return tuple(swap(v) for v in values), {k: swap(v) for k, v in named.items()}


def exclusive(fn: Callable) -> Callable:
    """`fn` run under `DEVICE_LOCK` with a cancellable progress; a generator holds the lock
    for each step only (between steps the queue may cancel it)."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def steps(*args, **kwargs):
            args, kwargs = _checked(args, kwargs)
            iterator = fn(*args, **kwargs)
            while True:
                with DEVICE_LOCK:
                    try:
                        item = next(iterator)
                    except StopIteration as end:
                        return end.value
                yield item
        return steps

    @functools.wraps(fn)
    def run(*args, **kwargs):
        args, kwargs = _checked(args, kwargs)
        with DEVICE_LOCK:
            return fn(*args, **kwargs)
    return run
