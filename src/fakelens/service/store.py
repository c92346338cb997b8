"""Content-addressed file store: ``blobs/ab/<sha256>``, each file written atomically, garbage-collected
against the set of hashes the database references."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

from fakelens.io import atomic_write_bytes

__all__ = ["BlobStore", "sha256_hex"]

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobStore:
    """Files named by the SHA-256 of their bytes; identical content is stored once."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha: str) -> Path:
        if not _HEX64.match(sha):
            raise ValueError(f"not a SHA-256 hex digest: {sha!r}")
        return self.root / sha[:2] / sha

    def put(self, data: bytes) -> str:
        """Store ``data`` (atomically, fsynced) and return its hash; an existing, complete file is kept."""
        return self.put_new(data)[0]

    def put_new(self, data: bytes) -> tuple[str, bool]:
        """:meth:`put`, and whether the file was written now (False: it was already stored)."""
        sha = sha256_hex(data)
        target = self.path(sha)
        if target.is_file() and target.stat().st_size == len(data):
            return sha, False
        atomic_write_bytes(target, data)
        return sha, True

    def read(self, sha: str) -> bytes:
        return self.path(sha).read_bytes()

    def exists(self, sha: str) -> bool:
        return self.path(sha).is_file()

    def delete(self, sha: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(sha).unlink()

    def hashes(self) -> set[str]:
        """Hashes of every complete file in the store."""
        return {p.name for p in self.root.glob("??/*") if _HEX64.match(p.name) and p.is_file()}

    def gc(self, keep: Iterable[str]) -> tuple[int, int]:
        """Delete files not in ``keep`` and leftover temporary files; returns (orphans, temporaries).

        Only safe while nothing writes to the store (at start, under the data-dir lock)."""
        keep_set = set(keep)
        orphans = temps = 0
        for p in self.root.glob("??/*"):
            if not p.is_file():
                continue
            if p.name.endswith(".tmp"):
                temps += 1
            elif p.name in keep_set:
                continue
            else:
                orphans += 1
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        return orphans, temps
