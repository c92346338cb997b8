"""Fixtures for data tests: a temp photo source for the pool builder.

``tests/data`` is a package (``__init__.py``), so this conftest is imported as ``data.conftest`` and does not
shadow ``tests/conftest.py``, which other test folders import by the name ``conftest``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from fakelens.data import pool as pool_mod


def write_photos(folder: Path, names: dict[str, np.ndarray], side: int = 160) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in names.items():
        bgr = arr if arr.ndim == 2 else arr[..., ::-1]
        h, w = bgr.shape[:2]
        s = side / max(h, w)
        cv2.imwrite(str(folder / name), cv2.resize(bgr, (round(w * s), round(h * s))))


@pytest.fixture
def photo_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """SOURCES replaced by a good temp source (``ok``) and one whose client fails (``broken``)."""
    src = tmp_path / "src"
    write_photos(
        src,
        {
            "astronaut.png": skimage.data.astronaut(),
            "coffee.jpg": skimage.data.coffee(),
            "shot1.png": skimage.data.chelsea(),
            "shot2.png": skimage.data.chelsea()[::-1].copy(),
            "camera.png": skimage.data.camera(),
        },
    )

    def fetch(cache: Path) -> tuple[str, list[pool_mod.Candidate]]:
        cache.mkdir(parents=True, exist_ok=True)
        (cache / "scratch").mkdir(exist_ok=True)
        people = {"astronaut.png": ("eileen",)}
        return "ok==1", [
            pool_mod.Candidate(p.name, p, "CC0-1.0", people.get(p.name, ())) for p in sorted(src.iterdir())
        ]

    def broken(cache: Path) -> tuple[str, list[pool_mod.Candidate]]:
        raise pool_mod.FetchError("npm is not installed")

    monkeypatch.setattr(
        pool_mod,
        "SOURCES",
        [
            pool_mod.PoolSource("ok", "CC0-1.0", fetch, "stem", scratch=("scratch",)),
            pool_mod.PoolSource("broken", "MIT", broken),
        ],
    )
    return src
