"""Reference data for core/models/sngan.py, made with the authors' own Chainer code.

Runs outside the app, in a Python 3.8 environment with Chainer 7.8:

    python3.8 -m venv /tmp/chainer38
    /tmp/chainer38/bin/pip install "numpy<1.24" "setuptools<70"
    /tmp/chainer38/bin/pip install --no-build-isolation chainer
    /tmp/chainer38/bin/python tests/data/reference/sngan/make_reference.py <neural-collage checkout>

The checkout is pfnet-research/neural-collage (commit c83bdb2). Its modules are imported
unchanged, with one exception: `source.functions.max_sv._l2normalize` is written as a CuPy
kernel (GPU only); on the CPU it is replaced by the same arithmetic in NumPy,
v / (sqrt(sum(v * v)) + eps). And `SCBNResNetGenerator.spatial_interpolation` makes its
dummy stream with `xp.zeros_like(hs[0])` of a Variable, which NumPy turns into an object
array (CuPy did not); `zeros_like` is given the Variable's array instead, same zeros.

Tiny models in the released layouts (the dog+cat 256 px configs): the generator
`gen_models/resnet_256{,_scbn,_auxab}.py` (one .npz serves all three classes), the
discriminator `dis_models/snresnet_256.py`, the encoder `enc_models/resnetenc_small.py`, with
ch = 2, dim_z = 8, n_classes = 3 and bottom_width = 1 (so the generator draws 64 px and the
encoder reads 32 px: the 256 px model has bottom_width 4, the same keys, a wider `l1`).
Every parameter and statistic is drawn at random, saved with `chainer.serializers.save_npz`
(the trainer's `snapshot_object` format) and read back with `load_npz` before use.

Writes next to this file:
- tiny-gen.npz, tiny-dis.npz, tiny-enc.npz, tiny-aux.npz: the weights.
- tiny-io.npz: inputs and outputs (names below). Inputs that are pictures or maps are stored
  as float16 after rounding, and used as float32 on both sides, to keep the file small.
  opt_{noaux,aux}_saved_z (the latent optimization.py saves) were added to the committed file
  by add_saved_z.py, from the committed weights and inputs (this script, run again, draws
  other random weights: its RandomState stream no longer reproduces the committed files).
"""
from __future__ import annotations

import os
import sys

import numpy as np

REPO = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                       "/work/.mirror/pfnet-research+neural-collage/worktree")
sys.path.insert(0, REPO)

import chainer  # noqa: E402
import chainer.functions as F  # noqa: E402
from chainer import Variable, optimizers  # noqa: E402

import source.functions.max_sv as max_sv  # noqa: E402


def _l2normalize(v, eps=1e-12):
    return v / (np.sqrt((v * v).sum()) + eps)


max_sv._l2normalize = _l2normalize  # the CuPy kernel's arithmetic, on the CPU
_zeros_like = np.zeros_like
np.zeros_like = lambda a, *args, **kwargs: _zeros_like(
    a.array if isinstance(a, chainer.Variable) else a, *args, **kwargs)

from dis_models.snresnet_256 import SNResNetProjectionDiscriminator  # noqa: E402
from enc_models.resnetenc_small import ResNetEncoder  # noqa: E402
from gen_models.resnet_256 import ResNetGenerator  # noqa: E402
from gen_models.resnet_256_auxab import ResNetAuxABGenerator  # noqa: E402
from gen_models.resnet_256_scbn import SCBNResNetGenerator  # noqa: E402

OUT = os.path.dirname(os.path.abspath(__file__))
CH, DIM_Z, N_CLASSES, BW = 1, 8, 3, 1
AUX = dict(dim_a=6, dim_b=5, dim_zeta=7, T=2, learned_lr=True, initial_fast_alpha=0.0002)
rng = np.random.RandomState(0)


def randomise(link: chainer.Link) -> None:
    """Every parameter and persistent array at random (BN variances positive)."""
    for name, p in link.namedparams():
        leaf = name.rsplit("/", 1)[-1]
        if leaf in ("gamma",) or name.endswith("gammas/W"):
            p.array[...] = 1 + 0.2 * rng.randn(*p.shape)
        elif leaf in ("beta", "b") or name.endswith("betas/W"):
            p.array[...] = 0.2 * rng.randn(*p.shape)
        elif "prelu" in name.lower():
            p.array[...] = rng.uniform(0.05, 0.4, p.shape)
        elif "_fast_alpha" in name:
            p.array[...] = rng.uniform(1e-4, 1e-3, p.shape)
        else:
            fan_in = int(np.prod(p.shape[1:])) or 1
            p.array[...] = rng.randn(*p.shape) / np.sqrt(fan_in)
    for path, child in [("", link)] + list(link.namedlinks(skipself=True)):
        for key in getattr(child, "_persistent", ()):
            value = getattr(child, key)
            if not isinstance(value, np.ndarray):
                continue
            if key == "avg_mean":
                value[...] = 0.3 * rng.randn(*value.shape)
            elif key == "avg_var":
                value[...] = rng.uniform(0.5, 2.0, value.shape)
            elif key == "u":
                value[...] = rng.randn(*value.shape)


def saved_and_loaded(link: chainer.Link, make, name: str) -> chainer.Link:
    """Save `link` as the trainer does, then load the file into a fresh model."""
    path = os.path.join(OUT, name)
    chainer.serializers.save_npz(path, link, compression=True)
    fresh = make()
    chainer.serializers.load_npz(path, fresh)
    return fresh


def f16(a: np.ndarray) -> np.ndarray:
    """Round an input to float16 (stored so), used as float32."""
    return np.asarray(a, np.float16).astype(np.float32)


def convex_maps(sizes, batch, n, rng) -> list[np.ndarray]:
    """Per-pixel class mixtures [B, H, W, n] (the authors' layout), rounded to float16 (so
    rows sum to 1 within 1e-3)."""
    maps = []
    for s in sizes:
        w = rng.gamma(0.5, size=(batch, s, s, n))
        maps.append(f16(w / w.sum(-1, keepdims=True)))
    return maps


def main() -> None:
    io: dict[str, np.ndarray] = {}
    make_gen = lambda: ResNetGenerator(ch=CH, dim_z=DIM_Z, bottom_width=BW, n_classes=N_CLASSES)
    gen = make_gen()
    with chainer.using_config("train", False):
        gen(batchsize=1)  # nothing is lazy, but run once anyway
    randomise(gen)
    gen = saved_and_loaded(gen, make_gen, "tiny-gen.npz")
    scbn = SCBNResNetGenerator(ch=CH, dim_z=DIM_Z, bottom_width=BW, n_classes=N_CLASSES)
    chainer.serializers.load_npz(os.path.join(OUT, "tiny-gen.npz"), scbn)  # the same file

    make_dis = lambda: SNResNetProjectionDiscriminator(ch=CH, n_classes=N_CLASSES)
    dis = make_dis()
    randomise(dis)
    dis = saved_and_loaded(dis, make_dis, "tiny-dis.npz")

    make_enc = lambda: ResNetEncoder(ch=CH, dim_z=DIM_Z, bottom_width=BW, n_classes=N_CLASSES)
    enc = make_enc()
    randomise(enc)
    enc = saved_and_loaded(enc, make_enc, "tiny-enc.npz")

    make_aux = lambda: ResNetAuxABGenerator(ch=CH, dim_z=DIM_Z, bottom_width=BW,
                                            n_classes=N_CLASSES, **AUX)
    aux = make_aux()
    chainer.serializers.load_npz(os.path.join(OUT, "tiny-gen.npz"), aux, strict=False)
    for name in ("lA1", "lA2", "lB1", "lB2", "preluW", "preluMiddleW", "_fast_alpha"):
        randomise(getattr(aux, name))
    aux = saved_and_loaded(aux, make_aux, "tiny-aux.npz")

    size = BW * 64
    with chainer.using_config("train", False), chainer.using_config("enable_backprop", False):
        # 1. the plain generator (categorical conditional BN), two pictures
        z = rng.randn(2, DIM_Z).astype(np.float32)
        y = np.array([0, 2], np.int32)
        io["z"], io["y"] = z, y
        io["image"] = gen(z=z, y=y).array

        # 2. sCBN: one class mixture per pixel at each of the 12 batch norms
        sizes = [BW * s for s in (4, 8, 8, 16, 16, 32, 32, 64, 64, 128, 128, 256)]
        sizes = [max(1, s // 4) for s in sizes]  # bottom_width 1: 1, 2, 2, 4, ..., 64
        maps = convex_maps(sizes, 1, N_CLASSES, rng)
        for i, m in enumerate(maps):
            io[f"scbn_map_{i}"] = m.astype(np.float16)
        io["scbn_image"] = scbn.spatial_interpolation(z=z[:1], weights=[Variable(m) for m in maps]).array
        # uniform maps of class y[0] reproduce the plain picture (their demo's gen_images)
        uniform = [np.zeros((1, s, s, N_CLASSES), np.float32) for s in sizes]
        for m in uniform:
            m[..., y[0]] = 1
        io["scbn_uniform_image"] = scbn.spatial_interpolation(z=z[:1], weights=uniform).array

        # 3. sCBN + feature blending in one pass (Fig. 2d): streams z_src, z_ref and the
        # blended one; blends[l] [B, h, w, 3] = (source, reference, blended stream) weights
        z_ref = rng.randn(1, DIM_Z).astype(np.float32)
        io["z_ref"] = z_ref
        blend_sizes = [BW * s for s in (1, 2, 4, 8, 16, 32, 64)]
        blends = []
        for layer, s in enumerate(blend_sizes):
            b = np.zeros((1, s, s, 3), np.float32)
            ref = f16(rng.uniform(0, 1, (1, s, s)) * (rng.uniform(0, 1, (1, s, s)) > 0.4))
            if layer == 0:
                b[..., 0] = 1 - ref
            b[..., 1] = ref if layer in (0, 1, 3) else 0
            b[..., 2] = 1 - b[..., 0] - b[..., 1]
            blends.append(b)
            io[f"blend_{layer}"] = b[..., 1].astype(np.float16)
        io["blend_scbn_image"] = scbn.spatial_interpolation(
            zs=[z[:1], z_ref], weights=[Variable(m) for m in maps], blends=blends).array

        # 4. encoder (class-conditional BN), 32 px input
        x_enc = f16(np.tanh(rng.randn(1, 3, BW * 32, BW * 32)))
        io["enc_input"] = x_enc.astype(np.float16)
        io["enc_class"] = np.array([1], np.int32)
        io["enc_z"] = enc(x_enc, io["enc_class"]).array

        # 5. auxiliary network: A (z -> zeta), B (zeta -> z') and the picture of z'
        io["aux_zeta"] = aux.forward_A(z[:1]).array
        h, _, _, z_prime = aux.forward(z=z[:1], y=y[:1], return_zs=True)
        io["aux_z_prime"], io["aux_image"] = z_prime.array, h.array

        # 6. the discriminator's feature path (Eq. 4 compares these)
        gt = f16(np.tanh(rng.randn(1, 3, size, size)))
        io["gt"] = gt.astype(np.float16)
        io["dis_features"] = dis.feature_vector(gt).array

    # 7. optimization.py, transcribed: 3 steps in each mode from the encoder's z
    for mode in ("noaux", "aux"):
        losses, z0, saved = optimise(gen if mode == "noaux" else aux, dis, enc, gt, x_enc,
                                     io["enc_class"], aux_mode=mode == "aux", steps=3)
        io[f"opt_{mode}_losses"] = losses  # [steps, 2]: cosine term, 0.2 x pixel term
        io[f"opt_{mode}_latent"] = z0  # the optimised parameter after the last update (z / zeta)
        io[f"opt_{mode}_saved_z"] = saved  # the z optimization.py saves (opt_final.npy, opt-z.npy)
    np.savez_compressed(os.path.join(OUT, "tiny-io.npz"), **io)
    print({k: v.shape for k, v in io.items()})


def optimise(gen, dis, enc, gt, x, c, aux_mode: bool, steps: int):
    """The body of optimization.py (lmd_pixel 0.2, Adam 0.075 on z / 0.015 on zeta) ->
    (losses, the parameter after the last update, the z it saves: with the auxiliary network
    the z' = B(zeta) its last forward returned (`recon, _, _, z = gen.forward(zeta=...,
    return_zs=True)`, before that step's update), else `z = target.W` after the update)."""
    def reconstruction_loss(recon, target):
        with chainer.using_config("train", False):
            v1 = dis.feature_vector(recon)
            v2 = dis.feature_vector(target)
        denom = F.sqrt(F.batch_l2_norm_squared(v1) * F.batch_l2_norm_squared(v2))
        total = Variable(np.array(0.0, dtype=np.float32))
        for i in range(target.shape[0]):
            total += F.matmul(v1[i], v2[i], transb=True) / denom[i]
        return -total

    with chainer.using_config("train", False), chainer.using_config("enable_backprop", False):
        z = enc(x, c)
        if aux_mode:
            z2 = gen.forward_A(z)
    optimizer = optimizers.Adam(alpha=0.015 if aux_mode else 0.075)
    target = chainer.links.Parameter((z2 if aux_mode else z).array)
    optimizer.setup(target)
    gt = Variable(gt)
    losses = []
    for _ in range(steps):
        target.cleargrads()
        w = target.W
        with chainer.using_config("train", False):
            if aux_mode:
                recon, _, _, z = gen.forward(zeta=w, y=c, return_zs=True)
            else:
                recon = gen(z=w, y=c)
        l1 = reconstruction_loss(recon, gt)
        l2 = 0.2 * F.mean_squared_error(recon, gt)
        (l1 + l2).backward()
        optimizer.update()
        if not aux_mode:
            z = target.W
        losses.append([float(l1.array), float(l2.array)])
    return np.array(losses, np.float32), target.W.array.copy(), z.array.copy()


if __name__ == "__main__":
    main()
