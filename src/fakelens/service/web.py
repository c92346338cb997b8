"""The web page: ``/`` and its static files (plain HTML, CSS and JS in the package; nothing from a CDN), and
the optional API docs page ``/docs`` (Swagger UI from jsDelivr, one pinned version, integrity-checked)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse
from starlette.staticfiles import StaticFiles

__all__ = ["DOCS_CSP", "STATIC_DIR", "docs_router", "router", "static_files"]

STATIC_DIR = Path(__file__).parent / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
def index() -> FileResponse:
    return FileResponse(
        STATIC_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"}
    )


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC_DIR)


SWAGGER_UI = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.35.0"
"""One exact version; the hashes below are of its files as published on npm (Subresource Integrity)."""
_SWAGGER_SRI = {
    "swagger-ui-bundle.js": "sha384-gjRm0bEPMeTmMh5jT2cHccIwCUZSTd8YC+j0d0sXw0MdGEfScduGpSyF3ZSSLkX9",
    "swagger-ui.css": "sha384-WlYgdmXYOOBWL5apwjDEZwN+U3HmXSSu5R6V5aGxEcf7z+KuRNwBhoxKVN1i3D5I",
}
DOCS_CSP = (
    "default-src 'none'; script-src 'self' https://cdn.jsdelivr.net; "
    "style-src https://cdn.jsdelivr.net 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The docs page may load Swagger UI from the CDN (only files that match their hashes run) and nothing else;
its start-up script is ``/static/docs.js``, not inline."""

_DOCS_HTML = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fakelens API</title>
<link rel="stylesheet" href="{SWAGGER_UI}/swagger-ui.css" integrity="{_SWAGGER_SRI["swagger-ui.css"]}"
 crossorigin="anonymous"></head>
<body><div id="swagger-ui"></div>
<script src="{SWAGGER_UI}/swagger-ui-bundle.js" integrity="{_SWAGGER_SRI["swagger-ui-bundle.js"]}"
 crossorigin="anonymous"></script>
<script src="/static/docs.js"></script>
</body></html>
"""

docs_router = APIRouter(include_in_schema=False)


@docs_router.get("/docs")
def docs() -> HTMLResponse:
    return HTMLResponse(
        _DOCS_HTML, headers={"Content-Security-Policy": DOCS_CSP, "Cache-Control": "no-cache"}
    )
