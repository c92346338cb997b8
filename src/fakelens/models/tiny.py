"""Tiny seeded detectors (< 100k parameters) for tests, docs and quick experiments."""

from __future__ import annotations

import timm
from torch import nn

from fakelens.models.base import Detector, InputSpec, TokenLayout
from fakelens.models.registry import register_model, seeded_init


class TinyCNN(nn.Module):
    """Four 3×3 conv blocks (strides 2, 2, 1, 1), global average pool, linear head."""

    def __init__(self, num_classes: int = 2, width: int = 32) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
            )

        self.features = nn.Sequential(
            block(3, width // 2, 2),
            block(width // 2, width, 2),
            block(width, 2 * width, 1),
            block(2 * width, 2 * width, 1),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.head(self.pool(self.features(x)).flatten(1))


@register_model("tiny-cnn")
def tiny_cnn(seed: int = 0, num_classes: int = 2) -> Detector:
    """A ~60k-parameter CNN on 64×64 inputs; CAM layer: the last conv block (16×16 features)."""
    with seeded_init(seed):
        net = TinyCNN(num_classes)
    return Detector(
        net,
        labels=("real", "fake") if num_classes == 2 else ("fake",),
        input_spec=InputSpec(size=(64, 64), mode="letterbox"),
        cam_layers=("net.features.3",),
        name="tiny-cnn",
        config={"arch": "tiny-cnn", "seed": seed, "num_classes": num_classes},
    )


@register_model("tiny-vit")
def tiny_vit(seed: int = 0, num_classes: int = 2) -> Detector:
    """A ~50k-parameter timm ViT: 8×8 patches on a non-square 48×64 input (6×8 grid), a class token
    and 2 register tokens — so every token-handling path is exercised by the tests."""
    with seeded_init(seed):
        net = timm.create_model(
            "vit_tiny_patch16_224",
            pretrained=False,
            img_size=(48, 64),
            patch_size=8,
            embed_dim=48,
            depth=2,
            num_heads=3,
            mlp_ratio=2.0,
            reg_tokens=2,
            num_classes=num_classes,
        )
    return Detector(
        net,
        labels=("real", "fake") if num_classes == 2 else ("fake",),
        input_spec=InputSpec(size=(48, 64), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), mode="letterbox"),
        cam_layers=("net.blocks.1.norm1",),
        token_layout=TokenLayout(num_prefix_tokens=3, patch_size=(8, 8), num_registers=2),
        name="tiny-vit",
        config={"arch": "tiny-vit", "seed": seed, "num_classes": num_classes},
    )
