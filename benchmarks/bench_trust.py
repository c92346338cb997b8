"""The trust sweep's cost: K views of an image explained as one batch vs the floor.

Side by side in one process, per image, with K = the standard family's 25 transforms + the identity:
  floor_batch   one forward + one backward cut off at the CAM layer, on the K-view batch (the least the
                sweep can cost: "K forwards + K cut-off backwards")
  floor_single  the same, one view at a time (K separate forward + cut-off backward passes)
  explain       fakelens.explain on the K-view batch, all 8 gradient/activation CAMs from one capture
  sweep         run_sweep: build the K views (warp, valid masks), explain, carry every map back by the inverse
                warp, and score every view of every method (equivariance, border, corners, flatness)
  naive_est     estimate for a per-method, per-view loop with a full backward (how peers run): K × 8 × one
                forward + full backward of one view (measured once, multiplied)

Usage: python benchmarks/bench_trust.py [--device cpu|cuda] [--models tiny-cnn,resnet18,resnet50]
                                         [--repeats 3] [--threads N] [--out results.json]
"""

from __future__ import annotations

import argparse
import platform
from typing import Any

import torch
import torchvision
from _common import comma_list, output_path, positive_int, write_json
from _common import device as device_arg
from bench_cam import timer  # the same timing protocol as the CAM benchmark

from fakelens.explain import CAMS, explain
from fakelens.explain.capture import capture
from fakelens.models import MODELS, Detector, InputSpec, create_model
from fakelens.trust.sweep import run_sweep, view_plan
from fakelens.trust.transforms import TransformFamily


def build(name: str, device: torch.device) -> Detector:
    if name in ("resnet18", "resnet50"):
        torch.manual_seed(0)
        net = getattr(torchvision.models, name)(weights=None, num_classes=2)
        det = Detector(net, input_spec=InputSpec(size=(224, 224)), cam_layers=("net.layer4",), name=name)
    else:
        det = create_model(name)
    return det.to(device).eval()


def bench(name: str, device: torch.device, repeats: int) -> dict[str, Any]:
    det = build(name, device)
    spec = det.input_spec
    plan = view_plan(TransformFamily.standard(), ("black",))
    k = len(plan)
    g = torch.Generator().manual_seed(0)
    pixels = torch.rand(3, *spec.size, generator=g).to(device)
    from fakelens.trust.transforms import make_views

    vb = make_views(pixels[None], [t for t, _ in plan])
    xk = spec.normalize(vb.pixels)
    layers = det.cam_layers
    methods = CAMS.names()

    def floor_batch() -> None:
        capture(det, xk, layers)

    def floor_single() -> None:
        for i in range(k):
            capture(det, xk[i : i + 1], layers)

    def explain_all() -> None:
        explain(det, xk, methods, valid=vb.valid)

    def sweep() -> None:
        sw = run_sweep(det, pixels, plan, methods)
        for m in methods:
            sw.view_metrics(m)

    def full_backward_one() -> None:
        x1 = xk[:1].clone().requires_grad_(True)
        det.zero_grad(set_to_none=True)
        out = det(x1)
        out[:, -1].sum().backward()

    t = {
        "floor_batch": timer(floor_batch, device, repeats),
        "floor_single": timer(floor_single, device, repeats),
        "explain": timer(explain_all, device, repeats),
        "sweep": timer(sweep, device, repeats),
    }
    one_full = timer(full_backward_one, device, repeats)
    det.zero_grad(set_to_none=True)
    t["naive_est"] = one_full * k * len(methods)
    return {
        "model": name,
        "input": list(spec.size),
        "views": k,
        "methods": len(methods),
        "seconds": t,
        "ratio_to_floor_batch": {key: v / t["floor_batch"] for key, v in t.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", type=device_arg, default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument(
        "--models",
        type=comma_list(["resnet18", "resnet50", *MODELS.names()]),
        default="tiny-cnn,resnet18",
        help="comma list: resnet18, resnet50 (torchvision, random init) or registered fakelens models",
    )
    ap.add_argument("--repeats", type=positive_int, default=3)
    ap.add_argument("--threads", type=positive_int, default=None)
    ap.add_argument("--out", type=output_path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    rows = [bench(m, device, args.repeats) for m in args.models]
    meta = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    for r in rows:
        s, q = r["seconds"], r["ratio_to_floor_batch"]
        print(
            f"{r['model']:>9} {r['input']} K={r['views']}: floor(K-batch) {1000 * s['floor_batch']:.1f} ms | "
            f"K singles {q['floor_single']:.2f}x | explain 8 CAMs {q['explain']:.2f}x | full sweep "
            f"{q['sweep']:.2f}x | naive per-method loop (est.) {q['naive_est']:.1f}x"
        )
    if args.out:
        write_json(args.out, {"meta": meta, "results": rows}, indent=2)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
