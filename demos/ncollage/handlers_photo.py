"""Neural Collage's photo handlers: fit a photo (it becomes the base picture), then paste the
last edit back into it at its full resolution inside a mask the person can paint."""
from __future__ import annotations

from typing import NamedTuple

import gradio as gr
import numpy as np
import torch
from PIL import Image

from core.context import AppContext
from core.errors import UserError
from core.gpu import gpu_task, user_errors
from core.images import editor_is_empty, mask_from_editor, pil_to_tensor, to_uint8
from core.lpips import get_lpips
from core.photo_slot import frame_input
from core.recipe import Run
from core.ui import record
from core.classes import is_sngan, model_class, parse_class
from demos.ncollage.engine import is_conditional
from demos.ncollage.handlers import TAB, base_settings, frame_size, latents, load, picked
from demos.ncollage.photo import (AUTHORS_STEPS, LR_Z, LR_ZETA, PIXEL_WEIGHT, authors_scale,
                                  fit_sngan, paste_back, project)
from demos.ncollage.state import BaseState, Edit

PROJECTION_GPU_SECONDS = 0.05  # estimated GPU time of one fitting step at 128 px (ZeroGPU's duration)


def projection_needs(ctx: AppContext, model_id: str | None, image, class_text, steps, truncation,
                     use_aux: bool = True, *_, **__) -> list:
    """A photo's fit: the generator in float32 and, for SNGAN, its encoder, discriminator and
    (if used) auxiliary network; BigGAN-deep's LPIPS projection warms the backbone."""
    picked(ctx, model_id)
    helpers = ["encoder", "discriminator"] + (["auxiliary"] if use_aux else [])
    ids = [model_id] + [companion(ctx, role, model_id) for role in helpers]
    if ctx.registry.get(model_id).arch != "sngan":
        get_lpips("vgg", ctx.device)
    return [(i, torch.float32) for i in ids if i]


def projection_seconds(ctx: AppContext, model_id: str | None, image, class_text, steps: float,
                       *_, **__) -> float:
    """GPU time of a photo's fit: its steps at the model's size."""
    return 20 + float(steps) * PROJECTION_GPU_SECONDS * (frame_size(ctx, model_id) / 128) ** 2


def companion(ctx: AppContext, role: str, generator_id: str) -> str | None:
    """The id of the registry entry in `role` made for the generator (SNGAN's encoder,
    discriminator, auxiliary network), or None."""
    found = ctx.registry.companion(generator_id, role)
    return found.id if found else None


class ProjectionOutputs(NamedTuple):
    """`project_photo`'s outputs: base state, fit, base picture, editor, info, network input, run."""
    state: BaseState
    projection: np.ndarray
    image: np.ndarray
    editor: np.ndarray
    info: str
    network: dict
    run: Run


@gpu_task(duration=projection_seconds, needs=projection_needs)
def project_photo(ctx: AppContext, model_id: str | None, image: str | np.ndarray | None,
                  class_text: str | None, steps: float, truncation: float, use_aux: bool = True,
                  face: float | None = 1, plain: bool = False, progress=gr.Progress()
                  ) -> ProjectionOutputs:
    """Fit the model to a photo; the fit becomes the base picture -> (base state, fit, base
    picture, label editor, loss summary, the network input labelled with what it is, run).
    SNGAN: the paper's Eq. 4 (encoder start, discriminator features); BigGAN-deep: LPIPS
    projection. The frame is kept in the state, so the edit can go back into the photo."""
    G = load(ctx, model_id, torch.float32)  # gradients: float32 on every device
    if not is_conditional(G):
        raise UserError("Photo editing is offered for SNGAN and BigGAN-deep models; pick one.")
    # the app's one framing rule: the registry's framing for this model (ImageNet: centre crop)
    framed, _ = frame_input(ctx, model_id, image, G.size, face, plain)
    network_input = np.asarray(framed.aligned.image)
    target = pil_to_tensor(framed.aligned.image)
    index = parse_class(class_text)
    cls = model_class(G, index)
    steps = int(steps)
    report = lambda d, t, l: progress(d / t, desc=f"Step {d}/{t} · loss {l:.3f}")  # noqa: E731
    if is_sngan(G):
        enc_id = companion(ctx, "encoder", model_id)
        dis_id = companion(ctx, "discriminator", model_id)
        if not enc_id or not dis_id:
            raise UserError(f"{model_id} has no registered encoder and discriminator (entries of "
                            f"arch sngan-encoder / sngan-discriminator whose generator is {model_id}).")
        aux_id = companion(ctx, "auxiliary", model_id) if use_aux else None
        E, D = ctx.model(enc_id, torch.float32), ctx.model(dis_id, torch.float32)
        aux = ctx.model(aux_id, torch.float32) if aux_id else None
        enc_img = framed.aligned.image.resize((E.input_size,) * 2, Image.Resampling.BICUBIC)
        gt = authors_scale(target)
        pic, out, terms = fit_sngan(G, D, E, aux, authors_scale(pil_to_tensor(enc_img)), gt, cls,
                                    steps, progress=report)
        losses = terms.sum(1).tolist()
        how = (f"Eq. 4 (cosine of the discriminator's features + {PIXEL_WEIGHT} x MSE), Adam "
               f"{LR_ZETA if aux else LR_Z} on {'zeta (auxiliary network)' if aux else 'z'}")
        models = {"generator": model_id, "encoder": enc_id, "discriminator": dis_id,
                  **({"auxiliary": aux_id} if aux_id else {})}
        extra = {"loss_terms": terms}
    else:
        pic, out, losses = project(G, target, cls, float(truncation), steps, progress=report)
        how = f"LPIPS-VGG + {PIXEL_WEIGHT} x MSE, Adam {LR_Z} on z (class fixed)"
        models, extra = {"generator": model_id}, {}
    state = BaseState(model_id, pic, pic.truncation, seed=None, class_index=index, photo=target,
                      framed=framed)
    shown = to_uint8(out)[0]
    info = (f"Loss {losses[0]:.3f} → **{losses[-1]:.3f}** in {len(losses)} of the authors' "
            f"{AUTHORS_STEPS} steps ({how}). The fit is now the base picture: paint labels or "
            "blend features, then paste back.")
    run = record(
        ctx, TAB, "project", models,
        images={"photo": framed.photo, "network_input": network_input, "projection": shown},
        arrays={**latents(pic), "losses": losses, **extra}, seeds=[] if is_sngan(G) else [0],
        settings={"class": index, "truncation": pic.truncation, "steps": steps, "method": how,
                  "pixel_weight": PIXEL_WEIGHT, **framed.describe()},
        notes=f"{framed.note()}: the fit matches it; images/photo is the upload, upright. "
              + ("z starts from the encoder." if is_sngan(G) else "seed 0 draws the starting z."))
    return ProjectionOutputs(state, shown, shown, shown, info,
                             gr.update(value=network_input, label=framed.note()), run)


def paste_mask(state: BaseState | None, edit: Edit | None) -> dict | None:
    """The paste-back mask editor for the last edit of a photo: the edited picture with the
    edited region painted (paint more, or erase, before pasting)."""
    if not state or state.photo is None or not edit:
        return None
    picture = to_uint8(edit.image)[0]
    layer = np.zeros(picture.shape[:2] + (4,), np.uint8)
    layer[edit.region[0, 0].numpy() > 0] = (255, 255, 255, 255)
    rgba = np.concatenate([picture, np.full(picture.shape[:2] + (1,), 255, np.uint8)], -1)
    composite = rgba.copy()
    composite[layer[..., 3] > 0] = layer[layer[..., 3] > 0]
    return {"background": rgba, "layers": [layer], "composite": composite}


class PasteOutputs(NamedTuple):
    """`paste_edit`'s outputs: photo frame with the edit, result in your photo, run."""
    pasted: np.ndarray
    in_photo: np.ndarray
    run: Run


@user_errors
def paste_edit(ctx: AppContext, state: BaseState | None, edit: Edit | None, mask: dict | None = None
               ) -> PasteOutputs:
    """Put the last edit (label collage or feature blend) back into the photo (no model
    runs): Poisson-blend it into the network input inside the mask (painted in the mask
    editor; default the edited region), then that frame into the uploaded photo at full
    resolution inside the same mask (feathered; the rest keeps its pixels) -> (frame with
    the edit, result in your photo, run)."""
    if not state or state.photo is None:
        raise UserError("Project a photo first (the paste goes back into that photo).")
    if not edit:
        raise UserError("Apply a label collage or a feature blend to the photo's fit first.")
    framed = state.framed
    size = edit.image.shape[-1]
    region = edit.region
    if mask is not None and not editor_is_empty(mask):
        region = mask_from_editor(mask, size, required=False)
        if region.sum() == 0:
            raise UserError("The paste-back mask is empty: paint where the edit should go.")
    result = to_uint8(paste_back(state.photo, edit.image, region))[0]
    in_photo = np.asarray(framed.paste(result, region[0, 0].cpu().numpy()))
    run = record(
        ctx, TAB, "paste_back", {"generator": state.model},
        images={"result_in_photo": in_photo, "photo": framed.photo,
                "network_input": state.photo, "edited": edit.image, "pasted": result},
        masks={"region": region}, arrays=latents(state.picture),
        settings={**base_settings(state), "blend": "Poisson", "edit": edit.what,
                  "mask": "painted" if region is not edit.region else "edited region",
                  **framed.describe()},
        notes="The edit Poisson-blended into the network input inside masks/region (pasted, "
              "at the model's size), then pasted back into the photo at full resolution "
              "inside that region (result_in_photo).")
    return PasteOutputs(result, in_photo, run)
