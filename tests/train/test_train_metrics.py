"""Metrics in numpy against scikit-learn, hand-made cases, and their bounds."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn import metrics as skm

from fakelens.train.metrics import (
    accuracy_at,
    auc_bootstrap,
    average_precision,
    binary_metrics,
    calibration_metrics,
    eer,
    json_safe,
    roc_auc,
    roc_curve,
    weighted_auc,
)


@st.composite
def labelled_scores(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(2, 60))
    labels = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    decimals = draw(st.integers(0, 3))  # few decimals: many ties
    seed = draw(st.integers(0, 2**16))
    scores = np.round(np.random.default_rng(seed).random(n), decimals)
    return labels, scores


@given(labelled_scores())
def test_against_scikit_learn(data: tuple[np.ndarray, np.ndarray]) -> None:
    y, s = data
    if y.min() == y.max():
        assert math.isnan(roc_auc(y, s))
        return
    assert roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert average_precision(y, s) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    fpr, tpr, thr = roc_curve(y, s)
    sk_fpr, sk_tpr, sk_thr = skm.roc_curve(y, s, drop_intermediate=False)
    assert np.allclose(fpr, sk_fpr) and np.allclose(tpr, sk_tpr) and np.allclose(thr[1:], sk_thr[1:])
    assert accuracy_at(y, s, 0.5) == pytest.approx(skm.accuracy_score(y, (s >= 0.5).astype(int)))
    rate, t = eer(y, s)
    assert 0.0 <= rate <= 1.0 and t in set(s.tolist())
    m = binary_metrics(y, s)
    assert 0.0 <= m["auc"] <= 1.0 and 0.0 < m["ap"] <= 1.0 and 0.0 <= m["accuracy"] <= 1.0


@given(labelled_scores(), st.integers(0, 2**16))
def test_weighted_auc_is_the_auc_of_repeated_samples(data: tuple[np.ndarray, np.ndarray], seed: int) -> None:
    y, s = data
    w = np.random.default_rng(seed).integers(0, 4, size=(3, y.size))
    got = weighted_auc(y, s, w)
    for row, auc in zip(w, got, strict=True):
        ref = roc_auc(np.repeat(y, row), np.repeat(s, row))
        assert (math.isnan(auc) and math.isnan(ref)) or auc == pytest.approx(ref, abs=1e-12)
    assert weighted_auc(y, s, np.ones(y.size))[0] == pytest.approx(roc_auc(y, s), nan_ok=True)


def test_auc_bootstrap_resamples_groups() -> None:
    rng = np.random.default_rng(0)
    photos = np.repeat(np.arange(12), 20)  # 12 photos, 20 correlated pairs each
    y = np.tile([0, 1], 120)
    s = rng.normal(size=12)[photos] + 0.8 * y + 0.1 * rng.normal(size=240)  # the photo shifts both
    names = [f"p{i}" for i in photos]
    by_photo = auc_bootstrap(y, s, names, rounds=400)
    by_pair = auc_bootstrap(y, s, rounds=400)
    assert by_photo["groups"] == 12 and by_pair["groups"] == 240 and by_photo["rounds"] == 400
    assert by_photo["se"] > 1.5 * by_pair["se"]  # 12 independent photos, not 240 independent images
    lo, hi = by_photo["ci"]
    assert lo < roc_auc(y, s) < hi and hi - lo < 1
    assert auc_bootstrap(y, s, names, rounds=400) == by_photo  # seeded
    assert auc_bootstrap(y, s, names, rounds=400, seed=1) != by_photo
    assert math.isnan(auc_bootstrap(y, s, rounds=1)["se"])
    assert math.isnan(auc_bootstrap([1, 1, 1], [0.1, 0.2, 0.3], rounds=50)["se"])  # one class
    with pytest.raises(ValueError, match="groups"):
        auc_bootstrap(y, s, photos[:5])


def test_hand_cases() -> None:
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0  # exactly
    assert roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert eer([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == (0.0, 0.8)
    # one real above one fake out of 2+2: FPR and FNR cross at 0.5 on the flat part of the curve
    assert eer([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4]) == (0.5, 0.3)
    # a tie between a real and a fake: the segment (0, .5) → (.5, 1) crosses fpr = fnr halfway, at .25
    assert eer([1, 0, 1, 0], [0.9, 0.5, 0.5, 0.1]) == (0.25, 0.5)
    # the crossing lies a quarter of the way from the 0.7 point to the 0.6 point: the nearer end is 0.7
    assert eer([0, 0, 0, 1, 0], [0.9, 0.8, 0.7, 0.6, 0.5]) == (0.75, 0.7)
    assert accuracy_at([0, 1, 1], [0.2, 0.5, 0.4], threshold=0.5) == pytest.approx(2 / 3)
    assert average_precision([1, 0, 1], [0.9, 0.8, 0.1]) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_single_class_and_json_safe() -> None:
    m = binary_metrics([1, 1, 1], [0.2, 0.6, 0.9])
    assert math.isnan(m["auc"]) and math.isnan(m["eer"]) and m["n_real"] == 0 and m["n_fake"] == 3
    assert m["tpr"] == pytest.approx(2 / 3) and math.isnan(m["tnr"])
    safe = json_safe({"m": m, "x": [np.float32(1.5), float("inf")]})
    text = json.dumps(safe, allow_nan=False)
    assert json.loads(text)["m"]["auc"] is None and json.loads(text)["x"] == [1.5, None]


def test_exceptions() -> None:
    with pytest.raises(ValueError, match="2 labels but 3 scores"):
        roc_auc([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="0 \\(real\\) or 1"):
        roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="finite"):
        roc_auc([0, 1], [0.1, float("nan")])


@given(labelled_scores())
def test_brier_and_log_loss_match_sklearn(data: tuple[np.ndarray, np.ndarray]) -> None:
    y, s = data
    p = np.clip(s, 1e-6, 1 - 1e-6)
    m = calibration_metrics(y, p)
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, p, labels=[0, 1]), abs=1e-12)
    assert m["nll"] == pytest.approx(skm.log_loss(y, p, labels=[0, 1]), rel=1e-9)
    assert 0.0 <= m["ece"] <= 1.0


def test_ece_by_hand() -> None:
    """Two bins used of 10: [0.1, 0.1, 0.15] with labels 0, 0, 1 (|1/3 − 0.1167|) and [0.9] with 1."""
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.1, 0.15, 0.9])
    expected = (3 / 4) * abs(1 / 3 - 0.35 / 3) + (1 / 4) * abs(1 - 0.9)
    assert calibration_metrics(y, p, bins=10)["ece"] == pytest.approx(expected)
    assert calibration_metrics(np.array([1, 0]), np.array([1.0, 0.0]))["ece"] == 0.0
    assert all(math.isnan(v) for v in calibration_metrics([], []).values())
