"""A bounded work queue in front of the model: a fixed set of worker threads, each owning its own resource
(a copy of the model, so no model is ever used by two threads at once), and at most ``capacity`` jobs
waiting. A job that does not fit is refused at once (:class:`QueueFull`), never queued without bound."""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

__all__ = ["QueueFull", "WorkQueue"]

R = TypeVar("R")
T = TypeVar("T")
_STOP = object()


class QueueFull(Exception):
    """No room: every worker is busy and ``capacity`` jobs are already waiting."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"all workers are busy; retry in {retry_after} s")
        self.retry_after = retry_after


class WorkQueue(Generic[R]):
    """Run ``job(resource)`` on one of ``len(resources)`` threads; ``capacity`` jobs may wait."""

    def __init__(self, resources: Sequence[R], capacity: int, *, name: str = "fakelens-worker") -> None:
        if not resources:
            raise ValueError("a work queue needs at least one worker")
        # The admission count below is the bound; the queue itself only hands jobs to the threads.
        self._jobs: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()
        self._running = 0
        self._waiting = 0
        self._ema_s = 1.0
        self.capacity = max(0, capacity)
        self.workers = len(resources)
        self._threads = [
            threading.Thread(target=self._loop, args=(r,), name=f"{name}-{i}", daemon=True)
            for i, r in enumerate(resources)
        ]
        for t in self._threads:
            t.start()

    def submit(self, job: Callable[[R], T]) -> Future[T]:
        """Queue ``job``; raises :class:`QueueFull` (with a Retry-After estimate) when there is no room."""
        fut: Future[T] = Future()
        with self._lock:
            busy = self._running + self._waiting
            if busy >= self.workers + self.capacity:
                raise QueueFull(self.retry_after())
            self._waiting += 1
            self._jobs.put_nowait((job, fut))
        return fut

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the mean job time × the jobs ahead per worker (1..60)."""
        ahead = (self._running + self._waiting + 1) / self.workers
        return int(min(60, max(1, math.ceil(self._ema_s * ahead))))

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "workers": self.workers,
                "capacity": self.capacity,
                "running": self._running,
                "waiting": self._waiting,
                "mean_job_s": round(self._ema_s, 3),
                "alive": all(t.is_alive() for t in self._threads),
            }

    def close(self, timeout: float = 10.0) -> None:
        """Let running jobs finish, fail the waiting ones and stop the threads."""
        while True:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                item[1].set_exception(RuntimeError("the service is shutting down"))
        for _ in self._threads:
            self._jobs.put(_STOP)
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def _loop(self, resource: R) -> None:
        while True:
            item = self._jobs.get()
            if item is _STOP:
                return
            job, fut = item
            with self._lock:
                self._waiting -= 1
                self._running += 1
            start = time.perf_counter()
            result: Any = None
            error: BaseException | None = None
            live = fut.set_running_or_notify_cancel()
            if live:
                try:
                    result = job(resource)
                except BaseException as exc:
                    error = exc
            took = time.perf_counter() - start
            with self._lock:  # free the slot before the caller hears back, so it may submit again at once
                self._running -= 1
                if live and error is None:  # a refused upload fails at once: not a job's typical time
                    self._ema_s = 0.8 * self._ema_s + 0.2 * took
            if live:
                if error is not None:
                    fut.set_exception(error)
                else:
                    fut.set_result(result)
