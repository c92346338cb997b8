"""ScoreCAM of the shipped detectors at each precision: time and distance to the strict-fp32 map.

For each member of the shipped ensemble (trained weights, unlike the random-init models of
``bench_perturbation.py``), one native 256-px tile of each bundled demo image is explained by exact ScoreCAM
in strict fp32 (TF32 off, the reference), in full precision at PyTorch's default (cuDNN TF32 convolutions on
CUDA), at fakelens' default ``amp="auto"`` (fp16 on CUDA where its probe passes), and with bf16 / fp16
autocast forced (CUDA only for fp16). Reported per row: best-of-rounds time and the max / mean
|difference| of the min-max normalised map to the strict map, and how many chunks fell back to full precision.

Usage:
  python benchmarks/scorecam_precision.py --device cuda --out $OUT/scorecam_precision.json
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from _common import comma_list, output_path, positive_int, write_json
from _common import device as device_arg
from torch import Tensor

from fakelens.explain import explain
from fakelens.geometry import Geometry, view_pixels
from fakelens.io import load_image
from fakelens.models import Detector, Ensemble, load_detector

DEMO = Path(__file__).resolve().parents[1] / "src" / "fakelens" / "assets" / "demo"


@contextlib.contextmanager
def precision(strict: bool) -> Iterator[None]:
    """``strict``: TF32 off for cuDNN convolutions and matmuls; else PyTorch's defaults as they are."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    if strict:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def tile(det: Detector, path: Path, device: torch.device) -> Tensor:
    """The middle native tile of ``path`` at the detector's input size, normalised, on ``device``."""
    image = load_image(path)
    views = Geometry.tiles((image.height, image.width), det.input_spec.size)
    x = view_pixels(image, views[len(views) // 2], det.input_spec)[None].to(device)
    return det.input_spec.normalize(x)


def normalised(raw: Tensor) -> Tensor:
    m = raw.float().clamp_min(0)
    m = m - m.amin(dim=(-2, -1), keepdim=True)
    return m / m.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)


def run(det: Detector, x: Tensor, amp: str | None, strict: bool) -> tuple[float, Tensor, dict[str, Any]]:
    if x.is_cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    with precision(strict):
        e = explain(det, x, ["scorecam"], options={"scorecam": {"amp": amp}})["scorecam"]
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0, normalised(e.raw), e.meta


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", type=device_arg, default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument(
        "--images",
        type=comma_list(sorted(f.name for f in DEMO.iterdir() if f.suffix == ".jpg")),
        default="chelsea.jpg,astronaut_fake_self_blend.jpg",
        help="demo images (comma list)",
    )
    p.add_argument("--rounds", type=positive_int, default=2)
    p.add_argument("--out", type=output_path, default=None, help="write the results as JSON here")
    args = p.parse_args()
    device = args.device
    ensemble = load_detector("default", device=device)
    members = ensemble.members if isinstance(ensemble, Ensemble) else (ensemble,)
    cuda = device.type == "cuda"
    rows: list[dict[str, Any]] = []
    for det in members:
        for name in args.images:
            x = tile(det, DEMO / name, device)
            _, ref, _ = run(det, x, None, strict=True)
            for label, amp, strict in [
                ("fp32 strict", None, True),
                ("amp=None (TF32 on CUDA)", None, False),
                ("auto (the default)", "auto", False),
                ("bf16", "bf16", False),
            ] + ([("fp16", "fp16", False)] if cuda else []):
                run(det, x, amp, strict)  # warm-up
                times: list[float] = []
                maps: Tensor | None = None
                meta: dict[str, Any] = {}
                for _ in range(args.rounds):
                    t, maps, meta = run(det, x, amp, strict)
                    times.append(t)
                assert maps is not None
                d = (maps - ref).abs()
                row = {
                    "member": det.name,
                    "image": name,
                    "precision": label,
                    "best_s": min(times),
                    "times_s": times,
                    "vs_strict_max_abs": float(d.max()),
                    "vs_strict_mean_abs": float(d.mean()),
                    "forwards": meta.get("forwards"),
                    "amp": meta.get("amp"),
                    "amp_probe": meta.get("amp_probe"),
                    "amp_fallbacks": meta.get("amp_fallbacks"),
                }
                rows.append(row)
                print(
                    f"{det.name:<22} {name:<14} {label:<24} {row['best_s']:7.3f} s  "
                    f"max {row['vs_strict_max_abs']:.1e}  mean {row['vs_strict_mean_abs']:.1e}  "
                    f"forwards {row['forwards']}  amp {row['amp']}  fallbacks {row['amp_fallbacks']}  "
                    f"probe {row['amp_probe']}",
                    flush=True,
                )
    env = {"device": torch.cuda.get_device_name(device) if cuda else "cpu", "torch": torch.__version__}
    if args.out:
        write_json(args.out, {"environment": env, "rows": rows})
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
