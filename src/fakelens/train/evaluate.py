"""Evaluating a detector (or an ensemble) on a dataset or on forgeries made from a pool's test photos.

:func:`evaluate` scores every image as inference would (``fakelens.geometry.prepare`` with each model's input
spec), then reports AUC, AP, accuracy at the chosen threshold, EER, how well p(fake) is calibrated (expected
calibration error, Brier score, log-loss; overall and per member, as shown to users), overall and broken down

- **per recipe**: each recipe's (generator's, manipulation's) fakes against *all* reals of the split, the
  usual protocol for "how well is each kind of fake caught";
- **per source**: the images of one source; a source with one class only is compared with all images of
  the other class (``vs`` says which).

With ``out`` it writes ``metrics.json``, ``scores.csv`` (one row per image), ``roc.png`` (overall and
per-recipe ROC curves, EER marked) and ``reliability.png`` (the reliability diagram of the model and of each
member).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence, Sized
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from fakelens.data.datasets import (
    DatasetError,
    DetectionDataset,
    OnTheFlyForgeries,
    Sample,
    check_both_classes,
    collate_views,
    discover,
    samples_sha256,
    select_split,
)
from fakelens.errors import ConfigError
from fakelens.models.base import Detector, InputSpec
from fakelens.models.ensemble import Ensemble
from fakelens.tiling import DEFAULT_MAX_TILES
from fakelens.train.loop import make_loader, resolve_device, score_loader
from fakelens.train.metrics import (
    auc_bootstrap,
    binary_metrics,
    calibration_metrics,
    json_safe,
    reliability_bins,
    roc_curve,
)

__all__ = [
    "breakdown",
    "check_split",
    "evaluate",
    "plot_roc",
    "resolve_split",
    "score_dataset",
    "summarize_scores",
]

MAX_CURVES = 12


SPLITS = ("auto", "train", "val", "test", "all")


def check_split(split: str) -> None:
    """Raise :class:`ConfigError` unless ``split`` is one of :data:`SPLITS`."""
    if split not in SPLITS:
        raise ConfigError(f"unknown --split {split!r} (known: {', '.join(SPLITS)})")


def resolve_split(samples: Sequence[Sample], split: str) -> str:
    """``auto`` → ``test`` if the dataset has one, else ``val``, else ``all``; other names as given."""
    if split != "auto":
        return split
    present = {s.split for s in samples}
    for name in ("test", "val"):
        if name in present:
            return name
    return "all"


def score_dataset(
    model: Detector | Ensemble,
    make_dataset: Callable[[InputSpec], Dataset[Any]],
    *,
    batch_size: int = 32,
    workers: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> dict[str, Any]:
    """Score a dataset built per input spec by ``make_dataset`` (items with recipe and source); ``progress``
    shows a bar per member on stderr.

    Returns ``labels``, ``scores`` (combined for an ensemble), ``recipes``, ``sources`` and, for an ensemble,
    ``members``: each member's scores by name.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    dev = torch.device(device)
    members = list(model.members) if isinstance(model, Ensemble) else [model]
    cols: list[np.ndarray] = []
    labels = np.zeros(0, np.int64)
    recipes: list[str] = []
    sources: list[str] = []
    bar = Progress(
        TextColumn("scoring {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),  # stdout stays for JSON
        disable=not progress,
        transient=True,
    )
    with bar:
        for i, det in enumerate(members):
            det.to(dev).eval()
            collate = collate_views if det.input_spec.mode == "native" else None
            dataset = make_dataset(det.input_spec)
            loader = make_loader(
                dataset, batch_size, shuffle=False, seed=0, workers=workers, collate_fn=collate
            )
            size = len(dataset) if isinstance(dataset, Sized) else None
            task = bar.add_task(f"{det.name} ({i + 1}/{len(members)})", total=size)
            y, s, r, src = score_loader(det, _counted(loader, bar, task), dev)
            if i == 0:
                labels, recipes, sources = y, r, src
            elif not np.array_equal(y, labels):  # pragma: no cover - datasets are deterministic
                raise RuntimeError("ensemble members saw different datasets")
            cols.append(s)
    if isinstance(model, Ensemble):
        probs = torch.from_numpy(np.stack(cols, axis=1)).float()
        combined = model.combine(probs).double().numpy()
        names = [m.name for m in members]
        return {
            "labels": labels,
            "scores": combined,
            "recipes": recipes,
            "sources": sources,
            "members": dict(zip(_unique(names), cols, strict=True)),
        }
    return {"labels": labels, "scores": cols[0], "recipes": recipes, "sources": sources}


def _counted(loader: Iterable[Any], bar: Any, task: Any) -> Iterator[Any]:
    """The loader's batches, advancing ``task`` by each batch's size."""
    for batch in loader:
        bar.advance(task, len(batch[1]))
        yield batch


def _unique(names: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


def with_interval(
    metrics: dict[str, Any], labels: np.ndarray, scores: np.ndarray, groups: Sequence[str] | None, rounds: int
) -> dict[str, Any]:
    """``metrics`` plus ``auc_se`` and the 95 % ``auc_ci`` of a bootstrap over ``groups``
    (:func:`~fakelens.train.metrics.auc_bootstrap`); nothing added when ``rounds`` < 2 or without groups."""
    if rounds >= 2 and groups is not None:
        b = auc_bootstrap(labels, scores, groups, rounds=rounds)
        metrics.update(auc_se=b["se"], auc_ci=b["ci"])
    return metrics


def breakdown(
    labels: np.ndarray,
    scores: np.ndarray,
    keys: Sequence[str],
    threshold: float,
    *,
    by: str,
    groups: Sequence[str] | None = None,
    bootstrap: int = 0,
) -> dict[str, dict[str, Any]]:
    """Metrics per key. ``by="recipe"``: each key's fakes vs all reals. ``by="source"``: each key's images;
    a key with one class is compared with all images of the other class. ``groups``/``bootstrap``: AUC
    intervals (:func:`with_interval`) for the recipe rows."""
    keys_arr = np.asarray(list(keys), dtype=object)
    out: dict[str, dict[str, Any]] = {}
    for key in sorted({k for k in keys_arr.tolist()}):
        sel = keys_arr == key
        if by == "recipe":
            if not (labels[sel] == 1).any():
                continue
            pick = (sel & (labels == 1)) | (labels == 0)
            vs = "all reals"
        else:
            has_real, has_fake = (labels[sel] == 0).any(), (labels[sel] == 1).any()
            if has_real and has_fake:
                pick, vs = sel, "itself"
            elif has_fake:
                pick, vs = sel | (labels == 0), "all reals"
            else:
                pick, vs = sel | (labels == 1), "all fakes"
        m = binary_metrics(labels[pick], scores[pick], threshold)
        if by == "recipe" and groups is not None:
            with_interval(m, labels[pick], scores[pick], np.asarray(groups)[pick].tolist(), bootstrap)
        m["vs"] = vs
        m["mean_score"] = float(np.mean(scores[sel])) if sel.any() else math.nan
        out[key or "-"] = m
    return out


def summarize_scores(
    labels: np.ndarray,
    scores: np.ndarray,
    recipes: Sequence[str],
    sources: Sequence[str],
    threshold: float = 0.5,
    *,
    groups: Sequence[str] | None = None,
    bootstrap: int = 0,
) -> dict[str, Any]:
    """Overall metrics plus the per-recipe and per-source breakdowns (floats may be ``nan``); with
    ``groups`` and ``bootstrap`` ≥ 2, AUC intervals overall and per recipe."""
    overall = binary_metrics(labels, scores, threshold) | calibration_metrics(labels, scores)
    with_interval(overall, labels, scores, groups, bootstrap)
    return {
        "overall": overall,
        "per_recipe": breakdown(
            labels, scores, recipes, threshold, by="recipe", groups=groups, bootstrap=bootstrap
        ),
        "per_source": breakdown(labels, scores, sources, threshold, by="source"),
    }


@contextmanager
def _png(path: str | os.PathLike[str], **subplots: Any) -> Iterator[tuple[Any, Any]]:
    """``plt.subplots(**subplots)`` to draw on; on leaving, the figure is laid out, written atomically to
    ``path`` as a PNG and closed (closed also when drawing fails)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from fakelens.io import atomic_write_bytes

    fig, axes = plt.subplots(**subplots)
    try:
        yield fig, axes
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")  # a legend beside the axes is kept whole
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


FEW = 5
"""Fewer images than this (a recipe's fakes in a ROC curve, a reliability bin) are marked as too few to read a
curve from."""


def plot_roc(
    labels: np.ndarray,
    scores: np.ndarray,
    recipes: Sequence[str],
    path: str | os.PathLike[str],
    *,
    title: str = "",
    eer: tuple[float, float] | None = None,
    threshold: float | None = None,
) -> Path:
    """Write a ROC plot (PNG): the overall curve, one curve per recipe (its fakes vs all reals), the EER and
    the operating point of the verdict ``threshold`` (fake when the score is ≥ it)."""
    import matplotlib.pyplot as plt

    from fakelens.train.metrics import roc_auc

    with _png(path, figsize=(9.6, 5.6), dpi=110) as (_, ax):
        ax.set_box_aspect(1)  # a square ROC space, the legend beside it
        ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="0.6", label="chance")
        rec = np.asarray(list(recipes), dtype=object)
        kinds = sorted({r for r, y in zip(rec.tolist(), labels.tolist(), strict=True) if y == 1})
        if len(kinds) > 1:
            cmap = plt.get_cmap("tab10" if len(kinds) <= 10 else "tab20")
            styles = ("-", "--", ":", "-.")  # curves that coincide (e.g. several at AUC 1) stay apart
            for i, k in enumerate(kinds[:MAX_CURVES]):
                fakes = (rec == k) & (labels == 1)
                pick = fakes | (labels == 0)
                fpr, tpr, _ = roc_curve(labels[pick], scores[pick])
                auc = roc_auc(labels[pick], scores[pick])
                nf = int(fakes.sum())
                few = " — too few to judge" if nf < FEW else ""
                label = f"{k or '-'}  AUC {auc:.3f}  ({nf} fake{'s' if nf != 1 else ''}{few})"
                ax.plot(fpr, tpr, lw=1.4, ls=styles[i % 4], color=cmap(i), label=label)
        fpr, tpr, _ = roc_curve(labels, scores)
        auc = roc_auc(labels, scores)
        counts = f"{int((labels == 1).sum())} fakes, {int((labels == 0).sum())} reals"
        ax.plot(fpr, tpr, lw=2.4, color="black", label=f"overall  AUC {auc:.3f}  ({counts})")
        if eer is not None and math.isfinite(eer[0]):
            ax.plot([eer[0]], [1 - eer[0]], "o", color="crimson", label=f"EER {eer[0]:.3f}")
        if threshold is not None and (labels == 0).any() and (labels == 1).any():
            op_fpr = float((scores[labels == 0] >= threshold).mean())
            op_tpr = float((scores[labels == 1] >= threshold).mean())
            ax.plot(
                [op_fpr],
                [op_tpr],
                "s",
                color="darkorange",
                mec="black",
                label=f"verdict threshold {threshold:g}: {op_tpr:.0%} of fakes caught, "
                f"{op_fpr:.0%} of reals called fake",
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel("false positive rate (reals called fake)")
        ax.set_ylabel("true positive rate (fakes caught)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7)  # beside: it hid curves inside
    return Path(path)


def plot_reliability(
    labels: np.ndarray,
    curves: Mapping[str, np.ndarray],
    path: str | os.PathLike[str],
    *,
    title: str = "",
    bins: int = 15,
) -> Path:
    """Write a reliability diagram (PNG): per curve, the fraction of fakes against the mean p(fake) in each of
    ``bins`` equal-width bins (marker area ∝ images in the bin), the diagonal of perfect calibration, and
    below it how the images spread over p(fake)."""
    import matplotlib.pyplot as plt

    layout = {"nrows": 2, "sharex": True, "gridspec_kw": {"height_ratios": [3, 1]}}
    with _png(path, figsize=(6.0, 6.8), dpi=110, **layout) as (_, (ax, hist)):
        ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="0.5", label="perfectly calibrated")
        colours = plt.get_cmap("tab10")
        for i, (name, s) in enumerate(curves.items()):
            n, mean_p, frac = reliability_bins(labels, s, bins)
            used = n > 0
            ece = calibration_metrics(labels, s, bins)["ece"]
            c = colours(i % 10)
            solid = n >= FEW  # a bin of one or two images says little: a dot, not part of the line
            ax.plot(mean_p[solid], frac[solid], "-", lw=1.4, color=c, label=f"{name}  ECE {ece:.3f}")
            ax.scatter(mean_p[used], frac[used], s=12 + 240 * n[used] / n.sum(), color=c, alpha=0.8, lw=0)
            hist.hist(np.clip(s, 0, 1), bins=bins, range=(0, 1), histtype="step", lw=1.4, color=c)
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.01, 1.01)
        ax.set_ylabel("fraction of fakes among these images")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(
            loc="upper left",
            fontsize=7,
            title=f"dot area ∝ images in the bin ({bins} equal bins of p(fake)); line: bins of ≥ {FEW}",
            title_fontsize=7,
        )
        hist.set_xlabel("p(fake)")
        hist.set_ylabel("images")
        hist.grid(alpha=0.3)
    return Path(path)


def _scores_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["label", "score"], lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def evaluate(
    model: Detector | Ensemble,
    *,
    data: str | os.PathLike[str] | None = None,
    forgeries: str | os.PathLike[str] | None = None,
    split: str = "auto",
    threshold: float = 0.5,
    out: str | os.PathLike[str] | None = None,
    batch_size: int = 32,
    workers: int = 0,
    device: str = "cpu",
    recipes: str | Sequence[str] | None = None,
    pairs: int = 256,
    seed: int = 0,
    forgery_size: int = 256,
    forgery_format: str = "png",
    forgery_quality: int = 90,
    split_fractions: Sequence[float] = (0.7, 0.15, 0.15),
    model_name: str = "",
    exclude_photos: Collection[str] = (),
    progress: bool = False,
    max_tiles: int = DEFAULT_MAX_TILES,
    bootstrap: int = 1000,
) -> dict[str, Any]:
    """Evaluate ``model`` on a dataset (``data``) or on ``pairs`` forgeries from a pool's ``split``.

    ``bootstrap`` resamples (0: none) give each AUC, overall and per recipe, a standard error and a 95 %
    interval (``auc_se``, ``auc_ci``) that resample what is independent: the source photos of a pool's
    forgeries (every pair of a photo shares its content), a dataset's groups (``group``: a video, a source
    photo) or else its images.

    ``exclude_photos`` (sha256) are left out of the pool's split — the model's own training photos
    (:func:`fakelens.models.checkpoint.training_photos`); the report counts them in ``data.excluded_photos``.
    A ``native`` member reads each image as inference does: up to ``max_tiles`` native tiles, mean logits.
    Scores are what users are shown: a calibrated detector's or ensemble's calibrated probabilities.

    Returns a JSON-ready report (``nan`` → ``None``): overall metrics, ``per_recipe``, ``per_source``,
    ``members`` (ensembles), and the files written to ``out`` (``metrics.json``, ``scores.csv``, ``roc.png``,
    ``reliability.png``).
    """
    if (data is None) == (forgeries is None):
        raise ConfigError("give exactly one of --data ROOT|MANIFEST or --forgeries POOL to evaluate on")
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"--threshold must be in [0, 1], got {threshold}")
    check_split(split)
    dev = resolve_device(device)
    source: dict[str, Any]
    paths: list[str] = []
    if data is not None:
        samples = discover(data)
        chosen = resolve_split(samples, split)
        picked = select_split(samples, chosen)
        if not picked:
            present = sorted({s.split or "-" for s in samples})
            raise DatasetError(f"{data}: no images in split {chosen!r} (splits: {', '.join(present)})")
        check_both_classes(picked, f"{data} (split {chosen})")
        root = Path(data)
        base = root if root.is_dir() else root.parent
        source = {
            "kind": "dataset",
            "path": str(data),
            "split": chosen,
            "splits": sorted({s.split for s in samples if s.split}),
            "sha256": samples_sha256(picked, base),
        }
        paths = [str(s.path) for s in picked]
        groups: list[str] | None = [s.group or str(s.path) for s in picked]
        unit = "group" if any(s.group for s in picked) else "image"

        def make(spec: InputSpec) -> Dataset[Any]:
            return DetectionDataset(picked, spec, with_info=True, load_masks=False, max_tiles=max_tiles)
    else:
        chosen = "test" if split == "auto" else split
        assert forgeries is not None
        probe = OnTheFlyForgeries(
            forgeries,
            recipes,
            seed,
            spec=InputSpec(),
            split=chosen,
            pairs=pairs,
            size=forgery_size,
            fmt=forgery_format,
            quality=forgery_quality,
            split_fractions=split_fractions,
            fixed=True,
            exclude=exclude_photos,
        )
        source = {
            "kind": "forgeries",
            "pool": str(forgeries),
            "split": chosen,
            "pairs": pairs,
            "seed": seed,
            "size": forgery_size,
            "format": probe.fmt,
            "quality": forgery_quality if probe.fmt != "png" else None,
            "recipes": list(probe.recipes),
            "photos": len(probe.entries),
            "excluded_photos": probe.excluded,
        }

        def make(spec: InputSpec) -> Dataset[Any]:
            return OnTheFlyForgeries(
                forgeries,
                recipes,
                seed,
                spec=spec,
                split=chosen,
                pairs=pairs,
                size=forgery_size,
                fmt=forgery_format,
                quality=forgery_quality,
                split_fractions=split_fractions,
                fixed=True,
                with_info=True,
                exclude=exclude_photos,
                max_tiles=max_tiles,
            )

    source["max_tiles"] = max_tiles  # native members read larger images as up to this many tiles
    res = score_dataset(model, make, batch_size=batch_size, workers=workers, device=dev, progress=progress)
    if isinstance(model, Detector) and model.calibration is not None:  # as shown when used on its own
        res["scores"] = model.calibration(torch.from_numpy(res["scores"])).double().numpy()
    y, s = res["labels"], res["scores"]
    if data is None:
        groups, unit = list(res["sources"]), "photo"  # a forgery pair's source is its photo
    report: dict[str, Any] = {
        "model": model_name
        or (", ".join(m.name for m in model.members) if isinstance(model, Ensemble) else model.name),
        "data": source,
        "threshold": threshold,
        "n": int(y.size),
        **summarize_scores(
            y, s, res["recipes"], res["sources"], threshold, groups=groups, bootstrap=bootstrap
        ),
    }
    if bootstrap >= 2:
        units = len(set(groups or ()))
        report["bootstrap"] = {"rounds": bootstrap, "unit": unit, "units": units, "level": 0.95}
    if isinstance(model, Ensemble):  # members as shown: calibrated, each at its own threshold
        raw = torch.from_numpy(np.stack(list(res["members"].values()), axis=1)).float()
        shown = model.calibrate(raw).double().numpy()
        res["members"] = {n: shown[:, j] for j, n in enumerate(res["members"])}
        report["members"] = {}
        for j, (n, ms) in enumerate(res["members"].items()):
            t = model.member_threshold(j) if model.calibrations[j] else threshold
            m = binary_metrics(y, ms, t) | calibration_metrics(y, ms)
            report["members"][n] = {
                **with_interval(m, y, ms, groups, bootstrap),
                "per_recipe": breakdown(
                    y, ms, res["recipes"], t, by="recipe", groups=groups, bootstrap=bootstrap
                ),
            }
    if out is not None:
        from fakelens.io import atomic_write_text

        od = Path(out)
        od.mkdir(parents=True, exist_ok=True)
        ov = report["overall"]
        title = (
            f"{report['model']} on {Path(str(data or forgeries)).name} ({source['split']}): "
            f"n={report['n']}, AUC {ov['auc']:.3f}, AP {ov['ap']:.3f}"
        )
        plot_roc(
            y,
            s,
            res["recipes"],
            od / "roc.png",
            title=title,
            eer=(ov["eer"], ov["eer_threshold"]),
            threshold=threshold,
        )
        curves = {"ensemble" if "members" in res else "model": s, **res.get("members", {})}
        where = (
            f"{report['model']} on {Path(str(data or forgeries)).name} ({source['split']}), n={report['n']}"
        )
        plot_reliability(y, curves, od / "reliability.png", title=where)
        rows = []
        for i in range(y.size):
            row: dict[str, Any] = {
                "index": i,
                "path": paths[i] if paths else "",
                "label": int(y[i]),
                "recipe": res["recipes"][i],
                "source": res["sources"][i],
                "score": float(s[i]),  # exact (repr): the metrics can be recomputed from this file
            }
            for n, ms in res.get("members", {}).items():
                row[f"score:{n}"] = float(ms[i])
            rows.append(row)
        atomic_write_text(od / "scores.csv", _scores_csv(rows))
        report["files"] = {
            "metrics": str(od / "metrics.json"),
            "scores": str(od / "scores.csv"),
            "roc": str(od / "roc.png"),
            "reliability": str(od / "reliability.png"),
        }
        atomic_write_text(od / "metrics.json", json.dumps(json_safe(report), indent=2) + "\n")
    return json_safe(report)
