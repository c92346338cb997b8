"""The report's layout: elongated and small images, phones, print, class-agnostic maps, numbers near their
thresholds, flat maps, headings and alt texts."""

from __future__ import annotations

import base64
import io
import re
from dataclasses import replace
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from fakelens.errors import ConfigError
from fakelens.report import render_report
from fakelens.report.reading import equivariance_text, peak_to_mean_text, reading_sections
from fakelens.report.render import AGNOSTIC_NOTE, embed_size

from .conftest import MakeAnalysis, blob, heatmap, ok_badge


def _picture(text: str, alt: str) -> Image.Image:
    """The embedded picture whose alt text is ``alt``."""
    m = re.search(rf"alt='{re.escape(alt)}' src='data:image/\w+;base64,([^']+)'", text)
    assert m, alt
    return Image.open(io.BytesIO(base64.b64decode(m.group(1))))


def _report(make_analysis: MakeAnalysis, w: int, h: int, name: str = "x.png", **maps: object) -> str:
    hm = maps or {"gradcam": heatmap("gradcam", blob(w / 2, h / 2, 8, (h, w)), ok_badge("gradcam"))}
    a = replace(make_analysis({"cnn": (0.9, hm)}), width=w, height=h)
    return render_report([a], [Image.new("RGB", (w, h), (90, 120, 150))], [name], faces=False)


def test_embedded_size_bounds_the_area_of_elongated_images_not_only_their_long_side() -> None:
    assert embed_size(512, 512, 480) == (480, 480)
    assert embed_size(480, 640, 480) == (360, 480)  # up to 4:3 as before: the long side at most 480
    assert embed_size(40, 64, 480) == (40, 64)  # never enlarged
    h, w = embed_size(200, 2000, 480)
    assert h >= 120 and h * w <= 0.75 * 480 * 480 * 1.01  # a readable strip, no more pixels than a 4:3 image
    assert embed_size(2000, 200, 480) == (w, h)
    assert max(embed_size(100, 10_000, 480)) == 4 * 480  # the long side is capped


def test_a_wide_image_keeps_a_useful_short_side_and_is_laid_out_one_tile_per_row(
    make_analysis: MakeAnalysis,
) -> None:
    text = _report(make_analysis, 2000, 200, "strip.png")
    original = _picture(text, "original: strip.png")
    overlay = _picture(text, "gradcam overlay of cnn on strip.png")
    assert original.size == overlay.size and original.height >= 120 and original.width <= 1920
    assert "class='maps wide'" in text and "grid-template-columns:22px" not in text
    tall = _report(make_analysis, 200, 2000, "pole.png")
    assert _picture(tall, "original: pole.png").width >= 120
    assert "class='maps'" in tall  # the grid, its pictures at most 80 % of the window's height
    assert "max-height:80vh" in tall and "object-fit:contain" in tall
    small = _report(make_analysis, 64, 40)
    assert "class='maps px'" in small and _picture(small, "original: x.png").size == (64, 40)


def test_a_phone_gets_one_tile_per_row_and_a_scrolling_summary(make_analysis: MakeAnalysis) -> None:
    text = _report(make_analysis, 200, 160)
    phone = re.search(r"@media screen and \(max-width:700px\)\{(.*?)\}\}", text, re.S)
    assert phone and "grid-template-columns:minmax(0,1fr)!important" in phone.group(1)
    assert "grid-row:auto!important;grid-column:auto!important" in phone.group(1)  # beats the inline style
    assert (
        "<h2 class='summary'>Summary</h2><div class='scroll' tabindex='0' role='region' "
        "aria-label='summary of verdicts'><table class='grid'>" in text
    )
    assert ".scroll{overflow-x:auto" in text


def test_printing_keeps_the_verdict_colours_and_headings_with_their_content(
    make_analysis: MakeAnalysis,
) -> None:
    text = _report(make_analysis, 200, 160)
    assert "-webkit-print-color-adjust:exact" in text and "print-color-adjust:exact}" in text
    assert "@page{margin:12mm}" in text and "break-after:avoid" in text and "break-inside:avoid" in text


def test_class_agnostic_maps_are_not_called_evidence_for_fake(make_analysis: MakeAnalysis) -> None:
    m = blob(100, 80, 8)
    mixed = _report(
        make_analysis,
        200,
        160,
        gradcam=heatmap("gradcam", m, ok_badge("gradcam")),
        eigencam=heatmap("eigencam", m, ok_badge("eigencam")),
    )
    assert mixed.count(AGNOSTIC_NOTE) == 1  # the eigencam tile only
    assert (
        "colour = evidence for <b>fake</b>; for the class-agnostic eigencam, where the model is active"
        in mixed
    )
    assert "for the class-agnostic eigencam: where it is active)</h3>" in mixed
    assert "The class-agnostic eigencam map ignores the target: it shows where" in mixed  # the legend
    only = _report(make_analysis, 200, 160, eigencam=heatmap("eigencam", m, ok_badge("eigencam")))
    assert (
        "colour = where the model is active (class-agnostic: eigencam), <b>not</b> evidence for fake" in only
    )
    assert "where each model sees evidence for fake" not in only
    plain = _report(make_analysis, 200, 160)
    assert "class-agnostic" not in plain and "colour = evidence for <b>fake</b>, relative" in plain
    eig = heatmap("eigencam", m, ok_badge("eigencam"))
    eig.summary["stats"]["negative_mass"] = 0.9  # no sign for fake or real: not said to point to real
    a = make_analysis({"cnn": (0.2, {"eigencam": eig})})
    where = dict(reading_sections(a))["Where"]
    assert "points to real" not in where
    assert "The eigencam map is class-agnostic: it shows where the model is active" in where
    assert "The maps show evidence for 'fake'" not in where


def test_robustness_numbers_are_never_rounded_onto_their_threshold(make_analysis: MakeAnalysis) -> None:
    assert equivariance_text(0.796, 0.67) == "mean 0.796 (passes at ≥ 0.80); worst view 0.67"
    assert equivariance_text(0.85, 0.59) == "mean 0.85 (passes at ≥ 0.80); worst view 0.59"
    assert equivariance_text(0.81, 0.7996) == "mean 0.81 (passes at ≥ 0.80); worst view 0.7996"
    assert equivariance_text(None) == "mean – (passes at ≥ 0.80)"
    assert equivariance_text(float("nan"), float("nan")) == "mean – (passes at ≥ 0.80); worst view –"
    near = {
        **ok_badge("gradcam"),
        "equivariance": 0.796,
        "grade": "check",
        "flags": {"not-equivariant": "mean equivariance cosine 0.796 < 0.80"},
    }
    text = _report(make_analysis, 200, 160, gradcam=heatmap("gradcam", blob(100, 80, 8), near))
    assert "mean 0.796 (passes at ≥ 0.80); worst view 0.88" in text
    assert "did not move with the image (equivariance 0.796, worst under rotate(+15))" in text


def test_a_map_without_positive_mass_has_no_peak_to_mean(make_analysis: MakeAnalysis) -> None:
    assert (
        peak_to_mean_text(0.0) == peak_to_mean_text(None) == peak_to_mean_text(float("nan")) == "n/a (flat)"
    )
    assert peak_to_mean_text(5.04) == "5.0" and peak_to_mean_text(1.1, flat=True) == "1.1 (flat)"
    zero = heatmap("gradcam", np.zeros((160, 200)), None, flat=True)
    zero.summary["stats"]["peak_to_mean"] = 0.0
    text = _report(make_analysis, 200, 160, gradcam=zero)
    assert "peak/mean n/a (flat)" in text and "peak/mean 0.0" not in text
    badge = {**ok_badge("gradcam"), "peak_to_mean": 0.0, "flat": True}
    text = _report(
        make_analysis, 200, 160, gradcam=heatmap("gradcam", np.zeros((160, 200)), badge, flat=True)
    )
    assert "<th>peak / mean</th><td>n/a (flat)</td>" in text


class _Headings(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.levels: list[int] = []
        self.alts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if re.fullmatch(r"h[1-6]", tag):
            self.levels.append(int(tag[1]))
        if tag == "img":
            self.alts.append(dict(attrs).get("alt") or "")


def test_headings_never_skip_a_level_and_pictures_say_what_they_show(make_analysis: MakeAnalysis) -> None:
    m = blob(100, 80, 8)
    a = make_analysis(
        {"cnn": (0.9, {"gradcam": heatmap("gradcam", m)}), "vit": (0.2, {"gradcam": heatmap("gradcam", m)})}
    )
    img = Image.new("RGB", (200, 160))
    p = _Headings()
    p.feed(render_report([a, a], [img, img], ["one.png", "two.png"], faces=False))
    assert p.levels[0] == 1
    assert all(b <= a_ + 1 for a_, b in zip(p.levels, p.levels[1:], strict=False)), p.levels
    for name in ("one.png", "two.png"):
        assert f"original: {name}" in p.alts
        assert f"gradcam overlay of cnn on {name}" in p.alts and f"gradcam overlay of vit on {name}" in p.alts


def _contrast(fg: str, bg: str) -> float:
    """WCAG 2 contrast ratio of two #rrggbb colours."""

    def lum(c: str) -> float:
        rgb = [int(c[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        r, g, b = (x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4 for x in rgb)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    hi, lo = sorted((lum(fg), lum(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_white_pill_text_meets_wcag_aa(make_analysis: MakeAnalysis) -> None:
    """Pills are 12 px bold: white on their colour needs 4.5:1 (the grey "unchecked" pill had 3.1:1)."""
    text = _report(make_analysis, 200, 160)
    colours = dict(re.findall(r"--(\w+):(#[0-9a-f]{6})", text))
    pills = re.findall(r"\.pill\.(\w+)\{background:(?:var\(--(\w+)\)|(#[0-9a-f]{6}));color:#fff\}", text)
    assert {"fake", "real", "na"} <= {p[0] for p in pills}
    for name, var, hexa in pills:
        assert _contrast("#ffffff", hexa or colours[var]) >= 4.5, name


def test_the_legend_names_the_colours_of_the_colormap_in_use(make_analysis: MakeAnalysis) -> None:
    a = make_analysis({"cnn": (0.9, {"gradcam": heatmap("gradcam", blob(100, 80, 8))})})
    img = Image.new("RGB", (200, 160))
    jet = render_report([a], [img], ["x.png"], faces=False)
    viridis = render_report([a], [img], ["x.png"], faces=False, cmap="viridis")
    assert "colour scale from dark blue (0, no evidence) to dark red (1, the map&#x27;s peak)" in jet
    assert "dark blue" not in viridis and "dark purple = none, yellow = the map's peak" in viridis
    with pytest.raises(ConfigError, match="unknown colormap 'plasma'"):
        render_report([a], [img], ["x.png"], faces=False, cmap="plasma")
