"""Which rule turns tile scores into an image score? Chosen on the VALIDATION photos, never the test photos.

Scores the shipped members' tiles (native 256-px, no overlap) of `--size`-px forgeries of the pool's
validation split (the photos the ensemble's weights were fitted on) and prints the AUC per recipe of the
mean, max, log-mean-exp (T = 1, 0.5) and mean-of-mean-and-max of the tiles' combined log-odds.

Usage:
  python benchmarks/tile_rule_val.py --pool .pool2 --pairs 256 --out benchmarks/results/tile_rule_val.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np
import torch
from _common import output_path, positive_int, write_json
from PIL import Image
from sklearn.metrics import roc_auc_score

from fakelens.data.datasets import OnTheFlyForgeries
from fakelens.geometry import prepare_views
from fakelens.models import Ensemble, load_detector


def lme(t: np.ndarray, temp: float) -> float:
    m = float(t.max())
    return m + temp * float(np.log(np.exp((t - m) / temp).mean()))


RULES: dict[str, Callable[[np.ndarray], float]] = {
    "mean": lambda t: float(t.mean()),
    "max": lambda t: float(t.max()),
    "log_mean_exp_T1": lambda t: lme(t, 1.0),
    "log_mean_exp_T0.5": lambda t: lme(t, 0.5),
    "mean_of_mean_and_max": lambda t: 0.5 * float(t.mean() + t.max()),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pool", required=True)
    ap.add_argument("--model", default="default")
    ap.add_argument("--pairs", type=positive_int, default=256)
    ap.add_argument("--size", type=positive_int, default=512)
    ap.add_argument("--out", type=output_path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = load_detector(args.model)
    ens = model if isinstance(model, Ensemble) else Ensemble([model])
    ds = OnTheFlyForgeries(
        args.pool,
        None,
        0,
        spec=ens.members[0].input_spec,
        split="val",
        pairs=args.pairs,
        size=args.size,
        fixed=True,
        with_info=True,
    )
    start = time.perf_counter()
    labels, recipes, tiles = [], [], []
    for k in range(ds.pairs):
        pair = ds.pair(k)
        for label, arr in ((0, pair.real), (1, pair.fake)):
            img = Image.fromarray(arr)
            z = []
            for m in ens.members:
                px, _ = prepare_views(img, m.input_spec, overlap=0.0)
                with torch.inference_mode():
                    out = m(m.input_spec.normalize(px)).float()
                z.append(out[:, 1] - out[:, 0])
            tiles.append((torch.stack(z, 1) @ ens.weights.float()).numpy())
            labels.append(label)
            recipes.append(pair.recipe if label else "")
    y = np.array(labels)
    result: dict[str, object] = {
        "photos": len(ds.entries),
        "images": len(y),
        "seconds": round(time.perf_counter() - start, 1),
    }
    for name, rule in RULES.items():
        s = np.array([rule(t) for t in tiles])
        row = {"overall": round(float(roc_auc_score(y, s)), 3)}
        for rc in sorted(set(recipes) - {""}):
            sel = np.array([(q == rc) or yy == 0 for q, yy in zip(recipes, y, strict=True)])
            row[rc] = round(float(roc_auc_score(y[sel], s[sel])), 3)
        result[name] = row
    print(json.dumps(result, indent=1))
    if args.out:
        write_json(args.out, result)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
