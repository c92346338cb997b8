"""On a CUDA device the sweep, the badge and the whole run give the CPU's numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fakelens.models import create_model
from fakelens.trust.badge import robustness_badge
from fakelens.trust.runner import TrustConfig, discover_items, run_trust
from fakelens.trust.sweep import run_sweep, view_plan
from fakelens.trust.transforms import TransformFamily

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_sweep_and_badge_match_cpu() -> None:
    det = create_model("tiny-cnn")
    px = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    plan = view_plan(TransformFamily.standard(), ("black", "mean", "reflect"))
    cpu = run_sweep(det, px, plan, ["gradcam", "layercam", "eigencam"])
    gpu = run_sweep(det.to("cuda"), px, plan, ["gradcam", "layercam", "eigencam"])
    for m in ("gradcam", "layercam", "eigencam"):
        a, b = cpu.view_metrics(m), gpu.view_metrics(m)
        for k in ("eq_cosine", "border_mass", "fill_fraction", "corner_mass", "score"):
            torch.testing.assert_close(a[k], b[k], atol=2e-3, rtol=2e-3)
    badge = robustness_badge(det, px, "gradcam")
    assert badge["views"] and 0 <= badge["border_mass"] <= 1


def test_run_on_cuda(tmp_path: Path, blob_dir: tuple[Path, Path]) -> None:
    det = create_model("tiny-cnn").to("cuda")
    items = discover_items([blob_dir[0]], masks=blob_dir[1])
    cfg = TrustConfig(methods=("gradcam", "hirescam"), family="quick", steps=4, road_percentages=(30,))
    run = run_trust(det, items, tmp_path / "o", cfg)
    assert run.evaluated == 3 and run.summary["recommendation"]["text"]
