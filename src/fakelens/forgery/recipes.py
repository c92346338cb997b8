r"""Forgery recipes: ``(image, rng) -> (fake, mask)`` with the exact mask of what changed.

Every recipe builds an *altered* image ``A`` and a soft mask ``M`` in [0, 1], and the fake is

.. math:: \text{fake} = \operatorname{round}\big(\text{real} + M \odot (A - \text{real})\big),

with ``fake == real`` byte for byte wherever ``M == 0``. So ``M`` is the weight of altered content in every
pixel: the ground truth for localisation, and ``4M(1 − M)`` is the blending seam (Face X-ray).
Recipes are registered in :data:`RECIPES`; most have *variants* (``upsample:global``), chosen at random per
sample when none is named. Real and fake must then go through :func:`fakelens.forgery.encode.encode_pair`.

>>> rng = np.random.default_rng(0)
>>> fake, mask = RECIPES.create("upsample", variant="regional")(image, rng)      # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import cv2
import numpy as np
from PIL import Image

from fakelens.data.faces import Face, face_mask
from fakelens.errors import ConfigError, ForgeryError, ImageError
from fakelens.forgery.encode import decode, encode_pair
from fakelens.forgery.ops import (
    blend,
    blob_mask,
    clean_mask,
    colour_transfer,
    elastic_field,
    jpeg_roundtrip,
    mask_bbox,
    remap,
    soften,
)
from fakelens.io import to_rgb
from fakelens.registry import Registry

__all__ = [
    "RECIPES",
    "Forgery",
    "Recipe",
    "make_recipe",
    "parse_recipes",
    "recipe_specs",
]

MIN_SIDE = 8
MIN_CHANGE = 1.0
"""Grey levels: a draw whose fake differs from the real by less, on average over the mask's core
(``M ≥ ½ max M``, the largest channel difference per pixel; after the final encoding when
:meth:`Recipe.apply` is given it), is drawn again: a fake that is its real is label noise."""
MAX_DRAWS = 8
ForgeResult = tuple[np.ndarray, np.ndarray, dict[str, Any]]


@dataclass(frozen=True)
class Forgery:
    """A fake, its mask, the recipe that made it (``name`` or ``name:variant``) and its drawn parameters."""

    fake: np.ndarray
    mask: np.ndarray
    recipe: str
    params: dict[str, Any] = field(default_factory=dict)


class Recipe:
    """Base class: subclasses set ``name`` (and ``variants``) and implement :meth:`forge`.

    ``final_format`` forces the format of the final common encoding (``double_jpeg`` needs a JPEG pass).
    """

    name: ClassVar[str] = ""
    variants: ClassVar[tuple[str, ...]] = ()
    final_format: ClassVar[str | None] = None
    uses_faces: ClassVar[bool] = False
    uses_donor: ClassVar[bool] = False

    def __init__(self, variant: str | None = None) -> None:
        if variant is not None and variant not in self.variants:
            known = ", ".join(self.variants) or "none"
            raise ConfigError(f"recipe {self.name!r} has no variant {variant!r} (variants: {known})")
        self.variant = variant

    def __repr__(self) -> str:
        return f"{type(self).__name__}(variant={self.variant!r})"

    def __call__(
        self,
        image: np.ndarray | Image.Image,
        rng: np.random.Generator | int,
        *,
        faces: Sequence[Face] | None = None,
        donor: np.ndarray | None = None,
        donor_faces: Sequence[Face] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(fake uint8 (H, W, 3), mask float32 (H, W) in [0, 1])``."""
        f = self.apply(image, rng, faces=faces, donor=donor, donor_faces=donor_faces)
        return f.fake, f.mask

    def apply(
        self,
        image: np.ndarray | Image.Image,
        rng: np.random.Generator | int,
        *,
        faces: Sequence[Face] | None = None,
        donor: np.ndarray | None = None,
        donor_faces: Sequence[Face] | None = None,
        encoding: tuple[str, int] | None = None,
    ) -> Forgery:
        """Like calling the recipe, but also returns the variant drawn and the parameters. ``rng``: a
        generator, or an int seed for one. ``image``: RGB uint8 (H, W, 3), or a PIL image or RGBA uint8
        (H, W, 4) array, made RGB by :func:`fakelens.io.to_rgb` (transparent pixels composited on white).

        A grey photo (channels equal) gets a grey fake. A draw that changes the mask's core by less than
        :data:`MIN_CHANGE` is drawn again, up to :data:`MAX_DRAWS` times (``params["draws"]`` counts them
        when there was more than one); ``encoding``, ``(format, quality)`` of the final common encoding
        (``encode_pair``), measures that change after it, as the files will hold it. When the last draw
        still changes less (a flat image, or a region the final JPEG pass smooths back), a
        :class:`~fakelens.errors.ForgeryError` is raised: a fake equal to its real is never returned.
        """
        img = _check_image(image)
        if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
            rng = np.random.default_rng(int(rng))
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy Generator or an int seed, not {type(rng).__name__}")
        variant = self.variant
        if variant is None and self.variants:
            variant = str(self.variants[int(rng.integers(len(self.variants)))])
        h, w = img.shape[:2]
        inside = [f for f in (faces or []) if f.inside(w, h)]
        grey = int(np.ptp(img, axis=2).max()) <= 2
        for draw in range(1, MAX_DRAWS + 1):  # noqa: B007 (the draws taken are counted below)
            alt, mask, params = self.forge(
                img, rng, variant or "", faces=inside, donor=donor, donor_faces=list(donor_faces or [])
            )
            if grey:  # a grey photo stays grey: colour where there was none is a shortcut, not a trace
                alt = np.asarray(alt, np.float32)
                alt = alt.mean(axis=2, keepdims=True) + (img - img.mean(axis=2, keepdims=True))
            mask = clean_mask(mask)
            if not mask.any():  # degenerate draw (e.g. a 1-pixel region): change one pixel, honestly masked
                mask[h // 2, w // 2] = 1.0
            fake = blend(img, alt, mask)
            change = _core_change(*_encoded(img, fake, encoding), mask)
            if change >= MIN_CHANGE:
                break
        else:
            after = f" after {encoding[0]} encoding" if encoding is not None else ""
            raise ForgeryError(
                f"{self.name} cannot change this {w}x{h} image: its fake differs from the real by "
                f"{change:.2f} grey levels{after} in the mask's core after {MAX_DRAWS} draws "
                f"(under {MIN_CHANGE:g}; a flat image?)"
            )
        if draw > 1:
            params = {**params, "draws": draw}
        label = f"{self.name}:{variant}" if variant else self.name
        return Forgery(fake=fake, mask=mask, recipe=label, params=params)

    def forge(
        self,
        image: np.ndarray,
        rng: np.random.Generator,
        variant: str,
        *,
        faces: list[Face],
        donor: np.ndarray | None,
        donor_faces: list[Face],
    ) -> ForgeResult:
        """Return the altered image ``A`` (float32 or uint8), the mask ``M`` and the drawn parameters."""
        raise NotImplementedError


RECIPES: Registry[Recipe] = Registry("recipe")


def _encoded(
    real: np.ndarray, fake: np.ndarray, encoding: tuple[str, int] | None
) -> tuple[np.ndarray, np.ndarray]:
    """The pair as the final common encoding leaves it (unchanged without one, or for PNG)."""
    if encoding is None or encoding[0].lower() == "png":
        return real, fake
    rb, fb = encode_pair(real, fake, encoding[0], int(encoding[1]))
    return decode(rb), decode(fb)


def _core_change(real: np.ndarray, fake: np.ndarray, mask: np.ndarray) -> float:
    """Mean over the mask's core (``M ≥ ½ max M``) of the largest channel difference |fake − real|."""
    core = mask >= 0.5 * float(mask.max())
    diff = np.abs(fake.astype(np.int16) - real.astype(np.int16)).max(axis=2)
    return float(diff[core].mean())


def _check_image(image: np.ndarray | Image.Image) -> np.ndarray:
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 4:
        image = Image.fromarray(np.ascontiguousarray(image), "RGBA")  # as an RGBA PIL image: on white
    if isinstance(image, Image.Image):  # a PIL image as fakelens.io.load_image returns it
        image = np.asarray(to_rgb(image), dtype=np.uint8)
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise ImageError(
            f"recipes need an RGB uint8 (H, W, 3) array, got {getattr(image, 'dtype', '?')} {shape}"
        )
    if min(image.shape[:2]) < MIN_SIDE:
        raise ImageError(f"image too small for a forgery: {image.shape[:2]} (min side {MIN_SIDE})")
    return np.ascontiguousarray(image)


# --------------------------------------------------------------------------------------------- regions
def _face_region(
    shape: tuple[int, int], rng: np.random.Generator, face: Face, deform: bool = True
) -> np.ndarray:
    """A face mask from the landmarks (hull or ellipse at random), elastically deformed and softened (SBI)."""
    kind: Literal["hull", "ellipse"] = "hull" if rng.random() < 0.6 else "ellipse"
    hard = face_mask(face, shape, kind)
    if deform:
        size = max(face.size, 4.0)
        dx, dy = elastic_field(shape, rng, amplitude=rng.uniform(0.01, 0.04) * size, scale=size / 3)
        hard = remap(hard, dx, dy)
        if rng.random() < 0.5:  # random erosion / dilation
            k = max(1, round(rng.uniform(0.02, 0.08) * size))
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
            hard = cv2.erode(hard, kernel) if rng.random() < 0.5 else cv2.dilate(hard, kernel)
    m = soften(hard, rng.uniform(0.02, 0.10) * face.size)
    return m if m.any() else hard


def _region(
    shape: tuple[int, int],
    rng: np.random.Generator,
    faces: list[Face],
    area: tuple[float, float] = (0.05, 0.25),
    softness: tuple[float, float] = (0.05, 0.25),
) -> tuple[np.ndarray, Face | None]:
    """A face region when there are faces, else a random smooth blob."""
    if faces:
        face = faces[int(rng.integers(len(faces)))]
        m = _face_region(shape, rng, face)
        if m.any():
            return m, face
    return blob_mask(shape, rng, area=area, softness=softness), None


def _centre_and_size(mask: np.ndarray, face: Face | None) -> tuple[float, float, float]:
    if face is not None:
        cx, cy = face.center
        return cx, cy, face.size
    ys, xs = np.nonzero(mask > 0.5)
    if ys.size == 0:
        ys, xs = np.nonzero(mask > 0)
    return float(xs.mean()), float(ys.mean()), max(2.0, math.sqrt(float(ys.size)))


def _similarity(cx: float, cy: float, scale: float, angle_deg: float, tx: float, ty: float) -> np.ndarray:
    m = cv2.getRotationMatrix2D((cx, cy), angle_deg, scale)
    m[:, 2] += np.array([tx, ty], dtype=np.float64)
    return np.asarray(m, dtype=np.float64)


def _warp(image: np.ndarray, m: np.ndarray, interp: int = cv2.INTER_LINEAR) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.warpAffine(image, m, (w, h), flags=interp, borderMode=cv2.BORDER_REFLECT_101)


# ---------------------------------------------------------------------------------------------- recipes
@RECIPES.register("self_blend")
class SelfBlend(Recipe):
    """Self-blended images (Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended Images", CVPR 2022).

    The source is a copy of the image with colour (RGB/brightness/contrast/saturation) jitter, sharpening or
    blurring, a scale/translation jitter about the region and a slight elastic warp; it is blended back inside
    a deformed, blurred face mask (landmark hull or ellipse), or a random smooth region when there is no face,
    with a blend ratio drawn from {.25, .5, .75, 1, 1, 1}.
    """

    name = "self_blend"
    uses_faces = True

    def forge(
        self,
        image: np.ndarray,
        rng: np.random.Generator,
        variant: str,
        *,
        faces: list[Face],
        donor: np.ndarray | None,
        donor_faces: list[Face],
    ) -> ForgeResult:
        shape = image.shape[:2]
        mask, face = _region(shape, rng, faces, area=(0.08, 0.3))
        src = image.astype(np.float32)
        # colour
        shift = rng.uniform(-20, 20, size=3).astype(np.float32)
        contrast, bright = rng.uniform(0.85, 1.15), rng.uniform(-12, 12)
        mean = src.mean(axis=(0, 1), keepdims=True)
        src = (src - mean) * contrast + mean + bright + shift
        sat = rng.uniform(0.8, 1.2)
        grey = src.mean(axis=2, keepdims=True)
        src = grey + (src - grey) * sat
        # frequency
        freq = ("sharpen", "blur", "none")[int(rng.integers(3))]
        if freq == "sharpen":
            src = src + rng.uniform(0.3, 1.0) * (src - cv2.GaussianBlur(src, (0, 0), 1.0))
        elif freq == "blur":
            h, w = shape
            s = rng.uniform(0.4, 0.85)
            small = cv2.resize(
                src, (max(2, round(w * s)), max(2, round(h * s))), interpolation=cv2.INTER_AREA
            )
            src = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        # geometry
        cx, cy, size = _centre_and_size(mask, face)
        scale = rng.uniform(0.95, 1.05)
        tx, ty = rng.uniform(-0.03, 0.03, size=2) * size
        src = _warp(src, _similarity(cx, cy, scale, 0.0, float(tx), float(ty)))
        dx, dy = elastic_field(shape, rng, amplitude=rng.uniform(0.3, 1.5), scale=max(size / 2, 4.0))
        src = remap(src, dx, dy)
        ratio = float(rng.choice([0.25, 0.5, 0.75, 1.0, 1.0, 1.0]))
        params = {"ratio": ratio, "freq": freq, "scale": scale, "face": face is not None}
        return np.clip(src, 0, 255), mask * ratio, params


def _nearest_pose(donors: Sequence[Face], face: Face, draw: int) -> Face:
    """The donor face whose five landmarks, aligned to ``face``'s by a similarity, lie nearest to them
    (mean distance over the face's size); ``draw`` picks among those within 25 % of the best. The face itself
    (a donor crop of the same group photo may hold it: error ≈ 0) is never its own donor."""
    target = face.points().astype(np.float64)
    errors = []
    for d in donors:
        src = d.points().astype(np.float64)
        m, _ = cv2.estimateAffinePartial2D(src.astype(np.float32), target.astype(np.float32))
        if m is None:
            errors.append(math.inf)
            continue
        moved = src @ m[:, :2].T + m[:, 2]
        errors.append(float(np.linalg.norm(moved - target, axis=1).mean()) / max(face.size, 1.0))
    others = [(d, e) for d, e in zip(donors, errors, strict=True) if e > 1e-3]  # not the face itself
    if not others:
        return donors[draw % len(donors)]
    best = min(e for _, e in others)
    near = [d for d, e in others if e <= 1.25 * best]
    return near[draw % len(near)]


@RECIPES.register("cross_blend")
class CrossBlend(Recipe):
    """Cross-image blending (Li et al., "Face X-ray for More General Face Forgery Detection", CVPR 2020).

    A region of another real photo (``donor``) is aligned to the target (by a similarity fitted on the five
    landmarks when both have faces — the donor face whose landmarks fit the target's best, as Face X-ray
    picks its donors, so a frontal face is not pasted onto a profile — else a random similarity),
    colour-transferred in Lab (Reinhard) to the target region, elastically deformed, and blended inside a
    deformed soft mask. Without a donor, a mirrored, shifted copy of the image itself stands in (a copy-move
    of mirrored content). The best fit is among ``donor_faces``: ``data synth`` passes the face it chose by
    pose across the split's photos; ``params["pose_error"]`` is the aligned landmarks' mean distance over
    the face's size.
    """

    name = "cross_blend"
    uses_faces = True
    uses_donor = True

    def forge(
        self,
        image: np.ndarray,
        rng: np.random.Generator,
        variant: str,
        *,
        faces: list[Face],
        donor: np.ndarray | None,
        donor_faces: list[Face],
    ) -> ForgeResult:
        h, w = image.shape[:2]
        if donor is None:
            donor = np.ascontiguousarray(np.roll(image[:, ::-1], (h // 3, w // 3), axis=(0, 1)))
            donor_faces = []
        donor = _check_image(donor)
        if donor.shape[:2] != (h, w):
            sy, sx = h / donor.shape[0], w / donor.shape[1]
            donor_faces = [f.transformed(sx, 0, 0) for f in donor_faces] if abs(sx - sy) < 1e-3 else []
            donor = cv2.resize(donor, (w, h), interpolation=cv2.INTER_AREA)
        mask, face = _region((h, w), rng, faces, area=(0.06, 0.3))
        aligned = False
        m = None
        extra: dict[str, Any] = {}
        if face is not None and donor_faces:
            d = _nearest_pose(donor_faces, face, int(rng.integers(len(donor_faces))))
            m, _ = cv2.estimateAffinePartial2D(d.points(), face.points(), method=cv2.LMEDS)
            aligned = m is not None
            if m is not None:  # the landmark misfit: mean distance after the alignment, over the face's size
                moved = d.points() @ m[:, :2].T + m[:, 2]
                err = float(np.linalg.norm(moved - face.points(), axis=1).mean()) / max(face.size, 1.0)
                extra["pose_error"] = round(err, 4)
        if m is None:
            cx, cy, _ = _centre_and_size(mask, face)
            dcx, dcy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
            m = _similarity(dcx, dcy, rng.uniform(0.8, 1.25), rng.uniform(-15, 15), cx - dcx, cy - dcy)
        warped = _warp(donor, np.asarray(m, np.float64))
        dx, dy = elastic_field((h, w), rng, amplitude=rng.uniform(0.5, 2.5), scale=max(min(h, w) / 6, 4.0))
        warped = remap(warped, dx, dy)
        alt = colour_transfer(warped, image, mask)
        ratio = float(rng.choice([0.75, 1.0, 1.0, 1.0]))
        return alt, mask * ratio, {"aligned": aligned, "ratio": ratio, "face": face is not None, **extra}


@RECIPES.register("local_warp")
class LocalWarp(Recipe):
    """Face-warping artifacts (Li & Lyu, "Exposing DeepFake Videos By Detecting Face Warping Artifacts",
    CVPRW 2019).

    The region's bounding box is downscaled (×0.3–0.7), Gaussian-blurred, and warped back to full size with a
    small random rotation and scale, then blended inside the soft region mask: the resolution mismatch a face
    swap leaves when a low-resolution synthesised face is warped into the frame.
    """

    name = "local_warp"
    uses_faces = True

    def forge(
        self,
        image: np.ndarray,
        rng: np.random.Generator,
        variant: str,
        *,
        faces: list[Face],
        donor: np.ndarray | None,
        donor_faces: list[Face],
    ) -> ForgeResult:
        mask, face = _region(image.shape[:2], rng, faces, area=(0.08, 0.3))
        y0, y1, x0, x1 = mask_bbox(mask, margin=2)
        crop = image[y0:y1, x0:x1].astype(np.float32)
        ch, cw = crop.shape[:2]
        s = rng.uniform(0.3, 0.7)
        sw, sh = max(2, round(cw * s)), max(2, round(ch * s))
        small = cv2.resize(crop, (sw, sh), interpolation=cv2.INTER_AREA)
        sigma = rng.uniform(0.4, 1.2)
        small = cv2.GaussianBlur(small, (0, 0), sigma)
        jitter = 1.0 + rng.uniform(-0.03, 0.03)
        angle = rng.uniform(-4, 4)
        m = cv2.getRotationMatrix2D((cw / 2, ch / 2), angle, jitter)
        to_crop = np.array([[cw / sw, 0, 0], [0, ch / sh, 0], [0, 0, 1]], dtype=np.float64)
        m = np.vstack([m, [0, 0, 1]]) @ to_crop
        interp = cv2.INTER_CUBIC if rng.random() < 0.5 else cv2.INTER_LINEAR
        up = cv2.warpAffine(small, m[:2], (cw, ch), flags=interp, borderMode=cv2.BORDER_REFLECT_101)
        alt = image.astype(np.float32)
        alt[y0:y1, x0:x1] = up
        return (
            np.clip(alt, 0, 255),
            mask,
            {"scale": s, "sigma": sigma, "angle": angle, "face": face is not None},
        )


def _kernel(rng: np.random.Generator, size: int, noise: float, imbalance: float) -> np.ndarray:
    """A near-bilinear upsampling kernel for zero insertion: tent + noise, with the four polyphase gains set
    to ``1 ± imbalance`` (a learned transposed convolution's slightly unequal phases: the checkerboard)."""
    base = np.array([1, 2, 1], np.float32) if size == 3 else np.array([1, 3, 3, 1], np.float32)
    k = np.outer(base, base)
    k = k / k.sum()
    k = k + rng.normal(0, noise, size=(size, size)).astype(np.float32) * k
    for py in (0, 1):
        for px in (0, 1):
            phase = k[py::2, px::2]
            gain = 0.25 * (1.0 + rng.uniform(-imbalance, imbalance))
            k[py::2, px::2] = phase * (gain / max(float(phase.sum()), 1e-6))
    return (k / k.sum()).astype(np.float32)


@RECIPES.register("upsample")
class Upsample(Recipe):
    """Upsampling fingerprints of a generator's decoder (AutoGAN: Zhang et al., "Detecting and Simulating
    Artifacts in GAN Fake Images", WIFS 2019; NPR: Tan et al., "Rethinking the Up-Sampling Operations in
    CNN-based Generative Network for Generalizable Deepfake Detection", CVPR 2024).

    ``Down(½)`` (area, or bicubic without antialiasing — at exactly ½ OpenCV's bilinear equals area), then
    ``Up(2)`` by nearest, bilinear, or zero insertion followed by a near-bilinear random 3×3/4×4 kernel whose
    four polyphase gains differ by up to ±10 % (a transposed convolution: unequal polyphase gains give the
    checkerboard), then optionally a near-identity 3×3 convolution. Variants: ``global`` (mask all ones) and
    ``regional`` (a soft blob).
    """

    name = "upsample"
    variants = ("global", "regional")
    modes: ClassVar[tuple[str, ...]] = ("nearest", "bilinear", "zero_insert")

    def forge(
        self,
        image: np.ndarray,
        rng: np.random.Generator,
        variant: str,
        *,
        faces: list[Face],
        donor: np.ndarray | None,
        donor_faces: list[Face],
    ) -> ForgeResult:
        h, w = image.shape[:2]
        h2, w2 = (h + 1) // 2, (w + 1) // 2
        down_i = cv2.INTER_AREA if rng.random() < 0.5 else cv2.INTER_CUBIC
        # an odd side is padded by one mirrored pixel, so Down is exactly ½ and nothing shifts
        even = cv2.copyMakeBorder(image, 0, 2 * h2 - h, 0, 2 * w2 - w, cv2.BORDER_REFLECT_101)
        down = cv2.resize(even.astype(np.float32), (w2, h2), interpolation=down_i)
        mode = self.modes[int(rng.integers(len(self.modes)))]
        if mode == "nearest":
            up = np.repeat(np.repeat(down, 2, axis=0), 2, axis=1)
        elif mode == "bilinear":
            up = cv2.resize(down, (2 * w2, 2 * h2), interpolation=cv2.INTER_LINEAR)
        else:
            up = np.zeros((2 * h2, 2 * w2, 3), np.float32)
            up[::2, ::2] = 4.0 * down
            k = _kernel(rng, int(rng.choice([3, 4])), rng.uniform(0.0, 0.3), rng.uniform(0.0, 0.1))
            up = cv2.filter2D(up, -1, k, borderType=cv2.BORDER_REFLECT_101)
        post = mode != "zero_insert" and rng.random() < 0.5
        if post:
            k = np.zeros((3, 3), np.float32)
            k[1, 1] = 1.0
            k += rng.normal(0, 0.05, size=(3, 3)).astype(np.float32)
            up = cv2.filter2D(up, -1, k / k.sum(), borderType=cv2.BORDER_REFLECT_101)
        alt = np.clip(up[:h, :w], 0, 255)
        if variant == "global":
            mask = np.ones((h, w), np.float32)
        else:
            mask = blob_mask((h, w), rng, area=(0.1, 0.4), softness=(0.05, 0.3))
        return alt, mask, {"mode": mode, "post_conv": post}


@RECIPES.register("resample")
class Resample(Recipe):
    """Inpainting and resampling proxies for local edits.

    Variants: ``inpaint`` (``cv2.inpaint``, Telea 2004 or Navier–Stokes, in a hard region), ``copy_move``
    (a region copied from elsewhere in the image with a small rotation/scale; Fridrich et al., 2003),
    ``resample`` (a region re-interpolated by a random affine zoom/rotation; Popescu & Farid, "Exposing
    Digital Forgeries by Detecting Traces of Resampling", IEEE TSP 2005) and ``median`` (median/Gaussian
    filtered patch; Kirchner & Fridrich, 2010).
    """

    name = "resample"
    variants = ("inpaint", "copy_move", "resample", "median")

    def forge(
        self,
        image: np.ndarray,
        rng: np.random.Generator,
        variant: str,
        *,
        faces: list[Face],
        donor: np.ndarray | None,
        donor_faces: list[Face],
    ) -> ForgeResult:
        h, w = image.shape[:2]
        if variant == "inpaint":
            hard = (blob_mask((h, w), rng, area=(0.02, 0.1), softness=(0.0, 0.0)) >= 0.5).astype(np.uint8)
            if not hard.any():
                hard[h // 2, w // 2] = 1
            radius = float(rng.uniform(3, 8))
            flag = cv2.INPAINT_TELEA if rng.random() < 0.5 else cv2.INPAINT_NS
            alt = cv2.inpaint(image, hard * 255, radius, flag)
            return alt, hard.astype(np.float32), {"radius": radius, "telea": flag == cv2.INPAINT_TELEA}
        mask = blob_mask((h, w), rng, area=(0.04, 0.2), softness=(0.05, 0.25))
        cx, cy, size = _centre_and_size(mask, None)
        if variant == "copy_move":
            ang = rng.uniform(0, 2 * math.pi)
            dist = rng.uniform(0.6, 1.5) * size
            sx = float(np.clip(cx + dist * math.cos(ang), 0, w - 1))
            sy = float(np.clip(cy + dist * math.sin(ang), 0, h - 1))
            scale, angle = rng.uniform(0.9, 1.1), rng.uniform(-10, 10)
            m = _similarity(sx, sy, scale, angle, cx - sx, cy - sy)
            return _warp(image, m), mask, {"offset": (cx - sx, cy - sy), "scale": scale, "angle": angle}
        if variant == "resample":
            scale, angle = rng.uniform(1.05, 1.3), rng.uniform(-12, 12)
            interp = cv2.INTER_CUBIC if rng.random() < 0.5 else cv2.INTER_LINEAR
            m = _similarity(cx, cy, scale, angle, 0.0, 0.0)
            return _warp(image, m, interp), mask, {"scale": scale, "angle": angle}
        if rng.random() < 0.5:
            k = int(rng.choice([3, 5]))
            return cv2.medianBlur(image, k), mask, {"filter": f"median{k}"}
        sigma = rng.uniform(0.8, 2.0)
        return cv2.GaussianBlur(image, (0, 0), sigma), mask, {"filter": "gauss", "sigma": sigma}


@RECIPES.register("double_jpeg")
class DoubleJPEG(Recipe):
    """Non-aligned double JPEG compression in a region (Bianchi & Piva, "Image Forgery Localization via
    Block-Grained Analysis of JPEG Artifacts", IEEE TIFS 2012).

    The region comes from a JPEG at quality 40–85 (below the usual final 90) whose 8×8 grid is shifted by a
    random non-zero ``(dy, dx)``; the final common JPEG pass (aligned with the image) then compresses it a
    second time, misaligned. The real gets the same final pass, so only the region differs in history.
    """

    name = "double_jpeg"
    final_format = "jpeg"

    def forge(
        self,
        image: np.ndarray,
        rng: np.random.Generator,
        variant: str,
        *,
        faces: list[Face],
        donor: np.ndarray | None,
        donor_faces: list[Face],
    ) -> ForgeResult:
        h, w = image.shape[:2]
        q1 = int(rng.integers(40, 86))
        shift = (0, 0)
        while shift == (0, 0):
            shift = (int(rng.integers(8)), int(rng.integers(8)))
        if rng.random() < 0.5:
            mask = blob_mask((h, w), rng, area=(0.08, 0.35), softness=(0.0, 0.05))
        else:
            mask = np.zeros((h, w), np.float32)
            rh, rw = max(1, int(rng.uniform(0.25, 0.6) * h)), max(1, int(rng.uniform(0.25, 0.6) * w))
            y0, x0 = int(rng.integers(0, h - rh + 1)), int(rng.integers(0, w - rw + 1))
            mask[y0 : y0 + rh, x0 : x0 + rw] = 1.0
        return jpeg_roundtrip(image, q1, shift), mask, {"q1": q1, "shift": shift}


# ------------------------------------------------------------------------------------------------ specs
def recipe_specs() -> list[str]:
    """Every ``name`` and ``name:variant`` accepted by :func:`make_recipe`."""
    out: list[str] = []
    for name in RECIPES.names():
        out.append(name)
        cls = RECIPES.get(name)
        out.extend(f"{name}:{v}" for v in getattr(cls, "variants", ()))
    return out


def make_recipe(spec: str) -> Recipe:
    """A recipe from ``name`` or ``name:variant`` (e.g. ``upsample:global``); unknown names raise one line."""
    name, _, variant = spec.strip().partition(":")
    return RECIPES.create(name, variant=variant or None)


def parse_recipes(specs: str | Sequence[str] | None) -> list[str]:
    """Validate a comma-separated string (or list) of specs; ``None``, ``""`` or ``"all"`` → every recipe.
    Separators with no name between them (``","``) are an error, not every recipe."""
    if specs is None or (isinstance(specs, str) and not specs.strip()):
        return RECIPES.names()
    given = specs.split(",") if isinstance(specs, str) else list(specs)
    items = [s.strip() for s in given if s.strip()]
    if not items and given:
        raise ConfigError(
            f"no recipe named in {','.join(given)!r}: give name or name:variant, comma-separated, or 'all'"
        )
    if not items or items == ["all"]:
        return RECIPES.names()
    for s in items:
        make_recipe(s)
    return items
