r"""Faithfulness: deletion/insertion (Petsiuk et al., BMVC 2018) and ROAD (Rong et al., ICML 2022).

Both take a *score function* over pixel batches (``(n, 3, H, W)`` in [0, 1] → ``(n,)``), by default
:func:`probability_fn`: the sigmoid of the explained target score, which for the default target (fake
log-odds) is exactly p(fake). All perturbed inputs of all methods of an image are pooled and forwarded in
chunks.
Only valid pixels (those that show the image) are ranked and perturbed; letterbox padding stays as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fakelens.explain.capture import frozen
from fakelens.explain.targets import Target, resolve_target
from fakelens.models.base import Detector
from fakelens.models.fold import inference_logits
from fakelens.trust.metrics import gaussian_blur, noisy_linear_imputation, trapezoid_auc

__all__ = [
    "ScoreFn",
    "blur_sigma",
    "deletion_insertion",
    "perturbation_curves",
    "probability_fn",
    "relevance_order",
    "road",
]

ScoreFn = Callable[[Tensor], Tensor]


def probability_fn(detector: Detector, target: str | Target = "fake", batch_size: int = 32) -> ScoreFn:
    """``pixels (n, 3, H, W)`` → ``(n,)`` float64 ``sigmoid(target score)`` of the normalised pixels, chunked,
    under ``inference_mode`` and eval mode (restored after)."""
    t = resolve_target(target, detector)

    def fn(pixels: Tensor) -> Tensor:
        outs = []
        with frozen(detector), torch.inference_mode():
            dev = detector.device
            for i in range(0, pixels.shape[0], batch_size):
                x = detector.input_spec.normalize(pixels[i : i + batch_size].to(dev))
                outs.append(torch.sigmoid(t(inference_logits(detector, x)).double()).cpu())
        return torch.cat(outs) if outs else torch.zeros(0, dtype=torch.float64)

    return fn


def blur_sigma(hw: tuple[int, int]) -> float:
    """Blur baseline width: Petsiuk et al.'s σ = 5 px at 224 px, scaled with the short side (at least 1)."""
    return max(1.0, 5.0 * min(hw) / 224.0)


def relevance_order(saliency: Tensor, valid: Tensor, seed: int = 0) -> Tensor:
    """``(M, H, W)`` maps → ``(M, P)`` pixel indices, most relevant first, valid pixels only at the front
    (``P = |V|``). Ties are broken by a seeded random permutation (not by position: that would delete
    top-left pixels first whenever a map has a zero plateau)."""
    m, h, w = saliency.shape
    flat = saliency.reshape(m, -1).double()
    v = valid.reshape(-1).bool().to(flat.device)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(h * w, generator=gen).to(flat.device)
    keyed = flat[:, perm].masked_fill(~v[perm][None], -torch.inf)
    idx = keyed.argsort(dim=1, descending=True, stable=True)
    n_valid = int(v.sum())
    return perm[idx][:, :n_valid]


def perturbation_curves(
    score_fn: ScoreFn,
    order: Tensor,
    start: Tensor,
    end: Tensor,
    steps: int = 16,
) -> Tensor:
    r"""Scores along a pixel-replacement path: at step ``k`` the first ``⌈k·P/K⌉`` pixels of each ``order``
    row take their ``end`` value and every other pixel its ``start`` value (``k = 0..K``).

    Deletion: ``start = x``, ``end`` = the baseline; insertion: ``start`` = the baseline, ``end = x``.
    ``order (M, P)``, ``start``/``end (3, H, W)`` → ``(M, K+1)`` scores (one pooled, chunked forward).
    """
    m, p = order.shape
    c, h, w = start.shape
    counts = [int(np.ceil(k * p / steps)) for k in range(steps + 1)]
    batch = start.reshape(1, c, -1).repeat(m * (steps + 1), 1, 1)
    src = end.reshape(c, -1)
    for i in range(m):
        for k, n in enumerate(counts):
            if n:
                sel = order[i, :n].to(src.device)
                batch[i * (steps + 1) + k][:, sel] = src[:, sel]
    scores = score_fn(batch.view(-1, c, h, w))
    return scores.view(m, steps + 1)


def deletion_insertion(
    score_fn: ScoreFn,
    pixels: Tensor,
    saliency: Tensor,
    valid: Tensor,
    *,
    steps: int = 16,
    baselines: Sequence[str] = ("black", "blur"),
    seed: int = 0,
) -> dict[str, Tensor]:
    r"""Deletion and insertion AUCs (Petsiuk et al., BMVC 2018) for ``M`` maps of one image.

    Pixels are ordered by ``S`` (descending); deletion replaces the top ``k`` with a baseline, insertion
    restores them into the baseline image; ``AUC = ∫ score d(k/N)`` by the trapezoid rule over ``K = steps``.
    Baselines: ``black`` (zero pixels) and ``blur`` (a Gaussian blur, :func:`blur_sigma`) — for artifact
    detectors a black patch is itself splice-like, so the blur baseline matters. Lower deletion and higher
    insertion are better. Returns ``deletion_<b>``, ``insertion_<b>`` ``(M,)`` and their curves
    ``curve_deletion_<b>`` ``(M, K+1)``.
    """
    x = pixels[0] if pixels.dim() == 4 else pixels
    order = relevance_order(saliency, valid, seed)
    out: dict[str, Tensor] = {}
    for b in baselines:
        if b == "black":
            base = torch.zeros_like(x)
        elif b == "blur":
            base = gaussian_blur(x[None], blur_sigma(tuple(x.shape[-2:])))[0]  # type: ignore[arg-type]
        else:
            raise ValueError(f"unknown baseline {b!r}: use 'black' or 'blur'")
        dele = perturbation_curves(score_fn, order, x, base, steps)
        ins = perturbation_curves(score_fn, order, base, x, steps)
        out[f"deletion_{b}"] = trapezoid_auc(dele)
        out[f"insertion_{b}"] = trapezoid_auc(ins)
        out[f"curve_deletion_{b}"] = dele
        out[f"curve_insertion_{b}"] = ins
    return out


def road(
    score_fn: ScoreFn,
    pixels: Tensor,
    saliency: Tensor,
    valid: Tensor,
    *,
    percentages: Sequence[float] = (10, 30, 50, 70, 90),
    noise: float = 0.01,
    seed: int = 0,
) -> dict[str, Any]:
    r"""ROAD (Rong et al., ICML 2022) for ``M`` maps of one image.

    For each ``p``: remove the most (MoRF) or least (LeRF) relevant ``p %`` of the valid pixels and impute
    them by noisy linear imputation (:func:`~fakelens.trust.metrics.noisy_linear_imputation`, one sparse
    system per removal, noise seeded from ``seed``, the order and ``p`` only: the same for every map).
    ``morf``/``lerf`` are the mean confidence *drops*
    ``score(x) − score(x̃)`` over ``p``; ``combined = mean_p (LeRF_p − MoRF_p) / 2`` in confidences, i.e.
    ``(morf − lerf) / 2`` — higher is better. Also returns the curves ``curve_morf``/``curve_lerf``
    ``(M, len(p))`` of confidences.
    """
    x = pixels[0] if pixels.dim() == 4 else pixels
    _, h, w = x.shape
    order = relevance_order(saliency, valid, seed)
    m, n_valid = order.shape
    img = x.detach().double().cpu().numpy()
    known = valid.reshape(-1).bool().cpu().numpy()  # padding informs no imputation
    batch: list[Tensor] = []
    for i in range(m):
        o = order[i].cpu().numpy()
        for most in (True, False):
            for j, p in enumerate(percentages):
                k = int(n_valid * p / 100)
                sel = o[:k] if most else o[n_valid - k :]
                rem = np.zeros(h * w, dtype=bool)
                rem[sel] = True
                # common random numbers: every map gets the same noise at the same (order, p), whichever
                # maps share the call, so methods are compared under one noise, and a map scores alike alone
                rng = np.random.default_rng([seed, int(most), j])
                imp = noisy_linear_imputation(img, rem, noise=noise, rng=rng, known=known)
                batch.append(torch.from_numpy(np.clip(imp, 0.0, 1.0)).to(x.dtype))
    scores = score_fn(torch.stack(batch)).view(m, 2, len(percentages))
    base = score_fn(x[None])[0]
    morf, lerf = scores[:, 0], scores[:, 1]
    return {
        "morf": (base - morf).mean(1),
        "lerf": (base - lerf).mean(1),
        "combined": ((lerf - morf) / 2).mean(1),
        "curve_morf": morf,
        "curve_lerf": lerf,
        "base": base,
    }
