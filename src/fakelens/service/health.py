"""Liveness and readiness probes (no key needed)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from fakelens.service.schemas import HealthOut, ReadyOut
from fakelens.service.state import ServiceState

__all__ = ["router"]

router = APIRouter(tags=["service"])


MIN_FREE_BYTES = 100 * 2**20
"""Free space the data directory needs to be ready: an analysis of a large upload stores tens of MB."""


def _free_bytes(path: Path) -> int:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 0


@router.get("/healthz", response_model=HealthOut)
def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz", response_model=ReadyOut, responses={503: {"model": ReadyOut}})
def readyz(request: Request) -> JSONResponse:
    """Ready to analyse: model loaded, database reachable, workers alive, at least 100 MiB free in the data
    directory (503 otherwise)."""
    state: ServiceState | None = getattr(request.app.state, "service", None)
    if state is None:
        body: dict[str, Any] = {"status": "starting", "checks": {"model": False}, "queue": {}}
        return JSONResponse(body, 503, headers={"Retry-After": "2"})
    queue = state.queue.stats()
    checks = {
        "model": True,
        "database": state.db.ping(),
        "workers": bool(queue["alive"]),
        "disk": _free_bytes(state.settings.data_dir) >= MIN_FREE_BYTES,
    }
    ok = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ok else "unavailable", "checks": checks, "queue": queue}, 200 if ok else 503
    )
