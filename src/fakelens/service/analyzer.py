"""Turn one upload into a complete, not yet stored analysis: decode it safely, run
:func:`fakelens.analysis.analyze_images` and render every file (preview, heatmap and overlay PNGs, raw maps).

Runs on a worker thread of the :class:`~fakelens.service.workqueue.WorkQueue` with that thread's own copy of
the model; nothing here touches the database or the disk.
"""

from __future__ import annotations

import copy
import io
import math
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from PIL import Image

from fakelens.analysis import Analysis, analyze_images, as_ensemble
from fakelens.data.faces import detect_faces
from fakelens.errors import ConfigError, ImageError
from fakelens.explain.engine import check_methods
from fakelens.face_verdicts import FaceVerdict, face_verdicts
from fakelens.io import load_image, sniff_format
from fakelens.models.base import Detector
from fakelens.models.ensemble import Ensemble
from fakelens.report.reading import reading_sections
from fakelens.service.config import Settings
from fakelens.service.errors import ApiError
from fakelens.service.store import sha256_hex
from fakelens.viz.overlay import PNG_COMPRESS_LEVEL, colorize, overlay

__all__ = ["AnalysisRequest", "Analyzer", "Draft", "member_keys"]

FILE_KINDS = ("heatmap", "overlay", "map")
"""Files stored per model and method: jet heatmap PNG on the original pixel grid (transparent where the model
saw nothing), overlay PNG (jet over the preview image at α = 0.5, at the preview's size: it is for looking)
and the raw map on the original pixel grid as a 16-bit greyscale PNG (:func:`map_png`; served as float32
``.npy`` by :func:`map_npy`; analyses stored before 2026-11-27 hold the ``.npy`` itself)."""


def member_keys(names: Sequence[str]) -> list[str]:
    """URL-safe, unique keys for member names (``tiny-cnn``, ``tiny-cnn-2``, …)."""
    keys: list[str] = []
    for name in names:
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "model"
        key, n = base, 2
        while key in keys:
            key, n = f"{base}-{n}", n + 1
        keys.append(key)
    return keys


@dataclass(frozen=True)
class AnalysisRequest:
    """What a caller asked for: the uploaded bytes, its name and the (checked) methods and member keys."""

    data: bytes
    filename: str
    methods: tuple[str, ...]
    models: tuple[str, ...]


@dataclass
class Draft:
    """A finished analysis before it is stored: the row's fields and every file it needs, by hash."""

    id: str
    verdict: str
    score: float
    filename: str
    image_sha256: str
    width: int
    height: int
    result: dict[str, Any]
    blobs: dict[str, bytes] = field(default_factory=dict)

    def add(self, data: bytes) -> str:
        sha = sha256_hex(data)
        self.blobs[sha] = data
        return sha


class Analyzer:
    """The loaded model (a detector or an ensemble), its member keys and the per-request job."""

    def __init__(self, model: Detector | Ensemble, settings: Settings) -> None:
        self.ensemble = as_ensemble(model).eval()
        self.settings = settings
        self.keys = member_keys(self.ensemble.names)

    @property
    def members(self) -> list[dict[str, str]]:
        return [{"key": k, "name": n} for k, n in zip(self.keys, self.ensemble.names, strict=True)]

    def replicas(self, n: int) -> list[Ensemble]:
        """``n`` independent copies of the model, one per worker thread (the first is the loaded one)."""
        return [self.ensemble] + [copy.deepcopy(self.ensemble) for _ in range(n - 1)]

    def check_options(
        self, methods: Sequence[str], models: Sequence[str]
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Validate requested methods and member keys (defaults when empty); raises a 400 ApiError."""
        s = self.settings
        chosen = tuple(dict.fromkeys(methods)) or s.methods
        if len(chosen) > s.max_methods:
            raise ApiError(
                400, "too_many_methods", f"at most {s.max_methods} methods per analysis, got {len(chosen)}"
            )
        not_allowed = [m for m in chosen if m not in s.allowed_methods]
        if not_allowed:
            raise ApiError(
                400,
                "unknown_method",
                f"method(s) not available here: {', '.join(not_allowed)}; "
                f"choose from {', '.join(s.allowed_methods)}",
            )
        check_methods(chosen)
        picked = tuple(dict.fromkeys(models)) or tuple(self.keys)
        unknown = [m for m in picked if m not in self.keys]
        if unknown:
            raise ApiError(
                400,
                "unknown_model",
                f"unknown model(s): {', '.join(unknown)}; choose from {', '.join(self.keys)}",
            )
        return chosen, picked

    def subset(self, replica: Ensemble, keys: Sequence[str]) -> Ensemble | None:
        """The ensemble of ``replica``'s members with these keys (None when one is not served any more)."""
        if any(k not in self.keys for k in keys):
            return None
        return replica.subset([self.keys.index(k) for k in keys])

    def run(self, replica: Ensemble, req: AnalysisRequest) -> Draft:
        """Decode, analyse and render one upload with ``replica`` (the calling worker's own model copy)."""
        start = time.perf_counter()
        try:
            image = load_image(req.data, max_pixels=self.settings.max_pixels)
        except ImageError as exc:
            raise _image_error(exc, req) from None
        sub = self.subset(replica, req.models)
        assert sub is not None  # check_options accepted the keys
        (analysis,) = analyze_images(
            sub, [image], req.methods, robustness=self.settings.robustness, max_tiles=self.settings.max_tiles
        )
        if req.methods and not any(m.heatmaps for m in analysis.models):
            reasons = "; ".join(
                f"{m.name}: {e}" for m in analysis.models for e in list(m.errors.values())[:1]
            )
            raise ApiError(
                400,
                "no_heatmap",
                f"none of the methods {', '.join(req.methods)} can run on the chosen model(s) ({reasons}); "
                "choose another method or model",
            )
        draft = self._draft(req, image, analysis, list(req.models))
        faces = self._faces(sub, image)
        draft.result["faces"] = None if faces is None else [v.to_dict() for v in faces]
        # the report's reading, as text (positions, not face regions: those are the report's)
        sections = reading_sections(analysis, face_verdicts=faces or ())
        draft.result["reading"] = [{"title": k, "text": v} for k, v in sections]
        draft.result["duration_ms"] = round(1000 * (time.perf_counter() - start), 1)
        return draft

    def _faces(self, ens: Ensemble, image: Image.Image) -> list[FaceVerdict] | None:
        """Each face's own verdict (:mod:`fakelens.face_verdicts`); None when faces are off or no face
        detector is installed."""
        if not self.settings.report_faces:
            return None
        try:
            faces = detect_faces(np.asarray(image))
        except ConfigError:
            return None
        return face_verdicts(ens, image, faces, max_tiles=self.settings.max_tiles)

    def _draft(self, req: AnalysisRequest, image: Image.Image, a: Analysis, keys: list[str]) -> Draft:
        original = sha256_hex(req.data)
        draft = Draft(
            id=uuid.uuid4().hex,
            verdict=a.verdict,
            score=_num(a.fake_probability) or 0.0,
            filename=_clean_name(req.filename),
            image_sha256=original,
            width=a.width,
            height=a.height,
            result={},
        )
        draft.blobs[original] = req.data
        small = _thumbnail(image, self.settings.preview_max_side)
        preview = draft.add(_jpeg(small))
        pixels = np.asarray(small)
        models = []
        for key, m in zip(keys, a.models, strict=True):
            heatmaps: dict[str, Any] = {}
            robustness: dict[str, Any] = {}
            for method, h in m.heatmaps.items():
                shown, valid = _at_size(h.map, h.valid, pixels.shape[:2])  # the preview's pixels
                files = {
                    "heatmap": draft.add(_heatmap_png(shown, valid)),
                    "overlay": draft.add(_png(overlay(pixels, shown, alpha=0.5, valid=valid))),
                    "map": draft.add(map_png(h.map)),  # the original's pixels
                    "valid": draft.add(valid_png(h.valid)),  # stored once per model: the same bytes
                }
                heatmaps[method] = {"summary": _jsonable(h.summary), "files": files}
                robustness[method] = _jsonable(h.robustness) if h.robustness is not None else None
            models.append(
                {
                    "key": key,
                    "name": m.name,
                    "score": _num(m.fake_probability),
                    "verdict": m.verdict,
                    "threshold": m.threshold,
                    "scale": m.scale,
                    "tiles": m.tiles,
                    "pixel_fraction": m.pixel_fraction,
                    "coverage": m.coverage,
                    "untrained": m.untrained,
                    "heatmaps": heatmaps,
                    "robustness": robustness,
                    "errors": dict(m.errors),
                }
            )
        draft.result = {
            "threshold": a.threshold,
            "rule": a.rule,
            "calibrated": a.calibrated,
            "transparent": a.transparent,
            "frames": a.frames,
            "texture": a.texture,
            "methods": list(req.methods),
            "image": {
                "format": sniff_format(req.data),
                "bytes": len(req.data),
                "preview": preview,
            },
            "models": models,
        }
        return draft


def _image_error(exc: ImageError, req: AnalysisRequest) -> ApiError:
    from fakelens.service.errors import image_error

    err = image_error(exc, req.data)
    # load_image names the source "<bytes>"; say "upload" (and the client's name) instead.
    name = _clean_name(req.filename) or "upload"
    err.message = err.message.replace("<bytes>", name, 1)
    return err


def _clean_name(name: str) -> str:
    """A client's file name reduced to printable characters, at most 200 of them (never used as a path)."""
    return "".join(ch for ch in name if ch.isprintable())[:200]


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _jsonable(obj: Any) -> Any:
    """Plain JSON types (NaN and infinities become ``None``; numpy scalars and arrays become numbers and
    lists)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float):
        return _num(obj)
    return obj


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def _heatmap_png(m: np.ndarray, valid: np.ndarray) -> bytes:
    """Jet colours, opaque where the model saw image content and transparent elsewhere."""
    rgba = np.dstack([colorize(m, "jet"), np.where(valid, 255, 0).astype(np.uint8)])
    return _png(rgba)


def _at_size(m: np.ndarray, valid: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A map (area-averaged) and its valid mask brought to the preview's ``(H, W)``: the web page shows them
    over the preview, so a 40-megapixel map would cost seconds of PNG encoding to be shrunk by the browser."""
    if m.shape == shape:
        return m, valid
    size = (shape[1], shape[0])
    shown = cv2.resize(m.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    return shown, cv2.resize(valid.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0


MAP_LEVELS = 65535
"""A stored raw map's steps: values in [0, 1] kept to 1/65535 (16-bit PNG, about 5× smaller than float32)."""


def map_png(m: np.ndarray) -> bytes:
    """A raw map in [0, 1] as a 16-bit greyscale PNG, ``round(m · 65535)`` (see :func:`load_map`)."""
    q = np.nan_to_num(np.asarray(m, dtype=np.float32), nan=0.0)  # float32 in place: 40 MP in 1 s, not 2.5
    np.clip(q, 0.0, 1.0, out=q)
    q *= MAP_LEVELS
    return _png(np.rint(q, out=q).astype(np.uint16))


def valid_png(valid: np.ndarray) -> bytes:
    """A map's valid mask at the original's pixels as a 1-bit PNG (see :func:`load_valid`)."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(valid, dtype=bool)).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def load_valid(data: bytes) -> np.ndarray:
    """A stored valid mask as bool (H, W): a 1-bit PNG from :func:`valid_png`, or the alpha channel of a
    heatmap PNG (rows stored before the masks were kept on their own)."""
    with Image.open(io.BytesIO(data)) as png:
        if png.mode == "1":
            return np.asarray(png, dtype=bool)
        return np.asarray(png.convert("RGBA"))[..., 3] > 0


def load_map(data: bytes) -> np.ndarray:
    """A stored raw map as float32 (H, W): a 16-bit PNG from :func:`map_png`, or an older ``.npy``."""
    if data.startswith(b"\x93NUMPY"):
        return np.load(io.BytesIO(data), allow_pickle=False)
    with Image.open(io.BytesIO(data)) as png:
        return np.asarray(png, dtype=np.uint16).astype(np.float32) / MAP_LEVELS


def map_npy(data: bytes) -> bytes:
    """A stored raw map as the ``.npy`` file the API serves (float32 (H, W) in [0, 1])."""
    if data.startswith(b"\x93NUMPY"):
        return data
    buf = io.BytesIO()
    np.save(buf, load_map(data), allow_pickle=False)
    return buf.getvalue()


def _thumbnail(image: Image.Image, max_side: int) -> Image.Image:
    """The decoded, upright image at most ``max_side`` pixels on its long side (the preview's size)."""
    if max(image.size) <= max_side:
        return image
    img = image.copy()
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return img


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()
