"""Safe image loading (limits, EXIF, formats, modes) and atomic file writing.

:func:`load_image` is the one door through which user images enter fakelens. It returns a plain RGB
``PIL.Image.Image`` with the EXIF orientation applied, and turns every failure caused by the input (a
missing file, a PDF, a truncated JPEG, a decompression bomb) into one :class:`~fakelens.errors.ImageError`
whose message names the file and the problem. The pixel count is checked from the header, *before*
anything is decoded.

Colour policy (documented because forensic results depend on it):

- transparent pixels (RGBA, LA, PA, P or L/RGB with a ``transparency`` key) are composited onto **white**, the
  background a viewer shows, never black;
- 16-bit greyscale (``I;16*``, and ``I`` from a 16-bit PGM/PPM) is scaled to 8 bit by ``v / 257`` and
  rounded, never clipped; other 32-bit integer greyscale (``I``, whose bit depth the file does not say) is
  read by its values: at most 255 as 8 bit (as is), at most 65535 as 16 bit (``v / 257``), otherwise (or any
  negative value) min–max scaled; ``F`` images outside [0, 1] are min–max scaled, ``F`` in [0, 1] is
  multiplied by 255; NaN becomes 0;
- CMYK, YCbCr and LAB use Pillow's conversions; embedded ICC profiles are **not** applied (pixels stay as
  stored, as detectors were trained on them).

Only JPEG (and its MPO variant), PNG/APNG, GIF, WebP, BMP, TIFF and AVIF (when Pillow was built with it) are
opened (:data:`FORMATS`); other Pillow plugins (EPS runs Ghostscript, for one) are deliberately unreachable.
Animated files give their first frame.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import secrets
import stat
import struct
import warnings
from collections.abc import Collection
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

from fakelens.errors import ConfigError, ImageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "FORMATS",
    "IMAGE_SUFFIXES",
    "MAX_PIXELS_ENV",
    "REFUSED_SUFFIXES",
    "FolderLock",
    "ImageSource",
    "atomic_write_bytes",
    "atomic_write_text",
    "find_images",
    "header_problem",
    "load_image",
    "load_mask",
    "max_pixels_limit",
    "opacity",
    "save_image_atomic",
    "sniff_format",
    "to_rgb",
]

DEFAULT_MAX_PIXELS = 80_000_000
"""Largest image (width × height) :func:`load_image` decodes unless told otherwise."""

MAX_PIXELS_ENV = "FAKELENS_MAX_PIXELS"
"""Environment variable that overrides :data:`DEFAULT_MAX_PIXELS` (an explicit ``max_pixels`` wins)."""

AVIF = features.check("avif") is True
"""This Pillow build decodes AVIF (Pillow ≥ 11.3 wheels do)."""
FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", *(("AVIF",) if AVIF else ()))
"""Pillow format ids :func:`load_image` accepts (JPEG includes MPO, PNG includes APNG)."""

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif"}
)
"""File suffixes taken as images when a folder is searched (the usual names of :data:`FORMATS`)."""

REFUSED_SUFFIXES = frozenset({".heic", ".heif"})
"""Image names of a format :func:`load_image` refuses with a message saying so (HEIC/HEIF): a scan lists them,
so that they become error rows instead of vanishing."""


def find_images(
    folder: str | os.PathLike[str],
    *,
    suffixes: Collection[str] = IMAGE_SUFFIXES,
    broken_links: bool = False,
    unreadable: list[Path] | None = None,
    others: list[Path] | None = None,
) -> list[Path]:
    """The image files (named with one of ``suffixes``) under ``folder``, sorted; symlinked folders are
    followed (a photo library is often a link farm), each real folder once, so a link loop ends. With
    ``broken_links``, links to missing files are listed too (a scan reports them as error rows); folders
    that cannot be listed (permission denied) are appended to ``unreadable`` and the other files (not
    images by name) to ``others``, when they are given."""
    found: list[Path] = []
    seen: set[str] = set()

    def skipped(exc: OSError) -> None:
        if unreadable is not None and exc.filename is not None:
            unreadable.append(Path(exc.filename))

    for root, dirs, files in os.walk(folder, followlinks=True, onerror=skipped):
        real = os.path.realpath(root)
        if real in seen:
            dirs.clear()
            continue
        seen.add(real)
        for f in files:
            if Path(f).suffix.lower() in suffixes:
                found.append(Path(root) / f)
            elif others is not None:
                others.append(Path(root) / f)
    return sorted(p for p in found if p.is_file() or (broken_links and p.is_symlink() and not p.exists()))


ImageSource = str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO

_SNIFF_BYTES = 64

# (magic test, description) for files that are not images we read; first match wins.
_NOT_IMAGES: tuple[tuple[bytes, int, str], ...] = (
    (b"%PDF", 0, "a PDF document"),
    (b"PK\x03\x04", 0, "a ZIP archive (or an Office/EPUB document)"),
    (b"\x1f\x8b", 0, "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", 0, "a 7-Zip archive"),
    (b"Rar!", 0, "a RAR archive"),
    (b"\x7fELF", 0, "an ELF executable"),
    (b"MZ", 0, "a Windows executable"),
    (b"8BPS", 0, "a Photoshop PSD file (export it as PNG or TIFF)"),
    (b"\x00\x00\x01\x00", 0, "an ICO icon (not a supported format)"),
    (b"\x00\x00\x00\x0cjP  ", 0, "a JPEG 2000 image (not a supported format)"),
    (b"\xff\x4f\xff\x51", 0, "a JPEG 2000 codestream (not a supported format)"),
    (b"OggS", 0, "an Ogg media file"),
    (b"ID3", 0, "an MP3 audio file"),
    (b"\x1a\x45\xdf\xa3", 0, "a Matroska/WebM video"),
    (b"GIF8", 0, "a GIF with a damaged header"),
)
_FTYP_BRANDS: dict[bytes, str] = {
    b"heic": "a HEIC/HEIF image (not a supported format; convert it to JPEG or PNG)",
    b"heix": "a HEIC/HEIF image (not a supported format; convert it to JPEG or PNG)",
    b"hevc": "a HEIC/HEIF image (not a supported format; convert it to JPEG or PNG)",
    b"mif1": "a HEIF image (not a supported format; convert it to JPEG or PNG)",
    b"msf1": "a HEIF image sequence (not a supported format)",
    b"avif": "an AVIF image, which this Pillow build cannot decode (pip install 'pillow>=11.3')",
    b"avis": "an AVIF image sequence, which this Pillow build cannot decode (pip install 'pillow>=11.3')",
    b"qt  ": "a QuickTime video",
}


# ----------------------------------------------------------------------------------------------------
# Sniffing


def sniff_format(data: bytes) -> str | None:
    """Image format from magic bytes: ``jpeg``, ``png``, ``gif``, ``webp``, ``bmp``, ``tiff``, ``avif`` (when
    Pillow can decode it) or ``None``.

    Needs only the first 12 bytes; nothing is decoded, so this is safe on untrusted uploads.
    """
    head = bytes(data[:12])
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith(b"BM"):
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+", b"MM*\x00", b"II\x00*"):
        return "tiff"  # classic and BigTIFF, and the two byte-order mix-ups Pillow also accepts
    if AVIF and head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis"):
        return "avif"  # an ISO media file whose major brand is AVIF (a sequence gives its first frame)
    return None


def _describe(head: bytes) -> str | None:
    """What a non-image file looks like, from its first bytes (``None`` when there is no telling)."""
    for magic, offset, what in _NOT_IMAGES:
        if head[offset : offset + len(magic)] == magic:
            return what
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return _FTYP_BRANDS.get(brand, "an MP4/MOV/ISO media file")
    if head[:4] == b"RIFF":
        kind = head[8:12].decode("latin-1").strip() or "?"
        return f"a RIFF {kind} file (not a WebP image)"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in head.lower()):
        return "an SVG drawing (a vector format; rasterise it first)"
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "an HTML page"
    if text.startswith(b"<?xml"):
        return "an XML document"
    if text.startswith((b"{", b"[")):
        return "JSON or other text"
    try:
        decoded = head.decode("utf-8")
    except UnicodeDecodeError:
        # A multi-byte character may be cut at the end of the sniffed prefix.
        try:
            decoded = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return None
    if decoded and all(ch.isprintable() or ch in "\t\r\n" for ch in decoded):
        return "text"
    return None


# ----------------------------------------------------------------------------------------------------
# Limits


def max_pixels_limit(max_pixels: int | None = None) -> int:
    """The pixel limit in force: ``max_pixels`` if given, else ``$FAKELENS_MAX_PIXELS``, else the default."""
    if max_pixels is None:
        raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
        if not raw:
            return DEFAULT_MAX_PIXELS
        try:
            max_pixels = int(raw.replace("_", ""))
        except ValueError:
            raise ConfigError(f"{MAX_PIXELS_ENV}={raw!r} is not a whole number of pixels") from None
        if max_pixels <= 0:
            raise ConfigError(f"{MAX_PIXELS_ENV}={raw!r} must be a positive number of pixels")
        return max_pixels
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels <= 0:
        raise ConfigError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    return max_pixels


def _check_pixels(name: str, width: int, height: int, limit: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: zero-size image ({width}×{height} pixels)")
    n = width * height
    if n > limit:
        raise ImageError(
            f"{name}: image of {width}×{height} = {n} pixels exceeds the limit of {limit} pixels "
            f"(refused before decoding; raise max_pixels or ${MAX_PIXELS_ENV} to allow it)"
        )


def _bomb_message(name: str, exc: BaseException, limit: int) -> str:
    """Message for Pillow's own decompression-bomb guard firing (no width and height are known then)."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = int(found.group(1)) if found else None
    if pixels is not None and pixels > limit:
        return (
            f"{name}: image of {pixels} pixels exceeds the limit of {limit} pixels "
            "(refused before decoding as a possible decompression bomb)"
        )
    pil_limit = Image.MAX_IMAGE_PIXELS
    return (
        f"{name}: refused as a possible decompression bomb by Pillow ({exc}); fakelens' limit is {limit} "
        f"pixels, but Pillow's own limit (PIL.Image.MAX_IMAGE_PIXELS = {pil_limit}) applies too"
    )


# ----------------------------------------------------------------------------------------------------
# Modes


def _gray_to_rgb(gray: np.ndarray) -> Image.Image:
    """``(H, W)`` float array already in [0, 255] → RGB image (rounded, clipped only against float noise)."""
    g = np.nan_to_num(gray, nan=0.0, posinf=255.0, neginf=0.0)
    return Image.fromarray(np.rint(g).clip(0, 255).astype(np.uint8)).convert("RGB")


def _minmax(a: np.ndarray) -> np.ndarray:
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        return np.zeros_like(a)
    lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        return np.where(np.isfinite(a), 255.0 if hi > 0 else 0.0, 0.0)
    return (a - lo) * (255.0 / (hi - lo))


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any common Pillow mode to RGB (see the module docstring for the colour policy).

    Returns ``image`` itself when it is already RGB without a transparency key. Raises :class:`ImageError`
    for a mode with no sensible RGB meaning.
    """
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode.startswith("I;16") or mode in ("I", "F"):
        rgb = _wide_gray_to_rgb(image)
        if (opaque := opacity(image)) is not None and not opaque.all():  # a transparency key: white
            arr = np.array(rgb)
            arr[~opaque] = 255
            rgb = Image.fromarray(arr)
        return rgb
    try:
        if _has_alpha(image):
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", image.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB")
        return image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageError(f"unsupported image mode {mode!r}: {exc}") from exc


def _wide_gray_to_rgb(image: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit integer or float grey image as 8-bit grey RGB.

    ``I;16*`` is 16 bit: ``v / 257``, and so is ``I`` read from a 16-bit PGM/PPM (its header declares the
    depth). Another ``I`` (32-bit integer: a TIFF) says nothing of the depth its values were written at, so
    they decide: all in [0, 255] are 8-bit values (kept as they are; a 32-bit TIFF of 8-bit data must not turn
    nearly black), all in [0, 65535] 16-bit ones (``v / 257``), anything else is min–max scaled. ``F`` in
    [0, 1] is multiplied by 255, other ``F`` images are min–max scaled.
    """
    a = np.asarray(image).astype(np.float64)
    if image.mode == "F":
        finite = a[np.isfinite(a)]
        if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0:
            return _gray_to_rgb(a * 255.0)
        return _gray_to_rgb(_minmax(a))
    if image.mode == "I" and a.size:
        if a.min() < 0 or a.max() > 65535:
            return _gray_to_rgb(_minmax(a))
        if a.max() <= 255 and image.format != "PPM":
            return _gray_to_rgb(a)
    return _gray_to_rgb(a / 257.0)


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa") or "transparency" in image.info


def opacity(image: Image.Image) -> np.ndarray | None:
    """``(H, W)`` bool, the pixels that are not fully transparent — those :func:`to_rgb` does not turn
    white — or None for a mode without transparency (an alpha channel or a ``transparency`` key)."""
    if not _has_alpha(image):
        return None
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):  # a grey level keyed as transparent
        return np.asarray(image) != image.info["transparency"]
    return np.asarray(image.convert("RGBA").getchannel("A")) > 0


# ----------------------------------------------------------------------------------------------------
# Loading


def _source_name(source: object) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fsdecode(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else "<stream>"


def _open_file(path: str | os.PathLike[str], name: str) -> BinaryIO:
    """``path`` opened for reading; what cannot be (missing, a folder, a pipe or socket, which ``open()``
    would wait on forever, no permission) is an :class:`ImageError` saying so."""
    try:
        kind = os.stat(path).st_mode
        if stat.S_ISDIR(kind) and not os.access(path, os.R_OK | os.X_OK):
            raise ImageError(f"{name}: a folder that cannot be read (permission denied)")
        if stat.S_ISFIFO(kind) or stat.S_ISSOCK(kind):
            what = "a named pipe (FIFO)" if stat.S_ISFIFO(kind) else "a socket"
            raise ImageError(f"{name}: is {what}, not an image file")
        return open(path, "rb")
    except FileNotFoundError:
        raise ImageError(f"{name}: file not found") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a directory, not an image file") from None
    except PermissionError:
        raise ImageError(f"{name}: permission denied") from None
    except OSError as exc:
        raise ImageError(f"{name}: cannot read file ({exc.strerror or exc})") from None


def _read_source(source: ImageSource, name: str) -> bytes:
    """The bytes of ``source``; file-system and stream failures become :class:`ImageError`.

    Files and streams are read in full only when their first bytes are one of :data:`FORMATS`; otherwise
    the prefix alone is returned (enough to say what the data looks like), so a stray multi-gigabyte video
    is never read into memory.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        with _open_file(source, name) as f:
            try:
                return _read_stream(f, name)
            except OSError as exc:
                raise ImageError(f"{name}: cannot read file ({exc.strerror or exc})") from None
    if not callable(getattr(source, "read", None)):
        raise TypeError(
            f"load_image needs a path, bytes or a binary file object, not {type(source).__name__}"
        )
    try:
        return _read_stream(source, name)
    except OSError as exc:
        raise ImageError(f"{name}: cannot read stream ({exc})") from None


def _read_stream(f: BinaryIO, name: str) -> bytes:
    """The prefix of ``f``, and the rest only if the prefix is an image format we read."""
    head = b""
    while len(head) < _SNIFF_BYTES:  # raw streams may return short reads
        chunk = f.read(_SNIFF_BYTES - len(head))
        if isinstance(chunk, str):
            raise ImageError(f"{name}: stream was opened in text mode; open it with 'rb'")
        if not chunk:
            return head
        head += bytes(chunk)
    if sniff_format(head) is None:
        return head
    return head + bytes(f.read())


def _declared_short(data: bytes) -> bool:
    """True when a container states a length longer than the data (RIFF/WebP does)."""
    if data[:4] == b"RIFF" and len(data) >= 8:
        (size,) = struct.unpack("<I", data[4:8])
        return len(data) < size + 8
    return False


def _decode_failure(name: str, fmt: str, exc: BaseException, data: bytes) -> ImageError:
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, EOFError) or "truncated" in detail.lower() or _declared_short(data):
        return ImageError(
            f"{name}: truncated or corrupt {fmt} data: the image data ends early or is damaged ({detail})"
        )
    return ImageError(f"{name}: corrupt {fmt} data: {detail}")


def _jpeg_filled_rows(img: Image.Image) -> int:
    """Rows at the bottom of a decoded JPEG that libjpeg filled with mid-grey because the compressed data
    ended before the image its header declares (it warns; Pillow does not say). 0 unless the grey run is a
    real share of the image (at least 16 rows and an eighth of it) below content: a flat grey footer of a
    few rows, or an all-grey picture, is an image."""
    if img.mode not in ("L", "RGB") or img.height < 16:
        return 0
    a = np.asarray(img).reshape(img.height, -1)
    if not (a[-1] == 128).all():
        return 0
    content = np.flatnonzero((a != 128).any(axis=1))
    if not len(content):
        return 0
    filled = img.height - 1 - int(content[-1])
    return filled if filled >= max(16, img.height // 8) else 0


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a JPEG's first SOF marker (``None`` when not found)."""
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        i += 2 + length
    return None


def _header_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` read straight from the header of a JPEG/PNG/GIF/BMP/WebP, without Pillow.

    Used only to word error messages (zero-size images, bombs Pillow refuses before fakelens sees a size).
    """
    kind = sniff_format(data)
    try:
        if kind == "png" and data[12:16] == b"IHDR":
            w, h = struct.unpack(">II", data[16:24])
            return int(w), int(h)
        if kind == "gif":
            w, h = struct.unpack("<HH", data[6:10])
            return int(w), int(h)
        if kind == "bmp":
            (dib,) = struct.unpack("<I", data[14:18])
            if dib == 12:
                w, h = struct.unpack("<HH", data[18:22])
            else:
                w, h = struct.unpack("<ii", data[18:26])
            return abs(int(w)), abs(int(h))
        if kind == "webp":
            chunk = data[12:16]
            if chunk == b"VP8X":
                return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
            if chunk == b"VP8L":
                bits = int.from_bytes(data[21:25], "little")
                return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
            if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
                w, h = struct.unpack("<HH", data[26:30])
                return int(w) & 0x3FFF, int(h) & 0x3FFF
        if kind == "jpeg":
            return _jpeg_size(data)
    except struct.error:
        return None
    return None


def _unidentified(name: str, data: bytes, sniffed: str | None) -> ImageError:
    """The error for data Pillow could not identify as any of :data:`FORMATS`."""
    if sniffed is not None:
        header = _header_size(data)
        if header is not None and (header[0] <= 0 or header[1] <= 0):
            return ImageError(f"{name}: zero-size image ({header[0]}×{header[1]} pixels)")
        return ImageError(
            f"{name}: truncated or corrupt {sniffed.upper()} data: its header could not be parsed "
            f"({len(data)} bytes)"
        )
    what = _describe(data[:_SNIFF_BYTES])
    supported = ", ".join(FORMATS)
    if what is None:
        return ImageError(f"{name}: not an image (unrecognised data; supported: {supported})")
    return ImageError(f"{name}: not an image: looks like {what} (supported: {supported})")


def header_problem(path: str | os.PathLike[str]) -> str | None:
    """Why the file at ``path`` cannot be an image we read, from its first bytes alone (nothing is decoded
    and only a prefix is read: cheap up front), or None when it may be one. The reason is what
    :func:`load_image` would say, without the file's name."""
    name = os.fspath(path)
    try:
        with _open_file(path, name) as f:
            head = f.read(_SNIFF_BYTES)
    except ImageError as exc:
        return str(exc).removeprefix(f"{name}: ")
    except OSError as exc:  # an I/O error while reading
        return f"cannot read file ({exc.strerror or exc})"
    if not head:
        return "empty file (0 bytes), not an image"
    if sniff_format(head) is None:
        return str(_unidentified(name, head, None)).removeprefix(f"{name}: ")
    return None


def load_image(source: ImageSource, *, max_pixels: int | None = None, as_mask: bool = False) -> Image.Image:
    """Read an image file, bytes or binary stream into an RGB ``PIL.Image`` (EXIF orientation applied);
    with ``as_mask``, a ground-truth mask as an ``L`` image (see :func:`load_mask`).

    ``max_pixels`` (default ``$FAKELENS_MAX_PIXELS`` or :data:`DEFAULT_MAX_PIXELS`) bounds width × height; it
    is checked from the header before decoding. The whole file is read into memory (compressed data is small
    next to its pixels). Streams are read from their current position to the end. Every problem with the
    input raises :class:`~fakelens.errors.ImageError`; a bad ``max_pixels`` raises ``ConfigError``.

    Pillow's decompression-bomb warnings are handled with ``warnings.catch_warnings``, which swaps the
    process-wide filter list: safe in one thread, best effort when other threads change warning filters.
    """
    name = _source_name(source)
    limit = max_pixels_limit(max_pixels)
    data = _read_source(source, name)
    if not data:
        raise ImageError(f"{name}: empty file (0 bytes), not an image")
    sniffed = sniff_format(data)
    with warnings.catch_warnings():
        # At open, Pillow's size warning duplicates our own header check just below, which knows the
        # caller's limit and names width and height.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=FORMATS)
        except Image.DecompressionBombError as exc:
            header = _header_size(data)
            if header is not None:
                _check_pixels(name, *header, limit)
            raise ImageError(_bomb_message(name, exc, limit)) from exc
        except UnidentifiedImageError:
            raise _unidentified(name, data, sniffed) from None
        except Exception as exc:
            fmt = sniffed.upper() if sniffed else "image"
            raise _decode_failure(name, fmt, exc, data) from exc
    fmt = img.format or (sniffed.upper() if sniffed else "image")
    _check_pixels(name, *img.size, limit)

    pil_limit = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        # While decoding, Pillow also checks GIF frames and TIFF tiles: its warnings are errors for us,
        # unless the caller explicitly allowed more pixels than Pillow does.
        honour = pil_limit is None or limit > pil_limit
        warnings.simplefilter("ignore" if honour else "error", Image.DecompressionBombWarning)
        try:
            img.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageError(_bomb_message(name, exc, limit)) from exc
        except Exception as exc:
            raise _decode_failure(name, fmt, exc, data) from exc
    _check_pixels(name, *img.size, limit)  # a GIF frame may be larger than its screen
    if fmt == "JPEG" and (filled := _jpeg_filled_rows(img)):
        raise ImageError(
            f"{name}: corrupt JPEG data: the compressed data ends early, and the decoder filled the bottom "
            f"{filled} of its {img.height} rows with grey"
        )

    try:
        oriented = ImageOps.exif_transpose(img)
    except Exception as exc:  # a damaged EXIF block must not make the pixels unreadable
        warnings.warn(f"{name}: ignoring unreadable EXIF orientation ({exc})", stacklevel=2)
        oriented = img
    if as_mask:
        mask = _mask_image(oriented)
        img.close()
        return mask
    try:
        rgb = to_rgb(oriented)
    except ImageError as exc:
        raise ImageError(f"{name}: {exc}") from exc
    if rgb is img:
        rgb = img.copy()  # detach from the file object and the multi-frame state
    rgb.info.pop("transparency", None)
    if (opaque := opacity(oriented)) is not None and not opaque.all():
        rgb.info[OPAQUE] = opaque
    if (frames := _frame_count(img)) > 1:
        rgb.info[FRAMES] = frames
    img.close()
    return rgb


MAX_FRAMES_COUNTED = 1000
"""A TIFF's pages are counted up to this many: Pillow walks a TIFF's page chain in quadratic time (a 20 MB
file of 175,000 one-pixel pages took 4.5 minutes to count)."""


def _frame_count(img: Image.Image) -> int:
    """The frames or pages of an opened file: an MPO (phone JPEG) holds previews or gain maps, not frames; a
    TIFF is counted up to :data:`MAX_FRAMES_COUNTED` pages."""
    if img.format == "MPO":
        return 1
    if img.format != "TIFF":
        return int(getattr(img, "n_frames", 1) or 1)
    n = 1
    try:
        while n < MAX_FRAMES_COUNTED:
            img.seek(n)
            n += 1
    except (EOFError, OSError, ValueError):  # the last page, or a damaged chain: count what was read
        pass
    return n


FRAMES = "fakelens.frames"
"""``Image.info`` key of :func:`load_image`'s result: the file's frame or page count, when above 1 (the
first is read); a TIFF's pages are counted up to :data:`MAX_FRAMES_COUNTED`, which then means "at least"."""
OPAQUE = "fakelens.opaque"
"""``Image.info`` key of :func:`load_image`'s result: ``(H, W)`` bool, the pixels that are not fully
transparent, when some are (they were composited onto white)."""


def _mask_image(img: Image.Image) -> Image.Image:
    """Grey level times opacity: a transparent background is "not manipulated" whatever its colour (it is
    not composited onto white, as a photo is)."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode in ("P", "L", "RGB") and "transparency" in img.info):
        rgba = img.convert("RGBA")
        grey = np.asarray(rgba.convert("L"), dtype=np.uint16)
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.uint16)
        return Image.fromarray(((grey * alpha + 127) // 255).astype(np.uint8), mode="L")
    return to_rgb(img).convert("L") if img.mode not in ("L", "1") else img.convert("L")


def load_mask(source: ImageSource, *, max_pixels: int | None = None) -> np.ndarray:
    """A ground-truth mask file as float32 ``(H, W)`` in [0, 1] (1 = manipulated): its grey level, times its
    opacity where it has transparency; checked and oriented as :func:`load_image` does."""
    img = load_image(source, max_pixels=max_pixels, as_mask=True)
    return np.asarray(img, dtype=np.float32) / np.float32(255.0)


# ----------------------------------------------------------------------------------------------------
# Atomic writing


def _fsync_dir(directory: Path) -> None:
    """Persist a rename in ``directory`` (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: readers see the old file or the whole new one, never a part.

    The bytes go to a temporary file in the same directory (created with the usual umask-derived
    permissions), are fsynced, and the file is renamed over ``path`` with ``os.replace``. On any error the
    temporary file is removed and ``path`` is untouched. Missing parent folders are created. Returns ``path``
    as a ``Path``.
    """
    target = Path(path)
    directory = target.parent
    directory.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = directory / f".{target.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:  # a full disk names no file: name ours
            raise OSError(exc.errno, exc.strerror or str(exc), os.fspath(target)) from exc
        raise
    _fsync_dir(directory)
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` atomically (see :func:`atomic_write_bytes`); newlines are written as given."""
    return atomic_write_bytes(path, text.encode(encoding))


def save_image_atomic(
    image: Image.Image | np.ndarray,
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    **save_kwargs: object,
) -> Path:
    """Encode ``image`` (a PIL image or a ``uint8`` array ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)``) and
    write it atomically. The format comes from ``format`` or the file suffix; ``save_kwargs`` go to
    ``PIL.Image.save`` (e.g. ``quality=95``).
    """
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(f"save_image_atomic needs a uint8 array, got {image.dtype}")
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
            raise ValueError(
                f"save_image_atomic needs an (H, W), (H, W, 3) or (H, W, 4) array, got {image.shape}"
            )
        pil = Image.fromarray(np.ascontiguousarray(image))
    elif isinstance(image, Image.Image):
        pil = image
    else:
        raise TypeError(f"save_image_atomic needs a PIL image or a uint8 array, not {type(image).__name__}")
    target = Path(path)
    if format is None:
        format = Image.registered_extensions().get(target.suffix.lower())
        if format is None:
            raise ValueError(f"cannot tell the image format from {target.name!r}; pass format=")
    buf = io.BytesIO()
    pil.save(buf, format=format, **save_kwargs)
    return atomic_write_bytes(target, buf.getvalue())


class FolderLock:
    """An exclusive lock on a file in a folder (``flock``), so that two processes never write one output
    folder at once; released by the kernel when the process dies, even by ``kill -9``. ``busy`` is the
    error when another process holds it. A no-op without ``fcntl`` (Windows)."""

    def __init__(self, path: Path, busy: str) -> None:
        self.path = path
        self.busy = busy
        self._file: BinaryIO | None = None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = self.path.open("a+b")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            raise ConfigError(self.busy) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()).encode())
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
