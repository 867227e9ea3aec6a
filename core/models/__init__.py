"""Generators and encoders in the official checkpoint layouts (pure PyTorch).

`load_model(arch, path, config)` is the one door from a registry entry to a model: it picks
the family's loader from `FAMILIES` (one row per `arch` in weights.json), checks the entry's
`config` against the loader's arguments and leaves every other problem to the loader, which
raises `UserError` for files that are not what the registry says. Model code is imported
only when a model of that family is loaded (the app starts without it).

Adding a generator family: a module here whose generator implements
`core.models.generator.Generator`, a `load_<family>(path, **config)` function, and a row in
`FAMILIES` (see ARCHITECTURE.md).
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from core.errors import UserError


if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class Family:
    """How to build models of one registry `arch`: `loader` is "module:function", called as
    function(path, **config); `image_size_key` names the config key holding the picture size
    (generators only: a family with one is a `Generator`), so the UI knows it before anything
    is loaded; `conditional`: its generator needs a class; `truncates`: it has a truncation
    trick."""
    loader: str
    image_size_key: str | None = None
    conditional: bool = False  # a generator that draws a class it is given (ImageNet)
    truncates: bool = True  # its generator has a truncation trick (ProGAN and SNGAN have none)

    def load_function(self):
        module, _, name = self.loader.partition(":")
        return getattr(importlib.import_module(module), name)


FAMILIES: dict[str, Family] = {
    "stylegan2": Family("core.models.stylegan2:load_stylegan2", "size"),
    "stylegan2-genforce": Family("core.models.genforce:load_genforce_stylegan2", "size"),  # PandA's port
    "stylemapgan": Family("core.models.stylemapgan:load_stylemapgan_model", "size"),
    "proggan": Family("core.models.proggan:load_proggan", "resolution", truncates=False),
    "biggan-deep": Family("core.models.biggan:build_biggan_from_config", "output_dim", conditional=True),
    "regressor": Family("core.models.regressor:load_regressor"),
    "e4e": Family("core.models.e4e:load_e4e"),
    "sam-invertibility": Family("core.models.invertibility:load_invertibility"),
    "face-parser": Family("core.models.faceparser:load_face_parser"),  # SAM's face segmenter
    "ade20k-encoder": Family("core.models.ade20k:load_ade20k_encoder"),  # SAM's scene segmenter
    "ade20k-decoder": Family("core.models.ade20k:load_ade20k_decoder"),
    # Neural Collage authors' SNGAN: the generator, and the networks of its photo editing
    "sngan": Family("core.models.sngan:load_sngan", "size", conditional=True, truncates=False),
    "sngan-encoder": Family("core.models.sngan:load_sngan_encoder"),
    "sngan-discriminator": Family("core.models.sngan:load_sngan_discriminator"),
    "sngan-auxiliary": Family("core.models.sngan:load_sngan_auxiliary"),
}
STYLEGAN2_ARCHS = ("stylegan2", "stylegan2-genforce")
"""Archs whose models are a `core.models.stylegan2.StyleGAN2Generator` (any file layout): the
StyleGAN2 tabs list them all (`ctx.model_ids(STYLEGAN2_ARCHS)`)."""
DATA_ARCHS = ("panda-factors", "edit-direction")  # registered files that are arrays, not models


GENERATOR_ARCHS = tuple(arch for arch, f in FAMILIES.items() if f.image_size_key)
"""Archs whose models implement `core.models.generator.Generator` (what Generate lists)."""


def is_conditional(arch: str) -> bool:
    """Whether models of `arch` draw a class they are given (a class picker is needed)."""
    family = FAMILIES.get(arch)
    return bool(family and family.conditional)


def truncates(arch: str) -> bool:
    """Whether models of `arch` have a truncation trick (a ψ slider means something)."""
    family = FAMILIES.get(arch)
    return bool(family and family.image_size_key and family.truncates)


def image_size_key(arch: str) -> str | None:
    family = FAMILIES.get(arch)
    return family.image_size_key if family else None


def _check_config(arch: str, fn, config: dict[str, Any], name: str) -> None:
    """Unknown or missing loader arguments are a registry mistake: say so before loading."""
    params = list(inspect.signature(fn).parameters.values())[1:]  # after `path`
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return  # the loader checks its own keys (BigGAN-deep's config.json)
    known = {p.name for p in params if p.name != "map_location"}
    required = {p.name for p in params if p.default is inspect.Parameter.empty}
    unknown, missing = sorted(set(config) - known), sorted(required - set(config))
    if unknown or missing:
        raise UserError(f"The registry's config for {name} ({arch}) "
                        + (f"has unknown keys {unknown}" if unknown else f"lacks {missing}")
                        + f": a {arch} loader takes {', '.join(sorted(known)) or 'no keys'}.")


def load_model(arch: str, path: Path, config: dict[str, Any]) -> "nn.Module":
    if arch not in FAMILIES:
        raise UserError(f"This app cannot load models of architecture {arch!r} "
                        f"(known: {', '.join(sorted(FAMILIES))}).")
    fn = FAMILIES[arch].load_function()
    _check_config(arch, fn, config, Path(path).name)
    return fn(path, **config)
