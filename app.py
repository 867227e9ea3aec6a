"""Spatial GAN Studio: local image editing with pretrained GANs, one tab per method.

    python app.py [--weights FILE] [--device cuda|cpu|mps] [--share] [--port N] [--host H]

Importing this module loads no model: weights are fetched and loaded on first use.
"""
from __future__ import annotations

import argparse
import logging
import sys

import gradio as gr
import torch

from core.context import AppContext
from core.device import default_device, set_default_device
from core.errors import UserError
from core.hub import load_registry, status_rows
from core.ui import user_errors
from demos import collage, generate, ncollage, panda, sam, stylemap

log = logging.getLogger("spatial_gan_studio")

HEADER = """
# Spatial GAN Studio
Edit images *locally* with pretrained GANs. Every model runs on this machine (GPU if there is
one); weights come from the Hugging Face Hub on first use and stay cached. Most weights are
licensed for **non-commercial** research and teaching only: see the Models tab.
"""
MODEL_COLUMNS = ["id", "arch", "size", "cached", "license", "source"]


def build_models_tab(ctx: AppContext) -> None:
    gr.Markdown("Every pretrained file the app knows about (`weights.json`), whether it is in "
                "the local cache, and its licence. Download ahead of a class, or run "
                "`python -m core.hub download --all`.")
    table = gr.Dataframe(value=status_rows(ctx.registry), headers=MODEL_COLUMNS,
                         interactive=False, wrap=True, label="Registered models")
    with gr.Row():
        choice = gr.Dropdown(ctx.registry.ids(), label="Model", scale=3)
        download = gr.Button("Download", variant="primary", scale=1)
        refresh = gr.Button("Refresh", scale=1)
    status = gr.Markdown()

    @user_errors
    def on_download(model_id: str, progress=gr.Progress(track_tqdm=True)):
        from core.hub import fetch, human_size

        if not model_id:
            raise gr.Error("Pick a model to download.")
        entry = ctx.registry.get(model_id)
        progress(0.0, desc=f"Downloading {model_id}")
        path = fetch(entry)
        return status_rows(ctx.registry), f"✅ `{model_id}` is cached ({human_size(path.stat().st_size)}): `{path}`"

    download.click(on_download, choice, [table, status], api_name="download_model")
    refresh.click(lambda: status_rows(ctx.registry), None, table, api_name="refresh_models")


def build_app(weights: str | None = None, device: str | None = None) -> gr.Blocks:
    """The whole app as a gr.Blocks (what `python app.py`, tests and Spaces use)."""
    set_default_device(device)
    ctx = AppContext(load_registry(weights), default_device())
    cached = [row[0] for row in status_rows(ctx.registry) if row[3] == "yes"]
    log.info("device %s, torch %s (CUDA %s), %d models registered, cached: %s", ctx.device,
             torch.__version__, torch.version.cuda, len(ctx.registry), ", ".join(cached) or "none")
    with gr.Blocks(title="Spatial GAN Studio") as demo:
        gr.Markdown(HEADER)
        with gr.Tabs():
            with gr.Tab("Generate", id="generate"):
                generate.build_tab(ctx)
            with gr.Tab("Collage", id="collage"):
                collage.build_tab(ctx)
            with gr.Tab("SAM invert & edit", id="sam"):
                sam.build_tab(ctx)
            with gr.Tab("StyleMap", id="stylemap"):
                stylemap.build_tab(ctx)
            with gr.Tab("Neural Collage", id="ncollage"):
                ncollage.build_tab(ctx)
            with gr.Tab("PandA", id="panda"):
                panda.build_tab(ctx)
            with gr.Tab("Models", id="models"):
                build_models_tab(ctx)
    demo.queue(max_size=32)
    demo.ctx = ctx  # for tests and scripts: the registry, device and model cache in use
    return demo


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Spatial GAN Studio: local GAN image editing.")
    p.add_argument("--weights", metavar="FILE",
                   help="weights registry to use instead of weights.json (env SPATIAL_GAN_WEIGHTS)")
    p.add_argument("--device", choices=["cuda", "mps", "cpu"],
                   help="run the models here (default: cuda, else mps, else cpu)")
    p.add_argument("--share", action="store_true", help="public gradio.live link (needs internet)")
    p.add_argument("--port", type=int, default=None, help="port (default 7860 or the next free one)")
    p.add_argument("--host", default=None,
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 serves a LAN classroom)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        demo = build_app(args.weights, args.device)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, ssr_mode=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
