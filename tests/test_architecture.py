"""The shape ARCHITECTURE.md describes: imports run one way, tabs are declared once, heavy
libraries load on use, every generator family implements the protocol."""
from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from helpers import ROOT

from demos import TABS


def imported_modules(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def tab_files(module: str) -> list:
    """A tab's source files: its module, or every file of its package."""
    path = ROOT / module.replace(".", "/")
    return sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]


def test_no_tab_imports_another_tab():
    tab_modules = {t.module for t in TABS}
    for tab in TABS:
        for path in tab_files(tab.module):
            others = {m for m in imported_modules(path) for other in tab_modules - {tab.module}
                      if m == other or m.startswith(other + ".")}
            assert not others, f"{path.relative_to(ROOT)} imports {others}: shared code belongs in core/"


MAX_TAB_FILE_LINES = 520  # a file a newcomer reads in one go


@pytest.mark.parametrize("tab", [t for t in TABS if t.id != "models"], ids=lambda t: t.id)
def test_a_tab_is_a_package_whose_engine_needs_no_gradio(tab):
    """demos/<tab>/: engine.py (models and tensors, importable with Gradio blocked, so bench and
    scripts use it without a UI), handlers.py, ui.py (`build_tab`); no file over ~500 lines."""
    package = ROOT / tab.module.replace(".", "/")
    assert (package / "__init__.py").is_file() and (package / "engine.py").is_file(), tab.module
    assert (package / "ui.py").is_file(), tab.module
    for path in tab_files(tab.module):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines <= MAX_TAB_FILE_LINES, f"{path.relative_to(ROOT)}: {lines} lines"
    code = (f"import sys; sys.modules['gradio'] = None; import {tab.module}.engine; "
            "print('gradio' in sys.modules and sys.modules['gradio'] is not None)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def test_core_never_imports_a_tab_or_the_app():
    for path in (ROOT / "core").rglob("*.py"):
        bad = {m for m in imported_modules(path) if m.split(".")[0] in ("demos", "app", "tests")}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_every_tab_module_has_a_builder():
    ids = [t.id for t in TABS]
    assert len(ids) == len(set(ids))
    for tab in TABS:
        assert callable(getattr(tab.load(), "build_tab", None)), tab.module


def test_building_the_app_loads_no_heavy_library():
    """The app starts without torchvision, lpips, scipy or any model family's code: they are
    imported when a tab first uses them."""
    code = ("import sys, app; app.build_app(device='cpu'); "
            "heavy = ['torchvision', 'lpips', 'scipy', 'core.models.biggan', 'core.models.e4e', "
            "'core.models.invertibility', 'core.models.regressor', 'core.models.proggan']; "
            "print([m for m in heavy if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


TINY_FILES = {  # the reference tiny checkpoints, loaded through the registry's loaders
    "stylegan2": ("stylegan2/tiny.pt", {"size": 32, "style_dim": 32, "n_mlp": 2,
                                        "channel_multiplier": 2, "channel_max": 16}),
    "stylegan2-genforce": ("genforce/tiny.pth", {"size": 32, "w_space_dim": 16, "mapping_layers": 3,
                                                 "fmaps_max": 8}),
    "stylemapgan": ("stylemapgan/tiny.pt", {}),
    "proggan": ("proggan/tiny.pth", {}),
    "biggan-deep": ("biggan/tiny-pytorch_model.bin", None),  # config: tiny-config.json
    "sngan": ("sngan/tiny-gen.npz", {"ch": 1, "dim_z": 8, "n_classes": 3, "size": 64}),
}
CONDITIONAL = {"biggan-deep", "sngan"}


@pytest.mark.parametrize("family", sorted(TINY_FILES))
def test_every_generator_family_implements_the_protocol(family):
    """Seeds -> latents -> pictures the same way for every family: deterministic per seed,
    one latent per seed whatever the batch, pictures [B, 3, size, size] in [-1, 1]."""
    import json

    import torch

    from core.models import FAMILIES, load_model
    from core.models.generator import Generator
    from helpers import REFERENCE

    file, config = TINY_FILES[family]
    if config is None:
        config = json.loads((REFERENCE / "biggan" / "tiny-config.json").read_text())
    G = load_model(family, REFERENCE / file, config)
    assert isinstance(G, Generator)
    classes = torch.tensor([1, 2]) if family in CONDITIONAL else None
    z = G.sample_latents([3, 4])
    assert torch.equal(z[1:], G.sample_latents([4]))  # sample i does not depend on the batch
    assert not torch.equal(z[0], z[1])
    pictures = G.render(z, 1.0, classes)
    assert pictures.shape == (2, 3, G.size, G.size) and pictures.dtype == torch.float32
    assert pictures.abs().max() <= 1
    assert torch.equal(pictures, G.render(G.sample_latents([3, 4]), 1.0, classes))
    if family in CONDITIONAL:
        with pytest.raises(ValueError, match="class-conditional"):
            G.render(z)
    else:
        with pytest.raises(ValueError, match="not class-conditional"):
            G.render(z, 1.0, torch.tensor([1, 2]))
    if config and FAMILIES[family].image_size_key in config:
        assert G.size == config[FAMILIES[family].image_size_key]
