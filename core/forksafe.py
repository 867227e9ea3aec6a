"""What survives ZeroGPU's fork: a lock a forked child gets back unlocked, and a yes/no that
every process of the app reads (a file). No Gradio, so engines and model code may use them."""
from __future__ import annotations

import functools
import os
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from core.turns import lock_taken


class ForkSafeRLock:
    """A re-entrant lock that a forked child gets back unlocked: ZeroGPU forks its worker
    while other threads of the server may hold a lock (a model loading), and the child, which
    has none of those threads, would wait for it forever."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._renew)

    def _renew(self) -> None:
        self._lock = threading.RLock()

    def __enter__(self) -> bool:
        taken = self._lock.__enter__()
        lock_taken(+1)  # a job holding it does not pause for another (`core.turns`)
        return taken

    def __exit__(self, *exc) -> None:
        lock_taken(-1)
        self._lock.__exit__(*exc)


@functools.cache  # made once per process, not at every call
def _flag_dir() -> Path:
    folder = Path(tempfile.gettempdir()) / "spatial-gan-studio-flags"
    folder.mkdir(exist_ok=True)
    return folder


@dataclass(frozen=True)
class Flag:
    """A yes/no that every process of the app can read and raise: a file's existence (a forked
    worker shares the file system, not the memory). Picklable: it is only a path."""
    path: str = field(default_factory=lambda: str(_flag_dir() / uuid.uuid4().hex))

    def raise_(self) -> None:
        Path(self.path).touch()

    def lower(self) -> bool:
        """Lower the flag; whether it was up."""
        try:
            os.unlink(self.path)
            return True
        except FileNotFoundError:
            return False

    @property
    def up(self) -> bool:
        return os.path.exists(self.path)
