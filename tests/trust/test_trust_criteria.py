"""The flag thresholds: each fires where its failure is and stays quiet on the usual grids."""

from __future__ import annotations

import pytest

from fakelens.trust.criteria import DEFAULT_CRITERIA


@pytest.mark.parametrize(
    ("grid", "rate", "flagged"),
    [
        ((3, 3), 1.0, True),  # resnet18 at 96 px: corners are 4 of 9 cells, 3× chance was out of reach
        ((3, 3), 0.6, False),  # above chance (44 %), not far above
        ((7, 7), 0.26, True),  # a stride-32 CNN at 224 px: as before (25 % floor, 3× chance = 24 %)
        ((7, 7), 0.24, False),
        ((14, 14), 0.111, False),  # a good method a little above chance on a ViT grid is no finding
        ((14, 14), 0.3, True),
        ((2, 2), 1.0, False),  # every cell is a corner: no power
    ],
)
def test_corner_peaks_fire_on_small_grids_and_not_on_good_methods(
    grid: tuple[int, int], rate: float, flagged: bool
) -> None:
    chance = 4 / (grid[0] * grid[1])
    flags = DEFAULT_CRITERIA.flags({"corner_argmax_rate": rate, "corner_chance": min(1.0, chance)})
    assert ("corner-peaks" in flags) is flagged, (grid, rate, flags)


def test_corner_threshold_is_an_odds_ratio_over_chance() -> None:
    c = DEFAULT_CRITERIA
    assert c.corner_threshold(4 / 9) == pytest.approx(3 * 0.8 / (1 + 3 * 0.8))  # odds 0.8 × 3 = 2.4
    assert c.corner_threshold(0.01) == c.max_corner_rate
    assert c.corner_threshold(1.0) == 1.0  # no power
    for chance in (0.01, 0.1, 0.3, 0.6, 0.9, 0.99):
        assert chance < c.corner_threshold(chance) < 1.0


def test_the_report_says_where_the_corner_check_has_no_power() -> None:
    from fakelens.trust.report import add_corner_thresholds, recommend

    def one(rate: float, chance: float) -> dict[str, dict[str, float]]:
        return {
            "corner_argmax_rate": {"mean": rate, "ci": float("nan"), "n": 2},
            "corner_chance": {"mean": chance, "ci": float("nan"), "n": 2},
        }

    agg = add_corner_thresholds({("cornercam", "l"): one(1.0, 4 / 9)}, DEFAULT_CRITERIA)
    assert agg[("cornercam", "l")]["corner_threshold"]["mean"] == pytest.approx(12 / 17)
    rec = recommend(agg, DEFAULT_CRITERIA)
    assert "corner-peaks" in rec["flags"]["cornercam@l"] and "flagged above 70.6 %" in rec["text"]
    agg = add_corner_thresholds({("m", "l"): one(1.0, 1.0)}, DEFAULT_CRITERIA)
    rec = recommend(agg, DEFAULT_CRITERIA)
    assert not rec["flags"]["m@l"] and "corner check has no power here" in rec["text"]
