"""``fakelens trust`` through typer's CliRunner: outputs, JSON, resume, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from fakelens.cli.trust import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _one_thread():  # type: ignore[no-untyped-def]
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def photos(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    imgs, masks = tmp_path / "imgs", tmp_path / "masks"
    imgs.mkdir()
    masks.mkdir()
    for i, (h, w) in enumerate([(40, 56), (50, 50)]):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(imgs / f"p{i}.png")
        m = np.zeros((h, w), dtype=np.uint8)
        m[10:25, 12:30] = 255
        Image.fromarray(m).save(masks / f"p{i}.png")
    return imgs, masks


def _args(imgs: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--model",
        "tiny-cnn",
        "--images",
        str(imgs),
        "--out",
        str(out),
        "--transforms",
        "quick",
        "--fills",
        "black",
        "--skip",
        "faithfulness,randomisation",
        *extra,
    ]


def test_trust_json_and_files(tmp_path: Path, photos: tuple[Path, Path]) -> None:
    imgs, masks = photos
    out = tmp_path / "out"
    res = runner.invoke(app, [*_args(imgs, out, "--masks", str(masks), "-m", "gradcam,eigencam"), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["images"] == 2 and summary["methods"] == ["eigencam", "gradcam"]
    assert "fakelens trust --model tiny-cnn" in summary["command"]
    assert summary["recommendation"]["text"]
    assert "localisation" in summary["families"]
    for name in ("records.csv", "report.md", "summary.json", "gallery.html"):
        assert (out / name).exists()
    # resumable: a second run finds everything recorded and writes the same summary
    res2 = runner.invoke(app, [*_args(imgs, out, "--masks", str(masks), "-m", "gradcam,eigencam"), "--json"])
    assert res2.exit_code == 0 and json.loads(res2.stdout)["families"] == summary["families"]


def test_a_resume_that_would_add_a_family_is_refused(tmp_path: Path, photos: tuple[Path, Path]) -> None:
    """Images already done are not measured again: resuming without --skip would list faithfulness in the
    report with no record of it."""
    out = tmp_path / "o"
    assert runner.invoke(app, _args(photos[0], out, "--limit", "1", "-m", "gradcam")).exit_code == 0
    args = [
        a for a in _args(photos[0], out, "--limit", "1", "-m", "gradcam") if a != "faithfulness,randomisation"
    ]
    args.remove("--skip")
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "other settings (families)" in res.output


def test_no_method_that_can_run_is_an_error(tmp_path: Path, photos: tuple[Path, Path]) -> None:
    res = runner.invoke(app, _args(photos[0], tmp_path / "o", "-m", "rollout"))
    assert res.exit_code == 2 and "no method could run: rollout: cannot capture the attention" in res.output
    assert "Traceback" not in res.output


def test_trust_human_output_and_limit(tmp_path: Path, photos: tuple[Path, Path]) -> None:
    res = runner.invoke(app, _args(photos[0], tmp_path / "o", "--limit", "1", "-m", "gradcam"))
    assert res.exit_code == 0, res.output
    assert "1 images" in res.output and "gallery.html" in res.output
    assert "explain a random head" in " ".join(res.output.split())  # tiny-cnn by name: untrained


def test_an_ensemble_is_refused_with_its_members_paths(tmp_path: Path, photos: tuple[Path, Path]) -> None:
    res = runner.invoke(app, [*_args(photos[0], tmp_path / "o"), "--model", "default"])
    out = " ".join(res.output.split())
    assert res.exit_code == 2 and "not an ensemble" in out and "--model " in out
    assert "member-00-effnet-lite0" in out and "member-01-vit-tiny-reg4-npr" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-m", "gradcan"], "method 'gradcan'; did you mean gradcam"),
        (["--skip", "beauty"], "unknown family 'beauty'"),
        (["--transforms", "wobbly"], "unknown transform family 'wobbly'"),
        (["--fills", "black,white"], "unknown fill 'white'"),
        (["--layer", "net.nope"], "no layer 'net.nope'"),
        (["--layer", "net.head"], "layer 'net.head' of 'tiny-cnn' gives shape (1, 2), not a feature map"),
        (
            ["--layer", "net.pool"],
            "layer 'net.pool' of 'tiny-cnn' gives shape (1, 64, 1, 1), not a feature map",
        ),
        (["--manifest", "nope.csv", "--masks", "m"], "either --masks or --manifest"),
        (["--target", "nosuch"], "nosuch"),
    ],
)
def test_user_errors_are_one_line(
    tmp_path: Path, photos: tuple[Path, Path], extra: list[str], message: str
) -> None:
    res = runner.invoke(app, _args(photos[0], tmp_path / "o", *extra))
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "o").exists()  # nothing written that a corrected command would trip on


def test_unreadable_images_are_named_and_none_readable_is_an_error(
    tmp_path: Path, photos: tuple[Path, Path]
) -> None:
    imgs = photos[0]
    (imgs / "notes.jpg").write_text("not an image")
    (imgs / "empty.jpg").write_bytes(b"")
    res = runner.invoke(app, _args(imgs, tmp_path / "o", "-m", "gradcam"))
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "skipped" in out and "notes.jpg: not an image" in out and "2 images" in out
    assert "empty.jpg: empty file (0 bytes)" in out
    # every skipped image is in summary.json and report.md, named once with its reason
    skipped = json.loads((tmp_path / "o" / "summary.json").read_text())["skipped_images"]
    assert {Path(k).name: v for k, v in skipped.items()} == {
        "empty.jpg": "empty file (0 bytes), not an image",
        "notes.jpg": skipped[str(imgs / "notes.jpg")],
    }
    report = (tmp_path / "o" / "report.md").read_text()
    assert f"- `{imgs / 'empty.jpg'}`: empty file (0 bytes)" in report
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "notes.jpg").write_text("not an image")
    res = runner.invoke(app, _args(only_bad, tmp_path / "o2", "-m", "gradcam"))
    assert res.exit_code == 2 and "none of the 1 image(s) can be read" in res.output
    assert not (tmp_path / "o2").exists()


def test_missing_inputs(tmp_path: Path) -> None:
    res = runner.invoke(app, ["--model", "tiny-cnn", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "no images" in res.output
    res = runner.invoke(app, ["--images", str(tmp_path)])
    assert res.exit_code == 2 and "--model is required" in res.output
    res = runner.invoke(app, ["--model", "tiny-cnn", "--images", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "missing" in res.output
    res = runner.invoke(app, ["--model", "nope", "--images", str(tmp_path)])
    assert res.exit_code == 2


def test_help() -> None:
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0 and "--masks" in res.output and "--limit" in res.output


def test_method_options_set_a_budget_and_are_part_of_the_run(
    tmp_path: Path, photos: tuple[Path, Path]
) -> None:
    """--set reaches the perturbation method (a small budget), is recorded, and resuming with another is
    refused."""
    args = _args(
        photos[0], tmp_path / "o", "--limit", "1", "-m", "occlusion", "--skip", "faithfulness,randomisation"
    )
    res = runner.invoke(
        app, [*args, "--set", "occlusion.window=16", "--set", "occlusion.stride=16", "--seed", "3"]
    )
    assert res.exit_code == 0, res.output
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert run["numbers"]["options"] == {"occlusion": {"window": 16, "stride": 16}}
    # "Made with" reproduces every setting that changes the numbers, defaults left out
    assert "--set occlusion.window=16" in run["command"] and "--seed 3" in run["command"]
    assert "--steps" not in run["command"] and "--target" not in run["command"]
    args += ["--seed", "3"]
    res = runner.invoke(app, [*args, "--set", "occlusion.window=8"])
    assert res.exit_code == 2 and "other settings (options)" in res.output
    res = runner.invoke(app, [*args, "--set", "occlusion.windw=8"])
    assert res.exit_code == 2 and "occlusion has no option 'windw'" in res.output


def test_an_interrupted_run_says_how_to_go_on(
    tmp_path: Path, photos: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import fakelens.trust.runner as runner_mod

    def interrupted(*a: object, **k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner_mod, "run_trust", interrupted)
    res = runner.invoke(app, _args(photos[0], tmp_path / "o", "-m", "gradcam"))
    assert res.exit_code == 130 and "rerun the same command to go on" in " ".join(res.output.split())


def test_a_second_run_with_other_methods_reports_only_what_it_asked_for(
    tmp_path: Path, photos: tuple[Path, Path]
) -> None:
    """A resume into the same --out with another -m ranked the earlier run's methods too, while "Made with"
    named only the new one: the report must be reproducible from its own command line."""
    out = tmp_path / "o"
    assert runner.invoke(app, _args(photos[0], out, "--limit", "2", "-m", "gradcam")).exit_code == 0
    res = runner.invoke(app, _args(photos[0], out, "--limit", "1", "-m", "layercam"))
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["methods"] == ["layercam"] and summary["images"] == 1
    assert [o["method"] for o in summary["recommendation"]["order"]] == ["layercam"]
    assert "--methods layercam" in summary["command"]
    assert summary["left_out"] == {"candidates": ["gradcam@net.features.3"], "images": 1}
    said = " ".join(res.output.split())
    assert "also holds methods gradcam@net.features.3 and 1 other image(s)" in said
    assert "gradcam" not in (out / "report.md").read_text().split("Made with")[1].split("## Ranked")[1]
    # the earlier records stay on disk: asking for gradcam again resumes it, nothing recomputed
    res = runner.invoke(app, [*_args(photos[0], out, "--limit", "2", "-m", "gradcam"), "--json"])
    again = json.loads(res.stdout)
    assert again["methods"] == ["gradcam"] and again["images"] == 2


def test_a_run_that_evaluated_no_image_is_an_error(tmp_path: Path, photos: tuple[Path, Path]) -> None:
    """A manifest whose only mask is missing gave 'No method produced records.', an empty report and exit 0;
    a mask of another aspect ratio (found only when read) did the same."""
    imgs, _ = photos
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,label,mask_path\n{imgs / 'p0.png'},fake,masks/nosuch.png\n")
    args = [a for a in _args(imgs, tmp_path / "o", "-m", "gradcam") if a not in ("--images", str(imgs))]
    res = runner.invoke(app, [*args, "--manifest", str(manifest)])
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and "Traceback" not in said, res.output
    assert f"none of the 1 image(s) can be read: {imgs / 'p0.png'}: its mask" in said
    assert "nosuch.png: file not found" in said and not (tmp_path / "o").exists()
    bad = tmp_path / "bad"
    bad.mkdir()
    Image.new("L", (40, 10), 255).save(bad / "p0.png")  # p0 is 56 × 40
    res = runner.invoke(
        app, _args(imgs, tmp_path / "o2", "-m", "gradcam", "--limit", "1", "--masks", str(bad))
    )
    said = " ".join(res.output.split())
    assert res.exit_code == 2 and "no image could be evaluated" in said and "another aspect ratio" in said


def test_a_manifest_that_is_no_csv_is_one_line(tmp_path: Path, photos: tuple[Path, Path]) -> None:
    """An image passed as --manifest raised a UnicodeDecodeError traceback from the CSV reader."""
    image = photos[0] / "p0.png"
    binary = tmp_path / "data.bin"
    binary.write_bytes(b"\x00\xff\xfe" * 50)
    for manifest, words in ((image, "is an image, not a CSV manifest"), (binary, "is not a CSV manifest")):
        res = runner.invoke(app, ["--model", "tiny-cnn", "--manifest", str(manifest), "--out", str(tmp_path)])
        said = " ".join(res.output.split())
        assert res.exit_code == 2 and f"{manifest} {words}" in said, res.output
        assert "Traceback" not in said and isinstance(res.exception, SystemExit)


def test_help_lists_every_transform_family() -> None:
    from fakelens.trust.transforms import TransformFamily

    said = " ".join(runner.invoke(app, ["--help"]).output.replace("│", " ").split())
    for name in ("standard", "quick", "badge", "exact"):
        TransformFamily.named(name)  # accepted…
        assert f"{name} (" in said, name  # …and documented with its size
