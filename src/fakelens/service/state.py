"""What the app holds while it runs: settings, database, repository, model, work queue and rate limits."""

from __future__ import annotations

from dataclasses import dataclass

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

    def close(self) -> None:
        self.queue.close()
        self.db.close()
        self.lock.release()
