r"""The formulas of ``docs/metrics.md`` as small batched torch functions (plus ROAD's imputation in scipy).

Conventions: maps ``S`` are ``(N, H, W)`` (or ``(H, W)``) non-negative saliency on one pixel grid unless a
function says *signed*; masks are bool of the same shape; every function returns one value per map
``(N,)``, computed on the maps' device in float64 where sums over many pixels meet. A value that is
mathematically undefined for a map with no mass (a cosine of a zero vector, a correlation of a constant)
is reported as **0**: a map that vanishes cannot move with the image nor point at anything.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import spsolve
from torch import Tensor

__all__ = [
    "argmax_in_corner",
    "average_ranks",
    "border_mass",
    "corner_cells",
    "corner_chance",
    "corner_mass",
    "energy_pointing_game",
    "equivariance",
    "fill_fraction",
    "flatness",
    "gaussian_blur",
    "masked_cosine",
    "masked_spearman",
    "noisy_linear_imputation",
    "numerical_zero",
    "pixel_auroc",
    "pointing_game",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "seam_target",
    "ssim",
    "top_fraction_iou",
    "trapezoid_auc",
]

_EPS = 1e-30


def _flat(x: Tensor) -> Tensor:
    """``(H, W)`` or ``(N, H, W)`` → ``(N, H·W)``."""
    if x.dim() == 2:
        x = x[None]
    return x.reshape(x.shape[0], -1)


def _mask_like(mask: Tensor | None, s: Tensor) -> Tensor:
    if mask is None:
        return torch.ones_like(s, dtype=torch.bool)
    return _flat(mask).to(device=s.device, dtype=torch.bool).expand_as(s)


# ------------------------------------------------------------------------------------------ equivariance


def masked_cosine(a: Tensor, b: Tensor, mask: Tensor | None = None) -> Tensor:
    r"""Cosine similarity of ``a`` and ``b`` on the pixels of ``mask``: ``⟨a, b⟩_V / (‖a‖_V ‖b‖_V)``; 0 if
    either restricted map is zero."""
    fa, fb = _flat(a).double(), _flat(b).double()
    m = _mask_like(mask, fa)
    fa, fb = fa * m, fb * m
    na, nb = fa.norm(dim=1), fb.norm(dim=1)
    cos = (fa * fb).sum(1) / (na * nb).clamp_min(_EPS)
    return torch.where((na > 0) & (nb > 0), cos, torch.zeros_like(cos))


def average_ranks(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """1-based ranks of each row of ``x (N, P)`` among its ``mask``-ed entries, ties sharing their average
    rank (scipy's ``rankdata(method="average")``); entries outside the mask get 0."""
    if x.dim() != 2:
        raise ValueError(f"average_ranks takes (N, P) rows, got {tuple(x.shape)}")
    fx = torch.nan_to_num(x if x.is_floating_point() else x.double())  # sorted in its own precision
    m = torch.ones_like(fx, dtype=torch.bool) if mask is None else mask.to(fx.device).bool().expand_as(fx)
    xv = fx.masked_fill(~m, math.inf)
    srt, order = xv.sort(dim=1)
    n, p = srt.shape
    new = torch.ones_like(srt, dtype=torch.bool)
    new[:, 1:] = srt[:, 1:] != srt[:, :-1]
    group = new.long().cumsum(1) - 1  # tie-group id of each sorted position
    pos = torch.arange(p, device=fx.device).expand(n, p)
    first = torch.full((n, p), p, device=fx.device, dtype=torch.long).scatter_reduce(1, group, pos, "amin")
    last = torch.zeros((n, p), device=fx.device, dtype=torch.long).scatter_reduce(1, group, pos, "amax")
    avg = (
        first.gather(1, group) + last.gather(1, group)
    ).double() / 2 + 1  # 1-based average rank, sorted order
    ranks = torch.empty_like(avg).scatter_(1, order, avg)
    return ranks * m


def _masked_pearson(a: Tensor, b: Tensor, m: Tensor) -> Tensor:
    n = m.sum(1).clamp_min(1)
    ma = (a * m).sum(1, keepdim=True) / n[:, None]
    mb = (b * m).sum(1, keepdim=True) / n[:, None]
    ca, cb = (a - ma) * m, (b - mb) * m
    va, vb = (ca * ca).sum(1), (cb * cb).sum(1)
    r = (ca * cb).sum(1) / (va * vb).sqrt().clamp_min(_EPS)
    return torch.where((va > 0) & (vb > 0), r, torch.zeros_like(r))


def masked_spearman(a: Tensor, b: Tensor, mask: Tensor | None = None) -> Tensor:
    r"""Spearman rank correlation on the pixels of ``mask``: Pearson's r of the average ranks (ties handled
    as in ``scipy.stats.spearmanr``); 0 if either is constant there."""
    fa, fb = _flat(a), _flat(b)
    m = _mask_like(mask, fa)
    return _masked_pearson(average_ranks(fa, m), average_ranks(fb, m), m.double())


def _top_set(s: Tensor, m: Tensor, fraction: float) -> Tensor:
    """Pixels at or above the ``ceil(fraction·n)``-th largest valid value, and positive."""
    n = m.sum(1)
    k = torch.ceil(fraction * n.double()).long().clamp(min=1, max=s.shape[1])
    top = s.masked_fill(~m, -math.inf).topk(int(k.max()), dim=1).values  # a partial sort
    kth = top.gather(1, (k - 1)[:, None])
    return (s >= kth) & (s > 0) & m


def top_fraction_iou(a: Tensor, b: Tensor, mask: Tensor | None = None, fraction: float = 0.1) -> Tensor:
    r"""IoU of the top-``fraction`` pixels of ``a`` and of ``b`` among the valid ones.

    The top set of a map is its pixels at or above its ``⌈fraction·|V|⌉``-th largest value *and positive*
    (ties at the threshold are kept together; zero pixels are never "top"): a map with little positive
    support has a small top set, not one padded with arbitrary zeros. 0 when both sets are empty.
    """
    fa, fb = _flat(a), _flat(b)
    m = _mask_like(mask, fa)
    ta, tb = _top_set(fa, m, fraction), _top_set(fb, m, fraction)
    inter = (ta & tb).sum(1).double()
    union = (ta | tb).sum(1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.zeros_like(inter))


def numerical_zero(x: Tensor, rel: float = 1e-6) -> Tensor:
    """Set entries with ``|x| ≤ rel·max|x|`` (per map) to exactly 0.

    Bilinear resampling turns the exact zeros of a ReLU'd map next to its support into values of order
    1e-8; ranks would then order what are ties, and a map compared with its own identity warp would get a
    Spearman correlation below 1.
    """
    f = _flat(x)
    mx = f.abs().amax(1, keepdim=True)
    return f.masked_fill(f.abs() <= rel * mx, 0.0).view_as(x)


def equivariance(reference: Tensor, back: Tensor, mask: Tensor, fraction: float = 0.1) -> dict[str, Tensor]:
    r"""Equivariance of maps under transforms (Crabbé & van der Schaar, NeurIPS 2023, with borders).

    ``reference`` ``S(x)`` and ``back`` ``T⁻¹(S(Tx))`` (both ``(N, H, W)`` on the reference grid; reference
    may be ``(1, H, W)`` and broadcast) are compared on ``mask``, the pixels valid in both:
    ``cosine``, ``spearman`` and ``iou`` of the top-10 % pixels. Values below 1e-6 of a map's maximum
    count as zero (:func:`numerical_zero`).
    """
    back = numerical_zero(back)
    ref = numerical_zero(reference)
    ref = ref.expand_as(back) if ref.shape[0] == 1 else ref
    return {
        "cosine": masked_cosine(ref, back, mask),
        "spearman": masked_spearman(ref, back, mask),
        "iou": top_fraction_iou(ref, back, mask, fraction),
    }


# ------------------------------------------------------------------------------------------ border, corners


def fill_fraction(valid: Tensor) -> Tensor:
    r"""The fill's area fraction ``|V_Tᶜ| / N`` of each ``(N, H, W)`` valid mask."""
    return 1.0 - _flat(valid).double().mean(1)


def border_mass(s: Tensor, valid: Tensor) -> Tensor:
    r"""``Σ_{p∉V_T} S_p / Σ_p S_p``: the share of a view's map on its fill (0 for a map with no mass).

    Compare with :func:`fill_fraction`: a method that puts more mass on the black fill than its area is
    leaking (the map reads the fill, not the image).
    """
    fs = _flat(s).double().clamp_min(0)
    out = (fs * ~_mask_like(valid, fs)).sum(1)
    total = fs.sum(1)
    return torch.where(total > 0, out / total.clamp_min(_EPS), torch.zeros_like(total))


def corner_cells(
    hw: tuple[int, int], cell: tuple[int, int], device: torch.device | str | None = None
) -> Tensor:
    """``(H, W)`` bool: the four ``cell``-sized corner cells of the grid (cells never overlap: each is at most
    half the grid)."""
    h, w = hw
    ch, cw = max(1, min(cell[0], h // 2)), max(1, min(cell[1], w // 2))
    m = torch.zeros(h, w, dtype=torch.bool, device=device)
    m[:ch, :cw] = m[:ch, -cw:] = m[-ch:, :cw] = m[-ch:, -cw:] = True
    return m


def corner_chance(hw: tuple[int, int], cell: tuple[int, int]) -> float:
    """The corner-argmax rate of a map whose peak falls anywhere with equal probability: ``4·k_h·k_w / N``."""
    return float(corner_cells(hw, cell).double().mean())


def corner_mass(s: Tensor, cell: tuple[int, int]) -> Tensor:
    """Share of each map's mass in the four ``cell``-sized corner cells (``cell`` = one feature stride)."""
    fs = _flat(s).double().clamp_min(0)
    c = corner_cells(tuple(s.shape[-2:]), cell, s.device).flatten()  # type: ignore[arg-type]
    total = fs.sum(1)
    return torch.where(total > 0, (fs * c).sum(1) / total.clamp_min(_EPS), torch.zeros_like(total))


def argmax_in_corner(s: Tensor, cell: tuple[int, int]) -> Tensor:
    """Whether each map's peak lies in a corner cell (bool ``(N,)``).

    With several pixels at the maximum (a saturated plateau), the peak is in a corner when most of them
    are; a map with no positive value has no peak (False).
    """
    fs = _flat(s).double()
    c = corner_cells(tuple(s.shape[-2:]), cell, s.device).flatten()  # type: ignore[arg-type]
    mx = fs.amax(1, keepdim=True)
    at_max = fs >= mx
    share = (at_max & c).sum(1).double() / at_max.sum(1).clamp_min(1)
    return (share > 0.5) & (mx[:, 0] > 0)


def flatness(raw: Tensor) -> dict[str, Tensor]:
    r"""How flat a raw (signed, un-normalised) map is: ``range = max − min``;
    ``peak_to_mean = max S⁺ / mean S⁺``; ``entropy = −Σ p log p / log N`` of ``p = S⁺/ΣS⁺`` (1 = flat);
    ``flat`` (1.0/0.0) when the map has no positive value, ``entropy > 0.995`` or ``range ≤ 1e-6·max|S|``:
    such a map is reported, not stretched."""
    f = _flat(raw).double()
    n = f.shape[1]
    pos = f.clamp_min(0)
    total = pos.sum(1)
    p = pos / total.clamp_min(_EPS)[:, None]
    ent = -(p * torch.log(p.clamp_min(_EPS))).sum(1) / math.log(max(n, 2))
    ent = torch.where(total > 0, ent, torch.ones_like(ent))
    mx, mn = f.amax(1), f.amin(1)
    rng = mx - mn
    ptm = pos.amax(1) / (total / n).clamp_min(_EPS)
    flat = (mx <= 0) | (ent > 0.995) | (rng <= 1e-6 * torch.maximum(mx.abs(), mn.abs()))
    return {
        "range": rng,
        "peak_to_mean": torch.where(total > 0, ptm, torch.zeros_like(ptm)),
        "entropy": ent,
        "flat": flat.double(),
    }


# ------------------------------------------------------------------------------------------ localisation


def pointing_game(s: Tensor, g: Tensor, valid: Tensor | None = None, tolerance: float = 15.0) -> Tensor:
    r"""Pointing game (Zhang et al., ECCV 2016): 1 if ``argmax S`` (over valid pixels) lies within
    ``tolerance`` pixels of the mask ``G``, else 0; NaN where ``G`` is empty. A map with no positive value
    points nowhere (0). Ties: the share of the tied maxima that hit — the expected hit of a random tie-break,
    so the score does not depend on where the mask sits (a flat map scores the share of the image near G,
    i.e. chance; a first-in-row-major rule gave it 1 with G at the top left and 0 elsewhere)."""
    s2 = s[None] if s.dim() == 2 else s
    g2 = (g[None] if g.dim() == 2 else g).bool()
    n, h, w = s2.shape
    fs = _flat(s2).double()
    m = _mask_like(valid, fs)
    fg = _flat(g2) & m
    top = fs.masked_fill(~m, -math.inf)
    peak = top.amax(1, keepdim=True)
    tied = top == peak
    r = math.floor(tolerance)
    yy, xx = torch.meshgrid(torch.arange(-r, r + 1), torch.arange(-r, r + 1), indexing="ij")
    disc = ((yy**2 + xx**2) <= tolerance**2).to(device=s.device, dtype=torch.float32)
    near_g = (
        F.conv2d(fg.view(n, 1, h, w).float(), disc[None, None], padding=r)[:, 0] > 0
    )  # G grown by tolerance
    hit = (tied & near_g.reshape(n, -1)).sum(1).double() / tied.sum(1).clamp_min(1).double()
    hit = torch.where(peak[:, 0] > 0, hit, torch.zeros_like(hit))
    return torch.where(fg.any(1), hit, torch.full_like(hit, math.nan))


def energy_pointing_game(s: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    r"""Energy-based pointing game (Wang et al., Score-CAM, CVPRW 2020): ``Σ_p T_p Ŝ_p / Σ_p Ŝ_p`` with ``Ŝ``
    min-max normalised over the valid pixels and ``T`` the target (a binary mask, or soft weights such as
    the seam ``4M(1 − M)``). NaN where the target is empty; 0 for a map with no mass."""
    fs = _flat(s).double()
    m = _mask_like(valid, fs)
    lo = fs.masked_fill(~m, math.inf).amin(1, keepdim=True)
    hi = fs.masked_fill(~m, -math.inf).amax(1, keepdim=True)
    sn = torch.where(hi > lo, (fs - lo) / (hi - lo).clamp_min(_EPS), torch.zeros_like(fs)) * m
    t = _flat(target).double().to(fs.device).expand_as(fs) * m
    total = sn.sum(1)
    e = torch.where(total > 0, (t * sn).sum(1) / total.clamp_min(_EPS), torch.zeros_like(total))
    return torch.where(t.sum(1) > 0, e, torch.full_like(e, math.nan))


def relevance_mass_accuracy(s: Tensor, g: Tensor, valid: Tensor | None = None) -> Tensor:
    r"""Relevance mass accuracy (Arras et al., Inf. Fusion 2022): ``Σ_{p∈G} S⁺_p / Σ_p S⁺_p``; NaN where
    ``G`` is empty, 0 for a map with no positive mass."""
    fs = _flat(s).double().clamp_min(0)
    m = _mask_like(valid, fs)
    fs = fs * m
    fg = _flat(g).bool().to(fs.device).expand_as(fs) & m
    total = fs.sum(1)
    r = torch.where(total > 0, (fs * fg).sum(1) / total.clamp_min(_EPS), torch.zeros_like(total))
    return torch.where(fg.any(1), r, torch.full_like(r, math.nan))


def relevance_rank_accuracy(s: Tensor, g: Tensor, valid: Tensor | None = None) -> Tensor:
    r"""Relevance rank accuracy (Arras et al., 2022): ``|TopK(S) ∩ G| / K`` with ``K = |G|`` (over valid
    pixels). Ties at the K-th value count as a random tie-break would on average (the free places times the
    share of the tied pixels in ``G``), so a flat map scores ``|G|/|valid|`` wherever ``G`` lies; NaN
    pixels rank last. NaN where ``G`` is empty."""
    fs = _flat(s).double()
    m = _mask_like(valid, fs)
    fs = torch.nan_to_num(fs, nan=-math.inf).masked_fill(~m, -math.inf)
    fg = _flat(g).bool().to(fs.device).expand_as(fs) & m
    k = fg.sum(1)
    kth = fs.sort(dim=1, descending=True).values.gather(1, (k - 1).clamp_min(0)[:, None])
    above, tied = fs > kth, (fs == kth) & m
    places = (k - above.sum(1)).double()
    hits = (above & fg).sum(1).double() + places * (tied & fg).sum(1) / tied.sum(1).clamp_min(1)
    r = hits / k.clamp_min(1).double()
    return torch.where(k > 0, r, torch.full_like(r, math.nan))


def pixel_auroc(s: Tensor, g: Tensor, valid: Tensor | None = None) -> Tensor:
    r"""AUROC of ``S`` as a per-pixel score for ``G`` (Mann–Whitney: ``(R₊ − n₊(n₊+1)/2) / (n₊ n₋)`` with
    average ranks, equal to the trapezoidal ROC AUC of scikit-learn); NaN where ``G`` or its complement is
    empty among the valid pixels."""
    fs = _flat(s).double()
    m = _mask_like(valid, fs)
    fg = _flat(g).bool().to(fs.device).expand_as(fs) & m
    r = average_ranks(fs, m)
    npos = fg.sum(1).double()
    nneg = m.sum(1).double() - npos
    u = (r * fg).sum(1) - npos * (npos + 1) / 2
    auc = u / (npos * nneg).clamp_min(1)
    return torch.where((npos > 0) & (nneg > 0), auc, torch.full_like(auc, math.nan))


def seam_target(m: Tensor) -> Tensor:
    r"""The blending seam ``B = 4·M·(1 − M)`` of a soft mask ``M`` in [0, 1] (Face X-ray, Li et al.,
    CVPR 2020)."""
    mm = m.double().clamp(0, 1)
    return 4 * mm * (1 - mm)


def mask_seam(mask: Tensor) -> Tensor:
    """The seam ``(H, W)`` the localisation metrics score for a ground-truth mask: :func:`seam_target` of
    the mask, a hard {0, 1} mask (a splice, a rectangle) first blurred with σ = 1 % of the diagonal (at
    least 1 px) so that its edge has a seam at all."""
    if torch.unique(mask).numel() > 2:
        return seam_target(mask)
    h, w = mask.shape
    sigma = max(1.0, 0.01 * math.hypot(h, w))
    return seam_target(gaussian_blur(mask[None, None].double(), sigma)[0, 0].clamp(0, 1))


# ------------------------------------------------------------------------------------------ faithfulness


def trapezoid_auc(curves: Tensor) -> Tensor:
    r"""Area under ``(N, K+1)`` curves sampled at ``k/K``, ``k = 0..K``, by the trapezoid rule."""
    k = curves.shape[-1] - 1
    return torch.trapezoid(curves.double(), dx=1.0 / max(k, 1), dim=-1)


def gaussian_blur(pixels: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` (radius ``⌈3σ⌉``, reflect padding): the blur baseline of
    deletion/insertion (Petsiuk et al. blur with σ = 5 at 224 px)."""
    h, w = pixels.shape[-2:]
    if sigma <= 0 or min(h, w) < 2:  # a one-pixel side has nothing to blur along it (nor to reflect)
        return pixels.clone()
    radius = max(1, min(math.ceil(3 * sigma), h - 1, w - 1))
    t = torch.arange(-radius, radius + 1, device=pixels.device, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(pixels.dtype)
    c = pixels.shape[1]
    y = F.pad(pixels, (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


_NEIGHBOURS = (
    (0, 1, 1 / 6),
    (0, -1, 1 / 6),
    (1, 0, 1 / 6),
    (-1, 0, 1 / 6),
    (1, 1, 1 / 12),
    (1, -1, 1 / 12),
    (-1, 1, 1 / 12),
    (-1, -1, 1 / 12),
)


def noisy_linear_imputation(
    image: np.ndarray,
    removed: np.ndarray,
    *,
    noise: float = 0.01,
    rng: np.random.Generator | None = None,
    known: np.ndarray | None = None,
) -> np.ndarray:
    r"""ROAD's noisy linear imputation (Rong et al., ICML 2022) of the ``removed`` pixels of
    ``image (C, H, W)``.

    ``known`` (default: every pixel not removed) limits which kept pixels may inform the imputation: a
    letterbox's black padding is not image content, so its neighbours are dropped as if outside the image
    (and a removed region that touches no known pixel gets the known pixels' mean, through a 1e-9 pull).

    Each removed pixel is the weighted mean of its in-image 8-neighbours (edge 1/6, diagonal 1/12; weights of
    neighbours outside the image dropped and the rest renormalised), removed neighbours being unknowns too:
    **one** sparse linear system ``(Σ_j w_ij) x_i − Σ_{j removed} w_ij x_j = Σ_{j kept} w_ij x_j`` for all
    removed pixels, with the ``C`` channels as right-hand sides (one factorisation). Then ``N(0, noise²)``
    from ``rng`` (seeded by the caller) is added to the imputed values. The system is non-singular whenever
    at least one pixel is kept (every connected removed region touches a kept pixel).
    """
    c, h, w = image.shape
    rem = np.asarray(removed, dtype=bool).reshape(h, w)
    idx = np.flatnonzero(rem)
    n = idx.size
    out = np.array(image, dtype=np.float64, copy=True).reshape(c, -1)
    if n == 0:
        return out.reshape(c, h, w)
    if n == h * w:
        raise ValueError("cannot impute an image with every pixel removed")
    var = np.full(h * w, -1, dtype=np.int64)
    var[idx] = np.arange(n)
    ys, xs = np.divmod(idx, w)
    ids = np.arange(n)
    diag = np.zeros(n)
    rhs = np.zeros((n, c))
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    usable = None if known is None else (np.asarray(known, dtype=bool).reshape(-1) | rem.reshape(-1))
    for dy, dx, wt in _NEIGHBOURS:
        yy, xx = ys + dy, xs + dx
        inb = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        if usable is not None:
            inb[inb] = usable[yy[inb] * w + xx[inb]]
        i = ids[inb]
        j = yy[inb] * w + xx[inb]
        diag[i] += wt
        unknown = var[j] >= 0
        rows.append(i[unknown])
        cols.append(var[j[unknown]])
        vals.append(np.full(int(unknown.sum()), -wt))
        rhs[i[~unknown]] += wt * out[:, j[~unknown]].T
    if usable is not None:  # regions cut off from every known pixel: the known pixels' mean
        kept = usable & ~rem.reshape(-1)
        pull = 1e-9
        diag += pull
        rhs += pull * (out[:, kept].mean(axis=1) if kept.any() else 0.0)
    rows.append(ids)
    cols.append(ids)
    vals.append(diag)
    a = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsc()
    sol = np.asarray(spsolve(a, rhs)).reshape(n, c)
    if noise > 0:
        gen = rng if rng is not None else np.random.default_rng(0)
        sol = sol + gen.normal(0.0, noise, size=sol.shape)
    out[:, idx] = sol.T
    return out.reshape(c, h, w)


# ------------------------------------------------------------------------------------------ sanity


def ssim(a: Tensor, b: Tensor, data_range: float = 1.0, valid: Tensor | None = None) -> Tensor:
    """Structural similarity (Wang et al., 2004; scikit-image, 7×7 windows or the largest odd window that
    fits) of each pair of ``(N, H, W)`` maps, as used by Adebayo et al. (NeurIPS 2018) for randomisation:
    the mean of the local SSIM over the windows that lie on ``valid`` pixels only (all, by default; padding
    that is zero in both maps would otherwise count as identical; where no window fits, those centred on
    valid pixels). A map under 3 pixels a side is one window."""
    from scipy.ndimage import minimum_filter
    from skimage.metrics import structural_similarity

    a_ = a[None] if a.dim() == 2 else a
    a3 = a_.detach().double().cpu().numpy()
    b3 = (b[None] if b.dim() == 2 else b).detach().double().cpu().numpy()
    v3 = _mask_like(valid, _flat(a_)).reshape(a3.shape).cpu().numpy()
    h, w = a3.shape[-2:]
    win = min(7, min(h, w) if min(h, w) % 2 == 1 else min(h, w) - 1)
    vals = []
    for x, y, v in zip(a3, b3, v3, strict=True):
        if win < 3:
            vals.append(_global_ssim(x[v], y[v], data_range))
            continue
        _, local = structural_similarity(x, y, data_range=data_range, win_size=win, full=True)
        pad = (win - 1) // 2
        inside = minimum_filter(v, size=win, mode="constant", cval=False)
        inner = local[pad : h - pad, pad : w - pad]
        keep = next((k for k in (inside, v) if k[pad : h - pad, pad : w - pad].any()), np.ones_like(v))
        vals.append(float(inner[keep[pad : h - pad, pad : w - pad]].mean()))
    return torch.tensor(vals, dtype=torch.float64)


def _global_ssim(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    """SSIM of two samples taken as one window (Wang et al., 2004, eq. 13; scikit-image's constants)."""
    if x.size == 0:
        return float("nan")
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = x.mean(), y.mean()
    cov = ((x - mx) * (y - my)).mean()
    num = (2 * mx * my + c1) * (2 * cov + c2)
    return float(num / ((mx**2 + my**2 + c1) * (x.var() + y.var() + c2)))
