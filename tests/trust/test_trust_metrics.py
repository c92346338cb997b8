"""The metric formulas: against scipy/scikit-learn, golden values, bounds and edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from fakelens.trust import metrics as M
from fakelens.trust.faithfulness import deletion_insertion, relevance_order, road

small = arrays(np.float64, (5, 6), elements=st.integers(0, 4).map(float))  # many ties on purpose


@given(a=small, b=small, m=arrays(np.bool_, (5, 6)))
def test_spearman_and_auroc_match_scipy_with_ties_and_masks(
    a: np.ndarray, b: np.ndarray, m: np.ndarray
) -> None:
    ta, tb, tm = torch.from_numpy(a)[None], torch.from_numpy(b)[None], torch.from_numpy(m)[None]
    ours = float(M.masked_spearman(ta, tb, tm)[0])
    va, vb = a[m], b[m]
    if va.size > 1 and np.ptp(va) > 0 and np.ptp(vb) > 0:
        assert ours == pytest.approx(spearmanr(va, vb)[0], abs=1e-9)
    else:
        assert ours == 0.0
    g = b > 2
    auc = float(M.pixel_auroc(ta, torch.from_numpy(g)[None], tm)[0])
    gv = g[m]
    if gv.any() and (~gv).any():
        assert auc == pytest.approx(roc_auc_score(gv, va), abs=1e-9)
    else:
        assert math.isnan(auc)


@given(
    a=arrays(np.float64, (6, 7), elements=st.floats(0, 1)),
    b=arrays(np.float64, (6, 7), elements=st.floats(0, 1)),
)
def test_bounds(a: np.ndarray, b: np.ndarray) -> None:
    ta, tb = torch.from_numpy(a)[None], torch.from_numpy(b)[None]
    g = tb > 0.5
    for v in (
        M.masked_cosine(ta, tb),
        M.top_fraction_iou(ta, tb),
        M.border_mass(ta, g),
        M.corner_mass(ta, (2, 2)),
        M.energy_pointing_game(ta, g.double()),
        M.relevance_mass_accuracy(ta, g),
        M.relevance_rank_accuracy(ta, g),
        M.flatness(ta)["entropy"],
    ):
        x = float(v[0])
        assert math.isnan(x) or -1e-9 <= x <= 1 + 1e-9
    assert -1 - 1e-9 <= float(M.masked_spearman(ta, tb)[0]) <= 1 + 1e-9


def test_equivariance_of_identical_and_unrelated_maps() -> None:
    s = torch.zeros(1, 20, 20)
    s[0, 5:9, 5:9] = 1.0
    s[0, 6, 6] = 2.0
    other = torch.zeros(1, 20, 20)
    other[0, 14:18, 14:18] = 1.0
    mask = torch.ones(1, 20, 20, dtype=torch.bool)
    same = M.equivariance(s, s + 1e-9 * torch.rand(1, 20, 20) * s, mask)
    assert all(float(v[0]) == pytest.approx(1.0) for v in same.values())
    diff = M.equivariance(s, other, mask)
    assert (
        float(diff["cosine"][0]) == 0.0 and float(diff["iou"][0]) == 0.0 and float(diff["spearman"][0]) < 0.1
    )
    zero = M.equivariance(s, torch.zeros(1, 20, 20), mask)  # a vanished map cannot move with the image
    assert all(float(v[0]) == 0.0 for v in zero.values())


def test_border_and_fill() -> None:
    valid = torch.ones(1, 10, 10, dtype=torch.bool)
    valid[0, :, :3] = False
    uniform = torch.ones(1, 10, 10)
    assert float(M.fill_fraction(valid)[0]) == pytest.approx(0.3)
    assert float(M.border_mass(uniform, valid)[0]) == pytest.approx(0.3)  # uniform map: mass = area
    on_fill = torch.zeros(1, 10, 10)
    on_fill[0, 4, 1] = 1
    assert float(M.border_mass(on_fill, valid)[0]) == 1.0
    assert float(M.border_mass(torch.zeros(1, 10, 10), valid)[0]) == 0.0


def test_corners() -> None:
    s = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.1
    s[0, 1, 14] = 5.0  # top-right corner cell of 4x4
    s[1, 8, 8] = 5.0
    s[2] = 0.0
    flags = M.argmax_in_corner(s, (4, 4))
    assert flags.tolist() == [True, False, False]  # a map with no positive value has no peak
    plateau = torch.zeros(1, 16, 16)
    plateau[0, :, :] = 1.0  # every pixel is a maximum: most are not in a corner
    assert not bool(M.argmax_in_corner(plateau, (4, 4))[0])
    assert M.corner_chance((16, 16), (4, 4)) == pytest.approx(4 * 16 / 256)
    assert float(M.corner_mass(plateau, (4, 4))[0]) == pytest.approx(0.25)


def test_flatness() -> None:
    peaked = torch.zeros(1, 8, 8)
    peaked[0, 3, 3] = 1
    f = M.flatness(torch.cat([peaked, torch.full((1, 8, 8), 3.0), torch.zeros(1, 8, 8), -peaked]))
    assert f["flat"].tolist() == [0.0, 1.0, 1.0, 1.0]
    assert float(f["entropy"][0]) == 0.0 and float(f["peak_to_mean"][0]) == 64.0


def test_localisation_golden() -> None:
    s = torch.zeros(1, 50, 50)
    s[0, 10, 10] = 1.0
    s[0, 30:40, 30:40] = 0.5
    g = torch.zeros(1, 50, 50, dtype=torch.bool)
    g[0, 20:24, 20:24] = True  # the peak is ~14 px from the mask
    assert float(M.pointing_game(s, g, tolerance=15)[0]) == 1.0
    assert float(M.pointing_game(s, g, tolerance=5)[0]) == 0.0
    assert math.isnan(float(M.pointing_game(s, torch.zeros_like(g))[0]))
    # ties: the share of the tied maxima that hit, wherever the mask sits (not the first in row-major order)
    two = torch.zeros(1, 50, 50)
    two[0, 5, 5] = two[0, 45, 45] = 1.0
    for corner in ((0, 10), (40, 50)):
        gc = torch.zeros(1, 50, 50, dtype=torch.bool)
        gc[0, corner[0] : corner[1], corner[0] : corner[1]] = True
        assert float(M.pointing_game(two, gc, tolerance=2)[0]) == 0.5
    g2 = torch.zeros(1, 50, 50, dtype=torch.bool)
    g2[0, 30:40, 30:40] = True
    assert float(M.relevance_mass_accuracy(s, g2)[0]) == pytest.approx(50 / 51)
    assert float(M.relevance_rank_accuracy(s, g2)[0]) == pytest.approx(99 / 100)
    assert float(M.energy_pointing_game(s, g2.double())[0]) == pytest.approx(50 / 51)
    assert float(M.pixel_auroc(s, g2)[0]) > 0.99
    seam = M.seam_target(torch.tensor([0.0, 0.5, 1.0]))
    assert seam.tolist() == [0.0, 1.0, 0.0]


def test_imputation_reproduces_linear_ramps_and_is_seeded() -> None:
    h, w = 12, 14
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([0.02 * yy + 0.01 * xx, 0.5 + 0.0 * yy, 0.03 * xx])
    rem = np.zeros((h, w), dtype=bool)
    rem[3:9, 4:10] = True  # an interior hole: the weighted mean of symmetric neighbours is exact on a plane
    out = M.noisy_linear_imputation(img, rem, noise=0.0)
    np.testing.assert_allclose(out, img, atol=1e-12)
    a = M.noisy_linear_imputation(img, rem, noise=0.01, rng=np.random.default_rng(3))
    b = M.noisy_linear_imputation(img, rem, noise=0.01, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert np.array_equal(a[:, ~rem], img[:, ~rem]) and 0.003 < np.std(a[:, rem] - img[:, rem]) < 0.02
    with pytest.raises(ValueError):
        M.noisy_linear_imputation(img, np.ones((h, w), dtype=bool))


def test_imputation_ignores_letterbox_padding() -> None:
    """A flat 0.8 image behind a black 4-px bar: pixels removed next to the bar are imputed from the image
    (0.8), not pulled towards the padding (0.24–0.69 before); a hole cut off from every known pixel gets the
    known pixels' mean."""
    h, w = 10, 16
    img = np.full((3, h, w), 0.8)
    img[:, :, :4] = 0.0  # letterbox
    known = np.ones((h, w), dtype=bool)
    known[:, :4] = False
    rem = np.zeros((h, w), dtype=bool)
    rem[:, 4:8] = True
    out = M.noisy_linear_imputation(img, rem, noise=0.0, known=known)
    np.testing.assert_allclose(out[:, rem], 0.8, atol=1e-6)
    assert out[:, :, :4].max() == 0.0  # the padding itself is left alone
    island = np.zeros((h, w), dtype=bool)
    island[:, 4:] = True  # every known pixel removed but one column…
    island[:, -1] = False
    island_known = known.copy()
    island_known[:, 8] = False  # …and the removed part split off from it by an unknown column
    out = M.noisy_linear_imputation(img, island & island_known, noise=0.0, known=island_known)
    assert np.isfinite(out).all() and np.allclose(out[:, :, 4:8], 0.8, atol=1e-6)


def _region_score(pixels: torch.Tensor) -> torch.Tensor:
    """A toy 'detector': mean brightness of the top-left quarter."""
    return pixels[:, :, :8, :8].mean(dim=(1, 2, 3)).double()


def _texture_score(pixels: torch.Tensor) -> torch.Tensor:
    """A toy artifact detector: texture (std) of the top-left quarter; imputation smooths it."""
    return pixels[:, :, :8, :8].flatten(1).std(1).double()


def test_faithfulness_orders_a_perfect_map_above_its_reverse() -> None:
    x = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.5
    good = torch.zeros(16, 16)
    good[:8, :8] = 1.0
    sal = torch.stack([good, 1 - good])
    valid = torch.ones(16, 16, dtype=torch.bool)
    di = deletion_insertion(_region_score, x, sal, valid, steps=8)
    assert float(di["deletion_black"][0]) < float(di["deletion_black"][1])
    assert float(di["insertion_black"][0]) > float(di["insertion_black"][1])
    assert di["curve_deletion_black"][0, 0] == pytest.approx(float(_region_score(x[None])[0]))
    assert float(di["curve_deletion_black"][0, -1]) == 0.0
    rd = road(_texture_score, x, sal, valid, percentages=(20, 50, 80), noise=0.0)
    assert float(rd["combined"][0]) > 0 > float(rd["combined"][1])
    # with noise, a map scores the same alone as beside others: every map meets the same noise
    pair = road(_texture_score, x, sal, valid, percentages=(20, 50), noise=0.05)
    alone = road(_texture_score, x, sal[1:], valid, percentages=(20, 50), noise=0.05)
    torch.testing.assert_close(pair["curve_morf"][1], alone["curve_morf"][0])
    twice = road(_texture_score, x, torch.stack([good, good]), valid, percentages=(20, 50), noise=0.05)
    assert float(twice["combined"][0]) == float(twice["combined"][1])
    order = relevance_order(sal, valid)
    assert set(order[0, :64].tolist()) == {i * 16 + j for i in range(8) for j in range(8)}


def test_relevance_order_skips_invalid_pixels_and_breaks_ties_randomly() -> None:
    sal = torch.zeros(1, 8, 8)
    valid = torch.ones(8, 8, dtype=torch.bool)
    valid[:, :2] = False
    o = relevance_order(sal, valid, seed=1)
    assert o.shape == (1, 48) and all(int(i) % 8 >= 2 for i in o[0])
    assert o[0, :6].tolist() != sorted(o[0, :6].tolist()) or o[0, :6].tolist() != list(range(2, 8))


def test_ssim() -> None:
    a = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(1))
    assert M.ssim(a, a).tolist() == pytest.approx([1.0, 1.0])
    assert float(M.ssim(a[:1], torch.rand(1, 16, 16))[0]) < 0.5


def test_relevance_rank_accuracy_does_not_reward_a_flat_map_for_where_g_lies() -> None:
    flat = torch.zeros(1, 8, 8)
    top, bottom = torch.zeros(1, 8, 8, dtype=torch.bool), torch.zeros(1, 8, 8, dtype=torch.bool)
    top[0, 0], bottom[0, -1] = True, True
    assert float(M.relevance_rank_accuracy(flat, top)[0]) == pytest.approx(8 / 64)
    assert float(M.relevance_rank_accuracy(flat, bottom)[0]) == pytest.approx(8 / 64)
    # a tie only at the K-th value: 6 pixels above it in G, 2 places left for 4 tied pixels, 1 of them in G
    s = torch.zeros(1, 8, 8)
    s[0, 0, :6], s[0, 1, :4] = 2.0, 1.0
    g = top.clone()
    g[0, 0, 6:], g[0, 1, 0] = False, True
    g[0, 2, :2] = True  # K = 9: 6 above, 3 places among the 4 ties (1 in G), the zeros never reached
    assert float(M.relevance_rank_accuracy(s, g)[0]) == pytest.approx((6 + 3 * 1 / 4) / 9)
    nan = torch.full((1, 8, 8), math.nan)
    assert float(M.relevance_rank_accuracy(nan, top)[0]) == pytest.approx(8 / 64)


def test_ssim_counts_only_windows_on_valid_pixels() -> None:
    """Padding that is 0 in both maps is not similarity: unrelated maps stay unrelated however much of the
    grid is padding (it read 0.87 with a quarter of the grid valid), and tiny maps are one window."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 32, 32, generator=g), torch.rand(2, 32, 32, generator=g)
    valid = torch.zeros(2, 32, 32, dtype=torch.bool)
    valid[..., :12] = True
    padded = M.ssim(a * valid, b * valid, valid=valid)
    assert padded.tolist() == pytest.approx(M.ssim(a[..., :12], b[..., :12]).tolist(), abs=1e-9)
    assert padded.max() < 0.2 and float(M.ssim(a * valid, b * valid).min()) > 0.5  # unmasked, inflated
    assert M.ssim(a[:, :1, :1], a[:, :1, :1]).tolist() == pytest.approx([1.0, 1.0])
    assert M.ssim(a[:, :2, :2], b[:, :2, :2]).shape == (2,)


def test_gaussian_blur_of_a_one_pixel_side_is_the_image() -> None:
    x = torch.rand(1, 3, 1, 9)
    assert torch.equal(M.gaussian_blur(x, 5.0), x)
    assert M.gaussian_blur(torch.rand(1, 3, 2, 2), 5.0).shape == (1, 3, 2, 2)


def test_trapezoid_auc_by_hand() -> None:
    """Two steps of ½: (1 + 1)/2 · ½ + (1 + 0)/2 · ½."""
    assert float(M.trapezoid_auc(torch.tensor([[1.0, 1.0, 0.0]]))[0]) == 0.75


def test_perturbation_steps_replace_a_rounded_up_share() -> None:
    """Step k of 4 replaces ⌈k · 10/4⌉ of 10 pixels (the score counts replaced pixels)."""
    from fakelens.trust.faithfulness import perturbation_curves

    def replaced(px: torch.Tensor) -> torch.Tensor:
        return px.flatten(1).sum(1).double() / 3

    curve = perturbation_curves(
        replaced, torch.arange(10)[None], torch.zeros(3, 2, 5), torch.ones(3, 2, 5), 4
    )
    assert curve[0].tolist() == [0, 3, 5, 8, 10]


def test_road_combined_is_half_the_gap_between_its_orders() -> None:
    """combined = mean_p (LeRF − MoRF)/2 = (AUC_MoRF − AUC_LeRF)/2, as documented."""
    x = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.5
    good = torch.zeros(16, 16)
    good[:8, :8] = 1.0

    def texture(p: torch.Tensor) -> torch.Tensor:
        return p[:, :, :8, :8].flatten(1).std(1).double()

    rd = road(
        texture, x, good[None], torch.ones(16, 16, dtype=torch.bool), percentages=(20, 50, 80), noise=0.0
    )
    torch.testing.assert_close(rd["combined"], ((rd["curve_lerf"] - rd["curve_morf"]) / 2).mean(1))
    torch.testing.assert_close(rd["combined"], (rd["morf"] - rd["lerf"]) / 2)


def test_localisation_and_border_metrics_on_signed_maps() -> None:
    """Relevance mass is a share of S⁺, the energy pointing game min–max scales S first, border mass is
    a share of the positive mass: negative evidence and an offset must not change them."""
    s = torch.zeros(1, 4, 4)
    s[0, 0, 0], s[0, 3, 3] = 1.0, -3.0
    g = torch.zeros(1, 4, 4, dtype=torch.bool)
    g[0, 0, 0] = True
    assert float(M.relevance_mass_accuracy(s, g)[0]) == 1.0
    s = torch.full((1, 4, 4), 1.0)
    s[0, 0, 0] = 2.0
    assert float(M.energy_pointing_game(s, g.float())[0]) == 1.0  # one-hot after min–max
    valid = torch.ones(1, 4, 4, dtype=torch.bool)
    valid[0, :, 0] = False
    s = torch.zeros(1, 4, 4)
    s[0, 0, 0], s[0, 1, 1], s[0, 2, 2] = 1.0, 1.0, -5.0
    assert float(M.border_mass(s, valid)[0]) == 0.5


def test_corner_cells_follow_a_rectangular_cell() -> None:
    """Four 1 × 3 corner cells of an 8 × 8 map hold 12 of its 64 pixels."""
    assert float(M.corner_mass(torch.ones(1, 8, 8), (1, 3))[0]) == pytest.approx(12 / 64)
    assert M.corner_chance((8, 8), (1, 3)) == pytest.approx(12 / 64)


def test_masked_cosine_ignores_what_the_mask_leaves_out() -> None:
    a, b = torch.tensor([[[1.0, 0, 0]]]), torch.tensor([[[1.0, 0, 3]]])
    assert float(M.masked_cosine(a, b, torch.tensor([[[True, True, False]]]))[0]) == pytest.approx(1.0)
