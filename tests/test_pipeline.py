"""End to end: maps come back on the original pixel grid, aligned with what the model saw."""

from __future__ import annotations

import torch
from PIL import Image

from fakelens.models import Detector, InputSpec
from fakelens.pipeline import explain_images


class BrightSpot(torch.nn.Module):
    """A 'detector' whose fake evidence is the brightness of each 4×4 cell (HiResCAM recovers it exactly)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.AvgPool2d(4)
        self.head = torch.nn.Linear(1, 2)
        self.head.weight.data = torch.tensor([[0.0], [1.0]])
        self.head.bias.data.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x.mean(1, keepdim=True))
        return self.head(f.mean((2, 3)))


def test_bright_patch_lands_on_its_original_pixels() -> None:
    w, h = 120, 50  # wide image, letterboxed into 32×32
    img = torch.zeros(h, w, 3, dtype=torch.uint8)
    img[10:40, 80:110] = 255
    pil = Image.fromarray(img.numpy())
    det = Detector(
        BrightSpot(),
        input_spec=InputSpec(size=(32, 32), mean=(0, 0, 0), std=(1, 1, 1), mode="letterbox"),
        cam_layers=("net.features",),
    )
    [r] = explain_images(det, [pil], ["hirescam"])
    m = r.map("hirescam")
    assert m.shape == (h, w)
    inside = m[10:40, 80:110].mean()
    outside = torch.cat([m[:, :70].flatten(), m[:, 118:].flatten()]).mean()
    assert inside > 0.5 and outside < 0.05
    assert r.valid("hirescam").all()  # letterbox: every original pixel was seen


class DarkSpot(torch.nn.Module):
    """Fake evidence = darkness of each 4×4 cell: all of it on black letterbox padding, none on white."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.AvgPool2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.features(1.0 - x.mean(1, keepdim=True)).mean((1, 2, 3))
        return torch.stack([torch.zeros_like(z), z], 1)


def test_map_statistics_leave_the_padding_out() -> None:
    """A white image letterboxed onto black: the map's only mass is on the padding, so on the image it
    is empty — flat, with no maximum above 0 — not a focused map (the statistics read the padding)."""
    det = Detector(
        DarkSpot(),
        input_spec=InputSpec(size=(32, 32), mean=(0, 0, 0), std=(1, 1, 1), mode="letterbox"),
        cam_layers=("net.features",),
    )
    [r] = explain_images(det, [Image.new("RGB", (120, 40), "white")], ["hirescam"])
    e = r.explanations["hirescam"]
    assert float(e.raw.max()) > 0  # the padding cells hold evidence...
    s = e.summary(0)
    assert s["stats"]["max"] <= 0 and s["flat"]  # ...but the image's cells hold none
