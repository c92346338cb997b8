"""The FastAPI application: settings in, model and database opened once in the lifespan, routers composed."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from fakelens import __version__
from fakelens.models.base import Detector
from fakelens.models.ensemble import Ensemble
from fakelens.service import api, health, web
from fakelens.service.analyzer import Analyzer
from fakelens.service.config import Settings
from fakelens.service.db import Database, private_dir
from fakelens.service.errors import install_handlers
from fakelens.service.middleware import (
    BodySizeLimit,
    EarlyAuth,
    HeadAsGet,
    RateLimitHeaders,
    SecurityHeaders,
)
from fakelens.service.ratelimit import RateLimiter
from fakelens.service.repository import DataDirLock, Repository
from fakelens.service.state import ServiceState
from fakelens.service.store import BlobStore
from fakelens.service.workqueue import WorkQueue

__all__ = ["create_app", "load_model", "open_state"]

log = logging.getLogger("fakelens.service")

DESCRIPTION = """
Explainable deepfake detection as a service: each model's verdict, the ensemble's verdict, heatmaps on the
original pixels with a robustness badge, stored results and self-contained reports.

Authenticate with an API key (`fakelens keys create --tenant NAME`) in the `X-API-Key` header or as a bearer
token. Every error has the shape `{"error": {"code": ..., "message": ...}}`. Over capacity the service answers
503 with `Retry-After`, and 429 with `Retry-After` when a key exceeds its rate.
"""


def load_model(spec: str) -> Detector | Ensemble:
    """``default``, a registered name, a checkpoint path, or several of them comma-separated (an ensemble)."""
    from fakelens.models import load_detector

    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if len(parts) <= 1:
        return load_detector(spec)
    return Ensemble.of([load_detector(p) for p in parts])


def open_state(settings: Settings, model: Detector | Ensemble | None = None) -> ServiceState:
    """Lock the data directory, open the database and the store, collect orphan files, load the model and
    start the workers (plugins first: their methods may be among the allowed ones)."""
    from fakelens.plugins import load_plugins

    load_plugins()
    private_dir(settings.data_dir)
    lock = DataDirLock(settings.data_dir)
    lock.acquire()
    try:
        db = Database(settings.db_url)
        repo = Repository(db, BlobStore(settings.data_dir / "blobs"), commit_delay_s=settings.commit_delay_s)
        if settings.gc_on_start:
            repo.gc()
        analyzer = Analyzer(model if model is not None else load_model(settings.model), settings)
        queue = WorkQueue(analyzer.replicas(settings.workers), settings.queue)
    except BaseException:
        lock.release()
        raise
    return ServiceState(
        settings=settings,
        db=db,
        repo=repo,
        analyzer=analyzer,
        queue=queue,
        submit_limit=RateLimiter(settings.rate_per_minute, settings.rate_burst),
        read_limit=RateLimiter(settings.read_rate_per_minute, settings.read_rate_burst),
        lock=lock,
    )


def create_app(settings: Settings | None = None, model: Detector | Ensemble | None = None) -> FastAPI:
    """The app; ``model`` (e.g. a tiny test detector) replaces loading ``settings.model`` at start."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = open_state(settings, model)
        app.state.service = state
        log.info("fakelens service ready: models %s", ", ".join(state.analyzer.keys))
        try:
            yield
        finally:
            app.state.service = None
            state.close()

    app = FastAPI(
        title="fakelens",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # our own /docs (pinned, integrity-checked) when settings.docs; no ReDoc
        redoc_url=None,
        redirect_slashes=False,  # a 307 to an absolute http:// URL behind a TLS proxy, a POST sent twice
        openapi_tags=[
            {"name": "analyses", "description": "Analyse images and manage stored analyses."},
            {"name": "files", "description": "Heatmaps, overlays, raw maps, images and reports."},
            {"name": "service", "description": "Health, readiness and what this server offers."},
        ],
    )
    app.state.service = None
    install_handlers(app)
    app.include_router(api.router)
    app.include_router(health.router)
    app.include_router(web.router)
    if settings.docs:
        app.include_router(web.docs_router)
    app.mount("/static", web.static_files(), name="static")
    app.add_middleware(EarlyAuth)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)  # a declared 413 before a charge
    app.add_middleware(RateLimitHeaders)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(HeadAsGet)
    return app
