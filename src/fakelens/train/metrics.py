"""Binary detection metrics in numpy: ROC curve, AUC, average precision, accuracy at a threshold, EER.

Scores are fake probabilities (higher = more likely fake); labels are 1 for fake, 0 for real. Ties are
handled as scikit-learn handles them (one ROC point per distinct score), so :func:`roc_auc` and
:func:`average_precision` equal ``sklearn.metrics.roc_auc_score`` and ``average_precision_score``. A metric
that needs both classes is ``nan`` when one is missing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "accuracy_at",
    "auc_bootstrap",
    "average_precision",
    "binary_metrics",
    "calibration_metrics",
    "eer",
    "json_safe",
    "reliability_bins",
    "roc_auc",
    "roc_curve",
    "weighted_auc",
]


def _check(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    return y, s


def _counts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positives at each distinct score, highest first, and those scores."""
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.nonzero(np.diff(s))[0], y.size - 1]  # last index of each run of equal scores
    tps = np.cumsum(y)[last].astype(np.float64)
    fps = (last + 1 - tps).astype(np.float64)
    return tps, fps, s[last]


def roc_curve(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)``: one point per distinct score (descending), starting at ``(0, 0)`` with
    threshold ``inf``. A sample is called fake when its score is ``>=`` the threshold."""
    y, s = _check(labels, scores)
    pos = int(y.sum())
    neg = y.size - pos
    if y.size == 0:
        return np.zeros(1), np.zeros(1), np.array([np.inf])
    tps, fps, thr = _counts(y, s)
    tpr = np.r_[0.0, tps / pos] if pos else np.full(tps.size + 1, np.nan)
    fpr = np.r_[0.0, fps / neg] if neg else np.full(fps.size + 1, np.nan)
    return fpr, tpr, np.r_[np.inf, thr]


def roc_auc(labels: Any, scores: Any) -> float:
    """Area under the ROC curve (trapezoids; ties count one half); ``nan`` without both classes."""
    y, s = _check(labels, scores)
    pos = int(y.sum())
    neg = y.size - pos
    if pos == 0 or neg == 0:
        return math.nan
    tps, fps, _ = _counts(y, s)
    tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
    # trapezoids on the integer counts, one division at the end: a perfect ranking gives exactly 1.0
    return float(np.sum(np.diff(fps) * (tps[1:] + tps[:-1])) / (2.0 * pos * neg))


def weighted_auc(labels: Any, scores: Any, weights: Any) -> np.ndarray:
    """:func:`roc_auc` under sample weights, one AUC per row of ``weights`` ``(B, n)``: the weighted
    Mann–Whitney statistic ``Σ_{i fake, j real} w_i w_j ([s_i > s_j] + ½[s_i = s_j]) / (Σ w_fake · Σ w_real)``
    (integer weights = the samples repeated); ``nan`` where a row leaves one class without weight."""
    y, s = _check(labels, scores)
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    order = np.argsort(s, kind="mergesort")
    _, starts = np.unique(s[order], return_index=True)  # tie groups along the ascending scores
    w = w[:, order]
    wf = np.add.reduceat(w * (y[order] == 1), starts, axis=1)
    wr = np.add.reduceat(w * (y[order] == 0), starts, axis=1)
    below = np.cumsum(wr, axis=1) - wr
    den = wf.sum(axis=1) * wr.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, np.sum(wf * (below + 0.5 * wr), axis=1) / den, np.nan)


def auc_bootstrap(
    labels: Any,
    scores: Any,
    groups: Any = None,
    *,
    rounds: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Cluster-bootstrap uncertainty of :func:`roc_auc`: resample the ``groups`` (e.g. source photos: the
    pairs made from one photo are not independent; ``None``: the samples) with replacement ``rounds`` times.

    A resample weights each sample by how often its group was drawn (:func:`weighted_auc`); resamples with one
    class are skipped. Returns ``se`` (standard deviation over resamples), ``ci`` (the central
    ``level`` percentile interval), ``rounds`` used and ``groups``; ``se``/``ci`` are ``nan`` with fewer
    than 2 usable resamples (Efron & Tibshirani 1993, ch. 13; Field & Welsh 2007 for clustered data).
    """
    y, s = _check(labels, scores)
    g = np.arange(y.size) if groups is None else np.asarray(groups)
    if g.shape[0] != y.size:
        raise ValueError(f"groups has {g.shape[0]} entries for {y.size} scores")
    _, gi = np.unique(g, return_inverse=True)
    n_groups = int(gi.max()) + 1 if y.size else 0
    rng = np.random.default_rng(seed)
    values: list[np.ndarray] = []
    for lo in range(0, max(rounds, 0), 256):  # blocks of resamples: (block, n) weights at a time
        draws = rng.integers(0, n_groups, size=(min(256, rounds - lo), n_groups))
        counts = np.stack([np.bincount(d, minlength=n_groups) for d in draws]).astype(np.float64)
        auc = weighted_auc(y, s, counts[:, gi])
        values.append(auc[~np.isnan(auc)])
    v = np.concatenate(values) if values else np.zeros(0)
    if v.size < 2:
        return {"se": math.nan, "ci": [math.nan, math.nan], "rounds": int(v.size), "groups": n_groups}
    tail = 50.0 * (1.0 - level)
    lo_q, hi_q = np.percentile(v, [tail, 100.0 - tail])
    return {
        "se": float(np.std(v, ddof=1)),
        "ci": [float(lo_q), float(hi_q)],
        "rounds": int(v.size),
        "groups": n_groups,
    }


def average_precision(labels: Any, scores: Any) -> float:
    """Average precision ``Σ_n (R_n − R_{n−1}) P_n`` over distinct thresholds (no interpolation, as
    scikit-learn); ``nan`` without fakes."""
    y, s = _check(labels, scores)
    pos = int(y.sum())
    if pos == 0:
        return math.nan
    tps, fps, _ = _counts(y, s)
    precision = tps / (tps + fps)
    recall = tps / pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def accuracy_at(labels: Any, scores: Any, threshold: float = 0.5) -> float:
    """Fraction of samples called right when ``score >= threshold`` means fake."""
    y, s = _check(labels, scores)
    if y.size == 0:
        return math.nan
    return float(np.mean((s >= threshold).astype(np.int64) == y))


def eer(labels: Any, scores: Any) -> tuple[float, float]:
    """Equal error rate and its threshold: where the false positive rate equals the false negative rate.

    The ROC curve is taken as piecewise linear between its points; the EER is read where ``fpr = 1 − tpr``
    on the segment that crosses it, and the threshold is that segment's end nearer to the crossing.
    ``(nan, nan)`` without both classes.
    """
    fpr, tpr, thr = roc_curve(labels, scores)
    if np.isnan(fpr).any() or np.isnan(tpr).any():
        return math.nan, math.nan
    fnr = 1.0 - tpr
    d = fnr - fpr  # decreasing from 1 (at threshold inf) to -1 (at the lowest score)
    i = int(np.nonzero(d <= 0)[0][0])  # first point at or past the crossing (exists: d[-1] = -1)
    if d[i] == 0 or i == 0:
        return float(fpr[i]), float(thr[i])
    t = d[i - 1] / (d[i - 1] - d[i])  # fraction of the way from point i-1 to i
    rate = float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))
    threshold = float(thr[i] if t >= 0.5 else thr[i - 1])
    if not math.isfinite(threshold):
        threshold = float(thr[i])
    return rate, threshold


def binary_metrics(labels: Any, scores: Any, threshold: float = 0.5) -> dict[str, Any]:
    """AUC, AP, accuracy, balanced accuracy, TPR and TNR at ``threshold``, EER and its threshold, counts.

    Values are floats (``nan`` where undefined) and ints; :func:`json_safe` turns ``nan`` into ``None``.
    """
    y, s = _check(labels, scores)
    pos = int(y.sum())
    neg = int(y.size - pos)
    called = s >= threshold
    tpr = float(np.mean(called[y == 1])) if pos else math.nan
    tnr = float(np.mean(~called[y == 0])) if neg else math.nan
    rate, eer_thr = eer(y, s)
    bal = (tpr + tnr) / 2.0 if pos and neg else math.nan
    return {
        "auc": roc_auc(y, s),
        "ap": average_precision(y, s),
        "accuracy": accuracy_at(y, s, threshold),
        "balanced_accuracy": bal,
        "tpr": tpr,
        "tnr": tnr,
        "eer": rate,
        "eer_threshold": eer_thr,
        "threshold": float(threshold),
        "n_real": neg,
        "n_fake": pos,
    }


def reliability_bins(labels: Any, scores: Any, bins: int = 15) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(count, mean p, fraction fake)`` per equal-width bin of p(fake) in [0, 1] (scores clipped to it;
    ``nan`` means for empty bins): the points of a reliability diagram."""
    y, s = _check(labels, scores)
    p = np.clip(s, 0.0, 1.0)
    b = np.minimum((p * bins).astype(np.int64), bins - 1)
    n = np.bincount(b, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(b, weights=p, minlength=bins) / n
        frac = np.bincount(b, weights=y, minlength=bins) / n
    return n, mean_p, frac


def calibration_metrics(labels: Any, scores: Any, bins: int = 15) -> dict[str, float]:
    """How far fake probabilities are from frequencies: ``ece`` = Σ_b (n_b / N)·|mean(y_b) − mean(p_b)| over
    ``bins`` equal-width bins of p(fake) (Naeini et al., AAAI 2015; Guo et al., ICML 2017), ``brier`` =
    mean (p − y)², ``nll`` = mean log-loss (p clipped to [1e-6, 1 − 1e-6]). ``nan`` for no samples."""
    y, s = _check(labels, scores)
    if y.size == 0:
        return {"ece": math.nan, "brier": math.nan, "nll": math.nan}
    p = np.clip(s, 0.0, 1.0)
    n, mean_p, frac = reliability_bins(y, p, bins)
    used = n > 0
    q = np.clip(p, 1e-6, 1 - 1e-6)
    return {
        "ece": float(np.sum(n[used] * np.abs(frac[used] - mean_p[used])) / y.size),
        "brier": float(np.mean((p - y) ** 2)),
        "nll": float(-np.mean(y * np.log(q) + (1 - y) * np.log1p(-q))),
    }


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by ``None`` (JSON has no NaN), numpy scalars unwrapped."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
