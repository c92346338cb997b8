"""Demo images shipped in ``fakelens/assets/demo``: a few public-domain / CC0 photographs and fakes of them.

The reals come from the scikit-image and matplotlib wheels (licences from their docstrings), at most 512 px,
JPEG quality 90. Each fake is made by a recipe and written with :func:`encode_pair`, so it shares size,
format and JPEG history with its real; its mask is an 8-bit PNG. ``MANIFEST.json`` lists every file with its
source, licence and sha256. :func:`build_demo_assets` rebuilds them (deterministically, without a face
detector: the five landmarks found by MTCNN are recorded below).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fakelens.data.faces import Face
from fakelens.forgery.dataset import mask_to_png
from fakelens.forgery.encode import decode, encode, encode_pair
from fakelens.forgery.recipes import make_recipe

__all__ = ["DEMO_DIR", "build_demo_assets", "demo_files", "demo_manifest"]

DEMO_DIR = Path(__file__).resolve().parent.parent / "assets" / "demo"
QUALITY = 90
MAX_SIDE = 512


@dataclass(frozen=True)
class _Photo:
    name: str
    source: str
    licence: str
    faces: tuple[Face, ...] = ()


def _face(box: tuple[float, float, float, float], lm: list[list[float]]) -> Face:
    return Face(box=box, landmarks=np.asarray(lm, np.float32), score=1.0, detector="mtcnn")


# MTCNN (facenet-pytorch 2.6.0) on the original files; coordinates on the original grids.
_PHOTOS = {
    "astronaut": _Photo(
        "astronaut",
        "scikit-image skimage.data.astronaut() (NASA; Eileen Collins)",
        "public-domain",
        (
            _face(
                (181.05, 62.16, 267.75, 172.05),
                [[205.01, 101.73], [246.76, 103.71], [224.67, 128.96], [201.72, 139.25], [245.27, 141.86]],
            ),
        ),
    ),
    "grace_hopper": _Photo(
        "grace_hopper",
        "matplotlib sample_data/grace_hopper.jpg (US Navy)",
        "public-domain",
        (
            _face(
                (174.4, 119.56, 355.65, 340.46),
                [[221.67, 192.21], [309.83, 186.13], [269.36, 239.17], [232.65, 279.65], [306.64, 275.93]],
            ),
        ),
    ),
    "coffee": _Photo("coffee", "scikit-image skimage.data.coffee() (Rachel Michetti)", "CC0-1.0"),
    "chelsea": _Photo("chelsea", "scikit-image skimage.data.chelsea() (Stefan van der Walt)", "CC0-1.0"),
}

# (real, recipe spec, seed, donor)
_FAKES = (
    ("astronaut", "self_blend", 7, None),
    ("grace_hopper", "cross_blend", 1, "astronaut"),
    ("coffee", "upsample:regional", 2, None),
)


def _load(name: str) -> np.ndarray:
    if name == "grace_hopper":
        from matplotlib import cbook
        from PIL import Image

        with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    import skimage.data

    return np.asarray(getattr(skimage.data, name)(), dtype=np.uint8)


def _prepared(name: str) -> tuple[np.ndarray, list[Face]]:
    """The photo at most MAX_SIDE px with even sides (a clean 4:2:0 grid), and its faces on that grid."""
    img = _load(name)
    h, w = img.shape[:2]
    s = min(1.0, MAX_SIDE / max(h, w))
    nw, nh = round(w * s) // 2 * 2, round(h * s) // 2 * 2
    if (nw, nh) != (w, h):
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
    sx = nw / w
    return np.ascontiguousarray(img), [f.transformed(sx, 0.0, 0.0) for f in _PHOTOS[name].faces]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_demo_assets(out: Path | str = DEMO_DIR) -> dict[str, Any]:
    """(Re)write the demo images, fakes, masks and ``MANIFEST.json`` into ``out``; returns the manifest."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files: list[dict[str, Any]] = []
    prepared = {n: _prepared(n) for n in _PHOTOS}

    def add(fname: str, data: bytes, kind: str, photo: _Photo, **extra: Any) -> None:
        (out / fname).write_bytes(data)
        arr = decode(data) if kind != "mask" else None
        h, w = arr.shape[:2] if arr is not None else prepared[photo.name][0].shape[:2]
        files.append(
            {
                "file": fname,
                "kind": kind,
                "source": photo.source,
                "licence": photo.licence,
                "sha256": _sha(data),
                "width": int(w),
                "height": int(h),
                **extra,
            }
        )

    for name, photo in _PHOTOS.items():
        img, _ = prepared[name]
        add(f"{name}.jpg", encode(img, "jpeg", QUALITY), "real", photo, quality=QUALITY)
    for name, spec, seed, donor_name in _FAKES:
        img, faces = prepared[name]
        donor = donor_faces = None
        if donor_name is not None:
            d_img, donor_faces = prepared[donor_name]
            donor = cv2.resize(d_img, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_AREA)
            sx, sy = img.shape[1] / d_img.shape[1], img.shape[0] / d_img.shape[0]
            donor_faces = [
                Face(
                    box=(f.box[0] * sx, f.box[1] * sy, f.box[2] * sx, f.box[3] * sy),
                    landmarks=f.points() * np.array([sx, sy], np.float32),
                )
                for f in donor_faces
            ]
        forgery = make_recipe(spec).apply(
            img, np.random.default_rng(seed), faces=faces, donor=donor, donor_faces=donor_faces
        )
        real_b, fake_b = encode_pair(img, forgery.fake, "jpeg", QUALITY)
        if real_b != (out / f"{name}.jpg").read_bytes():  # the same encoder, settings and pixels
            raise RuntimeError(f"the real {name}.jpg did not re-encode identically")
        stem = f"{name}_fake_{spec.split(':')[0]}"
        photo = _PHOTOS[name]
        add(f"{stem}_mask.png", mask_to_png(forgery.mask), "mask", photo, fake=f"{stem}.jpg")
        add(
            f"{stem}.jpg",
            fake_b,
            "fake",
            photo,
            real=f"{name}.jpg",
            mask=f"{stem}_mask.png",
            recipe=forgery.recipe,
            seed=seed,
            quality=QUALITY,
            donor=None if donor_name is None else f"{donor_name}.jpg",
        )
    manifest = {
        "note": "Real photographs (public domain / CC0) and fakes made from them by fakelens.forgery; "
        "each fake shares size, format and JPEG history (one pass at quality 90) with its real. "
        "Rebuild with: python -c 'from fakelens.forgery.demo import build_demo_assets; build_demo_assets()'",
        "files": sorted(files, key=lambda f: f["file"]),
    }
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def demo_manifest(folder: Path | str = DEMO_DIR) -> dict[str, Any]:
    """The demo folder's ``MANIFEST.json``."""
    return dict(json.loads((Path(folder) / "MANIFEST.json").read_text()))


def demo_files(kind: str | None = None, folder: Path | str = DEMO_DIR) -> list[Path]:
    """Paths of the demo files, optionally only one ``kind`` (``real``, ``fake`` or ``mask``)."""
    return [Path(folder) / f["file"] for f in demo_manifest(folder)["files"] if kind in (None, f["kind"])]
