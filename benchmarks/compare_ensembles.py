"""Two ensembles on the pool photos that *neither* trained or validated on, under three conditions:
256-px PNG (the training format), 256-px JPEG q90 (real and fake get one final JPEG pass) and 512-px PNG
(letterboxed into the 256-px input, i.e. shrunk 2×). AUC overall, per recipe (its fakes vs all reals) and
per member.

Usage: python benchmarks/compare_ensembles.py OLD NEW POOL OUT.json [PAIRS]   (512 pairs: ≈ 20 min on 2 cores)
"""

import argparse
import json
import pathlib

import numpy as np
from _common import output_path, positive_int, write_json

from fakelens.data.datasets import OnTheFlyForgeries
from fakelens.data.pool import load_pool
from fakelens.models import load_detector
from fakelens.models.checkpoint import training_photos
from fakelens.tiling import DEFAULT_MAX_TILES
from fakelens.train.evaluate import score_dataset
from fakelens.train.metrics import binary_metrics

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("old", help="the old ensemble's folder (ensemble.json)")
ap.add_argument("new", help="the new ensemble's folder (ensemble.json)")
ap.add_argument("pool", help="the photo pool")
ap.add_argument("out", type=output_path, help="write the AUCs as JSON here")
ap.add_argument("pairs", type=positive_int, nargs="?", default=512, help="pairs per condition (default 512)")
args = ap.parse_args()
old, new, pool, out_path, pairs = args.old, args.new, args.pool, args.out, args.pairs
for folder in (old, new):
    if not (pathlib.Path(folder) / "ensemble.json").is_file():
        ap.error(f"{folder}: no ensemble.json there")
seen = set()
for spec in (old, new):
    cfg = json.loads((pathlib.Path(spec) / "ensemble.json").read_text())
    for m in cfg["members"]:
        t = training_photos(pathlib.Path(spec) / m["path"])
        seen |= set(t.train) | set(t.val)
everything = {e.sha256 for e in load_pool(pool)}
print("photos", len(everything - seen))
out = {}
for cond, (fmt, size) in {"jpeg90@256": ("jpeg", 256), "png@512": ("png", 512)}.items():
    for name, spec in (("old", old), ("new", new)):
        ens = load_detector(spec)

        def make(s, fmt=fmt, size=size):  # type: ignore[no-untyped-def]
            return OnTheFlyForgeries(
                pool,
                None,
                0,
                spec=s,
                split="test",
                split_fractions=(0, 0, 1),
                exclude=seen,
                pairs=pairs,
                size=size,
                fmt=fmt,
                quality=90,
                fixed=True,
                with_info=True,
                max_tiles=DEFAULT_MAX_TILES,  # native members read large images as inference does
            )

        res = score_dataset(ens, make, batch_size=64, workers=1, device="cpu")
        y = np.asarray(res["labels"])
        rec = np.array([r.split(":")[0] for r in res["recipes"]])
        row = {"overall": binary_metrics(y, res["scores"], 0.5)["auc"]}
        for n in sorted(set(rec[y == 1])):
            m = (y == 0) | (rec == n)
            row[n] = binary_metrics(y[m], res["scores"][m], 0.5)["auc"]
        for mn, col in res["members"].items():
            row["member:" + mn] = binary_metrics(y, col, 0.5)["auc"]
        out[f"{cond}/{name}"] = row
        print(cond, name, " ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
write_json(out_path, out)
print(f"wrote {out_path}")
