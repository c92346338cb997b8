"""list_sources: folders, CSV/JSONL/Parquet manifests and globs → absolute paths, in a stable order."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fakelens.errors import ConfigError
from fakelens.scan.sources import list_sources

from .conftest import make_corpus


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    return make_corpus(tmp_path / "c", n=4, bad=False)


def test_folder_is_recursive_sorted_and_filtered(images: list[Path], tmp_path: Path) -> None:
    got = list_sources(tmp_path / "c")
    assert got == sorted(str(p) for p in images)  # readme.txt left out, sub-folder included
    assert all(os.path.isabs(p) for p in got)


def test_csv_manifest_relative_to_its_folder(images: list[Path], tmp_path: Path) -> None:
    man = tmp_path / "c" / "list.csv"
    rel = [str(p.relative_to(man.parent)) for p in reversed(images)]
    man.write_text("label,File\n" + "".join(f"x,{r}\n" for r in [*rel, rel[0]]) + "y,missing.png\n")
    got = list_sources(man)
    assert got == [str(p) for p in reversed(images)] + [
        str(man.parent / "missing.png")
    ]  # order kept, once each


def test_jsonl_and_parquet_manifests(images: list[Path], tmp_path: Path) -> None:
    jl = tmp_path / "m.jsonl"
    jl.write_text("".join(json.dumps({"path": str(p), "k": i}) + "\n" for i, p in enumerate(images)) + "\n")
    assert list_sources(jl) == [str(p) for p in images]
    pqf = tmp_path / "m.parquet"
    pq.write_table(pa.table({"image_path": [str(p) for p in images], "n": list(range(len(images)))}), pqf)
    assert list_sources(pqf) == [str(p) for p in images]


def test_glob(images: list[Path], tmp_path: Path) -> None:
    assert list_sources(str(tmp_path / "c" / "**" / "*.png")) == sorted(
        str(p) for p in images if p.suffix == ".png"
    )
    assert list_sources(images[0]) == [str(images[0])]  # a single file


@pytest.mark.parametrize(
    ("content", "suffix", "match"),
    [
        ("name,label\na.png,1\n", ".csv", "no path column"),
        ('{"path": "a.png"}\nnot json\n', ".jsonl", "line 2: not JSON"),
    ],
)
def test_bad_manifests(tmp_path: Path, content: str, suffix: str, match: str) -> None:
    man = tmp_path / f"m{suffix}"
    man.write_text(content)
    with pytest.raises(ConfigError, match=match):
        list_sources(man)


def test_missing_and_empty_sources(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        list_sources(tmp_path / "nope")
    with pytest.raises(ConfigError, match="matches no image"):
        list_sources(str(tmp_path / "*.png"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no image files"):
        list_sources(tmp_path / "empty")


def test_one_file_reached_through_links_is_listed_once_and_a_broken_link_is_listed(
    images: list[Path], tmp_path: Path
) -> None:
    """Scanning photos/ and then link-to-photos/ must name the same files (one row per file), and a link to
    a file that is gone becomes an error row rather than silently nothing."""
    root = images[0].parent
    alias = tmp_path / "alias"
    alias.symlink_to(root, target_is_directory=True)
    assert list_sources(alias) == list_sources(root)
    (root / "twin.png").symlink_to(images[0])  # a second name for one file
    (root / "gone.png").symlink_to(tmp_path / "deleted.png")
    listed = list_sources(root)
    assert listed.count(os.path.realpath(images[0])) == 1 and str(root / "twin.png") not in listed
    # the broken link under its own name, so its error row says which file in the folder is broken
    assert os.path.join(os.path.realpath(root), "gone.png") in listed
    assert str(tmp_path / "deleted.png") not in listed
    (root / "twin.png").unlink()
    (root / "gone.png").unlink()


def test_a_folder_that_cannot_be_read_is_listed_to_become_an_error_row(
    images: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = images[0].parent
    locked = root / "locked"
    locked.mkdir()
    (locked / "x.png").write_bytes(images[0].read_bytes())
    scandir = os.scandir

    def refusing(path: Any = ".") -> Any:  # chmod 000 as a non-root user sees it (tests may run as root)
        if os.path.realpath(path) == os.path.realpath(locked):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    listed = list_sources(root)
    assert os.path.realpath(locked) in listed and os.path.realpath(locked / "x.png") not in listed


HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(40)  # an iPhone photo's first bytes


def test_heic_files_are_listed_and_other_files_counted(tmp_path: Path) -> None:
    """A HEIC photo becomes an error row (saying to convert it); a file without an image name is counted as
    left out, so nothing vanishes silently."""
    root = tmp_path / "phone"
    root.mkdir()
    (root / "IMG_0001.HEIC").write_bytes(HEIC)
    (root / "b.heif").write_bytes(HEIC)
    (root / "noext").write_bytes(b"\x89PNG\r\n\x1a\n")
    others: list[str] = []
    assert list_sources(root, others=others) == [str(root / "IMG_0001.HEIC"), str(root / "b.heif")]
    assert others == [str(root / "noext")]
    others = []
    assert list_sources(str(root / "*"), others=others) == [str(root / "IMG_0001.HEIC"), str(root / "b.heif")]
    assert others == [str(root / "noext")]
    (root / "IMG_0001.HEIC").unlink()
    (root / "b.heif").unlink()
    with pytest.raises(ConfigError, match=r"no image files .* \(1 other file, not images by name\)"):
        list_sources(root)


def test_a_glob_lists_hidden_files_and_broken_links_as_a_folder_does(
    images: list[Path], tmp_path: Path
) -> None:
    """``"c/**/*.png"`` names the same files as ``c/`` (its PNGs): dotfiles, files in hidden folders and
    broken links (to become error rows) are not dropped silently."""
    root = images[0].parent
    (root / ".hidden.png").write_bytes(images[1].read_bytes())
    (root / ".cache").mkdir()
    (root / ".cache" / "x.png").write_bytes(images[1].read_bytes())
    (root / "gone.png").symlink_to(tmp_path / "deleted.png")
    (root / "loop.png").symlink_to(root / "loop.png")
    pngs = [p for p in list_sources(root) if p.endswith(".png")]
    assert list_sources(str(root / "**" / "*.png")) == pngs
    for name in (".hidden.png", ".cache/x.png", "gone.png", "loop.png"):
        assert os.path.join(os.path.realpath(root), name) in pngs


def test_a_glob_works_on_python_3_10(images: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """glob's include_hidden is Python 3.11's: on 3.10 a pattern is listed without it (dotfiles skipped, as
    glob always did) instead of failing with a TypeError."""
    import glob
    import sys

    real = glob.glob

    def glob_310(pattern: str, *, recursive: bool = False) -> list[str]:
        return real(pattern, recursive=recursive)

    monkeypatch.setattr(sys, "version_info", (3, 10, 14))
    monkeypatch.setattr(glob, "glob", glob_310)
    root = images[0].parent
    assert list_sources(str(root / "*.png")) == [p for p in list_sources(root) if p.endswith(".png")]
