"""What every tab receives: the registry, the device and the shared model cache."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, TypeVar

import torch
from torch import nn

from core.cache import ModelCache
from core.device import inference_dtype
from core.hub import Registry, fetch
from core.forksafe import ForkSafeRLock
from core.models import FAMILIES, load_model
from core.precision import note_reduced

T = TypeVar("T")


@dataclass
class AppContext:
    registry: Registry
    device: torch.device
    cache: ModelCache = field(default_factory=ModelCache)
    _shared: dict[Hashable, Any] = field(default_factory=dict, repr=False)
    _shared_lock: ForkSafeRLock = field(default_factory=ForkSafeRLock, repr=False)
    float32_only: set[str] = field(default_factory=set)  # overflowed in half precision once

    def shared(self, key: Hashable, make: Callable[[], T]) -> T:
        """A value made once per app and shared by every session (a tab's index of factor
        files, say): module globals would outlive the app and mix apps built in one process."""
        with self._shared_lock:
            if key not in self._shared:
                self._shared[key] = make()
            return self._shared[key]

    def model(self, model_id: str, dtype: torch.dtype | None = None) -> nn.Module:
        """The registered model on this context's device, fetched and loaded once.

        `dtype` defaults to the device's inference dtype (bfloat16 or fp16 on CUDA) unless
        the model once overflowed in it (`core.precision`); optimisers ask for float32.
        Weights are fetched through the registry (Hub cache or local path); a ZeroGPU
        worker never downloads: its handler's `models` were prepared before the GPU call
        (`core.gpu`), and a worker forked earlier reads them from the local cache.
        """
        entry = self.registry.get(model_id)
        dtype = dtype or (torch.float32 if model_id in self.float32_only else inference_dtype(self.device))
        if dtype in (torch.float16, torch.bfloat16):
            note_reduced(model_id)

        key = (model_id, str(self.device), dtype)
        path = None if key in self.cache else fetch(entry)  # a download never holds the cache's lock

        def load() -> nn.Module:
            return load_model(entry.arch, path or fetch(entry), entry.config).to(self.device, dtype)

        return self.cache.get(key, load)

    def prepare(self, model_id: str, dtype: torch.dtype | None = None) -> None:
        """Ready a call's file before it computes (`core.gpu`): a model loaded into the cache
        (as `model`), any other file (directions, factors) downloaded."""
        entry = self.registry.get(model_id)
        if entry.arch in FAMILIES:
            self.model(model_id, dtype)
        else:
            fetch(entry)

    def model_ids(self, arch: str | tuple[str, ...]) -> list[str]:
        return self.registry.ids(arch)
