"""Synthetic analyses (no model runs) and a synthetic face, so report tests check wording and numbers fast."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

from fakelens.analysis import Analysis, HeatmapResult, ModelAnalysis
from fakelens.data.faces import Face

H, W = 160, 200


def synthetic_face(cx: float = 100.0, cy: float = 80.0, iod: float = 40.0) -> Face:
    """An upright face: eyes ``iod`` apart, nose below their midpoint, mouth corners below the nose."""
    lm = np.array(
        [
            [cx - iod / 2, cy - 0.4 * iod],
            [cx + iod / 2, cy - 0.4 * iod],
            [cx, cy + 0.1 * iod],
            [cx - 0.4 * iod, cy + 0.6 * iod],
            [cx + 0.4 * iod, cy + 0.6 * iod],
        ],
        dtype=np.float32,
    )
    return Face(box=(cx - iod, cy - iod, cx + iod, cy + 1.2 * iod), landmarks=lm, score=0.99)


def blob(cx: float, cy: float, sigma: float, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    m = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2)).astype(np.float32)
    return m / m.max()


def ok_badge(method: str) -> dict[str, Any]:
    return {
        "method": method,
        "equivariance": 0.93,
        "equivariance_min": 0.88,
        "worst_view": "rotate(+15)",
        "border_mass": 0.05,
        "fill_fraction": 0.2,
        "border_ratio": 0.25,
        "corner_argmax": False,
        "corner_chance": 0.08,
        "flat": False,
        "peak_to_mean": 5.0,
        "grade": "ok",
        "flags": {},
    }


def bad_badge(method: str) -> dict[str, Any]:
    b = ok_badge(method)
    b.update(
        equivariance=0.45,
        equivariance_min=0.2,
        worst_view="scale(0.8)",
        grade="check",
        flags={"not-equivariant": "mean equivariance cosine 0.45 < 0.80"},
    )
    return b


def heatmap(
    method: str, m: np.ndarray, badge: dict[str, Any] | None = None, flat: bool = False
) -> HeatmapResult:
    summary = {
        "method": method,
        "layers": ["x"],
        "flat": flat,
        "stats": {"peak_to_mean": 4.0, "entropy": 0.8},
    }
    return HeatmapResult(method, m.astype(np.float32), np.ones(m.shape, bool), summary, badge)


MakeAnalysis = Callable[..., Analysis]


@pytest.fixture
def make_analysis() -> MakeAnalysis:
    """``make_analysis({"cnn": (0.9, {"gradcam": heatmap}), ...}, threshold=0.5)``: an Analysis whose ensemble
    score is the mean of the members'."""

    def make(
        members: dict[str, tuple[float, dict[str, HeatmapResult]]],
        threshold: float = 0.5,
        errors: dict[str, dict[str, str]] | None = None,
    ) -> Analysis:
        models: Sequence[ModelAnalysis] = [
            ModelAnalysis(
                name,
                p,
                "fake" if p >= threshold else "real",
                dict(maps),
                dict((errors or {}).get(name, {})),
                threshold=threshold,
            )
            for name, (p, maps) in members.items()
        ]
        ens = float(np.mean([m.fake_probability for m in models]))
        return Analysis(W, H, ens, "fake" if ens >= threshold else "real", threshold, "mean", list(models))

    return make
