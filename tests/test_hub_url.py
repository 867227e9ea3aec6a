"""core.hub `url` entries: registry parsing, and downloads (resume, Google Drive confirmation
pages, failures, offline mode) against a local HTTP server that plays the remote side."""
from __future__ import annotations

import hashlib
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import huggingface_hub.constants
import pytest

from helpers import free_port, write_registry
from core import hub
from core.errors import UserError

DATA = bytes(range(256)) * 1200 + b"the end"  # ~300 KB, not valid UTF-8 HTML
TOKEN = "AbC_123"
DRIVE_FIELDS = {"id": "FILEID", "export": "download", "confirm": "t", "uuid": "5e1f-uuid"}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- the remote side -----------------------------------------------------------------------
class Remote(BaseHTTPRequestHandler):
    """Routes by first path segment: file, norange, flaky, uc -> download (today's Drive form),
    legacy (confirm link + cookie), cookie (cookie only), quota, loop; anything else is 404."""

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def send_response(self, code, message=None) -> None:
        self.server.requests[-1]["status"] = code
        super().send_response(code, message)

    def do_GET(self) -> None:
        srv, url = self.server, urlsplit(self.path)
        q = dict(parse_qsl(url.query))
        srv.requests.append({"path": url.path, "query": q, "range": self.headers.get("Range"),
                             "cookie": self.headers.get("Cookie") or ""})
        route = url.path.split("/")[1]
        if route == "file":
            self._file(ranges=True)
        elif route == "norange":
            self._file(ranges=False)
        elif route == "flaky":
            if srv.drops > 0:  # announce the whole file, send part of it, hang up
                srv.drops -= 1
                self._headers(200, "application/octet-stream", len(srv.data))
                self.wfile.write(srv.data[:srv.drop_at])
                self.wfile.flush()
                self.close_connection = True
            else:
                self._file(ranges=True)
        elif route == "uc":
            fields = "".join(f'<input type="hidden" name="{k}" value="{v}">'
                             for k, v in DRIVE_FIELDS.items())
            self._html("Google Drive - Virus scan warning",
                       f'<form id="download-form" action="http://127.0.0.1:{srv.server_port}/download"'
                       f' method="get">{fields}<input type="submit" id="uc-download-link" '
                       f'class="goog-inline-block jfk-button" value="Download anyway"></form>')
        elif route == "download":
            self._file(ranges=True) if q == DRIVE_FIELDS else self._html("Bad request", "", 400)
        elif route in ("legacy", "cookie"):
            cookie = self.headers.get("Cookie") or ""
            if q.get("confirm") == TOKEN and f"download_warning_13058_FILEID={TOKEN}" in cookie:
                self._file(ranges=True)
                return
            link = (f'<a id="uc-download-link" href="/legacy/uc?export=download&amp;confirm={TOKEN}'
                    f'&amp;id=FILEID">Download anyway</a>') if route == "legacy" else "<p>Wait</p>"
            self._html("Google Drive - Virus scan warning", link,
                       cookie=f"download_warning_13058_FILEID={TOKEN}; Path=/")
        elif route == "quota":
            self._html("Google Drive - Quota exceeded", "<p>Too many users have viewed or "
                       "downloaded this file recently.</p>")
        elif route == "loop":
            self._html("Still a warning", '<form action="/loop"><input type="hidden" name="confirm" '
                       'value="t"></form>')
        else:
            self._html("Not Found", "<p>404</p>", 404)

    def _headers(self, code: int, ctype: str, length: int, extra: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()

    def _html(self, title: str, body: str, code: int = 200, cookie: str | None = None) -> None:
        page = f"<!DOCTYPE html><html><head><title>{title}</title></head><body>{body}</body></html>"
        raw = page.encode()
        self._headers(code, "text/html; charset=utf-8", len(raw),
                      {"Set-Cookie": cookie} if cookie else None)
        self.wfile.write(raw)

    def _file(self, ranges: bool) -> None:
        data, start = self.server.data, 0
        m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if ranges and m:
            start = int(m.group(1))
            if start >= len(data):
                self._headers(416, "text/plain", 0, {"Content-Range": f"bytes */{len(data)}"})
                return
            self._headers(206, "application/octet-stream", len(data) - start,
                          {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
        else:
            self._headers(200, "application/octet-stream", len(data))
        self.wfile.write(data[start:])


@pytest.fixture()
def remote():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Remote)
    srv.requests, srv.data, srv.drops, srv.drop_at = [], DATA, 0, 0
    srv.url = lambda path: f"http://127.0.0.1:{srv.server_port}{path}"
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


@pytest.fixture(autouse=True)
def online(tmp_path: Path, monkeypatch) -> Path:
    """A private app cache, and the network allowed (conftest turns HF offline for all tests)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv(hub.CACHE_ENV, str(cache))
    monkeypatch.delenv(hub.OFFLINE_ENV, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    return cache


class Bars:
    """A tqdm_class that records what it is told."""

    def __init__(self):
        self.made = []

    def __call__(self, **kwargs):
        bars = self

        class Bar:
            def __init__(self):
                self.kwargs, self.n, self.closed = kwargs, 0, False
                bars.made.append(self)

            def update(self, n):
                self.n += n

            def close(self):
                self.closed = True

        return Bar()


def url_entry(model_id: str, url, **extra) -> dict:
    return {"id": model_id, "arch": "stylegan2", "url": url, "sha256": sha(DATA), "size": len(DATA),
            "license": "test only", "source": "tests", **extra}


def _one(tmp_path: Path, entry: dict) -> hub.WeightEntry:
    return hub.load_registry(write_registry(tmp_path / "reg.json", [entry])).get(entry["id"])


def _final(cache: Path, model_id: str, filename: str) -> Path:
    return cache / "weights" / model_id / filename


# ---- registry ------------------------------------------------------------------------------
def test_url_string_form(tmp_path: Path):
    e = _one(tmp_path, url_entry("s", "https://example.org/files/stylegan2%20ffhq.pt?dl=1"))
    assert e.url == hub.UrlSource("https://example.org/files/stylegan2%20ffhq.pt?dl=1",
                                  "stylegan2 ffhq.pt")
    assert e.hub is None and e.path is None and not e.url.is_drive
    assert e.origin() == "URL https://example.org/files/stylegan2%20ffhq.pt?dl=1"


def test_url_object_form(tmp_path: Path):
    e = _one(tmp_path, url_entry("o", {"href": "https://example.org/get?id=7", "filename": "g.pkl"}))
    assert e.url == hub.UrlSource("https://example.org/get?id=7", "g.pkl")


@pytest.mark.parametrize("sources", [
    {"hub": {"repo_id": "a/b", "filename": "m.pt"}}, {"path": "m.pt"},
    {"hub": {"repo_id": "a/b", "filename": "m.pt"}, "path": "m.pt"}])
def test_url_is_one_source_among_three(tmp_path: Path, sources):
    e = {**url_entry("two", "https://example.org/m.pt"), **sources}
    with pytest.raises(UserError, match=r"exactly one of 'hub' or 'path' or 'url'.*hub|path"):
        hub.load_registry(write_registry(tmp_path / "w.json", [e]))
    del e["url"]
    if len(sources) == 1:  # without the url the entry is fine again
        assert hub.load_registry(write_registry(tmp_path / "w.json", [e])).get("two")


@pytest.mark.parametrize("href", [
    "https://drive.google.com/file/d/1abcDEF/view?usp=sharing",
    "https://drive.google.com/uc?id=1abcDEF&export=download",
    "https://docs.google.com/uc?export=download&id=1abcDEF",
    "https://drive.usercontent.google.com/download?id=1abcDEF&export=download"])
def test_drive_link_needs_a_filename(tmp_path: Path, href):
    with pytest.raises(UserError) as info:
        _one(tmp_path, url_entry("drive", href))
    msg = str(info.value)
    assert "'drive'" in msg and "Google Drive" in msg and '"filename"' in msg
    e = _one(tmp_path, url_entry("drive", {"href": href, "filename": "e4e.pt"}))
    assert e.url.is_drive and e.url.filename == "e4e.pt"


@pytest.mark.parametrize("url", [
    "ftp://example.org/m.pt", "example.org/m.pt", "", 42, {"filename": "m.pt"},
    {"href": "https://example.org/m.pt", "name": "x.pt"},
    "https://example.org/models/", {"href": "https://example.org/m.pt", "filename": "../m.pt"},
    {"href": "https://example.org/m.pt", "filename": ""}])
def test_bad_url_values(tmp_path: Path, url):
    with pytest.raises(UserError, match="entry 'bad'.*url"):
        _one(tmp_path, url_entry("bad", url))


def test_app_cache_dir_is_read_at_call_time(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(hub.CACHE_ENV, str(tmp_path / "elsewhere"))
    assert hub.app_cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv(hub.CACHE_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert hub.app_cache_dir() == tmp_path / "home" / ".cache" / "spatial-gan-studio"
    from demos.panda.sources import computed_dir

    assert computed_dir() == hub.app_cache_dir() / "panda"


# ---- downloading ---------------------------------------------------------------------------
def test_download_then_reuse_without_a_request(tmp_path: Path, online: Path, remote):
    e = _one(tmp_path, url_entry("remote", remote.url("/file/model.pt")))
    assert hub.cached_path(e) is None
    bars = Bars()
    local = hub.fetch(e, tqdm_class=bars)
    assert local == _final(online, "remote", "model.pt")
    assert local.read_bytes() == DATA
    assert not local.with_name("model.pt.part").exists()
    assert [(r["path"], r["range"], r["status"]) for r in remote.requests] == [("/file/model.pt", None, 200)]
    (bar,) = bars.made
    assert bar.kwargs == {"total": len(DATA), "unit": "B", "unit_scale": True, "desc": "model.pt"}
    assert bar.n == len(DATA) and bar.closed
    # cached now: no request, not even offline
    assert hub.cached_path(e) == local
    assert hub.fetch(e) == local
    huggingface_hub.constants.HF_HUB_OFFLINE = True  # restored by the `online` fixture
    assert hub.fetch(e) == local
    assert len(remote.requests) == 1


def test_force_downloads_again_from_scratch(tmp_path: Path, online: Path, remote):
    e = _one(tmp_path, url_entry("remote", remote.url("/file/model.pt")))
    local = hub.fetch(e)
    local.with_name("model.pt.part").write_bytes(b"stale junk")  # must not be resumed
    assert hub.fetch(e, force=True) == local
    assert local.read_bytes() == DATA
    assert [(r["range"], r["status"]) for r in remote.requests] == [(None, 200), (None, 200)]


def test_resume_after_the_connection_drops(tmp_path: Path, online: Path, remote):
    remote.drops, remote.drop_at = 1, 100_000
    e = _one(tmp_path, url_entry("flaky", remote.url("/flaky/w.pt")))
    with pytest.raises(UserError) as info:
        hub.fetch(e)
    msg = str(info.value)
    assert "'flaky'" in msg and remote.url("/flaky/w.pt") in msg
    assert "kept" in msg and "resumes" in msg and "python -m core.hub download flaky" in msg
    final = _final(online, "flaky", "w.pt")
    part = final.with_name("w.pt.part")
    assert not final.exists() and part.read_bytes() == DATA[:100_000]
    assert hub.cached_path(e) is None
    bars = Bars()
    assert hub.fetch(e, tqdm_class=bars) == final
    assert [(r["range"], r["status"]) for r in remote.requests] == [(None, 200), ("bytes=100000-", 206)]
    assert sha(final.read_bytes()) == sha(DATA) and not part.exists()
    assert bars.made[0].kwargs["total"] == len(DATA) and bars.made[0].n == len(DATA)


def test_server_without_range_support_starts_over(tmp_path: Path, online: Path, remote):
    e = _one(tmp_path, url_entry("norange", remote.url("/norange/w.pt")))
    final = _final(online, "norange", "w.pt")
    final.parent.mkdir(parents=True)
    final.with_name("w.pt.part").write_bytes(DATA[:5000])
    assert hub.fetch(e).read_bytes() == DATA
    assert [(r["range"], r["status"]) for r in remote.requests] == [("bytes=5000-", 200)]


def test_complete_part_file_is_fetched_again(tmp_path: Path, online: Path, remote):
    """A finished .part left by a killed process: the server says 416, start clean."""
    e = _one(tmp_path, url_entry("done", remote.url("/file/w.pt")))
    final = _final(online, "done", "w.pt")
    final.parent.mkdir(parents=True)
    final.with_name("w.pt.part").write_bytes(DATA)
    assert hub.fetch(e).read_bytes() == DATA
    assert [(r["range"], r["status"]) for r in remote.requests] == [
        (f"bytes={len(DATA)}-", 416), (None, 200)]


def test_drive_confirmation_form(tmp_path: Path, online: Path, remote):
    e = _one(tmp_path, url_entry("drive", {"href": remote.url("/uc?id=FILEID&export=download"),
                                           "filename": "e4e.pt"}))
    assert hub.fetch(e).read_bytes() == DATA
    assert [(r["path"], r["query"]) for r in remote.requests] == [
        ("/uc", {"id": "FILEID", "export": "download"}), ("/download", DRIVE_FIELDS)]


@pytest.mark.parametrize("route", ["legacy", "cookie"])
def test_drive_legacy_confirm_token(tmp_path: Path, online: Path, remote, route):
    e = _one(tmp_path, url_entry(route, {"href": remote.url(f"/{route}/uc?export=download&id=FILEID"),
                                         "filename": "w.pt"}))
    assert hub.fetch(e).read_bytes() == DATA
    first, second = remote.requests
    assert first["query"] == {"export": "download", "id": "FILEID"} and first["cookie"] == ""
    assert second["query"] == {"export": "download", "id": "FILEID", "confirm": TOKEN}
    assert f"download_warning_13058_FILEID={TOKEN}" in second["cookie"]  # the jar carried it
    assert second["status"] == 200


def test_drive_quota_page_is_never_saved(tmp_path: Path, online: Path, remote):
    href = remote.url("/quota/uc?id=FILEID")
    e = _one(tmp_path, url_entry("quota", {"href": href, "filename": "w.pt"}))
    with pytest.raises(UserError) as info:
        hub.fetch(e)
    msg = str(info.value)
    assert "'quota'" in msg and href in msg and "did not give the file" in msg
    assert "'Google Drive - Quota exceeded'" in msg
    assert "browser" in msg and '"path"' in msg and "scripts/publish_weights.py" in msg
    folder = _final(online, "quota", "w.pt").parent
    assert not folder.exists() or list(folder.iterdir()) == []
    assert len(remote.requests) == 1


def test_confirmation_pages_are_followed_at_most_three_times(tmp_path: Path, online: Path, remote):
    e = _one(tmp_path, url_entry("loop", remote.url("/loop/w.pt")))
    with pytest.raises(UserError, match="'loop'.*did not give the file.*'Still a warning'"):
        hub.fetch(e)
    assert len(remote.requests) == 4
    assert hub.cached_path(e) is None


def test_http_404(tmp_path: Path, online: Path, remote):
    href = remote.url("/missing/w.pt")
    e = _one(tmp_path, url_entry("gone", href))
    with pytest.raises(UserError) as info:
        hub.fetch(e)
    msg = str(info.value)
    assert "'gone'" in msg and href in msg and "HTTP 404" in msg
    assert "python -m core.hub download gone" in msg and "kept" not in msg
    assert hub.cached_path(e) is None


def test_connection_refused(tmp_path: Path):
    href = f"http://127.0.0.1:{free_port()}/w.pt"
    e = _one(tmp_path, url_entry("nobody", href))
    with pytest.raises(UserError, match=r"'nobody'.*" + re.escape(href) + r".*refused.*download nobody"):
        hub.fetch(e)


@pytest.mark.parametrize("wrong", [{"sha256": sha(b"another file")}, {"size": len(DATA) + 1}])
def test_wrong_download_is_deleted(tmp_path: Path, online: Path, remote, wrong):
    e = _one(tmp_path, url_entry("bad", remote.url("/file/w.pt"), **wrong))
    with pytest.raises(UserError) as info:
        hub.fetch(e)
    msg = str(info.value)
    assert "'bad'" in msg and ("sha256" in msg if "sha256" in wrong else str(len(DATA) + 1) in msg)
    assert "python -m core.hub download bad" in msg
    folder = _final(online, "bad", "w.pt").parent
    assert list(folder.iterdir()) == []  # neither the final file nor a .part to resume
    with pytest.raises(UserError):
        hub.fetch(e)
    assert [r["range"] for r in remote.requests] == [None, None]


def test_offline_mode_touches_no_network(tmp_path: Path, remote, monkeypatch):
    e = _one(tmp_path, url_entry("off", remote.url("/file/w.pt")))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError) as info:
        hub.fetch(e)
    msg = str(info.value)
    assert "'off'" in msg and "not cached" in msg and "offline" in msg
    assert "python -m core.hub download off" in msg
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv(hub.OFFLINE_ENV, "1")
    with pytest.raises(UserError, match="offline"):
        hub.fetch(e)
    assert remote.requests == []


def test_cli_list_and_download(tmp_path: Path, online: Path, remote, capsys):
    reg = write_registry(tmp_path / "cli.json", [url_entry("remote", remote.url("/file/model.pt"))])
    assert hub.main(["--weights", str(reg), "list"]) == 0
    row = [l.split() for l in capsys.readouterr().out.splitlines() if l.startswith("remote")][0]
    assert row[1:4] == ["307.2", "KB", "no"] and row[-1] == "web"
    assert hub.main(["--weights", str(reg), "list", "--wide"]) == 0
    row = [l.split() for l in capsys.readouterr().out.splitlines() if l.startswith("remote")][0]
    assert row[-2:] == ["URL", remote.url("/file/model.pt")]
    assert hub.main(["--weights", str(reg), "download", "remote"]) == 0
    out = capsys.readouterr().out
    assert "ok  remote" in out and str(_final(online, "remote", "model.pt")) in out
    assert hub.main(["--weights", str(reg), "list"]) == 0
    row = [l.split() for l in capsys.readouterr().out.splitlines() if l.startswith("remote")][0]
    assert row[1:4] == ["307.2", "KB", "yes"]
    assert hub.main(["--weights", str(reg), "download", "remote", "--force"]) == 0
    assert len(remote.requests) == 2
