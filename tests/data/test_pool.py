"""The pool builder on a temp source: manifest, hashes, idempotence, failing sources, grouping."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from fakelens.data import pool as pool_mod
from fakelens.data.pool import CSV_COLUMNS, build_pool, load_pool, load_pool_image
from fakelens.errors import ConfigError


def test_build_writes_manifest_and_skips_failing_source(photo_source: Path, tmp_path: Path) -> None:
    out = tmp_path / "pool"
    rep = build_pool(out, detect=False, progress=False)
    by = {s.name: s for s in rep.sources}
    assert by["ok"].status == "added" and by["ok"].images == 5 and by["ok"].new == 5
    assert by["broken"].status == "failed" and "npm is not installed" in by["broken"].message
    entries = load_pool(out)
    assert len(entries) == 5
    for e in entries:
        data = (out / e.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == e.sha256
        assert data == (photo_source / Path(e.path).name).read_bytes()  # copied byte for byte
        img = load_pool_image(out, e)
        assert img.shape == (e.height, e.width, 3) and img.dtype == np.uint8
        assert e.redistributable and e.licence == "CC0-1.0"
    with open(out / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 5
    groups = {Path(e.path).name: e.group for e in entries}
    assert groups["shot1.png"] == groups["shot2.png"] == "ok/shot"  # a burst: one photo group
    assert groups["coffee.jpg"] != groups["camera.png"]
    assert next(e for e in entries if e.path.endswith("astronaut.png")).people == ("eileen",)
    assert not (out / ".cache" / "ok" / "scratch").exists()


def test_rerun_verifies_and_skips(
    photo_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "pool"
    build_pool(out, detect=False, progress=False)
    before = {p: p.stat().st_mtime_ns for p in (out / "images").rglob("*") if p.is_file()}
    calls = []
    orig = pool_mod.SOURCES[0]
    monkeypatch.setattr(
        pool_mod,
        "SOURCES",
        [
            pool_mod.PoolSource(
                orig.name,
                orig.licence,
                lambda c: calls.append(c) or orig.fetch(c),
                orig.group_by,
                scratch=orig.scratch,
            ),
            pool_mod.SOURCES[1],
        ],
    )
    rep = build_pool(out, detect=False, progress=False)
    assert {s.name: s.status for s in rep.sources} == {"ok": "verified", "broken": "failed"}
    assert calls == []  # a complete, verified source is not fetched again
    after = {p: p.stat().st_mtime_ns for p in (out / "images").rglob("*") if p.is_file()}
    assert before == after
    # a corrupted file is noticed and restored from the source
    victim = next(iter(sorted(before)))
    victim.write_bytes(b"garbage")
    rep = build_pool(out, detect=False, progress=False)
    ok = next(s for s in rep.sources if s.name == "ok")
    assert ok.status == "added" and ok.new == 1 and len(calls) == 1
    assert all(hashlib.sha256((out / e.path).read_bytes()).hexdigest() == e.sha256 for e in load_pool(out))


def test_sources_filter_and_errors(photo_source: Path, tmp_path: Path) -> None:
    out = tmp_path / "pool"
    rep = build_pool(out, ["ok"], detect=False, progress=False)
    assert [s.name for s in rep.sources] == ["ok"]
    with pytest.raises(ConfigError, match="unknown pool source"):
        build_pool(out, ["nope"], detect=False, progress=False)
    with pytest.raises(ConfigError, match="unknown pool source"):
        build_pool(tmp_path / "new", ["nope"], detect=False, progress=False)
    assert not (tmp_path / "new").exists()  # a refused request leaves no empty pool folder behind
    with pytest.raises(ConfigError, match="no pool manifest"):
        load_pool(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{not json")
    with pytest.raises(ConfigError, match="malformed"):
        load_pool(tmp_path / "bad")


def test_faces_are_detected_and_cached(photo_source: Path, tmp_path: Path) -> None:
    from fakelens.data.faces import available_detectors

    if "haar" not in available_detectors():
        pytest.skip("no Haar cascade in this OpenCV")
    out = tmp_path / "pool"
    rep = build_pool(out, ["ok"], detector="haar", progress=False)
    assert rep.detector == "haar"
    doc = json.loads((out / "manifest.json").read_text())
    assert doc["detector"].startswith("haar/")
    assert all(isinstance(e["faces"], list) for e in doc["entries"])
    rep2 = build_pool(out, ["ok"], detector="haar", progress=False)
    assert rep2.sources[0].status == "verified"


def test_stem_groups() -> None:
    g = pool_mod._stem_group
    assert g("aloeL.jpg") == g("aloeR.jpg") == "aloe"
    assert g("left01.jpg") == g("right14.jpg") == "left_right"
    assert g("leuvenA.jpg") == g("leuvenB.jpg") == "leuven"
    assert g("graf1.png") == g("graf3.png") == "graf"
    assert g("building.jpg") == "building"


def test_pool_splits_keep_people_together(photo_source: Path, tmp_path: Path) -> None:
    from fakelens.data.faces import Face
    from fakelens.data.pool import pool_splits

    out = tmp_path / "pool"
    build_pool(out, detect=False, progress=False)
    entries = load_pool(out)
    face = Face(box=(10.0, 10.0, 90.0, 90.0))
    for e in entries[:2]:
        e.faces = [face]
        e.people = ("same_person",)
    s = pool_splits(entries, seed=3)
    assert s[entries[0].path] == s[entries[1].path]
    assert set(s) == {e.path for e in entries}


def test_relative_out_hands_fetchers_an_absolute_cache(
    photo_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the fetchers run pip/apt-get/dpkg inside their cache folder: a relative path would point elsewhere there
    seen: list[Path] = []
    ok = pool_mod.SOURCES[0]

    def fetch(cache: Path) -> tuple[str, list[pool_mod.Candidate]]:
        seen.append(cache)
        return ok.fetch(cache)

    monkeypatch.setattr(pool_mod, "SOURCES", [pool_mod.PoolSource("ok", "CC0-1.0", fetch, "stem")])
    monkeypatch.chdir(tmp_path)
    build_pool("rel/pool", detect=False, progress=False)
    assert seen == [tmp_path / "rel" / "pool" / ".cache" / "ok"] and seen[0].is_absolute()
    assert len(load_pool(tmp_path / "rel" / "pool")) == 5


def test_entries_hash_ignores_how_the_pool_was_built(photo_source: Path, tmp_path: Path) -> None:
    from fakelens.data.pool import entries_sha256
    from fakelens.io import sha256_file

    out = tmp_path / "pool"
    build_pool(out, detect=False, progress=False)
    mf = out / "manifest.json"
    before_file, before = sha256_file(mf), entries_sha256(out)
    doc = json.loads(mf.read_text())
    doc["sources"]["ok"]["status"] = "verified"  # what a re-run over an earlier build records
    mf.write_text(json.dumps(doc, indent=1))
    assert sha256_file(mf) != before_file and entries_sha256(out) == before
    doc["entries"][0]["group"] = "another/group"  # a different photo list deals differently: a new hash
    mf.write_text(json.dumps(doc))
    assert entries_sha256(out) != before
