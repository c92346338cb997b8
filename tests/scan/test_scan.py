"""scan() on one machine: rows, error rows, threshold-gated heatmaps, detect-only, ensembles and resume."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from fakelens.analysis import analyze_images
from fakelens.errors import ConfigError
from fakelens.io import FolderLock, load_image
from fakelens.models import Ensemble, create_model, load_detector
from fakelens.models.checkpoint import save_checkpoint
from fakelens.scan import ScanSettings, scan
from fakelens.scan.process import ScanProcessor
from fakelens.scan.run import LOCK
from fakelens.scan.store import PARTS, TABLE

from .conftest import assert_same_rows, make_corpus, rows_by_path

BAD = {"notes.png": "not an image", "empty.jpg": "", "cut.png": "truncated"}


def test_rows_errors_and_schema(corpus: Path, tmp_path: Path, cnn_checkpoint: Path) -> None:
    out = tmp_path / "out"
    s = scan(corpus, out, model=cnn_checkpoint, settings=ScanSettings(batch_size=4), workers=2)
    table = pq.read_table(out / TABLE)
    assert table.column_names[:6] == ["path", "sha256", "size_bytes", "width", "height", "score_tiny_cnn"]
    rows = rows_by_path(table)
    assert len(rows) == s.rows == s.found == 12 and s.errors == 3 and s.skipped == 0
    assert list(rows) == sorted(rows)
    for path, r in rows.items():
        name = Path(path).name
        data = Path(path).read_bytes()
        assert r["sha256"] == hashlib.sha256(data).hexdigest() and r["size_bytes"] == len(data)
        if name in BAD:
            assert r["error"] and BAD[name] in r["error"] and r["score"] is None, r
            continue
        assert r["error"] is None
        assert (r["width"], r["height"]) == Image.open(path).size
        assert 0 <= r["score"] <= 1 and r["score"] == r["score_tiny_cnn"]
        assert r["verdict"] == ("fake" if r["score"] >= 0.5 else "real")
        assert r["heatmap_method"] == "gradcam" and r["heatmap_model"] == "tiny-cnn"
        assert r["heatmap_peak_to_mean"] >= 1 and 0 <= r["heatmap_entropy"] <= 1


def test_threshold_gates_heatmaps_and_badges(corpus: Path, tmp_path: Path, cnn_checkpoint: Path) -> None:
    probe = scan(
        corpus, tmp_path / "probe", model=cnn_checkpoint, settings=ScanSettings(explain=False), workers=0
    )
    scores = sorted(r["score"] for r in pq.read_table(probe.table).to_pylist() if r["score"] is not None)
    cut = (scores[3] + scores[4]) / 2  # five of nine images above
    out = tmp_path / "out"
    settings = ScanSettings(heatmaps_above=cut, save_raw=True, batch_size=3)
    s = scan(corpus, out, model=cnn_checkpoint, settings=settings, workers=0)
    assert s.flagged == 5
    for r in pq.read_table(out / TABLE).to_pylist():
        if r["error"]:
            continue
        assert r["heatmap_entropy"] is not None  # statistics for every image
        if r["score"] > cut:
            png, npy = (out / f for f in r["heatmap_files"])
            assert Image.open(png).size == (r["width"], r["height"])  # on the original pixel grid
            assert np.load(npy).shape == (r["height"], r["width"])
            assert r["badge_grade"] in ("ok", "check") and -1 <= r["badge_equivariance"] <= 1
        else:
            assert r["heatmap_files"] is None and r["badge_grade"] is None
    assert len(list((out / "heatmaps").iterdir())) == 10


def test_a_hidden_source_gives_visible_overlays(tmp_path: Path, cnn_checkpoint: Path) -> None:
    root = tmp_path / "c"
    (good,) = make_corpus(root, 1, bad=False)
    (root / ".hidden.png").write_bytes(good.read_bytes())
    (root / "..x.jpg").write_bytes(good.read_bytes())
    out = tmp_path / "out"
    scan(root, out, model=cnn_checkpoint, settings=ScanSettings(heatmaps_above=0.0), workers=0)
    names = sorted(p.name for p in (out / "heatmaps").iterdir())
    assert len(names) == 3 and not any(n.startswith(".") for n in names)
    assert sum(n.startswith(("hidden-", "x-")) for n in names) == 2


def test_overlays_can_be_capped_and_old_scans_still_resume(
    corpus: Path, tmp_path: Path, cnn_checkpoint: Path
) -> None:
    """--overlay-max-side shrinks the overlay PNGs (aspect kept; the table's statistics and the raw maps stay
    on the original pixels); a scan without it records nothing new, so scans made before it resume."""
    assert "overlay_max_side" not in ScanSettings().record()
    out = tmp_path / "out"
    settings = ScanSettings(heatmaps_above=0.0, save_raw=True, overlay_max_side=32)
    scan(corpus, out, model=cnn_checkpoint, settings=settings, workers=0)
    for r in pq.read_table(out / TABLE).to_pylist():
        if r["error"]:
            continue
        png, npy = (out / f for f in r["heatmap_files"])
        w, h = Image.open(png).size
        assert max(w, h) == min(32, max(r["width"], r["height"]))
        assert abs(w / h - r["width"] / r["height"]) < 0.1
        assert np.load(npy).shape == (r["height"], r["width"])
    with pytest.raises(ConfigError, match="overlay_max_side"):
        scan(corpus, out, model=cnn_checkpoint, settings=replace(settings, overlay_max_side=64), workers=0)
    with pytest.raises(ConfigError, match="at least 16"):
        ScanSettings(overlay_max_side=8)


def test_the_summary_names_untrained_members(tmp_path: Path) -> None:
    """A checkpoint of an architecture saved without training stays marked untrained in the summary."""
    ckpt = save_checkpoint(load_detector("tiny-cnn"), tmp_path / "ckpt")
    make_corpus(tmp_path / "c", 2, bad=False)
    s = scan(tmp_path / "c", tmp_path / "out", model=ckpt, settings=ScanSettings(explain=False), workers=0)
    assert s.untrained == ["tiny-cnn"]


def test_heic_files_are_error_rows_and_other_files_are_counted(tmp_path: Path, cnn_checkpoint: Path) -> None:
    """A folder of iPhone photos is not "no image files": each HEIC is a row saying to convert it, and the
    files that are not images by name are counted in the summary and scan.json."""
    root = tmp_path / "phone"
    root.mkdir()
    (root / "IMG_0001.heic").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(40))
    (root / "noext").write_bytes(b"whatever")
    (root / "notes.txt").write_text("case notes")
    out = tmp_path / "out"
    s = scan(root, out, model=cnn_checkpoint, settings=ScanSettings(explain=False), workers=0)
    (row,) = pq.read_table(out / TABLE).to_pylist()
    assert row["path"] == str(root / "IMG_0001.heic") and "HEIC/HEIF image" in row["error"]
    assert (s.found, s.errors, s.not_images) == (1, 1, 2)
    assert json.loads((out / "scan.json").read_text())["summary"]["not_images"] == 2


def test_badges_of_a_tiled_image_grade_the_tile_analyze_grades(tmp_path: Path) -> None:
    det = create_model("tiny-cnn", seed=3)
    det.input_spec = replace(det.input_spec, mode="native")  # a 150 × 200 image is read as 3 × 4 tiles
    ckpt = save_checkpoint(det, tmp_path / "native")
    root = tmp_path / "in"
    root.mkdir()
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 255, (150, 200, 3), dtype=np.uint8))
    img.save(root / "big.png")
    s = scan(root, tmp_path / "out", model=ckpt, settings=ScanSettings(heatmaps_above=0.0), workers=0)
    [row] = pq.read_table(s.table).to_pylist()
    [a] = analyze_images(load_detector(ckpt), [img])
    [cam] = a.models[0].heatmaps.values()
    assert a.models[0].tiles == 12 and cam.robustness is not None and cam.robustness["tile"]
    assert row["badge_grade"] == cam.robustness["grade"]
    assert row["badge_equivariance"] == pytest.approx(cam.robustness["equivariance"], abs=1e-6)


def test_faces_are_judged_on_their_own(tmp_path: Path, cnn_checkpoint: Path) -> None:
    import skimage.data

    from fakelens.data.faces import detect_faces
    from fakelens.face_verdicts import face_verdicts

    root = tmp_path / "in"
    root.mkdir()
    astronaut = skimage.data.astronaut()
    Image.fromarray(astronaut).save(root / "astronaut.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 90, 3), dtype=np.uint8)).save(
        root / "noise.png"
    )
    settings = ScanSettings(explain=False, faces=True)
    s = scan(root, tmp_path / "out", model=cnn_checkpoint, settings=settings, workers=0)
    rows = rows_by_path(pq.read_table(s.table))
    face_row, noise_row = (rows[str(root / n)] for n in ("astronaut.png", "noise.png"))
    assert s.fake_faces == int(face_row["face_verdict"] == "fake")
    [v] = face_verdicts(load_detector(cnn_checkpoint), Image.fromarray(astronaut), detect_faces(astronaut))
    assert face_row["faces"] == 1 and face_row["face_verdict"] == v.verdict
    assert face_row["face_score"] == pytest.approx(v.fake_probability, abs=1e-6)
    assert noise_row["faces"] == 0 and noise_row["face_score"] is None and noise_row["face_verdict"] is None
    plain = scan(
        root, tmp_path / "plain", model=cnn_checkpoint, settings=ScanSettings(explain=False), workers=0
    )
    assert all(r["faces"] is None for r in pq.read_table(plain.table).to_pylist())  # off by default


def test_detect_only_matches_explained_scores(corpus: Path, tmp_path: Path, cnn_checkpoint: Path) -> None:
    a = scan(corpus, tmp_path / "a", model=cnn_checkpoint, settings=ScanSettings(explain=False), workers=0)
    b = scan(
        corpus, tmp_path / "b", model=cnn_checkpoint, settings=ScanSettings(heatmaps_above=1.0), workers=0
    )
    ra, rb = rows_by_path(pq.read_table(a.table)), rows_by_path(pq.read_table(b.table))
    for path, r in ra.items():
        assert r["heatmap_method"] is None and r["heatmap_files"] is None
        if r["score"] is not None:
            assert r["score"] == pytest.approx(rb[path]["score"], abs=1e-6)
            assert r["verdict"] == rb[path]["verdict"]


def test_ensemble_has_a_score_per_member(corpus: Path, tmp_path: Path, ensemble_checkpoint: Path) -> None:
    ens = load_detector(ensemble_checkpoint)
    s = scan(corpus, tmp_path / "out", model=ens, settings=ScanSettings(threshold=0.3, heatmaps_above=1.0))
    for r in pq.read_table(s.table).to_pylist():
        if r["error"]:
            continue
        assert r["score"] == pytest.approx(0.75 * r["score_tiny_cnn"] + 0.25 * r["score_tiny_vit"], abs=1e-6)
        assert r["verdict"] == ("fake" if r["score"] >= 0.3 else "real")
        top = "tiny-cnn" if r["score_tiny_cnn"] >= r["score_tiny_vit"] else "tiny-vit"
        assert r["heatmap_model"] == top


def _interrupt_after(monkeypatch: pytest.MonkeyPatch, batches: int) -> None:
    real = ScanProcessor.process
    calls = {"n": 0}

    def flaky(self, items):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] > batches:
            raise KeyboardInterrupt
        return real(self, items)

    monkeypatch.setattr(ScanProcessor, "process", flaky)


def test_resume_after_interrupt_has_no_duplicates_or_losses(
    corpus: Path, tmp_path: Path, cnn_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = ScanSettings(batch_size=2, heatmaps_above=0.5)
    whole = scan(corpus, tmp_path / "whole", model=cnn_checkpoint, settings=settings, workers=0)
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        _interrupt_after(m, 3)
        with pytest.raises(KeyboardInterrupt):
            scan(corpus, out, model=cnn_checkpoint, settings=settings, workers=0, commit_every=3)
    assert not (out / TABLE).exists()
    committed = pq.read_table(out / PARTS).num_rows
    assert committed == 6  # three batches of two, committed on the way out
    again = scan(corpus, out, model=cnn_checkpoint, settings=settings, workers=1)
    assert again.skipped == committed and again.scanned == whole.rows - committed
    assert not (out / PARTS).exists()
    assert_same_rows(pq.read_table(out / TABLE), pq.read_table(whole.table))
    assert sorted(p.name for p in (out / "heatmaps").iterdir()) == sorted(
        p.name for p in (tmp_path / "whole" / "heatmaps").iterdir()
    )
    third = scan(corpus, out, model=cnn_checkpoint, settings=settings, workers=0)  # nothing left to do
    assert third.scanned == 0 and third.skipped == 12
    assert_same_rows(pq.read_table(out / TABLE), pq.read_table(whole.table))


def test_missing_files_are_error_rows_tried_again(corpus: Path, tmp_path: Path, cnn_checkpoint: Path) -> None:
    manifest = tmp_path / "list.csv"
    manifest.write_text("path\ncorpus/img001.png\ncorpus/gone.png\n")
    out = tmp_path / "out"
    first = scan(manifest, out, model=cnn_checkpoint, workers=0)
    gone = rows_by_path(pq.read_table(first.table))[str(tmp_path / "corpus" / "gone.png")]
    assert gone["error"] == "file not found" and gone["sha256"] is None
    again = scan(manifest, out, model=cnn_checkpoint, workers=0)
    assert (again.skipped, again.scanned, again.rows) == (1, 1, 2)  # a file that was not there may be now


def test_changed_file_replaces_its_row(corpus: Path, tmp_path: Path, cnn_checkpoint: Path) -> None:
    out = tmp_path / "out"
    everything = ScanSettings(heatmaps_above=0.0)  # every image gets an overlay
    first = scan(corpus, out, model=cnn_checkpoint, workers=0, settings=everything)
    victim = corpus / "img002.jpg"
    old_files = rows_by_path(pq.read_table(out / TABLE))[str(victim)]["heatmap_files"]
    changed = np.zeros((20, 30, 3), dtype=np.uint8)
    changed[:, :15] = (200, 10, 10)  # not uniform: a blank image would get no overlay
    Image.fromarray(changed).save(victim)
    s = scan(corpus, out, model=cnn_checkpoint, workers=0, settings=everything)
    assert s.scanned == 1 and s.skipped == 11  # only the changed file
    rows = rows_by_path(pq.read_table(out / TABLE))
    assert len(rows) == 12 and (rows[str(victim)]["width"], rows[str(victim)]["height"]) == (30, 20)
    assert old_files and not any((out / f).exists() for f in old_files)  # its old overlays went with it
    # the summary counts the table, not only what this call scanned
    fakes = sum(1 for r in rows.values() if r["verdict"] == "fake" and not r["blank"])
    assert (s.fake, s.flagged, s.errors) == (fakes, 9, 3) and first.flagged == 9
    (corpus / "img001.png").unlink()  # a file that is gone loses its row: one row per file
    gone = scan(corpus, out, model=cnn_checkpoint, workers=0, settings=everything)
    rows = rows_by_path(pq.read_table(out / TABLE))
    assert gone.rows == gone.found == 11 and str(corpus / "img001.png") not in rows
    named = {f for r in rows.values() for f in r["heatmap_files"] or ()}
    assert {p.relative_to(out).as_posix() for p in (out / "heatmaps").rglob("*.png")} == named
    # a scan of some of the files into the same folder keeps the others' rows: they are not gone
    part = scan(str(corpus / "img00*.jpg"), out, model=cnn_checkpoint, workers=0, settings=everything)
    assert part.rows == 11 and len(rows_by_path(pq.read_table(out / TABLE))) == 11


def test_a_second_source_keeps_the_error_rows_of_broken_links(tmp_path: Path, cnn_checkpoint: Path) -> None:
    """A broken link or a link loop is still on disk (as a link): scanning another source into the same
    folder keeps its error row, as it keeps the rows of the first source's readable files."""
    first, second = tmp_path / "a", tmp_path / "b"
    make_corpus(first, 1, bad=False)
    make_corpus(second, 1, bad=False, seed=1)
    (first / "gone.png").symlink_to(tmp_path / "deleted.png")
    (first / "loop1.png").symlink_to(first / "loop2.png")
    (first / "loop2.png").symlink_to(first / "loop1.png")
    out = tmp_path / "out"
    settings = ScanSettings(explain=False)
    assert scan(first, out, model=cnn_checkpoint, settings=settings, workers=0).errors == 3
    s = scan(second, out, model=cnn_checkpoint, settings=settings, workers=0)
    rows = rows_by_path(pq.read_table(out / TABLE))
    assert s.rows == 5 and all(str(first / n) in rows for n in ("gone.png", "loop1.png", "loop2.png"))


def test_the_summary_counts_this_source_and_the_whole_table_apart(
    corpus: Path, tmp_path: Path, cnn_checkpoint: Path
) -> None:
    """A second source scanned into the same folder: errors, fakes and heatmaps count its own files; the
    ``table_*`` counts (and ``rows``) are the whole table's."""
    out = tmp_path / "out"
    everything = ScanSettings(heatmaps_above=0.0)
    first = scan(corpus, out, model=cnn_checkpoint, workers=0, settings=everything)
    assert (first.errors, first.flagged) == (first.table_errors, first.table_flagged) == (3, 9)
    other = tmp_path / "other"
    make_corpus(other, 2, bad=False, seed=5)
    s = scan(other, out, model=cnn_checkpoint, workers=0, settings=everything)
    rows = pq.read_table(out / TABLE).to_pylist()
    mine = [r for r in rows if r["path"].startswith(str(other))]
    assert (s.found, s.errors, s.flagged, s.rows) == (2, 0, 2, 14)
    assert s.fake == sum(r["verdict"] == "fake" for r in mine)
    assert (s.table_errors, s.table_flagged) == (3, 11)
    assert s.table_fake == sum(r["verdict"] == "fake" and not r["blank"] for r in rows)


def test_a_blank_image_is_counted_apart_from_the_fakes(tmp_path: Path, cnn_checkpoint: Path) -> None:
    """A uniform image has nothing to judge: it is counted as blank, never among the fake verdicts."""
    from PIL import Image

    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (64, 64), (128, 128, 128)).save(src / "grey.png")
    s = scan(src, tmp_path / "out", model=cnn_checkpoint, workers=0)
    [row] = pq.read_table(tmp_path / "out" / TABLE).to_pylist()
    assert row["blank"] and s.blank == 1 and s.fake == 0


def test_other_settings_refuse_to_resume(corpus: Path, tmp_path: Path, cnn_checkpoint: Path) -> None:
    out = tmp_path / "out"
    scan(corpus, out, model=cnn_checkpoint, settings=ScanSettings(explain=False), workers=0)
    with pytest.raises(ConfigError, match=r"other settings.*explain"):
        scan(corpus, out, model=cnn_checkpoint, workers=0)
    s = scan(corpus, out, model=cnn_checkpoint, workers=0, overwrite=True)
    assert s.skipped == 0 and s.rows == 12


def test_a_second_scan_into_a_folder_being_written_is_refused(
    corpus: Path, tmp_path: Path, cnn_checkpoint: Path
) -> None:
    """Two scans into one folder would each compact away the other's uncommitted overlays."""
    out = tmp_path / "out"
    busy = pytest.raises(ConfigError, match="being written by another fakelens scan")
    with FolderLock(out / LOCK, "held"), busy:  # another scan is writing out/
        scan(corpus, out, model=cnn_checkpoint, settings=ScanSettings(explain=False), workers=0)
    assert not (out / TABLE).exists()
    assert scan(corpus, out, model=cnn_checkpoint, settings=ScanSettings(explain=False), workers=0).rows == 12


_KILL_SCRIPT = """
import sys
from fakelens.scan import ScanSettings, scan
scan(sys.argv[1], sys.argv[2], model=sys.argv[3], settings=ScanSettings(batch_size=1, heatmaps_above=0.0),
     workers=0, commit_every=1)
"""


def test_killed_scan_resumes(tmp_path: Path, cnn_checkpoint: Path) -> None:
    """SIGKILL a scan in a subprocess once some parts are committed; the resumed table equals a whole run."""
    src = tmp_path / "src"
    make_corpus(src, n=60, bad=False)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(src), str(out), str(cnn_checkpoint)])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list((out / PARTS).glob("part-*.parquet"))) >= 3 if (out / PARTS).is_dir() else False:
                break
            time.sleep(0.01)
        proc.kill()
    finally:
        proc.wait()
    if (out / TABLE).exists():
        pytest.skip("the scan finished before it could be killed")
    committed = pq.read_table(out / PARTS).num_rows
    assert 3 <= committed < 60
    settings = ScanSettings(batch_size=4, heatmaps_above=0.0)
    resumed = scan(src, out, model=cnn_checkpoint, settings=settings, workers=0)
    assert resumed.skipped == committed and resumed.scanned == 60 - committed
    whole = scan(src, tmp_path / "whole", model=cnn_checkpoint, settings=settings, workers=0)
    assert_same_rows(pq.read_table(out / TABLE), pq.read_table(whole.table))
    shutil.rmtree(out)


@pytest.mark.parametrize("explain", [True, False])
def test_read_flags_match_analyze(tmp_path: Path, explain: bool) -> None:
    """The warnings analyze prints beside a verdict are columns too, in the explained and in the detect-only
    scan: a 16-px image is small, the members' disagreement is a weak verdict, a large image read as too few
    tiles is partial, a half-transparent PNG is 50 % transparent, a GIF names its frames and a grey square is
    blank."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in {"thumb.png": (16, 16), "photo.png": (96, 96), "wide.png": (64, 400)}.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / name)
    rgba = rng.integers(0, 255, (64, 64, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[:, :32, 3] = 0
    Image.fromarray(rgba, "RGBA").save(folder / "alpha.png")
    frames = [Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(3)]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:])
    Image.new("RGB", (64, 64), (128, 128, 128)).save(folder / "grey.png")
    native = create_model("tiny-cnn", seed=1)
    native.input_spec = replace(native.input_spec, mode="native")  # 400 px wide: 7 tiles, 2 read
    ens = Ensemble([native, create_model("tiny-vit", seed=2)], weights=[3, 1])
    settings = ScanSettings(explain=explain, heatmaps_above=1.0, max_tiles=2)
    s = scan(folder, tmp_path / "out", model=ens, settings=settings, workers=0)
    rows = {Path(r["path"]).name: r for r in pq.read_table(s.table).to_pylist()}
    for name, r in rows.items():
        (a,) = analyze_images(ens, [load_image(folder / name)], robustness=False, max_tiles=2)
        assert (r["small"], r["split"], r["partial"], r["frames"], r["blank"]) == (
            a.small,
            a.split,
            a.partial,
            a.frames,
            a.blank,
        )
        assert (r["coverage"], r["transparent"]) == (pytest.approx(a.coverage), pytest.approx(a.transparent))
    assert rows["thumb.png"]["small"] and not rows["photo.png"]["small"]
    assert rows["wide.png"]["partial"] and rows["wide.png"]["coverage"] == pytest.approx(2 * 64 / 400)
    assert rows["alpha.png"]["transparent"] == 0.5 and rows["anim.gif"]["frames"] == 3
    assert rows["photo.png"]["transparent"] == 0.0 and rows["photo.png"]["frames"] == 1
    assert rows["grey.png"]["blank"] and not rows["photo.png"]["blank"]


def test_tables_from_before_a_column_was_added_still_merge() -> None:
    import pyarrow as pa

    from fakelens.scan.schema import conform, table_schema

    schema = table_schema(["score_tiny_cnn"])
    old = pa.table({"path": ["a.png"], "sha256": ["00"], "verdict": ["fake"]})
    new = conform(old, schema)
    assert new.schema == schema and new.column("split").to_pylist() == [None]
    assert new.column("verdict").to_pylist() == ["fake"]


def test_a_face_window_without_a_usable_score_leaves_the_face_columns_empty(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A NaN on one face's window (ModelError) must not fail the whole batch of rows."""
    import fakelens.scan.process as process
    from fakelens.errors import ModelError

    def broken(*args: object, **kwargs: object) -> list[object]:
        raise ModelError("model tiny-cnn gave no usable score for image 1 (NaN or infinity)")

    monkeypatch.setattr(process, "detect_faces", lambda pixels: ["a face"])
    monkeypatch.setattr(process, "face_verdicts", broken)
    proc = ScanProcessor(create_model("tiny-cnn"), ScanSettings(explain=False))
    assert proc._faces(Image.new("RGB", (64, 64))) == {"faces": 1, "face_score": None, "face_verdict": None}


@pytest.mark.parametrize("explain", [True, False])
def test_a_blank_image_gets_its_score_but_no_verdict_nor_heatmaps(
    tmp_path: Path, cnn_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, explain: bool
) -> None:
    """As analyze says 'no verdict' for a uniform image, its row has a null verdict (the summary left it out
    of the fakes while the table said 'fake'); it is not explained at all: no heatmap, no badge, no file,
    even when every image is to get its heatmaps."""
    import fakelens.scan.process as process

    src = tmp_path / "src"
    make_corpus(src, 2, bad=False)
    Image.new("RGB", (64, 64), (128, 128, 128)).save(src / "grey.png")
    explained: list[int] = []
    real = process.analyze_images

    def spy(model: Any, images: Any, *a: Any, **k: Any) -> Any:
        explained.append(len(images))
        return real(model, images, *a, **k)

    monkeypatch.setattr(process, "analyze_images", spy)
    settings = ScanSettings(explain=explain, heatmaps_above=0.0)
    s = scan(src, tmp_path / "out", model=cnn_checkpoint, workers=0, settings=settings)
    rows = {Path(r["path"]).name: r for r in pq.read_table(s.table).to_pylist()}
    grey = rows.pop("grey.png")
    assert grey["blank"] and grey["verdict"] is None and 0.0 <= grey["score"] <= 1.0
    assert grey["heatmap_files"] is None and grey["heatmap_method"] is None and grey["badge_grade"] is None
    assert all(r["verdict"] in ("fake", "real") and not r["blank"] for r in rows.values())
    assert explained == ([2] if explain else [])  # the two photos; the grey square never
    assert s.blank == 1 and s.flagged == (2 if explain else 0)
    assert not [f for f in (tmp_path / "out").rglob("*grey*")]
