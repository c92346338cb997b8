"""Does judging each face on its own catch face forgeries that the whole-image score misses?

Takes the pool's photos with faces in one split (default ``test``: photos no shipped member trained or
validated on), shrinks any longer than ``--max-side`` (area filter; real and fake alike), and makes
``--draws`` pairs per photo and face recipe (``self_blend``, ``cross_blend``, ``local_warp``): a random crop
holding a face (each side 60–100 % of the photo's) as the real, and the recipe on that crop as the fake, both
kept lossless.
Every image is then scored as ``fakelens analyze`` scores it:

* **image** — the ensemble over the whole image (native tiles, mean log-odds), the verdict analyze prints;
* **faces** — faces detected afresh (MTCNN when installed), each judged on its own window
  (:mod:`fakelens.face_verdicts`); the image's score is its most fake-looking face (the image score when no
  face is found);
* **faces@t** — the same with every face MTCNN scores at least ``t`` (0.9 … 0.5; analyze keeps ≥ 0.95, or
  ≥ 0.75 beside a confident face): a manipulated face is found less often, so a looser detector may help.

Prints and writes AUC (each recipe's fakes vs all reals), accuracy at the verdict threshold, fakes caught and
reals passed for every rule, with a photo-bootstrap interval on the AUC (the pairs of one photo are not
independent, and there are few photos).

Usage::

    python benchmarks/face_verdicts_eval.py --pool .pool2 --split test --draws 16 \\
        --out benchmarks/results/face_verdicts_test.json
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from _common import output_path, positive_int, write_json
from PIL import Image
from rich.progress import track

from fakelens.data.faces import Face, detect_faces
from fakelens.data.pool import load_pool, load_pool_image, pool_splits
from fakelens.face_verdicts import face_verdicts
from fakelens.forgery.recipes import make_recipe
from fakelens.models import Ensemble, load_detector
from fakelens.models.checkpoint import training_photos
from fakelens.train.metrics import auc_bootstrap, binary_metrics, json_safe

RECIPES = ("self_blend", "cross_blend", "local_warp")
LOOSER = (0.9, 0.8, 0.7, 0.5)  # MTCNN face scores also tried (analyze keeps ≥ 0.95, or ≥ 0.75 beside one)


def shrink(img: np.ndarray, faces: list[Face], max_side: int) -> tuple[np.ndarray, list[Face]]:
    h, w = img.shape[:2]
    s = min(1.0, max_side / max(h, w))
    if s == 1.0:
        return img, faces
    small = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    return small, [f.transformed(s, 0.0, 0.0) for f in faces]


def crop_with_face(
    img: np.ndarray, faces: list[Face], rng: np.random.Generator
) -> tuple[np.ndarray, list[Face]]:
    """A random crop (each side 60–100 % of the image's) that holds one of the faces whole."""
    h, w = img.shape[:2]
    x0, y0, x1, y1 = faces[int(rng.integers(len(faces)))].box
    x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1)  # cut by the border
    cw = max(int(np.ceil(x1 - x0)) + 2, round(w * rng.uniform(0.6, 1.0)))
    ch = max(int(np.ceil(y1 - y0)) + 2, round(h * rng.uniform(0.6, 1.0)))
    cw, ch = min(cw, w), min(ch, h)
    left = int(rng.integers(max(0, int(np.ceil(x1)) - cw), min(int(x0), w - cw) + 1))
    top = int(rng.integers(max(0, int(np.ceil(y1)) - ch), min(int(y0), h - ch) + 1))
    crop = np.ascontiguousarray(img[top : top + ch, left : left + cw])
    return crop, [f.transformed(1.0, -left, -top) for f in faces]


def rule_row(y: np.ndarray, p: np.ndarray, groups: np.ndarray, threshold: float) -> dict[str, Any]:
    m = binary_metrics(y, p, threshold)
    ci = auc_bootstrap(y, p, groups, rounds=1000, seed=0)
    return {k: m[k] for k in ("auc", "accuracy", "tpr", "tnr")} | {"auc_ci": ci["ci"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", default=".pool2")
    ap.add_argument("--split", default="test", choices=("train", "val", "test"))
    ap.add_argument("--draws", type=positive_int, default=16, help="pairs per photo and recipe")
    ap.add_argument("--max-side", type=positive_int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=output_path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    ens = load_detector("default")
    assert isinstance(ens, Ensemble)
    pool = Path(args.pool)
    entries = load_pool(pool)
    split = pool_splits(entries)
    seen = training_photos("default")
    seen_photos = seen.train | seen.val if args.split == "test" else frozenset()
    photos = [e for e in entries if split[e.path] == args.split and e.faces and e.sha256 not in seen_photos]
    rng = np.random.default_rng(args.seed)
    images: list[tuple[str, str, np.ndarray]] = []  # (photo, recipe or "real", pixels)
    loaded = {e.path: shrink(load_pool_image(pool, e), list(e.faces), args.max_side) for e in photos}
    for e in photos:
        img, faces = loaded[e.path]
        donors = [p for p in photos if p.path != e.path]
        for recipe in RECIPES:
            r = make_recipe(recipe)
            for _ in range(args.draws):
                crop, cfaces = crop_with_face(img, faces, rng)
                donor, dfaces = loaded[donors[int(rng.integers(len(donors)))].path] if donors else (None, [])
                fake, _ = r(crop, rng, faces=cfaces, donor=donor, donor_faces=dfaces)
                images += [(e.path, "real", crop), (e.path, recipe, fake)]
    t0 = time.perf_counter()
    p_image: list[float] = []
    p_faces: dict[str, list[float]] = {"faces": [], **{f"faces@{t}": [] for t in LOOSER}}
    missed: dict[str, list[bool]] = {k: [] for k in p_faces}
    for _, _, px in track(images, description=f"scoring {len(images)} images"):
        pil = Image.fromarray(px)
        [v] = ens.verdicts(ens.member_probabilities([pil]))
        p_image.append(v.fake_probability)
        found = detect_faces(px)  # what analyze judges
        fv = face_verdicts(ens, pil, found)
        p_faces["faces"].append(max((f.fake_probability for f in fv), default=v.fake_probability))
        missed["faces"].append(not fv)
        loose = detect_faces(px, min_score=min(LOOSER), min_score_group=min(LOOSER))
        scored = list(zip(loose, face_verdicts(ens, pil, loose), strict=True))
        for t in LOOSER:
            kept = [f.fake_probability for face, f in scored if face.score >= t]
            p_faces[f"faces@{t}"].append(max(kept, default=v.fake_probability))
            missed[f"faces@{t}"].append(not kept)
    seconds = time.perf_counter() - t0
    kinds = np.array([k for _, k, _ in images])
    groups = np.array([p for p, _, _ in images])
    y = (kinds != "real").astype(int)
    scores = {"image": np.array(p_image), **{k: np.array(v) for k, v in p_faces.items()}}
    result: dict[str, Any] = {
        "command": "python benchmarks/face_verdicts_eval.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
        "split": args.split,
        "photos": [e.path for e in photos],
        "images": len(images),
        "no_face_found": {
            rule: {
                "real": int(np.sum(np.array(m) & (kinds == "real"))),
                "fake": int(np.sum(np.array(m) & (kinds != "real"))),
            }
            for rule, m in missed.items()
        },
        "seconds": round(seconds, 1),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "threshold": ens.threshold,
        "rules": {},
    }
    for rule, p in scores.items():
        rows = {"all": rule_row(y, p, groups, ens.threshold)}
        for recipe in RECIPES:
            sel = (kinds == "real") | (kinds == recipe)
            rows[recipe] = rule_row(y[sel], p[sel], groups[sel], ens.threshold)
        result["rules"][rule] = rows
    print(f"{len(photos)} photos, {len(images)} images, {seconds:.0f} s")
    print(f"no face found: {result['no_face_found']}")
    print(f"{'rule':8} {'recipe':12} {'AUC':>6} {'95 % CI':>13} {'acc':>6} {'TPR':>6} {'TNR':>6}")
    for rule, rows in result["rules"].items():
        for recipe, r in rows.items():
            lo, hi = r["auc_ci"]
            print(
                f"{rule:8} {recipe:12} {r['auc']:6.3f} {lo:6.3f}–{hi:5.3f} {r['accuracy']:6.3f} "
                f"{r['tpr']:6.3f} {r['tnr']:6.3f}"
            )
    if args.out:
        write_json(args.out, json_safe(result))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
