"""Reading checkpoint files safely (weights_only) with errors a person can act on."""
from __future__ import annotations

import argparse
import pickle
import zipfile
from pathlib import Path

import torch

from core.errors import UserError


def read_torch_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"):
    """torch.load with `weights_only=True` (an argparse.Namespace, as StyleMapGAN stores its
    training arguments, is the one extra type allowed). A truncated or corrupt file becomes
    a UserError that says which file and what to do."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Weights file not found: {path}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile,
            ValueError) as e:
        raise UserError(
            f"Could not read the weights file {path.name}: it looks truncated or corrupt "
            f"({type(e).__name__}). Delete it and download it again."
        ) from e
