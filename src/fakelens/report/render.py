"""One self-contained HTML report for a set of analysed images.

Everything the file needs is inside it: images as base64 JPEG/PNG ``data:`` URIs, the CSS inline, no
script and no external URL, so it can be mailed, attached to a case file or opened offline years later. Per
image it shows the ensemble verdict and score, a card per model, the original beside the jet overlay of
every model and method with its robustness badge, the heatmaps' mass by facial region when a face is found,
and a reading in plain language generated from the numbers (:mod:`fakelens.report.reading`). A legend at the
end says how to read the colour map, the badge and the regions.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
from PIL import Image

from fakelens import __version__
from fakelens.analysis import Analysis, HeatmapResult, ModelAnalysis
from fakelens.constants import CMAP_ENDS
from fakelens.errors import ConfigError, FakelensError
from fakelens.explain.engine import class_agnostic
from fakelens.face_verdicts import FaceVerdict, fake_faces_in_real
from fakelens.report.reading import (
    ShareKey,
    equivariance_text,
    heatmap_shares,
    margin_word,
    pct,
    peak_to_mean_text,
    prob,
    reading_sections,
    threshold_text,
)
from fakelens.report.regions import REGION_COLOURS, REGION_LABELS, REGIONS, FaceRegions, RegionShares
from fakelens.trust.criteria import DEFAULT_CRITERIA
from fakelens.viz.overlay import colorize, fit_size, overlay, shrink_image, shrink_map

__all__ = ["find_regions", "render_report"]

_CSS = """
:root{--fake:#b3261e;--fake-bg:#fdecea;--real:#1b6e34;--real-bg:#e8f5ec;--check:#9a5b00;--check-bg:#fff4e0;
--ok:#1b6e34;--ink:#1d232a;--muted:#5d6670;--line:#d9dee3;--panel:#f6f8fa}
*{box-sizing:border-box}
body{font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);margin:0;
background:#fff}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:0}h3{font-size:15px;margin:22px 0 8px}
h1,h2,td a{overflow-wrap:anywhere}
h2.summary{font-size:17px;margin:22px 0 8px}.scroll{overflow-x:auto;max-width:100%}
a{color:#1a5fb4}.muted{color:var(--muted)}.small{font-size:12px}
header{border-bottom:2px solid var(--ink);padding-bottom:12px;margin-bottom:18px}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:10px 0 0;font-size:13px}
dl.meta dt{color:var(--muted)}dl.meta dd{margin:0;font-family:ui-monospace,Menlo,Consolas,monospace;
word-break:break-all}
table{border-collapse:collapse}
table.grid{width:100%;font-size:13px}
table.grid th,table.grid td{border-bottom:1px solid var(--line);padding:5px 8px;text-align:left;
vertical-align:top}
table.grid th{background:var(--panel);font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}.nowrap{white-space:nowrap}
.pill{display:inline-block;border-radius:10px;padding:0 9px;font-weight:700;font-size:12px;white-space:nowrap;
letter-spacing:.04em;
text-transform:uppercase}
.pill.fake{background:var(--fake);color:#fff}.pill.real{background:var(--real);color:#fff}
.pill.ok{background:var(--ok);color:#fff}.pill.check{background:var(--check);color:#fff}
.pill.na{background:#646d75;color:#fff}
.pill.small{background:#fff;color:var(--check);border:1px solid var(--check)}
.pill.facefake{background:#fff;color:var(--fake);border:1px solid var(--fake)}
.pill.untrained{background:var(--check);color:#fff}
section.image{border-top:1px solid var(--line);margin-top:34px;padding-top:18px;break-before:page}
.imghead{display:flex;align-items:baseline;gap:12px;flex-wrap:wrap}
.banner{display:flex;align-items:center;gap:18px;border-radius:6px;padding:12px 16px;margin:12px 0;
border-left:8px solid}
.banner.fake{background:var(--fake-bg);border-color:var(--fake)}
.banner.real{background:var(--real-bg);border-color:var(--real)}
.banner.hedged{border-left-style:dashed;
background-image:repeating-linear-gradient(135deg,rgba(0,0,0,.05) 0 6px,transparent 6px 12px)}
.banner .big{font-size:26px;font-weight:800;letter-spacing:.05em}
.banner.fake .big{color:var(--fake)}.banner.real .big{color:var(--real)}
.banner.none{background:var(--panel);border-color:#8a939b}.banner.none .big{color:#5d666e}
.banner .score{font-size:15px}
.reading{background:var(--panel);border-radius:6px;padding:10px 16px;margin:8px 0 4px}
.reading p{margin:6px 0}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:10px 0}
.card{border:1px solid var(--line);border-radius:6px;padding:10px 12px;min-width:230px;flex:0 1 270px}
.card .name{font-weight:700;font-family:ui-monospace,Menlo,Consolas,monospace}
.card .p{font-size:20px;font-weight:700;font-variant-numeric:tabular-nums}
.bar{position:relative;height:10px;background:linear-gradient(90deg,var(--real-bg),var(--fake-bg));
border:1px solid #7b848c;border-radius:5px;margin:6px 0 2px}
.bar .fill{position:absolute;top:-1px;bottom:-1px;left:0;border-radius:5px 0 0 5px;opacity:.85}
.bar .fill.fake{background:var(--fake)}.bar .fill.real{background:var(--real)}
.bar .thr{position:absolute;top:-4px;bottom:-4px;width:2px;background:var(--ink);box-shadow:0 0 0 1px #fff}
.scale{display:flex;justify-content:space-between;font-size:11px;color:var(--muted)}
.maps{display:grid;gap:10px;align-items:start}
.maps .orig{position:sticky;top:8px}
.tile{border:1px solid var(--line);border-radius:6px;padding:6px;background:#fff}
.tile img{width:100%;display:block;border-radius:3px;max-height:80vh;object-fit:contain}
.maps.px img{image-rendering:pixelated}
.maps.wide{grid-template-columns:minmax(0,1fr)}.maps.wide table.badge,.maps.wide .cap{max-width:520px}
.maps.wide .rowlabel{writing-mode:horizontal-tb;transform:none;text-align:left;margin-top:6px}
.agnostic{font-size:11.5px;color:var(--check);margin:0 0 3px}
.flatmap{position:relative}.flatmap img{filter:grayscale(.9) opacity(.55)}
.flatmap .stamp{position:absolute;left:6px;top:6px;background:#fff;border:1px solid var(--check);
color:var(--check);font-weight:700;font-size:12px;padding:1px 6px;border-radius:3px}
.tile .cap{display:flex;justify-content:space-between;align-items:center;gap:6px;margin:5px 0 3px}
.tile .cap b{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:13px}
.rowlabel{writing-mode:vertical-rl;transform:rotate(180deg);font-weight:700;text-align:center;
font-family:ui-monospace,Menlo,Consolas,monospace;align-self:center}
table.badge{width:100%;font-size:11.5px}
table.badge th{font-weight:400;color:var(--muted);text-align:left;padding:1px 4px 1px 0}
table.badge td{text-align:right;padding:1px 0;font-variant-numeric:tabular-nums}
table.badge tr.bad td,table.badge tr.bad th{color:var(--check);font-weight:600}
ul.flags{margin:4px 0 0;padding-left:16px;font-size:11.5px;color:var(--check)}
.missing{color:var(--muted);font-size:12px;padding:20px 8px}
.legendbar{display:flex;flex-wrap:wrap;align-items:center;gap:8px;font-size:12px;color:var(--muted);
margin:6px 0}
.legendbar span{white-space:nowrap}.legendbar span.lgtext{white-space:normal;flex:1;min-width:240px}
.legendbar img{height:12px;width:260px;max-width:60%;border:1px solid var(--line)}
.regions{display:flex;gap:16px;align-items:flex-start;flex-wrap:wrap}
.regions figure{margin:0;width:240px}.regions figure img{width:100%;border-radius:4px}
.facemaps{display:flex;gap:10px;flex-wrap:wrap;margin:8px 0}.facemaps figure{margin:0;width:160px}
.facemaps img{width:100%;border-radius:4px}.facemaps figcaption{font-size:12px;color:var(--muted)}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px;vertical-align:middle}
td.top{font-weight:700}
.legend{border-top:2px solid var(--ink);margin-top:40px;padding-top:10px;font-size:13px}
.legend h3{margin-top:14px}
footer{margin-top:30px;font-size:12px;color:var(--muted)}
@media screen and (max-width:700px){main{padding:14px 12px 40px}
.maps{grid-template-columns:minmax(0,1fr)!important}.maps>*{grid-row:auto!important;grid-column:auto!important}
.rowlabel{writing-mode:horizontal-tb;transform:none;text-align:left;margin-top:6px}
.regions>div{min-width:0!important}.regions figure{width:100%;max-width:360px}
.banner{flex-wrap:wrap;gap:8px}}
.pill,.bar,.bar .fill,.bar .thr,.banner,.sw,table.grid th,.legendbar img{-webkit-print-color-adjust:exact;
print-color-adjust:exact}
@page{margin:12mm}
@media print{main{max-width:none;padding:0}.scroll{overflow:visible}table.grid{font-size:11px}
table.grid th,table.grid td{padding:3px 4px}
h1,h2,h3,.imghead,.rowlabel{break-after:avoid;page-break-after:avoid}
.tile,.keep,.card,.banner,.reading p,table.badge,.regions figure,.facemaps figure,.legendbar,tr{
break-inside:avoid;page-break-inside:avoid}
.maps img{max-height:110mm;object-fit:contain}.legendbar{break-before:avoid;page-break-before:avoid}
.maps{display:flex!important;flex-wrap:wrap;gap:8px}.maps>*{flex:1 1 40%;min-width:0}
.maps>.rowlabel{flex-basis:100%;writing-mode:horizontal-tb;transform:none;text-align:left}
.maps .orig{position:static}}
"""


# ------------------------------------------------------------------------------------------ images
def _data_uri(arr: np.ndarray, fmt: str = "JPEG") -> str:
    buf = io.BytesIO()
    img = Image.fromarray(arr)
    if fmt == "JPEG":
        img.save(buf, format="JPEG", quality=88, optimize=True)
        mime = "image/jpeg"
    else:
        img.save(buf, format="PNG", optimize=True)
        mime = "image/png"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def _colour_bar(cmap: str = "jet") -> str:
    ramp = np.tile(np.linspace(0.0, 1.0, 256, dtype=np.float32)[None], (8, 1))
    return _data_uri(colorize(ramp, cmap), "PNG")


# ------------------------------------------------------------------------------------------- helpers
def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def find_regions(images: Sequence[Image.Image]) -> tuple[list[FaceRegions | None], str | None]:
    """Facial regions of every image, or all ``None`` and the reason when no face detector is available."""
    from fakelens.report.regions import face_regions

    out: list[FaceRegions | None] = []
    for img in images:
        try:
            out.append(face_regions(img))
        except FakelensError as exc:
            return [None] * len(images), str(exc)
    return out, None


def _verdict_pill(verdict: str, p: float, blank: bool = False) -> str:
    """The verdict's pill; ``blank``: a blank image, which has nothing to judge — no verdict."""
    if blank:
        return "<span class='pill na'>no verdict</span>"
    if not math.isfinite(p) or verdict not in ("fake", "real"):
        return "<span class='pill na'>n/a</span>"
    return f"<span class='pill {verdict}'>{verdict}</span>"


def _small_tag(a: Analysis) -> str:
    """Tags beside the verdict of an image too small to carry much evidence, read only in part, partly
    transparent or one frame of several (see the reading)."""
    tags = ""
    if a.blank:
        tags += " <span class='pill small' title='uniform: no content, no trace to judge'>blank image</span>"
    if a.small:
        tags += " <span class='pill small' title='few pixels: little evidence either way'>small image</span>"
    if a.partial:
        why = (
            "the tile limit left the rest unread: raise --max-tiles"
            if a.tile_capped
            else "a model crops the centre of its input: it never read the borders"
        )
        tags += f" <span class='pill small' title='{why}'>read {_e(pct(a.coverage))}</span>"
    if a.transparent:
        tags += (
            " <span class='pill small' title='seen as white by the models; left out of the heatmaps'>"
            f"transparent {_e(pct(a.transparent))}</span>"
        )
    if a.frames > 1:
        tags += f" <span class='pill small' title='only the first was analysed'>frame 1 of {a.frames}</span>"
    return tags


def _faces_tag(a: Analysis, verdicts: Sequence[FaceVerdict]) -> str:
    """A tag beside a *real* verdict when a face, judged on its own, reads fake (see the reading)."""
    odd = fake_faces_in_real(a.verdict, verdicts)
    if not odd:
        return ""
    which = f"face {odd[0]}" if len(odd) == 1 else f"{len(odd)} faces"
    verb = "reads" if len(odd) == 1 else "read"
    return (
        " <span class='pill facefake' title='judged on a window around it; an edit confined to a face weighs "
        f"little in the whole image'>{which} {verb} fake</span>"
    )


def _bar(p: float, threshold: float, verdict: str) -> str:
    if not math.isfinite(p):
        return ""
    return (
        f"<div class='bar' title='p(fake) {prob(p, threshold)}; threshold {threshold_text(threshold)}'>"
        f"<div class='fill {_e(verdict)}' style='width:{100 * p:.1f}%'></div>"
        f"<div class='thr' style='left:calc({100 * threshold:.1f}% - 1px)'></div></div>"
        "<div class='scale'><span>0 real</span><span>threshold</span><span>1 fake</span></div>"
    )


def _fmt(v: Any, spec: str = ".2f") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return format(v, spec)


def _badge_html(b: Mapping[str, Any] | None, flat_on_image: bool = False) -> str:
    """The badge's table; ``flat_on_image``: the map is flat over the image's own pixels (its summary), which
    the badge — graded over the model's whole input, padding included — may not see."""
    if b is None:
        return "<div class='small muted'>robustness not checked</div>"
    if "error" in b:
        return f"<div class='small muted'>robustness check failed: {_e(b['error'])}</div>"
    c = DEFAULT_CRITERIA
    flags: Mapping[str, str] = b.get("flags") or {}
    ratio = b.get("border_ratio")
    tile = b.get("tile")
    tile = tile if isinstance(tile, (list, tuple)) and len(tile) == 4 else None
    tiled = tile is not None
    rows = [
        (
            "equivariance",
            equivariance_text(b.get("equivariance"), b.get("equivariance_min"), c.min_equivariance),
            "not-equivariant" in flags,
            f"mean cosine between the map and the maps of 4 transformed views carried back; a mean "
            f"≥ {c.min_equivariance:.2f} passes; worst view: {b.get('worst_view')}",
        ),
        (
            "mass on fill",
            f"{pct(float(b.get('border_mass', 0.0)))} on {pct(float(b.get('fill_fraction', 0.0)))}"
            + (f" ({ratio:.2f}×)" if isinstance(ratio, (int, float)) else ""),
            "leaks-into-fill" in flags,
            "share of the map's mass on the black fill of the transformed views vs the fill's share of "
            "the pixels; more mass than area means the map reacts to the frame",
        ),
        (
            "corner peak",
            "yes" if b.get("corner_argmax") else "no",
            "corner-peaks" in flags,
            f"peak in a corner cell (chance {pct(float(b.get('corner_chance', 0.0)))})",
        ),
        (
            "flat",
            "yes"
            if b.get("flat")
            else ("yes, over all tiles" if tiled else "yes, on the image")
            if flat_on_image
            else "no",
            "flat" in flags or flat_on_image,
            "near-uniform map: points nowhere"
            + (
                ""
                if b.get("flat") or not flat_on_image
                else " (the map stitched from all tiles; the graded tile's own map, whose numbers this "
                "table gives, is not)"
                if tiled
                else " (over the image's own pixels; not over the "
                "model's whole input, whose padding holds the rest of the map)"
            ),
        ),
        (
            "peak / mean",
            peak_to_mean_text(b.get("peak_to_mean")),
            False,
            "map maximum over its mean; 1 = uniform, higher = more concentrated",
        ),
    ]
    body = "".join(
        f"<tr class='{'bad' if bad else ''}' title='{_e(tip)}'><th>{_e(k)}</th><td>{_e(v)}</td></tr>"
        for k, v, bad, tip in rows
    )
    fl = "".join(f"<li>{_e(reason)}</li>" for reason in flags.values())
    where = (
        f"<div class='small muted'>graded on one native tile, x {tile[0]:.0f}–{tile[2]:.0f}, "
        f"y {tile[1]:.0f}–{tile[3]:.0f} (the most fake-looking): these numbers are that tile's map</div>"
        if tile is not None
        else ""
    )
    return f"<table class='badge'>{body}</table>" + (f"<ul class='flags'>{fl}</ul>" if fl else "") + where


def _grade_pill(b: Mapping[str, Any] | None) -> str:
    if b is None or "error" in b:
        return "<span class='pill na'>unchecked</span>"
    if b.get("grade") == "ok":
        return "<span class='pill ok' title='passed every robustness check'>robust</span>"
    return "<span class='pill check' title='failed at least one robustness check'>check</span>"


# ------------------------------------------------------------------------------------------ sections
def _model_card(m: ModelAnalysis, threshold: float, blank: bool = False) -> str:
    """One model's card; ``blank``: the image is blank, so no verdict is shown (only the score)."""
    p = m.fake_probability
    n_ok = sum(1 for h in m.heatmaps.values() if h.robustness and h.robustness.get("grade") == "ok")
    checked = sum(1 for h in m.heatmaps.values() if h.robustness and "grade" in h.robustness)
    n_maps = len(m.heatmaps)
    maps = (
        f"{n_ok} of {checked} heatmap{'s' if checked != 1 else ''} robust"
        if checked
        else f"{n_maps} heatmap{'s' if n_maps != 1 else ''}, not checked"
    )
    err = "".join(
        f"<div class='small muted'>{_e(k)}: could not run ({_e(v.split('; ')[0])})</div>"
        for k, v in m.errors.items()
    )
    margin = margin_word(p, threshold) if math.isfinite(p) else "no fake probability"
    return (
        f"<div class='card'><div class='name'>{_e(m.name)}"
        + (
            " <span class='pill untrained' title='a random real/fake head'>untrained</span>"
            if m.untrained
            else ""
        )
        + "</div>"
        f"<div>{_verdict_pill(m.verdict, p, blank)} <span class='p'>{prob(p, threshold)}</span> "
        f"<span class='small muted'>p(fake)</span></div>"
        f"{_bar(p, threshold, m.verdict)}"
        f"<div class='small muted'>{_e(margin)} · {_e(maps)}</div>{err}</div>"
    )


ELONGATED = 3.0
"""An image at least this many times wider than tall is laid out one tile per row, at the full width."""
LONG_CAP = 4
"""The long side of an embedded picture is at most this many times ``max_side`` (see :func:`embed_size`)."""


def embed_size(h: int, w: int, max_side: int) -> tuple[int, int]:
    """``(h, w)`` of an image's embedded pictures: never enlarged; up to 4:3 the long side at most
    ``max_side``; a more elongated image keeps the area of a 4:3 one of that long side (``max_side² · ¾``),
    so its short side stays readable (2000 × 200 → 1315 × 131, not 480 × 48), with its long side at most
    :data:`LONG_CAP` × ``max_side``."""
    long, short = max(h, w), max(1, min(h, w))
    side = round(math.sqrt(0.75 * max_side * max_side * long / short))
    return fit_size(h, w, min(LONG_CAP * max_side, max(max_side, side)))


AGNOSTIC_NOTE = "class-agnostic: where the model is active, not evidence for fake"


def _heatmap_tile(
    method: str,
    h: HeatmapResult,
    small: np.ndarray,
    size: tuple[int, int],
    cmap: str,
    alpha: float,
    model: str = "",
    name: str = "",
) -> str:
    m = shrink_map(h.map, size)
    v = shrink_map(h.valid, size)
    uri = _data_uri(overlay(small, m, alpha=alpha, cmap=cmap, valid=v))
    st = h.summary.get("stats", {})
    flat = bool(h.summary.get("flat"))
    title = f"layers: {', '.join(h.summary.get('layers', []))}; entropy {_fmt(st.get('entropy'))}"
    alt = f"{method} overlay of {model} on {name}" if model and name else f"{method} overlay"
    peak = peak_to_mean_text(st.get("peak_to_mean"), flat)
    img = f"<img alt='{_e(alt + (' (flat: no location)' if flat else ''))}' src='{uri}'>"
    if flat:  # near-uniform: scaled to its own peak it would be painted all hot, as if it pointed everywhere
        img = f"<div class='flatmap'>{img}<span class='stamp'>{FLAT_STAMP}</span></div>"
    return (
        f"<div class='tile'>{img}"
        f"<div class='cap' title='{_e(title)}'><b>{_e(method)}</b>{_grade_pill(h.robustness)}</div>"
        + (f"<div class='agnostic'>{AGNOSTIC_NOTE}</div>" if class_agnostic(method) else "")
        + (f"<div class='small muted'>peak/mean {_e(peak)}</div>" if h.robustness is None else "")
        + f"{_badge_html(h.robustness, flat)}</div>"
    )


FLAT_STAMP = "flat: no location"
"""Stamped on a near-uniform map's overlay (drawn greyed): whatever its colours, it points nowhere."""


def _scale_words(cmap: str) -> str:
    """The colour bar's alt text: what its two ends mean."""
    low, high = CMAP_ENDS[cmap]
    return f"colour scale from {low} (0, no evidence) to {high} (1, the map's peak)"


def _colour_words(methods: Sequence[str]) -> str:
    """What the overlays' colour means, true of the methods shown (class-agnostic ones included)."""
    agnostic = [m for m in methods if class_agnostic(m)]
    if not agnostic:
        return "colour = evidence for <b>fake</b>"
    listed = ", ".join(_e(m) for m in agnostic)
    if len(agnostic) == len(methods):
        return f"colour = where the model is active (class-agnostic: {listed}), <b>not</b> evidence for fake"
    return (
        f"colour = evidence for <b>fake</b>; for the class-agnostic {listed}, where the model is active "
        "(not evidence for fake)"
    )


def _heatmap_grid(
    a: Analysis,
    image: Image.Image,
    methods: Sequence[str],
    cmap: str,
    alpha: float,
    max_side: int,
    name: str = "",
) -> str:
    size = embed_size(image.height, image.width, max_side)
    small = shrink_image(image, size)
    orig = _data_uri(small)
    wide = image.width >= ELONGATED * image.height
    # a small image is enlarged by the browser: its pixels kept sharp, as an analyst wants to see them (not
    # a shrunk one, which the browser may shrink further)
    px = size == (image.height, image.width) and size[1] < 240
    ncols = max(1, len(methods))
    rows = len(a.models)
    original = (
        f"<img alt='{_e(f'original: {name}' if name else 'original')}' src='{orig}'>"
        f"<div class='cap'><b>original</b></div><div class='small muted'>{a.width}×{a.height} px</div></div>"
    )
    classes = "maps" + (" px" if px else "") + (" wide" if wide else "")
    if wide:  # one tile per row at the full width, each model's maps under its name
        parts = [f"<div class='{classes}'>", f"<div class='tile'>{original}"]
    else:
        parts = [
            f"<div class='{classes}' style='grid-template-columns:22px repeat({ncols + 1},minmax(0,1fr))'>",
            f"<div style='grid-row:1 / span {rows};grid-column:2' class='tile orig'>{original}",
        ]
    for r, m in enumerate(a.models, start=1):
        label = "" if wide else f" style='grid-row:{r};grid-column:1'"
        cells = [f"<div class='rowlabel'{label}>{_e(m.name)}</div>"]
        for c, meth in enumerate(methods, start=3):
            pos = "" if wide else f" style='grid-row:{r};grid-column:{c}'"
            if meth in m.heatmaps:
                tile = _heatmap_tile(meth, m.heatmaps[meth], small, size, cmap, alpha, m.name, name)
                cells.append(f"<div{pos}>{tile}</div>")
            else:
                why = m.errors.get(meth, "not computed").split("; ")[0]
                cells.append(
                    f"<div{pos} class='tile'><div class='cap'><b>{_e(meth)}</b></div>"
                    f"<div class='missing'>could not run on {_e(m.name)}: {_e(why)}</div></div>"
                )
        if wide:  # the model's name kept on the page of its first tile
            cells[:2] = [f"<div class='keep'>{''.join(cells[:2])}</div>"]
        parts += cells
    parts.append("</div>")
    bar = _colour_bar(cmap)
    parts.append(
        f"<div class='legendbar'><span>0</span><img alt='{_e(_scale_words(cmap))}' src='{bar}'>"
        "<span>1 = the map's peak"
        f"</span><span class='lgtext'>{_colour_words(methods)}, relative to each map's own maximum "
        "within the pixels the model saw; dimmed pixels were not seen by the model</span></div>"
    )
    return "".join(parts)


def _regions_section(
    a: Analysis,
    image: Image.Image,
    regions: FaceRegions | None,
    shares: Mapping[ShareKey, RegionShares],
    verdicts: Sequence[FaceVerdict],
    max_side: int,
    cmap: str,
    alpha: float,
    name: str = "",
) -> str:
    if regions is None:
        return ""
    size = embed_size(image.height, image.width, max_side)
    small = shrink_image(image, size)
    pic = regions.picture(small) if size == regions.labels.shape else None
    if pic is None:
        lab = np.asarray(Image.fromarray(regions.labels).resize((size[1], size[0]), Image.Resampling.NEAREST))
        pic = FaceRegions(regions.faces, lab).picture(small)
    if verdicts:
        pic = _number_faces(pic, verdicts, size[1] / image.width)
    legend = " ".join(
        f"<span class='nowrap'><span class='sw' style='background:rgb{REGION_COLOURS[r]}'></span>"
        f"{_e(REGION_LABELS[r])}</span>"
        for r in REGIONS
        if r != "outside"
    )
    head = "".join(f"<th class='num'>{_e(REGION_LABELS[r])}</th>" for r in REGIONS)
    head += "<th title='the region holding the most mass relative to its area'>densest</th>"
    any_shares = next(iter(shares.values()), None)
    area_row = ""
    if any_shares is not None:
        area_row = (
            "<tr><th class='muted'>share of the pixels</th>"
            + "".join(f"<td class='num muted'>{_e(pct(any_shares.area[r]))}</td>" for r in REGIONS)
            + "<td></td></tr>"
        )
    rows = []
    for m in a.models:
        for meth in m.heatmaps:
            s = shares.get((m.name, meth))
            if s is None:
                continue
            if s.mass is None:
                cells = "".join("<td class='num'>–</td>" for _ in REGIONS)
            else:
                top = s.top()
                cells = "".join(
                    f"<td class='num{' top' if r == top else ''}' title='{_e(_lift_title(s, r))}'>"
                    f"{_e(pct(s.mass[r]))}</td>"
                    for r in REGIONS
                )
            rows.append(f"<tr><th>{_e(m.name)} · {_e(meth)}</th>{cells}<td>{_e(_densest(s))}</td></tr>")
    faces = ", ".join(
        f"score {f.score:.2f}" + (", landmarks estimated" if f.estimated else "") for f in regions.faces
    )
    note = (
        "<p class='small' style='color:var(--check)'>Landmarks were estimated from the face box (Haar "
        "detector): the regions are approximate.</p>"
        if regions.estimated
        else ""
    )
    alt = f"facial regions of {name}" if name else "facial regions"
    return (
        f"{_faces_table(verdicts, image, cmap, alpha, a, name)}<h3>Heatmap mass by facial region</h3>"
        f"<div class='regions'><figure><img alt='{_e(alt)}' src='{_data_uri(pic)}'>"
        f"<figcaption class='small muted'>{len(regions.faces)} face(s) by {_e(regions.detector)} "
        f"({_e(faces)})<br>{legend}<br>boxes: the faces, numbered as in the face table</figcaption></figure>"
        "<div style='flex:1;min-width:min(420px,100%)'>"
        f"{_scroll_box('heatmap mass by facial region' + (f' of {name}' if name else ''))}"
        "<table class='grid'>"
        f"<tr><th>share of the map's mass</th>{head}</tr>{''.join(rows)}{area_row}</table></div>"
        "<p class='small muted'>Each row sums to 100 % over the pixels the model saw; the largest share is "
        "in bold. Compare a region's share of the mass with its share of the pixels (last row): "
        "<i>densest</i> names the region with the most mass per pixel and how many times its area's share "
        "it holds (1× = no concentration).</p>"
        f"{note}</div></div>"
    )


def _number_faces(pic: np.ndarray, verdicts: Sequence[FaceVerdict], scale: float) -> np.ndarray:
    """The face picture with each face's box outlined white within black — no region's colour, no verdict's
    — and numbered as in the face table."""
    from PIL import ImageDraw

    img = Image.fromarray(pic)
    draw = ImageDraw.Draw(img)
    for k, v in enumerate(verdicts, start=1):
        x0, y0, x1, y1 = (c * scale for c in v.box)
        draw.rectangle((x0 - 1, y0 - 1, x1 + 1, y1 + 1), outline=(0, 0, 0), width=3)
        draw.rectangle((x0, y0, x1, y1), outline=(255, 255, 255), width=1)
        tx, ty = x0 + 2, max(0.0, y0 - 13)
        draw.rectangle((tx - 2, ty, tx + 8 * len(str(k)) + 2, ty + 12), fill=(0, 0, 0))
        draw.text((tx, ty), str(k), fill=(255, 255, 255))
    return np.asarray(img)


def _face_maps(
    v: FaceVerdict, k: int, image: Image.Image, cmap: str, alpha: float, name: str = "", side: int = 200
) -> str:
    """Face ``k``'s window and each member's map of it, when the verdicts carry maps."""
    if not v.heatmaps:
        return ""
    crop = image.crop(v.window)
    size = fit_size(crop.height, crop.width, side)
    small = shrink_image(crop, size)
    of = f" of {name}" if name else ""
    tiles = [
        f"<figure><img alt='{_e(f'face {k}{of}')}' src='{_data_uri(small)}'>"
        f"<figcaption>face {k}</figcaption></figure>"
    ]
    for member, (heat, valid) in v.heatmaps.items():
        ov = overlay(small, shrink_map(heat, size), alpha=alpha, cmap=cmap, valid=shrink_map(valid, size))
        tiles.append(
            f"<figure><img alt='{_e(f'{member} map on face {k}{of}')}' src='{_data_uri(ov)}'>"
            f"<figcaption>{_e(member)} {prob(v.members[member][0])}</figcaption></figure>"
        )
    return "".join(tiles)


def _scroll_box(label: str) -> str:
    """The opening of a box that scrolls a wide table sideways on a narrow screen: focusable, so a keyboard
    user can scroll it too, and named for screen readers (WCAG 2.1.1)."""
    return f"<div class='scroll' tabindex='0' role='region' aria-label='{_e(label)}'>"


def _faces_table(
    verdicts: Sequence[FaceVerdict],
    image: Image.Image,
    cmap: str,
    alpha: float,
    a: Analysis,
    name: str = "",
) -> str:
    """Each face's own verdict: the ensemble and every member on a window around it, and, when the
    verdicts carry them, each member's map of the window (why it reads the face as it does)."""
    if not verdicts:
        return ""
    names = list(verdicts[0].members)
    thresholds = {m.name: m.threshold for m in a.models}
    head = "".join(f"<th class='num'>{_e(n)}</th>" for n in names)
    rows = []
    for k, v in enumerate(verdicts, start=1):
        x0, y0, x1, y1 = v.box
        w0, t0, w1, t1 = v.window
        cells = "".join(
            f"<td class='num'>{_verdict_pill(verdict, p)} {prob(p, thresholds.get(n, a.threshold))}</td>"
            for n, (p, verdict) in v.members.items()
        )
        rows.append(
            f"<tr><th>{k}</th><td>x {x0:.0f}–{x1:.0f}, y {y0:.0f}–{y1:.0f}</td>"
            f"<td class='muted'>x {w0}–{w1}, y {t0}–{t1}</td>"
            f"<td class='num'>{_verdict_pill(v.verdict, v.fake_probability)} "
            f"<b>{prob(v.fake_probability, a.threshold)}</b>{' split' if v.split else ''}</td>{cells}</tr>"
        )
    maps = "".join(_face_maps(v, k, image, cmap, alpha, name) for k, v in enumerate(verdicts, start=1))
    return (
        "<h3>Each face judged on its own</h3>"
        f"{_scroll_box('face verdicts' + (f' of {name}' if name else ''))}"
        "<table class='grid'><tr><th>face</th>"
        f"<th>box</th><th>window read</th><th class='num'>ensemble</th>{head}</tr>{''.join(rows)}"
        "</table></div>"
        + (f"<div class='facemaps'>{maps}</div>" if maps else "")
        + "<p class='small muted'>The same models on a square window around each face (their input side, or "
        "twice the face when it is larger), at the photo's own pixel grid. An edit confined to one face "
        "weighs little in the whole image's score; here it is judged on its own.</p>"
    )


def _densest(s: RegionShares) -> str:
    """'face boundary 3.4×': the region with the highest mass/area ratio."""
    lifts = {r: s.lift(r) for r in REGIONS}
    best = max((r for r in REGIONS if lifts[r] is not None), key=lambda r: lifts[r] or 0.0, default=None)
    return "–" if best is None else f"{REGION_LABELS[best]} {lifts[best]:.1f}×"


def _lift_title(s: RegionShares, r: str) -> str:
    lift = s.lift(r)
    return f"{REGION_LABELS[r]}: {pct(s.area[r])} of the pixels" + (
        f"; {lift:.1f}× its area's share" if lift is not None else ""
    )


def _image_section(
    k: int,
    a: Analysis,
    image: Image.Image,
    name: str,
    regions: FaceRegions | None,
    verdicts: Sequence[FaceVerdict],
    faces_checked: bool,
    methods: Sequence[str],
    info: Mapping[str, str] | None,
    cmap: str,
    alpha: float,
    max_side: int,
) -> str:
    shares = heatmap_shares(a, regions)
    reading = reading_sections(a, regions, faces_checked=faces_checked, shares=shares, face_verdicts=verdicts)
    p = a.fake_probability
    verdict = a.verdict if a.verdict in ("fake", "real") and math.isfinite(p) else "real"
    split = a.split
    members = f"{len(a.models)} model{'s' if len(a.models) > 1 else ''}"
    margin = margin_word(p, a.threshold) if math.isfinite(p) else ""
    notes = ["models disagree"] if split else []
    if margin == "close to the threshold" or not (split or a.small):  # a small image's margin means little
        notes.append(margin)
    if a.blank:
        notes.append("a blank image: nothing to judge")
    if a.small:
        notes.append("a small image: little evidence either way")
    if a.partial:
        notes.append(f"only {pct(a.coverage)} of the image read: the rest was not judged")
    if a.transparent:
        notes.append(f"{pct(a.transparent)} transparent: the models saw it as white")
    if a.frames > 1:
        notes.append(f"frame 1 of {a.frames} analysed")
    if untrained := [m.name for m in a.models if m.untrained]:
        notes.append(f"untrained: {', '.join(untrained)} (its score means nothing)")
    if odd := fake_faces_in_real(a.verdict, verdicts):
        said = (
            f"face {odd[0]} reads fake on its own: look at it"
            if len(odd) == 1
            else f"faces {', '.join(map(str, odd))} read fake on their own: look at them"
        )
        notes.append(f"but {said}")
    qualifier = " · ".join(filter(None, notes))
    hedged = " hedged" if a.small or split or a.blank else ""  # a weak verdict: the banner dashed, striped
    info_html = (
        "<dl class='meta'>"
        + "".join(f"<dt>{_e(k_)}</dt><dd>{_e(v)}</dd>" for k_, v in info.items())
        + "</dl>"
        if info
        else ""
    )
    # a blank image has nothing to judge: its score is shown, but no verdict in large letters
    big = "NO VERDICT" if a.blank else a.verdict.upper() or "N/A"
    banner = (
        f"<div class='banner {'none' if a.blank else verdict}{hedged}'><div class='big'>{_e(big)}</div>"
        f"<div class='score'>ensemble p(fake) <b>{prob(p, a.threshold)}</b> · "
        f"threshold {threshold_text(a.threshold)} · "
        f"rule {_e(a.rule)} over {members}<br><span class='muted'>{_e(qualifier)}</span></div></div>"
    )
    cards = "".join(_model_card(m, m.threshold, a.blank) for m in a.models)
    return (
        f"<section class='image' id='img-{k}'>"
        f"<div class='imghead'><h2>{k}. {_e(name)}</h2>"
        f"<span class='muted'>{a.width} × {a.height} px</span></div>{info_html}"
        f"{banner}<div class='reading'><b>Reading</b>"
        + "".join(f"<p><b>{_e(k_)}.</b> {_e(p_)}</p>" for k_, p_ in reading)
        + f"</div><h3>Models</h3><div class='cards'>{cards}</div>"
        f"<h3>{_heatmaps_heading(methods)}</h3>"
        f"{_heatmap_grid(a, image, methods, cmap, alpha, max_side, name)}"
        f"{_regions_section(a, image, regions, shares, verdicts, max_side, cmap, alpha, name)}</section>"
    )


def _heatmaps_heading(methods: Sequence[str]) -> str:
    """The heatmaps' heading, true of the methods shown: class-agnostic maps are no evidence for fake."""
    agnostic = [m for m in methods if class_agnostic(m)]
    if not agnostic:
        return "Heatmaps: where each model sees evidence for fake"
    if len(agnostic) == len(methods):
        return "Heatmaps: where each model is active (class-agnostic maps, not evidence for fake)"
    return (
        "Heatmaps: where each model sees evidence for fake (for the class-agnostic "
        f"{_e(', '.join(agnostic))}: where it is active)"
    )


def _summary_table(
    analyses: Sequence[Analysis], names: Sequence[str], per_face: Sequence[Sequence[FaceVerdict]]
) -> str:
    model_names: list[str] = []
    for a in analyses:
        for m in a.models:
            if m.name not in model_names:
                model_names.append(m.name)
    untrained = {m.name for a in analyses for m in a.models if m.untrained}
    head = "".join(
        f"<th class='num'>{_e(n)}{' (untrained)' if n in untrained else ''}</th>" for n in model_names
    )
    rows = []
    for k, (a, name, faces) in enumerate(zip(analyses, names, per_face, strict=True), start=1):
        by = {m.name: m for m in a.models}
        cells = "".join(
            f"<td class='num'>{_verdict_pill(by[n].verdict, by[n].fake_probability, a.blank)} "
            f"{prob(by[n].fake_probability, by[n].threshold)}</td>"
            if n in by
            else "<td class='num'>–</td>"
            for n in model_names
        )
        ok = sum(
            1
            for m in a.models
            for h in m.heatmaps.values()
            if h.robustness and h.robustness.get("grade") == "ok"
        )
        total = sum(len(m.heatmaps) for m in a.models)
        checked = any(h.robustness for m in a.models for h in m.heatmaps.values())
        split = a.split
        rows.append(
            f"<tr><td class='num'>{k}</td><td><a href='#img-{k}'>{_e(name)}</a></td>"
            f"<td>{_verdict_pill(a.verdict, a.fake_probability, a.blank)}"
            f"{_small_tag(a)}{_faces_tag(a, faces)}</td>"
            f"<td class='num'><b>{prob(a.fake_probability, a.threshold)}</b></td>{cells}"
            f"<td>{'split' if split else 'agree'}</td>"
            f"<td class='num'>{f'{ok} / {total}' if checked else 'not checked'}</td></tr>"
        )
    return (
        f"{_scroll_box('summary of verdicts')}<table class='grid'><tr><th class='num'>#</th><th>image</th>"
        "<th>verdict</th>"
        f"<th class='num'>ensemble p(fake)</th>{head}<th>models</th><th class='num'>robust maps</th></tr>"
        + "".join(rows)
        + "</table></div>"
    )


CALIBRATED_NOTE = (
    "Scores are calibrated on the validation photos the ensemble was fitted on: of the validation images "
    "given p(fake) ≈ 0.8, about 80 % were fake, and every verdict is taken at 0.5. That holds for images "
    "like those forgeries, not for kinds of image or manipulation the models never saw"
)
UNCALIBRATED_NOTE = "Scores are model outputs, not calibrated odds that the image was manipulated"


def _legend(cmap: str, regions_shown: bool, calibrated: bool = False, agnostic: Sequence[str] = ()) -> str:
    c = DEFAULT_CRITERIA
    low, high = CMAP_ENDS[cmap]
    agnostic_words = (
        f" The class-agnostic {_e(', '.join(agnostic))} map{'s' if len(agnostic) > 1 else ''} "
        f"ignore{'' if len(agnostic) > 1 else 's'} the target: "
        f"{'they show' if len(agnostic) > 1 else 'it shows'} where the model is active, whichever class that "
        f"activity supports, so {'they are' if len(agnostic) > 1 else 'it is'} <b>not</b> evidence for fake."
        if agnostic
        else ""
    )
    parts = [
        "<section class='legend'><h2>How to read this report</h2>",
        "<h3>Scores and verdicts</h3><p>p(fake) is each model's probability that the image is fake; the "
        "ensemble combines the members' probabilities by the rule shown (mean: weighted average; logit_mean: "
        "average of log-odds; max: the highest) and calls the image fake at or above the threshold. "
        f"{CALIBRATED_NOTE if calibrated else UNCALIBRATED_NOTE}; within 0.10 of the threshold "
        "the report calls a score close, within 0.25 a moderate margin.</p>",
        f"<h3>Heatmaps</h3><div class='legendbar'><span>0</span><img alt='{_e(_scale_words(cmap))}' "
        f"src='{_colour_bar(cmap)}'><span>1</span></div><p>Each overlay is one explanation method's map of "
        "the evidence for <i>fake</i> (the fake log-odds), mapped exactly onto the original pixels and "
        f"scaled to 0–1 within the pixels the model saw (the colour bar: {low} = none, {high} = the map's "
        "peak). Colour is relative to each map's own maximum, so compare where maps point, not how "
        "strongly coloured they are; a map flagged <i>flat</i> is near-uniform and shows no location (its "
        "overlay is drawn greyed). Pixels the model never saw "
        f"(e.g. outside a centre crop) are dimmed.{agnostic_words}</p>",
        "<h3>Robustness badge</h3><p>The image and four transformed views (horizontal flip, rotation by 15°, "
        "scale 0.8 and a 10 % shift, black fill) are explained as one batch. A trustworthy map moves with "
        "the image and ignores the black fill. <b>equivariance</b>: mean cosine between the map and each "
        f"view's map carried back by the exact inverse warp (1 = identical; below {c.min_equivariance:.2f} "
        "fails). <b>mass on fill</b>: the share of the map's mass on the black fill against the fill's share "
        f"of the pixels (fails when more than the fill's share + {c.border_margin:.0%} in over "
        f"{c.max_leak_rate:.0%} of the views). <b>corner peak</b>: the peak lies in a corner cell (a sign of "
        "a degenerate map). <b>flat</b>: near-uniform map. <b>peak / mean</b>: 1 = uniform, higher = more "
        "concentrated. <span class='pill ok'>robust</span> = no check failed; "
        "<span class='pill check'>check</span> = read the map with care, the failed rows are "
        "highlighted.</p>",
    ]
    if regions_shown:
        parts.append(
            "<h3>Facial regions</h3><p>Built from the five landmarks of each detected face (eyes, nose tip, "
            "mouth corners): <b>eyes</b> — ellipses around each eye; <b>nose</b> — from the bridge "
            "to below the "
            "tip; <b>mouth</b> — an ellipse along the mouth corners; <b>face boundary</b> — a band "
            "straddling "
            "the face outline (landmark hull extended to forehead, cheeks, jaw and chin), where a "
            "swapped face "
            "is blended in; <b>rest of face</b> — forehead, cheeks, chin; <b>outside the face</b> — "
            "hair, neck "
            "and background. Every pixel belongs to exactly one region, so each map's shares sum to "
            "100 %.</p>"
        )
    parts.append("</section>")
    return "".join(parts)


def render_report(
    analyses: Sequence[Analysis],
    images: Sequence[Image.Image],
    names: Sequence[str],
    *,
    title: str | None = None,
    faces: bool = True,
    regions: Sequence[FaceRegions | None] | None = None,
    face_verdicts: Sequence[Sequence[FaceVerdict]] | None = None,
    meta: Mapping[str, Any] | None = None,
    image_info: Sequence[Mapping[str, str] | None] | None = None,
    cmap: str = "jet",
    alpha: float = 0.5,
    max_side: int = 480,
) -> str:
    """The HTML text of one self-contained report over analysed images.

    ``analyses``, ``images`` (the RGB images that were analysed, original size) and ``names`` run in
    parallel. ``faces`` detects faces and summarises every heatmap by facial region (or pass the
    precomputed ``regions``, one per image, ``None`` where no face was found); ``face_verdicts`` (one list per
    image, in the order of its regions' faces; :mod:`fakelens.face_verdicts`) adds each face's own verdict,
    numbered on the face picture. ``meta`` adds key/value lines
    to the header (model, methods, command), ``image_info`` per image (path, sha256). Images are stored at
    most ``max_side`` pixels on their longer side, or, when more elongated than 4:3, with the area of such an
    image (so a thin strip keeps a readable short side; :func:`embed_size`).
    """
    if not len(analyses) == len(images) == len(names):
        raise ValueError(f"{len(analyses)} analyses, {len(images)} images and {len(names)} names")
    if cmap not in CMAP_ENDS:
        raise ConfigError(f"unknown colormap {cmap!r} (choose from {', '.join(CMAP_ENDS)})")
    if image_info is not None and len(image_info) != len(analyses):
        raise ValueError(f"{len(image_info)} image_info entries for {len(analyses)} analyses")
    if face_verdicts is not None and len(face_verdicts) != len(analyses):
        raise ValueError(f"{len(face_verdicts)} face verdict lists for {len(analyses)} analyses")
    per_face = list(face_verdicts) if face_verdicts is not None else [()] * len(analyses)
    face_note: str | None = None
    if regions is not None:
        if len(regions) != len(analyses):
            raise ValueError(f"{len(regions)} region sets for {len(analyses)} analyses")
        regs: list[FaceRegions | None] = list(regions)
        faces_checked = True
    elif faces:
        regs, face_note = find_regions(images)
        faces_checked = face_note is None
    else:
        regs, faces_checked = [None] * len(analyses), False
    methods: list[str] = []
    models: list[str] = []
    for a in analyses:
        for m in a.models:
            if m.name not in models:
                models.append(m.name)
            for meth in [*m.heatmaps, *m.errors]:
                if meth not in methods:
                    methods.append(meth)
    title = title or "fakelens analysis report"
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header_meta: dict[str, Any] = {
        "generated": f"{created} by fakelens {__version__}",
        "models": ", ".join(models) or "–",
        "methods": ", ".join(methods) or "–",
    }
    if analyses:
        header_meta["ensemble"] = (
            f"rule {analyses[0].rule}, threshold {threshold_text(analyses[0].threshold)}"
            + (", calibrated" if analyses[0].calibrated else "")
        )
    header_meta["faces"] = (
        "facial regions per heatmap where a face is found"
        if faces_checked
        else f"not analysed ({face_note})"
        if face_note
        else "not analysed"
    )
    header_meta.update({str(k): v for k, v in (meta or {}).items()})
    meta_html = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in header_meta.items())
    sections = [
        _image_section(
            k,
            a,
            img,
            name,
            reg,
            faces,
            faces_checked,
            methods,
            image_info[k - 1] if image_info else None,
            cmap,
            alpha,
            max_side,
        )
        for k, (a, img, name, reg, faces) in enumerate(
            zip(analyses, images, names, regs, per_face, strict=True), start=1
        )
    ]
    n_blank = sum(1 for a in analyses if a.blank)
    n_fake = sum(1 for a in analyses if a.verdict == "fake" and not a.blank)
    n_face = sum(1 for a, v in zip(analyses, per_face, strict=True) if fake_faces_in_real(a.verdict, v))
    faces_fake = f" ({n_face} of them with a face that reads fake on its own)" if n_face else ""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>"
        f"<header><h1>{_e(title)}</h1><div class='muted'>{len(analyses)} image"
        f"{'s' if len(analyses) != 1 else ''} analysed: {n_fake} called fake, "
        f"{len(analyses) - n_fake - n_blank} called real by the ensemble{faces_fake}"
        f"{f', {n_blank} blank (no verdict)' if n_blank else ''}</div><dl "
        f"class='meta'>{meta_html}</dl></header>"
        f"<h2 class='summary'>Summary</h2>{_summary_table(analyses, names, per_face)}"
        + "".join(sections)
        + _legend(
            cmap,
            any(r is not None for r in regs),
            bool(analyses) and analyses[0].calibrated,
            [m for m in methods if class_agnostic(m)],
        )
        + "<footer>Generated offline by fakelens; this file contains no scripts and loads nothing from the "
        "network. Heatmaps explain what the models respond to; they are evidence for an analyst to weigh, "
        "not proof of manipulation.</footer></main></body></html>"
    )
