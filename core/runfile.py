"""A saved run's .zip read within bounds: "Load a run (.zip)" takes a file from anyone.

A 1 MB zip can unpack to gigabytes (a deflated member of zeros, a PNG header claiming
13000 x 13000 pixels, an .npy header claiming a billion floats), so everything is checked from
what the file declares before anything is unpacked or decoded: the number of members (from the
zip's end record, before its directory is parsed), each member's and all members' unpacked
size, every picture's pixels (headers only, all pictures together), every array's shape and
dtype (the .npy headers inside latents.npz); members are then read with a cap, so a size that
lies cannot unpack more. The format itself (names, recipe) is `core.recipe`'s.
"""
from __future__ import annotations

import contextlib
import io
import math
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np
from numpy.lib import format as npy

from core.errors import UserError
from core.images import picture_pixels, read_picture

MiB = 1 << 20
MAX_MEMBERS = 256  # a run holds recipe.json, latents.npz and its pictures: a few dozen files at most
MAX_MEMBER_BYTES = 128 * MiB  # one unpacked file: a 50 MP photo as PNG, with room
MAX_RUN_BYTES = 256 * MiB  # all files unpacked
MAX_RECIPE_BYTES = 2 * MiB  # recipe.json (arrays above 64 numbers live in latents.npz)
MAX_LATENTS_BYTES = 96 * MiB  # latents.npz as stored (it is read into memory)
MAX_ARRAY_BYTES = 128 * MiB  # all its arrays decoded: SAM's W+ and residuals of a 1024 px model are ~60 MB
MAX_ARRAYS = 64
MAX_RUN_PIXELS = 64_000_000  # all pictures together: the photo (at most 50 MP), its crop and results
NUMERIC = "biufc"  # bool, integers, floats, complex: nothing that unpickles or holds objects


def _mb(n: int) -> str:
    return f"{n / MiB:,.0f} MB" if n >= MiB else f"{n:,} bytes"


class RunZip:
    """An open run zip whose member count and declared sizes are within bounds; members are
    read through `read`, `pictures` and `arrays`, each checked before it is unpacked."""

    def __init__(self, path: str | Path):
        with open(path, "rb") as f:
            _check_end_record(f, MAX_MEMBERS, "That file")
        self.zip = zipfile.ZipFile(path)
        try:
            self._check_members()
        except BaseException:
            self.zip.close()
            raise

    def __enter__(self) -> "RunZip":
        return self

    def __exit__(self, *exc) -> None:
        self.zip.close()

    def _check_members(self) -> None:
        infos = self.zip.infolist()
        if len(infos) > MAX_MEMBERS:
            raise _too_many(len(infos), MAX_MEMBERS, "That file")
        for info in infos:
            if info.file_size > MAX_MEMBER_BYTES:
                raise UserError(f"That run's file {_name(info)} would unpack to {_mb(info.file_size)}; "
                                f"a run's file is at most {_mb(MAX_MEMBER_BYTES)}.")
        total = sum(i.file_size for i in infos)
        if total > MAX_RUN_BYTES:
            raise UserError(f"That run would unpack to {_mb(total)} in all; a run is at most "
                            f"{_mb(MAX_RUN_BYTES)}.")

    def names(self) -> list[str]:
        return self.zip.namelist()

    def read(self, name: str, cap: int) -> bytes:
        """A member's bytes, at most `cap` of them (and never more than its declared size)."""
        info = self.zip.getinfo(name)
        if info.file_size > cap:
            raise UserError(f"That run's {_name(info)} is {_mb(info.file_size)}; at most {_mb(cap)}.")
        with self.zip.open(info) as f:
            data = f.read(min(info.file_size, cap) + 1)
        if len(data) > min(info.file_size, cap):
            raise UserError(f"That run's {_name(info)} holds more than its zip entry says: the "
                            f"file is damaged or was made to mislead.")
        return data

    def pictures(self, folders: tuple[str, ...] = ("images", "masks")) -> dict[str, dict[str, np.ndarray]]:
        """{folder: {name: array}} for the PNGs in `folders`, checked as uploads are, and all
        of them together at most MAX_RUN_PIXELS (headers read first, nothing decoded)."""
        members = [(folder, file, info) for info in self.zip.infolist()
                   for folder, _, file in [info.filename.partition("/")]
                   if folder in folders and file.endswith(".png") and "/" not in file]
        total = 0
        for _, _, info in members:
            with self.zip.open(info) as f, _about(info):
                total += picture_pixels(f)
            if total > MAX_RUN_PIXELS:
                raise UserError(f"The pictures in that run add up to more than "
                                f"{MAX_RUN_PIXELS // 1_000_000} megapixels, more than a run saved "
                                f"here holds.")
        out: dict[str, dict[str, np.ndarray]] = {folder: {} for folder in folders}
        for folder, file, info in members:
            with self.zip.open(info) as f, _about(info):
                out[folder][file[:-4]] = read_picture(f)
        return out

    def arrays(self, name: str = "latents.npz") -> dict[str, np.ndarray]:
        """The arrays of an .npz member (no pickle), each .npy header checked first: numbers
        only, at most MAX_ARRAYS arrays and MAX_ARRAY_BYTES decoded in all."""
        data = io.BytesIO(self.read(name, MAX_LATENTS_BYTES))
        _check_end_record(data, MAX_ARRAYS, f"That run's {name}")
        with zipfile.ZipFile(data) as inner:
            infos = inner.infolist()
            if len(infos) > MAX_ARRAYS:
                raise _too_many(len(infos), MAX_ARRAYS, f"That run's {name}")
            total = 0
            for info in infos:
                with inner.open(info) as f:
                    total += _array_bytes(f, name)
                if total > MAX_ARRAY_BYTES:
                    raise UserError(f"That run's {name} holds more than {_mb(MAX_ARRAY_BYTES)} of "
                                    f"arrays; a run saved here holds far less.")
        data.seek(0)
        with np.load(data, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}


def _array_bytes(f, where: str) -> int:
    """The decoded size of one .npy stream, from its header (a sentence for anything but
    numbers)."""
    version = npy.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = npy.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = npy.read_array_header_2_0(f)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    if dtype.kind not in NUMERIC or dtype.hasobject or dtype.fields is not None:
        raise UserError(f"That run's {where} holds an array of {dtype} values; a run holds numbers only.")
    return math.prod(int(n) for n in shape) * dtype.itemsize


def _check_end_record(f, most: int, what: str) -> None:
    """The member count and directory size a zip's end record declares, read before
    `zipfile` parses the directory (which holds every member's entry in memory)."""
    end = zipfile._EndRecData(f)  # the stdlib's own reader of that record (zip64 included)
    if end is None:
        raise zipfile.BadZipFile("no end of central directory record")
    if end[zipfile._ECD_ENTRIES_TOTAL] > most:
        raise _too_many(end[zipfile._ECD_ENTRIES_TOTAL], most, what)
    if end[zipfile._ECD_SIZE] > most * 1024:
        raise UserError(f"{what} has a table of contents of {_mb(end[zipfile._ECD_SIZE])}, far "
                        f"more than the {most} files it may hold need.")


def _too_many(n: int, most: int, what: str) -> UserError:
    return UserError(f"{what} holds {n:,} files; a run saved with \"Download all\" holds at most "
                     f"{most}.")


@contextlib.contextmanager
def _about(info: zipfile.ZipInfo) -> Iterator[None]:
    """A picture's refusal names the run's file it is about."""
    try:
        yield
    except UserError as e:
        raise UserError(f"That run's picture {_name(info)} cannot be used. {e}") from None


def _name(info: zipfile.ZipInfo) -> str:
    name = info.filename
    return repr(name if len(name) <= 60 else name[:57] + "...")
