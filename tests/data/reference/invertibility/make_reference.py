"""Make the SAM invertibility-predictor reference data with the authors' code (run by hand).

    python tests/data/reference/invertibility/make_reference.py /tmp/refcode/sam [out_dir]

The argument is a checkout of adobe-research/sam_inversion with its submodule
jfzhang95/pytorch-deeplab-xception at `src/nets/pytorch-deeplab-xception` (as
`git clone --recursive` gives). Their `load_invertibility` (src/model_utils.py) runs unmodified
on the CPU; three things are patched around it, none inside the network:

- `ResNet._load_pretrained_model` does nothing (it downloads ImageNet weights that the fill
  below overwrites anyway);
- `nn.Module.cuda` returns the module unchanged (their loader calls `.cuda()`);
- the working directory is the checkout (their loader appends the relative
  `./src/nets/pytorch-deeplab-xception` to sys.path).

The real ResNet-101 is too big to store, so no weights file is kept. Instead every tensor of the
published checkpoint dict is filled by `fill` below (documented in README.md; the test repeats
it), the dict is saved in the published layout to a temporary file and loaded by their
`load_invertibility`. Writes, next to this script unless `out_dir` is given:

- `manifest-invertibility.json`: part -> key -> shape of the published checkpoint dict
  (`sd_base` = their `DeepLab(num_classes=8, backbone="resnet", output_stride=16,
  sync_bn=False)`, and one `layer_head()` per space), built on the meta device;
- `tiny-io.pt`: `x` [2, 3, 65, 90] in [-1, 1] -> `maps` {space: [2, 1, 65, 90]} from their
  `fn_inv(x)`, plus `base` (their DeepLab's 8-channel output) and `fill_seed`, `spaces`.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import torch

SPACES = ("W+", "F4", "F6", "F8", "F10")  # the names SAM passes as --latent_names
FILL_SEED, INPUT_SEED = 1234, 7
INPUT_SHAPE = (2, 3, 65, 90)  # odd sizes: every resize in the network rounds


def fill(index: int, key: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """The value of the `index`-th tensor (parts in the order sd_base, W+, F4, F6, F8, F10,
    keys sorted within each part) of the checkpoint dict, from its own seeded generator.

    Weights with >= 2 dims: N(0, 1) * sqrt(2 / fan), fan = numel / shape[0] (He); BatchNorm weights
    0.5 + 0.25 * N(0, 1) (small enough that 33 residual blocks stay in range); other biases and
    running means 0.1 * N(0, 1); running variances 0.5 + U[0, 1); integer buffers
    (num_batches_tracked) 0."""
    if not dtype.is_floating_point:
        return torch.zeros(shape, dtype=dtype)
    g = torch.Generator().manual_seed(FILL_SEED + index)
    if key.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=g)
    noise = torch.randn(shape, generator=g)
    if len(shape) >= 2:
        return noise * (2 / noise[0].numel()) ** 0.5  # He init
    if key.endswith(".weight"):  # a BatchNorm scale
        return 0.5 + 0.25 * noise
    return 0.1 * noise


def filled(layout: dict[str, dict[str, torch.Tensor]]) -> dict[str, dict[str, torch.Tensor]]:
    """The checkpoint dict with every tensor of `layout` (shapes, dtypes) replaced by `fill`."""
    out, index = {}, 0
    for part, state in layout.items():
        out[part] = {}
        for key in sorted(state):
            out[part][key] = fill(index, key, tuple(state[key].shape), state[key].dtype)
            index += 1
    return out


def main(src: Path, out: Path) -> None:
    src, out = src.resolve(), out.resolve()
    os.chdir(src)
    sys.path.insert(0, str(src / "src"))
    sys.path.insert(0, str(src / "src/nets/pytorch-deeplab-xception"))
    import model_utils  # their src/model_utils.py
    from modeling.backbone import resnet
    from modeling.deeplab import DeepLab

    resnet.ResNet._load_pretrained_model = lambda self: None  # no ImageNet download
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self  # their loader on the CPU

    with torch.device("meta"):  # the constructors of their load_invertibility
        layout = {"sd_base": DeepLab(num_classes=8, backbone="resnet", output_stride=16,
                                     sync_bn=False, freeze_bn=False).state_dict()}
        layout.update({name: model_utils.layer_head().state_dict() for name in SPACES})
    manifest = {part: {k: list(v.shape) for k, v in state.items()} for part, state in layout.items()}
    (out / "manifest-invertibility.json").write_text(json.dumps(manifest, indent=0) + "\n")

    ckpt = filled(layout)
    g = torch.Generator().manual_seed(INPUT_SEED)
    x = torch.rand(INPUT_SHAPE, generator=g) * 2 - 1
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "invertibility_tiny_sg2.pt"
        torch.save(ckpt, path)
        fn_inv = model_utils.load_invertibility(",".join(SPACES), str(path))
        maps = fn_inv(x)
        # their DeepLab alone, for locating a mismatch (same weights, same input)
        base = DeepLab(num_classes=8, backbone="resnet", output_stride=16, sync_bn=False)
        base.load_state_dict(torch.load(path)["sd_base"])
        with torch.no_grad():
            base_out = base.eval()(x)
    torch.save({"x": x, "maps": {k: v.contiguous() for k, v in maps.items()}, "base": base_out,
                "spaces": list(SPACES), "fill_seed": FILL_SEED, "torch": torch.__version__},
               out / "tiny-io.pt")
    for name, m in maps.items():
        print(f"{name}: shape {list(m.shape)}, mean {m.mean():.4f}, max {m.max():.4f}, "
              f"zero {float((m == 0).float().mean()):.0%}")
    print(f"base: std {base_out.std():.4f}, max |.| {base_out.abs().max():.4f}")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) == 3 else Path(__file__).parent)
