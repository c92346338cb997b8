r"""Frequency attribution: how much the decision depends on radial and orientation bands of the spectrum.

Band-stop perturbation: for a band ``K`` (a set of frequencies), the image without it is
``x_{−K} = x − F^{-1}(K ⊙ F(x))`` (per channel, real FFT over ``H × W``), and the band's importance is the
score drop

.. math:: I_K = f(x) - f(x_{-K}).

Bands: ``radial`` rings of the normalised radius ``r = \sqrt{(f_y/½)^2 + (f_x/½)^2}`` (1 = Nyquist along an
axis, √2 in the corners; each axis normalised by its own Nyquist, so non-square inputs work) and
``orientations`` wedges of the frequency vector's angle ``θ = atan2(−f_y, f_x)`` modulo 180° (0° = a
horizontal frequency, i.e. vertical stripes; 90° = horizontal stripes; counter-clockwise with y up), centred
on 0°, 180°/O, …. The DC term is never removed, so removing a band from the *normalised* input (what is done)
is exactly the same as removing it from the pixels before normalisation (normalisation is a per-channel
affine map whose constant lives only at DC). Band-stopped pixels are not clipped. The band masks are made
Hermitian-consistent (a frequency and its mirror ``−f`` always share a band), so every band-stopped image
is real and the bands partition the non-DC spectrum.

Regional attribution (``tiles``): the band is removed only inside one tile,
``x − T_t ⊙ F^{-1}(K ⊙ F(x))``, and the drop is recorded per tile: ``regional[b, k, i, j]`` says how much
band ``k`` in tile ``(i, j)`` drives the score (radial bands only; hard tile edges).

All band-stopped (and tiled) inputs of a batch go through the model as one pooled, chunked batch, under
``inference_mode``, with the same options as :mod:`fakelens.explain.perturbation` (``batch_size``, ``amp``,
``channels_last``). ``explain_spectrum`` returns a :class:`SpectralAttribution`; the ``"spectral"`` method of
:func:`~fakelens.explain.explain` returns the tile map ``Σ_k regional[:, k]`` as its spatial map and the band
importances in ``meta``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from fakelens.errors import ConfigError
from fakelens.explain.engine import EXPLAINERS
from fakelens.explain.perturbation import AmpPolicy, FastOptions, Perturbation, Runner
from fakelens.explain.targets import Target, resolve_target
from fakelens.models.base import Detector

if TYPE_CHECKING:
    from typing_extensions import Unpack


def default_radial_edges(n: int) -> Tensor:
    """``n`` rings of equal width from 0 to √2 (the corner of the spectrum), in units of Nyquist."""
    return torch.linspace(0.0, math.sqrt(2.0), n + 1, dtype=torch.float64)


def default_orientation_edges(n: int) -> Tensor:
    """``n`` wedges of ``180/n`` degrees centred on 0°, 180°/n, …: edges from ``−90/n`` to ``180 − 90/n``."""
    width = 180.0 / n
    return torch.arange(n + 1, dtype=torch.float64) * width - width / 2


def _symmetric(idx: Tensor) -> Tensor:
    """Make a full-grid ``(H, W)`` band index Hermitian-consistent: ``f`` and ``−f`` get the smaller index."""
    h, w = idx.shape
    neg = idx[(-torch.arange(h)) % h][:, (-torch.arange(w)) % w]
    both = torch.where(idx < 0, neg, torch.where(neg < 0, idx, torch.minimum(idx, neg)))
    return both


def band_masks(
    hw: tuple[int, int],
    radial_edges: Tensor,
    orientation_edges: Tensor,
    device: torch.device | None = None,
) -> tuple[Tensor, Tensor]:
    """Boolean masks on the ``rfft2`` grid ``(H, W//2+1)``: radial ``(R, …)`` and orientation ``(O, …)``.

    Each non-DC frequency is in exactly one radial and one orientation band (radii beyond the last edge
    go to the last ring); DC is in none.
    """
    h, w = hw
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None].expand(h, w)
    fx = torch.fft.fftfreq(w, dtype=torch.float64)[None, :].expand(h, w)
    r = torch.sqrt((fy / 0.5) ** 2 + (fx / 0.5) ** 2)
    dc = (fy == 0) & (fx == 0)
    edges = radial_edges.to(torch.float64)
    ridx = (torch.bucketize(r, edges[1:-1], right=True)).clamp_max(len(edges) - 2)
    ridx = torch.where(dc, -1, ridx)
    oedges = orientation_edges.to(torch.float64)
    start, span = float(oedges[0]), float(oedges[-1] - oedges[0])
    theta = torch.rad2deg(torch.atan2(-fy, fx))
    theta = torch.remainder(theta - start, 180.0) + start
    oidx = torch.bucketize(theta, oedges[1:-1], right=True).clamp_max(len(oedges) - 2)
    if abs(span - 180.0) > 1e-9:
        raise ConfigError(f"orientation edges must span 180 degrees, got {span}")
    oidx = torch.where(dc, -1, oidx)
    ridx, oidx = _symmetric(ridx), _symmetric(oidx)
    half = w // 2 + 1
    rmask = torch.stack([ridx[:, :half] == k for k in range(len(edges) - 1)])
    omask = torch.stack([oidx[:, :half] == k for k in range(len(oedges) - 1)])
    return rmask.to(device), omask.to(device)


def _tile_edges(size: int, n: int) -> list[int]:
    return [round(i * size / n) for i in range(n + 1)]


def tile_masks(hw: tuple[int, int], tiles: tuple[int, int], device: torch.device | None = None) -> Tensor:
    """``(gh·gw, H, W)`` boolean masks of a ``gh × gw`` grid of (nearly) equal tiles, row-major."""
    ye, xe = _tile_edges(hw[0], tiles[0]), _tile_edges(hw[1], tiles[1])
    out = torch.zeros(tiles[0] * tiles[1], *hw, dtype=torch.bool, device=device)
    for i in range(tiles[0]):
        for j in range(tiles[1]):
            out[i * tiles[1] + j, ye[i] : ye[i + 1], xe[j] : xe[j + 1]] = True
    return out


@dataclass
class SpectralAttribution:
    """Band importances of a batch: score drops when each band is removed (positive = the band supports
    the explained score).

    ``radial`` ``(B, R)`` and ``orientation`` ``(B, O)``; ``radial_energy``/``orientation_energy``: each
    band's share of the image's non-DC spectral energy (context: a large drop from a band with little energy
    is a strong cue); ``regional`` ``(B, R, gh, gw)`` per-tile drops of the radial bands, when asked for.
    Edges: ``radial_edges`` ``(R+1,)`` in units of Nyquist; ``orientation_edges`` ``(O+1,)`` in degrees.
    """

    radial_edges: Tensor
    orientation_edges: Tensor
    radial: Tensor
    orientation: Tensor
    radial_energy: Tensor
    orientation_energy: Tensor
    scores: Tensor
    probabilities: Tensor
    regional: Tensor | None = None
    tiles: tuple[int, int] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.radial.shape[0]

    def top_radial(self) -> Tensor:
        """``(B,)`` index of the radial band whose removal drops the score most."""
        return self.radial.argmax(dim=1)

    def top_orientation(self) -> Tensor:
        """``(B,)`` index of the orientation band whose removal drops the score most."""
        return self.orientation.argmax(dim=1)

    def spatial(self) -> Tensor | None:
        """``(B, gh, gw)``: per tile, the sum over radial bands of the drops (``None`` without tiles)."""
        return None if self.regional is None else self.regional.sum(dim=1)

    def to_dict(self, i: int) -> dict[str, Any]:
        """JSON-safe summary of image ``i``."""
        out: dict[str, Any] = {
            "score": float(self.scores[i]),
            "radial_edges": [float(v) for v in self.radial_edges],
            "orientation_edges": [float(v) for v in self.orientation_edges],
            "radial": [float(v) for v in self.radial[i]],
            "orientation": [float(v) for v in self.orientation[i]],
            "radial_energy": [float(v) for v in self.radial_energy[i]],
            "orientation_energy": [float(v) for v in self.orientation_energy[i]],
            "top_radial": int(self.top_radial()[i]),
            "top_orientation": int(self.top_orientation()[i]),
            **({"meta": self.meta} if self.meta else {}),
        }
        if self.regional is not None:
            out["tiles"] = list(self.tiles or ())
            out["regional"] = self.regional[i].tolist()
        return out


def _as_edges(spec: int | Sequence[float] | Tensor, default: Any, what: str) -> Tensor:
    if isinstance(spec, int):
        if spec < 1:
            raise ConfigError(f"need at least one {what} band, got {spec}")
        return default(spec)
    edges = torch.as_tensor(list(spec) if not isinstance(spec, Tensor) else spec, dtype=torch.float64)
    if edges.dim() != 1 or len(edges) < 2 or not bool((edges[1:] > edges[:-1]).all()):
        raise ConfigError(f"{what} edges must be an increasing sequence of at least 2 values")
    return edges


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, tuple) else (int(v), int(v))


class SpectralBands(Perturbation):
    """The band-stop computation behind :func:`explain_spectrum` and the ``"spectral"`` method."""

    name = "spectral"

    def __init__(
        self,
        *,
        radial: int | Sequence[float] = 8,
        orientations: int | Sequence[float] = 8,
        tiles: int | tuple[int, int] | None = None,
        **options: Unpack[FastOptions],
    ) -> None:
        super().__init__(**options)
        self.radial_edges = _as_edges(radial, default_radial_edges, "radial")
        self.orientation_edges = _as_edges(orientations, default_orientation_edges, "orientation")
        self.tiles = None if tiles is None else _pair(tiles)
        if self.tiles is not None and min(self.tiles) < 1:
            raise ConfigError(f"tiles must be >= 1, got {self.tiles}")

    def attribute(self, runner: Runner, detector: Detector, x: Tensor) -> SpectralAttribution:
        if x.dim() != 4:
            raise ConfigError(f"spectral attribution needs (B, C, H, W) images, got {tuple(x.shape)}")
        scores, probs, _ = self.baseline(runner, x)
        b, _, h, w = x.shape
        rmask, omask = band_masks((h, w), self.radial_edges, self.orientation_edges, x.device)
        masks = torch.cat([rmask, omask]).to(torch.float32)  # (K, H, W//2+1)
        nr, nk = rmask.shape[0], masks.shape[0]
        n_tiles = 0 if self.tiles is None else self.tiles[0] * self.tiles[1]
        self.maybe_fold(runner, x, b * (nk + nr * n_tiles))
        spec = torch.fft.rfft2(x.float())  # (B, C, H, W//2+1)
        power = spec.abs().square().sum(1)  # (B, H, W//2+1)
        # energy of the full spectrum: the half grid counts interior columns twice
        weight = torch.full((w // 2 + 1,), 2.0, device=x.device)
        weight[0] = 1.0
        if w % 2 == 0:
            weight[-1] = 1.0
        energy = torch.einsum("bhw,khw,w->bk", power, masks, weight)
        energy = energy / (energy[:, :nr].sum(1, keepdim=True)).clamp_min(1e-30)

        def band_part(b_idx: Tensor, k_idx: Tensor) -> Tensor:
            """The content of band ``k`` in image ``b``: ``F^{-1}(K ⊙ F(x))`` ``(n, C, H, W)``."""
            sel = spec.index_select(0, b_idx) * masks.index_select(0, k_idx)[:, None]
            return torch.fft.irfft2(sel, s=(h, w)).to(x.dtype)

        drops = x.new_zeros(b, nk, dtype=torch.float32)
        pairs = torch.cartesian_prod(torch.arange(b, device=x.device), torch.arange(nk, device=x.device))
        for sl in runner.chunks(pairs.shape[0]):
            b_idx, k_idx = pairs[sl, 0], pairs[sl, 1]
            inp = x.index_select(0, b_idx) - band_part(b_idx, k_idx)
            drops[b_idx, k_idx] = scores.index_select(0, b_idx) - runner.score(inp)

        regional = None
        if self.tiles is not None:
            tm = tile_masks((h, w), self.tiles, x.device)
            nt = tm.shape[0]
            regional = x.new_zeros(b, nr, nt, dtype=torch.float32)
            trip = torch.cartesian_prod(
                torch.arange(b, device=x.device),
                torch.arange(nr, device=x.device),
                torch.arange(nt, device=x.device),
            )
            for sl in runner.chunks(trip.shape[0]):
                b_idx, k_idx, t_idx = trip[sl, 0], trip[sl, 1], trip[sl, 2]
                part = band_part(b_idx, k_idx) * tm.index_select(0, t_idx)[:, None].to(x.dtype)
                inp = x.index_select(0, b_idx) - part
                regional[b_idx, k_idx, t_idx] = scores.index_select(0, b_idx) - runner.score(inp)
            regional = regional.view(b, nr, *self.tiles)
        return SpectralAttribution(
            radial_edges=self.radial_edges.float(),
            orientation_edges=self.orientation_edges.float(),
            radial=drops[:, :nr],
            orientation=drops[:, nr:],
            radial_energy=energy[:, :nr],
            orientation_energy=energy[:, nr:],
            scores=scores,
            probabilities=probs,
            regional=regional,
            tiles=self.tiles,
        )


@EXPLAINERS.register("spectral")
class SpectralExplainer(SpectralBands):
    r"""Frequency attribution as a spatial method: per tile, the summed band-stop drops of the radial bands.

    .. math:: S_t = \sum_k f(x) - f(x - T_t \odot F^{-1}(K_k \odot F(x)))

    ``meta`` carries the global band importances and edges (``radial``, ``orientation``, lists per image).
    Budget: ``radial`` × ``tiles`` (default 8 bands × 4×4 tiles = 128 forwards per image, plus 16 global).
    """

    name = "spectral"

    def __init__(
        self,
        *,
        radial: int | Sequence[float] = 8,
        orientations: int | Sequence[float] = 8,
        tiles: int | tuple[int, int] = 4,
        **options: Unpack[FastOptions],
    ) -> None:
        super().__init__(radial=radial, orientations=orientations, tiles=tiles, **options)

    def run(
        self, runner: Runner, detector: Detector, x: Tensor, target: Target, layers: tuple[str, ...]
    ) -> tuple[Tensor, dict[str, Any]]:
        attr = self.attribute(runner, detector, x)
        spatial = attr.spatial()
        assert spatial is not None
        meta: dict[str, Any] = {
            "scores": attr.scores,
            "probabilities": attr.probabilities,
            "layers": [],
            "radial_edges": [float(v) for v in attr.radial_edges],
            "orientation_edges": [float(v) for v in attr.orientation_edges],
            "radial": attr.radial.tolist(),
            "orientation": attr.orientation.tolist(),
            "tiles": list(self.tiles or ()),
        }
        return spatial, meta


def explain_spectrum(
    detector: Detector,
    x: Tensor,
    target: str | Target = "fake",
    *,
    radial: int | Sequence[float] = 8,
    orientations: int | Sequence[float] = 8,
    tiles: int | tuple[int, int] | None = None,
    batch_size: int | None = None,
    amp: AmpPolicy | None = "auto",
    channels_last: bool = True,
    fold_bn: bool | None = None,
    compile: bool = False,
    workers: int | None = None,
) -> SpectralAttribution:
    """Band importances of the normalised batch ``x`` ``(B, C, H, W)`` for ``target`` (fake log-odds).

    ``radial``/``orientations``: a number of equal bands or explicit edges (Nyquist units / degrees spanning
    180°); ``tiles``: also compute per-tile drops of the radial bands on a ``gh × gw`` grid.
    Cost: ``B·(R + O)`` forwards, plus ``B·R·gh·gw`` with tiles, pooled into chunks of ``batch_size``;
    ``fold_bn``, ``compile`` and ``workers`` as in :mod:`fakelens.explain.perturbation`.
    """
    bands = SpectralBands(
        radial=radial,
        orientations=orientations,
        tiles=tiles,
        batch_size=batch_size,
        amp=amp,
        channels_last=channels_last,
        fold_bn=fold_bn,
        compile=compile,
        workers=workers,
    )
    attr, meta = bands.execute(
        detector, x, resolve_target(target, detector), lambda runner: bands.attribute(runner, detector, x)
    )
    attr.meta.update(meta)
    return attr


__all__ = [
    "SpectralAttribution",
    "SpectralBands",
    "SpectralExplainer",
    "band_masks",
    "default_orientation_edges",
    "default_radial_edges",
    "explain_spectrum",
    "tile_masks",
]
