"""The same pipeline on Ray Data: CPU tasks read, hash and decode files; an actor pool runs the model (one
replica per GPU when the cluster has GPUs, else CPU actors); the driver writes the rows through the same
:class:`ScanStore`, so ``--ray`` gives the Parquet schema, resume and heatmap files of a local scan.

Heatmap files come back to the driver as bytes, so the output folder only needs to exist where the driver
runs. Every node must have fakelens installed, and a checkpoint given by path must be readable on every node
(a model given as an object is shipped to the actors instead).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Sequence
from typing import Any

import pyarrow as pa

from fakelens.errors import ConfigError
from fakelens.models.base import Detector
from fakelens.models.ensemble import Ensemble
from fakelens.scan.decode import decode_file, decoded_from_records, decoded_to_records
from fakelens.scan.process import ScanProcessor, ScanSettings
from fakelens.scan.store import BatchCounts, ScanStore

__all__ = ["ScanActor", "decode_batch", "run_ray"]

LOCAL = "local"
"""``--ray`` without an address: start (or join, with ``RAY_ADDRESS`` set) a Ray instance on this machine."""

_DECODED = pa.schema(
    [
        ("path", pa.string()),
        ("sha256", pa.string()),
        ("size_bytes", pa.int64()),
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("pixels", pa.large_binary()),
        ("opaque", pa.large_binary()),  # packed bits, when some pixels are fully transparent
        ("frames", pa.int32()),
        ("error", pa.string()),
        ("skipped", pa.bool_()),
    ]
)


def decode_batch(batch: dict[str, Any], done: Collection[tuple[str, str]] = frozenset()) -> pa.Table:
    """Ray CPU task: read, hash and decode a batch of paths."""
    items = [decode_file(str(p), done) for p in batch["path"]]
    return pa.Table.from_pydict(decoded_to_records(items), schema=_DECODED)


class ScanActor:
    """One model replica: loads the model once, then turns decoded batches into scan rows."""

    def __init__(self, model: str | Detector | Ensemble, settings: ScanSettings, use_gpu: bool) -> None:
        import torch

        from fakelens.models.checkpoint import load_detector

        device = "cuda" if use_gpu and torch.cuda.is_available() else "cpu"
        loaded = load_detector(model) if isinstance(model, str) else model
        self.processor = ScanProcessor(loaded, settings, device)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.processor.process(decoded_from_records(batch.to_pydict()))


def run_ray(
    paths: Sequence[str],
    done: Collection[tuple[str, str]],
    model: str | Detector | Ensemble,
    settings: ScanSettings,
    store: ScanStore,
    *,
    address: str = LOCAL,
    workers: int | None = None,
    use_gpu: bool = True,
    progress: Callable[[BatchCounts], None] | None = None,
) -> BatchCounts:
    """Scan ``paths`` on Ray (joining a running instance if this process already started one)."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'fakelens[ray]'") from None
    started = _connect(ray, address)
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # the table and our progress bar report
    total = BatchCounts()
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        ctx.enable_auto_log_stats = False
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0)) if use_gpu else 0
        replicas = workers or (gpus or max(1, int(resources.get("CPU", 1)) // 2))
        bs = settings.batch_size
        items = ray.data.from_items(
            [{"path": p} for p in paths], override_num_blocks=max(1, min(1000, math.ceil(len(paths) / bs)))
        )
        decoded = items.map_batches(
            decode_batch, fn_kwargs={"done": frozenset(done)}, batch_size=bs, num_cpus=1
        )
        rows = decoded.map_batches(
            ScanActor,
            fn_constructor_kwargs={"model": model, "settings": settings, "use_gpu": gpus > 0},
            batch_size=bs,
            batch_format="pyarrow",
            concurrency=replicas,
            num_gpus=1 if gpus else 0,
            num_cpus=1,
        )
        try:
            for table in rows.iter_batches(batch_size=None, batch_format="pyarrow"):
                counts = store.add(table)
                total += counts
                if progress is not None:
                    progress(counts)
        finally:
            store.commit()
    finally:
        if started:
            ray.shutdown()
    return total


def _connect(ray: Any, address: str) -> bool:
    """Join or start Ray; True when this call started it (and so must shut it down)."""
    if ray.is_initialized():
        return False
    try:
        ray.init(
            address=None if address in ("", LOCAL) else address,
            include_dashboard=False,
            logging_level=logging.ERROR,
            log_to_driver=False,
        )
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"cannot start or join Ray at {address!r}: {exc}") from None
    return True
