"""The one-machine pipeline: DataLoader worker processes read, hash and decode files while the main process
runs batched inference (and explanation) through :class:`ScanProcessor`; rows go to the :class:`ScanStore`."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from torch.utils.data import DataLoader

from fakelens.scan.decode import DecodeDataset, collate_decoded
from fakelens.scan.process import ScanProcessor
from fakelens.scan.store import BatchCounts, ScanStore

__all__ = ["run_local"]

Progress = Callable[[BatchCounts], None]


def run_local(
    paths: Sequence[str],
    done: Collection[tuple[str, str]],
    processor: ScanProcessor,
    store: ScanStore,
    *,
    workers: int,
    progress: Progress | None = None,
) -> BatchCounts:
    """Scan ``paths`` (items in ``done`` are hashed, then skipped); returns the counts of the whole run."""
    loader = DataLoader(
        DecodeDataset(paths, frozenset(done)),
        batch_size=processor.settings.batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_decoded,
        prefetch_factor=2 if workers > 0 else None,
    )
    total = BatchCounts()
    try:
        for batch in loader:
            counts = store.add(processor.process(batch))
            total += counts
            if progress is not None:
                progress(counts)
    finally:
        store.commit()  # keep what is done, also when interrupted
    return total
