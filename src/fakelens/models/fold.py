r"""A copy of a network with BatchNorm folded into the convolutions before it (inference only).

An eval-mode BatchNorm after a convolution is an affine map per channel, so it folds into the convolution:

.. math:: \gamma \frac{W * x + b - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta
          = W' * x + b',\quad W' = \frac{\gamma}{\sqrt{\sigma^2 + \epsilon}} W,\quad
          b' = \frac{\gamma (b - \mu)}{\sqrt{\sigma^2 + \epsilon}} + \beta

(Ioffe & Szegedy 2015; ``torch.nn.utils.fusion.fuse_conv_bn_weights``). The network is traced by
``torch.fx`` with timm's leaf modules and functions (``timm.layers.get_notrace_modules``), so timm's
"SAME"-padded ``Conv2dSame`` and its ``BatchNormAct2d`` (BatchNorm + activation in one module) stay single
nodes and fold too — ``torch.fx.experimental.optimization.fuse`` can trace neither (``effnet-lite0``). Folded
pairs: ``Conv2d`` or timm ``Conv2dSame`` (exact types: a convolution that re-standardises its weights in
``forward`` must not get folded weights) whose output feeds only a ``BatchNorm2d`` or timm
``BatchNormAct2d`` with running statistics; the latter leaves its dropout and activation in place.

:func:`folded_copy` caches the copy per model until a weight changes; :func:`inference_logits` is the
scoring forward every inference path uses (channels-last input and the checked copy on a CPU).
"""

from __future__ import annotations

import copy
import functools
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_weights

from fakelens.models.base import Detector


@dataclass(frozen=True)
class _Timm:
    """timm's modules and functions that ``torch.fx`` must not trace into, and its foldable types."""

    leaves: tuple[type[nn.Module], ...] = ()
    functions: tuple[Any, ...] = ()
    convs: tuple[type[nn.Module], ...] = ()
    norms: tuple[type[nn.Module], ...] = ()


@functools.cache
def _timm() -> _Timm:
    try:
        from timm.layers import get_notrace_functions, get_notrace_modules
        from timm.layers.conv2d_same import Conv2dSame
        from timm.layers.norm_act import BatchNormAct2d
    except ImportError:
        return _Timm()
    functions = tuple(f for f in get_notrace_functions() if callable(f))
    return _Timm(tuple(get_notrace_modules()), functions, (Conv2dSame,), (BatchNormAct2d,))


class _Tracer(torch.fx.Tracer):
    def __init__(self) -> None:
        super().__init__(autowrap_functions=_timm().functions)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, _timm().leaves) or super().is_leaf_module(m, module_qualified_name)


def trace(net: nn.Module) -> torch.fx.GraphModule:
    """``net`` traced by ``torch.fx`` with timm's leaf modules; raises where it cannot be traced."""
    return torch.fx.GraphModule(net, _Tracer().trace(net))


Pair = tuple[torch.fx.Node, nn.Conv2d, _BatchNorm]


def _pair(gm: torch.fx.GraphModule, node: torch.fx.Node) -> Pair | None:
    """``(conv node, conv, norm)`` when ``node`` is a foldable BatchNorm of a convolution's only use."""
    src = node.args[0] if node.op == "call_module" and len(node.args) == 1 and not node.kwargs else None
    if not isinstance(src, torch.fx.Node) or src.op != "call_module" or len(src.users) != 1:
        return None
    conv, bn = gm.get_submodule(str(src.target)), gm.get_submodule(str(node.target))
    if type(conv) not in (nn.Conv2d, *_timm().convs) or type(bn) not in (nn.BatchNorm2d, *_timm().norms):
        return None
    if not isinstance(conv, nn.Conv2d) or not isinstance(bn, _BatchNorm) or bn.running_var is None:
        return None
    if bn.running_mean is None or conv.out_channels != bn.num_features:
        return None
    return src, conv, bn


def fold_batchnorm(net: nn.Module) -> tuple[torch.fx.GraphModule, int]:
    """A traced copy of ``net`` (eval mode) with every foldable convolution → BatchNorm pair folded, and the
    number of pairs folded. ``net`` is not touched; raises where ``torch.fx`` cannot trace it."""
    gm = trace(copy.deepcopy(net).eval())
    folded = 0
    with torch.no_grad():
        for node in list(gm.graph.nodes):
            pair = _pair(gm, node)
            if pair is None:
                continue
            src, conv, bn = pair
            assert bn.running_mean is not None and bn.running_var is not None
            conv.weight, conv.bias = fuse_conv_bn_weights(
                conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
            )
            if type(bn) is nn.BatchNorm2d:
                node.replace_all_uses_with(src)
                gm.graph.erase_node(node)
            else:  # timm BatchNormAct2d: its dropout and activation stay
                parent, _, name = str(node.target).rpartition(".")
                rest = [getattr(bn, part, nn.Identity()) for part in ("drop", "act")]
                setattr(gm.get_submodule(parent), name, nn.Sequential(*rest))
            folded += 1
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm, folded


_FOLDED: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[Any, ...], nn.Module | None]] = (
    weakref.WeakKeyDictionary()
)
_CHECKED: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()


def state_signature(module: nn.Module, channels_last: bool) -> tuple[Any, ...]:
    """Changes whenever a parameter or buffer is replaced or modified in place: each one's storage, version
    counter, device and dtype, and — for changes through ``.data``, which bump no version counter (an EMA's
    ``p.data.lerp_(q, 0.01)``, ``w.data.mul_(0.5)``) — a fingerprint of the values: every floating tensor's
    L2 norm, in one fused ``torch._foreach_norm`` per device and dtype. That adds 0.6–0.7 ms
    (``effnet-lite0``, 3.4 M values) and 1.6–1.7 ms (``vit-tiny-reg4-npr``, 6.1 M) per call on one CPU core,
    against 23–27 and 89–100 ms for their forward of one image (2–3 %; under 0.2 % of a batch of 16). A
    ``.data`` change that keeps every tensor's norm (a sign flip, a permutation) goes unseen: call
    :func:`clear_folded_copies` after one."""
    tensors = [*module.parameters(), *module.buffers()]
    try:
        state = tuple((t.data_ptr(), t._version, t.device, t.dtype) for t in tensors)
    except RuntimeError:  # inference tensors have no version counter: never reuse a copy
        return (object(),)
    groups: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
    for t in tensors:
        if t.is_floating_point() and t.numel():
            groups.setdefault((t.device, t.dtype), []).append(t)
    with torch.no_grad():
        norms = tuple(tuple(torch.stack(torch._foreach_norm(ts)).tolist()) for ts in groups.values())
    return (channels_last, state, norms)


def folded_copy(detector: Detector, channels_last: bool = True) -> nn.Module | None:
    """:func:`fold_batchnorm` of ``detector.net`` (weights in channels-last layout with ``channels_last``),
    cached per detector until a parameter or buffer changes; ``None`` when there is no pair to fold or the
    network cannot be traced. Callers check it against the model before trusting it."""
    if not any(isinstance(m, _BatchNorm) for m in detector.modules()):
        return None
    sig = state_signature(detector, channels_last)
    hit = _FOLDED.get(detector)
    if hit is not None and hit[0] == sig:
        return hit[1]
    net: nn.Module | None = None
    with torch.inference_mode(False), torch.no_grad():
        try:
            traced, folded = fold_batchnorm(detector.net)
        except Exception:  # not traceable by torch.fx: keep the original model
            traced, folded = None, 0
        if traced is not None and folded:
            net = traced.to(memory_format=torch.channels_last) if channels_last else traced
    _FOLDED[detector] = (sig, net)
    return net


def clear_folded_copies() -> None:
    """Drop every cached folded copy (each holds a copy of the weights while its model lives)."""
    _FOLDED.clear()
    _CHECKED.clear()


def has_hooks(model: nn.Module) -> bool:
    """Whether any submodule has a forward or backward hook (they see, and may keep, every forward)."""
    return any(
        m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
        for m in model.modules()
    )


def agrees(got: Tensor, ref: Tensor, rtol: float = 1e-4) -> bool:
    """Same shape and ``|got − ref| <= rtol · (1 + |ref|)`` everywhere (in float32): the check a faster copy
    of a model must pass against the model before it serves."""
    got, ref = got.float(), ref.float()
    return got.shape == ref.shape and bool(((got - ref).abs() <= rtol * (1 + ref.abs())).all())


_LAYOUT: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()
_T = TypeVar("_T")


def in_fast_layout(
    detector: Detector, x: Tensor, fast: Callable[[Tensor], _T], plain: Callable[[Tensor], _T] | None = None
) -> _T:
    """``fast(x)`` with the ``(B, C, H, W)`` input in channels-last layout (the CPU's fast layout), unless the
    model is known to reject it: a model that ``.view``s an activation (``x.view(x.size(0), -1)`` after its
    convolutions) raises there. Its first such ``RuntimeError`` marks the model and ``plain(x)`` (default
    ``fast``) runs on the input as it is; a model known to accept the layout raises as it does."""
    known = _LAYOUT.get(detector)
    if x.dim() != 4 or known is False:
        return (plain or fast)(x)
    try:
        out = fast(x.contiguous(memory_format=torch.channels_last))
    except RuntimeError:
        if known:
            raise
        _LAYOUT[detector] = False
        return (plain or fast)(x)
    _LAYOUT[detector] = True
    return out


def accepts_channels_last(detector: Detector, x: Tensor) -> bool:
    """Whether ``detector`` runs on channels-last input (see :func:`in_fast_layout`); the first time, found
    out with a forward of ``x[:1]`` (call it in eval mode, before registering hooks)."""
    if detector not in _LAYOUT and x.dim() == 4:
        with torch.no_grad():
            in_fast_layout(detector, x[:1], detector)
    return _LAYOUT.get(detector, False)


_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The lock held while a model's state is borrowed — hooks and frozen flags by explanations
    (:func:`fakelens.explain.capture.frozen`), eval mode by :func:`inference_logits` — so that threads
    sharing the model take turns (re-entrant: one explanation may nest another)."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Every submodule in eval mode for the block (running BatchNorm statistics, used and never updated; no
    dropout), each one's own train/eval flag put back after, also when the block raises. The model's own
    flag says nothing of its submodules' (a wrapper in eval mode around a network the user put back in
    training mode), so all of them are set. Holds :func:`model_lock`, so that another thread never saves
    this block's eval mode as the model's own."""
    with model_lock(model):
        modes = [(m, m.training) for m in model.modules()]
        try:
            model.eval()
            yield
        finally:
            for m, mode in modes:
                m.training = mode


def inference_logits(detector: Detector, x: Tensor) -> Tensor:
    """``detector(x)`` for inference on a CPU, faster and the same function: ``(B, C, H, W)`` inputs in
    channels-last layout, through the cached :func:`folded_copy` where there is one — checked once per copy
    on the first input against the model (1e-4 relative), else the model serves. With gradients enabled,
    with hooks on the model or on another device: ``detector(x)`` as it is; for a model that rejects the
    layout (:func:`in_fast_layout`), the model on ``x`` as it is. A model in training mode runs in eval mode
    and is put back as it was (it scored with batch statistics and updated BatchNorm's running ones) — every
    submodule, whatever the model's own flag says (:func:`eval_mode`).

    The shipped members at 256 px, batch 16, 2 CPU cores: ``effnet-lite0`` 758 → 290 ms (429 ms from the
    layout alone), ``vit-tiny-reg4-npr`` 1 023 → 750 ms (its EfficientNet stem's 33 BatchNorms folded).
    """
    # another thread's explanation borrows the model (its hooks would record this forward, its eval mode
    # would be undone mid-forward): scoring takes its turn too; an uncontended lock costs under a microsecond
    with eval_mode(detector):
        return _inference_logits(detector, x)


def _inference_logits(detector: Detector, x: Tensor) -> Tensor:
    if x.device.type != "cpu" or x.dim() != 4 or torch.is_grad_enabled():
        return detector(x)
    if has_hooks(detector):
        return detector(x)
    net = folded_copy(detector)
    if net is None:
        return in_fast_layout(detector, x, detector)
    adapter = detector._adapter

    def folded(t: Tensor) -> Tensor:
        if net not in _CHECKED:
            _CHECKED[net] = agrees(adapter(net(t[:1])), detector(t[:1]))
        return adapter(net(t)) if _CHECKED[net] else detector(t)

    return in_fast_layout(detector, x, folded, detector)


__all__ = [
    "accepts_channels_last",
    "agrees",
    "clear_folded_copies",
    "eval_mode",
    "fold_batchnorm",
    "folded_copy",
    "has_hooks",
    "in_fast_layout",
    "inference_logits",
    "model_lock",
    "state_signature",
    "trace",
]
