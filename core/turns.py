"""Fair turns on the model lane: sessions take turns, and each may have a few jobs waiting.

Gradio's queue serves first come, first served: one session that queues 40 jobs fills the
room and every other person waits behind all of them. So Gradio hands model jobs to the lane
at once (up to `admitted()` of them) and the lane decides who goes next:

- a session that already has `max_waiting()` jobs waiting is refused at once, with a sentence;
- a free turn goes to the waiting session served least recently (round robin among sessions;
  a session never served goes first), a session's own jobs in the order they came;
- a turn is short: a generator handler takes one per step, and a job that reports progress
  gives its turn back at a report once it has held it `turn_seconds()` while another session
  waits, so a long job (an inversion, Enc+LBFGS, a factorization) is interleaved with the
  others' short ones instead of making them wait its whole run.

On a dedicated GPU or a CPU one turn runs at a time (this is the device's lock); on ZeroGPU
`core.runtime.lanes()` at once. A waiting job whose person cancelled it leaves the line and
never runs. Standard library only (besides `core`), so `core.jobs` can use it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from core.errors import UserError
from core.runtime import lanes

log = logging.getLogger("spatial_gan_studio")

MAX_WAITING_ENV = "SPATIAL_GAN_MAX_WAITING"  # jobs one session may have waiting (default 3)
TURN_SECONDS_ENV = "SPATIAL_GAN_TURN_SECONDS"  # a job's turn before it lets another session in
ADMITTED_ENV = "SPATIAL_GAN_JOBS_ADMITTED"  # model jobs Gradio hands to the lane at once
POLL_S = 0.1  # how often a waiting job looks whether it was cancelled
SESSIONS_REMEMBERED = 4096  # sessions whose last turn is kept (for the order); oldest dropped


def max_waiting() -> int:
    """Jobs one session may have waiting for the model lane (`SPATIAL_GAN_MAX_WAITING`)."""
    return max(1, int(os.environ.get(MAX_WAITING_ENV, "3")))


def turn_seconds() -> float:
    """How long a job holds the lane before it lets another session's job in at its next
    progress report (`SPATIAL_GAN_TURN_SECONDS`; 0: at every report)."""
    return max(0.0, float(os.environ.get(TURN_SECONDS_ENV, "2")))


def admitted() -> int:
    """Model jobs Gradio hands to the lane at once, running or waiting their turn
    (`SPATIAL_GAN_JOBS_ADMITTED`): each holds a server thread while it waits, so this stays
    under Gradio's 40 threads; jobs beyond it wait in Gradio's own queue."""
    return max(lanes(), int(os.environ.get(ADMITTED_ENV, "24")))


def too_many(n: int) -> str:
    return (f"You already have {n} job{'s' if n != 1 else ''} waiting: wait for one to finish "
            f"or press Stop.")


def _never() -> None:
    return None


@dataclass(eq=False)
class Ticket:
    """One model job in the lane: whose it is, when it came, whether it has started computing.
    `check` raises once the job was cancelled (it is called while the job waits)."""
    session: str
    came: float = field(default_factory=time.monotonic)
    started: bool = False
    held_since: float | None = None
    check: Callable[[], None] = _never


class Lane:
    """The fair lock of the model lane (see the module's docstring)."""

    def __init__(self) -> None:
        self._renew()
        if hasattr(os, "register_at_fork"):  # a forked ZeroGPU worker starts with a free lane
            os.register_at_fork(after_in_child=self._renew)

    def _renew(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._jobs: list[Ticket] = []  # admitted and not finished
        self._waiting: list[Ticket] = []
        self._holding: set[Ticket] = set()
        self._served: dict[str, float] = {}  # session -> when it last got a turn
        self._mine = threading.local()  # the ticket this thread holds a turn for

    # -- a job's life: admitted, then turns until it ends --
    @contextlib.contextmanager
    def job(self, session: str | None) -> Iterator[Ticket]:
        """Admit one job of `session` (None: not a person's request, never refused) for as
        long as the block runs; a `UserError` if the session has too many waiting. A handler
        called by a job that holds a turn is part of that job: never refused."""
        ticket = Ticket(session or "")
        with self._cond:
            if session is not None and self.held() is None:
                waiting = sum(1 for t in self._jobs if t.session == session and not t.started)
                if waiting >= max_waiting():
                    raise UserError(too_many(waiting))
            self._jobs.append(ticket)
        try:
            yield ticket
        finally:
            with self._cond:
                self._jobs.remove(ticket)

    @contextlib.contextmanager
    def turn(self, ticket: Ticket, check: Callable[[], None] = _never, *,
             thread: bool = True) -> Iterator[None]:
        """Hold a turn for `ticket`; waits fairly, raises what `check` raises if the job is
        cancelled while it waits. `thread`: the turn belongs to this thread (it may pause at
        progress reports, and a handler it calls keeps the turn); False for a turn that spans
        a generator's steps, which Gradio may run on different threads."""
        took = self.acquire(ticket, check, thread=thread)
        try:
            yield
        finally:
            if took:
                self.release(ticket, thread=thread)

    def acquire(self, ticket: Ticket, check: Callable[[], None] = _never, *,
                thread: bool = True) -> bool:
        """Wait for a turn; whether one was taken (False: this thread holds one already)."""
        if thread and self.held() is not None:
            return False
        ticket.check = check
        check()
        with self._cond:
            self._waiting.append(ticket)
            try:
                while not (len(self._holding) < lanes() and self._next() is ticket):
                    self._cond.wait(POLL_S)
                    check()
            except BaseException:
                self._waiting.remove(ticket)
                self._cond.notify_all()
                raise
            self._waiting.remove(ticket)
            self._holding.add(ticket)
            ticket.held_since = now = time.monotonic()
            self._served.pop(ticket.session, None)
            self._served[ticket.session] = now  # insertion order: oldest first
            if len(self._served) > SESSIONS_REMEMBERED:
                del self._served[next(iter(self._served))]
            self._cond.notify_all()  # several lanes (ZeroGPU): the next may go too
        if thread:
            self._mine.ticket = ticket
        return True

    def release(self, ticket: Ticket, *, thread: bool = True) -> None:
        if thread:
            self._mine.ticket = None
        with self._cond:
            self._holding.discard(ticket)
            ticket.held_since = None
            self._cond.notify_all()

    def held(self) -> Ticket | None:
        """The ticket this thread holds a turn for, if any."""
        return getattr(self._mine, "ticket", None)

    def pause(self) -> None:
        """At a progress report: if this thread's job has held its turn `turn_seconds()` and
        another session waits, let it go first, then carry on (or raise if cancelled)."""
        ticket = self.held()
        if ticket is None or ticket.held_since is None or getattr(_locks, "held", 0):
            return  # inside a lock (a model loading): the next job might need it
        if time.monotonic() - ticket.held_since < turn_seconds():
            return
        with self._cond:
            others = any(t.session != ticket.session for t in self._waiting)
        if others:
            self.release(ticket)
            self.acquire(ticket, ticket.check)

    def _next(self) -> Ticket:
        """The waiting job whose session was served least recently; within a session, the
        one that came first."""
        return min(self._waiting, key=lambda t: (self._served.get(t.session, float("-inf")), t.came))

    def waiting(self, session: str | None = None) -> int:
        """Jobs waiting for a turn (of one session, or all): for tests and the log."""
        with self._cond:
            return sum(1 for t in self._waiting if session is None or t.session == session)


LANE = Lane()  # the model lane of this process

_locks = threading.local()  # how many app locks this thread holds (`core.forksafe.ForkSafeRLock`)


def lock_taken(change: int) -> None:
    """An app lock taken (+1) or given back (-1) by this thread: a job never pauses for
    another while it holds one, or the other could wait for the lock while holding the lane."""
    _locks.held = getattr(_locks, "held", 0) + change


# ---- cancelled jobs, counted per process --------------------------------------------------
_counts = {"before": 0, "during": 0}
_counts_lock = threading.Lock()


def note_cancelled(started: bool) -> None:
    """Count a cancelled job (before it started computing, or during) and log the counts."""
    with _counts_lock:
        _counts["during" if started else "before"] += 1
        before, during = _counts["before"], _counts["during"]
    log.info("cancelled before start: %d, during: %d", before, during)


def cancelled_counts() -> dict[str, int]:
    """{"before": n, "during": m}: cancelled jobs of this process so far."""
    with _counts_lock:
        return dict(_counts)
