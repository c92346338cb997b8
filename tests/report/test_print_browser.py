"""The report in a real browser (Debian's chromium driven by Playwright): printed, every heatmap card is kept
whole, and the tables that scroll sideways on a phone can be scrolled from the keyboard. Skipped when
chromium or Playwright is missing."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from fakelens.report import render_report

from .conftest import MakeAnalysis, blob, heatmap, ok_badge

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("chromium not found (apt-get install -y chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        except Exception as exc:  # pragma: no cover - a broken browser install
            pytest.skip(f"chromium did not start: {exc}")
        yield b
        b.close()


def _portrait_report(make_analysis: MakeAnalysis, tmp_path: Path) -> Path:
    w, h = 300, 420  # a portrait photo: tall cards, the second model's likely to start low on a page
    maps = {m: heatmap(m, blob(w / 2, h / 3, 20, (h, w)), ok_badge(m)) for m in ("gradcam", "layercam")}
    a = make_analysis({"cnn": (0.9, maps), "vit": (0.2, maps)})
    a = replace(a, width=w, height=h)
    path = tmp_path / "report.html"
    text = render_report(
        [a, a], [Image.new("RGB", (w, h), (90, 120, 150))] * 2, ["a.png", "b.png"], faces=False
    )
    path.write_text(text, encoding="utf-8")
    return path


def test_printed_cards_are_kept_whole(make_analysis: MakeAnalysis, browser: Any, tmp_path: Path) -> None:
    """Chromium does not honour break-inside:avoid inside a grid, so print lays the maps out as a wrapping
    flow whose items may not break: a card's CHECK pill and the badge saying why stay on one sheet."""
    page = browser.new_page()
    page.goto(_portrait_report(make_analysis, tmp_path).as_uri())
    page.emulate_media(media="print")
    assert page.eval_on_selector(".maps", "e => getComputedStyle(e).display") == "flex"
    breaks = page.eval_on_selector_all(".maps .tile", "ts => ts.map(t => getComputedStyle(t).breakInside)")
    assert breaks and set(breaks) == {"avoid"}
    # two maps side by side, each model's name above its row (not turned on its side)
    tops = page.eval_on_selector(
        ".maps", "m => [...m.children].map(d => Math.round(d.getBoundingClientRect().top))"
    )
    assert len(set(tops)) < len(tops)
    modes = page.eval_on_selector_all(".maps .rowlabel", "ls => ls.map(l => getComputedStyle(l).writingMode)")
    assert set(modes) == {"horizontal-tb"}
    assert len(page.pdf(format="A4")) > 10_000
    page.close()


def test_tables_that_scroll_on_a_phone_take_the_keyboard_focus(
    make_analysis: MakeAnalysis, browser: Any, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 375, "height": 800})
    page.goto(_portrait_report(make_analysis, tmp_path).as_uri())
    boxes = page.eval_on_selector_all(
        ".scroll", "bs => bs.map(b => [b.tabIndex, b.getAttribute('role'), b.getAttribute('aria-label')])"
    )
    assert boxes and all(t == 0 and r == "region" and label for t, r, label in boxes)
    page.close()
