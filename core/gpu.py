"""Where a model handler runs: here (a CPU or a dedicated GPU, one job at a time), or on a
ZeroGPU Space in the worker process that `spaces.GPU` forks, from the same handler code.

ZeroGPU forks a worker for a GPU call and sends the call's arguments and its result through a
pipe, pickled; what the worker changes in its memory never comes back. So a `gpu_task`
handler runs in three phases:

- *prepare*, in the main process, holding no lock and no GPU time: the models the call needs
  (`needs`) are downloaded and loaded into the shared cache, so no visitor's GPU seconds pay
  for a download and a worker forked afterwards inherits the models (ZeroGPU moves them to
  its GPU). `spaces` reuses a handler's idle worker: one forked before a model was first
  prepared reads that model once from the local file and keeps it while it lives, so a
  second call loads nothing either way;
- *compute*, the GPU function: the handler itself, with picklable values only (the app
  context is found in module state made before any fork, `register`, never sent); progress
  reports travel back through the `spaces` queue, cancellation through a `core.jobs.Call`, and
  what the call learned for the app (a model that overflowed in half precision) comes back
  with its result;
- *present*: the result, in the main process, handed to Gradio.

Every call takes turns on the model lane (`core.turns`: sessions in turn, a few jobs waiting
each, a job cancelled while it waits never computes). On a dedicated GPU or a CPU the GPU
function is called in place, one turn at a time (each step of a generator a turn of its own);
on ZeroGPU several run at once (`lanes`), each with a duration computed from the call
(`duration` may be a function of the handler's values) and refused with a sentence when it
cannot fit ZeroGPU's limit.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import gradio as gr
import torch

from core import precision
from core.errors import UserError
from core.jobs import Call, Cancelled, checked, current_session, watching
from core.runtime import in_worker, max_seconds, zero_gpu
from core.turns import LANE, Ticket, note_cancelled

log = logging.getLogger("spatial_gan_studio")

OOM_MESSAGE = ("The GPU ran out of memory. Try a smaller batch or resolution, close other "
               "GPU programs, or restart the app to free memory.")
STOPPED = "Stopped: the job was cancelled before it finished."
HALF_OVERFLOW = ("This model's pictures overflowed in half precision partway through; it now runs "
                 "in float32: press the button again.")


# ---- the app context, reachable from a forked worker ------------------------------------
_contexts: dict[int, Any] = {}  # app contexts by id, made before any worker is forked


def register(ctx) -> None:
    """Make `ctx` reachable from a ZeroGPU worker by its id (called by `build_app`, before
    `launch`, so every worker forked later holds it)."""
    _contexts[id(ctx)] = ctx


def _context(key: int | None):
    return None if key is None else _contexts[key]


# ---- errors as sentences ----------------------------------------------------------------------
def translate(e: BaseException) -> gr.Error:
    if isinstance(e, gr.Error):
        return e
    if isinstance(e, Cancelled):  # counted in the log by the lane's handler (`_count_cancel`)
        return gr.Error(STOPPED)
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
                raise translate(e) from e
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            raise translate(e) from e
    return wrapper


# ---- half precision that overflowed ------------------------------------------------------------
def float32_on_overflow(fn: Callable) -> Callable:
    """`fn(ctx, ...)` run again, once, with float32 models if a picture overflowed in half
    precision (see core.precision); the models stay float32 for the rest of the app's life
    (`Reply.float32_only` carries that back from a worker). A generator re-runs only if it
    overflows before its first result."""
    def mark(ctx, failed: precision.ReducedPrecisionFailed) -> None:
        log.warning("%s overflowed in half precision: re-running in float32", sorted(failed.model_ids))
        ctx.float32_only.update(failed.model_ids)

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def steps(ctx, *args, **kwargs):
            first = True
            try:  # the call's state goes with each step, whichever thread runs it
                for item in precision.each_step(fn(ctx, *args, **kwargs), precision.CallState()):
                    first = False
                    yield item
            except precision.ReducedPrecisionFailed as failed:
                mark(ctx, failed)
                if not first:
                    raise gr.Error(HALF_OVERFLOW) from None
                yield from precision.each_step(fn(ctx, *args, **kwargs), precision.CallState())
        return steps

    @functools.wraps(fn)
    def run(ctx, *args, **kwargs):
        try:
            with precision.within(precision.CallState()):
                return fn(ctx, *args, **kwargs)
        except precision.ReducedPrecisionFailed as failed:
            mark(ctx, failed)
            with precision.within(precision.CallState()):
                return fn(ctx, *args, **kwargs)
    return run


# ---- the handler decorator ----------------------------------------------------------------------
ModelNeed = str | tuple[str, torch.dtype]  # a registry id, at the device's dtype or a given one
Duration = float | Callable[..., float]


@dataclass(frozen=True)
class Reply:
    """What a GPU call hands back: the handler's value and the models that must stay float32."""
    value: Any
    float32_only: frozenset[str]


@dataclass
class GpuTask:
    """One model handler: `compute(ctx, *values)` and what it needs before it runs."""
    compute: Callable
    duration: Duration
    needs: Callable[..., Iterable[ModelNeed | None]] | None
    name: str

    def __post_init__(self) -> None:
        self.generator = inspect.isgeneratorfunction(self.compute)
        self._zero: Callable | None = None  # the spaces.GPU function, made before launch

    # -- phases --
    def prepare(self, ctx, args: tuple, kwargs: dict) -> None:
        """Download and load what the call needs, in this process, holding no device lock."""
        if self.needs is None or ctx is None:
            return
        for need in self.needs(ctx, *_values(args), **_named(kwargs)):
            if need:
                model_id, dtype = need if isinstance(need, tuple) else (need, None)
                ctx.prepare(model_id, dtype)

    def seconds(self, ctx, args: tuple, kwargs: dict) -> int:
        """The GPU time to ask ZeroGPU for this call; a sentence if it is more than allowed."""
        d = self.duration
        wanted = d(ctx, *_values(args), **_named(kwargs)) if callable(d) else d
        wanted = int(max(1, round(float(wanted))))
        if wanted > max_seconds():
            raise UserError(f"This run needs about {wanted} s of GPU time, and this Space allows "
                            f"at most {max_seconds()} s per run: use fewer steps, a smaller "
                            f"resolution or fewer pictures, or run the app on your own GPU.")
        return wanted

    def on_gpu(self, ctx, call: Call, args: tuple, kwargs: dict):
        """The GPU function: the handler, with progress reports that read `call`."""
        args, kwargs = checked(args, kwargs, call)
        if self.generator:
            return self._steps(ctx, args, kwargs)
        value = self.compute(ctx, *args, **kwargs)
        return Reply(value, _float32_only(ctx))

    def _steps(self, ctx, args, kwargs):
        for value in self.compute(ctx, *args, **kwargs):
            yield Reply(value, _float32_only(ctx))

    def enable_zero_gpu(self) -> None:
        """Wrap the GPU function in `spaces.GPU` (done for every task before launch)."""
        import spaces

        def duration(key, call, args, kwargs) -> int:
            return self.seconds(_context(key), args, kwargs)

        if self.generator:  # the context by its key: made before the fork, never pickled
            def on_gpu(key, call, args, kwargs):
                yield from self.on_gpu(_context(key), call, args, kwargs)
        else:
            def on_gpu(key, call, args, kwargs):
                return self.on_gpu(_context(key), call, args, kwargs)
        on_gpu.__name__ = on_gpu.__qualname__ = self.name
        self._zero = spaces.GPU(duration=duration)(on_gpu)

    def gpu_function(self, ctx) -> tuple[Callable, Any, bool]:
        """(the function that computes, what it is given for the context, whether jobs take
        turns on this process's device)."""
        if zero_gpu() and self._zero is not None:
            if ctx is not None and id(ctx) not in _contexts:
                register(ctx)
            return self._zero, None if ctx is None else id(ctx), False
        return self.on_gpu, ctx, True

    # -- the handler Gradio calls --
    def start(self, ctx, args: tuple, kwargs: dict) -> tuple[Callable, Any, bool]:
        """Prepare the call and pick where it computes (`gpu_function`); on ZeroGPU a call
        longer than allowed is refused here, before any GPU is asked for."""
        self.prepare(ctx, args, kwargs)
        compute, context, exclusive = self.gpu_function(ctx)
        if not exclusive:
            self.seconds(ctx, args, kwargs)
        return compute, context, exclusive

    def run(self, ctx, *args, **kwargs):
        if in_worker():  # a handler called by another one, already on the GPU
            return self.compute(ctx, *args, **kwargs)
        ticket = None
        try:
            with watching() as call, LANE.job(current_session()) as ticket:
                compute, context, exclusive = self.start(ctx, args, kwargs)
                with LANE.turn(ticket, _raiser(call)):
                    _begin(call, ticket)
                    reply = compute(context, call, args, kwargs)
        except Exception as e:
            _count_cancel(e, ticket)
            raise translate(e) from e
        _learn(ctx, reply)
        return reply.value

    def run_steps(self, ctx, *args, **kwargs):
        """A generator handler: on this process's device each step is a turn of its own (the
        lane goes round between steps); on ZeroGPU the whole call is one turn (its worker runs
        the steps, bounded by the call's duration)."""
        if in_worker():
            yield from self.compute(ctx, *args, **kwargs)
            return
        ticket = None
        try:
            with watching() as call, LANE.job(current_session()) as ticket:
                compute, context, exclusive = self.start(ctx, args, kwargs)
                check = _raiser(call)
                whole = contextlib.nullcontext() if exclusive else LANE.turn(ticket, check, thread=False)
                steps = None
                with whole:
                    try:
                        while True:
                            with LANE.turn(ticket, check) if exclusive else contextlib.nullcontext():
                                if steps is None:
                                    _begin(call, ticket)
                                    steps = compute(context, call, args, kwargs)
                                check()  # cancelled between steps: the next never starts
                                try:
                                    reply = next(steps)
                                except StopIteration:
                                    return
                            _learn(ctx, reply)
                            yield reply.value
                    finally:
                        if steps is not None:
                            steps.close()  # Gradio closed us (cancel): ZeroGPU stops its worker's loop too
        except GeneratorExit:
            if ticket is not None and ticket.started:
                note_cancelled(True)
            raise
        except Exception as e:
            _count_cancel(e, ticket)
            raise translate(e) from e


_TASKS: list[GpuTask] = []


def gpu_task(duration: Duration = 60,
             needs: Callable[..., Iterable[ModelNeed | None]] | None = None
             ) -> Callable[[Callable], Callable]:
    """The decorator of every handler that runs a model, `handler(ctx, *values)`.

    `duration`: the seconds a call may hold a ZeroGPU GPU, or a function of the handler's
    values (`ctx` first) that computes them from the steps, resolution and model.
    `needs`: a function of the same values that names the registry ids the call will use (or
    `(id, dtype)`): models are loaded into the shared cache and data files fetched before the
    GPU is asked for; it may check the values (a `UserError` costs no GPU call) and warm other
    caches (the LPIPS backbone). Errors become sentences
    (`user_errors`), inside the worker and out; `TabWiring.on` puts the handler on the GPU lane.
    """
    def decorate(fn: Callable) -> Callable:
        task = GpuTask(user_errors(float32_on_overflow(fn)), duration, needs, fn.__qualname__)
        _TASKS.append(task)
        if task.generator:
            @functools.wraps(fn)
            def handler(*args, **kwargs):
                yield from task.run_steps(*args, **kwargs)
        else:
            @functools.wraps(fn)
            def handler(*args, **kwargs):
                return task.run(*args, **kwargs)
        handler.gpu_task = True
        handler.task = task
        return handler
    return decorate


def enable_zero_gpu() -> bool:
    """On a ZeroGPU Space, wrap every model handler in `spaces.GPU` (before launch: the package
    registers its GPU functions at start-up); elsewhere nothing. Whether it did."""
    if not zero_gpu():
        return False
    for task in _TASKS:  # anew for each app: a worker forked for an earlier app lacks this one
        task.enable_zero_gpu()
    return True


def _values(args: tuple) -> tuple:
    return tuple(a for a in args if not isinstance(a, gr.Progress))


def _named(kwargs: dict) -> dict:
    return {k: v for k, v in kwargs.items() if not isinstance(v, gr.Progress)}


def _float32_only(ctx) -> frozenset[str]:
    return frozenset(getattr(ctx, "float32_only", ()) or ())


def _raiser(call: Call) -> Callable[[], None]:
    """A check that raises `Cancelled` once `call` is cancelled (read while a job waits)."""
    def check() -> None:
        if call.cancelled:
            raise Cancelled()
    return check


def _begin(call: Call, ticket: Ticket) -> None:
    """The job's first turn: a job cancelled before it never computes at all."""
    _raiser(call)()
    ticket.started = True


def _count_cancel(e: BaseException, ticket: Ticket | None) -> None:
    """Count `e` in the log's cancellation counts if it is a cancelled job stopping (a
    `Cancelled`, or the sentence it became inside the handler or a ZeroGPU worker)."""
    cancelled = (isinstance(e, Cancelled) or isinstance(e.__cause__, Cancelled)
                 or (isinstance(e, gr.Error) and e.message == STOPPED))
    if cancelled and ticket is not None:
        note_cancelled(ticket.started)


def _learn(ctx, reply: Reply) -> None:
    """What a (possibly forked) call learned, kept in the app: models that must run float32."""
    if ctx is not None and reply.float32_only:
        ctx.float32_only.update(reply.float32_only)
