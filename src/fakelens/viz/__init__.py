"""Colormaps, overlays and panels (RGB everywhere; matplotlib's Agg backend, no display needed)."""

from fakelens.viz.overlay import colorize, overlay, panel, save_overlays, save_png

__all__ = ["colorize", "overlay", "panel", "save_overlays", "save_png"]
