"""Fitting images to a model's input size, with an exact, invertible record of what was done.

:func:`prepare` turns an RGB image into a ``(3, H, W)`` float tensor in [0, 1] (not normalised: a black fill
means black pixels; normalisation is ``InputSpec.normalize``'s job) and returns a :class:`Geometry`. The
Geometry is the axis-aligned affine map between two pixel grids, both in *pixel-edge* coordinates (pixel
``i`` spans ``[i, i + 1)``, its centre is ``i + 0.5``):

- the **content box** ``(left, top, right, bottom)``: integer input pixels that show the image;
- the **source box** ``(left, top, right, bottom)``: the float region of the original those pixels show
  (the whole image for ``resize`` and ``letterbox``, a central part for ``center_crop``).

``x_input = box.left + (x_original - source.left) * box.width / source.width`` (and the same for ``y``).
This is exactly the mapping Pillow's ``resize(size, box=source)`` samples with, so maps carried back to the
original through the Geometry land on the pixels the model saw. A feature map of any size ``(h, w)`` is taken
to cover the whole input grid uniformly, as CNN and ViT feature maps do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from fakelens.errors import ImageError
from fakelens.io import to_rgb
from fakelens.models.base import InputSpec

__all__ = [
    "Geometry",
    "SampleMode",
    "covered_fraction",
    "prepare",
    "prepare_batch",
    "prepare_views",
    "view_geometries",
]

SampleMode = Literal["bilinear", "nearest"]
Coord = TypeVar("Coord", float, Tensor, np.ndarray)

_MODES = ("resize", "letterbox", "center_crop", "native")


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def _index_range(lo: float, hi: float, n: int) -> tuple[int, int]:
    """Indices ``i`` in ``[0, n)`` whose pixel centre ``i + 0.5`` is in ``[lo, hi]``, as ``(start, stop)``.

    A range narrower than a pixel may hold no centre: then the pixel holding its middle stands for it, so
    a crop always keeps at least one valid original pixel.
    """
    start = max(0, math.ceil(lo - 0.5))
    stop = min(n, math.floor(hi - 0.5) + 1)
    if stop <= start:
        start = min(n - 1, max(0, math.floor((lo + hi) / 2)))
        stop = start + 1
    return start, stop


def _centre(n0: int, n: int) -> int:
    return max(0, (n0 - n) // 2)


def _windows(n0: int, n: int, overlap: float) -> int:
    """How many windows of ``n`` cover ``n0`` with neighbours overlapping by at least ``overlap·n``."""
    if n0 <= n:
        return 1
    return math.ceil((n0 - n) / (n * (1.0 - overlap)) - 1e-9) + 1


def _starts(n0: int, n: int, k: int) -> list[int]:
    """``k`` window starts: spread evenly over ``[0, n0 − n]`` when ``k`` windows cover ``n0``, else centred
    on ``(i + ½)·n0/k`` (evenly spaced, gaps between them; the centre for one window)."""
    if n0 <= n or k == 1:
        return [_centre(n0, n)]
    if k * n >= n0:
        return [_round_half_up(i * (n0 - n) / (k - 1)) for i in range(k)]
    return [min(n0 - n, max(0, _round_half_up((i + 0.5) * n0 / k - n / 2))) for i in range(k)]


def _native_axis(n0: int, n: int, start: int) -> tuple[tuple[int, int], tuple[float, float]]:
    """One axis of a native view: (content interval on the input, source interval on the original)."""
    if n0 <= n:
        offset = (n - n0) // 2
        return (offset, offset + n0), (0.0, float(n0))
    return (0, n), (float(start), float(start + n))


@dataclass(frozen=True)
class Geometry:
    """The record of how an ``original_size`` image was fitted to ``input_size`` (both ``(H, W)``).

    ``content_box`` is ``(left, top, right, bottom)`` in integer input pixels; ``source_box`` the
    ``(left, top, right, bottom)`` region of the original (float, pixel edges) that the content box shows.
    """

    original_size: tuple[int, int]
    input_size: tuple[int, int]
    content_box: tuple[int, int, int, int]
    source_box: tuple[float, float, float, float]
    mode: str = "resize"

    def __post_init__(self) -> None:
        (h0, w0), (h, w) = self.original_size, self.input_size
        left, top, right, bottom = self.content_box
        sl, st, sr, sb = self.source_box
        if min(h0, w0, h, w) < 1:
            raise ValueError(
                f"sizes must be positive, got original {self.original_size}, input {self.input_size}"
            )
        if not (0 <= left < right <= w and 0 <= top < bottom <= h):
            raise ValueError(
                f"content box {self.content_box} is not a non-empty box inside {self.input_size}"
            )
        if not (sr > sl and sb > st and all(math.isfinite(v) for v in self.source_box)):
            raise ValueError(f"source box {self.source_box} is empty or not finite")

    # ---------------------------------------------------------------------------------------------- building

    @classmethod
    def fit(cls, original_size: tuple[int, int], input_size: tuple[int, int], mode: str) -> Geometry:
        """Plan how an ``original_size`` image fits ``input_size`` under ``mode``, without touching pixels.

        ``resize`` stretches; ``letterbox`` scales by ``min(H/H0, W/W0)``, rounds the scaled size (at least
        1 px), centres it and pads; ``center_crop`` scales by ``max(...)`` to a rounded integer size and crops
        its centre (what resize-then-crop does, done by one resize of the matching source region);
        ``native`` never resamples: a side shorter than the input is centred and padded, a longer one is
        cut to its central input-sized window (the single view of :meth:`tiles`).
        """
        h0, w0 = (int(v) for v in original_size)
        h, w = (int(v) for v in input_size)
        if min(h0, w0) < 1:
            raise ImageError(f"cannot prepare a zero-size image ({w0}×{h0} pixels)")
        if min(h, w) < 1:
            raise ValueError(f"input size must be positive, got {input_size}")
        whole = (0.0, 0.0, float(w0), float(h0))
        if mode == "resize":
            return cls((h0, w0), (h, w), (0, 0, w, h), whole, mode)
        if mode == "letterbox":
            s = min(w / w0, h / h0)
            bw = min(w, max(1, _round_half_up(w0 * s)))
            bh = min(h, max(1, _round_half_up(h0 * s)))
            left, top = (w - bw) // 2, (h - bh) // 2
            return cls((h0, w0), (h, w), (left, top, left + bw, top + bh), whole, mode)
        if mode == "native":
            return cls._window((h0, w0), (h, w), _centre(h0, h), _centre(w0, w))
        if mode == "center_crop":
            s = max(w / w0, h / h0)
            rw = max(w, _round_half_up(w0 * s))  # the scaled image, integer-sized
            rh = max(h, _round_half_up(h0 * s))
            cx, cy = (rw - w) // 2, (rh - h) // 2  # integer crop offset in the scaled image
            kx, ky = w0 / rw, h0 / rh  # original pixels per scaled pixel
            source = (cx * kx, cy * ky, (cx + w) * kx, (cy + h) * ky)
            return cls((h0, w0), (h, w), (0, 0, w, h), source, mode)
        raise ValueError(f"unknown resize mode {mode!r}; expected one of {_MODES}")

    @classmethod
    def _window(
        cls, original_size: tuple[int, int], input_size: tuple[int, int], top: int, left: int
    ) -> Geometry:
        """The native-scale view whose window starts at original pixel ``(top, left)`` (a side that fits the
        input is centred and padded instead; its start is ignored)."""
        (h0, w0), (h, w) = original_size, input_size
        (ct, cb), (st, sb) = _native_axis(h0, h, top)
        (cl, cr), (sl, sr) = _native_axis(w0, w, left)
        return cls(original_size, input_size, (cl, ct, cr, cb), (sl, st, sr, sb), "native")

    @classmethod
    def tiles(
        cls,
        original_size: tuple[int, int],
        input_size: tuple[int, int],
        max_tiles: int | None = None,
        overlap: float = 0.0,
    ) -> list[Geometry]:
        """Native-scale views that cover an ``original_size`` image, row-major.

        Along a side longer than the input, ``k = ⌈(n₀−n) / (n·(1−overlap))⌉ + 1`` windows start at
        ``round(i·(n₀−n)/(k−1))``: neighbours overlap evenly by at least ``overlap`` of a window and the last
        one ends on the border; a shorter side is centred and padded. With ``max_tiles`` the grid keeps as
        many windows as allowed, in the proportions of the full grid (so they spread over the whole image);
        along a side they can no longer cover, the windows are centred on ``(i + ½)·n₀/k``, evenly spaced with
        gaps between them (:meth:`valid_original` says what each covers).
        """
        (h0, w0), (h, w) = (int(v) for v in original_size), (int(v) for v in input_size)
        if min(h0, w0) < 1:
            raise ImageError(f"cannot prepare a zero-size image ({w0}×{h0} pixels)")
        if max_tiles is not None and max_tiles < 1:
            raise ValueError(f"max_tiles must be at least 1, got {max_tiles}")
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {overlap}")
        ky, kx = _windows(h0, h, overlap), _windows(w0, w, overlap)
        if max_tiles is not None and ky * kx > max_tiles:
            aspect = math.log(ky / kx)

            def fit(k: tuple[int, int]) -> tuple[int, float]:  # most windows, then the full grid's shape
                return k[0] * k[1], -abs(math.log(k[0] / k[1]) - aspect)

            grids = [(a, min(kx, max_tiles // a)) for a in range(1, min(ky, max_tiles) + 1)]
            ky, kx = max(grids, key=fit)
        return [
            cls._window((h0, w0), (h, w), top, left)
            for top in _starts(h0, h, ky)
            for left in _starts(w0, w, kx)
        ]

    # ----------------------------------------------------------------------------------------- description

    @property
    def content_size(self) -> tuple[int, int]:
        """``(height, width)`` of the content box in input pixels."""
        left, top, right, bottom = self.content_box
        return bottom - top, right - left

    @property
    def pixel_fraction(self) -> float:
        """Original pixels shown per input pixel, at most 1: below 1 the view holds fewer of the image's own
        pixels than the input has (a small image padded, or enlarged, to fit)."""
        sl, st, sr, sb = self.source_box
        h, w = self.input_size
        return min(1.0, (sr - sl) * (sb - st) / (h * w))

    @property
    def scale(self) -> tuple[float, float]:
        """``(sy, sx)``: input pixels per original pixel along each axis (exact, from the integer box)."""
        left, top, right, bottom = self.content_box
        sl, st, sr, sb = self.source_box
        return (bottom - top) / (sb - st), (right - left) / (sr - sl)

    @property
    def crops(self) -> bool:
        """Whether part of the original is outside what the model sees."""
        h0, w0 = self.original_size
        sl, st, sr, sb = self.source_box
        return sl > 0.0 or st > 0.0 or sr < w0 or sb < h0

    # ---------------------------------------------------------------------------------------- point maps

    def input_to_original_coords(self, x: Coord, y: Coord) -> tuple[Coord, Coord]:
        """Input-grid point(s) ``(x, y)`` (pixel-edge coordinates) → the original image's coordinates."""
        sy, sx = self.scale
        left, top = self.content_box[:2]
        sl, st = self.source_box[:2]
        return sl + (x - left) / sx, st + (y - top) / sy

    def original_to_input_coords(self, x0: Coord, y0: Coord) -> tuple[Coord, Coord]:
        """Original-image point(s) ``(x0, y0)`` → input-grid coordinates (inverse of the above)."""
        sy, sx = self.scale
        left, top = self.content_box[:2]
        sl, st = self.source_box[:2]
        return left + (x0 - sl) * sx, top + (y0 - st) * sy

    # ---------------------------------------------------------------------------------------- valid masks

    def _valid_ranges(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """Row and column index ranges of original pixels whose centre lies in the source box."""
        h0, w0 = self.original_size
        sl, st, sr, sb = self.source_box
        return _index_range(st, sb, h0), _index_range(sl, sr, w0)

    def valid_input(self, device: torch.device | str | None = None) -> Tensor:
        """``(H, W)`` bool: input pixels that show the image (False on letterbox padding)."""
        left, top, right, bottom = self.content_box
        mask = torch.zeros(self.input_size, dtype=torch.bool, device=device)
        mask[top:bottom, left:right] = True
        return mask

    def valid_original(self, device: torch.device | str | None = None) -> Tensor:
        """``(H0, W0)`` bool: original pixels the model saw (False where ``center_crop`` cut them away)."""
        (r0, r1), (c0, c1) = self._valid_ranges()
        mask = torch.zeros(self.original_size, dtype=torch.bool, device=device)
        mask[r0:r1, c0:c1] = True
        return mask

    # ---------------------------------------------------------------------------------------- map transfer

    def to_input(self, maps: Tensor, mode: SampleMode = "bilinear") -> Tensor:
        """``(..., h, w)`` feature-resolution maps → ``(..., H, W)`` on the input grid.

        The feature grid covers the whole input grid (``F.interpolate``, ``align_corners=False``; ``nearest``
        is centre-aligned ``nearest-exact``). Padding is not zeroed: combine with :meth:`valid_input`.
        """
        x, lead, out_dtype = _flatten(maps, mode)
        if x.shape[0] == 0:
            return maps.new_zeros((*lead, *self.input_size), dtype=out_dtype)
        if mode == "bilinear":
            y = F.interpolate(x.unsqueeze(0), size=self.input_size, mode="bilinear", align_corners=False)
        elif mode == "nearest":
            y = F.interpolate(x.unsqueeze(0), size=self.input_size, mode="nearest-exact")
        else:
            raise ValueError(f"unknown sampling mode {mode!r}; expected 'bilinear' or 'nearest'")
        return y.squeeze(0).reshape(*lead, *self.input_size).to(out_dtype)

    def _axis_grid(self, axis: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """Normalised ([-1, 1] over the input, hence over any feature map) positions of original pixel
        centres along ``axis`` (0 rows, 1 columns)."""
        n0 = self.original_size[axis]
        n_in = self.input_size[axis]
        start = self.content_box[1 - axis]  # (left, top, ...): axis 0 → top, axis 1 → left
        src = self.source_box[1 - axis]
        k = self.scale[axis]
        centres = torch.arange(n0, device=device, dtype=dtype) + 0.5
        u = (centres - src) * k + start  # input pixel-edge coordinate
        return u * (2.0 / n_in) - 1.0

    def to_original(self, maps: Tensor, mode: SampleMode = "bilinear") -> Tensor:
        """``(..., h, w)`` feature-resolution maps → ``(..., H0, W0)`` on the ORIGINAL image's pixel grid.

        Every original pixel centre is carried through the recorded box into input, then feature,
        coordinates and sampled with ``F.grid_sample(align_corners=False, padding_mode="border")``
        (``nearest`` for masks). The map is axis-aligned, so this runs as two 1-D samplings (rows, then
        columns, or the cheaper order): the same values as one 2-D sampling without an ``(H0, W0, 2)`` grid.
        Pixels outside what the model saw (``center_crop``) are 0. Runs on ``maps``' device, keeps floating
        dtypes (half precision is computed in float32), never synchronises with the host.
        """
        h0, w0 = self.original_size
        out = self._sample(maps, mode, (0, h0), (0, w0))
        if self.crops:  # zero what the model never saw: a rectangle, so slices, not a full mask
            (r0, r1), (c0, c1) = self._valid_ranges()
            out[..., :r0, :] = 0
            out[..., r1:, :] = 0
            out[..., :, :c0] = 0
            out[..., :, c1:] = 0
        return out

    def to_window(self, maps: Tensor, mode: SampleMode = "bilinear") -> tuple[Tensor, tuple[slice, slice]]:
        """:meth:`to_original` restricted to the original pixels the model saw: ``(..., r1−r0, c1−c0)`` maps
        and the ``(rows, columns)`` slices of the original they belong at (what stitching tiles needs)."""
        (r0, r1), (c0, c1) = self._valid_ranges()
        return self._sample(maps, mode, (r0, r1), (c0, c1)), (slice(r0, r1), slice(c0, c1))

    def window(self) -> tuple[slice, slice]:
        """The ``(rows, columns)`` slices of the original that :meth:`to_window`'s maps belong at."""
        (r0, r1), (c0, c1) = self._valid_ranges()
        return slice(r0, r1), slice(c0, c1)

    def _sample(self, maps: Tensor, mode: SampleMode, rows: tuple[int, int], cols: tuple[int, int]) -> Tensor:
        """Sample ``(..., h, w)`` maps at the centres of original rows ``[r0, r1)``, columns ``[c0, c1)``."""
        if mode not in ("bilinear", "nearest"):
            raise ValueError(f"unknown sampling mode {mode!r}; expected 'bilinear' or 'nearest'")
        x, lead, out_dtype = _flatten(maps, mode)
        h0, w0 = rows[1] - rows[0], cols[1] - cols[0]
        if x.shape[0] == 0:
            return maps.new_zeros((*lead, h0, w0), dtype=out_dtype)
        n, h, w = x.shape
        gy = self._axis_grid(0, x.device, x.dtype)[rows[0] : rows[1]]
        gx = self._axis_grid(1, x.device, x.dtype)[cols[0] : cols[1]]
        if h0 * w <= h * w0:  # rows first: intermediate (n, H0, w)
            t = _sample_last(x.transpose(1, 2).reshape(n * w, h), gy, mode).reshape(n, w, h0).transpose(1, 2)
            out = _sample_last(t.reshape(n * h0, w), gx, mode).reshape(n, h0, w0)
        else:  # columns first: intermediate (n, h, W0)
            t = _sample_last(x.reshape(n * h, w), gx, mode).reshape(n, h, w0)
            out = (
                _sample_last(t.transpose(1, 2).reshape(n * w0, h), gy, mode)
                .reshape(n, w0, h0)
                .transpose(1, 2)
            )
        return out.reshape(*lead, h0, w0).to(out_dtype)

    # ---------------------------------------------------------------------------------------- persistence

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description (lists of numbers and a string)."""
        return {
            "original_size": list(self.original_size),
            "input_size": list(self.input_size),
            "content_box": list(self.content_box),
            "source_box": [float(v) for v in self.source_box],
            "mode": self.mode,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Geometry:
        """Inverse of :meth:`to_dict`."""
        oh, ow = d["original_size"]
        ih, iw = d["input_size"]
        bl, bt, br, bb = d["content_box"]
        sl, st, sr, sb = d["source_box"]
        return cls(
            original_size=(int(oh), int(ow)),
            input_size=(int(ih), int(iw)),
            content_box=(int(bl), int(bt), int(br), int(bb)),
            source_box=(float(sl), float(st), float(sr), float(sb)),
            mode=str(d.get("mode", "resize")),
        )


def covered_fraction(views: Sequence[Geometry]) -> float:
    """The share of the original image's pixels that at least one of ``views`` (of one image) read."""
    if not views:
        return 0.0
    h0, w0 = views[0].original_size
    seen = torch.zeros(h0, w0, dtype=torch.bool)
    for g in views:
        (r0, r1), (c0, c1) = g._valid_ranges()
        seen[r0:r1, c0:c1] = True
    return int(seen.sum()) / seen.numel()


def _flatten(maps: Tensor, mode: str) -> tuple[Tensor, tuple[int, ...], torch.dtype]:
    """``(..., h, w)`` → ``(N, h, w)`` in a dtype ``grid_sample`` takes; the leading shape; the output dtype.

    Float32/64 stay as they are; half precision is computed in float32 and cast back; integer and bool maps
    are computed in float32 and keep their dtype with ``nearest`` (masks), become float32 with ``bilinear``.
    """
    if maps.dim() < 2:
        raise ValueError(f"maps must have shape (..., h, w), got {tuple(maps.shape)}")
    lead = tuple(maps.shape[:-2])
    h, w = maps.shape[-2:]
    if maps.dtype in (torch.float32, torch.float64):
        compute, out = maps.dtype, maps.dtype
    elif maps.is_floating_point():
        compute, out = torch.float32, maps.dtype
    else:
        compute, out = torch.float32, (maps.dtype if mode == "nearest" else torch.float32)
    return maps.reshape(-1, h, w).to(compute), lead, out


def _sample_last(x: Tensor, g: Tensor, mode: str) -> Tensor:
    """Resample ``x (N, L)`` along its last dim at normalised positions ``g (M,)`` → ``(N, M)``.

    One ``grid_sample`` call with the N rows as channels of a 1-pixel-high image.
    """
    n, length = x.shape
    grid = torch.stack([g, torch.zeros_like(g)], dim=-1).reshape(1, 1, -1, 2)
    out = F.grid_sample(
        x.reshape(1, n, 1, length), grid, mode=mode, padding_mode="border", align_corners=False
    )
    return out.reshape(n, g.shape[0])


# ----------------------------------------------------------------------------------------------------
# Preparing pixels


def _to_tensor(img: Image.Image) -> Tensor:
    a = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(a.copy()).permute(2, 0, 1).to(torch.float32).div_(255.0)


def prepare(
    image: Image.Image,
    spec: InputSpec,
    *,
    resample: Image.Resampling = Image.Resampling.BILINEAR,
) -> tuple[Tensor, Geometry]:
    """Fit an RGB image to ``spec.size`` under ``spec.mode`` → ``(3, H, W)`` float32 pixels in [0, 1] and
    the :class:`Geometry` of the fit.

    One antialiased Pillow resize of the source region into the integer content box (``resample`` is
    ``BILINEAR`` by default; Pillow widens the filter when reducing), then letterbox padding with
    ``spec.fill``. Pixels are not normalised. Non-RGB images are converted with :func:`fakelens.io.to_rgb`.
    """
    if image.width < 1 or image.height < 1:
        raise ImageError(f"cannot prepare a zero-size image ({image.width}×{image.height} pixels)")
    geom = Geometry.fit((image.height, image.width), spec.size, spec.mode)
    return _place(to_rgb(image), geom, spec, resample), geom


def view_pixels(image: Image.Image, geometry: Geometry, spec: InputSpec) -> Tensor:
    """The ``(3, H, W)`` input pixels in [0, 1] that ``geometry`` (a fit or a tile of ``image``) describes."""
    return _place(to_rgb(image), geometry, spec)


def _place(
    rgb: Image.Image,
    geom: Geometry,
    spec: InputSpec,
    resample: Image.Resampling = Image.Resampling.BILINEAR,
) -> Tensor:
    """The input pixels ``geom`` describes, taken from an RGB image."""
    left, top, right, bottom = geom.content_box
    content_size = (right - left, bottom - top)
    box = geom.source_box
    if content_size == rgb.size and box == (0.0, 0.0, float(rgb.width), float(rgb.height)):
        content = rgb
    elif geom.mode == "native":  # one-to-one pixels: a crop, never a resampling
        content = rgb.crop(box)  # integer-valued box: Pillow copies the pixels
    else:
        content = rgb.resize(content_size, resample=resample, box=geom.source_box)
    h, w = geom.input_size
    if content.size != (w, h):
        canvas = Image.new("RGB", (w, h), tuple(int(c) for c in spec.fill))
        canvas.paste(content, (left, top))
        content = canvas
    return _to_tensor(content)


TILE_OVERLAP = 0.25
"""Least overlap of neighbouring native tiles (a share of the tile): every seam between two tiles lies inside
a band both read, where :func:`fakelens.tiling.stitch` cross-fades their maps."""


def view_geometries(
    size: tuple[int, int], spec: InputSpec, *, max_tiles: int | None = None, overlap: float = TILE_OVERLAP
) -> list[Geometry]:
    """The Geometries of the views :func:`prepare_views` reads of an image of ``size`` ``(H, W)``: its
    native tiles for a ``native`` spec, else the one fit (checks the size)."""
    if spec.mode == "native":
        return Geometry.tiles(size, spec.size, max_tiles, overlap)
    return [Geometry.fit(size, spec.size, spec.mode)]


def prepare_views(
    image: Image.Image, spec: InputSpec, *, max_tiles: int | None = None, overlap: float = TILE_OVERLAP
) -> tuple[Tensor, list[Geometry]]:
    """Every view a detector reads of one image → ``(V, 3, H, W)`` pixels in [0, 1] and V Geometries.

    One view (:func:`prepare`) for every mode but ``native``, whose views are the native-scale tiles of
    :meth:`Geometry.tiles` (at most ``max_tiles``, overlapping by ``overlap``): an image larger than the
    input is read at its own pixel grid, piece by piece, instead of being shrunk (which erases the traces
    forensic detectors look for).
    """
    if spec.mode != "native":
        x, g = prepare(image, spec)
        return x[None], [g]
    geoms = view_geometries((image.height, image.width), spec, max_tiles=max_tiles, overlap=overlap)
    rgb = to_rgb(image)
    return torch.stack([_place(rgb, g, spec) for g in geoms]), geoms


def prepare_batch(
    images: Sequence[Image.Image],
    spec: InputSpec,
    *,
    resample: Image.Resampling = Image.Resampling.BILINEAR,
) -> tuple[Tensor, list[Geometry]]:
    """:func:`prepare` each image → ``(B, 3, H, W)`` pixels in [0, 1] and one Geometry per image."""
    if len(images) == 0:
        return torch.zeros((0, 3, *spec.size), dtype=torch.float32), []
    pairs = [prepare(img, spec, resample=resample) for img in images]
    return torch.stack([x for x, _ in pairs]), [g for _, g in pairs]
