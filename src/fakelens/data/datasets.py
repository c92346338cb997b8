"""Datasets users bring (folders, GenImage, CIFAKE, FaceForensics++ frames, CSV/JSONL manifests) and
forgeries made on the fly, as torch datasets of ``(pixels, label, mask)``.

:func:`discover` recognises a layout (see ``docs/data.md``) and lists its :class:`Sample` s; every problem
with the data is one :class:`DatasetError` line. :class:`DetectionDataset` loads samples with
:func:`fakelens.io.load_image` and fits them to a detector's :class:`~fakelens.models.base.InputSpec` with
:func:`fakelens.geometry.prepare` (after seeded augmentations in training). :class:`OnTheFlyForgeries`
makes real/fake pairs from a real-photo pool with the forgery recipes, as ``fakelens data synth`` makes them,
a new set every epoch, determined by ``(seed, epoch, index)``.

Items are ``(pixels (3, H, W) float32 in [0, 1] (not normalised), label (0 real, 1 fake), mask (1, H, W))``.
The mask is the weight of forged content on the input grid: 0 on reals, the recipe's mask on forgeries, and
-1 everywhere when unknown (a fake without a mask file), so an auxiliary loss can skip it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections import Counter, OrderedDict
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import cv2
import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from fakelens.data.augment import Augment
from fakelens.errors import FakelensError
from fakelens.geometry import Geometry, prepare, prepare_views
from fakelens.io import IMAGE_SUFFIXES, load_image, load_mask
from fakelens.models.base import InputSpec

if TYPE_CHECKING:
    from fakelens.data.pool import PoolEntry
    from fakelens.forgery.dataset import PairDrawer

__all__ = [
    "DatasetError",
    "DetectionDataset",
    "OnTheFlyForgeries",
    "Sample",
    "check_both_classes",
    "detect_layout",
    "dir_manifest",
    "discover",
    "fit_mask",
    "holdout",
    "samples_sha256",
    "select_split",
    "summarize",
]

MANIFEST_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".json")
_CLASS_DIRS = {"real": 0, "0_real": 0, "fake": 1, "1_fake": 1}
_GENIMAGE_DIRS = {"nature": 0, "ai": 1}
_SPLIT_DIRS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}
_LABELS = {"0": 0, "real": 0, "1": 1, "fake": 1}
_FF_STRUCTURE = {"images", "frames", "faces", "crops", "videos", "raw", "c0", "c23", "c40"}
_UNKNOWN_MASK = -1.0


class DatasetError(FakelensError):
    """A dataset cannot be used: unknown layout, missing column or file, empty, or a single class."""


@dataclass(frozen=True)
class Sample:
    """One image of a dataset.

    ``label`` is 0 (real) or 1 (fake); ``recipe`` names how a fake was made (generator, manipulation or
    forgery recipe; empty for reals); ``mask_path`` the forged region's mask (grey, 255 = forged) when
    known; ``source`` where the image comes from (a generator/category folder, a compression level, a pool
    photo); ``split`` ``train``/``val``/``test`` or empty; ``group`` the unit that must never straddle
    splits (a video, a source photo), empty when each image stands alone.
    """

    path: Path
    label: int
    recipe: str = ""
    mask_path: Path | None = None
    source: str = ""
    split: str = ""
    group: str = ""


# ------------------------------------------------------------------------------------------ discovery
def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES


_NOT_SAMPLES = frozenset({"__macosx", "mask", "masks", "gt", "ground_truth", "groundtruth"})
"""Folders whose files are no samples: an archive's macOS leftovers, and ground-truth mask trees (an
``images/`` + ``masks/`` layout would otherwise read every mask under ``masks/fake/`` as a fake)."""


def _walk(folder: Path) -> Iterator[tuple[Path, list[str], list[str]]]:
    """``os.walk`` in sorted order that follows symlinked folders (datasets are often link farms), each
    real folder once and never one above ``folder`` (a link loop ends, and a link back up does not read the
    other class), and skips :data:`_NOT_SAMPLES`; prune ``dirnames`` in place."""
    seen: set[str] = set()
    top = os.path.realpath(folder)
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen or top.startswith(real + os.sep):  # seen, or a link back up to an ancestor
            dirnames.clear()
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if d.lower() not in _NOT_SAMPLES)
        yield Path(dirpath), dirnames, sorted(filenames)


def _images_under(folder: Path) -> list[Path]:
    """Image files under ``folder``, sorted (see :func:`_walk`); an archive's ``._x.png`` resource forks are
    not images."""
    return [
        here / f
        for here, _, filenames in _walk(folder)
        for f in filenames
        if _is_image(Path(f)) and not f.startswith("._")
    ]


def _ff_root(root: Path) -> Path | None:
    """The folder holding ``original_sequences``/``manipulated_sequences`` (root or one level below)."""
    names = ("original_sequences", "manipulated_sequences")
    if any((root / n).is_dir() for n in names):
        return root
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        if any((child / n).is_dir() for n in names):
            return child
    return None


def dir_manifest(root: Path) -> Path | None:
    """The ``manifest.csv``/``.jsonl`` a dataset folder is read through, if it has one."""
    for name in ("manifest.csv", "manifest.jsonl"):
        if (root / name).is_file():
            return root / name
    return None


def detect_layout(root_or_manifest: str | os.PathLike[str]) -> str:
    """The layout name of a dataset path: ``manifest``, ``faceforensics``, ``genimage``, ``cifake`` or
    ``folder`` (``real/fake`` or ``0_real/1_fake``, nested generators allowed). Raises :class:`DatasetError`
    for a missing path or an unknown layout."""
    return _detect(Path(root_or_manifest))[0]


def _class_dirs(root: Path) -> list[tuple[Path, int, str]]:
    """Folders that hold one class: ``(folder, label, kind)`` with kind ``folder`` or ``genimage``."""
    found: list[tuple[Path, int, str]] = []
    for here, dirnames, _ in _walk(root):
        keep = []
        for d in dirnames:
            low = d.lower()
            if low in _CLASS_DIRS:
                found.append((here / d, _CLASS_DIRS[low], "folder"))
            elif low in _GENIMAGE_DIRS and here.name.lower() in _SPLIT_DIRS:
                found.append((here / d, _GENIMAGE_DIRS[low], "genimage"))
            else:
                keep.append(d)
        dirnames[:] = keep
    return found


def _detect(p: Path) -> tuple[str, Path]:
    if not p.exists():
        raise DatasetError(f"no such dataset file or folder: {p}")
    if p.is_file():
        if p.suffix.lower() in MANIFEST_SUFFIXES:
            return "manifest", p
        raise DatasetError(
            f"{p} is not a dataset manifest (expected .csv, .jsonl or .json with columns path,label)"
        )
    mf = dir_manifest(p)
    if mf is not None:
        return "manifest", mf
    if _ff_root(p) is not None:
        return "faceforensics", p
    dirs = _class_dirs(p)
    if not dirs:
        raise DatasetError(
            f"{p}: unknown dataset layout; expected real/ and fake/ (or 0_real/ and 1_fake/) folders, "
            "GenImage <generator>/{train,val}/{nature,ai}, CIFAKE {train,test}/{REAL,FAKE}, FaceForensics++ "
            "original_sequences/ and manipulated_sequences/, or a CSV/JSONL manifest with columns path,label"
        )
    if any(kind == "genimage" for _, _, kind in dirs):
        return "genimage", p
    cifake = all(
        d.name in ("REAL", "FAKE") and d.parent.name.lower() in ("train", "test") and d.parent.parent == p
        for d, _, _ in dirs
    )
    return ("cifake" if cifake else "folder"), p


def discover(root_or_manifest: str | os.PathLike[str], *, require_both: bool = True) -> list[Sample]:
    """List a dataset's samples, recognising its layout (:func:`detect_layout`).

    - folders ``real/fake`` or ``0_real/1_fake`` anywhere below the root (ForenSynths'
      ``<generator>/<category>/{0_real,1_fake}`` included): the first folder above the class folder names the
      generator (the fakes' ``recipe``), the folders above it the ``source``; ``train/val/test`` folders set
      the ``split``; a class folder's own sub-folders name the recipe/source when nothing above does;
    - GenImage ``<generator>/{train,val}/{nature,ai}`` and CIFAKE ``{train,test}/{REAL,FAKE}``;
    - FaceForensics++ frames: ``original_sequences/**`` real, ``manipulated_sequences/<method>/**`` fake
      (recipe = method; source = compression level; group = the people: video ``a_b`` joins ``a`` and
      ``b``), masks from ``manipulated_sequences/<method>/masks/**`` matched by video folder and frame
      name, official splits from ``splits/{train,val,test}.json`` when present;
    - a CSV or JSONL manifest (or a folder holding ``manifest.csv``/``manifest.jsonl``) with columns
      ``path,label[,mask_path][,source][,recipe][,split][,group]``; paths relative to the manifest's folder;
      labels ``real``/``fake`` or ``0``/``1``; without a ``group`` each image stands alone (``source`` only
      describes where an image comes from: grouping by it held out whole generators).

    Raises :class:`DatasetError` (one line) for a missing path, an unknown layout, a missing column or
    file, an empty dataset, and — with ``require_both`` — a dataset with a single class.
    """
    layout, p = _detect(Path(root_or_manifest))
    if layout == "manifest":
        samples = _read_manifest(p)
    elif layout == "faceforensics":
        samples = _discover_ff(p)
    else:
        samples = _discover_folders(p, layout)
    if not samples:
        raise DatasetError(
            f"{p}: no images found (layout: {layout}; suffixes: {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    if require_both:
        check_both_classes(samples, str(p))
    return samples


def check_both_classes(samples: Sequence[Sample], what: str) -> None:
    """Raise :class:`DatasetError` unless ``samples`` hold both reals and fakes."""
    if not samples:
        raise DatasetError(f"{what}: no images (too few to hold out a share of them?)")
    n_fake = sum(s.label for s in samples)
    n_real = len(samples) - n_fake
    if n_real == 0 or n_fake == 0:
        only, n = ("fake", n_fake) if n_real == 0 else ("real", n_real)
        raise DatasetError(
            f"{what}: only {only} images ({n}); training and evaluation need both real and fake images"
        )


def _discover_folders(root: Path, layout: str) -> list[Sample]:
    out: list[Sample] = []
    for folder, label, _ in _class_dirs(root):
        parts = folder.parent.relative_to(root).parts
        split = next((_SPLIT_DIRS[q.lower()] for q in reversed(parts) if q.lower() in _SPLIT_DIRS), "")
        context = [q for q in parts if q.lower() not in _SPLIT_DIRS]
        for f in _images_under(folder):
            below = f.parent.relative_to(folder).parts
            ctx = context or list(below[:1])
            source = "/".join(ctx)
            recipe = ctx[0] if (ctx and label == 1) else ""
            out.append(Sample(f, label, recipe=recipe, source=source, split=split))
    return out


def _ff_splits(ff: Path) -> dict[str, str]:
    """Video id → split from FaceForensics++'s ``splits/{train,val,test}.json`` (lists of id pairs)."""
    out: dict[str, str] = {}
    for split in ("train", "val", "test"):
        f = ff / "splits" / f"{split}.json"
        if not f.is_file():
            continue
        try:
            pairs = json.loads(f.read_text())
            for pair in pairs:
                for vid in pair if isinstance(pair, list) else [pair]:
                    out[str(vid)] = split
        except (ValueError, TypeError) as exc:
            raise DatasetError(
                f"{f} is not a FaceForensics++ split file (a JSON list of id pairs): {exc}"
            ) from None
    return out


def _ff_video(f: Path) -> str:
    """The video folder of a frame (the frame's stem when frames are not kept per video)."""
    return f.stem if f.parent.name.lower() in _FF_STRUCTURE else f.parent.name


def _discover_ff(root: Path) -> list[Sample]:
    ff = _ff_root(root)
    assert ff is not None
    splits = _ff_splits(ff)
    out: list[Sample] = []

    def info(rel: tuple[str, ...], video: str) -> tuple[str, str]:
        comp = next((q for q in rel if q.lower() in ("raw", "c0", "c23", "c40")), "")
        return comp, splits.get(video.split("_")[0], "")

    orig = ff / "original_sequences"
    if orig.is_dir():
        for f in _images_under(orig):
            video = _ff_video(f)
            comp, split = info(f.relative_to(orig).parts, video)
            out.append(Sample(f, 0, source=comp, split=split, group=video))
    manip = ff / "manipulated_sequences"
    if manip.is_dir():
        for method_dir in sorted(p for p in manip.iterdir() if p.is_dir()):
            masks: dict[tuple[str, str], Path] = {}
            if (method_dir / "masks").is_dir():
                for m in _images_under(method_dir / "masks"):
                    masks[(_ff_video(m), m.stem)] = m
            for f in _images_under(method_dir):
                rel = f.relative_to(method_dir).parts
                video = _ff_video(f)
                comp, split = info(rel, video)
                mask = masks.get((video, f.stem))
                out.append(
                    Sample(
                        f, 1, recipe=method_dir.name, mask_path=mask, source=comp, split=split, group=video
                    )
                )
    return _ff_people(out)


def _ff_people(samples: list[Sample]) -> list[Sample]:
    """Group FaceForensics++ samples by person: a manipulated video ``a_b`` shows person ``a`` with the face
    of ``b``, so the originals ``a`` and ``b`` and every video made from either share one group (the
    connected ids; FF++'s own splits keep such pairs together) — grouped by ``a`` alone, ``b``'s face sat
    in training while ``b``'s original was held out."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def people(video: str) -> list[str]:  # "000_003"; DeepFakeDetection: "01_02__meeting_serious__YVGY8LOK"
        return [p for p in video.split("__")[0].split("_") if p] or [video]

    for s in samples:
        ids = people(s.group)
        for other in ids[1:]:
            a, b = root(ids[0]), root(other)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return [replace(s, group=root(people(s.group)[0])) for s in samples]


def _parse_label(value: Any, where: str) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return int(value)
    key = str(value).strip().lower()
    if key in _LABELS:
        return _LABELS[key]
    if key in ("0.0", "1.0"):  # a CSV written by pandas from float labels
        return int(float(key))
    raise DatasetError(f"{where}: label {value!r} is not one of real, fake, 0, 1")


def _manifest_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """The columns and ``(line number, row)`` pairs of a CSV, JSONL or JSON-list manifest."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read the manifest {path}: {exc}") from None
    suffix = path.suffix.lower()
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        columns = [c.strip() for c in (reader.fieldnames or [])]
        rows = [(i + 2, {k.strip(): v for k, v in r.items() if k is not None}) for i, r in enumerate(reader)]
        return columns, rows
    items: list[tuple[int, Any]] = []
    if suffix == ".json":
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise DatasetError(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(doc, list):
            raise DatasetError(f"{path} must hold a JSON list of objects with path and label")
        items = list(enumerate(doc, start=1))
    else:
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append((i, json.loads(line)))
            except ValueError as exc:
                raise DatasetError(f"{path} line {i} is not valid JSON: {exc}") from None
    json_rows: list[tuple[int, dict[str, Any]]] = []
    seen: dict[str, None] = {}
    for i, obj in items:
        if not isinstance(obj, dict):
            raise DatasetError(f"{path} line {i}: expected a JSON object, got {type(obj).__name__}")
        json_rows.append((i, obj))
        seen.update(dict.fromkeys(obj))
    return list(seen), json_rows


def _read_manifest(path: Path) -> list[Sample]:
    columns, rows = _manifest_rows(path)
    for col in ("path", "label"):
        if col not in columns:
            hint = (
                "; it looks like a real-photo pool: train on it with --forgeries"
                if {"sha256", "licence"} <= set(columns)
                else ""
            )
            raise DatasetError(f"{path} lacks the column {col!r} (has: {', '.join(columns) or 'none'}){hint}")
    if not rows:
        raise DatasetError(f"the manifest {path} has no rows")
    base = path.parent
    out: list[Sample] = []
    missing: list[tuple[int, str]] = []
    seen: dict[Path, tuple[int, int]] = {}  # resolved file → (line, label) of its first row
    group_splits: dict[str, tuple[int, str]] = {}  # named group → (line, split) of its first row
    # a `fakelens data synth` manifest written before it had a group column (its pair column tells it):
    # a pair's real and fake share their source photo, which must stay their group
    synth_without_groups = "group" not in columns and {"pair", "source"} <= set(columns)
    for line, r in rows:
        where = f"{path.name} line {line}"
        raw = str(r.get("path") or "").strip()
        if not raw:
            raise DatasetError(f"{where}: empty path")
        f = Path(raw) if os.path.isabs(raw) else base / raw
        if not f.is_file():
            missing.append((line, raw))
            continue
        label = _parse_label(r.get("label"), where)
        first = seen.setdefault(f.resolve(), (line, label))
        if first[0] != line:  # one image twice: counted twice, or (labels differ) both real and fake
            how = "as both real and fake" if first[1] != label else "twice"
            raise DatasetError(f"{where}: {raw} is listed {how} (first on line {first[0]})")
        mraw = str(r.get("mask_path") or "").strip()
        mask = None
        if mraw:
            mask = Path(mraw) if os.path.isabs(mraw) else base / mraw
            if not mask.is_file():
                missing.append((line, mraw))
                continue
        source = str(r.get("source") or "").strip()
        split_raw = str(r.get("split") or "").strip().lower()
        if split_raw and split_raw not in _SPLIT_DIRS:  # a row that no split would ever read
            raise DatasetError(
                f"{path} line {line}: split {r.get('split')!r} is none of train, val, test "
                "(or training, validation, dev, testing; empty: the training pool)"
            )
        split = _SPLIT_DIRS.get(split_raw, "")
        named = str(r.get("group") or (source if synth_without_groups else "")).strip()
        if named:
            first_split = group_splits.setdefault(named, (line, split))
            if first_split[1] != split:  # a person in training and in the held-out split: the numbers lie
                here, there = split or "(none)", first_split[1] or "(none)"
                raise DatasetError(
                    f"{path.name} line {line}: group {named!r} is in split {here} here but in {there} on "
                    f"line {first_split[0]}: a group's images must share a split"
                )
        out.append(Sample(f, label, str(r.get("recipe") or "").strip(), mask, source, split, named))
    if missing:
        line, name = missing[0]
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DatasetError(f"{path.name} line {line}: file not found: {name}{more}")
    return out


# ------------------------------------------------------------------------------------------ selections
def select_split(samples: Sequence[Sample], split: str) -> list[Sample]:
    """The samples of one split (``train``, ``val``, ``test``); ``all`` keeps every sample."""
    if split == "all":
        return list(samples)
    return [s for s in samples if s.split == split]


def _unit_hash(key: str, seed: int) -> float:
    h = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


def holdout(samples: Sequence[Sample], fraction: float, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """Split ``samples`` into ``(keep, held_out)``: ``fraction`` of the groups held out, deterministically.

    Whole groups (``group``, else each image) go to one side, so a video or source photo never straddles
    the two. Stratified: the groups of each kind (only reals, only fakes, both) are ordered by a hash of
    ``(seed, group)`` and the first ``round(fraction · n)`` of them, at least one when there are two or more,
    are held out — so a small dataset still gets reals and fakes on both sides (a lottery per group held out
    1 image of 20, of one class).
    """
    if not 0.0 < fraction < 1.0:
        raise DatasetError(f"the validation fraction must be in (0, 1), got {fraction}")
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.group or s.path.as_posix(), []).append(s)
    strata: dict[tuple[int, ...], list[str]] = {}
    for key, members in groups.items():
        strata.setdefault(tuple(sorted({m.label for m in members})), []).append(key)
    held_keys: set[str] = set()
    for keys in strata.values():
        keys.sort(key=lambda k: _unit_hash(k, seed))
        n = len(keys)
        k = min(n - 1, max(1, round(fraction * n))) if n >= 2 else 0
        held_keys.update(keys[:k])
    keep = [s for s in samples if (s.group or s.path.as_posix()) not in held_keys]
    held = [s for s in samples if (s.group or s.path.as_posix()) in held_keys]
    return keep, held


def samples_sha256(samples: Iterable[Sample], root: str | os.PathLike[str] | None = None) -> str:
    """SHA-256 of a canonical listing of ``samples`` (path relative to ``root``, label, recipe, mask, source,
    split, group; sorted): identifies which files with which labels a model saw, not their bytes."""
    base = Path(root) if root is not None else None

    def rel(p: Path | None) -> str:
        if p is None:
            return ""
        if base is not None:
            try:
                return p.relative_to(base).as_posix()
            except ValueError:
                pass
        return p.as_posix()

    lines = sorted(
        "\t".join((rel(s.path), str(s.label), s.recipe, rel(s.mask_path), s.source, s.split, s.group))
        for s in samples
    )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def summarize(samples: Sequence[Sample]) -> dict[str, Any]:
    """Counts by label, split and recipe (JSON-ready)."""
    return {
        "n": len(samples),
        "real": sum(1 for s in samples if s.label == 0),
        "fake": sum(1 for s in samples if s.label == 1),
        "splits": dict(sorted(Counter(s.split or "-" for s in samples).items())),
        "recipes": dict(sorted(Counter(s.recipe or "-" for s in samples if s.label == 1).items())),
        "masks": sum(1 for s in samples if s.mask_path is not None),
    }


# ------------------------------------------------------------------------------------------ fitting
def fit_mask(mask: np.ndarray | None, geom: Geometry, *, known: bool = True) -> Tensor:
    """Carry a float mask ``(H0, W0)`` onto the input grid exactly as :func:`~fakelens.geometry.prepare`
    carries pixels (one bilinear Pillow resize of the source box into the content box, zero padding)
    → ``(1, H, W)`` float32. ``mask=None`` gives zeros when ``known`` (a real), else -1 (unknown)."""
    h, w = geom.input_size
    if mask is None:
        return torch.full((1, h, w), 0.0 if known else _UNKNOWN_MASK, dtype=torch.float32)
    left, top, right, bottom = geom.content_box
    im = Image.fromarray(np.ascontiguousarray(mask, dtype=np.float32), mode="F")
    content = np.asarray(
        im.resize((right - left, bottom - top), Image.Resampling.BILINEAR, box=geom.source_box), np.float32
    )
    out = torch.zeros((1, h, w), dtype=torch.float32)
    out[0, top:bottom, left:right] = torch.from_numpy(np.clip(content, 0.0, 1.0).copy())
    return out


def _load_mask(path: Path, size_hw: tuple[int, int]) -> np.ndarray:
    """A grey mask file as float32 in [0, 1] at ``size_hw`` (resized when the file's size differs, e.g. a
    half-resolution mask; a mask of another shape belongs to another image and is an error)."""
    m = load_mask(path)
    if abs(m.shape[0] * size_hw[1] - m.shape[1] * size_hw[0]) > 0.02 * m.shape[1] * size_hw[0]:
        raise DatasetError(
            f"the mask {path} is {m.shape[1]}×{m.shape[0]} px but its image is {size_hw[1]}×{size_hw[0]}: "
            "another aspect ratio, so it cannot be this image's mask"
        )
    if m.shape != size_hw:
        m = np.asarray(cv2.resize(m, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_LINEAR), np.float32)
    return m


class Views(NamedTuple):
    """A batch of images read as several views each: ``pixels (ΣV, 3, H, W)``, ``counts (B,)``."""

    pixels: Tensor
    counts: Tensor


def collate_views(batch: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Collate items whose pixels are ``(V, 3, H, W)`` views (``max_tiles`` datasets): the pixels become one
    :class:`Views`, the other fields collate as usual."""
    views = [item[0] for item in batch]
    rest = default_collate([item[1:] for item in batch])
    counts = torch.tensor([v.shape[0] for v in views])
    return [Views(torch.cat(views), counts), *rest]


def _fit(
    image: np.ndarray | Image.Image,
    mask: np.ndarray | None,
    spec: InputSpec,
    augment: Augment | None,
    rng: np.random.Generator | None,
    known: bool,
    max_tiles: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Augment (if asked) and prepare one image and its mask → ``(pixels, mask)`` on the input grid. With
    ``max_tiles``, a ``native`` spec and no augmentation the pixels are every view inference reads,
    ``(V, 3, H, W)`` (:func:`~fakelens.geometry.prepare_views`), and the mask is the single view's."""
    if augment is not None and not augment.identity and rng is not None:
        arr = np.asarray(image, dtype=np.uint8) if isinstance(image, Image.Image) else image
        h, w = spec.size
        arr, mask, _ = augment(arr, rng, mask, aspect=w / h)
        pil = Image.fromarray(arr, "RGB")
        fit_spec = replace(spec, mode="resize")
    else:
        pil = image if isinstance(image, Image.Image) else Image.fromarray(image, "RGB")
        fit_spec = spec
    if max_tiles is not None and augment is None and spec.mode == "native":
        pixels = prepare_views(pil, fit_spec, max_tiles=max_tiles)[0]
        geom = Geometry.fit((pil.height, pil.width), fit_spec.size, fit_spec.mode)
    else:
        pixels, geom = prepare(pil, fit_spec)
    return pixels, fit_mask(mask, geom, known=known)


class DetectionDataset(Dataset[tuple[Any, ...]]):
    """Samples loaded with :func:`~fakelens.io.load_image` and fitted to ``spec``.

    With ``augment`` (training) each item is augmented by a generator seeded with ``(seed, epoch, index)``
    (:meth:`set_epoch` before each epoch) and resized to the input size; without it (evaluation) it is
    prepared exactly as inference prepares it. With ``with_info`` items carry ``recipe`` and ``source`` too;
    ``load_masks=False`` skips reading mask files (evaluation needs none; fakes then get the unknown mask);
    ``max_tiles`` (evaluation) makes the pixels every view inference reads, ``(V, 3, H, W)`` — several native
    tiles for a large image and a ``native`` spec — to be batched with :func:`collate_views`.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        spec: InputSpec,
        *,
        augment: Augment | None = None,
        seed: int = 0,
        with_info: bool = False,
        load_masks: bool = True,
        max_tiles: int | None = None,
    ) -> None:
        self.samples = list(samples)
        self.max_tiles = max_tiles
        self.load_masks = load_masks
        self.spec = spec
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0
        self.with_info = with_info

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        s = self.samples[index]
        img = load_image(s.path)
        mask = None
        if s.mask_path is not None and self.load_masks:
            mask = _load_mask(s.mask_path, (img.height, img.width))
            if s.label == 0 and float(mask.max()) > 0.5:  # a manipulated region in a real image?
                raise DatasetError(
                    f"{s.path} is labelled real, but its mask {s.mask_path} marks a forged region"
                )
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.augment is not None else None
        known = s.label == 0 or mask is not None
        pixels, m = _fit(img, mask, self.spec, self.augment, rng, known, self.max_tiles)
        item: tuple[Any, ...] = (pixels, s.label, m)
        return (*item, s.recipe, s.source) if self.with_info else item


# ------------------------------------------------------------------------------------------ on the fly
@dataclass(frozen=True)
class _Pair:
    real: np.ndarray
    fake: np.ndarray
    mask: np.ndarray
    recipe: str
    source: str
    params: dict[str, Any] = field(default_factory=dict)
    """The fake's drawn parameters, as ``data synth`` records them (``crop_scale``, ``donor``, ...)."""


_SPLIT_CODE = {"train": 1, "val": 2, "test": 3}


class OnTheFlyForgeries(Dataset[tuple[Any, ...]]):
    """Real/fake pairs made from a real-photo pool with forgery recipes, new every epoch.

    Item ``2k`` is the real and ``2k + 1`` the fake of pair ``k``. Pair ``k`` of epoch ``e`` is drawn from a
    generator seeded with ``(seed, e, k, split)``: its recipe is ``recipes[k % len(recipes)]``, its photo
    comes from the pool's ``split`` (:func:`fakelens.data.pool.pool_splits` with ``split_fractions`` and
    ``split_seed``, as :func:`fakelens.forgery.synth` deals them: people and photos never cross splits,
    photos with faces reach every split), donors from the same split. The pair is drawn as
    ``fakelens data synth`` draws its pairs, by the same code
    (:class:`fakelens.forgery.dataset.PairDrawer`): face-centred with probability ``face_prob`` for face
    recipes, a crop never enlarged where the photo's short side reaches ``size``, a cross-blend face target
    given the donor face of the split that fits its pose, a crop the recipe cannot change (as the final
    encoding leaves it) replaced by another draw; photos load at most ``max_side`` px (default
    ``max(768, 4 * size)``). Both images leave through :func:`~fakelens.forgery.encode.encode_pair`
    (``fmt``, ``quality``). The pair then gets the
    *same* augmentation draw. Iterate it in order (no shuffling: pairs are random already, and the two
    images of a pair share a batch; the last pair is cached). ``fixed=True`` ignores :meth:`set_epoch`
    (validation and test sets). ``exclude`` (sha256 of photos) leaves those photos out of the split, e.g. the
    photos a model was trained on when the pool has grown and its photos were dealt anew
    (:func:`fakelens.models.checkpoint.training_photos`); ``excluded`` counts them. ``max_tiles``: as for
    :class:`DetectionDataset`.
    """

    def __init__(
        self,
        pool: str | os.PathLike[str],
        recipes: str | Sequence[str] | None = None,
        seed: int = 0,
        *,
        spec: InputSpec,
        split: str = "train",
        pairs: int = 512,
        size: int = 256,
        augment: Augment | None = None,
        fmt: str = "png",
        quality: int = 90,
        face_prob: float = 0.7,
        split_fractions: Sequence[float] = (0.7, 0.15, 0.15),
        split_seed: int = 0,
        fixed: bool = False,
        with_info: bool = False,
        max_side: int | None = None,
        cache_photos: int = 512,
        exclude: Collection[str] = (),
        max_tiles: int | None = None,
    ) -> None:
        from fakelens.data.pool import load_pool, pool_splits
        from fakelens.forgery.encode import extension
        from fakelens.forgery.recipes import parse_recipes

        if pairs < 1:
            raise DatasetError(f"the number of forgery pairs must be at least 1, got {pairs}")
        if size < 32:
            raise DatasetError(f"the forgery crop size must be at least 32, got {size}")
        extension(fmt)
        self.specs = tuple(parse_recipes(recipes))
        p = Path(pool)
        self.pool_dir = p.parent if p.suffix == ".json" else p
        entries = load_pool(p)
        if not entries:
            raise DatasetError(f"the pool at {self.pool_dir} has no photographs")
        splits = pool_splits(entries, split_fractions, split_seed)
        in_split = [e for e in entries if splits[e.path] == split]
        self.entries = [e for e in in_split if e.sha256 not in exclude]
        self.excluded = len(in_split) - len(self.entries)
        if not self.entries:
            counts = Counter(splits.values())
            seen = f"; {self.excluded} left out as photos a model was trained or validated on"
            raise DatasetError(
                f"the pool at {self.pool_dir} has no photographs in split {split!r} "
                f"(train {counts['train']}, val {counts['val']}, test {counts['test']}"
                f"{seen if self.excluded else ''}); use a larger pool or other --split-fractions"
            )
        self.split = split
        self.seed = int(seed)
        self.spec = spec
        self.max_tiles = max_tiles
        self.pairs = int(pairs)
        self.size = int(size)
        self.augment = augment
        self.fmt = fmt.lower().replace("jpg", "jpeg")
        self.quality = int(quality)
        self.face_prob = float(face_prob)
        self.fixed = fixed
        self.with_info = with_info
        self.max_side = int(max_side or max(768, 4 * size))
        self.cache_photos = cache_photos
        self.epoch = 0
        self._photos: OrderedDict[str, tuple[np.ndarray, float]] = OrderedDict()
        self._recipes: dict[str, Any] = {}
        self._last: tuple[tuple[int, int], _Pair] | None = None
        self._drawer: PairDrawer | None = None

    # pickling for DataLoader workers: drop caches (and the drawer, which holds a bound method of self)
    def __getstate__(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["_photos"] = OrderedDict()
        d["_recipes"] = {}
        d["_last"] = None
        d["_drawer"] = None
        return d

    @property
    def recipes(self) -> tuple[str, ...]:
        return self.specs

    def set_epoch(self, epoch: int) -> None:
        if not self.fixed:
            self.epoch = int(epoch)

    def __len__(self) -> int:
        return 2 * self.pairs

    def _photo(self, entry: PoolEntry) -> tuple[np.ndarray, float]:
        """A pool photo downscaled to at most ``max_side`` and the scale applied (an LRU cache)."""
        from fakelens.data.pool import load_pool_image

        hit = self._photos.get(entry.path)
        if hit is not None:
            self._photos.move_to_end(entry.path)
            return hit
        img = load_pool_image(self.pool_dir, entry)
        h, w = img.shape[:2]
        s = min(1.0, self.max_side / max(h, w))
        if s < 1.0:
            img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
        self._photos[entry.path] = (img, s)
        while len(self._photos) > self.cache_photos:
            self._photos.popitem(last=False)
        return img, s

    def _pair_drawer(self) -> PairDrawer:
        if self._drawer is None:
            from fakelens.forgery.dataset import PairDrawer

            self._drawer = PairDrawer(
                self.entries,
                {e.path: self.split for e in self.entries},  # donors: this split's photos, as synth's
                self._photo,
                size=self.size,
                face_prob=self.face_prob,
                fmt=self.fmt,
                quality=self.quality,
                max_side=self.max_side,
            )
        return self._drawer

    def pair(self, k: int) -> _Pair:
        """Pair ``k`` of the current epoch (cached: the real and the fake of a pair are made once)."""
        key = (self.epoch, k)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        from fakelens.forgery.encode import decode, encode_pair
        from fakelens.forgery.recipes import make_recipe

        rng = np.random.default_rng([self.seed, self.epoch, k, _SPLIT_CODE.get(self.split, 0)])
        spec = self.specs[k % len(self.specs)]
        recipe = self._recipes.get(spec)
        if recipe is None:
            recipe = self._recipes[spec] = make_recipe(spec)
        drawn = self._pair_drawer().make(k, rng, recipe)
        real, fake = drawn.real, drawn.fake
        if drawn.fmt != "png":  # a PNG round trip is the identity
            rb, fb = encode_pair(real, fake, drawn.fmt, self.quality)
            real, fake = decode(rb), decode(fb)
        pair = _Pair(real, fake, drawn.mask.astype(np.float32), drawn.recipe, drawn.source, drawn.params)
        self._last = (key, pair)
        return pair

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        k, is_fake = divmod(int(index), 2)
        pair = self.pair(k)
        image = pair.fake if is_fake else pair.real
        mask = pair.mask if is_fake else np.zeros_like(pair.mask)
        rng = (
            np.random.default_rng([self.seed, self.epoch, k, _SPLIT_CODE.get(self.split, 0), 7])
            if self.augment is not None
            else None
        )
        pixels, m = _fit(image, mask, self.spec, self.augment, rng, True, self.max_tiles)
        item: tuple[Any, ...] = (pixels, int(is_fake), m)
        return (*item, pair.recipe if is_fake else "", pair.source) if self.with_info else item
