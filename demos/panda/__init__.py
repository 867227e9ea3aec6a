"""The PandA tab (Oldfield et al., ICLR 2023): parts and appearances in a StyleGAN2 layer, and
local edits with them.

`engine` (models and tensors, no Gradio), `factors` (the authors' Algorithm 1) and `solver`
(its objective solved fast: `fit`), `sources` (factor files), `handlers` and `handlers_photo`
(functions of the app context and the widgets' values), `ui` (`build_tab`). Importers name the
submodule they use.
"""
from __future__ import annotations

from typing import Any

__all__ = ["TAB", "build_tab"]


def __getattr__(name: str) -> Any:
    """`TAB` and `build_tab` from `ui`, imported on first use: importing `demos.panda.engine`
    runs this file first, and the engine must import without Gradio (bench, scripts)."""
    if name in __all__:
        from demos.panda import ui
        return getattr(ui, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
