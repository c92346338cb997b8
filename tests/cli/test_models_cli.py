"""``fakelens models``, ``methods`` and ``ensemble`` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from fakelens.cli.main import app
from fakelens.io import sha256_file
from fakelens.models import Ensemble, create_model, load_detector, save_checkpoint

runner = CliRunner()


def test_ensemble_command_builds_a_loadable_half_precision_ensemble(tmp_path: Path) -> None:
    save_checkpoint(create_model("tiny-cnn", seed=1), tmp_path / "a", provenance={"seed": 1})
    save_checkpoint(create_model("tiny-vit", seed=2), tmp_path / "b")
    out = tmp_path / "ens"
    args = ["ensemble", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]
    r = runner.invoke(app, [*args, "--weights", "3,1", "--half", "--json"])
    assert r.exit_code == 0, r.output
    ens = load_detector(out)
    assert isinstance(ens, Ensemble) and ens.names == ("tiny-cnn", "tiny-vit")
    assert ens.weights.tolist() == [0.75, 0.25] and ens.rule == "logit_mean"
    config = json.loads((out / "ensemble.json").read_text())
    assert config["provenance"]["members"] == [
        {
            "source": str(tmp_path / n),
            "path": str((tmp_path / n).resolve()),
            "weights_sha256": sha256_file(tmp_path / n / "model.safetensors"),
        }
        for n in ("a", "b")
    ]
    member = json.loads((out / "member-00-tiny-cnn" / "config.json").read_text())
    assert member["stored_dtype"] == "float16"
    assert member["provenance"] == {"seed": 1}  # each member keeps its own training record
    # a second run into the same folder would lose the first one's fit: refused unless asked for
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "holds an ensemble already: pass --overwrite" in " ".join(r.output.split())
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0
    r = runner.invoke(app, [*args[:-1], str(tmp_path / "a"), "--overwrite"])  # a training run's folder
    assert r.exit_code == 2 and "holds no ensemble" in r.output


def test_ensemble_command_errors_are_one_line(tmp_path: Path) -> None:
    save_checkpoint(create_model("tiny-cnn"), tmp_path / "a")
    for extra, needle in [
        ([str(tmp_path / "missing")], "checkpoint not found"),
        (["--weights", "x"], "--weights must be"),
        (["--weights", "1,2,3"], "weights"),
        (["--rule", "median"], "unknown ensemble rule"),
    ]:
        r = runner.invoke(app, ["ensemble", str(tmp_path / "a"), *extra, "--out", str(tmp_path / "o")])
        assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "o" / "ensemble.json").exists()


def test_models_lists_every_registered_detector() -> None:
    r = runner.invoke(app, ["models", "--json"])
    names = {row["name"] for row in json.loads(r.stdout)}
    assert {"tiny-cnn", "tiny-vit", "effnet-lite0", "vit-small-reg4", "vit-tiny-reg4"} <= names


def test_listings_go_to_stdout_and_hints_to_stderr() -> None:
    """``fakelens models > models.txt`` keeps the listing; the how-to hint stays on the terminal."""
    r = runner.invoke(app, ["models"])
    assert r.exit_code == 0 and "tiny-cnn" in r.stdout and "tiny-cnn" not in r.stderr
    r = runner.invoke(app, ["methods"])
    assert "gradcam++" in r.stdout and "options of a method" in r.stderr and "options of" not in r.stdout
    r = runner.invoke(app, ["methods", "scorecam"])
    assert "top_k" in r.stdout and not r.stderr


def test_two_runs_of_one_architecture_get_distinct_names(tmp_path: Path) -> None:
    """Two tiny-cnn runs (seeds) form an ensemble whose members analyze and explain can tell apart."""
    for seed in (1, 2):
        save_checkpoint(create_model("tiny-cnn", seed=seed), tmp_path / f"run{seed}")
    out = tmp_path / "ens"
    r = runner.invoke(app, ["ensemble", str(tmp_path / "run1"), str(tmp_path / "run2"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    ens = load_detector(out)
    assert isinstance(ens, Ensemble) and ens.names == ("tiny-cnn", "tiny-cnn-2")
