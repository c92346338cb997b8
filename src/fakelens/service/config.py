"""Service settings in one class: defaults, then ``FAKELENS_*`` environment variables, then explicit
values."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from fakelens.constants import DEFAULT_MAX_TILES
from fakelens.errors import ConfigError

__all__ = ["DEFAULT_METHODS", "SERVICE_METHODS", "Settings"]

DEFAULT_METHODS: tuple[str, ...] = ("gradcam", "hirescam")
"""Methods run when a request names none."""

SERVICE_METHODS: tuple[str, ...] = (
    "gradcam",
    "gradcam++",
    "xgradcam",
    "hirescam",
    "gradcam-elementwise",
    "layercam",
    "eigencam",
    "eigengradcam",
    "attention",
    "rollout",
    "gradattn",
    "legrad",
)
"""Methods a request may ask for by default: the one-capture CAMs and the transformer methods. The
perturbation methods (ScoreCAM, RISE, …) cost hundreds of passes and are left out unless configured."""


def _env(name: str, default: Any) -> Callable[[], Any]:
    """A default factory: ``$FAKELENS_<NAME>`` parsed like ``default``, else ``default``."""
    return lambda: _from_env(name, default)


def _from_env(name: str, default: Any) -> Any:
    raw = os.environ.get(f"FAKELENS_{name.upper()}")
    if raw is None or raw.strip() == "":
        return default
    return _parse(name, raw.strip(), default)


def _parse(name: str, raw: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if isinstance(default, int):
            return int(raw.replace("_", ""))
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, tuple):
            return tuple(p.strip() for p in raw.split(",") if p.strip())
        if isinstance(default, Path):
            return Path(raw)
    except ValueError:
        raise ConfigError(f"FAKELENS_{name.upper()}={raw!r} is not a valid value") from None
    return raw


@dataclass(frozen=True)
class Settings:
    """Everything the service can be told. Each field ``x`` can be set with ``$FAKELENS_X``.

    ``database_url`` defaults to SQLite (WAL mode) at ``data_dir/fakelens.db``; a ``postgresql+psycopg://``
    URL works too. Files (uploads, heatmaps, maps) live in a content-addressed store under ``data_dir/blobs``.
    """

    data_dir: Path = field(default_factory=_env("data_dir", Path("fakelens-data")))
    database_url: str = field(default_factory=_env("database_url", ""))
    model: str = field(default_factory=_env("model", "default"))
    workers: int = field(default_factory=_env("workers", 1))
    """Inference threads; each owns one copy of the model (no model is shared between threads)."""
    queue: int = field(default_factory=_env("queue", 8))
    """Requests allowed to wait for a worker; beyond ``workers + queue`` the answer is 503 + Retry-After."""
    max_upload_bytes: int = field(default_factory=_env("max_upload_bytes", 20 * 1024 * 1024))
    max_pixels: int = field(default_factory=_env("max_pixels", 40_000_000))
    methods: tuple[str, ...] = field(default_factory=_env("methods", DEFAULT_METHODS))
    allowed_methods: tuple[str, ...] = field(default_factory=_env("allowed_methods", SERVICE_METHODS))
    max_methods: int = field(default_factory=_env("max_methods", 4))
    robustness: bool = field(default_factory=_env("robustness", True))
    max_tiles: int = field(default_factory=_env("max_tiles", DEFAULT_MAX_TILES))
    """Native tiles a ``native`` model reads per upload (the cost of a large image grows with it)."""
    rate_per_minute: float = field(default_factory=_env("rate_per_minute", 30.0))
    """Analyses per minute and API key (token bucket); 0 turns the limit off."""
    rate_burst: int = field(default_factory=_env("rate_burst", 10))
    read_rate_per_minute: float = field(default_factory=_env("read_rate_per_minute", 600.0))
    """Other authenticated requests (results, PNGs, reports) per minute and key; 0 turns the limit off."""
    read_rate_burst: int = field(default_factory=_env("read_rate_burst", 120))
    preview_max_side: int = field(default_factory=_env("preview_max_side", 2048))
    report_faces: bool = field(default_factory=_env("report_faces", True))
    """Faces are found in every upload and each is judged on its own (``faces`` of an analysis), and reports
    summarise heatmaps by facial region (needs a face detector; without one ``faces`` is null)."""
    docs: bool = field(default_factory=_env("docs", False))
    """Interactive API docs (Swagger UI) at ``/docs``. Off by default: that page runs Swagger UI's scripts
    from a CDN (pinned and integrity-checked) on the origin where the web page keeps API keys; the schema
    itself is always at ``/openapi.json``."""
    gc_on_start: bool = field(default_factory=_env("gc_on_start", True))
    commit_delay_s: float = field(default_factory=_env("commit_delay_s", 0.0))
    """Fault injection for the crash test only: sleep between writing the files and committing the row."""

    def __post_init__(self) -> None:
        for name in (
            "workers",
            "max_upload_bytes",
            "max_pixels",
            "max_methods",
            "preview_max_side",
            "max_tiles",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.queue < 0:
            raise ConfigError(f"queue must be ≥ 0, got {self.queue}")
        if self.rate_per_minute < 0 or self.read_rate_per_minute < 0:
            raise ConfigError("rate limits must be ≥ 0 (0 turns a limit off)")
        if not self.methods:
            raise ConfigError("at least one default method is needed")
        not_allowed = [m for m in self.methods if m not in self.allowed_methods]
        if not_allowed:  # else every request without methods would be refused
            raise ConfigError(
                f"default method(s) {', '.join(not_allowed)} not among the allowed ones: "
                f"{', '.join(self.allowed_methods)}"
            )
        if len(self.methods) > self.max_methods:
            raise ConfigError(
                f"{len(self.methods)} default methods, but at most {self.max_methods} are allowed"
            )

    @property
    def db_url(self) -> str:
        """The database URL in force (SQLite under ``data_dir`` unless ``database_url`` is set)."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'fakelens.db').resolve()}"

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed (values of ``None`` are ignored)."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
        return replace(self, **{k: v for k, v in changes.items() if v is not None})
