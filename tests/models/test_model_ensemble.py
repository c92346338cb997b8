"""Ensemble: combination rules by hand, per-member input preparation, predict_proba."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from fakelens.errors import ConfigError
from fakelens.geometry import prepare_batch
from fakelens.models import (
    Calibration,
    Detector,
    Ensemble,
    EnsembleVerdict,
    MemberScore,
    create_model,
    predict_proba,
)


@pytest.fixture(scope="module")
def members() -> list[Detector]:
    return [create_model("tiny-cnn", seed=1), create_model("tiny-vit", seed=2)]


def images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [
        Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))
        for h, w in [(40, 70), (90, 50), (64, 64)]
    ]


PROBS = torch.tensor([[0.2, 0.8], [0.9, 0.9]])


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("mean", [0.25 * 0.2 + 0.75 * 0.8, 0.9]),
        ("logit_mean", [1 / (1 + math.exp(-0.5 * math.log(4))), 0.9]),  # σ(.25·(−ln4) + .75·ln4) = σ(½ln4)
        ("max", [0.8, 0.9]),
    ],
)
def test_combine_rules_by_hand(members: list[Detector], rule: Any, expected: list[float]) -> None:
    ens = Ensemble(members, weights=[1, 3], rule=rule)
    assert torch.allclose(ens.combine(PROBS), torch.tensor(expected), atol=1e-6)


def test_max_ignores_zero_weight_members(members: list[Detector]) -> None:
    ens = Ensemble(members, weights=[1, 0], rule="max")
    assert torch.allclose(ens.combine(PROBS), torch.tensor([0.2, 0.9]))


def test_weights_are_normalised_and_default_uniform(members: list[Detector]) -> None:
    assert Ensemble(members).weights.tolist() == [0.5, 0.5]
    assert Ensemble(members, weights=[2, 6]).weights.tolist() == [0.25, 0.75]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"weights": [1.0]},
        {"weights": [1.0, -1.0]},
        {"weights": [0.0, 0.0]},
        {"weights": [1.0, float("nan")]},
        {"rule": "median"},
        {"threshold": 1.5},
    ],
)
def test_bad_options_raise(members: list, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        Ensemble(members, **kwargs)


def test_no_members_and_bad_shapes(members: list[Detector]) -> None:
    with pytest.raises(ConfigError):
        Ensemble([])
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        Ensemble(members).combine(torch.rand(3))


def test_verdicts_follow_the_threshold(members: list[Detector]) -> None:
    out = Ensemble(members, threshold=0.85).verdicts(PROBS)
    assert [v.verdict for v in out] == ["real", "fake"]
    assert out[1].members == (
        MemberScore("tiny-cnn", pytest.approx(0.9)),
        MemberScore("tiny-vit", pytest.approx(0.9)),
    )
    assert out[1].fake_probability == pytest.approx(0.9)
    assert (out[1].verdict, out[1].threshold, out[1].rule) == ("fake", 0.85, "mean")
    d = out[0].to_dict()
    assert d["members"][0] == {"name": "tiny-cnn", "fake_probability": pytest.approx(0.2)}
    assert d["verdict"] == "real" and d["rule"] == "mean"


def test_calibrated_members_decide_at_their_own_threshold(members: list[Detector]) -> None:
    """Member 0 calibrated at 0.85: shown as σ(s·(logit p − logit 0.85)) and fake from ½ on; member 1 raw,
    judged by the ensemble's threshold. The combined probability is calibrated after the rule."""
    cal = Calibration(0.85, 0.5)
    ens = Ensemble(members, rule="logit_mean", threshold=0.6, calibrations=[cal, None])
    shown = ens.calibrate(PROBS)
    assert torch.allclose(shown[:, 0], cal(PROBS[:, 0])) and torch.equal(shown[:, 1], PROBS[:, 1])
    assert (ens.member_threshold(0), ens.member_threshold(1)) == (0.5, 0.6)
    assert [ens.member_verdict(0, p) for p in (0.49, 0.5)] == ["real", "fake"]
    assert [ens.member_verdict(1, p) for p in (0.59, 0.6)] == ["real", "fake"]
    out = ens.verdicts(PROBS)
    assert out[1].members[0].fake_probability == pytest.approx(cal(torch.tensor(0.9)).item())
    plain = Ensemble(members, rule="logit_mean")
    assert torch.allclose(ens.combine(PROBS), plain.combine(shown))
    top = Calibration(0.7, 2.0)
    both = Ensemble(members, rule="logit_mean", calibrations=[cal, None], calibration=top)
    assert torch.allclose(both.combine(PROBS), top(ens.combine(PROBS)))


def test_subset_and_with_threshold_keep_what_still_holds(members: list[Detector]) -> None:
    cals = [Calibration(0.85, 0.5), Calibration(0.6, 0.7)]
    ens = Ensemble(members, [1, 3], "logit_mean", 0.5, calibrations=cals, calibration=Calibration(0.7, 2.0))
    whole = ens.subset([1, 0])
    assert whole.calibration == ens.calibration and whole.calibrations == (cals[1], cals[0])
    assert torch.allclose(whole.combine(PROBS.flip(1)), ens.combine(PROBS))
    one = ens.subset([1])
    assert one.calibration is None and one.threshold == 0.5 and one.calibrations == (cals[1],)
    assert ens.calibrated and one.calibrated  # one calibrated member alone: its probability is calibrated
    assert not Ensemble(members).calibrated and not Ensemble(members, calibrations=cals).calibrated
    assert torch.allclose(one.combine(PROBS[:, 1:]), cals[1](PROBS[:, 1]))
    raw = Ensemble(members, threshold=0.9).subset([0])
    assert raw.threshold == 0.9  # uncalibrated: the ensemble's threshold
    moved = ens.with_threshold(0.7)
    assert moved.threshold == 0.7 and moved.calibration == ens.calibration
    assert ens.describe()["calibration"]["members"][1] == cals[1].to_dict()
    with pytest.raises(ConfigError, match="calibrations"):
        Ensemble(members, calibrations=[None])


def test_predict_prepares_inputs_per_member(members: list[Detector]) -> None:
    imgs = images()
    ens = Ensemble(members, weights=[1, 2], rule="logit_mean")
    out = ens.predict(imgs)
    assert len(out) == len(imgs) and all(isinstance(v, EnsembleVerdict) for v in out)
    expected = []
    for m in members:  # each member at its own size and normalisation
        pixels, _ = prepare_batch(imgs, m.input_spec)
        with torch.no_grad():
            expected.append(m.fake_probability(m(m.input_spec.normalize(pixels))))
    probs = torch.stack(expected, 1)
    got = torch.tensor([[s.fake_probability for s in v.members] for v in out])
    assert torch.allclose(got, probs, atol=1e-5)
    assert torch.allclose(torch.tensor([v.fake_probability for v in out]), ens.combine(probs), atol=1e-5)
    one_by_one = ens.predict(imgs, batch_size=1)
    assert [v.fake_probability for v in one_by_one] == pytest.approx([v.fake_probability for v in out])
    assert ens.predict([]) == []


def test_predict_proba(members: list[Detector]) -> None:
    det = members[0]
    pixels = torch.rand(4, 3, *det.input_spec.size, generator=torch.Generator().manual_seed(0))
    p = predict_proba(det, pixels)
    with torch.no_grad():
        ref = torch.softmax(det(det.input_spec.normalize(pixels)), 1)[:, det.fake_index]
    assert p.shape == (4,) and p.dtype == torch.float32 and p.device.type == "cpu"
    assert torch.allclose(p, ref, atol=1e-6)
    assert torch.allclose(
        predict_proba(det, det.input_spec.normalize(pixels), normalized=True), ref, atol=1e-6
    )
    assert not p.requires_grad


def test_one_logit_member() -> None:
    det = create_model("tiny-cnn", num_classes=1)
    pixels = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = torch.sigmoid(det(det.input_spec.normalize(pixels))[:, 0])
    assert torch.allclose(predict_proba(det, pixels), ref, atol=1e-6)


def test_a_nan_score_is_an_error_not_a_real_verdict() -> None:
    """NaN >= threshold is false: a broken member made the image (and the whole ensemble) read "real"."""
    from fakelens.errors import ModelError

    ens = Ensemble.of([create_model("tiny-cnn"), create_model("tiny-vit")])
    probs = torch.tensor([[0.2, 0.9], [0.3, float("nan")]])
    with pytest.raises(ModelError, match=r"model tiny-vit gave no usable score for image 2 \(NaN"):
        ens.verdicts(probs)
    assert len(ens.verdicts(probs[:1])) == 1  # the finite row alone is fine
    with pytest.raises(TypeError, match="not generator"):  # the first member would have used it up
        ens.predict(im for im in [Image.new("RGB", (8, 8))])


def test_an_ensemble_says_what_it_is_in_one_line() -> None:
    ens = Ensemble([create_model("tiny-cnn"), create_model("tiny-vit")], weights=[3, 1], threshold=0.6)
    assert repr(ens) == "Ensemble({tiny-cnn: 0.75, tiny-vit: 0.25}, rule='mean', threshold=0.6)"
