"""SAM's invertibility predictor: published layout, authors' numerics, strict loading.

The real ResNet-101 weights are too big to store, so the reference (made by the authors' code,
tests/data/reference/invertibility/) gives the rule that fills every tensor; it is rebuilt here,
saved in the published dict layout and loaded by our loader.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import core.models.invertibility
from helpers import REFERENCE, load_reference
from core.checkpoints import write_safetensors
from core.errors import UserError
from core.models import load_model
from core.models.invertibility import (SPACES, InvertibilityPredictor, load_invertibility)

INV_REF = REFERENCE / "invertibility"
TOL = 1e-4  # relative to the largest reference value (at least 1)


def fill(seed: int, index: int, key: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """make_reference.py's rule (README.md): one seeded generator per tensor."""
    if not dtype.is_floating_point:
        return torch.zeros(shape, dtype=dtype)
    g = torch.Generator().manual_seed(seed + index)
    if key.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=g)
    noise = torch.randn(shape, generator=g)
    if len(shape) >= 2:
        return noise * (2 / noise[0].numel()) ** 0.5
    return 0.5 + 0.25 * noise if key.endswith(".weight") else 0.1 * noise


def meta_layout() -> dict[str, dict[str, torch.Tensor]]:
    with torch.device("meta"):
        return InvertibilityPredictor().checkpoint_state()


@pytest.fixture(scope="module")
def io() -> dict:
    return load_reference(INV_REF / "tiny-io.pt")


@pytest.fixture(scope="module")
def ckpt(io) -> dict[str, dict[str, torch.Tensor]]:
    """The reference weights in the published dict layout (parts in order, keys sorted)."""
    out, index = {}, 0
    for part, state in meta_layout().items():
        out[part] = {}
        for key in sorted(state):
            out[part][key] = fill(io["fill_seed"], index, key, tuple(state[key].shape), state[key].dtype)
            index += 1
    return out


@pytest.fixture(scope="module")
def ckpt_file(ckpt, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sam") / "invertibility_tiny_sg2.pt"
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def model(ckpt_file) -> InvertibilityPredictor:
    return load_invertibility(ckpt_file)


def test_layout_matches_authors_manifest():
    manifest = json.loads((INV_REF / "manifest-invertibility.json").read_text())
    ours = {part: {k: list(v.shape) for k, v in state.items()} for part, state in meta_layout().items()}
    assert list(ours) == ["sd_base", *SPACES] == list(manifest)
    for part in manifest:
        assert ours[part] == manifest[part], part
        assert list(ours[part]) == list(manifest[part]), part  # same module order too
    assert len(ours["sd_base"]) == 680


def test_matches_authors_outputs(model, io):
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    with torch.inference_mode():
        base = model.base(io["x"])
        maps = model(io["x"])
    assert float((base - io["base"]).abs().max()) <= TOL * max(1.0, float(io["base"].abs().max()))
    assert list(maps) == list(SPACES) == io["spaces"]
    for name in SPACES:
        ref = io["maps"][name]
        assert maps[name].shape == ref.shape == (2, 1, 65, 90), name
        err = float((maps[name] - ref).abs().max())  # measured <= 1.5e-6 (F8, max 1.31)
        assert err <= TOL * max(1.0, float(ref.abs().max())), (name, err)


def test_any_input_size_gives_full_size_non_negative_maps(model):
    x = torch.rand(1, 3, 33, 47, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.inference_mode():
        maps = model(x)
    for name, m in maps.items():
        assert m.shape == (1, 1, 33, 47), name
        assert m.dtype == torch.float32 and bool((m >= 0).all()) and bool(m.isfinite().all())
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model(x[:, :1])


def test_missing_parts_are_named(tmp_path, ckpt):
    heads = {name: ckpt[name] for name in SPACES}
    no_head = tmp_path / "no_head.pt"
    torch.save({"sd_base": {}, **{n: h for n, h in heads.items() if n != "F6"}}, no_head)
    with pytest.raises(UserError, match=r"lacks 'F6'"):
        load_invertibility(no_head)
    no_base = tmp_path / "no_base.pt"
    torch.save(heads, no_base)
    with pytest.raises(UserError, match=r"lacks 'sd_base'"):
        load_invertibility(no_base)
    torch.save({**heads, "sd_base": torch.zeros(1)}, no_base)
    with pytest.raises(UserError, match=r"'sd_base' is not a state dict"):
        load_invertibility(no_base)


@pytest.mark.parametrize("change, message", [
    ("extra", r"entry 'sd_base' has 1 unexpected key\(s\): backbone\.fc\.weight"),
    ("missing", r"entry 'F8' has 1 missing key\(s\): m\.1\.running_var"),
    ("shape", r"entry 'W\+' does not fit .*size mismatch for m\.3\.weight"),
], ids=["extra", "missing", "shape"])
def test_wrong_keys_or_shapes_raise_user_error(monkeypatch, ckpt, change, message):
    # full-size variants of the good file come straight from memory (saving 240 MB per case
    # would only re-test torch.save); the file-reading path is covered above
    bad = {part: dict(state) for part, state in ckpt.items()}
    if change == "extra":
        bad["sd_base"]["backbone.fc.weight"] = torch.zeros(1000, 2048)
    elif change == "missing":
        del bad["F8"]["m.1.running_var"]
    else:
        bad["W+"]["m.3.weight"] = torch.zeros(4, 2, 1, 1)
    monkeypatch.setattr(core.models.invertibility, "read_checkpoint", lambda path, map_location="cpu": bad)
    with pytest.raises(UserError, match=message):
        load_invertibility("invertibility_bad_sg2.pt")


def test_num_batches_tracked_may_be_absent(monkeypatch, ckpt):
    """torch's BatchNorm fills it in for a state dict without version metadata (a repacked
    plain dict), so the authors' loader accepts such a file: so does ours."""
    plain = {part: {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
             for part, state in ckpt.items()}
    monkeypatch.setattr(core.models.invertibility, "read_checkpoint", lambda path, map_location="cpu": plain)
    model = load_invertibility("invertibility_plain_sg2.pt")
    counters = [v for k, v in model.state_dict().items() if k.endswith("num_batches_tracked")]
    assert len(counters) == 113 + 5 and all(c.device.type == "cpu" and int(c) == 0 for c in counters)


def test_registry_loader_and_safetensors_copy(ckpt_file, ckpt, model, tmp_path):
    loaded = load_model("sam-invertibility", ckpt_file, {})
    assert isinstance(loaded, InvertibilityPredictor) and not loaded.training
    st = write_safetensors(ckpt, tmp_path / "invertibility.safetensors", keep=("sd_base", *SPACES))
    copy = load_invertibility(st)  # our safetensors copy: the same dict comes back
    for other in (loaded, copy):
        ours, theirs = model.checkpoint_state(), other.checkpoint_state()
        assert all(torch.equal(ours[p][k], theirs[p][k]) for p in ours for k in ours[p])
    bad = tmp_path / "bad.pt"
    torch.save({"W+": {}}, bad)
    with pytest.raises(UserError, match="lacks 'sd_base'"):
        load_model("sam-invertibility", bad, {})
