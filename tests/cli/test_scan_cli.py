"""``fakelens scan`` through typer's CliRunner: the table, the JSON summary, resume and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from fakelens.cli.main import app

runner = CliRunner()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """Five images (three JPEGs, two PNGs, two in a sub-folder) and three files that are not images."""
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(48, 64), (90, 40), (33, 77), (64, 64), (120, 50)]):
        where = root / "sub" if i % 3 == 0 else root
        img = Image.fromarray(rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8))
        img.resize((w, h)).save(where / f"img{i:03d}.{'png' if i % 2 else 'jpg'}")
    (root / "notes.png").write_text("not an image at all")
    (root / "empty.jpg").write_bytes(b"")
    (root / "sub" / "cut.png").write_bytes((root / "img001.png").read_bytes()[:100])
    return root


def _scan(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(app, ["scan", *args])
    return res.exit_code, res.stdout, res.stderr


def test_scan_writes_table_and_resumes(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    base = [str(corpus), "--out", str(out), "--model", "tiny-cnn", "--workers", "0"]
    code, stdout, _ = _scan(*base, "--heatmaps-above", "0", "--json")
    assert code == 0, stdout
    summary = json.loads(stdout)
    assert (summary["found"], summary["scanned"], summary["errors"], summary["flagged"]) == (8, 8, 3, 5)
    rows = pq.read_table(out / "scan.parquet").to_pylist()
    assert len(rows) == 8 and all((out / f).is_file() for r in rows for f in r["heatmap_files"] or [])
    code, stdout, stderr = _scan(*base, "--heatmaps-above", "0")
    assert code == 0 and "done before (skipped)" in stdout and "8" in stdout  # the summary is the answer
    assert "wrote" in stderr and "scan of" not in stderr
    assert len(pq.read_table(out / "scan.parquet")) == 8


def test_the_table_counts_this_source_and_labels_the_whole_table(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    common = ["--out", str(out), "--model", "tiny-cnn", "--workers", "0", "--no-explain"]
    assert _scan(str(corpus), *common)[0] == 0
    code, stdout, _ = _scan(str(corpus / "sub"), *common)  # img000.png, img003.jpg and cut.png
    assert code == 0, stdout
    lines = {ln.split("│")[1].strip(): ln.split("│")[2].strip() for ln in stdout.splitlines() if "│" in ln}
    assert (lines["files found"], lines["errors"]) == ("3", "1")
    assert lines["whole table (all sources in --out)"].startswith("8 rows: 3 errors, ")


@pytest.mark.parametrize("overwrite", [False, True])
def test_an_interrupted_scan_says_its_rows_are_kept_and_how_to_resume(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overwrite: bool
) -> None:
    from fakelens.scan.process import ScanProcessor

    real, calls = ScanProcessor.process, {"n": 0}

    def interrupted(self: ScanProcessor, items: list) -> object:  # Ctrl-C during the third batch
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return real(self, items)

    out = tmp_path / "out"
    args = [str(corpus), "--out", str(out), "--model", "tiny-cnn", "--workers", "0", "--batch-size", "2"]
    with monkeypatch.context() as m:
        m.setattr(ScanProcessor, "process", interrupted)
        code, _, stderr = _scan(*args, *(["--overwrite"] if overwrite else []))
    assert code == 130
    again = "again, without --overwrite," if overwrite else "again"
    said = (
        f"error: interrupted: the rows finished so far are kept in {out}; run the same command {again} to "
        "resume (files already scanned are skipped)"
    )
    assert [ln for ln in stderr.splitlines() if ln.startswith("error:")] == [said]
    assert json.loads((out / "scan.json").read_text())["status"] == "interrupted"  # not still "running"
    code, stdout, _ = _scan(*args, "--json")  # the same command resumes: the four rows done are skipped
    assert code == 0 and (json.loads(stdout)["skipped"], json.loads(stdout)["scanned"]) == (4, 4)


def test_scan_warns_about_an_untrained_checkpoint_and_caps_overlays(corpus: Path, tmp_path: Path) -> None:
    from fakelens.models import load_detector, save_checkpoint

    ckpt = save_checkpoint(load_detector("tiny-cnn"), tmp_path / "ckpt")  # untrained, saved as a checkpoint
    out = tmp_path / "out"
    args = [str(corpus), "--out", str(out), "--model", str(ckpt), "--workers", "0"]
    code, _, stderr = _scan(*args, "--heatmaps-above", "0", "--overlay-max-side", "20")
    assert code == 0 and "tiny-cnn is an architecture without trained real/fake weights" in stderr
    pngs = list((out / "heatmaps").glob("*.png"))
    assert pngs and all(max(Image.open(p).size) <= 20 for p in pngs)


def test_scan_detect_only_from_a_glob(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, stdout, _ = _scan(
        str(corpus / "**" / "*.jpg"), "--out", str(out), "--model", "tiny-cnn", "--no-explain", "--json"
    )
    assert code == 0, stdout
    rows = pq.read_table(out / "scan.parquet").to_pylist()
    assert len(rows) == json.loads(stdout)["rows"] == 4  # three JPEGs and the empty .jpg
    assert all(r["heatmap_method"] is None for r in rows)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}"], "no such file, folder or manifest"),
        (["{corpus}", "-m", "gradcm"], "unknown explanation method 'gradcm'"),
        (["{corpus}", "-m", "rise", "--set", "rise.n_masks=0"], "bad option for rise"),
        (["{corpus}", "--model", "no-such-model"], "no-such-model"),
        (["{corpus}", "--device", "tpu"], "unknown device"),
        (
            ["{corpus}", "--threshold", "0.3", "--heatmaps-above", "0.2", "--out", "{corpus}/img001.png"],
            "is not a folder",
        ),
    ],
)
def test_user_mistakes_are_one_line(corpus: Path, tmp_path: Path, args: list[str], message: str) -> None:
    filled = [a.format(corpus=corpus, missing=tmp_path / "nope") for a in args]
    code, stdout, stderr = _scan(
        "--out", str(tmp_path / "out"), "--model", "tiny-cnn", "--workers", "0", *filled
    )
    assert code == 2, stdout
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
    assert "Traceback" not in stderr


def test_changed_settings_are_one_line(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _scan(str(corpus), "--out", str(out), "--model", "tiny-cnn", "--workers", "0")[0] == 0
    code, _, stderr = _scan(str(corpus), "--out", str(out), "--model", "tiny-cnn", "--threshold", "0.2")
    assert code == 2 and "other settings" in stderr and "--overwrite" in stderr
    code, _, stderr = _scan(str(corpus), "--out", str(out), "--model", "tiny-cnn", "--set", "gradcam.x=1")
    assert code == 2 and "gradient CAMs have no options" in stderr
    opts = tmp_path / "opts"
    rise = [str(corpus), "--out", str(opts), "--model", "tiny-cnn", "--workers", "0", "-m", "rise"]
    assert _scan(*rise, "--set", "rise.n_masks=4")[0] == 0
    code, _, stderr = _scan(*rise, "--set", "rise.n_masks=8")
    assert code == 2 and "other settings" in stderr and "n_masks" in stderr
    code, _, _ = _scan(
        str(corpus), "--out", str(out), "--model", "tiny-cnn", "--threshold", "0.2", "--overwrite"
    )
    assert code == 0
