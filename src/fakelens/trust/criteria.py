"""The thresholds that turn trust numbers into flags, shared by the badge, the ranking and the report.

Each flag names a failure a person can check by eye in the gallery:

- ``not-equivariant``: mean equivariance cosine below ``min_equivariance`` — the map does not move with the
  image;
- ``static``: undoing the warps raises that cosine by less than ``min_equivariance_gain`` on average — the
  map does no better than one that stays put while the image moves (a fixed pattern or a near-constant map
  scores a high cosine anyway); judged by the trust benchmark, not by the badge's four mild views;
- ``leaks-into-fill``: on black-fill views the map puts more mass on the fill than the fill's area
  (``border mass > fill fraction + border_margin``) in more than ``max_leak_rate`` of the views;
- ``corner-peaks``: the peak falls in a corner cell in more than ``max_corner_rate`` of the maps *and* the
  odds of a corner peak are more than ``corner_factor`` times the odds at chance — the method (or the model)
  has degenerated (see :meth:`Criteria.corner_threshold`);
- ``flat``: more than ``max_flat_rate`` of the maps are flat (no positive value or entropy > 0.995);
- ``ignores-weights``: after the cascading randomisation the map still correlates with the original
  (``|Spearman| > max_randomisation``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["DEFAULT_CRITERIA", "Criteria"]


def against(value: float, cut: float, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals, or more (up to 6) where it would round to ``cut``: 0.796 against
    0.80 reads '0.796', never '0.80 < 0.80'."""
    while digits < 6 and value != cut and f"{value:.{digits}f}" == f"{cut:.{digits}f}":
        digits += 1
    return f"{value:.{digits}f}"


@dataclass(frozen=True)
class Criteria:
    """Flag thresholds (see the module docstring)."""

    min_equivariance: float = 0.8
    min_equivariance_gain: float = 0.02
    border_margin: float = 0.01
    max_leak_rate: float = 0.25
    max_corner_rate: float = 0.25
    corner_factor: float = 3.0
    max_flat_rate: float = 0.25
    max_randomisation: float = 0.5

    def corner_threshold(self, chance: float) -> float:
        r"""The corner-peak rate above which ``corner-peaks`` fires, for a chance rate ``c`` (the corner
        cells' share of the grid): an odds ratio of ``f = corner_factor`` over chance, and at least
        ``max_corner_rate``:

        .. math:: \frac{r}{1-r} > f \cdot \frac{c}{1-c} \iff r > \frac{f c}{1 - c + f c}, \qquad
                  r > r_{\max}

        For small ``c`` (a 14×14 grid: c = 2 %) this is about ``f·c`` as before, and with the 25 % floor
        the same on any grid of 40 cells or more; unlike ``f·c`` it stays below 1 for every ``c < 1``, so
        the check keeps its power on small grids (a 3×3 grid, a stride-32 CNN at 96 px: c = 44 %, threshold
        71 %, where ``3·c`` = 133 % could never be reached). It is 1 — the check has no power — only where
        every cell is a corner cell (a grid of at most 2×2 cells)."""
        c = min(max(chance, 0.0), 1.0)
        odds = 1.0 if c >= 1.0 else self.corner_factor * c / (1.0 - c + self.corner_factor * c)
        return max(self.max_corner_rate, odds)

    def flags(self, s: dict[str, float]) -> dict[str, str]:
        """Flags for one method's aggregated numbers ``s`` (keys as in the ranking; missing keys are not
        judged), each with its reason in words."""
        out: dict[str, str] = {}
        eq = s.get("eq_cosine")
        if eq is not None and eq < self.min_equivariance:
            out["not-equivariant"] = (
                f"mean equivariance cosine {against(eq, self.min_equivariance)} < {self.min_equivariance:.2f}"
            )
        gain = s.get("eq_gain")
        if gain is not None and gain < self.min_equivariance_gain:
            out["static"] = (
                f"no better than a map that stays put: undoing the warps raises its cosine by only "
                f"{gain:+.3f} (< {self.min_equivariance_gain:.2f})"
            )
        leak = s.get("leak_rate")
        if leak is not None and leak > self.max_leak_rate:
            # the worst view where known (a badge): a mean over views can sit below the fill's area
            worst = "leak_worst_mass" in s
            mass, area = (
                (s["leak_worst_mass"], s.get("leak_worst_fill", math.nan))
                if worst
                else (s.get("border_mass", math.nan), s.get("fill_fraction", math.nan))
            )
            out["leaks-into-fill"] = (
                f"more mass on the black fill than its area in {leak:.0%} of the views "
                f"({'worst' if worst else 'mean'} {mass:.1%} of the mass on {area:.1%} of the pixels)"
            )
        rate = s.get("corner_argmax_rate")
        chance = s.get("corner_chance", 0.0)
        if rate is not None and rate > self.corner_threshold(chance):
            out["corner-peaks"] = (
                f"peak in a corner cell in {rate:.0%} of the maps (chance {chance:.1%}, "
                f"flagged above {self.corner_threshold(chance):.1%})"
            )
        flat = s.get("flat_rate")
        if flat is not None and flat > self.max_flat_rate:
            out["flat"] = f"{flat:.0%} of the maps are flat"
        rnd = s.get("rand_spearman")
        if rnd is not None and abs(rnd) > self.max_randomisation:
            out["ignores-weights"] = (
                f"Spearman {against(rnd, self.max_randomisation)} with the map of the randomised model "
                "(should collapse towards 0)"
            )
        if "flat" in out:  # a flat map has no movement to judge: its cosine of 0 is no second finding
            out.pop("not-equivariant", None)
            out.pop("static", None)
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_CRITERIA = Criteria()
