"""The report's words: what it says must match how it ranks and what its criteria flag."""

from __future__ import annotations

import math

import pytest

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


@pytest.mark.parametrize(
    ("rs", "verb"),
    [(0.05, "collapse"), (0.2, "collapse"), (0.48, "weaken"), (0.5, "weaken"), (0.51, "survive")],
)
def test_randomisation_wording_matches_its_criterion(rs: float, verb: str) -> None:
    """|Spearman| 0.48 (a curve that rises from 0.13) was called a collapse; the flag fires above 0.5."""
    rec = recommend({("m", "l"): _agg(rand_spearman=rs)}, DEFAULT_CRITERIA)
    assert f"its maps {verb}" in rec["text"]
    assert ("ignores-weights" in rec["flags"]["m@l"]) is (verb == "survive")
