"""Plot a :class:`~fakelens.explain.spectral.SpectralAttribution`: radial bars, an orientation rose, tiles.

Drawn on a bare ``matplotlib.figure.Figure`` with the Agg canvas, so nothing depends on (or changes) the
pyplot backend; ``path`` writes a PNG.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from fakelens.explain.spectral import SpectralAttribution

POSITIVE = "#c0392b"  # removing the band lowers the score: the band supports it
NEGATIVE = "#2e86c1"  # removing the band raises the score


def plot_spectrum(
    attr: SpectralAttribution,
    index: int = 0,
    path: str | Path | None = None,
    *,
    title: str | None = None,
    dpi: int = 120,
) -> Figure:
    """Band importances of image ``index``: radial bars (with each band's energy share), an orientation
    polar plot (mirrored over 180°), and per-band tile maps when ``attr.regional`` is set."""
    radial = attr.radial[index].detach().float().cpu().numpy()
    orient = attr.orientation[index].detach().float().cpu().numpy()
    energy = attr.radial_energy[index].detach().float().cpu().numpy()
    redges = attr.radial_edges.detach().float().cpu().numpy()
    oedges = attr.orientation_edges.detach().float().cpu().numpy()
    regional = None if attr.regional is None else attr.regional[index].detach().float().cpu().numpy()
    n_r = len(radial)

    fig = Figure(figsize=(11, 4.2 if regional is None else 6.4), layout="constrained")
    FigureCanvasAgg(fig)
    if regional is not None:
        subs = fig.subfigures(2, 1, height_ratios=[2.2, 1.0], squeeze=False)
        top, bottom = subs[0, 0], subs[1, 0]
    else:
        top, bottom = fig, None

    ax = top.add_subplot(1, 2, 1)
    pos = np.arange(n_r)
    ax.bar(pos, radial, color=[POSITIVE if v >= 0 else NEGATIVE for v in radial], width=0.8)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(pos)
    labels = [f"{a:.2f}–{b:.2f}" for a, b in itertools.pairwise(redges)]
    ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=8)
    ax.set_xlabel("radial band (× Nyquist)")
    ax.set_ylabel("score drop when removed")
    ax.set_title("radial bands (line: energy share)", fontsize=10)
    twin = ax.twinx()
    twin.plot(pos, energy, color="0.35", marker="o", linewidth=1, markersize=3)
    twin.set_ylabel("energy share", color="0.35")
    twin.set_ylim(0, max(1e-6, float(energy.max()) * 1.15))

    pax = top.add_subplot(1, 2, 2, projection="polar")
    centres = np.deg2rad((oedges[:-1] + oedges[1:]) / 2)
    widths = np.deg2rad(np.diff(oedges))
    colours = [POSITIVE if v >= 0 else NEGATIVE for v in orient]
    for offset in (0.0, math.pi):  # orientation is defined modulo 180°: draw both halves
        pax.bar(
            centres + offset,
            np.abs(orient),
            width=widths * 0.95,
            color=colours,
            alpha=0.85,
            edgecolor="white",
        )
    pax.set_title(
        "orientation of the frequency: |drop|\n(red supports the score, blue opposes it)", fontsize=10
    )
    pax.set_yticklabels([])

    if regional is not None and bottom is not None:
        lim = float(np.abs(regional).max()) or 1.0
        norm = TwoSlopeNorm(vmin=-lim, vcenter=0.0, vmax=lim)
        axes = bottom.subplots(1, n_r, squeeze=False)[0]
        im = None
        for k, tax in enumerate(axes):
            im = tax.imshow(regional[k], cmap="RdBu_r", norm=norm)
            tax.set_xticks([])
            tax.set_yticks([])
            tax.set_title(f"{redges[k]:.2f}–{redges[k + 1]:.2f}", fontsize=8)
        bottom.suptitle("per-tile drop when the band is removed in that tile only", fontsize=9)
        if im is not None:
            bottom.colorbar(im, ax=list(axes), shrink=0.9, label="drop")

    score = float(attr.scores[index])
    prob = float(attr.probabilities[index])
    (top if regional is not None else fig).suptitle(
        title or f"frequency attribution — score {score:+.3f}, p(fake) {prob:.3f}"
    )
    if path is not None:
        fig.savefig(str(path), dpi=dpi)
    return fig


__all__ = ["plot_spectrum"]
