"""Decoded images in, scan rows out: the model step shared by the local pipeline and the Ray actors.

Detect-only batches take one inference-mode forward per member (``Ensemble.member_probabilities``). With
``explain`` every image also gets heatmap statistics from :func:`fakelens.analysis.analyze_images` (one
capture per member and batch for the gradient methods). Images scoring above ``heatmaps_above`` also get
the robustness badge of each heatmap (five views each, batched across the images per member) and their
overlay PNGs (and raw ``.npy`` maps with ``save_raw``), returned as bytes so that a remote actor never
writes to its own disk.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from PIL import Image

from fakelens.analysis import (
    SMALL_IMAGE,
    Analysis,
    HeatmapResult,
    add_badges,
    analyze_images,
    as_ensemble,
    texture,
)
from fakelens.constants import BLANK_TEXTURE, PARTIAL_READ
from fakelens.data.faces import available_detectors, detect_faces
from fakelens.errors import ConfigError, FakelensError
from fakelens.explain.engine import check_methods
from fakelens.face_verdicts import face_verdicts
from fakelens.geometry import covered_fraction, view_geometries
from fakelens.io import FRAMES, OPAQUE
from fakelens.models.base import Detector
from fakelens.models.ensemble import Ensemble
from fakelens.scan.decode import Decoded
from fakelens.scan.schema import FILES, HEATMAP_DIR, SKIPPED, batch_schema, score_columns, to_table
from fakelens.tiling import DEFAULT_MAX_TILES
from fakelens.viz.overlay import CMAPS, fit_size, overlay, shrink_image, shrink_map

__all__ = ["ScanProcessor", "ScanSettings", "with_threshold"]


@dataclass(frozen=True)
class ScanSettings:
    """What a scan computes. ``threshold`` (verdict: fake when the score is ≥ it) defaults to the model's own;
    images scoring strictly above ``heatmaps_above`` (default: the verdict threshold) get badges and heatmap
    files, so ``1.0`` means none."""

    methods: tuple[str, ...] = ("gradcam",)
    explain: bool = True
    threshold: float | None = None
    heatmaps_above: float | None = None
    badges: bool = True
    save_raw: bool = False
    batch_size: int = 16
    alpha: float = 0.5
    cmap: str = "jet"
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per method (--set), JSON-safe
    max_tiles: int = DEFAULT_MAX_TILES  # native tiles per image (models with input mode "native")
    faces: bool = False  # each face judged on its own: columns faces, face_score, face_verdict
    overlay_max_side: int | None = None  # overlay PNGs shrunk to this long side (None: the image's pixels)

    def __post_init__(self) -> None:
        if self.explain and not self.methods:
            raise ConfigError("--explain needs at least one method")
        if self.explain:
            check_methods(self.methods)
        for name in ("threshold", "heatmaps_above"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name.replace('_', '-')} must be in [0, 1], not {value}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, not {self.batch_size}")
        if self.max_tiles < 1:
            raise ConfigError(f"max tiles must be at least 1, not {self.max_tiles}")
        if self.overlay_max_side is not None and self.overlay_max_side < 16:
            raise ConfigError(f"overlay max side must be at least 16 pixels, not {self.overlay_max_side}")
        if self.cmap not in CMAPS:
            raise ConfigError(f"unknown colormap {self.cmap!r} (choose from {', '.join(CMAPS)})")
        if self.faces and not available_detectors():
            raise ConfigError(
                "--faces needs a face detector: pip install --no-deps facenet-pytorch, or opencv<5"
            )

    def record(self) -> dict[str, Any]:
        """The settings that give rows their meaning (a resumed scan must match them)."""
        d = asdict(self)
        d["methods"] = list(self.methods) if self.explain else []
        d["options"] = json.loads(json.dumps(self.options)) if self.explain else {}
        del d["batch_size"]
        if self.overlay_max_side is None:  # as scans made before the option recorded it
            del d["overlay_max_side"]
        return d


def with_threshold(model: Detector | Ensemble, threshold: float | None) -> Ensemble:
    """``model`` as an ensemble, with its verdict threshold replaced when ``threshold`` is given."""
    ens = as_ensemble(model)
    if threshold is None or threshold == ens.threshold:
        return ens
    return ens.with_threshold(threshold)


class ScanProcessor:
    """Turns a batch of :class:`Decoded` files into a table of :func:`batch_schema` rows."""

    def __init__(
        self, model: Detector | Ensemble, settings: ScanSettings, device: torch.device | str = "cpu"
    ) -> None:
        self.settings = settings
        self.device = torch.device(device)
        self.ensemble = with_threshold(model, settings.threshold).to(self.device).eval()
        self.columns = score_columns(self.ensemble.names)
        self.schema = batch_schema(self.columns)
        self.threshold = self.ensemble.threshold
        self.heatmaps_above = (
            self.threshold if settings.heatmaps_above is None else float(settings.heatmaps_above)
        )

    def process(self, items: Sequence[Decoded]) -> pa.Table:
        """One row per item, in order; unreadable files and per-image failures become error rows."""
        rows: list[dict[str, Any]] = []
        todo: list[int] = []
        for i, d in enumerate(items):
            row: dict[str, Any] = {
                "path": d.path,
                "sha256": d.sha256,
                "size_bytes": d.size_bytes,
                "width": d.width,
                "height": d.height,
                SKIPPED: d.skipped,
                "error": d.error,
            }
            rows.append(row)
            if not d.skipped and d.pixels is not None:
                todo.append(i)
        if todo:
            images = [items[i].image() for i in todo]
            shas = [items[i].sha256 or "" for i in todo]
            stems = [_stem(items[i].path) for i in todo]
            try:
                results = self._score(images, shas, stems)
            except FakelensError:  # find the image that fails; the others still get their rows
                results = [
                    self._score_one(img, sha, stem)
                    for img, sha, stem in zip(images, shas, stems, strict=True)
                ]
            if self.settings.faces:
                for result, img in zip(results, images, strict=True):
                    if "error" not in result:
                        result.update(self._faces(img))
            for i, result in zip(todo, results, strict=True):
                rows[i].update(result)
        return to_table(rows, self.schema)

    # ------------------------------------------------------------------------------------------ scoring

    def _score_one(self, image: Image.Image, sha: str, stem: str) -> dict[str, Any]:
        try:
            return self._score([image], [sha], [stem])[0]
        except FakelensError as exc:
            return {"error": str(exc)}

    def _score(self, images: list[Image.Image], shas: list[str], stems: list[str]) -> list[dict[str, Any]]:
        if not self.settings.explain:
            return self._detect(images)
        # a blank (uniform) image has nothing to judge: it is scored, as analyze scores it, but not
        # explained — no heatmap, no badge, no overlay file (a 79-MP single-colour PNG had got two of each)
        blank = [_blank(img) for img in images]
        rows: list[dict[str, Any]] = [{} for _ in images]
        plain = [i for i, b in enumerate(blank) if b]
        for i, row in zip(plain, self._detect([images[i] for i in plain]) if plain else [], strict=True):
            rows[i] = row
        todo = [i for i, b in enumerate(blank) if not b]
        if not todo:
            return rows
        analyses = analyze_images(
            self.ensemble,
            [images[i] for i in todo],
            self.settings.methods,
            robustness=False,
            batch_size=len(todo),
            device=self.device,
            options=self.settings.options,
            max_tiles=self.settings.max_tiles,
        )
        if self.settings.badges:  # the flagged images' badges, one batch per member
            flagged = [
                (a, images[i])
                for a, i in zip(analyses, todo, strict=True)
                if a.fake_probability > self.heatmaps_above
            ]
            for j, member in enumerate(self.ensemble.members):
                add_badges(member, [(a.models[j], img) for a, img in flagged], self.settings.options)
        for a, i in zip(analyses, todo, strict=True):
            rows[i] = self._explained_row(a, images[i], shas[i], stems[i])
        return rows

    def _detect(self, images: list[Image.Image]) -> list[dict[str, Any]]:
        """Scores, verdicts and read flags without explaining (a blank image's verdict is null)."""
        probs = self.ensemble.member_probabilities(
            images, batch_size=len(images), max_tiles=self.settings.max_tiles
        )
        ens = self.ensemble
        rows = []
        for v, img in zip(ens.verdicts(probs), images, strict=True):
            reads = self._reads(img)
            rows.append(
                {
                    **dict(zip(self.columns, (m.fake_probability for m in v.members), strict=True)),
                    "score": v.fake_probability,
                    "verdict": None if reads["blank"] else v.verdict,
                    "split": len({ens.member_verdict(j, m.fake_probability) for j, m in enumerate(v.members)})
                    > 1,
                    **reads,
                }
            )
        return rows

    def _reads(self, image: Image.Image) -> dict[str, Any]:
        """What :class:`fakelens.analysis.Analysis` would say of how the members read the image — ``small``,
        ``coverage``, ``partial``, ``transparent``, ``frames``, ``blank`` — without explaining it."""
        size = (image.height, image.width)
        fraction, coverage = 1.0, 1.0
        for m in self.ensemble.members:
            views = view_geometries(size, m.input_spec, max_tiles=self.settings.max_tiles)
            fraction = min(fraction, sum(g.pixel_fraction for g in views) / len(views))
            coverage = min(coverage, covered_fraction(views))
        opaque = image.info.get(OPAQUE)
        return {
            "small": fraction < SMALL_IMAGE,
            "coverage": coverage,
            "partial": coverage < PARTIAL_READ,
            "transparent": 0.0 if opaque is None else float(1.0 - opaque.mean()),
            "frames": int(image.info.get(FRAMES, 1)),
            "blank": _blank(image),
        }

    def _faces(self, image: Image.Image) -> dict[str, Any]:
        """How many faces, and the most fake-looking one's score and verdict (each judged on its own); a
        window a model cannot score (a non-finite score) leaves the face columns empty, the batch goes on."""
        found = detect_faces(np.asarray(image))
        try:
            verdicts = face_verdicts(self.ensemble, image, found, max_tiles=self.settings.max_tiles)
        except FakelensError:
            return {"faces": len(found), "face_score": None, "face_verdict": None}
        top = max(verdicts, key=lambda v: v.fake_probability, default=None)
        return {
            "faces": len(found),
            "face_score": None if top is None else top.fake_probability,
            "face_verdict": None if top is None else top.verdict,
        }

    def _explained_row(self, a: Analysis, image: Image.Image, sha: str, stem: str) -> dict[str, Any]:
        row: dict[str, Any] = {c: m.fake_probability for c, m in zip(self.columns, a.models, strict=True)}
        row.update(
            score=a.fake_probability,
            verdict=None if a.blank else a.verdict,  # a blank image: its score, no verdict (as analyze)
            split=a.split,
            small=a.small,
            coverage=a.coverage,
            partial=a.partial,
            transparent=a.transparent,
            frames=a.frames,
            blank=a.blank,
        )
        top = self._top_heatmap(a)
        if top is not None:
            name, h = top
            st = h.summary["stats"]
            row.update(
                heatmap_model=name,
                heatmap_method=h.method,
                heatmap_max=st["max"],
                heatmap_peak_to_mean=st["peak_to_mean"],
                heatmap_entropy=st["entropy"],
                heatmap_flat=h.summary["flat"],
            )
            badge = h.robustness or {}
            if "grade" in badge:
                row.update(
                    badge_grade=badge["grade"],
                    badge_equivariance=badge["equivariance"],
                    badge_flags=sorted(badge.get("flags", {})),
                )
        if a.fake_probability > self.heatmaps_above:
            files = self._heatmap_files(a, image, sha, stem)
            row["heatmap_files"] = [f["name"] for f in files]
            row[FILES] = files
        return row

    def _top_heatmap(self, a: Analysis) -> tuple[str, HeatmapResult] | None:
        """The first method's heatmap of the member with the highest fake probability (the one that weighs
        most on a ``fake`` verdict); members without a usable heatmap are passed over."""
        ranked = sorted(range(len(a.models)), key=lambda j: -a.models[j].fake_probability)
        for j in ranked:
            for method in self.settings.methods:
                if method in a.models[j].heatmaps:
                    return a.models[j].name, a.models[j].heatmaps[method]
        return None

    def _heatmap_files(self, a: Analysis, image: Image.Image, sha: str, stem: str) -> list[dict[str, Any]]:
        files: list[dict[str, Any]] = []
        size = (image.height, image.width)
        if self.settings.overlay_max_side is not None:
            size = fit_size(*size, self.settings.overlay_max_side)
        pixels = shrink_image(image, size)
        for col, ma in zip(self.columns, a.models, strict=True):
            member = col.removeprefix("score_")
            for method, h in ma.heatmaps.items():
                base = f"{HEATMAP_DIR}/{stem}-{sha[:12]}.{member}.{method}"
                ov = overlay(
                    pixels,
                    shrink_map(h.map, size),
                    alpha=self.settings.alpha,
                    cmap=self.settings.cmap,
                    valid=shrink_map(h.valid, size),
                )
                files.append({"name": f"{base}.png", "data": _png_bytes(ov)})
                if self.settings.save_raw:
                    files.append({"name": f"{base}.npy", "data": _npy_bytes(h.map)})
        return files


def _blank(image: Image.Image) -> bool:
    """A uniform image (:attr:`fakelens.analysis.Analysis.blank`): nothing to judge."""
    return texture(image, image.info.get(OPAQUE)) < BLANK_TEXTURE


def _stem(path: str) -> str:
    """The start of a file's overlay names: its name without suffix, made safe, and without leading dots (a
    hidden source, ``.x.jpg``, must not give hidden overlays)."""
    name = path.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return re.sub(r"[^\w.-]+", "_", name).lstrip(".")[:60] or "image"


def _png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(a, dtype=np.float32))
    return buf.getvalue()
