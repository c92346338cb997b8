"""Faces: masks from five landmarks, serialisation, detectors (Haar always, MTCNN when installed)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from fakelens.data.faces import (
    Face,
    available_detectors,
    detect_faces,
    face_mask,
    face_mesh,
    face_outline,
    template_landmarks,
)
from fakelens.errors import ConfigError

ASTRONAUT_BOX = (181.0, 62.0, 268.0, 172.0)  # MTCNN's box at 512 px


def astronaut_face() -> Face:
    return Face(box=ASTRONAUT_BOX, landmarks=template_landmarks(ASTRONAUT_BOX), detector="test")


@pytest.mark.parametrize("kind", ["hull", "ellipse"])
def test_face_mask_covers_landmarks_and_stays_near_the_box(kind: str) -> None:
    face = astronaut_face()
    m = face_mask(face, (512, 512), kind)  # type: ignore[arg-type]
    assert m.dtype == np.float32 and m.min() >= 0 and m.max() == 1.0
    for x, y in face.points():
        assert m[int(y), int(x)] > 0.5
    ys, xs = np.nonzero(m)
    x0, y0, x1, y1 = ASTRONAUT_BOX
    assert xs.min() > x0 - 40 and xs.max() < x1 + 40 and ys.min() > y0 - 60 and ys.max() < y1 + 40
    area = float(m.sum()) / ((x1 - x0) * (y1 - y0))
    assert 0.4 < area < 1.6
    soft = face_mask(face, (512, 512), kind, blur=0.05)  # type: ignore[arg-type]
    assert soft.max() == pytest.approx(1.0) and (soft > 0).sum() > (m > 0).sum()


def test_tilted_face_mask_follows_the_eyes() -> None:
    face = astronaut_face()
    c = np.array(face.center, np.float32)
    rot = cv2.getRotationMatrix2D((float(c[0]), float(c[1])), 30, 1.0)
    pts = face.points() @ rot[:, :2].T + rot[:, 2]
    tilted = Face(box=face.box, landmarks=pts.astype(np.float32))
    a, b = face_outline(face), face_outline(tilted)
    assert a.shape[1] == b.shape[1] == 2
    with pytest.raises(ConfigError):
        face_outline(face, "square")  # type: ignore[arg-type]


def test_face_roundtrip_and_transform() -> None:
    f = astronaut_face()
    g = Face.from_dict(f.to_dict())
    assert np.allclose(g.points(), f.points(), atol=0.01) and g.box == pytest.approx(f.box, abs=0.01)
    h = f.transformed(0.5, 10, -5)
    assert h.box[0] == pytest.approx(f.box[0] * 0.5 + 10)
    assert np.allclose(h.points(), f.points() * 0.5 + [10, -5])
    assert Face(box=(0, 0, 10, 10)).points().shape == (5, 2)
    assert np.allclose(Face(box=(0, 0, 10, 10)).points(), template_landmarks((0, 0, 10, 10)))
    assert f.inside(512, 512) and not f.transformed(1, 400, 0).inside(512, 512)


def test_haar_finds_the_astronaut() -> None:
    if "haar" not in available_detectors():
        pytest.skip("no Haar cascade in this OpenCV")
    faces = detect_faces(skimage.data.astronaut(), "haar")
    assert faces and all(f.estimated for f in faces)
    best = max(faces, key=lambda f: f.size)
    cx, cy = best.center
    x0, y0, x1, y1 = ASTRONAUT_BOX
    assert x0 < cx < x1 and y0 < cy < y1


def test_mtcnn_finds_the_astronaut_with_landmarks() -> None:
    if "mtcnn" not in available_detectors():
        pytest.skip("facenet-pytorch is not installed (pip install --no-deps facenet-pytorch)")
    faces = detect_faces(skimage.data.astronaut(), "mtcnn")
    assert len(faces) == 1 and faces[0].landmarks is not None and not faces[0].estimated
    f = faces[0]
    assert f.box == pytest.approx(ASTRONAUT_BOX, abs=8)
    le, re_ = f.points()[0], f.points()[1]
    assert le[0] < re_[0] and abs(le[1] - re_[1]) < 10  # eyes level, left before right


@pytest.mark.parametrize("detector", ["auto", "haar", "mtcnn"])
@pytest.mark.parametrize("shape", [(16, 16, 3), (1, 300, 3), (300, 11, 3)])
def test_no_face_fits_in_a_tiny_image(detector: str, shape: tuple[int, int, int]) -> None:
    if detector != "auto" and detector not in available_detectors():
        pytest.skip(f"{detector} is not available here")
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    assert detect_faces(image, detector) == []  # MTCNN used to crash: no pyramid scale fits


def test_detect_faces_rejects_bad_input() -> None:
    with pytest.raises(ConfigError):
        detect_faces(np.zeros((10, 10), np.uint8))


def test_mesh_outline_and_optional_mediapipe() -> None:
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    mesh = np.stack([220 + 40 * np.cos(t), 120 + 55 * np.sin(t)], axis=1).astype(np.float32)
    face = Face(box=ASTRONAUT_BOX, landmarks=template_landmarks(ASTRONAUT_BOX), mesh=mesh)
    m = face_mask(face, (512, 512))
    assert m[120, 220] == 1.0 and m[120, 300] == 0.0 and abs(m.sum() - np.pi * 40 * 55) < 300
    assert Face.from_dict(face.to_dict()).mesh.shape == (40, 2)  # type: ignore[union-attr]
    try:
        import mediapipe  # noqa: F401
    except Exception:
        with pytest.raises(ConfigError, match=r"mediapipe==0\.10\.21"):
            face_mesh(skimage.data.astronaut())
        return
    meshes = face_mesh(skimage.data.astronaut())
    assert len(meshes) == 1 and meshes[0].shape[1] == 2
