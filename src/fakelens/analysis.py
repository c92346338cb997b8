"""One image in, the answer an analyst needs out: each model's verdict, the ensemble's verdict, heatmaps
on the original pixels and a robustness badge per heatmap.

The job shared by ``fakelens analyze``, the HTTP service and ``fakelens scan``: every member of an
:class:`~fakelens.models.ensemble.Ensemble` (a single detector is an ensemble of one) runs the requested
methods through :func:`fakelens.pipeline.explain_images` (one capture per member and batch for the gradient
methods); the members' fake probabilities are combined by the ensemble's rule, and each heatmap is optionally
graded by :func:`fakelens.trust.badge.batch_badges` (four transformed views of each, batched across images).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from fakelens.constants import BLANK_TEXTURE, PARTIAL_READ, SMALL_IMAGE
from fakelens.devices import resolve_device
from fakelens.errors import ConfigError, FakelensError
from fakelens.explain.engine import check_methods, check_options, method_list
from fakelens.explain.targets import resolve_target
from fakelens.geometry import Geometry, view_pixels
from fakelens.io import FRAMES, OPAQUE, opacity
from fakelens.models.base import Detector
from fakelens.models.ensemble import Ensemble
from fakelens.pipeline import ImageResult, batched, check_images, explain_images
from fakelens.reprs import CompactRepr
from fakelens.tiling import DEFAULT_MAX_TILES

__all__ = ["Analysis", "HeatmapResult", "ModelAnalysis", "analyze_images", "as_ensemble"]


@dataclass(repr=False)
class HeatmapResult(CompactRepr):
    """One method's heatmap for one image and model: ``map (H, W)`` float32 in [0, 1] on the original pixels,
    ``valid (H, W)`` bool (pixels that carried image content), the Explanation summary and the badge."""

    method: str
    map: np.ndarray
    valid: np.ndarray
    summary: dict[str, Any]
    robustness: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, **self.summary, "robustness": self.robustness}


@dataclass(repr=False)
class ModelAnalysis(CompactRepr):
    """One member's answer: its fake probability (calibrated when the ensemble is), its verdict at its own
    ``threshold`` (½ when calibrated, else the ensemble's) and its heatmaps; ``scale``: the model's input
    pixels per original pixel (< 1: the image was shrunk to fit its input); ``tiles``: how many native tiles
    it read (1: one view of the whole image); ``pixel_fraction``: the image's own pixels it read per input
    pixel, at most 1 (mean over its tiles; below 1 when a small image was padded or enlarged to fit);
    ``coverage``: the share of the image's pixels it read (below 1 when ``max_tiles`` left gaps);
    ``view``: the one view its robustness badges grade (a tiled image's most fake-looking tile)."""

    name: str
    fake_probability: float
    verdict: str
    heatmaps: dict[str, HeatmapResult] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    scale: float = 1.0
    tiles: int = 1
    threshold: float = 0.5
    pixel_fraction: float = 1.0
    coverage: float = 1.0
    view: Geometry | None = field(default=None, repr=False, compare=False)  # what its badges grade
    untrained: bool = False  # a registered architecture with a random real/fake head: its score means nothing

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "score": self.fake_probability,
            "verdict": self.verdict,
            "threshold": self.threshold,
            "scale": self.scale,
            "tiles": self.tiles,
            "pixel_fraction": self.pixel_fraction,
            "coverage": self.coverage,
            "untrained": self.untrained,
            "heatmaps": {m: h.to_dict() for m, h in self.heatmaps.items()},
            "errors": dict(self.errors),
        }


@dataclass(repr=False)
class Analysis(CompactRepr):
    """One image's analysis: the ensemble's score and verdict and one :class:`ModelAnalysis` per member;
    ``calibrated``: the ensemble's probability is calibrated on validation photos
    (:class:`~fakelens.models.calibration.Calibration`); ``transparent``: the share of the image's pixels that
    were fully transparent (:func:`fakelens.io.load_image` composited them onto white: the models saw white,
    the heatmaps leave them out); ``frames``: the file's frames or pages, of which the first was read."""

    width: int
    height: int
    fake_probability: float
    verdict: str
    threshold: float
    rule: str
    models: list[ModelAnalysis]
    calibrated: bool = False
    transparent: float = 0.0  # share of fully transparent pixels (composited onto white; left out of maps)
    frames: int = 1  # frames or pages of the file; the first was analysed
    texture: float = math.inf  # standard deviation of the grey levels (0–255): under BLANK_TEXTURE, blank

    @property
    def pixel_fraction(self) -> float:
        """The smallest :attr:`ModelAnalysis.pixel_fraction` of any member: below :data:`SMALL_IMAGE` the
        image gave a member under half the pixels of the crops it learnt from, and the verdict rests on
        little evidence."""
        return min((m.pixel_fraction for m in self.models), default=1.0)

    @property
    def small(self) -> bool:
        """Some member read under :data:`SMALL_IMAGE` of its input's pixels from the image: weak evidence."""
        return self.pixel_fraction < SMALL_IMAGE

    @property
    def coverage(self) -> float:
        """The smallest :attr:`ModelAnalysis.coverage` of any member: the share of the image every member
        read."""
        return min((m.coverage for m in self.models), default=1.0)

    @property
    def partial(self) -> bool:
        """Some member left part of the image unread (under :data:`PARTIAL_READ`): what it did not read, it
        did not judge."""
        return self.coverage < PARTIAL_READ

    @property
    def blank(self) -> bool:
        """The image is uniform (:data:`~fakelens.constants.BLANK_TEXTURE`): there is nothing to judge."""
        return self.texture < BLANK_TEXTURE

    @property
    def untrained(self) -> bool:
        """A member is an architecture with a random real/fake head: its verdict means nothing."""
        return any(m.untrained for m in self.models)

    @property
    def tile_capped(self) -> bool:
        """The member that read least read native tiles, so ``--max-tiles`` reads more; otherwise its input
        (a centre crop) cut the image's borders, and only another model reads them."""
        return min(self.models, key=lambda m: m.coverage).tiles > 1 if self.models else False

    @property
    def split(self) -> bool:
        """The members' verdicts differ: the ensemble's verdict is weak."""
        return len({m.verdict for m in self.models if math.isfinite(m.fake_probability)}) > 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (heatmap arrays left out: write them with the viz/io helpers); ``split``, ``small``
        and ``partial`` are the warnings the table and the report show. A ``blank`` image keeps its scores
        but has no verdict (``None``, the ensemble's and every model's), as in the table, report and scan."""
        return {
            "image": {"width": self.width, "height": self.height},
            "score": self.fake_probability,
            "verdict": None if self.blank else self.verdict,  # a uniform image: nothing to judge
            "threshold": self.threshold,
            "rule": self.rule,
            "calibrated": self.calibrated,
            "split": self.split,
            "small": self.small,
            "untrained": self.untrained,
            "blank": self.blank,
            "texture": self.texture if math.isfinite(self.texture) else None,
            "coverage": self.coverage,
            "partial": self.partial,
            "transparent": self.transparent,
            "frames": self.frames,
            "models": [{**m.to_dict(), **({"verdict": None} if self.blank else {})} for m in self.models],
        }


def badge_batch(device: torch.device) -> int:
    """How many images' badge views are explained as one batch: 8 on a GPU (5 views each, 40 inputs); one on
    the CPU, where larger batches measured slower (``benchmarks/bench_badges.py``)."""
    return 8 if device.type == "cuda" else 1


def add_badges(
    member: Detector,
    items: Sequence[tuple[ModelAnalysis, Image.Image]],
    options: dict[str, dict[str, Any]] | None,
) -> None:
    """Give each heatmap of each ``(analysis, image)`` its robustness badge, computed on ``ma.view`` of the
    image (on a tiled image the badge records that tile's box as ``tile``); the views of up to
    :func:`badge_batch` images are explained together."""
    from fakelens.trust.badge import batch_badges

    spec = member.input_spec
    groups: dict[tuple[tuple[str, ...], tuple[int, ...]], list[tuple[ModelAnalysis, Tensor, Geometry]]] = {}
    for ma, image in items:
        if not ma.heatmaps:
            continue
        view = (
            ma.view
            if ma.view is not None
            else Geometry.fit((image.height, image.width), spec.size, spec.mode)
        )
        pixels = view_pixels(image, view, spec)
        groups.setdefault((tuple(ma.heatmaps), tuple(pixels.shape)), []).append((ma, pixels, view))
    for (methods, _), group in groups.items():
        for chunk in batched(group, badge_batch(member.device)):
            badges = batch_badges(
                member,
                torch.stack([pixels for _, pixels, _ in chunk]),
                list(methods),
                valid=torch.stack([view.valid_input() for _, _, view in chunk]),
                options=options,
            )
            for (ma, _, view), found in zip(chunk, badges, strict=True):
                where = {"tile": list(view.source_box)} if ma.tiles > 1 else {}
                for m, badge in found.items():
                    ma.heatmaps[m].robustness = badge | where


def as_ensemble(model: Detector | Ensemble) -> Ensemble:
    """An ensemble as given, or a single detector as an ensemble of one (weight 1, rule ``mean``, its own
    calibration if it has one)."""
    if isinstance(model, Ensemble):
        return model
    if not isinstance(model, Detector):
        raise TypeError(
            f"model must be a Detector or an Ensemble, not {type(model).__name__} (load a name or a "
            "checkpoint with fakelens.models.load_detector)"
        )
    return Ensemble.of([model])


def analyze_images(
    model: Detector | Ensemble,
    images: Sequence[Image.Image],
    methods: Sequence[str] = ("gradcam",),
    *,
    robustness: bool = True,
    batch_size: int = 8,
    device: torch.device | str | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    max_tiles: int | None = DEFAULT_MAX_TILES,
) -> list[Analysis]:
    """Analyse RGB PIL images with every member of ``model``; one :class:`Analysis` per image, in order.

    Methods that cannot run on a member (e.g. ``rollout`` on a CNN) are skipped for that member and reported
    in its ``errors``; the verdicts do not depend on the methods. ``robustness`` adds the badge of every
    heatmap (five views of each image; on a GPU explained together for up to 8 images).
    ``options``: per-method keyword options (:func:`~fakelens.explain.engine.parse_options`), used for the
    heatmaps and the badges.
    A ``native`` member reads a large image as up to ``max_tiles`` native tiles (:mod:`fakelens.tiling`):
    score and heatmap cover them all; the badge grades the most fake-looking tile (the view its
    robustness checks transform; its box is the badge's ``tile``).
    """
    ens = as_ensemble(model)
    images, methods = check_images(images), method_list(methods)
    check_methods(methods)
    options = check_options(options, methods)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a whole number ≥ 1, not {batch_size!r}")
    dev = resolve_device(str(device)) if device is not None else None
    n = len(images)
    opaques = [_opaque(img) for img in images]  # once per image, not per member (RGBA: a full conversion)
    probs = torch.zeros(n, len(ens.members))
    per_member: list[list[ModelAnalysis]] = []
    for j, member in enumerate(ens.members):
        if dev is not None:
            member.to(dev)
        rows: list[ModelAnalysis] = []
        for start, chunk in zip(range(0, n, batch_size), batched(images, batch_size), strict=True):
            results, usable, errors = explain_member(member, chunk, methods, options, max_tiles)
            for k, res in enumerate(results):
                p = res.fake_probability
                probs[start + k, j] = float(p) if p is not None else float("nan")
                opaque = opaques[start + k]
                heatmaps = {
                    m: HeatmapResult(
                        method=m,
                        map=_opaque_share(res.map(m).float().cpu().numpy(), opaque),
                        valid=_opaque_only(res.valid(m).bool().cpu().numpy(), opaque),
                        summary=res.explanations[m].summary(res.index),
                    )
                    for m in usable
                }
                ma = ModelAnalysis(
                    member.name,
                    float("nan"),
                    "",
                    heatmaps,
                    dict(errors),
                    scale=min(res.geometry.scale),
                    tiles=len(res.tiles) or 1,
                    pixel_fraction=res.pixel_fraction,
                    coverage=res.coverage,
                    view=res.view,  # a tiled image: its most fake-looking tile
                    untrained=member.untrained,
                )
                rows.append(ma)
            if robustness:  # the chunk's badges as one batch
                add_badges(member, list(zip(rows[start:], (r.image for r in results), strict=True)), options)
        per_member.append(rows)
    verdicts = ens.verdicts(probs)
    out: list[Analysis] = []
    for i, (img, v) in enumerate(zip(images, verdicts, strict=True)):
        models = []
        for j, rows in enumerate(per_member):
            ma = rows[i]
            ma.fake_probability = v.members[j].fake_probability
            ma.threshold = ens.member_threshold(j)
            ma.verdict = ens.member_verdict(j, ma.fake_probability)
            models.append(ma)
        out.append(
            Analysis(
                img.width,
                img.height,
                v.fake_probability,
                v.verdict,
                v.threshold,
                v.rule,
                models,
                ens.calibrated,
                transparent=0.0 if (opaque := opaques[i]) is None else float(1.0 - opaque.mean()),
                frames=int(img.info.get(FRAMES, 1)),
                texture=texture(img, opaque),
            )
        )
    return out


def texture(image: Image.Image, opaque: np.ndarray | None = None) -> float:
    """The standard deviation of the image's grey levels (0–255) over its opaque pixels, read on at most
    512 px a side (a uniform image is uniform at any size)."""
    grey = image.convert("L")
    mask = None if opaque is None else Image.fromarray(opaque.astype(np.uint8) * 255)
    if max(grey.size) > 512:
        size = (max(1, grey.width * 512 // max(grey.size)), max(1, grey.height * 512 // max(grey.size)))
        grey = grey.resize(size, Image.Resampling.NEAREST)
        mask = None if mask is None else mask.resize(size, Image.Resampling.NEAREST)
    a = np.asarray(grey, dtype=np.float32)
    if mask is not None:
        a = a[np.asarray(mask) > 0]
    return float(a.std()) if a.size else 0.0


def _opaque_share(m: np.ndarray, opaque: np.ndarray | None) -> np.ndarray:
    """A map cut to the opaque pixels, again a share of its (new) peak (as it is, with no transparency)."""
    if opaque is None:
        return m
    m = m * opaque
    peak = float(m.max()) if m.size else 0.0
    return m / peak if 0 < peak < 1 else m


def _opaque_only(valid: np.ndarray, opaque: np.ndarray | None) -> np.ndarray:
    return valid if opaque is None else valid & opaque


def _opaque(image: Image.Image) -> np.ndarray | None:
    """``(H, W)`` bool: the pixels :func:`fakelens.io.load_image` found not fully transparent, or, for an
    image with an alpha channel not loaded by it, the pixels :func:`~fakelens.io.to_rgb` will not turn white;
    None when nothing is transparent (or the record no longer fits: an image resized since)."""
    opaque = image.info.get(OPAQUE)
    if not isinstance(opaque, np.ndarray):
        opaque = opacity(image)
    if opaque is not None and opaque.shape == (image.height, image.width) and not opaque.all():
        return opaque.astype(bool)
    return None


METHOD_ERRORS = (Exception,)
"""What one method's failure may raise: anything — fakelens's own errors, torch's (a shape its hooks cannot
take), a plugin's bug (a ``TypeError`` in its formula) — costs only that method's heatmaps, reported with its
type and message (:func:`_reason`), so a bug stays visible. Never absorbed: :data:`FATAL` (running out of
host memory concerns every method), ``KeyboardInterrupt`` and other ``BaseException``s."""

FATAL = (MemoryError,)


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, FakelensError) else f"{type(exc).__name__}: {exc}"


def explain_member(
    member: Detector,
    images: Sequence[Image.Image],
    methods: Sequence[str],
    options: dict[str, dict[str, Any]] | None = None,
    max_tiles: int | None = DEFAULT_MAX_TILES,
    *,
    target: str = "fake",
    layers: Sequence[str] | None = None,
) -> tuple[list[ImageResult], list[str], dict[str, str]]:
    """All methods from one capture. If that fails, a cheap probe (the first image, one tile) finds the
    methods that cannot run on this member, and the others run together again; only if that fails too does
    each run alone on every image — so an unsuitable method (rollout on a CNN) or one that fails on a single
    image costs only its own heatmaps, whatever it raises (:data:`METHOD_ERRORS`; the reason names the type of
    an error not fakelens's own). Unknown method names, targets and layers are the caller's mistake and raise;
    so do ``MemoryError``, ``KeyboardInterrupt``, and a failure of the scoring itself (it fails every method
    alone, then once more without methods)."""
    check_methods(methods)
    options = check_options(options, methods)
    resolve_target(target, member)
    for name in layers or ():
        member.layer(name)

    def run(
        ms: Sequence[str], imgs: Sequence[Image.Image] = images, tiles: int | None = max_tiles
    ) -> list[ImageResult]:
        own = {m: kw for m, kw in options.items() if m in ms}  # a retry of fewer methods: only theirs
        return explain_images(member, imgs, ms, target=target, layers=layers, options=own, max_tiles=tiles)

    try:
        return run(methods), list(methods), {}
    except FATAL:
        raise
    except METHOD_ERRORS:
        pass
    errors: dict[str, str] = {}
    for m in methods:
        try:
            run([m], images[:1], 1)
        except FATAL:
            raise
        except METHOD_ERRORS as exc:
            errors[m] = _reason(exc)
    usable = [m for m in methods if m not in errors]
    try:
        return run(usable), usable, errors
    except FATAL:
        raise
    except METHOD_ERRORS:
        pass
    results: list[ImageResult] | None = None
    kept: list[str] = []
    for m in usable:  # one fails beyond the first image: each on its own
        try:
            alone = run([m])
        except FATAL:
            raise
        except METHOD_ERRORS as exc:
            errors[m] = _reason(exc)
            continue
        if results is None:
            results = alone
        else:
            for into, r in zip(results, alone, strict=True):
                into.explanations.update(r.explanations)
        kept.append(m)
    return (results if results is not None else run([])), kept, errors
