"""``/v1`` routes: create, read, list and delete analyses, and their files and report — within the caller's
tenant only (another tenant's analysis answers 404, as if it did not exist)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Header, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from fakelens import __version__
from fakelens.analysis import SMALL_IMAGE
from fakelens.constants import BLANK_TEXTURE, PARTIAL_READ
from fakelens.explain.engine import class_agnostic
from fakelens.models.ensemble import Ensemble
from fakelens.service.analyzer import AnalysisRequest, map_npy
from fakelens.service.db import Analysis
from fakelens.service.deps import Reader, State, Submitter, charge
from fakelens.service.errors import ApiError
from fakelens.service.keys import Principal
from fakelens.service.middleware import HEAD
from fakelens.service.report import REPORT_CSP, render_analysis_report
from fakelens.service.repository import StorageUnavailable, cursor
from fakelens.service.schemas import AnalysisOut, AnalysisPage, ErrorOut, ServiceInfo, utc_iso
from fakelens.service.state import ServiceState
from fakelens.service.workqueue import QueueFull

__all__ = ["analysis_out", "router"]

log = logging.getLogger("fakelens.service")

router = APIRouter(prefix="/v1")

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Missing or invalid API key."},
    404: {"model": ErrorOut, "description": "No such analysis for this tenant."},
    422: {"model": ErrorOut, "description": "A parameter out of range or of the wrong type."},
    429: {"model": ErrorOut, "description": "Rate limit of the API key; see `Retry-After`."},
    503: {"model": ErrorOut, "description": "The service is starting (see `Retry-After`)."},
}
_UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorOut,
        "description": "Unknown method or model, too many methods, no method that runs on the chosen "
        "models, or more than one image part.",
    },
    401: _ERRORS[401],
    413: {"model": ErrorOut, "description": "Upload over the byte limit, or image over the pixel limit."},
    415: {
        "model": ErrorOut,
        "description": "The bytes are not a supported image (JPEG, PNG, WebP, GIF, BMP, TIFF, AVIF).",
    },
    422: {"model": ErrorOut, "description": "Missing file, empty, truncated or corrupt image."},
    429: _ERRORS[429],
    503: {
        "model": ErrorOut,
        "description": "All workers busy and the queue full, the service starting, or its storage unable to "
        "keep results (a full disk); see `Retry-After`.",
    },
}
_NOT_MODIFIED: dict[str, Any] = {
    "description": "Not modified: `If-None-Match` named this file's `ETag` (files never change)."
}
FileName = Literal["heatmap.png", "overlay.png", "map.npy"]
_FILES: dict[str, tuple[str, str]] = {
    "heatmap.png": ("heatmap", "image/png"),
    "overlay.png": ("overlay", "image/png"),
    "map.npy": ("map", "application/octet-stream"),
}


def _csv(value: str | None) -> list[str]:
    return [p.strip() for p in (value or "").split(",") if p.strip()]


def analysis_out(row: Analysis) -> dict[str, Any]:
    """The API's JSON for a stored analysis (file URLs are built from ids, never from hashes)."""
    r = row.result
    base = f"/v1/analyses/{row.id}"
    blank = r.get("texture", BLANK_TEXTURE) < BLANK_TEXTURE  # nothing to judge: no verdict, only scores
    models = []
    for m in r["models"]:
        mb = f"{base}/models/{m['key']}"
        hm = m["heatmaps"]
        models.append(
            {
                "key": m["key"],
                "name": m["name"],
                "score": m["score"],
                "verdict": None if blank else m["verdict"],
                "threshold": m.get("threshold", r["threshold"]),
                "scale": m.get("scale"),
                "tiles": m.get("tiles"),
                "pixel_fraction": m.get("pixel_fraction"),
                "coverage": m.get("coverage"),
                "untrained": m.get("untrained", False),
                "heatmaps": {k: f"{mb}/{k}/heatmap.png" for k in hm},
                "overlays": {k: f"{mb}/{k}/overlay.png" for k in hm},
                "maps": {k: f"{mb}/{k}/map.npy" for k in hm},
                "summaries": {k: v["summary"] for k, v in hm.items()},
                "robustness": m["robustness"],
                "errors": m["errors"],
            }
        )
    return {
        "id": row.id,
        "status": row.status,
        "verdict": None if blank else row.verdict,
        "score": row.score,
        "threshold": r["threshold"],
        "rule": r["rule"],
        "calibrated": r.get("calibrated", False),
        "transparent": r.get("transparent", 0.0),
        "frames": r.get("frames", 1),
        "small": min((m.get("pixel_fraction", 1.0) for m in r["models"]), default=1.0) < SMALL_IMAGE,
        "blank": blank,
        "partial": min((m.get("coverage", 1.0) for m in r["models"]), default=1.0) < PARTIAL_READ,
        "split": len({m["verdict"] for m in r["models"] if m["score"] is not None}) > 1,
        "methods": r["methods"],
        "models": models,
        "faces": r.get("faces"),
        "reading": r.get("reading", []),
        "image": {
            "width": row.width,
            "height": row.height,
            "sha256": row.image_sha256,
            "format": r["image"]["format"],
            "bytes": r["image"]["bytes"],
            "filename": row.filename,
            "url": f"{base}/image",
            "original_url": f"{base}/original",
        },
        "created_at": utc_iso(row.created_at),
        "duration_ms": r.get("duration_ms"),
        "links": {"self": base, "report": f"{base}/report", "image": f"{base}/image"},
    }


def _idempotency_key(key: str | None) -> str | None:
    """The request's ``Idempotency-Key`` (1–200 printable characters), or None."""
    if key is None:
        return None
    if not 0 < len(key) <= 200 or not key.isprintable():
        raise ApiError(400, "invalid_request", "Idempotency-Key must be 1 to 200 printable characters")
    return key


def _shown(value: str, limit: int = 64) -> str:
    """A caller's value quoted for an error message, cut to ``limit`` characters (never echoed whole)."""
    return repr(value if len(value) <= limit else value[: limit - 1] + "…")


def _owned(state: ServiceState, who: Principal, analysis_id: str) -> Analysis:
    row = state.repo.get(who.tenant_id, analysis_id)
    if row is None:
        raise ApiError(404, "not_found", f"no analysis {_shown(analysis_id)}")
    return row


@router.get("/info", response_model=ServiceInfo, tags=["service"])
def info(state: State) -> dict[str, Any]:
    """Models, methods and limits of this server (no key needed)."""
    s = state.settings
    return {
        "version": __version__,
        "models": state.analyzer.members,
        "methods": list(s.methods),
        "allowed_methods": list(s.allowed_methods),
        "class_agnostic_methods": [m for m in s.allowed_methods if class_agnostic(m)],
        "max_methods": s.max_methods,
        "max_upload_bytes": s.max_upload_bytes,
        "max_pixels": s.max_pixels,
        "robustness": s.robustness,
    }


@router.post(
    "/analyses",
    status_code=201,
    response_model=AnalysisOut,
    responses={
        201: {
            "description": "Stored; `Location` names the new analysis.",
            "headers": {"Location": {"description": "`/v1/analyses/{id}`", "schema": {"type": "string"}}},
        },
        200: {
            "model": AnalysisOut,
            "description": "A retry with an `Idempotency-Key` already used for this request: the first "
            "request's analysis, no new work.",
        },
        **_UPLOAD_ERRORS,
    },
    tags=["analyses"],
)
async def create_analysis(
    state: State,
    who: Submitter,
    request: Request,
    image: Annotated[UploadFile, File(description="The image; its bytes decide its type, not its name.")],
    methods: Annotated[
        str | None, Form(description="Comma-separated explanation methods (default: the server's).")
    ] = None,
    models: Annotated[
        str | None, Form(description="Comma-separated model keys (default: every model).")
    ] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Any 1–200 printable characters: a retry with the same key and request gets the "
            "first request's analysis (200, `Idempotent-Replayed: true`) instead of a second one; kept 24 h "
            "in memory.",
        ),
    ] = None,
) -> JSONResponse:
    """Analyse one image: each model's verdict and heatmaps, the ensemble's verdict, robustness badges.

    Answers when the analysis is stored (complete or not at all). Over capacity, or when the storage cannot
    keep it: 503 with `Retry-After`.
    """
    # the upload has been read: every answer from here on costs the request's token (but a full queue)
    if len((await request.form()).getlist("image")) > 1:  # which one was meant? never guess
        raise ApiError(400, "invalid_request", "one image per request: the form has several 'image' parts")
    limit = state.settings.max_upload_bytes
    data = await image.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "upload_too_large", f"upload larger than the limit of {limit} bytes")
    if not data:
        raise ApiError(422, "invalid_image", "the uploaded file is empty (0 bytes)")
    for name, value in (("methods", methods), ("models", models)):
        if value is not None and value.strip() and not _csv(value):  # "," is a mistake, not the default
            raise ApiError(400, "invalid_request", f"{name} names nothing: {_shown(value)}")
    chosen, picked = state.analyzer.check_options(_csv(methods), _csv(models))
    req = AnalysisRequest(data, image.filename or "", chosen, picked)
    analyzer, repo, tenant = state.analyzer, state.repo, who.tenant_id

    def start() -> Future[Analysis]:
        try:
            return state.queue.submit(lambda replica: repo.save(analyzer.run(replica, req), tenant))
        except QueueFull as exc:  # too busy to take it: a client that waits Retry-After is not charged
            state.submit_limit.refund(who.key_id)
            raise ApiError(503, "busy", str(exc), headers={"Retry-After": str(exc.retry_after)}) from None

    retry_key = _idempotency_key(idempotency_key)
    if retry_key is None:
        fut, fresh = start(), True
    else:
        digest = hashlib.sha256(data + repr((chosen, picked)).encode()).hexdigest()
        try:
            fut, fresh = state.retries.claim((tenant, retry_key), digest, start)
        except ValueError as exc:
            raise ApiError(422, "invalid_request", str(exc)) from None
    try:
        done = await asyncio.wrap_future(fut)
    except StorageUnavailable as exc:  # the server's trouble: log it, charge nothing, ask to come back
        log.error("%s", exc)
        state.submit_limit.refund(who.key_id)
        raise ApiError(
            503,
            "storage_unavailable",
            "the server cannot store results right now; try again later",
            headers={"Retry-After": "30"},
        ) from None
    if not fresh:  # a retry: the first request's analysis, no new work
        stored = state.repo.get(tenant, done if isinstance(done, str) else done.id)
        if stored is None:
            raise ApiError(
                404, "not_found", "the analysis of this Idempotency-Key was deleted; use a new key"
            )
        body = analysis_out(stored)
        return JSONResponse(
            body, 200, headers={"Location": body["links"]["self"], "Idempotent-Replayed": "true"}
        )
    body = analysis_out(done)
    return JSONResponse(body, 201, headers={"Location": body["links"]["self"]})


@router.get("/analyses", response_model=AnalysisPage, responses=_ERRORS, tags=["analyses"])
def list_analyses(
    state: State,
    who: Reader,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    before: Annotated[
        str | None,
        Query(
            max_length=64,
            description="A page's `next_before` (or an analysis id): only the analyses listed after it "
            "(newest first) — the next page, without skipping or repeating items as analyses arrive or "
            "are deleted.",
        ),
    ] = None,
) -> dict[str, Any]:
    """The caller's analyses, newest first (by the time each was stored, then id)."""
    page = state.repo.list(who.tenant_id, limit, offset, before)
    if page is None:
        raise ApiError(404, "not_found", f"no analysis {_shown(before or '')} to list from")
    more = offset + limit < page.total
    return {
        "items": [analysis_out(r) for r in page.items],
        "total": page.total,
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if more else None,
        "next_before": cursor(page.items[-1]) if more and page.items else None,
    }


@router.get("/analyses/{analysis_id}", response_model=AnalysisOut, responses=_ERRORS, tags=["analyses"])
def get_analysis(state: State, who: Reader, analysis_id: str) -> dict[str, Any]:
    """One of the caller's analyses."""
    return analysis_out(_owned(state, who, analysis_id))


@router.delete("/analyses/{analysis_id}", status_code=204, responses=_ERRORS, tags=["analyses"])
def delete_analysis(state: State, who: Reader, analysis_id: str) -> Response:
    """Delete an analysis and the files no other analysis uses."""
    if not state.repo.delete(who.tenant_id, analysis_id):
        raise ApiError(404, "not_found", f"no analysis {_shown(analysis_id)}")
    return Response(status_code=204)


CONVERSIONS = threading.BoundedSemaphore(2)
"""Served files converted at the same time: a 40-MP map becomes a 160 MB ``.npy`` in memory, and file reads
run in the server's thread pool (40 threads), outside the work queue that bounds analyses."""
CONVERSION_WAIT_S = 30.0


def _file(
    state: ServiceState,
    request: Request,
    sha: str,
    media_type: str,
    filename: str | None = None,
    convert: Callable[[bytes], bytes] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """A stored file (content-addressed: its ETag never changes); ``convert`` turns the stored bytes into
    the served ones. A client revalidating with ``If-None-Match`` gets 304 and no body."""
    etag = f'"{sha}"'
    headers = {"Cache-Control": "private, max-age=31536000, immutable", "ETag": etag, **(headers or {})}
    if filename:
        headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    wanted = request.headers.get("if-none-match", "")
    if wanted.strip() == "*" or etag in (t.strip().removeprefix("W/") for t in wanted.split(",")):
        return Response(status_code=304, headers=headers)
    try:
        data = state.repo.read_file(sha)
    except FileNotFoundError:  # the analysis was deleted between its lookup and this read
        raise ApiError(404, "not_found", "the analysis was deleted") from None
    if convert is None:
        return Response(data, media_type=media_type, headers=headers)
    if not CONVERSIONS.acquire(timeout=CONVERSION_WAIT_S):
        raise ApiError(
            503, "busy", "the server is converting other maps; try again", headers={"Retry-After": "5"}
        )
    try:
        body = convert(data)
    finally:
        CONVERSIONS.release()
    return Response(body, media_type=media_type, headers=headers)


@router.get(
    "/analyses/{analysis_id}/image",
    responses={**_ERRORS, 200: {"content": {"image/jpeg": {}}}, 304: _NOT_MODIFIED},
    response_class=Response,
    tags=["files"],
)
def get_image(state: State, who: Reader, request: Request, analysis_id: str) -> Response:
    """The decoded, upright image (JPEG preview) that the heatmaps lie on."""
    row = _owned(state, who, analysis_id)
    return _file(state, request, row.result["image"]["preview"], "image/jpeg")


@router.get(
    "/analyses/{analysis_id}/original",
    responses={**_ERRORS, 200: {"content": {"application/octet-stream": {}}}, 304: _NOT_MODIFIED},
    response_class=Response,
    tags=["files"],
)
def get_original(state: State, who: Reader, request: Request, analysis_id: str) -> Response:
    """The uploaded bytes, unchanged (their SHA-256 is `image.sha256`)."""
    row = _owned(state, who, analysis_id)
    fmt = row.result["image"]["format"] or "bin"
    return _file(state, request, row.image_sha256, "application/octet-stream", f"{row.id}.{fmt}")


@router.get(
    "/analyses/{analysis_id}/models/{model}/{method}/{name}",
    responses={
        **_ERRORS,
        200: {
            "content": {"image/png": {}, "application/octet-stream": {}},
            "description": "`heatmap.png` and `overlay.png` as PNG; `map.npy` as a NumPy float32 array.",
        },
        304: _NOT_MODIFIED,
    },
    response_class=Response,
    tags=["files"],
)
def get_map_file(
    state: State, who: Reader, request: Request, analysis_id: str, model: str, method: str, name: FileName
) -> Response:
    """A model's heatmap PNG, overlay PNG or raw map (`.npy`, float32 (H, W) in [0, 1]) for one method."""
    row = _owned(state, who, analysis_id)
    kind, media = _FILES[name]
    for m in row.result["models"]:
        if m["key"] == model and method in m["heatmaps"]:
            stem = name.split(".")[0]
            sha = m["heatmaps"][method]["files"][kind]
            if kind == "map":  # stored as a 16-bit PNG, served as the float32 .npy it stands for
                fname = f"{row.id}.{model}.{method}.{stem}.npy"
                return _file(state, request, sha, media, fname, convert=map_npy)
            return _file(state, request, sha, media)
    raise ApiError(
        404,
        "not_found",
        f"analysis {_shown(analysis_id)} has no {_shown(method)} map for model {_shown(model)}",
    )


@router.get(
    "/analyses/{analysis_id}/report",
    responses={
        **_ERRORS,
        200: {"content": {"text/html": {}}},
        304: _NOT_MODIFIED,
        429: {
            "model": ErrorOut,
            "description": "Rate limit of the API key; a report not yet rendered counts as an analysis.",
        },
        503: _UPLOAD_ERRORS[503],
    },
    response_class=Response,
    tags=["files"],
)
async def get_report(state: State, who: Reader, request: Request, analysis_id: str) -> Response:
    """A self-contained HTML report (images inlined, no script): verdicts, overlays per model and method,
    robustness badges, facial regions when a face is found.

    Rendered once by the (bounded) workers, which costs about as much as an analysis and counts against the
    key's analysis rate; then kept with the analysis and served from the store."""
    row = await asyncio.to_thread(_owned, state, who, analysis_id)
    headers = {"Content-Security-Policy": REPORT_CSP}
    filename = f"fakelens-report-{row.id}.html"
    sha = row.result.get("files", {}).get("report")
    if sha is None and request.scope.get(HEAD):  # HEAD is safe: it never starts (or pays for) a render
        head = Response(status_code=200, media_type="text/html; charset=utf-8", headers=headers)
        del head.headers["content-length"]  # not 0: the length is unknown until the report is rendered
        return head
    if sha is None:
        sha = await _rendered_report(state, who, row)
    return _file(state, request, sha, "text/html; charset=utf-8", filename, headers=headers)


async def _rendered_report(state: ServiceState, who: Principal, row: Analysis) -> str:
    """Render the report of ``row`` on the workers once, store it with the analysis and return its hash; a
    request that finds the same report rendering waits for that render (one render, one charge)."""
    with state.renders_lock:
        fut = state.renders.get(row.id)
        first = fut is None
        if first:
            charge(state.submit_limit, who)
            try:
                fut = _submit_render(state, who, row)
            except ApiError:  # too busy to take it: a client that waits Retry-After is not charged
                state.submit_limit.refund(who.key_id)
                raise
            state.renders[row.id] = fut
            fut.add_done_callback(lambda _f: _forget_render(state, row.id))
    assert fut is not None
    sha = await asyncio.wrap_future(fut)
    if sha is None:
        raise ApiError(404, "not_found", "the analysis was deleted")
    return sha


def _forget_render(state: ServiceState, analysis_id: str) -> None:
    with state.renders_lock:
        state.renders.pop(analysis_id, None)


def _submit_render(state: ServiceState, who: Principal, row: Analysis) -> Future[str | None]:
    """Queue the rendering of ``row``'s report (503 when the queue is full); its future gives the stored
    report's hash, or ``None`` if the analysis was deleted meanwhile."""
    out, result, repo, s, analyzer = analysis_out(row), row.result, state.repo, state.settings, state.analyzer

    def render(replica: Ensemble) -> str | None:
        try:
            html = render_analysis_report(
                out,
                result,
                repo.read_file,
                max_pixels=s.max_pixels,
                faces=s.report_faces,
                model=analyzer.subset(replica, [m["key"] for m in out["models"]]),
                max_tiles=s.max_tiles,
            )
        except FileNotFoundError:  # deleted while this job waited
            return None
        return repo.attach(who.tenant_id, row.id, "report", html.encode())

    try:
        return state.queue.submit(render)
    except QueueFull as exc:
        raise ApiError(503, "busy", str(exc), headers={"Retry-After": str(exc.retry_after)}) from None
