"""Calibrated fake probabilities: temperature scaling about a decision threshold.

A detector's raw fake probability ``p`` ranks images well but need not mean what it says: the shipped members
call an image fake only above p ≈ 0.94, so "p(fake) 0.90" was a *real* verdict. :class:`Calibration` maps

    p' = σ(s · (logit p − logit t))

with ``t`` the operating threshold fitted on validation data (it maps to p' = ½, so the verdict "p' ≥ ½" is
exactly the verdict "p ≥ t") and ``s > 0`` the inverse temperature that minimises the validation log-loss
(temperature scaling, Guo et al., "On Calibration of Modern Neural Networks", ICML 2017; Platt 1999 with the
bias tied to the threshold). Monotone, so rankings and AUC never change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fakelens.errors import ConfigError

__all__ = ["Calibration", "fit_scale"]

_EPS = 1e-6
_MIN_SCALE = 1e-3
_MAX_SCALE = 100.0  # perfectly separated scores have no finite maximum-likelihood scale: a step, near enough
# Detectors' probabilities are float32: only exact 0 and 1 are clamped, to their float32 neighbours, the same
# way when fitting (numpy, float64) and when applying (torch, any dtype), so every distinct score stays
# distinct and fitted and applied log-odds agree.
_LO = float(np.finfo(np.float32).tiny)
_HI = 1.0 - float(np.finfo(np.float32).eps) / 2


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, _LO, _HI)
    return np.log(q) - np.log1p(-q)


def fit_scale(labels: Any, logits: Any, *, iterations: int = 50) -> float:
    """Maximum-likelihood ``s`` of ``P(fake) = σ(s·u)`` for centred log-odds ``u`` (Newton's method; the
    log-loss is convex in ``s``), within [1e-3, 100]: scores that rank backwards get a flat, not inverted,
    map; perfectly separated ones (no finite maximum) a near-step."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    u = np.asarray(logits, dtype=np.float64).ravel()
    if y.size != u.size or y.size == 0:
        raise ValueError(f"{y.size} labels for {u.size} scores")
    s = 1.0
    for _ in range(iterations):
        q = 0.5 * (1.0 + np.tanh(0.5 * s * u))  # σ(s·u) without overflow
        grad = float(np.sum((q - y) * u))
        hess = float(np.sum(q * (1 - q) * u * u))
        if hess <= 1e-12:
            break
        step = grad / hess
        s = min(max(s - step, _MIN_SCALE), _MAX_SCALE)
        if abs(step) < 1e-9 * max(1.0, s):
            break
    return float(s)


@dataclass(frozen=True)
class Calibration:
    """``p' = σ(scale · (logit p − logit threshold))``: ``threshold`` maps to ½; ``scale`` = 1/temperature."""

    threshold: float
    scale: float

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"calibration threshold must be in (0, 1), not {self.threshold}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ConfigError(f"calibration scale must be a positive number, not {self.scale}")

    @property
    def center(self) -> float:
        """``logit(threshold)``."""
        return math.log(self.threshold) - math.log1p(-self.threshold)

    def logits(self, probs: Tensor) -> Tensor:
        """Calibrated log-odds of fake probabilities, in their own floating dtype (float32 at least). Only
        exact 0 and 1 are clamped (to their float32 neighbours), so the ranking — hence the AUC — of
        float32 scores is unchanged."""
        p = probs if probs.is_floating_point() and probs.dtype != torch.float16 else probs.float()
        return self.scale * (torch.logit(p.clamp(_LO, _HI)) - self.center)

    def __call__(self, probs: Tensor) -> Tensor:
        """Calibrated fake probabilities (same shape)."""
        return torch.sigmoid(self.logits(probs))

    @classmethod
    def fit(cls, labels: Any, probs: Any, threshold: float) -> Calibration:
        """The calibration that sends ``threshold`` to ½ with the maximum-likelihood scale on these scores."""
        t = float(np.clip(threshold, _EPS, 1 - _EPS))
        u = _logit(np.asarray(probs, dtype=np.float64)) - math.log(t / (1 - t))
        return cls(t, fit_scale(labels, u))

    def to_dict(self) -> dict[str, float]:
        return {"threshold": self.threshold, "scale": self.scale}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibration:
        try:
            threshold, scale = float(d["threshold"]), float(d["scale"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"a calibration needs numbers 'threshold' and 'scale', not {d!r}") from exc
        return cls(threshold, scale)
