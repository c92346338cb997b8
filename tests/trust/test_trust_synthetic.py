"""The proof of the harness: on models built so the right answer is known, it must give that answer.

- planted patch (evidence = a bright blob, equivariant by construction): good methods follow the patch under
  every transform (cosine > 0.9) and are exactly equivariant under flips and quarter turns;
- corner bias (a fixed activation bump in the top-left corner): corner peaks on ~every input, flagged;
- padding reader (evidence = black pixels): more mass on the black fill than its area, flagged;
- the ranking puts the planted-patch model first and names each failure.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fakelens.models.base import Detector
from fakelens.trust.criteria import DEFAULT_CRITERIA
from fakelens.trust.randomisation import cascading_randomisation, randomisation_layers
from fakelens.trust.records import Record
from fakelens.trust.report import aggregate, recommend
from fakelens.trust.runner import TrustConfig, evaluate_image
from fakelens.trust.sweep import run_sweep, view_plan
from fakelens.trust.synthetic import blob_image, planted_patch_detector
from fakelens.trust.transforms import Transform, TransformFamily

GOOD = ["gradcam", "hirescam", "layercam", "gradcam++", "xgradcam", "gradcam-elementwise", "eigencam"]
BLACK = view_plan(TransformFamily.standard(), ("black",))


def _summary(
    det: Detector, methods: list[str], seeds: range, family: str = "quick"
) -> dict[str, dict[str, float]]:
    """Per-method aggregates over a few blob images (black fill)."""
    plan = view_plan(TransformFamily.named(family), ("black",))
    acc: dict[str, dict[str, list[torch.Tensor]]] = {m: {} for m in methods}
    chance = {}
    for seed in seeds:
        img, _ = blob_image((64, 64), seed=seed)
        sw = run_sweep(det, img, plan, methods)
        for m in methods:
            vm = sw.view_metrics(m)
            fill = vm["fill_fraction"] > 0.01
            vm["leak"] = ((vm["border_mass"] > vm["fill_fraction"] + 0.01) & fill).double()
            for k in ("eq_cosine", "eq_gain"):
                acc[m].setdefault(k, []).append(vm[k][1:])
            for k in ("border_mass", "fill_fraction", "leak"):
                acc[m].setdefault(k, []).append(vm[k][fill])
            acc[m].setdefault("corner_argmax", []).append(vm["corner_argmax"])
            acc[m].setdefault("flat", []).append(vm["flat"][:1])
            chance[m] = sw.cell(m)
    out = {}
    for m, d in acc.items():
        cat = {k: torch.cat(v) for k, v in d.items()}
        out[m] = {
            "eq_cosine": float(cat["eq_cosine"].mean()),
            "eq_min": float(cat["eq_cosine"].min()),
            "eq_gain": float(cat["eq_gain"].mean()),
            "border_mass": float(cat["border_mass"].mean()),
            "fill_fraction": float(cat["fill_fraction"].mean()),
            "leak_rate": float(cat["leak"].mean()),
            "corner_argmax_rate": float(cat["corner_argmax"].mean()),
            "corner_chance": 4 * chance[m][0] * chance[m][1] / 64**2,
            "flat_rate": float(cat["flat"].mean()),
        }
    return out


def test_good_methods_follow_the_planted_patch_under_every_transform(planted: Detector) -> None:
    for seed in (0, 1):
        img, mask = blob_image((64, 64), seed=seed)
        sw = run_sweep(planted, img, BLACK, GOOD)
        for m in GOOD:
            vm = sw.view_metrics(m)
            worst = int(vm["eq_cosine"][1:].argmin()) + 1
            assert float(vm["eq_cosine"][worst]) > 0.9, (
                m,
                BLACK[worst][0].name,
                float(vm["eq_cosine"][worst]),
            )
            assert float(vm["border_mass"].max()) < 0.02  # nothing on the fill
            assert not bool(vm["corner_argmax"].any())
            peak = int(sw.maps[m][0].argmax())
            assert bool(mask.flatten()[peak]), m  # the map points at the patch


@settings(max_examples=12, deadline=None)
@example(seed=498, cx=0.75, cy=0.5, which="hflip")  # one pixel on the numerical-zero cut (below)
@given(
    seed=st.integers(0, 10_000),
    cx=st.floats(0.25, 0.75),
    cy=st.floats(0.25, 0.75),
    which=st.sampled_from(["hflip", "vflip", "rot90", "rot180", "rot270", "hflip>rot90"]),
)
def test_equivariance_is_one_on_an_equivariant_model_under_exact_transforms(
    seed: int, cx: float, cy: float, which: str
) -> None:
    det = _PLANTED
    t = {
        "hflip": Transform.hflip(),
        "vflip": Transform.vflip(),
        "rot90": Transform.rotate(90),
        "rot180": Transform.rotate(180),
        "rot270": Transform.rotate(270),
        "hflip>rot90": Transform.compose(Transform.hflip(), Transform.rotate(90)),
    }[which]
    img, _ = blob_image((48, 48), seed=seed, centre=(cx, cy))
    sw = run_sweep(det, img, [(Transform.identity(), "black"), (t, "black")], ["gradcam", "hirescam"])
    for m in ("gradcam", "hirescam"):
        vm = sw.view_metrics(m)
        assert float(vm["eq_cosine"][1]) > 0.9999
        # ranks are fragile where ~80 % of the pixels tie at zero: one pixel whose float noise puts it just
        # above the 1e-6-of-peak cut in one map and below it in the other leaves the tie and moves the
        # Spearman correlation of two otherwise identical maps to 0.9990 (the example above)
        assert float(vm["eq_spearman"][1]) > 0.995
        assert float(vm["eq_iou"][1]) > 0.99


_PLANTED = planted_patch_detector((48, 48))


def test_corner_model_is_flagged_and_planted_is_not(planted: Detector, corner: Detector) -> None:
    good = _summary(planted, ["gradcam", "hirescam"], range(3))
    bad = _summary(corner, ["gradcam", "hirescam"], range(3))
    for m in ("gradcam", "hirescam"):
        assert bad[m]["corner_argmax_rate"] >= 0.95
        assert {"corner-peaks", "static"} <= set(DEFAULT_CRITERIA.flags(bad[m]))  # its bump never moves
        assert good[m]["eq_gain"] > 0.2 > bad[m]["eq_gain"]
        assert good[m]["corner_argmax_rate"] == 0.0
        assert DEFAULT_CRITERIA.flags(good[m]) == {}


def test_padding_reader_puts_its_mass_on_the_fill(padding: Detector, planted: Detector) -> None:
    s = _summary(padding, ["gradcam", "layercam"], range(2))
    for m in ("gradcam", "layercam"):
        assert s[m]["border_mass"] > 0.95 > s[m]["fill_fraction"]
        assert s[m]["leak_rate"] == 1.0
        assert "leaks-into-fill" in DEFAULT_CRITERIA.flags(s[m])
        assert "corner-peaks" not in DEFAULT_CRITERIA.flags(s[m])
    # the controls: with mean or reflect fill there is no black left, and the evidence vanishes
    img, _ = blob_image((64, 64), seed=0)
    plan = [(Transform.identity(), "black")] + [
        (Transform.scale(0.6), f) for f in ("black", "mean", "reflect")
    ]
    sw = run_sweep(padding, img, plan, ["gradcam"])
    vm = sw.view_metrics("gradcam")
    assert float(vm["border_mass"][1]) > 0.95 and float(vm["border_mass"][2:].max()) == 0.0
    assert float(vm["score"][1]) > 5 > float(vm["score"][2:].abs().max())


def test_harness_ranks_the_models(planted: Detector, corner: Detector, padding: Detector) -> None:
    """Each model's records under its own name as a candidate: the planted-patch model wins, each failure
    is named."""
    cfg = TrustConfig(family="quick", fills=("black",), faithfulness=False, randomisation=False)
    plan = view_plan(TransformFamily.quick(), ("black",))
    recs: list[Record] = []
    for det in (corner, padding, planted):
        for seed in range(2):
            img, mask = blob_image((64, 64), seed=seed)
            from PIL import Image

            pil = Image.fromarray((img.permute(1, 2, 0).numpy() * 255 + 0.5).astype("uint8"))
            out = evaluate_image(
                det, pil, f"blob{seed}", ["gradcam"], config=cfg, plan=plan, mask=mask.float()
            )
            recs += [
                Record(
                    r.model,
                    r.image,
                    det.name,
                    r.layer,
                    r.transform,
                    r.kind,
                    r.strength,
                    r.fill,
                    r.metric,
                    r.value,
                )
                for r in out.records
            ]
    agg = aggregate(recs)
    rec = recommend(agg, DEFAULT_CRITERIA)
    assert rec["method"] == "synthetic-planted-patch"
    assert rec["text"].startswith("Use synthetic-planted-patch")
    flags = rec["flags"]
    assert flags["synthetic-planted-patch@net.features"] == {}
    assert "corner-peaks" in flags["synthetic-corner-bias@net.features"]
    assert "leaks-into-fill" in flags["synthetic-padding-reader@net.features"]
    assert "corner-peaks" not in flags["synthetic-padding-reader@net.features"]
    pg = agg[("synthetic-planted-patch", "net.features")]["pointing_game"]["mean"]
    assert pg == 1.0


def test_randomisation_collapses_the_planted_maps(planted: Detector) -> None:
    assert randomisation_layers(planted)[0] == "net.head"
    img, _ = blob_image((64, 64), seed=0)
    x = planted.input_spec.normalize(img[None])
    stages = cascading_randomisation(planted, x, ["gradcam", "eigencam"], stages=None)
    assert [s.count for s in stages] == [1, 2, 3, 4]
    last = stages[-1]
    for m in ("gradcam", "eigencam"):
        assert abs(float(last.scores[m]["spearman"][0])) < 0.5
        assert float(last.scores[m]["ssim"][0]) < 0.5
    # the original detector is untouched
    assert float(planted.net.head.weight.detach()[1, 0]) == pytest.approx(100.0)


def test_intervals_are_over_images_not_views() -> None:
    """Eight views of one image are not eight samples: n counts images and the interval is over the images'
    own means (a pooled interval over views would be far too narrow)."""
    import statistics

    recs = [
        Record("m", img, "gradcam", "L", f"rotate({k})", "rotate", k, "black", "eq_cosine", v + 0.001 * k)
        for img, v in (("a.png", 0.2), ("b.png", 0.8))
        for k in range(8)
    ]
    eq = aggregate(recs)[("gradcam", "L")]["eq_cosine"]
    assert eq["n"] == 2 and abs(eq["mean"] - (0.2 + 0.8 + 0.007) / 2) < 1e-9
    per_image = [0.2035, 0.8035]
    assert abs(eq["ci"] - 1.96 * statistics.stdev(per_image) / 2**0.5) < 1e-9


def test_a_rate_over_few_images_keeps_its_interval_inside_zero_to_one() -> None:
    """One flat map in five images: the normal interval (0.2 ± 0.39) would reach below 0, which no rate can;
    it is cut to the range and shown as (low–high), while a symmetric interval keeps its ±."""
    from fakelens.trust.report import FAMILIES, _cell

    recs = [
        Record("m", img, "gradcam", "L", "identity", "identity", 0, "black", "flat", float(img == "a.png"))
        for img in ("a.png", "b.png", "c.png", "d.png", "e.png")
    ]
    recs += [
        Record("m", img, "gradcam", "L", "rotate(10)", "rotate", 10, "black", "eq_cosine", v)
        for img, v in (("a.png", 0.5), ("b.png", 0.6))
    ]
    agg = aggregate(recs)[("gradcam", "L")]
    flat = agg["flat_rate"]
    assert flat["mean"] == pytest.approx(0.2) and flat["mean"] - flat["ci"] < 0
    assert flat["lo"] == 0.0 and flat["hi"] == pytest.approx(0.2 + flat["ci"])
    metric = {mt.key: mt for fam in FAMILIES.values() for mt in fam}
    assert _cell(flat, metric["flat_rate"]) == f"20.0 % (0.0–{100 * flat['hi']:.1f})"
    assert " ± " in _cell(agg["eq_cosine"], metric["eq_cosine"])


def test_a_nearly_flat_winner_comes_with_a_caveat() -> None:
    """Peak/mean 1.3 is under no flag's cut-off, yet hardly a location: the recommendation says so."""
    recs = [
        Record("m", img, "rollout", "L", "rotate(10)", "rotate", 10, "black", "eq_cosine", 0.99)
        for img in ("a.png", "b.png")
    ] + [
        Record("m", img, "rollout", "L", "identity", "identity", 0, "black", "peak_to_mean", 1.3)
        for img in ("a.png", "b.png")
    ]
    text = recommend(aggregate(recs), DEFAULT_CRITERIA)["text"]
    assert "nearly flat (median peak/mean 1.30)" in text


def test_equal_methods_tie_and_a_faithfulness_gap_within_noise_is_no_evidence() -> None:
    from fakelens.trust.report import overall_table

    def recs(method: str, eq: float, deletion: float, insertion: float) -> list[Record]:
        out = []
        for img in ("a.png", "b.png", "c.png"):
            out.append(Record("m", img, method, "L", "rotate(10)", "rotate", 10, "black", "eq_cosine", eq))
            out += [
                Record("m", img, method, "L", "", "faithfulness", 0, "none", "deletion_blur", deletion),
                Record("m", img, method, "L", "", "faithfulness", 0, "none", "insertion_blur", insertion),
            ]
        return out

    agg = aggregate(
        recs("gradcam", 0.9, 0.40, 0.41)
        + recs("hirescam", 0.9 + 1e-9, 0.40, 0.41)  # the same maps, but for float noise
        + recs("layercam", 0.85, 0.30, 0.60)
    )
    rec = recommend(agg, DEFAULT_CRITERIA)
    ranks = {o["method"]: o["mean_rank"] for o in rec["order"]}
    assert ranks["gradcam"] == ranks["hirescam"]  # a tie, not an order decided by 1e-9
    table = overall_table(agg, rec)
    assert table.startswith("### Overall") and table.count("\n| ") == 4  # header + 3 candidates
    # gradcam's insertion − deletion gap is 0.01 on every image: no interval, but no noise either; a
    # negative or zero gap is never called faithful
    flat = aggregate(recs("rise", 0.9, 0.5, 0.5))
    assert "no evidence that it is faithful" in recommend(flat, DEFAULT_CRITERIA)["text"]


def test_a_saturated_blur_baseline_is_no_verdict_on_faithfulness() -> None:
    """An artifact detector that reads the blur itself as fake: deletion and insertion both near 1 under blur,
    yet ROAD (in-distribution imputation) and the black baseline show the map's order matters — that is
    evidence, and ROAD ranks the family."""

    def recs(method: str, road: float) -> list[Record]:
        out = []
        for img, noise in (("a.png", 0.0), ("b.png", 0.01), ("c.png", -0.01)):
            for metric, v in (
                ("deletion_blur", 0.999),
                ("insertion_blur", 0.999),
                ("deletion_black", 0.36),
                ("insertion_black", 0.86),
                ("road_combined", road + noise),
            ):
                out.append(Record("m", img, method, "L", "", "faithfulness", 0, "none", metric, v))
        return out

    rec = recommend(aggregate(recs("gradcam", 0.2) + recs("rollout", -0.03)), DEFAULT_CRITERIA)
    assert rec["method"] == "gradcam"
    assert "no evidence that it is faithful" not in rec["text"] and "saturated" in rec["text"]
    assert "0.360 vs 0.860 (black)" in rec["text"]


def test_a_map_empty_on_the_image_is_not_averaged_into_equivariance() -> None:
    """An image whose map has no positive mass has nothing to move: its cosines of 0 are left out of the
    equivariance mean (it counts under flatness), so 0.95 and 0.96 do not read 0.48."""
    recs = [
        Record("m", img, "gradcam", "L", "identity", "identity", 0, "black", "peak_to_mean", ptm)
        for img, ptm in (("a.png", 4.0), ("b.png", 3.0), ("empty.png", 0.0))
    ]
    recs += [
        Record("m", img, "gradcam", "L", "rotate(10)", "rotate", 10, "black", "eq_cosine", v)
        for img, v in (("a.png", 0.95), ("b.png", 0.96), ("empty.png", 0.0))
    ]
    eq = aggregate(recs)[("gradcam", "L")]["eq_cosine"]
    assert eq["n"] == 2 and eq["mean"] == pytest.approx(0.955)


def test_values_the_tables_cannot_tell_apart_share_their_rank() -> None:
    """ROAD of 0.0001, 0.0002 and 0.0004 all print 0.000: one shared rank, not an order made of noise; a
    difference the table shows (0.010) still ranks."""
    from fakelens.trust.report import _family_ranks

    recs = [
        Record("m", img, m, "L", "", "faithfulness", 0, "none", "road_combined", v)
        for img in ("a.png", "b.png")
        for m, v in (("a", 0.0001), ("b", 0.0002), ("c", 0.0004), ("d", 0.010))
    ]
    ranks = _family_ranks(aggregate(recs))["faithfulness"]
    assert ranks[("d", "L")] == 1 and ranks[("a", "L")] == ranks[("b", "L")] == ranks[("c", "L")] == 3
