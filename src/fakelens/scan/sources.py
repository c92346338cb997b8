"""What to scan: a folder (searched recursively), a manifest (CSV, JSONL or Parquet with a path column) or a
glob pattern, resolved to one ordered list of absolute file paths without duplicates."""

from __future__ import annotations

import csv
import glob
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from fakelens.errors import ConfigError
from fakelens.io import IMAGE_SUFFIXES, REFUSED_SUFFIXES, find_images

__all__ = ["MANIFEST_SUFFIXES", "PATH_COLUMNS", "SCAN_SUFFIXES", "list_sources"]

SCAN_SUFFIXES = IMAGE_SUFFIXES | REFUSED_SUFFIXES
"""File name endings a folder or glob scan picks up (case-insensitive): the images we read, and HEIC/HEIF,
which become error rows saying to convert them."""

MANIFEST_SUFFIXES = frozenset({".csv", ".jsonl", ".ndjson", ".parquet"})
"""Files read as a manifest of paths rather than as an image."""

PATH_COLUMNS = ("path", "file", "filepath", "file_path", "image", "image_path")
"""Column names a manifest's path column may have (the first one present is used)."""

_GLOB_CHARS = frozenset("*?[")


def list_sources(source: str | os.PathLike[str], *, others: list[str] | None = None) -> list[str]:
    """Real (absolute, symlinks resolved) paths of the files to scan, each once, in a stable order (sorted for
    folders and globs, as listed for manifests; relative manifest entries are taken relative to the
    manifest's folder). Folders and globs list hidden files (a glob's ``*`` and ``**`` match names that
    start with a dot) and broken symlinks, which become error rows. The files a folder or glob holds that
    are not images by name (:data:`SCAN_SUFFIXES`) are appended to ``others``, when given, so that a caller
    can say how many were left out.

    Raises :class:`ConfigError` when the source does not exist, matches nothing, or is a manifest without a
    path column. Listed files that are missing are *not* an error here: they become error rows.
    """
    text = os.fspath(source)
    p = Path(text).expanduser()
    if p.is_dir():
        unreadable: list[Path] = []  # folders that cannot be listed: one error row each
        skipped: list[Path] = []
        found = find_images(
            p, suffixes=SCAN_SUFFIXES, broken_links=True, unreadable=unreadable, others=skipped
        )
        paths = sorted(_unique(_absolute(q) for q in [*found, *unreadable]))
        left_out = _unique(_absolute(q) for q in skipped)
        if not paths:
            n = len(left_out)
            also = f" ({n} other file{'s' * (n != 1)}, not images by name)" if n else ""
            raise ConfigError(f"no image files ({', '.join(sorted(SCAN_SUFFIXES))}) under {p}{also}")
        if others is not None:
            others.extend(left_out)
        return paths
    if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES:
        return _unique(_absolute(p.parent / entry) for entry in read_manifest(p))
    if p.is_file():
        return [_absolute(p)]
    if _GLOB_CHARS & set(text):
        hits: set[str] = set()
        not_images: set[str] = set()
        pattern = os.path.expanduser(text)
        matches = (  # Python 3.10's glob has no include_hidden: there a pattern skips dotfiles, as ever
            glob.glob(pattern, recursive=True, include_hidden=True)
            if sys.version_info >= (3, 11)
            else glob.glob(pattern, recursive=True)
        )
        for h in matches:
            if Path(h).is_file() or _broken_link(Path(h)):
                (hits if Path(h).suffix.lower() in SCAN_SUFFIXES else not_images).add(_absolute(Path(h)))
        if not hits:
            raise ConfigError(f"the pattern {text!r} matches no image files")
        if others is not None:
            others.extend(sorted(not_images))
        return sorted(hits)
    raise ConfigError(f"no such file, folder or manifest: {text}")


def read_manifest(path: Path) -> list[str]:
    """The entries of a manifest's path column, as written (blank entries skipped)."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            column = _path_column(reader.fieldnames or [], path)
            return [row[column].strip() for row in reader if (row.get(column) or "").strip()]
    if suffix in (".jsonl", ".ndjson"):
        return _jsonl_paths(path)
    return _parquet_paths(path)


def _path_column(names: Iterable[str], path: Path) -> str:
    names = list(names)
    lowered = {n.strip().lower(): n for n in names}
    for candidate in PATH_COLUMNS:
        if candidate in lowered:
            return lowered[candidate]
    found = ", ".join(names) or "none"
    raise ConfigError(f"{path.name} has no path column (looked for {', '.join(PATH_COLUMNS)}; found {found})")


def _jsonl_paths(path: Path) -> list[str]:
    out: list[str] = []
    column: str | None = None
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path.name} line {n}: not JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise ConfigError(f"{path.name} line {n}: expected a JSON object with a path field")
            column = column or _path_column(record, path)
            value = record.get(column)
            if isinstance(value, str) and value.strip():
                out.append(value.strip())
    return out


def _parquet_paths(path: Path) -> list[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - the scan extra installs it
        raise ConfigError("reading a Parquet manifest needs pyarrow: pip install 'fakelens[scan]'") from None
    try:
        schema = pq.read_schema(path)
        column = _path_column(schema.names, path)
        values = pq.read_table(path, columns=[column]).column(column).to_pylist()
    except (OSError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{path.name}: cannot read Parquet manifest ({exc})") from None
    return [str(v).strip() for v in values if v is not None and str(v).strip()]


def _absolute(p: Path) -> str:
    """The real path: a file reached through a symlinked folder, a mount alias or two links is one file,
    with one row (a scan of ``photos/`` and then of ``link-to-photos/`` must not double the table). A broken
    link keeps its own name (in its folder's real path), so its error row says which file is broken."""
    p = Path(os.path.expanduser(p))
    if _broken_link(p):
        return os.path.join(os.path.realpath(p.parent), p.name)
    return os.path.realpath(p)


def _broken_link(p: Path) -> bool:
    """A symlink to nothing (a missing target, or a loop of links)."""
    return p.is_symlink() and not p.exists()


def _unique(paths: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(paths))
