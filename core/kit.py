"""The offline kit: every file the app reads from disk besides its code, and one archive that
carries them to machines without internet (a teacher's USB stick).

The app reads three caches: the Hugging Face Hub cache (Hub entries), torch's hub cache (the
LPIPS backbone that torchvision downloads) and the app's own (`core.hub.app_cache_dir()`:
files from authors' servers, remembered checksums, computed PandA factors). `pack` writes the
registry's cached files from all three into one tar archive; `unpack` puts them where this
machine's caches are (its HOME, HF_HOME, XDG_CACHE_HOME, TORCH_HOME, SPATIAL_GAN_CACHE), so
the app then runs offline with the same models. Standard library and huggingface_hub only.
"""
from __future__ import annotations

import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError, shown_path
from core.hub import Registry, WeightEntry, app_cache_dir, cached_path, human_size

KIT_FORMAT = "spatial-gan-studio offline kit"
KIT_VERSION = 1
MANIFEST = "kit.json"
APP_DATA = ("checksums.json", "panda")  # what the app computes or remembers in its cache


@dataclass(frozen=True)
class Extra:
    """A file the app needs besides the registry's: kept in torch's hub cache, fetched by a
    library on first use (`core.lpips`), used by some tabs. `size` is for planning only."""
    name: str
    size: int
    tabs: tuple[str, ...]
    what: str

    def path(self) -> Path:
        return torch_hub_dir() / "checkpoints" / self.name


# torchvision's VGG16 (`VGG16_Weights.IMAGENET1K_V1`, 527.8 MiB), the LPIPS backbone of every
# optimiser; the tabs are those whose module imports core.lpips (checked by the tests)
EXTRAS = (Extra("vgg16-397923af.pth", 553_433_881, ("collage", "ncollage", "panda", "sam", "stylemap"),
                "LPIPS backbone, torchvision's VGG16"),)


def torch_hub_dir() -> Path:
    """`torch.hub.get_dir()` without importing torch: $TORCH_HOME/hub, else
    $XDG_CACHE_HOME/torch/hub, else ~/.cache/torch/hub."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or "~/.cache", "torch")
    return Path(os.path.expanduser(home)) / "hub"


def hub_cache_dir() -> Path:
    """The Hugging Face Hub cache as the Hub client reads it (HF_HUB_CACHE, HF_HOME, ...)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def extras_for(tabs: list[str] | None) -> list[Extra]:
    """The extra files `tabs` need (all of them for None: the whole app)."""
    return [x for x in EXTRAS if tabs is None or set(x.tabs) & set(tabs)]


# ---- sizes and plans ---------------------------------------------------------------------------
def plan(entries: list[WeightEntry], extras: list[Extra]) -> str:
    """One sentence before a download: how much is here, how much comes, what size is unknown."""
    here = [e for e in entries if cached_path(e)]
    missing = [e for e in entries if e not in here]
    extra_missing = [x for x in extras if not x.path().is_file()]
    known = sum(e.size for e in missing if e.size) + sum(x.size for x in extra_missing)
    unknown = [e for e in missing if not e.size]
    files = len(missing) + len(extra_missing)
    text = (f"{len(entries)} models ({len(here)} cached already)"
            + (f" and {len(extras)} library file(s)" if extras else "")
            + f": {files} file(s) to download, {human_size(known)}")
    if unknown:
        text += f" plus {len(unknown)} of unknown size"
    return text + "."


def _origin_kind(e: WeightEntry) -> str:
    """Where a file comes from, in a word: the Hub, Google Drive (quotas), another web server,
    or a local file."""
    if e.hub:
        return "Hub"
    if e.url:
        return "Drive" if e.url.is_drive else "web"
    return "file"


def list_lines(registry: Registry, wide: bool = False, width: int = 100) -> list[str]:
    """`python -m core.hub list`: one line per entry, at most `width` columns unless `wide`
    (then also the architecture, licence and full source); a total and the library files last."""
    head = ["id", "size", "cached", "tabs", "from"]
    if wide:
        head = ["id", "arch", "size", "cached", "tabs", "license", "source"]
    rows, total, unknown, cached_bytes, n_cached = [head], 0, 0, 0, 0
    for e in registry:
        here = cached_path(e)
        size = here.stat().st_size if here else e.size
        total += size or 0
        unknown += size is None
        n_cached += here is not None
        cached_bytes += size if here else 0
        cells = {"id": e.id, "arch": e.arch, "size": human_size(size), "cached": "yes" if here else "no",
                 "tabs": ",".join(e.used_by) or "-", "from": _origin_kind(e), "source": e.origin(),
                 "license": e.license}
        rows.append([cells[h] for h in head])
    for x in EXTRAS:  # in the table too, as torch's files
        cells = {"id": x.name, "arch": "library", "size": human_size(x.size), "from": "torch",
                 "cached": "yes" if x.path().is_file() else "no", "tabs": ",".join(x.tabs),
                 "license": "torchvision's (BSD-3-Clause code; ImageNet-trained weights)", "source": x.what}
        rows.append([cells[h] for h in head])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.append(f"{len(registry)} models, {human_size(total)}"
                 + (f" plus {unknown} of unknown size" if unknown else "")
                 + f"; {n_cached} cached here ({human_size(cached_bytes)})")
    lines.append(f"Library files ({', '.join(x.what for x in EXTRAS)}) live in torch's cache: "
                 f"{shown_path(torch_hub_dir() / 'checkpoints')}")
    if not wide:
        lines.append("Licences and sources: `list --wide` or the Models tab.")
        lines = [line if len(line) <= width else line[:width - 1] + "…" for line in lines]
    return lines


# ---- pack --------------------------------------------------------------------------------------
def _hub_members(found: Path, cache: Path) -> list[tuple[Path, str]]:
    """A cached Hub file as the cache holds it: the snapshot entry (often a link), the blob it
    points to, and the repo's refs (a branch name -> the commit it was at)."""
    rel = found.relative_to(cache)
    repo = cache / rel.parts[0]
    members = [(found, f"hub/{rel.as_posix()}")]
    if found.is_symlink():
        blob = found.resolve()
        members.append((blob, f"hub/{blob.relative_to(cache.resolve()).as_posix()}"))
    refs = repo / "refs"
    if refs.is_dir():
        members += [(f, f"hub/{f.relative_to(cache).as_posix()}") for f in sorted(refs.rglob("*")) if f.is_file()]
    return members


def _within(path: Path, root: Path) -> bool:
    try:
        path.absolute().relative_to(root.absolute())
        return True
    except ValueError:
        return False


def pack(registry: Registry, file: str | Path, tabs: list[str] | None = None) -> str:
    """Write the cached files of the registry (or of `tabs`) from the three caches into one tar
    archive (.tar, or .tar.gz if so named) -> a sentence saying what went in and what not."""
    entries = registry.for_tabs(tabs) if tabs else list(registry)
    hub, app = hub_cache_dir(), app_cache_dir()
    members: dict[str, Path] = {}  # archive name -> file here (once each, in order)
    packed, missing, local = [], [], []
    for e in entries:
        found = cached_path(e)
        if found is None:
            missing.append(e.id)
        elif _within(found, hub):
            members.update({name: path for path, name in _hub_members(found, hub)})
            packed.append(e)
        elif _within(found, app):
            members[f"app/{found.relative_to(app).as_posix()}"] = found
            packed.append(e)
        else:  # a `path` entry: the person's own file, not a cache
            local.append(e.id)
    for name in APP_DATA:
        item = app / name
        for f in ([item] if item.is_file() else sorted(item.rglob("*")) if item.is_dir() else []):
            if f.is_file() and not f.name.endswith(".part"):
                members[f"app/{f.relative_to(app).as_posix()}"] = f
    extras = [x for x in extras_for(tabs or None) if x.path().is_file()]
    for x in extras:
        members[f"torch/checkpoints/{x.name}"] = x.path()
    file = Path(file)
    if any(_within(file, root) for root in (hub, app, torch_hub_dir())):
        raise UserError(f"Write the kit outside the caches it packs (not {file}).")
    manifest = {"format": KIT_FORMAT, "version": KIT_VERSION, "models": [e.id for e in packed],
                "library_files": [x.name for x in extras]}
    mode = "w:gz" if file.name.endswith((".gz", ".tgz")) else "w"
    file.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(file, mode) as tar:
            _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=1).encode())
            for name, path in members.items():
                tar.add(path, arcname=name, recursive=False)
    except OSError as e:
        raise UserError(f"Cannot write the kit {file}: {e.strerror or e}.") from None
    size = sum(p.stat().st_size for p in members.values() if not p.is_symlink())
    text = (f"Packed {len(packed)} of {len(entries)} models"
            + (f" and {len(extras)} library file(s)" if extras else "")
            + f" ({human_size(size)}) into {file}.")
    if missing:
        text += (f" Not cached here, so not packed ({len(missing)}): {', '.join(missing)}; run "
                 f"`python -m core.hub download` for them first.")
    if local:
        text += f" Local files (`path` entries) are not packed: {', '.join(local)}."
    return text


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import io
    import time

    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), int(time.time())
    tar.addfile(info, io.BytesIO(data))


# ---- unpack ------------------------------------------------------------------------------------
def unpack(registry: Registry, file: str | Path) -> str:
    """Put a kit's files into this machine's caches (merging remembered checksums) -> a
    sentence saying how many registered models are now cached here."""
    if not hasattr(tarfile, "data_filter"):
        raise UserError("Unpacking a kit needs Python 3.10.12, 3.11.4, 3.12 or newer (tarfile's "
                        "safe extraction).")
    file = Path(file)
    roots = {"hub": hub_cache_dir(), "torch": torch_hub_dir(), "app": app_cache_dir()}
    try:
        tar = tarfile.open(file)
    except (OSError, tarfile.TarError) as e:
        raise UserError(f"Cannot open the kit {file}: {getattr(e, 'strerror', None) or e}.") from None
    with tar:
        manifest = _manifest(tar, file)
        count = 0
        for member in tar:
            part, _, rest = member.name.partition("/")
            if member.name == MANIFEST or part not in roots or not rest:
                continue
            if part == "app" and rest == "checksums.json":
                _merge_checksums(tar.extractfile(member).read(), roots["app"] / rest)
            else:
                roots[part].mkdir(parents=True, exist_ok=True)
                try:
                    tar.extract(member.replace(name=rest, deep=False), roots[part], filter="data")
                except tarfile.FilterError as e:
                    raise UserError(f"The kit {file} holds a file that would land outside the "
                                    f"caches ({member.name}: {e}); it was not unpacked further.") from None
            count += 1
    now = [e.id for e in registry if cached_path(e)]
    return (f"Unpacked {count} files ({len(manifest.get('models', []))} models) into "
            f"{roots['hub']}, {roots['app']} and {roots['torch']}. {len(now)} of {len(registry)} "
            f"registered models are cached here now.")


def _manifest(tar: tarfile.TarFile, file: Path) -> dict:
    try:
        data = json.loads(tar.extractfile(MANIFEST).read())
    except (KeyError, AttributeError, ValueError):
        data = {}
    if data.get("format") != KIT_FORMAT:
        raise UserError(f"{file} is not an offline kit of this app (`python -m core.hub pack` "
                        f"writes one).")
    if data.get("version", 0) > KIT_VERSION:
        raise UserError(f"{file} was written by a newer version of this app; update it first.")
    return data


def _merge_checksums(data: bytes, target: Path) -> None:
    """The kit's remembered checksums added to this machine's (its own are kept)."""
    try:
        ours = json.loads(target.read_text())
    except (OSError, ValueError):
        ours = {}
    merged = {**json.loads(data), **ours}
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(merged, indent=1, sort_keys=True))
