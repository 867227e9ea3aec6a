"""Reference outputs of the authors' StyleMapGAN editing scripts on a tiny 64 x 8 x 8 model.

Writes `tiny-8x8.pt` (a checkpoint in the published format: g_ema, e_ema, train_args) and
`tiny-8x8-io.pt` (inputs and outputs), for tests/test_stylemapgan.py and the StyleMap tab tests.
The model has the released 256 px models' stylemap (64 channels, 8 x 8) because generate.py's
transplantation and semantic_manipulation.py's local mask hard-code that shape; the image is
32 px and every channel table is capped at 16 so the file stays small.

What runs is the authors' code, naver-ai/StyleMapGAN at 3a70e07, made runnable on the CPU by
shared/peers/prepare.py (their CUDA ops replaced by the native PyTorch path, `channels` tables
capped by REF_CHANNEL_MAX; nothing else changed):
  * `training/model.py`: Generator, Encoder (imported as they are);
  * `generate.py`: the `Model` class, exec'd from their file, modes "projection",
    "reconstruction", "w_interpolation" (its `random.random()` replaced by the lambdas listed
    here, so the frames are known) and "transplantation" (the AFHQ example's boxes, and two
    overlapping boxes to pin the order in which they are applied);
  * `semantic_manipulation.py`: the `Model` class, exec'd, mode "transform_to_other_part"
    (distances -20..0 step 5 along -boundary, globally and inside their Heavy_Makeup
    rectangle). `images.get_device()` returns -1 on the CPU, which `.to()` refuses: it is
    answered with "cpu" while this script runs.
  * The boundary itself is fitted in their `__main__`, which needs CelebA-HQ; its lines are
    transcribed here: `svm.SVC(kernel="linear", max_iter=10000)` (README's --svm_train_iter)
    on flattened encoder stylemaps labelled 1 (with) / 0 (without), `coef_` normalised and
    reshaped to [64, 8, 8]. The labelled images carry a planted attribute (a bright band).

Usage (scikit-learn only for this script):
    python shared/peers/prepare.py /work/.mirror REFCODE
    REFCODE_NO_CUDA_OPS=1 REF_CHANNEL_MAX=16 PYTHONPATH=REFCODE/stylemapgan:<sklearn> \
        python tests/data/reference/stylemapgan/make_editing_reference.py REFCODE/stylemapgan
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

CONFIG = dict(size=32, mapping_layer_num=2, latent_channel_size=64, latent_spatial_size=8,
              lr_mul=0.01, channel_multiplier=2, normalize_mode="LayerNorm", small_generator=False)
LAMBDAS = [1.0, 0.75, 0.3, 0.0]  # generate.py's w = w1 * lambda + w2 * (1 - lambda)
AFHQ_BOXES = [((4, 2), (3, 2), 2, 4), ((0, 1), (0, 1), 3, 2)]  # generate.py's example
OVERLAP_BOXES = [((1, 1), (5, 5), 3, 3), ((2, 2), (0, 0), 2, 2)]  # the second overwrites
MAKEUP_RECT = (2, 5, 4, 2)  # semantic_manipulation.py: ref_p_x, ref_p_y, width, height


def class_source(path: Path, name: str) -> str:
    """The source of one top-level class of the authors' script."""
    text = path.read_text()
    node = next(n for n in ast.parse(text).body if isinstance(n, ast.ClassDef) and n.name == name)
    return ast.get_source_segment(text, node)


class Lambdas:
    """Stands in for the `random` module inside generate.py's Model: `random()` returns the
    listed lambdas in turn."""

    def __init__(self, values):
        self.values = list(values)

    def random(self):
        return self.values.pop(0)


def smooth_images(n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """Pictures with structure at several scales, in [-1, 1]."""
    coarse = torch.rand(n, 3, 4, 4, generator=gen) * 2 - 1
    fine = torch.rand(n, 3, size, size, generator=gen) * 2 - 1
    img = F.interpolate(coarse, size=size, mode="bilinear", align_corners=False) * 0.8 + fine * 0.2
    return img.clamp(-1, 1)


def main(refcode: Path, out: Path) -> None:
    sys.path.insert(0, str(refcode))
    from training.model import Encoder, Generator

    torch.manual_seed(0)
    train_args = argparse.Namespace(**CONFIG)
    g = Generator(CONFIG["size"], CONFIG["mapping_layer_num"], CONFIG["latent_channel_size"],
                  CONFIG["latent_spatial_size"], lr_mul=CONFIG["lr_mul"],
                  channel_multiplier=CONFIG["channel_multiplier"],
                  normalize_mode=CONFIG["normalize_mode"], small_generator=False)
    e = Encoder(CONFIG["size"], CONFIG["latent_channel_size"], CONFIG["latent_spatial_size"],
                channel_multiplier=CONFIG["channel_multiplier"])
    with torch.no_grad():  # non-zero biases, so that the tests see them
        for m in (g, e):
            for name, p in m.named_parameters():
                if name.endswith("bias"):
                    p.add_(torch.randn_like(p) * 0.1)
    g.eval(), e.eval()
    torch.save({"g_ema": g.state_dict(), "e_ema": e.state_dict(), "train_args": train_args},
               out / "tiny-8x8.pt")

    # generate.py's Model, as published
    ns = {"torch": torch, "nn": nn, "F": F, "Generator": Generator, "Encoder": Encoder,
          "args": train_args, "device": "cpu", "dataset_name": "afhq",
          "random": Lambdas(LAMBDAS)}
    exec(class_source(refcode / "generate.py", "Model"), ns)
    model = ns["Model"]()
    model.g_ema.load_state_dict(g.state_dict())
    model.e_ema.load_state_dict(e.state_dict())
    model.eval()

    gen = torch.Generator().manual_seed(1)
    images = smooth_images(2, CONFIG["size"], gen)
    io: dict = {"config": CONFIG, "images": images}
    with torch.no_grad():
        codes = model(images, "projection")
        io["encoded"] = codes
        io["recon_image"] = model(images, "reconstruction")
        io["interp_lambdas"] = list(LAMBDAS)
        io["interp_image"] = torch.cat([model((codes[0], codes[1]), "w_interpolation")
                                        for _ in LAMBDAS])
        for key, boxes in (("transplant", AFHQ_BOXES), ("transplant_overlap", OVERLAP_BOXES)):
            mixed, rec_src, rec_ref = model((images[0], images[1], boxes), "transplantation")
            io[f"{key}_boxes"] = boxes
            io[f"{key}_image"] = mixed
            assert torch.allclose(rec_src, io["recon_image"][:1], atol=1e-5)

    # semantic_manipulation.py: a boundary fitted as their __main__ does, then their Model
    from sklearn import svm

    n_pos, n_neg = 6, 7
    labelled = smooth_images(n_pos + n_neg, CONFIG["size"], gen)
    labelled[:n_pos, :, 20:28] = (labelled[:n_pos, :, 20:28] + 1.2).clamp(-1, 1)  # planted
    ns2 = {"torch": torch, "nn": nn, "Generator": Generator, "Encoder": Encoder,
           "train_args": train_args}
    exec(class_source(refcode / "semantic_manipulation.py", "Model"), ns2)
    sem = ns2["Model"]()
    sem.g_ema.load_state_dict(g.state_dict())
    sem.e_ema.load_state_dict(e.state_dict())
    sem.eval()
    with torch.no_grad():
        latent = sem(labelled, "project_latent").numpy()
    shape = latent[0].shape
    flat = latent.reshape(len(latent), -1)
    labels = np.concatenate([np.ones(n_pos, dtype=int), np.zeros(n_neg, dtype=int)])
    clf = svm.SVC(kernel="linear", max_iter=10000).fit(flat, labels)
    boundary = clf.coef_.reshape(1, -1).astype(np.float32)
    boundary = boundary / np.linalg.norm(boundary)
    boundary = torch.from_numpy(boundary.reshape(shape)).float()
    x, y, w, h = MAKEUP_RECT
    mask = torch.zeros(images.shape[0], 64, 8, 8)
    mask[:, :, y:y + h, x:x + w] = 1
    get_device = torch.Tensor.get_device
    torch.Tensor.get_device = lambda self: "cpu"  # their `.to(images.get_device())` on a CPU
    try:
        with torch.no_grad():
            moved = sem(images, "transform_to_other_part", -boundary, mask=mask)
    finally:
        torch.Tensor.get_device = get_device
    io.update({"svm_images": labelled, "svm_labels": torch.from_numpy(labels),
               "svm_codes": torch.from_numpy(latent), "svm_boundary": boundary,
               "svm_coef": torch.from_numpy(clf.coef_[0].copy()),
               "svm_intercept": float(clf.intercept_[0]),
               "semantic_distances": list(range(-20, 1, 5)), "semantic_rect_xywh": MAKEUP_RECT,
               # [global d=-20..0 for each image, then local d=-20..0], as their Model returns
               "semantic_image": moved})
    torch.save(io, out / "tiny-8x8-io.pt")
    print("wrote", out / "tiny-8x8.pt", out / "tiny-8x8-io.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).parent)
