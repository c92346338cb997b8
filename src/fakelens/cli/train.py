"""``fakelens train`` and ``fakelens evaluate``: a thin shell over :mod:`fakelens.train`."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Column, Table

from fakelens.cli.common import (
    MaxTiles,
    check_writable,
    command_line,
    console,
    fail,
    print_json,
    results,
    split_csv,
    user_errors,
    warn,
    warn_untrained,
)
from fakelens.constants import DEFAULT_MAX_TILES
from fakelens.errors import ConfigError

app = typer.Typer()


FORGERY_OPTIONS = ("pairs_per_epoch", "val_pairs", "forgery_size", "forgery_format", "split_fractions")
"""Options of `train --forgeries` that `train --data` ignores (``recipes``: TrainConfig.check)."""
EVAL_FORGERY_OPTIONS = (
    "recipes",
    "pairs",
    "seed",
    "forgery_size",
    "forgery_format",
    "forgery_quality",
    "split_fractions",
    "keep_seen",
    "unseen_by",
)
"""Options of `evaluate --forgeries` that `evaluate --data` ignores."""


def _refuse_options_for_other_source(
    ctx: typer.Context,
    data: Path | None,
    forgeries: Path | None,
    forgery_only: tuple[str, ...] = FORGERY_OPTIONS,
    data_only: tuple[str, ...] = ("val_fraction",),
) -> None:
    """An option of the other data source would be ignored, yet recorded (or read) as if it had shaped the
    run."""
    names: tuple[str, ...]
    if data is not None and forgeries is None:
        names, source, other = forgery_only, "--forgeries", "--data"
    elif forgeries is not None and data is None:
        names, source, other = data_only, "--data", "--forgeries"
    else:
        return  # exactly one source: checked where the data is read
    for name in names:
        if getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE":
            raise ConfigError(f"--{name.replace('_', '-')} goes with {source}; it means nothing with {other}")


RESUME_OVERRIDES = frozenset({"out", "resume", "workers", "device", "threads", "time_limit", "json_out"})
"""What `train --out DIR --resume` may change: where and how fast it runs, never what it learns."""


def _refuse_changed_settings(ctx: typer.Context, cfg: Any, out: Path) -> None:
    """A setting given on the command line of a resumed run must equal the run's own: resuming with another
    learning rate, seed or model would silently train something else under the old name."""

    def absolute(v: Any) -> str:
        return str(Path(v).resolve())

    parse: dict[str, Callable[[Any], Any]] = {
        "split_fractions": _fractions,
        "recipes": lambda v: split_csv(v) or None,
        "data": absolute,  # the run config holds them absolute
        "forgeries": absolute,
        "val_data": absolute,
    }
    for name, value in ctx.params.items():
        source = ctx.get_parameter_source(name)
        if name in RESUME_OVERRIDES or source is None or source.name != "COMMANDLINE":
            continue
        saved = _plain(cfg.model_kwargs.get(name) if name == "input_size" else getattr(cfg, name, None))
        if saved is None or saved != _plain(parse.get(name, lambda v: v)(value)):
            flag = "--" + name.replace("_", "-")
            raise ConfigError(
                f"cannot resume {out} with {flag} {value}: the run was started with "
                f"{'no ' + flag if saved is None else saved}; drop {flag}, or start a new run in "
                "another --out"
            )


def _plain(value: Any) -> Any:
    """A setting as the run config stores it: paths as strings, tuples as lists."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--split-fractions needs three numbers like 0.7,0.15,0.15, not {text!r}") from None
    if len(parts) != 3 or any(p < 0 for p in parts) or sum(parts) <= 0:
        raise ConfigError(
            f"--split-fractions needs three non-negative numbers like 0.7,0.15,0.15, not {text!r}"
        )
    return parts[0], parts[1], parts[2]


def _f(v: Any) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3f}"


@app.command("train")
@user_errors
def train_cmd(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: last/, best/ and history.json.")],
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Dataset folder (real/fake, 0_real/1_fake, GenImage, CIFAKE, FF++) or a CSV/JSONL manifest.",
        ),
    ] = None,
    forgeries: Annotated[
        Path | None,
        typer.Option(
            "--forgeries", help="Real-photo pool (fakelens data build-pool): make forgeries on the fly."
        ),
    ] = None,
    model: Annotated[
        str,
        typer.Option(
            "--model", help="A registered model (see `fakelens models`; tiny-cnn/tiny-vit are for tests)."
        ),
    ] = "effnet-lite0",
    val_data: Annotated[
        Path | None,
        typer.Option(
            "--val-data", help="Separate validation dataset (default: the val split or a hold-out)."
        ),
    ] = None,
    recipes: Annotated[
        list[str] | None,
        typer.Option("--recipes", help="Forgery recipes for --forgeries (comma-separated; default all)."),
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Epochs (at most; early stopping may end sooner).")] = 10,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per step.")] = 32,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, cosine schedule).")] = 1e-3,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay (not on biases and norms).")] = 0.05,
    warmup: Annotated[float, typer.Option(help="Linear warm-up, as a fraction of all steps.")] = 0.05,
    freeze_epochs: Annotated[
        int, typer.Option(min=0, help="Train only the head for this many epochs first.")
    ] = 0,
    patience: Annotated[
        int, typer.Option(min=0, help="Stop after this many epochs without a better val AUC (0: never).")
    ] = 3,
    seed: Annotated[int, typer.Option(min=0, help="Seed of everything random.")] = 0,
    workers: Annotated[int, typer.Option(min=0, help="Data-loading processes.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    amp: Annotated[bool, typer.Option("--amp/--no-amp", help="Mixed precision on CUDA.")] = True,
    aux_mask: Annotated[
        bool, typer.Option("--aux-mask", help="Also learn to predict the forged-region mask (training only).")
    ] = False,
    aux_weight: Annotated[float, typer.Option(help="Weight of the auxiliary mask loss.")] = 0.5,
    augment: Annotated[
        str,
        typer.Option(
            help="none, light, wang2020-0.1, wang2020, robust, forensic or forensic-jpeg (both without "
            "resampling)."
        ),
    ] = "robust",
    input_size: Annotated[
        int | None,
        typer.Option(min=32, help="Model input side in pixels, for models that take it (e.g. 256)."),
    ] = None,
    val_fraction: Annotated[
        float, typer.Option(help="Hold-out fraction when the data has no val split.")
    ] = 0.15,
    pairs_per_epoch: Annotated[
        int, typer.Option(min=1, help="Forgery pairs per epoch (--forgeries).")
    ] = 1024,
    val_pairs: Annotated[int, typer.Option(min=1, help="Validation forgery pairs (--forgeries).")] = 256,
    forgery_size: Annotated[
        int, typer.Option(min=32, help="Forgery crop size in pixels (--forgeries).")
    ] = 256,
    forgery_format: Annotated[
        str, typer.Option(help="Final encoding of forgery pairs: png or jpeg.")
    ] = "png",
    split_fractions: Annotated[str, typer.Option(help="Pool train,val,test fractions (--forgeries).")] = (
        "0.7,0.15,0.15"
    ),
    steps_per_epoch: Annotated[int | None, typer.Option(min=1, help="Cap on steps per epoch.")] = None,
    pretrained: Annotated[
        bool,
        typer.Option(
            "--pretrained/--no-pretrained", help="Start from ImageNet weights where the model has them."
        ),
    ] = True,
    init: Annotated[
        str | None,
        typer.Option(
            help="Fine-tune: start from this detector checkpoint of --model's architecture, or from that "
            "member of an ensemble ('default': the shipped one, e.g. --model effnet-lite0 --init default). "
            "Its training photos count as seen by the result.",
        ),
    ] = None,
    head_init: Annotated[
        str | None,
        typer.Option(
            help="small: re-initialise the classifier head near zero; keep: the model's own. "
            "Default: small, or keep with --init."
        ),
    ] = None,
    fit: Annotated[
        str | None,
        typer.Option(
            help="How inference fits images to the input, recorded in the checkpoint: letterbox, resize, "
            "center_crop, or native (never resample: pad small images, read large ones as native tiles; "
            "for detectors of pixel traces trained on native crops, e.g. with --augment forensic). "
            "Default: the model's own.",
        ),
    ] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads for torch.")] = None,
    time_limit: Annotated[
        float | None,
        typer.Option(
            min=0.01,
            help="Stop at the end of the last epoch that should finish within this many minutes (estimated "
            "from the epoch before; at least one epoch runs); --resume goes on, as if never stopped.",
        ),
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from last/.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Train a detector with checkpoints (last/ and best/ by validation AUC), early stopping and provenance.

    `fakelens train --out DIR --resume` alone continues a run with the settings it was started with.
    """
    from fakelens.train.loop import TrainConfig, load_run_config, train

    command = command_line()
    if resume:  # the run's own settings; those given again must match (the defaults of others do not count)
        cfg = load_run_config(out)
        _refuse_changed_settings(ctx, cfg, out)
        cfg.resume, cfg.workers, cfg.device, cfg.threads = True, workers, device, threads
        cfg.time_limit = time_limit
        cfg.out = str(out)
    else:
        _refuse_options_for_other_source(ctx, data, forgeries)
        given = getattr(ctx.get_parameter_source("model"), "name", None) == "COMMANDLINE"
        if init is not None and not given:
            from fakelens.models.checkpoint import checkpoint_arch

            model = checkpoint_arch(init) or model  # fine-tuning a detector: its own architecture
        cfg = TrainConfig(
            out=str(out),
            model=model,
            # absolute, so that `--out DIR --resume` works from any folder and provenance means something
            data=None if data is None else str(Path(data).resolve()),
            forgeries=None if forgeries is None else str(Path(forgeries).resolve()),
            val_data=None if val_data is None else str(Path(val_data).resolve()),
            recipes=split_csv(recipes) or None,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            warmup=warmup,
            freeze_epochs=freeze_epochs,
            patience=patience,
            seed=seed,
            workers=workers,
            device=device,
            amp=amp,
            aux_mask=aux_mask,
            aux_weight=aux_weight,
            augment=augment,
            val_fraction=val_fraction,
            pairs_per_epoch=pairs_per_epoch,
            val_pairs=val_pairs,
            forgery_size=forgery_size,
            forgery_format=forgery_format,
            split_fractions=_fractions(split_fractions),
            steps_per_epoch=steps_per_epoch,
            pretrained=pretrained,
            head_init=head_init,
            init=init,
            fit=fit,
            threads=threads,
            time_limit=time_limit,
            model_kwargs={} if input_size is None else {"input_size": input_size},
            resume=resume,
            command=command,
        )
    from fakelens.data.augment import PRESETS

    if cfg.augment not in PRESETS:
        raise ConfigError(f"unknown --augment {cfg.augment!r} (known: {', '.join(PRESETS)})")
    try:
        result = train(
            cfg,
            progress=not json_out,
            console=console,
            log=None if json_out else console.print,
            warn=warn,
        )
    except KeyboardInterrupt:
        saved = (out / "last").is_dir()
        fail(
            f"interrupted; {out}/last holds the last whole epoch: `fakelens train --out {out} --resume` "
            "goes on"
            if saved
            else "interrupted before the first epoch was saved",
            code=130,
        )
    payload = result.to_dict()
    if json_out:
        print_json(payload)
        return
    best = "none" if result.best is None else str(result.best)
    ended = " (early stop)" if result.stopped_early else ""
    if result.epochs_before and result.epochs_run == result.epochs_before:
        console.print(
            f"nothing to resume: {out} already trained its {result.epochs_run} epoch(s){ended}; best val AUC "
            f"{_f(result.best_auc)}; to train on, start a new --out with --init {best}"
        )
        return
    now = result.epochs_run - result.epochs_before
    also = f" (now {result.epochs_run} in all)" if result.epochs_before else ""
    console.print(
        f"trained {now} epoch(s){also} in {result.seconds:.0f} s; best val AUC {_f(result.best_auc)}"
        f"{ended}; best checkpoint: [bold]{best}[/]"
    )
    kept = next((r for r in result.history if r.get("epoch") == result.best_epoch), None)
    if kept is not None and (why := kept.get("val", {}).get("uncalibrated")):
        warn(f"the best checkpoint is not calibrated: {why}; it shows its raw scores")


def _check_other_evaluation(out: Path, model: str, overwrite: bool) -> None:
    """Refuse to replace another model's evaluation (the default --out is shared by every run in a folder);
    the same model's is replaced, as a rerun expects."""
    try:
        previous = json.loads((out / "metrics.json").read_text(encoding="utf-8")).get("model")
    except (OSError, ValueError, AttributeError):
        return
    if previous not in (None, model) and not _same_checkpoint(str(previous), model) and not overwrite:
        fail(f"--out {out} holds the evaluation of {previous}: give another --out, or --overwrite")


def _same_checkpoint(a: str, b: str) -> bool:
    """Whether two --model values are one checkpoint path, however spelled (./runs/x/best, runs/x/best/)."""
    from fakelens.models.registry import MODELS

    if a in MODELS or b in MODELS or not (Path(a).exists() and Path(b).exists()):
        return False
    return Path(a).resolve() == Path(b).resolve()


@app.command("evaluate")
@user_errors
def evaluate_cmd(
    ctx: typer.Context,
    model: Annotated[
        str, typer.Option("--model", help="A checkpoint (detector or ensemble) or a registered model name.")
    ],
    data: Annotated[Path | None, typer.Option("--data", help="Dataset folder or CSV/JSONL manifest.")] = None,
    forgeries: Annotated[
        Path | None, typer.Option("--forgeries", help="Real-photo pool: evaluate on forgeries of its photos.")
    ] = None,
    split: Annotated[
        str, typer.Option(help="auto (test, else val, else all), train, val, test or all.")
    ] = "auto",
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Folder for metrics.json, scores.csv, roc.png, reliability.png."),
    ] = Path("fakelens-eval"),
    threshold: Annotated[
        float | None,
        typer.Option(help="Fake-probability threshold for accuracy (default: an ensemble's own, else 0.5)."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 32,
    workers: Annotated[int, typer.Option(min=0, help="Data-loading processes.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    recipes: Annotated[
        list[str] | None, typer.Option("--recipes", help="Forgery recipes (--forgeries).")
    ] = None,
    pairs: Annotated[int, typer.Option(min=1, help="Forgery pairs (--forgeries).")] = 256,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the forgeries (--forgeries).")] = 0,
    forgery_size: Annotated[int, typer.Option(min=32, help="Forgery crop size (--forgeries).")] = 256,
    forgery_format: Annotated[
        str,
        typer.Option(
            help="Final encoding of each real/fake pair (--forgeries): png, or jpeg to test robustness "
            "to compression (both images of a pair get the same pass; double-JPEG pairs are always JPEG)."
        ),
    ] = "png",
    forgery_quality: Annotated[
        int, typer.Option(min=1, max=100, help="Quality of that final JPEG pass (--forgeries).")
    ] = 90,
    split_fractions: Annotated[str, typer.Option(help="Pool train,val,test fractions (--forgeries).")] = (
        "0.7,0.15,0.15"
    ),
    keep_seen: Annotated[
        bool,
        typer.Option(
            "--keep-seen",
            help="With --forgeries: keep the pool photos the model was trained or validated on (left out by "
            "default; a pool that grew since training deals its photos anew).",
        ),
    ] = False,
    unseen_by: Annotated[
        list[str] | None,
        typer.Option(
            "--unseen-by",
            help="With --forgeries: also leave out the photos this checkpoint was trained or validated on "
            "(repeatable), to compare models on photos none of them saw.",
        ),
    ] = None,
    max_tiles: MaxTiles = DEFAULT_MAX_TILES,
    bootstrap: Annotated[
        int,
        typer.Option(
            min=0,
            help="Bootstrap resamples for the AUCs' 95 % intervals (0: none). They resample what is "
            "independent: a pool's photos, a dataset's groups (videos, source photos) or its images.",
        ),
    ] = 1000,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads for torch.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an evaluation of another model already in --out.")
    ] = False,
) -> None:
    """Evaluate a detector: AUC, AP, accuracy at the threshold, EER, per recipe and per source; ROC plot."""
    import torch

    from fakelens.models import Ensemble
    from fakelens.models.checkpoint import load_detector, training_photos
    from fakelens.models.registry import untrained_members
    from fakelens.train.evaluate import check_split, evaluate

    check_split(split)  # before the model loads
    _refuse_options_for_other_source(ctx, data, forgeries, EVAL_FORGERY_OPTIONS, ())
    if threads:
        torch.set_num_threads(threads)
    if out is not None:
        check_writable(out, "--out")
    det = load_detector(model)
    if out is not None:
        _check_other_evaluation(out, model, overwrite)
    if threshold is None:
        threshold = det.threshold if isinstance(det, Ensemble) else 0.5
    seen = {m: training_photos(m) for m in ([] if keep_seen else [model]) + list(unseen_by or [])}
    if forgeries is not None:
        _warn_unrecorded([u for t in seen.values() for u in t.unrecorded], forgeries)
    report = evaluate(
        det,
        data=data,
        forgeries=forgeries,
        split=split,
        threshold=threshold,
        out=out,
        batch_size=batch_size,
        workers=workers,
        device=device,
        recipes=split_csv(recipes) or None,
        pairs=pairs,
        seed=seed,
        forgery_size=forgery_size,
        forgery_format=forgery_format,
        forgery_quality=forgery_quality,
        split_fractions=_fractions(split_fractions),
        model_name=model,
        exclude_photos=frozenset().union(*(t.sha256 for t in seen.values())),
        max_tiles=max_tiles,
        bootstrap=bootstrap,
        progress=True,
    )
    warn_untrained(untrained_members(det), "the figures below measure a random head")
    if data is not None:
        _warn_seen_split(model, data, report["data"])
    left_out = report["data"].get("excluded_photos", 0)
    if left_out:
        whose = " or ".join(m for m, t in seen.items() if t.sha256)
        console.print(
            f"left out {left_out} {report['data']['split']} photo(s) of the pool that {whose} "
            "trained or validated on"
        )
    if json_out:
        print_json(report)
        return
    boot = report.get("bootstrap")
    # the numbers never give way to a long source path: the subset's name is cut instead
    table = Table(
        Column("subset", no_wrap=True, overflow="ellipsis", max_width=36),
        "vs",
        Column("n real/fake", no_wrap=True),
        Column("AUC (95 % interval)" if boot else "AUC", no_wrap=True),
        Column("AP", no_wrap=True),
        Column(f"acc@{threshold:g}", no_wrap=True),
        Column("EER", no_wrap=True),
        title=escape(
            f"{model} on {report['data'].get('path', report['data'].get('pool'))} ({report['data']['split']})"
        ),
    )
    rows = [("overall", report["overall"])]
    for kind in ("per_recipe", "per_source"):
        items = report[kind]
        if kind == "per_source" and not 1 < len(items) <= 12:
            continue  # one source, or too many to read in a table: metrics.json has them all
        if kind == "per_recipe" and set(items) <= {"-", ""}:
            continue  # no recipes: the one row would repeat "overall"
        rows += [(f"{kind[4:]} {Path(key).name or key}", m) for key, m in list(items.items())[:30]]
    for name, m in rows:
        table.add_row(
            escape(name),
            m.get("vs", ""),
            f"{m['n_real']}/{m['n_fake']}",
            _f(m["auc"]) + _interval(m),
            _f(m["ap"]),
            _f(m["accuracy"]),
            _f(m["eer"]),
        )
    results.print(table)
    ov = report["overall"]
    console.print(
        f"calibration of p(fake): expected calibration error {_f(ov['ece'])}, Brier {_f(ov['brier'])}, "
        f"log-loss {_f(ov['nll'])}"
    )
    if boot:
        console.print(
            f"AUC intervals: {boot['rounds']} bootstrap resamples of the {boot['units']} {boot['unit']}s "
            "(the 2.5th and 97.5th percentiles)"
        )
    console.print(
        f"wrote metrics.json, scores.csv, roc.png and reliability.png to [bold]{escape(str(out))}[/]"
    )


def _warn_seen_split(model: str, data: Path, evaluated: dict[str, Any]) -> None:
    """Warn when the evaluated split holds images ``model`` was trained on, or was selected and calibrated
    on (its validation set): its figures there are optimistic."""
    from fakelens.models.checkpoint import training_photos

    seen = training_photos(model)
    here, used = str(Path(data).resolve()), evaluated["split"]
    validated = {split for path, split in seen.validated if str(Path(path).resolve()) == here}
    if here in seen.datasets and used in ("all", "train"):
        what = f"was trained on {data}: its '{used}' split holds the training images"
    elif "all" in validated or ("val" in validated and used in ("val", "all")):
        what = (
            f"picked its best epoch and was calibrated on {data}'s validation images, which its '{used}' "
            "split holds"
        )
    else:
        return
    better = "evaluate --split test, or" if "test" in evaluated.get("splits", ()) else "evaluate on"
    warn(f"{model} {what}, so these figures are optimistic; {better} data it never saw")


def _interval(m: dict[str, Any]) -> str:
    ci = m.get("auc_ci")
    return f" ({ci[0]:.2f}–{ci[1]:.2f})" if ci and ci[0] is not None and ci[1] is not None else ""


def _warn_unrecorded(unrecorded: list[tuple[str, str]], pool: Path) -> None:
    """Members whose training photos were not recorded, trained on another version of the pool: say so."""
    from fakelens.data.pool import manifest_path
    from fakelens.io import sha256_file

    mf = manifest_path(pool)
    here = sha256_file(mf) if mf.is_file() else ""
    for member, trained_on in unrecorded:
        if trained_on != here:
            console.print(
                f"[yellow]note:[/] {member} was trained on another version of this pool and did not record "
                "which photos; its figures may include photos it was trained on"
            )


if __name__ == "__main__":  # python -m fakelens.cli.train train ... (until the main CLI attaches it)
    app()
