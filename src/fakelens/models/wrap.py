"""Wrap any classifier (timm, torchvision, Hugging Face, your own) as a :class:`Detector`.

The layers a CAM should explain and, for transformers, the token layout are inferred for the families
fakelens knows; for anything else pass ``cam_layers`` (and ``token_layout``) yourself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torchvision
from torch import nn

from fakelens.errors import ConfigError, UnknownNameError
from fakelens.models.base import Detector, InputSpec, LogitsAdapter, TokenLayout


@dataclass(frozen=True)
class Inferred:
    """What :func:`infer_layers` found: the family name, CAM layers (relative to the module), token layout
    and the input size and normalisation the module records, if any."""

    family: str
    cam_layers: tuple[str, ...]
    token_layout: TokenLayout | None = None
    input_size: tuple[int, int] | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return int(v[0]), int(v[1])
    return int(v), int(v)


def _last_child_name(container: nn.Module) -> str:
    names = [n for n, _ in container.named_children()]
    if not names:
        raise ConfigError(f"cannot infer cam_layers: {type(container).__name__} has no layers")
    return names[-1]


def _timm_cfg(module: nn.Module) -> dict[str, Any]:
    cfg = getattr(module, "pretrained_cfg", None)
    return cfg if isinstance(cfg, dict) else {}


def _is_hf_vit(module: nn.Module) -> bool:
    config = getattr(module, "config", None)
    return getattr(config, "model_type", None) == "vit" and isinstance(
        getattr(module, "vit", None), nn.Module
    )


def _hf_vit_layers(module: nn.Module) -> str:
    """The Hugging Face ViT layer list: ``vit.encoder.layer`` (transformers 4) or ``vit.layers`` (5)."""
    for path in ("vit.encoder.layer", "vit.layers"):
        try:
            module.get_submodule(path)
        except AttributeError:
            continue
        return path
    raise ConfigError(f"cannot find the encoder layers of {type(module).__name__}; pass cam_layers=")


def infer_layers(module: nn.Module) -> Inferred:
    """Default CAM layers and token layout of a known model family (paths relative to ``module``).

    timm ViTs: ``blocks[-1].norm1`` with ``num_prefix_tokens`` and ``patch_embed.patch_size``; timm CNNs:
    the module of the last ``feature_info`` entry; torchvision ResNets: ``layer4``; torchvision
    ``VisionTransformer``: ``encoder.layers[-1].ln_1`` (one class token); Hugging Face ``ViTFor…``:
    ``vit.encoder.layer[-1].layernorm_before`` (``vit.layers[-1]…`` in transformers 5; one class token).
    Raises :class:`ConfigError` otherwise.
    """
    cls = type(module).__name__
    patch_embed = getattr(module, "patch_embed", None)
    blocks = getattr(module, "blocks", None)
    if (
        isinstance(blocks, (nn.Sequential, nn.ModuleList))
        and hasattr(module, "num_prefix_tokens")
        and patch_embed is not None
    ):
        img_size = getattr(patch_embed, "img_size", None)
        cfg = _timm_cfg(module)
        return Inferred(
            family="timm-vit",
            cam_layers=(f"blocks.{_last_child_name(blocks)}.norm1",),
            token_layout=TokenLayout(
                num_prefix_tokens=int(module.num_prefix_tokens),  # type: ignore[arg-type]
                patch_size=_pair(patch_embed.patch_size),
                num_registers=int(getattr(module, "num_reg_tokens", 0)),
                has_class_token=bool(getattr(module, "has_class_token", True)),
            ),
            input_size=_pair(img_size) if img_size is not None else None,
            mean=tuple(cfg["mean"]) if "mean" in cfg else None,
            std=tuple(cfg["std"]) if "std" in cfg else None,
        )
    if isinstance(module, torchvision.models.VisionTransformer):
        layers = module.encoder.layers
        return Inferred(
            family="torchvision-vit",
            cam_layers=(f"encoder.layers.{_last_child_name(layers)}.ln_1",),
            token_layout=TokenLayout(num_prefix_tokens=1, patch_size=_pair(module.patch_size)),
            input_size=_pair(module.image_size),
        )
    if isinstance(module, torchvision.models.ResNet):
        return Inferred(family="torchvision-resnet", cam_layers=("layer4",))
    if _is_hf_vit(module):
        config = module.config
        layers_path = _hf_vit_layers(module)
        last = _last_child_name(module.get_submodule(layers_path))
        return Inferred(
            family="hf-vit",
            cam_layers=(f"{layers_path}.{last}.layernorm_before",),
            token_layout=TokenLayout(num_prefix_tokens=1, patch_size=_pair(config.patch_size)),  # type: ignore[union-attr]
            input_size=_pair(config.image_size),  # type: ignore[union-attr]
        )
    feature_info = getattr(module, "feature_info", None)
    if isinstance(feature_info, (list, tuple)) and feature_info and isinstance(feature_info[-1], dict):
        name = str(feature_info[-1]["module"])
        for candidate in (name, name.replace("_", ".")):
            try:
                module.get_submodule(candidate)
            except AttributeError:
                continue
            cfg = _timm_cfg(module)
            size = cfg.get("input_size")
            return Inferred(
                family="timm-cnn",
                cam_layers=(candidate,),
                input_size=(int(size[1]), int(size[2])) if size else None,
                mean=tuple(cfg["mean"]) if "mean" in cfg else None,
                std=tuple(cfg["std"]) if "std" in cfg else None,
            )
    raise ConfigError(
        f'cannot infer which layer of a {cls} to explain; pass cam_layers=("<module path>",) '
        "(a layer whose output is a (B, C, h, w) feature map, or (B, N, C) tokens with token_layout=)"
    )


def _resolve_layer(module: nn.Module, name: str) -> str:
    """A layer path relative to ``module`` (or already ``net.``-prefixed) → its path in the detector."""
    try:
        module.get_submodule(name)
        return f"net.{name}" if name else "net"
    except AttributeError:
        pass
    if name.startswith("net."):
        try:
            module.get_submodule(name[4:])
            return name
        except AttributeError:
            pass
    raise UnknownNameError(f"{type(module).__name__} has no layer {name!r}")


def _names(names: str | Sequence[str]) -> tuple[str, ...]:
    """A sequence of names, or one string of comma-separated names (never read character by character)."""
    if isinstance(names, str):
        return tuple(part.strip() for part in names.split(",") if part.strip())
    return tuple(names)


def wrap_model(
    module: nn.Module,
    *,
    labels: str | Sequence[str],
    input_spec: InputSpec | None = None,
    cam_layers: str | Sequence[str] | None = None,
    token_layout: TokenLayout | None = None,
    adapter: LogitsAdapter | None = None,
    name: str = "custom",
    fake_label: str | None = "fake",
) -> Detector:
    """Wrap ``module`` (logits ``(B, len(labels))``, or an output the adapter turns into them) as a Detector.

    ``cam_layers`` are paths relative to ``module`` (``"layer4"``; ``"net.layer4"`` is accepted too). When
    ``cam_layers`` or ``token_layout`` is None, each is inferred (see :func:`infer_layers`); when
    ``input_spec`` is None its size (and, for timm models, mean and std) come from what the module
    records, else :class:`InputSpec` defaults (224×224, ImageNet statistics, letterbox). The module is put
    in eval mode. ``labels`` may be written ``"real,fake"`` and ``cam_layers`` ``"layer4"`` or
    ``"layer3,layer4"``.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(
            f"wrap_model needs a torch.nn.Module (the network itself), not {type(module).__name__} "
            "(for a registered model by name use fakelens.create_model or load_detector)"
        )
    labels = _names(labels)
    if cam_layers is not None:
        cam_layers = _names(cam_layers)
    inferred: Inferred | None = None
    if cam_layers is None or token_layout is None or input_spec is None:
        try:
            inferred = infer_layers(module)
        except ConfigError:
            if cam_layers is None:
                raise
    if cam_layers is None:
        assert inferred is not None
        cam_layers = inferred.cam_layers
    if token_layout is None and inferred is not None:
        token_layout = inferred.token_layout
    layers = tuple(_resolve_layer(module, layer) for layer in cam_layers)
    if input_spec is None:
        input_spec = InputSpec()
        if inferred is not None:
            input_spec = InputSpec(
                size=inferred.input_size or input_spec.size,
                mean=inferred.mean or input_spec.mean,
                std=inferred.std or input_spec.std,
            )
    return Detector(
        module,
        labels=labels,
        input_spec=input_spec,
        cam_layers=layers,
        token_layout=token_layout,
        fake_label=fake_label,
        name=name,
        config={"arch": None, "family": inferred.family if inferred else None},
        adapter=adapter,
    ).eval()
