"""Shared fixtures: tiny seeded detectors and inputs; hypothesis profile for CI."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import settings

from fakelens.models import MODELS, create_model

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
