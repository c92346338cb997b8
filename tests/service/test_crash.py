"""Nothing lost, nothing half-written: a real server process killed with SIGKILL mid-analysis, restarted."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import httpx
import pytest

from fakelens.service.config import Settings
from fakelens.service.db import Database
from fakelens.service.keys import create_key
from fakelens.service.repository import Repository
from fakelens.service.store import BlobStore

from .conftest import png_bytes
from .server import ServerProcess


def _post(url: str, key: str, seed: int, timeout: float = 60.0) -> httpx.Response:
    files = {"image": (f"{seed}.png", png_bytes(seed=seed), "image/png")}
    return httpx.post(f"{url}/v1/analyses", files=files, headers={"X-API-Key": key}, timeout=timeout)


def _consistency(data_dir: Path) -> dict[str, object]:
    db = Database(Settings(data_dir=data_dir).db_url)
    try:
        report = Repository(db, BlobStore(data_dir / "blobs")).check()
        report["integrity"] = db.integrity_ok()
        return report
    finally:
        db.close()


def _blob_count(data_dir: Path) -> int:
    """Finished blobs only: a temporary file (``.name.xxxx.tmp``, mid-write) is not yet in the store."""
    return sum(not p.name.startswith(".") for p in (data_dir / "blobs").glob("??/*"))


def test_kill_9_mid_analysis_leaves_no_half_record(tmp_path: Path) -> None:
    data = tmp_path / "data"
    key = create_key(Database(Settings(data_dir=data).db_url), "acme")[1]

    # 1. A server that pauses between writing the files and committing the row (fault injection).
    srv = ServerProcess(data, "--no-robustness", env={"FAKELENS_COMMIT_DELAY_S": "2"})
    try:
        srv.wait_ready()
        first = _post(srv.url, key, seed=1)
        assert first.status_code == 201, first.text
        stored = _blob_count(data)
        box: list[object] = []
        t = threading.Thread(target=lambda: box.append(_safe_post(srv.url, key, seed=2)), daemon=True)
        t.start()
        deadline = time.monotonic() + 30
        while _blob_count(data) == stored and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _blob_count(data) > stored, "the second analysis never wrote its files"
        srv.kill()  # files written, row not committed
        t.join(10)
    finally:
        srv.kill()
    before = _consistency(data)
    assert before["analyses"] == 1 and before["orphans"] and not before["missing"] and before["integrity"]

    # 2. Restart: orphan files are collected, the committed analysis is intact, the killed one absent.
    srv = ServerProcess(data, "--no-robustness")
    try:
        srv.wait_ready()
        listed = httpx.get(f"{srv.url}/v1/analyses", headers={"X-API-Key": key}).json()
        assert [a["id"] for a in listed["items"]] == [first.json()["id"]]
        heat = first.json()["models"][0]["heatmaps"]["gradcam"]
        assert httpx.get(f"{srv.url}{heat}", headers={"X-API-Key": key}).status_code == 200
        again = _post(srv.url, key, seed=2)
        assert again.status_code == 201
    finally:
        srv.stop()
    after = _consistency(data)
    assert after == {"analyses": 2, "missing": [], "damaged": [], "orphans": [], "integrity": True}


def _safe_post(url: str, key: str, seed: int) -> object:
    try:
        return _post(url, key, seed)
    except httpx.HTTPError as exc:  # the server died under it
        return exc


@pytest.mark.slow
def test_kill_9_at_random_moments(tmp_path: Path) -> None:
    """Ten crashes at random moments under a stream of uploads; after each restart the store is consistent
    and every analysis the client saw acknowledged (201) is still there."""
    data = tmp_path / "data"
    key = create_key(Database(Settings(data_dir=data).db_url), "acme")[1]
    rng = random.Random(0)
    acknowledged: set[str] = set()
    for round_ in range(10):
        srv = ServerProcess(data, "--no-robustness")
        srv.wait_ready()
        stop = threading.Event()

        def load(url: str = srv.url, r: int = round_, stop: threading.Event = stop) -> None:
            i = 0
            while not stop.is_set():
                res = _safe_post(url, key, seed=1000 * r + i)
                if isinstance(res, httpx.Response) and res.status_code == 201:
                    acknowledged.add(res.json()["id"])
                i += 1

        threads = [threading.Thread(target=load, daemon=True) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.5, 3.0))
        srv.kill()
        stop.set()
        for t in threads:
            t.join(10)
        report = _consistency(data)
        assert not report["missing"] and not report["damaged"] and report["integrity"]
    srv = ServerProcess(data, "--no-robustness")
    try:
        srv.wait_ready()
        ids: set[str] = set()
        offset = 0
        while True:
            page = httpx.get(
                f"{srv.url}/v1/analyses?limit=100&offset={offset}", headers={"X-API-Key": key}
            ).json()
            ids |= {a["id"] for a in page["items"]}
            if page["next_offset"] is None:
                break
            offset = page["next_offset"]
        assert acknowledged <= ids
    finally:
        srv.stop()
    assert _consistency(data)["orphans"] == []
