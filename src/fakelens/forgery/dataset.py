"""Dataset builder: real/fake pairs with masks from the real-photo pool, and a contact sheet to look at.

Each sample ``i`` is generated from its own generator seeded by ``(seed, i)``, so the output does not depend
on the number of workers. A sample is a *pair*: one crop of a pool photograph (face-centred for face recipes
when the pool has faces), its fake, and the mask; both images pass through the same final encoding
(:func:`~fakelens.forgery.encode.encode_pair`). Layout of ``out``::

    real/000000.png  fake/000000.png  mask/000000.png  ...  manifest.csv  synth.json  contact_sheet.png

``manifest.csv`` has the columns ``path,label,recipe,mask_path,source,group,split,pair,params`` (paths
relative to ``out``; ``label`` is ``real`` or ``fake``; ``recipe`` is empty for reals; ``source`` is the pool
path of the photograph and ``group`` its pool photo group, which a hold-out and a bootstrap keep whole;
``split`` comes from :func:`fakelens.data.pool.pool_splits`, so people and photos never cross
splits, and cross-image donors are drawn from the same split; ``params``, on fake rows, is the JSON of the
recipe's drawn parameters — e.g. ``q1`` and ``shift`` of a double JPEG — with ``donor``, the pool path of a
cross-image donor, and ``pose_error``, how well an aligned donor face fits, below). ``crop_scale``, in the
``params`` of both rows, is the pair's resize factor from the pool photo: a crop side is never below
``size`` where the photo's short side allows it, so a value above 1 (a bicubic enlargement, whose
interpolation traces the upsample and resample recipes teach as fake) only comes from photos smaller than
``size``: filter on it to leave them out. A face target of ``cross_blend`` takes its donor face by pose
among every face of its split (its own left out): at random among those within 25 % of the best landmark
fit (:func:`pose_errors`), the target drawn again, up to ``POSE_TRIES`` times, while no face fits within
``POSE_FIT`` (``pose_draws`` counts the draws). The images of a pair share one format: ``synth.json``'s
``format``, except the double-JPEG pairs, which are always JPEG (``counts.formats`` counts the pairs per
format). With JPEG output the final encoding also changes pixels outside the mask: the 4:2:0 chroma is
coded in 16×16 blocks and upsampled, so pixels up to 16 px from it along each axis — a square band, up to
about 23 px diagonally (dilate the mask with a 33×33 square, or leave that band out, when scoring
localisation on JPEG pairs).
Masks are 8-bit PNGs: ``round(255·M)``, with every nonzero weight stored as at least 1, so a stored 0 means
the pixel was not touched before encoding.

The pairs are drawn by :class:`PairDrawer`, which also makes the forgeries ``fakelens train`` and
``fakelens evaluate`` draw on the fly (``--forgeries``): training and evaluation see the pairs synth writes.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import shutil
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fakelens.data.faces import Face
from fakelens.data.pool import PoolEntry, load_pool, load_pool_image, manifest_path, pool_splits
from fakelens.errors import ConfigError, ForgeryError
from fakelens.forgery.encode import encode_pair, extension
from fakelens.forgery.recipes import Recipe, make_recipe, parse_recipes
from fakelens.io import atomic_write_bytes, load_image, load_mask, save_image_atomic

__all__ = [
    "MANIFEST_COLUMNS",
    "PairDrawer",
    "Sample",
    "SynthResult",
    "contact_sheet",
    "contact_sheet_image",
    "crop_photo",
    "mask_to_png",
    "synth",
]

MANIFEST_COLUMNS = ("path", "label", "recipe", "mask_path", "source", "group", "split", "pair", "params")
MAX_SIDE = 1536  # pool photos are downscaled to this on load: crops at 256 px never need more


@dataclass(frozen=True)
class _Config:
    pool_dir: str
    out: str
    recipes: tuple[str, ...]
    seed: int
    size: int
    fmt: str
    quality: int
    face_prob: float


@dataclass
class Sample:
    """One generated pair before writing: arrays plus provenance."""

    index: int
    real: np.ndarray
    fake: np.ndarray
    mask: np.ndarray
    recipe: str
    source: str
    split: str
    fmt: str
    params: dict[str, Any] = field(default_factory=dict)
    group: str = ""


@dataclass
class SynthResult:
    out: Path
    manifest: Path
    n: int
    recipes: dict[str, int]
    splits: dict[str, int]
    contact_sheet: Path | None = None
    formats: dict[str, int] = field(default_factory=dict)
    """Pairs per final format (``png``/``jpeg``), as ``synth.json``'s ``counts.formats``."""
    redrawn: int = 0
    """Pairs whose first crop the recipe could not change (``counts.redrawn``; ``params["redrawn"]``)."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out"], d["manifest"] = str(self.out), str(self.manifest)
        d["contact_sheet"] = None if self.contact_sheet is None else str(self.contact_sheet)
        return d


# ----------------------------------------------------------------------------------------------- writing
def mask_to_png(mask: np.ndarray) -> bytes:
    """Encode a float mask as an 8-bit grey PNG; every nonzero weight is stored as at least 1."""
    q = np.where(mask > 0, np.maximum(1, np.rint(mask * 255.0)), 0).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(q, "L").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------ crops
def crop_photo(
    image: np.ndarray,
    faces: Sequence[Face],
    rng: np.random.Generator,
    size: int,
    face: Face | None = None,
    *,
    min_side: int | None = None,
) -> tuple[np.ndarray, list[Face]]:
    """A square crop resized to ``size``: around ``face`` (1.8–2.8× its size, jittered) or at random
    (45–100 % of the short side), never smaller than ``min_side`` (default ``size``; 0: no floor) where the
    photo allows, so a crop is not enlarged unless the photo's short side is below ``size``. Returns the
    crop and the faces whose landmarks lie inside it."""
    crop, inside, _, _ = _crop(image, faces, rng, size, face, size if min_side is None else min_side)
    return crop, inside


def _crop(
    image: np.ndarray,
    faces: Sequence[Face],
    rng: np.random.Generator,
    size: int,
    face: Face | None,
    min_side: int,
) -> tuple[np.ndarray, list[Face], float, Face | None]:
    """:func:`crop_photo`, the resize factor applied (``size`` / crop side: above 1, an enlargement) and
    ``face`` in the crop (None when its landmarks left it)."""
    h, w = image.shape[:2]
    short = min(h, w)
    if face is not None:
        side = face.size * rng.uniform(1.8, 2.8)
        cx, cy = face.center
        cx += rng.uniform(-0.1, 0.1) * side
        cy += rng.uniform(-0.1, 0.1) * side
    else:
        side = rng.uniform(0.45, 1.0) * short
        cx = rng.uniform(side / 2, w - side / 2) if w > side else w / 2
        cy = rng.uniform(side / 2, h - side / 2) if h > side else h / 2
    s = round(min(max(side, 8.0, float(min_side)), short))
    x0 = int(np.clip(round(cx - s / 2), 0, w - s))
    y0 = int(np.clip(round(cy - s / 2), 0, h - s))
    crop = image[y0 : y0 + s, x0 : x0 + s]
    interp = cv2.INTER_AREA if s > size else cv2.INTER_CUBIC
    out = cv2.resize(crop, (size, size), interpolation=interp) if s != size else crop.copy()
    scale = size / s
    moved = [f.transformed(scale, -x0 * scale, -y0 * scale) for f in faces]
    centre = None if face is None else face.transformed(scale, -x0 * scale, -y0 * scale)
    centre = centre if centre is not None and centre.inside(size, size) else None
    return np.ascontiguousarray(out), [f for f in moved if f.inside(size, size)], scale, centre


# ---------------------------------------------------------------------------------------- drawing a pair
Loader = Callable[[PoolEntry], tuple[np.ndarray, float]]
"""A pool photo downscaled on load (to the drawer's ``max_side``) and the scale applied."""


def _usable(f: Face, entry: PoolEntry, size: int, scale: float = 1.0) -> bool:
    """A face large enough to centre a crop on (≥ size/4 after loading) with its landmarks in the photo."""
    return f.size * scale >= size / 4 and f.inside(entry.width, entry.height)


@dataclass
class _Pick:
    """A drawn photo and its crop: the faces inside it, the face centred on (or None), the crop's resize
    factor from the pool photo (above 1: enlarged), the face's index in ``entry.faces`` and the face in
    the crop."""

    entry: PoolEntry
    crop: np.ndarray
    faces: list[Face]
    centre: Face | None
    scale: float
    index: int = -1
    in_crop: Face | None = None


@dataclass
class _SplitFaces:
    """Every usable face of a split, for the pose search: (M, 5, 2) landmarks on the pool photo, the
    position of each face's photo in the split's entry list and its index in that photo's ``faces``."""

    points: np.ndarray
    owner: np.ndarray
    index: np.ndarray


POSE_FIT = 0.08
"""Largest landmark misfit of a cross-image donor face: the mean distance of its five landmarks, aligned to
the target face's by the best similarity, over the target face's size. Above it a frontal face lands on a
profile (visibly broken); a target face with no donor within it in its split is drawn again."""
POSE_TRIES = 8
REDRAWS = 8
"""Pairs drawn for one sample when the recipe cannot change the crop (:class:`ForgeryError`)."""


def pose_errors(donors: np.ndarray, target: np.ndarray, size: float) -> np.ndarray:
    """Landmark misfit of (N, 5, 2) donor landmarks to (5, 2) target landmarks: mean distance after the
    least-squares similarity (rotation, scale, shift; no mirroring) over ``size`` → (N,)."""
    a = donors.astype(np.float64) - donors.mean(axis=1, keepdims=True)
    b = target.astype(np.float64) - target.mean(axis=0)
    za, zb = a[..., 0] + 1j * a[..., 1], b[:, 0] + 1j * b[:, 1]
    c = (np.conj(za) * zb).sum(axis=1) / np.maximum((np.abs(za) ** 2).sum(axis=1), 1e-12)
    return np.abs(c[:, None] * za - zb).mean(axis=1) / max(size, 1.0)


class PairDrawer:
    """Draws real/fake pairs from pool photos: the one way pairs are made, for ``fakelens data synth``
    (:func:`synth`) and for the forgeries ``train``/``evaluate --forgeries`` make on the fly
    (:class:`fakelens.data.datasets.OnTheFlyForgeries`).

    ``entries`` are the photos targets are drawn from; ``splits`` (path → split, for every entry) keeps a
    donor in its target's split; ``load`` gives a photo downscaled to at most ``max_side`` and the scale
    applied. A pair is one crop of a photo (face-centred with probability ``face_prob`` for face recipes,
    when the photos have faces), never enlarged where the photo's short side reaches ``size``
    (``params["crop_scale"]``), its fake and the mask. A face target of a cross-image recipe takes its
    donor face by pose among every face of its split (:data:`POSE_FIT`, :data:`POSE_TRIES`,
    ``params["pose_error"]``); other targets take a donor photo of another photo group when the split has
    one. The change a fake makes is measured after the final encoding (``fmt`` — a recipe's own final
    format first — at ``quality``), and a crop the recipe cannot change is replaced by another draw
    (:data:`REDRAWS`, ``params["redrawn"]``). Everything is drawn from the ``rng`` passed in.
    """

    def __init__(
        self,
        entries: Sequence[PoolEntry],
        splits: dict[str, str],
        load: Loader,
        *,
        size: int,
        face_prob: float,
        fmt: str = "png",
        quality: int = 90,
        max_side: int = MAX_SIDE,
    ) -> None:
        self.entries = list(entries)
        self.splits = splits
        self.load = load
        self.size = int(size)
        self.face_prob = float(face_prob)
        self.fmt = fmt
        self.quality = int(quality)
        self.max_side = int(max_side)
        self._split: dict[str, list[PoolEntry]] = {}
        self._position: dict[str, int] = {}  # a photo's place in its split's list
        for e in self.entries:
            same = self._split.setdefault(splits[e.path], [])
            self._position[e.path] = len(same)
            same.append(e)
        self._has_face = {e.path for e in self.entries if any(_usable(f, e, self.size) for f in e.faces)}
        self._face_entries = [e for e in self.entries if e.path in self._has_face]
        self._faces: dict[str, _SplitFaces | None] = {}

    # ------------------------------------------------------------------------------------------ pieces
    def _pick(
        self,
        rng: np.random.Generator,
        cands: list[PoolEntry],
        want_face: bool,
        avoid: tuple[str, Face] | None = None,
    ) -> _Pick:
        """Draw a photo and crop it, face-centred when asked and possible (never on ``avoid``, a face of
        a photo: a donor is another face)."""
        if cands is self.entries:
            face_cands = self._face_entries
        else:
            face_cands = [e for e in cands if e.path in self._has_face]
        use_face = want_face and bool(face_cands)
        pool = face_cands if use_face else cands
        entry = pool[int(rng.integers(len(pool)))]
        img, s = self.load(entry)
        faces = [f.transformed(s, 0, 0) for f in entry.faces]
        centre, index = None, -1
        if use_face:
            big = [
                (i, f)
                for i, f in enumerate(faces)
                if _usable(entry.faces[i], entry, self.size, s)
                and (avoid is None or (entry.path, f.box) != (avoid[0], avoid[1].box))
            ]
            if big:
                index, centre = big[int(rng.integers(len(big)))]
        crop, inside, scale, moved = _crop(img, faces, rng, self.size, centre, self.size)
        ok = centre is not None and moved is not None
        return _Pick(entry, crop, inside, centre if ok else None, scale * s, index if ok else -1, moved)

    def _split_faces(self, split: str) -> _SplitFaces | None:
        """The usable faces of ``split`` (at the scale their photos load at), gathered once."""
        if split not in self._faces:
            owner, index, points = [], [], []
            for j, e in enumerate(self._split[split]):
                s = min(1.0, self.max_side / max(e.width, e.height))
                for i, f in enumerate(e.faces):
                    if _usable(f, e, self.size, s):
                        owner.append(j)
                        index.append(i)
                        points.append(f.points())
            self._faces[split] = (
                _SplitFaces(np.stack(points), np.asarray(owner), np.asarray(index)) if points else None
            )
        return self._faces[split]

    def _fitting_donor(
        self, rng: np.random.Generator, target: _Pick, split: str, own_photo: bool
    ) -> tuple[PoolEntry, Face, float] | None:
        """The donor face for a face target, chosen by pose among every usable face of its split (the
        target's own face left out, and its photo's other faces unless ``own_photo``): one at random among
        those within 25 % of the best fit. ``None`` when there is none."""
        assert target.centre is not None
        faces = self._split_faces(split)
        if faces is None:
            return None
        same = self._split[split]
        here = self._position[target.entry.path]
        keep = (faces.owner != here) | (faces.index != target.index if own_photo else False)
        rows = np.flatnonzero(keep)
        if not len(rows):
            return None
        errors = pose_errors(faces.points[rows], target.centre.points(), target.centre.size)
        best = float(errors.min())
        near = np.flatnonzero(errors <= 1.25 * best + 1e-9)
        k = int(near[int(rng.integers(len(near)))])
        entry = same[int(faces.owner[rows[k]])]
        return entry, entry.faces[int(faces.index[rows[k]])], float(errors[k])

    # -------------------------------------------------------------------------------------------- pairs
    def make(self, index: int, rng: np.random.Generator, recipe: Recipe) -> Sample:
        """Pair ``index``: a pair whose fake differs from its real as written (the final encoding); a crop
        the recipe cannot change is replaced by another draw (``params["redrawn"]`` counts them)."""
        for k in range(REDRAWS):
            try:
                sample = self.draw(index, rng, recipe)
            except ForgeryError as exc:
                if k == REDRAWS - 1:
                    raise ForgeryError(
                        f"pair {index}: {REDRAWS} crops in a row could not be forged: {exc}"
                    ) from None
                continue
            if k:
                sample.params["redrawn"] = k
            return sample
        raise AssertionError("unreachable")

    def draw(self, index: int, rng: np.random.Generator, recipe: Recipe) -> Sample:
        """One draw of pair ``index`` (:class:`ForgeryError` when the recipe cannot change the crop)."""
        want_face = recipe.uses_faces and rng.random() < self.face_prob
        # A face target of a cross-image recipe takes the donor face whose pose fits it best, among the faces
        # of its split; a target no face fits (POSE_FIT) is drawn again, and after POSE_TRIES the best fit
        # drawn is kept (params: pose_error).
        best: tuple[_Pick, bool, tuple[PoolEntry, Face, float]] | None = None
        own_photo = True
        tries = 0
        while True:
            tries += 1
            target = self._pick(rng, self.entries, want_face)
            split = self.splits[target.entry.path]
            if not recipe.uses_donor or target.centre is None:
                break
            # Donors come from the same split. A face target takes a face donor, from any photo of the
            # split (another person of the same group photo included); other targets prefer another photo
            # group.
            many = sum(_usable(f, target.entry, self.size) for f in target.entry.faces) >= 2
            own_photo = many or len(self._split[split]) == 1
            found = self._fitting_donor(rng, target, split, own_photo)
            if found is not None and (best is None or found[2] < best[2][2]):
                best = (target, own_photo, found)
            if found is None or found[2] <= POSE_FIT or tries == POSE_TRIES:
                break
        fit = None
        if best is not None:
            target, own_photo, fit = best
        entry, centre = target.entry, target.centre
        split = self.splits[entry.path]
        donor = donor_faces = None
        extra: dict[str, Any] = {}
        if recipe.uses_donor:
            if centre is not None and fit is not None:
                donor_entry, donor_face, _ = fit
                img, s = self.load(donor_entry)
                moved = donor_face.transformed(s, 0, 0)
                donor, donor_faces, _, _ = _crop(img, [moved], rng, self.size, moved, self.size)
                if tries > 1:
                    extra["pose_draws"] = tries
            else:
                same = self._split[split]
                if centre is None:  # another photo group when the split has one
                    cands = [e for e in same if e.group != entry.group] or same
                else:
                    cands = [e for e in same if own_photo or e.path != entry.path]
                avoid = None if centre is None else (entry.path, centre)
                d = self._pick(rng, cands, centre is not None, avoid)
                donor_entry, donor, donor_faces = d.entry, d.crop, d.faces
            extra["donor"] = donor_entry.path
        faces = target.faces if recipe.uses_faces else None
        if recipe.uses_donor and fit is not None and target.in_crop is not None:
            faces = [target.in_crop]  # the face the donor was chosen for is the face replaced
        fmt = recipe.final_format or self.fmt
        forgery = recipe.apply(
            target.crop,
            rng,
            faces=faces,
            donor=donor,
            donor_faces=donor_faces,
            encoding=(fmt, self.quality),
        )
        params = {**forgery.params, **extra, "crop_scale": round(target.scale, 4)}
        return Sample(
            index,
            target.crop,
            forgery.fake,
            forgery.mask,
            forgery.recipe,
            entry.path,
            split,
            fmt,
            params,
            entry.group or entry.path,
        )


# -------------------------------------------------------------------------------------------- the worker
_STATE: dict[str, Any] = {}


def _init_worker(cfg: _Config, entries: list[dict[str, Any]], splits: dict[str, str]) -> None:
    import contextlib

    with contextlib.suppress(Exception):
        cv2.setNumThreads(1)
    _STATE.clear()
    _STATE["cfg"] = cfg
    _STATE["drawer"] = PairDrawer(
        [PoolEntry.from_dict(e) for e in entries],
        splits,
        _load_entry,
        size=cfg.size,
        face_prob=cfg.face_prob,
        fmt=cfg.fmt,
        quality=cfg.quality,
    )
    _STATE["recipes"] = {s: make_recipe(s) for s in cfg.recipes}
    _load.cache_clear()


@functools.lru_cache(maxsize=160)
def _load(pool_dir: str, path: str) -> tuple[np.ndarray, float]:
    """A pool photo downscaled to at most MAX_SIDE, and the scale applied."""
    entry = next(e for e in _STATE["drawer"].entries if e.path == path)
    img = load_pool_image(Path(pool_dir), entry)
    h, w = img.shape[:2]
    s = min(1.0, MAX_SIDE / max(h, w))
    if s < 1.0:
        img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    return img, s


def _load_entry(entry: PoolEntry) -> tuple[np.ndarray, float]:
    return _load(_STATE["cfg"].pool_dir, entry.path)


def _make(index: int) -> Sample:
    """Sample ``index`` of the synth run in ``_STATE``, from its own generator ``(seed, index)``."""
    cfg: _Config = _STATE["cfg"]
    rng = np.random.default_rng([cfg.seed, index])
    recipe: Recipe = _STATE["recipes"][cfg.recipes[index % len(cfg.recipes)]]
    drawer: PairDrawer = _STATE["drawer"]
    return drawer.make(index, rng, recipe)


def _write(sample: Sample, cfg: _Config) -> list[dict[str, str]]:
    out = Path(cfg.out)
    ext = extension(sample.fmt)
    stem = f"{sample.index:06d}"
    real_b, fake_b = encode_pair(sample.real, sample.fake, sample.fmt, cfg.quality)
    paths = {"real": f"real/{stem}{ext}", "fake": f"fake/{stem}{ext}", "mask": f"mask/{stem}.png"}
    atomic_write_bytes(out / paths["real"], real_b)
    atomic_write_bytes(out / paths["fake"], fake_b)
    atomic_write_bytes(out / paths["mask"], mask_to_png(sample.mask))
    base = {"source": sample.source, "group": sample.group, "split": sample.split, "pair": str(sample.index)}
    params = json.dumps(sample.params, sort_keys=True, default=_plain)
    crop = json.dumps({"crop_scale": sample.params.get("crop_scale")})
    return [
        {"path": paths["real"], "label": "real", "recipe": "", "mask_path": "", **base, "params": crop},
        {
            "path": paths["fake"],
            "label": "fake",
            "recipe": sample.recipe,
            "mask_path": paths["mask"],
            **base,
            "params": params,
        },
    ]


def _plain(value: Any) -> Any:
    """numpy scalars and arrays in a recipe's parameters, as JSON values."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _run_chunk(indices: list[int]) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for i in indices:
        rows.extend(_write(_make(i), _STATE["cfg"]))
    return rows


# --------------------------------------------------------------------------------------------- synth
def _pool_dir(pool_manifest: Path | str) -> Path:
    return manifest_path(pool_manifest).parent


def synth(
    pool_manifest: Path | str,
    out: Path | str,
    n: int,
    recipes: str | Sequence[str] | None = None,
    seed: int = 0,
    workers: int = 1,
    size: int = 256,
    fmt: str = "png",
    quality: int = 90,
    *,
    split_fractions: Sequence[float] = (0.7, 0.15, 0.15),
    split_seed: int = 0,
    face_prob: float = 0.7,
    progress: bool = True,
    sheet: bool = True,
    on_progress: Callable[[int], None] | None = None,
) -> SynthResult:
    """Write ``n`` real/fake pairs (2n images and n masks) to ``out``; recipes cycle over the given specs.

    ``recipes`` is a list or comma-separated string of ``name`` or ``name:variant`` (``None``/``"all"``:
    every recipe). ``fmt`` is the common final format (``png`` or ``jpeg`` at ``quality``); recipes that need
    a JPEG pass (``double_jpeg``) use JPEG for both images of their pairs. ``workers`` > 1 runs a process
    pool; the bytes written do not depend on it.
    """
    specs = tuple(parse_recipes(recipes))
    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    if size < 32:
        raise ConfigError(f"--size must be at least 32, got {size}")
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if seed < 0:
        raise ConfigError(f"--seed must be 0 or more, got {seed}")
    if not 1 <= quality <= 100:  # checked before any pair is made, whichever recipes need it
        raise ConfigError(f"--quality (JPEG quality) must be in 1..100, got {quality}")
    extension(fmt)  # validates
    pool_dir = _pool_dir(pool_manifest)
    entries = load_pool(pool_manifest)
    if not entries:
        raise ConfigError(f"the pool at {pool_dir} has no photographs")
    splits = pool_splits(entries, split_fractions, split_seed)
    out = Path(out)
    if out.is_dir() and any(out.iterdir()):  # old pairs would outlive a smaller run, off its manifest
        raise ConfigError(f"{out} is not empty; write the dataset to a new or empty folder")
    existed = out.is_dir()
    out.mkdir(parents=True, exist_ok=True)
    try:
        cfg = _Config(
            str(pool_dir),
            str(out),
            specs,
            int(seed),
            int(size),
            fmt.lower().replace("jpg", "jpeg"),
            int(quality),
            float(face_prob),
        )
        ent_dicts = [e.to_dict() for e in entries]
        rows: list[dict[str, str]] = []
        chunk = max(1, min(16, math.ceil(n / (4 * workers))))
        chunks = [list(range(i, min(n, i + chunk))) for i in range(0, n, chunk)]

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(
            TextColumn("synth"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            disable=not progress,
            transient=True,
        ) as bar:
            task = bar.add_task("synth", total=n)

            def done(k: int) -> None:
                bar.advance(task, k)
                if on_progress is not None:
                    on_progress(k)

            if workers == 1:
                saved = dict(_STATE)
                _init_worker(cfg, ent_dicts, splits)
                try:
                    for c in chunks:
                        rows.extend(_run_chunk(c))
                        done(len(c))
                finally:
                    _STATE.clear()
                    _STATE.update(saved)
            else:
                ctx = get_context("spawn")  # no fork of a process that holds threads (rich, torch)
                with ProcessPoolExecutor(
                    workers, mp_context=ctx, initializer=_init_worker, initargs=(cfg, ent_dicts, splits)
                ) as ex:
                    pending: dict[Future[list[dict[str, str]]], int] = {
                        ex.submit(_run_chunk, c): len(c) for c in chunks
                    }
                    while pending:
                        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                        for fut in finished:
                            rows.extend(fut.result())
                            done(pending.pop(fut))
        rows.sort(key=lambda r: (int(r["pair"]), r["label"] != "real"))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(MANIFEST_COLUMNS), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        manifest = out / "manifest.csv"
        atomic_write_bytes(manifest, buf.getvalue().encode())
        per_recipe: dict[str, int] = {}
        per_split: dict[str, int] = {}
        per_format: dict[str, int] = {}
        redrawn = 0
        for r in rows:
            if r["label"] == "fake":
                redrawn += "redrawn" in json.loads(r["params"])
                per_recipe[r["recipe"]] = per_recipe.get(r["recipe"], 0) + 1
                per_split[r["split"]] = per_split.get(r["split"], 0) + 1
                fmt_of = "jpeg" if r["path"].endswith(".jpg") else Path(r["path"]).suffix.lstrip(".")
                per_format[fmt_of] = per_format.get(fmt_of, 0) + 1
        meta = {
            "pool": str(pool_dir),
            "n": n,
            "recipes": list(specs),
            "seed": seed,
            "size": size,
            "format": cfg.fmt,
            "quality": quality,
            "split_fractions": list(split_fractions),
            "split_seed": split_seed,
            "face_prob": face_prob,
            "counts": {"recipes": per_recipe, "splits": per_split, "formats": per_format, "redrawn": redrawn},
        }
        atomic_write_bytes(out / "synth.json", (json.dumps(meta, indent=1) + "\n").encode())
    except BaseException:  # interrupted or failed: no half-written dataset that train would read as whole
        if existed:
            for child in out.iterdir():
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        else:
            shutil.rmtree(out, ignore_errors=True)
        raise
    result = SynthResult(
        out,
        manifest,
        n,
        dict(sorted(per_recipe.items())),
        dict(sorted(per_split.items())),
        formats=dict(sorted(per_format.items())),
        redrawn=redrawn,
    )
    if sheet:
        result.contact_sheet = contact_sheet(out, out / "contact_sheet.png")
    return result


# --------------------------------------------------------------------------------------- contact sheet
COLUMNS = ("real", "fake", "mask M", "seam (as scored)", "|fake-real|")


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except Exception:  # Pillow without FreeType
        return ImageFont.load_default()


def _tile(a: np.ndarray, tile: int) -> Image.Image:
    im = Image.fromarray(a if a.ndim == 3 else np.stack([a] * 3, axis=-1))
    return im.resize(
        (tile, tile), Image.Resampling.NEAREST if a.shape[0] <= tile else Image.Resampling.LANCZOS
    )


def contact_sheet_image(
    rows: Iterable[tuple[str, np.ndarray, np.ndarray, np.ndarray]], k: float = 4.0, tile: int = 192
) -> Image.Image:
    """A grid with one row per ``(label, real, fake, mask)``: real / fake / mask / the seam the localisation
    metrics score (4M(1−M), hard masks blurred first: :func:`fakelens.trust.metrics.mask_seam`) / |diff|×k."""
    import torch

    from fakelens.trust.metrics import mask_seam

    rows = list(rows)
    if not rows:
        raise ConfigError("nothing to put on the contact sheet")
    label_w, head_h, pad = 150, 24, 4
    width = label_w + len(COLUMNS) * (tile + pad)
    height = head_h + len(rows) * (tile + pad)
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = _font(14)
    for j, name in enumerate(COLUMNS):
        title = name + (f" x{k:g}" if name.startswith("|") else "")
        draw.text((label_w + j * (tile + pad) + 4, 4), title, fill=(0, 0, 0), font=font)
    for i, (label, real, fake, mask) in enumerate(rows):
        y = head_h + i * (tile + pad)
        m = np.clip(mask.astype(np.float32), 0, 1)
        seam = mask_seam(torch.from_numpy(m)).numpy()  # what energy (seam) scores: hard masks get an edge
        diff = np.clip(np.abs(fake.astype(np.float32) - real.astype(np.float32)) * k, 0, 255).astype(np.uint8)
        tiles = [real, fake, (m * 255).round().astype(np.uint8), (seam * 255).round().astype(np.uint8), diff]
        for j, t in enumerate(tiles):
            sheet.paste(_tile(t, tile), (label_w + j * (tile + pad), y))
        for li, part in enumerate(label.replace(":", ":\n").split("\n")):
            draw.text((6, y + 6 + 18 * li), part, fill=(0, 0, 0), font=font)
    return sheet


def contact_sheet(
    data: Path | str, out: Path | str | None = None, per_recipe: int = 1, k: float = 4.0, tile: int = 192
) -> Path:
    """Write a PNG contact sheet for a :func:`synth` output folder: ``per_recipe`` rows for each recipe label
    (``name:variant``), in the order they first appear. Returns the PNG's path."""
    data = Path(data)
    if not isinstance(per_recipe, int) or per_recipe < 1:
        raise ConfigError(f"per_recipe (--per-recipe) must be a whole number ≥ 1, not {per_recipe!r}")
    if out is not None:
        _sheet_format(Path(out))
    mf = data / "manifest.csv"
    if not mf.is_file():
        raise ConfigError(f"no manifest.csv in {data} (make one with: fakelens data synth)")
    with open(mf, newline="") as f:
        rows = list(csv.DictReader(f))
    reals = {r["pair"]: r for r in rows if r.get("label") == "real"}
    chosen: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        if r.get("label") == "fake" and r.get("pair") in reals:
            lst = chosen.setdefault(r["recipe"], [])
            if len(lst) < per_recipe:
                lst.append(r)
    if not chosen:
        raise ConfigError(f"{mf} lists no real/fake pairs")
    items = []
    for label, lst in chosen.items():
        for r in lst:
            real = np.asarray(load_image(data / reals[r["pair"]]["path"]))  # a damaged file: one clear error
            fake = np.asarray(load_image(data / r["path"]))
            mask = load_mask(data / r["mask_path"])
            items.append((label, real, fake, mask))
    path = Path(out) if out is not None else data / "contact_sheet.png"
    save_image_atomic(contact_sheet_image(items, k=k, tile=tile), path, format=_sheet_format(path))
    return path


def _sheet_format(path: Path) -> str:
    """The image format a contact sheet's file name asks for (PNG unless it names another one)."""
    formats = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
    fmt = formats.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(f"a contact sheet is written as .png, .jpg or .webp, not {path.name!r}")
    return fmt
