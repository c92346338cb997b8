"""The ensemble shipped inside the package: present, loadable, documented, working on a bundled photo."""

from __future__ import annotations

import json

import torch

from fakelens.cli.explain import demo_images
from fakelens.io import load_image
from fakelens.models import Ensemble, load_detector
from fakelens.models.checkpoint import default_ensemble_path


def test_default_ensemble_ships_with_its_model_card() -> None:
    root = default_ensemble_path()
    assert (root / "ensemble.json").is_file() and (root / "MODEL_CARD.md").is_file()
    config = json.loads((root / "ensemble.json").read_text())
    for member in config["members"]:
        member_config = json.loads((root / member["path"] / "config.json").read_text())
        prov = member_config["provenance"]
        assert member_config["metrics"]["val"]["auc"] > 0.5
        assert prov["seed"] == 0 and prov["data"]["kind"] == "forgeries" and "train" in prov["command"]
    total = sum(p.stat().st_size for p in root.rglob("*.safetensors"))
    assert total < 20 * 2**20  # float16 members, small enough to commit


def test_default_ensemble_scores_a_bundled_photo() -> None:
    ens = load_detector("default")
    assert isinstance(ens, Ensemble) and ens.names == ("effnet-lite0", "vit-tiny-reg4-npr")
    assert all(m.input_spec.size == (256, 256) for m in ens.members)
    assert all(p.dtype == torch.float32 for m in ens.members for p in m.parameters())
    photo = next(p for p in demo_images() if p.name == "grace_hopper.jpg")
    [verdict] = ens.predict([load_image(photo)])
    assert 0.0 <= verdict.fake_probability <= 1.0 and len(verdict.members) == 2


def test_default_ensemble_is_calibrated_on_its_validation_photos() -> None:
    """Each member and the combination are calibrated (their fitted operating points → ½), as the record
    of the fit says; the raw operating points sit high, where the members were overconfident."""
    ens = load_detector("default")
    assert isinstance(ens, Ensemble) and ens.calibrated and ens.threshold == 0.5
    config = json.loads((default_ensemble_path() / "ensemble.json").read_text())
    assert ens.calibration_dict() == config["calibration"] == config["provenance"]["fit"]["calibration"]
    for cal, member in zip(ens.calibrations, config["members"], strict=True):
        assert cal is not None and cal.threshold > 0.8 and 0.2 < cal.scale < 1.0
        alone = load_detector(default_ensemble_path() / member["path"])  # a member used on its own
        assert alone.calibration == cal
    assert config["metrics"]["val"]["ece"] < 0.1
