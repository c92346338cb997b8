"""The Explanation record: raw signed maps, maps on the original image grid, and their statistics.

Peers min-max every map, which makes a flat or noisy map look confident. Here the raw map keeps its
scale and sign, and ``stats`` say how confident it is (peak-to-mean, entropy, negative mass).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from fakelens.errors import ExplanationError
from fakelens.reprs import CompactRepr

if TYPE_CHECKING:
    from fakelens.geometry import Geometry

STAT_NAMES = ("min", "max", "sum", "negative_mass", "peak_to_mean", "entropy")


def map_stats(raw: Tensor, valid: Tensor | None = None) -> dict[str, Tensor]:
    r"""Per-map statistics of ``raw`` ``(B, h, w)``, each ``(B,)``, computed on the device, over the cells
    of ``valid`` ``(B, h, w)`` (all by default; see :func:`valid_cells`) — padding is not part of the image.

    ``negative_mass = Σ ReLU(−S) / Σ|S|``; ``peak_to_mean = max S⁺ / mean S⁺`` (1 for a flat map, large for
    a focused one); ``entropy = −Σ p log p / log N`` with ``p = S⁺ / Σ S⁺`` (1 = flat, 0 = one pixel).
    """
    flat = raw.flatten(1).float()
    v = torch.ones_like(flat, dtype=torch.bool) if valid is None else valid.flatten(1).to(flat.device).bool()
    n = v.sum(1).clamp_min(1).float()
    masked = flat * v
    pos = masked.clamp_min(0)
    pos_sum = pos.sum(1)
    p = pos / pos_sum.clamp_min(1e-30)[:, None]
    entropy = -(p * torch.log(p.clamp_min(1e-30))).sum(1) / torch.log(n.clamp_min(2))
    stats = {
        "min": flat.masked_fill(~v, math.inf).amin(1),
        "max": flat.masked_fill(~v, -math.inf).amax(1),
        "sum": masked.sum(1),
        "negative_mass": (-masked).clamp_min(0).sum(1) / masked.abs().sum(1).clamp_min(1e-30),
        "peak_to_mean": pos.amax(1) / (pos_sum / n).clamp_min(1e-30),
        "entropy": torch.where(pos_sum > 0, entropy, torch.ones_like(entropy)),
    }
    # + 0.0 turns IEEE negative zeros into zeros (a one-cell map's entropy −Σ 1·log 1 showed as -0.0)
    return {k: s + 0.0 for k, s in stats.items()}


def valid_cells(valid: Tensor, grid: tuple[int, int]) -> Tensor:
    """``(B, H, W)`` valid input pixels → ``(B, h, w)`` feature cells mostly made of them (where an image
    has none, those that hold any): a cell part image, part padding keeps its own value on its image pixels
    when the image is most of what it saw — it may hold the strongest evidence — and is treated as padding
    (its value earned by the padding) when it is not."""
    share = F.adaptive_avg_pool2d(valid[:, None].float(), grid)[:, 0]
    half = share > 0.5
    return torch.where(half.flatten(1).any(1)[:, None, None], half, share > 0)


def image_cells(valid: Tensor, grid: tuple[int, int]) -> Tensor:
    """``(B, H, W)`` valid input pixels → ``(B, h, w)`` feature cells made only of them (where an image has
    none, those at least half made of them, else those that hold any): the cells whose activations the
    padding did not shape, for statistics *of the activations* (EigenCAM's principal component)."""
    share = F.adaptive_avg_pool2d(valid[:, None].float(), grid)[:, 0]
    out = share > 0
    for level in (0.5, 1.0 - 1e-6):
        keep = share >= level
        out = torch.where(keep.flatten(1).any(1)[:, None, None], keep, out)
    return out


def resample_within(sample: Callable[[Tensor], Tensor], maps: Tensor, cells: Tensor) -> Tensor:
    """``sample`` (a :class:`~fakelens.geometry.Geometry` resampling) of ``maps`` ``(M, h, w)`` from the
    feature ``cells`` ``(h, w)`` that hold the image (:func:`valid_cells`): a cell wholly over the padding of
    a small or letterboxed image — whose value the image's pixels never earned — takes its nearest image
    cells' values first
    (:func:`_extend`), so it does not bleed into the pixels beside it. Where every cell is the image, plain
    ``sample``."""
    if bool(cells.all()):
        return sample(maps)
    return sample(_extend(maps, cells))


def _extend(maps: Tensor, cells: Tensor) -> Tensor:
    """``maps`` ``(M, h, w)`` with every cell outside ``cells`` replaced by the mean of its nearest cells
    inside (grown ring by ring): between an image cell's centre and the image's edge, bilinear sampling then
    meets the image's own values, neither the padding's nor zeros."""
    known = cells.clone()
    out = maps * known
    ones = maps.new_ones(1, 1, 3, 3)
    while not bool(known.all()):
        k = known.to(maps.dtype)[None, None]
        den = F.conv2d(k, ones, padding=1)[0, 0]
        grow = ~known & (den > 0)
        if not bool(grow.any()):  # no image cell at all: nothing to extend
            break
        num = F.conv2d((out * known)[:, None], ones, padding=1)[:, 0]
        out = torch.where(grow, num / den.clamp_min(1), out)
        known = known | grow
    return out


def normalize_within(maps: Tensor, valid: Tensor) -> Tensor:
    """Scale each map ``(..., H, W)`` to [0, 1] over its valid pixels, from ``min(0, its minimum)`` to its
    peak: a ReLU'd map (minimum 0) is divided by its peak — "share of the peak", as the colour bars say —
    and a map positive everywhere (attention, rollout) is *not* stretched from its minimum, which would
    paint a near-uniform map as confident hot spots. 0 outside the valid pixels and for constant maps."""
    flat = maps.flatten(-2)
    whole = bool(valid.all())  # the usual case: no masked copies of a full-resolution map
    v = valid.flatten(-2).expand_as(flat)
    lo = (flat if whole else flat.masked_fill(~v, math.inf)).amin(-1, keepdim=True).clamp_max(0.0)
    hi = (flat if whole else flat.masked_fill(~v, -math.inf)).amax(-1, keepdim=True)
    span = hi - lo
    out = torch.where(span > 1e-12, (flat - lo) / span.clamp_min(1e-12), torch.zeros_like(flat)).clamp_(0, 1)
    return (out if whole else out * v).view_as(maps)


def fuse_layers(raws: Sequence[Tensor]) -> Tensor:
    """Fuse per-layer signed maps: scale each by its max |value| per image, resample to the finest grid
    (bilinear), average. One layer is returned unchanged."""
    if len(raws) == 1:
        return raws[0]
    size = max((r.shape[-2:] for r in raws), key=lambda s: s[0] * s[1])
    fused = []
    for r in raws:
        r = r / r.flatten(1).abs().amax(1).clamp_min(1e-30)[:, None, None]
        if r.shape[-2:] != size:
            r = F.interpolate(r[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
        fused.append(r)
    return torch.stack(fused).mean(0)


@dataclass(repr=False)
class Explanation(CompactRepr):
    """One method's explanation of a batch.

    ``raw``: ``(B, h, w)`` signed map at feature resolution; ``maps[i]``: image i's ReLU'd map on its
    original pixel grid (or the input grid when no geometry was given), divided by its peak within
    ``valid[i]`` (:func:`normalize_within`) and 0 outside it; ``stats``: :func:`map_stats` of ``raw``;
    ``scores``: the explained score.
    """

    method: str
    layers: tuple[str, ...]
    target: str
    raw: Tensor
    maps: list[Tensor]
    valid: list[Tensor]
    stats: dict[str, Tensor]
    scores: Tensor
    probabilities: Tensor
    meta: dict[str, Any] = field(default_factory=dict)
    logits: Tensor | None = None

    def __len__(self) -> int:
        return self.raw.shape[0]

    def stacked(self) -> Tensor:
        """All maps as one ``(B, H, W)`` tensor (they must share a size, e.g. views of one input size)."""
        return torch.stack(self.maps)

    def rows(self, start: int, stop: int) -> Explanation:
        """The explanation of images ``start`` … ``stop − 1`` (its tensors and maps as if they had been the
        batch); ``meta``'s artifact-token records are kept for those images and renumbered, its other entries
        (a perturbation method's counts) still describe the whole batch."""
        meta = dict(self.meta)
        if isinstance(meta.get("artifact_tokens"), list):
            meta["artifact_tokens"] = [
                {**r, "image": r["image"] - start}
                for r in meta["artifact_tokens"]
                if isinstance(r, dict) and start <= r.get("image", -1) < stop
            ]
        return Explanation(
            self.method,
            self.layers,
            self.target,
            self.raw[start:stop],
            self.maps[start:stop],
            self.valid[start:stop],
            {k: v[start:stop] for k, v in self.stats.items()},
            self.scores[start:stop],
            self.probabilities[start:stop],
            meta,
            None if self.logits is None else self.logits[start:stop],
        )

    def summary(self, i: int) -> dict[str, Any]:
        """JSON-safe summary of image ``i``: method, layers, target score, stats, flat flag (the model's own
        probability belongs to the model, not to a map: :class:`~fakelens.pipeline.ImageResult`)."""
        stats = {k: float(v[i]) for k, v in self.stats.items()}
        return {
            "method": self.method,
            "layers": list(self.layers),
            "target": self.target,
            "score": float(self.scores[i]),
            "raw_shape": list(self.raw.shape[1:]),
            "stats": stats,
            "flat": bool(stats["max"] <= 0 or stats["entropy"] > 0.995),
            **({"meta": self.meta} if self.meta else {}),
        }


def build_explanations(
    methods: Sequence[str],
    layers: Sequence[str],
    target: str,
    raws: Tensor,
    scores: Tensor,
    probabilities: Tensor,
    input_hw: tuple[int, int],
    geometries: Sequence[Geometry] | None = None,
    valid: Tensor | None = None,
    meta: dict[str, Any] | None = None,
    logits: Tensor | None = None,
) -> list[Explanation]:
    """Explanations of M methods at once from their stacked raw maps ``(M, B, h, w)``.

    Maps go onto the original images (``geometries``) or the input grid; ``valid`` ``(B, H, W)`` optionally
    marks input pixels that came from the image (e.g. the non-black part of a rotated view), used only when
    no geometry is given. Resampling, normalisation and statistics run once over all M·B maps: a handful of
    kernels instead of a handful per method.
    """
    n_m, b = raws.shape[:2]
    finite = torch.isfinite(raws).flatten(1).all(1).tolist()
    if not all(finite):
        bad = ", ".join(m for m, ok in zip(methods, finite, strict=True) if not ok)
        raise ExplanationError(f"{bad} produced non-finite values (NaN or infinity): no map to show or score")
    pos = raws.clamp_min(0).float()
    maps: list[list[Tensor]] = [[] for _ in range(n_m)]
    valids: list[Tensor] = []
    grid = (raws.shape[-2], raws.shape[-1])
    if geometries is not None:
        if len(geometries) != b:
            raise ValueError(f"{len(geometries)} geometries for a batch of {b}")
        cells = valid_cells(torch.stack([g.valid_input(device=raws.device) for g in geometries]), grid)
        for i, g in enumerate(geometries):
            v = g.valid_original(device=raws.device)
            norm = normalize_within(resample_within(g.to_original, pos[:, i], cells[i]), v)  # (M, H0, W0)
            for k in range(n_m):
                maps[k].append(norm[k])
            valids.append(v)
    else:
        up = F.interpolate(pos.flatten(0, 1)[:, None], size=input_hw, mode="bilinear", align_corners=False)
        up = up.view(n_m, b, *input_hw)
        v_all = (
            valid.to(device=up.device, dtype=torch.bool)
            if valid is not None
            else torch.ones(b, *input_hw, dtype=torch.bool, device=up.device)
        )
        norm = normalize_within(up, v_all)
        maps = [list(norm[k].unbind(0)) for k in range(n_m)]
        valids = list(v_all.unbind(0))
        cells = valid_cells(v_all, grid)
    stats = {k: v.view(n_m, b) for k, v in map_stats(raws.flatten(0, 1), cells.repeat(n_m, 1, 1)).items()}
    return [
        Explanation(
            method=m,
            layers=tuple(layers),
            target=target,
            raw=raws[k],
            maps=maps[k],
            valid=valids,
            stats={name: v[k] for name, v in stats.items()},
            scores=scores,
            probabilities=probabilities,
            meta=dict(meta or {}),
            logits=logits,
        )
        for k, m in enumerate(methods)
    ]


def build_explanation(
    method: str,
    layers: Sequence[str],
    target: str,
    raw: Tensor,
    scores: Tensor,
    probabilities: Tensor,
    input_hw: tuple[int, int],
    geometries: Sequence[Geometry] | None = None,
    valid: Tensor | None = None,
    meta: dict[str, Any] | None = None,
    logits: Tensor | None = None,
) -> Explanation:
    """:func:`build_explanations` for one method's raw maps ``(B, h, w)``."""
    return build_explanations(
        [method], layers, target, raw[None], scores, probabilities, input_hw, geometries, valid, meta, logits
    )[0]
