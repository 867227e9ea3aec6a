"""The app's tabs, declared once: `TABS` drives the app (`app.build_app`), the licence lines
(registry `used_by` names these ids) and the tests (every tab needs a browser case).

Adding a tab: a package here (`engine.py` without Gradio, `handlers.py`, `ui.py` with
`build_tab(ctx)`; see ARCHITECTURE.md) and one row below.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Tab:
    title: str  # what the page shows
    id: str  # the gr.Tab id, `used_by` in weights.json, the recipe's "tab"
    module: str  # the tab's package (its `ui` has `build_tab(ctx)`) or module, imported at build

    def load(self) -> ModuleType:
        """The module with `build_tab`: a package's `ui`, or the tab's own module."""
        module = importlib.import_module(self.module)
        return importlib.import_module(f"{self.module}.ui") if hasattr(module, "__path__") else module


TABS: tuple[Tab, ...] = (
    Tab("Generate", "generate", "demos.generate"),
    Tab("Collage", "collage", "demos.collage"),
    Tab("SAM invert & edit", "sam", "demos.sam"),
    Tab("StyleMap", "stylemap", "demos.stylemap"),
    Tab("Neural Collage", "ncollage", "demos.ncollage"),
    Tab("PandA", "panda", "demos.panda"),
    Tab("Models", "models", "demos.models"),
)
TAB_IDS = tuple(t.id for t in TABS)
