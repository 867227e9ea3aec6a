"""Make the ADE20K segmenter reference data with the authors' own code (run by hand, not by the tests).

    python tests/data/reference/ade20k/make_reference.py /tmp/refcode/semseg [out_dir]

The argument is a work tree of CSAILVision/semantic-segmentation-pytorch at the commit SAM's
submodule pins (8f27c9b97d2ca7c6e05333d5766d144bf7d8c31b): the folder holding `mit_semseg/`.
Their code runs unmodified. For the manifest only, the encoder is first built without a
weights file, which makes their `resnet50(pretrained=True)` fetch ImageNet weights: their
`load_url` is answered with an empty dict there (loaded with strict=False, so nothing
changes). The run itself builds both networks from weights files, as SAM does.

SAM's `segmenter_hrnet(ds="ade20k", H=192, W=256)` (src/segmenter_utils.py) is transcribed
in `sam_segment`: `ModelBuilder.build_encoder("resnet50dilated", fc_dim=2048, weights=...)`,
`build_decoder("ppm_deepsup", fc_dim=2048, num_class=150, weights=..., use_softmax=True)`,
`SegmentationModule(enc, dec, NLLLoss(ignore_index=-1))` in eval mode, input pixels / 255
ImageNet-normalised, `module({"img_data": x}, segSize=(H, W))`, argmax, then their class
merges (0-based: 6, 13 -> 3; 21 -> 60; 102, 83 -> 20; 29 -> 9).

Writes, next to this script unless `out_dir` is given:
- `manifest-encoder.json`, `manifest-decoder.json`: key -> shape of their encoder and decoder
  state dicts (= the keys of the published `encoder_epoch_20.pth`, `decoder_epoch_20.pth`).
- `tiny-io.pt`: per input, `pixels` (uint8 [1, 3, H, W], seeded), `seg_size`, `probs` (their
  softmax output [1, 150, h, w], first input only), `labels` and `merged` (uint8 [h, w]). The
  weights (~51 M values) are filled by `fill_tensor` (the face parser's rule, copied below;
  the tests replay it) and not stored.
"""
from __future__ import annotations

import json
import math
import sys
import zlib
from pathlib import Path

import numpy as np
import torch

# (input H x W, segSize): a car-shaped picture (SAM's 192 x 256 target at a quarter) and a
# square one (cats); small inputs keep the tests fast.
RUNS = [((48, 64), (24, 32)), ((64, 64), (64, 64))]
PIXEL_SEED = 11
PERIOD = 10007
MERGES = [(6, 3), (13, 3), (21, 60), (102, 20), (83, 20), (29, 9)]  # their order


def fill_tensor(key: str, shape: tuple[int, ...]) -> torch.Tensor:
    """Same rule as tests/data/reference/faceparser/make_reference.py: randn(min(numel,
    PERIOD)) seeded with crc32(key), repeated; `num_batches_tracked` 0, `running_var`
    1 + 0.25|n|, `running_mean` and `bias` 0.1 n, other 1-D weights 1 + 0.1 n, convolution
    weights n / sqrt(fan_in)."""
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


def sam_segment(module, pix: torch.Tensor, seg_size: tuple[int, int]) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """SAM's segmenter_hrnet.segment_pil on uint8 pixels, on the CPU."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    img_t = (pix.float() / 255 - mean) / std
    with torch.no_grad():
        probs = module({"img_data": img_t}, segSize=seg_size)
        _, pred = torch.max(probs, dim=1)
    labels = pred.squeeze(0).cpu().numpy()
    merged = labels.copy()
    for source, target in MERGES:
        merged[merged == source] = target
    return probs, labels, merged


def main(code: Path, out: Path) -> None:
    sys.path.insert(0, str(code))
    from mit_semseg.models import ModelBuilder, SegmentationModule  # the authors' code
    from mit_semseg.models import resnet

    resnet.load_url = lambda *a, **k: {}  # only the manifest's weightless build reaches it

    torch.manual_seed(0)
    files = {}
    for part in ("encoder", "decoder"):
        net = (ModelBuilder.build_encoder("resnet50dilated", fc_dim=2048, weights="") if part == "encoder"
               else ModelBuilder.build_decoder("ppm_deepsup", fc_dim=2048, num_class=150))
        shapes = {k: list(v.shape) for k, v in net.state_dict().items()}
        (out / f"manifest-{part}.json").write_text(json.dumps(shapes, indent=0))
        files[part] = out / f"_tmp_{part}_epoch_20.pth"
        torch.save(fill_state(shapes), files[part])
    enc = ModelBuilder.build_encoder(arch="resnet50dilated", fc_dim=2048, weights=str(files["encoder"]))
    dec = ModelBuilder.build_decoder(arch="ppm_deepsup", fc_dim=2048, num_class=150,
                                     weights=str(files["decoder"]), use_softmax=True)
    for f in files.values():
        f.unlink()
    module = SegmentationModule(enc, dec, torch.nn.NLLLoss(ignore_index=-1)).eval()
    runs = []
    for i, (size, seg_size) in enumerate(RUNS):
        pix = pixels(i, size)
        probs, labels, merged = sam_segment(module, pix, seg_size)
        run = {"pixels": pix, "seg_size": seg_size, "labels": torch.from_numpy(labels).to(torch.uint8),
               "merged": torch.from_numpy(merged).to(torch.uint8)}
        if i == 0:
            run["probs"] = probs.float()
        runs.append(run)
        print(size, "classes found:", sorted(set(labels.flatten().tolist())))
    torch.save({"runs": runs, "merges": MERGES}, out / "tiny-io.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).parent)
