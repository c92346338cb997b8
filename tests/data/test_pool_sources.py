"""The Debian wallpaper sources: which files they take, and the licence each photograph carries.

The packages are not downloaded here: ``_apt_download`` is replaced by a folder laid out like the unpacked
``.deb`` (layouts read from lomiri-wallpapers-16.04 20.04.0-2 and plasma-workspace-wallpapers 5.27.5-2).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fakelens.data import pool as pool_mod
from fakelens.data.pool import build_pool, dep5_licences, load_pool

COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: lomiri-wallpapers

Files: warty-final-ubuntu.png
Copyright: 2004, Nathaniel McCallum
License: CC-BY-SA-3.0

Files: 16.04/aitzgorri_by_Aitzol_Berasategi.jpg
Copyright: Aitzol Berasategi, 2018
License: CC-BY-4.0

Files: 16.04/seeding_by_Clements_Engelhardt.jpg
 16.04/Bridge_by_Sander_Klootwijk.jpg
Copyright: 2018
License: CC0-1.0

Files: 16.04/umang_by_Abhishek_Mudgal.jpg
Copyright: Abhishek Mudgal, 2018
License: CC-BY-4.0

Files: debian/*
Copyright: 2020 Mike Gabriel
License: Expat

License: Expat
 Permission is hereby granted, free of charge, ...
"""


def _jpeg(path: Path, w: int = 96, h: int = 64, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path, quality=90)


@pytest.fixture
def fake_debs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``_apt_download`` answered from local folders shaped like the two unpacked packages."""
    roots = tmp_path / "debs"
    lomiri = roots / "lomiri-wallpapers-16.04"
    bg = lomiri / "usr/share/backgrounds"
    for i, name in enumerate(
        [
            "aitzgorri_by_Aitzol_Berasategi.jpg",
            "seeding_by_Clements_Engelhardt.jpg",
            "Bridge_by_Sander_Klootwijk.jpg",
            "umang_by_Abhishek_Mudgal.jpg",  # a render: left out
            "new_by_Someone.jpg",  # no paragraph of its own
        ]
    ):
        _jpeg(bg / name, seed=i)
    doc = lomiri / "usr/share/doc/lomiri-wallpapers-16.04/copyright"
    doc.parent.mkdir(parents=True)
    doc.write_text(COPYRIGHT)

    plasma = roots / "plasma-workspace-wallpapers" / "usr/share/wallpapers"
    for i, (name, lic) in enumerate([("Kite", "LGPLv3"), ("Path", "CC-BY-SA-4.0"), ("Altai", "LGPLv3")]):
        images = plasma / name / "contents/images"
        _jpeg(images / "640x480.jpg", 64, 48, seed=10 + i)
        _jpeg(images / "2560x1600.jpg", 160, 100, seed=20 + i)  # the most pixels by name
        _jpeg(images / "1920x1080.jpg", 192, 108, seed=30 + i)
        (images / "notes.txt").write_text("not an image")
        meta = {"KPlugin": {"Id": name, "License": lic, "Name": name}}
        (plasma / name / "metadata.json").write_text(json.dumps(meta))
    (plasma / "Path" / "metadata.json").write_text("{not json")  # unreadable metadata: licence unknown

    def apt(package: str, cache: Path) -> tuple[str, Path]:
        return f"deb:{package}=1.0", roots / package

    monkeypatch.setattr(pool_mod, "_apt_download", apt)
    return roots


def test_dep5_paragraphs() -> None:
    rules = dep5_licences(COPYRIGHT)
    cc0 = ("16.04/seeding_by_Clements_Engelhardt.jpg", "16.04/Bridge_by_Sander_Klootwijk.jpg")
    assert (cc0, "CC0-1.0") in rules
    assert (("debian/*",), "Expat") in rules
    assert len(rules) == 5  # the stand-alone "License: Expat" text paragraph has no Files:
    assert pool_mod._dep5_licence(rules, "Bridge_by_Sander_Klootwijk.jpg") == "CC0-1.0"
    assert pool_mod._dep5_licence(rules, "aitzgorri_by_Aitzol_Berasategi.jpg") == "CC-BY-4.0"
    # the packaging's debian/* paragraph never licenses an installed photograph
    assert pool_mod._dep5_licence(rules, "new_by_Someone.jpg") == "unspecified"
    assert pool_mod._dep5_licence(dep5_licences("Files: *\nLicence-less: x\n"), "a.jpg") == "unspecified"
    assert pool_mod._dep5_licence(dep5_licences("Files: *\nLicense: GPL-2+\n"), "a.jpg") == "GPL-2+"


def test_lomiri_takes_photographs_with_their_licences(fake_debs: Path, tmp_path: Path) -> None:
    package, cands = pool_mod._fetch_lomiri(tmp_path / "cache")
    assert package == "deb:lomiri-wallpapers-16.04=1.0"
    got = {c.name: c.licence for c in cands}
    assert got == {
        "aitzgorri_by_Aitzol_Berasategi.jpg": "CC-BY-4.0",
        "seeding_by_Clements_Engelhardt.jpg": "CC0-1.0",
        "Bridge_by_Sander_Klootwijk.jpg": "CC0-1.0",
        "new_by_Someone.jpg": "unspecified",
    }


def test_plasma_takes_the_largest_size_of_listed_photographs(fake_debs: Path, tmp_path: Path) -> None:
    package, cands = pool_mod._fetch_plasma(tmp_path / "cache")
    assert package == "deb:plasma-workspace-wallpapers=1.0"
    by_name = {c.name: c for c in cands}
    assert set(by_name) == {"Kite.jpg", "Path.jpg"}  # Altai is a render: not in the photograph list
    assert by_name["Kite.jpg"].file.name == "2560x1600.jpg"
    assert by_name["Kite.jpg"].licence == "LGPL-3.0"
    assert by_name["Path.jpg"].licence == "unspecified"


def test_wallpaper_sources_build_a_pool(fake_debs: Path, tmp_path: Path) -> None:
    out = tmp_path / "pool"
    rep = build_pool(out, ["lomiri_wallpapers", "plasma_wallpapers"], detect=False, progress=False)
    assert [s.status for s in rep.sources] == ["added", "added"]
    entries = {e.path: e for e in load_pool(out)}
    assert len(entries) == 6
    kite = entries["images/plasma_wallpapers/Kite.jpg"]
    assert (kite.width, kite.height) == (160, 100) and kite.licence == "LGPL-3.0"
    seeding = entries["images/lomiri_wallpapers/seeding_by_Clements_Engelhardt.jpg"]
    assert seeding.redistributable  # CC0
    assert not entries["images/lomiri_wallpapers/aitzgorri_by_Aitzol_Berasategi.jpg"].redistributable
