"""Explanations: one capture, every gradient CAM; perturbation and attention methods; the Explanation."""

from fakelens.explain import perturbation as _perturbation  # noqa: F401  (registers perturbation methods)
from fakelens.explain import spectral as _spectral  # noqa: F401  (registers the spectral method)
from fakelens.explain import transformer as _transformer  # noqa: F401  (registers attention methods)
from fakelens.explain.cams import CAMS, CAMMethod, GradientCAM, register_cam
from fakelens.explain.capture import Capture, capture
from fakelens.explain.engine import EXPLAINERS, Explainer, explain, explain_targets, method_names
from fakelens.explain.explanation import Explanation, map_stats
from fakelens.explain.targets import ClassLogit, FakeLogOdds, Negative, resolve_target

__all__ = [
    "CAMS",
    "EXPLAINERS",
    "CAMMethod",
    "Capture",
    "ClassLogit",
    "Explainer",
    "Explanation",
    "FakeLogOdds",
    "GradientCAM",
    "Negative",
    "capture",
    "explain",
    "explain_targets",
    "map_stats",
    "method_names",
    "register_cam",
    "resolve_target",
]
