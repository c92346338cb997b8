"""Where on a face a heatmap puts its mass: eyes, nose, mouth, face boundary, rest of the face, outside.

An analyst describes a face swap by region ("the evidence sits on the blending boundary along the jaw"),
so the report sums each heatmap over a partition of the image built from the five landmarks of every
detected face (:func:`fakelens.data.faces.detect_faces`, MTCNN order: left eye, right eye, nose, left and
right mouth corner).

Construction, in the face's own frame so a tilted face works (``ex``: unit vector from the left to the right
eye, ``ey``: perpendicular, pointing down the face; ``iod``: inter-ocular distance; ``emd``: distance from the
midpoint of the eyes ``E`` to the midpoint of the mouth corners ``M``; ``N``: the nose tip):

- **eyes**: two ellipses centred on the eye landmarks, semi-axes ``0.30·iod`` along ``ex`` and ``0.18·iod``
  along ``ey`` (eyeball, lids and the corners of the eye; not the brows);
- **nose**: the convex polygon through the bridge (``E + 0.25·emd·ey ± 0.10·iod·ex``), the wings
  (``N ± 0.28·iod·ex``) and below the tip (``N + 0.18·emd·ey ± 0.18·iod·ex``);
- **mouth**: an ellipse centred on ``M``, along the line between the mouth corners, semi-axes half the
  corner-to-corner distance ``+ 0.15·iod`` and ``0.28·emd``;
- **face boundary**: a band straddling the face outline (:func:`fakelens.data.faces.face_outline`, the hull
  of the landmarks extended to forehead, cheeks, jaw and chin), ``0.15·iod`` to each side of it — where a
  swapped face is blended into the target;
- **rest of face**: what is left inside the outline (forehead, cheeks, chin);
- **outside face**: everything else (hair, neck, background).

Each pixel gets exactly one label, the first that claims it in the order eyes, nose, mouth, face boundary,
rest of face, outside face; with several faces the label of any face counts (features before boundaries).
So the regions partition the image, and a heatmap's shares over the valid pixels sum to 1. Next to each
share the report shows the region's share of the valid pixels: 40 % of the mass on 3 % of the pixels is a
strong concentration, 40 % on 40 % is none. Haar faces carry landmarks guessed from the box (``estimated``);
their regions are approximate and the report says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image

from fakelens.data.faces import Detector as FaceDetector
from fakelens.data.faces import Face, detect_faces, face_outline

__all__ = [
    "REGIONS",
    "REGION_LABELS",
    "FaceRegions",
    "RegionShares",
    "face_regions",
    "region_labels",
    "region_shares",
]

REGIONS: tuple[str, ...] = ("eyes", "nose", "mouth", "boundary", "face", "outside")
"""Region keys in label order (label ``k`` is ``REGIONS[k]``); also the claim order."""

REGION_LABELS: dict[str, str] = {
    "eyes": "eyes",
    "nose": "nose",
    "mouth": "mouth",
    "boundary": "face boundary",
    "face": "rest of face",
    "outside": "outside the face",
}
"""Region names in words, for tables and sentences."""

REGION_COLOURS: dict[str, tuple[int, int, int]] = {
    "eyes": (46, 134, 222),
    "nose": (241, 196, 15),
    "mouth": (231, 76, 60),
    "boundary": (155, 89, 182),
    "face": (46, 204, 113),
    "outside": (127, 140, 141),
}

_OUTSIDE = REGIONS.index("outside")


def _frame(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, float]:
    """Eye midpoint E, mouth midpoint M, unit axes ex (eye to eye) and ey (down the face), iod and emd."""
    e = (p[0] + p[1]) / 2.0
    m = (p[3] + p[4]) / 2.0
    axis = p[1] - p[0]
    iod = float(np.linalg.norm(axis))
    ex = axis / iod if iod > 1e-6 else np.array([1.0, 0.0], dtype=np.float32)
    ey = np.array([-ex[1], ex[0]], dtype=np.float32)
    if float(np.dot(m - e, ey)) < 0:
        ey = -ey
    emd = float(np.linalg.norm(m - e))
    return e, m, ex.astype(np.float32), ey, max(iod, 1.0), max(emd, 1.0)


def _ellipse(c: np.ndarray, u: np.ndarray, v: np.ndarray, a: float, b: float, n: int = 36) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False, dtype=np.float32)
    return (c[None] + np.cos(t)[:, None] * a * u[None] + np.sin(t)[:, None] * b * v[None]).astype(np.float32)


def face_polygons(face: Face) -> dict[str, list[np.ndarray]]:
    """The polygons (N, 2) in pixels that define one face's regions (see the module docstring):
    ``eyes`` (two), ``nose``, ``mouth`` and ``outline`` (the face outline the boundary band follows)."""
    p = face.points()
    e, m, ex, ey, iod, emd = _frame(p)
    eyes = [_ellipse(p[k], ex, ey, 0.30 * iod, 0.18 * iod) for k in (0, 1)]
    n = p[2]
    nose = np.stack(
        [
            e + 0.25 * emd * ey - 0.10 * iod * ex,
            e + 0.25 * emd * ey + 0.10 * iod * ex,
            n + 0.28 * iod * ex,
            n + 0.18 * emd * ey + 0.18 * iod * ex,
            n + 0.18 * emd * ey - 0.18 * iod * ex,
            n - 0.28 * iod * ex,
        ]
    ).astype(np.float32)
    corners = p[4] - p[3]
    width = float(np.linalg.norm(corners))
    mx = corners / width if width > 1e-6 else ex
    my = np.array([-mx[1], mx[0]], dtype=np.float32)
    mouth = _ellipse(m, mx.astype(np.float32), my, 0.5 * width + 0.15 * iod, 0.28 * emd)
    return {"eyes": eyes, "nose": [nose], "mouth": [mouth], "outline": [face_outline(face, "hull")]}


def _fill(shape: tuple[int, int], polys: Sequence[np.ndarray]) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(q * 16).astype(np.int32) for q in polys], 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def _band(shape: tuple[int, int], poly: np.ndarray, half_width: float) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    thickness = max(1, round(2.0 * half_width))
    pts = np.round(poly * 16).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(mask, [pts], True, 1, thickness=thickness, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def region_labels(faces: Sequence[Face], shape: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` uint8 labels, ``k`` meaning ``REGIONS[k]``: a partition of the image (see module docs)."""
    h, w = shape
    claims: dict[str, np.ndarray] = {k: np.zeros((h, w), bool) for k in REGIONS[:-1]}
    for face in faces:
        polys = face_polygons(face)
        _, _, _, _, iod, _ = _frame(face.points())
        claims["eyes"] |= _fill((h, w), polys["eyes"])
        claims["nose"] |= _fill((h, w), polys["nose"])
        claims["mouth"] |= _fill((h, w), polys["mouth"])
        claims["boundary"] |= _band((h, w), polys["outline"][0], 0.15 * iod)
        claims["face"] |= _fill((h, w), polys["outline"])
    labels = np.full((h, w), _OUTSIDE, np.uint8)
    for k in reversed(range(len(REGIONS) - 1)):  # later claims first, so earlier ones overwrite them
        labels[claims[REGIONS[k]]] = k
    return labels


@dataclass(frozen=True)
class RegionShares:
    """One heatmap's mass per region (``mass``, sums to 1 over the valid pixels) next to each region's share
    of the valid pixels (``area``, sums to 1). ``mass`` is ``None`` for a map with no mass at all."""

    mass: dict[str, float] | None
    area: dict[str, float]

    def lift(self, region: str) -> float | None:
        """Mass share over area share: 1 = no concentration, 5 = five times the mass its area would get."""
        if self.mass is None or self.area[region] <= 0:
            return None
        return self.mass[region] / self.area[region]

    def top(self) -> str | None:
        """The region with the largest mass share."""
        if self.mass is None:
            return None
        return max(REGIONS, key=lambda r: self.mass[r] if self.mass else 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mass": None if self.mass is None else {k: round(v, 4) for k, v in self.mass.items()},
            "area": {k: round(v, 4) for k, v in self.area.items()},
        }


def region_shares(heatmap: np.ndarray, valid: np.ndarray | None, labels: np.ndarray) -> RegionShares:
    """Shares of a non-negative ``(H, W)`` heatmap's mass and of the valid pixels per region.

    Pixels outside ``valid`` (not seen by the model) are left out of both; labels must partition the image
    (:func:`region_labels`), so each set of shares sums to 1.
    """
    if heatmap.shape != labels.shape:
        raise ValueError(f"heatmap {heatmap.shape} and region labels {labels.shape} differ in size")
    v = np.ones(labels.shape, bool) if valid is None else np.asarray(valid, bool)
    m = np.clip(np.nan_to_num(np.asarray(heatmap, np.float64)), 0.0, None) * v
    lab = labels.ravel().astype(np.intp)
    mass = np.bincount(lab, weights=m.ravel(), minlength=len(REGIONS))[: len(REGIONS)]
    count = np.bincount(lab, weights=v.ravel().astype(np.float64), minlength=len(REGIONS))[: len(REGIONS)]
    total, n = float(mass.sum()), float(count.sum())
    area = {r: float(c / n) if n > 0 else 0.0 for r, c in zip(REGIONS, count, strict=True)}
    if total <= 0:
        return RegionShares(None, area)
    return RegionShares({r: float(x / total) for r, x in zip(REGIONS, mass, strict=True)}, area)


@dataclass(frozen=True)
class FaceRegions:
    """The faces found in one image and the region labels built from them."""

    faces: tuple[Face, ...]
    labels: np.ndarray

    @property
    def detector(self) -> str:
        return self.faces[0].detector if self.faces else "none"

    @property
    def estimated(self) -> bool:
        """True when any face's landmarks were guessed from its box (Haar): the regions are approximate."""
        return any(f.estimated for f in self.faces)

    def shares(self, heatmap: np.ndarray, valid: np.ndarray | None = None) -> RegionShares:
        return region_shares(heatmap, valid, self.labels)

    def picture(self, image: Image.Image | np.ndarray, alpha: float = 0.45) -> np.ndarray:
        """RGB uint8 image with the regions tinted in :data:`REGION_COLOURS` (outside left as is)."""
        img = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image).astype(np.float32)
        out = img.copy()
        for k, r in enumerate(REGIONS):
            if r == "outside":
                continue
            sel = self.labels == k
            out[sel] = (1 - alpha) * img[sel] + alpha * np.asarray(REGION_COLOURS[r], np.float32)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)

    def to_dict(self) -> dict[str, Any]:
        return {
            "faces": [f.to_dict() for f in self.faces],
            "detector": self.detector,
            "estimated": self.estimated,
        }


def face_regions(image: Image.Image | np.ndarray, *, detector: FaceDetector = "auto") -> FaceRegions | None:
    """Detect faces in an RGB image and build their region labels; ``None`` when no face is found.

    Raises :class:`~fakelens.errors.ConfigError` when no face detector is installed.
    """
    arr = np.ascontiguousarray(np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image))
    faces = detect_faces(arr, detector)
    if not faces:
        return None
    return FaceRegions(tuple(faces), region_labels(faces, arr.shape[:2]))
