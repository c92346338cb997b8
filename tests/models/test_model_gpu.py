"""The same contracts on a CUDA device: inputs follow the model, probabilities come back on the CPU."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from fakelens.models import (
    MODELS,
    Detector,
    Ensemble,
    create_model,
    load_checkpoint,
    load_detector,
    predict_proba,
    save_checkpoint,
)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def build(name: str) -> Detector:
    kwargs: dict[str, Any] = {}
    if "pretrained" in inspect.signature(MODELS.get(name)).parameters:
        kwargs["pretrained"] = False
    return create_model(name, **kwargs)


@pytest.mark.parametrize("name", MODELS.names())
def test_predict_proba_on_cuda_matches_cpu(name: str) -> None:
    det = build(name)
    pixels = torch.rand(2, 3, *det.input_spec.size, generator=torch.Generator().manual_seed(0))
    cpu = predict_proba(det, pixels)
    det.cuda()
    gpu = predict_proba(det, pixels)  # pixels on the CPU are moved to the model's device
    assert gpu.device.type == "cpu" and gpu.shape == (2,)
    assert torch.allclose(cpu, gpu, atol=1e-2)
    with torch.no_grad():
        logits = det(det.input_spec.normalize(pixels.cuda()))
    assert logits.device.type == "cuda" and torch.isfinite(logits).all()


def test_checkpoint_loads_onto_cuda(tmp_path: Path) -> None:
    det = create_model("tiny-vit", seed=4)
    out = save_checkpoint(det.cuda(), tmp_path / "v")  # saved from the GPU
    loaded = load_checkpoint(out, device="cuda")
    assert loaded.device.type == "cuda"
    cpu = load_checkpoint(out)
    x = torch.randn(1, 3, *det.input_spec.size)
    with torch.no_grad():
        assert torch.allclose(loaded(x.cuda()).cpu(), cpu(x), atol=1e-3)


def test_ensemble_on_cuda(tmp_path: Path) -> None:
    ens = Ensemble([create_model("tiny-cnn", seed=1), create_model("tiny-vit", seed=2)], rule="logit_mean")
    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)) for _ in range(3)]
    cpu = [v.fake_probability for v in ens.predict(imgs)]
    gpu = [v.fake_probability for v in ens.to("cuda").predict(imgs)]
    assert gpu == pytest.approx(cpu, abs=1e-3)
    loaded = load_detector(save_checkpoint(ens, tmp_path / "e"), device="cuda")
    assert isinstance(loaded, Ensemble) and all(m.device.type == "cuda" for m in loaded.members)
