"""The /v1 API through TestClient with tiny models: results, files, paging, deletion, errors, limits."""

from __future__ import annotations

import io
import math
import os
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fakelens.models import Ensemble, create_model
from fakelens.models.calibration import Calibration
from fakelens.report.render import CALIBRATED_NOTE, UNCALIBRATED_NOTE
from fakelens.service.analyzer import MAP_LEVELS, load_map, map_npy, map_png
from fakelens.service.api import analysis_out
from fakelens.service.report import render_analysis_report
from fakelens.service.store import sha256_hex

from .conftest import Service, ServiceFactory, png_bytes


def test_create_and_read(service: Service) -> None:
    data = png_bytes(96, 72)
    r = service.upload(data, methods="gradcam,rollout")
    assert r.status_code == 201, r.text
    a = r.json()
    assert r.headers["location"] == f"/v1/analyses/{a['id']}"
    assert a["status"] == "done" and a["verdict"] in ("fake", "real") and 0 <= a["score"] <= 1
    assert a["image"] == {
        **a["image"],
        "width": 96,
        "height": 72,
        "sha256": sha256_hex(data),
        "format": "png",
    }
    assert a["methods"] == ["gradcam", "rollout"]
    cnn, vit = a["models"]
    assert (cnn["name"], vit["name"]) == ("tiny-cnn", "tiny-vit")
    assert set(cnn["heatmaps"]) == {"gradcam"} and "rollout" in cnn["errors"]  # no attention in a CNN
    assert set(vit["heatmaps"]) == {"gradcam", "rollout"}
    assert a["score"] == pytest.approx((cnn["score"] + vit["score"]) / 2, abs=1e-6)
    assert service.client.get(f"/v1/analyses/{a['id']}", headers=service.h()).json() == a

    heat = service.client.get(vit["heatmaps"]["rollout"], headers=service.h())
    assert heat.status_code == 200 and heat.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(heat.content)).size == (96, 72)
    over = service.client.get(vit["overlays"]["rollout"], headers=service.h())
    assert Image.open(io.BytesIO(over.content)).mode == "RGB"
    raw = service.client.get(cnn["maps"]["gradcam"], headers=service.h())
    m = np.load(io.BytesIO(raw.content), allow_pickle=False)
    assert m.shape == (72, 96) and m.dtype == np.float32 and 0 <= m.min() <= m.max() <= 1
    orig = service.client.get(a["image"]["original_url"], headers=service.h())
    assert orig.content == data
    prev = service.client.get(a["image"]["url"], headers=service.h())
    assert Image.open(io.BytesIO(prev.content)).size == (96, 72)
    missing = service.client.get(
        f"/v1/analyses/{a['id']}/models/tiny-cnn/rollout/heatmap.png", headers=service.h()
    )
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_robustness_badges(make_service: ServiceFactory) -> None:
    svc = make_service(robustness=True)
    a = svc.upload(methods="gradcam", models="tiny-cnn").json()
    (m,) = a["models"]
    badge = m["robustness"]["gradcam"]
    assert badge["grade"] in ("ok", "check") and "equivariance" in badge and "flags" in badge


def test_list_paged_and_delete(service: Service) -> None:
    ids = [service.upload(png_bytes(seed=i), models="tiny-cnn").json()["id"] for i in range(3)]
    p1 = service.client.get("/v1/analyses?limit=2", headers=service.h()).json()
    assert p1["total"] == 3 and len(p1["items"]) == 2 and p1["next_offset"] == 2
    p2 = service.client.get("/v1/analyses?limit=2&offset=2", headers=service.h()).json()
    assert p2["next_offset"] is None
    assert {x["id"] for x in p1["items"] + p2["items"]} == set(ids)
    assert service.client.get("/v1/analyses?limit=0", headers=service.h()).status_code == 422
    # the cursor: a new analysis between two pages neither repeats nor skips an item
    newer = service.upload(png_bytes(seed=9), models="tiny-cnn").json()["id"]
    cursor = p1["next_before"]
    assert cursor.startswith(p1["items"][-1]["id"] + ".")
    p2c = service.client.get(f"/v1/analyses?limit=2&before={cursor}", headers=service.h()).json()
    assert [x["id"] for x in p2c["items"]] == [x["id"] for x in p2["items"]] and p2c["next_before"] is None
    assert newer not in {x["id"] for x in p2c["items"]} and p2c["total"] == 1
    by_id = service.client.get(f"/v1/analyses?limit=2&before={p1['items'][-1]['id']}", headers=service.h())
    assert by_id.json()["items"] == p2c["items"]  # an analysis id still works as a cursor
    for bad in ("nope", "nope.x", f"{ids[0]}.{10**30}", "x.²"):  # '²' is a digit to str.isdigit: was a 500
        r = service.client.get(f"/v1/analyses?before={bad}", headers=service.h())
        assert r.status_code == 404
    r = service.client.get(f"/v1/analyses?before={p1['items'][-1]['id']}", headers=service.h("globex"))
    assert r.status_code == 404  # another tenant's id is no cursor
    assert (
        service.client.get(f"/v1/analyses?before={cursor}", headers=service.h("globex")).json()["items"] == []
    )
    # the cursor outlives its analysis: a colleague deletes it between two pages
    gone = p1["items"][-1]["id"]
    assert service.client.delete(f"/v1/analyses/{gone}", headers=service.h()).status_code == 204
    kept = service.client.get(f"/v1/analyses?limit=2&before={cursor}", headers=service.h())
    assert kept.status_code == 200 and kept.json()["items"] == p2c["items"]
    ids.remove(gone)
    assert service.client.delete(f"/v1/analyses/{newer}", headers=service.h()).status_code == 204

    blobs = service.data_dir / "blobs"
    before = {p.name for p in blobs.glob("??/*")}
    assert service.client.delete(f"/v1/analyses/{ids[0]}", headers=service.h()).status_code == 204
    assert service.client.get(f"/v1/analyses/{ids[0]}", headers=service.h()).status_code == 404
    assert service.client.delete(f"/v1/analyses/{ids[0]}", headers=service.h()).status_code == 404
    after = {p.name for p in blobs.glob("??/*")}
    assert after < before and sha256_hex(png_bytes(seed=0)) not in after  # its files went with it


def test_shared_files_survive_delete(service: Service) -> None:
    data = png_bytes(seed=5)
    a = service.upload(data, models="tiny-cnn").json()
    b = service.upload(data, models="tiny-cnn").json()
    assert service.client.delete(f"/v1/analyses/{a['id']}", headers=service.h()).status_code == 204
    assert service.client.get(b["image"]["original_url"], headers=service.h()).content == data


def test_options_are_checked(service: Service) -> None:
    r = service.upload(methods="gradcam,nosuch")
    assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_method" and "nosuch" in r.text
    r = service.upload(methods="scorecam")  # registered, but too costly for the service by default
    assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_method"
    r = service.upload(methods="gradcam,hirescam,layercam,xgradcam,eigencam")
    assert r.status_code == 400 and r.json()["error"]["code"] == "too_many_methods"
    r = service.upload(models="nosuch")
    assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_model"
    r = service.upload(models="tiny-vit")
    assert [m["key"] for m in r.json()["models"]] == ["tiny-vit"]
    # attention maps need a transformer: asked of the CNN alone, nothing could be shown, nothing is stored
    total = service.client.get("/v1/analyses", headers=service.h()).json()["total"]
    r = service.upload(methods="attention", models="tiny-cnn")
    assert r.status_code == 400 and r.json()["error"]["code"] == "no_heatmap" and "tiny-cnn" in r.text
    assert service.client.get("/v1/analyses", headers=service.h()).json()["total"] == total
    r = service.upload(methods="attention")  # the ViT can: stored, the CNN's reason kept
    assert r.status_code == 201 and r.json()["models"][0]["errors"].keys() == {"attention"}


def test_auth_required(service: Service) -> None:
    c = service.client
    assert c.get("/v1/analyses").status_code == 401
    r = c.get("/v1/analyses", headers={"X-API-Key": service.keys["acme"][:-1] + "x"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert (
        c.get("/v1/analyses", headers={"Authorization": f"Bearer {service.keys['acme']}"}).status_code == 200
    )
    files = {"image": ("x.png", png_bytes(), "image/png")}
    assert c.post("/v1/analyses", files=files).status_code == 401


def test_upload_limits(make_service: ServiceFactory) -> None:
    svc = make_service(max_upload_bytes=50_000, max_pixels=100_000)
    r = svc.upload(b"\0" * 50_001)
    assert r.status_code == 413 and r.json()["error"]["code"] == "upload_too_large"
    buf = io.BytesIO()
    Image.new("RGB", (400, 300), "gray").save(buf, format="PNG")
    big = buf.getvalue()  # 120 000 pixels: a small file, too many pixels
    r = svc.upload(big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "image_too_large", r.text
    assert (
        "refused before decoding)" in r.text and "max_pixels" not in r.text
    )  # no advice meant for the operator
    r = svc.upload(b"")
    assert r.status_code == 422 and "empty" in r.json()["error"]["message"]
    r = svc.upload(b"%PDF-1.4 not an image", name="photo.png")  # the bytes decide, not the name or header
    assert r.status_code == 415 and "PDF" in r.json()["error"]["message"]
    r = svc.upload(png_bytes()[:200])
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_image"
    for kind, body in (("application/json", b'{"image": "x"}'), ("image/png", png_bytes())):
        r = svc.client.post("/v1/analyses", content=body, headers={**svc.h(), "Content-Type": kind})
        assert r.status_code == 415 and "multipart/form-data" in r.json()["error"]["message"]


def test_body_limit_streamed_without_content_length(make_service: ServiceFactory) -> None:
    svc = make_service(max_upload_bytes=10_000)

    def chunks():  # a generator body is sent chunked, without Content-Length
        boundary = b"--xyz\r\n"
        yield boundary + b'Content-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
        for _ in range(100):
            yield b"\0" * 1024
        yield b"\r\n--xyz--\r\n"

    r = svc.client.post(
        "/v1/analyses",
        content=chunks(),
        headers={**svc.h(), "Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "upload_too_large"


def test_exif_orientation_and_first_frame(service: Service) -> None:
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 100, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    a = service.upload(buf.getvalue(), name="rotated.jpg", models="tiny-cnn").json()
    assert (a["image"]["width"], a["image"]["height"]) == (40, 100)
    m = np.load(
        io.BytesIO(service.client.get(a["models"][0]["maps"]["gradcam"], headers=service.h()).content)
    )
    assert m.shape == (100, 40)

    frames = [Image.new("RGB", (30, 20), c) for c in ("red", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    a = service.upload(buf.getvalue(), name="anim.gif", models="tiny-cnn").json()
    assert a["image"]["format"] == "gif" and (a["image"]["width"], a["image"]["height"]) == (30, 20)
    prev = Image.open(io.BytesIO(service.client.get(a["image"]["url"], headers=service.h()).content))
    r, _g, b = prev.convert("RGB").getpixel((15, 10))
    assert r > 200 and b < 60  # the first (red) frame


def test_rate_limit_429(make_service: ServiceFactory) -> None:
    svc = make_service(rate_per_minute=1.0, rate_burst=1)
    assert svc.upload(models="tiny-cnn").status_code == 201
    r = svc.upload(models="tiny-cnn")
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert svc.upload(tenant="globex", models="tiny-cnn").status_code == 201  # per key


def test_rate_limit_headers_let_a_client_pace_itself(make_service: ServiceFactory) -> None:
    svc = make_service(rate_per_minute=6.0, rate_burst=2, read_rate_per_minute=60.0, read_rate_burst=5)
    r = svc.upload(models="tiny-cnn")
    assert r.status_code == 201
    assert (r.headers["ratelimit-limit"], r.headers["ratelimit-remaining"]) == ("2", "1")
    assert 1 <= int(r.headers["ratelimit-reset"]) <= 10  # one token back in 10 s at 6 a minute
    r = svc.client.get("/v1/analyses", headers=svc.h())
    assert (r.headers["ratelimit-limit"], r.headers["ratelimit-remaining"]) == ("5", "4")  # the read bucket
    svc.upload(models="tiny-cnn")
    r = svc.upload(models="tiny-cnn")
    assert r.status_code == 429 and r.headers["ratelimit-remaining"] == "0" and "retry-after" in r.headers


def test_a_retry_with_the_same_idempotency_key_gets_the_first_analysis(make_service: ServiceFactory) -> None:
    svc = make_service(rate_per_minute=1.0, rate_burst=5)
    files = {"image": ("x.png", png_bytes(), "image/png")}
    h = {**svc.h(), "Idempotency-Key": "job-42"}
    first = svc.client.post("/v1/analyses", files=files, data={"models": "tiny-cnn"}, headers=h)
    assert first.status_code == 201
    again = svc.client.post("/v1/analyses", files=files, data={"models": "tiny-cnn"}, headers=h)
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"] and again.headers["location"] == first.headers["location"]
    assert svc.client.get("/v1/analyses", headers=svc.h()).json()["total"] == 1  # one analysis, not two
    assert again.headers["ratelimit-remaining"] == "3"  # a replay reads its upload: it costs a token
    other = svc.client.post("/v1/analyses", files=files, data={"models": "tiny-vit"}, headers=h)
    assert other.status_code == 422 and "used for another request" in other.json()["error"]["message"]
    other_tenant = {**svc.h("globex"), "Idempotency-Key": "job-42"}  # keys are per tenant
    assert svc.client.post("/v1/analyses", files=files, headers=other_tenant).status_code == 201
    bad = {**svc.h(), "Idempotency-Key": "x" * 201}
    assert svc.client.post("/v1/analyses", files=files, headers=bad).status_code == 400


def test_only_requests_refused_before_the_upload_is_read_cost_no_token(make_service: ServiceFactory) -> None:
    """A body that is no form (415) or declares too many bytes (413) is refused unread and costs nothing; a
    form the server had to read and parse costs its token even when it is refused, so a key cannot make
    the server parse unlimited uploads."""
    svc = make_service(rate_per_minute=1.0, rate_burst=1, max_upload_bytes=100_000)
    for _ in range(3):
        r = svc.client.post("/v1/analyses", content=b"{}", headers={**svc.h(), "Content-Type": "text/plain"})
        assert r.status_code == 415
        r = svc.client.post(
            "/v1/analyses",
            content=b"x" * 300_000,
            headers={**svc.h(), "Content-Type": "multipart/form-data; boundary=x"},
        )
        assert r.status_code == 413
    r = svc.upload(methods=",")
    assert r.status_code == 400 and "methods names nothing" in r.json()["error"]["message"]
    assert svc.upload(models="tiny-cnn").status_code == 429  # the parsed bad form took the one token
    svc = make_service(rate_per_minute=1.0, rate_burst=1)
    r = svc.client.post("/v1/analyses", data={"image": "hello"}, files={"x": ("x", b"")}, headers=svc.h())
    assert r.status_code == 422 and "expected a file" in r.json()["error"]["message"]
    assert "UploadFile" not in r.text


def test_a_caller_without_a_valid_key_is_refused_before_the_upload_is_read(service: Service) -> None:
    """FastAPI reads a form before its dependencies run: the key is checked first, so an anonymous client
    cannot make the server read the upload limit's worth of bytes."""
    read: list[int] = []

    def body():  # type: ignore[no-untyped-def]
        for _ in range(50):
            read.append(1)
            yield b"\0" * 10_000

    for headers in ({}, {"X-API-Key": "nope"}):
        r = service.client.post(
            "/v1/analyses",
            content=body(),
            headers={**headers, "Content-Type": "multipart/form-data; boundary=x"},
        )
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert len(read) <= 2  # at most what the client had sent before the answer


def test_split_verdicts_and_no_slash_redirects(service: Service) -> None:
    a = service.upload().json()
    verdicts = {m["verdict"] for m in a["models"]}
    assert a["split"] is (len(verdicts) > 1)
    assert a["created_at"].endswith("Z") and len(a["created_at"]) == len("2026-11-27T16:26:57.683Z")
    r = service.client.post("/v1/analyses/", headers=service.h(), follow_redirects=False)
    assert r.status_code in (404, 405) and "location" not in r.headers


def test_over_capacity_503(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    state = service.client.app.state.service  # type: ignore[attr-defined]
    release = threading.Event()
    started = threading.Event()
    run = state.analyzer.run

    def slow(replica, req):  # type: ignore[no-untyped-def]
        started.set()
        release.wait(10)
        return run(replica, req)

    monkeypatch.setattr(state.analyzer, "run", slow)
    capacity = state.settings.workers + state.settings.queue
    results: list[int] = []

    def post() -> None:
        results.append(service.upload(models="tiny-cnn").status_code)

    threads = [threading.Thread(target=post) for _ in range(capacity)]
    for t in threads:
        t.start()
    assert started.wait(10)
    for _ in range(100):
        if state.queue.stats()["waiting"] + state.queue.stats()["running"] >= capacity:
            break
        threading.Event().wait(0.05)
    r = service.upload(models="tiny-cnn")
    assert r.status_code == 503 and r.json()["error"]["code"] == "busy"
    assert int(r.headers["retry-after"]) >= 1
    release.set()
    for t in threads:
        t.join(30)
    assert results == [201] * capacity


def test_busy_answers_do_not_cost_the_client(
    make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report the full queue refused is not charged (as an analysis is not); a map conversion that finds
    every conversion slot taken answers 503 + Retry-After instead of holding one more map in memory."""
    from fakelens.service import api
    from fakelens.service.workqueue import QueueFull

    svc = make_service(rate_per_minute=1.0, rate_burst=2)
    a = svc.upload(models="tiny-cnn", methods="gradcam").json()
    state = svc.client.app.state.service  # type: ignore[attr-defined]

    def full(job):  # type: ignore[no-untyped-def]
        raise QueueFull(3)

    with monkeypatch.context() as m:
        m.setattr(state.queue, "submit", full)
        codes = [
            svc.client.get(f"/v1/analyses/{a['id']}/report", headers=svc.h()).status_code for _ in range(3)
        ]
    assert codes == [503] * 3  # not 429: the refusals were refunded
    assert svc.client.get(f"/v1/analyses/{a['id']}/report", headers=svc.h()).status_code == 200
    monkeypatch.setattr(api, "CONVERSIONS", threading.BoundedSemaphore(1))
    monkeypatch.setattr(api, "CONVERSION_WAIT_S", 0.01)
    assert api.CONVERSIONS.acquire()  # another request converting
    (m,) = a["models"]
    r = svc.client.get(m["maps"]["gradcam"], headers=svc.h())
    assert r.status_code == 503 and r.json()["error"]["code"] == "busy" and r.headers["retry-after"] == "5"
    api.CONVERSIONS.release()
    assert svc.client.get(m["maps"]["gradcam"], headers=svc.h()).status_code == 200


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_the_data_directory_is_private(
    make_service: ServiceFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """It holds every tenant's uploads: created for its owner only (it was 755, its files 644); one the
    operator made open to others is kept, with a warning."""
    svc = make_service()
    svc.upload(models="tiny-cnn")
    assert svc.data_dir.stat().st_mode & 0o777 == 0o700
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    with caplog.at_level("WARNING", logger="fakelens.service"):
        make_service(data_dir=shared)
    assert "is open to other users (mode 755)" in caplog.text and shared.stat().st_mode & 0o777 == 0o755


def test_a_failed_save_keeps_nothing_and_says_the_server_is_at_fault(
    make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk or a locked database is the server's trouble: 503 + Retry-After, the token refunded, and
    the files the failed save had written removed at once (they stayed until the next restart); files another
    analysis already holds are kept; a nearly full disk makes /readyz say so."""
    import errno

    from fakelens.service import health
    from fakelens.service.store import BlobStore

    svc = make_service(rate_per_minute=1.0, rate_burst=2)
    first = svc.upload(models="tiny-cnn", methods="gradcam")
    state = svc.client.app.state.service  # type: ignore[attr-defined]
    before = state.repo.store.hashes()
    put_new = BlobStore.put_new
    calls = 0

    def full_disk(self: BlobStore, data: bytes) -> tuple[str, bool]:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return put_new(self, data)

    with monkeypatch.context() as m:
        m.setattr(BlobStore, "put_new", full_disk)
        failed = svc.upload(models="tiny-cnn", methods="gradcam", data=png_bytes(seed=5))
        assert state.repo.store.hashes() == before  # its two written files removed, none of the first's
    assert failed.status_code == 503 and failed.json()["error"]["code"] == "storage_unavailable"
    assert failed.headers["retry-after"] == "30" and calls == 3
    again = svc.upload(models="tiny-cnn", methods="gradcam", data=png_bytes(seed=5))
    assert first.status_code == 201 and again.status_code == 201  # refunded: the burst of 2 was not spent
    assert state.repo.check() == {**state.repo.check(), "missing": [], "orphans": []}
    with monkeypatch.context() as m:
        m.setattr(health, "_free_bytes", lambda path: 10 * 2**20)
        ready = svc.client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["disk"] is False


def test_health_info_openapi(service: Service) -> None:
    c = service.client
    assert c.get("/healthz").json() == {"status": "ok"}
    ready = c.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {
        "model": True,
        "database": True,
        "workers": True,
        "disk": True,
    }
    info = c.get("/v1/info").json()
    assert [m["key"] for m in info["models"]] == ["tiny-cnn", "tiny-vit"] and "gradcam" in info[
        "allowed_methods"
    ]
    paths = c.get("/openapi.json").json()["paths"]
    for p in (
        "/v1/analyses",
        "/v1/analyses/{analysis_id}",
        "/v1/analyses/{analysis_id}/models/{model}/{method}/{name}",
        "/v1/analyses/{analysis_id}/report",
        "/healthz",
        "/readyz",
    ):
        assert p in paths
    assert c.get("/nope").json()["error"]["code"] == "not_found"
    assert c.get("/healthz").headers["x-content-type-options"] == "nosniff"


def test_report_is_self_contained(service: Service) -> None:
    a = service.upload(methods="gradcam,rollout").json()
    r = service.client.get(a["links"]["report"], headers=service.h())
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "attachment" in r.headers["content-disposition"]
    html = r.text
    assert "<script" not in html.lower() and "http://" not in html and "https://" not in html
    assert "tiny-cnn" in html and "tiny-vit" in html and "rollout" in html
    assert html.count("data:image/") >= 3  # the image and the overlays are inlined
    # the uploaded 96×72 image was letterboxed into the tiny models' 64² input: recorded, and said in words
    assert [m["scale"] for m in a["models"]] == [pytest.approx(64 / 96)] * 2
    assert [m["tiles"] for m in a["models"]] == [1, 1]
    assert "shrunk 1.5× to fit" in " ".join(html.split())
    # uncalibrated models: each judged at the ensemble's threshold, and the API says so
    assert [m["threshold"] for m in a["models"]] == [a["threshold"]] * 2 and a["calibrated"] is False


def test_stored_report_keeps_calibration_and_flags_a_small_image(make_service: ServiceFactory) -> None:
    cnn, vit = create_model("tiny-cnn", seed=1), create_model("tiny-vit", seed=2)
    cnn.input_spec = replace(cnn.input_spec, mode="native")  # a small image is padded, not enlarged
    cal = [Calibration(0.3, 2.0), Calibration(0.6, 0.5)]
    svc = make_service(Ensemble([cnn, vit], calibrations=cal, calibration=Calibration(0.5, 1.0)))
    a = svc.upload(png_bytes(w=24, h=20)).json()
    assert a["calibrated"] is True and [m["threshold"] for m in a["models"]] == [0.5, 0.5]
    cnn_out, vit_out = a["models"]
    for out, det in ((cnn_out, cnn), (vit_out, vit)):  # padded (cnn) or enlarged (vit): as few pixels
        assert out["pixel_fraction"] == pytest.approx(24 * 20 / math.prod(det.input_spec.size))
    html = " ".join(svc.client.get(a["links"]["report"], headers=svc.h()).text.split())
    assert CALIBRATED_NOTE in html and UNCALIBRATED_NOTE not in html  # the stored analysis stays calibrated
    assert "(24 × 20 px) is small" in html and a["small"] is True
    assert html.count("small image</span>") == 1 and "a small image: little evidence either way" in html
    big = svc.upload(png_bytes()).json()  # 96 × 72: as many pixels as the 64² input, or more
    assert min(m["pixel_fraction"] for m in big["models"]) == 1.0 and big["small"] is False


def test_each_face_is_judged_on_its_own_and_reported(make_service: ServiceFactory) -> None:
    import skimage.data

    buf = io.BytesIO()
    Image.fromarray(skimage.data.astronaut()).save(buf, "PNG")
    svc = make_service(report_faces=True)
    a = svc.upload(buf.getvalue(), name="astronaut.png").json()
    [face] = a["faces"]
    x0, y0, x1, y1 = face["box"]
    left, top, right, bottom = face["window"]
    assert left <= x0 < x1 <= right and top <= y0 < y1 <= bottom
    assert face["verdict"] == ("fake" if face["score"] >= a["threshold"] else "real")
    assert set(face["models"]) == {"tiny-cnn", "tiny-vit"}
    assert svc.client.get(f"/v1/analyses/{a['id']}", headers=svc.h()).json()["faces"] == a["faces"]
    html = " ".join(svc.client.get(a["links"]["report"], headers=svc.h()).text.split())
    assert "Each face judged on its own" in html and f"face 1 {face['verdict']}" in html
    assert "<figcaption>face 1</figcaption>" in html and "tiny-vit " in html  # the window and its maps
    # a report rendered without the analysis's models (no longer served): the stored verdicts, no maps
    state = svc.client.app.state.service  # type: ignore[attr-defined]
    row = next(r for tenant in (1, 2) if (r := state.repo.get(tenant, a["id"])) is not None)
    stored = render_analysis_report(
        analysis_out(row), row.result, state.repo.read_file, max_pixels=10**8, faces=True
    )
    assert "Each face judged on its own" in stored and "<figcaption>face 1</figcaption>" not in stored
    off = make_service().upload(buf.getvalue()).json()  # faces off (the fixture's default)
    assert off["faces"] is None


def test_page_served(service: Service) -> None:
    c = service.client
    page = c.get("/")
    assert page.status_code == 200 and "fakelens" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert c.get(asset).status_code == 200
    body = page.text + c.get("/static/app.js").text + c.get("/static/style.css").text
    assert "http://" not in body and "https://" not in body  # nothing from the internet


def test_two_workers_each_own_model(make_service: ServiceFactory) -> None:
    svc = make_service(workers=2, queue=2)
    state = svc.client.app.state.service  # type: ignore[attr-defined]
    assert state.queue.workers == 2
    codes: list[int] = []
    threads = [
        threading.Thread(
            target=lambda i=i: codes.append(svc.upload(png_bytes(seed=i), models="tiny-vit").status_code)
        )
        for i in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert codes == [201] * 4
    assert svc.client.get("/v1/analyses", headers=svc.h()).json()["total"] == 4


def test_files_are_stored_compactly_and_revalidate(make_service: ServiceFactory) -> None:
    """Raw maps are kept as 16-bit PNGs and served as float32 .npy at the original's pixels; heatmaps and
    overlays are for looking, at the preview's size (a 16-MP upload stored 316 MB before, 36 MB after); a
    cached file revalidates to 304."""
    svc = make_service(preview_max_side=48)
    a = svc.upload(models="tiny-cnn", methods="gradcam").json()  # 96 × 72
    (m,) = a["models"]
    h = svc.h()
    heat = Image.open(io.BytesIO(svc.client.get(m["heatmaps"]["gradcam"], headers=h).content))
    over = Image.open(io.BytesIO(svc.client.get(m["overlays"]["gradcam"], headers=h).content))
    prev = Image.open(io.BytesIO(svc.client.get(a["image"]["url"], headers=h).content))
    assert heat.size == over.size == prev.size == (48, 36) and heat.mode == "RGBA"
    report = svc.client.get(a["links"]["report"], headers=h)  # rebuilt from the full-size map and mask
    assert report.status_code == 200 and "gradcam" in report.text
    raw = svc.client.get(m["maps"]["gradcam"], headers=h)
    served = np.load(io.BytesIO(raw.content), allow_pickle=False)
    assert served.shape == (72, 96) and served.dtype == np.float32
    assert raw.headers["content-disposition"].endswith('.gradcam.map.npy"')
    levels = served * MAP_LEVELS
    assert np.abs(levels - np.rint(levels)).max() < 1e-2 and served.max() == 1.0  # 16-bit steps, max kept
    etag = raw.headers["etag"]
    again = svc.client.get(m["maps"]["gradcam"], headers={**h, "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert svc.client.get(m["maps"]["gradcam"], headers={**h, "If-None-Match": '"other"'}).status_code == 200


def test_stored_maps_round_trip() -> None:
    rng = np.random.default_rng(0)
    m = rng.random((30, 40)).astype(np.float32)
    m[0, 0], m[0, 1] = 0.0, 1.0
    back = load_map(map_png(m))
    assert back.dtype == np.float32 and np.abs(back - m).max() <= 0.5 / MAP_LEVELS + 1e-7
    legacy = io.BytesIO()  # analyses stored before: the float32 .npy itself
    np.save(legacy, m)
    assert np.array_equal(load_map(legacy.getvalue()), m) and map_npy(legacy.getvalue()) == legacy.getvalue()
    assert np.array_equal(np.load(io.BytesIO(map_npy(map_png(m)))), back)


def test_head_answers_like_get_without_a_body(service: Service) -> None:
    a = service.upload(models="tiny-cnn", methods="gradcam").json()
    for url, headers in (("/", {}), (a["models"][0]["heatmaps"]["gradcam"], service.h())):
        get, head = service.client.get(url, headers=headers), service.client.head(url, headers=headers)
        assert head.status_code == get.status_code == 200 and head.content == b""
        for name in ("content-type", "content-length", "etag"):
            assert head.headers.get(name) == get.headers.get(name)
    assert service.client.head(f"/v1/analyses/{a['id']}").status_code == 401  # still guarded


def test_report_rendered_once_then_served_from_the_store(make_service: ServiceFactory) -> None:
    svc = make_service(rate_per_minute=1.0, rate_burst=3)  # two uploads and one rendering within the burst
    a = svc.upload(models="tiny-cnn", methods="gradcam").json()
    b = svc.upload(models="tiny-cnn", methods="gradcam").json()
    state = svc.client.app.state.service  # type: ignore[attr-defined]
    head = svc.client.head(a["links"]["report"], headers=svc.h())  # safe: no render, no charge
    assert head.status_code == 200 and "etag" not in head.headers and head.content == b""
    assert "content-length" not in head.headers  # unknown until rendered, not an empty report
    assert "report" not in (state.repo.get(1, a["id"]) or state.repo.get(2, a["id"])).result.get("files", {})
    first = svc.client.get(a["links"]["report"], headers=svc.h())
    assert first.status_code == 200 and first.headers["content-security-policy"].startswith(
        "default-src 'none'"
    )
    assert "attachment" in first.headers["content-disposition"]
    row = state.repo.get(1, a["id"]) or state.repo.get(2, a["id"])
    assert row.result["files"]["report"] == first.headers["etag"].strip('"') == sha256_hex(first.content)
    # the analysis rate is spent, yet the stored report is served again, unchanged, and revalidates
    again = svc.client.get(a["links"]["report"], headers=svc.h())
    assert again.status_code == 200 and again.content == first.content
    etag = {"If-None-Match": first.headers["etag"], **svc.h()}
    assert svc.client.get(a["links"]["report"], headers=etag).status_code == 304
    # a report not yet rendered costs an analysis: over the rate it is 429, not a free render on the workers
    assert svc.client.get(b["links"]["report"], headers=svc.h()).status_code == 429
    # the report is one of the analysis's files: deleting the analysis removes it
    assert svc.client.delete(f"/v1/analyses/{a['id']}", headers=svc.h()).status_code == 204
    assert not state.repo.store.exists(row.result["files"]["report"])


def test_files_of_a_deleted_analysis_answer_404_not_500(service: Service) -> None:
    """A delete between a request's lookup and its read of the files (a report waiting for a worker)."""
    a = service.upload(models="tiny-cnn", methods="gradcam").json()
    state = service.client.app.state.service  # type: ignore[attr-defined]
    state.repo.store.delete(a["image"]["sha256"])  # as if deleted while the report waited
    r = service.client.get(a["links"]["report"], headers=service.h())
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = service.client.get(a["image"]["original_url"], headers=service.h())
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_one_image_per_request_and_short_error_echoes(service: Service) -> None:
    files = [
        ("image", ("a.png", png_bytes(), "image/png")),
        ("image", ("b.png", png_bytes(seed=1), "image/png")),
    ]
    r = service.client.post("/v1/analyses", files=files, headers=service.h())
    assert r.status_code == 400 and "several 'image' parts" in r.json()["error"]["message"]
    r = service.client.get("/v1/analyses/" + "x" * 5000, headers=service.h())
    assert r.status_code == 404 and len(r.json()["error"]["message"]) < 100


def test_docs_page_off_by_default_and_pinned_when_on(make_service: ServiceFactory) -> None:
    assert make_service().client.get("/docs").status_code == 404
    c = make_service(docs=True).client
    page = c.get("/docs")
    assert page.status_code == 200
    scripts = [s for s in page.text.split("<script")[1:] if "https://" in s]
    links = [s for s in page.text.split("<link")[1:] if "https://" in s]
    for tag in scripts + links:  # every file from the CDN is one exact version with its hash
        assert "swagger-ui-dist@5.35.0/" in tag and 'integrity="sha384-' in tag
    csp = page.headers["content-security-policy"]
    assert (
        "script-src 'self' https://cdn.jsdelivr.net;" in csp
        and "unsafe-inline" not in csp.split("style-src")[0]
    )
    assert c.get("/static/docs.js").status_code == 200


def test_openapi_documents_the_error_body_and_file_types(service: Service) -> None:
    spec = service.client.get("/openapi.json").json()
    ref = "#/components/schemas/ErrorOut"
    listing = spec["paths"]["/v1/analyses"]["get"]["responses"]
    assert listing["422"]["content"]["application/json"]["schema"]["$ref"] == ref
    files = spec["paths"]["/v1/analyses/{analysis_id}/models/{model}/{method}/{name}"]["get"]["responses"]
    assert set(files["200"]["content"]) == {"image/png", "application/octet-stream"} and "304" in files
    created = spec["paths"]["/v1/analyses"]["post"]["responses"]["201"]
    assert "Location" in created["headers"]


def test_two_first_requests_for_one_report_render_it_once(
    make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fakelens.service.api as api_mod

    svc = make_service(workers=2, queue=2, rate_per_minute=1.0, rate_burst=2)  # one upload + one rendering
    a = svc.upload(models="tiny-cnn").json()
    calls: list[int] = []
    real = api_mod.render_analysis_report

    def slow(*args: object, **kwargs: object) -> str:
        calls.append(1)
        threading.Event().wait(0.5)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(api_mod, "render_analysis_report", slow)
    got: list[tuple[int, bytes]] = []

    def fetch() -> None:
        r = svc.client.get(a["links"]["report"], headers=svc.h())
        got.append((r.status_code, r.content))

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(calls) == 1 and [c for c, _ in got] == [200, 200] and got[0][1] == got[1][1]


def test_every_error_code_the_service_can_answer_is_in_the_schema_enum() -> None:
    """A typed client generated from /openapi.json knows every code (ApiError, error_body, the HTTP map)."""
    import re
    import typing

    import fakelens.service as pkg
    from fakelens.service.schemas import ErrorCode

    src = "\n".join(p.read_text() for p in Path(pkg.__file__).parent.glob("*.py"))
    used = set(re.findall(r'ApiError\(\s*\d+,\s*"(\w+)"', src)) | set(
        re.findall(r'error_body\(\s*"(\w+)"', src)
    )
    used |= set(re.findall(r'\d{3}: "(\w+)"', src))  # the status → code map
    assert used and used <= set(typing.get_args(ErrorCode)), used - set(typing.get_args(ErrorCode))


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/v1/analyses", "GET, HEAD, POST"),
        ("PUT", "/v1/analyses/abc", "DELETE, GET, HEAD"),
        ("POST", "/v1/info", "GET, HEAD"),
        ("POST", "/", "GET, HEAD"),
        ("POST", "/static/app.js", "GET, HEAD"),
    ],
)
def test_405_allow_lists_every_method_of_the_path(
    service: Service, method: str, path: str, allow: str
) -> None:
    r = service.client.request(method, path, headers=service.h())
    assert r.status_code == 405 and r.headers["allow"] == allow
    assert r.json()["error"] == {
        "code": "method_not_allowed",
        "message": f"{method} is not allowed on {path}; allowed: {allow}",
    }


def test_405_behind_a_proxy_prefix_still_lists_the_methods(service: Service) -> None:
    """Served under a root path (a proxy mounting the app at /fakelens), the routes match below it."""
    from fastapi.testclient import TestClient

    behind = TestClient(service.client.app, root_path="/fakelens")
    r = behind.request("POST", "/fakelens/v1/info", headers=service.h())
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"


def test_a_commit_that_fails_after_committing_keeps_its_files(
    make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection lost during COMMIT: the database kept the row, the driver raised. The files the row
    references must stay (deleting them left an analysis whose heatmaps answered 404)."""
    from contextlib import contextmanager

    from sqlalchemy.exc import OperationalError

    svc = make_service()
    state = svc.client.app.state.service  # type: ignore[attr-defined]
    session = state.repo.db.session

    @contextmanager
    def lost_after_commit():  # type: ignore[no-untyped-def]
        with session() as s:
            yield s
        raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))

    save = state.repo._save

    def save_losing_the_commit(*args):  # type: ignore[no-untyped-def]
        state.repo.db.session = lost_after_commit
        try:
            return save(*args)
        finally:
            state.repo.db.session = session

    monkeypatch.setattr(state.repo, "_save", save_losing_the_commit)
    r = svc.upload(models="tiny-cnn", methods="gradcam", data=png_bytes(seed=11))
    monkeypatch.undo()
    assert r.status_code == 503 and state.repo.check()["missing"] == []
    (row,) = svc.client.get("/v1/analyses", headers=svc.h()).json()["items"]  # committed after all
    assert svc.client.get(row["models"][0]["heatmaps"]["gradcam"], headers=svc.h()).status_code == 200


def test_a_blank_upload_is_flagged_and_read_as_such(service: Service) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (96, 72), (128, 128, 128)).save(buf, "PNG")
    a = service.upload(data=buf.getvalue(), models="tiny-cnn", methods="gradcam").json()
    assert a["blank"] is True and a["reading"][0]["text"].startswith("The image is blank")
    assert a["verdict"] is None and all(m["verdict"] is None for m in a["models"]) and a["score"] is not None
    other = service.upload(models="tiny-cnn", methods="gradcam").json()
    assert other["blank"] is False and other["verdict"] in {"fake", "real"}
    report = service.client.get(a["links"]["report"], headers=service.h()).text
    assert "a blank image: nothing to judge" in report  # rebuilt from the stored texture
