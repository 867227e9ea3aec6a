"""Shared fixtures. Nothing here touches the network: Hub access is forced offline and
LPIPS uses a random backbone; models are tiny checkpoints in the published layouts. Shared
helper functions live in helpers.py."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["SPATIAL_GAN_LPIPS_RANDOM"] = "1"
# every app a test builds would compute its tabs' first looks in the background: only the
# tests about them (and the browser's) turn them on
os.environ["SPATIAL_GAN_FIRST_LOOK"] = "off"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("SPATIAL_GAN_CACHE", tempfile.mkdtemp(prefix="spatial-gan-test-cache-"))

import huggingface_hub.constants  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import SG2_REF, load_reference, tiny_sg2_entry, write_registry  # noqa: E402

huggingface_hub.constants.HF_HUB_OFFLINE = True
pytest_plugins = ["zerogpu"]  # the `zerogpu` fixture: the real spaces wrapper, scheduler stubbed
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def sg2_io() -> dict:
    return load_reference(SG2_REF / "tiny-io.pt")


@pytest.fixture()
def tiny_sg2_file(tmp_path: Path) -> Path:
    """A copy of the reference tiny StyleGAN2 checkpoint, in the published file format."""
    dst = tmp_path / "tiny-stylegan2.pt"
    shutil.copy(SG2_REF / "tiny.pt", dst)
    return dst


@pytest.fixture()
def tiny_registry(tmp_path: Path, tiny_sg2_file: Path) -> Path:
    """A registry file with one tiny StyleGAN2 as a local `path` entry."""
    return write_registry(tmp_path / "weights.json", [tiny_sg2_entry("tiny-sg2", tiny_sg2_file)])


@pytest.fixture()
def hub_cache(tmp_path: Path, monkeypatch) -> Path:
    """An empty, private Hub cache used by hf_hub_download for this test (offline)."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


def pytest_collection_modifyitems(config, items):
    """Long end-to-end cases (`@pytest.mark.slow`) run in CI (SPATIAL_GAN_SLOW=1, set by
    .ci/run) and on request; the everyday `pytest` stays under a few minutes."""
    if os.environ.get("SPATIAL_GAN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow end-to-end case: SPATIAL_GAN_SLOW=1 pytest runs it (CI does)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
