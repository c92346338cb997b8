"""Calibration: the threshold maps to ½, the scale is the maximum-likelihood one (checked against
scikit-learn's logistic regression), rankings never change, bad parameters are refused."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from fakelens.errors import ConfigError
from fakelens.models import Calibration
from fakelens.models.calibration import fit_scale
from fakelens.train.metrics import calibration_metrics, roc_auc


def _overconfident(n: int, seed: int = 0, true_scale: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from σ(0.4·(z − 2)) but reported as σ(z): overconfident, centred at p = σ(2)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(2.0, 4.0, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-true_scale * (z - 2.0)))).astype(np.int64)
    return y, 1 / (1 + np.exp(-z))


def test_threshold_maps_to_one_half_and_ranking_is_kept() -> None:
    cal = Calibration(0.9, 0.5)
    p = torch.tensor([0.1, 0.5, 0.9, 0.95, 0.999])
    q = cal(p)
    assert q[2].item() == pytest.approx(0.5, abs=1e-6)
    assert torch.all(q[1:] > q[:-1])  # monotone
    assert cal.center == pytest.approx(math.log(9))
    assert torch.allclose(cal.logits(p), 0.5 * (torch.logit(p) - math.log(9)), atol=1e-5)
    # saturated float32 scores keep their order, in float32 or float64: only exact 0 and 1 are clamped (to
    # their float32 neighbours, here not in the list), and the fit reads them the same way
    eps = torch.finfo(torch.float32).eps
    near32 = torch.tensor([0.0, 1e-30, 1e-9, 1 - 4 * eps, 1 - eps, 1.0])
    for dtype in (torch.float32, torch.float64):
        out = cal.logits(near32.to(dtype))
        assert out.dtype == dtype and bool(torch.all(out[1:] > out[:-1])) and torch.isfinite(out).all()
    fitted = Calibration.fit([0, 0, 0, 1, 1, 1], near32.double().numpy(), 0.9)
    assert torch.allclose(fitted.logits(near32.double()), fitted.logits(near32).double(), rtol=1e-6)


def test_fit_recovers_the_temperature_and_matches_sklearn() -> None:
    y, p = _overconfident(20_000)
    t = 1 / (1 + math.exp(-2.0))
    cal = Calibration.fit(y, p, t)
    assert cal.threshold == pytest.approx(t) and cal.scale == pytest.approx(0.4, abs=0.02)
    u = np.log(p / (1 - p)) - 2.0
    ref = LogisticRegression(fit_intercept=False, C=1e12, tol=1e-10, max_iter=1000).fit(u[:, None], y)
    assert cal.scale == pytest.approx(float(ref.coef_[0, 0]), rel=1e-4)


def test_calibration_lowers_the_error_on_fresh_samples_and_keeps_the_auc() -> None:
    y, p = _overconfident(5_000, seed=1)
    cal = Calibration.fit(y, p, 1 / (1 + math.exp(-2.0)))
    y2, p2 = _overconfident(5_000, seed=2)
    q2 = cal(torch.from_numpy(p2)).double().numpy()
    before, after = calibration_metrics(y2, p2), calibration_metrics(y2, q2)
    assert after["ece"] < 0.03 < 0.1 < before["ece"]
    assert after["nll"] < before["nll"] and after["brier"] < before["brier"]
    assert roc_auc(y2, q2) == pytest.approx(roc_auc(y2, p2), abs=1e-9)


@pytest.mark.filterwarnings("error")
def test_backward_scores_get_a_flat_map_and_separated_ones_a_steep_one() -> None:
    y = np.array([0, 0, 1, 1])
    assert fit_scale(y, np.array([2.0, 1.0, -1.0, -2.0])) == pytest.approx(1e-3)
    assert 10 < fit_scale(y, np.array([-300.0, -1.0, 1.0, 300.0])) <= 100  # no finite optimum, no overflow
    with pytest.raises(ValueError, match="labels"):
        fit_scale(y, np.zeros(3))


def test_round_trip_and_bad_parameters() -> None:
    cal = Calibration(0.8, 0.3)
    assert Calibration.from_dict(cal.to_dict()) == cal
    for bad in ({"threshold": 0.8}, {"threshold": "x", "scale": 1}, {"threshold": 1.0, "scale": 1}):
        with pytest.raises(ConfigError, match="calibration"):
            Calibration.from_dict(bad)
    with pytest.raises(ConfigError, match="scale"):
        Calibration(0.5, -1.0)
