"""Building blocks of the recipes: the fast large-sigma blur behind soft masks."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from fakelens.forgery.ops import FAST_SIGMA, blob_mask, gaussian_blur, soften


def ellipse(shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    m = np.zeros(shape, np.float32)
    cv2.ellipse(m, (w // 2, h // 3), (int(w * 0.35), int(h * 0.25)), 20, 0, 360, 1.0, -1)
    return m


@pytest.mark.parametrize(
    ("shape", "sigma"), [((240, 320), 9.0), ((240, 320), 40.0), ((300, 200), 150.0), ((97, 131), 30.0)]
)
def test_large_sigma_blur_is_close_to_the_exact_one(shape: tuple[int, int], sigma: float) -> None:
    m = ellipse(shape)
    exact = cv2.GaussianBlur(m, (0, 0), sigma)  # also where the kernel is wider than the image
    fast = gaussian_blur(m, sigma, exact=False)
    assert fast.shape == m.shape and fast.dtype == np.float32
    assert float(np.abs(fast - exact).max()) < 0.005


def test_small_sigmas_and_moderate_masks_blur_exactly() -> None:
    """Masks of photos up to about 1000 px (data synth's crops, the demo assets) stay byte for byte."""
    m = ellipse((120, 160))
    assert np.array_equal(gaussian_blur(m, FAST_SIGMA), cv2.GaussianBlur(m, (0, 0), FAST_SIGMA))
    m = ellipse((512, 512))
    assert np.array_equal(gaussian_blur(m, 150.0), cv2.GaussianBlur(m, (0, 0), 150.0))


def test_a_soft_mask_on_a_large_photo_is_fast() -> None:
    """A full-size kernel of 8σ taps took 85 s for one 3000 × 4000 blob mask (sigma ≈ 300)."""
    m = ellipse((1500, 2000))
    t = time.perf_counter()
    out = soften(m, 250.0)
    assert time.perf_counter() - t < 3.0
    assert float(out.max()) == 1.0 and not out[0, 0] > 0.5
    t = time.perf_counter()
    blob = blob_mask((1500, 2000), np.random.default_rng(0), area=(0.1, 0.4), softness=(0.25, 0.3))
    assert time.perf_counter() - t < 3.0 and blob.max() == 1.0
