"""Trust checks for heatmaps: black-fill transforms with exact inverses, equivariance, border and corner
mass, localisation, faithfulness and the randomisation sanity check; the benchmark runner, its ranking and
report, and the per-heatmap robustness badge. See docs/trust/README.md."""

from fakelens.trust.badge import robustness_badge, robustness_badges
from fakelens.trust.criteria import DEFAULT_CRITERIA, Criteria
from fakelens.trust.runner import TrustConfig, TrustItem, TrustRun, discover_items, evaluate_image, run_trust
from fakelens.trust.sweep import Sweep, run_sweep, view_plan
from fakelens.trust.transforms import Transform, TransformFamily, ViewBatch, make_views, unwarp, warp

__all__ = [
    "DEFAULT_CRITERIA",
    "Criteria",
    "Sweep",
    "Transform",
    "TransformFamily",
    "TrustConfig",
    "TrustItem",
    "TrustRun",
    "ViewBatch",
    "discover_items",
    "evaluate_image",
    "make_views",
    "robustness_badge",
    "robustness_badges",
    "run_sweep",
    "run_trust",
    "unwarp",
    "view_plan",
    "warp",
]
