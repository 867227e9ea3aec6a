"""e4e encoder (encoder4editing, pSp checkpoint layout): layouts, loading, numerics, errors.

The published files hold ~270 M encoder values, so the reference (tests/data/reference/e4e)
fills the authors' real-size encoder by a rule (`fill_state` of its make_reference.py, replayed
here) and stores only inputs and the w+ their pSp returned.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import REFERENCE, load_reference
from core.checkpoints import write_safetensors
from core.errors import UserError
from core.models import FAMILIES, load_model
from core.models.e4e import (E4EEncoder, StyleHead, e4e_decoder_state, e4e_from_checkpoint,
                             e4e_input, load_e4e, n_styles_for)

E4E_REF = REFERENCE / "e4e"
TOL = 1e-4
SIZES = {18: 1024, 16: 512, 14: 256}
_spec = importlib.util.spec_from_file_location("e4e_make_reference", E4E_REF / "make_reference.py")
make_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_reference)  # only its fill rule is used (no authors' code)


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a.float() - b.float()).abs().max())


def manifest(n_styles: int) -> dict:
    return json.loads((E4E_REF / f"manifest-e4e-{n_styles}.json").read_text())


def official_checkpoint(ref: dict, filled: dict[str, torch.Tensor] | None = None) -> dict:
    """A checkpoint dict in the published layout, the encoder filled by the reference rule
    (the coach's save dict: state_dict with encoder.* and decoder.* keys, latent_avg, opts).
    The rule depends only on a key and its shape, so a smaller encoder's tensors can be taken
    from a filled larger one (`filled`: encoder keys without prefix)."""
    shapes = {k: tuple(v) for k, v in manifest(ref["n_styles"])["state_dict"].items()}
    if filled is None:
        filled = make_reference.fill_state(shapes)
    assert all(tuple(filled[k].shape) == s for k, s in shapes.items())
    state = {f"encoder.{k}": filled[k] for k in sorted(shapes)}
    state["decoder.style.1.weight"] = torch.randn(8, 8)  # a few stand-ins for the generator
    state["decoder.noises.noise_0"] = torch.zeros(1, 1, 4, 4)
    opts = {"encoder_type": "Encoder4Editing", "stylegan_size": ref["stylegan_size"],
            "dataset_type": ref["dataset_type"], "start_from_latent_avg": True, "lpips_lambda": 0.8,
            "checkpoint_path": None, "device": "cuda:0", "exp_dir": "experiment/x"}
    return {"state_dict": state, "latent_avg": ref["latent_avg"], "opts": opts}


def inputs(run: dict) -> torch.Tensor:
    return run["pixels"].float() / 127.5 - 1


@pytest.fixture(scope="module")
def io() -> dict:
    return load_reference(E4E_REF / "tiny-io.pt")


@pytest.fixture(scope="module")
def ffhq_ckpt(io) -> dict:
    return official_checkpoint(io["ffhq"])


@pytest.fixture(scope="module")
def ffhq_file(ffhq_ckpt, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("e4e") / "e4e_ffhq_encode.pt"
    torch.save(ffhq_ckpt, path)
    return path


@pytest.mark.parametrize("n_styles", [18, 16, 14])
def test_state_dict_matches_published_manifest(n_styles):
    ref = manifest(n_styles)
    assert ref["config"]["n_styles"] == n_styles == n_styles_for(ref["config"]["stylegan_size"])
    with torch.device("meta"):
        model = E4EEncoder(n_styles)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == ref["state_dict"]
    assert list(ours) == list(ref["state_dict"])  # same order too (the authors' modules)
    assert "latent_avg" not in ours  # the file keeps it outside the state dict


def test_published_file_matches_the_authors(ffhq_file, io):
    """SAM's faces call, through the registry door on the file as published: a real-size
    256x256 input and a 64x64 one."""
    ref = io["ffhq"]
    assert "e4e" in FAMILIES
    model = load_model("e4e", ffhq_file, {"n_styles": 18})
    assert isinstance(model, E4EEncoder) and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    assert {t.device.type for t in model.state_dict().values()} == {"cpu"}  # nothing left on meta
    assert model.n_styles == 18 and model.input_size == (256, 256)
    assert torch.equal(model.latent_avg, ref["latent_avg"])
    with torch.inference_mode():
        for run in ref["runs"]:
            w_plus = model(inputs(run))
            assert max_err(w_plus, run["w_plus"]) <= TOL
            assert max_err(w_plus - model.latent_avg, run["codes"]) <= TOL


@pytest.mark.parametrize("domain, input_size", [("cars", (192, 256)), ("cats", (256, 256))])
def test_other_domains_match_the_authors(ffhq_ckpt, io, domain, input_size):
    ref = io[domain]
    filled = {k[len("encoder."):]: v for k, v in ffhq_ckpt["state_dict"].items()}
    model = e4e_from_checkpoint(official_checkpoint(ref, filled))
    assert model.n_styles == ref["n_styles"] and model.input_size == input_size
    with torch.inference_mode():
        for run in ref["runs"]:  # cars: 48x64, the 192x256 aspect ratio
            assert max_err(model(inputs(run)), run["w_plus"]) <= TOL


def test_latent_avg_variants(ffhq_ckpt, io):
    """pSp adds latent_avg.repeat(B, 1, 1): a [512] vector goes to every w; with
    start_from_latent_avg off (or no latent_avg and no opts) nothing is added. The network's
    own codes are checked above, so they are stubbed here."""
    codes = io["ffhq"]["runs"][1]["codes"]
    x = torch.zeros(1, 3, 64, 64)
    avg = torch.linspace(-1, 1, 512)

    def w_plus(ckpt: dict) -> torch.Tensor:
        model = e4e_from_checkpoint(ckpt)
        model.codes = lambda image: codes
        return model(x)

    for stored in (avg, avg[None], avg.expand(18, 512).clone(), avg.expand(1, 18, 512).clone()):
        assert torch.equal(w_plus({**ffhq_ckpt, "latent_avg": stored}), codes + avg)
    no_avg = {**ffhq_ckpt, "opts": {**ffhq_ckpt["opts"], "start_from_latent_avg": False}}
    assert torch.equal(w_plus(no_avg), codes)
    assert torch.equal(w_plus({k: v for k, v in ffhq_ckpt.items() if k not in ("latent_avg", "opts")}), codes)
    namespace = {**ffhq_ckpt, "opts": argparse.Namespace(**ffhq_ckpt["opts"])}
    assert torch.equal(w_plus(namespace), codes + ffhq_ckpt["latent_avg"])


def test_input_size_from_the_file_or_the_config(ffhq_ckpt):
    assert e4e_from_checkpoint(ffhq_ckpt).input_size == (256, 256)
    cars_opts = {**ffhq_ckpt["opts"], "dataset_type": "cars_encode"}
    assert e4e_from_checkpoint({**ffhq_ckpt, "opts": cars_opts}).input_size == (192, 256)
    assert e4e_from_checkpoint(ffhq_ckpt, input_size=[200, 256]).input_size == (200, 256)  # JSON list


def test_decoder_state_is_the_generator_part(ffhq_ckpt, tmp_path):
    assert set(e4e_decoder_state(ffhq_ckpt)) == {"style.1.weight", "noises.noise_0"}
    assert set(e4e_decoder_state(fake_e4e(tmp_path / "fake.pt"))) == {"style.1.weight"}


def test_wrong_checkpoint_contents_are_user_errors(ffhq_ckpt):
    with pytest.raises(UserError, match="encodes 18 styles, not the 16"):
        e4e_from_checkpoint(ffhq_ckpt, n_styles=16)
    with pytest.raises(UserError, match="GradualStyleEncoder"):
        e4e_from_checkpoint({**ffhq_ckpt, "opts": {**ffhq_ckpt["opts"], "encoder_type": "GradualStyleEncoder"}})
    with pytest.raises(UserError, match="stylegan_size 512"):
        e4e_from_checkpoint({**ffhq_ckpt, "opts": {**ffhq_ckpt["opts"], "stylegan_size": 512}})
    with pytest.raises(UserError, match="latent_avg has shape"):
        e4e_from_checkpoint({**ffhq_ckpt, "latent_avg": torch.zeros(16, 512)})
    with pytest.raises(UserError, match="no 'latent_avg'"):
        e4e_from_checkpoint({k: v for k, v in ffhq_ckpt.items() if k != "latent_avg"})
    with pytest.raises(UserError, match="input_size"):
        e4e_from_checkpoint(ffhq_ckpt, input_size=(512, 512))
    state = dict(ffhq_ckpt["state_dict"])
    del state["encoder.body.20.res_layer.5.fc1.weight"]
    with pytest.raises(UserError, match="does not hold an e4e"):
        e4e_from_checkpoint({**ffhq_ckpt, "state_dict": state})
    state = {k: v for k, v in ffhq_ckpt["state_dict"].items() if not k.startswith("encoder.styles.5.")}
    with pytest.raises(UserError, match="incomplete"):
        e4e_from_checkpoint({**ffhq_ckpt, "state_dict": state})


def fake_e4e(path: Path, n_styles: int = 14, opts=None) -> Path:
    """A small file with e4e-like keys (wrong shapes): enough to reach the checks."""
    state = {"encoder.input_layer.0.weight": torch.zeros(1), "decoder.style.1.weight": torch.zeros(1)}
    state.update({f"encoder.styles.{i}.linear.weight": torch.zeros(1) for i in range(n_styles)})
    torch.save({"state_dict": state, "latent_avg": torch.zeros(n_styles, 512),
                "opts": opts if opts is not None else {"stylegan_size": SIZES[n_styles]}}, path)
    return path


def test_wrong_files_are_user_errors(tmp_path, tiny_sg2_file):
    with pytest.raises(UserError, match="not an e4e"):
        load_e4e(tiny_sg2_file)  # a rosinality StyleGAN2 file
    with pytest.raises(UserError, match="not an e4e"):
        load_model("e4e", tiny_sg2_file, {})
    fake = fake_e4e(tmp_path / "fake.pt")
    with pytest.raises(UserError, match="encodes 14 styles, not the 18"):
        load_model("e4e", fake, {"n_styles": 18})
    with pytest.raises(UserError, match="does not hold an e4e IR-SE-50 encoder with 14 styles"):
        load_e4e(fake)
    ns = fake_e4e(tmp_path / "ns.pt", 16, argparse.Namespace(stylegan_size=512, encoder_type="Encoder4Editing"))
    with pytest.raises(UserError, match="with 16 styles"):  # read safely, then the shapes disagree
        load_e4e(ns)
    with pytest.raises(UserError):  # an unknown config key
        load_model("e4e", fake, {"size": 256})
    copy = write_safetensors(torch.load(fake, weights_only=True), tmp_path / "fake.safetensors",
                             ("state_dict", "latent_avg", "opts"))  # our Hub copy's format
    with pytest.raises(UserError, match="does not hold an e4e IR-SE-50 encoder with 14 styles"):
        load_e4e(copy)
    assert set(e4e_decoder_state(copy)) == {"style.1.weight"}
    broken = tmp_path / "broken.pt"
    broken.write_bytes(fake.read_bytes()[:200])
    with pytest.raises(UserError, match="truncated or corrupt"):
        load_e4e(broken)
    with pytest.raises(UserError, match="not found"):
        load_e4e(tmp_path / "missing.pt")


def test_inputs_the_encoder_cannot_take_raise():
    head = StyleHead(16)
    torch.nn.init.normal_(head.linear.weight)
    with pytest.raises(ValueError, match="too large"):  # 32x32 c3 = a 512 px image
        head(torch.randn(1, 512, 32, 32))
    assert head(torch.randn(2, 512, 16, 16)).shape == (2, 512)
    with torch.device("meta"):
        model = E4EEncoder(14)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model(torch.zeros(1, 1, 64, 64, device="meta"))


def test_e4e_input_is_the_authors_pil_resize():
    """Their Resize((256, 256)) on a PIL image is `PIL.Image.resize(..., BILINEAR)` (which
    antialiases) before ToTensor/Normalize(0.5, 0.5); e4e_input does it on the [-1, 1] tensor.
    Plain bilinear interpolation would alias (a 1024 px face shrinks 4x)."""
    g = torch.Generator().manual_seed(3)
    smooth = torch.nn.functional.interpolate(torch.rand(1, 3, 32, 24, generator=g), size=(1024, 768),
                                             mode="bicubic", align_corners=False)
    pixels = (smooth + 0.1 * torch.rand(1, 3, 1024, 768, generator=g)).clamp(0, 1).mul(255).round()
    image = Image.fromarray(pixels[0].permute(1, 2, 0).numpy().astype(np.uint8))
    x = pixels / 127.5 - 1
    for size in [(256, 256), (192, 256)]:
        resized = np.asarray(image.resize(size[::-1], Image.BILINEAR), dtype=np.float32)
        theirs = torch.from_numpy(resized).permute(2, 0, 1)[None] / 127.5 - 1
        ours = e4e_input(x, size)
        assert ours.shape == (1, 3, *size) and ours.abs().max() <= 1 + 1e-6
        assert max_err(ours, theirs) <= 1.5 / 127.5  # < 1 level measured: PIL rounds to uint8
        aliased = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
        assert max_err(aliased, theirs) > 5 * max_err(ours, theirs)
    assert e4e_input(x[..., :64, :64], 256).shape == (1, 3, 256, 256)  # enlarging: plain bilinear
    same = x[..., :256, :256]
    assert e4e_input(same, (256, 256)) is same
