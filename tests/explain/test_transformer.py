"""Transformer explanations: every attention method × every ViT family (timm with and without registers or
class token, torchvision, Hugging Face); capture against an independent recomputation; gradients against
finite differences; state hygiene; artifact tokens; register models not shifted; parity with torchcam's
LeGrad.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from timm.layers import Attention as TimmAttention
from torch import Tensor, nn

import fakelens.explain.transformer  # noqa: F401  (registers the attention methods)
from conftest import model_input
from fakelens.errors import ConfigError
from fakelens.explain import EXPLAINERS, explain
from fakelens.explain.attention import (
    UnsupportedModelError,
    artifact_flags,
    capture_attention,
    find_artifact_tokens,
    vit_family,
)
from fakelens.explain.capture import capture
from fakelens.explain.targets import ClassLogit, resolve_target
from fakelens.explain.transformer import attention_rollout, readout_query
from fakelens.models import MODELS, Detector, InputSpec, TokenLayout, create_model, wrap_model
from fakelens.models.registry import seeded_init

METHODS = ["attention", "rollout", "gradattn", "legrad"]


# ---------------------------------------------------------------------------------------------------- models


def timm_vit(
    *, reg: int = 0, class_token: bool = True, size: tuple[int, int] = (32, 48), heads: int = 2, seed: int = 0
) -> Detector:
    """A tiny timm ViT (8×8 patches, depth 2), fused attention on; wrapped so the token layout is inferred."""
    with seeded_init(seed):
        net = timm.create_model(
            "vit_tiny_patch16_224",
            pretrained=False,
            img_size=size,
            patch_size=8,
            embed_dim=32,
            depth=2,
            num_heads=heads,
            mlp_ratio=2.0,
            reg_tokens=reg,
            class_token=class_token,
            global_pool="token" if class_token else "avg",
            num_classes=2,
        )
    for m in net.modules():
        if isinstance(m, TimmAttention):
            m.fused_attn = True
    return wrap_model(
        net, labels=("real", "fake"), input_spec=InputSpec(size=size, mean=(0.5,) * 3, std=(0.5,) * 3)
    )


def torchvision_vit(seed: int = 0) -> Detector:
    with seeded_init(seed):
        net = torchvision.models.VisionTransformer(
            image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=2
        )
        nn.init.normal_(net.heads.head.weight, std=0.5)  # torchvision zero-initialises the head
    return wrap_model(net, labels=("real", "fake"), input_spec=InputSpec(size=(32, 32)))


def hf_vit(seed: int = 0, size: tuple[int, int] = (24, 32), eps: float = 1e-12) -> Detector:
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        image_size=size,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=2,
        layer_norm_eps=eps,
        hidden_act="gelu",
    )
    with seeded_init(seed):
        net = transformers.ViTForImageClassification(config).eval()
    return Detector(
        net,
        input_spec=InputSpec(size=size),
        token_layout=TokenLayout(num_prefix_tokens=1, patch_size=(8, 8)),
        name="hf-vit",
    ).eval()


BUILDERS: dict[str, Callable[[], Detector]] = {
    "tiny-vit": lambda: create_model("tiny-vit"),  # 2 registers, 6x8 grid
    "timm-vit": lambda: timm_vit(),  # no registers, 4x6 grid
    "timm-gap": lambda: timm_vit(class_token=False),  # no class token: mean readout
    "torchvision-vit": torchvision_vit,  # 4x4 grid
    "hf-vit": hf_vit,  # 3x4 grid
}
MODEL_NAMES = list(BUILDERS)


def _target(det: Detector, spec: str = "fake") -> Any:
    return resolve_target(spec, det)


def _run(det: Detector, x: Tensor, method: str, target: str = "fake", **options: Any) -> tuple[Tensor, dict]:
    return EXPLAINERS.create(method, **options)(det, x, _target(det, target), det.cam_layers)


# ------------------------------------------------------------------------------------------- smoke / batch


@pytest.mark.parametrize("model_name", MODEL_NAMES)
@pytest.mark.parametrize("method", METHODS)
def test_shapes_finite_and_meta(model_name: str, method: str) -> None:
    det = BUILDERS[model_name]()
    x = model_input(det, 3)
    e = explain(det, x, [method])[method]
    layout = det.token_layout
    assert layout is not None
    grid = layout.grid(det.input_spec.size)
    assert e.raw.shape == (3, *grid)
    assert torch.isfinite(e.raw).all() and (e.raw >= 0).all()
    assert all(m.shape == det.input_spec.size for m in e.maps)
    assert e.scores.shape == (3,) and e.probabilities.shape == (3,)
    assert e.meta["num_prefix_tokens"] == layout.num_prefix_tokens and e.meta["grid"] == list(grid)
    assert isinstance(e.meta["artifact_tokens"], list)
    assert e.layers == vit_family(det).attention_paths[-len(e.layers) :]
    json.dumps(e.summary(0))


@pytest.mark.parametrize("model_name", MODEL_NAMES)
@pytest.mark.parametrize("method", METHODS)
def test_batch_equals_per_image(model_name: str, method: str) -> None:
    det = BUILDERS[model_name]()
    x = model_input(det, 3, seed=1)
    batch, _ = _run(det, x, method)
    single = torch.cat([_run(det, x[i : i + 1], method)[0] for i in range(3)])
    scale = batch.abs().amax() + 1e-12
    torch.testing.assert_close(batch / scale, single / scale, atol=2e-5, rtol=0)


def test_no_class_token_reads_the_mean_of_patch_queries() -> None:
    det = BUILDERS["timm-gap"]()
    assert det.token_layout is not None and det.token_layout.num_prefix_tokens == 0
    _, meta = _run(det, model_input(det, 2), "rollout")
    assert meta["readout"] == "mean"
    q = readout_query("mean", 10, 2, 1, torch.device("cpu"))
    assert q[0, :2].sum() == 0 and torch.allclose(q[0, 2:], torch.full((8,), 1 / 8))


@pytest.mark.slow  # builds the 22M-parameter ViT-S/16 (about 2 s on 2 cores)
def test_registered_vit_with_four_registers_on_a_non_square_input() -> None:
    if "vit-small-reg4" not in MODELS:
        pytest.skip("vit-small-reg4 is not registered")
    det = create_model("vit-small-reg4")
    x = torch.randn(1, 3, 64, 96)
    for method in METHODS:
        e = explain(det, x, [method])[method]
        assert e.raw.shape == (1, 4, 6) and torch.isfinite(e.raw).all()
        assert e.meta["num_registers"] == 4 and e.meta["num_prefix_tokens"] == 5


# ------------------------------------------------------------------------------------------------ capture


def _manual_attention(det: Detector, x: Tensor) -> list[Tensor]:
    """softmax(q kᵀ/√d) recomputed from each attention module's *input* and its weights, family by family."""
    family = vit_family(det)
    inputs: list[Tensor] = []
    mods = [det.layer(p) for p in family.attention_paths]
    handles = [m.register_forward_pre_hook(lambda m, a: inputs.append(a[0].detach())) for m in mods]
    try:
        with torch.no_grad():
            det(x)
    finally:
        for h in handles:
            h.remove()
    out = []
    for m, t in zip(mods, inputs, strict=True):
        b, n, _ = t.shape
        if isinstance(m, TimmAttention):
            qkv = m.qkv(t).view(b, n, 3, m.num_heads, -1).permute(2, 0, 3, 1, 4)
            q, k = qkv[0], qkv[1]
        elif isinstance(m, nn.MultiheadAttention):
            qkv = (
                F.linear(t, m.in_proj_weight, m.in_proj_bias)
                .view(b, n, 3, m.num_heads, -1)
                .permute(2, 0, 3, 1, 4)
            )
            q, k = qkv[0], qkv[1]
        else:  # Hugging Face (transformers 5.x)
            h = m.config.num_attention_heads
            q = m.q_proj(t).view(b, n, h, -1).transpose(1, 2)
            k = m.k_proj(t).view(b, n, h, -1).transpose(1, 2)
        out.append(torch.softmax(q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5, dim=-1))
    return out


@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_recomputed_attention_equals_unfused_attention(model_name: str) -> None:
    det = BUILDERS[model_name]()
    x = model_input(det, 2)
    with torch.no_grad():
        plain = det(x)
    reference = _manual_attention(det, x)
    variants = {
        "auto": capture_attention(det, x),
        "unfuse": capture_attention(det, x, fused="unfuse"),
        "gradients": capture_attention(det, x, gradients=True),
    }
    if model_name.startswith(("timm", "tiny")):
        assert variants["auto"].path == "recompute" and variants["unfuse"].path == "unfused"
        assert variants["gradients"].path == "unfused"
    for name, cap in variants.items():
        torch.testing.assert_close(cap.logits, plain, atol=1e-5, rtol=0, msg=f"{name} changed the logits")
        assert len(cap.attentions) == len(reference)
        for a, ref in zip(cap.attentions, reference, strict=True):
            assert a.shape == ref.shape
            torch.testing.assert_close(a, ref, atol=1e-5, rtol=0, msg=f"{name} attention differs")
            torch.testing.assert_close(a.sum(-1), torch.ones_like(a[..., 0]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_attention_gradients_lie_on_the_forward_path(model_name: str) -> None:
    det = BUILDERS[model_name]()
    cap = capture_attention(det, model_input(det, 2), gradients=True)
    assert cap.gradients is not None
    for g, a in zip(cap.gradients, cap.attentions, strict=True):
        assert g.shape == a.shape and torch.isfinite(g).all() and g.abs().sum() > 0


def test_attention_gradients_match_finite_differences() -> None:
    """⟨∂y/∂A_l, Δ⟩ = (y(A_l + εΔ) − y(A_l − εΔ)) / 2ε, perturbing the attention timm multiplies into v."""
    det = timm_vit(reg=2).double()
    x = model_input(det, 2).double()
    cap = capture_attention(det, x, gradients=True)
    assert cap.gradients is not None
    target = _target(det)
    gen = torch.Generator().manual_seed(0)
    for layer, grad in enumerate(cap.gradients):
        delta = torch.randn(grad.shape, generator=gen, dtype=torch.float64)
        attn = det.net.blocks[layer].attn
        ys = []
        for eps in (1e-5, -1e-5):
            attn.fused_attn = False
            h = attn.attn_drop.register_forward_hook(lambda m, a, out, eps=eps, d=delta: out + eps * d)
            try:
                with torch.no_grad():
                    ys.append(target(det(x)).sum())
            finally:
                h.remove()
                attn.fused_attn = True
        numeric = (ys[0] - ys[1]) / 2e-5
        torch.testing.assert_close(numeric, (grad * delta).sum(), rtol=1e-5, atol=1e-8)


def _state(det: Detector) -> dict[str, Any]:
    mods = list(det.modules())
    cfg = getattr(det.net, "config", None)
    return {
        "hooks": sum(
            len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in mods
        ),
        "fused": [m.fused_attn for m in mods if isinstance(m, TimmAttention)],
        "patched_forward": sum("forward" in vars(m) for m in mods),
        "attn_implementation": getattr(cfg, "_attn_implementation", None),
        "training": [m.training for m in mods],
        "requires_grad": [p.requires_grad for p in det.parameters()],
    }


@pytest.mark.parametrize("where", ["forward", "target"])
@pytest.mark.parametrize("model_name", MODEL_NAMES)
@pytest.mark.parametrize("method", METHODS)
def test_hooks_removed_and_state_restored_after_an_exception(
    method: str, model_name: str, where: str
) -> None:
    if where == "target" and model_name in ("timm-vit", "timm-gap"):
        pytest.skip("same family and code path as tiny-vit")
    det = BUILDERS[model_name]()
    det.train()
    next(det.parameters()).requires_grad_(False)  # a caller's own freezing must survive too
    family = vit_family(det)
    x = model_input(det, 2)

    def boom(*args: object) -> None:
        raise RuntimeError("boom")

    if where == "forward":
        target = _target(det)
        handle = family.blocks[-1].register_forward_hook(boom)
        before = _state(det)
        before["hooks"] -= 1
    else:
        target = boom
        target.name = "bad"  # type: ignore[attr-defined]
        before = _state(det)
    with pytest.raises(RuntimeError, match="boom"):
        EXPLAINERS.create(method)(det, x, target, det.cam_layers)
    if where == "forward":
        handle.remove()
    after = _state(det)
    assert after == before
    if model_name.startswith(("timm", "tiny")):
        assert all(after["fused"])


def test_unsupported_models_raise_a_clear_error() -> None:
    det = create_model("tiny-cnn")
    with pytest.raises(UnsupportedModelError, match="timm VisionTransformer"):
        explain(det, model_input(det), ["rollout"])
    assert issubclass(UnsupportedModelError, ConfigError)


def test_options_reach_the_explainer_through_explain() -> None:
    det = create_model("tiny-vit")
    x = model_input(det, 2)
    options = {"rollout": {"artifacts": "none", "residual": 0.3}, "legrad": {"start": 0, "pool": "model"}}
    got = explain(det, x, ["rollout", "legrad"], options=options)
    for method, opts in options.items():
        want, _ = _run(det, x, method, **opts)
        torch.testing.assert_close(got[method].raw, want)
    assert got["rollout"].meta["artifacts"] == "none"


def test_options_are_checked() -> None:
    det = create_model("tiny-vit")
    with pytest.raises(ConfigError):
        EXPLAINERS.create("rollout", artifacts="drop")
    with pytest.raises(ConfigError, match="forward path"):
        _run(det, model_input(det), "gradattn", fused="recompute")
    with pytest.raises(ConfigError, match="start"):
        _run(det, model_input(det), "legrad", start=5)


# ------------------------------------------------------------------------------------------------ formulas


def test_rollout_of_identity_attention_is_uniform() -> None:
    n, p, b, layers = 11, 3, 2, 4
    eye = torch.eye(n).expand(b, 2, n, n)
    for readout, value in (("class", 0.0), ("mean", 1 / (n - p))):
        r = attention_rollout([eye] * layers, readout_query(readout, n, p, b, torch.device("cpu")))
        torch.testing.assert_close(r[:, p:], torch.full((b, n - p), value))


def _constant_attention_model(mode: str) -> Detector:
    """A tiny timm ViT whose attention is uniform (q = k = 0) or the identity: one head, q = 400·LN(z) and
    k = LN(z), so by Cauchy-Schwarz q_i·k_j peaks at j = i (layer-normed tokens share one norm)."""
    det = timm_vit(reg=2, heads=1)
    with torch.no_grad():
        for blk in det.net.blocks:
            w, b = blk.attn.qkv.weight, blk.attn.qkv.bias
            d = w.shape[1]
            w[: 2 * d] = 0
            b[: 2 * d] = 0
            if mode == "identity":
                w[:d] = 400.0 * torch.eye(d)
                w[d : 2 * d] = torch.eye(d)
    return det


def test_rollout_of_a_uniform_attention_model_is_uniform() -> None:
    det = _constant_attention_model("uniform")
    x = model_input(det, 2)
    for method in ("rollout", "attention"):
        raw, _ = _run(det, x, method, artifacts="none")
        assert (raw.amax((1, 2)) - raw.amin((1, 2))).abs().max() < 1e-6
        assert raw.min() > 0


def test_rollout_of_an_identity_attention_model_is_uniform() -> None:
    det = _constant_attention_model("identity")
    x = model_input(det, 2)
    cap = capture_attention(det, x)
    for a in cap.attentions:
        torch.testing.assert_close(a, torch.eye(a.shape[-1]).expand_as(a), atol=1e-4, rtol=0)
    raw, _ = _run(det, x, "rollout", artifacts="none")
    assert raw.abs().max() < 1e-4


def test_legrad_matches_torchcam_on_torchvision() -> None:
    """Golden parity: torchcam's LeGrad (mean over layers, mean-pooled tokens) × depth = ours (layer sum)."""
    tcm = pytest.importorskip("torchcam.methods")
    det = torchvision_vit()
    x = model_input(det, 2)
    ours, _ = EXPLAINERS.create("legrad", start=0, pool="mean", artifacts="none")(det, x, ClassLogit(1), ())
    net = det.net
    names = [f"encoder.layers.{n}" for n, _ in net.encoder.layers.named_children()]
    with torch.enable_grad(), tcm.LeGrad(net, names) as extractor:
        scores = net(x)
        (theirs,) = extractor([1, 1], scores, normalized=False)
    torch.testing.assert_close(ours, theirs * len(names), atol=1e-6, rtol=1e-4)


def test_torchvision_and_hugging_face_give_the_same_maps() -> None:
    """The same weights in torchvision's and Hugging Face's ViT: same logits, attention and maps."""
    tv = torchvision_vit()
    hf = hf_vit(size=(32, 32), eps=1e-6)
    t, h = tv.net, hf.net
    sd: dict[str, Tensor] = {
        "vit.embeddings.cls_token": t.class_token,
        "vit.embeddings.position_embeddings": t.encoder.pos_embedding,
        "vit.embeddings.patch_embeddings.projection.weight": t.conv_proj.weight,
        "vit.embeddings.patch_embeddings.projection.bias": t.conv_proj.bias,
        "vit.layernorm.weight": t.encoder.ln.weight,
        "vit.layernorm.bias": t.encoder.ln.bias,
        "classifier.weight": t.heads.head.weight,
        "classifier.bias": t.heads.head.bias,
    }
    prefix = "vit.layers" if hasattr(h.vit, "layers") else pytest.skip("transformers 4.x layout")
    for i, blk in enumerate(t.encoder.layers):
        p = f"{prefix}.{i}"
        wq, wk, wv = blk.self_attention.in_proj_weight.chunk(3)
        bq, bk, bv = blk.self_attention.in_proj_bias.chunk(3)
        sd |= {
            f"{p}.attention.q_proj.weight": wq,
            f"{p}.attention.q_proj.bias": bq,
            f"{p}.attention.k_proj.weight": wk,
            f"{p}.attention.k_proj.bias": bk,
            f"{p}.attention.v_proj.weight": wv,
            f"{p}.attention.v_proj.bias": bv,
            f"{p}.attention.o_proj.weight": blk.self_attention.out_proj.weight,
            f"{p}.attention.o_proj.bias": blk.self_attention.out_proj.bias,
            f"{p}.layernorm_before.weight": blk.ln_1.weight,
            f"{p}.layernorm_before.bias": blk.ln_1.bias,
            f"{p}.layernorm_after.weight": blk.ln_2.weight,
            f"{p}.layernorm_after.bias": blk.ln_2.bias,
            f"{p}.mlp.fc1.weight": blk.mlp[0].weight,
            f"{p}.mlp.fc1.bias": blk.mlp[0].bias,
            f"{p}.mlp.fc2.weight": blk.mlp[3].weight,
            f"{p}.mlp.fc2.bias": blk.mlp[3].bias,
        }
    missing, unexpected = h.load_state_dict({k: v.detach().clone() for k, v in sd.items()}, strict=False)
    assert not missing and not unexpected
    x = model_input(tv, 2)
    with torch.no_grad():
        torch.testing.assert_close(hf(x), tv(x), atol=1e-5, rtol=0)
    for method in METHODS:
        a, _ = _run(tv, x, method)
        b, _ = _run(hf, x, method)
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4, msg=method)


# ------------------------------------------------------------------------------------------ artifact tokens


@pytest.mark.parametrize("option", [{"k": float("nan")}, {"k": 0}, {"min_ratio": 0.5}, {"k": float("inf")}])
def test_artifact_rule_options_are_checked(option: dict[str, float]) -> None:
    """k = NaN silently turned the detection off (no norm is above NaN)."""
    with pytest.raises(ConfigError):
        EXPLAINERS.create("rollout", **option)


def test_find_artifact_tokens_flags_the_planted_outlier_only() -> None:
    g = torch.Generator().manual_seed(0)
    prefix, grid = 3, (4, 6)
    tokens = [torch.randn(2, prefix + 24, 16, generator=g) for _ in range(3)]
    tokens[1][1, prefix + 13] *= 20.0  # image 1, layer 1, cell (2, 1)
    for t in tokens:
        t[:, 1] *= 50.0  # a register: high norm by design, never flagged
    records = find_artifact_tokens(tokens, prefix, grid)
    assert records == [
        {
            "layer": 1,
            "image": 1,
            "token_index": prefix + 13,
            "grid_yx": [2, 1],
            "norm_ratio": records[0]["norm_ratio"],
        }
    ]
    assert records[0]["norm_ratio"] > 10
    flags, _ = artifact_flags(torch.ones(2, 10), 1)  # zero MAD: nothing is an outlier
    assert not flags.any()
    # an even count takes the mean of the middle values (median 2, MAD 1: nothing above 8), not the lower
    flags, _ = artifact_flags(torch.tensor([[5.0, 1, 1, 3, 3]]), 1)
    assert not flags.any()
    # a token whose embedding was already that far out did not grow into an outlier: not an artifact
    embedded = torch.ones(2, prefix + 24)
    embedded[1, prefix + 13] = 20.0
    grown = find_artifact_tokens(tokens, prefix, grid, embedded=embedded[..., None])
    assert grown == [] and find_artifact_tokens(tokens, prefix, grid, embedded=torch.ones(2, prefix + 24, 1))


def _attend_to_channel(det: Detector, ch: int = 5, gain: float = 8.0, first: int = 0) -> None:
    """Make every query of blocks ``first…`` attend to keys with a large (layer-normed) channel ``ch`` — the
    mechanism by which high-norm artifact tokens grab attention (Darcet et al.)."""
    with torch.no_grad():
        for blk in det.net.blocks[first:]:
            w, b = blk.attn.qkv.weight, blk.attn.qkv.bias
            d, heads = w.shape[1], blk.attn.num_heads
            hd = d // heads
            w[: 2 * d] = 0
            b[: 2 * d] = 0
            for h in range(heads):
                b[h * hd] = 1.0
                w[d + h * hd, ch] = gain


@pytest.mark.parametrize("method", METHODS)
def test_planted_high_norm_token_is_flagged_and_masked(method: str) -> None:
    det = timm_vit(reg=0, size=(48, 64))  # 6x8 grid, no registers: artifacts have nowhere else to go
    _attend_to_channel(det, first=1)  # block 1 reads the token planted in block 0's output
    prefix, cell = 1, (1, 6)
    j = prefix + cell[0] * 8 + cell[1]

    def plant(module: nn.Module, args: object, out: Tensor) -> Tensor:
        out = out.clone()
        out[:, j] = 0.0
        out[:, j, 5] = 60.0
        return out

    handle = det.net.blocks[0].register_forward_hook(plant)
    try:
        x = model_input(det, 2)
        raw_none, meta_none = _run(det, x, method, artifacts="none")
        raw_mask, meta_mask = _run(det, x, method)
    finally:
        handle.remove()
    records = meta_mask["artifact_tokens"]
    # always reported, masked only on request — and only where a block this method uses reads the token
    assert [{**r, "masked": True} for r in meta_none["artifact_tokens"]] == [
        {**r, "masked": True} for r in records
    ]
    assert not any(r["masked"] for r in meta_none["artifact_tokens"])
    depth = len(det.net.blocks)
    assert not any(r["masked"] for r in records if r["layer"] == depth - 1)  # no block reads the last output
    if method != "attention":  # rollout, gradattn and LeGrad (from block 1 at this depth) mask block 0's
        assert all(r["masked"] for r in records if r["layer"] == 0)
    else:  # the last block's attention only: what it reads was masked, nothing earlier
        assert all(r["masked"] == (r["layer"] == depth - 2) for r in records)
    flagged = {(r["layer"], r["image"], r["token_index"], tuple(r["grid_yx"])) for r in records}
    assert {(0, 0, j, cell), (0, 1, j, cell)} <= flagged
    assert all(r["norm_ratio"] > 10 for r in records if r["token_index"] == j)
    assert all(r["token_index"] == j for r in records)
    for i in range(2):
        unmitigated, mitigated = raw_none[i].flatten(), raw_mask[i].flatten()
        k = cell[0] * 8 + cell[1]
        if method in ("attention", "rollout"):
            assert int(unmitigated.argmax()) == k  # the artifact spikes the unmitigated map
            assert unmitigated[k] > 5 * unmitigated.median()
            assert mitigated[k] <= 0.25 * mitigated.max()  # no spike left at the flagged cell
        else:  # gradient methods weigh the artifact by a gradient of either sign: masking only removes mass
            assert mitigated[k] <= unmitigated[k] + 1e-9 and mitigated[k] < mitigated.max()


# --------------------------------------------------------------------------------- registers: not shifted


def _planted_patch_input(cell: tuple[int, int], batch: int = 2) -> Tensor:
    x = 0.05 * torch.randn(batch, 3, 48, 64, generator=torch.Generator().manual_seed(3))
    x[:, :, cell[0] * 8 : (cell[0] + 1) * 8, cell[1] * 8 : (cell[1] + 1) * 8] += 3.0
    return x


def _register_model_attending_to_a_patch() -> Detector:
    """4 registers, 6x8 grid; channel 5 of the patch embedding is the patch mean; all queries attend to it."""
    det = timm_vit(reg=4, size=(48, 64))
    with torch.no_grad():
        det.net.patch_embed.proj.weight[5] = 1.0 / (3 * 64)
        det.net.patch_embed.proj.bias[5] = 0.0
    _attend_to_channel(det)
    return det


@pytest.mark.parametrize("cell", [(2, 5), (4, 1), (0, 7)])
def test_register_model_maps_the_attended_patch_to_its_cell(cell: tuple[int, int]) -> None:
    det = _register_model_attending_to_a_patch()
    assert det.token_layout is not None and det.token_layout.num_prefix_tokens == 5
    x = _planted_patch_input(cell)
    for method in ("attention", "rollout", "gradattn"):
        # the planted patch's embedding is already high-norm: evidence, not an artifact, so never masked
        raw, meta = _run(det, x, method)
        assert raw.shape == (2, 6, 8) and meta["artifact_tokens"] == []
        for i in range(2):
            assert divmod(int(raw[i].flatten().argmax()), 8) == cell, method
    # the core engine's token-grid maps: channel 5 of the last block's normed input peaks at the patch
    cap = capture(det, x, ["net.blocks.1.norm1"], gradients=False)
    acts = cap.activations["net.blocks.1.norm1"]
    assert acts.shape[-2:] == (6, 8)
    for i in range(2):
        assert divmod(int(acts[i, 5].flatten().argmax()), 8) == cell


def _permute_patches(x: Tensor, perm: Tensor, grid: tuple[int, int], patch: int) -> Tensor:
    b, c = x.shape[:2]
    h, w = grid
    p = x.reshape(b, c, h, patch, w, patch).permute(0, 2, 4, 1, 3, 5).reshape(b, h * w, c, patch, patch)
    p = p[:, perm]
    return p.reshape(b, h, w, c, patch, patch).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h * patch, w * patch)


@pytest.mark.parametrize("method", [*METHODS, "gradcam", "hirescam", "layercam"])
def test_register_model_maps_are_permutation_equivariant(method: str) -> None:
    """Without position embeddings a ViT is equivariant to permuting its patches, so a correct map must follow
    the permutation exactly; dropping one prefix token too few or too many breaks this."""
    det = timm_vit(reg=4, size=(48, 64))
    with torch.no_grad():
        det.net.pos_embed.zero_()
    x = model_input(det, 2, seed=2)
    perm = torch.randperm(48, generator=torch.Generator().manual_seed(0))
    xp = _permute_patches(x, perm, (6, 8), 8)
    a = explain(det, x, [method], layers=["net.blocks.1.norm1"])[method].raw.flatten(1)
    b = explain(det, xp, [method], layers=["net.blocks.1.norm1"])[method].raw.flatten(1)
    scale = a.abs().amax() + 1e-12
    torch.testing.assert_close(b / scale, a[:, perm] / scale, atol=1e-5, rtol=0)


Q3 = readout_query("class", 3, 1, 1, torch.device("cpu"))  # cls + 2 patches, read out at the class token
A1 = torch.tensor([[0.0, 1, 0], [0, 1, 0], [0, 0, 1]])


def test_rollout_multiplies_the_last_layer_first() -> None:
    """q · Â₂ · Â₁ with Â = ½A + ½I (Abnar & Zuidema 2020); the other order gives [0.5, 0.25, 0.25]."""
    a2 = torch.tensor([[0.0, 0, 1], [1, 0, 0], [0, 0, 1]])
    r = attention_rollout([A1[None, None], a2[None, None]], Q3)
    torch.testing.assert_close(r, torch.tensor([[0.25, 0.25, 0.5]]))


def test_rollout_averages_the_heads() -> None:
    """The head mean's cls row is [0, ½, ½], then ½(·) + ½I; a max over heads is not stochastic."""
    h2 = torch.tensor([[0.0, 0, 1], [0, 1, 0], [0, 0, 1]])
    r = attention_rollout([torch.stack([A1, h2])[None]], Q3)
    torch.testing.assert_close(r, torch.tensor([[0.5, 0.25, 0.25]]))


def test_gradient_weighted_rollout_clamps_each_head_before_the_mean() -> None:
    """Chefer et al. 2021: Ā = E_h[(∇A ⊙ A)⁺]: head 0's +1 at (0, 1) is not cancelled by head 1's −1."""
    from fakelens.explain.transformer import gradient_weighted_rollout

    a = torch.tensor([[0.0, 0.5, 0.5], [0, 1, 0], [0, 0, 1]]).expand(1, 2, 3, 3)
    g = torch.zeros(1, 2, 3, 3)
    g[0, 0, 0, 1], g[0, 0, 0, 2], g[0, 1, 0, 1] = 2.0, 1.0, -2.0
    torch.testing.assert_close(gradient_weighted_rollout([a], [g], Q3), torch.tensor([[1.0, 0.5, 0.25]]))


def test_a_tight_norm_distribution_flags_no_artifact_token() -> None:
    """MAD 0 puts 10.001 above median + 6·MAD, but its norm is 1.0001 × the median, under the 2× guard."""
    from fakelens.explain.attention import artifact_flags

    flags, _ = artifact_flags(torch.tensor([[50.0, 10, 10, 10, 10, 10.001]]), 1)
    assert not flags.any()
