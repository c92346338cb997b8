"""BatchNorm folding: the folded copy is the same function on every registered model, timm's modules fold."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fakelens.models.fold as fold
from conftest import flattening_detector, model_input, registered_models
from fakelens.models import create_model
from fakelens.models.fold import clear_folded_copies, fold_batchnorm, inference_logits


def _randomise_batchnorm(net: nn.Module, seed: int = 0) -> int:
    """Non-trivial running statistics and affine parameters (a fresh BatchNorm folds to the identity)."""
    g = torch.Generator().manual_seed(seed)
    count = 0
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)  # type: ignore[operator]
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)  # type: ignore[operator]
                if m.weight is not None:
                    m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                    m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                count += 1
    return count


@pytest.mark.parametrize("name", registered_models())
def test_folded_copy_is_the_same_function(name: str) -> None:
    det = create_model(name)
    norms = _randomise_batchnorm(det.net)
    before = {k: v.clone() for k, v in det.net.state_dict().items()}
    folded, n = fold_batchnorm(det.net)
    x = model_input(det, 2, seed=1)
    with torch.no_grad():
        want, got = det.net(x), folded(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    # every BatchNorm of our models follows a convolution: all fold, none is left in the copy
    assert n == norms
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    after = det.net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the model itself is untouched


def test_timm_same_padding_and_batchnorm_act_fold() -> None:
    """effnet-lite0 (timm ``Conv2dSame`` + ``BatchNormAct2d``), which ``torch.fx``'s own fuse cannot trace."""
    timm_layers = pytest.importorskip("timm.layers")
    det = create_model("effnet-lite0")
    convs_same = sum(isinstance(m, timm_layers.Conv2dSame) for m in det.net.modules())
    norms = sum(isinstance(m, timm_layers.BatchNormAct2d) for m in det.net.modules())
    assert convs_same > 0 and norms > 0
    with pytest.raises(Exception):  # noqa: B017 - whichever error torch.fx raises
        from torch.fx.experimental.optimization import fuse

        fuse(det.net)
    _, n = fold_batchnorm(det.net)
    assert n == norms


class _Shared(nn.Module):
    """A convolution whose output feeds its BatchNorm and a skip: folding would change the skip."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        return self.bn(h) + h


class _Standardised(nn.Conv2d):
    """A convolution that re-standardises its weight in ``forward`` (like timm's ``StdConv2d``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight - self.weight.mean((1, 2, 3), keepdim=True)
        return self._conv_forward(x, w / w.std((1, 2, 3), keepdim=True), self.bias)


@pytest.mark.parametrize("net", [_Shared(), nn.Sequential(_Standardised(3, 4, 3), nn.BatchNorm2d(4))])
def test_unsafe_pairs_are_left_alone(net: nn.Module) -> None:
    net.eval()
    _randomise_batchnorm(net, seed=2)
    folded, n = fold_batchnorm(net)
    assert n == 0
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x))


@pytest.mark.parametrize("name", registered_models())
def test_inference_logits_are_the_models(name: str) -> None:
    det = create_model(name)
    _randomise_batchnorm(det.net, seed=3)
    x = model_input(det, 3, seed=4)
    clear_folded_copies()
    with torch.inference_mode():
        want, got = det(x), inference_logits(det, x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    copy = fold._FOLDED[det][1] if det in fold._FOLDED else None
    has_norms = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in det.modules())
    assert (copy is not None) == has_norms  # the folded copy served wherever there is BatchNorm
    if copy is not None:
        assert fold._CHECKED[copy] is True


def test_inference_logits_use_the_model_where_they_must(monkeypatch: pytest.MonkeyPatch) -> None:
    det = create_model("tiny-cnn")
    _randomise_batchnorm(det.net, seed=5)
    x = model_input(det, 2, seed=6)
    clear_folded_copies()
    calls: list[int] = []
    handle = det.net.register_forward_hook(lambda *args: calls.append(1))
    try:  # a hook must see the forward
        with torch.inference_mode():
            inference_logits(det, x)
        assert calls == [1] and det not in fold._FOLDED
    finally:
        handle.remove()
    assert inference_logits(det, x).requires_grad  # gradients asked for: the model itself
    assert det not in fold._FOLDED

    real = fold.fold_batchnorm

    def wrong(net: nn.Module) -> tuple[torch.fx.GraphModule, int]:
        gm, n = real(net)
        with torch.no_grad():
            next(gm.parameters()).mul_(1.5)
        return gm, n

    monkeypatch.setattr(fold, "fold_batchnorm", wrong)
    clear_folded_copies()
    with torch.inference_mode():
        got, want = inference_logits(det, x), det(x)
    copy = fold._FOLDED[det][1]
    assert copy is not None and fold._CHECKED[copy] is False  # the check caught it: the model served
    torch.testing.assert_close(got, want)
    clear_folded_copies()


def test_a_model_that_views_its_activations_keeps_its_layout() -> None:
    det, x = flattening_detector(), torch.randn(3, 3, 32, 32)
    with pytest.raises(RuntimeError, match="view"):
        det(x.contiguous(memory_format=torch.channels_last))
    assert fold.accepts_channels_last(det, x) is False and fold._LAYOUT[det] is False  # found out once
    with torch.inference_mode():
        torch.testing.assert_close(inference_logits(det, x), det(x))
    tiny = create_model("tiny-cnn")
    assert fold.accepts_channels_last(tiny, model_input(tiny, 1)) is True


def test_a_model_in_training_mode_scores_as_in_eval_and_is_left_as_it_was() -> None:
    """Inference is eval: a model left in train mode scored with batch statistics (0.107 → 0.486 on a
    ResNet) and overwrote BatchNorm's running statistics on every call."""
    from fakelens.models.ensemble import predict_proba

    det = create_model("tiny-cnn", seed=0)
    x = torch.rand(4, 3, *det.input_spec.size, generator=torch.Generator().manual_seed(0))
    want = predict_proba(det, x)
    det.train()
    det.net.features[0].eval()  # a caller's own choice of modes is put back as it was
    stats = [b.clone() for b in det.buffers()]
    torch.testing.assert_close(predict_proba(det, x), want)
    assert all(torch.equal(a, b) for a, b in zip(stats, det.buffers(), strict=True))
    assert det.training and not det.net.features[0].training


@pytest.mark.parametrize("hooked", [False, True])
def test_a_network_in_training_mode_inside_an_eval_wrapper_scores_as_in_eval(hooked: bool) -> None:
    """The wrapper's own flag says nothing of its network's: wrapped (eval), then ``net.train()`` by the user
    — with a hook (the unfolded path) or without — it scored with batch statistics and overwrote them."""
    det = create_model("tiny-cnn", seed=0)
    x = torch.rand(4, 3, *det.input_spec.size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = det(x)
    det.net.train()
    if hooked:
        det.net.register_forward_hook(lambda m, i, o: None)
    stats = [b.clone() for b in det.buffers()]
    with torch.no_grad():
        got = inference_logits(det, x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(stats, det.buffers(), strict=True))
    assert not det.training and all(m.training for m in det.net.modules())


def test_a_change_through_data_is_seen_by_the_folded_copy() -> None:
    """``.data`` changes bump no version counter (an EMA's ``p.data.lerp_``): the stale folded copy kept
    serving the old weights (p 0.2856 instead of 0.3778 on a ResNet)."""
    det = create_model("tiny-cnn", seed=0)
    _randomise_batchnorm(det.net)
    x = torch.rand(2, 3, *det.input_spec.size, generator=torch.Generator().manual_seed(0))
    clear_folded_copies()
    with torch.no_grad():
        inference_logits(det, x)
        first = fold._FOLDED[det][1]
        assert first is not None
        inference_logits(det, x)
        assert fold._FOLDED[det][1] is first  # unchanged weights: the copy is reused
        for change in (
            lambda: det.net.features[0][0].weight.data.mul_(0.5),
            lambda: det.net.features[0][1].running_var.data.add_(1.0),  # a buffer
        ):
            change()
            torch.testing.assert_close(inference_logits(det, x), det(x), rtol=1e-4, atol=1e-5)
            assert fold._FOLDED[det][1] is not first
            first = fold._FOLDED[det][1]
    clear_folded_copies()
