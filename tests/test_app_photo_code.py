"""Invert once, edit anywhere, through the app: one gradio_client session inverts a photo in
the SAM tab, then PandA edits that photo code and Generate shows it, without inverting again."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from helpers import (NO_EDIT_ROWS, app_client, editor_value, png_file, published_panda_factors, quadrant_parts,
                     read_png, write_registry)
from core.models.stylegan2 import StyleGAN2Generator, panda_layer

SAM_SG2 = {"size": 256, "style_dim": 32, "n_mlp": 2, "channel_multiplier": 2, "channel_max": 8}


@pytest.fixture()
def registry(tmp_path, hub_cache, monkeypatch):
    """A 256 px StyleGAN2 for SAM, PandA and Generate, and its published layer-5 factors
    (offline Hub cache): 4 parts = the quadrants of the 16 x 16 layer."""
    monkeypatch.setenv("SPATIAL_GAN_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(11)
    G = StyleGAN2Generator(**SAM_SG2)
    torch.save({"g_ema": G.state_dict(), "latent_avg": G.mean_w(256)[0]}, tmp_path / "sg2.pt")
    k = panda_layer(5)
    C, s = G.layer_channels(k), G.layer_resolution(k)
    A = torch.linalg.qr(torch.randn(C, C, generator=torch.Generator().manual_seed(0)))[0].numpy()
    entries = [{"id": "tiny-sam", "arch": "stylegan2", "config": SAM_SG2, "path": str(tmp_path / "sg2.pt"),
                "sha256": None, "license": "test only", "source": "tests", "used_by": ["sam", "panda", "generate"]},
               *published_panda_factors(hub_cache, "tiny-sam", 5, A, quadrant_parts(s))]
    return write_registry(tmp_path / "weights.json", entries), f"tiny-sam · layer 5 · ranks [{C}, 4] (published)"


@pytest.mark.slow
def test_a_photo_inverted_in_sam_is_edited_in_panda_and_shown_in_generate(registry, tmp_path):
    weights, label = registry
    pic = np.zeros((240, 300, 3), np.uint8)
    pic[:, :150] = (200, 40, 30)
    pic[:, 150:] = (30, 90, 200)
    photo = png_file(tmp_path, "photo.png", pic)
    with app_client(weights) as client:
        client.predict(label, "0", 1.0, False, api_name="/panda_parts")  # the factors' parts, as on page load
        with pytest.raises(AppError, match="No photo code yet"):
            client.predict(label, [0], 1, 40.0, NO_EDIT_ROWS, api_name="/panda_edit_photo")
        _, _, editor, _ = client.predict("tiny-sam", handle_file(photo), 6, 1.0, 2, api_name="/sam_predict")[:4]
        unpainted = editor_value(tmp_path, "map", read_png(editor["background"]))
        rec, *_ = client.predict("tiny-sam", unpainted, 1, False, api_name="/sam_invert")
        sam_rec = read_png(rec)

        # PandA on the session's code: strength 0 is SAM's reconstruction, an edit changes it
        # only in the part's quadrant, and the edit lands in the photo at its own size
        original, edited, _, in_photo = client.predict(label, [0], 1, 0.0, NO_EDIT_ROWS, api_name="/panda_edit_photo")
        assert np.array_equal(read_png(original), sam_rec) and np.array_equal(read_png(edited), sam_rec)
        original, edited, _, in_photo = client.predict(label, [0], 1, 60.0, NO_EDIT_ROWS, api_name="/panda_edit_photo")
        change = np.abs(read_png(edited).astype(int) - sam_rec).sum(2)
        assert change.max() > 0
        assert change[:96, :96].mean() > 4 * change[160:, 160:].mean()  # part 0: the top-left quadrant
        assert read_png(in_photo).shape == (240, 300, 3)

        # Generate shows the same code's reconstruction, not a sample
        image, _ = client.predict(api_name="/generate_show_code")
        assert np.array_equal(read_png(image), sam_rec)
