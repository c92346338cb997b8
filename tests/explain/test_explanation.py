"""Raw feature-grid maps brought onto the original pixels (:mod:`fakelens.explain.explanation`)."""

from __future__ import annotations

import torch

from fakelens.explain.explanation import build_explanation, build_explanations, map_stats
from fakelens.geometry import Geometry
from fakelens.tiling import stitch
from test_tiling import bright_spot


def _small_image_map(raw: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A 64 × 16 strip letterboxed into a 64-px input (rows 24–40) read on an 8 × 8 grid: its own cells
    are rows 3 and 4."""
    g = Geometry.fit((16, 64), (64, 64), "letterbox")
    zeros = torch.zeros(1)
    [e] = build_explanations(["gradcam"], ["x"], "fake", raw[None, None], zeros, zeros, (64, 64), [g])
    return e.maps[0], {k: v[0] for k, v in e.stats.items()}


def test_evidence_in_the_padding_does_not_bleed_onto_a_small_image() -> None:
    """Positive values only on padding cells, negative ones on the image's own: the map on the image is
    empty, as its statistics say — it painted the image's edge rows up to 0.5 of the peak from the padding."""
    raw = torch.ones(8, 8)
    raw[3:5] = -0.5
    m, stats = _small_image_map(raw)
    assert m.shape == (16, 64) and float(m.max()) == 0.0
    assert float(stats["negative_mass"]) == 1.0


def test_the_image_s_own_cells_reach_its_edges_undimmed() -> None:
    """Evidence on the image's cells and none in the padding: the map is the cells' value up to the
    image's edges, not faded towards the zeros around it."""
    raw = torch.zeros(8, 8)
    raw[3:5] = 2.0
    m, _ = _small_image_map(raw)
    assert torch.equal(m, torch.ones(16, 64))


def test_a_padded_tile_does_not_bleed_either() -> None:
    """A 16-px-high strip read as native 32-px tiles (padded above and below): the same rule per tile."""
    geoms = Geometry.tiles((16, 48), (32, 32), overlap=0.25)
    raw = torch.ones(len(geoms), 8, 8)
    raw[:, 2:6] = -1.0  # the image's rows of cells: 16 px of 32 in the middle
    zeros = torch.zeros(len(geoms))
    part = build_explanation("gradcam", ("x",), "fake", raw, zeros, zeros, (32, 32))
    e = stitch([part], geoms, torch.zeros(1, 2), bright_spot())
    assert float(e.maps[0].max()) == 0.0 and bool(e.valid[0].all())


def test_an_image_off_the_cell_grid_keeps_its_edges() -> None:
    """A 60-px image in a 256-px native input (16-px cells): its edge cells are mostly image but not wholly,
    so only the inner cells count as the image's. A uniform map stays uniform to the image's edges; it had a
    dead frame of zeros on 36 % of the pixels."""
    for n in (40, 60, 100):
        g = Geometry.fit((n, n), (256, 256), "native")
        zeros = torch.zeros(1)
        [e] = build_explanations(
            ["gradcam"], ["x"], "fake", torch.ones(1, 1, 16, 16), zeros, zeros, (256, 256), [g]
        )
        assert float(e.maps[0].min()) == 1.0, n


def test_a_cell_mostly_image_keeps_its_value_on_its_image_pixels() -> None:
    """A 150 × 81 image letterboxed into 96 px (rows 22–73) on a 6 × 6 grid: the cell at (1, 2) covers
    input rows 16–32, 10 of its 16 rows the image's top rows. Its evidence — the strongest — is shown on
    those rows; it was overwritten by the row below, and the map peaked elsewhere."""
    g = Geometry.fit((81, 150), (96, 96), "letterbox")
    raw = torch.full((6, 6), 0.01)
    raw[1, 2] = 1.0
    raw[3, 4] = 0.3
    zeros = torch.zeros(1)
    [e] = build_explanations(["gradcam"], ["x"], "fake", raw[None, None], zeros, zeros, (96, 96), [g])
    m = e.maps[0]
    y, x = divmod(int(m.argmax()), m.shape[1])
    assert y <= 8 and 50 <= x < 75  # the cell centre (input row 24: row 3) under input columns 32–48
    assert float(e.stats["max"][0]) == 1.0 and float(e.stats["peak_to_mean"][0]) > 10


def test_a_stitched_map_with_no_positive_value_draws_nothing() -> None:
    """Two side-by-side tiles, each faintly positive in one cell and strongly negative around it: the
    stitched signed map (its statistics) has no positive value, so it is flat and nothing is drawn — the
    faint cells had been stretched into a full-scale hot spot under a "flat" label."""
    geoms = Geometry.tiles((32, 64), (32, 32), overlap=0.0)
    raw = torch.full((len(geoms), 8, 8), -1.0)
    raw[:, 4, 4] = 0.003
    zeros = torch.zeros(len(geoms))
    part = build_explanation("gradcam", ("x",), "fake", raw, zeros, zeros, (32, 32))
    e = stitch([part], geoms, torch.zeros(1, 2), bright_spot())
    assert float(e.stats["max"][0]) <= 0 and e.summary(0)["flat"]
    assert float(e.maps[0].max()) == 0.0


def test_statistics_hold_no_negative_zero() -> None:
    """A one-cell map's entropy −Σ 1·log 1 was -0.0, shown as ``tensor(-0.)`` and ``-0.0`` in summaries."""
    one = torch.zeros(2, 3, 3)
    one[0, 1, 1] = 1.0
    one[1] = -1.0
    one[1, 0, 0] = 0.0
    stats = map_stats(one)
    for name, v in stats.items():
        assert not bool((torch.signbit(v) & (v == 0)).any()), name
    assert float(stats["entropy"][0]) == 0.0 and str(float(stats["entropy"][0])) == "0.0"
