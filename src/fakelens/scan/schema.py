"""The columns of a scan table: one fixed layout plus one score column per ensemble member.

The local and the Ray pipeline both build their rows here, so they write the same Parquet schema. Two
internal columns travel with a batch until the store has handled them: ``_files`` (heatmap files to write,
name and bytes) and ``_skipped`` (already done in an earlier run: counted, not written).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

__all__ = ["FILES", "KEY", "SKIPPED", "batch_schema", "score_columns", "table_schema", "to_table"]

FILES = "_files"
SKIPPED = "_skipped"
HEATMAP_DIR = "heatmaps"
"""The folder under the scan's output that holds the overlays (and raw maps) its rows name."""

KEY = ("path", "sha256")
"""The columns that identify a done item: the same path with the same bytes is not scanned again."""

_HEAD: tuple[tuple[str, pa.DataType], ...] = (
    ("path", pa.string()),
    ("sha256", pa.string()),
    ("size_bytes", pa.int64()),
    ("width", pa.int32()),
    ("height", pa.int32()),
)
_TAIL: tuple[tuple[str, pa.DataType], ...] = (
    ("score", pa.float64()),
    ("verdict", pa.string()),
    ("split", pa.bool_()),  # the members' own verdicts disagree: a weak verdict
    ("small", pa.bool_()),  # a member read under half as many image pixels as its input holds
    ("coverage", pa.float64()),  # the share of the image's pixels every member read
    ("partial", pa.bool_()),  # coverage under PARTIAL_READ: part of the image was not judged
    ("transparent", pa.float64()),  # the share of fully transparent pixels (seen as white)
    ("frames", pa.int32()),  # the file's frames or pages; the first was read
    ("blank", pa.bool_()),  # a uniform image: nothing to judge
    ("faces", pa.int32()),
    ("face_score", pa.float64()),
    ("face_verdict", pa.string()),
    ("heatmap_model", pa.string()),
    ("heatmap_method", pa.string()),
    ("heatmap_max", pa.float64()),
    ("heatmap_peak_to_mean", pa.float64()),
    ("heatmap_entropy", pa.float64()),
    ("heatmap_flat", pa.bool_()),
    ("badge_grade", pa.string()),
    ("badge_equivariance", pa.float64()),
    ("badge_flags", pa.list_(pa.string())),
    ("heatmap_files", pa.list_(pa.string())),
    ("error", pa.string()),
)
_FILE = pa.struct([("name", pa.string()), ("data", pa.binary())])


def _slug(name: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower() or "model"


def score_columns(member_names: Sequence[str]) -> list[str]:
    """``score_<member>`` per ensemble member (names made column-safe; repeats get ``_2``, ``_3`` …)."""
    out: list[str] = []
    for name in member_names:
        base = f"score_{_slug(name)}"
        col, k = base, 1
        while col in out:
            k += 1
            col = f"{base}_{k}"
        out.append(col)
    return out


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` in ``schema``: a table written before a column was added gets that column as nulls (scans
    made by an earlier fakelens still resume and merge)."""
    for f in schema:
        if f.name not in table.column_names:
            table = table.append_column(f.name, pa.nulls(table.num_rows, f.type))
    return table.select(schema.names).cast(schema)


def table_schema(score_cols: Sequence[str]) -> pa.Schema:
    """The schema of ``scan.parquet`` and of every part file."""
    return pa.schema([*_HEAD, *((c, pa.float64()) for c in score_cols), *_TAIL])


def batch_schema(score_cols: Sequence[str]) -> pa.Schema:
    """The table schema plus the internal columns a processed batch carries to the store."""
    return (
        table_schema(score_cols)
        .append(pa.field(FILES, pa.list_(_FILE)))
        .append(pa.field(SKIPPED, pa.bool_()))
    )


def to_table(rows: Sequence[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows (missing keys are null) → a table of exactly ``schema``."""
    return pa.Table.from_pylist([{n: r.get(n) for n in schema.names} for r in rows], schema=schema)
