"""One JSON shape for every error the API returns: ``{"error": {"code": ..., "message": ...}}``."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from fakelens.errors import FakelensError, ImageError
from fakelens.io import sniff_format

__all__ = ["ApiError", "allowed_methods", "error_body", "image_error", "install_handlers"]

log = logging.getLogger("fakelens.service")

_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "upload_too_large",
}
_TOO_BIG = re.compile(r"exceeds the limit|decompression bomb")
_OPERATOR_HINT = re.compile(r"; raise max_pixels or \$\w+ to allow it")


class ApiError(Exception):
    """An answer other than success: HTTP status, a stable machine-readable code and a human message."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def image_error(exc: ImageError, data: bytes) -> ApiError:
    """An upload that :func:`fakelens.io.load_image` refused: 415 when the bytes are no supported image
    format, 413 when it has too many pixels, else 422 (truncated, corrupt, zero-size)."""
    message = str(exc)
    if sniff_format(data) is None:
        return ApiError(415, "unsupported_media_type", message)
    if _TOO_BIG.search(message):
        # the library's hint on raising the limit is for the operator, not the client
        return ApiError(413, "image_too_large", _OPERATOR_HINT.sub("", message))
    return ApiError(422, "invalid_image", message)


def allowed_methods(routes: Iterable[Any], path: str) -> list[str]:
    """Every method some route serves at ``path`` (RFC 9110 §15.5.6: a 405 lists them all in ``Allow``;
    Starlette names only the first route's). Included routers are walked; GET implies HEAD (``HeadAsGet``)."""
    methods: set[str] = set()
    for route in routes:
        inner = getattr(route, "original_router", None)  # FastAPI's wrapper of an included router
        if inner is not None:
            methods.update(allowed_methods(inner.routes, path))
        elif getattr(route, "methods", None) and route.path_regex.match(path):
            methods.update(route.methods)
        elif isinstance(route, Mount) and isinstance(route.app, StaticFiles) and route.path_regex.match(path):
            methods.update(("GET", "HEAD"))  # static files answer nothing else
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def _routed_path(scope: Mapping[str, Any]) -> str:
    """The path the app's routes match: below the app's root path (behind a proxy that mounts the app at
    /fakelens). A mount (/static) extends ``root_path``; ``app_root_path`` is the app's own."""
    path, root = scope["path"], scope.get("app_root_path", scope.get("root_path", ""))
    if root and (path == root or path.startswith(root + "/")):
        return path[len(root) :] or "/"
    return str(path)


def _plain(msg: str) -> str:
    """A validation message without the framework's internals (a text field where a file belongs)."""
    if "Expected UploadFile" in msg:
        return "expected a file (a form part with a filename), got a text field"
    return msg


def install_handlers(app: FastAPI) -> None:
    """Map ApiError, HTTP errors, validation errors, user errors and bugs to the JSON error shape."""

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        headers = dict(getattr(exc, "headers", None) or {})
        message = str(exc.detail)
        if exc.status_code == 405:
            headers["Allow"] = allow = ", ".join(allowed_methods(app.routes, _routed_path(request.scope)))
            message = f"{request.method} is not allowed on {request.url.path}; allowed: {allow}"
        return JSONResponse(error_body(code, message), exc.status_code, headers=headers or None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": list(e.get("loc", ())), "msg": _plain(str(e.get("msg", "")))} for e in exc.errors()
        ]
        where = ", ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in details)
        return JSONResponse(error_body("invalid_request", where or "invalid request", details=details), 422)

    @app.exception_handler(FakelensError)
    async def _user(_: Request, exc: FakelensError) -> JSONResponse:
        return JSONResponse(error_body("invalid_request", str(exc)), 400)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal_error", "internal error; the incident was logged"), 500)
