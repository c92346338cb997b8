"""Every registered CAM × every tiny model: shapes, values, batching, hooks and state hygiene."""

from __future__ import annotations

import pytest
import torch

from conftest import TINY_MODELS, flattening_detector, model_input
from fakelens.explain import CAMS, CAMMethod, GradientCAM, capture, explain, explain_targets, register_cam
from fakelens.explain.cams import first_component_projection
from fakelens.models import create_model

METHODS = CAMS.names()


def _hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules())


@pytest.mark.parametrize("model_name", TINY_MODELS)
@pytest.mark.parametrize("method", METHODS)
def test_shapes_and_finite(model_name: str, method: str) -> None:
    det = create_model(model_name)
    x = model_input(det, 3)
    e = explain(det, x, [method])[method]
    h, w = det.input_spec.size
    assert e.raw.dim() == 3 and e.raw.shape[0] == 3
    assert torch.isfinite(e.raw).all()
    assert len(e.maps) == 3 and all(m.shape == (h, w) for m in e.maps)
    for m in e.maps:
        assert m.min() >= 0 and m.max() <= 1
    assert set(e.stats) >= {"min", "max", "sum", "negative_mass", "peak_to_mean", "entropy"}
    assert all(v.shape == (3,) and torch.isfinite(v).all() for v in e.stats.values())


@pytest.mark.parametrize("model_name", TINY_MODELS)
@pytest.mark.parametrize("method", METHODS)
def test_batch_equals_per_image(model_name: str, method: str) -> None:
    det = create_model(model_name)
    x = model_input(det, 3, seed=1)
    batch = explain(det, x, [method])[method].raw
    single = torch.cat([explain(det, x[i : i + 1], [method])[method].raw for i in range(3)])
    scale = batch.abs().amax() + 1e-12
    torch.testing.assert_close(batch / scale, single / scale, atol=2e-5, rtol=0)


@pytest.mark.parametrize("model_name", TINY_MODELS)
def test_no_hooks_left_and_state_restored_after_exception(model_name: str) -> None:
    det = create_model(model_name)
    det.train()
    det.net.head.weight.requires_grad_(False)  # a caller's own freezing must survive too
    flags = [p.requires_grad for p in det.parameters()]

    def bad_target(logits: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")

    bad_target.name = "bad"  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="boom"):
        capture(det, model_input(det), targets=[bad_target])  # type: ignore[list-item]
    assert _hooks(det) == 0
    assert det.training and all(m.training for m in det.modules())
    assert [p.requires_grad for p in det.parameters()] == flags


@pytest.mark.parametrize("model_name", TINY_MODELS)
def test_state_restored_after_success_and_no_param_grads(model_name: str) -> None:
    det = create_model(model_name)
    explain(det, model_input(det), METHODS)
    assert _hooks(det) == 0
    assert not det.training
    assert all(p.requires_grad for p in det.parameters())
    assert all(p.grad is None for p in det.parameters())


@pytest.mark.parametrize("model_name", TINY_MODELS)
def test_inside_no_grad_and_inference_mode(model_name: str) -> None:
    det = create_model(model_name)
    x = model_input(det)
    ref = explain(det, x, ["gradcam"])["gradcam"].raw
    with torch.no_grad():
        a = explain(det, x, ["gradcam"])["gradcam"].raw
    with torch.inference_mode():
        b = explain(det, x.clone(), ["gradcam"])["gradcam"].raw
    torch.testing.assert_close(a, ref)
    torch.testing.assert_close(b, ref)


def test_several_targets_from_one_forward() -> None:
    det = create_model("tiny-cnn")
    x = model_input(det)
    calls = 0

    def count(module: torch.nn.Module, args: object, out: object) -> None:
        nonlocal calls
        calls += 1

    h = det.net.head.register_forward_hook(count)
    try:
        res = explain_targets(det, x, ["gradcam", "hirescam"], ["fake", "real", "class:0"])
    finally:
        h.remove()
    assert calls == 1
    fake = res["fake"]["hirescam"].raw
    real = res["real"]["hirescam"].raw
    torch.testing.assert_close(real, -fake)  # negative evidence is the mirror image
    # class:0 logit minus class:1 logit == -(fake log-odds) for two logits
    torch.testing.assert_close(res["fake"]["gradcam"].scores, -res["real"]["gradcam"].scores)


def test_multi_layer_fusion_mean_of_scaled_maps() -> None:
    det = create_model("tiny-cnn")
    x = model_input(det)
    layers = ["net.features.2", "net.features.3"]
    fused = explain(det, x, ["gradcam"], layers=layers)["gradcam"].raw
    singles = [explain(det, x, ["gradcam"], layers=[n])["gradcam"].raw for n in layers]
    expected = torch.stack([s / s.flatten(1).abs().amax(1)[:, None, None] for s in singles]).mean(0)
    torch.testing.assert_close(fused, expected)


def test_unknown_method_and_layer_give_clear_errors() -> None:
    from fakelens.errors import UnknownNameError

    det = create_model("tiny-cnn")
    with pytest.raises(UnknownNameError, match="gradcam"):
        explain(det, model_input(det), ["gradcan"])
    with pytest.raises(UnknownNameError, match="no layer 'nope'"):
        explain(det, model_input(det), ["gradcam"], layers=["nope"])
    from fakelens.errors import ExplanationError

    with pytest.raises(ExplanationError, match=r"net.pool has a 1×1 output \(pooled\)"):
        explain(det, model_input(det), ["gradcam"], layers=["net.pool"])  # one constant, not a map


def test_explain_checks_its_input_tensor() -> None:
    det = create_model("tiny-cnn")
    x = model_input(det)
    with pytest.raises(TypeError, match="not ndarray"):
        explain(det, x.numpy(), ["gradcam"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"expected a \(B, C, H, W\) input"):
        explain(det, x[0], ["gradcam"])
    with pytest.raises(ValueError, match=r"torch\.float64 on cpu but 'tiny-cnn' is torch\.float32"):
        explain(det, x.double(), ["gradcam"])
    assert set(explain(det, x, "gradcam")) == {"gradcam"}  # a string is one method, not six letters


def test_layers_may_be_named_relative_to_the_wrapped_network() -> None:
    """As ``wrap_model(cam_layers=…)`` accepts them: ``features.2`` is the detector's ``net.features.2``."""
    det = create_model("tiny-cnn")
    x = model_input(det)
    short = explain(det, x, ["gradcam"], layers=["features.2"])["gradcam"].raw
    torch.testing.assert_close(short, explain(det, x, ["gradcam"], layers=["net.features.2"])["gradcam"].raw)


def test_eigen_projection_matches_svd_and_sign_is_fixed() -> None:
    g = torch.Generator().manual_seed(3)
    for c, hw in [(64, 7), (8, 12), (32, 5)]:
        x = torch.randn(4, c, hw, hw, generator=g).abs() + torch.randn(4, c, 1, 1, generator=g)
        proj = first_component_projection(x)
        xm = x.flatten(2).transpose(1, 2)
        xm = xm - xm.mean(1, keepdim=True)
        _, _, vt = torch.linalg.svd(xm.double())
        ref = (xm.double() @ vt[:, 0, :, None]).squeeze(-1).view(4, hw, hw).float()
        sign = torch.sign((proj * ref).flatten(1).sum(1))[:, None, None]
        torch.testing.assert_close(proj, ref * sign, atol=1e-4 * ref.abs().max().item(), rtol=1e-3)
        # the fixed sign correlates with the channel-mean magnitude; channel order does not matter
        mean = x.abs().mean(1).flatten(1)
        corr = (
            (proj.flatten(1) - proj.flatten(1).mean(1, keepdim=True)) * (mean - mean.mean(1, keepdim=True))
        ).sum(1)
        assert (corr >= 0).all()
        torch.testing.assert_close(first_component_projection(x.flip(1)), proj, atol=1e-5, rtol=1e-4)
        # float64 features keep float64 precision (not float32's, cast back)
        proj64 = first_component_projection(x.double())
        xm64 = x.double().flatten(2).transpose(1, 2)
        xm64 = xm64 - xm64.mean(1, keepdim=True)
        ref64 = (xm64 @ torch.linalg.svd(xm64)[2][:, 0, :, None]).squeeze(-1).view(4, hw, hw)
        assert proj64.dtype == torch.float64
        err = (proj64 - ref64 * torch.sign((proj64 * ref64).flatten(1).sum(1))[:, None, None]).abs().max()
        assert err / ref64.abs().max() < 1e-10


@pytest.mark.parametrize(("c", "hw"), [(64, 8), (8, 12)])  # both Gram sides (n ≤ C and n > C)
def test_eigen_projection_within_the_image_cells(c: int, hw: int) -> None:
    """With ``cells``, mean, axis and sign are those of the image's cells alone (SVD of those rows), every
    cell is projected; padding of a different level no longer makes the axis "padding versus image"."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, c, hw, hw, generator=g).abs() + torch.randn(2, c, 1, 1, generator=g)
    cells = torch.zeros(2, hw, hw, dtype=torch.bool)
    cells[0, 2:-2] = True  # letterboxed rows
    cells[1, :, 1:] = True
    x = x.masked_fill(~cells[:, None], -3.0)  # padding: one constant vector far from the image's
    proj = first_component_projection(x, cells=cells)
    for b in range(2):
        rows = x[b].flatten(1).T.double()  # (n, C)
        keep = cells[b].flatten()
        centred = rows - rows[keep].mean(0)
        v = torch.linalg.svd(centred[keep])[2][0]
        ref = (centred @ v).view(hw, hw).float()
        sign = torch.sign((proj[b] * ref)[cells[b]].sum())
        torch.testing.assert_close(proj[b], ref * sign, atol=1e-4 * ref.abs().max().item(), rtol=1e-3)
        assert proj[b][cells[b]].max() > 0  # not a blank map on the image
    torch.testing.assert_close(  # all cells: the plain projection
        first_component_projection(x, cells=torch.ones_like(cells)), first_component_projection(x)
    )


def test_eigencam_of_a_letterboxed_image_is_not_blank() -> None:
    """A non-square image letterboxed into a square input: the principal axis had separated the padding from
    the image, left every image cell negative and the map blank ("flat")."""
    import numpy as np
    import timm
    from PIL import Image

    from fakelens import explain_images, wrap_model

    torch.manual_seed(0)
    det = wrap_model(timm.create_model("resnet18", num_classes=2), labels=("real", "fake"))
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (200, 300, 3), dtype=np.uint8))
    [r] = explain_images(det, [img], ["eigencam", "eigengradcam"])
    for m in ("eigencam", "eigengradcam"):
        assert float(r.map(m).max()) == pytest.approx(1.0) and not r.explanations[m].summary(0)["flat"]


def test_gradcam_golden_values_on_hand_weighted_model() -> None:
    """One 1×1 conv with hand-set weights, GAP, linear head: every map is computable by hand."""
    from fakelens.models import Detector, InputSpec

    conv = torch.nn.Conv2d(1, 2, 1, bias=False)
    conv.weight.data = torch.tensor([[[[1.0]]], [[[-1.0]]]])
    head = torch.nn.Linear(2, 2, bias=False)
    head.weight.data = torch.tensor([[0.0, 1.0], [2.0, 0.0]])  # real ← channel 1, fake ← 2·channel 0
    net = torch.nn.Sequential(conv, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), head)
    det = Detector(
        net, input_spec=InputSpec(size=(2, 2), mean=(0, 0, 0), std=(1, 1, 1)), cam_layers=("net.0",)
    )
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    res = explain(det, x, ["gradcam", "hirescam", "layercam"])
    # y = z_fake − z_real = 2·mean(A0) − mean(A1); A0 = x, A1 = −x; g0 = 2/4, g1 = −1/4
    expected = 0.5 * x[0, 0] + (-0.25) * (-x[0, 0])  # Σ_k w_k A^k = 0.75·x
    torch.testing.assert_close(res["gradcam"].raw[0], expected)
    torch.testing.assert_close(res["hirescam"].raw[0], expected)
    torch.testing.assert_close(res["layercam"].raw[0], 0.5 * x[0, 0])  # ReLU(g1) = 0


CNN_PERTURBATIONS = ["scorecam", "ablationcam", "occlusion", "rise", "spectral"]


@pytest.mark.parametrize("method", [*CAMS.names(), *CNN_PERTURBATIONS])
def test_a_model_that_views_its_activations_is_explained(method: str) -> None:
    """Channels-last input (the CPU's fast layout) breaks ``x.view(B, -1)``: such a model runs in its own
    layout, with the same maps."""
    det = flattening_detector()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    e = explain(det, x, [method])[method]
    assert e.raw.shape[0] == 2 and torch.isfinite(e.raw).all()


@pytest.mark.parametrize("method", ["gradcam", "eigencam"])
def test_a_map_with_non_finite_values_is_an_error_not_a_score(method: str) -> None:
    """One NaN activation pixel would make mass metrics read the map as empty and rank metrics score it;
    the method is reported instead (analyze keeps the others). EigenCAM used to zero it and go on."""
    from fakelens.errors import ExplanationError

    det = create_model("tiny-cnn")
    x = model_input(det)

    def poison(_m: torch.nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor:
        out = out.clone()
        out[:, :, 0, 0] = float("nan")
        return out

    handle = det.layer("net.features.3").register_forward_hook(poison)
    try:
        with pytest.raises(ExplanationError, match=f"{method} produced non-finite values"):
            explain(det, x, [method])
    finally:
        handle.remove()


def test_a_near_uniform_positive_map_is_not_stretched_into_hot_spots() -> None:
    """Attention maps are positive everywhere: 0.0193–0.0200 is ~97–100 % of the peak, not 0 to 1; a
    ReLU'd map (minimum 0) is its share of the peak, as min-max would give."""
    from fakelens.explain.explanation import normalize_within

    g = torch.Generator().manual_seed(0)
    near_flat = 0.0193 + 0.0007 * torch.rand(1, 8, 8, generator=g)
    valid = torch.ones(1, 8, 8, dtype=torch.bool)
    out = normalize_within(near_flat, valid)
    assert float(out.min()) > 0.96 and float(out.max()) == pytest.approx(1.0)
    relu = torch.relu(torch.randn(1, 8, 8, generator=g))
    assert torch.allclose(normalize_within(relu, valid), relu / relu.max())


def test_threads_sharing_a_model_get_their_own_maps_and_leave_it_as_it_was() -> None:
    """Hooks and frozen flags live on the model: explanations and scoring from several threads take turns.
    Concurrent ones handed maps to the wrong thread (20 of 240), left every parameter frozen for good, and a
    scoring thread's forward was recorded by another thread's hooks."""
    import threading

    det = create_model("tiny-cnn", seed=0)
    xs = [model_input(det, batch=2, seed=s) for s in range(4)]
    want = [explain(det, x, ["gradcam", "layercam"]) for x in xs]
    got: dict[int, list[dict[str, torch.Tensor]]] = {i: [] for i in range(4)}

    def work(i: int) -> None:
        for _ in range(25):
            got[i].append({m: e.raw for m, e in explain(det, xs[i], ["gradcam", "layercam"]).items()})

    from fakelens.models.ensemble import predict_proba

    y = torch.rand(5, 3, *det.input_spec.size, generator=torch.Generator().manual_seed(9))
    scored = predict_proba(det, y)
    scores: list[torch.Tensor] = []

    explainers = [threading.Thread(target=work, args=(i,)) for i in range(4)]

    def score() -> None:  # scoring while others explain: its forward must not fire their hooks
        while any(t.is_alive() for t in explainers):
            scores.append(predict_proba(det, y))

    threads = [*explainers, threading.Thread(target=score)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert scores and all(torch.allclose(p, scored) for p in scores)
    for i in range(4):
        assert len(got[i]) == 25  # an exception in a thread ends its loop early
        for maps in got[i]:
            for m, raw in maps.items():
                torch.testing.assert_close(raw, want[i][m].raw)
    assert all(p.requires_grad for p in det.parameters()) and det.training is False


@pytest.mark.parametrize("scale", [1e-20, 1e-12, 1e12, 1e20])
def test_eigen_projection_is_scale_free(scale: float) -> None:
    """Activations of 1e±12 and beyond: the float32 Gram matrix had under- or overflowed into an all-zero
    map (or NaN); the projection scales with the activations and keeps its shape."""
    torch.manual_seed(0)
    x = torch.relu(torch.randn(2, 64, 7, 7))
    ref = first_component_projection(x)
    torch.testing.assert_close(first_component_projection(x * scale) / scale, ref, atol=1e-4, rtol=1e-3)


class _NotACam:
    def weights(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return grads.mean(dim=(2, 3))


class _NoGrads(GradientCAM):
    def weights(self, acts: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return acts.mean(dim=(2, 3))


class _NoFormula(CAMMethod):
    pass


class _WeightsOnABareMethod(CAMMethod):  # weights() is read only by a GradientCAM
    def weights(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return grads.mean(dim=(2, 3))


class _NeedsArguments(GradientCAM):
    def __init__(self, power: float) -> None:
        self.power = power

    def weights(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return grads.mean(dim=(2, 3)) ** self.power


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (_NotACam, "is not a subclass of fakelens.explain.CAMMethod"),
        (lambda acts, grads: acts, "is not a subclass"),
        (_NoGrads, r"weights\(\) must take \(self, acts, grads\), not weights\(self, acts\)"),
        (_NoFormula, "overrides neither combine"),
        (_WeightsOnABareMethod, "overrides neither combine"),
        (_NeedsArguments, "must be built without arguments"),
    ],
)
def test_register_cam_refuses_a_broken_class_in_one_line(cls: object, message: str) -> None:
    """A class that is no CAM, or whose formula cannot be called as the base class calls it, was registered
    and listed, then failed inside every explanation with a traceback (taking the other CAMs down)."""
    before = CAMS.names()
    with pytest.raises(TypeError, match=rf"CAM method 'test-broken' \(.*\).*{message}"):
        register_cam("test-broken")(cls)  # type: ignore[arg-type]
    assert CAMS.names() == before


def test_register_cam_accepts_both_seams() -> None:
    class Weights(GradientCAM):
        def weights(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
            return grads.mean(dim=(2, 3))

    class Combine(CAMMethod):
        uses_gradients = False

        def combine(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
            return acts.mean(1)

    try:
        for name, cls in (("test-weights", Weights), ("test-combine", Combine)):
            assert register_cam(name)(cls) is cls and cls.name == name
        det = create_model("tiny-cnn")
        out = explain(det, model_input(det, 2), ["test-weights", "test-combine"])
        assert all(e.raw.shape[0] == 2 for e in out.values())
    finally:
        CAMS._items.pop("test-weights", None)
        CAMS._items.pop("test-combine", None)
