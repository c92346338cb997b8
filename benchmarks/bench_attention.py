"""Transformer explanations against the floor: ViT-B/16 (timm ``vit_base_patch16_224``, random init, 2 logits,
fused attention on, target = fake log-odds).

  floor_block   one forward + one backward cut off at the first block's input (parameters frozen)
  floor_input   one forward + one backward to the input pixels
  forward       one forward without gradients (reference for the methods that need no backward)
  attention     last-layer class attention (recomputed beside fused attention, no backward)
  rollout       attention rollout (recomputed beside fused attention, no backward)
  gradattn      Chefer et al. gradient-weighted attention (fusion off, one backward cut off at block 0)
  legrad        LeGrad (fusion off, one small backward per block from half the depth)

Each method runs end to end through ``explain()`` (maps on the image grid and statistics included) with the
default options (artifact tokens detected and masked). The functions run interleaved, one call each per round,
and each time is the best of the rounds (robust to a shared machine's load). Ratios are against
``floor_block`` (the stricter one) and ``floor_input``. The target of issue 3: rollout and gradattn
≤ 1.5× one forward + backward at batch 16.

Usage: python benchmarks/bench_attention.py [--device cpu|cuda] [--batch N] [--repeats N] [--out res.json]
(defaults: batch 16 and 10 rounds on CUDA, batch 4 and 3 rounds on CPU)
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import timm
import torch
from _common import device as device_arg
from _common import output_path, positive_int, write_json

import fakelens.explain.transformer  # noqa: F401  (registers the attention methods)
from fakelens.explain import explain
from fakelens.explain.attention import capture_attention
from fakelens.explain.capture import frozen
from fakelens.models import Detector, InputSpec, TokenLayout

METHODS = ("attention", "rollout", "gradattn", "legrad")


def build(device: torch.device) -> Detector:
    torch.manual_seed(0)
    net = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=2)
    det = Detector(
        net,
        input_spec=InputSpec(size=(224, 224)),
        cam_layers=("net.blocks.11.norm1",),
        token_layout=TokenLayout(num_prefix_tokens=1, patch_size=(16, 16)),
        name="vit_base_patch16_224",
    )
    return det.to(device).eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(
    fns: dict[str, Callable[[], Any]], device: torch.device, repeats: int
) -> dict[str, list[float]]:
    """Seconds of each function over ``repeats`` rounds, one call of every function per round (after one
    warm-up round), so that a shared machine's load drifts over all of them alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[k].append(time.perf_counter() - t0)
    return times


def peak_memory(fn: Callable[[], Any], device: torch.device) -> float:
    """Peak CUDA memory (GiB) of one call."""
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    sync(device)
    return torch.cuda.max_memory_allocated(device) / 2**30


def floor_fn(det: Detector, x: torch.Tensor, to: str) -> Callable[[], Any]:
    """Forward + backward of the fake log-odds, cut off at the first block (``"block"``) or the input."""
    net: Any = det.net
    first: torch.nn.Module = net.blocks[0]

    def run() -> Any:
        with torch.enable_grad(), frozen(det):
            store: list[torch.Tensor] = []

            def pre(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
                t = args[0].detach().requires_grad_(True)
                store.append(t)
                return (t, *args[1:])

            xin = x.detach().requires_grad_(to == "input")
            handle = first.register_forward_pre_hook(pre) if to == "block" else None
            try:
                logits = det(xin)
            finally:
                if handle is not None:
                    handle.remove()
            score = logits[:, 1] - logits[:, 0]
            return torch.autograd.grad(score.sum(), store if to == "block" else [xin])

    return run


def exactness(det: Detector, x: torch.Tensor) -> dict[str, Any]:
    """On ``x``'s device: attention recomputed beside fused attention vs the unfused attention (max abs
    difference), the logits under capture vs a plain forward, and each method's map vs the same on CPU
    (max abs difference relative to the map's max)."""
    with torch.no_grad():
        plain = det(x)
    rec = capture_attention(det, x)
    unf = capture_attention(det, x, fused="unfuse")
    out: dict[str, Any] = {
        "recompute_vs_unfused_max_abs": max(
            float((a - b).abs().max()) for a, b in zip(rec.attentions, unf.attentions, strict=True)
        ),
        "logits_under_capture_max_abs": float((rec.logits - plain).abs().max()),
        "paths": [rec.path, unf.path],
    }
    if x.device.type != "cpu":
        cpu = copy.deepcopy(det).cpu()
        here = explain(det, x, list(METHODS))
        there = explain(cpu, x.cpu(), list(METHODS))
        out["device_vs_cpu_rel"] = {
            m: float(
                (here[m].raw.cpu() - there[m].raw).abs().max() / there[m].raw.abs().max().clamp_min(1e-30)
            )
            for m in METHODS
        }
    return out


def forward_fn(det: Detector, x: torch.Tensor) -> Callable[[], Any]:
    """One plain forward without gradients (fused attention): the least a no-backward method can cost."""

    def run() -> Any:
        with torch.no_grad():
            return det(x)

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", type=device_arg, default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--batch", type=positive_int, default=None, help="default: 16 on CUDA, 4 on CPU")
    ap.add_argument("--repeats", type=positive_int, default=None, help="default: 10 on CUDA, 3 on CPU")
    ap.add_argument("--out", type=output_path, default=None, help="write the results as JSON here")
    ap.add_argument("--no-check", action="store_true", help="skip the exactness checks (batch 2)")
    args = ap.parse_args()

    device = args.device
    batch = args.batch if args.batch is not None else (16 if device.type == "cuda" else 4)
    repeats = args.repeats if args.repeats is not None else (10 if device.type == "cuda" else 3)
    det = build(device)
    net: Any = det.net
    x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(device)
    res: dict[str, Any] = {
        "model": "vit_base_patch16_224 (random init, 2 logits)",
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "device_type": device.type,
        "batch": batch,
        "size": 224,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "fused_attn": bool(net.blocks[0].attn.fused_attn),
    }
    fns: dict[str, Callable[[], Any]] = {
        "floor_block": floor_fn(det, x, "block"),
        "floor_input": floor_fn(det, x, "input"),
        "forward": forward_fn(det, x),
    }
    for m in METHODS:
        fns[m] = partial(explain, det, x, [m])
    times = interleaved(fns, device, repeats)
    seconds = {k: min(v) for k, v in times.items()}
    res["seconds_all"] = times
    e = explain(det, x, list(METHODS))
    res["artifact_tokens_flagged"] = {m: len(e[m].meta["artifact_tokens"]) for m in METHODS}
    res["capture_path"] = {m: e[m].meta["capture"] for m in METHODS}
    res["seconds"] = seconds
    if device.type == "cuda":
        res["peak_memory_gib"] = {k: peak_memory(fn, device) for k, fn in fns.items()}
    res["over_floor_block"] = {k: v / seconds["floor_block"] for k, v in seconds.items()}
    res["over_floor_input"] = {k: v / seconds["floor_input"] for k, v in seconds.items()}
    if not args.no_check:
        res["exactness"] = exactness(det, x[:2])
    res["target_met"] = all(res["over_floor_block"][m] <= 1.5 for m in ("rollout", "gradattn"))

    print(f"ViT-B/16 batch {batch} 224px on {res['device']} ({res['threads']} threads), best of {repeats}")
    print(f"{'what':<14}{'seconds':>10}{'x floor_block':>15}{'x floor_input':>15}")
    for k, v in seconds.items():
        print(f"{k:<14}{v:>10.4f}{res['over_floor_block'][k]:>15.2f}{res['over_floor_input'][k]:>15.2f}")
    print(f"rollout and gradattn <= 1.5x floor: {res['target_met']}")
    if "exactness" in res:
        print("exactness:", json.dumps(res["exactness"]))
    if args.out:
        write_json(args.out, res, indent=2)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
