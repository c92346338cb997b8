"""ASGI middleware: the upload size limit (checked while the body streams in, before any parsing), the API
key checked and charged before an upload is read (:class:`EarlyAuth`), ``RateLimit-*`` headers, security
headers on every answer, and HEAD answered as GET without the body."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio.to_thread
from starlette.exceptions import HTTPException

from fakelens.service.deps import authenticate_key, charge, key_from_headers
from fakelens.service.errors import ApiError, error_body

__all__ = ["BodySizeLimit", "EarlyAuth", "HeadAsGet", "RateLimitHeaders", "SecurityHeaders"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MULTIPART_SLACK = 64 * 1024
"""Bytes allowed on top of the file limit for the multipart envelope and the option fields."""


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` (+ multipart slack) with 413: at once when Content-Length
    says so, else as soon as the streamed body passes the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.limit = max_bytes + MULTIPART_SLACK
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        message = f"upload larger than the limit of {self.max_bytes} bytes"
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared < 0 or declared > self.limit:
                code, msg = (
                    ("upload_too_large", message)
                    if declared > 0
                    else ("invalid_request", "bad Content-Length")
                )
                await _send_json(send, 413 if declared > 0 else 400, error_body(code, msg))
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise HTTPException(413, message)
            return msg

        await self.app(scope, limited, send)


class _AddHeaders:
    """Adds :meth:`extra` headers to every HTTP answer, unless the answer sets them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def extra(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                names = {k.lower() for k, _ in headers}
                message["headers"] = headers + [(k, v) for k, v in self.extra(scope) if k not in names]
            await send(message)

        await self.app(scope, receive, with_headers)


class SecurityHeaders(_AddHeaders):
    """``nosniff``, no referrer, no framing, and a Content-Security-Policy that loads nothing from other
    origins (the web page needs no CDN), unless a response sets its own (the report, the docs page)."""

    CSP = (
        "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    )

    def extra(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        return [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
            (b"content-security-policy", self.CSP.encode()),
        ]


class RateLimitHeaders(_AddHeaders):
    """``RateLimit-Limit``, ``-Remaining`` and ``-Reset`` on every answer to a rate-limited key (set by
    :func:`~fakelens.service.deps.charge`), so a client can pace itself before it meets a 429."""

    def extra(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        limit = (scope.get("state") or {}).get("ratelimit")
        if limit is None:
            return []
        limiter, key = limit
        return [(k.lower().encode(), v.encode()) for k, v in limiter.headers(key).items()]


class EarlyAuth:
    """``POST /v1/analyses``: the API key is checked and charged, and the body's type checked, before the
    upload is read (FastAPI reads a form before it runs any dependency): a caller without a valid key, over
    its rate, or sending no multipart form is answered at once instead of after up to the upload limit."""

    def __init__(self, app: ASGIApp, path: str = "/v1/analyses") -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = getattr(getattr(scope.get("app"), "state", None), "service", None)
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):  # behind --root-path the path still carries the prefix
            path = path[len(root) :]
        ours = scope["type"] == "http" and scope["method"] == "POST" and path == self.path
        if not ours or state is None:
            await self.app(scope, receive, send)  # a starting service answers 503 from its dependency
            return
        raw = list(scope.get("headers") or [])
        try:
            who = await anyio.to_thread.run_sync(authenticate_key, state, key_from_headers(raw))
            charge(state.submit_limit, who, scope.setdefault("state", {}))
        except ApiError as exc:
            await _send_json(send, exc.status, error_body(exc.code, exc.message), exc.headers)
            return
        kind = next((v for k, v in raw if k == b"content-type"), b"")  # the first, as Starlette reads it
        if not kind.lower().startswith(b"multipart/form-data"):
            state.submit_limit.refund(who.key_id)
            await _send_json(
                send,
                415,
                error_body(
                    "unsupported_media_type",
                    "send the image as multipart/form-data, in a file field named 'image'",
                ),
            )
            return
        scope.setdefault("state", {})["principal"] = who
        await self.app(scope, receive, send)


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


HEAD = "fakelens.head"
"""Set in the scope of a HEAD request answered as GET, for routes whose GET would start costly work."""


class HeadAsGet:
    """``HEAD`` on any route: the ``GET`` answer's status and headers (Content-Length, ETag, type) with no
    body, as RFC 9110 §9.3.2 asks (FastAPI routes declared with ``GET`` alone answer ``HEAD`` with 405)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if not message.get("more_body", False):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            await send(message)

        await self.app({**scope, "method": "GET", HEAD: True}, receive, headers_only)
