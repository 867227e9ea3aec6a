"""The paper's part-independence measure s_c (Sec. 4.4, Table 1): how much of the change
made by swapping one part lands outside it (`leakage`, `variation_map`, `independence`), the
part painted or cut from face landmarks (`face_parts`), and Table 1's numbers to compare
with. Models and tensors, no widgets."""
from __future__ import annotations

from types import MappingProxyType
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageDraw

from core.errors import UserError
from core.faces import detect
from demos.collage.engine import Paired, regenerate, sample_images

# the paper's independence measure s_c (Sec. 4.4, Table 1): N = 20 samples per repeat, 100
# repeats; parts from a face-parsing network. Table 1's s_c per part, for the two face models
TABLE1_SAMPLES = 20
TABLE1_REPEATS = 100
# face parts from dlib's 68 landmarks (0-based indices): a stand-in for Table 1's face parser
# for the parts landmarks outline; skin is the face (jaw line and brows) minus the others
LANDMARK_PARTS = MappingProxyType({"eyes": (range(36, 42), range(42, 48)),
                                   "nose": (range(27, 36),), "mouth": (range(48, 60),)})
PART_CHOICES = ("painted region", "eyes", "nose", "mouth", "skin")
TABLE1 = MappingProxyType({
    "collage-pgan-celebahq": ("ProGAN CelebA-HQ", {
        "background": 0.167, "skin": 0.177, "eyes": 0.043, "ears": 0.024, "nose": 0.030,
        "mouth": 0.038, "hair": 0.170, "average": 0.093}),
    "collage-ffhq": ("StyleGAN2 FFHQ", {
        "background": 0.148, "skin": 0.248, "eyes": 0.062, "ears": 0.024, "nose": 0.065,
        "mouth": 0.045, "hair": 0.140, "average": 0.105}),
})


def leakage(outputs: torch.Tensor, part: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The paper's Sec. 4.4 measure on N regenerations that differ only in part c ->
    (sigma_c [H, W], s_c). sigma_c is the per-pixel standard deviation over the N (population,
    averaged over RGB); v_c = sigma_c / sum(sigma_c) its normalised map; s_c = sum((1 - m_c) *
    v_c), the share of the variation that lands outside the part (0: perfectly independent;
    Table 1's number)."""
    sigma = outputs.float().std(0, unbiased=False).mean(0)
    v = sigma / sigma.sum().clamp(min=1e-12)
    outside = 1 - part.reshape(part.shape[-2:]).to(v)
    return sigma, float((outside * v).sum())


@torch.inference_mode()
def variation_map(E: torch.nn.Module, G: Paired, base: torch.Tensor, part: torch.Tensor,
                  n: int, seed: int, batch: int = 4) -> tuple[torch.Tensor, float]:
    """One repeat of the paper's independence probe: put n other samples' (seeds seed,
    seed + 1, ...) pixels into the part, regenerate each with the full mask (x_{c,n} =
    G(E(m_c x_n + (1 - m_c) x))) -> `leakage` of the n results."""
    if n < 2:
        raise UserError("Use at least 2 samples for a standard deviation.")
    outs = []
    for start in range(0, n, batch):
        seeds = [seed + k for k in range(start, min(n, start + batch))]
        donors = sample_images(G, seeds).to(base)
        canvas = part * donors + (1 - part) * base
        outs.append(regenerate(E, G, canvas, torch.ones_like(part).expand(len(seeds), -1, -1, -1))[0].cpu())
    return leakage(torch.cat(outs), part.cpu())


def _hull(points: np.ndarray, size: int, scale: float = 1.0) -> np.ndarray:
    """The filled convex hull of landmark points, grown by `scale` about its centre -> [S, S]."""
    from scipy.spatial import ConvexHull  # scipy loads on first use, not with the app

    centre = points.mean(0)
    pts = centre + (points - centre) * scale
    hull = pts[ConvexHull(pts).vertices]
    canvas = Image.new("L", (size, size), 0)
    ImageDraw.Draw(canvas).polygon([tuple(map(float, q)) for q in hull], fill=255)
    return np.asarray(canvas) > 127


def face_parts(picture: np.ndarray) -> dict[str, torch.Tensor]:
    """A face picture (uint8 [S, S, 3], an aligned face) -> {eyes, nose, mouth, skin} masks
    [1, 1, S, S] from dlib's 68 landmarks of its largest face (eyes and mouth grown by 30 %
    and 15 % to include lids and lips' edge; skin = the hull of jaw line and brows minus the
    three). Raises UserError when no face is found."""
    faces = detect(Image.fromarray(picture))
    if not faces:
        raise UserError("No face found in the picture: face parts need a face; paint the part "
                        "instead (Part: painted region).")
    lm, size = faces[0].landmarks, picture.shape[0]
    grow = {"eyes": 1.3, "nose": 1.0, "mouth": 1.15}
    parts = {name: np.any([_hull(lm[list(ix)], size, grow[name]) for ix in groups], axis=0)
             for name, groups in LANDMARK_PARTS.items()}
    face = _hull(lm[:27], size)
    parts["skin"] = face & ~(parts["eyes"] | parts["nose"] | parts["mouth"])
    return {k: torch.from_numpy(v.astype(np.float32))[None, None] for k, v in parts.items()}


def independence(E: torch.nn.Module, G: Paired, base: torch.Tensor, part: torch.Tensor, n: int,
                 repeats: int, seed: int, progress: Callable[[int, int], None] | None = None,
                 part_of: Callable[[torch.Tensor], torch.Tensor] | None = None
                 ) -> tuple[torch.Tensor, list[float]]:
    """s_c repeated (Table 1 averages repeats over faces): repeat 1 is on `base`, repeat r > 1
    on generated picture seed + repeats * n + r - 1, each with its own n donors (repeat r:
    seeds seed + (r - 1) n ...) -> (mean sigma_c map, s_c per repeat). The part is `part` on
    every repeat, or `part_of(picture)` of each repeat's picture (face parts per face)."""
    sigmas, scores = [], []
    for r in range(repeats):
        x = base if r == 0 else sample_images(G, [seed + repeats * n + r]).to(base)
        if part_of is not None:
            part = part_of(x).to(base)
        sigma, s = variation_map(E, G, x, part, n, seed + r * n)
        sigmas.append(sigma)
        scores.append(s)
        if progress:
            progress(r + 1, repeats)
    return torch.stack(sigmas).mean(0), scores


def segmentation_sentence(choice: str) -> str:
    """How the part was cut (recipes and the summary line)."""
    if choice == PART_CHOICES[0]:
        return "the region you paint, the same on every repeat"
    return (f"the {choice} from dlib's 68 landmarks of each repeat's face (background, ears "
            "and hair have no landmark outline)")


def table1_line(model_id: str, choice: str = PART_CHOICES[0]) -> str:
    """The paper's Table 1 row for this regressor, and how our number differs from it."""
    if model_id not in TABLE1:
        return ("The paper's Table 1 measures the two face models only (ProGAN CelebA-HQ, "
                "StyleGAN2 FFHQ).")
    name, row = TABLE1[model_id]
    parts = ", ".join(f"{k} {v:.3f}" for k, v in row.items())
    return (f"Table 1, {name}: {parts}. There each face is cut into parts by a face-parsing "
            f"network and s_c is averaged over {TABLE1_REPEATS} repeats of N = {TABLE1_SAMPLES}; "
            f"here the part is {segmentation_sentence(choice)}.")
