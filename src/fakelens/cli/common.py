"""Shared CLI plumbing: consoles, one-line user errors, JSON output, image discovery."""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from fakelens.errors import FakelensError
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
