"""Fitting ensemble weights and threshold on validation forgeries (`fakelens ensemble --fit-on POOL`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from fakelens.cli.models import app
from fakelens.cli.train import app as train_app
from fakelens.data.pool import load_pool, pool_splits
from fakelens.errors import ConfigError
from fakelens.models import Ensemble, create_model
from fakelens.train import fit as fit_mod
from fakelens.train.fit import fit_ensemble, simplex_grid, validation_photos

from .conftest import POOL_FRACTIONS


def test_simplex_grid() -> None:
    assert simplex_grid(2, 0.5).tolist() == [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]
    g = simplex_grid(3, 0.25)
    assert g.shape == (15, 3) and np.allclose(g.sum(axis=1), 1) and (g >= 0).all()
    assert len({tuple(r) for r in g.tolist()}) == 15
    with pytest.raises(ConfigError, match="must divide 1"):
        simplex_grid(2, 0.3)
    with pytest.raises(ConfigError, match="must divide 1"):
        simplex_grid(2, 0.0)
    with pytest.raises(ConfigError, match="use a coarser step"):
        simplex_grid(8, 0.05)  # 888,030 vectors


def test_validation_photos_fall_back_to_the_pool_split(tiny_pool: Path) -> None:
    entries = load_pool(tiny_pool)
    splits = pool_splits(entries, POOL_FRACTIONS)
    want = {e.sha256 for e in entries if splits[e.path] == "val"}
    assert validation_photos(["tiny-cnn"], tiny_pool, POOL_FRACTIONS) == want


def test_recorded_validation_photos_win_and_training_photos_never_count(
    tiny_pool: Path, tmp_path: Path
) -> None:
    entries = load_pool(tiny_pool)
    a, b, c = (e.sha256 for e in entries[:3])
    records = {"m1": {"train": [a], "val": [b, c]}, "m2": {"train": [c], "val": [b]}, "m3": {"train": [b, c]}}
    for name, photos in records.items():
        (tmp_path / name).mkdir()
        conf = {"format_version": 1, "provenance": {"data": {"kind": "forgeries", "photos": photos}}}
        (tmp_path / name / "config.json").write_text(json.dumps(conf))
    assert validation_photos([tmp_path / "m1", tmp_path / "m2"], tiny_pool) == {b}
    with pytest.raises(ConfigError, match="no validation photos"):
        validation_photos([tmp_path / "m1", tmp_path / "m3"], tiny_pool)


def _stub_scores(monkeypatch: pytest.MonkeyPatch, y: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    photos = [f"photo{i % 20}" for i in range(y.size)]

    def scores(model: Ensemble, make: Any, **_: Any) -> dict[str, Any]:
        make(model.members[0].input_spec)  # the dataset can be built: photos exist
        return {"labels": y, "sources": photos, "members": {"a": a, "b": b}}

    monkeypatch.setattr(fit_mod, "score_dataset", scores)


def _informative_and_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    y = np.tile([0, 1], 100)
    good = np.clip(0.3 + 0.4 * y + rng.normal(0, 0.15, y.size), 0.01, 0.99)
    noise = rng.uniform(0.01, 0.99, y.size)
    _stub_scores(monkeypatch, y, good, noise)


def test_fit_prefers_the_informative_member(tiny_pool: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Member scores stubbed, uncalibrated: one separates the classes, the other is noise; the noise gets a
    small weight."""
    _informative_and_noise(monkeypatch)
    ens = Ensemble([create_model("tiny-cnn"), create_model("tiny-vit")], rule="logit_mean")
    args: dict[str, Any] = {"split_fractions": POOL_FRACTIONS, "step": 0.1, "calibrate": False}
    rec = fit_ensemble(ens, ["tiny-cnn", "tiny-vit"], tiny_pool, **args)
    assert rec["weights"][0] >= 0.7 and ens.weights[0] == pytest.approx(rec["weights"][0])
    assert 0 < rec["auc_se"] < 0.05 and rec["best_weights"][0] >= rec["weights"][0]
    assert rec["val"]["auc"] >= rec["best_auc"] - rec["auc_se"] - 1e-9  # within one standard error
    assert rec["val"]["auc"] >= rec["val_auc_equal_weights"]
    assert ens.threshold == pytest.approx(rec["val"]["eer_threshold"]) and 0 < ens.threshold < 1
    assert ens.calibration is None and not any(ens.calibrations) and "calibration" not in rec
    plain = fit_ensemble(ens, ["tiny-cnn", "tiny-vit"], tiny_pool, **args, bootstrap=0)
    assert plain["auc_se"] == 0 and plain["weights"] == plain["best_weights"]  # no bootstrap: the best


def test_calibrated_fit_silences_the_noise_and_decides_at_one_half(
    tiny_pool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calibrated (the default): the noise member's log-odds shrink towards 0, so it barely moves the vote
    whatever its weight; the ensemble decides at ½, its own equal-error-rate point, and every calibration
    error falls."""
    _informative_and_noise(monkeypatch)
    ens = Ensemble([create_model("tiny-cnn"), create_model("tiny-vit")], rule="logit_mean")
    rec = fit_ensemble(ens, ["tiny-cnn", "tiny-vit"], tiny_pool, split_fractions=POOL_FRACTIONS, step=0.1)
    good, noise = ens.calibrations
    assert good is not None and noise is not None and noise.scale < 0.1 * good.scale
    assert rec["val"]["auc"] >= rec["val_auc_members"]["a"] - 0.01
    assert ens.threshold == 0.5 and rec["val"]["eer_threshold"] == pytest.approx(0.5, abs=0.02)
    assert ens.calibration is not None and rec["calibration"] == ens.calibration_dict()
    for who in ("a", "b", "ensemble"):
        assert rec["val_ece"]["after"][who] < rec["val_ece"]["before"][who]
    assert rec["val"]["ece"] == pytest.approx(rec["val_ece"]["after"]["ensemble"])


def test_fit_keeps_even_weights_when_the_difference_is_noise(
    tiny_pool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two members equally informative up to sampling noise: the best grid point is lopsided by chance, the
    one-standard-error rule returns even weights."""
    rng = np.random.default_rng(1)
    y = np.tile([0, 1], 100)
    a = np.clip(0.35 + 0.3 * y + rng.normal(0, 0.2, y.size), 0.01, 0.99)
    b = np.clip(0.35 + 0.3 * y + rng.normal(0, 0.2, y.size), 0.01, 0.99)
    _stub_scores(monkeypatch, y, a, b)
    ens = Ensemble([create_model("tiny-cnn"), create_model("tiny-vit")], rule="logit_mean")
    rec = fit_ensemble(ens, ["tiny-cnn", "tiny-vit"], tiny_pool, split_fractions=POOL_FRACTIONS, step=0.1)
    assert rec["weights"] == [0.5, 0.5]
    assert rec["best_auc"] - rec["val"]["auc"] <= rec["auc_se"]
    assert rec["val"]["auc"] == rec["val_auc_equal_weights"]  # the fitted AUC is that of the chosen weights


def test_fitted_auc_survives_a_flattening_calibration(
    tiny_pool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Members that know nothing get the flattest calibration (scale 0.001): every calibrated probability
    rounds to ½ in float32 and ties. The reported AUC is still the chosen weights' ranking, not the ties'."""
    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 4)
    a, b = rng.uniform(0.3, 0.7, (2, y.size))  # members that know nothing, as untrained ones
    _stub_scores(monkeypatch, y, a, b)
    ens = Ensemble([create_model("tiny-cnn"), create_model("tiny-vit")], rule="logit_mean")
    rec = fit_ensemble(ens, ["tiny-cnn", "tiny-vit"], tiny_pool, split_fractions=POOL_FRACTIONS, step=0.5)
    chosen = {(0.5, 0.5): rec["val_auc_equal_weights"]}.get(tuple(rec["weights"]), rec["best_auc"])
    assert rec["val"]["auc"] == pytest.approx(chosen)


def test_fit_scores_native_members_as_inference_reads_them(tiny_pool: Path) -> None:
    """No stub: a ``native`` member (the shipped ones are) is scored on its tiles; 96-px forgeries are
    read as four overlapping 64-px tiles. This crashed before the fit passed ``max_tiles``."""
    from dataclasses import replace

    native = create_model("tiny-cnn", seed=3)
    native.input_spec = replace(native.input_spec, mode="native")
    ens = Ensemble([native, create_model("tiny-vit")], rule="logit_mean")
    rec = fit_ensemble(
        ens, ["tiny-cnn", "tiny-vit"], tiny_pool, split_fractions=POOL_FRACTIONS, pairs=4, forgery_size=96
    )
    assert rec["val"]["n_real"] == rec["val"]["n_fake"] == 4
    # 4 of each: no calibration is fitted on that little (it would be noise), and the record says so
    assert ens.calibration is None and not any(ens.calibrations)
    assert set(rec["uncalibrated"]) == {"tiny-cnn", "tiny-vit", "ensemble"}
    assert "too few validation images to calibrate on (4 real, 4 fake" in rec["uncalibrated"]["ensemble"]


def test_photo_bootstrap_resamples_photos_not_pairs() -> None:
    """Some photos are easy (fakes stand out), others hard (they do not): resampling photos sees how much
    the AUC depends on which photos were drawn; resampling pairs independently understates it."""
    rng = np.random.default_rng(0)
    photos = np.repeat(np.arange(8), 40)
    separation = rng.choice([0.0, 3.0], 8)[photos]
    bias = rng.normal(0, 1.0, 8)[photos]
    y = np.tile([0, 1], 160)
    s = 1 / (1 + np.exp(-(bias + separation * y + rng.normal(0, 0.3, y.size))))
    by_photo = fit_mod.photo_bootstrap_se(y, s, [f"p{i}" for i in photos], 200)
    by_pair = fit_mod.photo_bootstrap_se(y, s, None, 200)
    assert by_photo > 1.5 * by_pair > 0
    assert fit_mod.photo_bootstrap_se(y, s, None, 1) == 0.0


def test_cli_fits_weights_and_threshold(tiny_pool: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "ens"
    args = ["ensemble", "tiny-cnn", "tiny-vit", "--out", str(out), "--fit-on", str(tiny_pool)]
    res = runner.invoke(app, [*args, "--fit-pairs", "4", "--fit-step", "0.25", "--device", "cpu", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "ensemble.json").read_text())
    fit = doc["provenance"]["fit"]
    printed = json.loads(res.stdout)  # the fit's results, not only prose on stderr
    assert printed["fit"] == fit and printed["val"] == doc["metrics"]["val"]
    assert isinstance(doc["provenance"]["command"], str)  # the process's command line (pytest's here)
    assert fit["pairs"] == 4 and 1 <= fit["photos"] <= 4 and fit["weights"] == pytest.approx(doc["weights"])
    assert doc["threshold"] == pytest.approx(fit["threshold"]) and doc["metrics"]["val"]["n_real"] == 4
    # 4 pairs are too few to calibrate on: the raw fit, with a warning per model
    assert "calibration" not in doc and set(fit["uncalibrated"]) == {"tiny-cnn", "tiny-vit", "ensemble"}
    assert "warning: tiny-cnn not calibrated: too few validation images" in " ".join(res.stderr.split())
    # evaluate reports accuracy at the ensemble's own threshold unless told otherwise
    ev = ["evaluate", "--model", str(out), "--forgeries", str(tiny_pool), "--pairs", "2"]
    ev += ["--forgery-size", "64", "--out", str(tmp_path / "ev"), "--json", "--keep-seen"]
    res = runner.invoke(train_app, ev)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["threshold"] == pytest.approx(doc["threshold"])
    res = runner.invoke(train_app, [*ev, "--threshold", "0.5"])
    assert json.loads(res.stdout)["threshold"] == 0.5
    for extra in (["--weights", "1,1"], ["--threshold", "0.7"]):
        res = runner.invoke(app, [*args, *extra, "--overwrite"])
        assert res.exit_code == 2 and "give it without --weights and --threshold" in " ".join(
            res.output.split()
        )
