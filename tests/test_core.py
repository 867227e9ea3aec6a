"""Shared plumbing: device policy, model cache, app context, LPIPS wrapper, UI errors."""
from __future__ import annotations

import threading
import urllib.error

import gradio as gr
import pytest
import torch

from helpers import tiny_sg2_entry
from core import device as device_mod
from core import lpips as lpips_mod
from core.cache import ModelCache
from core.context import AppContext
from core.errors import UserError
from core.hub import Registry, _parse_entry, main as hub_main
from core.gpu import OOM_MESSAGE, user_errors


# ---- device --------------------------------------------------------------------------------
def test_default_device_and_override():
    device_mod.set_default_device(None)
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu")
    assert device_mod.default_device().type == expected
    device_mod.set_default_device("cpu")
    try:
        assert device_mod.default_device() == torch.device("cpu")
    finally:
        device_mod.set_default_device(None)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_asking_for_cuda_without_a_gpu_is_a_user_error():
    with pytest.raises(UserError, match="CUDA"):
        device_mod.set_default_device("cuda")


def test_seeded_noise_is_device_independent_and_isolated():
    torch.manual_seed(0)
    before = torch.rand(1)
    a = device_mod.randn((2, 3), seed=5)
    torch.manual_seed(0)
    device_mod.randn((2, 3), seed=6)
    assert torch.equal(torch.rand(1), before)  # the global RNG is untouched
    assert torch.equal(a, device_mod.randn((2, 3), seed=5))
    assert device_mod.inference_dtype(torch.device("cpu")) == torch.float32
    assert device_mod.inference_dtype(torch.device("cuda")) == torch.float16


# ---- cache ---------------------------------------------------------------------------------
def test_cache_loads_once_and_evicts_least_recently_used():
    cache, calls = ModelCache(max_items=2), []

    def loader(name):
        def load():
            calls.append(name)
            return object()
        return load

    a = cache.get("a", loader("a"))
    assert cache.get("a", loader("a")) is a
    cache.get("b", loader("b"))
    cache.get("a", loader("a"))  # a is now the most recent
    cache.get("c", loader("c"))  # evicts b
    assert cache.keys() == ["a", "c"]
    cache.get("b", loader("b"))
    assert calls == ["a", "b", "c", "b"]
    cache.clear()
    assert cache.keys() == []


def test_cache_is_thread_safe_one_load_per_key():
    cache, calls = ModelCache(max_items=4), []
    gate = threading.Barrier(4)

    def worker():
        gate.wait()
        cache.get("m", lambda: calls.append(1) or object())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1]


def test_context_loads_each_model_once_per_dtype(tiny_sg2_file, tmp_path):
    entry = _parse_entry(tiny_sg2_entry("tiny", tiny_sg2_file), tmp_path, "test")
    ctx = AppContext(Registry([entry]), torch.device("cpu"))
    G = ctx.model("tiny")
    assert ctx.model("tiny") is G
    assert next(G.parameters()).dtype == torch.float32
    G64 = ctx.model("tiny", dtype=torch.float64)
    assert G64 is not G and next(G64.parameters()).dtype == torch.float64
    with pytest.raises(UserError, match="Unknown model 'nope'"):
        ctx.model("nope")
    assert ctx.model_ids("stylegan2") == ["tiny"] and ctx.model_ids("biggan") == []


# ---- LPIPS ---------------------------------------------------------------------------------
def test_lpips_random_backbone_needs_no_download():
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    y = x.flip(-1)
    d = lpips_mod.lpips_distance(x, y, net="vgg")
    assert d.shape == (2,) and torch.all(d > 0)
    assert torch.allclose(lpips_mod.lpips_distance(x, x, net="vgg"), torch.zeros(2), atol=1e-6)
    m = lpips_mod.lpips_distance(x, y, net="alex", spatial=True)
    assert m.shape == (2, 1, 64, 64)
    assert lpips_mod.get_lpips("vgg") is lpips_mod.get_lpips("vgg")  # cached


def test_lpips_backbone_download_failure_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv(lpips_mod.RANDOM_BACKBONE_ENV, "0")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    import torchvision.models._api as tv_api
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", offline, raising=False)
    with pytest.raises(UserError, match=r"core.hub download --all"):
        lpips_mod._build("alex")


def test_hub_download_all_includes_the_lpips_step(tmp_path, tiny_registry, capsys):
    assert hub_main(["--weights", str(tiny_registry), "download", "--all"]) == 0
    out = capsys.readouterr().out
    assert "tiny-sg2" in out and "LPIPS" in out


# ---- UI error translation ------------------------------------------------------------------
def test_user_errors_become_gradio_errors():
    @user_errors
    def bad_input(x, progress=gr.Progress()):
        raise UserError("paint a mask first")

    with pytest.raises(gr.Error, match="paint a mask first"):
        bad_input(1)

    @user_errors
    def oom():
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")

    with pytest.raises(gr.Error) as e:
        oom()
    assert e.value.message == OOM_MESSAGE

    @user_errors
    def bug():
        raise ZeroDivisionError("division by zero")

    with pytest.raises(gr.Error, match="ZeroDivisionError"):
        bug()

    @user_errors
    def stream():
        yield 1
        raise UserError("stopped halfway")

    gen = stream()
    assert next(gen) == 1
    with pytest.raises(gr.Error, match="stopped halfway"):
        next(gen)
    import inspect
    assert "progress" in inspect.signature(bad_input).parameters  # Gradio still sees it


def test_context_shares_one_value_per_key_across_threads():
    """ctx.shared makes a value once per app, even when sessions ask at the same time."""
    import threading
    import time as _time

    from core.context import AppContext
    from core.hub import Registry

    ctx, made = AppContext(Registry([]), torch.device("cpu")), []

    def make():
        made.append(1)
        _time.sleep(0.05)
        return object()

    got = []
    threads = [threading.Thread(target=lambda: got.append(ctx.shared("k", make))) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(made) == 1 and all(g is got[0] for g in got)
    assert AppContext(Registry([]), torch.device("cpu")).shared("k", object) is not got[0]


# ---- checkpoints that are not checkpoints ------------------------------------------------------
class _Payload:
    def __reduce__(self):
        return (print, ("this ran",))


@pytest.mark.parametrize("arch", ["stylegan2", "regressor", "e4e", "stylemapgan", "proggan"])
def test_a_non_checkpoint_or_a_pickle_with_code_is_named(tmp_path, arch):
    from core.checkpoints import read_checkpoint
    from core.models import load_model

    text = tmp_path / "notes.pt"
    text.write_text("hello, these are notes")
    with pytest.raises(UserError, match="not a checkpoint"):
        load_model(arch, text, {"size": 32} if arch == "stylegan2" else {})
    code = tmp_path / "code.pt"
    torch.save({"g_ema": _Payload()}, code)
    with pytest.raises(UserError, match="holds Python objects other than weights.*refused"):
        read_checkpoint(code)


def test_a_shared_host_names_files_not_its_paths(tmp_path, monkeypatch):
    """Locally a message shows the full path (to find the file); on a Space or a classroom
    LAN only the file's name."""
    from core.checkpoints import read_checkpoint

    missing = tmp_path / "deep" / "weights.pt"
    with pytest.raises(UserError, match=str(tmp_path)):
        read_checkpoint(missing)
    monkeypatch.setenv("SPACE_ID", "someone/studio")
    with pytest.raises(UserError) as e:
        read_checkpoint(missing)
    assert "weights.pt" in str(e.value) and str(tmp_path) not in str(e.value)


def test_a_half_precision_overflow_reruns_in_float32_once_and_stays(tmp_path, monkeypatch):
    """A model whose activations exceed fp16's range (65504): its pictures come out of the
    float32 re-run, and the model stays float32 afterwards."""
    import numpy as np

    from helpers import SG2_REF, write_registry
    from core import context as context_mod
    from core.context import AppContext
    from core.hub import load_registry
    from demos.generate.handlers import generate_image

    ckpt = torch.load(SG2_REF / "tiny.pt", weights_only=False)
    g = ckpt["g_ema"]
    g["input.input"] = g["input.input"] * 1e5  # activations ~1e5: inf in fp16
    for key in [k for k in g if k.startswith("to_rgb") and k.endswith("conv.weight")]:
        g[key] = g[key] * 1e-5  # the (undemodulated) outputs back to the usual range
    torch.save(ckpt, tmp_path / "hot.pt")
    registry = load_registry(write_registry(tmp_path / "w.json", [tiny_sg2_entry("hot", tmp_path / "hot.pt")]))
    ctx = AppContext(registry, torch.device("cpu"))
    reference, _ = generate_image(ctx, "hot", 3, 0.7)  # float32 (the CPU's dtype)
    assert 10 < reference.std() and reference.min() < 128 < reference.max()  # an ordinary picture

    half = AppContext(registry, torch.device("cpu"))
    monkeypatch.setattr(context_mod, "inference_dtype", lambda device: torch.float16)
    picture, _ = generate_image(half, "hot", 3, 0.7)
    assert half.float32_only == {"hot"}
    np.testing.assert_array_equal(picture, reference)
    assert {key[2] for key in half.cache.keys()} >= {torch.float32}
    again, _ = generate_image(half, "hot", 3, 0.7)  # straight to float32 now
    np.testing.assert_array_equal(again, reference)
