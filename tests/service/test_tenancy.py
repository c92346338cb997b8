"""A tenant can never read, list or delete another tenant's analyses or files: one test per route."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Service


@pytest.fixture
def theirs(service: Service) -> dict[str, Any]:
    """An analysis of tenant acme (globex is the intruder)."""
    r = service.upload(methods="gradcam", models="tiny-cnn")
    assert r.status_code == 201
    return r.json()


def _routes(a: dict[str, Any]) -> list[str]:
    m = a["models"][0]
    return [
        a["links"]["self"],
        a["image"]["url"],
        a["image"]["original_url"],
        m["heatmaps"]["gradcam"],
        m["overlays"]["gradcam"],
        m["maps"]["gradcam"],
        a["links"]["report"],
    ]


@pytest.mark.parametrize(
    "route", range(7), ids=["analysis", "image", "original", "heatmap", "overlay", "map", "report"]
)
def test_other_tenant_cannot_read(service: Service, theirs: dict[str, Any], route: int) -> None:
    url = _routes(theirs)[route]
    assert service.client.get(url, headers=service.h("acme")).status_code == 200
    r = service.client.get(url, headers=service.h("globex"))
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"  # as if it did not exist
    assert service.client.get(url).status_code == 401


def test_other_tenant_cannot_list(service: Service, theirs: dict[str, Any]) -> None:
    mine = service.upload(tenant="globex", models="tiny-cnn").json()
    acme = service.client.get("/v1/analyses", headers=service.h("acme")).json()
    globex = service.client.get("/v1/analyses", headers=service.h("globex")).json()
    assert [x["id"] for x in acme["items"]] == [theirs["id"]] and acme["total"] == 1
    assert [x["id"] for x in globex["items"]] == [mine["id"]] and globex["total"] == 1


def test_other_tenant_cannot_delete(service: Service, theirs: dict[str, Any]) -> None:
    url = theirs["links"]["self"]
    assert service.client.delete(url, headers=service.h("globex")).status_code == 404
    assert service.client.get(url, headers=service.h("acme")).status_code == 200  # still there
    assert service.client.delete(url, headers=service.h("acme")).status_code == 204


def test_same_image_two_tenants(service: Service, theirs: dict[str, Any]) -> None:
    """Identical uploads share stored bytes, not analyses; one tenant's delete leaves the other's intact."""
    from .conftest import png_bytes

    data = png_bytes()
    a = service.upload(data, tenant="acme", models="tiny-cnn").json()
    b = service.upload(data, tenant="globex", models="tiny-cnn").json()
    assert a["image"]["sha256"] == b["image"]["sha256"] and a["id"] != b["id"]
    assert service.client.delete(a["links"]["self"], headers=service.h("acme")).status_code == 204
    assert service.client.get(b["image"]["original_url"], headers=service.h("globex")).content == data
