"""One capture vs peers: the cost of fakelens' 8 gradient/activation CAMs against the floor and peers.

Side by side in one process, on the same random ResNet-50 (2 logits, target = fake log-odds):
  floor            one forward + one backward cut off at the layer (the least any gradient CAM can cost)
  suite            fakelens: all 8 CAM methods from one shared capture, maps on the image grid + stats
  per_method       fakelens: each method alone
  gradcam_suite    pytorch-grad-cam: its 8 equivalent methods one after another
  torchcam_suite   torchcam: GradCAM, GradCAM++, XGradCAM, LayerCAM one after another

Usage: python benchmarks/bench_cam.py [--device cpu|cuda] [--batch 8] [--size 224] [--repeats 3]
                                      [--model resnet50|vit_b16] [--out results.json]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torchvision
from _common import device as device_arg
from _common import environment, output_path, positive_int, write_json

from fakelens.explain import CAMS, explain
from fakelens.explain.capture import frozen, hooked_outputs
from fakelens.models import Detector, InputSpec, TokenLayout


def build(model: str, device: torch.device) -> tuple[Detector, Any]:
    torch.manual_seed(0)
    if model == "resnet50":
        net = torchvision.models.resnet50(weights=None, num_classes=2)
        det = Detector(net, input_spec=InputSpec(size=(224, 224)), cam_layers=("net.layer4",))
        return det.to(device).eval(), None
    import timm

    net = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=2)
    det = Detector(
        net,
        input_spec=InputSpec(size=(224, 224)),
        cam_layers=("net.blocks.11.norm1",),
        token_layout=TokenLayout(num_prefix_tokens=1, patch_size=(16, 16)),
    )

    def reshape(t: torch.Tensor) -> torch.Tensor:
        r = t[:, 1:, :].reshape(t.size(0), 14, 14, t.size(2))
        return r.permute(0, 3, 1, 2)

    return det.to(device).eval(), reshape


def timer(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def floor_fn(det: Detector, x: torch.Tensor) -> Callable[[], Any]:
    layer = det.cam_layers[0]
    if x.device.type == "cpu":  # the layout the capture runs in on a CPU: the floor is the least it can cost
        x = x.contiguous(memory_format=torch.channels_last)

    def run() -> Any:
        with torch.enable_grad(), frozen(det), hooked_outputs(det, {layer: det.layer(layer)}) as store:
            logits = det(x)
            score = logits[:, 1] - logits[:, 0]
            return torch.autograd.grad(score.sum(), [store[layer]])

    return run


def gradcam_suite_fn(det: Detector, x: torch.Tensor, reshape: Any) -> Callable[[], Any]:
    import pytorch_grad_cam as pgc

    classes = [
        pgc.GradCAM,
        pgc.GradCAMPlusPlus,
        pgc.HiResCAM,
        pgc.XGradCAM,
        pgc.LayerCAM,
        pgc.GradCAMElementWise,
        pgc.EigenCAM,
        pgc.EigenGradCAM,
    ]
    layer = det.layer(det.cam_layers[0])
    targets = [lambda o: o[1] - o[0]] * x.shape[0]

    def run() -> Any:
        out = []
        for cls in classes:
            with cls(model=det, target_layers=[layer], reshape_transform=reshape) as cam:
                out.append(cam(input_tensor=x, targets=targets))
        return out

    return run


def torchcam_suite_fn(det: Detector, x: torch.Tensor) -> Callable[[], Any] | None:
    try:
        from torchcam import methods as tcm
    except ImportError:
        return None
    layer = det.cam_layers[0]

    def run() -> Any:
        out = []
        for cls in (tcm.GradCAM, tcm.GradCAMpp, tcm.XGradCAM, tcm.LayerCAM):
            with cls(det, target_layer=layer, enable_hooks=True) as extractor, torch.enable_grad():
                scores = det(x)
                out.append(extractor([1] * x.shape[0], scores))
        return out

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", type=device_arg, default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--model", default="resnet50", choices=["resnet50", "vit_b16"])
    ap.add_argument("--batch", type=positive_int, default=8)
    ap.add_argument("--size", type=positive_int, default=224)
    ap.add_argument("--repeats", type=positive_int, default=3)
    ap.add_argument("--peer-repeats", type=positive_int, default=1)
    ap.add_argument("--skip-peers", action="store_true")
    ap.add_argument("--out", type=output_path, default=None, help="write the results as JSON here")
    args = ap.parse_args()

    device = args.device
    det, reshape = build(args.model, device)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    methods = CAMS.names()
    res: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "device_type": device.type,
        "model": args.model,
        "batch": args.batch,
        "size": args.size,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "methods": methods,
        "repeats": args.repeats,
        "peer_repeats": None if args.skip_peers else args.peer_repeats,
        "environment": environment(device),  # command line, versions (torch, timm, grad-cam, torchcam)
    }
    res["floor_s"] = timer(floor_fn(det, x), device, args.repeats)
    res["suite_s"] = timer(lambda: explain(det, x, methods), device, args.repeats)
    res["per_method_s"] = {m: timer(lambda m=m: explain(det, x, [m]), device, args.repeats) for m in methods}
    if not args.skip_peers:
        res["gradcam_suite_s"] = timer(gradcam_suite_fn(det, x, reshape), device, args.peer_repeats)
        tc = torchcam_suite_fn(det, x) if args.model == "resnet50" else None
        res["torchcam_suite_s"] = timer(tc, device, args.peer_repeats) if tc else None
    res["suite_over_floor"] = res["suite_s"] / res["floor_s"]
    if res.get("gradcam_suite_s"):
        res["gradcam_suite_over_suite"] = res["gradcam_suite_s"] / res["suite_s"]
    if res.get("torchcam_suite_s"):
        res["torchcam_suite_over_suite"] = res["torchcam_suite_s"] / res["suite_s"]

    print(f"{args.model} batch {args.batch} {args.size}px on {res['device']} ({res['threads']} threads)")
    print(f"{'what':<28}{'seconds':>10}{'x floor':>10}")
    rows = [("floor (fwd + cut-off bwd)", res["floor_s"]), ("fakelens suite (8 maps)", res["suite_s"])]
    rows += [(f"  fakelens {m}", t) for m, t in res["per_method_s"].items()]
    if res.get("gradcam_suite_s"):
        rows.append(("pytorch-grad-cam 8 methods", res["gradcam_suite_s"]))
    if res.get("torchcam_suite_s"):
        rows.append(("torchcam 4 methods", res["torchcam_suite_s"]))
    for name, t in rows:
        print(f"{name:<28}{t:>10.3f}{t / res['floor_s']:>10.2f}")
    print(f"suite/floor = {res['suite_over_floor']:.3f}", end="")
    if "gradcam_suite_over_suite" in res:
        print(f"; pytorch-grad-cam/suite = {res['gradcam_suite_over_suite']:.1f}", end="")
    if "torchcam_suite_over_suite" in res:
        print(f"; torchcam/suite = {res['torchcam_suite_over_suite']:.1f}", end="")
    print()
    if args.out:
        write_json(args.out, res, indent=2)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
