"""The Detector contract, checked for every registered model (a new model is tested when registered)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from fakelens.errors import ConfigError
from fakelens.models import MODELS, Detector, InputSpec, create_model


def build(name: str) -> Detector:
    """A registered model without pretrained weights (fast, offline)."""
    kwargs: dict[str, Any] = {}
    if "pretrained" in inspect.signature(MODELS.get(name)).parameters:
        kwargs["pretrained"] = False
    return create_model(name, **kwargs)


@pytest.mark.parametrize("name", MODELS.names())
def test_forward_gives_finite_logits_and_layers_resolve(name: str) -> None:
    det = build(name)
    assert not det.training
    assert det.labels and det.cam_layers
    assert det.config["arch"] == name and det.name == name
    h, w = det.input_spec.size
    outputs: dict[str, Tensor] = {}
    hooks = []
    for layer in det.cam_layers:
        module: nn.Module = det.layer(layer)
        hooks.append(
            module.register_forward_hook(lambda _m, _i, out, layer=layer: outputs.__setitem__(layer, out))
        )
    try:
        with torch.no_grad():
            logits = det(torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(0)))
    finally:
        for hook in hooks:
            hook.remove()
    assert logits.shape == (2, len(det.labels))
    assert torch.isfinite(logits).all()
    probs = det.fake_probability(logits)
    assert probs.shape == (2,) and ((probs >= 0) & (probs <= 1)).all()
    for layer in det.cam_layers:
        out = outputs[layer]
        if det.token_layout is not None and out.ndim == 3:
            fmap = det.token_layout.to_map(out, (h, w))
            assert fmap.shape == (2, out.shape[2], *det.token_layout.grid((h, w)))
        else:
            assert out.ndim == 4 and out.shape[0] == 2


def test_timm_models_are_registered() -> None:
    assert {"effnet-lite0", "vit-small-reg4", "tiny-cnn", "tiny-vit"} <= set(MODELS.names())


def test_a_wrong_wrap_is_refused() -> None:
    """An ImageNet network wrapped under two labels would be read as real/fake from two of its 1000 logits."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 10))
    det = Detector(net, labels=("real", "fake"))
    with pytest.raises(ConfigError, match="outputs 10 logits but has 2 labels"):
        det(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ConfigError, match="'fake' appears more than once"):
        Detector(net, labels=("fake", "fake"))
    with pytest.raises(ValueError):  # ConfigError is a ValueError: an older `except ValueError` still holds
        det(torch.zeros(1, 3, 4, 4))


@pytest.mark.parametrize(
    ("net", "shape"),
    [
        (nn.Conv2d(3, 2, 3), r"\(1, 2, 2, 2\)"),  # a feature map: torch's "only one element tensors" later
        (nn.Sequential(nn.Flatten(), nn.Linear(48, 2), nn.Flatten(0)), r"\(2,\)"),
    ],
)
def test_an_output_that_is_not_logits_is_one_clear_error(net: nn.Module, shape: str) -> None:
    from fakelens import explain_images

    det = Detector(net, labels=("real", "fake"), input_spec=InputSpec(size=(4, 4)))
    with pytest.raises(ConfigError, match=rf"outputs {shape}, not logits of shape \(N, 2\)"):
        det(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ConfigError, match="not logits of shape"):
        explain_images(det, [Image.new("RGB", (8, 8))], [])


def test_ensemble_members_must_be_detectors() -> None:
    from fakelens.models import Ensemble

    det = create_model("tiny-cnn")
    for odd in ("tiny-cnn", Ensemble([det])):
        with pytest.raises(TypeError, match="ensemble members must be Detectors"):
            Ensemble([det, odd])  # type: ignore[list-item]
