"""Reading one file for a scan: hash its bytes, skip it when that (path, sha256) is already done, else decode
it with :func:`fakelens.io.load_image`. Runs in DataLoader worker processes and in Ray CPU tasks; every
failure caused by the file becomes an ``error`` string, never an exception."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from fakelens.errors import ImageError
from fakelens.io import FRAMES, OPAQUE, load_image

__all__ = ["DecodeDataset", "Decoded", "decode_file", "decoded_from_records", "decoded_to_records"]

DoneKeys = Collection[tuple[str, str]]


@dataclass
class Decoded:
    """One file read for a scan: ``pixels (H, W, 3)`` uint8 RGB or an ``error``; ``skipped`` if done;
    ``opaque (H, W)`` bool when some pixels were fully transparent (composited onto white) and ``frames``,
    the file's frame or page count (the first was read), as :func:`~fakelens.io.load_image` records them."""

    path: str
    sha256: str | None = None
    size_bytes: int | None = None
    pixels: np.ndarray | None = None
    error: str | None = None
    skipped: bool = False
    opaque: np.ndarray | None = None
    frames: int = 1

    def image(self) -> Image.Image:
        """The decoded pixels as the RGB image :func:`~fakelens.io.load_image` returned, with its records."""
        if self.pixels is None:
            raise ValueError(f"{self.path} was not decoded")
        img = Image.fromarray(self.pixels)
        if self.opaque is not None:
            img.info[OPAQUE] = self.opaque
        if self.frames > 1:
            img.info[FRAMES] = self.frames
        return img

    @property
    def width(self) -> int | None:
        return None if self.pixels is None else int(self.pixels.shape[1])

    @property
    def height(self) -> int | None:
        return None if self.pixels is None else int(self.pixels.shape[0])


def decode_file(path: str, done: DoneKeys = frozenset(), *, max_pixels: int | None = None) -> Decoded:
    """Read, hash and decode ``path`` (EXIF-transposed RGB, size-checked before decoding)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return Decoded(path, error="file not found")
    except IsADirectoryError:
        return Decoded(path, error="is a directory, not an image file")
    except PermissionError:
        return Decoded(path, error="permission denied")
    except OSError as exc:
        return Decoded(path, error=f"cannot read file ({exc.strerror or exc})")
    sha = hashlib.sha256(data).hexdigest()
    if (path, sha) in done:
        return Decoded(path, sha, len(data), skipped=True)
    try:
        image = load_image(data, max_pixels=max_pixels)
    except ImageError as exc:
        return Decoded(path, sha, len(data), error=str(exc).removeprefix("<bytes>: "))
    return Decoded(
        path,
        sha,
        len(data),
        pixels=np.asarray(image, dtype=np.uint8),
        opaque=image.info.get(OPAQUE),
        frames=int(image.info.get(FRAMES, 1)),
    )


class DecodeDataset(Dataset[Decoded]):
    """The files of a scan as a map-style dataset for a :class:`torch.utils.data.DataLoader`."""

    def __init__(self, paths: Sequence[str], done: DoneKeys = frozenset(), max_pixels: int | None = None):
        self.paths = list(paths)
        self.done = done
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Decoded:
        return decode_file(self.paths[i], self.done, max_pixels=self.max_pixels)


def collate_decoded(items: list[Decoded]) -> list[Decoded]:
    """DataLoader ``collate_fn``: a batch stays a list (images differ in size)."""
    return items


def decoded_to_records(items: Sequence[Decoded]) -> dict[str, list[Any]]:
    """Columns for a Ray batch: pixels travel as raw bytes with their height and width."""
    return {
        "path": [d.path for d in items],
        "sha256": [d.sha256 for d in items],
        "size_bytes": [d.size_bytes for d in items],
        "height": [d.height for d in items],
        "width": [d.width for d in items],
        "pixels": [None if d.pixels is None else d.pixels.tobytes() for d in items],
        "opaque": [None if d.opaque is None else np.packbits(d.opaque).tobytes() for d in items],
        "frames": [d.frames for d in items],
        "error": [d.error for d in items],
        "skipped": [d.skipped for d in items],
    }


def decoded_from_records(columns: dict[str, list[Any]]) -> list[Decoded]:
    """Inverse of :func:`decoded_to_records`."""
    out = []
    for i, path in enumerate(columns["path"]):
        raw, bits = columns["pixels"][i], columns["opaque"][i]
        pixels = opaque = None
        if raw is not None:
            h, w = int(columns["height"][i]), int(columns["width"][i])
            pixels = np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3)
            if bits is not None:
                opaque = np.unpackbits(np.frombuffer(bits, np.uint8), count=h * w).reshape(h, w).astype(bool)
        size = columns["size_bytes"][i]
        out.append(
            Decoded(
                path=str(path),
                sha256=columns["sha256"][i],
                size_bytes=None if size is None else int(size),
                pixels=pixels,
                error=columns["error"][i],
                skipped=bool(columns["skipped"][i]),
                opaque=opaque,
                frames=int(columns["frames"][i]),
            )
        )
    return out
