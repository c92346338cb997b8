"""The dataset builder on a tiny pool: files, manifest, splits, determinism, encodings, contact sheet."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import forgery_helpers as helpers
import numpy as np
import pytest
from PIL import Image

from fakelens.data.faces import Face
from fakelens.errors import ConfigError, ImageError, UnknownNameError
from fakelens.forgery import decode, make_recipe, recipe_specs
from fakelens.forgery.dataset import MANIFEST_COLUMNS, contact_sheet, crop_photo, synth


@pytest.fixture
def tiny_pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return helpers.make_tiny_pool(tmp_path, monkeypatch)


def read_manifest(out: Path) -> list[dict[str, str]]:
    with open(out / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_synth_writes_pairs_masks_and_manifest(tiny_pool: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    specs = recipe_specs()
    res = synth(tiny_pool, out, n=len(specs), recipes=specs, seed=3, size=64, progress=False)
    rows = read_manifest(out)
    assert list(rows[0]) == list(MANIFEST_COLUMNS)
    assert len(rows) == 2 * len(specs) and res.n == len(specs)
    assert res.contact_sheet is not None and res.contact_sheet.is_file()
    fakes = [r for r in rows if r["label"] == "fake"]
    reals = {r["pair"]: r for r in rows if r["label"] == "real"}
    assert {r["recipe"].split(":")[0] for r in fakes} == {s.split(":")[0] for s in specs}
    for f in fakes:
        r = reals[f["pair"]]
        assert r["source"] == f["source"] and r["split"] == f["split"] and r["mask_path"] == ""
        assert r["group"] == f["group"] != ""  # the pair shares its photo group (no hold-out splits it)
        rb, fb = (out / r["path"]).read_bytes(), (out / f["path"]).read_bytes()
        with Image.open(io.BytesIO(rb)) as ri, Image.open(io.BytesIO(fb)) as fi:
            assert ri.format == fi.format and ri.size == fi.size == (64, 64)
            if ri.format == "JPEG":
                assert ri.quantization == fi.quantization  # type: ignore[attr-defined]
        with Image.open(out / f["mask_path"]) as mi:
            mask = np.asarray(mi)
        assert mask.shape == (64, 64) and mask.any()
        if f["recipe"] != "double_jpeg":  # lossless: untouched pixels identical in the files too
            assert np.array_equal(decode(rb)[mask == 0], decode(fb)[mask == 0])
        else:
            assert Path(f["path"]).suffix == ".jpg"
        params = json.loads(f["params"])  # what was drawn, to reproduce or score by it
        assert json.loads(r["params"]) == {"crop_scale": params["crop_scale"]}  # the pair's resize factor
        assert params == json.loads(json.dumps(params)) and params["crop_scale"] <= 1.0  # 320-px photos
        if f["recipe"] == "double_jpeg":
            assert 0 < params["q1"] <= 100 and len(params["shift"]) == 2
        if f["recipe"].startswith("cross_blend"):
            assert (tiny_pool / params["donor"]).is_file()  # a pool photo of the same split
    meta = json.loads((out / "synth.json").read_text())
    jpegs = sum(1 for f in fakes if f["path"].endswith(".jpg"))
    assert meta["counts"]["formats"] == {"png": len(fakes) - jpegs, "jpeg": jpegs}
    # a photo never appears in two splits
    split_of: dict[str, set[str]] = {}
    for r in rows:
        split_of.setdefault(r["source"], set()).add(r["split"])
    assert all(len(v) == 1 for v in split_of.values())


def test_synth_is_deterministic_and_jpeg_option(tiny_pool: Path, tmp_path: Path) -> None:
    kw = {
        "n": 6,
        "recipes": "self_blend,cross_blend,upsample",
        "seed": 11,
        "size": 48,
        "fmt": "jpeg",
        "quality": 80,
        "progress": False,
        "sheet": False,
    }
    synth(tiny_pool, tmp_path / "a", **kw)  # type: ignore[arg-type]
    synth(tiny_pool, tmp_path / "b", **kw)  # type: ignore[arg-type]
    a, b = read_manifest(tmp_path / "a"), read_manifest(tmp_path / "b")
    assert a == b
    for r in a:
        assert r["path"].endswith(".jpg")
        assert (tmp_path / "a" / r["path"]).read_bytes() == (tmp_path / "b" / r["path"]).read_bytes()
    synth(tiny_pool, tmp_path / "c", **{**kw, "seed": 12})  # type: ignore[arg-type]
    c = read_manifest(tmp_path / "c")
    split_a = {r["source"]: r["split"] for r in a}
    assert all(split_a.get(r["source"], r["split"]) == r["split"] for r in c)  # splits ignore the seed
    assert any(
        (tmp_path / "a" / r["path"]).read_bytes() != (tmp_path / "c" / r["path"]).read_bytes() for r in c
    )


def test_workers_do_not_change_the_bytes(tiny_pool: Path, tmp_path: Path) -> None:
    kw = {"n": 10, "recipes": "all", "seed": 5, "size": 64, "progress": False, "sheet": False}
    synth(tiny_pool, tmp_path / "one", workers=1, **kw)  # type: ignore[arg-type]
    synth(tiny_pool, tmp_path / "two", workers=2, **kw)  # type: ignore[arg-type]
    one, two = read_manifest(tmp_path / "one"), read_manifest(tmp_path / "two")
    assert one == two
    for r in one:
        assert (tmp_path / "one" / r["path"]).read_bytes() == (tmp_path / "two" / r["path"]).read_bytes()


def test_synth_errors(tiny_pool: Path, tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError):
        synth(tiny_pool, tmp_path / "x", n=2, recipes="self_blend,warp_drive", progress=False)
    with pytest.raises(ConfigError):
        synth(tiny_pool, tmp_path / "x", n=0, progress=False)
    with pytest.raises(ConfigError):
        synth(tiny_pool, tmp_path / "x", n=2, fmt="gif", progress=False)
    with pytest.raises(ConfigError, match="no pool manifest"):
        synth(tmp_path / "nowhere", tmp_path / "x", n=2, progress=False)
    with pytest.raises(ConfigError, match="--seed must be 0 or more"):  # numpy's seeds are not negative
        synth(tiny_pool, tmp_path / "x", n=2, seed=-1, progress=False)
    with pytest.raises(ConfigError, match="--quality"):  # up front, not after the first double-JPEG pair
        synth(tiny_pool, tmp_path / "x", n=2, quality=0, progress=False)
    assert not (tmp_path / "x").exists()
    used = tmp_path / "used"
    synth(tiny_pool, used, n=2, size=48, progress=False, sheet=False)
    with pytest.raises(ConfigError, match="is not empty"):  # a smaller second run would leave old pairs
        synth(tiny_pool, used, n=1, size=48, progress=False, sheet=False)


def test_contact_sheet(tiny_pool: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    synth(tiny_pool, out, n=4, recipes="self_blend,upsample:global", size=48, progress=False, sheet=False)
    png = contact_sheet(out, tmp_path / "sheet.png", per_recipe=2, tile=48)
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width > 5 * 48 and im.height > 4 * 48
    with pytest.raises(ConfigError):
        contact_sheet(tmp_path / "empty")
    with Image.open(contact_sheet(out, tmp_path / "sheet.jpg", tile=48)) as im:
        assert im.format == "JPEG"  # as its name says (it had been PNG bytes in a .jpg)
    for bad, match in [({"out": tmp_path / "s.gif"}, "not 's.gif'"), ({"per_recipe": 0}, "≥ 1, not 0")]:
        with pytest.raises(ConfigError, match=match):
            contact_sheet(out, **bad)  # type: ignore[arg-type]
    (out / "fake" / next(iter(sorted(p.name for p in (out / "fake").iterdir())))).write_text("garbage")
    with pytest.raises(ImageError, match="not an image"):  # one error naming the file, no traceback
        contact_sheet(out, tmp_path / "s2.png", per_recipe=4)


def test_a_pool_is_found_from_its_manifest_csv(tiny_pool: Path, tmp_path: Path) -> None:
    res = synth(tiny_pool / "manifest.csv", tmp_path / "x", n=2, size=48, progress=False, sheet=False)
    assert res.n == 2


def test_crop_photo_keeps_faces_in_frame() -> None:
    img = np.zeros((300, 400, 3), np.uint8)
    face = Face(
        box=(150.0, 100.0, 210.0, 170.0),
        landmarks=np.array([[165, 125], [195, 125], [180, 140], [168, 155], [192, 155]], np.float32),
    )
    for seed in range(10):
        crop, faces = crop_photo(img, [face], np.random.default_rng(seed), 64, face)
        assert crop.shape == (64, 64, 3) and len(faces) == 1
        assert faces[0].inside(64, 64) and 0.3 < faces[0].size / 64 < 0.6
        _, mask = make_recipe("self_blend")(crop, np.random.default_rng(seed), faces=faces)
        assert mask.any()


def test_a_donor_face_is_never_the_target_face(monkeypatch: pytest.MonkeyPatch) -> None:
    """A group photo may give its other face as donor, never the face being replaced (a self-swap)."""

    from fakelens.data.faces import template_landmarks
    from fakelens.data.pool import PoolEntry
    from fakelens.forgery import dataset

    boxes = [(40.0, 40.0, 120.0, 130.0), (200.0, 60.0, 280.0, 150.0)]
    faces = [Face(box=b, landmarks=template_landmarks(b)) for b in boxes]
    entry = PoolEntry("group.png", "test", "test", "CC0-1.0", "0" * 64, 320, 200, faces)
    photo = np.zeros((200, 320, 3), np.uint8)
    drawer = dataset.PairDrawer([entry], {entry.path: "train"}, lambda _: (photo, 1.0), size=128, face_prob=1)
    for seed in range(20):
        rng = np.random.default_rng(seed)
        target = drawer._pick(rng, [entry], True).centre
        assert target is not None
        donor = drawer._pick(rng, [entry], True, (entry.path, target)).centre
        assert donor is not None and donor.box != target.box


@pytest.mark.parametrize("existed", [False, True])
def test_an_interrupted_synth_leaves_no_half_dataset(
    tiny_pool: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existed: bool
) -> None:
    """Ctrl-C after some pairs were written: train read the folder as a whole real/fake dataset (no manifest,
    splits, masks or recipes). The pairs go; an empty folder the user made stays, empty."""
    import fakelens.forgery.dataset as dataset

    out = tmp_path / "ds"
    if existed:
        out.mkdir()
    real_chunk = dataset._run_chunk
    calls = 0

    def interrupted(chunk: list[int]) -> list[dict[str, str]]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt
        return real_chunk(chunk)

    monkeypatch.setattr(dataset, "_run_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        synth(tiny_pool, out, n=40, size=48, progress=False, sheet=False, workers=1)
    assert calls == 2 and (list(out.iterdir()) == [] if existed else not out.exists())


def test_a_crop_is_not_enlarged_where_the_photo_allows() -> None:
    """A small face or a small random side had been cropped below ``size`` and enlarged (bicubic): reals with
    interpolation traces. The side is now at least ``size``, or the photo's short side when that is less."""
    img = np.zeros((300, 400, 3), np.uint8)
    small = Face(box=(180.0, 120.0, 215.0, 160.0), landmarks=None)  # 40 px: 72–112 px crops at 1.8–2.8×
    for seed in range(10):
        for face in (small, None):
            _, faces = crop_photo(img, [small], np.random.default_rng(seed), 128, face)
            assert all(f.size <= small.size + 1e-3 for f in faces)  # scale ≤ 1
            _, faces = crop_photo(img, [small], np.random.default_rng(seed), 256, face)
            assert all(f.size <= small.size + 1e-3 for f in faces)
        _, faces = crop_photo(img, [small], np.random.default_rng(seed), 512, small)  # short side 300 < 512
        assert faces and faces[0].size == pytest.approx(small.size * 512 / 300, rel=1e-3)
        _, faces = crop_photo(img, [small], np.random.default_rng(seed), 128, small, min_side=0)
        assert faces[0].size > small.size  # no floor: enlarged, as before


def _posed(box: tuple[float, float, float, float], turn: float) -> Face:
    """A face whose nose and mouth are shifted sideways by ``turn`` × its width (0: frontal)."""
    from fakelens.data.faces import template_landmarks

    lm = template_landmarks(box).copy()
    lm[2:, 0] += turn * (box[2] - box[0])
    lm[[0, 3], 0] += 0.5 * turn * (box[2] - box[0])
    return Face(box=box, landmarks=lm)


def test_a_cross_blend_donor_face_is_chosen_by_pose_across_the_split(monkeypatch: pytest.MonkeyPatch) -> None:
    """The donor photo had been drawn at random and the face chosen only within it: a frontal face pasted
    onto a profile. Now every face of the split competes; the target's own face never does."""
    from fakelens.data.pool import PoolEntry
    from fakelens.forgery import dataset

    box = (120.0, 100.0, 240.0, 240.0)
    entries = [
        PoolEntry(f"{n}.png", "test", "test", "CC0-1.0", "0" * 64, 400, 400, [_posed(box, turn)], group=n)
        for n, turn in [("target", 0.25), ("frontal", 0.0), ("profile_a", 0.26), ("profile_b", 0.24)]
    ]
    entries += [PoolEntry("empty.png", "test", "test", "CC0-1.0", "1" * 64, 400, 400, [], group="empty")]
    rng0 = np.random.default_rng(0)
    photo = rng0.integers(0, 256, (400, 400, 3), np.uint8)
    monkeypatch.setattr(dataset, "_load", lambda *_: (photo, 1.0))
    cfg = dataset._Config("", "", ("cross_blend",), 0, 128, "png", 90, 1.0)
    splits = {e.path: "train" for e in entries}
    drawer = dataset.PairDrawer(entries, splits, dataset._load_entry, size=128, face_prob=1.0)
    recipes = {"cross_blend": make_recipe("cross_blend")}
    monkeypatch.setattr(dataset, "_STATE", {"cfg": cfg, "drawer": drawer, "recipes": recipes})
    donors = []
    for i in range(24):
        s = dataset._make(i)
        if s.source == "target.png":
            assert s.params["aligned"] and s.params["pose_error"] < 0.03, s.params
            donors.append(s.params["donor"])
        else:
            assert s.params["donor"] != s.source
    assert donors and set(donors) <= {"profile_a.png", "profile_b.png"}


def test_a_crop_the_recipe_cannot_change_is_redrawn_and_counted(
    tiny_pool: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fake equal to its real (a flat crop) is refused by the recipe; synth draws another and says so."""
    from fakelens.errors import ForgeryError
    from fakelens.forgery.recipes import Recipe

    real_apply = Recipe.apply
    calls = 0

    def flat_first(self: Recipe, *args: object, **kw: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ForgeryError("upsample cannot change this 64x64 image")
        assert kw["encoding"] == ("png", 90)  # the change is measured as the files will hold it
        return real_apply(self, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Recipe, "apply", flat_first)
    res = synth(tiny_pool, tmp_path / "ds", n=2, recipes="upsample", size=64, progress=False, sheet=False)
    fakes = [r for r in read_manifest(tmp_path / "ds") if r["label"] == "fake"]
    assert (
        res.redrawn == 1
        and json.loads((tmp_path / "ds" / "synth.json").read_text())["counts"]["redrawn"] == 1
    )
    assert json.loads(fakes[0]["params"])["redrawn"] == 1 and "redrawn" not in json.loads(fakes[1]["params"])
