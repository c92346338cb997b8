"""API keys per tenant: ``fl_<id>_<secret>`` with 256 random bits, stored only as SHA-256, compared in
constant time. The whole key is shown once, when it is created."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select

from fakelens.errors import ConfigError
from fakelens.service.db import ApiKey, Database, Tenant, utcnow

__all__ = ["Principal", "create_key", "hash_key", "list_keys", "revoke_key", "verify_key"]

_KEY = re.compile(r"^fl_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_DUMMY_HASH = "0" * 64


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant (by id and name) and the public id of the key used."""

    tenant_id: int
    tenant: str
    key_id: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(db: Database, tenant: str) -> tuple[str, str]:
    """A new key for ``tenant`` (created if new); returns ``(key_id, key)``. Only the hash is stored."""
    if not _TENANT.match(tenant):
        raise ConfigError(
            f"tenant name {tenant!r}: use 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    key_id = secrets.token_hex(6)
    key = f"fl_{key_id}_{secrets.token_urlsafe(32)}"
    with db.session() as s:
        row = s.scalar(select(Tenant).where(Tenant.name == tenant))
        if row is None:
            twin = s.scalar(select(Tenant.name).where(func.lower(Tenant.name) == tenant.lower()))
            if twin is not None:  # a typo would give an analyst an empty history, with no hint why
                raise ConfigError(
                    f"tenant {twin!r} exists and {tenant!r} differs from it only in case: use --tenant "
                    f"{twin} for its keys (tenant names that differ only in case are refused)"
                )
            row = Tenant(name=tenant)
            s.add(row)
            s.flush()
        s.add(ApiKey(key_id=key_id, key_hash=hash_key(key), tenant_id=row.id))
    return key_id, key


def verify_key(db: Database, key: str) -> Principal | None:
    """The principal of a valid, unrevoked key, else ``None`` (same work whether or not the id exists)."""
    m = _KEY.match(key.strip())
    key_id = m.group(1) if m else ""
    with db.session() as s:
        row = s.scalar(select(ApiKey).where(ApiKey.key_id == key_id)) if key_id else None
        expected = row.key_hash if row is not None else _DUMMY_HASH
        ok = hmac.compare_digest(expected, hash_key(key.strip()))
        if not ok or row is None or row.revoked_at is not None:
            return None
        return Principal(row.tenant_id, row.tenant.name, row.key_id)


def list_keys(db: Database, tenant: str | None = None) -> list[dict[str, object]]:
    """Public facts about keys (never the key): id, tenant, created, revoked."""
    with db.session() as s:
        q = select(ApiKey, Tenant).join(Tenant, ApiKey.tenant_id == Tenant.id).order_by(ApiKey.id)
        if tenant is not None:
            q = q.where(Tenant.name == tenant)
        return [
            {
                "key_id": k.key_id,
                "tenant": t.name,
                "created_at": k.created_at.isoformat() + "Z",
                "revoked": k.revoked_at is not None,
            }
            for k, t in s.execute(q).all()
        ]


def revoke_key(db: Database, key_id: str) -> bool:
    """Revoke a key by its public id; ``False`` if there is no such key."""
    with db.session() as s:
        row = s.scalar(select(ApiKey).where(ApiKey.key_id == key_id))
        if row is None:
            return False
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        return True
