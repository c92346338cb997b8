"""Where Quantus implements the same metric, our number must equal Quantus's on the same inputs.

Quantus is a test-only dependency, installed with ``pip install --no-deps quantus==0.6.0 cachetools`` (as
``.ci/run`` does): its own requirements pull ``opencv-python`` 5, which shadows ``opencv-python-headless``'s
``cv2``. Compared: pointing game, relevance mass accuracy, relevance rank accuracy, AUC (pixel
AUROC), pixel flipping (our deletion curve with a black baseline), ROAD's noisy linear imputation, and the
cascading model-parameter randomisation test (MPRT, Spearman and SSIM per layer).

Not compared, on purpose: Quantus' ROAD *metric* scores whether the argmax class survives removal and
ranks the colour channels of a pixel as separate features, while ROAD (Rong et al.) and we measure the change
of the explained confidence per removed pixel; the imputation underneath is compared instead.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

quantus = pytest.importorskip(
    "quantus", reason="Quantus is a test-only peer: pip install --no-deps quantus==0.6.0 cachetools"
)

from fakelens.explain.engine import explain  # noqa: E402
from fakelens.models.base import Detector  # noqa: E402
from fakelens.trust import metrics as M  # noqa: E402
from fakelens.trust.faithfulness import perturbation_curves, probability_fn, relevance_order  # noqa: E402
from fakelens.trust.randomisation import cascading_randomisation  # noqa: E402
from fakelens.trust.synthetic import blob_image  # noqa: E402

warnings.filterwarnings("ignore", module="quantus")


def _maps(n: int = 4, hw: tuple[int, int] = (16, 20), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.random((n, 1, *hw))  # continuous: no ties, so the arg-sorts agree
    s = np.zeros((n, 1, *hw))
    for i in range(n):
        y, x = rng.integers(0, hw[0] - 6), rng.integers(0, hw[1] - 6)
        s[i, 0, y : y + 6, x : x + 6] = 1
    a[1, 0, 5, 5] = 3.0  # one map with its peak well defined
    return a, s


def _kw() -> dict[str, object]:
    return {"disable_warnings": True, "display_progressbar": False}


def test_localisation_metrics_match_quantus() -> None:
    a, s = _maps()
    x = np.zeros((a.shape[0], 3, *a.shape[-2:]))
    y = np.zeros(a.shape[0], dtype=int)
    ta, ts = torch.from_numpy(a[:, 0]), torch.from_numpy(s[:, 0]).bool()
    common = {"model": None, "x_batch": x, "y_batch": y, "a_batch": a, "s_batch": s}
    pg = quantus.PointingGame(abs=False, normalise=False, **_kw())(**common)
    np.testing.assert_allclose(M.pointing_game(ta, ts, tolerance=0).numpy(), np.asarray(pg, dtype=float))
    mass = quantus.RelevanceMassAccuracy(abs=False, normalise=False, **_kw())(**common)
    np.testing.assert_allclose(M.relevance_mass_accuracy(ta, ts).numpy(), mass, rtol=1e-12)
    rank = quantus.RelevanceRankAccuracy(abs=False, normalise=False, **_kw())(**common)
    np.testing.assert_allclose(M.relevance_rank_accuracy(ta, ts).numpy(), rank, rtol=1e-12)
    auc = quantus.AUC(abs=False, normalise=False, **_kw())(**common)
    np.testing.assert_allclose(M.pixel_auroc(ta, ts).numpy(), auc, rtol=1e-12)


def test_auroc_with_ties_matches_quantus() -> None:
    a, s = _maps(seed=3)
    a = np.round(a * 4) / 4  # heavy ties: both use the trapezoidal ROC (Mann–Whitney with half credit)
    x = np.zeros((a.shape[0], 3, *a.shape[-2:]))
    auc = quantus.AUC(abs=False, normalise=False, **_kw())(
        model=None, x_batch=x, y_batch=np.zeros(a.shape[0], dtype=int), a_batch=a, s_batch=s
    )
    np.testing.assert_allclose(
        M.pixel_auroc(torch.from_numpy(a[:, 0]), torch.from_numpy(s[:, 0]).bool()).numpy(), auc
    )


def test_noisy_linear_imputation_matches_quantus() -> None:
    from quantus.functions.perturb_func import noisy_linear_imputation as q_impute

    rng = np.random.default_rng(0)
    img = rng.random((3, 18, 23))
    for p in (0.1, 0.5, 0.9):
        removed = rng.random((18, 23)) < p
        ours = M.noisy_linear_imputation(img, removed, noise=0.0)
        theirs = q_impute(img, np.flatnonzero(removed), noise=0.0)
        np.testing.assert_allclose(ours, theirs, atol=1e-12)


class _OnPixels(nn.Module):
    """The detector as a model of pixels in [0, 1] (Quantus perturbs the model's input directly)."""

    def __init__(self, det: Detector) -> None:
        super().__init__()
        self.det = det

    def forward(self, px: torch.Tensor) -> torch.Tensor:
        return self.det(self.det.input_spec.normalize(px))


def test_deletion_curve_matches_quantus_pixel_flipping(planted: Detector) -> None:
    # Quantus ranks the 3 colour entries of a pixel as tied features and asserts that a step divides H·W:
    # 12 steps of 64 pixels (192 features) on 24×32 keep whole pixels in every step
    imgs = torch.stack([blob_image((24, 32), seed=s)[0] for s in (0, 1)])
    imgs[:, :, 0, 0] = 0.0  # Quantus' "black" is the image minimum: make it black
    sal = torch.rand(2, 24, 32, generator=torch.Generator().manual_seed(0))
    steps, p = 12, 24 * 32
    valid = torch.ones(24, 32, dtype=torch.bool)
    fn = probability_fn(planted)
    ours = torch.stack(
        [
            perturbation_curves(
                fn, relevance_order(sal[i : i + 1], valid), imgs[i], torch.zeros_like(imgs[i]), steps
            )[0]
            for i in range(2)
        ]
    )
    pf = quantus.PixelFlipping(
        features_in_step=3 * p // steps, perturb_baseline="black", abs=False, normalise=False, **_kw()
    )
    theirs = pf(
        model=_OnPixels(planted).eval(),
        x_batch=imgs.numpy(),
        y_batch=np.ones(2, dtype=int),
        a_batch=sal[:, None].numpy(),
        device="cpu",
        softmax=True,
    )
    np.testing.assert_allclose(ours[:, 1:].numpy(), np.asarray(theirs), atol=1e-5)


def test_cascading_randomisation_matches_quantus_mprt(planted: Detector) -> None:
    from quantus.functions.similarity_func import correlation_spearman
    from quantus.functions.similarity_func import ssim as q_ssim

    imgs = torch.stack([blob_image((32, 32), seed=s)[0] for s in (0, 1, 2)])
    x = planted.input_spec.normalize(imgs)

    def explain_func(model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: object) -> np.ndarray:
        e = explain(model, torch.from_numpy(np.asarray(inputs)).float(), ["gradcam"])["gradcam"]  # type: ignore[arg-type]
        up = torch.nn.functional.interpolate(
            e.raw[:, None].float(), size=(32, 32), mode="bilinear", align_corners=False
        )
        # Quantus refuses maps that are all negative (a randomised head flips GradCAM's sign); a shift per map
        # leaves every rank, hence the Spearman correlation, unchanged
        up = up - up.amin(dim=(1, 2, 3), keepdim=True)
        return up.detach().double().numpy()

    ours = cascading_randomisation(planted, x, ["gradcam"], stages=None, seed=42)
    mprt = quantus.MPRT(
        similarity_func=correlation_spearman,
        layer_order="top_down",
        seed=42,
        abs=False,
        normalise=False,
        **_kw(),
    )
    theirs = mprt(
        model=planted,
        x_batch=x.numpy(),
        y_batch=np.ones(3, dtype=int),
        a_batch=None,
        explain_func=explain_func,
        device="cpu",
    )
    layers = [k for k in theirs if k != "original"]
    assert layers == [s.layer for s in ours]
    for st, name in zip(ours, layers, strict=True):
        np.testing.assert_allclose(st.scores["gradcam"]["spearman"].numpy(), theirs[name], atol=1e-6)
    # SSIM on the same pair of |maps| normalised by their maximum
    a = np.abs(explain_func(planted, x.numpy(), None)[:, 0])
    b = np.flip(a, axis=-1).copy()
    a, b = a / a.max(axis=(1, 2), keepdims=True), b / b.max(axis=(1, 2), keepdims=True)
    ref = q_ssim(a.reshape(3, -1).reshape(3, 32, 32), b, batched=True)
    np.testing.assert_allclose(M.ssim(torch.from_numpy(a), torch.from_numpy(b)).numpy(), ref, atol=1e-9)
