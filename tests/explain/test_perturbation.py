"""Perturbation explainers × tiny models: shapes, budgets, seeds, batching, hygiene, golden values, parity.

Parity with pytorch-grad-cam and torchcam (test dependencies only) is checked after pytorch-grad-cam's own
normalisation (ReLU, min-max, cv2 resize, min-max) with the options that reproduce each peer:
- pytorch-grad-cam ScoreCAM: ``weights="softmax", align_corners=True`` (its ``UpsamplingBilinear2d``), masks
  normalised after upsampling (our default);
- torchcam ScoreCAM: ``weights="softmax", mask_norm="feature"`` (it normalises before upsampling,
  ``align_corners=False``); compared after its ReLU + min-max at feature resolution;
- pytorch-grad-cam AblationCAM: our defaults. Deliberate difference: we divide the drop by ``|y|``, they by
  ``y``; for ``y < 0`` their map is ours with the sign flipped (before the ReLU). Their ViT ablation writes
  ``min − 1e7`` into every token; ours writes 0 into patch tokens only, so ViT AblationCAM is not compared.
"""

from __future__ import annotations

import json
import math
import os
import threading

import numpy as np
import pytest
import torch
from torch import nn

import fakelens.explain.perturbation as pert
import fakelens.models.fold as fold
from conftest import TINY_MODELS, model_input
from fakelens.errors import ConfigError
from fakelens.explain import EXPLAINERS, explain
from fakelens.explain.engine import method_options
from fakelens.explain.targets import FakeLogOdds
from fakelens.models import Detector, InputSpec, TokenLayout, create_model

METHODS = ["scorecam", "ablationcam", "occlusion", "rise"]
FAST: dict[str, dict[str, object]] = {
    "scorecam": {},
    "ablationcam": {},
    "occlusion": {"window": 16, "stride": 16},
    "rise": {"n_masks": 32},
}
LAYERED = {"scorecam", "ablationcam"}


def _run(det: Detector, x: torch.Tensor, method: str, **extra: object):  # type: ignore[no-untyped-def]
    return explain(det, x, [method], options={method: {**FAST[method], **extra}})[method]


def _hooks(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules()
    )


def _patched_forwards(model: nn.Module) -> int:
    return sum("forward" in m.__dict__ for m in model.modules())


def test_registered() -> None:
    assert set(METHODS) <= set(EXPLAINERS.names())


@pytest.mark.parametrize("model_name", TINY_MODELS)
@pytest.mark.parametrize("method", METHODS)
def test_shapes_finite_and_budget(model_name: str, method: str) -> None:
    det = create_model(model_name)
    x = model_input(det, 2)
    e = _run(det, x, method)
    h, w = det.input_spec.size
    if method in LAYERED:
        grid = (16, 16) if model_name == "tiny-cnn" else (6, 8)
        assert e.raw.shape == (2, *grid)
        assert e.layers == det.cam_layers
        c = e.meta["channels_total"]
        assert c == (64 if model_name == "tiny-cnn" else 48)
        assert len(e.meta["channels_used"]) == 2 and all(0 < u <= c for u in e.meta["channels_used"])
    else:
        assert e.raw.shape == (2, h, w)
        assert e.layers == ()
    assert torch.isfinite(e.raw).all() and e.raw.abs().max() > 0
    assert len(e.maps) == 2 and all(m.shape == (h, w) for m in e.maps)
    assert e.scores.shape == (2,) and e.probabilities.shape == (2,)
    meta = e.meta
    json.dumps(meta)  # everything in meta is JSON-able
    assert meta["exact"] is True and meta["amp"] is None and meta["batch_size"] >= 1
    used = sum(meta.get("channels_used", [0]))
    expected = {
        "scorecam": 2 + 1 + used,  # unperturbed batch, the baseline image, one per evaluated channel
        "ablationcam": 2,  # the rest runs after the layer only
        "occlusion": 2 + 2 * meta.get("windows", 0),
        "rise": 2 + 2 * meta.get("masks", 0),
    }[method]
    assert meta["forwards"] == expected
    if method == "ablationcam":
        assert meta["shortcut_mode"] == "views" and meta["partial_forwards"] == used
    if method == "occlusion":
        n_win = len(pert.window_starts(h, 16, 16)) * len(pert.window_starts(w, 16, 16))
        assert meta["windows"] == n_win and meta["stride"] == [16, 16]
    if method == "rise":
        assert meta["masks"] == 32 and meta["seed"] == 0


@pytest.mark.parametrize("model_name", TINY_MODELS)
@pytest.mark.parametrize("method", METHODS)
def test_seed_determinism(model_name: str, method: str) -> None:
    det = create_model(model_name)
    x = model_input(det, 1, seed=3)
    a = _run(det, x, method, seed=7).raw
    b = _run(det, x, method, seed=7).raw
    assert torch.equal(a, b)
    if method == "rise":
        c = _run(det, x, method, seed=8).raw
        assert not torch.allclose(a, c)


@pytest.mark.parametrize("model_name", TINY_MODELS)
@pytest.mark.parametrize("method", METHODS)
def test_batch_equals_per_image_and_chunking(model_name: str, method: str) -> None:
    det = create_model(model_name)
    x = model_input(det, 2, seed=1)
    batch = _run(det, x, method).raw
    single = torch.cat([_run(det, x[i : i + 1], method).raw for i in range(2)])
    chunked = _run(det, x, method, batch_size=7).raw  # many small chunks mixing images
    scale = batch.abs().amax() + 1e-12
    torch.testing.assert_close(batch / scale, single / scale, atol=1e-4, rtol=0)
    torch.testing.assert_close(batch / scale, chunked / scale, atol=1e-4, rtol=0)


@pytest.mark.parametrize("model_name", TINY_MODELS)
@pytest.mark.parametrize("method", METHODS)
def test_no_hooks_left_and_state_restored_after_exception(model_name: str, method: str) -> None:
    det = create_model(model_name)
    det.train()
    det.net.head.weight.requires_grad_(False)
    flags = [p.requires_grad for p in det.parameters()]
    calls = 0

    def flaky(logits: torch.Tensor) -> torch.Tensor:  # fails mid-way, inside the perturbed passes
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("boom")
        return logits[:, 1] - logits[:, 0]

    flaky.name = "flaky"  # type: ignore[attr-defined]
    explainer = EXPLAINERS.create(method, **{**FAST[method], "batch_size": 4})
    with pytest.raises(RuntimeError, match="boom"):
        explainer(det, model_input(det), flaky, det.cam_layers)  # type: ignore[arg-type]
    assert _hooks(det) == 0 and _patched_forwards(det) == 0
    assert det.training and all(m.training for m in det.modules())
    assert [p.requires_grad for p in det.parameters()] == flags


@pytest.mark.parametrize("model_name", TINY_MODELS)
def test_state_restored_after_success(model_name: str) -> None:
    det = create_model(model_name)
    det.train()
    x = model_input(det, 1)
    for m in METHODS:
        _run(det, x, m)
    assert _hooks(det) == 0 and _patched_forwards(det) == 0
    assert det.training and all(m.training for m in det.modules())
    assert all(p.requires_grad and p.grad is None for p in det.parameters())


@pytest.mark.parametrize("model_name", TINY_MODELS)
@pytest.mark.parametrize("method", METHODS)
def test_inside_no_grad_and_inference_mode(model_name: str, method: str) -> None:
    det = create_model(model_name)
    x = model_input(det, 1)
    ref = _run(det, x, method).raw
    with torch.no_grad():
        a = _run(det, x, method).raw
    with torch.inference_mode():
        b = _run(det, x.clone(), method).raw
    torch.testing.assert_close(a, ref)
    torch.testing.assert_close(b, ref)


# ------------------------------------------------------------------------------------------ golden values


def _linear_detector(weight: torch.Tensor, mean: float = 0.0, std: float = 1.0) -> Detector:
    """``z_fake = Σ_p w_p x_p``, ``z_real = 0``: the fake log-odds is a hand-checkable linear function."""
    h, w = weight.shape
    lin = nn.Linear(h * w, 2, bias=False)
    lin.weight.data = torch.stack([torch.zeros(h * w), weight.flatten()])
    net = nn.Sequential(nn.Flatten(), lin)
    return Detector(net, input_spec=InputSpec(size=(h, w), mean=(mean,) * 3, std=(std,) * 3))


def test_occlusion_golden_on_hand_weighted_model() -> None:
    weight = torch.arange(16.0).view(4, 4) - 5.0
    x = torch.linspace(-1, 2, 16).view(1, 1, 4, 4)
    det = _linear_detector(weight)
    # window 2, stride 2: four disjoint windows; each pixel gets its window's drop Σ_{p∈W} w_p x_p (fill 0)
    e = explain(det, x, ["occlusion"], options={"occlusion": {"window": 2, "stride": 2}})["occlusion"]
    contrib = weight * x[0, 0]
    expected = torch.zeros(4, 4)
    for i in (0, 2):
        for j in (0, 2):
            expected[i : i + 2, j : j + 2] = contrib[i : i + 2, j : j + 2].sum()
    torch.testing.assert_close(e.raw[0], expected)
    torch.testing.assert_close(e.scores, contrib.sum().view(1))
    # window 2, stride 1: nine windows; each pixel averages the drops of the windows covering it
    e = explain(det, x, ["occlusion"], options={"occlusion": {"window": 2, "stride": 1}})["occlusion"]
    acc, cnt = torch.zeros(4, 4), torch.zeros(4, 4)
    for i in range(3):
        for j in range(3):
            acc[i : i + 2, j : j + 2] += contrib[i : i + 2, j : j + 2].sum()
            cnt[i : i + 2, j : j + 2] += 1
    torch.testing.assert_close(e.raw[0], acc / cnt)
    # black fill with a normalisation: black pixels are (0 − mean)/std, so the drop is Σ w_p (x_p − black)
    det = _linear_detector(weight, mean=0.5, std=0.25)
    e = explain(det, x, ["occlusion"], options={"occlusion": {"window": 4, "stride": 4}})["occlusion"]
    black = (0 - 0.5) / 0.25
    torch.testing.assert_close(e.raw[0], torch.full((4, 4), float((weight * (x[0, 0] - black)).sum())))


def test_window_starts_cover_every_pixel() -> None:
    assert pert.window_starts(10, 4, 4) == [0, 4, 6]
    assert pert.window_starts(8, 4, 4) == [0, 4]
    assert pert.window_starts(3, 5, 2) == [0]


def _scorecam_reference(det: Detector, x: torch.Tensor, layer: str) -> torch.Tensor:
    """Score-CAM by the formula, every channel, no skipping, one masked input at a time."""
    store: dict[str, torch.Tensor] = {}
    h = det.layer(layer).register_forward_hook(lambda m, a, o: store.__setitem__("a", o.detach().clone()))
    target = FakeLogOdds(det.fake_index)
    with torch.no_grad():
        det(x)
        h.remove()
        acts = store["a"]
        base = target(det(torch.zeros_like(x[:1])))[0]
        raws = []
        for b in range(x.shape[0]):
            w = torch.zeros(acts.shape[1])
            for k in range(acts.shape[1]):
                up = nn.functional.interpolate(acts[b, k][None, None], size=x.shape[-2:], mode="bilinear")
                m = (up - up.min()) / (up.max() - up.min() + 1e-8)
                w[k] = target(det(x[b : b + 1] * m))[0] - base
            raws.append(torch.einsum("c,chw->hw", w, acts[b]))
    return torch.stack(raws)


def _narrow_cnn(seed: int = 2) -> Detector:
    """tiny-cnn at width 8: 16 channels at the CAM layer, so channel-by-channel references stay quick."""
    from fakelens.models.tiny import TinyCNN

    torch.manual_seed(seed)
    return Detector(
        TinyCNN(2, width=8), input_spec=InputSpec(size=(32, 32)), cam_layers=("net.features.3",)
    ).eval()


def test_scorecam_skips_constant_channels_exactly() -> None:
    det = _narrow_cnn()
    conv = det.net.features[3][0]
    with torch.no_grad():
        conv.weight[:6] = 0  # 6 channels become constant (BN shift then ReLU): their mask is empty
    x = model_input(det, 2)
    e = explain(det, x, ["scorecam"])["scorecam"]
    assert all(c >= 6 for c in e.meta["channels_constant"])
    assert all(u <= 10 for u in e.meta["channels_used"])
    ref = _scorecam_reference(det, x, "net.features.3")
    torch.testing.assert_close(e.raw, ref, atol=1e-5 * float(ref.abs().max()), rtol=0)


def test_top_k_budget_is_reported_and_cheaper() -> None:
    det = create_model("tiny-cnn")
    x = model_input(det, 2)
    for method in ("scorecam", "ablationcam"):
        full = _run(det, x, method)
        some = _run(det, x, method, top_k=5)
        assert some.meta["channels_used"] == [5, 5] and some.meta["exact"] is False
        key = "forwards" if method == "scorecam" else "partial_forwards"
        assert some.meta[key] < full.meta[key]
        # the top-5 channels by activation mass carry a map that correlates with the exact one
        corr = torch.corrcoef(torch.stack([full.raw.flatten(), some.raw.flatten()]))[0, 1]
        assert corr > 0.3


def test_amp_options() -> None:
    det = create_model("tiny-cnn")
    x = model_input(det)
    e = _run(det, x, "ablationcam", amp="bf16")
    assert e.meta["exact"] is False and e.meta["amp"] == "bf16" and torch.isfinite(e.raw).all()
    with pytest.raises(ConfigError, match="CUDA"):
        _run(det, x, "scorecam", amp="fp16")
    with pytest.raises(ConfigError):
        pert.ScoreCAM(amp="fp8")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="rise has no option 'nonsense'"):  # checked before any model runs
        _run(det, x, "rise", nonsense=1)


def _autocast_output(det: Detector, change: str):  # type: ignore[no-untyped-def]
    """A hook on the network that changes its output under (CPU) autocast only."""

    def hook(m: nn.Module, inp: tuple[torch.Tensor], out: torch.Tensor) -> torch.Tensor:
        if not torch.is_autocast_enabled("cpu"):
            return out
        if change == "inf":
            return out + float("inf")
        if change == "offset":
            return out + 100.0
        with torch.autocast("cpu", enabled=False):  # "exact": the full-precision output
            return m.forward(inp[0].float())

    return det.net.register_forward_hook(hook)


@pytest.mark.parametrize(("change", "passed"), [("exact", True), ("inf", False), ("offset", False)])
def test_amp_probe_takes_low_precision_only_where_it_reproduces_the_scores(change: str, passed: bool) -> None:
    det = create_model("tiny-cnn")
    x = model_input(det, 1, seed=5)
    masked = x * torch.rand(24, 1, *x.shape[-2:], generator=torch.Generator().manual_seed(0))
    runner = pert.Runner(det, FakeLogOdds(det.fake_index), amp_candidate="bf16")
    handle = _autocast_output(det, change)
    try:
        with torch.inference_mode():
            small = runner.score(masked[:4])  # too few to judge: full precision, still undecided
            assert runner.probe is None and runner.amp_candidate == "bf16"
            scores = runner.score(masked)
            later = runner.score(masked[:4])
    finally:
        handle.remove()
    probe = runner.probe
    assert probe is not None and probe["passed"] is passed and probe["inputs"] == pert.AMP_PROBE_INPUTS
    assert runner.amp == ("bf16" if passed else None) and runner.amp_candidate is None
    assert runner.forwards == 4 + 24 + 4 and runner.amp_fallbacks == 0  # probe forwards are not counted
    with torch.inference_mode():
        full = FakeLogOdds(det.fake_index)(det(masked)).float()
    torch.testing.assert_close(scores, full)  # the probed chunk itself is full precision
    torch.testing.assert_close(small, full[:4])
    if passed:
        assert probe["error"] == 0.0 and probe["spread"] > 0
        torch.testing.assert_close(later, full[:4])


def test_amp_auto_is_full_precision_on_the_cpu() -> None:
    det = create_model("tiny-cnn")
    x = model_input(det, 1)
    auto = _run(det, x, "scorecam")
    assert auto.meta["amp"] is None and "amp_probe" not in auto.meta and auto.meta["exact"] is True
    torch.testing.assert_close(auto.raw, _run(det, x, "scorecam", amp=None).raw, rtol=0, atol=0)


@pytest.mark.parametrize("method", ["scorecam", "occlusion"])
def test_non_finite_autocast_chunks_rerun_in_full_precision(method: str) -> None:
    """fp16 overflows above 65504; here autocast output is made infinite instead (fp16 needs CUDA): every
    chunk runs again in full precision and the map is the full-precision one."""
    det = create_model("tiny-cnn")
    x = model_input(det, 2, seed=4)
    exact = _run(det, x, method, fold_bn=False, workers=1)

    handle = _autocast_output(det, "inf")
    try:
        lossy = _run(det, x, method, fold_bn=False, amp="bf16")
    finally:
        handle.remove()
    assert lossy.meta["amp_fallbacks"] == lossy.meta["forwards"] > 0
    assert lossy.meta["exact"] is False and torch.isfinite(lossy.raw).all()
    torch.testing.assert_close(lossy.raw, exact.raw, rtol=1e-5, atol=1e-6)
    assert _run(det, x, method, fold_bn=False, amp="bf16").meta["amp_fallbacks"] == 0


@pytest.mark.parametrize("method", ["scorecam", "occlusion", "rise"])
def test_folded_batchnorm_copy_is_the_same_function(method: str) -> None:
    det = create_model("tiny-cnn")
    x = model_input(det, 1, seed=2)
    folded = _run(det, x, method, fold_bn=True)
    plain = _run(det, x, method, fold_bn=False)
    assert folded.meta["fold_bn"] is True and plain.meta["fold_bn"] is False
    # rounding differs (folded weights): compare on the scale of the scores the drops are taken from
    scale = max(float(plain.raw.abs().max()), float(plain.scores.abs().max()))
    torch.testing.assert_close(folded.raw, plain.raw, atol=1e-5 * scale, rtol=0)
    # without BatchNorm (tiny-vit) there is nothing to fold
    vit = create_model("tiny-vit")
    assert _run(vit, model_input(vit, 1), method, fold_bn=True).meta["fold_bn"] is False


def test_folded_copy_is_cached_until_the_weights_change() -> None:
    det = create_model("tiny-cnn")
    x = model_input(det, 1)
    pert.clear_folded()
    _run(det, x, "occlusion", fold_bn=True)
    first = fold._FOLDED[det][1]
    _run(det, x, "occlusion", fold_bn=True)
    assert fold._FOLDED[det][1] is first
    with torch.no_grad():
        det.net.features[0][0].weight.mul_(1.5)  # an in-place change invalidates the copy
    changed = _run(det, x, "occlusion", fold_bn=True)
    assert fold._FOLDED[det][1] is not first
    unfolded = _run(det, x, "occlusion", fold_bn=False).raw
    torch.testing.assert_close(changed.raw, unfolded, atol=1e-5, rtol=1e-4)
    pert.clear_folded()
    assert len(fold._FOLDED) == 0


def test_untraceable_model_is_not_folded() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.head = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.bn(self.conv(x))
            if h.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
                h = h.relu()
            return self.head(h.mean((2, 3)))

    det = Detector(Branchy(), input_spec=InputSpec(size=(8, 8))).eval()
    e = explain(det, torch.randn(1, 3, 8, 8), ["occlusion"], options={"occlusion": {"fold_bn": True}})
    assert e["occlusion"].meta["fold_bn"] is False and torch.isfinite(e["occlusion"].raw).all()


def test_auto_batch_size_on_cpu() -> None:
    cpu = torch.device("cpu")
    assert pert.auto_batch_size(cpu, (224, 224)) == pert.CPU_CHUNK_AT_224
    assert pert.auto_batch_size(cpu, (448, 448)) == pert.CPU_CHUNK_AT_224 // 4
    assert pert.auto_batch_size(cpu, (8, 8)) == pert.MAX_CHUNK


def test_rise_masks() -> None:
    rise = pert.RISE(n_masks=400, grid=7, p=0.5, seed=1)
    cells, dy, dx = rise.draw((48, 64), torch.device("cpu"))
    m = rise.masks(cells, dy, dx, (48, 64))
    assert m.shape == (400, 48, 64) and m.min() >= 0 and m.max() <= 1
    assert abs(float(m.mean()) - 0.5) < 0.03
    assert int(dy.max()) < math.ceil(48 / 7) and int(dx.max()) < math.ceil(64 / 7)


# ------------------------------------------------------------------------------------- AblationCAM paths


def _resnet18(size: int = 64) -> Detector:
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=2)
    return Detector(net, input_spec=InputSpec(size=(size, size)), cam_layers=("net.layer4",)).eval()


@pytest.mark.parametrize("case", ["tiny-cnn", "tiny-vit", pytest.param("resnet18", marks=pytest.mark.slow)])
def test_ablation_shortcut_equals_full_network(case: str) -> None:
    det = _resnet18() if case == "resnet18" else create_model(case)
    x = model_input(det, 2, seed=4)
    fast = _run(det, x, "ablationcam")
    full = _run(det, x, "ablationcam", shortcut=False)
    assert fast.meta["shortcut_mode"] == "views" and full.meta["shortcut_mode"] == "full"
    assert full.meta["shortcut"] is False
    assert full.meta["forwards"] == 2 + sum(full.meta["channels_used"])
    scale = float(full.raw.abs().max())
    torch.testing.assert_close(fast.raw, full.raw, atol=1e-5 * scale, rtol=0)


class _InPlaceInput(nn.Module):
    """Modifies its input in place before the first layer: a shared (expanded) input breaks, so
    AblationCAM must notice and hand out copies instead."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x.mul_(1.0)
        return self.head(self.act(self.conv(x)).mean((2, 3)))


class _LateInPlace(nn.Module):
    """Modifies a pre-layer output in place *after* the layer ran: the record is a copy taken when the call
    ended, so it is still right; the shared view breaks and AblationCAM hands out copies."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.head = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        a = self.act(h)
        h.mul_(2.0)
        return self.head(torch.cat([a.mean((2, 3)), h.mean((2, 3))], 1))


@pytest.mark.parametrize(
    ("net", "layer", "mode"),
    [
        (_InPlaceInput, "net.act", "copies"),
        (_LateInPlace, "net.act", "copies"),
        (_InPlaceInput, "net.conv", "full"),
    ],
)
def test_ablation_shortcut_falls_back_safely(net: type[nn.Module], layer: str, mode: str) -> None:
    torch.manual_seed(0)
    det = Detector(net(), input_spec=InputSpec(size=(8, 8)), cam_layers=(layer,))
    x = torch.randn(2, 3, 8, 8)
    e = _run(det, x.clone(), "ablationcam")
    ref = _run(det, x.clone(), "ablationcam", shortcut=False)
    assert e.meta["shortcut_mode"] == mode  # "full": nothing runs before the layer, nothing to replay
    torch.testing.assert_close(e.raw, ref.raw)


def test_ablation_layer_running_twice_is_refused() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)
            self.head = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.conv(self.conv(x)).mean((2, 3)))

    det = Detector(Twice(), input_spec=InputSpec(size=(4, 4)), cam_layers=("net.conv",))
    with pytest.raises(ValueError, match="runs once"):
        _run(det, torch.randn(1, 3, 4, 4), "ablationcam")


class _TokenNet(nn.Module):
    """Tokens ``[cls, reg, 4 patches]``; the score reads either the prefix tokens or the patches."""

    def __init__(self, read_prefix: bool) -> None:
        super().__init__()
        self.embed = nn.Linear(3, 6)
        self.layer = nn.Identity()
        self.head = nn.Linear(6, 2)
        self.read_prefix = read_prefix

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = nn.functional.avg_pool2d(x, 2).flatten(2).transpose(1, 2)  # (B, 4, 3) on a 2×2 grid
        prefix = torch.ones(x.shape[0], 2, 3, device=x.device)
        tokens = self.layer(self.embed(torch.cat([prefix, patches], 1)))
        pooled = tokens[:, :2].mean(1) if self.read_prefix else tokens[:, 2:].mean(1)
        return self.head(pooled)


@pytest.mark.parametrize("method", ["ablationcam", "scorecam"])
def test_token_layers_touch_patch_tokens_only(method: str) -> None:
    torch.manual_seed(0)
    layout = TokenLayout(num_prefix_tokens=2, patch_size=(2, 2), num_registers=1)
    x = torch.randn(1, 3, 4, 4)
    for read_prefix in (True, False):
        det = Detector(
            _TokenNet(read_prefix),
            input_spec=InputSpec(size=(4, 4)),
            cam_layers=("net.layer",),
            token_layout=layout,
        )
        e = _run(det, x, method)
        assert e.raw.shape == (1, 2, 2)
        if read_prefix:
            # a score that reads only the class/register tokens cannot depend on the patch tokens:
            # zeroing their channels (AblationCAM) or masking the image (ScoreCAM) changes nothing
            assert float(e.raw.abs().max()) == 0.0
        else:
            assert float(e.raw.abs().max()) > 0.0


# ---------------------------------------------------------------------------------------------- parity


def _peer_setup(case: str):  # type: ignore[no-untyped-def]
    from test_parity_gradcam import vit_detector

    if case == "resnet18":
        return _resnet18(64), None
    if case == "vit":
        return vit_detector()
    return _narrow_cnn(), None


SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    "case", ["narrow-cnn", pytest.param("resnet18", marks=SLOW), pytest.param("vit", marks=SLOW)]
)
def test_scorecam_matches_pytorch_grad_cam(case: str) -> None:
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam import ScoreCAM as PeerScoreCAM
    from test_parity_gradcam import fake_log_odds, peer_normalise

    det, rt = _peer_setup(case)
    x = model_input(det, 2, seed=5)
    ours = _run(det, x, "scorecam", weights="softmax", align_corners=True).raw.numpy()
    layer = det.layer(det.cam_layers[0])
    with PeerScoreCAM(model=det, target_layers=[layer], reshape_transform=rt) as cam:
        theirs = cam(input_tensor=x, targets=[fake_log_odds] * x.shape[0])
    assert np.abs(peer_normalise(ours, det.input_spec.size) - theirs).max() <= 1e-4


@pytest.mark.parametrize("case", ["narrow-cnn", pytest.param("resnet18", marks=SLOW)])
def test_ablationcam_matches_pytorch_grad_cam(case: str) -> None:
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam import AblationCAM as PeerAblationCAM
    from test_parity_gradcam import peer_normalise

    det, _ = _peer_setup(case)
    x = model_input(det, 2, seed=5)
    e = _run(det, x, "ablationcam")
    layer = det.layer(det.cam_layers[0])
    for sign in (1.0, -1.0):  # explain the fake log-odds and its negation: one of them has y < 0

        def target(out: torch.Tensor, s: float = sign) -> torch.Tensor:
            return s * (out[1] - out[0])

        ours = e.raw.numpy() if sign > 0 else -e.raw.numpy()  # the 'real' target mirrors every weight
        with PeerAblationCAM(model=det, target_layers=[layer], batch_size=64) as cam:
            theirs = cam(input_tensor=x, targets=[target] * x.shape[0])
        y = sign * e.scores.numpy()
        # theirs divides by y, ours by |y|: for y < 0 their pre-ReLU map is ours negated
        aligned = ours * np.sign(y)[:, None, None]
        assert np.abs(peer_normalise(aligned, det.input_spec.size) - theirs).max() <= 1e-4


@pytest.mark.parametrize("case", ["narrow-cnn", pytest.param("resnet18", marks=SLOW)])
def test_scorecam_matches_torchcam(case: str) -> None:
    pytest.importorskip("torchcam")
    from test_parity_gradcam import fake_log_odds
    from torchcam.methods import ScoreCAM as TorchcamScoreCAM

    det, _ = _peer_setup(case)
    x = model_input(det, 2, seed=5)
    ours = _run(det, x, "scorecam", weights="softmax", mask_norm="feature").raw
    with TorchcamScoreCAM(det, det.cam_layers[0], input_shape=(3, *det.input_spec.size)) as extractor:
        with torch.no_grad():
            det(x)
        theirs = extractor(targets=fake_log_odds)[0]
    r = ours.clamp_min(0)
    r = r - r.flatten(1).amin(1)[:, None, None]
    r = r / (r.flatten(1).amax(1)[:, None, None] + 1e-8)
    assert float((r - theirs).abs().max()) <= 1e-4


# ------------------------------------------------------------------------------------------------- GPU


@pytest.mark.gpu
@pytest.mark.parametrize("model_name", TINY_MODELS)
def test_cuda_matches_cpu_and_amp_runs(model_name: str) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    det = create_model(model_name)
    x = model_input(det, 2)
    dev = torch.device("cuda")
    det_gpu = create_model(model_name).to(dev)
    for method in ("scorecam", "ablationcam", "occlusion"):
        cpu = _run(det, x, method).raw
        gpu = _run(det_gpu, x.to(dev), method, amp=None)
        assert gpu.raw.device.type == "cuda" and gpu.meta["batch_size"] >= 1
        scale = float(cpu.abs().max())
        torch.testing.assert_close(gpu.raw.cpu(), cpu, atol=2e-3 * scale, rtol=0)  # TF32 convolutions
        auto = _run(det_gpu, x.to(dev), method, batch_size=16)  # later chunks in fp16 where the probe passes
        probe = auto.meta.get("amp_probe")  # AblationCAM never probes
        assert (probe is None) == (method == "ablationcam") and auto.meta["exact"] is True
        assert auto.meta["amp"] == ("fp16" if probe and probe["passed"] else None)
        torch.testing.assert_close(auto.raw.cpu(), cpu, atol=2e-2 * scale, rtol=0)
        for amp in ("bf16", "fp16"):
            lossy = _run(det_gpu, x.to(dev), method, amp=amp)
            assert lossy.meta["exact"] is False and torch.isfinite(lossy.raw).all()
    a = _run(det_gpu, x.to(dev), "rise", seed=3).raw
    b = _run(det_gpu, x.to(dev), "rise", seed=3).raw
    c = _run(det_gpu, x.to(dev), "rise", seed=4).raw
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert _hooks(det_gpu) == 0 and _patched_forwards(det_gpu) == 0


def _full_chunks(det: Detector, x: torch.Tensor, method: str, **extra: object):  # type: ignore[no-untyped-def]
    return _run(det, x, method, batch_size=4, **extra)


@pytest.mark.parametrize("model_name", TINY_MODELS)
def test_compiled_forwards_are_the_same_function(model_name: str) -> None:
    det = create_model(model_name)
    x = model_input(det, 1, seed=3)
    pert.clear_folded()
    compiled = _full_chunks(det, x, "occlusion", compile=True)
    eager = _full_chunks(det, x, "occlusion")
    assert compiled.meta["compiled"] is True and eager.meta["compiled"] is False
    assert compiled.meta["exact"] is True and compiled.meta["forwards"] == eager.meta["forwards"]
    scale = max(float(eager.raw.abs().max()), float(eager.scores.abs().max()))
    torch.testing.assert_close(compiled.raw, eager.raw, atol=1e-5 * scale, rtol=0)
    entry = pert._COMPILED[det][1]
    again = _full_chunks(det, x, "occlusion", compile=True)  # cached: not compiled again
    assert pert._COMPILED[det][1] is entry and again.meta["compiled"] is True
    pert.clear_folded()
    assert len(pert._COMPILED) == 0


class _Broken(nn.Module):
    """What a failing ``torch.compile`` hands back: raises, or computes something else."""

    def __init__(self, net: nn.Module, mode: str) -> None:
        super().__init__()
        self.net, self.mode = net, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "raise":
            raise RuntimeError("no C++ compiler")
        return self.net(x) + 1.0


@pytest.mark.parametrize("mode", ["raise", "wrong"])
def test_a_failed_or_wrong_compilation_falls_back(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "compile", lambda net, **_: _Broken(net, mode))
    det = create_model("tiny-cnn")
    x = model_input(det, 1, seed=4)
    pert.clear_folded()
    if mode == "raise":
        with pytest.warns(UserWarning, match="torch.compile failed.*no C\\+\\+ compiler"):
            fell_back = _full_chunks(det, x, "occlusion", compile=True)
    else:
        fell_back = _full_chunks(det, x, "occlusion", compile=True)
    eager = _full_chunks(det, x, "occlusion")
    assert fell_back.meta["compiled"] is False
    torch.testing.assert_close(fell_back.raw, eager.raw)
    assert pert._COMPILED[det][1].failed  # remembered: the next call does not try again
    assert _full_chunks(det, x, "occlusion", compile=True).meta["compiled"] is False
    pert.clear_folded()


def _coarse_cnn() -> Detector:
    """A CNN with a ResNet-like 7×7 stem and a coarse CAM layer (4×4 cells, 64 channels): the shape
    where ScoreCAM's linear stem applies."""
    torch.manual_seed(3)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 7, 2, 3, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
        nn.Conv2d(8, 64, 3, 4, 1),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 2),
    )
    for bn in (net[1], net[5]):
        bn.running_mean.uniform_(-0.5, 0.5)  # type: ignore[operator]
        bn.running_var.uniform_(0.5, 2.0)  # type: ignore[operator]
    return Detector(net, input_spec=InputSpec(size=(64, 64)), cam_layers=("net.6",)).eval()


@pytest.mark.parametrize("fill", ["mean", "black", "blur"])
@pytest.mark.parametrize(
    ("mask_norm", "align_corners"), [("upsampled", False), ("upsampled", True), ("feature", False)]
)
def test_linear_stem_is_the_same_scorecam(fill: str, mask_norm: str, align_corners: bool) -> None:
    det = _coarse_cnn()
    x = model_input(det, 2, seed=4)
    opts = {"fill": fill, "mask_norm": mask_norm, "align_corners": align_corners, "fold_bn": True}
    fast = _run(det, x, "scorecam", **opts)
    plain = _run(det, x, "scorecam", **opts, linear_stem=False)
    distinct = sum(fast.meta["channels_used"]) - sum(fast.meta["channels_repeated"])
    assert fast.meta["linear_stem_forwards"] == distinct > 0
    assert plain.meta["linear_stem_forwards"] == 0
    assert fast.meta["forwards"] == plain.meta["forwards"] + 2  # + the check of each image's stem maps
    scale = max(float(plain.raw.abs().max()), float(plain.scores.abs().max()))
    torch.testing.assert_close(fast.raw, plain.raw, atol=1e-5 * scale, rtol=0)


def test_linear_stem_falls_back_when_its_check_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    det = _coarse_cnn()
    x = model_input(det, 1, seed=5)
    plain = _run(det, x, "scorecam", fold_bn=True, linear_stem=False)
    real = pert.LinearStem.tail_scores
    monkeypatch.setattr(pert.LinearStem, "tail_scores", lambda self, rows: real(self, rows) + 1.0)
    broken = _run(det, x, "scorecam", fold_bn=True)
    assert broken.meta["linear_stem_forwards"] == 0
    torch.testing.assert_close(broken.raw, plain.raw)


def test_linear_stem_only_where_it_pays() -> None:
    # tiny-cnn: a 16×16 CAM grid (256 cells) with 64 channels — more cells than channels/2: direct path
    det = create_model("tiny-cnn")
    assert _run(det, model_input(det, 1), "scorecam", fold_bn=True).meta["linear_stem_forwards"] == 0
    # without the folded copy (fold_bn=False) the shortcut is not built either
    coarse = _coarse_cnn()
    assert _run(coarse, model_input(coarse, 1), "scorecam", fold_bn=False).meta["linear_stem_forwards"] == 0


class _Twice(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, x], 1)


def test_scorecam_scores_repeated_channels_once() -> None:
    """Channels with the same mask share one forward; the map is the one of scoring every channel."""
    torch.manual_seed(6)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, 4, 1), nn.ReLU(), _Twice(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)
    )
    det = Detector(net, input_spec=InputSpec(size=(32, 32)), cam_layers=("net.2",)).eval()
    x = model_input(det, 2, seed=7)
    e = _run(det, x, "scorecam")
    used, repeated = e.meta["channels_used"], e.meta["channels_repeated"]
    assert repeated == [u // 2 for u in used] and sum(repeated) > 0
    assert e.meta["forwards"] == sum(used) - sum(repeated) + 2 + 1  # + the 2 unperturbed, 1 baseline input
    # brute force: every channel's masked input scored on its own
    target = FakeLogOdds(det.fake_index)
    with torch.no_grad():
        acts = net[:3](x)
        base = target(det(torch.zeros_like(x[:1])))
        want = []
        for b in range(2):
            masks = pert.ScoreCAM().masks(acts[b], (32, 32))
            w = target(det(masks * x[b])) - base
            w[(acts[b].amax((1, 2)) - acts[b].amin((1, 2))) == 0] = 0  # constant channels: mask 0, w = 0
            want.append(torch.einsum("c,chw->hw", w, acts[b]))
    torch.testing.assert_close(e.raw, torch.stack(want), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("method", "extra"),
    [("scorecam", {}), ("scorecam", {"linear_stem": False}), ("occlusion", {}), ("rise", {})],
)
def test_workers_split_chunks_without_changing_the_map(method: str, extra: dict[str, object]) -> None:
    det = _coarse_cnn()
    x = model_input(det, 2, seed=8)
    opts = {**extra, "fold_bn": True, "batch_size": 12}  # chunks of one image and chunks spanning two
    one = _run(det, x, method, **opts, workers=1)
    two = _run(det, x, method, **opts, workers=2)
    three = _run(det, x, method, **opts, workers=3)
    plain = _run(det, x, method, **{**opts, "fold_bn": False}, workers=2)  # the model itself, split
    assert (one.meta["workers"], two.meta["workers"], three.meta["workers"]) == (1, 2, 3)
    if method == "scorecam":
        assert (two.meta["linear_stem_forwards"] > 0) == extra.get("linear_stem", True)
    assert two.meta["forwards"] == one.meta["forwards"]
    scale = max(float(one.raw.abs().max()), float(one.scores.abs().max()))
    torch.testing.assert_close(two.raw, one.raw, atol=1e-6 * scale, rtol=0)
    torch.testing.assert_close(three.raw, one.raw, atol=1e-6 * scale, rtol=0)
    assert plain.meta["fold_bn"] is False and plain.meta["workers"] == 2
    torch.testing.assert_close(plain.raw, one.raw, atol=1e-5 * scale, rtol=0)


def test_workers_auto_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    det = _coarse_cnn()
    x = model_input(det, 1, seed=9)
    monkeypatch.setattr(pert, "_intraop_threads", lambda: 2)
    assert _run(det, x, "occlusion", fold_bn=True).meta["workers"] == 2
    assert _run(det, x, "occlusion", fold_bn=False).meta["workers"] == 2  # the model itself
    handle = det.net[2].register_forward_hook(lambda *args: None)
    try:  # hooks keep state: never split
        assert _run(det, x, "occlusion", fold_bn=False).meta["workers"] == 1
    finally:
        handle.remove()
    assert _run(det, x, "occlusion", fold_bn=True, batch_size=6).meta["workers"] == 1  # parts of 3
    assert _run(det, x, "occlusion", fold_bn=True, amp="bf16").meta["workers"] == 1
    assert _run(det, x, "ablationcam").meta["workers"] == 1  # patched forwards: never split
    monkeypatch.setattr(pert, "_intraop_threads", lambda: 1)
    assert _run(det, x, "occlusion", fold_bn=True).meta["workers"] == 1
    assert "workers" not in method_options("ablationcam") and "workers" in method_options("rise")
    with pytest.raises(ConfigError, match="workers"):
        pert.ScoreCAM(workers=0)


def test_split_forward_keeps_order_threads_and_errors() -> None:
    before = torch.get_num_threads()
    seen: list[tuple[str, int, bool]] = []

    def model(part: torch.Tensor) -> torch.Tensor:
        name = threading.current_thread().name
        seen.append((name, torch.get_num_threads(), torch.is_inference_mode_enabled()))
        return part * 2

    batch = torch.arange(10.0).view(10, 1)
    with torch.inference_mode():
        out = pert.split_forward(model, batch, 2)
    assert torch.equal(out, batch * 2)
    assert len(seen) == 2
    assert all(n.startswith("fakelens-forward") and t == max(1, before // 2) and inf for n, t, inf in seen)
    assert torch.get_num_threads() == before

    def broken(part: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        pert.split_forward(broken, batch, 2)
    assert torch.get_num_threads() == before
    fresh: list[int] = []
    t = threading.Thread(target=lambda: fresh.append(torch.get_num_threads()))
    t.start()
    t.join()
    assert fresh == [before]  # threads started later get the caller's setting back


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_split_forward_in_a_forked_child() -> None:
    """A child forked after the pool's threads started gets a pool of its own (it would wait forever on
    the parent's)."""
    import multiprocessing

    batch = torch.arange(8.0).view(8, 1)
    with torch.inference_mode():
        pert.split_forward(lambda p: p + 1, batch, 2)  # the parent's pool exists now
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        out = pool.apply_async(_split_in_child).get(timeout=60)
    assert out == (batch + 1).tolist()


def _split_in_child() -> list[list[float]]:
    with torch.inference_mode():
        return pert.split_forward(lambda p: p + 1, torch.arange(8.0).view(8, 1), 2).tolist()


@pytest.mark.parametrize("model_name", TINY_MODELS)
@pytest.mark.parametrize("method", [*METHODS, "spectral"])
def test_progress_is_reported_per_chunk(model_name: str, method: str) -> None:
    det = create_model(model_name)
    x = model_input(det, 2, seed=10)
    calls: list[tuple[str, int, int]] = []
    extra = FAST.get(method, {"radial": 4, "orientations": 4, "tiles": 2})
    with pert.reporting(lambda m, done, planned: calls.append((m, done, planned))):
        e = explain(det, x, [method], options={method: {**extra, "batch_size": 8}})[method]
    assert len(calls) >= 2 and {m for m, _, _ in calls} == {method}
    done = [d for _, d, _ in calls]
    assert done == sorted(done) and all(d <= p for _, d, p in calls)
    total = e.meta["forwards"] + e.meta.get("partial_forwards", 0)
    assert calls[-1][1] == calls[-1][2] == total  # the bar ends full, at what ran
    calls.clear()
    explain(det, x, [method], options={method: extra})  # outside the block: nothing reported
    assert calls == []


def test_errors_name_the_method() -> None:
    det = create_model("tiny-cnn")
    with pytest.raises(ConfigError, match=r"^scorecam needs layers"):
        pert.ScoreCAM()(det, model_input(det, 1), FakeLogOdds(det.fake_index), ())


@pytest.mark.parametrize("option", ["batch_size", "workers", "top_k"])
@pytest.mark.parametrize("value", [0, -2, "abc", 2.5, True])
def test_count_options_are_checked_at_construction(option: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"^{option} must be an integer >= 1 or None, got "):
        pert.ScoreCAM(**{option: value})  # type: ignore[arg-type]


def test_scorecam_softmax_top_k_gives_left_out_channels_no_weight() -> None:
    """With ``weights="softmax"``, channels ``top_k`` left out must not share the softmax: the map lies in
    the span of the evaluated channels' activations. A ``top_k`` covering every channel is exact."""
    from fakelens.explain import capture

    det = create_model("tiny-cnn")
    x = model_input(det, 2)
    layer = det.cam_layers[0]
    e = _run(det, x, "scorecam", weights="softmax", top_k=4)
    acts = capture(det, x, [layer], gradients=False).activations[layer].float()
    mass = acts.flatten(2).abs().sum(-1)
    for b in range(2):
        kept = acts[b][mass[b].topk(4).indices].flatten(1).T  # (hw, 4)
        target = e.raw[b].flatten()[:, None]
        fit = kept @ torch.linalg.lstsq(kept, target).solution
        assert float((fit - target).norm() / target.norm()) < 1e-4
    every = _run(det, x, "scorecam", top_k=acts.shape[1])
    assert every.meta["exact"] is True and e.meta["exact"] is False


@pytest.mark.parametrize("center", [False, True])
def test_rise_golden_on_a_linear_model(center: bool) -> None:
    """RISE (Petsiuk et al. 2018): S = Σᵢ (f(Mᵢ ⊙ x) − c) Mᵢ / (N · p), c = the mean score when centred;
    p = 0.25 makes a missing 1/p a factor of 4. The mean fill is 0 here, so f(M ⊙ x) = Σ w M x."""
    weight = torch.arange(16.0).view(4, 4) - 5.0
    x = torch.linspace(-1, 2, 16).view(1, 1, 4, 4)
    opts = {"n_masks": 64, "grid": 2, "p": 0.25, "seed": 5, "center": center}
    e = explain(_linear_detector(weight), x, ["rise"], options={"rise": opts})["rise"]
    rise = pert.RISE(**opts)
    masks = rise.masks(*rise.draw((4, 4), torch.device("cpu")), (4, 4))
    f = (masks * (weight * x[0, 0])).sum((1, 2))
    expected = torch.einsum("n,nhw->hw", f - f.mean() if center else f, masks) / (64 * 0.25)
    torch.testing.assert_close(e.raw[0], expected, rtol=1e-5, atol=1e-5)


def test_occlusion_default_window_and_stride() -> None:
    """Window = round(shorter side / 7), stride = half the window, as documented."""
    assert pert.Occlusion().geometry((224, 224)) == ((32, 32), (16, 16))
    assert pert.Occlusion().geometry((14, 28)) == ((2, 2), (1, 1))


class _ColourVote(nn.Module):
    """Class k = the colour channel of largest mean: hiding the dominant colour changes the top class."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 3, 1, bias=False)
        with torch.no_grad():
            self.features.weight.copy_(torch.eye(3)[:, :, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean((2, 3)) * 10


@pytest.mark.parametrize("method", METHODS)
def test_the_top_class_is_the_clean_image_s(method: str) -> None:
    """target "top" (a classifier's default): every perturbed copy is scored on the clean image's top class,
    as peers do — it had been scored on its own top class, which a mask or an ablation changes. Images of
    different top classes in one batch each get their own class's map, in batch order."""
    from fakelens.models import wrap_model

    det = wrap_model(
        _ColourVote(),
        labels=["red", "green", "blue"],
        fake_label=None,
        input_spec=InputSpec(size=(32, 32), mean=(0, 0, 0), std=(1, 1, 1)),
        cam_layers=["features"],
    )
    x = torch.zeros(2, 3, 32, 32)
    x[0, 0, :, :12], x[0, 1] = 1.0, 0.3  # a red stripe on green: red on top, green once the stripe is hidden
    x[1, 1], x[1, 0] = 0.6, 0.1  # green
    opts = {"occlusion": {"window": 8, "stride": 4}, "rise": {"n_masks": 64, "grid": 4}}.get(method, {})
    top = explain(det, x, [method], target="top", options={method: opts})[method]
    assert top.meta["top_classes"] == [0, 1] and top.scores.shape == (2,)
    for i, label in enumerate(["red", "green"]):
        one = explain(det, x[i : i + 1], [method], target=label, options={method: opts})[method]
        torch.testing.assert_close(top.raw[i], one.raw[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(top.scores[i], one.scores[0])


def test_perturbation_options_are_checked_before_any_forward() -> None:
    """A zero-width blur had run every forward, then failed as non-finite values; a stride larger than the
    window had left pixels no window covers at 0 inside the valid mask; a list window (JSON, Python) is a
    pair."""
    for method in ("scorecam", "occlusion", "rise"):
        with pytest.raises(ConfigError, match="blur_sigma"):
            EXPLAINERS.create(method, fill="blur", blur_sigma=0)
        with pytest.raises(ConfigError, match="blur_sigma"):
            EXPLAINERS.create(method, blur_sigma=-1.0)
    with pytest.raises(ConfigError, match="larger than the window"):
        EXPLAINERS.create("occlusion", window=8, stride=24)  # at construction: check_options sees it
    assert EXPLAINERS.create("occlusion", window=[8, 16]).geometry((64, 64)) == ((8, 16), (4, 8))


def test_rise_is_centred_by_default_so_a_signed_score_gives_a_map() -> None:
    """The fake log-odds is signed: uncentred, an image scored real got an all-negative map (blank, flat)."""
    det = create_model("tiny-cnn", seed=0)
    x = model_input(det, 1)
    e = explain(det, x, ["rise"], options={"rise": {"n_masks": 64}})["rise"]
    assert e.meta["center"] is True
    assert float(e.raw.max()) > 0 > float(e.raw.min())
