"""Response bodies of the API (they are also its OpenAPI documentation)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, Field, field_serializer

__all__ = [
    "AnalysisOut",
    "AnalysisPage",
    "ErrorOut",
    "HealthOut",
    "ImageOut",
    "ModelOut",
    "ReadyOut",
    "ServiceInfo",
]


def utc_iso(when: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a ``Z``, whether the database gave a naive (UTC) or an aware
    datetime."""
    aware = when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)
    return aware.isoformat(timespec="milliseconds").replace("+00:00", "Z")


ErrorCode = Literal[
    "invalid_request",
    "unauthorized",
    "not_found",
    "method_not_allowed",
    "upload_too_large",
    "image_too_large",
    "unsupported_media_type",
    "invalid_image",
    "rate_limited",
    "busy",
    "storage_unavailable",
    "starting",
    "no_heatmap",
    "unknown_method",
    "too_many_methods",
    "unknown_model",
    "http_error",
    "internal_error",
]
Verdict = Literal["fake", "real"]


class ErrorDetail(BaseModel):
    code: ErrorCode = Field(description="Stable machine-readable reason, e.g. `upload_too_large`, `busy`.")
    message: str = Field(description="One sentence for a person.")
    details: list[dict[str, Any]] | None = Field(
        None, description="422 only: each invalid field, `{loc, msg}`."
    )


class ErrorOut(BaseModel):
    error: ErrorDetail


class ImageOut(BaseModel):
    width: int
    height: int
    sha256: str = Field(description="SHA-256 of the uploaded bytes, as received.")
    format: str | None = Field(description="Format found in the bytes (never taken from the name or header).")
    bytes: int
    filename: str
    url: str = Field(description="Upright preview (JPEG) of the decoded image, EXIF orientation applied.")
    original_url: str = Field(description="The uploaded bytes.")


class ModelOut(BaseModel):
    key: str = Field(description="URL-safe key of the model in file URLs.")
    name: str
    score: float | None = Field(description="This model's fake probability.")
    verdict: Verdict | None = Field(description="This model's verdict; null for a blank image (`blank`).")
    threshold: float = Field(
        description="Where this model's own verdict turns fake (0.5 when it is calibrated; analyses stored "
        "before it was recorded: the ensemble's threshold)."
    )
    scale: float | None = Field(
        None,
        description="Model input pixels per original pixel (< 1: the image was shrunk to fit, which weakens "
        "pixel-level traces); null for analyses stored before it was recorded.",
    )
    tiles: int | None = Field(
        None,
        description="Native tiles this model read (> 1: a large image read at its own pixel grid, tile by "
        "tile, instead of shrunk); null for analyses stored before tiling.",
    )
    pixel_fraction: float | None = Field(
        None,
        description="The image's own pixels this model read per input pixel, at most 1 (mean over its tiles; "
        "below 1 when a small image was padded or enlarged to fit; under 0.5 its verdict rests on little "
        "evidence); null for analyses stored before it was recorded.",
    )
    coverage: float | None = Field(
        None,
        description="The share of the image's pixels this model read (below 1 when the tile limit left gaps "
        "in a large image: what it did not read, it did not judge); null for analyses stored before it was "
        "recorded.",
    )
    untrained: bool = Field(
        False,
        description="An architecture served by name, its real/fake head never trained: its score means "
        "nothing.",
    )
    heatmaps: dict[str, str] = Field(
        description="Method → URL of the jet heatmap PNG at the preview's size (transparent outside the "
        "image); `map.npy` holds the map at the original's pixels."
    )
    overlays: dict[str, str] = Field(
        description="Method → URL of the overlay PNG (jet over the image, α = 0.5)."
    )
    maps: dict[str, str] = Field(description="Method → URL of the raw map, float32 `.npy` (H, W) in [0, 1].")
    summaries: dict[str, dict[str, Any]] = Field(
        description="Method → map statistics (flat maps are flagged; `score` there is the explained "
        "target's raw score, by default the fake log-odds, not a probability)."
    )
    robustness: dict[str, dict[str, Any] | None] = Field(
        description="Method → robustness badge (grade `ok`/`check`, equivariance, border/corner mass, flags)."
    )
    errors: dict[str, str] = Field(description="Methods that cannot run on this model, with the reason.")


class FaceOut(BaseModel):
    box: list[float] = Field(description="The face, `[left, top, right, bottom]` in original pixels.")
    window: list[int] = Field(
        description="The square window around it that the models read, `[left, top, right, bottom]`."
    )
    score: float = Field(description="The ensemble's fake probability for this face's window.")
    verdict: Verdict
    split: bool = Field(False, description="The models' verdicts on this face differ: a weak verdict.")
    models: dict[str, dict[str, Any]] = Field(description="Model name → its `score` and `verdict` here.")


class ReadingOut(BaseModel):
    title: str = Field(
        description="`Verdict`, `Scale`, `Faces`, `Where`, `Robustness`, `Agreement` or `Not run`."
    )
    text: str


class AnalysisOut(BaseModel):
    id: str
    status: Literal["done"] = Field(description="`done`: an analysis is stored complete or not at all.")
    verdict: Verdict | None = Field(
        description="The ensemble's verdict; null for a blank image (`blank`: nothing to judge, only the "
        "score)."
    )
    score: float = Field(description="The ensemble's fake probability.")
    threshold: float
    rule: str = Field(description="How the models' probabilities were combined.")
    calibrated: bool = Field(
        False,
        description="The scores are calibrated on validation photos (p(fake) ≈ frequency of fakes among "
        "validation images so scored; every verdict at 0.5).",
    )
    transparent: float = Field(
        0.0,
        description="The share of the image's pixels that were fully transparent: the models saw them as "
        "white, and the heatmaps leave them out.",
    )
    frames: int = Field(1, description="Frames or pages in the file (GIF, TIFF); the first was analysed.")
    small: bool = Field(
        False,
        description="A model read under half as many of the image's own pixels as its input holds (see "
        "`models[].pixel_fraction`): the verdict rests on little evidence either way.",
    )
    blank: bool = Field(
        False,
        description="The image is uniform (its grey levels vary by under 1 of 255): no content and no trace "
        "to judge, so the verdict says nothing.",
    )
    partial: bool = Field(
        False,
        description="A model read under 99 % of the image's pixels (see `models[].coverage`): the verdict "
        "judges only what was read.",
    )
    split: bool = Field(
        False, description="The models' verdicts differ: the ensemble's verdict is weak (look at each model)."
    )
    methods: list[str]
    models: list[ModelOut]
    faces: list[FaceOut] | None = Field(
        None,
        description="Every face found, left to right, judged on its own (an edit confined to one face weighs "
        "little in the whole image's score); null when face detection is off or unavailable, or for "
        "analyses stored before it.",
    )
    reading: list[ReadingOut] = Field(
        default_factory=list,
        description="The analysis in words, as the report's reading: verdict, scale, faces, where the maps "
        "point (by position), robustness, agreement, methods not run; empty for analyses stored before it.",
    )
    image: ImageOut
    created_at: datetime = Field(description="When it was stored, UTC, e.g. `2026-11-27T16:26:57.683Z`.")
    duration_ms: float | None = None
    links: dict[str, str]

    @field_serializer("created_at")
    def _created_at(self, when: datetime) -> str:
        return utc_iso(when)


class AnalysisPage(BaseModel):
    items: list[AnalysisOut]
    total: int = Field(description="Analyses in the listing (after `before`, when given).")
    limit: int
    offset: int
    next_offset: int | None
    next_before: str | None = Field(
        None,
        description="The cursor of the next page (`?before=`), stable while analyses arrive or are deleted.",
    )


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    status: str
    checks: dict[str, bool]
    queue: dict[str, Any]


class ServiceInfo(BaseModel):
    version: str
    models: list[dict[str, str]]
    methods: list[str] = Field(description="Methods run when a request names none.")
    allowed_methods: list[str]
    class_agnostic_methods: list[str] = Field(
        description="Allowed methods whose map ignores the target (where the model is active, not evidence "
        "for fake)."
    )
    max_methods: int
    max_upload_bytes: int
    max_pixels: int
    robustness: bool
