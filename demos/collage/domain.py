"""A Collage domain from the registry: the regressor and the generator it was trained for
(`load_pair`, what a call needs), their frame and picture area, and a person's photo in that
frame. A photo enters Compose (as the base) and Inpaint opened with `open_photo`, framed as
the domain's training pictures were (`core.photo_slot.frame_input`: FFHQ or CelebA-HQ face
alignment, letterbox, centre crop); while the editor still holds its network input a result
is also pasted back into the photo at full resolution ("Result in your photo")."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from core.context import AppContext
from core.errors import UserError
from core.faces import FramedPhoto
from core.images import ExamplePhoto, photos_for
from core.photo_slot import frame_input, frame_size, still_shows
from core.recipe import Run
from demos.collage.engine import Paired

DEFAULT_FRAME = 512  # the shift sliders' span while no generator size is known


def load_pair(ctx: AppContext, model_id: str | None,
              dtype: torch.dtype | None = None) -> tuple[torch.nn.Module, Paired]:
    """(regressor E, the generator G it was trained for): the pairing is the regressor's
    registry entry (`generator`); a regressor whose latent G cannot take is refused here
    rather than failing inside the network."""
    if not model_id:
        raise UserError("Pick a domain first.")
    entry = ctx.registry.get(model_id)
    gen_id = ctx.registry.generator_of(entry).id
    E, G = ctx.model(model_id, dtype), ctx.model(gen_id, dtype)
    if E.n_latent != G.n_latent:  # ProGAN: one z on both sides
        raise UserError(f"{model_id} predicts {E.n_latent} style vectors but {gen_id} takes "
                        f"{G.n_latent}: they are not a matching pair.")
    return E, G


def pair_ids(ctx: AppContext, model_id: str | None, *_, **__) -> list[str]:
    """What a call on this domain needs before it computes (`core.gpu`): the regressor and
    the generator it was trained for."""
    if not model_id:
        raise UserError("Pick a domain first.")
    return [model_id, ctx.registry.generator_of(ctx.registry.get(model_id)).id]


def pair_ids_float32(ctx: AppContext, model_id: str | None, *_, **__) -> list:
    """The pair, and in float32 too (optimisers: fine-tuning)."""
    ids = pair_ids(ctx, model_id)
    return ids + [(i, torch.float32) for i in ids]


def roles(ctx: AppContext, model_id: str) -> dict[str, str | None]:
    """The recipe's models: the regressor and its generator."""
    return {"regressor": model_id, "generator": ctx.registry.get(model_id).generator}


def content_of(ctx: AppContext, model_id: str) -> tuple[int, int] | None:
    """The picture area (width, height) inside the generator's square frame when smaller
    (LSUN cars' letterbox): the regressor's registry `meta.content`, else its generator's."""
    return ctx.registry.content_of(ctx.registry.get(model_id))


def shift_span(ctx: AppContext, model_id: str | None) -> int:
    """The shift sliders' span: the paired generator's picture size, from the registry
    (nothing is loaded), or DEFAULT_FRAME when the pairing is unknown (the Compose button
    then says what is wrong). Unlike `core.photo_slot.frame_size` it always gives a number."""
    if not model_id:
        return DEFAULT_FRAME
    try:
        size = ctx.registry.generator_of(ctx.registry.get(model_id)).image_size()
    except UserError:
        return DEFAULT_FRAME
    return size or DEFAULT_FRAME


def framing_of(ctx: AppContext, model_id: str) -> str:
    """How photos are cut for a domain: the regressor's registry framing (inherited from its
    generator: the regressor sees what the generator draws)."""
    return ctx.registry.framing_of(ctx.registry.get(model_id))


def domain_photos(ctx: AppContext, ids: Sequence[str]) -> list[ExamplePhoto]:
    """The example photos that suit the tab's domains (`photos_for` each, in order, once
    each): faces for the face domains, animals for the others."""
    seen, photos = set(), []
    for model_id in ids:
        for p in photos_for(framing_of(ctx, model_id), model_id):
            if p.path not in seen:
                seen.add(p.path)
                photos.append(p)
    return photos


def frame_for_domain(ctx: AppContext, model_id: str | None, photo: Any, face: float | None = 1,
                     plain: bool = False) -> FramedPhoto:
    """A person's photo (a path) -> `FramedPhoto` in the paired generator's frame (its size,
    the domain's framing and content area), so the regressor sees it as it saw its training
    pictures (`core.photo_slot.frame_input`: a sample the domain drew is taken as drawn)."""
    if not model_id:
        raise UserError("Pick a domain first.")
    size = frame_size(ctx, model_id)
    if not size:
        raise UserError(f"The registry does not say what size {model_id}'s generator draws: "
                        f"it cannot frame a photo for it.")
    return frame_input(ctx, model_id, photo, size, face, plain)[0]


def photo_in_use(framed_photo: FramedPhoto | None, value: dict | None) -> FramedPhoto | None:
    """The kept photo if the editor still holds its network input (paint on top is fine);
    None once a sample, an example or another picture replaced it, so a result is never
    pasted into a photo it was not made from. A browser's canvas may re-encode the picture,
    so `core.images.editor_holds` allows small differences."""
    return framed_photo if still_shows(value, framed_photo) else None


def in_photo_images(framed_photo: FramedPhoto | None, result: np.ndarray,
                    mask: np.ndarray | None = None) -> dict:
    """"Result in your photo" for a run's pictures: the result pasted back into the photo at
    full resolution (feathered; `mask` [S, S] in the frame restricts it to the edited region)
    and the photo itself; nothing when the run did not start from the photo."""
    if framed_photo is None:
        return {}
    return {"result_in_photo": framed_photo.paste(result, mask), "photo": framed_photo.photo}


def photo_settings(framed_photo: FramedPhoto | None) -> dict | None:
    """The recipe's account of the photo a run started from (None: it did not)."""
    return None if framed_photo is None else framed_photo.describe()


def shown_in_photo(run: Run | None, operations: Sequence[str] = ("compose",)) -> np.ndarray | None:
    """The last run's "Result in your photo" when it is one of `operations` (the sub-tab's own),
    else None (clears the picture: that run did not start from the photo)."""
    if run is None or run.recipe.get("operation") not in operations:
        return None
    return run.images.get("result_in_photo")
