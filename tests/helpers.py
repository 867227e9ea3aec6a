"""Helpers the tests share (imported as `from helpers import ...`; fixtures live in
conftest.py). Nothing here touches the network."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = Path(os.environ.get("SPATIAL_GAN_REFERENCE", Path(__file__).parent / "data" / "reference"))
SG2_REF = REFERENCE / "stylegan2"
TINY_SG2_CONFIG = {"size": 32, "style_dim": 32, "n_mlp": 2, "channel_multiplier": 2, "channel_max": 16}


def load_reference(path: Path):
    """Reference files were written by the authors' code; they are trusted test data."""
    return torch.load(path, map_location="cpu", weights_only=False)


def write_registry(path: Path, entries: list[dict]) -> Path:
    path.write_text(json.dumps(entries, indent=1))
    return path


def tiny_sg2_entry(model_id: str, file: Path, **extra) -> dict:
    return {"id": model_id, "arch": "stylegan2", "config": dict(TINY_SG2_CONFIG),
            "path": str(file), "sha256": None, "license": "test only", "source": "tests",
            "used_by": ["generate"], **extra}


def seed_hub_cache(cache: Path, repo_id: str, files: dict[str, bytes], commit: str = "c" * 40,
                   repo_type: str = "model") -> Path:
    """Lay files out exactly as huggingface_hub's cache does (refs/main without newline)."""
    root = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    for rel, data in files.items():
        p = root / "snapshots" / commit / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


NO_EDIT_ROWS = {"headers": ["parts", "appearance", "λ"], "data": []}
"""PandA's edit list with no rows, as gradio_client sends an empty gr.Dataframe."""


def npy_bytes(array) -> bytes:
    """A float32 .npy file's bytes (what `Model.save` writes), for a Hub cache or a file."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.asarray(array, np.float32))
    return buf.getvalue()


def quadrant_parts(side: int):
    """PandA parts [side^2, 4] float32: 1 inside each quadrant of a side x side layer, 0 outside."""
    import numpy as np

    P = np.zeros((side * side, 4), np.float32)
    grid = np.arange(side * side).reshape(side, side)
    h = side // 2
    for r, (y, x) in enumerate([(0, 0), (0, h), (h, 0), (h, h)]):
        P[grid[y:y + h, x:x + h].reshape(-1), r] = 1.0
    return P


def published_panda_factors(hub_cache: Path, generator: str, layer: int, A, P) -> list[dict]:
    """A and P in an offline copy of the authors' Hub Space ("someone/PandA", their file names
    for the model name "tiny") -> the two registry entries that pair them with `generator`."""
    from demos.panda.factors import factor_filenames

    names = factor_filenames("tiny", layer, A.shape[1], P.shape[1])
    seed_hub_cache(hub_cache, "someone/PandA", {f"checkpoints/{n}": npy_bytes(a) for n, a in zip(names, (A, P))},
                   repo_type="space")
    return [{"id": f"tiny-panda-{kind}", "arch": "panda-factors", "config": {}, "generator": generator,
             "meta": {"layer": layer, "factor": kind, "rank": a.shape[1]},
             "hub": {"repo_id": "someone/PandA", "repo_type": "space", "filename": f"checkpoints/{n}"},
             "license": "test"}
            for kind, n, a in zip(("appearances", "parts"), names, (A, P))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def app_client(registry: Path):
    """The whole app built on `registry`, launched on a free port, as a gradio_client."""
    import app as app_module
    from gradio_client import Client

    demo = app_module.build_app(weights=str(registry), device="cpu")
    _, url, _ = demo.launch(prevent_thread_lock=True, server_port=free_port(), quiet=True,
                            **app_module.launch_options())
    try:
        client = Client(url, verbose=False)
        client.app = demo  # its context (`demo.ctx`): what the app's own clicks would have set
        yield client
    finally:
        demo.close()


def png_file(folder: Path, name: str, array) -> str:
    """Save an array as a PNG (lossless, what the app's components use) -> its path."""
    from PIL import Image

    path = folder / name
    Image.fromarray(array).save(path)
    return str(path)


def read_png(path: str):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(path))


def editor_value(folder: Path, name: str, picture, painted=None, colour=(255, 51, 51)) -> dict:
    """A gr.ImageEditor value as a browser sends it: background, one RGBA paint layer where
    `painted` (bool H x W, or a list of them, one per colour in `colour`) is true, and the
    composite."""
    import numpy as np
    from gradio_client import handle_file

    h, w = picture.shape[:2]
    layer = np.zeros((h, w, 4), np.uint8)
    composite = picture.copy()
    regions = painted if isinstance(painted, list) else [painted]
    colours = colour if isinstance(painted, list) else [colour]
    for region, rgb in zip(regions, colours):
        if region is not None:
            layer[region] = (*rgb, 255)
            composite[region] = (*rgb, 255)[:composite.shape[-1]] if composite.ndim == 3 else 255
    return {"background": handle_file(png_file(folder, f"{name}-bg.png", picture)),
            "layers": [handle_file(png_file(folder, f"{name}-l.png", layer))],
            "composite": handle_file(png_file(folder, f"{name}-c.png", composite))}


EMPTY_EDITOR = {"background": None, "layers": [], "composite": None}


def every_tab_registry(folder: Path) -> Path:
    """Every tab's tiny models in their published layouts, as local `path` entries."""
    from core.models.regressor import MaskedRegressor
    from demos.panda.factors import appearances_from_scatter

    sg2 = folder / "tiny-sg2.pt"
    shutil.copy(SG2_REF / "tiny.pt", sg2)
    torch.manual_seed(0)
    reg_config = {"resnet_depth": 18, "n_latent": 8, "w_dim": 32, "channels_in": 4}
    reg = MaskedRegressor(**reg_config)
    with torch.no_grad():  # a spread of codes the tiny generator can render
        reg.layer5.conv5.weight.mul_(4)
    reg_file = folder / "sgan_encoders_tiny_RGBM_model_final.pth"
    torch.save({"state_dict": reg.state_dict(), "epoch": 1, "val_loss": 0.5}, reg_file)
    smg = folder / "stylemapgan-tiny.pt"
    shutil.copy(REFERENCE / "stylemapgan" / "tiny.pt", smg)
    biggan = folder / "pytorch_model.bin"
    shutil.copy(REFERENCE / "biggan" / "tiny-pytorch_model.bin", biggan)
    biggan_config = json.loads((REFERENCE / "biggan" / "tiny-config.json").read_text())
    g = torch.Generator().manual_seed(0)
    m = torch.randn(16, 16, generator=g)
    appearances = appearances_from_scatter(m @ m.t(), 16).numpy().astype(np.float32)
    parts = quadrant_parts(16)  # four 8x8 quadrants of the 16x16 layer
    np.save(folder / "Uc-name_tiny-layer_5-rank_16.npy", appearances)
    np.save(folder / "Us-name_tiny-layer_5-rank_4.npy", parts)

    def factors(kind: str, prefix: str, rank: int) -> dict:
        return {"id": f"tiny-panda-{kind}", "arch": "panda-factors",
                "generator": "tiny-sg2", "meta": {"layer": 5, "factor": kind, "rank": rank},
                "path": str(folder / f"{prefix}-name_tiny-layer_5-rank_{rank}.npy"), "license": "test"}

    from core.models.stylegan2 import StyleGAN2Generator, panda_layer

    sam_config = {"size": 256, "style_dim": 32, "n_mlp": 2, "channel_multiplier": 2, "channel_max": 8}
    sam_g = StyleGAN2Generator(**sam_config)  # SAM needs layers after the 128 px F10
    torch.save({"g_ema": sam_g.state_dict()}, folder / "tiny-sam.pt")
    # layer-5 PandA factors of the SAM model too, so PandA edits the photo code SAM made
    k = panda_layer(5)
    A = torch.linalg.qr(torch.randn(sam_g.layer_channels(k), sam_g.layer_channels(k),
                                    generator=torch.Generator().manual_seed(0)))[0].numpy()
    sam_factors = []
    for kind, prefix, array in (("appearances", "Uc", A),
                                ("parts", "Us", quadrant_parts(sam_g.layer_resolution(k)))):
        file = folder / f"{prefix}-name_tinysam-layer_5-rank_{array.shape[1]}.npy"
        np.save(file, array.astype(np.float32))
        sam_factors.append({"id": f"tiny-sam-panda-{kind}", "arch": "panda-factors",
                            "generator": "tiny-sam", "license": "test", "path": str(file),
                            "meta": {"layer": 5, "factor": kind, "rank": array.shape[1]}})
    return write_registry(folder / "weights.json", [
        tiny_sg2_entry("tiny-sg2", sg2, used_by=["generate", "collage", "panda"]),
        {"id": "tiny-sam", "arch": "stylegan2", "config": sam_config, "path": str(folder / "tiny-sam.pt"),
         "license": "test", "used_by": ["sam"]},
        {"id": "tiny-collage", "arch": "regressor", "config": reg_config, "generator": "tiny-sg2",
         "path": str(reg_file), "license": "test"},
        {"id": "tiny-smg", "arch": "stylemapgan", "config": {"size": 32}, "path": str(smg),
         "license": "test"},
        {"id": "tiny-biggan", "arch": "biggan-deep", "config": biggan_config, "path": str(biggan),
         "license": "test", "used_by": ["ncollage"]},
        factors("appearances", "Uc", 16), factors("parts", "Us", 4), *sam_factors,
        {"id": "tiny-offline", "arch": "stylegan2", "config": {"size": 32},  # not downloadable
         "hub": {"repo_id": "nobody/not-cached", "filename": "g.pt"}, "license": "test"}])
