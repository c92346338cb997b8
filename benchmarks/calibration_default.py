"""Are the shipped ensemble's probabilities frequencies? Before and after calibration, on held-out photos.

Scores forgeries of the pool's photos that no member trained or validated on (as ``fakelens evaluate
--model default --forgeries POOL --split-fractions 0,0,1`` does) once, then reads the same member scores two
ways: **before** — the members' raw probabilities, combined with the weights and threshold the ensemble
shipped with until calibration (``--before-weights``, ``--before-threshold``), and **after** — the shipped,
calibrated ensemble (members and combination calibrated on the validation photos, verdicts at ½). Prints
and writes AUC, accuracy, fakes caught, reals passed, expected calibration error, Brier score and log-loss,
for the ensemble and each member, and a reliability diagram.

Usage::

    python benchmarks/calibration_default.py --pool .pool2 --pairs 1536 \\
        --out benchmarks/results/calibration_default_test.json \\
        --plot src/fakelens/weights/default/reliability_test.png
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch
from _common import output_path, positive_int, write_json

from fakelens.data.datasets import OnTheFlyForgeries
from fakelens.models import Ensemble, InputSpec, load_detector
from fakelens.models.checkpoint import training_photos
from fakelens.tiling import DEFAULT_MAX_TILES
from fakelens.train.evaluate import plot_reliability, score_dataset
from fakelens.train.metrics import binary_metrics, calibration_metrics, json_safe

KEYS = ("auc", "accuracy", "tpr", "tnr", "ece", "brier", "nll")


def row(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    m = binary_metrics(y, p, threshold) | calibration_metrics(y, p)
    return {k: m[k] for k in KEYS} | {"threshold": threshold}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", default=".pool2")
    ap.add_argument("--pairs", type=positive_int, default=1536)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--before-weights", default="0.5,0.5")
    ap.add_argument("--before-threshold", type=float, default=0.9359549880027771)
    ap.add_argument("--out", type=output_path, default=None, help="write the results as JSON here")
    ap.add_argument("--plot", type=output_path, default=None, help="write the reliability diagram here (PNG)")
    args = ap.parse_args()
    after = load_detector("default")
    assert isinstance(after, Ensemble) and after.calibration is not None, "the shipped ensemble is calibrated"
    before = Ensemble(
        after.members,
        [float(v) for v in args.before_weights.split(",")],
        after.rule,
        args.before_threshold,
    )
    seen = training_photos("default").sha256

    def make(spec: InputSpec) -> OnTheFlyForgeries:
        return OnTheFlyForgeries(
            args.pool,
            None,
            args.seed,
            spec=spec,
            split="test",
            split_fractions=(0.0, 0.0, 1.0),
            pairs=args.pairs,
            fixed=True,
            with_info=True,
            exclude=seen,
            max_tiles=DEFAULT_MAX_TILES,
        )

    t0 = time.perf_counter()
    res = score_dataset(before, make)
    took = time.perf_counter() - t0
    y = res["labels"]
    raw = torch.from_numpy(np.stack(list(res["members"].values()), axis=1)).float()
    shown = after.calibrate(raw).double().numpy()
    scores = {"before": before.combine(raw).double().numpy(), "after": after.combine(raw).double().numpy()}
    report: dict[str, Any] = {
        "args": vars(args),
        "images": int(y.size),
        "photos": len(set(res["sources"])),
        "seconds": round(took, 1),
        "ensemble": {
            "before": row(y, scores["before"], before.threshold),
            "after": row(y, scores["after"], after.threshold),
        },
        "members": {
            name: {
                "before": row(y, raw[:, j].double().numpy(), before.threshold),
                "after": row(y, shown[:, j], after.member_threshold(j)),
            }
            for j, name in enumerate(res["members"])
        },
    }
    for who, r in [("ensemble", report["ensemble"]), *report["members"].items()]:
        for when in ("before", "after"):
            print(who, when, {k: round(v, 4) for k, v in r[when].items()}, flush=True)
    if args.plot:
        curves = {
            f"before (raw, verdict at {before.threshold:.3f})": scores["before"],
            "after (calibrated, verdict at 0.5)": scores["after"],
        }
        title = f"shipped ensemble on {report['photos']} held-out photos, {y.size} images"
        plot_reliability(y, curves, args.plot, title=title)
    if args.out:
        write_json(args.out, json_safe(report))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
