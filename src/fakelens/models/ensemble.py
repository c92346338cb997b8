"""Ensembles of detectors: each member scores the image at its own input size, the fake probabilities are
combined by a weighted rule into one verdict."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

import torch
from torch import Tensor

from fakelens.errors import ConfigError, ModelError
from fakelens.models.base import Detector
from fakelens.models.calibration import Calibration
from fakelens.models.fold import inference_logits

if TYPE_CHECKING:
    from PIL import Image

CombineRule = Literal["mean", "logit_mean", "max"]
Verdict = Literal["fake", "real"]
_EPS = 1e-6


def predict_proba(detector: Detector, pixels: Tensor, *, normalized: bool = False) -> Tensor:
    """Fake probability ``(B,)`` (float32, on the CPU) of ``(B, 3, H, W)`` inputs, under inference mode.

    ``pixels`` are in [0, 1] as :func:`fakelens.geometry.prepare_batch` returns them and are normalised with
    ``detector.input_spec`` on the detector's device; pass ``normalized=True`` for inputs already normalised.
    """
    param = next(detector.parameters(), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    with torch.inference_mode():
        x = pixels.to(device=detector.device, dtype=dtype)
        if not normalized:
            x = detector.input_spec.normalize(x)
        return detector.fake_probability(inference_logits(detector, x)).float().cpu()


@dataclass(frozen=True)
class MemberScore:
    """One member's fake probability for one image."""

    name: str
    fake_probability: float


@dataclass(frozen=True)
class EnsembleVerdict:
    """An ensemble's answer for one image: each member's score, the combined probability and the verdict."""

    members: tuple[MemberScore, ...]
    fake_probability: float
    verdict: Verdict
    threshold: float
    rule: CombineRule

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: members (name, fake_probability), fake_probability, verdict, threshold, rule."""
        return {
            "members": [{"name": m.name, "fake_probability": m.fake_probability} for m in self.members],
            "fake_probability": self.fake_probability,
            "verdict": self.verdict,
            "threshold": self.threshold,
            "rule": self.rule,
        }


class Ensemble:
    """Detectors voting on one image; members may differ in input size, normalisation and labels.

    Rules over the members' fake probabilities ``p_m`` with weights ``w_m`` (normalised to sum 1):
    ``mean`` = Σ w_m p_m; ``logit_mean`` = σ(Σ w_m logit(p_m)) (averaging log-odds, so one confident member
    counts more); ``max`` = max over members with w_m > 0 (flag if any member says fake). The verdict is
    ``"fake"`` when the combined probability is ≥ ``threshold``.

    Optionally calibrated (:class:`~fakelens.models.calibration.Calibration`, fitted on validation photos by
    :func:`fakelens.train.fit.fit_ensemble`): ``calibrations[m]`` maps member m's probability before it is
    shown or combined (its own operating point → ½), ``calibration`` maps the combined probability (the
    ensemble's threshold → ½, so ``threshold`` is then ½). A member's verdict uses ½ when it is calibrated,
    else the ensemble's threshold.
    """

    def __init__(
        self,
        members: Sequence[Detector],
        weights: Sequence[float] | None = None,
        rule: CombineRule = "mean",
        threshold: float = 0.5,
        *,
        calibrations: Sequence[Calibration | None] | None = None,
        calibration: Calibration | None = None,
    ) -> None:
        if not members:
            raise ConfigError("an ensemble needs at least one member")
        odd = next((m for m in members if not isinstance(m, Detector)), None)
        if odd is not None:
            raise TypeError(
                f"ensemble members must be Detectors, not {type(odd).__name__} (a nested ensemble: pass "
                "its .members; a name or a path: load it with fakelens.models.load_detector)"
            )
        blind = next((m for m in members if not m.is_detector), None)
        if blind is not None:
            raise ConfigError(
                f"{blind.name!r} is a classifier without a fake class ({len(blind.labels)} labels): verdicts "
                "need a real/fake detector (wrap it with fake_label=… naming its fake class); "
                "fakelens explain (fakelens.explain_images) explains any classifier"
            )
        if rule not in get_args(CombineRule):
            raise ConfigError(
                f"unknown ensemble rule {rule!r}; use one of {', '.join(get_args(CombineRule))}"
            )
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"ensemble threshold must be in [0, 1], not {threshold}")
        w = (
            torch.ones(len(members))
            if weights is None
            else torch.as_tensor(list(weights), dtype=torch.float32)
        )
        if w.shape != (len(members),):
            raise ConfigError(f"{len(members)} members but {w.numel()} weights")
        if not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ConfigError(f"ensemble weights must be finite, non-negative and not all zero: {w.tolist()}")
        self.members: tuple[Detector, ...] = tuple(members)
        self.weights: Tensor = w / w.sum()
        self.rule: CombineRule = rule
        self.threshold = float(threshold)
        cal = [None] * len(members) if calibrations is None else list(calibrations)
        if len(cal) != len(members):
            raise ConfigError(f"{len(members)} members but {len(cal)} calibrations")
        self.calibrations: tuple[Calibration | None, ...] = tuple(cal)
        self.calibration = calibration

    @classmethod
    def of(cls, models: Sequence[Detector | Ensemble], **kwargs: Any) -> Ensemble:
        """An ensemble of detectors and of other ensembles' members (flattened), each member keeping its
        calibration — a detector's own (fitted by ``fakelens train``), an ensemble member's from its ensemble;
        ``kwargs`` as for the constructor (weights, rule, threshold)."""
        members: list[Detector] = []
        cals: list[Calibration | None] = []
        for m in models:
            if isinstance(m, Ensemble):
                members += m.members
                cals += m.calibrations
            else:
                members.append(m)
                cals.append(m.calibration)
        return cls(members, calibrations=cals, **kwargs)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.members)

    def __len__(self) -> int:
        return len(self.members)

    def to(self, device: torch.device | str) -> Ensemble:
        """Move every member to ``device`` (in place); returns self."""
        for m in self.members:
            m.to(device)
        return self

    def eval(self) -> Ensemble:
        for m in self.members:
            m.eval()
        return self

    def __repr__(self) -> str:
        weights = ", ".join(f"{n}: {float(w):.2f}" for n, w in zip(self.names, self.weights, strict=True))
        return (
            f"Ensemble({{{weights}}}, rule={self.rule!r}, threshold={self.threshold:g}"
            + (", calibrated" if self.calibrated else "")
            + ")"
        )

    @property
    def calibrated(self) -> bool:
        """Whether the combined probability is calibrated: the ensemble's own calibration, or one calibrated
        member alone."""
        return self.calibration is not None or (len(self.members) == 1 and self.calibrations[0] is not None)

    def member_threshold(self, index: int) -> float:
        """The probability at which member ``index``'s own verdict turns fake (½ when it is calibrated)."""
        return 0.5 if self.calibrations[index] is not None else self.threshold

    def member_verdict(self, index: int, fake_probability: float) -> Verdict:
        """Member ``index``'s own verdict for its (shown) fake probability: fake at its threshold or above."""
        return "fake" if fake_probability >= self.member_threshold(index) else "real"

    def calibrate(self, member_probs: Tensor) -> Tensor:
        """``(B, M)`` raw member fake probabilities → the members' calibrated ones (as shown to users)."""
        if member_probs.ndim != 2 or member_probs.shape[1] != len(self.members):
            raise ValueError(
                f"expected (B, {len(self.members)}) member probabilities, got {tuple(member_probs.shape)}"
            )
        p = member_probs.float()
        if not any(self.calibrations):
            return p
        cols = [p[:, j] if c is None else c(p[:, j]) for j, c in enumerate(self.calibrations)]
        return torch.stack(cols, dim=1)

    def combine(self, member_probs: Tensor) -> Tensor:
        """``(B, M)`` raw member fake probabilities → ``(B,)`` combined fake probability."""
        return self._combine(self.calibrate(member_probs))

    def _combine(self, p: Tensor) -> Tensor:
        """The rule and the combined calibration over already calibrated member probabilities."""
        w = self.weights.to(p.device)
        if self.rule == "mean":
            out = p @ w
        elif self.rule == "logit_mean":
            out = torch.sigmoid(torch.logit(p.clamp(_EPS, 1 - _EPS)) @ w)
        else:
            out = p[:, w > 0].amax(dim=1)
        return out if self.calibration is None else self.calibration(out)

    def verdicts(self, member_probs: Tensor) -> list[EnsembleVerdict]:
        """``(B, M)`` raw member fake probabilities → one :class:`EnsembleVerdict` per image (members'
        probabilities calibrated). A non-finite probability raises :class:`~fakelens.errors.ModelError`
        naming the member and the image: compared with the threshold it would have read as "real"."""
        bad = (~torch.isfinite(member_probs)).nonzero()
        if len(bad):
            i, j = (int(v) for v in bad[0])
            raise ModelError(
                f"model {self.names[j]} gave no usable score for image {i + 1} (NaN or infinity): its "
                "weights or this input are broken, so there is no verdict"
            )
        shown = self.calibrate(member_probs)
        combined = self._combine(shown).tolist()
        rows = shown.tolist()
        return [
            EnsembleVerdict(
                members=tuple(MemberScore(n, float(p)) for n, p in zip(self.names, row, strict=True)),
                fake_probability=float(c),
                verdict="fake" if c >= self.threshold else "real",
                threshold=self.threshold,
                rule=self.rule,
            )
            for row, c in zip(rows, combined, strict=True)
        ]

    def member_probabilities(
        self, images: Sequence[Image.Image], *, batch_size: int = 16, max_tiles: int | None = None
    ) -> Tensor:
        """``(B, M)`` fake probabilities: each member reads the images as its own input spec says (a
        ``native`` member: the mean logits of up to ``max_tiles`` native tiles, default
        :data:`fakelens.tiling.DEFAULT_MAX_TILES`)."""
        from fakelens.pipeline import check_images  # the pipeline and tiling build on models
        from fakelens.tiling import DEFAULT_MAX_TILES, image_logits

        images = check_images(images)  # a generator would be read by the first member only
        tiles = DEFAULT_MAX_TILES if max_tiles is None else max_tiles
        cols = [
            member.fake_probability(image_logits(member, images, max_tiles=tiles, batch_size=batch_size))
            for member in self.members
        ]
        return torch.stack(cols, dim=1).float()

    def predict(
        self, images: Sequence[Image.Image], *, batch_size: int = 16, max_tiles: int | None = None
    ) -> list[EnsembleVerdict]:
        """One :class:`EnsembleVerdict` per PIL image, in order (``max_tiles`` as for
        :meth:`member_probabilities`)."""
        return self.verdicts(self.member_probabilities(images, batch_size=batch_size, max_tiles=max_tiles))

    def with_threshold(self, threshold: float) -> Ensemble:
        """The same members, weights and calibrations with another verdict threshold."""
        return self.subset(range(len(self.members)), threshold=threshold)

    def subset(self, indices: Sequence[int], *, threshold: float | None = None) -> Ensemble:
        """An ensemble of the members at ``indices`` with their weights and calibrations. The combined
        calibration was fitted for all members: a proper subset drops it and, when every member kept is
        calibrated, decides at ½ (each one's own operating point), else at this ensemble's threshold."""
        idx = list(indices)
        whole = sorted(idx) == list(range(len(self.members)))
        cals = [self.calibrations[i] for i in idx]
        if threshold is None:
            threshold = self.threshold if whole or not all(cals) else 0.5
        return Ensemble(
            [self.members[i] for i in idx],
            weights=[float(self.weights[i]) for i in idx],
            rule=self.rule,
            threshold=threshold,
            calibrations=cals,
            calibration=self.calibration if whole else None,
        )

    def calibration_dict(self) -> dict[str, Any] | None:
        """``{"members": [...], "combined": ...}`` (each a :class:`Calibration` dict or ``None``); ``None``
        when nothing is calibrated."""
        if self.calibration is None and not any(self.calibrations):
            return None
        return {
            "members": [None if c is None else c.to_dict() for c in self.calibrations],
            "combined": None if self.calibration is None else self.calibration.to_dict(),
        }

    def describe(self) -> dict[str, Any]:
        return {
            "members": [m.describe() for m in self.members],
            "weights": self.weights.tolist(),
            "rule": self.rule,
            "threshold": self.threshold,
            "calibration": self.calibration_dict(),
        }
