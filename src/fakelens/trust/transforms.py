r"""Views of an image under scale, rotation, translation and flips, with black fill and exact inverses.

A :class:`Transform` is an affine map of the pixel plane, ``p_view = A p_ref + t``, written in *centred pixel
coordinates* (origin at the grid centre, ``x`` right, ``y`` down, one unit = one pixel). It is applied to the
prepared pixels (``(B, 3, H, W)`` in [0, 1], **before** normalisation) with ``F.affine_grid`` /
``F.grid_sample`` (bilinear, ``align_corners=False``); where the view looks outside the image the fill is
black *pixels* (``fill="black"``, zero padding in pixel space). ``"mean"`` (the normalisation mean colour,
i.e. zero after normalisation) and ``"reflect"`` (reflection padding) are the controls: after ImageNet
normalisation black is about −2, not 0, so a method that reacts to the fill should react differently to them.

With ``align_corners=False`` the normalised coordinate of a point is ``n = 2c / W`` (``2c / H`` for ``y``),
so the sampling matrix of the warp is ``θ = [D A⁻¹ D⁻¹ | −D A⁻¹ t]`` with ``D = diag(2/W, 2/H)``; the
**inverse warp**, which carries a map on the view's grid back onto the reference grid, is the exact inverse
affine ``θ⁻¹ = [D A D⁻¹ | D t]`` sampled with the same interpolation and ``align_corners``. Flips (and 180°
rotations, and 90° rotations of square grids) map pixel centres onto pixel centres, so warp and inverse are
then exact permutations.

**Validity.** A view pixel is *valid* when it came from the image: the reference valid mask (False on
letterbox padding) warped like the pixels, thresholded at ``VALID_THRESHOLD = 0.999``: a bilinear sample is
valid only if all of its taps with non-negligible weight are valid (a pixel half on the fill is fill, not
image). A reference pixel can be compared with the view when the view's valid mask, carried back by the
inverse warp, is again ≥ 0.999 there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from fakelens.errors import ConfigError

__all__ = [
    "FILLS",
    "VALID_THRESHOLD",
    "Fill",
    "Step",
    "Transform",
    "TransformFamily",
    "ViewBatch",
    "make_views",
    "sampling_grid",
    "unwarp",
    "warp",
]

Fill = Literal["black", "mean", "reflect"]
FILLS: tuple[Fill, ...] = ("black", "mean", "reflect")
VALID_THRESHOLD = 0.999
"""A warped mask value at or above this counts as valid (every non-negligible bilinear tap was valid)."""

Matrix = tuple[tuple[float, float], tuple[float, float]]


def _matmul(a: Matrix, b: Matrix) -> Matrix:
    return (
        (a[0][0] * b[0][0] + a[0][1] * b[1][0], a[0][0] * b[0][1] + a[0][1] * b[1][1]),
        (a[1][0] * b[0][0] + a[1][1] * b[1][0], a[1][0] * b[0][1] + a[1][1] * b[1][1]),
    )


def _apply(a: Matrix, v: tuple[float, float]) -> tuple[float, float]:
    return a[0][0] * v[0] + a[0][1] * v[1], a[1][0] * v[0] + a[1][1] * v[1]


def _clean(v: float) -> float:
    """Snap values within 1e-12 of an integer (cos 90° = 6e-17) so flips and quarter turns stay exact."""
    r = round(v)
    return float(r) if abs(v - r) < 1e-12 else v


@dataclass(frozen=True)
class Step:
    """One primitive of a transform: a linear map (pixel units) or a shift (fractions of ``(W, H)``)."""

    linear: Matrix = ((1.0, 0.0), (0.0, 1.0))
    shift: tuple[float, float] = (0.0, 0.0)

    def inverse(self) -> Step:
        (a, b), (c, d) = self.linear
        det = a * d - b * c
        if abs(det) < 1e-12:
            raise ConfigError("a transform step is not invertible")
        inv: Matrix = ((_clean(d / det), _clean(-b / det)), (_clean(-c / det), _clean(a / det)))
        return Step(inv, (-self.shift[0], -self.shift[1]))


@dataclass(frozen=True)
class Transform:
    """An affine map ``p_view = A p_ref + t`` of the centred pixel plane, built from primitive steps.

    ``kind`` is one of ``identity, scale, rotate, translate, hflip, vflip, compose``; ``strength`` a number
    for plots (scale factor, angle in degrees, shift as a signed fraction of the image size, 1 for flips).
    Shifts are stored as fractions of ``(W, H)`` and the linear parts in pixel units, so one transform fits
    any grid (a rotation stays a rotation of the pixels on a non-square grid).
    """

    name: str
    kind: str
    strength: float
    steps: tuple[Step, ...] = ()

    # ------------------------------------------------------------------------------------------ builders

    @classmethod
    def identity(cls) -> Transform:
        return cls("identity", "identity", 0.0)

    @classmethod
    def scale(cls, s: float) -> Transform:
        """Zoom by ``s`` about the centre (``s < 1`` shrinks the image and leaves a fill border)."""
        if not s > 0:
            raise ConfigError(f"scale factor must be positive, got {s}")
        return cls(f"scale({s:g})", "scale", float(s), (Step(((s, 0.0), (0.0, s))),))

    @classmethod
    def rotate(cls, degrees: float) -> Transform:
        """Rotate about the centre by ``degrees``, counter-clockwise as displayed (y points down)."""
        a = math.radians(degrees)
        c, s = _clean(math.cos(a)), _clean(math.sin(a))
        return cls(f"rotate({degrees:+g})", "rotate", float(degrees), (Step(((c, s), (-s, c))),))

    @classmethod
    def translate(cls, fx: float, fy: float = 0.0) -> Transform:
        """Shift by ``fx·W`` to the right and ``fy·H`` down; strength is the signed larger fraction."""
        strength = fx if abs(fx) >= abs(fy) else fy
        return cls(f"translate({fx:+g},{fy:+g})", "translate", float(strength), (Step(shift=(fx, fy)),))

    @classmethod
    def hflip(cls) -> Transform:
        return cls("hflip", "hflip", 1.0, (Step(((-1.0, 0.0), (0.0, 1.0))),))

    @classmethod
    def vflip(cls) -> Transform:
        return cls("vflip", "vflip", 1.0, (Step(((1.0, 0.0), (0.0, -1.0))),))

    def then(self, other: Transform) -> Transform:
        """``other ∘ self``: first this transform, then ``other``."""
        if self.kind == "identity":
            return other
        if other.kind == "identity":
            return self
        return Transform(f"{self.name}>{other.name}", "compose", 1.0, self.steps + other.steps)

    @classmethod
    def compose(cls, *steps: Transform) -> Transform:
        """Apply ``steps`` in order (the first is applied first)."""
        out = cls.identity()
        for s in steps:
            out = out.then(s)
        return out

    # ------------------------------------------------------------------------------------------ algebra

    def inverse(self) -> Transform:
        """The exact inverse (steps inverted, in reverse order)."""
        return Transform(
            f"inverse({self.name})",
            self.kind,
            self.strength,
            tuple(s.inverse() for s in reversed(self.steps)),
        )

    def pixel_matrix(self, hw: tuple[int, int]) -> tuple[Matrix, tuple[float, float]]:
        """``(A, t)`` in centred pixel units for an ``(H, W)`` grid: ``p_view = A p_ref + t``."""
        h, w = hw
        a: Matrix = ((1.0, 0.0), (0.0, 1.0))
        t = (0.0, 0.0)
        for s in self.steps:
            a = _matmul(s.linear, a)
            lt = _apply(s.linear, t)
            t = (lt[0] + s.shift[0] * w, lt[1] + s.shift[1] * h)
        return a, t

    def theta(self, hw: tuple[int, int], *, inverse: bool = False) -> Tensor:
        r"""``(2, 3)`` float64 sampling matrix for ``F.affine_grid(align_corners=False)``.

        The forward warp samples the reference at ``A⁻¹(p − t)``: ``θ = [D A⁻¹ D⁻¹ | −D A⁻¹ t]``; the
        inverse warp samples the view at ``A p + t``: ``θ = [D A D⁻¹ | D t]``, ``D = diag(2/W, 2/H)``.
        """
        h, w = hw
        lin, (tx, ty) = (self if inverse else self.inverse()).pixel_matrix(hw)
        d0, d1 = 2.0 / w, 2.0 / h
        return torch.tensor(
            [
                [lin[0][0], lin[0][1] * d0 / d1, d0 * tx],
                [lin[1][0] * d1 / d0, lin[1][1], d1 * ty],
            ],
            dtype=torch.float64,
        )

    @property
    def has_fill(self) -> bool:
        """Whether the view can show fill: anything but the identity, flips, half turns and their mixes."""
        (a, b), (c, d) = self.pixel_matrix((1, 1))[0]
        _, t = self.pixel_matrix((1, 1))
        if abs(t[0]) > 1e-12 or abs(t[1]) > 1e-12:
            return True
        return not (abs(b) < 1e-12 and abs(c) < 1e-12 and abs(abs(a) - 1) < 1e-12 and abs(abs(d) - 1) < 1e-12)

    def to_dict(self) -> dict[str, object]:
        a, t = self.pixel_matrix((1, 1))
        return {
            "name": self.name,
            "kind": self.kind,
            "strength": self.strength,
            "linear": [list(r) for r in a],
            "shift": list(t),
        }


# ---------------------------------------------------------------------------------------------- warping


def _thetas(transforms: Sequence[Transform], hw: tuple[int, int], inverse: bool, like: Tensor) -> Tensor:
    th = torch.stack([t.theta(hw, inverse=inverse) for t in transforms])
    return th.to(device=like.device, dtype=like.dtype if like.is_floating_point() else torch.float32)


def sampling_grid(
    transforms: Sequence[Transform],
    hw: tuple[int, int],
    *,
    images: int = 1,
    inverse: bool = False,
    like: Tensor | None = None,
) -> Tensor:
    """``(images·K, H, W, 2)`` ``F.affine_grid`` (``align_corners=False``) of the forward warps, or of the
    inverse warps with ``inverse=True``; image-major like every batch here."""
    ref = like if like is not None else torch.zeros(())
    theta = _thetas(transforms, hw, inverse, ref).repeat(images, 1, 1)
    return F.affine_grid(theta, [theta.shape[0], 1, *hw], align_corners=False)


def _sample(src: Tensor, grid: Tensor, fill: Fill, mean: Sequence[float]) -> Tensor:
    c = src.shape[1]
    if fill == "black":
        return F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if fill == "reflect":
        return F.grid_sample(src, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if fill == "mean":
        m = torch.tensor(list(mean)[:c], device=src.device, dtype=src.dtype).view(1, c, 1, 1)
        return F.grid_sample(src - m, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + m
    raise ConfigError(f"unknown fill {fill!r}: use one of {', '.join(FILLS)}")


def _reflected(n: int, lo: int, hi: int, device: torch.device) -> Tensor:
    """Indices ``0 … n−1`` mirrored into ``[lo, hi)`` (symmetric reflection, period ``2·(hi − lo)``)."""
    span = hi - lo
    i = (torch.arange(n, device=device) - lo) % (2 * span)
    return torch.where(i >= span, 2 * span - 1 - i, i) + lo


def _fill_padding(pixels: Tensor, valid: Tensor, fill: Fill, mean: Sequence[float]) -> Tensor:
    """``pixels (B, C, H, W)`` with the pixels outside ``valid (B, H, W)`` (letterbox or small-image padding)
    filled as ``fill`` fills the outside of a view: the ``mean`` colour, or the image ``reflect``-ed about its
    valid box."""
    out = pixels.clone()
    c = pixels.shape[1]
    m = torch.tensor(list(mean)[:c], device=pixels.device, dtype=pixels.dtype).view(c, 1, 1)
    for i in range(pixels.shape[0]):
        v = valid[i]
        if bool(v.all()) or not bool(v.any()):
            continue
        if fill == "mean":
            out[i] = torch.where(v, pixels[i], m)
            continue
        ys, xs = v.any(1).nonzero()[:, 0], v.any(0).nonzero()[:, 0]
        rows = _reflected(pixels.shape[2], int(ys[0]), int(ys[-1]) + 1, pixels.device)
        cols = _reflected(pixels.shape[3], int(xs[0]), int(xs[-1]) + 1, pixels.device)
        out[i] = torch.where(v, pixels[i], pixels[i][:, rows][:, :, cols])
    return out


def warp(
    pixels: Tensor,
    transforms: Sequence[Transform],
    *,
    fill: Fill = "black",
    mean: Sequence[float] = (0.485, 0.456, 0.406),
) -> Tensor:
    """Warp each of ``B`` images by each of ``K`` transforms → ``(B·K, C, H, W)``, image-major.

    ``pixels`` are in [0, 1] (not normalised). ``fill``: ``black`` (zero padding of the pixels), ``mean``
    (the colour ``mean`` in pixel units: zero after normalisation) or ``reflect`` (reflection padding).
    """
    if pixels.dim() != 4:
        raise ValueError(f"pixels must be (B, C, H, W), got {tuple(pixels.shape)}")
    b, _, h, w = pixels.shape
    grid = sampling_grid(transforms, (h, w), images=b, like=pixels)
    return _sample(pixels.repeat_interleave(len(transforms), dim=0), grid, fill, mean)


def unwarp(
    maps: Tensor, transforms: Sequence[Transform], *, images: int = 1, grid: Tensor | None = None
) -> Tensor:
    """Carry maps on the views' grids back onto the reference grid (exact inverse affine, bilinear,
    ``align_corners=False``, zero outside the view): ``(images·K, H, W)`` or ``(images·K, C, H, W)`` (several
    maps per view in one sampling). ``grid``: a precomputed inverse :func:`sampling_grid`."""
    x = maps[:, None] if maps.dim() == 3 else maps
    n, _, h, w = x.shape
    k = len(transforms)
    if n != images * k:
        raise ValueError(f"{n} maps for {images} image(s) × {k} transforms")
    g = grid if grid is not None else sampling_grid(transforms, (h, w), images=images, inverse=True, like=x)
    out = F.grid_sample(x.to(g.dtype), g, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[:, 0] if maps.dim() == 3 else out


# ---------------------------------------------------------------------------------------------- views


@dataclass
class ViewBatch:
    """``K`` views of each of ``B`` images, as one batch (image-major: row ``b·K + k``).

    ``pixels (B·K, 3, H, W)`` in [0, 1]; ``valid (B·K, H, W)`` pixels that came from the image;
    ``back_valid (B·K, H, W)`` reference pixels that the view shows (its valid mask carried back, ≥ 0.999)
    and that are valid in the reference; ``fill_fraction (B·K,)`` = ``|V_Tᶜ| / N``. ``back_grid`` is the
    inverse warps' sampling grid, computed once.
    """

    transforms: list[Transform]
    fills: list[Fill]
    pixels: Tensor
    valid: Tensor
    back_valid: Tensor
    images: int
    back_grid: Tensor | None = None

    @property
    def k(self) -> int:
        return len(self.transforms)

    @property
    def fill_fraction(self) -> Tensor:
        return 1.0 - self.valid.flatten(1).float().mean(1)

    def unwarp(self, maps: Tensor) -> Tensor:
        """``(B·K, H, W)`` or ``(B·K, C, H, W)`` maps on the views' grids → the reference grid."""
        return unwarp(maps, self.transforms, images=self.images, grid=self.back_grid)

    def index(self, image: int, view: int) -> int:
        return image * self.k + view

    def image(self, b: int) -> ViewBatch:
        """The ``K`` views of image ``b`` alone."""
        rows = slice(b * self.k, (b + 1) * self.k)
        grid = None if self.back_grid is None else self.back_grid[rows]
        return ViewBatch(
            self.transforms, self.fills, self.pixels[rows], self.valid[rows], self.back_valid[rows], 1, grid
        )


def make_views(
    pixels: Tensor,
    transforms: Sequence[Transform],
    *,
    fills: Sequence[Fill] | Fill = "black",
    valid: Tensor | None = None,
    mean: Sequence[float] = (0.485, 0.456, 0.406),
) -> ViewBatch:
    """Warp ``B`` images ``(B, 3, H, W)`` by ``K`` transforms (each with its own fill) as one batch.

    ``valid (B, H, W)`` marks the reference pixels that show the image (default: all). One forward and one
    inverse sampling grid serve the pixels of every fill, the valid masks and, later, every method's maps.
    """
    if pixels.dim() == 3:
        pixels = pixels[None]
    b, c, h, w = pixels.shape
    k = len(transforms)
    if k == 0:
        raise ConfigError("no transforms given")
    fill_list: list[Fill] = [fills] * k if isinstance(fills, str) else list(fills)
    if len(fill_list) != k:
        raise ValueError(f"{len(fill_list)} fills for {k} transforms")
    for f in fill_list:
        if f not in FILLS:
            raise ConfigError(f"unknown fill {f!r}: use one of {', '.join(FILLS)}")
    ref_valid = (
        torch.ones(b, h, w, dtype=torch.bool, device=pixels.device)
        if valid is None
        else valid.to(pixels.device).reshape(b, h, w).bool()
    )
    grid = sampling_grid(transforms, (h, w), images=b, like=pixels)
    back_grid = sampling_grid(transforms, (h, w), images=b, inverse=True, like=pixels)
    # the pixels and the valid mask ride through one grid_sample (black fill = zero padding)
    src = torch.cat([pixels, ref_valid[:, None].to(pixels.dtype)], dim=1).repeat_interleave(k, dim=0)
    black = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out = black[:, :c].contiguous()
    view_valid = black[:, c] >= VALID_THRESHOLD
    for f in dict.fromkeys(fill_list):
        if f == "black":
            continue
        rows = torch.tensor(
            [i * k + j for i in range(b) for j, ff in enumerate(fill_list) if ff == f], device=pixels.device
        )
        # a letterboxed or padded image's own black padding is fill too: the control fills it as well
        base = (
            src[rows, :c] if bool(ref_valid.all()) else _fill_padding(pixels, ref_valid, f, mean)[rows // k]
        )
        out[rows] = _sample(base, grid[rows], f, mean)
    back = unwarp(view_valid.to(pixels.dtype), list(transforms), images=b, grid=back_grid) >= VALID_THRESHOLD
    back = back & ref_valid.repeat_interleave(k, dim=0)
    return ViewBatch(list(transforms), fill_list, out, view_valid, back, b, back_grid)


# ---------------------------------------------------------------------------------------------- families


@dataclass(frozen=True)
class TransformFamily:
    """A named, ordered set of transforms; the identity is always explained alongside (as view 0)."""

    name: str
    transforms: tuple[Transform, ...]

    def __iter__(self) -> Iterator[Transform]:
        return iter(self.transforms)

    def __len__(self) -> int:
        return len(self.transforms)

    def controls(self) -> tuple[Transform, ...]:
        """The strongest transform of each kind that shows fill: the views re-run with mean/reflect fill."""
        best: dict[str, Transform] = {}
        for t in self.transforms:
            if not t.has_fill or t.kind == "compose":
                continue
            if t.kind not in best or abs(t.strength - (1.0 if t.kind == "scale" else 0.0)) > abs(
                best[t.kind].strength - (1.0 if t.kind == "scale" else 0.0)
            ):
                best[t.kind] = t
        return tuple(best.values())

    @classmethod
    def standard(cls) -> TransformFamily:
        """The default sweep: scale 0.5–1.5, rotation ±45°, translation ±30 %, flips and compositions."""
        ts: list[Transform] = [Transform.scale(s) for s in (0.5, 0.7, 0.85, 1.2, 1.5)]
        ts += [Transform.rotate(a) for a in (-45, -30, -15, 15, 30, 45)]
        ts += [Transform.translate(f, 0.0) for f in (-0.3, -0.15, 0.15, 0.3)]
        ts += [Transform.translate(0.0, f) for f in (-0.3, 0.3)]
        ts += [Transform.hflip(), Transform.vflip()]
        ts += [
            Transform.compose(Transform.hflip(), Transform.rotate(30), Transform.scale(0.8)),
            Transform.compose(Transform.rotate(-20), Transform.translate(0.1, -0.1)),
        ]
        return cls("standard", tuple(ts))

    @classmethod
    def quick(cls) -> TransformFamily:
        """Eight views for a first look: one or two strengths of each kind."""
        ts = [
            Transform.scale(0.6),
            Transform.scale(1.3),
            Transform.rotate(-30),
            Transform.rotate(30),
            Transform.translate(0.2, 0.0),
            Transform.translate(0.0, -0.2),
            Transform.hflip(),
            Transform.compose(Transform.vflip(), Transform.rotate(15)),
        ]
        return cls("quick", tuple(ts))

    @classmethod
    def badge(cls) -> TransformFamily:
        """The small fixed set behind the robustness badge: hflip, rotate 15°, scale 0.8, translate 10 %."""
        return cls(
            "badge",
            (Transform.hflip(), Transform.rotate(15), Transform.scale(0.8), Transform.translate(0.1, 0.1)),
        )

    @classmethod
    def exact(cls, square: bool = True) -> TransformFamily:
        """Transforms that map pixel centres onto pixel centres (flips, 180°, and 90° turns if square)."""
        ts = [Transform.hflip(), Transform.vflip(), Transform.rotate(180)]
        if square:
            ts += [
                Transform.rotate(90),
                Transform.rotate(-90),
                Transform.compose(Transform.hflip(), Transform.rotate(90)),
            ]
        return cls("exact", tuple(ts))

    @classmethod
    def named(cls, name: str) -> TransformFamily:
        presets = {"standard": cls.standard, "quick": cls.quick, "badge": cls.badge, "exact": cls.exact}
        if name not in presets:
            raise ConfigError(f"unknown transform family {name!r} (known: {', '.join(presets)})")
        return presets[name]()


def strongest(transforms: Iterable[Transform]) -> list[Transform]:
    """Helper for reports: transforms sorted by kind, then strength."""
    return sorted(transforms, key=lambda t: (t.kind, t.strength))
