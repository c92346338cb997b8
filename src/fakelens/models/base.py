"""The Detector contract: every model fakelens runs or explains is one of these.

A detector is an ``nn.Module`` whose ``forward(x)`` returns logits ``(B, len(labels))`` for pixels that were
prepared according to ``input_spec``. It names the layers a CAM should explain by default (``cam_layers``,
module paths relative to the detector) and, for transformers, the ``token_layout`` that turns a token
sequence ``(B, N, C)`` into a feature map ``(B, C, h, w)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from fakelens.errors import ConfigError, UnknownNameError
from fakelens.models.calibration import Calibration

ResizeMode = Literal["resize", "letterbox", "center_crop", "native"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputSpec:
    """How raw RGB pixels become the model's input tensor.

    ``size`` is ``(height, width)``; ``mode`` how the image is fitted to it (``resize`` stretches,
    ``letterbox`` keeps the aspect ratio and pads with ``fill`` pixels, ``center_crop`` scales the short
    side and crops, ``native`` never resamples: smaller images are padded and larger ones are read tile by
    tile at their own pixel grid, as forensic detectors trained on native crops need);
    ``mean``/``std`` normalise pixels in [0, 1] *after* any padding or fill.
    """

    size: tuple[int, int] = (224, 224)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    mode: ResizeMode = "letterbox"
    fill: tuple[int, int, int] = (0, 0, 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        return cls(
            size=tuple(d["size"]),
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
            mode=d.get("mode", "letterbox"),
            fill=tuple(d.get("fill", (0, 0, 0))),
        )

    def normalize(self, x: Tensor) -> Tensor:
        """``(B, 3, H, W)`` pixels in [0, 1] → normalised model input (on x's device and dtype)."""
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return (x - mean) / std


@dataclass(frozen=True)
class TokenLayout:
    """Token sequence layout of a vision transformer layer's output ``(B, N, C)``.

    The first ``num_prefix_tokens`` tokens are the class token (if any) followed by ``num_registers``
    register tokens; the remaining ``N - num_prefix_tokens`` are patches in row-major order on a grid of
    ``(H / patch, W / patch)`` for an ``(H, W)`` input — not necessarily square.
    """

    num_prefix_tokens: int
    patch_size: tuple[int, int]
    num_registers: int = 0
    has_class_token: bool = True

    def grid(self, input_hw: tuple[int, int]) -> tuple[int, int]:
        return input_hw[0] // self.patch_size[0], input_hw[1] // self.patch_size[1]

    def to_map(self, tokens: Tensor, input_hw: tuple[int, int]) -> Tensor:
        """``(B, N, C)`` tokens → ``(B, C, h, w)`` patch feature map (all prefix tokens dropped)."""
        h, w = self.grid(input_hw)
        patches = tokens[:, self.num_prefix_tokens :, :]
        if patches.shape[1] != h * w:
            raise ValueError(
                f"token layout mismatch: {patches.shape[1]} patch tokens after {self.num_prefix_tokens} "
                f"prefix tokens, but a {input_hw} input with patch {self.patch_size} gives a {h}x{w} grid"
            )
        return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


LogitsAdapter = Callable[[Any], Tensor]


def _default_adapter(out: Any) -> Tensor:
    """Accept plain tensors, Hugging Face ``ModelOutput`` (``.logits``) and tuples (first element)."""
    if isinstance(out, Tensor):
        return out
    logits = getattr(out, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise TypeError(f"cannot find logits in a model output of type {type(out).__name__}")


def few(labels: Sequence[str], shown: int = 4) -> str:
    """Labels for a message: all of a few, the first ``shown`` and the count of many (ImageNet has 1000)."""
    if len(labels) == 1:  # a tuple of one, not a parenthesised string
        return f"({labels[0]!r},)"
    if len(labels) <= shown + 1:
        return "(" + ", ".join(repr(x) for x in labels) + ")"
    return "(" + ", ".join(repr(x) for x in labels[:shown]) + f", … {len(labels)} labels)"


def require_detector(model: Any, what: str) -> None:
    """``model`` must be one :class:`Detector`: an ensemble (or anything else) gets a TypeError that says
    what to pass instead."""
    if isinstance(model, Detector):
        return
    members = getattr(model, "members", None)
    if members is not None:
        names = ", ".join(getattr(m, "name", "?") for m in members)
        raise TypeError(
            f"{what} works on one detector, not an ensemble: pass one of its members, "
            f"e.g. ensemble.members[0] (members: {names})"
        )
    raise TypeError(f"{what} needs a fakelens Detector, not {type(model).__name__} (see fakelens.wrap_model)")


class Detector(nn.Module):
    """A classifier with the metadata fakelens needs to prepare inputs and explain decisions.

    Wraps ``net`` (any ``nn.Module``: timm, torchvision, Hugging Face). Layer names in ``cam_layers`` are
    paths relative to the *detector*, e.g. ``"net.layer4"``.
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        labels: Sequence[str] = ("real", "fake"),
        input_spec: InputSpec | None = None,
        cam_layers: Sequence[str] = (),
        token_layout: TokenLayout | None = None,
        fake_label: str | None = "fake",
        name: str = "custom",
        config: dict[str, Any] | None = None,
        adapter: LogitsAdapter | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.labels = tuple(labels)
        self.input_spec = input_spec or InputSpec()
        self.cam_layers = tuple(cam_layers)
        self.token_layout = token_layout
        self.name = name
        self.config: dict[str, Any] = dict(config or {})
        # fitted on validation scores by ``fakelens train``, kept in the checkpoint: what a detector used
        # on its own shows and decides with (an ensemble carries its own per-member calibrations)
        self.calibration: Calibration | None = None
        # a registered architecture built by name, not loaded from a checkpoint: its real/fake head is
        # random, so its scores mean nothing (set by load_detector; shown beside every verdict)
        self.untrained = False
        self._adapter = adapter or _default_adapter
        if fake_label is not None and self.labels.count(fake_label) > 1:  # which one would be "fake"?
            raise ConfigError(f"the label {fake_label!r} appears more than once in {few(self.labels)}")
        # the fake class's logit (one logit: its sigmoid is p(fake)); None: a classifier with no fake class
        # (ImageNet), whose maps explain its top class and which gives no verdict
        self.fake_label: str | None = fake_label
        self.fake_index = 0
        if len(self.labels) == 1 and fake_label is not None:
            self.fake_label = self.labels[0]
        elif fake_label in self.labels:
            self.fake_index = self.labels.index(fake_label)
        elif fake_label is not None:
            raise ConfigError(
                f"fake label {fake_label!r} is not among the labels {few(self.labels)}: name the fake class "
                "with fake_label=…, or pass fake_label=None for a classifier without one (maps, no verdict)"
            )
        for layer in self.cam_layers:
            self.layer(layer)  # fail early on a wrong layer name

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, len(labels))``; any other output is a wrong wrap, refused rather than read as
        real/fake: a network whose output has another width (ImageNet's 1000 logits under two labels) or
        is no ``(B, n)`` logits (a feature map)."""
        out = self._adapter(self.net(x))
        n = len(self.labels)
        if not isinstance(out, Tensor) or out.dim() != 2:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ConfigError(
                f"{self.name!r} outputs {shape}, not logits of shape (N, {n}) (one per label "
                f"{few(self.labels)}): wrap a classifier, or pass adapter= to turn its output into logits"
            )
        if out.shape[1] != n:
            raise ConfigError(
                f"{self.name!r} outputs {out.shape[1]} logits but has {n} labels {few(self.labels)}: "
                "give one label per output"
            )
        return out

    def layer(self, name: str) -> nn.Module:
        """The submodule at ``name``: a dotted path relative to the detector (``net.layer4``) or, as
        :func:`~fakelens.models.wrap_model` accepts it, to the wrapped network (``layer4``)."""
        for path in (name, f"net.{name}" if name else "net"):
            try:
                return self.get_submodule(path)
            except AttributeError:
                continue
        raise UnknownNameError(f"model {self.name!r} has no layer {name!r}")

    @property
    def is_detector(self) -> bool:
        """Whether the model has a fake class, so a fake probability and a verdict."""
        return self.fake_label is not None

    @property
    def device(self) -> torch.device:
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def fake_probability(self, logits: Tensor) -> Tensor:
        """``(B, n)`` logits → ``(B,)`` probability of the fake label (sigmoid for one logit)."""
        if logits.shape[1] == 1:
            return torch.sigmoid(logits[:, 0])
        return torch.softmax(logits.float(), dim=1)[:, self.fake_index]

    def __repr__(self) -> str:
        """One line (the module tree is ``print(detector.net)``; nn.Module's repr ran to 400 lines)."""
        (h, w), n = self.input_spec.size, sum(p.numel() for p in self.parameters())
        return (
            f"Detector({self.name!r}, labels={few(self.labels)}, input={h}×{w} {self.input_spec.mode}, "
            f"cam_layers={list(self.cam_layers)}, {n / 1e6:.1f} M parameters"
            + (", untrained" if self.untrained else "")
            + ")"
        )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "labels": list(self.labels),
            "input_spec": self.input_spec.to_dict(),
            "cam_layers": list(self.cam_layers),
            "token_layout": self.token_layout.to_dict() if self.token_layout else None,
            "parameters": sum(p.numel() for p in self.parameters()),
        }


@dataclass
class ModelInfo:
    """A registry entry's description, shown by ``fakelens models``."""

    name: str
    summary: str
    kind: str = "cnn"
    extra: dict[str, Any] = field(default_factory=dict)
