"""The training loop: exact resume, checkpoints with provenance, early stopping, frozen warm-up, aux mask."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch

from fakelens.data.datasets import DatasetError
from fakelens.errors import ConfigError, UnknownNameError
from fakelens.models import MODELS, Detector, create_model, load_checkpoint
from fakelens.models.registry import seeded_init
from fakelens.models.tiny import TinyCNN
from fakelens.train.loop import (
    AuxMaskHead,
    TrainConfig,
    classification_loss,
    head_parameter_names,
    reset_head,
    train,
)

FRACTIONS = (0.5, 0.25, 0.25)


def cfg(out: Path, data: Path, **kw: object) -> TrainConfig:
    base: dict[str, object] = {
        "out": str(out),
        "model": "tiny-cnn",
        "data": str(data),
        "epochs": 2,
        "batch_size": 8,
        "augment": "light",
        "lr": 3e-3,
        "command": "pytest",
    }
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def weights(run: Path, which: str = "last") -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(str(run / which / "model.safetensors"))


def test_resume_continues_exactly(tmp_path: Path, folder_data: Path) -> None:
    """2 epochs straight == 1 epoch, then resumed for 1 (same weights, bit for bit, on the CPU)."""
    straight = train(cfg(tmp_path / "a", folder_data, augment="robust"), progress=False)
    first = train(cfg(tmp_path / "b", folder_data, augment="robust"), progress=False, max_epochs=1)
    assert first.epochs_run == 1
    resumed = train(cfg(tmp_path / "b", folder_data, augment="robust", resume=True), progress=False)
    assert resumed.epochs_run == straight.epochs_run == 2
    wa, wb = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert [h["loss"] for h in straight.history] == [h["loss"] for h in resumed.history]


DROPOUT_MODEL = "test-tiny-cnn-dropout"


def _dropout_model(seed: int = 0) -> Detector:
    """tiny-cnn with dropout before its head: training draws from the global torch RNG."""
    with seeded_init(seed):
        net = TinyCNN()
    net.head = torch.nn.Sequential(torch.nn.Dropout(0.5), net.head)
    return Detector(
        net,
        input_spec=create_model("tiny-cnn").input_spec,
        cam_layers=("net.features.3",),
        name=DROPOUT_MODEL,
        config={"arch": DROPOUT_MODEL, "seed": seed},
    )


def test_resume_restores_the_random_state(
    tmp_path: Path, folder_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With dropout, resuming is exact only because the global RNG state is saved and restored."""
    monkeypatch.setitem(MODELS._items, DROPOUT_MODEL, _dropout_model)  # registered for this test only
    kw: dict[str, object] = {"model": DROPOUT_MODEL, "augment": "none"}
    train(cfg(tmp_path / "a", folder_data, **kw), progress=False)
    train(cfg(tmp_path / "b", folder_data, **kw), progress=False, max_epochs=1)
    torch.manual_seed(12345)  # whatever the caller's RNG holds, the resumed run continues the saved one
    train(cfg(tmp_path / "b", folder_data, resume=True, **kw), progress=False)
    wa, wb = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_checkpoints_provenance_and_history(tmp_path: Path, folder_data: Path) -> None:
    res = train(cfg(tmp_path / "run", folder_data, epochs=3, patience=0), progress=False)
    assert (
        res.best is not None and res.best_auc is not None and res.best_auc > 0.9
    )  # the checkerboard is easy
    conf = json.loads((res.best / "config.json").read_text())
    prov = conf["provenance"]
    assert prov["seed"] == 0 and prov["command"] == "pytest" and prov["precision"] == "float32"
    assert len(prov["data"]["data_sha256"]) == 64 and prov["data"]["layout"] == "folder"
    assert prov["recipes"] == ["diff", "gan"] and prov["data"]["validation"] == "the dataset's val split"
    assert prov["timings"]["train_seconds"] > 0
    assert conf["metrics"]["val"]["auc"] == pytest.approx(res.best_auc)
    assert conf["metrics"]["epoch"] == res.best_epoch
    det = load_checkpoint(res.best)  # a plain detector checkpoint: loads without fakelens.train
    assert det.name == "tiny-cnn"
    hist = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [e["epoch"] for e in hist["epochs"]] == [0, 1, 2]
    assert (tmp_path / "run" / "last" / "train_state.pt").is_file()
    assert not list((tmp_path / "run").glob(".*tmp"))


def test_early_stopping(tmp_path: Path, folder_data: Path) -> None:
    res = train(cfg(tmp_path / "run", folder_data, epochs=6, patience=1, min_delta=1.0), progress=False)
    assert res.stopped_early and res.epochs_run == 2 and res.best_epoch == 0
    # resuming a finished run does nothing more
    again = train(
        cfg(tmp_path / "run", folder_data, epochs=6, patience=1, min_delta=1.0, resume=True), progress=False
    )
    assert again.epochs_run == 2


def test_frozen_backbone_warmup(tmp_path: Path, folder_data: Path) -> None:
    train(cfg(tmp_path / "run", folder_data, epochs=2, freeze_epochs=1), progress=False, max_epochs=1)
    after = weights(tmp_path / "run")
    init = create_model("tiny-cnn", seed=0).state_dict()
    head = head_parameter_names(create_model("tiny-cnn"))
    assert head == {"net.head.weight", "net.head.bias"}
    for k, v in after.items():
        same = torch.equal(v, init[k])
        assert same != (k in head), k  # the head moved, nothing else did (BN statistics included)


def test_aux_mask_on_forgeries_leaves_the_detector_format_unchanged(tmp_path: Path, tiny_pool: Path) -> None:
    res = train(
        TrainConfig(
            out=str(tmp_path / "run"),
            model="tiny-cnn",
            forgeries=str(tiny_pool),
            epochs=1,
            batch_size=8,
            pairs_per_epoch=8,
            val_pairs=4,
            forgery_size=64,
            split_fractions=FRACTIONS,
            aux_mask=True,
            recipes=["upsample:regional", "local_warp"],
            augment="robust",
        ),
        progress=False,
    )
    rec = res.history[0]
    assert rec["aux_loss"] is not None and rec["aux_loss"] > 0
    saved = weights(tmp_path / "run", "last")
    assert saved.keys() == create_model("tiny-cnn").state_dict().keys()
    conf = json.loads((tmp_path / "run" / "last" / "config.json").read_text())
    assert conf["provenance"]["recipes"] == ["upsample:regional", "local_warp"]
    assert conf["provenance"]["data"]["kind"] == "forgeries" and conf["provenance"]["aux_mask"] is True
    from fakelens.data.pool import entries_sha256

    assert conf["provenance"]["data"]["pool_entries_sha256"] == entries_sha256(tiny_pool)
    state = torch.load(tmp_path / "run" / "last" / "train_state.pt", weights_only=True)
    assert set(state["aux"]) == {"conv.weight", "conv.bias"}


@pytest.mark.parametrize("name", ["tiny-cnn", "tiny-vit"])
def test_aux_head_hooks_and_loss(name: str) -> None:
    det = create_model(name)
    head = AuxMaskHead(det)
    assert not det.layer(head.layer_name)._forward_hooks  # the channel probe left no hook
    h, w = det.input_spec.size
    x = torch.randn(2, 3, h, w)
    head.attach(det)
    try:
        det(x)
        mask = torch.zeros(2, 1, h, w)
        mask[0, :, : h // 2] = 1.0
        loss = head.loss(mask, (h, w))
        loss.backward()
        assert loss.item() > 0 and head.conv.weight.grad is not None
        det(x)
        unknown = head.loss(torch.full((2, 1, h, w), -1.0), (h, w))
        assert unknown.item() == 0.0  # masks marked unknown are skipped
    finally:
        head.detach()
    assert not det.layer(head.layer_name)._forward_hooks


@pytest.mark.parametrize(("name", "kwargs"), [("tiny-vit", {}), ("effnet-lite0", {"pretrained": False})])
def test_reset_head_starts_from_even_odds(name: str, kwargs: dict[str, object]) -> None:
    det = create_model(name, **kwargs)
    x = det.input_spec.normalize(
        torch.rand(3, 3, *det.input_spec.size, generator=torch.Generator().manual_seed(0))
    )
    reset_head(det, seed=7)
    with torch.no_grad():
        z = det(x)
    assert z.abs().max() < 1.0  # the factory's head may start far from it (effnet-lite0: logits ±8)
    other = create_model(name, **kwargs)
    reset_head(other, seed=7)
    sa, sb = det.state_dict(), other.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_classification_loss_respects_fake_index() -> None:
    logits = torch.tensor([[2.0, -2.0], [-2.0, 2.0]])
    y = torch.tensor([1, 0])
    assert classification_loss(logits, y, fake_index=0) < classification_loss(logits, y, fake_index=1)
    one = classification_loss(torch.tensor([[3.0], [-3.0]]), torch.tensor([1, 0]), fake_index=0)
    assert one.item() < 0.1


def test_config_and_resume_exceptions(tmp_path: Path, folder_data: Path) -> None:
    with pytest.raises(ConfigError, match="exactly one data source"):
        train(TrainConfig(out=str(tmp_path / "x")), progress=False)
    with pytest.raises(UnknownNameError, match="unknown model 'tiny-cn'; did you mean tiny-cnn"):
        train(cfg(tmp_path / "x", folder_data, model="tiny-cn"), progress=False)
    with pytest.raises(DatasetError, match="no such dataset"):
        train(cfg(tmp_path / "nodata", tmp_path / "missing"), progress=False)
    assert not (tmp_path / "nodata").exists()  # no empty --out left behind
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(cfg(tmp_path / "fresh", folder_data, resume=True), progress=False)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        train(cfg(blocker, folder_data), progress=False)
    with pytest.raises(ConfigError, match="cannot write to --out"):
        train(cfg(blocker / "sub", folder_data), progress=False)
    train(cfg(tmp_path / "run", folder_data, epochs=2), progress=False, max_epochs=1)
    with pytest.raises(ConfigError, match="already holds a training run; pass --resume"):
        train(cfg(tmp_path / "run", folder_data, epochs=2), progress=False)
    with pytest.raises(ConfigError, match="started with batch_size=8, not 4"):
        train(cfg(tmp_path / "run", folder_data, epochs=2, batch_size=4, resume=True), progress=False)
    with pytest.raises(ConfigError, match="fewer than one batch"):
        train(cfg(tmp_path / "big", folder_data, batch_size=1000), progress=False)


@pytest.mark.slow
def test_tiny_cnn_learns_upsampling_forgeries(tmp_path: Path, tiny_pool: Path) -> None:
    """A real (small) training: tiny-cnn on on-the-fly up-sampling forgeries at native resolution learns
    to tell them from reals of *other* photos (the pool's test split), well above chance."""
    from fakelens.train.evaluate import evaluate

    res = train(
        TrainConfig(
            out=str(tmp_path / "run"),
            model="tiny-cnn",
            forgeries=str(tiny_pool),
            recipes=["upsample:global"],
            forgery_size=64,
            split_fractions=FRACTIONS,
            epochs=8,
            batch_size=32,
            pairs_per_epoch=256,
            val_pairs=64,
            lr=3e-3,
            augment="light",
            patience=0,
        ),
        progress=False,
    )
    assert res.best is not None
    test: dict[str, Any] = {"forgeries": tiny_pool, "recipes": ["upsample:global"], "pairs": 128}
    test |= {"forgery_size": 64, "split_fractions": FRACTIONS, "seed": 1}
    rep = evaluate(load_checkpoint(res.best), **test)
    assert rep["data"]["split"] == "test"
    assert rep["overall"]["auc"] > 0.8, rep["overall"]
    # evaluate shows the detector's calibrated probabilities: better calibrated on photos it never saw
    raw = load_checkpoint(res.best)
    raw.calibration = None
    plain = evaluate(raw, **test)
    assert plain["overall"]["auc"] == pytest.approx(rep["overall"]["auc"])
    assert rep["overall"]["nll"] < plain["overall"]["nll"], (rep["overall"], plain["overall"])


def test_every_checkpoint_carries_its_validation_calibration(
    tmp_path: Path, folder_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each saved epoch is calibrated on its own validation scores (their EER threshold → ½); used alone, the
    detector shows calibrated probabilities and decides at ½, exactly where the raw score crosses t. (This
    tiny validation set is below the size a calibration needs; the floor is lowered to test the mechanics.)"""
    import fakelens.train.loop as loop
    from fakelens.analysis import as_ensemble
    from fakelens.models.checkpoint import read_json

    monkeypatch.setattr(loop, "MIN_CALIBRATION_PER_CLASS", 1)

    train(cfg(tmp_path / "run", folder_data, epochs=1), progress=False)
    det = load_checkpoint(tmp_path / "run" / "best")
    config = read_json(tmp_path / "run" / "best" / "config.json")
    assert det.calibration is not None and config["calibration"] == det.calibration.to_dict()
    assert det.calibration.threshold == pytest.approx(config["metrics"]["val"]["eer_threshold"], abs=1e-6)
    assert {"ece", "brier", "nll"} <= set(config["metrics"]["val_calibrated"])
    ens = as_ensemble(det)
    t = det.calibration.threshold
    raw = torch.tensor([[t / 2], [t - 1e-4], [t + 1e-4], [(1 + t) / 2]])
    assert [v.verdict for v in ens.verdicts(raw)] == ["real", "real", "fake", "fake"]
    assert ens.verdicts(raw)[0].members[0].fake_probability == pytest.approx(det.calibration(raw[0]).item())


def test_time_limit_stops_and_resume_goes_on(tmp_path: Path, folder_data: Path) -> None:
    """A time limit stops the run between whole epochs (validated and saved); --resume then trains exactly
    what one uninterrupted run would have."""
    res = train(cfg(tmp_path / "run", folder_data, epochs=3, time_limit=1e-6), progress=False)
    assert res.epochs_run == 1 and not res.stopped_early
    whole = train(cfg(tmp_path / "whole", folder_data, epochs=3), progress=False)
    assert res.history[0]["stopped"] == "time limit" and res.history[0]["steps"] == whole.history[0]["steps"]
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()
    more = train(cfg(tmp_path / "run", folder_data, epochs=3, resume=True), progress=False)
    assert more.epochs_run == 3
    weights = [(tmp_path / d / "last" / "model.safetensors").read_bytes() for d in ("run", "whole")]
    assert weights[0] == weights[1]
    with pytest.raises(ConfigError, match="time-limit"):
        cfg(tmp_path / "x", folder_data, time_limit=0).check()


def test_input_size_reaches_the_model_and_its_checkpoint(tmp_path: Path, tiny_pool: Path) -> None:
    c = TrainConfig(
        out=str(tmp_path / "run"),
        model="vit-tiny-reg4",
        forgeries=str(tiny_pool),
        model_kwargs={"input_size": 64},
        epochs=1,
        batch_size=4,
        pairs_per_epoch=4,
        val_pairs=4,
        forgery_size=64,
        augment="forensic",
        split_fractions=FRACTIONS,
        steps_per_epoch=1,
        command="pytest",
        fit="native",
    )
    train(c, progress=False)
    det = load_checkpoint(tmp_path / "run" / "last")
    assert det.input_spec.size == (64, 64)
    assert det.input_spec.mode == "native"  # --fit: how inference reads images, kept with the weights
    assert det.net.patch_embed.grid_size == (4, 4)  # position embedding made for 64², not interpolated
    with pytest.raises(ConfigError, match="does not take --input-size"):
        TrainConfig(out="x", model="tiny-cnn", data="d", model_kwargs={"input_size": 64}).check()
    with pytest.raises(ConfigError, match="unknown --fit 'tiles'"):
        TrainConfig(out="x", model="tiny-cnn", data="d", fit="tiles").check()


def test_init_fine_tunes_from_a_checkpoint(tmp_path: Path, tiny_pool: Path) -> None:
    from fakelens.models.checkpoint import training_photos

    def run(name: str, **kw: object) -> Path:
        base: dict[str, object] = {
            "out": str(tmp_path / name),
            "model": "tiny-cnn",
            "forgeries": str(tiny_pool),
            "epochs": 1,
            "batch_size": 4,
            "pairs_per_epoch": 4,
            "val_pairs": 4,
            "forgery_size": 64,
            "split_fractions": FRACTIONS,
            "recipes": ["upsample:global"],
            "augment": "none",
            "command": "pytest",
        }
        train(TrainConfig(**{**base, **kw}), progress=False)  # type: ignore[arg-type]
        return tmp_path / name / "last"

    start = run("start", lr=3e-2)
    # a vanishing learning rate: the fine-tuned parameters stay those of the start (head kept, not reset)
    tuned = run(
        "tuned", init=str(start), lr=1e-12, weight_decay=0.0, seed=1, split_fractions=(0.25, 0.5, 0.25)
    )
    fresh = run("fresh", lr=1e-12, weight_decay=0.0, seed=1, split_fractions=(0.25, 0.5, 0.25))
    params = [k for k, _ in create_model("tiny-cnn").named_parameters()]
    w0, w1, w2 = weights(start.parent), weights(tuned.parent), weights(fresh.parent)
    assert all(torch.allclose(w0[k], w1[k], atol=1e-6) for k in params)
    assert not all(torch.allclose(w0[k], w2[k], atol=1e-3) for k in params)

    conf = json.loads((tuned / "config.json").read_text())
    init = conf["provenance"]["init"]
    assert init["checkpoint"] == str(start) and init["data"]["kind"] == "forgeries"
    assert conf["provenance"]["config"]["head_init"] == "keep"
    # what the start was trained and validated on counts as seen by the fine-tuned model (and its children)
    seen_start, seen_tuned = training_photos(start).sha256, training_photos(tuned).sha256
    own = conf["provenance"]["data"]["photos"]
    assert seen_tuned == seen_start | set(own["train"] + own["val"]) and seen_tuned > set(own["val"])
    again = run("again", init=str(tuned), lr=1e-12, split_fractions=(0.5, 0.25, 0.25), seed=2)
    assert training_photos(again).sha256 >= seen_tuned


def test_init_errors_name_the_problem(tmp_path: Path, folder_data: Path) -> None:
    from fakelens.errors import CheckpointError
    from fakelens.models.checkpoint import default_ensemble_path, member_checkpoint

    assert member_checkpoint("default", "effnet-lite0").parent.parent == default_ensemble_path()
    with pytest.raises(CheckpointError, match="0 members of architecture 'tiny-cnn'"):
        member_checkpoint("default", "tiny-cnn")
    start = train(cfg(tmp_path / "start", folder_data, epochs=1), progress=False).last
    with pytest.raises(CheckpointError, match="holds a 'tiny-cnn' detector, not 'tiny-vit'"):
        train(cfg(tmp_path / "vit", folder_data, model="tiny-vit", init=str(start)), progress=False)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        train(cfg(tmp_path / "x", folder_data, init=str(tmp_path / "nowhere")), progress=False)
    big = cfg(
        tmp_path / "y", folder_data, model="effnet-lite0", init="default", model_kwargs={"input_size": 64}
    )
    with pytest.raises(ConfigError, match="built with input_size=256; drop --input-size"):
        train(big, progress=False)


def test_a_folder_read_through_its_manifest_records_the_manifest_hash(
    tmp_path: Path, folder_data: Path
) -> None:
    from fakelens.io import sha256_file

    rows = ["path,label,split"] + [
        f"{p.relative_to(folder_data)},{'fake' if p.parent.name == '1_fake' else 'real'},{p.parts[-4]}"
        for p in sorted(folder_data.rglob("*.png"))
    ]
    (folder_data / "manifest.csv").write_text("\n".join(rows) + "\n")
    res = train(cfg(tmp_path / "run", folder_data, epochs=1, patience=0), progress=False)
    assert res.best is not None
    prov = json.loads((res.best / "config.json").read_text())["provenance"]["data"]
    assert prov["layout"] == "manifest" and prov["manifest_sha256"] == sha256_file(
        folder_data / "manifest.csv"
    )


def test_a_validation_set_too_small_or_ranking_backwards_is_not_calibrated(
    tmp_path: Path, folder_data: Path
) -> None:
    """A calibration fitted on a handful of images, or on scores that rank fakes below reals, flattens every
    p(fake) to 0.5000 ± 1e-4: none is fitted, the record and the CLI say why."""
    from fakelens.train.loop import calibration_problem

    res = train(cfg(tmp_path / "run", folder_data, epochs=1), progress=False)
    det = load_checkpoint(tmp_path / "run" / "best")
    assert det.calibration is None and "too few validation images" in res.history[0]["val"]["uncalibrated"]
    y = [0, 1] * 30
    assert calibration_problem(y, [0.4, 0.6] * 30) is None
    assert "do not rank fakes above reals (AUC 0.000)" in str(calibration_problem(y, [0.6, 0.4] * 30))


def test_a_hold_out_far_from_val_fraction_is_said(tmp_path: Path, folder_data: Path) -> None:
    """Whole groups held out: 3 groups a class at 0.15 hold out a third of the images, said with the share."""
    rows = ["path,label,group"]
    for i, p in enumerate(sorted(folder_data.glob("train/*/*/*.png"))):
        label = "fake" if p.parent.name == "1_fake" else "real"
        rows.append(f"{p.relative_to(folder_data)},{label},{label}{i % 3}")
    (folder_data / "manifest.csv").write_text("\n".join(rows) + "\n")
    said: list[str] = []
    train(cfg(tmp_path / "run", folder_data, epochs=1), progress=False, warn=said.append)
    [share] = [w for w in said if "hold-out" in w]
    assert "hold-out is 31% of the training images (10 of 32)" in share
    assert "not --val-fraction 0.15: it keeps each of the 6 groups whole" in share
    rows = [r.rsplit(",", 1)[0] for r in rows]  # no groups: 15 % of the images, nothing to say
    (folder_data / "manifest.csv").write_text("\n".join(rows) + "\n")
    said.clear()
    train(cfg(tmp_path / "run2", folder_data, epochs=1), progress=False, warn=said.append)
    assert not [w for w in said if "hold-out" in w]


def test_val_data_sharing_training_images_is_refused(tmp_path: Path, folder_data: Path) -> None:
    """--val-data naming the training data (also through a link) trained and validated on the same images."""
    link = tmp_path / "link"
    link.symlink_to(folder_data / "train")
    for val_data in (folder_data / "train", link):
        with pytest.raises(DatasetError, match=r"--val-data .* shares 32 of its 32 images with the training"):
            train(
                cfg(tmp_path / "run", folder_data / "train", val_data=str(val_data), epochs=1), progress=False
            )
    res = train(
        cfg(tmp_path / "ok", folder_data / "train", val_data=str(folder_data / "val"), epochs=1),
        progress=False,
    )
    assert res.epochs_run == 1
