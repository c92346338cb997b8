"""The trust benchmark: every image, every method, K views, all metric families; tidy records, resumable.

For each image: prepare it with the detector's input spec, build the views (identity, the transform family
with black fill, the control fills), explain them **once** (:func:`~fakelens.trust.sweep.run_sweep`), score
every view, then — on the untransformed image — localisation against the ground-truth mask (when there is
one), faithfulness (deletion/insertion with black and blur baselines, ROAD) and the cascading randomisation
check. Records are appended per image (:class:`~fakelens.trust.records.RecordFile`); a re-run skips the
(image, method, layer) groups already finished. At the end :func:`fakelens.trust.report.write_report` ranks
the methods per metric family and writes the recommendation, tables, plots and the gallery.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from fakelens.errors import ConfigError, ImageError
from fakelens.explain.cams import CAMS
from fakelens.explain.engine import EXPLAINERS, check_options, method_names
from fakelens.explain.targets import resolve_target
from fakelens.geometry import Geometry, prepare
from fakelens.io import (
    IMAGE_SUFFIXES,
    FolderLock,
    atomic_write_text,
    find_images,
    header_problem,
    load_image,
)
from fakelens.io import load_mask as read_mask
from fakelens.models.base import Detector, require_detector
from fakelens.trust import metrics as M
from fakelens.trust.criteria import DEFAULT_CRITERIA, Criteria
from fakelens.trust.faithfulness import deletion_insertion, probability_fn, road
from fakelens.trust.gallery import render_case
from fakelens.trust.randomisation import cascading_randomisation
from fakelens.trust.records import DONE, Record, RecordFile, read_records
from fakelens.trust.sweep import Sweep, ViewSpec, run_sweep, view_plan
from fakelens.trust.transforms import FILLS, TransformFamily

__all__ = ["TrustConfig", "TrustItem", "TrustRun", "discover_items", "evaluate_image", "run_trust"]

Progress = Callable[[int, str], None]


@dataclass(frozen=True)
class TrustItem:
    """One image to test, its ground-truth mask (if any) and label (if known)."""

    path: Path
    mask: Path | None = None
    label: str | None = None

    @property
    def key(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class TrustConfig:
    """What the benchmark computes. ``layer_sets``: each entry is explained and ranked separately (several
    layers in one entry are fused); ``None`` = the detector's CAM layers."""

    methods: tuple[str, ...] = ("gradcam", "hirescam", "layercam", "eigencam")
    layer_sets: tuple[tuple[str, ...], ...] | None = None
    family: str = "standard"
    fills: tuple[str, ...] = ("black", "mean", "reflect")
    target: str = "fake"
    localisation: bool = True
    faithfulness: bool = True
    randomisation: bool = True
    steps: int = 16
    road_percentages: tuple[float, ...] = (10, 30, 50, 70, 90)
    randomisation_stages: int = 4
    pointing_tolerance: float = 15.0
    mask_threshold: float = 0.5
    seed: int = 0
    limit: int | None = None
    resume: bool = True
    batch_size: int = 32
    criteria: Criteria = field(default_factory=lambda: DEFAULT_CRITERIA)
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Method options (``--set``), e.g. a perturbation method's budget; checked before the run starts."""

    def __post_init__(self) -> None:
        for name in ("methods", "fills"):  # "gradcam,hirescam" as analyze takes it, not its characters
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, tuple(p.strip() for p in value.split(",") if p.strip()))

    def numbers_key(self) -> dict[str, Any]:
        """The settings that change the numbers: a resumed run must match them."""
        return {
            "family": self.family,
            "fills": list(self.fills),
            "target": self.target,
            "steps": self.steps,
            "road_percentages": list(self.road_percentages),
            "randomisation_stages": self.randomisation_stages,
            "pointing_tolerance": self.pointing_tolerance,
            "mask_threshold": self.mask_threshold,
            "seed": self.seed,
            "options": self.options,
            # the families measured: a resumed image is not measured again, so a family added later
            # would be missing from every image already done while the report listed it
            "families": {
                "localisation": self.localisation,
                "faithfulness": self.faithfulness,
                "randomisation": self.randomisation,
            },
        }

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["criteria"] = self.criteria.to_dict()
        return d


@dataclass
class TrustRun:
    """What :func:`run_trust` did: the output folder, the summary it wrote, skipped methods and images."""

    out: Path
    summary: dict[str, Any]
    evaluated: int = 0
    skipped_images: dict[str, str] = field(default_factory=dict)
    skipped_methods: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ inputs


MASK_SUFFIXES = (".mask", "_mask", "-mask")
"""A mask beside its image (or in ``--masks``) is named ``x.mask.png``, ``x_mask.png`` or ``x-mask.png``."""


def _mask_index(folder: Path) -> dict[str, Path]:
    """The image files of ``folder`` by stem (listed once: a folder of thousands is not listed per image)."""
    found: dict[str, Path] = {}
    for cand in sorted(folder.iterdir()):
        if cand.suffix.lower() in IMAGE_SUFFIXES and cand.is_file():
            found.setdefault(cand.stem, cand)
    return found


def _find_mask(stem: str, index: dict[str, Path], *, same_stem: bool = True) -> Path | None:
    names = [f"{stem}{suffix}" for suffix in MASK_SUFFIXES] + ([stem] if same_stem else [])
    return next((index[n] for n in sorted(names) if n in index), None)


def _read_manifest(manifest: Path) -> list[TrustItem]:
    """The rows of a CSV manifest ``path[,label][,mask_path]`` (paths relative to it); a file that is no
    UTF-8 CSV text (an image passed as --manifest) is one :class:`ConfigError` naming it."""
    root = manifest.parent
    items: list[TrustItem] = []
    try:
        with manifest.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or "path" not in reader.fieldnames:
                raise ConfigError(f"{manifest}: a manifest needs a 'path' column (got {reader.fieldnames})")
            for row in reader:
                p = root / row["path"]
                mp = (row.get("mask_path") or "").strip()
                items.append(TrustItem(p, root / mp if mp else None, (row.get("label") or None)))
    except (UnicodeDecodeError, csv.Error) as exc:
        what = (
            "an image, not a CSV manifest (pass images with --images)"
            if header_problem(manifest) is None
            else f"not a CSV manifest ({exc.reason if isinstance(exc, UnicodeDecodeError) else exc})"
        )
        raise ConfigError(
            f"{manifest} is {what}: a manifest is UTF-8 CSV text with columns path[,label][,mask_path]"
        ) from None
    return items


def discover_items(
    images: Sequence[str | os.PathLike[str]] | str | os.PathLike[str] = (),
    *,
    masks: str | os.PathLike[str] | None = None,
    manifest: str | os.PathLike[str] | None = None,
) -> list[TrustItem]:
    """Images from files/folders (folders searched recursively, sorted), masks matched by file stem
    (``x.png`` ↔ ``masks/x.png``, ``masks/x_mask.png``, or ``x_mask.png`` beside the image without
    ``masks``; such masks are not tested as images), or a CSV manifest with columns
    ``path[,label][,mask_path]`` (paths relative to the manifest; the layout ``fakelens data synth``
    writes)."""
    items: list[TrustItem] = []
    masks = None if masks is None else Path(masks)
    manifest = None if manifest is None else Path(manifest)
    if manifest is not None:
        if not manifest.is_file():
            raise ConfigError(f"no such manifest: {manifest}")
        items += _read_manifest(manifest)
    if isinstance(images, (str, os.PathLike)):
        images = [images]
    paths: list[Path] = []
    for p in map(Path, images):
        if p.is_dir():
            paths += find_images(p)
        elif p.is_file():
            paths.append(p)
        else:
            raise ConfigError(f"no such file or folder: {p}")
    if masks is not None and not Path(masks).is_dir():
        raise ConfigError(f"--masks must be a folder: {masks}")
    mask_root = Path(masks).resolve() if masks is not None else None
    # --masks naming a folder of --images itself means masks beside the images (x.jpg, x_mask.png)
    beside = mask_root is None or any(Path(p).resolve() == mask_root for p in images)
    found: list[tuple[Path, Path | None]] = []
    index = functools.cache(_mask_index)  # each folder listed once
    for p in paths:
        if beside:
            found.append((p, _find_mask(p.stem, index(p.parent), same_stem=False)))
        elif mask_root is not None and not p.resolve().is_relative_to(mask_root):
            found.append((p, _find_mask(p.stem, index(mask_root))))
        # else: a file of the masks folder inside the images folder
    used = {m.resolve() for _, m in found if m is not None}
    items += [TrustItem(p, m) for p, m in found if p.resolve() not in used]  # a mask is no image to test
    return items


MAX_MASK_SHARE = 0.9
"""Masks marking more of an image's valid pixels than this (a global manipulation) are not used for
localisation: every map would land on them."""


def load_mask(path: Path, size: tuple[int, int]) -> Tensor:
    """A ground-truth mask as ``(H0, W0)`` float in [0, 1] on the image's grid (resized bilinearly if
    needed); a mask of another aspect ratio is an :class:`ImageError` (it would be stretched onto the
    wrong pixels)."""
    a = read_mask(path)
    if abs(a.shape[1] / a.shape[0] - size[1] / size[0]) > 0.01 * size[1] / size[0]:
        raise ImageError(
            f"{path}: mask {a.shape[1]}×{a.shape[0]} has another aspect ratio than its image "
            f"{size[1]}×{size[0]}"
        )
    if a.shape != size:
        a = (
            np.asarray(
                Image.fromarray((a * 255).astype(np.uint8)).resize(
                    (size[1], size[0]), Image.Resampling.BILINEAR
                ),
                dtype=np.float32,
            )
            / 255.0
        )
    return torch.from_numpy(a)


def _short(path: str) -> str:
    """The file and its folder (``fake/000002.png``): the name alone is ambiguous in a synth layout."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}" if p.parent.name else p.name


def _safe(s: str, n: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", s.replace("+", "p"))[-n:].strip("-.") or "x"


def case_name(image: str, method: str, layer: str, category: str) -> str:
    """File name of a gallery case: readable parts plus a hash of the exact (image, method, layer), so names
    that sanitise alike (``gradcam`` / ``gradcam++``, equal stems in two folders) never collide."""
    h = hashlib.sha1(f"{image}\0{method}\0{layer}".encode()).hexdigest()[:10]
    return f"{_safe(Path(image).stem, 30)}__{_safe(method, 24)}__{h}__{category}.png"


# ------------------------------------------------------------------------------------------------ one image


@dataclass
class ImageOutcome:
    records: list[Record]
    errors: dict[str, str]


def _rec(
    model: str, image: str, method: str, layer: str, view: ViewSpec | None, metric: str, value: float
) -> Record:
    if view is None:
        return Record(model, image, method, layer, "identity", "identity", 0.0, "none", metric, float(value))
    t, fill = view
    return Record(model, image, method, layer, t.name, t.kind, t.strength, fill, metric, float(value))


def _view_records(
    sweep: Sweep, plan: Sequence[ViewSpec], base: dict[str, str], criteria: Criteria
) -> list[Record]:
    out: list[Record] = []
    for m in sweep.methods:
        vm = sweep.view_metrics(m)
        vm["border_excess"] = vm["border_mass"] - vm["fill_fraction"]
        vm["leak"] = ((vm["border_excess"] > criteria.border_margin) & (vm["fill_fraction"] > 0.01)).double()
        for i, view in enumerate(plan):
            for metric, vals in vm.items():
                if i == 0 and metric.startswith("eq_"):
                    continue  # the identity is the reference
                out.append(_rec(base["model"], base["image"], m, base["layer"], view, metric, float(vals[i])))
        chance = M.corner_chance(sweep.hw, sweep.cell(m))
        out.append(_rec(base["model"], base["image"], m, base["layer"], plan[0], "corner_chance", chance))
    return out


def _localisation(
    sweep: Sweep, geom: Geometry, mask: Tensor, base: dict[str, str], config: TrustConfig
) -> list[Record]:
    out: list[Record] = []
    v = geom.valid_original()
    soft = mask.double().clamp(0, 1) * v
    mx = float(soft.max())
    g = soft >= config.mask_threshold * mx if mx > 0 else torch.zeros_like(v)
    share = float(g.sum()) / max(1.0, float(v.sum()))
    if not 0 < share <= MAX_MASK_SHARE:  # a whole-image (global) or empty mask points at no region:
        return out  # every map would score perfectly, or not at all
    seam = M.mask_seam(mask) * v
    for m in sweep.methods:
        raw = sweep.explanations[m].raw[:1].detach().float().clamp_min(0)
        s = geom.to_original(raw.cpu())[0]
        vals = {
            "pointing_game": M.pointing_game(s, g, v, config.pointing_tolerance),
            "energy_pointing": M.energy_pointing_game(s, g.double(), v),
            "energy_seam": M.energy_pointing_game(s, seam, v),
            "relevance_mass": M.relevance_mass_accuracy(s, g, v),
            "relevance_rank": M.relevance_rank_accuracy(s, g, v),
            "pixel_auroc": M.pixel_auroc(s, g, v),
        }
        for metric, val in vals.items():
            out.append(_rec(base["model"], base["image"], m, base["layer"], None, metric, float(val[0])))
    return out


def _faithfulness(
    detector: Detector, sweep: Sweep, pixels: Tensor, valid: Tensor, base: dict[str, str], config: TrustConfig
) -> list[Record]:
    methods = sweep.methods
    if not methods:
        return []
    sal = torch.stack([sweep.maps[m][0].detach().cpu() for m in methods])
    fn = probability_fn(detector, config.target, config.batch_size)
    di = deletion_insertion(fn, pixels, sal, valid, steps=config.steps, seed=config.seed)
    rd = road(fn, pixels, sal, valid, percentages=config.road_percentages, seed=config.seed)
    out: list[Record] = []
    for i, m in enumerate(methods):
        for key in ("deletion_black", "insertion_black", "deletion_blur", "insertion_blur"):
            out.append(_rec(base["model"], base["image"], m, base["layer"], None, key, float(di[key][i])))
        for key in ("morf", "lerf", "combined"):
            out.append(
                _rec(base["model"], base["image"], m, base["layer"], None, f"road_{key}", float(rd[key][i]))
            )
    return out


def _randomisation(
    detector: Detector,
    sweep: Sweep,
    pixels: Tensor,
    valid: Tensor,
    layers: tuple[str, ...] | None,
    base: dict[str, str],
    config: TrustConfig,
) -> list[Record]:
    methods = sweep.methods
    if not methods:
        return []
    x = detector.input_spec.normalize(pixels[None].to(detector.device))
    original = {m: sweep.explanations[m].raw[:1] for m in methods}
    stages = cascading_randomisation(
        detector,
        x,
        methods,
        original,
        layers=layers,
        target=config.target,
        valid=valid[None],
        stages=config.randomisation_stages,
        seed=42 + config.seed,
        options=config.options,
    )
    out: list[Record] = []
    for st in stages:
        for m in methods:
            for key, val in st.scores[m].items():
                out.append(
                    Record(
                        base["model"],
                        base["image"],
                        m,
                        base["layer"],
                        f"randomise:{st.layer}",
                        "randomise",
                        st.fraction,
                        "none",
                        f"rand_{key}",
                        float(val[0]),
                    )
                )
    return out


def _cases(
    sweep: Sweep,
    plan: Sequence[ViewSpec],
    pixels: Tensor,
    base: dict[str, str],
    out_dir: Path | None,
    criteria: Criteria,
) -> list[Record]:
    if out_dir is None:
        return []
    out: list[Record] = []
    black = torch.tensor([f == "black" for _, f in plan])
    for m in sweep.methods:
        vm = sweep.view_metrics(m)
        picks: list[tuple[str, int, float]] = []
        excess = (vm["border_mass"] - vm["fill_fraction"]).masked_fill(
            ~black | (vm["fill_fraction"] <= 0.01), -1
        )
        i = int(excess.argmax())
        if float(excess[i]) > criteria.border_margin:
            picks.append(("leak", i, float(excess[i])))
        corner = (vm["corner_argmax"] > 0) & black
        if bool(corner.any()):
            i = 0 if bool(corner[0]) else int(corner.nonzero()[0])
            picks.append(("corner", i, float(corner.double().mean())))
        # a view whose map is empty (no positive value) while the reference's is not has nothing to move:
        # shown as vanished (its explained score says why), not as a cosine of 0
        vanished = black & (vm["peak_to_mean"] == 0) & (float(vm["peak_to_mean"][0]) > 0)
        vanished[0] = False
        eq = vm["eq_cosine"].clone()
        eq[0] = 2.0
        eq = eq.masked_fill(~black | vanished, 2.0)
        i = int(eq.argmin())
        if float(eq[i]) < 0.9:
            picks.append(("equivariance", i, 1.0 - float(eq[i])))
        if bool(vanished.any()):
            i = int(vanished.nonzero()[0])
            picks.append(("vanished", i, float(vanished.double().mean())))
        if float(vm["flat"][0]) > 0:
            picks.append(("flat", 0, float(vm["entropy"][0])))
        for cat, i, sev in picks:
            t, fill = plan[i]
            eq_i = float(vm["eq_cosine"][i]) if i else 1.0
            peak = "yes" if vm["corner_argmax"][i] else "no"
            caption = [
                f"{m} @ {base['layer']} | {_short(base['image'])} | {t.name} ({fill} fill)",
                f"eq cos {eq_i:.2f}  border {float(vm['border_mass'][i]):.1%} "
                f"vs fill {float(vm['fill_fraction'][i]):.1%}  corner peak {peak}"
                f"  entropy {float(vm['entropy'][i]):.2f}"
                f"  explained score (log-odds) {float(vm['score'][i]):+.2f}",
            ]
            png = render_case(
                sweep.views.pixels[i].cpu(),
                sweep.maps[m][i].cpu(),
                sweep.views.valid[i].cpu(),
                pixels.cpu(),
                sweep.maps[m][0].cpu(),
                sweep.back[m][i].cpu(),
                sweep.pair_valid[i].cpu(),
                caption,
            )
            name = case_name(base["image"], m, base["layer"], cat)
            (out_dir / name).write_bytes(png)
            out.append(_rec(base["model"], base["image"], m, base["layer"], (t, fill), f"case:{cat}", sev))
    return out


def evaluate_image(
    detector: Detector,
    image: Image.Image,
    key: str,
    methods: Sequence[str],
    *,
    layers: tuple[str, ...] | None = None,
    mask: Tensor | None = None,
    config: TrustConfig | None = None,
    plan: Sequence[ViewSpec] | None = None,
    cases_dir: Path | None = None,
    label: str | None = None,
) -> ImageOutcome:
    """Every trust metric of one image for ``methods`` on one layer set → tidy records (+ ``_done`` rows);
    ``label``: the layer column of the records (default: the layers joined by ``+``)."""
    cfg = config or TrustConfig()
    if plan is None:
        fills = tuple(f for f in FILLS if f in cfg.fills)
        plan = view_plan(TransformFamily.named(cfg.family), fills)
    pixels, geom = prepare(image, detector.input_spec)
    valid = geom.valid_input()
    layer = label or "+".join(layers or detector.cam_layers)
    base = {"model": detector.name, "image": key, "layer": layer}
    sweep = run_sweep(
        detector, pixels, plan, methods, valid=valid, layers=layers, target=cfg.target, options=cfg.options
    )
    recs = _view_records(sweep, plan, base, cfg.criteria)
    if cfg.localisation and mask is not None:
        recs += _localisation(sweep, geom, mask, base, cfg)
    if cfg.faithfulness:
        recs += _faithfulness(detector, sweep, pixels, valid, base, cfg)
    if cfg.randomisation:
        recs += _randomisation(detector, sweep, pixels, valid, layers, base, cfg)
    recs += _cases(sweep, plan, pixels, base, cases_dir, cfg.criteria)
    recs += [_rec(base["model"], key, m, layer, None, DONE, 1.0) for m in sweep.methods]
    return ImageOutcome(recs, dict(sweep.errors))


# ------------------------------------------------------------------------------------------------ the run


LOCK_NAME = ".trust.lock"
"""Held (``flock``) by the run writing a folder."""

INPUT_LAYER = "input"
"""The layer column of a method that reads no layer (perturbation of the input, attention of every block)."""


def uses_layers(method: str) -> bool:
    """Whether ``method`` explains a layer (the gradient CAMs, Score-CAM, Ablation-CAM) or the whole model."""
    if method in CAMS:
        return True
    return bool(getattr(EXPLAINERS.get(method), "uses_layers", True))


def _check_layers(detector: Detector, names: Sequence[str]) -> None:
    """Every ``--layer`` exists and gives a feature map (or tokens the detector can lay out): checked on one
    blank input before the run folder exists, so a head or pooling layer is one clear error."""
    if not names:
        return
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str) -> Callable[..., None]:
        def hook(_m: Any, _a: Any, out: Any) -> None:  # returns None: the output is left as it is
            if torch.is_tensor(out):
                shapes.setdefault(name, tuple(out.shape))

        return hook

    handles = [detector.layer(n).register_forward_hook(record(n)) for n in names]
    try:
        p = next(detector.parameters(), None)
        x = torch.zeros(1, 3, *detector.input_spec.size, device=p.device if p is not None else "cpu")
        with torch.no_grad():
            detector(x)
    finally:
        for h in handles:
            h.remove()
    for n in names:
        shape = shapes.get(n)
        spatial = shape is not None and len(shape) == 4 and shape[-1] * shape[-2] > 1  # not a pooled 1×1
        ok = shape is not None and (spatial or (len(shape) == 3 and detector.token_layout is not None))
        if not ok:
            gives = "no tensor" if shape is None else f"shape {shape}"
            raise ConfigError(
                f"layer {n!r} of {detector.name!r} gives {gives}, "
                "not a feature map (B, C, h, w) or tokens (B, N, C): choose a convolutional or transformer "
                "block (the default is the model's own CAM layer)"
            )


def weights_digest(detector: Detector) -> str:
    """SHA-256 of the detector's parameters and buffers (names, dtypes, shapes, values): what tells two
    checkpoints of one architecture apart."""
    h = hashlib.sha256()
    for name, t in sorted(detector.state_dict().items()):
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _check_run(out: Path, detector: Detector, weights: str, config: TrustConfig) -> None:
    run_file = out / "run.json"
    if not (config.resume and run_file.exists() and (out / "records.csv").exists()):
        return
    try:
        prev = json.loads(run_file.read_text())
    except (OSError, ValueError):
        return
    # same name, other weights: another checkpoint of one architecture (a run without a digest: name only)
    if prev.get("model") != detector.name or prev.get("weights", weights) != weights:
        raise ConfigError(
            f"{out} holds a trust run of another model ({prev.get('model')!r}, weights "
            f"{str(prev.get('weights', '?'))[:12]}), not this {detector.name!r} (weights "
            f"{weights[:12]}): use another --out or --no-resume"
        )
    now = json.loads(json.dumps(config.numbers_key()))  # as stored: tuples of options are lists there
    if prev.get("numbers") != now:
        diff = [k for k, v in now.items() if prev.get("numbers", {}).get(k) != v]
        raise ConfigError(
            f"{out} holds a trust run with other settings ({', '.join(diff)}): "
            "use another --out or --no-resume"
        )


def unreadable_items(items: Sequence[TrustItem]) -> dict[str, str]:
    """The items that cannot be images, by key, with the reason (as ``load_image`` words it, without the
    path): missing files, pipes, and files whose first bytes are no image format we read — or the same of
    the item's mask, named (a header check: nothing is decoded, so this is cheap up front)."""
    out: dict[str, str] = {}
    for it in items:
        why = header_problem(it.path)
        if why is None and it.mask is not None and (mask_why := header_problem(it.mask)) is not None:
            why = f"its mask {it.mask}: {mask_why}"
        if why is not None:
            out[it.key] = why
    return out


def run_trust(
    detector: Detector,
    items: Sequence[TrustItem],
    out: str | os.PathLike[str],
    config: TrustConfig | None = None,
    *,
    progress: Progress | None = None,
    command: str | None = None,
) -> TrustRun:
    """Run the benchmark over ``items`` and write ``out``: ``records.csv``, ``run.json``, ``summary.json``,
    ``report.md``, ``plots/*.png``, ``cases/*.png`` and ``gallery.html``. Resumable (see
    :class:`RecordFile`). The report covers this call's methods, layers and images only; records of others
    already in ``out`` are kept, named in ``summary["left_out"]``, and not ranked."""
    from fakelens.trust.report import write_report

    require_detector(detector, "the trust benchmark")
    out = Path(out)
    if not items:
        raise ConfigError("the trust benchmark has no images to test (see discover_items)")

    cfg = config or TrustConfig()
    known = method_names()
    unknown = [m for m in cfg.methods if m not in known]
    if unknown:
        raise ConfigError(f"unknown method {unknown[0]!r} (known: {', '.join(known)})")
    bad_fills = [f for f in cfg.fills if f not in FILLS]
    if bad_fills:
        raise ConfigError(f"unknown fill {bad_fills[0]!r} (use {', '.join(FILLS)})")
    family = TransformFamily.named(cfg.family)
    layer_sets: list[tuple[str, ...] | None] = list(cfg.layer_sets) if cfg.layer_sets else [None]
    _check_layers(detector, sorted({name for ls in layer_sets for name in ls or ()}))
    resolve_target(cfg.target, detector)  # a bad target fails before the run folder exists
    check_options(cfg.options, cfg.methods)
    todo = list(items)[: cfg.limit] if cfg.limit is not None else list(items)
    bad = unreadable_items(todo)  # a header check: nothing is decoded; none readable, nothing written
    if len(bad) == len(todo):
        raise ConfigError(
            f"none of the {len(todo)} image(s) can be read: "
            + "; ".join(f"{k}: {why}" for k, why in list(bad.items())[:3])
        )
    out.mkdir(parents=True, exist_ok=True)
    # two runs into one folder would each append every record (the resume skips only what was done
    # when it started): the second is refused while the first holds the lock
    with FolderLock(
        out / LOCK_NAME,
        f"{out} is being written by another fakelens trust run: wait for it, or use another --out",
    ):
        weights = weights_digest(detector)
        _check_run(out, detector, weights, cfg)
        cases_dir = out / "cases"
        cases_dir.mkdir(exist_ok=True)
        records = RecordFile(out / "records.csv", resume=cfg.resume)
        run_info = {
            "model": detector.name,
            "weights": weights,
            "describe": detector.describe(),
            "numbers": cfg.numbers_key(),
            "config": cfg.to_dict(),
            "command": command,
            "family": [t.name for t in family],
        }
        atomic_write_text(out / "run.json", json.dumps(run_info, indent=2, default=str))
        plan = view_plan(family, tuple(f for f in FILLS if f in cfg.fills))
        run = TrustRun(out, {})
        run.skipped_images.update(bad)
        methods = list(cfg.methods)
        # methods that read no layer (occlusion, RISE, attention rollout …) run once, under the label "input",
        # not once per --layer with a layer they never used
        layered = [m for m in methods if uses_layers(m)]
        free = [m for m in methods if not uses_layers(m)]
        for item in todo:
            if item.key in run.skipped_images:
                if progress:
                    progress(1, f"{item.path.name} (skipped)")
                continue
            label_sets = [(ls, "+".join(ls or detector.cam_layers), layered) for ls in layer_sets]
            label_sets.append((layer_sets[0], INPUT_LAYER, free))
            pending = [
                (
                    ls,
                    lab,
                    [m for m in ms if m not in run.skipped_methods and not records.is_done(item.key, m, lab)],
                )
                for ls, lab, ms in label_sets
            ]
            pending = [p for p in pending if p[2]]
            if not pending:
                if progress:
                    progress(1, f"{item.path.name} (done)")
                continue
            try:
                image = load_image(item.path)
                mask = load_mask(item.mask, (image.height, image.width)) if item.mask is not None else None
            except (ImageError, OSError) as exc:  # the reason without the path the report already names
                run.skipped_images[item.key] = str(exc).removeprefix(f"{item.path}: ")
                if progress:
                    progress(1, f"{item.path.name} (skipped)")
                continue
            for ls, lab, ms in pending:
                res = evaluate_image(
                    detector,
                    image,
                    item.key,
                    ms,
                    layers=ls,
                    mask=mask,
                    config=cfg,
                    plan=plan,
                    cases_dir=cases_dir,
                    label=lab,
                )
                run.skipped_methods.update(res.errors)
                records.append(res.records)
            run.evaluated += 1
            if progress:
                progress(1, item.path.name)
        # the report covers what this command asked for, so that its "Made with" line reproduces it: records
        # of other methods, layers or images (an earlier run into this folder) stay on disk for a resume
        pairs = {(m, "+".join(ls or detector.cam_layers)) for ls in layer_sets for m in layered}
        pairs |= {(m, INPUT_LAYER) for m in free}
        keys = {it.key for it in todo}
        shown: list[Record] = []
        rest: list[Record] = []
        for r in read_records(out / "records.csv"):
            (shown if (r.method, r.layer) in pairs and r.image in keys else rest).append(r)
        info: dict[str, Any] = {
            "skipped_images": run.skipped_images,
            "skipped_methods": run.skipped_methods,
            "left_out": left_out(rest, pairs, keys),
        }
        from fakelens.trust.report import case_files

        run.summary = write_report(out, shown, run_info, cfg, info, keep_cases=case_files(rest))
        return run


def left_out(records: Sequence[Record], pairs: set[tuple[str, str]], keys: set[str]) -> dict[str, Any]:
    """What ``records`` (finished groups the report leaves out) hold that this command did not ask for: the
    (method, layer) candidates as ``method@layer``, and the number of other images."""
    done = [r for r in records if r.metric == DONE]
    return {
        "candidates": sorted({f"{r.method}@{r.layer}" for r in done if (r.method, r.layer) not in pairs}),
        "images": len({r.image for r in done if r.image not in keys}),
    }


def with_methods(config: TrustConfig, methods: Sequence[str]) -> TrustConfig:
    """``config`` with another method list."""
    return replace(config, methods=tuple(methods))
