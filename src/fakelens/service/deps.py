"""FastAPI dependencies: the service state, and the caller authenticated by API key and rate-limited."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from fakelens.service.errors import ApiError
from fakelens.service.keys import Principal, verify_key
from fakelens.service.ratelimit import RateLimiter
from fakelens.service.state import ServiceState

__all__ = ["Reader", "State", "Submitter", "authenticate_key", "charge", "key_from_headers"]

_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key (`fakelens keys create`).")
_bearer = HTTPBearer(auto_error=False, description="The same API key as a bearer token.")


def get_state(request: Request) -> ServiceState:
    state: ServiceState | None = getattr(request.app.state, "service", None)
    if state is None:
        raise ApiError(503, "starting", "the service is starting", headers={"Retry-After": "2"})
    return state


State = Annotated[ServiceState, Depends(get_state)]


def _authenticate(
    state: ServiceState, header: str | None, bearer: HTTPAuthorizationCredentials | None
) -> Principal:
    return authenticate_key(state, header or (bearer.credentials if bearer is not None else None))


def key_from_headers(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The API key of raw ASGI headers (lower-case names), read as the route's own dependencies read it:
    the first non-empty ``X-API-Key``, else the first ``Authorization: Bearer`` token."""
    first = {}
    for name, value in headers:
        if name in (b"x-api-key", b"authorization") and value.strip() and name not in first:
            first[name] = value.decode("latin-1").strip()
    if b"x-api-key" in first:
        return first[b"x-api-key"]
    scheme, _, token = first.get(b"authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def authenticate_key(state: ServiceState, key: str | None) -> Principal:
    """The caller of ``key``, or 401."""
    if not key:
        raise ApiError(
            401,
            "unauthorized",
            "an API key is required (header X-API-Key or Authorization: Bearer)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    who = verify_key(state.db, key)
    if who is None:
        raise ApiError(
            401, "unauthorized", "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"}
        )
    return who


def charge(limiter: RateLimiter, who: Principal, scope_state: dict[str, Any] | None = None) -> None:
    """Take one request from ``who``'s allowance on ``limiter``, or answer 429 with ``Retry-After``; with
    the request's ``scope["state"]``, its answer gets ``RateLimit-*`` headers (:class:`RateLimitHeaders`)."""
    if scope_state is not None:
        scope_state["ratelimit"] = (limiter, who.key_id)
    wait = limiter.acquire(who.key_id)
    if wait > 0:
        after = RateLimiter.retry_after(wait)
        raise ApiError(
            429,
            "rate_limited",
            f"too many requests for this API key; retry in {after} s",
            headers={"Retry-After": str(after), **limiter.headers(who.key_id)},
        )


def reader(
    state: State,
    request: Request,
    header: Annotated[str | None, Depends(_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """An authenticated caller within the read rate limit."""
    who = _authenticate(state, header, bearer)
    charge(state.read_limit, who, request.scope.setdefault("state", {}))
    return who


def submitter(
    state: State,
    request: Request,
    header: Annotated[str | None, Depends(_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """An authenticated caller within the analysis rate limit (checked and charged by
    :class:`~fakelens.service.middleware.EarlyAuth` before the upload was read, when it runs)."""
    early: Principal | None = getattr(request.state, "principal", None)
    if early is not None:
        return early
    who = _authenticate(state, header, bearer)
    charge(state.submit_limit, who, request.scope.setdefault("state", {}))
    return who


Reader = Annotated[Principal, Depends(reader)]
Submitter = Annotated[Principal, Depends(submitter)]
