"""Splits keep photo groups and people apart, deterministically."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fakelens.data.splits import SPLITS, SplitItem, assign_splits, check_disjoint

items_st = st.lists(
    st.tuples(st.integers(0, 15), st.lists(st.integers(0, 10), max_size=3)),
    min_size=1,
    max_size=60,
).map(
    lambda xs: [SplitItem(f"p{i}", f"g{g}", tuple(f"person{p}" for p in ps)) for i, (g, ps) in enumerate(xs)]
)


@given(items_st, st.integers(0, 10))
def test_no_group_or_person_in_two_splits(items: list[SplitItem], seed: int) -> None:
    split_of = assign_splits(items, seed=seed)
    assert set(split_of) == {it.key for it in items}
    assert set(split_of.values()) <= set(SPLITS)
    assert check_disjoint(items, split_of) == []
    assert assign_splits(items, seed=seed) == split_of


def test_people_link_photos_across_groups() -> None:
    items = [
        SplitItem("a", "ga", ("obama",)),
        SplitItem("b", "gb", ("obama", "biden")),
        SplitItem("c", "gc", ("biden",)),
        *(SplitItem(f"x{i}", f"gx{i}") for i in range(40)),
    ]
    for seed in range(10):
        s = assign_splits(items, seed=seed)
        assert s["a"] == s["b"] == s["c"]


def test_fractions_are_roughly_met_with_many_groups() -> None:
    items = [SplitItem(f"k{i}", f"g{i}") for i in range(1000)]
    s = assign_splits(items, (0.7, 0.15, 0.15), seed=1)
    counts = {n: list(s.values()).count(n) for n in SPLITS}
    assert abs(counts["train"] - 700) <= 2 and abs(counts["val"] - 150) <= 2
    assert assign_splits(items, seed=2) != s  # the seed matters


def test_check_disjoint_reports_leaks() -> None:
    items = [SplitItem("a", "g", ("p",)), SplitItem("b", "h", ("p",))]
    assert check_disjoint(items, {"a": "train", "b": "test"}) == ["person p is in ['test', 'train']"]


def test_strata_spread_faces_over_splits() -> None:
    # one big group session with many faces, a few single portraits, many face-less photos
    items = [SplitItem(f"s{i}", "session", (), 4.0, "faces") for i in range(5)]
    items += [SplitItem(f"p{i}", f"portrait{i}", (f"person{i}",), 1.0, "faces") for i in range(8)]
    items += [SplitItem(f"x{i}", f"x{i}") for i in range(60)]
    s = assign_splits(items, seed=0)
    assert len({s[f"s{i}"] for i in range(5)}) == 1 and s["s0"] == "train"  # the largest lands in train
    face_splits = {s[it.key] for it in items if it.stratum == "faces"}
    assert face_splits == set(SPLITS)
    assert check_disjoint(items, s) == []
