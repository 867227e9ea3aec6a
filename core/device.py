"""Device and dtype policy, and seeding, in one place so every tab agrees."""
from __future__ import annotations

import torch

from core.errors import UserError

_override: str | None = None


def set_default_device(name: str | None) -> None:
    """Pin the device for the whole app (`--device`); None restores auto-detection."""
    global _override
    if name is not None:
        _check_available(name)
    _override = name


def _check_available(name: str) -> None:
    kind = torch.device(name).type
    if kind == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but PyTorch sees no CUDA GPU here.")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device mps was asked for, but Apple's MPS is not available here.")
    if kind not in ("cuda", "mps", "cpu"):
        raise UserError(f"Unknown device {name!r}: use cuda, mps or cpu.")


def default_device() -> torch.device:
    """CUDA, then Apple MPS, then the CPU, unless `--device` pinned one."""
    if _override is not None:
        return torch.device(_override)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def inference_dtype(device: torch.device) -> torch.dtype:
    """Half precision where the hardware is fast at it (CUDA): bfloat16 (float32's range, so
    StyleGAN activations cannot overflow) where the GPU has it, fp16 on older GPUs; float32
    elsewhere. CPUs gain nothing from half-precision convolutions and MPS support varies.
    A model that still overflows is re-run in float32 (`core.precision`). Optimisers (SAM,
    refinement) keep float32 regardless."""
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def placement(module: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    """Where a model's weights live and in which dtype: what its inputs must be moved to."""
    p = next(module.parameters())
    return p.device, p.dtype


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A seeded RNG that leaves the global one alone, so one user's seed never moves another's."""
    return torch.Generator(device=device).manual_seed(int(seed))


def randn(shape: tuple[int, ...], seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Normal samples drawn on the CPU, then moved: the same seed gives the same tensor on
    every device (CUDA and CPU generators differ)."""
    return torch.randn(shape, generator=generator(seed)).to(device)
