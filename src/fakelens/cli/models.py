"""``fakelens models`` and ``fakelens methods``: what can be run and explained."""

from __future__ import annotations

import inspect
from typing import Annotated

import typer
from rich.table import Table

from fakelens.cli.common import console, print_json, user_errors
from fakelens.explain.cams import CAMS
from fakelens.explain.engine import EXPLAINERS
from fakelens.models import MODELS

app = typer.Typer()


def _first_line(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


@app.command("models")
@user_errors
def models_cmd(
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the registered detectors (use a name, or a checkpoint folder, with --model)."""
    rows = [{"name": n, "summary": _first_line(MODELS.get(n))} for n in MODELS.names()]
    if json_out:
        print_json(rows)
        return
    table = Table("model", "description", title="registered detectors")
    for r in rows:
        table.add_row(r["name"], r["summary"])
    console.print(table)


@app.command("methods")
@user_errors
def methods_cmd(
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the explanation methods (gradient CAMs share one forward+backward)."""
    rows = [
        {"name": n, "family": "gradient CAM (one shared capture)", "summary": _first_line(CAMS.get(n))}
        for n in CAMS.names()
    ] + [{"name": n, "family": "own passes", "summary": _first_line(EXPLAINERS.get(n))} for n in EXPLAINERS]
    if json_out:
        print_json(rows)
        return
    table = Table("method", "family", "reference", title="explanation methods")
    for r in rows:
        table.add_row(r["name"], r["family"], r["summary"])
    console.print(table)
