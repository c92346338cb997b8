"""Images in, verdicts and explanations on the original pixel grid out: the job behind ``fakelens explain``.

Prepares each image with the detector's input spec (recording its Geometry), runs the detector and every
requested method on a batch — gradient CAMs from one shared capture — and maps each heatmap back onto the
original image's pixels. A detector with ``mode="native"`` reads an image larger than its input as native
tiles (:mod:`fakelens.tiling`): one score and one stitched heatmap per image.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from fakelens.constants import PARTIAL_READ, SMALL_IMAGE
from fakelens.devices import resolve_device
from fakelens.errors import ConfigError
from fakelens.explain.engine import explain, method_list
from fakelens.explain.explanation import Explanation
from fakelens.geometry import Geometry, covered_fraction, prepare_views
from fakelens.models.base import Detector, require_detector
from fakelens.models.fold import inference_logits
from fakelens.reprs import CompactRepr
from fakelens.tiling import DEFAULT_MAX_TILES, stitch


@dataclass(repr=False)
class ImageResult(CompactRepr):
    """One image's verdict and its explanations (maps on the original grid, in [0, 1])."""

    image: Image.Image
    geometry: Geometry
    logits: list[float]
    labels: tuple[str, ...]
    is_detector: bool
    explanations: dict[str, Explanation] = field(default_factory=dict)
    index: int = 0  # position of this image inside each Explanation's batch
    tiles: list[Geometry] = field(default_factory=list)  # the native tiles read, when more than one
    lead_tile: int | None = None  # index into tiles of the most fake-looking one (a detector's)
    fake_index: int | None = None  # the fake class's logit (None: the label "fake")

    @property
    def view(self) -> Geometry:
        """The one view to examine closely (robustness badges): the lead tile of a tiled image, else the
        image's own fit."""
        return self.tiles[self.lead_tile] if self.tiles and self.lead_tile is not None else self.geometry

    @property
    def fake_probability(self) -> float | None:
        """Probability of the fake label (None for a classifier without one, e.g. ImageNet)."""
        if not self.is_detector:
            return None
        z = torch.tensor(self.logits)
        if len(z) == 1:
            return float(torch.sigmoid(z[0]))
        k = self.fake_index if self.fake_index is not None else self.labels.index("fake")
        return float(torch.softmax(z, 0)[k])

    def top_labels(self, k: int = 3) -> list[tuple[str, float]]:
        probs = torch.softmax(torch.tensor(self.logits), 0) if len(self.logits) > 1 else None
        if probs is None:
            return [(self.labels[0], float(torch.sigmoid(torch.tensor(self.logits[0]))))]
        top = probs.topk(min(k, len(self.labels)))
        return [(self.labels[int(i)], float(p)) for p, i in zip(top.values, top.indices, strict=True)]

    def map(self, method: str) -> torch.Tensor:
        return self.explanations[method].maps[self.index]

    def valid(self, method: str) -> torch.Tensor:
        return self.explanations[method].valid[self.index]

    @property
    def pixel_fraction(self) -> float:
        """The image's own pixels read per input pixel, mean over the views read (below
        :data:`~fakelens.constants.SMALL_IMAGE`: a small image, little evidence either way)."""
        views = self.tiles or [self.geometry]
        return sum(g.pixel_fraction for g in views) / len(views)

    @property
    def coverage(self) -> float:
        """The share of the image's pixels some view read (below 1: tiles capped by ``max_tiles`` left gaps,
        or a centre crop cut the borders)."""
        return covered_fraction(self.tiles or [self.geometry])

    def summary(self, threshold: float = 0.5) -> dict[str, Any]:
        coverage = self.coverage
        out: dict[str, Any] = {
            "width": self.image.width,
            "height": self.image.height,
            "pixel_fraction": self.pixel_fraction,
            "small": self.pixel_fraction < SMALL_IMAGE,
            "coverage": coverage,
            "partial": coverage < PARTIAL_READ,
            "geometry": self.geometry.to_dict(),
            **({"tiles": [list(g.source_box) for g in self.tiles]} if self.tiles else {}),
            **({"lead_tile": self.lead_tile} if self.tiles and self.lead_tile is not None else {}),
            "top_labels": [{"label": lab, "probability": p} for lab, p in self.top_labels()],
        }
        p = self.fake_probability
        if p is not None:
            out["fake_probability"] = p
            out["verdict"] = "fake" if p >= threshold else "real"
        out["methods"] = {m: e.summary(self.index) for m, e in self.explanations.items()}
        return out


def batched(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def check_images(images: Any) -> list[Image.Image]:
    """``images`` as a list of PIL images (one image is a list of one); a clear TypeError for anything else,
    e.g. arrays, tensors or paths (read those with :func:`fakelens.io.load_image`)."""
    if isinstance(images, Image.Image):
        return [images]
    if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
        raise TypeError(f"images must be a list of PIL images, not {type(images).__name__}")
    bad = next((im for im in images if not isinstance(im, Image.Image)), None)
    if bad is not None:
        raise TypeError(
            f"images must be a list of PIL images, got {type(bad).__name__} (read files and arrays with "
            "fakelens.io.load_image or PIL.Image.fromarray)"
        )
    return list(images)


def explain_images(
    detector: Detector,
    images: Sequence[Image.Image],
    methods: Sequence[str] = ("gradcam",),
    *,
    target: str = "fake",
    layers: Sequence[str] | None = None,
    device: torch.device | str | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    max_tiles: int | None = DEFAULT_MAX_TILES,
    tile_batch: int = 16,
) -> list[ImageResult]:
    """Explain a batch of images; maps come back on each image's original pixel grid. ``options``: per
    method keyword options (see :func:`fakelens.explain.engine.parse_options`). Images a ``native`` detector
    reads as several tiles are explained ``tile_batch`` tiles at a time and stitched (:mod:`fakelens.tiling`);
    the others share one batch."""
    require_detector(detector, "explain_images")
    images, methods = check_images(images), method_list(methods)  # names and options: checked by explain
    dev = resolve_device(str(device)) if device is not None else detector.device
    if max_tiles is not None and (not isinstance(max_tiles, int) or max_tiles < 1):
        raise ConfigError(f"max_tiles must be a whole number ≥ 1 (or None), not {max_tiles!r}")
    detector.to(dev)
    views = [prepare_views(img, detector.input_spec, max_tiles=max_tiles) for img in images]
    single = [i for i, (_, g) in enumerate(views) if len(g) == 1]
    out: dict[int, ImageResult] = {}
    if single:
        pixels = torch.cat([views[i][0] for i in single])
        geoms = [views[i][1][0] for i in single]
        results, logits = _explain(detector, pixels, geoms, methods, target, layers, options)
        for k, i in enumerate(single):
            out[i] = _result(detector, images[i], geoms[k], logits[k], results, k)
    for i, (pixels, geoms) in enumerate(views):
        if len(geoms) == 1:
            continue
        parts: dict[str, list[Explanation]] = {m: [] for m in methods}
        chunks: list[Tensor] = []
        for start in range(0, len(geoms), tile_batch):
            sl = slice(start, start + tile_batch)
            results, logits = _explain(detector, pixels[sl], None, methods, target, layers, options)
            chunks.append(logits)
            for m, e in results.items():
                parts[m].append(e)
        per_tile = torch.cat(chunks)
        mean = per_tile.mean(0, keepdim=True)
        stitched = {m: stitch(parts[m], geoms, mean, detector) for m in methods}
        centre = Geometry.fit(geoms[0].original_size, detector.input_spec.size, "native")
        out[i] = _result(detector, images[i], centre, mean[0], stitched, 0, geoms)
        if out[i].is_detector:
            out[i].lead_tile = int(detector.fake_probability(per_tile).argmax())
    return [out[i] for i in range(len(images))]


def _explain(
    detector: Detector,
    pixels: Tensor,
    geometries: Sequence[Geometry] | None,
    methods: Sequence[str],
    target: str,
    layers: Sequence[str] | None,
    options: dict[str, dict[str, Any]] | None,
) -> tuple[dict[str, Explanation], Tensor]:
    """Every method on one batch of prepared pixels, and the batch's logits ``(B, C)`` (float32, CPU)."""
    x = detector.input_spec.normalize(pixels.to(detector.device))
    results: dict[str, Explanation] = {}
    if methods:
        results = explain(
            detector, x, methods, target=target, layers=layers, geometries=geometries, options=options
        )
    known = next((e.logits for e in results.values() if e.logits is not None), None)
    if known is None:
        with torch.inference_mode():
            known = inference_logits(detector, x)
    return results, known.detach().float().cpu()


def _result(
    detector: Detector,
    image: Image.Image,
    geometry: Geometry,
    logits: Tensor,
    explanations: dict[str, Explanation],
    index: int,
    tiles: Sequence[Geometry] = (),
) -> ImageResult:
    return ImageResult(
        image=image,
        geometry=geometry,
        logits=logits.tolist(),
        labels=detector.labels,
        is_detector=detector.is_detector,
        explanations=explanations,
        index=index,
        tiles=list(tiles),
        fake_index=detector.fake_index,
    )
