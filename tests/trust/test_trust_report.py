"""The report's words: what it says must match how it ranks and what its criteria flag."""

from __future__ import annotations

import math

from fakelens.trust.criteria import DEFAULT_CRITERIA
from fakelens.trust.report import overall_table, recommend

NAN = math.nan


def _agg(**means: float) -> dict[str, dict[str, float]]:
    return {k: {"mean": v, "ci": NAN, "n": 3} for k, v in means.items()}


def test_the_overall_table_says_fewer_flags_come_before_a_better_mean_rank() -> None:
    """The order is (flagged?, number of flags, mean rank): the text named only the first and the last."""
    agg = {
        # the better mean rank (3 families of 4), two flags (not equivariant, ignores the weights)…
        ("two", "l"): _agg(eq_cosine=0.7, flat_rate=0.1, rand_spearman=0.9, border_excess=-0.5),
        # …the worse one, one flag (not equivariant)
        ("one", "l"): _agg(eq_cosine=0.6, flat_rate=0.2, rand_spearman=0.1, border_excess=-0.4),
    }
    rec = recommend(agg, DEFAULT_CRITERIA)
    flags = {o["method"]: len(o["flags"]) for o in rec["order"]}
    assert flags == {"one": 1, "two": 2} and [o["method"] for o in rec["order"]] == ["one", "two"]
    text = " ".join(overall_table(agg, rec).split())
    assert "without flags first, then those with the fewest flags" in text
