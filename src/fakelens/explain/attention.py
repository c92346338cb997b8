r"""Attention capture for vision transformers: per-layer attention probabilities ``A_l`` ``(B, H, N, N)``,
their gradients ``∂y/∂A_l``, the norms of the tokens each layer reads, and artifact-token detection.

Supported model families (``Detector.net`` is probed in this order; anything else raises
:class:`UnsupportedModelError` naming them):

- **timm** ``VisionTransformer`` and its subclasses (DeiT, ViTs with register tokens, ...) whose blocks use
  ``timm.layers.Attention``. timm's fused attention (``F.scaled_dot_product_attention``) never materialises
  ``A``. Without gradients it is *recomputed* from the captured ``q`` and ``k`` (the outputs of
  ``q_norm``/``k_norm``) as ``softmax(q·scale kᵀ)`` while the model keeps its fused kernel
  (``fused="recompute"``). When ``∂y/∂A`` is needed the explained pass switches fusion off
  (``fused_attn = False``) so the attention timm multiplies into ``v`` *is* the recorded tensor (hooked at
  ``attn_drop``); the flag is restored afterwards, also on exceptions.
- **torchvision** ``VisionTransformer``: each ``EncoderBlock.self_attention`` (``nn.MultiheadAttention``) is
  called with ``need_weights=True, average_attn_weights=False``. For gradients an explicit, numerically
  equivalent self-attention replaces its ``forward`` for the pass, so the recorded ``A`` lies on the path.
- **Hugging Face** ``ViTForImageClassification`` (transformers 4.x ``vit.encoder.layer`` and 5.x
  ``vit.layers``): the eager attention implementation is selected for the pass
  (``config._attn_implementation = "eager"``); its weights are the tensor multiplied into the values.

Every patch (hook, flag, ``forward`` override, config value) is undone in ``finally``; parameters are frozen
and the model put in eval mode for the pass by :func:`~fakelens.explain.capture.frozen`. All tensors stay on
the model's device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from timm.layers import Attention as TimmAttention
from torch import Tensor, nn

from fakelens.errors import ConfigError
from fakelens.explain.capture import frozen
from fakelens.explain.targets import Target, resolve_target
from fakelens.models.base import Detector, TokenLayout

Fused = Literal["auto", "recompute", "unfuse"]
Readout = Literal["class", "mean"]
Pool = Literal["mean", "model"]

SUPPORTED_FAMILIES = (
    "timm VisionTransformer (blocks[i].attn is timm.layers.Attention)",
    "torchvision VisionTransformer (encoder.layers[i].self_attention is nn.MultiheadAttention)",
    "Hugging Face ViTForImageClassification (vit.layers or vit.encoder.layer)",
)


class UnsupportedModelError(ConfigError):
    """The model is not a transformer family whose attention fakelens knows how to capture."""


# ----------------------------------------------------------------------------------------------------
# What the hooks write into


class AttentionSink:
    """Per-layer storage filled during one forward pass.

    ``attentions[l]``: ``(B, H, N, N)`` post-softmax attention of block ``l`` (``(B, N, N)`` with
    ``mean_heads``), kept in the autograd graph with ``keep_graph``; ``norms[l]``: ``(B, N)`` L2 norms of
    block ``l``'s output tokens (the keys block ``l + 1`` reads); ``embedding_norms``: those of block 0's
    input (the embedded patches); ``outputs[l]``: block ``l``'s output tokens ``(B, N, C)`` (only with
    ``keep_outputs``).
    """

    def __init__(self, depth: int, *, keep_graph: bool, mean_heads: bool = False, keep_outputs: bool = False):
        if keep_graph and mean_heads:
            raise ValueError("mean_heads would take the recorded attention off the forward path")
        self.depth = depth
        self.keep_graph = keep_graph
        self.mean_heads = mean_heads
        self.keep_outputs = keep_outputs
        self.attentions: list[Tensor | None] = [None] * depth
        self.norms: list[Tensor | None] = [None] * depth
        self.outputs: list[Tensor | None] = [None] * depth
        self.embedding_norms: Tensor | None = None
        self.path = ""

    def attention(self, layer: int, a: Tensor) -> None:
        if a.dim() != 4 or a.shape[-1] != a.shape[-2]:
            raise UnsupportedModelError(
                f"block {layer} gave attention of shape {tuple(a.shape)}, not (B, H, N, N)"
            )
        if not self.keep_graph:
            a = a.detach()
        self.attentions[layer] = a.mean(1) if self.mean_heads else a

    def block_input(self, layer: int, tokens: Tensor) -> None:
        if layer == 0:
            self.embedding_norms = tokens.detach().float().norm(dim=-1)

    def block_output(self, layer: int, tokens: Tensor) -> None:
        self.norms[layer] = tokens.detach().float().norm(dim=-1)
        if self.keep_outputs:
            self.outputs[layer] = tokens

    def check(self, family: str) -> None:
        missing = [
            i
            for i, (a, n) in enumerate(zip(self.attentions, self.norms, strict=True))
            if a is None or n is None
        ]
        if missing:
            raise UnsupportedModelError(
                f"no attention was captured for blocks {missing} of this {family} model; "
                "its attention modules did not run the way fakelens expects"
            )


def _first_tensor(obj: Any) -> Tensor | None:
    if isinstance(obj, Tensor):
        return obj
    if isinstance(obj, (tuple, list)) and obj and isinstance(obj[0], Tensor):
        return obj[0]
    return None


# ----------------------------------------------------------------------------------------------------
# Model families


class ViTFamily:
    """How to find a transformer's blocks and attention, patch them for one pass, and read tokens out.

    Subclasses implement :meth:`install_attention`, :meth:`final_norm`, :meth:`model_pool`, :meth:`classify`.
    Module paths are relative to the detector (``"net.blocks.0.attn"``).
    """

    name: ClassVar[str] = ""

    def __init__(
        self,
        detector: Detector,
        blocks: Sequence[nn.Module],
        block_paths: Sequence[str],
        attention_paths: Sequence[str],
        readout: Readout,
    ) -> None:
        self.detector = detector
        self.net: Any = detector.net
        self.blocks = list(blocks)
        self.block_paths = tuple(block_paths)
        self.attention_paths = tuple(attention_paths)
        self.readout: Readout = readout

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def install(self, stack: ExitStack, sink: AttentionSink, *, in_graph: bool, fused: Fused) -> str:
        """Install every hook and patch on ``stack`` (undone when it closes); return the capture path."""
        for i, block in enumerate(self.blocks):

            def post(module: nn.Module, args: tuple[Any, ...], out: Any, i: int = i) -> None:
                t = _first_tensor(out)
                if t is not None:
                    sink.block_output(i, t)

            stack.callback(block.register_forward_hook(post).remove)

        def pre(module: nn.Module, args: tuple[Any, ...]) -> None:
            t = _first_tensor(args)
            if t is not None:
                sink.block_input(0, t)

        stack.callback(self.blocks[0].register_forward_pre_hook(pre).remove)
        return self.install_attention(stack, sink, in_graph=in_graph, fused=fused)

    def install_attention(
        self, stack: ExitStack, sink: AttentionSink, *, in_graph: bool, fused: Fused
    ) -> str:
        raise NotImplementedError

    def final_norm(self, tokens: Tensor) -> Tensor:
        """The model's last normalisation applied to ``(B, N, C)`` tokens."""
        raise NotImplementedError

    def model_pool(self, tokens: Tensor) -> Tensor:
        """``(B, N, C)`` normed tokens → ``(B, C')`` pooled as the model does (class token, average, …)."""
        raise NotImplementedError

    def classify(self, pooled: Tensor) -> Tensor:
        """``(B, C')`` pooled features → ``(B, n)`` logits (the classifier head)."""
        raise NotImplementedError

    def head_logits(self, tokens: Tensor, pool: Pool = "mean") -> Tensor:
        """Logits read from intermediate tokens ``(B, N, C)``: ``pool="model"`` uses the model's own readout
        (final norm, then its pooling); ``pool="mean"`` norms the mean over all tokens (LeGrad's choice)."""
        if pool == "model":
            return self.classify(self.model_pool(self.final_norm(tokens)))
        return self.classify(self.final_norm(tokens.mean(dim=1)))


def _patch_attr(stack: ExitStack, obj: Any, name: str, value: Any) -> None:
    """Set ``obj.name = value`` until ``stack`` closes, then restore the old value (or its absence)."""
    had = name in vars(obj)
    old = vars(obj).get(name)
    setattr(obj, name, value)

    def restore() -> None:
        if had:
            setattr(obj, name, old)
        else:
            delattr(obj, name)

    stack.callback(restore)


class TimmViT(ViTFamily):
    """timm ``VisionTransformer``: recompute ``softmax(q·scale kᵀ)`` beside fused attention, or unfuse."""

    name = "timm-vit"

    @classmethod
    def probe(cls, detector: Detector) -> TimmViT | None:
        net = detector.net
        blocks = getattr(net, "blocks", None)
        if (
            not isinstance(blocks, nn.Sequential)
            or not hasattr(net, "forward_head")
            or not hasattr(net, "norm")
        ):
            return None
        found_attns = [getattr(b, "attn", None) for b in blocks]
        attns = [a for a in found_attns if isinstance(a, TimmAttention)]
        if not attns or len(attns) != len(found_attns):
            found = sorted({type(a).__name__ if a is not None else "no .attn" for a in found_attns})
            raise UnsupportedModelError(
                f"timm model {type(net).__name__} uses attention {found}; "
                "only timm.layers.Attention is supported"
            )
        custom = sorted({type(a).__name__ for a in attns if type(a).forward is not TimmAttention.forward})
        if custom:
            raise UnsupportedModelError(
                f"timm attention {custom} overrides forward; its attention cannot be captured"
            )
        layout = detector.token_layout
        prefix = getattr(net, "num_prefix_tokens", None)
        if layout is not None and prefix is not None and layout.num_prefix_tokens != int(prefix):
            raise ConfigError(
                f"the token layout of {detector.name!r} declares {layout.num_prefix_tokens} prefix tokens, "
                f"but the timm model has {prefix} (class + registers); maps would be shifted"
            )
        has_cls = (
            layout.has_class_token if layout is not None else bool(getattr(net, "has_class_token", True))
        )
        readout: Readout = "class" if has_cls and getattr(net, "global_pool", "token") == "token" else "mean"
        names = [n for n, _ in blocks.named_children()]
        return cls(
            detector,
            list(blocks),
            [f"net.blocks.{n}" for n in names],
            [f"net.blocks.{n}.attn" for n in names],
            readout,
        )

    def install_attention(
        self, stack: ExitStack, sink: AttentionSink, *, in_graph: bool, fused: Fused
    ) -> str:
        if in_graph and fused == "recompute":
            raise ConfigError(
                "gradients need the attention on the forward path: use fused='auto' or 'unfuse'"
            )
        paths: set[str] = set()
        for i, block in enumerate(self.blocks):
            attn: TimmAttention = block.attn  # type: ignore[assignment]
            if in_graph or fused == "unfuse" or not attn.fused_attn:
                paths.add("unfused")
                _patch_attr(stack, attn, "fused_attn", False)

                def on_attn(module: nn.Module, args: tuple[Any, ...], out: Tensor, i: int = i) -> None:
                    sink.attention(
                        i, out
                    )  # eval-mode dropout returns its input: the tensor multiplied into v

                stack.callback(attn.attn_drop.register_forward_hook(on_attn).remove)
            else:
                paths.add("recompute")
                qs: dict[int, Tensor] = {}

                def on_q(
                    module: nn.Module,
                    args: tuple[Any, ...],
                    q: Tensor,
                    i: int = i,
                    qs: dict[int, Tensor] = qs,
                ) -> None:
                    qs[i] = q

                def on_k(
                    module: nn.Module,
                    args: tuple[Any, ...],
                    k: Tensor,
                    i: int = i,
                    qs: dict[int, Tensor] = qs,
                    attn: TimmAttention = attn,
                ) -> None:
                    q = qs.pop(i)
                    with torch.no_grad():  # the same ops, in the same order, as timm's unfused branch
                        a = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
                    sink.attention(i, a)

                stack.callback(attn.q_norm.register_forward_hook(on_q).remove)
                stack.callback(attn.k_norm.register_forward_hook(on_k).remove)
        return "+".join(sorted(paths))

    def final_norm(self, tokens: Tensor) -> Tensor:
        return self.net.norm(tokens)

    def model_pool(self, tokens: Tensor) -> Tensor:
        return self.net.pool(tokens)

    def classify(self, pooled: Tensor) -> Tensor:
        net = self.net
        x = net.fc_norm(pooled) if hasattr(net, "fc_norm") else pooled
        x = net.head_drop(x) if hasattr(net, "head_drop") else x
        return net.head(x)

    def head_logits(self, tokens: Tensor, pool: Pool = "mean") -> Tensor:
        if pool == "model":  # timm's own head (handles attention pooling and distillation heads)
            return self.net.forward_head(self.net.norm(tokens))
        return super().head_logits(tokens, pool)


class TorchvisionViT(ViTFamily):
    """torchvision ``VisionTransformer``: ``nn.MultiheadAttention`` asked for per-head weights."""

    name = "torchvision-vit"

    @classmethod
    def probe(cls, detector: Detector) -> TorchvisionViT | None:
        import torchvision

        net = detector.net
        if not isinstance(net, torchvision.models.VisionTransformer):
            return None
        names = [n for n, _ in net.encoder.layers.named_children()]
        blocks = list(net.encoder.layers)
        for n, b in zip(names, blocks, strict=True):
            mha = getattr(b, "self_attention", None)
            if (
                not isinstance(mha, nn.MultiheadAttention)
                or not mha.batch_first
                or not mha._qkv_same_embed_dim
                or mha.bias_k is not None
                or mha.add_zero_attn
            ):
                raise UnsupportedModelError(
                    f"encoder layer {n} has no batch-first self-attention with shared q/k/v"
                )
        return cls(
            detector,
            blocks,
            [f"net.encoder.layers.{n}" for n in names],
            [f"net.encoder.layers.{n}.self_attention" for n in names],
            "class",
        )

    def install_attention(
        self, stack: ExitStack, sink: AttentionSink, *, in_graph: bool, fused: Fused
    ) -> str:
        for i, block in enumerate(self.blocks):
            mha: nn.MultiheadAttention = block.self_attention  # type: ignore[assignment]
            fwd = _explicit_mha(mha, i, sink) if in_graph else _weights_mha(mha, i, sink)
            _patch_attr(stack, mha, "forward", fwd)
        return "explicit" if in_graph else "need_weights"

    def final_norm(self, tokens: Tensor) -> Tensor:
        return self.net.encoder.ln(tokens)

    def model_pool(self, tokens: Tensor) -> Tensor:
        return tokens[:, 0]

    def classify(self, pooled: Tensor) -> Tensor:
        return self.net.heads(pooled)


MHAForward = Callable[..., tuple[Tensor, Tensor | None]]


def _weights_mha(mha: nn.MultiheadAttention, layer: int, sink: AttentionSink) -> MHAForward:
    """``mha.forward`` asking torch for per-head weights (recorded), returning what the caller asked for."""
    original = mha.forward

    def forward(
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        out, w = original(
            query,
            key,
            value,
            key_padding_mask=key_padding_mask,
            need_weights=True,
            attn_mask=attn_mask,
            average_attn_weights=False,
            is_causal=is_causal,
        )
        assert w is not None
        sink.attention(layer, w)
        return out, ((w.mean(1) if average_attn_weights else w) if need_weights else None)

    return forward


def _explicit_mha(mha: nn.MultiheadAttention, layer: int, sink: AttentionSink) -> MHAForward:
    r"""Batch-first self-attention written out so that ``A = softmax(q kᵀ/√d)`` is the tensor multiplied into
    ``v`` (torch returns a *view* made after its use, which carries no gradient)."""

    def forward(
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        if key_padding_mask is not None or attn_mask is not None or is_causal or not (query is key is value):
            raise UnsupportedModelError(
                "only unmasked self-attention (query is key is value) can be captured"
            )
        b, n, e = query.shape
        h = mha.num_heads
        d = e // h
        qkv = F.linear(query, mha.in_proj_weight, mha.in_proj_bias).view(b, n, 3, h, d).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        a = ((q * d**-0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        sink.attention(layer, a)
        if mha.training and mha.dropout > 0:
            a = F.dropout(a, mha.dropout)
        out = mha.out_proj((a @ v).transpose(1, 2).reshape(b, n, e))
        return out, ((a.mean(1) if average_attn_weights else a) if need_weights else None)

    return forward


class HuggingFaceViT(ViTFamily):
    """Hugging Face ``ViTForImageClassification``: eager attention for the pass, weights from its output."""

    name = "hf-vit"

    @classmethod
    def probe(cls, detector: Detector) -> HuggingFaceViT | None:
        net = detector.net
        config = getattr(net, "config", None)
        vit = getattr(net, "vit", None)
        if getattr(config, "model_type", None) != "vit" or vit is None or not hasattr(net, "classifier"):
            return None
        if hasattr(vit, "layers"):  # transformers 5.x
            container, prefix = vit.layers, "net.vit.layers"
        elif hasattr(vit, "encoder") and hasattr(vit.encoder, "layer"):  # transformers 4.x
            container, prefix = vit.encoder.layer, "net.vit.encoder.layer"
        else:
            raise UnsupportedModelError("this Hugging Face ViT has neither vit.layers nor vit.encoder.layer")
        names = [n for n, _ in container.named_children()]
        return cls(
            detector,
            list(container),
            [f"{prefix}.{n}" for n in names],
            [f"{prefix}.{n}.attention" for n in names],
            "class",
        )

    def install_attention(
        self, stack: ExitStack, sink: AttentionSink, *, in_graph: bool, fused: Fused
    ) -> str:
        configs: dict[int, Any] = {id(self.net.config): self.net.config}
        for block in self.blocks:
            cfg = getattr(block.attention, "config", None)
            if cfg is not None:
                configs[id(cfg)] = cfg
        legacy = not hasattr(self.net.vit, "layers")
        for cfg in configs.values():
            old = cfg._attn_implementation
            cfg._attn_implementation = "eager"
            stack.callback(setattr, cfg, "_attn_implementation", old)
            if legacy:  # transformers 4.x returns the weights only when asked
                old_out = getattr(cfg, "output_attentions", False)
                cfg.output_attentions = True
                stack.callback(setattr, cfg, "output_attentions", old_out)
        for i, block in enumerate(self.blocks):

            def on_attn(module: nn.Module, args: tuple[Any, ...], out: Any, i: int = i) -> None:
                w = out[1] if isinstance(out, (tuple, list)) and len(out) > 1 else None
                if not isinstance(w, Tensor):
                    raise UnsupportedModelError(
                        "the Hugging Face attention returned no weights in eager mode"
                    )
                sink.attention(i, w)

            module: nn.Module = block.attention  # type: ignore[assignment]
            stack.callback(module.register_forward_hook(on_attn).remove)
        return "eager"

    def final_norm(self, tokens: Tensor) -> Tensor:
        return self.net.vit.layernorm(tokens)

    def model_pool(self, tokens: Tensor) -> Tensor:
        return tokens[:, 0]

    def classify(self, pooled: Tensor) -> Tensor:
        return self.net.classifier(pooled)


FAMILIES: list[Callable[[Detector], ViTFamily | None]] = [
    TimmViT.probe,
    TorchvisionViT.probe,
    HuggingFaceViT.probe,
]
"""Probes tried in order by :func:`vit_family`; append one to support another family."""


def vit_family(detector: Detector) -> ViTFamily:
    """The :class:`ViTFamily` adapter of ``detector.net``; raises :class:`UnsupportedModelError` otherwise."""
    for probe in FAMILIES:
        family = probe(detector)
        if family is not None:
            return family
    raise UnsupportedModelError(
        f"cannot capture the attention of {type(detector.net).__name__} (model {detector.name!r}); "
        "supported: " + "; ".join(SUPPORTED_FAMILIES)
    )


def token_layout(detector: Detector) -> TokenLayout:
    """The detector's token layout, required by every attention method."""
    if detector.token_layout is None:
        raise ConfigError(
            f"model {detector.name!r} has no token_layout; wrap it with fakelens.models.wrap_model or pass "
            "token_layout=TokenLayout(num_prefix_tokens=..., patch_size=...)"
        )
    return detector.token_layout


# ----------------------------------------------------------------------------------------------------
# Capture


@contextmanager
def recording_attention(
    detector: Detector,
    *,
    in_graph: bool = False,
    fused: Fused = "auto",
    mean_heads: bool = False,
    keep_outputs: bool = False,
) -> Iterator[AttentionSink]:
    """Record attention, token norms (and block outputs) of every forward of ``detector`` inside the block.

    With ``in_graph`` the recorded attention is the tensor the model multiplies into its values (so
    ``torch.autograd.grad(y, sink.attentions)`` gives ``∂y/∂A``); the caller must run the forward with grad
    enabled and an input that requires grad (parameters may stay frozen). Every hook and patch is undone on
    exit, also when the block raises. ``sink.path`` names the capture path (``recompute``, ``unfused``, …).
    """
    family = vit_family(detector)
    sink = AttentionSink(family.depth, keep_graph=in_graph, mean_heads=mean_heads, keep_outputs=keep_outputs)
    with ExitStack() as stack:
        sink.path = family.install(stack, sink, in_graph=in_graph, fused=fused)
        yield sink


@dataclass
class AttentionCapture:
    """What one forward (and, with gradients, one cut-off backward) over a transformer leaves behind.

    ``attentions[l]``: ``(B, H, N, N)`` (``(B, N, N)`` if heads were averaged); ``gradients[l]``: ``∂y/∂A_l``,
    same shape, or None; ``norms``: ``(L, B, N)`` norms of every block's output tokens; ``scores``: the
    explained score ``(B,)``; ``layers``: the attention modules' paths; ``path``: how attention was captured;
    ``first_layer``: the block index of ``attentions[0]`` when only later blocks were kept;
    ``embedding_norms``: ``(B, N)`` norms of the tokens block 0 reads.
    """

    logits: Tensor
    attentions: list[Tensor]
    norms: Tensor
    scores: Tensor
    input_hw: tuple[int, int]
    family: str
    layers: tuple[str, ...]
    readout: Readout
    path: str
    gradients: list[Tensor] | None = None
    first_layer: int = 0
    embedding_norms: Tensor | None = None


@contextmanager
def explained_pass(detector: Detector, x: Tensor, *, grad: bool) -> Iterator[Tensor]:
    """Frozen, eval-mode pass; with ``grad`` the yielded input is a leaf that requires grad."""
    with torch.inference_mode(False), frozen(detector):
        if x.is_inference():
            x = x.clone()
        if grad:
            with torch.enable_grad():
                yield x.detach().requires_grad_(True)
        else:
            with torch.no_grad():
                yield x


def capture_attention(
    detector: Detector,
    x: Tensor,
    target: str | Target = "fake",
    *,
    gradients: bool = False,
    mean_heads: bool = False,
    fused: Fused = "auto",
) -> AttentionCapture:
    """Run ``detector`` once on the normalised batch ``x`` recording every block's attention; with
    ``gradients`` also take one backward, cut off at the first block's attention, for ``∂y/∂A_l`` of the
    target score ``y``.

    ``fused="auto"`` recomputes attention beside timm's fused kernel when no gradient is needed and switches
    fusion off for the pass when one is; ``"unfuse"`` always switches it off; ``"recompute"`` never does (no
    gradients then). Works inside a caller's ``torch.no_grad()`` or ``inference_mode()``.
    """
    if gradients and mean_heads:
        raise ConfigError("gradients are per head; mean_heads=True would drop what they refer to")
    family = vit_family(detector)
    t = resolve_target(target, detector)
    input_hw = (int(x.shape[-2]), int(x.shape[-1]))
    with explained_pass(detector, x, grad=gradients) as xin:
        with recording_attention(detector, in_graph=gradients, fused=fused, mean_heads=mean_heads) as sink:
            logits = detector(xin)
        sink.check(family.name)
        attns: list[Tensor] = sink.attentions  # type: ignore[assignment]
        score = t(logits)
        grads = None
        if gradients:
            raw = torch.autograd.grad(score.sum(), attns, allow_unused=True)
            grads = [g if g is not None else torch.zeros_like(a) for g, a in zip(raw, attns, strict=True)]
            attns = [a.detach() for a in attns]
    return AttentionCapture(
        logits=logits.detach(),
        attentions=attns,
        norms=torch.stack(sink.norms),  # type: ignore[arg-type]
        embedding_norms=sink.embedding_norms,
        scores=score.detach(),
        input_hw=input_hw,
        family=family.name,
        layers=family.attention_paths,
        readout=family.readout,
        path=sink.path,
        gradients=grads,
    )


# ----------------------------------------------------------------------------------------------------
# Artifact tokens (Darcet et al., ICLR 2024)


def artifact_flags(
    norms: Tensor,
    num_prefix_tokens: int,
    *,
    k: float = 6.0,
    min_ratio: float = 2.0,
    embedded: Tensor | None = None,
    growth: float = 2.0,
) -> tuple[Tensor, Tensor]:
    r"""Flag high-norm outlier patch tokens: ``‖z‖ > median + k·MAD`` and ``‖z‖ > min_ratio·median``, and,
    given the embedded tokens' norms, a ratio ``‖z‖/median`` at least ``growth`` times the token's own ratio
    among the embeddings.

    ``norms`` ``(..., N)`` token norms (``(L, B, N)``: every block's output); ``embedded`` ``(B, N)``: the
    norms of the tokens the first block reads. Median and MAD (``median |‖z‖ − median|``, unscaled; even
    counts take the mean of the two middle values) are taken over the patch tokens of each row; prefix
    tokens (class, registers — high-norm by design) are never flagged. The ratio guard keeps a very tight
    norm distribution (tiny MAD) from flagging ordinary tokens; Darcet et al. report artifacts at about 10×
    the median norm, *grown inside the network* in low-information patches: a patch whose embedding is
    already an outlier (a high-contrast patch) carries that norm through the residual stream and is
    evidence, not an artifact, so ``growth`` spares it. Returns ``(flags (..., N) bool, ratio ‖z‖/median)``.
    """

    def ratio_of(n: Tensor) -> tuple[Tensor, Tensor]:
        patches = n[..., num_prefix_tokens:]
        med = patches.quantile(0.5, dim=-1, keepdim=True)
        mad = (patches - med).abs().quantile(0.5, dim=-1, keepdim=True)
        return n / med.clamp_min(torch.finfo(n.dtype).tiny), med + k * mad

    ratio, bound = ratio_of(norms)
    flags = (norms > bound) & (ratio > min_ratio)
    if embedded is not None:
        flags &= ratio > growth * ratio_of(embedded.to(norms))[0]
    flags[..., :num_prefix_tokens] = False
    return flags, ratio


def artifact_records(
    flags: Tensor, ratio: Tensor, num_prefix_tokens: int, grid: tuple[int, int]
) -> list[dict[str, Any]]:
    """``(L, B, N)`` flags → JSON-able ``{layer, image, token_index, grid_yx, norm_ratio}`` (1 host sync;
    the explainer adds ``masked``)."""
    idx = flags.nonzero()
    if idx.numel() == 0:
        return []
    values = ratio[flags].tolist()
    w = grid[1]
    out = []
    for (layer, image, token), r in zip(idx.tolist(), values, strict=True):
        y, xx = divmod(token - num_prefix_tokens, w)
        out.append(
            {
                "layer": layer,
                "image": image,
                "token_index": token,
                "grid_yx": [y, xx],
                "norm_ratio": round(float(r), 4),
            }
        )
    return out


def find_artifact_tokens(
    tokens: Sequence[Tensor],
    num_prefix_tokens: int,
    grid: tuple[int, int],
    *,
    k: float = 6.0,
    min_ratio: float = 2.0,
    embedded: Tensor | None = None,
    growth: float = 2.0,
) -> list[dict[str, Any]]:
    """Artifact tokens of each layer's tokens ``(B, N, C)`` (see :func:`artifact_flags`; ``embedded``: the
    tokens ``(B, N, C)`` the first layer read), as records ``{layer, image, token_index, grid_yx,
    norm_ratio}``; ``token_index`` counts the prefix tokens."""
    if not tokens:
        return []
    norms = torch.stack([t.detach().float().norm(dim=-1) for t in tokens])
    base = None if embedded is None else embedded.detach().float().norm(dim=-1)
    flags, ratio = artifact_flags(
        norms, num_prefix_tokens, k=k, min_ratio=min_ratio, embedded=base, growth=growth
    )
    return artifact_records(flags, ratio, num_prefix_tokens, grid)
