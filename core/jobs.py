"""A model job while it runs: stopped when nobody waits for it, and a turn-taker on the device.

Gradio frees a cancelled or disconnected job's queue slot at once, but a thread cannot be
killed: the computation would run on beside the next person's job (two jobs on one GPU is how
a classroom runs out of memory). So a model job's progress reports double as cancellation
points: once Gradio has dropped the job (Stop, `job.cancel()`, a closed tab), the next report
raises `Cancelled`, so the job stops within one step.

The job may compute in another process (ZeroGPU forks a worker per call and copies Gradio's
queue into it), so the state a report reads is a `Call`: a flag file that the main process
raises (`watching` polls Gradio's queue) and any process can read. Who computes when is
`core.turns`: a progress report is also where a long job lets another session have a turn.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Iterator

import gradio as gr

from core.forksafe import Flag
from core.turns import LANE

POLL_S = 0.1  # how often the main process looks whether a running job's event is still alive


class Cancelled(Exception):
    """The person stopped the job or left; nobody will see its result."""


@dataclass(frozen=True)
class Call:
    """One model job's cancellation, raised in the main process and read where it computes."""
    cancel: Flag = field(default_factory=Flag)

    @property
    def cancelled(self) -> bool:
        return self.cancel.up


def _current_event():
    """(queue, event id) of the Gradio job this thread works for, or None outside one."""
    from gradio.context import LocalContext

    blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
    queue = getattr(blocks, "_queue", None)
    return (queue, event_id) if queue is not None and event_id else None


def _is_live(queue, event_id: str) -> bool:
    return any(event._id == event_id and event.alive
               for job in list(queue.active_jobs) if job for event in job)


@contextlib.contextmanager
def watching() -> Iterator[Call]:
    """A `Call` for the Gradio job this thread works for, cancelled as soon as Gradio drops
    the job (already dropped: cancelled at once, so queued work that was cancelled never
    runs). Outside a queued job (a test, a script) it is never cancelled."""
    call = Call()
    event = _current_event()
    done = threading.Event()

    def watch() -> None:
        while not done.wait(POLL_S):
            if not _is_live(*event):
                call.cancel.raise_()
                return

    if event is not None:
        if _is_live(*event):
            threading.Thread(target=watch, daemon=True, name="job-watch").start()
        else:
            call.cancel.raise_()
    try:
        yield call
    finally:
        done.set()
        call.cancel.lower()


def current_session() -> str | None:
    """The Gradio session (one browser tab, one API client) this thread works for, or None
    outside a request (a test, a script)."""
    from gradio.context import LocalContext

    request = LocalContext.request.get(None)
    return getattr(request, "session_hash", None) or None


class CheckedProgress(gr.Progress):
    """gr.Progress that raises `Cancelled` once its call has been cancelled, and at which a job
    that has held the lane long enough lets another session's job go first (`core.turns`)."""

    def __init__(self, track_tqdm: bool = False, call: Call | None = None):
        super().__init__(track_tqdm=False)  # tqdm is already patched by Gradio if asked
        self.track_tqdm = track_tqdm
        self._call = call

    def check(self) -> None:
        if self._call is not None and self._call.cancelled:
            raise Cancelled()
        LANE.pause()

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


def checked(values: tuple, named: dict, call: Call) -> tuple[tuple, dict]:
    """The call's gr.Progress (Gradio hands every call the same default object) replaced
    by a fresh `CheckedProgress` of its own that reads `call`."""
    def swap(v):
        return CheckedProgress(v.track_tqdm, call) if isinstance(v, gr.Progress) else v
    return tuple(swap(v) for v in values), {k: swap(v) for k, v in named.items()}
