"""analyze_images: per-member verdicts, ensemble combination, heatmaps on the original grid, badges."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fakelens.analysis import analyze_images
from fakelens.errors import CheckpointError, UnknownNameError
from fakelens.models import Ensemble, create_model, load_detector
from fakelens.models import checkpoint as ckpt


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    sizes = [(120, 90), (64, 200)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]


def test_members_and_ensemble(images: list[Image.Image]) -> None:
    ens = Ensemble([create_model("tiny-cnn", seed=1), create_model("tiny-vit", seed=2)], weights=[3, 1])
    out = analyze_images(ens, images, ["gradcam", "rollout"], batch_size=1)
    assert len(out) == 2
    for img, a in zip(images, out, strict=True):
        assert (a.width, a.height) == img.size
        p = [m.fake_probability for m in a.models]
        assert a.fake_probability == pytest.approx(0.75 * p[0] + 0.25 * p[1], abs=1e-6)
        assert a.verdict == ("fake" if a.fake_probability >= 0.5 else "real")
        cnn, vit = a.models
        assert set(cnn.heatmaps) == {"gradcam"} and "rollout" in cnn.errors  # no attention in a CNN
        assert set(vit.heatmaps) == {"gradcam", "rollout"} and not vit.errors
        for m in a.models:
            for h in m.heatmaps.values():
                assert h.map.shape == (img.height, img.width) == h.valid.shape
                assert h.map.min() >= 0 and h.map.max() <= 1
                assert h.robustness is not None and h.robustness["grade"] in ("ok", "check")
        d = a.to_dict()
        assert d["models"][1]["heatmaps"]["rollout"]["robustness"]["views"]


def test_an_option_of_a_method_a_member_cannot_run_costs_only_that_method(
    images: list[Image.Image],
) -> None:
    """Options for rollout: the CNN, which cannot run rollout, still gets its Grad-CAM, and its error names
    the real reason (no attention), not "options given for a method not asked for"."""
    ens = Ensemble([create_model("tiny-cnn", seed=1), create_model("tiny-vit", seed=2)])
    [a] = analyze_images(
        ens, images[:1], ["gradcam", "rollout"], options={"rollout": {"residual": 0.3}}, robustness=False
    )
    cnn, vit = a.models
    assert set(cnn.heatmaps) == {"gradcam"} and set(cnn.errors) == {"rollout"}
    assert "not among the methods" not in cnn.errors["rollout"]
    assert set(vit.heatmaps) == {"gradcam", "rollout"}


def test_calibrated_members_are_shown_calibrated_and_judged_at_their_own_threshold(
    images: list[Image.Image],
) -> None:
    """Each member calibrated about its raw score of the first image: its shown p(fake) is the calibrated
    one, its verdict is taken at ½, and the JSON says so."""
    from fakelens.models import Calibration

    members = [create_model("tiny-cnn", seed=1), create_model("tiny-vit", seed=2)]
    raw = analyze_images(Ensemble(members), images, ["gradcam"], robustness=False)
    cals = [Calibration(raw[0].models[j].fake_probability, 3.0) for j in range(2)]
    ens = Ensemble(members, calibrations=cals, calibration=Calibration(0.5, 1.0))
    out = analyze_images(ens, images, ["gradcam"], robustness=False)
    for a, r in zip(out, raw, strict=True):
        assert a.calibrated and a.to_dict()["calibrated"] and a.threshold == 0.5
        for j, (m, mr) in enumerate(zip(a.models, r.models, strict=True)):
            want = cals[j](torch.tensor(mr.fake_probability)).item()
            assert m.fake_probability == pytest.approx(want, abs=1e-5) and m.threshold == 0.5
            assert m.verdict == ("fake" if want >= 0.5 else "real")
            assert m.to_dict()["threshold"] == 0.5


def test_single_detector_without_badges(images: list[Image.Image]) -> None:
    det = create_model("tiny-cnn")
    (a,) = analyze_images(det, images[:1], ["gradcam"], robustness=False)
    assert a.models[0].name == "tiny-cnn"
    assert a.fake_probability == pytest.approx(a.models[0].fake_probability)
    assert a.models[0].heatmaps["gradcam"].robustness is None


def test_unknown_method_raises(images: list[Image.Image]) -> None:
    with pytest.raises(UnknownNameError, match="gradcm"):
        analyze_images(create_model("tiny-cnn"), images[:1], ["gradcm"])


def test_default_missing_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(ckpt, "default_ensemble_path", lambda: tmp_path / "nothing")
    with pytest.raises(CheckpointError, match="default ensemble is not installed"):
        load_detector("default")


def test_api_mistakes_are_clear_errors_before_any_model_runs(images: list[Image.Image]) -> None:
    """What a notebook user gets wrong: one precise error naming it, not an AttributeError from inside."""
    from fakelens.errors import ConfigError

    det = create_model("tiny-cnn")
    one = images[0]
    cases: list[tuple[dict[str, object], type[Exception], str]] = [
        ({"images": np.asarray(one)}, TypeError, "list of PIL images, not ndarray"),
        ({"images": [np.asarray(one)]}, TypeError, "got ndarray"),
        ({"images": ["photo.jpg"]}, TypeError, "fakelens.io.load_image"),
        ({"model": "tiny-cnn"}, TypeError, "must be a Detector or an Ensemble, not str"),
        ({"device": "gpu"}, ConfigError, "unknown device 'gpu'"),
        ({"batch_size": 0}, ConfigError, "batch_size"),
        ({"methods": "gradcam,nosuch"}, UnknownNameError, "nosuch"),
        ({"options": {"gradcam": {"foo": 1}}}, ConfigError, "gradcam has no option 'foo'"),
        ({"methods": ["rise"], "options": {"rise": {"n_masks": "abc"}}}, ConfigError, "n_masks must be int"),
        ({"options": {"gradkam": {}}}, ConfigError, "not among the methods asked for"),
    ]
    for change, error, message in cases:
        kwargs: dict[str, object] = {"model": det, "images": [one], "methods": ["gradcam"], **change}
        with pytest.raises(error, match=message):
            analyze_images(kwargs.pop("model"), kwargs.pop("images"), robustness=False, **kwargs)  # type: ignore[arg-type]
    # a single image and a comma-separated string are what they look like, not letters
    (a,) = analyze_images(det, one, "gradcam,hirescam", robustness=False)  # type: ignore[arg-type]
    assert list(a.models[0].heatmaps) == ["gradcam", "hirescam"]
    assert analyze_images(det, [], robustness=False) == []  # nothing to do is no mistake


def test_a_method_failing_on_one_image_costs_only_its_heatmaps(images: list[Image.Image]) -> None:
    """A method that fails on the second image only, or returns maps of the wrong shape, is reported in the
    member's errors; the other methods' heatmaps and the verdicts stay."""
    from fakelens.explain import CAMS, GradientCAM, register_cam

    @register_cam("test-nan-on-second")
    class NanOnSecond(GradientCAM):
        def weights(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
            w = grads.mean(dim=(2, 3))
            return w * torch.tensor([1.0] + [float("nan")] * (len(w) - 1))[:, None]

    @register_cam("test-wrong-shape")
    class WrongShape(GradientCAM):
        def combine(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
            return acts  # (B, C, h, w), not (B, h, w)

    try:
        det = create_model("tiny-cnn")
        methods = ["gradcam", "test-nan-on-second", "test-wrong-shape"]
        out = analyze_images(det, images, methods, robustness=False, batch_size=2)
        for a in out:
            (m,) = a.models
            assert list(m.heatmaps) == ["gradcam"]
            assert "non-finite" in m.errors["test-nan-on-second"]
            assert "test-wrong-shape returned maps of shape" in m.errors["test-wrong-shape"]
    finally:
        CAMS._items.pop("test-nan-on-second", None)
        CAMS._items.pop("test-wrong-shape", None)


@pytest.mark.parametrize("error", [TypeError, AttributeError, ZeroDivisionError])
def test_a_method_raising_any_error_costs_only_its_heatmaps_and_names_the_error(
    images: list[Image.Image], error: type[Exception]
) -> None:
    """A plugin's bug (not a fakelens or torch error) took the built-in methods down with a traceback; it
    costs only its own maps now, reported with its type and message."""
    from fakelens.explain import CAMS, GradientCAM, register_cam

    @register_cam("test-buggy")
    class Buggy(GradientCAM):
        def weights(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
            raise error("a bug in the formula")

    try:
        out = analyze_images(create_model("tiny-cnn"), images, ["test-buggy", "gradcam"], robustness=False)
        for a in out:
            (m,) = a.models
            assert list(m.heatmaps) == ["gradcam"]
            assert m.errors == {"test-buggy": f"{error.__name__}: a bug in the formula"}
    finally:
        CAMS._items.pop("test-buggy", None)


def test_running_out_of_memory_is_not_one_method_s_failure(images: list[Image.Image]) -> None:
    from fakelens.explain import CAMS, GradientCAM, register_cam

    @register_cam("test-oom")
    class Oom(GradientCAM):
        def weights(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
            raise MemoryError

    try:
        with pytest.raises(MemoryError):
            analyze_images(create_model("tiny-cnn"), images[:1], ["test-oom", "gradcam"], robustness=False)
    finally:
        CAMS._items.pop("test-oom", None)


def test_an_ensemble_where_one_detector_is_needed_is_a_clear_type_error() -> None:
    from fakelens.explain import explain
    from fakelens.pipeline import explain_images
    from fakelens.trust import robustness_badge
    from fakelens.trust.runner import run_trust

    ens = Ensemble([create_model("tiny-cnn", seed=1), create_model("tiny-vit", seed=2)])
    x = torch.rand(1, 3, 64, 64)
    for call in (
        lambda: explain(ens, x),  # type: ignore[arg-type]
        lambda: explain_images(ens, [Image.new("RGB", (32, 32))]),  # type: ignore[arg-type]
        lambda: robustness_badge(ens, x[0], "gradcam"),  # type: ignore[arg-type]
        lambda: run_trust(ens, [], None),  # type: ignore[arg-type]
    ):
        with pytest.raises(TypeError, match=r"not an ensemble: pass one of its members.*tiny-cnn, tiny-vit"):
            call()
    det = create_model("tiny-cnn")
    with pytest.raises(ValueError, match=r"pixels in \[0, 1\]"):
        robustness_badge(det, x[0] * 255, "gradcam")
    with pytest.raises(ValueError, match=r"one prepared image \(3, H, W\)"):
        robustness_badge(det, x, "gradcam")


def test_results_print_shapes_not_tensor_dumps(images: list[Image.Image]) -> None:
    """What a notebook shows for an analysis: shapes and numbers in a line or two, not kilobytes of arrays."""
    from fakelens.pipeline import explain_images

    det = create_model("tiny-cnn")
    (a,) = analyze_images(det, images[:1], ["gradcam"], robustness=False)
    text = repr(a)
    assert len(text) < 1000 and "map=ndarray(120, 90) float32" in text and "verdict=" in text
    (r,) = explain_images(det, images[:1], ["gradcam"])
    assert len(repr(r)) < 1000 and "<Image RGB 90×120>" in repr(r)
    assert "raw=Tensor(1, " in repr(r.explanations["gradcam"])


def test_transparent_pixels_and_extra_frames_are_named_and_left_out_of_the_maps() -> None:
    """A half-transparent PNG: the models saw its transparent half as white, so the analysis says how much
    was transparent and its heatmaps leave that half out; a GIF says that only its first frame was read."""
    import io

    from fakelens.io import load_image
    from fakelens.report.reading import read_analysis

    rgba = np.zeros((48, 64, 4), np.uint8)
    rgba[..., :3] = np.random.default_rng(0).integers(0, 255, (48, 64, 3))
    rgba[:, 16:, 3] = 255  # the left quarter fully transparent
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    frames = [Image.new("RGB", (40, 40), c) for c in ("red", "green", "blue")]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    det = create_model("tiny-cnn")
    a, g = analyze_images(det, [load_image(buf.getvalue()), load_image(gif.getvalue())], ["gradcam"])
    assert a.transparent == pytest.approx(0.25) and a.frames == 1
    h = a.models[0].heatmaps["gradcam"]
    assert not h.valid[:, :16].any() and h.valid[:, 16:].all() and float(h.map[:, :16].max()) == 0.0
    assert float(h.map.max()) in (0.0, 1.0)  # still a share of its peak, on what is left
    assert a.to_dict()["transparent"] == pytest.approx(0.25)
    [direct] = analyze_images(det, [Image.fromarray(rgba, "RGBA")], ["gradcam"])  # not via load_image
    assert direct.transparent == pytest.approx(0.25)
    assert (direct.models[0].heatmaps["gradcam"].valid == h.valid).all()
    assert "25 % of the image is fully transparent" in str(read_analysis(a))
    assert g.frames == 3 and g.transparent == 0.0 and g.to_dict()["frames"] == 3
    assert "holds 3 frames or pages; only the first was analysed" in str(read_analysis(g))
    from fakelens.report import render_report

    html = render_report(
        [a, g], [load_image(buf.getvalue()), load_image(gif.getvalue())], ["a", "g"], faces=False
    )
    assert "transparent 25 %</span>" in html and "frame 1 of 3</span>" in html


def test_a_uniform_image_is_blank_and_the_reading_says_its_verdict_means_nothing() -> None:
    """A plain grey square read "fake 0.58" with no warning: a uniform image has nothing to judge."""
    from fakelens.report import render_report
    from fakelens.report.reading import read_analysis

    rng = np.random.default_rng(0)
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[..., :3] = rng.integers(0, 255, (40, 60, 3))  # texture only where it is transparent
    rgba[:, :30] = (90, 90, 90, 255)
    images = [
        Image.new("RGB", (64, 64), (128, 128, 128)),
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)),
        Image.fromarray(rgba, "RGBA"),
    ]
    grey, noise, half = analyze_images(create_model("tiny-cnn"), images, ["gradcam"], robustness=False)
    assert grey.blank and grey.texture == 0.0 and grey.to_dict()["blank"] is True
    # nothing to judge: the JSON keeps the scores but gives no verdict, as the table, report and scan do
    d = grey.to_dict()
    assert d["verdict"] is None and all(m["verdict"] is None for m in d["models"]) and d["score"] is not None
    assert noise.to_dict()["verdict"] in {"fake", "real"}
    assert not noise.blank and noise.texture > 40 and noise.to_dict()["blank"] is False
    assert half.blank  # the opaque half is uniform; the transparent half's colours were never seen
    assert str(read_analysis(grey)[0]).startswith("The image is blank (its grey levels vary by 0.0 of 255)")
    html = render_report([grey], [images[0]], ["grey.png"], faces=False)
    assert "a blank image: nothing to judge" in html and "banner none hedged" in html
    assert ">NO VERDICT<" in html


def test_badges_batched_across_images_are_those_image_by_image(
    images: list[Image.Image], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a GPU the badge views of several images go as one batch (badge_batch); the badges do not change."""
    import fakelens.analysis as analysis

    ens = Ensemble([create_model("tiny-cnn", seed=1), create_model("tiny-vit", seed=2)])
    one = analyze_images(ens, images, ["gradcam", "rollout"], batch_size=2)
    monkeypatch.setattr(analysis, "badge_batch", lambda device: 2)
    two = analyze_images(ens, images, ["gradcam", "rollout"], batch_size=2)
    for a, b in zip(one, two, strict=True):
        for ma, mb in zip(a.models, b.models, strict=True):
            for m, h in ma.heatmaps.items():
                ra, rb = h.robustness or {}, mb.heatmaps[m].robustness or {}
                assert ra.keys() == rb.keys() and ra["grade"] == rb["grade"]
                assert ra["equivariance"] == pytest.approx(rb["equivariance"], abs=2e-4)
                assert ra["border_mass"] == pytest.approx(rb["border_mass"], abs=2e-4)
