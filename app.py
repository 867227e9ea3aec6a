"""Spatial GAN Studio: local image editing with pretrained GANs, one tab per method.

    python app.py [--weights FILE] [--device cuda|cpu|mps] [--host H] [--port N] [--share]
                  [--auth USER:PASS ...] [--auth-file FILE] [--queue-size N]
                  [--max-sessions N] [--state-hours H] [--log-level LEVEL]
    gradio app.py          # the same, reloaded when a source file changes

Every flag but --device, --host, --port and --share can also be set by an environment variable
(`ENV`, for a Space's settings). Importing this module is cheap: it loads neither torch nor
Gradio (so `--help` answers at once) and builds the app only when asked (`build_app`, or the
attribute `demo`, built from the environment variables). No model is loaded before first use.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import HOSTED_ENV, UserError

if TYPE_CHECKING:
    import gradio as gr

log = logging.getLogger("spatial_gan_studio")

QUEUE_SIZE = 32  # waiting jobs at most (a classroom); every GPU job runs one at a time
MAX_UPLOAD = "50mb"  # a 50 MP phone photo is 10-30 MB; bigger uploads are refused before they land
SESSIONS_KEPT = 200  # per-browser-session state held in memory (a classroom, with reloads); oldest dropped
STATE_HOURS = 4.0  # a session's state (last run, codes, photo) lives 4 h after it was last set
STATE_TTL = int(STATE_HOURS * 3600)
CACHE_SWEEP = (900, 7200)  # every 15 min, delete served files (pictures, uploads, zips) over 2 h old
LOG_LEVELS = ("debug", "info", "warning", "error")
ENV = {  # flag -> the environment variable that sets it when the flag is not given
    "weights": "SPATIAL_GAN_WEIGHTS",  # also read by core.hub
    "auth": "SPATIAL_GAN_AUTH",  # one or more USER:PASS, separated by spaces or new lines
    "auth_file": "SPATIAL_GAN_AUTH_FILE",
    "queue_size": "SPATIAL_GAN_QUEUE_SIZE",
    "max_sessions": "SPATIAL_GAN_MAX_SESSIONS",
    "state_hours": "SPATIAL_GAN_STATE_HOURS",
    "log_level": "SPATIAL_GAN_LOG_LEVEL",
}
HEADER = """
# Spatial GAN Studio
Edit images *locally* with pretrained GANs. Every model runs on this machine (GPU if there is
one); weights come from the Hugging Face Hub on first use and stay cached. Most weights are
licensed for **non-commercial** research and teaching only: see the Models tab.
"""
AUTH_MESSAGE = "Spatial GAN Studio: sign in with the name and password your teacher or host gave you."


def build_app(weights: str | None = None, device: str | None = None, *,
              queue_size: int = QUEUE_SIZE, state_hours: float = STATE_HOURS) -> "gr.Blocks":
    """The whole app as a gr.Blocks (what `python app.py`, tests and Spaces use): one gr.Tab
    per row of `demos.TABS`. Gradio and torch are imported here, not with the module."""
    _zero_gpu_first()
    import gradio as gr
    import torch

    from core.context import AppContext
    from core.device import default_device, set_default_device
    from core.gpu import enable_zero_gpu, register
    from core.hub import cached_path, load_registry
    from core.ui import expire_states, guard_inputs, private_state_loads
    from demos import TABS

    set_default_device(device)
    ctx = AppContext(load_registry(weights), default_device())
    log.info("device %s, torch %s (CUDA %s), %d models registered, cached: %s", ctx.device,
             torch.__version__, torch.version.cuda, len(ctx.registry),
             ", ".join(e.id for e in ctx.registry if cached_path(e)) or "none")
    # queue() rebuilds Gradio's server app: done here, while the page is empty, it costs nothing;
    # beyond `queue_size` waiting jobs a click gets Gradio's "queue is full" message
    demo = gr.Blocks(title="Spatial GAN Studio", delete_cache=CACHE_SWEEP).queue(max_size=queue_size)
    with demo:
        gr.Markdown(HEADER)
        with gr.Tabs():
            for tab in TABS:
                with gr.Tab(tab.title, id=tab.id):
                    tab.load().build_tab(ctx)
    register(ctx)  # reachable from ZeroGPU workers forked later
    enable_zero_gpu()  # on a ZeroGPU Space: every model handler becomes a spaces.GPU function
    guard_inputs(demo)
    expire_states(demo, round(state_hours * 3600))
    private_state_loads(demo)
    demo.ctx = ctx  # for tests and scripts: the registry, device and model cache in use
    return demo


def _zero_gpu_first() -> None:
    """On a ZeroGPU Space `spaces` must be imported before anything initialises CUDA."""
    import importlib

    try:
        importlib.import_module("spaces")
    except ImportError:
        pass


def launch_options(max_sessions: int = SESSIONS_KEPT) -> dict:
    """What every launch of the app passes (main, tests): upload size and sessions held."""
    return {"max_file_size": MAX_UPLOAD, "state_session_capacity": max_sessions, "ssr_mode": False}


# ---- the command line (standard library only: `--help` answers before torch is imported) ----
def _whole(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is too small: at least {low}")
        return value
    parse.__name__ = "whole number"
    return parse


def _hours(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of hours") from None
    if not 0 < value < 10_000:
        raise argparse.ArgumentTypeError(f"{value} hours is not a lifetime: give more than 0")
    return value


def parse_args(argv: list[str] | None = None, env: dict[str, str] | None = None) -> argparse.Namespace:
    """The flags, each defaulting to its environment variable (`ENV`), then to the constants."""
    env = os.environ if env is None else env
    p = argparse.ArgumentParser(
        description="Spatial GAN Studio: local GAN image editing.",
        epilog="Each flag in brackets [VAR] can also be set by that environment variable.")
    p.add_argument("--weights", metavar="FILE", default=env.get(ENV["weights"]) or None,
                   help=f"weights registry to use instead of weights.json [{ENV['weights']}]")
    p.add_argument("--device", choices=["cuda", "mps", "cpu"],
                   help="run the models here (default: cuda, else mps, else cpu)")
    p.add_argument("--share", action="store_true", help="public gradio.live link (needs internet)")
    p.add_argument("--port", type=int, default=None, help="port (default 7860 or the next free one)")
    p.add_argument("--host", default=None,
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 serves a LAN classroom)")
    p.add_argument("--auth", metavar="USER:PASS", action="append",
                   help="a login the page and the API ask for; repeat for several people "
                        f"[{ENV['auth']}: logins separated by spaces]")
    p.add_argument("--auth-file", metavar="FILE", default=env.get(ENV["auth_file"]) or None,
                   help=f"logins, one USER:PASS a line ('#' starts a comment) [{ENV['auth_file']}]")
    p.add_argument("--queue-size", type=_whole(1), metavar="N",
                   default=env.get(ENV["queue_size"]) or QUEUE_SIZE,
                   help=f"jobs waiting at most; more get 'queue is full' (default {QUEUE_SIZE}) "
                        f"[{ENV['queue_size']}]")
    p.add_argument("--max-sessions", type=_whole(1), metavar="N",
                   default=env.get(ENV["max_sessions"]) or SESSIONS_KEPT,
                   help=f"browser sessions whose state is kept, oldest dropped (default "
                        f"{SESSIONS_KEPT}) [{ENV['max_sessions']}]")
    p.add_argument("--state-hours", type=_hours, metavar="H",
                   default=env.get(ENV["state_hours"]) or STATE_HOURS,
                   help=f"a session's state lives this long after its last change (default "
                        f"{STATE_HOURS:g}) [{ENV['state_hours']}]")
    p.add_argument("--log-level", type=str.lower, choices=LOG_LEVELS,
                   default=env.get(ENV["log_level"]) or "info",
                   help=f"how much the log says; 'debug' adds every HTTP request (default info) "
                        f"[{ENV['log_level']}]")
    args = p.parse_args(argv)
    if args.auth is None and env.get(ENV["auth"], "").strip():
        args.auth = env[ENV["auth"]].split()
    return args


def read_logins(args: argparse.Namespace) -> list[tuple[str, str]] | None:
    """The logins of --auth and --auth-file together, or None for an open app."""
    logins = [_login(text, "--auth") for text in args.auth or []]
    if args.auth_file:
        path = Path(args.auth_file).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise UserError(f"The --auth-file {path} cannot be read ({e.strerror or e}).") from None
        found = [_login(line.strip(), f"{path}, line {n}") for n, line in enumerate(lines, 1)
                 if line.strip() and not line.lstrip().startswith("#")]
        if not found:
            raise UserError(f"The --auth-file {path} holds no USER:PASS line; with no login "
                            f"the app would be open to everyone, so it does not start.")
        logins += found
    return logins or None


def _login(text: str, where: str) -> tuple[str, str]:
    user, colon, password = text.partition(":")
    if not (colon and user.strip() and password):
        shown = f"{user!r}, then no password" if colon or user else "an empty one"
        raise UserError(f"{where}: a login is USER:PASS (a name, a colon, a password); this one "
                        f"is {shown}.")
    return user.strip(), password


def configure_logging(level: str) -> None:
    """The app's log at `level`; httpx's line per HTTP request (Gradio's own start-up checks,
    Hub look-ups) only at debug."""
    logging.basicConfig(level=getattr(logging, level.upper()),
                        format="%(asctime)s %(name)s: %(message)s")
    quiet = logging.DEBUG if level == "debug" else logging.WARNING
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(quiet)


def main(argv: list[str] | None = None) -> int:
    global demo
    args = parse_args(argv)
    configure_logging(args.log_level)
    try:
        logins = read_logins(args)
        host = args.host or os.environ.get("GRADIO_SERVER_NAME")  # Gradio reads it too
        if args.share or logins or host not in (None, "127.0.0.1", "localhost"):
            os.environ[HOSTED_ENV] = "1"  # others use it: messages name files, not this machine's paths
        built = build_app(args.weights, args.device, queue_size=args.queue_size,
                          state_hours=args.state_hours)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    demo = built  # `gradio app.py` reloads the module and looks for the launched app here
    log.info("queue %d jobs, %d sessions kept for %g h, %s", args.queue_size, args.max_sessions,
             args.state_hours, f"{len(logins)} login(s) required" if logins else "no login required")
    built.launch(server_name=args.host, server_port=args.port, share=args.share, auth=logins,
                 auth_message=AUTH_MESSAGE if logins else None, **launch_options(args.max_sessions))
    return 0


def __getattr__(name: str):
    """`app.demo`: the app built from the environment variables, on first access (what a
    runner that imports this file and looks for `demo` finds)."""
    if name != "demo":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    args = parse_args([])
    built = build_app(args.weights, queue_size=args.queue_size, state_hours=args.state_hours)
    globals()["demo"] = built
    return built


if __name__ == "__main__":
    status = main()
    if status:  # not sys.exit(0): `gradio app.py` re-runs this file in its watcher thread
        sys.exit(status)
