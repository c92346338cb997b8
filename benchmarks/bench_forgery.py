"""Forgery recipes: generation speed at 256 px, and whether each leaves a trace a simple statistic can learn.

For every recipe (and variant) it draws ``--n`` real/fake pairs from the pool exactly as ``fakelens data
synth`` does (same crops, donors, seeds and final encoding), then

- times the recipe alone (fakes/s) and the whole pair (crop + donor + recipe + ``encode_pair``: pairs/s),
  in one process, by wall clock and by CPU time (the latter is what a busy shared machine cannot distort);
- computes a few hand-made residual / spectral features on the *encoded* images (what a detector would see):
  NPR-style ``x − Up(Down(x))`` energy (Tan et al., CVPR 2024), high-pass residual energy (global, and
  quantiles over 32×32 blocks relative to the median block), radial bands of the residual's power spectrum,
  the energy at the 2× periodicity peaks (AutoGAN, Zhang et al. 2019), non-aligned JPEG blockiness, and
  first-order SPAM transition probabilities of pixel differences (Pevný et al. 2010);
- reports the AUC of a logistic regression on those features, out-of-fold over 5 folds grouped by pair
  (``AUC LR``: a whole-image detector), the same on the bounding box of the mask in both images (``AUC LR
  box``: does the region carry a learnable trace once located?), and the AUC of the NPR energy alone.

Usage::

    python benchmarks/bench_forgery.py --pool /tmp/pool --n 200 --out /tmp/bench/forgery.json

Without ``--pool`` a tiny pool is built from scikit-image photos in a temp folder (no faces, no network).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from _common import comma_list, int_range, output_path, positive_int, write_json

from fakelens.forgery.dataset import _STATE, _Config, _init_worker, _load, _make
from fakelens.forgery.encode import decode, encode_pair
from fakelens.forgery.recipes import recipe_specs

DEFAULT_SPECS = [s for s in recipe_specs() if s not in ("upsample", "resample")]


# ------------------------------------------------------------------------------------------------ features
def _grey(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)


def _block_stats(e: np.ndarray, b: int = 32) -> list[float]:
    """Block means of an energy map relative to their median: log of min, 10 %, 90 %, max, and the spread.

    A blurred, resampled or pasted region has a noise level unlike the rest of the image."""
    h, w = e.shape
    hb, wb = h // b, w // b
    if hb == 0 or wb == 0:
        return [0.0] * 5
    blocks = e[: hb * b, : wb * b].reshape(hb, b, wb, b).mean(axis=(1, 3)).ravel()
    rel = blocks / (float(np.median(blocks)) + 1e-3) + 1e-3
    q = np.quantile(rel, [0.0, 0.1, 0.9, 1.0])
    return [*np.log(q).tolist(), float(np.std(np.log(rel)))]


def _grid_peaks(g: np.ndarray, b: int = 32) -> list[float]:
    """Non-aligned JPEG blocking (after Bianchi & Piva, 2012, in its simplest form).

    In each b×b window, the mean |first difference| of columns (rows) by residue mod 8 is a blocking
    signature; a pasted region compressed on a shifted grid peaks at a residue other than the aligned one (7).
    Returns the aligned peak and the largest misaligned peak (each over the signature's mean), the latter
    max over windows.
    """
    v = np.abs(np.diff(g, axis=1))[:, :-7]  # column differences, trimmed to a multiple of 8 wide
    u = np.abs(np.diff(g, axis=0))[:-7, :]
    h, w = min(v.shape[0], u.shape[0]) // b * b, min(v.shape[1], u.shape[1]) // b * b
    if h == 0 or w == 0:
        return [0.0, 0.0]
    sv = v[:h, :w].reshape(h // b, b, w // b, b // 8, 8).mean(axis=(1, 3))  # (wy, wx, 8) by column residue
    su = u[:h, :w].reshape(h // b, b // 8, 8, w // b, b).mean(axis=(1, 4)).transpose(0, 2, 1)
    out = []
    for sig in (sv, su):
        rel = sig / (sig.mean(axis=-1, keepdims=True) + 1e-3)
        out.append((rel[..., 7], np.delete(rel, 7, axis=-1).max(axis=-1)))
    aligned = float(np.maximum(out[0][0], out[1][0]).mean())
    misaligned = float(np.maximum(out[0][1], out[1][1]).max())
    return [aligned, misaligned]


def _transitions(d: np.ndarray, t: int) -> np.ndarray:
    """First-order Markov transition matrix P(d[k+1] | d[k]) along the last axis of truncated differences."""
    d = np.clip(np.rint(d), -t, t).astype(np.int64) + t
    a, b = d[..., :-1].ravel(), d[..., 1:].ravel()
    k = 2 * t + 1
    joint = np.bincount(a * k + b, minlength=k * k).reshape(k, k).astype(np.float64)
    return (joint / (joint.sum(axis=1, keepdims=True) + 1e-9)).ravel()


def spam(g: np.ndarray, t: int = 3) -> np.ndarray:
    """SPAM features (Pevný, Bas & Fridrich, IEEE TIFS 2010): first-order transition probabilities of
    truncated neighbour differences, averaged over the 4 straight and the 4 diagonal directions
    (2·(2T+1)² values)."""
    straight = []
    for x in (g, g.T):  # rows and columns, both ways
        d = x[:, :-1] - x[:, 1:]
        straight += [_transitions(d, t), _transitions(-d[:, ::-1], t)]
    diag = []
    for x in (g, g[:, ::-1]):  # both diagonals, both ways: chains d[i, j] -> d[i+1, j+1]
        d = x[:-1, :-1] - x[1:, 1:]
        pair = np.stack([d[:-1, :-1], d[1:, 1:]], axis=-1)
        diag += [_transitions(pair, t), _transitions(-pair[..., ::-1], t)]
    return np.concatenate([np.mean(straight, axis=0), np.mean(diag, axis=0)])


def features(img: np.ndarray) -> np.ndarray:
    g = _grey(img)
    h, w = g.shape
    h2, w2 = h // 2 * 2, w // 2 * 2
    g = g[:h2, :w2]
    # NPR: x − nearest-up(stride-2 down(x))
    npr = g - np.repeat(np.repeat(g[::2, ::2], 2, 0), 2, 1)
    npr_e = np.abs(npr)
    # high-pass residual (Laplacian)
    lap = cv2.Laplacian(g, cv2.CV_32F, ksize=3)
    lap_e = np.abs(lap)
    # spectrum of the residual
    spec = np.abs(np.fft.fftshift(np.fft.fft2(lap))) ** 2
    cy, cx = h2 // 2, w2 // 2
    yy, xx = np.mgrid[:h2, :w2]
    r = np.hypot((yy - cy) / cy, (xx - cx) / cx) / np.sqrt(2)
    tot = spec.sum() + 1e-6
    bands = [
        float(np.log(spec[(r >= a) & (r < b)].sum() / tot + 1e-9))
        for a, b in zip(np.linspace(0, 1, 9)[:-1], np.linspace(0, 1, 9)[1:], strict=True)
    ]
    peaks = [spec[0, cx], spec[cy, 0], spec[0, 0]]  # (Nyquist, 0), (0, Nyquist), (Nyquist, Nyquist)
    peak = float(np.log(sum(peaks) / (3 * spec.mean() + 1e-6) + 1e-9))
    return np.array(
        [
            np.log(npr_e.mean() + 1e-3),
            np.log(lap_e.mean() + 1e-3),
            *_block_stats(lap_e),
            *_block_stats(npr_e),
            *bands,
            peak,
            *_grid_peaks(g),
            *spam(g),
        ],
        dtype=np.float64,
    )


def _box(mask: np.ndarray, min_side: int = 64) -> tuple[int, int, int, int]:
    """Bounding box of the mask (> 0.5), grown to at least ``min_side`` and clipped to the image."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask > 0.5)
    if ys.size == 0:
        ys, xs = np.nonzero(mask > 0)
    cy, cx = (ys.min() + ys.max() + 1) / 2, (xs.min() + xs.max() + 1) / 2
    hh, hw = max(ys.max() + 1 - ys.min(), min_side) / 2, max(xs.max() + 1 - xs.min(), min_side) / 2
    y0, x0 = int(max(0, min(h - 2 * hh, cy - hh))), int(max(0, min(w - 2 * hw, cx - hw)))
    return y0, min(h, int(y0 + 2 * hh)), x0, min(w, int(x0 + 2 * hw))


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def cv_auc(x: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int = 0) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    oof = np.zeros(len(y))
    for tr, te in GroupKFold(n_splits=5).split(x, y, groups):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
        clf.fit(x[tr], y[tr])
        oof[te] = clf.predict_proba(x[te])[:, 1]
    return auc(oof, y)


# ---------------------------------------------------------------------------------------------- pools
def tiny_pool(root: Path) -> Path:
    """A face-less pool from the scikit-image wheel, for a run without a built pool."""
    from fakelens.data import pool as pool_mod

    src = [s for s in pool_mod.SOURCES if s.name in ("skimage", "matplotlib", "sklearn")]
    pool_mod.SOURCES[:] = src
    pool_mod.build_pool(root, detect=False, progress=False)
    return root


# ------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pool", type=Path, default=None)
    ap.add_argument("--n", type=positive_int, default=200, help="pairs per recipe")
    ap.add_argument("--size", type=positive_int, default=256)
    ap.add_argument("--format", default="png", choices=["png", "jpeg"])
    ap.add_argument("--quality", type=int_range(0, 100), default=90, help="JPEG quality (0 to 100)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--recipes", type=comma_list(recipe_specs()), default=",".join(DEFAULT_SPECS))
    ap.add_argument("--out", type=output_path, default=None, help="write the results as JSON here")
    ap.add_argument("--speed-only", action="store_true", help="time the generation, skip the AUCs")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    tmp = None
    pool = args.pool
    if pool is None:
        tmp = tempfile.TemporaryDirectory()
        pool = tiny_pool(Path(tmp.name) / "pool")
    from fakelens.data.pool import load_pool, pool_splits

    entries = load_pool(pool)
    splits = pool_splits(entries, seed=args.seed)
    specs = args.recipes
    results: list[dict[str, Any]] = []
    print(
        f"pool {pool}: {len(entries)} photos, {sum(len(e.faces) for e in entries)} faces; n={args.n} pairs "
        f"per recipe at {args.size} px, final {args.format}",
        flush=True,
    )
    header = (
        f"{'recipe':<20} {'fakes/s':>8} {'(cpu)':>7} {'pairs/s':>8} {'(cpu)':>7} {'AUC LR':>7} "
        f"{'AUC LR box':>10} {'AUC NPR':>8}"
    )
    print(header)
    print("-" * len(header))
    cfg = _Config(str(pool), "", tuple(specs), args.seed, args.size, args.format, args.quality, 0.7)
    _init_worker(cfg, [e.to_dict() for e in entries], splits)
    t0 = time.perf_counter()
    for e in entries:  # steady state of a long run: every photo decoded once, then cached
        _load(str(pool), e.path)
    print(f"decoded the pool in {time.perf_counter() - t0:.1f} s", flush=True)
    for k, spec in enumerate(specs):
        recipe = _STATE["recipes"][spec]
        feats, region, labels, groups = [], [], [], []
        t_recipe = t_pair = c_recipe = c_pair = 0.0
        for i in range(args.n):
            t0, c0 = time.perf_counter(), time.process_time()
            sample = _make(i * len(specs) + k)  # crop (+ donor) + recipe ``spec``
            rb, fb = encode_pair(sample.real, sample.fake, sample.fmt, args.quality)
            t1, c1 = time.perf_counter(), time.process_time()
            recipe(sample.real, np.random.default_rng([args.seed, i, 1]))  # the recipe alone
            t2, c2 = time.perf_counter(), time.process_time()
            t_pair, c_pair = t_pair + t1 - t0, c_pair + c1 - c0
            t_recipe, c_recipe = t_recipe + t2 - t1, c_recipe + c2 - c1
            if args.speed_only:
                continue
            y0, y1, x0, x1 = _box(sample.mask)
            for lab, data in ((0, rb), (1, fb)):
                img = decode(data)
                feats.append(features(img))
                region.append(features(img[y0:y1, x0:x1]))
                labels.append(lab)
                groups.append(i)
        a_lr = a_npr = a_region = float("nan")
        if not args.speed_only:
            x, y, g = np.array(feats), np.array(labels), np.array(groups)
            a_lr = cv_auc(x, y, g, args.seed)
            a_npr = auc(x[:, 0], y)
            a_region = cv_auc(np.array(region), y, g, args.seed)
        rec = {
            "recipe": spec,
            "n_pairs": args.n,
            "size": args.size,
            "recipe_fakes_per_s": args.n / t_recipe,
            "pipeline_pairs_per_s": args.n / t_pair,
            "recipe_fakes_per_cpu_s": args.n / c_recipe,
            "pipeline_pairs_per_cpu_s": args.n / c_pair,
            "auc_logreg_cv": a_lr,
            "auc_logreg_cv_mask_box": a_region,
            "auc_npr_energy": a_npr,
        }
        results.append(rec)
        print(
            f"{spec:<20} {rec['recipe_fakes_per_s']:>8.1f} {rec['recipe_fakes_per_cpu_s']:>7.1f} "
            f"{rec['pipeline_pairs_per_s']:>8.1f} {rec['pipeline_pairs_per_cpu_s']:>7.1f} "
            f"{a_lr:>7.3f} {a_region:>10.3f} {a_npr:>8.3f}",
            flush=True,
        )
    doc = {
        "benchmark": "forgery recipes",
        "pool": str(pool),
        "photos": len(entries),
        "seed": args.seed,
        "format": args.format,
        "quality": args.quality,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "results": results,
    }
    if args.out is not None:
        write_json(args.out, doc)
        print(f"wrote {args.out}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
