"""`fakelens analyze` via CliRunner: table, JSON, report, --out; one-line errors, nothing half-written."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fakelens.cli.main import app
from fakelens.models import create_model
from fakelens.models.checkpoint import save_checkpoint

runner = CliRunner()
TINY = ["--model", "tiny-cnn,tiny-vit"]


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    a = tmp_path / "in" / "wide.png"
    a.parent.mkdir()
    Image.fromarray(rng.integers(0, 255, (37, 91, 3), dtype=np.uint8)).save(a)
    b = tmp_path / "in" / "tall.jpg"
    Image.fromarray(rng.integers(0, 255, (80, 33, 3), dtype=np.uint8)).save(b)
    return [a, b]


def test_report_json_and_out(tmp_path: Path, photos: list[Path]) -> None:
    report = tmp_path / "reports" / "case.html"  # a missing parent folder is created
    out = tmp_path / "out"
    res = runner.invoke(
        app,
        [
            "analyze",
            *map(str, photos),
            *TINY,
            "-m",
            "gradcam,rollout",
            "--report",
            str(report),
            "--out",
            str(out),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["model"] == ["tiny-cnn", "tiny-vit"] and payload["methods"] == ["gradcam", "rollout"]
    assert len(payload["images"]) == 2
    for rec, path in zip(payload["images"], photos, strict=True):
        assert rec["image"]["file"] == str(path) and len(rec["image"]["sha256"]) == 64
        assert rec["verdict"] in ("fake", "real") and 0 <= rec["score"] <= 1
        assert [m["name"] for m in rec["models"]] == ["tiny-cnn", "tiny-vit"]
        vit = rec["models"][1]
        assert set(vit["heatmaps"]) == {"gradcam", "rollout"}
        assert vit["heatmaps"]["gradcam"]["robustness"]["grade"] in ("ok", "check")
        assert "rollout" in rec["models"][0]["errors"]  # a CNN has no attention
        assert rec["faces"] is None  # noise: no face
        for key, name in rec["files"].items():
            assert (out / name).is_file(), key
            model, method = key.split("/")
            with Image.open(out / name) as png:  # shared on its own, the file keeps its legend
                assert png.text["Title"] == f"{method} heatmap of {model}"
                assert "this map's own peak" in png.text["Description"]
    assert json.loads((out / "analysis.json").read_text())["images"][0]["files"]
    text = report.read_text()
    assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:|//)", text) and "<script" not in text
    for name in ("tiny-cnn", "tiny-vit", "gradcam", "rollout", "wide.png", "tall.jpg"):
        assert name in text
    assert not list(report.parent.glob(".*"))  # no temp file left behind


def test_table_without_robustness(tmp_path: Path, photos: list[Path]) -> None:
    res = runner.invoke(
        app,
        [
            "analyze",
            str(photos[0]),
            "--model",
            "tiny-cnn",
            "-m",
            "gradcam,rollout",
            "--no-robustness",
            "--no-faces",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "wide.png" in res.output and "tiny-cnn" in res.output and "ensemble" in res.output
    assert "small" not in res.output  # 37 × 91 enlarged to fit 64 × 64: 82 % as many pixels
    # named by architecture: a random real/fake head, said before the table and on its column
    text = " ".join(res.output.split())
    assert "warning: tiny-cnn is an architecture without trained real/fake weights" in text
    assert "tiny-cnn (untrained)" in text and "untrained = a random real/fake head" in text
    assert "no rollout map from tiny-cnn: cannot capture the attention" in text  # said, not only in JSON


def test_each_face_is_judged_on_its_own(tmp_path: Path) -> None:
    import skimage.data

    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(photo)
    args = ["analyze", str(photo), *TINY, "--no-robustness"]
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    [rec] = json.loads(res.stdout)["images"]
    [v] = rec["faces"]["verdicts"]  # one face, judged on a 128-px window (2 × its side) around it
    x0, y0, x1, y1 = rec["faces"]["faces"][0]["box"]
    left, top, right, bottom = v["window"]
    assert left <= x0 and top <= y0 and right >= x1 and bottom >= y1 and right - left == bottom - top
    assert v["verdict"] == ("fake" if v["score"] >= 0.5 else "real")
    assert set(v["models"]) == {"tiny-cnn", "tiny-vit"}
    res = runner.invoke(app, [*args, "--report", str(tmp_path / "r.html")])
    assert "each face judged on its own" in res.output and "1: " in res.output
    report = (tmp_path / "r.html").read_text()
    assert "Each face judged on its own" in report and "tiny-vit " in report  # the face's window and maps
    assert report.count("<figcaption>face 1</figcaption>") == 1
    res = runner.invoke(app, [*args, "--no-faces", "--json"])
    assert "faces" not in json.loads(res.stdout)["images"][0]


def test_a_fake_face_in_a_real_image_is_marked_in_the_main_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """An edit confined to a face weighs little in the image's score: the face's own verdict must show beside
    the image's, not only in the face table below it."""
    from fakelens.analysis import analyze_images
    from fakelens.cli import analyze as analyze_cli
    from fakelens.face_verdicts import FaceVerdict
    from fakelens.models import Ensemble

    [a] = analyze_images(Ensemble.of([create_model("tiny-cnn")]), [Image.new("RGB", (64, 64))], [])
    face = FaceVerdict((0, 0, 9, 9), (0, 0, 64, 64), 0.93, "fake", {"tiny-cnn": (0.93, "fake")})
    paths = [Path("real.png"), Path("fake.png")]
    with analyze_cli.results.capture() as cap:
        both = [replace(a, verdict="real"), replace(a, verdict="fake")]
        analyze_cli._print_table(paths, both, [[face], [face]])
    rows = {line.split()[1]: line for line in cap.get().splitlines() if ".png" in line}
    assert "face 1 fake" in rows["real.png"] and "face 1 fake" not in rows["fake.png"]
    assert "judged on its own, reads fake" in cap.get()


def test_an_image_much_smaller_than_the_input_is_marked_small(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    det = create_model("tiny-cnn")
    det.untrained = False  # as if trained: the point here is the small mark
    det.input_spec = replace(det.input_spec, mode="native")  # pads a small image, as the shipped members do
    ckpt = save_checkpoint(det, tmp_path / "native")
    thumb, photo = tmp_path / "thumb.png", tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(thumb)
    Image.fromarray(rng.integers(0, 255, (64, 70, 3), dtype=np.uint8)).save(photo)
    monkeypatch.chdir(tmp_path)  # the table gives each path as given: short ones, one row each
    args = ["analyze", thumb.name, photo.name, "--model", str(ckpt), "--no-robustness", "--no-faces"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    rows = {line.split()[1]: line for line in res.output.splitlines() if ".png" in line}
    assert "small" in rows["thumb.png"] and "small" not in rows["photo.png"]
    assert "small = under half as many pixels as a model's input" in " ".join(res.output.split())
    res = runner.invoke(app, [*args, "--json"])
    thumb_rec, photo_rec = json.loads(res.stdout)["images"]
    assert thumb_rec["models"][0]["pixel_fraction"] == pytest.approx(20 * 30 / 64**2)
    assert photo_rec["models"][0]["pixel_fraction"] == 1.0
    # the table's warnings are in the JSON too; a checkpoint is trained, so no untrained warning
    assert (thumb_rec["small"], photo_rec["small"]) == (True, False) and thumb_rec["split"] is False
    assert thumb_rec["models"][0]["untrained"] is False and "warning" not in res.output


def test_method_options_reach_heatmaps_and_badges(
    tmp_path: Path, photos: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import fakelens.trust.sweep as sweep

    seen: list[object] = []
    real = sweep.explain

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(kwargs.get("options"))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sweep, "explain", spy)
    argv = [str(photos[0]), "--model", "tiny-cnn", "-m", "rise", "--set", "rise.n_masks=6", "--no-faces"]
    res = runner.invoke(app, ["analyze", *argv, "--json"])
    assert res.exit_code == 0, res.output
    heatmap = json.loads(res.stdout)["images"][0]["models"][0]["heatmaps"]["rise"]
    assert heatmap["meta"]["masks"] == 6
    assert heatmap["robustness"]["grade"] in {"ok", "check"}
    assert seen and all(o == {"rise": {"n_masks": 6}} for o in seen)  # the badge's views used them too


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}", "--model", "tiny-cnn"], "no such file or folder"),
        (["{corrupt}", "--model", "tiny-cnn"], "truncated or corrupt JPEG"),
        (["{ok}", "--model", "tiny-cnn", "-m", "gradcan"], "method 'gradcan'; did you mean gradcam"),
        (["{ok}", "--model", "tiny-cnn", "-m", "rise", "--set", "rise.nmasks=2"], "rise has no option"),
        (["{ok}", "--model", "{badmodel}"], "no config.json next to it"),
        (["{ok}", "--model", "nope"], "unknown model 'nope'"),
        (["{ok}", "--model", "tiny-cnn", "--report", "{folder}"], "must be a file"),
        (["--model", "tiny-cnn"], "no images given"),
        (["{ok}", "--model", "tiny-cnn", "--cmap", "plasma"], "unknown colormap 'plasma'"),
    ],
)
def test_user_errors_are_one_line_and_write_nothing(
    tmp_path: Path, photos: list[Path], args: list[str], message: str
) -> None:
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0" + b"x" * 64)
    bad_model = tmp_path / "model.safetensors"
    bad_model.write_bytes(b"not weights")
    subs = {
        "{missing}": str(tmp_path / "missing.png"),
        "{corrupt}": str(corrupt),
        "{ok}": str(photos[0]),
        "{badmodel}": str(bad_model),
        "{folder}": str(tmp_path / "in"),
    }
    argv = [subs.get(a, a) for a in args]
    report = tmp_path / "report.html"
    if "--report" not in argv:
        argv += ["--report", str(report)]
    res = runner.invoke(app, ["analyze", *argv])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert len(res.output.strip().splitlines()) <= 3  # one message (rich may wrap it)
    assert not report.exists()


@pytest.mark.parametrize("n_bad", [2, 12])
def test_every_unreadable_input_is_named_and_nothing_is_written(
    tmp_path: Path, photos: list[Path], n_bad: int
) -> None:
    """A folder with several bad files: one error names each (up to ten, then how many more), so one run
    shows everything to fix, rather than stopping at the first."""
    folder = photos[0].parent
    bad = [folder / f"bad{i:02d}.png" for i in range(n_bad)]
    for b in bad:
        b.write_text("not an image")
    report = tmp_path / "report.html"
    res = runner.invoke(app, ["analyze", str(folder), "--model", "tiny-cnn", "--report", str(report)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    head = f"error: {n_bad} of {n_bad + 2} images cannot be read (nothing was written; --skip-unreadable"
    assert head in res.output
    named = [b for b in bad if f"{b}: " in res.output]
    assert named == bad[:10]
    assert ("… and 2 more" in res.output) == (n_bad == 12)
    assert not report.exists()


def test_plain_classifier_is_refused(monkeypatch: pytest.MonkeyPatch, photos: list[Path]) -> None:
    from fakelens.cli import analyze as analyze_cli
    from fakelens.models import create_model

    det = create_model("tiny-cnn")
    monkeypatch.setattr(det, "labels", ("cat", "dog"))
    monkeypatch.setattr(det, "fake_label", None)  # a classifier: no fake class
    monkeypatch.setattr(analyze_cli, "load_detector", lambda spec: det)
    res = runner.invoke(app, ["analyze", str(photos[0]), "--model", "x"])
    assert res.exit_code == 2 and "not a real/fake detector" in res.output


def test_demo_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fakelens.cli import analyze as analyze_cli

    bundled = analyze_cli.demo_images()
    monkeypatch.setattr(analyze_cli, "demo_images", lambda: bundled[:3])  # a face, its fake, a cat
    report = tmp_path / "demo.html"
    res = runner.invoke(
        app,
        ["analyze", "--demo", "--model", "tiny-cnn", "--no-robustness", "--report", str(report), "--json"],
    )
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    names = [Path(r["image"]["file"]).name for r in payload["images"]]
    assert names == [p.name for p in bundled[:3]] and "astronaut.jpg" in names
    faces = {Path(r["image"]["file"]).name: r["faces"] for r in payload["images"]}
    if faces["astronaut.jpg"] is not None:  # a face detector is installed
        regions = payload["images"][names.index("astronaut.jpg")]["regions"]["tiny-cnn"]["gradcam"]
        assert sum(regions["mass"].values()) == pytest.approx(1.0, abs=1e-3)
        assert "Heatmap mass by facial region" in report.read_text()


def test_names_duplicates_and_blank_images_in_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs of one architecture are told apart (tiny-cnn, tiny-cnn-2: it had been refused); a file
    named with brackets keeps them (Rich markup had eaten '[final]'); a blank image shows its score but no
    verdict."""
    from fakelens.models import create_model, save_checkpoint

    for seed in (1, 2):
        save_checkpoint(create_model("tiny-cnn", seed=seed), tmp_path / f"run{seed}")
    Image.new("RGB", (64, 64), (128, 128, 128)).save(tmp_path / "IMG[final].png")
    monkeypatch.chdir(tmp_path)  # the path as given, short enough for one line of the table
    res = runner.invoke(
        app, ["analyze", "IMG[final].png", "--model", "run1,run2", "--no-robustness", "--no-faces"]
    )
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "IMG[final].png" in text and "tiny-cnn-2" in text and "no verdict" in text


def test_the_colormap_reaches_the_overlays_and_the_report(tmp_path: Path, photos: list[Path]) -> None:
    """--cmap viridis for a colour-blind reader: the overlay PNGs are drawn with it and say so, and the
    report's legend names its colours."""
    report, out = tmp_path / "r.html", tmp_path / "out"
    argv = [str(photos[0]), "--model", "tiny-cnn", "-m", "gradcam", "--no-robustness", "--no-faces"]
    res = runner.invoke(
        app, ["analyze", *argv, "--cmap", "viridis", "--report", str(report), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    png = Image.open(out / "wide.tiny-cnn.gradcam.png")
    assert "dark purple = none, yellow" in png.info["Description"]
    text = report.read_text(encoding="utf-8")
    assert "colour bar: dark purple = none, yellow = the map's peak" in text and "dark blue" not in text
    rgb = np.asarray(png.convert("RGB"), dtype=np.int32)
    jet = tmp_path / "jet"
    assert runner.invoke(app, ["analyze", *argv, "--out", str(jet)]).exit_code == 0
    assert np.abs(rgb - np.asarray(Image.open(jet / "wide.tiny-cnn.gradcam.png").convert("RGB"))).max() > 20


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) by relative path, with its bytes."""
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file()}


def test_an_interrupted_or_failed_analyze_writes_nothing(
    tmp_path: Path, photos: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C on the second image, a full disk on an overlay, a rename that fails half-way through the
    commit: --out keeps the previous run's files as they were (no overlay of the new run, no hidden folder),
    the report is not written, and the error says that nothing was written."""
    import errno
    import importlib

    import fakelens.analysis as analysis
    from fakelens.cli import common

    overlay = importlib.import_module("fakelens.viz.overlay")  # the package exports a function of that name

    out, report = tmp_path / "out", tmp_path / "r.html"
    args = ["analyze", *map(str, photos), "--model", "tiny-cnn", "--no-faces", "--no-robustness"]
    args += ["--batch-size", "1", "--out", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    before = _files(out)
    again = [*args, "--overwrite", "--cmap", "viridis", "--report", str(report)]

    real_analyze, calls = analysis.analyze_images, []

    def interrupted(*a: object, **k: object) -> object:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_analyze(*a, **k)  # type: ignore[arg-type]

    with monkeypatch.context() as m:
        m.setattr(analysis, "analyze_images", interrupted)
        res = runner.invoke(app, again)
    assert res.exit_code == 130 and "interrupted: nothing was written to --out" in res.output
    assert _files(out) == before and not report.exists()

    real_save, saved = overlay.save_png, []

    def full(array: object, path: Path, **k: object) -> Path:
        saved.append(path)
        if len(saved) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(array, path, **k)  # type: ignore[arg-type]

    with monkeypatch.context() as m:
        m.setattr(overlay, "save_png", full)
        res = runner.invoke(app, again)
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "No space left on device while writing tall.tiny-cnn.gradcam.png: nothing was written" in " ".join(
        res.output.split()
    )
    assert _files(out) == before and not report.exists() and not list(tmp_path.glob(".r.html*"))

    real_replace, moved = common.os.replace, []

    def refused(src: str, dst: str) -> None:
        moved.append(dst)
        if len(moved) == 4:  # two old files set aside, one new file moved in: the next rename fails
            raise OSError(errno.EIO, "Input/output error", str(dst))
        real_replace(src, dst)

    with monkeypatch.context() as m:
        m.setattr(common.os, "replace", refused)
        res = runner.invoke(app, again)
    assert res.exit_code == 2 and "nothing was written to --out" in res.output
    assert _files(out) == before and not report.exists()

    fresh = tmp_path / "fresh"
    with monkeypatch.context() as m:
        calls.clear()
        m.setattr(analysis, "analyze_images", interrupted)
        res = runner.invoke(app, [*args[:-1], str(fresh)])
    assert res.exit_code == 130 and not fresh.exists()  # not even an empty folder


def test_a_second_run_into_one_out_is_refused_unless_overwrite(tmp_path: Path) -> None:
    """An --out holding a previous run's results is refused (its files would be overwritten, others left
    unrecorded); --overwrite removes what that run recorded, and only that, then writes the new run."""
    rng = np.random.default_rng(0)
    coll = tmp_path / "coll"
    for rel in ("x/a.jpg", "y/a.jpg", "x/b.jpg", "x/b.png"):
        (coll / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(coll / rel)
    out = tmp_path / "o"
    base = ["--model", "tiny-cnn", "--no-faces", "--no-robustness", "--out", str(out)]
    assert runner.invoke(app, ["analyze", str(coll), *base]).exit_code == 0
    first = sorted(f.name for f in out.iterdir())
    assert first == sorted(
        ["analysis.json", *(f"{s}.tiny-cnn.gradcam.png" for s in ("a", "a-2", "b", "b-2"))]
    )
    (out / "notes.txt").write_text("mine")
    before = _files(out)
    res = runner.invoke(app, ["analyze", str(coll / "y"), *base])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) <= 2
    assert "already holds the results of a previous run (analysis.json)" in res.output
    assert "--overwrite" in res.output and _files(out) == before
    res = runner.invoke(app, ["analyze", str(coll / "y"), *base, "--overwrite"])
    assert res.exit_code == 0, res.output
    assert sorted(f.name for f in out.iterdir()) == ["a.tiny-cnn.gradcam.png", "analysis.json", "notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"
    [rec] = json.loads((out / "analysis.json").read_text())["images"]
    assert rec["image"]["file"] == str(coll / "y" / "a.jpg")
    res = runner.invoke(app, ["analyze", str(coll / "y"), "--model", "tiny-cnn", "--overwrite"])
    assert res.exit_code == 2 and "give --out" in res.output


def test_skip_unreadable_analyses_the_others_and_records_them(tmp_path: Path, photos: list[Path]) -> None:
    folder = photos[0].parent
    bad = folder / "bad.png"
    bad.write_text("not an image")
    out = tmp_path / "out"
    argv = ["analyze", str(folder), "--model", "tiny-cnn", "--no-faces", "--no-robustness", "--out", str(out)]
    res = runner.invoke(app, [*argv, "--skip-unreadable", "--json"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.stderr.split())
    assert "warning: 1 of 3 images cannot be read and are left out (--skip-unreadable):" in text
    assert f"{bad}: not an image" in text
    payload = json.loads(res.stdout)
    assert [Path(r["image"]["file"]).name for r in payload["images"]] == ["tall.jpg", "wide.png"]
    assert payload["unreadable"] == [{"file": str(bad), "reason": payload["unreadable"][0]["reason"]}]
    assert payload["unreadable"][0]["reason"].startswith("not an image")
    assert json.loads((out / "analysis.json").read_text())["unreadable"] == payload["unreadable"]
    for p in photos:
        p.write_text("not an image either")
    res = runner.invoke(app, [*argv, "--skip-unreadable", "--overwrite"])
    assert res.exit_code == 2 and "3 of 3 images cannot be read (nothing was written)" in res.output


def test_analyze_goes_batch_by_batch_with_the_same_results(
    tmp_path: Path, photos: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One batch at a time (so that each batch's maps can go once written): the same results as the
    analysis of every image at once, which batched them the same way."""
    import fakelens.analysis as analysis
    from fakelens.cli.analyze import _load_model
    from fakelens.io import load_image

    third = photos[0].parent / "third.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (50, 60, 3), dtype=np.uint8)).save(third)
    paths = [*photos, third]
    real, sizes = analysis.analyze_images, []

    def spy(det: object, imgs: list[object], *a: object, **k: object) -> object:
        sizes.append(len(imgs))
        return real(det, imgs, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(analysis, "analyze_images", spy)
    argv = ["analyze", *map(str, paths), *TINY, "--no-faces", "--json", "--batch-size", "2"]
    res = runner.invoke(app, [*argv, "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert sizes == [2, 1]
    at_once = real(_load_model(TINY[1].split(",")), [load_image(p) for p in paths], ["gradcam"], batch_size=2)
    for rec, a in zip(json.loads(res.stdout)["images"], at_once, strict=True):
        expected = json.loads(json.dumps(a.to_dict()))
        assert {k: v for k, v in rec.items() if k in expected and k != "image"} == {
            k: v for k, v in expected.items() if k != "image"
        }


def test_a_memory_estimate_beyond_the_machine_warns(
    tmp_path: Path, photos: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fakelens.cli import analyze as analyze_cli

    assert analyze_cli.available_memory() is not None  # /proc/meminfo or sysconf on this machine
    monkeypatch.setattr(analyze_cli, "available_memory", lambda: 10**8)
    res = runner.invoke(
        app, ["analyze", str(photos[0]), "--model", "tiny-cnn", "--no-faces", "--no-robustness"]
    )
    assert res.exit_code == 0, res.output
    text = " ".join(res.stderr.split())
    assert "needs about 0.5 GB of memory and 0.1 GB is available" in text and "fakelens scan" in text
    # 100 phone photos of 12 MP with two models: images and the working memory of one, not every map
    twelve = [12_000_000] * 100
    assert analyze_cli.memory_estimate(twelve, 2, keep_maps=False, batch_size=8) < 7e9
    assert analyze_cli.memory_estimate(twelve, 2, keep_maps=True, batch_size=8) > 15e9
