"""Does horizontal-flip test-time augmentation help the shipped ensemble? (Decided on validation photos.)

Scores the same forgeries of the pool's validation photos twice through ``fakelens.train.evaluate.evaluate``:
as shipped, and with every forward replaced by the mean logits of the input and its horizontal flip (256-px
tiles are multiples of 8, so a flip keeps JPEG block boundaries on the grid). Prints overall and per-recipe
AUC and writes both reports as JSON.

Usage::

    python benchmarks/tta_flip_val.py --pool .pool2 --out benchmarks/results/tta_flip_val.json
"""

from __future__ import annotations

import argparse
import time

from _common import output_path, positive_int, write_json
from torch import Tensor

import fakelens.train.loop as loop
from fakelens.models import Detector, load_detector
from fakelens.models.fold import inference_logits
from fakelens.train.evaluate import evaluate


def flipped(detector: Detector, x: Tensor) -> Tensor:
    return 0.5 * (inference_logits(detector, x) + inference_logits(detector, x.flip(-1)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", default=".pool2")
    ap.add_argument("--pairs", type=positive_int, default=768)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--out", type=output_path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    ensemble = load_detector("default")
    reports = {}
    for name, forward in (("shipped", inference_logits), ("flip_tta", flipped)):
        loop.inference_logits = forward  # score_loader's forward
        t0 = time.perf_counter()
        reports[name] = evaluate(ensemble, forgeries=args.pool, split="val", pairs=args.pairs, seed=args.seed)
        rep = reports[name]
        recipes = {k: round(v["auc"], 3) for k, v in rep["per_recipe"].items()}
        took = time.perf_counter() - t0
        print(f"{name}: AUC {rep['overall']['auc']:.4f} ({took:.0f} s) {recipes}", flush=True)
    loop.inference_logits = inference_logits
    if args.out:
        write_json(args.out, {"args": vars(args), "reports": reports})
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
