"""Training augmentations that make detectors robust, seeded per sample and shared by reals and fakes.

An :class:`Augment` maps ``(image uint8 (H, W, 3), rng, mask)`` to an augmented image, the mask carried
through every *geometric* step, and a record of what was drawn. The order follows what happens to images in
the wild, at the resolution they are stored at:

1. **random crop** with the output's aspect ratio, ``crop_scale`` of the largest such crop's area (so the
   model sees objects at several scales; its input grid never shows padding in training);
2. **horizontal flip** with probability ``flip``;
3. a **resize chain** with probability ``resize_chain``: one or two resizes by factors in ``resize_range``
   with a random interpolation (nearest, bilinear, bicubic, area), as re-uploads and thumbnails do;
4. **Gaussian blur** with probability ``blur``, ``σ ~ U[0, 3]``, then **JPEG** with probability ``jpeg``,
   quality ``~ U{30..100}`` through OpenCV or Pillow at random (their tables and chroma subsampling differ):
   Wang et al., "CNN-generated images are surprisingly easy to spot… for now", CVPR 2020 ("Blur+JPEG (0.5)").

The result still has to be fitted to the model's input size (``fakelens.geometry.prepare`` with mode
``resize``; :class:`fakelens.data.datasets.DetectionDataset` does it). Every draw comes from the ``rng``
passed in and none depends on pixel values, so a real and its fake given generators with the same seed get
exactly the same crop, flip, chain, blur and JPEG quality: the pair still differs only by the forgery.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, replace
from typing import Any

import cv2
import numpy as np
from PIL import Image

from fakelens.errors import ConfigError

__all__ = [
    "PRESETS",
    "Augment",
    "AugmentConfig",
    "gaussian_blur",
    "jpeg_compress",
    "random_crop_box",
]

_INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
}
MIN_SIDE = 8


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of each augmentation (see the module docstring for the order)."""

    crop: bool = True
    crop_scale: tuple[float, float] = (0.35, 1.0)
    flip: float = 0.5
    resize_chain: float = 0.0
    resize_range: tuple[float, float] = (0.5, 1.5)
    resize_steps: int = 2
    blur: float = 0.0
    blur_sigma: tuple[float, float] = (0.0, 3.0)
    jpeg: float = 0.0
    jpeg_quality: tuple[int, int] = (30, 100)

    def __post_init__(self) -> None:
        for name in ("flip", "resize_chain", "blur", "jpeg"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"augmentation probability {name}={p} is not in [0, 1]")
        lo, hi = self.crop_scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ConfigError(f"crop_scale {self.crop_scale} must satisfy 0 < low <= high <= 1")
        lo, hi = self.resize_range
        if not 0.0 < lo <= hi:
            raise ConfigError(f"resize_range {self.resize_range} must satisfy 0 < low <= high")
        qlo, qhi = self.jpeg_quality
        if not 1 <= qlo <= qhi <= 100:
            raise ConfigError(f"jpeg_quality {self.jpeg_quality} must satisfy 1 <= low <= high <= 100")
        slo, shi = self.blur_sigma
        if not 0.0 <= slo <= shi:
            raise ConfigError(f"blur_sigma {self.blur_sigma} must satisfy 0 <= low <= high")
        if self.resize_steps < 1:
            raise ConfigError(f"resize_steps must be at least 1, got {self.resize_steps}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Named configurations: ``none`` (no augmentation: the evaluation fit), ``light`` (crops and flips),
#: ``wang2020-0.1`` and ``wang2020`` (Blur+JPEG with p = 0.1 and 0.5, Wang et al. 2020), and ``robust``
#: (``wang2020`` plus resize chains; the default for training), and ``forensic``: flips and Blur+JPEG (0.1)
#: without crops, so nothing is resampled — for data already at the model's input size, where pixel-level
#: traces (resampling periodicity, the JPEG grid, upsampling replicas) must reach the detector intact;
#: ``forensic-jpeg`` the same with JPEG on 30 % of images at quality 65–100 (robustness to recompression).
PRESETS: dict[str, AugmentConfig] = {
    "none": AugmentConfig(crop=False, flip=0.0),
    "light": AugmentConfig(),
    "wang2020-0.1": AugmentConfig(blur=0.1, jpeg=0.1),
    "wang2020": AugmentConfig(blur=0.5, jpeg=0.5),
    "robust": AugmentConfig(blur=0.5, jpeg=0.5, resize_chain=0.3),
    "forensic": AugmentConfig(crop=False, blur=0.1, jpeg=0.1),
    "forensic-jpeg": AugmentConfig(crop=False, blur=0.1, jpeg=0.3, jpeg_quality=(65, 100)),
}


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Blur each channel with a Gaussian of standard deviation ``sigma`` (reflected borders, kernel ±4σ,
    as ``scipy.ndimage.gaussian_filter``); ``sigma <= 0`` returns a copy."""
    if sigma <= 1e-3:
        return image.copy()
    k = 2 * int(4.0 * sigma + 0.5) + 1
    out = cv2.GaussianBlur(
        image.astype(np.float32), (k, k), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT
    )
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def jpeg_compress(image: np.ndarray, quality: int, method: str = "cv2") -> np.ndarray:
    """A JPEG round trip at ``quality`` through OpenCV (``cv2``) or Pillow (``pil``)."""
    q = int(quality)
    if method == "cv2":
        ok, buf = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
        if not ok:  # pragma: no cover - OpenCV fails only on empty images
            raise ConfigError(f"OpenCV could not JPEG-encode a {image.shape} image")
        dec = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if dec is None:  # pragma: no cover
            raise ConfigError("OpenCV could not decode its own JPEG")
        return np.ascontiguousarray(dec[:, :, ::-1])
    if method == "pil":
        out = io.BytesIO()
        Image.fromarray(image, "RGB").save(out, format="JPEG", quality=q)
        out.seek(0)
        with Image.open(out) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    raise ConfigError(f"unknown JPEG method {method!r} (use cv2 or pil)")


def random_crop_box(
    height: int, width: int, aspect: float, scale: tuple[float, float], rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """A ``(left, top, right, bottom)`` box of aspect ``aspect`` (width / height) covering a fraction in
    ``scale`` of the area of the largest such box inside ``height`` × ``width``, at a uniform position."""
    cw = min(float(width), height * aspect)
    ch = cw / aspect
    s = float(np.sqrt(rng.uniform(*scale)))
    w = int(min(width, max(min(MIN_SIDE, width), round(cw * s))))
    h = int(min(height, max(min(MIN_SIDE, height), round(ch * s))))
    left = int(rng.integers(0, width - w + 1))
    top = int(rng.integers(0, height - h + 1))
    return left, top, left + w, top + h


def _resize(a: np.ndarray, size: tuple[int, int], interp: int) -> np.ndarray:
    """Resize to ``size`` = (width, height); a float mask always uses bilinear (area when shrinking)."""
    return cv2.resize(a, size, interpolation=interp)


def _mask_interp(old: tuple[int, int], new: tuple[int, int]) -> int:
    return cv2.INTER_AREA if new[0] * new[1] < old[0] * old[1] else cv2.INTER_LINEAR


class Augment:
    """Seeded augmentation of one image (and its mask): see the module docstring.

    ``config`` is an :class:`AugmentConfig` or a preset name from :data:`PRESETS`.
    """

    def __init__(self, config: AugmentConfig | str = "robust", **overrides: Any) -> None:
        if isinstance(config, str):
            if config not in PRESETS:
                raise ConfigError(f"unknown augmentation preset {config!r} (known: {', '.join(PRESETS)})")
            config = PRESETS[config]
        self.config = replace(config, **overrides) if overrides else config

    def __repr__(self) -> str:
        return f"Augment({self.config})"

    @property
    def identity(self) -> bool:
        """Whether this augmentation never changes anything (the ``none`` preset)."""
        c = self.config
        return not c.crop and c.flip == 0 and c.resize_chain == 0 and c.blur == 0 and c.jpeg == 0

    def __call__(
        self,
        image: np.ndarray,
        rng: np.random.Generator,
        mask: np.ndarray | None = None,
        *,
        aspect: float = 1.0,
    ) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
        """``(image uint8 (H, W, 3), rng, mask float32 (H, W) | None)`` → ``(image, mask, params)``.

        ``aspect`` is the model input's width / height: crops take that shape. The same number of values is
        drawn from ``rng`` whatever the probabilities decide, so seeds stay aligned across configurations.
        """
        c = self.config
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ConfigError(f"Augment needs an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
        if mask is not None and mask.shape != image.shape[:2]:
            raise ConfigError(f"mask {mask.shape} does not match the image {image.shape[:2]}")
        img, m = image, mask
        params: dict[str, Any] = {}
        h, w = img.shape[:2]

        # 1. random crop with the output aspect ratio
        box = random_crop_box(h, w, aspect, c.crop_scale, rng)
        if c.crop:
            left, top, right, bottom = box
            img = img[top:bottom, left:right]
            m = None if m is None else m[top:bottom, left:right]
            params["crop"] = box
        # 2. flip
        flip = bool(rng.random() < c.flip)
        if flip:
            img = img[:, ::-1]
            m = None if m is None else m[:, ::-1]
        params["flip"] = flip
        # 3. resize chain
        chain = bool(rng.random() < c.resize_chain)
        steps = int(rng.integers(1, c.resize_steps + 1))
        factors = rng.uniform(*c.resize_range, size=c.resize_steps)
        interps = rng.integers(0, len(_INTERPOLATIONS), size=c.resize_steps)
        if chain:
            names = list(_INTERPOLATIONS)
            done = []
            for f, k in zip(factors[:steps], interps[:steps], strict=True):
                hh, ww = img.shape[:2]
                size = (max(MIN_SIDE, round(ww * f)), max(MIN_SIDE, round(hh * f)))
                img = _resize(np.ascontiguousarray(img), size, _INTERPOLATIONS[names[int(k)]])
                if m is not None:
                    m = _resize(np.ascontiguousarray(m), size, _mask_interp((ww, hh), size))
                done.append({"factor": float(f), "interpolation": names[int(k)]})
            params["resize_chain"] = done
        # 4. blur, then JPEG (photometric: the mask is untouched)
        do_blur = bool(rng.random() < c.blur)
        sigma = float(rng.uniform(*c.blur_sigma))
        do_jpeg = bool(rng.random() < c.jpeg)
        quality = int(rng.integers(c.jpeg_quality[0], c.jpeg_quality[1] + 1))
        method = "cv2" if rng.random() < 0.5 else "pil"
        img = np.ascontiguousarray(img)
        if do_blur:
            img = gaussian_blur(img, sigma)
            params["blur_sigma"] = sigma
        if do_jpeg:
            img = jpeg_compress(img, quality, method)
            params["jpeg"] = {"quality": quality, "method": method}
        if m is not None:
            m = np.ascontiguousarray(m, dtype=np.float32)
        return img, m, params
