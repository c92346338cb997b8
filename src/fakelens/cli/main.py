"""Entry point: ``fakelens <command>``; one file per command group, composed here."""

from __future__ import annotations

import inspect
import os
import sys

import typer

from fakelens import __version__
from fakelens.cli import analyze as analyze_cli
from fakelens.cli import data as data_cli
from fakelens.cli import explain as explain_cli
from fakelens.cli import models as models_cli
from fakelens.cli import scan as scan_cli
from fakelens.cli import serve as serve_cli
from fakelens.cli import train as train_cli
from fakelens.cli import trust as trust_cli

app = typer.Typer(
    name="fakelens",
    help="Explainable deepfake image detection: verdicts, heatmaps you can check, and trust tests for them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.registered_commands += (
    analyze_cli.app.registered_commands
    + explain_cli.app.registered_commands
    + models_cli.app.registered_commands
    + scan_cli.app.registered_commands
    + serve_cli.app.registered_commands
    + train_cli.app.registered_commands
    + trust_cli.app.registered_commands
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fakelens {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    """fakelens command line."""
    from fakelens.cli.common import fail
    from fakelens.errors import FakelensError
    from fakelens.plugins import load_plugins

    try:  # methods and models registered from outside fakelens (see fakelens.plugins)
        load_plugins()
    except FakelensError as exc:
        fail(str(exc))


app.add_typer(data_cli.app, name="data", help="Real-photo pool and forgeries with ground-truth masks.")
app.add_typer(serve_cli.keys_app, name="keys", help="API keys of the HTTP service, per tenant.")


def _unwrapped(doc: str) -> str:
    """A docstring as ``--help`` text: each paragraph's source line breaks joined (Typer keeps them after
    the first paragraph, so sentences broke mid-line), paragraphs kept apart."""
    return "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(doc).split("\n\n"))


for _typer in (app, data_cli.app, serve_cli.keys_app):
    for _command in _typer.registered_commands:
        if _command.help is None and _command.callback is not None and _command.callback.__doc__:
            _command.help = _unwrapped(_command.callback.__doc__)


def main() -> None:
    for name in ("stdout", "stderr"):  # started with the stream closed (>&-): write nowhere, as print() does
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115 (lives as long as we do)
    app()


if __name__ == "__main__":
    main()
