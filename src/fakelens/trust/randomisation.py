r"""Cascading model-parameter randomisation (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018).

The layers of a copy of the detector are re-initialised from the head downward (every module with
``reset_parameters`` and parameters of its own, in reverse registration order — the order Quantus' MPRT
uses, each reset seeded with ``seed + 1`` as there); after chosen stages every method explains the same
input again. Spearman rank correlation of the signed maps, of their absolute values, and SSIM of the
absolute maps normalised by their maximum against the original should collapse: a method whose map survives
randomisation explains the image, not the model.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fakelens.explain.engine import explain
from fakelens.explain.explanation import Explanation
from fakelens.models.base import Detector
from fakelens.trust.metrics import masked_spearman, ssim

__all__ = ["RandomisationStage", "cascading_randomisation", "compare_maps", "randomisation_layers"]


def randomisation_layers(model: nn.Module) -> list[str]:
    """Names of the modules that own parameters and can re-initialise them, from the head downward."""
    names = [
        n
        for n, m in model.named_modules()
        if hasattr(m, "reset_parameters") and any(True for _ in m.parameters(recurse=False))
    ]
    return names[::-1]


def _signed_up(raw: Tensor, hw: tuple[int, int]) -> Tensor:
    return F.interpolate(raw[:, None].float(), size=hw, mode="bilinear", align_corners=False)[:, 0]


def _normalised_abs(raw: Tensor, hw: tuple[int, int], valid: Tensor) -> Tensor:
    """``|S|`` upsampled and divided by its max over the valid pixels (Adebayo et al.'s absolute-value maps,
    Quantus' default ``abs`` + ``normalise_by_max``): a sign flip alone does not count as a change."""
    s = _signed_up(raw, hw).abs() * valid
    mx = s.flatten(1).amax(1).clamp_min(1e-30)
    return s / mx[:, None, None]


def compare_maps(
    original: Tensor, randomised: Tensor, hw: tuple[int, int], valid: Tensor
) -> dict[str, Tensor]:
    """``(B, h, w)`` raw maps before and after randomisation → ``spearman`` (signed maps), ``spearman_abs``
    (of ``|S|``) and ``ssim`` (of ``|S|`` normalised by its max; 0 when either map vanished), each ``(B,)``,
    on the valid pixels of the input grid."""
    a, b = _signed_up(original, hw), _signed_up(randomised, hw)
    v = valid.expand_as(a)
    na, nb = _normalised_abs(original, hw, v), _normalised_abs(randomised, hw, v)
    alive = (na.flatten(1).amax(1) > 0) & (nb.flatten(1).amax(1) > 0)
    return {
        "spearman": masked_spearman(a, b, v),
        "spearman_abs": masked_spearman(a.abs(), b.abs(), v),
        # a map that vanished has changed: SSIM of sparse maps against zero would still be high
        "ssim": torch.where(alive.cpu(), ssim(na, nb, valid=v), torch.zeros(a.shape[0], dtype=torch.float64)),
    }


@dataclass
class RandomisationStage:
    """Maps after the top ``count`` layers (down to ``layer``) were re-initialised."""

    layer: str
    count: int
    fraction: float
    scores: dict[str, dict[str, Tensor]] = field(default_factory=dict)  # method -> metric -> (B,)


def _stage_counts(n: int, stages: int | None) -> list[int]:
    if stages is None or stages >= n:
        return list(range(1, n + 1))
    if stages <= 1:
        return [n]
    lin = torch.linspace(1, n, stages)
    return sorted({round(float(v)) for v in lin})


def cascading_randomisation(
    detector: Detector,
    x: Tensor,
    methods: Sequence[str],
    original: Mapping[str, Tensor | Explanation] | None = None,
    *,
    layers: Sequence[str] | None = None,
    target: str = "fake",
    valid: Tensor | None = None,
    stages: int | None = 4,
    seed: int = 42,
    options: dict[str, dict[str, Any]] | None = None,
) -> list[RandomisationStage]:
    """Randomise a copy of ``detector`` from the head downward and re-explain the normalised batch ``x``.

    ``stages`` evenly spaced checkpoints (always the head alone first and the whole network last; ``None``
    = after every layer). ``original`` (explanations or their raw ``(B, h, w)`` maps) are computed if not
    given. Gradient methods share one capture
    per stage; the detector itself is never modified.
    """
    hw = (int(x.shape[-2]), int(x.shape[-1]))
    v = (
        torch.ones(x.shape[0], *hw, dtype=torch.bool, device=x.device)
        if valid is None
        else valid.to(x.device).bool().reshape(x.shape[0], *hw)
    )
    if original is None:
        original = explain(detector, x, methods, target=target, layers=layers, valid=v, options=options)
    raws = {m: (e.raw if isinstance(e, Explanation) else e).detach() for m, e in original.items()}
    model = copy.deepcopy(detector)
    names = randomisation_layers(model)
    counts = set(_stage_counts(len(names), stages))
    out: list[RandomisationStage] = []
    for i, name in enumerate(names, start=1):
        module = model.get_submodule(name)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1)
            module.reset_parameters()  # type: ignore[operator]
        if i not in counts:
            continue
        stage = RandomisationStage(name, i, i / len(names))
        rand = explain(model, x, methods, target=target, layers=layers, valid=v, options=options)
        for m in methods:
            stage.scores[m] = compare_maps(raws[m], rand[m].raw, hw, v)
        out.append(stage)
    return out
