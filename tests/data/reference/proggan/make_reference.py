"""Make the ProGAN reference data with the authors' own code (run by hand, not by the tests).

    python tests/data/reference/proggan/make_reference.py /tmp/refcode/lc [out_dir]

The argument is the authors' `utils/proggan.py` (chail/latent-composition, the GAN Dissection
generator) or a folder holding `utils/proggan.py` (and `utils/zdataset.py`, used for the seeded
z). Writes, next to this script unless `out_dir` is given:

- `tiny.pth`: the state dict of their `ProgressiveGenerator(sizes=TINY_SIZES)` (32 px, z_dim
  32), saved with `torch.save(model.state_dict())` like the published files, filled with
  `torch.manual_seed(FILL_SEED)`: conv weights N(0, 1) (as equalized-learning-rate weights
  are), biases 0.2 * N(0, 1), in their parameter order.
- `tiny-io.pt`: `z` [2, 32] (N(0, 1) * 2 from `torch.manual_seed(Z_SEED)`) -> `image` and
  `features` (every block's output by name, from their modules); `seed`, `z_seed` = their
  `zdataset.z_sample_for_model(model, 3, seed)` [3, 32, 1, 1] -> `image_seed`; `sizes`,
  `resolution`.
- `manifest-proggan-{256,1024}.json`: key -> shape of their `ProgressiveGenerator(resolution=R)`
  (built on the meta device), i.e. of the published 256 px (LSUN) and 1024 px (CelebA-HQ) files.
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import torch

TINY_SIZES = [32, 16, 16, 8, 8]
FILL_SEED, Z_SEED, SAMPLE_SEED = 0, 1, 5


def import_file(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(src: Path, out: Path) -> None:
    utils = src.parent if src.is_file() else src / "utils"
    proggan = import_file("authors_proggan", utils / "proggan.py")
    zdataset = import_file("authors_zdataset", utils / "zdataset.py")

    for res in (256, 1024):
        with torch.device("meta"):
            model = proggan.ProgressiveGenerator(resolution=res)
        sizes = proggan.sizes_from_state_dict(model.state_dict())
        manifest = {"config": {"resolution": res, "sizes": sizes},
                    "state_dict": {k: list(v.shape) for k, v in model.state_dict().items()}}
        (out / f"manifest-proggan-{res}.json").write_text(json.dumps(manifest, indent=0) + "\n")

    torch.manual_seed(FILL_SEED)
    model = proggan.ProgressiveGenerator(sizes=TINY_SIZES).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape) * (1.0 if name.endswith("conv.weight") else 0.2))
    torch.save(model.state_dict(), out / "tiny.pth")
    model = proggan.from_state_dict(torch.load(out / "tiny.pth")).eval()  # their loader

    features = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: features.__setitem__(n, o.clone()))
             for n, m in model.named_children()]
    torch.manual_seed(Z_SEED)
    z = torch.randn(2, TINY_SIZES[0]) * 2
    with torch.no_grad():
        image = model(z)
    for h in hooks:
        h.remove()
    z_seed = zdataset.z_sample_for_model(model, 3, seed=SAMPLE_SEED)
    with torch.no_grad():
        image_seed = model(z_seed)
    resolution = image.shape[-1]
    torch.save({"sizes": TINY_SIZES, "resolution": resolution, "z": z, "image": image,
                "features": features, "seed": SAMPLE_SEED, "z_seed": z_seed,
                "image_seed": image_seed}, out / "tiny-io.pt")
    clamped = float((image.abs() == 1).float().mean())
    print(f"tiny {resolution}px: {len(features)} blocks, {clamped:.0%} of the image clamped")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) == 3 else Path(__file__).parent)
