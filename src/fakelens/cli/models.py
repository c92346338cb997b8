"""``fakelens models`` and ``fakelens methods``: what can be run and explained."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from fakelens.cli.common import (
    check_writable,
    command_line,
    console,
    fail,
    print_json,
    results,
    user_errors,
    warn,
    warn_untrained,
)

app = typer.Typer()


def _first_line(obj: object) -> str:
    """The docstring's first paragraph as one line, reST roles and literals as plain text."""
    doc = (inspect.getdoc(obj) or "").strip()
    first = " ".join(doc.split("\n\n")[0].split())
    first = re.sub(r":\w+:`~?(?:[\w.]+\.)?([^`]+)`", r"\1", first)  # :class:`~a.b.C` → C
    return first.replace("``", "")


def _listed(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


@app.command("models")
@user_errors
def models_cmd(
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the shipped ensemble and the registered architectures (use a name, or a checkpoint folder, with
    --model)."""
    from fakelens.models import MODELS
    from fakelens.models.checkpoint import DEFAULT_MODEL
    from fakelens.models.registry import untrained_by_name

    rows = [
        {
            "name": DEFAULT_MODEL,
            "summary": "The shipped ensemble, trained: effnet-lite0 + vit-tiny-reg4-npr, calibrated (the "
            "default of analyze, explain, scan and serve; model card in its folder).",
            "trained": True,
        }
    ]
    rows += [
        {
            "name": n,
            "summary": _first_line(MODELS.get(n))
            + (" Untrained real/fake head: train it first." if untrained_by_name(n) else ""),
            "trained": not untrained_by_name(n),
        }
        for n in MODELS.names()
    ]
    if json_out:
        print_json(rows)
        return
    table = Table("model", "description", title="models for --model (or a checkpoint folder)")
    for r in rows:
        table.add_row(str(r["name"]), escape(str(r["summary"])))  # "fakelens[pretrained]" is text, not markup
    results.print(table)


@app.command("methods")
@user_errors
def methods_cmd(
    name: Annotated[
        str | None, typer.Argument(help="One method: show its description and options (for --set).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the explanation methods (gradient CAMs share one forward+backward), or one method's options."""
    from fakelens.explain.cams import CAMS
    from fakelens.explain.engine import EXPLAINERS, class_agnostic

    if name is not None:
        _method_detail(name, json_out)
        return
    rows: list[dict[str, Any]] = [
        {"name": n, "family": "gradient CAM (one shared capture)", "summary": _first_line(CAMS.get(n))}
        for n in CAMS.names()
    ] + [{"name": n, "family": "own passes", "summary": _first_line(EXPLAINERS.get(n))} for n in EXPLAINERS]
    for r in rows:
        r["class_agnostic"] = class_agnostic(r["name"])
    if json_out:
        print_json(rows)
        return
    table = Table("method", "family", "shows", "reference", title="explanation methods")
    for r in rows:
        shows = "where the model is active (any class)" if r["class_agnostic"] else "evidence for the target"
        table.add_row(r["name"], r["family"], shows, escape(r["summary"]))
    results.print(table)
    console.print("options of a method: [bold]fakelens methods NAME[/]; set with --set METHOD.OPTION=VALUE")


def _type_name(annotation: Any, empty: Any, factory: Any = None) -> str:
    """An option's annotation as written (``int``, ``int | None``), also in modules without postponed
    annotations (where it is the type itself: ``<class 'int'>``); a named ``Literal`` of the factory's
    modules is spelled out (``Fill`` → ``'mean' | 'black' | 'blur'``), so the allowed values show."""
    import sys
    import typing

    if annotation is empty:
        return ""
    if isinstance(annotation, type):
        return annotation.__name__
    names = [
        vars(sys.modules[c.__module__])
        for c in getattr(factory, "__mro__", ())
        if c.__module__ in sys.modules
    ]

    def spelled(part: str) -> str:
        alias = next((n[part] for n in names if part in n), None)
        if typing.get_origin(alias) is typing.Literal:
            return " | ".join(repr(v) for v in typing.get_args(alias))
        return part

    return " | ".join(spelled(p.strip()) for p in str(annotation).replace("typing.", "").split("|"))


def _method_detail(name: str, json_out: bool) -> None:
    from fakelens.explain.cams import CAMS
    from fakelens.explain.engine import EXPLAINERS, method_options

    options = method_options(name)
    factory = CAMS.get(name) if name in CAMS else EXPLAINERS.get(name)
    rows = [
        {
            "option": p.name,
            "default": None if p.default is p.empty else p.default,
            "type": _type_name(p.annotation, p.empty, factory),
        }
        for p in options.values()
    ]
    if json_out:
        print_json({"name": name, "description": inspect.getdoc(factory) or "", "options": rows})
        return
    results.print(f"[bold]{name}[/]: {escape(inspect.getdoc(factory) or '')}\n", markup=True, highlight=False)
    if not rows:
        results.print("no options: gradient CAMs are computed from the one shared forward+backward pass.")
        return
    table = Table("option", "default", "type", title=f"options of {name} (--set {name}.OPTION=VALUE)")
    for r in rows:
        table.add_row(r["option"], escape(repr(r["default"])), escape(str(r["type"])))
    results.print(table)


def _member_source(spec: str) -> dict[str, str]:
    """Where a member came from: as typed, and for a checkpoint its absolute path and weights' sha256 (a path
    as typed says little once the run folder moved)."""
    from fakelens.io import sha256_file
    from fakelens.models.checkpoint import WEIGHTS_NAME

    out = {"source": spec}
    weights = Path(spec) / WEIGHTS_NAME
    if weights.is_file():
        out |= {"path": str(Path(spec).resolve()), "weights_sha256": sha256_file(weights)}
    return out


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
    threshold: Annotated[
        float | None,
        typer.Option(
            min=0.0, max=1.0, help="Fake-probability threshold (default 0.5, or fitted by --fit-on)."
        ),
    ] = None,
    half: Annotated[
        bool, typer.Option("--half", help="Store weights as float16 (half the size; loaded as float32).")
    ] = False,
    fit_on: Annotated[
        Path | None,
        typer.Option(
            "--fit-on",
            help="Real-photo pool: fit the weights (grid over the simplex: the most even weights within one "
            "bootstrap standard error of the best validation AUC) and the threshold (equal-error rate) on "
            "forgeries of the members' validation photos.",
        ),
    ] = None,
    fit_pairs: Annotated[int, typer.Option(min=1, help="Forgery pairs for --fit-on.")] = 512,
    fit_step: Annotated[float, typer.Option(help="Weight grid step for --fit-on (divides 1).")] = 0.05,
    fit_bootstrap: Annotated[
        int,
        typer.Option(
            min=0,
            help="Bootstrap resamples of the photos for the standard error of --fit-on (0: plain best AUC).",
        ),
    ] = 200,
    calibrate: Annotated[
        bool,
        typer.Option(
            help="With --fit-on, also calibrate every member and the ensemble on the validation forgeries "
            "(temperature scaling about each one's equal-error-rate threshold): the shown probabilities "
            "become frequencies and every verdict is taken at 0.5.",
        ),
    ] = True,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N (for --fit-on).")] = "auto",
    workers: Annotated[int, typer.Option(min=0, help="Data-loading processes (for --fit-on).")] = 0,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an ensemble already in --out (its fit is lost).")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the ensemble description as JSON.")] = False,
) -> None:
    """Combine trained detectors into one ensemble checkpoint (use it with --model DIR)."""
    import torch

    from fakelens.errors import ConfigError
    from fakelens.models import Detector, Ensemble, load_detector, save_checkpoint
    from fakelens.models.checkpoint import CONFIG_NAME, is_ensemble_checkpoint, read_json

    check_writable(out, "--out")
    if out.is_dir() and any(out.iterdir()):  # never over a training run, nor silently over a fitted ensemble
        if not is_ensemble_checkpoint(out):
            fail(f"--out {out} is not empty and holds no ensemble: choose a new folder")
        if not overwrite:
            fail(f"--out {out} holds an ensemble already: pass --overwrite to replace it, or a new folder")
    from fakelens.models.registry import untrained_members

    loaded: list[Detector] = []
    records = []
    for spec in members:
        det = load_detector(spec)
        if not isinstance(det, Detector):
            raise ConfigError(f"{spec} is an ensemble already; give its member checkpoints")
        taken, base, k = {d.name for d in loaded}, det.name, 1
        while det.name in taken:  # two runs of one architecture: the names key their scores, files, cards
            k += 1
            det.name = f"{base}-{k}"
        loaded.append(det)
        warn_untrained(untrained_members(det))  # it stays marked untrained in the ensemble
        cfg = Path(spec) / CONFIG_NAME
        info = read_json(cfg) if cfg.is_file() else {}
        records.append({"provenance": info.get("provenance", {}), "metrics": info.get("metrics", {})})
    try:
        w = [float(v) for v in weights.split(",")] if weights else None
    except ValueError:
        raise ConfigError(f"--weights must be comma-separated numbers, not {weights!r}") from None
    if fit_on is not None and (w is not None or threshold is not None):
        raise ConfigError(
            "--fit-on fits the weights and the threshold: give it without --weights and --threshold"
        )
    ens = Ensemble.of(loaded, weights=w, rule=rule, threshold=0.5 if threshold is None else threshold)
    provenance: dict[str, object] = {
        "members": [_member_source(spec) for spec in members],
        "command": command_line(),
    }
    metrics: dict[str, object] = {}
    if fit_on is not None:
        from fakelens.devices import resolve_device
        from fakelens.train.fit import fit_ensemble
        from fakelens.train.metrics import json_safe

        console.print(f"fitting weights and threshold on validation forgeries of {fit_on} …", markup=False)
        fit = fit_ensemble(
            ens,
            members,
            fit_on,
            pairs=fit_pairs,
            step=fit_step,
            bootstrap=fit_bootstrap,
            calibrate=calibrate,
            device=resolve_device(device),
            workers=workers,
            progress=True,
        )
        provenance["fit"] = json_safe({k: v for k, v in fit.items() if k != "val"})
        metrics["val"] = json_safe(fit["val"])
        console.print(
            f"weights {', '.join(f'{n} {v:.2f}' for n, v in zip(ens.names, fit['weights'], strict=True))}; "
            f"threshold {ens.threshold:.3f}; validation AUC {fit['val']['auc']:.3f} (best "
            f"{fit['best_auc']:.3f} ± {fit['auc_se']:.3f} at {_listed(fit['best_weights'])}; "
            f"equal weights {fit['val_auc_equal_weights']:.3f}) on {fit['photos']} photos"
        )
        if "val_ece" in fit:
            ece = fit["val_ece"]
            console.print(
                "calibrated: expected calibration error "
                + ", ".join(f"{k} {ece['before'][k]:.3f} → {v:.3f}" for k, v in ece["after"].items())
                + f" (the uncalibrated ensemble's threshold {fit['uncalibrated_threshold']:.3f} is now 0.5)"
            )
        for name, why in fit.get("uncalibrated", {}).items():
            warn(f"{name} not calibrated: {why}; shown raw")
    save_checkpoint(
        ens,
        out,
        provenance=provenance,
        metrics=metrics,
        dtype=torch.float16 if half else None,
        member_records=records,
    )
    if json_out:
        fitted = {"fit": provenance["fit"], "val": metrics["val"]} if fit_on is not None else {}
        print_json({"out": out, **ens.describe(), **fitted})
    else:
        console.print(f"ensemble of {', '.join(ens.names)} saved to {out}", markup=False)
