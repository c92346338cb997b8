"""Checkpoints: ``model.safetensors`` + ``config.json`` per detector; ensembles add an ``ensemble.json``
that points at one sub-directory per member.

A detector's config names its registry ``arch`` and the factory kwargs that rebuild it, so loading never
needs pickle and never downloads anything (factories that take ``pretrained`` are called with
``pretrained=False``; the saved weights replace the initial ones). Every bad file raises one
:class:`CheckpointError` saying what is wrong with which file.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import Tensor, nn

import fakelens
from fakelens.errors import CheckpointError, FakelensError, UnknownNameError
from fakelens.models.base import Detector, InputSpec, LogitsAdapter, TokenLayout
from fakelens.models.calibration import Calibration
from fakelens.models.ensemble import Ensemble
from fakelens.models.registry import MODELS, create_model

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
ENSEMBLE_NAME = "ensemble.json"
_SHOW = 3  # how many offending keys an error message names

PathLike = str | os.PathLike[str]


# ----------------------------------------------------------------------------------------------- writing


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` through a temporary sibling and ``os.replace``, so readers never see half a file."""
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    # created with the umask's permissions (mkstemp made checkpoints owner-only: others could not load them)
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    mode = tmp.stat().st_mode & 0o777
    try:
        write(tmp)
        os.chmod(tmp, mode)  # a writer that makes its own file (safetensors does, owner-only) gets it too
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_json(path: Path, obj: Mapping[str, Any]) -> None:
    try:
        text = json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot write {path.name}: a value is not JSON-serialisable ({exc})") from None

    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    _atomic_write(path, write)


def _stamp() -> dict[str, Any]:
    return {
        "fakelens_version": fakelens.__version__,
        "torch_version": torch.__version__,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def detector_config(detector: Detector) -> dict[str, Any]:
    """The JSON config that describes ``detector`` (without provenance and metrics)."""
    arch = detector.config.get("arch")
    return {
        "format_version": FORMAT_VERSION,
        "kind": "detector",
        "arch": arch,
        "kwargs": {k: v for k, v in detector.config.items() if k != "arch"},
        "name": detector.name,
        "labels": list(detector.labels),
        "fake_label": detector.fake_label,
        "input_spec": detector.input_spec.to_dict(),
        "cam_layers": list(detector.cam_layers),
        "token_layout": detector.token_layout.to_dict() if detector.token_layout else None,
        "weights": WEIGHTS_NAME,
        **({"calibration": detector.calibration.to_dict()} if detector.calibration else {}),
        **({"untrained": True} if detector.untrained else {}),  # saving random weights does not train them
    }


def save_checkpoint(
    obj: Detector | Ensemble,
    directory: PathLike,
    *,
    provenance: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
    member_records: Sequence[dict[str, Any]] | None = None,
) -> Path:
    """Save a detector (``model.safetensors`` + ``config.json``) or an ensemble (``ensemble.json`` + one
    sub-directory per member) into ``directory`` (created if needed); returns the directory.

    ``provenance`` (data, recipe, seed, git commit…) and ``metrics`` are stored as given, plus the fakelens
    and torch versions and the time. Each file is written atomically; the config is written last.
    Detectors made by :func:`~fakelens.models.wrap.wrap_model` save with ``arch: null``; load them with
    ``load_checkpoint(path, net=module)``. ``dtype`` (e.g. ``torch.float16``) stores floating-point tensors
    in that type to halve the file; loading casts them back to the model's own dtype. For an ensemble,
    ``member_records`` gives each member's own ``{"provenance": …, "metrics": …}`` (e.g. from its training
    run), kept in the member's ``config.json``.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(obj, Ensemble):
        return _save_ensemble(
            obj, out, provenance=provenance, metrics=metrics, dtype=dtype, member_records=member_records
        )
    if (out / ENSEMBLE_NAME).exists():
        raise CheckpointError(f"{out} holds an ensemble checkpoint; save the detector into another directory")
    config = detector_config(obj)
    config.update(_stamp(), provenance=dict(provenance or {}), metrics=dict(metrics or {}))
    # one private CPU copy per tensor: safetensors refuses tensors that share storage
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in obj.state_dict().items()}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        config["stored_dtype"] = str(dtype).replace("torch.", "")

    def write_weights(tmp: Path) -> None:
        safetensors.torch.save_file(state, str(tmp), metadata={"format": "pt"})

    _atomic_write(out / WEIGHTS_NAME, write_weights)
    _write_json(out / CONFIG_NAME, config)
    return out


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "member"


def _save_ensemble(
    ensemble: Ensemble,
    out: Path,
    *,
    provenance: dict[str, Any] | None,
    metrics: dict[str, Any] | None,
    dtype: torch.dtype | None,
    member_records: Sequence[dict[str, Any]] | None,
) -> Path:
    if (out / CONFIG_NAME).exists():
        raise CheckpointError(f"{out} holds a detector checkpoint; save the ensemble into another directory")
    records = list(member_records or [{}] * len(ensemble.members))
    if len(records) != len(ensemble.members):
        raise ValueError(f"{len(records)} member records for {len(ensemble.members)} members")
    members = []
    for i, (member, record) in enumerate(zip(ensemble.members, records, strict=True)):
        sub = f"member-{i:02d}-{_slug(member.name)}"
        save_checkpoint(
            member, out / sub, provenance=record.get("provenance"), metrics=record.get("metrics"), dtype=dtype
        )
        members.append({"path": sub, "name": member.name})
    config = {
        "format_version": FORMAT_VERSION,
        "kind": "ensemble",
        "members": members,
        "weights": ensemble.weights.tolist(),
        "rule": ensemble.rule,
        "threshold": ensemble.threshold,
        **({"calibration": cal} if (cal := ensemble.calibration_dict()) else {}),
        **_stamp(),
        "provenance": dict(provenance or {}),
        "metrics": dict(metrics or {}),
    }
    _write_json(out / ENSEMBLE_NAME, config)
    return out


# ----------------------------------------------------------------------------------------------- reading


def read_json(path: Path) -> dict[str, Any]:
    """A checkpoint JSON file as a dict, or one :class:`CheckpointError` saying why it cannot be."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} must hold a JSON object, not {type(obj).__name__}")
    version = obj.get("format_version")
    if not isinstance(version, int):
        raise CheckpointError(f"{path} has no integer format_version; it is not a fakelens checkpoint config")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format_version {version}, newer than this fakelens reads ({FORMAT_VERSION}); upgrade"
        )
    return obj


def _locate(path: PathLike) -> tuple[Path, Path | None]:
    """``path`` (directory, config.json or a .safetensors file) → (config path, weights path if given)."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.is_dir():
        if not (p / CONFIG_NAME).exists() and (p / ENSEMBLE_NAME).exists():
            raise CheckpointError(
                f"{p} is an ensemble checkpoint; load it with load_detector() or load_ensemble()"
            )
        runs = [p / d for d in ("best", "last") if (p / d / CONFIG_NAME).is_file()]
        if not (p / CONFIG_NAME).exists() and runs:  # a training run's folder
            raise CheckpointError(
                f"{p} is a training run, not a checkpoint: give its checkpoint {runs[0]}"
                + (f" (or {runs[1]}, the last epoch)" if len(runs) > 1 else "")
            )
        return p / CONFIG_NAME, None
    if p.suffix == ".json":
        if p.name == ENSEMBLE_NAME:
            raise CheckpointError(
                f"{p} is an ensemble checkpoint; load it with load_detector() or load_ensemble()"
            )
        return p, None
    config = p.parent / CONFIG_NAME
    if not config.exists():
        raise CheckpointError(f"{p} has no {CONFIG_NAME} next to it; a checkpoint needs both files")
    return config, p


def _field(config: Mapping[str, Any], key: str, path: Path) -> Any:
    if key not in config:
        raise CheckpointError(f"{path} lacks the field {key!r}")
    return config[key]


def _read_weights(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint weights not found: {path}")
    try:
        return safetensors.torch.load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error type for every kind of damage
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc})") from None


def _shape(t: Tensor) -> str:
    return str(tuple(t.shape))


def check_state_dict(expected: Mapping[str, Tensor], found: Mapping[str, Tensor], *, source: str) -> None:
    """Raise one :class:`CheckpointError` naming missing, unexpected and mis-shaped tensors (a few each)."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    misshaped = [k for k in expected if k in found and found[k].shape != expected[k].shape]
    if not (missing or unexpected or misshaped):
        return
    parts = []
    if missing:
        shown = ", ".join(f"{k} {_shape(expected[k])}" for k in missing[:_SHOW])
        parts.append(f"{len(missing)} missing ({shown}{', …' if len(missing) > _SHOW else ''})")
    if unexpected:
        shown = ", ".join(f"{k} {_shape(found[k])}" for k in unexpected[:_SHOW])
        parts.append(f"{len(unexpected)} unexpected ({shown}{', …' if len(unexpected) > _SHOW else ''})")
    if misshaped:
        shown = ", ".join(
            f"{k}: file {_shape(found[k])} vs model {_shape(expected[k])}" for k in misshaped[:_SHOW]
        )
        parts.append(f"{len(misshaped)} mis-shaped ({shown}{', …' if len(misshaped) > _SHOW else ''})")
    raise CheckpointError(f"{source} does not fit the model: " + "; ".join(parts))


def _build(arch: str, kwargs: dict[str, Any], config_path: Path) -> Detector:
    try:
        factory = MODELS.get(arch)
    except UnknownNameError as exc:
        raise CheckpointError(f"{config_path}: {exc}") from None
    if "pretrained" in inspect.signature(factory).parameters:
        kwargs = {**kwargs, "pretrained": False}
    try:
        return create_model(arch, **kwargs)
    except TypeError as exc:
        raise CheckpointError(f"{config_path}: kwargs {kwargs} do not fit model {arch!r} ({exc})") from None
    except FakelensError as exc:
        raise CheckpointError(f"{config_path}: cannot build model {arch!r}: {exc}") from None


def load_checkpoint(
    path: PathLike,
    *,
    device: torch.device | str = "cpu",
    net: nn.Module | None = None,
    adapter: LogitsAdapter | None = None,
) -> Detector:
    """Load a detector saved by :func:`save_checkpoint` from its directory, ``config.json`` or weights file.

    The model is rebuilt from the registry (``pretrained=False``) and its weights are loaded strictly; labels,
    input spec, CAM layers and token layout come from the config. Checkpoints of wrapped models
    (``arch: null``) need the module they were saved from as ``net`` (and its ``adapter``, if any).
    Returns the detector in eval mode on ``device``.
    """
    config_path, weights_path = _locate(path)
    config = read_json(config_path)
    if config.get("kind", "detector") != "detector":
        raise CheckpointError(f"{config_path} describes a {config.get('kind')!r}, not a detector")
    arch = _field(config, "arch", config_path)
    try:
        labels = [str(label) for label in _field(config, "labels", config_path)]
        input_spec = InputSpec.from_dict(_field(config, "input_spec", config_path))
        cam_layers = [str(layer) for layer in config.get("cam_layers", [])]
        tl = config.get("token_layout")
        token_layout = (
            TokenLayout(**{**tl, "patch_size": tuple(tl["patch_size"])}) if isinstance(tl, dict) else None
        )
        kwargs = dict(config.get("kwargs") or {})
        fake = config.get("fake_label", "fake")
        if len(labels) > 2 and fake == labels[0] and "fake" not in labels:
            fake = None  # a classifier saved before fake_label could be null named its first label
        fake_label = None if fake is None else str(fake)
        cal = config.get("calibration")
        calibration = None if cal is None else Calibration.from_dict(cal)
        weights_name = str(config.get("weights", WEIGHTS_NAME))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, FakelensError) as exc:
        raise CheckpointError(f"{config_path} has an invalid field ({type(exc).__name__}: {exc})") from None
    if Path(weights_name).name != weights_name:
        raise CheckpointError(
            f"{config_path}: 'weights' must be a file name next to it, not {weights_name!r}"
        )
    weights_path = weights_path or config_path.parent / weights_name

    if arch is None:
        if net is None:
            raise CheckpointError(
                f"{config_path} holds a wrapped custom model, which the command line cannot rebuild: load "
                "it in Python with the module it was saved from, load_checkpoint(path, net=module), and pass "
                "the detector to analyze_images, explain or run_trust (docs/trust/README.md shows run_trust)"
            )
        try:
            base = Detector(
                net, labels=labels, fake_label=fake_label, adapter=adapter, config={"arch": None, **kwargs}
            )
        except ValueError as exc:
            raise CheckpointError(f"{config_path}: {exc}") from None
    elif isinstance(arch, str):
        base = _build(arch, kwargs, config_path)
    else:
        raise CheckpointError(f"{config_path}: 'arch' must be a model name, not {arch!r}")
    if len(labels) != len(base.labels):
        more = ", …" if len(base.labels) > 3 else ""
        raise CheckpointError(
            f"{config_path} lists {len(labels)} labels, but model {arch!r} built from its kwargs has "
            f"{len(base.labels)} outputs ({', '.join(base.labels[:3])}{more})"
        )

    state = _read_weights(weights_path)
    check_state_dict(base.state_dict(), state, source=str(weights_path))
    base.load_state_dict(state, strict=True)
    try:
        det = Detector(
            base.net,
            labels=labels,
            input_spec=input_spec,
            cam_layers=cam_layers,
            token_layout=token_layout,
            fake_label=fake_label,
            name=str(config.get("name", arch or "custom")),
            config=base.config,
            adapter=adapter if arch is None else base._adapter,
        )
    except (FakelensError, ValueError) as exc:
        raise CheckpointError(f"{config_path}: {exc}") from None
    det.calibration = calibration
    det.untrained = config.get("untrained") is True
    return det.to(device).eval()


def load_ensemble(path: PathLike, *, device: torch.device | str = "cpu") -> Ensemble:
    """Load an ensemble saved by :func:`save_checkpoint` from its directory or ``ensemble.json``."""
    p = Path(path)
    config_path = p / ENSEMBLE_NAME if p.is_dir() else p
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    config = read_json(config_path)
    if config.get("kind") != "ensemble":
        raise CheckpointError(f"{config_path} does not describe an ensemble")
    root = config_path.parent.resolve()
    members_cfg = _field(config, "members", config_path)
    if not isinstance(members_cfg, list) or not members_cfg:
        raise CheckpointError(f"{config_path}: 'members' must be a non-empty list")
    members = []
    for i, entry in enumerate(members_cfg):
        sub = entry.get("path") if isinstance(entry, dict) else entry
        if not isinstance(sub, str):
            raise CheckpointError(f"{config_path}: member {i} has no 'path'")
        member_dir = (root / sub).resolve()
        if not member_dir.is_relative_to(root):
            raise CheckpointError(f"{config_path}: member path {sub!r} leaves the checkpoint directory")
        members.append(load_checkpoint(member_dir, device=device))
    try:
        cal = config.get("calibration") or {}
        cal_members = cal.get("members") or [None] * len(members)
        combined = cal.get("combined")
        return Ensemble(
            members,
            weights=config.get("weights"),
            rule=config.get("rule", "mean"),
            threshold=float(config.get("threshold", 0.5)),
            calibrations=[None if c is None else Calibration.from_dict(c) for c in cal_members],
            calibration=None if combined is None else Calibration.from_dict(combined),
        )
    except (FakelensError, AttributeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{config_path}: {exc}") from None


DEFAULT_MODEL = "default"


def default_ensemble_path() -> Path:
    """Where the shipped ensemble lives: ``fakelens/weights/default`` (see its MODEL_CARD.md)."""
    return Path(__file__).resolve().parent.parent / "weights" / "default"


def is_ensemble_checkpoint(path: PathLike) -> bool:
    p = Path(path)
    return (p.is_dir() and (p / ENSEMBLE_NAME).is_file()) or (p.is_file() and p.name == ENSEMBLE_NAME)


def load_detector(spec: PathLike, *, device: torch.device | str = "cpu") -> Detector | Ensemble:
    """``"default"`` (the shipped ensemble), a registered model name (built with its defaults, its real/fake
    head untrained: ``untrained`` is set) or a checkpoint path (detector or ensemble).

    A registered name wins over a same-named path in the working directory; write ``./name`` for the path.
    """
    from fakelens.devices import resolve_device
    from fakelens.plugins import load_plugins

    load_plugins()  # models registered from outside fakelens, also where no CLI ran (Ray workers, create_app)
    device = resolve_device(str(device))  # "cuda" without a GPU: one clear error, not torch's driver trace
    text = os.fspath(spec)
    if text == DEFAULT_MODEL:
        path = default_ensemble_path()
        if not is_ensemble_checkpoint(path):
            raise CheckpointError(
                f"the default ensemble is not installed ({path / ENSEMBLE_NAME} is missing); "
                "reinstall fakelens or pass --model with a checkpoint or a registered model"
            )
        return load_ensemble(path, device=device)
    if text in MODELS:
        return create_model(text).to(device)
    p = Path(text)
    if is_ensemble_checkpoint(p):
        return load_ensemble(p, device=device)
    if p.exists():
        return load_checkpoint(p, device=device)
    if os.sep in text or "/" in text or p.suffix in (".json", ".safetensors"):
        raise CheckpointError(f"checkpoint not found: {p}")
    hint = ""
    try:
        MODELS.get(text)
    except UnknownNameError as exc:
        hint = str(exc)
    raise UnknownNameError(
        f"{hint}, or {DEFAULT_MODEL!r} (the shipped ensemble); nor is {text!r} a checkpoint path"
    )


def _member_configs(root: Path) -> list[Path]:
    members = read_json(root / ENSEMBLE_NAME).get("members", [])
    return [root / str(m.get("path") if isinstance(m, dict) else m) / CONFIG_NAME for m in members]


def checkpoint_arch(spec: PathLike) -> str | None:
    """The architecture of the detector checkpoint ``spec``; None for an ensemble (or ``"default"``), whose
    member is picked by architecture, and for anything unreadable (:func:`member_checkpoint` says why)."""
    text = os.fspath(spec)
    path = default_ensemble_path() if text == DEFAULT_MODEL else Path(text)
    if is_ensemble_checkpoint(path):
        return None
    try:
        arch = read_json(_locate(path)[0]).get("arch")
    except (CheckpointError, OSError, ValueError):
        return None
    return arch if isinstance(arch, str) else None


def member_checkpoint(spec: PathLike, arch: str) -> Path:
    """The ``config.json`` of a detector checkpoint to start training from: ``spec`` itself (a detector
    checkpoint of architecture ``arch``), or the member of architecture ``arch`` of the ensemble ``spec``
    (``"default"``: the shipped one). One precise :class:`CheckpointError` when there is none."""
    text = os.fspath(spec)
    path = default_ensemble_path() if text == DEFAULT_MODEL else Path(text)
    if is_ensemble_checkpoint(path):
        root = path if path.is_dir() else path.parent
        configs = _member_configs(root)
        archs = [read_json(c).get("arch") for c in configs]
        if archs.count(arch) != 1:
            raise CheckpointError(
                f"{path} has {archs.count(arch)} members of architecture {arch!r} (members: "
                f"{', '.join(map(str, archs))}); pick one with --model or pass the member's folder"
            )
        return configs[archs.index(arch)]
    config_path = _locate(path)[0]
    found = read_json(config_path).get("arch")
    if found != arch:
        raise CheckpointError(f"{config_path} holds a {found!r} detector, not {arch!r} (--model)")
    return config_path


@dataclass(frozen=True)
class TrainingPhotos:
    """The pool photographs a checkpoint was trained (``train``) or validated (``val``) on, by sha256 (all
    members of an ensemble); ``sha256`` is both.

    ``unrecorded`` lists ``(member, pool manifest sha256)`` for members trained on a pool whose photo list
    was not recorded (checkpoints from before fakelens recorded it): their photos cannot be told apart.
    """

    train: frozenset[str] = frozenset()
    val: frozenset[str] = frozenset()
    unrecorded: tuple[tuple[str, str], ...] = ()
    datasets: frozenset[str] = frozenset()
    """The ``--data`` datasets it was trained on, as recorded (absolute paths since 2026-11-27)."""
    validated: frozenset[tuple[str, str]] = frozenset()
    """``(dataset, split)`` its best epoch was selected and calibrated on (split ``val``, ``all``, or
    ``hold-out``: a share of the training images), as recorded since 2026-11-28; older checkpoints that used
    their dataset's val split are inferred from ``validation``."""

    @property
    def sha256(self) -> frozenset[str]:
        return self.train | self.val


def training_photos(spec: PathLike) -> TrainingPhotos:
    """What :func:`load_detector` ``spec`` saw of a real-photo pool, from the ``provenance.data.photos`` of
    each checkpoint config (``{"train": [sha256…], "val": […]}``, written by ``fakelens train --forgeries``).

    Evaluating on a pool that has grown since training deals its photos anew, so some of a model's training
    photos can land in the test split; :func:`fakelens.train.evaluate.evaluate` leaves these out.
    A registered model name (untrained) saw nothing.
    """
    text = os.fspath(spec)
    if text == DEFAULT_MODEL:
        path = default_ensemble_path()
    elif text in MODELS:
        return TrainingPhotos()
    else:
        path = Path(text)
    if is_ensemble_checkpoint(path):
        configs = _member_configs(path if path.is_dir() else path.parent)
    else:
        configs = [_locate(path)[0]]
    seen: dict[str, set[str]] = {"train": set(), "val": set()}
    unrecorded = []
    datasets: set[str] = set()
    validated: set[tuple[str, str]] = set()
    for config in configs:
        # a fine-tuned checkpoint also saw what the checkpoint it started from saw (provenance.init, chained)
        prov = read_json(config).get("provenance") or {}
        if isinstance(prov, dict) and (on := _validated_on(prov.get("data") or {})) is not None:
            validated.add(on)
        while isinstance(prov, dict) and prov:
            data = prov.get("data") or {}
            photos = data.get("photos")
            if data.get("kind") == "forgeries" and isinstance(photos, dict):
                for split, hashes in seen.items():
                    hashes.update(str(h) for h in photos.get(split, []))
            elif data.get("kind") == "forgeries":
                unrecorded.append((config.parent.name, str(data.get("pool_manifest_sha256", ""))))
            elif data.get("kind") == "dataset" and data.get("path"):
                datasets.add(str(data["path"]))
            prov = prov.get("init") or {}
    return TrainingPhotos(
        frozenset(seen["train"]),
        frozenset(seen["val"]),
        tuple(unrecorded),
        frozenset(datasets),
        frozenset(validated),
    )


def _validated_on(data: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(dataset, split)`` validation used, from a ``provenance.data`` (:attr:`TrainingPhotos.validated`)."""
    on = data.get("validated_on")
    if isinstance(on, dict) and on.get("path") and on.get("split"):
        return str(on["path"]), str(on["split"])
    if (
        data.get("kind") == "dataset"
        and data.get("path")
        and data.get("validation") == "the dataset's val split"
    ):
        return str(data["path"]), "val"
    return None
