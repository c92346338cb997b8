"""Self-contained HTML reports: verdicts, overlays, robustness badges, facial regions, a plain reading."""

from fakelens.report.reading import read_analysis
from fakelens.report.regions import (
    REGIONS,
    FaceRegions,
    RegionShares,
    face_regions,
    region_labels,
    region_shares,
)
from fakelens.report.render import find_regions, render_report

__all__ = [
    "REGIONS",
    "FaceRegions",
    "RegionShares",
    "face_regions",
    "find_regions",
    "read_analysis",
    "region_labels",
    "region_shares",
    "render_report",
]
