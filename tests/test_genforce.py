"""The PandA authors' genforce StyleGAN2 layout read into our StyleGAN2Generator, against
their genforce code on tiny random weights (tests/data/reference/genforce/make_reference.py):
pictures, truncation, and the features at PandA's "layer l" (our `panda_layer(l)`), loaded
through the registry; the checkpoint variants their loader accepts; readable mistakes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import REFERENCE, ROOT, write_registry
from core.context import AppContext
from core.errors import UserError
from core.hub import load_registry
from core.models import STYLEGAN2_ARCHS, load_model
from core.models.generator import Generator
from core.models.genforce import genforce_keys
from core.models.stylegan2 import StyleGAN2Generator, SynthesisState, panda_layer

REF = REFERENCE / "genforce"
TINY = {"size": 32, "w_space_dim": 16, "mapping_layers": 3, "fmaps_max": 8}
TOL = 1e-4


def close(a: torch.Tensor, b: np.ndarray) -> None:
    b = torch.from_numpy(b)
    assert a.shape == b.shape
    err = (a.float() - b).abs().max().item()
    assert err <= TOL, err


def tiny_entry(model_id: str, path) -> dict:
    return {"id": model_id, "arch": "stylegan2-genforce", "config": dict(TINY),
            "path": str(path), "sha256": None, "license": "test only", "source": "tests",
            "used_by": ["generate", "panda"]}


@pytest.fixture(scope="module")
def io() -> dict:
    with np.load(REF / "tiny-io.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def G(tmp_path_factory):
    """The tiny checkpoint through the real registry path (local `path` entry, AppContext)."""
    registry = write_registry(tmp_path_factory.mktemp("genforce") / "weights.json",
                              [tiny_entry("tiny-genforce", REF / "tiny.pth")])
    ctx = AppContext(load_registry(registry), torch.device("cpu"))
    assert ctx.model_ids(STYLEGAN2_ARCHS) == ["tiny-genforce"]
    return ctx.model("tiny-genforce")


def test_pictures_and_truncation_match_the_authors(G, io):
    assert isinstance(G, StyleGAN2Generator) and isinstance(G, Generator) and G.has_w_avg
    z = torch.from_numpy(io["z"])
    with torch.no_grad():
        close(G.mapping(z), io["w"])
        close(G(z), io["image"])
        close(G(z, truncation=0.7), io["image_psi07"])  # around the file's truncation.w_avg
    assert G.render(z[:1]).abs().max() <= 1


@pytest.mark.parametrize("layer", [4, 5])
def test_panda_layer_features_and_resumed_picture_match_the_authors(G, io, layer):
    """genforce `synthesis(wp, stop=l)['x']` is our layer panda_layer(l); their resumed
    picture (a fresh RGB skip from layer l) is ours resumed with no skip image."""
    w_plus = G.w_plus(G.mapping(torch.from_numpy(io["z"][:2])))
    with torch.no_grad():
        state = G.synthesis_until(w_plus, panda_layer(layer))
        close(state.features, io[f"features_l{layer}"])
        resumed = G.synthesis_from(SynthesisState(state.layer, state.features, None), w_plus)
        close(resumed, io[f"resumed_l{layer}"])


def test_checkpoint_variants_their_loader_accepts(tmp_path, io):
    """'generator' when there is no 'generator_smooth' (the shipped file has both, with a
    different 'generator': the picture above proves smooth is preferred), a bare state dict,
    and our safetensors copy (scripts/publish_weights.py keeps 'generator_smooth')."""
    from core.checkpoints import write_safetensors

    ckpt = torch.load(REF / "tiny.pth", map_location="cpu", weights_only=True)
    smooth = ckpt["generator_smooth"]
    torch.save({"generator": smooth, "discriminator": {}}, tmp_path / "g.pth")
    torch.save(dict(smooth), tmp_path / "bare.pth")
    write_safetensors(ckpt, tmp_path / "copy.safetensors", ("generator_smooth",))
    z = torch.from_numpy(io["z"][:1])
    for name in ("g.pth", "bare.pth", "copy.safetensors"):
        with torch.no_grad():
            close(load_model("stylegan2-genforce", tmp_path / name, TINY)(z), io["image"][:1])


def test_loading_mistakes_are_user_errors(tmp_path):
    smooth = torch.load(REF / "tiny.pth", map_location="cpu", weights_only=True)["generator_smooth"]

    def fails(state, match, config=TINY):
        torch.save({"generator_smooth": state}, tmp_path / "bad.pth")
        with pytest.raises(UserError, match=match):
            load_model("stylegan2-genforce", tmp_path / "bad.pth", config)

    fails({k: v for k, v in smooth.items() if k != "synthesis.layer3.noise"},
          r"bad\.pth .*missing key 'synthesis\.layer3\.noise'")
    fails({**smooth, "synthesis.layer9.weight": torch.zeros(1)},
          r"unexpected key 'synthesis\.layer9\.weight'")
    fails(smooth, r"mapping\.dense0\.weight has shape \(16, 16\), expected \(32, 32\)",
          {**TINY, "w_space_dim": 32})
    fails(smooth, "missing key 'mapping.dense3.weight'", {**TINY, "mapping_layers": 4})
    fails({**smooth, "synthesis.upsample.kernel": torch.ones(1, 1, 4, 4)}, "not StyleGAN2's")
    torch.save({"g_ema": smooth}, tmp_path / "rosinality.pt")
    with pytest.raises(UserError, match="not a genforce StyleGAN2 checkpoint.*g_ema"):
        load_model("stylegan2-genforce", tmp_path / "rosinality.pt", TINY)
    (tmp_path / "cut.pth").write_bytes((REF / "tiny.pth").read_bytes()[:5000])
    with pytest.raises(UserError, match="Could not read the weights file cut.pth"):
        load_model("stylegan2-genforce", tmp_path / "cut.pth", TINY)
    with pytest.raises(UserError, match="fmaps_base 1000"):
        load_model("stylegan2-genforce", REF / "tiny.pth", {**TINY, "fmaps_base": 1000})


def test_the_real_files_layout_is_what_the_loader_expects():
    """Every key and shape of genforce's StyleGAN2Generator(512) (the authors' file) is one
    the loader maps, and nothing else."""
    manifest = json.loads((REF / "manifest-afhqdog-512.json").read_text())
    reg = load_registry(ROOT / "weights.json")
    entry = reg.get("stylegan2-afhqdog-512-genforce")
    assert entry.config["size"] == manifest["config"]["resolution"] == entry.image_size()
    with torch.device("meta"):  # shapes only (other tests paid for the meta device's set-up)
        G = StyleGAN2Generator(512, 512, 8, 2, 512)
    assert {k: list(s) for k, s in genforce_keys(G, 8).items()} == manifest["state_dict"]


def test_the_published_afhqdog_factors_are_paired_with_the_genforce_port():
    from demos.panda import sources

    reg = load_registry(ROOT / "weights.json")
    ctx = AppContext(reg, torch.device("cpu"))
    port = "stylegan2-afhqdog-512-genforce"
    for part in ("appearances", "parts"):
        assert reg.generator_of(reg.get(f"panda-afhqdog-l8-{part}")).id == port
    assert {"stylegan2-afhqdog-512", port} <= set(ctx.model_ids(STYLEGAN2_ARCHS))
    lib = sources.FactorLibrary(ctx)
    assert f"{port} · layer 8 · ranks [512, 8] (published)" in lib.published()
    assert lib.authors_name(port) == "stylegan2_afhqdog512"


def test_factors_computed_for_a_genforce_generator_are_listed(tmp_path, monkeypatch):
    from demos.panda import sources

    monkeypatch.setenv("SPATIAL_GAN_CACHE", str(tmp_path / "cache"))
    folder = sources.computed_dir() / "tiny-genforce"
    folder.mkdir(parents=True)
    for f in ("Uc-name_tiny_genforce-layer_4-rank_8.npy", "Us-name_tiny_genforce-layer_4-rank_2.npy"):
        np.save(folder / f, np.zeros(1))
    registry = write_registry(tmp_path / "weights.json",
                              [tiny_entry("tiny-genforce", REF / "tiny.pth")])
    lib = sources.FactorLibrary(AppContext(load_registry(registry), torch.device("cpu")))
    assert list(lib.computed()) == ["tiny-genforce · layer 4 · ranks [8, 2] (computed)"]


def test_same_network_compares_two_layouts_of_one_generator(G, tmp_path, capsys):
    """`python -m scripts.same_network A B`: the genforce file and a rosinality copy of the
    same weights are the same network; a rosinality file of other weights is not."""
    from scripts.same_network import main

    rosinality = {"size": 32, "style_dim": 16, "n_mlp": 3, "channel_multiplier": 2, "channel_max": 8}
    torch.save({"g_ema": G.state_dict(), "latent_avg": G.w_avg.clone()}, tmp_path / "copy.pt")
    torch.manual_seed(5)
    torch.save({"g_ema": StyleGAN2Generator(32, 16, 3, 2, 8).state_dict()}, tmp_path / "other.pt")
    entries = [tiny_entry("port", REF / "tiny.pth")] + [
        {"id": name, "arch": "stylegan2", "config": rosinality, "path": str(tmp_path / f"{name}.pt"),
         "sha256": None, "license": "test only", "source": "tests", "used_by": ["generate"]}
        for name in ("copy", "other")]
    registry = write_registry(tmp_path / "weights.json", entries)
    assert main(["port", "copy", "--registry", str(registry), "--seeds", "0,7"]) == 0
    assert "largest |difference| 0 " in capsys.readouterr().out
    assert main(["port", "other", "--registry", str(registry)]) == 1
    assert "different networks" in capsys.readouterr().out
    assert main(["port", "missing", "--registry", str(registry)]) == 2
    assert "missing" in capsys.readouterr().err
