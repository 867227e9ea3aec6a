"""PandA's factor files: the registry's published factor pairs and those computed here (or the
authors' own files dropped into the app's cache), listed and read once per app by label
(`FactorLibrary`, `library`). No Gradio.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from core.errors import UserError, hosted
from core.hub import app_cache_dir, fetch
from core.models import STYLEGAN2_ARCHS
from demos.panda.engine import TAB, FactorSet, set_label
from demos.panda.factors import load_factor_file

if TYPE_CHECKING:
    from core.context import AppContext
    from core.hub import WeightEntry

FACTOR_KINDS = ("appearances", "parts")
FILE_NAME = re.compile(r"U[cs]-name_(?P<name>.+)-layer_(?P<layer>\d+)-rank_(?P<rank>\d+)\.npy")


@dataclass(frozen=True)
class FactorFile:
    """A registered factor file (role "factors") as PandA reads its registry meta: which
    factor (appearances or parts), of which StyleGAN2 layer, how many components. Typed and
    checked here, not in core: factors are PandA's concept."""
    entry: WeightEntry
    factor: str
    layer: int
    rank: int

    @classmethod
    def of(cls, entry: WeightEntry) -> "FactorFile":
        meta = entry.meta.extra
        problems = [] if entry.generator else ["its generator"]
        if meta.get("factor") not in FACTOR_KINDS:
            problems.append(f"meta factor ({' or '.join(FACTOR_KINDS)})")
        for key in ("layer", "rank"):
            value = meta.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"meta {key} (a whole number)")
        if problems:
            raise UserError(f"Registry entry {entry.id!r} (PandA factors) needs {', '.join(problems)}: "
                            f"a factor file needs its generator and meta layer, factor and rank.")
        return cls(entry, meta["factor"], meta["layer"], meta["rank"])


def factor_files(registry) -> list[FactorFile]:
    """Every registered factor file, typed (a malformed entry is a sentence at start-up)."""
    return [FactorFile.of(e) for e in registry.with_role("factors")]


def computed_dir() -> Path:
    return app_cache_dir() / "panda"


def shown_folder(folder: Path) -> str:
    """A folder under the app's cache as the page shows it: in full for the machine's owner
    (who may add files there), from the cache down on a shared host (no server paths)."""
    if not hosted():
        return str(folder)
    try:
        return f"<app cache>/{folder.relative_to(app_cache_dir()).as_posix()}"
    except ValueError:
        return folder.name


class FactorLibrary:
    """Published factor files from the registry and factors computed here, by label."""

    def __init__(self, ctx: AppContext):
        self.registry = ctx.registry  # not ctx itself: see `library`
        self._loaded: dict[str, FactorSet] = {}

    def published(self) -> dict[str, tuple[str, str, str, int]]:
        """label -> (generator id, appearances entry id, parts entry id, layer)."""
        files = factor_files(self.registry)
        sets = {}
        for a in (f for f in files if f.factor == "appearances"):
            for p in (f for f in files if f.factor == "parts"):
                if (a.entry.generator, a.layer) == (p.entry.generator, p.layer):
                    label = set_label(a.entry.generator, a.layer, a.rank, p.rank, "published")
                    sets[label] = (a.entry.generator, a.entry.id, p.entry.id, a.layer)
        return sets

    def computed(self) -> dict[str, tuple[Path, Path]]:
        """label -> (Uc file, Us file) for factor pairs under `computed_dir()/<generator id>/`,
        named as the authors name them (their own files dropped there are listed too)."""
        out = {}
        root = computed_dir()
        for gen_dir in sorted(root.glob("*")) if root.is_dir() else []:
            if gen_dir.name not in self.registry.ids(STYLEGAN2_ARCHS):
                continue
            for us in sorted(gen_dir.glob("Us-name_*-layer_*-rank_*.npy")):
                found = FILE_NAME.fullmatch(us.name)
                if not found:
                    continue  # not a factor file
                name, layer, rank_s = found["name"], int(found["layer"]), found["rank"]
                uc = next(iter(sorted(gen_dir.glob(f"Uc-name_{name}-layer_{layer}-rank_*.npy"))), None)
                if uc is not None:
                    rank_c = FILE_NAME.fullmatch(uc.name)["rank"]
                    out.setdefault(set_label(gen_dir.name, layer, rank_c, rank_s, "computed"), (uc, us))
        return out

    def authors_name(self, generator: str) -> str:
        """The name the authors' files use for a generator (`stylegan2_ffhq1024`): read from
        its published factor files, else made from the id the genforce way
        (stylegan2-car-512 -> stylegan2_car512)."""
        for e in self.registry.with_role("factors", generator):
            where = e.hub.filename if e.hub else e.url.filename if e.url else str(e.path or "")
            found = FILE_NAME.fullmatch(where.rsplit("/", 1)[-1])
            if found:
                return found["name"]
        head, *rest = generator.split("-")
        return f"{head}_{''.join(rest)}" if rest else head

    def forget(self, label: str) -> None:
        """Drop a loaded set (its files were just rewritten)."""
        self._loaded.pop(label, None)

    def labels(self) -> list[str]:
        return list(self.published()) + list(self.computed())

    def get(self, label: str) -> FactorSet:
        if label in self._loaded:
            return self._loaded[label]
        pub, comp = self.published(), self.computed()
        if label in pub:
            gen, a_id, p_id, layer = pub[label]
            A = load_factor_file(fetch(self.registry.get(a_id)))
            P = load_factor_file(fetch(self.registry.get(p_id)))
            fs = FactorSet(gen, layer, A, P, "published")
        elif label in comp:
            uc, us = comp[label]
            layer = int(FILE_NAME.fullmatch(us.name)["layer"])
            fs = FactorSet(us.parent.name, layer, load_factor_file(uc), load_factor_file(us), "computed")
        else:
            raise UserError(f"Unknown factor set {label!r}: pick one from the list or compute one.")
        if (fs.A.ndim != 2 or fs.P.ndim != 2 or (fs.P < 0).any()
                or not (torch.isfinite(fs.A).all() and torch.isfinite(fs.P).all())):
            raise UserError(f"The factor files of {label!r} are not PandA factors (A: C x R_C, P: S x R_S >= 0).")
        self._loaded[label] = fs
        return fs


def library(ctx: AppContext) -> FactorLibrary:
    """The app's factor library, so factor files are read once for every handler and session."""
    return ctx.shared((TAB, "library"), lambda: FactorLibrary(ctx))


def licensed_ids(ctx: AppContext) -> list[str]:
    """The tab's weights for its licence line: every factor file and its registered generator."""
    factors = ctx.registry.with_role("factors")
    known = set(ctx.registry.ids())
    return [e.id for e in factors] + [e.generator for e in factors if e.generator in known]
