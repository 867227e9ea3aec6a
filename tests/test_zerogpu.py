"""The app as a ZeroGPU Space runs it: the real `spaces` wrapper forks a worker per call and
pickles arguments and results (tests/zerogpu.py stubs only the scheduler and CUDA hand-over)."""
from __future__ import annotations

import os

import numpy as np
import pytest
from gradio_client.exceptions import AppError
from PIL import Image

from helpers import app_client, tiny_sg2_entry, write_registry

from core.images import to_uint8
from core.models.stylegan2 import load_stylegan2
from demos.generate import generate_with_latents


@pytest.fixture()
def loads(monkeypatch, tmp_path):
    """Every model loaded from disk, as `pid model-file` lines (a forked worker writes too)."""
    import core.context

    log = tmp_path / "loads.txt"
    real = core.context.load_model

    def load_model(arch, path, config):
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {path}\n")
        return real(arch, path, config)

    monkeypatch.setattr(core.context, "load_model", load_model)
    return log


def test_generate_runs_in_a_forked_worker_and_a_second_call_loads_nothing(
        zerogpu, loads, tmp_path, tiny_sg2_file):
    registry = write_registry(tmp_path / "weights.json", [tiny_sg2_entry("tiny-sg2", tiny_sg2_file)])
    with app_client(registry) as client:
        first = client.predict("tiny-sg2", 7, 0.6, api_name="/generate")
        second = client.predict("tiny-sg2", 8, 0.6, api_name="/generate")
    G = load_stylegan2(tiny_sg2_file, size=32, style_dim=32, n_mlp=2, channel_max=16)
    for path, seed in ((first, 7), (second, 8)):
        expected = to_uint8(generate_with_latents(G, [seed], 0.6)[0])[0]
        got = np.asarray(Image.open(path).convert("RGB"))
        assert np.abs(got.astype(int) - expected).max() <= 1
    assert zerogpu.calls == 2  # both went through the ZeroGPU wrapper
    lines = loads.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{os.getpid()} ")  # loaded once, here


def test_an_error_in_the_worker_reaches_the_visitor_as_the_same_sentence(zerogpu, tmp_path, tiny_sg2_file):
    registry = write_registry(tmp_path / "weights.json", [tiny_sg2_entry("tiny-sg2", tiny_sg2_file)])
    with app_client(registry) as client:
        with pytest.raises(AppError, match="No photo code yet"):  # raised in the worker
            client.predict(api_name="/generate_show_code")
    assert zerogpu.calls == 1
