"""From tidy records to a decision: ranked tables per metric family, a recommendation with its numbers,
plots and the gallery.

Families and their primary metric (the one that ranks): equivariance (mean cosine after the inverse warp,
black-fill views), border (mass on the fill minus the fill's area), corners (rate of corner peaks across
inputs), flatness (rate of flat maps), localisation (pixel AUROC: the pointing game saturates on small
images and ties), faithfulness (ROAD: its imputation keeps the deleted pixels in distribution, where a blurred
or black patch can itself read as a forgery to an artifact detector) and randomisation (mean |Spearman| after
randomising every layer). The recommendation orders (method, layer) candidates by their number of flags
(unflagged first, then the fewest; flags: :class:`~fakelens.trust.criteria.Criteria`), then by their mean rank
over the families.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from fakelens.io import atomic_write_text
from fakelens.trust.criteria import Criteria
from fakelens.trust.gallery import prune_cases, select_cases, write_gallery
from fakelens.trust.records import DONE, Record

__all__ = [
    "FAMILIES",
    "Metric",
    "aggregate",
    "case_files",
    "left_out_note",
    "rank",
    "recommend",
    "write_report",
]

Candidate = tuple[str, str]  # (method, layer)


@dataclass(frozen=True)
class Metric:
    """A column of a family table: ``higher`` True/False says which way is better (None: context only);
    ``lowest``/``highest``: its range, where its interval is cut off."""

    key: str
    label: str
    higher: bool | None
    percent: bool = False
    lowest: float = 0.0
    highest: float = 1.0


FAMILIES: dict[str, tuple[Metric, ...]] = {
    "equivariance": (
        Metric("eq_cosine", "cosine", True),
        Metric("eq_spearman", "Spearman", True, lowest=-1.0),
        Metric("eq_iou", "top-10% IoU", True),
        Metric("eq_worst", "worst transform cosine", True),
        Metric("eq_gain", "gain over a still map", True, lowest=-1.0),
        Metric("score_flip_rate", "views flipping the score's sign", None, True),
        Metric("vanished_rate", "views whose map vanished", None, True),
    ),
    "border": (
        Metric("border_excess", "mass on fill − fill area", False, True, lowest=-1.0),
        Metric("leak_rate", "views leaking", False, True),
        Metric("border_mass", "mass on fill", None, True),
        Metric("fill_fraction", "fill area", None, True),
    ),
    "corners": (
        Metric("corner_argmax_rate", "corner-peak rate", False, True),
        Metric("corner_mass", "corner mass", False, True),
        Metric("corner_chance", "chance rate", None, True),
        Metric("corner_threshold", "flagged above", None, True),
    ),
    "flatness": (
        Metric("flat_rate", "flat maps", False, True),
        Metric("entropy", "entropy", None),
        Metric("peak_to_mean", "peak/mean (median)", None),
    ),
    "localisation": (
        Metric("pixel_auroc", "pixel AUROC", True),
        Metric("pointing_game", "pointing game", True),
        Metric("energy_pointing", "energy (mask)", True),
        Metric("energy_seam", "energy (seam)", True),
        Metric("relevance_mass", "mass accuracy", True),
        Metric("relevance_rank", "rank accuracy", True),
    ),
    "faithfulness": (
        Metric("road_combined", "ROAD (LeRF−MoRF)/2", True, lowest=-1.0),
        Metric("gap_blur", "insertion − deletion (blur)", True, lowest=-1.0),
        Metric("gap_black", "insertion − deletion (black)", True, lowest=-1.0),
        Metric("deletion_black", "deletion (black)", False),
        Metric("insertion_black", "insertion (black)", True),
        Metric("deletion_blur", "deletion (blur)", False),
        Metric("insertion_blur", "insertion (blur)", True),
    ),
    "randomisation": (
        Metric("rand_spearman", "|Spearman| signed maps", False),
        Metric("rand_spearman_abs", "|Spearman| of |maps|", False),
        Metric("rand_ssim", "SSIM", False, lowest=-1.0),
    ),
}

FAMILY_NOTES = {
    "equivariance": "Black-fill views; maps carried back by the exact inverse warp and compared on pixels "
    "valid in both. 1 = the map moves with the image. Gain over a still map: that cosine minus the one "
    "without undoing the warp; near 0, the map stays put while the image moves (flag static). Views "
    "flipping the score's sign: the share of views on which the model's explained score (fake log-odds by "
    "default) has the other sign than on the image itself — the model changed its mind, so the map may "
    "rightly change; views whose map vanished (no positive value left) count as cosine 0. Both tell a method "
    "that does not move from a model that does not hold its verdict.",
    "border": "Black-fill views with some fill (maps with no positive mass left out: see flatness). A method "
    "that puts more mass on the fill than the fill's area reads the fill, not the image.",
    "corners": "Share of maps (all black-fill views, every image; maps with no positive mass left out) whose "
    "peak is in a corner cell (one feature stride). Far above chance = degenerate maps. Flagged above: the "
    "rate at which corner-peaks fires (odds 3× those at chance, and over 25 %); 100 % = the check has no "
    "power on this grid (every cell is a corner cell).",
    "flatness": "Untransformed images. Flat maps are reported, not stretched.",
    "localisation": "Against the ground-truth masks (original pixel grid; pointing game with tolerance).",
    "faithfulness": "Fake probability while deleting / inserting pixels in the map's order (trapezoid AUC); "
    "ROAD with noisy linear imputation.",
    "randomisation": "After re-initialising every layer from the head down; should collapse towards 0.",
}


RANGES = {mt.key: (mt.lowest, mt.highest) for metrics in FAMILIES.values() for mt in metrics}


NEAR_FLAT_PEAK_TO_MEAN = 1.5
"""A median peak-to-mean under this (1 = uniform) gets a caveat in the recommendation, flagged flat or not."""


def _mean(xs: Sequence[float]) -> float:
    v = [x for x in xs if not math.isnan(x)]
    return float(np.mean(v)) if v else math.nan


def _ci(xs: Sequence[float]) -> float:
    v = [x for x in xs if not math.isnan(x)]
    return float(1.96 * np.std(v, ddof=1) / math.sqrt(len(v))) if len(v) > 1 else math.nan


def aggregate(records: Iterable[Record]) -> dict[Candidate, dict[str, dict[str, float]]]:
    """``result[(method, layer)][metric] = {"mean", "ci", "n"}`` for every metric of :data:`FAMILIES`, plus
    ``detail`` series used by the plots."""
    recs = [r for r in records if r.metric != DONE and not r.metric.startswith("case:")]
    fills: dict[tuple[str, str, str, str, str], float] = {}
    empty: set[tuple[str, str, str, str, str]] = set()  # views whose map has no positive mass
    unmoored: set[tuple[str, str, str]] = set()  # maps empty on the image itself: no movement to judge
    ident_score: dict[tuple[str, str, str], float] = {}  # the explained score on the image itself
    for r in recs:
        if r.metric == "fill_fraction":
            fills[(r.image, r.method, r.layer, r.transform, r.fill)] = r.value
        elif r.metric == "score" and r.kind == "identity" and r.fill == "black":
            ident_score[(r.image, r.method, r.layer)] = r.value
        elif r.metric == "peak_to_mean" and r.value == 0:
            empty.add((r.image, r.method, r.layer, r.transform, r.fill))
            if r.kind == "identity":
                unmoored.add((r.image, r.method, r.layer))
    # values per candidate, metric and image: views of one image are not independent samples, so each image
    # is averaged first and the mean and its interval are taken over images
    vals: dict[Candidate, dict[str, dict[str, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    per_transform: dict[Candidate, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    last_stage: dict[tuple[str, str, str, str], tuple[float, float]] = {}
    faith: dict[tuple[str, str, str], dict[str, float]] = defaultdict(dict)
    for r in recs:
        c = (r.method, r.layer)
        black = r.fill == "black"
        view = (r.image, r.method, r.layer, r.transform, r.fill)
        if r.metric.startswith("eq_") and black and r.kind != "identity":
            if (r.image, r.method, r.layer) in unmoored:  # counted under flatness, not as a cosine of 0
                continue
            vals[c][r.metric][r.image].append(r.value)
            if r.metric == "eq_cosine":
                per_transform[c][r.transform].append(r.value)
                vals[c]["vanished_rate"][r.image].append(float(view in empty))
        elif r.metric == "score" and black and r.kind != "identity":
            s0 = ident_score.get((r.image, r.method, r.layer))
            if s0 is not None and not math.isnan(s0) and not math.isnan(r.value):
                vals[c]["score_flip_rate"][r.image].append(float((r.value > 0) != (s0 > 0)))
        elif r.metric in ("border_mass", "fill_fraction", "border_excess", "leak") and black:
            if fills.get(view, 0.0) > 0.01 and view not in empty:
                vals[c]["leak_rate" if r.metric == "leak" else r.metric][r.image].append(r.value)
        elif r.metric in ("corner_argmax", "corner_mass") and black and view not in empty:
            vals[c]["corner_argmax_rate" if r.metric == "corner_argmax" else r.metric][r.image].append(
                r.value
            )
        elif r.metric == "corner_chance":
            vals[c][r.metric][r.image].append(r.value)
        elif r.metric in ("flat", "entropy", "peak_to_mean") and black and r.kind == "identity":
            vals[c]["flat_rate" if r.metric == "flat" else r.metric][r.image].append(r.value)
        elif r.kind == "randomise":
            key = (r.image, r.method, r.layer, r.metric)
            if key not in last_stage or r.strength >= last_stage[key][0]:
                last_stage[key] = (r.strength, r.value)
        elif r.fill == "none":
            vals[c][r.metric][r.image].append(r.value)
            faith[(r.image, r.method, r.layer)][r.metric] = r.value
    for (image, m, layer, metric), (_, v) in last_stage.items():
        vals[(m, layer)][metric][image].append(abs(v) if metric.startswith("rand_spearman") else v)
    for (image, m, layer), fd in faith.items():
        for base in ("blur", "black"):
            if f"insertion_{base}" in fd and f"deletion_{base}" in fd:
                gap = fd[f"insertion_{base}"] - fd[f"deletion_{base}"]
                vals[(m, layer)][f"gap_{base}"][image].append(gap)
    out: dict[Candidate, dict[str, dict[str, float]]] = {}
    for c, series in vals.items():
        row: dict[str, dict[str, float]] = {}
        for k, by_image in series.items():
            if k == "peak_to_mean":
                finite = [x for xs in by_image.values() for x in xs if not math.isnan(x)]
                row[k] = {
                    "mean": float(np.median(finite)) if finite else math.nan,
                    "ci": math.nan,
                    "n": len({i for i, xs in by_image.items() if any(not math.isnan(x) for x in xs)}),
                }
            else:
                per_image = [m for m in (_mean(xs) for xs in by_image.values()) if not math.isnan(m)]
                mean, ci = _mean(per_image), _ci(per_image)
                low, high = RANGES.get(k, (-math.inf, math.inf))
                # the normal interval cut to the metric's range: a rate over a few images is no less than 0
                row[k] = {
                    "mean": mean,
                    "ci": ci,
                    "lo": math.nan if math.isnan(ci) else max(low, mean - ci),
                    "hi": math.nan if math.isnan(ci) else min(high, mean + ci),
                    "n": len(per_image),
                }
        pt = {t: _mean(xs) for t, xs in per_transform.get(c, {}).items()}
        if pt:
            worst = min(pt, key=lambda t: pt[t])
            row["eq_worst"] = {"mean": pt[worst], "ci": math.nan, "n": len(pt), "transform": worst}  # type: ignore[dict-item]
        out[c] = row
    return out


def add_corner_thresholds(
    agg: dict[Candidate, dict[str, dict[str, float]]], criteria: Criteria
) -> dict[Candidate, dict[str, dict[str, float]]]:
    """``agg`` with each candidate's ``corner_threshold`` (:meth:`Criteria.corner_threshold` of its chance
    rate): the corner-peak rate its flag needs, 1 where the check has no power on its grid."""
    for a in agg.values():
        ch = a.get("corner_chance")
        if ch is not None and not math.isnan(float(ch["mean"])):
            th = criteria.corner_threshold(float(ch["mean"]))
            a["corner_threshold"] = {"mean": th, "ci": math.nan, "n": ch["n"]}
    return agg


def score_flips(records: Iterable[Record]) -> dict[str, dict[str, dict[str, float]]]:
    """Per ``method@layer`` and image, the black-fill views on which the explained score has the other sign
    than on the image itself (the model changed its mind): ``{"flipped", "views", "identity", "lowest",
    "highest"}`` (scores as explained: fake log-odds by default); images without a flip left out."""
    ident: dict[tuple[str, str, str], float] = {}
    views: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for r in records:
        if r.metric != "score" or r.fill != "black" or math.isnan(r.value):
            continue
        if r.kind == "identity":
            ident[(r.method, r.layer, r.image)] = r.value
        else:
            views[(r.method, r.layer, r.image)].append(r.value)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for (m, layer, image), xs in sorted(views.items()):
        s0 = ident.get((m, layer, image))
        if s0 is None:
            continue
        k = sum((x > 0) != (s0 > 0) for x in xs)
        if k:
            out.setdefault(f"{m}@{layer}", {})[image] = {
                "flipped": k,
                "views": len(xs),
                "identity": s0,
                "lowest": min(xs),
                "highest": max(xs),
            }
    return out


def _value(agg: dict[str, dict[str, float]], key: str) -> float:
    v = agg.get(key)
    return math.nan if v is None else float(v["mean"])


def rank(agg: dict[Candidate, dict[str, dict[str, float]]], family: str) -> list[tuple[Candidate, float]]:
    """Candidates with data for the family's primary metric, best first, with their primary value."""
    primary = FAMILIES[family][0]
    rows = [(c, _value(a, primary.key)) for c, a in agg.items()]
    rows = [(c, v) for c, v in rows if not math.isnan(v)]
    return sorted(rows, key=lambda cv: (-cv[1] if primary.higher else cv[1], cv[0]))


RANK_TIE = 5e-4
"""Values closer than this (the tables' last printed digit) rank as equal."""


def _family_ranks(agg: dict[Candidate, dict[str, dict[str, float]]]) -> dict[str, dict[Candidate, float]]:
    """Each family's rank of each candidate (1 = best), for families that rank two or more. Values the tables
    cannot tell apart (within :data:`RANK_TIE`: float noise, two methods that give the same maps such as
    GradCAM and HiResCAM under a pooled linear head, or faithfulness gaps that all read 0.000) share their
    average rank."""
    out: dict[str, dict[Candidate, float]] = {}
    for fam in FAMILIES:
        ordered = rank(agg, fam)
        if len(ordered) < 2:
            continue
        values = [v for _, v in ordered]
        out[fam] = {}
        for c, v in ordered:
            pos = [i + 1 for i, w in enumerate(values) if abs(w - v) <= RANK_TIE * max(1.0, abs(v))]
            out[fam][c] = sum(pos) / len(pos)
    return out


def _mean_ranks(agg: dict[Candidate, dict[str, dict[str, float]]]) -> dict[Candidate, float]:
    ranks: dict[Candidate, list[float]] = defaultdict(list)
    for by_candidate in _family_ranks(agg).values():
        for c, r in by_candidate.items():
            ranks[c].append(r)
    return {c: (sum(r) / len(r) if r else math.inf) for c, r in ((c, ranks.get(c, [])) for c in agg)}


def _summary_numbers(a: dict[str, dict[str, float]]) -> dict[str, float]:
    return {k: float(v["mean"]) for k, v in a.items() if not math.isnan(float(v["mean"]))}


def recommend(
    agg: dict[Candidate, dict[str, dict[str, float]]],
    criteria: Criteria,
    skipped: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The recommended (method, layer), the ordering, each candidate's flags, and the text with its
    numbers."""
    if not agg:
        why = "; ".join(f"{m}: {reason}" for m, reason in (skipped or {}).items())
        return {
            "method": None,
            "layer": None,
            "text": "No method produced records." + (f" Not run: {why}." if why else ""),
            "order": [],
            "flags": {},
        }
    mr = _mean_ranks(agg)
    flags = {c: criteria.flags(_summary_numbers(a)) for c, a in agg.items()}
    order = sorted(agg, key=lambda c: (len(flags[c]) > 0, len(flags[c]), mr[c], c))
    best = order[0]
    a = agg[best]
    text = _sentence(best, a, flags[best], criteria)
    bad = [c for c in order if flags[c] and c != best]
    if bad:
        avoid = "; ".join(f"{m} on {lay} ({'; '.join(flags[(m, lay)].values())})" for m, lay in bad[:6])
        more = f" and {len(bad) - 6} more (see the tables)" if len(bad) > 6 else ""
        text += f"\nAvoid: {avoid}{more}."
    if skipped:
        by_reason: dict[str, list[str]] = defaultdict(list)
        for m, why in skipped.items():
            by_reason[why.split(";")[0].split(" (model ")[0]].append(m)
        text += "\nNot run: " + "; ".join(f"{', '.join(ms)} ({why})" for why, ms in by_reason.items()) + "."
    return {
        "method": best[0],
        "layer": best[1],
        "text": text,
        "order": [
            {"method": m, "layer": lay, "mean_rank": mr[(m, lay)], "flags": flags[(m, lay)]}
            for m, lay in order
        ],
        "flags": {f"{m}@{lay}": f for (m, lay), f in flags.items()},
    }


def _fmt_pct(v: float) -> str:
    return f"{100 * v:.1f} %"


MIN_FAITHFUL_GAP = 0.01
"""The smallest insertion − deletion AUC gap read as evidence of faithfulness: below it the model's score
barely depends on which pixels the map ranks first, whatever the interval says."""


RANDOMISATION_COLLAPSE = 0.2
"""The |Spearman| with the fully randomised model's map that the recommendation calls a collapse: near 0, as
the sanity check expects. Between it and ``Criteria.max_randomisation`` (0.5, where ``ignores-weights``
fires) the maps weaken; above, they survive."""


def _sentence(c: Candidate, a: dict[str, dict[str, float]], flags: dict[str, str], criteria: Criteria) -> str:
    m, layer = c
    parts: list[str] = []
    eq = _value(a, "eq_cosine")
    if not math.isnan(eq):
        w = a.get("eq_worst", {})
        worst = f", worst {float(w['mean']):.2f} under {w.get('transform')}" if w else ""
        moves = (
            "does no better than a map that stays put"
            if "static" in flags
            else "moves with the image"
            if eq >= 0.8 and "flat" not in flags
            else "does not reliably move with the image"
        )
        parts.append(f"it {moves} (equivariance cosine {eq:.2f} on average{worst})")
        flips, gone = _value(a, "score_flip_rate"), _value(a, "vanished_rate")
        if flips > 0 or gone > 0:
            said = []
            if flips > 0:
                said.append(f"the explained score changes sign on {_fmt_pct(flips)} of the views")
            if gone > 0:
                said.append(f"the map vanishes on {_fmt_pct(gone)} (counted as cosine 0)")
            parts.append(
                f"{' and '.join(said)}: part of that is the model changing its mind, not the method (see "
                "score_flips in summary.json)"
            )
    bm, ff = _value(a, "border_mass"), _value(a, "fill_fraction")
    if not math.isnan(bm):
        parts.append(f"puts {_fmt_pct(bm)} of its mass on black fill (fill area {_fmt_pct(ff)})")
    cr, ch, th = _value(a, "corner_argmax_rate"), _value(a, "corner_chance"), _value(a, "corner_threshold")
    if not math.isnan(cr):
        if th >= 1.0:
            parts.append(
                f"peaks in a corner in {_fmt_pct(cr)} of maps (chance {_fmt_pct(ch)}: every cell of this "
                "grid is a corner cell, so the corner check has no power here)"
            )
        else:
            above = "" if math.isnan(th) else f", flagged above {_fmt_pct(th)}"
            parts.append(f"peaks in a corner in {_fmt_pct(cr)} of maps (chance {_fmt_pct(ch)}{above})")
    fl = _value(a, "flat_rate")
    if not math.isnan(fl):
        parts.append(f"{_fmt_pct(fl)} of its maps are flat")
    ptm = _value(a, "peak_to_mean")
    if 0 < ptm < NEAR_FLAT_PEAK_TO_MEAN:  # under the flat cut-off, but barely a peak: say so
        parts.append(
            f"but its maps are nearly flat (median peak/mean {ptm:.2f}): weak evidence of where, whatever "
            "its other scores"
        )
    pg, au = _value(a, "pointing_game"), _value(a, "pixel_auroc")
    if not math.isnan(pg):
        parts.append(
            f"on the ground-truth masks: pointing game {pg:.2f}, pixel AUROC {au:.2f}, "
            f"energy on mask {_value(a, 'energy_pointing'):.2f}"
        )
    de, ins = _value(a, "deletion_blur"), _value(a, "insertion_blur")
    if not math.isnan(de):
        numbers = f"deletion AUC {de:.3f} vs insertion AUC {ins:.3f} (blur baseline)"
        if min(de, ins) > 0.98 or max(de, ins) < 0.02:
            numbers += " — saturated: the model reads the blur itself as fake or real"
        deb, inb = _value(a, "deletion_black"), _value(a, "insertion_black")
        if not math.isnan(deb):
            numbers += f", {deb:.3f} vs {inb:.3f} (black)"
        numbers += f", ROAD {_value(a, 'road_combined'):+.3f}"

        def shown(key: str) -> bool:  # a gap above noise and above the smallest that counts
            v = a.get(key, {})
            g, g_ci = float(v.get("mean", math.nan)), float(v.get("ci", math.nan))
            return g > max(MIN_FAITHFUL_GAP, g_ci if not math.isnan(g_ci) else 0.0)

        if not any(shown(k) for k in ("road_combined", "gap_blur", "gap_black")):  # none, negative or noise
            parts.append(f"no evidence that it is faithful: {numbers}")
        else:
            parts.append(numbers)
    rs = _value(a, "rand_spearman")
    if not math.isnan(rs):
        verb = (
            "collapse"
            if rs <= RANDOMISATION_COLLAPSE
            else "weaken (but keep some of their pattern)"
            if rs <= criteria.max_randomisation
            else "survive"
        )
        parts.append(f"its maps {verb} when the weights are randomised (|Spearman| {rs:.2f})")
    body = "; ".join(parts)
    if flags:
        return (
            f"No method passes every check. The least bad is {m} on layer {layer}: {body}. "
            f"Flags: {'; '.join(flags.values())}."
        )
    return f"Use {m} on layer {layer}: {body}."


# ------------------------------------------------------------------------------------------------ tables


def _cell(v: dict[str, float] | None, metric: Metric) -> str:
    if v is None or math.isnan(float(v["mean"])):
        return "–"
    x = float(v["mean"])
    s = f"{100 * x:.1f} %" if metric.percent else f"{x:.3f}"
    s = s.replace("-0.000", "0.000").replace("-0.0 %", "0.0 %")  # a tiny negative mean is no sign
    ci, lo, hi = (float(v.get(k, math.nan)) for k in ("ci", "lo", "hi"))
    scale, digits = (100, 1) if metric.percent else (1, 3)
    if not math.isnan(ci) and (lo > x - ci or hi < x + ci):  # cut to the range: no longer symmetric
        s += f" ({scale * lo:.{digits}f}–{scale * hi:.{digits}f})"
    elif not math.isnan(ci):
        s += f" ± {scale * ci:.{digits}f}"
    if metric.key == "eq_worst" and "transform" in v:
        s += f" ({v['transform']})"
    return s


def family_tables(agg: dict[Candidate, dict[str, dict[str, float]]]) -> dict[str, dict[str, Any]]:
    """JSON-safe ranked tables: ``{family: {"primary", "rows": [{method, layer, metrics...}]}}``."""
    out: dict[str, dict[str, Any]] = {}
    for fam, metrics in FAMILIES.items():
        ordered = rank(agg, fam)
        if not ordered:
            continue
        rows = []
        for (m, layer), _ in ordered:
            row: dict[str, Any] = {"method": m, "layer": layer}
            for mt in metrics:
                v = agg[(m, layer)].get(mt.key)
                if v is not None:
                    row[mt.key] = {
                        k: (None if isinstance(x, float) and math.isnan(x) else x) for k, x in v.items()
                    }
            rows.append(row)
        out[fam] = {
            "primary": metrics[0].key,
            "higher_is_better": metrics[0].higher,
            "rows": rows,
            "note": FAMILY_NOTES[fam],
        }
    return out


def overall_table(agg: dict[Candidate, dict[str, dict[str, float]]], rec: dict[str, Any]) -> str:
    """How the pick is made, in one table: candidates without flags first, then those with the fewest
    flags, each group by their mean rank over the metric families (ties averaged), with each family's rank
    and the flags."""
    ranks = _family_ranks(agg)
    fams = list(ranks)
    head = ["#", "method", "layer", "mean rank", *fams, "flags"]
    lines = [
        "### Overall",
        "",
        "The pick: methods without flags first, then those with the fewest flags; among equal numbers of "
        "flags, the lowest mean rank over the families (1 = best in a family; equal values share their "
        "rank).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for k, o in enumerate(rec.get("order", []), start=1):
        c = (o["method"], o["layer"])
        cells = [f"{ranks[f][c]:g}" if c in ranks[f] else "–" for f in fams]
        flags = ", ".join(o["flags"]) or "none"
        mean = f"{o['mean_rank']:.2f}" if math.isfinite(o["mean_rank"]) else "–"
        lines.append(
            f"| {k} | {o['method']} | `{o['layer']}` | {mean} | " + " | ".join(cells) + f" | {flags} |"
        )
    return "\n".join(lines) + "\n"


def markdown_tables(agg: dict[Candidate, dict[str, dict[str, float]]]) -> str:
    lines: list[str] = [
        "Cells: mean over the images (each image's views and faithfulness steps averaged first, since they "
        "are not independent) ± half the width of a normal 95 % interval, 1.96·s/√n (none for one "
        "image; wide for a few), given as (low–high) where the metric's range cuts it; n: images; ↑/↓: "
        "which way is better.",
        "",
    ]
    for fam, metrics in FAMILIES.items():
        ordered = rank(agg, fam)
        if not ordered:
            continue
        arrow = "↑" if metrics[0].higher else "↓"
        lines += [f"### {fam.capitalize()} (ranked by {metrics[0].label} {arrow})", "", FAMILY_NOTES[fam], ""]
        head = (
            ["#", "method", "layer"]
            + [mt.label + ("" if mt.higher is None else (" ↑" if mt.higher else " ↓")) for mt in metrics]
            + ["n"]
        )
        lines.append("| " + " | ".join(h.replace("|", "\\|") for h in head) + " |")  # |Spearman| is no cell
        lines.append("|" + "---|" * len(head))
        for i, ((m, layer), _) in enumerate(ordered, start=1):
            a = agg[(m, layer)]
            n = int(a.get(metrics[0].key, {}).get("n", 0))
            cells = [str(i), m, f"`{layer}`"] + [_cell(a.get(mt.key), mt) for mt in metrics] + [str(n)]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def controls_table(records: Iterable[Record]) -> tuple[str, dict[str, Any]]:
    """Border mass and equivariance per fill (black vs the mean/reflect controls) on the control
    transforms."""
    recs = [r for r in records if r.metric in ("border_mass", "fill_fraction", "eq_cosine")]
    ctl = {r.transform for r in recs if r.fill in ("mean", "reflect")}
    if not ctl:
        return "", {}
    acc: dict[tuple[str, str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in recs:
        if r.transform in ctl and r.fill in ("black", "mean", "reflect"):
            acc[(r.method, r.layer, r.fill)][r.metric].append(r.value)
    lines = [
        "### Fill controls",
        "",
        "The same transforms with black, mean-colour and reflected fill. A map that reads the black fill "
        f"changes when the fill changes; transforms: {', '.join(sorted(ctl))}.",
        "",
        "| method | layer | fill | mass on fill | fill area | equivariance cosine |",
        "|---|---|---|---|---|---|",
    ]
    data: dict[str, Any] = {}
    for (m, layer, fill), d in sorted(acc.items()):
        bm, ff, eq = _mean(d["border_mass"]), _mean(d["fill_fraction"]), _mean(d["eq_cosine"])
        lines.append(f"| {m} | `{layer}` | {fill} | {_fmt_pct(bm)} | {_fmt_pct(ff)} | {eq:.3f} |")
        data.setdefault(f"{m}@{layer}", {})[fill] = {"border_mass": bm, "fill_fraction": ff, "eq_cosine": eq}
    return "\n".join(lines) + "\n", data


# ------------------------------------------------------------------------------------------------ plots


def _colours(n: int) -> list[Any]:
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def _label(c: Candidate, layers: set[str]) -> str:
    return c[0] if len(layers) == 1 else f"{c[0]} @ {c[1]}"


_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_LINES = ("-", "--", "-.", ":")


def _style(k: int) -> dict[str, Any]:
    """Candidate ``k``'s marker and line style, so that series drawn on top of each other stay visible."""
    return {"marker": _MARKERS[k % len(_MARKERS)], "ls": _LINES[(k // 2) % len(_LINES)]}


def _twins(series: dict[Candidate, list[float]], layers: set[str]) -> dict[Candidate, str]:
    """Legend suffixes for candidates whose plotted values equal an earlier one's (they hide under it)."""
    out: dict[Candidate, str] = {}
    seen: list[tuple[Candidate, np.ndarray]] = []
    for c, ys in series.items():
        v = np.asarray(ys, dtype=float)
        twin = next(
            (o for o, w in seen if w.shape == v.shape and np.allclose(v, w, atol=1e-6, equal_nan=True)), None
        )
        if twin is not None:
            out[c] = f" (= {_label(twin, layers)}, under it)"
        else:
            seen.append((c, v))
    return out


def plot_equivariance(records: Sequence[Record], path: Path) -> Path | None:
    """Equivariance cosine vs transform strength per method (one panel per kind), black fill."""
    acc: dict[Candidate, dict[tuple[str, str, float], list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r.metric == "eq_cosine" and r.fill == "black" and r.kind != "identity":
            acc[(r.method, r.layer)][(r.kind, r.transform, r.strength)].append(r.value)
    if not acc:
        return None
    cands = sorted(acc)
    layers = {c[1] for c in cands}
    cols = _colours(len(cands))
    flat: dict[Candidate, list[float]] = defaultdict(list)
    for r in records:
        if r.metric == "flat" and r.kind == "identity" and r.fill == "black":
            flat[(r.method, r.layer)].append(r.value)
    names = {c: _label(c, layers) + (" [flat maps]" if _mean(flat.get(c, [])) > 0.25 else "") for c in cands}
    neutral = {"scale": 1.0, "rotate": 0.0, "translate": 0.0}
    kinds = [
        ("scale", "scale factor"),
        ("rotate", "angle (degrees)"),
        ("translate", "shift (fraction of size)"),
    ]
    curves: dict[Candidate, dict[str, tuple[list[float], list[float]]]] = defaultdict(dict)
    for c in cands:
        for kind, _ in kinds:
            by_s: dict[float, list[float]] = defaultdict(list)
            for (k, _t, s), vs in acc[c].items():
                if k == kind:
                    by_s[s].extend(vs)
            if by_s:
                by_s.setdefault(neutral[kind], [1.0])  # the identity: the reference itself
                xs = sorted(by_s)
                curves[c][kind] = (xs, [_mean(by_s[x]) for x in xs])
    twins = _twins({c: [y for k in sorted(curves[c]) for y in curves[c][k][1]] for c in cands}, layers)
    # 2 × 2 panels: legible when a gallery or a phone shrinks the picture to its width
    fig, grid = plt.subplots(2, 2, figsize=(11, 8.6), dpi=110)
    axes = list(grid.ravel())
    try:
        for ax, (kind, xlabel) in zip(axes[:3], kinds, strict=True):
            for j, (c, col) in enumerate(zip(cands, cols, strict=True)):
                if kind in curves[c]:
                    xs, ys = curves[c][kind]
                    label = names[c] + twins.get(c, "")
                    ax.plot(xs, ys, color=col, label=label, ms=4, lw=1.3, mfc="none", **_style(j))
            ax.set_title(kind)
            ax.set_xlabel(xlabel)
            ax.set_ylim(-0.05, 1.05)
            ax.grid(alpha=0.3)
        for a in (axes[0], axes[2]):
            a.set_ylabel("equivariance cosine (mean over images)")
        others = sorted(
            {t for c in cands for (k, t, _s) in acc[c] if k not in ("scale", "rotate", "translate")}
        )
        ax = axes[3]
        if others:
            width = 0.8 / len(cands)
            for j, (c, col) in enumerate(zip(cands, cols, strict=True)):
                ys = [_mean([v for (k, t, _s), vs in acc[c].items() if t == o for v in vs]) for o in others]
                ax.bar(np.arange(len(others)) + j * width, ys, width, color=col)
            ax.set_xticks(np.arange(len(others)) + 0.4 - width / 2)
            ax.set_xticklabels([o.replace(">", ">\n") for o in others], fontsize=7)
            ax.set_ylim(-0.05, 1.05)
            ax.set_title("flips and compositions")
            ax.grid(alpha=0.3, axis="y")
        else:
            ax.axis("off")
        handles, labels = axes[0].get_legend_handles_labels()
        if not handles:
            for a in axes[1:3]:
                handles, labels = a.get_legend_handles_labels()
                if handles:
                    break
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(cands)), fontsize=8, frameon=False)
        fig.suptitle(
            "Does the map move with the image? (black fill, inverse-warped, valid pixels only; "
            "a flat map scores high here: see flatness)",
            fontsize=11,
        )
        rows = math.ceil(len(cands) / 4)
        fig.tight_layout(rect=(0, min(0.3, 0.03 + 0.03 * rows), 1, 0.95))
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def plot_border(records: Sequence[Record], path: Path) -> Path | None:
    """Mass on the fill vs the fill's area per view (mean over images); above the diagonal = leaking."""
    acc: dict[tuple[Candidate, str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r.metric in ("border_mass", "fill_fraction") and r.kind != "identity":
            acc[((r.method, r.layer), r.transform, r.fill)][r.metric].append(r.value)
    if not acc:
        return None
    cands = sorted({k[0] for k in acc})
    layers = {c[1] for c in cands}
    cols = dict(zip(cands, _colours(len(cands)), strict=True))
    markers = {"black": "o", "mean": "s", "reflect": "^"}
    fig, ax = plt.subplots(figsize=(8.2, 6), dpi=110)
    try:
        ax.fill_between([0, 1], [0, 1], [1.02, 1.02], color="#f4cccc", alpha=0.5, lw=0)
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        from matplotlib.lines import Line2D

        fills_seen: set[str] = set()
        for (c, _t, fill), d in sorted(acc.items()):
            ff, bm = _mean(d["fill_fraction"]), _mean(d["border_mass"])
            if ff <= 0.005:
                continue
            fills_seen.add(fill)
            face = cols[c] if fill == "black" else "none"
            ax.scatter(ff, bm, s=28, marker=markers.get(fill, "o"), facecolors=face, edgecolors=cols[c])
        points: dict[Candidate, list[float]] = defaultdict(list)
        for (c, _t, _f), d in sorted(acc.items()):
            points[c] += [_mean(d["fill_fraction"]), _mean(d["border_mass"])]
        twins = _twins({c: points[c] for c in cands}, layers)
        handles = [
            Line2D([], [], ls="", marker="o", color=cols[c], label=_label(c, layers) + twins.get(c, ""))
            for c in cands
        ]
        handles += [
            Line2D(
                [],
                [],
                ls="",
                marker=markers[f],
                markerfacecolor="k" if f == "black" else "none",
                markeredgecolor="k",
                label=f"{f} fill",
            )
            for f in ("black", "mean", "reflect")
            if f in fills_seen
        ]
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("share of the view that is fill (black, mean or reflect: see the markers)")
        ax.set_ylabel("share of the map's mass on the fill")
        ax.set_title("Border mass vs fill area per transform (mean over images)", fontsize=10)
        ax.text(0.04, 0.96, "leaking: more mass than area", fontsize=8, color="#a33", va="top")
        ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def _bars(
    agg: dict[Candidate, dict[str, dict[str, float]]],
    metrics: Sequence[Metric],
    title: str,
    path: Path,
    ylabel: str,
    ylim: tuple[float, float] | None = (0, 1),
) -> Path | None:
    """Bars of each candidate's mean per metric, with 95 % intervals (1.96·s/√n over images) as whiskers."""
    cands = [c for c in sorted(agg) if any(not math.isnan(_value(agg[c], mt.key)) for mt in metrics)]
    if not cands:
        return None
    layers = {c[1] for c in cands}
    cols = _colours(len(cands))
    width = 0.8 / len(cands)
    fig, ax = plt.subplots(figsize=(max(7, 1.6 * len(metrics) + 0.3 * len(cands)), 4.4), dpi=110)
    try:
        for j, (c, col) in enumerate(zip(cands, cols, strict=True)):
            ys = [_value(agg[c], mt.key) for mt in metrics]
            lows = [float(agg[c].get(mt.key, {}).get("lo", math.nan)) for mt in metrics]
            highs = [float(agg[c].get(mt.key, {}).get("hi", math.nan)) for mt in metrics]
            es = [
                [0 if math.isnan(lo) else y - lo for y, lo in zip(ys, lows, strict=True)],
                [0 if math.isnan(hi) else hi - y for y, hi in zip(ys, highs, strict=True)],
            ]
            ax.bar(
                np.arange(len(metrics)) + j * width,
                ys,
                width,
                color=col,
                label=_label(c, layers),
                yerr=es,
                capsize=2,
                error_kw={"lw": 0.7},
            )
        ax.set_xticks(np.arange(len(metrics)) + 0.4 - width / 2)
        ax.set_xticklabels(
            [mt.label + ("" if mt.higher is None else (" ↑" if mt.higher else " ↓")) for mt in metrics],
            fontsize=8,
        )
        if ylim:
            ax.set_ylim(*ylim)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_ylabel(ylabel)
        n = max(int(agg[c].get(metrics[0].key, {}).get("n", 0)) for c in cands)
        ax.set_title(f"{title} (n ≤ {n} images; whiskers: 95 % interval of the mean)", fontsize=10)
        ax.legend(fontsize=7, ncol=min(4, len(cands)), loc="upper right")
        ax.grid(alpha=0.3, axis="y")
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def plot_randomisation(records: Sequence[Record], path: Path) -> Path | None:
    acc: dict[Candidate, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r.metric == "rand_spearman":
            acc[(r.method, r.layer)][r.strength].append(abs(r.value))
    if not acc:
        return None
    cands = sorted(acc)
    layers = {c[1] for c in cands}
    series = {c: [1.0] + [_mean(acc[c][x]) for x in sorted(acc[c])] for c in cands}
    twins = _twins(series, layers)
    fig, ax = plt.subplots(figsize=(6.8, 4.4), dpi=110)
    try:
        for k, (c, col) in enumerate(zip(cands, _colours(len(cands)), strict=True)):
            xs = [0.0, *sorted(acc[c])]
            label = _label(c, layers) + twins.get(c, "")
            ax.plot(xs, series[c], color=col, label=label, ms=4, mfc="none", **_style(k))
        ax.set_xlabel("fraction of layers re-initialised (from the head down)")
        ax.set_ylabel("|Spearman| with the original map")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title("Cascading randomisation: maps should collapse", fontsize=10)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------ report


def _cases(records: Sequence[Record]) -> list[dict[str, Any]]:
    from fakelens.trust.runner import case_name

    out = []
    for r in records:
        if r.metric.startswith("case:"):
            cat = r.metric.split(":", 1)[1]
            out.append(
                {
                    "category": cat,
                    "severity": r.value,
                    "method": r.method,
                    "layer": r.layer,
                    "image": r.image,
                    "transform": r.transform,
                    "fill": r.fill,
                    "file": case_name(r.image, r.method, r.layer, cat),
                }
            )
    return out


def case_files(records: Iterable[Record]) -> set[str]:
    """The gallery strips (file names in ``cases/``) that ``records`` point at."""
    return {c["file"] for c in _cases(list(records))}


def left_out_note(left: dict[str, Any]) -> str:
    """One sentence on the records in the folder that this report leaves out ('' if none)."""
    parts = []
    if left.get("candidates"):
        parts.append(f"methods {', '.join(left['candidates'])}")
    if left.get("images"):
        parts.append(f"{left['images']} other image(s)")
    if not parts:
        return ""
    return (
        f"records.csv also holds {' and '.join(parts)} from an earlier run into this folder, not asked for "
        "by this command: they are left out of this report (and kept for a resume)."
    )


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return None
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def write_report(
    out: Path,
    records: Sequence[Record],
    run_info: dict[str, Any],
    config: Any,
    info: dict[str, Any] | None = None,
    *,
    keep_cases: Collection[str] = (),
) -> dict[str, Any]:
    """Write ``summary.json``, ``report.md``, ``plots/*.png`` and ``gallery.html`` into ``out``; return the
    summary. ``records``: what the report covers; ``keep_cases``: strips in ``cases/`` to keep although the
    report does not show them (those of records in the folder that this report leaves out)."""
    info = info or {}
    criteria: Criteria = config.criteria
    agg = add_corner_thresholds(aggregate(records), criteria)
    images = sorted({r.image for r in records if r.metric == DONE})
    methods = sorted({r.method for r in records if r.metric == DONE})
    rec = recommend(agg, criteria, info.get("skipped_methods"))
    plots_dir = out / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    plots = [
        plot_equivariance(records, plots_dir / "equivariance_vs_strength.png"),
        plot_border(records, plots_dir / "border_vs_fill.png"),
        _bars(
            agg,
            FAMILIES["localisation"],
            "Localisation against the ground-truth masks",
            plots_dir / "localisation.png",
            "score in [0, 1] (pixel AUROC: ½ = chance)",
            ylim=(0, 1.05),
        ),
        _bars(
            agg,
            [m for m in FAMILIES["faithfulness"] if m.key.startswith(("deletion_", "insertion_"))],
            "Deletion / insertion AUC of p(fake)",
            plots_dir / "faithfulness.png",
            "area under the p(fake) curve",
        ),
        plot_randomisation(records, plots_dir / "randomisation.png"),
    ]
    made = [p for p in plots if p is not None]
    ctl_md, ctl_json = controls_table(records)
    summary: dict[str, Any] = {
        "model": run_info.get("model"),
        "images": len(images),
        "methods": methods,
        "command": run_info.get("command"),
        "transforms": run_info.get("family"),
        "recommendation": rec,
        "families": family_tables(agg),
        "controls": ctl_json,
        "score_flips": score_flips(records),
        "skipped_images": info.get("skipped_images", {}),
        "skipped_methods": info.get("skipped_methods", {}),
        "left_out": info.get("left_out", {"candidates": [], "images": 0}),
        "criteria": criteria.to_dict(),
        "plots": [str(p.relative_to(out)) for p in made],
    }
    cases = _cases(records)
    gallery = write_gallery(out, cases, summary, plots=made)
    if (out / "cases").is_dir():
        keep = select_cases(cases) + [{"file": f} for f in keep_cases]
        prune_cases(out / "cases", keep)
    summary["gallery"] = str(gallery.relative_to(out))
    controls = ", ".join(f for f in config.fills if f != "black")
    md = [
        f"# Trust report: {run_info.get('model')}",
        "",
        f"{len(images)} images, methods {', '.join(methods)}, {len(run_info.get('family') or [])} transforms "
        f"(+ identity) with black fill; controls: {controls or 'none'}.",
        "",
    ]
    if run_info.get("command"):
        md += ["Made with:", "", "```", str(run_info["command"]), "```", ""]
    note = left_out_note(summary["left_out"])
    if note:
        md += [note, ""]
    md += [
        "## Recommendation",
        "",
        *rec["text"].split("\n"),
        "",
        overall_table(agg, rec),
        "## Ranked tables",
        "",
        markdown_tables(agg),
    ]
    if ctl_md:
        md += [ctl_md]
    if made:
        md += ["## Plots", ""] + [f"![{p.stem}]({p.relative_to(out)})" for p in made] + [""]
    md += [f"Worst cases for a person to look at: [{gallery.name}]({gallery.name}).", ""]
    if summary["skipped_images"]:
        md += (
            ["Skipped images:", ""]
            + [f"- `{k}`: {why}" for k, why in summary["skipped_images"].items()]
            + [""]
        )
    atomic_write_text(out / "report.md", "\n".join(md))
    atomic_write_text(out / "summary.json", json.dumps(_jsonable(summary), indent=2))
    out_summary: dict[str, Any] = _jsonable(summary)
    return out_summary
