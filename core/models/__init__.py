"""Generators and encoders in the official checkpoint layouts (pure PyTorch).

`load_model(arch, path, config)` is the one door from a registry entry to a model: it
picks the loader for the entry's `arch` and turns a checkpoint that does not fit the
registered configuration into a UserError.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from torch import nn

from core.errors import UserError


def _stylegan2(path: Path, config: dict[str, Any]) -> nn.Module:
    from core.models.stylegan2 import load_stylegan2

    # "content" is the picture area inside the frame (LSUN cars: 512x384): the tabs' business
    return load_stylegan2(path, **{k: v for k, v in config.items() if k != "content"})


def _stylemapgan(path: Path, config: dict[str, Any]) -> nn.Module:
    from core.models.stylemapgan import StyleMapGAN, load_stylemapgan

    model = StyleMapGAN(*load_stylemapgan(path))
    model.check_config(config, path.name)
    return model


def _regressor(path: Path, config: dict[str, Any]) -> nn.Module:
    from core.models.regressor import load_regressor

    # "generator" pairs the regressor with the generator entry it was trained for and
    # "content" is that generator's picture area: the tab's business, not the loader's
    return load_regressor(path, **{k: v for k, v in config.items() if k not in ("generator", "content")})


def _biggan_deep(path: Path, config: dict[str, Any]) -> nn.Module:
    from core.models.biggan import build_biggan

    # the entry's config is the published config.json (pytorch-pretrained-BigGAN)
    return build_biggan(config, path)


def _proggan(path: Path, config: dict[str, Any]) -> nn.Module:
    from core.models.proggan import load_proggan

    # resolution and channel sizes come from the file; a `resolution` in config is checked
    return load_proggan(path, **config)


def _sam_invertibility(path: Path, config: dict[str, Any]) -> nn.Module:
    from core.models.invertibility import load_invertibility

    # the file fixes the whole architecture; an entry's config (the domain or generator it
    # was trained for) is the SAM tab's business, not the loader's
    return load_invertibility(path)


def _e4e(path: Path, config: dict[str, Any]) -> nn.Module:
    from core.models.e4e import load_e4e

    # n_styles is read from the file (checked when given); input_size defaults to the
    # authors' transform for the file's dataset (192x256 for cars, 256x256 otherwise);
    # "generator" pairs the encoder with its generator entry: the tab's business
    return load_e4e(path, **{k: v for k, v in config.items() if k != "generator"})


LOADERS: dict[str, Callable[[Path, dict[str, Any]], nn.Module]] = {
    "stylegan2": _stylegan2, "stylemapgan": _stylemapgan, "regressor": _regressor,
    "biggan-deep": _biggan_deep, "proggan": _proggan, "sam-invertibility": _sam_invertibility,
    "e4e": _e4e}


def load_model(arch: str, path: Path, config: dict[str, Any]) -> nn.Module:
    if arch not in LOADERS:
        raise UserError(f"This app cannot load models of architecture {arch!r} "
                        f"(known: {', '.join(sorted(LOADERS))}).")
    try:
        return LOADERS[arch](path, config)
    except (KeyError, TypeError) as e:
        raise UserError(f"{path.name} is not a {arch} checkpoint with the registered "
                        f"configuration {config}: {e}") from e
    except RuntimeError as e:  # load_state_dict: missing/unexpected keys, size mismatch
        first = str(e).strip().splitlines()[0:3]
        raise UserError(f"{path.name} does not match the registered {arch} configuration "
                        f"{config}: {' '.join(first)}") from e
