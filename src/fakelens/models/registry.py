"""The model registry: ``@register_model(name)`` on a factory returning a :class:`Detector`."""

from __future__ import annotations

from typing import Any

import torch

from fakelens.models.base import Detector
from fakelens.registry import Registry

MODELS: Registry[Detector] = Registry("model")
register_model = MODELS.register

PLAIN_CLASSIFIERS: frozenset[str] = frozenset({"effnet-lite0-imagenet"})
"""Registered models that are trained classifiers of other things (ImageNet), not real/fake detectors: every
other registered name is an architecture whose real/fake head is untrained until ``fakelens train``."""


def untrained_by_name(name: str) -> bool:
    """Whether ``--model name`` builds an architecture with a random real/fake head (a registered name that
    is no :data:`PLAIN_CLASSIFIERS` entry), not a trained detector."""
    return name in MODELS and name not in PLAIN_CLASSIFIERS


def untrained_members(model: Any) -> list[str]:
    """Names of a detector's or an ensemble's members whose real/fake head is random
    (:attr:`Detector.untrained`)."""
    members = getattr(model, "members", None) or [model]
    return [m.name for m in members if getattr(m, "untrained", False)]


def create_model(name: str, **kwargs: Any) -> Detector:
    """Build the registered detector ``name`` in eval mode."""
    det = MODELS.create(name, **kwargs)
    det.name = name if det.name == "custom" else det.name
    return det.eval()


def seeded_init(seed: int) -> Any:
    """Context manager: run the model's random initialisation from ``seed`` without touching global RNG."""
    rng = torch.random.fork_rng(devices=[])

    class _Ctx:
        def __enter__(self) -> None:
            rng.__enter__()
            torch.manual_seed(seed)

        def __exit__(self, *exc: Any) -> None:
            rng.__exit__(*exc)

    return _Ctx()
