"""Collage tab: composition by latent regression (Chai, Wulff, Isola, ICLR 2021).

`engine` (compose, regenerate, inpaint, blend; no Gradio), `refine` (Enc+LBFGS), `finetune`
(the regressor tuned on one photo), `independence` (the paper's s_c, Table 1): models and
tensors. `domain`: the regressor + generator pair and a person's photo in its frame, from the
registry. `handlers`: the buttons' functions. `ui`: `build_tab`, what `demos.TABS` loads.
"""
from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    """`TAB` and `build_tab` from `ui`, imported on first use: importing `demos.collage.engine`
    runs this file first, and the engine must import without Gradio (bench, scripts)."""
    if name in ("TAB", "build_tab"):
        from demos.collage import ui  # lazy: ui imports Gradio
        return getattr(ui, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
