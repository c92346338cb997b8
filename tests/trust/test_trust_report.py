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


def test_views_where_the_model_changed_its_mind_are_counted_apart_from_the_method() -> None:
    """effnet-lite0 on a fake it misses (log-odds −4.1) swings to +4.7 across views: the low cosine there is
    the model changing its mind, and a view whose map vanished counts as cosine 0 — say both."""
    from fakelens.trust.records import Record
    from fakelens.trust.report import aggregate, family_tables, score_flips

    recs = []
    for image, s0, views in (("a.png", -4.1, [-3.0, 4.7, -1.0, 2.0]), ("b.png", 2.0, [1.5, 1.0, 3.0, 0.5])):

        def rec(transform: str, kind: str, metric: str, value: float, image: str = image) -> Record:
            return Record("m", image, "gradcam", "l", transform, kind, 1.0, "black", metric, value)

        recs += [rec("identity", "identity", "score", s0), rec("identity", "identity", "peak_to_mean", 3.0)]
        for i, s in enumerate(views):
            t = f"rotate({i})"
            vanished = image == "a.png" and i == 1
            recs += [
                rec(t, "rotate", "score", s),
                rec(t, "rotate", "eq_cosine", 0.0 if vanished else 0.9),
                rec(t, "rotate", "peak_to_mean", 0.0 if vanished else 3.0),
            ]
    a = aggregate(recs)[("gradcam", "l")]
    assert a["score_flip_rate"]["mean"] == pytest.approx(0.25)  # a: 2 of 4, b: none
    assert a["vanished_rate"]["mean"] == pytest.approx(0.125)  # a: 1 of 4
    row = family_tables({("gradcam", "l"): a})["equivariance"]["rows"][0]
    assert row["score_flip_rate"]["mean"] == pytest.approx(0.25)
    assert score_flips(recs) == {
        "gradcam@l": {"a.png": {"flipped": 2, "views": 4, "identity": -4.1, "lowest": -3.0, "highest": 4.7}}
    }
    text = recommend({("gradcam", "l"): a}, DEFAULT_CRITERIA)["text"]
    assert "score changes sign on 25.0 % of the views" in text and "map vanishes on 12.5 %" in text
