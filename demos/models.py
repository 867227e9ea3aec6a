"""Models tab: what is registered, what is cached, licences, download buttons.

No model is loaded here: the table comes from the registry and the caches' file listings. It
is filled when a page loads, not shipped in the page's configuration (which every visitor
downloads), and on a shared host it names local files without this machine's folders.
"""
from __future__ import annotations

import gradio as gr

from core.context import AppContext
from core.errors import UserError, hosted, shown_path
from core.gpu import user_errors
from core.hub import Registry, fetch, human_size, status_rows
from core.ui import TabWiring

TAB = "models"
LANDMARK_LICENCE = ("dlib's 68-point face landmark model (Davis King; CC0 as packaged), trained "
                    "on the iBUG 300-W faces, whose licence excludes commercial use")
COLUMNS = ["id", "arch", "size", "cached", "license", "source"]


@user_errors
def download_model(ctx: AppContext, model_id: str | None, progress=gr.Progress(track_tqdm=True)
                   ) -> tuple[list[list[str]], str]:
    """Fetch one registered file into its cache -> (the refreshed table, a status line)."""
    if not model_id:
        raise UserError("Pick a model to download.")
    entry = ctx.registry.get(model_id)
    progress(0.0, desc=f"Downloading {model_id}")
    path = fetch(entry)
    return (table_rows(ctx.registry),
            f"✅ `{model_id}` is cached ({human_size(path.stat().st_size)}): `{shown_path(path)}`")


def table_rows(registry: Registry) -> list[list[str]]:
    """The Models table: `core.hub.status_rows`, with a local file's folders left out on a
    shared host (a visitor learns nothing of this machine's layout)."""
    rows = status_rows(registry)
    if hosted():
        for row, entry in zip(rows, registry):
            if entry.path and not entry.hub and not entry.url:
                row[-1] = f"local file {shown_path(entry.path)}"
    return rows


def refresh(ctx: AppContext) -> list[list[str]]:
    return table_rows(ctx.registry)


def build_tab(ctx: AppContext) -> None:

    wiring = TabWiring(ctx, TAB)
    gr.Markdown("Every pretrained file the app knows about (`weights.json`), whether it is in "
                "the local cache, and its licence. Download ahead of a class, or run "
                "`python -m core.hub download --all`.")
    table = gr.Dataframe(value=None, headers=COLUMNS, interactive=False, wrap=True,
                         label="Registered models")  # filled at page load, below
    with gr.Row():
        choice = gr.Dropdown(ctx.registry.ids(), label="Model", scale=3)
        download = gr.Button("Download", variant="primary", scale=1)
        refresh_button = gr.Button("Refresh", scale=1)
    status = gr.Markdown()
    gr.Markdown(f"**Face alignment** (photo uploads to face models) uses {LANDMARK_LICENCE}; it "
                "is installed with the app (`face-recognition-models`), never downloaded.")
    wiring.on(download.click, download_model, choice, [table, status], record=False,
              api_name="download_model")
    wiring.on(refresh_button.click, refresh, None, table, record=False, api_name="refresh_models")
    # at page load (no triggers): the table is not part of the page's configuration
    gr.on(None, user_errors(lambda: table_rows(ctx.registry)), None, table, queue=False,
          api_visibility="private", show_progress="hidden")
