"""One LPIPS (Zhang et al. 2018) wrapper for every optimiser, from the `lpips` package.

`lpips` ships its small linear heads in the wheel but builds its VGG/AlexNet backbone with
torchvision, which downloads the ImageNet weights into `torch.hub.get_dir()/checkpoints`
on first use. Offline that download fails deep inside torchvision; here it becomes a
UserError that says what to run. Tests (and anyone who sets SPATIAL_GAN_LPIPS_RANDOM=1)
get a randomly initialised backbone instead, which needs no download.
"""
from __future__ import annotations

import os
import torch

from core.errors import UserError
from core.forksafe import ForkSafeRLock
from core.hub import downloads_allowed

RANDOM_BACKBONE_ENV = "SPATIAL_GAN_LPIPS_RANDOM"
BACKBONE_FILES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth"}

_models: dict[tuple[str, str, bool], torch.nn.Module] = {}
_lock = ForkSafeRLock()  # a ZeroGPU worker may be forked while a backbone loads


def random_backbone() -> bool:
    return os.environ.get(RANDOM_BACKBONE_ENV, "") not in ("", "0", "false", "False")


def _build(net: str, spatial: bool = False) -> torch.nn.Module:
    import lpips

    where = os.path.join(torch.hub.get_dir(), "checkpoints", BACKBONE_FILES.get(net, "?"))
    if not random_backbone() and not downloads_allowed() and not os.path.isfile(where):
        raise UserError(f"The LPIPS {net.upper()} backbone is not downloaded yet.")
    try:
        model = lpips.LPIPS(net=net, verbose=False, pnet_rand=random_backbone(), spatial=spatial)
    except OSError as e:  # urllib's URLError and socket errors are OSErrors
        raise UserError(
            f"The LPIPS {net.upper()} backbone could not be downloaded from download.pytorch.org "
            f"({e}). Run `python -m core.hub download --all` on a machine with internet access, "
            f"or copy {BACKBONE_FILES.get(net)} to {where}.") from e
    return model.eval().requires_grad_(False)


def get_lpips(net: str = "vgg", device: torch.device | str = "cpu",
              spatial: bool = False) -> torch.nn.Module:
    """A cached LPIPS module on `device`; `model(x, y)` with images in [-1, 1] gives
    [B, 1, 1, 1] distances, or [B, 1, H, W] maps when `spatial`."""
    if net not in BACKBONE_FILES:
        raise ValueError(f"LPIPS backbone must be one of {sorted(BACKBONE_FILES)}, got {net!r}")
    key = (net, str(torch.device(device)), spatial)
    with _lock:
        if key not in _models:
            # built outside inference mode: a first call from an inference-mode handler would
            # otherwise make its buffers inference tensors, unusable by later optimisers
            with torch.inference_mode(False):
                _models[key] = _build(net, spatial).to(device)
        return _models[key]


def lpips_distance(x: torch.Tensor, y: torch.Tensor, net: str = "vgg",
                   spatial: bool = False) -> torch.Tensor:
    """LPIPS per image [B], or per pixel [B, 1, H, W] with `spatial` (error heat maps)."""
    d = get_lpips(net, x.device, spatial)(x.float(), y.float())
    return d if spatial else d.flatten()


def prefetch_backbone(nets: tuple[str, ...] = ("vgg",)) -> str:
    """Make sure the backbones are in torchvision's cache (for offline use): VGG only, the one
    every optimiser here uses (`core.kit.EXTRAS`)."""
    if random_backbone():
        return "LPIPS backbones skipped (random backbone mode)"
    for net in nets:
        _build(net)
    return f"LPIPS backbones ({', '.join(nets)}) cached in {torch.hub.get_dir()}/checkpoints"


class CachedTargetLPIPS(torch.nn.Module):
    """LPIPS against one fixed target, with the target's normalised features computed once.

    An optimiser compares thousands of renderings with the same photo; the `lpips` package
    would push the photo through VGG at every step. This computes exactly what
    `lpips.LPIPS.forward` computes (version 0.1: scaling layer, unit-normalised features,
    squared differences, linear heads, spatial mean or bilinear upsampling), with the
    target's half done once.
    """

    def __init__(self, model: torch.nn.Module, target: torch.Tensor):
        super().__init__()
        import lpips

        self.model, self._normalize = model, lpips.normalize_tensor
        with torch.no_grad():
            self.target_features = [self._normalize(f) for f in
                                    model.net(model.scaling_layer(target.float()))]

    def forward(self, x: torch.Tensor, spatial: bool = False) -> torch.Tensor:
        """x [B, 3, H, W] in [-1, 1] -> distances [B], or maps [B, 1, H, W] when `spatial`."""
        feats = self.model.net(self.model.scaling_layer(x.float()))
        total = 0
        for lin, f, t in zip(self.model.lins, feats, self.target_features):
            d = lin((self._normalize(f) - t) ** 2)
            total = total + (torch.nn.functional.interpolate(d, size=x.shape[2:], mode="bilinear",
                                                             align_corners=False)
                             if spatial else d.mean((2, 3), keepdim=True))
        return total if spatial else total.flatten()
