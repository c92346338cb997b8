"""Training a detector: seeded, resumable, with validation AUC, early stopping and checkpoints.

``train(TrainConfig(...))`` builds a registered detector, reads the data (a dataset :func:`discover` knows,
or forgeries made on the fly from a real-photo pool), and runs AdamW with a linear warm-up and a cosine
schedule. After every epoch it scores the validation set, writes ``OUT/last/`` (the detector as
:func:`~fakelens.models.checkpoint.save_checkpoint` writes it, plus ``train_state.pt``: optimizer, scheduler,
epoch, RNG states, the auxiliary head, early-stopping state) and, when the validation AUC improved,
``OUT/best/``. ``resume=True`` continues from ``OUT/last/`` exactly: on the CPU, 2 epochs straight and
1 + resumed 1 give identical weights. Both checkpoints carry provenance (data sha256, recipes, seed, command
line, config, timings) and metrics; ``OUT/history.json`` lists every epoch. Each checkpoint is also
calibrated on its own validation scores (:class:`~fakelens.models.calibration.Calibration`: the
equal-error-rate threshold → ½, temperature by maximum likelihood), so the detector used on its own shows
calibrated probabilities and decides at ½.

On CUDA the loop uses automatic mixed precision (bf16 where supported, else fp16 with a gradient scaler) and
``channels_last``; on the CPU it runs in float32. ``aux_mask`` adds a 1×1 convolution on the detector's
CAM layer that predicts the (downsampled) forged-region mask with a BCE loss, on samples whose mask is known;
it exists only during training: the saved detector has exactly the registered architecture's tensors.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, get_args

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

import fakelens
from fakelens.data.augment import Augment
from fakelens.data.datasets import (
    DatasetError,
    DetectionDataset,
    OnTheFlyForgeries,
    Sample,
    Views,
    check_both_classes,
    detect_layout,
    dir_manifest,
    discover,
    holdout,
    samples_sha256,
    select_split,
    summarize,
)
from fakelens.devices import resolve_device
from fakelens.errors import ConfigError, FakelensError
from fakelens.io import sha256_file
from fakelens.models.base import Detector, ResizeMode
from fakelens.models.calibration import Calibration
from fakelens.models.checkpoint import (
    WEIGHTS_NAME,
    load_checkpoint,
    member_checkpoint,
    read_json,
    save_checkpoint,
)
from fakelens.models.fold import inference_logits
from fakelens.models.registry import MODELS, create_model, seeded_init
from fakelens.train.metrics import binary_metrics, calibration_metrics, eer, json_safe

__all__ = [
    "AuxMaskHead",
    "TrainConfig",
    "TrainResult",
    "calibration_problem",
    "classification_loss",
    "eer_calibration",
    "head_parameter_names",
    "load_run_config",
    "make_loader",
    "reset_head",
    "resolve_device",
    "score_loader",
    "train",
]

STATE_NAME = "train_state.pt"
HISTORY_NAME = "history.json"
# Settings that must not change when a run is resumed (they shape the weights it would produce).
_RESUME_KEYS = (
    "model",
    "model_kwargs",
    "pretrained",
    "data",
    "forgeries",
    "val_data",
    "recipes",
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "warmup",
    "min_lr",
    "freeze_epochs",
    "seed",
    "aux_mask",
    "aux_weight",
    "augment",
    "val_fraction",
    "pairs_per_epoch",
    "val_pairs",
    "forgery_size",
    "forgery_format",
    "split_fractions",
    "steps_per_epoch",
    "head_init",
    "init",
)


@dataclass
class TrainConfig:
    """Everything that defines a training run (the CLI fills it from options)."""

    out: str
    model: str = "tiny-cnn"
    data: str | None = None
    forgeries: str | None = None
    val_data: str | None = None
    recipes: list[str] | None = None
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: float = 0.05
    min_lr: float = 0.01
    freeze_epochs: int = 0
    patience: int = 3
    min_delta: float = 1e-4
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    aux_mask: bool = False
    aux_weight: float = 0.5
    augment: str = "robust"
    val_fraction: float = 0.15
    pairs_per_epoch: int = 1024
    val_pairs: int = 256
    forgery_size: int = 256
    forgery_format: str = "png"
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    steps_per_epoch: int | None = None
    pretrained: bool = True
    head_init: str | None = None  # None: "small", or "keep" when fine-tuning (--init)
    init: str | None = None  # fine-tune: start from this detector checkpoint (or ensemble member)
    fit: str | None = None  # input mode the checkpoint records (None: the model's own)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    threads: int | None = None
    time_limit: float | None = None
    resume: bool = False
    command: str | None = None

    def __post_init__(self) -> None:
        if self.head_init is None:
            self.head_init = "keep" if self.init else "small"

    def check(self) -> None:
        """Raise :class:`ConfigError` for an impossible setting (one line)."""
        if (self.data is None) == (self.forgeries is None):
            raise ConfigError("give exactly one data source: --data ROOT|MANIFEST or --forgeries POOL")
        if self.forgeries is not None and self.val_data is not None:
            raise ConfigError(
                "--val-data goes with --data; --forgeries validates on forgeries of the pool's val photos "
                "(--val-pairs, --split-fractions)"
            )
        if self.data is not None and self.recipes:
            raise ConfigError(
                "--recipes goes with --forgeries (forgeries made on the fly); the fakes of a --data dataset "
                "are its own"
            )
        if self.model == "default":
            raise ConfigError(
                "'default' is the shipped ensemble, not an architecture: train each member (e.g. --model "
                "effnet-lite0) and combine them with `fakelens ensemble` (scripts/train_default.sh does both)"
            )
        if self.model not in MODELS:
            MODELS.get(self.model)  # raises UnknownNameError with suggestions
        accepted = inspect.signature(MODELS.get(self.model)).parameters
        for k in self.model_kwargs:
            if k not in accepted:
                option = "--input-size" if k == "input_size" else k
                raise ConfigError(f"model {self.model!r} does not take {option}")
        positive = {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "pairs_per_epoch": self.pairs_per_epoch,
            "val_pairs": self.val_pairs,
        }
        for name, v in positive.items():
            if v < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {v}")
        if self.lr <= 0 or not math.isfinite(self.lr):
            raise ConfigError(f"--lr must be positive, got {self.lr}")
        if self.workers < 0:
            raise ConfigError(f"--workers must be at least 0, got {self.workers}")
        if self.patience < 0 or self.freeze_epochs < 0:
            raise ConfigError("--patience and --freeze-epochs must be at least 0")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ConfigError(f"--steps-per-epoch must be at least 1, got {self.steps_per_epoch}")
        if self.fit is not None and self.fit not in get_args(ResizeMode):
            raise ConfigError(f"unknown --fit {self.fit!r} (known: {', '.join(get_args(ResizeMode))})")
        if self.head_init not in ("small", "keep"):
            raise ConfigError(f"--head-init must be small or keep, not {self.head_init!r}")
        if self.time_limit is not None and not self.time_limit > 0:
            raise ConfigError(f"--time-limit is in minutes and must be positive, got {self.time_limit}")
        if not 0.0 <= self.warmup < 1.0:
            raise ConfigError(f"--warmup is a fraction of all steps in [0, 1), got {self.warmup}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["split_fractions"] = list(self.split_fractions)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if "split_fractions" in kw:
            kw["split_fractions"] = tuple(kw["split_fractions"])
        return cls(**kw)


@dataclass
class TrainResult:
    """What a run produced: where, how long, how well."""

    out: Path
    best: Path | None
    last: Path
    epochs_run: int
    best_epoch: int | None
    best_auc: float | None
    stopped_early: bool
    history: list[dict[str, Any]]
    seconds: float
    epochs_before: int = 0  # epochs a resumed run had already trained

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "out": str(self.out),
                "best": None if self.best is None else str(self.best),
                "last": str(self.last),
                "epochs_run": self.epochs_run,
                "epochs_before": self.epochs_before,
                "best_epoch": self.best_epoch,
                "best_auc": self.best_auc,
                "stopped_early": self.stopped_early,
                "seconds": round(self.seconds, 2),
                "history": self.history,
            }
        )


# ------------------------------------------------------------------------------------------ helpers
def _worker_init(worker_id: int) -> None:
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def make_loader(
    dataset: Dataset[Any],
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    epoch: int = 0,
    workers: int = 0,
    drop_last: bool = False,
    pin_memory: bool = False,
    collate_fn: Callable[[list[Any]], Any] | None = None,
) -> DataLoader[Any]:
    """A DataLoader whose order and worker seeds depend only on ``(seed, epoch)``."""
    g = torch.Generator()
    g.manual_seed(int(seed) * 1_000_003 + int(epoch))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        generator=g,
        drop_last=drop_last,
        worker_init_fn=_worker_init if workers > 0 else None,
        pin_memory=pin_memory,
        collate_fn=collate_fn,
    )


def head_parameter_names(detector: Detector) -> set[str]:
    """Names (relative to the detector) of the classifier head's parameters: timm's ``get_classifier()``,
    else a ``head`` module, else the last ``nn.Linear``."""
    net = detector.net
    head: nn.Module | None = None
    getter = getattr(net, "get_classifier", None)
    if callable(getter):
        cand = getter()
        head = cand if isinstance(cand, nn.Module) else None
    named_head = getattr(net, "head", None)
    if head is None and isinstance(named_head, nn.Module):
        head = named_head
    if head is None:
        linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
        head = linears[-1] if linears else None
    if head is None:
        raise ConfigError(f"cannot find the classifier head of {detector.name!r} to train it alone")
    ids = {id(p) for p in head.parameters()}
    names = {n for n, p in detector.named_parameters() if id(p) in ids}
    if not names:
        raise ConfigError(f"the classifier head of {detector.name!r} has no parameters")
    return names


def reset_head(detector: Detector, seed: int, std: float = 0.01) -> None:
    """Re-initialise the classifier head: weights ~ N(0, std²) from ``seed``, biases 0.

    Fine-tuning starts from near-equal logits instead of the factory's initialisation (timm's EfficientNet
    init draws a 2-logit head from U(±1/√2), so an untrained effnet-lite0 says "real" with logits ±8).
    """
    names = head_parameter_names(detector)
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for name, p in detector.named_parameters():
            if name in names:
                if p.ndim >= 2:
                    p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32).mul_(std).to(p))
                else:
                    p.zero_()


def classification_loss(logits: Tensor, labels: Tensor, fake_index: int) -> Tensor:
    """Cross-entropy for two logits (the fake class at ``fake_index``), BCE for one logit."""
    logits = logits.float()
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits[:, 0], labels.float())
    if logits.shape[1] != 2:
        raise ConfigError(f"training needs a real/fake detector with 1 or 2 outputs, not {logits.shape[1]}")
    target = torch.where(labels == 1, fake_index, 1 - fake_index).long()
    return F.cross_entropy(logits, target)


class AuxMaskHead(nn.Module):
    """A 1×1 convolution on a detector layer's features that predicts the forged-region mask.

    Trained with BCE against the mask average-pooled to the feature grid, on samples whose mask is known
    (reals: all zeros; forgeries: their recipe's mask); samples marked unknown (-1) are skipped. It hooks
    the layer only between :meth:`attach` and :meth:`detach` and is never saved with the detector.
    """

    def __init__(self, detector: Detector, layer: str | None = None, seed: int = 0) -> None:
        super().__init__()
        if layer is None:
            if not detector.cam_layers:
                raise ConfigError(f"model {detector.name!r} names no CAM layer for the auxiliary mask head")
            layer = detector.cam_layers[0]
        self.layer_name = layer
        self.token_layout = detector.token_layout
        self._feat: Tensor | None = None
        self._handle: Any = None
        channels = self._channels(detector)
        with seeded_init(seed):
            self.conv = nn.Conv2d(channels, 1, kernel_size=1)

    def _channels(self, detector: Detector) -> int:
        was = detector.training
        detector.eval()
        self.attach(detector)
        try:
            with torch.no_grad():
                p = next(detector.parameters())
                x = torch.zeros(1, 3, *detector.input_spec.size, device=p.device, dtype=p.dtype)
                detector(x)
            feat = self._features(detector.input_spec.size)
        finally:
            self.detach()
            detector.train(was)
        return int(feat.shape[1])

    def _hook(self, module: nn.Module, args: Any, output: Any) -> None:
        self._feat = output[0] if isinstance(output, (tuple, list)) else output

    def attach(self, detector: Detector) -> None:
        self.detach()
        self._handle = detector.layer(self.layer_name).register_forward_hook(self._hook)

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._feat = None

    def _features(self, input_hw: tuple[int, int]) -> Tensor:
        f = self._feat
        if f is None:
            raise RuntimeError("the auxiliary head saw no features: call attach() and run the detector first")
        if f.dim() == 3:
            if self.token_layout is None:
                raise ConfigError(f"layer {self.layer_name!r} gives tokens but the model has no token layout")
            f = self.token_layout.to_map(f, input_hw)
        if f.dim() != 4:
            raise ConfigError(f"layer {self.layer_name!r} gives a {f.dim()}-d output, not a feature map")
        return f

    def loss(self, mask: Tensor, input_hw: tuple[int, int]) -> Tensor:
        """BCE between the predicted mask logits and ``mask`` ``(B, 1, H, W)`` pooled to the feature grid."""
        logits = self.conv(self._features(input_hw)).float()
        known = mask.flatten(1).amin(dim=1) >= 0
        if not bool(known.any()):
            return logits.sum() * 0.0
        target = F.adaptive_avg_pool2d(mask[known].float(), logits.shape[-2:]).clamp(0.0, 1.0)
        return F.binary_cross_entropy_with_logits(logits[known], target)


def _param_groups(modules: Sequence[nn.Module], weight_decay: float) -> list[dict[str, Any]]:
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for m in modules:
        for p in m.parameters():
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _schedule(total: int, warmup: float, min_lr: float) -> Callable[[int], float]:
    warm = round(warmup * total)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = min(1.0, (step - warm) / max(1, total - warm))
        return min_lr + (1.0 - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))

    return factor


def _set_frozen(detector: Detector, head: set[str], frozen: bool) -> None:
    for name, p in detector.named_parameters():
        p.requires_grad_(not frozen or name in head)


def _freeze_norms(detector: Detector, head: set[str]) -> None:
    """Keep the frozen backbone's normalisation statistics fixed too."""
    head_modules = {n.rsplit(".", 1)[0] for n in head}
    for name, m in detector.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and name not in head_modules:
            m.eval()


def _autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager[Any]:
    if device.type == "cuda" and dtype is not None:
        return torch.autocast("cuda", dtype=dtype)
    return nullcontext()


def _to_input(x: Tensor, detector: Detector, device: torch.device, channels_last: bool) -> Tensor:
    x = x.to(device, non_blocking=True)
    x = detector.input_spec.normalize(x)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def score_loader(
    detector: Detector,
    loader: Iterator[Any] | DataLoader[Any],
    device: torch.device,
    *,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Fake probabilities for every item of ``loader`` → ``(labels, scores, recipes, sources)``.

    Items are ``(pixels, label, mask[, recipe, source])``; recipes and sources are empty strings when the
    items carry none. Pixels collated as :class:`~fakelens.data.datasets.Views` are scored by the mean
    logits of each image's views. The detector runs in eval mode under inference mode, on the CPU through
    :func:`~fakelens.models.fold.inference_logits` (channels-last, BatchNorm folded).
    """
    was = detector.training
    detector.eval()
    labels: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    recipes: list[str] = []
    sources: list[str] = []
    try:
        with torch.inference_mode():
            for batch in loader:
                x, y = batch[0], batch[1]
                counts: list[int] | None = None
                if isinstance(x, Views):  # several views per image: the image's logits are their mean
                    counts = x.counts.tolist()
                    x = x.pixels
                with _autocast(device, amp_dtype):
                    logits = inference_logits(detector, _to_input(x, detector, device, channels_last))
                if counts is not None:
                    logits = torch.stack([z.float().mean(0) for z in logits.split(counts)])
                scores.append(detector.fake_probability(logits.float()).float().cpu().numpy())
                labels.append(np.asarray(y, dtype=np.int64))
                n = len(y)
                recipes.extend(list(batch[3]) if len(batch) > 3 else [""] * n)
                sources.extend(list(batch[4]) if len(batch) > 4 else [""] * n)
    finally:
        detector.train(was)
    if not scores:
        return np.zeros(0, np.int64), np.zeros(0, np.float64), [], []
    return np.concatenate(labels), np.concatenate(scores).astype(np.float64), recipes, sources


class _CachedSet(Dataset[tuple[Any, ...]]):
    """A dataset's items held in memory as uint8 pixels (prepared pixels are bytes / 255: exact)."""

    def __init__(self, pixels: Tensor, labels: Tensor, recipes: list[str], sources: list[str]) -> None:
        self.pixels, self.labels, self.recipes, self.sources = pixels, labels, recipes, sources

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        x = self.pixels[i].float().div_(255.0)
        return x, int(self.labels[i]), torch.zeros(0), self.recipes[i], self.sources[i]

    def batches(self, batch_size: int) -> Iterator[tuple[Any, ...]]:
        """Whole batches by slicing (one conversion per batch, no per-item work): what scoring iterates."""
        for i in range(0, len(self), batch_size):
            sl = slice(i, i + batch_size)
            x = self.pixels[sl].float().div_(255.0)
            yield x, self.labels[sl], None, self.recipes[sl], self.sources[sl]

    @classmethod
    def build(cls, dataset: Dataset[Any], batch_size: int, workers: int, seed: int) -> _CachedSet:
        px: list[Tensor] = []
        ys: list[Tensor] = []
        rec: list[str] = []
        src: list[str] = []
        for batch in make_loader(dataset, batch_size, shuffle=False, seed=seed, workers=workers):
            px.append(torch.round(batch[0] * 255.0).to(torch.uint8))
            ys.append(torch.as_tensor(batch[1]))
            n = len(batch[1])
            rec.extend(list(batch[3]) if len(batch) > 3 else [""] * n)
            src.extend(list(batch[4]) if len(batch) > 4 else [""] * n)
        return cls(torch.cat(px), torch.cat(ys), rec, src)


# ------------------------------------------------------------------------------------------ data
@dataclass
class _Data:
    train: Dataset[Any]
    val: Dataset[Any]
    shuffle: bool
    info: dict[str, Any]
    doubts: list[str] = field(default_factory=list)  # warnings about the data, said after its summary


def _build_data(cfg: TrainConfig, detector: Detector) -> _Data:
    spec = detector.input_spec
    augment = Augment(cfg.augment)
    if cfg.forgeries is not None:
        common: dict[str, Any] = {
            "spec": spec,
            "size": cfg.forgery_size,
            "fmt": cfg.forgery_format,
            "split_fractions": tuple(cfg.split_fractions),
        }
        train_ds = OnTheFlyForgeries(
            cfg.forgeries,
            cfg.recipes,
            cfg.seed,
            split="train",
            pairs=cfg.pairs_per_epoch,
            augment=augment,
            **common,
        )
        val_ds = OnTheFlyForgeries(
            cfg.forgeries,
            cfg.recipes,
            cfg.seed,
            split="val",
            pairs=cfg.val_pairs,
            fixed=True,
            with_info=True,
            **common,
        )
        from fakelens.data.pool import entries_sha256, manifest_path

        manifest_sha = sha256_file(manifest_path(cfg.forgeries))
        info = {
            "kind": "forgeries",
            "pool": str(Path(cfg.forgeries)),
            "pool_manifest_sha256": manifest_sha,
            "pool_entries_sha256": entries_sha256(cfg.forgeries),  # the photo list, however it was built
            "data_sha256": manifest_sha,
            "recipes": list(train_ds.recipes),
            "train_photos": len(train_ds.entries),
            "val_photos": len(val_ds.entries),
            # which photos, so that evaluating on a grown (re-dealt) pool can leave them out
            "photos": {
                "train": sorted(e.sha256 for e in train_ds.entries),
                "val": sorted(e.sha256 for e in val_ds.entries),
            },
            "train_pairs_per_epoch": cfg.pairs_per_epoch,
            "val_pairs": cfg.val_pairs,
        }
        return _Data(train_ds, val_ds, False, info)

    assert cfg.data is not None
    samples = discover(cfg.data)
    layout = detect_layout(cfg.data)
    has_splits = {s.split for s in samples}
    doubts: list[str] = []
    trainable = [s for s in samples if s.split in ("train", "")]
    if cfg.val_data is not None:
        val_all = discover(cfg.val_data)
        val = select_split(val_all, "val") or val_all
        train = trainable
        how = f"--val-data {cfg.val_data}"
        _refuse_shared_files(train, val, cfg)
        validated_on = {"path": str(cfg.val_data), "split": "val" if len(val) < len(val_all) else "all"}
    elif "val" in has_splits:
        train, val = trainable, select_split(samples, "val")
        how = "the dataset's val split"
        validated_on = {"path": str(cfg.data), "split": "val"}
    else:
        validated_on = {"path": str(cfg.data), "split": "hold-out"}
        train, val = holdout(trainable, cfg.val_fraction, cfg.seed)
        by_group = "whole groups, " if any(s.group for s in trainable) else ""
        how = f"a {cfg.val_fraction:g} hold-out of the training images ({by_group}seed {cfg.seed})"
        if (problem := _holdout_share_problem(trainable, val, cfg.val_fraction)) is not None:
            doubts.append(problem)
    if not train:
        raise DatasetError(f"{cfg.data}: no training images (splits found: {', '.join(sorted(has_splits))})")
    check_both_classes(train, f"{cfg.data} (training images)")
    try:
        check_both_classes(val, f"validation set ({how})")
    except DatasetError as exc:
        raise DatasetError(f"{exc}; give --val-data, or a dataset with a val split") from None
    _check_files([*train, *val], cfg.data)
    doubts += _balance_problems(train, val)
    root = Path(cfg.data)
    base = root if root.is_dir() else root.parent
    info = {
        "kind": "dataset",
        "path": str(cfg.data),
        "layout": layout,
        "data_sha256": samples_sha256(samples, base),
        "train_sha256": samples_sha256(train, base),
        "val_sha256": samples_sha256(val, base),
        "validation": how,
        # which split of which dataset picked the best epoch and calibrated it: evaluate warns on it
        "validated_on": validated_on,
        "recipes": sorted({s.recipe for s in train if s.label == 1 and s.recipe}),
        "train": summarize(train),
        "val": summarize(val),
    }
    manifest = root if root.is_file() else dir_manifest(root)  # a folder read through its manifest.csv
    if manifest is not None:
        info["manifest_sha256"] = sha256_file(manifest)
    train_set = DetectionDataset(train, spec, augment=augment, seed=cfg.seed)
    val_set = DetectionDataset(val, spec, with_info=True, load_masks=False)
    return _Data(train_set, val_set, True, info, doubts)


def _data_line(info: dict[str, Any]) -> str:
    """One line on what a run trains and validates on: sizes, class counts, how validation was chosen."""
    if info["kind"] == "forgeries":
        pairs, val_pairs = info["train_pairs_per_epoch"], info["val_pairs"]
        return (
            f"data: forgeries from {info['pool']}: training {pairs} real/fake pairs an epoch from "
            f"{info['train_photos']} photos, validation {val_pairs} fixed pairs from the pool's "
            f"{info['val_photos']} val photos"
        )
    t, v = info["train"], info["val"]
    return (
        f"data: {info['layout']} {info['path']}: training {t['n']} images ({t['real']} real, {t['fake']} "
        f"fake), validation {v['n']} ({v['real']} real, {v['fake']} fake) from {info['validation']}"
    )


def _refuse_shared_files(train: Sequence[Sample], val: Sequence[Sample], cfg: TrainConfig) -> None:
    """--val-data must not hold training images (the same file, also through a link): best-epoch selection
    and calibration on them would reward memorising."""
    trained = {os.path.realpath(s.path) for s in train}
    shared = [s.path for s in val if os.path.realpath(s.path) in trained]
    if shared:
        raise DatasetError(
            f"--val-data {cfg.val_data} shares {len(shared)} of its {len(val)} images with the training "
            f"images of {cfg.data} (e.g. {shared[0]}); validate on images training never sees"
        )


MIN_VAL_PER_CLASS = 10
"""Fewer validation images of a class than this make its AUC, and so the best epoch, a matter of chance."""


def _counts(samples: Sequence[Sample]) -> tuple[int, int]:
    n_fake = sum(s.label for s in samples)
    return len(samples) - n_fake, n_fake


def _balance_problems(train: Sequence[Sample], val: Sequence[Sample]) -> list[str]:
    """What is wrong with the class balance of the training and validation images (one line each)."""
    out = []
    for what, samples in (("training", train), ("validation", val)):
        n_real, n_fake = _counts(samples)
        few, n_few = ("fake", n_fake) if n_fake < n_real else ("real", n_real)
        if what == "validation" and n_few < MIN_VAL_PER_CLASS:
            out.append(
                f"the validation set holds only {n_few} {few} image(s) ({n_real} real, {n_fake} fake): "
                "the best epoch and the calibration rest on too few; give it at least "
                f"{MIN_VAL_PER_CLASS} of each class (a val split, --val-data or a larger --val-fraction)"
            )
        elif 5 * n_few < n_real + n_fake - n_few:
            out.append(
                f"the {what} images are imbalanced: {n_real} real, {n_fake} fake (the {few} ones under 1/5 "
                "of the others); balance the classes, or read the metrics per class"
            )
    return out


def _holdout_share_problem(samples: Sequence[Sample], held: Sequence[Sample], fraction: float) -> str | None:
    """Why the hold-out's share of ``samples`` is far from ``fraction`` (whole groups, few images), if so."""
    share = len(held) / max(1, len(samples))
    if abs(share - fraction) <= max(0.05, fraction / 2):
        return None
    groups = len({s.group for s in samples if s.group})
    why = (
        f"it keeps each of the {groups} groups whole"
        if groups
        else f"the data is small ({len(samples)} images; each class has at least one held out)"
    )
    return (
        f"the validation hold-out is {share:.0%} of the training images ({len(held)} of {len(samples)}), "
        f"not --val-fraction {fraction:g}: {why}; give the data a val split, or --val-data"
    )


def _check_files(samples: Sequence[Sample], where: str | os.PathLike[str]) -> None:
    """Every file's first bytes, before the first epoch (nothing is decoded): a run must not die hours in
    at a text file named .png; all of them are named at once."""
    from fakelens.io import header_problem

    bad = [f"{s.path}: {why}" for s in samples if (why := header_problem(s.path)) is not None]
    if bad:
        more = f"; … ({len(bad)} in all)" if len(bad) > 5 else ""
        raise DatasetError(
            f"{len(bad)} file(s) of {os.fspath(where)} cannot be images: "
            + "; ".join(bad[:5])
            + more
            + " — remove them, or list the good files in a manifest"
        )


# ------------------------------------------------------------------------------------------ checkpoints
def _write_json(path: Path, obj: Any) -> None:
    from fakelens.io import atomic_write_text

    atomic_write_text(path, json.dumps(json_safe(obj), indent=2) + "\n")


def _save_dir(target: Path, write: Callable[[Path], None]) -> None:
    """Write a checkpoint folder through a temporary sibling, then swap it in."""
    tmp = target.with_name(f".{target.name}.tmp")
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    write(tmp)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def load_run_config(out: str | os.PathLike[str]) -> TrainConfig:
    """The configuration a run in ``out`` was started with (from ``out/last/train_state.pt``)."""
    state = _load_state(Path(out))
    return TrainConfig.from_dict(state["config"])


def _load_state(out: Path) -> dict[str, Any]:
    f = out / "last" / STATE_NAME
    if not f.is_file():
        raise ConfigError(f"nothing to resume: {f} does not exist (start the run without --resume)")
    try:
        state = torch.load(f, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"cannot read {f}: {exc}") from None
    if not isinstance(state, dict) or "config" not in state:
        raise ConfigError(f"{f} is not a fakelens training state")
    return state


def _check_out(out: Path, resume: bool) -> None:
    """``out`` must be a writable folder, and hold no earlier run unless resuming."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write to --out {out}: {exc.strerror or exc}") from None
    if not resume and (out / "last").exists():
        raise ConfigError(
            f"{out} already holds a training run; pass --resume to continue it or choose another --out"
        )


# ------------------------------------------------------------------------------------------ the loop
def _progress(enabled: bool, console: Any) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("val AUC {task.fields[auc]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )


def train(
    cfg: TrainConfig,
    *,
    progress: bool = True,
    console: Any = None,
    log: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
    max_epochs: int | None = None,
) -> TrainResult:
    """Run (or resume) the training described by ``cfg``; returns where the checkpoints are and how well.

    ``max_epochs`` ends this session after that many epochs (the schedule still spans ``cfg.epochs``), to
    be continued with ``resume``. User mistakes raise :class:`~fakelens.errors.FakelensError` subclasses
    with one-line messages; doubts about the data (a lopsided hold-out or class balance) go to ``warn``
    (default: :func:`warnings.warn`).
    """
    cfg.check()
    t_start = time.perf_counter()
    out = Path(cfg.out)
    created = not out.exists()
    _check_out(out, cfg.resume)
    try:
        return _train(
            cfg,
            out,
            t_start,
            progress=progress,
            console=console,
            log=log,
            warn=warn or (lambda message: warnings.warn(message, stacklevel=4)),
            max_epochs=max_epochs,
        )
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # leave no empty --out behind after a mistake
        raise


def _train(
    cfg: TrainConfig,
    out: Path,
    t_start: float,
    *,
    progress: bool,
    console: Any,
    log: Callable[[str], None] | None,
    warn: Callable[[str], None],
    max_epochs: int | None,
) -> TrainResult:
    saved: dict[str, Any] | None = None
    if cfg.resume:
        saved = _load_state(out)
        before = saved["config"]
        now = cfg.to_dict()
        changed = [k for k in _RESUME_KEYS if json.dumps(before.get(k)) != json.dumps(now.get(k))]
        if changed:
            k = changed[0]
            raise ConfigError(
                f"cannot resume {out}: it was started with {k}={before.get(k)!r}, not {now.get(k)!r} "
                "(resume with the same settings, or start a new run in another --out)"
            )
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    device = resolve_device(cfg.device)
    cuda = device.type == "cuda"
    amp_dtype: torch.dtype | None = None
    if cuda and cfg.amp:
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    channels_last = cuda and cfg.channels_last

    detector, init = _initial_detector(cfg)
    if cfg.fit is not None:
        detector.input_spec = replace(detector.input_spec, mode=cfg.fit)  # type: ignore[arg-type]
    if len(detector.labels) not in (1, 2):
        raise ConfigError(
            f"model {cfg.model!r} has {len(detector.labels)} outputs; train a real/fake detector"
        )
    if cfg.head_init == "small":
        reset_head(detector, cfg.seed + 2)
    data = _build_data(cfg, detector)
    if log:
        log(_data_line(data.info))
    for doubt in data.doubts:
        warn(doubt)
    aux = AuxMaskHead(detector, seed=cfg.seed + 1) if cfg.aux_mask else None

    detector.to(device)
    if channels_last:
        detector.to(memory_format=torch.channels_last)
    modules: list[nn.Module] = [detector] + ([aux.to(device)] if aux is not None else [])
    optimizer = torch.optim.AdamW(_param_groups(modules, cfg.weight_decay), lr=cfg.lr)
    n_batches = len(data.train) // cfg.batch_size  # type: ignore[arg-type]
    if n_batches < 1:
        raise ConfigError(
            f"{len(data.train)} training images are fewer than one batch of {cfg.batch_size}; "  # type: ignore[arg-type]
            "lower --batch-size"
        )
    steps = min(n_batches, cfg.steps_per_epoch or n_batches)
    total = steps * cfg.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(total, cfg.warmup, cfg.min_lr))
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    head = head_parameter_names(detector) if cfg.freeze_epochs else set()

    history: list[dict[str, Any]] = []
    best_auc: float | None = None
    best_epoch: int | None = None
    bad_epochs = 0
    start_epoch = 0
    stopped = False
    if saved is not None:
        _restore(saved, out, detector, aux, optimizer, scheduler, scaler, device)
        history = list(saved["history"])
        best_auc = saved["best_auc"]
        best_epoch = saved["best_epoch"]
        bad_epochs = int(saved["bad_epochs"])
        start_epoch = int(saved["epoch"]) + 1
        stopped = bool(saved["stopped_early"])
    else:
        torch.manual_seed(cfg.seed)
    early = stopped

    command = cfg.command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    provenance_base = {
        "data": data.info,
        "recipes": data.info.get("recipes", []),
        "seed": cfg.seed,
        "command": command,
        "config": cfg.to_dict(),
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if cuda else ""),
        "precision": str(amp_dtype).replace("torch.", "") if amp_dtype else "float32",
        "channels_last": channels_last,
        "versions": {"fakelens": fakelens.__version__, "torch": torch.__version__, "numpy": np.__version__},
        "aux_mask": cfg.aux_mask,
    }
    if init is not None:
        provenance_base["init"] = init
    val_set: Dataset[Any] = data.val
    if isinstance(val_set, OnTheFlyForgeries) or _small_enough(val_set, detector):
        t0 = time.perf_counter()
        val_set = _CachedSet.build(data.val, cfg.batch_size, cfg.workers, cfg.seed)
        if log:
            log(f"validation set: {len(val_set)} images cached in {time.perf_counter() - t0:.1f} s")
    emit = log or (lambda s: None)
    deadline = t_start + 60.0 * cfg.time_limit if cfg.time_limit else math.inf

    try:
        if aux is not None:
            aux.attach(detector)
        with _progress(progress, console) as bar:
            end = cfg.epochs if max_epochs is None else min(cfg.epochs, start_epoch + max_epochs)
            for epoch in range(start_epoch, end):
                if stopped:
                    break
                t_epoch = time.perf_counter()
                record = _run_epoch(
                    epoch,
                    cfg,
                    detector,
                    aux,
                    data,
                    optimizer,
                    scheduler,
                    scaler,
                    device,
                    amp_dtype,
                    channels_last,
                    head,
                    steps,
                    bar,
                )
                t0 = time.perf_counter()
                batches = (
                    val_set.batches(cfg.batch_size)
                    if isinstance(val_set, _CachedSet)
                    else make_loader(
                        val_set, cfg.batch_size, shuffle=False, seed=cfg.seed, workers=cfg.workers
                    )
                )
                y, s, _, _ = score_loader(
                    detector, batches, device, amp_dtype=amp_dtype, channels_last=channels_last
                )
                val = binary_metrics(y, s) | calibration_metrics(y, s)
                problem = calibration_problem(y, s)
                detector.calibration = None if problem else eer_calibration(y, s)  # saved with these weights
                if problem is not None:
                    val["uncalibrated"] = problem
                record["val"] = val
                record["val_seconds"] = round(time.perf_counter() - t0, 3)
                auc = val["auc"]
                if bar.tasks:  # this epoch's own validation AUC on its bar
                    bar.update(bar.tasks[-1].id, auc=_fmt(auc))
                improved = best_auc is None or (math.isfinite(auc) and auc > best_auc + cfg.min_delta)
                if improved:
                    best_auc, best_epoch, bad_epochs = auc, epoch, 0
                else:
                    bad_epochs += 1
                record["best_auc"] = best_auc
                history.append(json_safe(record))
                early = bool(cfg.patience) and bad_epochs >= cfg.patience and epoch + 1 < cfg.epochs
                # another epoch only if it should end in time (this one's length as the estimate): every
                # recorded epoch is whole, so a --resume later trains exactly what one run would have
                epoch_seconds = time.perf_counter() - t_epoch
                out_of_time = time.perf_counter() + epoch_seconds > deadline and epoch + 1 < cfg.epochs
                if out_of_time:  # a later --resume continues; an early stop is final
                    record["stopped"] = "time limit"
                    history[-1] = json_safe(record)
                stopped = early or out_of_time
                prov = {**provenance_base, "epoch": epoch, "timings": _timings(history, t_start)}
                metrics = {"val": val, "epoch": epoch, "train_loss": record["loss"]}
                if detector.calibration is not None:
                    shown = detector.calibration(torch.from_numpy(s)).double().numpy()
                    metrics["val_calibrated"] = binary_metrics(y, shown) | calibration_metrics(y, shown)
                if improved:

                    def write_best(
                        d: Path, prov: dict[str, Any] = prov, metrics: dict[str, Any] = metrics
                    ) -> None:
                        save_checkpoint(detector, d, provenance=json_safe(prov), metrics=json_safe(metrics))

                    _save_dir(out / "best", write_best)
                state = {
                    "config": cfg.to_dict(),
                    "epoch": epoch,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "aux": None if aux is None else aux.state_dict(),
                    "rng_cpu": torch.get_rng_state(),
                    "rng_cuda": torch.cuda.get_rng_state_all() if cuda else [],
                    "history": history,
                    "best_auc": best_auc,
                    "best_epoch": best_epoch,
                    "bad_epochs": bad_epochs,
                    "stopped_early": early,
                }

                def write_last(
                    d: Path,
                    state: dict[str, Any] = state,
                    prov: dict[str, Any] = prov,
                    metrics: dict[str, Any] = metrics,
                ) -> None:
                    save_checkpoint(detector, d, provenance=json_safe(prov), metrics=json_safe(metrics))
                    torch.save(state, d / STATE_NAME)

                _save_dir(out / "last", write_last)
                _write_json(out / HISTORY_NAME, {"config": cfg.to_dict(), "epochs": history})
                emit(
                    f"epoch {epoch + 1}/{cfg.epochs}: loss {record['loss']:.4f}, val AUC {_fmt(auc)} "
                    f"(best {_fmt(best_auc)} at epoch {None if best_epoch is None else best_epoch + 1}), "
                    f"{record['images_per_s'] or 0:.1f} img/s"
                    + (f", {record.get('stopped', 'early stop')}" if stopped else "")
                )
    finally:
        if aux is not None:
            aux.detach()
    detector.to("cpu")
    return TrainResult(
        out=out,
        best=out / "best" if (out / "best").exists() else None,
        last=out / "last",
        epochs_run=len(history),
        best_epoch=best_epoch,
        best_auc=best_auc,
        stopped_early=early,
        history=history,
        seconds=time.perf_counter() - t_start,
        epochs_before=start_epoch,
    )


def _initial_detector(cfg: TrainConfig) -> tuple[Detector, dict[str, Any] | None]:
    """The detector to train — built from the registry, or (``cfg.init``, fine-tuning) loaded from a
    checkpoint of the same architecture — and what the provenance records about where it started."""
    if cfg.init is None:
        kwargs = dict(cfg.model_kwargs)
        params = inspect.signature(MODELS.get(cfg.model)).parameters
        if "pretrained" in params:
            kwargs.setdefault("pretrained", cfg.pretrained)
        if "seed" in params:
            kwargs.setdefault("seed", cfg.seed)
        detector = create_model(cfg.model, **kwargs)
        detector.untrained = False  # training it is what this run is for
        return detector, None
    config_path = member_checkpoint(cfg.init, cfg.model)
    detector = load_checkpoint(config_path).train()
    for k, v in cfg.model_kwargs.items():
        if detector.config.get(k) != v:
            option = "--input-size" if k == "input_size" else k
            raise ConfigError(
                f"--init {cfg.init}: its {cfg.model!r} was built with {k}={detector.config.get(k)!r}; "
                f"drop {option} or pass the same value"
            )
    config = read_json(config_path)
    prov = config.get("provenance") or {}
    weights = config_path.parent / str(config.get("weights", WEIGHTS_NAME))
    return detector, {
        "checkpoint": str(config_path.parent),
        "weights_sha256": sha256_file(weights),
        "metrics": config.get("metrics"),
        # what the start saw (training_photos follows this chain)
        "data": prov.get("data"),
        **({"init": prov["init"]} if prov.get("init") else {}),
    }


MIN_CALIBRATION_PER_CLASS = 20
"""Fewest validation images of each class a calibration is fitted on: on a handful it is noise (4 images
whose scores ranked backwards fitted s = 0.001, every p(fake) 0.5000 ± 1e-4, verdicts by rounding)."""


def calibration_problem(labels: Any, scores: Any) -> str | None:
    """Why no calibration should be fitted on these validation scores, or None when one may."""
    y = np.asarray(labels).ravel()
    n_fake, n_real = int((y == 1).sum()), int((y == 0).sum())
    if min(n_fake, n_real) < MIN_CALIBRATION_PER_CLASS:
        return (
            f"too few validation images to calibrate on ({n_real} real, {n_fake} fake; at least "
            f"{MIN_CALIBRATION_PER_CLASS} of each)"
        )
    auc = binary_metrics(y, scores)["auc"]
    if not auc > 0.5:
        return f"the validation scores do not rank fakes above reals (AUC {auc:.3f}): nothing to calibrate"
    return None


def eer_calibration(labels: Any, scores: Any) -> Calibration | None:
    """Temperature scaling about the validation equal-error-rate threshold: a detector used on its own then
    shows calibrated probabilities and decides at ½ (``None`` without both classes). Callers ask
    :func:`calibration_problem` first: where it objects, the scores are shown as the model gives them."""
    threshold = eer(labels, scores)[1]
    return Calibration.fit(labels, scores, threshold) if math.isfinite(threshold) else None


def _fmt(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.4f}"


def _small_enough(ds: Dataset[Any], detector: Detector, limit: int = 1 << 30) -> bool:
    h, w = detector.input_spec.size
    return len(ds) * 3 * h * w <= limit  # type: ignore[arg-type]


def _timings(history: list[dict[str, Any]], t_start: float) -> dict[str, Any]:
    return {
        "train_seconds": round(sum(r["train_seconds"] for r in history), 2),
        "val_seconds": round(sum(r["val_seconds"] for r in history), 2),
        "wall_seconds_this_session": round(time.perf_counter() - t_start, 2),
        "images_per_s_last_epoch": history[-1]["images_per_s"] if history else None,
    }


def _restore(
    saved: dict[str, Any],
    out: Path,
    detector: Detector,
    aux: AuxMaskHead | None,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    device: torch.device,
) -> None:
    import safetensors.torch

    from fakelens.models.checkpoint import WEIGHTS_NAME

    weights = safetensors.torch.load_file(str(out / "last" / WEIGHTS_NAME), device="cpu")
    detector.load_state_dict(weights, strict=True)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    scaler.load_state_dict(saved["scaler"])
    if aux is not None:
        if saved.get("aux") is None:
            raise ConfigError(f"{out}/last has no auxiliary head state to resume --aux-mask with")
        aux.load_state_dict(saved["aux"])
    torch.set_rng_state(saved["rng_cpu"])
    if device.type == "cuda" and saved.get("rng_cuda"):
        torch.cuda.set_rng_state_all(saved["rng_cuda"])


def _run_epoch(
    epoch: int,
    cfg: TrainConfig,
    detector: Detector,
    aux: AuxMaskHead | None,
    data: _Data,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    channels_last: bool,
    head: set[str],
    steps: int,
    bar: Any,
) -> dict[str, Any]:
    """One whole epoch of optimisation → its record (loss, aux loss, lr, images/s, seconds)."""
    set_epoch = getattr(data.train, "set_epoch", None)
    if callable(set_epoch):
        set_epoch(epoch)
    frozen = epoch < cfg.freeze_epochs
    if head:
        _set_frozen(detector, head, frozen)
    detector.train()
    if frozen:
        _freeze_norms(detector, head)
    if aux is not None:
        aux.train()
    loader = make_loader(
        data.train,
        cfg.batch_size,
        shuffle=data.shuffle,
        seed=cfg.seed,
        epoch=epoch,
        workers=cfg.workers,
        drop_last=True,
        pin_memory=device.type == "cuda",
    )
    task = bar.add_task("train", total=steps, epoch=f"{epoch + 1}/{cfg.epochs}", loss="-", auc="…")
    input_hw = detector.input_spec.size
    losses: list[float] = []
    aux_losses: list[float] = []
    n_images = 0
    t0 = time.perf_counter()
    for step, batch in enumerate(loader):
        if step >= steps:
            break
        x, y, m = batch[0], batch[1], batch[2]
        y = torch.as_tensor(y).to(device, non_blocking=True)
        xin = _to_input(x, detector, device, channels_last)
        with _autocast(device, amp_dtype):
            logits = detector(xin)
            loss = classification_loss(logits, y, detector.fake_index)
            if aux is not None:
                aux_loss = aux.loss(m.to(device, non_blocking=True), input_hw)
                loss = loss + cfg.aux_weight * aux_loss
                aux_losses.append(float(aux_loss.detach()))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FakelensError(
                f"the training loss became {value} at epoch {epoch + 1}, step {step + 1}; lower --lr"
            )
        losses.append(value)
        n_images += int(x.shape[0])
        bar.update(task, advance=1, loss=f"{np.mean(losses[-20:]):.4f}")
    seconds = time.perf_counter() - t0
    bar.update(task, visible=True)
    return {
        "epoch": epoch,
        "loss": float(np.mean(losses)) if losses else math.nan,
        "aux_loss": float(np.mean(aux_losses)) if aux_losses else None,
        "lr": float(scheduler.get_last_lr()[0]),
        "frozen_backbone": frozen,
        "steps": len(losses),
        "images": n_images,
        "train_seconds": round(seconds, 3),
        "images_per_s": round(n_images / seconds, 2) if seconds > 0 else None,
    }
