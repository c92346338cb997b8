"""A short plain-language reading of one analysis, generated from its numbers only.

The reading says what the models decided and how firmly, where their heatmaps put their mass (by facial
region when a face was found, else by position in the image), which heatmaps passed the robustness checks and
which did not, and whether the models look at the same place. It is honest about weak evidence: a split
vote, a score near the threshold, flat maps, maps that fail the checks and models whose maps disagree are all
said in words, never smoothed over.

Wording thresholds (in one place, so the report's legend can quote them):

- margin of a score from the threshold: < 0.10 *close to the threshold*, < 0.25 *moderate*, else *clear*;
- a map *concentrates on* a facial region (or on the face as a whole) when that region holds at least
  :data:`MIN_MASS` of the mass and at least :data:`LIFT` times its share of the pixels; otherwise the map is
  described by where in the image half of its mass lies, and the face's share is given as a number;
- two models' maps *agree on where* at Pearson correlation ≥ 0.6, *partly agree* at ≥ 0.3, else they look
  at different places;
- an image shrunk by :data:`SHRUNK` or more to fit a model's input gets a warning: shrinking erases the
  pixel-level traces (resampling, JPEG grid, upsampling) that detectors trained on native-resolution crops use
  (measured for the shipped ensemble: ``benchmarks/eval_tiling.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from fakelens.analysis import Analysis, HeatmapResult, ModelAnalysis
from fakelens.face_verdicts import FaceVerdict
from fakelens.report.regions import REGION_LABELS, FaceRegions, RegionShares
from fakelens.trust.criteria import DEFAULT_CRITERIA, against

__all__ = [
    "LIFT",
    "SHRUNK",
    "Focus",
    "equivariance_text",
    "focus",
    "heatmap_shares",
    "map_correlation",
    "margin_word",
    "pct",
    "peak_to_mean_text",
    "read_analysis",
    "reading_sections",
]

LIFT = 1.5
MIN_MASS = 0.25
CLOSE, MODERATE = 0.10, 0.25
AGREE, PARTLY = 0.6, 0.3
SHRUNK = 1.5  # original pixels per input pixel from which the scale warning is given

ShareKey = tuple[str, str]  # (model name, method)


def pct(x: float) -> str:
    """0.623 → '62 %' (one decimal under 10 %, '<0.1 %' for a small non-zero share)."""
    v = 100.0 * x
    if 0 < v < 0.05:
        return "<0.1 %"
    return f"{v:.1f} %" if 0 < v < 9.95 else f"{v:.0f} %"


def threshold_text(t: float) -> str:
    """A threshold with the decimals it has (0.5 → '0.50', 0.533 → '0.533'), so that a score shown beside it
    is never on the wrong side of what is printed."""
    two = f"{t:.2f}"
    return two if float(two) == t else f"{t:.6f}".rstrip("0")


def prob(x: float, threshold: float = 0.5) -> str:
    """A probability to 2 decimals, more where it would round to its ``threshold`` (0.4994 is not '0.50')."""
    return "n/a" if not math.isfinite(x) else against(x, threshold)


def equivariance_text(mean: Any, worst: Any = None, cut: float = DEFAULT_CRITERIA.min_equivariance) -> str:
    """'mean 0.85 (passes at ≥ 0.80); worst view 0.59': the mean is what is judged against ``cut``, and
    neither number is rounded onto the cut (0.796 is not '0.80')."""

    def num(v: Any) -> str:
        return "–" if not isinstance(v, (int, float)) or not math.isfinite(v) else against(float(v), cut)

    text = f"mean {num(mean)} (passes at ≥ {threshold_text(cut)})"
    return text if worst is None else f"{text}; worst view {num(worst)}"


def peak_to_mean_text(value: Any, flat: bool = False) -> str:
    """A map's peak over its mean to one decimal; 'n/a (flat)' for a map with no positive mass (its ratio is
    0 or undefined, not a measure of concentration); a flat map with mass keeps its number, marked flat."""
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        return "n/a (flat)"
    return f"{value:.1f}" + (" (flat)" if flat else "")


def margin_word(p: float, threshold: float) -> str:
    """How far a score sits from the threshold, in words (see the module docstring)."""
    d = abs(p - threshold)
    return (
        "close to the threshold" if d < CLOSE else "a moderate margin" if d < MODERATE else "a clear margin"
    )


def _names(names: Sequence[str]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def heatmap_shares(a: Analysis, regions: FaceRegions | None) -> dict[ShareKey, RegionShares]:
    """Region shares of every heatmap of ``a`` (empty without faces)."""
    if regions is None:
        return {}
    return {
        (m.name, method): regions.shares(h.map, h.valid) for m in a.models for method, h in m.heatmaps.items()
    }


@dataclass(frozen=True)
class Focus:
    """Where one map puts half of its mass: the share of the valid pixels that holds it (``area50``: 0.5 for
    a uniform map, small for a concentrated one) and where in the image they lie, in words (one place, or up
    to three for a map with separate hot spots)."""

    area50: float
    where: str


_ROWS = ("upper", "middle", "lower")
_COLS = ("left", "centre", "right")


FOCUS_MAX_PIXELS = 1 << 20
"""A larger map is block-averaged to about this many pixels before :func:`focus` (which sorts every value): a
heatmap is upsampled from a coarse grid, so its area share and mass centre in words do not change, and a
16-MP image's report took 18 s more without it."""


def focus(heatmap: np.ndarray, valid: np.ndarray | None = None) -> Focus | None:
    """The :class:`Focus` of a non-negative map; ``None`` when it has no mass."""
    v = np.ones(heatmap.shape, bool) if valid is None else np.asarray(valid, bool)
    if heatmap.size > FOCUS_MAX_PIXELS:
        f = math.ceil(math.sqrt(heatmap.size / FOCUS_MAX_PIXELS))
        size = (max(1, heatmap.shape[1] // f), max(1, heatmap.shape[0] // f))
        heatmap = cv2.resize(np.nan_to_num(heatmap.astype(np.float32)), size, interpolation=cv2.INTER_AREA)
        v = cv2.resize(v.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.5
    vals = np.clip(np.nan_to_num(heatmap.astype(np.float64)), 0, None)[v]
    total = float(vals.sum())
    if total <= 0 or vals.size == 0:
        return None
    order = np.argsort(vals)[::-1]
    cum = np.cumsum(vals[order])
    k = int(np.searchsorted(cum, 0.5 * total)) + 1
    top = np.zeros(vals.size, bool)
    top[order[:k]] = True
    ys, xs = np.nonzero(v)
    w = vals * top
    # the top half of the mass by ninths of the image: the fewest ninths that hold most of it, named (a
    # mass centre would name the empty middle of two hot spots)
    cells = np.zeros(9)
    np.add.at(cells, (ys * 3 // heatmap.shape[0]) * 3 + xs * 3 // heatmap.shape[1], w)
    cells /= cells.sum()
    order = np.argsort(cells)[::-1]
    picked = order[: int(np.searchsorted(np.cumsum(cells[order]), WHERE_SHARE)) + 1][:3]
    names = [_cell_name(int(i) // 3, int(i) % 3) for i in sorted(picked, key=lambda i: -cells[i])]
    return Focus(k / vals.size, " and the ".join(names))


WHERE_SHARE = 0.6
""":func:`focus` names the fewest ninths of the image (at most 3) that hold this share of the top half of the
mass."""


def _cell_name(row: int, col: int) -> str:
    r, c = _ROWS[row], _COLS[col]
    if r == "middle":
        return "centre" if c == "centre" else f"{c} side"
    return f"{r} {c}"


def map_correlation(a: HeatmapResult, b: HeatmapResult) -> float | None:
    """Pearson correlation of two maps of the same image over the pixels valid in both."""
    if a.map.shape != b.map.shape:
        return None
    v = np.asarray(a.valid, bool) & np.asarray(b.valid, bool)
    x, y = a.map[v].astype(np.float64), b.map[v].astype(np.float64)
    if x.size < 2 or x.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


# ------------------------------------------------------------------------------------------- sentences
def _untrained_sentence(a: Analysis) -> str:
    """A warning first, when a member is an architecture with a random real/fake head."""
    names = [m.name for m in a.models if m.untrained]
    if not names:
        return ""
    verb = "is an untrained architecture" if len(names) == 1 else "are untrained architectures"
    return (
        f"{_join(names)} {verb} (a random real/fake head, never trained): "
        f"{'its' if len(names) == 1 else 'their'} scores below mean nothing. "
    )


def _blank_sentence(a: Analysis) -> str:
    """A warning first, when the image is uniform: the models had nothing to judge."""
    if not a.blank:
        return ""
    return (
        f"The image is blank (its grey levels vary by {a.texture:.1f} of 255): it holds no content and no "
        "trace of resampling or compression, so the scores below say nothing about manipulation. "
    )


def _verdict_paragraph(a: Analysis) -> str:
    scored = [m for m in a.models if math.isfinite(m.fake_probability)]
    thr = f"a threshold of {threshold_text(a.threshold)}"
    if not scored:
        return "No model gave a fake probability (none is a real/fake detector), so there is no verdict."
    fakes = [m for m in scored if m.verdict == "fake"]
    reals = [m for m in scored if m.verdict != "fake"]
    ens = f"ensemble {prob(a.fake_probability, a.threshold)}"
    if len(scored) == 1:
        m = scored[0]
        return (
            f"{m.name} calls this image {m.verdict} (p(fake) {prob(m.fake_probability, m.threshold)} "
            f"against a threshold of {threshold_text(m.threshold)}, "
            f"{margin_word(m.fake_probability, m.threshold)})."
        )
    each = ", ".join(f"{m.name} {prob(m.fake_probability, m.threshold)}" for m in scored)
    if not fakes or not reals:
        who = "Both models" if len(scored) == 2 else f"All {len(scored)} models"
        text = f"{who} call this image {a.verdict} ({each}; {ens} against {thr})."
        mw = margin_word(a.fake_probability, a.threshold)
        if mw == "close to the threshold":
            text += " The ensemble score is close to the threshold: weak evidence either way."
        elif mw == "a clear margin" and all(
            abs(m.fake_probability - m.threshold) >= MODERATE for m in scored
        ):
            text += " Each model is clear of the threshold."
        return text
    fake_part = ", ".join(f"{m.name} ({prob(m.fake_probability, m.threshold)})" for m in fakes)
    real_part = ", ".join(f"{m.name} ({prob(m.fake_probability, m.threshold)})" for m in reals)
    verb_f = "calls" if len(fakes) == 1 else "call"
    verb_r = "calls" if len(reals) == 1 else "call"
    rule = {"mean": "weighted mean", "logit_mean": "mean log-odds", "max": "maximum"}.get(a.rule, a.rule)
    return (
        f"The models disagree: {fake_part} {verb_f} it fake, {real_part} {verb_r} it real. "
        f"The ensemble ({rule} of the scores{', then calibrated' if a.calibrated else ''}) gives "
        f"{prob(a.fake_probability, a.threshold)} against {thr}, "
        f"{margin_word(a.fake_probability, a.threshold)}, so its verdict is {a.verdict} — "
        "with the members split, treat this verdict as weak."
    )


def _scale_paragraph(a: Analysis) -> str:
    """How the models read the image: a warning when it was shrunk to fit (their smallest scale), and the
    native tiles read instead, with the share of pixels they left unread."""
    scales = [m.scale for m in a.models if m.scale > 0]
    factor = 1.0 / min(scales) if scales else 1.0
    parts: list[str] = []
    tiled = [m for m in a.models if m.tiles > 1]
    if tiled:
        names = ", ".join(m.name for m in tiled)
        counts = sorted({m.tiles for m in tiled})
        how = "overlapping tiles" if not a.partial else "tiles spread over it with gaps between them"
        parts.append(
            f"{names} read the image ({a.width} × {a.height} px) at its own pixel grid, as "
            f"{' or '.join(str(c) for c in counts)} {how} of their input size, instead of "
            "shrinking it: their score is the mean over the tiles and their heatmaps join the tiles' maps."
        )
        graded = [(m.name, box) for m in tiled if (box := _badge_tile(m)) is not None]
        if graded:
            where = "; ".join(
                f"{n} x {a0:.0f}–{a1:.0f}, y {b0:.0f}–{b1:.0f}" for n, (a0, b0, a1, b1) in graded
            )
            parts.append(f"Their robustness checks graded the most fake-looking tile ({where}).")
        if a.coverage < 1.0 and a.tile_capped:
            parts.append(
                f"The tile limit left {pct(1.0 - a.coverage)} of the pixels unread (shown as outside the "
                "image in the heatmaps): the verdict judges only what was read; raise --max-tiles to read "
                "them all."
            )
    if a.coverage < 1.0 and not a.tile_capped:
        cropped = ", ".join(m.name for m in a.models if m.coverage < 1.0 and m.tiles == 1)
        parts.append(
            f"{cropped} crop{'s' if ',' not in cropped else ''} the centre of the image to fill "
            f"{'its' if ',' not in cropped else 'their'} input: {pct(1.0 - a.coverage)} of the pixels, the "
            "borders, went unread (shown as outside the image in the heatmaps), and the verdict judges only "
            "what was read."
        )
    if a.small:
        shape = "thin" if 4 * min(a.width, a.height) <= max(a.width, a.height) else "small"
        parts.append(
            f"The image ({a.width} × {a.height} px) is {shape}: it gave the models only "
            f"{pct(a.pixel_fraction)} as many pixels as their input holds (the rest is padding or "
            "enlargement). They learnt from crops that fill their input, so on this little evidence their "
            "verdict says little either way."
        )
    if a.transparent:
        parts.append(
            f"{pct(a.transparent)} of the image is fully transparent: the models saw it as white (what "
            "fakelens composites transparency onto), which can sway their score; the heatmaps leave it out."
        )
    if a.frames > 1:
        parts.append(f"The file holds {a.frames} frames or pages; only the first was analysed.")
    if factor >= SHRUNK:
        parts.append(
            f"The image ({a.width} × {a.height} px) was shrunk {factor:.1f}× to fit the models' input. "
            "Shrinking erases pixel-level traces — resampling, a second JPEG grid, upsampling — that "
            "detectors trained on native-resolution crops rely on, so a real verdict says little about them."
        )
    return " ".join(parts)


def _badge_tile(m: ModelAnalysis) -> list[float] | None:
    """The ``(left, top, right, bottom)`` box of the tile a tiled model's badges graded, if recorded."""
    for h in m.heatmaps.values():
        if h.robustness is not None and isinstance(h.robustness.get("tile"), list):
            return [float(v) for v in h.robustness["tile"]]
    return None


def _describe_map(h: HeatmapResult, shares: RegionShares | None, faces: int = 1) -> tuple[str, str]:
    """(grouping key, clause) saying where one map puts its mass (``faces``: how many the shares cover)."""
    the_face = "the face" if faces <= 1 else f"the {faces} faces together"
    if h.summary.get("flat"):
        return "flat", "is flat (near-uniform), so it points nowhere"
    if shares is not None and shares.mass is not None:
        top = shares.top()
        assert top is not None
        if (shares.lift(top) or 0.0) >= LIFT and shares.mass[top] >= MIN_MASS:
            nums = f"{pct(shares.mass[top])} of the mass on {pct(shares.area[top])} of the pixels"
            if top == "outside":
                return top, f"concentrates outside the face{'s' if faces > 1 else ''} ({nums})"
            return top, f"concentrates on the {REGION_LABELS[top]} ({nums})"
        fm, fa = 1.0 - shares.mass["outside"], 1.0 - shares.area["outside"]
        face = [r for r in shares.mass if r != "outside" and shares.area[r] > 0]
        best = max(face, key=lambda r: shares.mass[r] if shares.mass else 0.0, default=None)
        if best is not None and fa > 0 and fm / fa >= LIFT and fm >= MIN_MASS:
            return "face", (
                f"concentrates on {the_face} ({pct(fm)} of the mass on {pct(fa)} of the pixels), most of it "
                f"on the {REGION_LABELS[best]} ({pct(shares.mass[best])} of the mass)"
            )
    f = focus(h.map, h.valid)
    if f is None:
        return "flat", "has no positive mass, so it points nowhere"
    if f.area50 >= 0.3:
        key, clause = "spread", f"is spread over the image (half of its mass covers {pct(f.area50)} of it)"
    else:
        key = f.where
        clause = f"concentrates in the {f.where} of the image (half of its mass on {pct(f.area50)} of it)"
    if shares is not None and shares.mass is not None:
        fm, fa = 1.0 - shares.mass["outside"], 1.0 - shares.area["outside"]
        lift = fm / fa if fa > 0 else 1.0
        rel = "more than" if lift >= LIFT else "less than" if lift <= 1 / LIFT else "about"
        rel += " their area's share" if faces > 1 else " its area's share"
        gets = "gets" if faces <= 1 else "get"
        clause += f"; {the_face} {gets} {pct(fm)} of the mass on {pct(fa)} of the pixels, {rel}"
    return key, clause


def _join(items: Sequence[str]) -> str:
    return _names(list(items))


def _likewise(methods: Sequence[str]) -> str:
    """'; likewise the hirescam map' for the other members of a group described by its first method."""
    rest = methods[1:]
    if not rest:
        return ""
    return f"; likewise the {_join(rest)} map{'s' if len(rest) > 1 else ''}"


def _where_paragraph(a: Analysis, shares: Mapping[ShareKey, RegionShares], faces: int = 1) -> str:
    sentences: list[str] = []
    for m in a.models:
        if not m.heatmaps:
            continue
        groups: dict[str, list[str]] = {}
        described: dict[str, str] = {}
        for meth, h in m.heatmaps.items():
            key, described[meth] = _describe_map(h, shares.get((m.name, meth)), faces)
            groups.setdefault(key, []).append(meth)
        clauses = [f"the {ms[0]} map {described[ms[0]]}{_likewise(ms)}" for ms in groups.values()]
        if len(clauses) == 1:
            first = next(iter(groups.values()))[0]
            rest = _likewise(next(iter(groups.values())))
            sentences.append(f"The {first} map of {m.name} {described[first]}{rest}.")
        else:
            sentences.append(f"For {m.name}, {'; '.join(clauses)}.")
        negative = {  # a class-agnostic map has no sign for fake or real
            k: float(h.summary.get("stats", {}).get("negative_mass", 0.0))
            for k, h in m.heatmaps.items()
            if not _class_agnostic(k)
        }
        most = max(negative, key=lambda k: negative[k], default=None)
        if most is not None and negative[most] >= 0.5:  # the colours leave the larger part out
            sentences.append(
                f"Most of the signed evidence in {m.name}'s {most} map ({pct(negative[most])}) points to "
                "real and is not drawn: the colours show only its evidence for fake."
            )
    if not sentences:
        return ""
    text = " ".join(sentences)
    agnostic = sorted({k for m in a.models for k in m.heatmaps if _class_agnostic(k)})
    if any(m.verdict == "real" for m in a.models if any(k not in agnostic for k in m.heatmaps)):
        text += (
            f" The {'class-specific ' if agnostic else ''}maps show evidence for 'fake': for a model that "
            "calls the image real they show its weaker fake evidence, not a manipulation."
        )
    if agnostic:
        many = len(agnostic) > 1
        text += (
            f" The {_join(agnostic)} map{'s are' if many else ' is'} class-agnostic: "
            f"{'they show' if many else 'it shows'} where the model is active, not evidence for fake."
        )
    return text


def _class_agnostic(method: str) -> bool:
    """Whether ``method``'s map ignores the target (Eigen-CAM, attention, rollout); False when unknown."""
    from fakelens.explain.engine import class_agnostic

    try:
        return class_agnostic(method)
    except Exception:  # a method this version does not know (a stored analysis): class-specific
        return False


_FLAG_WORDS = {
    "flat": "came out flat",
    "corner-peaks": "peaked in a corner",
    "ignores-weights": "barely changed when the model's weights were randomised",
}


def _reasons(badge: Mapping[str, Any]) -> str:
    flags = badge.get("flags") or {}
    words = []
    for f in flags:
        if f == "not-equivariant":
            eq = float(badge.get("equivariance", math.nan))
            eq_text = against(eq, DEFAULT_CRITERIA.min_equivariance)  # never rounded onto the cut
            words.append(
                f"did not move with the image (equivariance {eq_text}, worst under {badge.get('worst_view')})"
            )
        elif f == "leaks-into-fill" and badge.get("leak_worst"):
            w = badge["leak_worst"]
            mass, area = pct(float(w["border_mass"])), pct(float(w["fill_fraction"]))
            words.append(
                f"put more of its mass on the black fill than the fill's area in "
                f"{pct(float(badge['leak_rate']))} of the shifted views (worst, {w['view']}: "
                f"{mass} of the mass on {area} of the pixels)"
            )
        elif f == "leaks-into-fill":  # a badge stored before the rate was kept: its flag's own words
            words.append(f"leaned on the black fill ({flags[f]})")
        else:
            words.append(_FLAG_WORDS.get(str(f), f"was flagged {f}"))
    return " and ".join(words)


def _trust_paragraph(a: Analysis) -> str:
    per_model: list[str] = []
    n_total = n_passed = n_unchecked = 0
    for m in a.models:
        passed: list[str] = []
        failed: dict[str, list[str]] = {}
        for meth, h in m.heatmaps.items():
            n_total += 1
            b = h.robustness
            if b is None:
                n_unchecked += 1
            elif "error" in b:
                failed.setdefault(f"could not be checked ({b['error']})", []).append(meth)
            elif b.get("grade") == "ok":
                passed.append(meth)
            else:
                key = ",".join(sorted(b.get("flags") or {}))
                failed.setdefault(key, []).append(meth)
        n_passed += len(passed)
        parts = []
        if passed:
            s = "s" if len(passed) > 1 else ""
            parts.append(f"the {_join(passed)} map{s} passed the robustness checks")
        for key, methods in failed.items():
            s = "s" if len(methods) > 1 else ""
            if key.startswith("could not"):
                parts.append(f"the {_join(methods)} map{s} {key}")
                continue
            b = m.heatmaps[methods[0]].robustness
            assert b is not None
            parts.append(f"the {methods[0]} map {_reasons(b)}{_likewise(methods)}")
        if parts:
            prefix = f"For {m.name}, " if len(a.models) > 1 else ""
            text = prefix + "; ".join(parts)
            per_model.append(text[0].upper() + text[1:])
    if n_total == 0:
        return ""
    if n_unchecked == n_total:
        return "The heatmaps were not checked for robustness (--no-robustness): read them as unverified."
    text = ". ".join(per_model) + "."
    if n_passed == 0:
        text += (
            " None of the heatmaps passed: the verdict rests on the scores alone, and the maps should not "
            "be read as the location of a manipulation."
        )
    elif n_passed < n_total - n_unchecked:
        text += " Read the flagged maps with care."
    return text


def _same_maps(a: Analysis) -> str:
    """Methods whose maps of one model are identical (Grad-CAM and HiResCAM on a layer followed by global
    average pooling and a linear head: the gradient is the same at every position): one piece of evidence."""
    out = []
    for m in a.models:
        groups: list[list[str]] = []
        for k, h in m.heatmaps.items():
            for g in groups:
                first = m.heatmaps[g[0]]
                if (
                    first.summary.get("stats")
                    == h.summary.get("stats")  # cheap: the same raw map, same stats
                    and first.map.shape == h.map.shape
                    and np.allclose(first.map, h.map, rtol=0.0, atol=1e-6)
                ):
                    g.append(k)
                    break
            else:
                groups.append([k])
        out += [f"for {m.name}, {_names(g)} give the same map" for g in groups if len(g) > 1]
    if not out:
        return ""
    text = "; ".join(out) + " (their formulas coincide on this model): one piece of evidence, not two."
    return text[0].upper() + text[1:]


def _agreement_paragraph(a: Analysis) -> str:
    same = _same_maps(a)
    usable = [m for m in a.models if any(not h.summary.get("flat") for h in m.heatmaps.values())]
    if len(usable) < 2:
        return same
    out = []
    for i, m1 in enumerate(usable):
        for m2 in usable[i + 1 :]:
            common = [k for k in m1.heatmaps if k in m2.heatmaps and not m1.heatmaps[k].summary.get("flat")]
            common = [k for k in common if not m2.heatmaps[k].summary.get("flat")]
            k1 = common[0] if common else next(k for k, h in m1.heatmaps.items() if not h.summary.get("flat"))
            k2 = common[0] if common else next(k for k, h in m2.heatmaps.items() if not h.summary.get("flat"))
            r = map_correlation(m1.heatmaps[k1], m2.heatmaps[k2])
            if r is None:
                continue
            maps = (
                f"their {k1} maps" if k1 == k2 else f"the {k1} map of {m1.name} and the {k2} map of {m2.name}"
            )
            if r >= AGREE:
                word = "agree on where the evidence is"
            elif r >= PARTLY:
                word = "partly agree on where the evidence is"
            else:
                word = "look at different places"
            out.append(f"{m1.name} and {m2.name} {word}: {maps} correlate at {r:.2f}")
    if not out:
        return same
    return " ".join(filter(None, ["; ".join(out) + " (Pearson, 1 = same map).", same]))


def _errors_paragraph(a: Analysis) -> str:
    out = []
    for m in a.models:
        for meth, msg in m.errors.items():
            short = msg.split("; ")[0].split(". ")[0].rstrip(".")
            out.append(f"{meth} could not run on {m.name} ({short})")
    if not out:
        return ""
    text = "; ".join(out) + "."
    return text[0].upper() + text[1:]


def _face_sentence(regions: FaceRegions | None, faces_checked: bool) -> str:
    if not faces_checked:
        return ""
    if regions is None:
        return (
            "No face was found, so the heatmaps are described by position in the image, not by face region."
        )
    n = len(regions.faces)
    text = f"{n} face{'s' if n > 1 else ''} found ({regions.detector})"
    if regions.estimated:
        text += "; its landmarks are estimated from the box, so the facial regions are approximate"
    return text + "."


def _faces_paragraph(a: Analysis, verdicts: Sequence[FaceVerdict]) -> str:
    """Each face's own verdict (numbered left to right, as in the report's face picture), and a warning when a
    face disagrees with the image as a whole."""
    if not verdicts:
        return ""
    each = [
        f"face {k} {v.verdict} ({prob(v.fake_probability, a.threshold)})"
        for k, v in enumerate(verdicts, start=1)
    ]
    text = f"Judged on a window around it, {_join(each)}."
    odd = [k for k, v in enumerate(verdicts, start=1) if v.verdict != a.verdict]
    if not odd:
        subject = "Every face agrees" if len(verdicts) > 1 else "The face agrees"
        return text + f" {subject} with the whole image."
    which = _join([f"face {k}" for k in odd]).capitalize()
    verb = "reads" if len(odd) == 1 else "read"
    if a.verdict == "real":
        return text + (
            f" {which} {verb} fake while the whole image reads real: an edit confined to a face weighs "
            "little in the image's score, so look closely at it."
        )
    return text + f" {which} {verb} real while the whole image reads fake."


def reading_sections(
    a: Analysis,
    regions: FaceRegions | None = None,
    *,
    faces_checked: bool = False,
    shares: Mapping[ShareKey, RegionShares] | None = None,
    face_verdicts: Sequence[FaceVerdict] = (),
) -> list[tuple[str, str]]:
    """(heading, paragraph) pairs: verdict, each face's own verdict, where the maps point (with the face
    note), robustness, agreement of the models' maps, methods that could not run; empty paragraphs left
    out."""
    sh = heatmap_shares(a, regions) if shares is None else shares
    n_faces = len(regions.faces) if regions is not None else 1
    where = " ".join(
        p for p in (_face_sentence(regions, faces_checked), _where_paragraph(a, sh, n_faces)) if p
    )
    sections = [
        ("Verdict", _blank_sentence(a) + _untrained_sentence(a) + _verdict_paragraph(a)),
        ("Scale", _scale_paragraph(a)),
        ("Faces", _faces_paragraph(a, face_verdicts)),
        ("Where", where),
        ("Robustness", _trust_paragraph(a)),
        ("Agreement", _agreement_paragraph(a)),
        ("Not run", _errors_paragraph(a)),
    ]
    return [(k, v) for k, v in sections if v]


def read_analysis(
    a: Analysis,
    regions: FaceRegions | None = None,
    *,
    faces_checked: bool = False,
    shares: Mapping[ShareKey, RegionShares] | None = None,
    face_verdicts: Sequence[FaceVerdict] = (),
) -> list[str]:
    """Paragraphs of plain text (see :func:`reading_sections`); ``faces_checked``: face detection ran."""
    sections = reading_sections(
        a, regions, faces_checked=faces_checked, shares=shares, face_verdicts=face_verdicts
    )
    return [p for _, p in sections]
