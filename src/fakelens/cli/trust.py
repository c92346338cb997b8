"""``fakelens trust``: can these heatmaps be trusted on this model and these images?

Scales, rotates, translates and flips each image with black fill (mean and reflect fill as controls) and
checks that each method's heatmap moves with the image, stays off the fill and out of the corners; scores it
against ground-truth masks when there are any; measures faithfulness (deletion/insertion, ROAD) and the
randomisation sanity check; ranks the methods and recommends one, with its numbers.
"""

from __future__ import annotations

import importlib
import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from fakelens.cli.common import (
    MethodOptions,
    check_method_names,
    console,
    fail,
    print_json,
    split_csv,
    user_errors,
    warn,
    warn_untrained,
)

app = typer.Typer()

DEFAULT_METHODS = "gradcam,hirescam,layercam,eigencam"
FAMILIES = ("localisation", "faithfulness", "randomisation")


def load_explainers() -> None:
    """Import the optional method modules so that their methods are registered (missing ones are skipped)."""
    for mod in (
        "fakelens.explain.perturbation",
        "fakelens.explain.transformer",
        "fakelens.explain.attention",
    ):
        try:
            importlib.import_module(mod)
        except ImportError:  # pragma: no cover - a module still being written
            continue


@app.command("trust")
@user_errors
def trust_cmd(
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Required: one detector, by registered name (see `fakelens models`) or checkpoint folder "
            "(of the shipped ensemble: a member, src/fakelens/weights/default/member-…).",
        ),
    ] = None,
    images: Annotated[
        list[Path] | None,
        typer.Option(
            "--images", "-i", help="An image file or folder (searched recursively); repeat -i for more."
        ),
    ] = None,
    masks: Annotated[
        Path | None,
        typer.Option(
            "--masks",
            help="Folder of ground-truth masks matched to images by file stem (x.png or x_mask.png); "
            "without it, x_mask.png beside x.jpg is its mask (and not an image to test).",
        ),
    ] = None,
    manifest: Annotated[
        Path | None,
        typer.Option(
            "--manifest", help="CSV with path[,label][,mask_path] (e.g. from `fakelens data synth`)."
        ),
    ] = None,
    methods: Annotated[
        list[str] | None,
        typer.Option(
            "--methods",
            "-m",
            help=f"Methods, comma-separated or repeated, or 'all'. Default: {DEFAULT_METHODS}.",
        ),
    ] = None,
    layer: Annotated[
        list[str] | None,
        typer.Option(
            "--layer",
            help="Layer to explain; repeat to compare layers, join with + to fuse. Default: the model's.",
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder (records, report, plots, gallery).")
    ] = Path("fakelens-trust"),
    transforms: Annotated[
        str,
        typer.Option(
            help="Transform family: standard (21 views), quick (8), badge (the robustness badge's 4) or "
            "exact (6 flips and quarter/half turns, pixel-exact on a square input); each plus the identity."
        ),
    ] = "standard",
    fills: Annotated[
        str, typer.Option(help="Fills: black, plus mean/reflect as controls.")
    ] = "black,mean,reflect",
    skip: Annotated[
        str, typer.Option(help=f"Metric families to skip, comma-separated: {', '.join(FAMILIES)}.")
    ] = "",
    target: Annotated[
        str, typer.Option(help="What to explain: fake (log-odds, default), real, top, class:K.")
    ] = "fake",
    steps: Annotated[int, typer.Option(min=2, help="Deletion/insertion steps.")] = 16,
    stages: Annotated[
        int, typer.Option(min=1, help="Randomisation checkpoints (head first, whole net last).")
    ] = 4,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N images (a quick look).")] = None,
    resume: Annotated[
        bool, typer.Option("--resume/--no-resume", help="Skip images already recorded in --out.")
    ] = True,
    seed: Annotated[int, typer.Option(help="Seed for ROAD noise, tie-breaking and randomisation.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON to stdout.")] = False,
    option: MethodOptions = None,
) -> None:
    """Test whether heatmaps can be trusted: equivariance under black-fill transforms, border and corner mass,
    localisation, faithfulness and randomisation; a ranked report, plots and a gallery of the worst cases."""
    from fakelens.devices import resolve_device
    from fakelens.explain.engine import method_names, parse_options
    from fakelens.models.base import Detector
    from fakelens.models.checkpoint import load_detector
    from fakelens.trust.runner import TrustConfig, discover_items, run_trust

    load_explainers()
    if model is None:
        fail("--model is required (a registered name such as tiny-cnn, or a checkpoint path)")
        return
    wanted = split_csv(methods) or DEFAULT_METHODS.split(",")
    if wanted == ["all"]:
        wanted = method_names()
    check_method_names(wanted)
    options = parse_options(option or [], wanted)
    skipped = split_csv([skip])
    for s in skipped:
        if s not in FAMILIES:
            fail(f"unknown family {s!r} in --skip (choose from {', '.join(FAMILIES)})")
    fill_list = split_csv([fills])
    if "black" not in fill_list:
        fill_list = ["black", *fill_list]
    if masks is not None and manifest is not None:
        fail("give either --masks or --manifest, not both")
    items = discover_items(images or [], masks=masks, manifest=manifest)
    if not items:
        fail("no images: pass --images DIR (or files), or --manifest M")
    loaded = load_detector(model)
    if not isinstance(loaded, Detector):
        fail(f"trust runs on one detector, not an ensemble: pass one of its members, {_member_paths(model)}")
        return
    detector = loaded
    if detector.untrained:
        warn_untrained([detector.name], "the heatmaps ranked below explain a random head")
    detector.to(resolve_device(device)).eval()
    layer_sets = tuple(tuple(p for p in entry.split("+") if p) for entry in layer or []) or None
    config = TrustConfig(
        methods=tuple(wanted),
        layer_sets=layer_sets,
        family=transforms,
        fills=tuple(fill_list),
        target=target,
        localisation="localisation" not in skipped,
        faithfulness="faithfulness" not in skipped,
        randomisation="randomisation" not in skipped,
        steps=steps,
        randomisation_stages=stages,
        seed=seed,
        limit=limit,
        resume=resume,
        options=options,
    )
    command = _command(
        model, images, masks, manifest, wanted, layer, out, transforms, fill_list, skipped, limit
    )
    # every setting that changes the numbers and is not at its default, so "Made with" reproduces them
    base = TrustConfig()
    extra = [
        ("--target", target, base.target),
        ("--steps", steps, base.steps),
        ("--stages", stages, base.randomisation_stages),
        ("--seed", seed, base.seed),
    ]
    command += "".join(f" {flag} {shlex.quote(str(v))}" for flag, v, default in extra if v != default)
    command += "".join(f" --set {shlex.quote(o)}" for o in option or [])
    total = min(len(items), limit) if limit else len(items)
    with Progress(
        TextColumn("[bold]trust"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.description}"),
        console=console,
        disable=json_out,
        transient=True,
    ) as progress:
        task = progress.add_task("", total=total)
        try:
            run = run_trust(
                detector,
                items,
                out,
                config,
                command=command,
                progress=lambda n, label: progress.update(task, advance=n, description=label),
            )
        except KeyboardInterrupt:
            fail(
                f"interrupted; the images done are recorded in {out}: rerun the same command to go on",
                code=130,
            )
    if run.summary["recommendation"]["method"] is None and run.skipped_methods:  # nothing could run
        fail("no method could run: " + "; ".join(f"{m}: {why}" for m, why in run.skipped_methods.items()))
    if not run.summary["images"]:  # every image skipped (read or decoded badly, its mask unusable)
        reasons = "; ".join(f"{k}: {why}" for k, why in list(run.skipped_images.items())[:3])
        more = f" (and {len(run.skipped_images) - 3} more)" if len(run.skipped_images) > 3 else ""
        fail(f"no image could be evaluated, nothing to report: {reasons or 'no records'}{more}")
    if json_out:
        print_json(run.summary)
        return
    for key, why in run.skipped_images.items():
        warn(f"skipped {key}: {why}")
    from fakelens.trust.report import left_out_note

    if note := left_out_note(run.summary.get("left_out", {})):
        warn(note)
    console.print(run.summary["recommendation"]["text"], highlight=False, soft_wrap=True)
    console.print(
        f"{run.summary['images']} images; wrote records.csv, report.md, summary.json, plots/ and "
        f"gallery.html to [bold]{out}[/]"
    )


def _command(
    model: str,
    images: list[Path] | None,
    masks: Path | None,
    manifest: Path | None,
    methods: list[str],
    layers: list[str] | None,
    out: Path,
    transforms: str,
    fills: list[str],
    skipped: list[str],
    limit: int | None,
) -> str:
    parts = ["fakelens", "trust", "--model", model]
    for p in images or []:
        parts += ["--images", str(p)]
    if masks is not None:
        parts += ["--masks", str(masks)]
    if manifest is not None:
        parts += ["--manifest", str(manifest)]
    parts += ["--methods", ",".join(methods)]
    for lay in layers or []:
        parts += ["--layer", lay]
    parts += ["--transforms", transforms, "--fills", ",".join(fills)]
    if skipped:
        parts += ["--skip", ",".join(skipped)]
    if limit:
        parts += ["--limit", str(limit)]
    parts += ["--out", str(out)]
    return shlex.join(parts)


def _member_paths(spec: str) -> str:
    """``--model PATH`` for each member of the ensemble ``spec`` (``default`` or a folder)."""
    import json

    from fakelens.models.checkpoint import ENSEMBLE_NAME, default_ensemble_path

    root = default_ensemble_path() if spec == "default" else Path(spec)
    try:
        members = json.loads((root / ENSEMBLE_NAME).read_text())["members"]
        return "e.g. " + " or ".join(f"--model {root / m['path']}" for m in members)
    except (OSError, ValueError, KeyError, TypeError):
        return "a member's checkpoint folder"


if __name__ == "__main__":  # python -m fakelens.cli.trust …, until the command is attached to `fakelens`
    app()
