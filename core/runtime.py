"""Which runtime serves the app: a ZeroGPU Space (GPU calls in forked workers) or one process
with its device (a dedicated GPU, a CPU). Standard library only: the registry's command line
asks too."""
from __future__ import annotations

import os
import sys

LANES_ENV = "SPATIAL_GAN_GPU_LANES"  # ZeroGPU: model jobs at once (each gets its own GPU slot)
MAX_SECONDS_ENV = "SPATIAL_GAN_GPU_MAX_SECONDS"  # ZeroGPU: the longest GPU call the Space may ask
ZERO_GPU_MAX_SECONDS = 300  # the most one call may request on ZeroGPU (5 minutes, spaces' docs)


def zero_gpu() -> bool:
    """Whether this process serves a ZeroGPU Space (read at call time: the `spaces` package's
    own switch, which it reads when a function is decorated)."""
    try:
        from spaces.config import Config
    except ImportError:
        return False
    return bool(Config.zero_gpu)


def in_worker() -> bool:
    """Whether this code runs inside a ZeroGPU worker (a forked process: nothing it loads or
    changes outlives the worker, and it must not download)."""
    wrappers = sys.modules.get("spaces.zero.wrappers")  # imported by spaces.GPU, never here
    return bool(getattr(wrappers, "forked", False))


def lanes() -> int:
    """Model jobs at once: on ZeroGPU each call has its own GPU slot (`SPATIAL_GAN_GPU_LANES`,
    default 4); a dedicated GPU or a CPU runs one at a time."""
    return max(1, int(os.environ.get(LANES_ENV, "4"))) if zero_gpu() else 1


def max_seconds() -> int:
    """The longest GPU call this Space may ask ZeroGPU for (`SPATIAL_GAN_GPU_MAX_SECONDS`)."""
    return int(os.environ.get(MAX_SECONDS_ENV, str(ZERO_GPU_MAX_SECONDS)))
