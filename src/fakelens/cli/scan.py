"""``fakelens scan``: score and explain a collection into a resumable Parquet table, locally or on Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from fakelens.cli.common import (
    MaxTiles,
    MethodOptions,
    check_writable,
    console,
    fail,
    print_json,
    results,
    split_csv,
    user_errors,
    warn_untrained,
)
from fakelens.constants import DEFAULT_MAX_TILES

app = typer.Typer()


class RateColumn(ProgressColumn):
    """Images per second over the last few batches."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-- img/s" if speed is None else f"{speed:.1f} img/s", style="progress.data.speed")


@app.command("scan")
@user_errors
def scan_cmd(
    source: Annotated[
        str, typer.Argument(help="A folder (recursive), a CSV/JSONL/Parquet manifest, or a glob.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (scan.parquet, heatmaps/).")],
    model: Annotated[
        str, typer.Option(help="default (the shipped ensemble), a registered model or a checkpoint path.")
    ] = "default",
    methods: Annotated[
        list[str] | None,
        typer.Option(
            "--methods", "-m", help="Heatmap methods, comma-separated; the first one fills the table."
        ),
    ] = None,
    explain: Annotated[
        bool,
        typer.Option("--explain/--no-explain", help="Heatmap statistics for every image (or scores only)."),
    ] = True,
    threshold: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Verdict threshold (default: the model's own).")
    ] = None,
    heatmaps_above: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Images scoring above this get badges and heatmap files (1 = none; default: --threshold).",
        ),
    ] = None,
    badges: Annotated[
        bool,
        typer.Option("--badges/--no-badges", help="Robustness badges for images above the heatmap score."),
    ] = True,
    save_raw: Annotated[
        bool,
        typer.Option(
            "--save-raw",
            help="Also save each overlay's map as .npy: float32 (H, W) in [0, 1] on the image's pixels.",
        ),
    ] = False,
    overlay_max_side: Annotated[
        int | None,
        typer.Option(
            min=16,
            metavar="PIXELS",
            help="Shrink overlay PNGs to this long side (default: the image's own pixels, exact but large "
            "for big photos; the table's statistics are always computed on the original pixels).",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 16,
    workers: Annotated[
        int | None,
        typer.Option(
            min=0, help="Decoding processes (local) or model replicas (Ray); default: from the machine."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    set_: MethodOptions = None,
    max_tiles: MaxTiles = DEFAULT_MAX_TILES,
    faces: Annotated[
        bool,
        typer.Option(
            "--faces/--no-faces",
            help="Also find faces and judge each on its own: columns faces, face_score and face_verdict (the "
            "most fake-looking face). An edit confined to one face weighs little in the image's score.",
        ),
    ] = False,
    ray: Annotated[
        bool, typer.Option("--ray", help="Run on Ray: a local instance, or the cluster of $RAY_ADDRESS.")
    ] = False,
    ray_address: Annotated[
        str | None,
        typer.Option("--ray-address", metavar="ADDRESS", help="Join this Ray cluster (implies --ray)."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Start again instead of resuming the scan in --out.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON to stdout.")] = False,
) -> None:
    """Scan a collection: scores, verdicts, heatmap statistics and badges in OUT/scan.parquet.

    Unreadable files (HEIC included) become rows with an error; other files, not images by name, are
    counted and left out. Interrupted scans resume: files already in OUT with the
    same path and bytes are skipped. Heatmap overlays are written only for images scoring above
    --heatmaps-above; a blank (uniform) image gets its score but no verdict, heatmap or overlay. Images over
    80 megapixels become error rows, refused before decoding ($FAKELENS_MAX_PIXELS raises the limit).
    """
    try:
        from fakelens.scan import ScanSettings, scan
    except ImportError:
        fail("fakelens scan needs pyarrow: pip install 'fakelens[scan]'")
    from fakelens.explain.engine import parse_options

    check_writable(out, "--out")
    chosen = tuple(split_csv(methods) or ["gradcam"])
    settings = ScanSettings(
        methods=chosen,
        options=parse_options(set_ or [], chosen),
        explain=explain,
        threshold=threshold,
        heatmaps_above=heatmaps_above,
        badges=badges,
        save_raw=save_raw,
        overlay_max_side=overlay_max_side,
        batch_size=batch_size,
        max_tiles=max_tiles,
        faces=faces,
    )
    address = ray_address or ("local" if ray else None)
    from fakelens.models.registry import untrained_by_name

    warned = untrained_by_name(model)  # the scan loads it by name below

    def started(n: int) -> None:
        if warned:
            warn_untrained([model])
        progress.update(task, total=n)

    try:
        with Progress(
            TextColumn("[bold]scan"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            disable=json_out,
            transient=True,
        ) as progress:
            task = progress.add_task("scan", total=None)
            summary = scan(
                source,
                out,
                model=model,
                settings=settings,
                workers=workers,
                device=device,
                ray_address=address,
                overwrite=overwrite,
                on_start=started,
                progress=lambda c: progress.advance(task, c.rows + c.skipped),
            )
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (see user_errors): the rows done so far are committed
        again = "again, without --overwrite," if overwrite else "again"
        fail(
            f"interrupted: the rows finished so far are kept in {out}; run the same command {again} to "
            "resume (files already scanned are skipped)",
            code=130,
        )
    if json_out:
        print_json(summary.to_dict())
        return
    if not warned:  # a checkpoint or an ensemble that holds an untrained member
        warn_untrained(summary.untrained)
    table = Table(title=escape(f"scan of {source}"), show_header=False)
    if summary.rows == summary.found:
        whole = ("rows in table", str(summary.rows))
    else:  # the table also holds other sources scanned into --out: its totals, apart from this source's
        face_part = f", {summary.table_fake_faces} a face fake" if faces else ""
        whole = (
            "whole table (all sources in --out)",
            f"{summary.rows} rows: {summary.table_errors} errors, {summary.table_fake} fake{face_part}, "
            f"{summary.table_flagged} with heatmaps",
        )
    for label, value in (
        ("files found", summary.found),
        ("not images by name (left out)", summary.not_images),
        ("done before (skipped)", summary.skipped),
        ("scanned now", summary.scanned),
        ("errors", summary.errors),
        ("verdict fake", summary.fake),
        *((("blank: no verdict", summary.blank),) if summary.blank else ()),
        *((("a face reads fake", summary.fake_faces),) if faces else ()),
        ("with heatmaps", summary.flagged),
        whole,
        ("speed", f"{_rate(summary.images_per_second)} ({summary.engine})"),
    ):
        table.add_row(label, escape(str(value)))
    results.print(table)
    console.print(f"wrote [bold]{escape(summary.table)}[/]")


def _rate(per_second: float) -> str:
    """Images per second, or seconds per image when under one (0.0 images/s said nothing)."""
    if per_second >= 1 or per_second <= 0:
        return f"{per_second:.1f} images/s"
    return f"{1 / per_second:.1f} s/image"
