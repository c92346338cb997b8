"""fakelens: explainable deepfake image detection.

The entry points a library user needs, importable from ``fakelens`` itself (loaded on first use, so
``import fakelens`` stays light)::

    import fakelens

    model = fakelens.load_detector("default")  # the shipped ensemble; or a checkpoint path, a model name
    image = fakelens.load_image("photo.jpg")  # RGB, EXIF-rotated, transparency recorded
    [a] = fakelens.analyze_images(model, [image], ["gradcam"])  # verdicts, heatmaps, robustness badges
    a.verdict, a.models[0].heatmaps["gradcam"].map  # (H, W) on the photo's own pixels

Explanation methods work on one detector: ``fakelens.explain_images(detector, images, methods)``;
``fakelens.wrap_model`` makes a detector of your own PyTorch classifier.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "analyze_images": "fakelens.analysis",
    "explain_images": "fakelens.pipeline",
    "load_detector": "fakelens.models",
    "create_model": "fakelens.models",
    "wrap_model": "fakelens.models",
    "Ensemble": "fakelens.models",
    "load_image": "fakelens.io",
}

__all__ = [
    "Ensemble",
    "__version__",
    "analyze_images",
    "create_model",
    "explain_images",
    "load_detector",
    "load_image",
    "wrap_model",
]

if TYPE_CHECKING:
    from fakelens.analysis import analyze_images
    from fakelens.io import load_image
    from fakelens.models import Ensemble, create_model, load_detector, wrap_model
    from fakelens.pipeline import explain_images


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fakelens' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
