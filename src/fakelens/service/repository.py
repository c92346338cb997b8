"""Stored analyses: save (files first, then one transaction), read, list and delete — always within one
tenant — and garbage collection of files no row references.

Saving and deleting hold one lock, so a delete never removes a file that a concurrent save has just found
already present and is about to reference. The lock is per process: one server owns a data directory at a
time (see :class:`DataDirLock`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.exc import SQLAlchemyError

from fakelens.io import FolderLock, sha256_file
from fakelens.service.analyzer import Draft
from fakelens.service.db import Analysis, BlobRef, Database
from fakelens.service.store import BlobStore

__all__ = ["DataDirLock", "Page", "Repository", "StorageUnavailable"]

log = logging.getLogger("fakelens.service")


class StorageUnavailable(Exception):
    """The store or the database could not take an analysis (a full disk, a locked or read-only database):
    the server's trouble, not the request's; nothing of it was kept."""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    if (orig := getattr(exc, "orig", None)) is not None:  # a DBAPI error wrapped by SQLAlchemy
        return f"database: {orig}"
    return type(exc).__name__


@dataclass(frozen=True)
class Page:
    items: list[Analysis]
    total: int
    limit: int
    offset: int


_EPOCH = datetime(1970, 1, 1)


def cursor(row: Analysis) -> str:
    """The listing cursor after ``row``: its id and commit time (µs), so it outlives the row's deletion."""
    return f"{row.id}.{(row.created_at - _EPOCH) // timedelta(microseconds=1)}"


def _cursor_key(text: str) -> tuple[datetime, str] | None:
    """``(created_at, id)`` of a :func:`cursor`; None for anything else (a plain analysis id)."""
    head, dot, micros = text.rpartition(".")
    if not dot or not head or not (micros.isascii() and micros.isdigit()):
        return None
    try:
        return _EPOCH + timedelta(microseconds=int(micros)), head
    except OverflowError:
        return None


def _owned(tenant_id: int, analysis_id: str) -> Select[Analysis]:
    """The tenant's analysis ``analysis_id`` (another tenant's is never found)."""
    return select(Analysis).where(Analysis.id == analysis_id, Analysis.tenant_id == tenant_id)


class Repository:
    """Analyses of the database and their files in the blob store."""

    def __init__(self, db: Database, store: BlobStore, *, commit_delay_s: float = 0.0) -> None:
        self.db = db
        self.store = store
        self.commit_delay_s = commit_delay_s
        self._lock = threading.Lock()

    def save(self, draft: Draft, tenant_id: int) -> Analysis:
        """Write every file atomically, then commit the row and its file references in one transaction.

        If a write or the commit fails (a full disk, a locked database), the files this save wrote are
        removed again — under the lock, so no other save can have found them meanwhile — and the failure is
        raised as :class:`StorageUnavailable` when the store or database is at fault."""
        with self._lock:
            written: list[str] = []
            try:
                return self._save(draft, tenant_id, written)
            except BaseException as exc:
                for sha in self._unreferenced(written):
                    self.store.delete(sha)
                if isinstance(exc, (OSError, SQLAlchemyError)):
                    raise StorageUnavailable(f"cannot store the analysis: {_reason(exc)}") from exc
                raise

    def _unreferenced(self, hashes: list[str]) -> list[str]:
        """Of ``hashes``, those no row references. A commit that failed may have committed all the same (a
        connection lost during COMMIT): its files stay then. When the database cannot say, none are
        deleted — a stray file is collected at the next start; a deleted one a row needs is lost."""
        if not hashes:
            return []
        try:
            used = self._referenced(hashes)
        except SQLAlchemyError:
            return []
        return [h for h in hashes if h not in used]

    def _referenced(self, hashes: list[str]) -> set[str]:
        """Of ``hashes``, those some row references."""
        with self.db.session() as s:
            return set(s.scalars(select(BlobRef.sha256).where(BlobRef.sha256.in_(hashes))).all())

    def _save(self, draft: Draft, tenant_id: int, written: list[str]) -> Analysis:
        for data in draft.blobs.values():
            sha, new = self.store.put_new(data)
            if new:
                written.append(sha)
        if self.commit_delay_s:
            time.sleep(self.commit_delay_s)  # fault injection for the crash test
        row = Analysis(
            id=draft.id,
            tenant_id=tenant_id,
            status="done",
            verdict=draft.verdict,
            score=draft.score,
            filename=draft.filename,
            image_sha256=draft.image_sha256,
            width=draft.width,
            height=draft.height,
            result=draft.result,
        )
        row.blobs = [BlobRef(sha256=sha) for sha in draft.blobs]
        with self.db.session() as s:
            s.add(row)
        return row

    def get(self, tenant_id: int, analysis_id: str) -> Analysis | None:
        """The tenant's analysis, or ``None`` (also when it belongs to another tenant)."""
        with self.db.session() as s:
            return s.scalar(_owned(tenant_id, analysis_id))

    def list(self, tenant_id: int, limit: int, offset: int, before: str | None = None) -> Page | None:
        """The tenant's analyses, newest first (by commit time, then id); with ``before`` (a page's
        :func:`cursor`, or an analysis id), only those after it in that order — a cursor that neither skips
        nor repeats items when analyses arrive or are deleted between pages. None when ``before`` is neither
        a cursor nor an analysis of the tenant."""
        with self.db.session() as s:
            where = [Analysis.tenant_id == tenant_id]
            if before is not None:
                key = _cursor_key(before)
                if key is None:
                    anchor = s.scalar(_owned(tenant_id, before))
                    if anchor is None:
                        return None
                    key = (anchor.created_at, anchor.id)
                at, last = key
                where.append(
                    or_(Analysis.created_at < at, and_(Analysis.created_at == at, Analysis.id < last))
                )
            total = s.scalar(select(func.count()).select_from(Analysis).where(*where))
            rows = s.scalars(
                select(Analysis)
                .where(*where)
                .order_by(Analysis.created_at.desc(), Analysis.id.desc())
                .limit(limit)
                .offset(offset)
            ).all()
        return Page(list(rows), int(total or 0), limit, offset)

    def delete(self, tenant_id: int, analysis_id: str) -> bool:
        """Delete the tenant's analysis and every file no other analysis uses; ``False`` if not found."""
        with self._lock:
            with self.db.session() as s:
                row = s.scalar(_owned(tenant_id, analysis_id))
                if row is None:
                    return False
                hashes = [b.sha256 for b in row.blobs]
                s.delete(row)
            for sha in set(hashes) - self._referenced(hashes):
                self.store.delete(sha)
            return True

    def attach(self, tenant_id: int, analysis_id: str, name: str, data: bytes) -> str | None:
        """Store ``data`` as the analysis's file ``name`` (``result["files"][name]``, e.g. its rendered
        report) and return its hash; the hash of the file already stored under ``name``, if any; ``None``,
        storing nothing, if the analysis was deleted meanwhile."""
        with self._lock:
            with self.db.session() as s:
                row = s.scalar(_owned(tenant_id, analysis_id))
                if row is None:
                    return None
                if (kept := row.result.get("files", {}).get(name)) is not None:
                    return str(kept)  # stored by an earlier call: one file per name, its ETag never changes
                sha = self.store.put(data)
                if sha not in {b.sha256 for b in row.blobs}:
                    row.blobs.append(BlobRef(sha256=sha))
                row.result = {**row.result, "files": {**row.result.get("files", {}), name: sha}}
            return sha

    def read_file(self, sha: str) -> bytes:
        """A stored file's bytes (``FileNotFoundError`` once its analysis was deleted)."""
        return self.store.read(sha)

    def gc(self) -> dict[str, int]:
        """Remove files no row references (left by a crash between writing files and committing)."""
        with self._lock:
            with self.db.session() as s:
                keep = set(s.scalars(select(BlobRef.sha256)).all())
            orphans, temps = self.store.gc(keep)
        if orphans or temps:
            log.info("garbage collection: removed %d orphan files and %d temporary files", orphans, temps)
        return {"orphans": orphans, "temporaries": temps}

    def check(self) -> dict[str, Any]:
        """Consistency report: rows whose files are missing or damaged, and files no row references."""
        with self.db.session() as s:
            refs = s.execute(select(BlobRef.analysis_id, BlobRef.sha256)).all()
            rows = s.scalar(select(func.count()).select_from(Analysis)) or 0
        present = self.store.hashes()
        missing = sorted({a for a, sha in refs if sha not in present})
        damaged = sorted(
            {a for a, sha in refs if sha in present and sha256_file(self.store.path(sha)) != sha}
        )
        orphans = sorted(present - {sha for _, sha in refs})
        return {"analyses": rows, "missing": missing, "damaged": damaged, "orphans": orphans}


class DataDirLock(FolderLock):
    """An exclusive lock on ``data_dir/server.lock`` so that two servers never share (and garbage-collect) one
    store."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(
            data_dir / "server.lock", f"the data directory {data_dir} is in use by another fakelens server"
        )
