"""Augmentations: seeded, shared by reals and fakes, masks follow geometry, Wang et al. 2020 distributions."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
from hypothesis import given
from hypothesis import strategies as st
from scipy.ndimage import gaussian_filter

from fakelens.data.augment import (
    PRESETS,
    Augment,
    AugmentConfig,
    gaussian_blur,
    jpeg_compress,
    random_crop_box,
)
from fakelens.errors import ConfigError


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.ascontiguousarray(cv2.resize(skimage.data.astronaut(), (120, 96), interpolation=cv2.INTER_AREA))


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, 0, 3])


# ------------------------------------------------------------------------------------------ smoke / errors
@pytest.mark.parametrize("preset", list(PRESETS))
def test_presets_smoke(preset: str, photo: np.ndarray) -> None:
    img, mask, params = Augment(preset)(photo, _rng(0), np.zeros(photo.shape[:2], np.float32), aspect=1.0)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert mask is not None and mask.shape == img.shape[:2] and mask.dtype == np.float32
    if preset == "none":
        assert np.array_equal(img, photo) and params == {"flip": False}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"blur": 1.5}, "blur=1.5"),
        ({"crop_scale": (0.0, 1.0)}, "crop_scale"),
        ({"jpeg_quality": (0, 100)}, "jpeg_quality"),
        ({"resize_range": (2.0, 1.0)}, "resize_range"),
        ({"blur_sigma": (-1.0, 3.0)}, "blur_sigma"),
    ],
)
def test_config_exceptions(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AugmentConfig(**kwargs)  # type: ignore[arg-type]


def test_unknown_preset_and_bad_inputs(photo: np.ndarray) -> None:
    with pytest.raises(ConfigError, match="unknown augmentation preset 'strong'"):
        Augment("strong")
    with pytest.raises(ConfigError, match="RGB uint8"):
        Augment()(photo.astype(np.float32), _rng(0))
    with pytest.raises(ConfigError, match="does not match"):
        Augment()(photo, _rng(0), np.zeros((3, 3), np.float32))


# ------------------------------------------------------------------------------------------ seeding
def test_same_seed_same_output_other_seed_differs(photo: np.ndarray) -> None:
    aug = Augment("robust")
    a = aug(photo, _rng(1))
    b = aug(photo, _rng(1))
    assert np.array_equal(a[0], b[0]) and a[2] == b[2]
    outs = {aug(photo, _rng(s))[0].tobytes() for s in range(6)}
    assert len(outs) == 6


def test_draws_do_not_depend_on_pixels(photo: np.ndarray) -> None:
    """A real and its fake given equal seeds get the same crop, flip, chain, blur σ and JPEG quality."""
    other = photo.copy()
    other[20:50, 30:70] = 255 - other[20:50, 30:70]
    aug = Augment("robust", resize_chain=1.0, blur=1.0, jpeg=1.0)
    for seed in range(5):
        assert aug(photo, _rng(seed))[2] == aug(other, _rng(seed))[2]


def test_probabilities_keep_the_stream_aligned(photo: np.ndarray) -> None:
    """The crop is drawn the same way whatever the photometric probabilities are."""
    a = Augment("light")(photo, _rng(4))[2]["crop"]
    b = Augment("robust", blur=1.0, jpeg=1.0)(photo, _rng(4))[2]["crop"]
    assert a == b


# ------------------------------------------------------------------------------------------ Wang et al.
def test_wang2020_distributions(photo: np.ndarray) -> None:
    small = photo[:32, :32].copy()
    aug = Augment("wang2020")
    blurs, quals, methods, n = [], [], set(), 300
    n_blur = n_jpeg = 0
    for s in range(n):
        p = aug(small, _rng(s))[2]
        if "blur_sigma" in p:
            n_blur += 1
            blurs.append(p["blur_sigma"])
        if "jpeg" in p:
            n_jpeg += 1
            quals.append(p["jpeg"]["quality"])
            methods.add(p["jpeg"]["method"])
    assert 0.4 < n_blur / n < 0.6 and 0.4 < n_jpeg / n < 0.6
    assert min(blurs) >= 0.0 and max(blurs) <= 3.0 and np.mean(blurs) == pytest.approx(1.5, abs=0.3)
    assert min(quals) >= 30 and max(quals) <= 100 and all(isinstance(q, int) for q in quals)
    assert methods == {"cv2", "pil"}


def test_gaussian_blur_matches_scipy(photo: np.ndarray) -> None:
    for sigma in (0.7, 2.3):
        ours = gaussian_blur(photo, sigma).astype(np.int16)
        ref = np.stack([gaussian_filter(photo[..., c].astype(np.float64), sigma) for c in range(3)], -1)
        assert np.abs(ours - np.rint(ref)).max() <= 1
    assert np.array_equal(gaussian_blur(photo, 0.0), photo)


@pytest.mark.parametrize("method", ["cv2", "pil"])
def test_jpeg_round_trip(photo: np.ndarray, method: str) -> None:
    hi = jpeg_compress(photo, 95, method)
    lo = jpeg_compress(photo, 30, method)
    assert hi.shape == photo.shape and hi.dtype == np.uint8
    err_hi = np.abs(hi.astype(int) - photo).mean()
    err_lo = np.abs(lo.astype(int) - photo).mean()
    assert 0 < err_hi < err_lo
    with pytest.raises(ConfigError, match="unknown JPEG method"):
        jpeg_compress(photo, 90, "libjpeg")


# ------------------------------------------------------------------------------------------ geometry
@given(
    h=st.integers(1, 300),
    w=st.integers(1, 300),
    aspect=st.floats(0.25, 4.0),
    lo=st.floats(0.05, 1.0),
    seed=st.integers(0, 2**16),
)
def test_crop_box_inside_with_aspect(h: int, w: int, aspect: float, lo: float, seed: int) -> None:
    left, top, right, bottom = random_crop_box(h, w, aspect, (lo, 1.0), np.random.default_rng(seed))
    assert 0 <= left < right <= w and 0 <= top < bottom <= h
    cw, ch = right - left, bottom - top
    if min(cw, ch) >= 20:  # rounding dominates tiny boxes
        assert cw / ch == pytest.approx(aspect, rel=0.12)


def test_mask_follows_crop_flip_and_chain(photo: np.ndarray) -> None:
    """An image that *is* its mask (grey = 255·M) stays equal to its mask through the geometric steps."""
    mask = np.zeros(photo.shape[:2], np.float32)
    mask[10:60, 25:70] = 1.0
    mask[70:90, 90:115] = 0.5
    img = np.repeat(np.rint(mask * 255).astype(np.uint8)[..., None], 3, axis=2)
    aug = Augment("light", flip=1.0)
    out, m, params = aug(img, _rng(2), mask, aspect=1.25)
    assert params["flip"] and m is not None
    assert np.abs(out[..., 0] / 255.0 - m).max() < 1e-6
    assert out.shape[1] / out.shape[0] == pytest.approx(1.25, rel=0.05)
    # a resize chain with smooth interpolation keeps them close (the mask is always resized bilinearly)
    chain = Augment("light", resize_chain=1.0)
    for s in range(4):
        out, m, p = chain(img, _rng(s), mask)
        assert m is not None and out.shape[:2] == m.shape
        if all(step["interpolation"] in ("bilinear", "area") for step in p["resize_chain"]):
            assert np.abs(out[..., 0] / 255.0 - m).mean() < 0.02
        assert np.corrcoef(out[..., 0].ravel(), m.ravel())[0, 1] > 0.8
