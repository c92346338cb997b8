"""Images in, verdicts and explanations on the original pixel grid out: the job behind ``fakelens explain``.

Prepares each image with the detector's input spec (recording its Geometry), runs the detector and every
requested method on a batch — gradient CAMs from one shared capture — and maps each heatmap back onto the
original image's pixels.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from fakelens.explain.engine import explain
from fakelens.explain.explanation import Explanation
from fakelens.geometry import Geometry, prepare_batch
from fakelens.models.base import Detector


@dataclass
class ImageResult:
    """One image's verdict and its explanations (maps on the original grid, in [0, 1])."""

    image: Image.Image
    geometry: Geometry
    logits: list[float]
    labels: tuple[str, ...]
    is_detector: bool
    explanations: dict[str, Explanation] = field(default_factory=dict)
    index: int = 0  # position of this image inside each Explanation's batch

    @property
    def fake_probability(self) -> float | None:
        """Probability of the fake label (None for a classifier without one, e.g. ImageNet)."""
        if not self.is_detector:
            return None
        z = torch.tensor(self.logits)
        if len(z) == 1:
            return float(torch.sigmoid(z[0]))
        return float(torch.softmax(z, 0)[self.labels.index("fake")])

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

    def summary(self, threshold: float = 0.5) -> dict[str, Any]:
        out: dict[str, Any] = {
            "width": self.image.width,
            "height": self.image.height,
            "geometry": self.geometry.to_dict(),
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


def explain_images(
    detector: Detector,
    images: Sequence[Image.Image],
    methods: Sequence[str] = ("gradcam",),
    *,
    target: str = "fake",
    layers: Sequence[str] | None = None,
    device: torch.device | str | None = None,
    options: dict[str, dict[str, Any]] | None = None,
) -> list[ImageResult]:
    """Explain a batch of images; maps come back on each image's original pixel grid. ``options``: per
    method keyword options (see :func:`fakelens.explain.engine.parse_options`)."""
    dev = torch.device(device) if device is not None else detector.device
    detector.to(dev)
    pixels, geoms = prepare_batch(images, detector.input_spec)
    x = detector.input_spec.normalize(pixels.to(dev))
    is_detector = "fake" in detector.labels
    results: dict[str, Explanation] = {}
    if methods:
        results = explain(
            detector, x, methods, target=target, layers=layers, geometries=geoms, options=options
        )
    known = next((e.logits for e in results.values() if e.logits is not None), None)
    if known is None:
        with torch.inference_mode():
            known = detector(x)
    logits = known.float().cpu()
    return [
        ImageResult(
            image=img,
            geometry=g,
            logits=logits[i].tolist(),
            labels=detector.labels,
            is_detector=is_detector,
            explanations=results,
            index=i,
        )
        for i, (img, g) in enumerate(zip(images, geoms, strict=True))
    ]
