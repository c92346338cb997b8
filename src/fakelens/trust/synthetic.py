r"""Hand-built detectors whose right answer is known: the harness is proven on them.

- :func:`planted_patch_detector`: the evidence is a bright blob (a planted patch). A difference-of-Gaussians
  blob detector at three scales on the luminance, thresholded, global average pool, linear head. Its
  convolutions are stride 1 with D4-symmetric kernels, so the feature map is *exactly* equivariant to flips
  and quarter turns; a good CAM must follow the patch under every transform.
- :func:`corner_biased_detector`: the same blob detector plus a fixed activation bump in the top-left corner
  that dominates every feature map whatever the input (like a model that learned a watermark position, or the
  corner artefacts of zero padding): a CAM must peak in the corner on every input, and the harness must
  flag it.
- :func:`padding_reader_detector`: its evidence is *black pixels*: the darker a pixel (after undoing the
  normalisation), the more it says "fake". On transformed views its maps sit on the black fill, and border
  mass must exceed the fill's area fraction.

:func:`blob_image` draws the test inputs: a dark, textured background with a bright disk near the centre.
All are tiny (a few hundred parameters), deterministic and CPU-fast.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fakelens.models.base import IMAGENET_MEAN, IMAGENET_STD, Detector, InputSpec

__all__ = [
    "blob_image",
    "corner_biased_detector",
    "padding_reader_detector",
    "planted_patch_detector",
]

SIGMAS = (1.5, 2.5, 4.0)


def _gaussian1d(sigma: float, radius: int) -> Tensor:
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    return g / g.sum()


def dog_norms(sigmas: tuple[float, ...] = SIGMAS) -> list[float]:
    """Scale normalisers: the positive mass of each ``G(σ) − G(2σ)`` kernel, so a disk of radius ≈ 1.5σ
    gives about the same peak response at every scale."""
    out = []
    for s in sigmas:
        r = math.ceil(6 * s)
        g1 = _gaussian1d(s, r)
        g2 = _gaussian1d(2 * s, r)
        k = g1[:, None] * g1[None, :] - g2[:, None] * g2[None, :]
        out.append(float(k.clamp_min(0).sum()))
    return out


class Unnormalise(nn.Module):
    """Normalised input → luminance of the pixels in [0, 1] (undoes ``InputSpec.normalize``)."""

    mean: Tensor
    std: Tensor

    def __init__(self, spec: InputSpec) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        pixels = x * self.std + self.mean
        return pixels.mean(1, keepdim=True)


class BlobFeatures(nn.Module):
    """``ReLU((G_σ − G_2σ) * lum / n_σ − τ)`` at three scales: high only on bright blobs on a darker surround.

    The Gaussians are separable (a vertical then a grouped horizontal 1-D convolution, zero padding, the
    same as the 2-D kernel with zero padding) and a 1×1 convolution takes the differences; all kernels are
    symmetric, so the map is equivariant to flips and quarter turns up to rounding.
    """

    def __init__(self, threshold: float = 0.12, sigmas: tuple[float, ...] = SIGMAS) -> None:
        super().__init__()
        r = math.ceil(6 * max(sigmas))
        n = len(sigmas)
        gs = [_gaussian1d(s * f, r) for s in sigmas for f in (1.0, 2.0)]
        self.vertical = nn.Conv2d(1, 2 * n, (2 * r + 1, 1), padding=(r, 0), bias=False)
        self.horizontal = nn.Conv2d(2 * n, 2 * n, (1, 2 * r + 1), padding=(0, r), groups=2 * n, bias=False)
        self.combine = nn.Conv2d(2 * n, n, 1)
        norms = dog_norms(sigmas)
        with torch.no_grad():
            for i, g in enumerate(gs):
                self.vertical.weight[i, 0, :, 0] = g.float()
                self.horizontal.weight[i, 0, 0, :] = g.float()
            self.combine.weight.zero_()
            for i in range(n):
                self.combine.weight[i, 2 * i] = 1.0 / norms[i]
                self.combine.weight[i, 2 * i + 1] = -1.0 / norms[i]
            nn.init.constant_(self.combine.bias, -threshold)  # type: ignore[arg-type]

    def forward(self, lum: Tensor) -> Tensor:
        return F.relu(self.combine(self.horizontal(self.vertical(lum))))


class PlantedPatchNet(nn.Module):
    """Luminance → blob features (the CAM layer ``net.features``) → global average pool → linear."""

    features: nn.Module

    def __init__(self, spec: InputSpec, gain: float = 200.0, bias: float = -1.0) -> None:
        super().__init__()
        self.lum = Unnormalise(spec)
        self.features = BlobFeatures()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(len(SIGMAS), 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[-1.0] * len(SIGMAS), [1.0] * len(SIGMAS)]) * gain / 2)
            self.head.bias.copy_(torch.tensor([-bias / 2, bias / 2]))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.features(self.lum(x))).flatten(1))


class CornerBias(nn.Module):
    """Adds a fixed bump ``a·exp(−d²/2s²)`` centred on the top-left pixel to every channel."""

    def __init__(self, amplitude: float = 3.0, width: float = 3.0) -> None:
        super().__init__()
        self.amplitude = amplitude
        self.width = width

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        ys = torch.arange(h, device=x.device, dtype=x.dtype).view(h, 1)
        xs = torch.arange(w, device=x.device, dtype=x.dtype).view(1, w)
        bump = self.amplitude * torch.exp(-(ys**2 + xs**2) / (2 * self.width**2))
        return x + bump


class CornerBiasedNet(PlantedPatchNet):
    """The planted-patch net whose feature maps carry a fixed top-left bump (``net.features`` is the sum)."""

    def __init__(self, spec: InputSpec) -> None:
        super().__init__(spec)
        self.features = nn.Sequential(BlobFeatures(), CornerBias())


class DarkFeatures(nn.Module):
    """``ReLU(τ − lum)``: how black each pixel is (zero on anything brighter than ``τ``)."""

    def __init__(self, threshold: float = 0.08) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(-1.0)
            nn.init.constant_(self.conv.bias, threshold)  # type: ignore[arg-type]

    def forward(self, lum: Tensor) -> Tensor:
        return F.relu(self.conv(lum))


class PaddingReaderNet(nn.Module):
    """Luminance → darkness features (``net.features``) → global average pool → linear: black says fake."""

    def __init__(self, spec: InputSpec, gain: float = 400.0) -> None:
        super().__init__()
        self.lum = Unnormalise(spec)
        self.features = DarkFeatures()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(1, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[-gain / 2], [gain / 2]]))
            self.head.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.features(self.lum(x))).flatten(1))


def _detector(net: nn.Module, name: str, spec: InputSpec) -> Detector:
    return Detector(
        net,
        labels=("real", "fake"),
        input_spec=spec,
        cam_layers=("net.features",),
        name=name,
        config={"arch": name, "synthetic": True},
    ).eval()


def planted_patch_detector(size: tuple[int, int] = (64, 64), *, imagenet: bool = False) -> Detector:
    """A detector whose evidence is a bright blob; stride 1, D4-symmetric, hence equivariant to flips and
    quarter turns."""
    spec = _spec(size, imagenet)
    return _detector(PlantedPatchNet(spec), "synthetic-planted-patch", spec)


def corner_biased_detector(size: tuple[int, int] = (64, 64), *, imagenet: bool = False) -> Detector:
    """The planted-patch detector with a fixed top-left activation bump: its CAMs peak in the corner."""
    spec = _spec(size, imagenet)
    return _detector(CornerBiasedNet(spec), "synthetic-corner-bias", spec)


def padding_reader_detector(size: tuple[int, int] = (64, 64), *, imagenet: bool = True) -> Detector:
    """A detector whose evidence is black pixels (fill and padding); ImageNet statistics by default, so black
    is about −2 at its input, not 0."""
    spec = _spec(size, imagenet)
    return _detector(PaddingReaderNet(spec), "synthetic-padding-reader", spec)


def _spec(size: tuple[int, int], imagenet: bool) -> InputSpec:
    if imagenet:
        return InputSpec(size=size, mean=IMAGENET_MEAN, std=IMAGENET_STD, mode="letterbox")
    return InputSpec(size=size, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), mode="letterbox")


def blob_image(
    size: tuple[int, int] = (64, 64),
    *,
    seed: int = 0,
    radius: float | None = None,
    centre: tuple[float, float] | None = None,
    spread: float = 0.1,
) -> tuple[Tensor, Tensor]:
    """``(3, H, W)`` pixels in [0, 1]: a dark textured background (0.15–0.35) with a bright disk (≈0.95),
    and its ``(H, W)`` bool mask. The disk centre is drawn within ``spread`` (fraction of the size) of the
    image centre unless ``centre`` ``(cx, cy)`` in fractions is given; ``radius`` defaults to 6 % of the
    short side."""
    h, w = size
    rng = np.random.default_rng(seed)
    noise = torch.from_numpy(rng.random((1, 1, h // 4 + 2, w // 4 + 2))).float()
    bg = F.interpolate(noise, size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    bg = 0.15 + 0.2 * bg
    r = radius if radius is not None else 0.06 * min(h, w)
    if centre is None:
        cx = 0.5 + rng.uniform(-spread, spread)
        cy = 0.5 + rng.uniform(-spread, spread)
    else:
        cx, cy = centre
    ys = torch.arange(h, dtype=torch.float32).view(h, 1) + 0.5
    xs = torch.arange(w, dtype=torch.float32).view(1, w) + 0.5
    d = torch.sqrt((ys - cy * h) ** 2 + (xs - cx * w) ** 2)
    disk = (r + 0.5 - d).clamp(0, 1)  # anti-aliased edge
    colour = torch.tensor([0.95, 0.93, 0.9]).view(3, 1, 1)
    img = bg[None] * (1 - disk) + colour * disk
    return img.clamp(0, 1), disk > 0.5
