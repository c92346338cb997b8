"""Shared CLI plumbing: consoles, one-line user errors, JSON output, image discovery."""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from fakelens.errors import ConfigError, FakelensError
from fakelens.io import IMAGE_SUFFIXES, REFUSED_SUFFIXES, find_images

# Not a terminal (a log, a pipe): lay tables out 160 columns wide rather than cut their cells at Rich's 80.
# Messages, warnings and progress go to stderr (``console``); what a command answers — its tables and
# listings — to stdout (``results``), so ``fakelens models > models.txt`` keeps the listing and ``--json``
# output stays the only thing on stdout when asked for.
# A closed stream (``>&-``) is None: it is not a terminal.


def _tty(stream: Any) -> bool:
    return stream is not None and stream.isatty()


console = Console(stderr=True, width=None if _tty(sys.stderr) or "COLUMNS" in os.environ else 160)
results = Console(width=None if _tty(sys.stdout) or "COLUMNS" in os.environ else 160)
F = TypeVar("F", bound=Callable[..., Any])

MaxTiles = Annotated[
    int,
    typer.Option(
        min=1,
        help="Most native tiles read per image by a detector trained on native crops (input mode "
        "'native'): larger images are scored and explained tile by tile at their own pixel grid instead "
        "of being shrunk.",
    ),
]

MethodOptions = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="METHOD.OPTION=VALUE",
        help="A method option, repeatable: e.g. --set rise.n_masks=2000 --set scorecam.top_k=64. "
        "`fakelens methods NAME` lists a method's options.",
    ),
]
"""The ``--set`` option of the commands that explain (parsed by ``explain.engine.parse_options``)."""


def command_line() -> str:
    """The command line as typed: ``fakelens …`` or ``python -m fakelens.cli.<module> …``."""
    name = Path(sys.argv[0]).name if sys.argv else ""
    head = "fakelens" if name == "fakelens" else name
    if name.endswith(".py") and name != "main.py":
        head = f"python -m fakelens.cli.{name[:-3]}"
    return " ".join([head, *sys.argv[1:]])


def warn(message: str) -> None:
    """One yellow warning line on stderr (the message is text, not Rich markup)."""
    console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


def warn_untrained(names: Iterable[str], consequence: str = "the verdicts below mean nothing") -> None:
    """A warning line for detectors named by architecture: their real/fake head is random, so their verdicts
    mean nothing (:attr:`fakelens.models.Detector.untrained`)."""
    names = list(names)
    if not names:
        return
    which = escape(", ".join(names))
    verb = "is an architecture" if len(names) == 1 else "are architectures"
    console.print(
        f"[bold yellow]warning:[/] {which} {verb} without trained real/fake weights (a random head): "
        f"{consequence}. Train one with `fakelens train`, or use --model default.",
        highlight=False,
        soft_wrap=True,
    )


def fail(message: str, code: int = 2) -> None:
    """Print one clear error line to stderr and exit non-zero (the message is text, not Rich markup: an
    install hint keeps its ``[extra]``, a path its brackets)."""
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, as SIGINT does, so that what commits on Ctrl-C (a scan's rows, a
    training's checkpoint, a trust run's records) commits on a polite kill too."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: Any) -> None:
        # `timeout` signals the whole process group: a second SIGTERM during the clean-up is ignored
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_STORAGE_ERRORS = _FULL | {errno.EROFS, errno.EIO}


def user_errors(fn: F) -> F:
    """Turn user mistakes (FakelensError, paths the file system refuses) into one line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with _sigterm_as_interrupt():  # `timeout`, systemd, Kubernetes: stop as cleanly as on Ctrl-C
                return fn(*args, **kwargs)
        except FakelensError as e:
            fail(str(e))
        except OSError as e:  # a path the file system refused (read-only, missing folder, no space…)
            if e.filename is not None:
                fail(f"{e.strerror or type(e).__name__}: {e.filename}")
            if e.errno in _STORAGE_ERRORS:  # a full disk or quota, wherever the write was
                fail(
                    f"{os.strerror(e.errno or 0)}" + (" while writing the output" if e.errno in _FULL else "")
                )
            raise
        except KeyboardInterrupt:
            fail("interrupted", code=130)

    return wrapper  # type: ignore[return-value]


def check_writable(path: Path, option: str, *, folder: bool = True) -> None:
    """Fail at once, before any work, when ``path`` (a folder, or with ``folder=False`` a file) cannot be
    written: it is the wrong kind of thing, or its nearest existing folder is read-only. Creates nothing."""
    if folder and path.exists() and not path.is_dir():
        fail(f"{option} {path} exists and is not a folder")
    if not folder and path.is_dir():
        fail(f"{option} must be a file, but {path} is a folder")
    probe = path if folder else path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        fail(f"cannot write to {option} {path}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        reason = "read-only file system" if _read_only(probe) else "permission denied"
        fail(f"cannot write to {option} {path}: {reason} ({probe})")


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def shown_names(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """How tables and reports name images: the file name, or the path as given where two files share one
    (two a.png must stay apart; a bundled demo photo need not show its install path)."""
    names = [Path(p).name for p in paths]
    shared = {n for n in names if names.count(n) > 1}
    return [str(p) if n in shared else n for p, n in zip(paths, names, strict=True)]


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def check_method_names(methods: Iterable[str]) -> None:
    """One error line for the first name that is no explanation method, listing the known ones."""
    from fakelens.explain.engine import check_methods

    try:
        check_methods(list(methods))
    except FakelensError as exc:
        fail(str(exc))


def expand_images(paths: Iterable[Path]) -> list[Path]:
    """Files as given, folders searched recursively for images (sorted); missing paths are an error."""
    out: list[Path] = []
    folders: list[Path] = []
    unreadable: list[Path] = []
    others: list[Path] = []
    for p in paths:
        if p.is_dir():
            folders.append(p)
            out.extend(find_images(p, unreadable=unreadable, others=others))
        elif p.exists():
            out.append(p)
        else:
            raise FakelensError(f"no such file or folder: {p}")
    for folder in unreadable:
        warn(f"cannot read the folder {folder} (permission denied): its images are left out")
    if heic := [o for o in others if o.suffix.lower() in REFUSED_SUFFIXES]:
        warn(
            f"{len(heic)} HEIC/HEIF image(s) left out ({heic[0]}{', …' if len(heic) > 1 else ''}): not a "
            "supported format; convert them to JPEG or PNG"
        )
    if folders and not out:
        where = ", ".join(map(str, folders))
        raise FakelensError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {where}")
    return out


def split_csv(values: list[str] | None) -> list[str]:
    """``--method a,b --method c`` → ``[a, b, c]`` (order kept, duplicates dropped)."""
    seen: dict[str, None] = {}
    for v in values or []:
        for part in v.split(","):
            if part.strip():
                seen[part.strip()] = None
    return list(seen)


def unique_name(base: str, used: set[str]) -> str:
    """``base``, suffixed ``-2``, ``-3``… when already in ``used`` (which it joins)."""
    name, k = base, 1
    while name in used:
        k += 1
        name = f"{base}-{k}"
    used.add(name)
    return name


def unique_stem(path: Path, used: set[str]) -> str:
    """``path``'s stem without leading dots (``.hidden.jpg``'s overlays must not be hidden files), made
    unique in ``used`` (:func:`unique_name`)."""
    return unique_name(path.stem.lstrip(".") or "image", used)


# Output folders of analyze and explain

RUN_MANIFESTS = ("analysis.json", "summary.json")
"""The files in which ``analyze --out`` and ``explain --out`` record a run: a folder holding one holds a
previous run's results."""

Overwrite = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Replace the results of a previous analyze or explain run in --out: the files its analysis.json "
        "or summary.json records are removed; other files in the folder are left alone. Without it, such a "
        "folder is refused.",
    ),
]


def check_previous_run(out: Path, overwrite: bool) -> None:
    """Refuse (one line) an output folder that holds a previous run's results, unless ``overwrite``."""
    found = [m for m in RUN_MANIFESTS if (out / m).is_file()]
    if found and not overwrite:
        fail(
            f"--out {out} already holds the results of a previous run ({found[0]}); choose a new folder, or "
            "pass --overwrite to replace them"
        )


def recorded_files(out: Path) -> list[str]:
    """The files that the run manifests in ``out`` record (each manifest, then the files of its images),
    by name; names that are not a plain file name in ``out`` (``../x``, ``a/b``) are never returned."""
    names: list[str] = []
    for manifest in RUN_MANIFESTS:
        try:
            payload = json.loads((out / manifest).read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot read the previous run's {out / manifest} ({exc}): remove it by hand"
            ) from None
        names.append(manifest)
        images = payload.get("images") if isinstance(payload, dict) else None
        for rec in images if isinstance(images, list) else []:
            files = rec.get("files") if isinstance(rec, dict) else None
            names += (
                [f for f in (files or {}).values() if isinstance(f, str)] if isinstance(files, dict) else []
            )
    plain = [n for n in dict.fromkeys(names) if n and Path(n).name == n and n not in (".", "..")]
    return plain


class StagedOutput:
    """Every file of one run written into a hidden folder inside ``out`` (same file system) and moved into
    ``out`` only by :meth:`commit`, when all of them exist: an interrupted or failed run leaves ``out`` as it
    was (and removes it when it created it), never half of a new set of files beside an old manifest.

    ``manifest`` (e.g. ``analysis.json``) is moved in last. ``extra`` files written elsewhere (``--report``:
    a hidden temporary file beside its destination) are renamed into place within the same commit. With
    ``overwrite`` the files a previous run recorded are replaced (:func:`recorded_files`); a commit that
    fails half-way puts back what it had moved. Used as a context manager: on any error the staged files
    are removed and the error says that nothing was written."""

    def __init__(self, out: Path, manifest: str, *, overwrite: bool = False, option: str = "--out") -> None:
        self.out = out
        self.manifest = manifest
        self.overwrite = overwrite
        self.option = option
        self.created = not out.exists()
        self.stage = Path()
        self.extra: dict[Path, Path] = {}  # temporary file → its destination

    def __enter__(self) -> StagedOutput:
        self.out.mkdir(parents=True, exist_ok=True)
        self.stage = Path(tempfile.mkdtemp(dir=self.out, prefix=".partial-"))  # never one a killed run left
        return self

    def path(self, name: str) -> Path:
        """Where to write the output file ``name`` until the commit."""
        return self.stage / name

    def add_extra(self, destination: Path) -> Path:
        """A hidden temporary path beside ``destination``, renamed onto it at the commit."""
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".tmp")
        os.close(fd)
        self.extra[Path(tmp)] = destination
        return Path(tmp)

    def commit(self) -> None:
        """Move the staged files into ``out`` (the manifest last) and the extra files onto their destinations;
        a failure puts every moved file back (and the previous run's files with it) and raises."""
        previous = recorded_files(self.out) if self.overwrite else []
        new = sorted((f.name for f in self.stage.iterdir()), key=lambda n: n == self.manifest)
        backup = self.stage / ".previous"
        moved_old: list[str] = []
        moves = [(self.stage / n, self.out / n) for n in new] + list(self.extra.items())
        done: list[tuple[Path, Path]] = []
        try:
            for name in previous:  # set aside, not deleted, until the new files are all in place
                if (self.out / name).is_file():
                    backup.mkdir(exist_ok=True)
                    os.replace(self.out / name, backup / name)
                    moved_old.append(name)
            for src, dst in moves:
                os.replace(src, dst)
                done.append((src, dst))
        except BaseException:
            for src, dst in reversed(done):
                with contextlib.suppress(OSError):
                    os.replace(dst, src)
            for name in reversed(moved_old):
                with contextlib.suppress(OSError):
                    os.replace(backup / name, self.out / name)
            raise
        self.extra.clear()
        shutil.rmtree(self.stage, ignore_errors=True)  # the previous run's replaced files with it

    def _discard(self) -> None:
        shutil.rmtree(self.stage, ignore_errors=True)
        for tmp in self.extra:
            with contextlib.suppress(OSError):
                tmp.unlink()
        if self.created:
            with contextlib.suppress(OSError):
                self.out.rmdir()  # only if empty: another process may have put files there meanwhile

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _tb: object) -> None:
        if exc is None:
            self._discard()  # committed: only an empty stage, if anything, is left to remove
            return
        self._discard()
        where = f"nothing was written to {self.option} {self.out}"
        if isinstance(exc, KeyboardInterrupt):
            fail(f"interrupted: {where}", code=130)
        if isinstance(exc, FakelensError):
            fail(f"{exc} ({where})")
        if isinstance(exc, OSError) and (exc.filename is not None or exc.errno in _STORAGE_ERRORS):
            path = Path(str(exc.filename)) if exc.filename is not None else None
            name = self.extra.get(path, path).name if path is not None else None  # the report, not its temp
            what = os.strerror(exc.errno) if exc.errno else (exc.strerror or type(exc).__name__)
            fail(f"{what}" + (f" while writing {name}" if name else "") + f": {where}")
