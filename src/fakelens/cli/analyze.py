"""``fakelens analyze``: each model's verdict, the ensemble's verdict, heatmaps with robustness badges, and a
self-contained HTML report (``--report``)."""

from __future__ import annotations

import json
import math
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from fakelens.cli.common import (
    MaxTiles,
    MethodOptions,
    check_method_names,
    check_writable,
    console,
    expand_images,
    fail,
    print_json,
    results,
    shown_names,
    split_csv,
    unique_name,
    unique_stem,
    user_errors,
    warn,
    warn_untrained,
)
from fakelens.cli.explain import demo_images
from fakelens.constants import CMAPS, DEFAULT_MAX_TILES
from fakelens.errors import ConfigError, ImageError
from fakelens.io import atomic_write_text, load_image, sha256_file

if TYPE_CHECKING:  # torch, timm, matplotlib, cv2: imported by the command when it runs, not by `--help`
    from PIL import Image

    from fakelens.analysis import Analysis
    from fakelens.face_verdicts import FaceVerdict
    from fakelens.models.base import Detector
    from fakelens.models.ensemble import Ensemble
    from fakelens.report.regions import FaceRegions

app = typer.Typer()

DEFAULT_METHODS = "gradcam"


def load_detector(spec: str) -> Detector | Ensemble:
    """:func:`fakelens.models.checkpoint.load_detector`, imported on first use (it brings torch and timm)."""
    from fakelens.models.checkpoint import load_detector as load

    return load(spec)


def _load_model(specs: list[str]) -> Detector | Ensemble:
    """One spec as loaded; several specs (each a detector or an ensemble) as one ensemble of their members."""
    from fakelens.models.ensemble import Ensemble

    loaded = [load_detector(s) for s in specs]
    members: list[Detector] = []
    for m in loaded:
        members += list(m.members) if isinstance(m, Ensemble) else [m]
    for det in members:
        if not det.is_detector:  # its fake class may have any name (fake_label); a classifier has none
            raise ConfigError(
                f"{det.name} is not a real/fake detector ({len(det.labels)} labels such as "
                f"{det.labels[0]!r}, no fake class); use `fakelens explain` for plain classifiers"
            )
    taken: set[str] = set()
    for det in members:  # two runs of one architecture: results are keyed by name, so the second is name-2
        det.name = unique_name(det.name, taken)
    if len(loaded) == 1:
        return loaded[0]
    return Ensemble.of(loaded)


def _record(
    path: Path,
    sha: str,
    a: Analysis,
    regions: FaceRegions | None,
    faces: bool,
    verdicts: list[FaceVerdict],
) -> dict[str, Any]:
    from fakelens.face_verdicts import fake_faces_in_real

    rec = a.to_dict()
    rec["image"] = {"file": str(path), "sha256": sha, **rec["image"]}
    if faces:
        rec["faces"] = regions.to_dict() if regions is not None else None
        if rec["faces"] is not None:
            rec["faces"]["verdicts"] = [v.to_dict() for v in verdicts]
            rec["faces"]["fake_in_real"] = fake_faces_in_real(a.verdict, verdicts)
        if regions is not None:
            rec["regions"] = {
                m.name: {meth: regions.shares(h.map, h.valid).to_dict() for meth, h in m.heatmaps.items()}
                for m in a.models
            }
    return rec


@app.command("analyze")
@user_errors
def analyze_cmd(
    images: Annotated[
        list[Path] | None, typer.Argument(help="Image files or folders (searched recursively).")
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            help="The shipped ensemble (default), a registered detector or a checkpoint; several "
            "(comma-separated or repeated) form one ensemble.",
        ),
    ] = None,
    method: Annotated[
        list[str] | None,
        typer.Option(
            "--method", "-m", help=f"Methods, comma-separated or repeated. Default: {DEFAULT_METHODS}."
        ),
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write a self-contained HTML report to this file.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Also write analysis.json and one overlay PNG per model and method."
        ),
    ] = None,
    demo: Annotated[bool, typer.Option("--demo", help="Analyse the photos bundled with fakelens.")] = False,
    robustness: Annotated[
        bool,
        typer.Option("--robustness/--no-robustness", help="Grade every heatmap with the robustness badge."),
    ] = True,
    faces: Annotated[
        bool,
        typer.Option(
            "--faces/--no-faces",
            help="Find faces: judge each on its own (a table of face verdicts) and summarise the heatmaps by "
            "facial region.",
        ),
    ] = True,
    title: Annotated[str | None, typer.Option(help="Title of the HTML report.")] = None,
    cmap: Annotated[
        str,
        typer.Option(
            help=f"Colormap of the overlays and the report: {', '.join(CMAPS)} (viridis, inferno and magma "
            "read evenly and survive colour blindness and greyscale printing; jet is the field's habit)."
        ),
    ] = "jet",
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 8,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    set_: MethodOptions = None,
    max_tiles: MaxTiles = DEFAULT_MAX_TILES,
    json_out: Annotated[bool, typer.Option("--json", help="Print the results as JSON to stdout.")] = False,
) -> None:
    """Is it fake, according to whom, and where? Verdicts per model and ensemble, heatmaps and a report.

    Prints a table of the verdicts (or JSON with --json); --report writes one HTML file with the images, the
    overlays of every model and method, their robustness badges, the heatmaps' mass by facial region and a
    plain-language reading. Nothing is written unless the whole analysis succeeds.
    """
    from fakelens.analysis import analyze_images
    from fakelens.devices import resolve_device
    from fakelens.explain.engine import parse_options
    from fakelens.explain.perturbation import reporting
    from fakelens.face_verdicts import face_verdicts
    from fakelens.models.ensemble import Ensemble

    if cmap not in CMAPS:
        fail(f"unknown colormap {cmap!r} (choose from {', '.join(CMAPS)})")
    methods = split_csv(method) or DEFAULT_METHODS.split(",")
    check_method_names(methods)
    options = parse_options(set_ or [], methods)
    specs = split_csv(model) or ["default"]
    paths = expand_images(images or []) + (demo_images() if demo else [])
    if not paths:
        fail("no images given: pass image files or folders, or --demo for the bundled photos")
    if report is not None:
        check_writable(report, "--report", folder=False)
    if out is not None:
        check_writable(out, "--out")
    dev = resolve_device(device)
    imgs = _load_all(paths)  # every input checked before any model runs
    hashes = [sha256_file(p) for p in paths]
    detector = _load_model(specs)
    from fakelens.models.registry import untrained_members

    warn_untrained(untrained_members(detector))
    n_members = len(detector.members) if isinstance(detector, Ensemble) else 1
    message = (
        f"analysing {len(paths)} image{'s' if len(paths) > 1 else ''} with {n_members} "
        f"model{'s' if n_members > 1 else ''}" + (" and robustness badges" if robustness else "")
    )
    status = console.status(message) if not json_out else None

    def show(method: str, done: int, planned: int) -> None:
        if status is not None:
            status.update(f"{message} — {method}: {done}/{planned} forwards")

    with status if status is not None else nullcontext(), reporting(show):
        analyses = analyze_images(
            detector,
            imgs,
            methods,
            robustness=robustness,
            batch_size=batch_size,
            device=dev,
            options=options,
            max_tiles=max_tiles,
        )
        regions: list[FaceRegions | None] = [None] * len(imgs)
        face_note = None
        if faces:
            from fakelens.report.render import find_regions

            regions, face_note = find_regions(imgs)
            if face_note:
                warn(f"no facial regions: {face_note}")
        face_method = methods[0] if report is not None and methods else None  # the report shows its maps
        verdicts = [
            face_verdicts(detector, img, r.faces, max_tiles=max_tiles, method=face_method, options=options)
            if r is not None
            else []
            for img, r in zip(imgs, regions, strict=True)
        ]
    use_faces = faces and face_note is None
    records = [
        _record(p, h, a, r, use_faces, v)
        for p, h, a, r, v in zip(paths, hashes, analyses, regions, verdicts, strict=True)
    ]
    payload: dict[str, Any] = {
        "model": specs if len(specs) > 1 else specs[0],
        "methods": methods,
        "robustness": robustness,
        "images": records,
        "report": str(report) if report else None,
    }
    if report is not None:
        from fakelens.report.render import render_report

        text = render_report(
            analyses,
            imgs,
            shown_names(paths),
            title=title,
            faces=use_faces,
            regions=regions if use_faces else None,
            face_verdicts=verdicts if use_faces else None,
            meta={
                "--model": ", ".join(specs),
                "robustness": "checked (badge per heatmap)"
                if robustness
                else "not checked (--no-robustness)",
            },
            image_info=[{"file": str(p), "sha256": h} for p, h in zip(paths, hashes, strict=True)],
            cmap=cmap,
        )
        atomic_write_text(report, text)
    if out is not None:
        _write_out(out, paths, imgs, analyses, payload, cmap)
    if json_out:
        print_json(payload)
        return
    _print_table(paths, analyses, verdicts)
    _print_faces(paths, analyses, verdicts)
    if report is not None:
        console.print(f"wrote the report to [bold]{escape(str(report))}[/]")
    if out is not None:
        console.print(f"wrote overlays and analysis.json to [bold]{escape(str(out))}[/]")


BAD_FILES_LISTED = 10
"""How many unreadable inputs an error names one per line before it counts the rest."""


def _load_all(paths: list[Path]) -> list[Image.Image]:
    """Every input loaded, or one :class:`ImageError` naming each file that cannot be read (one line each,
    the first :data:`BAD_FILES_LISTED`, then how many more), so that one run shows everything to fix."""
    images: list[Image.Image] = []
    bad: list[str] = []
    for p in paths:
        try:
            images.append(load_image(p))
        except ImageError as exc:
            bad.append(str(exc))
    if len(bad) == 1:
        raise ImageError(bad[0])
    if bad:
        more = len(bad) - BAD_FILES_LISTED
        lines = [f"  {b}" for b in bad[:BAD_FILES_LISTED]] + ([f"  … and {more} more"] if more > 0 else [])
        raise ImageError(
            f"{len(bad)} of {len(paths)} images cannot be read (nothing was written):\n" + "\n".join(lines)
        )
    return images


def _write_out(
    out: Path,
    paths: list[Path],
    imgs: list[Any],
    analyses: list[Analysis],
    payload: dict[str, Any],
    cmap: str = "jet",
) -> None:
    from fakelens.viz.overlay import overlay_text, save_overlays

    out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    for p, img, a, rec in zip(paths, imgs, analyses, payload["images"], strict=True):
        stem = unique_stem(p, used)
        files: dict[str, str] = {}
        maps: dict[Path, tuple[Any, Any]] = {}
        text: dict[Path, dict[str, str]] = {}
        for m in a.models:
            for meth, h in m.heatmaps.items():
                name = f"{stem}.{m.name}.{meth}.png"
                maps[out / name] = (h.map, h.valid)
                text[out / name] = overlay_text(m.name, meth, flat=bool(h.summary.get("flat")), cmap=cmap)
                files[f"{m.name}/{meth}"] = name
        save_overlays(img, maps, cmap=cmap, text=text)
        rec["files"] = files
    atomic_write_text(out / "analysis.json", json.dumps(payload, indent=2))


def _print_table(paths: list[Path], analyses: list[Analysis], verdicts: list[list[FaceVerdict]]) -> None:
    from fakelens.face_verdicts import fake_faces_in_real
    from fakelens.report.reading import pct, prob, threshold_text

    names: list[str] = []
    for a in analyses:
        names += [m.name for m in a.models if m.name not in names]
    split_any = any(a.split for a in analyses)
    notes = ["split = the models disagree: treat the ensemble verdict as weak"] if split_any else []
    if any(a.blank for a in analyses):
        notes.append("blank = a uniform image: no content and no trace to judge, the verdict says nothing")
    if any(a.small for a in analyses):
        notes.append("small = under half as many pixels as a model's input: little evidence either way")
    if any(a.transparent for a in analyses):
        notes.append("transparent N % = pixels the models saw as white; the heatmaps leave them out")
    if any(a.frames > 1 for a in analyses):
        notes.append("frame 1 of N = a multi-frame file (GIF, TIFF pages): only its first frame was read")
    if any(a.partial for a in analyses):
        notes.append(
            "partial N % = a model read only N % of the image's pixels"
            + (": --max-tiles reads more" if any(a.partial and a.tile_capped for a in analyses) else "")
        )
    odd = [fake_faces_in_real(a.verdict, v) for a, v in zip(analyses, verdicts, strict=True)]
    if any(odd):
        notes.append("face N fake = that face, judged on its own, reads fake (see the table of faces)")
    if any(h.robustness for a in analyses for m in a.models for h in m.heatmaps.values()):
        notes.append("robust = heatmaps that passed their robustness checks, of those graded")
    if analyses and analyses[0].calibrated:
        notes.append("p(fake) calibrated on validation photos; every verdict at 0.5")
    elif analyses:
        notes.append(f"ensemble verdict at p(fake) ≥ {threshold_text(analyses[0].threshold)}")
    not_run = {
        (meth, m.name): why.split("; ")[0]
        for a in analyses
        for m in a.models
        for meth, why in m.errors.items()
    }
    notes += [f"no {meth} map from {name}: {why}" for (meth, name), why in not_run.items()]
    untrained = {m.name for a in analyses for m in a.models if m.untrained}
    if untrained:
        notes.append("untrained = a random real/fake head: its verdicts mean nothing")
    table = Table(title="verdict and p(fake): the ensemble and each model", caption="\n".join(notes) or None)
    table.add_column("image", overflow="fold")
    table.add_column("ensemble", no_wrap=True)
    for n in names:
        table.add_column(escape(f"{n} (untrained)" if n in untrained else n), no_wrap=True)
    table.add_column("robust", justify="right", no_wrap=True, min_width=6)
    for p, a, faces in zip(shown_names(paths), analyses, odd, strict=True):
        by = {m.name: m for m in a.models}
        cells = [
            _verdict_cell(by[n].verdict, by[n].fake_probability, by[n].threshold) if n in by else "–"
            for n in names
        ]
        heat = [h for m in a.models for h in m.heatmaps.values()]
        checked = [h for h in heat if h.robustness and "grade" in h.robustness]
        ok = sum(1 for h in checked if h.robustness and h.robustness["grade"] == "ok")
        table.add_row(
            escape(p),
            # a blank image has nothing to judge: its score, but no verdict
            (
                f"[bold]no verdict[/] {prob(a.fake_probability, a.threshold)}"
                if a.blank
                else _verdict_cell(a.verdict, a.fake_probability, a.threshold)
            )
            + (" [yellow]split[/]" if a.split else "")
            + (" [yellow]blank[/]" if a.blank else "")
            + (" [yellow]small[/]" if a.small else "")
            + (f" [yellow]partial {pct(a.coverage)}[/]" if a.partial else "")
            + (f" [yellow]transparent {pct(a.transparent)}[/]" if a.transparent else "")
            + (f" [yellow]frame 1 of {a.frames}[/]" if a.frames > 1 else "")
            + "".join(f" [bold red]face {f} fake[/]" for f in faces),
            *cells,
            f"{ok}/{len(heat)}" if checked else "–",
        )
    results.print(table)


def _print_faces(paths: list[Path], analyses: list[Analysis], verdicts: list[list[FaceVerdict]]) -> None:
    """Every face judged on its own window (only when some image has a face)."""
    if not any(verdicts):
        return
    names = list(next(v for v in verdicts if v)[0].members)
    table = Table(title="each face judged on its own (a window around it)")
    table.add_column("image", overflow="fold")
    table.add_column("face at (x, y)", no_wrap=True)
    table.add_column("ensemble", no_wrap=True)
    for n in names:
        table.add_column(n, no_wrap=True)
    for p, a, vs in zip(shown_names(paths), analyses, verdicts, strict=True):
        own = {m.name: m.threshold for m in a.models}
        for k, v in enumerate(vs, start=1):
            x0, y0, x1, y1 = v.box
            table.add_row(
                escape(p),
                f"{k}: {(x0 + x1) / 2:.0f}, {(y0 + y1) / 2:.0f}",
                _verdict_cell(v.verdict, v.fake_probability, a.threshold)
                + (" [yellow]split[/]" if v.split else ""),
                *(_verdict_cell(vd, s, own.get(n, a.threshold)) for n, (s, vd) in v.members.items()),
            )
    results.print(table)


def _verdict_cell(verdict: str, p: float, threshold: float) -> str:
    from fakelens.report.reading import prob

    if not math.isfinite(p):
        return "n/a"
    colour = "red" if verdict == "fake" else "green"
    return f"[bold {colour}]{verdict}[/] {prob(p, threshold)}"
