"""A person's photo as a code of one StyleGAN2 model, shared by every StyleGAN2 editor.

SAM's inversion (W+ plus masked feature residuals), a quick e4e or W+ inversion, and PandA's
or the directions' edits all speak about the same rosinality StyleGAN2 layers, so one
inverted photo can flow from tab to tab: a tab makes a `PhotoCode`, puts it in the session's
`core.ui.photo_code_state` (one gr.State per app, kept on the page being built), and any other tab
reads it, renders it, edits the features of its own pass, and pastes the result back into
the photo. No tab owns it and no tab imports another.

Layer k is the rosinality synthesis layer k (`core/models/stylegan2.py`): SAM's F4..F10 are
layers 4..10, PandA's "layer l" is layer l-1. A residual at layer k is added after that
layer, so the features a later edit sees already hold it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from PIL import Image

from core.device import placement
from core.errors import UserError
from core.faces import Aligned, FramedPhoto
from core.images import pil_to_tensor
from core.inversion import Frame, Inversion, LOSS_SIZE
from core.recipe import open_run

QUICK_STEPS = (200, 20)  # Adam steps in W+ after the start for a quick code (GPU, CPU)


@dataclass
class PhotoCode:
    """W+ [1, n_latent, D] and residuals {k: [1, C, r, r]} inside masks {k: [1, 1, r, r]}
    for `model_id`, on the CPU; `framed` (a core.faces.FramedPhoto) is the photo and where
    the model's crop of it lies, for paste-back (None for a generated picture)."""
    model_id: str
    w_plus: torch.Tensor
    deltas: dict[int, torch.Tensor] = field(default_factory=dict)
    masks: dict[int, torch.Tensor] = field(default_factory=dict)
    method: str = "SAM"  # what made it, for the recipe and the status line
    framed: object | None = None

    def __post_init__(self):
        if set(self.deltas) != set(self.masks):
            raise ValueError("every residual needs its mask")

    def describe(self) -> str:
        spaces = "W+" + "".join(f" + F{k}" for k in sorted(self.deltas))
        return f"photo code of {self.model_id} ({spaces}, by {self.method})"

    def check_model(self, model_id: str | None) -> None:
        """A code means something only to the model it was made for."""
        if model_id != self.model_id:
            raise UserError(f"This photo code belongs to model {self.model_id!r}, not "
                            f"{model_id!r}: switch back to {self.model_id!r}, or invert the "
                            f"photo again for {model_id!r}.")

    def residuals(self, G, first: int = 0, last: int = 10 ** 6) -> dict:
        """The residuals of layers first..last as G's `synthesis` takes them: {k: (dF_k, m_k)}
        on G's device and in its dtype."""
        device, dtype = placement(G)
        return {k: (d.to(device, dtype), self.masks[k].to(device, dtype))
                for k, d in self.deltas.items() if first <= k <= last}

    def _w(self, G, w_plus: torch.Tensor | None = None) -> torch.Tensor:
        device, dtype = placement(G)
        return (self.w_plus if w_plus is None else w_plus).to(device, dtype)

    @torch.no_grad()
    def render(self, G) -> torch.Tensor:
        """The reconstruction g(W+) with every residual in place -> [1, 3, H, W]."""
        return G.synthesis(self._w(G), deltas=self.residuals(G))

    @torch.no_grad()
    def render_edited(self, G, layer: int, edit: Callable[[torch.Tensor], torch.Tensor],
                      w_plus: torch.Tensor | None = None) -> torch.Tensor:
        """The pass with the features after `layer` (residuals up to it included) replaced by
        `edit(features)`, then the rest of the pass with the later residuals: an edit that
        returns its input renders exactly `render`. `w_plus`: another W+ (a direction's)."""
        w = self._w(G, w_plus)
        state = G.synthesis_until(w, layer, deltas=self.residuals(G, last=layer))
        state = state.with_features(edit(state.features))
        return G.synthesis_from(state, w, deltas=self.residuals(G, first=layer + 1))

    def arrays(self) -> dict[str, np.ndarray]:
        """Named arrays for `latents.npz` (SAM's keys: 'W+', 'F4', 'mask_F4', ...)."""
        out = {"W+": self.w_plus.float().cpu().numpy()}
        for k in sorted(self.deltas):
            out[f"F{k}"] = self.deltas[k].float().cpu().numpy()
            out[f"mask_F{k}"] = self.masks[k].float().cpu().numpy()
        return out

    @classmethod
    def from_arrays(cls, model_id: str, arrays: dict[str, np.ndarray], method: str = "SAM",
                    framed=None) -> "PhotoCode":
        """The inverse of `arrays` (a saved run's latents.npz)."""
        if "W+" not in arrays:
            raise UserError("This file holds no photo code: its latents have no 'W+'.")
        layers = sorted(int(k[1:]) for k in arrays if k.startswith("F") and k[1:].isdigit())
        missing = [k for k in layers if f"mask_F{k}" not in arrays]
        if missing:
            raise UserError(f"This photo code lacks the masks of F{missing[0]}.")
        return cls(model_id, torch.from_numpy(np.asarray(arrays["W+"], np.float32)),
                   {k: torch.from_numpy(np.asarray(arrays[f"F{k}"], np.float32)) for k in layers},
                   {k: torch.from_numpy(np.asarray(arrays[f"mask_F{k}"], np.float32)) for k in layers},
                   method, framed)

    def in_photo(self, picture: np.ndarray) -> np.ndarray | None:
        """A rendering of this code pasted back into the person's photo (full resolution),
        or None for a code without a photo."""
        if self.framed is None:
            return None
        return np.asarray(self.framed.paste(picture))


# ---- a quick code: e4e where registered, then a short optimisation in W+ ------------------------
def prepare_target(aligned) -> tuple[torch.Tensor, Frame]:
    """A framed photo (`core.faces.Aligned`) as the inversion's losses see it: its picture
    area (cars: the rows between the bars) Lanczos-resized to LOSS_SIZE wide (cars: 256 x 192,
    SAM's authors' target size), and where those rows lie in the LOSS_SIZE square."""
    l, t, r, b = aligned.content
    size = aligned.size
    frame = Frame() if (t, b) == (0, size) else Frame.for_content(size, (r - l, b - t))
    picture = aligned.image.crop(aligned.content).resize((LOSS_SIZE, frame.bottom - frame.top),
                                                         Image.Resampling.LANCZOS)
    return pil_to_tensor(picture), frame


def encoder_of(ctx, model_id: str):
    """The e4e encoder registered for generator `model_id` (its entry), or None."""
    return ctx.registry.companion(model_id, "encoder")


def start_w(ctx, model_id: str, G, target: torch.Tensor) -> torch.Tensor:
    """An inversion's start: e4e's code for the photo where an encoder is registered, else
    the mean w in every layer."""
    enc = encoder_of(ctx, model_id)
    if enc is None:
        return G.w_plus(G.truncation_center()).clone()
    from core.models.e4e import e4e_input

    E = ctx.model(enc.id, torch.float32)
    with torch.no_grad():  # the authors' input size (cars 192x256, else 256x256)
        return E(e4e_input(target.to(G.device), E.input_size)).float()


def quick_code(ctx, model_id: str, G, framed, steps: int, lpips_model,
               report: Callable[[int, int], None] = lambda done, total: None) -> PhotoCode:
    """A photo's code in W+ only, in seconds: e4e's code where registered (or the mean w),
    then `steps` Adam steps of SAM's W+ objective (its losses and schedule, no feature
    residuals). Less faithful than a SAM inversion, enough to edit with."""
    target, frame = prepare_target(framed.aligned)
    w = start_w(ctx, model_id, G, target)
    if steps > 0:
        inversion = Inversion(G, target, {}, w, lpips_model, steps=steps, frame=frame)
        while not inversion.done:
            inversion.step()
            report(inversion.step_index, steps)
        w = inversion.codes().w_plus
    start = "e4e" if encoder_of(ctx, model_id) else "mean w"
    return PhotoCode(model_id, w.detach().cpu().float(),
                     method=f"quick W+ ({start} + {steps} steps)", framed=framed)


# ---- a code in a saved run ("Download all") and back ------------------------------------------
def run_parts(code: PhotoCode) -> tuple[dict, dict, dict]:
    """(images, arrays, settings) that let a saved run restore `code`: the photo and the
    model's crop of it, W+ and residuals (latents.npz), and where the crop lies."""
    images, settings = {}, {"photo_code": {"model": code.model_id, "method": code.method}}
    if code.framed is not None:
        images = {"photo": np.asarray(code.framed.photo.convert("RGB")),
                  "network_input": np.asarray(code.framed.aligned.image.convert("RGB"))}
        settings["photo_code"]["photo"] = code.framed.describe()
    return images, code.arrays(), settings


def code_from_bundle(bundle) -> PhotoCode:
    """The photo code a saved run (core.recipe.read_bundle) holds, with its photo if saved."""
    from PIL import Image


    about = (bundle.recipe.get("settings") or {}).get("photo_code")
    if not about or "W+" not in bundle.arrays:
        raise UserError("This run holds no photo code: save one from a run that inverted a "
                        "photo (SAM, PandA) or showed a code (Generate).")
    framed = None
    photo = about.get("photo")
    if photo and "photo" in bundle.images and "network_input" in bundle.images:
        aligned = Aligned(Image.fromarray(bundle.images["network_input"]), np.asarray(photo["quad"]),
                          photo["framing"], tuple(photo["photo_size"]), tuple(photo["content"]))
        framed = FramedPhoto(Image.fromarray(bundle.images["photo"]), aligned)
    return PhotoCode.from_arrays(about["model"], bundle.arrays, about.get("method", "SAM"), framed)


def saved_model(file: str | None) -> str | None:
    """The model a saved run (.zip) renders with: its photo code's, else the run's; None for
    no file or one that is not a run (its handler then says why)."""

    if not file:
        return None
    try:
        recipe = open_run(file, pictures=False, arrays=False).recipe
    except UserError:
        return None
    about = (recipe.get("settings") or {}).get("photo_code") if isinstance(recipe, dict) else None
    return (about or {}).get("model") or recipe.get("model_id")
