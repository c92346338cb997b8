"""Frequency attribution: band geometry, models built to respond to one band, regional maps, the plot."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import fakelens.explain.spectral as spectral
from conftest import model_input
from fakelens.errors import ConfigError
from fakelens.explain import explain
from fakelens.explain.spectral import (
    band_masks,
    default_orientation_edges,
    default_radial_edges,
    explain_spectrum,
    tile_masks,
)
from fakelens.models import Detector, InputSpec, create_model

SIZES = [(8, 8), (7, 9), (48, 64), (33, 32)]


@pytest.mark.parametrize("hw", SIZES)
def test_bands_partition_the_spectrum_and_are_hermitian(hw: tuple[int, int]) -> None:
    r, o = band_masks(hw, default_radial_edges(8), default_orientation_edges(8))
    assert r.shape == (8, hw[0], hw[1] // 2 + 1) and o.shape == (8, hw[0], hw[1] // 2 + 1)
    # every non-DC frequency in exactly one band, DC in none
    for m in (r, o):
        count = m.sum(0)
        assert count[0, 0] == 0
        count[0, 0] = 1
        assert bool((count == 1).all())
    x = torch.randn(2, 3, *hw, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    spec = torch.fft.rfft2(x)
    dc = x.mean((-2, -1), keepdim=True)
    for m in (r, o):
        parts = torch.stack([torch.fft.irfft2(spec * k.double(), s=hw) for k in m])
        torch.testing.assert_close(parts.sum(0) + dc, x)  # the bands plus DC rebuild the image
        # Hermitian-consistent masks give orthogonal real parts: energies add up (Parseval)
        torch.testing.assert_close(parts.square().sum(), (x - dc).square().sum())


def test_band_geometry() -> None:
    r, o = band_masks((64, 64), default_radial_edges(8), default_orientation_edges(4))
    # a purely horizontal frequency (fx = 1/8 cycles/px, r = 0.25 × Nyquist) is radial band 1, orientation 0°
    assert r[:, 0, 8].nonzero().item() == 1 and o[:, 0, 8].nonzero().item() == 0
    # a purely vertical frequency is at 90° (band 2 of 4: 0°, 45°, 90°, 135°)
    assert o[:, 8, 0].nonzero().item() == 2
    # the checkerboard (Nyquist in both axes) sits in the corner ring
    assert r[:, 32, 32].nonzero().item() == 7
    # fy < 0 is "up" in image coordinates: (fy = −1/8, fx = 1/8) is 45°
    assert o[:, 64 - 8, 8].nonzero().item() == 1
    with pytest.raises(ConfigError):
        band_masks((8, 8), default_radial_edges(4), torch.tensor([0.0, 90.0]))


def test_tile_masks_partition() -> None:
    t = tile_masks((10, 7), (3, 2))
    assert t.shape == (6, 10, 7) and bool((t.sum(0) == 1).all())


class BandEnergy(nn.Module):
    """``z_fake = α · Σ_{f ∈ K} |F(x)(f)|²`` for one radial band ``K``: responds to that band only."""

    def __init__(self, hw: tuple[int, int], band: int, n: int = 8, alpha: float = 1e-3) -> None:
        super().__init__()
        r, _ = band_masks(hw, default_radial_edges(n), default_orientation_edges(8))
        self.register_buffer("mask", r[band].float())
        self.alpha = alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = (torch.fft.rfft2(x).abs().square().sum(1) * self.mask).sum((1, 2)) * self.alpha
        return torch.stack([torch.zeros_like(e), e], 1)


class Gabor(nn.Module):
    """A fixed linear filter (a Gabor of frequency ``f0`` cycles/px at angle ``theta``, y up) whose response
    energy is the fake logit; ``left`` restricts it to the left half of the image."""

    def __init__(
        self, f0: float, theta: float, left: bool = False, size: int = 31, sigma: float = 6.0
    ) -> None:
        super().__init__()
        t = torch.arange(size) - size // 2
        yy, xx = torch.meshgrid(t, t, indexing="ij")
        th = math.radians(theta)
        k = torch.exp(-(xx**2 + yy**2) / (2 * sigma**2)) * torch.cos(
            2 * math.pi * f0 * (xx * math.cos(th) - yy * math.sin(th))
        )
        self.conv = nn.Conv2d(3, 1, size, padding=size // 2, bias=False)
        self.conv.weight.data = (k / k.abs().sum()).expand(1, 3, size, size).clone()
        self.left = left

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.conv(x).square()
        if self.left:
            r = r[..., : x.shape[-1] // 2]
        e = r.mean((1, 2, 3)) * 1e3
        return torch.stack([torch.zeros_like(e), e], 1)


def _det(net: nn.Module, hw: tuple[int, int], mean: float = 0.0, std: float = 1.0) -> Detector:
    return Detector(net, input_spec=InputSpec(size=hw, mean=(mean,) * 3, std=(std,) * 3))


def _noise(hw: tuple[int, int], batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, *hw, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("band", [1, 4, 7])
def test_band_energy_model_depends_on_its_band_only(band: int) -> None:
    hw = (32, 48)
    det = _det(BandEnergy(hw, band), hw)
    a = explain_spectrum(det, _noise(hw))
    assert a.radial.shape == (2, 8) and a.orientation.shape == (2, 8)
    assert (a.top_radial() == band).all()
    # removing the band removes all of the score; removing any other band removes none of it
    torch.testing.assert_close(a.radial[:, band], a.scores, rtol=1e-4, atol=1e-4)
    others = torch.cat([a.radial[:, :band], a.radial[:, band + 1 :]], 1)
    assert float(others.abs().max()) <= 1e-4 * float(a.scores.abs().max())
    torch.testing.assert_close(a.radial_energy.sum(1), torch.ones(2))
    torch.testing.assert_close(a.orientation_energy.sum(1), torch.ones(2))


@pytest.mark.parametrize(("theta", "orient_band"), [(0.0, 0), (45.0, 2), (90.0, 4), (135.0, 6)])
def test_gabor_filter_model_top_bands(theta: float, orient_band: int) -> None:
    hw = (64, 64)
    f0 = 0.62 * 0.5  # 0.62 × Nyquist: the middle of radial ring 3 = [0.53, 0.71)
    det = _det(Gabor(f0, theta), hw)
    a = explain_spectrum(det, _noise(hw))
    assert (a.top_radial() == 3).all()
    assert (a.top_orientation() == orient_band).all()


def test_regional_maps_find_the_region() -> None:
    hw = (64, 64)
    det = _det(Gabor(0.31, 45.0, left=True), hw)
    a = explain_spectrum(det, _noise(hw, 1), tiles=4)
    assert a.regional is not None and a.regional.shape == (1, 8, 4, 4)
    top = a.regional[0, 3]
    assert float(top[:, :2].sum()) > 10 * float(top[:, 2:].abs().sum())
    assert a.meta["forwards"] == 1 + 16 + 8 * 16
    json.dumps(a.to_dict(0))


def test_pixel_space_equals_normalised_space() -> None:
    """Removing a band from the normalised input equals removing it from the pixels, then normalising."""
    hw = (16, 16)
    mean, std = 0.4, 0.2
    pix = torch.rand(1, 3, *hw, generator=torch.Generator().manual_seed(1))
    x = (pix - mean) / std
    r, _ = band_masks(hw, default_radial_edges(4), default_orientation_edges(4))
    for k in r.float():
        via_x = x - torch.fft.irfft2(torch.fft.rfft2(x) * k, s=hw)
        via_pix = (pix - torch.fft.irfft2(torch.fft.rfft2(pix) * k, s=hw) - mean) / std
        torch.testing.assert_close(via_x, via_pix, atol=1e-5, rtol=0)


def test_registered_method_batch_and_determinism() -> None:
    import fakelens.explain.perturbation  # noqa: F401  (shares the EXPLAINERS registry)

    det = create_model("tiny-cnn")
    x = model_input(det, 2)
    opts = {"spectral": {"radial": 4, "orientations": 4, "tiles": 2}}
    e = explain(det, x, ["spectral"], options=opts)["spectral"]
    assert e.raw.shape == (2, 2, 2) and torch.isfinite(e.raw).all()
    assert len(e.meta["radial"]) == 2 and len(e.meta["radial"][0]) == 4
    assert len(e.meta["radial_edges"]) == 5 and e.meta["forwards"] == 2 + 2 * 8 + 2 * 4 * 4
    json.dumps(e.meta)
    single = explain(det, x[1:], ["spectral"], options=opts)["spectral"]
    torch.testing.assert_close(e.raw[1:], single.raw, atol=1e-5, rtol=1e-4)
    again = explain(det, x, ["spectral"], options=opts)["spectral"]
    assert torch.equal(e.raw, again.raw)
    direct = explain_spectrum(det, x, radial=4, orientations=4, tiles=2)
    assert direct.regional is not None
    torch.testing.assert_close(e.raw, direct.regional.sum(1))
    torch.testing.assert_close(torch.tensor(e.meta["radial"]), direct.radial)


def test_custom_edges_and_errors() -> None:
    hw = (32, 32)
    det = _det(BandEnergy(hw, 2), hw)
    a = explain_spectrum(det, _noise(hw, 1), radial=[0.0, 0.5, 1.0, 1.5], orientations=[-45.0, 45.0, 135.0])
    assert a.radial.shape == (1, 3) and a.orientation.shape == (1, 2)
    with pytest.raises(ConfigError):
        explain_spectrum(det, _noise(hw, 1), radial=[0.5, 0.2])
    with pytest.raises(ConfigError):
        explain_spectrum(det, _noise(hw, 1), radial=0)
    with pytest.raises(ConfigError, match="CUDA"):
        explain_spectrum(det, _noise(hw, 1), amp="fp16")


def test_plot_writes_png(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from fakelens.viz.spectral import plot_spectrum

    hw = (32, 32)
    det = _det(Gabor(0.31, 45.0, left=True, size=15, sigma=3.0), hw)
    a = explain_spectrum(det, _noise(hw, 1), radial=4, orientations=4, tiles=2)
    path = tmp_path / "spectrum.png"
    fig = plot_spectrum(a, 0, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    assert len(fig.axes) >= 3
    a.regional = None
    plot_spectrum(a, 0, tmp_path / "no_tiles.png")
    assert spectral.SpectralAttribution.__doc__
