"""The real `spaces` ZeroGPU wrapper on a CPU: a pytest plugin (conftest names it).

`spaces` (0.51.3) decides at decoration time whether `spaces.GPU` forks (its
`Config.zero_gpu`); then every call forks a worker (or reuses an idle one) and sends the
call's arguments and its result through pickling queues. Only what talks to Hugging Face's
scheduler (`spaces.zero.client`: schedule, release, allow, get_duration_seconds) and what hands
CUDA over (`spaces.zero.torch`: init, move, unpatch, size) is stubbed: the fork, the pickling,
the queues, the worker's progress relay and its error relay are the package's own.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pytest


@dataclass
class Scheduler:
    """A stand-in for ZeroGPU's scheduler: GPU slots handed out lowest first, an idle slot's
    worker reused; the durations asked for, in order."""
    durations: list[float] = field(default_factory=list)
    busy: dict[str, int] = field(default_factory=dict)  # allow token -> slot
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def schedule(self, task_id, request=None, duration=None, gpu_size=None, **_):
        from spaces.zero.api import ScheduleResponse

        with self.lock:
            self.calls += 1
            self.durations.append(duration.total_seconds() if duration is not None else None)
            slot = min(set(range(len(self.busy) + 1)) - set(self.busy.values()))
            token = f"token-{self.calls}"
            self.busy[token] = slot
        return ScheduleResponse(idle=True, nvidiaIndex=slot, nvidiaUUID=f"GPU-{slot}", allowToken=token)

    def release(self, allow_token, fail=False, allow_404=False):
        with self.lock:
            self.busy.pop(allow_token, None)


def zero_gpu_mode(mp: pytest.MonkeyPatch) -> Scheduler:
    """Switch the real `spaces` package into ZeroGPU mode with `mp`'s patches (undone with
    them), its scheduler and CUDA hand-over stubbed -> the stand-in scheduler. For a fixture of
    any scope (`pytest.MonkeyPatch.context()` for a module-scoped one)."""
    from spaces.config import Config
    from spaces.zero import client
    from spaces.zero import torch as zero_torch

    scheduler = Scheduler()
    mp.setattr(Config, "zero_gpu", True)
    mp.setattr(client, "schedule", scheduler.schedule)
    mp.setattr(client, "release", scheduler.release)
    mp.setattr(client, "allow", lambda token: None)
    mp.setattr(client, "get_duration_seconds",
               lambda duration, gpu_size: duration.total_seconds() if duration else 60)
    for name, stub in {"init": lambda uuid: None, "move": lambda callback=None: None,
                       "unpatch": lambda: None, "size": lambda: 0}.items():
        mp.setattr(zero_torch, name, stub)
    return scheduler


@pytest.fixture()
def zerogpu(monkeypatch) -> Scheduler:
    """ZeroGPU mode for apps built while it is on (`build_app` wraps the handlers then)."""
    spaces = pytest.importorskip("spaces")
    yield zero_gpu_mode(monkeypatch)
    assert spaces  # the real package ran
