"""The output folder of a scan, written so that an interrupted scan resumes without duplicates or losses.

Layout::

    OUT/scan.json               settings (a resumed scan must match them), status (running, complete,
                                interrupted, failed; a kill leaves running) and the last summary
    OUT/parts/part-*.parquet    rows of an unfinished scan, each part committed atomically (temp + rename)
    OUT/scan.parquet            the table, compacted from the parts when a scan finishes
    OUT/heatmaps/*.png|*.npy    overlays (and raw maps) of the images above the heatmap threshold

Rows are buffered and committed as one part every ``commit_every`` rows or ``commit_seconds``; heatmap files
are written before the part that names them. A kill loses at most the uncommitted rows, which the next run
recomputes: done items are the (path, sha256) pairs in ``scan.parquet`` and the parts. Compaction keeps the
latest row of each path (a changed file replaces its old row), sorts by path and writes ``scan.parquet``
atomically before it deletes the parts, so a kill during compaction loses nothing either.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fakelens.errors import ConfigError
from fakelens.io import atomic_write_bytes, atomic_write_text
from fakelens.scan.schema import FILES, HEATMAP_DIR, KEY, SKIPPED, conform, table_schema

__all__ = ["BatchCounts", "ScanStore"]

TABLE = "scan.parquet"
MANIFEST = "scan.json"
PARTS = "parts"
FORMAT = 1


@dataclass
class BatchCounts:
    """What one batch added: rows written, items skipped as done before, error rows, rows with heatmaps,
    fake verdicts, and images whose most fake-looking face reads fake."""

    rows: int = 0
    skipped: int = 0
    errors: int = 0
    flagged: int = 0
    fake: int = 0
    fake_faces: int = 0

    def __iadd__(self, other: BatchCounts) -> BatchCounts:
        self.rows += other.rows
        self.skipped += other.skipped
        self.errors += other.errors
        self.flagged += other.flagged
        self.fake += other.fake
        self.fake_faces += other.fake_faces
        return self


class ScanStore:
    """Owns ``OUT``: checks settings on resume, hands out done keys, writes files and parts, compacts."""

    def __init__(
        self,
        out: Path,
        score_cols: Sequence[str],
        settings: dict[str, Any],
        *,
        overwrite: bool = False,
        commit_every: int = 512,
        commit_seconds: float = 60.0,
    ) -> None:
        self.out = Path(out)
        self.schema = table_schema(score_cols)
        self.settings = json.loads(json.dumps(settings))
        self.commit_every = max(1, commit_every)
        self.commit_seconds = commit_seconds
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"--out {self.out} is a file, not a folder")
        self.out.mkdir(parents=True, exist_ok=True)
        if overwrite:
            self._clear()
        self._check_settings()
        self._stamp = f"{time.time_ns():020d}"
        self._seq = 0
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._last_commit = time.monotonic()
        self._write_manifest("running")

    @property
    def table_path(self) -> Path:
        return self.out / TABLE

    @property
    def parts_dir(self) -> Path:
        return self.out / PARTS

    # -------------------------------------------------------------------------------------- set-up

    def _clear(self) -> None:
        for name in (TABLE, MANIFEST):
            (self.out / name).unlink(missing_ok=True)
        for name in (PARTS, HEATMAP_DIR):
            shutil.rmtree(self.out / name, ignore_errors=True)

    def _read_manifest(self) -> dict[str, Any] | None:
        path = self.out / MANIFEST
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path} is damaged ({exc}); pass --overwrite to start again") from None
        return data if isinstance(data, dict) else None

    def _check_settings(self) -> None:
        old = self._read_manifest()
        if old is None:
            if self.table_path.exists() or self.parts_dir.exists():
                raise ConfigError(
                    f"{self.out} holds scan output without {MANIFEST}; pass --overwrite or another --out"
                )
            return
        before = old.get("settings", {})
        differ = sorted(k for k in {*before, *self.settings} if before.get(k) != self.settings.get(k))
        if differ:
            what = "; ".join(f"{k}: {before.get(k)!r} then, {self.settings.get(k)!r} now" for k in differ)
            raise ConfigError(
                f"{self.out} holds a scan with other settings ({what}); "
                "resume with the same settings, or pass --overwrite or another --out"
            )

    def _write_manifest(self, status: str, summary: dict[str, Any] | None = None) -> None:
        payload: dict[str, Any] = {"format": FORMAT, "status": status, "settings": self.settings}
        if summary is not None:
            payload["summary"] = summary
        atomic_write_text(self.out / MANIFEST, json.dumps(payload, indent=2) + "\n")

    # -------------------------------------------------------------------------------------- reading

    def _sources(self) -> list[Path]:
        parts = sorted(self.parts_dir.glob("part-*.parquet")) if self.parts_dir.is_dir() else []
        return ([self.table_path] if self.table_path.is_file() else []) + parts

    def done_keys(self) -> set[tuple[str, str]]:
        """(path, sha256) of every committed row whose file could be read (error rows included: the same
        bytes give the same error; files that could not be read at all are tried again)."""
        keys: set[tuple[str, str]] = set()
        for src in self._sources():
            t = pq.read_table(src, columns=list(KEY))
            for path, sha in zip(t.column("path").to_pylist(), t.column("sha256").to_pylist(), strict=True):
                if sha is not None:
                    keys.add((path, sha))
        return keys

    # -------------------------------------------------------------------------------------- writing

    def add(self, batch: pa.Table) -> BatchCounts:
        """Write a processed batch's heatmap files and buffer its rows (skipped items are only counted)."""
        skipped = batch.column(SKIPPED).fill_null(False)
        kept = batch.filter(pc.invert(skipped))
        for files in kept.column(FILES).to_pylist():
            for f in files or ():
                atomic_write_bytes(self.out / f["name"], f["data"])
        rows = kept.select(self.schema.names).cast(self.schema)
        counts = BatchCounts(
            rows=rows.num_rows,
            skipped=batch.num_rows - rows.num_rows,
            errors=rows.num_rows - rows.column("error").null_count,
            flagged=sum(1 for f in rows.column("heatmap_files").to_pylist() if f),
            fake=sum(1 for v in rows.column("verdict").to_pylist() if v == "fake"),
            fake_faces=sum(1 for v in rows.column("face_verdict").to_pylist() if v == "fake"),
        )
        if rows.num_rows:
            self._buffer.append(rows)
            self._buffered += rows.num_rows
        if self._buffered >= self.commit_every or time.monotonic() - self._last_commit >= self.commit_seconds:
            self.commit()
        return counts

    def commit(self) -> None:
        """Write the buffered rows as one part file, atomically."""
        self._last_commit = time.monotonic()
        if not self._buffer:
            return
        table = pa.concat_tables(self._buffer)
        self.parts_dir.mkdir(exist_ok=True)
        self._seq += 1
        atomic_write_bytes(
            self.parts_dir / f"part-{self._stamp}-{self._seq:06d}.parquet", _parquet_bytes(table)
        )
        self._buffer.clear()
        self._buffered = 0

    def compact(self, found: Collection[str] | None = None) -> pa.Table:
        """Merge ``scan.parquet`` and the parts into ``scan.parquet``: the latest row per path, by path.

        With ``found`` (the paths the source lists now), rows of files that are gone — neither listed nor on
        disk any more — are dropped: one row per file (rows of other sources scanned into the same folder
        stay, broken links and link loops included: they are still on disk, as links). Heatmap files no row
        names any more (a changed file's old overlays, a gone file's) are removed.
        """
        self.commit()
        sources = self._sources()
        tables = [conform(pq.read_table(src), self.schema) for src in sources]
        table = pa.concat_tables(tables) if tables else self.schema.empty_table()
        before = table.num_rows
        if table.num_rows:
            order = pa.array(range(table.num_rows), pa.int64())
            last = table.append_column("__i", order).group_by("path").aggregate([("__i", "max")])
            table = table.take(last.column("__i_max")).sort_by("path")
        if found is not None:
            listed = set(found)
            keep = [p in listed or os.path.lexists(p) for p in table.column("path").to_pylist()]
            table = table.filter(pa.array(keep, pa.bool_()))
        if len(sources) != 1 or sources[0] != self.table_path or table.num_rows != before:
            atomic_write_bytes(self.table_path, _parquet_bytes(table))
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        self._remove_unnamed_heatmaps(table)
        return table

    def _remove_unnamed_heatmaps(self, table: pa.Table) -> None:
        named = {n for files in table.column("heatmap_files").to_pylist() for n in files or ()}
        folder = self.out / HEATMAP_DIR
        if folder.is_dir():
            for f in folder.rglob("*"):
                if f.is_file() and f.relative_to(self.out).as_posix() not in named:
                    f.unlink()

    def finish(self, summary: dict[str, Any]) -> None:
        self._write_manifest("complete", summary)

    def stopped(self, why: str) -> None:
        """Record that the run stopped before the end (``"interrupted"``, ``"failed"``): the rows committed
        so far stay, and a rerun resumes from them."""
        self._write_manifest(why)


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()
