"""Large images read tile by tile at their own pixel grid: one score and one heatmap per image.

A detector whose input spec says ``mode="native"`` was trained on crops at the native pixel grid; shrinking a
large photo to its input erases the traces it reads (resampling periodicity, JPEG grids, noise). Such an
image is read as the native-scale tiles of :meth:`fakelens.geometry.Geometry.tiles` instead:

- **score**: the mean of the tiles' logits, ``z = (1/T) Σ_t z_t`` (for two classes the mean fake log-odds);
- **heatmap**: each tile's raw signed map is carried onto the original pixels through its Geometry and the
  tiles are blended where they overlap, ``S(p) = Σ_{t∋p} w_t(p) S_t(p) / Σ_{t∋p} w_t(p)`` with a pyramid
  weight ``w_t`` that peaks at the tile's centre (where its features saw their whole context) and falls
  towards its edges, so neighbouring tiles cross-fade instead of meeting at a seam; a pixel only one tile
  read gets that tile's value. The map drawn blends the tiles' ReLU'd maps the same way (each tile's drawn
  as a single view's is) and is divided by its peak once over the whole image — nothing is drawn when the
  stitched signed map, which ``stats`` describe, has no positive value — so tiles keep their relative
  strength (the gradient of the mean score w.r.t. tile t's features is ``1/T`` times tile t's own gradient:
  stitching the tiles' maps explains the image's score). Pixels no tile covers (``max_tiles`` reached) are
  not valid.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from fakelens.constants import DEFAULT_MAX_TILES
from fakelens.explain.explanation import (
    Explanation,
    map_stats,
    normalize_within,
    resample_within,
    valid_cells,
)
from fakelens.geometry import Geometry, prepare_views
from fakelens.models.base import Detector
from fakelens.models.fold import inference_logits

__all__ = ["DEFAULT_MAX_TILES", "image_logits", "stitch"]


def image_logits(
    detector: Detector,
    images: Sequence[Image.Image],
    *,
    max_tiles: int | None = DEFAULT_MAX_TILES,
    batch_size: int = 16,
) -> Tensor:
    """``(N, C)`` logits (float32, CPU) of each image: its one view, or the mean over its native tiles.

    Views of consecutive images share forwards of up to ``batch_size``; only one batch of pixels is held.
    """
    param = next(detector.parameters(), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    counts: list[int] = []
    pending: list[Tensor] = []
    logits: list[Tensor] = []

    def flush() -> None:
        x = torch.cat(pending).to(device=detector.device, dtype=dtype)
        logits.append(inference_logits(detector, detector.input_spec.normalize(x)).float().cpu())
        pending.clear()

    with torch.inference_mode():
        for img in images:
            pixels, _ = prepare_views(img, detector.input_spec, max_tiles=max_tiles)
            counts.append(pixels.shape[0])
            for chunk in pixels.split(batch_size):
                if pending and sum(p.shape[0] for p in pending) + chunk.shape[0] > batch_size:
                    flush()
                pending.append(chunk)
        if pending:
            flush()
    if not counts:
        return torch.empty(0, len(detector.labels))
    return torch.stack([z.mean(0) for z in torch.cat(logits).split(counts)])


def stitch(
    parts: Sequence[Explanation], geometries: Sequence[Geometry], logits: Tensor, detector: Detector
) -> Explanation:
    """One image's Explanation from its tiles' Explanations (``parts``: consecutive chunks of views, in the
    order of ``geometries``); ``logits`` ``(1, C)`` is the image's mean logit vector.

    ``raw`` is the stitched signed map average-pooled to the tiles' feature stride; ``maps[0]`` the stitched
    ReLU'd map on the original pixels, normalised within ``valid[0]`` (pixels some tile covers).
    """
    raws = torch.cat([p.raw for p in parts]).float()
    if raws.shape[0] != len(geometries):
        raise ValueError(f"{raws.shape[0]} tile maps for {len(geometries)} tiles")
    tile_scores = torch.cat([p.scores for p in parts]).float()
    if parts[0].meta.get("relative_to_score"):
        # each tile's map was divided by its own |score| (AblationCAM): divide by the image's instead, or
        # an undecided tile (score near 0) is blown up over the decisive ones
        scale = tile_scores.abs() / tile_scores.mean().abs().clamp_min(1e-12)
        raws = raws * scale.to(raws)[:, None, None]
    h0, w0 = geometries[0].original_size
    canvas = raws.new_zeros(2, h0, w0)  # signed, ReLU'd (each tile's map drawn as a single view's is)
    weight = raws.new_zeros(h0, w0)
    for raw, g in zip(raws, geometries, strict=True):
        cells = valid_cells(g.valid_input(device=raw.device)[None], (raw.shape[-2], raw.shape[-1]))[0]
        win = resample_within(partial(_in_window, g), torch.stack([raw, raw.clamp_min(0)]), cells)
        rows, cols = g.window()
        w = _pyramid(win.shape[-2], raws)[:, None] * _pyramid(win.shape[-1], raws)[None, :]
        canvas[:, rows, cols] += w * win
        weight[rows, cols] += w
    valid = weight > 0
    canvas = canvas / weight.clamp_min(1e-12)
    (ih, iw), (rh, rw) = geometries[0].input_size, raws.shape[-2:]
    coarse = (max(1, round(h0 * rh / ih)), max(1, round(w0 * rw / iw)))
    raw = F.adaptive_avg_pool2d(canvas[:1][None], coarse)[0]
    stats = map_stats(raw, valid_cells(valid[None], (raw.shape[-2], raw.shape[-1])))
    # the statistics (and the flat flag) read the stitched signed map: where it holds no positive value,
    # nothing is drawn either — a tile's faint positive cells are not stretched into a full-scale hot spot
    shown = canvas[1] * (stats["max"][0] > 0)
    scores = tile_scores.mean()[None]
    first = parts[0]
    meta = _merged_meta(parts)
    meta["tiling"] = {
        "count": len(geometries),
        "size": list(geometries[0].input_size),
        "boxes": [[int(v) for v in g.source_box] for g in geometries],
        "coverage": float(valid.float().mean()),
    }
    return Explanation(
        method=first.method,
        layers=first.layers,
        target=first.target,
        raw=raw,
        maps=[normalize_within(shown, valid)],
        valid=[valid],
        stats=stats,
        scores=scores,
        probabilities=detector.fake_probability(logits).float(),
        meta=meta,
        logits=logits,
    )


def _in_window(g: Geometry, maps: Tensor) -> Tensor:
    return g.to_window(maps)[0]


def _pyramid(n: int, like: Tensor) -> Tensor:
    """``(n,)`` weights rising linearly from a tile's edges to 1 at its centre (never 0)."""
    i = torch.arange(n, device=like.device, dtype=like.dtype) + 0.5
    return (torch.minimum(i, n - i) / (n / 2)).clamp_min(1e-3)


PER_VIEW_META = frozenset({"channels_used", "channels_constant", "channels_zero", "radial", "orientation"})
"""Meta entries that hold one value per image of the batch (per layer when several layers are explained)."""


def _merged_meta(parts: Sequence[Explanation]) -> dict[str, Any]:
    """The tiles' meta as one image's: per-view entries become per-tile lists (in tile order), artifact-token
    records gain their ``tile`` (``image`` is 0: the one image), differing counts (``forwards``) are summed,
    and entries every chunk agrees on are kept."""
    sizes = [len(p) for p in parts]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    out: dict[str, Any] = {}
    for key, first in parts[0].meta.items():
        values = [p.meta.get(key) for p in parts]
        if key == "artifact_tokens":
            out[key] = [
                {**rec, "image": 0, "tile": start + int(rec["image"])}
                for start, recs in zip(starts, values, strict=True)
                for rec in recs or []
            ]
        elif key in PER_VIEW_META:
            out[key] = _concat_views(key, values)
        elif all(_same(v, first) for v in values):
            out[key] = first
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            out[key] = sum(values)
        else:
            out[key] = values  # one per chunk of tiles
    return out


def _concat_views(key: str, values: Sequence[Any]) -> list[Any]:
    """Join per-view lists of consecutive chunks; channel counts of several layers come layer-major."""
    layer_major = key.startswith("channels_") and bool(values[0]) and isinstance(values[0][0], list)
    if layer_major:
        return [[x for v in values for x in v[i]] for i in range(len(values[0]))]
    return [x for v in values for x in v]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return False
    return bool(a == b)
