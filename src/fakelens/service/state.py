"""What the app holds while it runs: settings, database, repository, model, work queue and rate limits."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

from fakelens.models.ensemble import Ensemble
from fakelens.service.analyzer import Analyzer
from fakelens.service.config import Settings
from fakelens.service.db import Database
from fakelens.service.ratelimit import RateLimiter
from fakelens.service.repository import DataDirLock, Repository
from fakelens.service.workqueue import WorkQueue

__all__ = ["ServiceState"]


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

    def close(self) -> None:
        self.queue.close()
        self.db.close()
        self.lock.release()
