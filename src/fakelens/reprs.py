"""Short reprs for result objects: a notebook shows shapes and numbers, not kilobytes of tensor dumps."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from PIL import Image
from torch import Tensor

__all__ = ["CompactRepr", "compact"]


def compact(value: Any, depth: int = 0) -> str:
    """``value`` in a few characters: arrays and tensors by shape and dtype, images by mode and size,
    containers by their first items."""
    if isinstance(value, Tensor):
        if value.numel() == 1:
            return f"tensor({value.item():.4g})"
        return f"Tensor{tuple(value.shape)} {str(value.dtype).removeprefix('torch.')}"
    if isinstance(value, np.ndarray):
        return f"ndarray{value.shape} {value.dtype}"
    if isinstance(value, Image.Image):
        return f"<Image {value.mode} {value.width}×{value.height}>"
    if isinstance(value, float):
        return f"{value:.4g}"
    if depth >= 2 and isinstance(value, (dict, list, tuple)):
        return f"<{type(value).__name__} of {len(value)}>"
    if isinstance(value, dict):
        items = [f"{k!r}: {compact(v, depth + 1)}" for k, v in list(value.items())[:6]]
        return "{" + ", ".join(items) + (", …" if len(value) > 6 else "") + "}"
    if isinstance(value, (list, tuple)):
        items = [compact(v, depth + 1) for v in value[:4]]
        more = f", … ({len(value)} items)" if len(value) > 4 else ""
        body = ", ".join(items) + more
        return f"[{body}]" if isinstance(value, list) else f"({body}{',' if len(value) == 1 else ''})"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        text = repr(value)  # a result inside a result (compact itself), or a short description
        return text if isinstance(value, CompactRepr) or len(text) <= 120 else f"<{type(value).__name__}>"
    return repr(value)


class CompactRepr:
    """A dataclass's ``repr`` with every field shortened by :func:`compact` (decorate it ``repr=False``)."""

    def __repr__(self) -> str:
        fields = [f for f in dataclasses.fields(self) if f.repr]  # type: ignore[arg-type]
        body = ", ".join(f"{f.name}={compact(getattr(self, f.name), 1)}" for f in fields)
        return f"{type(self).__name__}({body})"
