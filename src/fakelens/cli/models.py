"""``fakelens models`` and ``fakelens methods``: what can be run and explained."""

from __future__ import annotations

import inspect
from pathlib import Path
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


@app.command("ensemble")
@user_errors
def ensemble_cmd(
    members: Annotated[list[str], typer.Argument(help="Member checkpoints (folders) or registered models.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for ensemble.json and the members.")],
    weights: Annotated[
        str | None, typer.Option(help="Comma-separated member weights (default: equal).")
    ] = None,
    rule: Annotated[str, typer.Option(help="mean, logit_mean or max over the members' fake probability.")] = (
        "logit_mean"
    ),
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="Fake-probability threshold.")] = 0.5,
    half: Annotated[
        bool, typer.Option("--half", help="Store weights as float16 (half the size; loaded as float32).")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the ensemble description as JSON.")] = False,
) -> None:
    """Combine trained detectors into one ensemble checkpoint (use it with --model DIR)."""
    import torch

    from fakelens.errors import ConfigError
    from fakelens.models import Detector, Ensemble, load_detector, save_checkpoint
    from fakelens.models.checkpoint import CONFIG_NAME, read_json

    loaded: list[Detector] = []
    sources = []
    for spec in members:
        det = load_detector(spec)
        if not isinstance(det, Detector):
            raise ConfigError(f"{spec} is an ensemble already; give its member checkpoints")
        loaded.append(det)
        cfg = Path(spec) / CONFIG_NAME
        info = read_json(cfg) if cfg.is_file() else {}
        sources.append(
            {"source": spec, "provenance": info.get("provenance", {}), "metrics": info.get("metrics", {})}
        )
    try:
        w = [float(v) for v in weights.split(",")] if weights else None
    except ValueError:
        raise ConfigError(f"--weights must be comma-separated numbers, not {weights!r}") from None
    ens = Ensemble(loaded, weights=w, rule=rule, threshold=threshold)  # type: ignore[arg-type]
    save_checkpoint(ens, out, provenance={"members": sources}, dtype=torch.float16 if half else None)
    if json_out:
        print_json({"out": out, **ens.describe()})
    else:
        console.print(f"ensemble of {', '.join(ens.names)} saved to {out}")
