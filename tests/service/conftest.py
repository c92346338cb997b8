"""Service fixtures: an app over tiny seeded models in a temporary data dir, two tenants with keys, images."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")
pytest.importorskip("multipart")

from fastapi.testclient import TestClient

from fakelens.models import Ensemble, create_model
from fakelens.service import Settings, create_app
from fakelens.service.db import Database
from fakelens.service.keys import create_key


def tiny_ensemble() -> Ensemble:
    return Ensemble([create_model("tiny-cnn", seed=1), create_model("tiny-vit", seed=2)])


def png_bytes(w: int = 96, h: int = 72, seed: int = 0, fmt: str = "PNG", **save: Any) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format=fmt, **save)
    return buf.getvalue()


@dataclass
class Service:
    client: TestClient
    data_dir: Path
    keys: dict[str, str]

    def h(self, tenant: str = "acme") -> dict[str, str]:
        return {"X-API-Key": self.keys[tenant]}

    def upload(
        self, data: bytes | None = None, tenant: str = "acme", name: str = "x.png", **form: str
    ) -> Any:
        files = {"image": (name, png_bytes() if data is None else data, "image/png")}
        return self.client.post("/v1/analyses", files=files, data=form, headers=self.h(tenant))


ServiceFactory = Callable[..., Service]


@pytest.fixture(scope="session")
def ensemble() -> Ensemble:
    return tiny_ensemble()


@pytest.fixture
def make_service(tmp_path: Path, ensemble: Ensemble) -> Iterator[ServiceFactory]:
    """Start an app with settings overrides; robustness badges off unless asked (they cost 5 views)."""
    started: list[TestClient] = []

    def make(detector: Any = None, **overrides: Any) -> Service:
        base: dict[str, Any] = {
            "data_dir": tmp_path / f"data{len(started)}",
            "robustness": False,
            "report_faces": False,
            "rate_per_minute": 0.0,
            "read_rate_per_minute": 0.0,
        }
        settings = Settings().with_(**{**base, **overrides})
        db = Database(settings.db_url)
        keys = {t: create_key(db, t)[1] for t in ("acme", "globex")}
        db.close()
        client = TestClient(create_app(settings, detector or ensemble))
        client.__enter__()
        started.append(client)
        return Service(client, settings.data_dir, keys)

    yield make
    for c in started:
        c.__exit__(None, None, None)


@pytest.fixture
def service(make_service: ServiceFactory) -> Service:
    return make_service()
