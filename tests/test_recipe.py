"""core.recipe: recipes, "download all" bundles and licence notes; and what every tab builds
with them (a licence line, labelled examples that run the tab, a download endpoint)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import zipfile
from datetime import datetime
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from helpers import ROOT, seed_hub_cache, tiny_sg2_entry, write_registry

from core.context import AppContext
from core.hub import load_registry
from core.images import to_uint8
from core.recipe import (Run, fill_local_hashes, is_non_commercial, licence_note, make_recipe, read_bundle,
                         to_jsonable, write_bundle)


# ---- JSON ----------------------------------------------------------------------------------
@dataclasses.dataclass
class _Settings:
    steps: int
    where: Path


def test_settings_become_strict_json_whatever_their_type():
    settings = {
        "np_float": np.float32(0.25), "np_int": np.int64(7), "np_bool": np.bool_(True),
        "torch_float": torch.tensor(2.5), "torch_int": torch.tensor(3, dtype=torch.int16),
        "torch_half": torch.tensor(0.5, dtype=torch.bfloat16), "small": np.arange(3, dtype=np.uint8),
        "small_tensor": torch.ones(2), "big": torch.zeros(4, 64), "nan": float("nan"),
        "inf": np.float64("inf"), "tuple": (1, (2, 3)), "set": {3, 1}, "path": Path("/x/y.pt"),
        "dtype": torch.float16, "device": torch.device("cpu"), "dataclass": _Settings(5, Path("a")),
        4: "int key", "none": None, "text": "ψ 0.7"}
    out = to_jsonable(settings)
    text = json.dumps(out, allow_nan=False, ensure_ascii=False)  # strict JSON
    back = json.loads(text)
    assert back["np_float"] == 0.25 and isinstance(back["np_float"], float)
    assert back["np_int"] == 7 and back["np_bool"] is True
    assert back["torch_float"] == 2.5 and back["torch_int"] == 3 and back["torch_half"] == 0.5
    assert back["small"] == [0, 1, 2] and back["small_tensor"] == [1.0, 1.0]
    assert back["big"] == {"shape": [4, 64], "dtype": "float32"}
    assert back["nan"] == "nan" and back["inf"] == "inf"
    assert back["tuple"] == [1, [2, 3]] and back["set"] == [1, 3]
    assert back["path"] == "/x/y.pt" and back["dtype"] == "torch.float16" and back["device"] == "cpu"
    assert back["dataclass"] == {"steps": 5, "where": "a"} and back["4"] == "int key"
    assert back["none"] is None and back["text"] == "ψ 0.7"


# ---- bundles -------------------------------------------------------------------------------
def test_bundle_holds_pngs_npz_and_recipe_exactly(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    rgba = rng.integers(0, 256, (8, 8, 4), dtype=np.uint8)
    engine = torch.rand(2, 3, 8, 8) * 2 - 1  # a batch in [-1, 1]: two numbered files
    soft = torch.rand(1, 1, 8, 8)
    arrays = {"z": torch.randn(1, 512), "w_plus": np.random.default_rng(1).normal(size=(1, 14, 512)).astype(np.float16),
              "ids": np.arange(5, dtype=np.int64), "losses": [0.5, 0.25]}
    path = write_bundle({"result": rgb, "rgba": rgba, "frame": engine},
                        {"known": soft, "hard": np.eye(8, dtype=bool)}, arrays,
                        {"tab": "generate", "operation": "generate", "seed": np.int64(3)}, directory=tmp_path)
    assert path.parent == tmp_path and path.suffix == ".zip" and path.name.startswith("generate-")
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
    assert names == {"recipe.json", "latents.npz", "images/result.png", "images/rgba.png",
                     "images/frame_01.png", "images/frame_02.png", "masks/known.png", "masks/hard.png"}
    b = read_bundle(path)
    assert np.array_equal(b.images["result"], rgb) and np.array_equal(b.images["rgba"], rgba)
    expected = to_uint8(engine)
    assert np.array_equal(b.images["frame_01"], expected[0]) and np.array_equal(b.images["frame_02"], expected[1])
    assert np.array_equal(b.masks["known"], (soft[0, 0].numpy() * 255).round().astype(np.uint8))
    assert np.array_equal(b.masks["hard"], np.eye(8, dtype=np.uint8) * 255)
    assert np.array_equal(b.arrays["z"], arrays["z"].numpy()) and b.arrays["z"].dtype == np.float32
    assert np.array_equal(b.arrays["w_plus"], arrays["w_plus"]) and b.arrays["w_plus"].dtype == np.float16
    assert np.array_equal(b.arrays["ids"], arrays["ids"]) and np.allclose(b.arrays["losses"], [0.5, 0.25])
    assert b.recipe["seed"] == 3 and b.recipe["bundle"]["latents_file"] == "latents.npz"
    assert b.recipe["bundle"]["arrays"]["w_plus"] == {"shape": [1, 14, 512], "dtype": "float16"}
    assert sorted(b.recipe["bundle"]["images"]) == sorted(n for n in names if n.startswith("images/"))
    with Image.open(zipfile.ZipFile(path).open("masks/known.png")) as m:
        assert m.mode == "L"


def test_run_keeps_cpu_arrays_only_and_rejects_what_it_cannot_store(tmp_path):
    run = Run({"result": torch.zeros(1, 3, 4, 4)}, {"m": torch.ones(1, 1, 4, 4)},
              {"w": torch.ones(2, 3, dtype=torch.bfloat16)}, {"tab": "t"})
    assert isinstance(run.images["result"], np.ndarray) and run.images["result"].shape == (4, 4, 3)
    assert (run.images["result"] == 128).all() and (run.masks["m"] == 255).all()
    assert run.arrays["w"].dtype == np.float32
    assert read_bundle(run.write(tmp_path)).arrays["w"].shape == (2, 3)
    with pytest.raises(TypeError):
        Run({"x": np.zeros((4, 4, 3), np.float32)})  # ambiguous range: not a picture
    with pytest.raises(TypeError):
        Run({}, arrays={"o": np.array([object()])})  # npz without pickle cannot hold objects


# ---- recipes -------------------------------------------------------------------------------
@pytest.fixture()
def registry(tmp_path, tiny_sg2_file, hub_cache):
    seed_hub_cache(hub_cache, "someone/models", {"g.pt": b"weights"}, commit="ab" * 20)
    return load_registry(write_registry(tmp_path / "weights.json", [
        tiny_sg2_entry("tiny-path", tiny_sg2_file, used_by=["panda"]),  # no sha256: hashed from the file
        {"id": "tiny-hub", "arch": "stylegan2", "config": {"size": 32},
         "hub": {"repo_id": "someone/models", "filename": "g.pt"},
         "sha256": hashlib.sha256(b"weights").hexdigest(),
         "license": "Nvidia Source Code License-NC (non-commercial): https://example.org/nc",
         "used_by": ["generate"]},
        {"id": "tiny-url", "arch": "regressor", "config": {},
         "url": "https://example.org/files/r.pth", "license": "MIT", "used_by": ["collage"]}]))


def test_recipe_records_the_app_models_seeds_and_settings(registry, tiny_sg2_file):
    recipe = make_recipe("collage", "compose",
                         {"regressor": registry.get("tiny-url"), "generator": registry.get("tiny-hub"),
                          "other": registry.get("tiny-path")},
                         seeds=[np.int64(5), 6], settings={"steps": np.int32(30), "lr": torch.tensor(0.01)},
                         device=torch.device("cpu"))
    json.dumps(recipe, allow_nan=False)
    assert recipe["model_id"] == "tiny-url" and recipe["seed"] == 5 and recipe["seeds"] == [5, 6]
    assert recipe["tab"] == "collage" and recipe["operation"] == "compose" and recipe["device"] == "cpu"
    assert recipe["settings"] == {"steps": 30, "lr": pytest.approx(0.01)}
    assert recipe["app"]["name"] == "Spatial GAN Studio" and recipe["app"]["torch"] == torch.__version__
    assert recipe["app"]["gradio"] == gr.__version__
    commit = recipe["app"]["commit"]
    assert commit is None or (len(commit) == 40 and int(commit, 16) >= 0)
    assert datetime.fromisoformat(recipe["created"]).tzinfo is not None
    hub = recipe["models"]["generator"]
    assert hub["hub"] == {"repo_id": "someone/models", "filename": "g.pt", "revision": "main",
                          "repo_type": "model", "resolved_commit": "ab" * 20}
    assert hub["sha256"] == hashlib.sha256(b"weights").hexdigest() and hub["sha256_source"] == "registry"
    assert "non-commercial" in hub["license"]
    assert recipe["models"]["regressor"]["url"] == {"href": "https://example.org/files/r.pth", "filename": "r.pth"}
    assert recipe["models"]["other"]["path"] == str(tiny_sg2_file) and recipe["models"]["other"]["sha256"] is None
    filled = fill_local_hashes(recipe, registry)
    assert filled["models"]["other"]["sha256"] == hashlib.sha256(tiny_sg2_file.read_bytes()).hexdigest()
    assert filled["models"]["other"]["sha256_source"].startswith("local file")
    assert filled["models"]["regressor"]["sha256"] is None  # not downloaded: nothing to hash
    assert recipe["models"]["other"]["sha256"] is None  # the original is left alone


# ---- licences ------------------------------------------------------------------------------
def registry_dir(registry) -> Path:
    return Path(registry.origin).parent


def test_licence_note_groups_the_tabs_licences_and_counts_non_commercial(registry):
    note = licence_note(registry, "generate", ["tiny-path"])
    assert "[Nvidia Source Code License-NC](https://example.org/nc) (1)" in note
    assert "test only (1)" in note and "1 of 2 models is for non-commercial use only" in note
    only_nc = licence_note(registry, "generate")
    assert "non-commercial use only** (its model)" in only_nc
    assert "none marked non-commercial" in licence_note(registry, "collage")
    serving = load_registry(write_registry(registry_dir(registry) / "serving.json", [
        {"id": "enc", "arch": "regressor", "path": "e.pth", "used_by": ["collage"],
         "license": "MIT (code); the generator it serves is CC BY-NC 4.0 (non-commercial)"}]))
    assert "MIT (1; non-commercial terms apply)" in licence_note(serving, "collage")
    assert "none registered" in licence_note(registry, "nothing")
    assert is_non_commercial("CC BY-NC 4.0") and is_non_commercial("Nvidia Source Code License-NC")
    assert not is_non_commercial("Apache-2.0 (verify before commercial use)") and not is_non_commercial("MIT")


def test_the_real_registry_marks_every_tab_non_commercial():
    registry = load_registry(ROOT / "weights.json")
    for tab in ("generate", "collage", "stylemap", "panda"):
        note = licence_note(registry, tab)
        assert "non-commercial use only" in note, (tab, note)
        assert math.isfinite(len(note)) and note.count("](http") >= 1


# ---- what the tabs build -------------------------------------------------------------------
from demos import TABS as DECLARED  # noqa: E402

TABS = [t.id for t in DECLARED if t.id != "models"]  # the Models tab runs nothing


@pytest.fixture(scope="module")
def tabs():
    """Every tab built on the real registry (nothing is loaded), each in its own Blocks."""
    ctx = AppContext(load_registry(ROOT / "weights.json"), torch.device("cpu"))
    built = {}
    for tab in DECLARED:
        if tab.id in TABS:
            with gr.Blocks() as demo:
                tab.load().build_tab(ctx)
            built[tab.id] = demo
    return built


@pytest.mark.parametrize("tab", TABS)
def test_every_tab_has_a_licence_line_labelled_examples_that_run_and_a_download(tabs, tab):
    demo = tabs[tab]
    notes = [b.value for b in demo.blocks.values() if isinstance(b, gr.Markdown) and
             str(b.value).startswith("⚖️ **Weights:**")]
    assert len(notes) == 1 and "non-commercial" in notes[0]
    how = [b for b in demo.blocks.values() if isinstance(b, gr.Accordion) and b.label == "How it works"]
    assert how and any("arxiv.org" in str(b.value) for b in demo.blocks.values() if isinstance(b, gr.Markdown))
    fns = list(demo.fns.values())
    download = [f for f in fns if f.api_name == f"{tab}_download"]
    assert len(download) == 1
    state = download[0].inputs[0]
    assert isinstance(state, gr.State) and isinstance(download[0].outputs[0], gr.DownloadButton)
    datasets = [b for b in demo.blocks.values() if isinstance(b, gr.Dataset)]
    assert datasets
    running = 0
    for ds in datasets:
        assert ds.sample_labels and len(ds.sample_labels) == len(ds.samples), ds.label
        loads = [f for f in fns if (ds._id, "click") in [tuple(t) for t in f.targets]]
        chain = [f for f in fns if f.trigger_after in {f2._id for f2 in loads}]
        while chain:  # every step after a click that runs a model is on the GPU queue
            assert all(f.concurrency_id == "gpu" for f in chain if getattr(f.fn, "gpu_task", False))
            running += any(state in f.outputs for f in chain)
            chain = [f for f in fns if f.trigger_after in {c._id for c in chain}]
    # at least one example runs the tab and records the run; SAM's examples run the layer-map
    # prediction only (its inversion takes minutes on a CPU), which is not a run to download
    assert running >= 1 or tab == "sam"
