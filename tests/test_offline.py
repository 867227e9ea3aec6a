"""Offline classroom: with the Hub cache filled beforehand, `HF_HUB_OFFLINE=1 python app.py
--host ...` serves the app and loads models without any network."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from gradio_client import Client
from PIL import Image

from helpers import ROOT, TINY_SG2_CONFIG, free_port, seed_hub_cache, write_registry


@pytest.fixture()
def classroom(tmp_path, tiny_sg2_file):
    """A registry of Hub entries whose files are already in a Hub cache, as
    `python -m core.hub download --all` leaves it."""
    data = tiny_sg2_file.read_bytes()
    cache = tmp_path / "hub"
    seed_hub_cache(cache, "studio/tiny-gan", {"tiny.pt": data})
    registry = write_registry(tmp_path / "weights.json", [
        {"id": "tiny-hub", "arch": "stylegan2", "config": dict(TINY_SG2_CONFIG),
         "hub": {"repo_id": "studio/tiny-gan", "filename": "tiny.pt"},
         "sha256": hashlib.sha256(data).hexdigest(), "license": "test only", "source": "tests",
         "used_by": ["generate"]},
        {"id": "not-downloaded", "arch": "stylegan2", "config": dict(TINY_SG2_CONFIG),
         "hub": {"repo_id": "studio/missing", "filename": "g.pt"}, "license": "test only"}])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache),
           "GRADIO_ANALYTICS_ENABLED": "False", "SPATIAL_GAN_LPIPS_RANDOM": "1"}
    return registry, env


def test_cli_lists_the_cached_models_offline(classroom):
    registry, env = classroom
    out = subprocess.run([sys.executable, "-m", "core.hub", "--weights", str(registry), "list"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line for line in out.stdout.splitlines()[1:]}
    assert " yes " in rows["tiny-hub"] and " no " in rows["not-downloaded"]


@pytest.mark.slow
def test_app_serves_a_lan_offline_from_the_cache(classroom, tmp_path):
    registry, env = classroom
    port = free_port()
    server = subprocess.Popen([sys.executable, "app.py", "--weights", str(registry), "--device", "cpu",
                               "--host", "127.0.0.1", "--port", str(port)],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        client = None
        deadline = time.time() + 180
        while client is None and time.time() < deadline:
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            except Exception:
                if server.poll() is not None:
                    pytest.fail(f"the app exited: {server.stdout.read()}")
                time.sleep(1)
        assert client is not None, "the app did not come up"
        image = np.asarray(Image.open(client.predict("tiny-hub", 3, 0.7, api_name="/generate")))
        assert image.shape == (32, 32, 3)
        with pytest.raises(Exception, match="download not-downloaded"):
            client.predict("not-downloaded", 3, 0.7, api_name="/generate")
    finally:
        server.terminate()
        log = server.communicate(timeout=30)[0]
    assert "cached: tiny-hub" in log  # the start-up line says what a classroom has
