"""Evaluation: breakdowns per recipe and source, ensembles, forgeries from a pool, files written."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from fakelens.data.datasets import DatasetError
from fakelens.errors import ConfigError
from fakelens.models import Ensemble, create_model
from fakelens.train.evaluate import breakdown, evaluate, summarize_scores
from fakelens.train.metrics import binary_metrics, roc_auc

FRACTIONS = (0.5, 0.25, 0.25)


def test_breakdown_per_recipe_uses_all_reals() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.6, 0.9, 0.8, 0.3, 0.15])
    recipes = ["", "", "", "gan", "gan", "blend", "blend"]
    sources = ["a", "a", "b", "a", "b", "c", "c"]
    per = breakdown(labels, scores, recipes, 0.5, by="recipe")
    assert set(per) == {"gan", "blend"}
    assert per["gan"]["n_real"] == 3 and per["gan"]["n_fake"] == 2 and per["gan"]["auc"] == 1.0
    assert per["blend"]["auc"] == pytest.approx(roc_auc([0, 0, 0, 1, 1], [0.1, 0.2, 0.6, 0.3, 0.15]))
    src = breakdown(labels, scores, sources, 0.5, by="source")
    assert src["a"]["vs"] == "itself" and src["a"]["n_real"] == 2 and src["a"]["n_fake"] == 1
    assert src["c"]["vs"] == "all reals" and src["c"]["n_real"] == 3
    summary = summarize_scores(labels, scores, recipes, sources)
    assert summary["overall"]["n_fake"] == 4 and set(summary["per_source"]) == {"a", "b", "c"}


def test_evaluate_dataset_writes_report_roc_and_scores(tmp_path: Path, folder_data: Path) -> None:
    det = create_model("tiny-cnn")
    rep = evaluate(det, data=folder_data, out=tmp_path / "ev", threshold=0.4)
    assert rep["data"]["split"] == "val"  # no test split: val
    assert rep["n"] == 32 and rep["threshold"] == 0.4
    assert set(rep["per_recipe"]) == {"gan", "diff"} and set(rep["per_source"]) == {"gan", "diff"}
    assert rep["per_recipe"]["gan"]["n_real"] == 16 and rep["per_recipe"]["gan"]["n_fake"] == 8
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text()) == rep
    with open(tmp_path / "ev" / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 32 and {r["recipe"] for r in rows} == {"", "gan", "diff"}
    assert Path(rows[0]["path"]).is_file()
    png = Image.open(tmp_path / "ev" / "roc.png")
    assert png.size[0] > 400 and png.mode in ("RGB", "RGBA")
    assert Image.open(tmp_path / "ev" / "reliability.png").size[0] > 400
    assert set(rep["files"]) == {"metrics", "scores", "roc", "reliability"}
    scores = np.array([float(r["score"]) for r in rows])
    labels = np.array([int(r["label"]) for r in rows])
    assert any(len(r["score"].partition(".")[2]) > 6 for r in rows)  # not rounded: near-ties stay apart
    assert rep["overall"]["auc"] == roc_auc(labels, scores)  # exact scores: the metrics recompute exactly
    assert rep["overall"]["ap"] == binary_metrics(labels, scores, 0.4)["ap"]
    train_rep = evaluate(det, data=folder_data, split="train")
    assert train_rep["n"] == 32 and train_rep["data"]["split"] == "train"


def test_evaluate_ensemble_reports_members(folder_data: Path) -> None:
    a, b = create_model("tiny-cnn", seed=1), create_model("tiny-vit", seed=2)
    rep = evaluate(Ensemble([a, b]), data=folder_data)
    assert set(rep["members"]) == {"tiny-cnn", "tiny-vit"}
    assert rep["bootstrap"]["unit"] == "image" and rep["bootstrap"]["units"] == 32
    assert all("auc_ci" in m and "auc_ci" in m["per_recipe"]["gan"] for m in rep["members"].values())
    assert "bootstrap" not in evaluate(a, data=folder_data, bootstrap=0)
    ra = evaluate(a, data=folder_data)
    assert rep["members"]["tiny-cnn"]["auc"] == pytest.approx(ra["overall"]["auc"])
    assert rep["members"]["tiny-cnn"]["ece"] == pytest.approx(ra["overall"]["ece"])


def test_evaluate_reports_calibration_as_shown(folder_data: Path) -> None:
    """A calibrated member is reported as shown (calibrated, verdict at ½): same AUC as raw, other ECE."""
    from fakelens.models import Calibration

    a, b = create_model("tiny-cnn", seed=1), create_model("tiny-vit", seed=2)
    raw = evaluate(Ensemble([a, b]), data=folder_data, bootstrap=0)
    cal = Calibration(0.5, 0.05)  # squeezes every score towards ½
    rep = evaluate(Ensemble([a, b], calibrations=[cal, None]), data=folder_data, bootstrap=0)
    got, was = rep["members"]["tiny-cnn"], raw["members"]["tiny-cnn"]
    assert got["auc"] == pytest.approx(was["auc"]) and got["ece"] != pytest.approx(was["ece"])
    assert got["threshold"] == 0.5 and rep["members"]["tiny-vit"] == raw["members"]["tiny-vit"]
    assert {"ece", "brier", "nll"} <= set(rep["overall"])


def test_evaluate_forgeries_from_the_pool_test_split(tiny_pool: Path) -> None:
    rep = evaluate(
        create_model("tiny-cnn"),
        forgeries=tiny_pool,
        pairs=6,
        forgery_size=64,
        split_fractions=FRACTIONS,
        recipes=["upsample:global", "resample:median", "local_warp"],
    )
    assert rep["data"]["split"] == "test" and rep["n"] == 12
    assert set(rep["per_recipe"]) == {"upsample:global", "resample:median", "local_warp"}
    assert all(m["n_real"] == 6 and m["n_fake"] == 2 for m in rep["per_recipe"].values())
    assert not math.isnan(rep["overall"]["auc"])
    # the intervals resample the test photos (every pair of a photo shares its content)
    photos = rep["data"]["photos"]
    assert rep["bootstrap"] == {"rounds": 1000, "unit": "photo", "units": photos, "level": 0.95}
    for m in [rep["overall"], *rep["per_recipe"].values()]:
        lo, hi = m["auc_ci"]
        assert 0 <= lo <= hi <= 1 and m["auc_se"] >= 0
    assert "auc_ci" not in next(iter(rep["per_source"].values()))


def test_evaluate_forgeries_after_a_common_jpeg_pass(tiny_pool: Path) -> None:
    """The same forgeries, then one JPEG pass for real and fake alike: the scores change (the pixels did),
    the pairs do not, and the report says how they were encoded."""
    det = create_model("tiny-cnn")
    common: dict[str, Any] = {"forgeries": tiny_pool, "pairs": 4, "forgery_size": 64}
    common |= {"split_fractions": FRACTIONS, "recipes": ["local_warp"]}
    png = evaluate(det, **common)
    jpeg = evaluate(det, **common, forgery_format="jpg", forgery_quality=50)
    assert png["data"]["format"] == "png" and png["data"]["quality"] is None
    assert jpeg["data"]["format"] == "jpeg" and jpeg["data"]["quality"] == 50
    assert jpeg["n"] == png["n"] == 8 and jpeg["overall"] != png["overall"]
    with pytest.raises(ConfigError, match="unknown image format 'gif'"):
        evaluate(det, **common, forgery_format="gif")


def test_evaluate_exceptions(tmp_path: Path, folder_data: Path) -> None:
    det = create_model("tiny-cnn")
    with pytest.raises(ConfigError, match="exactly one of --data"):
        evaluate(det)
    with pytest.raises(ConfigError, match="--threshold must be in"):
        evaluate(det, data=folder_data, threshold=2.0)
    with pytest.raises(DatasetError, match="no images in split 'test'"):
        evaluate(det, data=folder_data, split="test")


def test_evaluate_reads_large_images_as_native_tiles_like_inference(tmp_path: Path, tiny_pool: Path) -> None:
    """A ``native`` detector is evaluated on what inference reads: the mean logits of its tiles."""
    from dataclasses import replace

    from fakelens.io import load_image
    from fakelens.tiling import image_logits

    from .conftest import write_folder_dataset

    data = write_folder_dataset(tmp_path / "big", n=4, splits=("test",), size=(100, 150))
    det = create_model("tiny-cnn")
    det.input_spec = replace(det.input_spec, mode="native")
    rep = evaluate(det, data=data, out=tmp_path / "ev", batch_size=3, max_tiles=4)
    assert rep["n"] == 8 and rep["data"]["max_tiles"] == 4
    with open(tmp_path / "ev" / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    got = np.array([float(r["score"]) for r in rows])
    images = [load_image(r["path"]) for r in rows]
    want = det.fake_probability(image_logits(det, images, max_tiles=4)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    centre = evaluate(det, data=data, max_tiles=1)  # one central tile: other scores
    assert centre["overall"] != rep["overall"]
    common: dict[str, Any] = {"forgeries": tiny_pool, "pairs": 2, "forgery_size": 128}
    common |= {"split_fractions": FRACTIONS, "recipes": ["local_warp"]}
    tiled, one = evaluate(det, **common), evaluate(det, **common, max_tiles=1)
    assert tiled["n"] == one["n"] == 4 and tiled["overall"] != one["overall"]
