"""``fakelens analyze``: each model's verdict, the ensemble's verdict, heatmaps with robustness badges, and a
self-contained HTML report (``--report``)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer
from rich.markup import escape
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
    from rich.status import Status

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
    overwrite: Overwrite = False,
    skip_unreadable: Annotated[
        bool,
        typer.Option(
            "--skip-unreadable",
            help="Warn about the files that cannot be read and analyse the others (the JSON lists them "
            "under 'unreadable'); without it one unreadable file stops the run before any work.",
        ),
    ] = False,
) -> None:
    """Is it fake, according to whom, and where? Verdicts per model and ensemble, heatmaps and a report.

    Prints a table of the verdicts (or JSON with --json); --report writes one HTML file with the images, the
    overlays of every model and method, their robustness badges, the heatmaps' mass by facial region and a
    plain-language reading. Nothing is written unless the whole analysis succeeds: --out's files and the
    report wait in hidden temporary files and are moved into place together at the end. An --out folder
    that holds an earlier run's results is refused unless --overwrite is given.

    Memory: every image is held until the end, with --report every full-resolution map too (about 13 bytes
    per pixel per image with two models); a warning says when that exceeds half the memory available, and
    `fakelens scan` handles large collections. Images over 80 megapixels are refused before decoding
    ($FAKELENS_MAX_PIXELS raises the limit).
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
    if out is not None:
        check_writable(out, "--out")
        check_previous_run(out, overwrite)
    elif overwrite:
        fail("--overwrite replaces the results of a previous run in --out: give --out")
    dev = resolve_device(device)
    status = console.status("reading the images") if not json_out else None
    with status if status is not None else nullcontext():
        # every input checked before any model runs
        paths, imgs, unreadable = _load_all(paths, skip_unreadable, _progress(status, "reading image"))
        hashes = [sha256_file(p) for p in _counted(paths, _progress(status, "hashing image"))]
    detector = _load_model(specs)
    from fakelens.models.registry import untrained_members

    warn_untrained(untrained_members(detector))
    n_members = len(detector.members) if isinstance(detector, Ensemble) else 1
    _warn_memory(imgs, n_members * len(methods), keep_maps=report is not None, batch_size=batch_size)
    n = len(imgs)
    message = (
        f"analysing {n} image{'s' if n > 1 else ''} with {n_members} "
        f"model{'s' if n_members > 1 else ''}" + (" and robustness badges" if robustness else "")
    )
    status = console.status(message) if not json_out else None
    where = ""

    def show(method: str, done: int, planned: int) -> None:
        if status is not None:
            status.update(f"{message} — {where}{method}: {done}/{planned} forwards")

    face_method = methods[0] if report is not None and methods else None  # the report shows its maps
    analyses: list[Analysis] = []
    regions: list[FaceRegions | None] = []
    verdicts: list[list[FaceVerdict]] = []
    records: list[dict[str, Any]] = []
    face_note: str | None = None
    staged = StagedOutput(out, "analysis.json", overwrite=overwrite) if out is not None else None
    used: set[str] = set()  # the overlays' file stems
    with staged if staged is not None else nullcontext(), status if status is not None else nullcontext():
        with reporting(show):
            # a batch of images at a time, as analyze_images batches them (the same results): each batch's
            # overlays are written as soon as it is done, and without --report its full-resolution maps
            # are let go, so memory holds the images and one batch's maps rather than every map
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                where = (
                    f"image {start + 1}/{n}, " if stop - start == 1 else f"images {start + 1}–{stop}/{n}, "
                )
                if status is not None:
                    status.update(f"{message} — {where.rstrip(', ')}")
                chunk = imgs[start:stop]
                done = analyze_images(
                    detector,
                    chunk,
                    methods,
                    robustness=robustness,
                    batch_size=batch_size,
                    device=dev,
                    options=options,
                    max_tiles=max_tiles,
                )
                found: list[FaceRegions | None] = [None] * len(chunk)
                if faces and face_note is None:
                    from fakelens.report.render import find_regions

                    found, face_note = find_regions(chunk)
                    if face_note:
                        warn(f"no facial regions: {face_note}")
                faced = [
                    face_verdicts(
                        detector, img, r.faces, max_tiles=max_tiles, method=face_method, options=options
                    )
                    if r is not None
                    else []
                    for img, r in zip(chunk, found, strict=True)
                ]
                batch_records = [
                    _record(p, h, a, r, faces and face_note is None, v)
                    for p, h, a, r, v in zip(
                        paths[start:stop], hashes[start:stop], done, found, faced, strict=True
                    )
                ]
                if staged is not None:
                    _write_overlays(staged, paths[start:stop], chunk, done, batch_records, used, cmap)
                if report is None:
                    _release_maps(done)
                analyses += done
                regions += found
                verdicts += faced
                records += batch_records
        use_faces = faces and face_note is None
        if not use_faces:  # a face detector failed on a later batch: no image gets facial regions
            regions, verdicts = [None] * n, [[] for _ in range(n)]
            for rec in records:
                rec.pop("faces", None)
                rec.pop("regions", None)
        payload: dict[str, Any] = {
            "model": specs if len(specs) > 1 else specs[0],
            "methods": methods,
            "robustness": robustness,
            "images": records,
            "report": str(report) if report else None,
        }
        if unreadable:
            payload["unreadable"] = unreadable
        if report is not None:
            from fakelens.report.render import render_report

            if status is not None:
                status.update("writing the report")
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
            if staged is not None:  # renamed into place with the --out files, or not at all
                atomic_write_text(staged.add_extra(report), text)
            else:
                atomic_write_text(report, text)
        if staged is not None:
            atomic_write_text(staged.path("analysis.json"), json.dumps(payload, indent=2))
            staged.commit()
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


def _progress(status: Status | None, what: str) -> Callable[[int, int], None]:
    """``(k, n)`` → the status line ``what k/n`` (nothing without a status)."""

    def show(k: int, n: int) -> None:
        if status is not None:
            status.update(f"{what} {k}/{n}")

    return show


def _counted(paths: list[Path], show: Callable[[int, int], None]) -> Iterator[Path]:
    for k, p in enumerate(paths, start=1):
        show(k, len(paths))
        yield p


def _load_all(
    paths: list[Path], skip_unreadable: bool = False, show: Callable[[int, int], None] | None = None
) -> tuple[list[Path], list[Image.Image], list[dict[str, str]]]:
    """Every input loaded, or one :class:`ImageError` naming each file that cannot be read (one line each,
    the first :data:`BAD_FILES_LISTED`, then how many more), so that one run shows everything to fix.

    With ``skip_unreadable`` the same lines are a warning and the readable files go on: returns them, their
    images, and each unreadable file with its reason (an error when none is readable)."""
    images: list[Image.Image] = []
    good: list[Path] = []
    bad: list[str] = []
    skipped: list[dict[str, str]] = []
    for p in _counted(paths, show or (lambda k, n: None)):
        try:
            images.append(load_image(p))
            good.append(p)
        except ImageError as exc:
            bad.append(str(exc))
            skipped.append({"file": str(p), "reason": str(exc).removeprefix(f"{p}: ")})
    if not bad:
        return good, images, skipped
    more = len(bad) - BAD_FILES_LISTED
    lines = [f"  {b}" for b in bad[:BAD_FILES_LISTED]] + ([f"  … and {more} more"] if more > 0 else [])
    if skip_unreadable and images:
        warn(f"{len(bad)} of {len(paths)} images cannot be read and are left out (--skip-unreadable):")
        console.print("\n".join(escape(line) for line in lines), highlight=False, soft_wrap=True)
        return good, images, skipped
    if len(bad) == 1 and not skip_unreadable:
        raise ImageError(bad[0])
    hint = "" if skip_unreadable else "; --skip-unreadable analyses the others"
    raise ImageError(
        f"{len(bad)} of {len(paths)} images cannot be read (nothing was written{hint}):\n" + "\n".join(lines)
    )


# What analyze holds in memory, from peak RSS measured on CPU with the shipped two-member ensemble and
# gradcam (1 × 24 MP 3.0 GB, 3 × 24 MP 3.6 GB, 8 × 12 MP 2.8 GB): each image's decoded RGB pixels and each
# full-resolution map (float32 map + bool mask) while kept, plus the working memory of the largest image.
MEMORY_BASE = 0.5e9
"""Bytes: Python, torch and the models."""
MEMORY_PER_IMAGE_PIXEL = 3
"""Bytes per pixel of every image (decoded RGB), held until the end."""
MEMORY_PER_MAP_PIXEL = 5
"""Bytes per pixel of each heatmap (float32 map and bool mask): one batch's, or with --report every one."""
MEMORY_WORKING_PIXEL = 90
"""Bytes per pixel of the largest image while it is explained, badged and blended."""
MEMORY_SHARE = 0.5
"""Warn when the estimate exceeds this share of the memory available."""


def memory_estimate(pixels: list[int], maps: int, *, keep_maps: bool, batch_size: int) -> float:
    """Bytes ``analyze`` needs for images of ``pixels`` each with ``maps`` heatmaps (members × methods):
    every image, every map with ``keep_maps`` (the report) or else the largest batch's, and working memory."""
    if not pixels:
        return MEMORY_BASE
    held = (
        sum(pixels)
        if keep_maps
        else max(sum(pixels[i : i + batch_size]) for i in range(0, len(pixels), batch_size))
    )
    return (
        MEMORY_BASE
        + MEMORY_PER_IMAGE_PIXEL * sum(pixels)
        + MEMORY_PER_MAP_PIXEL * maps * held
        + MEMORY_WORKING_PIXEL * max(pixels)
    )


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (MemAvailable, else free pages), or None if unknown."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def _warn_memory(imgs: list[Image.Image], maps: int, *, keep_maps: bool, batch_size: int) -> None:
    pixels = [img.width * img.height for img in imgs]
    need = memory_estimate(pixels, maps, keep_maps=keep_maps, batch_size=batch_size)
    have = available_memory()
    if have is None or need <= MEMORY_SHARE * have:
        return
    warn(
        f"analysing {len(imgs)} image{'s' if len(imgs) > 1 else ''} ({sum(pixels) / 1e6:.0f} MP) needs about "
        f"{need / 1e9:.1f} GB of memory and {have / 1e9:.1f} GB is available: analyze holds every image"
        + (" and, for --report, every full-resolution map" if keep_maps else "")
        + " until the end; `fakelens scan` handles large collections in constant memory"
    )


def _release_maps(analyses: list[Analysis]) -> None:
    """Let go of the full-resolution maps once written (the table and the JSON need only their summaries)."""
    for a in analyses:
        for m in a.models:
            for h in m.heatmaps.values():
                h.map = h.valid = _RELEASED


_RELEASED = np.zeros((0, 0), dtype=np.float32)
"""What a released map is replaced with (see :func:`_release_maps`)."""


def _write_overlays(
    staged: StagedOutput,
    paths: list[Path],
    imgs: list[Any],
    analyses: list[Analysis],
    records: list[dict[str, Any]],
    used: set[str],
    cmap: str = "jet",
) -> None:
    """Each image's overlay PNGs, one per model and method, into the staging folder; ``rec["files"]`` names
    them (``used``: the stems taken so far, shared by every batch)."""
    from fakelens.viz.overlay import overlay_text, save_overlays

    for p, img, a, rec in zip(paths, imgs, analyses, records, strict=True):
        stem = unique_stem(p, used)
        files: dict[str, str] = {}
        maps: dict[Path, tuple[Any, Any]] = {}
        text: dict[Path, dict[str, str]] = {}
        for m in a.models:
            for meth, h in m.heatmaps.items():
                name = f"{stem}.{m.name}.{meth}.png"
                maps[staged.path(name)] = (h.map, h.valid)
                text[staged.path(name)] = overlay_text(
                    m.name, meth, flat=bool(h.summary.get("flat")), cmap=cmap
                )
                files[f"{m.name}/{meth}"] = name
        save_overlays(img, maps, cmap=cmap, text=text)
        rec["files"] = files


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
