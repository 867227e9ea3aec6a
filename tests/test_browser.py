"""Every tab in a real browser: the app on a tiny registry, driven by headless Chromium through
Playwright, as a person would use it: open the tab, run it with an input missing (an error
toast must say why), fill in what it needs (sample a picture, paint on the gr.ImageEditor with
the mouse), run it again and check that a real picture comes back.

One row of CASES per scenario; a new tab is one more row. Screenshots go to
tests/artifacts/browser/ (git-ignored; SPATIAL_GAN_BROWSER_ARTIFACTS moves them): for each
case <id>-1-error.png (the toast), <id>-2-painted.png (the editor after the stroke),
<id>-3-result.png (the page after the run) and <id>-4-picture.png (the result, enlarged).

Needs the `playwright` package (requirements-test.txt) and a Chromium: the system's
(`apt-get install chromium`, found on PATH or at SPATIAL_GAN_CHROMIUM) or Playwright's own.
Without them the tests skip, unless SPATIAL_GAN_REQUIRE_BROWSER=1 (.ci/run sets it), when
they fail.
"""
from __future__ import annotations

import base64
import io
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import app_client, every_tab_registry

ARTIFACTS = Path(os.environ.get("SPATIAL_GAN_BROWSER_ARTIFACTS",
                                Path(__file__).parent / "artifacts" / "browser"))
REQUIRED = os.environ.get("SPATIAL_GAN_REQUIRE_BROWSER", "") not in ("", "0")
TIMEOUT_MS = 30_000
VIEWPORT = {"width": 1280, "height": 900}


# ---- what a person does, step by step ---------------------------------------------------------
def block(page, label: str):
    """The visible picture component (Image, ImageEditor, Gallery) labelled exactly `label`:
    the Gradio block around its floating label."""
    exact = re.compile(rf"^\s*{re.escape(label)}\s*$")
    text = page.locator("[data-testid=block-label]").filter(has_text=exact).filter(visible=True).first
    return text.locator("xpath=ancestor::div[contains(concat(' ', normalize-space(@class), ' '),"
                        " ' block ')][1]")


def button(page, name: str):
    return page.get_by_role("button", name=name, exact=True).filter(visible=True).first


def track_requests(page) -> None:
    """Count the page's requests in flight (the queue's event stream and heartbeat aside)."""
    page.in_flight = set()
    long_lived = ("/queue/data", "/heartbeat/")
    page.on("request", lambda r: None if any(k in r.url for k in long_lived) else page.in_flight.add(r))
    page.on("requestfinished", lambda r: page.in_flight.discard(r))
    page.on("requestfailed", lambda r: page.in_flight.discard(r))


def settle(page, quiet_ms: int = 1000) -> None:
    """Until no request has been in flight for `quiet_ms`. The ImageEditor loads a new picture
    and re-uploads its value after every run, asynchronously; a stroke painted before that
    ends is dropped (the canvas shows it, the next run does not get it), so paint only on a
    settled page."""
    deadline, quiet_since = time.monotonic() + TIMEOUT_MS / 1000, None
    while True:
        now = time.monotonic()
        if page.in_flight:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= quiet_ms / 1000:
            return
        assert now < deadline, f"requests still in flight: {[r.url for r in page.in_flight]}"
        page.wait_for_timeout(100)


def fill_picture(page, label: str, action, editor: bool = True) -> None:
    """Do `action` (a click that fills the labelled picture from the server) and wait until the
    picture shows: for a gr.ImageEditor, its empty-canvas prompt goes away and the editor has
    fetched and drawn the picture; for a gr.Image, an <img> appears."""
    b = block(page, label)
    if editor:
        prompt = b.get_by_text("Upload an image")
        prompt.wait_for(state="visible")  # the editor is ready, and empty
        action()
        prompt.wait_for(state="hidden")
        b.locator("canvas").first.wait_for(state="visible")
        settle(page)
    else:
        action()
        b.locator("img").first.wait_for(state="visible")


@dataclass(frozen=True)
class Fill:
    """Type into a textbox or number field; `enter` submits it (Textbox.submit)."""
    label: str
    value: str
    enter: bool = False

    def __call__(self, page) -> None:
        box = page.get_by_label(self.label, exact=True).filter(visible=True).first
        box.fill(self.value)
        if self.enter:
            box.press("Enter")
        else:
            box.blur()


@dataclass(frozen=True)
class Choose:
    """Pick `value` in a dropdown (typed, then Enter: a listed choice or a custom value)."""
    label: str
    value: str

    def __call__(self, page) -> None:
        box = page.get_by_role("combobox", name=self.label, exact=True).filter(visible=True).first
        box.click()
        box.fill(self.value)
        box.press("Enter")
        page.wait_for_timeout(200)


@dataclass(frozen=True)
class Click:
    """Click a button; `then` (a picture's label) waits for the picture it puts there
    (`editor`: that picture is a gr.ImageEditor)."""
    name: str
    then: str | None = None
    editor: bool = True

    def __call__(self, page) -> None:
        click = button(page, self.name).click
        if self.then:
            fill_picture(page, self.then, click, self.editor)
        else:
            click()


@dataclass(frozen=True)
class Sample:
    """The "Sample from seed" button under a picture (`editor`: a gr.ImageEditor, else a
    gr.Image): wait until the picture is there."""
    label: str
    editor: bool = True

    def __call__(self, page) -> None:
        sample = block(page, self.label).locator(
            "xpath=following::button[normalize-space()='Sample from seed'][1]")
        fill_picture(page, self.label, sample.click, self.editor)


@dataclass(frozen=True)
class WaitPicture:
    """Until the labelled output shows a picture (an <img>: Image, Gallery)."""
    label: str

    def __call__(self, page) -> None:
        block(page, self.label).locator("img").first.wait_for(state="visible")


def _canvas_pixels(editor) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(editor.locator("canvas").first.screenshot())).convert("RGB"),
                      dtype=np.int16)


def paint(page, label: str, brush_size: int | None = None) -> None:
    """One mouse stroke with the brush on the labelled gr.ImageEditor: a short diagonal up and
    left of the centre, inside the picture; `brush_size` is set in the editor's toolbar first.
    Checks that the stroke shows on the canvas."""
    ed = block(page, label)
    if brush_size is not None:
        size = ed.get_by_role("button", name="Brush Size", exact=True)
        size.click()
        slider = ed.locator("input[type=range]")
        slider.fill(str(brush_size))
        if slider.is_visible():
            size.click()  # the pop-up shut (it overlaps the picture's lower left only)
    settle(page)
    before = _canvas_pixels(ed)
    box = ed.locator("canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    side = min(box["width"], box["height"])
    page.mouse.move(cx - 0.25 * side, cy - 0.25 * side)
    page.mouse.down()
    for k in range(1, 4):
        page.mouse.move(cx - (0.25 - 0.07 * k) * side, cy - (0.25 - 0.07 * k) * side, steps=2)
    page.mouse.up()
    page.mouse.move(box["x"] + 2, box["y"] + 2)  # the brush outline off the picture
    page.wait_for_timeout(300)
    settle(page)  # editors with live updates post their layers after each stroke
    changed = np.abs(_canvas_pixels(ed) - before).max(-1) > 40
    assert changed.mean() > 0.002, f"the brush stroke did not show on {label!r}"


# ---- the scenarios: one row per tab (or sub-tab) ------------------------------------------------
@dataclass(frozen=True)
class Case:
    """tab: the gr.Tab id in app.py; subtab: an inner tab's title; run: the button's text.
    `setup` steps run first, then `run` must raise an error toast matching `error`; then the
    `fix` steps and (if `paint`, an editor's label) one brush stroke on that editor (`brush`:
    the size to set first, in picture pixels: the tiny test pictures are 32 px, so the tabs'
    24 px default would cover them); then `run` must put a picture into the output labelled
    `result` (or show text matching `result_text`). Labels are matched exactly."""
    id: str
    tab: str
    run: str
    error: str
    result: str | None = None
    subtab: str | None = None
    setup: tuple = ()
    fix: tuple = ()
    paint: str | None = None
    brush: int | None = 6
    result_text: str | None = None
    marks: tuple = ()  # e.g. (pytest.mark.xfail(reason=...),)


CASES = [
    Case("generate", tab="generate", run="Generate", error=r"less than minimum",
         setup=(Fill("Seed", "-5"),), fix=(Fill("Seed", "3"),), result="Result"),
    Case("collage-compose", tab="collage", subtab="Compose", run="Compose",
         error=r"at least one part",
         fix=(Sample("Base: paint what to keep (nothing painted: all of it)"),),
         paint="Base: paint what to keep (nothing painted: all of it)",
         result="Result G(E(collage, mask))"),
    Case("collage-inpaint", tab="collage", subtab="Inpaint", run="Inpaint", error=r"mask is empty",
         setup=(Sample("Picture: paint the region to erase"),),
         paint="Picture: paint the region to erase", result="Completions",
         marks=(pytest.mark.slow,)),  # ~25 s each: CI runs them (SPATIAL_GAN_SLOW=1)
    Case("stylemap-local-edit", tab="stylemap", subtab="Local edit", run="Edit",
         error=r"mask is empty",
         setup=(Sample("Original: paint the region to replace"),
                Sample("Reference", editor=False)),
         paint="Original: paint the region to replace", result="Edited"),
    Case("ncollage-label-collage", tab="ncollage", subtab="Label collage", run="Apply labels",
         error=r"Paint a region first",
         setup=(Choose("Base class (SNGAN: dogs and cats, 151-293)", "3: tiger shark"),
                Click("Render base picture", then="Paint regions: one brush colour per target class")),
         fix=(Choose("Class for colour 1 (#FE2712)", "5: electric ray"),),
         paint="Paint regions: one brush colour per target class", result="After",
         marks=(pytest.mark.slow,)),
    Case("panda", tab="panda", run="Edit", error=r"Enter a seed",  # part 0 is picked on arrival
         setup=(Fill("Seed(s)", ""),),
         fix=(Fill("Seed(s)", "3", enter=True), WaitPicture("Parts (click to select)")),
         result="Edited"),
    Case("models", tab="models", run="Download", error=r"tiny-offline",
         setup=(Choose("Model", "tiny-offline"),),
         fix=(Choose("Model", "tiny-sg2"),), result_text=r"tiny-sg2`? is cached"),
    Case("sam", tab="sam", run="Invert", error=r"Predict the layer map first",
         fix=(Click("Use a GAN sample", then="Photo to invert", editor=False),
              Fill("number input for Steps of each single-space run (models without a predictor)", "2"),
              Click("Predict layer map"), WaitPicture("Predicted error per space (brighter = harder)"),
              Fill("number input for Adam steps", "2")),
         paint="Layer map (paint with a space's colour to override)", result="SAM reconstruction",
         marks=(pytest.mark.slow,)),  # ~50 s: CI runs it (SPATIAL_GAN_SLOW=1)
]


# ---- the app and the browser ---------------------------------------------------------------------
def _chromium(playwright) -> str | None:
    """The system Chromium (SPATIAL_GAN_CHROMIUM, else on PATH), else Playwright's own."""
    for candidate in (os.environ.get("SPATIAL_GAN_CHROMIUM"), shutil.which("chromium"),
                      shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if candidate and Path(candidate).exists():
            return candidate
    try:
        bundled = playwright.chromium.executable_path
    except Exception:
        return None
    return bundled if bundled and Path(bundled).exists() else None


def _unavailable(reason: str):
    if REQUIRED:
        pytest.fail(f"browser test required (SPATIAL_GAN_REQUIRE_BROWSER) but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -r requirements-test.txt)")
    with sync_playwright() as p:
        exe = _chromium(p)
        if exe is None:
            _unavailable("no Chromium found (apt-get install chromium, or set SPATIAL_GAN_CHROMIUM)")
        b = p.chromium.launch(executable_path=exe, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def app(browser, tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser-app")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPATIAL_GAN_CACHE", str(folder / "cache"))  # PandA's computed factors
        with app_client(every_tab_registry(folder)) as client:
            yield client


@pytest.fixture(scope="module")
def app_url(app):
    return app.src


def open_page(browser, url: str):
    """A fresh browser session on the app (its own Gradio session: states start empty)."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    pg.page_errors = []
    pg.on("pageerror", lambda e: pg.page_errors.append(str(e)))
    track_requests(pg)
    pg.goto(url)
    pg.locator("button[role=tab][data-tab-id]").first.wait_for()
    return context, pg


@pytest.fixture()
def page(browser, app_url):
    context, pg = open_page(browser, app_url)
    try:
        yield pg
    finally:
        context.close()


# ---- checks ---------------------------------------------------------------------------------------
def error_toasts(page):
    return page.locator("[data-testid=toast-body].error [data-testid=toast-text]").filter(visible=True)


def close_toasts(page) -> None:
    for close in page.locator("[data-testid=toast-close]").filter(visible=True).all():
        close.click()
    page.locator("[data-testid=toast-body]").first.wait_for(state="hidden")


def picture_in(page, label: str) -> np.ndarray:
    """The first picture the labelled output shows, fetched as the browser did and decoded."""
    img = block(page, label).locator("img").first
    img.wait_for(state="visible")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img.element_handle())
    src = img.evaluate("img => img.currentSrc || img.src")
    if src.startswith("data:"):
        data = base64.b64decode(src.split(",", 1)[1])
    else:
        response = page.request.get(src)
        assert response.ok, f"{label}: {src} answered {response.status}"
        data = response.body()
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def shot(page, case: Case, stage: str) -> Path:
    path = ARTIFACTS / f"{case.id}-{stage}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture(scope="module", autouse=True)
def artifacts_folder():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nbrowser screenshots: {ARTIFACTS}")
    return ARTIFACTS


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_tab_in_the_browser(page, case: Case):
    for old in ARTIFACTS.glob(f"{case.id}-*.png"):
        old.unlink()
    started = time.monotonic()
    page.locator(f'button[role=tab][data-tab-id="{case.tab}"]').click()
    if case.subtab:
        page.get_by_role("tab", name=case.subtab, exact=True).filter(visible=True).click()
    for step in case.setup:
        step(page)

    # 1. run with an input missing: a readable error toast, no result
    button(page, case.run).click()
    toast = error_toasts(page).first
    toast.wait_for(state="visible")
    page.wait_for_timeout(500)  # the toast slides in
    shot(page, case, "1-error")
    assert re.search(case.error, toast.inner_text()), toast.inner_text()
    close_toasts(page)
    settle(page)

    # 2. give it what it needs, paint with the mouse, run again: a picture comes back
    for step in case.fix:
        step(page)
    if case.paint:
        paint(page, case.paint, case.brush)
        block(page, case.paint).screenshot(path=str(ARTIFACTS / f"{case.id}-2-painted.png"))
    button(page, case.run).click()
    if case.result_text:
        result = page.get_by_text(re.compile(case.result_text)).filter(visible=True).first
    else:
        result = block(page, case.result).locator("img").first
    result.or_(error_toasts(page).first).first.wait_for(state="visible")
    if error_toasts(page).count():
        shot(page, case, "3-result")
        pytest.fail(f"{case.id}: the run after painting failed: {error_toasts(page).all_inner_texts()}")
    if not case.result_text:
        picture = picture_in(page, case.result)
        assert min(picture.shape[:2]) >= 32 and picture.std() > 1.0, picture.shape
        scale = max(1, 256 // min(picture.shape[:2]))  # tiny models: 32 px pictures
        Image.fromarray(picture).resize((picture.shape[1] * scale, picture.shape[0] * scale),
                                        Image.Resampling.NEAREST).save(ARTIFACTS / f"{case.id}-4-picture.png")
        tracker = block(page, case.result).locator("[data-testid=status-tracker]").first
        page.wait_for_function("t => t.classList.contains('hide')", arg=tracker.element_handle())
    settle(page)
    page.wait_for_timeout(300)
    shot(page, case, "3-result")
    assert error_toasts(page).count() == 0, error_toasts(page).all_inner_texts()
    assert not page.page_errors, page.page_errors
    print(f"{case.id}: {time.monotonic() - started:.1f} s")


def test_every_tab_has_a_browser_case():
    """Every tab of `demos.TABS` (what the app builds) is driven above: a new tab without a
    Case row fails the suite, browser or not."""
    from demos import TAB_IDS

    missing = sorted(set(TAB_IDS) - {c.tab for c in CASES})
    assert not missing, f"no browser Case row for tab(s) {missing}: add one to CASES"


def test_the_page_shows_every_declared_tab(page):
    tabs = page.locator("[role=tablist]").first.locator("button[role=tab][data-tab-id]")
    from demos import TAB_IDS

    assert [t.get_attribute("data-tab-id") for t in tabs.all()] == list(TAB_IDS)


# ---- one photo through the tabs, saved, and back the next day -------------------------------------
def upload(page, label: str, path: Path) -> None:
    """Choose a file for the labelled upload (a gr.Image or gr.File), as the file dialog would."""
    block(page, label).locator("input[type=file]").first.set_input_files(str(path))


def download_all(page, folder: Path, name: str) -> Path:
    """Click the visible "Download all (.zip)" once it holds the last run; the saved zip."""
    link = page.get_by_role("button", name="Download all (.zip)", exact=True).filter(visible=True).first
    page.wait_for_function("b => !b.disabled", arg=link.element_handle())
    with page.expect_download() as download:
        link.click()
    path = folder / name
    download.value.save_as(path)
    return path


def flow_shot(page, name: str) -> None:
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / f"flow-{name}.png"), full_page=True)


@pytest.mark.slow  # ~2 min: CI runs it (SPATIAL_GAN_SLOW=1)
def test_a_photo_flows_from_sam_to_panda_and_generate_and_its_saved_runs_come_back(browser, app, tmp_path):
    """The class's flow: upload a real photo in SAM, predict, invert (fewest steps), edit it in
    PandA, show it in Generate, save the runs; then, in a new session, load the SAM run in SAM,
    the PandA run in PandA (and edit on) and in Generate. PandA also takes the photo itself."""
    from skimage import data

    from core.recipe import read_bundle
    from demos.panda import sources

    for old in ARTIFACTS.glob("flow-*.png"):
        old.unlink()
    photo = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(photo)
    label = next(name for name in sources.library(app.app.ctx).labels() if "tiny-sam" in name)
    context, page = open_page(browser, app.src)
    page.set_default_timeout(4 * TIMEOUT_MS)
    try:
        page.locator('button[role=tab][data-tab-id="sam"]').click()
        upload(page, "Photo to invert", photo)
        WaitPicture("Network input: centre crop")(page)
        Fill("number input for Steps of each single-space run (models without a predictor)", "2")(page)
        button(page, "Predict layer map").click()
        WaitPicture("Predicted error per space (brighter = harder)")(page)
        Fill("number input for Adam steps", "1")(page)
        button(page, "Invert").click()
        assert picture_in(page, "Result in your photo (the reconstruction)").shape == (512, 512, 3)
        settle(page)
        flow_shot(page, "1-sam")
        sam_run = download_all(page, tmp_path, "sam.zip")
        assert "W+" in read_bundle(sam_run).arrays

        page.locator('button[role=tab][data-tab-id="panda"]').click()
        Choose("Factors", label)(page)
        WaitPicture("Parts (click to select)")(page)
        button(page, "Edit my photo").click()
        assert picture_in(page, "The edit in your photo").shape == (512, 512, 3)
        settle(page)
        flow_shot(page, "2-panda")
        panda_run = download_all(page, tmp_path, "panda.zip")

        page.locator('button[role=tab][data-tab-id="generate"]').click()
        page.get_by_text("Your photo code · load a saved run").click()
        button(page, "Show the photo code").click()
        assert picture_in(page, "Result in your photo").shape == (512, 512, 3)
        settle(page)
        flow_shot(page, "3-generate")

        page.locator('button[role=tab][data-tab-id="panda"]').click()  # PandA's own quick code
        upload(page, "Your photo", photo)
        WaitPicture("Network input: centre crop")(page)
        button(page, "Quick code").click()
        page.get_by_text(re.compile("quick W\\+")).filter(visible=True).first.wait_for()
        settle(page)
        flow_shot(page, "4-panda-quick-code")
        assert error_toasts(page).count() == 0, error_toasts(page).all_inner_texts()
    finally:
        context.close()

    context, page = open_page(browser, app.src)  # the next day: a new session
    page.set_default_timeout(4 * TIMEOUT_MS)
    try:
        page.locator('button[role=tab][data-tab-id="sam"]').click()
        page.get_by_text("Or continue from a photo code").click()
        upload(page, "Load a run (.zip)", sam_run)
        assert picture_in(page, "Result in your photo (the reconstruction)").shape == (512, 512, 3)
        settle(page)
        flow_shot(page, "5-sam-loaded")

        page.locator('button[role=tab][data-tab-id="panda"]').click()
        upload(page, "Load a run (.zip)", panda_run)
        page.get_by_text(re.compile("^Loaded ")).filter(visible=True).first.wait_for()
        settle(page)
        button(page, "Edit my photo").click()
        assert picture_in(page, "The edit in your photo").shape == (512, 512, 3)
        settle(page)
        flow_shot(page, "6-panda-loaded")

        page.locator('button[role=tab][data-tab-id="generate"]').click()
        page.get_by_text("Your photo code · load a saved run").click()
        upload(page, "Load a run (.zip)", panda_run)
        assert picture_in(page, "Result in your photo").shape == (512, 512, 3)
        settle(page)
        flow_shot(page, "7-generate-loaded")
        assert error_toasts(page).count() == 0, error_toasts(page).all_inner_texts()
        assert not page.page_errors, page.page_errors
    finally:
        context.close()


# ---- the first look: a finished example in every tab before any click -------------------------
FIRST_LOOK = {  # tab -> a picture its first look fills
    "generate": "Result", "collage": "Result G(E(collage, mask))", "sam": "Segments",
    "stylemap": "Edited", "panda": "Edited",
}


@pytest.mark.slow
def test_every_tab_opens_on_a_finished_example(browser, tmp_path):
    """The app started with first looks on: once they are computed, a new visitor sees each
    tab's first example already run (no click), screenshots first-look-<tab>.png. (Neural
    Collage's first example needs a class the tiny BigGAN lacks: it opens as before.)"""
    from core.first_look import FirstLook

    for old in ARTIFACTS.glob("first-look-*.png"):
        old.unlink()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPATIAL_GAN_CACHE", str(tmp_path / "cache"))
        mp.setenv("SPATIAL_GAN_FIRST_LOOK", "on")
        with app_client(every_tab_registry(tmp_path)) as client:
            looks = [getattr(f.fn, "__wrapped__").__self__ for f in client.app.fns.values()
                     if isinstance(getattr(getattr(f.fn, "__wrapped__", None), "__self__", None), FirstLook)]
            assert len(looks) == 6
            for look in looks:
                look.wait(300)
            context, page = open_page(browser, client.src)
            try:
                for tab, label in FIRST_LOOK.items():
                    page.locator(f'button[role=tab][data-tab-id="{tab}"]').click()
                    block(page, label).scroll_into_view_if_needed()  # pictures load when in view
                    picture = picture_in(page, label)
                    assert picture.std() > 1.0, tab
                    settle(page)
                    page.screenshot(path=str(ARTIFACTS / f"first-look-{tab}.png"), full_page=True)
                assert error_toasts(page).count() == 0, error_toasts(page).all_inner_texts()
                assert not page.page_errors, page.page_errors
            finally:
                context.close()
