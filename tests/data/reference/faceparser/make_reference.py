"""Make the face-parser reference data with the authors' own code (run by hand, not by the tests).

    python tests/data/reference/faceparser/make_reference.py /tmp/refcode/faceparse [out_dir]

The argument is a work tree of zllrunning/face-parsing.PyTorch at the commit SAM's submodule
pins (d2e684cf1588b46145635e8fe7bcc29544e5537e): the folder holding `model.py` and
`resnet.py`. Their code runs unmodified; one patch at import time: their `Resnet18` downloads
ImageNet weights in its constructor, so `torch.utils.model_zoo.load_url` answers an empty
dict (the checkpoint below overwrites every tensor anyway).

SAM's `segmenter_face` (src/segmenter_utils.py) is transcribed in `sam_segment`: BiSeNet(19)
loaded with `load_state_dict(torch.load(ckpt))`, input `ToTensor` + ImageNet `Normalize`,
`net(img)[0]`, argmax over the classes, and with `fuse_face_regions` every face part
(1, 2, 3, 4, 5, 7, 8, 10, 11, 12, 13, 14) set to class 3.

Writes, next to this script unless `out_dir` is given:
- `manifest.json`: key -> shape of their `BiSeNet(n_classes=19).state_dict()` (= the keys of
  the published `79999_iter.pth`).
- `tiny-io.pt`: per input, `pixels` (uint8 [1, 3, H, W], seeded) -> `logits` (their first
  output, [1, 19, H, W]; only for the first input), `labels` and `fused` (uint8 [H, W]).
  The real file has 13.3 M values; the weights are filled by `fill_tensor` (a rule the tests
  replay) and not stored.
"""
from __future__ import annotations

import json
import math
import sys
import zlib
from pathlib import Path

import numpy as np
import torch

SIZES = [(64, 64), (96, 64)]  # H x W, multiples of 32 as the network wants; small = fast tests
PIXEL_SEED = 5
PERIOD = 10007
FACE_PARTS = [1, 2, 3, 4, 5, 7, 8, 10, 11, 12, 13, 14]


def fill_tensor(key: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The deterministic value of one checkpoint tensor (the rule the tests replay): a
    randn(min(numel, PERIOD)) from a generator seeded with crc32(key), repeated in row-major
    order; then `num_batches_tracked` 0, `running_var` 1 + 0.25|n|, `running_mean` and `bias`
    0.1 n, other 1-D weights (BatchNorm) 1 + 0.1 n, convolution weights n / sqrt(fan_in)."""
    if key.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=torch.int64)
    numel = math.prod(shape)
    n = torch.randn(min(numel, PERIOD), generator=torch.Generator().manual_seed(zlib.crc32(key.encode())))
    if key.endswith("running_var"):
        n = 1 + 0.25 * n.abs()
    elif key.endswith(("running_mean", "bias")):
        n = 0.1 * n
    elif len(shape) == 1:
        n = 1 + 0.1 * n
    else:
        n = n / math.sqrt(math.prod(shape[1:]))
    return n.repeat(-(-numel // PERIOD))[:numel].reshape(shape).clone()


def fill_state(shapes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    return {k: fill_tensor(k, tuple(s)) for k, s in shapes.items()}


def pixels(i: int, size: tuple[int, int]) -> torch.Tensor:
    g = torch.Generator().manual_seed(PIXEL_SEED + i)
    return torch.randint(0, 256, (1, 3, *size), generator=g, dtype=torch.uint8)


def sam_segment(net, pix: torch.Tensor) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """SAM's segmenter_face.segment_pil on a picture given as uint8 pixels (ToTensor of the PIL
    image = pixels / 255), on the CPU."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    img_t = (pix.float() / 255 - mean) / std
    with torch.no_grad():
        out = net(img_t)[0]
    parsed = out.squeeze(0).detach().cpu().numpy().argmax(0)
    fused = parsed.copy()
    for idx in FACE_PARTS:
        fused[fused == idx] = 3
    return out, parsed, fused


def main(code: Path, out: Path) -> None:
    import torch.utils.model_zoo as model_zoo

    model_zoo.load_url = lambda *a, **k: {}  # their Resnet18() fetches ImageNet weights
    sys.path.insert(0, str(code))
    from model import BiSeNet  # noqa: E402  (the authors' code)

    torch.manual_seed(0)
    net = BiSeNet(n_classes=19)
    shapes = {k: list(v.shape) for k, v in net.state_dict().items()}
    (out / "manifest.json").write_text(json.dumps(shapes, indent=0))
    ckpt = out / "_tmp_79999_iter.pth"
    torch.save(fill_state(shapes), ckpt)
    net.load_state_dict(torch.load(ckpt))  # as segmenter_face
    ckpt.unlink()
    net.eval()
    runs = []
    for i, size in enumerate(SIZES):
        pix = pixels(i, size)
        logits, labels, fused = sam_segment(net, pix)
        run = {"pixels": pix, "labels": torch.from_numpy(labels).to(torch.uint8),
               "fused": torch.from_numpy(fused).to(torch.uint8)}
        if i == 0:
            run["logits"] = logits.float()
        runs.append(run)
        print(size, "classes found:", sorted(set(labels.flatten().tolist())))
    torch.save({"runs": runs, "face_parts": FACE_PARTS}, out / "tiny-io.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).parent)
