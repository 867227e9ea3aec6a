"""What a person sends is bounded before it is unpacked (issue 34): saved runs (.zip) by member
count, declared sizes, pictures' pixels and arrays' headers; an image editor's files together;
a recipe.json of the wrong shape and a request with too few values answered with sentences.

The memory cases run in a fresh Python process and compare its peak RSS (ru_maxrss) with its
RSS after the imports, so nothing else this test session holds counts."""
from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import urllib.request
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from helpers import ROOT, free_port
from core import runfile
from core.errors import UserError
from core.recipe import open_run, write_bundle
from core.recipe_check import recipe_problems

MiB = 1 << 20
RECIPE = json.dumps({"tab": "generate", "seeds": [1], "settings": {"truncation": 0.7}}).encode()


# ---- small files that claim a lot ------------------------------------------------------------
def png_1bit(width: int, height: int) -> bytes:
    """A valid all-black 1-bit PNG of any size, a few KB (written directly: fast)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = b"\0" * (1 + (width + 7) // 8)
    pixels = zlib.compressobj(9)
    idat = b"".join(pixels.compress(row) for _ in range(height)) + pixels.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def deflated_zeros(mib: int) -> tuple[bytes, int]:
    """(a raw deflate stream of `mib` MiB of zeros, their CRC-32), made from one compressed
    MiB repeated (a full flush makes each copy independent): a 1 GB member in a second."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(MiB)) + c.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(bytes(MiB), crc)
    return block * mib + c.flush(), crc


def raw_zip(path: Path, members: list[tuple[str, bytes, int, int]]) -> Path:
    """A zip of deflated members given as (name, deflate stream, declared size, crc): the
    declared size may be what the stream holds, or a lie."""
    out, central = bytearray(), bytearray()
    for name, data, size, crc in members:
        n = name.encode()
        head = (8, 0, 0x21, crc, len(data), size, len(n), 0)  # deflate, 1980-01-01
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, *head, 0, 0, 0, 0, len(out)) + n
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, *head) + n + data
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), len(out), 0)
    path.write_bytes(bytes(out + central + end))
    return path


def deflated(data: bytes) -> tuple[bytes, int, int]:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush(), len(data), zlib.crc32(data)


def latents_gb_zip(tmp: Path) -> Path:
    """A ~1 MB zip holding a 1 GB latents.npz (as the issue's attacker sent)."""
    stream, crc = deflated_zeros(1024)
    return raw_zip(tmp / "latents-gb.zip", [("recipe.json", *deflated(RECIPE)),
                                            ("latents.npz", stream, 1024 * MiB, crc)])


def many_files_zip(tmp: Path, n: int = 5000) -> Path:
    path = tmp / "many.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("recipe.json", RECIPE)
        for i in range(n):
            zf.writestr(f"images/x{i}.png", b"")
    return path


def huge_pictures_zip(tmp: Path) -> Path:
    """A ~40 KB zip holding two 13000 x 13000 PNGs (each 169 MP, 507 MB as RGB)."""
    path, picture = tmp / "huge-pictures.zip", png_1bit(13000, 13000)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("recipe.json", RECIPE)
        zf.writestr("images/a.png", picture)
        zf.writestr("images/b.png", picture)
    return path


def measured(imports: str, work: str, **values) -> dict:
    """Run `imports`, then `work`, in a fresh process (`values` as globals; `refusal(fn)` -> the
    sentence fn() answers with, or "accepted") -> {"growth_mb": peak RSS minus the peak RSS of
    the imports, "out": whatever `work` put in `out`}."""
    prelude = f"""
import json, resource, sys
sys.path[:0] = [{str(ROOT)!r}]
{imports}
globals().update(json.loads(sys.argv[1]))
def rss():
    return int([l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1]) * 1024
def growth():
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base) / 2**20
def refusal(fn):
    try:
        fn()
    except Exception as e:
        if type(e).__name__ not in ("UserError", "Error"):  # core's, or Gradio's for the page
            raise
        return getattr(e, "message", None) or str(e)
    return "accepted"
out = {{}}
base = max(rss(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # imports' peak too
"""
    finish = "\nprint(json.dumps({'growth_mb': growth(), 'out': out}))\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", prelude + work + finish, json.dumps(values)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- saved runs: refused from what they declare, memory flat -------------------------------------
def test_run_zip_bombs_are_refused_with_sentences_and_little_memory(tmp_path: Path):
    """A 1 MB zip with a 1 GB latents.npz, a zip with 5000 members and a zip with two 13000 x
    13000 PNGs: each refused with a sentence, the process's peak RSS within 200 MB of its start
    (before: +1.8 GB and +2.2 GB, the pictures accepted)."""
    files = {"latents": str(latents_gb_zip(tmp_path)), "many": str(many_files_zip(tmp_path)),
             "pictures": str(huge_pictures_zip(tmp_path))}
    assert os.path.getsize(files["latents"]) < 2 * MiB and os.path.getsize(files["pictures"]) < MiB
    got = measured("from core.recipe import open_run",
                   "for key in ('latents', 'many', 'pictures'):\n"
                   "    out[key] = refusal(lambda: open_run(globals()[key]))\n", **files)
    out = got["out"]
    assert "'latents.npz' would unpack to 1,024 MB" in out["latents"], out
    assert "holds 5,001 files" in out["many"] and "at most 256" in out["many"], out
    assert "'images/a.png' cannot be used" in out["pictures"] and "13000 x 13000 pixels" in out["pictures"], out
    assert got["growth_mb"] < 200, got


def test_a_size_that_lies_cannot_unpack_more_than_it_declares(tmp_path: Path):
    stream, crc = deflated_zeros(64)
    path = raw_zip(tmp_path / "liar.zip", [("recipe.json", stream, 100, crc)])  # says 100 bytes
    with pytest.raises(UserError, match="not a run saved with"):
        open_run(path)
    with runfile.RunZip(path) as run, pytest.raises((UserError, zipfile.BadZipFile)):
        run.read("recipe.json", runfile.MAX_RECIPE_BYTES)


def npz_with_header(shape: tuple, dtype: str, payload: bytes = b"") -> bytes:
    """An .npz whose one array's header claims `shape` and `dtype` (data: `payload` only)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False, "shape": shape})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("W+.npy", header.getvalue() + payload)  # the header starts with the magic
    return buf.getvalue()


@pytest.mark.parametrize("shape, dtype, says", [
    ((1 << 28,), "<f4", "holds more than 128 MB of arrays"),
    ((1 << 20, 1 << 20), "<f8", "holds more than 128 MB of arrays"),
    ((3,), "|O", "holds an array of object values"),
])
def test_arrays_are_checked_from_their_headers_before_loading(tmp_path: Path, shape, dtype, says):
    path = tmp_path / "run.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("recipe.json", RECIPE)
        zf.writestr("latents.npz", npz_with_header(shape, dtype))
    with pytest.raises(UserError, match=says):
        open_run(path)


def test_pictures_are_bounded_together_and_a_real_run_still_loads(tmp_path: Path):
    path = tmp_path / "run.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("recipe.json", RECIPE)
        for name in ("a", "b"):
            zf.writestr(f"images/{name}.png", png_1bit(6000, 6000))  # 36 MP each: each fine alone
    with pytest.raises(UserError, match="add up to more than 64 megapixels"):
        open_run(path)
    saved = write_bundle({"picture": np.full((8, 8, 3), 7, np.uint8)}, {"mask": np.ones((8, 8))},
                         {"W+": np.zeros((1, 4, 3), np.float32)}, {"tab": "generate", "seeds": [3]},
                         tmp_path)
    bundle = open_run(saved)
    assert bundle.images["picture"].shape == (8, 8, 3) and bundle.masks["mask"].max() == 255
    assert bundle.arrays["W+"].shape == (1, 4, 3) and bundle.recipe["seeds"] == [3]
    assert open_run(saved, pictures=False, arrays=False).images == {}


def test_a_member_over_its_own_bound_is_named(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(runfile, "MAX_MEMBER_BYTES", 1000)
    path = tmp_path / "run.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("recipe.json", RECIPE)
        zf.writestr("images/big.png", bytes(5000))
    with pytest.raises(UserError, match="'images/big.png' would unpack to 5,000 bytes"):
        open_run(path)


# ---- recipe.json of the wrong shape -----------------------------------------------------------
def run_with_recipe(tmp_path: Path, recipe) -> Path:
    path = tmp_path / "run.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("recipe.json", json.dumps(recipe))
    return path


@pytest.mark.parametrize("recipe, says", [
    ([1, 2], "It is a list, not an object"),
    ({"seeds": "1"}, "'seeds' must be a list of whole numbers from 0 to 2147483647, not a text."),
    ({"settings": []}, "'settings' must be an object (the run's settings by name), not a list."),
    ({"settings": {"truncation": "high"}}, "settings 'truncation' must be a number, not a text."),
    ({"settings": {"photo_code": {"method": "SAM"}}}, "photo_code 'model' is missing."),
    ({"settings": {"photo_code": {"model": "m", "photo": {"quad": [[0, 0]], "framing": "ffhq",
                                                         "photo_size": [10, 10], "content": [0, 0, 9, 9]}}}},
     "photo_code photo 'quad' must be four [x, y] corners, not a list."),
])
def test_a_recipe_of_the_wrong_shape_is_a_sentence_per_problem(tmp_path: Path, recipe, says):
    with pytest.raises(UserError) as e:
        open_run(run_with_recipe(tmp_path, recipe))
    assert str(e.value).startswith("That run's recipe.json cannot be used. ") and says in str(e.value)


def test_every_problem_is_its_own_sentence_and_real_recipes_pass():
    from core.recipe import make_recipe

    problems = recipe_problems({"tab": 5, "seeds": [-1], "model_id": ["x"]})
    assert len(problems) == 3 and all(p.endswith(".") for p in problems)
    assert recipe_problems(json.loads(json.dumps(make_recipe("generate", "sample", seeds=[1, 2],
                                                             settings={"truncation": 0.7})))) == []


@pytest.mark.slow  # imports the Generate tab (~8 s here)
def test_a_loaded_run_with_a_list_recipe_is_a_sentence_in_the_generate_tab(tmp_path: Path):
    from demos.generate.handlers import load_run
    import gradio as gr

    with pytest.raises(gr.Error, match="It is a list, not an object"):
        load_run(None, str(run_with_recipe(tmp_path, [])), None)


# ---- image editors: their files bounded together ------------------------------------------------
EDITOR = """
import gradio as gr
from gradio.components.image_editor import EditorData, EditorDataBlobs
from gradio.data_classes import FileData
from core.ui import guard_inputs
"""
SEND = """
with gr.Blocks() as demo:
    editor = gr.ImageEditor(type="numpy", format="png", layers=False)
guard_inputs(demo)
def send(path, files):
    f = lambda: FileData(path=path, orig_name="photo.png")
    payload = EditorData(background=f(), layers=[f() for _ in range(files - 2)], composite=f() if files > 1 else None)
    return editor.preprocess(payload)
out["big"] = refusal(lambda: send(big, 3))
out["alone"] = refusal(lambda: send(big, 1))
blob = open(big, "rb").read()
editor.blob_storage["k"] = EditorDataBlobs(background=blob, layers=[blob], composite=blob)
out["blobs"] = refusal(lambda: editor.preprocess(EditorData(id="k")))
out["refusals_mb"] = growth()
out["shape"] = list(send(near, 1)["background"].shape)
"""


@pytest.mark.slow  # a fresh process importing Gradio and the app's core: ~10 s on a busy CPU
def test_an_editors_files_are_bounded_together_and_a_near_limit_picture_stays_under_600_mb(tmp_path: Path):
    """A 6 KB 7000 x 7000 1-bit PNG as background, layer and composite (uploaded, or as a
    live editor's blobs) or alone (49 MP): refused before decoding (before: +1.6 GB); a
    6300 x 6300 one (39.7 MP, just under the editor's 40) decodes within 600 MB."""
    big, near = tmp_path / "big.png", tmp_path / "near.png"
    big.write_bytes(png_1bit(7000, 7000))
    near.write_bytes(png_1bit(6300, 6300))
    got = measured(EDITOR, SEND, big=str(big), near=str(near))
    out = got["out"]
    for case in ("big", "alone", "blobs"):
        assert "too large for the editor" in out[case] and "40 megapixels" in out[case], got
    assert out["refusals_mb"] < 100, got
    assert out["shape"] == [6300, 6300, 4] and got["growth_mb"] < 600, got


# ---- a request with too few values ------------------------------------------------------------
def test_a_request_missing_values_gets_a_sentence_not_a_null_error():
    import gradio as gr
    from core.ui import guard_inputs

    with gr.Blocks() as demo:
        a, b, total = gr.Number(), gr.Number(), gr.Number()
        gr.Button().click(lambda x, y: x + y, [a, b], total, api_name="add")
    guard_inputs(demo)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_port=free_port())
    try:
        ask = urllib.request.Request(url + "gradio_api/call/add", json.dumps({"data": [1]}).encode(),
                                     {"Content-Type": "application/json"})
        event = json.loads(urllib.request.urlopen(ask, timeout=30).read())["event_id"]
        answer = urllib.request.urlopen(f"{url}gradio_api/call/add/{event}", timeout=30).read().decode()
    finally:
        demo.close()
    assert "event: error" in answer and "This request sent 1 of the 2 values" in answer, answer
