"""One forward and one cut-off backward per target; every gradient method is derived from the result.

The backward is ``torch.autograd.grad`` with the hooked layer outputs as *inputs*, so it stops at the
deepest requested layer and computes no parameter gradients. During the capture the parameters are
frozen (``requires_grad=False``) so the forward records no graph for them either; the first hooked output
that carries no graph is turned into a leaf. Hooks are removed and the model's train/eval modes and
``requires_grad`` flags restored in ``finally`` — also when the forward raises. Everything stays on the
model's device; nothing here synchronises with the host.

Hooks live on the model and the frozen flags are the model's, so explanations and scoring of one model from
several threads take turns (:func:`~fakelens.models.fold.model_lock`): concurrent ones traded maps between
threads and left the model frozen for good.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from fakelens.explain.targets import Target, resolve_target
from fakelens.models.base import Detector
from fakelens.models.fold import eval_mode, in_fast_layout, model_lock


@dataclass
class Capture:
    """What one forward and the cut-off backwards leave behind.

    ``activations[layer]`` and ``gradients[target][layer]`` are ``(B, C, h, w)`` (token layers already
    reshaped to their patch grid, prefix tokens dropped); ``scores[target]`` is ``(B,)``.
    """

    logits: Tensor
    activations: dict[str, Tensor]
    gradients: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    scores: dict[str, Tensor] = field(default_factory=dict)
    input_hw: tuple[int, int] = (0, 0)


@contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """Eval mode (:func:`~fakelens.models.fold.eval_mode`: every submodule) and ``requires_grad=False`` on
    every parameter for the block; both restored after. Holds :func:`model_lock`, so that another thread
    never saves this block's frozen flags as the model's own."""
    with model_lock(model), eval_mode(model):
        flags = [(p, p.requires_grad) for p in model.parameters()]
        try:
            for p, _ in flags:
                p.requires_grad_(False)
            yield
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)


@contextmanager
def hooked_outputs(model: nn.Module, layers: dict[str, nn.Module]) -> Iterator[dict[str, Tensor]]:
    """Record each layer's output tensor (the first element of a tuple output) during the block.

    An output that carries no graph (frozen parameters upstream) becomes a leaf that requires grad; each
    recorded tensor is handed on as a clone, so in-place operations downstream cannot change it.
    """
    store: dict[str, Tensor] = {}
    handles = []

    def make_hook(name: str):  # type: ignore[no-untyped-def]
        def hook(module: nn.Module, args: object, output: object) -> object:
            tensor = output[0] if isinstance(output, (tuple, list)) else output
            if not isinstance(tensor, Tensor):
                raise TypeError(f"layer {name!r} returned {type(tensor).__name__}, not a tensor")
            if not tensor.requires_grad:
                tensor = tensor.detach().requires_grad_(True)
            store[name] = tensor
            passed = tensor.clone()
            if isinstance(output, tuple):
                return (passed, *output[1:])
            if isinstance(output, list):
                return [passed, *output[1:]]
            return passed

        return hook

    try:
        for name, module in layers.items():
            handles.append(module.register_forward_hook(make_hook(name)))
        yield store
    finally:
        for h in handles:
            h.remove()


def _fits(hw: tuple[int, int], input_hw: tuple[int, int]) -> bool:
    """Whether a grid of ``hw`` cells has about the input's aspect ratio (within a factor of 1.5)."""
    if min(hw) < 1:
        return False
    return abs(math.log((hw[0] / hw[1]) / (input_hw[0] / input_hw[1]))) <= math.log(1.5)


def _as_map(t: Tensor, detector: Detector, input_hw: tuple[int, int]) -> Tensor:
    if t.dim() == 4:
        # a channels-last layer (timm's Swin stages give (B, h, w, C)): its last two axes are no grid of the
        # image, its middle two are — read as channels-first it would be one row of channels stretched
        # over the image
        _, d1, d2, d3 = t.shape
        if not _fits((d2, d3), input_hw) and _fits((d1, d2), input_hw):
            return t.permute(0, 3, 1, 2)
        return t
    if t.dim() == 3 and detector.token_layout is not None:
        return detector.token_layout.to_map(t, input_hw)
    if t.dim() == 3:
        raise ValueError(
            f"a layer of {detector.name!r} gives tokens (B, N, C) but the detector has no token_layout"
        )
    raise ValueError(f"cannot explain a layer output of shape {tuple(t.shape)}")


def capture(
    detector: Detector,
    x: Tensor,
    layers: Sequence[str] | None = None,
    targets: Sequence[str | Target] = ("fake",),
    *,
    gradients: bool = True,
) -> Capture:
    """Run ``detector`` once on the normalised batch ``x`` and take one cut-off backward per target.

    Works inside a caller's ``torch.no_grad()`` or ``torch.inference_mode()``. With ``gradients=False``
    only the forward runs (activation-only methods such as EigenCAM need nothing more).
    """
    names = list(layers or detector.cam_layers)
    if not names:
        raise ValueError(f"model {detector.name!r} names no CAM layers; pass layers=...")
    modules = {n: detector.layer(n) for n in names}
    resolved = [resolve_target(t, detector) for t in targets]
    input_hw = (int(x.shape[-2]), int(x.shape[-1]))
    with torch.inference_mode(False), torch.enable_grad(), frozen(detector):
        if x.is_inference():
            x = x.clone()

        def forward(inp: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
            with hooked_outputs(detector, modules) as store:
                return detector(inp), store

        if x.device.type == "cpu":
            # the same function; oneDNN skips layout conversions: the shipped members' forward + backward
            # on 16 tiles 1.8× (CNN) and 1.35× (ViT) faster on 2 cores
            logits, store = in_fast_layout(detector, x, forward)
        else:
            logits, store = forward(x)
        missing = [n for n in names if n not in store]
        if missing:
            raise ValueError(f"layers {missing} of {detector.name!r} did not run in the forward pass")
        outs = [store[n] for n in names]
        cap = Capture(
            logits=logits.detach(),
            activations={n: _as_map(store[n].detach(), detector, input_hw) for n in names},
            input_hw=input_hw,
        )
        for i, target in enumerate(resolved):
            score = target(logits)
            cap.scores[target.name] = score.detach()
            if not gradients:
                continue
            grads = torch.autograd.grad(
                score.sum(), outs, retain_graph=i < len(resolved) - 1, allow_unused=True
            )
            cap.gradients[target.name] = {
                n: _as_map(g if g is not None else torch.zeros_like(o), detector, input_hw)
                for n, g, o in zip(names, grads, outs, strict=True)
            }
    return cap
