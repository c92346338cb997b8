"""Per-face verdicts: every detected face judged on its own, as the platforms that check group photos do.

A face swap or a blend in a group photo changes one face; the image's score averages it with everything else
(the mean log-odds of a native member's tiles). Here each face gets the verdict of the same ensemble on a
square window centred on it — the models' input side, or twice the face's longer side when that is larger (so
a close-up keeps its chin and hairline) — shifted to lie inside the image. Each member reads the window as its
input spec says (a ``native`` member: at the photo's own pixel grid, in tiles when the window is larger than
its input), so the face's pixels are never resampled before a model sees them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from fakelens.analysis import as_ensemble
from fakelens.data.faces import Face
from fakelens.errors import FakelensError
from fakelens.models.base import Detector
from fakelens.models.ensemble import Ensemble
from fakelens.pipeline import explain_images
from fakelens.tiling import DEFAULT_MAX_TILES, image_logits

__all__ = ["FaceVerdict", "face_verdicts", "face_window", "fake_faces_in_real"]

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class FaceVerdict:
    """One face's verdict: ``box`` the face and ``window`` what the models read (``(left, top, right,
    bottom)`` in original pixels); ``members``: each member's fake probability (calibrated, when the
    ensemble is) and its verdict at its own threshold; ``heatmaps``: when asked for, each member's map and
    validity mask on the window's pixels (not serialised)."""

    box: Box
    window: tuple[int, int, int, int]
    fake_probability: float
    verdict: str
    members: dict[str, tuple[float, str]]
    heatmaps: dict[str, tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def split(self) -> bool:
        """The members' verdicts on this face differ: its verdict is weak."""
        return len({v for _, v in self.members.values()}) > 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": [round(v, 2) for v in self.box],
            "window": list(self.window),
            "score": self.fake_probability,
            "verdict": self.verdict,
            "split": self.split,
            "models": {n: {"score": p, "verdict": v} for n, (p, v) in self.members.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FaceVerdict:
        """The inverse of :meth:`to_dict` (the box as rounded there)."""
        x0, y0, x1, y1 = (float(v) for v in d["box"])
        left, top, right, bottom = (int(v) for v in d["window"])
        return cls(
            box=(x0, y0, x1, y1),
            window=(left, top, right, bottom),
            fake_probability=float(d["score"]),
            verdict=str(d["verdict"]),
            members={n: (float(m["score"]), str(m["verdict"])) for n, m in d["models"].items()},
        )


def face_window(box: Box, width: int, height: int, side: int) -> tuple[int, int, int, int]:
    """The square window of side ``max(side, 2 × the box's longer side)`` centred on ``box``, shifted to lie
    inside a ``width`` × ``height`` image (cut to it along a side the image is shorter than)."""
    x0, y0, x1, y1 = box
    s = max(side, round(2 * max(x1 - x0, y1 - y0)))

    def axis(c: float, n: int) -> tuple[int, int]:
        if s >= n:
            return 0, n
        start = min(max(0, round(c - s / 2)), n - s)
        return start, start + s

    left, right = axis((x0 + x1) / 2, width)
    top, bottom = axis((y0 + y1) / 2, height)
    return left, top, right, bottom


def face_verdicts(
    model: Detector | Ensemble,
    image: Image.Image,
    faces: Sequence[Face],
    *,
    max_tiles: int = DEFAULT_MAX_TILES,
    batch_size: int = 8,
    method: str | None = None,
    options: dict[str, dict[str, Any]] | None = None,
) -> list[FaceVerdict]:
    """The ensemble's verdict on a window around each face of ``image`` (see the module docstring), in the
    order of ``faces``; with ``method`` (e.g. ``"gradcam"``) also each member's map of the window, on its
    pixels (members the method cannot run on are left out; ``options`` as for
    :func:`~fakelens.pipeline.explain_images`)."""
    if not faces:
        return []
    ens = as_ensemble(model)
    side = max(max(m.input_spec.size) for m in ens.members)
    windows = [face_window(f.box, image.width, image.height, side) for f in faces]
    crops = [image.crop(w) for w in windows]
    maps: list[dict[str, tuple[np.ndarray, np.ndarray]]] = [{} for _ in faces]
    cols: list[Tensor] = []
    for member in ens.members:
        results = None
        if method is not None:
            with contextlib.suppress(FakelensError):  # e.g. an attention method on a CNN: the score alone
                results = explain_images(member, crops, [method], options=options, max_tiles=max_tiles)
        if results is None or method is None:
            logits = image_logits(member, crops, max_tiles=max_tiles, batch_size=batch_size)
            cols.append(member.fake_probability(logits))
            continue
        # the explanation's forward scored the windows already: the same tiles, the same logits
        cols.append(torch.tensor([_prob(r.fake_probability) for r in results]))
        for k, r in enumerate(results):
            maps[k][member.name] = (r.map(method).float().cpu().numpy(), r.valid(method).cpu().numpy())
    probs = torch.stack(cols, dim=1).float()
    return [
        FaceVerdict(
            box=f.box,
            window=w,
            fake_probability=v.fake_probability,
            verdict=v.verdict,
            members={
                m.name: (m.fake_probability, ens.member_verdict(j, m.fake_probability))
                for j, m in enumerate(v.members)
            },
            heatmaps=h,
        )
        for f, w, v, h in zip(faces, windows, ens.verdicts(probs), maps, strict=True)
    ]


def _prob(p: float | None) -> float:
    return float("nan") if p is None else float(p)  # no score: ens.verdicts says so


def fake_faces_in_real(image_verdict: str, verdicts: Sequence[FaceVerdict]) -> list[int]:
    """The faces (numbered from 1) that read fake in an image that reads real: an edit confined to a face
    weighs little in the whole image's score, so these must be shown wherever the verdict is."""
    if image_verdict != "real":
        return []
    return [k for k, v in enumerate(verdicts, start=1) if v.verdict == "fake"]
