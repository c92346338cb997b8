"""Splits that keep people and source photographs apart between train, validation and test.

Photos are linked when they share a *photo group* (the same photograph in several files: stereo pairs, crops,
bursts) or a *person*. Linked photos form one component (union–find), and whole components are dealt to the
splits, so no photo group and no person is ever in two splits. Deterministic from a seed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from fakelens.errors import ConfigError

__all__ = ["SPLITS", "SplitItem", "assign_splits", "check_disjoint"]

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class SplitItem:
    """One photograph: its key (e.g. pool path), its photo group, the people in it, its weight (what the
    fractions count) and its stratum (strata are balanced separately, e.g. ``faces`` and the rest)."""

    key: str
    group: str
    people: tuple[str, ...] = ()
    weight: float = 1.0
    stratum: str = ""


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _components(items: Sequence[SplitItem]) -> dict[str, list[SplitItem]]:
    uf = _UnionFind()
    for it in items:
        g = "g:" + it.group
        uf.find(g)
        for p in it.people:
            uf.union(g, "p:" + p)
    comps: dict[str, list[SplitItem]] = {}
    for it in items:
        comps.setdefault(uf.find("g:" + it.group), []).append(it)
    return comps


def assign_splits(
    items: Sequence[SplitItem],
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    names: Sequence[str] = SPLITS,
) -> dict[str, str]:
    """Map each item's key to a split name, dealing whole components (people ∪ photo groups).

    Within each stratum (a component takes the largest stratum of its items), components are dealt largest
    first (ties in a random order from a hash of ``(seed, component)``), each to the split furthest below its
    target share of that stratum's weight; ties go to the earlier split. So the largest component (e.g. a
    group photo session) lands in the largest split, photos with faces are spread over all splits when there
    are enough of them, and the seed reshuffles the many small components. With few large components the
    shares can only be approximate; a split can stay empty when there are fewer components than splits.
    """
    if len(fractions) != len(names) or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise ConfigError(
            f"split fractions {tuple(fractions)} must be non-negative, one per split {tuple(names)}"
        )
    keys = [it.key for it in items]
    if len(set(keys)) != len(keys):
        raise ConfigError("split items must have unique keys")
    total_f = float(sum(fractions))
    comps = _components(items)

    def stratum(root: str) -> str:
        return max(it.stratum for it in comps[root])

    def order(root: str) -> tuple[str, float, str]:
        weight = sum(it.weight for it in comps[root])
        return stratum(root), -weight, hashlib.sha256(f"{seed}\x00{root}".encode()).hexdigest()

    totals: dict[str, float] = {}
    for root in comps:
        totals[stratum(root)] = totals.get(stratum(root), 0.0) + sum(it.weight for it in comps[root])
    have = {st: [0.0] * len(names) for st in totals}
    out: dict[str, str] = {}
    for root in sorted(comps, key=order):
        st = stratum(root)
        w = sum(it.weight for it in comps[root])
        deficit = [fractions[i] / total_f * totals[st] - have[st][i] for i in range(len(names))]
        i = max(range(len(names)), key=lambda j: (deficit[j] - (0.0 if fractions[j] > 0 else 1e18), -j))
        have[st][i] += w
        for it in comps[root]:
            out[it.key] = names[i]
    return out


def check_disjoint(items: Iterable[SplitItem], split_of: dict[str, str]) -> list[str]:
    """Problems (empty list when none): a group or person found in more than one split."""
    seen: dict[str, set[str]] = {}
    for it in items:
        s = split_of[it.key]
        seen.setdefault("group " + it.group, set()).add(s)
        for p in it.people:
            seen.setdefault("person " + p, set()).add(s)
    return [f"{k} is in {sorted(v)}" for k, v in sorted(seen.items()) if len(v) > 1]
