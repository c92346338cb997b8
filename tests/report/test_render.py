"""The HTML report: self-contained, complete (every model and method), escaped, and built on real analyses."""

from __future__ import annotations

import re
from dataclasses import replace
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from fakelens.analysis import Analysis, analyze_images
from fakelens.face_verdicts import FaceVerdict
from fakelens.models import Ensemble, create_model
from fakelens.report import render_report
from fakelens.report.regions import FaceRegions, region_labels

from .conftest import H, MakeAnalysis, W, bad_badge, blob, heatmap, ok_badge, synthetic_face

URL = re.compile(r"""(?:src|href|action)\s*=\s*["']?\s*(?!data:|#)([a-z][a-z0-9+.-]*:|//)""", re.I)


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.srcs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.srcs += [v or "" for k, v in attrs if k in ("src", "href")]


def assert_self_contained(text: str) -> _Collect:
    assert not URL.search(text), URL.search(text)
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text.lower() and "@import" not in text and "url(" not in text
    p = _Collect()
    p.feed(text)
    assert all(s.startswith(("data:image/", "#")) for s in p.srcs), p.srcs
    return p


def test_synthetic_report_is_complete_and_self_contained(make_analysis: MakeAnalysis) -> None:
    face = synthetic_face()
    regions = FaceRegions((face,), region_labels([face], (H, W)))
    a = make_analysis(
        {
            "cnn-<b>": (0.9, {"gradcam": heatmap("gradcam", blob(100, 80, 8), ok_badge("gradcam"))}),
            "vit": (
                0.3,
                {
                    "gradcam": heatmap("gradcam", blob(20, 20, 8), bad_badge("gradcam")),
                    "rollout": heatmap("rollout", np.ones((H, W)), None, flat=True),
                },
            ),
        },
        errors={"cnn-<b>": {"rollout": "no attention layers"}},
    )
    img = Image.fromarray(np.full((H, W, 3), 90, np.uint8))
    text = render_report(
        [a, a], [img, img], ["one.png", "<two>.jpg"], regions=[regions, None], title="case 7"
    )
    p = assert_self_contained(text)
    assert p.tags.count("section") >= 2 and "<title>case 7</title>" in text
    assert "cnn-&lt;b&gt;" in text and "cnn-<b>" not in text and "&lt;two&gt;.jpg" in text  # escaped
    for name in ("vit", "gradcam", "rollout"):
        assert name in text
    assert "could not run on cnn-&lt;b&gt;: no attention layers" in text
    # the flat rollout map is greyed and stamped; the others are drawn as they are
    assert text.count("<span class='stamp'>flat: no location</span>") == 2  # once per image
    assert text.count("<div class='flatmap'>") == 2 and "rollout overlay of vit on one.png (flat: no" in text
    # 2 originals + 3 overlays per image, one region picture, colour bars
    assert text.count("data:image/jpeg;base64,") == 2 * 4 + 1
    assert text.count("Heatmap mass by facial region") == 1  # only the image with regions
    assert "The models disagree" in text and "robust" in text and "check" in text
    assert "mean equivariance cosine 0.45 &lt; 0.80" in text  # the badge's flag reason
    assert "graded on one native tile" not in text  # no tile on these badges
    tiled = heatmap("gradcam", blob(100, 80, 8), {**ok_badge("gradcam"), "tile": [256.0, 0.0, 512.0, 256.0]})
    one = render_report([make_analysis({"cnn": (0.9, {"gradcam": tiled})})], [img], ["big.png"], faces=False)
    assert "graded on one native tile, x 256–512, y 0–256 (the most fake-looking)" in one


def test_the_legend_says_whether_scores_are_calibrated(make_analysis: MakeAnalysis) -> None:
    from dataclasses import replace

    from fakelens.report.render import CALIBRATED_NOTE, UNCALIBRATED_NOTE

    a = make_analysis({"cnn": (0.9, {})})
    img = Image.new("RGB", (W, H))
    plain = render_report([a], [img], ["x.png"], faces=False)
    calibrated = render_report([replace(a, calibrated=True)], [img], ["x.png"], faces=False)
    assert UNCALIBRATED_NOTE in plain and CALIBRATED_NOTE not in plain
    assert CALIBRATED_NOTE in calibrated and UNCALIBRATED_NOTE not in calibrated
    assert "threshold 0.50, calibrated" in calibrated


def test_each_face_gets_its_own_verdict_numbered_on_the_picture(make_analysis: MakeAnalysis) -> None:
    left, right = synthetic_face(cx=50.0), synthetic_face(cx=150.0)
    regions = FaceRegions((left, right), region_labels([left, right], (H, W)))
    a = make_analysis({"cnn": (0.2, {"gradcam": heatmap("gradcam", blob(150, 80, 8), ok_badge("gradcam"))})})
    verdicts = [
        FaceVerdict(left.box, (0, 0, 64, 64), 0.1, "real", {"cnn": (0.1, "real")}),
        FaceVerdict(right.box, (118, 48, 182, 112), 0.83, "fake", {"cnn": (0.83, "fake")}),
    ]
    img = Image.fromarray(np.full((H, W, 3), 90, np.uint8))
    text = " ".join(
        render_report([a], [img], ["pair.png"], regions=[regions], face_verdicts=[verdicts]).split()
    )
    assert_self_contained(text)
    assert "Each face judged on its own" in text and "x 118–182, y 48–112" in text
    assert "face 1 real (0.10) and face 2 fake (0.83)" in text
    assert "Face 2 reads fake while the whole image reads real" in text
    # and where the verdict is, not only in the paragraph further down: the header, the summary, the banner
    assert "(1 of them with a face that reads fake on its own)" in text
    assert text.count("face 2 reads fake</span>") == 1
    assert "but face 2 reads fake on its own: look at it" in text
    assert "class='facefake'" not in text and "pill facefake" in text
    assert "reads fake on its own" not in " ".join(
        render_report([a], [img], ["pair.png"], regions=[regions], face_verdicts=[verdicts[:1]]).split()
    )
    assert "class='facemaps'" not in text  # verdicts without maps: no face pictures
    mapped = [
        replace(v, heatmaps={"cnn": (np.ones((64, 64), np.float32), np.ones((64, 64), bool))})
        for v in verdicts
    ]
    text = render_report([a], [img], ["pair.png"], regions=[regions], face_verdicts=[mapped])
    assert_self_contained(text)
    assert text.count("<figcaption>face ") == 2 and "cnn 0.83</figcaption>" in text  # each window and its map
    plain = render_report([a], [img], ["pair.png"], regions=[regions])
    assert "Each face judged on its own" not in plain  # no verdicts given: the regions only
    with pytest.raises(ValueError, match="2 face verdict lists for 1 analyses"):
        render_report([a], [img], ["x"], regions=[regions], face_verdicts=[verdicts, verdicts])


def test_lengths_must_match(make_analysis: MakeAnalysis) -> None:
    a = make_analysis({"cnn": (0.9, {})})
    img = Image.new("RGB", (W, H))
    with pytest.raises(ValueError, match="1 analyses, 2 images"):
        render_report([a], [img, img], ["x"], faces=False)


def test_report_from_a_real_analysis_with_face_detection() -> None:
    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8))]
    ens = Ensemble([create_model("tiny-cnn", seed=1), create_model("tiny-vit", seed=2)])
    analyses = analyze_images(ens, imgs, ["gradcam", "rollout"])
    text = render_report(analyses, imgs, ["noise.png"])  # faces=True: detection runs, finds none
    assert_self_contained(text)
    for name in ("tiny-cnn", "tiny-vit", "gradcam", "rollout", "equivariance", "mass on fill"):
        assert name in text
    assert "facial regions per heatmap" in text or "not analysed" in text
    assert "Heatmap mass by facial region" not in text  # no face in noise


def test_a_small_image_keeps_its_pixels_sharp_when_enlarged(make_analysis: MakeAnalysis) -> None:
    a = make_analysis({"cnn": (0.9, {"gradcam": heatmap("gradcam", blob(100, 80, 8), ok_badge("gradcam"))})})
    wide = replace(a, width=640, height=480)
    big = render_report([wide], [Image.new("RGB", (640, 480))], ["x"], faces=False)
    tiny = render_report([replace(a, width=8, height=8)], [Image.new("RGB", (8, 8))], ["t.png"], faces=False)
    assert "class='maps px'" in tiny and "class='maps px'" not in big


def test_an_untrained_model_is_flagged_on_its_card_and_first_in_the_reading(
    make_analysis: MakeAnalysis,
) -> None:
    a = make_analysis({"cnn": (0.9, {}), "vit": (0.8, {})})
    assert not a.untrained and a.to_dict()["untrained"] is False
    a.models[0].untrained = True
    assert a.untrained and a.to_dict()["untrained"] is True  # said at the top, not only per member
    text = " ".join(render_report([a], [Image.new("RGB", (W, H))], ["x.png"], faces=False).split())
    assert text.count("pill untrained") == 1 and "cnn (untrained)</th>" in text  # card, summary, banner
    assert "untrained: cnn (its score means nothing)" in text
    assert "<b>Verdict.</b> cnn is an untrained architecture (a random real/fake head, never trained)" in text
    plain = render_report([make_analysis({"cnn": (0.9, {})})], [Image.new("RGB", (W, H))], ["x"], faces=False)
    assert "pill untrained" not in plain and "untrained architecture" not in plain


def test_an_image_read_in_part_says_how_much_escaped(make_analysis: MakeAnalysis) -> None:
    a = make_analysis({"cnn": (0.9, {}), "vit": (0.8, {})})
    a.models[1].coverage, a.models[1].tiles = 0.0004, 32  # a gigapixel photo read as 32 tiles
    html_text = render_report([a], [Image.new("RGB", (W, H))], ["x.png"], faces=False)
    assert a.partial and "read &lt;0.1 %</span>" in html_text and "><0.1 %<" not in html_text
    assert "only &lt;0.1 % of the image read: the rest was not judged" in html_text
    assert "raise --max-tiles'>" in html_text and "crops the centre" not in html_text
    a.models[1].tiles = 1  # a centre-crop model: more tiles would not help
    html_text = render_report([a], [Image.new("RGB", (W, H))], ["x.png"], faces=False)
    assert "--max-tiles" not in html_text and "a model crops the centre of its input" in html_text


def _banner(a: Analysis) -> str:
    html = render_report([a], [Image.new("RGB", (W, H))], ["x.png"], faces=False)
    start = html.index("<div class='banner")
    return " ".join(html[start : html.index("</div></div>", start)].split())


def test_the_banner_keeps_every_warning_and_hedges_weak_verdicts(make_analysis: MakeAnalysis) -> None:
    """A split keeps "close to the threshold"; a small image drops "a clear margin" (its margin means little)
    and, like a split, gets a hedged banner; transparency and extra frames are said there too."""
    split = make_analysis({"cnn": (0.62, {}), "vit": (0.45, {})})  # ensemble 0.535
    assert "models disagree · close to the threshold" in _banner(split) and "hedged" in _banner(split)
    small = make_analysis({"cnn": (0.99, {}), "vit": (0.97, {})})
    assert "a clear margin" in _banner(small) and "hedged" not in _banner(small)
    small.models[0].pixel_fraction = 0.02
    assert "clear margin" not in _banner(small) and "a small image: little evidence" in _banner(small)
    assert "banner fake hedged" in _banner(small)
    small.transparent, small.frames = 0.4, 3
    assert "40 % transparent: the models saw it as white · frame 1 of 3 analysed" in _banner(small)


def test_a_blank_image_gets_no_verdict_in_large_letters_nor_in_the_counts(
    make_analysis: MakeAnalysis,
) -> None:
    """A uniform grey square scored 0.58: its banner said FAKE in red and the header counted it fake. It has
    nothing to judge: the banner says NO VERDICT (the score still shown), the header counts it apart."""
    blank = make_analysis({"cnn": (0.6, {}), "vit": (0.56, {})})
    blank.texture = 0.0
    assert blank.blank and blank.verdict == "fake"
    banner = _banner(blank)
    assert "banner none hedged" in banner and ">NO VERDICT<" in banner and "FAKE" not in banner
    assert "a blank image: nothing to judge" in banner and "p(fake)" in banner
    fake = make_analysis({"cnn": (0.9, {}), "vit": (0.9, {})})
    html = render_report([blank, fake], [Image.new("RGB", (W, H))] * 2, ["grey.png", "x.png"], faces=False)
    assert "2 images analysed: 1 called fake, 0 called real by the ensemble, 1 blank (no verdict)" in html
    grey = html[html.index("id='img-1'") : html.index("id='img-2'")]  # its cards: the score, no verdict
    assert grey.count("no verdict</span>") == 2 and "<span class='pill fake'>" not in grey
    summary = html[: html.index("id='img-1'")]  # the summary table's row: no verdict, by no model either
    assert summary.count("<span class='pill na'>no verdict</span>") == 3


def test_a_map_flat_on_the_image_says_so_in_its_badge(make_analysis: MakeAnalysis) -> None:
    """The badge grades the model's whole input (a small image's padding included), the stamp the image's own
    pixels: where only the image is flat, the badge's flat row says so instead of contradicting the stamp."""
    h = heatmap("gradcam", blob(50, 40, 6), ok_badge("gradcam"), flat=True)
    html = " ".join(
        render_report(
            [make_analysis({"cnn": (0.2, {"gradcam": h})})],
            [Image.new("RGB", (W, H))],
            ["x.png"],
            faces=False,
        ).split()
    )
    assert "flat: no location" in html and "<th>flat</th><td>yes, on the image</td>" in html
    h.summary["flat"] = False
    html = render_report(
        [make_analysis({"cnn": (0.2, {"gradcam": h})})], [Image.new("RGB", (W, H))], ["x.png"]
    )
    assert "<th>flat</th><td>no</td>" in html and "flat: no location" not in html
    # a tiled image: the badge grades one tile, the stamp the map stitched from all of them
    tiled = heatmap("gradcam", blob(50, 40, 6), {**ok_badge("gradcam"), "tile": [0.0, 0.0, 256.0, 256.0]})
    tiled.summary["flat"] = True
    html = " ".join(
        render_report(
            [make_analysis({"cnn": (0.2, {"gradcam": tiled})})], [Image.new("RGB", (W, H))], ["x.png"]
        ).split()
    )
    assert "<th>flat</th><td>yes, over all tiles</td>" in html
    assert "own map, whose numbers this table gives, is not" in html
