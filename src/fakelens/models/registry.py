"""The model registry: ``@register_model(name)`` on a factory returning a :class:`Detector`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from fakelens.models.base import Detector
from fakelens.registry import Registry

MODELS: Registry[Detector] = Registry("model")

_TRAINED: set[str] = set()


def register_model(
    name: str, *, trained: bool = False
) -> Callable[[Callable[..., Detector]], Callable[..., Detector]]:
    """Register a factory returning a :class:`Detector` under ``name``. ``trained=True``: the factory loads
    trained weights (e.g. an ImageNet classifier, or your detector's own), so what it builds is not marked
    :attr:`~Detector.untrained`; every other registered name is an architecture whose real/fake head is
    random until ``fakelens train``."""
    register = MODELS.register(name)

    def deco(factory: Callable[..., Detector]) -> Callable[..., Detector]:
        register(factory)  # a clash raises here, before the mark changes
        (_TRAINED.add if trained else _TRAINED.discard)(name)
        return factory

    return deco


def untrained_by_name(name: str) -> bool:
    """Whether ``--model name`` builds an architecture with a random real/fake head (a registered name not
    registered ``trained=True``), not a trained detector."""
    return name in MODELS and name not in _TRAINED


def untrained_members(model: Any) -> list[str]:
    """Names of a detector's or an ensemble's members whose real/fake head is random
    (:attr:`Detector.untrained`)."""
    members = getattr(model, "members", None) or [model]
    return [m.name for m in members if getattr(m, "untrained", False)]


def create_model(name: str, **kwargs: Any) -> Detector:
    """Build the registered detector ``name`` in eval mode, marked :attr:`~Detector.untrained` unless it was
    registered ``trained=True``. A factory that records no ``config["arch"]`` gets ``{"arch": name,
    **kwargs}``, so its checkpoints load by name: on loading, every ``config`` key but ``arch`` is passed
    back to the factory."""
    det = MODELS.create(name, **kwargs)
    det.name = name if det.name == "custom" else det.name
    if det.config.get("arch") is None:  # e.g. built by wrap_model: rebuilt from the registry on loading
        det.config = {"arch": name, **kwargs}
    det.untrained = untrained_by_name(name)
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
