"""Whole images vs native-resolution tiles: how should a detector trained on 256-px crops score a large image?

The shipped members were trained on 256-px crops at their native pixel grid. This script scores the images of
a `fakelens data synth` folder (e.g. 512-px pairs) five ways and prints the AUC per recipe, only on photos the
model never trained or validated on (`training_photos`):

  letterbox      the whole image fitted into 256² (a 512-px image downscaled 2×; fakelens before native tiles)
  tiles_mean     mean log-odds over the non-overlapping native 256-px tiles
  tiles_max      the most fake tile (a local forgery lives in one tile)
  both           mean of the letterbox and tiles_mean log-odds
  native         what fakelens does for `mode="native"` members: overlapping tiles (fakelens.tiling)

Usage:
  fakelens data synth --pool POOL --out /tmp/s512 --n 2000 --size 512 --seed 1 --no-sheet
  python benchmarks/eval_tiling.py --synth /tmp/s512 --pool POOL --model default --out results/tiling.json
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from _common import output_path, positive_int, write_json
from sklearn.metrics import roc_auc_score

from fakelens.data.pool import load_pool
from fakelens.geometry import prepare_batch
from fakelens.io import load_image
from fakelens.models import Ensemble, load_detector
from fakelens.models.checkpoint import training_photos
from fakelens.models.ensemble import predict_proba
from fakelens.tiling import image_logits


def logit(p: torch.Tensor) -> torch.Tensor:
    return torch.logit(p.clamp(1e-6, 1 - 1e-6))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--synth", required=True, help="a `fakelens data synth` folder (manifest.csv)")
    ap.add_argument("--pool", required=True, help="the pool it was made from")
    ap.add_argument("--model", default="default")
    ap.add_argument("--tile", type=positive_int, default=256)
    ap.add_argument("--threads", type=positive_int, default=2)
    ap.add_argument("--out", type=output_path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_detector(args.model)
    ens = model if isinstance(model, Ensemble) else Ensemble([model])
    seen = training_photos(args.model).sha256
    sha = {e.path: e.sha256 for e in load_pool(args.pool)}
    root = Path(args.synth)
    with (root / "manifest.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if sha[r["source"]] not in seen]
    t = args.tile
    names = ("letterbox", "tiles_mean", "tiles_max", "both", "native")
    scores: dict[str, list[float]] = {n: [] for n in names}
    labels, recipes = [], []
    start = time.perf_counter()
    for r in rows:
        im = load_image(root / r["path"])
        x = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).float() / 255
        h, w = x.shape[1:]
        tiles = torch.stack(
            [x[:, a : a + t, b : b + t] for a in range(0, h - t + 1, t) for b in range(0, w - t + 1, t)]
        )
        whole, per_tile, native = [], [], []
        for m in ens.members:
            px, _ = prepare_batch([im], replace(m.input_spec, mode="letterbox"))
            whole.append(logit(predict_proba(m, px))[0])
            per_tile.append(logit(predict_proba(m, tiles)))
            native.append(logit(m.fake_probability(image_logits(m, [im])))[0])
        w_ = ens.weights
        lw = float(torch.stack(whole) @ w_)  # the members' log-odds, combined as logit_mean
        lt = torch.stack(per_tile, dim=1) @ w_  # (tiles,)
        for name, z in (
            ("letterbox", lw),
            ("tiles_mean", float(lt.mean())),
            ("tiles_max", float(lt.max())),
            ("both", 0.5 * (lw + float(lt.mean()))),
            ("native", float(torch.stack(native) @ w_)),
        ):
            scores[name].append(z)
        labels.append(int(r["label"] == "fake"))
        recipes.append(r["recipe"])
    y = np.array(labels)
    out: dict[str, object] = {
        "model": args.model,
        "synth": str(root),
        "images": len(rows),
        "photos": len({r["source"] for r in rows}),
        "seconds": round(time.perf_counter() - start, 1),
    }
    for name, s in scores.items():
        s_ = np.array(s)
        res = {"overall": round(float(roc_auc_score(y, s_)), 4)}
        for rc in sorted(set(recipes) - {""}):
            sel = np.array([(q == rc) or yy == 0 for q, yy in zip(recipes, y, strict=True)])
            res[rc] = round(float(roc_auc_score(y[sel], s_[sel])), 3)
        out[name] = res
    print(json.dumps(out, indent=1))
    if args.out:
        write_json(args.out, out)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
