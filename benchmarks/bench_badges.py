"""Robustness badges per second for each member of the shipped ensemble, by how many images' views are
explained as one batch (``fakelens.trust.badge.batch_badges``; 5 views per image, Grad-CAM), so that
``fakelens.analysis.badge_batch`` is chosen on measurements: 32 random 256² images, best of ``--repeats``
after a warm-up.

Usage::

    OMP_NUM_THREADS=2 python benchmarks/bench_badges.py [--device cpu|cuda] [--sizes 1,2,4,8] [--out F.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch
from _common import comma_list, output_path, positive_int, write_json
from _common import device as device_arg

from fakelens.models import load_detector
from fakelens.trust.badge import batch_badges


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", type=device_arg, default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--sizes", type=comma_list(positive_int), default="1,2,4,8", help="images per batch")
    ap.add_argument("--images", type=positive_int, default=32)
    ap.add_argument("--repeats", type=positive_int, default=2)
    ap.add_argument("--out", type=output_path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    sizes = args.sizes
    dev = args.device
    pixels = torch.rand(args.images, 3, 256, 256, generator=torch.Generator().manual_seed(0)).to(dev)
    rows = []
    for member in load_detector("default", device=dev).members:
        batch_badges(member, pixels[:2], ["gradcam"])  # warm-up
        for k in sizes:
            best = float("inf")
            for _ in range(args.repeats):
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                t = time.perf_counter()
                for i in range(0, args.images, k):
                    batch_badges(member, pixels[i : i + k], ["gradcam"])
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - t)
            rows.append(
                {"model": member.name, "images_per_batch": k, "badges_per_s": round(args.images / best, 2)}
            )
            print(json.dumps(rows[-1]), flush=True)
    result = {
        "machine": {
            "device": torch.cuda.get_device_name(dev)
            if dev.type == "cuda"
            else platform.processor() or "cpu",
            "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(),
        },
        "versions": {"torch": torch.__version__},
        "args": vars(args) | {"out": str(args.out)},
        "rows": rows,
    }
    if args.out is not None:
        write_json(args.out, result)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
