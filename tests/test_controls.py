"""A teacher's and a Space owner's controls: the command line and its environment variables,
logins, the public API, per-tab downloads and the offline kit (pack -> unpack -> offline)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client
from PIL import Image

from helpers import ROOT, TINY_SG2_CONFIG, free_port, seed_hub_cache, write_registry

import app as app_module
from core import hub, kit

PUBLIC_API = ROOT / "tests" / "data" / "public_api.txt"
CACHE_VARS = ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TORCH_HOME", "XDG_CACHE_HOME",
              hub.CACHE_ENV, hub.WEIGHTS_ENV)


# ---- the command line --------------------------------------------------------------------------
def test_parsing_the_flags_imports_neither_torch_nor_gradio():
    code = ("import sys, app; a = app.parse_args(['--queue-size', '3', '--auth', 'a:b']); "
            "print(sorted(m for m in ('torch', 'gradio', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    start = time.perf_counter()
    text = subprocess.run([sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60).stdout
    assert time.perf_counter() - start < 10  # was 4.5-6.5 s (torch and gradio imported first)
    for flag in ("--auth ", "--auth-file", "--queue-size", "--max-sessions", "--state-hours",
                 "--log-level", *app_module.ENV.values()):
        assert flag in text, flag


def test_every_setting_comes_from_a_flag_or_its_environment_variable():
    env = {"SPATIAL_GAN_QUEUE_SIZE": "5", "SPATIAL_GAN_MAX_SESSIONS": "40", "SPATIAL_GAN_STATE_HOURS": "0.5",
           "SPATIAL_GAN_LOG_LEVEL": "DEBUG", "SPATIAL_GAN_AUTH": "ann:one bob:two:three",
           "SPATIAL_GAN_WEIGHTS": "mine.json"}
    a = app_module.parse_args([], env)
    assert (a.queue_size, a.max_sessions, a.state_hours, a.log_level, a.weights) == (5, 40, 0.5, "debug", "mine.json")
    assert app_module.read_logins(a) == [("ann", "one"), ("bob", "two:three")]
    b = app_module.parse_args(["--queue-size", "7", "--auth", "cy:pw"], env)  # a flag wins
    assert b.queue_size == 7 and app_module.read_logins(b) == [("cy", "pw")]
    d = app_module.parse_args([], {})
    assert (d.queue_size, d.max_sessions, d.state_hours, d.log_level) == (
        app_module.QUEUE_SIZE, app_module.SESSIONS_KEPT, app_module.STATE_HOURS, "info")
    assert app_module.read_logins(d) is None


@pytest.mark.parametrize("argv, env, says", [
    (["--queue-size", "0"], {}, "too small"),
    ([], {"SPATIAL_GAN_MAX_SESSIONS": "many"}, "not a whole number"),
    (["--state-hours", "-1"], {}, "not a lifetime"),
    (["--log-level", "loud"], {}, "invalid choice"),
])
def test_bad_settings_are_named(argv, env, says, capsys):
    with pytest.raises(SystemExit):
        app_module.parse_args(argv, env)
    assert says in capsys.readouterr().err


def test_logins_from_a_file(tmp_path):
    logins = tmp_path / "class.txt"
    logins.write_text("# room 12\nann:one\n\n  bob:two words  \n")
    a = app_module.parse_args(["--auth-file", str(logins), "--auth", "cy:pw"], {})
    assert app_module.read_logins(a) == [("cy", "pw"), ("ann", "one"), ("bob", "two words")]
    logins.write_text("# nobody yet\n")
    with pytest.raises(app_module.UserError, match="open to everyone"):
        app_module.read_logins(app_module.parse_args(["--auth-file", str(logins)], {}))
    logins.write_text("ann\n")
    with pytest.raises(app_module.UserError, match="line 1: a login is USER:PASS"):
        app_module.read_logins(app_module.parse_args(["--auth-file", str(logins)], {}))
    with pytest.raises(app_module.UserError, match="cannot be read"):
        app_module.read_logins(app_module.parse_args(["--auth-file", str(tmp_path / "none")], {}))
    with pytest.raises(app_module.UserError, match="'ann', then no password"):
        app_module.read_logins(app_module.parse_args(["--auth", "ann:"], {}))


def test_queue_and_state_lifetime_reach_the_app(tiny_registry):
    demo = app_module.build_app(weights=str(tiny_registry), device="cpu", queue_size=3, state_hours=0.25)
    assert demo._queue.max_size == 3
    states = [b for b in demo.blocks.values() if type(b).__name__ == "State"]
    assert states and all(b.time_to_live == 900 for b in states)
    assert app_module.launch_options(12)["state_session_capacity"] == 12


def test_module_demo_is_built_on_first_use_from_the_environment(tiny_registry, monkeypatch):
    """What `gradio app.py` and other runners look for; `import app` alone builds nothing."""
    monkeypatch.setenv("SPATIAL_GAN_WEIGHTS", str(tiny_registry))
    monkeypatch.setenv("SPATIAL_GAN_QUEUE_SIZE", "4")
    assert "demo" not in vars(app_module)
    try:
        demo = app_module.demo
        assert demo is app_module.demo and demo._queue.max_size == 4
        assert demo.ctx.registry.ids() == ["tiny-sg2"]
    finally:
        vars(app_module).pop("demo", None)


def _wait_for(url: str, proc: subprocess.Popen, deadline: float = 180) -> None:
    end = time.time() + deadline
    while True:
        try:
            httpx.get(url, timeout=5)
            return
        except httpx.HTTPError:
            if proc.poll() is not None:
                raise AssertionError(proc.stdout.read())
            if time.time() > end:
                raise AssertionError("the app did not come up")
            time.sleep(0.5)


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in CACHE_VARS}
    return {**env, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
            "SPATIAL_GAN_LPIPS_RANDOM": "1", **extra}


@pytest.mark.slow
def test_a_password_keeps_out_the_page_and_the_api(tiny_registry, tmp_path):
    """`python app.py` with a login from the environment: without it no page, no config, no API
    (gradio_client fails); with it everything works. httpx's request lines stay out of the log."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = _clean_env(SPATIAL_GAN_AUTH="teacher:s3cret", SPATIAL_GAN_CACHE=str(tmp_path / "cache"))
    proc = subprocess.Popen([sys.executable, "app.py", "--weights", str(tiny_registry), "--device", "cpu",
                             "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(url, proc)
        page = httpx.get(url, timeout=30).text  # Gradio's login form: no component, no event
        config = json.loads(page.split("window.gradio_config = ", 1)[1].split(";</script>", 1)[0])
        assert config["auth_required"] and config["components"] == config["dependencies"] == []
        assert "pretrained GANs" not in page and "sign in" in config["auth_message"]
        for path in ("config", "gradio_api/info", "gradio_api/call/generate"):
            answer = httpx.request("POST" if "call" in path else "GET", url + path,
                                   json={"data": ["tiny-sg2", 1, 0.7]}, timeout=30)
            assert answer.status_code in (401, 403), (path, answer.status_code)
        with pytest.raises(Exception):
            Client(url, verbose=False)
        with pytest.raises(Exception):
            Client(url, auth=("teacher", "wrong"), verbose=False)
        client = Client(url, auth=("teacher", "s3cret"), verbose=False)
        picture = np.asarray(Image.open(client.predict("tiny-sg2", 3, 0.7, api_name="/generate")))
        assert picture.shape == (32, 32, 3)
    finally:
        proc.terminate()
        log = proc.communicate(timeout=30)[0]
    assert "1 login(s) required" in log
    assert "HTTP Request" not in log, log


# ---- the public API ------------------------------------------------------------------------------
def test_the_public_api_is_the_checked_in_list():
    """Every endpoint a gradio_client sees is named on purpose: a new handler is private unless
    it is given an api_name and added to tests/data/public_api.txt."""
    demo = app_module.build_app(device="cpu")
    public = sorted(demo.get_api_info()["named_endpoints"])
    listed = [line.strip() for line in PUBLIC_API.read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    added, gone = sorted(set(public) - set(listed)), sorted(set(listed) - set(public))
    assert not added, (f"new public endpoints {added}: name them on purpose and list them in "
                       f"{PUBLIC_API.name}, or make them private (api_visibility='private')")
    assert not gone, f"endpoints listed in {PUBLIC_API.name} but gone: {gone}"
    assert not demo.get_api_info().get("unnamed_endpoints")


# ---- the registry's command line: sizes, tabs, the kit ---------------------------------------------
def test_list_fits_a_terminal_and_wide_shows_everything(capsys):
    assert hub.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert lines[0].split() == ["id", "size", "cached", "tabs", "from"]
    assert any(line.startswith("vgg16-397923af.pth ") for line in lines)
    assert hub.main(["list", "--wide"]) == 0
    wide = capsys.readouterr().out
    first = hub.load_registry().get("stylegan2-ffhq-1024")
    assert first.license in wide and first.origin() in wide


def test_lpips_backbone_is_listed_for_the_tabs_that_use_it():
    """core.kit.EXTRAS names the one LPIPS backbone the app uses and exactly the tabs whose
    module imports core.lpips (no AlexNet: nothing uses it)."""
    from test_architecture import imported_modules, tab_files
    from core.lpips import BACKBONE_FILES
    from demos import TABS

    users = {t.id for t in TABS
             if any(m.startswith("core.lpips") for path in tab_files(t.module) for m in imported_modules(path))}
    (extra,) = kit.EXTRAS
    assert extra.name == BACKBONE_FILES["vgg"] and set(extra.tabs) == users


@pytest.fixture()
def tabbed_registry(tmp_path, hub_cache, tiny_sg2_file):
    """Hub entries for three tabs, all in a local Hub cache; a factor file whose generator its
    tab does not name, and an entry no tab uses."""
    data = tiny_sg2_file.read_bytes()
    seed_hub_cache(hub_cache, "studio/tiny", {f"{n}.pt": data for n in ("g1", "g2", "g3", "f1", "spare")})

    def entry(model_id, used_by, **extra):
        return {"id": model_id, "arch": "stylegan2", "config": dict(TINY_SG2_CONFIG), "license": "test",
                "hub": {"repo_id": "studio/tiny", "filename": f"{model_id}.pt"}, "size": len(data),
                "used_by": used_by, **extra}

    return write_registry(tmp_path / "tabs.json", [
        entry("g1", ["generate", "panda"]), entry("g2", ["generate"]), entry("g3", ["sam"]),
        {**entry("f1", ["panda"], generator="g2"), "arch": "panda-factors", "config": {}},
        entry("spare", []),
    ])


@pytest.mark.parametrize("tabs, expected", [
    (["panda"], ["g1", "g2", "f1"]),  # f1's generator g2 comes with it
    (["generate"], ["g1", "g2"]),
    (["sam", "generate"], ["g1", "g2", "g3"]),
])
def test_download_by_tab_fetches_exactly_that_tabs_models(tabbed_registry, tabs, expected, capsys):
    assert hub.main(["--weights", str(tabbed_registry), "download", "--tab", *tabs]) == 0
    out = capsys.readouterr().out
    assert [line.split()[1] for line in out.splitlines() if line.startswith("ok ")] == expected
    plan = out.splitlines()[0]
    assert plan.startswith(f"{len(expected)} models ({len(expected)} cached already)")


def test_download_plan_counts_what_is_missing(tabbed_registry, hub_cache):
    entries = hub.load_registry(tabbed_registry).for_tabs(["sam"])
    for blob in hub_cache.rglob("blobs/*"):
        blob.unlink()
    for link in hub_cache.rglob("snapshots/*/g3.pt"):
        link.unlink()
    size = hub.human_size(entries[0].size)
    assert kit.plan(entries, []) == f"1 models (0 cached already): 1 file(s) to download, {size}."


def test_an_unknown_tab_is_named(tabbed_registry, capsys):
    assert hub.main(["--weights", str(tabbed_registry), "download", "--tab", "colage"]) == 2
    err = capsys.readouterr().err
    assert "'colage'" in err and "generate, panda, sam" in err


@pytest.mark.slow
def test_a_kit_unpacked_into_an_empty_home_serves_the_same_models_offline(tmp_path, tiny_sg2_file):
    """A teacher's machine caches a Hub model, a model from an author's server (the app's cache)
    and the LPIPS backbone; `pack` -> `unpack` on a machine with an empty home -> the app serves
    both models offline, pixel for pixel."""
    from core.images import to_uint8
    from core.models.stylegan2 import load_stylegan2
    from demos.generate.engine import generate_with_latents

    data = tiny_sg2_file.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    teacher, pupil = tmp_path / "teacher", tmp_path / "pupil"
    repo = seed_hub_cache(teacher / ".cache" / "huggingface" / "hub", "studio/tiny-gan", {"g.pt": data})
    snapshot = repo / "snapshots" / ("c" * 40) / "g.pt"  # as the Hub client leaves it: a link to a blob
    (repo / "blobs").mkdir()
    snapshot.rename(repo / "blobs" / sha)
    snapshot.symlink_to(Path("..", "..", "blobs", sha))
    url_file = teacher / ".cache" / "spatial-gan-studio" / "weights" / "tiny-web" / "web.pt"
    url_file.parent.mkdir(parents=True)
    url_file.write_bytes(data)
    backbone = teacher / ".cache" / "torch" / "hub" / "checkpoints" / kit.EXTRAS[0].name
    backbone.parent.mkdir(parents=True)
    backbone.write_bytes(b"vgg")
    (teacher / ".cache" / "spatial-gan-studio" / "checksums.json").write_text('{"URL x": {"sha256": "ab"}}')
    common = {"arch": "stylegan2", "config": dict(TINY_SG2_CONFIG), "license": "test", "used_by": ["generate"]}
    registry = write_registry(tmp_path / "class.json", [
        {"id": "tiny-hub", **common, "hub": {"repo_id": "studio/tiny-gan", "filename": "g.pt"}, "sha256": sha},
        {"id": "tiny-web", **common, "url": "http://example.invalid/models/web.pt"},
        {"id": "not-here", **common, "url": "http://example.invalid/models/other.pt"},
    ])
    kit_file = tmp_path / "usb" / "class.tar"

    def cli(home: Path, *args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "core.hub", "--weights", str(registry), *args], cwd=ROOT,
                             env=_clean_env(HOME=str(home)), capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert "Packed 2 of 3 models and 1 library file(s)" in cli(teacher, "pack", str(kit_file))
    pupil.mkdir()
    assert "2 of 3 registered models are cached here now" in cli(pupil, "unpack", str(kit_file))
    assert (pupil / ".cache" / "torch" / "hub" / "checkpoints" / kit.EXTRAS[0].name).read_bytes() == b"vgg"
    copied = pupil / snapshot.relative_to(teacher)
    assert copied.is_symlink() and copied.read_bytes() == data
    assert "URL x" in (pupil / ".cache" / "spatial-gan-studio" / "checksums.json").read_text()
    listing = cli(pupil, "list")
    assert " yes " in next(l for l in listing.splitlines() if l.startswith("tiny-hub "))

    port = free_port()
    proc = subprocess.Popen([sys.executable, "app.py", "--weights", str(registry), "--device", "cpu",
                             "--port", str(port)], cwd=ROOT, env=_clean_env(HOME=str(pupil)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(f"http://127.0.0.1:{port}/", proc)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        G = load_stylegan2(tiny_sg2_file, **{k: v for k, v in TINY_SG2_CONFIG.items()})
        expected = to_uint8(generate_with_latents(G, [5], 0.7)[0])[0]
        for model_id in ("tiny-hub", "tiny-web"):
            got = np.asarray(Image.open(client.predict(model_id, 5, 0.7, api_name="/generate")).convert("RGB"))
            assert np.array_equal(got, expected), model_id
    finally:
        proc.terminate()
        log = proc.communicate(timeout=30)[0]
    assert "cached: tiny-hub, tiny-web" in log


def test_unpack_refuses_what_is_not_a_kit(tmp_path, capsys):
    import tarfile

    bad = tmp_path / "photos.tar"
    with tarfile.open(bad, "w") as tar:
        tar.add(ROOT / "README.md", arcname="README.md")
    assert hub.main(["unpack", str(bad)]) == 2
    assert "not an offline kit" in capsys.readouterr().err
