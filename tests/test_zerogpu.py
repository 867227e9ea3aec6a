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
from demos.generate.engine import generate_with_latents


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


@pytest.mark.slow  # CI runs it
def test_a_reused_worker_loads_a_model_prepared_after_its_fork_once(zerogpu, loads, tmp_path, tiny_sg2_file):
    """`spaces` reuses a handler's idle worker (per GPU slot). A model first prepared here after
    that worker was forked is not in its memory: the worker reads it once from the local file
    (prepared: no download) and keeps it while it lives; later calls load nothing."""
    other = tmp_path / "other.pt"
    other.write_bytes(tiny_sg2_file.read_bytes())
    weights = write_registry(tmp_path / "weights.json", [tiny_sg2_entry("tiny-a", tiny_sg2_file),
                                                         tiny_sg2_entry("tiny-b", other)])
    with app_client(weights) as client:
        client.predict("tiny-a", 1, 0.7, api_name="/generate")  # forks /generate's worker
        for seed in (1, 2, 3):  # that worker, reused
            client.predict("tiny-b", seed, 0.7, api_name="/generate")
    here = f"{os.getpid()} "
    lines = loads.read_text().splitlines()
    assert lines[:2] == [here + str(tiny_sg2_file), here + str(other)]
    assert len(lines) == 3 and not lines[2].startswith(here) and lines[2].endswith(str(other))


def test_an_error_in_the_worker_reaches_the_visitor_as_the_same_sentence(zerogpu, tmp_path, tiny_sg2_file):
    registry = write_registry(tmp_path / "weights.json", [tiny_sg2_entry("tiny-sg2", tiny_sg2_file)])
    with app_client(registry) as client:
        with pytest.raises(AppError, match="No photo code yet"):  # raised in the worker
            client.predict(api_name="/generate_show_code")
    assert zerogpu.calls == 1


# ---- a model job's lifetime across the fork: progress, cancel, lanes, durations ---------------
@pytest.fixture()
def crunch_app(zerogpu, tmp_path):
    """One `gpu_task` handler wired like every tab's, that records in files (a forked worker
    cannot change the test's memory) each step it makes and when it starts."""
    import time

    import gradio as gr

    from core.gpu import enable_zero_gpu, gpu_task
    from core.ui import TabWiring
    from helpers import free_port

    steps, starts = tmp_path / "steps", tmp_path / "starts"

    @gpu_task(duration=lambda ctx, n, **_: 10 + n // 10)
    def crunch(ctx, n: float, progress=gr.Progress()):
        with open(starts, "a") as f:
            f.write(f"{time.monotonic()}\n")
        for i in range(int(n)):
            progress(i / n, desc="crunching")
            with open(steps, "a") as f:
                f.write(".")
            time.sleep(0.05)
        return n

    with gr.Blocks() as demo:
        number, out = gr.Number(), gr.Number()
        TabWiring(None, "test").on(number.submit, crunch, [number], [out], record=False,
                                   api_name="crunch")
    enable_zero_gpu()
    _, url, _ = demo.launch(prevent_thread_lock=True, server_port=free_port(), quiet=True)
    try:
        yield url, steps, starts
    finally:
        demo.close()


def _count(path) -> int:
    return len(path.read_text()) if path.exists() else 0


def test_a_zerogpu_job_reports_progress_and_stops_within_a_few_steps_once_cancelled(crunch_app, zerogpu):
    import time

    from gradio_client import Client

    url, steps, _ = crunch_app
    client = Client(url, verbose=False)
    assert client.predict(3, api_name="/crunch") == 3  # through the fork and back
    assert zerogpu.durations == [10]  # the duration is a function of the call's values
    job = client.submit(400, api_name="/crunch")
    deadline, reports = time.monotonic() + 30, []
    while _count(steps) < 10 and time.monotonic() < deadline:
        reports += job.status().progress_data or []
        time.sleep(0.02)
    assert _count(steps) >= 10
    assert any(r.desc == "crunching" for r in reports)  # the worker's progress reached the client
    job.cancel()
    time.sleep(2)  # the watcher polls every 0.1 s; a loaded machine may be slower
    settled = _count(steps)
    time.sleep(1)
    assert _count(steps) == settled < 3 + 400 - 20  # stopped, long before its 400 steps


@pytest.mark.slow  # CI runs it
def test_zerogpu_runs_calls_side_by_side(crunch_app, zerogpu):
    from gradio_client import Client

    url, _, starts = crunch_app
    client = Client(url, verbose=False)
    jobs = [client.submit(30, api_name="/crunch") for _ in range(2)]  # 1.5 s each
    assert [j.result(timeout=60) for j in jobs] == [30, 30]
    first, second = sorted(float(t) for t in starts.read_text().split())
    assert second - first < 1.0  # the second began before the first ended: two GPU slots


def test_a_call_longer_than_zerogpu_allows_is_refused_before_it_starts(crunch_app, zerogpu, monkeypatch):
    from gradio_client import Client

    monkeypatch.setenv("SPATIAL_GAN_GPU_MAX_SECONDS", "60")
    url, steps, _ = crunch_app
    with pytest.raises(AppError, match=r"needs about 110 s of GPU time.*at most 60 s"):
        Client(url, verbose=False).predict(1000, api_name="/crunch")
    assert zerogpu.calls == 0 and _count(steps) == 0


def test_long_runs_ask_for_time_by_their_steps_and_size(tmp_path, tiny_sg2_file):
    from core.context import AppContext
    from core.hub import load_registry
    import torch
    from demos.sam import handlers

    ctx = AppContext(load_registry(str(write_registry(tmp_path / "w.json", [
        tiny_sg2_entry("tiny-sg2", tiny_sg2_file)]))), torch.device("cpu"))
    seconds = lambda n, both: handlers.invert.task.seconds(ctx, ("tiny-sg2", None, None, n, both), {})  # noqa: E731
    assert seconds(10, False) < seconds(100, False) < seconds(100, True)


def test_no_network_fails_at_once_with_the_offline_sentence_while_a_job_holds_the_device(
        tmp_path, monkeypatch):
    """An uncached Hub model, with the Hub unreachable (a refused port) and offline mode off:
    one quick probe, then the sentence, without waiting for the device lock a long job holds."""
    import threading
    import time

    import huggingface_hub.constants

    from core import download
    from core.context import AppContext
    from core.hub import load_registry
    from core.turns import LANE, Ticket
    from demos.generate.handlers import generate_image
    from helpers import free_port
    import torch

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setattr(download, "_probes", {})
    registry = write_registry(tmp_path / "w.json", [
        {"id": f"uncached-{i}", "arch": "stylegan2", "config": {"size": 32},
         "hub": {"repo_id": "nobody/not-cached", "filename": f"g{i}.pt"}, "license": "test"}
        for i in range(2)])
    ctx = AppContext(load_registry(str(registry)), torch.device("cpu"))
    held, release = threading.Event(), threading.Event()

    def long_job():
        with LANE.turn(Ticket("another session")):
            held.set()
            release.wait(30)

    threading.Thread(target=long_job, daemon=True).start()
    held.wait(5)
    try:
        for i in range(2):
            start = time.monotonic()
            with pytest.raises(Exception, match="not in the local cache and the Hub cannot be reached"):
                generate_image(ctx, f"uncached-{i}", 1, 0.7)
            assert time.monotonic() - start < 5
    finally:
        release.set()
