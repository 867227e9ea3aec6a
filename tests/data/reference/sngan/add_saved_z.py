"""Adds to tiny-io.npz the latent that the authors' optimization.py saves after its loop
(opt_final.npy, opt-z.npy), from the committed tiny weights and inputs, with the authors' own
Chainer code (the environment of make_reference.py, which writes these keys too when it
makes every file anew):

    /tmp/chainer38/bin/python tests/data/reference/sngan/add_saved_z.py <neural-collage checkout>

optimization.py keeps, with the auxiliary network (--mode aux), the z' = B(zeta) that its last
forward pass returned (`recon, _, _, z = gen.forward(zeta=_target, y=c, return_zs=True)`,
before that step's `optimizer.update()`), and without it `z = target.W` after the update.
Runs make_reference.optimise (3 steps, as for opt_*_losses), checks its losses and final
parameter against the committed ones, then writes opt_{noaux,aux}_saved_z.
"""
from __future__ import annotations

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import chainer  # noqa: E402

import make_reference as ref  # noqa: E402  (the authors' modules, patched for the CPU)


def loaded(make, name: str):
    link = make()
    chainer.serializers.load_npz(os.path.join(HERE, name), link)
    return link


def main() -> None:
    gen = loaded(lambda: ref.ResNetGenerator(ch=ref.CH, dim_z=ref.DIM_Z, bottom_width=ref.BW,
                                             n_classes=ref.N_CLASSES), "tiny-gen.npz")
    dis = loaded(lambda: ref.SNResNetProjectionDiscriminator(ch=ref.CH, n_classes=ref.N_CLASSES),
                 "tiny-dis.npz")
    enc = loaded(lambda: ref.ResNetEncoder(ch=ref.CH, dim_z=ref.DIM_Z, bottom_width=ref.BW,
                                           n_classes=ref.N_CLASSES), "tiny-enc.npz")
    aux = loaded(lambda: ref.ResNetAuxABGenerator(ch=ref.CH, dim_z=ref.DIM_Z, bottom_width=ref.BW,
                                                  n_classes=ref.N_CLASSES, **ref.AUX), "tiny-aux.npz")
    path = os.path.join(HERE, "tiny-io.npz")
    io = dict(np.load(path))
    gt, x = io["gt"].astype(np.float32), io["enc_input"].astype(np.float32)
    for mode in ("noaux", "aux"):
        losses, latent, saved = ref.optimise(gen if mode == "noaux" else aux, dis, enc, gt, x,
                                             io["enc_class"], aux_mode=mode == "aux", steps=3)
        assert np.allclose(losses, io[f"opt_{mode}_losses"], atol=1e-6), mode
        assert np.allclose(latent, io[f"opt_{mode}_latent"], atol=1e-6), mode
        io[f"opt_{mode}_saved_z"] = saved
    np.savez_compressed(path, **io)
    print({k: v.shape for k, v in io.items() if k.endswith("saved_z")})


if __name__ == "__main__":
    main()
