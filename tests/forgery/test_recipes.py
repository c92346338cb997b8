"""Every registered recipe (and variant): contract, exact masks, determinism, matched final encoding."""

from __future__ import annotations

import io

import cv2
import forgery_helpers as helpers
import numpy as np
import pytest
import skimage.data
from PIL import Image

from fakelens.data.faces import Face
from fakelens.errors import ConfigError, ForgeryError, ImageError, UnknownNameError
from fakelens.forgery import RECIPES, decode, encode_pair, make_recipe, parse_recipes, recipe_specs
from fakelens.forgery.dataset import mask_to_png
from fakelens.forgery.recipes import MIN_CHANGE

SPECS = recipe_specs()


@pytest.fixture(scope="session")
def astronaut128() -> tuple[np.ndarray, Face]:
    return helpers.astronaut128()


@pytest.fixture(scope="session")
def coffee_odd() -> np.ndarray:
    """An odd-sized natural crop (97 × 131)."""
    return helpers.coffee_odd()


def run(spec: str, image: np.ndarray, seed: int, **kw: object) -> tuple[np.ndarray, np.ndarray]:
    return make_recipe(spec)(image, np.random.default_rng(seed), **kw)  # type: ignore[arg-type]


def test_registry_has_the_six_families() -> None:
    assert set(RECIPES.names()) == {
        "self_blend",
        "cross_blend",
        "local_warp",
        "upsample",
        "resample",
        "double_jpeg",
    }
    assert "upsample:global" in SPECS and "upsample:regional" in SPECS


@pytest.mark.parametrize("spec", SPECS)
def test_contract_and_exact_mask(spec: str, astronaut128: tuple[np.ndarray, Face]) -> None:
    img, _ = astronaut128
    for seed in range(3):
        fake, mask = run(spec, img, seed)
        assert fake.shape == img.shape and fake.dtype == np.uint8
        assert mask.shape == img.shape[:2] and mask.dtype == np.float32
        assert float(mask.min()) >= 0.0 and float(mask.max()) <= 1.0 and mask.any()
        untouched = mask == 0
        assert np.array_equal(fake[untouched], img[untouched]), "pixels with M == 0 must be byte-identical"


@pytest.mark.parametrize("spec", SPECS)
def test_change_is_visible_inside_mask(spec: str, astronaut128: tuple[np.ndarray, Face]) -> None:
    img, _ = astronaut128
    fake, mask = run(spec, img, 7)
    diff = np.abs(fake.astype(np.float32) - img.astype(np.float32)).mean(axis=2)
    weighted = float((diff * mask).sum() / mask.sum())
    assert weighted > 0.5, f"{spec}: mean |fake - real| inside the mask is only {weighted:.3f}"
    assert (diff[mask > 0] > 0).mean() > 0.2


@pytest.mark.parametrize("spec", SPECS)
def test_deterministic(spec: str, astronaut128: tuple[np.ndarray, Face]) -> None:
    img, _ = astronaut128
    a, ma = run(spec, img, 3)
    b, mb = run(spec, img, 3)
    c, mc = run(spec, img, 4)
    assert a.tobytes() == b.tobytes() and ma.tobytes() == mb.tobytes()
    assert a.tobytes() != c.tobytes() or ma.tobytes() != mc.tobytes()


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_encoded_pair_shares_size_format_and_tables(
    spec: str, fmt: str, astronaut128: tuple[np.ndarray, Face]
) -> None:
    img, _ = astronaut128
    recipe = make_recipe(spec)
    fake, _ = recipe(img, np.random.default_rng(0))
    final = recipe.final_format or fmt
    rb, fb = encode_pair(img, fake, final, 85)
    with Image.open(io.BytesIO(rb)) as r, Image.open(io.BytesIO(fb)) as f:
        assert r.format == f.format == {"png": "PNG", "jpeg": "JPEG"}[final]
        assert r.size == f.size == (img.shape[1], img.shape[0])
        assert r.mode == f.mode
        if final == "jpeg":
            assert r.quantization == f.quantization  # type: ignore[attr-defined]
            assert r.layer == f.layer  # type: ignore[attr-defined]  # same chroma subsampling
    if final == "png":
        assert np.array_equal(decode(rb), img) and np.array_equal(decode(fb), fake)


def test_double_jpeg_forces_a_final_jpeg_pass() -> None:
    assert make_recipe("double_jpeg").final_format == "jpeg"


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("shape", [(8, 8), (9, 13), (31, 45), (257, 129)])
def test_odd_sizes(spec: str, shape: tuple[int, int], coffee_odd: np.ndarray) -> None:
    img = np.ascontiguousarray(np.resize(coffee_odd, (*shape, 3)).astype(np.uint8))
    fake, mask = run(spec, img, 1)
    assert fake.shape == img.shape and mask.shape == shape
    assert np.array_equal(fake[mask == 0], img[mask == 0])


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("kind", ["black", "grey", "white", "near_flat"])
def test_flat_images_give_a_fake_or_one_clear_error(spec: str, kind: str) -> None:
    """A recipe that cannot change a flat image had returned a fake byte-identical to its real."""
    value = {"black": 0, "grey": 128, "white": 255, "near_flat": 120}[kind]
    img = np.full((40, 56, 3), value, np.uint8)
    if kind == "near_flat":
        img = (img + np.random.default_rng(0).integers(0, 3, img.shape)).astype(np.uint8)
    try:
        fake, mask = run(spec, img, 2)
    except ForgeryError as exc:
        assert "cannot change this 56x40 image" in str(exc) and "\n" not in str(exc)
    else:
        assert np.isfinite(mask).all() and np.array_equal(fake[mask == 0], img[mask == 0])
        core = mask >= 0.5 * mask.max()
        assert np.abs(fake.astype(int) - img.astype(int)).max(axis=2)[core].mean() >= MIN_CHANGE


@pytest.mark.parametrize("spec", ["cross_blend", "local_warp", "resample:copy_move", "double_jpeg"])
def test_a_fake_equal_to_its_real_is_refused(spec: str) -> None:
    with pytest.raises(ForgeryError, match=f"{spec.split(':')[0]} cannot change this 64x64 image"):
        make_recipe(spec).apply(np.full((64, 64, 3), 128, np.uint8), 5)


@pytest.mark.parametrize("spec", ["double_jpeg", "resample:median"])
def test_the_change_is_measured_after_the_final_encoding(spec: str) -> None:
    """The 1-grey-level check ran before the final JPEG pass, which smoothed some fakes back to < 2 levels
    (8 of 50 double-JPEG pairs). Given the encoding, the change is measured as the files hold it."""
    from fakelens.forgery import decode, encode_pair

    img = cv2.GaussianBlur(cv2.resize(skimage.data.astronaut(), (128, 128)), (0, 0), 2.0)
    for seed in range(12):
        f = make_recipe(spec).apply(img, np.random.default_rng(seed), encoding=("jpeg", 90))
        rb, fb = encode_pair(img, f.fake, "jpeg", 90)
        core = f.mask >= 0.5 * f.mask.max()
        change = np.abs(decode(fb).astype(int) - decode(rb).astype(int)).max(axis=2)[core].mean()
        assert change >= MIN_CHANGE, f"{spec}, seed {seed}: {change:.2f} grey levels after JPEG"


def test_self_blend_uses_the_face(astronaut128: tuple[np.ndarray, Face]) -> None:
    img, face = astronaut128
    recipe = make_recipe("self_blend")
    x0, y0, x1, y1 = face.box
    for seed in range(5):
        f = recipe.apply(img, np.random.default_rng(seed), faces=[face])
        assert f.params["face"] is True
        ys, xs = np.nonzero(f.mask)
        cx, cy = (f.mask[ys, xs] * xs).sum() / f.mask.sum(), (f.mask[ys, xs] * ys).sum() / f.mask.sum()
        assert x0 <= cx <= x1 and y0 <= cy <= y1
        grow = 0.6 * face.size  # the mask may reach forehead and chin, not the far side of the image
        assert (
            xs.min() >= x0 - grow
            and xs.max() <= x1 + grow
            and ys.min() >= y0 - grow
            and ys.max() <= y1 + grow
        )
        assert np.array_equal(f.fake[f.mask == 0], img[f.mask == 0])


def test_self_blend_falls_back_without_faces(astronaut128: tuple[np.ndarray, Face]) -> None:
    img, face = astronaut128
    recipe = make_recipe("self_blend")
    assert recipe.apply(img, np.random.default_rng(0)).params["face"] is False
    outside = Face(box=(500.0, 500.0, 540.0, 540.0), landmarks=face.points() + 400)  # not in the image
    assert recipe.apply(img, np.random.default_rng(0), faces=[outside]).params["face"] is False


def test_cross_blend_aligns_donor_faces(astronaut128: tuple[np.ndarray, Face]) -> None:
    img, face = astronaut128
    donor = np.ascontiguousarray(img[:, ::-1])
    x0, y0, x1, y1 = face.box
    dface = Face(box=(128 - x1, y0, 128 - x0, y1), landmarks=face.points() * [-1, 1] + [127, 0])
    f = make_recipe("cross_blend").apply(
        img, np.random.default_rng(0), faces=[face], donor=donor, donor_faces=[dface]
    )
    assert f.params["aligned"] is True and f.params["face"] is True
    assert np.array_equal(f.fake[f.mask == 0], img[f.mask == 0])


def test_cross_blend_resizes_a_donor_of_another_size(
    astronaut128: tuple[np.ndarray, Face], coffee_odd: np.ndarray
) -> None:
    img, _ = astronaut128
    fake, mask = run("cross_blend", img, 0, donor=coffee_odd)
    assert fake.shape == img.shape and np.array_equal(fake[mask == 0], img[mask == 0])


def test_global_upsample_mask_is_all_ones(astronaut128: tuple[np.ndarray, Face]) -> None:
    _, mask = run("upsample:global", astronaut128[0], 0)
    assert np.all(mask == 1.0)


def test_bad_names_and_inputs() -> None:
    with pytest.raises(UnknownNameError, match="did you mean self_blend"):
        make_recipe("self_blnd")
    with pytest.raises(ConfigError, match="no variant"):
        make_recipe("upsample:sideways")
    with pytest.raises(UnknownNameError):
        parse_recipes("upsample,nope")
    assert parse_recipes("all") == RECIPES.names() == parse_recipes(None) == parse_recipes("")
    for nothing in (",", " , ", ["", " "]):  # separators alone had meant every recipe
        with pytest.raises(ConfigError, match="no recipe named"):
            parse_recipes(nothing)
    with pytest.raises(ImageError):
        make_recipe("upsample")(np.zeros((16, 16), np.uint8), np.random.default_rng(0))
    with pytest.raises(ImageError):
        make_recipe("upsample")(np.zeros((4, 16, 3), np.uint8), np.random.default_rng(0))


def test_mask_png_keeps_every_touched_pixel() -> None:
    m = np.array([[0.0, 0.001, 0.5, 1.0]], np.float32)
    with Image.open(io.BytesIO(mask_to_png(m))) as im:
        q = np.asarray(im)
    assert q.tolist() == [[0, 1, 128, 255]]


@pytest.mark.parametrize("spec", SPECS)
def test_a_grey_photo_gets_a_grey_fake(spec: str) -> None:
    grey = np.repeat(helpers.coffee_odd().mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
    donor = helpers.astronaut128()[0]  # a colour donor must not bring its colour
    for seed in range(4):
        fake = make_recipe(spec).apply(grey, np.random.default_rng(seed), donor=donor).fake
        assert int(np.ptp(fake.astype(np.int16), axis=2).max()) == 0, f"{spec}, seed {seed}"


@pytest.mark.parametrize("spec", ["resample:median", "upsample:regional", "double_jpeg"])
def test_a_draw_that_changes_nothing_is_drawn_again(spec: str) -> None:
    """A smooth photo: the first draws may leave the region as it was; what is returned is a real change."""
    img = cv2.GaussianBlur(cv2.resize(skimage.data.astronaut(), (128, 128)), (0, 0), 2.0)
    for seed in range(6):
        f = make_recipe(spec).apply(img, np.random.default_rng(seed))
        core = f.mask >= 0.5 * f.mask.max()
        change = np.abs(f.fake.astype(int) - img.astype(int)).max(axis=2)[core].mean()
        assert change >= MIN_CHANGE, f"{spec}, seed {seed}: {change:.2f} grey levels"


def test_upsampling_an_odd_sized_image_shifts_nothing() -> None:
    """Down(½) then Up(2) of a ramp 65 px wide: the error is the same at both edges (no stretch)."""
    ramp = np.tile(np.linspace(0, 255, 65).astype(np.uint8)[None, :, None], (65, 1, 3))
    for seed in range(6):
        f = make_recipe("upsample:global").apply(ramp, np.random.default_rng(seed))
        err = (f.fake.astype(np.float32) - ramp).mean(axis=(0, 2))
        assert abs(err[2:6].mean() - err[-6:-2].mean()) < 0.5, f"seed {seed}: {err[2:6]} vs {err[-6:-2]}"


def test_cross_blend_takes_the_donor_face_whose_pose_fits() -> None:
    """Face X-ray picks donors by landmark distance: a frontal target gets the frontal donor face, whatever
    the draw, not the profile one (a frontal face pasted onto a profile is visible at a glance)."""
    from fakelens.data.faces import template_landmarks
    from fakelens.forgery.recipes import _nearest_pose

    box = (40.0, 40.0, 100.0, 110.0)
    target = Face(box=box, landmarks=template_landmarks(box))
    near = template_landmarks((0.0, 0.0, 30.0, 35.0)).copy()
    near[3, 1] += (
        0.8  # another person, nearly the same pose (a template's exact copy would be the face itself)
    )
    frontal = Face(box=(0.0, 0.0, 30.0, 35.0), landmarks=near)
    pts = template_landmarks((200.0, 0.0, 260.0, 70.0)).copy()
    pts[2, 0] += 18.0  # the nose far to one side, the eyes crowded: a turned head
    pts[0, 0] += 12.0
    profile = Face(box=(200.0, 0.0, 260.0, 70.0), landmarks=pts)
    for draw in range(4):
        assert _nearest_pose([profile, frontal], target, draw) is frontal
        assert _nearest_pose([frontal, profile], target, draw) is frontal


def test_a_face_is_never_its_own_donor() -> None:
    """A donor crop of the same group photo may hold the target face itself: it fits its own landmarks
    perfectly, but a face pasted onto itself is no forgery, so another face is taken."""
    from fakelens.data.faces import template_landmarks
    from fakelens.forgery.recipes import _nearest_pose

    a, b = (40.0, 40.0, 100.0, 110.0), (150.0, 45.0, 208.0, 112.0)
    other = template_landmarks(b).copy()
    other[2, 0] += 2.0  # another face: no similarity maps its landmarks exactly onto the target's
    target, neighbour = Face(box=a, landmarks=template_landmarks(a)), Face(box=b, landmarks=other)
    for draw in range(4):
        assert _nearest_pose([target, neighbour], target, draw) is neighbour
    assert _nearest_pose([target], target, 0) is target  # nothing else to take


@pytest.mark.parametrize("spec", recipe_specs())
def test_masks_claim_no_weight_too_small_to_change_a_pixel(
    spec: str, astronaut128: tuple[np.ndarray, Face]
) -> None:
    """clean_mask zeroes blend weights under 1/512 (they cannot move an 8-bit value): the mask marks only
    pixels the recipe could have changed."""
    img = astronaut128[0]
    for seed in range(3):
        _, mask = make_recipe(spec)(img, np.random.default_rng(seed))
        assert mask[mask > 0].min() >= 1 / 512


def test_mask_bbox_is_half_open() -> None:
    from fakelens.forgery.ops import mask_bbox

    m = np.zeros((10, 10), np.float32)
    m[3, 5] = 1
    assert mask_bbox(m) == (3, 4, 5, 6) and mask_bbox(m, margin=2) == (1, 6, 3, 8)


def test_a_shifted_jpeg_grid_comes_back_aligned_with_the_image() -> None:
    """jpeg_roundtrip with a grid offset pads, compresses and crops the same corner back off."""
    from fakelens.forgery.ops import jpeg_roundtrip

    yy, xx = np.mgrid[0:64, 0:64]
    board = ((((yy // 8) + (xx // 8)) % 2) * 200 + 20).astype(np.uint8)
    img = np.repeat(board[..., None], 3, -1)
    out = jpeg_roundtrip(img, 95, (3, 5))
    assert out.shape == img.shape and np.abs(out.astype(int) - img).mean() < 5  # shifted: about 104


def test_a_recipe_takes_an_int_seed_and_a_pil_image() -> None:
    """As load_image returns photos; an int seed is a generator seeded with it."""
    arr = np.random.default_rng(1).integers(0, 256, (96, 128, 3), np.uint8)
    fake, mask = make_recipe("upsample:regional")(Image.fromarray(arr), 7)
    again, _ = make_recipe("upsample:regional")(arr, np.random.default_rng(7))
    assert np.array_equal(fake, again) and mask.shape == arr.shape[:2]
    with pytest.raises(TypeError, match="rng must be a numpy Generator or an int seed, not str"):
        make_recipe("upsample")(arr, "7")  # type: ignore[arg-type]


def test_an_rgba_array_is_taken_as_an_rgba_pil_image_is() -> None:
    """Composited on white by fakelens.io.to_rgb; the array had been refused."""
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (64, 80, 4), np.uint8)
    from_pil = make_recipe("upsample:regional").apply(Image.fromarray(rgba, "RGBA"), 5)
    from_array = make_recipe("upsample:regional").apply(rgba, 5)
    assert from_array.fake.shape == (64, 80, 3)
    assert np.array_equal(from_array.fake, from_pil.fake) and np.array_equal(from_array.mask, from_pil.mask)
    donor = make_recipe("cross_blend").apply(rgba[..., :3], 5, donor=rgba)  # a donor array too
    assert donor.fake.shape == (64, 80, 3)
