"""Faces in real photographs: detection (MTCNN, Haar fallback, optional MediaPipe mesh) and face masks.

A :class:`Face` is a box, five landmarks in MTCNN's order (left eye, right eye, nose, left and right mouth
corner, in pixel ``(x, y)``) and, optionally, a dense mesh. Forgery recipes turn it into a soft mask with
:func:`face_mask`: the convex hull of the landmarks extended to forehead, cheeks and chin, or an ellipse
fitted to them. Heavy detectors are imported lazily, so importing this module costs nothing.

Detectors, best first:

- ``mtcnn``: ``facenet_pytorch.MTCNN`` (Zhang et al., 2016), weights inside the ``facenet-pytorch`` wheel.
  That package pins an old torch, so install it with ``pip install --no-deps facenet-pytorch`` (extra
  ``faces``).
- ``haar``: OpenCV's frontal-face Haar cascade from ``cv2.data`` (present in ``opencv-python-headless<5``);
  many false positives, and its landmarks are a mean-face template placed in the box (``estimated``).
- ``mediapipe`` (468/478-point mesh) is optional, only with ``mediapipe==0.10.21`` and ``numpy<2``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import cv2
import numpy as np

from fakelens.errors import ConfigError

__all__ = [
    "FACE_RULES",
    "Detector",
    "Face",
    "available_detectors",
    "detect_faces",
    "face_mask",
    "face_mesh",
    "with_mesh",
]

Detector = Literal["auto", "mtcnn", "haar"]
FACE_RULES = "3"  # bump when detect_faces' filtering changes: pools re-detect their faces

# Five-point template (ArcFace 112×112 alignment) used to place landmarks in a Haar box.
_TEMPLATE_112 = (
    np.array(
        [[38.29, 51.70], [73.53, 51.50], [56.03, 71.74], [41.55, 92.37], [70.73, 92.20]], dtype=np.float32
    )
    / 112.0
)
# MTCNN boxes are a little tighter than ArcFace crops: map the template into the box with this margin.
_TEMPLATE_BOX = np.array([0.02, 0.02, 0.98, 1.02], dtype=np.float32)


@dataclass(frozen=True)
class Face:
    """One detected face in pixel coordinates of the image it was found in.

    ``box`` is ``(x0, y0, x1, y1)``; ``landmarks`` is a (5, 2) float array in MTCNN's order, or ``None``;
    ``mesh`` an optional (N, 2) dense mesh; ``estimated`` is true when the landmarks were
    guessed from the box.
    """

    box: tuple[float, float, float, float]
    landmarks: np.ndarray | None = None
    score: float = 1.0
    detector: str = "mtcnn"
    estimated: bool = False
    mesh: np.ndarray | None = field(default=None, compare=False)

    @property
    def size(self) -> float:
        """The longer side of the box in pixels."""
        x0, y0, x1, y1 = self.box
        return float(max(x1 - x0, y1 - y0))

    @property
    def center(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2.0, (y0 + y1) / 2.0

    def points(self) -> np.ndarray:
        """The landmarks, or the template placed in the box when there are none: always (5, 2) float32."""
        if self.landmarks is not None:
            return np.asarray(self.landmarks, dtype=np.float32).reshape(5, 2)
        return template_landmarks(self.box)

    def transformed(self, scale: float, dx: float, dy: float) -> Face:
        """The face after ``p -> p * scale + (dx, dy)`` (a crop followed by a resize)."""
        x0, y0, x1, y1 = self.box
        box = (x0 * scale + dx, y0 * scale + dy, x1 * scale + dx, y1 * scale + dy)
        off = np.array([dx, dy], dtype=np.float32)
        lm = None if self.landmarks is None else np.asarray(self.landmarks, np.float32) * scale + off
        mesh = None if self.mesh is None else np.asarray(self.mesh, np.float32) * scale + off
        return replace(self, box=box, landmarks=lm, mesh=mesh)

    def inside(self, width: int, height: int) -> bool:
        """Whether every landmark lies inside a ``width`` × ``height`` image."""
        p = self.points()
        return bool(
            np.all(p[:, 0] >= 0)
            and np.all(p[:, 1] >= 0)
            and np.all(p[:, 0] < width)
            and np.all(p[:, 1] < height)
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "box": [round(float(v), 2) for v in self.box],
            "landmarks": None
            if self.landmarks is None
            else [[round(float(x), 2), round(float(y), 2)] for x, y in np.asarray(self.landmarks)],
            "score": round(float(self.score), 4),
            "detector": self.detector,
            "estimated": self.estimated,
        }
        if self.mesh is not None:
            d["mesh"] = [[round(float(x), 1), round(float(y), 1)] for x, y in np.asarray(self.mesh)]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Face:
        box = tuple(float(v) for v in d["box"])
        if len(box) != 4:
            raise ConfigError(f"a face box needs 4 numbers, got {d['box']!r}")
        lm = d.get("landmarks")
        return cls(
            box=(box[0], box[1], box[2], box[3]),
            landmarks=None if lm is None else np.asarray(lm, dtype=np.float32).reshape(5, 2),
            score=float(d.get("score", 1.0)),
            detector=str(d.get("detector", "unknown")),
            estimated=bool(d.get("estimated", False)),
            mesh=None if d.get("mesh") is None else np.asarray(d["mesh"], dtype=np.float32).reshape(-1, 2),
        )


def template_landmarks(box: Sequence[float]) -> np.ndarray:
    """Mean-face five landmarks placed in ``box``: what a box-only detector can say about a face."""
    x0, y0, x1, y1 = (float(v) for v in box)
    bx0, by0, bx1, by1 = _TEMPLATE_BOX
    u = bx0 + _TEMPLATE_112[:, 0] * (bx1 - bx0)
    v = by0 + _TEMPLATE_112[:, 1] * (by1 - by0)
    return np.stack([x0 + u * (x1 - x0), y0 + v * (y1 - y0)], axis=1).astype(np.float32)


# ----------------------------------------------------------------------------------------------- masks
def _face_frame(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """Eye centre, mouth centre, unit eye axis, inter-ocular and eye-to-mouth distances."""
    eyes = (p[0] + p[1]) / 2.0
    mouth = (p[3] + p[4]) / 2.0
    axis = p[1] - p[0]
    iod = float(np.linalg.norm(axis))
    ex = axis / iod if iod > 1e-6 else np.array([1.0, 0.0], dtype=np.float32)
    emd = float(np.linalg.norm(mouth - eyes))
    return eyes, mouth, ex.astype(np.float32), max(iod, 1.0), max(emd, 1.0)


def face_outline(face: Face, kind: Literal["hull", "ellipse"] = "hull") -> np.ndarray:
    """Polygon (N, 2) around the face from its five landmarks (or its mesh, when there is one).

    ``hull``: landmarks plus points extrapolated to the forehead (above the eyes), the cheeks (outside the
    eyes and mouth corners) and the chin, in the face's own frame so tilted faces work. ``ellipse``: an
    ellipse centred between eyes and mouth, axes from the inter-ocular and eye-to-mouth distances, rotated
    with the eyes.
    """
    if face.mesh is not None and kind == "hull":
        pts = np.asarray(face.mesh, np.float32)
        return cv2.convexHull(pts.reshape(-1, 1, 2)).reshape(-1, 2)
    p = face.points()
    eyes, mouth, ex, iod, emd = _face_frame(p)
    ey = np.array([-ex[1], ex[0]], dtype=np.float32)  # points down the face (image y grows downwards)
    if float(np.dot(mouth - eyes, ey)) < 0:
        ey = -ey
    if kind == "ellipse":
        c = eyes + ey * (0.30 * emd)
        a, b = 1.05 * iod, 1.55 * emd
        t = np.linspace(0, 2 * math.pi, 48, endpoint=False, dtype=np.float32)
        pts = c[None] + np.cos(t)[:, None] * a * ex[None] + np.sin(t)[:, None] * b * ey[None]
        return pts.astype(np.float32)
    if kind != "hull":
        raise ConfigError(f"unknown face mask kind {kind!r} (known: hull, ellipse)")
    extra = [
        p[0] - ey * 0.75 * emd - ex * 0.25 * iod,  # forehead, above the eyes
        p[1] - ey * 0.75 * emd + ex * 0.25 * iod,
        eyes - ey * 0.95 * emd,
        p[0] - ex * 0.45 * iod + ey * 0.15 * emd,  # cheeks
        p[1] + ex * 0.45 * iod + ey * 0.15 * emd,
        p[3] - ex * 0.25 * iod + ey * 0.25 * emd,  # jaw
        p[4] + ex * 0.25 * iod + ey * 0.25 * emd,
        mouth + ey * 0.65 * emd,  # chin
    ]
    pts = np.concatenate([p, np.stack(extra)], axis=0).astype(np.float32)
    return cv2.convexHull(pts.reshape(-1, 1, 2)).reshape(-1, 2)


def face_mask(
    face: Face, shape: tuple[int, int], kind: Literal["hull", "ellipse"] = "hull", blur: float = 0.0
) -> np.ndarray:
    """Float32 (H, W) mask in [0, 1] of a face: 1 inside :func:`face_outline`, optionally Gaussian-softened
    with ``blur`` × the face size as sigma."""
    h, w = shape
    poly = face_outline(face, kind)
    m = np.zeros((h, w), np.uint8)
    cv2.fillPoly(m, [np.round(poly * 16).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=4)
    out = m.astype(np.float32) / 255.0
    if blur > 0:
        sigma = max(0.5, blur * face.size)
        out = np.asarray(cv2.GaussianBlur(out, (0, 0), sigma), dtype=np.float32)
        peak = float(out.max())
        if peak > 0:
            out = np.clip(out / peak, 0.0, 1.0)
    return out


# ------------------------------------------------------------------------------------------- detection
def available_detectors() -> list[str]:
    """Detectors usable here, best first."""
    names = []
    try:
        import facenet_pytorch  # noqa: F401

        names.append("mtcnn")
    except Exception:  # an old torch pin or missing package: not fatal
        pass
    if _haar_path() is not None:
        names.append("haar")
    return names


def _haar_path() -> str | None:
    import os

    data = getattr(cv2, "data", None)
    if data is None:
        return None
    path = os.path.join(data.haarcascades, "haarcascade_frontalface_default.xml")
    return path if os.path.exists(path) else None


@functools.lru_cache(maxsize=2)
def _mtcnn(min_face_size: int) -> Any:
    from facenet_pytorch import MTCNN

    return MTCNN(keep_all=True, device="cpu", min_face_size=min_face_size)


@functools.lru_cache(maxsize=1)
def _haar() -> Any:
    path = _haar_path()
    if path is None:
        raise ConfigError("no Haar cascade in cv2.data (opencv-python-headless>=5 dropped them); install <5")
    return cv2.CascadeClassifier(path)


def detect_faces(
    image: np.ndarray,
    detector: Detector = "auto",
    *,
    min_score: float = 0.95,
    min_score_group: float = 0.75,
    min_rel_size: float = 0.025,
    max_side: int = 2048,
) -> list[Face]:
    """Faces in an RGB uint8 image, sorted left to right.

    A face is kept when it scores at least ``min_score``, or at least ``min_score_group`` while being at least
    0.6× as large as a confident face in the same photo (profiles in group photos). On the pool, MTCNN's false
    positives score 0.83–0.93 and are small next to the real faces, while its real faces in group photos at
    0.78–0.81 are profiles as large as their neighbours. Faces smaller than ``min_rel_size`` × the short side
    are dropped, and so are faces under 20 px (a 12 px "face" in a squirrel's fur scored 0.995). Images are
    downscaled to ``max_side`` for speed; coordinates are on the original grid.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ConfigError(f"detect_faces needs an RGB uint8 image, got {image.dtype} {image.shape}")
    names = available_detectors()
    if detector == "auto":
        if not names:
            raise ConfigError("no face detector: pip install --no-deps facenet-pytorch, or opencv<5")
        detector = "mtcnn" if "mtcnn" in names else "haar"
    elif detector not in names:
        raise ConfigError(f"face detector {detector!r} is not available here (available: {names})")
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = (
        image
        if scale == 1.0
        else cv2.resize(
            image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
        )
    )
    min_px = max(20.0 * scale, min_rel_size * min(small.shape[:2]))
    if min(small.shape[:2]) < max(12.0, min_px):
        return []  # no face fits (and MTCNN fails on an image smaller than its smallest face)
    faces = _detect_mtcnn(small, min_px) if detector == "mtcnn" else _detect_haar(small, min_px)
    faces = [f for f in faces if f.size >= min_px and f.score >= min(min_score, min_score_group)]
    confident = max((f.size for f in faces if f.score >= min_score), default=0.0)
    kept = [f for f in faces if f.score >= min_score or (confident > 0 and f.size >= 0.6 * confident)]
    out = [f.transformed(1.0 / scale, 0.0, 0.0) for f in kept]
    return sorted(out, key=lambda f: f.box[0])


def _detect_mtcnn(image: np.ndarray, min_px: float) -> list[Face]:
    import torch
    from PIL import Image

    model = _mtcnn(max(12, int(min_px)))
    with torch.inference_mode():
        boxes, probs, points = model.detect(Image.fromarray(image), landmarks=True)
    if boxes is None:
        return []
    # facenet-pytorch builds object arrays under numpy 2: convert through lists.
    b = np.array([np.asarray(x, dtype=np.float64).tolist() for x in boxes], dtype=np.float32).reshape(-1, 4)
    p = np.array([float(x) for x in probs], dtype=np.float32)
    lm = np.array([np.asarray(x, dtype=np.float64).tolist() for x in points], dtype=np.float32)
    return [
        Face(
            box=(float(bb[0]), float(bb[1]), float(bb[2]), float(bb[3])),
            landmarks=ll.reshape(5, 2),
            score=float(pp),
            detector="mtcnn",
        )
        for bb, pp, ll in zip(b, p, lm, strict=True)
    ]


def _detect_haar(image: np.ndarray, min_px: float) -> list[Face]:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    rects = _haar().detectMultiScale(
        grey, scaleFactor=1.1, minNeighbors=6, minSize=(int(min_px), int(min_px))
    )
    faces = []
    for x, y, w, h in np.asarray(rects).reshape(-1, 4):
        box = (float(x), float(y), float(x + w), float(y + h))
        faces.append(
            Face(box=box, landmarks=template_landmarks(box), score=1.0, detector="haar", estimated=True)
        )
    return faces


def face_mesh(image: np.ndarray, max_faces: int = 8) -> list[np.ndarray]:
    """Dense landmarks (N, 2) in pixels per face from MediaPipe FaceMesh (optional extra).

    Needs ``mediapipe==0.10.21`` (the last wheel with the models inside; it pins ``numpy<2``). Raises
    :class:`ConfigError` with the install hint when it cannot be imported.
    """
    try:
        import mediapipe as mp
    except Exception as exc:  # ImportError, or a numpy ABI error under numpy 2
        raise ConfigError(
            f"MediaPipe face mesh is unavailable ({type(exc).__name__}); "
            "it needs mediapipe==0.10.21 and numpy<2"
        ) from None
    h, w = image.shape[:2]
    with mp.solutions.face_mesh.FaceMesh(
        static_image_mode=True, max_num_faces=max_faces, refine_landmarks=True
    ) as fm:
        res = fm.process(np.ascontiguousarray(image))
    out = []
    for lms in res.multi_face_landmarks or []:
        out.append(np.array([[p.x * w, p.y * h] for p in lms.landmark], dtype=np.float32))
    return out


def with_mesh(image: np.ndarray, faces: Sequence[Face]) -> list[Face]:
    """The faces with a MediaPipe mesh attached where one is found (matched by the nearest mesh centre inside
    the box); :func:`face_mask` then uses the mesh's hull. Needs the optional ``mediapipe==0.10.21``."""
    meshes = face_mesh(image, max_faces=max(1, len(faces)))
    out = []
    for f in faces:
        x0, y0, x1, y1 = f.box
        best, dist = None, float("inf")
        for m in meshes:
            cx, cy = (float(v) for v in m.mean(axis=0))
            d = math.hypot(cx - (x0 + x1) / 2, cy - (y0 + y1) / 2)
            if x0 <= cx <= x1 and y0 <= cy <= y1 and d < dist:
                best, dist = m, d
        out.append(f if best is None else replace(f, mesh=best))
    return out
