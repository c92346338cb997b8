"""Native tiles: large images scored by the mean of their tiles' logits, heatmaps stitched on the original."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import TINY_MODELS
from fakelens.analysis import analyze_images
from fakelens.explain.engine import method_names
from fakelens.explain.explanation import build_explanation, normalize_within
from fakelens.geometry import TILE_OVERLAP, Geometry, prepare_views
from fakelens.models import Detector, Ensemble, InputSpec, create_model
from fakelens.pipeline import explain_images
from fakelens.tiling import image_logits, stitch
from test_pipeline import BrightSpot


def bright_spot(mode: str = "native") -> Detector:
    return Detector(
        BrightSpot(),
        input_spec=InputSpec(size=(32, 32), mean=(0, 0, 0), std=(1, 1, 1), mode=mode),  # type: ignore[arg-type]
        cam_layers=("net.features",),
    )


def noise_image(h: int, w: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def native(name: str) -> Detector:
    det = create_model(name)
    det.input_spec = replace(det.input_spec, mode="native")
    return det.eval()


@pytest.mark.parametrize("name", TINY_MODELS)
def test_image_logits_are_the_mean_of_the_tiles(name: str) -> None:
    det = native(name)
    images = [noise_image(150, 97, 1), noise_image(20, 30, 2), noise_image(64, 200, 3)]
    got = image_logits(det, images, batch_size=3)  # views of several images share forwards
    for img, row in zip(images, got, strict=True):
        pixels, _ = prepare_views(img, det.input_spec)
        with torch.inference_mode():
            want = det(det.input_spec.normalize(pixels)).mean(0)
        torch.testing.assert_close(row, want, rtol=1e-5, atol=1e-5)
    assert image_logits(det, []).shape == (0, len(det.labels))


def test_a_large_image_is_read_tile_by_tile_not_shrunk() -> None:
    """A bright patch far smaller than the image: native tiles keep it where letterboxing shrinks it."""
    h, w = 64, 160
    arr = np.zeros((h, w, 3), np.uint8)
    arr[8:24, 120:136] = 255
    img = Image.fromarray(arr)
    [r] = explain_images(bright_spot(), [img], ["hirescam", "gradcam"])
    tiles = Geometry.tiles((h, w), (32, 32), overlap=TILE_OVERLAP)
    assert r.tiles == tiles and len(tiles) == 3 * 7 and r.geometry.mode == "native"
    for method in ("hirescam", "gradcam"):
        m = r.map(method)
        assert m.shape == (h, w) and bool(r.valid(method).all())
        inside = m[8:24, 120:136].mean()
        outside = torch.cat([m[:, :110].flatten(), m[32:, :].flatten()]).mean()
        assert inside > 0.5 and outside < 0.05, method
        meta = r.explanations[method].meta["tiling"]
        assert meta["count"] == 21 and meta["coverage"] == 1.0
    # the score: the mean over tiles of each tile's mean brightness
    pixels, _ = prepare_views(img, bright_spot().input_spec)
    assert r.logits[1] == pytest.approx(float(pixels.mean((1, 2, 3)).mean()), rel=1e-5)
    # the lead tile (the badge's view): the most fake-looking one — here the one holding most of the patch
    assert r.lead_tile == int(pixels.mean((1, 2, 3)).argmax()) and r.view == tiles[r.lead_tile]
    left, top, right, bottom = tiles[r.lead_tile].source_box
    assert top <= 8 and bottom >= 24 and left <= 120 and right >= 136
    assert r.summary()["lead_tile"] == r.lead_tile


def test_stitching_is_the_tiles_maps_side_by_side() -> None:
    """Non-overlapping tiles: the stitched map is each tile's own upsampled, ReLU'd map, normalised once."""
    det = native("tiny-cnn")
    hh, ww = det.input_spec.size
    img = noise_image(hh, 2 * ww, 5)
    geoms = Geometry.tiles((hh, 2 * ww), (hh, ww), overlap=0.0)
    assert len(geoms) == 2
    halves = [img.crop((0, 0, ww, hh)), img.crop((ww, 0, 2 * ww, hh))]
    singles = explain_images(det, halves, ["gradcam"])
    parts = [singles[0].explanations["gradcam"]]  # one batch holds both halves, in tile order
    mean_logits = torch.tensor([s.logits for s in singles]).mean(0, keepdim=True)
    e = stitch(parts, geoms, mean_logits, det)
    pos = [
        F.interpolate(
            parts[0].raw[i][None, None].clamp_min(0), (hh, ww), mode="bilinear", align_corners=False
        )[0, 0]
        for i in range(2)
    ]
    want = normalize_within(torch.cat(pos, dim=1), torch.ones(hh, 2 * ww, dtype=torch.bool))
    torch.testing.assert_close(e.maps[0], want, rtol=1e-4, atol=1e-5)
    assert e.raw.shape[0] == 1 and e.probabilities.shape == (1,)
    assert float(e.probabilities[0]) == pytest.approx(float(det.fake_probability(mean_logits)[0]), rel=1e-5)
    # and the pipeline, which overlaps its tiles, scores the mean of what it read
    [r] = explain_images(det, [img], ["gradcam"])
    pixels, _ = prepare_views(img, det.input_spec)
    with torch.inference_mode():
        want_logits = det(det.input_spec.normalize(pixels)).mean(0)
    torch.testing.assert_close(torch.tensor(r.logits), want_logits, rtol=1e-5, atol=1e-5)


def test_overlapping_tiles_cross_fade() -> None:
    """Two tiles with flat maps 1 and 3: each alone where only it reads, a monotone blend where both do."""
    det = bright_spot()
    geoms = Geometry.tiles((32, 48), (32, 32), overlap=0.25)
    assert [g.source_box[0] for g in geoms] == [0.0, 16.0]
    raw = torch.stack([torch.full((8, 8), 1.0), torch.full((8, 8), 3.0)])
    zeros = torch.zeros(2)
    part = build_explanation("gradcam", ("net.features",), "fake", raw, zeros, zeros, (32, 32))
    e = stitch([part], geoms, torch.zeros(1, 2), det)
    row = F.adaptive_avg_pool2d(e.raw[None], (1, e.raw.shape[-1]))[0, 0, 0]  # coarse signed map, one row
    assert float(row[0]) == pytest.approx(1.0) and float(row[-1]) == pytest.approx(3.0)
    assert bool((row[1:] >= row[:-1] - 1e-6).all())  # no seam: it only rises from tile 1 to tile 2
    m = e.maps[0][16]  # shares of the peak: the weak tile stays a third, not stretched down to 0
    assert float(m[:16].max()) == pytest.approx(1 / 3) and float(m[-16:].min()) == 1.0
    assert bool((m[1:] >= m[:-1] - 1e-6).all()) and 1 / 3 < float(m[24]) < 1.0
    # pyramid weights: at column 17 tile 1 weighs 14.5/16 and tile 2 1.5/16, at column 30 the reverse
    # (uniform weights would give 2/3 at both)
    assert float(m[17]) == pytest.approx(19 / 48) and float(m[30]) == pytest.approx(45 / 48)


def test_capped_tiles_mark_what_they_miss() -> None:
    det = bright_spot()
    img = noise_image(40, 400, 7)
    [r] = explain_images(det, [img], ["gradcam"], max_tiles=3)
    assert len(r.tiles) == 3
    valid = r.valid("gradcam")
    coverage = r.explanations["gradcam"].meta["tiling"]["coverage"]
    assert 0 < coverage < 1 and float(valid.float().mean()) == pytest.approx(coverage)
    assert float(r.map("gradcam")[~valid].abs().max()) == 0.0
    assert r.summary()["tiles"] == [list(g.source_box) for g in r.tiles]
    assert r.coverage == pytest.approx(coverage) and r.summary()["partial"] is True


def test_a_verdict_on_part_of_the_image_says_so() -> None:
    """The tile limit leaves gaps: the analysis, its JSON and the report say how much was read."""
    from fakelens.report.render import render_report

    det = bright_spot()
    img = noise_image(40, 400, 7)
    [whole] = analyze_images(det, [img], [], max_tiles=32)
    [part] = analyze_images(det, [img], [], max_tiles=3)
    assert whole.coverage == 1.0 and not whole.partial
    assert 0 < part.coverage < 0.99 and part.partial and part.models[0].coverage == part.coverage
    d = part.to_dict()
    assert d["partial"] is True and d["coverage"] == part.coverage == d["models"][0]["coverage"]
    html = render_report([part], [img], ["wide.png"])
    assert "of the image read: the rest was not judged" in html and "pixels unread" in html


def test_small_and_letterbox_images_keep_one_view() -> None:
    small = noise_image(20, 30)
    [a] = explain_images(bright_spot(), [small], ["gradcam"])
    assert a.tiles == [] and a.geometry == Geometry.fit((20, 30), (32, 32), "native")
    [b] = explain_images(bright_spot("letterbox"), [noise_image(64, 160)], ["gradcam"])
    assert b.tiles == [] and b.geometry.mode == "letterbox"


def test_mixed_batch_keeps_order_and_matches_one_by_one() -> None:
    det = native("tiny-vit")
    images = [noise_image(30, 40, 1), noise_image(100, 130, 2), noise_image(48, 64, 3)]
    together = explain_images(det, images, ["gradcam"], tile_batch=2)
    for img, r in zip(images, together, strict=True):
        [alone] = explain_images(det, [img], ["gradcam"])
        assert r.image is img
        torch.testing.assert_close(r.map("gradcam"), alone.map("gradcam"), rtol=1e-4, atol=1e-5)
        assert r.logits == pytest.approx(alone.logits, rel=1e-4, abs=1e-5)


def test_analysis_and_ensemble_use_the_tiles() -> None:
    members = [native("tiny-cnn"), native("tiny-vit")]
    for i, m in enumerate(members):
        m.name = f"m{i}"
    ens = Ensemble(members)
    images = [noise_image(200, 150, 9), noise_image(10, 10, 4)]
    [a, b] = analyze_images(ens, images, ["gradcam"], robustness=True)
    assert [m.tiles for m in a.models] == [
        len(Geometry.tiles((200, 150), m.input_spec.size, 32, TILE_OVERLAP)) for m in members
    ]
    assert all(m.tiles == 1 and m.scale == 1.0 for m in b.models)
    probs = ens.member_probabilities(images)
    for j, m in enumerate(members):
        want = m.fake_probability(image_logits(m, images))
        torch.testing.assert_close(probs[:, j], want)
        assert a.models[j].fake_probability == pytest.approx(float(want[0]), rel=1e-4)
        assert a.models[j].heatmaps["gradcam"].map.shape == (200, 150)
        assert a.models[j].heatmaps["gradcam"].robustness is not None
        assert "tile" in a.models[j].heatmaps["gradcam"].robustness  # which tile the badge graded
        assert "tile" not in b.models[j].heatmaps["gradcam"].robustness  # one view: the image itself


def test_the_badge_grades_the_most_fake_looking_tile() -> None:
    h, w = 64, 160
    arr = np.zeros((h, w, 3), np.uint8)
    arr[36:52, 8:24] = 255  # far from the central tile
    [a] = analyze_images(bright_spot(), [Image.fromarray(arr)], ["hirescam"], robustness=True)
    badge = a.models[0].heatmaps["hirescam"].robustness
    assert badge is not None and "error" not in badge
    left, top, right, bottom = badge["tile"]  # (left, top, right, bottom) in original pixels
    assert top <= 36 and bottom >= 52 and left <= 8 and right >= 24


TRANSFORMER_ONLY = {"attention", "rollout", "gradattn", "legrad"}
CHEAP = {"rise": {"n_masks": 64}, "occlusion": {"window": 16, "stride": 16}}


@pytest.mark.parametrize("name", TINY_MODELS)
@pytest.mark.parametrize("method", method_names())
def test_every_method_stitches_onto_a_large_image(name: str, method: str) -> None:
    if name == "tiny-cnn" and method in TRANSFORMER_ONLY:
        pytest.skip("token methods need a transformer")
    det = native(name)
    h, w = det.input_spec.size
    img = noise_image(h + h // 2, 2 * w, 11)
    [r] = explain_images(det, [img], [method], options={k: v for k, v in CHEAP.items() if k == method})
    assert len(r.tiles) > 1
    m, valid = r.map(method), r.valid(method)
    assert m.shape == (img.height, img.width) and bool(valid.all()) and bool(torch.isfinite(m).all())
    assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0
    e = r.explanations[method]
    assert e.meta["tiling"]["count"] == len(r.tiles) and e.raw.dim() == 3 and e.raw.shape[0] == 1
    assert set(e.stats) and all(v.shape == (1,) for v in e.stats.values())
    summary = r.summary()
    json.dumps(summary)  # JSON-safe, tile record included
    assert summary["methods"][method]["meta"]["tiling"]["count"] == len(r.tiles)


def test_tile_meta_is_merged_per_tile() -> None:
    """Per-view meta becomes per-tile lists across chunks; counts add up; artifact records name their tile."""
    det = native("tiny-vit")
    h, w = det.input_spec.size
    img = noise_image(2 * h, 2 * w, 13)
    [r] = explain_images(det, [img], ["scorecam", "rollout"], tile_batch=4)
    n = len(r.tiles)
    assert n > 4  # several chunks
    sc = r.explanations["scorecam"].meta
    assert len(sc["channels_used"]) == n and sc["exact"] is True
    [one] = explain_images(det, [img.crop((0, 0, w, h))], ["scorecam"])
    assert sc["forwards"] > one.explanations["scorecam"].meta["forwards"]  # summed over the chunks
    assert r.explanations["scorecam"].meta["tiling"]["count"] == n
    j = det.token_layout.num_prefix_tokens + 3  # a high-norm token planted in every tile

    def plant(module: torch.nn.Module, args: object, out: torch.Tensor) -> torch.Tensor:
        out = out.clone()
        out[:, j] = 0.0
        out[:, j, 0] = 60.0
        return out

    handle = det.net.blocks[0].register_forward_hook(plant)
    try:
        [r] = explain_images(det, [img], ["rollout"], tile_batch=4)
    finally:
        handle.remove()
    ro = r.explanations["rollout"].meta
    assert ro["grid"] == list(det.token_layout.grid(det.input_spec.size))  # what every chunk agrees on
    found = {(rec["tile"], rec["token_index"]) for rec in ro["artifact_tokens"] if rec["layer"] == 0}
    assert {(t, j) for t in range(n)} <= found and {rec["image"] for rec in ro["artifact_tokens"]} == {0}


class _OffsetBrightness(torch.nn.Module):
    """Fake log-odds = mean brightness − ½: zeroing the feature drops the score by the tile's brightness,
    however undecided the tile is."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.AvgPool2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.features(x.mean(1, keepdim=True)).mean((1, 2, 3)) - 0.5
        return torch.stack([torch.zeros_like(z), z], 1)


def test_ablationcam_weighs_tiles_by_the_images_score_not_their_own() -> None:
    """AblationCAM divides the drop by |y|: per tile, an undecided tile (y ≈ 0) would swamp the decisive
    one. Stitched, the drops are divided by the image's |ȳ|, so the tiles keep the drops' proportions."""
    det = Detector(
        _OffsetBrightness(),
        input_spec=InputSpec(size=(32, 32), mean=(0.0,) * 3, std=(1.0,) * 3, mode="native"),
        cam_layers=("net.features",),
    )
    img = np.zeros((32, 64, 3), np.uint8)
    img[:, :32] = 242  # y = +0.45 in the left tile, drop 0.95
    img[:, 32:] = 128  # y = +0.002 in the right one, drop 0.50
    [r] = explain_images(det, [Image.fromarray(img)], ["ablationcam"], max_tiles=2)
    m = r.map("ablationcam")
    ratio = float(m[:, 40:].mean() / m[:, :24].mean())
    assert ratio == pytest.approx((0.50 * 0.50) / (0.95 * 0.95), rel=0.05)  # drop × activation
