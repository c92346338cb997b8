"""What is explained: a scalar score per image computed from the logits.

The default is the **fake log-odds** — ``z_fake − z_real`` for two logits, ``z`` for one,
``z_fake − logsumexp(z_others)`` for more — so a heatmap explains the *decision*, not one arbitrary
logit (a single-logit target gives poor maps when the prediction is wrong: pytorch-grad-cam #325, #428).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from fakelens.errors import UnknownNameError
from fakelens.models.base import Detector


class Target(Protocol):
    @property
    def name(self) -> str:
        """Key under which this target's results are stored."""
        ...

    def __call__(self, logits: Tensor) -> Tensor:
        """``(B, n)`` logits → ``(B,)`` scores, each row's from that row's logits alone: the perturbation
        methods score chunks of perturbed copies that mix the images of a batch, so a target that depends
        on which image a row is (one class per image) is not supported — explain such images one at a
        time, or group them by target."""
        ...


@dataclass(frozen=True)
class FakeLogOdds:
    """``log p(fake) − log p(not fake)`` computed from the logits."""

    fake_index: int
    name: str = "fake"

    def __call__(self, logits: Tensor) -> Tensor:
        if logits.shape[1] == 1:
            return logits[:, 0]
        z = logits[:, self.fake_index]
        others = torch.cat([logits[:, : self.fake_index], logits[:, self.fake_index + 1 :]], dim=1)
        if others.shape[1] == 1:
            return z - others[:, 0]
        return z - torch.logsumexp(others, dim=1)


@dataclass(frozen=True)
class ClassLogit:
    """The raw logit of one class (what peers explain by default)."""

    index: int
    name: str = "class"

    def __call__(self, logits: Tensor) -> Tensor:
        return logits[:, self.index]


@dataclass(frozen=True)
class Negative:
    """Negative evidence: the score of ``target`` with its sign flipped (what speaks *against* it)."""

    target: Target
    name: str = "negative"

    def __call__(self, logits: Tensor) -> Tensor:
        return -self.target(logits)


@dataclass(frozen=True)
class TopClass:
    """The logit of each image's own top-scoring class (for classifiers without a fake label)."""

    name: str = "top"

    def __call__(self, logits: Tensor) -> Tensor:
        return logits.gather(1, logits.argmax(1, keepdim=True))[:, 0]


def resolve_target(spec: str | Target, detector: Detector) -> Target:
    """``"fake"`` (default), ``"real"`` (negative fake log-odds), ``"top"`` (each image's top class), a label
    name, ``"class:K"``, or a Target. ``"fake"`` on a model without a fake class (``fake_label=None``) means
    ``"top"``."""
    if not isinstance(spec, str):
        return spec
    if spec == "top" or (spec == "fake" and not detector.is_detector):
        return TopClass()
    if spec == "fake":
        return FakeLogOdds(detector.fake_index)
    if spec == "real" and detector.is_detector and len(detector.labels) <= 2:
        return Negative(FakeLogOdds(detector.fake_index), name="real")
    if spec.startswith("class:"):
        try:
            k = int(spec.split(":", 1)[1])
        except ValueError:
            raise UnknownNameError(f"bad target {spec!r}: expected class:K with an integer K") from None
        if not 0 <= k < len(detector.labels):
            raise UnknownNameError(f"target {spec!r} is out of range for {len(detector.labels)} labels")
        return ClassLogit(k, name=spec)
    if spec in detector.labels:
        return ClassLogit(detector.labels.index(spec), name=spec)
    raise UnknownNameError(
        f"unknown target {spec!r}: use 'fake', 'real', 'top', 'class:K' or a label of {detector.name!r}"
    )
