"""``explain()``: every requested method for a batch, gradient methods from one shared capture.

Gradient and activation CAMs (the :data:`~fakelens.explain.cams.CAMS` registry) are all derived from one
forward and one cut-off backward per target. Methods that need passes of their own (perturbation,
attention) register in :data:`EXPLAINERS` and run after it.
"""

from __future__ import annotations

import ast
import difflib
import inspect
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor

from fakelens.errors import ConfigError, ExplanationError, UnknownNameError
from fakelens.explain.cams import CAMS
from fakelens.explain.capture import capture
from fakelens.explain.explanation import (
    Explanation,
    build_explanation,
    build_explanations,
    fuse_layers,
    image_cells,
)
from fakelens.explain.targets import Target, resolve_target
from fakelens.models.base import Detector, require_detector
from fakelens.models.fold import model_lock
from fakelens.registry import Registry

if TYPE_CHECKING:
    from fakelens.geometry import Geometry


class Explainer(Protocol):
    """A method that runs passes of its own: returns raw ``(B, h, w)`` signed maps and metadata.

    The metadata must hold ``scores`` (the target's score per image, ``(B,)``) and ``probabilities`` (the
    fake probability per image, ``(B,)``); it may hold ``logits`` ``(B, K)``, ``layers`` (the layers it read;
    default: those it was given) and anything else JSON-like, which lands in ``Explanation.meta``.
    """

    def __call__(
        self, detector: Detector, x: Tensor, target: Target, layers: Sequence[str]
    ) -> tuple[Tensor, dict[str, Any]]: ...


EXPLAINERS: Registry[Explainer] = Registry("explanation method", shares_names_with=CAMS)


def method_names() -> list[str]:
    """Every method ``explain`` accepts."""
    return CAMS.names() + EXPLAINERS.names()


def class_agnostic(method: str) -> bool:
    """Whether a method's map ignores the explained target (Eigen-CAM, raw attention, rollout): it shows
    where the model is active, not evidence for one class."""
    factory = CAMS.get(method) if method in CAMS else EXPLAINERS.get(method) if method in EXPLAINERS else None
    return bool(getattr(factory, "class_agnostic", False))  # a name not registered (an old analysis): no


def check_methods(methods: Sequence[str]) -> None:
    """Raise :class:`UnknownNameError` (with close matches) for a name that is no explanation method."""
    for m in methods:
        if m not in CAMS and m not in EXPLAINERS:
            close = difflib.get_close_matches(m, method_names(), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownNameError(
                f"unknown explanation method {m!r}{hint} (known: {', '.join(method_names())})"
            )


def method_options(method: str) -> dict[str, inspect.Parameter]:
    """The keyword options of a method, with their defaults and annotations: those of its class and,
    through ``**options``, of its bases; gradient CAMs take none."""
    check_methods([method])
    if method in CAMS:
        return {}
    factory = EXPLAINERS.get(method)
    ignored = getattr(factory, "ignored_options", ())
    found: dict[str, inspect.Parameter] = {}
    for cls in getattr(factory, "__mro__", ()):
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        for p in params:
            if p.kind is p.KEYWORD_ONLY and p.name not in ignored:
                found.setdefault(p.name, p)
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return found


_SIMPLE_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "str": (str,),
    "None": (type(None),),
}


def _check_option_type(method: str, name: str, value: Any, annotation: Any) -> None:
    """Refuse a value of the wrong plain type (``rise.n_masks=abc``) with the option's type in words; other
    annotations (literals, tuples, tensors) are left to the method's own checks."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    if text.startswith("Literal[") and text.endswith("]"):
        choices = ast.literal_eval(f"({text[8:-1]},)")
        if value not in choices:
            raise ConfigError(f"{method}.{name} must be one of {', '.join(map(str, choices))}, not {value!r}")
        return
    parts = [p.strip() for p in text.split("|")]
    if not parts or any(p not in _SIMPLE_TYPES for p in parts):
        return
    allowed = tuple(t for p in parts for t in _SIMPLE_TYPES[p])
    # True is an int to Python, not to a user
    if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
        words = " or ".join({"None": "null"}.get(p, p) for p in parts)
        raise ConfigError(f"{method}.{name} must be {words}, not {value!r}")


def _option_value(text: str) -> Any:
    """JSON where it parses (numbers, true/false, null; lists become tuples), else the text itself."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return tuple(value) if isinstance(value, list) else value


def parse_options(specs: Sequence[str], methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["rise.n_masks=2000", "scorecam.top_k=64"]`` → ``{"rise": {"n_masks": 2000}, …}`` for ``explain``.

    Each spec names one of ``methods`` and one of its options (:func:`method_options`); the value is JSON
    where it parses, else a string (``occlusion.fill=blur``). The options are checked by building each
    method once, so a misspelt name or a bad value is one :class:`ConfigError` before any model runs.
    """
    options: dict[str, dict[str, Any]] = {}
    for spec in specs:
        key, sep, text = spec.partition("=")
        method, dot, name = key.strip().rpartition(".")
        if not sep or not dot or not method or not name:
            raise ConfigError(f"option {spec!r} is not METHOD.OPTION=VALUE (e.g. rise.n_masks=2000)")
        if method not in methods:
            raise ConfigError(f"option {spec!r} is for {method!r}, which is not among the methods asked for")
        options.setdefault(method, {})[name] = _option_value(text.strip())
    return check_options(options, methods)


def check_options(
    options: dict[str, dict[str, Any]] | None, methods: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """``options`` (``{"rise": {"n_masks": 2000}}``) checked against ``methods`` before any model runs: each
    key a method asked for, each name one of its options (:func:`method_options`), each value accepted by
    building the method once; one :class:`ConfigError` otherwise (a misspelt option is never ignored)."""
    if options is None:
        return {}
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        raise ConfigError(f"options must be a dict of method → dict of options, not {type(options).__name__}")
    for method, kwargs in options.items():
        if method not in methods:
            raise ConfigError(f"options given for {method!r}, which is not among the methods asked for")
        known = method_options(method)
        for name, value in kwargs.items():
            if name not in known:
                have = ", ".join(known) if known else "none (gradient CAMs have no options)"
                raise ConfigError(f"{method} has no option {name!r} (its options: {have})")
            _check_option_type(method, name, value, known[name].annotation)
        try:
            EXPLAINERS.create(method, **kwargs)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bad option for {method}: {exc}") from None
    return options


def method_list(methods: str | Sequence[str]) -> list[str]:
    """Method names from a list, or from one string (``"gradcam"`` or ``"gradcam,hirescam"``): a plain
    string is never read letter by letter."""
    if isinstance(methods, str):
        return [m.strip() for m in methods.split(",") if m.strip()]
    return list(methods)


def check_input(detector: Detector, x: Any) -> None:
    """``x`` must be the detector's normalised input: a ``(B, C, H, W)`` tensor in its parameters' dtype and
    on their device — one clear error, not torch's own from deep inside a convolution."""
    require_detector(detector, "explain")
    if not isinstance(x, Tensor):
        raise TypeError(
            f"explain needs a (B, C, H, W) tensor, not {type(x).__name__} "
            "(for PIL images use fakelens.pipeline.explain_images)"
        )
    if x.dim() != 4:
        raise ValueError(f"expected a (B, C, H, W) input for {detector.name!r}, got {tuple(x.shape)}")
    p = next(detector.parameters(), None)
    if p is not None and (x.dtype != p.dtype or x.device != p.device):
        raise ValueError(
            f"the input is {x.dtype} on {x.device} but {detector.name!r} is {p.dtype} on {p.device}: "
            "move one to the other (x.to(detector.device, detector_dtype))"
        )


def _checked_raw(method: str, raw: Any, batch: int) -> Tensor:
    """A method's raw maps must be ``(B, h, w)``: one clear error naming the method, not torch's own later."""
    if not isinstance(raw, Tensor) or raw.dim() != 3 or raw.shape[0] != batch:
        shape = tuple(raw.shape) if isinstance(raw, Tensor) else type(raw).__name__
        raise ExplanationError(f"{method} returned maps of shape {shape}, not ({batch}, h, w)")
    return raw


def explain_targets(
    detector: Detector,
    x: Tensor,
    methods: Sequence[str] = ("gradcam",),
    targets: Sequence[str | Target] = ("fake",),
    *,
    layers: Sequence[str] | None = None,
    geometries: Sequence[Geometry] | None = None,
    valid: Tensor | None = None,
    options: dict[str, dict[str, Any]] | None = None,
) -> dict[str, dict[str, Explanation]]:
    """Explanations for each target and method: ``result[target_name][method]``.

    ``x`` is the normalised batch on the detector's device. Several layers are fused by
    :func:`~fakelens.explain.explanation.fuse_layers`. ``options`` maps a method of
    :data:`EXPLAINERS` to the keyword arguments of its factory, e.g. ``{"rise": {"n_masks": 500}}``.
    """
    methods = method_list(methods)
    check_methods(methods)
    options = check_options(options, methods)
    check_input(detector, x)
    with model_lock(detector):  # hooks and frozen flags are the model's: one explanation at a time
        return _explain_targets(detector, x, methods, targets, layers, geometries, valid, options)


def _explain_targets(
    detector: Detector,
    x: Tensor,
    methods: list[str],
    targets: Sequence[str | Target],
    layers: Sequence[str] | None,
    geometries: Sequence[Geometry] | None,
    valid: Tensor | None,
    options: dict[str, dict[str, Any]] | None,
) -> dict[str, dict[str, Explanation]]:
    layer_names = tuple(layers or detector.cam_layers)
    resolved = [resolve_target(t, detector) for t in targets]
    cam_methods = [m for m in methods if m in CAMS]
    out: dict[str, dict[str, Explanation]] = {t.name: {} for t in resolved}
    if cam_methods:
        need_grads = any(CAMS.get(m).uses_gradients for m in cam_methods)  # type: ignore[attr-defined]
        cap = capture(detector, x, layer_names, resolved, gradients=need_grads)
        flat = [
            n
            for n in layer_names
            if cap.activations[n].dim() == 4 and cap.activations[n].shape[-2:] == (1, 1)
        ]
        if flat:  # a pooled or head layer: every CAM of it is one constant, not a map
            raise ExplanationError(
                f"layer {flat[0]} has a 1×1 output (pooled): a CAM needs a spatial feature map; "
                f"choose an earlier layer (the model's CAM layers: {', '.join(detector.cam_layers)})"
            )
        probs = detector.fake_probability(cap.logits)
        shown = (
            torch.stack([g.valid_input(device=x.device) for g in geometries])
            if geometries is not None
            else valid
        )
        cells: dict[str, Tensor | None] = dict.fromkeys(layer_names)  # None: the whole input shows the image
        if shown is not None:  # each layer's feature cells that show the image
            for n in layer_names:
                h, w = cap.activations[n].shape[-2:]
                cells[n] = image_cells(shown.to(x.device), (int(h), int(w)))
        for t in resolved:
            grads = cap.gradients.get(t.name, {})
            batch = int(x.shape[0])
            raws = [
                fuse_layers(
                    [
                        _checked_raw(m, CAMS.create(m)(cap.activations[n], grads.get(n), cells[n]), batch)
                        for n in layer_names
                    ]
                )
                for m in cam_methods
            ]
            built = build_explanations(
                cam_methods,
                layer_names,
                t.name,
                torch.stack(raws),
                cap.scores[t.name],
                probs,
                cap.input_hw,
                geometries,
                valid,
                logits=cap.logits,
            )
            out[t.name].update(zip(cam_methods, built, strict=True))
    for m in methods:
        if m in CAMS:
            continue
        explainer = EXPLAINERS.create(m, **(options or {}).get(m, {}))
        for t in resolved:
            raw, meta = explainer(detector, x, t, layer_names)
            raw = _checked_raw(m, raw, int(x.shape[0]))
            missing = [k for k in ("scores", "probabilities") if k not in meta]
            if missing:
                raise ExplanationError(
                    f"{m} returned no {' or '.join(missing)} in its metadata (see fakelens.explain.Explainer)"
                )
            scores = meta.pop("scores")
            probs = meta.pop("probabilities")
            logits = meta.pop("logits", None)
            out[t.name][m] = build_explanation(
                m,
                meta.pop("layers", layer_names),
                t.name,
                raw,
                scores,
                probs,
                (int(x.shape[-2]), int(x.shape[-1])),
                geometries,
                valid,
                meta,
                logits=logits,
            )
    return out


def explain(
    detector: Detector,
    x: Tensor,
    methods: Sequence[str] = ("gradcam",),
    *,
    target: str | Target = "fake",
    layers: Sequence[str] | None = None,
    geometries: Sequence[Geometry] | None = None,
    valid: Tensor | None = None,
    options: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Explanation]:
    """``explain_targets`` for one target: ``result[method]``."""
    require_detector(detector, "explain")
    t = resolve_target(target, detector)
    return explain_targets(
        detector, x, methods, (t,), layers=layers, geometries=geometries, valid=valid, options=options
    )[t.name]
