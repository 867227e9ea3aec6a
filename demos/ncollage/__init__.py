"""Neural Collage tab: sCBN label collaging and spatial feature blending (Suzuki et al. 2019).

`engine` (classes, pictures, the sCBN label collage), `blend` (Eq. 3's feature blending) and
`photo` (Eq. 4's photo fit, the paste-back) are models and tensors, no Gradio; `state` is a
person's typed session values; `handlers` and `handlers_photo` are the widgets' functions;
`ui` lays out the page (`build_tab`).
"""
from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    """`TAB` and `build_tab` (what `demos.TABS` needs), from `ui` on first use: importing the
    package, as `import demos.ncollage.engine` does, must not import Gradio."""
    if name in ("TAB", "build_tab"):
        from demos.ncollage import ui  # lazy: ui imports Gradio; the engine runs without it

        return getattr(ui, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
