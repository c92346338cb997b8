"""Fitting an ensemble's member weights and threshold on validation photos of a real-photo pool.

The photos are the members' recorded validation photos (``provenance.data.photos.val``) that no member trained
on; members without a record fall back to the pool's validation split. Every member scores the same forgeries
of those photos once; the ensemble's AUC under its rule is computed for every weight vector on a grid over
the simplex (step ``step``), and the weights are the **most even ones within one standard error of the best
AUC** (the "one-standard-error rule" of Breiman et al., *Classification and Regression Trees*, 1984, §3.4.3):
the standard error is the spread of the best weights' AUC over ``bootstrap`` resamples of the *photos* (a
photo's forgeries move together, so resampling pairs would understate it). With a validation set of a few
dozen photos, differences smaller than that are noise, and even weights are the better bet on photos nobody
has seen. A member that only adds noise still gets a small weight. The threshold is the fitted ensemble's
equal-error-rate threshold on the same scores.

With ``calibrate`` (the default) every member is first calibrated at its own equal-error-rate threshold
(:class:`~fakelens.models.calibration.Calibration`: that threshold → ½, temperature by maximum likelihood),
the weights are searched over the calibrated members, and the combined probability is calibrated the same
way, so the ensemble decides at ½ and its probabilities, and each member's, are frequencies on the
validation photos.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from fakelens.data.datasets import OnTheFlyForgeries
from fakelens.data.pool import load_pool, pool_splits
from fakelens.errors import ConfigError
from fakelens.models.base import InputSpec
from fakelens.models.calibration import Calibration
from fakelens.models.checkpoint import training_photos
from fakelens.models.ensemble import Ensemble
from fakelens.tiling import DEFAULT_MAX_TILES
from fakelens.train.evaluate import score_dataset
from fakelens.train.loop import calibration_problem, eer_calibration
from fakelens.train.metrics import auc_bootstrap, binary_metrics, calibration_metrics, eer

__all__ = ["MAX_GRID", "fit_ensemble", "photo_bootstrap_se", "simplex_grid", "validation_photos"]

MAX_GRID = 50_000  # weight vectors searched at most (each is one AUC over the validation scores)


def simplex_grid(members: int, step: float) -> np.ndarray:
    """All weight vectors with entries in ``{0, step, 2·step, …}`` that sum to 1: ``(G, members)``."""
    n = round(1.0 / step) if step > 0 else 0
    if members < 1 or n < 1 or abs(n * step - 1.0) > 1e-9:
        raise ConfigError(f"the weight step must divide 1 (e.g. 0.05, 0.1), got {step}")
    size = math.comb(n + members - 1, members - 1)
    if size > MAX_GRID:
        raise ConfigError(
            f"a weight step of {step} gives {size:,} weight vectors for {members} members (at most "
            f"{MAX_GRID:,}); use a coarser step"
        )
    rows = [c for c in itertools.product(range(n + 1), repeat=members - 1) if sum(c) <= n]
    return np.array([[*c, n - sum(c)] for c in rows], dtype=np.float64) / n


def photo_bootstrap_se(
    labels: np.ndarray, scores: np.ndarray, sources: Sequence[str] | None, rounds: int, seed: int = 0
) -> float:
    """Standard error of the AUC of ``scores`` over ``rounds`` bootstrap resamples of the photos (``sources``;
    without them, of the samples; :func:`~fakelens.train.metrics.auc_bootstrap`). 0 when ``rounds`` < 2."""
    if rounds < 2:
        return 0.0
    groups = sources if sources is not None and len(sources) == len(labels) else None
    se = auc_bootstrap(labels, scores, groups, rounds=rounds, seed=seed)["se"]
    return 0.0 if math.isnan(se) else float(se)


def validation_photos(
    member_specs: Sequence[str | os.PathLike[str]],
    pool: str | os.PathLike[str],
    split_fractions: Sequence[float] = (0.7, 0.15, 0.15),
) -> frozenset[str]:
    """sha256 of the photos to fit on: the members' validation photos that no member trained on (the pool's
    validation split when no member recorded its photos)."""
    seen = [training_photos(s) for s in member_specs]
    train = frozenset().union(*(t.train for t in seen))
    val = frozenset().union(*(t.val for t in seen))
    entries = load_pool(os.fspath(pool))
    in_pool = {e.sha256 for e in entries}
    if not val:
        splits = pool_splits(entries, split_fractions)
        val = frozenset(e.sha256 for e in entries if splits[e.path] == "val")
    photos = (val - train) & in_pool
    if not photos:
        raise ConfigError(
            f"no validation photos of {pool} to fit on: the members trained on all of them, or they are "
            "not in this pool"
        )
    return photos


def fit_ensemble(
    ensemble: Ensemble,
    member_specs: Sequence[str | os.PathLike[str]],
    pool: str | os.PathLike[str],
    *,
    pairs: int = 512,
    seed: int = 0,
    step: float = 0.05,
    forgery_size: int = 256,
    split_fractions: Sequence[float] = (0.7, 0.15, 0.15),
    batch_size: int = 32,
    workers: int = 0,
    device: torch.device | str = "cpu",
    bootstrap: int = 200,
    calibrate: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """Set ``ensemble.weights`` and ``ensemble.threshold`` (and with ``calibrate`` its calibrations) from
    forgeries of the validation photos (in place).

    Returns the record to keep with the ensemble: the photos' count, pairs, seed, step, the fitted weights,
    the validation metrics of the fitted ensemble, the AUC of each member alone and of equal weights and, when
    calibrated, the calibrations and the expected calibration error before and after.
    """
    if len(member_specs) != len(ensemble.members):
        raise ValueError(f"{len(member_specs)} member specs for {len(ensemble.members)} members")
    grid = simplex_grid(len(ensemble.members), step)  # a bad step fails before any scoring
    photos = validation_photos(member_specs, pool, split_fractions)
    everything = {e.sha256 for e in load_pool(os.fspath(pool))}

    def make(spec: InputSpec) -> OnTheFlyForgeries:
        return OnTheFlyForgeries(
            pool,
            None,
            seed,
            spec=spec,
            split="test",
            split_fractions=(0.0, 0.0, 1.0),  # every photo in one split, then all but the chosen left out
            exclude=everything - photos,
            pairs=pairs,
            size=forgery_size,
            fixed=True,
            with_info=True,
            max_tiles=DEFAULT_MAX_TILES,  # a native member reads its tiles, as inference does
        )

    res = score_dataset(
        ensemble, make, batch_size=batch_size, workers=workers, device=device, progress=progress
    )
    y = res["labels"]
    probs = torch.from_numpy(np.stack(list(res["members"].values()), axis=1)).float()
    ensemble.calibration = None
    names = list(res["members"])
    problems = {  # shown raw where a calibration would be noise (see calibration_problem)
        n: p
        for n, col in zip(names, probs.T.double().numpy(), strict=True)
        if calibrate and (p := calibration_problem(y, col)) is not None
    }
    ensemble.calibrations = tuple(
        eer_calibration(y, col) if calibrate and n not in problems else None
        for n, col in zip(names, probs.T.double().numpy(), strict=True)
    )

    def combined(w: np.ndarray) -> np.ndarray:
        ensemble.weights = torch.as_tensor(w, dtype=torch.float32)
        return ensemble.combine(probs).double().numpy()

    def auc(w: np.ndarray) -> float:
        return float(binary_metrics(y, combined(w), 0.5)["auc"])

    n = len(ensemble.members)
    equal = auc(np.full(n, 1.0 / n))
    aucs = np.array([auc(w) for w in grid])
    top = int(np.argmax(aucs))
    se = photo_bootstrap_se(y, combined(grid[top]), res.get("sources"), bootstrap, seed)
    near = np.flatnonzero(aucs >= aucs[top] - se - 1e-12)
    # the most even weights within one standard error; among those, the best AUC
    w = grid[max(near, key=lambda i: (round(float(grid[i].min()), 9), aucs[i]))]
    scores = combined(w)  # also leaves these weights set on the ensemble
    ranking = binary_metrics(y, scores, 0.5)  # AUC, AP: before the final (monotone) calibration, whose
    # float32 probabilities tie when it is very flat (members that know nothing) or very steep
    threshold = float(np.clip(eer(y, scores)[1], 0.0, 1.0))
    record: dict[str, Any] = {}
    if calibrate and (problem := calibration_problem(y, scores)) is not None:
        problems["ensemble"] = problem
    if problems:
        record["uncalibrated"] = problems
    if calibrate and "ensemble" not in problems:
        shown = ensemble.calibrate(probs).double().numpy()
        ece_raw = {
            n: calibration_metrics(y, probs[:, j].double().numpy())["ece"] for j, n in enumerate(names)
        }
        ece_raw["ensemble"] = calibration_metrics(y, scores)["ece"]  # calibrated members, raw combination
        ensemble.calibration = Calibration.fit(y, scores, threshold)
        ensemble.threshold = 0.5
        scores = ensemble.combine(probs).double().numpy()
        ece = {n: calibration_metrics(y, shown[:, j])["ece"] for j, n in enumerate(names)}
        ece["ensemble"] = calibration_metrics(y, scores)["ece"]
        record |= {
            "calibration": ensemble.calibration_dict(),
            "uncalibrated_threshold": threshold,
            "val_ece": {"before": ece_raw, "after": ece},
        }
    else:
        ensemble.threshold = threshold
    fitted = binary_metrics(y, scores, ensemble.threshold) | calibration_metrics(y, scores)
    fitted |= {"auc": ranking["auc"], "ap": ranking["ap"]}
    return {
        "pool": str(pool),
        "photos": len(set(res["sources"])) if res.get("sources") else len(photos),  # scored, not dealt
        "pairs": pairs,
        "seed": seed,
        "step": step,
        "weights": [round(float(v), 6) for v in w],
        "rule": "most even weights within one bootstrap standard error (over photos) of the best AUC",
        "best_auc": float(aucs[top]),
        "best_weights": [round(float(v), 6) for v in grid[top]],
        "auc_se": se,
        "bootstrap": bootstrap,
        "threshold": ensemble.threshold,
        "val": fitted,
        "val_auc_equal_weights": equal,
        "val_auc_members": {
            name: float(binary_metrics(y, col, 0.5)["auc"]) for name, col in res["members"].items()
        },
        **record,
    }
