"""Downloading one file from a plain web address: resumable, and Google Drive aware.

The Hub client does this for Hub files; the authors of some models host theirs on Google
Drive or their own servers. `download` streams into a `.part` file, resumes it with an HTTP
Range request, follows Drive's "can't scan this file for viruses" confirmation (form, legacy
link or cookie) and refuses to save a web page as a weights file (`WebPageError`).
Standard library only.
"""
from __future__ import annotations

import re
import socket
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser
from http.cookiejar import CookieJar
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

TIMEOUT_S = 60
PROBE_TIMEOUT_S = 3  # one quick connection attempt says whether a host can be reached at all
PROBE_TTL_S = 30  # and its answer holds this long: every uncached model fails at once offline
DRIVE_HOSTS = {"drive.google.com", "docs.google.com", "drive.usercontent.google.com"}
MAX_CONFIRMATIONS = 3


_probes: dict[str, tuple[float, str | None]] = {}


def unreachable(href: str) -> str | None:
    """Why the server of `href` cannot be reached (a TCP connection does not open), or None
    when it can; asked again after PROBE_TTL_S. Without a network a download then fails in
    seconds with a sentence, instead of retrying for half a minute while a person waits."""
    parts = urlsplit(href)
    host, port = parts.hostname, parts.port or (80 if parts.scheme == "http" else 443)
    if not host:
        return None
    now, where = time.monotonic(), f"{host}:{port}"
    seen = _probes.get(where)
    if seen is not None and now - seen[0] < PROBE_TTL_S:
        return seen[1]
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
        why = None
    except OSError as e:
        why = f"{where} cannot be reached: {getattr(e, 'strerror', None) or e}"
    _probes[where] = (now, why)
    return why


def is_drive(href: str) -> bool:
    return urlsplit(href).hostname in DRIVE_HOSTS


class WebPageError(Exception):
    """The server answered with a web page (quota, permission, removed file), not the file."""

    def __init__(self, title: str):
        super().__init__(title)
        self.title = title


def _open(opener: urllib.request.OpenerDirector, url: str, start: int):
    """GET `url`, asking for bytes from `start` on when part of the file is already here."""
    req = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    return opener.open(req, timeout=TIMEOUT_S)


class _Page(HTMLParser):
    """What a download-warning page offers: its title, forms (action + fields) and links."""

    def __init__(self):
        super().__init__()
        self.title, self.forms, self.links, self._in_title = "", [], [], False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append((a.get("action") or "", {}))
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1][1][a["name"]] = a.get("value") or ""
        elif tag == "a" and a.get("href"):
            self.links.append(a["href"])
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data


def _drive_confirm(page: _Page, page_url: str, jar: CookieJar) -> str | None:
    """The address that confirms a Drive "can't scan this file for viruses" page, if any."""
    for action, fields in page.forms:  # today's page: a GET form to drive.usercontent
        if action and fields:
            action = urljoin(page_url, action)
            return action + ("&" if "?" in action else "?") + urlencode(fields)
    for href in page.links:  # the legacy page: /uc?export=download&confirm=XXXX&id=...
        if "confirm=" in href:
            return urljoin(page_url, href)
    token = next((c.value for c in jar if c.name.startswith("download_warning")), None)
    if token:  # the legacy cookie: repeat the request with confirm=<token>
        parts = urlsplit(page_url)
        query = dict(parse_qsl(parts.query), confirm=token)
        return urlunsplit(parts._replace(query=urlencode(query)))
    return None


def download(href: str, part: Path, expected_size: int | None = None, tqdm_class=None) -> None:
    """Stream `href` into `part`, resuming what is there; never save a web page.

    Raises urllib/http/OS errors as they come (the partial file stays for the next try),
    `ConnectionError` when the connection closes early, `WebPageError` for a web page."""
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    have = part.stat().st_size if part.is_file() else 0
    url = href
    for hop in range(MAX_CONFIRMATIONS + 1):  # the file, or confirmation pages before it
        try:
            resp = _open(opener, url, have)
        except urllib.error.HTTPError as e:
            if e.code != 416 or not have:
                raise
            e.close()
            part.unlink()  # "range not satisfiable": the partial file is not a prefix
            return download(href, part, expected_size, tqdm_class)
        if resp.headers.get_content_type() != "text/html":
            break
        page = _Page()
        with resp:
            page.feed(resp.read(1 << 20).decode("utf-8", "replace"))
        url = _drive_confirm(page, resp.url, jar) if hop < MAX_CONFIRMATIONS else None
        if url is None:
            raise WebPageError(page.title.strip())
    with resp:
        start = 0
        if resp.status == 206:
            m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
            start = int(m.group(1)) if m else -1
            if start != have:  # not the range we asked for: start clean
                part.unlink()
                return download(href, part, expected_size, tqdm_class)
        length = resp.headers.get("Content-Length")
        total = start + int(length) if length else expected_size
        bar = (tqdm_class or _default_tqdm)(total=total, unit="B", unit_scale=True,
                                            desc=part.name.removesuffix(".part"))
        try:
            bar.update(start)
            with open(part, "ab" if start else "wb") as f:
                while chunk := resp.read(1 << 20):
                    f.write(chunk)
                    bar.update(len(chunk))
        finally:
            bar.close()
    got = part.stat().st_size
    if length and got != total:
        raise ConnectionError(f"the connection closed after {got} of {total} bytes")


def _default_tqdm(**kwargs):
    from tqdm.auto import tqdm

    return tqdm(disable=None, **kwargs)
