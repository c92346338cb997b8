"""The benchmark run: tidy records, resumability, ranked tables, recommendation, plots and the gallery."""

from __future__ import annotations

import copy
import csv
import itertools
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from fakelens.errors import ConfigError
from fakelens.models import create_model
from fakelens.models.base import Detector
from fakelens.trust.records import FIELDS, read_records
from fakelens.trust.runner import TrustConfig, discover_items, run_trust

CFG = TrustConfig(
    methods=("gradcam", "hirescam", "eigencam"),
    family="quick",
    steps=4,
    road_percentages=(20, 60),
    randomisation_stages=2,
)


def test_run_writes_everything_a_person_needs(
    tmp_path: Path, blob_dir: tuple[Path, Path], planted: Detector
) -> None:
    img_dir, mask_dir = blob_dir
    items = discover_items([img_dir], masks=mask_dir)
    assert len(items) == 3 and all(i.mask is not None for i in items)
    out = tmp_path / "out"
    seen: list[str] = []
    run = run_trust(
        planted, items, out, CFG, progress=lambda n, label: seen.append(label), command="fakelens trust …"
    )
    assert run.evaluated == 3 and len(seen) == 3
    for name in (
        "records.csv",
        "report.md",
        "summary.json",
        "run.json",
        "gallery.html",
        "plots/equivariance_vs_strength.png",
        "plots/border_vs_fill.png",
        "plots/localisation.png",
        "plots/faithfulness.png",
        "plots/randomisation.png",
    ):
        assert (out / name).exists(), name
    with (out / "records.csv").open() as f:
        header = next(csv.reader(f))
    assert tuple(header) == FIELDS
    recs = read_records(out / "records.csv")
    metrics = {r.metric for r in recs}
    assert {
        "eq_cosine",
        "eq_spearman",
        "eq_iou",
        "border_mass",
        "fill_fraction",
        "corner_argmax",
        "flat",
        "pointing_game",
        "energy_seam",
        "relevance_rank",
        "pixel_auroc",
        "deletion_blur",
        "insertion_black",
        "road_combined",
        "rand_spearman",
        "rand_ssim",
    } <= metrics
    assert {r.fill for r in recs} == {"black", "mean", "reflect", "none"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 3 and summary["recommendation"]["method"] in CFG.methods
    assert summary["recommendation"]["text"].startswith("Use ")
    assert "fill area" in summary["recommendation"]["text"]
    assert set(summary["families"]) >= {
        "equivariance",
        "border",
        "corners",
        "flatness",
        "localisation",
        "faithfulness",
        "randomisation",
    }
    report = (out / "report.md").read_text()
    assert "fakelens trust …" in report and "### Equivariance" in report and "| 1 |" in report
    assert "### Randomisation" in report and "± half the width" in report and "-0.000" not in report
    rows = [ln for ln in report.splitlines() if ln.startswith("|")]
    pairs = [(h, rule) for h, rule in itertools.pairwise(rows) if rule.startswith("|---")]
    assert len(pairs) >= 5
    for header, rule in pairs:  # as many cells as the rule below: a literal | in a cell must be escaped
        assert len(re.split(r"(?<!\\)\|", header)) == rule.count("|") + 1, header
    gallery = (out / "gallery.html").read_text()
    assert "data:image/png;base64," in gallery and "src='http" not in gallery and 'src="http' not in gallery


def test_resume_skips_finished_groups_and_redoes_torn_ones(
    tmp_path: Path, blob_dir: tuple[Path, Path], planted: Detector
) -> None:
    img_dir, _ = blob_dir
    items = discover_items([img_dir])
    cfg = TrustConfig(
        methods=("gradcam",), family="quick", fills=("black",), faithfulness=False, randomisation=False
    )
    out = tmp_path / "out"
    run_trust(planted, items[:2], out, cfg)
    first = (out / "records.csv").read_text()
    again = run_trust(planted, items[:2], out, cfg)
    assert again.evaluated == 0 and (out / "records.csv").read_text() == first
    # tear the last group: drop its _done row and half a line, as a crash would
    lines = first.splitlines(keepends=True)
    torn = [ln for ln in lines if not (ln.rstrip().endswith("_done,1.0") and "blob1" in ln)]
    (out / "records.csv").write_text("".join(torn) + "synthetic,broken,li")
    third = run_trust(planted, items, out, cfg)
    assert third.evaluated == 2  # blob1 again, blob2 new
    recs = read_records(out / "records.csv")
    done = sorted(r.image for r in recs if r.metric == "_done")
    assert [Path(d).name for d in done] == ["blob0.png", "blob1.png", "blob2.png"]
    per_image = {Path(r.image).name for r in recs if r.metric == "eq_cosine"}
    assert per_image == {"blob0.png", "blob1.png", "blob2.png"}
    n_b1 = sum(1 for r in recs if "blob1" in r.image and r.metric == "eq_cosine")
    assert n_b1 == 8  # the 8 quick views, recorded once


def test_a_second_run_into_a_folder_being_written_is_refused(
    tmp_path: Path, blob_dir: tuple[Path, Path], planted: Detector
) -> None:
    """Two runs appending to one records.csv duplicated every record (24 images, 30 completions)."""
    from fakelens.io import FolderLock
    from fakelens.trust.runner import LOCK_NAME

    items = discover_items([blob_dir[0]])[:1]
    cfg = TrustConfig(
        methods=("gradcam",), family="quick", fills=("black",), faithfulness=False, randomisation=False
    )
    tmp_path.mkdir(exist_ok=True)
    with FolderLock(tmp_path / LOCK_NAME, "busy"), pytest.raises(ConfigError, match="another fakelens trust"):
        run_trust(planted, items, tmp_path, cfg)
    assert not (tmp_path / "records.csv").exists()
    assert run_trust(planted, items, tmp_path, cfg).evaluated == 1  # released: the run goes ahead


def test_resume_refuses_another_model_or_other_settings(
    tmp_path: Path, blob_dir: tuple[Path, Path], planted: Detector
) -> None:
    items = discover_items([blob_dir[0]])[:1]
    cfg = TrustConfig(
        methods=("gradcam",), family="quick", fills=("black",), faithfulness=False, randomisation=False
    )
    run_trust(planted, items, tmp_path, cfg)
    with pytest.raises(ConfigError, match=r"another model \('synthetic-planted-patch'"):
        run_trust(create_model("tiny-cnn"), items, tmp_path, cfg)
    # the same architecture and name with other weights (another checkpoint) is another model too
    other = copy.deepcopy(planted)
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    with pytest.raises(ConfigError, match="another model"):
        run_trust(other, items, tmp_path, cfg)
    with pytest.raises(ConfigError, match="other settings"):
        run_trust(
            planted, items, tmp_path, TrustConfig(methods=("gradcam",), family="standard", fills=("black",))
        )
    run_trust(
        planted,
        items,
        tmp_path,
        TrustConfig(
            methods=("gradcam",),
            family="standard",
            fills=("black",),
            faithfulness=False,
            randomisation=False,
            resume=False,
        ),
    )


def test_limit_layers_and_manifest(tmp_path: Path, blob_dir: tuple[Path, Path]) -> None:
    img_dir, mask_dir = blob_dir
    manifest = tmp_path / "manifest.csv"
    rows = [
        {"path": str(p), "label": "fake", "mask_path": str(mask_dir / p.name)}
        for p in sorted(img_dir.iterdir())
    ]
    with manifest.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "label", "mask_path"])
        w.writeheader()
        w.writerows(rows)
    items = discover_items(manifest=manifest)
    assert [i.label for i in items] == ["fake"] * 3 and items[0].mask is not None
    det = create_model("tiny-cnn")
    cfg = TrustConfig(
        methods=("gradcam", "layercam"),
        layer_sets=(("net.features.2",), ("net.features.3",)),
        family="quick",
        fills=("black",),
        faithfulness=False,
        randomisation=False,
        limit=1,
    )
    run = run_trust(det, items, tmp_path / "o", cfg)
    assert run.evaluated == 1
    order = run.summary["recommendation"]["order"]
    assert {(o["method"], o["layer"]) for o in order} == {
        (m, lay) for m in ("gradcam", "layercam") for lay in ("net.features.2", "net.features.3")
    }
    # a method that reads no layer runs once, under "input", not once per --layer
    run = run_trust(det, items, tmp_path / "o3", replace(cfg, methods=("gradcam", "occlusion")))
    pairs = {(o["method"], o["layer"]) for o in run.summary["recommendation"]["order"]}
    assert pairs == {("gradcam", "net.features.2"), ("gradcam", "net.features.3"), ("occlusion", "input")}
    with pytest.raises(ConfigError, match="unknown method"):
        run_trust(det, items, tmp_path / "o2", TrustConfig(methods=("gradcan",)))


def test_whole_image_masks_score_no_localisation_and_misshapen_masks_are_refused(
    tmp_path: Path, blob_dir: tuple[Path, Path], planted: Detector
) -> None:
    """A global manipulation's mask covers every pixel: every map would 'hit' it, so it is not scored; a
    mask of another aspect ratio would be stretched onto the wrong pixels: its image is skipped, with why."""
    import numpy as np
    from PIL import Image

    img_dir, _ = blob_dir
    masks = tmp_path / "masks"
    masks.mkdir()
    names = sorted(p.name for p in img_dir.iterdir())
    w, h = Image.open(img_dir / names[0]).size
    Image.new("L", (w, h), 255).save(masks / names[0])  # the whole image
    Image.new("L", (w, h // 2), 255).save(masks / names[1])  # another aspect ratio
    Image.fromarray((np.arange(w)[None, :].repeat(h, 0) < w // 3).astype(np.uint8) * 255).save(
        masks / names[2]
    )
    cfg = TrustConfig(
        methods=("gradcam",), family="quick", fills=("black",), faithfulness=False, randomisation=False
    )
    run = run_trust(planted, discover_items([img_dir], masks=masks), tmp_path / "o", cfg)
    assert run.evaluated == 2 and "another aspect ratio" in next(iter(run.skipped_images.values()))
    assert "another aspect ratio" in (tmp_path / "o" / "report.md").read_text()  # the reason, in the report
    scored = {r.image for r in read_records(tmp_path / "o" / "records.csv") if r.metric == "pointing_game"}
    assert scored == {str(img_dir / names[2])}  # only the mask that points at a region


def test_masks_beside_their_images_are_found_and_not_tested_as_images(tmp_path: Path) -> None:
    """The bundled demo layout: x.jpg beside x_mask.png, with or without --masks naming that folder; a
    string path works as a Path does; nothing to test is an error, not an empty report."""

    demo = Path(__file__).parents[2] / "src" / "fakelens" / "assets" / "demo"
    for items in (discover_items([demo]), discover_items([demo], masks=demo), discover_items(str(demo))):
        assert len(items) == 7 and not any("_mask" in it.path.name for it in items)
        masked = {it.path.name: it.mask.name for it in items if it.mask is not None}
        assert masked == {
            f"{s}.jpg": f"{s}_mask.png"
            for s in ("astronaut_fake_self_blend", "coffee_fake_upsample", "grace_hopper_fake_cross_blend")
        }
    with pytest.raises(ConfigError, match="no images to test"):
        run_trust(create_model("tiny-cnn"), [], tmp_path / "o")


def test_methods_and_paths_are_taken_as_strings_too(tmp_path: Path) -> None:
    """ "gradcam,hirescam" as analyze takes it (it was read letter by letter: "unknown method 'g'"), and
    str paths where Paths were expected (they raised AttributeError)."""
    assert TrustConfig(methods="gradcam, hirescam").methods == ("gradcam", "hirescam")
    assert TrustConfig(fills="black").fills == ("black",)
    with pytest.raises(ConfigError, match="no such manifest"):
        discover_items(manifest=str(tmp_path / "missing.csv"))
    with pytest.raises(ConfigError, match="no images to test"):
        run_trust(create_model("tiny-cnn"), [], str(tmp_path / "out"))


def test_a_view_whose_map_vanished_is_shown_as_vanished(
    tmp_path: Path, planted: Detector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A view with no positive map (the transform flipped the score) is a 'vanished' case with its score,
    not the worst 'does not move' case with a cosine of 0."""
    from PIL import Image

    from fakelens.trust.runner import evaluate_image
    from fakelens.trust.sweep import Sweep, view_plan
    from fakelens.trust.synthetic import blob_image
    from fakelens.trust.transforms import TransformFamily

    real = Sweep.view_metrics

    def emptied(self: Sweep, method: str) -> dict[str, torch.Tensor]:
        vm = real(self, method)
        vm["peak_to_mean"][2] = 0.0
        vm["eq_cosine"][2] = 0.0
        return vm

    monkeypatch.setattr(Sweep, "view_metrics", emptied)
    pixels, _ = blob_image((64, 64), seed=1)
    img = Image.fromarray((pixels.permute(1, 2, 0).numpy() * 255).astype("uint8"))
    cfg = TrustConfig(
        methods=("gradcam",), family="quick", fills=("black",), faithfulness=False, randomisation=False
    )
    res = evaluate_image(planted, img, "b.png", ["gradcam"], config=cfg, cases_dir=tmp_path)
    cases = {(r.metric, r.transform) for r in res.records if r.metric.startswith("case:")}
    view = view_plan(TransformFamily.named("quick"), ("black",))[2][0].name
    assert ("case:vanished", view) in cases and ("case:equivariance", view) not in cases
