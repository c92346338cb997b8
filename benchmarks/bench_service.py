"""Reliability of the HTTP service on loopback: fuzzing, load at and beyond capacity, crash restarts.

Each part starts a real ``fakelens serve`` process (tiny models; the shipped detectors are larger, so absolute
latencies here measure the service around a small model) in a fresh data directory:

  fuzz      ≥ 200 malformed uploads (truncated, polyglot, huge dimensions, zero-size, wrong content type,
            random bytes, bad multipart, oversize); counts every answer that is not 4xx (goal: 0). Valid
            images carrying a trailing payload are sent too and must be accepted (201): they are images.
  load      closed-loop clients for a bounded time per level, at capacity (workers + queue) and beyond
            (2×, 4×); throughput of completed analyses, p50/p99 latency of 201s and of 503s, share of 503s.
  restart   N rounds of SIGKILL at a random moment under 3 concurrent uploaders, restart, consistency check
            (rows whose files are missing or damaged, orphan files after start-up GC, acknowledged analyses
            lost, SQLite integrity).

Usage: python benchmarks/bench_service.py [--parts fuzz,load,restart] [--seconds 20] [--rounds 10]
                                          [--out benchmarks/results/service_cpu.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import struct
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from _common import comma_list, non_negative_int, output_path, positive_float, positive_int, write_json
from PIL import Image

from fakelens.service.config import Settings
from fakelens.service.db import Database
from fakelens.service.keys import create_key
from fakelens.service.repository import Repository
from fakelens.service.store import BlobStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.service.server import ServerProcess  # one server helper for the tests and this benchmark

DEMO = Path(__file__).resolve().parents[1] / "src/fakelens/assets/demo/chelsea.jpg"


# ---------------------------------------------------------------------------------------------- server


def Server(data: Path, *args: str, model: str = "tiny-cnn") -> ServerProcess:
    """A ready ``fakelens serve`` subprocess (the test suite's helper)."""
    srv = ServerProcess(data, *args, model=model, log_level="error")
    srv.wait_ready(90)
    return srv


def new_key(data: Path) -> str:
    db = Database(Settings(data_dir=data).db_url)
    try:
        return create_key(db, "bench")[1]
    finally:
        db.close()


# ---------------------------------------------------------------------------------------------- fuzz


def _encode(img: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def _png_header(w: int, h: int, idat: bytes = b"") -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def fuzz_cases(rng: random.Random, max_upload: int) -> list[tuple[str, dict[str, Any]]]:
    """(category, request kwargs) pairs; all but the 'valid+payload' group are malformed."""
    base = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8))
    valid = {
        "png": _encode(base, "PNG"),
        "jpeg": _encode(base, "JPEG", quality=90),
        "gif": _encode(base.convert("P"), "GIF"),
        "webp": _encode(base, "WEBP"),
        "bmp": _encode(base, "BMP"),
        "tiff": _encode(base, "TIFF"),
    }
    cases: list[tuple[str, bytes, str, str]] = []  # category, bytes, filename, declared type
    for fmt, data in valid.items():  # truncated at random points (never the whole file)
        for _ in range(12):
            cut = rng.randrange(1, max(2, len(data) - 16))
            cases.append(("truncated", data[:cut], f"t.{fmt}", f"image/{fmt}"))
    payloads = [
        b"PK\x03\x04" + rng.randbytes(200),
        b"<html><script>alert(1)</script></html>",
        b"%PDF-1.7\n" + rng.randbytes(100),
        b"<?php system($_GET['c']); ?>",
        b"MZ" + rng.randbytes(300),
    ]
    for p in payloads:  # polyglots: an image signature in front of something else
        cases.append(("polyglot", b"\x89PNG\r\n\x1a\n" + p, "p.png", "image/png"))
        cases.append(("polyglot", b"\xff\xd8\xff\xe0" + p, "p.jpg", "image/jpeg"))
        cases.append(("polyglot", b"GIF89a" + p, "p.gif", "image/gif"))
        cases.append(("polyglot", p + valid["png"], "p.png", "image/png"))  # image at the end
        cases.append(("polyglot", b"RIFF\x00\x01\x00\x00WEBP" + p, "p.webp", "image/webp"))
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><script>x()</script></svg>'
    cases.append(("polyglot", svg, "p.png", "image/png"))
    for w, h in [
        (100_000, 100_000),
        (65_535, 65_535),
        (1, 2**31 - 1),
        (2**31 - 1, 1),
        (50_000, 50_000),
        (20_000, 3_000),
    ]:
        cases.append(("huge", _png_header(w, h, zlib.compress(b"\0" * 64)), "h.png", "image/png"))
        bmp = bytearray(valid["bmp"])
        struct.pack_into("<ii", bmp, 18, w, h)
        cases.append(("huge", bytes(bmp), "h.bmp", "image/bmp"))
        if min(w, h) > 10_000:  # GIF sizes are 16-bit; a tall 80 × 65 535 canvas is a legal, small image
            gif = bytearray(valid["gif"])
            struct.pack_into("<HH", gif, 6, min(w, 65535), min(h, 65535))
            cases.append(("huge", bytes(gif), "h.gif", "image/gif"))
        jpg = bytearray(valid["jpeg"])
        sof = jpg.find(b"\xff\xc0")
        if sof > 0:
            struct.pack_into(">HH", jpg, sof + 5, min(h, 65535), min(w, 65535))
            cases.append(("huge", bytes(jpg), "h.jpg", "image/jpeg"))
    # a real decompression bomb: 20 000 × 20 000 white PNG, a few hundred KB compressed
    row = b"\x00" + b"\xff" * (20_000 * 3)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(20_000)) + comp.flush()
    cases.append(("huge", _png_header(20_000, 20_000, idat), "bomb.png", "image/png"))
    for fmt in ("png", "gif", "bmp"):
        cases.append(("zero-size", b"", f"z.{fmt}", f"image/{fmt}"))
    cases.append(("zero-size", _png_header(0, 0), "z.png", "image/png"))
    cases.append(("zero-size", _png_header(0, 10), "z.png", "image/png"))
    for w, h in [(0, 64), (80, 0), (0, 0)]:
        z = bytearray(valid["bmp"])
        struct.pack_into("<ii", z, 18, w, h)
        cases.append(("zero-size", bytes(z), "z.bmp", "image/bmp"))
    for _ in range(60):
        n = rng.choice([1, 2, 7, 64, 1000, 50_000, 500_000])
        cases.append(("random", rng.randbytes(n), "r.jpg", "image/jpeg"))
    for p in [
        b"hello",
        json.dumps({"image": "x"}).encode(),
        svg,
        b"%PDF-1.4",
        b"\x7fELF" + rng.randbytes(64),
    ]:
        cases.append(("wrong-type", p, "w.png", "image/png"))
    out: list[tuple[str, dict[str, Any]]] = [
        (cat, {"files": {"image": (name, data, ctype)}}) for cat, data, name, ctype in cases
    ]
    # wrong content type of the request itself, bad multipart, oversize
    out += [
        ("wrong-type", {"content": valid["png"], "headers": {"Content-Type": "image/png"}}),
        ("wrong-type", {"json": {"image": "aGVsbG8="}}),
        ("wrong-type", {"data": {"image": "not a file"}}),
        ("wrong-type", {"files": {"picture": ("a.png", valid["png"], "image/png")}}),
        ("wrong-type", {"content": b"", "headers": {"Content-Type": "multipart/form-data"}}),
        (
            "bad-multipart",
            {"content": b"--x\r\nbroken", "headers": {"Content-Type": "multipart/form-data; boundary=x"}},
        ),
        (
            "bad-multipart",
            {"content": rng.randbytes(5000), "headers": {"Content-Type": "multipart/form-data; boundary=zz"}},
        ),
        (
            "bad-multipart",
            {"files": {"image": ("a.png", valid["png"], "image/png")}, "data": {"methods": "x" * 5000}},
        ),
        (
            "bad-multipart",
            {"files": {"image": ("a.png", valid["png"], "image/png")}, "data": {"models": "nosuch"}},
        ),
        ("oversize", {"files": {"image": ("big.png", b"\0" * (max_upload + 1), "image/png")}}),
        ("oversize", {"files": {"image": ("big.png", rng.randbytes(max_upload + 4096), "image/png")}}),
    ]
    for fmt, data in valid.items():  # valid images with a payload after their end: they are images (201)
        out.append(
            (
                "valid+payload",
                {"files": {"image": (f"v.{fmt}", data + b"PK\x03\x04" + rng.randbytes(64), "text/plain")}},
            )
        )
    return out


def run_fuzz(work: Path, seed: int) -> dict[str, Any]:
    data = work / "fuzz"
    key = new_key(data)
    max_upload = 2 * 1024 * 1024
    srv = Server(data, "--no-robustness", "--rate", "0", "--max-upload-mb", "2")
    rng = random.Random(seed)
    cases = fuzz_cases(rng, max_upload)
    by_cat: dict[str, Counter[str]] = {}
    failures: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    try:
        with httpx.Client(base_url=srv.url, headers={"X-API-Key": key}, timeout=60) as c:
            for cat, kw in cases:
                try:
                    status = str(c.post("/v1/analyses", **kw).status_code)
                except httpx.HTTPError as exc:
                    status = f"no answer ({type(exc).__name__})"
                by_cat.setdefault(cat, Counter())[status] += 1
                expected_ok = cat == "valid+payload"
                if (expected_ok and status != "201") or (not expected_ok and not status.startswith("4")):
                    failures.append({"category": cat, "status": status})
            alive = c.get("/readyz").status_code == 200
    finally:
        srv.stop()
    malformed = sum(sum(v.values()) for k, v in by_cat.items() if k != "valid+payload")
    return {
        "cases": len(cases),
        "malformed": malformed,
        "non_4xx_on_malformed": sum(1 for f in failures if f["category"] != "valid+payload"),
        "valid_payload_not_201": sum(1 for f in failures if f["category"] == "valid+payload"),
        "by_category": {k: dict(v) for k, v in by_cat.items()},
        "failures": failures,
        "server_ready_after": alive,
        "seconds": round(time.perf_counter() - t0, 1),
    }


# ---------------------------------------------------------------------------------------------- load


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    return round(float(np.percentile(np.asarray(xs), q)) * 1000, 1)


def run_load(
    work: Path, seconds: float, workers: int, queue: int, levels: list[int], model: str = "tiny-cnn,tiny-vit"
) -> dict[str, Any]:
    data = work / "load"
    key = new_key(data)
    image = DEMO.read_bytes()
    srv = Server(data, "--rate", "0", "--workers", str(workers), "--queue", str(queue), model=model)
    capacity = workers + queue
    out: dict[str, Any] = {
        "model": model,
        "capacity": capacity,
        "workers": workers,
        "queue": queue,
        "levels": [],
    }
    try:
        with httpx.Client(base_url=srv.url, headers={"X-API-Key": key}, timeout=120) as c:  # warm-up
            for _ in range(3):
                c.post("/v1/analyses", files={"image": ("w.jpg", image, "image/jpeg")})
        for clients in levels:
            results: list[tuple[int, float]] = []
            lock = threading.Lock()
            deadline = time.monotonic() + seconds

            def client(lock: threading.Lock = lock, results: list[tuple[int, float]] = results,
                       deadline: float = deadline) -> None:  # fmt: skip
                with httpx.Client(base_url=srv.url, headers={"X-API-Key": key}, timeout=120) as cl:
                    while time.monotonic() < deadline:
                        t = time.perf_counter()
                        try:
                            code = cl.post(
                                "/v1/analyses", files={"image": ("l.jpg", image, "image/jpeg")}
                            ).status_code
                        except httpx.HTTPError:
                            code = 0
                        dt = time.perf_counter() - t
                        with lock:
                            results.append((code, dt))
                        if code == 503:
                            time.sleep(0.1)  # a polite client backs off a little (bounded request rate)

            t0 = time.perf_counter()
            threads = [threading.Thread(target=client) for _ in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
            ok = [dt for code, dt in results if code == 201]
            busy = [dt for code, dt in results if code == 503]
            codes = Counter(code for code, _ in results)
            out["levels"].append(
                {
                    "clients": clients,
                    "x_capacity": round(clients / capacity, 2),
                    "requests": len(results),
                    "codes": {str(k): v for k, v in sorted(codes.items())},
                    "throughput_per_s": round(len(ok) / wall, 2),
                    "p50_ms_201": _pct(ok, 50),
                    "p99_ms_201": _pct(ok, 99),
                    "p50_ms_503": _pct(busy, 50),
                    "p99_ms_503": _pct(busy, 99),
                    "share_503": round(len(busy) / max(1, len(results)), 3),
                    "other_errors": len(results) - len(ok) - len(busy),
                    "wall_s": round(wall, 1),
                }
            )
            print(json.dumps(out["levels"][-1]), flush=True)
    finally:
        srv.stop()
    return out


# ---------------------------------------------------------------------------------------------- restart


def run_restart(work: Path, rounds: int, seed: int) -> dict[str, Any]:
    data = work / "restart"
    key = new_key(data)
    rng = random.Random(seed)
    acknowledged: set[str] = set()
    per_round = []
    image = DEMO.read_bytes()
    for r in range(rounds):
        srv = Server(data, "--no-robustness", "--rate", "0")
        stop = threading.Event()

        def load(url: str = srv.url, stop: threading.Event = stop) -> None:
            with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30) as c:
                while not stop.is_set():
                    try:
                        res = c.post("/v1/analyses", files={"image": ("x.jpg", image, "image/jpeg")})
                    except httpx.HTTPError:
                        continue
                    if res.status_code == 201:
                        acknowledged.add(res.json()["id"])

        threads = [threading.Thread(target=load, daemon=True) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.3, 3.0))
        srv.kill()
        stop.set()
        for t in threads:
            t.join(10)
        db = Database(Settings(data_dir=data).db_url)
        check = Repository(db, BlobStore(data / "blobs")).check()
        per_round.append({"round": r, "orphans_left_by_crash": len(check["orphans"]),
                          "missing": len(check["missing"]), "damaged": len(check["damaged"]),
                          "integrity": db.integrity_ok()})  # fmt: skip
        db.close()
    srv = Server(data, "--no-robustness")
    try:
        stored: set[str] = set()
        offset: int | None = 0
        with httpx.Client(base_url=srv.url, headers={"X-API-Key": key}) as c:
            while offset is not None:
                page = c.get(f"/v1/analyses?limit=100&offset={offset}").json()
                stored |= {a["id"] for a in page["items"]}
                offset = page["next_offset"]
    finally:
        srv.stop()
    db = Database(Settings(data_dir=data).db_url)
    final = Repository(db, BlobStore(data / "blobs")).check()
    db.close()
    return {
        "rounds": rounds,
        "acknowledged": len(acknowledged),
        "stored": len(stored),
        "acknowledged_lost": len(acknowledged - stored),
        "rows_with_missing_or_damaged_files": sum(x["missing"] + x["damaged"] for x in per_round),
        "integrity_failures": sum(not x["integrity"] for x in per_round),
        "crashes_that_left_orphans": sum(1 for x in per_round if x["orphans_left_by_crash"]),
        "orphans_after_restart_gc": len(final["orphans"]),
        "per_round": per_round,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", type=comma_list(["fuzz", "load", "restart"]), default="fuzz,load,restart")
    ap.add_argument("--seconds", type=positive_float, default=20.0, help="duration of each load level")
    ap.add_argument("--workers", type=positive_int, default=1)
    ap.add_argument("--queue", type=non_negative_int, default=4)
    ap.add_argument(
        "--levels",
        type=comma_list(positive_float),
        default="1,2,4",
        help="load levels as multiples of capacity",
    )
    ap.add_argument("--rounds", type=positive_int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="tiny-cnn,tiny-vit", help="model of the load part (e.g. default)")
    ap.add_argument("--out", type=output_path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    import fastapi
    import sqlalchemy
    import torch
    import uvicorn

    report: dict[str, Any] = {
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs".strip(),
        "python": platform.python_version(),
        "versions": {
            "torch": torch.__version__,
            "fastapi": fastapi.__version__,
            "uvicorn": uvicorn.__version__,
            "sqlalchemy": sqlalchemy.__version__,
        },
        "load_avg_start": os.getloadavg(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    parts = args.parts
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for p in ("fuzz", "load", "restart"):
            (work / p).mkdir()
        if "fuzz" in parts:
            report["fuzz"] = run_fuzz(work, args.seed)
            print(json.dumps({k: v for k, v in report["fuzz"].items() if k != "failures"}), flush=True)
        if "load" in parts:
            cap = args.workers + args.queue
            levels = [max(1, int(x * cap)) for x in args.levels]
            report["load"] = run_load(work, args.seconds, args.workers, args.queue, levels, args.model)
        if "restart" in parts:
            report["restart"] = run_restart(work, args.rounds, args.seed)
            print(json.dumps({k: v for k, v in report["restart"].items() if k != "per_round"}), flush=True)
    report["load_avg_end"] = os.getloadavg()
    if args.out:
        write_json(args.out, report, indent=2)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
