"""core.hub: the weights registry, fetching (local paths and the real Hub client against a
pre-filled offline cache), checksums and the `python -m core.hub` command line."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from helpers import ROOT, seed_hub_cache, tiny_sg2_entry, write_registry
from core import hub
from core.errors import UserError

BUNDLED = ROOT / "weights.json"


def hub_entry(model_id: str, repo_id: str = "org/repo", filename: str = "model.pt", **extra) -> dict:
    h = {"repo_id": repo_id, "filename": filename}
    h.update(extra.pop("hub_extra", {}))
    return {"id": model_id, "arch": "stylegan2", "hub": h, "sha256": None, "license": "test only",
            "source": "tests", **extra}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- the bundled registry ------------------------------------------------------------------
def test_bundled_registry_is_complete():
    raw = json.loads(BUNDLED.read_text())
    reg = hub.load_registry(BUNDLED)
    assert len(reg) == len(raw) > 0
    ids = reg.ids()
    assert len(ids) == len(set(ids)) == len(raw)
    for e in reg:
        assert e.license.strip() and e.source.strip(), e.id
        assert e.path is None, e.id  # nothing bundled points at a local file
        if e.hub is None:  # only models with no known Hub copy are fetched from their authors
            assert e.url is not None and e.arch in ("stylemapgan", "regressor", "proggan", "biggan-deep",
                                                  "sam-invertibility", "e4e", "edit-direction", "sngan",
                                                  "sngan-discriminator", "sngan-encoder",
                                                  "sngan-auxiliary", "face-parser", "ade20k-encoder",
                                                  "ade20k-decoder", "stylegan2-genforce"), e.id
            assert e.url.href.startswith("http") and e.url.filename.endswith((".pt", ".pth", ".bin", ".npy", ".npz")), e.id
        else:
            assert e.hub.repo_id and "/" in e.hub.repo_id and e.hub.filename, e.id
            assert e.origin().startswith("Hub ")
        assert e.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", e.sha256), e.id
    # the checkpoints whose Hub LFS pointers were read are pinned by sha256 and size
    for model_id in ("stylegan2-ffhq-1024", "stylegan2-car-512", "stylegan2-church-256",
                     "stylegan2-cat-256", "stylegan2-horse-256"):
        e = reg.get(model_id)
        assert e.sha256 is not None and isinstance(e.size, int) and e.size > 0, model_id


def test_bundled_registry_is_loadable_and_paired():
    """Every arch has a loader, every regressor names a registered generator, and the
    BigGAN-deep configs are the published config.json files."""
    import inspect

    from core.models import DATA_ARCHS, FAMILIES, STYLEGAN2_ARCHS
    from core.models.biggan import PUBLISHED_CONFIGS

    reg = hub.load_registry(BUNDLED)
    for e in reg:
        assert e.arch in FAMILIES or e.arch in DATA_ARCHS, e.id
        if e.arch in FAMILIES:  # config holds the loader's arguments and nothing else
            params = inspect.signature(FAMILIES[e.arch].load_function()).parameters
            if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
                assert set(e.config) <= set(params), (e.id, set(e.config) - set(params))
        if e.arch in ("sam-invertibility", "e4e", "edit-direction", "panda-factors"):
            assert reg.generator_of(e).arch in STYLEGAN2_ARCHS, e.id
        if e.arch == "regressor":
            assert reg.generator_of(e).arch in ("stylegan2", "proggan"), e.id
        if e.arch in ("stylegan2", "stylegan2-genforce", "stylemapgan", "proggan", "biggan-deep", "sngan"):
            assert e.image_size() in (128, 256, 512, 1024), e.id
        else:
            assert e.image_size() is None, e.id
    for model_id in reg.ids("biggan-deep"):
        assert reg.get(model_id).config == PUBLISHED_CONFIGS[model_id], model_id


def test_https_sources_come_before_plain_http_mirrors(monkeypatch):
    """A file served over https is fetched over https first; a plain-http copy is only a
    fallback mirror. ProGAN: GAN Dissection's https host, then the http one their code names."""
    reg = hub.load_registry(BUNDLED)
    for e in reg:
        if e.url is not None and e.url.href.startswith("http://"):
            assert not any(m.href.startswith("https://") for m in e.mirrors
                           if isinstance(m, hub.UrlSource)), e.id
    progans = [reg.get(i) for i in reg.ids("proggan")]
    assert len(progans) == 3
    for e in progans:
        assert e.url.href == f"https://dissect.csail.mit.edu/models/{e.url.filename}", e.id
        (http,) = e.alternatives()
        assert http.url.href == f"http://gandissect.csail.mit.edu/models/{e.url.filename}", e.id
        assert hub.url_cache_path(http) == hub.url_cache_path(e)  # one cached file either way
    tried = []  # the order fetch tries them in: https, and http only when https fails

    def fetch_from(entry, force, tqdm_class):
        tried.append(entry.url.href)
        if entry.url.href.startswith("https://"):
            raise UserError("unreachable")
        return Path("/nowhere/file.pth")

    monkeypatch.setattr(hub, "_fetch_from", fetch_from)
    monkeypatch.setattr(hub, "_remember_checksum", lambda entry, path: None)
    assert hub.fetch(progans[0]) == Path("/nowhere/file.pth")
    assert [href.split(":")[0] for href in tried] == ["https", "http"]


def test_bundled_stylegan2_configs():
    reg = hub.load_registry(BUNDLED)
    sg2 = [reg.get(i) for i in reg.ids("stylegan2")]
    assert sg2
    sizes = {e.config["size"] for e in sg2}
    assert sizes == {1024, 512, 256}
    for e in sg2:
        assert e.config["channel_multiplier"] == 2
        assert e.config["style_dim"] == 512 and e.config["n_mlp"] == 8
    assert reg.get("stylegan2-ffhq-1024").config["size"] == 1024


def test_default_registry_is_the_bundled_one(monkeypatch):
    monkeypatch.delenv(hub.WEIGHTS_ENV, raising=False)
    assert hub.load_registry().origin == str(BUNDLED)


# ---- load_registry errors ------------------------------------------------------------------
def test_missing_registry_file(tmp_path: Path):
    with pytest.raises(UserError, match="not found"):
        hub.load_registry(tmp_path / "nope.json")


def test_invalid_json(tmp_path: Path):
    p = tmp_path / "w.json"
    p.write_text("[{\"id\": ")
    with pytest.raises(UserError, match="not valid JSON"):
        hub.load_registry(p)


def test_registry_must_be_a_list(tmp_path: Path):
    p = tmp_path / "w.json"
    p.write_text(json.dumps({"id": "x", "arch": "stylegan2"}))
    with pytest.raises(UserError, match="list"):
        hub.load_registry(p)


def test_entry_must_be_an_object(tmp_path: Path):
    p = write_registry(tmp_path / "w.json", ["stylegan2-ffhq-1024"])
    with pytest.raises(UserError, match="JSON object"):
        hub.load_registry(p)


def test_entry_with_both_hub_and_path(tmp_path: Path):
    e = hub_entry("both", path="x.pt")
    with pytest.raises(UserError, match="exactly one of 'hub' or 'path'"):
        hub.load_registry(write_registry(tmp_path / "w.json", [e]))


def test_entry_with_neither_hub_nor_path(tmp_path: Path):
    e = hub_entry("neither")
    del e["hub"]
    with pytest.raises(UserError, match="exactly one"):
        hub.load_registry(write_registry(tmp_path / "w.json", [e]))


def test_entry_with_unknown_field(tmp_path: Path):
    e = hub_entry("typo", sha265=None)
    with pytest.raises(UserError, match="unknown fields.*sha265"):
        hub.load_registry(write_registry(tmp_path / "w.json", [e]))


@pytest.mark.parametrize("bad", ["abc", "g" * 64, "0" * 63, "0" * 65, 12345])
def test_entry_with_bad_sha256(tmp_path: Path, bad):
    e = hub_entry("badsha", sha256=bad)
    with pytest.raises(UserError, match="sha256"):
        hub.load_registry(write_registry(tmp_path / "w.json", [e]))


def test_uppercase_sha256_is_normalised(tmp_path: Path):
    digest = "ABCDEF" + "0" * 58
    reg = hub.load_registry(write_registry(tmp_path / "w.json", [hub_entry("up", sha256=digest)]))
    assert reg.get("up").sha256 == digest.lower()


def test_hub_source_needs_repo_and_filename(tmp_path: Path):
    e = hub_entry("nofile")
    del e["hub"]["filename"]
    with pytest.raises(UserError, match="repo_id and filename"):
        hub.load_registry(write_registry(tmp_path / "w.json", [e]))


def test_duplicate_ids(tmp_path: Path):
    p = write_registry(tmp_path / "w.json", [hub_entry("same"), hub_entry("same", filename="b.pt")])
    with pytest.raises(UserError, match="'same' appears twice"):
        hub.load_registry(p)


@pytest.mark.parametrize("field", ["id", "arch"])
def test_missing_required_field(tmp_path: Path, field):
    e = hub_entry("m")
    del e[field]
    with pytest.raises(UserError, match=f"lacks.*{field}"):
        hub.load_registry(write_registry(tmp_path / "w.json", [e]))


def test_hub_defaults(tmp_path: Path):
    reg = hub.load_registry(write_registry(tmp_path / "w.json", [hub_entry("d")]))
    e = reg.get("d")
    assert e.hub == hub.HubSource("org/repo", "model.pt", "main", "model")
    assert e.config == {} and e.used_by == () and e.size is None


def test_relative_path_resolves_against_registry_folder(tmp_path: Path, tiny_sg2_file: Path, monkeypatch):
    folder = tmp_path / "registry"
    (folder / "ckpt").mkdir(parents=True)
    target = folder / "ckpt" / "tiny.pt"
    target.write_bytes(tiny_sg2_file.read_bytes())
    p = write_registry(folder / "weights.json", [tiny_sg2_entry("rel", Path("ckpt/tiny.pt"))])
    monkeypatch.chdir(tmp_path)  # not the registry's folder
    e = hub.load_registry(p).get("rel")
    assert e.path == target.resolve()
    assert hub.fetch(e) == target.resolve()
    # also when the registry itself is named by a relative path
    e2 = hub.load_registry(Path("registry/weights.json")).get("rel")
    assert e2.path == target.resolve()


def test_absolute_path_is_kept(tiny_registry: Path, tiny_sg2_file: Path):
    e = hub.load_registry(tiny_registry).get("tiny-sg2")
    assert e.path == tiny_sg2_file
    assert e.origin() == f"local file {tiny_sg2_file}"


def test_env_var_names_the_registry(tmp_path: Path, tiny_registry: Path, monkeypatch):
    monkeypatch.setenv(hub.WEIGHTS_ENV, str(tiny_registry))
    assert hub.load_registry().ids() == ["tiny-sg2"]
    # an explicit path wins over the environment
    other = write_registry(tmp_path / "other.json", [hub_entry("other")])
    assert hub.load_registry(other).ids() == ["other"]
    monkeypatch.setenv(hub.WEIGHTS_ENV, str(tmp_path / "missing.json"))
    with pytest.raises(UserError, match="missing.json"):
        hub.load_registry()


# ---- Registry ------------------------------------------------------------------------------
def test_get_unknown_lists_known_ids(tmp_path: Path):
    p = write_registry(tmp_path / "w.json", [hub_entry("alpha"), hub_entry("beta", filename="b.pt")])
    reg = hub.load_registry(p)
    with pytest.raises(UserError) as info:
        reg.get("gamma")
    msg = str(info.value)
    assert "'gamma'" in msg and "alpha" in msg and "beta" in msg
    assert reg.get("beta").hub.filename == "b.pt"


def test_ids_filter_by_arch(tmp_path: Path):
    p = write_registry(tmp_path / "w.json", [
        hub_entry("a"), {**hub_entry("b", filename="b.bin"), "arch": "biggan"}, hub_entry("c", filename="c.pt")])
    reg = hub.load_registry(p)
    assert reg.ids() == ["a", "b", "c"]
    assert reg.ids("stylegan2") == ["a", "c"]
    assert reg.ids("biggan") == ["b"]
    assert reg.ids("nothing") == []
    assert [e.id for e in reg] == ["a", "b", "c"]


# ---- fetch: local paths --------------------------------------------------------------------
def _one(tmp_path: Path, entry: dict) -> hub.WeightEntry:
    return hub.load_registry(write_registry(tmp_path / "reg.json", [entry])).get(entry["id"])


def test_fetch_path_entry(tiny_registry: Path, tiny_sg2_file: Path):
    e = hub.load_registry(tiny_registry).get("tiny-sg2")
    assert hub.fetch(e) == tiny_sg2_file


def test_fetch_path_entry_with_correct_sha256_and_size(tmp_path: Path, tiny_sg2_file: Path):
    data = tiny_sg2_file.read_bytes()
    e = _one(tmp_path, tiny_sg2_entry("ok", tiny_sg2_file, sha256=sha(data), size=len(data)))
    assert hub.fetch(e) == tiny_sg2_file
    assert hub.fetch(e) == tiny_sg2_file  # second time: already verified


def test_fetch_path_entry_with_wrong_sha256(tmp_path: Path, tiny_sg2_file: Path):
    wrong = sha(b"something else")
    e = _one(tmp_path, tiny_sg2_entry("corrupt-model", tiny_sg2_file, sha256=wrong))
    with pytest.raises(UserError) as info:
        hub.fetch(e)
    msg = str(info.value)
    assert "'corrupt-model'" in msg and "sha256" in msg and "--force" in msg
    assert "python -m core.hub download corrupt-model --force" in msg


def test_sha256_is_checked_per_expected_digest(tmp_path: Path, tiny_sg2_file: Path):
    """A file verified for one entry must not pass for another entry expecting another digest."""
    data = tiny_sg2_file.read_bytes()
    good = _one(tmp_path, tiny_sg2_entry("good", tiny_sg2_file, sha256=sha(data)))
    assert hub.fetch(good) == tiny_sg2_file
    bad = hub.load_registry(write_registry(tmp_path / "other.json", [
        tiny_sg2_entry("bad", tiny_sg2_file, sha256=sha(data + b"x"))])).get("bad")
    with pytest.raises(UserError, match="'bad'.*sha256"):
        hub.fetch(bad)


def test_modified_file_is_checked_again(tmp_path: Path):
    f = tmp_path / "w.pt"
    f.write_bytes(b"A" * 100)
    e = _one(tmp_path, tiny_sg2_entry("mod", f, sha256=sha(b"A" * 100)))
    assert hub.fetch(e) == f
    f.write_bytes(b"B" * 100)
    import os
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    with pytest.raises(UserError, match="sha256"):
        hub.fetch(e)


def test_fetch_path_entry_with_wrong_size(tmp_path: Path, tiny_sg2_file: Path):
    n = tiny_sg2_file.stat().st_size
    e = _one(tmp_path, tiny_sg2_entry("short", tiny_sg2_file, size=n + 1))
    with pytest.raises(UserError) as info:
        hub.fetch(e)
    msg = str(info.value)
    assert "'short'" in msg and str(n) in msg and str(n + 1) in msg and "--force" in msg


def test_fetch_missing_local_file(tmp_path: Path):
    e = _one(tmp_path, tiny_sg2_entry("gone", tmp_path / "gone.pt"))
    with pytest.raises(UserError, match="'gone'.*missing"):
        hub.fetch(e)
    assert hub.cached_path(e) is None


# ---- fetch: the Hub (real hf_hub_download, offline, pre-filled cache) ------------------------
def test_fetch_hub_entry_from_cache(tmp_path: Path, hub_cache: Path):
    data = b"weights-" + bytes(range(256)) * 3
    seed_hub_cache(hub_cache, "org/repo", {"model.pt": data})
    e = _one(tmp_path, hub_entry("cached", sha256=sha(data), size=len(data)))
    local = hub.fetch(e)
    assert local.is_file() and local.read_bytes() == data
    assert hub_cache in local.parents


def test_fetch_hub_entry_in_subfolder(tmp_path: Path, hub_cache: Path):
    data = b"nested file"
    seed_hub_cache(hub_cache, "org/nested", {"sub/dir/file.pt": data, "other.pt": b"no"})
    e = _one(tmp_path, hub_entry("nested", "org/nested", "sub/dir/file.pt", sha256=sha(data)))
    local = hub.fetch(e)
    assert local.read_bytes() == data
    assert local.as_posix().endswith("sub/dir/file.pt")


def test_fetch_hub_entry_from_a_space(tmp_path: Path, hub_cache: Path):
    data = b"factors" * 10
    seed_hub_cache(hub_cache, "someone/Demo", {"checkpoints/U.npy": data}, repo_type="space")
    e = _one(tmp_path, hub_entry("space-file", "someone/Demo", "checkpoints/U.npy",
                                 hub_extra={"repo_type": "space"}))
    assert e.hub.repo_type == "space"
    assert hub.fetch(e).read_bytes() == data
    # the same repo id as a model is a different cache entry: not there
    model = _one(tmp_path, hub_entry("as-model", "someone/Demo", "checkpoints/U.npy"))
    with pytest.raises(UserError):
        hub.fetch(model)


def test_fetch_hub_entry_pinned_to_a_commit(tmp_path: Path, hub_cache: Path):
    commit = "0123456789abcdef0123456789abcdef01234567"
    data = b"pinned"
    seed_hub_cache(hub_cache, "org/pinned", {"w.pt": data}, commit=commit)
    # a later commit becomes `main`: the pinned entry must still get the old file
    seed_hub_cache(hub_cache, "org/pinned", {"w.pt": b"newer"}, commit="f" * 40)
    e = _one(tmp_path, hub_entry("pinned", "org/pinned", "w.pt", hub_extra={"revision": commit}))
    assert e.hub.revision == commit
    assert hub.fetch(e).read_bytes() == data
    assert hub.cached_path(e).read_bytes() == data
    main = _one(tmp_path, hub_entry("main", "org/pinned", "w.pt"))
    assert hub.fetch(main).read_bytes() == b"newer"


def test_fetch_hub_entry_with_wrong_sha256(tmp_path: Path, hub_cache: Path):
    seed_hub_cache(hub_cache, "org/repo", {"model.pt": b"truncated"})
    e = _one(tmp_path, hub_entry("bad-dl", sha256=sha(b"the real file")))
    with pytest.raises(UserError) as info:
        hub.fetch(e)
    assert "'bad-dl'" in str(info.value) and "--force" in str(info.value)


def test_fetch_uncached_hub_entry_offline(tmp_path: Path, hub_cache: Path):
    e = _one(tmp_path, hub_entry("not-here", "org/absent", "big.pt"))
    with pytest.raises(UserError) as info:
        hub.fetch(e)
    msg = str(info.value)
    assert "'not-here'" in msg
    assert "org/absent" in msg
    assert "python -m core.hub download not-here" in msg
    assert "offline" in msg or "cache" in msg


def test_cached_path_before_and_after_seeding(tmp_path: Path, hub_cache: Path):
    e = _one(tmp_path, hub_entry("later", "org/later", "x/y.pt"))
    assert hub.cached_path(e) is None
    seed_hub_cache(hub_cache, "org/later", {"x/y.pt": b"now here"})
    p = hub.cached_path(e)
    assert p is not None and p.read_bytes() == b"now here"


def test_cached_path_of_local_entry(tiny_registry: Path, tiny_sg2_file: Path):
    e = hub.load_registry(tiny_registry).get("tiny-sg2")
    assert hub.cached_path(e) == tiny_sg2_file
    tiny_sg2_file.unlink()
    assert hub.cached_path(e) is None


# ---- command line --------------------------------------------------------------------------
@pytest.fixture()
def cli_registry(tmp_path: Path, hub_cache: Path, tiny_sg2_file: Path) -> Path:
    seed_hub_cache(hub_cache, "org/repo", {"model.pt": b"x" * 2048})
    return write_registry(tmp_path / "cli.json", [
        tiny_sg2_entry("local-tiny", tiny_sg2_file),
        hub_entry("hub-cached", size=2048, sha256=sha(b"x" * 2048)),
        hub_entry("hub-missing", "org/absent", "big.pt", size=5_000_000),
    ])


def _row(out: str, model_id: str) -> list[str]:
    rows = [l.split() for l in out.splitlines() if l.split() and l.split()[0] == model_id]
    assert len(rows) == 1, out
    return rows[0]


def test_cli_list(cli_registry: Path, capsys):
    assert hub.main(["--weights", str(cli_registry), "list"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header == ["id", "size", "cached", "tabs", "from"]
    assert _row(out, "local-tiny")[3:] == ["yes", "generate", "file"]
    assert _row(out, "hub-cached")[1:4] == ["2.0", "KB", "yes"]
    assert _row(out, "hub-missing")[1:] == ["5.0", "MB", "no", "-", "Hub"]
    assert "3 models, 5.1 MB; 2 cached here (131.7 KB)" in out


def test_cli_list_honours_env(cli_registry: Path, capsys, monkeypatch):
    monkeypatch.setenv(hub.WEIGHTS_ENV, str(cli_registry))
    assert hub.main(["list"]) == 0
    out = capsys.readouterr().out
    for model_id in ("local-tiny", "hub-cached", "hub-missing"):
        _row(out, model_id)


def test_cli_download_cached(cli_registry: Path, capsys):
    assert hub.main(["--weights", str(cli_registry), "download", "hub-cached", "local-tiny"]) == 0
    cap = capsys.readouterr()
    oks = [l.split() for l in cap.out.splitlines() if l.startswith("ok")]
    assert [r[1] for r in oks] == ["hub-cached", "local-tiny"]
    assert "2/2 models" in cap.out
    assert "FAILED" not in cap.err


def test_cli_download_uncached_offline_fails(cli_registry: Path, capsys):
    rc = hub.main(["--weights", str(cli_registry), "download", "hub-cached", "hub-missing"])
    assert rc == 1
    cap = capsys.readouterr()
    assert "FAILED hub-missing" in cap.err
    assert "org/absent" in cap.err
    assert "ok  hub-cached" in cap.out
    assert "1/2 models" in cap.out


def test_cli_download_unknown_id(cli_registry: Path, capsys):
    assert hub.main(["--weights", str(cli_registry), "download", "nope"]) == 2
    err = capsys.readouterr().err
    assert "'nope'" in err and "hub-cached" in err


def test_cli_download_needs_ids_or_all(cli_registry: Path, capsys):
    with pytest.raises(SystemExit) as info:
        hub.main(["--weights", str(cli_registry), "download"])
    assert info.value.code == 2
    assert "--all" in capsys.readouterr().err


def test_cli_bad_registry(tmp_path: Path, capsys):
    assert hub.main(["--weights", str(tmp_path / "none.json"), "list"]) == 2
    assert "not found" in capsys.readouterr().err


# ---- human_size ----------------------------------------------------------------------------
@pytest.mark.parametrize("n, text", [
    (None, "?"), (0, "0 B"), (999, "999 B"), (1000, "1.0 KB"), (2048, "2.0 KB"),
    (1_500_000, "1.5 MB"), (132_717_355, "132.7 MB"), (1_201_649_680, "1.2 GB"),
    (5_000_000_000_000, "5000.0 GB"),
])
def test_human_size(n, text):
    assert hub.human_size(n) == text


@pytest.mark.parametrize("field, value, says", [
    ("config", "big", "'config' must be an object"),
    ("used_by", 5, "'used_by' must be a list"),
    ("license", 5, "'license' must be a string"),
    ("generator", ["x"], "'generator' must be a string"),
    ("meta", {"name": 5}, "meta 'name' must be str"),
    ("meta", {"content": [512]}, "meta 'content' must be \\[width, height\\]"),
    ("meta", {"colour": [1]}, "meta 'colour' must be a name with a plain value"),
    ("meta", [1], "'meta' must be an object"),
    ("role", "painter", "role 'painter' is not one of"),
    ("config", {"size": "big"}, "config 'size' must be a whole number of pixels"),
    ("id", 5, "'id' must be a string"),
    ("id", "../../etc", "an id is a name"),
    ("id", "a b", "an id is a name"),
    ("hub", {"repo_id": 5, "filename": "g.pt"}, "must be strings"),
])
def test_malformed_entry_fields_are_named(tmp_path: Path, field, value, says):
    entry = {"id": "m", "arch": "stylegan2", "path": "m.pt", field: value}
    if field == "hub":
        del entry["path"]
    write_registry(tmp_path / "w.json", [entry])
    with pytest.raises(UserError, match=says):
        hub.load_registry(tmp_path / "w.json")


def test_typed_pairing_and_meta(tmp_path: Path):
    """Relations and tab metadata live beside the loader's config, with typed accessors."""
    write_registry(tmp_path / "w.json", [
        {"id": "g", "arch": "proggan", "config": {"resolution": 256}, "path": "g.pt"},
        {"id": "r", "arch": "regressor", "config": {"resnet_depth": 18}, "generator": "g",
         "meta": {"content": [256, 192]}, "path": "r.pt"},
        {"id": "orphan", "arch": "e4e", "generator": "nowhere", "path": "e.pt"}])
    reg = hub.load_registry(tmp_path / "w.json")
    r = reg.get("r")
    assert r.config == {"resnet_depth": 18} and r.meta.content == (256, 192)
    assert reg.generator_of(r).id == "g" and reg.get("g").image_size() == 256
    assert r.image_size() is None and reg.with_role("regressor", "g") == [r] and reg.companion("g", "regressor") == r
    with pytest.raises(UserError, match="'nowhere', which is not registered"):
        reg.generator_of(reg.get("orphan"))
    with pytest.raises(UserError, match="does not name the generator"):
        reg.generator_of(reg.get("g"))


# ---- mirrors, remembered checksums, pinning ----------------------------------------------------
def test_a_mirror_serves_when_the_source_cannot(tmp_path: Path, hub_cache: Path):
    data = b"the same weights, published twice"
    seed_hub_cache(hub_cache, "mirror/copy", {"g.pt": data})
    write_registry(tmp_path / "w.json", [{
        "id": "m", "arch": "stylegan2", "license": "t",
        "url": {"href": "https://unreachable.example/g.pt", "filename": "g.pt"},  # offline here
        "mirrors": [{"hub": {"repo_id": "nobody/missing", "filename": "g.pt"}},
                    {"hub": {"repo_id": "mirror/copy", "filename": "g.pt"}}]}])
    entry = hub.load_registry(tmp_path / "w.json").get("m")
    assert hub.fetch(entry).read_bytes() == data
    assert hub.cached_path(entry).read_bytes() == data
    lone = hub.load_registry(write_registry(tmp_path / "v.json", [{
        "id": "m", "arch": "stylegan2", "license": "t",
        "url": {"href": "https://unreachable.example/g.pt", "filename": "g.pt"},
        "mirrors": [{"hub": {"repo_id": "nobody/missing", "filename": "g.pt"}}]}])).get("m")
    with pytest.raises(UserError, match=r"offline.*1 mirror\(s\) failed too"):
        hub.fetch(lone)


def test_an_unpinned_file_is_remembered_and_a_change_is_warned(tmp_path: Path, hub_cache: Path,
                                                               monkeypatch, caplog):
    monkeypatch.setenv("SPATIAL_GAN_CACHE", str(tmp_path / "app-cache"))
    root = seed_hub_cache(hub_cache, "org/unpinned", {"g.pt": b"first bytes"})
    write_registry(tmp_path / "w.json", [{"id": "u", "arch": "stylegan2", "license": "t",
                                          "hub": {"repo_id": "org/unpinned", "filename": "g.pt"}}])
    entry = hub.load_registry(tmp_path / "w.json").get("u")
    path = hub.fetch(entry)
    known = json.loads((tmp_path / "app-cache" / "checksums.json").read_text())
    assert known[entry.origin()]["sha256"] == hashlib.sha256(b"first bytes").hexdigest()
    assert "differs" not in caplog.text
    path.write_bytes(b"other bytes, same name")  # the host replaced the file
    hub.fetch(entry)
    assert "differs from the one first downloaded here" in caplog.text
    assert root.exists()


def test_malformed_mirrors_are_named(tmp_path: Path):
    write_registry(tmp_path / "w.json", [{"id": "m", "arch": "stylegan2", "path": "m.pt",
                                          "mirrors": [{"path": "elsewhere.pt"}]}])
    with pytest.raises(UserError, match="'mirrors' must be a list"):
        hub.load_registry(tmp_path / "w.json")


def test_pin_writes_the_cached_commit_into_the_registry(tmp_path: Path, hub_cache: Path):
    commit = "5fde0cd" + "0" * 33
    seed_hub_cache(hub_cache, "org/pinme", {"g.pt": b"w"}, commit=commit)
    registry = write_registry(tmp_path / "w.json", [
        {"id": "p", "arch": "stylegan2", "license": "t", "hub": {"repo_id": "org/pinme", "filename": "g.pt"}},
        {"id": "q", "arch": "stylegan2", "license": "t", "hub": {"repo_id": "org/uncached", "filename": "g.pt"}}])
    assert hub.main(["--weights", str(registry), "pin"]) == 0
    reg = hub.load_registry(registry)
    assert reg.get("p").hub.revision == commit and reg.get("q").hub.revision == "main"
    assert hub.fetch(reg.get("p")).read_bytes() == b"w"  # the pinned commit is what is cached


# ---- every field checked at start, by the Hub's own rules for Hub sources (issue 34) ----------
@pytest.mark.parametrize("hub_fields, says", [
    ({"repo_id": "../../etc"}, "hub repo_id '../../etc' is not a Hub repository name"),
    ({"repo_id": "a/b/c"}, "is not a Hub repository name"),
    ({"repo_id": "org/re po"}, "is not a Hub repository name"),
    ({"filename": "../../../../etc/passwd"}, "must be a path inside the repository"),
    ({"filename": "/etc/passwd"}, "must be a path inside the repository"),
    ({"filename": "folder\\model.pt"}, "no backslashes"),
    ({"filename": "a//b.pt"}, "must be a path inside the repository"),
    ({"revision": "../main"}, "hub revision '../main' must be a branch, tag or commit"),
    ({"revision": "main branch"}, "must be a branch, tag or commit"),
    ({"repo_type": "bucket"}, "repo_type must be one of model, dataset, space"),
    ({"token": "x"}, "'hub' has unknown fields \\['token'\\]"),
])
def test_hub_fields_are_checked_by_the_hubs_rules(tmp_path: Path, hub_fields, says):
    e = hub_entry("h")
    e["hub"].update(hub_fields)
    with pytest.raises(UserError, match=says):
        hub.load_registry(write_registry(tmp_path / "w.json", [e]))


def test_hub_fields_that_the_hub_accepts_load(tmp_path: Path):
    e = hub_entry("h", filename="sub/dir/model.safetensors",
                  hub_extra={"revision": "refs/pr/1", "repo_type": "space"})
    assert hub.load_registry(write_registry(tmp_path / "w.json", [e])).get("h").hub == hub.HubSource(
        "org/repo", "sub/dir/model.safetensors", "refs/pr/1", "space")


@pytest.mark.parametrize("size", [1e30, 1.5, 0, -5, 2 ** 41, "10", True])
def test_a_size_that_is_not_a_sane_byte_count_is_a_sentence(tmp_path: Path, size):
    with pytest.raises(UserError, match=r"size must be a whole number of bytes between 1 and"):
        hub.load_registry(write_registry(tmp_path / "w.json", [hub_entry("s", size=size)]))


@pytest.mark.parametrize("field, value, says", [
    ("arch", "../x", "'arch' must be a name"),
    ("generator", "a b", "'generator' must be a name"),
    ("used_by", ["../tab"], "'used_by' must be a list of tab ids"),
    ("path", "", "path must be a file's path"),
    ("path", "a\0b.pt", "path must be a file's path"),
    ("url", "http://[broken/x.pt", "'url' must be an http\\(s\\) address"),
    ("url", "https://example.com/a b.pt", "'url' must be an http\\(s\\) address"),
])
def test_other_malformed_fields_are_sentences(tmp_path: Path, field, value, says):
    entry = {"id": "m", "arch": "stylegan2", "path": "m.pt", field: value}
    if field == "url":
        del entry["path"]
    with pytest.raises(UserError, match=says):
        hub.load_registry(write_registry(tmp_path / "w.json", [entry]))


def test_a_bad_registry_stops_the_app_with_an_error_line_and_exit_2(tmp_path: Path, capsys):
    import app

    e = hub_entry("h", filename="../../../../etc/passwd", hub_extra={"repo_id": "../../etc"})
    registry = write_registry(tmp_path / "w.json", [e])
    assert app.main(["--weights", str(registry)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and "repo_id '../../etc'" in err


def test_work_no_one_asked_for_downloads_nothing(tmp_path):
    """Inside `cached_only` (a tab's first look at start-up) a model not yet here is a
    sentence, not a download; outside, fetching works as before."""
    reg = hub.load_registry(write_registry(tmp_path / "w.json", [
        {"id": "far", "arch": "stylegan2", "config": {"size": 32},
         "hub": {"repo_id": "nobody/not-cached", "filename": "g.pt"}, "license": "test"}]))
    with hub.cached_only():
        assert not hub.downloads_allowed()
        with pytest.raises(UserError, match="'far' are not downloaded yet"):
            hub.fetch(reg.get("far"))
    assert hub.downloads_allowed()
