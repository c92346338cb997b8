"""Shared fixtures: tiny seeded detectors and inputs; hypothesis profile for CI."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import settings
from torch import nn

from fakelens.models import MODELS, Detector, InputSpec, create_model

settings.register_profile("ci", max_examples=40, derandomize=True, deadline=None)
settings.register_profile("dev", max_examples=40, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

TINY_MODELS = ["tiny-cnn", "tiny-vit"]

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(params=TINY_MODELS)
def tiny_detector(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    return create_model(request.param)


def model_input(detector, batch: int = 2, seed: int = 0) -> torch.Tensor:  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, *detector.input_spec.size, generator=g)


def registered_models() -> list[str]:
    return MODELS.names()


class _Flattens(nn.Module):
    """``.view``s its activations: fails on channels-last input (a common hand-written classifier)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Linear(8 * 16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.bn(self.conv(x))))
        return self.fc(x.view(x.size(0), -1))


def flattening_detector() -> Detector:
    """A small CNN detector whose network ``.view``s its activations."""
    torch.manual_seed(0)
    return Detector(_Flattens(), input_spec=InputSpec(size=(32, 32)), cam_layers=("net.conv",)).eval()
