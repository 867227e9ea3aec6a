"""Reading checkpoint files safely, in the authors' `.pt` format or our safetensors copy.

A published checkpoint is a dict of state dicts plus a few extras (`{"g_ema", "latent_avg"}`
for StyleGAN2, `{"g_ema", "e_ema", "train_args"}` for StyleMapGAN). `write_safetensors`
stores the inference parts of such a dict in one `.safetensors` file (tensor `g_ema.<key>`
for state-dict entries, plain tensors by name, non-tensor extras as JSON in the metadata) and
`read_checkpoint` turns either format back into the same dict, so every loader reads both.
safetensors holds no code: a Hub copy can be loaded without trusting a pickle.
"""
from __future__ import annotations

import argparse
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

from core.errors import UserError, shown_path

SAFETENSORS_FORMAT = "spatial-gan-studio/checkpoint-v1"
_EXTRAS_KEY = "extras"  # metadata entry holding the JSON-able non-tensor parts


def _corrupt(path: Path, e: Exception) -> UserError:
    return UserError(f"Could not read the weights file {path.name}: it is not a checkpoint, or "
                     f"it is truncated or corrupt ({type(e).__name__}). Delete it and download "
                     f"it again, or check the registry's path.")


def _read_torch(path: str | Path, map_location: str | torch.device = "cpu"):
    """torch.load with `weights_only=True` (an argparse.Namespace, as StyleMapGAN stores its
    training arguments, is the one extra type allowed). A truncated or corrupt file becomes
    a UserError that says which file and what to do."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Weights file not found: {shown_path(path)}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only load failed" in str(e).lower():
            raise UserError(f"The weights file {path.name} holds Python objects other than "
                            f"weights (code that would run when it loads), so this app refused "
                            f"to open it. Use the published checkpoint, or a .safetensors "
                            f"copy (scripts/publish_weights.py).") from None
        raise _corrupt(path, e) from e
    except (RuntimeError, OSError, EOFError, zipfile.BadZipFile, ValueError, KeyError,
            IndexError, TypeError) as e:  # what torch.load raises on a file that is no pickle
        raise _corrupt(path, e) from e


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint dict from a `.pt` file or from our `.safetensors` layout (same keys)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return _read_torch(path, map_location)
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise UserError(f"Weights file not found: {shown_path(path)}")
    try:
        with safe_open(str(path), framework="pt", device=str(map_location)) as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise _corrupt(path, e) from e
    ckpt: dict[str, Any] = json.loads(meta.get(_EXTRAS_KEY, "{}"))
    for key, value in tensors.items():
        group, _, rest = key.partition(".")
        if rest:
            ckpt.setdefault(group, {})[rest] = value
        else:
            ckpt[key] = value
    return ckpt


def jsonable_args(train_args: Any) -> dict[str, Any]:
    """Training arguments (an argparse.Namespace or a dict) as a dict of their JSON-able
    values; the rest (a Path, a device) is not part of a model's configuration."""
    args = vars(train_args) if isinstance(train_args, argparse.Namespace) else dict(train_args)
    out = {}
    for k, v in args.items():
        try:
            out[k] = json.loads(json.dumps(v))
        except (TypeError, ValueError):
            pass
    return out


def write_safetensors(ckpt: Mapping[str, Any], path: str | Path, keep: tuple[str, ...]) -> Path:
    """Store the `keep` parts of a checkpoint dict as one safetensors file.

    State dicts become `<part>.<key>` tensors, tensors stay as they are, anything else
    (`train_args`) goes to the metadata as JSON. Parts not in `keep` (discriminators,
    optimiser states) are dropped: the app only runs inference.
    """
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    extras: dict[str, Any] = {}
    for part in keep:
        value = ckpt.get(part)
        if value is None:
            continue
        if isinstance(value, Mapping) and all(torch.is_tensor(v) for v in value.values()):
            tensors.update({f"{part}.{k}": v for k, v in value.items()})
        elif torch.is_tensor(value):
            tensors[part] = value
        else:
            extras[part] = jsonable_args(value) if isinstance(value, (argparse.Namespace, Mapping)) else value
    tensors = {k: v.detach().cpu().clone() for k, v in tensors.items()}  # no shared storage
    path = Path(path)
    save_file(tensors, str(path), metadata={"format": SAFETENSORS_FORMAT,
                                            _EXTRAS_KEY: json.dumps(extras, sort_keys=True)})
    return path
