"""Reproduce the trust study in docs/trust/: train tiny detectors for the purpose, then run `fakelens trust`.

No deepfake detector ships with fakelens yet, and an ImageNet backbone with an untrained real/fake head is not
a detector (its "fake" evidence is noise), so this script trains two tiny ones on forgeries with exact masks:
real photos that ship inside installed wheels (scikit-image, matplotlib, scikit-learn), cut into small crops;
regional forgeries from fakelens.forgery (regional upsampling, median/blur, local warping, local resampling),
so that each fake has a ground-truth mask. Train and test crops come from different photos.

    python docs/trust/study.py --out /tmp/fakelens-study            # trains, writes test sets, runs trust

Then, for each model, it runs (the command is also recorded in each report):

    python -m fakelens.cli.trust --model OUT/tiny-cnn --images OUT/test-tiny-cnn/img \
        --masks OUT/test-tiny-cnn/masks --methods all --out OUT/trust-tiny-cnn
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from fakelens.forgery import make_recipe
from fakelens.models import create_model
from fakelens.models.checkpoint import save_checkpoint

RECIPES = ("upsample:regional", "resample:median", "local_warp", "resample:resample")
TEST_PHOTOS = ("rocket", "china")


def photos() -> dict[str, np.ndarray]:
    """Real photographs shipped inside installed wheels (see shared docs: data.md)."""
    import matplotlib.cbook
    import skimage.data
    from sklearn.datasets import load_sample_images

    out: dict[str, np.ndarray] = {}
    for name in ("astronaut", "coffee", "chelsea", "rocket", "camera"):
        a = getattr(skimage.data, name)()
        out[name] = np.stack([a] * 3, -1) if a.ndim == 2 else a[..., :3]
    out["motorcycle"] = skimage.data.stereo_motorcycle()[0]
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        out["grace_hopper"] = np.asarray(Image.open(f).convert("RGB"))
    sk = load_sample_images()
    for name, img in zip(("china", "flower"), sk.images, strict=True):
        out[name] = img
    return out


def crop(img: np.ndarray, hw: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random crop of ``hw`` from the photo scaled by a random factor (so crops see different detail)."""
    h0, w0 = img.shape[:2]
    s = rng.uniform(max(hw[0] / h0, hw[1] / w0) * 1.2, max(hw[0] / h0, hw[1] / w0) * 4.0)
    s = min(s, 1.0)
    im = Image.fromarray(img).resize(
        (max(hw[1], round(w0 * s)), max(hw[0], round(h0 * s))), Image.Resampling.BILINEAR
    )
    a = np.asarray(im)
    y = int(rng.integers(0, a.shape[0] - hw[0] + 1))
    x = int(rng.integers(0, a.shape[1] - hw[1] + 1))
    return a[y : y + hw[0], x : x + hw[1]].copy()


def make_pairs(
    pool: dict[str, np.ndarray],
    names: list[str],
    n: int,
    hw: tuple[int, int],
    seed: int,
    recipe_names: tuple[str, ...] = RECIPES,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` (real, fake, mask) triples; fake == real wherever the mask is 0."""
    rng = np.random.default_rng(seed)
    reals, fakes, masks = [], [], []
    recipes = [make_recipe(r) for r in recipe_names]
    while len(reals) < n:
        real = crop(pool[names[int(rng.integers(len(names)))]], hw, rng)
        rec = recipes[int(rng.integers(len(recipes)))]
        try:
            fake, mask = rec(real, rng)
        except Exception:  # a recipe may refuse a degenerate crop; draw another
            continue
        if mask.mean() < 0.03:
            continue
        reals.append(real)
        fakes.append(fake)
        masks.append(mask)
    return np.stack(reals), np.stack(fakes), np.stack(masks)


def to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255.0


def train(name: str, pool: dict[str, np.ndarray], args: argparse.Namespace, out: Path) -> dict[str, float]:
    det = create_model(name, seed=args.seed)
    hw = det.input_spec.size
    train_names = [k for k in pool if k not in TEST_PHOTOS]
    recipes = tuple(args.recipes.split(","))
    r, f, _ = make_pairs(pool, train_names, args.train, hw, args.seed, recipes)
    x = torch.cat([to_tensor(r), to_tensor(f)])
    y = torch.cat([torch.zeros(len(r)), torch.ones(len(f))]).long()
    tr, tf, tm = make_pairs(pool, list(TEST_PHOTOS), args.test_pairs, hw, args.seed + 1, recipes)
    xt = torch.cat([to_tensor(tr), to_tensor(tf)])
    yt = torch.cat([torch.zeros(len(tr)), torch.ones(len(tf))]).long()
    det.train()
    opt = torch.optim.AdamW(det.parameters(), lr=args.lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(args.seed)
    steps = 0
    t0 = time.time()
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=args.epochs * ((len(x) + args.batch - 1) // args.batch)
    )
    for _ in range(args.epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), args.batch):
            idx = perm[i : i + args.batch]
            xb = x[idx]
            flip = torch.rand(len(idx), generator=g) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            loss = F.cross_entropy(det(det.input_spec.normalize(xb)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            steps += 1
    det.eval()
    with torch.no_grad():
        p = torch.softmax(det(det.input_spec.normalize(xt)), 1)[:, 1].numpy()
    from sklearn.metrics import roc_auc_score

    metrics = {
        "test_auc": float(roc_auc_score(yt.numpy(), p)),
        "test_accuracy": float(((p > 0.5) == yt.numpy()).mean()),
        "train_pairs": args.train,
        "test_pairs": args.test_pairs,
        "epochs": args.epochs,
        "train_seconds": round(time.time() - t0, 1),
    }
    save_checkpoint(
        det,
        out / name,
        provenance={"data": "docs/trust/study.py", "recipes": list(recipes), "seed": args.seed},
        metrics=metrics,
    )
    test = out / f"test-{name}"
    (test / "img").mkdir(parents=True, exist_ok=True)
    (test / "masks").mkdir(exist_ok=True)
    for i in range(min(args.trust_images, len(tf))):
        Image.fromarray(tf[i]).save(test / "img" / f"fake{i:03d}.png")
        Image.fromarray((tm[i] * 255 + 0.5).astype(np.uint8)).save(test / "masks" / f"fake{i:03d}.png")
    return metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("fakelens-study"))
    ap.add_argument("--models", default="tiny-cnn,tiny-vit")
    ap.add_argument("--train", type=int, default=6000, help="training pairs (real + fake)")
    ap.add_argument(
        "--recipes", default=",".join(RECIPES), help="forgery recipes (regional ones: they have masks)"
    )
    ap.add_argument("--test-pairs", type=int, default=300)
    ap.add_argument("--trust-images", type=int, default=24, help="test fakes (with masks) given to `trust`")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default="all")
    ap.add_argument("--skip-trust", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    pool = photos()
    summary: dict[str, object] = {}
    for name in args.models.split(","):
        m = train(name, pool, args, args.out)
        summary[name] = m
        print(name, json.dumps(m), flush=True)
        if args.skip_trust:
            continue
        cmd = [
            sys.executable,
            "-m",
            "fakelens.cli.trust",
            "--model",
            str(args.out / name),
            "--images",
            str(args.out / f"test-{name}" / "img"),
            "--masks",
            str(args.out / f"test-{name}" / "masks"),
            "--methods",
            args.methods,
            "--out",
            str(args.out / f"trust-{name}"),
        ]
        print(" ".join(cmd), flush=True)
        t0 = time.time()
        subprocess.run(cmd, check=True)
        summary[f"{name}_trust_seconds"] = round(time.time() - t0, 1)
    (args.out / "study.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
