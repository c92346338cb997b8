"""wrap_model: any timm / torchvision / Hugging Face classifier becomes a Detector with inferred layers."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torchvision
from PIL import Image
from torch import Tensor, nn

from fakelens.errors import ConfigError, UnknownNameError
from fakelens.models import Detector, InputSpec, TokenLayout, infer_layers, wrap_model


def run_with_hook(det: Detector, x: Tensor) -> tuple[Tensor, Tensor]:
    """Forward ``x``; return the logits and the output of the detector's first CAM layer."""
    seen: list[Tensor] = []
    hook = det.layer(det.cam_layers[0]).register_forward_hook(lambda _m, _i, out: seen.append(out))
    try:
        with torch.no_grad():
            logits = det(x)
    finally:
        hook.remove()
    return logits, seen[0]


def rand(*shape: int) -> Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(0))


def test_torchvision_resnet() -> None:
    det = wrap_model(torchvision.models.resnet18(weights=None, num_classes=2), labels=("real", "fake"))
    assert det.cam_layers == ("net.layer4",) and det.token_layout is None
    assert det.input_spec == InputSpec() and not det.training
    logits, fmap = run_with_hook(det, rand(1, 3, 64, 64))
    assert logits.shape == (1, 2) and fmap.shape == (1, 512, 2, 2)


def test_torchvision_vit() -> None:
    net = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=1, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=2
    )
    det = wrap_model(net, labels=("real", "fake"))
    assert det.cam_layers == ("net.encoder.layers.encoder_layer_0.ln_1",)
    assert det.token_layout == TokenLayout(num_prefix_tokens=1, patch_size=(8, 8))
    assert det.input_spec.size == (32, 32)
    logits, tokens = run_with_hook(det, rand(2, 3, 32, 32))
    assert logits.shape == (2, 2) and tokens.shape == (2, 17, 32)
    assert det.token_layout.to_map(tokens, (32, 32)).shape == (2, 32, 4, 4)


def test_timm_cnn_uses_feature_info_and_pretrained_cfg() -> None:
    net = timm.create_model("resnet18", pretrained=False, num_classes=2)
    det = wrap_model(net, labels=("real", "fake"))
    assert det.cam_layers == ("net.layer4",) and det.token_layout is None
    assert det.input_spec.size == (224, 224) and det.input_spec.mean == tuple(net.pretrained_cfg["mean"])
    logits, fmap = run_with_hook(det, rand(1, 3, 64, 64))
    assert logits.shape == (1, 2) and fmap.shape == (1, 512, 2, 2)


def test_timm_vit_with_registers() -> None:
    net = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=(32, 48), patch_size=8, embed_dim=24,
        depth=2, num_heads=2, reg_tokens=3, num_classes=1,
    )  # fmt: skip
    det = wrap_model(net, labels=("fake",))
    assert det.cam_layers == ("net.blocks.1.norm1",)
    assert det.token_layout == TokenLayout(num_prefix_tokens=4, patch_size=(8, 8), num_registers=3)
    assert det.input_spec.size == (32, 48)
    logits, tokens = run_with_hook(det, rand(2, 3, 32, 48))
    assert logits.shape == (2, 1)
    assert det.token_layout.to_map(tokens, (32, 48)).shape == (2, 24, 4, 6)


def test_hugging_face_vit() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
        patch_size=8, num_labels=2,
    )  # fmt: skip
    torch.manual_seed(0)
    det = wrap_model(transformers.ViTForImageClassification(config), labels=("real", "fake"))
    assert det.cam_layers[0].endswith(".1.layernorm_before")
    assert det.token_layout == TokenLayout(num_prefix_tokens=1, patch_size=(8, 8))
    logits, tokens = run_with_hook(det, rand(2, 3, 32, 32))  # the adapter takes .logits
    assert isinstance(logits, Tensor) and logits.shape == (2, 2)
    assert det.token_layout.to_map(tokens, (32, 32)).shape == (2, 32, 4, 4)


class Plain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x).mean((2, 3)))


def test_unknown_family_asks_for_cam_layers() -> None:
    with pytest.raises(ConfigError, match="pass cam_layers="):
        wrap_model(Plain(), labels=("real", "fake"))
    with pytest.raises(ConfigError):
        infer_layers(Plain())


@pytest.mark.parametrize("layer", ["body", "net.body"])
def test_explicit_layers_relative_to_the_module(layer: str) -> None:
    det = wrap_model(Plain(), labels=("real", "fake"), cam_layers=[layer], name="plain")
    assert det.cam_layers == ("net.body",) and det.name == "plain"
    assert det.input_spec == InputSpec() and det.token_layout is None
    logits, fmap = run_with_hook(det, rand(1, 3, 8, 8))
    assert logits.shape == (1, 2) and fmap.shape == (1, 4, 8, 8)


def test_wrong_layer_and_labels() -> None:
    with pytest.raises(UnknownNameError, match="no layer 'nope'"):
        wrap_model(Plain(), labels=("real", "fake"), cam_layers=["nope"])
    with pytest.raises(ValueError, match="fake label"):
        wrap_model(Plain(), labels=("a", "b"), cam_layers=["body"])
    det = wrap_model(Plain(), labels=("pristine", "forged"), cam_layers=["body"], fake_label="forged")
    assert det.fake_index == 1


def test_a_fake_class_of_any_name_is_explained_and_judged() -> None:
    """fake_label names the fake class: the default target is its log-odds, and it gives the probability and
    the verdict (the label "fake" itself is not needed anywhere)."""
    from fakelens import analyze_images, explain_images

    torch.manual_seed(0)
    det = wrap_model(
        torchvision.models.resnet18(num_classes=2), labels=("synthetic", "camera"), fake_label="synthetic"
    )
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8))
    [r] = explain_images(det, [img], ["gradcam"])
    e = r.explanations["gradcam"]
    assert e.target == "fake" and float(e.scores[0]) == pytest.approx(r.logits[0] - r.logits[1], abs=1e-5)
    p = float(torch.softmax(torch.tensor(r.logits), 0)[0])
    assert r.fake_probability == pytest.approx(p)
    [a] = analyze_images(det, [img], ["gradcam"], robustness=False)
    assert a.fake_probability == pytest.approx(p) and a.verdict == ("fake" if p >= 0.5 else "real")


def test_a_classifier_without_a_fake_class() -> None:
    """fake_label=None: maps of the top class and no verdict; an ensemble (analyze, scan) refuses it in one
    short message; 1000 labels are summarised, not printed, in errors and the repr."""
    from fakelens import explain_images
    from fakelens.models import Ensemble

    labels = tuple(f"class{i}" for i in range(1000))
    net = torchvision.models.resnet18(num_classes=1000)
    with pytest.raises(ValueError, match=r"'class3', … 1000 labels\): name the fake class") as info:
        wrap_model(net, labels=labels)
    assert len(str(info.value)) < 300
    det = wrap_model(net, labels=labels, fake_label=None)
    assert not det.is_detector and len(repr(det)) < 200
    img = Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8))
    [r] = explain_images(det, [img], ["gradcam"])
    assert r.explanations["gradcam"].target == "top" and r.fake_probability is None
    with pytest.raises(ConfigError, match="without a fake class"):
        Ensemble.of([det])


def test_adapter_and_explicit_spec_win() -> None:
    spec = InputSpec(size=(16, 16), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    det = wrap_model(
        Plain(), labels=("fake",), cam_layers=["body"], input_spec=spec, adapter=lambda out: out[:, 1:]
    )
    assert det.input_spec == spec
    assert det(rand(3, 3, 16, 16)).shape == (3, 1)


def test_labels_may_be_one_comma_separated_string() -> None:
    det = wrap_model(torchvision.models.resnet18(num_classes=2), labels="real, fake")
    assert det.labels == ("real", "fake") and det.fake_index == 1
    assert repr(det).startswith("Detector('custom', labels=('real', 'fake'), input=224×224 letterbox")
    assert len(repr(det)) < 200  # not nn.Module's 400-line tree (that is print(det.net))


def test_cam_layers_may_be_one_string_and_one_label_reprs_as_a_tuple() -> None:
    """``cam_layers="layer4"`` was read letter by letter ("ResNet has no layer 'l'")."""
    net = torchvision.models.resnet18(num_classes=2)
    assert wrap_model(net, labels=("real", "fake"), cam_layers="layer4").cam_layers == ("net.layer4",)
    det = wrap_model(net, labels="real,fake", cam_layers="layer3, layer4")
    assert det.cam_layers == ("net.layer3", "net.layer4")
    with pytest.raises(UnknownNameError, match="no layer 'layer9'"):
        wrap_model(net, labels=("real", "fake"), cam_layers="layer9")
    one = wrap_model(
        nn.Sequential(nn.Conv2d(3, 1, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()),
        labels="fake",
        cam_layers="0",
    )
    assert "labels=('fake',)" in repr(one)


@pytest.mark.parametrize("module", ["resnet", None, torchvision.models.resnet18])
def test_wrapping_something_that_is_not_a_module_is_a_type_error(module: object) -> None:
    with pytest.raises(
        TypeError, match=r"wrap_model needs a torch.nn.Module .*, not (str|NoneType|function)"
    ):
        wrap_model(module, labels=("real", "fake"))  # type: ignore[arg-type]


def test_wrap_mistakes_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="fake label 'fake' is not among"):
        wrap_model(Plain(), labels=("a", "b"), cam_layers="body")


def test_channels_last_layers_are_explained_as_maps() -> None:
    """timm's Swin stages give (B, h, w, C): inferred as CAM layers and read as (B, C, h, w) maps (read as
    channels-first, a 7×7×384 output had become a 7×384 "map" stretched over the image)."""
    from fakelens.explain import explain
    from fakelens.explain.cams import first_component_projection

    torch.manual_seed(0)
    net = timm.create_model(
        "swin_tiny_patch4_window7_224",
        num_classes=2,
        depths=(1, 1, 1, 1),
        embed_dim=16,
        num_heads=(1, 1, 1, 1),
    )
    det = wrap_model(net, labels=("real", "fake"))
    assert det.cam_layers == ("net.layers.3",)
    x = rand(2, 3, 224, 224)
    res = explain(det, x, ["gradcam", "eigencam", "ablationcam", "scorecam"])
    assert all(e.raw.shape == (2, 7, 7) for e in res.values())  # AblationCAM zeroes the last axis
    # the same numbers as a module that permutes the stage's output itself
    seen: list[Tensor] = []
    hook = det.layer("layers.3").register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.no_grad():
        det(x)
    hook.remove()
    acts = seen[0].permute(0, 3, 1, 2)
    assert torch.allclose(res["eigencam"].raw, first_component_projection(acts))
    narrow = wrap_model(timm.create_model("resnet18", num_classes=2), labels=("real", "fake"))
    assert explain(narrow, rand(1, 3, 64, 256), ["gradcam"])["gradcam"].raw.shape == (1, 2, 8)  # wide, NCHW
