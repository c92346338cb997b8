"""Exact ScoreCAM and AblationCAM: fakelens, pytorch-grad-cam and torchcam side by side in one process.

Same random-init models (2 logits, target = fake log-odds), batch 1, every channel ("exact"):
  resnet18   torchvision ResNet-18, layer4 (512 channels)  — the CPU case
  resnet50   torchvision ResNet-50, layer4 (2048 channels) — the GPU case
  vit_b16    timm ViT-B/16, blocks.11.norm1 (768 channels, 14×14 patch grid)

Rows: fakelens ScoreCAM (options that reproduce pytorch-grad-cam's map: softmax weights, align_corners=True;
the cost does not depend on them) at its default precision (on CUDA: fp16 after the checked first chunk)
and, on CUDA, in full precision (amp=None); its variants, all in full precision (--variants: CPU without
BatchNorm folding; CUDA with folding, with cuDNN autotuning, chunk 1024; both: NCHW without folding or
autotuning); forced autocast rows (bf16 with --amp or on CUDA, fp16 on CUDA); with --compile, compile=True
(on CUDA also with the folded copy); torchcam ScoreCAM (its default chunk 32, and on CUDA also our chunk
size), pytorch-grad-cam ScoreCAM (its default chunk 16), fakelens AblationCAM and pytorch-grad-cam
AblationCAM (chunk 32). "agree" is the max |difference| to the reference row after pytorch-grad-cam's
normalisation (ReLU, min-max, resize, min-max); pytorch-grad-cam for the exact rows, our exact map for the
lossy rows. On CUDA (or with --strict) "vs fp32" is the max/mean |difference| of each ScoreCAM row's map to
its own implementation's map computed once more with TF32 off (strict fp32): the rounding each row runs at,
ours and torchcam's alike (cuDNN's TF32 convolutions are PyTorch's default). Every method runs once per
round, the rounds interleave the methods, and the best round counts (other processes may share the CPU: the
load average is recorded). Every row first runs once untimed, on the CPU too (recorded as first_call_s:
cuDNN autotuning, allocator warm-up, BatchNorm folding, tracing, compilation), so no timed round pays for it.

Usage:
  python benchmarks/bench_perturbation.py                       # CPU: resnet18, 2 rounds
  python benchmarks/bench_perturbation.py --device cuda --out $OUT/perturb.json   # resnet50 + vit_b16
  python benchmarks/bench_perturbation.py --models resnet50 --rounds 1 --quick     # fewer rows
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam prints a progress bar per image

import cv2
import numpy as np
import torch
import torchvision
from _common import comma_list, environment, non_negative_int, output_path, positive_int, write_json
from _common import device as device_arg

import fakelens.explain.perturbation as pert
from fakelens.explain.targets import FakeLogOdds
from fakelens.models import Detector, InputSpec, TokenLayout

MODELS = ("resnet18", "resnet50", "vit_b16")
PEERS = ("pgc", "torchcam")


def build(model: str, device: torch.device, size: int) -> tuple[Detector, Any]:
    torch.manual_seed(0)
    if model in ("resnet18", "resnet50"):
        net = getattr(torchvision.models, model)(weights=None, num_classes=2)
        det = Detector(net, input_spec=InputSpec(size=(size, size)), cam_layers=("net.layer4",))
        return det.to(device).eval(), None
    if model != "vit_b16":
        raise ValueError(f"unknown model {model!r} (known: {', '.join(MODELS)})")
    import timm

    net = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=2, img_size=size)
    g = size // 16
    det = Detector(
        net,
        input_spec=InputSpec(size=(size, size)),
        cam_layers=("net.blocks.11.norm1",),
        token_layout=TokenLayout(num_prefix_tokens=1, patch_size=(16, 16)),
    )

    def reshape(t: torch.Tensor) -> torch.Tensor:
        return t[:, 1:, :].reshape(t.size(0), g, g, t.size(2)).permute(0, 3, 1, 2)

    return det.to(device).eval(), reshape


def fake_log_odds(out: torch.Tensor) -> torch.Tensor:
    return out[1] - out[0]


def _minmax(m: np.ndarray) -> np.ndarray:
    m = m - m.min()
    return m / (1e-7 + m.max())


def peer_normalise(raw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """pytorch-grad-cam's pipeline: ReLU, min-max, cv2 resize, min-max."""
    maps = [cv2.resize(np.float32(_minmax(m)), (size[1], size[0])) for m in np.maximum(raw, 0)]
    return np.float32([_minmax(m) for m in maps])


@dataclass
class Row:
    name: str
    method: str
    fn: Callable[[], np.ndarray]
    reference: str | None = None
    note: str = ""
    times: list[float] = field(default_factory=list)
    result: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def rows_for(model: str, det: Detector, x: torch.Tensor, reshape: Any, args: argparse.Namespace) -> list[Row]:
    target = FakeLogOdds(det.fake_index)
    layer_name = det.cam_layers[0]
    layer = det.layer(layer_name)
    hw = det.input_spec.size
    cuda = x.device.type == "cuda"
    rows: list[Row] = []

    def ours(explainer: pert.Perturbation, row: list[Row]) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            raw, meta = explainer(det, x, target, [layer_name])
            row[0].meta = {k: v for k, v in meta.items() if k not in ("scores", "probabilities")}
            out = raw.float().cpu().numpy()
            if isinstance(explainer, pert.AblationCAM):  # they divide the drop by y, we by |y|
                out = out * np.sign(meta["scores"].float().cpu().numpy())[:, None, None]
            return peer_normalise(out, hw)

        return run

    def add_ours(
        name: str, method: str, explainer: pert.Perturbation, reference: str | None, note: str
    ) -> None:
        holder: list[Row] = []
        r = Row(name, method, ours(explainer, holder), reference, note)
        holder.append(r)
        rows.append(r)

    # ---- ScoreCAM
    same_as_pgc: dict[str, Any] = {"weights": "softmax", "align_corners": True}
    add_ours(
        "fakelens",
        "scorecam",
        pert.ScoreCAM(**same_as_pgc),
        "pytorch-grad-cam",
        "exact; default precision (CUDA: fp16 where its probe passes)",
    )
    same_as_pgc["amp"] = None  # the variants: full precision (TF32 convolutions on CUDA, PyTorch's default)
    if cuda:
        add_ours(
            "fakelens amp=None",
            "scorecam",
            pert.ScoreCAM(**same_as_pgc),
            "pytorch-grad-cam",
            "exact; full precision",
        )
    if args.variants:
        add_ours(
            "fakelens linear_stem=False",
            "scorecam",
            pert.ScoreCAM(**same_as_pgc, linear_stem=False),
            "pytorch-grad-cam",
            "exact; every masked input through the whole network",
        )
    if args.variants and not cuda:
        add_ours(
            "fakelens workers=1",
            "scorecam",
            pert.ScoreCAM(**same_as_pgc, workers=1),
            "pytorch-grad-cam",
            "exact; each chunk over all intra-op threads, not split over 2 threads",
        )
        add_ours(
            "fakelens fold_bn=False",
            "scorecam",
            pert.ScoreCAM(**same_as_pgc, fold_bn=False),
            "pytorch-grad-cam",
            "exact; channels-last input only",
        )
    if args.variants and cuda:
        add_ours(
            "fakelens fold_bn=True",
            "scorecam",
            pert.ScoreCAM(**same_as_pgc, fold_bn=True),
            "pytorch-grad-cam",
            "exact; + BatchNorm folded (copy cached after the first call)",
        )
        add_ours(
            "fakelens autotune=True",
            "scorecam",
            pert.ScoreCAM(**same_as_pgc, autotune=True),
            "pytorch-grad-cam",
            "exact; + cuDNN autotuning",
        )
        add_ours(
            "fakelens batch_size=1024",
            "scorecam",
            pert.ScoreCAM(**same_as_pgc, batch_size=1024),
            "pytorch-grad-cam",
            "exact; chunk 1024",
        )
    if args.compile:
        add_ours(
            "fakelens compile=True",
            "scorecam",
            pert.ScoreCAM(**same_as_pgc, compile=True),
            "pytorch-grad-cam",
            "exact; full chunks through torch.compile (compiled in the warm-up)",
        )
        if cuda:
            add_ours(
                "fakelens compile+fold",
                "scorecam",
                pert.ScoreCAM(**same_as_pgc, compile=True, fold_bn=True),
                "pytorch-grad-cam",
                "exact; torch.compile of the BatchNorm-folded copy",
            )
    if args.variants:
        add_ours(
            "fakelens plain",
            "scorecam",
            pert.ScoreCAM(**same_as_pgc, fold_bn=False, channels_last=False, autotune=False),
            "pytorch-grad-cam",
            "exact; NCHW, no folding, no autotuning",
        )
    if args.amp or cuda:
        for amp in ("bf16", "fp16") if cuda else ("bf16",):
            add_ours(
                f"fakelens amp={amp}",
                "scorecam",
                pert.ScoreCAM(**{**same_as_pgc, "amp": amp}),
                "fakelens",
                "forced, unchecked",
            )
    if reshape is None and "torchcam" in args.peers:
        from torchcam.methods import ScoreCAM as TorchcamScoreCAM

        def torchcam_fn(bs: int) -> Callable[[], np.ndarray]:
            def run() -> np.ndarray:
                with TorchcamScoreCAM(det, layer_name, batch_size=bs, input_shape=(3, *hw)) as ex:
                    with torch.no_grad():
                        det(x)
                    cam = ex(targets=fake_log_odds)[0]
                return cam.float().cpu().numpy()

            return run

        rows.append(Row("torchcam (bs 32)", "scorecam", torchcam_fn(32), None, "its default chunk"))
        if cuda:
            bs = args.peer_batch or 256
            rows.append(Row(f"torchcam (bs {bs})", "scorecam", torchcam_fn(bs), None, "a large chunk"))
    if "pgc" in args.peers and not args.quick:
        from pytorch_grad_cam import ScoreCAM as PgcScoreCAM

        def pgc_score() -> np.ndarray:
            with PgcScoreCAM(model=det, target_layers=[layer], reshape_transform=reshape) as cam:
                return cam(input_tensor=x, targets=[fake_log_odds] * x.shape[0])

        rows.append(Row("pytorch-grad-cam", "scorecam", pgc_score, None, "its default chunk 16"))

    # ---- AblationCAM
    add_ours(
        "fakelens",
        "ablationcam",
        pert.AblationCAM(),
        "pytorch-grad-cam" if reshape is None else None,
        "exact; default precision",
    )
    if "pgc" in args.peers:
        from pytorch_grad_cam import AblationCAM as PgcAblationCAM
        from pytorch_grad_cam.ablation_layer import AblationLayer, AblationLayerVit

        def pgc_ablation() -> np.ndarray:
            abl = AblationLayerVit() if reshape is not None else AblationLayer()
            with PgcAblationCAM(
                model=det, target_layers=[layer], reshape_transform=reshape, ablation_layer=abl, batch_size=32
            ) as cam:
                return cam(input_tensor=x, targets=[fake_log_odds] * x.shape[0])

        note = "chunk 32"
        if reshape is not None:
            note += "; ablates with min−1e7 in every token: maps differ by design"
        rows.append(Row("pytorch-grad-cam", "ablationcam", pgc_ablation, None, note))
    return rows


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_model(model: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    det, reshape = build(model, device, args.size)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=g).to(device)
    rows = rows_for(model, det, x, reshape, args)
    warm: dict[str, float] = {}
    # warm-up, untimed, every row on every device: cuDNN plans and autotuning, allocator, lazy init,
    # BatchNorm folding, tracing, compilation
    for r in rows:
        sync(device)
        t0 = time.perf_counter()
        r.fn()
        sync(device)
        warm[f"{r.method}/{r.name}"] = time.perf_counter() - t0
        print(f"  [{model} warm-up] {r.method:<11} {r.name:<26} {warm[f'{r.method}/{r.name}']:8.3f} s")
    for rnd in range(args.rounds):
        for r in rows:
            sync(device)
            t0 = time.perf_counter()
            out = r.fn()
            sync(device)
            r.times.append(time.perf_counter() - t0)
            r.result = out
            print(f"  [{model} round {rnd + 1}] {r.method:<11} {r.name:<26} {r.times[-1]:8.3f} s", flush=True)
    strict = strict_references(rows, device) if device.type == "cuda" or args.strict else {}
    # agreement
    by_key = {(r.method, r.name): r for r in rows}
    records = []
    for r in rows:
        agree = None
        if r.reference is not None and r.result is not None:
            ref = by_key.get((r.method, r.reference))
            if ref is not None and ref.result is not None and ref is not r:
                agree = float(np.abs(r.result - ref.result).max())
        records.append(
            {
                "model": model,
                "method": r.method,
                "name": r.name,
                "note": r.note,
                "best_s": min(r.times),
                "times_s": r.times,
                "per_image_s": min(r.times) / args.batch,
                "agree_max_abs": agree,
                "agree_with": r.reference,
                "meta": r.meta,
                "first_call_s": warm.get(f"{r.method}/{r.name}"),
                **vs_strict(r, strict, det.input_spec.size),
            }
        )
    # ratios against peers
    for rec in records:
        if rec["name"] != "fakelens":
            continue
        for peer in records:
            if peer["method"] == rec["method"] and not peer["name"].startswith("fakelens"):
                rec.setdefault("speedup_vs", {})[peer["name"]] = peer["best_s"] / rec["best_s"]
    del det
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"model": model, "rows": records}


@contextlib.contextmanager
def strict_fp32() -> Iterator[None]:
    """Full fp32 on CUDA: TF32 off for cuDNN convolutions and matmuls (PyTorch's default has it on for
    convolutions, which every timed row — ours and the peers' — runs with)."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def _family(name: str) -> str:
    return "fakelens" if name.startswith("fakelens") else name


def strict_references(rows: list[Row], device: torch.device) -> dict[str, np.ndarray]:
    """ScoreCAM maps in strict fp32 (untimed), one per implementation family: every timed row's rounding
    error is measured against its own implementation's strict map."""
    out: dict[str, np.ndarray] = {}
    names = {r.name for r in rows if r.method == "scorecam"}
    ours = "fakelens amp=None" if "fakelens amp=None" in names else "fakelens"  # no autocast to turn off
    for r in rows:
        family = _family(r.name)
        if r.method != "scorecam" or family in out or r.name.startswith("pytorch-grad-cam"):
            continue
        if family == "fakelens" and r.name != ours:
            continue
        meta = r.meta
        with strict_fp32():
            out[family] = r.fn()
        r.meta = meta
        sync(device)
    return out


def vs_strict(r: Row, strict: dict[str, np.ndarray], hw: tuple[int, int]) -> dict[str, float]:
    """Max and mean |Δ| of the row's map to its family's strict-fp32 map (pytorch-grad-cam's
    normalisation for both; torchcam returns its h×w grid)."""
    ref = strict.get(_family(r.name)) if r.method == "scorecam" else None
    if ref is None or r.result is None:
        return {}
    got = r.result
    if got.shape[-2:] != tuple(hw):
        got, ref = peer_normalise(got, hw), peer_normalise(ref, hw)
    d = np.abs(got - ref)
    return {"vs_strict_fp32_max_abs": float(d.max()), "vs_strict_fp32_mean_abs": float(d.mean())}


def paired(model: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Short ScoreCAM runs on ``layer1`` (64 channels on ResNet-18: every masked input still runs the whole
    network), ours and the peers back to back, ``args.paired`` times: the median of the per-pair ratios is
    robust to load that drifts between the long exact runs."""
    det, _ = build(model, device, args.size)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=g).to(device)
    layer_name = "net.layer1"
    layer = det.layer(layer_name)
    target = FakeLogOdds(det.fake_index)
    # fold_bn=True: the exact run on layer4 folds (>= 256 forwards), and the folded copy is cached per model
    ours = pert.ScoreCAM(weights="softmax", align_corners=True, fold_bn=True)
    from pytorch_grad_cam import ScoreCAM as PgcScoreCAM
    from torchcam.methods import ScoreCAM as TorchcamScoreCAM

    channels = [0]

    def run_ours() -> None:
        channels[0] = ours(det, x, target, [layer_name])[1]["channels_total"]

    def run_torchcam() -> None:
        with TorchcamScoreCAM(det, layer_name, batch_size=32, input_shape=(3, args.size, args.size)) as ex:
            with torch.no_grad():
                det(x)
            ex(targets=fake_log_odds)

    def run_pgc() -> None:
        with PgcScoreCAM(model=det, target_layers=[layer]) as cam:
            cam(input_tensor=x, targets=[fake_log_odds] * x.shape[0])

    fns = {"fakelens": run_ours, "torchcam (bs 32)": run_torchcam, "pytorch-grad-cam": run_pgc}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for f in fns.values():
        f()  # warm-up
    for i in range(args.paired):
        for name, f in fns.items():
            sync(device)
            t0 = time.perf_counter()
            f()
            sync(device)
            times[name].append(time.perf_counter() - t0)
        line = ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items())
        print(f"  [{model} paired {i + 1}] {line}", flush=True)
    ratios = {
        k: float(np.median([t / o for t, o in zip(v, times["fakelens"], strict=True)]))
        for k, v in times.items()
        if k != "fakelens"
    }
    return {
        "model": model,
        "layer": layer_name,
        "channels": channels[0],
        "times_s": times,
        "median_speedup_vs": ratios,
    }


WARMUP = "every row: one untimed warm-up call (first_call_s) before its timed rounds"


def print_table(results: list[dict[str, Any]]) -> None:
    print()
    head = f"{'model':<9} {'method':<11} {'implementation':<27} {'best s':>8} {'rounds (s)':<22}"
    head += f" {'agree':>9} {'vs fp32 max/mean':>15}  note"
    print(head)
    print("-" * len(head))
    for res in results:
        for r in res["rows"]:
            times = ", ".join(f"{t:.2f}" for t in r["times_s"])
            agree = "" if r["agree_max_abs"] is None else f"{r['agree_max_abs']:.1e}"
            fp32 = r.get("vs_strict_fp32_max_abs")
            fp32_s = "" if fp32 is None else f"{fp32:.1e}/{r['vs_strict_fp32_mean_abs']:.1e}"
            print(
                f"{r['model']:<9} {r['method']:<11} {r['name']:<27} {r['best_s']:8.3f} {times:<22} "
                f"{agree:>9} {fp32_s:>15}  {r['note']}"
            )
    print()
    for res in results:
        for r in res["rows"]:
            for peer, ratio in r.get("speedup_vs", {}).items():
                print(f"{r['model']:<9} {r['method']:<11} fakelens is {ratio:6.2f}x faster than {peer}")
            if r["name"] == "fakelens":
                m = r["meta"]
                print(
                    f"{r['model']:<9} {r['method']:<11} fakelens meta: "
                    f"channels_used={m.get('channels_used')} "
                    f"of {m.get('channels_total')}, forwards={m.get('forwards')}, "
                    f"partial_forwards={m.get('partial_forwards')}, batch_size={m.get('batch_size')}, "
                    f"fold_bn={m.get('fold_bn')}, shortcut={m.get('shortcut')}"
                )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", type=device_arg, default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument(
        "--models",
        type=comma_list(MODELS),
        default=None,
        help="comma list of resnet18,resnet50,vit_b16 (default: resnet18 on CPU, resnet50,vit_b16 on CUDA)",
    )
    p.add_argument("--size", type=positive_int, default=224)
    p.add_argument("--batch", type=positive_int, default=1)
    p.add_argument("--rounds", type=positive_int, default=None, help="default 2 on CPU, 3 on CUDA")
    p.add_argument(
        "--peers",
        type=comma_list((*PEERS, "none")),
        default="pgc,torchcam",
        help="comma list of pgc,torchcam (or 'none')",
    )
    p.add_argument(
        "--peer-batch", type=positive_int, default=None, help="extra torchcam row with this chunk (CUDA)"
    )
    p.add_argument("--variants", action="store_true", help="also ScoreCAM without folding / channels-last")
    p.add_argument(
        "--compile",
        action="store_true",
        help="also ScoreCAM with compile=True (torch.compile of the perturbed forwards)",
    )
    p.add_argument("--amp", action="store_true", help="also ScoreCAM with bf16 autocast (always on CUDA)")
    p.add_argument(
        "--strict",
        action="store_true",
        help="also measure each ScoreCAM row against its strict-fp32 map (always on CUDA)",
    )
    p.add_argument("--quick", action="store_true", help="skip pytorch-grad-cam's ScoreCAM (the slowest row)")
    p.add_argument(
        "--paired",
        type=non_negative_int,
        default=0,
        help="also N back-to-back short ScoreCAM runs on layer1 "
        "(ResNets): median per-pair speed-up, robust to drifting load",
    )
    p.add_argument("--paired-only", action="store_true", help="only the --paired measurement")
    p.add_argument("--out", type=output_path, default=None, help="write the results as JSON here")
    args = p.parse_args()
    device = args.device
    if "none" in args.peers and len(args.peers) > 1:
        p.error("--peers: 'none' or a list of pgc,torchcam, not both")
    models = args.models or (["resnet50", "vit_b16"] if device.type == "cuda" else ["resnet18"])
    if args.rounds is None:
        args.rounds = 3 if device.type == "cuda" else 2
    args.peers = [] if args.peers == ["none"] else args.peers
    env = environment(device)
    env["protocol"] = WARMUP
    print(json.dumps(env, indent=1), flush=True)
    print(f"{WARMUP}; then {args.rounds} timed round(s), the best counts", flush=True)
    t0 = time.perf_counter()
    results = [] if args.paired_only else [run_model(m, args, device) for m in models]
    pairs = [paired(m, args, device) for m in models if args.paired and m.startswith("resnet")]
    env["loadavg_end"] = list(os.getloadavg())
    env["wall_s"] = time.perf_counter() - t0
    print_table(results)
    for pr in pairs:
        for peer, ratio in pr["median_speedup_vs"].items():
            print(
                f"{pr['model']:<9} scorecam    paired on {pr['layer']} ({pr['channels']} channels, "
                f"{args.paired} pairs): fakelens is {ratio:5.2f}x faster than {peer} (median)"
            )
    load = f"load average start {env['loadavg_start']}, end {env['loadavg_end']}"
    print(f"\n{load}; wall {env['wall_s']:.0f} s")
    if args.out:
        write_json(args.out, {"environment": env, "args": vars(args), "results": results, "paired": pairs})
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
