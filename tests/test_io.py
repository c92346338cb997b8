"""Image loading (modes, formats, EXIF, failures, limits) and atomic writing."""

from __future__ import annotations

import io
import os
import stat
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFile

import fakelens.io as fio
from fakelens.errors import ConfigError, ImageError
from fakelens.io import (
    AVIF,
    FRAMES,
    IMAGE_SUFFIXES,
    atomic_write_bytes,
    atomic_write_text,
    load_image,
    save_image_atomic,
    sniff_format,
    to_rgb,
)


@pytest.mark.parametrize("suffix", sorted(IMAGE_SUFFIXES))
def test_every_image_suffix_a_folder_search_takes_loads(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"x{suffix}"
    Image.new("RGB", (9, 7), (200, 30, 40)).save(path)  # Pillow picks the format from the suffix
    assert load_image(path).size == (9, 7)


def encode(img: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def pixel(img: Image.Image, xy: tuple[int, int] = (0, 0)) -> tuple[int, int, int]:
    assert img.mode == "RGB"
    value = img.getpixel(xy)
    assert isinstance(value, tuple)
    return (int(value[0]), int(value[1]), int(value[2]))


def near(a: tuple[int, ...], b: tuple[int, ...], tol: int) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose header claims ``width × height`` (the data is far too short)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + png_chunk(b"IEND", b"")
    )


# ----------------------------------------------------------------------------------------------------
# Modes → RGB (through real files where the format stores the mode)


def _palette_image(transparent: bool) -> Image.Image:
    p = Image.new("P", (4, 4), 1)
    p.putpalette([0, 0, 0, 10, 20, 30, 200, 100, 50] + [0] * (256 * 3 - 9))
    p.putpixel((0, 0), 2)
    if transparent:
        p.info["transparency"] = 1
    return p


MODE_CASES: list[tuple[str, Image.Image, str, tuple[int, int], tuple[int, int, int], int]] = [
    # id, image, format to store it in, pixel, expected RGB, tolerance
    ("rgb", Image.new("RGB", (4, 4), (12, 34, 56)), "PNG", (0, 0), (12, 34, 56), 0),
    ("rgba-transparent", Image.new("RGBA", (4, 4), (255, 0, 0, 0)), "PNG", (0, 0), (255, 255, 255), 0),
    ("rgba-half", Image.new("RGBA", (4, 4), (255, 0, 0, 128)), "PNG", (0, 0), (255, 127, 127), 1),
    ("rgba-opaque", Image.new("RGBA", (4, 4), (1, 2, 3, 255)), "PNG", (0, 0), (1, 2, 3), 0),
    ("la-transparent", Image.new("LA", (4, 4), (0, 0)), "PNG", (0, 0), (255, 255, 255), 0),
    ("la-opaque", Image.new("LA", (4, 4), (50, 255)), "PNG", (0, 0), (50, 50, 50), 0),
    ("p", _palette_image(False), "PNG", (0, 0), (200, 100, 50), 0),
    ("p-transparent-png", _palette_image(True), "PNG", (1, 1), (255, 255, 255), 0),
    ("p-transparent-gif", _palette_image(True), "GIF", (1, 1), (255, 255, 255), 0),
    ("p-opaque-index", _palette_image(True), "PNG", (0, 0), (200, 100, 50), 0),
    ("l", Image.new("L", (4, 4), 77), "PNG", (0, 0), (77, 77, 77), 0),
    ("1-white", Image.new("1", (4, 4), 1), "PNG", (0, 0), (255, 255, 255), 0),
    ("1-black", Image.new("1", (4, 4), 0), "BMP", (0, 0), (0, 0, 0), 0),
    ("i16-mid", Image.new("I;16", (4, 4), 32768), "PNG", (0, 0), (128, 128, 128), 0),
    ("i16-max", Image.new("I;16", (4, 4), 65535), "PNG", (0, 0), (255, 255, 255), 0),
    ("i16-low", Image.new("I;16", (4, 4), 1000), "TIFF", (0, 0), (4, 4, 4), 0),  # not clipped to 255
    ("i32", Image.new("I", (4, 4), 40000), "TIFF", (0, 0), (156, 156, 156), 0),  # 16-bit values
    ("i32-8bit-values", Image.new("I", (4, 4), 200), "TIFF", (0, 0), (200, 200, 200), 0),  # not 200 / 257
    ("i32-wide", Image.fromarray(np.array([[70000, 0]], np.int32)), "TIFF", (0, 0), (255, 255, 255), 0),
    ("i16-8bit-values", Image.new("I;16", (4, 4), 200), "PNG", (0, 0), (1, 1, 1), 0),  # I;16 stays 16-bit
    ("f-unit", Image.new("F", (4, 4), 0.5), "TIFF", (0, 0), (128, 128, 128), 0),
    ("cmyk-cyan-tiff", Image.new("CMYK", (4, 4), (255, 0, 0, 0)), "TIFF", (0, 0), (0, 255, 255), 0),
    ("cmyk-cyan-jpeg", Image.new("CMYK", (16, 16), (255, 0, 0, 0)), "JPEG", (8, 8), (0, 255, 255), 8),
    ("cmyk-black", Image.new("CMYK", (4, 4), (0, 0, 0, 255)), "TIFF", (0, 0), (0, 0, 0), 0),
    ("lab-white", Image.new("LAB", (4, 4), (255, 128, 128)), "TIFF", (0, 0), (255, 255, 255), 2),
    ("lab-grey", Image.new("LAB", (4, 4), (128, 128, 128)), "TIFF", (0, 0), (119, 119, 119), 2),
]


@pytest.mark.parametrize(
    ("image", "fmt", "xy", "expected", "tol"),
    [case[1:] for case in MODE_CASES],
    ids=[case[0] for case in MODE_CASES],
)
def test_modes_convert_to_rgb_with_the_right_colours(
    image: Image.Image, fmt: str, xy: tuple[int, int], expected: tuple[int, int, int], tol: int
) -> None:
    data = encode(image, fmt)
    out = load_image(data)
    assert out.mode == "RGB" and out.size == image.size
    assert near(pixel(out, xy), expected, tol), (pixel(out, xy), expected)


@pytest.mark.parametrize(
    ("image", "expected", "tol"),
    [
        (Image.new("PA", (2, 2), (0, 0)), (255, 255, 255), 0),
        (Image.new("YCbCr", (2, 2), (76, 85, 255)), (254, 0, 0), 3),  # BT.601 red
        (Image.new("RGBa", (2, 2), (0, 0, 0, 0)), (255, 255, 255), 0),
        (Image.new("I;16B", (2, 2), 65535), (255, 255, 255), 0),
        (Image.new("HSV", (2, 2), (0, 255, 255)), (255, 0, 0), 0),
    ],
    ids=["pa", "ycbcr", "rgba-premultiplied", "i16b", "hsv"],
)
def test_to_rgb_of_modes_files_rarely_store(
    image: Image.Image, expected: tuple[int, int, int], tol: int
) -> None:
    assert near(pixel(to_rgb(image)), expected, tol)


def test_to_rgb_of_out_of_range_data_is_scaled_not_clipped() -> None:
    i32 = Image.fromarray(np.array([[-100, 0], [200, 300]], dtype=np.int32))
    assert [pixel(to_rgb(i32), xy)[0] for xy in ((0, 0), (1, 0), (0, 1), (1, 1))] == [0, 64, 191, 255]
    f = Image.fromarray(np.array([[0.0, 10.0], [np.nan, 20.0]], dtype=np.float32))
    assert [pixel(to_rgb(f), xy)[0] for xy in ((0, 0), (1, 0), (0, 1), (1, 1))] == [0, 128, 0, 255]
    gradient16 = Image.fromarray(np.arange(16, dtype=np.uint16).reshape(4, 4) * 4369)  # 0 … 65535
    values = np.asarray(to_rgb(gradient16))[..., 0].ravel()
    assert values[0] == 0 and values[-1] == 255 and np.all(np.diff(values.astype(int)) > 0)


def test_rgb_is_returned_as_is() -> None:
    img = Image.new("RGB", (3, 3))
    assert to_rgb(img) is img


# ----------------------------------------------------------------------------------------------------
# EXIF orientation


def _orientation_jpeg(orientation: int) -> bytes:
    """64×32 blue image with a red 16×16 block in the top-left corner, tagged with ``orientation``."""
    img = Image.new("RGB", (64, 32), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 16, 16))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(img, "JPEG", exif=exif.tobytes(), quality=95)


@pytest.mark.parametrize(
    ("orientation", "size", "red_at"),
    [
        (1, (64, 32), (4, 4)),  # as stored
        (3, (64, 32), (59, 27)),  # 180°: top-left → bottom-right
        (6, (32, 64), (27, 4)),  # display rotated 90° clockwise: top-left → top-right
        (8, (32, 64), (4, 59)),  # 90° counter-clockwise: top-left → bottom-left
    ],
)
def test_exif_orientation_is_applied(
    orientation: int, size: tuple[int, int], red_at: tuple[int, int]
) -> None:
    out = load_image(_orientation_jpeg(orientation))
    assert out.size == size
    assert near(pixel(out, red_at), (255, 0, 0), 40)
    assert near(pixel(out, (size[0] // 2, size[1] // 2)), (0, 0, 255), 40)
    assert out.getexif().get(0x0112, 1) == 1  # no second rotation downstream


# ----------------------------------------------------------------------------------------------------
# Formats and sources


def _noise(h: int = 24, w: int = 40) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def gradient_rgb(h: int = 24, w: int = 40) -> np.ndarray:
    """Smooth colours that lossy codecs keep (noise does not survive chroma subsampling)."""
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([xs * 255 // (w - 1), ys * 255 // (h - 1), np.full_like(xs, 90)], -1).astype(np.uint8)


@pytest.mark.parametrize(
    ("fmt", "kw", "lossless"),
    [
        ("PNG", {}, True),
        ("BMP", {}, True),
        ("TIFF", {}, True),
        ("TIFF", {"compression": "tiff_lzw"}, True),
        ("WEBP", {"lossless": True}, True),
        ("WEBP", {"quality": 90}, False),
        ("JPEG", {"quality": 95}, False),
    ],
)
def test_formats_round_trip(fmt: str, kw: dict[str, Any], lossless: bool, tmp_path: Path) -> None:
    arr = _noise() if lossless else gradient_rgb()
    data = encode(Image.fromarray(arr), fmt, **kw)
    assert sniff_format(data) == fmt.lower()
    path = tmp_path / f"x.{fmt.lower()}"
    path.write_bytes(data)
    for source in (data, bytearray(data), memoryview(data), str(path), path, io.BytesIO(data)):
        out = load_image(source)
        got = np.asarray(out)
        assert got.shape == arr.shape
        if lossless:
            np.testing.assert_array_equal(got, arr)
        else:
            assert np.abs(got.astype(int) - arr).mean() < 4


def test_gif_round_trip_with_a_small_palette() -> None:
    arr = np.zeros((8, 8, 3), np.uint8)
    arr[:4] = (255, 0, 0)
    arr[4:] = (0, 128, 255)
    out = load_image(encode(Image.fromarray(arr), "GIF"))
    np.testing.assert_array_equal(np.asarray(out), arr)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG", "TIFF"])
def test_animated_files_give_their_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    kw: dict[str, Any] = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, **kw)
    with Image.open(io.BytesIO(data)) as check:
        assert getattr(check, "n_frames", 1) == 3
    out = load_image(data)
    assert near(pixel(out, (4, 4)), (255, 0, 0), 2)
    assert out.info[FRAMES] == 3


@pytest.mark.skipif(not AVIF, reason="this Pillow build cannot decode AVIF")
def test_avif_images_load_with_their_transparency_and_frames() -> None:
    """AVIF (phones, the web, some generators' output) loads like the other formats: sniffed from its ftyp
    box, first frame of a sequence, transparent pixels composited onto white and recorded."""
    from fakelens.io import OPAQUE, sniff_format

    rgba = np.zeros((16, 24, 4), np.uint8)
    rgba[..., 0], rgba[:, 8:, 3] = 200, 255  # red, the left third fully transparent
    data = encode(Image.fromarray(rgba, "RGBA"), "AVIF", quality=100)
    assert sniff_format(data) == "avif"
    out = load_image(data)
    assert out.size == (24, 16) and near(pixel(out, (0, 0)), (255, 255, 255), 2)
    assert near(pixel(out, (20, 8)), (200, 0, 0), 8) and out.info[OPAQUE][:, :8].sum() == 0
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    seq = encode(frames[0], "AVIF", save_all=True, append_images=frames[1:])
    first = load_image(seq)
    assert (
        sniff_format(seq) == "avif" and first.info[FRAMES] == 3 and near(pixel(first, (8, 8)), (255, 0, 0), 8)
    )


def test_a_tiff_s_pages_are_counted_only_up_to_a_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow counts a TIFF's pages in quadratic time, so a small file of many tiny pages could pin a worker
    for minutes: counting stops at MAX_FRAMES_COUNTED (lowered here to keep the test small)."""
    import fakelens.io as fio

    pages = [Image.new("L", (1, 1), i) for i in range(12)]
    data = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    assert load_image(data).info[FRAMES] == 12
    monkeypatch.setattr(fio, "MAX_FRAMES_COUNTED", 5)
    out = load_image(data)
    assert out.info[FRAMES] == 5 and pixel(out) == (0, 0, 0)  # still the first page's pixels


def test_stream_is_read_from_its_position() -> None:
    data = encode(Image.new("RGB", (5, 3), (9, 9, 9)), "PNG")
    stream = io.BytesIO(b"junk" + data)
    stream.seek(4)
    assert load_image(stream).size == (5, 3)


def test_result_is_detached_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(encode(Image.new("RGB", (5, 3), (9, 9, 9)), "PNG"))
    out = load_image(path)
    path.unlink()  # the image must not need its file any more
    assert pixel(out.copy()) == (9, 9, 9)


def test_sniff_format() -> None:
    assert sniff_format(b"\xff\xd8\xff\xe0rest") == "jpeg"
    assert sniff_format(b"GIF89a....") == "gif"
    assert sniff_format(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "webp"
    assert sniff_format(b"MM\x00*\x00\x00\x00\x08") == "tiff"
    assert sniff_format(b"BM\x00\x00") == "bmp"
    assert sniff_format(b"%PDF-1.7") is None
    assert sniff_format(b"") is None
    assert sniff_format(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None


# ----------------------------------------------------------------------------------------------------
# Failures: one ImageError, naming the file and the problem


def test_missing_file() -> None:
    with pytest.raises(ImageError, match=r"nope\.png: file not found"):
        load_image("nope.png")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path)


def test_empty_bytes_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty\.jpg: empty file"):
        load_image(path)


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "looks like a PDF"),
        (b"PK\x03\x04" + bytes(60), "looks like a ZIP"),
        (b"<!DOCTYPE html><html><body>hi</body></html>", "looks like an HTML page"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', "SVG"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "HEIC"),
        (b"just some words\n", "looks like text"),
        (bytes(np.random.default_rng(1).integers(0, 256, 512, dtype=np.uint8)), "not an image"),
    ],
    ids=["pdf", "zip", "html", "svg", "heic", "text", "random"],
)
def test_not_an_image(data: bytes, says: str, tmp_path: Path) -> None:
    path = tmp_path / "upload.jpg"
    path.write_bytes(data)
    with pytest.raises(ImageError, match=says) as info:
        load_image(path)
    assert str(path) in str(info.value) and "not an image" in str(info.value)


def test_a_large_non_image_is_not_read_in_full() -> None:
    stream = io.BytesIO(b"%PDF-1.7\n" + bytes(10_000_000))
    with pytest.raises(ImageError, match="looks like a PDF"):
        load_image(stream)
    assert stream.tell() <= 64


def test_other_pillow_formats_are_not_opened() -> None:
    with pytest.raises(ImageError, match="not an image"):
        load_image(encode(Image.new("RGB", (4, 4)), "PPM"))


@pytest.mark.parametrize(
    ("fmt", "kw"), [("JPEG", {}), ("PNG", {}), ("WEBP", {}), ("TIFF", {}), ("BMP", {}), ("GIF", {})]
)
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_data(fmt: str, kw: dict[str, Any], keep: float, tmp_path: Path) -> None:
    data = encode(Image.fromarray(_noise(64, 64)), fmt, **kw)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ImageError, match=r"truncated|corrupt") as info:
        load_image(path)
    assert str(path) in str(info.value) and fmt in str(info.value)


def test_truncated_header_and_corrupt_data() -> None:
    png = encode(Image.fromarray(_noise()), "PNG")
    for cut in (12, 20, 40):  # inside the signature, the IHDR chunk, the first IDAT chunk header
        with pytest.raises(ImageError, match=r"truncated.* PNG data"):
            load_image(png[:cut])
    broken = bytearray(png)
    idat = broken.index(b"IDAT")
    broken[idat + 10 : idat + 30] = bytes(20)  # damage the compressed stream (and its CRC)
    with pytest.raises(ImageError, match=r"corrupt|truncated"):
        load_image(bytes(broken))


def _sof_height(data: bytes, height: int) -> bytes:
    """The JPEG with its frame header (SOF0) declaring ``height`` rows."""
    out = bytearray(data)
    sof = out.index(b"\xff\xc0")
    out[sof + 5 : sof + 7] = struct.pack(">H", height)
    return bytes(out)


def test_jpeg_declaring_more_rows_than_its_data_is_corrupt() -> None:
    """libjpeg fills the rows its data does not reach with grey and only warns: 64 rows of data declared
    as 256 would be analysed as an image that is three quarters grey."""
    data = encode(Image.fromarray(_noise(64, 64)), "JPEG")
    with pytest.raises(ImageError, match=r"corrupt JPEG data: .* bottom 1[6-9]\d of its 256 rows with grey"):
        load_image(_sof_height(data, 256))
    assert load_image(_sof_height(data, 64)).size == (64, 64)
    # grey is an image: all of it, or a band too thin to be the decoder's filling
    flat = np.full((64, 64, 3), 128, np.uint8)
    assert load_image(encode(Image.fromarray(flat), "JPEG")).size == (64, 64)
    footer = _noise(256, 64)
    footer[-16:] = 128
    assert load_image(encode(Image.fromarray(footer), "JPEG")).size == (64, 256)


def test_zero_size_header() -> None:
    with pytest.raises(ImageError, match="zero-size image"):
        load_image(png_header_only(0, 10))


def test_text_mode_stream() -> None:
    with pytest.raises(ImageError, match="text mode"):
        load_image(io.StringIO("hello"))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------
# Pixel limits: refused from the header, never decoded


def forbid_decoding(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on, make any pixel decode or image allocation fail loudly, and record the attempts."""
    calls: list[str] = []

    def forbidden(name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            raise AssertionError(f"{name} called for an image that should have been refused")

        return fail

    monkeypatch.setattr(ImageFile.ImageFile, "load", forbidden("ImageFile.load"))
    monkeypatch.setattr(Image.core, "new", forbidden("core.new"))
    monkeypatch.setattr(Image.core, "fill", forbidden("core.fill"))
    return calls


def test_bomb_header_is_refused_without_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    data = png_header_only(100_000, 100_000)  # 67 bytes claiming 10 gigapixels
    calls = forbid_decoding(monkeypatch)
    with pytest.raises(ImageError, match=r"100000×100000 = 10000000000 pixels exceeds the limit of 80000000"):
        load_image(data)
    assert calls == []


def test_moderate_bomb_is_refused_by_our_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    data = png_header_only(10_000, 10_000)  # above our default limit, below Pillow's hard error
    calls = forbid_decoding(monkeypatch)
    with pytest.raises(ImageError, match=r"10000×10000 = 100000000 pixels exceeds the limit of 80000000"):
        load_image(data)
    assert calls == []


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"])
def test_real_image_over_a_low_limit_is_not_decoded(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(Image.fromarray(gradient_rgb(30, 40)), fmt)
    assert load_image(data, max_pixels=1200).size == (40, 30)
    calls = forbid_decoding(monkeypatch)
    with pytest.raises(ImageError, match=r"40×30 = 1200 pixels exceeds the limit of 1199 pixels"):
        load_image(data, max_pixels=1199)
    monkeypatch.setenv(fio.MAX_PIXELS_ENV, "1000")
    with pytest.raises(ImageError, match="exceeds the limit of 1000 pixels"):
        load_image(data)
    assert calls == []
    monkeypatch.undo()
    monkeypatch.setenv(fio.MAX_PIXELS_ENV, "1000")
    assert load_image(data, max_pixels=5000).size == (40, 30)  # an explicit limit wins over the env


def test_bad_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(Image.new("RGB", (2, 2)), "PNG")
    with pytest.raises(ConfigError):
        load_image(data, max_pixels=0)
    monkeypatch.setenv(fio.MAX_PIXELS_ENV, "lots")
    with pytest.raises(ConfigError, match=fio.MAX_PIXELS_ENV):
        load_image(data)
    monkeypatch.setenv(fio.MAX_PIXELS_ENV, "80_000")
    assert fio.max_pixels_limit() == 80_000


def test_pillow_guard_is_an_image_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow's own bomb checks (warning and error) come out as ImageError, never as a warning/traceback."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    data = encode(Image.new("RGB", (20, 20)), "PNG")  # 400 px > 2 × 100: Pillow refuses at open
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(data, max_pixels=10_000)
    # within our limit and Pillow's warning band: our explicit, larger limit is honoured
    assert load_image(encode(Image.new("RGB", (15, 10)), "PNG"), max_pixels=10_000).size == (15, 10)
    with pytest.raises(ImageError, match="exceeds the limit of 90 pixels"):
        load_image(data, max_pixels=90)


# ----------------------------------------------------------------------------------------------------
# Atomic writing


def _listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_atomic_write_bytes_and_text(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    assert atomic_write_bytes(target, b"one") == target
    assert target.read_bytes() == b"one"
    atomic_write_bytes(str(target), b"two")
    assert target.read_bytes() == b"two"
    atomic_write_text(tmp_path / "t.txt", "héllo\nworld\n")
    assert (tmp_path / "t.txt").read_bytes() == "héllo\nworld\n".encode()
    assert _listing(tmp_path) == ["out.bin", "t.txt"]


def test_atomic_write_uses_normal_permissions(tmp_path: Path) -> None:
    reference = tmp_path / "ref"
    reference.write_bytes(b"")
    atomic_write_bytes(tmp_path / "new", b"x")
    assert stat.S_IMODE(os.stat(tmp_path / "new").st_mode) == stat.S_IMODE(os.stat(reference).st_mode)


@pytest.mark.parametrize("fail_in", ["write", "fsync", "replace"])
def test_atomic_write_failure_leaves_old_file_and_no_temp(
    fail_in: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "report.json"
    target.write_bytes(b"old")
    real_fdopen = os.fdopen

    class HalfWriter:
        def __init__(self, f: Any) -> None:
            self.f = f

        def __enter__(self) -> HalfWriter:
            return self

        def __exit__(self, *exc: object) -> None:
            self.f.close()

        def write(self, data: bytes) -> int:
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            raise OSError("disk full")

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise OSError(f"{fail_in} failed")

    if fail_in == "write":
        monkeypatch.setattr(fio.os, "fdopen", lambda *a, **k: HalfWriter(real_fdopen(*a, **k)))
    else:
        monkeypatch.setattr(fio.os, fail_in, boom)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new content that never lands")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert _listing(tmp_path) == ["report.json"]


def test_atomic_write_failure_with_no_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fio.os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(tmp_path / "a.txt", "data")
    assert _listing(tmp_path) == []


def test_save_image_atomic(tmp_path: Path) -> None:
    arr = _noise(6, 9)
    save_image_atomic(arr, tmp_path / "a.png")
    np.testing.assert_array_equal(np.asarray(load_image(tmp_path / "a.png")), arr)
    save_image_atomic(Image.fromarray(arr), tmp_path / "b.jpg", quality=90)
    assert load_image(tmp_path / "b.jpg").size == (9, 6)
    save_image_atomic(arr[..., 0], tmp_path / "c.bin", format="PNG")
    assert load_image(tmp_path / "c.bin").size == (9, 6)
    with pytest.raises(ValueError, match="uint8"):
        save_image_atomic(arr.astype(np.float32), tmp_path / "d.png")
    with pytest.raises(ValueError, match="format"):
        save_image_atomic(arr, tmp_path / "e.unknown")
    with pytest.raises(OSError):  # RGBA cannot be JPEG: encoding fails before anything is written
        save_image_atomic(Image.new("RGBA", (2, 2)), tmp_path / "f.jpg")
    assert _listing(tmp_path) == ["a.png", "b.jpg", "c.bin"]


def test_find_images_follows_folder_links_once(tmp_path: Path) -> None:
    """A photo library linked into the scanned folder is searched; a link back up ends (each folder once)."""
    from fakelens.io import find_images

    outside = tmp_path / "library"
    outside.mkdir()
    Image.new("RGB", (4, 4)).save(outside / "linked.JPG")
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(root / "sub" / "a.png")
    (root / "notes.txt").write_text("x")
    (root / "lib").symlink_to(outside, target_is_directory=True)
    (root / "sub" / "loop").symlink_to(root, target_is_directory=True)
    (root / "gone.png").symlink_to(tmp_path / "missing.png")
    assert [p.relative_to(root).as_posix() for p in find_images(root)] == ["lib/linked.JPG", "sub/a.png"]


def test_a_named_pipe_is_refused_at_once_instead_of_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "p.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match=r"p\.jpg: is a named pipe \(FIFO\), not an image file"):
        load_image(fifo)


def test_a_full_disk_is_reported_with_the_file_being_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """write() on a full disk raises ENOSPC without a file name: the error names the target, and neither it
    nor a temporary file is left behind."""
    import errno

    real_fsync = os.fsync

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    target = tmp_path / "out" / "x.npy"
    with pytest.raises(OSError, match="No space left on device") as err:
        fio.atomic_write_bytes(target, b"data")
    assert err.value.filename == os.fspath(target) and err.value.errno == errno.ENOSPC
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_16_bit_grey_png_with_a_transparency_key_is_composited_like_any_other() -> None:
    """PNG's tRNS on 16-bit grey names one grey level transparent: those pixels turn white, as an alpha
    channel's do, and are recorded as transparent (they were left grey and still recorded)."""
    from fakelens.io import OPAQUE

    a = np.full((4, 6), 30000, np.uint16)
    a[:, :2] = 1000  # the keyed level
    out = load_image(encode(Image.fromarray(a), "PNG", transparency=1000))
    assert (np.asarray(out)[:, :2] == 255).all() and (np.asarray(out)[:, 2:] == 117).all()
    assert (out.info[OPAQUE] == (a != 1000)).all()
    plain = load_image(encode(Image.fromarray(a), "PNG"))
    assert OPAQUE not in plain.info and (np.asarray(plain)[:, :2] == 4).all()


def test_a_mask_with_a_transparent_background_marks_only_its_opaque_region(tmp_path: Path) -> None:
    """Transparent is "not manipulated" whatever its colour: a photo's alpha goes onto white, a mask's not."""
    from fakelens.io import load_mask

    rgba = np.zeros((20, 40, 4), dtype=np.uint8)  # transparent black
    rgba[5:10, 10:20] = (255, 255, 255, 255)  # an opaque white region: 50 of 800 pixels
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "m.png")
    m = load_mask(tmp_path / "m.png")
    assert m.shape == (20, 40) and m.dtype == np.float32
    assert m.sum() == 50 and m[5:10, 10:20].min() == 1.0
    Image.fromarray(rgba[..., 0]).save(tmp_path / "grey.png")  # the same mask without transparency
    assert np.array_equal(load_mask(tmp_path / "grey.png"), m)


def test_a_16_bit_pgm_read_as_mode_i_stays_16_bit(tmp_path: Path) -> None:
    """A PGM's header declares its depth: a 16-bit one whose values are all under 256 is dark, not read as
    8-bit data 257× too bright (the value rule is for 32-bit TIFFs, which declare nothing)."""
    from fakelens.io import to_rgb

    path = tmp_path / "dark.pgm"
    path.write_bytes(b"P5\n20 10\n65535\n" + np.arange(200, dtype=">u2").tobytes())
    image = Image.open(path)
    assert image.mode == "I" and int(np.asarray(to_rgb(image)).max()) == 1
