"""A per-heatmap robustness badge: a few numbers from one small batch of views, cheap enough for every map.

The badge explains the image and four fixed views — horizontal flip, rotation by 15°, scale 0.8 and a
10 % diagonal shift, all with black fill — as **one** batch (one capture for every gradient method), and
reports how well the map moves with the image (equivariance cosine after the exact inverse warp), how much of
it sits on the black fill against the fill's area, whether its peak is in a corner, and whether it is flat.
The CLI, the report and the service show it beside each heatmap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from fakelens.explain.engine import check_methods, method_list
from fakelens.models.base import Detector, require_detector
from fakelens.trust.criteria import DEFAULT_CRITERIA, Criteria
from fakelens.trust.metrics import corner_chance
from fakelens.trust.sweep import Sweep, run_sweeps, view_plan
from fakelens.trust.transforms import TransformFamily

__all__ = ["badge_from_sweep", "batch_badges", "robustness_badge", "robustness_badges"]


def badge_from_sweep(sweep: Sweep, method: str, criteria: Criteria = DEFAULT_CRITERIA) -> dict[str, Any]:
    """The badge of ``method`` from a sweep whose view 0 is the identity (all views black-filled)."""
    vm = sweep.view_metrics(method)
    names = [t.name for t in sweep.views.transforms]
    eq = vm["eq_cosine"][1:]
    fill = vm["fill_fraction"]
    has_fill = fill > 0.01
    bm = vm["border_mass"]
    leak = (bm > fill + criteria.border_margin) & has_fill
    cell = sweep.cell(method)
    chance = corner_chance(sweep.hw, cell)
    e = sweep.explanations[method]
    excess = (bm - fill).masked_fill(~has_fill, -float("inf"))
    w = int(excess.argmax())  # the view that leaned on its fill the most (quoted with the leak rate)
    border = float(bm[has_fill].mean()) if bool(has_fill.any()) else 0.0
    fill_mean = float(fill[has_fill].mean()) if bool(has_fill.any()) else 0.0
    summary = {
        "eq_cosine": float(eq.mean()),
        "leak_rate": float(leak[has_fill].double().mean()) if bool(has_fill.any()) else 0.0,
        "border_mass": border,
        "fill_fraction": fill_mean,
        "leak_worst_mass": float(bm[w]) if bool(has_fill.any()) else 0.0,
        "leak_worst_fill": float(fill[w]) if bool(has_fill.any()) else 0.0,
        "corner_argmax_rate": float(vm["corner_argmax"].mean()),
        "corner_chance": chance,
        "flat_rate": float(vm["flat"][:1].mean()),
    }
    flags = criteria.flags(summary)
    worst = int(eq.argmin()) + 1
    return {
        "method": method,
        "layers": list(e.layers),
        "views": names[1:],
        "equivariance": round(summary["eq_cosine"], 4),
        "equivariance_min": round(float(eq.min()), 4),
        # reported, not flagged: under the badge's four mild views a broad map that does move scores
        # nearly as high without the inverse warp (the trust benchmark, over stronger views, flags it)
        "equivariance_gain": round(float(vm["eq_gain"][1:].mean()), 4),
        "worst_view": names[worst],
        "equivariance_per_view": {names[i + 1]: round(float(v), 4) for i, v in enumerate(eq)},
        "border_mass": round(border, 4),
        "fill_fraction": round(fill_mean, 4),
        "border_ratio": round(border / fill_mean, 3) if fill_mean > 0 else None,
        "leak_rate": round(summary["leak_rate"], 4),
        "leak_worst": {
            "view": names[w],
            "border_mass": round(summary["leak_worst_mass"], 4),
            "fill_fraction": round(summary["leak_worst_fill"], 4),
        }
        if bool(has_fill.any())
        else None,
        "corner_argmax": bool(vm["corner_argmax"][0] > 0),
        "corner_mass": round(float(vm["corner_mass"][0]), 4),
        "corner_chance": round(chance, 4),
        "flat": bool(vm["flat"][0] > 0),
        "entropy": round(float(vm["entropy"][0]), 4),
        "peak_to_mean": round(float(vm["peak_to_mean"][0]), 3),
        "score_spread": round(float(vm["score"].max() - vm["score"].min()), 4),
        "grade": "ok" if not flags else "check",
        "flags": flags,
    }


def robustness_badges(
    detector: Detector,
    pixels: Tensor,
    methods: Sequence[str],
    *,
    valid: Tensor | None = None,
    layers: Sequence[str] | None = None,
    target: str = "fake",
    family: TransformFamily | None = None,
    criteria: Criteria = DEFAULT_CRITERIA,
    options: dict[str, dict[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Badges of several methods for one prepared image ``(3, H, W)`` in [0, 1] from one batch of views.

    Methods that cannot run on the detector get ``{"error": reason}``; ``options`` as for ``explain``.
    """
    if not isinstance(pixels, Tensor) or pixels.dim() != 3 or pixels.shape[0] != 3:
        shape = tuple(pixels.shape) if isinstance(pixels, Tensor) else type(pixels).__name__
        raise ValueError(f"a robustness badge needs one prepared image (3, H, W), not {shape}")
    return batch_badges(
        detector,
        pixels[None],
        methods,
        valid=None if valid is None else valid.reshape(1, *pixels.shape[-2:]),
        layers=layers,
        target=target,
        family=family,
        criteria=criteria,
        options=options,
    )[0]


def batch_badges(
    detector: Detector,
    pixels: Tensor,
    methods: Sequence[str],
    *,
    valid: Tensor | None = None,
    layers: Sequence[str] | None = None,
    target: str = "fake",
    family: TransformFamily | None = None,
    criteria: Criteria = DEFAULT_CRITERIA,
    options: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, dict[str, Any]]]:
    """:func:`robustness_badges` of ``B`` prepared images ``(B, 3, H, W)`` (``valid (B, H, W)``), their views
    explained together as one batch: the same badges as image by image, in fewer, larger passes."""
    require_detector(detector, "a robustness badge")
    check_methods(method_list(methods))  # a misspelt name is the caller's mistake, not a method that failed
    if not isinstance(pixels, Tensor) or pixels.dim() != 4 or pixels.shape[1] != 3 or not len(pixels):
        shape = tuple(pixels.shape) if isinstance(pixels, Tensor) else type(pixels).__name__
        raise ValueError(f"robustness badges need prepared images (B, 3, H, W), not {shape}")
    if pixels.numel() and (float(pixels.min()) < -1e-3 or float(pixels.max()) > 1 + 1e-3):
        raise ValueError(
            f"a robustness badge needs pixels in [0, 1], not [{float(pixels.min()):g}, "
            f"{float(pixels.max()):g}] (divide 0–255 images by 255; not normalised)"
        )
    plan = view_plan(family or TransformFamily.badge(), ("black",))
    sweeps = run_sweeps(
        detector, pixels, plan, methods, valid=valid, layers=layers, target=target, options=options
    )
    out = []
    for sweep in sweeps:
        badges = {m: badge_from_sweep(sweep, m, criteria) for m in sweep.methods}
        badges.update({m: {"method": m, "error": msg} for m, msg in sweep.errors.items()})
        out.append(badges)
    return out


def robustness_badge(
    detector: Detector,
    pixels: Tensor,
    method: str,
    *,
    valid: Tensor | None = None,
    layers: Sequence[str] | None = None,
    target: str = "fake",
    family: TransformFamily | None = None,
    criteria: Criteria = DEFAULT_CRITERIA,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The robustness badge of one method's heatmap for one prepared image ``(3, H, W)`` in [0, 1]
    (``options``: the method's keyword options, as for ``explain``).

    ``valid (H, W)`` marks pixels that show the image (``Geometry.valid_input()``; default all). Returns a
    JSON-safe dict: ``equivariance`` (mean cosine over hflip, rotate 15°, scale 0.8, translate 10 %),
    ``equivariance_min`` and ``worst_view``, ``border_mass`` vs ``fill_fraction``, ``corner_argmax``,
    ``flat``, ``entropy``, ``peak_to_mean``, ``grade`` (``ok`` or ``check``) and ``flags`` with reasons.
    """
    return robustness_badges(
        detector,
        pixels,
        [method],
        valid=valid,
        layers=layers,
        target=target,
        family=family,
        criteria=criteria,
        options={method: options} if options else None,
    )[method]
