"""The offline pool of real photographs: assembled from installed packages and registry clients only.

``build_pool(out)`` copies the photographs of the sources below byte for byte (their JPEG history
intact) into ``out/images/<source>/``, detects faces (five landmarks) and writes ``out/manifest.json`` and
``out/manifest.csv`` (``path, source, package, licence, sha256, width, height, faces, people, group``).

Sources: the scikit-image, matplotlib and scikit-learn wheels (already installed), ``npm pack
@vladmandic/face-api``, ``pip download --no-deps --no-binary :all: face-recognition==1.3.0``, and ``apt-get
download`` of ``opencv-doc``, ``mate-backgrounds``, ``lomiri-wallpapers-16.04`` and
``plasma-workspace-wallpapers`` (the photographs among them) unpacked with ``dpkg -x``. Each source is
optional: one whose client fails is reported and skipped. Downloads are cached in ``out/.cache``; re-running
verifies every file's sha256 and skips sources that are complete, so it is idempotent and offline once built.

Only CC0, public-domain and MIT photographs may be committed to a repository (``redistributable`` in the JSON
manifest); the rest stay in the pool a user builds.
"""

from __future__ import annotations

import csv
import dataclasses
import fnmatch
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
from PIL import Image, ImageOps

from fakelens.data.faces import FACE_RULES, Detector, Face, available_detectors, detect_faces
from fakelens.data.splits import SplitItem, assign_splits
from fakelens.errors import ConfigError, FakelensError, ImageError
from fakelens.io import atomic_write_bytes, sha256_file

__all__ = [
    "MANIFEST_CSV",
    "MANIFEST_JSON",
    "SOURCES",
    "Candidate",
    "FetchError",
    "PoolEntry",
    "PoolReport",
    "PoolSource",
    "SourceReport",
    "build_pool",
    "load_pool",
    "load_pool_image",
    "manifest_path",
    "pool_splits",
    "sha256_file",
]

MANIFEST_JSON = "manifest.json"
MANIFEST_CSV = "manifest.csv"
CSV_COLUMNS = (
    "path",
    "source",
    "package",
    "licence",
    "sha256",
    "width",
    "height",
    "faces",
    "people",
    "group",
)
REDISTRIBUTABLE = ("CC0-1.0", "public-domain", "MIT")


class FetchError(FakelensError):
    """A source's registry client or package is unavailable; the source is skipped."""


@dataclass(frozen=True)
class Candidate:
    """A photograph a source offers: where it is now, and what we know about it."""

    name: str
    file: Path
    licence: str
    people: tuple[str, ...] = ()
    group: str = ""


@dataclass(frozen=True)
class PoolSource:
    """A source of real photographs. ``fetch(cache_dir)`` returns ``(package, candidates)``.

    ``group_by`` says which photos are the *same photograph* for splitting: ``photo`` (each its own),
    ``stem`` (names that differ only by a trailing number, L/R/A/B or a left/right prefix: stereo pairs,
    bursts) or ``source`` (all one group: people recur across photos and are not identified).
    """

    name: str
    licence: str
    fetch: Callable[[Path], tuple[str, list[Candidate]]]
    group_by: Literal["photo", "stem", "source"] = "photo"
    note: str = ""
    scratch: tuple[str, ...] = ()  # folders under the source's cache removed after harvesting


@dataclass
class PoolEntry:
    """One photograph in the pool (``path`` relative to the pool directory, POSIX separators)."""

    path: str
    source: str
    package: str
    licence: str
    sha256: str
    width: int
    height: int
    faces: list[Face] = field(default_factory=list)
    people: tuple[str, ...] = ()
    group: str = ""

    @property
    def redistributable(self) -> bool:
        return self.licence in REDISTRIBUTABLE

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "source": self.source,
            "package": self.package,
            "licence": self.licence,
            "sha256": self.sha256,
            "width": self.width,
            "height": self.height,
            "faces": [f.to_dict() for f in self.faces],
            "people": list(self.people),
            "group": self.group,
            "redistributable": self.redistributable,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PoolEntry:
        return cls(
            path=str(d["path"]),
            source=str(d["source"]),
            package=str(d.get("package", "")),
            licence=str(d.get("licence", "unspecified")),
            sha256=str(d["sha256"]),
            width=int(d["width"]),
            height=int(d["height"]),
            faces=[Face.from_dict(f) for f in d.get("faces", [])],
            people=tuple(d.get("people", ())),
            group=str(d.get("group", d["path"])),
        )


@dataclass
class SourceReport:
    name: str
    status: Literal["added", "verified", "failed", "empty"]
    images: int = 0
    faces: int = 0
    new: int = 0
    message: str = ""
    package: str = ""


@dataclass
class PoolReport:
    out: Path
    sources: list[SourceReport]
    detector: str | None

    @property
    def images(self) -> int:
        return sum(s.images for s in self.sources)

    @property
    def faces(self) -> int:
        return sum(s.faces for s in self.sources)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "images": self.images,
            "faces": self.faces,
            "detector": self.detector,
            "sources": [dataclasses.asdict(s) for s in self.sources],
        }


# ------------------------------------------------------------------------------------------------ helpers
def _run(cmd: Sequence[str], cwd: Path, timeout: float = 900) -> str:
    exe = shutil.which(cmd[0])
    if exe is None:
        raise FetchError(f"{cmd[0]} is not installed")
    try:
        res = subprocess.run(
            [exe, *cmd[1:]], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise FetchError(f"{' '.join(cmd)} timed out after {timeout:.0f} s") from None
    if res.returncode != 0:
        lines = [ln for ln in (res.stderr or res.stdout).strip().splitlines() if ln.strip()]
        raise FetchError(f"{' '.join(cmd)} failed: {lines[-1] if lines else f'exit {res.returncode}'}")
    return res.stdout


def _stem_group(name: str) -> str:
    stem = Path(name).stem
    s = re.sub(r"^(left|right)", "", stem, flags=re.I)
    s = re.sub(r"(\d+|(?<=[a-z])[LRAB])$", "", s)
    s = s.rstrip("_-")
    return s or "left_right"


def load_pool_image(pool: Path, entry: PoolEntry) -> np.ndarray:
    """An entry's photograph as RGB uint8 (EXIF orientation applied; grey and alpha flattened)."""
    return _open_rgb(pool / entry.path)


def _open_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as raw:
            im: Image.Image = ImageOps.exif_transpose(raw)
            if im.mode in ("RGBA", "LA", "P"):
                rgba = im.convert("RGBA")
                im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, ValueError) as exc:
        raise ImageError(f"cannot read {path}: {exc}") from None


# ------------------------------------------------------------------------------------------------ sources
_SKIMAGE = {  # file: (licence, people) — licences from each loader's docstring
    "astronaut.png": ("public-domain", ("eileen_collins",)),
    "brick.png": ("CC0-1.0", ()),
    "camera.png": ("CC0-1.0", ("skimage_cameraman",)),
    "cell.png": ("CC0-1.0", ()),
    "chelsea.png": ("CC0-1.0", ()),
    "clock_motion.png": ("public-domain", ()),
    "coffee.png": ("CC0-1.0", ()),
    "coins.png": ("no-known-restrictions", ()),
    "grass.png": ("CC0-1.0", ()),
    "gravel.png": ("CC0-1.0", ()),
    "hubble_deep_field.jpg": ("public-domain", ()),
    "ihc.png": ("no-known-restrictions", ()),
    "moon.png": ("unspecified", ()),
    "motorcycle_left.png": ("unspecified", ()),
    "motorcycle_right.png": ("unspecified", ()),
    "page.png": ("unspecified", ()),
    "retina.jpg": ("CC0-1.0", ()),
    "rocket.jpg": ("public-domain", ()),
    "text.png": ("public-domain", ()),
}
_STEREO_GROUPS = {"motorcycle_left.png": "motorcycle", "motorcycle_right.png": "motorcycle"}


def _fetch_skimage(cache: Path) -> tuple[str, list[Candidate]]:
    try:
        import skimage
    except ImportError:
        raise FetchError("scikit-image is not installed") from None
    root = Path(skimage.__file__).parent / "data"
    out = []
    for name, (lic, people) in _SKIMAGE.items():
        if (root / name).is_file():
            out.append(Candidate(name, root / name, lic, people, _STEREO_GROUPS.get(name, "")))
    return f"scikit-image=={getattr(skimage, '__version__', '?')}", out


def _fetch_matplotlib(cache: Path) -> tuple[str, list[Candidate]]:
    try:
        import matplotlib
        from matplotlib import cbook
    except ImportError:
        raise FetchError("matplotlib is not installed") from None
    path = Path(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    return f"matplotlib=={matplotlib.__version__}", [
        Candidate("grace_hopper.jpg", path, "public-domain", ("grace_hopper",))
    ]


def _fetch_sklearn(cache: Path) -> tuple[str, list[Candidate]]:
    try:
        import sklearn
    except ImportError:
        raise FetchError("scikit-learn is not installed") from None
    root = Path(sklearn.__file__).parent / "datasets" / "images"
    names = [n for n in ("china.jpg", "flower.jpg") if (root / n).is_file()]
    return f"scikit-learn=={sklearn.__version__}", [Candidate(n, root / n, "CC-BY-2.0") for n in names]


FACE_API = "@vladmandic/face-api@1.7.15"
FACE_RECOGNITION = "face-recognition==1.3.0"


def _extract_members(archive: Path, dest: Path, pattern: str) -> list[Path]:
    """Extract the regular files whose member name matches ``pattern`` (regex), flattened into ``dest``."""
    rx = re.compile(pattern)
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    with tarfile.open(archive) as tf:
        for m in tf.getmembers():
            if m.isfile() and rx.search(m.name):
                f = tf.extractfile(m)
                if f is None:
                    continue
                target = dest / Path(m.name).name
                atomic_write_bytes(target, f.read())
                out.append(target)
    return sorted(out)


def _fetch_face_api(cache: Path) -> tuple[str, list[Candidate]]:
    cache.mkdir(parents=True, exist_ok=True)
    tgz = sorted(cache.glob("vladmandic-face-api-*.tgz"))
    if not tgz:
        _run(["npm", "pack", FACE_API, "--silent"], cwd=cache)
        tgz = sorted(cache.glob("vladmandic-face-api-*.tgz"))
    if not tgz:
        raise FetchError(f"npm pack {FACE_API} wrote no tarball")
    version = tgz[-1].name.removeprefix("vladmandic-face-api-").removesuffix(".tgz")
    files = _extract_members(tgz[-1], cache / "demo", r"^package/demo/sample\d+\.jpg$")
    return f"npm:@vladmandic/face-api@{version}", [Candidate(f.name, f, "MIT") for f in files]


def _fetch_face_recognition(cache: Path) -> tuple[str, list[Candidate]]:
    cache.mkdir(parents=True, exist_ok=True)
    sdist = sorted(cache.glob("face_recognition-*.tar.gz"))
    if not sdist:
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                FACE_RECOGNITION,
                "-d",
                str(cache),
                "--quiet",
            ],
            cwd=cache,
        )
        sdist = sorted(cache.glob("face_recognition-*.tar.gz"))
    if not sdist:
        raise FetchError(f"pip download {FACE_RECOGNITION} wrote no sdist")
    version = sdist[-1].name.removeprefix("face_recognition-").removesuffix(".tar.gz")
    # 32bit.png is obama2.jpg again with an alpha channel: a duplicate photograph, left out.
    files = _extract_members(sdist[-1], cache / "test_images", r"/tests/test_images/[^/]+\.jpe?g$")
    out = []
    for f in files:
        person = "obama" if f.name.startswith("obama") else Path(f.name).stem
        # obama_partial_face*.jpg are crops of obama.jpg: the same photograph.
        group = "obama" if f.name.startswith(("obama.", "obama_partial")) else ""
        out.append(Candidate(f.name, f, "MIT", (person,), group))
    return f"pypi:face-recognition=={version}", out


def _apt_download(package: str, cache: Path) -> tuple[str, Path]:
    cache.mkdir(parents=True, exist_ok=True)
    debs = sorted(cache.glob(f"{package}_*.deb"))
    if not debs:
        _run(["apt-get", "download", package], cwd=cache)
        debs = sorted(cache.glob(f"{package}_*.deb"))
    if not debs:
        raise FetchError(f"apt-get download {package} wrote no .deb")
    root = cache / "root"
    if not (root / ".done").exists():
        shutil.rmtree(root, ignore_errors=True)
        _run(["dpkg", "-x", str(debs[-1]), str(root)], cwd=cache)
        (root / ".done").write_text(debs[-1].name)
    version = debs[-1].name.removeprefix(f"{package}_").rsplit("_", 1)[0]
    return f"deb:{package}={version}", root


# Non-photographs (renders, masks, logos, charts, text scans, a painting, a known forgery) are excluded.
_OPENCV_DENY = re.compile(
    r"(mask|GT|logo|chessboard|digits|gradient|notes|imageText|sudoku|ellipses|detect_blob|cards|"
    r"shape_sample|trimap|result|output|polygon|^ml\.png|templ|tmpl|^pic\d|ela_modified|Suzanne|starry_night)",
    re.I,
)


def _fetch_opencv_doc(cache: Path) -> tuple[str, list[Candidate]]:
    package, root = _apt_download("opencv-doc", cache)
    base = root / "usr/share/doc/opencv-doc/examples"
    out = []
    for p in sorted(base.rglob("*")):
        if (
            p.suffix.lower() not in (".jpg", ".jpeg", ".png")
            or not p.is_file()
            or _OPENCV_DENY.search(p.name)
        ):
            continue
        try:
            with Image.open(p) as im:
                ok = min(im.size) >= 300 and im.mode in ("RGB", "L")
        except OSError:
            ok = False
        if ok:
            name = p.relative_to(base).as_posix().replace("/", "__")
            out.append(Candidate(name, p, "BSD-3-Clause/Apache-2.0", (), _stem_group(p.name)))
    return package, out


def _fetch_mate(cache: Path) -> tuple[str, list[Candidate]]:
    package, root = _apt_download("mate-backgrounds", cache)
    files = sorted((root / "usr/share/backgrounds/mate/nature").glob("*.jpg"))
    return package, [Candidate(f.name, f, "GPL-2.0-or-later") for f in files]


def dep5_licences(text: str) -> list[tuple[tuple[str, ...], str]]:
    """``(file patterns, licence)`` per ``Files:`` paragraph of a machine-readable Debian copyright file."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        files = re.search(r"^Files:(.*(?:\n[ \t].*)*)", para, re.M)
        lic = re.search(r"^License:[ \t]*(\S+)", para, re.M)
        if files and lic:
            out.append((tuple(files.group(1).split()), lic.group(1)))
    return out


def _dep5_licence(rules: Sequence[tuple[tuple[str, ...], str]], name: str) -> str:
    """The licence of an installed file ``name``: the last paragraph with a pattern whose file name matches
    wins (DEP-5). Install paths differ from source paths, so only file names are compared, and the
    packaging's own ``debian/*`` paragraphs are skipped."""
    found = "unspecified"
    for patterns, lic in rules:
        names = [pat.rsplit("/", 1)[-1] for pat in patterns if not pat.startswith("debian/")]
        if any(fnmatch.fnmatchcase(name, pat) for pat in names):
            found = lic
    return found


# Renders and graphics among the wallpapers (the rest are photographs, checked by eye).
_LOMIRI_RENDERS = frozenset({"umang_by_Abhishek_Mudgal.jpg"})


def _fetch_lomiri(cache: Path) -> tuple[str, list[Candidate]]:
    package, root = _apt_download("lomiri-wallpapers-16.04", cache)
    docs = sorted((root / "usr/share/doc").glob("*/copyright"))
    rules = dep5_licences(docs[0].read_text(errors="replace")) if docs else []
    files = sorted((root / "usr/share/backgrounds").glob("*.jpg"))
    return package, [
        Candidate(f.name, f, _dep5_licence(rules, f.name)) for f in files if f.name not in _LOMIRI_RENDERS
    ]


# The photographs among Plasma's wallpapers (the others are renders and illustrations).
_PLASMA_PHOTOS = (
    "BytheWater",
    "ColdRipple",
    "ColorfulCups",
    "EveningGlow",
    "FallenLeaf",
    "Grey",
    "Kite",
    "OneStandsOut",
    "Path",
    "summer_1am",
)
_LICENCE_IDS = {"LGPLv3": "LGPL-3.0", "LGPLv2": "LGPL-2.0", "GPLv2": "GPL-2.0", "GPLv3": "GPL-3.0"}


def _largest_image(folder: Path) -> Path | None:
    """The file named ``<w>x<h>.<ext>`` with the most pixels in ``folder``."""
    sized = []
    for f in folder.glob("*"):
        m = re.fullmatch(r"(\d+)x(\d+)\.(jpe?g|png)", f.name, re.I)
        if m and f.is_file():
            sized.append((int(m.group(1)) * int(m.group(2)), f.name, f))
    return max(sized)[2] if sized else None


def _fetch_plasma(cache: Path) -> tuple[str, list[Candidate]]:
    package, root = _apt_download("plasma-workspace-wallpapers", cache)
    out = []
    for name in _PLASMA_PHOTOS:
        folder = root / "usr/share/wallpapers" / name
        image = _largest_image(folder / "contents" / "images")
        if image is None:
            continue
        try:
            meta = json.loads((folder / "metadata.json").read_text())
            lic = str(meta["KPlugin"]["License"])
        except (OSError, ValueError, KeyError, TypeError):
            lic = "unspecified"
        out.append(Candidate(f"{name}{image.suffix.lower()}", image, _LICENCE_IDS.get(lic, lic)))
    return package, out


SOURCES: list[PoolSource] = [
    PoolSource("skimage", "CC0-1.0", _fetch_skimage, "photo", "scikit-image wheel; licence per docstring"),
    PoolSource("matplotlib", "public-domain", _fetch_matplotlib, "photo", "grace_hopper.jpg"),
    PoolSource("sklearn", "CC-BY-2.0", _fetch_sklearn, "photo", "load_sample_images()"),
    PoolSource(
        "face_api",
        "MIT",
        _fetch_face_api,
        "source",
        "npm pack; group photos of recurring, unidentified people: one split group",
    ),
    PoolSource("face_recognition", "MIT", _fetch_face_recognition, "photo", "pip download sdist"),
    PoolSource(
        "opencv_doc",
        "BSD-3-Clause/Apache-2.0",
        _fetch_opencv_doc,
        "stem",
        "apt-get download + dpkg -x",
        ("root",),
    ),
    PoolSource(
        "mate_backgrounds", "GPL-2.0-or-later", _fetch_mate, "photo", "apt-get download + dpkg -x", ("root",)
    ),
    PoolSource(
        "lomiri_wallpapers",
        "CC-BY-4.0/CC-BY-SA-4.0/CC0-1.0",
        _fetch_lomiri,
        "photo",
        "apt-get download + dpkg -x; licence per file from the package's copyright file",
        ("root",),
    ),
    PoolSource(
        "plasma_wallpapers",
        "LGPL-3.0",
        _fetch_plasma,
        "photo",
        "apt-get download + dpkg -x; the photographs only, largest size",
        ("root",),
    ),
]


# ------------------------------------------------------------------------------------------------ manifest
def manifest_path(pool: Path | str) -> Path:
    """A pool's ``manifest.json``: ``pool`` is the pool directory, the manifest itself, or a file beside it
    (its ``manifest.csv``)."""
    p = Path(pool)
    if p.suffix == ".json":
        return p
    return p.parent / MANIFEST_JSON if p.is_file() else p / MANIFEST_JSON


def load_pool(pool: Path | str) -> list[PoolEntry]:
    """The entries of a pool directory's manifest (or of a ``manifest.json`` path)."""
    mf = manifest_path(pool)
    if not mf.is_file():
        raise ConfigError(f"no pool manifest at {mf} (build one with: fakelens data build-pool --out DIR)")
    try:
        doc = json.loads(mf.read_text())
        return [PoolEntry.from_dict(e) for e in doc["entries"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"pool manifest {mf} is malformed: {exc}") from None


def entries_sha256(pool: Path | str) -> str:
    """sha256 of a pool's photo list alone (its manifest entries, canonical JSON): unlike the manifest file's
    hash, it does not depend on how the pool was built (a fresh build and one grown or resumed over an
    earlier build record different source statuses) — equal lists deal equal splits."""
    entries = [e.to_dict() for e in load_pool(pool)]
    return hashlib.sha256(json.dumps(entries, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def pool_splits(
    entries: Sequence[PoolEntry],
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    min_face: float = 64.0,
) -> dict[str, str]:
    """Split the pool's photos (path → ``train``/``val``/``test``) keeping photo groups and people apart.

    Photos with faces of at least ``min_face`` px form their own stratum weighted by their face count, so
    faces reach every split when the pool allows it; the rest are weighted 1 each.
    """
    items = []
    for e in entries:
        n = sum(f.size >= min_face for f in e.faces)
        items.append(SplitItem(e.path, e.group or e.path, e.people, float(max(1, n)), "faces" if n else ""))
    return assign_splits(items, fractions, seed)


def _read_manifest(out: Path) -> dict[str, Any]:
    mf = out / MANIFEST_JSON
    if not mf.is_file():
        return {"entries": [], "sources": {}}
    try:
        doc = json.loads(mf.read_text())
        doc.setdefault("sources", {})
        doc.setdefault("entries", [])
        return dict(doc)
    except ValueError:
        return {"entries": [], "sources": {}}


def _write_manifest(
    out: Path, entries: Sequence[PoolEntry], sources: dict[str, Any], detector: str | None
) -> None:
    entries = sorted(entries, key=lambda e: e.path)
    doc = {"version": 1, "detector": detector, "sources": sources, "entries": [e.to_dict() for e in entries]}
    atomic_write_bytes(out / MANIFEST_JSON, (json.dumps(doc, indent=1) + "\n").encode())
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for e in entries:
        w.writerow(
            [
                e.path,
                e.source,
                e.package,
                e.licence,
                e.sha256,
                e.width,
                e.height,
                len(e.faces),
                ";".join(e.people),
                e.group,
            ]
        )
    atomic_write_bytes(out / MANIFEST_CSV, buf.getvalue().encode())


def _verify(out: Path, entry: PoolEntry) -> bool:
    f = out / entry.path
    return f.is_file() and sha256_file(f) == entry.sha256


def _people_for(cand: Candidate, faces: list[Face], source: PoolSource, path: str) -> tuple[str, ...]:
    if cand.people:
        return cand.people
    if source.group_by == "source":
        return ()  # unknown identities; the whole source is one group
    return tuple(f"{path}#{i}" for i in range(len(faces)))


def _group_for(cand: Candidate, source: PoolSource, path: str) -> str:
    if source.group_by == "source":
        return f"{source.name}/*"
    if cand.group:
        return f"{source.name}/{cand.group}"
    if source.group_by == "stem":
        return f"{source.name}/{_stem_group(cand.name)}"
    return path


def build_pool(
    out: Path | str,
    sources: Iterable[str] | None = None,
    *,
    detect: bool = True,
    detector: Literal["auto", "mtcnn", "haar"] = "auto",
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> PoolReport:
    """Assemble (or verify) the pool in ``out``; returns what each source gave.

    ``sources`` restricts to some source names (default: all of :data:`SOURCES`). Faces are detected once per
    file (cached by sha256 in the manifest). A failing source is reported with its one-line reason.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    out = Path(out).absolute()  # the fetchers run tools in their cache folder: relative paths would break
    wanted = {s.name: s for s in SOURCES}
    names = list(wanted) if sources is None else list(sources)
    unknown = [n for n in names if n not in wanted]
    if unknown:
        raise ConfigError(f"unknown pool source(s) {', '.join(unknown)} (known: {', '.join(wanted)})")
    det_name: str | None = None
    det_id: str | None = None
    if detect:
        avail = available_detectors()
        det_name = (avail[0] if avail else None) if detector == "auto" else detector
        if det_name is not None and det_name not in avail:
            raise ConfigError(f"face detector {det_name!r} is not available (available: {avail})")
        det_id = None if det_name is None else f"{det_name}/rules-{FACE_RULES}"
    out.mkdir(parents=True, exist_ok=True)  # only once the request is known to be sound
    doc = _read_manifest(out)
    old = [PoolEntry.from_dict(e) for e in doc["entries"]]
    by_sha: dict[str, PoolEntry] = {e.sha256: e for e in old}
    old_detector = doc.get("detector")
    kept: list[PoolEntry] = [e for e in old if e.source not in names]
    src_status: dict[str, Any] = {k: v for k, v in doc["sources"].items() if k not in names}
    reports: list[SourceReport] = []
    say = log or (lambda s: None)

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not progress,
        transient=True,
    ) as bar:
        for name in names:
            src = wanted[name]
            mine = [e for e in old if e.source == name]
            prev = doc["sources"].get(name, {})
            faces_ok = not detect or det_id is None or old_detector == det_id
            if (
                prev.get("status") in ("added", "verified")
                and prev.get("images") == len(mine)
                and mine
                and faces_ok
                and all(_verify(out, e) for e in mine)
            ):
                rep = SourceReport(
                    name,
                    "verified",
                    len(mine),
                    sum(len(e.faces) for e in mine),
                    0,
                    "",
                    str(prev.get("package", "")),
                )
                kept.extend(mine)
                reports.append(rep)
                src_status[name] = {**prev, "status": "verified"}
                say(f"{name}: verified {len(mine)} images")
                continue
            try:
                package, cands = src.fetch(out / ".cache" / name)
            except (FetchError, OSError, tarfile.TarError) as exc:
                good = [e for e in mine if _verify(out, e)]
                kept.extend(good)
                msg = str(exc) if isinstance(exc, FetchError) else f"{type(exc).__name__}: {exc}"
                reports.append(
                    SourceReport(name, "failed", len(good), sum(len(e.faces) for e in good), 0, msg)
                )
                src_status[name] = {"status": "failed", "images": len(good), "message": msg}
                say(f"{name}: skipped ({msg})")
                continue
            task = bar.add_task(f"{name:<17}", total=len(cands))
            entries: list[PoolEntry] = []
            new = 0
            for cand in cands:
                rel = f"images/{name}/{cand.name}"
                data = cand.file.read_bytes()
                sha = hashlib.sha256(data).hexdigest()
                dest = out / rel
                if not (dest.is_file() and sha256_file(dest) == sha):
                    atomic_write_bytes(dest, data)
                    new += 1
                prev_e = by_sha.get(sha)
                if prev_e is not None and prev_e.path == rel and faces_ok:
                    faces, w, h = prev_e.faces, prev_e.width, prev_e.height
                else:
                    img = _open_rgb(dest)
                    h, w = img.shape[:2]
                    faces = detect_faces(img, cast(Detector, det_name)) if (detect and det_name) else []
                entries.append(
                    PoolEntry(
                        rel,
                        name,
                        package,
                        cand.licence,
                        sha,
                        w,
                        h,
                        faces,
                        _people_for(cand, faces, src, rel),
                        _group_for(cand, src, rel),
                    )
                )
                bar.advance(task)
            bar.remove_task(task)
            for sub in src.scratch:
                shutil.rmtree(out / ".cache" / name / sub, ignore_errors=True)
            kept.extend(entries)
            status: Literal["added", "empty"] = "added" if entries else "empty"
            rep = SourceReport(
                name, status, len(entries), sum(len(e.faces) for e in entries), new, "", package
            )
            reports.append(rep)
            src_status[name] = {
                "status": status,
                "images": len(entries),
                "package": package,
                "licence": src.licence,
                "note": src.note,
            }
            say(f"{name}: {len(entries)} images ({new} new), {rep.faces} faces")
    _write_manifest(out, kept, src_status, det_id if detect else old_detector)
    return PoolReport(out, reports, det_name)
