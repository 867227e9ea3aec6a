"""What a run made and how to make it again: recipes, "download all" bundles, licence notes.

No Gradio here. A tab keeps its last run as a `Run` (pictures, masks and latents as CPU numpy
arrays, plus a recipe dict) in a `gr.State`; `write_bundle` turns one into a single .zip:

    recipe.json        app commit and versions, tab, operation, time (UTC), model id(s) with
                       their registry entry (Hub repo/filename/revision or URL or path,
                       sha256, licence), seed(s), every setting of the run
    images/NAME.png    results and the pictures they were made from (lossless PNG)
    masks/NAME.png     the masks used (8-bit grey, 255 = 1)
    latents.npz        latents, codes and other arrays (numpy, no pickle)

`read_bundle` reads one back (tests, notebooks) within the bounds of `core.runfile`;
`open_run` is what a tab calls with a person's upload. `make_recipe` builds the recipe from
registry entries; `to_jsonable` makes settings JSON-safe (numpy and torch scalars
included). `licence_note` summarises the licences of the weights a tab uses, from the
registry's `license` and `used_by` fields.
"""
from __future__ import annotations

import dataclasses
import enum
import io
import json
import math
import platform
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch
from PIL import Image

from core.errors import UserError
from core.hub import Registry, WeightEntry, cached_path, sha256_of
from core.images import to_uint8
from core.recipe_check import check_recipe
from core.runfile import MAX_RECIPE_BYTES, RunZip

APP_NAME = "Spatial GAN Studio"
BUNDLE_FORMAT = 1
ROOT = Path(__file__).resolve().parent.parent
SMALL_ARRAY = 64  # arrays up to this many numbers stay in recipe.json as lists


# ---- JSON ----------------------------------------------------------------------------------
def to_jsonable(value: Any) -> Any:
    """`value` as plain JSON types: numpy/torch scalars become numbers, small arrays lists,
    large ones a {shape, dtype} summary (their data belongs in latents.npz), paths and
    dtypes strings, dataclasses and mappings dicts, non-finite floats the strings "nan",
    "inf", "-inf" (strict JSON has no such numbers)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else str(value)
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            value = value.float()
        value = value.numpy()
    if isinstance(value, np.ndarray):
        if value.size <= SMALL_ARRAY and value.dtype.kind in "biuf":
            return to_jsonable(value.tolist())
        return {"shape": list(value.shape), "dtype": str(value.dtype)}
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if isinstance(value, (Path, torch.dtype, torch.device)):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return [to_jsonable(v) for v in sorted(value, key=repr)]
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return str(value)


# ---- what produced a run -------------------------------------------------------------------
@lru_cache(maxsize=1)
def git_commit(root: Path = ROOT) -> str | None:
    """The checked-out commit of the app's repository (read from .git, no subprocess), or
    None when the app does not run from a git checkout (a Space, a copied folder)."""
    try:
        git = root / ".git"
        if git.is_file():  # a worktree: "gitdir: <path>"
            git = (root / git.read_text().split(":", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head or None
        ref = head.split(":", 1)[1].strip()
        bases = [git]
        if (git / "commondir").is_file():  # a worktree keeps its branches in the main .git
            bases.append((git / (git / "commondir").read_text().strip()).resolve())
        for base in bases:
            if (base / ref).is_file():
                return (base / ref).read_text().strip()
            packed = base / "packed-refs"
            if packed.is_file():
                for line in packed.read_text().splitlines():
                    if line.endswith(" " + ref):
                        return line.split(" ", 1)[0]
    except (OSError, IndexError):
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@lru_cache(maxsize=1)
def _app_info() -> dict:
    return {"name": APP_NAME, "commit": git_commit(),
            "python": platform.python_version(), "torch": torch.__version__,
            "gradio": _version("gradio"), "numpy": np.__version__}


def app_info() -> dict:
    """The app (its git commit when it runs from a checkout) and the library versions that
    ran it; looked up once per process."""
    return dict(_app_info())


def _resolved_commit(entry: WeightEntry) -> str | None:
    """The Hub commit the cached file really comes from (its snapshot folder), if cached."""
    if entry.hub is None:
        return None
    here = cached_path(entry)
    if here is None:
        return None
    parts = here.parts
    if "snapshots" in parts:
        i = parts.index("snapshots")
        if i + 1 < len(parts) and re.fullmatch(r"[0-9a-f]{40}", parts[i + 1]):
            return parts[i + 1]
    return None


def model_record(entry: WeightEntry) -> dict:
    """A registry entry as the recipe records it: where the file comes from and what it is."""
    rec: dict[str, Any] = {"id": entry.id, "arch": entry.arch, "config": to_jsonable(entry.config)}
    if entry.hub is not None:
        rec["hub"] = {"repo_id": entry.hub.repo_id, "filename": entry.hub.filename,
                      "revision": entry.hub.revision, "repo_type": entry.hub.repo_type}
        rec["hub"]["resolved_commit"] = _resolved_commit(entry)
    elif entry.url is not None:
        rec["url"] = {"href": entry.url.href, "filename": entry.url.filename}
    else:
        rec["path"] = str(entry.path)
    rec.update(sha256=entry.sha256, sha256_source="registry" if entry.sha256 else None,
               size=entry.size, license=entry.license, source=entry.source)
    return rec


def make_recipe(tab: str, operation: str, models: Mapping[str, WeightEntry] | None = None, *,
                seeds: Iterable[int] = (), settings: Mapping[str, Any] | None = None,
                device: torch.device | str | None = None, notes: str | None = None) -> dict:
    """The recipe of one run. `models` maps a role ("generator", "regressor", ...) to its
    registry entry; the first one is the run's `model_id`. `seed` is the first (main) seed,
    `seeds` all of them in order. Cheap: tabs make one per run (live re-runs included)."""
    entries = dict(models or {})
    seeds = [int(s) for s in seeds]
    first = next(iter(entries.values()), None)
    return {
        "app": app_info(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tab": tab,
        "operation": operation,
        "model_id": first.id if first else None,
        "models": {role: model_record(e) for role, e in entries.items()},
        "seed": seeds[0] if seeds else None,
        "seeds": seeds,
        "settings": to_jsonable(dict(settings or {})),
        "device": None if device is None else str(device),
        "notes": notes,
    }


_local_hashes: dict[tuple[str, int, float], str] = {}


def fill_local_hashes(recipe: dict, registry: Registry) -> dict:
    """A copy of `recipe` in which every model whose registry entry pins no sha256 gets the
    sha256 of the local file the run used (hashed once per file per process)."""
    out = json.loads(json.dumps(to_jsonable(recipe)))
    for rec in out.get("models", {}).values():
        if rec.get("sha256") or rec.get("id") not in registry.ids():
            continue
        here = cached_path(registry.get(rec["id"]))
        if here is None or not here.is_file():
            continue
        st = here.stat()
        key = (str(here), st.st_size, st.st_mtime)
        if key not in _local_hashes:
            _local_hashes[key] = sha256_of(here)
        rec.update(sha256=_local_hashes[key], sha256_source="local file (not pinned in the registry)")
    return out


# ---- a run: pictures, masks, arrays, recipe --------------------------------------------------
def as_picture(x: Any) -> np.ndarray | list[np.ndarray]:
    """A picture as uint8 [H, W, 3|4] or [H, W]: uint8 arrays, PIL images, or engine tensors
    [3, H, W] / [B, 3, H, W] in [-1, 1] (a batch gives a list)."""
    if isinstance(x, (list, tuple)):
        return [as_picture(p) for p in x]
    if isinstance(x, Image.Image):
        return np.asarray(x).copy()
    if isinstance(x, torch.Tensor):
        t = x[None] if x.ndim == 3 else x
        if t.ndim != 4 or t.shape[1] not in (1, 3):
            raise TypeError(f"an image tensor must be [B, 3, H, W], not {tuple(x.shape)}")
        arr = to_uint8(t)
        arr = arr[..., 0] if arr.shape[-1] == 1 else arr
        return arr[0].copy() if len(arr) == 1 else [a.copy() for a in arr]
    a = np.asarray(x)
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise TypeError(f"a picture must be uint8 [H, W] or [H, W, 3|4], not {a.dtype} {a.shape}")
    return a.copy()


def as_mask(x: Any) -> np.ndarray | list[np.ndarray]:
    """A mask as uint8 [H, W] (255 = 1): tensors or float arrays in [0, 1] ([..., H, W];
    several masks give a list), bool arrays, or uint8 arrays as they are."""
    if isinstance(x, (list, tuple)):
        return [as_mask(m) for m in x]
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    a = np.asarray(x)
    if a.ndim < 2:
        raise TypeError(f"a mask must be [..., H, W], not {a.shape}")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = (np.clip(a.astype(np.float64), 0, 1) * 255).round().astype(np.uint8)
    a = a.reshape(-1, *a.shape[-2:])
    return a[0].copy() if len(a) == 1 else [m.copy() for m in a]


def as_array(x: Any) -> np.ndarray:
    """Latents and other numbers as a numeric numpy array on the CPU."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = x.float() if x.dtype == torch.bfloat16 else x
        x = x.numpy()
    a = np.asarray(x)
    if a.dtype.kind not in "biufc":
        raise TypeError(f"arrays must be numeric, not {a.dtype}")
    return a.copy()


@dataclass
class Run:
    """What one run of a tab produced, on the CPU (what a tab keeps in gr.State; never a
    model). Values are converted when the Run is made: pictures to uint8 arrays (a list or
    a batch makes NAME_01, NAME_02, ...), masks to uint8 grey, arrays to numpy."""
    images: dict[str, Any]
    masks: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, Any] = field(default_factory=dict)
    recipe: dict = field(default_factory=dict)

    def __post_init__(self):
        self.images = {k: as_picture(v) for k, v in self.images.items() if v is not None}
        self.masks = {k: as_mask(v) for k, v in self.masks.items() if v is not None}
        self.arrays = {k: as_array(v) for k, v in self.arrays.items() if v is not None}

    def write(self, directory: str | Path | None = None, name: str | None = None) -> Path:
        return write_bundle(self.images, self.masks, self.arrays, self.recipe, directory, name)


def _files(prefix: str, items: Mapping[str, Any]) -> Iterable[tuple[str, np.ndarray]]:
    for key, value in items.items():
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(key)).strip("_") or "item"
        if isinstance(value, list):
            width = max(2, len(str(len(value))))
            for i, v in enumerate(value, 1):
                yield f"{prefix}/{safe}_{i:0{width}d}.png", v
        else:
            yield f"{prefix}/{safe}.png", value


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=4)
    return buf.getvalue()


_download_dir: Path | None = None


def downloads_dir() -> Path:
    """One temporary folder per process for the zips handed to the browser."""
    global _download_dir
    if _download_dir is None or not _download_dir.is_dir():
        _download_dir = Path(tempfile.mkdtemp(prefix="spatial-gan-downloads-"))
    return _download_dir


def write_bundle(images: Mapping[str, Any], masks: Mapping[str, Any] | None = None,
                 arrays: Mapping[str, Any] | None = None, recipe: Mapping[str, Any] | None = None,
                 directory: str | Path | None = None, name: str | None = None) -> Path:
    """One .zip with images/*.png, masks/*.png, latents.npz and recipe.json -> its path.

    `images`, `masks`, `arrays` map names to values (what `Run` accepts); the recipe gains a
    `bundle` entry listing the files and each array's shape and dtype."""
    images = {k: as_picture(v) for k, v in (images or {}).items() if v is not None}
    masks = {k: as_mask(v) for k, v in (masks or {}).items() if v is not None}
    arrays = {k: as_array(v) for k, v in (arrays or {}).items() if v is not None}
    recipe = to_jsonable(dict(recipe or {}))
    image_files, mask_files = list(_files("images", images)), list(_files("masks", masks))
    recipe["bundle"] = {
        "format": BUNDLE_FORMAT,
        "images": [p for p, _ in image_files],
        "masks": [p for p, _ in mask_files],
        "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()},
        "latents_file": "latents.npz" if arrays else None,
    }
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    words = dict.fromkeys(re.sub(r"[^A-Za-z0-9]+", "-", str(recipe.get(k))).strip("-")
                          for k in ("tab", "operation") if recipe.get(k))  # once each, in order
    tag = "-".join(w for w in words if w)
    name = name or f"{tag or 'run'}-{stamp}.zip"
    folder = Path(directory) if directory is not None else Path(tempfile.mkdtemp(dir=downloads_dir()))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("recipe.json", json.dumps(recipe, indent=2, ensure_ascii=False, allow_nan=False))
        for arcname, picture in image_files + mask_files:
            zf.writestr(zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0)), _png(picture),
                        compress_type=zipfile.ZIP_STORED)  # PNG is compressed already
        if arrays:
            buf = io.BytesIO()
            np.savez_compressed(buf, **arrays)
            zf.writestr("latents.npz", buf.getvalue())
    return path


@dataclass
class Bundle:
    images: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    arrays: dict[str, np.ndarray]
    recipe: dict


def read_bundle(path: str | Path, pictures: bool = True, arrays: bool = True) -> Bundle:
    """A zip written by `write_bundle`, back as arrays (keys: file names without folder and
    .png) and the recipe; `pictures=False` / `arrays=False` leave those unread. Read within
    bounds (`core.runfile`: member count and sizes, pictures' pixels, arrays' sizes, all
    checked before unpacking); arrays load without pickle."""

    with RunZip(path) as run:
        recipe = json.loads(run.read("recipe.json", MAX_RECIPE_BYTES))
        pics = run.pictures() if pictures else {"images": {}, "masks": {}}
        found = arrays and "latents.npz" in run.names()
        latents = run.arrays("latents.npz") if found else {}
    return Bundle(pics["images"], pics["masks"], latents, recipe)


def open_run(path: str | Path | None, pictures: bool = True, arrays: bool = True) -> Bundle:
    """A run a person saved with "Download all" and uploads again, or a readable refusal: a
    file that is not a run, one over the bounds of `core.runfile`, a recipe of the wrong
    shape (`core.recipe_check`)."""

    if not path:
        raise UserError("Choose a run (.zip) saved with \"Download all\".")
    try:
        bundle = read_bundle(path, pictures, arrays)
    except (OSError, ValueError, KeyError, EOFError, RecursionError, zipfile.BadZipFile,
            zipfile.LargeZipFile):
        raise UserError("That file is not a run saved with \"Download all\" (a .zip with a "
                        "recipe.json).") from None
    check_recipe(bundle.recipe)
    return bundle


# ---- licences ------------------------------------------------------------------------------
_NON_COMMERCIAL = re.compile(r"non-?commercial|\bNC\b|-NC\b", re.IGNORECASE)
_URL = re.compile(r"https?://[^\s)\];,]+")


def is_non_commercial(license_text: str) -> bool:
    return bool(_NON_COMMERCIAL.search(license_text or ""))


def _short_licence(text: str) -> tuple[str, str | None]:
    """"Nvidia Source Code License-NC (non-commercial ...): https://..." -> (name, url)."""
    text = (text or "").strip()
    url = _URL.search(text)
    name = re.split(r" \(|: |; ", text, maxsplit=1)[0].strip().rstrip(".:;,") or "licence not stated"
    return name, url.group(0).rstrip(".") if url else None


def tab_entries(registry: Registry, tab: str, ids: Iterable[str] = ()) -> list[WeightEntry]:
    """The registry entries a tab uses: those whose `used_by` names it, plus `ids` (what the
    tab offers in its menus, for registries without `used_by`), in registry order."""
    wanted = set(ids)
    return [e for e in registry if tab in e.used_by or e.id in wanted]


def licence_note(registry: Registry, tab: str, ids: Iterable[str] = ()) -> str:
    """One Markdown line under a tab's header: the licences of the weights it uses (grouped,
    linked when the registry gives an address) and how many are non-commercial."""
    entries = tab_entries(registry, tab, ids)
    if not entries:
        return "⚖️ **Weights:** none registered for this tab."
    groups: dict[tuple[str, bool], dict[str, Any]] = {}
    for e in entries:
        name, url = _short_licence(e.license)
        # e.g. an MIT encoder that only serves a non-commercial generator
        extra = is_non_commercial(e.license) and not is_non_commercial(name)
        g = groups.setdefault((name, extra), {"url": url, "n": 0})
        g["n"] += 1
        g["url"] = g["url"] or url
    listed = " · ".join((f"[{name}]({g['url']})" if g["url"] else name)
                        + f" ({g['n']}{'; non-commercial terms apply' if extra else ''})"
                        for (name, extra), g in groups.items())
    nc = sum(is_non_commercial(e.license) for e in entries)
    n = len(entries)
    if nc == n:
        use = f"**non-commercial use only** ({'all ' + str(n) + ' models' if n > 1 else 'its model'})"
    elif nc:
        use = f"**{nc} of {n} models {'is' if nc == 1 else 'are'} for non-commercial use only**"
    else:
        use = f"{n} model{'s' if n > 1 else ''}, none marked non-commercial (check each licence)"
    return (f"⚖️ **Weights:** {use}. Licences: {listed}. Each model's licence and source: "
            "the Models tab; results you download keep them in `recipe.json`.")
