"""Settings, keys, rate limits, the work queue and the blob store on their own."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from fakelens.cli.main import app as cli
from fakelens.errors import ConfigError
from fakelens.service.config import Settings
from fakelens.service.db import ApiKey, Database
from fakelens.service.keys import create_key, hash_key, list_keys, revoke_key, verify_key
from fakelens.service.ratelimit import RateLimiter
from fakelens.service.repository import DataDirLock
from fakelens.service.store import BlobStore, sha256_hex
from fakelens.service.workqueue import QueueFull, WorkQueue


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FAKELENS_WORKERS", "3")
    monkeypatch.setenv("FAKELENS_ROBUSTNESS", "off")
    monkeypatch.setenv("FAKELENS_METHODS", "gradcam, layercam")
    monkeypatch.setenv("FAKELENS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FAKELENS_MAX_TILES", "12")
    s = Settings()
    assert (s.workers, s.robustness, s.methods, s.data_dir) == (3, False, ("gradcam", "layercam"), tmp_path)
    assert s.max_tiles == 12
    assert s.db_url == f"sqlite:///{(tmp_path / 'fakelens.db').resolve()}"
    assert s.with_(workers=2, queue=None).workers == 2
    monkeypatch.setenv("FAKELENS_QUEUE", "many")
    with pytest.raises(ConfigError, match="FAKELENS_QUEUE"):
        Settings()
    monkeypatch.delenv("FAKELENS_QUEUE")
    with pytest.raises(ConfigError, match="workers"):
        Settings(workers=0)
    with pytest.raises(ConfigError, match="max_tiles must be at least 1"):
        Settings(max_tiles=0)
    with pytest.raises(ConfigError, match="nosuch not among the allowed"):  # else every request would fail
        Settings(methods=("gradcam", "nosuch"))


def test_keys_hashed_at_rest(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'k.db'}")
    key_id, key = create_key(db, "acme")
    assert key.startswith(f"fl_{key_id}_") and len(key) > 50
    with db.session() as s:
        row = s.scalar(select(ApiKey))
        assert row is not None and row.key_hash == hash_key(key) and key not in (row.key_hash, row.key_id)
    assert (tmp_path / "k.db").read_bytes().find(key.encode()) == -1
    who = verify_key(db, key)
    assert who is not None and who.tenant == "acme"
    assert verify_key(db, key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert verify_key(db, "nonsense") is None
    create_key(db, "acme")
    assert len(list_keys(db, "acme")) == 2
    assert revoke_key(db, key_id) and verify_key(db, key) is None
    assert not revoke_key(db, "nosuch")
    with pytest.raises(ConfigError, match="tenant name"):
        create_key(db, "bad name!")
    # a tenant that differs only in case is a typo's second, empty history: refused, the existing one named
    with pytest.raises(ConfigError, match="tenant 'acme' exists and 'ACME' differs from it only in case"):
        create_key(db, "ACME")
    assert list_keys(db, "ACME") == []


def test_keys_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["keys", "create", "--tenant", "acme", "--data-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    key = res.stdout.strip().splitlines()[-1]
    assert verify_key(Database(Settings(data_dir=tmp_path).db_url), key) is not None
    res = runner.invoke(cli, ["keys", "list", "--data-dir", str(tmp_path)])
    assert res.exit_code == 0 and "acme" in res.output and key not in res.output
    res = runner.invoke(cli, ["keys", "list", "--json", "--data-dir", str(tmp_path)])
    [listed] = json.loads(res.stdout)
    assert listed["tenant"] == "acme" and listed["revoked"] is False and key not in res.stdout
    res = runner.invoke(cli, ["keys", "revoke", "nosuch", "--data-dir", str(tmp_path)])
    assert res.exit_code == 2
    res = runner.invoke(cli, ["keys", "revoke", listed["key_id"], "--json", "--data-dir", str(tmp_path)])
    assert res.exit_code == 0 and json.loads(res.stdout) == {"key_id": listed["key_id"], "revoked": True}
    res = runner.invoke(cli, ["keys", "list", "--tenant", "a[/]b", "--data-dir", str(tmp_path)])
    assert res.exit_code == 0 and "no API keys for tenant 'a[/]b'" in res.output  # text, not markup
    typo = tmp_path / "typo"  # listing or revoking creates no database in a mistyped folder
    for args in (["list"], ["revoke", "k1"]):
        res = runner.invoke(cli, ["keys", *args, "--data-dir", str(typo)])
        assert res.exit_code == 2 and "no key database in" in res.output and not typo.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "70000"], "65535"),
        (["--max-upload-mb", "-5"], "0.001"),
        (["--methods", "nosuch"], "nosuch not among the allowed"),
        (["--data-dir", "{file}/data"], "cannot write to --data-dir"),
    ],
)
def test_serve_refuses_bad_settings_before_starting(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "file").write_text("")
    args = [a.replace("{file}", str(tmp_path / "file")) for a in args]
    res = CliRunner().invoke(cli, ["serve", "--model", "tiny-cnn", "--data-dir", str(tmp_path / "d"), *args])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output


def test_serve_refuses_a_data_dir_in_use_in_one_line(tmp_path: Path) -> None:
    lock = DataDirLock(tmp_path)  # another server holds it
    lock.acquire()
    try:
        res = CliRunner().invoke(cli, ["serve", "--model", "tiny-cnn", "--data-dir", str(tmp_path)])
    finally:
        lock.release()
    assert res.exit_code == 2 and "in use by another fakelens server" in res.output
    assert "Traceback" not in res.output


def test_serve_says_in_one_line_when_it_cannot_create_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory the file system refuses to create (EPERM under /sys, which the writability check cannot
    foresee) is one line before the server starts; it had been uvicorn's start-up traceback."""
    import errno

    import fakelens.service.db as db

    def refuse(path: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted", str(path))

    monkeypatch.setattr(db, "private_dir", refuse)
    res = CliRunner().invoke(cli, ["serve", "--model", "tiny-cnn", "--data-dir", str(tmp_path / "new")])
    assert res.exit_code == 2 and "Operation not permitted" in res.output and "new" in res.output
    assert "Traceback" not in res.output


def test_rate_limiter_token_bucket() -> None:
    now = [0.0]
    rl = RateLimiter(60, 2, clock=lambda: now[0])
    assert rl.acquire("a") == 0 and rl.acquire("a") == 0
    assert rl.acquire("a") == pytest.approx(1.0)
    assert rl.acquire("b") == 0  # per key
    now[0] += 1.0
    assert rl.acquire("a") == 0
    assert RateLimiter(0, 1).acquire("a") == 0  # off
    assert RateLimiter.retry_after(0.2) == 1


def test_work_queue_bounded_one_resource_per_thread() -> None:
    gate = threading.Event()
    seen: list[tuple[str, str]] = []

    def job(resource: str) -> str:
        gate.wait(5)
        seen.append((resource, threading.current_thread().name))
        return resource

    q = WorkQueue(["r0", "r1"], capacity=1)
    futs = [q.submit(job) for _ in range(3)]  # 2 running + 1 waiting
    with pytest.raises(QueueFull) as exc:
        q.submit(job)
    assert exc.value.retry_after >= 1
    gate.set()
    assert {f.result(5) for f in futs} <= {"r0", "r1"}
    for resource, thread in seen:  # each resource only ever used by its own thread
        assert thread.endswith(resource[-1])
    assert q.submit(lambda r: r).result(5) in ("r0", "r1")
    q.close()


def test_work_queue_propagates_errors() -> None:
    q = WorkQueue([None], capacity=0)

    def boom(_: None) -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        q.submit(boom).result(5)
    q.close()


def test_blob_store_atomic_and_gc(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    a, b = store.put(b"alpha"), store.put(b"beta")
    assert a == sha256_hex(b"alpha") and store.read(a) == b"alpha" and store.put(b"alpha") == a
    (tmp_path / a[:2] / f".{a}.123.tmp").write_bytes(b"half")  # what a crash mid-write leaves
    assert store.gc(keep=[a]) == (1, 1)
    assert store.hashes() == {a} and not store.exists(b)
    with pytest.raises(ValueError):
        store.path("../../etc/passwd")


def test_retries_remember_a_key_for_a_day_and_forget_a_failed_analysis() -> None:
    from concurrent.futures import Future

    from fakelens.service.state import IDEMPOTENCY_TTL_S, Retries

    now = [0.0]
    retries = Retries(clock=lambda: now[0])
    started: list[Future[int]] = []

    def start() -> Future[int]:
        started.append(Future())
        return started[-1]

    fut, fresh = retries.claim((1, "k"), "a", start)
    assert fresh and retries.claim((1, "k"), "a", start) == (fut, False)
    with pytest.raises(ValueError, match="another request"):
        retries.claim((1, "k"), "b", start)
    fut.set_exception(RuntimeError("boom"))  # a failed analysis: its retry runs again
    assert retries.claim((1, "k"), "a", start)[1] is True
    started[-1].set_result(7)
    now[0] = IDEMPOTENCY_TTL_S + 1  # a day later the key is free again
    assert retries.claim((1, "k"), "a", start)[1] is True and len(started) == 3


def test_retries_keep_ids_only_and_one_tenant_cannot_push_out_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from concurrent.futures import Future
    from types import SimpleNamespace

    import fakelens.service.state as st

    monkeypatch.setattr(st, "IDEMPOTENCY_PER_TENANT", 2)
    retries = st.Retries()

    def done(row: object) -> Future[object]:
        f: Future[object] = Future()
        f.set_result(row)
        return f

    retries.claim((1, "a"), "x", lambda: done(SimpleNamespace(id="id-a")))
    assert retries.claim((1, "a"), "x", lambda: done(None))[0].result() == "id-a"  # the id, not the row
    for k in ("b", "c", "d"):  # tenant 2 fills its own quota, and more
        retries.claim((2, k), "x", lambda k=k: done(SimpleNamespace(id=k)))  # type: ignore[misc]
    assert retries.claim((1, "a"), "x", lambda: done(None))[1] is False  # tenant 1's key survives
    assert retries.claim((2, "b"), "x", lambda: done(SimpleNamespace(id="b2")))[1] is True  # its oldest went


def test_the_early_key_check_reads_headers_as_the_routes_do() -> None:
    from fakelens.service.deps import key_from_headers

    assert key_from_headers([(b"x-api-key", b""), (b"authorization", b"Bearer tok")]) == "tok"
    assert key_from_headers([(b"x-api-key", b"first"), (b"x-api-key", b"second")]) == "first"
    assert key_from_headers([(b"authorization", b"Basic abc")]) is None
    assert key_from_headers([]) is None
