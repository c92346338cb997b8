"""Throughput of ``fakelens scan``: images/s for detect-only and detect+explain, local and on local Ray.

The corpus is generated from the bundled demo photos (random crops resized to a long side of 192–768 px,
JPEG q90), so nothing is downloaded. Models are saved as checkpoints and loaded by path (random init is fine
for timing). Modes:
  detect            --no-explain: one inference-mode forward per member and batch
  explain           gradcam statistics for every image, one capture per batch; no image above the heatmap
                    score (--heatmaps-above 1), so no badges or files: the cost of explaining every image
  explain+files     --heatmaps-above 0: every image also gets its robustness badge (five views explained
                    as one batch) and its overlay PNG: the cost per *flagged* image
``images/s`` counts scanned images over the pipeline time (model loading and the final compaction are left
out of it; process start-up too) of the fastest of ``--repeats`` runs. Each configuration is warmed up on 16
other images first. Ray runs include starting the actors (one model load per actor per scan).

Usage: python benchmarks/bench_scan.py [--n 200] [--models effnet-lite0,tiny-cnn] [--engines local,ray]
                                        [--batch-size 16] [--workers N] [--repeats 2]
                                        [--out benchmarks/results/scan_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import torch
from _common import comma_list, non_negative_int, output_path, positive_int, write_json
from PIL import Image

from fakelens.analysis import analyze_images, as_ensemble
from fakelens.models import MODELS, Detector, Ensemble, create_model, load_detector, save_checkpoint
from fakelens.scan import ScanSettings, scan
from fakelens.scan.run import default_workers

MODES: dict[str, dict[str, Any]] = {
    "detect": {"explain": False},
    "explain": {"explain": True, "heatmaps_above": 1.0},
    "explain+files": {"explain": True, "heatmaps_above": 0.0},
}


def make_corpus(root: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` JPEGs cut from the demo photos at varied sizes."""
    demo = Path(str(resources.files("fakelens") / "assets" / "demo"))
    photos = [Image.open(p).convert("RGB") for p in sorted(demo.glob("*.jpg"))]
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        img = photos[i % len(photos)]
        fw, fh = rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0)
        w, h = int(img.width * fw), int(img.height * fh)
        x, y = rng.randint(0, img.width - w), rng.randint(0, img.height - h)
        side = rng.choice([192, 256, 384, 512, 768])
        scale = side / max(w, h)
        crop = img.crop((x, y, x + w, y + h)).resize((max(1, round(w * scale)), max(1, round(h * scale))))
        path = root / f"{i:04d}.jpg"
        crop.save(path, quality=90)
        out.append(path)
    return out


def build(name: str) -> Detector | Ensemble:
    """A registered model (random init is fine for timing) or ``default``, the shipped ensemble."""
    if name == "default":
        return load_detector("default")
    return create_model(name, pretrained=False) if name.startswith("effnet") else create_model(name)


def detect_paths(name: str, images: list[Image.Image], batch_size: int) -> dict[str, float]:
    """The two detect-only routes on decoded images (best of 3): the ensemble's forward, analyze_images."""
    ens = as_ensemble(build(name))

    def members() -> None:
        ens.member_probabilities(images, batch_size=batch_size)

    def analyze() -> None:
        analyze_images(ens, images, [], robustness=False, batch_size=batch_size)

    out = {}
    for label, fn in (("member_probabilities", members), ("analyze_images_no_methods", analyze)):
        fn()
        best = min(_time(fn) for _ in range(3))
        out[label] = round(len(images) / best, 2)
    return out


def _time(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=positive_int, default=200)
    ap.add_argument(
        "--models",
        type=comma_list(["default", *MODELS.names()]),
        default="effnet-lite0,tiny-cnn",
        help="registered models or default (the shipped ensemble)",
    )
    ap.add_argument("--engines", type=comma_list(["local", "ray"]), default="local,ray")
    ap.add_argument("--modes", type=comma_list(list(MODES)), default=",".join(MODES))
    ap.add_argument("--batch-size", type=positive_int, default=16)
    ap.add_argument(
        "--workers",
        type=non_negative_int,
        default=None,
        help="local decoding processes (0: in the main process) [default: from cores]",
    )
    ap.add_argument(
        "--repeats", type=positive_int, default=2, help="runs per configuration; the fastest is reported"
    )
    ap.add_argument("--out", type=output_path, default=None, help="write the results as JSON here")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-scan-"))
    corpus = tmp / "corpus"
    make_corpus(corpus, args.n)
    warm = tmp / "warm"
    make_corpus(warm, 16, seed=1)
    engines = args.engines
    ray_address = None
    if "ray" in engines:
        import ray

        t = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        ray_start = round(time.perf_counter() - t, 2)
        ray_address = "local"
    workers = default_workers() if args.workers is None else args.workers
    load_before = os.getloadavg()
    results: list[dict[str, Any]] = []
    micro: dict[str, Any] = {}
    for name in args.models:
        ckpt = save_checkpoint(build(name), tmp / "ckpt" / name)
        decoded = [Image.open(p).convert("RGB") for p in sorted(corpus.glob("*.jpg"))[:32]]
        micro[name] = detect_paths(name, decoded, args.batch_size)
        print(name, "detect routes (images/s):", micro[name], flush=True)
        for engine in engines:
            for mode in args.modes:
                settings = ScanSettings(batch_size=args.batch_size, **MODES[mode])
                kw: dict[str, Any] = {"model": ckpt, "settings": settings, "overwrite": True, "device": "cpu"}
                if engine == "ray":
                    kw["ray_address"] = ray_address
                else:
                    kw["workers"] = workers
                scan(warm, tmp / "out-warm", **kw)
                runs = []
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    s = scan(corpus, tmp / f"out-{name}-{engine}-{mode}", **kw)
                    runs.append((s, time.perf_counter() - t))
                s, wall = min(runs, key=lambda r: r[0].seconds)
                row = {
                    "model": name,
                    "engine": engine,
                    "mode": mode,
                    "images": s.scanned,
                    "flagged": s.flagged,
                    "seconds": s.seconds,
                    "seconds_all_runs": [r.seconds for r, _ in runs],
                    "wall_seconds": round(wall, 2),
                    "images_per_s": s.images_per_second,
                    "load_avg_1m": round(os.getloadavg()[0], 2),
                }
                results.append(row)
                print(json.dumps(row), flush=True)
    ratios = {}
    for name in args.models:
        for engine in engines:
            by = {r["mode"]: r for r in results if r["model"] == name and r["engine"] == engine}
            if "detect" in by:
                ratios[f"{name}/{engine}"] = {
                    m: round(by["detect"]["images_per_s"] / by[m]["images_per_s"], 2)
                    for m in by
                    if m != "detect"
                }
    payload = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_avg_before": [round(x, 2) for x in load_before],
            "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "versions": {
            p: metadata.version(p) for p in ("torch", "timm", "pyarrow", "ray", "fakelens") if _has(p)
        },
        "args": {k: str(v) for k, v in vars(args).items()},
        "local_workers": workers,
        "ray_init_seconds": ray_start if ray_address else None,
        "detect_routes_images_per_s": micro,
        "runs": results,
        "cost_vs_detect": ratios,
    }
    print(json.dumps({"cost_vs_detect": ratios}, indent=1))
    if args.out:
        write_json(args.out, payload, indent=2)
        print(f"wrote {args.out}")


def _has(pkg: str) -> bool:
    try:
        metadata.version(pkg)
        return True
    except metadata.PackageNotFoundError:
        return False


if __name__ == "__main__":
    main()
