"""Tidy trust records: one row per (image, method, layer, transform, fill, metric), appended per image to a
CSV file, so that a run can be interrupted and resumed.

A finished (image, method, layer) group ends with a ``_done`` row; on resume, rows of unfinished groups are
dropped (the file is rewritten atomically) and finished groups are skipped.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from fakelens.io import atomic_write_text

__all__ = ["DONE", "FIELDS", "Record", "RecordFile", "read_records"]

FIELDS = ("model", "image", "method", "layer", "transform", "kind", "strength", "fill", "metric", "value")
DONE = "_done"


@dataclass(frozen=True)
class Record:
    """One tidy row."""

    model: str
    image: str
    method: str
    layer: str
    transform: str
    kind: str
    strength: float
    fill: str
    metric: str
    value: float

    def as_row(self) -> list[str]:
        return [
            self.model,
            self.image,
            self.method,
            self.layer,
            self.transform,
            self.kind,
            _num(self.strength),
            self.fill,
            self.metric,
            _num(self.value),
        ]

    @property
    def group(self) -> tuple[str, str, str]:
        return self.image, self.method, self.layer


def _num(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "nan"
    return repr(float(v))


def _parse(row: list[str]) -> Record | None:
    if len(row) != len(FIELDS):
        return None
    try:
        return Record(
            row[0], row[1], row[2], row[3], row[4], row[5], float(row[6]), row[7], row[8], float(row[9])
        )
    except ValueError:
        return None


def read_records(path: Path) -> list[Record]:
    """All well-formed rows of a records file (a torn last line from a crash is skipped)."""
    if not path.exists():
        return []
    out: list[Record] = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(header) != FIELDS:
            return []
        for row in reader:
            rec = _parse(row)
            if rec is not None:
                out.append(rec)
    return out


class RecordFile:
    """Append-only CSV of :class:`Record` rows with resume support."""

    def __init__(self, path: Path, *, resume: bool = True) -> None:
        self.path = path
        self.done: set[tuple[str, str, str]] = set()
        if resume and path.exists():
            recs = read_records(path)
            self.done = {r.group for r in recs if r.metric == DONE}
            keep = [r for r in recs if r.group in self.done]
            if len(keep) != len(recs) or not self._header_ok():
                self._rewrite(keep)
        else:
            self._rewrite([])

    def _header_ok(self) -> bool:
        with self.path.open(encoding="utf-8") as f:
            return f.readline().strip() == ",".join(FIELDS)

    def _rewrite(self, recs: Iterable[Record]) -> None:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(FIELDS)
        for r in recs:
            w.writerow(r.as_row())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, buf.getvalue())

    def append(self, recs: Iterable[Record]) -> None:
        """Append rows and flush them to disk (groups given ``_done`` rows become finished)."""
        rows = list(recs)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        for r in rows:
            w.writerow(r.as_row())
        with self.path.open("a", encoding="utf-8", newline="") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
        self.done.update(r.group for r in rows if r.metric == DONE)

    def is_done(self, image: str, method: str, layer: str) -> bool:
        return (image, method, layer) in self.done

    def __iter__(self) -> Iterator[Record]:
        return iter(read_records(self.path))
