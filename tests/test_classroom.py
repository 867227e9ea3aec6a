"""A classroom at once (127.0.0.1 only, bounded): identical and different requests together,
cancels and closed tabs, hostile uploads and numbers, many sessions."""
from __future__ import annotations

import hashlib
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from helpers import free_port, tiny_sg2_entry, write_registry

import app as app_module
from core.images import NOT_A_PICTURE, to_uint8
from core.models.stylegan2 import load_stylegan2
from core.gpu import STOPPED, gpu_task, user_errors
from core.ui import TabWiring, guard_inputs
from demos.generate.engine import generate_with_latents


@pytest.fixture(scope="module")
def classroom(tmp_path_factory):
    """The app on a tiny registry, launched as `python app.py` launches it."""
    from core.models.stylegan2 import StyleGAN2Generator
    import torch
    from helpers import TINY_SG2_CONFIG

    folder = tmp_path_factory.mktemp("classroom")
    torch.manual_seed(0)
    G = StyleGAN2Generator(**TINY_SG2_CONFIG)
    file = folder / "tiny.pt"
    torch.save({"g_ema": G.state_dict(), "latent_avg": torch.zeros(TINY_SG2_CONFIG["style_dim"])}, file)
    registry = write_registry(folder / "weights.json", [tiny_sg2_entry("tiny-sg2", file)])
    demo = app_module.build_app(weights=str(registry), device="cpu")
    _, url, _ = demo.launch(prevent_thread_lock=True, server_port=free_port(), quiet=True,
                            **app_module.launch_options())
    try:
        yield demo, url, file
    finally:
        demo.close()


def _fetch(url: str, path: str) -> bytes:
    return httpx.get(f"{url.rstrip('/')}/gradio_api/file={path}", timeout=60).content


@pytest.mark.slow
def test_thirty_people_at_once_all_get_complete_correct_pictures(classroom):
    demo, url, file = classroom
    seeds = [7] * 20 + list(range(10))  # a class clicking the same example, and others
    with ThreadPoolExecutor(4) as pool:  # ten people, three clicks each (the most one may queue)
        people = list(pool.map(lambda _: Client(url, verbose=False, download_files=False), range(10)))
    jobs = [people[i % 10].submit("tiny-sg2", s, 0.7, api_name="/generate") for i, s in enumerate(seeds)]
    paths = [job.result(timeout=300)["path"] for job in jobs]
    with ThreadPoolExecutor(16) as pool:  # everyone downloads at once too
        blobs = list(pool.map(lambda p: _fetch(url, p), paths))

    G = load_stylegan2(file, **{k: v for k, v in tiny_sg2_entry("x", file)["config"].items()})
    expected = {s: to_uint8(generate_with_latents(G, [s], 0.7)[0])[0] for s in set(seeds)}
    for seed, blob in zip(seeds, blobs):
        got = np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"))  # a cut-off PNG fails here
        assert np.abs(got.astype(int) - expected[seed]).max() <= 1
    same = {hashlib.sha256(b).hexdigest() for s, b in zip(seeds, blobs) if s == 7}
    assert len(same) == 1


@pytest.fixture()
def slow_app():
    """One `gpu_task` handler wired like every tab's, that counts its steps and how many of it
    run at once."""
    seen = {"steps": 0, "running": 0, "most": 0}
    lock = threading.Lock()

    @gpu_task(10)
    def crunch(ctx, n: float, progress=gr.Progress()):
        with lock:
            seen["running"] += 1
            seen["most"] = max(seen["most"], seen["running"])
        try:
            for i in range(int(n)):
                progress(i / n, desc="crunching")
                with lock:
                    seen["steps"] += 1
                time.sleep(0.05)
            return n
        finally:
            with lock:
                seen["running"] -= 1

    with gr.Blocks() as demo:
        number, out = gr.Number(), gr.Number()
        TabWiring(None, "test").on(number.submit, crunch, [number], [out], record=False,
                                   api_name="crunch")
    _, url, _ = demo.launch(prevent_thread_lock=True, server_port=free_port(), quiet=True)
    try:
        yield demo, url, seen
    finally:
        demo.close()


def _stops_within_a_step(seen: dict) -> None:
    time.sleep(0.3)  # one step is 0.05 s
    settled = seen["steps"]
    time.sleep(0.5)
    assert seen["steps"] == settled and seen["running"] == 0


def test_cancelled_jobs_stop_within_a_step_and_never_run_side_by_side(slow_app):
    demo, url, seen = slow_app
    client = Client(url, verbose=False)
    for _ in range(3):  # submit and cancel, three times: before, they ran side by side
        job = client.submit(400, api_name="/crunch")
        while seen["steps"] == 0 or seen["running"] == 0:
            time.sleep(0.02)
        job.cancel()
        _stops_within_a_step(seen)
        seen["steps"] = 0
    assert client.predict(5, api_name="/crunch") == 5
    assert seen["most"] == 1


def test_a_closed_tab_stops_its_job(slow_app):
    demo, url, seen = slow_app
    fn_index = next(i for i, fn in demo.fns.items() if fn.api_name == "crunch")
    base = f"{url.rstrip('/')}/gradio_api"
    with httpx.Client(timeout=30) as http:
        http.post(f"{base}/queue/join", json={"data": [400], "fn_index": fn_index,
                                              "session_hash": "leaver", "event_data": None})
        with http.stream("GET", f"{base}/queue/data", params={"session_hash": "leaver"}) as stream:
            for _ in stream.iter_lines():
                if seen["steps"] > 3:
                    break  # the browser tab closes here
    _stops_within_a_step(seen)


def test_the_stop_message_is_a_sentence():
    assert "cancelled" in STOPPED


# ---- uploads and numbers ----------------------------------------------------------------------
def _png_bytes(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def test_an_upload_over_the_limit_is_refused_before_it_lands(classroom):
    demo, url, _ = classroom
    big = b"\0" * (51 * 1024 * 1024)
    r = httpx.post(f"{url.rstrip('/')}/gradio_api/upload", files={"files": ("big.png", big)}, timeout=60)
    assert r.status_code == 413


@pytest.fixture(scope="module")
def upload_app():
    """A picture editor and a photo upload wired like the tabs' (guarded like build_app's)."""
    from core.images import open_photo

    @user_errors
    def sizes(ctx, edited, photo):
        return f"{edited['background'].shape} {open_photo(photo).size}"

    with gr.Blocks() as demo:
        editor = gr.ImageEditor(type="numpy", format="png")
        photo = gr.Image(type="filepath", image_mode=None, format="png")
        out = gr.Textbox()
        TabWiring(None, "test").on(gr.Button().click, sizes, [editor, photo], [out], record=False,
                                   api_name="sizes")
    guard_inputs(demo)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_port=free_port(), quiet=True,
                            **app_module.launch_options())
    try:
        yield url
    finally:
        demo.close()


@pytest.mark.parametrize("name, data, words", [
    ("bomb.png", _png_bytes(Image.new("1", (12000, 12000))), "too large"),
    ("notes.png", b"these are my notes, not a picture", NOT_A_PICTURE[:40]),
    ("empty.png", b"", NOT_A_PICTURE[:40]),
    ("cut.png", _png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)))[:5000],
     NOT_A_PICTURE[:40]),
])
def test_bad_uploads_get_a_sentence(upload_app, tmp_path, name, data, words):
    good = tmp_path / "good.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(good)
    bad = tmp_path / name
    bad.write_bytes(data)
    client = Client(upload_app, verbose=False)

    def editor(path):
        return {"background": handle_file(str(path)), "layers": [], "composite": handle_file(str(path))}

    assert client.predict(editor(good), handle_file(str(good)), api_name="/sizes") == "(30, 40, 4) (40, 30)"
    with pytest.raises(AppError, match=words):  # in a picture editor (Gradio decodes it) ...
        client.predict(editor(bad), handle_file(str(good)), api_name="/sizes")
    with pytest.raises(AppError, match=words):  # ... and as a photo (a file path)
        client.predict(editor(good), handle_file(str(bad)), api_name="/sizes")


def test_every_picture_and_number_of_the_app_is_guarded(classroom):
    demo, _, _ = classroom
    widgets = [b for b in demo.blocks.values()
               if isinstance(b, (gr.Image, gr.ImageEditor, gr.Number, gr.Slider))]
    assert len(widgets) > 50
    assert all(getattr(b.preprocess, "guarded", False) for b in widgets)
    states = [b for b in demo.blocks.values() if isinstance(b, gr.State)]
    assert states and all(b.time_to_live == app_module.STATE_TTL for b in states)


def test_a_16_bit_grey_photo_keeps_its_tones(classroom, tmp_path):
    from core.ui import _checked_picture
    from gradio.components.image_editor import EditorData
    from gradio.data_classes import FileData

    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(ramp).save(path)
    editor = gr.ImageEditor(type="numpy", format="png")
    value = _checked_picture(editor.preprocess)(
        EditorData(background=FileData(path=str(path)), layers=[], composite=FileData(path=str(path))))
    grey = value["background"][..., :3].astype(float).mean()
    assert abs(grey - ramp.mean() / 257) < 2  # was 254.6: clipped to white


@pytest.mark.parametrize("truncation, seed", [(float("nan"), 3), (0.7, float("nan")), (0.7, float("inf"))])
def test_non_finite_numbers_get_a_sentence(classroom, truncation, seed):
    """Sent as raw JSON (gradio_client refuses NaN; a script need not)."""
    demo, url, _ = classroom
    base = f"{url.rstrip('/')}/gradio_api/call/generate"
    body = '{"data": ["tiny-sg2", %s, %s, "207"]}' % (repr(seed).replace("nan", "NaN").replace("inf", "Infinity"),
                                               repr(truncation).replace("nan", "NaN"))
    event = httpx.post(base, content=body, headers={"content-type": "application/json"}).json()["event_id"]
    answer = httpx.get(f"{base}/{event}", timeout=60).text
    assert "event: error" in answer and "must be a number" in answer


@pytest.mark.slow
def test_many_sessions_keep_memory_bounded(classroom):
    """Sessions beyond SESSIONS_KEPT are dropped oldest first, and the served files are swept."""
    from gradio.route_utils import delete_files_created_by_app

    demo, url, _ = classroom
    assert demo.state_holder.capacity == app_module.SESSIONS_KEPT
    demo.state_holder.capacity = 5
    try:
        for i in range(12):
            Client(url, verbose=False, download_files=False).predict("tiny-sg2", i, 0.7, api_name="/generate")
        assert len(demo.state_holder.session_data) <= 5
    finally:
        demo.state_holder.capacity = app_module.SESSIONS_KEPT
    served = [f for s in demo.temp_file_sets for f in s if "/pictures/" in f]  # not the examples
    assert len(served) >= 12
    delete_files_created_by_app(demo, age=0)
    assert [f for f in served if Path(f).exists()] == []
