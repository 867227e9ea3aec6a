"""scripts/publish_weights.py: the safetensors copy keeps only inference parts, loads to the
original's exact outputs through the real Hub client (pre-filled offline cache), and the
upload step (a recording fake of HfApi) pins the printed entry to the commit it made."""
from __future__ import annotations

import hashlib
import importlib
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open

from helpers import (REFERENCE, ROOT, TINY_SG2_CONFIG, load_reference, seed_hub_cache,
                      tiny_sg2_entry, write_registry)
from core import hub
from core.models import load_model
from scripts import publish_weights as pw

REPO = "someone/tiny-copy"
OID = "ab" * 20


@pytest.fixture()
def smg_file(tmp_path: Path) -> Path:
    """The tiny StyleMapGAN with training state added, as the authors' files hold it."""
    ckpt = load_reference(REFERENCE / "stylemapgan" / "tiny.pt")
    ckpt["discriminator"] = {"convs.0.0.weight": torch.randn(4, 3, 1, 1)}
    ckpt["d_optim"] = {"state": {}, "param_groups": [{"lr": 0.002, "betas": (0.0, 0.99)}]}
    path = tmp_path / "tiny-smg.pt"
    torch.save(ckpt, path)
    return path


@pytest.fixture()
def registry(tmp_path: Path, smg_file: Path, tiny_sg2_file: Path) -> Path:
    smg = {"id": "tiny-smg", "arch": "stylemapgan", "config": {"size": 32}, "path": str(smg_file),
           "license": "CC BY-NC 4.0 (test)", "source": "naver-ai/StyleMapGAN (test)",
           "description": "tiny StyleMapGAN", "used_by": ["stylemap"]}
    odd = {"id": "odd", "arch": "biggan", "path": str(tmp_path / "none.pt")}
    return write_registry(tmp_path / "weights.json",
                          [smg, tiny_sg2_entry("tiny-sg2", tiny_sg2_file), odd])


def publish(registry: Path, out: Path, model_id: str, capsys, *extra: str):
    """(exit code, printed entry or None, stderr)."""
    code = pw.main([model_id, "--repo", REPO, "--weights", str(registry), "--out", str(out), *extra])
    cap = capsys.readouterr()
    return code, json.loads(cap.out) if code == 0 else None, cap.err


def load_from_hub(tmp_path: Path, hub_cache: Path, entry: dict, file: Path, commit: str):
    """The printed entry as a registry, its file in an offline Hub cache: the app's own path."""
    seed_hub_cache(hub_cache, entry["hub"]["repo_id"], {entry["hub"]["filename"]: file.read_bytes()},
                   commit=commit)
    e = hub.load_registry(write_registry(tmp_path / "hub-weights.json", [entry])).get(entry["id"])
    local = hub.fetch(e)  # checks the printed sha256 and size
    assert hub_cache in local.parents
    return load_model(e.arch, local, e.config)


class FakeApi:
    """Records what HfApi was asked to do; `fail` makes create_repo raise it."""
    calls: list = []
    fail: BaseException | None = None

    def create_repo(self, repo_id, **kw):
        FakeApi.calls.append(("create_repo", repo_id, kw))
        if FakeApi.fail is not None:
            raise FakeApi.fail

    def create_branch(self, repo_id, **kw):
        FakeApi.calls.append(("create_branch", repo_id, kw))

    def upload_folder(self, **kw):
        FakeApi.calls.append(("upload_folder", kw["repo_id"], kw))
        return SimpleNamespace(oid=OID, commit_url=f"https://huggingface.co/{kw['repo_id']}/commit/{OID}")


@pytest.fixture()
def fake_api(monkeypatch):
    import huggingface_hub

    FakeApi.calls, FakeApi.fail = [], None
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    return FakeApi


def test_stylemapgan_copy_drops_training_state_and_loads_bit_identically(
        tmp_path, registry, smg_file, hub_cache, capsys):
    out = tmp_path / "out"
    code, entry, err = publish(registry, out, "tiny-smg", capsys, "--no-upload")
    assert code == 0, err
    file = out / "tiny-smg.safetensors"
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", file.name]
    with safe_open(str(file), framework="pt") as f:
        keys, meta = list(f.keys()), f.metadata()
    assert keys and all(k.startswith(("g_ema.", "e_ema.")) for k in keys)
    assert "discriminator" not in meta["extras"] and "d_optim" not in meta["extras"]
    assert json.loads(meta["extras"])["train_args"]["latent_channel_size"] == 8

    card = (out / "README.md").read_text()
    front = card.split("---")[1]
    assert "license: cc-by-nc-4.0" in front and "- stylemapgan" in front
    assert "naver-ai/StyleMapGAN (test)" in card and "CC BY-NC 4.0 (test)" in card
    assert "converted copy" in card and "safetensors" in card
    assert "dropped: `d_optim`, `discriminator`" in card
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "stylemapgan" and config["config"] == {"size": 32}
    assert config["train_args"]["size"] == 32 and config["train_args"]["normalize_mode"] == "LayerNorm"

    assert entry["hub"] == {"repo_id": REPO, "filename": file.name, "revision": "main",
                            "repo_type": "model"}
    assert entry["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
    assert entry["size"] == file.stat().st_size
    assert entry["source"] == f"naver-ai/StyleMapGAN (test); Hub copy {REPO} made with scripts/publish_weights.py"
    assert (entry["id"], entry["arch"], entry["used_by"]) == ("tiny-smg", "stylemapgan", ["stylemap"])

    copy = load_from_hub(tmp_path, hub_cache, entry, file, "c" * 40)
    original = load_model("stylemapgan", smg_file, {"size": 32})
    g = torch.Generator().manual_seed(0)
    z, img = torch.randn(2, 8, generator=g), torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    with torch.inference_mode():
        assert torch.equal(copy.G(z), original.G(z))
        assert torch.equal(copy.E(img), original.E(img))


def test_stylegan2_copy_keeps_latent_avg_and_nvidia_licence(tmp_path, registry, tiny_sg2_file, capsys):
    out = tmp_path / "out"
    code, entry, err = publish(registry, out, "tiny-sg2", capsys, "--no-upload")
    assert code == 0, err
    file = out / "tiny-sg2.safetensors"
    with safe_open(str(file), framework="pt") as f:
        keys = set(f.keys())
    assert "latent_avg" in keys and all(k.startswith("g_ema.") for k in keys - {"latent_avg"})
    front = (out / "README.md").read_text().split("---")[1]
    assert "license: other" in front and "license_name: nvidia-source-code-license-nc" in front
    assert "the file held nothing else" in (out / "README.md").read_text()
    assert entry["config"] == TINY_SG2_CONFIG and entry["sha256"] == hub.sha256_of(file)
    copy, original = (load_model("stylegan2", p, TINY_SG2_CONFIG) for p in (file, tiny_sg2_file))
    z = torch.randn(2, TINY_SG2_CONFIG["style_dim"], generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert torch.equal(copy(z), original(z))
        assert torch.equal(copy(z, truncation=0.5), original(z, truncation=0.5))  # latent_avg


def test_upload_creates_the_repo_and_pins_the_commit(tmp_path, registry, hub_cache, fake_api, capsys):
    out = tmp_path / "out"
    code, entry, err = publish(registry, out, "tiny-smg", capsys, "--private")
    assert code == 0, err
    (c_name, c_repo, c_kw), (u_name, u_repo, u_kw) = fake_api.calls
    assert (c_name, c_repo) == ("create_repo", REPO)
    assert c_kw["repo_type"] == "model" and c_kw["private"] is True and c_kw["exist_ok"] is True
    assert (u_name, u_repo) == ("upload_folder", REPO)
    assert Path(u_kw["folder_path"]) == out and u_kw["commit_message"]
    assert set(u_kw["allow_patterns"]) == {"tiny-smg.safetensors", "config.json", "README.md"}
    assert entry["hub"]["revision"] == OID
    # the pinned commit resolves in the Hub cache like any other
    load_from_hub(tmp_path, hub_cache, entry, out / "tiny-smg.safetensors", OID)


def test_upload_to_a_branch_creates_it(tmp_path, registry, fake_api, capsys):
    code, entry, err = publish(registry, tmp_path / "out", "tiny-sg2", capsys, "--revision", "v1")
    assert code == 0, err
    assert [c[0] for c in fake_api.calls] == ["create_repo", "create_branch", "upload_folder"]
    assert fake_api.calls[1][2]["branch"] == "v1" and fake_api.calls[2][2]["revision"] == "v1"
    assert fake_api.calls[1][2]["repo_type"] == "model"


def _http_module():
    for name in ("httpx2", "httpx"):  # huggingface_hub's HTTP client
        try:
            return importlib.import_module(name)
        except ImportError:
            pass
    pytest.skip("no httpx")


def _failure(kind: str) -> BaseException:
    from huggingface_hub.errors import HfHubHTTPError

    if kind == "oserror":
        return OSError("Token is required but no token found")
    http = _http_module()
    request = http.Request("POST", "https://huggingface.co/api/repos/create")
    if kind == "connect":
        return http.ConnectError("connection refused", request=request)
    return HfHubHTTPError("401 Client Error: Unauthorized", response=http.Response(401, request=request))


@pytest.mark.parametrize("kind", ["http401", "oserror", "connect"])
def test_upload_failure_keeps_the_files_and_says_how_to_log_in(tmp_path, registry, fake_api, capsys, kind):
    fake_api.fail = _failure(kind)
    out = tmp_path / "out"
    code, entry, err = publish(registry, out, "tiny-smg", capsys)
    assert code == 1 and entry is None
    assert "HF_TOKEN" in err and "hf auth login" in err and str(out) in err
    assert (out / "tiny-smg.safetensors").is_file() and (out / "README.md").is_file()
    assert [c[0] for c in fake_api.calls] == ["create_repo"]


def test_a_copy_that_differs_is_not_uploaded(tmp_path, registry, fake_api, monkeypatch, capsys):
    real_write = pw.write_safetensors

    def corrupting(ckpt, path, keep):
        g = dict(ckpt["g_ema"])
        name = next(iter(g))
        g[name] = g[name] + 1e-3
        return real_write(dict(ckpt, g_ema=g), path, keep)

    monkeypatch.setattr(pw, "write_safetensors", corrupting)
    out = tmp_path / "out"
    code, entry, err = publish(registry, out, "tiny-smg", capsys)
    assert code == 2 and entry is None
    assert "does not load to the original" in err and "tiny-smg" in err
    assert fake_api.calls == [] and not (out / "tiny-smg.safetensors").exists()


def test_unknown_architecture_and_bad_repo_are_refused(tmp_path, registry, capsys):
    code, _, err = publish(registry, tmp_path / "out", "odd", capsys, "--no-upload")
    assert code == 2 and "'biggan'" in err and "stylegan2" in err and "stylemapgan" in err
    assert not (tmp_path / "out").exists()
    code, _, err = publish(registry, tmp_path / "out", "nope", capsys, "--no-upload")
    assert code == 2 and "Unknown model 'nope'" in err
    with pytest.raises(SystemExit):
        pw.main(["tiny-smg", "--repo", "no-slash", "--weights", str(registry)])
    assert "USER/NAME" in capsys.readouterr().err


def test_registry_entry_without_a_source():
    e = hub.WeightEntry(id="x", arch="stylegan2", config={"size": 8}, used_by=("generate",))
    got = pw.registry_entry(e, REPO, "x.safetensors", OID, "0" * 64, 12)
    assert got["source"] == f"Hub copy {REPO} made with scripts/publish_weights.py"
    assert got["hub"]["revision"] == OID and got["size"] == 12 and got["used_by"] == ["generate"]
    parsed = hub._parse_entry(got, Path("."), "test")
    assert parsed.hub == hub.HubSource(REPO, "x.safetensors", OID, "model")


def test_runs_as_a_module():
    res = subprocess.run([sys.executable, "-m", "scripts.publish_weights", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "--no-upload" in res.stdout


@pytest.mark.parametrize("arch,file,config", [
    ("proggan", REFERENCE / "proggan" / "tiny.pth", {"resolution": 32}),
    ("biggan-deep", REFERENCE / "biggan" / "tiny-pytorch_model.bin",
     json.loads((REFERENCE / "biggan" / "tiny-config.json").read_text())),
])
def test_bare_state_dict_models_publish_and_load_bit_identically(tmp_path, capsys, arch, file, config):
    """ProGAN and BigGAN-deep files are bare state dicts: the copy wraps them as
    {"state_dict": ...} and must load to the same tensors through the same loader."""
    registry = write_registry(tmp_path / "weights.json", [
        {"id": f"tiny-{arch}", "arch": arch, "config": config, "path": str(file),
         "license": "test", "source": "tests", "used_by": ["collage"]}])
    out = tmp_path / "out"
    code, entry, err = publish(registry, out, f"tiny-{arch}", capsys, "--no-upload")
    assert code == 0, err
    copy = out / f"tiny-{arch}.safetensors"
    with safe_open(str(copy), framework="pt") as f:
        assert all(k.startswith("state_dict.") for k in f.keys())
    a, b = (load_model(arch, p, config) for p in (file, copy))
    assert a.state_dict().keys() == b.state_dict().keys()
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert entry["config"] == config


def test_registry_entry_keeps_the_pairing_and_meta():
    """A Hub copy of a paired file keeps its generator and tab metadata, and parses back."""
    from core.hub import _parse_entry

    e = hub.WeightEntry("car-reg", "regressor", {"resnet_depth": 34}, generator="sg2-car",
                        meta=hub.EntryMeta(content=(512, 384)), path=Path("x.pt"), license="MIT")
    raw = pw.registry_entry(e, REPO, "x.safetensors", OID, "0" * 64, 12)
    assert raw["generator"] == "sg2-car" and raw["meta"] == {"content": [512, 384]}
    back = _parse_entry(raw, Path("."), "test")
    assert back.generator == "sg2-car" and back.meta.content == (512, 384) and back.config == e.config
