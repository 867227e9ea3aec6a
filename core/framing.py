"""How a person's photo becomes a model's network input, in words and names: the one
vocabulary the registry (`meta.framing`), the alignment (`core.faces`), the photo slot and
every tab's labels use."""
from __future__ import annotations

FRAMINGS = ("ffhq", "celebahq", "squash", "center", "letterbox")  # the registry's `meta.framing`
FACE_FRAMINGS = ("ffhq", "celebahq")  # the framings that find and align a face
LABELS = {"ffhq": "aligned face (FFHQ recipe)", "celebahq": "aligned face (CelebA-HQ recipe)",
          "squash": "squashed to a square (no crop)", "center": "centre crop",
          "letterbox": "letterboxed (black bars)"}
DRAWN = "the GAN sample as drawn (already in the model's frame)"


def framing_sentence(framing: str) -> str:
    """One sentence for the UI: how a photo becomes this model's network input."""
    line = f"Photos are framed as this model's training pictures were: {LABELS[framing]}"
    if framing in FACE_FRAMINGS:
        line += (" (the face is found and aligned exactly as the training faces were; tick "
                 "\"Plain framing\" for a photo without a face)")
    return line + ", and results go back into your photo where the frame was."


def framing_line(registry, model_id: str | None) -> str:
    """The line under a photo upload for the picked model (its registry framing)."""
    if not model_id:
        return "*Pick a model: photos are framed as its training pictures were.*"
    return f"*{framing_sentence(registry.framing_of(registry.get(model_id)))}*"
