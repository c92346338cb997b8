"""Overlays are RGB (never BGR), respect alpha and the valid mask; panels render."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib import colormaps
from PIL import Image

from fakelens.errors import ConfigError
from fakelens.viz import colorize, overlay, panel
from fakelens.viz.overlay import CMAPS, overlay_text, save_overlays, save_png


def test_colorize_jet_is_rgb() -> None:
    c = colorize(np.array([[0.0, 1.0]]), "jet")
    assert c.dtype == np.uint8 and c.shape == (1, 2, 3)
    assert c[0, 0, 2] > c[0, 0, 0]  # low values are blue
    assert c[0, 1, 0] > c[0, 1, 2]  # high values are red


@pytest.mark.parametrize("cmap", CMAPS)
def test_colorize_is_the_colormap_pixel_for_pixel(cmap: str) -> None:
    """The table lookup bins as matplotlib does: edges, the last bin, out-of-range values and NaN."""
    m = np.random.default_rng(0).random((40, 50)).astype(np.float32)
    m[0, :8] = [0.0, 1.0, 0.5, 1 - 1e-7, 255 / 256, 1 / 256, np.nextafter(np.float32(1 / 256), 0), 0.75]
    m[1, :3] = [-0.5, 2.0, np.nan]
    ref = (colormaps[cmap](np.clip(np.nan_to_num(m), 0, 1))[..., :3] * 255.0 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(colorize(m, cmap), ref)
    np.testing.assert_array_equal(colorize(m.astype(np.float64), cmap), ref)


def test_save_overlays_writes_each_overlay(tmp_path: Path) -> None:
    img = np.random.default_rng(2).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    maps = {tmp_path / f"{k}.png": (np.random.default_rng(k).random((20, 30)), None) for k in range(5)}
    maps[tmp_path / "masked.png"] = (np.ones((20, 30)), np.eye(20, 30, dtype=bool))
    assert save_overlays(img, maps, alpha=0.4, cmap="turbo") == list(maps)
    for path, (m, valid) in maps.items():
        expected = overlay(img, m, alpha=0.4, cmap="turbo", valid=valid)
        np.testing.assert_array_equal(np.asarray(Image.open(path)), expected)
    with pytest.raises(ValueError, match="differ in size"):
        save_overlays(img, {tmp_path / "bad.png": (np.ones((3, 3)), None), **maps})
    assert not (tmp_path / "bad.png").exists()


def test_overlay_text_says_what_the_colours_mean() -> None:
    t = overlay_text("cnn", "gradcam")
    assert t["Title"] == "gradcam heatmap of cnn" and "evidence for 'fake'" in t["Description"]
    assert "flat" not in t["Description"] and t["Software"].startswith("fakelens ")
    assert "class-agnostic" in overlay_text("cnn", "eigencam")["Description"]
    assert overlay_text("cnn", "gradcam", flat=True)["Description"].endswith(
        "flat: near-uniform, it points nowhere"
    )


def test_save_png_is_lossless(tmp_path: Path) -> None:
    img = np.random.default_rng(1).integers(0, 256, (31, 17, 3), dtype=np.uint8)
    path = save_png(img, tmp_path / "o.png")
    np.testing.assert_array_equal(np.asarray(Image.open(path)), img)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_overlay_alpha_blend(alpha: float) -> None:
    img = np.full((4, 5, 3), 200, np.uint8)
    m = np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5)
    out = overlay(img, m, alpha=alpha)
    expected = (1 - alpha) * 200 + alpha * colorize(m).astype(np.float32)
    assert np.abs(out.astype(np.float32) - expected).max() <= 1


def test_overlay_invalid_pixels_keep_dimmed_image() -> None:
    img = np.full((2, 2, 3), 100, np.uint8)
    valid = np.array([[True, False], [True, True]])
    out = overlay(img, np.ones((2, 2)), valid=valid)
    assert (out[0, 1] == 50).all()


def test_overlay_errors() -> None:
    with pytest.raises(ConfigError):
        overlay(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2)), alpha=2)
    with pytest.raises(ConfigError):
        colorize(np.zeros((2, 2)), "nope")
    with pytest.raises(ValueError, match="differ in size"):
        overlay(np.zeros((2, 2, 3), np.uint8), np.zeros((3, 3)))


def test_panel_renders_each_method() -> None:
    img = np.zeros((30, 40, 3), np.uint8)
    one = panel(img, {"a": np.zeros((30, 40))})
    three = panel(img, {"a": np.zeros((30, 40)), "b": np.ones((30, 40)), "c": np.eye(30, 40)}, title="t")
    assert one.ndim == 3 and three.shape[1] > one.shape[1]


def test_panel_of_a_strip_stacks_its_pictures_and_a_tall_one_stays_bounded() -> None:
    """A 2000×200 strip side by side would be a few pixels tall: its pictures are stacked instead; a
    200×2000 one is not metres tall."""
    m = {"a": np.zeros((200, 2000)), "b": np.ones((200, 2000))}
    wide = panel(np.zeros((200, 2000, 3), np.uint8), m)
    assert wide.shape[0] > 0.4 * wide.shape[1]  # three pictures one under the other
    t = {k: v.T.copy() for k, v in m.items()}
    tall = panel(np.zeros((2000, 200, 3), np.uint8), t)
    assert tall.shape[0] < 1500 and tall.shape[1] > 300  # ~6 inches high at 150 dpi, titles readable


def test_overlay_takes_float_grey_and_rgba_arrays() -> None:
    """A float image slightly over 1 (resampling overshoot) is still [0, 1] — it was read as 0–255 and came
    out black; grey is repeated and alpha dropped instead of a broadcasting error."""
    rgb = np.full((4, 5, 3), 0.5, np.float32)
    rgb[0, 0] = 1.02
    m = np.zeros((4, 5), np.float32)
    out = overlay(rgb, m, alpha=0.0)
    assert out[1, 1].tolist() == [128, 128, 128] and out[0, 0].tolist() == [255, 255, 255]
    grey = overlay(np.full((4, 5), 200, np.uint8), m, alpha=0.0)
    rgba = overlay(np.dstack([np.full((4, 5, 3), 200, np.uint8), np.zeros((4, 5), np.uint8)]), m, alpha=0.0)
    assert (grey == 200).all() and (rgba == 200).all()
    assert overlay(np.full((4, 5, 3), 130.0), m, alpha=0.0)[0, 0].tolist() == [130, 130, 130]  # 0–255 floats
