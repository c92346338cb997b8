"""End to end: maps come back on the original pixel grid, aligned with what the model saw."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from conftest import TINY_MODELS
from fakelens.errors import ConfigError, FakelensError
from fakelens.explain import method_names
from fakelens.models import Detector, InputSpec, create_model
from fakelens.pipeline import explain_images

FAST_OPTIONS: dict[str, dict[str, object]] = {
    "scorecam": {"top_k": 4},
    "occlusion": {"window": 16, "stride": 16},
    "rise": {"n_masks": 16},
}


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


@pytest.mark.parametrize("model_name", TINY_MODELS)
@pytest.mark.parametrize("method", method_names())
def test_a_network_in_training_mode_is_explained_in_eval_mode_and_left_as_it_was(
    model_name: str, method: str
) -> None:
    """The wrapper in eval mode, its network put in training mode by the user afterwards (fine-tuning) and
    hooked (feature logging): every forward of every method and of the scoring runs in eval mode — running
    BatchNorm statistics are used, never updated — and the user's flags and hooks are left as they were."""
    det = create_model(model_name)
    assert not det.training
    det.net.train()
    handle = det.net.register_forward_hook(lambda m, i, o: None)
    before = {k: v.clone() for k, v in det.state_dict().items()}
    modes = [m.training for m in det.modules()]
    pixels = torch.rand(40, 48, 3, generator=torch.Generator().manual_seed(0))
    image = Image.fromarray((pixels * 255).byte().numpy())
    try:
        [r] = explain_images(det, [image], [method], options={method: FAST_OPTIONS.get(method, {})})
    except FakelensError:  # a method this model cannot run (attention on a CNN): its state still holds
        r = None
    after = det.state_dict()
    assert [k for k in before if not torch.equal(before[k], after[k])] == []
    assert [m.training for m in det.modules()] == modes
    assert len(det.net._forward_hooks) == 1
    handle.remove()
    if r is not None:  # scored in eval mode: the probability of the model in eval mode
        det.eval()
        [clean] = explain_images(det, [image], [])
        assert r.fake_probability == pytest.approx(clean.fake_probability, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("max_tiles", [0, -1, 2.5])
def test_a_wrong_max_tiles_is_a_config_error(max_tiles: object) -> None:
    with pytest.raises(ConfigError, match="max_tiles must be a whole number"):
        explain_images(create_model("tiny-cnn"), [Image.new("RGB", (8, 8))], [], max_tiles=max_tiles)  # type: ignore[arg-type]
