"""Checkpoints: round trips for every registered model and ensembles; one clear error per bad file."""

from __future__ import annotations

import inspect
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image
from torch import Tensor, nn

from fakelens.errors import CheckpointError, UnknownNameError
from fakelens.models import (
    MODELS,
    Calibration,
    Detector,
    Ensemble,
    InputSpec,
    create_model,
    load_checkpoint,
    load_detector,
    load_ensemble,
    save_checkpoint,
    wrap_model,
)


def build(name: str, **kwargs: Any) -> Detector:
    if "pretrained" in inspect.signature(MODELS.get(name)).parameters:
        kwargs.setdefault("pretrained", False)
    return create_model(name, **kwargs)


def logits(det: Detector, seed: int = 0) -> Tensor:
    x = torch.randn(1, 3, *det.input_spec.size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return det(x)


def one_error(path: Any, match: str, **kwargs: Any) -> CheckpointError:
    """load_checkpoint(path) raises exactly one CheckpointError (no chained traceback) matching ``match``."""
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path, **kwargs)
    err = info.value
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)
    return err


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    """A saved tiny-cnn checkpoint directory."""
    return save_checkpoint(create_model("tiny-cnn", seed=7), tmp_path / "ckpt")


# ------------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", MODELS.names())
def test_round_trip_every_registered_model(name: str, tmp_path: Path) -> None:
    det = build(name, seed=5)
    out = save_checkpoint(det, tmp_path / name, provenance={"data": "unit test"}, metrics={"auc": 0.5})
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]  # no temp files left
    config = json.loads((out / "config.json").read_text())
    assert config["format_version"] == 1 and config["arch"] == name and config["kwargs"]["seed"] == 5
    assert config["labels"] == list(det.labels) and config["cam_layers"] == list(det.cam_layers)
    assert config["provenance"] == {"data": "unit test"} and config["metrics"] == {"auc": 0.5}
    loaded = load_checkpoint(out)
    assert isinstance(loaded, Detector) and not loaded.training
    assert loaded.describe() == det.describe()
    assert torch.equal(logits(loaded), logits(det))


def test_effnet_imagenet_head_round_trip(tmp_path: Path) -> None:
    det = build("effnet-lite0", imagenet_head=True, seed=1)
    loaded = load_checkpoint(save_checkpoint(det, tmp_path / "e"))
    assert len(loaded.labels) == 1000 and loaded.labels == det.labels
    assert loaded.config["imagenet_head"] is True
    assert torch.equal(logits(loaded), logits(det))


@pytest.mark.parametrize("which", ["dir", "config.json", "model.safetensors"])
def test_load_from_directory_or_either_file(saved: Path, which: str) -> None:
    path = saved if which == "dir" else saved / which
    assert torch.equal(logits(load_checkpoint(path)), logits(create_model("tiny-cnn", seed=7)))


def test_metadata_changed_after_creation_survives(tmp_path: Path) -> None:
    det = create_model("tiny-cnn", seed=2)
    det.input_spec = InputSpec(size=(64, 64), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), mode="resize")
    det.cam_layers = ("net.features.2", "net.features.3")
    det.calibration = Calibration(0.9, 0.4)
    loaded = load_checkpoint(save_checkpoint(det, tmp_path / "c"))
    assert loaded.input_spec == det.input_spec and loaded.cam_layers == det.cam_layers
    assert loaded.calibration == det.calibration
    assert create_model("tiny-cnn").calibration is None


def test_resave_overwrites(saved: Path) -> None:
    save_checkpoint(create_model("tiny-vit", seed=3), saved)
    assert load_checkpoint(saved).name == "tiny-vit"
    assert sorted(p.name for p in saved.iterdir()) == ["config.json", "model.safetensors"]


class Plain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x).mean((2, 3)))


def test_wrapped_model_needs_its_module(tmp_path: Path) -> None:
    torch.manual_seed(0)
    det = wrap_model(Plain(), labels=("real", "fake"), cam_layers=["body"], input_spec=InputSpec(size=(8, 8)))
    out = save_checkpoint(det, tmp_path / "w")
    one_error(out, "in Python with the module it was saved from")
    loaded = load_checkpoint(out, net=Plain())
    assert torch.equal(logits(loaded), logits(det))
    assert loaded.cam_layers == ("net.body",) and loaded.input_spec.size == (8, 8)


# ------------------------------------------------------------------------------------------- ensembles


def test_ensemble_round_trip(tmp_path: Path) -> None:
    ens = Ensemble(
        [create_model("tiny-cnn", seed=1), create_model("tiny-vit", seed=2)], [1, 3], "logit_mean", 0.4
    )
    out = save_checkpoint(ens, tmp_path / "ens", provenance={"note": "x"})
    config = json.loads((out / "ensemble.json").read_text())
    assert config["kind"] == "ensemble" and [m["path"] for m in config["members"]] == [
        "member-00-tiny-cnn",
        "member-01-tiny-vit",
    ]
    for loaded in (load_detector(out), load_ensemble(out / "ensemble.json")):
        assert isinstance(loaded, Ensemble)
        assert loaded.rule == "logit_mean" and loaded.threshold == 0.4
        assert torch.allclose(loaded.weights, ens.weights)
        for a, b in zip(loaded.members, ens.members, strict=True):
            assert torch.equal(logits(a), logits(b))
    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8))]
    assert load_ensemble(out).predict(imgs)[0].fake_probability == pytest.approx(
        ens.predict(imgs)[0].fake_probability
    )
    assert "calibration" not in config  # nothing calibrated: the file reads as before


def test_calibrated_ensemble_round_trip(tmp_path: Path) -> None:
    cals = [Calibration(0.9, 0.4), None]
    ens = Ensemble(
        [create_model("tiny-cnn", seed=1), create_model("tiny-vit", seed=2)],
        rule="logit_mean",
        calibrations=cals,
        calibration=Calibration(0.7, 0.8),
    )
    loaded = load_ensemble(save_checkpoint(ens, tmp_path / "ens"))
    assert loaded.calibrations == tuple(cals) and loaded.calibration == Calibration(0.7, 0.8)
    probs = torch.tensor([[0.95, 0.3], [0.5, 0.99]])
    assert torch.allclose(loaded.combine(probs), ens.combine(probs))
    config = json.loads((tmp_path / "ens" / "ensemble.json").read_text())
    for bad in ({"members": [{"scale": 1}, None]}, {"combined": {"threshold": 2, "scale": 1}}, [1]):
        config["calibration"] = bad
        (tmp_path / "ens" / "ensemble.json").write_text(json.dumps(config))
        with pytest.raises(CheckpointError, match=r"ensemble\.json"):
            load_ensemble(tmp_path / "ens")


def test_ensemble_errors(tmp_path: Path) -> None:
    out = save_checkpoint(Ensemble([create_model("tiny-cnn")]), tmp_path / "ens")
    one_error(out, "ensemble checkpoint; load it with load_detector")
    config = json.loads((out / "ensemble.json").read_text())
    config["members"] = [{"path": "../elsewhere"}]
    (out / "ensemble.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="leaves the checkpoint directory"):
        load_ensemble(out)
    config["members"] = [{"path": "member-00-tiny-cnn"}]
    config["rule"] = "median"
    (out / "ensemble.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="unknown ensemble rule"):
        load_ensemble(out)
    with pytest.raises(CheckpointError, match="holds an ensemble"):
        save_checkpoint(create_model("tiny-cnn"), out)


# ------------------------------------------------------------------------------------------- load_detector


def test_load_detector_by_name_or_path(saved: Path) -> None:
    assert load_detector("tiny-vit").name == "tiny-vit"
    assert isinstance(load_detector(saved), Detector)
    assert isinstance(load_detector(str(saved / "model.safetensors")), Detector)
    with pytest.raises(UnknownNameError, match=r"did you mean tiny-cnn.*nor is 'tiny-cnm' a checkpoint path"):
        load_detector("tiny-cnm")
    with pytest.raises(CheckpointError, match="not found"):
        load_detector(str(saved / "missing" / "model.safetensors"))


# ------------------------------------------------------------------------------------------- bad files


def test_missing_paths(saved: Path, tmp_path: Path) -> None:
    one_error(tmp_path / "nowhere", "checkpoint not found")
    (tmp_path / "empty").mkdir()
    one_error(tmp_path / "empty", "checkpoint file not found: .*config.json")
    (saved / "model.safetensors").unlink()
    one_error(saved, "weights not found: .*model.safetensors")
    lonely = tmp_path / "lonely" / "model.safetensors"
    lonely.parent.mkdir()
    lonely.write_bytes(b"")
    one_error(lonely, "no config.json next to it")


def test_a_training_run_folder_names_its_checkpoints(saved: Path, tmp_path: Path) -> None:
    """`--model runs/x` (the run, not runs/x/best) said 'checkpoint file not found: runs/x/config.json'."""
    run = tmp_path / "run"
    shutil.copytree(saved, run / "best")
    one_error(run, f"{run} is a training run, not a checkpoint: give its checkpoint {run / 'best'}$")
    shutil.copytree(saved, run / "last")
    one_error(run, f"give its checkpoint {run / 'best'} \\(or {run / 'last'}, the last epoch\\)")
    with pytest.raises(CheckpointError, match="is a training run"):
        load_detector(run)


def test_jpeg_renamed_to_safetensors(saved: Path) -> None:
    Image.new("RGB", (8, 8), (200, 10, 10)).save(saved / "model.safetensors", format="JPEG")
    one_error(saved, "is not a readable safetensors file")


def test_truncated_safetensors(saved: Path) -> None:
    data = (saved / "model.safetensors").read_bytes()
    (saved / "model.safetensors").write_bytes(data[: len(data) // 2])
    one_error(saved, "is not a readable safetensors file")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"format_version": 1, "arch": ', r"not valid JSON \(line 1, column"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"arch": "tiny-cnn"}', "no integer format_version"),
        ('{"format_version": 99, "arch": "tiny-cnn"}', "newer than this fakelens reads"),
    ],
)
def test_corrupt_json(saved: Path, text: str, match: str) -> None:
    (saved / "config.json").write_text(text)
    one_error(saved, match)


def edit_config(directory: Path, **changes: Any) -> None:
    config = json.loads((directory / "config.json").read_text())
    config.update(changes)
    (directory / "config.json").write_text(json.dumps(config))


def test_unknown_arch(saved: Path) -> None:
    edit_config(saved, arch="tiny-cnm")
    one_error(saved, "unknown model 'tiny-cnm'; did you mean tiny-cnn")


def test_bad_fields(saved: Path) -> None:
    edit_config(saved, input_spec={"size": [64, 64]})
    one_error(saved, "invalid field")
    edit_config(saved, input_spec=InputSpec(size=(64, 64)).to_dict(), kwargs={"depth": 3})
    one_error(saved, "kwargs .* do not fit model 'tiny-cnn'")
    edit_config(saved, kwargs={"seed": 7, "num_classes": 2}, cam_layers=["net.nope"])
    one_error(saved, "no layer 'net.nope'")
    edit_config(saved, cam_layers=[], calibration={"threshold": 0.9, "scale": -1})
    one_error(saved, "invalid field .*calibration scale")


def test_wrong_label_count(saved: Path) -> None:
    edit_config(saved, labels=["real", "fake", "other"])
    one_error(saved, "lists 3 labels, but model 'tiny-cnn' built from its kwargs has 2 outputs")


def tensors(directory: Path) -> dict[str, Tensor]:
    return safetensors.torch.load_file(str(directory / "model.safetensors"))


def test_missing_and_unexpected_tensors(saved: Path) -> None:
    state = tensors(saved)
    weight = state.pop("net.head.weight")
    state["net.extra.weight"] = torch.zeros(5, 3)
    safetensors.torch.save_file(state, str(saved / "model.safetensors"))
    err = one_error(saved, "does not fit the model")
    assert "1 missing (net.head.weight (2, 64))" in str(err)
    assert "1 unexpected (net.extra.weight (5, 3))" in str(err)
    del state["net.extra.weight"]
    state["net.head.weight"] = weight
    safetensors.torch.save_file(state, str(saved / "model.safetensors"))
    assert isinstance(load_checkpoint(saved), Detector)


def test_misshaped_tensors(saved: Path, tmp_path: Path) -> None:
    other = save_checkpoint(create_model("tiny-cnn", num_classes=1), tmp_path / "one")
    shutil.copy(other / "model.safetensors", saved / "model.safetensors")
    err = one_error(saved, "mis-shaped")
    assert "net.head.weight: file (1, 64) vs model (2, 64)" in str(err)
    assert "net.head.bias: file (1,) vs model (2,)" in str(err)


def test_many_bad_keys_are_summarised(saved: Path) -> None:
    safetensors.torch.save_file({"x": torch.zeros(1)}, str(saved / "model.safetensors"))
    err = str(one_error(saved, "missing"))
    assert ", …)" in err and "1 unexpected (x (1,))" in err and len(err) < 600


def test_float16_storage_halves_the_file_and_loads_as_float32(tmp_path: Path) -> None:
    det = create_model("tiny-cnn", seed=3)
    save_checkpoint(det, tmp_path / "f32")
    save_checkpoint(det, tmp_path / "f16", dtype=torch.float16)
    s32 = (tmp_path / "f32" / "model.safetensors").stat().st_size
    s16 = (tmp_path / "f16" / "model.safetensors").stat().st_size
    assert s16 < 0.6 * s32
    stored = safetensors.torch.load_file(str(tmp_path / "f16" / "model.safetensors"))
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    back = load_checkpoint(tmp_path / "f16")
    assert all(p.dtype == torch.float32 for p in back.parameters())
    x = torch.rand(2, 3, *det.input_spec.size)
    with torch.no_grad():
        assert torch.allclose(back(x), det.eval()(x), atol=1e-2)


def test_an_untrained_architecture_stays_untrained_when_saved(tmp_path: Path) -> None:
    """Saving random weights does not train them: the mark survives a checkpoint and an ensemble of it."""
    from fakelens.models import Ensemble, load_detector

    det = load_detector("tiny-cnn")
    assert det.untrained
    path = save_checkpoint(det, tmp_path / "random")
    assert load_checkpoint(path).untrained
    ens = save_checkpoint(Ensemble.of([load_checkpoint(path)]), tmp_path / "ens")
    assert all(m.untrained for m in load_detector(ens).members)
    assert create_model("tiny-cnn").untrained  # however it is built
    trained = create_model("tiny-cnn")
    trained.untrained = False  # what `fakelens train` does once it trains it
    assert not load_checkpoint(save_checkpoint(trained, tmp_path / "trained")).untrained


def test_a_model_registered_from_outside_saves_and_loads_by_name(tmp_path: Path) -> None:
    """A factory built on wrap_model records no arch: create_model records its name and keyword arguments,
    so the checkpoint loads by name; ``trained=True`` (the factory loads trained weights) is not marked."""
    from fakelens.models import MODELS, load_detector, register_model, wrap_model
    from fakelens.models.registry import _TRAINED

    @register_model("test-outside", trained=True)
    def outside(width: int = 4) -> Any:
        net = nn.Sequential(nn.Conv2d(3, width, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        return wrap_model(
            nn.Sequential(net, nn.Linear(width, 2)), labels=("real", "fake"), cam_layers=("net.0.0",)
        )

    try:
        det = load_detector("test-outside")
        assert not det.untrained and det.config == {"arch": "test-outside"}
        wide = create_model("test-outside", width=6)
        back = load_detector(save_checkpoint(wide, tmp_path / "c"))
        assert back.config == {"arch": "test-outside", "width": 6} and not back.untrained
        for a, b in zip(wide.state_dict().values(), back.state_dict().values(), strict=True):
            assert torch.equal(a, b)
        from fakelens.models.registry import untrained_by_name

        with pytest.raises(ValueError, match="registered twice"):  # a clash changes no mark
            register_model("tiny-cnn", trained=True)(outside)
        assert untrained_by_name("tiny-cnn")
    finally:
        MODELS._items.pop("test-outside", None)
        _TRAINED.discard("test-outside")


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_checkpoint_files_are_readable_as_the_umask_allows(tmp_path: Path, umask: int, mode: int) -> None:
    """mkstemp made config.json and model.safetensors owner-only while the run's other files were not:
    another user (a teammate, the service) could not load the weights."""
    old = os.umask(umask)
    try:
        out = save_checkpoint(create_model("tiny-cnn"), tmp_path / "ckpt")
    finally:
        os.umask(old)
    assert {(p.name, p.stat().st_mode & 0o777) for p in out.iterdir()} == {
        ("config.json", mode),
        ("model.safetensors", mode),
    }
