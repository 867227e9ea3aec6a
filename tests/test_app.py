"""The app end to end: launched on a free port and driven with gradio_client."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

from helpers import ROOT, free_port, tiny_sg2_entry, write_registry

import app as app_module
from core.images import to_uint8
from core.models.stylegan2 import load_stylegan2
from core.models.generator import seed_normal
from demos.generate.engine import generate_with_latents
from demos.generate.handlers import generate_image


@pytest.fixture()
def registry_file(tmp_path, tiny_sg2_file):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(tiny_sg2_file.read_bytes())
    good_sha = hashlib.sha256(tiny_sg2_file.read_bytes()).hexdigest()
    return write_registry(tmp_path / "weights.json", [
        tiny_sg2_entry("tiny-sg2", tiny_sg2_file, sha256=good_sha),
        tiny_sg2_entry("tiny-corrupt", corrupt, sha256="0" * 64),
        {"id": "tiny-offline", "arch": "stylegan2", "config": {"size": 32},
         "hub": {"repo_id": "nobody/not-cached", "filename": "g.pt"}, "license": "test"},
    ])


@pytest.fixture()
def running_app(registry_file, hub_cache):
    demo = app_module.build_app(weights=str(registry_file), device="cpu")
    _, url, _ = demo.launch(prevent_thread_lock=True, server_port=free_port(), quiet=True,
                            **app_module.launch_options())
    try:
        yield demo, Client(url, verbose=False)
    finally:
        demo.close()


def _png(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_generate_end_to_end_matches_the_engine(running_app, tiny_sg2_file):
    demo, client = running_app
    out = client.predict("tiny-sg2", 7, 0.6, api_name="/generate")
    got = _png(out)
    G = load_stylegan2(tiny_sg2_file, size=32, style_dim=32, n_mlp=2, channel_max=16)
    expected = to_uint8(generate_with_latents(G, [7], 0.6)[0])[0]
    assert got.shape == (32, 32, 3)
    assert np.array_equal(got, expected)  # PNG: lossless, deterministic seed
    # a second call with another seed gives another image; same seed gives the same one
    assert not np.array_equal(_png(client.predict("tiny-sg2", 8, 0.6, api_name="/generate")), got)
    assert np.array_equal(_png(client.predict("tiny-sg2", 7, 0.6, api_name="/generate")), got)
    assert demo.ctx.cache.keys() == [("tiny-sg2", "cpu", torch.float32)]  # loaded once


def test_generate_errors_reach_the_page_as_messages(running_app):
    _, client = running_app
    with pytest.raises(AppError, match="checksum"):
        client.predict("tiny-corrupt", 1, 0.7, api_name="/generate")
    with pytest.raises(AppError, match=r"python -m core.hub download tiny-offline"):
        client.predict("tiny-offline", 1, 0.7, api_name="/generate")
    with pytest.raises(AppError, match="minimum|seed"):
        client.predict("tiny-sg2", -5, 0.7, api_name="/generate")
    # the app still works after errors
    assert _png(client.predict("tiny-sg2", 1, 0.7, api_name="/generate")).shape == (32, 32, 3)


def test_models_tab_lists_and_downloads(running_app):
    _, client = running_app
    table = client.predict(api_name="/refresh_models")
    rows = {r[0]: r for r in table["data"]}
    assert set(rows) == {"tiny-sg2", "tiny-corrupt", "tiny-offline"}
    assert rows["tiny-sg2"][3] == "yes" and rows["tiny-offline"][3] == "no"
    table, status = client.predict("tiny-sg2", api_name="/download_model")
    assert "cached" in status
    with pytest.raises(AppError, match="tiny-offline"):
        client.predict("tiny-offline", api_name="/download_model")


def test_building_the_app_loads_no_model(registry_file, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a model was loaded while building the app")

    monkeypatch.setattr(torch, "load", refuse)
    demo = app_module.build_app(weights=str(registry_file), device="cpu")
    assert demo.ctx.cache.keys() == []


def test_bad_registry_is_a_clear_start_up_error(tmp_path, capsys):
    assert app_module.main(["--weights", str(tmp_path / "missing.json")]) == 2
    assert "registry not found" in capsys.readouterr().err


def test_help_documents_the_flags():
    out = subprocess.run([sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120).stdout
    for flag in ("--weights", "--device", "--share", "--port", "--host"):
        assert flag in out


@pytest.mark.slow
def test_python_app_py_serves_the_tiny_registry(registry_file, tmp_path):
    """The README's start command, with --weights, answering a gradio_client call."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hf")}
    proc = subprocess.Popen([sys.executable, "app.py", "--weights", str(registry_file),
                             "--device", "cpu", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        client, deadline = None, time.time() + 120
        while client is None:
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            except Exception:
                if proc.poll() is not None or time.time() > deadline:
                    raise AssertionError(proc.stdout.read() if proc.poll() is not None else "timeout")
                time.sleep(1)
        assert _png(client.predict("tiny-sg2", 3, 0.7, api_name="/generate")).shape == (32, 32, 3)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_readme_front_matter_is_a_space_config():
    """The README's front matter is what Hugging Face Spaces reads: a Gradio app at app.py,
    an SDK version the requirements accept, and the registry's Hub model repos listed."""
    import yaml
    from packaging.specifiers import SpecifierSet

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["sdk"] == "gradio" and (ROOT / meta["app_file"]).is_file()
    assert str(meta["python_version"]) in ("3.10", "3.12")
    spec = next(line.split("#")[0].strip()[len("gradio"):] for line in
                (ROOT / "requirements.txt").read_text().splitlines() if line.startswith("gradio"))
    assert meta["sdk_version"] in SpecifierSet(spec)
    registry = json.loads((ROOT / "weights.json").read_text())
    sources = registry + [m for e in registry for m in e.get("mirrors", [])]
    hub_models = {s["hub"]["repo_id"] for s in sources
                  if "hub" in s and s["hub"].get("repo_type", "model") == "model"}
    assert set(meta["models"]) == hub_models
    first = next(e for e in registry if "generate" in e.get("used_by", []))  # Generate's default
    hub = first["hub"]
    assert meta["preload_from_hub"] == [f"{hub['repo_id']} {hub['filename']} {hub['revision']}"]


def test_download_all_packs_the_last_generation(running_app):
    """Nothing run yet: a clear message. Then the zip holds the picture the page showed
    (pixel-exact), z and w, and a recipe with the model, its registry entry and the seed."""
    from core.recipe import read_bundle

    demo, client = running_app
    with pytest.raises(AppError, match="Nothing to download yet"):
        client.predict(api_name="/generate_download")
    shown = _png(client.predict("tiny-sg2", 7, 0.6, api_name="/generate"))
    bundle = read_bundle(client.predict(api_name="/generate_download"))
    assert np.array_equal(bundle.images["result"], shown)
    assert np.array_equal(bundle.arrays["z"], seed_normal([7], 32).numpy())
    assert bundle.arrays["w"].shape == (1, 32)
    r = bundle.recipe
    assert r["model_id"] == "tiny-sg2" and r["seed"] == 7 and r["seeds"] == [7]
    assert r["tab"] == "generate" and r["settings"] == {"truncation": 0.6}
    entry = demo.ctx.registry.get("tiny-sg2")
    assert r["models"]["generator"]["sha256"] == entry.sha256 and r["models"]["generator"]["path"] == str(entry.path)


def test_generate_handler_is_a_plain_function(tiny_registry):
    """Handlers are module-level functions of (ctx, values): callable without a running app,
    giving the same picture as the protocol's sample + render, and a run for Download all."""
    from core.context import AppContext
    from core.hub import load_registry

    ctx = AppContext(load_registry(tiny_registry), torch.device("cpu"))
    picture, run = generate_image(ctx, "tiny-sg2", 3, 1.0)
    G = ctx.model("tiny-sg2")
    assert np.array_equal(picture, to_uint8(G.render(G.sample_latents([3])))[0])
    assert run.recipe["tab"] == "generate" and run.recipe["seeds"] == [3]
    with pytest.raises(Exception, match="seed must be a whole number"):
        generate_image(ctx, "tiny-sg2", -1, 1.0)


def test_tabs_are_declared_once():
    """The app builds one gr.Tab per row of demos.TABS, and every registry `used_by` names one."""
    from core.hub import load_registry
    from demos import TAB_IDS

    demo = app_module.build_app(device="cpu")
    tab_ids = [b.id for b in demo.blocks.values() if type(b).__name__ == "Tab" and b.id in TAB_IDS]
    assert tab_ids == list(TAB_IDS)
    for e in load_registry():
        assert set(e.used_by) <= set(TAB_IDS), e.id
