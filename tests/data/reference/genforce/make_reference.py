"""Reference data for core/models/genforce.py, made with the PandA authors' own genforce code.

PandA (james-oldfield/PandA, commit 28a9907) ships a modified copy of genforce under
`networks/genforce`; its `networks/load_generator.py` builds `build_generator(**MODEL_ZOO[name])`
(gan_type 'stylegan2': `StyleGAN2Generator(resolution)` with every other argument at its
default) and loads `torch.load(path)['generator_smooth']` (else `['generator']`). Their code is
pure PyTorch and is run here unchanged, from an extracted copy that is not committed:

    mkdir -p /tmp/panda-genforce
    git -C <PandA checkout> archive HEAD networks/genforce/models model.py | tar -x -C /tmp/panda-genforce
    python tests/data/reference/genforce/make_reference.py /tmp/panda-genforce

Tiny model: resolution 32, z = w = mapping width 16, 3 mapping layers, fmaps_max 8 (so every
layer has 8 channels; fmaps_base stays at its default 32 << 10, as in the real file). Every
parameter and buffer is drawn at random (biases, style biases, noise strengths, the fixed
noise buffers, `truncation.w_avg`), except the FIR filter kernels, which are constants of the
architecture. Saved as the genforce converters save, `{'generator': ..., 'discriminator': ...,
'generator_smooth': ...}`, with a different random 'generator' (so a loader that picks it
instead of 'generator_smooth' fails) and an empty discriminator.

The outputs are computed the way PandA's `model.py` `Model.sample` calls the generator:
`w = G.mapping(z)['w']`, `wp = G.truncation(w, trunc_psi, trunc_layers=18)` and
`G.synthesis(wp, start=0, stop=l)['x']` for the features at "layer l" (the output of
genforce's `layer{l-1}`), `G.synthesis(wp, x=Z, start=l)['image']` for their resumed picture
(which starts a fresh RGB skip at layer l), noise from the fixed buffers (randomize_noise
False, their default). z for sample t is theirs: `np.random.seed(t); np.random.randn(1, dim)`.

Writes next to this file:
- tiny.pth: the checkpoint (their layout).
- tiny-io.npz: `z` [3, 16] (samples 0, 1, 2), `w` [3, 16] (mapping), `image` [3, 3, 32, 32]
  (full synthesis, start=0, psi 1), `image_psi07` (psi 0.7 on all layers, around w_avg),
  `features_l{4,5}` [2, 8, 16, 16] and `resumed_l{4,5}` [2, 3, 32, 32] (samples 0, 1).
- manifest-afhqdog-512.json: `config` (MODEL_ZOO 'stylegan2_afhqdog512' without its url) and
  `state_dict`, key -> shape of the generator the real file must load into.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/panda-genforce").resolve()
sys.path.insert(0, str(REPO))

from networks.genforce.models import MODEL_ZOO, build_generator  # noqa: E402

OUT = Path(__file__).resolve().parent
TINY = dict(gan_type="stylegan2", resolution=32, z_space_dim=16, w_space_dim=16,
            mapping_fmaps=16, mapping_layers=3, fmaps_max=8)
LAYERS = (4, 5)  # PandA "layer l": after an upsampling layer (as AFHQ's l = 8), after an even one
TRUNC_LAYERS = 18  # PandA's default (every layer)


def randomised(seed: int):
    """A tiny genforce generator with every parameter and buffer random (kernels excepted)."""
    torch.manual_seed(seed)
    G = build_generator(**TINY)
    with torch.no_grad():
        for name, t in G.state_dict().items():
            if name.endswith("kernel"):
                continue  # the FIR filters are fixed by the architecture
            if name.startswith("mapping.") and name.endswith("bias"):
                t.copy_(torch.randn_like(t) * 0.2 / G.mapping_lr_mul)  # used times lr_mul
            elif name.endswith("bias"):  # conv, ToRGB and style-affine biases
                t.copy_(torch.randn_like(t) * 0.2)
            elif name.endswith("noise_strength"):
                t.copy_(torch.randn_like(t) * 0.3)
            elif name == "truncation.w_avg":
                t.copy_(torch.randn_like(t) * 0.5)
            else:  # weights, the constant input, the noise buffers
                t.copy_(torch.randn_like(t) / (G.mapping_lr_mul if name.startswith("mapping.") else 1))
    return G.eval()


def sample_z(t: int, dim: int) -> np.ndarray:
    np.random.seed(t)
    return np.random.randn(1, dim)


def main() -> None:
    G = randomised(0)
    other = randomised(1)
    ckpt = {"generator": other.state_dict(), "discriminator": {},
            "generator_smooth": G.state_dict()}
    torch.save(ckpt, OUT / "tiny.pth")

    # read back through torch.load, as their loader does
    G = build_generator(**TINY)
    G.load_state_dict(torch.load(OUT / "tiny.pth", map_location="cpu")["generator_smooth"])
    G.eval()

    io: dict[str, np.ndarray] = {}
    z = torch.Tensor(np.concatenate([sample_z(t, G.z_space_dim) for t in range(3)]))
    with torch.no_grad():
        w = G.mapping(z)["w"]
        wp = G.truncation(w, trunc_psi=1.0, trunc_layers=TRUNC_LAYERS)
        io.update(z=z.numpy(), w=w.numpy(),
                  image=G.synthesis(wp, start=0)["image"].numpy())
        wp07 = G.truncation(w, trunc_psi=0.7, trunc_layers=TRUNC_LAYERS)
        io["image_psi07"] = G.synthesis(wp07, start=0)["image"].numpy()
        for layer in LAYERS:
            Z = G.synthesis(wp[:2], start=0, stop=layer)["x"]  # two samples: a small file
            io[f"features_l{layer}"] = Z.numpy()
            io[f"resumed_l{layer}"] = G.synthesis(wp[:2], x=Z, start=layer)["image"].numpy()
    np.savez_compressed(OUT / "tiny-io.npz", **{k: v.astype(np.float32) for k, v in io.items()})

    zoo = {k: v for k, v in MODEL_ZOO["stylegan2_afhqdog512"].items() if k != "url"}
    with torch.device("meta"):
        big = build_generator(**zoo)
    manifest = {"config": zoo, "state_dict": {k: list(v.shape) for k, v in big.state_dict().items()}}
    (OUT / "manifest-afhqdog-512.json").write_text(json.dumps(manifest, indent=0) + "\n")
    print({k: v.shape for k, v in io.items()}, len(manifest["state_dict"]), "keys at 512 px")


if __name__ == "__main__":
    main()
