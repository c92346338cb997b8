"""The robustness badge: a few honest numbers from one batch of views, cheap enough for every heatmap."""

from __future__ import annotations

import json

import pytest
import torch

from fakelens.explain.engine import method_names
from fakelens.models import create_model
from fakelens.models.base import Detector
from fakelens.trust.badge import batch_badges, robustness_badge, robustness_badges
from fakelens.trust.synthetic import blob_image


def test_badge_grades_the_synthetic_models(planted: Detector, corner: Detector, padding: Detector) -> None:
    img, _ = blob_image((64, 64), seed=5)
    good = robustness_badge(planted, img, "gradcam")
    assert good["grade"] == "ok" and good["flags"] == {}
    assert good["equivariance"] > 0.95 and good["equivariance_min"] > 0.9
    assert good["views"] == ["hflip", "rotate(+15)", "scale(0.8)", "translate(+0.1,+0.1)"]
    assert good["border_mass"] < good["fill_fraction"] and not good["corner_argmax"] and not good["flat"]
    json.dumps(good)  # JSON-safe for the CLI, the report and the service
    bad = robustness_badge(corner, img, "gradcam")
    assert bad["grade"] == "check" and bad["corner_argmax"] and "corner-peaks" in bad["flags"]
    leak = robustness_badge(padding, img, "gradcam")
    assert "leaks-into-fill" in leak["flags"] and leak["border_ratio"] > 3
    worst = leak["leak_worst"]  # the view quoted with the rate: the one that leaned on its fill the most
    assert leak["leak_rate"] > 0.25 and worst["view"] in leak["views"]
    assert worst["border_mass"] - worst["fill_fraction"] >= leak["border_mass"] - leak["fill_fraction"]
    assert f"worst {worst['border_mass']:.1%}" in leak["flags"]["leaks-into-fill"]


def test_badge_is_one_batch_and_one_capture(planted: Detector) -> None:
    calls: list[int] = []
    h = planted.register_forward_hook(lambda m, a, o: calls.append(int(a[0].shape[0])))
    try:
        img, _ = blob_image((64, 64), seed=1)
        badges = robustness_badges(planted, img, ["gradcam", "hirescam", "layercam", "eigencam"])
    finally:
        h.remove()
    assert calls == [5]  # identity + 4 views, one forward (and its cut-off backward) for every CAM
    assert set(badges) == {"gradcam", "hirescam", "layercam", "eigencam"}


def test_badge_on_a_letterboxed_tiny_model_and_unsupported_methods() -> None:
    pytest.importorskip("fakelens.explain.transformer")
    det = create_model("tiny-cnn")
    x = torch.rand(3, 64, 64)
    valid = torch.zeros(64, 64, dtype=torch.bool)
    valid[12:52] = True  # letterbox padding counts as fill
    b = robustness_badges(det, x, ["gradcam", "attention"], valid=valid)
    assert "error" in b["attention"] and "equivariance" in b["gradcam"]
    assert b["gradcam"]["fill_fraction"] > 0.3


def test_a_flat_map_is_flagged_flat_only() -> None:
    """A zero map has no movement to judge: it is 'flat', not also 'not-equivariant' (its cosine is 0)."""
    det = create_model("tiny-cnn")
    with torch.no_grad():
        det.net.head.weight.zero_()  # no gradient reaches the features: every CAM is 0
    b = robustness_badge(det, torch.rand(3, 64, 64), "gradcam")
    assert b["flat"] and b["equivariance"] == 0.0 and set(b["flags"]) == {"flat"}


def test_a_misspelt_method_is_an_error_not_a_failed_badge() -> None:
    from fakelens.errors import UnknownNameError

    img, _ = blob_image((64, 64))
    with pytest.raises(UnknownNameError, match="gradcm"):
        robustness_badge(create_model("tiny-cnn"), img, "gradcm")


def _close(a: object, b: object) -> bool:
    """Badges equal up to float noise in their last rounded digit."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 2e-4
    return a == b


@pytest.mark.parametrize("model", ["tiny-cnn", "tiny-vit"])
@pytest.mark.parametrize("method", method_names())
def test_badges_of_a_batch_are_the_badges_image_by_image(model: str, method: str) -> None:
    """batch_badges explains several images' views as one batch; each image's badges are those it gets
    alone (letterboxed and full images mixed; methods that cannot run report the same error)."""
    det = create_model(model, seed=3)
    h, w = det.input_spec.size
    pixels = torch.stack([blob_image((h, w), seed=s)[0] for s in range(3)])
    valid = torch.ones(3, h, w, dtype=torch.bool)
    valid[1, : h // 4] = False  # one letterboxed image
    options = {method: {"samples": 64}} if method == "rise" else None
    together = batch_badges(det, pixels, [method], valid=valid, options=options)
    alone = [
        robustness_badges(det, p, [method], valid=v, options=options)
        for p, v in zip(pixels, valid, strict=True)
    ]
    assert _close(together, alone)
