"""Geometry: property tests that what ``prepare`` records is the exact, invertible map it applied."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, TypeVar

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from fakelens.geometry import Geometry, SampleMode, prepare, prepare_batch, prepare_views
from fakelens.models.base import InputSpec, ResizeMode

F = TypeVar("F", bound=Callable[..., Any])

MODES = ("resize", "letterbox", "center_crop", "native")
INPUT_SIZES = ((32, 32), (48, 64), (64, 48), (17, 23), (224, 224))

PROPS = settings(
    max_examples=75,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

side = st.integers(min_value=1, max_value=300)
modes = st.sampled_from(MODES)
input_sizes = st.sampled_from(INPUT_SIZES)
feature = st.integers(min_value=1, max_value=16)
coords = st.floats(min_value=-5.0, max_value=230.0, allow_nan=False)
cuts = st.integers(min_value=0, max_value=10_000)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """These tensors are tiny: one intra-op thread avoids thread-pool overhead on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def extremes(**extra: object) -> Callable[[F], F]:
    """Odd, one-pixel and extreme-aspect originals every property is checked on, whatever hypothesis draws."""

    def decorate(f: F) -> F:
        for h0, w0 in ((7, 3000), (3000, 7), (1, 1), (1, 257), (257, 1), (13, 17), (2, 2)):
            for mode in MODES:
                f = example(h0=h0, w0=w0, size=(48, 64), mode=mode, **extra)(f)
        # found by long runs: 1-px-wide letterbox content; a crop narrower than one original pixel
        f = example(h0=43, w0=2, size=(32, 32), mode="letterbox", **extra)(f)
        f = example(h0=2, w0=1, size=(48, 64), mode="center_crop", **extra)(f)
        return f

    return decorate


# ----------------------------------------------------------------------------------------------------
# An independent reference of the preprocessing chain, from first principles (no Geometry methods).


def reference_axis(n0: int, n: int, other0: int, other: int, mode: str) -> tuple[np.ndarray, int, int]:
    """Where each original pixel centre along one axis lands in input pixel-edge coordinates.

    ``n0``/``n`` are the original/input lengths of this axis, ``other0``/``other`` of the other one.
    Returns the coordinates and the ``[lo, hi]`` input interval the image covers.
    """
    centres = np.arange(n0, dtype=np.float64) + 0.5
    if mode == "resize":
        return centres * n / n0, 0, n
    if mode == "letterbox":
        s = min(n / n0, other / other0)
        length = min(n, max(1, math.floor(n0 * s + 0.5)))  # rounded scaled size
        offset = (n - length) // 2  # centred
        return offset + centres * length / n0, offset, offset + length
    if mode == "native":  # no resampling: pad a short side, cut the central window of a long one
        if n0 <= n:
            offset = (n - n0) // 2
            return offset + centres, offset, offset + n0
        return centres - (n0 - n) // 2, 0, n
    # center_crop: resize to an integer size that covers, then crop the centre
    s = max(n / n0, other / other0)
    scaled = max(n, math.floor(n0 * s + 0.5))
    crop = (scaled - n) // 2
    return centres * scaled / n0 - crop, 0, n


def reference_cells(
    h0: int, w0: int, size: tuple[int, int], mode: str, h: int, w: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row and per column of the original: feature cell, inside-the-view flag, near-a-cell-edge flag."""
    out: list[np.ndarray] = []
    for n0, n, other0, other, cells in ((h0, size[0], w0, size[1], h), (w0, size[1], h0, size[0], w)):
        pos, _, _ = reference_axis(n0, n, other0, other, mode)
        f = pos * cells / n  # feature coordinates: the grid covers the input uniformly
        inside = (pos >= 0) & (pos <= n)
        if not inside.any():  # a crop narrower than one original pixel: the pixel under its middle
            assert mode == "center_crop"
            scaled = max(n, math.floor(n0 * max(n / n0, other / other0) + 0.5))
            middle = (n / 2 + (scaled - n) // 2) * n0 / scaled  # the input centre, in original pixels
            inside[min(n0 - 1, math.floor(middle))] = True
        edge = np.abs(f - np.round(f)) < 1e-6
        out += [np.clip(np.floor(f), 0, cells - 1).astype(int), inside, edge]
    cy, iny, edge_y, cx, inx, edge_x = out
    return cy, cx, iny, inx, edge_y, edge_x


def gradient_image(h0: int, w0: int) -> np.ndarray:
    """R ramps along x, G along y (values at pixel centres), B constant."""
    ys, xs = np.mgrid[0:h0, 0:w0]
    r = (xs + 0.5) / w0 * 255
    g = (ys + 0.5) / h0 * 255
    return np.stack([r, g, np.full_like(r, 128.0)], -1).round().astype(np.uint8)


# ----------------------------------------------------------------------------------------------------
# Properties


@PROPS
@given(h0=side, w0=side, size=input_sizes, mode=modes)
@extremes()
def test_fit_matches_reference_chain(h0: int, w0: int, size: tuple[int, int], mode: str) -> None:
    g = Geometry.fit((h0, w0), size, mode)
    _, top, bottom = reference_axis(h0, size[0], w0, size[1], mode)
    _, left, right = reference_axis(w0, size[1], h0, size[0], mode)
    assert g.content_box == (left, top, right, bottom)
    sy, sx = g.scale
    assert sy > 0 and sx > 0
    if mode in ("resize", "letterbox"):
        assert g.source_box == (0.0, 0.0, float(w0), float(h0))
        assert not g.crops
    if mode == "native":
        assert g.scale == (1.0, 1.0)


@PROPS
@given(h0=side, w0=side, size=input_sizes, mode=modes, x=coords, y=coords)
@extremes(x=0.0, y=63.999)
def test_coords_round_trip(h0: int, w0: int, size: tuple[int, int], mode: str, x: float, y: float) -> None:
    g = Geometry.fit((h0, w0), size, mode)
    x0, y0 = g.input_to_original_coords(x, y)
    x1, y1 = g.original_to_input_coords(x0, y0)
    assert x1 == pytest.approx(x, abs=1e-9 * (1 + abs(x))) and y1 == pytest.approx(y, abs=1e-9 * (1 + abs(y)))
    # the other way round, on tensors and arrays
    pts = torch.tensor([[0.5, 0.5], [w0 - 0.5, h0 - 0.5], [w0 / 3, h0 / 7]], dtype=torch.float64)
    u, v = g.original_to_input_coords(pts[:, 0], pts[:, 1])
    xb, yb = g.input_to_original_coords(u, v)
    torch.testing.assert_close(torch.stack([xb, yb], 1), pts, rtol=0, atol=1e-9 * max(h0, w0))
    ua, _ = g.original_to_input_coords(pts[:, 0].numpy(), pts[:, 1].numpy())
    np.testing.assert_allclose(ua, u.numpy(), rtol=0, atol=1e-12)


@PROPS
@given(
    h0=side,
    w0=side,
    size=input_sizes,
    mode=modes,
    h=feature,
    w=feature,
    box=st.tuples(cuts, cuts, cuts, cuts),
)
@extremes(h=7, w=5, box=(2, 3, 1, 2))
def test_feature_box_lands_on_the_right_original_pixels(
    h0: int, w0: int, size: tuple[int, int], mode: str, h: int, w: int, box: tuple[int, int, int, int]
) -> None:
    r0 = box[0] % h
    r1 = r0 + 1 + box[1] % (h - r0)
    c0 = box[2] % w
    c1 = c0 + 1 + box[3] % (w - c0)
    fmap = torch.zeros(h, w, dtype=torch.float64)
    fmap[r0:r1, c0:c1] = 1.0
    g = Geometry.fit((h0, w0), size, mode)
    got = g.to_original(fmap, mode="nearest").numpy()

    cy, cx, iny, inx, edge_y, edge_x = reference_cells(h0, w0, size, mode, h, w)
    rows = iny & (cy >= r0) & (cy < r1)
    cols = inx & (cx >= c0) & (cx < c1)
    expected = (rows[:, None] & cols[None, :]).astype(np.float64)
    settled = ~(edge_y[:, None] | edge_x[None, :])  # centres on a cell edge may go either way
    np.testing.assert_array_equal(got[settled], expected[settled])
    # every original pixel whose centre is settled gets a definite 0/1
    assert set(np.unique(got)) <= {0.0, 1.0}
    # valid_original is the reference's inside-the-view set (again up to centres on the crop edge)
    valid = g.valid_original().numpy()
    np.testing.assert_array_equal(valid[settled], (iny[:, None] & inx[None, :])[settled])
    # float32 maps agree too, away from edges by a float32-sized margin
    got32 = g.to_original(fmap.float(), mode="nearest").numpy()
    v, _, _ = reference_axis(h0, size[0], w0, size[1], mode)
    u, _, _ = reference_axis(w0, size[1], h0, size[0], mode)
    fy, fx = v * h / size[0], u * w / size[1]
    far_y, far_x = np.abs(fy - np.round(fy)) > 1e-4, np.abs(fx - np.round(fx)) > 1e-4
    far = far_y[:, None] & far_x[None, :]
    np.testing.assert_array_equal(got32[far], expected[far])


@PROPS
@given(h0=side, w0=side, size=input_sizes, mode=modes, h=feature, w=feature)
@extremes(h=3, w=16)
def test_constant_map_stays_constant_on_valid_pixels(
    h0: int, w0: int, size: tuple[int, int], mode: str, h: int, w: int
) -> None:
    g = Geometry.fit((h0, w0), size, mode)
    maps = torch.full((2, 3, h, w), 0.7, dtype=torch.float32)
    samplings: tuple[SampleMode, ...] = ("bilinear", "nearest")
    for sampling in samplings:
        out = g.to_original(maps, mode=sampling)
        assert out.shape == (2, 3, h0, w0) and out.dtype == torch.float32
        valid = g.valid_original()
        torch.testing.assert_close(out[..., valid], torch.full_like(out[..., valid], 0.7))
        assert bool((out[..., ~valid] == 0).all())
    # and on the input grid
    up = g.to_input(maps)
    assert up.shape == (2, 3, *size)
    torch.testing.assert_close(up, torch.full_like(up, 0.7))


@PROPS
@given(h0=side, w0=side, size=input_sizes, mode=modes)
@extremes()
def test_valid_input_is_the_letterbox_content(
    h0: int, w0: int, size: tuple[int, int], mode: ResizeMode
) -> None:
    fill = (10, 200, 30)
    colour = (250, 5, 77)
    img = Image.new("RGB", (w0, h0), colour)
    x, g = prepare(img, InputSpec(size=size, mode=mode, fill=fill))
    assert x.shape == (3, *size) and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    valid = g.valid_input()
    ch, cw = g.content_size
    assert int(valid.sum()) == ch * cw
    if mode == "native":
        assert g.pixel_fraction == pytest.approx(float(valid.float().mean()))
    assert g.pixel_fraction == pytest.approx(min(1.0, h0 * w0 / (size[0] * size[1]))) or g.crops
    left, top, right, bottom = g.content_box
    assert bool(valid[top:bottom, left:right].all())
    if mode in ("resize", "center_crop"):
        assert bool(valid.all())
    if mode == "native":  # padded only along the sides the image is shorter than the input
        assert (ch, cw) == (min(h0, size[0]), min(w0, size[1]))
    fill_t = torch.tensor(fill, dtype=torch.float32).view(3, 1) / 255
    colour_t = torch.tensor(colour, dtype=torch.float32).view(3, 1) / 255
    torch.testing.assert_close(x[:, ~valid], fill_t.expand(3, int((~valid).sum())), rtol=0, atol=0)
    torch.testing.assert_close(x[:, valid], colour_t.expand(3, ch * cw), rtol=0, atol=1.01 / 255)


@PROPS
@given(h0=st.integers(1, 200), w0=st.integers(1, 200), size=input_sizes, mode=modes)
@extremes()
def test_prepared_pixels_map_back_onto_the_original(
    h0: int, w0: int, size: tuple[int, int], mode: ResizeMode
) -> None:
    """End to end: the prepared pixels, carried back with ``to_original``, reproduce a gradient image."""
    arr = gradient_image(h0, w0)
    x, g = prepare(Image.fromarray(arr), InputSpec(size=size, mode=mode))
    rec = g.to_original(x.double())
    true = torch.from_numpy(arr).permute(2, 0, 1).double() / 255
    err = rec - true
    ch, cw = g.content_size
    sl, st_, sr, sb = g.source_box
    # each ramp spans this much of [0, 1] per input pixel; a geometry off by half a pixel errs by half that
    step_x, step_y = (sr - sl) / w0 / cw, (sb - st_) / h0 / ch
    # Bilinear sampling of the input grid mixes in the letterbox fill within half an input pixel of the
    # content edge (as for any map that covers the padding), so compare where no padding is involved.
    ys, xs = torch.meshgrid(
        torch.arange(h0, dtype=torch.float64) + 0.5,
        torch.arange(w0, dtype=torch.float64) + 0.5,
        indexing="ij",
    )
    u, v = g.original_to_input_coords(xs, ys)
    left, top, right, bottom = g.content_box
    if mode == "letterbox":
        seen = (u >= left + 0.5) & (u <= right - 0.5) & (v >= top + 0.5) & (v <= bottom - 0.5)
    else:  # centres inside the view (a crop narrower than a pixel keeps one valid pixel outside it)
        hh, ww = size
        seen = g.valid_original() & (u >= 0) & (u <= ww) & (v >= 0) & (v <= hh)
    if not bool(seen.any()):  # a 1-px letterbox content is all edge; a sub-pixel crop has no centre inside
        assert min(ch, cw) < 2 or min(sr - sl, sb - st_) < 1
        return
    torch.testing.assert_close(err[2][seen], torch.zeros_like(err[2][seen]), rtol=0, atol=1.01 / 255)
    if cw >= 4:
        assert float(err[0][seen].abs().mean()) < 0.006 + 0.5 * step_x
    if ch >= 4:
        assert float(err[1][seen].abs().mean()) < 0.006 + 0.5 * step_y
    # no systematic shift: mean signed error well inside the content (away from border clamping)
    inner = seen & (u >= left + 1) & (u <= right - 1) & (v >= top + 1) & (v <= bottom - 1)
    if cw >= 3 and bool(inner.any()):
        assert abs(float(err[0][inner].mean())) < 0.1 * step_x + 1 / 255
    if ch >= 3 and bool(inner.any()):
        assert abs(float(err[1][inner].mean())) < 0.1 * step_y + 1 / 255


# ----------------------------------------------------------------------------------------------------
# Examples


def test_letterbox_numbers_for_a_wide_image() -> None:
    g = Geometry.fit((7, 3000), (224, 224), "letterbox")
    assert g.content_box == (0, 111, 224, 112)  # 7 * 224/3000 = 0.52 → 1 px, centred
    assert g.valid_original().all()
    g = Geometry.fit((300, 200), (48, 64), "letterbox")
    assert g.content_box == (16, 0, 48, 48)


def test_center_crop_numbers() -> None:
    g = Geometry.fit((300, 200), (224, 224), "center_crop")
    assert g.content_box == (0, 0, 224, 224)
    assert g.source_box == pytest.approx((0.0, 50.0, 200.0, 250.0))
    valid = g.valid_original()
    assert int(valid.sum()) == 200 * 200
    assert not valid[:50].any() and not valid[250:].any()
    # a crop narrower than one original pixel (rows 0.625 … 1.375 of a 2-px-tall image): no pixel centre
    # is inside, so the pixel under its middle stands for it and the valid region is never empty
    g = Geometry.fit((2, 1), (48, 64), "center_crop")
    assert g.source_box == pytest.approx((0.0, 0.625, 1.0, 1.375))
    assert g.valid_original().tolist() == [[False], [True]]
    assert g.to_original(torch.full((3, 4), 2.0)).tolist() == [[0.0], [2.0]]


def test_geometry_dict_round_trip_is_json_safe() -> None:
    for mode in MODES:
        g = Geometry.fit((123, 45), (48, 64), mode)
        d = json.loads(json.dumps(g.to_dict()))
        assert Geometry.from_dict(d) == g


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="unknown resize mode"):
        Geometry.fit((10, 10), (8, 8), "squash")
    with pytest.raises(ValueError, match="content box"):
        Geometry((10, 10), (8, 8), (0, 0, 9, 8), (0.0, 0.0, 10.0, 10.0))
    with pytest.raises(ValueError, match="source box"):
        Geometry((10, 10), (8, 8), (0, 0, 8, 8), (0.0, 0.0, 0.0, 10.0))
    g = Geometry.fit((10, 10), (8, 8), "resize")
    with pytest.raises(ValueError, match="sampling mode"):
        g.to_original(torch.zeros(2, 2), mode="bicubic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        g.to_original(torch.zeros(4))


def test_dtypes_and_leading_dims() -> None:
    g = Geometry.fit((30, 50), (16, 16), "center_crop")
    half = g.to_original(torch.rand(2, 3, 4, 4).half())
    assert half.dtype == torch.float16 and half.shape == (2, 3, 30, 50)
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[1:3, 1:3] = True
    out = g.to_original(mask, mode="nearest")
    assert out.dtype == torch.bool and out.shape == (30, 50) and out.any()
    assert g.to_original(torch.zeros(0, 4, 4)).shape == (0, 30, 50)
    assert g.to_input(torch.rand(5, 4, 4), mode="nearest").shape == (5, 16, 16)


def test_no_host_sync() -> None:
    """Meta tensors have no values: any ``.item()`` or branch on values would raise."""
    g = Geometry.fit((300, 200), (48, 64), "center_crop")
    maps = torch.empty(2, 6, 8, device="meta")
    assert g.to_original(maps).shape == (2, 300, 200)
    assert g.to_original(maps, mode="nearest").device.type == "meta"
    assert g.to_input(maps).shape == (2, 48, 64)
    assert g.valid_original("meta").device.type == "meta"


def test_prepare_batch_and_modes() -> None:
    images = [Image.new("RGB", (40, 20), (255, 0, 0)), Image.new("L", (7, 300), 128)]
    spec = InputSpec(size=(48, 64), mode="letterbox")
    x, geoms = prepare_batch(images, spec)
    assert x.shape == (2, 3, 48, 64) and len(geoms) == 2
    assert geoms[1].original_size == (300, 7)
    empty, none = prepare_batch([], spec)
    assert empty.shape == (0, 3, 48, 64) and none == []


def test_upscaling_a_single_pixel() -> None:
    x, g = prepare(Image.new("RGB", (1, 1), (0, 128, 255)), InputSpec(size=(48, 64), mode="letterbox"))
    assert g.content_box == (8, 0, 56, 48)
    torch.testing.assert_close(x[:, 0, 8], torch.tensor([0, 128, 255]) / 255.0)


# ----------------------------------------------------------------------------------------------------
# Native tiles


@PROPS
@given(h0=st.integers(1, 700), w0=st.integers(1, 700), size=input_sizes)
def test_tiles_cover_the_image_at_native_scale(h0: int, w0: int, size: tuple[int, int]) -> None:
    tiles = Geometry.tiles((h0, w0), size)
    h, w = size
    assert len(tiles) == max(1, -(-h0 // h)) * max(1, -(-w0 // w))
    covered = torch.zeros(h0, w0, dtype=torch.int64)
    for g in tiles:
        assert g.mode == "native" and g.scale == (1.0, 1.0)
        assert all(float(v).is_integer() for v in g.source_box)
        covered += g.valid_original().long()
    assert bool((covered >= 1).all())
    # overlap only where windows must: no pixel is read by more than two windows per axis
    assert int(covered.max()) <= 4


@PROPS
@given(h0=st.integers(1, 2000), w0=st.integers(1, 2000), cap=st.integers(1, 20))
def test_capped_tiles_spread_over_the_image(h0: int, w0: int, cap: int) -> None:
    tiles = Geometry.tiles((h0, w0), (64, 64), cap)
    full = Geometry.tiles((h0, w0), (64, 64))
    assert 1 <= len(tiles) <= cap and (len(tiles) == len(full) or len(tiles) > cap // 2)
    for axis, n0 in ((0, w0), (1, h0)):  # per axis: evenly spread, centred on the image as a whole
        starts = sorted({g.source_box[axis] for g in tiles})
        ends = sorted({g.source_box[axis + 2] for g in tiles})
        if n0 <= 64:
            continue
        k = len(starts)
        if k * 64 >= n0:  # still covers the side: edge to edge
            assert (starts[0], ends[-1]) == (0.0, float(n0))
        else:  # gaps: the middle of the windows' span is the middle of the side
            assert abs((starts[0] + ends[-1]) / 2 - n0 / 2) <= 1.0
            gaps = np.diff(starts)
            assert gaps.max() - gaps.min() <= 1.0 if k > 1 else True


def test_capped_grid_keeps_the_image_shape() -> None:
    """A 16 MP landscape photo under a cap of 32: a 4 × 8 grid over the whole picture, not two edge rows."""
    tiles = Geometry.tiles((2988, 5312), (256, 256), 32, 0.25)
    tops = sorted({g.source_box[1] for g in tiles})
    lefts = sorted({g.source_box[0] for g in tiles})
    assert (len(tops), len(lefts)) == (4, 8)
    assert tops[0] > 0 and tops[-1] + 256 < 2988  # rows spread through the middle, not at the borders


def test_tile_numbers() -> None:
    boxes = [g.source_box for g in Geometry.tiles((300, 600), (256, 256))]
    # rows: 2 windows at 0 and 44; columns: 3 windows at 0, 172, 344
    assert [b[:2] for b in boxes] == [(0, 0), (172, 0), (344, 0), (0, 44), (172, 44), (344, 44)]
    (g,) = Geometry.tiles((100, 600), (256, 256), max_tiles=1)
    assert g.source_box == (172.0, 0.0, 428.0, 100.0) and g.content_box == (0, 78, 256, 178)
    assert g == Geometry.fit((100, 600), (256, 256), "native")
    with pytest.raises(ValueError, match="max_tiles"):
        Geometry.tiles((10, 10), (4, 4), 0)


def test_native_views_are_exact_crops() -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (150, 97, 3), dtype=np.uint8)
    spec = InputSpec(size=(64, 64), mode="native", fill=(0, 0, 0))
    x, geoms = prepare_views(Image.fromarray(arr), spec)
    assert x.shape == (len(geoms), 3, 64, 64) and len(geoms) == 3 * 2
    ref = torch.from_numpy(arr).permute(2, 0, 1).float() / 255
    for view, g in zip(x, geoms, strict=True):
        sl, st_, sr, sb = (int(v) for v in g.source_box)
        torch.testing.assert_close(view, ref[:, st_:sb, sl:sr], rtol=0, atol=0)  # bit-exact: no resampling
    one, (g1,) = prepare_views(Image.fromarray(arr), replace(spec, mode="letterbox"))
    assert one.shape == (1, 3, 64, 64) and g1.mode == "letterbox"


@pytest.mark.parametrize("mode", MODES)
def test_to_window_is_to_original_on_the_seen_pixels(mode: str) -> None:
    g = Geometry.fit((90, 200), (32, 48), mode)
    maps = torch.rand(2, 5, 4, 6, dtype=torch.float64)
    full = g.to_original(maps)
    win, (rows, cols) = g.to_window(maps)
    torch.testing.assert_close(win, full[..., rows, cols])
    assert int(g.valid_original()[rows, cols].sum()) == win.shape[-2] * win.shape[-1]
    assert int(g.valid_original().sum()) == win.shape[-2] * win.shape[-1]


@PROPS
@given(n0=st.integers(1, 3000), n=st.integers(8, 300), overlap=st.sampled_from([0.0, 0.1, 0.25, 0.5]))
def test_tiles_overlap_at_least_as_asked(n0: int, n: int, overlap: float) -> None:
    starts = [int(g.source_box[0]) for g in Geometry.tiles((1, n0), (1, n), overlap=overlap)]
    if n0 <= n:
        assert len(starts) == 1
        return
    assert starts[0] == 0 and starts[-1] == n0 - n
    steps = np.diff(starts)
    assert (steps >= 1).all() and (steps <= n * (1 - overlap) + 1).all()  # +1: rounding of the starts
    with pytest.raises(ValueError, match="overlap"):
        Geometry.tiles((1, n0), (1, n), overlap=1.0)
