"""``scan()``: list the source, open the output folder, run the local or Ray pipeline, compact the table."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import torch

from fakelens.devices import resolve_device
from fakelens.errors import ConfigError
from fakelens.io import FolderLock
from fakelens.models.base import Detector
from fakelens.models.checkpoint import load_detector
from fakelens.models.ensemble import Ensemble
from fakelens.models.registry import untrained_members
from fakelens.scan.process import ScanProcessor, ScanSettings
from fakelens.scan.sources import list_sources
from fakelens.scan.store import TABLE, BatchCounts, ScanStore

__all__ = ["ScanSummary", "default_workers", "scan"]


@dataclass
class ScanSummary:
    """The outcome of one ``scan()`` call: ``scanned`` now, ``skipped`` as done by an earlier run;
    ``errors``, ``flagged``, ``fake`` (blank images aside), ``blank`` and ``fake_faces`` count the rows of
    this source's files (the ``found``
    ones, scanned now or before); ``not_images`` counts the other files of a folder or glob source, left out
    because they are not images by name. ``rows`` and the ``table_*`` counts are the whole table's, which
    also holds the rows of other sources scanned into the same folder."""

    source: str
    out: str
    table: str
    found: int
    not_images: int
    skipped: int
    scanned: int
    errors: int
    flagged: int
    fake: int
    blank: int
    fake_faces: int
    rows: int
    table_errors: int
    table_flagged: int
    table_fake: int
    table_fake_faces: int
    seconds: float
    images_per_second: float
    engine: str
    untrained: list[str] = field(default_factory=list)
    """Members built by architecture name: their real/fake head is random, so their verdicts mean nothing."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_workers() -> int:
    """Decoding processes for the local pipeline: one per core beyond the first, at most 4, at least 1."""
    return max(1, min(4, (os.cpu_count() or 1) - 1))


LOCK = ".scan.lock"
"""Held by the scan writing a folder (see :class:`~fakelens.io.FolderLock`)."""


def scan(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    model: str | Detector | Ensemble = "default",
    settings: ScanSettings | None = None,
    workers: int | None = None,
    device: str = "auto",
    ray_address: str | None = None,
    overwrite: bool = False,
    commit_every: int = 512,
    on_start: Callable[[int], None] | None = None,
    progress: Callable[[BatchCounts], None] | None = None,
) -> ScanSummary:
    """Scan a folder, manifest or glob into ``out/scan.parquet`` (see :mod:`fakelens.scan.store`).

    ``model`` is a spec for :func:`load_detector` (``"default"``, a registered name, a checkpoint path) or a
    loaded detector/ensemble. ``ray_address`` runs on Ray (``"local"`` starts a local instance). Items already
    in ``out`` with the same path and bytes are skipped; ``on_start`` gets the number of files found and
    ``progress`` the counts of each batch.
    """
    settings = settings or ScanSettings()
    inside_out = os.path.join(os.path.realpath(out), "")
    others: list[str] = []
    listed = list_sources(source, others=others)
    paths = [p for p in listed if not p.startswith(inside_out)]  # never scan our own heatmaps
    not_images = sum(1 for p in others if not p.startswith(inside_out))
    if not paths:
        raise ConfigError(
            f"nothing to scan in {os.fspath(source)} outside the output folder {os.fspath(out)}"
        )
    if ray_address is None:
        dev = resolve_device(device)
    elif device in ("auto", "cpu", "cuda"):
        dev = torch.device("cpu")  # the driver only describes the model; actors pick their own device
    else:
        raise ConfigError(
            f"with --ray, --device is auto, cpu or cuda (each actor gets its own GPU), not {device!r}"
        )
    loaded = load_detector(model) if isinstance(model, (str, os.PathLike)) else model
    processor = ScanProcessor(loaded, settings, dev)
    ens = processor.ensemble
    record = {
        **settings.record(),
        "threshold": processor.threshold,
        "heatmaps_above": processor.heatmaps_above if settings.explain else None,
        "model": os.fspath(model) if isinstance(model, (str, os.PathLike)) else "<object>",
        "members": list(ens.names),
        "weights": [round(w, 6) for w in ens.weights.tolist()],
        "rule": ens.rule,
    }
    lock = FolderLock(
        Path(out) / LOCK,
        f"{os.fspath(out)} is being written by another fakelens scan: wait for it, or use another --out",
    )
    with lock:  # two scans into one folder would delete each other's uncommitted overlays
        store = ScanStore(
            Path(out), processor.columns, record, overwrite=overwrite, commit_every=commit_every
        )
        done = store.done_keys()
        if on_start is not None:
            on_start(len(paths))
        t0 = time.perf_counter()
        try:
            if ray_address is None:
                from fakelens.scan.local import run_local

                n_workers = default_workers() if workers is None else workers
                counts = run_local(paths, done, processor, store, workers=n_workers, progress=progress)
            else:
                from fakelens.scan.distributed import run_ray

                counts = run_ray(
                    paths,
                    done,
                    os.fspath(model) if isinstance(model, (str, os.PathLike)) else ens,
                    settings,
                    store,
                    address=ray_address,
                    workers=workers,
                    use_gpu=device != "cpu",
                    progress=progress,
                )
        except BaseException as exc:  # scan.json must not keep saying "running"
            store.stopped("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed")
            raise
        seconds = time.perf_counter() - t0
        table = store.compact(found=paths)
    mine = _row_counts(table.filter(pc.is_in(table.column("path"), pa.array(paths, pa.string()))))
    whole = _row_counts(table)
    summary = ScanSummary(
        source=os.fspath(source),
        out=os.fspath(out),
        table=str(Path(out) / TABLE),
        found=len(paths),
        not_images=not_images,
        skipped=counts.skipped,
        scanned=counts.rows,
        errors=mine["errors"],
        flagged=mine["flagged"],
        fake=mine["fake"],
        blank=mine["blank"],
        fake_faces=mine["fake_faces"],
        rows=table.num_rows,
        table_errors=whole["errors"],
        table_flagged=whole["flagged"],
        table_fake=whole["fake"],
        table_fake_faces=whole["fake_faces"],
        seconds=round(seconds, 3),
        images_per_second=round(counts.rows / seconds, 2) if seconds > 0 else 0.0,
        engine="local" if ray_address is None else f"ray ({ray_address})",
        untrained=untrained_members(ens),
    )
    store.finish(summary.to_dict())
    return summary


def _row_counts(table: pa.Table) -> dict[str, int]:
    """Error rows, rows with heatmap files, fake verdicts (a blank image's aside: it has nothing to judge),
    blank images, and images whose most fake-looking face reads fake."""
    column = table.column
    blank = [bool(b) for b in column("blank").to_pylist()]
    return {
        "errors": table.num_rows - column("error").null_count,
        "flagged": sum(1 for f in column("heatmap_files").to_pylist() if f),
        "fake": sum(
            1 for v, b in zip(column("verdict").to_pylist(), blank, strict=True) if v == "fake" and not b
        ),
        "blank": sum(blank),
        "fake_faces": sum(1 for v in column("face_verdict").to_pylist() if v == "fake"),
    }
