"""Load each model once per (id, device, dtype); keep the few most recent (LRU).

Gradio runs handlers on worker threads, so lookups and loads are serialised with a lock.
Evicting a model drops the cache's reference and empties the CUDA allocator cache, so a
Space with a small GPU can switch between big generators without running out of memory.
"""
from __future__ import annotations

import gc
import os
from collections import OrderedDict
from typing import Callable, Hashable, TypeVar

import torch

from core.forksafe import ForkSafeRLock

T = TypeVar("T")


class ModelCache:
    def __init__(self, max_items: int | None = None):
        self.max_items = max_items or int(os.environ.get("SPATIAL_GAN_MAX_MODELS", "3"))
        self._items: OrderedDict[Hashable, object] = OrderedDict()
        self._lock = ForkSafeRLock()  # a ZeroGPU worker may be forked while a model loads

    def get(self, key: Hashable, load: Callable[[], T]) -> T:
        """The cached value for `key`, calling `load()` (once) when it is missing."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]  # type: ignore[return-value]
            value = load()
            self._items[key] = value
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
                self._free()
            return value

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._free()

    @staticmethod
    def _free() -> None:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
