r"""One image, K views, every method: the batch at the heart of the trust checks.

:func:`run_sweep` warps the prepared pixels into ``K`` views (view 0 is always the identity), normalises them
*after* warping (black fill = black pixels), explains all gradient methods with **one** capture of the
``K``-view batch (other methods run their own passes over the same batch), and carries every view's map back
onto the reference grid with the exact inverse warp. :meth:`Sweep.view_metrics` then scores each view:
equivariance against the identity view on the pixels valid in both, border mass against the fill's area
fraction, corner mass and corner peaks, flatness of the raw map and the explained score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from fakelens.errors import FakelensError
from fakelens.explain.cams import CAMS
from fakelens.explain.engine import explain
from fakelens.explain.explanation import Explanation
from fakelens.models.base import Detector
from fakelens.trust import metrics as M
from fakelens.trust.transforms import Fill, Transform, TransformFamily, ViewBatch, make_views

__all__ = ["EQ_SIDE", "Sweep", "run_sweep", "run_sweeps", "upsampled", "view_plan"]

ViewSpec = tuple[Transform, Fill]


def view_plan(
    family: TransformFamily, fills: Sequence[Fill] = ("black",), *, controls_only: bool = True
) -> list[ViewSpec]:
    """Identity first, then every transform with black fill, then the control fills (``mean``, ``reflect``)
    on the family's :meth:`~TransformFamily.controls` (or on every transform with fill)."""
    plan: list[ViewSpec] = [(Transform.identity(), "black")]
    plan += [(t, "black") for t in family]
    for f in fills:
        if f == "black":
            continue
        ctl = family.controls() if controls_only else tuple(t for t in family if t.has_fill)
        plan += [(t, f) for t in ctl]
    return plan


EQ_SIDE = 64
"""Equivariance is computed on the reference grid pooled to at most this many pixels a side."""


def _pooled(ref: Tensor, back: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    h, w = back.shape[-2:]
    f = max(1, math.ceil(max(h, w) / EQ_SIDE))
    if f == 1:
        return ref, back, valid
    size = (math.ceil(h / f), math.ceil(w / f))
    r = F.adaptive_avg_pool2d(ref[:, None].float(), size)[:, 0]
    b = F.adaptive_avg_pool2d(back[:, None].float(), size)[:, 0]
    v = -F.adaptive_max_pool2d(-valid[:, None].float(), size)[:, 0] > 0.5
    return r, b, v


def upsampled(raw: Tensor, hw: tuple[int, int]) -> Tensor:
    """``(N, h, w)`` raw maps → ``(N, H, W)`` ReLU'd maps on the input grid (bilinear,
    ``align_corners=False``, as the engine upsamples), not normalised: the trust metrics need the mass
    everywhere, fill included."""
    pos = raw.clamp_min(0).float()
    if tuple(pos.shape[-2:]) == hw:
        return pos
    return F.interpolate(pos[:, None], size=hw, mode="bilinear", align_corners=False)[:, 0]


@dataclass
class Sweep:
    """Everything one image's ``K``-view batch produced.

    ``maps[m]`` ``(K, H, W)`` are method ``m``'s ReLU'd maps on each view's grid, ``back[m]`` the same carried
    back onto the reference grid; ``pair_valid`` ``(K, H, W)`` the reference pixels valid in both;
    ``errors[m]`` why a method could not run (e.g. an attention method on a CNN).
    """

    views: ViewBatch
    explanations: dict[str, Explanation]
    maps: dict[str, Tensor]
    back: dict[str, Tensor]
    pair_valid: Tensor
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        return list(self.explanations)

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.views.pixels.shape[-2]), int(self.views.pixels.shape[-1])

    def cell(self, method: str) -> tuple[int, int]:
        """The corner cell of :func:`~fakelens.trust.metrics.corner_mass`: one feature stride in input pixels,
        at least 1/16 of the short side (a pixel-resolution map still gets a cell a person calls a corner)."""
        h, w = self.hw
        rh, rw = self.explanations[method].raw.shape[-2:]
        floor = math.ceil(min(h, w) / 16)
        return max(floor, math.ceil(h / rh)), max(floor, math.ceil(w / rw))

    def view_metrics(self, method: str) -> dict[str, Tensor]:
        """Per-view ``(K,)`` float64 metrics of one method (view 0 is the identity), on the CPU.

        ``eq_gain`` is the equivariance cosine minus the cosine of the view's map with the reference *without*
        the inverse warp: near 0 for a map that stays put (a fixed pattern, a constant) however high its
        cosine. Equivariance is scored on the reference grid pooled to at most :data:`EQ_SIDE` pixels a side
        (average pooling of the maps; a cell counts as valid only if all its pixels are): heatmaps hold no
        detail finer than that (a 7×7 CAM upsampled to 224 px), and ranking 50k pixels per view would cost
        more than the model. Border, corner and flatness metrics use the full grid.
        """
        s, back = self.maps[method], self.back[method]
        ref, bk, pv = _pooled(s[:1], back, self.pair_valid)
        eq = M.equivariance(ref, bk, pv)
        # the same cosine without undoing the warp: what a map that stays put while the image moves scores
        ref0, still, sv = _pooled(s[:1], s, self.views.valid & self.views.valid[:1])
        static = M.masked_cosine(M.numerical_zero(ref0).expand_as(still), M.numerical_zero(still), sv)
        cell = self.cell(method)
        flat = M.flatness(self.explanations[method].raw)
        e = self.explanations[method]
        out = {
            "eq_cosine": eq["cosine"],
            "eq_spearman": eq["spearman"],
            "eq_iou": eq["iou"],
            "eq_gain": eq["cosine"] - static,
            "border_mass": M.border_mass(s, self.views.valid),
            "fill_fraction": M.fill_fraction(self.views.valid),
            "corner_mass": M.corner_mass(s, cell),
            "corner_argmax": M.argmax_in_corner(s, cell).double(),
            "flat": flat["flat"],
            "entropy": flat["entropy"],
            "peak_to_mean": flat["peak_to_mean"],
            "raw_range": flat["range"],
            "score": e.scores.detach().double(),
        }
        return {k: v.detach().double().cpu() for k, v in out.items()}


def run_sweep(
    detector: Detector,
    pixels: Tensor,
    views: Sequence[ViewSpec],
    methods: Sequence[str],
    *,
    valid: Tensor | None = None,
    layers: Sequence[str] | None = None,
    target: str = "fake",
    options: dict[str, dict[str, Any]] | None = None,
) -> Sweep:
    """Explain ``K`` views of one prepared image ``(3, H, W)`` (pixels in [0, 1]) with every method.

    Gradient and activation CAMs come from one capture of the whole ``K``-view batch; each other method runs
    its own passes over the same batch; a method that cannot run on this detector is reported in ``errors``
    (a :class:`~fakelens.errors.FakelensError` such as an attention method on a CNN), not raised.
    ``options``: per-method keyword options, as for :func:`~fakelens.explain.engine.explain`.
    """
    px = pixels[None] if pixels.dim() == 3 else pixels
    if px.shape[0] != 1:
        raise ValueError("run_sweep takes one image; run_sweeps takes several")
    return run_sweeps(
        detector,
        px,
        views,
        methods,
        valid=None if valid is None else valid.reshape(1, *px.shape[-2:]),
        layers=layers,
        target=target,
        options=options,
    )[0]


def run_sweeps(
    detector: Detector,
    pixels: Tensor,
    views: Sequence[ViewSpec],
    methods: Sequence[str],
    *,
    valid: Tensor | None = None,
    layers: Sequence[str] | None = None,
    target: str = "fake",
    options: dict[str, dict[str, Any]] | None = None,
) -> list[Sweep]:
    """:func:`run_sweep` of ``B`` prepared images ``(B, 3, H, W)`` (``valid (B, H, W)``) as one batch of
    ``B·K`` views: the same sweeps, image by image, in fewer and larger passes."""
    if pixels.dim() != 4 or pixels.shape[0] == 0:
        raise ValueError(f"run_sweeps takes a batch of images (B, 3, H, W), not {tuple(pixels.shape)}")
    if not views or views[0][0].kind != "identity":
        raise ValueError("the first view must be the identity (the reference the others are compared with)")
    dev = detector.device
    vb = make_views(
        pixels.to(dev),
        [t for t, _ in views],
        fills=[f for _, f in views],
        valid=None if valid is None else valid.to(dev),
        mean=detector.input_spec.mean,
    )
    x = detector.input_spec.normalize(vb.pixels)
    cams = [m for m in methods if m in CAMS]
    others = [m for m in methods if m not in CAMS]
    expl: dict[str, Explanation] = {}
    errors: dict[str, str] = {}
    if cams:
        expl.update(explain(detector, x, cams, target=target, layers=layers, valid=vb.valid))
    for m in others:
        try:
            one = explain(detector, x, [m], target=target, layers=layers, valid=vb.valid, options=options)
            expl.update(one)
        except FakelensError as exc:
            errors[m] = str(exc)
    hw = (int(x.shape[-2]), int(x.shape[-1]))
    ordered = {m: expl[m] for m in methods if m in expl}
    maps = {m: upsampled(e.raw.detach(), hw) for m, e in ordered.items()}
    back: dict[str, Tensor] = {}
    if maps:  # every method's maps carried back in one sampling
        stacked = vb.unwarp(torch.stack(list(maps.values()), dim=1))
        back = {m: stacked[:, i] for i, m in enumerate(maps)}
    if vb.images == 1:
        return [Sweep(vb, ordered, maps, back, vb.back_valid, errors)]
    k = vb.k
    out = []
    for b in range(vb.images):
        rows = slice(b * k, (b + 1) * k)
        own = vb.image(b)
        out.append(
            Sweep(
                own,
                {m: e.rows(rows.start, rows.stop) for m, e in ordered.items()},
                {m: v[rows] for m, v in maps.items()},
                {m: v[rows] for m, v in back.items()},
                own.back_valid,
                dict(errors),
            )
        )
    return out
