"""The web page in a real browser (Debian's chromium driven by Playwright): upload, cards, overlay opacity,
method switching, report download. Skipped when chromium or Playwright is missing."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fakelens.service import Settings, create_app
from fakelens.service.db import Database
from fakelens.service.keys import create_key

from .conftest import tiny_ensemble
from .server import free_port

CHROMIUM = "/usr/bin/chromium"
SCREENSHOT_DIR_ENV = "FAKELENS_E2E_SCREENSHOTS"

uvicorn = pytest.importorskip("uvicorn")
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is not installed (pip install playwright)"
)
if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
    pytest.skip(f"chromium not found at {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The real app under uvicorn on a loopback port, in a thread, with tiny models, badges and faces on."""
    data = tmp_path_factory.mktemp("e2e") / "data"
    settings = Settings(data_dir=data, robustness=True, report_faces=True, rate_per_minute=0.0)
    key = create_key(Database(settings.db_url), "acme")[1]
    port = free_port()
    config = uvicorn.Config(
        create_app(settings, tiny_ensemble()), host="127.0.0.1", port=port, log_level="warning"
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    yield {"url": url, "key": key}
    srv.should_exit = True
    thread.join(15)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        except Exception as exc:  # pragma: no cover - a broken browser install
            pytest.skip(f"chromium did not start: {exc}")
        yield b
        b.close()


def _face_like_png(path: Path) -> Path:
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(3)
    img = Image.fromarray((rng.normal(150, 25, (240, 320, 3))).clip(0, 255).astype("uint8"))
    d = ImageDraw.Draw(img)
    d.ellipse((110, 40, 210, 180), fill=(224, 184, 150))
    d.ellipse((135, 85, 150, 97), fill=(40, 40, 60))
    d.ellipse((170, 85, 185, 97), fill=(40, 40, 60))
    d.rectangle((145, 140, 175, 148), fill=(160, 60, 60))
    img.save(path)
    return path


def test_upload_cards_overlay_methods_report(server: dict[str, Any], browser: Any, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1360, "height": 1000}, accept_downloads=True)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(server["url"] + "/")
    page.fill("#api-key", server["key"])
    page.wait_for_selector("#method-choices input[value='gradcam']")
    page.check("#method-choices input[value='rollout']")

    assert page.inner_text("#analyze-hint") == "To analyse: choose an image."  # a disabled button says why
    page.set_input_files("#file-input", str(_face_like_png(tmp_path / "portrait.png")))
    assert page.inner_text("#analyze-hint") == ""
    page.click("#analyze-btn")
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    page.wait_for_selector("#overlay-image[data-method='gradcam']")

    # one card per model with score and verdict, and the ensemble's verdict
    cards = page.locator(".card")
    assert cards.count() == 2
    assert {cards.nth(i).get_attribute("data-model") for i in range(2)} == {"tiny-cnn", "tiny-vit"}
    for i in range(2):  # p(fake) as the report writes it: 0.43, not 43.2 %
        text = cards.nth(i).inner_text().lower()
        assert re.search(r"\b[01]\.\d{2,6}\b", text) and ("fake" in text or "real" in text)
        assert "threshold 0.50" in text and "%" not in text
    [ens] = page.evaluate(
        "fetch('/v1/analyses?limit=1', {headers: {'X-API-Key': document.getElementById('api-key').value}})"
        ".then(r => r.json())"
    )["items"]
    # each card counts its robust heatmaps as the report does; the badge explains its numbers
    assert re.search(r"\d of \d robust", cards.nth(0).inner_text())
    assert page.inner_text("#badge summary") == "What these numbers mean"
    page.click("#badge summary")
    assert "1 = uniform, higher = more concentrated" in page.inner_text("#badge .badge-legend")
    # the analysis in words, as the report reads it: the same sections the API returns
    reading = page.inner_text("#reading")
    assert [r["title"] for r in ens["reading"]][:1] == ["Verdict"] and "Where." in reading
    assert all(r["text"] in reading for r in ens["reading"])
    pill = page.inner_text("#ens-pill").lower().split(" · ")
    assert pill[0] == ens["verdict"] and ("close call" in pill) == (
        abs(ens["score"] - ens["threshold"]) < 0.1
    )
    pills = [cards.nth(i).locator(".pill:not(.untrained)") for i in range(2)]
    verdicts = {p.inner_text().lower().split(" · ")[0] for p in pills}
    assert cards.nth(0).locator(".pill.untrained").count() == 1  # the tiny models' heads are random
    assert ("models disagree" in page.inner_text("#ens-rule")) == (len(verdicts) > 1)
    assert "not calibrated odds" in page.inner_text("#ens-rule")  # the tiny models are not calibrated
    assert page.locator("#badge-grade").inner_text().lower() in ("ok", "check")

    # the slider changes the overlay's opacity
    page.fill("#opacity", "20")
    assert page.eval_on_selector("#overlay-image", "e => getComputedStyle(e).opacity") == "0.2"
    page.fill("#opacity", "90")
    assert page.eval_on_selector("#overlay-image", "e => getComputedStyle(e).opacity") == "0.9"

    # method switching: select the ViT (it has rollout), switch method, the overlay follows
    page.click(".card[data-model='tiny-vit']")
    page.select_option("#method-select", "rollout")
    page.wait_for_selector("#overlay-image[data-model='tiny-vit'][data-method='rollout']")
    src_rollout = page.get_attribute("#overlay-image", "src")
    page.select_option("#method-select", "gradcam")
    page.wait_for_selector("#overlay-image[data-model='tiny-vit'][data-method='gradcam']")
    assert page.get_attribute("#overlay-image", "src") != src_rollout
    assert page.eval_on_selector("#overlay-image", "e => e.naturalWidth") == 320
    assert page.inner_text("#zoom-note") == ""  # 320 px wide: shown as it is

    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    _keep_screenshot(tmp_path / "page.png")

    # the report downloads as one self-contained HTML file
    with page.expect_download(timeout=60_000) as dl:
        page.click("#report-link")
    report = Path(dl.value.path()).read_text(encoding="utf-8")
    assert dl.value.suggested_filename.endswith(".html")
    assert "tiny-vit" in report and "data:image/" in report and "<script" not in report.lower()

    # the history lists the analysis; nothing was loaded from outside the server
    page.click("#refresh-history")
    page.wait_for_selector("#history li[data-id]")
    assert all(u.startswith((server["url"], "blob:", "data:")) for u in requests), requests
    assert not errors, errors
    page.close()


def test_key_kept_for_the_tab_unless_remembered_and_forgotten_on_request(
    server: dict[str, Any], browser: Any
) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(server["url"] + "/")
    stored = "() => [localStorage.getItem('fakelens.apiKey'), sessionStorage.getItem('fakelens.apiKey')]"
    page.fill("#api-key", server["key"])
    assert page.evaluate(stored) == [None, server["key"]] and "until this tab closes" in page.inner_text(
        "#key-state"
    )
    page.check("#key-remember")
    assert page.evaluate(stored) == [server["key"], None]
    again = context.new_page()  # another tab of the same browser finds the remembered key
    again.goto(server["url"] + "/")
    assert again.input_value("#api-key") == server["key"] and again.is_checked("#key-remember")
    again.click("#key-forget")
    assert again.evaluate(stored) == [None, None] and again.input_value("#api-key") == ""
    assert "enter an API key" in again.inner_text("#history")
    context.close()


def test_bad_file_shows_error(server: dict[str, Any], browser: Any, tmp_path: Path) -> None:
    page = browser.new_page()
    page.goto(server["url"] + "/")
    page.fill("#api-key", server["key"])
    page.wait_for_selector("#method-choices input")
    bad = tmp_path / "notes.png"
    bad.write_text("this is text, not an image")
    page.set_input_files("#file-input", str(bad))
    page.click("#analyze-btn")
    page.wait_for_selector("#status.error")
    assert "not an image" in page.inner_text("#status")
    page.close()


def _analyse(
    server: dict[str, Any],
    browser: Any,
    path: Path,
    width: int = 1360,
    height: int = 1000,
    methods: tuple[str, ...] = (),
) -> Any:
    """A page ``width`` px wide that uploaded ``path`` with the default methods (and ``methods``) and shows
    the result."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(server["url"] + "/")
    page.fill("#api-key", server["key"])
    page.wait_for_selector("#method-choices input")
    for m in methods:
        page.check(f"#method-choices input[value='{m}']")
    page.set_input_files("#file-input", str(path))
    page.click("#analyze-btn")
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    return page


def test_small_image_is_flagged(server: dict[str, Any], browser: Any, tmp_path: Path) -> None:
    from PIL import Image

    thumb = tmp_path / "thumb.png"
    Image.new("RGB", (24, 20), (120, 90, 60)).save(thumb)  # 480 pixels for 64² inputs
    page = _analyse(server, browser, thumb)
    assert "a small image" in page.inner_text("#ens-rule")
    # on the verdict itself, and in the history list, not only in the small print
    assert "small image" in page.inner_text("#ens-pill").lower()
    assert "small-image" in page.get_attribute("#ens-pill", "class")
    page.wait_for_selector("#history li .pill.small-image")
    page.wait_for_selector("#overlay-image[data-method='gradcam']")
    # shown enlarged by a whole factor, sharp, with the overlay on exactly the same box
    box = page.eval_on_selector("#base-image", "e => [e.clientWidth, e.clientHeight]")
    assert box[0] >= 10 * 24 and box[0] * 20 == box[1] * 24
    assert page.eval_on_selector("#overlay-image", "e => [e.clientWidth, e.clientHeight]") == box
    assert f"shown {box[0] // 24}×" in page.inner_text("#zoom-note")
    page.screenshot(path=str(tmp_path / "small.png"), full_page=True)
    _keep_screenshot(tmp_path / "small.png")
    page.close()


def test_faces_are_boxed_and_judged(server: dict[str, Any], browser: Any, tmp_path: Path) -> None:
    import skimage.data
    from PIL import Image

    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(photo)
    page = _analyse(server, browser, photo)
    page.wait_for_selector(".frame .face-box")
    assert page.locator(".frame .face-box").count() == 1
    # the box sits on the face: MTCNN's box is about x 181–268, y 62–172 of the 512-px image
    left, top, width = page.eval_on_selector(
        ".frame .face-box",
        "e => [e.offsetLeft / e.parentElement.clientWidth, e.offsetTop / "
        "e.parentElement.clientHeight, e.offsetWidth / e.parentElement.clientWidth]",
    )
    assert abs(left - 181 / 512) < 0.03 and abs(top - 62 / 512) < 0.03 and abs(width - 87 / 512) < 0.03
    text = page.inner_text("#ens-faces")
    assert "each face on its own" in text and ("fake" in text.lower() or "real" in text.lower())
    page.screenshot(path=str(tmp_path / "faces.png"), full_page=True)
    _keep_screenshot(tmp_path / "faces.png")
    page.close()


def test_phone_width_has_no_sideways_scroll(server: dict[str, Any], browser: Any, tmp_path: Path) -> None:
    photo = _face_like_png(tmp_path / "face.png")
    page = _analyse(server, browser, photo, width=375)
    page.wait_for_selector("#overlay-image[data-method='gradcam']")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
    _keep_screenshot(tmp_path / "phone.png")
    page.close()


def _headings(page: Any) -> list[tuple[int, str]]:
    """The rendered headings in document order, as (level, text)."""
    return [
        (int(tag[1]), text)
        for tag, text in page.eval_on_selector_all(
            "h1, h2, h3, h4, h5, h6",
            "hs => hs.filter(h => h.getClientRects().length).map(h => [h.tagName, h.textContent.trim()])",
        )
    ]


def _assert_heading_order(page: Any) -> None:
    levels = [level for level, _ in _headings(page)]
    assert levels and levels[0] == 1 and levels.count(1) == 1, _headings(page)
    assert all(b - a <= 1 for a, b in itertools.pairwise(levels)), _headings(page)  # no level skipped


def test_phone_result_is_scrolled_to_and_focused(
    server: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    page = _analyse(server, browser, _face_like_png(tmp_path / "face.png"), width=390, height=844)
    page.wait_for_selector("#overlay-image[data-method='gradcam']")
    assert page.evaluate("document.activeElement.id") == "ens-heading"
    assert "ensemble verdict" in page.evaluate("document.activeElement.textContent")
    # the verdict, ~900 px below the upload form on a phone, is brought into view
    page.wait_for_function(
        "() => { const r = document.getElementById('ensemble').getBoundingClientRect();"
        " return window.scrollY > 300 && r.top >= -1 && r.top < innerHeight / 2; }",
        timeout=5_000,
    )
    page.screenshot(path=str(tmp_path / "phone-result.png"))
    _keep_screenshot(tmp_path / "phone-result.png")
    page.close()


def test_headings_and_alt_texts(server: dict[str, Any], browser: Any, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1360, "height": 1000})
    page.goto(server["url"] + "/")
    _assert_heading_order(page)  # before a result: the h1 first, no level skipped
    page.close()
    page = _analyse(server, browser, _face_like_png(tmp_path / "portrait.png"))
    page.wait_for_selector("#overlay-image[data-method='gradcam']")
    _assert_heading_order(page)  # with a result shown, still one h1, first
    assert "portrait.png" in page.get_attribute("#base-image", "alt")
    alt = page.get_attribute("#overlay-image", "alt")
    model = page.get_attribute("#overlay-image", "data-model")
    assert "portrait.png" in alt and "gradcam" in alt and model in alt
    page.close()


def test_history_and_cards_work_from_the_keyboard(
    server: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    page = _analyse(server, browser, _face_like_png(tmp_path / "keys.png"))
    page.wait_for_selector("#overlay-image[data-method='gradcam']")
    # model cards: Space and Enter select, as on a button
    page.focus(".card[data-model='tiny-vit']")
    page.keyboard.press("Space")
    page.wait_for_selector("#overlay-image[data-model='tiny-vit']")
    assert page.get_attribute(".card[data-model='tiny-vit']", "aria-pressed") == "true"
    page.focus(".card[data-model='tiny-cnn']")
    page.keyboard.press("Enter")
    page.wait_for_selector("#overlay-image[data-model='tiny-cnn']")
    assert page.evaluate("window.scrollY") < 1000  # Space did not scroll the page away
    page.close()

    # recent analyses: focusable buttons that open with Enter or Space
    for key in ("Enter", "Space"):
        page = browser.new_page(viewport={"width": 1360, "height": 1000})
        page.goto(server["url"] + "/")
        page.fill("#api-key", server["key"])
        page.click("#refresh-history")
        page.wait_for_selector("#history li[data-id]")
        # a list of real buttons: the list keeps its meaning (no role on the ul or the items)
        assert page.get_attribute("#history", "role") is None
        assert page.locator("#history li[role]").count() == 0
        page.focus("#refresh-history")
        page.keyboard.press("Tab")  # the next stop after "refresh" is the first analysis
        assert page.evaluate("document.activeElement.matches('#history li[data-id] > button')")
        page.keyboard.press(key)
        page.wait_for_selector("#result:not([hidden])")
        page.wait_for_function("() => document.activeElement.id === 'ens-heading'")
        page.close()


def test_class_agnostic_methods_are_not_called_evidence_for_fake(
    server: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    info = httpx.get(server["url"] + "/v1/info").json()
    assert "eigencam" in info["class_agnostic_methods"] and "gradcam" not in info["class_agnostic_methods"]
    page = _analyse(server, browser, _face_like_png(tmp_path / "agnostic.png"), methods=("eigencam",))
    page.wait_for_selector("#overlay-image[data-method='gradcam']")
    assert page.is_hidden("#agnostic-note") and "evidence for “fake”" in page.inner_text(".legend")
    page.select_option("#method-select", "eigencam")
    page.wait_for_selector("#overlay-image[data-method='eigencam']")
    note = page.inner_text("#agnostic-note")
    assert "class-agnostic: where the model is active, not evidence for fake" in note
    assert "evidence for “fake”" not in page.inner_text(".legend")
    assert "class-agnostic" in page.inner_text("#method-select option[value='eigencam']")
    assert "not evidence for fake" in page.get_attribute("#overlay-image", "alt")
    page.select_option("#method-select", "gradcam")
    page.wait_for_selector("#overlay-image[data-method='gradcam']")
    assert page.is_hidden("#agnostic-note")
    page.close()


def test_flat_map_has_no_peak_to_mean(server: dict[str, Any], browser: Any, tmp_path: Path) -> None:
    """A map with no positive part (max ≤ 0): its peak / mean of 0 is an artefact, shown as n/a. The analysis
    is reopened from the history with its gradcam maps made flat on the way (an upload's body cannot be
    replayed through a route in Chromium)."""

    def flatten(route: Any) -> None:
        body = route.fetch().json()
        body["items"] = body["items"][:1]
        for a in body["items"]:
            a["image"]["filename"] = "flattened.png"  # this list, not one loaded before the route
            for m in a["models"]:
                s = m["summaries"].get("gradcam")
                b = m["robustness"].get("gradcam")
                if s and b:
                    s["flat"], s["stats"]["max"], s["stats"]["peak_to_mean"] = True, 0.0, 0.0
                    b["flat"], b["peak_to_mean"] = True, 0.0
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    page = _analyse(server, browser, _face_like_png(tmp_path / "flat.png"))
    page.wait_for_selector("#overlay-image[data-method='gradcam']")
    row = page.locator("#badge tr", has_text="peak / mean")
    assert re.fullmatch(r"\d+\.\d\d", row.locator("td.num").inner_text())  # an ordinary map keeps its number
    assert page.is_hidden("#flat-stamp") and "flat" not in (
        page.get_attribute("#overlay-image", "class") or ""
    )
    page.route(re.compile(r"/v1/analyses\?limit="), flatten)
    page.click("#refresh-history")
    page.click("#history li[data-id]:has-text('flattened.png')")
    page.wait_for_function("() => document.activeElement.id === 'ens-heading'")
    page.wait_for_selector("#overlay-image[data-method='gradcam']")
    assert row.locator("td.num").inner_text() == "n/a (flat)"
    assert "This map is flat" in page.inner_text("#badge")
    # on the image itself: greyed and stamped, not painted all hot
    assert page.is_visible("#flat-stamp") and page.inner_text("#flat-stamp") == "flat: no location"
    assert "flat" in page.get_attribute("#overlay-image", "class").split()
    assert page.get_attribute("#overlay-image", "alt").endswith("(flat: no location)")
    page.close()


def test_shrunk_image_says_so_and_opens_full_size(
    server: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    import numpy as np
    from PIL import Image

    wide = tmp_path / "wide.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (200, 2000, 3), dtype=np.uint8)).save(wide)
    page = _analyse(server, browser, wide)
    page.wait_for_selector("#overlay-image[data-method='gradcam']")
    shown = page.eval_on_selector("#base-image", "e => e.getBoundingClientRect().width")
    assert shown < 2000
    percent = int(100 * shown / 2000 + 0.5)  # JS rounds half up
    assert page.inner_text("#zoom-note").replace("\u00a0", " ") == f"image scaled to {percent} %"
    page.click("#zoom-toggle")
    assert page.eval_on_selector("#base-image", "e => e.clientWidth") == 2000
    assert page.eval_on_selector("#stage", "e => e.scrollWidth > e.clientWidth")  # it scrolls
    assert page.eval_on_selector("#overlay-image", "e => e.clientWidth") == 2000  # the overlay follows
    assert page.get_attribute("#zoom-toggle", "aria-pressed") == "true"
    page.click("#zoom-toggle")
    assert page.eval_on_selector("#base-image", "e => e.getBoundingClientRect().width") == shown
    page.close()


def _keep_screenshot(path: Path) -> None:
    import os

    target = os.environ.get(SCREENSHOT_DIR_ENV)
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


def test_a_tiled_badge_says_its_numbers_are_one_tile_s(
    server: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    """A tiled image: the badge grades its most fake-looking tile (focused, peak / mean 35) while the map
    stitched from all tiles is flat. The panel gives the tile's number, says whose numbers they are, and
    calls the stitched map flat — it had shown "n/a (flat)" beside the tile's entropy."""

    def tiled(route: Any) -> None:
        body = route.fetch().json()
        body["items"] = body["items"][:1]
        for a in body["items"]:
            a["image"]["filename"] = "tiled.png"
            for m in a["models"]:
                s = m["summaries"].get("gradcam")
                b = m["robustness"].get("gradcam")
                if s and b:
                    s["flat"], s["stats"]["max"] = True, -0.0015
                    b["flat"], b["peak_to_mean"], b["tile"] = False, 35.0, [224.0, 64.0, 480.0, 320.0]
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    page = _analyse(server, browser, _face_like_png(tmp_path / "big.png"))  # listed again as tiled.png
    page.wait_for_selector("#overlay-image[data-method='gradcam']")
    page.route(re.compile(r"/v1/analyses\?limit="), tiled)
    page.click("#refresh-history")
    page.click("#history li[data-id]:has-text('tiled.png')")
    page.wait_for_function("() => document.activeElement.id === 'ens-heading'")
    page.wait_for_selector("#badge-tile")
    assert page.locator("#badge tr", has_text="peak / mean").locator("td.num").inner_text() == "35.00"
    assert (
        "x 224–480, y 64–320 (the most fake-looking): these numbers are that tile's map"
        in page.inner_text("#badge-tile")
    )
    assert "The map stitched from all tiles is flat" in page.inner_text("#badge")
    page.close()


def test_forgetting_or_changing_the_key_hides_the_result(
    server: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    """On a shared workstation the result shown belongs to the key that loaded it: "forget" or another key
    hides it (with its image, verdicts and overlays), as the history list switches; the same key shows
    results again."""
    page = _analyse(server, browser, _face_like_png(tmp_path / "mine.png"))
    page.click("#key-forget")
    assert page.is_hidden("#result") and page.is_visible("#empty")
    page.fill("#api-key", server["key"])
    page.click("#refresh-history")
    page.click("#history li[data-id]:has-text('mine.png')")
    page.wait_for_selector("#result:not([hidden])")
    page.fill("#api-key", "fl_someone-else")
    assert page.is_hidden("#result")
    page.close()


def test_a_blank_image_gets_no_verdict_pill(server: dict[str, Any], browser: Any, tmp_path: Path) -> None:
    """A uniform grey square: its pill (and its history entry) says "no verdict · blank image" in grey, not
    a red FAKE; the score stays shown."""
    from PIL import Image

    path = tmp_path / "grey.png"
    Image.new("RGB", (96, 96), (128, 128, 128)).save(path)
    page = _analyse(server, browser, path)
    pill = page.locator("#ens-pill")
    assert pill.inner_text().lower().startswith("no verdict · blank image")
    assert "none" in (pill.get_attribute("class") or "").split()
    assert "p(fake)" in page.inner_text("#ens-score")
    page.click("#refresh-history")
    entry = page.locator("#history li[data-id]:has-text('grey.png') .pill").first
    assert entry.inner_text().lower().startswith("no verdict")
    page.close()


def test_the_history_pages_back_and_tells_entries_apart(
    server: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    """Older analyses are reached through "older analyses…", which follows the page's cursor (the list had
    stopped at 15); each entry shows when it was analysed and its score, so two "face.png" differ."""
    seen: list[str] = []

    def paged(route: Any) -> None:
        before = "before=" in route.request.url
        seen.append(route.request.url)
        body = route.fetch(url=route.request.url.split("&before=")[0]).json()
        item = body["items"][0]
        item["image"]["filename"] = "older.png" if before else "newer.png"
        body["items"] = [item]
        body["next_before"] = None if before else "cursor-1"
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    page = _analyse(server, browser, _face_like_png(tmp_path / "face.png"))
    page.route(re.compile(r"/v1/analyses\?limit="), paged)
    page.click("#refresh-history")
    page.wait_for_selector("#history li[data-id]:has-text('newer.png')")
    entry = page.inner_text("#history li[data-id]:has-text('newer.png') .hwhen")
    assert re.search(r"\d", entry) and re.search(r" · p [01]\.\d\d$", entry), entry
    page.click("#history .more-row")
    page.wait_for_selector("#history li[data-id]:has-text('older.png')")
    assert "before=cursor-1" in seen[-1] and page.locator("#history .more-row").count() == 0
    page.close()
