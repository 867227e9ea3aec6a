"""What every tab receives: the registry, the device and the shared model cache."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from core.cache import ModelCache
from core.device import inference_dtype
from core.hub import Registry, fetch
from core.models import load_model


@dataclass
class AppContext:
    registry: Registry
    device: torch.device
    cache: ModelCache = field(default_factory=ModelCache)

    def model(self, model_id: str, dtype: torch.dtype | None = None) -> nn.Module:
        """The registered model on this context's device, fetched and loaded once.

        `dtype` defaults to the device's inference dtype (fp16 on CUDA); optimisers ask
        for float32. Weights are fetched through the registry (Hub cache or local path).
        """
        entry = self.registry.get(model_id)
        dtype = dtype or inference_dtype(self.device)

        def load() -> nn.Module:
            path = fetch(entry)
            return load_model(entry.arch, path, entry.config).to(self.device, dtype)

        return self.cache.get((model_id, str(self.device), dtype), load)

    def model_ids(self, arch: str) -> list[str]:
        return self.registry.ids(arch)
