r"""Transformer explanations: class attention, attention rollout, gradient-weighted attention, LeGrad — with
register tokens and artifact tokens handled.

Every method reduces a captured pass (:mod:`fakelens.explain.attention`) to a relevance row ``r`` ``(B, N)``
over all tokens, read from the *query* row: the class token (index 0) when the model classifies from it,
otherwise the mean over the patch queries (global-average-pool ViTs). The map keeps only the patch tokens:
**all** ``num_prefix_tokens`` (class + registers) are dropped before reshaping to the (possibly non-square)
patch grid, so a model with registers is never shifted by its extra tokens.

Artifact tokens (Darcet et al., ICLR 2024): for each block ``l``, patch tokens of its output whose norm is an
outlier (:func:`~fakelens.explain.attention.artifact_flags`, ``median + k·MAD``) are reported in
``Explanation.meta["artifact_tokens"]`` as ``{layer: l, image, token_index, grid_yx, norm_ratio, masked}``
(``grid_yx``: the cell on the model's input token grid — a letterboxed or padded input's, not the original
image's); with ``artifacts="mask"`` (the default) their *columns* in the attention of block ``l + 1`` — the
block that reads them as keys — are zeroed (rows renormalised where the matrix is stochastic) before
aggregation; ``masked`` says whether that happened (not for the last block's output, which no block reads,
nor for blocks whose attention the method does not use). A token
must also have *grown* an outlier inside the network (its norm ratio at least twice its embedding's): a
high-norm embedding is a high-contrast input patch whose norm the residual stream carries to every block,
evidence rather than a repurposed token, so it is never flagged. Masking is the default because such tokens
carry global, not local, information and show as isolated spikes unrelated to the image region; the records
say what was flagged and masked, and on models whose registers absorb that role nothing is flagged, so the
maps are unchanged. ``artifacts="none"`` gives each paper's formula exactly.

Registered methods (``explain(detector, x, methods=[...])``): ``attention``, ``rollout``, ``gradattn``,
``legrad``. They ignore the CAM layers and use every block; the token-grid gradient CAMs (``gradcam``, …) of
the core engine work on token layers through ``Detector.token_layout``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from fakelens.errors import ConfigError
from fakelens.explain.attention import (
    AttentionCapture,
    Fused,
    Pool,
    Readout,
    UnsupportedModelError,
    artifact_flags,
    artifact_records,
    capture_attention,
    explained_pass,
    find_artifact_tokens,
    recording_attention,
    token_layout,
    vit_family,
)
from fakelens.explain.engine import EXPLAINERS
from fakelens.explain.targets import Target, resolve_target
from fakelens.models.base import Detector

ArtifactMode = Literal["none", "mask"]

__all__ = [
    "AttentionCapture",
    "AttentionRollout",
    "ClassAttention",
    "GradientWeightedAttention",
    "LeGrad",
    "UnsupportedModelError",
    "attention_rollout",
    "capture_attention",
    "capture_legrad",
    "class_attention",
    "find_artifact_tokens",
    "gradient_weighted_rollout",
    "legrad_relevance",
    "mask_columns",
    "readout_query",
    "recording_attention",
    "relevance_to_grid",
    "vit_family",
]


# ----------------------------------------------------------------------------------------------------
# Formulas on captured tensors (batched, on the device)


def readout_query(
    readout: Readout, n_tokens: int, num_prefix_tokens: int, batch: int, device: torch.device
) -> Tensor:
    """The query row ``(B, N)``: one-hot on the class token (index 0), or uniform over the patch tokens."""
    q = torch.zeros(batch, n_tokens, device=device)
    if readout == "class":
        q[:, 0] = 1.0
    else:
        q[:, num_prefix_tokens:] = 1.0 / (n_tokens - num_prefix_tokens)
    return q


def mask_columns(a: Tensor, mask: Tensor | None, *, renormalise: bool) -> Tensor:
    """Zero the key columns ``(B, N, N)`` flagged in ``mask`` ``(B, N)``; renormalise rows if asked."""
    if mask is None:
        return a
    a = a.masked_fill(mask[:, None, :], 0.0)
    return a / a.sum(-1, keepdim=True).clamp_min(1e-12) if renormalise else a


def _head_mean(a: Tensor) -> Tensor:
    return (a.mean(1) if a.dim() == 4 else a).float()


def _row_times(r: Tensor, a: Tensor) -> Tensor:
    """``(B, N) · (B, N, N) → (B, N)``."""
    return torch.bmm(r[:, None, :], a)[:, 0]


def class_attention(attention: Tensor, query: Tensor, mask: Tensor | None = None) -> Tensor:
    r"""Raw attention of the query row in the last layer, heads averaged: ``r = q·mean_h(A_L)``."""
    return _row_times(query, mask_columns(_head_mean(attention), mask, renormalise=True))


def attention_rollout(
    attentions: Sequence[Tensor], query: Tensor, masks: Sequence[Tensor] | None = None, residual: float = 0.5
) -> Tensor:
    r"""Attention rollout (Abnar & Zuidema, ACL 2020).

    .. math:: \hat A_l = (1-\rho)\,\mathrm{mean}_h(A_l) + \rho I \ (\text{rows renormalised}),\quad
              R = \hat A_L \cdots \hat A_1,\quad r = q^\top R

    with ``ρ = residual = ½``; computed as a row-vector product from the last layer down, ``O(L·N²)``.
    """
    r = query.float()
    for layer in reversed(range(len(attentions))):
        a = mask_columns(
            _head_mean(attentions[layer]), masks[layer] if masks is not None else None, renormalise=True
        )
        r = (1.0 - residual) * _row_times(r, a) + residual * r
    return r


def gradient_weighted_rollout(
    attentions: Sequence[Tensor],
    gradients: Sequence[Tensor],
    query: Tensor,
    masks: Sequence[Tensor] | None = None,
) -> Tensor:
    r"""Gradient-weighted attention rollout, Chefer et al. (ICCV 2021) "generic attention explainability".

    .. math:: \bar A_l = \mathrm{mean}_h\big((\nabla A_l \odot A_l)^+\big),\quad R \leftarrow R + \bar A_l R
              \ (R = I,\ l = 1..L),\quad r = q^\top R

    Flagged artifact columns of ``Ā_l`` are zeroed (no renormalisation: ``Ā_l`` is not stochastic).
    """
    r = query.float()
    for layer in reversed(range(len(attentions))):
        abar = (gradients[layer].float() * attentions[layer].float()).clamp_min(0).mean(1)
        abar = mask_columns(abar, masks[layer] if masks is not None else None, renormalise=False)
        r = r + _row_times(r, abar)
    return r


def legrad_relevance(gradients: Sequence[Tensor], masks: Sequence[Tensor] | None = None) -> Tensor:
    r"""LeGrad (Bousselham et al., 2024): ``Σ_l mean_{h,i} ReLU(∂s_l/∂A_l)_{h,i,:}``, ``(B, N)``.

    ``gradients[l]`` ``(B, H, N, N)`` is the gradient of layer ``l``'s own score ``s_l`` with respect to its
    attention; heads and queries are averaged, flagged artifact columns zeroed, layers summed.
    """
    total: Tensor | None = None
    for layer, g in enumerate(gradients):
        e = g.float().clamp_min(0).mean(dim=(1, 2))
        if masks is not None:
            e = e.masked_fill(masks[layer], 0.0)
        total = e if total is None else total + e
    if total is None:
        raise ValueError("LeGrad needs at least one layer")
    return total


def relevance_to_grid(r: Tensor, num_prefix_tokens: int, grid: tuple[int, int]) -> Tensor:
    """``(B, N)`` relevance over tokens → ``(B, h, w)`` patch map (every prefix token dropped)."""
    h, w = grid
    patches = r[:, num_prefix_tokens:]
    if patches.shape[1] != h * w:
        raise ValueError(
            f"token layout mismatch: {patches.shape[1]} patch tokens after {num_prefix_tokens} prefix "
            "tokens, "
            f"but the patch grid is {h}x{w}"
        )
    return patches.reshape(r.shape[0], h, w)


# ----------------------------------------------------------------------------------------------------
# LeGrad's capture: per-layer scores from intermediate tokens


def capture_legrad(
    detector: Detector,
    x: Tensor,
    target: str | Target = "fake",
    *,
    start: int | None = None,
    pool: Pool = "mean",
    fused: Fused = "auto",
) -> AttentionCapture:
    r"""One forward with attention on the path, then for each block ``l ≥ start`` the gradient of
    ``s_l = target(head(norm(pool(z_l))))`` — the classifier read from that block's output tokens — with
    respect to that block's attention ``A_l`` only. Each backward runs through one block's tail and the head.

    ``gradients[j]`` is for block ``start + j``; ``start`` defaults to half the depth (negative counts from
    the end). ``pool="mean"`` averages all tokens (LeGrad, torchcam); ``"model"``: the model's own readout.
    """
    family = vit_family(detector)
    t = resolve_target(target, detector)
    depth = family.depth
    first = depth // 2 if start is None else (start + depth if start < 0 else start)
    if not 0 <= first < depth:
        raise ConfigError(f"LeGrad start={start} is outside the model's {depth} blocks")
    input_hw = (int(x.shape[-2]), int(x.shape[-1]))
    with explained_pass(detector, x, grad=True) as xin:
        with recording_attention(detector, in_graph=True, fused=fused, keep_outputs=True) as sink:
            logits = detector(xin)
        sink.check(family.name)
        score = t(logits)
        grads: list[Tensor] = []
        for layer in range(first, depth):
            a, z = sink.attentions[layer], sink.outputs[layer]
            assert a is not None and z is not None
            s = t(family.head_logits(z, pool))
            (g,) = torch.autograd.grad(s.sum(), [a], retain_graph=layer < depth - 1, allow_unused=True)
            grads.append(g if g is not None else torch.zeros_like(a))
    return AttentionCapture(
        logits=logits.detach(),
        attentions=[a.detach() for a in sink.attentions[first:] if a is not None],
        norms=torch.stack(sink.norms),  # type: ignore[arg-type]
        scores=score.detach(),
        input_hw=input_hw,
        family=family.name,
        layers=family.attention_paths[first:],
        readout=family.readout,
        path=sink.path,
        gradients=grads,
        first_layer=first,
        embedding_norms=sink.embedding_norms,
    )


# ----------------------------------------------------------------------------------------------------
# Registered explainers


class TransformerExplainer:
    """Base class: capture, flag artifact tokens, reduce to a relevance row, drop prefix tokens, reshape.

    Options (factory keyword arguments): ``artifacts`` (``"mask"`` or ``"none"``), ``k`` and ``min_ratio`` of
    the artifact rule, ``fused`` (``"auto"``, ``"recompute"``, ``"unfuse"``; see
    :func:`~fakelens.explain.attention.capture_attention`). Subclasses implement :meth:`capture` and
    :meth:`relevance`.
    """

    name: ClassVar[str] = ""
    uses_layers: ClassVar[bool] = False  # every block is used; the CAM layers are ignored
    class_agnostic: ClassVar[bool] = False

    def __init__(
        self,
        *,
        artifacts: ArtifactMode = "mask",
        k: float = 6.0,
        min_ratio: float = 2.0,
        fused: Fused = "auto",
    ) -> None:
        if artifacts not in ("none", "mask"):
            raise ConfigError(f"artifacts={artifacts!r}: use 'mask' or 'none'")
        if fused not in ("auto", "recompute", "unfuse"):
            raise ConfigError(f"fused={fused!r}: use 'auto', 'recompute' or 'unfuse'")
        if not (isinstance(k, (int, float)) and math.isfinite(k) and k > 0):
            raise ConfigError(f"k={k!r}: the outlier rule median + k·MAD needs a finite k > 0")
        if not (isinstance(min_ratio, (int, float)) and math.isfinite(min_ratio) and min_ratio >= 1):
            raise ConfigError(f"min_ratio={min_ratio!r}: the growth a token needs is a finite ratio ≥ 1")
        self.artifacts: ArtifactMode = artifacts
        self.k = float(k)
        self.min_ratio = float(min_ratio)
        self.fused: Fused = fused

    def capture(self, detector: Detector, x: Tensor, target: Target) -> AttentionCapture:
        raise NotImplementedError

    def relevance(self, cap: AttentionCapture, query: Tensor, masks: Sequence[Tensor] | None) -> Tensor:
        """``(B, N)`` relevance of every token for the query row; ``masks[l]`` ``(B, N)`` flags per layer."""
        raise NotImplementedError

    def __call__(
        self, detector: Detector, x: Tensor, target: Target, layers: Sequence[str]
    ) -> tuple[Tensor, dict[str, Any]]:
        vit_family(detector)  # an unsupported model fails here, with the supported families named
        layout = token_layout(detector)
        cap = self.capture(detector, x, target)
        prefix = layout.num_prefix_tokens
        grid = layout.grid(cap.input_hw)
        batch, n_tokens = cap.norms.shape[1], cap.norms.shape[2]
        if n_tokens - prefix != grid[0] * grid[1]:
            raise ConfigError(
                f"token layout mismatch for {detector.name!r}: {n_tokens} tokens, {prefix} prefix tokens, "
                "but a "
                f"{cap.input_hw} input with patch {layout.patch_size} gives a {grid[0]}x{grid[1]} grid"
            )
        flags, ratio = artifact_flags(
            cap.norms, prefix, k=self.k, min_ratio=self.min_ratio, embedded=cap.embedding_norms
        )
        masks = None
        if self.artifacts == "mask":  # block l reads block l-1's output as keys; block 0 reads the embeddings
            reads = torch.cat([torch.zeros_like(flags[:1]), flags[:-1]])
            masks = list(reads[cap.first_layer :].unbind(0))
        query = readout_query(cap.readout, n_tokens, prefix, batch, cap.norms.device)
        raw = relevance_to_grid(self.relevance(cap, query, masks), prefix, grid)
        records = artifact_records(flags, ratio, prefix, grid)
        read = range(cap.first_layer, flags.shape[0])  # the blocks whose attention this method uses
        for r in records:  # block l's output is read as keys by block l + 1 (if this method uses it)
            r["masked"] = self.artifacts == "mask" and r["layer"] + 1 in read
        meta: dict[str, Any] = {
            "scores": cap.scores,
            "probabilities": detector.fake_probability(cap.logits),
            "logits": cap.logits,
            "layers": cap.layers,
            "family": cap.family,
            "capture": cap.path,
            "readout": cap.readout,
            "num_prefix_tokens": prefix,
            "num_registers": layout.num_registers,
            "grid": list(grid),
            "artifacts": self.artifacts,
            "artifact_rule": {"k": self.k, "min_ratio": self.min_ratio},
            "artifact_tokens": records,
        }
        return raw, meta


@EXPLAINERS.register("attention")
class ClassAttention(TransformerExplainer):
    r"""Raw attention of the class token in the last layer, heads averaged: ``mean_h(A_L)[cls, patches]``
    (mean over patch queries for models without a class-token readout)."""

    class_agnostic = True  # attention alone: the same map whatever the target

    name = "attention"

    def capture(self, detector: Detector, x: Tensor, target: Target) -> AttentionCapture:
        cap = capture_attention(detector, x, target, mean_heads=True, fused=self.fused)
        cap.first_layer = len(cap.attentions) - 1
        cap.attentions, cap.layers = cap.attentions[-1:], cap.layers[-1:]
        return cap

    def relevance(self, cap: AttentionCapture, query: Tensor, masks: Sequence[Tensor] | None) -> Tensor:
        return class_attention(cap.attentions[-1], query, masks[-1] if masks is not None else None)


@EXPLAINERS.register("rollout")
class AttentionRollout(TransformerExplainer):
    r"""Attention rollout (Abnar & Zuidema, ACL 2020): ``R = Â_L ⋯ Â_1``, ``Â_l = ½ mean_h(A_l) + ½ I``;
    map ``R[cls, patches]``. Option ``residual`` (½) is the identity's weight."""

    class_agnostic = True  # attention alone: the same map whatever the target

    name = "rollout"

    def __init__(self, *, residual: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= residual < 1.0:
            raise ConfigError(f"rollout residual={residual} must be in [0, 1)")
        self.residual = float(residual)

    def capture(self, detector: Detector, x: Tensor, target: Target) -> AttentionCapture:
        return capture_attention(detector, x, target, mean_heads=True, fused=self.fused)

    def relevance(self, cap: AttentionCapture, query: Tensor, masks: Sequence[Tensor] | None) -> Tensor:
        return attention_rollout(cap.attentions, query, masks, self.residual)


@EXPLAINERS.register("gradattn")
class GradientWeightedAttention(TransformerExplainer):
    r"""Chefer et al. (ICCV 2021) generic attention explainability:
    ``Ā_l = mean_h((∇A_l ⊙ A_l)⁺)``, ``R ← R + Ā_l R`` from ``R = I``; map ``R[cls, patches]``.
    One forward (fusion off) and one backward cut off at the first block's attention."""

    name = "gradattn"

    def capture(self, detector: Detector, x: Tensor, target: Target) -> AttentionCapture:
        if self.fused == "recompute":
            raise ConfigError(
                "gradattn needs the attention on the forward path: use fused='auto' or 'unfuse'"
            )
        return capture_attention(detector, x, target, gradients=True, fused=self.fused)

    def relevance(self, cap: AttentionCapture, query: Tensor, masks: Sequence[Tensor] | None) -> Tensor:
        assert cap.gradients is not None
        return gradient_weighted_rollout(cap.attentions, cap.gradients, query, masks)


@EXPLAINERS.register("legrad")
class LeGrad(TransformerExplainer):
    r"""LeGrad (Bousselham et al., 2024) for our classifiers: for each block ``l ≥ start``,
    ``s_l = target(head(norm(pool(z_l))))`` — the real/fake head read from that block's tokens, the fake
    log-odds by default — and the map is ``Σ_l mean_{h,i} ReLU(∂s_l/∂A_l)[i, patches]``.

    Options: ``start`` (first block; default half the depth, negative counts from the end), ``pool``
    (``"mean"`` over all tokens as in LeGrad, or ``"model"``: the model's own readout).
    """

    name = "legrad"

    def __init__(self, *, start: int | None = None, pool: Pool = "mean", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if pool not in ("mean", "model"):
            raise ConfigError(f"LeGrad pool={pool!r}: use 'mean' or 'model'")
        self.start = start
        self.pool: Pool = pool

    def capture(self, detector: Detector, x: Tensor, target: Target) -> AttentionCapture:
        if self.fused == "recompute":
            raise ConfigError("legrad needs the attention on the forward path: use fused='auto' or 'unfuse'")
        return capture_legrad(detector, x, target, start=self.start, pool=self.pool, fused=self.fused)

    def relevance(self, cap: AttentionCapture, query: Tensor, masks: Sequence[Tensor] | None) -> Tensor:
        assert cap.gradients is not None
        return legrad_relevance(cap.gradients, masks)
