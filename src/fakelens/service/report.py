"""The downloadable report of a stored analysis, rendered by :func:`fakelens.report.render_report` from
what the store holds: the uploaded image (decoded again, the same way), each map (a 16-bit PNG), its valid
mask (a 1-bit PNG; in rows stored before 2026-11-27 the alpha channel of the full-size heatmap PNG), summaries
and robustness badges."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from fakelens.analysis import Analysis, HeatmapResult, ModelAnalysis
from fakelens.face_verdicts import FaceVerdict, face_verdicts
from fakelens.io import load_image
from fakelens.models.ensemble import Ensemble
from fakelens.service.analyzer import load_map, load_valid
from fakelens.tiling import DEFAULT_MAX_TILES

__all__ = ["REPORT_CSP", "render_analysis_report"]

REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
"""The report is one file with inline CSS and data: images, and no script."""


def stored_analysis(result: dict[str, Any], row: dict[str, Any], read: Callable[[str], bytes]) -> Analysis:
    """Rebuild the :class:`~fakelens.analysis.Analysis` of a stored row from its files."""
    models = []
    for m in result["models"]:
        heatmaps = {}
        for method, h in m["heatmaps"].items():
            files = h["files"]
            heat = load_map(read(files["map"]))
            valid = load_valid(read(files.get("valid") or files["heatmap"]))  # older rows: the PNG's alpha
            heatmaps[method] = HeatmapResult(method, heat, valid, h["summary"], m["robustness"].get(method))
        score = m["score"] if m["score"] is not None else float("nan")
        scale = float(m.get("scale", 1.0))  # rows stored before the scale was recorded: no warning
        models.append(
            ModelAnalysis(
                m["name"],
                score,
                m["verdict"],
                heatmaps,
                dict(m["errors"]),
                scale,
                tiles=int(m.get("tiles", 1)),  # rows stored before native tiles: one view
                threshold=float(m.get("threshold", result["threshold"])),
                pixel_fraction=float(m.get("pixel_fraction", 1.0)),
                coverage=float(m.get("coverage", 1.0)),  # rows stored before it was recorded: read whole
                untrained=bool(m.get("untrained", False)),
            )
        )
    return Analysis(
        row["image"]["width"],
        row["image"]["height"],
        row["score"],
        row["verdict"],
        result["threshold"],
        result["rule"],
        models,
        calibrated=bool(result.get("calibrated", False)),
        transparent=float(result.get("transparent", 0.0)),  # rows stored before: not recorded
        frames=int(result.get("frames", 1)),
        texture=float(result.get("texture", math.inf)),  # rows stored before it was recorded: not blank
    )


def render_analysis_report(
    out: dict[str, Any],
    result: dict[str, Any],
    read: Callable[[str], bytes],
    *,
    max_pixels: int,
    faces: bool,
    model: Ensemble | None = None,
    max_tiles: int = DEFAULT_MAX_TILES,
) -> str:
    """Self-contained HTML of one stored analysis (``out`` is its API JSON, ``result`` its stored result).
    With the analysis's ``model`` each face is judged again with its map of the window (the first method);
    without it (a model no longer served) the stored face verdicts are shown without maps."""
    from fakelens.report import render_report
    from fakelens.report.render import find_regions

    image = load_image(read(out["image"]["sha256"]), max_pixels=max_pixels)
    analysis = stored_analysis(result, out, read)
    name = out["image"]["filename"] or f"analysis {out['id']}"
    regions, verdicts = None, None
    if faces:
        found, note = find_regions([image])
        if note is None:  # the same detector on the same pixels finds the faces the analysis judged
            regions = found
            seen = found[0].faces if found[0] is not None else ()
            if model is not None:
                method = out["methods"][0] if out["methods"] else None
                verdicts = [face_verdicts(model, image, seen, method=method, max_tiles=max_tiles)]
            elif len(stored := [FaceVerdict.from_dict(d) for d in result.get("faces") or []]) == len(seen):
                verdicts = [stored]
    return render_report(
        [analysis],
        [image],
        [name],
        title=f"fakelens report: {name}",
        faces=faces,
        regions=regions,
        face_verdicts=verdicts,
        meta={"analysis": out["id"], "created": out["created_at"]},
        image_info=[
            {"sha256": out["image"]["sha256"], "size": f"{out['image']['width']}×{out['image']['height']}"}
        ],
    )
