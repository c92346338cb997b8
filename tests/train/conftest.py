"""Fixtures for training tests: tiny learnable datasets on disk, a tiny real-photo pool, one thread."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from fakelens.data import pool as pool_mod


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: on a loaded 2-core machine, two OpenMP threads are several times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def fake_pattern(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth random image; fakes get a 2-pixel checkerboard added (easy for a CNN, like an up-sampler's
    fingerprint)."""
    base = cv2.resize(rng.integers(0, 255, (4, 4, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    return base.astype(np.int16)


def write_folder_dataset(
    root: Path,
    n: int = 16,
    splits: tuple[str, ...] = ("train", "val"),
    size: tuple[int, int] = (40, 48),
    gens: tuple[str, ...] = ("gan", "diff"),
) -> Path:
    """``root/<split>/<gen>/{0_real,1_fake}/*.png``: fakes carry a checkerboard, reals do not."""
    rng = np.random.default_rng(0)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    checker = (((yy // 2) + (xx // 2)) % 2 * 2 - 1)[..., None] * 40
    for split in splits:
        for gen in gens:
            for cls in ("0_real", "1_fake"):
                d = root / split / gen / cls
                d.mkdir(parents=True, exist_ok=True)
                for i in range(n // len(gens)):
                    a = fake_pattern(rng, h, w)
                    if cls == "1_fake":
                        a = a + checker
                    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(d / f"{i:03d}.png")
    return root


@pytest.fixture
def folder_data(tmp_path: Path) -> Path:
    return write_folder_dataset(tmp_path / "data")


def make_pool(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A pool of six small scikit-image photos (the astronaut with a face), built by ``build_pool``."""
    src = root / "src"
    src.mkdir(parents=True, exist_ok=True)
    photos = {
        "astronaut.png": skimage.data.astronaut(),
        "coffee.png": skimage.data.coffee(),
        "chelsea.png": skimage.data.chelsea(),
        "rocket.png": skimage.data.rocket(),
        "camera.png": skimage.data.camera(),
        "motorcycle.png": skimage.data.stereo_motorcycle()[0],
    }
    for name, arr in photos.items():
        bgr = arr if arr.ndim == 2 else arr[..., ::-1]
        h, w = bgr.shape[:2]
        s = 160 / max(h, w)
        cv2.imwrite(
            str(src / name), cv2.resize(bgr, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
        )

    def fetch(cache: Path) -> tuple[str, list[pool_mod.Candidate]]:
        return "test==0", [pool_mod.Candidate(n, src / n, "CC0-1.0") for n in sorted(photos)]

    monkeypatch.setattr(pool_mod, "SOURCES", [pool_mod.PoolSource("tiny", "CC0-1.0", fetch, "photo")])
    out = root / "pool"
    pool_mod.build_pool(out, detect=False, progress=False)
    doc = json.loads((out / "manifest.json").read_text())
    assert len(doc["entries"]) == len(photos)
    return out


@pytest.fixture
def tiny_pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return make_pool(tmp_path, monkeypatch)


# Splits for a 6-photo pool that leave photos in train, val and test.
POOL_FRACTIONS = (0.5, 0.25, 0.25)
