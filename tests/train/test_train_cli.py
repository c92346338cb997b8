"""`fakelens train` / `fakelens evaluate` through typer's CliRunner: JSON out, resume, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from fakelens.cli.train import app

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.stdout, res.stderr


def test_train_then_evaluate_json(tmp_path: Path, folder_data: Path) -> None:
    out = tmp_path / "run"
    code, stdout, stderr = invoke(
        "train",
        "--data",
        str(folder_data),
        "--model",
        "tiny-cnn",
        "--out",
        str(out),
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--augment",
        "light",
        "--json",
        "--device",
        "cpu",
    )
    assert code == 0, stderr
    payload = json.loads(stdout)
    assert payload["epochs_run"] == 2 and payload["best"] == str(out / "best")
    # resume alone: the run is complete, nothing more happens, the settings come from last/
    code, stdout, stderr = invoke("train", "--out", str(out), "--resume", "--json")
    assert code == 0, stderr
    assert (json.loads(stdout)["epochs_run"], json.loads(stdout)["epochs_before"]) == (2, 2)
    code, _, stderr = invoke("train", "--out", str(out), "--resume")  # said so, not "trained 2 epochs in 0 s"
    said = " ".join(stderr.split())
    assert code == 0 and "nothing to resume" in said and f"--init {out / 'best'}" in said
    # a setting that would change what it learns is refused, not silently dropped; repeating one is fine
    code, _, stderr = invoke("train", "--out", str(out), "--resume", "--lr", "0.1")
    assert code == 2 and "cannot resume" in stderr and "--lr 0.1" in stderr and "0.001" in stderr
    code, _, stderr = invoke("train", "--out", str(out), "--resume", "--model", "tiny-cnn", "--workers", "0")
    assert code == 0, stderr
    code, _, stderr = invoke("train", "--out", str(out), "--resume", "--split-fractions", "0.7,0.15,0.15")
    assert code == 0, stderr
    # --data given again: only the options given are compared (tiny-cnn was not compared to the default model)
    code, _, stderr = invoke(
        "train", "--out", str(out), "--resume", "--data", str(folder_data), "--epochs", "2"
    )
    assert code == 0, stderr
    code, _, stderr = invoke(
        "train", "--out", str(out), "--resume", "--data", str(tmp_path), "--forgeries", "x"
    )
    said = " ".join(stderr.split())
    assert code == 2 and f"with --data {tmp_path}: the run was started with {folder_data.resolve()}" in said
    code, _, stderr = invoke("train", "--out", str(out), "--resume", "--input-size", "64")
    assert code == 2 and "the run was started with no --input-size" in " ".join(stderr.split())
    ev = tmp_path / "ev"
    code, stdout, stderr = invoke(
        "evaluate",
        "--model",
        str(out / "best"),
        "--data",
        str(folder_data),
        "--out",
        str(ev),
        "--json",
    )
    assert code == 0, stderr
    rep = json.loads(stdout)
    assert rep["model"] == str(out / "best") and set(rep["per_recipe"]) == {"gan", "diff"}
    # scoring the images it trained on is allowed, and said to be optimistic
    code, _, stderr = invoke(
        "evaluate",
        "--model",
        str(out / "best"),
        "--data",
        str(folder_data),
        "--split",
        "train",
        "--out",
        str(tmp_path / "ev_train"),
    )
    assert code == 0 and "figures are optimistic" in " ".join(stderr.split())
    # fine-tune that checkpoint; a wrong start is one line, no traceback
    tuned = tmp_path / "tuned"
    args = ["train", "--data", str(folder_data), "--out", str(tuned), "--epochs", "1", "--batch-size", "8"]
    code, stdout, stderr = invoke(*args, "--init", str(out / "best"), "--json")
    assert code == 0, stderr
    conf = json.loads((tuned / "last" / "config.json").read_text())
    assert conf["provenance"]["init"]["checkpoint"] == str(out / "best")
    assert conf["arch"] == "tiny-cnn"  # no --model: the architecture of the checkpoint it starts from
    code, stdout, stderr = invoke(
        *args[:4], str(tmp_path / "t2"), "--model", "tiny-vit", "--init", str(out / "best")
    )
    assert code != 0 and "holds a 'tiny-cnn' detector, not 'tiny-vit'" in stderr and "Traceback" not in stderr
    assert (ev / "roc.png").is_file() and (ev / "metrics.json").is_file()


def test_bad_files_are_all_named_before_the_first_epoch(tmp_path: Path, folder_data: Path) -> None:
    """A text file named .png and an empty one fail the run before it starts, both named; an archive's
    macOS leftovers are not images at all."""
    data = folder_data  # this test's own copy
    first_fake = next(data.rglob("*.png"))
    (first_fake.parent / "notes.png").write_text("not an image")
    (first_fake.parent / "empty.png").write_bytes(b"")
    (first_fake.parent / "._resource.png").write_bytes(b"\0\5\26\7")
    args = [
        "train",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "run"),
        "--epochs",
        "1",
        "--batch-size",
        "8",
    ]
    code, _, stderr = invoke(*args)
    err = " ".join(stderr.split())
    assert (
        code == 2 and "2 file(s) of" in err and "notes.png: not an image" in err and "empty.png: empty" in err
    )
    assert "._resource.png" not in err and not (tmp_path / "run" / "last").exists()


def test_evaluate_table(tmp_path: Path, folder_data: Path) -> None:
    code, stdout, stderr = invoke(
        "evaluate", "--model", "tiny-cnn", "--data", str(folder_data), "--out", str(tmp_path / "ev")
    )
    assert code == 0, stderr
    assert "overall" in stdout and "recipe gan" in stdout and "roc.png" in stderr  # table out, note err
    said = " ".join(stderr.split())  # a bare architecture is said to be one, as analyze and scan say it
    assert "tiny-cnn is an architecture without trained real/fake weights" in said
    assert "the figures below measure a random head" in said


def _cases(tmp_path: Path, folder_data: Path) -> list[tuple[list[str], str]]:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    single = tmp_path / "single" / "real"
    single.mkdir(parents=True)
    (folder_data / "val" / "gan" / "0_real" / "000.png").rename(single / "a.png")
    base = ["train", "--out", str(tmp_path / "o"), "--epochs", "1"]
    return [
        ([*base, "--data", str(tmp_path / "nope")], "no such dataset file or folder"),
        ([*base, "--data", str(folder_data), "--model", "resnet9000"], "unknown model 'resnet9000'"),
        ([*base, "--data", str(folder_data), "--model", "default"], "'default' is the shipped ensemble"),
        (["evaluate", "--model", "nope", "--data", str(folder_data)], "or 'default' (the shipped ensemble)"),
        (
            ["evaluate", "--model", "tiny-cnn", "--data", str(folder_data), "--out", str(blocker / "ev")],
            "cannot write to --out",
        ),
        (["train", "--out", str(blocker / "sub"), "--data", str(folder_data)], "cannot write to --out"),
        ([*base, "--data", str(tmp_path / "single")], "only real images (1)"),
        ([*base], "give exactly one data source"),
        ([*base, "--data", str(folder_data), "--augment", "heavy"], "unknown --augment 'heavy'"),
        ([*base, "--forgeries", str(tmp_path), "--split-fractions", "1,2"], "--split-fractions needs three"),
        (["train", "--out", str(tmp_path / "o2"), "--resume"], "nothing to resume"),
        ([*base, "--data", str(folder_data), "--device", "tpu"], "unknown device 'tpu'"),
        (["evaluate", "--model", str(tmp_path / "ckpt"), "--data", str(folder_data)], "checkpoint not found"),
        (["evaluate", "--model", "tiny-cnn"], "exactly one of --data"),
        (
            ["evaluate", "--model", "tiny-cnn", "--data", str(folder_data), "--split", "foo"],
            "unknown --split 'foo' (known: auto, train, val, test, all)",
        ),
        (  # evaluate had ignored it silently
            ["evaluate", "--model", "tiny-cnn", "--data", str(folder_data), "--pairs", "64"],
            "--pairs goes with --forgeries; it means nothing with --data",
        ),
        # an option of the other data source would be ignored, yet recorded
        ([*base, "--data", str(folder_data), "--recipes", "self_blend"], "--recipes goes with --forgeries"),
        (
            [*base, "--forgeries", str(tmp_path), "--val-data", str(folder_data)],
            "--val-data goes with --data",
        ),
        ([*base, "--data", str(folder_data), "--val-pairs", "8"], "--val-pairs goes with --forgeries"),
        ([*base, "--forgeries", str(tmp_path), "--val-fraction", "0.2"], "--val-fraction goes with --data"),
    ]


def test_one_line_errors(tmp_path: Path, folder_data: Path) -> None:
    for args, message in _cases(tmp_path, folder_data):
        code, _, stderr = invoke(*args)
        assert code == 2, (args, stderr)
        assert message in stderr, (args, stderr)
        assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr


def test_cli_trains_on_the_fly_forgeries_with_aux_mask(tmp_path: Path, tiny_pool: Path) -> None:
    code, stdout, stderr = invoke(
        "train",
        "--forgeries",
        str(tiny_pool),
        "--out",
        str(tmp_path / "run"),
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--pairs-per-epoch",
        "16",
        "--val-pairs",
        "8",
        "--forgery-size",
        "96",
        "--split-fractions",
        "0.5,0.25,0.25",
        "--aux-mask",
        "--workers",
        "2",
        "--json",
    )
    assert code == 0, stderr
    hist = json.loads(stdout)["history"]
    assert len(hist) == 2 and all(h["aux_loss"] is not None for h in hist)
    code, stdout, stderr = invoke(
        "evaluate",
        "--model",
        str(tmp_path / "run" / "best"),
        "--forgeries",
        str(tiny_pool),
        "--pairs",
        "12",
        "--split-fractions",
        "0.5,0.25,0.25",
        "--forgery-size",
        "96",
        "--out",
        str(tmp_path / "ev"),
        "--json",
    )
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["data"]["kind"] == "forgeries" and report["data"]["excluded_photos"] == 0
    _evaluating_on_training_photos_leaves_them_out(tmp_path / "run" / "best", tiny_pool, tmp_path)


def _evaluating_on_training_photos_leaves_them_out(ckpt: Path, pool: Path, tmp_path: Path) -> None:
    """The checkpoint records which pool photos it trained on; evaluate leaves them out of any split."""
    from fakelens.data.pool import load_pool
    from fakelens.models.checkpoint import training_photos

    conf = json.loads((ckpt / "config.json").read_text())
    photos = conf["provenance"]["data"]["photos"]
    assert len(photos["train"]) == conf["provenance"]["data"]["train_photos"] == 3
    assert len(photos["val"]) == conf["provenance"]["data"]["val_photos"]
    assert set(photos["train"] + photos["val"]) <= {e.sha256 for e in load_pool(pool)}
    assert training_photos(ckpt).sha256 == set(photos["train"] + photos["val"])
    assert training_photos("tiny-cnn").sha256 == frozenset()

    common = ["--forgeries", str(pool), "--pairs", "6", "--split-fractions", "0.5,0.25,0.25"]
    common += ["--forgery-size", "96", "--out", str(tmp_path / "ev2"), "--json", "--model", str(ckpt)]
    code, stdout, stderr = invoke("evaluate", *common, "--split", "train")
    assert code == 2 and "no photographs in split 'train'" in stderr
    assert "3 left out as photos a model was trained or validated on" in " ".join(stderr.split())
    code, stdout, stderr = invoke("evaluate", *common, "--split", "train", "--keep-seen")
    assert code == 0, stderr
    assert json.loads(stdout)["data"]["photos"] == 3
    # compare with another model on photos neither saw: an untrained model, the trained one's photos left out
    other = [*common[:-2], "--model", "tiny-cnn", "--unseen-by", str(ckpt), "--split-fractions", "0,0,1"]
    other.append("--overwrite")  # another model into the same --out
    code, stdout, stderr = invoke("evaluate", *other)
    assert code == 0, stderr
    data = json.loads(stdout)["data"]
    assert data["excluded_photos"] == len(photos["train"] + photos["val"]) and data["photos"] == 6 - 3 - len(
        photos["val"]
    )
    # rich wraps long lines anywhere, a path included: compare without any whitespace
    assert f"that{ckpt}trainedorvalidatedon" in "".join(stderr.split())

    # an older checkpoint without the photo list, trained on another version of the pool: a note
    old = tmp_path / "old"
    old.mkdir()
    (old / "model.safetensors").write_bytes((ckpt / "model.safetensors").read_bytes())
    del conf["provenance"]["data"]["photos"]
    conf["provenance"]["data"]["pool_manifest_sha256"] = "0" * 64
    (old / "config.json").write_text(json.dumps(conf))
    assert training_photos(old).unrecorded == (("old", "0" * 64),)
    code, stdout, stderr = invoke("evaluate", *common[:-2], "--model", str(old), "--overwrite")
    assert code == 0, stderr
    assert "old was trained on another version of this pool" in " ".join(stderr.split())


def test_evaluate_keeps_another_model_s_results(tmp_path: Path, folder_data: Path) -> None:
    """Every run in a folder shares the default --out: a second model's evaluation replaced the first's
    silently. The same model's rerun replaces its own; another model needs --overwrite."""
    out = tmp_path / "ev"
    args = ["evaluate", "--data", str(folder_data), "--out", str(out)]
    assert invoke(*args, "--model", "tiny-cnn")[0] == 0
    assert invoke(*args, "--model", "tiny-cnn")[0] == 0
    code, _, stderr = invoke(*args, "--model", "tiny-vit")
    assert code == 2 and "holds the evaluation of tiny-cnn" in stderr
    assert json.loads((out / "metrics.json").read_text())["model"] == "tiny-cnn"
    assert invoke(*args, "--model", "tiny-vit", "--overwrite")[0] == 0
    assert json.loads((out / "metrics.json").read_text())["model"] == "tiny-vit"
    # one checkpoint, spelled two ways, is the same model: its rerun replaces its own evaluation
    from fakelens.models import create_model, save_checkpoint

    ckpt = save_checkpoint(create_model("tiny-cnn"), tmp_path / "runs" / "x" / "best")
    assert invoke(*args, "--model", str(ckpt), "--overwrite")[0] == 0
    code, _, stderr = invoke(*args, "--model", f"{ckpt.parent}/./best/")
    assert code == 0, stderr


def test_evaluate_warns_on_the_split_that_picked_the_checkpoint(tmp_path: Path, folder_data: Path) -> None:
    """`auto` picks val where there is no test split: the images that chose the best epoch and calibrated
    it. Said (and no --split test suggested where there is none); also for --val-data, and for checkpoints
    that recorded only their 'validation' sentence."""
    base = ["--model", "tiny-cnn", "--epochs", "1", "--batch-size", "8", "--device", "cpu", "--json"]
    assert invoke("train", "--data", str(folder_data), "--out", str(tmp_path / "a"), *base)[0] == 0
    ckpt = tmp_path / "a" / "best"
    ev = ["evaluate", "--model", str(ckpt), "--data", str(folder_data), "--bootstrap", "0", "--overwrite"]
    code, _, stderr = invoke(*ev, "--out", str(tmp_path / "ev"))
    said = " ".join(stderr.split())
    assert code == 0 and "picked its best epoch and was calibrated on" in said and "'val' split" in said
    assert "--split test" not in said and "evaluate on data it never saw" in said
    conf = json.loads((ckpt / "config.json").read_text())
    del conf["provenance"]["data"]["validated_on"]  # a checkpoint from before it was recorded
    (ckpt / "config.json").write_text(json.dumps(conf))
    code, _, stderr = invoke(*ev, "--out", str(tmp_path / "ev"))
    assert code == 0 and "picked its best epoch" in " ".join(stderr.split())
    # --val-data without splits: all of it validated
    train_dir, val_dir = folder_data / "train", folder_data / "val"
    assert (
        invoke(
            "train", "--data", str(train_dir), "--val-data", str(val_dir), "--out", str(tmp_path / "b"), *base
        )[0]
        == 0
    )
    code, _, stderr = invoke(
        *ev[:2],
        str(tmp_path / "b" / "best"),
        "--data",
        str(val_dir),
        "--out",
        str(tmp_path / "ev"),
        "--overwrite",
    )
    said = " ".join(stderr.split())
    assert code == 0 and "'all' split holds" in said
    code, _, stderr = invoke(
        *ev[:2],
        str(tmp_path / "b" / "best"),
        "--data",
        str(train_dir),
        "--split",
        "all",
        "--out",
        str(tmp_path / "ev"),
        "--overwrite",
    )
    said = " ".join(stderr.split())
    assert code == 0 and "was trained on" in said and "picked its best epoch" not in said


def test_train_says_its_data_and_warns_on_imbalance(tmp_path: Path) -> None:
    """40 real / 6 fake trained silently with one fake to validate on: one line says the sizes and how
    validation was chosen, and the imbalance and the thin validation class are warned about."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, n in (("real", 40), ("fake", 6)):
        (tmp_path / "d" / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(
                tmp_path / "d" / cls / f"{i}.png"
            )
    args = ["train", "--data", str(tmp_path / "d"), "--model", "tiny-cnn", "--out", str(tmp_path / "run")]
    code, _, stderr = invoke(
        *args, "--epochs", "1", "--batch-size", "8", "--device", "cpu", "--augment", "none"
    )
    said = " ".join(stderr.split())
    assert code == 0, stderr
    assert "training 39 images (34 real, 5 fake), validation 7 (6 real, 1 fake) from a 0.15 hold-out" in said
    assert "warning: the training images are imbalanced: 34 real, 5 fake" in said
    assert "warning: the validation set holds only 1 fake image(s) (6 real, 1 fake)" in said
    assert said.index("training 39 images") < said.index("warning:")  # the summary first, then its doubts
