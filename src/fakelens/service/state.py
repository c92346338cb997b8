"""What the app holds while it runs: settings, database, repository, model, work queue and rate limits."""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from fakelens.models.ensemble import Ensemble
from fakelens.service.analyzer import Analyzer
from fakelens.service.config import Settings
from fakelens.service.db import Database
from fakelens.service.ratelimit import RateLimiter
from fakelens.service.repository import DataDirLock, Repository
from fakelens.service.workqueue import WorkQueue

__all__ = ["Retries", "ServiceState"]


IDEMPOTENCY_TTL_S = 24 * 3600.0
IDEMPOTENCY_PER_TENANT = 1000


class Retries:
    """``(tenant id, Idempotency-Key)`` → (fingerprint of the request, the future of its analysis; once
    stored, of its id alone), in memory for :data:`IDEMPOTENCY_TTL_S` and at most
    :data:`IDEMPOTENCY_PER_TENANT` keys per tenant (its oldest dropped first: one tenant cannot push out
    another's); a restart forgets them. A failed analysis is forgotten, so its retry runs again."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[int, str], tuple[float, str, Future[Any]]] = OrderedDict()
        self._count: Counter[int] = Counter()

    def claim(
        self, key: tuple[int, str], fingerprint: str, start: Callable[[], Future[Any]]
    ) -> tuple[Future[Any], bool]:
        """The future for ``key``: the earlier one (``False``), or ``start()``'s, remembered (``True``).
        A key reused for another request (another fingerprint) is a ValueError."""
        now = self._clock()
        with self._lock:
            while self._items and next(iter(self._items.values()))[0] < now - IDEMPOTENCY_TTL_S:
                self._drop(next(iter(self._items)))
            old = self._items.get(key)
            if old is not None:
                if old[1] != fingerprint:
                    raise ValueError("this Idempotency-Key was used for another request")
                return old[2], False
            if self._count[key[0]] >= IDEMPOTENCY_PER_TENANT:
                self._drop(next(k for k in self._items if k[0] == key[0]))
            fut = start()
            self._items[key] = (now, fingerprint, fut)
            self._count[key[0]] += 1

        def settled(f: Future[Any]) -> None:
            if f.cancelled() or f.exception() is not None:
                self.forget(key, f)
                return
            kept: Future[Any] = Future()  # the id, not the whole stored row, for a day
            kept.set_result(getattr(f.result(), "id", f.result()))
            with self._lock:
                item = self._items.get(key)
                if item is not None and item[2] is f:
                    self._items[key] = (item[0], item[1], kept)

        fut.add_done_callback(settled)
        return fut, True

    def forget(self, key: tuple[int, str], fut: Future[Any] | None = None) -> None:
        with self._lock:
            item = self._items.get(key)
            if item is not None and (fut is None or item[2] is fut):
                self._drop(key)

    def _drop(self, key: tuple[int, str]) -> None:
        del self._items[key]
        self._count[key[0]] -= 1


@dataclass
class ServiceState:
    settings: Settings
    db: Database
    repo: Repository
    analyzer: Analyzer
    queue: WorkQueue[Ensemble]
    submit_limit: RateLimiter
    read_limit: RateLimiter
    lock: DataDirLock
    renders: dict[str, Future[str | None]] = field(default_factory=dict)
    """Report renders in flight, by analysis id: a second request for one report waits for the first."""
    renders_lock: threading.RLock = field(default_factory=threading.RLock)
    """Guards ``renders`` (re-entrant: a render already done runs its callback at once, under the lock)."""
    retries: Retries = field(default_factory=lambda: Retries())
    """Analyses by ``Idempotency-Key``: a client that retries after a timeout gets the first one."""

    def close(self) -> None:
        self.queue.close()
        self.db.close()
        self.lock.release()
