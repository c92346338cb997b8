"""Facial regions on synthetic geometry: a partition of the image; mass on a feature lands in its region."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fakelens.data.faces import Face, face_outline
from fakelens.report.regions import REGIONS, FaceRegions, region_labels, region_shares

from .conftest import H, W, blob, synthetic_face


def _rotated(face: Face, degrees: float) -> Face:
    p = face.points()
    c = p.mean(0)
    t = math.radians(degrees)
    r = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]], dtype=np.float32)
    return Face(box=face.box, landmarks=(p - c) @ r.T + c, score=face.score)


@pytest.fixture(params=[0.0, 25.0], ids=["upright", "tilted"])
def face(request: pytest.FixtureRequest) -> Face:
    return _rotated(synthetic_face(), request.param)


def test_labels_partition_the_image_and_every_region_is_present(face: Face) -> None:
    labels = region_labels([face], (H, W))
    assert labels.shape == (H, W) and labels.dtype == np.uint8
    assert set(np.unique(labels)) == set(range(len(REGIONS)))  # every region non-empty, nothing else


@pytest.mark.parametrize(
    ("feature", "region"),
    [(0, "eyes"), (1, "eyes"), (2, "nose"), ("mouth", "mouth")],
)
def test_mass_on_a_feature_lands_in_its_region(face: Face, feature: int | str, region: str) -> None:
    p = face.points()
    cx, cy = p[3:5].mean(0) if feature == "mouth" else p[int(feature)]
    shares = region_shares(blob(cx, cy, 2.0), None, region_labels([face], (H, W)))
    assert shares.mass is not None
    assert shares.mass[region] > 0.9, shares.mass
    assert shares.top() == region


def test_map_on_the_outline_is_boundary_and_corner_is_outside(face: Face) -> None:
    import cv2

    labels = region_labels([face], (H, W))
    line = np.zeros((H, W), np.uint8)
    cv2.polylines(line, [np.round(face_outline(face)).astype(np.int32).reshape(-1, 1, 2)], True, 1, 1)
    s = region_shares(line.astype(np.float32), None, labels)
    assert s.mass is not None and s.mass["boundary"] > 0.95
    corner = np.zeros((H, W), np.float32)
    corner[:10, :10] = 1
    s = region_shares(corner, None, labels)
    assert s.mass is not None and s.mass["outside"] == pytest.approx(1.0)


def test_map_filling_the_mouth_region_has_mouth_share_one() -> None:
    labels = region_labels([synthetic_face()], (H, W))
    mouth = (labels == REGIONS.index("mouth")).astype(np.float32)
    s = region_shares(mouth, None, labels)
    assert s.mass is not None and s.mass["mouth"] == pytest.approx(1.0)
    assert s.lift("mouth") == pytest.approx(1.0 / s.area["mouth"])


@pytest.mark.parametrize("seed", range(4))
def test_shares_sum_to_one_over_valid_pixels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    faces = [synthetic_face(60, 70, 30), synthetic_face(150, 80, 36)]  # two faces
    labels = region_labels(faces, (H, W))
    m = rng.random((H, W)).astype(np.float32)
    valid = rng.random((H, W)) > 0.3
    s = region_shares(m, valid, labels)
    assert s.mass is not None
    assert sum(s.mass.values()) == pytest.approx(1.0)
    assert sum(s.area.values()) == pytest.approx(1.0)
    # pixels outside `valid` do not count: mass there changes nothing
    m2 = m.copy()
    m2[~valid] = 100.0
    assert region_shares(m2, valid, labels).mass == pytest.approx(s.mass)


def test_empty_map_has_no_mass_shares_and_shape_mismatch_raises() -> None:
    labels = region_labels([synthetic_face()], (H, W))
    s = region_shares(np.zeros((H, W), np.float32), None, labels)
    assert s.mass is None and s.top() is None and sum(s.area.values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="differ in size"):
        region_shares(np.zeros((10, 10), np.float32), None, labels)


def test_face_regions_picture_and_dict() -> None:
    face = synthetic_face()
    fr = FaceRegions((face,), region_labels([face], (H, W)))
    pic = fr.picture(np.full((H, W, 3), 128, np.uint8))
    assert pic.shape == (H, W, 3) and pic.dtype == np.uint8
    assert (pic[0, 0] == 128).all() and not (
        pic[int(face.points()[3, 1]), int(face.points()[3:5, 0].mean())] == 128
    ).all()
    d = fr.to_dict()
    assert d["detector"] == "mtcnn" and len(d["faces"]) == 1 and d["estimated"] is False
