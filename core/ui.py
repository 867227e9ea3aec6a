"""Gradio-side helpers shared by the tabs: wiring, shared widgets, what goes out and comes in.

A tab's handlers are module-level functions `handler(ctx, *values) -> outputs`: plain
functions of the context and the widgets' values, testable without a running app. Those that
use a model carry `@gpu_task(duration, needs=...)` (core/gpu.py: prepared here, computed in
place or in a ZeroGPU worker, errors translated for people); `TabWiring.on` binds the context,
queues them on the GPU lane and appends the tab's "Download all" state to their outputs (their
last return value is the run's `core.recipe.Run`, made with `record`).
"""
from __future__ import annotations

import functools
import inspect
import io
import math
import random
import os
import threading
import weakref
from collections import OrderedDict
from typing import Any, Callable
from typing import Sequence

import gradio as gr
import numpy as np
from PIL import Image

from core import first_look
from core.errors import UserError
from core.gpu import translate
from core.images import NOT_A_PICTURE, check_editor_pixels, check_upload, png_file
from core.recipe import Run, fill_local_hashes, licence_note, make_recipe, write_bundle
from core.turns import admitted

GPU_LANE = "gpu"  # every model-using event shares this concurrency id: Gradio hands up to
# `core.turns.admitted()` of them to the lane at once, which serves sessions in turn


def bind(handler: Callable, ctx) -> Callable:
    """`handler(ctx, *values)` as the `fn(*values)` Gradio calls: same signature minus `ctx`
    (so gr.Progress defaults are still found), a generator function if the handler is one."""
    if inspect.isgeneratorfunction(inspect.unwrap(handler)):
        def bound(*args, **kwargs):
            yield from handler(ctx, *args, **kwargs)
    else:
        def bound(*args, **kwargs):
            return handler(ctx, *args, **kwargs)
    sig = inspect.signature(handler)
    bound.__signature__ = sig.replace(parameters=list(sig.parameters.values())[1:])
    bound.__name__ = bound.__qualname__ = getattr(handler, "__name__", "handler")
    bound.__doc__ = handler.__doc__
    bound.gpu_task = getattr(handler, "gpu_task", False)
    return bound


MAX_SEED = 2 ** 31 - 1


def parse_seeds(text: str | int | float | None, max_count: int = 8) -> list[int]:
    """"3" or "1, 5, 7" (or a number) -> a list of seeds, checked for range and count."""
    if text is None or str(text).strip() == "":
        raise UserError("Enter a seed (a whole number), or several separated by commas.")
    seeds = []
    for part in str(text).replace(";", ",").split(","):
        part = part.strip()
        try:
            value = int(float(part)) if part else None
        except (ValueError, OverflowError):
            value = None
        if value is None or not 0 <= value <= MAX_SEED or (part and float(part) != value):
            raise UserError(f"{part!r} is not a seed: use whole numbers between 0 and {MAX_SEED}.")
        seeds.append(value)
    if len(seeds) > max_count:
        raise UserError(f"At most {max_count} seeds at a time.")
    return seeds


def random_seeds(count: int = 1) -> str:
    """The dice: `count` random seeds, as a seed box's text ("17" or "3, 8, 21, 5")."""
    return ", ".join(str(random.randint(0, MAX_SEED)) for _ in range(count))


def seed_picker(wiring: "TabWiring", target: gr.components.Component, sample: Callable,
                inputs: list, default: int = 1, label: str = "Sample from seed") -> gr.Number:
    """A seed box and a button under a picture: the button puts `sample(ctx, *inputs, seed)`
    (a generated picture, a `gpu_task`) into `target`, so every tab can start without an upload."""
    return seed_row(wiring, target, sample, inputs, default, label)[0]


def seed_row(wiring: "TabWiring", target: gr.components.Component, sample: Callable,
             inputs: list, default: int = 1, label: str = "Sample from seed") -> tuple[gr.Number, Any]:
    """`seed_picker`, also returning the sampling event (what follows a new sample)."""
    with gr.Row():
        seed = gr.Number(value=default, precision=0, minimum=0, maximum=MAX_SEED, label="Seed", scale=2)
        button = gr.Button(label, scale=1)
    return seed, wiring.on(button.click, sample, inputs + [seed], target, record=False)


def long_dropdown(choices: list[str], value: str, **kwargs) -> gr.Dropdown:
    """A dropdown of many choices (ImageNet's 1000 classes) whose list is sent when it is
    focused, not in the page's configuration, which every visitor downloads (16 such lists
    were 1.5 MB of it). A typed value is accepted (the handler reads "207" or "207: golden
    retriever"), so the list is a help for choosing, never required."""
    box = gr.Dropdown([value], value=value, filterable=True, allow_custom_value=True, **kwargs)
    box.focus(lambda: gr.update(choices=choices), None, box, queue=False, api_visibility="private",
              show_progress="hidden")
    return box


def shift_sliders(span: int) -> tuple[gr.Slider, gr.Slider]:
    """(dx, dy) pixel sliders for moving a pasted region across a `span`-pixel frame."""
    return (gr.Slider(-span, span, value=0, step=1, label="Shift right (px)"),
            gr.Slider(-span, span, value=0, step=1, label="Shift down (px)"))


def shift_range(span: int, count: int) -> list:
    """Updates that give `count` shift sliders a new frame size (on a model change)."""
    return [gr.update(minimum=-span, maximum=span)] * count


def quietly(handler: Callable, n_outputs: int) -> Callable:
    """For live re-runs (every stroke): call `handler`, but answer "no change" instead of an
    error message while the input is still incomplete (the Run button shows errors). Keeps
    the handler's signature and `gpu_task` mark."""
    @functools.wraps(handler)
    def run(*args):
        try:
            return handler(*args)
        except gr.Error:
            return [gr.update()] * n_outputs
    return run


def photo_code_state() -> gr.State:
    """The session's photo code (`core.photo_code`): one gr.State per app that every tab
    making or using a code shares, made by the first tab that asks and kept on the page being
    built (not in the app context: the context holds no widget)."""
    page = gr.context.Context.root_block
    state = getattr(page, "photo_code_state", None)
    if state is None:
        state = gr.State(None)
        page.photo_code_state = state
    return state


def tab_header(summary: str, how_it_works: str) -> None:
    """Every tab opens the same way: a short summary, then a collapsed "How it works"."""
    gr.Markdown(summary)
    with gr.Accordion("How it works", open=False):
        gr.Markdown(how_it_works)


# ---- provenance: licence notes, labelled examples, "Download all" ---------------------------
def licence_line(registry, tab: str, ids: Sequence[str] = ()) -> gr.Markdown:
    """The licences of the weights a tab uses, one line under its header (from the
    registry's `license` and `used_by`; `ids`: the models the tab offers)."""

    return gr.Markdown(licence_note(registry, tab, ids))


def labelled_examples(examples: list[list], labels: list[str], inputs: list,
                      label: str = "Examples") -> gr.Examples:
    """gr.Examples with a label per example; `TabWiring.examples` makes a click also run the tab.

    Not cached on purpose: a cached example cannot set a gr.State (Gradio 6 caches State
    outputs as empty), so the tab's "Download all" would not match the picture shown, and
    Gradio's cache folder (named by component number) outlives a change of weights."""
    return gr.Examples(examples, inputs=inputs, example_labels=labels, label=label,
                       examples_per_page=max(10, len(examples)))


NOTHING_TO_DOWNLOAD = ("Nothing to download yet: run this tab first. \"Download all\" packs the "
                       "last result, its masks, latents (.npz) and recipe.json into one .zip.")


def record(ctx, tab: str, operation: str, models: dict[str, str | None] | str, *, images: dict,
           masks: dict | None = None, arrays: dict | None = None, seeds: Sequence[int] = (),
           settings: dict | None = None, notes: str | None = None):
    """A handler's run as a `core.recipe.Run` with its recipe, for the tab's "Download all":
    `models` maps roles to registry ids (the first is the run's model id), `settings` every
    setting of the run, `seeds` the seeds in order."""

    ids = {"model": models} if isinstance(models, str) else models
    entries = {role: ctx.registry.get(mid) for role, mid in ids.items() if mid}
    recipe = make_recipe(tab, operation, entries, seeds=seeds, settings=settings,
                         device=ctx.device, notes=notes)
    return Run(images, masks or {}, arrays or {}, recipe)


PACKED_KEPT = 64  # runs per tab whose zip is remembered (a click then costs nothing)


class DownloadAll:
    """A tab's "Download all": `state` (a gr.State) holds the tab's last run, a
    `core.recipe.Run` on the CPU (pictures, masks, latents, recipe; never a model), which
    handlers return last (see `record`); `render()` places the one-click button, whose file
    is packed in the background whenever a new run arrives."""

    def __init__(self, ctx, tab: str):
        self.ctx, self.tab = ctx, tab
        self.state = gr.State(None)
        self._packed: OrderedDict[int, tuple[weakref.ref, str]] = OrderedDict()
        self._lock = threading.Lock()

    def render(self, label: str = "Download all (.zip)") -> gr.DownloadButton:
        button = gr.DownloadButton(label, value=None, interactive=False, size="md",
                                   elem_classes=["download-all"])
        self.state.change(self.ready, self.state, button, api_visibility="private",
                          trigger_mode="always_last", show_progress="hidden")
        # the click downloads what `ready` packed; the same event is clients' "Download all"
        button.click(self.pack, self.state, button, api_name=f"{self.tab}_download",
                     show_progress="hidden")
        return button

    def ready(self, run) -> dict:
        """The button for the last run: its zip, or greyed out before there is one."""
        if not run:
            return gr.update(value=None, interactive=False)
        return gr.update(value=self.pack(run), interactive=True)

    def pack(self, run) -> str:
        """The last run as a .zip (see core.recipe.write_bundle), packed once per run."""

        if not run:
            raise gr.Error(NOTHING_TO_DOWNLOAD)
        with self._lock:
            ref, path = self._packed.get(id(run), (None, None))
            if ref is not None and ref() is run and os.path.exists(path):
                return path
        try:
            recipe = fill_local_hashes(run.recipe, self.ctx.registry)
            path = str(write_bundle(run.images, run.masks, run.arrays, recipe))
        except Exception as e:
            raise translate(e) from e
        with self._lock:
            self._packed[id(run)] = (weakref.ref(run), path)
            while len(self._packed) > PACKED_KEPT:
                self._packed.popitem(last=False)
        return path


class TabWiring:
    """What one tab's builders share: the app context, the tab id and its "Download all".

    `on(event, handler, inputs, outputs)` wires a module-level handler: the context bound,
    the GPU lane for `gpu_task` handlers (Gradio admits many; `core.turns` orders them), the
    Download-all state appended to the outputs (`record=False` for handlers that return no run).
    Only a named handler (`api_name="..."`) is an API endpoint; every other one is private
    (tests/data/public_api.txt lists them)."""

    def __init__(self, ctx, tab: str):
        self.ctx, self.tab = ctx, tab
        self.download = DownloadAll(ctx, tab)
        self._first_look = None  # the tab's `FirstLook`, once it has one

    def on(self, event: Callable, handler: Callable, inputs, outputs, *, record: bool = True,
           api_name: str | None = None, **kwargs):
        outputs = list(outputs if isinstance(outputs, (list, tuple)) else [outputs])
        if record:
            outputs.append(self.download.state)
        if getattr(handler, "gpu_task", False):
            kwargs.setdefault("concurrency_id", GPU_LANE)
        if kwargs.get("concurrency_id") == GPU_LANE:
            kwargs.setdefault("concurrency_limit", admitted())
        fn = pictures_as_files(bind(handler, self.ctx), outputs)
        if not isinstance(api_name, str):  # None (or the older False): no endpoint
            api_name = None
            kwargs.setdefault("api_visibility", "private")
        return event(fn, inputs, outputs, api_name=api_name, **kwargs)

    def examples(self, examples: gr.Examples, *steps: tuple[Callable, list, list]) -> None:
        """After an example fills its inputs, run `(handler, inputs, outputs)` steps in order,
        wired like `on` (so progress, errors and the last-run record behave as for a click).
        The tab's first examples are also its first look (`first_look`)."""
        event = examples.load_input_event
        for handler, inputs, outputs in steps:
            event = self.on(event.then, handler, inputs, outputs)
        self.first_look(examples, *steps)

    def first_look(self, examples: gr.Examples, *steps: tuple[Callable, list, list],
                   settings: dict | None = None) -> None:
        """Show the first example row (with `settings`: other inputs' values for it, e.g.
        fewer steps), run through `steps`, on every visitor's page load (`core.first_look`):
        once per tab, the first examples it is given."""
        if self._first_look or first_look.mode() == "off" or not examples.examples:
            return
        values = dict(zip(examples.inputs, examples.examples[0])) | dict(settings or {})
        self._first_look = look = first_look.FirstLook(self.ctx, values, steps, self.download.state)
        shown = look.components()
        gr.on(None, pictures_as_files(look.show, shown), None, shown, api_visibility="private",
              show_progress="hidden", queue=False)
        if look.ready_at_start():
            look.start()


# ---- what goes out and what comes in: pictures as files, uploads and numbers checked -----------
def pictures_as_files(fn: Callable, outputs: list) -> Callable:
    """`fn` whose pictures for gr.Image / gr.Gallery outputs are handed to Gradio as PNG files
    written once under their content's name (`core.images.png_file`): Gradio would rewrite
    the same cached file in place for every person making the same picture, and someone would
    download it half-written. Keeps `fn`'s signature and generator-ness."""

    def as_file(value, component):
        if isinstance(value, Image.Image) or (isinstance(value, np.ndarray) and value.dtype == np.uint8):
            return png_file(value, component.GRADIO_CACHE)
        return value

    def convert(value, component):
        if isinstance(value, dict) and "value" in value and value.get("__type__") == "update":
            return {**value, "value": convert(value["value"], component)}
        if isinstance(component, gr.Gallery) and isinstance(value, (list, tuple)):
            return [(as_file(item[0], component), *item[1:]) if isinstance(item, (tuple, list))
                    else as_file(item, component) for item in value]
        return as_file(value, component) if isinstance(component, gr.Image) else value

    def convert_all(result):
        if isinstance(result, dict) and result.get("__type__") != "update":
            return {c: convert(v, c) for c, v in result.items()}
        if len(outputs) == 1:
            return convert(result, outputs[0])
        if isinstance(result, (tuple, list)) and len(result) == len(outputs):
            converted = [convert(v, c) for v, c in zip(result, outputs)]
            return result._make(converted) if hasattr(result, "_make") else type(result)(converted)
        return result

    if inspect.isgeneratorfunction(inspect.unwrap(fn)):
        @functools.wraps(fn)
        def steps(*args, **kwargs):
            for result in fn(*args, **kwargs):
                yield convert_all(result)
        return steps

    @functools.wraps(fn)
    def run(*args, **kwargs):
        return convert_all(fn(*args, **kwargs))
    return run


def guard_inputs(blocks: gr.Blocks) -> None:
    """Check what people send before Gradio decodes it, for every picture and number widget of
    the app: uploads through `core.images.check_upload` (a picture, not too many pixels, 8
    bits; an editor's files bounded together), undecodable files, non-finite numbers and a
    request with too few values answered with a sentence, not Gradio's bare "Error" (or an
    API caller's `{"error": null}`)."""
    blocks.validate_inputs = _checked_count(blocks.validate_inputs)
    for block in blocks.blocks.values():
        if isinstance(block, (gr.Image, gr.ImageEditor)):
            block.preprocess = _checked_picture(block.preprocess, block)
        elif isinstance(block, (gr.Number, gr.Slider)):
            block.preprocess = _checked_number(block.preprocess, block.label or "This number")


def expire_states(blocks: gr.Blocks, seconds: int) -> None:
    """Every per-session gr.State without a time-to-live of its own is dropped `seconds` after
    it was last set: a run, a photo's codes, a factor set do not outlive a lesson in memory."""
    for block in blocks.blocks.values():
        if isinstance(block, gr.State) and block.time_to_live in (None, float("inf")):
            block.time_to_live = seconds


def private_state_loads(blocks: gr.Blocks) -> None:
    """A gr.State made by a function (one value per session, e.g. SAM's Stop flag) is filled by
    a load event that Gradio names after the function and makes public (`/StopSignal`): it is
    no endpoint anyone should call, so it becomes private."""
    for block in blocks.blocks.values():
        if isinstance(block, gr.State) and getattr(block, "load_event", None):
            blocks.fns[block.load_event["id"]].api_visibility = "private"


def _checked_picture(preprocess: Callable, block=None) -> Callable:
    """`preprocess` of an Image or ImageEditor with every file checked first (`check_upload`);
    an editor's files (uploaded, or sent as blobs by a live editor) are bounded together."""

    def run(payload):
        if payload is None:
            return preprocess(payload)
        try:
            files = _uploaded_files(payload)
            if isinstance(block, gr.ImageEditor):
                blobs = [io.BytesIO(b) for b in _editor_blobs(block, payload)]
                check_editor_pixels([f.path for f in files] + blobs)
            for file in files:
                file.path = check_upload(file.path)
        except UserError as e:
            raise gr.Error(str(e)) from None
        try:
            return preprocess(payload)
        except gr.Error:
            raise
        except Exception:
            raise gr.Error(NOT_A_PICTURE) from None
    run.guarded = True
    return run


def _uploaded_files(payload) -> list:
    """The files in an Image (one) or ImageEditor (background, layers, composite) payload."""
    files = [payload] if getattr(payload, "path", None) else []
    for part in ("background", "composite"):
        files += [f] if getattr(f := getattr(payload, part, None), "path", None) else []
    files += [f for f in getattr(payload, "layers", None) or [] if getattr(f, "path", None)]
    return files


def _editor_blobs(editor, payload) -> list[bytes]:
    """The pictures a live ImageEditor sent as blobs (Gradio keeps them by the payload's id)."""
    key = getattr(payload, "id", None)
    held = getattr(editor, "blob_storage", {}).get(key) if key is not None else None
    if held is None:
        return []
    parts = [held.background, held.composite, *(held.layers or [])]
    return [b for b in parts if b]


MISSING_VALUES = ("This request sent {got} of the {needed} values this action takes: send a "
                  "value for every input, in order (the app's API page lists them).")


def _checked_count(validate: Callable) -> Callable:
    """Gradio's check that a request carries a value per input, its refusal as a sentence
    (its own is a ValueError, which reaches an API caller as `{"error": null}`)."""
    def run(block_fn, inputs):
        try:
            return validate(block_fn, inputs)
        except ValueError:
            raise gr.Error(MISSING_VALUES.format(got=len(inputs), needed=len(block_fn.inputs))) from None
    run.guarded = True
    return run


def _checked_number(preprocess: Callable, label: str) -> Callable:
    def run(payload):
        message = f"“{label}” must be a number; got {payload!r}."
        if isinstance(payload, float) and not math.isfinite(payload):
            raise gr.Error(message)
        try:
            return preprocess(payload)
        except gr.Error:
            raise
        except (TypeError, ValueError, OverflowError):
            raise gr.Error(message) from None
    run.guarded = True
    return run
