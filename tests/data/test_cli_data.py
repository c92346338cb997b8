"""``fakelens data`` through typer's CliRunner: build-pool, synth, contact-sheet, one-line errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fakelens.cli.data import app

runner = CliRunner()


def build(out: Path) -> None:
    res = runner.invoke(app, ["build-pool", "--out", str(out), "--no-faces", "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["images"] == 5 and {s["name"]: s["status"] for s in rep["sources"]} == {
        "ok": "added",
        "broken": "failed",
    }


def test_build_pool_and_synth(photo_source: Path, tmp_path: Path) -> None:
    pool, ds = tmp_path / "pool", tmp_path / "ds"
    build(pool)
    res = runner.invoke(app, ["build-pool", "--out", str(pool), "--no-faces"])
    assert res.exit_code == 0 and "verified" in res.stdout
    res = runner.invoke(
        app,
        [
            "synth",
            "--pool",
            str(pool),
            "--out",
            str(ds),
            "--n",
            "6",
            "--size",
            "48",
            "--recipes",
            "self_blend,upsample:global,double_jpeg",
            "--seed",
            "1",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["n"] == 6 and out["recipes"] == {"double_jpeg": 2, "self_blend": 2, "upsample:global": 2}
    assert out["formats"] == {"jpeg": 2, "png": 4}  # as synth.json's counts.formats
    assert json.loads((ds / "synth.json").read_text())["counts"]["formats"] == out["formats"]
    with open(ds / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and all((ds / r["path"]).is_file() for r in rows)
    assert all((ds / r["mask_path"]).is_file() for r in rows if r["label"] == "fake")
    assert (ds / "contact_sheet.png").is_file()
    res = runner.invoke(app, ["contact-sheet", "--data", str(ds), "--out", str(tmp_path / "s.png"), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["contact_sheet"].endswith("s.png")


def test_bad_recipe_is_one_clear_line(photo_source: Path, tmp_path: Path) -> None:
    pool = tmp_path / "pool"
    build(pool)
    res = runner.invoke(
        app,
        [
            "synth",
            "--pool",
            str(pool),
            "--out",
            str(tmp_path / "ds"),
            "--n",
            "2",
            "--recipes",
            "self_blend,upsampel",
        ],
    )
    assert res.exit_code != 0
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "unknown recipe 'upsampel'" in lines[0] and "did you mean upsample" in lines[0]
    assert "Traceback" not in res.output


@pytest.mark.parametrize("recipes", [",", " , ,"])
def test_recipes_that_name_no_recipe_are_one_clear_line(
    photo_source: Path, tmp_path: Path, recipes: str
) -> None:
    """Separators with no name had meant every recipe, silently."""
    pool = tmp_path / "pool"
    build(pool)
    args = ["synth", "--pool", str(pool), "--out", str(tmp_path / "ds"), "--n", "2", "--recipes", recipes]
    res = runner.invoke(app, args)
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and "no recipe named in" in lines[0]
    assert not (tmp_path / "ds").exists()


def test_user_errors_exit_nonzero(tmp_path: Path) -> None:
    res = runner.invoke(app, ["synth", "--pool", str(tmp_path / "none"), "--out", str(tmp_path / "ds")])
    assert res.exit_code == 2 and "no pool manifest" in res.output
    res = runner.invoke(app, ["contact-sheet", "--data", str(tmp_path)])
    assert res.exit_code == 2 and "no manifest.csv" in res.output
    res = runner.invoke(app, ["build-pool", "--out", str(tmp_path / "p"), "--detector", "dlib"])
    assert res.exit_code == 2 and "unknown detector" in res.output
    res = runner.invoke(app, ["build-pool", "--list-sources", "--json"])  # no --out needed to list
    assert res.exit_code == 0 and {"skimage", "face_api", "opencv_doc", "plasma_wallpapers"} <= {
        s["name"] for s in json.loads(res.stdout)
    }
    res = runner.invoke(app, ["build-pool"])
    assert res.exit_code == 2 and "give the pool directory with --out DIR" in res.output


def test_help_texts() -> None:
    for cmd in ("build-pool", "synth", "contact-sheet"):
        res = runner.invoke(app, [cmd, "--help"])
        assert res.exit_code == 0 and "--json" in res.output
    text = " ".join(runner.invoke(app, ["synth", "--help"]).output.replace("│", " ").split())
    assert "up to 16 px from the mask along each axis, a square band" in text  # not "about 16 px around"


def test_build_pool_says_when_it_fell_back_to_haar_faces(
    photo_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without facenet-pytorch, ``auto`` means Haar: the forgeries then differ from the shipped pool's, and
    the command says so (not when Haar was asked for)."""
    import fakelens.data.pool as pool_mod

    monkeypatch.setattr(pool_mod, "available_detectors", lambda: ["haar"])
    res = runner.invoke(app, ["build-pool", "--out", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    assert "facenet-pytorch is not installed" in " ".join(res.output.split())
    res = runner.invoke(app, ["build-pool", "--out", str(tmp_path / "q"), "--detector", "haar"])
    assert res.exit_code == 0 and "facenet-pytorch" not in res.output
