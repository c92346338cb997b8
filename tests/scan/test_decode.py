"""Files read for a scan and their transport to Ray workers (:mod:`fakelens.scan.decode`)."""

from __future__ import annotations


def test_decoded_files_travel_to_ray_workers_whole() -> None:
    """Pixels, the transparency mask (packed bits; a 5 × 7 mask is no multiple of 8) and the frame count
    come back from a Ray batch's columns as they went in."""
    import numpy as np
    import pyarrow as pa

    from fakelens.scan.decode import Decoded, decoded_from_records, decoded_to_records

    rng = np.random.default_rng(0)
    opaque = rng.random((5, 7)) > 0.5
    items = [
        Decoded(
            "a.png", "1" * 64, 10, rng.integers(0, 256, (5, 7, 3), dtype=np.uint8), opaque=opaque, frames=3
        ),
        Decoded("b.png", "2" * 64, 11, rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)),
        Decoded("c.png", error="file not found"),
    ]
    back = decoded_from_records(pa.Table.from_pydict(decoded_to_records(items)).to_pydict())
    for a, b in zip(items, back, strict=True):
        assert (a.path, a.sha256, a.size_bytes, a.error, a.frames) == (
            b.path,
            b.sha256,
            b.size_bytes,
            b.error,
            b.frames,
        )
        assert (a.pixels is None and b.pixels is None) or np.array_equal(a.pixels, b.pixels)
        assert (a.opaque is None and b.opaque is None) or np.array_equal(a.opaque, b.opaque)
    assert (
        back[0].image().info["fakelens.opaque"].shape == (5, 7)
        and back[0].image().info["fakelens.frames"] == 3
    )
