"""Make the e4e reference data with the authors' own code (run by hand, not by the tests).

    python tests/data/reference/e4e/make_reference.py /tmp/refcode/e4e [out_dir]

The argument is a work tree of omertov/encoder4editing (the folder holding `models/psp.py`).
Their code runs unmodified, with one patch at import time: `models/stylegan2/op` compiles
CUDA kernels when imported, so a pure-PyTorch stand-in for it (`fused_leaky_relu`,
`FusedLeakyReLU`, `upfirdn2d`) is put in `sys.modules` first, and `matplotlib` (which psp.py
only switches to the Agg backend) is stubbed when it is not installed. Neither is used by the
encoder; the stand-in ops only let their rosinality decoder run inside `pSp.forward`, whose
image is thrown away (the w+ codes do not depend on it).

Writes, next to this script unless `out_dir` is given:

- `manifest-e4e-{18,16,14}.json`: key -> shape of their `Encoder4Editing(50, 'ir_se', opts)`
  for `opts.stylegan_size` 1024 (FFHQ), 512 (cars), 256 (LSUN cats), built on the meta device:
  exactly the `encoder.*` keys (prefix stripped) of the published `e4e_*_encode.pt` files.
- `tiny-io.pt`: per domain, the w+ their `pSp` returns for seeded inputs, the way SAM calls it
  (`net(img_t, return_latents=True)[1]`), after loading a checkpoint file in the published
  layout the way SAM does (`opts = ckpt['opts']`, `opts['checkpoint_path'] = path`,
  `pSp(argparse.Namespace(**opts))`). The real weights are ~1 GB per domain, so the encoder
  and `latent_avg` are filled by `fill_state` below (a rule the tests replay) and only the
  input pixels and the outputs are stored.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import types
import zlib
from pathlib import Path

import torch
import torch.nn.functional as F

# (domain, stylegan_size, n_styles, their dataset_type, input sizes H x W). The authors feed
# 256x256 (cars 192x256); one real-size input keeps the test under its time budget (a forward
# pass at 256 px is ~35 GMAC), the smaller ones (same aspect ratios) are cheap.
DOMAINS = [("ffhq", 1024, 18, "ffhq_encode", [(256, 256), (64, 64)]),
           ("cars", 512, 16, "cars_encode", [(48, 64)]),
           ("cats", 256, 14, "cats_encode", [(64, 64)])]
PIXEL_SEED = 7  # input i of domain d uses seed PIXEL_SEED + 10 * d + i
PERIOD = 10007


def fill_tensor(key: str, shape: tuple[int, ...], batchnorm: bool = False) -> torch.Tensor:
    """The deterministic value of one checkpoint tensor (the rule the tests replay).

    Each key draws `n = randn(min(numel, PERIOD))` from its own `torch.Generator` seeded
    with `zlib.crc32(key)` and repeats it to fill the tensor in row-major order (element j is
    n[j % PERIOD]; PERIOD = 10007 is a prime that divides no dimension, so rows and channels
    all differ; drawing all ~270 M values would take ~5 s per encoder on two CPU cores). A
    value depends only on its key and shape. Then, by kind:
    `num_batches_tracked` 0 (int64); `running_var` 1 + 0.25 |n|; `running_mean` 0.1 n;
    a 1-D `weight` of a batch norm (`batchnorm=True`) 1 + 0.1 n, of a PReLU 0.25 + 0.05 n;
    any `bias` 0.1 n; `...linear.weight` (EqualLinear, which scales by 1/sqrt(in) itself) n;
    other weights (convolutions) n / sqrt(fan_in); `latent_avg` 0.5 n.
    """
    if key.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=torch.int64)
    numel = math.prod(shape)
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    n = torch.randn(min(numel, PERIOD), generator=g)
    if key.endswith("running_var"):
        n = 1 + 0.25 * n.abs()
    elif key.endswith("running_mean") or key.endswith("bias"):
        n = 0.1 * n
    elif key == "latent_avg":
        n = 0.5 * n
    elif key.endswith("linear.weight"):
        pass
    elif len(shape) == 1:  # batch-norm scale or PReLU slope
        n = 1 + 0.1 * n if batchnorm else 0.25 + 0.05 * n
    else:
        n = n / math.sqrt(math.prod(shape[1:]))
    return n.repeat(-(-numel // PERIOD))[:numel].reshape(shape)  # element j is n[j % PERIOD]


def fill_state(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Every tensor of a state dict (key -> shape) by `fill_tensor`, in sorted key order.
    A 1-D `weight` belongs to a batch norm when its module also has a `running_mean`."""
    return {k: fill_tensor(k, tuple(shapes[k]), k[:-len("weight")] + "running_mean" in shapes)
            for k in sorted(shapes)}


def pixels(height: int, width: int, seed: int = PIXEL_SEED) -> torch.Tensor:
    """Seeded uint8 pixels [1, 3, H, W]; the input is `pixels / 127.5 - 1` (in [-1, 1] as
    after their ToTensor + Normalize(0.5, 0.5))."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (1, 3, height, width), generator=g, dtype=torch.uint8)


def _stub_ops() -> None:
    """Pure-PyTorch stand-ins for their CUDA-only `models.stylegan2.op` (decoder only)."""

    def fused_leaky_relu(x, bias, negative_slope=0.2, scale=2 ** 0.5):
        shape = [1, -1] + [1] * (x.ndim - 2)
        return F.leaky_relu(x + bias.view(shape), negative_slope) * scale

    class FusedLeakyReLU(torch.nn.Module):
        def __init__(self, channel, negative_slope=0.2, scale=2 ** 0.5):
            super().__init__()
            self.bias = torch.nn.Parameter(torch.zeros(channel))
            self.negative_slope, self.scale = negative_slope, scale

        def forward(self, x):
            return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale)

    def upfirdn2d(x, kernel, up=1, down=1, pad=(0, 0)):
        b, c, h, w = x.shape
        if up > 1:  # zero insertion
            y = x.new_zeros(b, c, h * up, w * up)
            y[:, :, ::up, ::up] = x
            x = y
        x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
        k = torch.flip(kernel, [0, 1]).to(x)[None, None].repeat(c, 1, 1, 1)
        return F.conv2d(x, k, groups=c)[:, :, ::down, ::down]

    op = types.ModuleType("models.stylegan2.op")
    op.fused_leaky_relu, op.FusedLeakyReLU, op.upfirdn2d = fused_leaky_relu, FusedLeakyReLU, upfirdn2d
    sys.modules["models.stylegan2.op"] = op
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        mpl = types.ModuleType("matplotlib")
        mpl.use = lambda *a, **k: None
        sys.modules["matplotlib"] = mpl


def main(src: Path, out: Path) -> None:
    sys.path.insert(0, str(src))
    _stub_ops()
    from models.encoders import psp_encoders  # their code from here on
    from models.psp import pSp
    from models.stylegan2.model import Generator

    io: dict = {"pixel_seed": PIXEL_SEED, "rule": fill_tensor.__doc__}
    for d, (domain, size, n_styles, dataset_type, sizes) in enumerate(DOMAINS):
        with torch.device("meta"):
            enc = psp_encoders.Encoder4Editing(50, "ir_se", argparse.Namespace(stylegan_size=size))
        assert enc.style_count == n_styles
        shapes = {k: tuple(v.shape) for k, v in enc.state_dict().items()}
        manifest = {"config": {"encoder_type": "Encoder4Editing", "num_layers": 50, "mode": "ir_se",
                               "stylegan_size": size, "n_styles": n_styles},
                    "state_dict": {k: list(s) for k, s in shapes.items()}}
        (out / f"manifest-e4e-{n_styles}.json").write_text(json.dumps(manifest, indent=0) + "\n")

        # a checkpoint in the published layout (coach.__get_save_dict): the decoder keeps its
        # own random init (its values do not reach the w+ codes)
        torch.manual_seed(0)
        decoder = Generator(size, 512, 8, channel_multiplier=2).state_dict()
        state = {f"encoder.{k}": v for k, v in fill_state(shapes).items()}
        state.update({f"decoder.{k}": v for k, v in decoder.items()})
        opts = {"encoder_type": "Encoder4Editing", "stylegan_size": size, "dataset_type": dataset_type,
                "start_from_latent_avg": True, "checkpoint_path": None, "device": "cpu"}
        latent_avg = fill_tensor("latent_avg", (n_styles, 512))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"e4e_{domain}_encode.pt"
            torch.save({"state_dict": state, "opts": opts, "latent_avg": latent_avg}, path)
            del state, decoder
            ckpt = torch.load(path, map_location="cpu")  # as SAM's load_encoder does
            opts = ckpt["opts"]
            opts["checkpoint_path"] = str(path)
            opts["device"] = "cpu"
            net = pSp(argparse.Namespace(**opts)).eval()
        runs = []
        for i, (h, w) in enumerate(sizes):
            px = pixels(h, w, PIXEL_SEED + 10 * d + i)
            x = px.float() / 127.5 - 1
            with torch.no_grad():
                w_plus = net(x, return_latents=True)[1]
                codes = net.encoder(x)
            assert torch.equal(w_plus, codes + latent_avg)
            runs.append({"pixels": px, "codes": codes, "w_plus": w_plus})
            print(f"{domain} {h}x{w}: codes std {codes.std():.3f}, w0 std {codes[:, 0].std():.3f}, "
                  f"delta std {(codes[:, 1:] - codes[:, :1]).std():.3f}")
        io[domain] = {"stylegan_size": size, "n_styles": n_styles, "dataset_type": dataset_type,
                      "latent_avg": latent_avg, "runs": runs}
        print(f"{domain}: {len(shapes)} keys, {sum(math.prod(s) for s in shapes.values()) / 1e6:.1f} M "
              f"encoder values")
        del net
    torch.save(io, out / "tiny-io.pt")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) == 3 else Path(__file__).parent)
