"""The SAM tab (spatially adaptive multi-layer inversion, Parmar et al., CVPR 2022): `engine`
(models and tensors, no Gradio), `handlers` (functions of the app context and the widgets'
values), `ui` (`TAB`, `build_tab`). Importers name the submodule they use.

`TAB` and `build_tab` (what `demos.TABS` loads) come from `ui` on first use rather than at
import: importing `demos.sam.engine` runs this file first, and it must not import Gradio
(bench, scripts and tests/test_architecture.py import the engine with Gradio blocked).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from demos.sam.ui import TAB, build_tab

__all__ = ["TAB", "build_tab"]


def __getattr__(name: str) -> Any:
    """`TAB` and `build_tab` from `ui`, imported when first asked for (module `__getattr__`)."""
    if name in __all__:
        from demos.sam import ui  # lazy on purpose: the engine imports without Gradio
        return getattr(ui, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
