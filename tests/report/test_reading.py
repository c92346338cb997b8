"""The plain-language reading follows the numbers: agreement, disagreement, weak margins, flat and
unreliable maps, where the maps point."""

from __future__ import annotations

import re
from dataclasses import replace

import cv2
import numpy as np
import pytest

from fakelens.face_verdicts import FaceVerdict
from fakelens.report import reading
from fakelens.report.reading import focus, margin_word, pct, prob, read_analysis, threshold_text
from fakelens.report.regions import FaceRegions, region_labels

from .conftest import H, MakeAnalysis, W, bad_badge, blob, heatmap, ok_badge, synthetic_face


def _text(paras: list[str]) -> str:
    return " ".join(paras)


def test_both_models_agree_fake(make_analysis: MakeAnalysis) -> None:
    m = blob(50, 40, 6)
    a = make_analysis(
        {
            "cnn": (0.93, {"gradcam": heatmap("gradcam", m, ok_badge("gradcam"))}),
            "vit": (0.89, {"gradcam": heatmap("gradcam", m, ok_badge("gradcam"))}),
        }
    )
    text = _text(read_analysis(a))
    assert "Both models call this image fake" in text and "0.91" in text
    assert "disagree" not in text
    assert "passed the robustness checks" in text and "None of the heatmaps passed" not in text
    assert "agree on where the evidence is" in text  # identical maps
    assert "upper left" in text  # the blob's position in words


def test_disagreement_is_said_and_called_weak(make_analysis: MakeAnalysis) -> None:
    a = make_analysis(
        {
            "cnn": (0.95, {"gradcam": heatmap("gradcam", blob(30, 30, 5))}),
            "vit": (0.20, {"gradcam": heatmap("gradcam", blob(170, 130, 5))}),
        }
    )
    text = _text(read_analysis(a))
    assert "The models disagree: cnn (0.95) calls it fake, vit (0.20) calls it real" in text
    assert "weak" in text
    assert "look at different places" in text  # maps at opposite corners
    assert "not checked for robustness" in text  # no badges at all


def test_close_to_threshold_and_single_model(make_analysis: MakeAnalysis) -> None:
    a = make_analysis({"cnn": (0.55, {"gradcam": heatmap("gradcam", blob(100, 80, 40))})})
    text = _text(read_analysis(a))
    assert text.startswith("cnn calls this image fake (p(fake) 0.55") and "close to the threshold" in text
    two = make_analysis({"a": (0.53, {}), "b": (0.56, {})})
    assert "close to the threshold: weak evidence either way" in _text(read_analysis(two))


def test_flat_and_failed_maps_are_flagged(make_analysis: MakeAnalysis) -> None:
    a = make_analysis(
        {
            "vit": (
                0.9,
                {
                    "gradcam": heatmap("gradcam", blob(100, 80, 10), bad_badge("gradcam")),
                    "rollout": heatmap(
                        "rollout",
                        np.ones((H, W)),
                        {
                            **ok_badge("rollout"),
                            "grade": "check",
                            "flags": {"flat": "100% of the maps are flat"},
                        },
                        flat=True,
                    ),
                },
            )
        },
        errors={"vit": {"eigencam": "no such thing; details"}},
    )
    text = _text(read_analysis(a))
    assert "the rollout map is flat" in text
    assert "did not move with the image (equivariance 0.45, worst under scale(0.8))" in text
    assert "came out flat" in text
    assert "None of the heatmaps passed: the verdict rests on the scores alone" in text
    assert "Eigencam could not run on vit (no such thing)" in text


def test_mixed_grades_name_the_passing_map(make_analysis: MakeAnalysis) -> None:
    a = make_analysis(
        {
            "cnn": (
                0.8,
                {
                    "gradcam": heatmap("gradcam", blob(100, 80, 10), ok_badge("gradcam")),
                    "rollout": heatmap("rollout", blob(20, 20, 10), bad_badge("rollout")),
                },
            )
        }
    )
    text = _text(read_analysis(a))
    assert "The gradcam map passed the robustness checks; the rollout map did not move with the image" in text
    assert "Read the flagged maps with care" in text


def test_a_leak_is_quoted_with_its_rate_and_worst_view(make_analysis: MakeAnalysis) -> None:
    """The mean over views can sit below the fill's area while a third of the views leak: quote those."""
    flag = {"leaks-into-fill": "more mass on the black fill than its area in 50% of the views (…)"}
    new = ok_badge("gradcam") | {
        "grade": "check",
        "flags": flag,
        "border_mass": 0.16,
        "fill_fraction": 0.22,
        "leak_rate": 0.5,
        "leak_worst": {"view": "scale(0.8)", "border_mass": 0.61, "fill_fraction": 0.36},
    }
    old = ok_badge("gradcam") | {"grade": "check", "flags": flag, "border_mass": 0.16, "fill_fraction": 0.22}
    for badge, words in (
        (new, "in 50 % of the shifted views (worst, scale(0.8): 61 % of the mass on 36 % of the pixels)"),
        (old, "leaned on the black fill (more mass on the black fill than its area in 50% of the views"),
    ):
        a = make_analysis({"cnn": (0.8, {"gradcam": heatmap("gradcam", blob(100, 80, 10), badge)})})
        text = _text(read_analysis(a))
        assert words in text and "16 % of the mass" not in text


def test_facial_region_reading(make_analysis: MakeAnalysis) -> None:
    face = synthetic_face()
    regions = FaceRegions((face,), region_labels([face], (H, W)))
    p = face.points()
    mouth = blob(*p[3:5].mean(0), 2.0)
    a = make_analysis({"cnn": (0.9, {"gradcam": heatmap("gradcam", mouth, ok_badge("gradcam"))})})
    text = _text(read_analysis(a, regions, faces_checked=True))
    assert text.count("1 face found (mtcnn)") == 1
    assert re.search(r"concentrates on the mouth \((9\d|100) % of the mass", text)
    none = _text(read_analysis(a, None, faces_checked=True))
    assert "No face was found" in none and "mouth" not in none
    # two faces: a map's shares are of both faces together, and the words say so
    left, right = synthetic_face(cx=50.0), synthetic_face(cx=150.0)
    two = FaceRegions((left, right), region_labels([left, right], (H, W)))
    ones = heatmap("gradcam", np.ones((H, W)), ok_badge("gradcam"))
    text = _text(read_analysis(make_analysis({"cnn": (0.9, {"gradcam": ones})}), two, faces_checked=True))
    assert "the 2 faces together get 49 % of the mass" in text and "the face gets" not in text
    corner = heatmap("gradcam", blob(100, 150, 4), ok_badge("gradcam"))
    text = _text(read_analysis(make_analysis({"cnn": (0.9, {"gradcam": corner})}), two, faces_checked=True))
    assert "concentrates outside the faces (100 % of the mass" in text


def test_small_helpers() -> None:
    assert pct(0.623) == "62 %" and pct(0.031) == "3.1 %" and pct(0.0001) == "<0.1 %" and pct(0) == "0 %"
    assert margin_word(0.55, 0.5) == "close to the threshold"
    assert margin_word(0.7, 0.5) == "a moderate margin" and margin_word(0.95, 0.5) == "a clear margin"
    f = focus(blob(180, 140, 4))
    assert f is not None and f.where == "lower right" and f.area50 < 0.05
    # two hot spots: both named, not the empty middle between them (their mass centre)
    two = focus(blob(20, 20, 4) + 0.9 * blob(W - 20, H - 20, 4))
    assert two is not None and two.where == "upper left and the lower right"
    assert focus(np.zeros((H, W))) is None
    uniform = focus(np.ones((H, W)))
    assert uniform is not None and abs(uniform.area50 - 0.5) < 0.01


def test_focus_of_a_large_map_matches_its_full_resolution() -> None:
    """A 16-MP map is read block-averaged (FOCUS_MAX_PIXELS): same words, same area share within 1 %."""
    small = cv2.resize(blob(180, 140, 25).astype(np.float32), (1000, 800), interpolation=cv2.INTER_LINEAR)
    valid = np.ones(small.shape, bool)
    valid[:, :120] = False  # a letterbox bar
    exact = focus(small, valid)
    big = cv2.resize(small, (5000, 4000), interpolation=cv2.INTER_LINEAR)
    big_valid = cv2.resize(valid.astype(np.uint8), (5000, 4000), interpolation=cv2.INTER_NEAREST) > 0
    assert big.size > 16 * reading.FOCUS_MAX_PIXELS > 16 * small.size
    approx = focus(big, big_valid)
    assert exact is not None and approx is not None and approx.where == exact.where
    assert abs(approx.area50 - exact.area50) < 0.01


def test_a_shrunk_image_gets_a_scale_warning(make_analysis: MakeAnalysis) -> None:
    m = blob(50, 40, 6)
    a = make_analysis({"cnn": (0.2, {"gradcam": heatmap("gradcam", m, ok_badge("gradcam"))})})
    assert "shrunk" not in _text(read_analysis(a))  # scale 1: the model saw the native pixels
    a.models[0].scale = 0.5
    text = _text(read_analysis(a))
    assert f"({W} × {H} px) was shrunk 2.0× to fit" in text and "JPEG grid" in text
    a.models[0].scale = 0.8  # shrunk 1.25×: below the warning's threshold
    assert "shrunk" not in _text(read_analysis(a))


def test_an_image_smaller_than_the_input_gets_a_small_evidence_warning(make_analysis: MakeAnalysis) -> None:
    a = make_analysis({"cnn": (0.2, {"gradcam": heatmap("gradcam", blob(50, 40, 6), ok_badge("gradcam"))})})
    assert "is small" not in _text(read_analysis(a))
    a.models[0].pixel_fraction = 0.6  # a 200-px image in a 256-px input: most of it is image
    assert "is small" not in _text(read_analysis(a))
    a.models[0].pixel_fraction = 0.004
    text = _text(read_analysis(a))
    assert f"({W} × {H} px) is small: it gave the models only 0.4 % as many pixels" in text
    thin = replace(a, width=4000, height=60)  # many pixels, but a 60-px strip of each tile
    assert "(4000 × 60 px) is thin: it gave the models only" in _text(read_analysis(thin))


def test_faces_paragraph(make_analysis: MakeAnalysis) -> None:
    a = make_analysis({"cnn": (0.8, {})})  # the image reads fake
    one = [FaceVerdict((0, 0, 9, 9), (0, 0, 64, 64), 0.9, "fake", {"cnn": (0.9, "fake")})]
    assert _text(read_analysis(a)) == _text(read_analysis(a, face_verdicts=[]))  # no faces: no paragraph
    text = _text(read_analysis(a, face_verdicts=one))
    assert "Judged on a window around it, face 1 fake (0.90). The face agrees with the whole image." in text
    two = [*one, FaceVerdict((20, 0, 29, 9), (0, 0, 64, 64), 0.3, "real", {"cnn": (0.3, "real")})]
    text = _text(read_analysis(a, face_verdicts=two))
    assert (
        "face 1 fake (0.90) and face 2 real (0.30). Face 2 reads real while the whole image reads fake."
        in text
    )


def test_native_tiles_are_described_with_what_they_left_unread(make_analysis: MakeAnalysis) -> None:
    h = heatmap("gradcam", blob(50, 40, 6), ok_badge("gradcam"))
    a = make_analysis({"cnn": (0.2, {"gradcam": h})})
    a.models[0].tiles = 6
    text = _text(read_analysis(a))
    assert "cnn read the image" in text and "as 6 overlapping tiles" in text and "unread" not in text
    assert "graded" not in text  # no tile recorded on the badge
    assert h.robustness is not None
    h.robustness["tile"] = [256.0, 0.0, 512.0, 256.0]
    assert "graded the most fake-looking tile (cnn x 256–512, y 0–256)" in _text(read_analysis(a))
    a.models[0].coverage = 0.75
    text = _text(read_analysis(a))
    assert "left 25 % of the pixels unread" in text and "--max-tiles" in text and "shrunk" not in text
    assert "as 6 tiles spread over it with gaps between them" in text


def test_a_centre_crop_names_the_model_and_gives_no_tile_advice(make_analysis: MakeAnalysis) -> None:
    a = make_analysis({"cnn": (0.2, {}), "vit": (0.3, {})})
    a.models[1].coverage = 0.56  # a 4:3 photo centre-cropped to a square, then the borders cut
    text = _text(read_analysis(a))
    assert "vit crops the centre of the image to fill its input: 44 % of the pixels, the borders" in text
    assert "--max-tiles" not in text and "tile" not in text
    a.models[0].coverage = 0.56
    assert "cnn, vit crop the centre of the image to fill their input" in _text(read_analysis(a))


def test_analysis_records_the_scale_of_each_model() -> None:
    from PIL import Image

    from fakelens.analysis import analyze_images
    from fakelens.models import create_model

    det = create_model("tiny-cnn")  # 64-px input
    side = det.input_spec.size[0]
    [small, large] = analyze_images(
        det, [Image.new("RGB", (side, side)), Image.new("RGB", (4 * side, 2 * side))], [], robustness=False
    )
    assert small.models[0].scale == 1.0 and large.models[0].scale == 0.25
    assert large.models[0].to_dict()["scale"] == 0.25 and large.models[0].tiles == 1
    det.input_spec = replace(det.input_spec, mode="native")  # read at native scale, as 5 × 3 tiles
    [native] = analyze_images(det, [Image.new("RGB", (4 * side, 2 * side))], [], robustness=False)
    assert native.models[0].scale == 1.0 and native.models[0].to_dict()["tiles"] == 15
    assert native.pixel_fraction == 1.0  # every tile full of image
    [tiny, strip] = analyze_images(
        det, [Image.new("RGB", (16, 16)), Image.new("RGB", (2 * side, 1))], [], robustness=False
    )
    assert tiny.models[0].to_dict()["pixel_fraction"] == pytest.approx(16 * 16 / side**2)
    assert strip.models[0].tiles == 3 and strip.pixel_fraction == pytest.approx(1 / side)


def test_the_reading_says_when_most_evidence_is_not_drawn(make_analysis: MakeAnalysis) -> None:
    """A map whose signed mass is mostly evidence for real: the colours hide that, the text says it."""
    h = heatmap("gradcam", blob(50, 40, 6), ok_badge("gradcam"))
    a = make_analysis({"cnn": (0.2, {"gradcam": h})})
    assert "not drawn" not in _text(read_analysis(a))
    h.summary["stats"]["negative_mass"] = 0.83
    assert "Most of the signed evidence in cnn's gradcam map (83 %) points to real and is not drawn" in _text(
        read_analysis(a)
    )


def test_numbers_next_to_their_cut_off_keep_the_digits_that_show_the_side() -> None:
    from fakelens.trust.criteria import DEFAULT_CRITERIA

    assert prob(0.4994) == "0.499" and prob(0.5) == "0.50" and prob(0.52) == "0.52"
    assert prob(0.49996) == "0.49996" and prob(0.50004) == "0.50004"  # never two sides as one number
    assert threshold_text(0.5) == "0.50" and threshold_text(0.533) == "0.533"  # a threshold as it is
    assert prob(0.9355, threshold=0.936) == "0.935" and prob(0.4994, threshold=0.9) == "0.50"
    flag = DEFAULT_CRITERIA.flags({"eq_cosine": 0.796})["not-equivariant"]
    assert flag == "mean equivariance cosine 0.796 < 0.80"


def test_identical_maps_of_one_model_are_counted_once(make_analysis: MakeAnalysis) -> None:
    """Grad-CAM and HiResCAM coincide on a layer followed by global average pooling and a linear head: the
    reading says so, so that an analyst does not count the second map as a second confirmation."""
    same = blob(50, 40, 6)
    a = make_analysis(
        {
            "cnn": (0.8, {"gradcam": heatmap("gradcam", same), "hirescam": heatmap("hirescam", same.copy())}),
            "vit": (0.7, {"gradcam": heatmap("gradcam", blob(20, 20, 6))}),
        }
    )
    text = _text(read_analysis(a))
    assert "For cnn, gradcam and hirescam give the same map (their formulas coincide" in text
    a.models[0].heatmaps["hirescam"] = heatmap("hirescam", blob(52, 40, 6))
    assert "give the same map" not in _text(read_analysis(a))
