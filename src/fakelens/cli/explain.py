"""``fakelens explain``: verdicts, heatmap overlays, panels and a JSON summary for images."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from fakelens.cli.common import (
    MaxTiles,
    MethodOptions,
    Overwrite,
    StagedOutput,
    check_method_names,
    check_previous_run,
    check_writable,
    console,
    expand_images,
    fail,
    print_json,
    results,
    shown_names,
    split_csv,
    unique_stem,
    user_errors,
    warn,
    warn_untrained,
)
from fakelens.constants import CMAPS, DEFAULT_MAX_TILES
from fakelens.io import atomic_write_bytes, atomic_write_text, load_image

if TYPE_CHECKING:  # torch, timm, matplotlib: imported by the command when it runs, not by `--help`
    from fakelens.models.base import Detector
    from fakelens.pipeline import ImageResult

app = typer.Typer()

DEFAULT_METHODS = "hirescam,gradcam++,layercam,eigencam"


def demo_images() -> list[Path]:
    """The photos bundled with fakelens, real and fake (public domain / CC0; listed in MANIFEST.json)."""
    root = Path(str(resources.files("fakelens") / "assets" / "demo"))
    manifest = json.loads((root / "MANIFEST.json").read_text())
    return [root / f["file"] for f in manifest["files"] if f["kind"] in ("real", "fake")]


def _caption(s: dict[str, Any]) -> str:
    st = s["stats"]
    flat = "  FLAT" if s["flat"] else ""
    return f"peak/mean {st['peak_to_mean']:.1f}  entropy {st['entropy']:.2f}{flat}"


def _write_outputs(
    r: ImageResult,
    summary: dict[str, Any],
    stem: str,
    out: Path,
    alpha: float,
    cmap: str,
    save_raw: bool,
    model_name: str,
) -> dict[str, Any]:
    from fakelens.viz.overlay import overlay_text, panel, save_overlays, save_png

    files: dict[str, str] = {}
    maps = {}
    overlays: dict[Path, tuple[Any, Any]] = {}
    text: dict[Path, dict[str, str]] = {}
    for method in r.explanations:
        m = r.map(method).cpu()
        maps[method] = m
        overlays[out / f"{stem}.{method}.png"] = (m, r.valid(method).cpu())
        flat = bool(summary.get("methods", {}).get(method, {}).get("flat"))
        text[out / f"{stem}.{method}.png"] = overlay_text(model_name, method, flat=flat, cmap=cmap)
        files[method] = f"{stem}.{method}.png"
        if save_raw:
            buf = _npy_bytes(m.numpy())
            atomic_write_bytes(out / f"{stem}.{method}.npy", buf)
            files[f"{method}.npy"] = f"{stem}.{method}.npy"
    save_overlays(r.image, overlays, alpha=alpha, cmap=cmap, text=text)
    if maps:
        if "fake_probability" in summary:
            head = f"{model_name}: {summary['verdict'].upper()}  p(fake) = {summary['fake_probability']:.3f}"
            if summary.get("small"):
                head += "  (small image: little evidence either way)"
        else:
            lab = summary["top_labels"][0]
            head = f"{model_name}: {lab['label']} ({lab['probability']:.2f})"
        from fakelens.explain.engine import class_agnostic

        captions = {
            m: ("class-agnostic: where the model is active · " if class_agnostic(m) else "")
            + _caption(summary["methods"][m])
            for m in maps
        }
        img = panel(r.image, maps, title=head, captions=captions, alpha=alpha, cmap=cmap)
        files["panel"] = save_png(img, out / f"{stem}.panel.png").name
    summary["files"] = files
    return summary


def _detector_labels(det: Detector, fake_probability: float) -> list[dict[str, Any]]:
    """A detector's labels ranked by the probabilities shown (the calibrated fake probability), so that
    ``top_labels`` agrees with the verdict rather than with the raw logits of one tile."""
    probs = {det.labels[det.fake_index]: fake_probability}
    probs |= {lab: 1.0 - fake_probability for lab in det.labels if lab not in probs}
    ranked = sorted(probs.items(), key=lambda kv: -kv[1])
    return [{"label": lab, "probability": p} for lab, p in ranked]


def _npy_bytes(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a.astype(np.float32))
    return buf.getvalue()


@app.command("explain")
@user_errors
def explain_cmd(
    images: Annotated[
        list[Path] | None, typer.Argument(help="Image files or folders (searched recursively).")
    ] = None,
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="'default' (the shipped ensemble: each member is explained), a registered model (see "
            "`fakelens models`; effnet-lite0-imagenet explains a plain ImageNet classifier) or a checkpoint.",
        ),
    ] = "default",
    method: Annotated[
        list[str] | None,
        typer.Option(
            "--method", "-m", help=f"Methods, comma-separated or repeated. Default: {DEFAULT_METHODS}."
        ),
    ] = None,
    target: Annotated[
        str, typer.Option(help="What to explain: fake (log-odds, default), real, top, class:K or a label.")
    ] = "fake",
    layer: Annotated[
        list[str] | None,
        typer.Option("--layer", help="Layer(s) to explain; default: the model's CAM layers."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("fakelens-explain"),
    demo: Annotated[bool, typer.Option("--demo", help="Explain the photos bundled with fakelens.")] = False,
    alpha: Annotated[float, typer.Option(min=0.0, max=1.0, help="Overlay opacity.")] = 0.5,
    cmap: Annotated[str, typer.Option(help=f"Colormap: {', '.join(CMAPS)}.")] = "jet",
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 8,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    set_: MethodOptions = None,
    save_raw: Annotated[
        bool, typer.Option("--save-raw", help="Also save each map as .npy (float32).")
    ] = False,
    max_tiles: MaxTiles = DEFAULT_MAX_TILES,
    json_out: Annotated[bool, typer.Option("--json", help="Print the JSON summary to stdout.")] = False,
    overwrite: Overwrite = False,
) -> None:
    """Explain why a detector calls images fake (or, for a plain classifier, its top class).

    Writes one overlay PNG per image and method, a side-by-side panel per image, and summary.json with
    the verdicts and each map's statistics (a flat map is flagged, not stretched into false confidence).
    Nothing is written unless every image is done (the files wait in a hidden folder inside --out); an --out
    that holds an earlier run's results is refused unless --overwrite is given.
    """
    import torch

    from fakelens.analysis import as_ensemble, explain_member
    from fakelens.devices import resolve_device
    from fakelens.explain.engine import parse_options
    from fakelens.explain.perturbation import reporting
    from fakelens.models.checkpoint import load_detector
    from fakelens.pipeline import batched

    methods = split_csv(method) or DEFAULT_METHODS.split(",")
    check_method_names(methods)
    options = parse_options(set_ or [], methods)
    if cmap not in CMAPS:
        fail(f"unknown colormap {cmap!r} (choose from {', '.join(CMAPS)})")
    paths = expand_images(images or []) + (demo_images() if demo else [])
    if not paths:
        fail("no images given: pass image files or folders, or --demo for the bundled photos")
    check_writable(out, "--out")
    check_previous_run(out, overwrite)
    dev = resolve_device(device)
    for p in paths:  # every input checked before anything is written, then read again batch by batch:
        load_image(p).close()  # memory stays that of one batch, whatever the number of images
    loaded = load_detector(model)
    from fakelens.models.base import Detector
    from fakelens.models.ensemble import Ensemble
    from fakelens.models.registry import untrained_members

    warn_untrained(untrained_members(loaded))
    ens: Ensemble | None = None
    if isinstance(loaded, Detector) and not loaded.is_detector:  # a classifier (an ImageNet head): its
        members = [loaded]  # maps and its top labels, no verdict
    else:
        ens = as_ensemble(loaded)
        members = list(ens.members)
    records: list[dict[str, Any]] = []
    raw = torch.full((len(paths), len(members)), float("nan"))  # members' own fake probabilities
    used: set[str] = set()
    stems = {p: unique_stem(p, used) for p in paths}
    skipped: dict[tuple[str, str], str] = {}  # (member, method) → why the method cannot run on it
    # written into a hidden folder inside --out and moved in only when every image is done: an interrupted
    # or failed run leaves --out as it was, not half of a new set of overlays beside an old summary.json
    with StagedOutput(out, "summary.json", overwrite=overwrite) as staged:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=json_out,
            transient=True,
        ) as progress:
            task = progress.add_task("explain", total=len(paths) * len(members))
            forwards = progress.add_task("", total=None, visible=False)

            def show(method: str, done: int, planned: int) -> None:
                progress.update(forwards, description=f"{method} forwards", completed=done, total=planned)
                progress.update(forwards, visible=True)

            for j, det in enumerate(members):
                det.to(dev)
                starts = range(0, len(paths), batch_size)
                for start, chunk in zip(starts, batched(paths, batch_size), strict=True):
                    with reporting(show):  # a method that cannot run on this member costs only its maps
                        results, _, errors = explain_member(
                            det,
                            [load_image(p) for p in chunk],
                            methods,
                            options,
                            max_tiles,
                            target=target,
                            layers=layer,
                        )
                    for m, reason in errors.items():
                        if (det.name, m) not in skipped:
                            skipped[(det.name, m)] = reason
                            warn(f"{det.name}: no {m} maps ({reason})")
                    for k, (p, r) in enumerate(zip(chunk, results, strict=True)):
                        stem = stems[p] if len(members) == 1 else f"{stems[p]}.{det.name}"
                        summary = r.summary()
                        if ens is not None and r.fake_probability is not None:  # as the ensemble shows it
                            raw[start + k, j] = own = r.fake_probability
                            cal = ens.calibrations[j]
                            shown = float(cal(torch.tensor(own))) if cal is not None else own
                            summary["fake_probability"] = shown
                            summary["verdict"] = ens.member_verdict(j, shown)
                            summary["top_labels"] = _detector_labels(det, shown)
                            summary["threshold"] = ens.member_threshold(j)
                        if det.untrained:
                            summary["untrained"] = True  # a random real/fake head: its verdict means nothing
                        shown_name = f"{det.name} (untrained)" if det.untrained else det.name
                        if errors:
                            summary["errors"] = dict(errors)
                        rec = _write_outputs(
                            r, summary, stem, staged.stage, alpha, cmap, save_raw, shown_name
                        )
                        records.append({"image": str(p), "model": det.name, **rec})
                    progress.advance(task, len(chunk))
        if not any(r.get("methods") for r in records):
            fail(
                "no heatmap could be made: "
                + "; ".join(f"{n}: {m} ({why})" for (n, m), why in skipped.items())
            )
        payload: dict[str, Any] = {
            "model": model,
            "methods": methods,
            "options": options,
            "target": target,
            "calibrated": ens is not None and any(c is not None for c in ens.calibrations),
            "out": str(out),
            "images": records,
        }
        if ens is not None and len(members) > 1 and not raw.isnan().any():
            by_image: dict[str, list[dict[str, Any]]] = {}
            for rec in records:
                by_image.setdefault(rec["image"], []).append(rec)
            payload["ensemble"] = [
                {
                    "image": str(p),
                    "rule": v.rule,
                    "fake_probability": v.fake_probability,
                    "verdict": v.verdict,
                    "threshold": v.threshold,
                    # as analyze marks them: the members disagree, or one read few of its input's pixels
                    "split": len({r.get("verdict") for r in by_image.get(str(p), [])}) > 1,
                    "small": any(r.get("small") for r in by_image.get(str(p), [])),
                    "partial": any(r.get("partial") for r in by_image.get(str(p), [])),
                }
                for p, v in zip(paths, ens.verdicts(raw), strict=True)
            ]
        atomic_write_text(staged.path("summary.json"), json.dumps(payload, indent=2))
        staged.commit()
    if json_out:
        print_json(payload)
        return
    _print_table(records + [{**e, "model": "ensemble"} for e in payload.get("ensemble", [])], methods)
    console.print(f"wrote overlays, panels and summary.json to [bold]{escape(str(out))}[/]")


def _print_table(records: list[dict[str, Any]], methods: list[str]) -> None:
    from fakelens.report.reading import prob

    models = sorted({r["model"] for r in records})
    explained = [m for m in models if m != "ensemble"]
    table = Table(
        title=f"{escape(', '.join(explained))}: verdict and peak-to-mean ratio of each heatmap",
        caption="'flat' = near-uniform map: weak evidence, do not read it as a location"
        + (
            "; 'small' = under half as many pixels as the model's input"
            if any(r.get("small") for r in records)
            else ""
        )
        + ("; 'split' = the models disagree" if any(r.get("split") for r in records) else "")
        + (
            "; 'partial' = part of the image went unread"
            + (
                " (the tile limit: raise --max-tiles)"
                if any(r.get("partial") and r.get("tiles") for r in records)
                else " (a centre crop)"
            )
            if any(r.get("partial") for r in records)
            else ""
        ),
    )
    table.add_column("image", overflow="fold")
    if len(models) > 1:
        table.add_column("model", no_wrap=True)
    table.add_column("verdict" if "verdict" in records[0] else "top class", min_width=12)
    for m in methods:
        table.add_column(m, justify="right", min_width=min(len(m), 8))
    images = list(dict.fromkeys(r["image"] for r in records))  # one row per image and model
    shown = dict(zip(images, shown_names(images), strict=True))
    for r in records:
        if "verdict" in r:
            verdict = f"{r['verdict']} (p={prob(r['fake_probability'], r.get('threshold', 0.5))})" + (
                " [yellow]untrained[/]" if r.get("untrained") else ""
            )
            verdict += " [yellow]split[/]" if r.get("split") else ""
            verdict += " [yellow]small[/]" if r.get("small") else ""
            verdict += " [yellow]partial[/]" if r.get("partial") else ""
        else:
            top = r["top_labels"][0]
            verdict = f"{escape(top['label'])} ({top['probability']:.2f})"
        cells = [
            f"{r['methods'][m]['stats']['peak_to_mean']:.1f}" + (" flat" if r["methods"][m]["flat"] else "")
            if m in r.get("methods", {})
            else ""
            for m in methods
        ]
        row = (
            [escape(shown[r["image"]])]
            + ([escape(r["model"])] if len(models) > 1 else [])
            + [verdict, *cells]
        )
        table.add_row(*row)
    results.print(table)
