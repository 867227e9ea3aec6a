"""Publish a registered checkpoint as a Hugging Face Hub model repo (safetensors + model card).

Why: some authors host their weights on Google Drive (download quotas, no pinning) and every
`.pt` is a pickle. A Hub copy in safetensors can be pinned by commit and sha256 and holds no
code. The copy keeps only what inference needs, is checked tensor for tensor against the
original through the app's own loader before anything is uploaded, and the command prints the
weights.json entry that points to it (stdout; progress and errors go to stderr).

    python -m scripts.publish_weights stylemapgan-celeba-hq-256 --repo USER/NAME [--no-upload]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import torch

from core.checkpoints import jsonable_args, read_checkpoint, write_safetensors
from core.errors import UserError
from core.hub import WeightEntry, app_cache_dir, fetch, human_size, load_registry, sha256_of
from core.models import load_model

# What inference needs of each architecture's checkpoint; the rest (discriminator, optimiser
# states) is training state that the app never reads.
KEEP: dict[str, tuple[str, ...]] = {"stylemapgan": ("g_ema", "e_ema", "train_args"),
                                    "stylegan2": ("g_ema", "latent_avg"),
                                    "stylegan2-genforce": ("generator_smooth",),  # what PandA loads
                                    "regressor": ("state_dict",), "proggan": ("state_dict",),
                                    "biggan-deep": ("state_dict",)}
# Published as a bare state dict: the copy wraps it as {"state_dict": ...} (both loaders read it).
BARE_STATE_DICT = {"proggan", "biggan-deep"}
# The Hub's licence metadata for the model card's front matter.
CARD_LICENSE: dict[str, str] = {
    "stylemapgan": "license: cc-by-nc-4.0",
    "regressor": "license: mit",
    "proggan": "license: cc-by-nc-4.0",
    "biggan-deep": "license: apache-2.0",
    "stylegan2": "license: other\nlicense_name: nvidia-source-code-license-nc\n"
                 "license_link: https://nvlabs.github.io/stylegan2/license.html"}
CARD_LICENSE["stylegan2-genforce"] = CARD_LICENSE["stylegan2"]
CARD, CONFIG = "README.md", "config.json"


def _keep(arch: str) -> tuple[str, ...]:
    if arch not in KEEP:
        raise UserError(f"Cannot publish models of architecture {arch!r}: this script knows "
                        f"which parts to keep only for {', '.join(sorted(KEEP))}.")
    return KEEP[arch]


def _tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """State dict plus non-persistent buffers (StyleGAN2's `w_avg` holds `latent_avg`)."""
    return {**dict(model.named_buffers()), **model.state_dict()}


def verify_copy(entry: WeightEntry, original: Path, copy: Path) -> None:
    """Both files through `load_model`: every tensor must be equal (same keys, dtype, values)."""
    a, b = (_tensors(load_model(entry.arch, p, entry.config)) for p in (original, copy))
    bad = sorted(set(a) ^ set(b)) + [k for k in a if k in b and not (
        a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]))]
    if bad:
        raise UserError(f"The converted copy of {entry.id!r} does not load to the original's "
                        f"weights ({len(bad)} tensors differ, e.g. {', '.join(bad[:3])}): "
                        f"not publishing it.")


def model_card(entry: WeightEntry, keep: tuple[str, ...], dropped: list[str]) -> str:
    """README.md: Hub licence metadata, attribution, the changes made (CC BY-NC requires saying
    so) and how to load the file."""
    dropped_text = (f"dropped: {', '.join(f'`{k}`' for k in dropped)}" if dropped
                    else "the file held nothing else")
    return f"""---
{CARD_LICENSE[entry.arch]}
tags:
- gan
- {entry.arch}
- image-generation
- safetensors
- spatial-gan-studio
---
# {entry.id}

{entry.description or entry.id}

## Source and attribution
{entry.source or "(source not recorded)"}

Licence: {entry.license or "see the source"} (this copy is under the same terms).

## Changes
This is a converted copy, not the authors' original file: only the inference parts of the
checkpoint ({", ".join(f"`{k}`" for k in keep)}) were kept ({dropped_text}) and stored as
safetensors instead of a pickled `.pt`. The weights are unchanged: both files were checked
to load to identical tensors before upload.

## Use in Spatial GAN Studio
Add the registry entry printed by `scripts/publish_weights.py` to `weights.json` (or a file
passed with `--weights`), run `python -m core.hub download {entry.id}`, then `python app.py`.
In Python: `load_model(entry.arch, fetch(entry), entry.config)` with `entry =
load_registry().get("{entry.id}")` (`core.hub`, `core.models`).
"""


def convert(entry: WeightEntry, out_dir: Path) -> Path:
    """Fetch the entry's file and write `<id>.safetensors`, config.json and README.md to
    `out_dir`; return the safetensors path. A copy that fails `verify_copy` is deleted."""
    keep = _keep(entry.arch)
    original = fetch(entry)
    ckpt = read_checkpoint(original)
    if not isinstance(ckpt, dict):
        raise UserError(f"{original.name} is not a checkpoint dict ({type(ckpt).__name__}).")
    if entry.arch in BARE_STATE_DICT:
        ckpt = {"state_dict": ckpt}
    out_dir.mkdir(parents=True, exist_ok=True)
    target = write_safetensors(ckpt, out_dir / f"{entry.id}.safetensors", keep)
    try:
        verify_copy(entry, original, target)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    config: dict[str, Any] = {"architecture": entry.arch, "config": entry.config}
    if "train_args" in keep and ckpt.get("train_args") is not None:
        config["train_args"] = jsonable_args(ckpt["train_args"])
    (out_dir / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    dropped = sorted(str(k) for k in ckpt if k not in keep)
    (out_dir / CARD).write_text(model_card(entry, keep, dropped))
    return target


def registry_entry(entry: WeightEntry, repo: str, filename: str, revision: str, sha256: str,
                   size: int) -> dict[str, Any]:
    """The weights.json entry for the Hub copy (same id, so nothing else has to change)."""
    note = f"Hub copy {repo} made with scripts/publish_weights.py"
    fields = {k: v for k, v in dataclasses.asdict(entry.meta).items() if k != "extra"}
    meta = {k: list(v) if isinstance(v, tuple) else v
            for k, v in {**fields, **entry.meta.extra}.items() if v is not None}
    return {"id": entry.id, "arch": entry.arch, "description": entry.description,
            "config": dict(entry.config),
            **({"generator": entry.generator} if entry.generator else {}),
            **({"meta": meta} if meta else {}),
            "hub": {"repo_id": repo, "filename": filename, "revision": revision, "repo_type": "model"},
            "sha256": sha256, "size": size, "license": entry.license,
            "source": f"{entry.source}; {note}" if entry.source else note,
            "used_by": list(entry.used_by)}


def upload(out: Path, files: list[str], repo: str, private: bool, revision: str) -> str:
    """Create the repo (if needed) and upload `files`; return the commit hash, which pins the
    registry entry (a branch name moves)."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
    if revision != "main":
        api.create_branch(repo, branch=revision, repo_type="model", exist_ok=True)
    info = api.upload_folder(folder_path=str(out), repo_id=repo, repo_type="model",
                             revision=revision, allow_patterns=files,
                             commit_message=f"Add {files[0]} (scripts/publish_weights.py)")
    return getattr(info, "oid", None) or revision


def _upload_errors() -> tuple[type[BaseException], ...]:
    """OSError covers HfHubHTTPError (401, 403, 404), a missing token and offline mode; the
    HTTP client's own base error (HfHubHTTPError's other parent) covers refused connections
    and timeouts."""
    from huggingface_hub.errors import HfHubHTTPError

    return (OSError, *(c for c in HfHubHTTPError.__mro__ if c.__name__ == "HTTPError"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.publish_weights",
                                description=__doc__.split("\n")[0])
    p.add_argument("id", help="model id in the registry")
    p.add_argument("--repo", required=True, help="Hub model repo to publish to, USER/NAME")
    p.add_argument("--weights", help="registry file (default: $SPATIAL_GAN_WEIGHTS or weights.json)")
    p.add_argument("--out", help="folder for the files (default: the app cache's publish/ID)")
    p.add_argument("--no-upload", action="store_true", help="convert and check only")
    p.add_argument("--private", action="store_true", help="create the repo as private")
    p.add_argument("--revision", default="main", help="branch to commit to (default: main)")
    args = p.parse_args(argv)
    if args.repo.count("/") != 1 or not all(args.repo.split("/")):
        p.error(f"--repo must be USER/NAME, got {args.repo!r}")
    try:
        entry = load_registry(args.weights).get(args.id)
        out = Path(args.out) if args.out else app_cache_dir() / "publish" / entry.id
        path = convert(entry, out)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    size, revision = path.stat().st_size, args.revision
    print(f"wrote {path.name} ({human_size(size)}), {CONFIG} and {CARD} to {out}; the copy "
          f"loads to the original's weights", file=sys.stderr)
    if not args.no_upload:
        try:
            revision = upload(out, [path.name, CONFIG, CARD], args.repo, args.private, revision)
        except _upload_errors() as e:
            print(f"error: uploading to {args.repo} failed ({type(e).__name__}: {e}). Log in "
                  f"with `hf auth login` or set HF_TOKEN to a token with write access (and "
                  f"check the network), then run this again. The files are kept in {out}.",
                  file=sys.stderr)
            return 1
        print(f"uploaded to https://huggingface.co/{args.repo} at commit {revision}", file=sys.stderr)
    else:
        print("not uploaded: once uploaded, pin `revision` to the commit hash", file=sys.stderr)
    print(json.dumps(registry_entry(entry, args.repo, path.name, revision, sha256_of(path), size),
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
