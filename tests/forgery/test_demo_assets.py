"""The demo images shipped in the package: licences, hashes, sizes, matched encodings, rebuildable."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image

from fakelens.forgery import decode
from fakelens.forgery.demo import DEMO_DIR, build_demo_assets, demo_files, demo_manifest

ALLOWED = {"CC0-1.0", "public-domain", "MIT"}


def test_manifest_matches_the_files() -> None:
    files = demo_manifest()["files"]
    listed = {f["file"] for f in files}
    on_disk = {p.name for p in DEMO_DIR.iterdir() if p.name != "MANIFEST.json"}
    assert listed == on_disk
    assert (
        3 <= sum(f["kind"] == "real" for f in files) <= 6
        and 2 <= sum(f["kind"] == "fake" for f in files) <= 3
    )
    total = 0
    for f in files:
        data = (DEMO_DIR / f["file"]).read_bytes()
        total += len(data)
        assert hashlib.sha256(data).hexdigest() == f["sha256"]
        assert f["licence"] in ALLOWED and f["source"]
        with Image.open(io.BytesIO(data)) as im:
            assert max(im.size) <= 512 and im.size == (f["width"], f["height"])
            assert im.format == ("PNG" if f["kind"] == "mask" else "JPEG")
    assert total < 600_000


def test_fakes_share_encoding_with_their_reals_and_change_the_masked_region() -> None:
    for f in demo_manifest()["files"]:
        if f["kind"] != "fake":
            continue
        rb, fb = (DEMO_DIR / f["real"]).read_bytes(), (DEMO_DIR / f["file"]).read_bytes()
        with Image.open(io.BytesIO(rb)) as r, Image.open(io.BytesIO(fb)) as k:
            assert r.size == k.size and r.quantization == k.quantization  # type: ignore[attr-defined]
        mask = np.asarray(Image.open(DEMO_DIR / f["mask"]), np.float32) / 255
        diff = np.abs(decode(fb).astype(np.float32) - decode(rb).astype(np.float32)).mean(axis=2)
        assert diff[mask > 0.5].mean() > 3 * max(diff[mask == 0].mean(), 0.2)
    assert demo_files("real") and all(p.suffix == ".jpg" for p in demo_files("real"))


def test_demo_assets_rebuild_to_the_same_pixels(tmp_path: Path) -> None:
    build_demo_assets(tmp_path)
    for f in demo_manifest()["files"]:
        a, b = (DEMO_DIR / f["file"]).read_bytes(), (tmp_path / f["file"]).read_bytes()
        if f["kind"] == "mask":
            assert np.array_equal(
                np.asarray(Image.open(io.BytesIO(a))), np.asarray(Image.open(io.BytesIO(b)))
            )
        else:  # allow a different libjpeg build to round differently
            assert np.abs(decode(a).astype(int) - decode(b).astype(int)).max() <= 2
