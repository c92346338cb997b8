"""Defaults shared by the command line and the modules that use them, in a module that imports nothing:
``fakelens --help`` shows them without loading torch or matplotlib."""

from __future__ import annotations

__all__ = ["BLANK_TEXTURE", "CMAPS", "CMAP_ENDS", "DEFAULT_MAX_TILES", "PARTIAL_READ", "SMALL_IMAGE"]

DEFAULT_MAX_TILES = 32
"""Tiles read per image by default: a 1 440 × 1 440 photo is covered whole at 256 px; beyond that the tiles
spread over the image with gaps (what they miss is marked not valid)."""

CMAPS = ("jet", "turbo", "viridis", "inferno", "magma")
"""The colormaps of heatmap overlays (``--cmap``)."""

CMAP_ENDS = {
    "jet": ("dark blue", "dark red"),
    "turbo": ("dark blue", "dark red"),
    "viridis": ("dark purple", "yellow"),
    "inferno": ("black", "pale yellow"),
    "magma": ("black", "pale yellow"),
}
"""Each colormap's colours at 0 (no evidence) and at 1 (the map's peak), as legends name them."""

SMALL_IMAGE = 0.5
"""Below this pixel fraction (the image's own pixels per input pixel) a verdict is marked ``small``: it rests
on little evidence either way."""

PARTIAL_READ = 0.99
"""Below this share of the image's pixels read (tiles capped by ``--max-tiles``, or a centre crop) a verdict
is marked ``partial``: what was not read was not judged."""

BLANK_TEXTURE = 1.0
"""Below this standard deviation of an image's grey levels (0–255, over its opaque pixels) it is blank: a
uniform image carries no trace to judge (no content, no resampling or compression residue), so a verdict on it
says nothing; a plain grey square read "fake 0.58"."""
