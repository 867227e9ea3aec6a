"""The weights registry (`weights.json`) and getting its files onto this machine.

Each entry names one file and where it comes from: a Hugging Face Hub repo (downloaded with
`hf_hub_download` into the standard Hub cache), a local `path` (tests, users' own
checkpoints) or a plain `url` (authors' servers, Google Drive; downloaded here with resume
into `app_cache_dir()/weights/<id>/`). A known sha256 is checked once per process, because
the Hub client only checks sizes. Every failure a person can fix (offline, missing file,
corrupt download, unknown model) is a `UserError` naming the model, the source and the
command to run.

    python -m core.hub list [--wide]        # what is registered, sizes, tabs, what is cached
    python -m core.hub download --all       # fetch everything (offline classroom)
    python -m core.hub download --tab TAB [TAB ...]   # what some tabs use
    python -m core.hub download ID [ID ...] [--force]
    python -m core.hub pack FILE [--tab TAB ...]      # every cache the app reads, one archive
    python -m core.hub unpack FILE          # ... into this machine's caches (see core/kit.py)
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import re
import sys
import urllib.error
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from http.client import HTTPException
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterator, Mapping
from urllib.parse import unquote, urlsplit

from core import download
from core.errors import UserError, shown_path
from core.framing import FRAMINGS
from core.runtime import in_worker

DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights.json"
WEIGHTS_ENV = "SPATIAL_GAN_WEIGHTS"
PREFETCH_HINT = "python -m core.hub download {id}"
CACHE_ENV = "SPATIAL_GAN_CACHE"
OFFLINE_ENV = "SPATIAL_GAN_OFFLINE"


def app_cache_dir() -> Path:
    """Where the app keeps what it downloads or computes itself ($SPATIAL_GAN_CACHE)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "spatial-gan-studio")


@dataclass(frozen=True)
class HubSource:
    repo_id: str
    filename: str
    revision: str = "main"
    repo_type: str = "model"

    def describe(self) -> str:
        kind = "" if self.repo_type == "model" else f"{self.repo_type} "
        return f"{kind}{self.repo_id}/{self.filename}@{self.revision}"


@dataclass(frozen=True)
class UrlSource:
    """A file at a plain web address; `filename` is its name in the app's cache."""
    href: str
    filename: str

    @property
    def is_drive(self) -> bool:
        return download.is_drive(self.href)


@dataclass(frozen=True)
class EntryMeta:
    """What the tabs know about a file beyond how to build it (`"meta"` in weights.json).

    `content`: the picture area [width, height] inside the generator's square frame, when
    smaller (LSUN cars: 512x384); `name`: a display name (edit directions); `framing`: how the
    model's training pictures were cut from photos (one of FRAMINGS, `core.faces.align`
    reproduces each), so a person's photo is framed the same way. `extra`: a kind's own
    fields (PandA factor files: factor, layer, rank), plain JSON values here, typed and
    checked by the tab that reads them: they are not core's concepts."""
    content: tuple[int, int] | None = None
    name: str | None = None
    framing: str | None = None
    extra: Mapping[str, str | int | float | bool] = field(default_factory=dict, hash=False)


_META_TYPES: dict[str, type] = {"content": list, "name": str, "framing": str}


@dataclass(frozen=True)
class WeightEntry:
    """One pretrained file: how to get it (`hub`, `path` or `url`), how to build the model
    from it (`arch` + `config`, the loader's keyword arguments and nothing else), which
    registered generator it belongs to (`generator`: encoders, regressors, predictors,
    directions, factors) as what (`role`: its encoder, its regressor, ...; the way a diffusers
    `model_index.json` names a pipeline's components) and what the tabs show about it (`meta`)."""
    id: str
    arch: str
    config: dict[str, Any] = field(default_factory=dict)
    generator: str | None = None
    meta: EntryMeta = field(default_factory=EntryMeta)
    hub: HubSource | None = None
    path: Path | None = None
    url: UrlSource | None = None
    sha256: str | None = None
    size: int | None = None
    license: str = ""
    source: str = ""
    description: str = ""
    used_by: tuple[str, ...] = ()
    mirrors: tuple[HubSource | UrlSource, ...] = ()  # the same file elsewhere, tried in order
    role: str = "generator"  # what the file is to its generator (or to the app): see ROLES

    def alternatives(self) -> list["WeightEntry"]:
        """This entry as fetched from each mirror in turn (same id, checksum, cache place)."""
        return [replace(self, hub=m if isinstance(m, HubSource) else None,
                        url=m if isinstance(m, UrlSource) else None, path=None, mirrors=())
                for m in self.mirrors]

    def image_size(self) -> int | None:
        """The picture size a generator entry draws, from its config (the key its family
        uses: `core.models.image_size_key`), known before anything is loaded; None for
        entries that are not generators."""
        from core.models import image_size_key

        key = image_size_key(self.arch)
        return int(self.config[key]) if key and key in self.config else None

    def origin(self) -> str:
        if self.hub:
            return f"Hub {self.hub.describe()}"
        return f"URL {self.url.href}" if self.url else f"local file {self.path}"


log = logging.getLogger("spatial_gan_studio")

_REQUIRED = ("id", "arch")
_KNOWN = {"id", "arch", "config", "generator", "meta", "hub", "path", "url", "sha256", "size",
          "license", "source", "description", "used_by", "mirrors", "role"}
ROLES = {  # a companion's role, by its arch when the entry does not state one
    "regressor": "regressor",          # Collage: photo + mask -> W+ of its generator
    "e4e": "encoder",                  # photo -> W+ (SAM's start, PandA's quick code)
    "sngan-encoder": "encoder",        # photo -> z (Neural Collage's photo fit)
    "sngan-discriminator": "discriminator",
    "sngan-auxiliary": "auxiliary",
    "sam-invertibility": "predictor",  # SAM: which layer a region inverts well in
    "edit-direction": "direction",     # SAM's edits
    "panda-factors": "factors",        # PandA: appearances or parts of one layer
    "face-parser": "face-parser",      # segmenters: belong to the app, not to a generator
    "ade20k-encoder": "scene-encoder",
    "ade20k-decoder": "scene-decoder",
}
ROLE_NAMES = ("generator", *sorted(set(ROLES.values())))
_TEXT_FIELDS = ("id", "arch", "license", "source", "description")


def _parse_meta(raw: Any, where: str) -> EntryMeta:
    if raw is None:
        return EntryMeta()
    if not isinstance(raw, dict):
        raise UserError(f"{where}: 'meta' must be an object")
    extra = {k: v for k, v in raw.items() if k not in _META_TYPES}
    for key, value in extra.items():
        if not (_ID.fullmatch(str(key)) and isinstance(value, (str, int, float, bool))):
            raise UserError(f"{where}: meta '{key}' must be a name with a plain value (text, a "
                            f"number or true/false), not {value!r}")
    for key, kind in _META_TYPES.items():
        value = raw.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise UserError(f"{where}: meta '{key}' must be {kind.__name__}, not {value!r}")
    content = raw.get("content")
    if content is not None:
        if len(content) != 2 or not all(isinstance(v, int) and v > 0 for v in content):
            raise UserError(f"{where}: meta 'content' must be [width, height] in pixels")
        content = (content[0], content[1])
    if raw.get("framing") not in (None, *FRAMINGS):
        raise UserError(f"{where}: meta 'framing' must be one of {FRAMINGS}")
    return EntryMeta(content, raw.get("name"), raw.get("framing"), MappingProxyType(extra))


_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
MAX_WEIGHTS_BYTES = 1 << 40  # a registry size above 1 TiB is a typo (the largest file here is ~1 GB)


def _check_size_key(arch: str, config: dict, at: str) -> None:
    """The picture size a generator's config names (its family's size key) is a whole number."""
    from core.models import image_size_key

    key = image_size_key(arch)
    value = config.get(key) if key else None
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
        raise UserError(f"{at}: config '{key}' must be a whole number of pixels, not {value!r}")


def _parse_entry(raw: dict, base: Path, where: str) -> WeightEntry:
    if not isinstance(raw, dict):
        raise UserError(f"{where}: each registry entry must be a JSON object")
    missing = [k for k in _REQUIRED if not raw.get(k)]
    unknown = sorted(set(raw) - _KNOWN)
    if missing or unknown:
        raise UserError(f"{where}: entry {raw.get('id', '?')!r} "
                        + (f"lacks {missing}" if missing else f"has unknown fields {unknown}"))
    at = f"{where}: entry {raw['id']!r}"
    for key in _TEXT_FIELDS + ("generator",):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise UserError(f"{at}: '{key}' must be a string")
    if not _ID.fullmatch(raw["id"]):
        raise UserError(f"{at}: an id is a name (letters, digits, '.', '_', '-'; at most 100), "
                        f"since it names files in the cache")
    for key in ("arch", "generator"):
        if raw.get(key) is not None and not _ID.fullmatch(raw[key]):
            raise UserError(f"{at}: '{key}' must be a name (letters, digits, '.', '_', '-'), "
                            f"not {raw[key]!r}")
    if not isinstance(raw.get("config") or {}, dict):
        raise UserError(f"{at}: 'config' must be an object (the loader's arguments)")
    _check_size_key(raw["arch"], raw.get("config") or {}, at)
    used_by = raw.get("used_by") or []
    if not isinstance(used_by, list) or not all(isinstance(t, str) and _ID.fullmatch(t) for t in used_by):
        raise UserError(f"{at}: 'used_by' must be a list of tab ids")
    sources = [k for k in ("hub", "path", "url") if k in raw]
    if len(sources) != 1:
        raise UserError(f"{at} needs exactly one of 'hub' or 'path' or "
                        f"'url' as its source (it has {' and '.join(sources) or 'none'})")
    hub = _parse_hub(raw["hub"], at) if "hub" in raw else None
    size = raw.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool)
                             or not 0 < size <= MAX_WEIGHTS_BYTES):
        raise UserError(f"{at}: size must be a whole number of bytes between 1 and "
                        f"{MAX_WEIGHTS_BYTES} (1 TiB), or null; it is {size!r}")
    path = None
    if "path" in raw:
        if not isinstance(raw["path"], str) or not raw["path"] or "\0" in raw["path"]:
            raise UserError(f"{at}: path must be a file's path (a non-empty string)")
        path = Path(os.path.expanduser(raw["path"]))
        path = path if path.is_absolute() else (base / path).resolve()
    url = _parse_url(raw["url"], at) if "url" in raw else None
    sha = raw.get("sha256")
    if sha is not None and (not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha.lower())):
        raise UserError(f"{at}: sha256 must be 64 hex digits or null")
    role = raw.get("role") or ROLES.get(raw["arch"], "generator")
    if role not in ROLE_NAMES:
        raise UserError(f"{at}: role {role!r} is not one of {', '.join(ROLE_NAMES)}")
    return WeightEntry(id=raw["id"], arch=raw["arch"], config=dict(raw.get("config") or {}),
                       generator=raw.get("generator"), meta=_parse_meta(raw.get("meta"), at),
                       hub=hub, path=path, url=url, sha256=sha.lower() if sha else None,
                       size=size, license=raw.get("license", ""),
                       source=raw.get("source", ""), description=raw.get("description", ""),
                       used_by=tuple(used_by), mirrors=_parse_mirrors(raw.get("mirrors"), at),
                       role=role)


REPO_TYPES = ("model", "dataset", "space")
_HUB_KEYS = {"repo_id", "filename", "revision", "repo_type"}
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")  # a branch, tag, refs/pr/N or commit


def _parse_hub(h: Any, at: str) -> HubSource:
    """`"hub": {repo_id, filename, revision?, repo_type?}`, each checked by the Hub's rules (a
    bad one would otherwise fail with a traceback when the Models tab looks it up)."""
    if not isinstance(h, dict) or not h.get("repo_id") or not h.get("filename"):
        raise UserError(f"{at}: 'hub' needs repo_id and filename")
    if set(h) - _HUB_KEYS:
        raise UserError(f"{at}: 'hub' has unknown fields {sorted(set(h) - _HUB_KEYS)} "
                        f"(known: {', '.join(sorted(_HUB_KEYS))})")
    if not all(isinstance(h.get(k, ""), str) for k in _HUB_KEYS):
        raise UserError(f"{at}: 'hub' repo_id, filename, revision and repo_type must be strings")
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(h["repo_id"])
    except HFValidationError:
        raise UserError(f"{at}: hub repo_id {h['repo_id']!r} is not a Hub repository name "
                        f"('name' or 'owner/name': letters, digits, '-', '_', '.'; no '..')") from None
    if not _hub_filename_ok(h["filename"]):
        raise UserError(f"{at}: hub filename {h['filename']!r} must be a path inside the "
                        f"repository ('model.pt' or 'folder/model.pt': no '..', no leading '/', "
                        f"no backslashes)")
    revision = h.get("revision") or "main"
    if not _REVISION.fullmatch(revision) or ".." in revision or revision.endswith(("/", ".")):
        raise UserError(f"{at}: hub revision {revision!r} must be a branch, tag or commit hash")
    repo_type = h.get("repo_type") or "model"
    if repo_type not in REPO_TYPES:
        raise UserError(f"{at}: hub repo_type must be one of {', '.join(REPO_TYPES)}, not {repo_type!r}")
    return HubSource(h["repo_id"], h["filename"], revision, repo_type)


def _hub_filename_ok(name: str) -> bool:
    """A file's path inside a Hub repository: relative, '/'-separated, no empty, '.' or '..'
    part, no backslash or control character."""
    parts = name.split("/")
    return (len(name) <= 1000 and "\\" not in name and not any(ord(c) < 32 for c in name)
            and all(p not in ("", ".", "..") for p in parts))


def _parse_mirrors(raw: Any, at: str) -> tuple[HubSource | UrlSource, ...]:
    """`"mirrors": [{"url": ...}, {"hub": {...}}]`: where else the same file is published."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(m, dict) and len(m) == 1 and set(m) <= {"hub", "url"}
                                            for m in raw):
        raise UserError(f"{at}: 'mirrors' must be a list of {{\"hub\": ...}} or {{\"url\": ...}} objects")
    return tuple(_parse_hub(m["hub"], at) if "hub" in m else _parse_url(m["url"], at) for m in raw)


def _parse_url(raw: Any, where: str) -> UrlSource:
    """`"url": "https://..."` or `{"href": ..., "filename": ...}`; Drive links need the name."""
    u = raw if isinstance(raw, dict) else {"href": raw}
    href, name = u.get("href"), u.get("filename")
    if set(u) - {"href", "filename"} or not isinstance(href, str) or not _web_address(href):
        raise UserError(f"{where}: 'url' must be an http(s) address or an object with 'href' "
                        f"(an http(s) address) and optionally 'filename'")
    src = UrlSource(href, "")
    if name is None and src.is_drive:
        raise UserError(f"{where}: a Google Drive link does not say the file's name; write "
                        f'"url": {{"href": "{href}", "filename": "NAME.pt"}}')
    if name is None:
        name = unquote(urlsplit(href).path.rsplit("/", 1)[-1])
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name:
        raise UserError(f"{where}: cannot take a file name from {href!r}; add "
                        f'"filename" (a plain name such as "model.pt") to its "url" object')
    return UrlSource(href, name)


def _web_address(href: str) -> bool:
    """Whether `href` is an http(s) address with a host (urlsplit raises on some malformed ones)."""
    try:
        parts = urlsplit(href)
        return parts.scheme in ("http", "https") and bool(parts.hostname) \
            and not any(ord(c) < 33 for c in href)
    except ValueError:
        return False


class Registry:
    """The parsed registry: ids in file order, looked up with clear errors."""

    def __init__(self, entries: list[WeightEntry], origin: str = "<memory>"):
        self.origin = origin
        self._entries: dict[str, WeightEntry] = {}
        for e in entries:
            if e.id in self._entries:
                raise UserError(f"{origin}: model id {e.id!r} appears twice")
            self._entries[e.id] = e

    def __iter__(self):
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def ids(self, arch: str | tuple[str, ...] | None = None) -> list[str]:
        """Entry ids in registry order: all, one arch's, or those of any of several archs."""
        archs = (arch,) if isinstance(arch, str) else arch
        return [e.id for e in self if archs is None or e.arch in archs]

    def with_role(self, role: str, generator_id: str | None = None) -> list[WeightEntry]:
        """Entries in `role` (ROLE_NAMES), in registry order; with `generator_id`, only those
        made for that generator (its directions, its factor files, ...)."""
        return [e for e in self if e.role == role and (generator_id is None or e.generator == generator_id)]

    def companion(self, generator_id: str | None, role: str) -> WeightEntry | None:
        """The first entry in `role` made for one generator (its encoder, its predictor, its
        regressor, ...), or None when none is registered."""
        found = self.with_role(role, generator_id) if generator_id else []
        return found[0] if found else None

    def tabs(self) -> list[str]:
        """The tab ids the entries name in `used_by`, in order of first mention."""
        return list(dict.fromkeys(t for e in self for t in e.used_by))

    def for_tabs(self, tabs: list[str]) -> list[WeightEntry]:
        """What the tabs need, in registry order: the entries that name one of them in
        `used_by` (their models and companions), and the generators those entries belong to
        (`generator`, followed up), so an encoder never arrives without its generator."""
        known = self.tabs()
        for tab in tabs:
            if tab not in known:
                raise UserError(f"No registry entry is used by a tab {tab!r}. Tabs named in "
                                f"{self.origin}: {', '.join(known) or 'none'}.")
        chosen = {e.id for e in self if set(e.used_by) & set(tabs)}
        frontier = list(chosen)
        while frontier:
            parent = self._entries[frontier.pop()].generator
            if parent in self._entries and parent not in chosen:
                chosen.add(parent)
                frontier.append(parent)
        return [e for e in self if e.id in chosen]

    def generator_of(self, entry: WeightEntry) -> WeightEntry:
        """The registered generator an encoder, regressor or factor file was made for."""
        if not entry.generator:
            raise UserError(f"Registry entry {entry.id!r} does not name the generator it was "
                            f"made for (its 'generator' field).")
        if entry.generator not in self._entries:
            raise UserError(f"Registry entry {entry.id!r} belongs to generator "
                            f"{entry.generator!r}, which is not registered.")
        return self._entries[entry.generator]

    def _inherited(self, entry: WeightEntry, field_name: str):
        """A `meta` field of the entry, else of its generator (an encoder or regressor sees
        what its generator draws), else None."""
        value = getattr(entry.meta, field_name)
        if value is None and entry.generator in self._entries:
            return self._inherited(self._entries[entry.generator], field_name)
        return value

    def framing_of(self, entry: WeightEntry) -> str:
        """How a photo is cut for this entry (inherited, see `_inherited`; default centre crop)."""
        return self._inherited(entry, "framing") or "center"

    def content_of(self, entry: WeightEntry) -> tuple[int, int] | None:
        """The picture area (width, height) inside the square frame, when smaller (cars)."""
        return self._inherited(entry, "content")

    def get(self, model_id: str) -> WeightEntry:
        try:
            return self._entries[model_id]
        except KeyError:
            known = ", ".join(self._entries) or "none"
            raise UserError(f"Unknown model {model_id!r}. Registered models: {known}.") from None


def load_registry(path: str | Path | None = None) -> Registry:
    """Read a registry file: `path`, else $SPATIAL_GAN_WEIGHTS, else the bundled weights.json."""
    path = Path(path or os.environ.get(WEIGHTS_ENV) or DEFAULT_WEIGHTS)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"Weights registry not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"Weights registry {path} is not valid JSON: {e}") from None
    except OSError as e:
        raise UserError(f"Cannot read the weights registry {path}: {e}") from None
    if not isinstance(raw, list):
        raise UserError(f"Weights registry {path} must be a JSON list of entries")
    return Registry([_parse_entry(r, path.parent, str(path)) for r in raw], str(path))


# ---- integrity -----------------------------------------------------------------------------
_verified: set[tuple[str, int, float, str]] = set()


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _integrity_problem(entry: WeightEntry, path: Path) -> str | None:
    """Why `path` is not the registered file (size, then sha256), or None. A file whose
    sha256 matched is remembered (path, size, mtime), so it is hashed once per process."""
    stat = path.stat()
    if entry.size is not None and stat.st_size != entry.size:
        return f"has {stat.st_size} bytes, expected {entry.size}"
    key = (str(path), stat.st_size, stat.st_mtime, entry.sha256)  # per expected digest
    if entry.sha256 is None or key in _verified:
        return None
    if sha256_of(path) != entry.sha256:
        return "does not match its sha256 checksum"
    _verified.add(key)
    return None


def verify(entry: WeightEntry, path: Path) -> None:
    """Check size and sha256 when the registry knows them (once per file per process)."""
    why = _integrity_problem(entry, path)
    if why:
        raise UserError(f"The weights file for {entry.id!r} ({shown_path(path)}) {why}: it is incomplete, "
                        f"corrupt or a different file. Run "
                        f"`{PREFETCH_HINT.format(id=entry.id)} --force` to fetch it again.")


# ---- checksums remembered for files the registry does not pin --------------------------------
def _checksums_file() -> Path:
    return app_cache_dir() / "checksums.json"


def _remember_checksum(entry: WeightEntry, path: Path) -> None:
    """First download: note the file's sha256 in the app cache. Later (a new or changed file):
    compare, and warn when the host now serves different bytes than it did."""
    stat = path.stat()
    origin = entry.origin()  # where it came from: a Hub file at a revision, or a URL
    key = (str(path), stat.st_size, stat.st_mtime, origin)
    if key in _remembered:
        return
    try:
        known = json.loads(_checksums_file().read_text())
    except (OSError, ValueError):
        known = {}
    digest = sha256_of(path)
    before = known.get(origin, {}).get("sha256")
    if before is None:
        known[origin] = {"sha256": digest, "size": stat.st_size, "id": entry.id}
        _checksums_file().parent.mkdir(parents=True, exist_ok=True)
        _checksums_file().write_text(json.dumps(known, indent=1, sort_keys=True))
    elif before != digest:
        _warn(f"The weights file of {entry.id!r} differs from the one first downloaded here "
              f"(sha256 {before[:12]}... then, {digest[:12]}... now): its host may have replaced "
              f"it. Results may differ from earlier runs; pin a sha256 in the registry to refuse it.")
    _remembered.add(key)


_remembered: set[tuple[str, int, float, str]] = set()


def _warn(message: str) -> None:
    """A warning for the log and, inside a Gradio event, for the person too."""
    log.warning(message)
    try:
        import gradio as gr

        gr.Warning(message)
    except Exception:  # outside an event or without Gradio: the log has it
        pass


# ---- fetching ------------------------------------------------------------------------------
def _hub_download(src: HubSource, **kwargs) -> str:
    from huggingface_hub import hf_hub_download

    return hf_hub_download(src.repo_id, src.filename, revision=src.revision,
                           repo_type=src.repo_type, **kwargs)


def _hub_failure(entry: WeightEntry, err: Exception) -> UserError:
    from huggingface_hub import errors

    src = entry.hub
    where = f"the Hugging Face Hub ({src.describe()})"
    if isinstance(err, errors.LocalEntryNotFoundError):
        why = ("it is not in the local cache and the Hub cannot be reached "
               "(offline mode is on or there is no network)")
    elif isinstance(err, errors.RepositoryNotFoundError):
        why = "the repository does not exist or is private"
    elif isinstance(err, errors.RevisionNotFoundError):
        why = f"revision {src.revision!r} does not exist"
    elif isinstance(err, errors.EntryNotFoundError):
        why = "the file is not in that repository"
    else:
        why = f"the download failed ({type(err).__name__}: {err})"
    return UserError(f"Cannot get the weights of model {entry.id!r} from {where}: {why}. "
                     f"On a machine with internet access run `{PREFETCH_HINT.format(id=entry.id)}` "
                     f"(or `python -m core.hub download --all`) to cache it.")


# ---- fetching: plain URLs (resumable, Google Drive aware) ------------------------------------
def url_cache_path(entry: WeightEntry) -> Path:
    return app_cache_dir() / "weights" / entry.id / entry.url.filename


def _offline() -> bool:
    """Read at call time, so tests and `HF_HUB_OFFLINE` set after import both count."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get(OFFLINE_ENV) == "1"


def _web_page_failure(entry: WeightEntry, title: str) -> UserError:
    src = entry.url
    what = "The Google Drive link" if src.is_drive else "The address"
    titled = f" titled {title!r}" if title else ""
    return UserError(
        f"{what} of model {entry.id!r} ({src.href}) did not give the file: it answered with a "
        f"web page{titled} (download quota exceeded, file removed or not shared?). Download "
        f"{src.filename} in a browser and register it as a \"path\" entry in weights.json, or "
        f"use a Hugging Face Hub copy (see scripts/publish_weights.py).")


def _fetch_url(entry: WeightEntry, force: bool, tqdm_class=None) -> Path:
    """The cached file, or download it to `<file>.part`, check it and move it into place."""
    final = url_cache_path(entry)
    if final.is_file() and not force:
        verify(entry, final)
        return final
    if _offline():
        state = "must be downloaded again (--force)" if final.is_file() else "are not cached"
        raise UserError(f"The weights of model {entry.id!r} ({entry.url.href}) {state} and "
                        f"offline mode is on (HF_HUB_OFFLINE or {OFFLINE_ENV}=1). On a machine "
                        f"with internet access run `{PREFETCH_HINT.format(id=entry.id)}` to "
                        f"cache them in {final.parent}.")
    if why := download.unreachable(entry.url.href):
        raise UserError(f"The weights of model {entry.id!r} ({entry.url.href}) are not cached "
                        f"and {why} (no network?). On a machine with internet access run `{PREFETCH_HINT.format(id=entry.id)}` "
                        f"to cache them in {shown_path(final.parent)}.")
    part = final.with_name(final.name + ".part")
    final.parent.mkdir(parents=True, exist_ok=True)
    if force:
        part.unlink(missing_ok=True)
    try:
        download.download(entry.url.href, part, entry.size, tqdm_class)
    except download.WebPageError as e:
        raise _web_page_failure(entry, e.title) from e
    except (urllib.error.URLError, HTTPException, OSError) as e:
        raise _network_failure(entry, e, part) from e
    _accept(entry, part, final)
    return final


def _network_failure(entry: WeightEntry, err: Exception, part: Path) -> UserError:
    reason = (f"HTTP {err.code} {err.reason}" if isinstance(err, urllib.error.HTTPError)
              else getattr(err, "reason", None) or f"{type(err).__name__}: {err}")
    n = part.stat().st_size if part.is_file() else 0
    kept = (f" The {human_size(n)} downloaded so far are kept in {part}; the next attempt "
            f"resumes from there." if n else "")
    return UserError(f"Cannot download the weights of model {entry.id!r} from {entry.url.href}: "
                     f"{reason}.{kept} Run `{PREFETCH_HINT.format(id=entry.id)}` to try again.")


def _accept(entry: WeightEntry, part: Path, final: Path) -> None:
    """Move a finished download into place if its size and sha256 are right, else delete it
    (so the next attempt starts clean instead of resuming a wrong file)."""
    why = _integrity_problem(entry, part)
    if why is None:
        os.replace(part, final)
        st = final.stat()
        _verified.add((str(final), st.st_size, st.st_mtime, entry.sha256))  # checked as .part
        return
    part.unlink()
    raise UserError(f"The file downloaded for model {entry.id!r} from {entry.url.href} {why}: "
                    f"the server gave a different or damaged file. It was deleted; run "
                    f"`{PREFETCH_HINT.format(id=entry.id)}` to try again, or check the "
                    f"registry's size and sha256.")


def fetch(entry: WeightEntry, force: bool = False, tqdm_class=None) -> Path:
    """Local path of the entry's file, downloading into the Hub or app cache if needed: from
    its source, else from each of its mirrors in turn. A file the registry gives no sha256
    for has its sha256 remembered on first download, and a change later is warned about. A
    ZeroGPU worker never downloads (its call's files were fetched before it, `core.gpu`), nor
    does work done for no one (`cached_only`: a first look at start-up)."""
    if in_worker() or not downloads_allowed():
        return local_weights(entry)
    try:
        path = _fetch_from(entry, force, tqdm_class)
    except UserError as first:
        for alternative in entry.alternatives():
            try:
                path = _fetch_from(alternative, force, tqdm_class)
                break
            except UserError:
                continue
        else:
            if entry.mirrors:
                raise UserError(f"{first} (Its {len(entry.mirrors)} mirror(s) failed too.)") from first
            raise
    if entry.sha256 is None and entry.path is None:
        _remember_checksum(entry, path)
    return path


def _fetch_from(entry: WeightEntry, force: bool, tqdm_class) -> Path:
    if entry.url is not None:
        return _fetch_url(entry, force, tqdm_class)
    if entry.path is not None:
        if not entry.path.is_file():
            raise UserError(f"The weights file of model {entry.id!r} is missing: {shown_path(entry.path)}")
        verify(entry, entry.path)
        return entry.path
    from huggingface_hub import constants, errors

    online = not _offline() and download.unreachable(constants.ENDPOINT) is None  # one quick probe
    try:
        local = Path(_hub_download(entry.hub, force_download=force and online, tqdm_class=tqdm_class,
                                   local_files_only=not online))
    except (errors.HfHubHTTPError, errors.LocalEntryNotFoundError, errors.EntryNotFoundError,
            errors.OfflineModeIsEnabled, OSError) as e:
        raise _hub_failure(entry, e) from e
    verify(entry, local)
    return local


_CACHED_ONLY: ContextVar[bool] = ContextVar("cached_only", default=False)


@contextlib.contextmanager
def cached_only() -> Iterator[None]:
    """Nothing is downloaded inside (models come from the cache or not at all): for work no one
    asked for, such as a tab's first look when the app starts."""
    token = _CACHED_ONLY.set(True)
    try:
        yield
    finally:
        _CACHED_ONLY.reset(token)


def downloads_allowed() -> bool:
    return not _CACHED_ONLY.get()


def local_weights(entry: WeightEntry) -> Path:
    """The entry's file, already here: where downloading is not allowed (a ZeroGPU worker, a
    first look)."""
    found = cached_path(entry)
    if found is None:
        if in_worker():
            raise UserError(f"The weights of model {entry.id!r} were not downloaded before the "
                            f"GPU call; press the button again.")
        raise UserError(f"The weights of model {entry.id!r} are not downloaded yet.")
    return found


def cached_path(entry: WeightEntry) -> Path | None:
    """The local file if it is already here (no network), from its source or a mirror."""
    for candidate in [entry, *entry.alternatives()]:
        found = _cached_from(candidate)
        if found is not None:
            return found
    return None


def _cached_from(entry: WeightEntry) -> Path | None:
    if entry.path is not None:
        return entry.path if entry.path.is_file() else None
    if entry.url is not None:
        final = url_cache_path(entry)
        return final if final.is_file() else None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(entry.hub.repo_id, entry.hub.filename,
                                   revision=entry.hub.revision, repo_type=entry.hub.repo_type)
    return Path(found) if isinstance(found, str) else None


_COMMIT = re.compile(r"[0-9a-f]{40}")


def cached_commit(src: HubSource) -> str | None:
    """The commit a branch or tag of `src` resolved to when it was downloaded here, or None."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    if _COMMIT.fullmatch(src.revision):
        return src.revision
    ref = (Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=src.repo_id, repo_type=src.repo_type)
           / "refs" / src.revision)
    commit = ref.read_text().strip() if ref.is_file() else ""
    return commit if _COMMIT.fullmatch(commit) else None


def pin_revisions(path: str | Path) -> list[str]:
    """Write into the registry file the commit each Hub entry's branch resolved to in this
    machine's cache (run after `download --all` on a machine with internet), so every later
    install fetches exactly those files. -> the ids pinned."""
    path = Path(path)
    raw = json.loads(path.read_text(encoding="utf-8"))
    pinned = []
    for item in raw:
        h = item.get("hub") if isinstance(item, dict) else None
        if not isinstance(h, dict) or _COMMIT.fullmatch(h.get("revision") or ""):
            continue
        commit = cached_commit(_parse_hub(h, item.get("id", "?")))
        if commit:
            h["revision"] = commit
            pinned.append(item["id"])
    path.write_text(json.dumps(raw, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return pinned


def human_size(n: int | None) -> str:
    if n is None:
        return "?"
    if n < 1000:
        return f"{n} B"
    for unit in ("KB", "MB", "GB"):
        n /= 1000
        if round(n, 1) < 1000 or unit == "GB":
            return f"{n:.1f} {unit}"


def status_rows(registry: Registry) -> list[list[str]]:
    """One row per entry: id, architecture, size, cached?, licence, source."""
    rows = []
    for e in registry:
        here = cached_path(e)
        size = here.stat().st_size if here else e.size
        rows.append([e.id, e.arch, human_size(size), "yes" if here else "no", e.license,
                     e.origin()])
    return rows


# ---- command line --------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.hub", description=__doc__.split("\n")[0])
    parser.add_argument("--weights", help="registry file (default: $SPATIAL_GAN_WEIGHTS or weights.json)")
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="every registered model, its size, tabs and whether it is cached")
    ls.add_argument("--wide", action="store_true", help="every field in full (lines get long)")
    dl = sub.add_parser("download", help="fetch weights into the local caches")
    dl.add_argument("ids", nargs="*", help="model ids (see `list`)")
    dl.add_argument("--all", action="store_true", help="every model in the registry")
    dl.add_argument("--tab", nargs="+", action="extend", default=[], metavar="TAB",
                    help="the models these tabs use, with the generators they belong to")
    dl.add_argument("--force", action="store_true", help="download again even if cached")
    pk = sub.add_parser("pack", help="one archive of every cached file the app reads (offline kit)")
    pk.add_argument("file", help="the archive to write (.tar, or .tar.gz)")
    pk.add_argument("--tab", nargs="+", action="extend", default=[], metavar="TAB",
                    help="only what these tabs use")
    up = sub.add_parser("unpack", help="put an offline kit's files into this machine's caches")
    up.add_argument("file", help="an archive written by `pack`")
    sub.add_parser("pin", help="write the commits the cached Hub files came from into the registry")
    args = parser.parse_args(argv)
    try:
        registry = load_registry(args.weights)
        if args.command == "pin":
            pinned = pin_revisions(registry.origin)
            print(f"pinned {len(pinned)} Hub entries to their cached commits: {', '.join(pinned) or 'none'}")
            return 0
        if args.command == "list":
            from core.kit import list_lines

            print("\n".join(list_lines(registry, wide=args.wide)))
            return 0
        if args.command in ("pack", "unpack"):
            from core import kit

            print(kit.pack(registry, args.file, args.tab) if args.command == "pack"
                  else kit.unpack(registry, args.file))
            return 0
        if not (args.ids or args.all or args.tab):
            parser.error("name model ids, or pass --tab TAB or --all")
        return _download(registry, args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _download(registry: Registry, args: argparse.Namespace) -> int:
    """`download`: the chosen entries (ids, tabs or all), a plan first, then each file."""
    from core.kit import extras_for, plan

    chosen = list(registry) if args.all else registry.for_tabs(args.tab) if args.tab else []
    chosen += [registry.get(i) for i in args.ids]
    entries = list({e.id: e for e in chosen}.values())
    extras = extras_for(None if args.all else args.tab) if (args.all or args.tab) else []
    print(plan(entries, extras))
    total, failed = 0, []
    for entry in entries:
        try:
            path = fetch(entry, force=args.force)
        except UserError as e:
            failed.append(entry.id)
            print(f"FAILED {entry.id}: {e}", file=sys.stderr)
            continue
        total += path.stat().st_size
        print(f"ok  {entry.id:32s} {human_size(path.stat().st_size):>9s}  {path}")
    extra = _download_extras() if extras else []
    print(f"{len(entries) - len(failed)}/{len(entries)} models, {human_size(total)} in the cache"
          + "".join(f"; {x}" for x in extra))
    return 1 if failed else 0


def _download_extras() -> list[str]:
    """Files the app needs besides the registry: the LPIPS VGG backbone (torchvision's cache)."""
    from core.lpips import prefetch_backbone

    try:
        return [prefetch_backbone()]
    except UserError as e:
        print(f"FAILED lpips backbone: {e}", file=sys.stderr)
        return ["LPIPS backbone NOT cached"]


if __name__ == "__main__":
    sys.exit(main())
