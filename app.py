"""Spatial GAN Studio: local image editing with pretrained GANs, one tab per method.

    python app.py [--weights FILE] [--device cuda|cpu|mps] [--share] [--port N] [--host H]

Importing this module loads no model: weights are fetched and loaded on first use.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

try:  # ZeroGPU: `spaces` must be imported before anything initialises CUDA
    import spaces  # noqa: F401
except ImportError:
    pass

import gradio as gr
import torch

from core.context import AppContext
from core.device import default_device, set_default_device
from core.errors import HOSTED_ENV, UserError
from core.gpu import enable_zero_gpu, register
from core.hub import cached_path, load_registry
from core.ui import expire_states, guard_inputs
from demos import TABS

log = logging.getLogger("spatial_gan_studio")

QUEUE_SIZE = 32  # waiting jobs at most (a classroom); every GPU job runs one at a time
MAX_UPLOAD = "50mb"  # a 50 MP phone photo is 10-30 MB; bigger uploads are refused before they land
SESSIONS_KEPT = 200  # per-browser-session state held in memory (a classroom, with reloads); oldest dropped
STATE_TTL = 4 * 3600  # a session's state (last run, codes, photo) lives 4 h after it was last set
CACHE_SWEEP = (900, 7200)  # every 15 min, delete served files (pictures, uploads, zips) over 2 h old
HEADER = """
# Spatial GAN Studio
Edit images *locally* with pretrained GANs. Every model runs on this machine (GPU if there is
one); weights come from the Hugging Face Hub on first use and stay cached. Most weights are
licensed for **non-commercial** research and teaching only: see the Models tab.
"""


def build_app(weights: str | None = None, device: str | None = None) -> gr.Blocks:
    """The whole app as a gr.Blocks (what `python app.py`, tests and Spaces use): one gr.Tab
    per row of `demos.TABS`."""
    set_default_device(device)
    ctx = AppContext(load_registry(weights), default_device())
    log.info("device %s, torch %s (CUDA %s), %d models registered, cached: %s", ctx.device,
             torch.__version__, torch.version.cuda, len(ctx.registry),
             ", ".join(e.id for e in ctx.registry if cached_path(e)) or "none")
    with gr.Blocks(title="Spatial GAN Studio", delete_cache=CACHE_SWEEP) as demo:
        gr.Markdown(HEADER)
        with gr.Tabs():
            for tab in TABS:
                with gr.Tab(tab.title, id=tab.id):
                    tab.load().build_tab(ctx)
    register(ctx)  # reachable from ZeroGPU workers forked later
    enable_zero_gpu()  # on a ZeroGPU Space: every model handler becomes a spaces.GPU function
    guard_inputs(demo)
    expire_states(demo, STATE_TTL)
    # demo.queue(max_size=...) without rebuilding the FastAPI app a third time (0.3 s of start-up):
    # the queue refuses jobs beyond QUEUE_SIZE with a "queue is full" message
    demo._queue.max_size = QUEUE_SIZE
    demo.ctx = ctx  # for tests and scripts: the registry, device and model cache in use
    return demo


def launch_options() -> dict:
    """What every launch of the app passes (main, tests): upload size and sessions held."""
    return {"max_file_size": MAX_UPLOAD, "state_session_capacity": SESSIONS_KEPT, "ssr_mode": False}


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
    if args.share or args.host not in (None, "127.0.0.1", "localhost"):
        os.environ[HOSTED_ENV] = "1"  # others use it: messages name files, not this machine's paths
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        demo = build_app(args.weights, args.device)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, **launch_options())
    return 0


if __name__ == "__main__":
    sys.exit(main())
