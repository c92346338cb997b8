"""Training and inference throughput (images/s) of fakelens detectors and of the data pipelines feeding them.

For each ``model:size`` it times, on random inputs of that size,

- **train**: forward + loss + backward + AdamW step (what ``fakelens train`` does per batch; on CUDA in
  automatic mixed precision, bf16 where supported, with ``channels_last``, as the loop does);
- **infer**: a forward pass under ``torch.inference_mode`` (same precision rules) as fakelens scores images
  (``fakelens.models.fold.inference_logits``: on the CPU channels-last input and the BatchNorm-folded copy);
  ``infer_plain`` = ``detector(x)`` as it is,

after warm-up steps, and reports the median step time as images/s. It also times the data side in this
process: a :class:`~fakelens.data.datasets.DetectionDataset` item (decode a 256-px PNG, ``robust``
augmentation, prepare) and an :class:`~fakelens.data.datasets.OnTheFlyForgeries` item (forgery pairs at
256 px from a tiny pool of scikit-image photos, or from ``--pool``), per worker process.

Usage::

    python benchmarks/bench_train.py --device cpu --threads 2 --out /tmp/bench/train_cpu.json
    python benchmarks/bench_train.py --device cuda --out $OUT/train.json       # < 2 min on one H100/H200
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import device as device_arg
from _common import non_negative_int, output_path, positive_int, write_json

from fakelens.models import MODELS, create_model
from fakelens.models.fold import inference_logits
from fakelens.train.loop import classification_loss

DEFAULT_MODELS = "tiny-cnn:256,effnet-lite0:256,vit-small-reg4:224"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], None], device: torch.device, warmup: int, steps: int) -> list[float]:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def bench_model(
    name: str, size: int, device: torch.device, batch: int, infer_batch: int, warmup: int, steps: int
) -> dict[str, Any]:
    """Median train-step and inference images/s of one registered model at ``size`` × ``size``."""
    # throughput does not depend on the weights: no ImageNet package needed (e.g. on a lent GPU machine)
    takes_pretrained = "pretrained" in inspect.signature(MODELS.get(name)).parameters
    kwargs: dict[str, Any] = {"pretrained": False} if takes_pretrained else {}
    det = create_model(name, **kwargs).to(device)
    cuda = device.type == "cuda"
    amp = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda else None
    if cuda:
        det = det.to(memory_format=torch.channels_last)

    def ctx() -> AbstractContextManager[Any]:
        return torch.autocast("cuda", dtype=amp) if amp is not None else nullcontext()

    def make(b: int) -> torch.Tensor:
        x = det.input_spec.normalize(torch.rand(b, 3, size, size, device=device))
        return x.contiguous(memory_format=torch.channels_last) if cuda else x

    x_train = make(batch)
    y = torch.randint(0, 2, (batch,), device=device)
    opt = torch.optim.AdamW(det.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    det.train()

    def train_step() -> None:
        with ctx():
            loss = classification_loss(det(x_train), y, det.fake_index)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    t_train = _time(train_step, device, warmup, steps)
    det.eval()
    x_inf = make(infer_batch)

    def infer_plain() -> None:
        with torch.inference_mode(), ctx():
            det(x_inf)

    def infer_step() -> None:  # what fakelens runs: channels-last, BatchNorm folded on the CPU
        with torch.inference_mode(), ctx():
            inference_logits(det, x_inf)

    t_plain = _time(infer_plain, device, warmup, steps)
    t_inf = _time(infer_step, device, warmup, steps)
    params = sum(p.numel() for p in det.parameters())
    out = {
        "model": name,
        "size": size,
        "parameters": params,
        "precision": str(amp).replace("torch.", "") if amp else "float32",
        "channels_last": cuda,
        "train_batch": batch,
        "infer_batch": infer_batch,
        "train_images_per_s": round(batch / statistics.median(t_train), 2),
        "infer_images_per_s": round(infer_batch / statistics.median(t_inf), 2),
        "infer_plain_images_per_s": round(infer_batch / statistics.median(t_plain), 2),
        "train_step_s": [round(t, 4) for t in t_train],
        "infer_step_s": [round(t, 4) for t in t_inf],
    }
    if cuda:
        out["max_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        torch.cuda.reset_peak_memory_stats(device)
    return out


def _tiny_pool(root: Path) -> Path:
    """A pool of scikit-image photos (no faces detected), built through build_pool's skimage source."""
    from fakelens.data import pool as pool_mod

    sources = [s for s in pool_mod.SOURCES if s.name in ("skimage", "matplotlib", "sklearn")]
    pool_mod.build_pool(root, [s.name for s in sources], detect=False, progress=False)
    return root


def bench_data(pool: Path | None, n: int, size: int = 256) -> dict[str, Any]:
    """Items/s of the two training data pipelines in this process (one worker's throughput)."""
    from PIL import Image

    from fakelens.data.augment import Augment
    from fakelens.data.datasets import DetectionDataset, OnTheFlyForgeries, Sample
    from fakelens.models.base import InputSpec

    spec = InputSpec(size=(224, 224))
    out: dict[str, Any] = {"spec": [224, 224], "augment": "robust"}
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        import cv2
        import skimage.data

        base = cv2.resize(skimage.data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
        samples = []
        for i in range(16):
            p = Path(tmp) / f"{i}.png"
            noisy = np.clip(base.astype(int) + rng.integers(-8, 8, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(noisy).save(p)
            samples.append(Sample(p, i % 2))
        ds = DetectionDataset(samples, spec, augment=Augment("robust"), seed=0)
        t0 = time.perf_counter()
        for i in range(n):
            ds[i % len(samples)]
        out["folder_items_per_s"] = round(n / (time.perf_counter() - t0), 1)
        pool_dir = pool or _tiny_pool(Path(tmp) / "pool")
        fly = OnTheFlyForgeries(
            pool_dir, None, 0, spec=spec, split="train", pairs=n, size=size, augment=Augment("robust")
        )
        t0 = time.perf_counter()
        for i in range(2 * (n // 2)):
            fly[i]
        out["forgery_items_per_s"] = round(2 * (n // 2) / (time.perf_counter() - t0), 1)
        out["forgery_pool"] = str(pool) if pool else "scikit-image, matplotlib, scikit-learn photos"
        out["forgery_recipes"] = list(fly.recipes)
    return out


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def model_sizes(text: str) -> list[tuple[str, int]]:
    """argparse type for ``--models``: a comma list of registered ``model[:size]`` (size default 224)."""
    out = []
    for spec in (s.strip() for s in text.split(",")):
        name, _, size = spec.partition(":")
        if name not in MODELS:
            raise argparse.ArgumentTypeError(f"unknown model {name!r} (known: {', '.join(MODELS.names())})")
        out.append((name, positive_int(size) if size else 224))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", type=device_arg, default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument(
        "--models",
        type=model_sizes,
        default=DEFAULT_MODELS,
        help=f"model:size list (default {DEFAULT_MODELS})",
    )
    ap.add_argument(
        "--batch", type=positive_int, default=None, help="train batch (default 16 on CPU, 128 on CUDA)"
    )
    ap.add_argument(
        "--infer-batch", type=positive_int, default=None, help="inference batch (default 32 / 256)"
    )
    ap.add_argument(
        "--steps", type=positive_int, default=None, help="timed steps (default 4 on CPU, 20 on CUDA)"
    )
    ap.add_argument(
        "--warmup", type=non_negative_int, default=None, help="warm-up steps (default 1 on CPU, 5 on CUDA)"
    )
    ap.add_argument(
        "--data-items", type=non_negative_int, default=64, help="items timed per data pipeline (0: skip)"
    )
    ap.add_argument("--pool", type=Path, default=None, help="real-photo pool for the forgery pipeline")
    ap.add_argument("--out", type=output_path, default=None, help="write the JSON here")
    args = ap.parse_args(argv)

    device = args.device
    cuda = device.type == "cuda"
    torch.set_num_threads(args.threads)
    batch = args.batch if args.batch is not None else (128 if cuda else 16)
    infer_batch = args.infer_batch if args.infer_batch is not None else (256 if cuda else 32)
    steps = args.steps if args.steps is not None else (20 if cuda else 4)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    if cuda:
        torch.backends.cudnn.benchmark = True

    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if cuda else _cpu_name(),
        "device_type": device.type,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "models": [],
    }
    t_all = time.perf_counter()
    for name, size in args.models:
        r = bench_model(name, size, device, batch, infer_batch, warmup, steps)
        result["models"].append(r)
        print(
            f"{name:16s} {r['size']:4d}px  train {r['train_images_per_s']:9.1f} img/s (batch {batch})  "
            f"infer {r['infer_images_per_s']:9.1f} img/s (plain {r['infer_plain_images_per_s']:.1f}; "
            f"batch {infer_batch})  {r['precision']}",
            flush=True,
        )
    if args.data_items > 0:
        result["data"] = bench_data(args.pool, args.data_items)
        d = result["data"]
        print(
            f"data (1 process): folder+robust {d['folder_items_per_s']} items/s, "
            f"on-the-fly forgeries {d['forgery_items_per_s']} items/s",
            flush=True,
        )
    result["load_average_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    result["seconds"] = round(time.perf_counter() - t_all, 1)
    text = json.dumps(result, indent=2)
    if args.out:
        write_json(args.out, result, indent=2)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
