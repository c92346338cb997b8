"""Dataset discovery for every layout in docs/data.md, clear errors, and the torch datasets' items."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from fakelens.data import pool as pool_mod
from fakelens.data.augment import Augment
from fakelens.data.datasets import (
    DatasetError,
    DetectionDataset,
    OnTheFlyForgeries,
    Sample,
    _ff_people,
    detect_layout,
    discover,
    holdout,
    samples_sha256,
    select_split,
    summarize,
)
from fakelens.geometry import prepare
from fakelens.io import load_image
from fakelens.models.base import InputSpec


def img(path: Path, hw: tuple[int, int] = (12, 16), seed: int = 0, value: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    a = (
        rng.integers(0, 255, (*hw, 3), dtype=np.uint8)
        if value is None
        else np.full((*hw, 3), value, np.uint8)
    )
    Image.fromarray(a).save(path)
    return path


def by_name(samples: list[Sample], root: Path) -> dict[str, Sample]:
    return {s.path.relative_to(root).as_posix(): s for s in samples}


# ------------------------------------------------------------------------------------------ layouts
def test_folder_real_fake_with_subfolders(tmp_path: Path) -> None:
    img(tmp_path / "real" / "a.jpg")
    img(tmp_path / "real" / "celeba" / "b.png")
    img(tmp_path / "fake" / "stylegan" / "c.png")
    img(tmp_path / "fake" / "d.webp")
    (tmp_path / "fake" / "notes.txt").write_text("not an image")
    assert detect_layout(tmp_path) == "folder"
    s = by_name(discover(tmp_path), tmp_path)
    assert set(s) == {"real/a.jpg", "real/celeba/b.png", "fake/stylegan/c.png", "fake/d.webp"}
    assert s["real/a.jpg"].label == 0 and s["fake/d.webp"].label == 1
    assert s["fake/stylegan/c.png"].recipe == "stylegan" and s["real/celeba/b.png"].source == "celeba"
    assert s["real/celeba/b.png"].recipe == ""


def test_forensynths_nested_generators_and_splits(tmp_path: Path) -> None:
    for split in ("train", "val"):
        for gen, cat in (("progan", "cat"), ("progan", "car"), ("biggan", "")):
            base = tmp_path / split / gen / cat if cat else tmp_path / split / gen
            img(base / "0_real" / "r.png")
            img(base / "1_fake" / "f.png")
    samples = discover(tmp_path)
    assert detect_layout(tmp_path) == "folder" and len(samples) == 12
    s = by_name(samples, tmp_path)
    f = s["val/progan/cat/1_fake/f.png"]
    assert (f.label, f.recipe, f.source, f.split) == (1, "progan", "progan/cat", "val")
    r = s["train/biggan/0_real/r.png"]
    assert (r.label, r.recipe, r.source, r.split) == (0, "", "biggan", "train")
    assert summarize(samples)["recipes"] == {"biggan": 2, "progan": 4}


def test_genimage(tmp_path: Path) -> None:
    for gen in ("sdv14", "midjourney"):
        for split in ("train", "val"):
            img(tmp_path / gen / split / "nature" / "n.JPEG")
            img(tmp_path / gen / split / "ai" / "a.png")
    assert detect_layout(tmp_path) == "genimage"
    s = by_name(discover(tmp_path), tmp_path)
    a = s["midjourney/val/ai/a.png"]
    assert (a.label, a.recipe, a.split, a.source) == (1, "midjourney", "val", "midjourney")
    assert s["sdv14/train/nature/n.JPEG"].label == 0


def test_cifake(tmp_path: Path) -> None:
    for split in ("train", "test"):
        for cls in ("REAL", "FAKE"):
            for i in range(2):
                img(tmp_path / split / cls / f"{i} (2).jpg", hw=(32, 32))
    assert detect_layout(tmp_path) == "cifake"
    samples = discover(tmp_path)
    assert len(samples) == 8 and {s.split for s in samples} == {"train", "test"}
    assert sum(s.label for s in samples) == 4


def test_faceforensics_frames_masks_and_splits(tmp_path: Path) -> None:
    ff = tmp_path / "FaceForensics++"
    for vid in ("000", "001"):
        img(ff / "original_sequences" / "youtube" / "c23" / "images" / vid / "0000.png")
    for method in ("Deepfakes", "FaceSwap"):
        for vid in ("000_003", "001_870"):
            img(ff / "manipulated_sequences" / method / "c23" / "images" / vid / "0000.png")
    img(ff / "manipulated_sequences" / "Deepfakes" / "masks" / "images" / "000_003" / "0000.png", value=255)
    (ff / "splits").mkdir()
    (ff / "splits" / "train.json").write_text(json.dumps([["000", "003"]]))
    (ff / "splits" / "test.json").write_text(json.dumps([["001", "870"]]))
    assert detect_layout(tmp_path) == "faceforensics"
    samples = discover(tmp_path)
    s = by_name(samples, ff)
    assert len(samples) == 6  # masks are not samples
    df = s["manipulated_sequences/Deepfakes/c23/images/000_003/0000.png"]
    assert (df.label, df.recipe, df.source, df.group, df.split) == (1, "Deepfakes", "c23", "000", "train")
    assert df.mask_path is not None and df.mask_path.parts[-4] == "masks"
    assert s["manipulated_sequences/FaceSwap/c23/images/000_003/0000.png"].mask_path is None
    orig = s["original_sequences/youtube/c23/images/001/0000.png"]
    assert (orig.label, orig.group, orig.split) == (0, "001", "test")


def test_faceforensics_groups_join_both_people_of_a_swap(tmp_path: Path) -> None:
    """Without split files: video a_b (a's body, b's face) joins a and b, so holdout never puts b's original
    on one side and b's face on the other."""
    from fakelens.data.datasets import holdout

    ff = tmp_path / "FaceForensics++"
    for vid in ("000", "001", "002", "003", "004", "005", "006", "007"):
        img(ff / "original_sequences" / "youtube" / "c23" / "images" / vid / "0000.png")
    for a, b in (("000", "003"), ("001", "002"), ("004", "007"), ("005", "006")):
        for vid in (f"{a}_{b}", f"{b}_{a}"):
            img(ff / "manipulated_sequences" / "Deepfakes" / "c23" / "images" / vid / "0000.png")
    samples = discover(tmp_path)
    assert len({s.group for s in samples}) == 4
    videos = ("01__exit_phone_room", "02__walk", "01_02__talk__YV8", "03__hug")
    dfd = [Sample(tmp_path / f"{v}.png", int("_" in v.split("__")[0]), group=v) for v in videos]
    assert [s.group for s in _ff_people(dfd)] == ["01", "01", "01", "03"]  # DeepFakeDetection: actors
    for seed in range(20):
        train, val = holdout(samples, 0.25, seed=seed)
        people = [{p for s in side for p in s.path.parent.name.split("_")} for side in (train, val)]
        assert people[0] and people[1] and not people[0] & people[1]


def test_a_manifest_group_must_not_straddle_splits(tmp_path: Path) -> None:
    for i in range(3):
        img(tmp_path / f"{i}.png")
    (tmp_path / "m.csv").write_text(
        "path,label,split,group\n0.png,real,train,p0\n1.png,fake,train,p0\n2.png,fake,val,p0\n"
    )
    with pytest.raises(DatasetError, match="line 4: group 'p0' is in split val here but in train on line 2"):
        discover(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("path,label,split,source\n0.png,real,train,sdxl\n2.png,fake,val,sdxl\n")
    assert len(discover(tmp_path / "m.csv")) == 2  # a source (a generator) may span splits


def test_folder_layouts_follow_linked_folders_and_skip_mask_trees(tmp_path: Path) -> None:
    """A linked generator folder is read (once, even through a loop); masks beside the images are no
    samples: ``masks/fake/x.png`` had been read as a fake."""
    import os

    root, ext = tmp_path / "data", tmp_path / "elsewhere"
    img(root / "images" / "real" / "r.png")
    img(root / "images" / "fake" / "f.png")
    img(root / "masks" / "fake" / "f.png", value=255)
    img(root / "images" / "fake" / "gt" / "f.png", value=255)
    img(ext / "gan2" / "a.png")
    os.symlink(ext / "gan2", root / "images" / "fake" / "gan2")
    os.symlink(root / "images", ext / "gan2" / "loop")  # a link back up: read once, no endless walk
    got = sorted((s.path.relative_to(root).as_posix(), s.label) for s in discover(root))
    assert got == [("images/fake/f.png", 1), ("images/fake/gan2/a.png", 1), ("images/real/r.png", 0)]


def test_csv_and_jsonl_manifests(tmp_path: Path) -> None:
    img(tmp_path / "imgs" / "a.png")
    img(tmp_path / "imgs" / "b.png")
    img(tmp_path / "imgs" / "b_mask.png", value=255)
    csv_path = tmp_path / "m.csv"
    csv_path.write_text(
        "path,label,mask_path,source,recipe,split,extra\n"
        "imgs/a.png,real,,photo1,,train,x\n"
        "imgs/b.png,FAKE,imgs/b_mask.png,photo1,self_blend,validation,y\n"
    )
    s = discover(csv_path)
    assert [x.label for x in s] == [0, 1]
    assert s[1].mask_path == tmp_path / "imgs" / "b_mask.png" and s[1].recipe == "self_blend"
    assert s[1].split == "val" and s[1].group == ""  # source is no group: each image stands alone
    jsonl = tmp_path / "sub" / "m.jsonl"
    jsonl.parent.mkdir()
    rows = [{"path": str(tmp_path / "imgs" / "a.png"), "label": 0}, {"path": "../imgs/b.png", "label": True}]
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    j = discover(jsonl)
    assert [x.label for x in j] == [0, 1] and j[1].path.resolve() == (tmp_path / "imgs" / "b.png").resolve()
    # a folder holding manifest.csv is read through its manifest (the synth output layout)
    (tmp_path / "manifest.csv").write_text(csv_path.read_text())
    assert detect_layout(tmp_path) == "manifest" and len(discover(tmp_path)) == 2
    # pandas writes float labels; "dev" and "training" are splits too; a split no run reads is an error
    floats = tmp_path / "floats.csv"
    floats.write_text("path,label,split\nimgs/a.png,0.0,training\nimgs/b.png,1.0,dev\n")
    f = discover(floats)
    assert [(x.label, x.split) for x in f] == [(0, "train"), (1, "val")]
    floats.write_text("path,label,split\nimgs/a.png,0,train\nimgs/b.png,1,holdout\n")
    with pytest.raises(DatasetError, match="line 3: split 'holdout' is none of train, val, test"):
        discover(floats)


# ------------------------------------------------------------------------------------------ errors
def _errors_cases(tmp_path: Path) -> list[tuple[Path, str]]:
    unknown = tmp_path / "unknown"
    img(unknown / "cats" / "a.png")
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("file,label\na.png,real\n")
    pool_like = tmp_path / "pool"
    pool_like.mkdir()
    (pool_like / "manifest.csv").write_text("path,source,package,licence,sha256\n")
    missing = tmp_path / "missing.csv"
    missing.write_text("path,label\nnope.png,real\nnope2.png,fake\n")
    badlabel = tmp_path / "badlabel.csv"
    img(tmp_path / "x.png")
    badlabel.write_text("path,label\nx.png,maybe\n")
    empty = tmp_path / "empty"
    (empty / "real").mkdir(parents=True)
    (empty / "fake").mkdir()
    single = tmp_path / "single"
    img(single / "real" / "a.png")
    (single / "fake").mkdir()
    both = tmp_path / "both.csv"
    both.write_text("path,label\nx.png,real\n./x.png,fake\n")
    twice = tmp_path / "twice.csv"
    twice.write_text("path,label\nx.png,fake\n./x.png,fake\n")
    no_rows = tmp_path / "norows.csv"
    no_rows.write_text("path,label\n")
    return [
        (tmp_path / "does-not-exist", "no such dataset file or folder"),
        (unknown, "unknown dataset layout; expected real/ and fake/"),
        (nocol, "lacks the column 'path' (has: file, label)"),
        (pool_like, "looks like a real-photo pool: train on it with --forgeries"),
        (missing, "missing.csv line 2: file not found: nope.png (and 1 more)"),
        (badlabel, "badlabel.csv line 2: label 'maybe' is not one of real, fake, 0, 1"),
        (empty, "no images found"),
        (single, "only real images (1); training and evaluation need both"),
        (tmp_path / "x.png", "is not a dataset manifest"),
        (both, "both.csv line 3: ./x.png is listed as both real and fake (first on line 2)"),
        (twice, "twice.csv line 3: ./x.png is listed twice (first on line 2)"),
        (no_rows, "has no rows"),
    ]


def test_exceptions_are_one_line(tmp_path: Path) -> None:
    for path, message in _errors_cases(tmp_path):
        with pytest.raises(DatasetError) as info:
            discover(path)
        assert message in str(info.value), (path, str(info.value))
        assert "\n" not in str(info.value)
    assert len(discover(tmp_path / "single", require_both=False)) == 1


# ------------------------------------------------------------------------------------------ selections
def test_holdout_keeps_groups_whole_and_is_deterministic(tmp_path: Path) -> None:
    samples = [Sample(tmp_path / f"{i}.png", i % 2, group=f"g{i // 4}") for i in range(400)]
    keep, held = holdout(samples, 0.25, seed=3)
    assert len(keep) + len(held) == 400 and 40 <= len(held) <= 160
    assert not {s.group for s in keep} & {s.group for s in held}
    assert holdout(samples, 0.25, seed=3) == (keep, held)
    assert holdout(samples, 0.25, seed=4) != (keep, held)
    with pytest.raises(DatasetError, match="fraction"):
        holdout(samples, 1.5)


def test_holdout_is_stratified_so_a_small_dataset_validates_on_both_classes(tmp_path: Path) -> None:
    """10 reals and 10 fakes at 0.15: 2 of each held out (a lottery per image held out 1, of one class)."""
    samples = [Sample(tmp_path / f"{c}{i}.png", int(c == "f")) for c in "rf" for i in range(10)]
    for seed in range(5):
        keep, held = holdout(samples, 0.15, seed=seed)
        assert sorted(s.label for s in held) == [0, 0, 1, 1] and len(keep) == 16
    one_each = [Sample(tmp_path / "r.png", 0), Sample(tmp_path / "f.png", 1)]
    assert holdout(one_each, 0.5)[1] == []  # a class with one image stays in training


def test_a_manifest_source_is_no_hold_out_group(tmp_path: Path) -> None:
    """A manifest with ``source`` but no ``group``: the hold-out takes its share of images, not of sources (by
    source, 0.15 held out 2 of 3 generators, and a single real source left validation without reals)."""
    rows = ["path,label,source"]
    for i in range(40):
        real = i % 2 == 0
        name = img(tmp_path / "imgs" / f"{i}.png", seed=i).name
        rows.append(f"imgs/{name},{'real' if real else 'fake'},{'camera' if real else f'gen{i % 3}'}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    samples = discover(tmp_path / "m.csv")
    assert {s.group for s in samples} == {""} and len({s.source for s in samples}) == 4
    keep, held = holdout(samples, 0.15)
    assert sorted(s.label for s in held) == [0, 0, 0, 1, 1, 1] and len(keep) == 34


def test_a_synth_manifest_without_a_group_column_groups_its_pairs_by_source(tmp_path: Path) -> None:
    """`data synth` manifests written before they had a group column: their pair column tells them, and a
    pair's real and fake (one source photo) stay one group — for the hold-out and the bootstrap."""
    rows = ["path,label,recipe,mask_path,source,split,pair,params"]
    for i in range(8):
        name = img(tmp_path / "imgs" / f"{i}.png", seed=i).name
        rows.append(f"imgs/{name},{'real' if i % 2 == 0 else 'fake'},,,pool/p{i // 2}.jpg,,{i // 2},")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    samples = discover(tmp_path / "manifest.csv")
    assert [s.group for s in samples] == [f"pool/p{i // 2}.jpg" for i in range(8)]


def test_sha256_ignores_order_and_location(tmp_path: Path) -> None:
    a = [Sample(tmp_path / "x" / "a.png", 0), Sample(tmp_path / "x" / "b.png", 1, recipe="r")]
    moved = [Sample(Path("/elsewhere/b.png"), 1, recipe="r"), Sample(Path("/elsewhere/a.png"), 0)]
    assert samples_sha256(a, tmp_path / "x") == samples_sha256(moved, "/elsewhere")
    relabelled = [Sample(tmp_path / "x" / "a.png", 1), a[1]]
    assert samples_sha256(relabelled, tmp_path / "x") != samples_sha256(a, tmp_path / "x")
    assert select_split(a, "all") == a and select_split(a, "train") == []


# ------------------------------------------------------------------------------------------ torch datasets
def test_eval_items_equal_inference_preparation(tmp_path: Path) -> None:
    real = img(tmp_path / "real" / "r.png", hw=(30, 50), seed=1)
    fake = img(tmp_path / "fake" / "f.png", hw=(30, 50), seed=2)
    mask = np.zeros((30, 50), np.uint8)
    mask[5:20, 10:30] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    samples = [Sample(real, 0), Sample(fake, 1, mask_path=tmp_path / "m.png"), Sample(fake, 1)]
    spec = InputSpec(size=(32, 32), mode="letterbox", fill=(0, 0, 0))
    ds = DetectionDataset(samples, spec, with_info=True)
    x, y, m, recipe, source = ds[1]
    ref, geom = prepare(load_image(fake), spec)
    assert torch.equal(x, ref) and y == 1 and (recipe, source) == ("", "")
    assert m.shape == (1, 32, 32)
    top, bottom = geom.content_box[1], geom.content_box[3]
    assert float(m[0, :top].abs().sum()) == 0 and float(m[0, bottom:].abs().sum()) == 0  # padding: unforged
    assert float(m.max()) == pytest.approx(1.0) and 0.1 < float(m.mean()) < 0.4
    assert float(ds[0][2].abs().sum()) == 0  # a real: known to be untouched
    assert float(ds[2][2].max()) == -1.0  # a fake without a mask: unknown


def test_training_items_seeded_by_seed_epoch_index(tmp_path: Path) -> None:
    files = [img(tmp_path / "real" / f"{i}.png", hw=(40, 60), seed=i) for i in range(3)]
    spec = InputSpec(size=(24, 32))
    ds = DetectionDataset([Sample(f, 0) for f in files], spec, augment=Augment("robust"), seed=5)
    a = ds[1][0]
    assert a.shape == (3, 24, 32) and torch.equal(a, ds[1][0])
    ds.set_epoch(1)
    assert not torch.equal(a, ds[1][0])
    ds.set_epoch(0)
    assert torch.equal(a, ds[1][0])


# ------------------------------------------------------------------------------------------ on the fly
@pytest.fixture
def pool(tmp_path: Path, photo_source: Path) -> Path:
    out = tmp_path / "pool"
    pool_mod.build_pool(out, detect=False, progress=False)
    return out


SPEC = InputSpec(size=(48, 48))
FRACTIONS = (0.4, 0.3, 0.3)


def test_on_the_fly_pairs(pool: Path) -> None:
    recipes = ["upsample:global", "local_warp", "resample:median"]
    ds = OnTheFlyForgeries(
        pool,
        recipes,
        3,
        spec=SPEC,
        split="train",
        pairs=6,
        size=64,
        augment=Augment("light"),
        split_fractions=FRACTIONS,
        with_info=True,
    )
    assert len(ds) == 12 and ds.recipes == tuple(recipes)
    items = [ds[i] for i in range(len(ds))]
    assert [it[1] for it in items] == [0, 1] * 6
    assert [it[3].split(":")[0] for it in items[1::2]] == ["upsample", "local_warp", "resample"] * 2
    train_photos = {e.path for e in ds.entries}
    for k in range(6):
        (xr, _, mr, _, src_r), (xf, _, mf, _, src_f) = items[2 * k], items[2 * k + 1]
        assert src_r == src_f and src_r in train_photos
        assert float(mr.abs().sum()) == 0 and float(mf.max()) > 0
        untouched = mf[0] == 0  # the same crop and flip: identical wherever the mask is 0
        assert torch.equal(xr[:, untouched], xf[:, untouched])
    # deterministic in (seed, epoch, index), new every epoch
    again = OnTheFlyForgeries(
        pool,
        recipes,
        3,
        spec=SPEC,
        split="train",
        pairs=6,
        size=64,
        augment=Augment("light"),
        split_fractions=FRACTIONS,
    )
    assert torch.equal(again[5][0], items[5][0])
    again.set_epoch(1)
    assert not torch.equal(again[5][0], items[5][0])


def test_on_the_fly_splits_fixed_sets_and_workers(pool: Path) -> None:
    kw = {"spec": SPEC, "pairs": 4, "size": 64, "split_fractions": FRACTIONS}
    val = OnTheFlyForgeries(pool, "upsample", 0, split="val", fixed=True, **kw)  # type: ignore[arg-type]
    train = OnTheFlyForgeries(pool, "upsample", 0, split="train", **kw)  # type: ignore[arg-type]
    assert not {e.path for e in val.entries} & {e.path for e in train.entries}
    first = val[3][0]
    val.set_epoch(7)
    assert torch.equal(val[3][0], first)
    in_process = torch.cat([b[0] for b in DataLoader(val, batch_size=4)])
    in_workers = torch.cat([b[0] for b in DataLoader(val, batch_size=4, num_workers=2)])
    assert torch.equal(in_process, in_workers)


def test_on_the_fly_reals_are_not_enlarged(pool: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Training forgeries had crops without a floor on their side: reals bicubically enlarged from small
    crops carry the interpolation the upsample/resample recipes teach as fake. Every crop of a photo whose
    short side reaches ``size`` (here all: 107–160 px at size 64), target or donor, is now at most 1:1."""
    from fakelens.forgery import dataset

    scales: list[float] = []
    real_crop = dataset._crop

    def spy(*args: Any, **kw: Any) -> Any:
        out = real_crop(*args, **kw)
        scales.append(out[2])
        return out

    monkeypatch.setattr(dataset, "_crop", spy)
    recipes = ["upsample:global", "cross_blend", "resample:resample", "local_warp"]
    ds = OnTheFlyForgeries(pool, recipes, 0, spec=SPEC, pairs=24, size=64, split_fractions=(1.0, 0.0, 0.0))
    pairs = [ds.pair(k) for k in range(24)]
    assert len(scales) >= 24 and max(scales) <= 1.0
    assert all(0 < p.params["crop_scale"] <= 1.0 for p in pairs)


def _turned(box: tuple[float, float, float, float], turn: float) -> dict[str, Any]:
    """A face whose nose and mouth are shifted sideways by ``turn`` × its width (0: frontal), as a manifest
    entry holds it."""
    from fakelens.data.faces import Face, template_landmarks

    lm = template_landmarks(box).copy()
    lm[2:, 0] += turn * (box[2] - box[0])
    lm[[0, 3], 0] += 0.5 * turn * (box[2] - box[0])
    return Face(box=box, landmarks=lm).to_dict()


def test_on_the_fly_cross_blend_donor_faces_fit_the_pose(pool: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The donor photo of a training cross-blend had been drawn at random: a face turned left pasted onto one
    turned right. Each pose has a fitting donor in the split, and every aligned pair now uses one."""
    from fakelens.forgery.dataset import POSE_FIT
    from fakelens.forgery.recipes import Recipe

    doc = json.loads((pool / "manifest.json").read_text())
    box = (40.0, 20.0, 100.0, 90.0)
    turns = iter([0.4, 0.38, -0.4, -0.38])  # two photos turned each way; the camera man stays faceless
    for entry in doc["entries"]:
        if "camera" not in entry["path"]:
            entry["faces"] = [_turned(box, next(turns))]
    (pool / "manifest.json").write_text(json.dumps(doc))
    fits: list[float] = []
    real_apply = Recipe.apply

    def spy(self: Recipe, *args: Any, **kw: Any) -> Any:
        out = real_apply(self, *args, **kw)
        if out.params.get("aligned"):
            fits.append(out.params["pose_error"])
        return out

    monkeypatch.setattr(Recipe, "apply", spy)
    ds = OnTheFlyForgeries(
        pool, "cross_blend", 0, spec=SPEC, pairs=16, size=64, face_prob=1.0, split_fractions=(1.0, 0.0, 0.0)
    )
    for k in range(16):
        ds.pair(k)
    assert len(fits) >= 12 and max(fits) <= POSE_FIT, fits


def test_on_the_fly_pairs_differ_as_encoded(photo_source: Path, tmp_path: Path) -> None:
    """A nearly flat crop (±2 levels of noise) changed by a median filter or a warp before the final JPEG is
    the same image after it: training had such "fakes" equal to their reals. The change is now measured as
    encoded, and such a crop is replaced by another draw."""
    rng = np.random.default_rng(0)
    flat = (128 + rng.integers(-2, 3, (120, 160, 3))).astype(np.uint8)
    Image.fromarray(flat).save(photo_source / "flat.png")
    pool_mod.build_pool(tmp_path / "flat_pool", detect=False, progress=False)
    ds = OnTheFlyForgeries(
        tmp_path / "flat_pool",
        ["resample:median", "local_warp"],
        0,
        spec=SPEC,
        pairs=24,
        size=64,
        fmt="jpeg",
        quality=50,
        split_fractions=(1.0, 0.0, 0.0),
    )
    pairs = [ds.pair(k) for k in range(24)]
    assert not [k for k, p in enumerate(pairs) if np.array_equal(p.real, p.fake)]
    assert any("redrawn" in p.params for p in pairs)


def test_on_the_fly_exceptions(pool: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no photographs in split 'test'"):
        OnTheFlyForgeries(pool, None, 0, spec=SPEC, split="test", split_fractions=(1.0, 0.0, 0.0))
    with pytest.raises(DatasetError, match="at least 1"):
        OnTheFlyForgeries(pool, None, 0, spec=SPEC, pairs=0)
    from fakelens.errors import ConfigError, UnknownNameError

    with pytest.raises(UnknownNameError, match="unknown recipe"):
        OnTheFlyForgeries(pool, "nonsense", 0, spec=SPEC)
    with pytest.raises(ConfigError, match="no pool manifest"):
        OnTheFlyForgeries(tmp_path / "nowhere", None, 0, spec=SPEC)


def test_on_the_fly_splits_are_the_ones_synth_writes(pool: Path, tmp_path: Path) -> None:
    """Training on `fakelens data synth` output and evaluating on `--forgeries` must not mix splits: both deal
    the pool's photos with :func:`pool_splits` (photos with faces are dealt as their own stratum)."""
    import csv

    from fakelens.data.faces import Face
    from fakelens.forgery.dataset import synth

    doc = json.loads((pool / "manifest.json").read_text())
    doc["entries"][0]["faces"] = [Face(box=(10.0, 10.0, 90.0, 90.0)).to_dict()]
    (pool / "manifest.json").write_text(json.dumps(doc))
    synth(pool, tmp_path / "ds", 8, ["local_warp"], split_fractions=FRACTIONS, progress=False, sheet=False)
    with (tmp_path / "ds" / "manifest.csv").open() as fh:
        written = {r["source"]: r["split"] for r in csv.DictReader(fh)}
    for split in ("train", "val", "test"):
        ds = OnTheFlyForgeries(pool, None, 0, spec=SPEC, split=split, pairs=1, split_fractions=FRACTIONS)
        dealt = {e.path for e in ds.entries}
        assert {p for p, s in written.items() if s == split} <= dealt
        assert dealt == {
            p for p, s in pool_mod.pool_splits(pool_mod.load_pool(pool), FRACTIONS).items() if s == split
        }


def test_a_mask_of_another_shape_is_refused(tmp_path: Path) -> None:
    from fakelens.data.datasets import _load_mask

    img(tmp_path / "half.png", hw=(32, 32), value=255)
    img(tmp_path / "wide.png", hw=(20, 30), value=255)
    assert _load_mask(tmp_path / "half.png", (64, 64)).shape == (64, 64)  # half resolution: resized
    with pytest.raises(DatasetError, match="30×20 px but its image is 64×64"):
        _load_mask(tmp_path / "wide.png", (64, 64))


def test_a_real_image_with_a_forged_region_in_its_mask_is_refused(tmp_path: Path) -> None:
    from fakelens.data.datasets import DetectionDataset
    from fakelens.models.base import InputSpec

    img(tmp_path / "r.png")
    img(tmp_path / "full.png", value=255)
    img(tmp_path / "none.png", value=0)
    spec = InputSpec(size=(16, 16))
    fine = DetectionDataset([Sample(tmp_path / "r.png", 0, mask_path=tmp_path / "none.png")], spec)
    assert fine[0][1] == 0  # an empty mask on a real is what "real" means
    bad = DetectionDataset([Sample(tmp_path / "r.png", 0, mask_path=tmp_path / "full.png")], spec)
    with pytest.raises(DatasetError, match="labelled real, but its mask"):
        bad[0]
