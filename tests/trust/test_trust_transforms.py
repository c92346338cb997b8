"""Views: exact warps where pixel centres map onto pixel centres, exact inverses, valid masks and fills."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fakelens.errors import ConfigError
from fakelens.trust.transforms import Transform, TransformFamily, make_views, unwarp, warp

EXACT = {
    "hflip": (Transform.hflip(), lambda x: torch.flip(x, [-1])),
    "vflip": (Transform.vflip(), lambda x: torch.flip(x, [-2])),
    "rot180": (Transform.rotate(180), lambda x: torch.flip(x, [-2, -1])),
    "rot90": (Transform.rotate(90), lambda x: torch.rot90(x, 1, [-2, -1])),
    "rot-90": (Transform.rotate(-90), lambda x: torch.rot90(x, -1, [-2, -1])),
    "hflip>rot90": (
        Transform.compose(Transform.hflip(), Transform.rotate(90)),
        lambda x: torch.rot90(torch.flip(x, [-1]), 1, [-2, -1]),
    ),
}


@pytest.mark.parametrize("name", list(EXACT))
def test_exact_transforms_are_permutations(name: str) -> None:
    t, ref = EXACT[name]
    square = "90" in name
    x = torch.rand(2, 3, 8, 8 if square else 10, generator=torch.Generator().manual_seed(0))
    v = warp(x, [t])
    torch.testing.assert_close(v, ref(x), atol=1e-6, rtol=0)
    back = unwarp(v[:, 0], [t], images=2)
    torch.testing.assert_close(back, x[:, 0], atol=1e-6, rtol=0)


@given(
    s=st.floats(0.4, 2.0),
    a=st.floats(-180, 180),
    fx=st.floats(-0.4, 0.4),
    fy=st.floats(-0.4, 0.4),
    h=st.integers(4, 40),
    w=st.integers(4, 40),
    flip=st.booleans(),
)
def test_inverse_composes_to_identity(
    s: float, a: float, fx: float, fy: float, h: int, w: int, flip: bool
) -> None:
    steps = [Transform.scale(s), Transform.rotate(a), Transform.translate(fx, fy)]
    if flip:
        steps.insert(1, Transform.hflip())
    t = Transform.compose(*steps)
    for hw in ((h, w), (w, h)):
        m = t.then(t.inverse()).theta(hw)
        torch.testing.assert_close(
            m, torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], dtype=torch.float64), atol=1e-9, rtol=0
        )
        # the forward sampling matrix and the inverse-warp matrix are inverse affine maps
        f, b = t.theta(hw), t.theta(hw, inverse=True)
        full = lambda m: torch.cat([m, torch.tensor([[0.0, 0, 1]], dtype=torch.float64)])  # noqa: E731
        torch.testing.assert_close(full(f) @ full(b), torch.eye(3, dtype=torch.float64), atol=1e-9, rtol=0)


def test_rotation_is_a_rotation_of_pixels_on_non_square_grids() -> None:
    # a bright dot right of the centre of a wide image, rotated by +90° (counter-clockwise on screen),
    # must land above the centre at the same distance in *pixels*
    h, w = 30, 60
    x = torch.zeros(1, 1, h, w)
    x[0, 0, 15, 40] = (
        1.0  # centre (29.5, 14.5) in edge coords is between pixels; dot at +10.5 px to the right
    )
    v = warp(x, [Transform.rotate(90)])[0, 0]
    y0, x0 = divmod(int(v.argmax()), w)
    assert abs(x0 + 0.5 - 30.0) <= 1.0 and abs(y0 + 0.5 - (15.0 - 10.5)) <= 1.0


def test_translation_is_a_fraction_of_each_side() -> None:
    x = torch.zeros(1, 1, 20, 40)
    x[0, 0, 10, 10] = 1.0
    v = warp(x, [Transform.translate(0.25, -0.1)])[0, 0]
    assert divmod(int(v.argmax()), 40) == (8, 20)


def test_valid_masks_and_fill_fractions() -> None:
    x = torch.rand(1, 3, 64, 64)
    vb = make_views(
        x, [Transform.identity(), Transform.scale(0.5), Transform.translate(0.25, 0), Transform.hflip()]
    )
    ff = vb.fill_fraction
    assert ff[0] == 0 and ff[3] == 0
    assert abs(float(ff[1]) - 0.75) < 0.03
    assert abs(float(ff[2]) - 0.25) < 0.02
    # black fill is black *pixels*: zero wherever the view is not valid, before any normalisation
    assert float(vb.pixels[1][:, ~vb.valid[1]].abs().max()) < 1e-6
    # back_valid marks reference pixels the view shows: nearly all of a shrunk image, 3/4 of a shifted one
    assert float(vb.back_valid[1].float().mean()) > 0.85
    assert float(vb.back_valid[2].float().mean()) == pytest.approx(0.75, abs=0.02)


def test_letterbox_padding_stays_invalid_in_every_view() -> None:
    x = torch.rand(1, 3, 32, 32)
    valid = torch.zeros(1, 32, 32, dtype=torch.bool)
    valid[:, 8:24, :] = True  # a letterboxed wide image
    vb = make_views(x, [Transform.identity(), Transform.vflip(), Transform.rotate(90)], valid=valid)
    assert torch.equal(vb.valid[0], valid[0])
    assert torch.equal(vb.valid[1], valid[0].flip(0))
    assert torch.equal(vb.valid[2], torch.rot90(valid[0], 1, [0, 1]))


def test_fills() -> None:
    x = torch.full((1, 3, 16, 16), 0.8)
    t = [Transform.scale(0.5)]
    black = warp(x, t, fill="black")
    mean = warp(x, t, fill="mean", mean=(0.1, 0.2, 0.3))
    refl = warp(x, t, fill="reflect")
    assert float(black[0, :, 0, 0].abs().max()) == 0.0
    torch.testing.assert_close(mean[0, :, 0, 0], torch.tensor([0.1, 0.2, 0.3]))
    torch.testing.assert_close(refl, x)
    with pytest.raises(ConfigError):
        warp(x, t, fill="white")  # type: ignore[arg-type]


def test_control_fills_also_fill_a_letterboxed_image_s_padding() -> None:
    """Mean and reflect fill are controls for black fill: a letterboxed image's own black padding is fill too,
    so it gets the mean colour or the image's reflection (it had stayed black under every fill)."""
    x = torch.full((1, 3, 32, 32), 0.0)
    x[:, :, 8:24] = torch.rand(1, 3, 16, 32) * 0.6 + 0.2  # image rows 8–23, black padding above and below
    valid = torch.zeros(1, 32, 32, dtype=torch.bool)
    valid[:, 8:24] = True
    t = [Transform.identity(), Transform.scale(0.6)]
    m = (0.1, 0.2, 0.3)
    for fill in ("mean", "reflect"):
        vb = make_views(x, t, fills=fill, valid=valid, mean=m)
        fill_px = vb.pixels.permute(0, 2, 3, 1)[~vb.valid]  # every pixel that is not image
        assert len(fill_px) and float(fill_px.sum(1).min()) > 0.3  # none left black
        if fill == "mean":
            torch.testing.assert_close(fill_px[:4], torch.tensor([m] * 4))
        torch.testing.assert_close(vb.pixels[0][:, valid[0]], x[0][:, valid[0]])  # the image as it was
    # reflected about the image's box: row 7 mirrors row 8, row 24 mirrors row 23
    vb = make_views(x, [Transform.identity()], fills="reflect", valid=valid)
    torch.testing.assert_close(vb.pixels[0, :, 7], x[0, :, 8])
    torch.testing.assert_close(vb.pixels[0, :, 24], x[0, :, 23])
    black = make_views(x, t, fills="black", valid=valid)
    assert float(black.pixels[0][:, ~valid[0]].abs().max()) == 0.0  # black fill leaves the padding black


def test_batches_are_image_major_and_fills_per_view() -> None:
    x = torch.stack([torch.full((3, 8, 8), 0.2), torch.full((3, 8, 8), 0.9)])
    ts = [Transform.identity(), Transform.scale(0.5), Transform.scale(0.5)]
    vb = make_views(x, ts, fills=["black", "black", "mean"], mean=(0.5, 0.5, 0.5))
    assert vb.pixels.shape == (6, 3, 8, 8)
    assert float(vb.pixels[3, 0, 4, 4]) == pytest.approx(0.9)  # image 1, view 0
    assert float(vb.pixels[1, 0, 0, 0]) == 0.0 and float(vb.pixels[2, 0, 0, 0]) == pytest.approx(0.5)


def test_families() -> None:
    std = TransformFamily.standard()
    kinds = {t.kind for t in std}
    assert {"scale", "rotate", "translate", "hflip", "vflip", "compose"} <= kinds
    assert min(t.strength for t in std if t.kind == "scale") == 0.5
    assert max(abs(t.strength) for t in std if t.kind == "rotate") == 45
    assert max(abs(t.strength) for t in std if t.kind == "translate") == pytest.approx(0.3)
    assert {t.kind for t in std.controls()} == {"scale", "rotate", "translate"}
    assert [t.name for t in TransformFamily.badge()] == [
        "hflip",
        "rotate(+15)",
        "scale(0.8)",
        "translate(+0.1,+0.1)",
    ]
    with pytest.raises(ConfigError, match="unknown transform family"):
        TransformFamily.named("wobbly")
    assert (
        not Transform.hflip().has_fill
        and not Transform.rotate(180).has_fill
        and Transform.rotate(10).has_fill
    )
    assert math.isclose(Transform.rotate(90).pixel_matrix((4, 4))[0][0][0], 0.0)
