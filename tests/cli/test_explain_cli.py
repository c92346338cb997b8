"""The CLI through typer's CliRunner: outputs, JSON, and one-line errors (never a traceback)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from fakelens.cli.main import app

runner = CliRunner()


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    a = tmp_path / "wide.png"
    Image.fromarray(rng.integers(0, 255, (37, 91, 3), dtype=np.uint8)).save(a)
    b = tmp_path / "sub" / "tall.jpg"
    b.parent.mkdir()
    Image.fromarray(rng.integers(0, 255, (80, 33, 3), dtype=np.uint8)).save(b)
    return [a, b]


def test_explain_writes_overlays_panels_and_summary(tmp_path: Path, photos: list[Path]) -> None:
    out = tmp_path / "out"
    res = runner.invoke(
        app,
        [
            "explain",
            str(tmp_path),
            "--model",
            "tiny-cnn",
            "-m",
            "gradcam,eigencam",
            "--out",
            str(out),
            "--json",
            "--save-raw",
        ],
    )
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert len(payload["images"]) == 2
    for rec in payload["images"]:
        assert rec["verdict"] in {"real", "fake"} and 0 <= rec["fake_probability"] <= 1
        assert set(rec["methods"]) == {"gradcam", "eigencam"}
        stem = Path(rec["image"]).stem
        for m in ("gradcam", "eigencam"):
            ov = Image.open(out / f"{stem}.{m}.png")
            assert ov.size == (rec["width"], rec["height"])  # overlays on the original pixel grid
            raw = np.load(out / f"{stem}.{m}.npy")
            assert raw.shape == (rec["height"], rec["width"])
        assert (out / f"{stem}.panel.png").exists()
    assert json.loads((out / "summary.json").read_text()) == payload


def test_models_and_methods_list_json() -> None:
    res = runner.invoke(app, ["models", "--json"])
    assert res.exit_code == 0
    trained = {r["name"]: r["trained"] for r in json.loads(res.stdout)}  # for scripts, not only in prose
    assert trained["default"] and not trained["tiny-cnn"] and not trained["tiny-vit"]
    res = runner.invoke(app, ["methods", "--json"])
    assert {"gradcam", "eigencam"} <= {r["name"] for r in json.loads(res.stdout)}


def test_method_options_reach_the_method(tmp_path: Path, photos: list[Path]) -> None:
    """--set changes what the method computes: RISE with 2 masks vs 40 masks, and the budget is reported."""
    maps = {}
    for n in (2, 40):
        out = tmp_path / f"o{n}"
        args = ["explain", str(photos[0]), "--model", "tiny-cnn", "-m", "rise", "--out", str(out), "--json"]
        res = runner.invoke(app, [*args, "--save-raw", "--set", f"rise.n_masks={n}", "--set", "rise.seed=3"])
        assert res.exit_code == 0, res.output
        payload = json.loads(res.stdout)
        assert payload["options"] == {"rise": {"n_masks": n, "seed": 3}}
        meta = payload["images"][0]["methods"]["rise"]["meta"]
        assert (meta["masks"], meta["seed"]) == (n, 3)
        maps[n] = np.load(out / "wide.rise.npy")
    assert not np.allclose(maps[2], maps[40])


def test_methods_detail_lists_options() -> None:
    res = runner.invoke(app, ["methods", "rise", "--json"])
    assert res.exit_code == 0, res.output
    detail = json.loads(res.stdout)
    assert {"option": "n_masks", "default": 1000, "type": "int"} in detail["options"]
    # a named Literal shows its values (it had said "Fill", "AmpPolicy | None")
    assert {"option": "fill", "default": "mean", "type": "'mean' | 'black' | 'blur'"} in detail["options"]
    amp = {"option": "amp", "default": "auto", "type": "'auto' | 'bf16' | 'fp16' | None"}
    assert amp in detail["options"]
    assert "Petsiuk" in detail["description"]
    res = runner.invoke(app, ["methods", "gradcam"])
    assert res.exit_code == 0 and "no options" in res.output
    res = runner.invoke(app, ["methods", "gradcan"])
    assert res.exit_code == 2 and "gradcan" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "tiny-cnn", "-m", "rise", "--set", "rise.n_mask=3"], "rise has no option 'n_mask'"),
        (["--model", "tiny-cnn", "-m", "rise", "--set", "rise.n_masks=0"], "bad option for rise"),
        (["--model", "tiny-cnn", "-m", "gradcam", "--set", "rise.n_masks=3"], "not among the methods"),
        (["--model", "tiny-cnn", "-m", "gradcam", "--set", "gradcam.k=3"], "gradient CAMs have no options"),
        (["--model", "tiny-cnn", "-m", "rise", "--set", "n_masks"], "is not METHOD.OPTION=VALUE"),
        (["--model", "tiny-cnn", "-m", "gradcan"], "method 'gradcan'; did you mean gradcam"),
        (["--model", "nope"], "unknown model 'nope'"),
        (["--model", "tiny-cnn", "--cmap", "rainbow"], "unknown colormap"),
        (["--model", "tiny-cnn", "--target", "banana"], "unknown target 'banana'"),
        (["--model", "tiny-cnn", "--layer", "net.nope"], "no layer 'net.nope'"),
    ],
)
def test_user_errors_are_one_line(tmp_path: Path, photos: list[Path], args: list[str], message: str) -> None:
    res = runner.invoke(app, ["explain", str(photos[0]), "--out", str(tmp_path / "o"), *args])
    assert res.exit_code == 2
    assert message in res.output
    assert "Traceback" not in res.output


def test_bad_images_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "notes.jpg"
    bad.write_bytes(b"this is not an image")
    res = runner.invoke(app, ["explain", str(bad), "--model", "tiny-cnn", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "notes.jpg" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["explain", str(tmp_path / "missing.png"), "--model", "tiny-cnn"])
    assert res.exit_code == 2 and "missing.png" in res.output
    res = runner.invoke(app, ["explain", "--model", "tiny-cnn"])
    assert res.exit_code == 2 and "no images" in res.output


def test_help_explains() -> None:
    res = runner.invoke(app, ["explain", "--help"])
    assert res.exit_code == 0 and "--method" in res.output and "fake" in res.output


def test_explain_shows_an_ensembles_calibrated_verdicts(tmp_path: Path, photos: list[Path]) -> None:
    """Each member's p(fake) as analyze shows it (its calibration, its own threshold) and the ensemble's
    verdict per image — not the members' raw probabilities judged at 0.5."""
    from fakelens.models import Calibration, Ensemble, create_model, save_checkpoint

    cnn, vit = create_model("tiny-cnn", seed=1), create_model("tiny-vit", seed=2)
    cal = [Calibration(0.9, 2.0), None]
    ens = Ensemble([cnn, vit], rule="logit_mean", threshold=0.6, calibrations=cal)
    save_checkpoint(ens, tmp_path / "ens")
    args = ["explain", str(photos[0]), "--model", str(tmp_path / "ens"), "-m", "gradcam", "--json"]
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    analysed = json.loads(
        runner.invoke(
            app,
            [
                "analyze",
                str(photos[0]),
                "--model",
                str(tmp_path / "ens"),
                "-m",
                "gradcam",
                "--no-robustness",
                "--no-faces",
                "--json",
            ],
        ).stdout
    )["images"][0]
    shown = {m["name"]: (m["score"], m["verdict"]) for m in analysed["models"]}
    for rec in payload["images"]:
        assert (rec["fake_probability"], rec["verdict"]) == pytest.approx(shown[rec["model"]])
        assert "fake_probability" not in rec["methods"]["gradcam"]  # a map has no probability of its own
        top = rec["top_labels"][0]
        assert top["label"] == rec["verdict"] or rec["threshold"] != 0.5  # ranked by the shown p(fake)
        assert {t["label"]: t["probability"] for t in rec["top_labels"]}["fake"] == rec["fake_probability"]
    assert [r["threshold"] for r in payload["images"]] == [0.5, 0.6]
    (e,) = payload["ensemble"]
    assert (e["fake_probability"], e["verdict"]) == (
        pytest.approx(analysed["score"]),
        analysed["verdict"],
    )
    flags = ("split", "small", "partial")
    assert {k: e[k] for k in flags} == {k: analysed[k] for k in flags}  # as analyze marks them


def test_a_method_one_member_cannot_run_costs_only_its_maps(tmp_path: Path, photos: list[Path]) -> None:
    """rollout on the CNN member of an ensemble: a warning and that member's errors; every other map is
    written (it had aborted the run). A method no member can run leaves nothing and says why."""
    from fakelens.models import Ensemble, create_model, save_checkpoint

    save_checkpoint(
        Ensemble([create_model("tiny-cnn", seed=1), create_model("tiny-vit", seed=2)]), tmp_path / "e"
    )
    args = ["explain", str(photos[0]), "--model", str(tmp_path / "e"), "--json"]
    res = runner.invoke(app, [*args, "-m", "gradcam,rollout", "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "tiny-cnn: no rollout maps (cannot capture the attention" in res.stderr
    cnn, vit = json.loads(res.stdout)["images"]
    assert sorted(cnn["methods"]) == ["gradcam"] and "rollout" in cnn["errors"]
    assert sorted(vit["methods"]) == ["gradcam", "rollout"] and "errors" not in vit
    assert (tmp_path / "out" / "wide.tiny-vit.rollout.png").is_file()
    res = runner.invoke(
        app,
        ["explain", str(photos[0]), "--model", "tiny-cnn", "-m", "rollout", "--out", str(tmp_path / "o2")],
    )
    assert res.exit_code == 2 and "no heatmap could be made: tiny-cnn: rollout" in res.output
    assert not (tmp_path / "o2").exists() and "Traceback" not in res.output


def test_a_classifier_without_a_fake_class_is_explained_by_its_top_label(
    tmp_path: Path, photos: list[Path]
) -> None:
    """An ImageNet head (fake_label None, saved as null): maps of its top class and its top labels, no
    verdict; analyze, which needs verdicts, refuses it in one line."""
    from fakelens.models import create_model, load_checkpoint, save_checkpoint

    net = create_model("effnet-lite0", pretrained=False, imagenet_head=True, input_size=64)
    path = save_checkpoint(net, tmp_path / "cls")
    assert not load_checkpoint(path).is_detector
    res = runner.invoke(
        app,
        [
            "explain",
            str(photos[0]),
            "--model",
            str(path),
            "-m",
            "gradcam",
            "--json",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert res.exit_code == 0, res.output
    (rec,) = json.loads(res.stdout)["images"]
    assert "verdict" not in rec and rec["top_labels"] and rec["methods"]["gradcam"]
    res = runner.invoke(app, ["analyze", str(photos[0]), "--model", str(path), "--out", str(tmp_path / "a")])
    assert res.exit_code == 2 and "no fake class" in res.output and "Traceback" not in res.output


def test_explain_writes_nothing_when_an_input_is_bad(tmp_path: Path, photos: list[Path]) -> None:
    bad = tmp_path / "text.jpg"
    bad.write_text("not an image")
    out = tmp_path / "out"
    res = runner.invoke(
        app, ["explain", *map(str, photos), str(bad), "--model", "tiny-cnn", "--out", str(out)]
    )
    assert res.exit_code == 2 and "text.jpg" in res.output and "Traceback" not in res.output
    assert not out.exists()  # not even an empty folder


def test_an_interrupted_explain_leaves_the_output_folder_as_it_was(
    tmp_path: Path, photos: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C on the second batch: the first batch's overlays never reach --out (they wait in a hidden
    folder, moved in when every image is done), and an earlier run's files stay untouched."""
    import fakelens.analysis as pipeline  # explain_member runs explain_images

    def args_for(out: Path) -> list[str]:
        return ["explain", *map(str, photos), "--model", "tiny-cnn", "--out", str(out), "--batch-size", "1"]

    out = tmp_path / "out"
    args = args_for(out)
    assert runner.invoke(app, args).exit_code == 0
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    real, calls = pipeline.explain_images, []

    def interrupted(*a: Any, **k: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(pipeline, "explain_images", interrupted)
    res = runner.invoke(app, [*args, "--cmap", "viridis", "--overwrite"])
    assert res.exit_code == 130 and "interrupted: nothing was written to --out" in res.output
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before  # no hidden folder, nothing changed
    fresh = tmp_path / "fresh"
    calls.clear()
    res = runner.invoke(app, args_for(fresh))
    assert res.exit_code == 130 and not fresh.exists()


@pytest.mark.parametrize("command", ["explain", "analyze"])
def test_an_unwritable_output_fails_before_any_work(tmp_path: Path, photos: list[Path], command: str) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    option = "--out" if command == "explain" else "--report"
    res = runner.invoke(
        app, [command, str(photos[0]), "--model", "tiny-cnn", option, str(blocker / "x" / "r.html")]
    )
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert f"cannot write to {option}" in res.output and "is not a folder" in res.output


def test_file_system_refusals_are_one_line(tmp_path: Path) -> None:
    """A read-only file system (EROFS: no PermissionError subclass) met mid-command is one error line."""
    import errno

    from fakelens.cli.common import user_errors

    @user_errors
    def write() -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "r.html"))

    with pytest.raises(typer.Exit) as info:
        write()
    assert info.value.exit_code == 2


def test_explain_marks_a_small_image_as_analyze_does(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (40, 30), "gray").save(tmp_path / "thumb.png")
    out = tmp_path / "out"
    res = runner.invoke(
        app, ["explain", str(tmp_path / "thumb.png"), "--model", "tiny-cnn", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    rec = json.loads((out / "summary.json").read_text())["images"][0]
    assert rec["small"] is True and rec["pixel_fraction"] < 0.5
    assert "small" in res.output.split("thumb.png", 1)[1].splitlines()[0]


def test_names_with_brackets_are_shown_as_they_are(tmp_path: Path, photos: list[Path]) -> None:
    """File and folder names are text, not Rich markup: 'IMG[final].png' had shown as 'IMG.png', and an
    --out holding '[/]' had ended a finished run in a MarkupError traceback (exit 1)."""
    named = tmp_path / "IMG[final].png"
    named.write_bytes(photos[0].read_bytes())
    out = tmp_path / "o[/]" / "e"
    res = runner.invoke(app, ["explain", str(named), "--model", "tiny-cnn", "--out", str(out)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "IMG[final].png" in text and "o[/]" in text


def test_explain_refuses_a_previous_run_and_overwrite_replaces_only_its_files(
    tmp_path: Path, photos: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second explain into one --out had overwritten the first's files and left the others unrecorded;
    now it is refused, and --overwrite removes the files summary.json records (not the user's own). A
    rename that fails while the new files are moved in puts everything back."""
    import errno

    from fakelens.cli import common

    out = tmp_path / "out"
    args = ["explain", "--model", "tiny-cnn", "-m", "gradcam", "--out", str(out)]
    assert runner.invoke(app, [*args, *map(str, photos)]).exit_code == 0
    (out / "notes.txt").write_text("mine")
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    res = runner.invoke(app, [*args, str(photos[1])])
    assert res.exit_code == 2 and "already holds the results of a previous run (summary.json)" in res.output
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before

    real, moved = common.os.replace, []

    def refused(src: str, dst: str) -> None:
        moved.append(dst)
        if len(moved) == len(before) + 1:  # the old files set aside, one new file in: the next one fails
            raise OSError(errno.EIO, "Input/output error", str(dst))
        real(src, dst)

    with monkeypatch.context() as m:
        m.setattr(common.os, "replace", refused)
        res = runner.invoke(app, [*args, str(photos[1]), "--overwrite"])
    assert res.exit_code == 2 and "nothing was written to --out" in res.output
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before

    res = runner.invoke(app, [*args, str(photos[1]), "--overwrite"])
    assert res.exit_code == 0, res.output
    assert sorted(f.name for f in out.iterdir()) == [
        "notes.txt",
        "summary.json",
        "tall.gradcam.png",
        "tall.panel.png",
    ]
