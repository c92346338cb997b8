"""Worst cases for a person to look at: one strip per case, and a self-contained HTML gallery.

A case strip shows, left to right: the transformed view (the valid region outlined in magenta, a colour
jet never uses, so the black fill is visible as such); the method's map on that view, scaled by its maximum
over the *whole* grid, fill included (so leakage onto the fill is visible, not hidden by normalising within
the valid region); the map of the untransformed image; and the view's map carried back by the inverse warp
(pixels not comparable dimmed).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from fakelens.viz.overlay import colorize

__all__ = ["CATEGORIES", "prune_cases", "render_case", "select_cases", "write_gallery"]

CATEGORIES = {
    "leak": (
        "Border leakage",
        "maps that put more of their mass on the black fill than the fill's share of the "
        "image (the worst view of each image and method)",
    ),
    "corner": (
        "Corner peaks",
        "maps whose peak lies in a corner cell — degenerate maps or a model that reads a fixed position",
    ),
    "equivariance": (
        "Does not move with the image",
        "the view whose map, carried back, agrees least with the map of the untransformed image",
    ),
    "vanished": (
        "Map vanished",
        "views whose map has no positive value while the untransformed image's has: the transform "
        "changed the explained score's sign or removed the evidence — not a map that failed to move",
    ),
    "flat": (
        "Flat maps",
        "maps with no positive value or near-uniform mass: stretched to [0, 1] by other tools "
        "they would look confident",
    ),
}

TILE = 176
OUTLINE = np.array([255, 0, 255], dtype=np.uint8)  # magenta: a colour jet never uses, so never read as heat


def _font(size: int = 12) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _rgb(px: Tensor) -> np.ndarray:
    return (px.detach().float().clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def _resize(a: np.ndarray, h: int, w: int, nearest: bool = False) -> np.ndarray:
    mode = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(a).resize((w, h), mode))


def _outline(img: np.ndarray, valid: Tensor) -> np.ndarray:
    """Draw the boundary of ``valid`` (upscaled to ``img``) in magenta."""
    h, w = img.shape[:2]
    v = _resize(valid.numpy().astype(np.uint8) * 255, h, w, nearest=True) > 127
    inner = v.copy()
    inner[1:, :] &= v[:-1, :]
    inner[:-1, :] &= v[1:, :]
    inner[:, 1:] &= v[:, :-1]
    inner[:, :-1] &= v[:, 1:]
    edge = v & ~inner
    out = img.copy()
    out[edge] = OUTLINE
    return out


def _overlay(px: np.ndarray, m: Tensor, alpha: float = 0.5) -> np.ndarray:
    a = m.detach().double().clamp_min(0)
    mx = float(a.max())
    a = a / mx if mx > 0 else a * 0
    h, w = px.shape[:2]
    colour = colorize(_resize((a.numpy() * 255).astype(np.uint8), h, w) / 255.0)
    return ((1 - alpha) * px + alpha * colour + 0.5).clip(0, 255).astype(np.uint8)


def render_case(
    view_pixels: Tensor,
    view_map: Tensor,
    view_valid: Tensor,
    ref_pixels: Tensor,
    ref_map: Tensor,
    back_map: Tensor,
    pair_valid: Tensor,
    caption: Sequence[str],
) -> bytes:
    """One case strip as PNG bytes (see the module docstring). Maps are un-normalised ``(H, W)``."""
    h, w = view_pixels.shape[-2:]
    th = TILE
    tw = max(1, round(TILE * w / h))
    view = _resize(_rgb(view_pixels), th, tw)
    ref = _resize(_rgb(ref_pixels), th, tw)
    tiles = [
        ("view", _outline(view, view_valid)),
        ("map on view (fill included)", _outline(_overlay(view, view_map), view_valid)),
        ("map of the image", _overlay(ref, ref_map)),
        ("carried back", _overlay(ref, back_map)),
    ]
    dim = _resize(pair_valid.numpy().astype(np.uint8) * 255, th, tw, nearest=True) > 127
    tiles[3] = (tiles[3][0], np.where(dim[..., None], tiles[3][1], (tiles[3][1] * 0.35).astype(np.uint8)))
    gap, head, foot = 6, 16, 18 * len(caption) + 6
    canvas = Image.new("RGB", (len(tiles) * (tw + gap) + gap, th + head + foot + gap), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = _font(11)
    for k, (title, tile) in enumerate(tiles):
        x = gap + k * (tw + gap)
        canvas.paste(Image.fromarray(tile), (x, head))
        draw.text((x, 2), title, fill=(40, 40, 40), font=font)
    for j, line in enumerate(caption):
        draw.text((gap, head + th + 4 + 18 * j), line, fill=(0, 0, 0), font=_font(12))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def select_cases(cases: Sequence[dict[str, Any]], per_category: int = 12) -> list[dict[str, Any]]:
    """The worst ``per_category`` cases of each category (highest severity first)."""
    out: list[dict[str, Any]] = []
    for cat in CATEGORIES:
        rows = sorted((c for c in cases if c["category"] == cat), key=lambda c: -c["severity"])
        out += rows[:per_category]
    return out


def prune_cases(folder: Path, keep: Sequence[dict[str, Any]]) -> int:
    """Delete the case strips in ``folder`` that the gallery does not show (a long run would otherwise keep
    a few strips per image and method); returns how many were deleted."""
    wanted = {c["file"] for c in keep}
    n = 0
    for f in folder.glob("*.png"):
        if f.name not in wanted:
            f.unlink(missing_ok=True)
            n += 1
    return n


def _b64(path: Path) -> str | None:
    try:
        return base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError:
        return None


_PLOTS = {
    "equivariance_vs_strength": "Equivariance cosine against transform strength, per method",
    "border_vs_fill": "Map mass on the fill against the fill's share of the view",
    "localisation": "Localisation metrics against the ground-truth masks",
    "faithfulness": "Deletion and insertion: faithfulness of the maps",
    "randomisation": "Cascading randomisation: |Spearman| with the original map",
}


def _scale_png() -> str:
    ramp = np.tile(np.linspace(0.0, 1.0, 256)[None], (8, 1))
    buf = io.BytesIO()
    Image.fromarray(colorize(ramp)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def write_gallery(
    out: Path,
    cases: Sequence[dict[str, Any]],
    summary: dict[str, Any],
    *,
    per_category: int = 12,
    plots: Sequence[Path] = (),
) -> Path:
    """Write ``out/gallery.html``: the recommendation, the plots and the worst ``per_category`` cases of each
    category, every image inlined (base64), so the file can be mailed or attached to an issue."""
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<title>fakelens trust gallery</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:24px;max-width:1200px;color:#222}"
        "figure{margin:12px 0;border:1px solid #ddd;padding:6px;display:inline-block}"
        "figcaption{font-size:12px;color:#555}img{max-width:100%}h2{margin-top:32px}"
        ".rec{background:#f3f7ff;border-left:4px solid #36c;padding:8px 12px;white-space:pre-wrap}"
        ".scale{display:flex;align-items:center;gap:8px;font-size:13px;color:#444}"
        ".scale img{width:240px;height:12px}</style>",
        "</head><body>",
        f"<h1>Trust gallery: {html.escape(str(summary.get('model', '')))}</h1>",
        f"<p>{summary.get('images', 0)} images; methods: "
        f"{html.escape(', '.join(summary.get('methods', [])))}. "
        "Each strip: the transformed view (valid region outlined in magenta), the map on the view scaled by "
        "its maximum over the whole grid (fill included), the map of the untransformed image, and the view's "
        "map carried back by the inverse warp (pixels not comparable dimmed).</p>",
        f"<p class='scale'><span>0</span><img alt='colour scale: jet, from blue (0) to red (the map's peak)' "
        f"src='data:image/png;base64,{_scale_png()}'><span>each map's own peak (jet, α = 0.5 over the "
        "image)</span></p>",
        f"<div class='rec'>{html.escape(str(summary.get('recommendation', {}).get('text', '')))}</div>",
    ]
    for p in plots:
        data = _b64(p)
        if data:
            parts.append(
                f"<figure><img alt='{html.escape(_PLOTS.get(p.stem, p.stem))}' "
                f"src='data:image/png;base64,{data}'>"
                f"<figcaption>{html.escape(_PLOTS.get(p.stem, p.stem))}</figcaption></figure>"
            )
    shown = select_cases(cases, per_category)
    for cat, (title, desc) in CATEGORIES.items():
        total = sum(1 for c in cases if c["category"] == cat)
        rows = [c for c in shown if c["category"] == cat]
        if not total:
            parts.append(f"<h2>{html.escape(title)}: none found</h2>")
            continue
        parts.append(
            f"<h2>{html.escape(title)} ({total} case{'s' if total != 1 else ''}, worst {len(rows)} "
            "shown)</h2>"
            f"<p>{html.escape(desc)}.</p>"
        )
        for c in rows:
            data = _b64(out / "cases" / c["file"])
            if data is None:
                continue
            cap = (
                f"{c['method']} @ {c['layer']} — {c['image']} — {c['transform']} ({c['fill']} fill) — "
                f"severity {c['severity']:.3f}"
            )
            parts.append(
                f"<figure><img alt='{html.escape(title)}: {html.escape(cap)}' "
                f"src='data:image/png;base64,{data}'>"
                f"<figcaption>{html.escape(cap)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    path = out / "gallery.html"
    from fakelens.io import atomic_write_text

    atomic_write_text(path, "\n".join(parts))
    return path
