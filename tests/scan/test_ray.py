"""The Ray pipeline on a local Ray instance writes the same rows and heatmap files as the local one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from fakelens.models import load_detector
from fakelens.scan import ScanSettings, scan
from fakelens.scan.store import TABLE

from .conftest import assert_same_rows

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    if started:
        ray.shutdown()


def test_local_and_ray_rows_are_identical(
    local_ray: None, corpus: Path, tmp_path: Path, ensemble_checkpoint: Path
) -> None:
    ens = load_detector(ensemble_checkpoint)
    probe = scan(corpus, tmp_path / "probe", model=ens, settings=ScanSettings(explain=False), workers=0)
    scores = sorted(r["score"] for r in pq.read_table(probe.table).to_pylist() if r["score"] is not None)
    settings = ScanSettings(heatmaps_above=(scores[4] + scores[5]) / 2, batch_size=4)
    local = scan(corpus, tmp_path / "local", model=ensemble_checkpoint, settings=settings, workers=1)
    on_ray = scan(corpus, tmp_path / "ray", model=ensemble_checkpoint, settings=settings, ray_address="local")
    assert on_ray.engine.startswith("ray") and (on_ray.rows, on_ray.errors, on_ray.flagged) == (12, 3, 4)
    assert_same_rows(pq.read_table(tmp_path / "ray" / TABLE), pq.read_table(local.table))
    names = {p.name for p in (tmp_path / "local" / "heatmaps").iterdir()}
    assert len(names) == 4 * 2 and names == {p.name for p in (tmp_path / "ray" / "heatmaps").iterdir()}
    again = scan(corpus, tmp_path / "ray", model=ensemble_checkpoint, settings=settings, ray_address="local")
    assert (again.skipped, again.scanned) == (12, 0)  # resume works the same way on Ray
