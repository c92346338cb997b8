"""Per-face verdicts: the window around each face, and the ensemble's verdict on exactly that window."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fakelens.data.faces import Face, template_landmarks
from fakelens.face_verdicts import FaceVerdict, face_verdicts, face_window
from fakelens.models import Ensemble, create_model
from fakelens.models.calibration import Calibration


def face(x0: float, y0: float, x1: float, y1: float) -> Face:
    box = (x0, y0, x1, y1)
    return Face(box=box, landmarks=template_landmarks(box), detector="test")


@pytest.mark.parametrize(
    ("box", "size", "side", "window"),
    [
        ((100, 100, 140, 150), (400, 300), 64, (70, 75, 170, 175)),  # 2 × the face's longer side (50)
        ((100, 100, 110, 110), (400, 300), 64, (73, 73, 137, 137)),  # the input side
        ((0, 0, 20, 30), (400, 300), 64, (0, 0, 64, 64)),  # shifted inside at the corner
        ((380, 280, 400, 300), (400, 300), 64, (336, 236, 400, 300)),
        ((10, 5, 30, 25), (50, 40), 64, (0, 0, 50, 40)),  # the image is smaller: all of it
        ((10, 40, 60, 90), (400, 100), 64, (0, 0, 100, 100)),  # cut to the short side only
    ],
)
def test_face_window(
    box: tuple[float, float, float, float],
    size: tuple[int, int],
    side: int,
    window: tuple[int, int, int, int],
) -> None:
    assert face_window(box, *size, side) == window


def test_face_verdicts_are_the_ensemble_on_each_window() -> None:
    cnn, vit = create_model("tiny-cnn", seed=1), create_model("tiny-vit", seed=2)
    ens = Ensemble([cnn, vit], calibrations=[Calibration(0.4, 2.0), None], threshold=0.45)
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (120, 200, 3), dtype=np.uint8))
    faces = [face(20, 30, 50, 70), face(150, 40, 170, 60)]
    verdicts = face_verdicts(ens, image, faces)
    expected = ens.predict([image.crop(v.window) for v in verdicts])
    assert [v.window for v in verdicts] == [face_window(f.box, 200, 120, 64) for f in faces]
    for v, f, e in zip(verdicts, faces, expected, strict=True):
        assert v.box == f.box and v.verdict == e.verdict
        assert v.fake_probability == pytest.approx(e.fake_probability, abs=1e-6)
        (p_cnn, d_cnn), (p_vit, d_vit) = v.members.values()
        assert d_cnn == ("fake" if p_cnn >= 0.5 else "real")  # calibrated: its own operating point
        assert d_vit == ("fake" if p_vit >= 0.45 else "real")  # uncalibrated: the ensemble's threshold
        d = v.to_dict()
        assert d["models"]["tiny-cnn"] == {"score": p_cnn, "verdict": d_cnn} and d["window"] == list(v.window)
        assert FaceVerdict.from_dict(d) == v  # as the service stores and reads it back
    assert face_verdicts(ens, image, []) == []


@pytest.mark.parametrize(
    ("method", "mapped"), [("gradcam", {"tiny-cnn", "tiny-vit"}), ("rollout", {"tiny-vit"})]
)
def test_face_maps_cover_each_window(method: str, mapped: set[str]) -> None:
    ens = Ensemble([create_model("tiny-cnn", seed=1), create_model("tiny-vit", seed=2)])
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (150, 260, 3), dtype=np.uint8))
    faces = [face(20, 30, 50, 70), face(150, 10, 250, 110)]  # the second one's window is 200 px
    plain = face_verdicts(ens, image, faces)
    with_maps = face_verdicts(ens, image, faces, method=method)
    # maps change nothing: their forward is the score (the same tiles, the same logits, taken once)
    assert [v.fake_probability for v in with_maps] == pytest.approx(
        [v.fake_probability for v in plain], abs=1e-6
    )
    assert [v.verdict for v in with_maps] == [v.verdict for v in plain]
    assert all(not v.heatmaps for v in plain)
    for v in with_maps:
        left, top, right, bottom = v.window
        assert set(v.heatmaps) == mapped  # a CNN has no attention to roll out: left out
        for heat, valid in v.heatmaps.values():
            assert heat.shape == valid.shape == (bottom - top, right - left)
            assert valid.all() and heat.min() >= 0.0 and heat.max() <= 1.0
