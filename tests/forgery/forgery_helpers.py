"""Helpers for forgery tests: small natural images, a face on the astronaut, and a tiny pool.

(Not a conftest.py: other test folders import ``conftest`` by name, so a second one would shadow theirs.)
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from fakelens.data import pool as pool_mod
from fakelens.data.faces import Face, template_landmarks

# MTCNN's box for the astronaut's face at 512 px (see the pool manifest).
ASTRONAUT_BOX = (181.0, 62.0, 268.0, 172.0)


def astronaut_face(scale: float = 1.0) -> Face:
    box = tuple(v * scale for v in ASTRONAUT_BOX)
    return Face(box=box, landmarks=template_landmarks(box), score=1.0, detector="test")  # type: ignore[arg-type]


def astronaut128() -> tuple[np.ndarray, Face]:
    img = cv2.resize(skimage.data.astronaut(), (128, 128), interpolation=cv2.INTER_AREA)
    return img, astronaut_face(0.25)


def coffee_odd() -> np.ndarray:
    """An odd-sized natural crop (97 × 131)."""
    img = cv2.resize(skimage.data.coffee(), (200, 133), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img[11:108, 23:154])


def make_tiny_pool(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A pool of five scikit-image photos (one with a face), built by ``build_pool`` from a temp source."""
    src_dir = root / "src"
    src_dir.mkdir(parents=True, exist_ok=True)
    photos = {
        "astronaut.png": skimage.data.astronaut(),
        "coffee.jpg": skimage.data.coffee(),
        "chelsea.png": skimage.data.chelsea(),
        "rocket.jpg": skimage.data.rocket(),
        "camera.png": skimage.data.camera(),
        "motorcycle_left.png": skimage.data.stereo_motorcycle()[0],
    }
    for name, arr in photos.items():
        small = arr if arr.ndim == 2 else arr[..., ::-1]
        h, w = small.shape[:2]
        s = 320 / max(h, w)
        cv2.imwrite(str(src_dir / name), cv2.resize(small, (round(w * s), round(h * s))))

    def fetch(cache: Path) -> tuple[str, list[pool_mod.Candidate]]:
        return "test==0", [
            pool_mod.Candidate(n, src_dir / n, "CC0-1.0", ("eileen",) if n == "astronaut.png" else ())
            for n in sorted(photos)
        ]

    monkeypatch.setattr(pool_mod, "SOURCES", [pool_mod.PoolSource("tiny", "CC0-1.0", fetch, "photo")])
    out = root / "pool"
    pool_mod.build_pool(out, detect=False, progress=False)
    doc = json.loads((out / "manifest.json").read_text())
    for e in doc["entries"]:
        if e["path"].endswith("astronaut.png"):
            e["faces"] = [astronaut_face(320 / 512).to_dict()]
    (out / "manifest.json").write_text(json.dumps(doc))
    return out
