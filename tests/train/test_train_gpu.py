"""Training on CUDA: mixed precision and channels_last, checkpoints that load and agree on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fakelens.models import load_checkpoint
from fakelens.train.evaluate import evaluate
from fakelens.train.loop import TrainConfig, train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_amp_channels_last_training_and_cpu_reload(tmp_path: Path, folder_data: Path) -> None:
    res = train(
        TrainConfig(
            out=str(tmp_path / "run"),
            model="tiny-cnn",
            data=str(folder_data),
            epochs=3,
            batch_size=8,
            augment="light",
            device="cuda",
            aux_mask=True,
            patience=0,
        ),
        progress=False,
    )
    assert res.best is not None and res.best_auc is not None and res.best_auc > 0.9
    prov = json.loads((res.best / "config.json").read_text())["provenance"]
    expected = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    assert prov["precision"] == expected and prov["channels_last"] is True and "cuda" in prov["device"]
    det = load_checkpoint(res.best)  # on the CPU, float32
    cpu = evaluate(det, data=folder_data, device="cpu")
    gpu = evaluate(load_checkpoint(res.best, device="cuda"), data=folder_data, device="cuda")
    assert cpu["overall"]["auc"] == pytest.approx(gpu["overall"]["auc"], abs=0.02)


def test_resume_on_cuda_runs_and_stays_close(tmp_path: Path, folder_data: Path) -> None:
    kw = {
        "model": "tiny-cnn",
        "data": str(folder_data),
        "epochs": 2,
        "batch_size": 8,
        "device": "cuda",
        "augment": "light",
    }
    train(TrainConfig(out=str(tmp_path / "a"), **kw), progress=False)  # type: ignore[arg-type]
    train(TrainConfig(out=str(tmp_path / "b"), **kw), progress=False, max_epochs=1)  # type: ignore[arg-type]
    train(TrainConfig(out=str(tmp_path / "b"), resume=True, **kw), progress=False)  # type: ignore[arg-type]
    import safetensors.torch

    wa = safetensors.torch.load_file(str(tmp_path / "a" / "last" / "model.safetensors"))
    wb = safetensors.torch.load_file(str(tmp_path / "b" / "last" / "model.safetensors"))
    # GPU kernels need not be deterministic: close, not necessarily equal
    diffs = [float((wa[k].float() - wb[k].float()).abs().max()) for k in wa if wa[k].is_floating_point()]
    assert np.max(diffs) < 5e-2
