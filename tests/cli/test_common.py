"""Shared CLI plumbing: how a command stops."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import typer

from fakelens.cli.common import user_errors


def test_sigterm_stops_a_command_as_ctrl_c_does() -> None:
    """`timeout`, systemd and Kubernetes send SIGTERM: the command stops through the same path as Ctrl-C (what
    commits on an interrupt commits), with one line and exit code 130."""
    reached: list[str] = []

    @user_errors
    def command() -> None:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except KeyboardInterrupt:
            reached.append("interrupt")
            raise

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(typer.Exit) as exit_info:
        command()
    assert exit_info.value.exit_code == 130 and reached == ["interrupt"]
    assert signal.getsignal(signal.SIGTERM) == before  # restored after the command


def test_an_error_line_keeps_its_brackets(capsys: pytest.CaptureFixture[str]) -> None:
    """An install hint's [extra] and a path's brackets are text, not Rich markup that vanishes."""
    from fakelens.cli.common import fail

    with pytest.raises(typer.Exit):
        fail("the service needs its extra: pip install 'fakelens[service]' (see /tmp/[x]/y)")
    err = capsys.readouterr().err
    assert "pip install 'fakelens[service]'" in err and "/tmp/[x]/y" in err


def test_a_full_disk_anywhere_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """ENOSPC from a writer that names no file (pyarrow, torch.save) is still one line, not a traceback."""
    import errno

    @user_errors
    def writes() -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(typer.Exit) as exit_:
        writes()
    assert exit_.value.exit_code == 2
    assert "No space left on device while writing the output" in capsys.readouterr().err


def test_an_unreadable_folder_is_warned_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    from fakelens.cli.common import expand_images

    (tmp_path / "locked").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "ok.png")
    scandir = os.scandir

    def refusing(path: object = ".") -> object:
        if os.fspath(path).endswith("locked"):  # type: ignore[call-overload]
            raise PermissionError(13, "Permission denied", os.fspath(path))  # type: ignore[call-overload]
        return scandir(path)  # type: ignore[call-overload]

    monkeypatch.setattr(os, "scandir", refusing)
    assert expand_images([tmp_path]) == [tmp_path / "ok.png"]
    assert "cannot read the folder" in capsys.readouterr().err


def test_images_are_named_by_file_unless_two_share_a_name() -> None:
    """Tables and reports name an image by its file name; two a.png from different folders are named by
    their paths as given, so their rows stay apart."""
    from fakelens.cli.common import shown_names

    assert shown_names(["x/a.png", "y/b.png"]) == ["a.png", "b.png"]
    assert shown_names(["x/a.png", "y/a.png", "y/b.png"]) == ["x/a.png", "y/a.png", "b.png"]


def test_output_stems_are_visible_and_unique() -> None:
    """``.hidden.jpg`` gives visible output files (its overlays had been hidden dotfiles)."""
    from fakelens.cli.common import unique_stem

    used: set[str] = set()
    stems = [unique_stem(Path(p), used) for p in (".hidden.jpg", "x/hidden.png", "..jpg", "a.png")]
    assert stems == ["hidden", "hidden-2", "image", "a"]


def test_heic_files_in_a_folder_are_said_to_be_left_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """analyze/explain on a folder: HEIC photos (an iPhone dump) are named as left out, not skipped
    silently (scan lists them as error rows)."""
    from PIL import Image

    from fakelens.cli.common import expand_images

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "IMG_0001.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic")
    assert expand_images([tmp_path]) == [tmp_path / "a.png"]
    said = " ".join(capsys.readouterr().err.split())
    assert "1 HEIC/HEIF image(s) left out" in said and "convert them to JPEG or PNG" in said
