"""Errors a person can cause or fix, kept apart from programming errors.

The UI turns a `UserError` into `gr.Error` with the message unchanged, so messages are
written for the person at the keyboard: what went wrong and what to do about it.
"""
from __future__ import annotations

import os
from pathlib import Path


class UserError(Exception):
    """A problem with the input, the weights or the environment that the user can fix."""


HOSTED_ENV = "SPATIAL_GAN_HOSTED"  # set by `app.py` when it serves others (LAN host, share link)


def hosted() -> bool:
    """Whether people other than this machine's owner use the app (a Space, a classroom LAN, a
    share link): then messages name files, never the server's paths."""
    return bool(os.environ.get("SPACE_ID") or os.environ.get(HOSTED_ENV))


def shown_path(path: str | os.PathLike) -> str:
    """A file as a message shows it: its full path for a local user (who may want to delete
    or move it), its name alone on a shared host."""
    return Path(path).name if hosted() else str(path)
