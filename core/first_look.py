"""A finished example in every tab before any click: the tab's first example run once per app
by its own handlers, then shown on every visitor's page load.

Gradio's own example caching needs a click (and caches a gr.State as empty, so "Download all"
would not match the picture). Here the first example's steps run once, in the background, as
the app starts (on a ZeroGPU Space at the first visit instead: its build has no GPU), taking
turns on the device like any job but for no visitor, so no one's queue is used; every page
load then shows the stored result at once (a page that opens before it is ready shows the
tab as before). Off a Space nothing is downloaded for it (only cached models: a tab shows its
first look once its models are here, from the next start). A step that fails (a model not
downloaded, no network) leaves that tab's first look empty and is logged, not retried. SPATIAL_GAN_FIRST_LOOK: "on" (default), "lazy" (at
the first visit everywhere) or "off".
"""
from __future__ import annotations

import inspect
import logging
import os
import threading
from typing import Any, Callable, Sequence

import gradio as gr

from core.hub import cached_only

log = logging.getLogger("spatial_gan_studio")

Step = tuple[Callable, list, list]  # (handler(ctx, *values), its inputs, its outputs)


def mode() -> str:
    """"on", "lazy" or "off" (SPATIAL_GAN_FIRST_LOOK)."""
    value = os.environ.get("SPATIAL_GAN_FIRST_LOOK", "on").strip().lower()
    return "off" if value in ("off", "0", "no", "false") else "lazy" if value == "lazy" else "on"


class FirstLook:
    """One tab's first example: `values` (the example row and any settings, by component) run
    through `steps` (a step returning one value more than its outputs also gives the run: the
    tab's "Download all" state `run_state`) -> every component's value to show."""

    def __init__(self, ctx, values: dict, steps: Sequence[Step], run_state: gr.State):
        self.ctx, self.values, self.steps, self.run_state = ctx, dict(values), list(steps), run_state
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._shown: dict | None = None

    def components(self) -> list:
        """What the page load fills: the example's inputs, every step's outputs, the run."""
        seen: dict[int, Any] = {}
        for c in [*self.values, *(c for _, _, outputs in self.steps for c in outputs), self.run_state]:
            seen.setdefault(c._id, c)
        return list(seen.values())

    def ready_at_start(self) -> bool:
        """Whether to compute as the app starts ("on", off ZeroGPU) rather than at a first visit."""
        from core.runtime import zero_gpu

        return mode() == "on" and not zero_gpu()

    def start(self) -> None:
        """Compute it in the background, once."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="first-look")
                self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Until it is computed (or failed); whether it is ready (for tests and scripts)."""
        self.start()
        self._thread.join(timeout)
        return self._shown is not None

    def show(self) -> dict:
        """The finished example once computed, else no change (a page load's answer)."""
        self.start()
        return dict(self._shown) if self._shown else {c: gr.update() for c in self.components()}

    def _run(self) -> None:
        try:
            if os.environ.get("SPACE_ID"):  # a Space fetches its models as it starts
                self._shown = self._compute()
            else:  # elsewhere only what is already here: no download nobody asked for
                with cached_only():
                    self._shown = self._compute()
        except Exception as e:  # noqa: BLE001 - a first look never breaks the app
            log.info("first look skipped (%s: %s)", type(e).__name__, e)

    def _compute(self) -> dict:
        shown, values = dict(self.values), dict(self.values)  # what the page shows; what steps read
        for handler, inputs, outputs in self.steps:
            args = [values[c] if c in values else _default(c) for c in inputs]
            result = handler(self.ctx, *args)
            if inspect.isgenerator(result):
                for result in result:
                    pass
            # handlers return a tuple (a NamedTuple) for several outputs or an output plus its run
            result = list(result) if isinstance(result, tuple) else [result]
            targets = list(outputs) + ([self.run_state] if len(result) == len(outputs) + 1 else [])
            for component, value in zip(targets, result):
                shown[component] = value
                if not (isinstance(value, dict) and value.get("__type__") == "update"):
                    values[component] = value
                elif "value" in value:
                    values[component] = value["value"]
        return shown


def _default(component):
    """A component's starting value as a handler receives it (a table starts empty)."""
    if isinstance(component, gr.Dataframe):
        return None
    value = getattr(component, "value", None)
    return value() if callable(value) else value
